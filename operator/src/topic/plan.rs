//! Decides what to do with a Kafka topic given its `KafkaTopic` spec, what the cluster reports
//! and what the operator last applied (status). Pure. The rules: create when missing (adopting an
//! existing topic of the same name as is, never recreating it); raise partitions, never lower
//! them; never change the replication factor (a reassignment, later) — both refused with a
//! condition; config is compared with the overrides the broker reports (DescribeConfigs) and only
//! the differences are applied incrementally, deleting overrides the operator manages that the
//! spec dropped and leaving alone overrides it never managed.

use std::collections::{BTreeMap, BTreeSet};

use crate::admin::{ConfigChange, NewTopic, TopicInfo};
use crate::crd::topic::{KafkaTopic, KafkaTopicStatus};

/// Longest Kafka topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// A validated Kafka topic name: `[a-zA-Z0-9._-]`, 1..=249 characters, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicName(String);

impl TopicName {
    /// Validates `name`.
    pub fn parse(name: &str) -> Option<TopicName> {
        let ok = !name.is_empty()
            && name.len() <= MAX_TOPIC_NAME_LEN
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        ok.then(|| TopicName(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The Kafka topic name of a `KafkaTopic`: `spec.topicName`, else the resource name.
pub fn topic_name(kt: &KafkaTopic) -> Result<TopicName, String> {
    let raw = kt
        .spec
        .topic_name
        .clone()
        .or_else(|| kt.metadata.name.clone())
        .unwrap_or_default();
    TopicName::parse(&raw).ok_or_else(|| {
        format!("{raw:?} is not a valid Kafka topic name (allowed: [a-zA-Z0-9._-], at most {MAX_TOPIC_NAME_LEN}); set spec.topicName")
    })
}

/// One admin action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicAction {
    Create(NewTopic),
    CreatePartitions(i32),
    AlterConfig(Vec<ConfigChange>),
}

/// A change the spec asks for that the operator refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// What to do in this pass.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicPlan {
    pub actions: Vec<TopicAction>,
    pub refusals: Vec<Refusal>,
}

/// The topic as the cluster reports it: metadata plus its topic-level overrides (only
/// `DYNAMIC_TOPIC_CONFIG` entries, see `admin::topic_overrides`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedTopic {
    pub info: TopicInfo,
    pub overrides: BTreeMap<String, String>,
}

/// Plans the actions for `kt` given the cluster's view of the topic (`None` = absent).
pub fn plan_topic(
    kt: &KafkaTopic,
    name: &TopicName,
    observed: Option<&ObservedTopic>,
) -> TopicPlan {
    let spec = &kt.spec;
    let mut plan = TopicPlan::default();
    let Some(observed) = observed else {
        plan.actions.push(TopicAction::Create(NewTopic {
            name: name.as_str().to_owned(),
            partitions: spec.partitions,
            replication_factor: i16::try_from(spec.replication_factor).unwrap_or(i16::MAX),
            config: spec.config.clone(),
        }));
        return plan;
    };
    let t = &observed.info;
    if spec.partitions > t.partitions {
        plan.actions
            .push(TopicAction::CreatePartitions(spec.partitions));
    } else if spec.partitions < t.partitions {
        plan.refusals.push(Refusal {
            reason: "PartitionsDecrease",
            message: format!(
                "topic has {} partitions; spec asks for {}: Kafka cannot remove partitions",
                t.partitions, spec.partitions
            ),
        });
    }
    if t.replication_factor != spec.replication_factor && t.replication_factor > 0 {
        plan.refusals.push(Refusal {
            reason: "ReplicationFactorChange",
            message: format!(
                "topic has replication factor {}; spec asks for {}: changing it needs a reassignment, which is not supported yet",
                t.replication_factor, spec.replication_factor
            ),
        });
    }
    let managed = managed_keys(kt.status.as_ref());
    let changes = config_changes(&spec.config, &observed.overrides, &managed);
    if !changes.is_empty() {
        plan.actions.push(TopicAction::AlterConfig(changes));
    }
    plan
}

/// The config keys the operator manages on this topic: the spec's keys at its last successful
/// pass (`status.managedConfigKeys`). Statuses written before that field existed held only what
/// the operator had applied in `status.config`, so those keys are used instead.
pub fn managed_keys(status: Option<&KafkaTopicStatus>) -> BTreeSet<String> {
    match status {
        Some(s) => match &s.managed_config_keys {
            Some(keys) => keys.iter().cloned().collect(),
            None => s.config.keys().cloned().collect(),
        },
        None => BTreeSet::new(),
    }
}

/// Incremental changes from the overrides the broker reports (`actual`) to what the spec wants:
/// `SET` every desired key whose override is missing or different (drift included), `DELETE`
/// every override the operator manages that the spec no longer has. Overrides the operator never
/// managed (set by someone else, or present on an adopted topic) are left alone.
pub fn config_changes(
    desired: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
    managed: &BTreeSet<String>,
) -> Vec<ConfigChange> {
    let mut out: Vec<ConfigChange> = desired
        .iter()
        .filter(|(k, v)| actual.get(*k) != Some(*v))
        .map(|(k, v)| ConfigChange::Set {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    out.extend(
        actual
            .keys()
            .filter(|k| managed.contains(*k) && !desired.contains_key(*k))
            .map(|k| ConfigChange::Delete { name: k.clone() }),
    );
    out
}

/// Desired keys whose override the broker does not report as the spec says (after acting, this
/// means the broker accepted a change but did not keep it, or someone changed it meanwhile).
pub fn config_drift(
    desired: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
) -> Vec<String> {
    desired
        .iter()
        .filter(|(k, v)| actual.get(*k) != Some(*v))
        .map(|(k, v)| match actual.get(k) {
            Some(a) => format!("{k}={a} (spec: {v})"),
            None => format!("{k} not set (spec: {v})"),
        })
        .collect()
}

/// The status after a successful pass: what the cluster reports (metadata and the topic's
/// overrides as read back with DescribeConfigs) and the keys the operator now manages.
pub fn applied_status(
    kt: &KafkaTopic,
    name: &TopicName,
    observed: Option<&ObservedTopic>,
) -> KafkaTopicStatus {
    let info = observed.map(|o| &o.info);
    KafkaTopicStatus {
        conditions: Vec::new(),
        observed_generation: kt.metadata.generation,
        topic_name: Some(name.as_str().to_owned()),
        topic_id: info.and_then(|i| i.id.clone()),
        partitions: info.map(|i| i.partitions),
        replication_factor: info.map(|i| i.replication_factor),
        config: observed.map(|o| o.overrides.clone()).unwrap_or_default(),
        managed_config_keys: Some(kt.spec.config.keys().cloned().collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(yaml: &str) -> KafkaTopic {
        serde_yaml::from_str(yaml).expect("fixture parses")
    }

    const ORDERS: &str = "
apiVersion: kafka.tributary.dev/v1alpha1
kind: KafkaTopic
metadata: {name: orders, namespace: kafka, generation: 2}
spec:
  clusterRef: {name: demo}
  partitions: 6
  replicationFactor: 3
  config: {retention.ms: '3600000', cleanup.policy: delete}
status:
  config: {retention.ms: '60000', segment.bytes: '1048576'}
";

    const ORDERS_MANAGED: &str = "
apiVersion: kafka.tributary.dev/v1alpha1
kind: KafkaTopic
metadata: {name: orders, namespace: kafka, generation: 3}
spec:
  clusterRef: {name: demo}
  partitions: 6
  replicationFactor: 3
  config: {retention.ms: '3600000'}
status:
  config: {retention.ms: '3600000', segment.bytes: '1048576', max.message.bytes: '1000'}
  managedConfigKeys: [retention.ms, segment.bytes]
";

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn observed(partitions: i32, rf: i32, overrides: &[(&str, &str)]) -> ObservedTopic {
        ObservedTopic {
            info: TopicInfo {
                name: "orders".into(),
                id: Some("id".into()),
                partitions,
                replication_factor: rf,
            },
            overrides: map(overrides),
        }
    }

    fn set(k: &str, v: &str) -> ConfigChange {
        ConfigChange::Set {
            name: k.into(),
            value: v.into(),
        }
    }

    fn delete(k: &str) -> ConfigChange {
        ConfigChange::Delete { name: k.into() }
    }

    #[test]
    fn missing_topic_is_created_with_spec_and_config() {
        let kt = topic(ORDERS);
        let name = topic_name(&kt).expect("valid");
        let plan = plan_topic(&kt, &name, None);
        let TopicAction::Create(t) = &plan.actions[0] else {
            panic!("{plan:?}")
        };
        assert_eq!(
            (t.name.as_str(), t.partitions, t.replication_factor),
            ("orders", 6, 3)
        );
        assert_eq!(t.config["cleanup.policy"], "delete");
    }

    #[test]
    fn existing_topic_gets_partitions_raised_and_config_diffed_against_the_broker() {
        // Legacy status (no managedConfigKeys): status.config names what the operator applied.
        let kt = topic(ORDERS);
        let name = topic_name(&kt).expect("valid");
        // The broker already has cleanup.policy=delete (nothing to do), retention.ms drifted,
        // segment.bytes was applied before and dropped from the spec, and someone else set
        // max.message.bytes.
        let obs = observed(
            3,
            3,
            &[
                ("cleanup.policy", "delete"),
                ("retention.ms", "5"),
                ("segment.bytes", "1048576"),
                ("max.message.bytes", "1000"),
            ],
        );
        let plan = plan_topic(&kt, &name, Some(&obs));
        assert!(plan.refusals.is_empty());
        assert_eq!(plan.actions[0], TopicAction::CreatePartitions(6));
        assert_eq!(
            plan.actions[1],
            TopicAction::AlterConfig(vec![
                set("retention.ms", "3600000"),
                delete("segment.bytes")
            ])
        );
    }

    #[test]
    fn in_sync_topic_needs_no_action() {
        let kt = topic(ORDERS);
        let name = topic_name(&kt).expect("valid");
        let obs = observed(
            6,
            3,
            &[("cleanup.policy", "delete"), ("retention.ms", "3600000")],
        );
        assert_eq!(plan_topic(&kt, &name, Some(&obs)), TopicPlan::default());
    }

    #[test]
    fn managed_keys_decide_what_is_deleted() {
        let kt = topic(ORDERS_MANAGED);
        let name = topic_name(&kt).expect("valid");
        let obs = observed(
            6,
            3,
            &[
                ("retention.ms", "3600000"),
                ("segment.bytes", "1048576"),
                ("max.message.bytes", "1000"),
            ],
        );
        // max.message.bytes is in status.config (observed) but not managed: kept.
        assert_eq!(
            plan_topic(&kt, &name, Some(&obs)).actions,
            vec![TopicAction::AlterConfig(vec![delete("segment.bytes")])]
        );
        // A managed key already gone from the broker needs no DELETE.
        let obs = observed(6, 3, &[("retention.ms", "3600000")]);
        assert!(plan_topic(&kt, &name, Some(&obs)).actions.is_empty());
    }

    #[test]
    fn fewer_partitions_and_rf_changes_are_refused() {
        let kt = topic(ORDERS);
        let name = topic_name(&kt).expect("valid");
        let plan = plan_topic(&kt, &name, Some(&observed(12, 1, &[])));
        let reasons: Vec<_> = plan.refusals.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, ["PartitionsDecrease", "ReplicationFactorChange"]);
        assert!(!plan
            .actions
            .iter()
            .any(|a| matches!(a, TopicAction::CreatePartitions(_))));
    }

    #[test]
    fn adopted_topic_keeps_foreign_overrides_and_gets_spec_keys_set() {
        let mut kt = topic(ORDERS);
        kt.status = None;
        let actual = map(&[("retention.ms", "-1"), ("cleanup.policy", "delete")]);
        let changes = config_changes(&kt.spec.config, &actual, &managed_keys(None));
        assert_eq!(changes, vec![set("retention.ms", "3600000")]);
        let actual = map(&[("segment.bytes", "1")]);
        let changes = config_changes(&BTreeMap::new(), &actual, &managed_keys(None));
        assert!(changes.is_empty(), "never managed: left alone");
    }

    #[test]
    fn status_reports_broker_overrides_and_spec_keys_as_managed() {
        let kt = topic(ORDERS_MANAGED);
        let name = topic_name(&kt).expect("valid");
        let obs = observed(6, 3, &[("retention.ms", "3600000"), ("x.y", "1")]);
        let status = applied_status(&kt, &name, Some(&obs));
        assert_eq!(status.config, obs.overrides);
        assert_eq!(
            status.managed_config_keys,
            Some(vec!["retention.ms".into()])
        );
        let empty = applied_status(&topic(ORDERS), &name, None);
        assert!(empty.config.is_empty());
        assert_eq!(
            config_drift(&kt.spec.config, &map(&[("retention.ms", "1")])),
            vec!["retention.ms=1 (spec: 3600000)".to_owned()]
        );
    }

    #[test]
    fn topic_names_are_checked() {
        assert!(TopicName::parse("orders.v1_x-2").is_some());
        for bad in ["", ".", "..", "has space", "ünïcode", &"x".repeat(250)] {
            assert!(TopicName::parse(bad).is_none(), "{bad}");
        }
        let mut kt = topic(ORDERS);
        kt.metadata.name = Some("Not_OK?".into());
        assert!(topic_name(&kt).is_err());
    }
}

//! Decides what to do with a Kafka topic given its `KafkaTopic` spec, what the cluster reports
//! and what the operator last applied (status). Pure. The rules: create when missing (adopting an
//! existing topic of the same name as is, never recreating it); raise partitions, never lower
//! them; never change the replication factor (a reassignment, later) — both refused with a
//! condition; config is applied incrementally against what the operator last set.

use std::collections::BTreeMap;

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

/// Plans the actions for `kt` given the cluster's view of the topic (`None` = absent).
pub fn plan_topic(kt: &KafkaTopic, name: &TopicName, observed: Option<&TopicInfo>) -> TopicPlan {
    let spec = &kt.spec;
    let mut plan = TopicPlan::default();
    let Some(t) = observed else {
        plan.actions.push(TopicAction::Create(NewTopic {
            name: name.as_str().to_owned(),
            partitions: spec.partitions,
            replication_factor: i16::try_from(spec.replication_factor).unwrap_or(i16::MAX),
            config: spec.config.clone(),
        }));
        return plan;
    };
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
    let previous = kt.status.as_ref().map(|s| &s.config);
    let changes = config_changes(&spec.config, previous);
    if !changes.is_empty() {
        plan.actions.push(TopicAction::AlterConfig(changes));
    }
    plan
}

/// Incremental changes from what the operator last applied to what the spec wants. With nothing
/// applied yet (a new or adopted topic) every desired key is set; keys the operator never set are
/// left alone.
pub fn config_changes(
    desired: &BTreeMap<String, String>,
    applied: Option<&BTreeMap<String, String>>,
) -> Vec<ConfigChange> {
    let empty = BTreeMap::new();
    let applied = applied.unwrap_or(&empty);
    let mut out: Vec<ConfigChange> = desired
        .iter()
        .filter(|(k, v)| applied.get(*k) != Some(*v))
        .map(|(k, v)| ConfigChange::Set {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    out.extend(
        applied
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .map(|k| ConfigChange::Delete { name: k.clone() }),
    );
    out
}

/// The status after a successful pass: what the cluster reports plus the config now applied.
pub fn applied_status(
    kt: &KafkaTopic,
    name: &TopicName,
    info: Option<&TopicInfo>,
) -> KafkaTopicStatus {
    KafkaTopicStatus {
        conditions: Vec::new(),
        observed_generation: kt.metadata.generation,
        topic_name: Some(name.as_str().to_owned()),
        topic_id: info.and_then(|i| i.id.clone()),
        partitions: info.map(|i| i.partitions),
        replication_factor: info.map(|i| i.replication_factor),
        config: kt.spec.config.clone(),
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

    fn info(partitions: i32, rf: i32) -> TopicInfo {
        TopicInfo {
            name: "orders".into(),
            id: Some("id".into()),
            partitions,
            replication_factor: rf,
        }
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
    fn existing_topic_gets_partitions_raised_and_config_diffed() {
        let kt = topic(ORDERS);
        let name = topic_name(&kt).expect("valid");
        let plan = plan_topic(&kt, &name, Some(&info(3, 3)));
        assert!(plan.refusals.is_empty());
        assert_eq!(plan.actions[0], TopicAction::CreatePartitions(6));
        assert_eq!(
            plan.actions[1],
            TopicAction::AlterConfig(vec![
                ConfigChange::Set {
                    name: "cleanup.policy".into(),
                    value: "delete".into()
                },
                ConfigChange::Set {
                    name: "retention.ms".into(),
                    value: "3600000".into()
                },
                ConfigChange::Delete {
                    name: "segment.bytes".into()
                },
            ])
        );
    }

    #[test]
    fn fewer_partitions_and_rf_changes_are_refused() {
        let kt = topic(ORDERS);
        let name = topic_name(&kt).expect("valid");
        let plan = plan_topic(&kt, &name, Some(&info(12, 1)));
        let reasons: Vec<_> = plan.refusals.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, ["PartitionsDecrease", "ReplicationFactorChange"]);
        assert!(!plan
            .actions
            .iter()
            .any(|a| matches!(a, TopicAction::CreatePartitions(_))));
    }

    #[test]
    fn adopted_topic_without_applied_config_gets_every_key_set() {
        let mut kt = topic(ORDERS);
        kt.status = None;
        let changes = config_changes(&kt.spec.config, None);
        assert_eq!(changes.len(), 2);
        assert!(changes
            .iter()
            .all(|c| matches!(c, ConfigChange::Set { .. })));
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

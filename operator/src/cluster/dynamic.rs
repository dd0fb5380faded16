//! Broker configs applied without a restart: the spec's values of `DYNAMIC_BROKER_CONFIGS` are
//! kept as the cluster-wide dynamic broker defaults (IncrementalAlterConfigs of the broker
//! resource ""), which every broker applies at once. The pods' hashes leave these values out
//! (`build::configmap`), so changing only them restarts nothing; a key the spec no longer sets
//! has its default deleted (the brokers restart for that change anyway: its name is hashed).
//! Run on every pass that reaches the cluster, after the day-1 objects are applied.

use std::collections::BTreeMap;

use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::build::configmap::DYNAMIC_BROKER_CONFIGS;
use super::reconcile::CONTROLLER;
use crate::admin::{ConfigChange, ConfigEntry, ConfigSource, KafkaAdmin};
use crate::context::Context;
use crate::crd::cluster::KafkaCluster;

/// The changes that make the cluster's dynamic defaults (`current`, as DescribeConfigs lists
/// them) equal `wanted`, for the keys the operator manages.
pub fn dynamic_changes(
    current: &[ConfigEntry],
    wanted: &BTreeMap<String, String>,
) -> Vec<ConfigChange> {
    let set: BTreeMap<&str, Option<&str>> = current
        .iter()
        .filter(|e| e.source == ConfigSource::DynamicDefaultBroker)
        .filter(|e| DYNAMIC_BROKER_CONFIGS.contains(&e.name.as_str()))
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    let mut changes: Vec<ConfigChange> = wanted
        .iter()
        .filter(|(k, v)| set.get(k.as_str()) != Some(&Some(v.as_str())))
        .map(|(k, v)| ConfigChange::Set {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    changes.extend(set.keys().filter(|k| !wanted.contains_key(**k)).map(|k| {
        ConfigChange::Delete {
            name: (*k).to_owned(),
        }
    }));
    changes
}

/// Brings the cluster's dynamic defaults to `wanted`; an Event names what changed. A failure is
/// logged, counted (`dynamic_config`) and tried again next pass; it does not fail the pass.
pub async fn sync_dynamic_configs(
    ctx: &Context,
    kc: &KafkaCluster,
    admin: &dyn KafkaAdmin,
    wanted: &BTreeMap<String, String>,
) {
    let result = async {
        let current = admin.describe_broker_defaults().await?;
        let changes = dynamic_changes(&current, wanted);
        if !changes.is_empty() {
            admin.alter_broker_defaults(&changes).await?;
        }
        Ok::<_, crate::admin::AdminError>(changes)
    }
    .await;
    match result {
        Ok(changes) if changes.is_empty() => {}
        Ok(changes) => {
            let names: Vec<String> = changes
                .iter()
                .map(|c| match c {
                    ConfigChange::Set { name, value } => format!("{name}={value}"),
                    ConfigChange::Delete { name } => format!("{name} (deleted)"),
                })
                .collect();
            let note = format!(
                "applied to every broker without a restart: {}",
                names.join(", ")
            );
            info!(%note, "dynamic broker configs");
            ctx.publish(
                kc,
                EventType::Normal,
                "ConfigApplied",
                "Configure",
                Some(note),
            )
            .await;
        }
        Err(e) => {
            warn!(error = %e, "applying the dynamic broker configs failed; next pass tries again");
            ctx.metrics.failed(CONTROLLER, "dynamic_config");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, value: &str, source: ConfigSource) -> ConfigEntry {
        ConfigEntry {
            name: name.into(),
            value: Some(value.into()),
            source,
        }
    }

    #[test]
    fn sets_what_differs_and_deletes_what_the_spec_dropped_leaving_other_keys_alone() {
        let current = [
            entry(
                "min.insync.replicas",
                "2",
                ConfigSource::DynamicDefaultBroker,
            ),
            entry(
                "log.retention.ms",
                "1000",
                ConfigSource::DynamicDefaultBroker,
            ),
            entry("log.roll.ms", "5", ConfigSource::DynamicDefaultBroker),
            // the drain's throttle, and static values, are not the operator's to sync
            entry(
                "leader.replication.throttled.rate",
                "10",
                ConfigSource::DynamicDefaultBroker,
            ),
            entry("message.max.bytes", "100", ConfigSource::StaticBroker),
        ];
        let wanted: BTreeMap<String, String> = [
            ("min.insync.replicas", "2"),
            ("log.retention.ms", "2000"),
            ("message.max.bytes", "100"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            dynamic_changes(&current, &wanted),
            [
                ConfigChange::Set {
                    name: "log.retention.ms".into(),
                    value: "2000".into()
                },
                ConfigChange::Set {
                    name: "message.max.bytes".into(),
                    value: "100".into()
                },
                ConfigChange::Delete {
                    name: "log.roll.ms".into()
                },
            ]
        );
        assert!(dynamic_changes(&current[..2], &wanted)
            .iter()
            .all(|c| !matches!(c, ConfigChange::Delete { .. })));
    }
}

//! The `KafkaTopic` custom resource. Only types and schema live here; deciding what to do with a
//! topic is `topic::plan`.

// The schema derive emits a private copy of the spec struct, which trips this lint.
#![allow(unreachable_pub)]

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Condition;

/// Finalizer that makes deleting a `KafkaTopic` delete (or release) the Kafka topic first.
pub const TOPIC_FINALIZER: &str = "kafka.tributary.dev/topic";

/// A Kafka topic managed declaratively.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kafka.tributary.dev",
    version = "v1alpha1",
    kind = "KafkaTopic",
    namespaced,
    doc = "A Kafka topic in a KafkaCluster, managed declaratively by the operator.",
    shortname = "kt",
    status = "KafkaTopicStatus",
    category = "tributary",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.clusterRef.name"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","jsonPath":".spec.partitions"}"#,
    printcolumn = r#"{"name":"RF","type":"integer","description":"Replication factor","jsonPath":".spec.replicationFactor"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    cel,
    validation = Rule::new("self.partitions >= oldSelf.partitions").message("partitions may not decrease"),
    validation = Rule::new("!has(oldSelf.topicName) || (has(self.topicName) && self.topicName == oldSelf.topicName)").message("topicName is immutable")
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicSpec {
    /// The `KafkaCluster` (same namespace) that hosts the topic.
    pub cluster_ref: ClusterRef,
    /// Kafka topic name; defaults to the resource name. Allowed: `[a-zA-Z0-9._-]`, at most 249.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub topic_name: Option<String>,
    /// Number of partitions. May be raised, never lowered.
    #[schemars(range(min = 1, max = 100000))]
    pub partitions: i32,
    /// Replicas of each partition. Changing it is refused for now (it is a reassignment).
    #[schemars(range(min = 1, max = 32767))]
    pub replication_factor: i32,
    /// Topic-level properties with Kafka's names (e.g. `retention.ms`, `cleanup.policy`).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// What deleting this resource does to the Kafka topic: `Delete` (default) deletes it and its
    /// data; `Retain` leaves the topic in the cluster.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Reference to a `KafkaCluster` in the same namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ClusterRef {
    /// Name of the `KafkaCluster`.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// What happens to the Kafka topic when the resource is deleted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the topic and its data.
    #[default]
    Delete,
    /// Keep the topic.
    Retain,
}

/// What the operator observed of the topic.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicStatus {
    /// `Ready` and `Degraded`, each with the generation it describes.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Kafka topic name in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// The topic id the cluster assigned (UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// Partitions the cluster reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Replication factor the cluster reports (replicas of partition 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    /// The topic's configuration overrides as the cluster reports them (DescribeConfigs entries
    /// with source `DYNAMIC_TOPIC_CONFIG`), including overrides set outside the operator.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Config keys the operator manages: the `spec.config` keys of the last successful pass.
    /// Removing one from `spec.config` deletes its override; overrides not listed here are left
    /// alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_config_keys: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> serde_json::Value {
        let spec: KafkaTopicSpec = serde_yaml::from_str(yaml).expect("fixture parses");
        serde_json::to_value(spec).expect("serializes")
    }

    #[test]
    fn cel_refuses_fewer_partitions_and_renames() {
        let old =
            spec("{clusterRef: {name: c}, partitions: 3, replicationFactor: 1, topicName: a}");
        let fewer =
            spec("{clusterRef: {name: c}, partitions: 2, replicationFactor: 1, topicName: a}");
        let more =
            spec("{clusterRef: {name: c}, partitions: 6, replicationFactor: 1, topicName: a}");
        let renamed =
            spec("{clusterRef: {name: c}, partitions: 3, replicationFactor: 1, topicName: b}");
        assert!(KafkaTopicSpec::validate_cel(&more, Some(&old)).is_ok());
        let err = KafkaTopicSpec::validate_cel(&fewer, Some(&old)).expect_err("decrease refused");
        assert!(
            format!("{err:?}").contains("partitions may not decrease"),
            "{err:?}"
        );
        let err = KafkaTopicSpec::validate_cel(&renamed, Some(&old)).expect_err("rename refused");
        assert!(
            format!("{err:?}").contains("topicName is immutable"),
            "{err:?}"
        );
    }
}

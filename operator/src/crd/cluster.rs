//! The `KafkaCluster` custom resource: what a user asks for (spec) and what the operator reports
//! (status). Only types and their schema live here; checking a spec beyond what the schema can
//! express is `cluster::validate`.

// The schema derive emits a private copy of the spec struct, which trips this lint.
#![allow(unreachable_pub)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Condition;
use crate::day2::Day2State;

/// Default container image of the broker.
pub const DEFAULT_IMAGE: &str = "tributary/broker:0.1.0";
/// Default port of the client (PLAINTEXT) listener.
pub const DEFAULT_CLIENT_PORT: i32 = 9092;

/// A Tributary cluster: controller and broker nodes run as StatefulSets managed by the operator.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kafka.tributary.dev",
    version = "v1alpha1",
    kind = "KafkaCluster",
    namespaced,
    doc = "A Tributary cluster: controller and broker nodes that the operator runs as StatefulSets.",
    shortname = "kc",
    status = "KafkaClusterStatus",
    category = "tributary",
    cel,
    // Same rule as `cluster::validate::is_cluster_name`: object names derive from the cluster's
    // (`<name>-controller` Services, pods `<name>-controller-N`), so it must be an RFC 1035 label
    // short enough for the longest suffix.
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 40").message("metadata.name must be an RFC 1035 label (lowercase letters, digits and '-', starting with a letter) of at most 40 characters: the cluster's Service and pod names are derived from it"),
    printcolumn = r#"{"name":"Brokers","type":"integer","description":"Desired broker replicas","jsonPath":".spec.brokers.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","description":"Ready condition","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Operation","type":"string","description":"What the operator is doing","jsonPath":".status.operation.kind"}"#,
    printcolumn = r#"{"name":"Done","type":"integer","description":"Units of the operation done (pods restarted, partitions moved)","jsonPath":".status.operation.done"}"#,
    printcolumn = r#"{"name":"Total","type":"integer","description":"Units of the operation in total","jsonPath":".status.operation.total"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"description":"Progress, or what the operation waits for","jsonPath":".status.operation.message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    cel,
    validation = Rule::new("!self.combined || !has(self.controllers)").message("spec.controllers must be omitted when spec.combined is true"),
    validation = Rule::new("self.combined || has(self.controllers)").message("spec.controllers is required unless spec.combined is true"),
    // Flipping `combined` replaces every node pool: the operator would have to delete the
    // running nodes' StatefulSets (and, with reclaimPolicy Delete, their volumes). The reconciler
    // refuses it too (`cluster::validate::refuse_pool_removal`) for CRDs applied without this rule.
    validation = Rule::new("!has(self.rollingUpdate) || !has(self.rollingUpdate.maxUnavailablePerRack) || self.rollingUpdate.maxUnavailablePerRack <= 1 || has(self.rack)").message("spec.rollingUpdate.maxUnavailablePerRack above 1 needs spec.rack: without racks brokers restart one at a time"),
    validation = Rule::new("self.combined == oldSelf.combined").message("spec.combined cannot be changed: it would replace every node (and its data); create a new cluster instead")
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// Container image of the Tributary broker (same image for every role).
    #[serde(default = "default_image")]
    pub image: String,
    /// Image pull policy for the broker containers (`Always`, `IfNotPresent`, `Never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// When true, every node is both broker and controller (`spec.brokers` describes them and
    /// `spec.controllers` must be omitted). For small clusters; voters are all nodes.
    #[serde(default)]
    pub combined: bool,
    /// The dedicated controller (KRaft quorum voter) nodes. Required unless `combined`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controllers: Option<NodePoolSpec>,
    /// The broker nodes, which host partitions and serve clients.
    pub brokers: NodePoolSpec,
    /// Client-facing listeners.
    #[serde(default)]
    pub listeners: ListenersSpec,
    /// Cluster-wide broker properties, with Kafka's names (e.g. `min.insync.replicas`). Properties
    /// the operator manages (node.id, listeners, quorum voters, log.dirs…) are refused.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Rack awareness: the node label whose value becomes each broker's `broker.rack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<RackSpec>,
    /// Extra labels and annotations for every pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplateOverrides>,
    /// How partitions are moved when brokers are added (commissioning) or removed (draining).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<RebalanceSpec>,
    /// How pods are restarted when their configuration or template changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdateSpec>,
}

/// How a rolling restart takes pods down.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdateSpec {
    /// Most broker pods of one rack restarted together (default 1: one pod at a time). Above 1
    /// (which needs `spec.rack`), a broker-only pod is restarted with other outdated broker-only
    /// pods of its rack as long as, without all of them, every partition keeps
    /// `min.insync.replicas` in sync. Controllers always restart one at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_unavailable_per_rack: Option<u32>,
}

/// How the operator moves partitions between brokers.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceSpec {
    /// Most partitions one batch of reassignments moves (the next batch waits until every move
    /// of this one has finished). Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub batch_size: Option<u32>,
    /// Replication throttle for the moves, in bytes per second (Kafka's
    /// `leader/follower.replication.throttled.rate` on the moving replicas), removed when the
    /// moves finish. No throttle when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub throttle_bytes_per_second: Option<u64>,
    /// Submit no new batch of moves while true (commissioning and draining wait, saying so;
    /// moves already submitted finish). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_owned()
}

/// One role's set of nodes (one StatefulSet).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolSpec {
    /// Number of nodes. Node ids are stable and derived from the pod ordinal.
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Persistent storage for each node's log directory.
    pub storage: StorageSpec,
    /// CPU and memory requests and limits of the broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Node selector for the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Affinity rules for the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations for the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Broker properties for this role only; they override `spec.config`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// Persistent volume claim settings of a node pool.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each node's volume, as a Kubernetes quantity (e.g. `10Gi`).
    pub size: String,
    /// Storage class of the claims; the cluster default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Whether claims are deleted when the cluster is deleted or scaled down (`Delete`) or kept
    /// (`Retain`, the default: data outlives the resource until an admin removes it).
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
}

/// What happens to a node's volume claim when the node goes away.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ReclaimPolicy {
    /// Keep the claims.
    #[default]
    Retain,
    /// Delete the claims with the pods' StatefulSet or on scale-down.
    Delete,
}

/// Client listeners. Only a plaintext listener exists today; TLS and SASL will be added as new
/// fields here.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenersSpec {
    /// The in-cluster client listener.
    #[serde(default)]
    pub internal: ListenerSpec,
}

/// One Kafka listener.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSpec {
    /// TCP port of the listener.
    #[serde(default = "default_client_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// Security protocol; only `PLAINTEXT` is supported today.
    #[serde(default)]
    pub protocol: ListenerProtocol,
}

impl Default for ListenerSpec {
    fn default() -> Self {
        ListenerSpec {
            port: DEFAULT_CLIENT_PORT,
            protocol: ListenerProtocol::Plaintext,
        }
    }
}

fn default_client_port() -> i32 {
    DEFAULT_CLIENT_PORT
}

/// Kafka security protocol of a listener.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ListenerProtocol {
    /// No encryption, no authentication.
    #[default]
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
}

/// Rack awareness settings.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RackSpec {
    /// Node label whose value is the broker's rack, e.g. `topology.kubernetes.io/zone`.
    pub topology_key: String,
}

/// Additions to every pod of the cluster.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateOverrides {
    /// Extra pod labels (the operator's own labels win on conflict).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Priority class of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// What the operator observed and is doing.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// `Ready`, `Progressing` and `Degraded`, each with the generation it describes.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Every node the operator manages, with its state.
    #[serde(default)]
    pub nodes: Vec<NodeStatus>,
    /// Node id of the active controller, when the cluster reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_leader: Option<i32>,
    /// What the operator is doing now.
    #[serde(default)]
    pub operation: OperationStatus,
    /// `host:port` that clients inside the cluster use to bootstrap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<String>,
    /// Pods whose configuration or template hash differs from the desired one (they need a
    /// restart to pick up the change).
    #[serde(default)]
    pub outdated_pods: Vec<String>,
    /// The day-2 operation's resume state (`day2::Day2State`: commissioned brokers, the
    /// operation in progress, since when a step waits, whether a throttle is set). Written by
    /// the operator after every day-2 pass so that a restarted operator resumes; not for users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "day2_state_schema")]
    pub day2: Option<Day2State>,
}

/// `status.day2` is the planner's own state: kept opaque in the schema (its shape belongs to
/// `day2::model`, which may change between operator versions without a CRD change).
fn day2_state_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "The day-2 operation's resume state, kept by the operator (not for users).",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// One node's state.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Pod name.
    pub pod: String,
    /// Kafka `node.id`.
    pub node_id: i32,
    /// `broker`, `controller` or `broker,controller`.
    pub roles: String,
    /// Lifecycle state.
    pub state: NodeState,
    /// Whether the pod passes its readiness probe.
    pub ready: bool,
    /// Whether the broker appears in the cluster's metadata (registered and unfenced).
    pub registered: bool,
    /// Whether the pod runs the desired configuration and template.
    pub up_to_date: bool,
}

/// Lifecycle state of a node.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum NodeState {
    /// Pod not created or not ready yet.
    Pending,
    /// Serving.
    Active,
    /// Newly added broker receiving partitions.
    Commissioning,
    /// Leaving broker whose partitions are being moved away.
    Draining,
    /// Being restarted by a rolling restart.
    Restarting,
}

/// The operation in progress.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    /// Kind of operation.
    #[serde(default)]
    pub kind: OperationKind,
    /// Human-readable progress or the reason it is blocked.
    #[serde(default)]
    pub message: String,
    /// Units of work done (e.g. ready nodes, restarted pods).
    #[serde(default)]
    pub done: i32,
    /// Units of work in total.
    #[serde(default)]
    pub total: i32,
    /// What the current step waits for (`topic-partition: reason`, or a pod or broker), while
    /// it waits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<String>,
    /// Bytes the operation's partition moves have copied so far (commissioning, draining).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_moved: Option<u64>,
    /// Bytes its moves still have to copy: the batch in flight and the moves not submitted yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_remaining: Option<u64>,
    /// Average copy rate since the operation's first batch, pauses between batches included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<u64>,
    /// When the remaining bytes will be copied at that rate (RFC 3339); absent while paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<String>,
}

/// Kind of operation in progress.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OperationKind {
    /// Nothing to do: the cluster matches its spec.
    #[default]
    None,
    /// First creation: waiting for all nodes to become ready.
    Creating,
    /// Nodes are being added or removed.
    Scaling,
    /// Pods are being restarted to pick up a new configuration or image.
    Rolling,
    /// Partitions are being moved off leaving brokers, which are then removed.
    Draining,
    /// New brokers are receiving their share of partitions.
    Commissioning,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(yaml: &str) -> KafkaCluster {
        serde_yaml::from_str(yaml).expect("fixture parses")
    }

    const DEDICATED: &str = "{apiVersion: kafka.tributary.dev/v1alpha1, kind: KafkaCluster, metadata: {name: demo}, spec: {controllers: {replicas: 3, storage: {size: 1Gi}}, brokers: {replicas: 3, storage: {size: 1Gi}}}}";
    const COMBINED: &str = "{apiVersion: kafka.tributary.dev/v1alpha1, kind: KafkaCluster, metadata: {name: demo}, spec: {combined: true, brokers: {replicas: 3, storage: {size: 1Gi}}}}";

    #[test]
    fn cel_refuses_flipping_combined() {
        let old = serde_json::to_value(cluster(DEDICATED).spec).expect("json");
        let new = serde_json::to_value(cluster(COMBINED).spec).expect("json");
        let err = KafkaClusterSpec::validate_cel(&new, Some(&old)).expect_err("flip refused");
        assert!(
            format!("{err:?}").contains("spec.combined cannot be changed"),
            "{err:?}"
        );
        assert!(KafkaClusterSpec::validate_cel(&old, Some(&old)).is_ok());
        assert!(
            KafkaClusterSpec::validate_cel(&new, None).is_ok(),
            "creation is fine"
        );
    }

    #[test]
    fn cel_requires_controllers_unless_combined_and_racks_for_per_rack_restarts() {
        let spec = |yaml: &str| serde_json::to_value(cluster(yaml).spec).expect("json");
        let refused = |v: &serde_json::Value, what: &str| {
            let err = KafkaClusterSpec::validate_cel(v, None).expect_err(what);
            format!("{err:?}")
        };
        assert!(KafkaClusterSpec::validate_cel(&spec(DEDICATED), None).is_ok());
        assert!(KafkaClusterSpec::validate_cel(&spec(COMBINED), None).is_ok());
        let mut both = spec(COMBINED);
        both["controllers"] = spec(DEDICATED)["controllers"].clone();
        assert!(refused(&both, "combined with controllers").contains("must be omitted"));
        let mut neither = spec(DEDICATED);
        neither.as_object_mut().expect("spec").remove("controllers");
        assert!(refused(&neither, "no controllers").contains("is required"));
        let mut per_rack = spec(DEDICATED);
        per_rack["rollingUpdate"] = serde_json::json!({ "maxUnavailablePerRack": 2 });
        assert!(refused(&per_rack, "per rack without racks").contains("needs spec.rack"));
        per_rack["rack"] = serde_json::json!({ "topologyKey": "topology.kubernetes.io/zone" });
        assert!(KafkaClusterSpec::validate_cel(&per_rack, None).is_ok());
        let mut one = spec(DEDICATED);
        one["rollingUpdate"] = serde_json::json!({ "maxUnavailablePerRack": 1 });
        assert!(KafkaClusterSpec::validate_cel(&one, None).is_ok());
    }

    #[test]
    fn cel_refuses_names_that_are_not_service_names() {
        assert!(cluster(DEDICATED).validate_cel().is_ok());
        for bad in ["Demo", "kafka.prod", "1kafka", "kafka-"] {
            let mut kc = cluster(DEDICATED);
            kc.metadata.name = Some(bad.to_owned());
            let err = kc.validate_cel().expect_err("name refused");
            assert!(format!("{err:?}").contains("RFC 1035"), "{bad}: {err:?}");
        }
        let mut kc = cluster(DEDICATED);
        kc.metadata.name = Some("x".repeat(41));
        assert!(kc.validate_cel().is_err(), "41 characters refused");
    }
}

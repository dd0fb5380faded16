//! The day-2 planner's vocabulary: what it is told (the desired brokers, the pods, the Kafka
//! cluster's brokers and partitions, the operation state kept in status) and what it answers
//! (one action and the status that explains it). Plain serde data, so decisions are tested from
//! YAML fixtures and the state can be kept in a resource's status. Nothing here decides anything;
//! that is `decide`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tributary_planner::Move;

use super::progress::{ByteProgress, MoveProgress};

/// A Kafka node id (broker or controller).
pub type NodeId = i32;

/// Partitions per reassignment batch unless the spec says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 10;
/// `min.insync.replicas` when neither the cluster nor the topic sets it (Kafka's default).
pub const DEFAULT_MIN_INSYNC_REPLICAS: usize = 1;

/// Everything one decision is made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Day2Input {
    pub spec: DesiredCluster,
    pub kube: ObservedKube,
    pub kafka: ObservedKafka,
    /// The operation state the previous pass kept in status (empty on a new cluster).
    #[serde(default)]
    pub state: Day2State,
    /// The current time (RFC 3339): blocked steps say since when they wait.
    pub now: String,
}

/// What the spec asks for, reduced to what day-2 decisions need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredCluster {
    /// Node ids of the brokers the spec wants (from the broker pool's ordinals).
    pub brokers: Vec<NodeId>,
    /// Cluster-wide `min.insync.replicas` (topics may override it, see `ObservedKafka`).
    #[serde(default = "default_min_isr")]
    pub min_insync_replicas: usize,
    /// Most partitions one reassignment batch moves.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Replication throttle for moves, in bytes per second (none when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_bytes_per_second: Option<u64>,
    /// `spec.rebalance.paused`: no new batch of moves is submitted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// `spec.rollingUpdate.maxUnavailablePerRack`: how many broker-only pods of one rack a
    /// rolling restart may take down together (1: one pod at a time).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub max_unavailable_per_rack: usize,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn default_min_isr() -> usize {
    DEFAULT_MIN_INSYNC_REPLICAS
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

/// The cluster's Kubernetes objects as observed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedKube {
    /// `spec.replicas` of the broker StatefulSet (for a combined cluster: the node StatefulSet).
    pub broker_replicas: i32,
    /// Every pod of the cluster.
    #[serde(default)]
    pub pods: Vec<PodView>,
}

/// One pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    pub name: String,
    pub node_id: NodeId,
    /// Hosts partitions (`broker` or combined).
    #[serde(default)]
    pub broker: bool,
    /// Votes in the controller quorum (`controller` or combined).
    #[serde(default)]
    pub controller: bool,
    pub ready: bool,
    /// Runs the desired config and template (its hash annotation matches).
    #[serde(default = "yes")]
    pub up_to_date: bool,
}

fn yes() -> bool {
    true
}

/// The Kafka cluster as its admin APIs report it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedKafka {
    /// Registered brokers (fenced ones included).
    #[serde(default)]
    pub brokers: Vec<BrokerView>,
    /// The active controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_controller: Option<NodeId>,
    /// Every partition.
    #[serde(default)]
    pub partitions: Vec<PartitionView>,
    /// `min.insync.replicas` per topic: the value in effect as the cluster reports it (the
    /// real admin client lists every topic, override or broker default; fixtures and the fake
    /// list overrides only). A topic not listed uses the spec's cluster-wide value.
    #[serde(default)]
    pub topic_min_insync_replicas: BTreeMap<String, usize>,
    /// Bytes in each broker's log directory (DescribeLogDirs).
    #[serde(default)]
    pub log_dir_bytes: BTreeMap<NodeId, u64>,
    /// Each controller quorum voter and how many metadata records it is behind the active
    /// controller (DescribeQuorum). Empty when the quorum was not observed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quorum_lag: BTreeMap<NodeId, i64>,
    /// Unfenced brokers that did not answer their own DescribeLogDirs or DescribeConfigs (hung
    /// or unreachable): their sizes and cordon state are unknown.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub unanswered: BTreeSet<NodeId>,
}

/// One registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerView {
    pub id: NodeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// Fenced: registered but not serving (down, or not caught up).
    #[serde(default)]
    pub fenced: bool,
    /// Cordoned (KIP-1066): receives no new replicas.
    #[serde(default)]
    pub cordoned: bool,
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionView {
    pub topic: String,
    pub partition: i32,
    /// Assigned replicas (during a reassignment: the union of old and new).
    pub replicas: Vec<NodeId>,
    /// In-sync replicas.
    pub isr: Vec<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<NodeId>,
    /// Replicas a reassignment in progress adds (ListPartitionReassignments).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<NodeId>,
    /// Replicas a reassignment in progress removes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<NodeId>,
    /// Size of one replica (DescribeLogDirs).
    #[serde(default)]
    pub size_bytes: u64,
    /// What the replicas being added hold so far, together (DescribeLogDirs): how much of the
    /// move is copied.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub adding_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl PartitionView {
    /// Whether a reassignment of this partition is in progress.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// Whether every assigned replica is in the ISR.
    pub fn fully_in_sync(&self) -> bool {
        self.replicas.iter().all(|r| self.isr.contains(r))
    }

    /// `topic-partition`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

/// The long operation in progress and what it needs to resume, kept in status between passes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Day2State {
    /// Brokers already given their share of partitions (commissioned); a registered broker not
    /// listed here is new.
    #[serde(default)]
    pub known_brokers: Vec<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// When the current step started waiting on a gate (RFC 3339), while it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_since: Option<String>,
    /// A replication throttle was set with submitted moves and is still in place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub throttled: bool,
    /// The current step has asked for a preferred leader election (once per step: a second
    /// pass waits for it, or goes on, instead of asking again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaders_elected: bool,
    /// The operation's partition moves so far (bytes), from its first batch until it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moves: Option<MoveProgress>,
}

/// A long operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Operation {
    /// New brokers are receiving partitions (a `Balance` plan, in batches).
    #[serde(rename_all = "camelCase")]
    Commissioning {
        brokers: Vec<NodeId>,
        /// Partitions submitted so far.
        moved: Vec<String>,
    },
    /// Leaving brokers are being emptied, then removed.
    #[serde(rename_all = "camelCase")]
    Decommissioning {
        brokers: Vec<NodeId>,
        /// Partitions submitted so far: each must be fully in sync before the StatefulSet shrinks.
        moved: Vec<String>,
        /// The StatefulSet was shrunk; what is left is unregistering the brokers.
        scaled_down: bool,
    },
    /// A pod was restarted (with `rackPeers`: broker pods of its rack restarted together with
    /// it); the next one waits for all of them to be back in every ISR.
    #[serde(rename_all = "camelCase")]
    Restarting {
        pod: String,
        node_id: NodeId,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rack_peers: Vec<RestartingPod>,
    },
}

/// A pod a rolling restart has taken down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartingPod {
    pub pod: String,
    pub node_id: NodeId,
}

impl Operation {
    /// The pods a `Restarting` step took down (none for other operations).
    pub fn restarting(&self) -> Vec<RestartingPod> {
        match self {
            Operation::Restarting {
                pod,
                node_id,
                rack_peers,
            } => std::iter::once(RestartingPod {
                pod: pod.clone(),
                node_id: *node_id,
            })
            .chain(rack_peers.iter().cloned())
            .collect(),
            _ => Vec::new(),
        }
    }
}

/// The one thing to do this pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Day2Action {
    /// Nothing to do: the cluster matches the spec.
    None,
    /// An operation is under way or blocked by a gate: check again later.
    Wait,
    /// The spec asks for something that cannot be done safely; nothing is done.
    #[serde(rename_all = "camelCase")]
    Refuse { reason: String },
    /// Cordon these brokers so they receive no new replicas.
    Cordon { brokers: Vec<NodeId> },
    /// Uncordon these brokers (a cancelled decommission).
    Uncordon { brokers: Vec<NodeId> },
    /// Submit these moves as KIP-455 reassignments.
    #[serde(rename_all = "camelCase")]
    Reassign {
        moves: Vec<Move>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        throttle_bytes_per_second: Option<u64>,
    },
    /// Remove the replication throttle the moves were submitted with (they are all finished).
    ClearThrottle,
    /// Set the broker StatefulSet's replicas.
    ScaleBrokers { replicas: i32 },
    /// Unregister these (stopped, empty) brokers.
    Unregister { brokers: Vec<NodeId> },
    /// Delete this pod (its StatefulSet recreates it with the new template), and with it the
    /// pods of `with` (broker pods of the same rack, `maxUnavailablePerRack`).
    RestartPod {
        pod: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        with: Vec<String>,
    },
    /// Move leadership of these partitions (`topic-partition`) back to their preferred (first)
    /// replica (ElectLeaders, preferred).
    ElectLeaders { partitions: Vec<String> },
}

/// Kind of operation reported in status (`status.operation.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReportedOperation {
    None,
    Commissioning,
    Draining,
    Rolling,
}

/// A partition that blocks a step, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blocker {
    /// `topic-partition`.
    pub partition: String,
    pub reason: String,
}

/// The decision: the action, the state to keep in status and the words that explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub action: Day2Action,
    pub state: Day2State,
    pub operation: ReportedOperation,
    pub message: String,
    /// Partitions that block the current step (empty unless `Wait` on a gate).
    #[serde(default)]
    pub blocked: Vec<Blocker>,
    /// Topics a gate does not wait for (RF ≤ min.insync.replicas), with why.
    #[serde(default)]
    pub skipped: Vec<String>,
    /// Units done and in total for the operation (partitions moved, pods restarted).
    pub done: usize,
    pub total: usize,
    /// Bytes moved and remaining, rate and ETA, while the operation moves partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<ByteProgress>,
}

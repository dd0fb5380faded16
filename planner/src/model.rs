//! The planner's vocabulary: what the caller tells it about the cluster ([`BrokerInfo`],
//! [`PartitionInfo`]), what it is asked to achieve ([`Goal`]) and what it answers ([`Plan`] of
//! [`Move`]s). Plain serde data, so the operator can keep a plan in a resource's status and the
//! admin CLI can print it as JSON. Nothing here computes a plan (see [`crate::plan`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A broker's node id, as in Kafka's `node.id` and in replica lists.
pub type BrokerId = i32;

/// One registered broker as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerInfo {
    /// The broker's node id.
    pub id: BrokerId,
    /// Its `broker.rack`. A broker without a rack is treated as alone in a rack of its own.
    pub rack: Option<String>,
    /// Cordoned (KIP-1066): the broker keeps the replicas it has but receives no new ones, and a
    /// `Balance` neither moves replicas onto it nor off it.
    #[serde(default)]
    pub cordoned: bool,
}

/// One partition and where its replicas are now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionInfo {
    /// Topic name.
    pub topic: String,
    /// Partition index within the topic.
    pub partition: i32,
    /// Assigned replicas in preference order: the first is the preferred leader. A replica on a
    /// broker missing from the broker list (an unregistered broker) is always moved away.
    pub replicas: Vec<BrokerId>,
    /// The partition's size on one replica; what one added replica costs to copy.
    pub size_bytes: u64,
}

/// What a plan should achieve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Goal {
    /// Decommission: move every replica off these brokers onto brokers that are neither
    /// cordoned nor draining, and move nothing else.
    Drain(BTreeSet<BrokerId>),
    /// Commission or rebalance: spread replicas so every usable (non-cordoned) broker holds
    /// within one replica of the mean (or as close as moves that keep each partition's racks
    /// allow), moving as few replicas and bytes as possible.
    Balance,
    /// Change one topic's replication factor, adding replicas on the least-loaded brokers or
    /// removing the ones whose loss costs least (duplicated racks, cordoned or loaded brokers).
    SetReplicationFactor {
        /// The topic to change.
        topic: String,
        /// Its new replication factor (at least 1).
        replication_factor: usize,
    },
}

/// One partition whose replica list changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Move {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The replica list before the move.
    pub current: Vec<BrokerId>,
    /// The replica list to submit (first = preferred leader). Its length equals `current`'s
    /// unless the goal changes the replication factor.
    pub target: Vec<BrokerId>,
    /// The partition's size on one replica.
    pub size_bytes: u64,
}

impl Move {
    /// Brokers in `target` that are not in `current`: they copy the partition.
    pub fn added(&self) -> Vec<BrokerId> {
        self.target
            .iter()
            .copied()
            .filter(|b| !self.current.contains(b))
            .collect()
    }

    /// Brokers in `current` that are not in `target`: they delete their copy once it completes.
    pub fn removed(&self) -> Vec<BrokerId> {
        self.current
            .iter()
            .copied()
            .filter(|b| !self.target.contains(b))
            .collect()
    }

    /// Bytes this move copies: the size times the number of added replicas (0 for a reordering,
    /// which only changes the preferred leader).
    pub fn bytes(&self) -> u64 {
        self.size_bytes * self.added().len() as u64
    }
}

/// A reassignment plan and the load it leads to.
///
/// The per-broker maps hold every broker of the input (and any unregistered broker that held a
/// replica), including those with zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Partitions whose replica list changes, in (topic, partition) order.
    pub moves: Vec<Move>,
    /// Sum of [`Move::bytes`]: what the plan copies between brokers.
    pub bytes_to_move: u64,
    /// Replicas per broker before the plan.
    pub replicas_per_broker_before: BTreeMap<BrokerId, usize>,
    /// Replicas per broker after the plan.
    pub replicas_per_broker_after: BTreeMap<BrokerId, usize>,
    /// Preferred leaders (first replicas) per broker before the plan.
    pub leaders_per_broker_before: BTreeMap<BrokerId, usize>,
    /// Preferred leaders per broker after the plan.
    pub leaders_per_broker_after: BTreeMap<BrokerId, usize>,
}

impl Plan {
    /// True when the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }
}

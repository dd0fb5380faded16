//! Why a plan cannot be made: malformed input, or a goal the cluster cannot satisfy. An empty
//! cluster is not an error (its plan is empty).

use crate::model::BrokerId;

/// A goal that cannot be planned, or input that does not describe a cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The broker list names the same id twice.
    #[error("broker {0} is listed twice")]
    DuplicateBroker(BrokerId),
    /// The partition list names the same partition twice.
    #[error("partition {topic}-{partition} is listed twice")]
    DuplicatePartition {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// A replica list names the same broker twice.
    #[error("partition {topic}-{partition} lists broker {broker} twice")]
    DuplicateReplica {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The repeated broker.
        broker: BrokerId,
    },
    /// A partition has an empty replica list.
    #[error("partition {topic}-{partition} has no replicas")]
    NoReplicas {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// The goal names brokers that are not in the broker list (sorted).
    #[error("the goal names unknown brokers {0:?}")]
    UnknownBrokers(Vec<BrokerId>),
    /// A drain would leave no broker that may receive replicas.
    #[error("draining these brokers leaves no broker that may receive replicas")]
    NoUsableBrokers,
    /// `SetReplicationFactor` names a topic with no partition in the input.
    #[error("topic {0} is unknown")]
    UnknownTopic(String),
    /// `SetReplicationFactor` asks for zero replicas.
    #[error("replication factor must be at least 1")]
    InvalidReplicationFactor,
    /// A partition needs more replicas than there are brokers allowed to hold one.
    #[error(
        "partition {topic}-{partition} needs {needed} replicas but only {available} brokers may hold one"
    )]
    NotEnoughBrokers {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Its (target) replication factor.
        needed: usize,
        /// Brokers that may hold a replica of it: usable ones plus cordoned ones it already uses.
        available: usize,
    },
}

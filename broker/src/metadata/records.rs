//! The records of the cluster metadata log. Every change to cluster state (brokers, topics,
//! partitions, configs) is one of these, replicated by the controller quorum and applied in log
//! order to a [`MetadataImage`](super::image::MetadataImage). Records are facts, not requests:
//! validation happens before they are written (see `controller`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One metadata record. A batch of them is committed atomically as one Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// A broker announced itself (or came back with a new incarnation).
    RegisterBroker(BrokerRegistration),
    /// A broker was removed from the cluster.
    UnregisterBroker { broker_id: i32 },
    /// A registered broker is fenced (missed heartbeats, or asked to be): it leads nothing and
    /// is not offered to clients. `epoch` is the registration it applies to.
    FenceBroker { broker_id: i32, epoch: i64 },
    /// A fenced broker caught up with the metadata log and serves again.
    UnfenceBroker { broker_id: i32, epoch: i64 },
    /// A broker asked to shut down: it is fenced for new leaderships while it drains.
    ControlledShutdown { broker_id: i32, epoch: i64 },
    /// The cluster's id, written once by the first active controller.
    ClusterId { cluster_id: String },
    /// A topic came into existence with its topic-level config overrides.
    Topic {
        name: String,
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// A partition's full state (created, or replaced wholesale).
    Partition(PartitionRecord),
    /// A topic and all its partitions are gone.
    RemoveTopic { topic_id: Uuid },
    /// A block of producer ids was handed to a broker; the next block starts at
    /// `next_producer_id`.
    ProducerIds {
        broker_id: i32,
        next_producer_id: i64,
    },
    /// Set (`Some`) or remove (`None`) a config of a resource.
    Config {
        resource: ConfigResource,
        name: String,
        value: Option<String>,
    },
}

/// A broker's registration: who it is and where clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    pub incarnation_id: Uuid,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    /// The broker epoch of this registration: a new one on every registration, so that
    /// heartbeats and fencing of an older incarnation are recognised as stale.
    #[serde(default)]
    pub epoch: i64,
    /// Fenced brokers lead no partition and are not listed to clients. A broker registers
    /// fenced and is unfenced once it has caught up with the metadata log.
    #[serde(default)]
    pub fenced: bool,
    /// Set while a controlled shutdown moves leadership away from the broker.
    #[serde(default)]
    pub in_controlled_shutdown: bool,
}

impl BrokerRegistration {
    /// Whether the broker may lead partitions and join ISRs.
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// The replicated state of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub topic_id: Uuid,
    pub partition: i32,
    /// The assignment (AR), in preference order.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1 when no replica can lead.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// KIP-455: while a reassignment runs, `replicas` is the target followed by the replicas
    /// leaving; these are the target replicas not in the original assignment (they join as
    /// followers and must reach the ISR) ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// ... and the original replicas not in the target (removed when the reassignment
    /// completes). Both empty: no reassignment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
    /// The assignment before the reassignment, in its order, so that a cancel restores it
    /// exactly (preferred leader included); empty when no reassignment runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub original_replicas: Vec<i32>,
}

/// Which resource a config belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    /// A broker's dynamic config; `None` is the cluster-wide default.
    Broker(Option<i32>),
}

//! Day-2 operations, planned: commissioning (new brokers receive partitions), decommissioning
//! (leaving brokers are drained before their StatefulSet shrinks) and rolling restarts (one pod
//! at a time, behind ISR gates). `decide` is one pure function from what the spec wants, what
//! Kubernetes and the Kafka cluster show and the operation kept in status, to the one next safe
//! action and the status that explains it; it uses `tributary_planner` for the moves.
//!
//! Not here: carrying the action out. `admin::KafkaAdmin` has a call for every input and action
//! (`observe` builds `ObservedKafka`; `reassign`, `set_replication_throttle`,
//! `clear_replication_throttle`, `set_cordon`, `unregister_broker`; `describe_quorum` for
//! controller lag), on the real client and on `admin::fake`, whose partitions let the decisions
//! be exercised over many passes. The reconciler does not call `decide` nor those calls yet (see
//! `docs/operations.md`, "Not yet").

mod commission;
pub mod decide;
mod decommission;
pub mod gates;
pub mod model;
mod restart;

pub use decide::decide;
pub use model::{
    Blocker, BrokerView, Day2Action, Day2Input, Day2State, Decision, DesiredCluster, NodeId,
    ObservedKafka, ObservedKube, Operation, PartitionView, PodView, ReportedOperation,
};

#[cfg(test)]
mod fixture_tests;

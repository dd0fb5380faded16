//! Day-2 operations, planned: commissioning (new brokers receive partitions), decommissioning
//! (leaving brokers are drained before their StatefulSet shrinks) and rolling restarts (one pod
//! at a time, behind ISR gates). `decide` is one pure function from what the spec wants, what
//! Kubernetes and the Kafka cluster show and the operation kept in status, to the one next safe
//! action and the status that explains it; it uses `tributary_planner` for the moves.
//!
//! Not here: carrying the action out. The `KafkaCluster` reconciler does that once per pass
//! (`cluster::operate::run_day2`): it observes the cluster with `admin::KafkaAdmin::observe`,
//! builds the input from the validated spec and the pods (`cluster::day2`), calls `decide`, and
//! performs the action with the admin client (`set_cordon`, `set_replication_throttle` +
//! `reassign`, `clear_replication_throttle`, `unregister_broker`) or the Kubernetes API (the
//! broker StatefulSet's replicas, one pod deletion); `Day2State` is kept in
//! `KafkaCluster.status.day2` between passes, so a restarted operator resumes. The controllers'
//! lag (DescribeQuorum, in `observe`) gates their restarts (`gates`).

mod commission;
pub mod decide;
mod decommission;
pub mod gates;
pub mod model;
pub mod progress;
mod restart;

pub use decide::decide;
pub use model::{
    Blocker, BrokerView, Day2Action, Day2Input, Day2State, Decision, DesiredCluster, NodeId,
    ObservedKafka, ObservedKube, Operation, PartitionView, PodView, ReportedOperation,
};

#[cfg(test)]
mod fixture_tests;

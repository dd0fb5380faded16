//! Tributary's Kubernetes operator: the `KafkaCluster` and `KafkaTopic` custom resources, the pure
//! validation/planning/building code that turns them into workloads and admin actions, the
//! reconcilers that apply those plans, and the small Kafka admin client they use.
//!
//! The crate deliberately keeps all decisions in pure functions (`cluster::validate`,
//! `cluster::build`, `cluster::status`, `cluster::storage`, `topic::plan`, `day2::decide`) and
//! keeps I/O in thin reconcile layers. `day2` plans commissioning, decommissioning and rolling
//! restarts but is not called by the reconciler yet.

pub mod admin;
pub mod cluster;
pub mod context;
pub mod crd;
pub mod day2;
pub mod error;
pub mod runtime;
pub mod topic;

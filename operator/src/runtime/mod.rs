//! The operator process around the reconcilers: metrics, the HTTP endpoints, leader election.

pub mod metrics;

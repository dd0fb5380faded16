//! The operator process around the reconcilers: metrics, the HTTP endpoints, leader election.

pub mod http;
pub mod leader;
pub mod metrics;

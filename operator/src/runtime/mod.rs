//! The operator process around the reconcilers: metrics, the HTTP endpoints, leader election, requeue
//! backoff.

pub mod backoff;
pub mod http;
pub mod leader;
pub mod metrics;

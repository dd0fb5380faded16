//! `KafkaCluster` handling: `validate` (spec → `ValidatedCluster`), `build` (desired objects),
//! `status` (observed state → status), all pure; `reconcile` applies them through the API.

pub mod build;
pub mod reconcile;
pub mod status;
pub mod storage;
pub mod validate;

#[cfg(test)]
pub(crate) mod fixtures;

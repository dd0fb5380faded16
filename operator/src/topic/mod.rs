//! `KafkaTopic` handling: `plan` (pure decisions) and `reconcile` (admin calls and status).

pub mod plan;
pub mod reconcile;

//! `KafkaCluster` handling: `validate` (spec → `ValidatedCluster`, refusals of unsafe changes),
//! `build` (desired objects), `status` (observed state → status), `storage` (what a changed
//! `storage` section allows), all pure; `reconcile` applies them through the API, with
//! `volumes` for claim templates and claim resizing; `day2` (pure) and `operate` connect the
//! reconciler to the day-2 planner; `dynamic` applies the broker configs that need no restart.

pub mod build;
pub mod day2;
pub mod dynamic;
pub mod operate;
pub mod reconcile;
pub mod status;
pub mod storage;
pub mod validate;
mod volumes;

#[cfg(test)]
pub(crate) mod fixtures;

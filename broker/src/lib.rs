//! Tributary's broker: a Kafka-compatible message broker.
//!
//! `config` loads Kafka-named properties; `metadata` holds the Raft-replicated cluster metadata
//! and the controller; the partition logs live in the `tributary-log` crate.

pub mod config;
pub mod fsutil;
pub mod metadata;
pub mod topic_config;

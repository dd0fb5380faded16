//! Tributary's broker: a Kafka-compatible message broker.
//!
//! `config` loads Kafka-named properties; `metadata` holds the Raft-replicated cluster metadata
//! and the controller; the partition logs live in the `tributary-log` crate.

pub mod alloc;
pub mod api;
pub mod broker;
pub mod cli;
pub mod config;
pub mod fsutil;
pub mod group;
pub mod health;
pub mod http;
pub mod lifecycle;
pub mod logging;
pub mod meta_properties;
pub mod metadata;
pub mod metrics;
pub mod producer_ids;
pub mod replica;
pub mod server;
pub mod start_error;
pub mod topic_config;

/// Every binary and test linking the broker uses its allocator (see `alloc`).
#[global_allocator]
static GLOBAL: alloc::Allocator = alloc::Allocator;

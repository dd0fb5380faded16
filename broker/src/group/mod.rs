//! The group coordinator (Kafka's classic consumer-group protocol) and durable offsets.
//!
//! `state` is the pure per-group state machine; `coordinator` drives it (parked JoinGroup and
//! SyncGroup requests, timers) and serves the group APIs; `offsets` holds committed offsets;
//! `records` is the `__consumer_offsets` record format (Kafka's own key/value schemas);
//! `storage` loads a `__consumer_offsets` partition and appends to it. Incremental cooperative
//! rebalancing needs nothing here beyond following the protocol exactly: the assignors run in
//! the clients.
//!
//! Not here: the KIP-848 consumer protocol (ConsumerGroupHeartbeat), transactional offset
//! commits, and log compaction itself (the log crate's cleaner keeps the latest record per key;
//! this module only writes tombstones).

pub mod coordinator;
pub mod load;
pub mod offsets;
pub mod records;
pub mod state;
pub mod storage;

use std::time::Duration;

pub use coordinator::{GroupCoordinator, GroupLog};

/// The coordinator's settings, from Kafka's broker properties.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`, used when the topic is created.
    pub offsets_partitions: i32,
    /// `offsets.topic.replication.factor` (capped at the number of brokers).
    pub offsets_replication_factor: i16,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    /// `offsets.retention.minutes`, counted from when a group became empty.
    pub offsets_retention: Duration,
    /// `offsets.retention.check.interval.ms`.
    pub retention_check_interval: Duration,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.topic.segment.bytes`: `segment.bytes` of `__consumer_offsets` when it is
    /// created (small segments let the cleaner compact it sooner).
    pub offsets_segment_bytes: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_partitions: 50,
            offsets_replication_factor: 3,
            initial_rebalance_delay: Duration::from_millis(3000),
            min_session_timeout: Duration::from_millis(6000),
            max_session_timeout: Duration::from_millis(1_800_000),
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            retention_check_interval: Duration::from_millis(600_000),
            offset_metadata_max_bytes: 4096,
            offsets_segment_bytes: 104_857_600,
        }
    }
}

impl GroupConfig {
    /// Reads the group properties; a missing or unparsable value keeps Kafka's default.
    pub fn from_broker(config: &crate::config::BrokerConfig) -> Self {
        let d = GroupConfig::default();
        let num = |name: &str| -> Option<u64> { config.get(name)?.0.trim().parse().ok() };
        let ms = |name: &str, default: Duration| num(name).map_or(default, Duration::from_millis);
        GroupConfig {
            offsets_partitions: num("offsets.topic.num.partitions")
                .and_then(|n| i32::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(d.offsets_partitions),
            offsets_replication_factor: num("offsets.topic.replication.factor")
                .and_then(|n| i16::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(d.offsets_replication_factor),
            initial_rebalance_delay: ms(
                "group.initial.rebalance.delay.ms",
                d.initial_rebalance_delay,
            ),
            min_session_timeout: ms("group.min.session.timeout.ms", d.min_session_timeout),
            max_session_timeout: ms("group.max.session.timeout.ms", d.max_session_timeout),
            offsets_retention: num("offsets.retention.minutes").map_or(d.offsets_retention, |m| {
                Duration::from_secs(m.saturating_mul(60))
            }),
            retention_check_interval: ms(
                "offsets.retention.check.interval.ms",
                d.retention_check_interval,
            ),
            offset_metadata_max_bytes: num("offset.metadata.max.bytes")
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(d.offset_metadata_max_bytes),
            offsets_segment_bytes: num("offsets.topic.segment.bytes")
                .filter(|n| (14..=i32::MAX as u64).contains(n))
                .unwrap_or(d.offsets_segment_bytes),
        }
    }
}

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Java's `String.hashCode` over UTF-16 code units, as Kafka uses to place a group.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition that owns a group: `abs(hash) % partitions`, with
/// Kafka's `Utils.abs` (which maps `i32::MIN` to 0).
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let h = java_string_hash(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_placement_matches_kafka() {
        // Values computed with Java's "…".hashCode().
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("group"), 98_629_247);
        assert_eq!(partition_for("group", 50), 98_629_247 % 50);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert!((0..50).contains(&partition_for("my-consumer-group", 50)));
    }
}

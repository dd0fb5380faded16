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

pub mod state;

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

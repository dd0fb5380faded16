//! Helpers shared by the log's integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::Path;

use tributary_log::testing::{decode_test_records, simple_batch};
use tributary_log::{BatchHeader, BatchIter, Log, LogConfig, Offset, TopicPartition};

pub const TOPIC_ID: [u8; 16] = [9; 16];

pub fn tp() -> TopicPartition {
    TopicPartition::new("orders-eu", 3)
}

/// A config with small index intervals so tests exercise the indexes.
pub fn config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

pub fn new_log(root: &Path, config: LogConfig) -> Log {
    Log::create(root, &tp(), TOPIC_ID, config).unwrap()
}

/// Appends a batch of `n` records with timestamps from `ts`; returns (first, last) offsets.
pub fn append(log: &mut Log, n: usize, ts: i64) -> (i64, i64) {
    let mut batch = simple_batch(n, ts);
    let info = log.append_as_leader(&mut batch, 1, ts).unwrap();
    (info.first_offset.0, info.last_offset.0)
}

/// Headers of the whole batches in `records`, asserting there is no junk.
pub fn headers(records: &[u8]) -> Vec<BatchHeader> {
    let mut it = BatchIter::new(records);
    let out: Vec<BatchHeader> = it.by_ref().map(|r| r.unwrap().0).collect();
    assert_eq!(it.truncated_tail(), None);
    out
}

/// Offsets and values of every record in `records`.
pub fn records(records: &[u8]) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for item in BatchIter::new(records) {
        let (_, bytes) = item.unwrap();
        tributary_log::batch::verify_crc(bytes).unwrap();
        for (offset, _, value) in decode_test_records(bytes).unwrap() {
            out.push((offset, String::from_utf8(value).unwrap()));
        }
    }
    out
}

/// Offsets of every record readable from `start` up to the log end.
pub fn all_offsets(log: &Log, start: i64) -> Vec<i64> {
    let r = log
        .read(Offset(start), usize::MAX, Offset(i64::MAX), true)
        .unwrap();
    records(&r.records).into_iter().map(|(o, _)| o).collect()
}

pub fn partition_dir(root: &Path) -> std::path::PathBuf {
    root.join(tp().to_string())
}

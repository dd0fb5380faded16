//! Idempotent producers at the log: duplicates answered with the original offsets, sequence
//! and epoch checks, and the producer state surviving restarts (clean, unclean, without any
//! snapshot), truncation and retention.

#![allow(clippy::unwrap_used)] // tests may unwrap (CONVENTIONS 8)

mod common;

use std::fs;

use common::*;
use tributary_log::testing::{build_test_batch, TestBatch};
use tributary_log::{codes, Log, LogConfig, LogError, Offset};

fn idem(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    build_test_batch(&TestBatch {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        base_timestamp: 1_000,
        records: (0..n)
            .map(|i| {
                (
                    Some(b"k".to_vec()),
                    format!("p{pid}-s{}", seq + i as i32).into_bytes(),
                )
            })
            .collect(),
        ..TestBatch::default()
    })
}

fn produce(log: &mut Log, batch: &[u8]) -> Result<tributary_log::AppendInfo, LogError> {
    let mut b = batch.to_vec();
    log.append_as_leader(&mut b, 0, 1_000)
}

#[test]
fn a_retried_batch_gets_its_original_offsets_and_is_not_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), config());
    append(&mut log, 2, 1_000); // an unrelated non-idempotent producer
    let first = produce(&mut log, &idem(5, 0, 0, 3)).unwrap();
    assert_eq!((first.first_offset, first.duplicate), (Offset(2), false));
    produce(&mut log, &idem(5, 0, 3, 2)).unwrap();
    let retry = produce(&mut log, &idem(5, 0, 0, 3)).unwrap();
    assert!(retry.duplicate);
    assert_eq!(
        (retry.first_offset, retry.last_offset),
        (Offset(2), Offset(4))
    );
    assert_eq!(
        log.log_end_offset(),
        Offset(7),
        "nothing appended for the retry"
    );
    assert_eq!(all_offsets(&log, 0), (0..7).collect::<Vec<_>>());
}

#[test]
fn gaps_are_out_of_order_and_old_epochs_are_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), config());
    produce(&mut log, &idem(5, 1, 0, 3)).unwrap();
    let gap = produce(&mut log, &idem(5, 1, 4, 1)).unwrap_err();
    assert_eq!(gap.kafka_error_code(), codes::OUT_OF_ORDER_SEQUENCE_NUMBER);
    let fenced = produce(&mut log, &idem(5, 0, 3, 1)).unwrap_err();
    assert_eq!(fenced.kafka_error_code(), codes::INVALID_PRODUCER_EPOCH);
    assert_eq!(
        log.log_end_offset(),
        Offset(3),
        "refused batches are not stored"
    );
    produce(&mut log, &idem(5, 2, 0, 1)).unwrap();
    let stale = produce(&mut log, &idem(5, 1, 3, 1)).unwrap_err();
    assert_eq!(stale.kafka_error_code(), codes::INVALID_PRODUCER_EPOCH);
}

fn reopen(dir: &std::path::Path, log: Log, clean: bool) -> Log {
    let rp = log.recovery_point();
    drop(log);
    Log::open(&partition_dir(dir), config(), rp, clean).unwrap()
}

#[test]
fn duplicates_are_recognised_after_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), config());
    for seq in (0..15).step_by(3) {
        produce(&mut log, &idem(8, 0, seq, 3)).unwrap();
    }
    log.close().unwrap();
    let mut log = reopen(dir.path(), log, true);
    for seq in (0..15).step_by(3) {
        let r = produce(&mut log, &idem(8, 0, seq, 3)).unwrap();
        assert!(r.duplicate, "seq {seq}");
        assert_eq!(r.first_offset, Offset(i64::from(seq)));
    }
    assert_eq!(
        produce(&mut log, &idem(8, 0, 15, 1)).unwrap().first_offset,
        Offset(15)
    );
}

#[test]
fn state_is_rebuilt_from_the_log_without_snapshots_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), config());
    produce(&mut log, &idem(8, 0, 0, 2)).unwrap();
    produce(&mut log, &idem(9, 3, 7, 1)).unwrap();
    produce(&mut log, &idem(8, 0, 2, 2)).unwrap();
    // No close: an unclean stop, and no snapshot was ever written.
    let mut log = reopen(dir.path(), log, false);
    assert_eq!(log.producer_count(), 2);
    assert!(produce(&mut log, &idem(8, 0, 2, 2)).unwrap().duplicate);
    assert!(produce(&mut log, &idem(9, 3, 7, 1)).unwrap().duplicate);
    assert_eq!(
        produce(&mut log, &idem(9, 3, 9, 1))
            .unwrap_err()
            .kafka_error_code(),
        codes::OUT_OF_ORDER_SEQUENCE_NUMBER
    );
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        ..config()
    }
}

#[test]
fn rolls_write_snapshots_and_replay_covers_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::create(dir.path(), &tp(), TOPIC_ID, small_segments()).unwrap();
    for seq in 0..30 {
        produce(&mut log, &idem(4, 0, seq, 1)).unwrap();
    }
    assert!(log.segment_count() > 3);
    let snapshots = fs::read_dir(partition_dir(dir.path()))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "snapshot")
        })
        .count();
    assert_eq!(snapshots, log.segment_count() - 1, "one per roll");
    let rp = log.recovery_point();
    drop(log);
    let mut log = Log::open(&partition_dir(dir.path()), small_segments(), rp, false).unwrap();
    let (epoch, last) = log.last_producer_batch(4).unwrap();
    assert_eq!((epoch, last.last_seq, last.last_offset), (0, 29, 29));
    assert!(produce(&mut log, &idem(4, 0, 27, 1)).unwrap().duplicate);
}

#[test]
fn truncation_forgets_the_truncated_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::create(dir.path(), &tp(), TOPIC_ID, small_segments()).unwrap();
    for seq in 0..20 {
        produce(&mut log, &idem(4, 0, seq, 1)).unwrap();
    }
    log.truncate_to(Offset(12)).unwrap();
    let (_, last) = log.last_producer_batch(4).unwrap();
    assert_eq!(last.last_seq, 11);
    // The batch with sequence 12 is gone, so it is new again rather than a duplicate.
    let again = produce(&mut log, &idem(4, 0, 12, 1)).unwrap();
    assert_eq!((again.first_offset, again.duplicate), (Offset(12), false));
    log.truncate_fully_and_start_at(Offset(40)).unwrap();
    assert_eq!(log.producer_count(), 0);
}

#[test]
fn followers_learn_producer_state_from_the_leaders_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), config());
    let b = idem(6, 2, 10, 2);
    log.append_as_follower(&b).unwrap();
    let (epoch, last) = log.last_producer_batch(6).unwrap();
    assert_eq!((epoch, last.first_seq, last.last_seq), (2, 10, 11));
}

#[test]
fn retention_removes_snapshots_below_the_first_segment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_bytes: Some(800),
        ..small_segments()
    };
    let mut log = Log::create(dir.path(), &tp(), TOPIC_ID, cfg).unwrap();
    for seq in 0..40 {
        produce(&mut log, &idem(4, 0, seq, 1)).unwrap();
    }
    log.enforce_retention(2_000).unwrap();
    let first = log.segment_base_offsets()[0].0;
    for e in fs::read_dir(partition_dir(dir.path())).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".snapshot") {
            assert!(stem.parse::<i64>().unwrap() >= first, "{name}");
        }
    }
    // The producer is still known: retention does not make its next batch out of order.
    assert!(!produce(&mut log, &idem(4, 0, 40, 1)).unwrap().duplicate);
}

#[test]
fn a_torn_roll_snapshot_is_discarded_and_the_state_replayed() {
    // Rolls write producer snapshots without fsync (the rolled segment's flush syncs them
    // later), so a crash may leave the newest one torn.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::create(dir.path(), &tp(), TOPIC_ID, small_segments()).unwrap();
    for seq in 0..30 {
        produce(&mut log, &idem(4, 0, seq, 1)).unwrap();
    }
    let mut snapshots: Vec<_> = fs::read_dir(partition_dir(dir.path()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "snapshot"))
        .collect();
    snapshots.sort();
    let newest = snapshots.last().unwrap().clone();
    let len = fs::metadata(&newest).unwrap().len();
    drop(log);
    fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let mut log = Log::open(
        &partition_dir(dir.path()),
        small_segments(),
        Offset(0),
        false,
    )
    .unwrap();
    assert!(!newest.exists(), "the torn snapshot is removed");
    let (epoch, last) = log.last_producer_batch(4).unwrap();
    assert_eq!((epoch, last.last_seq, last.last_offset), (0, 29, 29));
    assert!(produce(&mut log, &idem(4, 0, 29, 1)).unwrap().duplicate);
}

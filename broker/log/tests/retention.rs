//! Retention, DeleteRecords, truncation, leader epochs, timestamp lookups and flushing.

#![allow(clippy::unwrap_used)] // tests may unwrap (CONVENTIONS 8)

mod common;

use std::time::Duration;

use common::*;
use tributary_log::testing::simple_batch;
use tributary_log::{LogConfig, LogError, Offset};

fn small_segments(batches_per_segment: u64) -> LogConfig {
    LogConfig {
        segment_bytes: simple_batch(2, 0).len() as u64 * batches_per_segment,
        retention_ms: None,
        ..config()
    }
}

#[test]
fn retention_by_bytes_deletes_oldest_segments_and_moves_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let seg_bytes = simple_batch(2, 0).len() as u64 * 2;
    let mut log = new_log(
        dir.path(),
        LogConfig {
            retention_bytes: Some(seg_bytes * 3 + 1),
            ..small_segments(2)
        },
    );
    for _ in 0..10 {
        append(&mut log, 2, 0);
    }
    assert_eq!(log.segment_count(), 5);
    let outcome = log.enforce_retention(0).unwrap();
    // 5 full segments; keeping ≥ 3 segments + 1 byte means keeping 4.
    assert_eq!(
        (outcome.deleted_segments, outcome.deleted_bytes),
        (1, seg_bytes)
    );
    assert_eq!(outcome.log_start_offset, Offset(4));
    assert_eq!(log.log_start_offset(), Offset(4));
    assert_eq!(log.log_end_offset(), Offset(20));
    assert!(log.size_bytes() > seg_bytes * 3);
    assert!(matches!(
        log.read(Offset(3), 100, Offset(20), true),
        Err(LogError::OffsetOutOfRange {
            log_start: Offset(4),
            ..
        })
    ));
    assert_eq!(all_offsets(&log, 4), (4..20).collect::<Vec<_>>());
    // A second pass has nothing more to delete.
    assert_eq!(log.enforce_retention(0).unwrap().deleted_segments, 0);
}

#[test]
fn retention_by_time_uses_each_segments_largest_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(
        dir.path(),
        LogConfig {
            retention_ms: Some(Duration::from_millis(1_000)),
            ..small_segments(2)
        },
    );
    for ts in [100, 200, 300, 5_000, 5_100, 5_200] {
        append(&mut log, 2, ts);
    }
    // Segments: [100,200] [300,5000] [5100,5200]; at 6_000 only the first is older than 1 s.
    let outcome = log.enforce_retention(6_000).unwrap();
    assert_eq!(outcome.deleted_segments, 1);
    assert_eq!(log.log_start_offset(), Offset(4));
    assert_eq!(log.segment_base_offsets(), vec![Offset(4), Offset(8)]);
}

#[test]
fn retention_by_time_rolls_and_deletes_the_active_segment_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(
        dir.path(),
        LogConfig {
            retention_ms: Some(Duration::from_millis(1_000)),
            ..small_segments(2)
        },
    );
    for _ in 0..5 {
        append(&mut log, 2, 100);
    }
    let outcome = log.enforce_retention(10_000).unwrap();
    assert_eq!(outcome.deleted_segments, 3);
    assert_eq!(log.segment_base_offsets(), vec![Offset(10)]);
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (Offset(10), Offset(10))
    );
    assert_eq!(log.size_bytes(), 0);
    // An empty active segment is never deleted; appends continue at the old log end.
    assert_eq!(log.enforce_retention(20_000).unwrap().deleted_segments, 0);
    assert_eq!(append(&mut log, 1, 20_000), (10, 10));
}

#[test]
fn delete_records_before_moves_log_start_and_drops_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), small_segments(2));
    for _ in 0..6 {
        append(&mut log, 2, 0);
    }
    assert_eq!(
        log.segment_base_offsets(),
        vec![Offset(0), Offset(4), Offset(8)]
    );
    assert_eq!(log.delete_records_before(Offset(5)).unwrap(), Offset(5));
    assert_eq!(log.segment_base_offsets(), vec![Offset(4), Offset(8)]);
    assert!(matches!(
        log.read(Offset(4), 100, Offset(12), true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // The batch containing 5 starts at 4: reads return it whole, as Kafka does.
    assert_eq!(all_offsets(&log, 5), (4..12).collect::<Vec<_>>());
    // Moving backwards is a no-op; past the log end is an error.
    assert_eq!(log.delete_records_before(Offset(2)).unwrap(), Offset(5));
    assert!(matches!(
        log.delete_records_before(Offset(13)),
        Err(LogError::OffsetOutOfRange {
            requested: Offset(13),
            ..
        })
    ));
    assert_eq!(log.delete_records_before(Offset(12)).unwrap(), Offset(12));
    assert_eq!(log.segment_base_offsets(), vec![Offset(8)]);
    assert!(log
        .read(Offset(12), 100, Offset(12), true)
        .unwrap()
        .records
        .is_empty());
}

#[test]
fn leader_epochs_are_cached_checkpointed_and_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), config());
    for epoch in [1, 1, 3, 3, 6] {
        let mut b = simple_batch(2, 0);
        log.append_as_leader(&mut b, epoch, 0).unwrap();
    }
    assert_eq!(log.latest_epoch(), Some(6));
    assert_eq!(
        log.epoch_entries(),
        vec![(1, Offset(0)), (3, Offset(4)), (6, Offset(8))]
    );
    let text =
        std::fs::read_to_string(partition_dir(dir.path()).join("leader-epoch-checkpoint")).unwrap();
    assert_eq!(text, "0\n3\n1 0\n3 4\n6 8\n");
    assert_eq!(log.end_offset_for_epoch(6), Some((6, Offset(10))));
    assert_eq!(log.end_offset_for_epoch(1), Some((1, Offset(4))));
    assert_eq!(log.end_offset_for_epoch(2), Some((1, Offset(4))));
    assert_eq!(log.end_offset_for_epoch(0), Some((0, Offset(0))));
    assert_eq!(log.end_offset_for_epoch(7), None);

    log.truncate_to(Offset(5)).unwrap();
    // The batch 4..=5 is removed whole.
    assert_eq!(log.log_end_offset(), Offset(4));
    assert_eq!(log.epoch_entries(), vec![(1, Offset(0))]);
    assert_eq!(all_offsets(&log, 0), vec![0, 1, 2, 3]);
    let mut b = simple_batch(1, 0);
    assert_eq!(
        log.append_as_leader(&mut b, 7, 0).unwrap().first_offset,
        Offset(4)
    );
    assert_eq!(log.epoch_entries(), vec![(1, Offset(0)), (7, Offset(4))]);

    log.truncate_fully_and_start_at(Offset(100)).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (Offset(100), Offset(100))
    );
    assert!(log.epoch_entries().is_empty());
    assert_eq!(append(&mut log, 1, 0), (100, 100));
}

#[test]
fn truncate_to_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), small_segments(2));
    for _ in 0..6 {
        append(&mut log, 2, 0);
    }
    log.truncate_to(Offset(6)).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(4)]);
    assert_eq!(log.log_end_offset(), Offset(6));
    log.truncate_to(Offset(4)).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![Offset(0)]);
    assert_eq!(all_offsets(&log, 0), vec![0, 1, 2, 3]);
    log.truncate_to(Offset(10)).unwrap();
    assert_eq!(
        log.log_end_offset(),
        Offset(4),
        "truncating past the end is a no-op"
    );
}

#[test]
fn timestamp_lookups_find_the_first_batch_reaching_the_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), small_segments(3));
    for ts in [1_000, 2_000, 3_000, 2_500, 4_000, 6_000, 5_000] {
        append(&mut log, 2, ts);
    }
    fn base_of(log: &tributary_log::Log, ts: i64) -> Option<i64> {
        log.first_batch_with_timestamp_at_least(ts)
            .unwrap()
            .map(|b| headers(&b)[0].base_offset)
    }
    assert_eq!(base_of(&log, 0), Some(0));
    assert_eq!(
        base_of(&log, 1_001),
        Some(0),
        "max timestamp of the first batch is 1_001"
    );
    assert_eq!(base_of(&log, 1_002), Some(2));
    assert_eq!(base_of(&log, 2_600), Some(4));
    assert_eq!(base_of(&log, 4_500), Some(10));
    assert_eq!(base_of(&log, 6_001), Some(10));
    assert_eq!(base_of(&log, 6_002), None);
    assert_eq!(log.max_timestamp_and_offset(), Some((6_001, Offset(11))));
    // Batches below the log start are not returned.
    log.delete_records_before(Offset(2)).unwrap();
    assert_eq!(base_of(&log, 0), Some(2));
}

#[test]
fn flush_messages_advances_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(
        dir.path(),
        LogConfig {
            flush_messages: Some(5),
            ..config()
        },
    );
    append(&mut log, 2, 0);
    append(&mut log, 2, 0);
    assert_eq!(log.recovery_point(), Offset(0));
    append(&mut log, 2, 0);
    assert_eq!(log.recovery_point(), Offset(6));
    log.set_config(LogConfig {
        flush_ms: Some(Duration::from_millis(100)),
        ..config()
    });
    append(&mut log, 1, 0); // appended "at" 0 ms, last flush at 0 ms
    assert_eq!(log.recovery_point(), Offset(6));
    assert!(!log.maybe_flush(99).unwrap());
    assert_eq!(log.recovery_point(), Offset(6));
    assert!(log.maybe_flush(100).unwrap());
    assert_eq!(log.recovery_point(), Offset(7));
    let later = 1_000;
    assert!(
        !log.maybe_flush(later + 1).unwrap(),
        "nothing left to flush"
    );
}

#[test]
fn retention_by_time_falls_back_to_file_mtime_without_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(
        dir.path(),
        LogConfig {
            retention_ms: Some(Duration::from_secs(3_600)),
            ..small_segments(1)
        },
    );
    for _ in 0..3 {
        let mut b = tributary_log::testing::build_test_batch(&tributary_log::testing::TestBatch {
            base_timestamp: -1,
            ..Default::default()
        });
        log.append_as_leader(&mut b, 0, 0).unwrap();
    }
    assert_eq!(log.segment_count(), 3);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(
        log.enforce_retention(now).unwrap().deleted_segments,
        0,
        "files are fresh"
    );
    let outcome = log.enforce_retention(now + 2 * 3_600_000).unwrap();
    assert_eq!(outcome.deleted_segments, 3);
    assert_eq!(log.log_start_offset(), Offset(3));
}

#[test]
fn a_new_leader_records_its_epoch_at_the_log_end_before_it_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), config());
    // Became leader of an empty log in epoch 1: a follower holding an epoch-0 batch learns that
    // epoch 0 ends at 0 here, and truncates it.
    assert!(log.assign_leader_epoch(1).unwrap());
    assert_eq!(log.epoch_entries(), vec![(1, Offset(0))]);
    assert_eq!(log.end_offset_for_epoch(0), Some((0, Offset(0))));
    for _ in 0..2 {
        let mut b = simple_batch(2, 0);
        log.append_as_leader(&mut b, 1, 0).unwrap();
    }
    // Leader again in epoch 3 at offset 4: epoch 1 ends there, before anything of epoch 3.
    assert!(log.assign_leader_epoch(3).unwrap());
    assert!(
        !log.assign_leader_epoch(2).unwrap(),
        "an older epoch changes nothing"
    );
    assert_eq!(log.epoch_entries(), vec![(1, Offset(0)), (3, Offset(4))]);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, Offset(4))));
    assert_eq!(log.end_offset_for_epoch(2), Some((1, Offset(4))));
    // Leader in epoch 5 without having appended in 3: epoch 3 wrote nothing and is replaced.
    assert!(log.assign_leader_epoch(5).unwrap());
    assert_eq!(log.epoch_entries(), vec![(1, Offset(0)), (5, Offset(4))]);
    let mut b = simple_batch(1, 0);
    log.append_as_leader(&mut b, 5, 0).unwrap();
    assert_eq!(log.epoch_entries(), vec![(1, Offset(0)), (5, Offset(4))]);
    // Leader in epoch 6 at offset 5, replaced before appending: truncating to the log end (the
    // new leader's answer) drops the empty epoch, so the follower names epoch 5 again.
    assert!(log.assign_leader_epoch(6).unwrap());
    log.truncate_to(Offset(5)).unwrap();
    assert_eq!(log.log_end_offset(), Offset(5));
    assert_eq!(log.epoch_entries(), vec![(1, Offset(0)), (5, Offset(4))]);
    assert_eq!(log.latest_epoch(), Some(5));
}

#[test]
fn a_roll_does_not_fsync_and_the_rolled_flush_moves_the_recovery_point_later() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), small_segments(2));
    for _ in 0..5 {
        append(&mut log, 2, 0);
    }
    assert_eq!(log.segment_count(), 3);
    assert_eq!(
        log.recovery_point(),
        Offset(0),
        "rolls leave the flush to later"
    );
    let flush = log.rolled_flush().expect("two rolled segments to flush");
    assert_eq!(flush.upto(), Offset(8), "up to the active segment's base");
    // Appends go on while the flush runs without the lock.
    append(&mut log, 2, 0);
    flush.sync().unwrap();
    assert!(log.flushed_to(&flush));
    assert_eq!(log.recovery_point(), Offset(8));
    assert!(
        log.rolled_flush().is_none(),
        "only the active segment is unflushed"
    );
}

#[test]
fn a_truncation_voids_a_rolled_flush_planned_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), small_segments(2));
    for _ in 0..5 {
        append(&mut log, 2, 0);
    }
    let flush = log.rolled_flush().unwrap();
    // Offsets 2.. are truncated and written again before the flush reports back: those
    // bytes were never fsynced, so the recovery point must not pass them.
    log.truncate_to(Offset(2)).unwrap();
    for _ in 0..4 {
        append(&mut log, 2, 0);
    }
    flush.sync().unwrap();
    assert!(!log.flushed_to(&flush));
    assert_eq!(log.recovery_point(), Offset(0));
}

#[test]
fn retention_renames_dropped_segments_and_leaves_removing_them_to_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(
        dir.path(),
        LogConfig {
            retention_bytes: Some(1),
            ..small_segments(1)
        },
    );
    for _ in 0..3 {
        append(&mut log, 2, 0);
    }
    let files = |suffix: &str| {
        std::fs::read_dir(partition_dir(dir.path()))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(suffix)
            })
            .count()
    };
    assert_eq!(log.enforce_retention(0).unwrap().deleted_segments, 2);
    assert_eq!(log.log_start_offset(), Offset(4));
    // Under the caller's lock only renames happened; the blocks are freed by the removal.
    assert_eq!(files(".log.deleted"), 2);
    let deleted = log.take_deleted_files();
    assert!(!deleted.is_empty());
    deleted.remove().unwrap();
    assert_eq!(files(".deleted"), 0);
    assert_eq!(files(".log"), 1, "the active segment stays");
}

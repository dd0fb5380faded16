//! Reopening a log: clean restarts, torn tails, corrupt bytes and damaged index files.

#![allow(clippy::unwrap_used)] // tests may unwrap (CONVENTIONS 8)

mod common;

use std::fs::{self, OpenOptions};

use common::*;
use tributary_log::testing::simple_batch;
use tributary_log::{Log, LogConfig, Offset};

fn segment_path(root: &std::path::Path, base: i64, ext: &str) -> std::path::PathBuf {
    partition_dir(root).join(format!("{base:020}.{ext}"))
}

#[test]
fn clean_restart_keeps_data_epochs_and_topic_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), config());
    for i in 0..20 {
        let mut b = simple_batch(3, 1_000 + i);
        log.append_as_leader(&mut b, (i / 10) as i32, 0).unwrap();
    }
    log.close().unwrap();
    let before = log
        .read(Offset(0), usize::MAX, Offset(60), true)
        .unwrap()
        .records;
    let (leo, rp) = (log.log_end_offset(), log.recovery_point());
    assert_eq!(rp, leo, "close flushes");
    drop(log);
    let log = Log::open(&partition_dir(dir.path()), config(), rp, true).unwrap();
    assert_eq!(log.log_end_offset(), Offset(60));
    assert_eq!(log.topic_id(), TOPIC_ID);
    assert_eq!(log.epoch_entries(), vec![(0, Offset(0)), (1, Offset(30))]);
    assert_eq!(
        log.read(Offset(0), usize::MAX, Offset(60), true)
            .unwrap()
            .records,
        before
    );
    assert_eq!(log.max_timestamp_and_offset(), Some((1_021, Offset(59))));
}

#[test]
fn torn_tail_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), config());
    for _ in 0..3 {
        append(&mut log, 2, 0);
    }
    drop(log);
    let batch = simple_batch(2, 0).len() as u64;
    let file = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), 0, "log"))
        .unwrap();
    file.set_len(2 * batch + 25).unwrap();
    let mut log = Log::open(&partition_dir(dir.path()), config(), Offset(0), false).unwrap();
    assert_eq!(log.log_end_offset(), Offset(4));
    assert_eq!(
        fs::metadata(segment_path(dir.path(), 0, "log"))
            .unwrap()
            .len(),
        2 * batch
    );
    assert_eq!(all_offsets(&log, 0), vec![0, 1, 2, 3]);
    assert_eq!(append(&mut log, 1, 0), (4, 4));
}

#[test]
fn flipped_byte_truncates_at_the_corrupt_batch_and_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let batch = simple_batch(2, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: batch * 3,
        ..config()
    };
    let mut log = new_log(dir.path(), cfg.clone());
    for _ in 0..9 {
        append(&mut log, 2, 0);
    }
    assert_eq!(
        log.segment_base_offsets(),
        vec![Offset(0), Offset(6), Offset(12)]
    );
    drop(log);
    // Flip a record byte of the second batch of the middle segment (offsets 8..=9).
    let path = segment_path(dir.path(), 6, "log");
    let mut bytes = fs::read(&path).unwrap();
    bytes[(batch + batch - 3) as usize] ^= 0x40;
    fs::write(&path, bytes).unwrap();

    let log = Log::open(&partition_dir(dir.path()), cfg, Offset(0), false).unwrap();
    assert_eq!(log.log_end_offset(), Offset(8));
    assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(6)]);
    assert!(!segment_path(dir.path(), 12, "log").exists());
    assert!(!segment_path(dir.path(), 12, "index").exists());
    assert_eq!(all_offsets(&log, 0), (0..8).collect::<Vec<_>>());
}

#[test]
fn segments_below_the_recovery_point_are_not_rescanned_after_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let batch = simple_batch(2, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: batch * 2,
        ..config()
    };
    let mut log = new_log(dir.path(), cfg.clone());
    for _ in 0..4 {
        append(&mut log, 2, 0);
    }
    log.close().unwrap();
    drop(log);
    // A flipped record byte in the first segment: CRCs are only checked when scanning.
    let path = segment_path(dir.path(), 0, "log");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let log = Log::open(&partition_dir(dir.path()), cfg.clone(), Offset(8), true).unwrap();
    assert_eq!(
        log.log_end_offset(),
        Offset(8),
        "trusted below the recovery point"
    );
    drop(log);
    let log = Log::open(&partition_dir(dir.path()), cfg, Offset(8), false).unwrap();
    assert_eq!(
        log.log_end_offset(),
        Offset(2),
        "unclean: every segment is scanned"
    );
}

#[test]
fn missing_or_corrupt_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let batch = simple_batch(1, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: batch * 40,
        ..config()
    };
    let mut log = new_log(dir.path(), cfg.clone());
    for i in 0..60 {
        append(&mut log, 1, i);
    }
    log.close().unwrap();
    drop(log);
    let index = segment_path(dir.path(), 0, "index");
    let time_index = segment_path(dir.path(), 0, "timeindex");
    let (index_len, time_len) = (
        fs::metadata(&index).unwrap().len(),
        fs::metadata(&time_index).unwrap().len(),
    );
    assert!(index_len > 0 && time_len > 0);
    fs::remove_file(&index).unwrap();
    fs::write(&time_index, [1u8; 5]).unwrap();
    let log = Log::open(&partition_dir(dir.path()), cfg, Offset(60), true).unwrap();
    assert_eq!(fs::metadata(&index).unwrap().len(), index_len);
    // The rebuilt time index lacks only the final entry that closing the segment added.
    let rebuilt = fs::metadata(&time_index).unwrap().len();
    assert!(
        rebuilt.is_multiple_of(12) && rebuilt >= time_len - 12,
        "{rebuilt} vs {time_len}"
    );
    assert_eq!(all_offsets(&log, 0), (0..60).collect::<Vec<_>>());
    let batch = log
        .first_batch_with_timestamp_at_least(17)
        .unwrap()
        .unwrap();
    assert_eq!(headers(&batch)[0].base_offset, 17);
}

#[test]
fn leftover_files_are_cleaned_up_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), config());
    append(&mut log, 1, 0);
    drop(log);
    let pdir = partition_dir(dir.path());
    fs::write(pdir.join("00000000000000000099.log.deleted"), b"x").unwrap();
    fs::write(pdir.join("00000000000000000050.index"), b"").unwrap();
    fs::write(pdir.join("leader-epoch-checkpoint.tmp"), b"junk").unwrap();
    let log = Log::open(&pdir, config(), Offset(0), false).unwrap();
    assert_eq!(log.log_end_offset(), Offset(1));
    assert!(!pdir.join("00000000000000000099.log.deleted").exists());
    assert!(!pdir.join("00000000000000000050.index").exists());
    assert!(!pdir.join("leader-epoch-checkpoint.tmp").exists());
}

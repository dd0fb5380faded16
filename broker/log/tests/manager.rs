//! The log directory manager: checkpoints, clean shutdown, reopening, deletion.

#![allow(clippy::unwrap_used)] // tests may unwrap (CONVENTIONS 8)

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use tributary_log::testing::simple_batch;
use tributary_log::{
    LogConfig, LogError, LogManager, Offset, TopicPartition, CLEAN_SHUTDOWN_MARKER,
    LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT,
};

fn produce(m: &LogManager, tp: &TopicPartition, batches: usize) {
    let log = m.open_or_create(tp, TOPIC_ID, config()).unwrap();
    let mut log = log.write().unwrap();
    for _ in 0..batches {
        let mut b = simple_batch(2, 0);
        log.append_as_leader(&mut b, 0, 0).unwrap();
    }
}

#[test]
fn shutdown_checkpoints_and_reopen_restores_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let a = TopicPartition::new("a-b", 0);
    let c = TopicPartition::new("c", 2);
    {
        let m = LogManager::open(&root).unwrap();
        assert!(!m.was_clean_shutdown());
        produce(&m, &a, 3);
        produce(&m, &c, 1);
        let log = m.get(&a).unwrap();
        log.write()
            .unwrap()
            .delete_records_before(Offset(3))
            .unwrap();
        assert_eq!(m.total_size_bytes(), 4 * simple_batch(2, 0).len() as u64);
        m.shutdown().unwrap();
    }
    assert!(root.join(CLEAN_SHUTDOWN_MARKER).exists());
    assert_eq!(
        fs::read_to_string(root.join(RECOVERY_POINT_CHECKPOINT)).unwrap(),
        "0\n2\na-b 0 6\nc 2 2\n"
    );
    assert_eq!(
        fs::read_to_string(root.join(LOG_START_OFFSET_CHECKPOINT)).unwrap(),
        "0\n2\na-b 0 3\nc 2 0\n"
    );

    let m = LogManager::open(&root).unwrap();
    assert!(m.was_clean_shutdown());
    assert!(!root.join(CLEAN_SHUTDOWN_MARKER).exists());
    assert_eq!(m.existing(), vec![a.clone(), c.clone()]);
    assert!(m.get(&a).is_none(), "logs are opened lazily");
    let log = m.open_or_create(&a, TOPIC_ID, config()).unwrap();
    let log = log.read().unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (Offset(3), Offset(6))
    );
    assert!(same_handle(&m, &a));
}

fn same_handle(m: &LogManager, tp: &TopicPartition) -> bool {
    let x = m.get(tp).unwrap();
    let y = m.open_or_create(tp, TOPIC_ID, config()).unwrap();
    std::sync::Arc::ptr_eq(&x, &y)
}

#[test]
fn unknown_topic_id_for_an_existing_partition_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let m = LogManager::open(dir.path()).unwrap();
    let tp = TopicPartition::new("t", 0);
    produce(&m, &tp, 1);
    let err = m.open_or_create(&tp, [1; 16], config()).unwrap_err();
    assert!(matches!(err, LogError::InconsistentTopicId { .. }));
    drop(m);
    let m = LogManager::open(dir.path()).unwrap();
    let err = m.open_or_create(&tp, [1; 16], config()).unwrap_err();
    assert!(matches!(err, LogError::InconsistentTopicId { found, .. } if found == TOPIC_ID));
}

#[test]
fn delete_removes_the_partition_directory_and_checkpoint_entries() {
    let dir = tempfile::tempdir().unwrap();
    let m = LogManager::open(dir.path()).unwrap();
    let tp = TopicPartition::new("gone", 1);
    produce(&m, &tp, 2);
    m.checkpoint().unwrap();
    m.delete(&tp).unwrap();
    assert!(!dir.path().join("gone-1").exists());
    assert!(m.get(&tp).is_none());
    assert!(m.existing().is_empty());
    assert!(matches!(
        m.delete(&tp),
        Err(LogError::UnknownPartition { .. })
    ));
    m.checkpoint().unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join(RECOVERY_POINT_CHECKPOINT)).unwrap(),
        "0\n0\n"
    );
    // A re-created partition starts from scratch.
    produce(&m, &tp, 1);
    assert_eq!(
        m.get(&tp).unwrap().read().unwrap().log_end_offset(),
        Offset(2)
    );
}

#[test]
fn leftover_delete_dirs_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let leftover = dir.path().join("t-0.0123abcd-delete");
    fs::create_dir_all(&leftover).unwrap();
    fs::write(leftover.join("00000000000000000000.log"), b"").unwrap();
    fs::create_dir_all(dir.path().join("t-1")).unwrap();
    fs::create_dir_all(dir.path().join("not a partition")).unwrap();
    let m = LogManager::open(dir.path()).unwrap();
    assert!(!leftover.exists());
    assert_eq!(m.existing(), vec![TopicPartition::new("t", 1)]);
}

#[test]
fn unclean_restart_recovers_from_the_checkpointed_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("t", 0);
    {
        let m = LogManager::open(dir.path()).unwrap();
        produce(&m, &tp, 3);
        m.flush_all().unwrap();
        m.checkpoint().unwrap();
        produce(&m, &tp, 1);
        // No shutdown: simulate a crash that tore the last batch.
    }
    let log_file = dir.path().join("t-0").join(format!("{:020}.log", 0));
    let len = fs::metadata(&log_file).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&log_file)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let m = LogManager::open(dir.path()).unwrap();
    assert!(!m.was_clean_shutdown());
    let log = m.open_or_create(&tp, TOPIC_ID, config()).unwrap();
    assert_eq!(log.read().unwrap().log_end_offset(), Offset(6));
}

#[test]
fn run_retention_applies_to_every_open_log() {
    let dir = tempfile::tempdir().unwrap();
    let m = LogManager::open(dir.path()).unwrap();
    let cfg = LogConfig {
        segment_bytes: simple_batch(2, 0).len() as u64,
        retention_ms: Some(Duration::from_millis(10)),
        ..config()
    };
    for p in 0..2 {
        let tp = TopicPartition::new("r", p);
        let log = m.open_or_create(&tp, TOPIC_ID, cfg.clone()).unwrap();
        for _ in 0..3 {
            let mut b = simple_batch(2, 0);
            log.write().unwrap().append_as_leader(&mut b, 0, 0).unwrap();
        }
    }
    let outcomes = m.run_retention(1_000);
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes
        .iter()
        .all(|(_, o)| o.deleted_segments == 3 && o.log_start_offset == Offset(6)));
    assert_eq!(m.total_size_bytes(), 0);
}

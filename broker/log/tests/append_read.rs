//! Appends (leader and follower), validation and reads through the public `Log` API.

#![allow(clippy::unwrap_used)] // tests may unwrap (CONVENTIONS 8)

mod common;

use std::time::Duration;

use common::*;
use tributary_log::batch::{set_base_offset, verify_crc, BatchError};
use tributary_log::testing::{build_test_batch, simple_batch, TestBatch};
use tributary_log::{codes, Log, LogConfig, LogError, Offset, TimestampType};

#[test]
fn append_assigns_offsets_and_read_returns_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), config());
    let mut b1 = simple_batch(3, 1_000);
    let info = log.append_as_leader(&mut b1, 5, 2_000).unwrap();
    assert_eq!(
        (info.first_offset, info.last_offset),
        (Offset(0), Offset(2))
    );
    assert_eq!((info.records, info.bytes), (3, b1.len() as u64));
    assert_eq!((info.max_timestamp, info.log_append_time), (1_002, None));
    let mut b2 = simple_batch(2, 1_100);
    let info = log.append_as_leader(&mut b2, 5, 2_000).unwrap();
    assert_eq!(
        (info.first_offset, info.last_offset),
        (Offset(3), Offset(4))
    );
    assert_eq!(log.log_end_offset(), Offset(5));
    assert_eq!(log.size_bytes(), (b1.len() + b2.len()) as u64);

    let r = log.read(Offset(0), 1 << 20, Offset(5), false).unwrap();
    assert_eq!(
        r.records,
        [b1.clone(), b2].concat(),
        "stored bytes are the patched input"
    );
    let got = records(&r.records);
    let want: Vec<(i64, String)> = [(0, "v0"), (1, "v1"), (2, "v2"), (3, "v0"), (4, "v1")]
        .iter()
        .map(|(o, v)| (*o, v.to_string()))
        .collect();
    assert_eq!(got, want);
    let hs = headers(&r.records);
    assert!(hs.iter().all(|h| h.partition_leader_epoch == 5));
    assert_eq!(
        (r.log_start_offset, r.log_end_offset),
        (Offset(0), Offset(5))
    );
}

#[test]
fn read_starts_at_the_batch_containing_the_offset_and_honours_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), config());
    append(&mut log, 3, 0); // 0..=2
    append(&mut log, 3, 0); // 3..=5
    append(&mut log, 3, 0); // 6..=8
    let first_size = simple_batch(3, 0).len();

    let r = log.read(Offset(4), 1 << 20, Offset(9), false).unwrap();
    assert_eq!(
        headers(&r.records)
            .iter()
            .map(|h| h.base_offset)
            .collect::<Vec<_>>(),
        vec![3, 6]
    );
    // The upper bound excludes any batch reaching it.
    let r = log.read(Offset(0), 1 << 20, Offset(8), false).unwrap();
    assert_eq!(headers(&r.records).len(), 2);
    let r = log.read(Offset(0), 1 << 20, Offset(2), true).unwrap();
    assert!(r.records.is_empty());
    // max_bytes: whole batches only; KIP-74 returns the first batch whole if asked.
    let r = log
        .read(Offset(0), first_size + 10, Offset(9), false)
        .unwrap();
    assert_eq!(r.records.len(), first_size);
    let r = log.read(Offset(0), 10, Offset(9), false).unwrap();
    assert!(r.records.is_empty());
    let r = log.read(Offset(0), 10, Offset(9), true).unwrap();
    assert_eq!(r.records.len(), first_size);
    // At the log end: empty; past it: out of range.
    assert!(log
        .read(Offset(9), 100, Offset(9), true)
        .unwrap()
        .records
        .is_empty());
    match log.read(Offset(10), 100, Offset(10), true) {
        Err(LogError::OffsetOutOfRange {
            requested,
            log_start,
            log_end,
        }) => {
            assert_eq!(
                (requested, log_start, log_end),
                (Offset(10), Offset(0), Offset(9))
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn segments_roll_by_size_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let batch_len = simple_batch(4, 0).len() as u64;
    let cfg = LogConfig {
        segment_bytes: batch_len * 3,
        ..config()
    };
    let mut log = new_log(dir.path(), cfg);
    for _ in 0..10 {
        append(&mut log, 4, 0);
    }
    // Three batches fit per segment: 4 segments starting at 0, 12, 24, 36.
    let bases: Vec<i64> = log.segment_base_offsets().iter().map(|o| o.0).collect();
    assert_eq!(bases, vec![0, 12, 24, 36]);
    for base in &bases {
        let name = format!("{base:020}.log");
        assert!(partition_dir(dir.path()).join(&name).exists(), "{name}");
    }
    assert_eq!(all_offsets(&log, 0), (0..40).collect::<Vec<_>>());
    // From the middle of a later segment, and with a byte limit spanning a boundary.
    assert_eq!(all_offsets(&log, 26), (24..40).collect::<Vec<_>>());
    let r = log
        .read(Offset(8), (batch_len * 2) as usize, Offset(40), false)
        .unwrap();
    assert_eq!(
        headers(&r.records)
            .iter()
            .map(|h| h.base_offset)
            .collect::<Vec<_>>(),
        vec![8, 12]
    );
}

#[test]
fn index_lookups_find_every_offset_after_many_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), config());
    for i in 0..300 {
        append(&mut log, 1 + i % 3, i as i64);
    }
    let leo = log.log_end_offset().0;
    for k in 0..leo {
        let r = log.read(Offset(k), 1, Offset(leo), true).unwrap();
        let hs = headers(&r.records);
        assert_eq!(hs.len(), 1);
        assert!(
            hs[0].base_offset <= k && k <= hs[0].last_offset(),
            "offset {k}"
        );
    }
    let index = partition_dir(dir.path()).join(format!("{:020}.index", 0));
    let len = std::fs::metadata(index).unwrap().len();
    assert!(
        len > 8 * 50 && len.is_multiple_of(8),
        "sparse index has entries: {len}"
    );
}

#[test]
fn segments_roll_by_segment_ms_since_the_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: Duration::from_millis(1_000),
        ..config()
    };
    let mut log = new_log(dir.path(), cfg);
    let mut b = simple_batch(1, 10_000);
    log.append_as_leader(&mut b, 0, 10_000).unwrap();
    let mut b = simple_batch(1, 11_000);
    log.append_as_leader(&mut b, 0, 11_000).unwrap();
    assert_eq!(
        log.segment_count(),
        1,
        "exactly segment.ms elapsed: no roll yet"
    );
    let mut b = simple_batch(1, 11_001);
    log.append_as_leader(&mut b, 0, 11_001).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(2)]);
}

#[test]
fn log_append_time_is_stamped_into_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..config()
    };
    let mut log = new_log(dir.path(), cfg);
    let mut b = simple_batch(2, 5);
    let info = log.append_as_leader(&mut b, 0, 77_000).unwrap();
    assert_eq!(
        (info.log_append_time, info.max_timestamp),
        (Some(77_000), 77_000)
    );
    let r = log.read(Offset(0), 1 << 20, Offset(2), true).unwrap();
    let h = headers(&r.records)[0];
    assert_eq!(
        (h.max_timestamp, h.timestamp_type()),
        (77_000, TimestampType::LogAppendTime)
    );
    verify_crc(&r.records).unwrap();
}

fn assert_rejected(log: &mut tributary_log::Log, mut input: Vec<u8>, code: i16) -> LogError {
    let (leo, size) = (log.log_end_offset(), log.size_bytes());
    let err = log.append_as_leader(&mut input, 0, 0).unwrap_err();
    assert_eq!(err.kafka_error_code(), code, "{err}");
    assert_eq!(
        (log.log_end_offset(), log.size_bytes()),
        (leo, size),
        "log unchanged"
    );
    err
}

#[test]
fn invalid_appends_are_rejected_whole_with_distinct_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = simple_batch(2, 0);
    let cfg = LogConfig {
        max_message_bytes: good.len() + 20,
        segment_bytes: (good.len() * 4) as u64,
        ..config()
    };
    let mut log = new_log(dir.path(), cfg);
    append(&mut log, 1, 0);

    let mut bad_crc = good.clone();
    *bad_crc.last_mut().unwrap() ^= 1;
    let err = assert_rejected(
        &mut log,
        [good.clone(), bad_crc].concat(),
        codes::CORRUPT_MESSAGE,
    );
    assert!(
        matches!(err, LogError::CorruptMessage { position, source: BatchError::CrcMismatch { .. } } if position == good.len())
    );

    let truncated = [good.clone(), good[..30].to_vec()].concat();
    let err = assert_rejected(&mut log, truncated, codes::CORRUPT_MESSAGE);
    assert!(matches!(
        err,
        LogError::TruncatedAppend { available: 30, .. }
    ));

    let mut bad_magic = good.clone();
    bad_magic[16] = 1;
    let err = assert_rejected(&mut log, bad_magic, codes::CORRUPT_MESSAGE);
    assert!(matches!(
        err,
        LogError::CorruptMessage {
            source: BatchError::UnsupportedMagic { magic: 1 },
            ..
        }
    ));

    let big = simple_batch(10, 0);
    assert!(big.len() > good.len() + 20);
    let err = assert_rejected(&mut log, big, codes::MESSAGE_TOO_LARGE);
    assert!(matches!(err, LogError::MessageTooLarge { .. }));

    let mut nonzero_base = good.clone();
    set_base_offset(&mut nonzero_base, 7).unwrap();
    let err = assert_rejected(&mut log, nonzero_base, codes::INVALID_RECORD);
    assert!(matches!(err, LogError::InvalidRecord { .. }));

    let mut miscounted = good.clone();
    // Records count is CRC-covered: patch it and recompute the CRC so only the count is wrong.
    miscounted[57..61].copy_from_slice(&5i32.to_be_bytes());
    let crc = tributary_log::batch::compute_crc(&miscounted).unwrap();
    miscounted[17..21].copy_from_slice(&crc.to_be_bytes());
    let err = assert_rejected(&mut log, miscounted, codes::INVALID_RECORD);
    assert!(matches!(err, LogError::InvalidRecord { .. }));

    let many = [
        good.clone(),
        good.clone(),
        good.clone(),
        good.clone(),
        good.clone(),
    ]
    .concat();
    let err = assert_rejected(&mut log, many, codes::RECORD_LIST_TOO_LARGE);
    assert!(matches!(err, LogError::RecordBatchTooLarge { .. }));

    // The log still works afterwards.
    assert_eq!(append(&mut log, 2, 0), (1, 2));
}

#[test]
fn follower_appends_keep_offsets_and_learn_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), config());
    let leader_batch = |base: i64, epoch: i32, n: usize| {
        build_test_batch(&TestBatch {
            base_offset: base,
            partition_leader_epoch: epoch,
            records: (0..n).map(|i| (None, vec![i as u8])).collect(),
            ..TestBatch::default()
        })
    };
    let input = [leader_batch(0, 2, 3), leader_batch(3, 4, 2)].concat();
    let info = log.append_as_follower(&input).unwrap();
    assert_eq!(
        (info.first_offset, info.last_offset, info.records),
        (Offset(0), Offset(4), 5)
    );
    assert_eq!(log.epoch_entries(), vec![(2, Offset(0)), (4, Offset(3))]);
    let behind = leader_batch(4, 4, 1);
    match log.append_as_follower(&behind) {
        Err(LogError::UnexpectedOffset { expected, got }) => {
            assert_eq!((expected, got), (Offset(5), Offset(4)))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(log.log_end_offset(), Offset(5));
    // A compacted leader log has gaps: a batch above the log end is accepted as is.
    let gap = leader_batch(7, 4, 1);
    log.append_as_follower(&gap).unwrap();
    assert_eq!(log.log_end_offset(), Offset(8));
    assert_eq!(all_offsets(&log, 0), vec![0, 1, 2, 3, 4, 7]);
}

#[test]
fn batches_without_timestamps_never_roll_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: Duration::from_millis(1_000),
        ..config()
    };
    let mut log = new_log(dir.path(), cfg);
    let no_ts = || {
        build_test_batch(&TestBatch {
            base_timestamp: -1,
            ..TestBatch::default()
        })
    };
    log.append_as_leader(&mut no_ts(), 0, 1_000_000).unwrap();
    log.append_as_leader(&mut no_ts(), 0, 9_000_000).unwrap();
    assert_eq!(log.segment_count(), 1);
}

/// `read_ranges` (which `read` copies from) returns whole batches from the one containing
/// `start`, across segments, stopping before `max_offset` and `max_bytes` (KIP-74 aside), checked
/// against the batch list of the whole log.
#[test]
fn read_ranges_follow_the_read_rules_across_segments() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 700,
        ..config()
    };
    let mut log = Log::create(dir.path(), &tp(), TOPIC_ID, cfg).unwrap();
    for i in 0..40 {
        append(&mut log, 1 + i % 3, 1_000 + i as i64);
    }
    assert!(log.segment_count() > 3);
    let leo = log.log_end_offset().0;
    let all = log
        .read(Offset(0), usize::MAX, Offset(leo), true)
        .unwrap()
        .records;
    let batches: Vec<(i64, i64, Vec<u8>)> = tributary_log::BatchIter::new(&all)
        .map(|r| {
            let (h, b) = r.unwrap();
            (h.base_offset, h.last_offset(), b.to_vec())
        })
        .collect();
    assert_eq!(batches.last().unwrap().1, leo - 1);
    for start in [0, 1, 5, 17, leo - 1, leo] {
        for max_bytes in [0, 1, 150, 1_000, usize::MAX] {
            for max_offset in [3, leo / 2, leo] {
                for min_one in [false, true] {
                    let mut want = Vec::new();
                    if start < max_offset {
                        for (_, last, b) in batches.iter().filter(|(_, last, _)| *last >= start) {
                            let first = want.is_empty();
                            if *last >= max_offset
                                || (want.len() + b.len() > max_bytes && !(min_one && first))
                            {
                                break;
                            }
                            want.extend_from_slice(b);
                        }
                    }
                    let got = log
                        .read_ranges(Offset(start), max_bytes, Offset(max_offset), min_one)
                        .unwrap();
                    let mut bytes = Vec::new();
                    for r in &got.ranges {
                        let mut buf = vec![0u8; r.len];
                        r.file.read_exact_at(&mut buf, r.position).unwrap();
                        bytes.extend_from_slice(&buf);
                    }
                    assert_eq!(got.bytes, bytes.len());
                    assert_eq!(bytes, want, "{start} {max_bytes} {max_offset} {min_one}");
                }
            }
        }
    }
    assert!(log
        .read_ranges(Offset(leo + 1), 10, Offset(leo), true)
        .is_err());
}

/// `append_produced` (shared buffer, headers written beside the records) stores exactly what
/// `append_as_leader` stores, LogAppendTime and its CRC included, and leaves its input alone.
#[test]
fn append_produced_stores_the_same_bytes_as_append_as_leader() {
    for ts_type in [TimestampType::CreateTime, TimestampType::LogAppendTime] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            message_timestamp_type: ts_type,
            segment_bytes: 900,
            ..config()
        };
        let mut a = Log::create(&dir.path().join("a"), &tp(), TOPIC_ID, cfg.clone()).unwrap();
        let mut b = Log::create(&dir.path().join("b"), &tp(), TOPIC_ID, cfg).unwrap();
        for i in 0..30usize {
            let mut two = simple_batch(1 + i % 4, 1_000 + i as i64);
            two.extend_from_slice(&simple_batch(2, 2_000 + i as i64));
            let original = two.clone();
            let ia = a
                .append_as_leader(&mut two.clone(), 3, 5_000 + i as i64)
                .unwrap();
            let ib = b.append_produced(&original, 3, 5_000 + i as i64).unwrap();
            assert_eq!(ia, ib);
            assert_eq!(two, original);
        }
        assert_eq!(a.segment_count(), b.segment_count());
        let end = a.log_end_offset();
        let ra = a.read(Offset(0), usize::MAX, end, true).unwrap().records;
        let rb = b.read(Offset(0), usize::MAX, end, true).unwrap().records;
        assert_eq!(ra, rb, "{ts_type:?}");
        for (_, bytes) in tributary_log::BatchIter::new(&rb).map(Result::unwrap) {
            verify_crc(bytes).unwrap();
        }
        if ts_type == TimestampType::LogAppendTime {
            assert!(headers(&rb).iter().all(|h| h.max_timestamp >= 5_000));
        }
    }
}

/// What the broker may append on a request's own thread: appends that write into the active
/// segment and nothing else (no roll, no new epoch checkpoint, no configured flush).
#[test]
fn append_stays_in_page_cache_only_without_roll_new_epoch_or_flush() {
    let dir = tempfile::tempdir().unwrap();
    let small = LogConfig {
        segment_bytes: 4096,
        ..config()
    };
    let mut log = new_log(dir.path(), small);
    assert!(
        !log.append_stays_in_page_cache(100, 1, 1_000),
        "the first append checkpoints its epoch"
    );
    append(&mut log, 3, 1_000); // epoch 1
    assert!(log.append_stays_in_page_cache(100, 1, 1_000));
    assert!(
        log.append_stays_in_page_cache(100, 0, 1_000),
        "an older epoch is not recorded"
    );
    assert!(
        !log.append_stays_in_page_cache(100, 2, 1_000),
        "a new epoch is checkpointed"
    );
    let room = 4096 - log.size_bytes();
    assert!(log.append_stays_in_page_cache(room, 1, 1_000));
    assert!(
        !log.append_stays_in_page_cache(room + 1, 1, 1_000),
        "a roll creates files"
    );
    // The first batch's timestamp is its max, 1_002.
    let late = 1_002 + config().segment_ms.as_millis() as i64 + 1;
    assert!(
        !log.append_stays_in_page_cache(100, 1, late),
        "segment.ms rolls"
    );

    let flushing = [
        LogConfig {
            flush_messages: Some(1_000),
            ..config()
        },
        LogConfig {
            flush_ms: Some(Duration::from_secs(60)),
            ..config()
        },
    ];
    for config in flushing {
        let dir = tempfile::tempdir().unwrap();
        let mut log = new_log(dir.path(), config);
        append(&mut log, 3, 1_000);
        assert!(
            !log.append_stays_in_page_cache(100, 1, 1_000),
            "flush.* may fsync in the append"
        );
    }
}

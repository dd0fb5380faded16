//! Log compaction: what survives a clean, offsets, tombstones, codecs, producer batches,
//! segment merging, dirty-ratio gating, crash recovery at each swap step and reopening.

#![allow(clippy::unwrap_used, clippy::type_complexity)] // tests may unwrap (CONVENTIONS 8)

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use common::{headers, new_log, partition_dir, TOPIC_ID};
use kafka_protocol::records::Compression as Codec;
use tributary_log::testing::{decode_batches, encode_batch};
use tributary_log::{Log, LogConfig, LogManager, Offset};

const NOW: i64 = 1_000_000_000;
const HOUR: Duration = Duration::from_secs(3600);

fn compact_config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 64,
        segment_bytes: 1024,
        compact: true,
        min_cleanable_dirty_ratio: 0.01,
        delete_retention: HOUR,
        ..LogConfig::default()
    }
}

type Rec = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// Appends one batch of `(key, value)` pairs; returns the offsets assigned.
fn put(log: &mut Log, pairs: &[(&str, Option<&str>)], codec: Codec, ts: i64) -> Vec<i64> {
    let kv: Vec<(Option<&[u8]>, Option<&[u8]>)> = pairs
        .iter()
        .map(|(k, v)| (Some(k.as_bytes()), v.map(str::as_bytes)))
        .collect();
    let mut batch = encode_batch(&kv, codec, ts, (-1, -1, -1));
    let info = log.append_as_leader(&mut batch, 1, ts).unwrap();
    (info.first_offset.0..=info.last_offset.0).collect()
}

fn read_all(log: &Log) -> Vec<Rec> {
    let r = log
        .read(log.log_start_offset(), usize::MAX, Offset(i64::MAX), true)
        .unwrap();
    decode_batches(&r.records)
}

fn latest_by_key(
    written: &[(i64, String, Option<String>)],
) -> BTreeMap<String, (i64, Option<String>)> {
    let mut m = BTreeMap::new();
    for (o, k, v) in written {
        m.insert(k.clone(), (*o, v.clone()));
    }
    m
}

/// Writes `keys` × `rounds` updates (one batch per round, codec cycling), then one more batch
/// so the last round's segment is inactive.
fn fill(
    log: &mut Log,
    keys: usize,
    rounds: usize,
    codecs: &[Codec],
) -> Vec<(i64, String, Option<String>)> {
    let mut written = Vec::new();
    for round in 0..rounds {
        let pairs: Vec<(String, String)> = (0..keys)
            .map(|k| (format!("k{k}"), format!("v{round}-{k}")))
            .collect();
        let refs: Vec<(&str, Option<&str>)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str())))
            .collect();
        let offsets = put(log, &refs, codecs[round % codecs.len()], NOW);
        for (o, (k, v)) in offsets.into_iter().zip(pairs) {
            written.push((o, k, Some(v)));
        }
    }
    written
}

fn roll(log: &mut Log) {
    // A batch bigger than what is left of the segment forces a roll.
    let big = "x".repeat(900);
    put(log, &[("roller", Some(big.as_str()))], Codec::None, NOW);
}

#[test]
fn only_the_latest_value_per_key_remains_at_its_original_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), compact_config());
    let written = fill(&mut log, 5, 30, &[Codec::None]);
    roll(&mut log);
    let before = log.segment_count();
    let outcome = log
        .clean(NOW, Offset(i64::MAX))
        .unwrap()
        .expect("cleaning is due");
    assert!(outcome.records_removed >= 5 * 29, "{outcome:?}");
    assert!(
        log.segment_count() < before,
        "segments merged: {} -> {}",
        before,
        log.segment_count()
    );
    let latest = latest_by_key(&written);
    let got: Vec<Rec> = read_all(&log)
        .into_iter()
        .filter(|r| r.1.as_deref() != Some(&b"roller"[..]))
        .collect();
    let expected: Vec<Rec> = latest
        .values()
        .map(|(o, _)| *o)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|o| {
            let (_, k, v) = written.iter().find(|w| w.0 == o).unwrap();
            (
                o,
                Some(k.clone().into_bytes()),
                v.clone().map(String::into_bytes),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(log.first_dirty_offset(), outcome.first_dirty_offset);
    // Nothing new: a second clean is not due.
    assert_eq!(log.clean(NOW, Offset(i64::MAX)).unwrap(), None);
}

#[test]
fn every_codec_is_decoded_and_re_encoded_with_the_same_codec() {
    for codec in [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = new_log(dir.path(), compact_config());
        // One batch with an update of k0 inside the same batch, then a batch updating k1.
        let a = put(
            &mut log,
            &[
                ("k0", Some("a")),
                ("k1", Some("b")),
                ("k0", Some("c")),
                ("k2", Some("d")),
            ],
            codec,
            NOW,
        );
        let b = put(&mut log, &[("k1", Some("e"))], codec, NOW);
        roll(&mut log);
        log.clean(NOW, Offset(i64::MAX)).unwrap().expect("due");
        let r = log
            .read(Offset(0), usize::MAX, Offset(i64::MAX), true)
            .unwrap();
        let hs = headers(&r.records);
        assert_eq!(hs[0].base_offset, a[0], "{codec:?}: base offset kept");
        assert_eq!(hs[0].last_offset(), a[3], "{codec:?}: last offset kept");
        assert_eq!(hs[0].records_count, 2);
        assert_eq!(
            hs[0].compression() as tributary_log::Compression,
            hs[0].compression()
        );
        assert_eq!(
            format!("{:?}", hs[0].compression()).to_lowercase(),
            format!("{codec:?}").to_lowercase(),
            "{codec:?}"
        );
        let recs = decode_batches(&r.records);
        assert_eq!(
            recs[0],
            (a[2], Some(b"k0".to_vec()), Some(b"c".to_vec())),
            "{codec:?}"
        );
        assert_eq!(
            recs[1],
            (a[3], Some(b"k2".to_vec()), Some(b"d".to_vec())),
            "{codec:?}"
        );
        assert_eq!(
            recs[2],
            (b[0], Some(b"k1".to_vec()), Some(b"e".to_vec())),
            "{codec:?}"
        );
    }
}

#[test]
fn tombstones_stay_for_delete_retention_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), compact_config());
    put(
        &mut log,
        &[("a", Some("1")), ("b", Some("1"))],
        Codec::None,
        NOW,
    );
    let t = put(&mut log, &[("a", None)], Codec::Gzip, NOW);
    roll(&mut log);
    log.clean(NOW + 1000, Offset(i64::MAX))
        .unwrap()
        .expect("due");
    let recs = read_all(&log);
    assert!(
        recs.contains(&(t[0], Some(b"a".to_vec()), None)),
        "tombstone kept: {recs:?}"
    );
    assert!(!recs
        .iter()
        .any(|r| r.1.as_deref() == Some(&b"a"[..]) && r.2.is_some()));
    // New dirty data so another clean is due, after the retention.
    put(&mut log, &[("c", Some("1"))], Codec::None, NOW);
    roll(&mut log);
    let later = NOW + HOUR.as_millis() as i64 + 10_000;
    log.clean(later, Offset(i64::MAX)).unwrap().expect("due");
    let recs = read_all(&log);
    assert!(
        !recs.iter().any(|r| r.1.as_deref() == Some(&b"a"[..])),
        "tombstone gone: {recs:?}"
    );
    assert!(recs.iter().any(|r| r.1.as_deref() == Some(&b"b"[..])));
}

#[test]
fn keyless_records_are_dropped_and_gaps_are_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), compact_config());
    let mut b = encode_batch(&[(None, Some(b"nokey"))], Codec::None, NOW, (-1, -1, -1));
    log.append_as_leader(&mut b, 1, NOW).unwrap();
    put(&mut log, &[("a", Some("1"))], Codec::None, NOW); // offset 1, superseded
    put(&mut log, &[("b", Some("1"))], Codec::None, NOW); // offset 2
    put(&mut log, &[("a", Some("2"))], Codec::None, NOW); // offset 3
    roll(&mut log);
    log.clean(NOW, Offset(i64::MAX)).unwrap().expect("due");
    // Reading at a removed offset returns the next retained batch.
    let r = log
        .read(Offset(1), usize::MAX, Offset(i64::MAX), true)
        .unwrap();
    let recs = decode_batches(&r.records);
    assert_eq!(recs[0].0, 2);
    assert_eq!(recs[1].0, 3);
    let r0 = log
        .read(Offset(0), usize::MAX, Offset(i64::MAX), true)
        .unwrap();
    assert_eq!(
        decode_batches(&r0.records)[0].0,
        2,
        "keyless record at 0 dropped"
    );
}

#[test]
fn a_producers_last_batch_stays_as_an_empty_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), compact_config());
    let mut p1 = encode_batch(
        &[(Some(b"k"), Some(b"1")), (Some(b"j"), Some(b"1"))],
        Codec::Zstd,
        NOW,
        (7, 2, 0),
    );
    log.append_as_leader(&mut p1, 1, NOW).unwrap(); // 0..=1, producer 7's only batch
    let mut p2 = encode_batch(&[(Some(b"x"), Some(b"1"))], Codec::None, NOW, (8, 0, 0));
    log.append_as_leader(&mut p2, 1, NOW).unwrap(); // 2, producer 8 batch 1
    let mut p3 = encode_batch(&[(Some(b"x"), Some(b"2"))], Codec::None, NOW, (8, 0, 1));
    log.append_as_leader(&mut p3, 1, NOW).unwrap(); // 3, producer 8 batch 2
    put(
        &mut log,
        &[("k", Some("2")), ("j", Some("2"))],
        Codec::None,
        NOW,
    ); // 4..=5 supersede p1
    roll(&mut log);
    log.clean(NOW, Offset(i64::MAX)).unwrap().expect("due");
    let r = log
        .read(Offset(0), usize::MAX, Offset(i64::MAX), true)
        .unwrap();
    let hs = headers(&r.records);
    let first = hs[0];
    assert_eq!(
        (first.base_offset, first.last_offset(), first.records_count),
        (0, 1, 0)
    );
    assert_eq!(
        (first.producer_id, first.producer_epoch, first.base_sequence),
        (7, 2, 0)
    );
    tributary_log::batch::verify_crc(&r.records[..first.size()]).unwrap();
    // Producer 8's first batch is emptied and not its last: dropped.
    assert!(!hs.iter().any(|h| h.base_offset == 2), "{hs:?}");
    assert!(hs
        .iter()
        .any(|h| h.base_offset == 3 && h.records_count == 1 && h.base_sequence == 1));
}

#[test]
fn dirty_ratio_gates_cleaning_and_max_lag_forces_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(
        dir.path(),
        LogConfig {
            min_cleanable_dirty_ratio: 0.99,
            ..compact_config()
        },
    );
    fill(&mut log, 3, 20, &[Codec::None]);
    roll(&mut log);
    log.clean(NOW, Offset(i64::MAX))
        .unwrap()
        .expect("first clean: everything is dirty");
    // A little new data: the ratio is below 0.99.
    put(&mut log, &[("k0", Some("new"))], Codec::None, NOW);
    roll(&mut log);
    let plan = log.plan_clean(NOW, Offset(i64::MAX));
    assert!(plan.is_none(), "ratio below the minimum");
    log.set_config(LogConfig {
        max_compaction_lag: Some(Duration::from_secs(1)),
        ..log.config().clone()
    });
    let plan = log
        .plan_clean(NOW + 5_000, Offset(i64::MAX))
        .expect("forced by max lag");
    assert!(plan.forced && plan.dirty_ratio < 0.99);
    // The high watermark bounds the section.
    log.set_config(LogConfig {
        max_compaction_lag: None,
        min_cleanable_dirty_ratio: 0.0,
        ..log.config().clone()
    });
    assert!(log.plan_clean(NOW, Offset(0)).is_none());
    // min.compaction.lag keeps recent segments out.
    log.set_config(LogConfig {
        min_compaction_lag: HOUR,
        ..log.config().clone()
    });
    assert!(log.plan_clean(NOW, Offset(i64::MAX)).is_none());
    assert!(log
        .plan_clean(NOW + 2 * HOUR.as_millis() as i64, Offset(i64::MAX))
        .is_some());
}

#[test]
fn a_log_that_is_not_compacted_is_never_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(
        dir.path(),
        LogConfig {
            compact: false,
            ..compact_config()
        },
    );
    fill(&mut log, 2, 10, &[Codec::None]);
    roll(&mut log);
    assert_eq!(log.clean(NOW, Offset(i64::MAX)).unwrap(), None);
}

#[test]
fn reopened_log_and_manager_keep_the_cleaned_result_and_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let tp = common::tp();
    let written;
    {
        let mgr = LogManager::open(dir.path()).unwrap();
        let log = mgr.open_or_create(&tp, TOPIC_ID, compact_config()).unwrap();
        {
            let mut l = log.write().unwrap();
            written = fill(&mut l, 4, 10, &[Codec::Lz4, Codec::None]);
            roll(&mut l);
        }
        let out = mgr.run_cleaner(NOW, |_| Some(Offset(i64::MAX)));
        assert_eq!(out.len(), 1);
        mgr.shutdown().unwrap();
    }
    let mgr = LogManager::open(dir.path()).unwrap();
    let log = mgr.open_or_create(&tp, TOPIC_ID, compact_config()).unwrap();
    let l = log.read().unwrap();
    assert!(l.first_dirty_offset().0 > 0, "cleaner checkpoint restored");
    assert!(
        l.plan_clean(NOW, Offset(i64::MAX)).is_none(),
        "nothing dirty after restart"
    );
    let latest = latest_by_key(&written);
    let recs: Vec<Rec> = read_all(&l)
        .into_iter()
        .filter(|r| r.1.as_deref() != Some(&b"roller"[..]))
        .collect();
    assert_eq!(recs.len(), latest.len());
    for (o, k, v) in recs {
        let key = String::from_utf8(k.unwrap()).unwrap();
        assert_eq!(latest[&key], (o, v.map(|v| String::from_utf8(v).unwrap())));
    }
}

/// Builds the files of a clean by hand: returns the log dir, the original segment bases, and
/// the bytes of the cleaned group's files (named `.cleaned`) left next to the originals.
fn prepared_clean() -> (tempfile::TempDir, Vec<Offset>, Vec<Rec>, Vec<Rec>) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = new_log(dir.path(), compact_config());
    fill(&mut log, 4, 12, &[Codec::None]);
    roll(&mut log);
    let bases = log.segment_base_offsets();
    let before = read_all(&log);
    // Clean a copy of the directory to obtain the cleaned files.
    let copy = tempfile::tempdir().unwrap();
    let pdir = partition_dir(dir.path());
    let cdir = copy.path().join(common::tp().to_string());
    fs::create_dir(&cdir).unwrap();
    for e in fs::read_dir(&pdir).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), cdir.join(e.file_name())).unwrap();
    }
    drop(log);
    let mut clean = Log::open(&cdir, compact_config(), Offset(0), false).unwrap();
    clean.clean(NOW, Offset(i64::MAX)).unwrap().expect("due");
    let after = read_all(&clean);
    // Keep the cleaned segments with their final names inside the copy.
    let cleaned_bases = clean.segment_base_offsets();
    drop(clean);
    for b in cleaned_bases {
        if bases.contains(&b) && b.0 < bases[bases.len() - 1].0 {
            for ext in ["log", "index", "timeindex"] {
                let name = format!("{:020}.{ext}", b.0);
                fs::copy(cdir.join(&name), pdir.join(format!("{name}.cleaned"))).unwrap();
            }
        }
    }
    (dir, bases, before, after)
}

fn rename_all(pdir: &std::path::Path, from: &str, to: &str) {
    for e in fs::read_dir(pdir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(from) {
            fs::rename(pdir.join(&name), pdir.join(format!("{stem}{to}"))).unwrap();
        }
    }
}

fn reopen(dir: &std::path::Path) -> Log {
    Log::open(&partition_dir(dir), compact_config(), Offset(0), false).unwrap()
}

#[test]
fn crash_before_the_swap_commit_keeps_the_old_segments() {
    let (dir, bases, before, _) = prepared_clean();
    let log = reopen(dir.path());
    assert_eq!(log.segment_base_offsets(), bases);
    assert_eq!(read_all(&log), before);
    let leftovers: Vec<_> = fs::read_dir(partition_dir(dir.path()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cleaned"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn crash_after_the_index_renames_but_before_the_log_rename_keeps_the_old_segments() {
    let (dir, bases, before, _) = prepared_clean();
    let pdir = partition_dir(dir.path());
    rename_all(&pdir, ".index.cleaned", ".index.swap");
    rename_all(&pdir, ".timeindex.cleaned", ".timeindex.swap");
    let log = reopen(dir.path());
    assert_eq!(log.segment_base_offsets(), bases);
    assert_eq!(read_all(&log), before);
}

#[test]
fn crash_after_the_swap_commit_completes_the_clean() {
    for delete_old in [false, true] {
        let (dir, _, _, after) = prepared_clean();
        let pdir = partition_dir(dir.path());
        rename_all(&pdir, ".cleaned", ".swap");
        if delete_old {
            // The old segments are partly deleted already (only the first one's log file).
            fs::remove_file(pdir.join(format!("{:020}.log", 0))).unwrap();
        }
        let log = reopen(dir.path());
        assert_eq!(read_all(&log), after, "delete_old={delete_old}");
    }
}

#[test]
fn crash_during_the_final_renames_completes_the_clean() {
    let (dir, bases, _, after) = prepared_clean();
    let pdir = partition_dir(dir.path());
    rename_all(&pdir, ".cleaned", ".swap");
    // Old segments deleted, index renamed into place, log file still .swap.
    for b in &bases[..bases.len() - 1] {
        for ext in ["log", "index", "timeindex"] {
            let _ = fs::remove_file(pdir.join(format!("{:020}.{ext}", b.0)));
        }
    }
    rename_all(&pdir, ".index.swap", ".index");
    let log = reopen(dir.path());
    assert_eq!(read_all(&log), after);
}

/// With a key map too small for the dirty part, each clean maps what fits (at least one
/// segment) and cleans up to there; repeated cleans reach the same result as one unbounded
/// clean, and the first dirty offset advances every pass.
#[test]
fn a_small_dedupe_buffer_cleans_in_several_passes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let small = LogConfig {
        cleaner_dedupe_buffer_bytes: 1,
        ..compact_config()
    };
    let mut log = new_log(&dir.path().join("small"), small);
    let mut whole = new_log(&dir.path().join("whole"), compact_config());
    let written = fill(&mut log, 7, 40, &[Codec::None, Codec::Lz4]);
    fill(&mut whole, 7, 40, &[Codec::None, Codec::Lz4]);
    roll(&mut log);
    roll(&mut whole);
    whole.clean(NOW, Offset(i64::MAX)).unwrap().expect("due");
    let mut passes = 0;
    let mut last_dirty = log.first_dirty_offset();
    while let Some(o) = log.clean(NOW, Offset(i64::MAX)).unwrap() {
        assert!(
            o.first_dirty_offset > last_dirty,
            "every pass makes progress"
        );
        last_dirty = o.first_dirty_offset;
        passes += 1;
        assert!(passes < 100);
    }
    assert!(passes > 2, "the budget split the work: {passes} passes");
    assert_eq!(read_all(&log), read_all(&whole));
    let latest = latest_by_key(&written);
    let got = read_all(&log);
    assert_eq!(
        got.iter()
            .filter(|r| r.1.as_deref() != Some(&b"roller"[..]))
            .count(),
        latest.len()
    );
}

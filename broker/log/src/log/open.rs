//! Creating a partition directory and opening an existing one with recovery: which segments to
//! scan, what to do with leftovers (`.deleted`, `.tmp`, orphan indexes) and with segments after
//! a corrupt point.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use tracing::{info, warn};

use super::{wall_clock_ms, Log, PARTITION_METADATA};
use crate::checkpoint::{read_partition_metadata, sync_dir, write_partition_metadata};
use crate::config::LogConfig;
use crate::epoch_cache::EpochCache;
use crate::error::{io_err, LogError};
use crate::producer_state::ProducerState;
use crate::segment::{
    delete_segment_files, segment_file, Segment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
use crate::types::{Offset, TopicPartition};

/// Base offsets of the `<20 digits>.log` files in `dir`; removes `.deleted`/`.tmp` leftovers
/// and index files without a log file.
fn scan_dir(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut bases = Vec::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list partition directory", dir))? {
        let entry = entry.map_err(io_err("list partition directory", dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".deleted") || name.ends_with(".tmp") {
            fs::remove_file(&path).map_err(io_err("remove leftover", &path))?;
            continue;
        }
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        match ext {
            LOG_SUFFIX => bases.push(base),
            INDEX_SUFFIX | TIME_INDEX_SUFFIX => indexes.push((base, path)),
            _ => {}
        }
    }
    bases.sort_unstable();
    for (base, path) in indexes {
        if bases.binary_search(&base).is_err() {
            warn!(file = %path.display(), "removing index without a segment");
            fs::remove_file(&path).map_err(io_err("remove orphan index", &path))?;
        }
    }
    Ok(bases)
}

impl Log {
    /// Creates the partition directory `dir_root/<topic>-<partition>` with `partition.metadata`
    /// and an empty segment at offset 0. Fails if the directory already exists.
    pub fn create(
        dir_root: &Path,
        partition: &TopicPartition,
        topic_id: [u8; 16],
        config: LogConfig,
    ) -> Result<Log, LogError> {
        fs::create_dir_all(dir_root).map_err(io_err("create log directory", dir_root))?;
        let dir = dir_root.join(partition.to_string());
        fs::create_dir(&dir).map_err(io_err("create partition directory", &dir))?;
        write_partition_metadata(&dir.join(PARTITION_METADATA), &topic_id)?;
        let segment = Segment::create(&dir, 0, &config)?;
        sync_dir(dir_root).map_err(io_err("fsync directory", dir_root))?;
        info!(partition = %partition, "created log");
        Ok(Log {
            epochs: EpochCache::load(&dir)?,
            dir,
            partition: partition.clone(),
            topic_id,
            config,
            segments: BTreeMap::from([(0, segment)]),
            log_start_offset: Offset(0),
            recovery_point: Offset(0),
            last_flush_ms: wall_clock_ms(),
            producers: ProducerState::default(),
            first_dirty_offset: Offset(0),
            truncations: 0,
            deleted_files: Vec::new(),
            unsynced_snapshots: Vec::new(),
        })
    }

    /// Opens an existing partition directory.
    ///
    /// Segments holding offsets at or after `recovery_point` are scanned batch by batch
    /// (lengths, CRCs), and all of them if `clean_shutdown` is false; scanned segments get
    /// their indexes rebuilt, and a torn or corrupt tail is truncated, with every later
    /// segment deleted. Other segments trust their indexes, which are rebuilt if missing or
    /// inconsistent. The log start offset is the first segment's base offset until the
    /// manager restores the checkpointed one.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        recovery_point: Offset,
        clean_shutdown: bool,
    ) -> Result<Log, LogError> {
        let partition = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| TopicPartition::parse_dir_name(n).ok())
            .ok_or_else(|| LogError::InvalidPartitionDir {
                path: dir.to_path_buf(),
            })?;
        let topic_id = match read_partition_metadata(&dir.join(PARTITION_METADATA))? {
            Some(id) => id,
            None => {
                warn!(partition = %partition, "partition.metadata missing, topic id unknown");
                [0; 16]
            }
        };
        super::clean::complete_swaps(dir)?;
        let bases = scan_dir(dir)?;
        let segments = open_segments(dir, &bases, &config, recovery_point, clean_shutdown)?;
        let mut log = Log {
            epochs: EpochCache::load(dir)?,
            dir: dir.to_path_buf(),
            partition,
            topic_id,
            config,
            log_start_offset: Offset(0),
            recovery_point,
            segments,
            last_flush_ms: wall_clock_ms(),
            producers: ProducerState::default(),
            first_dirty_offset: Offset(0),
            truncations: 0,
            deleted_files: Vec::new(),
            unsynced_snapshots: Vec::new(),
        };
        if log.segments.is_empty() {
            let seg = Segment::create(dir, 0, &log.config)?;
            log.segments.insert(0, seg);
        }
        let first = *log.segments.keys().next().expect("just ensured non-empty");
        log.log_start_offset = Offset(first);
        let leo = log.log_end_offset();
        log.recovery_point = log.recovery_point.min(leo);
        log.epochs.truncate_from_end(leo)?;
        log.epochs.truncate_from_start(log.log_start_offset)?;
        log.rebuild_producer_state()?;
        info!(partition = %log.partition, log_start = %log.log_start_offset, log_end = %leo,
            segments = log.segments.len(), "opened log");
        Ok(log)
    }

    /// Restores the log start offset from the manager's checkpoint (ignored if outside the
    /// segments' range).
    pub(crate) fn restore_log_start_offset(&mut self, offset: Offset) -> Result<(), LogError> {
        if offset > self.log_start_offset && offset <= self.log_end_offset() {
            self.log_start_offset = offset;
            self.epochs.truncate_from_start(offset)?;
        }
        Ok(())
    }
}

/// Opens the segments in order; stops at a corrupt point or an overlap and deletes the rest.
fn open_segments(
    dir: &Path,
    bases: &[i64],
    config: &LogConfig,
    recovery_point: Offset,
    clean_shutdown: bool,
) -> Result<BTreeMap<i64, Segment>, LogError> {
    // The segment containing the recovery point and all later ones are scanned.
    let scan_from = bases
        .iter()
        .rev()
        .find(|b| **b <= recovery_point.0)
        .copied()
        .unwrap_or(i64::MIN);
    let mut segments = BTreeMap::new();
    let mut prev_end = i64::MIN;
    for (i, &base) in bases.iter().enumerate() {
        let recover = !clean_shutdown || base >= scan_from;
        let stop = if base < prev_end {
            Some(format!(
                "base offset {base} is below the previous segment's end {prev_end}"
            ))
        } else {
            let (seg, cut) = Segment::open(dir, base, config, recover)?;
            prev_end = seg.next_offset();
            segments.insert(base, seg);
            cut
        };
        if let Some(reason) = stop {
            let mut rest = &bases[i + 1..];
            if !segments.contains_key(&base) {
                rest = &bases[i..];
            }
            for &later in rest {
                warn!(file = %segment_file(dir, later, LOG_SUFFIX).display(), %reason,
                    "deleting segment after the log end");
                delete_segment_files(dir, later)?;
            }
            break;
        }
    }
    Ok(segments)
}

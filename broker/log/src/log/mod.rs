//! One partition's log: the directory `<topic>-<partition>` with its segments, leader-epoch
//! cache and `partition.metadata`. Owns offset assignment, segment rolling, recovery on open,
//! flushing, truncation and retention.
//!
//! It does not know the high watermark, replicas or the protocol: the broker passes the upper
//! read bound and decides who may append. The log start offset is persisted by the
//! [`crate::LogManager`]'s checkpoint, not by the log itself.

mod append;
mod clean;
mod open;
mod read;
mod retention;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::LogConfig;
use crate::epoch_cache::EpochCache;
use crate::error::{io_err, LogError};
use crate::producer_state::{BatchMetadata, ProducerState};
use crate::segment::Segment;
use crate::types::{Offset, TopicPartition};

pub use append::{validate_batches, Origin};
pub use clean::{BuiltClean, CleanOutcome, CleanPlan};
pub use read::{FileRange, RangeRead};

/// File holding the topic id inside the partition directory.
pub(crate) const PARTITION_METADATA: &str = "partition.metadata";

/// What an append wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record (the log end offset before the append).
    pub first_offset: Offset,
    /// Offset of the last record; `first_offset - 1` for an empty append.
    pub last_offset: Offset,
    /// The broker's timestamp if the topic uses LogAppendTime.
    pub log_append_time: Option<i64>,
    /// Largest batch max timestamp of the append (-1 if empty).
    pub max_timestamp: i64,
    /// Number of records (messages), from the batch headers.
    pub records: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The append was an idempotent producer's retry of a batch already in the log: nothing
    /// was written and the offsets are the original ones.
    pub duplicate: bool,
}

/// Whole batches returned by [`Log::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Concatenated batches as stored; empty if nothing is readable.
    pub records: Vec<u8>,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
}

/// What [`Log::enforce_retention`] deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
    pub log_start_offset: Offset,
}

/// The files of the rolled segments that are not fsynced yet, taken under the log's lock by
/// [`Log::rolled_flush`] and fsynced without it ([`PendingFlush::sync`]), so that an append
/// never waits for a rolled segment to reach the disk. [`Log::flushed_to`] then moves the
/// recovery point.
#[derive(Debug)]
pub struct PendingFlush {
    /// Every offset below this is in the files.
    upto: Offset,
    /// The log's truncation count when planned: a truncation since then voids the plan (the
    /// offsets below `upto` may have been rewritten).
    truncations: u64,
    files: Vec<(PathBuf, Arc<File>)>,
    /// Producer snapshots the rolls wrote without fsync, and the directory holding them and
    /// the new segments' names.
    snapshots: Vec<PathBuf>,
    dir: PathBuf,
}

impl PendingFlush {
    /// Fsyncs the files (blocking; call it without holding the log's lock).
    pub fn sync(&self) -> Result<(), LogError> {
        for (path, file) in &self.files {
            file.sync_all()
                .map_err(io_err("fsync rolled segment", path))?;
        }
        sync_paths(&self.snapshots)?;
        // The new segments' and snapshots' names.
        crate::checkpoint::sync_dir(&self.dir).map_err(io_err("fsync directory", &self.dir))
    }

    /// The offset below which the flush makes everything durable.
    pub fn upto(&self) -> Offset {
        self.upto
    }
}

/// Fsyncs files by path; one that is gone (deleted by retention or a truncation) is skipped.
fn sync_paths(paths: &[PathBuf]) -> Result<(), LogError> {
    for path in paths {
        match File::open(path) {
            Ok(f) => f
                .sync_all()
                .map_err(io_err("fsync producer snapshot", path))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("open producer snapshot", path)(e)),
        }
    }
    Ok(())
}

/// A partition log. Reads take `&self`; everything that changes files takes `&mut self`, so
/// the broker's `RwLock` around it is what serialises appends.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    partition: TopicPartition,
    topic_id: [u8; 16],
    config: LogConfig,
    /// Segments by base offset; never empty, the last one is the active segment.
    segments: BTreeMap<i64, Segment>,
    log_start_offset: Offset,
    /// Every offset below this is fsynced.
    recovery_point: Offset,
    epochs: EpochCache,
    last_flush_ms: i64,
    /// Idempotent producers' last batches, for deduplication and sequence checks.
    producers: ProducerState,
    /// Offsets below this were compacted by the last clean (Kafka's cleaner checkpoint); kept
    /// by the [`crate::LogManager`] in `cleaner-offset-checkpoint`.
    first_dirty_offset: Offset,
    /// Truncations so far: a [`PendingFlush`] planned before the latest one is void.
    truncations: u64,
    /// Segment files retention or DeleteRecords renamed to `*.deleted`, still to be removed
    /// ([`Log::take_deleted_files`]; dropping the log removes what is left, and opening a log
    /// removes leftovers of a crash).
    deleted_files: Vec<PathBuf>,
    /// Producer snapshots written by rolls and not fsynced yet (see [`Log::rolled_flush`]).
    unsynced_snapshots: Vec<PathBuf>,
}

/// Segment files dropped from a log, to be removed without holding its lock (unlinking frees
/// the blocks, which takes a while for a large segment).
#[derive(Debug, Default)]
#[must_use = "the files stay on disk until removed"]
pub struct DeletedFiles(Vec<PathBuf>);

impl DeletedFiles {
    /// Removes the files (blocking; call it without holding the log's lock).
    pub fn remove(self) -> Result<(), LogError> {
        crate::segment::remove_renamed(&self.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Err(e) = crate::segment::remove_renamed(&self.deleted_files) {
            tracing::warn!(partition = %self.partition, error = %e, "removing deleted segment files failed");
        }
    }
}

pub(crate) fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Log {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn topic_partition(&self) -> &TopicPartition {
        &self.partition
    }

    /// The topic id from `partition.metadata` (all zeros if the file was missing).
    pub fn topic_id(&self) -> [u8; 16] {
        self.topic_id
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration; index size limits apply to segments created afterwards.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> Offset {
        self.log_start_offset
    }

    /// Offset the next appended record gets.
    pub fn log_end_offset(&self) -> Offset {
        Offset(self.active().next_offset())
    }

    /// Offsets below this are known to be fsynced.
    pub fn recovery_point(&self) -> Offset {
        self.recovery_point
    }

    /// Total bytes of all segment files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<Offset> {
        self.segments.keys().map(|b| Offset(*b)).collect()
    }

    /// A broker that becomes the partition's leader records its epoch as starting at the log end
    /// at once, as Kafka does on become-leader, not with its first append: a follower that asks
    /// where an older epoch ends (OffsetForLeaderEpoch, or the diverging epoch of a Fetch) must
    /// get the new leader's log end even before the new leader wrote anything. Returns whether
    /// the cache changed (an epoch at or below the latest one is ignored).
    pub fn assign_leader_epoch(&mut self, epoch: i32) -> Result<bool, LogError> {
        let end = self.log_end_offset();
        Ok(self.epochs.assign(epoch, end)?)
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// Leader-epoch cache entries `(epoch, start offset)`, oldest first.
    pub fn epoch_entries(&self) -> Vec<(i32, Offset)> {
        self.epochs.entries().to_vec()
    }

    /// OffsetForLeaderEpoch: the largest epoch ≤ `epoch` and the offset where it ended (the
    /// start of the next epoch, or the log end for the latest). `None` for an unknown epoch
    /// above all known ones (Kafka's UNDEFINED_EPOCH/UNDEFINED_EPOCH_OFFSET).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, Offset)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The largest batch max timestamp and the last offset of the (first) batch holding it,
    /// for ListOffsets MAX_TIMESTAMP. The exact record can be found by decoding the batch from
    /// [`Log::first_batch_with_timestamp_at_least`] with that timestamp.
    pub fn max_timestamp_and_offset(&self) -> Option<(i64, Offset)> {
        let mut best: Option<(i64, Offset)> = None;
        for seg in self.segments.values().filter(|s| !s.is_empty()) {
            if best.is_none_or(|(t, _)| seg.max_timestamp() > t) {
                best = Some((seg.max_timestamp(), Offset(seg.offset_of_max_timestamp())));
            }
        }
        best
    }

    /// Number of producer ids the log keeps state for.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Epoch and last batch the log knows of a producer id.
    pub fn last_producer_batch(&self, producer_id: i64) -> Option<(i16, BatchMetadata)> {
        self.producers.last_batch(producer_id)
    }

    /// Forgets producers idle for longer than `expiration_ms` (`producer.id.expiration.ms`),
    /// judged by their last batch's max timestamp. Returns how many were removed.
    pub fn expire_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producers.expire(now_ms, expiration_ms)
    }

    /// Rebuilds the producer state: the newest snapshot at or below the log end, then the
    /// headers of every batch after it (all batches from the log start without a snapshot).
    fn rebuild_producer_state(&mut self) -> Result<(), LogError> {
        let leo = self.log_end_offset().0;
        let (mut state, from) = ProducerState::load_latest(&self.dir, leo)?;
        let first_base = *self
            .segments
            .keys()
            .next()
            .expect("a log always has a segment");
        let from = from.unwrap_or(first_base).max(first_base);
        let start_seg = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let mut replayed = 0u64;
        for seg in self.segments.range(start_seg..).map(|(_, s)| s) {
            seg.headers_from(from, |h| {
                state.update(h);
                replayed += 1;
            })?;
        }
        if replayed > 0 {
            tracing::info!(partition = %self.partition, from, batches = replayed,
                producers = state.len(), "rebuilt producer state from the log");
        }
        self.producers = state;
        Ok(())
    }

    /// Fsyncs every segment holding offsets at or above the recovery point, then advances the
    /// recovery point to the log end. Returns once the data is on disk.
    pub fn flush(&mut self) -> Result<(), LogError> {
        let from = self.first_unflushed_segment();
        for seg in self.segments.range(from..).map(|(_, s)| s) {
            seg.sync()?;
        }
        sync_paths(&self.unsynced_snapshots)?;
        self.unsynced_snapshots.clear();
        self.recovery_point = self.log_end_offset();
        Ok(())
    }

    /// Base offset of the segment holding the recovery point: from it on, segments may hold
    /// data not yet on disk.
    fn first_unflushed_segment(&self) -> i64 {
        self.segments
            .range(..=self.recovery_point.0)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b)
    }

    /// The segment files retention or DeleteRecords dropped since the last call, for the
    /// caller to remove once it has released the log's lock.
    pub fn take_deleted_files(&mut self) -> DeletedFiles {
        DeletedFiles(std::mem::take(&mut self.deleted_files))
    }

    /// The rolled segments holding offsets at or above the recovery point, to be fsynced
    /// without the log's lock (a roll does not fsync: that would hold up appends for as long
    /// as the disk takes to write a whole segment). `None` when only the active segment is
    /// unflushed.
    pub fn rolled_flush(&self) -> Option<PendingFlush> {
        let active = *self.segments.keys().next_back()?;
        if self.recovery_point.0 >= active && self.unsynced_snapshots.is_empty() {
            return None;
        }
        let from = self.first_unflushed_segment();
        let files = self
            .segments
            .range(from..active)
            .flat_map(|(_, s)| s.handles())
            .collect();
        Some(PendingFlush {
            upto: Offset(active),
            truncations: self.truncations,
            files,
            snapshots: self.unsynced_snapshots.clone(),
            dir: self.dir.clone(),
        })
    }

    /// Records that `flush` was synced: the recovery point moves up to it, unless the log was
    /// truncated since it was planned. Returns whether it moved.
    pub fn flushed_to(&mut self, flush: &PendingFlush) -> bool {
        if flush.truncations != self.truncations {
            return false;
        }
        self.unsynced_snapshots
            .retain(|p| !flush.snapshots.contains(p));
        let moves = flush.upto > self.recovery_point && flush.upto <= self.log_end_offset();
        if moves {
            self.recovery_point = flush.upto;
        }
        moves
    }

    /// Flushes if `flush.messages` unflushed records accumulated or `flush.ms` passed since the
    /// last flush. Returns whether it flushed.
    pub fn maybe_flush(&mut self, now_ms: i64) -> Result<bool, LogError> {
        let unflushed = self.log_end_offset().0 - self.recovery_point.0;
        if unflushed <= 0 {
            self.last_flush_ms = now_ms;
            return Ok(false);
        }
        let by_count = self
            .config
            .flush_messages
            .is_some_and(|n| unflushed as u64 >= n);
        let by_time = self
            .config
            .flush_ms
            .is_some_and(|d| now_ms - self.last_flush_ms >= d.as_millis() as i64);
        if by_count || by_time {
            self.flush()?;
            self.last_flush_ms = now_ms;
        }
        Ok(by_count || by_time)
    }

    /// Writes the active segment's final time-index entry and flushes everything. The log
    /// stays usable; dropping it afterwards is a clean close.
    pub fn close(&mut self) -> Result<(), LogError> {
        self.active_mut().seal()?;
        self.flush()?;
        let leo = self.log_end_offset().0;
        self.producers.write_snapshot(&self.dir, leo)
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Seals and flushes the active segment, then starts a new one at the log end.
    fn roll(&mut self) -> Result<(), LogError> {
        let next = self.log_end_offset().0;
        if self.active().is_empty() {
            return Ok(());
        }
        // No fsync here: the rolled segment is flushed without the log's lock (`rolled_flush`,
        // run by the log manager's `flush_rolled`), so an append never waits for the disk.
        self.active_mut().seal()?;
        let seg = Segment::create(&self.dir, next, &self.config)?;
        self.segments.insert(next, seg);
        // The producer state as of the new segment's base, so a restart replays at most the
        // active segment; fsynced with the rolled segment, later.
        let snapshot = self.producers.write_snapshot_unsynced(&self.dir, next)?;
        self.unsynced_snapshots.push(snapshot);
        tracing::info!(partition = %self.partition, base_offset = next, "rolled new segment");
        Ok(())
    }
}

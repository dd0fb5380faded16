//! Log compaction (`cleanup.policy=compact`): keeping only the latest record per key in the
//! cleanable section of the log, with offsets preserved.
//!
//! Cleaning has three steps so the broker can hold the log's write lock only for the last:
//! [`Log::plan_clean`] (read lock) picks the section and checks the dirty ratio,
//! [`Log::build_clean`] (read lock) writes the cleaned segments as `<base>.log.cleaned` (+
//! indexes) and fsyncs them, and [`Log::install_clean`] (write lock) re-checks that the section
//! is unchanged and swaps the files in: `.cleaned` → `.swap` (the commit point is the `.log`
//! rename), delete the old segments, `.swap` → final name. [`super::open`] finishes or discards
//! an interrupted swap.
//!
//! Rules (Kafka's unless said otherwise):
//! * The section is every segment before the active one, from the first, stopping at a segment
//!   holding offsets at or above the caller's bound (the high watermark) or a batch newer than
//!   `min.compaction.lag.ms`.
//! * The key map covers the dirty part of the section (from the first dirty offset), segment by
//!   segment while it fits `log.cleaner.dedupe.buffer.size` (always at least one segment); the
//!   section is rewritten from its first segment up to the end of the mapped part, and later
//!   segments wait for the next pass. Exact keys are stored (no hashing, so no collisions).
//! * A keyed record is kept unless the map holds a later offset for its key (keys the map
//!   lacks come from the clean part, where earlier passes left one record per key); records without a key
//!   are dropped; a tombstone (null value) is dropped once its batch's max timestamp is older
//!   than `delete.retention.ms` (instead of KIP-534's stamped delete horizon, see the README).
//! * Control and transactional batches are kept untouched and their records do not shadow
//!   older values (this broker has no transactions; keeping them is the safe choice).
//! * A rewritten batch keeps base offset, last offset delta, base timestamp, producer id,
//!   epoch, base sequence, leader epoch, attributes and codec. A batch that loses every record
//!   is dropped, except that it stays as an empty batch when it is its producer's last batch in
//!   the log (so producer state can be rebuilt) or the last batch of its segment (so each
//!   segment's end offset, and with it the swap recovery range, is preserved).
//! * Cleaned segments are merged into groups whose cleaned size fits `segment.bytes` and whose
//!   offsets fit the 32-bit relative index.

use std::collections::HashMap;
use std::fs;

use tracing::{info, warn};

use super::Log;
use crate::batch::BatchHeader;
use crate::checkpoint::sync_dir;
use crate::error::{io_err, LogError};
use crate::records::{empty_batch, BatchRecords};
use crate::segment::{
    delete_segment_files, segment_file, with_suffix, Segment, INDEX_SUFFIX, LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
};
use crate::types::Offset;

/// Suffix of a cleaned segment being written.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment that replaces old ones (the swap is committed).
pub(crate) const SWAP_SUFFIX: &str = ".swap";

/// What [`Log::plan_clean`] chose: the segments to rewrite.
#[derive(Debug, Clone)]
pub struct CleanPlan {
    /// `(base offset, size, next offset)` of each segment of the section, oldest first.
    segments: Vec<(i64, u64, i64)>,
    now_ms: i64,
    /// Dirty bytes / section bytes when planned.
    pub dirty_ratio: f64,
    /// Cleaning was forced by `max.compaction.lag.ms`.
    pub forced: bool,
}

impl CleanPlan {
    /// Offset after the section: the first dirty offset once cleaned.
    pub fn end(&self) -> Offset {
        Offset(self.segments.last().map_or(0, |s| s.2))
    }
}

/// Cleaned segments written to disk, waiting for [`Log::install_clean`].
#[derive(Debug)]
pub struct BuiltClean {
    plan: CleanPlan,
    groups: Vec<Group>,
    records_removed: u64,
}

#[derive(Debug)]
struct Group {
    /// Base offset of the first replaced segment, the cleaned segment's name.
    base: i64,
    replaces: Vec<i64>,
    segment: Segment,
}

/// What a clean did.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanOutcome {
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
    /// The new first dirty offset (the end of the cleaned section).
    pub first_dirty_offset: Offset,
    pub dirty_ratio: f64,
}

/// The key map and producer facts of one clean.
struct Facts {
    /// Latest offset of each key in the mapped dirty part of the section.
    latest: HashMap<Vec<u8>, i64>,
    /// Base offset of each producer's last batch in the whole log.
    last_batch_of_producer: HashMap<i64, i64>,
}

impl Log {
    /// Kafka's cleaner-offset-checkpoint value: offsets below it were cleaned.
    pub fn first_dirty_offset(&self) -> Offset {
        self.first_dirty_offset
    }

    pub(crate) fn restore_first_dirty_offset(&mut self, offset: Offset) {
        self.first_dirty_offset = offset;
    }

    /// Picks the cleanable section (see the module docs) below `upper` (the high watermark)
    /// and returns it if cleaning is due: the dirty ratio reaches `min.cleanable.dirty.ratio`,
    /// or a dirty segment's first batch is older than `max.compaction.lag.ms`.
    pub fn plan_clean(&self, now_ms: i64, upper: Offset) -> Option<CleanPlan> {
        if !self.config.compact {
            return None;
        }
        let lag = self.config.min_compaction_lag.as_millis() as i64;
        let active = self.active().base_offset();
        let section: Vec<&Segment> = self
            .segments
            .values()
            .take_while(|s| s.base_offset() != active && s.next_offset() <= upper.0)
            .take_while(|s| lag == 0 || s.largest_timestamp() <= now_ms.saturating_sub(lag))
            .collect();
        let first_dirty = self.first_dirty_offset.0;
        let dirty: Vec<&&Segment> = section
            .iter()
            .filter(|s| s.next_offset() > first_dirty)
            .collect();
        let dirty_bytes: u64 = dirty.iter().map(|s| s.size()).sum();
        let total: u64 = section.iter().map(|s| s.size()).sum();
        if dirty.is_empty() || total == 0 {
            return None;
        }
        let dirty_ratio = dirty_bytes as f64 / total as f64;
        let forced = self.config.max_compaction_lag.is_some_and(|max| {
            dirty.iter().any(|s| {
                s.first_batch_timestamp()
                    .is_some_and(|t| t >= 0 && now_ms.saturating_sub(t) > max.as_millis() as i64)
            })
        });
        if dirty_ratio < self.config.min_cleanable_dirty_ratio && !forced {
            return None;
        }
        Some(CleanPlan {
            segments: section
                .iter()
                .map(|s| (s.base_offset(), s.size(), s.next_offset()))
                .collect(),
            now_ms,
            dirty_ratio,
            forced,
        })
    }

    /// Writes the cleaned segments of `plan` as `.cleaned` files and fsyncs them. Reads only.
    pub fn build_clean(&self, mut plan: CleanPlan) -> Result<BuiltClean, LogError> {
        let (facts, mapped_end) = self.gather_facts(&plan)?;
        // Segments past the mapped part stay as they are until a later pass.
        plan.segments.retain(|s| s.2 <= mapped_end);
        let limit = self.config.effective_segment_bytes();
        let mut groups: Vec<Group> = Vec::new();
        let mut records_removed = 0;
        for &(base, _, next) in &plan.segments {
            let seg = self.segment_at(base)?;
            let (bytes, headers, removed) = self.clean_segment(seg, &facts, plan.now_ms)?;
            records_removed += removed;
            let fits = groups.last().is_some_and(|g| {
                g.segment.size() + bytes.len() as u64 <= limit
                    && next - 1 - g.base <= i64::from(i32::MAX)
            });
            if !fits {
                let segment = Segment::create_named(&self.dir, base, &self.config, CLEANED_SUFFIX)?;
                groups.push(Group {
                    base,
                    replaces: Vec::new(),
                    segment,
                });
            }
            let group = groups.last_mut().expect("a group was just ensured");
            group.segment.append(&[&bytes], bytes.len(), &headers)?;
            group.replaces.push(base);
        }
        for g in &mut groups {
            g.segment.seal()?;
            g.segment.sync()?;
        }
        Ok(BuiltClean {
            plan,
            groups,
            records_removed,
        })
    }

    /// Swaps the cleaned segments in, unless the section changed since it was planned (then
    /// the `.cleaned` files are removed and `None` is returned).
    pub fn install_clean(&mut self, built: BuiltClean) -> Result<Option<CleanOutcome>, LogError> {
        let BuiltClean {
            plan,
            groups,
            records_removed,
        } = built;
        let unchanged = plan.segments.iter().all(|&(base, size, next)| {
            self.segments
                .get(&base)
                .is_some_and(|s| s.size() == size && s.next_offset() == next)
        }) && self.active().base_offset()
            != plan.segments.last().map_or(-1, |s| s.0);
        if !unchanged {
            warn!(partition = %self.partition, "log changed while cleaning, discarding the cleaned segments");
            for g in groups {
                let base = g.base;
                drop(g.segment);
                remove_named(&self.dir, base, CLEANED_SUFFIX)?;
            }
            return Ok(None);
        }
        let bytes_before: u64 = plan.segments.iter().map(|s| s.1).sum();
        let mut bytes_after = 0;
        let groups_len = groups.len();
        for g in groups {
            bytes_after += g.segment.size();
            self.swap_in(g)?;
        }
        self.first_dirty_offset = plan.end();
        let outcome = CleanOutcome {
            segments_before: plan.segments.len(),
            segments_after: groups_len,
            bytes_before,
            bytes_after,
            records_removed,
            first_dirty_offset: plan.end(),
            dirty_ratio: plan.dirty_ratio,
        };
        info!(partition = %self.partition, segments_before = outcome.segments_before,
            segments_after = outcome.segments_after, bytes_before, bytes_after, records_removed,
            first_dirty = %outcome.first_dirty_offset, "cleaned log");
        Ok(Some(outcome))
    }

    /// Plans, builds and installs in one go (for callers holding the log exclusively).
    pub fn clean(&mut self, now_ms: i64, upper: Offset) -> Result<Option<CleanOutcome>, LogError> {
        let Some(plan) = self.plan_clean(now_ms, upper) else {
            return Ok(None);
        };
        let built = self.build_clean(plan)?;
        self.install_clean(built)
    }

    fn segment_at(&self, base: i64) -> Result<&Segment, LogError> {
        self.segments
            .get(&base)
            .ok_or_else(|| LogError::CorruptSegment {
                path: segment_file(&self.dir, base, LOG_SUFFIX),
                position: 0,
                reason: "segment disappeared while cleaning".into(),
            })
    }

    /// Pass one: the latest offset per key in the dirty part of the section, mapped segment by
    /// segment while the map fits `log.cleaner.dedupe.buffer.size` (at least one segment, so
    /// every pass makes progress), and each producer's last batch in the whole log (headers
    /// only). Returns the facts and the end of the mapped part: the section is cleaned only up
    /// to there.
    fn gather_facts(&self, plan: &CleanPlan) -> Result<(Facts, i64), LogError> {
        /// Bytes a map entry costs besides its key (offset, hash-table slot, `Vec` header).
        const ENTRY_OVERHEAD: u64 = 48;
        let mut facts = Facts {
            latest: HashMap::new(),
            last_batch_of_producer: HashMap::new(),
        };
        let first_dirty = self.first_dirty_offset.0;
        let budget = self.config.cleaner_dedupe_buffer_bytes;
        let mut used = 0u64;
        let mut mapped_end: Option<i64> = None;
        for seg in self.segments.values() {
            let in_section = plan.segments.iter().any(|s| s.0 == seg.base_offset());
            let dirty = in_section && seg.next_offset() > first_dirty;
            // Map this segment if nothing is mapped yet or the map still has room.
            let map = dirty && (mapped_end.is_none() || used < budget);
            seg.for_each_header(|pos, h| {
                if h.producer_id >= 0 {
                    facts
                        .last_batch_of_producer
                        .insert(h.producer_id, h.base_offset);
                }
                if map && !h.is_control() && !h.is_transactional() && h.last_offset() >= first_dirty
                {
                    let (_, batch) = self.parse_batch(seg, pos, h)?;
                    for r in &batch.records {
                        let offset = batch.offset(r);
                        if offset < first_dirty {
                            continue;
                        }
                        if let Some(key) = batch.key(r) {
                            if facts.latest.insert(key.to_vec(), offset).is_none() {
                                used += key.len() as u64 + ENTRY_OVERHEAD;
                            }
                        }
                    }
                }
                Ok(())
            })?;
            if map {
                mapped_end = Some(seg.next_offset());
            }
        }
        Ok((facts, mapped_end.unwrap_or(first_dirty)))
    }

    /// The batch at `pos`, read and parsed: its raw bytes and its records.
    fn parse_batch(
        &self,
        seg: &Segment,
        pos: u64,
        h: &BatchHeader,
    ) -> Result<(Vec<u8>, BatchRecords), LogError> {
        let bytes = seg.read_batch(pos, h)?;
        let records = BatchRecords::parse(&bytes).map_err(|e| seg.corrupt(pos, e.to_string()))?;
        Ok((bytes, records))
    }

    /// Pass two for one segment: the retained batches, their headers and the records removed.
    fn clean_segment(
        &self,
        seg: &Segment,
        facts: &Facts,
        now_ms: i64,
    ) -> Result<(Vec<u8>, Vec<BatchHeader>, u64), LogError> {
        let mut out = Vec::new();
        let mut headers = Vec::new();
        let mut removed = 0u64;
        // A batch that loses every record is dropped unless it is its producer's last or the
        // segment's last; the latter is only known when the next batch arrives (or none does).
        let mut emptied_last: Option<BatchHeader> = None;
        let retention = self.config.delete_retention.as_millis() as i64;
        seg.for_each_header(|pos, h| {
            emptied_last = None;
            if h.is_control() || h.is_transactional() {
                out.extend_from_slice(&seg.read_batch(pos, h)?);
                headers.push(*h);
                return Ok(());
            }
            let (raw, batch) = self.parse_batch(seg, pos, h)?;
            let tombstones_expire = now_ms.saturating_sub(h.max_timestamp) > retention;
            let keep: Vec<usize> = (0..batch.records.len())
                .filter(|&i| {
                    let r = &batch.records[i];
                    // Kafka's rule: a keyed record stays unless the map holds a later offset
                    // for its key. Keys the map lacks come from the already clean part, which
                    // earlier passes left with one record per key.
                    let latest = batch
                        .key(r)
                        .is_some_and(|k| facts.latest.get(k).is_none_or(|&o| batch.offset(r) >= o));
                    latest && !(r.value_is_null && tombstones_expire)
                })
                .collect();
            removed += (batch.records.len() - keep.len()) as u64;
            let rebuilt = if keep.len() == batch.records.len() {
                Some(raw)
            } else if !keep.is_empty() {
                Some(
                    batch
                        .rebuild(&keep)
                        .map_err(|e| seg.corrupt(pos, e.to_string()))?,
                )
            } else {
                let producers_last = h.producer_id >= 0
                    && facts.last_batch_of_producer.get(&h.producer_id) == Some(&h.base_offset);
                if !producers_last {
                    emptied_last = Some(*h);
                }
                producers_last.then(|| empty_batch(h))
            };
            if let Some(bytes) = rebuilt {
                headers
                    .push(BatchHeader::parse(&bytes).map_err(|e| seg.corrupt(pos, e.to_string()))?);
                out.extend_from_slice(&bytes);
            }
            Ok(())
        })?;
        if let Some(h) = emptied_last {
            // The segment's last batch keeps the segment's end offset (see the module docs).
            let bytes = empty_batch(&h);
            headers.push(BatchHeader::parse(&bytes).map_err(|e| seg.corrupt(0, e.to_string()))?);
            out.extend_from_slice(&bytes);
        }
        Ok((out, headers, removed))
    }

    /// The swap of one group: `.cleaned` → `.swap` (log file last: the commit point), delete
    /// the replaced segments, `.swap` → final names, reopen.
    fn swap_in(&mut self, group: Group) -> Result<(), LogError> {
        let Group {
            base,
            replaces,
            segment,
        } = group;
        drop(segment);
        rename_named(&self.dir, base, CLEANED_SUFFIX, SWAP_SUFFIX)?;
        sync_dir(&self.dir).map_err(io_err("fsync directory", &self.dir))?;
        for old in replaces {
            if let Some(seg) = self.segments.remove(&old) {
                seg.delete(&self.dir)?;
            }
        }
        rename_named(&self.dir, base, SWAP_SUFFIX, "")?;
        sync_dir(&self.dir).map_err(io_err("fsync directory", &self.dir))?;
        let (seg, _) = Segment::open(&self.dir, base, &self.config, false)?;
        self.segments.insert(base, seg);
        Ok(())
    }
}

/// Renames a segment's three files from `<name><from>` to `<name><to>`, indexes first and the
/// log file last (a `.log.swap` is the commit point). Missing index files are skipped.
pub(crate) fn rename_named(
    dir: &std::path::Path,
    base: i64,
    from: &str,
    to: &str,
) -> Result<(), LogError> {
    for kind in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX] {
        let name = segment_file(dir, base, kind);
        let src = with_suffix(&name, from);
        let dst = with_suffix(&name, to);
        match fs::rename(&src, &dst) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && kind != LOG_SUFFIX => {}
            Err(e) => return Err(io_err("rename cleaned segment", &src)(e)),
        }
    }
    Ok(())
}

/// Removes a segment's three files carrying `suffix`, if present.
pub(crate) fn remove_named(dir: &std::path::Path, base: i64, suffix: &str) -> Result<(), LogError> {
    for kind in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let path = with_suffix(&segment_file(dir, base, kind), suffix);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove cleaned segment", &path)(e)),
        }
    }
    Ok(())
}

/// Finishes or discards interrupted cleans in a partition directory (called on open, before
/// the segments are listed): `.cleaned` files are removed (the swap never committed);
/// for each `<base>.log.swap` the segments in `[base, end of the swap file)` are deleted and
/// the `.swap` files renamed into place; `.swap` index files without a `.log.swap` are removed.
pub(crate) fn complete_swaps(dir: &std::path::Path) -> Result<(), LogError> {
    let mut log_swaps = Vec::new();
    let mut log_bases = Vec::new();
    let mut stray = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list partition directory", dir))? {
        let entry = entry.map_err(io_err("list partition directory", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        if ext.ends_with(CLEANED_SUFFIX.trim_start_matches('.')) {
            stray.push(entry.path());
        } else if ext == format!("{LOG_SUFFIX}{SWAP_SUFFIX}") {
            log_swaps.push(base);
        } else if ext == LOG_SUFFIX {
            log_bases.push(base);
        } else if ext.ends_with(SWAP_SUFFIX.trim_start_matches('.')) {
            stray.push(entry.path());
        }
    }
    for path in stray {
        let (stem, _) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split_once('.'))
            .unwrap_or(("", ""));
        let is_swap_of_committed = path.to_string_lossy().ends_with(SWAP_SUFFIX)
            && stem.parse::<i64>().is_ok_and(|b| log_swaps.contains(&b));
        if !is_swap_of_committed {
            warn!(file = %path.display(), "removing file of an interrupted clean");
            fs::remove_file(&path).map_err(io_err("remove leftover", &path))?;
        }
    }
    log_swaps.sort_unstable();
    for base in log_swaps {
        let swap = with_suffix(&segment_file(dir, base, LOG_SUFFIX), SWAP_SUFFIX);
        let end = crate::segment::file_next_offset(&swap)?.unwrap_or(base);
        for &old in log_bases.iter().filter(|b| **b >= base && **b < end) {
            delete_segment_files(dir, old)?;
        }
        // The replaced segment at `base` may be gone while its indexes remain.
        delete_segment_files(dir, base)?;
        rename_named(dir, base, SWAP_SUFFIX, "")?;
        info!(file = %swap.display(), "completed an interrupted clean");
    }
    sync_dir(dir).map_err(io_err("fsync directory", dir))
}

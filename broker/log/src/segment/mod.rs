//! One segment: the `<base>.log` file of whole v2 batches with its `.index` and `.timeindex`.
//!
//! A segment appends already-validated batches, reads whole batches by offset or timestamp,
//! scans itself on recovery (lengths and CRCs, rebuilding its indexes and cutting a bad tail)
//! and deletes itself. Choosing which segment to use, rolling and retention are the log's job.

mod files;

use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

pub(crate) use files::{
    delete_segment_files, file_next_offset, remove_renamed, rename_segment_files, segment_file,
    with_suffix, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
use files::{load_trusted, scan_step, Step};

use crate::batch::{verify_crc, BatchHeader};
use crate::config::LogConfig;
use crate::error::{io_err, LogError};
use crate::index::{OffsetIndex, TimeIndex};

/// Writes `parts` one after another at `offset` with `pwritev` (no concatenation in memory),
/// at most 1024 pieces per call (IOV_MAX), resuming after short writes.
fn write_all_vectored_at(file: &File, parts: &[&[u8]], mut offset: u64) -> std::io::Result<()> {
    for chunk in parts.chunks(1024) {
        let mut slices: Vec<IoSlice<'_>> = chunk.iter().map(|p| IoSlice::new(p)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = rustix::io::pwritev(file, rest, offset).map_err(std::io::Error::from)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            offset += n as u64;
            IoSlice::advance_slices(&mut rest, n);
        }
    }
    Ok(())
}

#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    path: PathBuf,
    file: Arc<File>,
    size: u64,
    index: OffsetIndex,
    time_index: TimeIndex,
    index_interval: u64,
    bytes_since_index: u64,
    /// Offset after the last batch; the base offset when empty.
    next_offset: i64,
    /// Largest batch max timestamp, -1 when empty (Kafka's NO_TIMESTAMP).
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch: the clock `segment.ms` counts from.
    first_batch_timestamp: Option<i64>,
}

impl Segment {
    /// Creates an empty segment (truncating any files of the same name).
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
    ) -> Result<Self, LogError> {
        Segment::create_named(dir, base_offset, config, "")
    }

    /// Creates an empty segment whose three files carry `suffix` after Kafka's names (the
    /// cleaner's `.cleaned` files). Such a segment is written and synced, never opened again:
    /// after renaming its files the log opens them with [`Segment::open`].
    pub(crate) fn create_named(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        suffix: &str,
    ) -> Result<Self, LogError> {
        let named = |kind| with_suffix(&segment_file(dir, base_offset, kind), suffix);
        let path = named(LOG_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err("create segment", &path))?;
        let index = OffsetIndex::create(
            &named(INDEX_SUFFIX),
            base_offset,
            config.segment_index_bytes,
        )?;
        let time_index = TimeIndex::create(
            &named(TIME_INDEX_SUFFIX),
            base_offset,
            config.segment_index_bytes,
        )?;
        Ok(Segment::from_parts(
            base_offset,
            path,
            file,
            0,
            index,
            time_index,
            config,
        ))
    }

    fn from_parts(
        base_offset: i64,
        path: PathBuf,
        file: File,
        size: u64,
        index: OffsetIndex,
        time_index: TimeIndex,
        config: &LogConfig,
    ) -> Self {
        Segment {
            base_offset,
            path,
            file: Arc::new(file),
            size,
            index,
            time_index,
            index_interval: config.index_interval_bytes,
            bytes_since_index: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            first_batch_timestamp: None,
        }
    }

    /// Opens an existing segment. With `recover`, or when an index is missing or inconsistent,
    /// scans it fully (see [`Segment::recover`]); otherwise trusts the indexes and scans only
    /// the tail after the last index entry. Returns the segment and, if its tail was cut, why.
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        recover: bool,
    ) -> Result<(Self, Option<String>), LogError> {
        let path = segment_file(dir, base_offset, LOG_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err("open segment", &path))?;
        let size = file
            .metadata()
            .map_err(io_err("stat segment", &path))?
            .len();
        let index_path = segment_file(dir, base_offset, INDEX_SUFFIX);
        let time_path = segment_file(dir, base_offset, TIME_INDEX_SUFFIX);
        let idx_bytes = config.segment_index_bytes;
        if !recover {
            match load_trusted(&path, &file, size, base_offset, config)? {
                Ok((index, time_index, tail)) => {
                    let mut seg = Segment::from_parts(
                        base_offset,
                        path,
                        file,
                        size,
                        index,
                        time_index,
                        config,
                    );
                    seg.next_offset = tail.next_offset;
                    seg.first_batch_timestamp = tail.first_batch_timestamp;
                    if let Some((ts, off)) = tail.max_timestamp {
                        seg.max_timestamp = ts;
                        seg.offset_of_max_timestamp = off;
                    }
                    return Ok((seg, None));
                }
                Err(reason) => {
                    warn!(file = %path.display(), %reason, "segment indexes unusable, rebuilding")
                }
            }
        }
        let index = OffsetIndex::create(&index_path, base_offset, idx_bytes)?;
        let time_index = TimeIndex::create(&time_path, base_offset, idx_bytes)?;
        let mut seg = Segment::from_parts(base_offset, path, file, size, index, time_index, config);
        let cut = seg.recover(dir, config)?;
        Ok((seg, cut))
    }

    /// Scans every batch (length, magic, CRC, increasing offsets), rebuilds both indexes and
    /// truncates the file at the first bad batch. Returns the reason if it truncated.
    pub(crate) fn recover(
        &mut self,
        dir: &Path,
        config: &LogConfig,
    ) -> Result<Option<String>, LogError> {
        self.index = OffsetIndex::create(
            &segment_file(dir, self.base_offset, INDEX_SUFFIX),
            self.base_offset,
            config.segment_index_bytes,
        )?;
        self.time_index = TimeIndex::create(
            &segment_file(dir, self.base_offset, TIME_INDEX_SUFFIX),
            self.base_offset,
            config.segment_index_bytes,
        )?;
        let file_size = self.size;
        self.reset_state();
        let mut pos = 0u64;
        let mut problem = None;
        while pos < file_size {
            let header = match self.step(pos)? {
                Step::Batch(h) => h,
                Step::End => break,
                Step::Bad(reason) => {
                    problem = Some(reason);
                    break;
                }
            };
            if let Some(reason) = self.check_scanned(pos, &header)? {
                problem = Some(reason);
                break;
            }
            self.note_batch(pos, &header);
            pos += header.size() as u64;
        }
        if let Some(reason) = &problem {
            warn!(file = %self.path.display(), position = pos, %reason, "truncating corrupt segment tail");
            self.file
                .set_len(pos)
                .map_err(io_err("truncate segment", &self.path))?;
        }
        self.size = pos;
        Ok(problem)
    }

    /// CRC and offset checks of one scanned batch; `Some(reason)` if it is bad.
    fn check_scanned(&self, pos: u64, header: &BatchHeader) -> Result<Option<String>, LogError> {
        if header.base_offset < self.next_offset || header.last_offset_delta < 0 {
            return Ok(Some(format!(
                "batch offsets {}..={} do not follow {}",
                header.base_offset,
                header.last_offset(),
                self.next_offset
            )));
        }
        if header.last_offset() - self.base_offset > i64::from(u32::MAX) {
            return Ok(Some("batch offset too far from the segment base".into()));
        }
        let bytes = self.read_bytes(pos, header.size())?;
        Ok(verify_crc(&bytes).err().map(|e| e.to_string()))
    }

    fn reset_state(&mut self) {
        self.bytes_since_index = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = self.base_offset;
        self.first_batch_timestamp = None;
    }

    fn step(&self, pos: u64) -> Result<Step, LogError> {
        scan_step(&self.file, &self.path, self.size, pos)
    }

    fn read_bytes(&self, pos: u64, len: usize) -> Result<Vec<u8>, LogError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, pos)
            .map_err(io_err("read segment", &self.path))?;
        Ok(buf)
    }

    /// Updates indexes and state for a batch written at `pos` (Kafka's indexing rule: an
    /// entry once more than `index.interval.bytes` were written since the last one).
    /// Accounts for a batch written at `pos`. The indexes are sparse, so an entry that cannot
    /// be written (a full disk) is skipped — lookups scan from the entry before — and tried
    /// again with the next batch; the batch itself is stored either way.
    fn note_batch(&mut self, pos: u64, header: &BatchHeader) {
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(header.max_timestamp);
        }
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        if self.bytes_since_index > self.index_interval {
            let indexed = self
                .index
                .append(header.last_offset(), pos as u32)
                .and_then(|()| {
                    self.time_index
                        .maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
                });
            match indexed {
                Ok(()) => self.bytes_since_index = 0,
                Err(e) => warn!(error = %e, "index entry skipped"),
            }
        }
        self.bytes_since_index += header.size() as u64;
        self.next_offset = header.next_offset();
    }

    /// Appends validated batches (already patched) and indexes them.
    pub(crate) fn append(
        &mut self,
        parts: &[&[u8]],
        len: usize,
        headers: &[BatchHeader],
    ) -> Result<(), LogError> {
        let start = self.size;
        if let Err(e) = write_all_vectored_at(&self.file, parts, start) {
            // Leave the segment exactly as before (a full disk can take part of the write):
            // shrinking needs no space.
            if let Err(t) = self.file.set_len(start) {
                warn!(path = %self.path.display(), error = %t, "could not cut a failed append off the segment; recovery will");
            }
            return Err(io_err("append to segment", &self.path)(e));
        }
        self.size += len as u64;
        let mut pos = start;
        for h in headers {
            self.note_batch(pos, h);
            pos += h.size() as u64;
        }
        Ok(())
    }

    /// Calls `f` with the position and header of every batch, in order.
    pub(crate) fn for_each_header(
        &self,
        f: impl FnMut(u64, &BatchHeader) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        self.walk_headers(0, f)
    }

    /// Calls `f` with the position and header of each batch from the one at `pos` on.
    fn walk_headers(
        &self,
        mut pos: u64,
        mut f: impl FnMut(u64, &BatchHeader) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        loop {
            match self.step(pos)? {
                Step::Batch(h) => {
                    f(pos, &h)?;
                    pos += h.size() as u64;
                }
                Step::End => return Ok(()),
                Step::Bad(reason) => return Err(self.corrupt(pos, reason)),
            }
        }
    }

    /// The whole batch at `pos` whose header is `header` (from [`Segment::for_each_header`]).
    pub(crate) fn read_batch(&self, pos: u64, header: &BatchHeader) -> Result<Vec<u8>, LogError> {
        self.read_bytes(pos, header.size())
    }

    /// Position and header of the first batch whose last offset is ≥ `target`.
    fn locate(&self, target: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let mut pos = u64::from(self.index.lookup(target));
        loop {
            match self.step(pos)? {
                Step::Batch(h) if h.last_offset() >= target => return Ok(Some((pos, h))),
                Step::Batch(h) => pos += h.size() as u64,
                Step::End => return Ok(None),
                Step::Bad(reason) => return Err(self.corrupt(pos, reason)),
            }
        }
    }

    /// Calls `f` with the header of every batch whose last offset is ≥ `from`, in order
    /// (header reads only: producer-state replay).
    pub(crate) fn headers_from(
        &self,
        from: i64,
        mut f: impl FnMut(&BatchHeader),
    ) -> Result<(), LogError> {
        match self.locate(from)? {
            Some((pos, _)) => self.walk_headers(pos, |_, h| {
                f(h);
                Ok(())
            }),
            None => Ok(()),
        }
    }

    /// The error for a batch of this segment at `position` that cannot be read.
    pub(crate) fn corrupt(&self, position: u64, reason: String) -> LogError {
        LogError::CorruptSegment {
            path: self.path.clone(),
            position,
            reason,
        }
    }

    /// The file range `(position, length)` of the whole batches a read from `start` returns
    /// when `already` bytes were read from earlier segments (`None` if nothing qualifies), and
    /// whether the read was limited.
    pub(crate) fn range(
        &self,
        start: i64,
        max_offset: i64,
        max_bytes: usize,
        min_one: bool,
        already: usize,
    ) -> Result<(Option<(u64, usize)>, bool), LogError> {
        let Some((first, _)) = self.locate(start)? else {
            return Ok((None, false));
        };
        let mut end = first;
        let mut limited = false;
        loop {
            let h = match self.step(end)? {
                Step::Batch(h) => h,
                Step::End => break,
                Step::Bad(reason) => return Err(self.corrupt(end, reason)),
            };
            let total = already + (end - first) as usize + h.size();
            let first_of_read = already == 0 && end == first;
            if h.last_offset() >= max_offset || (total > max_bytes && !(min_one && first_of_read)) {
                limited = true;
                break;
            }
            end += h.size() as u64;
        }
        let range = (end > first).then(|| (first, (end - first) as usize));
        Ok((range, limited))
    }

    /// The segment's file, shared, for sending ranges of it without copying them.
    pub(crate) fn shared_file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// The first batch (raw bytes) whose max timestamp is ≥ `timestamp` and whose last offset
    /// is ≥ `min_offset`.
    pub(crate) fn first_batch_with_timestamp(
        &self,
        timestamp: i64,
        min_offset: i64,
    ) -> Result<Option<Vec<u8>>, LogError> {
        let from = self.time_index.lookup(timestamp).max(min_offset);
        let mut pos = u64::from(self.index.lookup(from));
        loop {
            match self.step(pos)? {
                Step::Batch(h) if h.max_timestamp >= timestamp && h.last_offset() >= min_offset => {
                    return Ok(Some(self.read_bytes(pos, h.size())?))
                }
                Step::Batch(h) => pos += h.size() as u64,
                Step::End => return Ok(None),
                Step::Bad(reason) => return Err(self.corrupt(pos, reason)),
            }
        }
    }

    /// Removes the batch containing `offset` and everything after it, then rescans to rebuild
    /// indexes and state. Returns the bytes removed.
    pub(crate) fn truncate_to(
        &mut self,
        dir: &Path,
        offset: i64,
        config: &LogConfig,
    ) -> Result<u64, LogError> {
        let Some((pos, _)) = self.locate(offset)? else {
            return Ok(0);
        };
        let removed = self.size - pos;
        self.file
            .set_len(pos)
            .map_err(io_err("truncate segment", &self.path))?;
        self.size = pos;
        self.recover(dir, config)?;
        Ok(removed)
    }

    /// Adds the final time index entry when the segment stops being active (as Kafka does).
    pub(crate) fn seal(&mut self) -> Result<(), LogError> {
        if self.max_timestamp >= 0 {
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp)?;
        }
        Ok(())
    }

    /// Fsyncs the log file and both indexes.
    pub(crate) fn sync(&self) -> Result<(), LogError> {
        self.file
            .sync_all()
            .map_err(io_err("fsync segment", &self.path))?;
        self.index.sync()?;
        self.time_index.sync()
    }

    /// The log file and both index files, for an fsync that does not hold the log's lock
    /// (`Log::rolled_flush`).
    pub(crate) fn handles(&self) -> [(PathBuf, Arc<File>); 3] {
        [
            (self.path.clone(), self.file.clone()),
            self.index.handle(),
            self.time_index.handle(),
        ]
    }

    /// Renames the three files to `*.deleted` and returns their new paths: removing them is
    /// left to the caller, after it has let go of the log's lock.
    pub(crate) fn rename_for_deletion(self, dir: &Path) -> Result<Vec<PathBuf>, LogError> {
        let base = self.base_offset;
        drop(self);
        rename_segment_files(dir, base)
    }

    /// Renames the three files to `*.deleted`, then removes them.
    pub(crate) fn delete(self, dir: &Path) -> Result<(), LogError> {
        let base = self.base_offset;
        drop(self);
        delete_segment_files(dir, base)
    }

    /// Roll triggers other than size: a full index or offsets that no longer fit 32 bits.
    pub(crate) fn index_full_or_offset_overflow(&self, last_offset: i64) -> bool {
        self.index.is_full()
            || self.time_index.is_full()
            || last_offset - self.base_offset > i64::from(i32::MAX)
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }
    /// Kafka's `largestTimestamp`: the max batch timestamp, or the file's modification time
    /// when no batch carries a timestamp.
    pub(crate) fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 {
            return self.max_timestamp;
        }
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(-1, |d| d.as_millis() as i64)
    }
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub(crate) fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }
    pub(crate) fn first_batch_timestamp(&self) -> Option<i64> {
        self.first_batch_timestamp
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }
}

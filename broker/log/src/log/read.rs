//! Reads: whole batches by offset (Fetch) and by timestamp (ListOffsets). All through `&self`
//! with positional reads, so many readers can share the log's read lock.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::{Log, ReadResult};
use crate::error::{io_err, LogError};
use crate::types::Offset;

impl Log {
    /// Whole batches starting with the one containing `start`, in offset order, across
    /// segments, never including a batch whose offsets reach `max_offset` (exclusive bound,
    /// e.g. the high watermark), at most `max_bytes` in total — except that with
    /// `min_one_batch` the first batch is returned whole even if larger (KIP-74).
    ///
    /// `start == log end` gives an empty result; `start` outside `[log start, log end]` is
    /// `OffsetOutOfRange`.
    pub fn read(
        &self,
        start: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one_batch: bool,
    ) -> Result<ReadResult, LogError> {
        let r = self.read_ranges(start, max_bytes, max_offset, min_one_batch)?;
        let records = r.copy().map_err(io_err("read segment", self.dir()))?;
        Ok(ReadResult {
            records,
            log_start_offset: r.log_start_offset,
            log_end_offset: r.log_end_offset,
        })
    }

    /// Like [`Log::read`], but returns where the batches are instead of copying them: file
    /// ranges the caller can send with `sendfile`. The bytes below `max_offset` (the high
    /// watermark) never change while the files stay open, except through truncation, which
    /// a sender detects as a short file.
    pub fn read_ranges(
        &self,
        start: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one_batch: bool,
    ) -> Result<RangeRead, LogError> {
        let log_start = self.log_start_offset;
        let log_end = self.log_end_offset();
        if start < log_start || start > log_end {
            return Err(LogError::OffsetOutOfRange {
                requested: start,
                log_start,
                log_end,
            });
        }
        let mut ranges = Vec::new();
        let mut bytes = 0usize;
        if start < log_end && start < max_offset {
            let from = self
                .segments
                .range(..=start.0)
                .next_back()
                .map_or(i64::MIN, |(b, _)| *b);
            for seg in self.segments.range(from..).map(|(_, s)| s) {
                let (range, limited) =
                    seg.range(start.0, max_offset.0, max_bytes, min_one_batch, bytes)?;
                if let Some((position, len)) = range {
                    bytes += len;
                    ranges.push(FileRange {
                        file: seg.shared_file(),
                        position,
                        len,
                    });
                }
                if limited {
                    break;
                }
            }
        }
        Ok(RangeRead {
            ranges,
            bytes,
            log_start_offset: log_start,
            log_end_offset: log_end,
        })
    }

    /// The first batch (raw bytes, header included) whose max timestamp is ≥ `timestamp`,
    /// found through the time index; `None` if every batch is older. Batches wholly below the
    /// log start offset are skipped. The caller decodes the records to find the exact one.
    pub fn first_batch_with_timestamp_at_least(
        &self,
        timestamp: i64,
    ) -> Result<Option<Vec<u8>>, LogError> {
        for seg in self.segments.values() {
            if seg.is_empty() || seg.max_timestamp() < timestamp {
                continue;
            }
            if let Some(batch) =
                seg.first_batch_with_timestamp(timestamp, self.log_start_offset.0)?
            {
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }
}

/// Whole batches in a segment file: `len` bytes at `position`.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
}

/// What [`Log::read_ranges`] found: the same batches [`Log::read`] would copy, as file ranges.
#[derive(Debug, Clone)]
pub struct RangeRead {
    pub ranges: Vec<FileRange>,
    /// Sum of the ranges' lengths.
    pub bytes: usize,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
}

impl RangeRead {
    /// The ranges' bytes, concatenated (`pread` each into one buffer).
    pub fn copy(&self) -> std::io::Result<Vec<u8>> {
        let mut out = vec![0u8; self.bytes];
        let mut at = 0;
        for r in &self.ranges {
            r.file.read_exact_at(&mut out[at..at + r.len], r.position)?;
            at += r.len;
        }
        Ok(out)
    }
}

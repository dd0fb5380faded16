//! Removing data: retention by time and size, DeleteRecords (moving the log start offset) and
//! truncation for followers. Whole segments are deleted from the front; the log end offset
//! never goes backwards except through explicit truncation.

use tracing::info;

use super::{Log, RetentionOutcome};
use crate::error::LogError;
use crate::producer_state;
use crate::segment::Segment;
use crate::types::Offset;

impl Log {
    /// DeleteRecords: moves the log start offset up to `offset` (≤ log end) and deletes the
    /// segments wholly below it. Returns the new log start offset. The caller persists it via
    /// [`crate::LogManager::checkpoint`].
    pub fn delete_records_before(&mut self, offset: Offset) -> Result<Offset, LogError> {
        let log_end = self.log_end_offset();
        if offset > log_end || offset.0 < 0 {
            return Err(LogError::OffsetOutOfRange {
                requested: offset,
                log_start: self.log_start_offset,
                log_end,
            });
        }
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            self.epochs.truncate_from_start(offset)?;
            info!(partition = %self.partition, log_start = %offset, "moved log start offset");
        }
        self.delete_below_log_start()?;
        Ok(self.log_start_offset)
    }

    /// Kafka's retention: segments whose largest timestamp (file modification time if no batch
    /// has a timestamp) is older than `retention.ms`, then
    /// the oldest inactive segments while the rest stays ≥ `retention.bytes`, then segments
    /// wholly below the log start offset. If every segment, the active one included, is past
    /// `retention.ms`, the log rolls first so an (empty) active segment remains.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome, LogError> {
        let mut outcome = RetentionOutcome {
            deleted_segments: 0,
            deleted_bytes: 0,
            log_start_offset: self.log_start_offset,
        };
        if let Some(retention) = self.config.retention_ms {
            let limit = retention.as_millis() as i64;
            let expired = self
                .segments
                .values()
                .take_while(|s| {
                    !s.is_empty() && now_ms.saturating_sub(s.largest_timestamp()) > limit
                })
                .count();
            if expired == self.segments.len() {
                self.roll()?;
            }
            self.delete_oldest(expired, &mut outcome)?;
        }
        if let Some(limit) = self.config.retention_bytes {
            let mut excess = self.size_bytes() as i128 - i128::from(limit);
            let inactive = self.segments.len() - 1;
            let count = self
                .segments
                .values()
                .take(inactive)
                .take_while(|s| {
                    let fits = excess - i128::from(s.size()) >= 0;
                    if fits {
                        excess -= i128::from(s.size());
                    }
                    fits
                })
                .count();
            self.delete_oldest(count, &mut outcome)?;
        }
        let (segments, bytes) = self.delete_below_log_start()?;
        outcome.deleted_segments += segments;
        outcome.deleted_bytes += bytes;
        outcome.log_start_offset = self.log_start_offset;
        Ok(outcome)
    }

    /// Deletes the `count` oldest segments (never the active one) and moves the log start.
    fn delete_oldest(
        &mut self,
        count: usize,
        outcome: &mut RetentionOutcome,
    ) -> Result<(), LogError> {
        let count = count.min(self.segments.len() - 1);
        for _ in 0..count {
            let seg = self.pop_oldest();
            outcome.deleted_segments += 1;
            outcome.deleted_bytes += seg.size();
            info!(partition = %self.partition, base_offset = seg.base_offset(), "deleting segment by retention");
            let renamed = seg.rename_for_deletion(&self.dir)?;
            self.deleted_files.extend(renamed);
        }
        self.advance_start_to_first_segment()
    }

    fn pop_oldest(&mut self) -> Segment {
        let base = *self
            .segments
            .keys()
            .next()
            .expect("a log always has a segment");
        self.segments.remove(&base).expect("key was just read")
    }

    fn advance_start_to_first_segment(&mut self) -> Result<(), LogError> {
        let first = Offset(
            *self
                .segments
                .keys()
                .next()
                .expect("a log always has a segment"),
        );
        producer_state::delete_snapshots_below(&self.dir, first.0)?;
        if first > self.log_start_offset {
            self.log_start_offset = first;
            self.epochs.truncate_from_start(first)?;
        }
        Ok(())
    }

    /// Deletes inactive segments whose successor starts at or below the log start offset.
    fn delete_below_log_start(&mut self) -> Result<(usize, u64), LogError> {
        let mut deleted = (0, 0);
        while self.segments.len() > 1 {
            let mut keys = self.segments.keys();
            keys.next();
            let next_base = *keys.next().expect("len > 1");
            if next_base > self.log_start_offset.0 {
                break;
            }
            let seg = self.pop_oldest();
            deleted.0 += 1;
            deleted.1 += seg.size();
            let renamed = seg.rename_for_deletion(&self.dir)?;
            self.deleted_files.extend(renamed);
        }
        if deleted.0 > 0 {
            let first = *self.segments.keys().next().expect("len > 1 was checked");
            producer_state::delete_snapshots_below(&self.dir, first)?;
        }
        Ok(deleted)
    }

    /// Follower truncation: removes the batch containing `offset` and everything after, so the
    /// log end becomes ≤ `offset`; trims the epoch cache. With `offset ≥ log end` no data goes,
    /// but an epoch starting at the log end still does (as in Kafka): a broker that became
    /// leader and was replaced before it appended anything has such an entry, and a follower
    /// that kept it would name that epoch in every fetch and be told to truncate forever.
    /// Truncating below the log start empties the log and restarts it at `offset`.
    pub fn truncate_to(&mut self, offset: Offset) -> Result<(), LogError> {
        let log_end = self.log_end_offset();
        if offset >= log_end {
            self.epochs.truncate_from_end(log_end)?;
            return Ok(());
        }
        let first_base = *self
            .segments
            .keys()
            .next()
            .expect("a log always has a segment");
        if offset < self.log_start_offset || offset.0 <= first_base {
            return self.truncate_fully_and_start_at(offset);
        }
        while self.active().base_offset() >= offset.0 {
            let base = self.active().base_offset();
            let seg = self.segments.remove(&base).expect("active segment exists");
            seg.delete(&self.dir)?;
        }
        let dir = self.dir.clone();
        let config = self.config.clone();
        self.active_mut().truncate_to(&dir, offset.0, &config)?;
        let log_end = self.log_end_offset();
        self.epochs.truncate_from_end(log_end)?;
        producer_state::delete_snapshots_above(&self.dir, log_end.0)?;
        self.rebuild_producer_state()?;
        self.recovery_point = self.recovery_point.min(log_end);
        self.truncations += 1;
        info!(partition = %self.partition, log_end = %log_end, "truncated log");
        Ok(())
    }

    /// Deletes every segment and restarts the log empty at `offset` (log start = log end =
    /// `offset`); clears the epoch cache.
    pub fn truncate_fully_and_start_at(&mut self, offset: Offset) -> Result<(), LogError> {
        let segments = std::mem::take(&mut self.segments);
        for (_, seg) in segments {
            seg.delete(&self.dir)?;
        }
        let seg = Segment::create(&self.dir, offset.0, &self.config)?;
        self.segments.insert(offset.0, seg);
        self.log_start_offset = offset;
        self.recovery_point = offset;
        self.truncations += 1;
        self.epochs.clear()?;
        producer_state::delete_snapshots_above(&self.dir, i64::MIN)?;
        self.producers.clear();
        info!(partition = %self.partition, offset = %offset, "truncated log fully");
        Ok(())
    }
}

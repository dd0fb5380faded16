//! Appends: validating a producer's or leader's batches as a whole, assigning offsets and
//! leader epochs by patching headers, applying LogAppendTime, rolling and writing.
//!
//! Validation is a pure function ([`validate_batches`]) so the broker can also use it; it
//! reads headers and CRCs only, never the records.

use tracing::debug;

use super::{wall_clock_ms, AppendInfo, Log};
use crate::batch::{
    set_base_offset, set_log_append_time_split, set_partition_leader_epoch, verify_crc,
    BatchHeader, Compression, TimestampType, BATCH_HEADER_LEN,
};
use crate::batch_iter::BatchIter;
use crate::config::LogConfig;
use crate::error::LogError;
use crate::producer_state::Check;
use crate::types::Offset;

/// A batch's position in an append and its header after offset assignment.
type PatchedHeader = (usize, [u8; BATCH_HEADER_LEN]);

/// Who produced the batches: leaders accept producer batches (base offset 0, dense offsets),
/// followers accept the leader's batches as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Leader,
    Follower,
}

/// Checks every batch of an append before anything is written: framing (no partial trailing
/// batch), magic 2, CRC, `max.message.bytes`, record count against `last_offset_delta`, and
/// the total against `segment.bytes`. Returns the headers with their positions.
pub fn validate_batches(
    records: &[u8],
    config: &LogConfig,
    origin: Origin,
) -> Result<Vec<(usize, BatchHeader)>, LogError> {
    let max_total = config.effective_segment_bytes();
    if records.len() as u64 > max_total {
        return Err(LogError::RecordBatchTooLarge {
            size: records.len(),
            max: max_total,
        });
    }
    let mut iter = BatchIter::new(records);
    let mut out = Vec::new();
    loop {
        let position = iter.position();
        let Some(item) = iter.next() else { break };
        let (header, bytes) =
            item.map_err(|source| LogError::CorruptMessage { position, source })?;
        if bytes.len() > config.max_message_bytes {
            return Err(LogError::MessageTooLarge {
                position,
                size: bytes.len(),
                max: config.max_message_bytes,
            });
        }
        verify_crc(bytes).map_err(|source| LogError::CorruptMessage { position, source })?;
        check_content(&header, origin).map_err(|reason| LogError::InvalidRecord {
            position,
            reason: reason.to_string(),
        })?;
        out.push((position, header));
    }
    if let Some(tail) = iter.truncated_tail() {
        return Err(LogError::TruncatedAppend {
            position: tail.position,
            available: tail.available,
        });
    }
    Ok(out)
}

fn check_content(h: &BatchHeader, origin: Origin) -> Result<(), &'static str> {
    if let Compression::Unknown(_) = h.compression() {
        return Err("unknown compression codec");
    }
    if h.last_offset_delta < 0 || h.records_count < 0 {
        return Err("negative record count or last offset delta");
    }
    match origin {
        Origin::Leader => {
            if h.base_offset != 0 {
                return Err("base offset of a produced batch must be 0");
            }
            if h.records_count < 1 {
                return Err("batch has no records");
            }
            if i64::from(h.records_count) != i64::from(h.last_offset_delta) + 1 {
                return Err("record count does not match the last offset delta");
            }
        }
        Origin::Follower => {
            if i64::from(h.records_count) > i64::from(h.last_offset_delta) + 1 {
                return Err("more records than offsets in the batch");
            }
        }
    }
    Ok(())
}

impl Log {
    /// Appends producer batches as the partition leader: validates all of them (nothing is
    /// written unless all are valid), assigns offsets from the log end, stamps `leader_epoch`,
    /// applies LogAppendTime if configured, rolls if needed, writes and indexes. A new epoch is
    /// recorded in the leader-epoch checkpoint. Durability follows `flush.*`. The patched
    /// headers are written back into `records`.
    pub fn append_as_leader(
        &mut self,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let (info, patched) = self.append_leader_parts(records, leader_epoch, now_ms)?;
        for (position, header) in patched {
            records[position..position + BATCH_HEADER_LEN].copy_from_slice(&header);
        }
        Ok(info)
    }

    /// [`Log::append_as_leader`] for a shared buffer (a produce request's bytes): the patched
    /// headers are written to the segment beside the untouched record bytes (`pwritev`), so the
    /// batches are never copied in memory.
    pub fn append_produced(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.append_leader_parts(records, leader_epoch, now_ms)
            .map(|(info, _)| info)
    }

    fn append_leader_parts(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<(AppendInfo, Vec<PatchedHeader>), LogError> {
        let batches = validate_batches(records, &self.config, Origin::Leader)?;
        let produced: Vec<BatchHeader> = batches.iter().map(|(_, h)| *h).collect();
        if let Check::Duplicate(d) = self.producers.check(&produced)? {
            debug!(partition = %self.partition, first = d.first_offset, "duplicate producer batch");
            let info = AppendInfo {
                first_offset: Offset(d.first_offset),
                last_offset: Offset(d.last_offset),
                log_append_time: None,
                max_timestamp: d.max_timestamp,
                records: 0,
                bytes: 0,
                duplicate: true,
            };
            return Ok((info, Vec::new()));
        }
        let first = self.log_end_offset();
        let append_time = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        let mut next = first.0;
        let mut headers = Vec::with_capacity(batches.len());
        let mut patched = Vec::with_capacity(batches.len());
        for (position, header) in &batches {
            let body = &records[*position + BATCH_HEADER_LEN..*position + header.size()];
            let patch = |e| LogError::CorruptMessage {
                position: *position,
                source: e,
            };
            let mut hdr = [0u8; BATCH_HEADER_LEN];
            hdr.copy_from_slice(&records[*position..*position + BATCH_HEADER_LEN]);
            set_base_offset(&mut hdr, next).map_err(patch)?;
            set_partition_leader_epoch(&mut hdr, leader_epoch).map_err(patch)?;
            if append_time {
                set_log_append_time_split(&mut hdr, body, now_ms).map_err(patch)?;
            }
            let h = BatchHeader::parse(&hdr).map_err(patch)?;
            next = h.next_offset();
            headers.push(h);
            patched.push((*position, hdr));
        }
        if !headers.is_empty() {
            self.epochs.assign(leader_epoch, first)?;
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(batches.len() * 2);
        for ((position, header), (_, hdr)) in batches.iter().zip(&patched) {
            parts.push(hdr);
            parts.push(&records[*position + BATCH_HEADER_LEN..*position + header.size()]);
        }
        let mut info = self.write_batches(&parts, records.len(), &headers, now_ms)?;
        for h in &headers {
            self.producers.update(h);
        }
        info.log_append_time = append_time.then_some(now_ms);
        self.maybe_flush(now_ms)?;
        Ok((info, patched))
    }

    /// Appends a leader's batches as a follower: same validation, offsets kept (the first batch
    /// must start at the log end offset and offsets must increase), leader epochs learnt from
    /// the batches. The bytes are written as they are (no copy, nothing patched).
    pub fn append_as_follower(&mut self, records: &[u8]) -> Result<AppendInfo, LogError> {
        let batches = validate_batches(records, &self.config, Origin::Follower)?;
        let mut expected = self.log_end_offset();
        for (_, h) in &batches {
            // A leader's compacted log has gaps, so a batch may start above the log end.
            if h.base_offset < expected.0 {
                return Err(LogError::UnexpectedOffset {
                    expected,
                    got: Offset(h.base_offset),
                });
            }
            expected = Offset(h.next_offset());
        }
        for (_, h) in &batches {
            self.epochs
                .assign(h.partition_leader_epoch, Offset(h.base_offset))?;
        }
        let headers: Vec<BatchHeader> = batches.into_iter().map(|(_, h)| h).collect();
        let now_ms = wall_clock_ms();
        let info = self.write_batches(&[records], records.len(), &headers, now_ms)?;
        for h in &headers {
            self.producers.update(h);
        }
        self.maybe_flush(now_ms)?;
        Ok(info)
    }

    /// Rolls if needed, then writes already validated and patched batches, given as pieces
    /// (`len` bytes in all) that concatenate to them.
    fn write_batches(
        &mut self,
        parts: &[&[u8]],
        len: usize,
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let first = self.log_end_offset();
        let Some(last) = headers.last() else {
            return Ok(AppendInfo {
                first_offset: first,
                last_offset: Offset(first.0 - 1),
                log_append_time: None,
                max_timestamp: -1,
                records: 0,
                bytes: 0,
                duplicate: false,
            });
        };
        if self.should_roll(len as u64, last.last_offset(), now_ms) {
            self.roll()?;
        }
        self.active_mut().append(parts, len, headers)?;
        debug!(partition = %self.partition, first = %first, last = last.last_offset(), "appended");
        Ok(AppendInfo {
            first_offset: Offset(headers[0].base_offset),
            last_offset: Offset(last.last_offset()),
            log_append_time: None,
            max_timestamp: headers.iter().map(|h| h.max_timestamp).max().unwrap_or(-1),
            records: headers.iter().map(|h| h.records_count.max(0) as u64).sum(),
            bytes: len as u64,
            duplicate: false,
        })
    }

    /// Whether a leader's append of `len` bytes in `leader_epoch` at `now_ms` would write
    /// nothing but the active segment's file and in-memory indexes: no roll (new files, a
    /// producer snapshot), no new leader epoch (a checkpoint file) and no `flush.*` fsync. Such
    /// an append is a page-cache write; the broker may do it on the request's own thread.
    /// Conservative: `len` bounds the number of offsets the append can take.
    pub fn append_stays_in_page_cache(&self, len: u64, leader_epoch: i32, now_ms: i64) -> bool {
        let no_flush = self.config.flush_messages.is_none() && self.config.flush_ms.is_none();
        let known_epoch = leader_epoch < 0
            || self
                .epochs
                .latest_epoch()
                .is_some_and(|l| leader_epoch <= l);
        let last_offset_bound = self.log_end_offset().0.saturating_add(len as i64);
        no_flush && known_epoch && !self.should_roll(len, last_offset_bound, now_ms)
    }

    /// Kafka's roll rules: the append would overflow `segment.bytes`, `segment.ms` passed since
    /// the active segment's first batch, an index is full, or offsets would overflow 32 bits.
    fn should_roll(&self, append_bytes: u64, last_offset: i64, now_ms: i64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let by_size = active.size() + append_bytes > self.config.effective_segment_bytes();
        // As Kafka: batches without a timestamp (negative) never trigger a time roll.
        let by_time = active.first_batch_timestamp().is_some_and(|t| {
            t >= 0 && now_ms.saturating_sub(t) > self.config.segment_ms.as_millis() as i64
        });
        by_size || by_time || active.index_full_or_offset_overflow(last_offset)
    }
}

//! Per-log configuration with Kafka's topic-config meanings and defaults. Durations are
//! `Duration`; the `*.ms` integers of Kafka's property names are the broker's business.

use std::time::Duration;

pub use crate::batch::TimestampType;

/// `segment.bytes` default: 1 GiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// `segment.ms` default: 7 days.
pub const DEFAULT_SEGMENT_MS: Duration = Duration::from_secs(7 * 24 * 3600);
/// `index.interval.bytes` default.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u64 = 4096;
/// `segment.index.bytes` default: 10 MiB.
pub const DEFAULT_SEGMENT_INDEX_BYTES: u64 = 10 * 1024 * 1024;
/// `retention.ms` default: 7 days.
pub const DEFAULT_RETENTION_MS: Duration = Duration::from_secs(7 * 24 * 3600);
/// `max.message.bytes` default (1 MiB + the 12-byte log overhead).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;
/// `file.delete.delay.ms` default.
pub const DEFAULT_FILE_DELETE_DELAY: Duration = Duration::from_secs(60);

/// `delete.retention.ms` default: 1 day.
pub const DEFAULT_DELETE_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// `min.cleanable.dirty.ratio` default.
pub const DEFAULT_MIN_CLEANABLE_DIRTY_RATIO: f64 = 0.5;

/// `log.cleaner.dedupe.buffer.size` default: 128 MiB.
pub const DEFAULT_CLEANER_DEDUPE_BUFFER_BYTES: u64 = 128 * 1024 * 1024;

/// Configuration of one partition log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when an append would make the active segment larger.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when this long has passed since the segment's first batch timestamp.
    pub segment_ms: Duration,
    /// `index.interval.bytes`: bytes of batches between sparse index entries.
    pub index_interval_bytes: u64,
    /// `segment.index.bytes`: maximum size of one index file; a full index rolls the segment.
    pub segment_index_bytes: u64,
    /// `retention.bytes`; `None` is Kafka's -1 (unlimited).
    pub retention_bytes: Option<u64>,
    /// `retention.ms`; `None` is Kafka's -1 (unlimited).
    pub retention_ms: Option<Duration>,
    /// `max.message.bytes`: largest batch accepted, header included.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `flush.messages`; `None` leaves flushing to the OS.
    pub flush_messages: Option<u64>,
    /// `flush.ms`; `None` leaves flushing to the OS.
    pub flush_ms: Option<Duration>,
    /// `file.delete.delay.ms`. Kept for the broker's configuration surface: this crate removes
    /// `.deleted` files immediately after renaming them (no reader can hold a file position
    /// across calls, since reads copy bytes under the log's lock).
    pub file_delete_delay: Duration,
    /// `cleanup.policy` contains `compact`: [`crate::Log::clean`] keeps the latest record per key.
    pub compact: bool,
    /// `delete.retention.ms`: how long a tombstone (null value) survives cleaning, counted from
    /// its batch's max timestamp.
    pub delete_retention: Duration,
    /// `min.cleanable.dirty.ratio`: clean once dirty bytes / cleanable bytes reach this.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: segments with a batch newer than this are not cleaned yet.
    pub min_compaction_lag: Duration,
    /// `max.compaction.lag.ms`: a dirty segment whose first batch is older than this is cleaned
    /// whatever the dirty ratio; `None` is Kafka's Long.MAX_VALUE.
    pub max_compaction_lag: Option<Duration>,
    /// `log.cleaner.dedupe.buffer.size` (a broker setting): the memory the cleaner's key map may
    /// use. A clean maps dirty segments until the budget is spent (at least one segment) and
    /// cleans up to there; later segments wait for the next pass.
    pub cleaner_dedupe_buffer_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: DEFAULT_SEGMENT_MS,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            segment_index_bytes: DEFAULT_SEGMENT_INDEX_BYTES,
            retention_bytes: None,
            retention_ms: Some(DEFAULT_RETENTION_MS),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            message_timestamp_type: TimestampType::CreateTime,
            flush_messages: None,
            flush_ms: None,
            file_delete_delay: DEFAULT_FILE_DELETE_DELAY,
            compact: false,
            delete_retention: DEFAULT_DELETE_RETENTION,
            min_cleanable_dirty_ratio: DEFAULT_MIN_CLEANABLE_DIRTY_RATIO,
            min_compaction_lag: Duration::ZERO,
            max_compaction_lag: None,
            cleaner_dedupe_buffer_bytes: DEFAULT_CLEANER_DEDUPE_BUFFER_BYTES,
        }
    }
}

impl LogConfig {
    /// Segment size limit as used: positions in the index are 32-bit, as in Kafka.
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.clamp(1, i32::MAX as u64)
    }
}

//! The error type of log operations, with the Kafka error code each variant answers with.
//!
//! Validation failures of an append (`CorruptMessage`, `MessageTooLarge`, …) are Kafka-level
//! answers for the producer; `Io` and `Checkpoint` mean the log directory is in trouble
//! (Kafka's `KAFKA_STORAGE_ERROR`).

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::batch::BatchError;
use crate::checkpoint::CheckpointError;
use crate::types::{Offset, TopicPartition};

/// Kafka error codes used by [`LogError::kafka_error_code`].
pub mod codes {
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const RECORD_LIST_TOO_LARGE: i16 = 18;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const INCONSISTENT_TOPIC_ID: i16 = 103;
    pub const INVALID_RECORD: i16 = 87;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
}

/// A failed log operation.
#[derive(Debug, Error)]
pub enum LogError {
    /// A batch in an append is malformed or fails its CRC.
    #[error("corrupt record batch at byte {position} of the append")]
    CorruptMessage {
        position: usize,
        #[source]
        source: BatchError,
    },
    /// An append ends with a partial batch.
    #[error("append ends with a partial batch at byte {position} ({available} bytes present)")]
    TruncatedAppend { position: usize, available: usize },
    /// One batch is larger than `max.message.bytes`.
    #[error("batch of {size} bytes at byte {position} exceeds max.message.bytes {max}")]
    MessageTooLarge {
        position: usize,
        size: usize,
        max: usize,
    },
    /// The whole append is larger than `segment.bytes`.
    #[error("append of {size} bytes exceeds segment.bytes {max}")]
    RecordBatchTooLarge { size: usize, max: u64 },
    /// A well-framed batch whose content breaks the rules (count, offsets).
    #[error("invalid record batch at byte {position}: {reason}")]
    InvalidRecord { position: usize, reason: String },
    /// An idempotent producer's batch does not follow its previous one.
    #[error("producer {producer_id} epoch {epoch}: expected sequence {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        expected: i32,
        got: i32,
    },
    /// A batch from an older epoch of a producer id than the log has seen (a fenced producer).
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// A follower append that does not start at the log end offset or is not increasing.
    #[error("follower append starts at offset {got}, expected {expected}")]
    UnexpectedOffset { expected: Offset, got: Offset },
    /// A read or log-start move outside `[log_start, log_end]`.
    #[error("offset {requested} is outside the log range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        requested: Offset,
        log_start: Offset,
        log_end: Offset,
    },
    /// A segment that passed recovery no longer parses (disk corruption or outside writes).
    #[error("corrupt segment {path} at position {position}: {reason}")]
    CorruptSegment {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// The partition directory already belongs to another topic id.
    #[error("partition directory {path} holds topic id {found:02x?}, expected {expected:02x?}")]
    InconsistentTopicId {
        path: PathBuf,
        expected: [u8; 16],
        found: [u8; 16],
    },
    /// The directory is not a partition directory.
    #[error("{path} is not a <topic>-<partition> directory")]
    InvalidPartitionDir { path: PathBuf },
    /// A partition the manager does not hold.
    #[error("no log for partition {partition}")]
    UnknownPartition { partition: TopicPartition },
    /// The broker let a lock holder panic; the log may be half-updated.
    #[error("lock of partition {partition} is poisoned")]
    Poisoned { partition: TopicPartition },
    /// A file operation failed.
    /// The OS error is also in the message, so that every log line that shows this error
    /// says why (e.g. "No space left on device"); reports that walk the source chain leave out
    /// a cause its predecessor's message already contains.
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A checkpoint file failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

impl LogError {
    /// The Kafka error code to answer with.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            LogError::CorruptMessage { .. } | LogError::TruncatedAppend { .. } => {
                codes::CORRUPT_MESSAGE
            }
            LogError::MessageTooLarge { .. } => codes::MESSAGE_TOO_LARGE,
            LogError::RecordBatchTooLarge { .. } => codes::RECORD_LIST_TOO_LARGE,
            LogError::InvalidRecord { .. } => codes::INVALID_RECORD,
            LogError::OutOfOrderSequence { .. } => codes::OUT_OF_ORDER_SEQUENCE_NUMBER,
            LogError::InvalidProducerEpoch { .. } => codes::INVALID_PRODUCER_EPOCH,
            LogError::OffsetOutOfRange { .. } => codes::OFFSET_OUT_OF_RANGE,
            LogError::InconsistentTopicId { .. } => codes::INCONSISTENT_TOPIC_ID,
            LogError::UnknownPartition { .. } => codes::UNKNOWN_TOPIC_OR_PARTITION,
            LogError::Io { .. }
            | LogError::CorruptSegment { .. }
            | LogError::Checkpoint(_)
            | LogError::InvalidPartitionDir { .. } => codes::KAFKA_STORAGE_ERROR,
            LogError::UnexpectedOffset { .. } | LogError::Poisoned { .. } => {
                codes::UNKNOWN_SERVER_ERROR
            }
        }
    }
}

/// Builds a `map_err` closure that wraps an `io::Error` with the action and path.
pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

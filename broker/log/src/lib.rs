//! Tributary's partition log: Kafka's on-disk layout (segments of v2 record batches with sparse
//! offset and time indexes), offset assignment by patching batch headers, recovery and retention.
//! It knows nothing of the wire protocol beyond the v2 record-batch header.
//!
//! Everything is synchronous `std::fs`: the broker wraps each [`Log`] in an `RwLock` and calls
//! it from `spawn_blocking` (or directly for short appends). Reads take `&self`, writes `&mut self`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod batch;
pub mod batch_iter;
pub mod checkpoint;
pub mod config;
mod epoch_cache;
mod error;
mod index;
mod log;
mod manager;
mod producer_state;
pub mod records;
mod segment;
pub mod testing;
mod types;

pub use batch::{BatchError, BatchHeader, Compression, TimestampType, BATCH_HEADER_LEN};
pub use batch_iter::{read_frame, BatchIter, Frame, TruncatedTail};
pub use config::LogConfig;
pub use error::{codes, LogError};
pub use log::{
    validate_batches, AppendInfo, BuiltClean, CleanOutcome, CleanPlan, DeletedFiles, FileRange,
    Log, Origin, PendingFlush, RangeRead, ReadResult, RetentionOutcome,
};
pub use manager::{
    LogManager, SharedLog, CLEANER_OFFSET_CHECKPOINT, CLEAN_SHUTDOWN_MARKER, DELETE_DIR_SUFFIX,
    LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT,
};
pub use producer_state::{BatchMetadata, MAX_CACHED_BATCHES};
pub use types::{Offset, ParseTopicPartitionError, TopicPartition};

//! The Kafka v2 record-batch header (magic 2): parsing, CRC-32C verification and the few
//! in-place patches the broker makes (base offset, partition leader epoch, LogAppendTime).
//!
//! Records after the 61-byte header stay opaque: this module never decodes or decompresses
//! them. Framing a buffer of concatenated batches lives in [`crate::batch_iter`].

use thiserror::Error;

/// Size of the v2 batch header, from the base offset to the records count inclusive.
pub const BATCH_HEADER_LEN: usize = 61;
/// The only batch format this crate accepts.
pub const MAGIC_V2: i8 = 2;
/// Bytes before (and including) the `batch_length` field, not counted by `batch_length`.
pub const LOG_OVERHEAD: usize = 12;
/// Smallest legal `batch_length`: a header with no records.
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
/// The CRC covers everything from the attributes field to the end of the batch.
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORDS_COUNT_AT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// A failure to read or patch a v2 batch header.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than a whole header.
    #[error("buffer of {len} bytes is shorter than the 61-byte batch header")]
    ShortHeader { len: usize },
    /// Magic byte other than 2.
    #[error("unsupported record batch magic {magic}, only v2 is supported")]
    UnsupportedMagic { magic: i8 },
    /// `batch_length` smaller than the header, negative or beyond the allowed maximum.
    #[error("invalid batch length {batch_length}")]
    InvalidLength { batch_length: i32 },
    /// Stored and computed CRC-32C differ.
    #[error("crc mismatch: batch says {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// A function that needs exactly one whole batch got a buffer of another size.
    #[error("buffer of {len} bytes does not hold exactly one batch of {size} bytes")]
    SizeMismatch { len: usize, size: usize },
}

/// Compression codec from bits 0–2 of the attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// Codec ids 5–7 are not defined by Kafka; kept so callers can reject them.
    Unknown(u8),
}

/// Which clock the batch timestamps come from (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Set by the producer.
    #[default]
    CreateTime,
    /// Set by the broker on append.
    LogAppendTime,
}

/// The decoded 61-byte header of a v2 record batch, with Kafka's field types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}

fn read_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(b)
}

fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Reads `batch_length` from the first 12 bytes; `None` if fewer are available.
pub fn peek_batch_length(buf: &[u8]) -> Option<i32> {
    (buf.len() >= LOG_OVERHEAD).then(|| read_i32(buf, BATCH_LENGTH_AT))
}

/// Reads the magic byte; `None` if fewer than 17 bytes are available.
pub fn peek_magic(buf: &[u8]) -> Option<i8> {
    buf.get(MAGIC_AT).map(|b| *b as i8)
}

impl BatchHeader {
    /// Parses the header at the start of `buf` (only the first 61 bytes are read).
    ///
    /// Checks the magic and that `batch_length` covers at least the header; it does not check
    /// that the whole batch is present nor the CRC (see [`verify_crc`]).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(BatchError::ShortHeader { len: buf.len() });
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        let batch_length = read_i32(buf, BATCH_LENGTH_AT);
        if batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::InvalidLength { batch_length });
        }
        Ok(BatchHeader {
            base_offset: read_i64(buf, BASE_OFFSET_AT),
            batch_length,
            partition_leader_epoch: read_i32(buf, LEADER_EPOCH_AT),
            magic,
            crc: read_i32(buf, CRC_AT) as u32,
            attributes: read_i16(buf, ATTRIBUTES_AT),
            last_offset_delta: read_i32(buf, LAST_OFFSET_DELTA_AT),
            base_timestamp: read_i64(buf, BASE_TIMESTAMP_AT),
            max_timestamp: read_i64(buf, MAX_TIMESTAMP_AT),
            producer_id: read_i64(buf, PRODUCER_ID_AT),
            producer_epoch: read_i16(buf, PRODUCER_EPOCH_AT),
            base_sequence: read_i32(buf, BASE_SEQUENCE_AT),
            records_count: read_i32(buf, RECORDS_COUNT_AT),
        })
    }

    /// Whole size of the batch on the wire and on disk: `batch_length + 12`.
    pub fn size(&self) -> usize {
        // batch_length >= MIN_BATCH_LENGTH > 0 is checked by `parse`.
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    pub fn compression(&self) -> Compression {
        match (self.attributes & COMPRESSION_MASK) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// CRC-32C over `batch[21..]`, as stored in the header's crc field.
pub fn compute_crc(batch: &[u8]) -> Result<u32, BatchError> {
    if batch.len() < BATCH_HEADER_LEN {
        return Err(BatchError::ShortHeader { len: batch.len() });
    }
    Ok(crc32c::crc32c(&batch[ATTRIBUTES_AT..]))
}

/// Checks that `batch` is exactly one whole batch and that its CRC matches.
pub fn verify_crc(batch: &[u8]) -> Result<(), BatchError> {
    let header = BatchHeader::parse(batch)?;
    if batch.len() != header.size() {
        return Err(BatchError::SizeMismatch {
            len: batch.len(),
            size: header.size(),
        });
    }
    let computed = compute_crc(batch)?;
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

fn check_header_room(batch: &[u8]) -> Result<(), BatchError> {
    if batch.len() < BATCH_HEADER_LEN {
        return Err(BatchError::ShortHeader { len: batch.len() });
    }
    Ok(())
}

/// Rewrites the base offset (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    check_header_room(batch)?;
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
    Ok(())
}

/// Rewrites the partition leader epoch (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    check_header_room(batch)?;
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
    Ok(())
}

/// [`set_log_append_time`] for a batch whose header and records are in separate buffers:
/// patches the 61-byte `header` and recomputes its CRC over the header's part and `records`.
pub fn set_log_append_time_split(
    header: &mut [u8; BATCH_HEADER_LEN],
    records: &[u8],
    timestamp_ms: i64,
) -> Result<(), BatchError> {
    let h = BatchHeader::parse(header)?;
    if BATCH_HEADER_LEN + records.len() != h.size() {
        return Err(BatchError::SizeMismatch {
            len: BATCH_HEADER_LEN + records.len(),
            size: h.size(),
        });
    }
    let attributes = h.attributes | TIMESTAMP_TYPE_BIT;
    header[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    header[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[ATTRIBUTES_AT..]), records);
    header[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Sets the max timestamp and the LogAppendTime attribute bit, then recomputes the CRC.
///
/// `batch` must be exactly one whole batch, since the CRC covers all of it.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) -> Result<(), BatchError> {
    let header = BatchHeader::parse(batch)?;
    if batch.len() != header.size() {
        return Err(BatchError::SizeMismatch {
            len: batch.len(),
            size: header.size(),
        });
    }
    let attributes = header.attributes | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = compute_crc(batch)?;
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{build_test_batch, TestBatch};

    fn sample() -> Vec<u8> {
        build_test_batch(&TestBatch {
            base_offset: 0,
            base_timestamp: 1_000,
            records: vec![(None, b"a".to_vec()), (Some(b"k".to_vec()), b"bb".to_vec())],
            ..TestBatch::default()
        })
    }

    #[test]
    fn parses_fields_of_a_built_batch() {
        let batch = sample();
        let h = BatchHeader::parse(&batch).unwrap();
        assert_eq!(h.base_offset, 0);
        assert_eq!(h.magic, 2);
        assert_eq!(h.size(), batch.len());
        assert_eq!(h.records_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.last_offset(), 1);
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_001);
        assert_eq!(h.producer_id, -1);
        assert_eq!(h.compression(), Compression::None);
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert!(!h.is_transactional());
        assert!(!h.is_control());
        verify_crc(&batch).unwrap();
    }

    #[test]
    fn attribute_helpers_decode_each_bit() {
        let mut h = BatchHeader::parse(&sample()).unwrap();
        h.attributes = 0x04 | 0x08 | 0x10 | 0x20;
        assert_eq!(h.compression(), Compression::Zstd);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert!(h.is_transactional());
        assert!(h.is_control());
        h.attributes = 0x07;
        assert_eq!(h.compression(), Compression::Unknown(7));
    }

    #[test]
    fn rejects_short_bad_magic_and_bad_length() {
        let batch = sample();
        assert_eq!(
            BatchHeader::parse(&batch[..60]),
            Err(BatchError::ShortHeader { len: 60 })
        );
        let mut bad = batch.clone();
        bad[MAGIC_AT] = 1;
        assert_eq!(
            BatchHeader::parse(&bad),
            Err(BatchError::UnsupportedMagic { magic: 1 })
        );
        let mut bad = batch.clone();
        bad[8..12].copy_from_slice(&48i32.to_be_bytes());
        assert_eq!(
            BatchHeader::parse(&bad),
            Err(BatchError::InvalidLength { batch_length: 48 })
        );
        bad[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            BatchHeader::parse(&bad),
            Err(BatchError::InvalidLength { .. })
        ));
    }

    #[test]
    fn crc_detects_a_flipped_record_byte() {
        let mut batch = sample();
        let last = batch.len() - 1;
        batch[last] ^= 0x01;
        assert!(matches!(
            verify_crc(&batch),
            Err(BatchError::CrcMismatch { .. })
        ));
        assert!(matches!(
            verify_crc(&batch[..batch.len() - 1]),
            Err(BatchError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn offset_and_epoch_patches_keep_the_crc_valid() {
        let mut batch = sample();
        set_base_offset(&mut batch, 42).unwrap();
        set_partition_leader_epoch(&mut batch, 7).unwrap();
        let h = BatchHeader::parse(&batch).unwrap();
        assert_eq!(
            (h.base_offset, h.last_offset(), h.partition_leader_epoch),
            (42, 43, 7)
        );
        verify_crc(&batch).unwrap();
    }

    #[test]
    fn log_append_time_patch_sets_bit_timestamp_and_crc() {
        let mut batch = sample();
        let before = BatchHeader::parse(&batch).unwrap();
        set_log_append_time(&mut batch, 99_999).unwrap();
        let h = BatchHeader::parse(&batch).unwrap();
        assert_eq!(h.max_timestamp, 99_999);
        assert_eq!(h.base_timestamp, before.base_timestamp);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_ne!(h.crc, before.crc);
        verify_crc(&batch).unwrap();
    }
}

//! Record-level access to one v2 batch, for the cleaner and for the broker's produce checks on
//! compacted topics: decompressing the records section, framing the records in it (offset and
//! timestamp deltas, key, whether the value is null) and rebuilding a batch from a subset of its
//! records.
//!
//! Compression and decompression are `kafka-protocol`'s codecs. The records themselves are only
//! framed here, not decoded into owned values: a retained record is copied byte for byte, so its
//! headers (duplicates included) and deltas stay exactly as the producer wrote them. That works
//! because a rebuilt batch keeps its base offset and base timestamp, which the deltas are
//! relative to.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use thiserror::Error;

use crate::batch::{compute_crc, BatchHeader, Compression, TimestampType, BATCH_HEADER_LEN};

/// Offsets of fields in the v2 header that a rebuilt batch rewrites.
const BATCH_LENGTH_AT: usize = 8;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORDS_COUNT_AT: usize = 57;
const COMPRESSION_MASK: i16 = 0x07;

/// A batch whose records cannot be read or written.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordsError {
    #[error("batch header is invalid: {reason}")]
    Header { reason: String },
    #[error("compression codec {codec:?} is not supported")]
    UnsupportedCodec { codec: Compression },
    #[error("failed to decompress {codec:?} records: {reason}")]
    Decompress { codec: Compression, reason: String },
    #[error("failed to compress {codec:?} records: {reason}")]
    Compress { codec: Compression, reason: String },
    #[error("record {index} is malformed: {reason}")]
    Malformed { index: usize, reason: &'static str },
}

/// One record framed inside a decompressed records section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    /// Byte range of the key in the records section; `None` for a null key.
    pub key: Option<Range<usize>>,
    /// Whether the value is null (a tombstone).
    pub value_is_null: bool,
    /// The whole record, length prefix included.
    pub raw: Range<usize>,
}

/// The decompressed records section of a batch with its framed records.
#[derive(Debug, Clone)]
pub struct BatchRecords {
    pub header: BatchHeader,
    pub body: Bytes,
    pub records: Vec<RecordView>,
}

impl BatchRecords {
    /// Decompresses and frames the records of one whole batch (header included).
    pub fn parse(batch: &[u8]) -> Result<BatchRecords, RecordsError> {
        let header = BatchHeader::parse(batch).map_err(|e| RecordsError::Header {
            reason: e.to_string(),
        })?;
        let section =
            batch
                .get(BATCH_HEADER_LEN..header.size())
                .ok_or_else(|| RecordsError::Header {
                    reason: "batch is shorter than its length".into(),
                })?;
        let body = decompress(header.compression(), section)?;
        let records = frame_records(&body, header.records_count)?;
        Ok(BatchRecords {
            header,
            body,
            records,
        })
    }

    pub fn key(&self, record: &RecordView) -> Option<&[u8]> {
        record.key.clone().map(|r| &self.body[r])
    }

    /// Offset of a record.
    pub fn offset(&self, record: &RecordView) -> i64 {
        self.header
            .base_offset
            .saturating_add(i64::from(record.offset_delta))
    }

    /// Rebuilds the batch with only `keep` (indexes into `records`, in order): same base
    /// offset, last offset delta, base timestamp, producer fields, leader epoch, attributes and
    /// codec; new record count, length, CRC and (for CreateTime) max timestamp.
    pub fn rebuild(&self, keep: &[usize]) -> Result<Vec<u8>, RecordsError> {
        let mut section = BytesMut::new();
        let mut max_ts = i64::MIN;
        for &i in keep {
            let r = &self.records[i];
            section.extend_from_slice(&self.body[r.raw.clone()]);
            max_ts = max_ts.max(self.header.base_timestamp.saturating_add(r.timestamp_delta));
        }
        let codec = self.header.compression();
        let mut out = Vec::with_capacity(BATCH_HEADER_LEN + section.len());
        out.extend_from_slice(&header_bytes(&self.header));
        compress(codec, &section, &mut out)?;
        if self.header.timestamp_type() == TimestampType::LogAppendTime {
            max_ts = self.header.max_timestamp;
        }
        finish(&mut out, keep.len() as i32, max_ts);
        Ok(out)
    }
}

/// An empty batch standing for `header`'s offsets (Kafka's `writeEmptyHeader`): no records,
/// no compression, base and max timestamp set to the original max timestamp.
pub fn empty_batch(header: &BatchHeader) -> Vec<u8> {
    let mut out = header_bytes(header).to_vec();
    let attributes = header.attributes & !COMPRESSION_MASK;
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    out[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8]
        .copy_from_slice(&header.max_timestamp.to_be_bytes());
    finish(&mut out, 0, header.max_timestamp);
    out
}

/// The header fields as encoded (the batch's first 61 bytes, rebuilt from the parsed header).
fn header_bytes(h: &BatchHeader) -> [u8; BATCH_HEADER_LEN] {
    let mut out = [0u8; BATCH_HEADER_LEN];
    let mut put = |at: usize, bytes: &[u8]| out[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &h.base_offset.to_be_bytes());
    put(12, &h.partition_leader_epoch.to_be_bytes());
    put(16, &[h.magic as u8]);
    put(ATTRIBUTES_AT, &h.attributes.to_be_bytes());
    put(23, &h.last_offset_delta.to_be_bytes());
    put(BASE_TIMESTAMP_AT, &h.base_timestamp.to_be_bytes());
    put(MAX_TIMESTAMP_AT, &h.max_timestamp.to_be_bytes());
    put(43, &h.producer_id.to_be_bytes());
    put(51, &h.producer_epoch.to_be_bytes());
    put(53, &h.base_sequence.to_be_bytes());
    out
}

/// Sets count, max timestamp and length, then the CRC.
fn finish(out: &mut [u8], count: i32, max_timestamp: i64) {
    out[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
    out[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let length = (out.len() - 12) as i32;
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let crc = compute_crc(out).expect("the buffer holds a whole header");
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Largest records section a batch may decompress to. Records are held in memory whole while
/// they are checked or cleaned, so a small batch that inflates without bound (a decompression
/// bomb) must be refused rather than allocated.
pub const MAX_DECOMPRESSED_BYTES: u64 = 128 * 1024 * 1024;

fn decompress(codec: Compression, section: &[u8]) -> Result<Bytes, RecordsError> {
    use std::io::Read;
    let failed = |reason: String| RecordsError::Decompress { codec, reason };
    // Streams through `take` so at most one byte past the limit is ever produced.
    let bounded = |mut reader: Box<dyn Read + '_>| -> Result<Bytes, RecordsError> {
        let mut out = Vec::new();
        (&mut reader)
            .take(MAX_DECOMPRESSED_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| failed(e.to_string()))?;
        if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
            return Err(failed(format!(
                "records inflate past {MAX_DECOMPRESSED_BYTES} bytes"
            )));
        }
        Ok(Bytes::from(out))
    };
    match codec {
        Compression::None => Ok(Bytes::copy_from_slice(section)),
        Compression::Gzip => bounded(Box::new(flate2::read::GzDecoder::new(section))),
        Compression::Lz4 => bounded(Box::new(
            lz4::Decoder::new(section).map_err(|e| failed(e.to_string()))?,
        )),
        Compression::Zstd => bounded(Box::new(
            zstd::stream::read::Decoder::new(section).map_err(|e| failed(e.to_string()))?,
        )),
        Compression::Snappy => snappy(section).map_err(failed),
        Compression::Unknown(_) => Err(RecordsError::UnsupportedCodec { codec }),
    }
}

/// Snappy as Kafka's clients write it: xerial framing (16-byte header, then blocks of `u32`
/// length + raw snappy), or one raw snappy block. Every block states its uncompressed length,
/// which is checked against the limit before anything is allocated.
fn snappy(section: &[u8]) -> Result<Bytes, String> {
    const XERIAL_HEADER: usize = 16;
    const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
    let mut out = Vec::new();
    let block = |compressed: &[u8], out: &mut Vec<u8>| -> Result<(), String> {
        let len = snap::raw::decompress_len(compressed).map_err(|e| e.to_string())?;
        let start = out.len();
        if (start + len) as u64 > MAX_DECOMPRESSED_BYTES {
            return Err(format!(
                "records inflate past {MAX_DECOMPRESSED_BYTES} bytes"
            ));
        }
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut out[start..])
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    if section.len() >= XERIAL_HEADER && section.starts_with(XERIAL_MAGIC) {
        let mut rest = &section[XERIAL_HEADER..];
        while !rest.is_empty() {
            let (len, after) = rest
                .split_first_chunk::<4>()
                .ok_or("snappy block length cut short")?;
            let len = u32::from_be_bytes(*len) as usize;
            let data = after.get(..len).ok_or("snappy block cut short")?;
            block(data, &mut out)?;
            rest = &after[len..];
        }
    } else {
        block(section, &mut out)?;
    }
    Ok(Bytes::from(out))
}

fn compress(codec: Compression, section: &[u8], out: &mut Vec<u8>) -> Result<(), RecordsError> {
    let fill = |b: &mut BytesMut| {
        b.extend_from_slice(section);
        Ok(())
    };
    let result = match codec {
        Compression::None => {
            out.extend_from_slice(section);
            return Ok(());
        }
        Compression::Gzip => Gzip::compress(out, fill),
        Compression::Snappy => Snappy::compress(out, fill),
        Compression::Lz4 => Lz4::compress(out, fill),
        Compression::Zstd => Zstd::compress(out, fill),
        Compression::Unknown(_) => return Err(RecordsError::UnsupportedCodec { codec }),
    };
    result.map_err(|e| RecordsError::Compress {
        codec,
        reason: format!("{e:#}"),
    })
}

/// Frames `count` records: `length varint, attributes i8, timestamp delta varlong, offset delta
/// varint, key (varint length, -1 = null), value (same), headers` — only the fields needed
/// are read, the rest is skipped by the length prefix.
fn frame_records(body: &[u8], count: i32) -> Result<Vec<RecordView>, RecordsError> {
    let count = usize::try_from(count).map_err(|_| RecordsError::Malformed {
        index: 0,
        reason: "negative record count",
    })?;
    // The count is the producer's word: reserve no more than the body could hold (a record
    // takes at least 7 bytes).
    let mut out = Vec::with_capacity(count.min(body.len() / 7));
    let mut pos = 0usize;
    for index in 0..count {
        let bad = |reason| RecordsError::Malformed { index, reason };
        let start = pos;
        let len = varlong(body, &mut pos).ok_or(bad("bad length"))?;
        let len = usize::try_from(len).map_err(|_| bad("negative length"))?;
        let end = pos.checked_add(len).ok_or(bad("length overflows"))?;
        if end > body.len() {
            return Err(bad("record runs past the records section"));
        }
        let rec = &body[..end];
        pos += 1; // attributes
        let timestamp_delta = varlong(rec, &mut pos).ok_or(bad("bad timestamp delta"))?;
        let offset_delta = varlong(rec, &mut pos)
            .and_then(|d| i32::try_from(d).ok())
            .ok_or(bad("bad offset delta"))?;
        let key = bytes_field(rec, &mut pos).ok_or(bad("bad key"))?;
        let value = bytes_field(rec, &mut pos).ok_or(bad("bad value"))?;
        out.push(RecordView {
            offset_delta,
            timestamp_delta,
            key,
            value_is_null: value.is_none(),
            raw: start..end,
        });
        pos = end;
    }
    if pos != body.len() {
        return Err(RecordsError::Malformed {
            index: count,
            reason: "bytes after the last record",
        });
    }
    Ok(out)
}

/// A length-prefixed byte field; `Some(None)` for null.
fn bytes_field(buf: &[u8], pos: &mut usize) -> Option<Option<Range<usize>>> {
    let len = varlong(buf, pos)?;
    if len < 0 {
        return Some(None);
    }
    let start = *pos;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    if end > buf.len() {
        return None;
    }
    *pos = end;
    Some(Some(start..end))
}

/// A zig-zag varint of up to 64 bits.
pub(crate) fn varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut result: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        result |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((result >> 1) as i64) ^ -((result & 1) as i64));
        }
    }
    None
}

/// Whether every record of every batch in `records` has a non-null key (what a compacted
/// topic requires). Decompresses as needed.
pub fn all_records_keyed(records: &[u8]) -> Result<bool, RecordsError> {
    Ok(keyless_records(records)?.is_empty())
}

/// The index of each record without a key, counted within its batch (Produce's
/// `record_errors` batch indexes). Control batches are skipped. Decompresses as needed.
pub fn keyless_records(records: &[u8]) -> Result<Vec<i32>, RecordsError> {
    let mut out = Vec::new();
    for item in crate::batch_iter::BatchIter::new(records) {
        let (_, bytes) = item.map_err(|e| RecordsError::Header {
            reason: e.to_string(),
        })?;
        let batch = BatchRecords::parse(bytes)?;
        if batch.header.is_control() {
            continue;
        }
        out.extend(
            batch
                .records
                .iter()
                .zip(0..)
                .filter(|(r, _)| r.key.is_none())
                .map(|(_, i)| i),
        );
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (CONVENTIONS 8)
mod tests {
    use std::io::Write;

    use super::*;
    use crate::testing::{build_test_batch, TestBatch};

    /// A batch header from `build_test_batch` with `section` as its (compressed) records.
    fn batch_with(codec_bits: i16, count: i32, section: &[u8]) -> Vec<u8> {
        let plain = build_test_batch(&TestBatch::default());
        let mut h = BatchHeader::parse(&plain).unwrap();
        h.attributes = codec_bits;
        let mut out = header_bytes(&h).to_vec();
        out.extend_from_slice(section);
        finish(&mut out, count, h.max_timestamp);
        out
    }

    #[test]
    fn a_decompression_bomb_is_refused_without_inflating_it() {
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(MAX_DECOMPRESSED_BYTES >> 20) + 8 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
        let batch = batch_with(4, 1, &bomb);
        match BatchRecords::parse(&batch) {
            Err(RecordsError::Decompress { reason, .. }) => assert!(reason.contains("inflate")),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(all_records_keyed(&batch).is_err());
    }

    /// Found by the `records` fuzz target: a raw snappy block whose header claims 2.4 GB was
    /// allocated (zero-filled) before decoding failed.
    #[test]
    fn snappy_lengths_are_checked_before_allocating() {
        // Varint 0x8fffffff: a claimed uncompressed length of ~2.4 GB, then no data.
        let raw = [0xff, 0xff, 0xff, 0xff, 0x08];
        match BatchRecords::parse(&batch_with(2, 1, &raw)) {
            Err(RecordsError::Decompress { reason, .. }) => assert!(reason.contains("inflate")),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        xerial.extend_from_slice(&(raw.len() as u32).to_be_bytes());
        xerial.extend_from_slice(&raw);
        assert!(BatchRecords::parse(&batch_with(2, 1, &xerial)).is_err());
    }

    #[test]
    fn every_codec_round_trips_through_rebuild() {
        let plain = build_test_batch(&TestBatch {
            records: (0..50)
                .map(|i| (Some(format!("k{i}").into_bytes()), vec![b'v'; i]))
                .collect(),
            ..TestBatch::default()
        });
        let parsed = BatchRecords::parse(&plain).unwrap();
        for bits in [1i16, 2, 3, 4] {
            let codec = [
                Compression::Gzip,
                Compression::Snappy,
                Compression::Lz4,
                Compression::Zstd,
            ][bits as usize - 1];
            let mut section = Vec::new();
            compress(codec, &parsed.body, &mut section).unwrap();
            let batch = batch_with(bits, 50, &section);
            let again = BatchRecords::parse(&batch).unwrap();
            assert_eq!(again.body, parsed.body, "codec bits {bits}");
            assert_eq!(again.records.len(), 50);
            assert!(all_records_keyed(&batch).unwrap());
        }
    }

    #[test]
    fn keyless_records_are_named_by_their_index_in_the_batch() {
        let batch = build_test_batch(&TestBatch {
            records: vec![
                (Some(b"k0".to_vec()), b"v".to_vec()),
                (None, b"v".to_vec()),
                (Some(b"k2".to_vec()), b"v".to_vec()),
                (None, b"v".to_vec()),
            ],
            ..TestBatch::default()
        });
        assert_eq!(keyless_records(&batch).unwrap(), vec![1, 3]);
        assert!(!all_records_keyed(&batch).unwrap());
    }

    /// Found by the `records` fuzz target: a negative count framed nothing and the records were
    /// silently ignored (a clean would have dropped them).
    #[test]
    fn negative_counts_and_bytes_after_the_last_record_are_malformed() {
        let plain = build_test_batch(&TestBatch::default());
        let body = &plain[BATCH_HEADER_LEN..];
        for count in [-1, 0] {
            assert!(matches!(
                BatchRecords::parse(&batch_with(0, count, body)),
                Err(RecordsError::Malformed { .. })
            ));
        }
        assert!(BatchRecords::parse(&batch_with(0, 1, body)).is_ok());
    }

    #[test]
    fn a_lying_record_count_reserves_nothing_and_fails() {
        let batch = batch_with(0, i32::MAX, &[2, 0]);
        assert!(matches!(
            BatchRecords::parse(&batch),
            Err(RecordsError::Malformed { .. })
        ));
    }
}

//! Builders for real, uncompressed v2 record batches, for this crate's tests and the broker's.
//!
//! Not for production paths: records are encoded naively and headers are not supported. The
//! module is always compiled (it is small) so that other crates' tests can use it without a
//! feature flag.

use crate::batch::{compute_crc, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};

/// What to put in a test batch. Record `i` gets timestamp `base_timestamp + i` and offset delta `i`.
#[derive(Debug, Clone)]
pub struct TestBatch {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub base_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// `(key, value)` pairs.
    pub records: Vec<(Option<Vec<u8>>, Vec<u8>)>,
}

impl Default for TestBatch {
    fn default() -> Self {
        TestBatch {
            base_offset: 0,
            partition_leader_epoch: -1,
            attributes: 0,
            base_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: vec![(None, b"value".to_vec())],
        }
    }
}

fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Builds one valid v2 batch (correct length, CRC, last offset delta and max timestamp).
pub fn build_test_batch(spec: &TestBatch) -> Vec<u8> {
    let mut records = Vec::new();
    for (i, (key, value)) in spec.records.iter().enumerate() {
        let mut body = vec![0u8]; // record attributes
        put_varlong(&mut body, i as i64); // timestamp delta
        put_varlong(&mut body, i as i64); // offset delta
        put_bytes(&mut body, key.as_deref());
        put_bytes(&mut body, Some(value));
        put_varlong(&mut body, 0); // header count
        put_varlong(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let count = spec.records.len() as i32;
    let last_delta = (count - 1).max(0);
    let size = BATCH_HEADER_LEN + records.len();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&spec.base_offset.to_be_bytes());
    out.extend_from_slice(&((size - LOG_OVERHEAD) as i32).to_be_bytes());
    out.extend_from_slice(&spec.partition_leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&[0u8; 4]); // crc, filled below
    out.extend_from_slice(&spec.attributes.to_be_bytes());
    out.extend_from_slice(&last_delta.to_be_bytes());
    out.extend_from_slice(&spec.base_timestamp.to_be_bytes());
    out.extend_from_slice(&(spec.base_timestamp + i64::from(last_delta)).to_be_bytes());
    out.extend_from_slice(&spec.producer_id.to_be_bytes());
    out.extend_from_slice(&spec.producer_epoch.to_be_bytes());
    out.extend_from_slice(&spec.base_sequence.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&records);
    let crc = compute_crc(&out).expect("the buffer holds a whole header");
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// A batch of `count` records with values `"v0"`, `"v1"`, … and timestamps from `base_timestamp`.
pub fn simple_batch(count: usize, base_timestamp: i64) -> Vec<u8> {
    build_test_batch(&TestBatch {
        base_timestamp,
        records: (0..count)
            .map(|i| (None, format!("v{i}").into_bytes()))
            .collect(),
        ..TestBatch::default()
    })
}

/// Decodes `(offset, key, value)` of every record in an uncompressed batch; `None` if the
/// records do not parse. Test helper only: headers are skipped, compression is not supported.
#[allow(clippy::type_complexity)]
pub fn decode_test_records(batch: &[u8]) -> Option<Vec<(i64, Option<Vec<u8>>, Vec<u8>)>> {
    let header = crate::batch::BatchHeader::parse(batch).ok()?;
    let mut pos = BATCH_HEADER_LEN;
    let mut out = Vec::new();
    let take = |pos: &mut usize| -> Option<Option<Vec<u8>>> {
        let len = crate::records::varlong(batch, pos)?;
        if len < 0 {
            return Some(None);
        }
        let end = pos.checked_add(usize::try_from(len).ok()?)?;
        let bytes = batch.get(*pos..end)?.to_vec();
        *pos = end;
        Some(Some(bytes))
    };
    for _ in 0..header.records_count {
        let _len = crate::records::varlong(batch, &mut pos)?;
        pos += 1; // attributes
        let _ts_delta = crate::records::varlong(batch, &mut pos)?;
        let offset_delta = crate::records::varlong(batch, &mut pos)?;
        let key = take(&mut pos)?;
        let value = take(&mut pos)?.unwrap_or_default();
        let headers = crate::records::varlong(batch, &mut pos)?;
        for _ in 0..headers {
            take(&mut pos)?;
            take(&mut pos)?;
        }
        out.push((header.base_offset + offset_delta, key, value));
    }
    Some(out)
}

/// A keyed record for [`encode_batch`]: `(key, value)`, `None` for null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Producer fields for [`encode_batch`]: `(producer id, epoch, base sequence)`.
pub type ProducerFields = (i64, i16, i32);

/// Encodes one batch (base offset 0, record `i` at timestamp `base_timestamp + i`) with
/// `kafka-protocol`'s encoder and the given codec, as a real client would send it.
pub fn encode_batch(
    records: &[KeyValue<'_>],
    codec: kafka_protocol::records::Compression,
    base_timestamp: i64,
    producer: ProducerFields,
) -> Vec<u8> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions};
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.0,
            producer_epoch: producer.1,
            timestamp_type: kafka_protocol::records::TimestampType::Creation,
            offset: i as i64,
            // The encoder splits batches where offset - sequence changes, so -1 + i for "none".
            sequence: producer.2.wrapping_add(i as i32),
            timestamp: base_timestamp + i as i64,
            key: k.map(bytes::Bytes::copy_from_slice),
            value: v.map(bytes::Bytes::copy_from_slice),
            headers: Default::default(),
        })
        .collect();
    let mut out = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut out, &records, &options).expect("test batch encodes");
    out.to_vec()
}

/// `(offset, key, value)` of every record in concatenated batches, decoded (and decompressed)
/// with `kafka-protocol`'s decoder. Panics on a malformed buffer (test helper).
#[allow(clippy::type_complexity)]
pub fn decode_batches(records: &[u8]) -> Vec<(i64, Option<Vec<u8>>, Option<Vec<u8>>)> {
    use kafka_protocol::records::RecordBatchDecoder;
    let mut buf = bytes::Bytes::copy_from_slice(records);
    let sets = RecordBatchDecoder::decode_all(&mut buf).expect("batches decode");
    sets.into_iter()
        .flat_map(|s| s.records)
        .map(|r| {
            (
                r.offset,
                r.key.map(|k| k.to_vec()),
                r.value.map(|v| v.to_vec()),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varlong_round_trips_signed_values() {
        for v in [0i64, 1, -1, 63, -64, 64, 300, -300, i64::MAX, i64::MIN] {
            let mut buf = Vec::new();
            put_varlong(&mut buf, v);
            let mut pos = 0;
            assert_eq!(crate::records::varlong(&buf, &mut pos), Some(v));
            assert_eq!(pos, buf.len());
        }
        let mut one = Vec::new();
        put_varlong(&mut one, -1);
        assert_eq!(one, vec![0x01]);
    }

    #[test]
    fn built_batch_decodes_back_to_its_records() {
        let batch = build_test_batch(&TestBatch {
            base_offset: 10,
            records: vec![(Some(b"k".to_vec()), b"x".to_vec()), (None, b"yy".to_vec())],
            ..TestBatch::default()
        });
        let records = decode_test_records(&batch).unwrap();
        assert_eq!(
            records,
            vec![
                (10, Some(b"k".to_vec()), b"x".to_vec()),
                (11, None, b"yy".to_vec())
            ]
        );
    }
}

//! The records of `__consumer_offsets`, in Kafka's own schemas so that the topic is readable by
//! Kafka tools and by Kafka itself: keys `OffsetCommitKey` (key version 1; 0 is read too) and
//! `GroupMetadataKey` (key version 2); values `OffsetCommitValue` v3 (v0–3 read) and
//! `GroupMetadataValue` v3 (v0–3 read). A null value is a tombstone.
//!
//! The kafka-protocol crate has no codecs for these coordinator records, so the small,
//! non-flexible encodings are written here; batches around them are built and parsed with the
//! crate's `RecordBatchEncoder`/`RecordBatchDecoder`. Flexible value versions (v4+, written
//! only by Kafka 4 brokers) are reported as unsupported.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const OFFSET_KEY_V0: i16 = 0;
const OFFSET_KEY_V1: i16 = 1;
const GROUP_KEY_V2: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

/// Why a record could not be read or a batch built.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record truncated while reading {0}")]
    Truncated(&'static str),
    #[error("string field is not UTF-8")]
    Utf8,
    #[error("unsupported {what} version {version}")]
    Version { what: &'static str, version: i16 },
    #[error("failed to encode the record batch: {0}")]
    Encode(String),
    #[error("failed to decode a record batch: {0}")]
    Decode(String),
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// A group member as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's chosen protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Group metadata as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

/// One record of `__consumer_offsets`; `None` values are tombstones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        value: Option<GroupValue>,
    },
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
    b.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
    b.put_slice(v);
}

fn need(b: &impl Buf, n: usize, what: &'static str) -> Result<(), RecordError> {
    if b.remaining() < n {
        Err(RecordError::Truncated(what))
    } else {
        Ok(())
    }
}

fn get_i16(b: &mut Bytes, what: &'static str) -> Result<i16, RecordError> {
    need(b, 2, what)?;
    Ok(b.get_i16())
}

fn get_i32(b: &mut Bytes, what: &'static str) -> Result<i32, RecordError> {
    need(b, 4, what)?;
    Ok(b.get_i32())
}

fn get_i64(b: &mut Bytes, what: &'static str) -> Result<i64, RecordError> {
    need(b, 8, what)?;
    Ok(b.get_i64())
}

fn get_nullable_str(b: &mut Bytes, what: &'static str) -> Result<Option<String>, RecordError> {
    let len = get_i16(b, what)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    need(b, len, what)?;
    let raw = b.split_to(len);
    String::from_utf8(raw.to_vec())
        .map(Some)
        .map_err(|_| RecordError::Utf8)
}

fn get_str(b: &mut Bytes, what: &'static str) -> Result<String, RecordError> {
    Ok(get_nullable_str(b, what)?.unwrap_or_default())
}

fn get_bytes(b: &mut Bytes, what: &'static str) -> Result<Bytes, RecordError> {
    let len = get_i32(b, what)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    need(b, len, what)?;
    Ok(b.split_to(len))
}

impl GroupRecord {
    /// The group this record belongs to.
    pub fn group(&self) -> &str {
        match self {
            GroupRecord::Offset { group, .. } | GroupRecord::Group { group, .. } => group,
        }
    }

    /// The record key.
    pub fn key(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                ..
            } => {
                b.put_i16(OFFSET_KEY_V1);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            GroupRecord::Group { group, .. } => {
                b.put_i16(GROUP_KEY_V2);
                put_str(&mut b, group);
            }
        }
        b.freeze()
    }

    /// The record value; `None` for a tombstone.
    pub fn value(&self) -> Option<Bytes> {
        let mut b = BytesMut::new();
        match self {
            GroupRecord::Offset { value, .. } => {
                let v = value.as_ref()?;
                b.put_i16(OFFSET_VALUE_VERSION);
                b.put_i64(v.offset);
                b.put_i32(v.leader_epoch);
                put_str(&mut b, &v.metadata);
                b.put_i64(v.commit_timestamp_ms);
            }
            GroupRecord::Group { value, .. } => {
                let v = value.as_ref()?;
                b.put_i16(GROUP_VALUE_VERSION);
                put_str(&mut b, &v.protocol_type);
                b.put_i32(v.generation);
                put_nullable_str(&mut b, v.protocol.as_deref());
                put_nullable_str(&mut b, v.leader.as_deref());
                b.put_i64(v.state_timestamp_ms);
                b.put_i32(i32::try_from(v.members.len()).unwrap_or(i32::MAX));
                for m in &v.members {
                    put_str(&mut b, &m.member_id);
                    put_nullable_str(&mut b, m.instance_id.as_deref());
                    put_str(&mut b, &m.client_id);
                    put_str(&mut b, &m.client_host);
                    b.put_i32(m.rebalance_timeout_ms);
                    b.put_i32(m.session_timeout_ms);
                    put_bytes(&mut b, &m.subscription);
                    put_bytes(&mut b, &m.assignment);
                }
            }
        }
        Some(b.freeze())
    }

    /// Parses a stored key and value. `Ok(None)` for keys of other kinds of record (the newer
    /// consumer protocol's), which this coordinator ignores.
    pub fn parse(key: Bytes, value: Option<Bytes>) -> Result<Option<GroupRecord>, RecordError> {
        let mut k = key;
        let version = get_i16(&mut k, "key version")?;
        match version {
            OFFSET_KEY_V0 | OFFSET_KEY_V1 => {
                let group = get_str(&mut k, "group")?;
                let topic = get_str(&mut k, "topic")?;
                let partition = get_i32(&mut k, "partition")?;
                let value = value.map(parse_offset_value).transpose()?;
                Ok(Some(GroupRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                }))
            }
            GROUP_KEY_V2 => {
                let group = get_str(&mut k, "group")?;
                let value = value.map(parse_group_value).transpose()?;
                Ok(Some(GroupRecord::Group { group, value }))
            }
            _ => Ok(None),
        }
    }
}

fn parse_offset_value(mut v: Bytes) -> Result<OffsetValue, RecordError> {
    let version = get_i16(&mut v, "offset value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::Version {
            what: "offset commit value",
            version,
        });
    }
    let offset = get_i64(&mut v, "offset")?;
    let leader_epoch = if version >= 3 {
        get_i32(&mut v, "leader epoch")?
    } else {
        -1
    };
    let metadata = get_str(&mut v, "metadata")?;
    let commit_timestamp_ms = get_i64(&mut v, "commit timestamp")?;
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

fn parse_group_value(mut v: Bytes) -> Result<GroupValue, RecordError> {
    let version = get_i16(&mut v, "group value version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::Version {
            what: "group metadata value",
            version,
        });
    }
    let protocol_type = get_str(&mut v, "protocol type")?;
    let generation = get_i32(&mut v, "generation")?;
    let protocol = get_nullable_str(&mut v, "protocol")?;
    let leader = get_nullable_str(&mut v, "leader")?;
    let state_timestamp_ms = if version >= 2 {
        get_i64(&mut v, "state timestamp")?
    } else {
        -1
    };
    let count = get_i32(&mut v, "members")?.max(0);
    let mut members = Vec::new();
    for _ in 0..count {
        let member_id = get_str(&mut v, "member id")?;
        let instance_id = if version >= 3 {
            get_nullable_str(&mut v, "instance id")?
        } else {
            None
        };
        let client_id = get_str(&mut v, "client id")?;
        let client_host = get_str(&mut v, "client host")?;
        let rebalance_timeout_ms = if version >= 1 {
            get_i32(&mut v, "rebalance timeout")?
        } else {
            -1
        };
        let session_timeout_ms = get_i32(&mut v, "session timeout")?;
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 {
            session_timeout_ms
        } else {
            rebalance_timeout_ms
        };
        let subscription = get_bytes(&mut v, "subscription")?;
        let assignment = get_bytes(&mut v, "assignment")?;
        members.push(StoredMember {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

/// One uncompressed v2 batch holding `records` (offsets are assigned by the log on append).
pub fn encode_batch(records: &[GroupRecord], now_ms: i64) -> Result<BytesMut, RecordError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes; keeping it
            // constant (base sequence -1: not idempotent) gives exactly one batch.
            sequence: i as i32 - 1,
            timestamp: now_ms,
            key: Some(r.key()),
            value: r.value(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .map_err(|e| RecordError::Encode(e.to_string()))?;
    Ok(buf)
}

/// Every group record in a run of stored batches, in log order. Control records and records
/// without a key are skipped.
pub fn decode_batches(bytes: Bytes) -> Result<Vec<GroupRecord>, RecordError> {
    let mut buf = bytes;
    let sets =
        RecordBatchDecoder::decode_all(&mut buf).map_err(|e| RecordError::Decode(e.to_string()))?;
    let mut out = Vec::new();
    for record in sets.into_iter().flat_map(|s| s.records) {
        if record.control {
            continue;
        }
        let Some(key) = record.key else { continue };
        if let Some(r) = GroupRecord::parse(key, record.value)? {
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(v: Option<i64>) -> GroupRecord {
        GroupRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: v.map(|offset| OffsetValue {
                offset,
                leader_epoch: 7,
                metadata: "meta".into(),
                commit_timestamp_ms: 1_700_000_000_000,
            }),
        }
    }

    fn group() -> GroupRecord {
        GroupRecord::Group {
            group: "g".into(),
            value: Some(GroupValue {
                protocol_type: "consumer".into(),
                generation: 5,
                protocol: Some("range".into()),
                leader: Some("m-1".into()),
                state_timestamp_ms: 42,
                members: vec![StoredMember {
                    member_id: "m-1".into(),
                    instance_id: Some("i-1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 30_000,
                    session_timeout_ms: 10_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        }
    }

    #[test]
    fn offset_commit_key_and_value_use_kafkas_layout() {
        let r = offset(Some(12));
        // OffsetCommitKey v1: version, group, topic, partition.
        let key = r.key();
        assert_eq!(&key[..], b"\x00\x01\x00\x01g\x00\x01t\x00\x00\x00\x03");
        let value = r.value().expect("value");
        // OffsetCommitValue v3: version, offset, leader epoch, metadata, commit timestamp.
        assert_eq!(&value[..2], b"\x00\x03");
        assert_eq!(value.len(), 2 + 8 + 4 + 2 + 4 + 8);
        assert_eq!(
            GroupRecord::parse(key, Some(value)).expect("parse"),
            Some(r)
        );
    }

    #[test]
    fn older_offset_values_are_read() {
        // v1: offset, metadata, commit timestamp, expire timestamp.
        let mut v = BytesMut::new();
        v.put_i16(1);
        v.put_i64(99);
        put_str(&mut v, "m");
        v.put_i64(5);
        v.put_i64(6);
        let parsed = parse_offset_value(v.freeze()).expect("v1");
        assert_eq!(parsed.offset, 99);
        assert_eq!(parsed.leader_epoch, -1);
        assert_eq!(parsed.commit_timestamp_ms, 5);
    }

    #[test]
    fn group_metadata_round_trips_and_tombstones_have_no_value() {
        let g = group();
        assert_eq!(&g.key()[..2], b"\x00\x02");
        let parsed = GroupRecord::parse(g.key(), g.value()).expect("parse");
        assert_eq!(parsed, Some(g));
        let tomb = offset(None);
        assert_eq!(tomb.value(), None);
        assert_eq!(
            GroupRecord::parse(tomb.key(), None).expect("parse"),
            Some(tomb)
        );
    }

    #[test]
    fn batches_round_trip_and_unknown_keys_are_skipped() {
        let batch = encode_batch(&[offset(Some(1)), group(), offset(None)], 1000).expect("encode");
        let records = decode_batches(batch.clone().freeze()).expect("decode");
        assert_eq!(records, vec![offset(Some(1)), group(), offset(None)]);
        let mut raw = batch.clone().freeze();
        let info = RecordBatchDecoder::decode_batch_info(&mut raw).expect("headers");
        assert_eq!(
            info.len(),
            1,
            "one batch, so the log accepts it as one append"
        );
        assert_eq!((info[0].min_offset, info[0].record_count), (0, 3));
        assert_eq!(info[0].base_sequence, -1);
        let mut k = BytesMut::new();
        k.put_i16(11);
        assert_eq!(GroupRecord::parse(k.freeze(), None).expect("other"), None);
        assert!(GroupRecord::parse(Bytes::from_static(b"\x00"), None).is_err());
    }
}

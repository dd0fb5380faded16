//! ListOffsets: earliest (-2), latest (-1, the high watermark), max timestamp (-3, v7+),
//! earliest local (-4, v8+: the log start, as no segment is tiered), latest tiered (-5, v9+: no
//! offset, as nothing is tiered) and the first offset whose record timestamp is at or after a
//! given time — found through the time index, then exactly by decoding the records of that one
//! batch, as Kafka answers. Each offset comes with the leader epoch of the batch holding it (v4+),
//! and a request naming a current leader epoch is checked against the partition's (KIP-320).
//! v10's timeout (for lookups in remote storage) has nothing to wait for here.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;

use super::leader_hint;
use crate::broker::Broker;
use crate::replica::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub(super) async fn handle(
    broker: &Broker,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let image = broker.metadata.image();
    let mut topics = Vec::new();
    for t in req.topics {
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let base = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let hosted = broker.replicas.get(&t.name.0, p.partition_index);
            let fenced = hosted.as_ref().and_then(|part| {
                super::fetch::check_epoch(
                    p.current_leader_epoch,
                    part.leader_epoch.load(Ordering::Acquire),
                )
            });
            let r = match hosted {
                None => base.with_error_code(
                    leader_hint::not_hosted(&image, &t.name.0, p.partition_index).code(),
                ),
                Some(part) if part.leader.load(Ordering::Acquire) != broker.config.node_id => {
                    base.with_error_code(ResponseError::NotLeaderOrFollower.code())
                }
                Some(_) if version >= 4 && fenced.is_some() => {
                    base.with_error_code(fenced.map_or(0, |e| e.code()))
                }
                Some(part) => {
                    let ts = p.timestamp;
                    let found = tokio::task::spawn_blocking(move || lookup(&part, ts)).await;
                    match found {
                        Ok(Ok(Some((offset, timestamp, epoch)))) => base
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(if version >= 4 { epoch } else { -1 }),
                        Ok(Ok(None)) => base,
                        Ok(Err(code)) => base.with_error_code(code.code()),
                        Err(_) => base.with_error_code(ResponseError::UnknownServerError.code()),
                    }
                }
            };
            partitions.push(r);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// The (offset, timestamp, leader epoch) answering `ts` for one partition.
fn lookup(part: &Partition, ts: i64) -> Result<Option<(i64, i64, i32)>, ResponseError> {
    let hw = part.hw();
    let log = part.log.read().expect("log lock poisoned");
    let entries = log.epoch_entries();
    let with_epoch =
        |(offset, timestamp): (i64, i64)| (offset, timestamp, epoch_at(&entries, offset));
    found(&log, ts, hw).map(|o| o.map(with_epoch))
}

/// The epoch of the batch holding `offset`: the last epoch starting at or before it (the log end
/// belongs to the latest epoch); -1 when the log knows no epochs.
fn epoch_at(entries: &[(i32, tributary_log::Offset)], offset: i64) -> i32 {
    entries
        .iter()
        .rev()
        .find(|(_, start)| start.0 <= offset)
        .map_or(-1, |(epoch, _)| *epoch)
}

fn found(
    log: &tributary_log::Log,
    ts: i64,
    hw: tributary_log::Offset,
) -> Result<Option<(i64, i64)>, ResponseError> {
    let storage = |e: tributary_log::LogError| {
        tracing::warn!(error = %e, "list offsets lookup failed");
        ResponseError::KafkaStorageError
    };
    match ts {
        LATEST => Ok(Some((hw.0, -1))),
        EARLIEST | EARLIEST_LOCAL => Ok(Some((log.log_start_offset().0, -1))),
        LATEST_TIERED => Ok(None),
        MAX_TIMESTAMP => {
            // The log knows the batch (its last offset) holding the largest timestamp; the
            // exact record comes from decoding that batch.
            let Some((max_ts, last)) = log.max_timestamp_and_offset() else {
                return Ok(None);
            };
            let batch = log.read(last, 1, hw, true).map_err(storage)?;
            Ok(first_record(batch.records, |ts| ts == max_ts, hw.0)?.or(Some((last.0, max_ts))))
        }
        ts if ts < 0 => Err(ResponseError::UnsupportedVersion),
        ts => {
            let Some(batch) = log
                .first_batch_with_timestamp_at_least(ts)
                .map_err(storage)?
            else {
                return Ok(None);
            };
            first_record(batch, |t| t >= ts, hw.0)
        }
    }
}

/// The first record below `hw` in the first batch of `batch` whose timestamp passes `wanted`.
fn first_record(
    batch: Vec<u8>,
    wanted: impl Fn(i64) -> bool,
    hw: i64,
) -> Result<Option<(i64, i64)>, ResponseError> {
    if batch.is_empty() {
        return Ok(None);
    }
    let mut bytes = Bytes::from(batch);
    let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| {
        tracing::warn!(error = %e, "undecodable batch in timestamp lookup");
        ResponseError::CorruptMessage
    })?;
    Ok(set
        .records
        .iter()
        .find(|r| wanted(r.timestamp) && r.offset < hw)
        .map(|r| (r.offset, r.timestamp)))
}

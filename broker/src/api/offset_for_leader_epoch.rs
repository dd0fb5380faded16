//! OffsetForLeaderEpoch (API 23, v2–4): for each partition, the largest leader epoch at or
//! below the one asked and the offset where it ended in this leader's log (the log end for the
//! latest), from the leader-epoch cache — what a consumer or follower uses to find where its
//! log diverged after a leader change (KIP-101, KIP-320). Only the leader answers; a request
//! naming the current leader epoch is fenced like Fetch.

use std::sync::atomic::Ordering;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let out = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    match end_offset(
                        broker,
                        &t.topic.0,
                        p.partition,
                        p.current_leader_epoch,
                        p.leader_epoch,
                    ) {
                        Ok((epoch, offset)) => out.with_leader_epoch(epoch).with_end_offset(offset),
                        Err(e) => out.with_error_code(e.code()),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// `(epoch, end offset)`, `(-1, -1)` for an epoch above every known one (Kafka's undefined).
fn end_offset(
    broker: &Broker,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
    leader_epoch: i32,
) -> Result<(i32, i64), ResponseError> {
    let part = broker
        .replicas
        .get(topic, partition)
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    if part.leader.load(Ordering::Acquire) != broker.config.node_id {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    let ours = part.leader_epoch.load(Ordering::Acquire);
    match current_leader_epoch {
        -1 => {}
        c if c < ours => return Err(ResponseError::FencedLeaderEpoch),
        c if c > ours => return Err(ResponseError::UnknownLeaderEpoch),
        _ => {}
    }
    let log = part.log.read().expect("log lock poisoned");
    Ok(log
        .end_offset_for_epoch(leader_epoch)
        .map_or((-1, -1), |(e, o)| (e, o.0)))
}

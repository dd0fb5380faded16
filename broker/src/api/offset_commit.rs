//! OffsetCommit (v2–9): group or simple (generation -1) commits, acknowledged only after the
//! `__consumer_offsets` append is committed.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};

use super::s;
use crate::broker::Broker;
use crate::group::offsets::{CommitPartition, CommitRequest};

pub(super) async fn handle(
    broker: &Broker,
    req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let commit = CommitRequest {
        generation: req.generation_id_or_member_epoch,
        member_id: req.member_id.to_string(),
        instance_id: req
            .group_instance_id
            .filter(|_| version >= 7)
            .map(|i| i.to_string()),
        topics: req
            .topics
            .into_iter()
            .map(|t| {
                let parts = t
                    .partitions
                    .into_iter()
                    .map(|p| CommitPartition {
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: p.committed_metadata.map(|m| m.to_string()),
                    })
                    .collect();
                (t.name.0.to_string(), parts)
            })
            .collect(),
    };
    let image = broker.metadata.image();
    let exists = |topic: &str, p: i32| {
        image
            .topics
            .get(topic)
            .is_some_and(|t| t.partitions.contains_key(&p))
    };
    let results = broker
        .groups
        .commit_offsets(&req.group_id.0, commit, exists)
        .await;
    let topics = results
        .into_iter()
        .map(|(name, parts)| {
            let partitions = parts
                .into_iter()
                .map(|(p, e)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p)
                        .with_error_code(e.map_or(0, |e| e.code()))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(TopicName(s(name)))
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

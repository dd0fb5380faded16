//! OffsetFetch (v1–9): committed offsets with leader epoch and metadata; several groups per
//! request from v8. Offsets never committed are -1.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::ResponseError;

use super::s;
use crate::broker::Broker;
use crate::group::offsets::FetchedOffsets;

type Wanted = Option<Vec<(String, Vec<i32>)>>;

fn fetch(broker: &Broker, group: &str, wanted: Wanted) -> Result<FetchedOffsets, ResponseError> {
    broker.groups.fetch_offsets(group, wanted)
}

pub(super) async fn handle(
    broker: &Broker,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let found = fetch(broker, &g.group_id.0, wanted);
                group_v8(g.group_id, found)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect::<Vec<_>>()
    });
    let requested = wanted.clone().unwrap_or_default();
    match fetch(broker, &req.group_id.0, wanted) {
        Ok(found) => {
            let topics = found
                .into_iter()
                .map(|(t, parts)| topic_v1(t, parts.into_iter().map(|(p, v)| (p, v, 0)), version))
                .collect();
            OffsetFetchResponse::default().with_topics(topics)
        }
        // v1 has no group-level error: every requested partition carries it.
        Err(e) if version < 2 => {
            let topics = requested
                .into_iter()
                .map(|(t, ps)| topic_v1(t, ps.into_iter().map(|p| (p, None, e.code())), version))
                .collect();
            OffsetFetchResponse::default().with_topics(topics)
        }
        Err(e) => OffsetFetchResponse::default().with_error_code(e.code()),
    }
}

fn topic_v1(
    name: String,
    parts: impl Iterator<Item = (i32, Option<crate::group::records::OffsetValue>, i16)>,
    version: i16,
) -> OffsetFetchResponseTopic {
    let partitions = parts
        .map(|(p, v, code)| {
            let (offset, epoch, meta) = v.map_or((-1, -1, String::new()), |v| {
                (v.offset, v.leader_epoch, v.metadata)
            });
            let r = OffsetFetchResponsePartition::default()
                .with_partition_index(p)
                .with_committed_offset(offset)
                .with_metadata(Some(s(meta)))
                .with_error_code(code);
            if version >= 5 {
                r.with_committed_leader_epoch(epoch)
            } else {
                r
            }
        })
        .collect();
    OffsetFetchResponseTopic::default()
        .with_name(TopicName(s(name)))
        .with_partitions(partitions)
}

fn group_v8(id: GroupId, found: Result<FetchedOffsets, ResponseError>) -> OffsetFetchResponseGroup {
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            return OffsetFetchResponseGroup::default()
                .with_group_id(id)
                .with_error_code(e.code())
        }
    };
    let topics = found
        .into_iter()
        .map(|(t, parts)| {
            let partitions = parts
                .into_iter()
                .map(|(p, v)| {
                    let (offset, epoch, meta) = v.map_or((-1, -1, String::new()), |v| {
                        (v.offset, v.leader_epoch, v.metadata)
                    });
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(p)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(Some(s(meta)))
                })
                .collect();
            OffsetFetchResponseTopics::default()
                .with_name(TopicName(s(t)))
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponseGroup::default()
        .with_group_id(id)
        .with_topics(topics)
}

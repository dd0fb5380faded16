//! OffsetDelete (v0): removes a group's committed offsets of some partitions, refused for
//! topics the group's active members subscribe to.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, TopicName};

use super::s;
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    let wanted = req
        .topics
        .into_iter()
        .map(|t| {
            let parts = t
                .partitions
                .into_iter()
                .map(|p| p.partition_index)
                .collect();
            (t.name.0.to_string(), parts)
        })
        .collect();
    match broker.groups.delete_offsets(&req.group_id.0, wanted).await {
        Ok(results) => {
            let topics = results
                .into_iter()
                .map(|(t, parts)| {
                    let partitions = parts
                        .into_iter()
                        .map(|(p, e)| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(e.map_or(0, |e| e.code()))
                        })
                        .collect();
                    OffsetDeleteResponseTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(partitions)
                })
                .collect();
            OffsetDeleteResponse::default().with_topics(topics)
        }
        Err(e) => OffsetDeleteResponse::default().with_error_code(e.code()),
    }
}

//! DescribeTopicPartitions (API 75, KIP-966): topics and their partitions from the metadata image,
//! like Metadata but paginated — at most `response_partition_limit` partitions per response
//! (capped at 2000, Kafka's `max.request.partition.size.limit` default), topics in name order,
//! resumed from the request's cursor, with the next cursor when more remain. An empty topic list
//! means every topic. The eligible-leader-replica fields are empty lists: ELR is not built.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::s;
use crate::broker::Broker;
use crate::metadata::{MetadataImage, TopicImage};

/// The most partitions one response holds, whatever the request asks.
const MAX_PARTITIONS_PER_RESPONSE: usize = 2000;

pub(super) async fn handle(
    broker: &Broker,
    req: DescribeTopicPartitionsRequest,
    _version: i16,
) -> DescribeTopicPartitionsResponse {
    describe(&broker.metadata.image(), req)
}

/// The answer from one image (pure, for tests).
pub(super) fn describe(
    image: &MetadataImage,
    req: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let mut names: Vec<String> = if req.topics.is_empty() {
        image.topics.keys().cloned().collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let (start_topic, start_partition) = match &req.cursor {
        Some(c) => (Some(c.topic_name.0.to_string()), c.partition_index.max(0)),
        None => (None, 0),
    };
    if let Some(t) = &start_topic {
        if !names.contains(t) {
            // Kafka refuses a cursor outside the requested topics.
            return DescribeTopicPartitionsResponse::default().with_topics(vec![
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_name(Some(TopicName(s(t.clone()))))
                    .with_topic_authorized_operations(i32::MIN),
            ]);
        }
    }
    let limit = usize::try_from(req.response_partition_limit)
        .unwrap_or(0)
        .clamp(1, MAX_PARTITIONS_PER_RESPONSE);
    let mut left = limit;
    let mut topics = Vec::new();
    let mut next_cursor = None;
    let first = start_topic
        .as_ref()
        .and_then(|t| names.iter().position(|n| n == t))
        .unwrap_or(0);
    for (i, name) in names.iter().enumerate().skip(first) {
        let Some(t) = image.topics.get(name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_name(Some(TopicName(s(name.clone()))))
                    .with_topic_authorized_operations(i32::MIN),
            );
            continue;
        };
        if left == 0 {
            next_cursor = Some(cursor(name, 0));
            break;
        }
        let from = if i == first && start_topic.is_some() {
            start_partition
        } else {
            0
        };
        let mut partitions = Vec::new();
        for p in t.partitions.values().filter(|p| p.partition >= from) {
            if left == 0 {
                next_cursor = Some(cursor(name, p.partition));
                break;
            }
            partitions.push(partition(image, p));
            left -= 1;
        }
        topics.push(topic(t, partitions));
        if next_cursor.is_some() {
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}

fn cursor(topic: &str, partition: i32) -> Cursor {
    Cursor::default()
        .with_topic_name(TopicName(s(topic)))
        .with_partition_index(partition)
}

fn topic(
    t: &TopicImage,
    partitions: Vec<DescribeTopicPartitionsResponsePartition>,
) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(TopicName(s(t.name.clone()))))
        .with_topic_id(t.topic_id)
        .with_is_internal(t.name.starts_with("__"))
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}

fn partition(
    image: &MetadataImage,
    p: &crate::metadata::image::PartitionImage,
) -> DescribeTopicPartitionsResponsePartition {
    let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
    DescribeTopicPartitionsResponsePartition::default()
        .with_error_code(if p.leader < 0 {
            ResponseError::LeaderNotAvailable.code()
        } else {
            0
        })
        .with_partition_index(p.partition)
        .with_leader_id(BrokerId(p.leader))
        .with_leader_epoch(p.leader_epoch)
        .with_replica_nodes(ids(&p.replicas))
        .with_isr_nodes(ids(&p.isr))
        .with_eligible_leader_replicas(Some(Vec::new()))
        .with_last_known_elr(Some(Vec::new()))
        .with_offline_replicas(super::metadata::offline_replicas(image, &p.replicas))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_topic_partitions_request::{
        Cursor as RequestCursor, TopicRequest,
    };

    use super::*;
    use crate::metadata::records::{MetadataRecord, PartitionRecord};

    /// Topics "a" (3 partitions), "b" (2) and "c" (1), every partition led by broker 1.
    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        for (name, n) in [("a", 3), ("b", 2), ("c", 1)] {
            let id = uuid::Uuid::new_v4();
            image.apply(&MetadataRecord::Topic {
                name: name.into(),
                topic_id: id,
                configs: Default::default(),
            });
            for p in 0..n {
                image.apply(&MetadataRecord::Partition(PartitionRecord {
                    topic_id: id,
                    partition: p,
                    replicas: vec![1, 2],
                    isr: vec![1],
                    leader: if name == "c" { -1 } else { 1 },
                    leader_epoch: 3,
                    partition_epoch: 4,
                    adding_replicas: Vec::new(),
                    removing_replicas: Vec::new(),
                    original_replicas: Vec::new(),
                }));
            }
        }
        image
    }

    fn request(
        topics: &[&str],
        limit: i32,
        cursor: Option<(&str, i32)>,
    ) -> DescribeTopicPartitionsRequest {
        DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| TopicRequest::default().with_name(TopicName(s(*t))))
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(t, p)| {
                RequestCursor::default()
                    .with_topic_name(TopicName(s(t)))
                    .with_partition_index(p)
            }))
    }

    /// (topic, [partition indexes]) of a response, and its next cursor.
    type Shape = (Vec<(String, Vec<i32>)>, Option<(String, i32)>);

    fn shape(r: &DescribeTopicPartitionsResponse) -> Shape {
        (
            r.topics
                .iter()
                .map(|t| {
                    (
                        t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                })
                .collect(),
            r.next_cursor
                .as_ref()
                .map(|c| (c.topic_name.0.to_string(), c.partition_index)),
        )
    }

    #[test]
    fn all_topics_are_paged_in_name_order_and_resume_at_the_cursor() {
        let image = image();
        let first = describe(&image, request(&[], 4, None));
        assert_eq!(
            shape(&first),
            (
                vec![("a".into(), vec![0, 1, 2]), ("b".into(), vec![0])],
                Some(("b".into(), 1))
            )
        );
        let second = describe(&image, request(&[], 4, Some(("b", 1))));
        assert_eq!(
            shape(&second),
            (vec![("b".into(), vec![1]), ("c".into(), vec![0])], None)
        );
        // A page ending exactly at a topic's end points at the next topic.
        let exact = describe(&image, request(&[], 3, None));
        assert_eq!(
            shape(&exact),
            (vec![("a".into(), vec![0, 1, 2])], Some(("b".into(), 0)))
        );
    }

    #[test]
    fn partitions_carry_leaders_epochs_and_errors_and_unknown_topics_are_named() {
        let r = describe(&image(), request(&["c", "zz", "a"], 100, None));
        let names: Vec<_> = r
            .topics
            .iter()
            .map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect();
        assert_eq!(
            names,
            [Some("a".into()), Some("c".into()), Some("zz".into())]
        );
        let a0 = &r.topics[0].partitions[0];
        assert_eq!(
            (a0.leader_id, a0.leader_epoch, a0.error_code),
            (BrokerId(1), 3, 0)
        );
        assert_eq!(a0.replica_nodes, [BrokerId(1), BrokerId(2)]);
        assert_eq!(a0.isr_nodes, [BrokerId(1)]);
        assert_eq!(
            a0.offline_replicas,
            [BrokerId(1), BrokerId(2)],
            "no broker is registered"
        );
        assert_eq!(a0.eligible_leader_replicas, Some(vec![]));
        assert_eq!(
            r.topics[1].partitions[0].error_code,
            ResponseError::LeaderNotAvailable.code()
        );
        assert_eq!(
            r.topics[2].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert!(r.next_cursor.is_none());
    }

    #[test]
    fn a_cursor_outside_the_requested_topics_is_invalid_and_the_limit_is_capped() {
        let r = describe(&image(), request(&["a"], 10, Some(("b", 0))));
        assert_eq!(r.topics[0].error_code, ResponseError::InvalidRequest.code());
        let r = describe(&image(), request(&[], i32::MAX, None));
        assert_eq!(
            r.topics.iter().map(|t| t.partitions.len()).sum::<usize>(),
            6
        );
        let r = describe(&image(), request(&[], 0, None));
        assert_eq!(
            shape(&r).1,
            Some(("a".into(), 1)),
            "at least one partition a page"
        );
    }
}

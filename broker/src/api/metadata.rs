//! Metadata: brokers, topics and partitions from the metadata image; auto-creates requested
//! topics when `auto.create.topics.enable` and the client allow it.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;

use super::s;
use crate::broker::Broker;
use crate::metadata::controller::placement as validate;
use crate::metadata::{MetadataImage, TopicImage};

pub(super) async fn handle(
    broker: &Broker,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let requested: Option<Vec<(Option<String>, uuid::Uuid)>> = match req.topics {
        Some(t) if !(version == 0 && t.is_empty()) => Some(
            t.into_iter()
                .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
                .collect(),
        ),
        _ => None,
    };
    let auto_create =
        broker.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    if let (true, Some(req)) = (auto_create, &requested) {
        let image = broker.metadata.image();
        let missing: Vec<String> = req
            .iter()
            .filter_map(|(n, _)| n.clone())
            .filter(|n| !image.topics.contains_key(n) && validate::topic_name(n).is_ok())
            .collect();
        broker.auto_create_topics(missing).await;
    }
    let image = broker.metadata.image();
    let topics = match requested {
        None => image
            .topics
            .values()
            .map(|t| topic(&image, t, version))
            .collect(),
        Some(req) => req
            .into_iter()
            .map(|(name, id)| lookup(&image, name, id, version))
            .collect(),
    };
    MetadataResponse::default()
        .with_brokers(brokers(&image))
        .with_cluster_id(Some(s(broker.cluster_id())))
        .with_controller_id(BrokerId(broker.controller_id_for_clients()))
        .with_topics(topics)
}

/// The brokers clients may use: registered and not fenced.
pub(super) fn brokers(image: &MetadataImage) -> Vec<MetadataResponseBroker> {
    image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.broker_id))
                .with_host(s(b.host.clone()))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.clone().map(s))
        })
        .collect()
}

fn lookup(
    image: &MetadataImage,
    name: Option<String>,
    id: uuid::Uuid,
    version: i16,
) -> MetadataResponseTopic {
    let found = match &name {
        Some(n) => image.topics.get(n).map(AsRef::as_ref),
        None => image.topic_by_id(&id),
    };
    if let Some(t) = found {
        return topic(image, t, version);
    }
    let code = match &name {
        Some(n) if validate::topic_name(n).is_err() => ResponseError::InvalidTopicException,
        Some(_) => ResponseError::UnknownTopicOrPartition,
        None => ResponseError::UnknownTopicId,
    };
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name.map(|n| TopicName(s(n))))
        .with_topic_id(id)
}

fn topic(image: &MetadataImage, t: &TopicImage, _version: i16) -> MetadataResponseTopic {
    let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let partitions = t
        .partitions
        .values()
        .map(|p| {
            MetadataResponsePartition::default()
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
                .with_offline_replicas(offline_replicas(image, &p.replicas))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(s(t.name.clone()))))
        .with_topic_id(t.topic_id)
        .with_is_internal(t.name.starts_with("__"))
        .with_partitions(partitions)
}

/// The replicas on brokers that are fenced or no longer registered.
pub(super) fn offline_replicas(image: &MetadataImage, replicas: &[i32]) -> Vec<BrokerId> {
    replicas
        .iter()
        .copied()
        .filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced))
        .map(BrokerId)
        .collect()
}

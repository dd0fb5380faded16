//! CreateTopics (including `validate_only`): defaults from the broker config, then the
//! controller validates and commits.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{configs::source_code, error_parts, s};
use crate::broker::Broker;
use crate::metadata::NewTopic;
use crate::topic_config;

pub(super) async fn handle(
    broker: &Broker,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let new: Vec<NewTopic> = req
        .topics
        .iter()
        .map(|t| NewTopic {
            name: t.name.0.to_string(),
            num_partitions: if t.num_partitions == -1 {
                broker.config.num_partitions
            } else {
                t.num_partitions
            },
            replication_factor: if t.replication_factor == -1 {
                broker.config.default_replication_factor
            } else {
                t.replication_factor
            },
            assignments: t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect(),
            configs: t
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect(),
        })
        .collect();
    let results = broker
        .controller
        .create_topics(new.clone(), req.validate_only)
        .await;
    if !req.validate_only {
        broker.sync_replicas().await;
    }
    let topics = new
        .iter()
        .zip(results)
        .map(|(t, r)| {
            let (code, message) = error_parts(&r);
            let mut out = CreatableTopicResult::default()
                .with_name(kafka_protocol::messages::TopicName(s(t.name.clone())))
                .with_error_code(code)
                .with_error_message(message);
            if let Ok(created) = r {
                out = out
                    .with_topic_id(if req.validate_only {
                        uuid::Uuid::nil()
                    } else {
                        created.topic_id
                    })
                    .with_num_partitions(created.num_partitions)
                    .with_replication_factor(created.replication_factor);
                if version >= 5 {
                    out = out.with_configs(Some(topic_configs(broker, &t.configs)));
                }
            } else if version >= 5 {
                out = out.with_num_partitions(-1).with_replication_factor(-1);
            }
            out
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn topic_configs(
    broker: &Broker,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    topic_config::effective(overrides, &broker.config)
        .into_iter()
        .map(|(name, (value, source))| {
            CreatableTopicConfigs::default()
                .with_name(s(name))
                .with_value(Some(s(value)))
                .with_config_source(source_code(source))
        })
        .collect()
}

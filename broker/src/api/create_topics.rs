//! CreateTopics (including `validate_only`): forwarded to the active controller, which applies
//! its defaults, validates and commits; the broker answers once it sees the new topics in its
//! own metadata image (bounded), so a client can use them at once.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{configs::source_code, error_parts, s};
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::metadata::channel::ControllerApi;
use crate::metadata::{ApiError, NewTopic, QuorumController};
use crate::topic_config;

pub(super) async fn handle(
    broker: &Broker,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0).max(1_000));
    let names: Vec<_> = req.topics.iter().map(|t| t.name.clone()).collect();
    let validate_only = req.validate_only;
    let resp = match broker.channel.call(version, req, timeout).await {
        Ok(resp) => resp,
        Err(e) => return failed(names, &e),
    };
    if !validate_only {
        let created: Vec<String> = resp
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .map(|t| t.name.0.to_string())
            .collect();
        broker
            .await_metadata(|image| created.iter().all(|n| image.topics.contains_key(n)))
            .await;
    }
    resp
}

fn failed(names: Vec<kafka_protocol::messages::TopicName>, e: &ApiError) -> CreateTopicsResponse {
    let topics = names
        .into_iter()
        .map(|name| {
            CreatableTopicResult::default()
                .with_name(name)
                .with_error_code(e.code.code())
                .with_error_message(Some(s(e.message.clone())))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

impl ControllerApi for CreateTopicsRequest {
    async fn serve(
        ctl: &QuorumController,
        cfg: &BrokerConfig,
        req: Self,
        version: i16,
    ) -> CreateTopicsResponse {
        on_controller(ctl, cfg, req, version).await
    }

    fn not_controller(resp: &CreateTopicsResponse) -> bool {
        resp.topics
            .iter()
            .any(|t| t.error_code == super::NOT_CONTROLLER)
    }
}

async fn on_controller(
    ctl: &QuorumController,
    cfg: &BrokerConfig,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let new: Vec<NewTopic> = req
        .topics
        .iter()
        .map(|t| NewTopic {
            name: t.name.0.to_string(),
            num_partitions: if t.num_partitions == -1 {
                cfg.num_partitions
            } else {
                t.num_partitions
            },
            replication_factor: if t.replication_factor == -1 {
                cfg.default_replication_factor
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
    let results = ctl.create_topics(new.clone(), req.validate_only).await;
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
                    out = out.with_configs(Some(topic_configs(cfg, &t.configs)));
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
    cfg: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    topic_config::effective(overrides, cfg)
        .into_iter()
        .map(|(name, (value, source))| {
            CreatableTopicConfigs::default()
                .with_name(s(name))
                .with_value(Some(s(value)))
                .with_config_source(source_code(source))
        })
        .collect()
}

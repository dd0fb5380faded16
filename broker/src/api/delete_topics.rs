//! DeleteTopics, by name (all versions) or by topic id (v6+): forwarded to the active
//! controller; the broker answers once its own image no longer has the deleted topics
//! (bounded).

use std::time::Duration;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;

use super::s;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::metadata::channel::ControllerApi;
use crate::metadata::QuorumController;

pub(super) async fn handle(
    broker: &Broker,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0).max(1_000));
    let wanted: Vec<(Option<TopicName>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.clone(), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.clone()), uuid::Uuid::nil()))
            .collect()
    };
    let resp = match broker.channel.call(version, req, timeout).await {
        Ok(resp) => resp,
        Err(e) => {
            let responses = wanted
                .into_iter()
                .map(|(name, id)| {
                    DeletableTopicResult::default()
                        .with_name(name)
                        .with_topic_id(id)
                        .with_error_code(e.code.code())
                        .with_error_message(Some(s(e.message.clone())))
                })
                .collect();
            return DeleteTopicsResponse::default().with_responses(responses);
        }
    };
    let gone: Vec<uuid::Uuid> = resp
        .responses
        .iter()
        .filter(|r| r.error_code == 0)
        .map(|r| r.topic_id)
        .collect();
    broker
        .await_metadata(|image| gone.iter().all(|id| image.topic_by_id(id).is_none()))
        .await;
    resp
}

impl ControllerApi for DeleteTopicsRequest {
    async fn serve(
        ctl: &QuorumController,
        _cfg: &BrokerConfig,
        req: Self,
        version: i16,
    ) -> DeleteTopicsResponse {
        on_controller(ctl, req, version).await
    }

    fn not_controller(resp: &DeleteTopicsResponse) -> bool {
        resp.responses
            .iter()
            .any(|r| r.error_code == super::NOT_CONTROLLER)
    }
}

async fn on_controller(
    ctl: &QuorumController,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let image = ctl.image();
    // Each entry: the name to delete (or the error for an unknown id) and the id asked for.
    let wanted: Vec<(Result<String, ResponseError>, uuid::Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| match &t.name {
                Some(n) => (Ok(n.0.to_string()), t.topic_id),
                None => (
                    image
                        .topic_by_id(&t.topic_id)
                        .map(|t| t.name.clone())
                        .ok_or(ResponseError::UnknownTopicId),
                    t.topic_id,
                ),
            })
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Ok(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let names: Vec<String> = wanted.iter().filter_map(|(n, _)| n.clone().ok()).collect();
    let mut results = ctl.delete_topics(names).await.into_iter();
    let responses = wanted
        .into_iter()
        .map(|(name, id)| match name {
            Ok(name) => {
                let r = results.next().unwrap_or(Ok(id));
                let (code, message) = super::error_parts(&r);
                DeletableTopicResult::default()
                    .with_name(Some(TopicName(s(name))))
                    .with_topic_id(r.unwrap_or(id))
                    .with_error_code(code)
                    .with_error_message(message)
            }
            Err(code) => DeletableTopicResult::default()
                .with_topic_id(id)
                .with_error_code(code.code())
                .with_error_message(Some(s(format!("topic id {id} does not exist")))),
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

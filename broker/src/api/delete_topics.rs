//! DeleteTopics, by name (all versions) or by topic id (v6+).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;

use super::s;
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let image = broker.controller.image();
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
    let mut results = broker.controller.delete_topics(names).await.into_iter();
    broker.sync_replicas().await;
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

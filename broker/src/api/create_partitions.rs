//! CreatePartitions: raises a topic's partition count through the controller.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::error_parts;
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Broker,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    for t in &req.topics {
        let assignments = t
            .assignments
            .iter()
            .flatten()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect();
        let r = broker
            .controller
            .create_partitions(&t.name.0, t.count, assignments, req.validate_only)
            .await;
        let (code, message) = error_parts(&r);
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    if !req.validate_only {
        broker.sync_replicas().await;
    }
    CreatePartitionsResponse::default().with_results(results)
}

//! CreatePartitions: raises a topic's partition count through the active controller; the
//! broker answers once its own image has the new partitions (bounded).

use std::time::Duration;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{error_parts, s};
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::metadata::channel::ControllerApi;
use crate::metadata::QuorumController;

pub(super) async fn handle(
    broker: &Broker,
    req: CreatePartitionsRequest,
    version: i16,
) -> CreatePartitionsResponse {
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0).max(1_000));
    let wanted: Vec<(String, i32)> = req
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.count))
        .collect();
    let validate_only = req.validate_only;
    let resp = match broker.channel.call(version, req, timeout).await {
        Ok(resp) => resp,
        Err(e) => {
            let results = wanted
                .into_iter()
                .map(|(name, _)| {
                    CreatePartitionsTopicResult::default()
                        .with_name(kafka_protocol::messages::TopicName(s(name)))
                        .with_error_code(e.code.code())
                        .with_error_message(Some(s(e.message.clone())))
                })
                .collect();
            return CreatePartitionsResponse::default().with_results(results);
        }
    };
    if !validate_only {
        let grown: Vec<(String, i32)> = wanted
            .into_iter()
            .zip(&resp.results)
            .filter(|(_, r)| r.error_code == 0)
            .map(|(w, _)| w)
            .collect();
        broker
            .await_metadata(|image| {
                grown.iter().all(|(n, count)| {
                    image
                        .topics
                        .get(n)
                        .is_some_and(|t| t.partitions.len() >= usize::try_from(*count).unwrap_or(0))
                })
            })
            .await;
    }
    resp
}

impl ControllerApi for CreatePartitionsRequest {
    async fn serve(
        ctl: &QuorumController,
        _cfg: &BrokerConfig,
        req: Self,
        _version: i16,
    ) -> CreatePartitionsResponse {
        on_controller(ctl, req).await
    }

    fn not_controller(resp: &CreatePartitionsResponse) -> bool {
        resp.results
            .iter()
            .any(|r| r.error_code == super::NOT_CONTROLLER)
    }
}

async fn on_controller(
    ctl: &QuorumController,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    for t in &req.topics {
        let assignments = t
            .assignments
            .iter()
            .flatten()
            .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
            .collect();
        let r = ctl
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
    CreatePartitionsResponse::default().with_results(results)
}

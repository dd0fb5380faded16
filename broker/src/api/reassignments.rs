//! AlterPartitionReassignments (API 45) and ListPartitionReassignments (API 46), KIP-455: both
//! forwarded to the active controller, which starts, replaces or cancels (a null target)
//! reassignments as metadata records (`metadata/controller/reassignment.rs`) and lists the ones
//! in progress from its image. v1's `allow_replication_factor_change` (KIP-860): when false, a
//! target with a different number of replicas than the partition has is refused.

use std::time::Duration;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::s;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::metadata::channel::ControllerApi;
use crate::metadata::controller::reassignment;
use crate::metadata::{ApiError, QuorumController};

fn timeout(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0).max(1_000))
}

pub(super) async fn alter(
    broker: &Broker,
    req: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let t = timeout(req.timeout_ms);
    match broker.channel.call(version, req, t).await {
        Ok(resp) => resp,
        Err(e) => AlterPartitionReassignmentsResponse::default()
            .with_error_code(e.code.code())
            .with_error_message(Some(s(e.message))),
    }
}

pub(super) async fn list(
    broker: &Broker,
    req: ListPartitionReassignmentsRequest,
    version: i16,
) -> ListPartitionReassignmentsResponse {
    let t = timeout(req.timeout_ms);
    match broker.channel.call(version, req, t).await {
        Ok(resp) => resp,
        Err(e) => ListPartitionReassignmentsResponse::default()
            .with_error_code(e.code.code())
            .with_error_message(Some(s(e.message))),
    }
}

impl ControllerApi for AlterPartitionReassignmentsRequest {
    async fn serve(
        ctl: &QuorumController,
        _cfg: &BrokerConfig,
        req: Self,
        version: i16,
    ) -> AlterPartitionReassignmentsResponse {
        let allow_rf_change = version < 1 || req.allow_replication_factor_change;
        let image = ctl.image();
        // Refused before the controller sees them: RF changes when not allowed.
        let mut outcomes: Vec<Option<Result<(), ApiError>>> = Vec::new();
        let mut wanted = Vec::new();
        for t in &req.topics {
            for p in &t.partitions {
                let target: Option<Vec<i32>> =
                    p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
                let current = image
                    .topics
                    .get(t.name.0.as_str())
                    .and_then(|x| x.partitions.get(&p.partition_index))
                    .map(|x| reassignment::original(x).len());
                match (&target, current) {
                    (Some(target), Some(n)) if !allow_rf_change && target.len() != n => {
                        outcomes.push(Some(Err(ApiError::new(
                            ResponseError::InvalidReplicationFactor,
                            format!(
                                "the target has {} replicas and the partition {n}: allow_replication_factor_change is false",
                                target.len()
                            ),
                        ))));
                    }
                    _ => {
                        outcomes.push(None);
                        wanted.push((t.name.0.to_string(), p.partition_index, target));
                    }
                }
            }
        }
        let mut results = match ctl.alter_reassignments(wanted).await {
            Ok(r) => r.into_iter(),
            Err(e) => {
                return AlterPartitionReassignmentsResponse::default()
                    .with_error_code(e.code.code())
                    .with_error_message(Some(s(e.message)))
            }
        };
        let mut outcomes = outcomes.into_iter();
        let mut responses = Vec::new();
        for t in req.topics {
            let mut partitions = Vec::new();
            for p in t.partitions {
                let outcome = outcomes
                    .next()
                    .flatten()
                    .or_else(|| results.next())
                    .unwrap_or(Ok(()));
                let r = ReassignablePartitionResponse::default()
                    .with_partition_index(p.partition_index);
                partitions.push(match outcome {
                    Ok(()) => r,
                    Err(e) => r
                        .with_error_code(e.code.code())
                        .with_error_message(Some(s(e.message))),
                });
            }
            responses.push(
                ReassignableTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions),
            );
        }
        AlterPartitionReassignmentsResponse::default()
            .with_allow_replication_factor_change(allow_rf_change && version >= 1)
            .with_responses(responses)
    }

    fn not_controller(resp: &AlterPartitionReassignmentsResponse) -> bool {
        resp.error_code == super::NOT_CONTROLLER
    }
}

impl ControllerApi for ListPartitionReassignmentsRequest {
    async fn serve(
        ctl: &QuorumController,
        _cfg: &BrokerConfig,
        req: Self,
        _version: i16,
    ) -> ListPartitionReassignmentsResponse {
        if !ctl.is_active() {
            return ListPartitionReassignmentsResponse::default()
                .with_error_code(super::NOT_CONTROLLER);
        }
        let image = ctl.image();
        let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
        let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        let mut topics = Vec::new();
        for t in image.topics.values() {
            let only: Option<&Vec<i32>> = match &wanted {
                None => None,
                Some(w) => match w.iter().find(|(n, _)| *n == t.name) {
                    Some((_, parts)) => Some(parts),
                    None => continue,
                },
            };
            let partitions: Vec<_> = t
                .partitions
                .values()
                .filter(|p| reassignment::in_progress(p))
                .filter(|p| only.is_none_or(|o| o.contains(&p.partition)))
                .map(|p| {
                    OngoingPartitionReassignment::default()
                        .with_partition_index(p.partition)
                        .with_replicas(ids(&p.replicas))
                        .with_adding_replicas(ids(&p.adding_replicas))
                        .with_removing_replicas(ids(&p.removing_replicas))
                })
                .collect();
            if !partitions.is_empty() {
                topics.push(
                    OngoingTopicReassignment::default()
                        .with_name(TopicName(s(t.name.clone())))
                        .with_partitions(partitions),
                );
            }
        }
        ListPartitionReassignmentsResponse::default().with_topics(topics)
    }

    fn not_controller(resp: &ListPartitionReassignmentsResponse) -> bool {
        resp.error_code == super::NOT_CONTROLLER
    }
}

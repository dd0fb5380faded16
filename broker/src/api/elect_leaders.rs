//! ElectLeaders (API 43): preferred (type 0) or unclean (type 1) leader election for the named
//! partitions, or for all of them with a null list. Forwarded to the active controller, which
//! answers once the elections are committed to the metadata log (brokers learn them from it).

use std::time::Duration;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::ResponseError;

use super::s;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::metadata::channel::ControllerApi;
use crate::metadata::QuorumController;

/// Kafka's election types.
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub(super) async fn handle(
    broker: &Broker,
    req: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0).max(1_000));
    match broker.channel.call(version, req, timeout).await {
        Ok(resp) => resp,
        Err(e) => ElectLeadersResponse::default().with_error_code(e.code.code()),
    }
}

impl ControllerApi for ElectLeadersRequest {
    async fn serve(
        ctl: &QuorumController,
        _cfg: &BrokerConfig,
        req: Self,
        version: i16,
    ) -> ElectLeadersResponse {
        let unclean = match (version, req.election_type) {
            (0, _) | (_, PREFERRED) => false,
            (_, UNCLEAN) => true,
            (_, other) => {
                tracing::debug!(election_type = other, "unknown election type");
                return ElectLeadersResponse::default()
                    .with_error_code(ResponseError::InvalidRequest.code());
            }
        };
        let wanted = req.topic_partitions.map(|tps| {
            tps.iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
                .collect()
        });
        let results = match ctl.elect_leaders(unclean, wanted).await {
            Ok(r) => r,
            Err(e) => return ElectLeadersResponse::default().with_error_code(e.code.code()),
        };
        let mut out: Vec<ReplicaElectionResult> = Vec::new();
        for ((topic, partition), r) in results {
            let pr = PartitionResult::default().with_partition_id(partition);
            let pr = match r {
                Ok(()) => pr,
                Err(code) => pr
                    .with_error_code(code.code())
                    .with_error_message(Some(s(format!("{code:?}")))),
            };
            match out.iter_mut().find(|t| t.topic.0.as_str() == topic) {
                Some(t) => t.partition_result.push(pr),
                None => out.push(
                    ReplicaElectionResult::default()
                        .with_topic(TopicName(s(topic)))
                        .with_partition_result(vec![pr]),
                ),
            }
        }
        ElectLeadersResponse::default().with_replica_election_results(out)
    }

    fn not_controller(resp: &ElectLeadersResponse) -> bool {
        resp.error_code == super::NOT_CONTROLLER
    }
}

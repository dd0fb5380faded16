//! The broker-lifecycle Kafka APIs as the active controller serves them: BrokerRegistration,
//! BrokerHeartbeat, UnregisterBroker, AllocateProducerIds and DescribeQuorum. (The admin APIs
//! a broker forwards are served by the same handlers as on the broker, in `crate::api`.)

use kafka_protocol::messages::describe_quorum_response::{PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, BrokerHeartbeatRequest,
    BrokerHeartbeatResponse, BrokerId, BrokerRegistrationRequest, BrokerRegistrationResponse,
    DescribeQuorumRequest, DescribeQuorumResponse, ProducerId, TopicName, UnregisterBrokerRequest,
    UnregisterBrokerResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::lifecycle::{Heartbeat, Registration};
use super::QuorumController;
use crate::config::BrokerConfig;
use crate::metadata::channel::ControllerApi;
use crate::producer_ids::PRODUCER_ID_BLOCK_SIZE;

/// The versions nodes send each other (both ends are this binary).
pub const BROKER_REGISTRATION_VERSION: i16 = 4;
pub const BROKER_HEARTBEAT_VERSION: i16 = 1;
pub const UNREGISTER_BROKER_VERSION: i16 = 0;
pub const ALLOCATE_PRODUCER_IDS_VERSION: i16 = 0;

const NOT_CONTROLLER: i16 = 41;

fn text(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

impl ControllerApi for BrokerRegistrationRequest {
    async fn serve(
        ctl: &QuorumController,
        _cfg: &BrokerConfig,
        req: Self,
        _version: i16,
    ) -> BrokerRegistrationResponse {
        // The client listener is the first listener that is not the controller's.
        let (host, port) = req
            .listeners
            .first()
            .map_or((String::new(), 0), |l| (l.host.to_string(), l.port));
        let reg = Registration {
            broker_id: req.broker_id.0,
            cluster_id: req.cluster_id.to_string(),
            incarnation_id: req.incarnation_id,
            host,
            port,
            rack: req.rack.map(|r| r.to_string()),
        };
        match ctl.register_broker(reg).await {
            Ok(epoch) => BrokerRegistrationResponse::default().with_broker_epoch(epoch),
            Err(e) => {
                tracing::warn!(broker = req.broker_id.0, error = %e.message, "registration refused");
                BrokerRegistrationResponse::default()
                    .with_error_code(e.code.code())
                    .with_broker_epoch(-1)
            }
        }
    }

    fn not_controller(resp: &BrokerRegistrationResponse) -> bool {
        resp.error_code == NOT_CONTROLLER
    }
}

impl ControllerApi for BrokerHeartbeatRequest {
    async fn serve(
        ctl: &QuorumController,
        _cfg: &BrokerConfig,
        req: Self,
        _version: i16,
    ) -> BrokerHeartbeatResponse {
        let hb = Heartbeat {
            broker_id: req.broker_id.0,
            broker_epoch: req.broker_epoch,
            metadata_offset: req.current_metadata_offset,
            want_fence: req.want_fence,
            want_shut_down: req.want_shut_down,
        };
        match ctl.heartbeat(hb).await {
            Ok(a) => BrokerHeartbeatResponse::default()
                .with_is_caught_up(a.is_caught_up)
                .with_is_fenced(a.is_fenced)
                .with_should_shut_down(a.should_shut_down),
            Err(e) => BrokerHeartbeatResponse::default()
                .with_error_code(e.code.code())
                .with_is_fenced(true),
        }
    }

    fn not_controller(resp: &BrokerHeartbeatResponse) -> bool {
        resp.error_code == NOT_CONTROLLER
    }
}

impl ControllerApi for UnregisterBrokerRequest {
    async fn serve(
        ctl: &QuorumController,
        _cfg: &BrokerConfig,
        req: Self,
        _version: i16,
    ) -> UnregisterBrokerResponse {
        match ctl.unregister_broker(req.broker_id.0).await {
            Ok(()) => UnregisterBrokerResponse::default(),
            Err(e) => UnregisterBrokerResponse::default()
                .with_error_code(e.code.code())
                .with_error_message(Some(text(e.message))),
        }
    }

    fn not_controller(resp: &UnregisterBrokerResponse) -> bool {
        resp.error_code == NOT_CONTROLLER
    }
}

impl ControllerApi for AllocateProducerIdsRequest {
    async fn serve(
        ctl: &QuorumController,
        _cfg: &BrokerConfig,
        req: Self,
        _version: i16,
    ) -> AllocateProducerIdsResponse {
        match ctl
            .allocate_producer_ids(req.broker_id.0, PRODUCER_ID_BLOCK_SIZE)
            .await
        {
            Ok(range) => AllocateProducerIdsResponse::default()
                .with_producer_id_start(ProducerId(range.start))
                .with_producer_id_len(i32::try_from(range.end - range.start).unwrap_or(0)),
            Err(e) => AllocateProducerIdsResponse::default().with_error_code(e.code.code()),
        }
    }

    fn not_controller(resp: &AllocateProducerIdsResponse) -> bool {
        resp.error_code == NOT_CONTROLLER
    }
}

impl ControllerApi for DescribeQuorumRequest {
    async fn serve(
        ctl: &QuorumController,
        _cfg: &BrokerConfig,
        _req: Self,
        _version: i16,
    ) -> DescribeQuorumResponse {
        describe_quorum(ctl)
    }

    fn not_controller(resp: &DescribeQuorumResponse) -> bool {
        resp.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.error_code == NOT_CONTROLLER)
    }
}

/// DescribeQuorum of `__cluster_metadata-0`, answered by the active controller: each voter's
/// log end and when it was last caught up; brokers, which follow by fetching,
/// are not listed yet. Elsewhere: NOT_CONTROLLER.
pub fn describe_quorum(ctl: &QuorumController) -> DescribeQuorumResponse {
    let q = ctl.quorum();
    let mut part = PartitionData::default().with_partition_index(0);
    match q.voter_states().filter(|_| ctl.is_active()) {
        Some(voters) => {
            let now = crate::broker::now_ms();
            let state = |id: i32, end: i64, ago: i64| {
                let at = if ago < 0 { -1 } else { now - ago };
                ReplicaState::default()
                    .with_replica_id(BrokerId(id))
                    .with_log_end_offset(end)
                    .with_last_fetch_timestamp(at)
                    .with_last_caught_up_timestamp(at)
            };
            part = part
                .with_leader_id(BrokerId(ctl.leader().unwrap_or(-1)))
                .with_leader_epoch(i32::try_from(q.term()).unwrap_or(i32::MAX))
                .with_high_watermark(ctl.image().applied_index as i64 + 1)
                .with_current_voters(
                    voters
                        .iter()
                        .map(|v| state(v.node_id, v.log_end + 1, v.last_caught_up_ms))
                        .collect(),
                );
        }
        None => {
            // NOT_CONTROLLER: the channel of a forwarding broker moves on to the next voter.
            part = part
                .with_error_code(NOT_CONTROLLER)
                .with_error_message(Some(text("this node is not the active controller")))
                .with_leader_id(BrokerId(ctl.leader().unwrap_or(-1)));
        }
    }
    DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(text(crate::replica::METADATA_TOPIC)))
        .with_partitions(vec![part])])
}

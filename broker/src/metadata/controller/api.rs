//! The broker-lifecycle Kafka APIs as the active controller serves them: BrokerRegistration,
//! BrokerHeartbeat, UnregisterBroker, AllocateProducerIds and DescribeQuorum. (The admin APIs
//! a broker forwards are served by the same handlers as on the broker, in `crate::api`.)

use kafka_protocol::messages::alter_partition_response;
use kafka_protocol::messages::describe_quorum_response::{PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, AlterPartitionRequest,
    AlterPartitionResponse, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerId,
    BrokerRegistrationRequest, BrokerRegistrationResponse, DescribeQuorumRequest,
    DescribeQuorumResponse, ProducerId, TopicName, UnregisterBrokerRequest,
    UnregisterBrokerResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::lifecycle::{Heartbeat, Registration};
use super::partition_change::IsrProposal;
use super::QuorumController;
use crate::config::BrokerConfig;
use crate::metadata::channel::ControllerApi;
use crate::producer_ids::PRODUCER_ID_BLOCK_SIZE;

/// The versions nodes send each other (both ends are this binary).
pub const BROKER_REGISTRATION_VERSION: i16 = 4;
pub const BROKER_HEARTBEAT_VERSION: i16 = 1;
pub const UNREGISTER_BROKER_VERSION: i16 = 0;
pub const ALLOCATE_PRODUCER_IDS_VERSION: i16 = 0;
pub const ALTER_PARTITION_VERSION: i16 = 3;

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
            Ok(()) => UnregisterBrokerResponse::default().with_error_message(None),
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

impl ControllerApi for AlterPartitionRequest {
    async fn serve(
        ctl: &QuorumController,
        _cfg: &BrokerConfig,
        req: Self,
        version: i16,
    ) -> AlterPartitionResponse {
        let proposals: Vec<IsrProposal> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| IsrProposal {
                    topic_id: t.topic_id,
                    partition: p.partition_index,
                    leader: req.broker_id.0,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    new_isr: if version >= 3 {
                        p.new_isr_with_epochs
                            .iter()
                            .map(|b| b.broker_id.0)
                            .collect()
                    } else {
                        p.new_isr.iter().map(|b| b.0).collect()
                    },
                })
            })
            .collect();
        let results = match ctl
            .alter_partition(req.broker_id.0, req.broker_epoch, proposals.clone())
            .await
        {
            Ok(r) => r,
            Err(e) => return AlterPartitionResponse::default().with_error_code(e.code.code()),
        };
        let mut topics: Vec<alter_partition_response::TopicData> = Vec::new();
        for (p, r) in proposals.iter().zip(results) {
            let part = alter_partition_response::PartitionData::default()
                .with_partition_index(p.partition);
            let part = match r {
                Ok(next) => part
                    .with_leader_id(BrokerId(next.leader))
                    .with_leader_epoch(next.leader_epoch)
                    .with_isr(next.isr.iter().copied().map(BrokerId).collect())
                    .with_partition_epoch(next.partition_epoch),
                Err(code) => part.with_error_code(code.code()),
            };
            match topics.iter_mut().find(|t| t.topic_id == p.topic_id) {
                Some(t) => t.partitions.push(part),
                None => topics.push(
                    alter_partition_response::TopicData::default()
                        .with_topic_id(p.topic_id)
                        .with_partitions(vec![part]),
                ),
            }
        }
        AlterPartitionResponse::default().with_topics(topics)
    }

    fn not_controller(resp: &AlterPartitionResponse) -> bool {
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

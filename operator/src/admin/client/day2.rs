//! The day-2 actions over the Kafka protocol: reassignments (AlterPartitionReassignments),
//! replication throttles and cordoning (IncrementalAlterConfigs, the same config writes as the
//! `tributary` CLI and Kafka's own tools), preferred leader election (ElectLeaders),
//! unregistering (UnregisterBroker) and the controller quorum (DescribeQuorum). Every request
//! goes to the bootstrap broker, which forwards it to the active controller.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, DescribeQuorumRequest, ElectLeadersRequest,
    UnregisterBrokerRequest,
};
use kafka_protocol::protocol::Request;

use super::configs::ConfigResource;
use super::{kafka_error, refused, topic_name, KafkaAdminClient};
use crate::admin::{
    codes, throttle, throttled_replicas, AdminError, ConfigChange, ConfigSource, Failure,
    QuorumInfo, TopicPartition, VoterInfo, CORDONED_LOG_DIRS, REQUEST_TIMEOUT,
};
use crate::day2::NodeId;
use tributary_planner::Move;

const ALTER_REASSIGNMENTS: (&str, i16, i16, i16) = (
    "AlterPartitionReassignments",
    AlterPartitionReassignmentsRequest::KEY,
    0,
    1,
);
const ELECT_LEADERS: (&str, i16, i16, i16) = ("ElectLeaders", ElectLeadersRequest::KEY, 0, 2);
const UNREGISTER_BROKER: (&str, i16, i16, i16) =
    ("UnregisterBroker", UnregisterBrokerRequest::KEY, 0, 0);
const DESCRIBE_QUORUM: (&str, i16, i16, i16) = ("DescribeQuorum", DescribeQuorumRequest::KEY, 0, 2);
/// KRaft's metadata log, the one partition DescribeQuorum describes.
const METADATA_TOPIC: &str = "__cluster_metadata";
/// ElectLeaders' election type for a preferred election.
const PREFERRED: i8 = 0;

/// A reassignment to submit: topic, partition, target replicas (`None`: cancel).
type Target = (String, i32, Option<Vec<NodeId>>);

impl KafkaAdminClient {
    /// Starts (target `Some`) or cancels (`None`) reassignments. A cancel of a partition that
    /// is not moving is not a failure.
    pub(super) async fn alter_reassignments(&self, targets: Vec<Target>) -> Result<(), AdminError> {
        let v = self.version(ALTER_REASSIGNMENTS)?;
        let mut topics: BTreeMap<String, Vec<ReassignablePartition>> = BTreeMap::new();
        for (topic, partition, target) in &targets {
            let replicas = target
                .as_ref()
                .map(|r| r.iter().copied().map(BrokerId).collect());
            topics.entry(topic.clone()).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(*partition)
                    .with_replicas(replicas),
            );
        }
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(REQUEST_TIMEOUT.as_millis() as i32)
            // The planner keeps each partition's replication factor; a goal that changes it
            // says so in its moves.
            .with_allow_replication_factor_change(true)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        ReassignableTopic::default()
                            .with_name(topic_name(&t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let resp = self.round_trip(ALTER_REASSIGNMENTS.0, &req, v).await?;
        if resp.error_code != 0 {
            return Err(kafka_error(
                ALTER_REASSIGNMENTS.0,
                self.addr(),
                resp.error_code,
                resp.error_message.as_ref(),
            ));
        }
        let cancel = |t: &str, p: i32| {
            targets
                .iter()
                .any(|(tt, pp, target)| tt == t && *pp == p && target.is_none())
        };
        let failures = resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.as_str(), p)))
            .filter(|(t, p)| {
                p.error_code != 0
                    && !(p.error_code == codes::NO_REASSIGNMENT_IN_PROGRESS
                        && cancel(t, p.partition_index))
            })
            .map(|(t, p)| Failure {
                resource: format!("{t}-{}", p.partition_index),
                code: p.error_code,
                message: p.error_message.as_ref().map(ToString::to_string),
            })
            .collect();
        refused(ALTER_REASSIGNMENTS.0, failures)
    }

    /// Sets both rates as cluster-wide broker defaults and each moving topic's replica lists,
    /// in one request.
    pub(super) async fn throttle(&self, rate: u64, moves: &[Move]) -> Result<(), AdminError> {
        let set = |name: &str, value: String| ConfigChange::Set {
            name: name.to_owned(),
            value,
        };
        // An empty list is deleted rather than set to "" (a move that only reorders replicas
        // adds none).
        let list = |name: &str, value: String| {
            if value.is_empty() {
                ConfigChange::Delete {
                    name: name.to_owned(),
                }
            } else {
                set(name, value)
            }
        };
        let mut changes = vec![(
            ConfigResource::broker_defaults(),
            vec![
                set(throttle::LEADER_RATE, rate.to_string()),
                set(throttle::FOLLOWER_RATE, rate.to_string()),
            ],
        )];
        for (topic, (leader, follower)) in throttled_replicas(moves) {
            changes.push((
                ConfigResource::topic(&topic),
                vec![
                    list(throttle::LEADER_REPLICAS, leader),
                    list(throttle::FOLLOWER_REPLICAS, follower),
                ],
            ));
        }
        self.alter_configs(changes).await
    }

    /// Deletes both cluster-wide rates and the replica lists of every topic that has them.
    pub(super) async fn unthrottle(&self) -> Result<(), AdminError> {
        let delete = |name: &str| ConfigChange::Delete {
            name: name.to_owned(),
        };
        let mut changes = vec![(
            ConfigResource::broker_defaults(),
            vec![
                delete(throttle::LEADER_RATE),
                delete(throttle::FOLLOWER_RATE),
            ],
        )];
        let meta = self.metadata(None).await?;
        let topics: Vec<String> = meta
            .topics
            .iter()
            .filter(|t| t.error_code != codes::UNKNOWN_TOPIC_OR_PARTITION)
            .filter_map(|t| Some(t.name.as_ref()?.0.to_string()))
            .collect();
        if !topics.is_empty() {
            let resources = topics.iter().map(|t| ConfigResource::topic(t)).collect();
            let keys = [throttle::LEADER_REPLICAS, throttle::FOLLOWER_REPLICAS];
            let results = self.describe_configs(resources, Some(&keys)).await?;
            for (topic, result) in topics.iter().zip(results) {
                let throttled = match result {
                    Ok(entries) => entries
                        .iter()
                        .any(|e| e.source == ConfigSource::DynamicTopic),
                    Err(e) if e.kafka_code() == Some(codes::UNKNOWN_TOPIC_OR_PARTITION) => false,
                    Err(e) => return Err(e),
                };
                if throttled {
                    changes.push((
                        ConfigResource::topic(topic),
                        keys.iter().map(|k| delete(k)).collect(),
                    ));
                }
            }
        }
        self.alter_configs(changes).await
    }

    /// KIP-1066: sets (`*`, every log dir) or deletes each broker's `cordoned.log.dirs`.
    pub(super) async fn cordon(
        &self,
        brokers: &[NodeId],
        cordoned: bool,
    ) -> Result<(), AdminError> {
        if brokers.is_empty() {
            return Ok(());
        }
        let change = if cordoned {
            ConfigChange::Set {
                name: CORDONED_LOG_DIRS.to_owned(),
                value: "*".to_owned(),
            }
        } else {
            ConfigChange::Delete {
                name: CORDONED_LOG_DIRS.to_owned(),
            }
        };
        let changes = brokers
            .iter()
            .map(|b| (ConfigResource::broker(*b), vec![change.clone()]))
            .collect();
        self.alter_configs(changes).await
    }

    /// Preferred election; `ELECTION_NOT_NEEDED` is success without a change.
    pub(super) async fn elect_preferred(
        &self,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<TopicPartition>, AdminError> {
        let v = self.version(ELECT_LEADERS)?;
        let wanted = partitions.map(|ps| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for tp in ps {
                by_topic.entry(&tp.topic).or_default().push(tp.partition);
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    TopicPartitions::default()
                        .with_topic(topic_name(t))
                        .with_partitions(ps)
                })
                .collect()
        });
        let req = ElectLeadersRequest::default()
            .with_election_type(PREFERRED)
            .with_topic_partitions(wanted)
            .with_timeout_ms(REQUEST_TIMEOUT.as_millis() as i32);
        let resp = self.round_trip(ELECT_LEADERS.0, &req, v).await?;
        if resp.error_code != 0 {
            return Err(kafka_error(
                ELECT_LEADERS.0,
                self.addr(),
                resp.error_code,
                None,
            ));
        }
        let mut elected = Vec::new();
        let mut failures = Vec::new();
        for t in &resp.replica_election_results {
            for p in &t.partition_result {
                let tp = TopicPartition {
                    topic: t.topic.0.to_string(),
                    partition: p.partition_id,
                };
                match p.error_code {
                    0 => elected.push(tp),
                    codes::ELECTION_NOT_NEEDED => {}
                    code => failures.push(Failure {
                        resource: tp.to_string(),
                        code,
                        message: p.error_message.as_ref().map(ToString::to_string),
                    }),
                }
            }
        }
        refused(ELECT_LEADERS.0, failures)?;
        elected.sort();
        Ok(elected)
    }

    pub(super) async fn unregister(&self, id: NodeId) -> Result<(), AdminError> {
        let v = self.version(UNREGISTER_BROKER)?;
        let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(id));
        let resp = self.round_trip(UNREGISTER_BROKER.0, &req, v).await?;
        if resp.error_code != 0 {
            return Err(kafka_error(
                UNREGISTER_BROKER.0,
                &format!("broker {id}"),
                resp.error_code,
                resp.error_message.as_ref(),
            ));
        }
        Ok(())
    }

    pub(super) async fn quorum(&self) -> Result<QuorumInfo, AdminError> {
        let v = self.version(DESCRIBE_QUORUM)?;
        let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(topic_name(METADATA_TOPIC))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
        let resp = self.round_trip(DESCRIBE_QUORUM.0, &req, v).await?;
        if resp.error_code != 0 {
            return Err(kafka_error(
                DESCRIBE_QUORUM.0,
                METADATA_TOPIC,
                resp.error_code,
                resp.error_message.as_ref(),
            ));
        }
        let p = resp
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == 0)
            .ok_or_else(|| super::missing(DESCRIBE_QUORUM.0, METADATA_TOPIC))?;
        if p.error_code != 0 {
            return Err(kafka_error(
                DESCRIBE_QUORUM.0,
                METADATA_TOPIC,
                p.error_code,
                p.error_message.as_ref(),
            ));
        }
        let mut voters: Vec<VoterInfo> = p
            .current_voters
            .iter()
            .map(|r| VoterInfo {
                id: r.replica_id.0,
                log_end_offset: r.log_end_offset,
                // v0 has no timestamps (-1 on the wire), as has a voter never caught up.
                last_caught_up_ms: (r.last_caught_up_timestamp >= 0)
                    .then_some(r.last_caught_up_timestamp),
            })
            .collect();
        voters.sort_by_key(|v| v.id);
        Ok(QuorumInfo {
            leader_id: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
            leader_epoch: p.leader_epoch,
            high_watermark: p.high_watermark,
            voters,
        })
    }
}

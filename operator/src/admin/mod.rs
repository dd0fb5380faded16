//! The operator's view of a running Kafka cluster: a small admin trait (`KafkaAdmin`) with the
//! operations the reconcilers need (topics and their config; for day-2 operations the cluster's
//! brokers, partitions and controller quorum, reassignments, replication throttles, cordoning,
//! leader election and unregistering), its errors and their classification. The real
//! implementation over the Kafka protocol is `client`; `fake` is an in-memory stand-in for tests.
//! Nothing here decides *what* to do; that is `topic::plan`, `cluster::status` and `day2`.

pub mod client;
pub mod fake;
pub mod fake_partitions;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use thiserror::Error;
use tributary_planner::Move;

use crate::day2::{NodeId, ObservedKafka};

/// Kafka error codes the operator reacts to by name.
pub mod codes {
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_CONFIG: i16 = 40;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const INVALID_REQUEST: i16 = 42;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const REASSIGNMENT_IN_PROGRESS: i16 = 60;
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
    pub const BROKER_ID_NOT_REGISTERED: i16 = 102;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
}

/// How long one admin request may take before it counts as a (transient) failure.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Failures talking to the cluster.
#[derive(Debug, Error)]
pub enum AdminError {
    #[error("failed to connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("i/o with {addr} failed during {api}")]
    Io {
        addr: String,
        api: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{api} to {addr} timed out")]
    Timeout { addr: String, api: &'static str },
    #[error("failed to encode or decode {api}: {message}")]
    Codec { api: &'static str, message: String },
    #[error("broker does not support {api} (our versions {min}..={max})")]
    Unsupported {
        api: &'static str,
        min: i16,
        max: i16,
    },
    #[error("{api} for {resource:?} failed with Kafka error {code}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        api: &'static str,
        resource: String,
        code: i16,
        message: Option<String>,
    },
    #[error("{api} refused {}: {}", failures.len(), failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused {
        api: &'static str,
        /// Every resource (`topic-partition`, broker) the cluster refused, with its error.
        failures: Vec<Failure>,
    },
}

/// One resource of a multi-resource request that the cluster refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub resource: String,
    pub code: i16,
    pub message: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (Kafka error {}", self.resource, self.code)?;
        match &self.message {
            Some(m) if !m.is_empty() => write!(f, ": {m})"),
            _ => write!(f, ")"),
        }
    }
}

/// Whether a Kafka error code says the request itself is wrong (retrying it cannot succeed).
fn permanent_code(code: i16) -> bool {
    matches!(
        code,
        codes::INVALID_TOPIC_EXCEPTION
            | codes::INVALID_PARTITIONS
            | codes::INVALID_REPLICATION_FACTOR
            | codes::INVALID_REPLICA_ASSIGNMENT
            | codes::INVALID_CONFIG
            | codes::INVALID_REQUEST
            | codes::POLICY_VIOLATION
    )
}

impl AdminError {
    /// Whether retrying the same request later can succeed. Invalid requests (bad config,
    /// impossible replication factor, policy) are permanent; network trouble and cluster
    /// transitions are not.
    pub fn is_transient(&self) -> bool {
        match self {
            AdminError::Connect { .. } | AdminError::Io { .. } | AdminError::Timeout { .. } => true,
            AdminError::Codec { .. } | AdminError::Unsupported { .. } => false,
            AdminError::Kafka { code, .. } => !permanent_code(*code),
            AdminError::Refused { failures, .. } => {
                !failures.iter().any(|f| permanent_code(f.code))
            }
        }
    }

    /// The Kafka error code, when the cluster answered with one (the first refusal's, for a
    /// request refused resource by resource).
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            AdminError::Kafka { code, .. } => Some(*code),
            AdminError::Refused { failures, .. } => failures.first().map(|f| f.code),
            _ => None,
        }
    }
}

/// Brokers the cluster reports (registered and unfenced) and its active controller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterInfo {
    pub broker_ids: Vec<i32>,
    pub controller_id: Option<i32>,
}

/// A topic as the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// Topic id as a UUID string (absent when the broker does not report ids).
    pub id: Option<String>,
    pub partitions: i32,
    /// Replicas of partition 0.
    pub replication_factor: i32,
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub config: BTreeMap<String, String>,
}

/// Where a config value comes from: DescribeConfigs' `config_source` (v1+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// A topic-level override (`DYNAMIC_TOPIC_CONFIG`, 1): the only kind the operator manages.
    DynamicTopic,
    /// A dynamic per-broker value (2).
    DynamicBroker,
    /// A dynamic cluster-wide broker default (3).
    DynamicDefaultBroker,
    /// The broker's static configuration file (4).
    StaticBroker,
    /// Kafka's built-in default (5).
    Default,
    /// Any other code (6 = dynamic broker logger, 0 = unknown, or future ones).
    Other(i8),
}

impl ConfigSource {
    /// Maps a wire `config_source` code.
    pub fn from_code(code: i8) -> Self {
        match code {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }
}

/// One entry of a topic's effective configuration (DescribeConfigs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for sensitive values the broker does not reveal.
    pub value: Option<String>,
    pub source: ConfigSource,
}

/// The topic-level overrides among a topic's effective config: only `DYNAMIC_TOPIC_CONFIG`
/// entries count (values inherited from the broker or Kafka's defaults are not overrides, even
/// when equal to a spec value). Entries without a value are skipped: they cannot be compared.
pub fn topic_overrides(entries: &[ConfigEntry]) -> BTreeMap<String, String> {
    entries
        .iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic)
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect()
}

/// One incremental config change (IncrementalAlterConfigs `SET` / `DELETE`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConfigChange {
    Set { name: String, value: String },
    Delete { name: String },
}

/// A partition by name and index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The inverse of `Display`: `topic-partition` (a topic name may itself contain `-`).
impl std::str::FromStr for TopicPartition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parsed = s.rsplit_once('-').and_then(|(topic, p)| {
            Some(TopicPartition {
                topic: topic.to_owned(),
                partition: p.parse().ok()?,
            })
        });
        parsed.ok_or_else(|| format!("{s:?} is not topic-partition"))
    }
}

/// The controller quorum (KRaft's `__cluster_metadata`) as its leader reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuorumInfo {
    /// The active controller (the Raft leader).
    pub leader_id: Option<NodeId>,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<VoterInfo>,
}

/// One voter of the controller quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterInfo {
    pub id: NodeId,
    /// End of this voter's copy of the metadata log, as the leader last saw it.
    pub log_end_offset: i64,
    /// When the voter was last caught up with the leader (ms since the epoch), if ever.
    pub last_caught_up_ms: Option<i64>,
}

impl QuorumInfo {
    /// How many metadata records voter `id` is behind the leader (`None` if it is not a
    /// voter or the quorum has no leader).
    pub fn lag(&self, id: NodeId) -> Option<i64> {
        let leader = self.leader_id?;
        let end = |v: NodeId| {
            self.voters
                .iter()
                .find(|x| x.id == v)
                .map(|x| x.log_end_offset)
        };
        Some((end(leader)? - end(id)?).max(0))
    }

    /// Every voter's lag (`lag`), when the quorum has a leader.
    pub fn lags(&self) -> BTreeMap<NodeId, i64> {
        self.voters
            .iter()
            .filter_map(|v| Some((v.id, self.lag(v.id)?)))
            .collect()
    }
}

/// The broker configs that throttle replication (Kafka's names): the rates are dynamic broker
/// configs set as cluster-wide defaults, the replica lists topic configs.
pub mod throttle {
    pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
    pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
    pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
    pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";
}

/// KIP-1066: the dynamic broker config that cordons a broker's log directories (`*`: all).
pub const CORDONED_LOG_DIRS: &str = "cordoned.log.dirs";
/// The topic config the restart gates need.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// The throttled-replica lists `moves` need, per topic (`partition:broker`, comma-separated):
/// leader side, every current replica of a moving partition (any of them may lead while it
/// moves); follower side, the replicas being added. What `kafka-reassign-partitions.sh` and the
/// `tributary` CLI set.
pub fn throttled_replicas(moves: &[Move]) -> BTreeMap<String, (String, String)> {
    let mut lists: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for m in moves {
        let e = lists.entry(m.topic.clone()).or_default();
        e.0.extend(m.current.iter().map(|b| format!("{}:{b}", m.partition)));
        e.1.extend(m.added().iter().map(|b| format!("{}:{b}", m.partition)));
    }
    lists
        .into_iter()
        .map(|(t, (l, f))| (t, (l.join(","), f.join(","))))
        .collect()
}

/// The admin operations the reconcilers use. Every call is one request/response round trip; a
/// call that returns `Ok` has been accepted by the cluster's controller.
pub trait KafkaAdmin: Send + Sync {
    /// Registered brokers and the active controller, from the cluster's registration view
    /// (DescribeCluster; Metadata when the broker does not serve DescribeCluster).
    fn describe_cluster(&self) -> BoxFuture<'_, Result<ClusterInfo, AdminError>>;
    /// The topic, or `None` when the cluster does not have it (Metadata).
    fn describe_topic<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<TopicInfo>, AdminError>>;
    /// Creates the topic; returns its id when the broker reports one (CreateTopics).
    fn create_topic<'a>(
        &'a self,
        topic: &'a NewTopic,
    ) -> BoxFuture<'a, Result<Option<String>, AdminError>>;
    /// Raises the partition count to `total` (CreatePartitions).
    fn create_partitions<'a>(
        &'a self,
        name: &'a str,
        total: i32,
    ) -> BoxFuture<'a, Result<(), AdminError>>;
    /// The topic's effective configuration with each value's source (DescribeConfigs v1+).
    /// A missing topic is a Kafka error `UNKNOWN_TOPIC_OR_PARTITION`.
    fn describe_topic_config<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ConfigEntry>, AdminError>>;
    /// Applies config changes to a topic (IncrementalAlterConfigs).
    fn alter_topic_config<'a>(
        &'a self,
        name: &'a str,
        changes: &'a [ConfigChange],
    ) -> BoxFuture<'a, Result<(), AdminError>>;
    /// Deletes the topic; `Ok` also when it did not exist (DeleteTopics).
    fn delete_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), AdminError>>;

    // Day-2 operations.

    /// The cluster as the day-2 planner needs it: every registered broker (fenced ones
    /// included) with rack and cordon state, the active controller, every partition with
    /// replicas, ISR, leader and the reassignment in progress, replica sizes and bytes per
    /// broker, and each topic's `min.insync.replicas` in effect. Asks every unfenced broker
    /// for its own log directory and cordon state; fails if one of them does not answer.
    fn observe(&self) -> BoxFuture<'_, Result<ObservedKafka, AdminError>>;
    /// Starts KIP-455 reassignments to the moves' targets (AlterPartitionReassignments). A
    /// partition the cluster refuses makes the call fail naming every refused partition; the
    /// others were accepted.
    fn reassign<'a>(&'a self, moves: &'a [Move]) -> BoxFuture<'a, Result<(), AdminError>>;
    /// Cancels the reassignments of these partitions (they keep their original replicas); a
    /// partition that is not moving is not an error.
    fn cancel_reassignments<'a>(
        &'a self,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, Result<(), AdminError>>;
    /// Throttles the replication of `moves` to `bytes_per_second`: both rates as cluster-wide
    /// broker defaults, and each moving topic's throttled-replica lists (set to these moves'
    /// replicas, replacing earlier lists).
    fn set_replication_throttle<'a>(
        &'a self,
        bytes_per_second: u64,
        moves: &'a [Move],
    ) -> BoxFuture<'a, Result<(), AdminError>>;
    /// Removes the throttle: both cluster-wide rates, and the throttled-replica lists of every
    /// topic that has them.
    fn clear_replication_throttle(&self) -> BoxFuture<'_, Result<(), AdminError>>;
    /// The dynamic cluster-wide broker defaults (DescribeConfigs of the broker resource "").
    fn describe_broker_defaults(&self) -> BoxFuture<'_, Result<Vec<ConfigEntry>, AdminError>>;
    /// Changes the dynamic cluster-wide broker defaults (IncrementalAlterConfigs of the broker
    /// resource ""): every broker applies them without a restart.
    fn alter_broker_defaults<'a>(
        &'a self,
        changes: &'a [ConfigChange],
    ) -> BoxFuture<'a, Result<(), AdminError>>;
    /// Cordons (KIP-1066: no new replicas are placed on them; theirs keep serving) or
    /// uncordons these brokers.
    fn set_cordon<'a>(
        &'a self,
        brokers: &'a [NodeId],
        cordoned: bool,
    ) -> BoxFuture<'a, Result<(), AdminError>>;
    /// Moves leadership back to the first replica (preferred election) of these partitions,
    /// or of every partition with `None`. Returns the partitions whose leader changed; one
    /// already led by its preferred replica is not an error, any other refusal is.
    fn elect_preferred_leaders<'a>(
        &'a self,
        partitions: Option<&'a [TopicPartition]>,
    ) -> BoxFuture<'a, Result<Vec<TopicPartition>, AdminError>>;
    /// Removes a broker's registration (UnregisterBroker). The controller refuses while the
    /// broker still holds replicas.
    fn unregister_broker(&self, id: NodeId) -> BoxFuture<'_, Result<(), AdminError>>;
    /// The controller quorum: leader, voters and how far each is behind (DescribeQuorum).
    fn describe_quorum(&self) -> BoxFuture<'_, Result<QuorumInfo, AdminError>>;
}

/// Opens admin sessions to a cluster by bootstrap address.
pub trait AdminConnector: Send + Sync {
    /// Connects to `bootstrap` (`host:port`).
    fn connect<'a>(
        &'a self,
        bootstrap: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn KafkaAdmin>, AdminError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_name_parses_back_even_with_dashes_in_the_topic() {
        let tp = TopicPartition {
            topic: "orders-eu-1".into(),
            partition: 12,
        };
        assert_eq!(tp.to_string().parse::<TopicPartition>(), Ok(tp));
        assert!("orders".parse::<TopicPartition>().is_err());
        assert!("orders-x".parse::<TopicPartition>().is_err());
    }

    fn kafka(code: i16) -> AdminError {
        AdminError::Kafka {
            api: "CreateTopics",
            resource: "t".into(),
            code,
            message: Some("nope".into()),
        }
    }

    #[test]
    fn invalid_requests_are_permanent_and_cluster_trouble_is_transient() {
        assert!(!kafka(codes::INVALID_CONFIG).is_transient());
        assert!(!kafka(codes::INVALID_REPLICATION_FACTOR).is_transient());
        assert!(kafka(codes::NOT_CONTROLLER).is_transient());
        assert!(kafka(codes::REQUEST_TIMED_OUT).is_transient());
        let timeout = AdminError::Timeout {
            addr: "a:1".into(),
            api: "Metadata",
        };
        assert!(timeout.is_transient());
        assert_eq!(
            kafka(codes::INVALID_CONFIG).to_string(),
            "CreateTopics for \"t\" failed with Kafka error 40: nope"
        );
    }

    #[test]
    fn only_dynamic_topic_entries_are_overrides() {
        let entry = |name: &str, value: Option<&str>, code: i8| ConfigEntry {
            name: name.into(),
            value: value.map(Into::into),
            source: ConfigSource::from_code(code),
        };
        let entries = [
            entry("retention.ms", Some("60000"), 1),
            entry("segment.bytes", Some("1073741824"), 5),
            entry("cleanup.policy", Some("delete"), 4),
            entry("max.message.bytes", Some("100"), 2),
            entry("secret", None, 1),
        ];
        let overrides = topic_overrides(&entries);
        assert_eq!(
            overrides.into_iter().collect::<Vec<_>>(),
            [("retention.ms".to_owned(), "60000".to_owned())]
        );
        assert_eq!(ConfigSource::from_code(6), ConfigSource::Other(6));
    }

    #[test]
    fn a_refusal_names_every_resource_and_is_permanent_if_one_is() {
        let failure = |resource: &str, code| Failure {
            resource: resource.into(),
            code,
            message: Some("no".into()),
        };
        let err = AdminError::Refused {
            api: "AlterPartitionReassignments",
            failures: vec![
                failure("t-0", codes::REASSIGNMENT_IN_PROGRESS),
                failure("t-1", codes::UNKNOWN_TOPIC_OR_PARTITION),
            ],
        };
        assert_eq!(
            err.to_string(),
            "AlterPartitionReassignments refused 2: t-0 (Kafka error 60: no); t-1 (Kafka error 3: no)"
        );
        assert!(err.is_transient());
        assert_eq!(err.kafka_code(), Some(codes::REASSIGNMENT_IN_PROGRESS));
        let err = AdminError::Refused {
            api: "AlterPartitionReassignments",
            failures: vec![
                failure("t-0", codes::REASSIGNMENT_IN_PROGRESS),
                failure("t-1", codes::INVALID_REPLICA_ASSIGNMENT),
            ],
        };
        assert!(!err.is_transient());
    }

    #[test]
    fn throttled_replicas_are_the_current_ones_leader_side_and_the_added_ones_follower_side() {
        let m = |partition, current: Vec<i32>, target: Vec<i32>| Move {
            topic: "t".into(),
            partition,
            current,
            target,
            size_bytes: 10,
        };
        let lists = throttled_replicas(&[
            m(0, vec![1, 2, 3], vec![4, 2, 3]),
            m(1, vec![2, 3], vec![3, 2]),
        ]);
        assert_eq!(
            lists["t"],
            ("0:1,0:2,0:3,1:2,1:3".to_owned(), "0:4".to_owned())
        );
    }
}

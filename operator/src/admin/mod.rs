//! The operator's view of a running Kafka cluster: a small admin trait (`KafkaAdmin`) with the
//! handful of operations the reconcilers need, its errors and their classification. The real
//! implementation over the Kafka protocol is `client`; `fake` is an in-memory stand-in for tests.
//! Nothing here decides *what* to do; that is `topic::plan` and `cluster::status`.

pub mod client;
pub mod fake;
pub mod fake_partitions;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use thiserror::Error;

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
}

impl AdminError {
    /// Whether retrying the same request later can succeed. Invalid requests (bad config,
    /// impossible replication factor, policy) are permanent; network trouble and cluster
    /// transitions are not.
    pub fn is_transient(&self) -> bool {
        match self {
            AdminError::Connect { .. } | AdminError::Io { .. } | AdminError::Timeout { .. } => true,
            AdminError::Codec { .. } | AdminError::Unsupported { .. } => false,
            AdminError::Kafka { code, .. } => !matches!(
                *code,
                codes::INVALID_TOPIC_EXCEPTION
                    | codes::INVALID_PARTITIONS
                    | codes::INVALID_REPLICATION_FACTOR
                    | codes::INVALID_REPLICA_ASSIGNMENT
                    | codes::INVALID_CONFIG
                    | codes::INVALID_REQUEST
                    | codes::POLICY_VIOLATION
            ),
        }
    }

    /// The Kafka error code, when the cluster answered with one.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            AdminError::Kafka { code, .. } => Some(*code),
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
}

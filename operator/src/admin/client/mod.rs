//! `KafkaAdmin` over the Kafka wire protocol: one TCP connection to a bootstrap broker, versions
//! negotiated with ApiVersions, messages encoded by the `kafka-protocol` crate. Requests are sent
//! one at a time on the connection (a mutex guards it, `conn`), each bounded by `REQUEST_TIMEOUT`.
//! Topic calls are here; `observe` reads the cluster for the day-2 planner and `day2` acts on
//! it. It deliberately has no metadata cache, no retries and no routing beyond the one thing the
//! protocol demands (DescribeLogDirs and a broker's own configs are asked of each broker over a
//! connection of its own): the reconcilers call it a few times per pass and requeue on
//! transient errors.

mod configs;
mod conn;
mod day2;
mod observe;

use std::collections::HashMap;

use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::sync::Mutex;
use tributary_planner::Move;

use super::{
    codes, AdminConnector, AdminError, ClusterInfo, ConfigChange, ConfigEntry, Failure, KafkaAdmin,
    NewTopic, QuorumInfo, TopicInfo, TopicPartition, REQUEST_TIMEOUT,
};
use crate::day2::{NodeId, ObservedKafka};
use configs::ConfigResource;
use conn::Conn;

/// `client.id` sent with every request.
pub const CLIENT_ID: &str = "tributary-operator";
/// Kafka's resource types in DescribeConfigs and IncrementalAlterConfigs.
const RESOURCE_TYPE_TOPIC: i8 = 2;
const RESOURCE_TYPE_BROKER: i8 = 4;

/// Versions this client can speak, per API: (name, key, min, max).
const METADATA: (&str, i16, i16, i16) = ("Metadata", MetadataRequest::KEY, 1, 12);
const CREATE_TOPICS: (&str, i16, i16, i16) = ("CreateTopics", CreateTopicsRequest::KEY, 2, 7);
const CREATE_PARTITIONS: (&str, i16, i16, i16) =
    ("CreatePartitions", CreatePartitionsRequest::KEY, 0, 3);
const ALTER_CONFIGS: (&str, i16, i16, i16) = (
    "IncrementalAlterConfigs",
    IncrementalAlterConfigsRequest::KEY,
    0,
    1,
);
/// v2 can list fenced brokers too (`include_fenced_brokers`).
const DESCRIBE_CLUSTER: (&str, i16, i16, i16) =
    ("DescribeCluster", DescribeClusterRequest::KEY, 0, 2);
/// From v1 on, entries carry `config_source` (v0 only has `is_default`).
const DESCRIBE_CONFIGS: (&str, i16, i16, i16) =
    ("DescribeConfigs", DescribeConfigsRequest::KEY, 1, 4);
const DELETE_TOPICS: (&str, i16, i16, i16) = ("DeleteTopics", DeleteTopicsRequest::KEY, 1, 6);

/// A connected admin client.
pub struct KafkaAdminClient {
    addr: String,
    conn: Mutex<Conn>,
    /// Broker's supported version range per API key.
    versions: HashMap<i16, (i16, i16)>,
}

/// Connects `KafkaAdminClient`s over TCP.
#[derive(Debug, Clone, Default)]
pub struct TcpAdminConnector;

impl AdminConnector for TcpAdminConnector {
    fn connect<'a>(
        &'a self,
        bootstrap: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn KafkaAdmin>, AdminError>> {
        async move {
            let client = KafkaAdminClient::connect(bootstrap).await?;
            Ok(Box::new(client) as Box<dyn KafkaAdmin>)
        }
        .boxed()
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn kafka_error(
    api: &'static str,
    resource: &str,
    code: i16,
    message: Option<&StrBytes>,
) -> AdminError {
    AdminError::Kafka {
        api,
        resource: resource.to_owned(),
        code,
        message: message.map(|m| m.to_string()),
    }
}

impl KafkaAdmin for KafkaAdminClient {
    fn describe_cluster(&self) -> BoxFuture<'_, Result<ClusterInfo, AdminError>> {
        async move {
            // The cluster's registration view (DescribeCluster); Metadata only for brokers that
            // do not serve it.
            let (mut broker_ids, controller) = match self.version(DESCRIBE_CLUSTER) {
                Ok(v) => {
                    let resp = self
                        .round_trip(DESCRIBE_CLUSTER.0, &DescribeClusterRequest::default(), v)
                        .await?;
                    if resp.error_code != 0 {
                        return Err(kafka_error(
                            DESCRIBE_CLUSTER.0,
                            &self.addr,
                            resp.error_code,
                            resp.error_message.as_ref(),
                        ));
                    }
                    let ids: Vec<i32> = resp.brokers.iter().map(|b| b.broker_id.0).collect();
                    (ids, resp.controller_id.0)
                }
                Err(_) => {
                    let resp = self.metadata(Some(Vec::new())).await?;
                    let ids: Vec<i32> = resp.brokers.iter().map(|b| b.node_id.0).collect();
                    (ids, resp.controller_id.0)
                }
            };
            broker_ids.sort_unstable();
            Ok(ClusterInfo {
                broker_ids,
                controller_id: (controller >= 0).then_some(controller),
            })
        }
        .boxed()
    }

    fn describe_topic<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<TopicInfo>, AdminError>> {
        async move {
            let resp = self.metadata(Some(vec![name.to_owned()])).await?;
            let Some(t) = resp
                .topics
                .into_iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
            else {
                return Ok(None);
            };
            match t.error_code {
                0 => {}
                codes::UNKNOWN_TOPIC_OR_PARTITION => return Ok(None),
                code => return Err(kafka_error(METADATA.0, name, code, None)),
            }
            let replication_factor = t
                .partitions
                .iter()
                .find(|p| p.partition_index == 0)
                .map_or(0, |p| p.replica_nodes.len() as i32);
            Ok(Some(TopicInfo {
                name: name.to_owned(),
                id: (!t.topic_id.is_nil()).then(|| t.topic_id.to_string()),
                partitions: t.partitions.len() as i32,
                replication_factor,
            }))
        }
        .boxed()
    }

    fn create_topic<'a>(
        &'a self,
        topic: &'a NewTopic,
    ) -> BoxFuture<'a, Result<Option<String>, AdminError>> {
        async move {
            let v = self.version(CREATE_TOPICS)?;
            let configs = topic
                .config
                .iter()
                .map(|(k, val)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_value(Some(StrBytes::from_string(val.clone())))
                })
                .collect();
            let t = CreatableTopic::default()
                .with_name(topic_name(&topic.name))
                .with_num_partitions(topic.partitions)
                .with_replication_factor(topic.replication_factor)
                .with_configs(configs);
            let req = CreateTopicsRequest::default()
                .with_topics(vec![t])
                .with_timeout_ms(REQUEST_TIMEOUT.as_millis() as i32);
            let resp = self.round_trip(CREATE_TOPICS.0, &req, v).await?;
            let r = resp
                .topics
                .first()
                .ok_or_else(|| missing(CREATE_TOPICS.0, &topic.name))?;
            if r.error_code != 0 {
                return Err(kafka_error(
                    CREATE_TOPICS.0,
                    &topic.name,
                    r.error_code,
                    r.error_message.as_ref(),
                ));
            }
            Ok((!r.topic_id.is_nil()).then(|| r.topic_id.to_string()))
        }
        .boxed()
    }

    fn create_partitions<'a>(
        &'a self,
        name: &'a str,
        total: i32,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        async move {
            let v = self.version(CREATE_PARTITIONS)?;
            let req = CreatePartitionsRequest::default()
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(topic_name(name))
                    .with_count(total)])
                .with_timeout_ms(REQUEST_TIMEOUT.as_millis() as i32);
            let resp = self.round_trip(CREATE_PARTITIONS.0, &req, v).await?;
            let r = resp
                .results
                .first()
                .ok_or_else(|| missing(CREATE_PARTITIONS.0, name))?;
            if r.error_code != 0 {
                return Err(kafka_error(
                    CREATE_PARTITIONS.0,
                    name,
                    r.error_code,
                    r.error_message.as_ref(),
                ));
            }
            Ok(())
        }
        .boxed()
    }

    fn describe_topic_config<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ConfigEntry>, AdminError>> {
        async move {
            let mut results = self
                .describe_configs(vec![ConfigResource::topic(name)], None)
                .await?;
            results
                .pop()
                .ok_or_else(|| missing(DESCRIBE_CONFIGS.0, name))?
        }
        .boxed()
    }

    fn alter_topic_config<'a>(
        &'a self,
        name: &'a str,
        changes: &'a [ConfigChange],
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        async move {
            self.alter_configs(vec![(ConfigResource::topic(name), changes.to_vec())])
                .await
        }
        .boxed()
    }

    fn delete_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), AdminError>> {
        async move {
            let v = self.version(DELETE_TOPICS)?;
            let mut req =
                DeleteTopicsRequest::default().with_timeout_ms(REQUEST_TIMEOUT.as_millis() as i32);
            if v >= 6 {
                req = req.with_topics(vec![
                    DeleteTopicState::default().with_name(Some(topic_name(name)))
                ]);
            } else {
                req = req.with_topic_names(vec![topic_name(name)]);
            }
            let resp = self.round_trip(DELETE_TOPICS.0, &req, v).await?;
            let r = resp
                .responses
                .first()
                .ok_or_else(|| missing(DELETE_TOPICS.0, name))?;
            match r.error_code {
                0 | codes::UNKNOWN_TOPIC_OR_PARTITION => Ok(()),
                code => Err(kafka_error(
                    DELETE_TOPICS.0,
                    name,
                    code,
                    r.error_message.as_ref(),
                )),
            }
        }
        .boxed()
    }

    fn observe(&self) -> BoxFuture<'_, Result<ObservedKafka, AdminError>> {
        self.observe_cluster().boxed()
    }

    fn reassign<'a>(&'a self, moves: &'a [Move]) -> BoxFuture<'a, Result<(), AdminError>> {
        let targets = moves
            .iter()
            .map(|m| (m.topic.clone(), m.partition, Some(m.target.clone())))
            .collect();
        self.alter_reassignments(targets).boxed()
    }

    fn cancel_reassignments<'a>(
        &'a self,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        let targets = partitions
            .iter()
            .map(|tp| (tp.topic.clone(), tp.partition, None))
            .collect();
        self.alter_reassignments(targets).boxed()
    }

    fn set_replication_throttle<'a>(
        &'a self,
        bytes_per_second: u64,
        moves: &'a [Move],
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        self.throttle(bytes_per_second, moves).boxed()
    }

    fn clear_replication_throttle(&self) -> BoxFuture<'_, Result<(), AdminError>> {
        self.unthrottle().boxed()
    }

    fn describe_broker_defaults(&self) -> BoxFuture<'_, Result<Vec<ConfigEntry>, AdminError>> {
        async move {
            let mut results = self
                .describe_configs(vec![ConfigResource::broker_defaults()], None)
                .await?;
            results
                .pop()
                .ok_or_else(|| missing(DESCRIBE_CONFIGS.0, "broker defaults"))?
        }
        .boxed()
    }

    fn alter_broker_defaults<'a>(
        &'a self,
        changes: &'a [ConfigChange],
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        async move {
            self.alter_configs(vec![(ConfigResource::broker_defaults(), changes.to_vec())])
                .await
        }
        .boxed()
    }

    fn set_cordon<'a>(
        &'a self,
        brokers: &'a [NodeId],
        cordoned: bool,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        self.cordon(brokers, cordoned).boxed()
    }

    fn elect_preferred_leaders<'a>(
        &'a self,
        partitions: Option<&'a [TopicPartition]>,
    ) -> BoxFuture<'a, Result<Vec<TopicPartition>, AdminError>> {
        self.elect_preferred(partitions).boxed()
    }

    fn unregister_broker(&self, id: NodeId) -> BoxFuture<'_, Result<(), AdminError>> {
        self.unregister(id).boxed()
    }

    fn describe_quorum(&self) -> BoxFuture<'_, Result<QuorumInfo, AdminError>> {
        self.quorum().boxed()
    }
}

fn missing(api: &'static str, resource: &str) -> AdminError {
    AdminError::Codec {
        api,
        message: format!("response has no result for {resource:?}"),
    }
}

impl KafkaAdminClient {
    async fn metadata(
        &self,
        topics: Option<Vec<String>>,
    ) -> Result<kafka_protocol::messages::MetadataResponse, AdminError> {
        let v = self.version(METADATA)?;
        let topics = topics.map(|names| {
            names
                .into_iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(&n))))
                .collect()
        });
        let req = MetadataRequest::default()
            .with_topics(topics)
            .with_allow_auto_topic_creation(false);
        self.round_trip(METADATA.0, &req, v).await
    }
}

/// `Ok` without failures; one failure as a plain `Kafka` error, several as `Refused`.
fn refused(api: &'static str, mut failures: Vec<Failure>) -> Result<(), AdminError> {
    match failures.len() {
        0 => Ok(()),
        1 => {
            let f = failures.remove(0);
            Err(AdminError::Kafka {
                api,
                resource: f.resource,
                code: f.code,
                message: f.message,
            })
        }
        _ => Err(AdminError::Refused { api, failures }),
    }
}

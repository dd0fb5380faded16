//! `KafkaAdmin` over the Kafka wire protocol: one TCP connection to a bootstrap broker, versions
//! negotiated with ApiVersions, messages encoded by the `kafka-protocol` crate. Requests are sent
//! one at a time on the connection (a mutex guards it), each bounded by `REQUEST_TIMEOUT`.
//! It deliberately has no metadata cache, no retries and no multi-broker routing: the reconcilers
//! call it a few times per pass and requeue on transient errors.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::FutureExt;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest,
    MetadataRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::{
    codes, AdminConnector, AdminError, ClusterInfo, ConfigChange, ConfigEntry, ConfigSource,
    KafkaAdmin, NewTopic, TopicInfo, REQUEST_TIMEOUT,
};

/// `client.id` sent with every request.
pub const CLIENT_ID: &str = "tributary-operator";
/// Largest response we accept (guards against garbage lengths).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Kafka's resource type for topics in (Incremental)AlterConfigs.
const RESOURCE_TYPE_TOPIC: i8 = 2;

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
const DESCRIBE_CLUSTER: (&str, i16, i16, i16) =
    ("DescribeCluster", DescribeClusterRequest::KEY, 0, 1);
/// From v1 on, entries carry `config_source` (v0 only has `is_default`).
const DESCRIBE_CONFIGS: (&str, i16, i16, i16) =
    ("DescribeConfigs", DescribeConfigsRequest::KEY, 1, 4);
const DELETE_TOPICS: (&str, i16, i16, i16) = ("DeleteTopics", DeleteTopicsRequest::KEY, 1, 6);

struct Conn {
    stream: TcpStream,
    next_correlation_id: i32,
}

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

impl KafkaAdminClient {
    /// Connects to `addr` and negotiates API versions.
    pub async fn connect(addr: &str) -> Result<Self, AdminError> {
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| AdminError::Timeout {
                addr: addr.to_owned(),
                api: "connect",
            })?
            .map_err(|source| AdminError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let mut client = KafkaAdminClient {
            addr: addr.to_owned(),
            conn: Mutex::new(Conn {
                stream,
                next_correlation_id: 1,
            }),
            versions: HashMap::new(),
        };
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp = client.round_trip("ApiVersions", &req, 3).await?;
        if resp.error_code != 0 {
            return Err(kafka_error("ApiVersions", addr, resp.error_code, None));
        }
        client.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(client)
    }

    /// The highest version both sides support.
    fn version(&self, api: (&'static str, i16, i16, i16)) -> Result<i16, AdminError> {
        let (name, key, min, max) = api;
        let unsupported = || AdminError::Unsupported {
            api: name,
            min,
            max,
        };
        let (bmin, bmax) = *self.versions.get(&key).ok_or_else(unsupported)?;
        let v = max.min(bmax);
        if v < min.max(bmin) {
            return Err(unsupported());
        }
        Ok(v)
    }

    async fn round_trip<R: Request>(
        &self,
        api: &'static str,
        req: &R,
        version: i16,
    ) -> Result<R::Response, AdminError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.round_trip_inner(api, req, version))
            .await
            .map_err(|_| AdminError::Timeout {
                addr: self.addr.clone(),
                api,
            })?
    }

    async fn round_trip_inner<R: Request>(
        &self,
        api: &'static str,
        req: &R,
        version: i16,
    ) -> Result<R::Response, AdminError> {
        let codec = |e: anyhow::Error| AdminError::Codec {
            api,
            message: e.to_string(),
        };
        let io = |source| AdminError::Io {
            addr: self.addr.clone(),
            api,
            source,
        };
        let mut conn = self.conn.lock().await;
        let correlation_id = conn.next_correlation_id;
        conn.next_correlation_id = correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(codec)?;
        req.encode(&mut buf, version).map_err(codec)?;
        let len = i32::try_from(buf.len() - 4).map_err(|e| codec(e.into()))?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        conn.stream.write_all(&buf).await.map_err(io)?;
        let len = conn.stream.read_i32().await.map_err(io)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_RESPONSE_BYTES)
            .ok_or_else(|| AdminError::Codec {
                api,
                message: format!("response length {len} out of range"),
            })?;
        let mut body = vec![0u8; len];
        conn.stream.read_exact(&mut body).await.map_err(io)?;
        let mut body = Bytes::from(body);
        let resp_header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(codec)?;
        if resp_header.correlation_id != correlation_id {
            return Err(AdminError::Codec {
                api,
                message: format!(
                    "correlation id {} != {correlation_id}",
                    resp_header.correlation_id
                ),
            });
        }
        let resp = R::Response::decode(&mut body, version).map_err(codec)?;
        if body.has_remaining() {
            tracing::debug!(api, extra = body.remaining(), "response had trailing bytes");
        }
        Ok(resp)
    }

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
            let v = self.version(DESCRIBE_CONFIGS)?;
            let req = DescribeConfigsRequest::default()
                .with_resources(vec![DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_TYPE_TOPIC)
                    .with_resource_name(StrBytes::from_string(name.to_owned()))
                    .with_configuration_keys(None)])
                .with_include_synonyms(false);
            let resp = self.round_trip(DESCRIBE_CONFIGS.0, &req, v).await?;
            let r = resp
                .results
                .into_iter()
                .find(|r| {
                    r.resource_type == RESOURCE_TYPE_TOPIC && r.resource_name.as_str() == name
                })
                .ok_or_else(|| missing(DESCRIBE_CONFIGS.0, name))?;
            if r.error_code != 0 {
                return Err(kafka_error(
                    DESCRIBE_CONFIGS.0,
                    name,
                    r.error_code,
                    r.error_message.as_ref(),
                ));
            }
            Ok(r.configs
                .into_iter()
                .map(|c| ConfigEntry {
                    name: c.name.to_string(),
                    value: c.value.map(|v| v.to_string()),
                    source: ConfigSource::from_code(c.config_source),
                })
                .collect())
        }
        .boxed()
    }

    fn alter_topic_config<'a>(
        &'a self,
        name: &'a str,
        changes: &'a [ConfigChange],
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        async move {
            let v = self.version(ALTER_CONFIGS)?;
            let configs = changes
                .iter()
                .map(|c| match c {
                    ConfigChange::Set { name, value } => AlterableConfig::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_string(value.clone()))),
                    ConfigChange::Delete { name } => AlterableConfig::default()
                        .with_name(StrBytes::from_string(name.clone()))
                        .with_config_operation(1),
                })
                .collect();
            let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(RESOURCE_TYPE_TOPIC)
                    .with_resource_name(StrBytes::from_string(name.to_owned()))
                    .with_configs(configs),
            ]);
            let resp = self.round_trip(ALTER_CONFIGS.0, &req, v).await?;
            let r = resp
                .responses
                .first()
                .ok_or_else(|| missing(ALTER_CONFIGS.0, name))?;
            if r.error_code != 0 {
                return Err(kafka_error(
                    ALTER_CONFIGS.0,
                    name,
                    r.error_code,
                    r.error_message.as_ref(),
                ));
            }
            Ok(())
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
}

fn missing(api: &'static str, resource: &str) -> AdminError {
    AdminError::Codec {
        api,
        message: format!("response has no result for {resource:?}"),
    }
}

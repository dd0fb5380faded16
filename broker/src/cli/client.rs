//! The admin CLI's Kafka client: one connection to a bootstrap broker (and one per broker for
//! DescribeLogDirs), requests at fixed versions every Tributary broker serves, encoded by
//! `kafka-protocol` over the same framing as the brokers' own connections (`metadata::rpc`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, DescribeConfigsRequest, DescribeLogDirsRequest,
    IncrementalAlterConfigsRequest, ListPartitionReassignmentsRequest, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::metadata::rpc::Conn;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A broker as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub id: i32,
    pub addr: String,
    pub rack: Option<String>,
}

/// A partition as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
    pub error: i16,
}

/// The cluster as Metadata describes it.
#[derive(Debug, Clone, Default)]
pub struct ClusterMeta {
    pub brokers: Vec<BrokerAddr>,
    pub partitions: Vec<PartitionMeta>,
    pub controller: i32,
}

/// A reassignment in progress: (topic, partition) -> (replicas, adding, removing).
pub type Ongoing = BTreeMap<(String, i32), (Vec<i32>, Vec<i32>, Vec<i32>)>;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn check(code: i16, what: &str, message: Option<&StrBytes>) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    let name =
        ResponseError::try_from_code(code).map_or_else(|| code.to_string(), |e| format!("{e:?}"));
    match message {
        Some(m) if !m.is_empty() => bail!("{what}: {name}: {m}"),
        _ => bail!("{what}: {name}"),
    }
}

/// The client.
pub struct Client {
    conn: Conn,
}

impl Client {
    /// Connects to the first reachable address of `bootstrap` (comma-separated host:port).
    pub async fn connect(bootstrap: &str) -> Result<Client> {
        let mut last = None;
        for addr in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match Conn::connect(addr, Duration::from_secs(5)).await {
                Ok(conn) => return Ok(Client { conn }),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => anyhow!("no bootstrap broker reachable ({bootstrap}): {e}"),
            None => anyhow!("no bootstrap address given"),
        })
    }

    /// Metadata v12 of `topics` (every topic when `None`).
    pub async fn metadata(&mut self, topics: Option<&[String]>) -> Result<ClusterMeta> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        MetadataRequestTopic::default().with_name(Some(TopicName(s(t.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let resp: MetadataResponse = self
            .conn
            .call_kafka(12, &req, TIMEOUT)
            .await
            .context("Metadata")?;
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
        let mut out = ClusterMeta {
            controller: resp.controller_id.0,
            brokers: resp
                .brokers
                .iter()
                .map(|b| BrokerAddr {
                    id: b.node_id.0,
                    addr: format!("{}:{}", b.host, b.port),
                    rack: b.rack.as_ref().map(ToString::to_string),
                })
                .collect(),
            partitions: Vec::new(),
        };
        out.brokers.sort_by_key(|b| b.id);
        for t in &resp.topics {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            if t.error_code != 0 {
                check(t.error_code, &format!("topic {name}"), None)?;
            }
            for p in &t.partitions {
                out.partitions.push(PartitionMeta {
                    topic: name.clone(),
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: ids(&p.replica_nodes),
                    isr: ids(&p.isr_nodes),
                    offline: ids(&p.offline_replicas),
                    error: p.error_code,
                });
            }
        }
        out.partitions
            .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// Each partition's log size on broker `addr` (DescribeLogDirs v4), with the directory's
    /// total and usable bytes.
    pub async fn log_dir(addr: &str) -> Result<(BTreeMap<(String, i32), u64>, i64, i64)> {
        let mut conn = Conn::connect(addr, Duration::from_secs(5))
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let resp = conn
            .call_kafka(
                4,
                &DescribeLogDirsRequest::default().with_topics(None),
                TIMEOUT,
            )
            .await
            .context("DescribeLogDirs")?;
        let mut sizes = BTreeMap::new();
        let (mut total, mut usable) = (0, 0);
        for d in &resp.results {
            check(
                d.error_code,
                &format!("log dir {} on {addr}", d.log_dir),
                None,
            )?;
            total += d.total_bytes;
            usable += d.usable_bytes;
            for t in &d.topics {
                for p in &t.partitions {
                    sizes.insert(
                        (t.name.0.to_string(), p.partition_index),
                        u64::try_from(p.partition_size).unwrap_or(0),
                    );
                }
            }
        }
        Ok((sizes, total, usable))
    }

    /// Whether broker `id` at `addr` is cordoned (KIP-1066: its `cordoned.log.dirs` dynamic
    /// config, or the cluster default, is set), by DescribeConfigs v4 to that broker.
    pub async fn cordoned(addr: &str, id: i32) -> Result<bool> {
        let mut conn = Conn::connect(addr, Duration::from_secs(5))
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(s(id.to_string()))
                .with_configuration_keys(Some(vec![s("cordoned.log.dirs")])),
        ]);
        let resp = conn
            .call_kafka(4, &req, TIMEOUT)
            .await
            .context("DescribeConfigs")?;
        let mut cordoned = false;
        for r in &resp.results {
            check(
                r.error_code,
                &format!("configs of broker {id}"),
                r.error_message.as_ref(),
            )?;
            cordoned |= r.configs.iter().any(|c| {
                c.name.as_str() == "cordoned.log.dirs"
                    && c.value.as_ref().is_some_and(|v| !v.trim().is_empty())
            });
        }
        Ok(cordoned)
    }

    /// Starts (target `Some`) or cancels (`None`) reassignments; fails naming every partition
    /// the cluster refused.
    pub async fn alter_reassignments(
        &mut self,
        targets: &[(String, i32, Option<Vec<i32>>)],
    ) -> Result<()> {
        let mut topics: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for (t, p, target) in targets {
            topics.entry(t).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(*p)
                    .with_replicas(
                        target
                            .as_ref()
                            .map(|r| r.iter().copied().map(BrokerId).collect()),
                    ),
            );
        }
        let req = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        ReassignableTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let resp = self
            .conn
            .call_kafka(0, &req, TIMEOUT)
            .await
            .context("AlterPartitionReassignments")?;
        check(
            resp.error_code,
            "AlterPartitionReassignments",
            resp.error_message.as_ref(),
        )?;
        let refused: Vec<String> = resp
            .responses
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(|p| p.error_code != 0)
                    .map(move |p| {
                        let e = check(
                            p.error_code,
                            &format!("{}-{}", t.name.0, p.partition_index),
                            p.error_message.as_ref(),
                        );
                        e.err().map(|e| e.to_string()).unwrap_or_default()
                    })
            })
            .collect();
        if !refused.is_empty() {
            bail!("refused: {}", refused.join("; "));
        }
        Ok(())
    }

    /// The reassignments in progress.
    pub async fn ongoing(&mut self) -> Result<Ongoing> {
        let req = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(None);
        let resp = self
            .conn
            .call_kafka(0, &req, TIMEOUT)
            .await
            .context("ListPartitionReassignments")?;
        check(
            resp.error_code,
            "ListPartitionReassignments",
            resp.error_message.as_ref(),
        )?;
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
        Ok(resp
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| {
                    (
                        (t.name.0.to_string(), p.partition_index),
                        (
                            ids(&p.replicas),
                            ids(&p.adding_replicas),
                            ids(&p.removing_replicas),
                        ),
                    )
                })
            })
            .collect())
    }

    /// IncrementalAlterConfigs v1: SET (`Some`) or DELETE (`None`) each config of one resource
    /// (type 2 topic, 4 broker; a broker name "" is every broker).
    pub async fn alter_configs(
        &mut self,
        resource_type: i8,
        name: &str,
        configs: &[(&str, Option<String>)],
    ) -> Result<()> {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(s(name))
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            AlterableConfig::default()
                                .with_name(s(*k))
                                .with_config_operation(if v.is_some() { 0 } else { 1 })
                                .with_value(v.clone().map(s))
                        })
                        .collect(),
                ),
        ]);
        let resp = self
            .conn
            .call_kafka(1, &req, TIMEOUT)
            .await
            .context("IncrementalAlterConfigs")?;
        for r in &resp.responses {
            check(
                r.error_code,
                &format!("configs of {:?}", r.resource_name.as_str()),
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }
}

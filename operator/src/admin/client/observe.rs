//! `observe`: the cluster as the day-2 planner sees it, read with one request per question —
//! DescribeCluster v2 (every registered broker, fenced ones too, with rack and address),
//! Metadata (every partition's replicas, ISR, leader), ListPartitionReassignments (what moves),
//! DescribeQuorum (the active controller), DescribeConfigs (each topic's `min.insync.replicas`)
//! — plus, over a connection to each unfenced broker, DescribeLogDirs (the sizes of its
//! replicas) and DescribeConfigs of that broker (its `cordoned.log.dirs`), which only the broker
//! itself answers. Fenced brokers are not asked: they are down or not caught up. An unfenced
//! broker that does not answer within 3 s (hung, unreachable) is listed in `unanswered`
//! rather than failing the observation.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeLogDirsRequest, ListPartitionReassignmentsRequest,
    MetadataResponse,
};
use kafka_protocol::protocol::Request;

use super::configs::ConfigResource;
use super::{kafka_error, KafkaAdminClient, DESCRIBE_CLUSTER};
use crate::admin::{codes, AdminError, CORDONED_LOG_DIRS, MIN_INSYNC_REPLICAS, REQUEST_TIMEOUT};
use crate::day2::{BrokerView, NodeId, ObservedKafka, PartitionView};

pub(super) const LIST_REASSIGNMENTS: (&str, i16, i16, i16) = (
    "ListPartitionReassignments",
    ListPartitionReassignmentsRequest::KEY,
    0,
    0,
);
/// How long one broker has to report its log dirs and cordon state (connect and two requests).
const BROKER_REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// v1+: DescribeLogDirs v0 is gone from Kafka 4 (KIP-896).
const DESCRIBE_LOG_DIRS: (&str, i16, i16, i16) =
    ("DescribeLogDirs", DescribeLogDirsRequest::KEY, 1, 4);

/// A registered broker and where it is reached.
#[derive(Debug, Clone)]
struct Registered {
    id: NodeId,
    addr: String,
    rack: Option<String>,
    fenced: bool,
}

/// What one broker says about itself.
#[derive(Debug, Default)]
struct BrokerReport {
    sizes: BTreeMap<(String, i32), u64>,
    cordoned: bool,
}

/// A reassignment in progress: (topic, partition) -> (adding, removing).
type Ongoing = BTreeMap<(String, i32), (Vec<NodeId>, Vec<NodeId>)>;

fn ids(v: &[BrokerId]) -> Vec<NodeId> {
    v.iter().map(|b| b.0).collect()
}

impl KafkaAdminClient {
    pub(super) async fn observe_cluster(&self) -> Result<ObservedKafka, AdminError> {
        let (registered, cluster_controller) = self.registered_brokers().await?;
        let mut partitions = partitions_of(&self.metadata(None).await?);
        let ongoing = self.ongoing_reassignments().await?;
        for p in &mut partitions {
            if let Some((adding, removing)) = ongoing.get(&(p.topic.clone(), p.partition)) {
                p.adding.clone_from(adding);
                p.removing.clone_from(removing);
            }
        }
        // The Raft leader, not DescribeCluster's "controller for clients" (a broker).
        let (active_controller, quorum_lag) = match self.quorum().await {
            Ok(q) => (q.leader_id, q.lags()),
            Err(AdminError::Unsupported { .. }) => (cluster_controller, BTreeMap::new()),
            Err(e) => return Err(e),
        };
        let topics: BTreeSet<String> = partitions.iter().map(|p| p.topic.clone()).collect();
        let topic_min_insync_replicas = self.min_insync_replicas(&topics).await?;
        // One hung or unreachable broker must not blind the planner to the rest of the
        // cluster: each broker gets BROKER_REPORT_TIMEOUT, and one that does not answer is
        // listed as such (its sizes and cordon state unknown) instead of failing the whole
        // observation.
        let answers = futures::future::join_all(registered.iter().filter(|b| !b.fenced).map(
            |b| async move {
                let report = tokio::time::timeout(BROKER_REPORT_TIMEOUT, broker_report(b)).await;
                (b.id, report)
            },
        ))
        .await;
        let mut reports: BTreeMap<NodeId, BrokerReport> = BTreeMap::new();
        let mut unanswered = BTreeSet::new();
        for (id, answer) in answers {
            let error = match answer {
                Ok(Ok(report)) => {
                    reports.insert(id, report);
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {BROKER_REPORT_TIMEOUT:?}"),
            };
            tracing::warn!(broker = id, %error, "broker did not report its log dirs");
            unanswered.insert(id);
        }
        apply_sizes(&mut partitions, &reports);
        Ok(ObservedKafka {
            brokers: registered
                .iter()
                .map(|b| BrokerView {
                    id: b.id,
                    rack: b.rack.clone(),
                    fenced: b.fenced,
                    cordoned: reports.get(&b.id).is_some_and(|r| r.cordoned),
                })
                .collect(),
            active_controller,
            partitions,
            topic_min_insync_replicas,
            log_dir_bytes: reports
                .iter()
                .map(|(id, r)| (*id, r.sizes.values().sum()))
                .collect(),
            quorum_lag,
            unanswered,
        })
    }

    /// Every registered broker (DescribeCluster v2 with fenced ones; before v2 only the
    /// unfenced ones are listed) and the controller id DescribeCluster gives clients.
    async fn registered_brokers(&self) -> Result<(Vec<Registered>, Option<NodeId>), AdminError> {
        let v = self.version(DESCRIBE_CLUSTER)?;
        let req = DescribeClusterRequest::default().with_include_fenced_brokers(v >= 2);
        let resp = self.round_trip(DESCRIBE_CLUSTER.0, &req, v).await?;
        if resp.error_code != 0 {
            return Err(kafka_error(
                DESCRIBE_CLUSTER.0,
                self.addr(),
                resp.error_code,
                resp.error_message.as_ref(),
            ));
        }
        let mut brokers: Vec<Registered> = resp
            .brokers
            .iter()
            .map(|b| Registered {
                id: b.broker_id.0,
                addr: format!("{}:{}", b.host, b.port),
                rack: b.rack.as_ref().map(ToString::to_string),
                fenced: b.is_fenced,
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        let controller = resp.controller_id.0;
        Ok((brokers, (controller >= 0).then_some(controller)))
    }

    /// The reassignments in progress (ListPartitionReassignments, every topic).
    async fn ongoing_reassignments(&self) -> Result<Ongoing, AdminError> {
        let v = self.version(LIST_REASSIGNMENTS)?;
        let req = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(REQUEST_TIMEOUT.as_millis() as i32)
            .with_topics(None);
        let resp = self.round_trip(LIST_REASSIGNMENTS.0, &req, v).await?;
        if resp.error_code != 0 {
            return Err(kafka_error(
                LIST_REASSIGNMENTS.0,
                self.addr(),
                resp.error_code,
                resp.error_message.as_ref(),
            ));
        }
        Ok(resp
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        (t.name.0.to_string(), p.partition_index),
                        (ids(&p.adding_replicas), ids(&p.removing_replicas)),
                    )
                })
            })
            .collect())
    }

    /// Each topic's `min.insync.replicas` in effect (an override, or the broker default the
    /// answering broker applies): what its leaders enforce on acks=all produce. A topic
    /// deleted meanwhile is left out.
    async fn min_insync_replicas(
        &self,
        topics: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, usize>, AdminError> {
        if topics.is_empty() {
            return Ok(BTreeMap::new());
        }
        let resources = topics.iter().map(|t| ConfigResource::topic(t)).collect();
        let results = self
            .describe_configs(resources, Some(&[MIN_INSYNC_REPLICAS]))
            .await?;
        let mut out = BTreeMap::new();
        for (topic, result) in topics.iter().zip(results) {
            let entries = match result {
                Ok(entries) => entries,
                Err(e) if e.kafka_code() == Some(codes::UNKNOWN_TOPIC_OR_PARTITION) => continue,
                Err(e) => return Err(e),
            };
            let value = entries
                .iter()
                .find(|e| e.name == MIN_INSYNC_REPLICAS)
                .and_then(|e| e.value.as_deref()?.parse::<usize>().ok());
            if let Some(min) = value {
                out.insert(topic.clone(), min);
            }
        }
        Ok(out)
    }
}

/// Every partition Metadata lists, in topic and partition order.
fn partitions_of(meta: &MetadataResponse) -> Vec<PartitionView> {
    let mut out: Vec<PartitionView> = meta
        .topics
        .iter()
        .filter(|t| t.error_code != codes::UNKNOWN_TOPIC_OR_PARTITION)
        .filter_map(|t| Some((t.name.as_ref()?.0.to_string(), t)))
        .flat_map(|(name, t)| {
            t.partitions.iter().map(move |p| PartitionView {
                topic: name.clone(),
                partition: p.partition_index,
                replicas: ids(&p.replica_nodes),
                isr: ids(&p.isr_nodes),
                leader: (p.leader_id.0 >= 0).then_some(p.leader_id.0),
                adding: Vec::new(),
                removing: Vec::new(),
                size_bytes: 0,
                adding_bytes: 0,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    out
}

/// A partition's size is the largest any of its replicas reports (normally the leader's); what
/// a move has copied is what its new replicas report, each counted up to that size.
fn apply_sizes(partitions: &mut [PartitionView], reports: &BTreeMap<NodeId, BrokerReport>) {
    for p in partitions {
        let key = (p.topic.clone(), p.partition);
        p.size_bytes = reports
            .values()
            .filter_map(|r| r.sizes.get(&key).copied())
            .max()
            .unwrap_or(0);
        p.adding_bytes = p
            .adding
            .iter()
            .filter_map(|a| reports.get(a)?.sizes.get(&key).copied())
            .map(|b| b.min(p.size_bytes))
            .sum();
    }
}

/// Asks broker `b` itself for its log directory's replica sizes and its cordon state.
async fn broker_report(b: &Registered) -> Result<BrokerReport, AdminError> {
    let client = KafkaAdminClient::connect(&b.addr).await?;
    let v = client.version(DESCRIBE_LOG_DIRS)?;
    let resp = client
        .round_trip(
            DESCRIBE_LOG_DIRS.0,
            &DescribeLogDirsRequest::default().with_topics(None),
            v,
        )
        .await?;
    let label = format!("broker {}", b.id);
    if resp.error_code != 0 {
        return Err(kafka_error(
            DESCRIBE_LOG_DIRS.0,
            &label,
            resp.error_code,
            None,
        ));
    }
    let mut report = BrokerReport::default();
    for d in &resp.results {
        if d.error_code != 0 {
            let dir = format!("{label} log dir {}", d.log_dir);
            return Err(kafka_error(DESCRIBE_LOG_DIRS.0, &dir, d.error_code, None));
        }
        for t in &d.topics {
            for p in t.partitions.iter().filter(|p| !p.is_future_key) {
                let size = u64::try_from(p.partition_size).unwrap_or(0);
                *report
                    .sizes
                    .entry((t.name.0.to_string(), p.partition_index))
                    .or_default() += size;
            }
        }
    }
    let mut configs = client
        .describe_configs(
            vec![ConfigResource::broker(b.id)],
            Some(&[CORDONED_LOG_DIRS]),
        )
        .await?;
    let entries = configs
        .pop()
        .ok_or_else(|| super::missing("DescribeConfigs", &label))??;
    report.cordoned = entries.iter().any(|e| {
        e.name == CORDONED_LOG_DIRS && e.value.as_deref().is_some_and(|v| !v.trim().is_empty())
    });
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn topic(name: &str, code: i16, parts: &[(i32, i32, &[i32], &[i32])]) -> MetadataResponseTopic {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
            .with_error_code(code)
            .with_partitions(
                parts
                    .iter()
                    .map(|(p, leader, replicas, isr)| {
                        MetadataResponsePartition::default()
                            .with_partition_index(*p)
                            .with_leader_id(BrokerId(*leader))
                            .with_replica_nodes(replicas.iter().copied().map(BrokerId).collect())
                            .with_isr_nodes(isr.iter().copied().map(BrokerId).collect())
                    })
                    .collect(),
            )
    }

    #[test]
    fn partitions_are_sorted_and_a_leaderless_one_has_no_leader() {
        let meta = MetadataResponse::default().with_topics(vec![
            topic("b", 0, &[(1, -1, &[2, 3], &[]), (0, 2, &[2, 3], &[2, 3])]),
            topic("gone", codes::UNKNOWN_TOPIC_OR_PARTITION, &[]),
            topic("a", 0, &[(0, 1, &[1, 2], &[1])]),
        ]);
        let ps = partitions_of(&meta);
        let names: Vec<String> = ps.iter().map(PartitionView::name).collect();
        assert_eq!(names, ["a-0", "b-0", "b-1"]);
        assert_eq!(ps[2].leader, None);
        assert_eq!(
            (ps[0].replicas.clone(), ps[0].isr.clone()),
            (vec![1, 2], vec![1])
        );
    }

    #[test]
    fn a_partition_is_as_large_as_its_largest_replica_and_a_move_as_far_as_its_new_replicas() {
        let mut ps = partitions_of(&MetadataResponse::default().with_topics(vec![topic(
            "t",
            0,
            &[(0, 1, &[1, 2], &[1, 2])],
        )]));
        let report = |size: u64| BrokerReport {
            sizes: [(("t".to_owned(), 0), size)].into_iter().collect(),
            cordoned: false,
        };
        let reports = [(1, report(100)), (2, report(40)), (3, report(30))]
            .into_iter()
            .collect();
        ps[0].adding = vec![2, 3, 4];
        apply_sizes(&mut ps, &reports);
        assert_eq!(ps[0].size_bytes, 100);
        // copied so far: 40 on 2, 30 on 3, nothing reported by 4
        assert_eq!(ps[0].adding_bytes, 70);
    }
}

//! An in-memory `KafkaAdmin` for tests: topics with partitions, RF and config, a broker list, a
//! record of every call made, and injectable failures; `fake_partitions` adds replica lists,
//! ISRs, reassignments, elections and the controller quorum for the day-2 planner's tests, which
//! the day-2 calls here read and change. It follows the real broker's rules that
//! matter to the reconcilers (partitions only grow, RF cannot exceed the broker count, deleting a
//! missing topic is fine) and nothing more.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use tributary_planner::Move;

use super::{
    codes, throttle, throttled_replicas, AdminConnector, AdminError, ClusterInfo, ConfigChange,
    ConfigEntry, ConfigSource, KafkaAdmin, NewTopic, QuorumInfo, TopicInfo, TopicPartition,
};
use crate::day2::{NodeId, ObservedKafka};

/// Defaults the fake reports for every topic (source `DEFAULT`) unless overridden, so that
/// callers must filter by source rather than take every entry as an override.
pub const FAKE_DEFAULTS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("retention.ms", "604800000"),
    ("segment.bytes", "1073741824"),
];

/// A topic held by the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeTopic {
    pub id: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic-level overrides (what DescribeConfigs reports as `DYNAMIC_TOPIC_CONFIG`).
    pub config: BTreeMap<String, String>,
}

/// Shared state of the fake cluster.
#[derive(Debug, Default)]
pub struct FakeState {
    pub brokers: Vec<i32>,
    /// `broker.rack` of the brokers that have one.
    pub racks: BTreeMap<i32, String>,
    pub controller: Option<i32>,
    pub topics: BTreeMap<String, FakeTopic>,
    /// Every admin call, e.g. `create_topic orders`.
    pub calls: Vec<String>,
    /// When set, `connect` fails (the cluster is unreachable).
    pub unreachable: bool,
    /// When set, IncrementalAlterConfigs answers success but changes nothing (a broker that
    /// loses the change), so callers that trust the answer are caught.
    pub ignore_alters: bool,
    /// Partitions with replicas, ISR, leader and moves (see `fake_partitions`); independent of
    /// `topics`, which the topic reconciler uses.
    pub partitions: BTreeMap<(String, i32), super::fake_partitions::FakePartition>,
    /// Registered brokers that are fenced (stopped).
    pub fenced: BTreeSet<i32>,
    /// Cordoned brokers.
    pub cordoned: BTreeSet<i32>,
    /// `min.insync.replicas` overrides per topic.
    pub topic_min_isr: BTreeMap<String, usize>,
    /// The replication throttle's rate, while one is set.
    pub throttle_rate: Option<u64>,
    /// Throttled replica lists per topic (leader side, follower side), while set.
    pub throttled_replicas: BTreeMap<String, (String, String)>,
    /// Dynamic cluster-wide broker defaults other than the throttle (`alter_broker_defaults`).
    pub broker_defaults: BTreeMap<String, String>,
    /// Controller quorum voters (none: the controller alone).
    pub voters: Vec<NodeId>,
    /// How many metadata records each voter is behind (absent: caught up).
    pub voter_lag: BTreeMap<NodeId, i64>,
    next_id: u32,
}

/// A cloneable handle to one fake cluster; also its own `AdminConnector`.
#[derive(Debug, Clone, Default)]
pub struct FakeAdmin {
    pub state: Arc<Mutex<FakeState>>,
}

impl FakeAdmin {
    /// A fake cluster with these broker ids, the first being the controller.
    pub fn with_brokers(brokers: &[i32]) -> Self {
        let admin = FakeAdmin::default();
        {
            let mut s = admin.lock();
            s.brokers = brokers.to_vec();
            s.controller = brokers.first().copied();
        }
        admin
    }

    /// Locks the state (tests only; a poisoned lock means a test already panicked).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake admin state lock poisoned")
    }

    fn call<T>(
        &self,
        what: String,
        f: impl FnOnce(&mut FakeState) -> Result<T, AdminError>,
    ) -> BoxFuture<'_, Result<T, AdminError>>
    where
        T: Send + 'static,
    {
        let result = {
            let mut s = self.lock();
            s.calls.push(what);
            f(&mut s)
        };
        futures::future::ready(result).boxed()
    }
}

fn err(api: &'static str, name: &str, code: i16, message: &str) -> AdminError {
    AdminError::Kafka {
        api,
        resource: name.to_owned(),
        code,
        message: Some(message.to_owned()),
    }
}

/// The one config rule the fake enforces: `*.ms` and `*.bytes` values are integers.
fn valid_value(key: &str, value: &str) -> bool {
    !(key.ends_with(".ms") || key.ends_with(".bytes")) || value.parse::<i64>().is_ok()
}

impl KafkaAdmin for FakeAdmin {
    fn describe_cluster(&self) -> BoxFuture<'_, Result<ClusterInfo, AdminError>> {
        self.call("describe_cluster".into(), |s| {
            Ok(ClusterInfo {
                broker_ids: s.brokers.clone(),
                controller_id: s.controller,
            })
        })
    }

    fn describe_topic<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<TopicInfo>, AdminError>> {
        self.call(format!("describe_topic {name}"), |s| {
            Ok(s.topics.get(name).map(|t| TopicInfo {
                name: name.to_owned(),
                id: Some(t.id.clone()),
                partitions: t.partitions,
                replication_factor: t.replication_factor,
            }))
        })
    }

    fn create_topic<'a>(
        &'a self,
        topic: &'a NewTopic,
    ) -> BoxFuture<'a, Result<Option<String>, AdminError>> {
        self.call(format!("create_topic {}", topic.name), |s| {
            if s.topics.contains_key(&topic.name) {
                return Err(err(
                    "CreateTopics",
                    &topic.name,
                    codes::TOPIC_ALREADY_EXISTS,
                    "exists",
                ));
            }
            if let Some(bad) = topic.config.iter().find(|(k, v)| !valid_value(k, v)) {
                return Err(err(
                    "CreateTopics",
                    &topic.name,
                    codes::INVALID_CONFIG,
                    &format!("{} is not a number", bad.0),
                ));
            }
            if i32::from(topic.replication_factor) > s.brokers.len() as i32 {
                return Err(err(
                    "CreateTopics",
                    &topic.name,
                    codes::INVALID_REPLICATION_FACTOR,
                    "not enough brokers",
                ));
            }
            s.next_id += 1;
            let id = format!("00000000-0000-4000-8000-{:012}", s.next_id);
            s.topics.insert(
                topic.name.clone(),
                FakeTopic {
                    id: id.clone(),
                    partitions: topic.partitions,
                    replication_factor: i32::from(topic.replication_factor),
                    config: topic.config.clone(),
                },
            );
            Ok(Some(id))
        })
    }

    fn create_partitions<'a>(
        &'a self,
        name: &'a str,
        total: i32,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        self.call(format!("create_partitions {name} {total}"), |s| {
            let t = s.topics.get_mut(name).ok_or_else(|| {
                err(
                    "CreatePartitions",
                    name,
                    codes::UNKNOWN_TOPIC_OR_PARTITION,
                    "unknown",
                )
            })?;
            if total <= t.partitions {
                return Err(err(
                    "CreatePartitions",
                    name,
                    codes::INVALID_PARTITIONS,
                    "must increase",
                ));
            }
            t.partitions = total;
            Ok(())
        })
    }

    fn describe_topic_config<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ConfigEntry>, AdminError>> {
        self.call(format!("describe_topic_config {name}"), |s| {
            let t = s.topics.get(name).ok_or_else(|| {
                err(
                    "DescribeConfigs",
                    name,
                    codes::UNKNOWN_TOPIC_OR_PARTITION,
                    "unknown",
                )
            })?;
            let mut entries: BTreeMap<String, ConfigEntry> = FAKE_DEFAULTS
                .iter()
                .map(|(k, v)| {
                    let entry = ConfigEntry {
                        name: (*k).to_owned(),
                        value: Some((*v).to_owned()),
                        source: ConfigSource::Default,
                    };
                    ((*k).to_owned(), entry)
                })
                .collect();
            for (k, v) in &t.config {
                let entry = ConfigEntry {
                    name: k.clone(),
                    value: Some(v.clone()),
                    source: ConfigSource::DynamicTopic,
                };
                entries.insert(k.clone(), entry);
            }
            Ok(entries.into_values().collect())
        })
    }

    fn alter_topic_config<'a>(
        &'a self,
        name: &'a str,
        changes: &'a [ConfigChange],
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        self.call(format!("alter_topic_config {name} {changes:?}"), |s| {
            let ignore_alters = s.ignore_alters;
            let t = s.topics.get_mut(name).ok_or_else(|| {
                err(
                    "IncrementalAlterConfigs",
                    name,
                    codes::UNKNOWN_TOPIC_OR_PARTITION,
                    "unknown",
                )
            })?;
            if ignore_alters {
                return Ok(());
            }
            for c in changes {
                match c {
                    ConfigChange::Set { name: k, value }
                        if k.ends_with(".ms") && value.parse::<i64>().is_err() =>
                    {
                        return Err(err(
                            "IncrementalAlterConfigs",
                            name,
                            codes::INVALID_CONFIG,
                            "not a number",
                        ));
                    }
                    ConfigChange::Set { name: k, value } => {
                        t.config.insert(k.clone(), value.clone());
                    }
                    ConfigChange::Delete { name: k } => {
                        t.config.remove(k);
                    }
                }
            }
            Ok(())
        })
    }

    fn delete_topic<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), AdminError>> {
        self.call(format!("delete_topic {name}"), |s| {
            s.topics.remove(name);
            Ok(())
        })
    }

    fn observe(&self) -> BoxFuture<'_, Result<ObservedKafka, AdminError>> {
        self.call("observe".into(), |s| Ok(s.kafka_view()))
    }

    fn reassign<'a>(&'a self, moves: &'a [Move]) -> BoxFuture<'a, Result<(), AdminError>> {
        // `FakeState::reassign` records each accepted move in `calls`.
        let result = self.lock().reassign(moves);
        futures::future::ready(result).boxed()
    }

    fn cancel_reassignments<'a>(
        &'a self,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        self.lock().cancel_reassignments(partitions);
        futures::future::ready(Ok(())).boxed()
    }

    fn set_replication_throttle<'a>(
        &'a self,
        bytes_per_second: u64,
        moves: &'a [Move],
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        self.call(format!("set throttle {bytes_per_second}"), |s| {
            s.throttle_rate = Some(bytes_per_second);
            s.throttled_replicas.extend(throttled_replicas(moves));
            Ok(())
        })
    }

    fn clear_replication_throttle(&self) -> BoxFuture<'_, Result<(), AdminError>> {
        self.call("clear throttle".into(), |s| {
            s.throttle_rate = None;
            s.throttled_replicas.clear();
            Ok(())
        })
    }

    fn describe_broker_defaults(&self) -> BoxFuture<'_, Result<Vec<ConfigEntry>, AdminError>> {
        self.call("describe_broker_defaults".into(), |s| {
            let throttle = s.throttle_rate.into_iter().flat_map(|r| {
                [throttle::FOLLOWER_RATE, throttle::LEADER_RATE]
                    .map(|name| (name.to_owned(), r.to_string()))
            });
            let set = s.broker_defaults.clone().into_iter();
            Ok(throttle
                .chain(set)
                .map(|(name, value)| ConfigEntry {
                    name,
                    value: Some(value),
                    source: ConfigSource::DynamicDefaultBroker,
                })
                .collect())
        })
    }

    fn alter_broker_defaults<'a>(
        &'a self,
        changes: &'a [ConfigChange],
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        self.call(format!("alter broker defaults {changes:?}"), move |s| {
            for c in changes {
                match c {
                    ConfigChange::Set { name, value } => {
                        s.broker_defaults.insert(name.clone(), value.clone());
                    }
                    ConfigChange::Delete { name } => {
                        s.broker_defaults.remove(name);
                    }
                }
            }
            Ok(())
        })
    }

    fn set_cordon<'a>(
        &'a self,
        brokers: &'a [NodeId],
        cordoned: bool,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        self.call(format!("set_cordon {brokers:?} {cordoned}"), |s| {
            if cordoned {
                s.cordoned.extend(brokers.iter().copied());
            } else {
                s.cordoned.retain(|b| !brokers.contains(b));
            }
            Ok(())
        })
    }

    fn elect_preferred_leaders<'a>(
        &'a self,
        partitions: Option<&'a [TopicPartition]>,
    ) -> BoxFuture<'a, Result<Vec<TopicPartition>, AdminError>> {
        self.call("elect_preferred_leaders".into(), |s| {
            s.elect_preferred(partitions)
        })
    }

    fn unregister_broker(&self, id: NodeId) -> BoxFuture<'_, Result<(), AdminError>> {
        self.call(format!("unregister_broker {id}"), |s| s.unregister(id))
    }

    fn describe_quorum(&self) -> BoxFuture<'_, Result<QuorumInfo, AdminError>> {
        self.call("describe_quorum".into(), |s| Ok(s.quorum()))
    }
}

impl AdminConnector for FakeAdmin {
    fn connect<'a>(
        &'a self,
        bootstrap: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn KafkaAdmin>, AdminError>> {
        let unreachable = self.lock().unreachable;
        let result = if unreachable {
            Err(AdminError::Connect {
                addr: bootstrap.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "fake cluster unreachable",
                ),
            })
        } else {
            Ok(Box::new(self.clone()) as Box<dyn KafkaAdmin>)
        };
        futures::future::ready(result).boxed()
    }
}

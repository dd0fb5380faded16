//! Topic operations of the quorum controller: create and delete topics, add partitions, and
//! change topic and broker configs. Each validates against the current image under the
//! controller's write lock and commits its records through the quorum.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::placement as validate;
use super::{ApiError, CreatedTopic, NewTopic, QuorumController};
use crate::metadata::image::MetadataImage;
use crate::metadata::records::{ConfigResource, MetadataRecord, PartitionRecord};
use crate::topic_config;

impl QuorumController {
    /// Creates topics; each gets its own result. With `validate_only` nothing is written.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<CreatedTopic, ApiError>> {
        let _guard = self.write.lock().await;
        let image = self.image();
        let mut records = Vec::new();
        let mut seen = BTreeSet::new();
        let mut results = Vec::new();
        for t in topics {
            let result = plan_topic(&image, &t, &mut seen).map(|(recs, created)| {
                records.extend(recs);
                created
            });
            results.push(result);
        }
        if !validate_only {
            if let Err(e) = self.commit(records).await {
                return results.into_iter().map(|r| r.and(Err(e.clone()))).collect();
            }
        }
        results
    }

    /// Deletes topics by name.
    pub async fn delete_topics(&self, names: Vec<String>) -> Vec<Result<Uuid, ApiError>> {
        let _guard = self.write.lock().await;
        let image = self.image();
        let mut records = Vec::new();
        let results: Vec<_> = names
            .iter()
            .map(|n| match image.topics.get(n) {
                Some(t) => {
                    records.push(MetadataRecord::RemoveTopic {
                        topic_id: t.topic_id,
                    });
                    Ok(t.topic_id)
                }
                None => Err(unknown_topic(n)),
            })
            .collect();
        if let Err(e) = self.commit(records).await {
            return results.into_iter().map(|r| r.and(Err(e.clone()))).collect();
        }
        results
    }

    /// Raises a topic's partition count to `count`.
    pub async fn create_partitions(
        &self,
        topic: &str,
        count: i32,
        assignments: Vec<Vec<i32>>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let _guard = self.write.lock().await;
        let image = self.image();
        let t = image
            .topics
            .get(topic)
            .ok_or_else(|| unknown_topic(topic))?;
        let current = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
        if count <= current {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!(
                    "topic {topic} has {current} partitions; the new count {count} must be larger"
                ),
            ));
        }
        let rf = t.partitions.values().next().map_or(1, |p| p.replicas.len());
        let replicas = if assignments.is_empty() {
            validate::assign_replicas(&image, current, count - current, rf as i16)?
        } else {
            let registered: Vec<i32> = image.brokers.keys().copied().collect();
            check_assignments(&registered, &assignments, count - current)?;
            assignments
        };
        let records = replicas
            .into_iter()
            .zip(current..)
            .map(|(r, p)| partition_record(t.topic_id, p, r))
            .collect();
        if validate_only {
            return Ok(());
        }
        self.commit(records).await.map(|_| ())
    }

    /// Replaces a topic's config overrides with what `change` computes from the current ones.
    pub async fn alter_topic_configs<F>(
        &self,
        topic: &str,
        validate_only: bool,
        change: F,
    ) -> Result<(), ApiError>
    where
        F: FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError>,
    {
        let _guard = self.write.lock().await;
        let image = self.image();
        let t = image
            .topics
            .get(topic)
            .ok_or_else(|| unknown_topic(topic))?;
        let new = topic_config::without_ignored(topic, &change(&t.configs)?);
        for (k, v) in &new {
            topic_config::validate(k, v)
                .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
        }
        let records = config_changes(&ConfigResource::Topic(topic.to_owned()), &t.configs, &new);
        if validate_only {
            return Ok(());
        }
        self.commit(records).await.map(|_| ())
    }
}

/// The Config records that turn `current` into `new` for `resource`: a set for every changed
/// or added key, a delete for every removed one.
fn config_changes(
    resource: &ConfigResource,
    current: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<MetadataRecord> {
    let set = new
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k, Some(v.clone())));
    let deleted = current
        .keys()
        .filter(|k| !new.contains_key(*k))
        .map(|k| (k, None));
    set.chain(deleted)
        .map(|(name, value)| MetadataRecord::Config {
            resource: resource.clone(),
            name: name.clone(),
            value,
        })
        .collect()
}

impl QuorumController {
    /// Alters the dynamic configs of broker `broker` (`None`: every broker, the cluster
    /// default); `change` maps the current set to the new one. Only the broker properties that
    /// are topic defaults may change without a restart; any other known property is refused
    /// saying so, an unknown one as unknown.
    pub async fn alter_broker_configs<F>(
        &self,
        broker: Option<i32>,
        validate_only: bool,
        change: F,
    ) -> Result<(), ApiError>
    where
        F: FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError>,
    {
        let _guard = self.write.lock().await;
        let image = self.image();
        let empty = BTreeMap::new();
        let current = image.broker_configs.get(&broker).unwrap_or(&empty);
        let new = change(current)?;
        for (k, v) in &new {
            let Some(valid) = topic_config::validate_dynamic_broker(k, v) else {
                let known = crate::config::BrokerConfig::is_known(k);
                return Err(if known {
                    ApiError::new(
                        ResponseError::InvalidRequest,
                        format!("{k} cannot be changed while the broker runs: set it in the broker's properties and restart it"),
                    )
                } else {
                    ApiError::new(
                        ResponseError::InvalidConfig,
                        format!("unknown broker config name: {k}"),
                    )
                });
            };
            valid.map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
        }
        let records = config_changes(&ConfigResource::Broker(broker), current, &new);
        if validate_only {
            return Ok(());
        }
        if !records.is_empty() {
            tracing::info!(broker = ?broker, changes = records.len(), "dynamic broker configs changed");
        }
        self.commit(records).await.map(|_| ())
    }
}

fn unknown_topic(name: &str) -> ApiError {
    ApiError::new(
        ResponseError::UnknownTopicOrPartition,
        format!("topic {name} does not exist"),
    )
}

fn partition_record(topic_id: Uuid, partition: i32, replicas: Vec<i32>) -> MetadataRecord {
    MetadataRecord::Partition(PartitionRecord {
        topic_id,
        partition,
        leader: replicas.first().copied().unwrap_or(-1),
        isr: replicas.clone(),
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
        original_replicas: Vec::new(),
    })
}

fn check_assignments(
    brokers: &[i32],
    assignments: &[Vec<i32>],
    expected: i32,
) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::new(ResponseError::InvalidReplicaAssignment, m);
    if i32::try_from(assignments.len()).ok() != Some(expected) {
        return Err(bad(format!(
            "expected {expected} partition assignments, got {}",
            assignments.len()
        )));
    }
    let rf = assignments.first().map_or(0, Vec::len);
    for a in assignments {
        let unique: BTreeSet<_> = a.iter().collect();
        if a.is_empty() || unique.len() != a.len() || a.len() != rf {
            return Err(bad(format!(
                "assignment {a:?} must list {rf} distinct brokers"
            )));
        }
        if let Some(b) = a.iter().find(|b| !brokers.contains(b)) {
            return Err(bad(format!(
                "broker {b} in assignment {a:?} is not registered"
            )));
        }
    }
    Ok(())
}

/// Validates one new topic against the image and plans its records.
fn plan_topic(
    image: &MetadataImage,
    t: &NewTopic,
    seen: &mut BTreeSet<String>,
) -> Result<(Vec<MetadataRecord>, CreatedTopic), ApiError> {
    validate::topic_name(&t.name)?;
    if image.topics.contains_key(&t.name) || !seen.insert(t.name.clone()) {
        return Err(ApiError::new(
            ResponseError::TopicAlreadyExists,
            format!("topic {} already exists", t.name),
        ));
    }
    if let Some(other) = image.topics.keys().find(|o| validate::collides(o, &t.name)) {
        return Err(ApiError::new(
            ResponseError::InvalidTopicException,
            format!("topic {} collides with existing topic {other}", t.name),
        ));
    }
    for (k, v) in &t.configs {
        topic_config::validate(k, v).map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
    }
    let replicas: Vec<Vec<i32>> = if t.assignments.is_empty() {
        if t.num_partitions < 1 {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!(
                    "number of partitions must be at least 1, got {}",
                    t.num_partitions
                ),
            ));
        }
        validate::assign_replicas(image, 0, t.num_partitions, t.replication_factor)?
    } else {
        let ordered: Vec<Vec<i32>> = t.assignments.values().cloned().collect();
        let n = i32::try_from(ordered.len()).unwrap_or(i32::MAX);
        if t.assignments.keys().copied().ne(0..n) {
            return Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                "partition indexes in the assignment must be 0..n",
            ));
        }
        let registered: Vec<i32> = image.brokers.keys().copied().collect();
        check_assignments(&registered, &ordered, n)?;
        ordered
    };
    let topic_id = Uuid::new_v4();
    let created = CreatedTopic {
        topic_id,
        num_partitions: i32::try_from(replicas.len()).unwrap_or(i32::MAX),
        replication_factor: replicas.first().map_or(0, |r| r.len() as i16),
    };
    let mut records = vec![MetadataRecord::Topic {
        name: t.name.clone(),
        topic_id,
        configs: topic_config::without_ignored(&t.name, &t.configs),
    }];
    records.extend(
        replicas
            .into_iter()
            .zip(0..)
            .map(|(r, p)| partition_record(topic_id, p, r)),
    );
    Ok((records, created))
}

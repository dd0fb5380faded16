//! The in-memory metadata image: what the cluster looks like after applying the metadata log up
//! to some offset. Pure data and a pure `apply`; published to the broker's components as an
//! immutable `Arc<MetadataImage>` after each committed batch.
//!
//! Topics are shared (`Arc<TopicImage>`): publishing an image clones the map of pointers, and a
//! record copies only the topic it changes, so a change to one partition does not copy every
//! partition of a large cluster. `apply` reports which topics a record changed, so consumers
//! of the image (the replica manager) can work on those alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::records::{BrokerRegistration, ConfigResource, MetadataRecord, PartitionRecord};

/// One topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: BTreeMap<i32, PartitionImage>,
    /// Topic-level overrides only; defaults come from the broker configuration.
    pub configs: BTreeMap<String, String>,
}

/// One partition as the metadata log knows it.
pub type PartitionImage = PartitionRecord;

/// What a run of records changed, for consumers that work on deltas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Topics created, removed, or with changed partitions or configs (by id).
    pub topics: BTreeSet<Uuid>,
    /// Broker registrations or states changed.
    pub brokers: bool,
    /// Everything may have changed (a snapshot replaced the image, or a broker default).
    pub all: bool,
}

impl Changes {
    /// Adds `other` to these changes.
    pub fn merge(&mut self, other: Changes) {
        self.topics.extend(other.topics);
        self.brokers |= other.brokers;
        self.all |= other.all;
    }

    /// Whether anything changed.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty() && !self.brokers && !self.all
    }
}

/// The whole cluster state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    pub topic_names: BTreeMap<Uuid, String>,
    /// Dynamic broker configs (`None` key: cluster default).
    pub broker_configs: BTreeMap<Option<i32>, BTreeMap<String, String>>,
    /// The first producer id not yet handed out.
    #[serde(default)]
    pub next_producer_id: i64,
    /// Index of the last applied Raft entry (0 before any).
    pub applied_index: u64,
    /// The cluster id, once the first active controller wrote it.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// The broker epoch the next registration gets.
    #[serde(default)]
    pub next_broker_epoch: i64,
}

impl MetadataImage {
    /// Applies one record and notes in `changed` what it touched. Records are validated before
    /// they are committed, so a record that refers to something missing is skipped (logged)
    /// rather than failing the log.
    pub fn apply_tracked(&mut self, record: &MetadataRecord, changed: &mut Changes) {
        match record {
            MetadataRecord::Topic { topic_id, .. }
            | MetadataRecord::RemoveTopic { topic_id }
            | MetadataRecord::Partition(PartitionRecord { topic_id, .. }) => {
                changed.topics.insert(*topic_id);
            }
            MetadataRecord::Config {
                resource: ConfigResource::Topic(name),
                ..
            } => {
                if let Some(t) = self.topics.get(name) {
                    changed.topics.insert(t.topic_id);
                }
            }
            // Broker configs are topic defaults: every topic may be affected.
            MetadataRecord::Config { .. } => changed.all = true,
            _ => changed.brokers = true,
        }
        self.apply(record);
    }

    /// Applies one record (see [`MetadataImage::apply_tracked`]).
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::RegisterBroker(reg) => {
                self.next_broker_epoch = self.next_broker_epoch.max(reg.epoch + 1);
                self.brokers.insert(reg.broker_id, reg.clone());
            }
            MetadataRecord::UnregisterBroker { broker_id } => {
                self.brokers.remove(broker_id);
            }
            MetadataRecord::FenceBroker { broker_id, epoch } => {
                self.broker_state(*broker_id, *epoch, |b| b.fenced = true);
            }
            MetadataRecord::UnfenceBroker { broker_id, epoch } => {
                self.broker_state(*broker_id, *epoch, |b| {
                    b.fenced = false;
                    b.in_controlled_shutdown = false;
                });
            }
            MetadataRecord::ControlledShutdown { broker_id, epoch } => {
                self.broker_state(*broker_id, *epoch, |b| b.in_controlled_shutdown = true);
            }
            MetadataRecord::ClusterId { cluster_id } => {
                self.cluster_id.get_or_insert_with(|| cluster_id.clone());
            }
            MetadataRecord::Topic {
                name,
                topic_id,
                configs,
            } => {
                self.topic_names.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    Arc::new(TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: BTreeMap::new(),
                        configs: configs.clone(),
                    }),
                );
            }
            MetadataRecord::Partition(p) => match self.topic_by_id_mut(&p.topic_id) {
                Some(topic) => {
                    topic.partitions.insert(p.partition, p.clone());
                }
                None => {
                    tracing::warn!(topic_id = %p.topic_id, "partition record for unknown topic")
                }
            },
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = self.topic_names.remove(topic_id) {
                    self.topics.remove(&name);
                }
            }
            MetadataRecord::Config {
                resource,
                name,
                value,
            } => self.apply_config(resource, name, value.as_deref()),
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
        }
    }

    /// Changes the state of the broker's registration `epoch`; a record for an older
    /// registration is stale and ignored.
    fn broker_state(&mut self, id: i32, epoch: i64, change: impl FnOnce(&mut BrokerRegistration)) {
        match self.brokers.get_mut(&id) {
            Some(b) if b.epoch == epoch => change(b),
            _ => tracing::debug!(broker = id, epoch, "state change for a stale registration"),
        }
    }

    /// Brokers that may lead partitions and join ISRs (registered, unfenced, not shutting down).
    pub fn active_brokers(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| b.is_active())
            .map(|b| b.broker_id)
            .collect()
    }

    fn apply_config(&mut self, resource: &ConfigResource, name: &str, value: Option<&str>) {
        let map = match resource {
            ConfigResource::Topic(topic) => match self.topics.get_mut(topic) {
                Some(t) => &mut Arc::make_mut(t).configs,
                None => return,
            },
            ConfigResource::Broker(id) => self.broker_configs.entry(*id).or_default(),
        };
        match value {
            Some(v) => map.insert(name.to_owned(), v.to_owned()),
            None => map.remove(name),
        };
    }

    fn topic_by_id_mut(&mut self, id: &Uuid) -> Option<&mut TopicImage> {
        let name = self.topic_names.get(id)?;
        self.topics.get_mut(name).map(Arc::make_mut)
    }

    /// The topic with this id, if it exists.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topics.get(self.topic_names.get(id)?).map(Arc::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, id: Uuid) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: id,
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        }
    }

    fn partition(id: Uuid, p: i32) -> MetadataRecord {
        MetadataRecord::Partition(PartitionRecord {
            topic_id: id,
            partition: p,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
            original_replicas: Vec::new(),
        })
    }

    #[test]
    fn topics_partitions_configs_and_removal() {
        let id = Uuid::new_v4();
        let mut image = MetadataImage::default();
        for r in [topic("t", id), partition(id, 0), partition(id, 1)] {
            image.apply(&r);
        }
        image.apply(&MetadataRecord::Config {
            resource: ConfigResource::Topic("t".into()),
            name: "segment.bytes".into(),
            value: Some("2048".into()),
        });
        let t = &image.topics["t"];
        assert_eq!(t.partitions.len(), 2);
        assert_eq!(t.configs["segment.bytes"], "2048");
        assert_eq!(t.configs["retention.ms"], "1000");
        assert_eq!(t.partitions[&1].leader, 1);
        image.apply(&MetadataRecord::RemoveTopic { topic_id: id });
        assert!(image.topics.is_empty());
        assert!(image.topic_names.is_empty());
    }

    #[test]
    fn a_change_copies_only_its_topic_and_is_reported() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut image = MetadataImage::default();
        for r in [
            topic("a", a),
            partition(a, 0),
            topic("b", b),
            partition(b, 0),
        ] {
            image.apply(&r);
        }
        let before = image.clone();
        let mut changed = Changes::default();
        image.apply_tracked(&partition(a, 1), &mut changed);
        assert_eq!(changed.topics, BTreeSet::from([a]));
        assert!(!changed.brokers && !changed.all);
        // Topic b is shared with the earlier image, not copied.
        assert!(Arc::ptr_eq(&before.topics["b"], &image.topics["b"]));
        assert!(!Arc::ptr_eq(&before.topics["a"], &image.topics["a"]));
        assert_eq!(
            before.topics["a"].partitions.len(),
            1,
            "the earlier image is unchanged"
        );
        let mut changed = Changes::default();
        image.apply_tracked(
            &MetadataRecord::Config {
                resource: ConfigResource::Topic("b".into()),
                name: "retention.ms".into(),
                value: Some("5".into()),
            },
            &mut changed,
        );
        assert_eq!(changed.topics, BTreeSet::from([b]));
    }

    #[test]
    fn partition_of_unknown_topic_is_ignored() {
        let mut image = MetadataImage::default();
        image.apply(&partition(Uuid::new_v4(), 0));
        assert!(image.topics.is_empty());
    }
}

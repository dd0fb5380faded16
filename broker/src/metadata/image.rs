//! The in-memory metadata image: what the cluster looks like after applying the metadata log up
//! to some offset. Pure data and a pure `apply`; published to the broker's components as an
//! immutable `Arc<MetadataImage>` after each committed batch.

use std::collections::BTreeMap;

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

/// The whole cluster state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicImage>,
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
    /// Applies one record. Records are validated before they are committed, so a record that
    /// refers to something missing is skipped (logged) rather than failing the log.
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
                    TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: BTreeMap::new(),
                        configs: configs.clone(),
                    },
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
                Some(t) => &mut t.configs,
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
        self.topics.get_mut(name)
    }

    /// The topic with this id, if it exists.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topics.get(self.topic_names.get(id)?)
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
    fn partition_of_unknown_topic_is_ignored() {
        let mut image = MetadataImage::default();
        image.apply(&partition(Uuid::new_v4(), 0));
        assert!(image.topics.is_empty());
    }
}

//! The metadata sync: brings the hosted partitions in line with the metadata image (logs
//! opened or created for assigned partitions, each partition's state machine fed its record,
//! configs and throttles updated, logs of deleted or moved replicas removed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tributary_log::{LogConfig, LogError, Offset, TimestampType, TopicPartition};
use uuid::Uuid;

use super::partition::{PartitionState, ReplicaSettings, Transition};
use super::{Partition, ReplicaManager, METADATA_TOPIC};
use crate::metadata::image::Changes;
use crate::metadata::records::PartitionRecord;
use crate::metadata::{MetadataFollower, MetadataImage};
use crate::topic_config;

/// Runs file work (opening, creating and deleting logs, leader-epoch checkpoints with their
/// fsyncs) on the blocking pool, so that no runtime thread waits for the disk; `guard` (the
/// metadata sync's lock) is held until the work is done, even if the caller stops waiting.
async fn sync_off_runtime(
    guard: tokio::sync::OwnedMutexGuard<()>,
    f: impl FnOnce() + Send + 'static,
) {
    let done = crate::fsutil::off_runtime(move || {
        f();
        drop(guard);
        Ok(())
    })
    .await;
    if let Err(e) = done {
        tracing::error!(error = %e, "metadata sync task failed");
    }
}

/// What the metadata image says about a partition hosted here.
struct Assignment {
    topic_id: Uuid,
    record: PartitionRecord,
    min_insync_replicas: usize,
    config: LogConfig,
    /// This broker's replica is named by the topic's leader- / follower-side throttle lists.
    leader_throttled: bool,
    follower_throttled: bool,
}

impl ReplicaManager {
    /// Brings every hosted partition in line with the image, and deletes the logs of
    /// partitions the image does not assign here (strays: their topic was deleted, or the
    /// replica moved, while this broker was away). Run only once the broker has caught up with
    /// the metadata log, so an image that is merely behind never deletes anything.
    pub async fn sync(self: &Arc<Self>, image: &Arc<MetadataImage>) {
        let guard = self.sync.clone().lock_owned().await;
        let (me, image) = (self.clone(), image.clone());
        // Strays first: a directory left by a deleted topic of the same name must go before
        // the new topic's partition is created in its place.
        sync_off_runtime(guard, move || {
            me.delete_strays(&image);
            me.sync_topics(&image, None);
        })
        .await;
    }

    /// Applies what changed in the metadata since the last call: only the changed topics are
    /// looked at (everything after a snapshot or a broker-default change).
    pub async fn sync_changes(self: &Arc<Self>, follower: &MetadataFollower) {
        let guard = self.sync.clone().lock_owned().await;
        // Changes first, then the image: the image is at least as new as the changes, and any
        // change applied after it stays pending for the next call.
        let changes: Changes = follower.take_changes();
        if changes.is_empty() {
            return;
        }
        let image = follower.image();
        if changes.brokers && !changes.all {
            // A broker was fenced, unfenced or is shutting down: leaders re-judge who may join
            // their ISRs.
            let ineligible = ineligible_brokers(&image);
            let now = tokio::time::Instant::now();
            for (_, part) in self.all() {
                part.with_state(|st| st.set_ineligible_brokers(ineligible.clone(), now));
            }
        }
        let me = self.clone();
        sync_off_runtime(guard, move || {
            if changes.all {
                me.delete_strays(&image);
                me.sync_topics(&image, None);
            } else {
                me.sync_topics(&image, Some(&changes.topics));
            }
        })
        .await;
    }

    /// Opens, updates or removes the partitions of `only` these topics (all when `None`).
    fn sync_topics(&self, image: &MetadataImage, only: Option<&std::collections::BTreeSet<Uuid>>) {
        let included = |id: &Uuid| only.is_none_or(|o| o.contains(id));
        self.set_throttle_rates(image);
        let mut wanted: BTreeMap<TopicPartition, Assignment> = BTreeMap::new();
        for t in image.topics.values().filter(|t| included(&t.topic_id)) {
            let dynamic = topic_config::Dynamic::of(&image.broker_configs, self.node_id);
            let effective = topic_config::effective_with(&t.configs, &self.config, dynamic);
            let cfg = LogConfig {
                cleaner_dedupe_buffer_bytes: self.config.cleaner_dedupe_buffer_bytes,
                ..log_config(&effective)
            };
            let min_isr = effective["min.insync.replicas"].0.parse().unwrap_or(1);
            let leader_list = effective["leader.replication.throttled.replicas"].0.clone();
            let follower_list = effective["follower.replication.throttled.replicas"]
                .0
                .clone();
            for p in t
                .partitions
                .values()
                .filter(|p| p.replicas.contains(&self.node_id))
            {
                wanted.insert(
                    TopicPartition::new(&t.name, p.partition),
                    Assignment {
                        topic_id: t.topic_id,
                        record: p.clone(),
                        min_insync_replicas: min_isr,
                        config: cfg.clone(),
                        leader_throttled: topic_config::throttled(
                            &leader_list,
                            p.partition,
                            self.node_id,
                        ),
                        follower_throttled: topic_config::throttled(
                            &follower_list,
                            p.partition,
                            self.node_id,
                        ),
                    },
                );
            }
        }
        for (tp, part) in self.all() {
            if !included(&part.topic_id) {
                continue;
            }
            if wanted.get(&tp).is_none_or(|a| a.topic_id != part.topic_id) {
                self.remove(&tp);
            }
        }
        let ineligible = ineligible_brokers(image);
        for (tp, assignment) in wanted {
            if let Err(e) = self.ensure(&tp, assignment, &ineligible) {
                tracing::error!(partition = %tp, error = %e, "failed to open partition log");
            }
        }
    }

    /// The throttle rates in effect on this broker: its dynamic config, else the cluster's
    /// dynamic default, else its static property (unlimited by default).
    fn set_throttle_rates(&self, image: &MetadataImage) {
        let dynamic = topic_config::Dynamic::of(&image.broker_configs, self.node_id);
        let rate = |key: &str| {
            dynamic
                .get(key)
                .map(|(v, _)| v.to_owned())
                .or_else(|| self.config.get(key).map(|(v, _)| v.to_owned()))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|r| *r < i64::MAX as u64)
                .unwrap_or(u64::MAX)
        };
        self.throttles
            .leader
            .set_rate(rate("leader.replication.throttled.rate"));
        self.throttles
            .follower
            .set_rate(rate("follower.replication.throttled.rate"));
    }

    fn delete_strays(&self, image: &MetadataImage) {
        for tp in self.logs.existing() {
            // The metadata quorum's own log lives beside the partitions, as in Kafka.
            if tp.topic == METADATA_TOPIC {
                continue;
            }
            // Assigned here, under the topic id the directory was made for. A directory of an
            // older topic of the same name (deleted while this broker was away) is a stray.
            let assigned = image.topics.get(&tp.topic).is_some_and(|t| {
                let same_topic = match self.logs.stored_topic_id(&tp) {
                    Ok(Some(id)) => id == *t.topic_id.as_bytes() || id == [0; 16],
                    Ok(None) => true,
                    // Unreadable: keep it (never delete on doubt) and say so.
                    Err(e) => {
                        tracing::warn!(partition = %tp, error = %e, "cannot read the topic id of a log");
                        true
                    }
                };
                same_topic
                    && t.partitions
                        .get(&tp.partition)
                        .is_some_and(|p| p.replicas.contains(&self.node_id))
            });
            if !assigned && self.get(&tp.topic, tp.partition).is_none() {
                tracing::info!(partition = %tp, "deleting stray log: the metadata does not assign it here");
                if let Err(e) = self.logs.delete(&tp) {
                    tracing::warn!(partition = %tp, error = %e, "failed to delete stray log");
                }
            }
        }
    }

    fn ensure(
        &self,
        tp: &TopicPartition,
        a: Assignment,
        ineligible: &BTreeSet<i32>,
    ) -> Result<(), LogError> {
        let part = match self.get(&tp.topic, tp.partition) {
            Some(p) => {
                p.log
                    .write()
                    .expect("log lock poisoned")
                    .set_config(a.config.clone());
                p
            }
            None => self.open_partition(tp, &a)?,
        };
        part.leader.store(a.record.leader, Ordering::Release);
        part.leader_epoch
            .store(a.record.leader_epoch, Ordering::Release);
        part.isr_len.store(a.record.isr.len(), Ordering::Release);
        part.min_insync_replicas
            .store(a.min_insync_replicas, Ordering::Release);
        part.in_isr
            .store(a.record.isr.contains(&self.node_id), Ordering::Release);
        part.leader_throttled
            .store(a.leader_throttled, Ordering::Release);
        part.follower_throttled
            .store(a.follower_throttled, Ordering::Release);
        let leo = part.log.read().expect("log lock poisoned").log_end_offset();
        let now = tokio::time::Instant::now();
        let settings = ReplicaSettings {
            min_insync_replicas: a.min_insync_replicas,
            replica_lag_time_max: self.config.replica_lag_time_max,
        };
        let transition = part.with_state(|st| {
            st.set_settings(settings, now);
            st.set_ineligible_brokers(ineligible.clone(), now);
            st.on_metadata(&a.record, leo, now)
        });
        self.on_transition(tp, &part, &a.record, transition);
        Ok(())
    }

    fn open_partition(
        &self,
        tp: &TopicPartition,
        a: &Assignment,
    ) -> Result<Arc<Partition>, LogError> {
        let log = self
            .logs
            .open_or_create(tp, *a.topic_id.as_bytes(), a.config.clone())?;
        let leo = log.read().expect("log lock poisoned").log_end_offset();
        // The checkpointed high watermark, never above the log end; without one, nothing is
        // known to be committed until the leader says so.
        let hw = self
            .hw_checkpoint
            .lock()
            .expect("hw checkpoint lock poisoned")
            .get(tp)
            .copied()
            .unwrap_or(Offset(0))
            .min(leo);
        let settings = ReplicaSettings {
            min_insync_replicas: a.min_insync_replicas,
            replica_lag_time_max: self.config.replica_lag_time_max,
        };
        let part = Arc::new(Partition {
            topic_id: a.topic_id,
            log,
            leader: AtomicI32::new(a.record.leader),
            leader_epoch: AtomicI32::new(a.record.leader_epoch),
            isr_len: AtomicUsize::new(a.record.isr.len()),
            min_insync_replicas: AtomicUsize::new(a.min_insync_replicas),
            in_isr: AtomicBool::new(a.record.isr.contains(&self.node_id)),
            leader_throttled: AtomicBool::new(a.leader_throttled),
            follower_throttled: AtomicBool::new(a.follower_throttled),
            high_watermark: AtomicI64::new(hw.0),
            state: Mutex::new(PartitionState::new(self.node_id, hw, settings)),
            hw_moved: watch::channel(hw.0).0,
            changed: watch::channel(0).0,
        });
        tracing::info!(partition = %tp, leader = a.record.leader, epoch = a.record.leader_epoch, log_end = leo.0, high_watermark = hw.0, "hosting partition");
        self.partitions
            .write()
            .expect("partitions lock poisoned")
            .insert(tp.clone(), part.clone());
        Ok(part)
    }

    /// Acts on what a metadata change made of this broker's role for the partition.
    fn on_transition(
        &self,
        tp: &TopicPartition,
        part: &Arc<Partition>,
        record: &PartitionRecord,
        t: Transition,
    ) {
        match t {
            Transition::BecameLeader { leader_epoch, .. } => {
                tracing::info!(partition = %tp, epoch = leader_epoch.0, isr = ?record.isr, "became leader");
                self.fetchers.stop_following(tp);
                // Under the log lock: a follower append still under way finishes first, and the
                // fetcher appends nothing afterwards (it checks the leader epoch under the same
                // lock), so the new epoch starts after everything this log holds.
                let mut log = part.log.write().expect("log lock poisoned");
                if let Err(e) = log.assign_leader_epoch(leader_epoch.0) {
                    tracing::error!(partition = %tp, epoch = leader_epoch.0, error = %e, "failed to record the leader epoch");
                }
            }
            Transition::BecameFollower {
                leader,
                leader_epoch,
                ..
            } => {
                tracing::info!(partition = %tp, leader = ?leader, epoch = leader_epoch.0, "became follower");
                match leader {
                    Some(l) => self.fetchers.follow(tp, part, l, leader_epoch),
                    None => self.fetchers.stop_following(tp),
                }
            }
            Transition::Removed => self.fetchers.stop_following(tp),
            Transition::Updated { .. } | Transition::Ignored(_) => {}
        }
        part.notify();
    }

    fn remove(&self, tp: &TopicPartition) {
        self.fetchers.stop_following(tp);
        let removed = self
            .partitions
            .write()
            .expect("partitions lock poisoned")
            .remove(tp);
        if let Some(part) = removed {
            part.retire();
        }
        if let Err(e) = self.logs.delete(tp) {
            tracing::warn!(partition = %tp, error = %e, "failed to delete log");
        }
        tracing::info!(partition = %tp, "removed partition");
    }
}

/// Brokers that may not join an ISR: registered but fenced or shutting down.
fn ineligible_brokers(image: &MetadataImage) -> BTreeSet<i32> {
    image
        .brokers
        .values()
        .filter(|b| !b.is_active())
        .map(|b| b.broker_id)
        .collect()
}

fn num(v: &str) -> i64 {
    v.trim().parse().unwrap_or(-1)
}

fn positive(v: &str) -> Option<u64> {
    u64::try_from(num(v)).ok()
}

/// Converts an effective topic config (already validated) to the log's config.
pub fn log_config(
    eff: &BTreeMap<&'static str, (String, topic_config::TopicValueSource)>,
) -> LogConfig {
    let get = |k: &str| eff.get(k).map(|(v, _)| v.as_str()).unwrap_or("");
    let d = LogConfig::default();
    let policy = |name: &str| get("cleanup.policy").split(',').any(|p| p.trim() == name);
    let deletes = policy("delete");
    // Kafka's "never" for flush settings is Long.MAX_VALUE.
    let unless_max = |v: Option<u64>| v.filter(|n| *n < i64::MAX as u64);
    LogConfig {
        segment_bytes: positive(get("segment.bytes")).unwrap_or(d.segment_bytes),
        segment_ms: positive(get("segment.ms")).map_or(d.segment_ms, Duration::from_millis),
        index_interval_bytes: positive(get("index.interval.bytes"))
            .unwrap_or(d.index_interval_bytes),
        segment_index_bytes: positive(get("segment.index.bytes")).unwrap_or(d.segment_index_bytes),
        // Time and size retention delete segments only under cleanup.policy=delete (a compacted
        // topic such as __consumer_offsets keeps its latest value per key however old).
        retention_bytes: positive(get("retention.bytes")).filter(|_| deletes),
        retention_ms: positive(get("retention.ms"))
            .map(Duration::from_millis)
            .filter(|_| deletes),
        max_message_bytes: positive(get("max.message.bytes"))
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(d.max_message_bytes),
        message_timestamp_type: if get("message.timestamp.type") == "LogAppendTime" {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        flush_messages: unless_max(positive(get("flush.messages"))),
        flush_ms: unless_max(positive(get("flush.ms"))).map(Duration::from_millis),
        file_delete_delay: positive(get("file.delete.delay.ms"))
            .map_or(d.file_delete_delay, Duration::from_millis),
        compact: policy("compact"),
        delete_retention: positive(get("delete.retention.ms"))
            .map_or(d.delete_retention, Duration::from_millis),
        min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
            .trim()
            .parse()
            .unwrap_or(d.min_cleanable_dirty_ratio),
        min_compaction_lag: positive(get("min.compaction.lag.ms"))
            .map_or(d.min_compaction_lag, Duration::from_millis),
        max_compaction_lag: unless_max(positive(get("max.compaction.lag.ms")))
            .map(Duration::from_millis),
        // A broker setting, not a topic config: set by `ReplicaManager::sync`.
        cleaner_dedupe_buffer_bytes: d.cleaner_dedupe_buffer_bytes,
    }
}

//! The replica manager: the partitions this broker hosts, each with its log and high watermark,
//! kept in step with the metadata image (logs opened or created for assigned partitions, configs
//! updated, logs of deleted topics removed).
//!
//! Replication: `partition` (one partition's leader/follower state machine, which owns its high
//! watermark), `isr` (shrink/expand decisions and AlterPartition proposals), `divergence` (where
//! a follower truncates) are pure; `fetcher` (one follower fetcher per leader broker) and
//! `isr_manager` (sends ISR changes to the controller) do the I/O. Each hosted partition's state
//! machine is fed here from its metadata record, and by the produce and fetch paths.

pub mod divergence;
pub mod fetcher;
pub mod isr;
pub mod isr_manager;
pub mod partition;
pub mod throttle;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tributary_log::{Log, LogConfig, LogError, LogManager, Offset, TimestampType, TopicPartition};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::metadata::image::Changes;
use crate::metadata::records::PartitionRecord;
use crate::metadata::{MetadataFollower, MetadataImage};
use crate::topic_config;
use partition::{PartitionState, ReplicaSettings, Transition};

/// The directory name (`<topic>-0`) of the metadata quorum's log inside the log directory.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// What `/metrics` reports of replication (partitions this broker leads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationStats {
    pub leaders: u64,
    /// Led partitions whose ISR is smaller than their assignment.
    pub under_replicated: u64,
    /// Led partitions whose ISR is smaller than `min.insync.replicas` (acks=all refused).
    pub under_min_isr: u64,
    /// Messages the followers of led partitions are behind, summed.
    pub follower_lag_messages: u64,
    /// Each follower that is behind: (partition, follower id, messages behind).
    pub lagging: Vec<(TopicPartition, i32, u64)>,
}

/// `replication-offset-checkpoint`: each hosted partition's high watermark, as Kafka names it.
pub const HW_CHECKPOINT: &str = "replication-offset-checkpoint";

/// One hosted partition.
pub struct Partition {
    pub topic_id: Uuid,
    /// The log; writers hold the write lock only for the append itself.
    pub log: Arc<RwLock<Log>>,
    pub leader: AtomicI32,
    pub leader_epoch: AtomicI32,
    /// ISR size and the topic's `min.insync.replicas`, for acks=all (kept here so the produce
    /// path never consults the metadata image).
    pub isr_len: AtomicUsize,
    pub min_insync_replicas: AtomicUsize,
    /// This broker's replica is in the ISR; the topic's leader-side / follower-side throttle
    /// lists name it (kept here so the fetch paths never read the metadata image).
    pub in_isr: AtomicBool,
    pub leader_throttled: AtomicBool,
    pub follower_throttled: AtomicBool,
    /// Offsets below this are committed and visible to consumers: a copy of the state
    /// machine's high watermark, published after every change of it (readers never lock).
    pub high_watermark: AtomicI64,
    /// The replication state machine (leader with ISR and follower progress, or follower).
    /// Guards only in-memory state: never held across I/O or an await.
    state: Mutex<PartitionState>,
    /// Bumped whenever the high watermark moves: acks=all produces wait on it.
    hw_moved: watch::Sender<i64>,
    /// Bumped when anything a waiting fetch reads may have changed (an append, a follower's
    /// append, a high-watermark move, a leadership change): long-polling fetches wait on the
    /// partitions they read, not on every partition of the broker.
    changed: watch::Sender<u64>,
}

impl Partition {
    /// The high watermark.
    pub fn hw(&self) -> Offset {
        Offset(self.high_watermark.load(Ordering::Acquire))
    }

    /// Runs `f` on the replication state, then publishes the high watermark if it moved.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut PartitionState) -> T) -> T {
        let (out, hw) = {
            let mut st = self.state.lock().expect("partition state lock poisoned");
            let out = f(&mut st);
            (out, st.high_watermark())
        };
        self.publish_hw(hw);
        out
    }

    fn publish_hw(&self, hw: Offset) {
        let old = self.high_watermark.fetch_max(hw.0, Ordering::AcqRel);
        if hw.0 > old {
            self.hw_moved.send_replace(hw.0);
            self.notify();
        }
    }

    /// This broker stops hosting the partition (reassigned away, or its topic deleted): it
    /// leads it no more, and a delayed produce waiting on it ends now with
    /// NOT_LEADER_OR_FOLLOWER instead of at its timeout (waiting fetches wake too). The timeout
    /// would cost more than time: librdkafka answers a produce timed out in flight by bumping its
    /// idempotent producer epoch and sending the batch again under new sequence numbers, which
    /// the new leader must then append again, although the batch may already be there.
    fn retire(&self) {
        self.leader.store(-1, Ordering::SeqCst);
        self.notify();
    }

    /// Wakes the fetches waiting on this partition.
    pub fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that changes whenever [`Partition::notify`] is called.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// After a local append as leader: the high watermark moves by itself when the ISR is just
    /// this broker (and min ISR allows).
    pub fn after_local_append(&self, log_end: Offset) {
        let now = tokio::time::Instant::now();
        self.with_state(|st| st.on_local_append(log_end, now));
    }

    /// Whether broker `broker` leads the partition in `leader_epoch`, as the metadata last said:
    /// this broker itself (produce, a delayed produce) or the leader a fetch went to (the
    /// fetcher). Metadata stores a new leader and epoch before anything acts on them (the
    /// fetcher, a truncation, the new leader's first append), so a caller that sees the
    /// leadership it acted under here, after reading the log or the high watermark, read what
    /// that leadership wrote.
    pub fn leads_in(&self, broker: i32, leader_epoch: i32) -> bool {
        self.leader.load(Ordering::SeqCst) == broker
            && self.leader_epoch.load(Ordering::SeqCst) == leader_epoch
    }

    /// Waits until the high watermark reaches `target` while this broker (`local`) still leads
    /// the partition in `leader_epoch` (the epoch the batch was appended in), until it stops
    /// leading it in that epoch, or until `deadline`. A delayed produce must not outlive its
    /// leadership: once demoted, the high watermark this broker learns as a follower is the new
    /// leader's, over a log that may hold other batches at the same offsets (the old leader's
    /// uncommitted tail is truncated), so reaching it acknowledges nothing.
    pub async fn wait_hw(
        &self,
        target: Offset,
        local: i32,
        leader_epoch: i32,
        deadline: tokio::time::Instant,
    ) -> HwWait {
        let mut hw_rx = self.hw_moved.subscribe();
        let mut changed_rx = self.changed.subscribe();
        // The high watermark first, then the leadership: see `leads_in`.
        let check = || {
            let reached = self.hw() >= target;
            match (self.leads_in(local, leader_epoch), reached) {
                (false, _) => Some(HwWait::NotLeader),
                (true, true) => Some(HwWait::Reached),
                (true, false) => None,
            }
        };
        let outcome = tokio::time::timeout_at(deadline, async {
            loop {
                if let Some(done) = check() {
                    return done;
                }
                tokio::select! {
                    r = hw_rx.changed() => if r.is_err() { return HwWait::NotLeader },
                    r = changed_rx.changed() => if r.is_err() { return HwWait::NotLeader },
                }
            }
        })
        .await;
        outcome.unwrap_or_else(|_| check().unwrap_or(HwWait::TimedOut))
    }
}

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

/// How a wait for the high watermark ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwWait {
    Reached,
    /// This broker no longer leads the partition.
    NotLeader,
    TimedOut,
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

/// Owns the hosted partitions and their logs.
pub struct ReplicaManager {
    node_id: i32,
    config: BrokerConfig,
    logs: LogManager,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Serialises metadata syncs (held until a sync's file work is done).
    sync: Arc<tokio::sync::Mutex<()>>,
    /// High watermarks read from `replication-offset-checkpoint` at start.
    hw_checkpoint: Mutex<BTreeMap<TopicPartition, Offset>>,
    /// What was last written to `replication-offset-checkpoint` (unchanged: not rewritten).
    hw_written: Mutex<tributary_log::checkpoint::LastWritten>,
    /// The follower fetchers, one per leader this broker follows partitions of.
    pub fetchers: fetcher::Fetchers,
    /// The replication throttles (rates from the broker's dynamic or static config).
    pub throttles: Arc<throttle::Throttles>,
}

impl ReplicaManager {
    /// Opens the log directory (partitions are opened by [`ReplicaManager::sync`]).
    pub fn open(config: &BrokerConfig) -> Result<Self, LogError> {
        let hw_checkpoint =
            tributary_log::checkpoint::read_offset_checkpoint(&config.log_dir.join(HW_CHECKPOINT))?;
        let throttles = Arc::new(throttle::Throttles::default());
        Ok(ReplicaManager {
            node_id: config.node_id,
            config: config.clone(),
            logs: LogManager::open(&config.log_dir)?,
            partitions: RwLock::new(HashMap::new()),
            sync: Arc::new(tokio::sync::Mutex::new(())),
            hw_checkpoint: Mutex::new(hw_checkpoint),
            hw_written: Mutex::default(),
            fetchers: fetcher::Fetchers::new(config.node_id, throttles.clone()),
            throttles,
        })
    }

    /// The partition, if hosted here.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let tp = TopicPartition::new(topic, partition);
        self.partitions
            .read()
            .expect("partitions lock poisoned")
            .get(&tp)
            .cloned()
    }

    /// All hosted partitions.
    pub fn all(&self) -> Vec<(TopicPartition, Arc<Partition>)> {
        let map = self.partitions.read().expect("partitions lock poisoned");
        map.iter().map(|(tp, p)| (tp.clone(), p.clone())).collect()
    }

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

    /// Applies retention to every log (background task).
    pub fn run_retention(&self, now_ms: i64) {
        for (tp, outcome) in self.logs.run_retention(now_ms) {
            tracing::info!(
                partition = %tp,
                segments = outcome.deleted_segments,
                bytes = outcome.deleted_bytes,
                log_start = outcome.log_start_offset.0,
                "retention deleted segments"
            );
        }
    }

    /// Forgets idempotent producers idle for longer than `expiration_ms` (background task).
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) {
        let removed = self.logs.expire_producers(now_ms, expiration_ms);
        if removed > 0 {
            tracing::info!(removed, "expired idle producer ids");
        }
    }

    /// Cleans the compacted logs that are due, each below its high watermark (background
    /// task). Returns the bytes removed, for the metrics.
    pub fn run_cleaner(&self, now_ms: i64) -> u64 {
        let hws: HashMap<TopicPartition, Offset> =
            self.all().into_iter().map(|(tp, p)| (tp, p.hw())).collect();
        let mut removed = 0;
        for (tp, o) in self.logs.run_cleaner(now_ms, |tp| hws.get(tp).copied()) {
            removed += o.bytes_before.saturating_sub(o.bytes_after);
            tracing::info!(
                partition = %tp,
                segments_before = o.segments_before,
                segments_after = o.segments_after,
                bytes_before = o.bytes_before,
                bytes_after = o.bytes_after,
                records_removed = o.records_removed,
                "cleaned log"
            );
        }
        removed
    }

    /// Fsyncs the segments that rolled since the last pass (appends never wait for that; see
    /// `Log::rolled_flush`) and writes the checkpoints, the high watermarks' among them
    /// (background task, every 5 s).
    pub fn checkpoint(&self) {
        self.logs.flush_rolled();
        if let Err(e) = self.logs.checkpoint() {
            tracing::warn!(error = %e, "checkpoint failed");
        }
        let hws: BTreeMap<TopicPartition, Offset> =
            self.all().into_iter().map(|(tp, p)| (tp, p.hw())).collect();
        let path = self.config.log_dir.join(HW_CHECKPOINT);
        let mut written = self.hw_written.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = written.write_offset_checkpoint(&path, &hws) {
            tracing::warn!(error = %e, "high watermark checkpoint failed");
        }
    }

    /// Replication health of the partitions this broker leads, read at scrape time.
    pub fn replication_stats(&self) -> ReplicationStats {
        let mut stats = ReplicationStats::default();
        for (tp, part) in self.all() {
            let min_isr = part.min_insync_replicas.load(Ordering::Acquire);
            part.with_state(|st| {
                let Some(l) = st.leader() else { return };
                stats.leaders += 1;
                if l.isr.len() < l.replicas.len() {
                    stats.under_replicated += 1;
                }
                if l.isr.len() < min_isr.min(l.replicas.len()) {
                    stats.under_min_isr += 1;
                }
                for (id, f) in &l.followers {
                    let behind = l.log_end_offset.0 - f.log_end_offset.map_or(0, |o| o.0);
                    let behind = u64::try_from(behind).unwrap_or(0);
                    stats.follower_lag_messages += behind;
                    if behind > 0 {
                        stats.lagging.push((tp.clone(), *id, behind));
                    }
                }
            });
        }
        stats
    }

    /// Total bytes of all logs.
    pub fn total_size(&self) -> u64 {
        self.logs.total_size_bytes()
    }

    /// Flushes everything and marks a clean shutdown.
    pub fn shutdown(&self) {
        self.fetchers.stop_all();
        self.checkpoint();
        if let Err(e) = self.logs.shutdown() {
            tracing::error!(error = %e, "log shutdown failed");
        }
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

#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;

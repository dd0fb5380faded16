//! The replica manager: the partitions this broker hosts, each with its log and high watermark,
//! kept in step with the metadata image (logs opened or created for assigned partitions, configs
//! updated, logs of deleted topics removed).
//!
//! Replication: `partition` (one partition's leader/follower state machine, which owns its high
//! watermark), `isr` (shrink/expand decisions and AlterPartition proposals), `divergence` (where
//! a follower truncates) are pure; `fetcher` (one follower fetcher per leader broker) and
//! `isr_manager` (sends ISR changes to the controller) do the I/O. Each hosted partition's state
//! machine is fed from its metadata record by `sync`, and by the produce and fetch paths.

pub mod divergence;
pub mod fetcher;
pub mod isr;
pub mod isr_manager;
pub mod partition;
mod sync;
pub mod throttle;

pub use sync::log_config;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;
use tributary_log::{Log, LogError, LogManager, Offset, TopicPartition};
use uuid::Uuid;

use crate::config::BrokerConfig;
use partition::PartitionState;

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

/// How a wait for the high watermark ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwWait {
    Reached,
    /// This broker no longer leads the partition.
    NotLeader,
    TimedOut,
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

#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;

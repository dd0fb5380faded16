//! The quorum controller, on controller nodes: validates cluster-metadata operations against
//! the current image, turns them into records and commits them through the Raft quorum,
//! answering only after they are applied. Only the active controller (the Raft leader) accepts
//! operations; elsewhere they fail with NOT_CONTROLLER and the caller's channel tries the
//! active one.
//!
//! Operations are serialised by one async lock held from validation until the records are
//! applied, so every validation sees the result of every earlier operation. Broker lifecycle
//! (registration, heartbeats, fencing, controlled shutdown) is in `lifecycle`; leader choice
//! in `election`; replica placement in `placement`; topic and config operations in `topics`.

pub mod api;
pub mod election;
pub mod lifecycle;
pub mod partition_change;
pub mod placement;
pub mod reassignment;
mod topics;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use tokio::sync::Mutex;
use uuid::Uuid;

use super::follower::MetadataFollower;
use super::image::MetadataImage;
use super::quorum::{MetadataBatch, Quorum};
use super::records::{MetadataRecord, PartitionRecord};

/// A Kafka-level failure of one operation: the error code and the message clients see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ResponseError,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

/// A topic to create, as CreateTopics asks for it (after defaults are applied by the caller).
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// Explicit assignment (partition index → replicas); empty to let the controller choose.
    pub assignments: BTreeMap<i32, Vec<i32>>,
    pub configs: BTreeMap<String, String>,
}

/// What a successful CreateTopics reports back.
#[derive(Debug, Clone)]
pub struct CreatedTopic {
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// Timing of the broker lifecycle.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// `broker.session.timeout.ms`: a broker silent this long is fenced.
    pub session_timeout: Duration,
    /// `auto.leader.rebalance.enable` with `leader.imbalance.check.interval.seconds`: how often
    /// leadership is moved back to preferred replicas (`None`: never).
    pub leader_rebalance_interval: Option<Duration>,
    /// `leader.imbalance.per.broker.percentage`: a broker whose preferred partitions are led
    /// elsewhere above this share gets them back.
    pub leader_imbalance_percentage: u32,
    /// `unclean.leader.election.enable` (the cluster default; topics may override it).
    pub unclean_leader_election: bool,
}

/// The active controller's in-memory view of broker sessions (not replicated: a new active
/// controller gives every registered broker a fresh session, as Kafka's does).
#[derive(Default)]
struct Sessions {
    /// Session start or last heartbeat (fencing); seeded for every broker on failover.
    last_heartbeat: HashMap<i32, Instant>,
    /// Last time this controller actually heard from the broker (duplicate node ids).
    contacted: HashMap<i32, Instant>,
    /// Metadata index a broker must reach to count as caught up (its registration's).
    caught_up_at: HashMap<i32, u64>,
    /// The Raft term these sessions belong to.
    term: u64,
}

/// The quorum controller of this node.
pub struct QuorumController {
    quorum: Quorum,
    follower: Arc<MetadataFollower>,
    write: Mutex<()>,
    lifecycle: LifecycleConfig,
    sessions: std::sync::Mutex<Sessions>,
    /// The cluster id this node proposes if the quorum has none yet.
    proposed_cluster_id: String,
    /// The applied index of the last image in which no reassignment could complete: until the
    /// image changes, the next tick need not look at every partition again.
    reassignments_settled_at: AtomicU64,
}

impl QuorumController {
    /// Wraps a started quorum.
    pub fn new(
        quorum: Quorum,
        follower: Arc<MetadataFollower>,
        lifecycle: LifecycleConfig,
        proposed_cluster_id: String,
    ) -> Arc<QuorumController> {
        Arc::new(QuorumController {
            quorum,
            follower,
            write: Mutex::new(()),
            lifecycle,
            sessions: std::sync::Mutex::new(Sessions::default()),
            proposed_cluster_id,
            reassignments_settled_at: AtomicU64::new(u64::MAX),
        })
    }

    /// The quorum member.
    pub fn quorum(&self) -> &Quorum {
        &self.quorum
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.follower.image()
    }

    /// Whether this node is the active controller: the Raft leader, acknowledged by a majority
    /// within the lease (check-quorum, see `Quorum::leader`).
    pub fn is_active(&self) -> bool {
        self.quorum.leader() == Some(self.quorum.id())
    }

    /// The active controller's node id, if the quorum has a leader.
    pub fn leader(&self) -> Option<i32> {
        self.quorum.leader()
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        self.quorum.shutdown().await;
    }

    /// Commits records; returns the index of the entry that holds them.
    async fn commit(&self, records: Vec<MetadataRecord>) -> Result<u64, ApiError> {
        if records.is_empty() {
            return Ok(self.follower.applied_index());
        }
        match self
            .quorum
            .raft()
            .client_write(MetadataBatch { records })
            .await
        {
            Ok(resp) => Ok(resp.log_id.index),
            Err(openraft::error::RaftError::APIError(
                openraft::error::ClientWriteError::ForwardToLeader(_),
            )) => Err(not_controller()),
            Err(e) => Err(ApiError::new(
                ResponseError::UnknownServerError,
                format!("metadata commit failed: {e}"),
            )),
        }
    }

    /// Runs the active controller's duties until `stop` flips: on gaining leadership, writes
    /// the cluster id if there is none and starts every broker's session afresh; then fences
    /// brokers whose sessions expire.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut last_rebalance = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if !self.is_active() {
                continue;
            }
            if self.image().cluster_id.is_none() {
                let _guard = self.write.lock().await;
                if self.image().cluster_id.is_none() {
                    let id = self.proposed_cluster_id.clone();
                    match self
                        .commit(vec![MetadataRecord::ClusterId {
                            cluster_id: id.clone(),
                        }])
                        .await
                    {
                        Ok(_) => tracing::info!(cluster_id = %id, "wrote the cluster id"),
                        Err(e) => {
                            tracing::warn!(error = %e.message, "failed to write the cluster id")
                        }
                    }
                }
            }
            self.fence_expired().await;
            self.complete_reassignments().await;
            if let Some(every) = self.lifecycle.leader_rebalance_interval {
                if last_rebalance.elapsed() >= every {
                    last_rebalance = Instant::now();
                    self.rebalance_leaders().await;
                }
            }
        }
    }

    /// Elects leaders (`unclean`: Kafka's election type 1, else preferred) for `partitions`
    /// (every partition when `None`); each gets its outcome.
    pub async fn elect_leaders(
        &self,
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<((String, i32), Result<(), ResponseError>)>, ApiError> {
        let _guard = self.write.lock().await;
        if !self.is_active() {
            return Err(not_controller());
        }
        let image = self.image();
        let wanted: Vec<(String, i32)> = partitions.unwrap_or_else(|| {
            image
                .topics
                .values()
                .flat_map(|t| t.partitions.keys().map(|p| (t.name.clone(), *p)))
                .collect()
        });
        let eligible = |b: i32| image.brokers.get(&b).is_some_and(|r| r.is_active());
        let mut records = Vec::new();
        let mut results = Vec::new();
        for (topic, partition) in wanted {
            let outcome = match image
                .topics
                .get(&topic)
                .and_then(|t| t.partitions.get(&partition))
            {
                None => Err(ResponseError::UnknownTopicOrPartition),
                Some(p) => {
                    let next = if unclean {
                        election::unclean(p, eligible)
                    } else {
                        election::preferred(p, eligible)
                    };
                    next.map(|n| {
                        tracing::info!(topic = %topic, partition, leader = n.leader, epoch = n.leader_epoch, unclean, "elected leader on request");
                        records.push(MetadataRecord::Partition(n));
                    })
                }
            };
            results.push(((topic, partition), outcome));
        }
        self.commit(records).await?;
        Ok(results)
    }

    /// Moves leadership back to preferred replicas for brokers whose imbalance is above
    /// `leader.imbalance.per.broker.percentage` (active controller's timer).
    async fn rebalance_leaders(&self) {
        let image = self.image();
        let eligible = |b: i32| image.brokers.get(&b).is_some_and(|r| r.is_active());
        // Per preferred broker: its partitions, and those led by someone else.
        let mut preferred: HashMap<i32, (usize, Vec<(String, i32)>)> = HashMap::new();
        for t in image.topics.values() {
            for p in t.partitions.values() {
                let Some(first) = p.replicas.first() else {
                    continue;
                };
                let entry = preferred.entry(*first).or_default();
                entry.0 += 1;
                if p.leader != *first
                    && !reassignment::in_progress(p)
                    && election::preferred(p, eligible).is_ok()
                {
                    entry.1.push((t.name.clone(), p.partition));
                }
            }
        }
        let pct = self.lifecycle.leader_imbalance_percentage as usize;
        let moves: Vec<(String, i32)> = preferred
            .into_values()
            .filter(|(total, off)| !off.is_empty() && off.len() * 100 > total * pct)
            .flat_map(|(_, off)| off)
            .collect();
        if moves.is_empty() {
            return;
        }
        tracing::info!(
            partitions = moves.len(),
            "auto leader rebalance: moving leadership back to preferred replicas"
        );
        if let Err(e) = self.elect_leaders(false, Some(moves)).await {
            tracing::warn!(error = %e.message, "auto leader rebalance failed");
        }
    }

    /// Serves AlterPartition: each proposal is validated against the image and, if valid,
    /// committed (all valid ones in one batch); returns each one's new record or error. The
    /// sender must be the registered broker of `broker_epoch`.
    pub async fn alter_partition(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        proposals: Vec<partition_change::IsrProposal>,
    ) -> Result<Vec<Result<PartitionRecord, ResponseError>>, ApiError> {
        let _guard = self.write.lock().await;
        if !self.is_active() {
            return Err(not_controller());
        }
        let image = self.image();
        match image.brokers.get(&broker_id) {
            Some(b) if b.epoch == broker_epoch || broker_epoch < 0 => {}
            _ => {
                return Err(ApiError::new(
                    ResponseError::StaleBrokerEpoch,
                    format!("broker {broker_id} epoch {broker_epoch} is not registered"),
                ))
            }
        }
        let eligible = |b: i32| image.brokers.get(&b).is_some_and(|r| r.is_active());
        // An ISR change that brings the last target replica of a reassignment in sync completes
        // it in the same record.
        let results: Vec<_> = proposals
            .iter()
            .map(|p| {
                partition_change::apply_isr_change(&image, p)
                    .map(|next| reassignment::complete(&next, eligible).unwrap_or(next))
            })
            .collect();
        let records: Vec<MetadataRecord> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|p| MetadataRecord::Partition(p.clone()))
            .collect();
        for (p, r) in proposals.iter().zip(&results) {
            match r {
                Ok(next) => {
                    tracing::info!(topic_id = %p.topic_id, partition = p.partition, isr = ?next.isr, epoch = next.partition_epoch, "ISR changed")
                }
                Err(e) => {
                    tracing::info!(topic_id = %p.topic_id, partition = p.partition, error = ?e, "ISR change refused")
                }
            }
        }
        self.commit(records).await?;
        Ok(results)
    }

    /// Starts (target `Some`) or cancels (`None`) reassignments (KIP-455); each partition gets
    /// its outcome. Valid ones are committed together; a reassignment whose new replicas need
    /// no catching up completes in the same record.
    pub async fn alter_reassignments(
        &self,
        wanted: Vec<(String, i32, Option<Vec<i32>>)>,
    ) -> Result<Vec<Result<(), ApiError>>, ApiError> {
        let _guard = self.write.lock().await;
        if !self.is_active() {
            return Err(not_controller());
        }
        let image = self.image();
        let usable = |b: i32| image.brokers.get(&b).is_some_and(|r| !r.fenced);
        let eligible = |b: i32| image.brokers.get(&b).is_some_and(|r| r.is_active());
        let mut records = Vec::new();
        let mut results = Vec::new();
        for (topic, partition, target) in wanted {
            let Some(p) = image
                .topics
                .get(&topic)
                .and_then(|t| t.partitions.get(&partition))
            else {
                results.push(Err(ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("{topic}-{partition} does not exist"),
                )));
                continue;
            };
            let outcome = match &target {
                Some(t) => reassignment::start(p, t, usable, eligible),
                None => reassignment::cancel(p, eligible).map(Some),
            };
            match outcome {
                Ok(Some(next)) => {
                    tracing::info!(
                        topic = %topic,
                        partition,
                        target = ?target,
                        replicas = ?next.replicas,
                        adding = ?next.adding_replicas,
                        removing = ?next.removing_replicas,
                        leader = next.leader,
                        "reassignment {}",
                        if target.is_none() { "cancelled" } else if reassignment::in_progress(&next) { "started" } else { "completed at once" }
                    );
                    records.push(MetadataRecord::Partition(next));
                    results.push(Ok(()));
                }
                Ok(None) => results.push(Ok(())),
                Err((code, message)) => results.push(Err(ApiError::new(code, message))),
            }
        }
        self.commit(records).await?;
        Ok(results)
    }

    /// Completes every reassignment whose target replicas are all in sync (active controller's
    /// timer; AlterPartition completes them as their ISR changes, this catches the rest, e.g.
    /// after a controller failover or once a target leader is unfenced).
    async fn complete_reassignments(&self) {
        let image = self.image();
        // Whether a reassignment can complete depends on the image alone (the partitions'
        // target replicas and ISRs, the brokers' states): an image already found to have none
        // is not scanned again. A failed commit leaves the mark unset, so it is retried.
        if self.reassignments_settled_at.load(Ordering::Acquire) == image.applied_index {
            return;
        }
        let eligible = |b: i32| image.brokers.get(&b).is_some_and(|r| r.is_active());
        let ready: Vec<MetadataRecord> = image
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .filter(|p| reassignment::in_progress(p))
            .filter_map(|p| reassignment::complete(p, eligible))
            .map(MetadataRecord::Partition)
            .collect();
        if ready.is_empty() {
            self.reassignments_settled_at
                .store(image.applied_index, Ordering::Release);
            return;
        }
        let _guard = self.write.lock().await;
        // Judged again under the lock: an operation may have changed them meanwhile.
        let image = self.image();
        let eligible = |b: i32| image.brokers.get(&b).is_some_and(|r| r.is_active());
        let records: Vec<MetadataRecord> = ready
            .iter()
            .filter_map(|r| match r {
                MetadataRecord::Partition(p) => image
                    .topic_by_id(&p.topic_id)
                    .and_then(|t| t.partitions.get(&p.partition))
                    .and_then(|now| reassignment::complete(now, eligible)),
                _ => None,
            })
            .map(MetadataRecord::Partition)
            .collect();
        for r in &records {
            if let MetadataRecord::Partition(p) = r {
                tracing::info!(topic_id = %p.topic_id, partition = p.partition, replicas = ?p.replicas, leader = p.leader, "reassignment completed");
            }
        }
        if let Err(e) = self.commit(records).await {
            tracing::warn!(error = %e.message, "completing reassignments failed");
        }
    }

    /// Hands `count` producer ids to `broker_id`: they are never handed out again, across
    /// restarts and brokers, because the block is committed before it is returned.
    pub async fn allocate_producer_ids(
        &self,
        broker_id: i32,
        count: i64,
    ) -> Result<std::ops::Range<i64>, ApiError> {
        let _guard = self.write.lock().await;
        let start = self.image().next_producer_id;
        let end = start.checked_add(count).ok_or_else(|| {
            ApiError::new(ResponseError::UnknownServerError, "producer ids exhausted")
        })?;
        self.commit(vec![MetadataRecord::ProducerIds {
            broker_id,
            next_producer_id: end,
        }])
        .await?;
        Ok(start..end)
    }
}

fn not_controller() -> ApiError {
    ApiError::new(
        ResponseError::NotController,
        "this node is not the active controller",
    )
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;

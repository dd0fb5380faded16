//! The quorum controller, on controller nodes: validates cluster-metadata operations against
//! the current image, turns them into records and commits them through the Raft quorum,
//! answering only after they are applied. Only the active controller (the Raft leader) accepts
//! operations; elsewhere they fail with NOT_CONTROLLER and the caller's channel tries the
//! active one.
//!
//! Operations are serialised by one async lock held from validation until the records are
//! applied, so every validation sees the result of every earlier operation. Broker lifecycle
//! (registration, heartbeats, fencing, controlled shutdown) is in `lifecycle`; leader choice
//! in `election`; replica placement in `placement`.

pub mod api;
pub mod election;
pub mod lifecycle;
pub mod partition_change;
pub mod placement;
pub mod reassignment;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use tokio::sync::Mutex;
use uuid::Uuid;

use super::follower::MetadataFollower;
use super::image::MetadataImage;
use super::quorum::{MetadataBatch, Quorum};
use super::records::{ConfigResource, MetadataRecord, PartitionRecord};
use crate::topic_config;
use placement as validate;

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

fn not_controller() -> ApiError {
    ApiError::new(
        ResponseError::NotController,
        "this node is not the active controller",
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn new_topic(name: &str, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: 1,
            assignments: BTreeMap::new(),
            configs: BTreeMap::new(),
        }
    }

    use crate::metadata::controller::lifecycle::{Heartbeat, Registration};
    use crate::metadata::quorum::QuorumConfig;

    /// A one-voter quorum controller, active, with its cluster id written.
    async fn start(dir: &std::path::Path) -> Arc<QuorumController> {
        let follower = Arc::new(MetadataFollower::default());
        let quorum = Quorum::start(
            QuorumConfig {
                node_id: 1,
                dir: dir.to_path_buf(),
                voters: vec![(1, "127.0.0.1:0".into())],
                snapshot_interval: 1000,
            },
            follower.clone(),
        )
        .await
        .expect("start");
        assert!(quorum.wait_leader_caught_up(Duration::from_secs(10)).await);
        let c = QuorumController::new(
            quorum,
            follower,
            LifecycleConfig {
                session_timeout: Duration::from_secs(9),
                leader_rebalance_interval: None,
                leader_imbalance_percentage: 10,
                unclean_leader_election: false,
            },
            "test-cluster".into(),
        );
        let (_stop, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(c.clone().run(rx));
        for _ in 0..200 {
            if c.image().cluster_id.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(c.image().cluster_id.is_some(), "cluster id written");
        c
    }

    /// Registers broker `id` and unfences it with a caught-up heartbeat.
    async fn add_broker(c: &QuorumController, id: i32) {
        let epoch = c
            .register_broker(Registration {
                broker_id: id,
                cluster_id: "test-cluster".into(),
                incarnation_id: Uuid::new_v4(),
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
            })
            .await
            .expect("register");
        let answer = c
            .heartbeat(Heartbeat {
                broker_id: id,
                broker_epoch: epoch,
                metadata_offset: i64::MAX,
                want_fence: false,
                want_shut_down: false,
            })
            .await
            .expect("heartbeat");
        assert!(!answer.is_fenced);
    }

    #[tokio::test]
    async fn topics_survive_a_restart_through_the_raft_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = start(dir.path()).await;
        add_broker(&c, 1).await;
        let mut t = new_topic("orders", 3);
        t.configs.insert("retention.ms".into(), "1000".into());
        let res = c
            .create_topics(
                vec![t, new_topic("orders", 1), new_topic("bad name", 1)],
                false,
            )
            .await;
        assert!(res[0].is_ok());
        assert_eq!(
            res[1].as_ref().expect_err("dup").code,
            ResponseError::TopicAlreadyExists
        );
        assert_eq!(
            res[2].as_ref().expect_err("name").code,
            ResponseError::InvalidTopicException
        );
        c.create_partitions("orders", 5, vec![], false)
            .await
            .expect("grow");
        c.alter_topic_configs("orders", false, |cur| {
            let mut m = cur.clone();
            m.insert("segment.bytes".into(), "4096".into());
            Ok(m)
        })
        .await
        .expect("alter");
        let id = c.image().topics["orders"].topic_id;
        c.shutdown().await;
        drop(c);

        let c = start(dir.path()).await;
        let image = c.image();
        let t = &image.topics["orders"];
        assert_eq!(t.topic_id, id);
        assert_eq!(t.partitions.len(), 5);
        assert_eq!(t.configs["retention.ms"], "1000");
        assert_eq!(t.configs["segment.bytes"], "4096");
        assert_eq!(image.brokers[&1].port, 9092);
        let del = c.delete_topics(vec!["orders".into(), "nope".into()]).await;
        assert_eq!(del[0], Ok(id));
        assert_eq!(
            del[1].as_ref().expect_err("unknown").code,
            ResponseError::UnknownTopicOrPartition
        );
        assert!(c.image().topics.is_empty());
        c.shutdown().await;
    }

    #[tokio::test]
    async fn producer_id_blocks_never_repeat_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = start(dir.path()).await;
        let a = c.allocate_producer_ids(1, 1000).await.expect("a");
        let b = c.allocate_producer_ids(1, 1000).await.expect("b");
        assert_eq!((a.clone(), b.clone()), (0..1000, 1000..2000));
        c.shutdown().await;
        drop(c);
        let c = start(dir.path()).await;
        assert_eq!(c.allocate_producer_ids(1, 10).await.expect("c"), 2000..2010);
        c.shutdown().await;
    }

    #[tokio::test]
    async fn validate_only_and_bad_requests_write_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = start(dir.path()).await;
        add_broker(&c, 1).await;
        assert!(c.create_topics(vec![new_topic("t", 2)], true).await[0].is_ok());
        assert!(c.image().topics.is_empty());
        let mut bad = new_topic("t", 1);
        bad.replication_factor = 3;
        let res = c.create_topics(vec![bad], false).await;
        assert_eq!(
            res[0].as_ref().expect_err("rf").code,
            ResponseError::InvalidReplicationFactor
        );
        let mut bad = new_topic("t", 1);
        bad.configs.insert("retention.ms".into(), "soon".into());
        let res = c.create_topics(vec![bad], false).await;
        assert_eq!(
            res[0].as_ref().expect_err("config").code,
            ResponseError::InvalidConfig
        );
        assert!(c.create_topics(vec![new_topic("t", 2)], false).await[0].is_ok());
        let err = c
            .create_partitions("t", 2, vec![], false)
            .await
            .expect_err("not larger");
        assert_eq!(err.code, ResponseError::InvalidPartitions);
        c.shutdown().await;
    }
}

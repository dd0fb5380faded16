//! The group coordinator: owns every group of the `__consumer_offsets` partitions this broker
//! leads, drives each group's state machine (`state.rs`), parks JoinGroup/SyncGroup requests
//! until the rebalance answers them, runs the timers, and writes group metadata through a
//! [`GroupLog`]. Offset commits and the admin APIs are in `offsets.rs`; loading a partition in
//! `load.rs`.
//!
//! Locking: `inner` (a std mutex, never held across an await) guards groups, partitions and
//! parked requests. `write` (async) serialises appends to the log with the in-memory update
//! that follows each, so the log and memory agree on the order of writes.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::records::{GroupRecord, GroupValue, OffsetValue, StoredMember};
use super::state::{Effect, Group, GroupTimeouts, JoinRequest, JoinResponse, Reply};
use super::state::{SyncRequest, SyncResponse};
use super::{partition_for, GroupConfig};
use crate::broker::now_ms;

/// A boxed future, for the object-safe [`GroupLog`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the coordinator's records live: the partitions of `__consumer_offsets`.
pub trait GroupLog: Send + Sync + 'static {
    /// Appends one batch to a partition; resolves only once the batch is committed (the high
    /// watermark passed it). Errors are the Kafka codes to answer with.
    fn append(&self, partition: i32, batch: BytesMut) -> BoxFuture<'_, Result<(), ResponseError>>;
    /// Every committed batch of a partition, from its log start to its high watermark.
    fn read_all(&self, partition: i32) -> BoxFuture<'_, Result<Bytes, ResponseError>>;
}

/// Whether a led partition's groups are in memory yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Load {
    Loading,
    Loaded,
}

/// A group and its committed offsets.
pub(super) struct Entry {
    pub(super) group: Group,
    pub(super) offsets: BTreeMap<(String, i32), OffsetValue>,
    pub(super) partition: i32,
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) num_partitions: i32,
    pub(super) partitions: HashMap<i32, Load>,
    pub(super) groups: HashMap<String, Entry>,
    joins: HashMap<(String, String), oneshot::Sender<JoinResponse>>,
    syncs: HashMap<(String, String), oneshot::Sender<SyncResponse>>,
    /// The instant the timer task sleeps until (`None` before it first sleeps).
    armed: Option<Instant>,
}

/// Sync answers held back until the group metadata they depend on is written.
type Deferred = Vec<(oneshot::Sender<SyncResponse>, SyncResponse)>;

/// The coordinator for the groups of the partitions this broker leads.
pub struct GroupCoordinator {
    pub(super) config: GroupConfig,
    pub(super) log: Arc<dyn GroupLog>,
    pub(super) inner: Mutex<Inner>,
    /// One write lock per `__consumer_offsets` partition, held from the check of a write to
    /// its in-memory effect, across the wait for the high watermark: writes of one partition
    /// are applied in log order, and a partition whose replication is stuck holds up only the
    /// groups it stores.
    writes: WriteLocks,
    /// Wakes the timer task when a group gets a deadline earlier than the one it sleeps until.
    timers: tokio::sync::Notify,
}

/// The per-partition write locks of a coordinator.
#[derive(Default)]
struct WriteLocks(Mutex<HashMap<i32, Arc<tokio::sync::Mutex<()>>>>);

/// Write locks held, released when dropped.
pub(super) struct WriteGuard {
    _held: Vec<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteLocks {
    /// Locks these partitions, in ascending order (so two callers never deadlock).
    async fn lock(&self, partitions: impl IntoIterator<Item = i32>) -> WriteGuard {
        let mut ps: Vec<i32> = partitions.into_iter().collect();
        ps.sort_unstable();
        ps.dedup();
        let mut held = Vec::with_capacity(ps.len());
        for p in ps {
            let m = self
                .0
                .lock()
                .expect("write locks poisoned")
                .entry(p)
                .or_default()
                .clone();
            held.push(m.lock_owned().await);
        }
        WriteGuard { _held: held }
    }
}

impl GroupCoordinator {
    /// A coordinator that leads no partition yet (see `sync_partitions`).
    pub fn new(config: GroupConfig, log: Arc<dyn GroupLog>) -> Arc<Self> {
        Arc::new(GroupCoordinator {
            inner: Mutex::new(Inner {
                num_partitions: config.offsets_partitions,
                ..Inner::default()
            }),
            config,
            log,
            writes: WriteLocks::default(),
            timers: tokio::sync::Notify::new(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("group coordinator lock poisoned")
    }

    /// Wakes the timer task if `group_id`, just changed by a request, now has a deadline
    /// before the one the task sleeps until. Callers hold the lock. (A heartbeat or an offset
    /// commit only moves a member's deadline later, and needs no call.)
    fn rearm(&self, inner: &Inner, group_id: &str) {
        let next = inner
            .groups
            .get(group_id)
            .and_then(|e| e.group.next_deadline());
        if next.is_some_and(|d| inner.armed.is_none_or(|armed| d < armed)) {
            self.timers.notify_one();
        }
    }

    /// Wakes the timer task to look at every group's deadlines again (groups were loaded).
    pub(super) fn rearm_all(&self) {
        self.timers.notify_one();
    }

    /// The write lock of the partition that stores `group_id`.
    pub(super) async fn write_group(&self, group_id: &str) -> WriteGuard {
        let p = super::partition_for(group_id, self.lock().num_partitions);
        self.writes.lock([p]).await
    }

    /// The write locks of the partitions that store these groups.
    pub(super) async fn write_groups(&self, group_ids: &[String]) -> WriteGuard {
        let n = self.lock().num_partitions;
        let ps: Vec<i32> = group_ids
            .iter()
            .map(|g| super::partition_for(g, n))
            .collect();
        self.writes.lock(ps).await
    }

    /// Every partition's write lock (background passes over all groups).
    pub(super) async fn write_all(&self) -> WriteGuard {
        let n = self.lock().num_partitions;
        self.writes.lock(0..n).await
    }

    fn timeouts(&self) -> GroupTimeouts {
        GroupTimeouts {
            initial_rebalance_delay: self.config.initial_rebalance_delay,
        }
    }

    /// Checks that this broker coordinates the group and has loaded it; returns its partition.
    pub(super) fn owner(inner: &Inner, group_id: &str) -> Result<i32, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let p = partition_for(group_id, inner.num_partitions);
        match inner.partitions.get(&p) {
            Some(Load::Loaded) => Ok(p),
            Some(Load::Loading) => Err(ResponseError::CoordinatorLoadInProgress),
            None => Err(ResponseError::NotCoordinator),
        }
    }

    /// The existing group, or a new empty one on its partition.
    pub(super) fn entry<'a>(&self, inner: &'a mut Inner, group_id: &str, p: i32) -> &'a mut Entry {
        let timeouts = self.timeouts();
        inner
            .groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Entry {
                group: Group::new(group_id, timeouts, now_ms()),
                offsets: BTreeMap::new(),
                partition: p,
            })
    }

    /// Answers parked requests; returns the sync answers to hold until the group is written
    /// and whether it must be.
    fn deliver(inner: &mut Inner, group_id: &str, effects: Vec<Effect>) -> (Deferred, bool) {
        let mut persist = false;
        let mut deferred = Vec::new();
        for e in effects {
            match e {
                Effect::Join(member, resp) => {
                    if let Some(tx) = inner.joins.remove(&(group_id.to_owned(), member)) {
                        let _ = tx.send(resp);
                    }
                }
                Effect::Sync(member, resp) => {
                    if let Some(tx) = inner.syncs.remove(&(group_id.to_owned(), member)) {
                        deferred.push((tx, resp));
                    }
                }
                Effect::PersistGroup => persist = true,
            }
        }
        (deferred, persist)
    }

    /// Writes the group's metadata (if asked) and then releases the held sync answers; if the
    /// write fails they become errors and the members rejoin.
    async fn finish(&self, group_id: &str, deferred: Deferred, persist: bool) {
        let result = if persist {
            self.persist_group(group_id).await
        } else {
            Ok(())
        };
        for (tx, resp) in deferred {
            let resp = match result {
                Ok(()) => resp,
                Err(e) => SyncResponse::error(e),
            };
            let _ = tx.send(resp);
        }
    }

    /// Writes the current metadata record of a group (a tombstone if it is gone).
    pub(super) async fn persist_group(&self, group_id: &str) -> Result<(), ResponseError> {
        let _w = self.write_group(group_id).await;
        let (p, record) = {
            let inner = self.lock();
            let Some(e) = inner.groups.get(group_id) else {
                return Ok(());
            };
            (e.partition, group_record(&e.group))
        };
        let result = self.append(p, &[record]).await;
        if let Err(e) = &result {
            tracing::warn!(group = group_id, error = ?e, "failed to write group metadata");
        }
        result
    }

    /// Appends records as one batch (callers hold `write`).
    pub(super) async fn append(
        &self,
        p: i32,
        records: &[GroupRecord],
    ) -> Result<(), ResponseError> {
        let batch = super::records::encode_batch(records, now_ms()).map_err(|e| {
            tracing::error!(error = %e, "failed to build a __consumer_offsets batch");
            ResponseError::UnknownServerError
        })?;
        self.log.append(p, batch).await
    }

    /// JoinGroup: answered when the rebalance completes (or at once for errors, known
    /// members of a stable group and MEMBER_ID_REQUIRED).
    pub async fn join(&self, group_id: &str, req: JoinRequest) -> JoinResponse {
        let member = req.member_id.clone();
        let bounds = self.config.min_session_timeout..=self.config.max_session_timeout;
        if !bounds.contains(&req.session_timeout) {
            return JoinResponse::error(ResponseError::InvalidSessionTimeout, &member);
        }
        let (reply, deferred, persist) = {
            let mut inner = self.lock();
            let p = match Self::owner(&inner, group_id) {
                Ok(p) => p,
                Err(e) => return JoinResponse::error(e, &member),
            };
            if !member.is_empty() && !inner.groups.contains_key(group_id) {
                return JoinResponse::error(ResponseError::UnknownMemberId, &member);
            }
            let entry = self.entry(&mut inner, group_id, p);
            let (reply, effects) = entry.group.join(req, Instant::now(), now_ms());
            let reply = match reply {
                Reply::Now(r) => Ok(r),
                Reply::Wait { member_id } => {
                    let (tx, rx) = oneshot::channel();
                    inner.joins.insert((group_id.to_owned(), member_id), tx);
                    Err(rx)
                }
            };
            let (deferred, persist) = Self::deliver(&mut inner, group_id, effects);
            self.rearm(&inner, group_id);
            (reply, deferred, persist)
        };
        self.finish(group_id, deferred, persist).await;
        match reply {
            Ok(r) => r,
            // The parked request was replaced by a newer join of the same member.
            Err(rx) => rx.await.unwrap_or_else(|_| {
                JoinResponse::error(ResponseError::RebalanceInProgress, &member)
            }),
        }
    }

    /// SyncGroup: followers wait for the leader's assignment; the leader's completes the
    /// rebalance once the group metadata is written.
    pub async fn sync(&self, group_id: &str, req: SyncRequest) -> SyncResponse {
        let (reply, deferred, persist) = {
            let mut inner = self.lock();
            if let Err(e) = Self::owner(&inner, group_id) {
                return SyncResponse::error(e);
            }
            let Some(entry) = inner.groups.get_mut(group_id) else {
                return SyncResponse::error(ResponseError::UnknownMemberId);
            };
            let (reply, effects) = entry.group.sync(req, Instant::now(), now_ms());
            let reply = match reply {
                Reply::Now(r) => Ok(r),
                Reply::Wait { member_id } => {
                    let (tx, rx) = oneshot::channel();
                    inner.syncs.insert((group_id.to_owned(), member_id), tx);
                    Err(rx)
                }
            };
            let (deferred, persist) = Self::deliver(&mut inner, group_id, effects);
            self.rearm(&inner, group_id);
            (reply, deferred, persist)
        };
        self.finish(group_id, deferred, persist).await;
        match reply {
            Ok(r) => r,
            Err(rx) => rx
                .await
                .unwrap_or_else(|_| SyncResponse::error(ResponseError::RebalanceInProgress)),
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let mut inner = self.lock();
        Self::owner(&inner, group_id)?;
        let entry = inner
            .groups
            .get_mut(group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        entry
            .group
            .heartbeat(member_id, instance_id, generation, Instant::now())
    }

    /// LeaveGroup for a batch of (member id, instance id); one result per member.
    pub async fn leave(
        &self,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        let (results, deferred, persist) = {
            let mut inner = self.lock();
            Self::owner(&inner, group_id)?;
            let Some(entry) = inner.groups.get_mut(group_id) else {
                let n = members.len();
                return Ok(vec![Err(ResponseError::UnknownMemberId); n]);
            };
            let mut effects = Vec::new();
            let mut results = Vec::new();
            for (member, instance) in members {
                let r = entry
                    .group
                    .leave(&member, instance.as_deref(), Instant::now(), now_ms());
                results.push(r.map(|e| effects.extend(e)));
            }
            let (deferred, persist) = Self::deliver(&mut inner, group_id, effects);
            self.rearm(&inner, group_id);
            (results, deferred, persist)
        };
        self.finish(group_id, deferred, persist).await;
        Ok(results)
    }

    /// The instant the timer task sleeps until, recorded for [`Self::rearm`]: the earliest
    /// deadline of any group, or `idle` when there is none. A deadline the last tick (at
    /// `last_tick`) left in the past is retried `STUCK_RETRY` after it rather than at once, so
    /// the task never spins.
    fn arm(&self, last_tick: Instant, idle: Instant) -> Instant {
        let mut inner = self.lock();
        let next = inner
            .groups
            .values()
            .filter_map(|e| e.group.next_deadline())
            .min();
        let wake = match next {
            Some(d) if d > last_tick => d.min(idle),
            Some(_) => (last_tick + STUCK_RETRY).min(idle),
            None => idle,
        };
        inner.armed = Some(wake);
        wake
    }

    /// Runs every group's timers once.
    pub async fn tick(&self) {
        self.tick_groups(None).await;
    }

    /// Runs the timers of `only` (every group when None) once: a request about a group first
    /// applies what its deadlines decided, so it never sees a member whose session ran out.
    pub(super) async fn tick_groups(&self, only: Option<&[String]>) {
        let work: Vec<(String, Deferred, bool)> = {
            let mut inner = self.lock();
            let (now, now_ms) = (Instant::now(), now_ms());
            let ids: Vec<String> = match only {
                Some(ids) => ids.to_vec(),
                None => inner.groups.keys().cloned().collect(),
            };
            ids.into_iter()
                .filter_map(|id| {
                    let effects = inner.groups.get_mut(&id)?.group.tick(now, now_ms);
                    let (deferred, persist) = Self::deliver(&mut inner, &id, effects);
                    // A request's tick can start a phase with its own deadline; the timer
                    // task's own tick is followed by a fresh look at every deadline anyway.
                    if only.is_some() {
                        self.rearm(&inner, &id);
                    }
                    (persist || !deferred.is_empty()).then_some((id, deferred, persist))
                })
                .collect()
        };
        for (id, deferred, persist) in work {
            self.finish(&id, deferred, persist).await;
        }
    }

    /// Drops the groups of partitions no longer led here, answering their parked requests.
    pub(super) fn unload(&self, inner: &mut Inner, p: i32) {
        inner.partitions.remove(&p);
        let gone: Vec<String> = inner
            .groups
            .iter()
            .filter(|(_, e)| e.partition == p)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            inner.groups.remove(&id);
            // Dropping a parked request's sender answers it (as a retriable error).
            inner.joins.retain(|(g, _), _| g != &id);
            inner.syncs.retain(|(g, _), _| g != &id);
        }
    }
}

/// The group's metadata record as Kafka stores it.
pub(super) fn group_record(g: &Group) -> GroupRecord {
    let protocol = g.protocol.clone().unwrap_or_default();
    let members = g
        .members
        .values()
        .map(|m| StoredMember {
            member_id: m.member_id.clone(),
            instance_id: m.instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            rebalance_timeout_ms: ms(m.rebalance_timeout),
            session_timeout_ms: ms(m.session_timeout),
            subscription: m.metadata(&protocol).cloned().unwrap_or_default(),
            assignment: m.assignment.clone(),
        })
        .collect();
    GroupRecord::Group {
        group: g.id.clone(),
        value: Some(GroupValue {
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            generation: g.generation,
            protocol: g.protocol.clone(),
            leader: g.leader.clone(),
            state_timestamp_ms: g.state_timestamp_ms,
            members,
        }),
    }
}

fn ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// Ticks the coordinator's timers until `stop` flips (background task). It sleeps until the
/// earliest deadline of any group; a request that sets an earlier one wakes it
/// ([`GroupCoordinator::rearm`]), so an idle coordinator does not wake at all.
pub async fn run_timers(coordinator: Arc<GroupCoordinator>, mut stop: watch::Receiver<bool>) {
    let mut cleanup = tokio::time::interval(coordinator.config.retention_check_interval);
    let mut last_tick = Instant::now();
    loop {
        let wake = coordinator.arm(last_tick, Instant::now() + IDLE_WAKE);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {
                last_tick = Instant::now();
                coordinator.tick().await;
            }
            // Look at the deadlines again.
            _ = coordinator.timers.notified() => {}
            _ = cleanup.tick() => coordinator.expire_offsets(now_ms()).await,
            _ = stop.changed() => return,
        }
    }
}

/// How long the timer task sleeps when no group has a deadline. Nothing relies on this wake:
/// every request that sets an earlier deadline wakes the task.
const IDLE_WAKE: Duration = Duration::from_secs(60);

/// When a deadline is still due after a tick (nothing it could do yet), the next look at it.
const STUCK_RETRY: Duration = Duration::from_millis(100);

#[cfg(test)]
#[path = "coordinator_tests.rs"]
mod tests;

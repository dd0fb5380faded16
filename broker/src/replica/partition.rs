//! One partition's replication state on this broker, as a pure state machine: whether this
//! broker leads the partition, follows it or holds no role, under which leader epoch and
//! partition epoch, and — while it leads — the ISR, each follower's progress, the high watermark
//! and the one ISR change in flight to the controller.
//!
//! Contracts:
//! - **The high watermark is owned here.** While this broker leads, it moves up to the smallest
//!   log end offset over the *maximal* ISR (the committed ISR plus whatever a pending change
//!   adds, so a change that is refused can never have let it run ahead; KIP-497) and over
//!   followers outside the ISR that are caught up and eligible (they are about to join; without
//!   waiting for them a follower could never reach a high watermark that runs with the leader's
//!   appends). It moves only while the committed ISR has at least the effective
//!   `min.insync.replicas` (KIP-966; capped at the replication factor, as Kafka's
//!   `effectiveMinIsr`). It never decreases; it only follows the log down when the log itself is
//!   truncated below it ([`PartitionState::on_log_truncated`], which only an unclean election
//!   can require). A follower learns it from the leader ([`PartitionState::on_leader_high_watermark`])
//!   and keeps it when it becomes leader.
//! - **Epochs fence everything.** A metadata record whose partition epoch is not newer than the
//!   applied one, or whose leader epoch is older, is ignored ([`Transition::Ignored`]); a request
//!   made under an older leader epoch is refused with FENCED_LEADER_EPOCH, under a newer one with
//!   UNKNOWN_LEADER_EPOCH, as Kafka answers.
//! - **Time is a parameter.** Nothing here reads a clock, sleeps, locks or does I/O. The caller
//!   keeps one lock per partition around this state and the log operations a transition asks for.
//!
//! Deliberately not here: reading, appending to or truncating the log (a [`Transition`] tells the
//! caller to record a leader-epoch start or to truncate); sending AlterPartition (the decision is
//! [`super::isr`]; its committed result comes back as a metadata record through
//! [`PartitionState::on_metadata`]); the truncation point ([`super::divergence`]); delayed
//! produce and fetch; broker-epoch checks on follower fetches (KIP-903). The replica manager
//! (`replica/mod.rs`) holds one per hosted partition and feeds it from metadata, produce,
//! follower fetches and the fetcher.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use thiserror::Error;
use tokio::time::Instant;
use tributary_log::Offset;

use super::isr::{self, IsrProposal};
use crate::metadata::records::PartitionRecord;

#[path = "partition_roles.rs"]
mod roles;
pub use roles::{
    Follower, FollowerProgress, Leader, LeaderEpoch, PartitionEpoch, ReplicaSettings, Role,
    DEFAULT_REPLICA_LAG_TIME_MAX,
};

/// What a metadata record did, and what the caller must do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Transition {
    /// This broker now leads: record `leader_epoch` starting at `epoch_start_offset` in the
    /// log's leader-epoch cache, stop fetching, and complete what waits on the high watermark
    /// if it moved.
    BecameLeader {
        leader_epoch: LeaderEpoch,
        epoch_start_offset: Offset,
        high_watermark: Option<Offset>,
    },
    /// This broker now follows `leader` (none: the partition has no leader). When
    /// `truncate_needed`, the fetcher must find where the log diverged from the leader's
    /// ([`super::divergence`]) and truncate there before fetching.
    BecameFollower {
        leader: Option<i32>,
        leader_epoch: LeaderEpoch,
        truncate_needed: bool,
    },
    /// Same role and leader epoch; the ISR or assignment changed (a pending ISR change is
    /// settled). The high watermark moved if `Some`.
    Updated { high_watermark: Option<Offset> },
    /// The record no longer assigns this broker: stop serving and fetching. Deleting the log is
    /// the replica manager's decision.
    Removed,
    /// The record is stale and nothing changed.
    Ignored(Stale),
}

/// Why a metadata record was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Its partition epoch is not newer than the applied one (older, or already applied).
    PartitionEpoch {
        current: PartitionEpoch,
        received: PartitionEpoch,
    },
    /// It would move the leader epoch backwards.
    LeaderEpoch {
        current: LeaderEpoch,
        received: LeaderEpoch,
    },
}

/// A request this partition refuses, with the Kafka error it answers ([`Self::kafka_error`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplicaError {
    /// This broker does not lead the partition (`leader`/`leader_epoch`: what it knows).
    #[error("this broker does not lead the partition (leader {leader:?}, epoch {leader_epoch:?})")]
    NotLeaderOrFollower {
        leader: Option<i32>,
        leader_epoch: Option<LeaderEpoch>,
    },
    #[error("leader epoch {requested} is older than the current leader epoch {current}")]
    FencedLeaderEpoch {
        requested: LeaderEpoch,
        current: LeaderEpoch,
    },
    #[error("leader epoch {requested} is newer than the current leader epoch {current}")]
    UnknownLeaderEpoch {
        requested: LeaderEpoch,
        current: LeaderEpoch,
    },
    /// A follower fetch from a broker that is not an assigned follower in this leader epoch.
    #[error("broker {replica} is not a follower of the partition in leader epoch {leader_epoch}")]
    UnknownReplica {
        replica: i32,
        leader_epoch: LeaderEpoch,
    },
    #[error("fetch offset {fetch_offset} is beyond the log end offset {log_end}")]
    OffsetOutOfRange {
        fetch_offset: Offset,
        log_end: Offset,
    },
    /// A follower fetch whose last fetched epoch this leader cannot place (see
    /// [`super::divergence::diverging_epoch`]).
    #[error("no end offset is known for the last fetched epoch {epoch}")]
    UnknownFetchedEpoch { epoch: LeaderEpoch },
    #[error("{isr} in-sync replicas, fewer than min.insync.replicas {min_isr}")]
    NotEnoughReplicas { isr: usize, min_isr: usize },
}

impl ReplicaError {
    /// The error code Kafka answers with.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            ReplicaError::NotLeaderOrFollower { .. } => ResponseError::NotLeaderOrFollower,
            ReplicaError::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
            // Kafka 4: a replica id it does not know, with a current leader epoch in the
            // request, is UNKNOWN_LEADER_EPOCH, so the follower retries with newer metadata.
            ReplicaError::UnknownLeaderEpoch { .. } | ReplicaError::UnknownReplica { .. } => {
                ResponseError::UnknownLeaderEpoch
            }
            ReplicaError::OffsetOutOfRange { .. } | ReplicaError::UnknownFetchedEpoch { .. } => {
                ResponseError::OffsetOutOfRange
            }
            ReplicaError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
        }
    }
}

/// One partition's replication state on this broker (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    local_id: i32,
    settings: ReplicaSettings,
    /// Brokers that may not join an ISR (fenced or shutting down), from the metadata image.
    ineligible: BTreeSet<i32>,
    high_watermark: Offset,
    role: Role,
}

impl PartitionState {
    /// A partition hosted by broker `local_id`, with no role yet, whose log's high watermark is
    /// `high_watermark` (from its checkpoint, at most the log end).
    pub fn new(local_id: i32, high_watermark: Offset, settings: ReplicaSettings) -> Self {
        PartitionState {
            local_id,
            settings,
            ineligible: BTreeSet::new(),
            high_watermark,
            role: Role::Offline {
                partition_epoch: None,
            },
        }
    }

    pub fn local_id(&self) -> i32 {
        self.local_id
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    pub fn settings(&self) -> ReplicaSettings {
        self.settings
    }

    /// The leader's state, if this broker leads.
    pub fn leader(&self) -> Option<&Leader> {
        match &self.role {
            Role::Leader(l) => Some(l),
            _ => None,
        }
    }

    /// Offsets below this are committed. Never decreases (see the module docs).
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    pub fn leader_epoch(&self) -> Option<LeaderEpoch> {
        match &self.role {
            Role::Leader(l) => Some(l.leader_epoch),
            Role::Follower(f) => Some(f.leader_epoch),
            Role::Offline { .. } => None,
        }
    }

    pub fn partition_epoch(&self) -> Option<PartitionEpoch> {
        match &self.role {
            Role::Leader(l) => Some(l.partition_epoch),
            Role::Follower(f) => Some(f.partition_epoch),
            Role::Offline { partition_epoch } => *partition_epoch,
        }
    }

    /// Whether `broker` may join the ISR (it is not fenced or shutting down).
    pub fn is_eligible(&self, broker: i32) -> bool {
        !self.ineligible.contains(&broker)
    }

    /// Applies the partition's metadata record (`local_log_end`: this broker's log end offset
    /// now). Stale records change nothing; see [`Transition`] for what the caller must do.
    pub fn on_metadata(
        &mut self,
        record: &PartitionRecord,
        local_log_end: Offset,
        now: Instant,
    ) -> Transition {
        if let Some(stale) = self.staleness(record) {
            return Transition::Ignored(stale);
        }
        if !record.replicas.contains(&self.local_id) {
            self.role = Role::Offline {
                partition_epoch: Some(PartitionEpoch(record.partition_epoch)),
            };
            return Transition::Removed;
        }
        if record.leader == self.local_id {
            self.lead(record, local_log_end, now)
        } else {
            self.follow(record)
        }
    }

    fn staleness(&self, record: &PartitionRecord) -> Option<Stale> {
        let received = PartitionEpoch(record.partition_epoch);
        if let Some(current) = self.partition_epoch().filter(|c| received <= *c) {
            return Some(Stale::PartitionEpoch { current, received });
        }
        let received = LeaderEpoch(record.leader_epoch);
        let current = self.leader_epoch().filter(|c| received < *c)?;
        Some(Stale::LeaderEpoch { current, received })
    }

    fn lead(
        &mut self,
        record: &PartitionRecord,
        local_log_end: Offset,
        now: Instant,
    ) -> Transition {
        let leader_epoch = LeaderEpoch(record.leader_epoch);
        let isr: BTreeSet<i32> = record.isr.iter().copied().collect();
        let local = self.local_id;
        let others = record.replicas.iter().copied().filter(move |r| *r != local);
        let previous = std::mem::replace(
            &mut self.role,
            Role::Offline {
                partition_epoch: None,
            },
        );
        let (mut leader, new_epoch) = match previous {
            Role::Leader(mut l) if l.leader_epoch == leader_epoch => {
                // Same leadership, new ISR or assignment: keep what is known of followers.
                let mut old = std::mem::take(&mut l.followers);
                l.followers = others
                    .map(|r| (r, old.remove(&r).unwrap_or_default()))
                    .collect();
                (l, false)
            }
            previous => {
                let old = match previous {
                    Role::Leader(l) => l.followers,
                    _ => BTreeMap::new(),
                };
                let followers = others
                    .map(|r| {
                        let p = FollowerProgress::for_new_epoch(
                            old.get(&r),
                            isr.contains(&r),
                            local_log_end,
                            now,
                        );
                        (r, p)
                    })
                    .collect();
                let leader = Leader {
                    leader_epoch,
                    partition_epoch: PartitionEpoch(record.partition_epoch),
                    replicas: Vec::new(),
                    isr: BTreeSet::new(),
                    followers,
                    pending_isr_change: None,
                    log_end_offset: local_log_end,
                    epoch_start_offset: local_log_end,
                };
                (leader, true)
            }
        };
        leader.partition_epoch = PartitionEpoch(record.partition_epoch);
        leader.replicas = record.replicas.clone();
        leader.isr = isr;
        // A newer partition epoch settles any pending change: committed, or superseded (the
        // controller refuses a proposal based on an older partition epoch).
        leader.pending_isr_change = None;
        leader.log_end_offset = local_log_end;
        let epoch_start_offset = leader.epoch_start_offset;
        self.role = Role::Leader(leader);
        let high_watermark = self.maybe_advance_high_watermark(now);
        if new_epoch {
            Transition::BecameLeader {
                leader_epoch,
                epoch_start_offset,
                high_watermark,
            }
        } else {
            Transition::Updated { high_watermark }
        }
    }

    fn follow(&mut self, record: &PartitionRecord) -> Transition {
        let leader = (record.leader >= 0).then_some(record.leader);
        let leader_epoch = LeaderEpoch(record.leader_epoch);
        let unchanged = matches!(&self.role,
            Role::Follower(f) if f.leader == leader && f.leader_epoch == leader_epoch);
        self.role = Role::Follower(Follower {
            leader,
            leader_epoch,
            partition_epoch: PartitionEpoch(record.partition_epoch),
        });
        if unchanged {
            return Transition::Updated {
                high_watermark: None,
            };
        }
        // Every new leader epoch (and a restart) may have left this log diverged from the
        // leader's, so the fetcher reconciles before it fetches, as Kafka restarts its fetchers.
        Transition::BecameFollower {
            leader,
            leader_epoch,
            truncate_needed: leader.is_some(),
        }
    }

    /// The leader's state if this broker leads in the epoch a request was made under (`None`:
    /// the request named no epoch). Kafka's order: the epoch is checked first, then the role.
    pub fn check_leader(&self, requested: Option<LeaderEpoch>) -> Result<&Leader, ReplicaError> {
        self.check_epoch(requested)?;
        match &self.role {
            Role::Leader(l) => Ok(l),
            other => Err(not_leader(other)),
        }
    }

    fn check_epoch(&self, requested: Option<LeaderEpoch>) -> Result<(), ReplicaError> {
        let (Some(requested), Some(current)) = (requested, self.leader_epoch()) else {
            return Ok(());
        };
        match requested.cmp(&current) {
            Ordering::Less => Err(ReplicaError::FencedLeaderEpoch { requested, current }),
            Ordering::Greater => Err(ReplicaError::UnknownLeaderEpoch { requested, current }),
            Ordering::Equal => Ok(()),
        }
    }

    /// A follower `replica` fetched at `fetch_offset` under `leader_epoch`; `local_log_end` is
    /// this broker's log end offset when the fetch was read. The caller calls this only for a
    /// fetch that did not diverge ([`super::divergence::diverging_epoch`]). Returns the new high
    /// watermark if it moved; a refused fetch changes nothing.
    pub fn on_follower_fetch(
        &mut self,
        replica: i32,
        fetch_offset: Offset,
        leader_epoch: LeaderEpoch,
        local_log_end: Offset,
        now: Instant,
    ) -> Result<Option<Offset>, ReplicaError> {
        self.check_epoch(Some(leader_epoch))?;
        let Role::Leader(leader) = &mut self.role else {
            return Err(not_leader(&self.role));
        };
        let current_epoch = leader.leader_epoch;
        let Some(progress) = leader.followers.get_mut(&replica) else {
            return Err(ReplicaError::UnknownReplica {
                replica,
                leader_epoch: current_epoch,
            });
        };
        if fetch_offset > local_log_end {
            return Err(ReplicaError::OffsetOutOfRange {
                fetch_offset,
                log_end: local_log_end,
            });
        }
        progress.record_fetch(fetch_offset, local_log_end, now);
        leader.log_end_offset = local_log_end;
        Ok(self.maybe_advance_high_watermark(now))
    }

    /// This broker, as leader, appended up to `local_log_end`. The high watermark follows only
    /// as far as the ISR allows: on its own when the ISR is just this broker and the effective
    /// min ISR is 1. Returns it if it moved; `None` on a non-leader.
    pub fn on_local_append(&mut self, local_log_end: Offset, now: Instant) -> Option<Offset> {
        let Role::Leader(leader) = &mut self.role else {
            return None;
        };
        leader.log_end_offset = local_log_end;
        self.maybe_advance_high_watermark(now)
    }

    /// Whether an acks=all produce may be appended now: this broker leads and the committed ISR
    /// has at least the effective `min.insync.replicas` (Kafka checks before appending).
    pub fn can_accept_acks_all(&self) -> Result<(), ReplicaError> {
        let leader = self.check_leader(None)?;
        let min_isr = self.effective_min_isr(leader);
        if leader.isr.len() < min_isr {
            return Err(ReplicaError::NotEnoughReplicas {
                isr: leader.isr.len(),
                min_isr,
            });
        }
        Ok(())
    }

    /// As a follower, the leader's high watermark arrived with fetched data: ours follows it,
    /// but not beyond our own log end. Returns it if it moved.
    pub fn on_leader_high_watermark(
        &mut self,
        leader_high_watermark: Offset,
        local_log_end: Offset,
    ) -> Option<Offset> {
        if !matches!(self.role, Role::Follower(_)) {
            return None;
        }
        self.raise_high_watermark(leader_high_watermark.min(local_log_end))
    }

    /// The local log was truncated to `local_log_end`. The high watermark comes down with it
    /// only if it was above (the one way it decreases; a clean election never needs it).
    pub fn on_log_truncated(&mut self, local_log_end: Offset) -> Option<Offset> {
        if let Role::Leader(l) = &mut self.role {
            l.log_end_offset = local_log_end;
        }
        if self.high_watermark <= local_log_end {
            return None;
        }
        self.high_watermark = local_log_end;
        Some(local_log_end)
    }

    /// New settings (topic config change). Lowering min ISR may let the high watermark move.
    pub fn set_settings(&mut self, settings: ReplicaSettings, now: Instant) -> Option<Offset> {
        self.settings = settings;
        self.maybe_advance_high_watermark(now)
    }

    /// The brokers that may not join an ISR now (fenced or in controlled shutdown), from the
    /// metadata image. One that stops being eligible no longer holds the high watermark as a
    /// joining follower, so it may move.
    pub fn set_ineligible_brokers(
        &mut self,
        brokers: BTreeSet<i32>,
        now: Instant,
    ) -> Option<Offset> {
        self.ineligible = brokers;
        self.maybe_advance_high_watermark(now)
    }

    /// Decides the next ISR change ([`isr::proposed_isr`]) and records it as the pending one;
    /// the caller sends it to the controller as AlterPartition. `None` while one is pending,
    /// when nothing needs to change, or when this broker does not lead.
    pub fn propose_isr_change(&mut self, now: Instant) -> Option<IsrProposal> {
        let proposal = isr::proposed_isr(self, now, self.settings.replica_lag_time_max)?;
        if let Role::Leader(l) = &mut self.role {
            l.pending_isr_change = Some(proposal.clone());
        }
        Some(proposal)
    }

    /// The controller answered that `proposal` was not applied (OPERATION_NOT_ATTEMPTED or
    /// INELIGIBLE_REPLICA): it is no longer pending, and a new one may be proposed. Any other
    /// outcome (success, or an error that leaves it unknown whether it applied) waits for the
    /// metadata. Returns whether the pending change was cleared (not if it was another one).
    pub fn on_isr_change_not_applied(&mut self, proposal: &IsrProposal) -> bool {
        match &mut self.role {
            Role::Leader(l) if l.pending_isr_change.as_ref() == Some(proposal) => {
                l.pending_isr_change = None;
                true
            }
            _ => false,
        }
    }

    /// Kafka's `effectiveMinIsr`: `min.insync.replicas`, but never more than the replicas there
    /// are (so a topic configured above its replication factor stays usable).
    fn effective_min_isr(&self, leader: &Leader) -> usize {
        self.settings
            .min_insync_replicas
            .min(leader.replicas.len())
            .max(1)
    }

    fn maybe_advance_high_watermark(&mut self, now: Instant) -> Option<Offset> {
        let Role::Leader(leader) = &self.role else {
            return None;
        };
        let bound = leader.high_watermark_bound(
            self.effective_min_isr(leader),
            self.settings.replica_lag_time_max,
            &self.ineligible,
            now,
        )?;
        self.raise_high_watermark(bound)
    }

    fn raise_high_watermark(&mut self, to: Offset) -> Option<Offset> {
        if to <= self.high_watermark {
            return None;
        }
        self.high_watermark = to;
        Some(to)
    }
}

/// The refusal for a request that needs the leader, from a broker that does not lead.
fn not_leader(role: &Role) -> ReplicaError {
    match role {
        Role::Follower(f) => ReplicaError::NotLeaderOrFollower {
            leader: f.leader,
            leader_epoch: Some(f.leader_epoch),
        },
        Role::Leader(_) | Role::Offline { .. } => ReplicaError::NotLeaderOrFollower {
            leader: None,
            leader_epoch: None,
        },
    }
}

#[cfg(test)]
#[path = "partition_tests.rs"]
mod tests;

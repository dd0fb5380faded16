//! The roles of a partition's replication state (leader with its followers' progress,
//! follower, offline), its epochs and settings: the data [`super::PartitionState`] moves
//! between, with the few rules that belong to one role alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;
use tributary_log::Offset;

use super::isr::IsrProposal;

/// Kafka's default `replica.lag.time.max.ms`.
pub const DEFAULT_REPLICA_LAG_TIME_MAX: Duration = Duration::from_secs(30);

/// The epoch of a partition's leadership: bumped by the controller on every leader change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaderEpoch(pub i32);

/// The version of a partition's state (leader, ISR, replicas): bumped by the controller on
/// every change, so a stale change or proposal can be recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionEpoch(pub i32);

impl fmt::Display for LeaderEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for PartitionEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The settings that decide when the high watermark may move and when a follower falls out of
/// sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaSettings {
    /// The topic's `min.insync.replicas`.
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`: how long a follower may go without being caught up.
    pub replica_lag_time_max: Duration,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        ReplicaSettings {
            min_insync_replicas: 1,
            replica_lag_time_max: DEFAULT_REPLICA_LAG_TIME_MAX,
        }
    }
}

/// What the leader knows of one follower (Kafka's `ReplicaState`). `None` means "not since this
/// broker became leader".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset: the offset of its last fetch.
    pub log_end_offset: Option<Offset>,
    pub last_fetch_time: Option<Instant>,
    /// The last time the follower had everything the leader had (see [`Self::is_caught_up`]).
    pub last_caught_up_time: Option<Instant>,
    /// The leader's log end offset when the follower last fetched.
    pub last_fetch_leader_log_end: Option<Offset>,
}

impl FollowerProgress {
    /// In sync: at the leader's log end, or caught up within `lag`.
    pub fn is_caught_up(&self, leader_log_end: Offset, now: Instant, lag: Duration) -> bool {
        self.log_end_offset == Some(leader_log_end)
            || self
                .last_caught_up_time
                .is_some_and(|t| now.saturating_duration_since(t) <= lag)
    }

    /// A fetch at `fetch_offset` (which acknowledges everything below it). The follower was
    /// caught up now if it asked for the leader's log end, and at its previous fetch if it now
    /// has what the leader had then — so a follower that keeps up with a steady stream of
    /// appends stays caught up although it is never exactly at the log end.
    pub(super) fn record_fetch(
        &mut self,
        fetch_offset: Offset,
        leader_log_end: Offset,
        now: Instant,
    ) {
        let caught_up_at = if fetch_offset >= leader_log_end {
            Some(now)
        } else if self
            .last_fetch_leader_log_end
            .is_some_and(|then| fetch_offset >= then)
        {
            self.last_fetch_time
        } else {
            None
        };
        self.last_caught_up_time = self.last_caught_up_time.max(caught_up_at);
        self.log_end_offset = Some(fetch_offset);
        self.last_fetch_leader_log_end = self.last_fetch_leader_log_end.max(Some(leader_log_end));
        self.last_fetch_time = Some(now);
    }

    /// The progress at the start of a new leader epoch (Kafka's `resetReplicaState`). A broker
    /// that just became leader knows nothing of its followers (`previous` is `None`); one that
    /// stays leader keeps their log ends. ISR members count as caught up now, so they are not
    /// dropped before they could fetch; the others as never caught up, so they do not hold the
    /// high watermark.
    pub(super) fn for_new_epoch(
        previous: Option<&FollowerProgress>,
        in_isr: bool,
        epoch_start: Offset,
        now: Instant,
    ) -> FollowerProgress {
        let caught_up = in_isr.then_some(now);
        match previous {
            None => FollowerProgress {
                last_caught_up_time: caught_up,
                ..FollowerProgress::default()
            },
            Some(p) => FollowerProgress {
                log_end_offset: p.log_end_offset,
                last_fetch_time: caught_up,
                last_caught_up_time: caught_up,
                last_fetch_leader_log_end: Some(epoch_start),
            },
        }
    }
}

/// The state of a partition this broker leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    /// The assignment, in preference order.
    pub replicas: Vec<i32>,
    /// The committed ISR (from the metadata).
    pub isr: BTreeSet<i32>,
    /// Every other assigned replica.
    pub followers: BTreeMap<i32, FollowerProgress>,
    /// The ISR change sent to the controller and not yet seen committed or refused.
    pub pending_isr_change: Option<IsrProposal>,
    /// The local log end offset, as last reported.
    pub log_end_offset: Offset,
    /// The local log end offset when this leader epoch began: followers must reach it to join
    /// the ISR.
    pub epoch_start_offset: Offset,
}

impl Leader {
    /// The committed ISR plus the replicas a pending change adds (KIP-497). The high watermark
    /// waits for all of them: if the change is refused, nothing ran ahead; a pending removal
    /// still counts until it is committed.
    pub fn maximal_isr(&self) -> BTreeSet<i32> {
        let mut isr = self.isr.clone();
        if let Some(p) = &self.pending_isr_change {
            isr.extend(p.isr.iter().copied());
        }
        isr
    }

    /// How far the high watermark may move now, or `None` while it must not move at all
    /// (under min ISR, or an ISR member whose log end is not known in this epoch).
    pub(super) fn high_watermark_bound(
        &self,
        min_isr: usize,
        lag: Duration,
        ineligible: &BTreeSet<i32>,
        now: Instant,
    ) -> Option<Offset> {
        if self.isr.len() < min_isr {
            return None;
        }
        let maximal = self.maximal_isr();
        let mut bound = self.log_end_offset;
        for (id, f) in &self.followers {
            let joining = !ineligible.contains(id) && f.is_caught_up(self.log_end_offset, now, lag);
            if !maximal.contains(id) && !joining {
                continue;
            }
            bound = bound.min(f.log_end_offset?);
        }
        Some(bound)
    }
}

/// The state of a partition another broker leads (or nobody: `leader` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follower {
    pub leader: Option<i32>,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
}

/// This broker's role for the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not (or no longer) a replica; `partition_epoch` is the record that said so, if any.
    Offline {
        partition_epoch: Option<PartitionEpoch>,
    },
    Follower(Follower),
    Leader(Leader),
}

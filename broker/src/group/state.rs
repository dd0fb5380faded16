//! One consumer group's membership as an explicit, pure state machine (Kafka's classic
//! protocol): the five states, members and static members, generations, protocol selection,
//! the leader and the assignments the leader hands out.
//!
//! Every transition takes `now` and returns what must happen next as [`Effect`]s (answers to
//! parked JoinGroup/SyncGroup requests, a group-metadata record to write); nothing here awaits,
//! sleeps or touches the log. Timers are deadlines checked by [`Group::tick`]. JoinGroup and
//! SyncGroup are in `join.rs`. Offsets live in `offsets.rs`; this module does not know them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

/// How long a new member that is awaiting its first join response is kept alive without
/// heartbeats (Kafka's `NEW_MEMBER_JOIN_TIMEOUT`).
pub const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name clients see (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One member.
#[derive(Debug, Clone)]
pub struct Member {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// Supported protocols (name, subscription metadata) in the member's preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// The assignment from the last completed SyncGroup.
    pub assignment: Bytes,
    pub awaiting_join: bool,
    pub awaiting_sync: bool,
    is_new: bool,
    /// Whether its JoinGroup version can carry `skip_assignment` (v9+).
    supports_skip_assignment: bool,
    last_heartbeat: Instant,
}

impl Member {
    /// The subscription metadata for `protocol`, if the member supports it.
    pub fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m)
    }

    fn expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// When the member expires unless it is heard from (none while it waits for SyncGroup, or
    /// for JoinGroup after having been a member).
    fn deadline(&self) -> Option<Instant> {
        if self.awaiting_join {
            self.is_new
                .then(|| self.last_heartbeat + NEW_MEMBER_JOIN_TIMEOUT)
        } else if self.awaiting_sync {
            None
        } else {
            Some(self.last_heartbeat + self.session_timeout)
        }
    }
}

/// What a JoinGroup asks for, parsed.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+ dynamic members must first be given a member id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
    pub supports_skip_assignment: bool,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinResponse {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub skip_assignment: bool,
    /// Only for the leader: (member id, instance id, metadata of the chosen protocol).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResponse {
    /// An error answer.
    pub fn error(error: ResponseError, member_id: &str) -> Self {
        JoinResponse {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_owned(),
            skip_assignment: false,
            members: Vec::new(),
        }
    }
}

/// A SyncGroup answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncResponse {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub fn error(error: ResponseError) -> Self {
        SyncResponse {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// Either an answer now, or the request waits for the rebalance (answered by an [`Effect`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<T> {
    Now(T),
    Wait { member_id: String },
}

/// Something the coordinator must do after a transition.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Answer the parked JoinGroup of this member.
    Join(String, JoinResponse),
    /// Answer the parked SyncGroup of this member.
    Sync(String, SyncResponse),
    /// Write the group's metadata record (membership or assignment changed durably).
    PersistGroup,
}

/// Group-wide settings the state machine needs.
#[derive(Debug, Clone, Copy)]
pub struct GroupTimeouts {
    pub initial_rebalance_delay: Duration,
}

/// One group's membership.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id → member id.
    pub static_members: BTreeMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pub pending_members: BTreeMap<String, Instant>,
    /// Wall-clock ms of the last state change (retention counts from becoming Empty).
    pub state_timestamp_ms: i64,
    join_deadline: Option<Instant>,
    /// During the initial delay of a new group: the budget left to extend it.
    initial_delay_budget: Option<Duration>,
    new_member_added: bool,
    sync_deadline: Option<Instant>,
    timeouts: GroupTimeouts,
}

type Outcome<T> = (Reply<T>, Vec<Effect>);

fn now_reply<T>(v: T) -> Outcome<T> {
    (Reply::Now(v), Vec::new())
}

impl Group {
    /// A new, empty group.
    pub fn new(id: &str, timeouts: GroupTimeouts, now_ms: i64) -> Self {
        Group {
            id: id.to_owned(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            state_timestamp_ms: now_ms,
            join_deadline: None,
            initial_delay_budget: None,
            new_member_added: false,
            sync_deadline: None,
            timeouts,
        }
    }

    /// Rebuilds a group from its stored metadata record: Stable with its members (whose
    /// sessions start now) or Empty.
    pub fn restore(mut self, members: Vec<Member>, now: Instant) -> Self {
        for mut m in members {
            m.last_heartbeat = now;
            if let Some(i) = &m.instance_id {
                self.static_members.insert(i.clone(), m.member_id.clone());
            }
            self.members.insert(m.member_id.clone(), m);
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self
    }

    /// Is the group free of members (and of members about to join)?
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending_members.is_empty()
    }

    fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    /// Protocols every member supports, for the join compatibility check.
    fn candidate_protocols(&self) -> BTreeSet<String> {
        let mut it = self.members.values();
        let Some(first) = it.next() else {
            return BTreeSet::new();
        };
        let mut set: BTreeSet<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in it {
            set.retain(|p| m.protocols.iter().any(|(n, _)| n == p));
        }
        set
    }

    /// Each member votes for its most preferred protocol among those all support; most votes
    /// wins, ties go to the earliest in the first member's preference.
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(n.as_str()).or_default() += 1;
            }
        }
        let first = self.members.values().next()?;
        let order = |p: &str| first.protocols.iter().position(|(n, _)| n == p);
        votes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(order(b.0).cmp(&order(a.0))))
            .map(|(p, _)| p.to_owned())
    }

    fn compatible(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        let candidates = self.candidate_protocols();
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    /// Is this the leader?
    pub fn is_leader(&self, id: &str) -> bool {
        self.leader.as_deref() == Some(id)
    }

    /// Checks a member id (and its instance id) against the group.
    pub fn check_member(&self, id: &str, instance: Option<&str>) -> Result<(), ResponseError> {
        if let Some(i) = instance {
            return match self.static_members.get(i) {
                Some(known) if known == id => Ok(()),
                Some(_) => Err(ResponseError::FencedInstanceId),
                None => Err(ResponseError::UnknownMemberId),
            };
        }
        if self.members.contains_key(id) {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    /// Starts (or restarts) a rebalance.
    fn prepare_rebalance(&mut self, now: Instant, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if m.awaiting_sync {
                    m.awaiting_sync = false;
                    effects.push(Effect::Sync(
                        m.member_id.clone(),
                        SyncResponse::error(ResponseError::RebalanceInProgress),
                    ));
                }
            }
        }
        tracing::info!(group = %self.id, from = self.state.name(), "preparing rebalance");
        let timeout = self.max_rebalance_timeout();
        if self.state == GroupState::Empty {
            let delay = self.timeouts.initial_rebalance_delay.min(timeout);
            self.join_deadline = Some(now + delay);
            self.initial_delay_budget = Some(timeout.saturating_sub(delay));
            self.new_member_added = false;
        } else {
            self.join_deadline = Some(now + timeout);
            self.initial_delay_budget = None;
        }
        self.sync_deadline = None;
        self.set_state(GroupState::PreparingRebalance, now_ms);
        effects.extend(self.maybe_complete_join(now, now_ms));
        effects
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if matches!(self.state, GroupState::Empty | GroupState::Dead) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        if self.state == GroupState::PreparingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Records liveness from an offset commit of a member.
    pub fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
    }

    /// Handles one leaving member (LeaveGroup, or an admin removing a static member by
    /// instance id with an empty member id).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        now_ms: i64,
    ) -> Result<Vec<Effect>, ResponseError> {
        let id = match instance_id {
            Some(i) => match self.static_members.get(i) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(known) if !member_id.is_empty() && known != member_id => {
                    return Err(ResponseError::FencedInstanceId)
                }
                Some(known) => known.clone(),
            },
            None => member_id.to_owned(),
        };
        if self.pending_members.remove(&id).is_some() {
            return Ok(self.maybe_complete_join(now, now_ms));
        }
        if !self.members.contains_key(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(self.remove_member_and_rebalance(&id, now, now_ms))
    }

    fn remove_member_only(&mut self, id: &str, effects: &mut Vec<Effect>) {
        let Some(m) = self.members.remove(id) else {
            return;
        };
        if let Some(i) = &m.instance_id {
            self.static_members.remove(i);
        }
        if m.awaiting_join {
            effects.push(Effect::Join(
                id.to_owned(),
                JoinResponse::error(ResponseError::UnknownMemberId, id),
            ));
        }
        if m.awaiting_sync {
            effects.push(Effect::Sync(
                id.to_owned(),
                SyncResponse::error(ResponseError::UnknownMemberId),
            ));
        }
        if self.is_leader(id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    fn remove_member_and_rebalance(&mut self, id: &str, now: Instant, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.remove_member_only(id, &mut effects);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                effects.extend(self.prepare_rebalance(now, now_ms));
            }
            GroupState::PreparingRebalance => {
                effects.extend(self.maybe_complete_join(now, now_ms));
            }
            GroupState::Empty | GroupState::Dead => {}
        }
        effects
    }

    /// The earliest moment [`Group::tick`] has something to do: a member's session expiry, the
    /// end of the join phase or the sync deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        let join = (self.state == GroupState::PreparingRebalance)
            .then_some(self.join_deadline)
            .flatten();
        let sync = (self.state == GroupState::CompletingRebalance)
            .then_some(self.sync_deadline)
            .flatten();
        self.members
            .values()
            .filter_map(Member::deadline)
            .chain(self.pending_members.values().copied())
            .chain(join)
            .chain(sync)
            .min()
    }

    /// Runs the timers: session expiry, the end of the join phase (or of the initial delay)
    /// and the sync deadline.
    pub fn tick(&mut self, now: Instant, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.pending_members.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.expired(now))
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            effects.extend(self.remove_member_and_rebalance(&id, now, now_ms));
        }
        if self.state == GroupState::PreparingRebalance
            && self.join_deadline.is_some_and(|d| now >= d)
        {
            match self.initial_delay_budget {
                Some(budget) if self.new_member_added && !budget.is_zero() => {
                    let step = self.timeouts.initial_rebalance_delay.min(budget);
                    self.initial_delay_budget = Some(budget - step);
                    self.join_deadline = Some(now + step);
                    self.new_member_added = false;
                }
                _ => effects.extend(self.complete_join(now, now_ms)),
            }
        } else {
            effects.extend(self.maybe_complete_join(now, now_ms));
        }
        if self.state == GroupState::CompletingRebalance
            && self.sync_deadline.is_some_and(|d| now >= d)
        {
            let missing: Vec<String> = self
                .members
                .values()
                .filter(|m| !m.awaiting_sync)
                .map(|m| m.member_id.clone())
                .collect();
            for id in missing {
                self.remove_member_only(&id, &mut effects);
            }
            effects.extend(self.prepare_rebalance(now, now_ms));
        }
        effects
    }

    /// Marks the group deleted.
    pub fn set_dead(&mut self, now_ms: i64) {
        self.set_state(GroupState::Dead, now_ms);
    }

    /// A member as stored after restore (used by the loader).
    #[allow(clippy::too_many_arguments)]
    pub fn stored_member(
        member_id: String,
        instance_id: Option<String>,
        client_id: String,
        client_host: String,
        session_timeout: Duration,
        rebalance_timeout: Duration,
        protocol: (String, Bytes),
        assignment: Bytes,
    ) -> Member {
        Member {
            member_id,
            instance_id,
            client_id,
            client_host,
            session_timeout,
            rebalance_timeout,
            protocols: vec![protocol],
            assignment,
            awaiting_join: false,
            awaiting_sync: false,
            is_new: false,
            supports_skip_assignment: false,
            last_heartbeat: Instant::now(),
        }
    }
}

/// What a SyncGroup carries, parsed.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[path = "join.rs"]
mod join;

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

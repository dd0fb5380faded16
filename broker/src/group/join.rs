//! JoinGroup and SyncGroup on one group's state machine (`state.rs`): who may join, static
//! members replacing themselves, the join phase ending with a new generation and its leader,
//! and the leader's assignments handed out by the sync phase.

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::*;

impl Group {
    /// Handles a JoinGroup.
    pub fn join(&mut self, req: JoinRequest, now: Instant, now_ms: i64) -> Outcome<JoinResponse> {
        if self.state == GroupState::Dead {
            return now_reply(JoinResponse::error(
                ResponseError::CoordinatorNotAvailable,
                &req.member_id,
            ));
        }
        if !self.compatible(&req.protocol_type, &req.protocols) {
            return now_reply(JoinResponse::error(
                ResponseError::InconsistentGroupProtocol,
                &req.member_id,
            ));
        }
        if req.member_id.is_empty() {
            self.join_unknown_member(req, now, now_ms)
        } else {
            self.join_known_member(req, now, now_ms)
        }
    }

    pub(super) fn join_unknown_member(
        &mut self,
        req: JoinRequest,
        now: Instant,
        now_ms: i64,
    ) -> Outcome<JoinResponse> {
        let new_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
        if let Some(instance) = req.instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(req, old_id, new_id, now, now_ms);
            }
            return self.add_member_and_rebalance(req, new_id, now, now_ms);
        }
        if req.require_known_member_id {
            self.pending_members
                .insert(new_id.clone(), now + req.session_timeout);
            return now_reply(JoinResponse::error(
                ResponseError::MemberIdRequired,
                &new_id,
            ));
        }
        self.add_member_and_rebalance(req, new_id, now, now_ms)
    }

    pub(super) fn join_known_member(
        &mut self,
        req: JoinRequest,
        now: Instant,
        now_ms: i64,
    ) -> Outcome<JoinResponse> {
        let id = req.member_id.clone();
        if self.pending_members.remove(&id).is_some() {
            return self.add_member_and_rebalance(req, id, now, now_ms);
        }
        if let Err(e) = self.check_member(&id, req.instance_id.as_deref()) {
            return now_reply(JoinResponse::error(e, &id));
        }
        // A changed subscription, or the Stable leader rejoining, means a new assignment.
        let rebalance = self.members[&id].protocols != req.protocols
            || (self.state == GroupState::Stable && self.is_leader(&id));
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(&id, req, now);
                let effects = self.maybe_complete_join(now, now_ms);
                (Reply::Wait { member_id: id }, effects)
            }
            GroupState::CompletingRebalance | GroupState::Stable if !rebalance => {
                // A repeated join (lost response) or a follower re-joining: nothing changed.
                if let Some(m) = self.members.get_mut(&id) {
                    m.last_heartbeat = now;
                }
                let leader = self.is_leader(&id) && self.state == GroupState::CompletingRebalance;
                now_reply(self.join_response(&id, leader, false))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(&id, req, now);
                let effects = self.prepare_rebalance(now, now_ms);
                (Reply::Wait { member_id: id }, effects)
            }
            GroupState::Empty | GroupState::Dead => {
                now_reply(JoinResponse::error(ResponseError::UnknownMemberId, &id))
            }
        }
    }

    /// A static member rejoined with an unknown member id: the old id is fenced and replaced.
    pub(super) fn replace_static_member(
        &mut self,
        req: JoinRequest,
        old_id: String,
        new_id: String,
        now: Instant,
        now_ms: i64,
    ) -> Outcome<JoinResponse> {
        let Some(mut member) = self.members.remove(&old_id) else {
            return self.add_member_and_rebalance(req, new_id, now, now_ms);
        };
        let mut effects = Vec::new();
        if member.awaiting_join {
            effects.push(Effect::Join(
                old_id.clone(),
                JoinResponse::error(ResponseError::FencedInstanceId, &old_id),
            ));
        }
        if member.awaiting_sync {
            effects.push(Effect::Sync(
                old_id.clone(),
                SyncResponse::error(ResponseError::FencedInstanceId),
            ));
            member.awaiting_sync = false;
        }
        let unchanged = member.protocols == req.protocols;
        member.member_id = new_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.supports_skip_assignment = req.supports_skip_assignment;
        member.last_heartbeat = now;
        member.awaiting_join = false;
        self.members.insert(new_id.clone(), member);
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            GroupState::Stable if unchanged => {
                // Same subscription: give the group back without a rebalance.
                let leader = self.is_leader(&new_id);
                let mut resp = self.join_response(&new_id, false, false);
                if leader && req.supports_skip_assignment {
                    resp = self.join_response(&new_id, true, true);
                }
                effects.push(Effect::PersistGroup);
                (Reply::Now(resp), effects)
            }
            GroupState::PreparingRebalance => {
                self.update_member(&new_id, req, now);
                effects.extend(self.maybe_complete_join(now, now_ms));
                (Reply::Wait { member_id: new_id }, effects)
            }
            _ => {
                self.update_member(&new_id, req, now);
                effects.extend(self.prepare_rebalance(now, now_ms));
                (Reply::Wait { member_id: new_id }, effects)
            }
        }
    }

    pub(super) fn add_member_and_rebalance(
        &mut self,
        req: JoinRequest,
        member_id: String,
        now: Instant,
        now_ms: i64,
    ) -> Outcome<JoinResponse> {
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), member_id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let member = Member {
            member_id: member_id.clone(),
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: true,
            awaiting_sync: false,
            is_new: true,
            supports_skip_assignment: req.supports_skip_assignment,
            last_heartbeat: now,
        };
        self.members.insert(member_id.clone(), member);
        self.new_member_added = true;
        let effects = if self.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(now, now_ms)
        } else {
            self.prepare_rebalance(now, now_ms)
        };
        (Reply::Wait { member_id }, effects)
    }

    pub(super) fn update_member(&mut self, id: &str, req: JoinRequest, now: Instant) {
        if let Some(m) = self.members.get_mut(id) {
            m.protocols = req.protocols;
            m.session_timeout = req.session_timeout;
            m.rebalance_timeout = req.rebalance_timeout;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.supports_skip_assignment = req.supports_skip_assignment;
            m.awaiting_join = true;
            m.last_heartbeat = now;
        }
    }

    pub(super) fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join)
    }

    pub(super) fn maybe_complete_join(&mut self, now: Instant, now_ms: i64) -> Vec<Effect> {
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay_budget.is_none()
            && self.all_joined()
        {
            return self.complete_join(now, now_ms);
        }
        Vec::new()
    }

    /// Ends the join phase: drops dynamic members that did not rejoin, bumps the generation,
    /// picks the protocol and the leader, and answers every parked join.
    pub(super) fn complete_join(&mut self, now: Instant, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && m.instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            self.remove_member_only(&id, &mut effects);
        }
        self.join_deadline = None;
        self.initial_delay_budget = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now_ms);
            effects.push(Effect::PersistGroup);
            return effects;
        }
        self.protocol = self.select_protocol();
        let leader_ok = self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.get(l).is_some_and(|m| m.awaiting_join));
        if !leader_ok {
            self.leader = self
                .members
                .values()
                .find(|m| m.awaiting_join)
                .or_else(|| self.members.values().next())
                .map(|m| m.member_id.clone());
        }
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            protocol = self.protocol.as_deref().unwrap_or(""),
            "join phase complete"
        );
        self.set_state(GroupState::CompletingRebalance, now_ms);
        self.sync_deadline = Some(now + self.max_rebalance_timeout());
        let joined: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join)
            .map(|m| m.member_id.clone())
            .collect();
        for id in joined {
            let resp = self.join_response(&id, self.is_leader(&id), false);
            if let Some(m) = self.members.get_mut(&id) {
                m.awaiting_join = false;
                m.is_new = false;
                m.last_heartbeat = now;
            }
            effects.push(Effect::Join(id, resp));
        }
        effects
    }

    pub(super) fn join_response(&self, id: &str, with_members: bool, skip: bool) -> JoinResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if with_members {
            self.members
                .values()
                .map(|m| {
                    let md = m.metadata(&protocol).cloned().unwrap_or_default();
                    (m.member_id.clone(), m.instance_id.clone(), md)
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: id.to_owned(),
            skip_assignment: skip,
            members,
        }
    }

    /// Handles a SyncGroup.
    pub fn sync(
        &mut self,
        req: SyncRequest,
        now: Instant,
        now_ms: i64,
    ) -> (Reply<SyncResponse>, Vec<Effect>) {
        let id = req.member_id.clone();
        if let Err(e) = self.check_member(&id, req.instance_id.as_deref()) {
            return now_reply(SyncResponse::error(e));
        }
        if req.generation != self.generation {
            return now_reply(SyncResponse::error(ResponseError::IllegalGeneration));
        }
        let mismatch = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_some_and(|w| have.as_ref() != Some(w))
        };
        if mismatch(&req.protocol_type, &self.protocol_type)
            || mismatch(&req.protocol_name, &self.protocol)
        {
            return now_reply(SyncResponse::error(
                ResponseError::InconsistentGroupProtocol,
            ));
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                now_reply(SyncResponse::error(ResponseError::UnknownMemberId))
            }
            GroupState::PreparingRebalance => {
                now_reply(SyncResponse::error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let assignment = self.members[&id].assignment.clone();
                now_reply(self.sync_response(assignment))
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(&id) {
                    m.awaiting_sync = true;
                    m.last_heartbeat = now;
                }
                let effects = if self.is_leader(&id) {
                    self.complete_sync(req.assignments, now_ms)
                } else {
                    Vec::new()
                };
                (Reply::Wait { member_id: id }, effects)
            }
        }
    }

    pub(super) fn sync_response(&self, assignment: Bytes) -> SyncResponse {
        SyncResponse {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
        }
    }

    /// Stores the leader's assignment (untouched), goes Stable and answers every parked sync.
    pub(super) fn complete_sync(
        &mut self,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> Vec<Effect> {
        let mut by_member: BTreeMap<String, Bytes> = assignments.into_iter().collect();
        let mut effects = vec![Effect::PersistGroup];
        for m in self.members.values_mut() {
            m.assignment = by_member.remove(&m.member_id).unwrap_or_default();
        }
        self.sync_deadline = None;
        self.set_state(GroupState::Stable, now_ms);
        let waiting: Vec<(String, Bytes)> = self
            .members
            .values()
            .filter(|m| m.awaiting_sync)
            .map(|m| (m.member_id.clone(), m.assignment.clone()))
            .collect();
        for (id, assignment) in waiting {
            if let Some(m) = self.members.get_mut(&id) {
                m.awaiting_sync = false;
            }
            effects.push(Effect::Sync(id, self.sync_response(assignment)));
        }
        effects
    }
}

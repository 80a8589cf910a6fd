//! JoinGroup and the rebalance it drives: admitting members, the join phase and its
//! completion into a new generation.

use std::time::Instant;

use bytes::Bytes;
use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;

use super::{
    Group, GroupState, InitialDelay, JoinRequest, JoinResult, JoinedMember, Member, Reply,
    SyncResult, NEW_MEMBER_JOIN_TIMEOUT,
};

impl Group {
    pub fn join(&mut self, req: JoinRequest, now: Instant) -> Reply<JoinResult> {
        let reply = if req.member_id.is_empty() {
            self.join_unknown(req, now)
        } else {
            self.join_known(req, now)
        };
        self.check_deadlines(now);
        reply
    }

    fn join_unknown(&mut self, req: JoinRequest, now: Instant) -> Reply<JoinResult> {
        let max_size = self.limits.max_size;
        if self.state == GroupState::Dead {
            return Reply::Now(JoinResult::error(
                "",
                ResponseError::CoordinatorNotAvailable,
            ));
        }
        if !self.supports(&req.protocol_type, &req.protocols) {
            return Reply::Now(JoinResult::error(
                "",
                ResponseError::InconsistentGroupProtocol,
            ));
        }
        let base = req.instance_id.as_deref().unwrap_or(&req.client_id);
        let new_id = format!("{base}-{}", uuid::Uuid::new_v4());
        if let Some(instance) = req.instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(req, &old_id, new_id, now);
            }
        } else if req.require_known_member_id {
            if self.members.len() + self.pending_members.len() >= max_size {
                return Reply::Now(JoinResult::error("", ResponseError::GroupMaxSizeReached));
            }
            self.pending_members
                .insert(new_id.clone(), now + req.session_timeout);
            return Reply::Now(JoinResult::error(&new_id, ResponseError::MemberIdRequired));
        }
        if self.members.len() >= max_size {
            return Reply::Now(JoinResult::error("", ResponseError::GroupMaxSizeReached));
        }
        self.add_member_and_rebalance(req, new_id, now)
    }

    fn join_known(&mut self, req: JoinRequest, now: Instant) -> Reply<JoinResult> {
        let id = req.member_id.clone();
        if self.state == GroupState::Dead {
            return Reply::Now(JoinResult::error(
                &id,
                ResponseError::CoordinatorNotAvailable,
            ));
        }
        if !self.supports(&req.protocol_type, &req.protocols) {
            return Reply::Now(JoinResult::error(
                &id,
                ResponseError::InconsistentGroupProtocol,
            ));
        }
        if self.pending_members.remove(&id).is_some() {
            return self.add_member_and_rebalance(req, id, now);
        }
        if self.is_fenced(req.instance_id.as_deref(), &id) {
            return Reply::Now(JoinResult::error(&id, ResponseError::FencedInstanceId));
        }
        if !self.has_member(&id) {
            return Reply::Now(JoinResult::error(&id, ResponseError::UnknownMemberId));
        }
        let same_protocols = self
            .members
            .iter()
            .find(|m| m.id == id)
            .is_some_and(|m| m.protocols == req.protocols);
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(req, now),
            GroupState::CompletingRebalance => {
                if same_protocols {
                    // A retried join for this generation: answer as the join did.
                    let r = self.join_result_for(&id);
                    Reply::Now(r)
                } else {
                    self.update_member_and_rebalance(req, now)
                }
            }
            GroupState::Stable => {
                if self.is_leader(&id) || !same_protocols {
                    // The leader rejoins to force a rebalance (new topics, say).
                    self.update_member_and_rebalance(req, now)
                } else {
                    Reply::Now(self.join_result_for(&id))
                }
            }
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(JoinResult::error(&id, ResponseError::UnknownMemberId))
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        req: JoinRequest,
        id: String,
        now: Instant,
    ) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(instance) = &req.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        let is_new = self.state == GroupState::PreparingRebalance && self.generation == 0;
        let deadline = if is_new {
            now + NEW_MEMBER_JOIN_TIMEOUT
        } else {
            now + req.session_timeout
        };
        self.members.push(Member {
            id: id.clone(),
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            heartbeat_deadline: deadline,
            is_new,
        });
        if self.leader.is_none() {
            self.leader = Some(id);
        }
        if self.protocol_type.is_none() {
            self.protocol_type = Some(req.protocol_type);
        }
        if let Some(d) = &mut self.initial_delay {
            d.new_member_added = true;
        }
        self.maybe_prepare_rebalance(now);
        self.try_complete_join(now);
        Reply::Later(rx)
    }

    fn update_member_and_rebalance(&mut self, req: JoinRequest, now: Instant) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        let Some(m) = self.member_mut(&req.member_id) else {
            return Reply::Now(JoinResult::error(
                &req.member_id,
                ResponseError::UnknownMemberId,
            ));
        };
        // A second join while one is parked: the older request is superseded.
        m.answer_join(JoinResult::error(&m.id, ResponseError::RebalanceInProgress));
        m.protocols = req.protocols;
        m.session_timeout = req.session_timeout;
        m.rebalance_timeout = req.rebalance_timeout;
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.awaiting_join = Some(tx);
        m.heartbeat_deadline = now + m.session_timeout;
        self.maybe_prepare_rebalance(now);
        self.try_complete_join(now);
        Reply::Later(rx)
    }

    /// A static member restarted (unknown member id, known instance id): it takes over the old
    /// member's place, and anything the old id had parked is fenced.
    fn replace_static_member(
        &mut self,
        req: JoinRequest,
        old_id: &str,
        new_id: String,
        now: Instant,
    ) -> Reply<JoinResult> {
        let current_leader = self.leader.clone().unwrap_or_default();
        let protocols_changed;
        let (tx, rx) = oneshot::channel();
        {
            let Some(m) = self.member_mut(old_id) else {
                return Reply::Now(JoinResult::error("", ResponseError::UnknownMemberId));
            };
            m.answer_join(JoinResult::error(old_id, ResponseError::FencedInstanceId));
            m.answer_sync(SyncResult::error(ResponseError::FencedInstanceId));
            protocols_changed = m.protocols != req.protocols;
            m.id = new_id.clone();
            m.protocols = req.protocols;
            m.session_timeout = req.session_timeout;
            m.rebalance_timeout = req.rebalance_timeout;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.heartbeat_deadline = now + req.session_timeout;
            m.awaiting_join = Some(tx);
        }
        if let Some(instance) = req.instance_id {
            self.static_members.insert(instance, new_id.clone());
        }
        if self.is_leader(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        match self.state {
            GroupState::Stable => {
                let keeps_protocol =
                    !protocols_changed || self.select_protocol() == self.protocol_name;
                if keeps_protocol {
                    // No rebalance: the member gets its id and the current generation. The old
                    // leader id is returned so that nobody runs an assignment a Stable group
                    // would not broadcast.
                    let r = JoinResult {
                        error: None,
                        generation: self.generation,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                        leader: current_leader,
                        member_id: new_id.clone(),
                        members: Vec::new(),
                    };
                    if let Some(m) = self.member_mut(&new_id) {
                        m.answer_join(r);
                    }
                } else {
                    self.prepare_rebalance(now);
                }
            }
            // The leader may already have assigned under the old id: rebalance again.
            GroupState::CompletingRebalance => self.prepare_rebalance(now),
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
        Reply::Later(rx)
    }

    /// The join answer of the current generation for `id` (members only for the leader).
    fn join_result_for(&self, id: &str) -> JoinResult {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if self.is_leader(id) {
            self.members
                .iter()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: id.to_string(),
            members,
        }
    }

    pub(super) fn maybe_prepare_rebalance(&mut self, now: Instant) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(now);
        }
    }

    pub(super) fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            self.fail_pending_syncs(ResponseError::RebalanceInProgress);
        }
        let timeout = self.max_rebalance_timeout();
        if self.state == GroupState::Empty {
            // Kafka's initial delay: let a starting group's members arrive before assigning.
            let delay = self.limits.initial_rebalance_delay.min(timeout);
            self.initial_delay = Some(InitialDelay {
                delay: self.limits.initial_rebalance_delay,
                remaining: timeout.saturating_sub(delay),
                new_member_added: false,
            });
            self.join_deadline = Some(now + delay);
        } else {
            self.initial_delay = None;
            self.join_deadline = Some(now + timeout);
        }
        self.sync_deadline = None;
        self.pending_sync.clear();
        self.set_state(GroupState::PreparingRebalance);
        self.try_complete_join(now);
    }

    pub(super) fn fail_pending_syncs(&mut self, error: ResponseError) {
        for m in &mut self.members {
            m.answer_sync(SyncResult::error(error));
        }
    }

    /// Completes the join phase once every member has rejoined (never early during the
    /// initial delay).
    pub(super) fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance || self.initial_delay.is_some() {
            return;
        }
        let all_joined = self.members.iter().all(|m| m.awaiting_join.is_some())
            && self.pending_members.is_empty();
        if all_joined {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: members that did not rejoin leave (static ones keep their place),
    /// the next generation starts and every parked join is answered.
    pub(super) fn complete_join(&mut self, now: Instant) {
        self.join_deadline = None;
        self.initial_delay = None;
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.drop_member(&id);
        }
        self.pending_members.clear();
        // The leader must be someone who rejoined.
        let leader_rejoined = self
            .leader
            .as_deref()
            .and_then(|l| self.members.iter().find(|m| m.id == l))
            .is_some_and(|m| m.awaiting_join.is_some());
        if !leader_rejoined {
            if let Some(m) = self.members.iter().find(|m| m.awaiting_join.is_some()) {
                self.leader = Some(m.id.clone());
            }
        }
        self.generation = self.generation.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader = None;
            self.set_state(GroupState::Empty);
            self.needs_write = true;
            return;
        }
        self.protocol_name = self.select_protocol();
        self.set_state(GroupState::CompletingRebalance);
        self.sync_deadline = Some(now + self.max_rebalance_timeout());
        self.pending_sync = self.members.iter().map(|m| m.id.clone()).collect();
        let ids: Vec<String> = self.members.iter().map(|m| m.id.clone()).collect();
        for id in ids {
            let r = self.join_result_for(&id);
            if let Some(m) = self.member_mut(&id) {
                m.answer_join(r);
                m.is_new = false;
                m.heartbeat_deadline = now + m.session_timeout;
            }
        }
    }
}

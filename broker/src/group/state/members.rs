//! SyncGroup, Heartbeat, LeaveGroup and the deadlines that remove members who went quiet.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;

use super::{Group, GroupState, JoinResult, Reply, SyncResult, SyncStep};

impl Group {
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: HashMap<String, Bytes>,
        now: Instant,
    ) -> SyncStep {
        let now_error = |e| SyncStep::Reply(Reply::Now(SyncResult::error(e)));
        if self.state == GroupState::Dead {
            return now_error(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_fenced(instance_id, member_id) {
            return now_error(ResponseError::FencedInstanceId);
        }
        if !self.has_member(member_id) {
            return now_error(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return now_error(ResponseError::IllegalGeneration);
        }
        let type_mismatch = protocol_type.is_some_and(|t| self.protocol_type.as_deref() != Some(t));
        let name_mismatch = protocol_name.is_some_and(|n| self.protocol_name.as_deref() != Some(n));
        if type_mismatch || name_mismatch {
            return now_error(ResponseError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => now_error(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => now_error(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                let (pt, pn) = (self.protocol_type.clone(), self.protocol_name.clone());
                let Some(m) = self.member_mut(member_id) else {
                    return now_error(ResponseError::UnknownMemberId);
                };
                m.heartbeat_deadline = now + m.session_timeout;
                SyncStep::Reply(Reply::Now(SyncResult {
                    error: None,
                    protocol_type: pt,
                    protocol_name: pn,
                    assignment: m.assignment.clone(),
                }))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.member_mut(member_id) {
                    m.answer_sync(SyncResult::error(ResponseError::RebalanceInProgress));
                    m.awaiting_sync = Some(tx);
                    m.heartbeat_deadline = now + m.session_timeout;
                }
                self.pending_sync.remove(member_id);
                if self.is_leader(member_id) {
                    let record = self.to_stored(Some(&assignments));
                    SyncStep::Persist {
                        generation: self.generation,
                        assignments,
                        record,
                        reply: rx,
                    }
                } else {
                    SyncStep::Reply(Reply::Later(rx))
                }
            }
        }
    }

    /// After the leader's assignment was written (or failed to be): hand every member its
    /// share and become Stable, unless the group moved on meanwhile.
    pub fn complete_leader_sync(
        &mut self,
        generation: i32,
        assignments: HashMap<String, Bytes>,
        written: Result<(), ResponseError>,
        now: Instant,
    ) {
        if self.state != GroupState::CompletingRebalance || generation != self.generation {
            return;
        }
        if let Err(e) = written {
            self.fail_pending_syncs(e);
            self.prepare_rebalance(now);
            return;
        }
        let (pt, pn) = (self.protocol_type.clone(), self.protocol_name.clone());
        for m in &mut self.members {
            m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
            let share = SyncResult {
                error: None,
                protocol_type: pt.clone(),
                protocol_name: pn.clone(),
                assignment: m.assignment.clone(),
            };
            m.answer_sync(share);
        }
        self.sync_deadline = None;
        self.pending_sync.clear();
        self.set_state(GroupState::Stable);
    }

    // ---- Heartbeat, LeaveGroup ----

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_fenced(instance_id, member_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if !self.has_member(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        let state = self.state;
        if state == GroupState::Empty {
            return Err(ResponseError::UnknownMemberId);
        }
        if let Some(m) = self.member_mut(member_id) {
            m.heartbeat_deadline = now + m.session_timeout;
        }
        match state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// One member of a LeaveGroup; v3+ may name a static member by instance id alone.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let id = if member_id.is_empty() {
            match instance_id.and_then(|i| self.static_members.get(i)) {
                Some(id) => id.clone(),
                None => return Err(ResponseError::UnknownMemberId),
            }
        } else {
            if self.is_fenced(instance_id, member_id) {
                return Err(ResponseError::FencedInstanceId);
            }
            member_id.to_string()
        };
        if self.pending_members.remove(&id).is_some() {
            self.try_complete_join(now);
            return Ok(());
        }
        if !self.has_member(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.remove_member(&id, now);
        Ok(())
    }

    /// Removes a member and moves the group on: a rebalance, or the end of the current one.
    pub(super) fn remove_member(&mut self, id: &str, now: Instant) {
        self.drop_member(id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now),
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    pub(super) fn drop_member(&mut self, id: &str) {
        let Some(pos) = self.members.iter().position(|m| m.id == id) else {
            return;
        };
        let mut m = self.members.remove(pos);
        m.answer_join(JoinResult::error(id, ResponseError::UnknownMemberId));
        m.answer_sync(SyncResult::error(ResponseError::UnknownMemberId));
        if let Some(instance) = &m.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(id);
        if self.is_leader(id) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
    }

    // ---- Time ----

    /// True once after the group became Empty by a completed rebalance: the caller writes its
    /// record so a restart does not resurrect the old generation.
    pub fn take_needs_write(&mut self) -> bool {
        std::mem::take(&mut self.needs_write)
    }

    /// Applies every deadline that has passed: expired sessions, lapsed pending members, the
    /// end of the join phase, members that never sent SyncGroup.
    pub fn check_deadlines(&mut self, now: Instant) {
        let before = self.pending_members.len();
        self.pending_members.retain(|_, lapse| *lapse > now);
        if self.pending_members.len() != before {
            self.try_complete_join(now);
        }
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|m| !m.is_alive(now))
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(&id, now);
        }
        if self.state == GroupState::PreparingRebalance
            && self.join_deadline.is_some_and(|d| now >= d)
        {
            match &mut self.initial_delay {
                Some(d) if d.new_member_added && !d.remaining.is_zero() => {
                    let next = d.delay.min(d.remaining);
                    d.remaining = d.remaining.saturating_sub(next);
                    d.new_member_added = false;
                    self.join_deadline = Some(now + next);
                }
                _ => self.complete_join(now),
            }
        }
        if self.state == GroupState::CompletingRebalance
            && self.sync_deadline.is_some_and(|d| now >= d)
        {
            let laggards: Vec<String> = self.pending_sync.iter().cloned().collect();
            for id in laggards {
                tracing::info!(group = %self.id, member = %id, "member never synced; removed");
                self.drop_member(&id);
            }
            self.prepare_rebalance(now);
        }
    }
}

//! One consumer group under the classic rebalance protocol: Kafka's GroupCoordinator state
//! machine (Empty -> PreparingRebalance -> CompletingRebalance -> Stable), kept free of I/O so
//! every transition is testable. Time comes in as `now`; parked JoinGroup and SyncGroup requests
//! are oneshot senders held by their member; what must be persisted is returned to the caller.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;

use super::records::{StoredGroup, StoredMember};

/// KIP-394: a member that joined with a new id has this long to complete its first join.
const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The names DescribeGroups and ListGroups report.
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

/// A JoinGroup request, decoded.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: an unknown member first gets its id with MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Clone, Debug, PartialEq)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: every member and its metadata for the chosen protocol.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    pub fn error(member_id: &str, error: ResponseError) -> Self {
        JoinResult {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: ResponseError) -> Self {
        SyncResult {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// An answer now, or a receiver for one that comes when the rebalance moves on.
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// What a SyncGroup does next.
pub enum SyncStep {
    Reply(Reply<SyncResult>),
    /// The leader's assignment: persist `record` (the group with it), then call
    /// [`Group::complete_leader_sync`]; the leader's answer arrives on `reply`.
    Persist {
        generation: i32,
        assignments: HashMap<String, Bytes>,
        record: StoredGroup,
        reply: oneshot::Receiver<SyncResult>,
    },
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    awaiting_join: Option<oneshot::Sender<JoinResult>>,
    awaiting_sync: Option<oneshot::Sender<SyncResult>>,
    heartbeat_deadline: Instant,
    /// Joined with a fresh id during this rebalance; expires on the new-member timeout instead.
    is_new: bool,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Kafka's `shouldKeepAlive`: parked requests keep a member alive; the rebalance and sync
    /// deadlines bound how long.
    fn is_alive(&self, now: Instant) -> bool {
        if self.awaiting_join.is_some() || self.awaiting_sync.is_some() {
            return true;
        }
        now < self.heartbeat_deadline
    }

    fn answer_join(&mut self, r: JoinResult) {
        if let Some(tx) = self.awaiting_join.take() {
            let _ = tx.send(r);
        }
    }

    fn answer_sync(&mut self, r: SyncResult) {
        if let Some(tx) = self.awaiting_sync.take() {
            let _ = tx.send(r);
        }
    }
}

/// The broker's group settings that the state machine needs.
#[derive(Clone, Copy, Debug)]
pub struct GroupLimits {
    pub initial_rebalance_delay: Duration,
    pub max_size: usize,
}

impl GroupLimits {
    pub fn from_settings(s: &crate::settings::GroupSettings) -> Self {
        GroupLimits {
            initial_rebalance_delay: Duration::from_millis(
                u64::try_from(s.initial_rebalance_delay_ms).unwrap_or(0),
            ),
            max_size: usize::try_from(s.max_size).unwrap_or(usize::MAX),
        }
    }
}

struct InitialDelay {
    delay: Duration,
    remaining: Duration,
    new_member_added: bool,
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    /// In join order; the order picks the next leader.
    members: Vec<Member>,
    /// group.instance.id -> member id.
    static_members: HashMap<String, String>,
    /// Ids handed out with MEMBER_ID_REQUIRED, and when they lapse if the member never joins.
    pending_members: HashMap<String, Instant>,
    join_deadline: Option<Instant>,
    initial_delay: Option<InitialDelay>,
    sync_deadline: Option<Instant>,
    pending_sync: HashSet<String>,
    pub state_timestamp_ms: i64,
    limits: GroupLimits,
    /// Set when the group became Empty by a completed rebalance; its record must be written.
    needs_write: bool,
}

impl Group {
    pub fn new(id: &str, limits: GroupLimits) -> Self {
        Group {
            limits,
            needs_write: false,
            id: id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: Vec::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            join_deadline: None,
            initial_delay: None,
            sync_deadline: None,
            pending_sync: HashSet::new(),
            state_timestamp_ms: crate::clock::now_ms(),
        }
    }

    /// A group loaded from its last record: members resume as Stable and must heartbeat within
    /// their session timeout, as after a Kafka coordinator failover.
    pub fn from_stored(id: &str, stored: StoredGroup, now: Instant, limits: GroupLimits) -> Self {
        let mut g = Group::new(id, limits);
        g.generation = stored.generation;
        g.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
        g.protocol_name = stored.protocol;
        g.leader = stored.leader;
        g.state_timestamp_ms = stored.state_timestamp_ms;
        for m in stored.members {
            let session = Duration::from_millis(u64::try_from(m.session_timeout_ms).unwrap_or(0));
            if let Some(instance) = &m.instance_id {
                g.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            let protocols = g
                .protocol_name
                .clone()
                .map(|p| vec![(p, m.subscription.clone())])
                .unwrap_or_default();
            g.members.push(Member {
                id: m.member_id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout: session,
                rebalance_timeout: Duration::from_millis(
                    u64::try_from(m.rebalance_timeout_ms).unwrap_or(0),
                ),
                protocols,
                assignment: m.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                heartbeat_deadline: now + session,
                is_new: false,
            });
        }
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        g
    }

    /// The record that persists this group, with `assignments` where given (leader's sync).
    pub fn to_stored(&self, assignments: Option<&HashMap<String, Bytes>>) -> StoredGroup {
        let protocol = self.protocol_name.clone();
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: crate::clock::now_ms(),
            members: self
                .members
                .iter()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: millis_i32(m.rebalance_timeout),
                    session_timeout_ms: millis_i32(m.session_timeout),
                    subscription: protocol
                        .as_deref()
                        .map(|p| m.metadata_for(p))
                        .unwrap_or_default(),
                    assignment: match assignments {
                        Some(a) => a.get(&m.id).cloned().unwrap_or_default(),
                        None => m.assignment.clone(),
                    },
                })
                .collect(),
        }
    }

    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter()
    }

    pub fn has_member(&self, id: &str) -> bool {
        self.members.iter().any(|m| m.id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn is_leader(&self, id: &str) -> bool {
        self.leader.as_deref() == Some(id)
    }

    /// A known instance id presented with a member id that is not its current one.
    pub fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|current| current != member_id)
    }

    fn set_state(&mut self, state: GroupState) {
        self.state = state;
        self.state_timestamp_ms = crate::clock::now_ms();
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let Some(first) = self.members.first() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == n))
            })
            .collect()
    }

    /// Kafka's `supportsProtocols`: a joiner must share the type and at least one protocol
    /// with every current member.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(p, _)| candidates.contains(p))
    }

    /// Every member votes for its most preferred candidate; the most votes wins, ties going to
    /// the leader's preference order.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in &self.members {
            if let Some((p, _)) = m.protocols.iter().find(|(p, _)| candidates.contains(p)) {
                *votes.entry(p.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max()?;
        candidates
            .into_iter()
            .find(|c| votes.get(c.as_str()) == Some(&best))
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }
}

fn millis_i32(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

mod join;
mod members;

#[cfg(test)]
mod tests;

//! `ControllerNode`: one voter of the controller's Raft group, on its node's controller shard
//! (`!Send`; everything here lives on that shard's executor). A driver task owns raft-rs's
//! `RawNode`, ticks it on a timer, feeds it the messages and proposals queued here, and handles
//! each `Ready` (driver.rs). This handle only queues work and reads the state the driver
//! publishes after every step: role, leader, indexes and the applied `ClusterImage`.
//!
//! The transport is not here: it implements `RaftTransport` for outgoing messages and delivers
//! incoming ones through a `Mailbox`.

mod driver;
mod logger;
mod pending;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use glommio::channels::local_channel::{self, LocalSender};
use raft::eraftpb::Message;

use crate::codec::{self, EncodeError};
use crate::error::{ControllerError, Result};
use crate::ids::NodeId;
use crate::image::{ClusterImage, MetadataRecord};
use crate::limits::{
    ELECTION_TICKS_DEFAULT, ENTRY_BYTES_MAX, HEARTBEAT_TICKS_DEFAULT, INBOX_BYTES_MAX,
    INBOX_DEPTH_MAX, LOG_SEGMENT_BYTES_DEFAULT, PROPOSALS_QUEUED_MAX, SNAPSHOT_BYTES_MAX,
    SNAPSHOT_EVERY_BYTES_DEFAULT, SNAPSHOT_EVERY_ENTRIES_DEFAULT, TICK_INTERVAL_MS_DEFAULT,
    TICK_INTERVAL_MS_MIN, VOTERS_MAX,
};
use crate::transport::RaftTransport;

/// Settings of one controller voter.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub node_id: NodeId,
    /// Every voter of the group, this node included. Fixed for the group's life: membership
    /// changes are not supported yet, and a restart with other voters is refused.
    pub voters: Vec<NodeId>,
    /// The controller's own directory (its Raft log, raft-state and snapshot).
    pub data_dir: PathBuf,
    pub tick_interval: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    pub snapshot_every_entries: u64,
    pub snapshot_every_bytes: u64,
    pub log_segment_bytes: u64,
}

impl ControllerConfig {
    /// The defaults of `limits.rs` for `node_id` in a group of `voters`.
    pub fn new(node_id: NodeId, voters: Vec<NodeId>, data_dir: PathBuf) -> Self {
        ControllerConfig {
            node_id,
            voters,
            data_dir,
            tick_interval: Duration::from_millis(TICK_INTERVAL_MS_DEFAULT),
            election_ticks: ELECTION_TICKS_DEFAULT,
            heartbeat_ticks: HEARTBEAT_TICKS_DEFAULT,
            snapshot_every_entries: SNAPSHOT_EVERY_ENTRIES_DEFAULT,
            snapshot_every_bytes: SNAPSHOT_EVERY_BYTES_DEFAULT,
            log_segment_bytes: LOG_SEGMENT_BYTES_DEFAULT,
        }
    }

    /// Single-node mode: a one-voter group inside the broker process.
    pub fn single_node(node_id: NodeId, data_dir: PathBuf) -> Self {
        Self::new(node_id, vec![node_id], data_dir)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(ControllerError::InvalidConfig(what));
        if self.node_id.to_raft().is_none() {
            return bad(format!("node id {} must be positive", self.node_id));
        }
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.voters.len() {
            return bad(format!("voters {:?} repeat an id", self.voters));
        }
        if let Some(v) = self.voters.iter().find(|v| v.to_raft().is_none()) {
            return bad(format!("voter id {v} must be positive"));
        }
        if !self.voters.contains(&self.node_id) {
            return bad(format!("node {} is not among the voters", self.node_id));
        }
        if self.voters.len() > VOTERS_MAX || self.voters.len().is_multiple_of(2) {
            // An even count tolerates no more failures than one voter fewer.
            return bad(format!(
                "{} voters: use 1, 3 or {VOTERS_MAX}",
                self.voters.len()
            ));
        }
        if self.tick_interval < Duration::from_millis(TICK_INTERVAL_MS_MIN) {
            return bad(format!(
                "tick interval {:?} is too short",
                self.tick_interval
            ));
        }
        if self.heartbeat_ticks == 0 || self.heartbeat_ticks >= self.election_ticks {
            return bad(format!(
                "heartbeat ticks {} must be in [1, election ticks {})",
                self.heartbeat_ticks, self.election_ticks
            ));
        }
        if self.snapshot_every_entries == 0
            || self.snapshot_every_bytes == 0
            || self.snapshot_every_bytes > SNAPSHOT_BYTES_MAX as u64
        {
            return bad("snapshot intervals must be positive and bounded".to_string());
        }
        Ok(())
    }
}

/// The Raft role as the driver last published it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
    /// The driver has stopped (shutdown or a fatal error, see `NodeStatus::stopped`).
    Stopped,
}

/// What the driver published after its latest step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: NodeId,
    pub role: Role,
    pub leader: Option<NodeId>,
    /// The active controller: the leader, once its image holds every entry committed before
    /// its term (it has applied an entry of its own term). Decisions are taken only then.
    pub active: bool,
    pub raft_term: u64,
    /// Inclusive: the last index known committed.
    pub commit_index: u64,
    /// Inclusive: the last index applied to the image.
    pub applied_index: u64,
    /// The index the latest snapshot covers (0: none).
    pub snapshot_index: u64,
    /// Ticks since the node started: the group's clock.
    pub ticks: u64,
    /// Snapshots received from a leader (this node had fallen behind its compacted log).
    pub snapshots_installed: u64,
    /// Incoming messages dropped because the inbox was full.
    pub inbox_dropped: u64,
    /// Why the driver stopped, once it has.
    pub stopped: Option<String>,
    /// The last other voter this node followed as leader, and when a message from it last
    /// arrived: a new leader knows how long its predecessor has been silent.
    pub leader_contact: Option<(NodeId, Instant)>,
}

/// A committed and applied proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub raft_index: u64,
    pub raft_term: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader proposes; `leader` is whom to ask, if known.
    #[error("not the active controller (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("proposal of {size_bytes} bytes exceeds the limit of {max_bytes}")]
    TooLarge { size_bytes: usize, max_bytes: usize },
    #[error("could not encode the records: {0}")]
    Encode(EncodeError),
    /// Back-pressure: too many queued or uncommitted proposals. Retry later.
    #[error("controller busy: {reason}")]
    Busy { reason: &'static str },
    /// A newer leader's entry took the proposal's place: it will never commit.
    #[error("dropped: a leader change replaced index {raft_index} (proposed in term {raft_term})")]
    Dropped { raft_index: u64, raft_term: u64 },
    /// A snapshot from a newer leader covered the proposal's index: it may or may not have
    /// committed; read the image to find out.
    #[error("outcome unknown: a snapshot covered index {raft_index}")]
    OutcomeUnknown { raft_index: u64 },
    #[error("controller node stopped: {reason}")]
    Stopped { reason: String },
}

pub(crate) type Reply = oneshot::Sender<std::result::Result<Committed, ProposeError>>;

/// What the transport learned about a peer, for raft-rs's flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerReport {
    Unreachable(u64),
    Snapshot { peer: u64, delivered: bool },
}

pub(crate) struct Proposal {
    data: Vec<u8>,
    reply: Reply,
}

/// State shared by the handle (and its mailboxes) and the driver. Borrowed only briefly,
/// never across an await.
pub(crate) struct Shared {
    inbox: VecDeque<Message>,
    /// Approximate bytes held by `inbox` (payloads), bounded by `INBOX_BYTES_MAX`.
    inbox_bytes: usize,
    proposals: VecDeque<Proposal>,
    /// At most one per peer and kind (see `Mailbox::report`).
    reports: Vec<PeerReport>,
    stop_requested: bool,
    status: NodeStatus,
    image: Rc<ClusterImage>,
    /// Woken (and emptied) whenever a new image is published.
    image_waiters: Vec<oneshot::Sender<()>>,
}

/// Payload bytes a queued message holds (entries and snapshot data, plus a header).
pub(crate) fn message_bytes(msg: &Message) -> usize {
    let entries: usize = msg
        .get_entries()
        .iter()
        .map(|e| e.data.len() + e.context.len() + 32)
        .sum();
    entries + msg.get_snapshot().data.len() + 64
}

/// Where a transport delivers incoming Raft messages for one node. Cheap to clone.
#[derive(Clone)]
pub struct Mailbox {
    id: NodeId,
    shared: Rc<RefCell<Shared>>,
    doorbell: Rc<LocalSender<()>>,
}

/// Why an incoming message was not queued. Raft recovers from every drop by retransmitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    #[error("message for node {to}, this is node {this}")]
    WrongNode { to: u64, this: NodeId },
    #[error("inbox full ({INBOX_DEPTH_MAX} messages or {INBOX_BYTES_MAX} bytes)")]
    InboxFull,
    #[error("controller node stopped")]
    Stopped,
}

impl Mailbox {
    /// Queues an incoming message for the driver; never blocks.
    pub fn deliver(&self, msg: Message) -> std::result::Result<(), DeliverError> {
        if NodeId::from_raft(msg.to) != Some(self.id) {
            return Err(DeliverError::WrongNode {
                to: msg.to,
                this: self.id,
            });
        }
        {
            let mut sh = self.shared.borrow_mut();
            if sh.status.stopped.is_some() {
                return Err(DeliverError::Stopped);
            }
            let size = message_bytes(&msg);
            // One message always fits an empty inbox, however large, so a snapshot can land.
            let over_bytes = sh.inbox_bytes + size > INBOX_BYTES_MAX && !sh.inbox.is_empty();
            if sh.inbox.len() >= INBOX_DEPTH_MAX || over_bytes {
                sh.status.inbox_dropped += 1;
                return Err(DeliverError::InboxFull);
            }
            sh.inbox_bytes += size;
            sh.inbox.push_back(msg);
        }
        self.ring();
        Ok(())
    }

    /// The transport could not reach `peer`: the leader probes it instead of streaming to it.
    pub fn report_unreachable(&self, peer: NodeId) {
        if let Some(id) = peer.to_raft() {
            self.report(PeerReport::Unreachable(id));
        }
    }

    /// Whether a snapshot message (`MsgSnapshot`) this node sent reached `peer`. The transport
    /// must report every one: until it does, the leader sends that peer nothing else.
    pub fn report_snapshot(&self, peer: NodeId, delivered: bool) {
        if let Some(id) = peer.to_raft() {
            self.report(PeerReport::Snapshot {
                peer: id,
                delivered,
            });
        }
    }

    /// Queues a report, keeping one per peer and kind (the latest): at most two per voter.
    fn report(&self, report: PeerReport) {
        {
            let mut sh = self.shared.borrow_mut();
            sh.reports.retain(|r| match (r, &report) {
                (PeerReport::Unreachable(a), PeerReport::Unreachable(b)) => a != b,
                (PeerReport::Snapshot { peer: a, .. }, PeerReport::Snapshot { peer: b, .. }) => {
                    a != b
                }
                _ => true,
            });
            sh.reports.push(report);
        }
        self.ring();
    }

    fn ring(&self) {
        // A full doorbell already has a wake-up pending; that one covers this work too.
        let _ = self.doorbell.try_send(());
    }
}

/// One controller voter. Dropping it stops the driver where it stands, like a crash (storage
/// finishes the writes it started); `shutdown` stops it cleanly.
pub struct ControllerNode {
    mailbox: Mailbox,
    driver: Option<glommio::Task<Result<()>>>,
}

impl ControllerNode {
    /// Opens the node's log in `config.data_dir`, recovers its state and image, and starts the
    /// driver on the current executor (the controller shard).
    pub async fn start(
        config: ControllerConfig,
        transport: Rc<dyn RaftTransport>,
    ) -> Result<ControllerNode> {
        config.validate()?;
        let (doorbell_tx, doorbell_rx) = local_channel::new_bounded(1);
        let shared = Rc::new(RefCell::new(Shared {
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            proposals: VecDeque::new(),
            reports: Vec::new(),
            stop_requested: false,
            status: NodeStatus {
                id: config.node_id,
                role: Role::Follower,
                leader: None,
                active: false,
                raft_term: 0,
                commit_index: 0,
                applied_index: 0,
                snapshot_index: 0,
                ticks: 0,
                snapshots_installed: 0,
                inbox_dropped: 0,
                stopped: None,
                leader_contact: None,
            },
            image: Rc::new(ClusterImage::default()),
            image_waiters: Vec::new(),
        }));
        let id = config.node_id;
        let driver =
            driver::Driver::open(config, transport, Rc::clone(&shared), doorbell_rx).await?;
        let task = glommio::spawn_local(driver.run());
        Ok(ControllerNode {
            mailbox: Mailbox {
                id,
                shared,
                doorbell: Rc::new(doorbell_tx),
            },
            driver: Some(task),
        })
    }

    pub fn id(&self) -> NodeId {
        self.mailbox.id
    }

    /// A handle for the transport to deliver incoming messages with.
    pub fn mailbox(&self) -> Mailbox {
        self.mailbox.clone()
    }

    /// `Mailbox::deliver` on this node's mailbox.
    pub fn step(&self, msg: Message) -> std::result::Result<(), DeliverError> {
        self.mailbox.deliver(msg)
    }

    /// Proposes `records` as one entry; resolves once it is committed and applied to this
    /// node's image (so `image()` already shows it), or with why it never will be.
    pub async fn propose(
        &self,
        records: &[MetadataRecord],
    ) -> std::result::Result<Committed, ProposeError> {
        let data = codec::encode_records(records).map_err(ProposeError::Encode)?;
        if data.len() > ENTRY_BYTES_MAX {
            return Err(ProposeError::TooLarge {
                size_bytes: data.len(),
                max_bytes: ENTRY_BYTES_MAX,
            });
        }
        let (reply, answer) = oneshot::channel();
        {
            let mut sh = self.mailbox.shared.borrow_mut();
            if let Some(reason) = &sh.status.stopped {
                return Err(ProposeError::Stopped {
                    reason: reason.clone(),
                });
            }
            if sh.status.role != Role::Leader {
                return Err(ProposeError::NotLeader {
                    leader: sh.status.leader,
                });
            }
            if sh.proposals.len() >= PROPOSALS_QUEUED_MAX {
                return Err(ProposeError::Busy {
                    reason: "too many queued proposals",
                });
            }
            sh.proposals.push_back(Proposal { data, reply });
        }
        self.mailbox.ring();
        answer.await.unwrap_or_else(|_| {
            Err(ProposeError::Stopped {
                reason: "the driver ended without answering".to_string(),
            })
        })
    }

    /// Whether this node is the active controller (see `NodeStatus::active`): the one that
    /// decides, on an image that is current.
    pub fn is_leader(&self) -> bool {
        self.mailbox.shared.borrow().status.active
    }

    pub fn leader_id(&self) -> Option<NodeId> {
        self.mailbox.shared.borrow().status.leader
    }

    /// The image as of the last applied entry; an immutable snapshot, swapped whole.
    pub fn image(&self) -> Rc<ClusterImage> {
        Rc::clone(&self.mailbox.shared.borrow().image)
    }

    /// Resolves when an image newer than applied index `after` is published, or after `timeout`
    /// (or once the node stops), with the image then current and its applied index.
    pub async fn wait_for_image(&self, after: u64, timeout: Duration) -> (Rc<ClusterImage>, u64) {
        let current = || {
            let sh = self.mailbox.shared.borrow();
            (
                Rc::clone(&sh.image),
                sh.status.applied_index,
                sh.status.stopped.is_some(),
            )
        };
        let (image, applied, stopped) = current();
        if applied > after || stopped {
            return (image, applied);
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut sh = self.mailbox.shared.borrow_mut();
            // Senders whose waiter gave up are dropped here, so the list stays bounded.
            sh.image_waiters.retain(|w| !w.is_canceled());
            sh.image_waiters.push(tx);
        }
        let _ = futures_lite::future::or(async { rx.await.is_ok() }, async {
            glommio::timer::sleep(timeout).await;
            false
        })
        .await;
        let (image, applied, _) = current();
        (image, applied)
    }

    pub fn status(&self) -> NodeStatus {
        self.mailbox.shared.borrow().status.clone()
    }

    /// Stops the driver after its current step, writes the final raft-state and closes the
    /// log cleanly. Queued proposals fail with `Stopped`. Returns the error that stopped the
    /// driver earlier, if one did.
    pub async fn shutdown(mut self) -> Result<()> {
        self.mailbox.shared.borrow_mut().stop_requested = true;
        self.mailbox.ring();
        match self.driver.take() {
            Some(task) => task.await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;

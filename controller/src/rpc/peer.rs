//! `PeerTransport`: one voter's outgoing Raft messages over TCP (controller shard). One bounded
//! queue and one sender task per peer; the task connects lazily, reconnects with backoff, and
//! tells the node's mailbox what it learns (unreachable peers, the fate of each snapshot).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use raft::eraftpb::{Message, MessageType};
use skein_net::internal::{encode_internal, InternalFrame, InternalMessage};

use super::{connect, InternalGuard, Stream};
use crate::ids::NodeId;
use crate::limits::{
    INTERNAL_FRAME_BYTES_MAX, PEER_QUEUE_BYTES_MAX, PEER_QUEUE_DEPTH_MAX,
    PEER_RECONNECT_BACKOFF_MS_MAX, PEER_RECONNECT_BACKOFF_MS_MIN,
};
use crate::node::{message_bytes, Mailbox};
use crate::transport::{encode_message, RaftTransport};

/// Outgoing Raft traffic of one voter: `send` queues, a task per peer writes.
pub struct PeerTransport {
    self_id: NodeId,
    peers: BTreeMap<NodeId, PeerQueue>,
    /// Set by `attach` once the node (and so its mailbox) exists.
    mailbox: Rc<RefCell<Option<Mailbox>>>,
    senders: RefCell<Vec<glommio::Task<()>>>,
}

struct PeerQueue {
    tx: LocalSender<Message>,
    /// Approximate payload bytes queued (`message_bytes`), shared with the sender task.
    queued_bytes: Rc<Cell<usize>>,
}

impl PeerTransport {
    /// A transport for `self_id` to `peers` (entries for `self_id` are ignored). Starts one
    /// sender task per peer on the current executor; nothing connects until there is traffic.
    pub fn new(
        self_id: NodeId,
        peers: Vec<(NodeId, SocketAddr)>,
        guard: InternalGuard,
    ) -> Rc<PeerTransport> {
        let mailbox = Rc::new(RefCell::new(None));
        let mut queues = BTreeMap::new();
        let mut senders = Vec::new();
        for (peer, addr) in peers.into_iter().filter(|(id, _)| *id != self_id) {
            let (tx, rx) = local_channel::new_bounded(PEER_QUEUE_DEPTH_MAX);
            let queued_bytes = Rc::new(Cell::new(0));
            let sender = PeerSender {
                self_id,
                peer,
                addr,
                rx,
                queued_bytes: Rc::clone(&queued_bytes),
                mailbox: Rc::clone(&mailbox),
                guard: guard.clone(),
            };
            senders.push(glommio::spawn_local(sender.run()));
            queues.insert(peer, PeerQueue { tx, queued_bytes });
        }
        Rc::new(PeerTransport {
            self_id,
            peers: queues,
            mailbox,
            senders: RefCell::new(senders),
        })
    }

    /// Where reports go; until attached, what the senders learn is not reported.
    pub fn attach(&self, mailbox: Mailbox) {
        *self.mailbox.borrow_mut() = Some(mailbox);
    }

    /// Stops every sender task (their connections close); later messages are dropped.
    pub async fn close(&self) {
        let senders = std::mem::take(&mut *self.senders.borrow_mut());
        for task in senders {
            task.cancel().await;
        }
    }
}

impl RaftTransport for PeerTransport {
    fn send(&self, msg: Message) {
        let Some(peer) = NodeId::from_raft(msg.to) else {
            tracing::debug!(node = %self.self_id, to = msg.to, "raft message to no one dropped");
            return;
        };
        let Some(queue) = self.peers.get(&peer) else {
            tracing::debug!(node = %self.self_id, %peer, "raft message to an unknown peer dropped");
            return;
        };
        let size = message_bytes(&msg);
        let queued = queue.queued_bytes.get();
        let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        // One message always fits an empty queue, however large, so a snapshot can go.
        let fits = queued == 0 || queued + size <= PEER_QUEUE_BYTES_MAX;
        if fits && queue.tx.try_send(msg).is_ok() {
            queue.queued_bytes.set(queued + size);
            return;
        }
        // Full (or closed): dropped; Raft retransmits, and a snapshot's loss is reported.
        tracing::debug!(node = %self.self_id, %peer, "peer queue full, raft message dropped");
        if snapshot {
            report(&self.mailbox, |m| m.report_snapshot(peer, false));
        }
    }
}

fn report(mailbox: &RefCell<Option<Mailbox>>, f: impl FnOnce(&Mailbox)) {
    // Cloned out so the report never runs under this borrow.
    let mailbox = mailbox.borrow().clone();
    if let Some(mailbox) = mailbox {
        f(&mailbox);
    }
}

/// The sender task of one peer.
struct PeerSender {
    self_id: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    rx: LocalReceiver<Message>,
    queued_bytes: Rc<Cell<usize>>,
    mailbox: Rc<RefCell<Option<Mailbox>>>,
    guard: InternalGuard,
}

impl PeerSender {
    async fn run(self) {
        let mut conn: Option<Stream> = None;
        let mut backoff = Duration::from_millis(PEER_RECONNECT_BACKOFF_MS_MIN);
        let mut retry_at = Instant::now();
        while let Some(msg) = self.rx.recv().await {
            let size = message_bytes(&msg);
            self.queued_bytes
                .set(self.queued_bytes.get().saturating_sub(size));
            let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
            let Some(frame) = self.frame(&msg) else {
                self.lost(snapshot, false);
                continue;
            };
            if conn.is_none() {
                if Instant::now() < retry_at {
                    // Still backing off: the peer refused us a moment ago.
                    self.lost(snapshot, true);
                    continue;
                }
                match connect(self.addr, &self.guard).await {
                    Ok(stream) => {
                        let (peer, addr) = (self.peer, self.addr);
                        tracing::debug!(%peer, %addr, "raft peer connected");
                        backoff = Duration::from_millis(PEER_RECONNECT_BACKOFF_MS_MIN);
                        conn = Some(stream);
                    }
                    Err(cause) => {
                        let (peer, addr) = (self.peer, self.addr);
                        tracing::debug!(%peer, %addr, %cause, "raft peer unreachable");
                        retry_at = Instant::now() + backoff;
                        backoff =
                            (backoff * 2).min(Duration::from_millis(PEER_RECONNECT_BACKOFF_MS_MAX));
                        self.lost(snapshot, true);
                        continue;
                    }
                }
            }
            let Some(stream) = conn.as_mut() else {
                continue;
            };
            match skein_net::write_flush(stream, &frame).await {
                Ok(()) if snapshot => {
                    report(&self.mailbox, |m| m.report_snapshot(self.peer, true));
                }
                Ok(()) => {}
                Err(e) => {
                    let (peer, addr) = (self.peer, self.addr);
                    tracing::debug!(%peer, %addr, error = %e, "raft peer write failed");
                    conn = None;
                    self.lost(snapshot, true);
                }
            }
        }
    }

    /// The message as a frame, or `None` (logged) if it cannot travel.
    fn frame(&self, msg: &Message) -> Option<Bytes> {
        let payload = match encode_message(msg) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "raft message not encodable");
                return None;
            }
        };
        let frame = encode_internal(&InternalFrame {
            correlation_id: 0,
            from_node: self.self_id.0,
            message: InternalMessage::Raft(Bytes::from(payload)),
        });
        if frame.len().saturating_sub(4) > INTERNAL_FRAME_BYTES_MAX {
            // The peer would refuse it and close the connection.
            let size = frame.len();
            tracing::warn!(peer = %self.peer, size, "raft message over the frame limit, dropped");
            return None;
        }
        Some(frame)
    }

    /// A message did not reach the peer: say so where raft-rs needs to know.
    fn lost(&self, snapshot: bool, unreachable: bool) {
        if unreachable {
            report(&self.mailbox, |m| m.report_unreachable(self.peer));
        }
        if snapshot {
            report(&self.mailbox, |m| m.report_snapshot(self.peer, false));
        }
    }
}

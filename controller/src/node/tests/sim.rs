//! An in-process cluster for the node tests: every voter on this test's glommio executor, each
//! in its own data dir, connected by a simulated network that delivers through the real wire
//! codec and can cut links. No sockets.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use raft::eraftpb::MessageType;
use tempfile::TempDir;
use uuid::Uuid;

use crate::image::{BrokerRegistration, ClusterImage, MetadataRecord};
use crate::test_util::temp_dir;
use crate::transport::{decode_message, encode_message, RaftTransport};
use crate::{ControllerConfig, ControllerNode, Mailbox, NodeId, ProposeError, RaftMessage};

#[derive(Default)]
pub(super) struct Net {
    mailboxes: RefCell<BTreeMap<u64, Mailbox>>,
    /// Directed links that drop everything: (from, to).
    cut: RefCell<BTreeSet<(u64, u64)>>,
    /// Nodes whose next incoming snapshot is lost (once each).
    lose_next_snapshot_to: RefCell<BTreeSet<u64>>,
    pub snapshots_lost: std::cell::Cell<u64>,
}

impl Net {
    fn deliver(&self, msg: RaftMessage) {
        let (from, to) = (msg.from, msg.to);
        let snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        let lost = snapshot && self.lose_next_snapshot_to.borrow_mut().remove(&to);
        if lost {
            self.snapshots_lost.set(self.snapshots_lost.get() + 1);
        }
        let delivered = !lost && !self.cut.borrow().contains(&(from, to)) && {
            // Through the wire encoding, as the real transport will.
            let msg = decode_message(&encode_message(&msg).unwrap()).unwrap();
            let mailbox = self.mailboxes.borrow().get(&to).cloned();
            mailbox.is_some_and(|m| m.deliver(msg).is_ok())
        };
        if snapshot {
            let sender = self.mailboxes.borrow().get(&from).cloned();
            if let Some(m) = sender {
                m.report_snapshot(NodeId(to as i32), delivered);
            }
        }
    }

    /// Cuts every link between `side` and the rest of `all`, both ways.
    pub fn partition(&self, side: &[u64], all: &[u64]) {
        let mut cut = self.cut.borrow_mut();
        for a in side {
            for b in all.iter().filter(|b| !side.contains(b)) {
                cut.insert((*a, *b));
                cut.insert((*b, *a));
            }
        }
    }

    pub fn lose_next_snapshot_to(&self, id: u64) {
        self.lose_next_snapshot_to.borrow_mut().insert(id);
    }

    /// Cuts every link: nothing moves until `heal`.
    pub fn isolate_all(&self, all: &[u64]) {
        for id in all {
            self.partition(&[*id], all);
        }
    }

    pub fn heal(&self) {
        self.cut.borrow_mut().clear();
    }
}

struct SimTransport(Rc<Net>);

impl RaftTransport for SimTransport {
    fn send(&self, msg: RaftMessage) {
        self.0.deliver(msg);
    }
}

pub(super) struct Cluster {
    pub net: Rc<Net>,
    pub ids: Vec<u64>,
    pub nodes: BTreeMap<u64, ControllerNode>,
    dirs: BTreeMap<u64, TempDir>,
    pub tick: Duration,
    pub snapshot_every_entries: u64,
}

impl Cluster {
    pub fn new(voters: u64, tick: Duration) -> Cluster {
        let ids: Vec<u64> = (1..=voters).collect();
        Cluster {
            net: Rc::new(Net::default()),
            dirs: ids.iter().map(|id| (*id, temp_dir())).collect(),
            ids,
            nodes: BTreeMap::new(),
            tick,
            snapshot_every_entries: crate::limits::SNAPSHOT_EVERY_ENTRIES_DEFAULT,
        }
    }

    pub fn config(&self, id: u64) -> ControllerConfig {
        let voters = self.ids.iter().map(|v| NodeId(*v as i32)).collect();
        let mut c = ControllerConfig::new(
            NodeId(id as i32),
            voters,
            self.dirs[&id].path().to_path_buf(),
        );
        c.tick_interval = self.tick;
        c.snapshot_every_entries = self.snapshot_every_entries;
        c.log_segment_bytes = 4096;
        c
    }

    pub async fn start_node(&mut self, id: u64) {
        let transport = Rc::new(SimTransport(Rc::clone(&self.net)));
        let node = ControllerNode::start(self.config(id), transport)
            .await
            .unwrap();
        self.net.mailboxes.borrow_mut().insert(id, node.mailbox());
        self.nodes.insert(id, node);
    }

    pub async fn start_all(&mut self) {
        for id in self.ids.clone() {
            self.start_node(id).await;
        }
    }

    /// Stops a node as a crash would: its driver is dropped where it stands.
    pub fn crash(&mut self, id: u64) {
        self.net.mailboxes.borrow_mut().remove(&id);
        drop(self.nodes.remove(&id));
    }

    /// Starts a crashed node again, once storage has finished the writes it had started.
    pub async fn restart_crashed(&mut self, id: u64) {
        glommio::timer::sleep(Duration::from_millis(50)).await;
        self.start_node(id).await;
    }

    pub async fn shutdown(&mut self, id: u64) {
        self.net.mailboxes.borrow_mut().remove(&id);
        if let Some(n) = self.nodes.remove(&id) {
            n.shutdown().await.unwrap();
        }
    }

    pub fn node(&self, id: u64) -> &ControllerNode {
        &self.nodes[&id]
    }

    /// The active leaders among the running nodes.
    pub fn leaders(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_leader())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Waits until one of `among` is the active leader; returns it.
    pub async fn wait_leader(&self, among: &[u64], within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let leaders: Vec<u64> = self
                .leaders()
                .into_iter()
                .filter(|l| among.contains(l))
                .collect();
            if let [one] = leaders[..] {
                return one;
            }
            assert!(
                Instant::now() < deadline,
                "no leader among {among:?} in {within:?}"
            );
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until every running node in `among` applied `index`.
    pub async fn wait_applied(&self, among: &[u64], index: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while among
            .iter()
            .any(|id| self.nodes[id].status().applied_index < index)
        {
            let st: Vec<_> = among.iter().map(|id| self.nodes[id].status()).collect();
            assert!(Instant::now() < deadline, "not applied {index}: {st:#?}");
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Proposes on whoever leads, retrying through elections, until the records commit.
    pub async fn propose(&self, records: &[MetadataRecord]) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let leader = self
                .wait_leader(&self.running(), Duration::from_secs(20))
                .await;
            match self.nodes[&leader].propose(records).await {
                Ok(c) => return c.raft_index,
                Err(ProposeError::NotLeader { .. } | ProposeError::Dropped { .. }) => {}
                Err(e) => panic!("proposal failed: {e}"),
            }
            assert!(Instant::now() < deadline, "no commit for {records:?}");
        }
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn images(&self, among: &[u64]) -> Vec<Rc<ClusterImage>> {
        among.iter().map(|id| self.nodes[id].image()).collect()
    }
}

/// A registered, unfenced broker (so topics can be placed on it).
pub(super) fn broker(id: i32) -> MetadataRecord {
    MetadataRecord::RegisterBroker(BrokerRegistration {
        id,
        incarnation: Uuid::from_u128(id as u128),
        epoch: i64::from(id),
        endpoints: Vec::new(),
        rack: None,
        fenced: false,
        in_controlled_shutdown: false,
    })
}

pub(super) fn producer_ids(next_block_start: i64) -> MetadataRecord {
    MetadataRecord::ProducerIds {
        broker: 1,
        next_block_start,
    }
}

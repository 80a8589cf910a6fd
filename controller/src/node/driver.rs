//! The driver of one controller voter (a task on the controller shard): the only owner of
//! raft-rs's `RawNode`, the durable log and the applied image. One loop: wait for the next
//! tick or for queued work, tick, step the queued messages and proposals, then handle every
//! `Ready` in the order raft-rs requires:
//!
//! 1. send `messages` (a leader's appends: it counts itself only once its own write is done,
//!    raft thesis 10.2.1);
//! 2. install a received snapshot; append the new entries (fdatasync); persist term and vote;
//! 3. only then send `persisted_messages` (votes, append responses);
//! 4. apply committed entries to the image, publish it, answer the proposals they decide;
//! 5. `advance`, and the same for the `LightReady`; persist the commit index.
//!
//! A failed write or an undecodable committed entry stops the node: Raft cannot go on without
//! its log, and applying half of the log would let this voter's image diverge.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::LocalReceiver;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole};

use super::logger::raft_logger;
use super::pending::Pending;
use super::{ControllerConfig, PeerReport, Proposal, ProposeError, Role, Shared};
use crate::codec;
use crate::error::{ControllerError, Result};
use crate::ids::NodeId;
use crate::image::ClusterImage;
use crate::limits::{
    MSG_ENTRIES_BYTES_MAX, MSG_INFLIGHT_MAX, SNAPSHOT_BYTES_MAX, UNCOMMITTED_BYTES_MAX,
};
use crate::raft_log::{DiskLog, MemLog};
use crate::transport::RaftTransport;

pub(super) struct Driver {
    id: NodeId,
    voters: Vec<u64>,
    raw: RawNode<MemLog>,
    disk: DiskLog,
    /// Applied through `applied`; shared with readers as an immutable snapshot.
    image: Rc<ClusterImage>,
    applied: u64,
    /// The HardState as last written to raft-state.
    persisted: HardState,
    pending: Pending,
    transport: Rc<dyn RaftTransport>,
    shared: Rc<RefCell<Shared>>,
    doorbell: LocalReceiver<()>,
    tick_interval: Duration,
    ticks: u64,
    /// See `NodeStatus::leader_contact`.
    leader_contact: Option<(NodeId, Instant)>,
    snapshot_every_entries: u64,
    snapshot_every_bytes: u64,
}

/// Applies one committed entry. A batch is decoded whole before any record applies.
fn apply_entry(image: &mut ClusterImage, e: &Entry) -> Result<()> {
    match e.get_entry_type() {
        EntryType::EntryNormal => {
            // Empty: the entry a new leader appends to commit its term.
            if !e.data.is_empty() {
                let records = codec::decode_records(&e.data).map_err(|source| {
                    ControllerError::CommittedEntry {
                        raft_index: e.index,
                        source,
                    }
                })?;
                for r in &records {
                    image.apply(r);
                }
            }
            Ok(())
        }
        EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => Err(
            ControllerError::Unsupported(format!("membership change entry at index {}", e.index)),
        ),
    }
}

fn sorted(ids: &[u64]) -> Vec<u64> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v
}

/// The group's voters are fixed: a stored or received ConfState must name the configured ones.
fn check_voters(configured: &[u64], cs: &ConfState) -> Result<()> {
    let stored = sorted(&cs.voters);
    let joint = !cs.voters_outgoing.is_empty() || !cs.learners.is_empty();
    if stored != configured || joint {
        return Err(ControllerError::VotersChanged {
            stored,
            configured: configured.to_vec(),
        });
    }
    Ok(())
}

impl Driver {
    /// Opens the log, checks the voters, replays the image up to the stored commit index and
    /// builds the `RawNode`.
    pub async fn open(
        config: ControllerConfig,
        transport: Rc<dyn RaftTransport>,
        shared: Rc<RefCell<Shared>>,
        doorbell: LocalReceiver<()>,
    ) -> Result<Driver> {
        let invalid = || ControllerError::InvalidConfig("ids must be positive".to_string());
        let id = config.node_id.to_raft().ok_or_else(invalid)?;
        let voters: Vec<u64> = config
            .voters
            .iter()
            .map(|v| v.to_raft().ok_or_else(invalid))
            .collect::<Result<_>>()?;
        let voters = sorted(&voters);
        let initial = ConfState {
            voters: voters.clone(),
            ..ConfState::default()
        };
        let (disk, rec) =
            DiskLog::open(&config.data_dir, config.log_segment_bytes, initial).await?;
        check_voters(&voters, &rec.conf_state)?;
        let mut image = ClusterImage::default();
        if rec.snapshot.get_metadata().index > 0 {
            image = codec::decode_image(&rec.snapshot.data)
                .map_err(ControllerError::decode("snapshot image"))?;
        }
        let applied = rec.hard_state.commit;
        for e in rec.entries.iter().take_while(|e| e.index <= applied) {
            apply_entry(&mut image, e)?;
        }
        let persisted = rec.hard_state.clone();
        let mem = MemLog::new(rec.hard_state, rec.conf_state, rec.snapshot, rec.entries);
        let raft_config = raft::Config {
            id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            max_size_per_msg: MSG_ENTRIES_BYTES_MAX,
            max_inflight_msgs: MSG_INFLIGHT_MAX,
            // A leader that loses its quorum steps down; a partitioned voter that comes back
            // cannot depose a healthy leader (pre-vote).
            check_quorum: true,
            pre_vote: true,
            max_uncommitted_size: UNCOMMITTED_BYTES_MAX,
            ..raft::Config::default()
        };
        raft_config
            .validate()
            .map_err(ControllerError::raft("config"))?;
        let mut raw = RawNode::new(&raft_config, mem, &raft_logger(id))
            .map_err(ControllerError::raft("start"))?;
        if voters.len() == 1 {
            // Single-node mode: no one to wait for, lead right away.
            raw.campaign().map_err(ControllerError::raft("campaign"))?;
        }
        tracing::info!(
            node = %config.node_id,
            applied,
            last_index = raw.store().last_index(),
            snapshot_index = raw.store().snapshot_index(),
            "controller node recovered its log"
        );
        let driver = Driver {
            id: config.node_id,
            voters,
            raw,
            disk,
            image: Rc::new(image),
            applied,
            persisted,
            pending: Pending::default(),
            transport,
            shared,
            doorbell,
            tick_interval: config.tick_interval,
            ticks: 0,
            leader_contact: None,
            snapshot_every_entries: config.snapshot_every_entries,
            snapshot_every_bytes: config.snapshot_every_bytes,
        };
        driver.publish();
        Ok(driver)
    }

    /// Runs until `shutdown` or a fatal error, then answers everything still waiting. A clean
    /// stop writes the final raft-state and closes the log.
    pub async fn run(mut self) -> Result<()> {
        let outcome = self.run_loop().await;
        let reason = match &outcome {
            Ok(()) => "shut down".to_string(),
            Err(e) => {
                tracing::error!(node = %self.id, error = %e, "controller node stopped");
                e.to_string()
            }
        };
        self.pending.fail_all(&reason);
        let queued = {
            let mut sh = self.shared.borrow_mut();
            sh.status.role = Role::Stopped;
            sh.status.stopped = Some(reason.clone());
            sh.inbox.clear();
            std::mem::take(&mut sh.proposals)
        };
        for p in queued {
            let _ = p.reply.send(Err(ProposeError::Stopped {
                reason: reason.clone(),
            }));
        }
        outcome?;
        self.persist_state(false).await?;
        self.disk.close().await
    }

    async fn run_loop(&mut self) -> Result<()> {
        let mut next_tick = Instant::now() + self.tick_interval;
        loop {
            // Work first: a single voter's campaign from `open` is handled without a wait.
            let stop = self.take_inputs();
            while self.raw.has_ready() {
                self.handle_ready().await?;
            }
            self.maybe_snapshot().await?;
            self.publish();
            if stop {
                return Ok(());
            }
            let now = Instant::now();
            if now < next_tick {
                let doorbell = &self.doorbell;
                let wait = next_tick - now;
                let closed =
                    futures_lite::future::or(async { doorbell.recv().await.is_none() }, async {
                        glommio::timer::sleep(wait).await;
                        false
                    })
                    .await;
                if closed {
                    return Ok(()); // every handle is gone
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                self.ticks += 1;
                // One tick per wake-up: after a stall, ticking in a burst would start elections
                // that the stall, not the leader, caused.
                next_tick += self.tick_interval;
                if next_tick <= now {
                    next_tick = now + self.tick_interval;
                }
            }
        }
    }

    /// Steps everything queued on the handle. Returns whether a shutdown was asked for.
    fn take_inputs(&mut self) -> bool {
        let (inbox, proposals, reports, stop) = {
            let mut sh = self.shared.borrow_mut();
            sh.inbox_bytes = 0;
            (
                std::mem::take(&mut sh.inbox),
                std::mem::take(&mut sh.proposals),
                std::mem::take(&mut sh.reports),
                sh.stop_requested,
            )
        };
        for msg in inbox {
            if !self.voters.contains(&msg.from) {
                tracing::debug!(node = %self.id, from = msg.from, "message from a non-voter dropped");
                continue;
            }
            let from = msg.from;
            if let Err(e) = self.raw.step(msg) {
                // Late responses from a peer raft-rs forgot, local message types from the wire.
                tracing::debug!(node = %self.id, error = %e, "raft refused a message");
            }
            // Checked after the step: the first message of a new leader's term names it.
            let raft = &self.raw.raft;
            if raft.state == StateRole::Follower && raft.leader_id == from {
                if let Some(leader) = NodeId::from_raft(from) {
                    self.leader_contact = Some((leader, Instant::now()));
                }
            }
        }
        for report in reports {
            match report {
                PeerReport::Unreachable(id) => self.raw.report_unreachable(id),
                PeerReport::Snapshot { peer, delivered } => {
                    let status = if delivered {
                        SnapshotStatus::Finish
                    } else {
                        SnapshotStatus::Failure
                    };
                    self.raw.report_snapshot(peer, status);
                }
            }
        }
        for p in proposals {
            self.propose(p);
        }
        stop
    }

    fn propose(&mut self, p: Proposal) {
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader {
            let _ = p.reply.send(Err(ProposeError::NotLeader {
                leader: NodeId::from_raft(raft.leader_id),
            }));
            return;
        }
        let term = raft.term;
        let before = raft.raft_log.last_index();
        match self.raw.propose(Vec::new(), p.data) {
            Ok(()) => {
                let index = self.raw.raft.raft_log.last_index();
                assert_eq!(index, before + 1, "one proposal is one entry");
                self.pending.add(index, term, p.reply);
            }
            Err(raft::Error::ProposalDropped) => {
                let _ = p.reply.send(Err(ProposeError::Busy {
                    reason: "raft dropped the proposal: uncommitted limit or leader transfer",
                }));
            }
            Err(e) => {
                tracing::warn!(node = %self.id, error = %e, "proposal refused");
                let _ = p.reply.send(Err(ProposeError::Busy {
                    reason: "raft refused the proposal",
                }));
            }
        }
    }

    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            self.transport.send(m);
        }
    }

    async fn handle_ready(&mut self) -> Result<()> {
        let mut rd = self.raw.ready();
        self.send(rd.take_messages());
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone()).await?;
        }
        if !rd.entries().is_empty() {
            self.disk.append(rd.entries()).await?;
            self.raw.mut_store().append(rd.entries());
        }
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs.clone());
        }
        // A vote or a response must never leave before the term and vote it depends on.
        self.persist_state(true).await?;
        self.send(rd.take_persisted_messages());
        self.apply(rd.take_committed_entries())?;
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        // The commit index may lag on disk (Raft does not need it durable); writing it here
        // lets a restart replay the image as far as this node had applied it.
        self.persist_state(false).await
    }

    /// Writes raft-state if it changed: only term and vote when `term_vote_only`.
    async fn persist_state(&mut self, term_vote_only: bool) -> Result<()> {
        let hs = self.raw.store().hard_state();
        let p = &self.persisted;
        let changed = if term_vote_only {
            hs.term != p.term || hs.vote != p.vote
        } else {
            hs != p
        };
        if !changed {
            return Ok(());
        }
        let hs = hs.clone();
        self.disk
            .save_state(&hs, self.raw.store().conf_state())
            .await?;
        self.persisted = hs;
        Ok(())
    }

    /// Applies committed entries, publishes the new image, then answers the proposals they
    /// decide, so a proposer that wakes up finds its records in `image()`.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<()> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        assert!(last.index > self.applied, "entries apply once, in order");
        let image = Rc::make_mut(&mut self.image);
        for e in &entries {
            apply_entry(image, e)?;
        }
        self.applied = last.index;
        self.publish();
        for e in &entries {
            self.pending.committed(e.index, e.term);
        }
        Ok(())
    }

    async fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<()> {
        let meta = snapshot.get_metadata();
        let (index, term) = (meta.index, meta.term);
        // Decode first: a snapshot we cannot read must not replace a log we can.
        let image = codec::decode_image(&snapshot.data)
            .map_err(ControllerError::decode("received snapshot image"))?;
        check_voters(&self.voters, meta.get_conf_state())?;
        self.disk.save_snapshot(&snapshot).await?;
        self.disk.restart_after(index).await?;
        self.raw.mut_store().install_snapshot(snapshot);
        self.image = Rc::new(image);
        self.applied = index;
        self.shared.borrow_mut().status.snapshots_installed += 1;
        self.publish();
        self.pending.snapshot_installed(index, term);
        tracing::info!(node = %self.id, index, term, "installed a snapshot from the leader");
        Ok(())
    }

    /// Snapshots the image and compacts the log once enough was applied since the last one.
    async fn maybe_snapshot(&mut self) -> Result<()> {
        let store = self.raw.store();
        if self.applied <= store.snapshot_index() {
            return Ok(());
        }
        let (entries, bytes) = store.since_snapshot();
        if entries < self.snapshot_every_entries && bytes < self.snapshot_every_bytes {
            return Ok(());
        }
        let Some(term) = store.term_of(self.applied) else {
            unreachable!("applied entries after the snapshot are in the log")
        };
        let data = codec::encode_image(&self.image)?;
        if data.len() > SNAPSHOT_BYTES_MAX {
            return Err(ControllerError::TooLarge {
                what: "snapshot image",
                size_bytes: data.len(),
                max_bytes: SNAPSHOT_BYTES_MAX,
            });
        }
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = self.applied;
        meta.term = term;
        meta.set_conf_state(store.conf_state().clone());
        self.disk.save_snapshot(&snapshot).await?;
        self.raw.mut_store().compact(snapshot);
        self.disk.compact(self.applied).await?;
        tracing::info!(node = %self.id, index = self.applied, term, "snapshot taken");
        Ok(())
    }

    /// Publishes role, leader, indexes and the image for the handle.
    fn publish(&self) {
        let raft = &self.raw.raft;
        let role = match raft.state {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        };
        let mut sh = self.shared.borrow_mut();
        let st = &mut sh.status;
        st.role = role;
        st.leader = NodeId::from_raft(raft.leader_id);
        // Active: a leader whose image holds every entry committed before its term, so that
        // decisions taken on `image()` are current.
        st.active = role == Role::Leader && raft.apply_to_current_term();
        st.raft_term = raft.term;
        st.commit_index = raft.raft_log.committed;
        st.applied_index = self.applied;
        st.snapshot_index = self.raw.store().snapshot_index();
        st.ticks = self.ticks;
        st.leader_contact = self.leader_contact;
        if !Rc::ptr_eq(&sh.image, &self.image) {
            sh.image = Rc::clone(&self.image);
            // Whoever waits for a newer image (brokers long-polling for metadata) looks again.
            for w in sh.image_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

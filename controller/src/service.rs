//! `ControllerService`: a voter's controller as brokers see it (controller shard). It answers
//! the internal RPC requests (`requests`: registration, heartbeats, metadata fetches, forwarded
//! admin requests, ISR changes, producer id blocks; `client_quotas`: AlterClientQuotas) and,
//! while it is the active controller, fences brokers that went silent, completes
//! reassignments and moves leadership back to preferred replicas.
//!
//! Every decision reads the image, proposes the records `decide` derives from it and waits
//! until they are committed and applied; decisions run one at a time, so each builds on the
//! image its predecessor produced. Metadata fetches are served by any voter from its own
//! applied image, so brokers keep following while the quorum elects.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use skein_net::internal::{InternalMessage, NewTopicSpec, PartitionResult, TopicResult};
use uuid::Uuid;

use crate::acl::{self, AclBinding, AclOperation, AclPermission, PatternType, ResourceType};
use crate::codec;
use crate::decide::{self, DecideError};
use crate::error::Result;
use crate::events;
use crate::heartbeats::Heartbeats;
use crate::image::{
    BrokerId, BrokerRegistration, ClusterImage, Endpoint, MetadataRecord, ScramCredential,
};
use crate::node::{ControllerConfig, ControllerNode, ProposeError};
use crate::transport::RaftTransport;

mod client_quotas;
mod requests;
#[cfg(test)]
mod tests;

/// Kafka's error codes, as the internal RPC carries them.
pub mod codes {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const INVALID_REQUEST: i16 = 42;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const STALE_BROKER_EPOCH: i16 = 77;
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
    pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
    pub const RESOURCE_NOT_FOUND: i16 = 91;
    pub const DUPLICATE_BROKER_REGISTRATION: i16 = 101;
    pub const INELIGIBLE_REPLICA: i16 = 107;
    pub const INVALID_UPDATE_VERSION: i16 = 108;
}

/// How often the active controller looks for silent brokers (and preferred elections are due).
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// The longest a metadata fetch is held open waiting for a change.
const FETCH_WAIT_MAX: Duration = Duration::from_secs(5);
/// How much later than its connection's close a leader's last message may be stepped.
const RAFT_STEP_SLACK: Duration = Duration::from_millis(20);
/// Producer ids handed to a broker at a time (Kafka's block size).
pub const PRODUCER_ID_BLOCK: i32 = 1000;

#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// `broker.session.timeout.ms`: silence after which a broker is fenced.
    pub session_timeout: Duration,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`.
    pub leader_imbalance_check_interval: Duration,
}

type Answer = std::result::Result<(), (i16, String)>;

pub struct ControllerService {
    node: ControllerNode,
    settings: ServiceSettings,
    heartbeats: RefCell<Heartbeats>,
    /// Decisions one at a time.
    deciding: glommio::sync::Semaphore,
    was_active: Cell<bool>,
    last_preferred: Cell<Instant>,
    checker: RefCell<Option<glommio::Task<()>>>,
    /// How much of a session a new active controller counts as already spent: the old one was
    /// silent for at least an election timeout before this voter could win, so a broker's
    /// last word to it is at least that old too (at most half a session, so that live brokers
    /// always have time to find the new controller).
    grace_credit: Duration,
    /// Partition leader changes this voter committed as the active controller (Kafka's
    /// controller LeaderElectionRate, as a counter).
    leader_elections: Cell<u64>,
    /// When each voter's Raft connection to this node last closed.
    raft_peer_gone: RefCell<BTreeMap<i32, Instant>>,
}

impl ControllerService {
    /// Starts the voter (see `ControllerNode::start`) and the active controller's checks.
    pub async fn start(
        config: ControllerConfig,
        transport: Rc<dyn RaftTransport>,
        settings: ServiceSettings,
    ) -> Result<Rc<ControllerService>> {
        let election_timeout =
            config.tick_interval * u32::try_from(config.election_ticks).unwrap_or(u32::MAX);
        let grace_credit = election_timeout.min(settings.session_timeout / 2);
        let node = ControllerNode::start(config, transport).await?;
        let service = Rc::new(ControllerService {
            node,
            heartbeats: RefCell::new(Heartbeats::new(settings.session_timeout)),
            settings,
            deciding: glommio::sync::Semaphore::new(1),
            was_active: Cell::new(false),
            last_preferred: Cell::new(Instant::now()),
            checker: RefCell::new(None),
            grace_credit,
            leader_elections: Cell::new(0),
            raft_peer_gone: RefCell::new(BTreeMap::new()),
        });
        let weak = Rc::downgrade(&service);
        *service.checker.borrow_mut() = Some(glommio::spawn_local(check_loop(weak)));
        Ok(service)
    }

    pub fn node(&self) -> &ControllerNode {
        &self.node
    }

    /// Whether this voter is the active controller now.
    pub fn is_active(&self) -> bool {
        self.node.is_leader()
    }

    /// Stops the checks and the voter cleanly.
    pub async fn shutdown(self: Rc<Self>) -> Result<()> {
        let checker = self.checker.borrow_mut().take();
        if let Some(t) = checker {
            t.cancel().await;
        }
        match Rc::try_unwrap(self) {
            Ok(service) => service.node.shutdown().await,
            // Someone still holds it (a request in flight): dropping it stops the driver.
            Err(_) => Ok(()),
        }
    }

    /// A broker's heartbeat connection to this controller closed. A killed process's sockets
    /// close at once, so unless the broker heartbeats again (a live one reconnects at its next
    /// heartbeat) it is fenced half a session from now rather than a whole session after its
    /// last heartbeat. A hung process keeps its sockets open and gets its whole session.
    pub fn heartbeats_connection_closed(&self, broker: BrokerId) {
        if !self.is_active() {
            return;
        }
        let remaining = self.settings.session_timeout / 2;
        self.heartbeats
            .borrow_mut()
            .cut_short(broker, Instant::now(), remaining);
        tracing::debug!(
            broker_id = broker,
            ?remaining,
            "heartbeat connection closed"
        );
    }

    /// A voter's Raft connection to this node closed (a killed leader's closes at once).
    pub fn raft_connection_closed(&self, node: i32) {
        self.raft_peer_gone
            .borrow_mut()
            .insert(node, Instant::now());
    }

    /// `handle` boxed, for the RPC server's handler trait.
    pub fn handle_boxed(
        self: &Rc<Self>,
        from_node: i32,
        request: InternalMessage,
    ) -> Pin<Box<dyn Future<Output = InternalMessage>>> {
        let this = Rc::clone(self);
        Box::pin(async move { this.handle(from_node, request).await })
    }

    /// Runs one decision on the current image and commits its records (none: nothing to do).
    async fn decide(
        &self,
        decision: impl FnOnce(&ClusterImage) -> std::result::Result<Vec<MetadataRecord>, (i16, String)>,
    ) -> Answer {
        let Ok(_permit) = self.deciding.acquire_permit(1).await else {
            return Err((codes::NOT_CONTROLLER, "controller is stopping".to_string()));
        };
        if !self.is_active() {
            return Err((
                codes::NOT_CONTROLLER,
                "not the active controller".to_string(),
            ));
        }
        let image = self.node.image();
        let records = decision(&image)?;
        if records.is_empty() {
            return Ok(());
        }
        let elections = leader_changes(&image, &records);
        self.node.propose(&records).await.map_err(propose_error)?;
        self.leader_elections
            .set(self.leader_elections.get() + elections);
        // Decisions run one at a time, so `image` is the image these records applied to.
        events::log_partition_events(&events::partition_events(&image, &records));
        Ok(())
    }

    /// Partition leader changes this voter committed while active (since it started).
    pub fn leader_elections(&self) -> u64 {
        self.leader_elections.get()
    }

    /// One round of the active controller's checks.
    async fn check(&self) {
        if !self.is_active() {
            self.was_active.set(false);
            return;
        }
        let now = Instant::now();
        if !self.was_active.get() {
            self.was_active.set(true);
            // A new active controller heard nobody yet: everyone gets a session, less the
            // election it took to get here (see `grace_credit`).
            let image = self.node.image();
            // Fenced ones too: a process that may still be alive must not be replaced by a
            // duplicate before it had a session to be heard.
            let heard = now.checked_sub(self.grace_credit).unwrap_or(now);
            // The previous controller's own broker (the same node id) fell silent with it as
            // far as this voter can tell: its session runs from the last message that leader
            // sent here, so a killed controller node costs no more than any killed broker.
            // And if its Raft connection closed after that last message (a killed process),
            // it gets half a session from then, as a broker whose heartbeat connection closed.
            let status = self.node.status();
            let predecessor = status.leader_contact.filter(|(id, _)| *id != status.id);
            let closed_at = |id: i32, last: Instant| {
                let gone = self.raft_peer_gone.borrow().get(&id).copied()?;
                // The last message may be stepped a moment after its connection closed; a
                // live leader that reconnected sends again a heartbeat tick or more later.
                let closed_after_last = gone + RAFT_STEP_SLACK >= last;
                closed_after_last.then(|| gone.checked_sub(self.settings.session_timeout / 2))?
            };
            let starts = image.brokers.keys().map(|b| match predecessor {
                Some((id, at)) if id.0 == *b => {
                    let start = at.min(heard);
                    (*b, closed_at(id.0, at).map_or(start, |c| start.min(c)))
                }
                _ => (*b, heard),
            });
            self.heartbeats.borrow_mut().start_grace(starts);
            self.last_preferred.set(now);
            tracing::info!(
                term = self.node.status().raft_term,
                "this node is the active controller"
            );
            if image.cluster_id.is_empty() {
                let id = new_cluster_id();
                if let Err((_, e)) = self
                    .decide(|_| Ok(vec![MetadataRecord::ClusterId { id: id.clone() }]))
                    .await
                {
                    tracing::warn!(error = %e, "naming the cluster failed; will retry");
                    self.was_active.set(false);
                }
            }
        }
        let expired = self.heartbeats.borrow().expired(now);
        let image = self.node.image();
        for id in expired {
            if image.brokers.get(&id).is_none_or(|b| b.fenced) {
                // Gone or already fenced: nothing to do until it registers again.
                self.heartbeats.borrow_mut().forget(id);
                continue;
            }
            let answer = self
                .decide(|image| match image.brokers.get(&id) {
                    Some(b) if !b.fenced => decide::fence_broker(image, id).map_err(decide_error),
                    _ => Ok(Vec::new()),
                })
                .await;
            match answer {
                Ok(()) => {
                    self.heartbeats.borrow_mut().forget(id);
                    tracing::info!(
                        broker_id = id,
                        "broker fenced: silent for the session timeout"
                    );
                }
                Err((_, e)) => tracing::warn!(broker_id = id, error = %e, "fencing failed"),
            }
        }
        if !decide::complete_reassignments(&self.node.image()).is_empty() {
            self.complete_reassignments().await;
        }
        if self.settings.auto_leader_rebalance
            && now.duration_since(self.last_preferred.get())
                >= self.settings.leader_imbalance_check_interval
        {
            self.last_preferred.set(now);
            self.elect_preferred().await;
        }
    }

    /// Completes the reassignments whose target replicas have all joined the ISR.
    async fn complete_reassignments(&self) {
        let done = RefCell::new(Vec::new());
        let answer = self
            .decide(|image| {
                let records = decide::complete_reassignments(image);
                *done.borrow_mut() = records.clone();
                Ok(records)
            })
            .await;
        match answer {
            Ok(()) => {
                for r in done.into_inner() {
                    if let MetadataRecord::PartitionReplicas {
                        topic_id,
                        partition,
                        replicas,
                        leader,
                        ..
                    } = r
                    {
                        tracing::info!(%topic_id, partition, ?replicas, leader, "partition reassignment completed");
                    }
                }
            }
            Err((_, e)) => tracing::warn!(error = %e, "completing reassignments failed"),
        }
    }

    /// Moves leadership back to each partition's preferred replica where it is in sync and up
    /// (also on demand, by the admin API).
    pub async fn elect_preferred(&self) {
        let moved = Cell::new(0usize);
        let answer = self
            .decide(|image| {
                let records = decide::preferred_elections(image);
                moved.set(records.len());
                Ok(records)
            })
            .await;
        match answer {
            Ok(()) if moved.get() > 0 => {
                tracing::info!(partitions = moved.get(), "preferred leaders elected");
            }
            Ok(()) => {}
            Err((_, e)) => tracing::warn!(error = %e, "preferred leader election failed"),
        }
    }
}

async fn check_loop(service: Weak<ControllerService>) {
    loop {
        glommio::timer::sleep(CHECK_EVERY).await;
        let Some(service) = service.upgrade() else {
            return;
        };
        service.check().await;
    }
}

fn check_broker_epoch(
    image: &ClusterImage,
    broker_id: BrokerId,
    epoch: i64,
) -> std::result::Result<(), (i16, String)> {
    match image.brokers.get(&broker_id) {
        Some(b) if b.epoch == epoch => Ok(()),
        _ => Err((
            codes::STALE_BROKER_EPOCH,
            format!("broker {broker_id} epoch {epoch} is not current"),
        )),
    }
}

fn decide_error(e: DecideError) -> (i16, String) {
    let code = match &e {
        DecideError::DuplicateBrokerId { .. } => codes::DUPLICATE_BROKER_REGISTRATION,
        DecideError::UnknownBroker { .. } | DecideError::StaleBrokerEpoch { .. } => {
            codes::STALE_BROKER_EPOCH
        }
        DecideError::TopicExists { .. } => codes::TOPIC_ALREADY_EXISTS,
        DecideError::UnknownTopic { .. } => codes::UNKNOWN_TOPIC_OR_PARTITION,
        DecideError::InvalidReplicationFactor { .. } => codes::INVALID_REPLICATION_FACTOR,
        DecideError::InvalidPartitions { .. } => codes::INVALID_PARTITIONS,
        DecideError::StalePartitionEpoch { .. } => codes::INVALID_UPDATE_VERSION,
        DecideError::InvalidIsr { .. } => codes::INELIGIBLE_REPLICA,
    };
    (code, e.to_string())
}

fn propose_error(e: ProposeError) -> (i16, String) {
    let code = match &e {
        ProposeError::NotLeader { .. }
        | ProposeError::Dropped { .. }
        | ProposeError::Stopped { .. } => codes::NOT_CONTROLLER,
        ProposeError::OutcomeUnknown { .. } | ProposeError::Busy { .. } => codes::REQUEST_TIMED_OUT,
        ProposeError::TooLarge { .. } | ProposeError::Encode(_) => codes::UNKNOWN_SERVER_ERROR,
    };
    (code, e.to_string())
}

/// How many of `records` give a partition a new leader (a new leader epoch with a leader).
fn leader_changes(image: &ClusterImage, records: &[MetadataRecord]) -> u64 {
    let mut n = 0;
    for r in records {
        let (topic_id, partition, leader, epoch) = match r {
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                leader_epoch,
                ..
            }
            | MetadataRecord::PartitionReplicas {
                topic_id,
                partition,
                leader,
                leader_epoch,
                ..
            } => (*topic_id, *partition, *leader, *leader_epoch),
            _ => continue,
        };
        let before = image.partition(topic_id, partition).map(|p| p.leader_epoch);
        if leader >= 0 && before.is_some_and(|e| epoch > e) {
            n += 1;
        }
    }
    n
}

/// Kafka cluster ids are 22 characters of url-safe base64 of a UUID.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}

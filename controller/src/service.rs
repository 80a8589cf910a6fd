//! `ControllerService`: a voter's controller as brokers see it (controller shard). It answers
//! the internal RPC requests (registration, heartbeats, metadata fetches, forwarded admin
//! requests, ISR changes, producer id blocks) and, while it is the active controller, fences
//! brokers that went silent and moves leadership back to preferred replicas.
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

    /// Answers one internal request. Everything but metadata fetches needs the active
    /// controller; elsewhere they get NOT_CONTROLLER (the caller tries another voter).
    pub async fn handle(&self, from_node: i32, request: InternalMessage) -> InternalMessage {
        if let InternalMessage::FetchMetadata {
            from_offset,
            max_wait_ms,
            ..
        } = request
        {
            return self.fetch_metadata(from_offset, max_wait_ms).await;
        }
        let not_controller = !self.is_active();
        match request {
            InternalMessage::RegisterBroker {
                broker_id,
                incarnation,
                endpoints,
                rack,
            } => {
                let (error_code, broker_epoch) = if not_controller {
                    (codes::NOT_CONTROLLER, -1)
                } else {
                    self.register(broker_id, incarnation, endpoints, rack).await
                };
                InternalMessage::RegisterBrokerResponse {
                    error_code,
                    broker_epoch,
                }
            }
            InternalMessage::Heartbeat {
                broker_id,
                broker_epoch,
                metadata_offset,
                want_fence,
                want_shutdown,
            } => {
                if not_controller {
                    return InternalMessage::HeartbeatResponse {
                        error_code: codes::NOT_CONTROLLER,
                        is_caught_up: false,
                        is_fenced: true,
                        should_shutdown: false,
                    };
                }
                self.heartbeat(
                    broker_id,
                    broker_epoch,
                    metadata_offset,
                    want_fence,
                    want_shutdown,
                )
                .await
            }
            InternalMessage::CreateTopics {
                topics,
                validate_only,
            } => {
                let names = topics.iter().map(|t| t.name.clone()).collect();
                if not_controller {
                    return all_failed(names, codes::NOT_CONTROLLER);
                }
                let mut results = Vec::with_capacity(topics.len());
                for t in topics {
                    let name = t.name.clone();
                    results.push(result(name, self.create_topic(t, validate_only).await));
                }
                InternalMessage::AdminResponse { results }
            }
            InternalMessage::AlterAcls {
                creations,
                deletions,
            } => {
                let names: Vec<String> = creations
                    .iter()
                    .chain(&deletions)
                    .map(|e| e.resource_name.clone())
                    .collect();
                if not_controller {
                    return all_failed(names, codes::NOT_CONTROLLER);
                }
                let checked: Vec<_> = creations
                    .iter()
                    .map(|e| (true, acl_binding(e)))
                    .chain(deletions.iter().map(|e| (false, acl_binding(e))))
                    .collect();
                // One proposal for every valid binding, so a request applies whole or not at all.
                let answer = self.decide(|image| Ok(acl_changes(image, &checked))).await;
                let results = names
                    .into_iter()
                    .zip(&checked)
                    .map(|(name, (_, binding))| match binding {
                        Ok(_) => result(name, answer.clone()),
                        Err(message) => {
                            result(name, Err((codes::INVALID_REQUEST, message.clone())))
                        }
                    })
                    .collect();
                if answer.is_ok() {
                    tracing::info!(
                        created = creations.len(),
                        deleted = deletions.len(),
                        "ACLs changed"
                    );
                }
                InternalMessage::AdminResponse { results }
            }
            InternalMessage::DeleteTopics { names } => {
                if not_controller {
                    return all_failed(names, codes::NOT_CONTROLLER);
                }
                let mut results = Vec::with_capacity(names.len());
                for name in names {
                    let answer = self
                        .decide(|image| decide::delete_topic(image, &name).map_err(decide_error))
                        .await;
                    results.push(result(name, answer));
                }
                InternalMessage::AdminResponse { results }
            }
            InternalMessage::CreatePartitions {
                topics,
                validate_only,
            } => {
                let names = topics.iter().map(|t| t.0.clone()).collect();
                if not_controller {
                    return all_failed(names, codes::NOT_CONTROLLER);
                }
                let mut results = Vec::with_capacity(topics.len());
                for (name, total) in topics {
                    let answer = self
                        .decide(|image| {
                            let records = decide::create_partitions(image, &name, total)
                                .map_err(decide_error)?;
                            Ok(if validate_only { Vec::new() } else { records })
                        })
                        .await;
                    results.push(result(name, answer));
                }
                InternalMessage::AdminResponse { results }
            }
            InternalMessage::AlterTopicConfig {
                topic,
                configs,
                validate_only,
            } => {
                if not_controller {
                    return all_failed(vec![topic], codes::NOT_CONTROLLER);
                }
                let answer = self
                    .decide(|image| {
                        let records = config_changes(image, &topic, configs)?;
                        Ok(if validate_only { Vec::new() } else { records })
                    })
                    .await;
                InternalMessage::AdminResponse {
                    results: vec![result(topic, answer)],
                }
            }
            InternalMessage::AlterPartition {
                broker_id,
                broker_epoch,
                topic_id,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                if not_controller {
                    return alter_partition_error(codes::NOT_CONTROLLER);
                }
                let topic_id = Uuid::from_bytes(topic_id);
                let answer = self
                    .decide(|image| {
                        check_broker_epoch(image, broker_id, broker_epoch)?;
                        let p = image.partition(topic_id, partition).ok_or((
                            codes::UNKNOWN_TOPIC_OR_PARTITION,
                            format!("no partition {topic_id}/{partition}"),
                        ))?;
                        if p.leader != broker_id {
                            return Err((
                                codes::NOT_LEADER_OR_FOLLOWER,
                                format!("broker {broker_id} does not lead the partition"),
                            ));
                        }
                        if p.leader_epoch != leader_epoch {
                            return Err((
                                codes::FENCED_LEADER_EPOCH,
                                format!("leader epoch {leader_epoch} is not {}", p.leader_epoch),
                            ));
                        }
                        let record = decide::alter_isr(
                            image,
                            topic_id,
                            partition,
                            partition_epoch,
                            isr.clone(),
                        )
                        .map_err(decide_error)?;
                        Ok(vec![record])
                    })
                    .await;
                match answer {
                    Ok(()) => {
                        let image = self.node.image();
                        match image.partition(topic_id, partition) {
                            Some(p) => InternalMessage::AlterPartitionResponse {
                                error_code: codes::NONE,
                                leader: p.leader,
                                isr: p.isr.clone(),
                                leader_epoch: p.leader_epoch,
                                partition_epoch: p.partition_epoch,
                            },
                            None => alter_partition_error(codes::UNKNOWN_TOPIC_OR_PARTITION),
                        }
                    }
                    Err((code, message)) => {
                        tracing::debug!(broker_id, %topic_id, partition, code, %message, "AlterPartition refused");
                        alter_partition_error(code)
                    }
                }
            }
            InternalMessage::AllocateProducerIds {
                broker_id,
                broker_epoch,
            } => {
                if not_controller {
                    return producer_ids_error(codes::NOT_CONTROLLER);
                }
                let start = Cell::new(0i64);
                let answer = self
                    .decide(|image| {
                        check_broker_epoch(image, broker_id, broker_epoch)?;
                        let first = image.next_producer_id.max(0);
                        start.set(first);
                        Ok(vec![MetadataRecord::ProducerIds {
                            broker: broker_id,
                            next_block_start: first + i64::from(PRODUCER_ID_BLOCK),
                        }])
                    })
                    .await;
                match answer {
                    Ok(()) => InternalMessage::AllocateProducerIdsResponse {
                        error_code: codes::NONE,
                        start: start.get(),
                        len: PRODUCER_ID_BLOCK,
                    },
                    Err((code, _)) => producer_ids_error(code),
                }
            }
            InternalMessage::ElectLeaders {
                election_type,
                partitions,
            } => {
                if not_controller {
                    return elect_leaders_error(codes::NOT_CONTROLLER);
                }
                let kind = match election_type {
                    0 => decide::ElectionKind::Preferred,
                    1 => decide::ElectionKind::Unclean,
                    _ => return elect_leaders_error(codes::INVALID_REQUEST),
                };
                let outcomes = RefCell::new(Vec::new());
                let answer = self
                    .decide(|image| {
                        let e = decide::elect_leaders(image, kind, partitions.as_deref());
                        *outcomes.borrow_mut() = e.outcomes;
                        Ok(e.records)
                    })
                    .await;
                match answer {
                    Ok(()) => {
                        let results: Vec<PartitionResult> = outcomes
                            .into_inner()
                            .into_iter()
                            .map(|(topic, partition, outcome)| {
                                election_result(topic, partition, outcome)
                            })
                            .collect();
                        let elected = results.iter().filter(|r| r.error_code == 0).count();
                        tracing::info!(
                            ?kind,
                            elected,
                            asked = results.len(),
                            "leader election asked for"
                        );
                        InternalMessage::ElectLeadersResponse {
                            error_code: codes::NONE,
                            results,
                        }
                    }
                    Err((code, _)) => elect_leaders_error(code),
                }
            }
            InternalMessage::AlterReassignments { partitions } => {
                if not_controller {
                    return reassignments_error(codes::NOT_CONTROLLER);
                }
                let outcomes = RefCell::new(Vec::new());
                let answer = self
                    .decide(|image| {
                        let r = decide::alter_reassignments(image, &partitions);
                        *outcomes.borrow_mut() = r.outcomes;
                        Ok(r.records)
                    })
                    .await;
                match answer {
                    Ok(()) => {
                        let results = outcomes.into_inner().into_iter().map(reassignment_result);
                        let results: Vec<PartitionResult> = results.collect();
                        for (r, (_, _, target)) in results.iter().zip(&partitions) {
                            if r.error_code == codes::NONE {
                                tracing::info!(topic = %r.topic, partition = r.partition, target = ?target, "partition reassignment asked for");
                            }
                        }
                        InternalMessage::AlterReassignmentsResponse {
                            error_code: codes::NONE,
                            results,
                        }
                    }
                    Err((code, _)) => reassignments_error(code),
                }
            }
            InternalMessage::AlterScramCredentials {
                upserts,
                deletions,
                only_if_absent,
            } => {
                let mut users: Vec<String> = Vec::new();
                for name in upserts
                    .iter()
                    .map(|u| &u.user)
                    .chain(deletions.iter().map(|d| &d.0))
                {
                    if !users.contains(name) {
                        users.push(name.clone());
                    }
                }
                if not_controller {
                    return all_failed(users, codes::NOT_CONTROLLER);
                }
                // One decision per user, as Kafka answers per user.
                let mut results = Vec::with_capacity(users.len());
                for user in users {
                    let answer = self
                        .decide(|image| {
                            scram_changes(image, &user, &upserts, &deletions, only_if_absent)
                        })
                        .await;
                    if answer.is_ok() {
                        tracing::info!(%user, "SCRAM credentials changed");
                    }
                    results.push(result(user, answer));
                }
                InternalMessage::AdminResponse { results }
            }
            other => {
                tracing::debug!(from_node, message = ?std::mem::discriminant(&other), "not a request; ignored");
                InternalMessage::AdminResponse {
                    results: Vec::new(),
                }
            }
        }
    }

    async fn fetch_metadata(&self, from_offset: i64, max_wait_ms: i32) -> InternalMessage {
        let after = u64::try_from(from_offset).unwrap_or(0);
        let wait = if from_offset < 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(u64::try_from(max_wait_ms).unwrap_or(0)).min(FETCH_WAIT_MAX)
        };
        let (image, applied) = self.node.wait_for_image(after, wait).await;
        let leader_id = self.node.leader_id().map_or(-1, |l| l.0);
        let offset = i64::try_from(applied).unwrap_or(i64::MAX);
        if offset <= from_offset {
            return InternalMessage::FetchMetadataResponse {
                error_code: codes::NONE,
                leader_id,
                offset: from_offset,
                image: bytes::Bytes::new(),
            };
        }
        match codec::encode_image(&image) {
            Ok(bytes) => InternalMessage::FetchMetadataResponse {
                error_code: codes::NONE,
                leader_id,
                offset,
                image: bytes.into(),
            },
            Err(e) => {
                tracing::error!(error = %e, "encoding the metadata image failed");
                InternalMessage::FetchMetadataResponse {
                    error_code: codes::UNKNOWN_SERVER_ERROR,
                    leader_id,
                    offset: from_offset,
                    image: bytes::Bytes::new(),
                }
            }
        }
    }

    async fn register(
        &self,
        broker_id: i32,
        incarnation: [u8; 16],
        endpoints: Vec<skein_net::internal::Endpoint>,
        rack: Option<String>,
    ) -> (i16, i64) {
        let epoch = Cell::new(-1i64);
        let answer = self
            .decide(|image| {
                // Unique and increasing: the registering entry lands after everything applied.
                let e = i64::try_from(self.node.status().applied_index + 1).unwrap_or(i64::MAX);
                epoch.set(e);
                let registration = BrokerRegistration {
                    id: broker_id,
                    incarnation: Uuid::from_bytes(incarnation),
                    epoch: e,
                    endpoints: endpoints
                        .iter()
                        .map(|e| Endpoint {
                            listener: e.listener.clone(),
                            host: e.host.clone(),
                            port: e.port,
                        })
                        .collect(),
                    rack: rack.clone(),
                    fenced: true,
                    in_controlled_shutdown: false,
                };
                let alive = self.heartbeats.borrow().is_alive(broker_id, Instant::now());
                decide::register_broker(image, registration, alive).map_err(decide_error)
            })
            .await;
        match answer {
            Ok(()) => {
                self.heartbeats
                    .borrow_mut()
                    .record(broker_id, Instant::now());
                tracing::info!(broker_id, broker_epoch = epoch.get(), "broker registered");
                (codes::NONE, epoch.get())
            }
            Err((code, message)) => {
                tracing::warn!(broker_id, code, %message, "registration refused");
                (code, -1)
            }
        }
    }

    async fn heartbeat(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        metadata_offset: i64,
        want_fence: bool,
        want_shutdown: bool,
    ) -> InternalMessage {
        let image = self.node.image();
        let refuse = |error_code| InternalMessage::HeartbeatResponse {
            error_code,
            is_caught_up: false,
            is_fenced: true,
            should_shutdown: false,
        };
        let Some(b) = image.brokers.get(&broker_id) else {
            return refuse(codes::STALE_BROKER_EPOCH);
        };
        if b.epoch != broker_epoch {
            return refuse(codes::STALE_BROKER_EPOCH);
        }
        self.heartbeats
            .borrow_mut()
            .record(broker_id, Instant::now());
        // Caught up: it has applied at least its own registration.
        let caught_up = metadata_offset >= b.epoch;
        let mut error_code = codes::NONE;
        if b.fenced && caught_up && !want_fence && !want_shutdown {
            let answer = self
                .decide(|image| {
                    match image.brokers.get(&broker_id) {
                        Some(b) if b.fenced && b.epoch == broker_epoch => {}
                        _ => return Ok(Vec::new()),
                    }
                    decide::unfence_broker(image, broker_id, broker_epoch).map_err(decide_error)
                })
                .await;
            match answer {
                Ok(()) => tracing::info!(broker_id, "broker unfenced"),
                Err((code, _)) => error_code = code,
            }
        }
        if want_shutdown && !b.in_controlled_shutdown && !b.fenced {
            let answer = self
                .decide(|image| {
                    decide::controlled_shutdown(image, broker_id, broker_epoch)
                        .map_err(decide_error)
                })
                .await;
            match answer {
                Ok(()) => tracing::info!(broker_id, "controlled shutdown: leaderships moved"),
                Err((code, _)) => error_code = code,
            }
        }
        let image = self.node.image();
        let is_fenced = image
            .brokers
            .get(&broker_id)
            .is_none_or(|b| b.fenced || b.epoch != broker_epoch);
        let leads_nothing = image
            .partitions_with(broker_id)
            .iter()
            .all(|(_, _, p)| p.leader != broker_id);
        InternalMessage::HeartbeatResponse {
            error_code,
            is_caught_up: caught_up,
            is_fenced,
            should_shutdown: want_shutdown && leads_nothing,
        }
    }

    async fn create_topic(&self, t: NewTopicSpec, validate_only: bool) -> Answer {
        if !t.assignments.is_empty() {
            return Err((
                codes::INVALID_REPLICA_ASSIGNMENT,
                "manual replica assignment is not supported yet".to_string(),
            ));
        }
        let rf = usize::try_from(t.replication_factor).unwrap_or(0);
        if rf == 0 {
            return Err((
                codes::INVALID_REPLICATION_FACTOR,
                format!("invalid replication factor {}", t.replication_factor),
            ));
        }
        let configs: BTreeMap<String, String> = t.configs.into_iter().collect();
        self.decide(|image| {
            let records = decide::create_topic(
                image,
                &t.name,
                Uuid::new_v4(),
                t.num_partitions,
                rf,
                configs.clone(),
            )
            .map_err(decide_error)?;
            Ok(if validate_only { Vec::new() } else { records })
        })
        .await
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

/// The Config records that turn a topic's overrides into `configs`.
fn config_changes(
    image: &ClusterImage,
    topic: &str,
    configs: Vec<(String, String)>,
) -> std::result::Result<Vec<MetadataRecord>, (i16, String)> {
    let t = image.topic(topic).ok_or((
        codes::UNKNOWN_TOPIC_OR_PARTITION,
        format!("topic {topic} does not exist"),
    ))?;
    let wanted: BTreeMap<String, String> = configs.into_iter().collect();
    let mut records = Vec::new();
    for key in t.configs.keys().filter(|k| !wanted.contains_key(*k)) {
        records.push(MetadataRecord::Config {
            topic_id: t.id,
            key: key.clone(),
            value: None,
        });
    }
    for (key, value) in wanted {
        if t.configs.get(&key) != Some(&value) {
            records.push(MetadataRecord::Config {
                topic_id: t.id,
                key,
                value: Some(value),
            });
        }
    }
    Ok(records)
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

fn result(name: String, answer: Answer) -> TopicResult {
    match answer {
        Ok(()) => TopicResult {
            name,
            error_code: codes::NONE,
            error_message: None,
        },
        Err((error_code, message)) => TopicResult {
            name,
            error_code,
            error_message: Some(message),
        },
    }
}

/// The records that set and remove `user`'s SCRAM credentials; removing one that does not exist
/// fails the user's whole change (Kafka's RESOURCE_NOT_FOUND).
fn scram_changes(
    image: &ClusterImage,
    user: &str,
    upserts: &[skein_net::internal::ScramUpsert],
    deletions: &[(String, i8)],
    only_if_absent: bool,
) -> std::result::Result<Vec<MetadataRecord>, (i16, String)> {
    let mut records = Vec::new();
    for (name, mechanism) in deletions.iter().filter(|d| d.0 == user) {
        if !image
            .scram_credentials
            .contains_key(&(name.clone(), *mechanism))
        {
            return Err((
                codes::RESOURCE_NOT_FOUND,
                format!("user {user} has no credential for mechanism {mechanism}"),
            ));
        }
        records.push(MetadataRecord::RemoveUserScramCredential {
            user: name.clone(),
            mechanism: *mechanism,
        });
    }
    // Bootstrap users: a user that has any credential is left alone, so a password changed
    // (or a mechanism removed) since is not undone by the next start.
    if only_if_absent && image.scram_credentials.keys().any(|(u, _)| u == user) {
        return Ok(records);
    }
    for u in upserts.iter().filter(|u| u.user == user) {
        records.push(MetadataRecord::UserScramCredential {
            user: u.user.clone(),
            mechanism: u.mechanism,
            credential: ScramCredential {
                salt: u.salt.clone(),
                iterations: u.iterations,
                stored_key: u.stored_key.clone(),
                server_key: u.server_key.clone(),
            },
        });
    }
    Ok(records)
}

/// A forwarded ACL entry as a binding, or why it is not one (Kafka's INVALID_REQUEST).
fn acl_binding(e: &skein_net::internal::AclEntry) -> std::result::Result<AclBinding, String> {
    let binding = AclBinding {
        resource_type: ResourceType::from_code(e.resource_type)
            .ok_or_else(|| format!("unknown resource type {}", e.resource_type))?,
        resource_name: e.resource_name.clone(),
        pattern_type: PatternType::from_code(e.pattern_type)
            .ok_or_else(|| format!("unknown pattern type {}", e.pattern_type))?,
        principal: e.principal.clone(),
        host: e.host.clone(),
        operation: AclOperation::from_code(e.operation)
            .ok_or_else(|| format!("unknown operation {}", e.operation))?,
        permission: AclPermission::from_code(e.permission)
            .ok_or_else(|| format!("unknown permission type {}", e.permission))?,
    };
    acl::validate(&binding)?;
    Ok(binding)
}

/// The records for the valid entries of an ACL change (`true`: create); a binding that already
/// exists (or is already gone) needs none.
fn acl_changes(
    image: &ClusterImage,
    checked: &[(bool, std::result::Result<AclBinding, String>)],
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for (create, binding) in checked {
        let Ok(binding) = binding else { continue };
        let exists = image.acls.contains(binding);
        if *create && !exists {
            records.push(MetadataRecord::CreateAcl(binding.clone()));
        } else if !*create && exists {
            records.push(MetadataRecord::DeleteAcl(binding.clone()));
        }
    }
    records
}

fn all_failed(names: Vec<String>, error_code: i16) -> InternalMessage {
    InternalMessage::AdminResponse {
        results: names
            .into_iter()
            .map(|name| TopicResult {
                name,
                error_code,
                error_message: None,
            })
            .collect(),
    }
}

fn alter_partition_error(error_code: i16) -> InternalMessage {
    InternalMessage::AlterPartitionResponse {
        error_code,
        leader: -1,
        isr: Vec::new(),
        leader_epoch: -1,
        partition_epoch: -1,
    }
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

fn reassignments_error(error_code: i16) -> InternalMessage {
    InternalMessage::AlterReassignmentsResponse {
        error_code,
        results: Vec::new(),
    }
}

fn reassignment_result(
    (topic, partition, outcome): (String, i32, std::result::Result<(), decide::ReassignError>),
) -> PartitionResult {
    let (error_code, error_message) = match outcome {
        Ok(()) => (codes::NONE, None),
        Err(decide::ReassignError::UnknownPartition) => (codes::UNKNOWN_TOPIC_OR_PARTITION, None),
        Err(decide::ReassignError::InvalidAssignment(why)) => {
            (codes::INVALID_REPLICA_ASSIGNMENT, Some(why))
        }
        Err(decide::ReassignError::NoReassignmentInProgress) => {
            (codes::NO_REASSIGNMENT_IN_PROGRESS, None)
        }
    };
    PartitionResult {
        topic,
        partition,
        error_code,
        error_message,
    }
}

fn elect_leaders_error(error_code: i16) -> InternalMessage {
    InternalMessage::ElectLeadersResponse {
        error_code,
        results: Vec::new(),
    }
}

fn election_result(
    topic: String,
    partition: i32,
    outcome: decide::ElectionOutcome,
) -> PartitionResult {
    use decide::ElectionOutcome::*;
    let (error_code, message) = match outcome {
        Elected => (codes::NONE, None),
        NotNeeded => (
            codes::ELECTION_NOT_NEEDED,
            Some("leader is already the one asked for"),
        ),
        PreferredNotAvailable => (
            codes::PREFERRED_LEADER_NOT_AVAILABLE,
            Some("the preferred replica is not active and in sync"),
        ),
        NoEligibleLeader => (
            codes::ELIGIBLE_LEADERS_NOT_AVAILABLE,
            Some("no replica is active"),
        ),
        UnknownPartition => (codes::UNKNOWN_TOPIC_OR_PARTITION, None),
    };
    PartitionResult {
        topic,
        partition,
        error_code,
        error_message: message.map(str::to_string),
    }
}

fn producer_ids_error(error_code: i16) -> InternalMessage {
    InternalMessage::AllocateProducerIdsResponse {
        error_code,
        start: -1,
        len: 0,
    }
}

/// Kafka cluster ids are 22 characters of url-safe base64 of a UUID.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{run, temp_dir};

    /// One voter alone: nothing to send.
    struct Alone;
    impl RaftTransport for Alone {
        fn send(&self, _msg: raft::eraftpb::Message) {}
    }

    fn register(id: i32, incarnation: u8) -> InternalMessage {
        InternalMessage::RegisterBroker {
            broker_id: id,
            incarnation: [incarnation; 16],
            endpoints: vec![skein_net::internal::Endpoint {
                listener: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9000 + u16::try_from(id).unwrap(),
            }],
            rack: None,
        }
    }

    fn heartbeat(id: i32, epoch: i64) -> InternalMessage {
        InternalMessage::Heartbeat {
            broker_id: id,
            broker_epoch: epoch,
            metadata_offset: i64::MAX,
            want_fence: false,
            want_shutdown: false,
        }
    }

    #[test]
    fn brokers_register_get_unfenced_and_are_fenced_when_silent() {
        let dir = temp_dir();
        let path = dir.path().to_path_buf();
        run(move || async move {
            let settings = ServiceSettings {
                session_timeout: Duration::from_millis(300),
                auto_leader_rebalance: false,
                leader_imbalance_check_interval: Duration::from_secs(300),
            };
            let config = ControllerConfig::single_node(crate::NodeId(1), path);
            let s = ControllerService::start(config, Rc::new(Alone), settings)
                .await
                .unwrap();
            while !s.is_active() {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            let mut epochs = Vec::new();
            for id in [1, 2] {
                match s.handle(id, register(id, 1)).await {
                    InternalMessage::RegisterBrokerResponse {
                        error_code: 0,
                        broker_epoch,
                    } => epochs.push(broker_epoch),
                    other => panic!("registration: {other:?}"),
                }
            }
            for (id, epoch) in [(1, epochs[0]), (2, epochs[1])] {
                match s.handle(id, heartbeat(id, epoch)).await {
                    InternalMessage::HeartbeatResponse { error_code, .. } => {
                        assert_eq!(error_code, 0)
                    }
                    other => panic!("heartbeat: {other:?}"),
                }
            }
            let image = s.node().image();
            assert!(image.brokers.values().all(|b| !b.fenced));
            // Another process claiming live, unfenced id 2 is refused.
            match s.handle(2, register(2, 9)).await {
                InternalMessage::RegisterBrokerResponse { error_code, .. } => {
                    assert_eq!(error_code, codes::DUPLICATE_BROKER_REGISTRATION)
                }
                other => panic!("duplicate: {other:?}"),
            }

            // The active controller names the cluster on its first check.
            let named = Instant::now();
            while s.node().image().cluster_id.is_empty() {
                assert!(
                    named.elapsed() < Duration::from_secs(2),
                    "cluster never named"
                );
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(s.node().image().cluster_id.len(), 22);
            // A stale epoch is refused.
            match s.handle(1, heartbeat(1, epochs[0] - 1)).await {
                InternalMessage::HeartbeatResponse { error_code, .. } => {
                    assert_eq!(error_code, codes::STALE_BROKER_EPOCH)
                }
                other => panic!("stale heartbeat: {other:?}"),
            }
            let create = InternalMessage::CreateTopics {
                topics: vec![NewTopicSpec {
                    name: "t".into(),
                    num_partitions: 4,
                    replication_factor: 2,
                    configs: Vec::new(),
                    assignments: Vec::new(),
                }],
                validate_only: false,
            };
            match s.handle(1, create.clone()).await {
                InternalMessage::AdminResponse { results } => assert_eq!(results[0].error_code, 0),
                other => panic!("create: {other:?}"),
            }
            match s.handle(1, create).await {
                InternalMessage::AdminResponse { results } => {
                    assert_eq!(results[0].error_code, codes::TOPIC_ALREADY_EXISTS)
                }
                other => panic!("create again: {other:?}"),
            }
            // Broker 1 keeps heartbeating, broker 2 goes silent: it is fenced and leads nothing.
            let start = Instant::now();
            loop {
                let _ = s.handle(1, heartbeat(1, epochs[0])).await;
                let image = s.node().image();
                if image.brokers.get(&2).is_some_and(|b| b.fenced) {
                    let t = image.topic("t").unwrap();
                    assert!(t
                        .partitions
                        .iter()
                        .all(|p| p.leader == 1 && p.isr == vec![1]));
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "broker 2 never fenced"
                );
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            // Metadata fetches long-poll: an up-to-date caller waits, a behind one gets the image.
            match s
                .handle(
                    1,
                    InternalMessage::FetchMetadata {
                        broker_id: 1,
                        from_offset: -1,
                        max_wait_ms: 1000,
                    },
                )
                .await
            {
                InternalMessage::FetchMetadataResponse { offset, image, .. } => {
                    assert!(offset > 0);
                    let decoded = codec::decode_image(&image).unwrap();
                    assert_eq!(decoded, *s.node().image());
                }
                other => panic!("fetch: {other:?}"),
            }
            s.shutdown().await.unwrap();
        });
    }

    fn upsert(user: &str, mechanism: i8) -> skein_net::internal::ScramUpsert {
        skein_net::internal::ScramUpsert {
            user: user.into(),
            mechanism,
            iterations: 4096,
            salt: vec![1],
            stored_key: vec![2],
            server_key: vec![3],
        }
    }

    #[test]
    fn scram_changes_per_user() {
        let mut image = ClusterImage::default();
        let ups = [upsert("a", 1), upsert("a", 2), upsert("b", 2)];
        let records = scram_changes(&image, "a", &ups, &[], false).unwrap();
        assert_eq!(records.len(), 2);
        for r in &records {
            image.apply(r);
        }
        // Bootstrap: a user with any credential is left alone.
        image.apply(&MetadataRecord::RemoveUserScramCredential {
            user: "a".into(),
            mechanism: 2,
        });
        assert!(scram_changes(&image, "a", &ups, &[], true)
            .unwrap()
            .is_empty());
        assert_eq!(
            scram_changes(&image, "b", &ups, &[], true).unwrap().len(),
            1
        );
        // Removing a credential that does not exist: RESOURCE_NOT_FOUND.
        let missing = [("a".to_string(), 2)];
        let e = scram_changes(&image, "a", &[], &missing, false).unwrap_err();
        assert_eq!(e.0, codes::RESOURCE_NOT_FOUND);
        let present = [("a".to_string(), 1)];
        let records = scram_changes(&image, "a", &[], &present, false).unwrap();
        image.apply(&records[0]);
        assert!(image.scram_credentials.is_empty());
    }
}

#[cfg(test)]
mod leader_change_tests {
    use super::*;
    use crate::image::{PartitionState, TopicState};

    #[test]
    fn only_a_new_epoch_with_a_leader_counts_as_an_election() {
        let id = Uuid::from_u128(1);
        let mut image = ClusterImage::default();
        image.topics.insert(
            id,
            TopicState {
                name: "t".into(),
                id,
                partitions: vec![PartitionState {
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                    leader: 1,
                    leader_epoch: 4,
                    ..PartitionState::default()
                }],
                configs: BTreeMap::new(),
            },
        );
        let change = |leader, leader_epoch| MetadataRecord::PartitionChange {
            topic_id: id,
            partition: 0,
            leader,
            isr: vec![1, 2],
            leader_epoch,
            partition_epoch: 9,
        };
        assert_eq!(leader_changes(&image, &[change(2, 5)]), 1);
        assert_eq!(leader_changes(&image, &[change(1, 4)]), 0, "an ISR change");
        assert_eq!(leader_changes(&image, &[change(-1, 5)]), 0, "offline");
        assert_eq!(
            leader_changes(&image, &[MetadataRecord::RemoveTopic { id }]),
            0
        );
    }
}

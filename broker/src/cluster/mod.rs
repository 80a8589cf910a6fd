//! This node as a member of the cluster (controller shard only): it registers with the active
//! controller, heartbeats, follows the metadata image and installs each new one on every
//! shard, and hands its leaderships away before a clean stop (controlled shutdown).

pub mod link;
pub mod placement;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use futures_channel::oneshot;
use skein_controller::codec;
use skein_controller::rpc::{
    serve, ClusterSecret, InternalGuard, PeerTransport, RemoteClient, RequestHandler,
};
use skein_controller::service::{codes, ControllerService, ServiceSettings};
use skein_controller::{ControllerConfig, NodeId};
use skein_net::internal::{Endpoint, InternalMessage};

use crate::config::LayoutConfig;
use crate::metadata::{place_partitions, ClusterMetadata, CLIENT_LISTENER};
use crate::shard::ids::ShardId;
use crate::shard::mesh::ControlCall;
use crate::shard::Shard;
use link::ControllerLink;
use placement::Placement;

/// How long a metadata fetch waits at the controller for something new.
const FETCH_WAIT: Duration = Duration::from_millis(1_000);
/// How often a fenced broker heartbeats, so it is unfenced soon after it caught up.
const FENCED_HEARTBEAT: Duration = Duration::from_millis(50);
/// The longest a clean stop waits for the controller to move this node's leaderships.
const CONTROLLED_SHUTDOWN_MAX: Duration = Duration::from_secs(5);
/// How often a node that cannot register says so at warn level.
const REGISTER_WARN_EVERY: Duration = Duration::from_secs(10);

/// What the controller shard needs to join the cluster (built before the shards start; `Send`).
pub struct ControllerBoot {
    pub placement: Placement,
    /// The client endpoint this broker registers (advertised host and port).
    pub host: String,
    pub port: u16,
}

/// The controller shard's cluster pieces once started.
pub struct Started {
    pub plane: Rc<ControlPlane>,
    /// Set by `run` once this node is a live member with metadata installed.
    pub joined: Rc<Cell<bool>>,
    service: Option<Rc<ControllerService>>,
    server: Option<glommio::Task<()>>,
    transport: Option<Rc<PeerTransport>>,
}

impl ControllerBoot {
    /// Starts this node's controller voter (if it is one) with its internal listener, and the
    /// link to the active controller.
    pub async fn start(
        self,
        layout: &LayoutConfig,
        tls: Option<Arc<skein_net::tls::TlsContext>>,
    ) -> Result<Started, String> {
        let node_id = layout.node_id.0;
        let guard = InternalGuard {
            secret: cluster_secret(layout)?,
            // The internal listener's TLS is mutual: this node presents its own certificate
            // on the connections it makes, and asks every peer for one.
            tls: if layout.internal_tls { tls } else { None },
            // Peers' certificates must name a super user (Kafka's rule for inter-broker and
            // controller principals); the config load checked there is one.
            members: layout.broker.authorizer.super_users.clone().into(),
        };
        let others: Vec<(NodeId, SocketAddr)> = layout
            .controller_voters
            .iter()
            .filter(|(id, _)| id.0 != node_id)
            .map(|(id, addr)| (NodeId(id.0), *addr))
            .collect();
        let (service, server, transport) = if layout.is_voter() {
            let mut voters: Vec<NodeId> = others.iter().map(|(id, _)| *id).collect();
            voters.push(NodeId(node_id));
            voters.sort_unstable();
            let config =
                ControllerConfig::new(NodeId(node_id), voters, layout.data_dir.join("controller"));
            let transport = PeerTransport::new(NodeId(node_id), others.clone(), guard.clone());
            let settings = ServiceSettings {
                session_timeout: Duration::from_millis(layout.broker.broker_session_timeout_ms),
                auto_leader_rebalance: layout.broker.auto_leader_rebalance_enable,
                leader_imbalance_check_interval: Duration::from_secs(
                    layout.broker.leader_imbalance_check_interval_seconds,
                ),
            };
            let service = ControllerService::start(config, transport.clone(), settings)
                .await
                .map_err(|e| format!("starting the controller: {e}"))?;
            transport.attach(service.node().mailbox());
            let server = match layout.internal_listener {
                Some(addr) => {
                    let listener = glommio::net::TcpListener::bind(addr)
                        .map_err(|e| format!("cannot bind the internal listener {addr}: {e}"))?;
                    Some(serve(
                        listener,
                        Rc::new(Handler(service.clone())),
                        guard.clone(),
                    ))
                }
                None => None,
            };
            (Some(service), server, Some(transport))
        } else {
            (None, None, None)
        };
        let remote = (!others.is_empty()).then(|| RemoteClient::new(node_id, others, guard));
        let link = ControllerLink::new(service.clone(), remote);
        Ok(Started {
            plane: Rc::new(ControlPlane::new(
                link,
                self.host,
                self.port,
                self.placement,
            )),
            joined: Rc::new(Cell::new(false)),
            service,
            server,
            transport,
        })
    }
}

/// The cluster secret from `[controller] secret_file`, if one is configured. A multi-node
/// cluster without one is open to anyone who reaches the internal listener: said once, loudly.
fn cluster_secret(layout: &LayoutConfig) -> Result<Option<ClusterSecret>, String> {
    let Some(path) = &layout.cluster_secret_file else {
        if layout.controller_voters.len() > 1 {
            tracing::warn!(
                "no [controller] secret_file: any process that reaches the internal listener \
                 can register a broker or vote; set one on every node"
            );
        }
        return Ok(None);
    };
    let bytes = std::fs::read(path)
        .map_err(|e| format!("reading the cluster secret {}: {e}", path.display()))?;
    ClusterSecret::new(&bytes)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Started {
    /// Stops the internal listener, the transport and the voter (after the shards closed).
    pub async fn stop(self) {
        if let Some(server) = self.server {
            server.cancel().await;
        }
        if let Some(t) = &self.transport {
            t.close().await;
        }
        drop(self.plane);
        if let Some(service) = self.service {
            if let Err(e) = service.shutdown().await {
                tracing::error!(error = %e, "controller stopped with an error");
            }
        }
    }
}

/// The internal listener's requests go to this node's controller service.
struct Handler(Rc<ControllerService>);

impl RequestHandler for Handler {
    fn deliver_raft(&self, msg: skein_controller::RaftMessage) {
        // A full inbox drops it; Raft retransmits.
        let _ = self.0.node().step(msg);
    }

    fn handle(
        &self,
        from_node: i32,
        request: InternalMessage,
    ) -> Pin<Box<dyn Future<Output = InternalMessage>>> {
        self.0.handle_boxed(from_node, request)
    }

    fn heartbeats_connection_closed(&self, node: i32) {
        self.0.heartbeats_connection_closed(node);
    }

    fn raft_connection_closed(&self, node: i32) {
        self.0.raft_connection_closed(node);
    }
}

/// The controller shard's membership state.
pub struct ControlPlane {
    pub link: ControllerLink,
    /// The epoch of this process's registration; -1 until registered.
    pub broker_epoch: Cell<i64>,
    /// A fresh id per process start: a restart replaces the old registration.
    incarnation: [u8; 16],
    endpoint: Endpoint,
    placement: RefCell<Placement>,
    /// Whether the controller has this broker unfenced.
    unfenced: Cell<bool>,
    /// Admin requests, one at a time, so each waits for its own change to show.
    pub admin_lock: glommio::sync::Semaphore,
    /// Why this node must stop (another live process holds its id), once that is known.
    pub fatal: RefCell<Option<String>>,
}

impl ControlPlane {
    /// Whether the controller has this broker unfenced (as of the last image).
    pub fn is_unfenced(&self) -> bool {
        self.unfenced.get()
    }

    pub fn new(link: ControllerLink, host: String, port: u16, placement: Placement) -> Self {
        ControlPlane {
            link,
            broker_epoch: Cell::new(-1),
            incarnation: *uuid::Uuid::new_v4().as_bytes(),
            endpoint: Endpoint {
                listener: CLIENT_LISTENER.to_string(),
                host,
                port,
            },
            placement: RefCell::new(placement),
            unfenced: Cell::new(false),
            admin_lock: glommio::sync::Semaphore::new(1),
            fatal: RefCell::new(None),
        }
    }
}

/// Runs the membership tasks until `draining` is set, then a controlled shutdown; sets
/// `ready` once this node is unfenced and every shard holds metadata showing it, and `stop`
/// when the shards should stop.
pub async fn run(
    shard: Rc<Shard>,
    plane: Rc<ControlPlane>,
    ready: Rc<Cell<bool>>,
    draining: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let follower = glommio::spawn_local(follow_metadata(shard.clone(), plane.clone(), ready));
    let membership = glommio::spawn_local(membership(shard.clone(), plane.clone(), draining));
    let bootstrap = glommio::spawn_local(crate::users::bootstrap(shard.clone()));
    membership.await;
    stop.store(true, Ordering::Release);
    bootstrap.cancel().await;
    follower.cancel().await;
}

/// Follows the controller's image: each newer one becomes every shard's metadata.
async fn follow_metadata(shard: Rc<Shard>, plane: Rc<ControlPlane>, ready: Rc<Cell<bool>>) {
    let node_id = shard.layout.node_id.0;
    let mut offset: i64 = -1;
    let mut last_error = Instant::now() - Duration::from_secs(60);
    let mut first = true;
    loop {
        let request = InternalMessage::FetchMetadata {
            broker_id: node_id,
            from_offset: offset,
            max_wait_ms: i32::try_from(FETCH_WAIT.as_millis()).unwrap_or(1000),
        };
        let answer = plane
            .link
            .call(node_id, request, FETCH_WAIT + Duration::from_secs(4))
            .await;
        let (leader_id, new_offset, image) = match answer {
            Ok(InternalMessage::FetchMetadataResponse {
                error_code: codes::NONE,
                leader_id,
                offset,
                image,
            }) => (leader_id, offset, image),
            other => {
                if last_error.elapsed() > Duration::from_secs(5) {
                    last_error = Instant::now();
                    tracing::warn!(answer = ?other.map(|m| m.error_code()), "fetching metadata failed; retrying");
                }
                glommio::timer::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let controller_changed = leader_id != shard.metadata().controller_id;
        if image.is_empty() && !controller_changed {
            continue;
        }
        let decoded = if image.is_empty() {
            None
        } else {
            match codec::decode_image(&image) {
                Ok(i) => Some(i),
                Err(e) => {
                    tracing::error!(error = %e, "metadata image does not decode; retrying");
                    glommio::timer::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        };
        let md = match &decoded {
            Some(image) => build(&shard, &plane, image, new_offset, leader_id).await,
            None => {
                // Only the controller moved: same image, new controller id.
                let mut md = (*shard.metadata()).clone();
                md.controller_id = leader_id;
                md.revision = u64::try_from(new_offset).unwrap_or(0).max(md.revision);
                md
            }
        };
        if first && decoded.is_some() {
            // Before any shard opens a log: remove those of replicas this node no longer
            // hosts (a topic deleted, or re-created under a new id, while it was down).
            first = false;
            let data_dir = shard.layout.data_dir.clone();
            let hosted: std::collections::BTreeSet<String> = md
                .topics
                .values()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.shard.is_some())
                        .map(|(i, _)| format!("{}-{i}", t.name))
                })
                .collect();
            let removed = glommio::executor()
                .spawn_blocking(move || remove_stray_logs(&data_dir, &hosted))
                .await;
            if let Err(e) = removed {
                tracing::error!(error = %e, "removing logs of replicas no longer hosted failed");
            }
        }
        if let Some(image) = &decoded {
            let unfenced = image
                .brokers
                .get(&node_id)
                .is_some_and(|b| !b.fenced && b.epoch == plane.broker_epoch.get());
            // This node's own view of the controller's verdict, once per change.
            if unfenced != plane.unfenced.replace(unfenced) {
                let broker_epoch = plane.broker_epoch.get();
                if unfenced {
                    tracing::info!(broker_id = node_id, broker_epoch, "this broker is unfenced");
                } else {
                    tracing::info!(broker_id = node_id, broker_epoch, "this broker is fenced");
                }
            }
        }
        if let Err(e) = publish(&shard, Arc::new(md)).await {
            tracing::error!(error = %e, "installing metadata failed; retrying");
            glommio::timer::sleep(Duration::from_millis(100)).await;
            continue;
        }
        offset = new_offset;
        if plane.unfenced.get() && !shard.metadata().cluster_id.is_empty() && !ready.get() {
            ready.set(true);
        }
    }
}

/// The node's metadata for `image`: new replicas of this node get a shard (persisted).
async fn build(
    shard: &Shard,
    plane: &ControlPlane,
    image: &skein_controller::image::ClusterImage,
    offset: i64,
    leader_id: i32,
) -> ClusterMetadata {
    let node_id = shard.layout.node_id;
    let revision = u64::try_from(offset).unwrap_or(0);
    let before = plane.placement.borrow().clone();
    let mut counts = vec![0usize; shard.shard_count()];
    for (_, _, s) in before.entries() {
        if let Some(c) = counts.get_mut(s.index()) {
            *c += 1;
        }
    }
    let md = {
        let mut placement = plane.placement.borrow_mut();
        let md = ClusterMetadata::from_image(image, revision, node_id, leader_id, |id, name, p| {
            if let Some(s) = placement.get(id, p) {
                return Some(s);
            }
            let allowed = allowed_shards(shard, name);
            let s = place_partitions(&mut counts, &allowed, 1)
                .first()
                .copied()
                .unwrap_or(ShardId(0));
            placement.insert(id, name, p, s);
            Some(s)
        });
        // Replicas this node no longer hosts leave the file.
        let hosted: std::collections::BTreeSet<String> = md
            .topics
            .values()
            .flat_map(|t| {
                t.partitions.iter().enumerate().filter_map(|(i, p)| {
                    p.shard
                        .map(|_| Placement::key_of(t.id, i32::try_from(i).unwrap_or(i32::MAX)))
                })
            })
            .collect();
        placement.retain(|k| hosted.contains(k));
        md
    };
    let after = plane.placement.borrow().clone();
    if after != before {
        let data_dir = shard.layout.data_dir.clone();
        let stored = glommio::executor()
            .spawn_blocking(move || after.store(&data_dir))
            .await;
        if let Err(e) = stored {
            // Not fatal: the logs are found by name; only the shard choice may change.
            tracing::warn!(error = %e, "persisting the replica placement failed");
        }
    }
    md
}

/// Removes partition directories (`<topic>-<n>`) not in `hosted`. Blocking.
fn remove_stray_logs(
    data_dir: &std::path::Path,
    hosted: &std::collections::BTreeSet<String>,
) -> Result<(), String> {
    let entries =
        std::fs::read_dir(data_dir).map_err(|e| format!("reading {}: {e}", data_dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        if !entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        let is_partition = name
            .rsplit_once('-')
            .is_some_and(|(_, p)| p.parse::<i32>().is_ok());
        if is_partition && !hosted.contains(&name) {
            tracing::warn!(dir = %entry.path().display(), "removing the log of a replica this node no longer hosts");
            std::fs::remove_dir_all(entry.path())
                .map_err(|e| format!("removing {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn allowed_shards(shard: &Shard, topic: &str) -> Vec<ShardId> {
    match shard.layout.placement.get(topic) {
        Some(s) if !s.is_empty() => s.clone(),
        _ => (0..shard.shard_count())
            .filter_map(|i| u16::try_from(i).ok().map(ShardId))
            .collect(),
    }
}

/// Installs a snapshot on every shard and waits until each has opened or dropped its replicas.
/// This shard goes last: once its own metadata shows a change, every shard's does, so an admin
/// request answered then is visible wherever the client asks next.
pub async fn publish(shard: &Shard, snapshot: Arc<ClusterMetadata>) -> Result<(), String> {
    // Node-wide, so once for all shards, and before any of them shows the change: a quota is
    // in force by the time an AlterClientQuotas answered on this node returns.
    shard.quotas.clients.set_dynamic(&snapshot.client_quotas);
    for i in 0..shard.shard_count() {
        let target = ShardId(u16::try_from(i).map_err(|_| "too many shards".to_string())?);
        if target == shard.id {
            continue;
        }
        let (reply, rx) = oneshot::channel();
        shard
            .mesh
            .send_control(
                target,
                ControlCall::Apply {
                    snapshot: snapshot.clone(),
                    reply,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        rx.await
            .map_err(|_| format!("{target} dropped the metadata update"))??;
    }
    shard.apply_metadata(snapshot).await
}

/// Registration, heartbeats and, once `draining` is set, the controlled shutdown.
async fn membership(shard: Rc<Shard>, plane: Rc<ControlPlane>, draining: Arc<AtomicBool>) {
    let settings = &shard.layout.broker;
    let interval = Duration::from_millis(settings.broker_heartbeat_interval_ms);
    let session = Duration::from_millis(settings.broker_session_timeout_ms);
    let node_id = shard.layout.node_id.0;
    let mut refused_since: Option<Instant> = None;
    // Registration failures are said at warn level, but once per REGISTER_WARN_EVERY: a node
    // that cannot join (no controller yet, the wrong cluster secret) must say why.
    let mut warned_at: Option<Instant> = None;
    loop {
        if draining.load(Ordering::Acquire) {
            if plane.broker_epoch.get() >= 0 {
                controlled_shutdown(&shard, &plane, interval).await;
            }
            return;
        }
        if plane.broker_epoch.get() < 0 {
            let request = InternalMessage::RegisterBroker {
                broker_id: node_id,
                incarnation: plane.incarnation,
                endpoints: vec![plane.endpoint.clone()],
                rack: None,
            };
            match plane.link.call(node_id, request, session).await {
                Ok(InternalMessage::RegisterBrokerResponse {
                    error_code: codes::NONE,
                    broker_epoch,
                }) => {
                    tracing::info!(
                        broker_id = node_id,
                        broker_epoch,
                        "registered with the controller"
                    );
                    plane.broker_epoch.set(broker_epoch);
                    refused_since = None;
                    continue;
                }
                Ok(InternalMessage::RegisterBrokerResponse {
                    error_code: codes::DUPLICATE_BROKER_REGISTRATION,
                    ..
                }) => {
                    // A process we replace may still look alive for one session; a live one
                    // keeps heartbeating and is still there after two.
                    let since = *refused_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > session * 2 + Duration::from_secs(1) {
                        let message =
                            format!("broker id {node_id} is registered by another live process");
                        tracing::error!("{message}; stopping");
                        *plane.fatal.borrow_mut() = Some(message);
                        return;
                    }
                }
                other => {
                    if warned_at.is_none_or(|t| t.elapsed() >= REGISTER_WARN_EVERY) {
                        warned_at = Some(Instant::now());
                        match other {
                            Err(e) => {
                                tracing::warn!(error = %e, "registration failed; retrying")
                            }
                            Ok(answer) => {
                                let code = answer.error_code();
                                tracing::warn!(?code, "registration refused; retrying")
                            }
                        }
                    }
                }
            }
            glommio::timer::sleep(interval.min(Duration::from_millis(200))).await;
            continue;
        }
        match heartbeat(&shard, &plane, false, interval * 2).await {
            Some(InternalMessage::HeartbeatResponse {
                error_code: codes::STALE_BROKER_EPOCH,
                ..
            }) => {
                tracing::warn!(
                    "the controller no longer knows this registration; registering again"
                );
                plane.broker_epoch.set(-1);
                continue;
            }
            Some(InternalMessage::HeartbeatResponse { is_fenced, .. })
                if is_fenced == plane.unfenced.get() =>
            {
                tracing::debug!(is_fenced, "heartbeat: fencing state changed");
            }
            _ => {}
        }
        let pause = if plane.unfenced.get() {
            interval
        } else {
            FENCED_HEARTBEAT
        };
        glommio::timer::sleep(pause).await;
    }
}

async fn heartbeat(
    shard: &Shard,
    plane: &ControlPlane,
    want_shutdown: bool,
    timeout: Duration,
) -> Option<InternalMessage> {
    let node_id = shard.layout.node_id.0;
    let request = InternalMessage::Heartbeat {
        broker_id: node_id,
        broker_epoch: plane.broker_epoch.get(),
        metadata_offset: i64::try_from(shard.metadata().revision).unwrap_or(i64::MAX),
        want_fence: false,
        want_shutdown,
    };
    match plane.link.call(node_id, request, timeout).await {
        Ok(answer) => Some(answer),
        Err(e) => {
            tracing::debug!(error = %e, "heartbeat failed");
            None
        }
    }
}

/// Asks the controller to move this node's leaderships away, until it says it may stop.
async fn controlled_shutdown(shard: &Shard, plane: &ControlPlane, interval: Duration) {
    let start = Instant::now();
    while start.elapsed() < CONTROLLED_SHUTDOWN_MAX {
        if let Some(InternalMessage::HeartbeatResponse {
            error_code: codes::NONE,
            should_shutdown: true,
            ..
        }) = heartbeat(shard, plane, true, interval * 2).await
        {
            tracing::info!(
                broker_id = shard.layout.node_id.0,
                waited = ?start.elapsed(),
                "controlled shutdown: leaderships moved"
            );
            return;
        }
        glommio::timer::sleep(FENCED_HEARTBEAT).await;
    }
    tracing::warn!("controlled shutdown timed out; stopping anyway");
}

//! A shard: one pinned glommio executor that owns a set of partitions outright, serves the Kafka
//! connections it accepts, and talks to the other shards only through the meshes (per shard).

pub mod ids;
pub mod mesh;
pub mod route;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use glommio::channels::channel_mesh::Receivers;
use skein_storage::{PartitionLog, TailCache};

use crate::cluster::ControlPlane;
use crate::config::LayoutConfig;
use crate::group::state::GroupLimits;
use crate::group::store::GroupStore;
use crate::metadata::{ClusterMetadata, PartitionMeta, TopicMeta};
use crate::metrics::http::MetricsState;
use crate::metrics::ShardMetrics;
use crate::partition::{Partition, Transition};
use crate::producer_ids::ProducerIds;
use crate::throttle::ByteBudget;
use crate::topic_config::EffectiveTopicConfig;
use ids::{ShardId, TopicPartition};
use mesh::{ControlCall, DataCall, MeshBoot, ShardMesh};

/// How often group deadlines (sessions, rebalance and sync timeouts) are checked.
const GROUP_TICK: Duration = Duration::from_millis(50);
/// How often a leaving or closing replica is checked for requests that still hold it.
const RELEASE_POLL: Duration = Duration::from_millis(10);
/// How often a leaving replica that is still held says so in the log.
const RELEASE_WARN_EVERY: Duration = Duration::from_secs(5);
/// Tries (`RELEASE_POLL` apart) a clean shutdown gives each replica to be released.
const CLOSE_TRIES: u32 = 200;

/// What every shard's thread receives at start-up (all `Send`).
pub struct ShardBoot {
    pub id: ShardId,
    pub layout: Arc<LayoutConfig>,
    pub mesh: MeshBoot,
    /// Shards that have opened their partitions and bound the listener.
    pub ready: Arc<AtomicUsize>,
    /// Set when the node should stop: the controller shard sets it after the controlled
    /// shutdown (or when the node cannot go on).
    pub shutdown: Arc<AtomicBool>,
    /// Set by a stop signal: the controller shard hands leaderships away first.
    pub draining: Arc<AtomicBool>,
    /// Set by the controller shard once this node is a live member with metadata installed;
    /// shards serve clients only from then on.
    pub joined: Arc<AtomicBool>,
    /// The controller shard's start-up state (None on the other shards).
    pub controller: Option<crate::cluster::ControllerBoot>,
    /// The resolved Kafka listener address (port 0 already replaced).
    pub kafka_addr: std::net::SocketAddr,
    /// `follower.replication.throttled.rate`: one budget for the whole node.
    pub replication_budget: Arc<ByteBudget>,
    /// Connection limits and client quotas: one for the whole node.
    pub quotas: Arc<crate::quota::Quotas>,
    /// The node's TLS, when a listener uses it (SIGHUP reloads it in place).
    pub tls: Option<Arc<skein_net::tls::TlsContext>>,
}

pub struct Shard {
    pub id: ShardId,
    pub layout: Arc<LayoutConfig>,
    metadata: RefCell<Arc<ClusterMetadata>>,
    partitions: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
    tail_cache: Rc<TailCache>,
    pub mesh: ShardMesh,
    /// Present only on the controller shard: this node's cluster membership.
    pub control: Option<Rc<ControlPlane>>,
    /// This shard's block of producer ids (and, on the metadata shard, the allocator).
    pub producer_ids: ProducerIds,
    /// This shard's counters (see `metrics`); only this shard touches them.
    pub metrics: ShardMetrics,
    stopping: Cell<bool>,
    /// What this node's catch-up fetches may still take, shared by every shard.
    pub replication_budget: Arc<ByteBudget>,
    /// Connection limits and client quotas, shared by every shard.
    pub quotas: Arc<crate::quota::Quotas>,
    /// The node's TLS, shared by every shard.
    pub tls: Option<Arc<skein_net::tls::TlsContext>>,
    /// Directories of leaving replicas whose logs are not deleted yet (a request still holds
    /// them); a replica that comes back to this shard opens only once its old log is gone, so
    /// two logs never share a directory.
    deleting: Rc<RefCell<HashSet<PathBuf>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{shard}: joining the shard mesh failed")]
    Mesh { shard: ShardId },
    #[error("{shard}: cannot bind the Kafka listener on {addr}: {source}")]
    Bind {
        shard: ShardId,
        addr: std::net::SocketAddr,
        source: glommio::GlommioError<()>,
    },
    #[error("{shard}: {message}")]
    Cluster { shard: ShardId, message: String },
    #[error("{shard}: cannot bind the metrics listener on {addr}: {source}")]
    MetricsBind {
        shard: ShardId,
        addr: std::net::SocketAddr,
        source: glommio::GlommioError<()>,
    },
}

/// Runs one shard until shutdown is requested.
pub async fn run(boot: ShardBoot) -> Result<(), ShardError> {
    let shard_id = boot.id;
    let (data_tx, data_rx) = boot
        .mesh
        .data
        .clone()
        .join()
        .await
        .map_err(|_| ShardError::Mesh { shard: shard_id })?;
    let (control_tx, control_rx) = boot
        .mesh
        .control
        .clone()
        .join()
        .await
        .map_err(|_| ShardError::Mesh { shard: shard_id })?;
    if let Some(slot) = boot.mesh.peer_of_shard.get(shard_id.index()) {
        slot.store(data_tx.peer_id(), Ordering::Release);
    }
    // Both meshes are joined by the same executors, so their peer orders agree.
    assert_eq!(
        data_tx.peer_id(),
        control_tx.peer_id(),
        "mesh peer ids differ"
    );
    let peers = mesh::await_peer_map(&boot.mesh.peer_of_shard).await;

    let cluster_failed = |message: String| ShardError::Cluster {
        shard: shard_id,
        message,
    };
    // The controller shard serves the metrics listener, from before the controller starts so
    // that /health answers (and /ready says no) during recovery.
    let metrics_server = match boot.layout.metrics_listener {
        Some(addr) if boot.controller.is_some() => Some(start_metrics(&boot, addr)?),
        _ => None,
    };
    let started = match boot.controller {
        Some(c) => Some(
            c.start(&boot.layout, boot.tls.clone())
                .await
                .map_err(cluster_failed)?,
        ),
        None => None,
    };
    let shard = Rc::new(Shard {
        id: shard_id,
        layout: boot.layout.clone(),
        metadata: RefCell::new(Arc::new(ClusterMetadata::new(
            String::new(),
            boot.layout.node_id,
        ))),
        partitions: RefCell::new(HashMap::new()),
        tail_cache: Rc::new(TailCache::new(
            boot.layout.broker.tail_cache_bytes_per_shard,
        )),
        mesh: ShardMesh::new(data_tx, control_tx, peers),
        control: started.as_ref().map(|s| s.plane.clone()),
        producer_ids: ProducerIds::new(),
        metrics: ShardMetrics::default(),
        stopping: Cell::new(false),
        replication_budget: boot.replication_budget.clone(),
        quotas: boot.quotas.clone(),
        tls: boot.tls.clone(),
        deleting: Rc::new(RefCell::new(HashSet::new())),
    });
    if let Some((state, _)) = &metrics_server {
        // Set once, here; the cell is empty only until now.
        let _ = state.shard.set(shard.clone());
    }

    serve_mesh(&shard, data_rx, control_rx);
    let membership = match &started {
        Some(started) => {
            let task = glommio::spawn_local(crate::cluster::run(
                shard.clone(),
                started.plane.clone(),
                started.joined.clone(),
                boot.draining.clone(),
                boot.shutdown.clone(),
            ));
            // Serve clients only as a live member, with the cluster's metadata installed.
            while !started.joined.get() && !boot.shutdown.load(Ordering::Acquire) {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            boot.joined.store(true, Ordering::Release);
            Some(task)
        }
        None => {
            while !boot.joined.load(Ordering::Acquire) && !boot.shutdown.load(Ordering::Acquire) {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            None
        }
    };
    let listener =
        glommio::net::TcpListener::bind(boot.kafka_addr).map_err(|source| ShardError::Bind {
            shard: shard_id,
            addr: boot.kafka_addr,
            source,
        })?;
    let accept_task =
        glommio::spawn_local(crate::kafka::server::accept_loop(shard.clone(), listener));
    let replication = glommio::spawn_local(crate::replication::run(shard.clone()));
    boot.ready.fetch_add(1, Ordering::AcqRel);

    shard.housekeeping(&boot.shutdown).await;
    if let Some((_, task)) = metrics_server {
        task.cancel().await;
    }
    accept_task.cancel().await;
    replication.cancel().await;
    if let Some(task) = membership {
        task.await;
    }
    shard.close_all().await;
    if let Some(started) = started {
        let fatal = started.plane.fatal.borrow().clone();
        started.stop().await;
        if let Some(message) = fatal {
            return Err(cluster_failed(message));
        }
    }
    Ok(())
}

/// Binds the metrics listener and starts serving it; the shard is filled in once it exists.
fn start_metrics(
    boot: &ShardBoot,
    addr: std::net::SocketAddr,
) -> Result<(Rc<MetricsState>, glommio::Task<()>), ShardError> {
    let listener =
        glommio::net::TcpListener::bind(addr).map_err(|source| ShardError::MetricsBind {
            shard: boot.id,
            addr,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let scheme = if boot.layout.metrics_tls {
        "https"
    } else {
        "http"
    };
    eprintln!("skein: metrics on {scheme}://{bound}/metrics");
    tracing::info!(%bound, "serving metrics, /health and /ready");
    let state = Rc::new(MetricsState::new(
        boot.ready.clone(),
        boot.layout.shard_count(),
        boot.draining.clone(),
        boot.tls.clone().filter(|_| boot.layout.metrics_tls),
    ));
    let task = glommio::spawn_local(crate::metrics::http::serve(listener, state.clone()));
    Ok((state, task))
}

fn serve_mesh(shard: &Rc<Shard>, data_rx: Receivers<DataCall>, control_rx: Receivers<ControlCall>) {
    serve_receivers(shard, data_rx, route::serve_data_call);
    serve_receivers(shard, control_rx, route::serve_control_call);
}

/// One task per peer channel; each call runs in its own task so a slow one never holds up the
/// calls queued behind it.
fn serve_receivers<T: Send + 'static, F: std::future::Future<Output = ()> + 'static>(
    shard: &Rc<Shard>,
    mut receivers: Receivers<T>,
    serve: fn(Rc<Shard>, T) -> F,
) {
    for (_, rx) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            let mut rx = rx;
            while let Some(call) = rx.next().await {
                glommio::spawn_local(serve(shard.clone(), call)).detach();
            }
        })
        .detach();
    }
}

impl Shard {
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    pub fn partition(&self, tp: &TopicPartition) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(tp).cloned()
    }

    /// Every partition replica this shard owns.
    pub fn partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    pub fn tail_cache_stats(&self) -> skein_storage::TailCacheStats {
        self.tail_cache.stats()
    }

    pub fn shard_count(&self) -> usize {
        self.layout.shard_count()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    fn partition_dir(&self, tp: &TopicPartition) -> PathBuf {
        self.layout.data_dir.join(tp.dir_name())
    }

    /// Installs `snapshot` (if newer) and opens, reconfigures or removes partitions so this shard
    /// owns exactly what the snapshot assigns to it.
    pub async fn apply_metadata(&self, snapshot: Arc<ClusterMetadata>) -> Result<(), String> {
        {
            let current = self.metadata.borrow();
            if snapshot.revision < current.revision {
                return Ok(());
            }
        }
        // Partitions that must go: topic gone, recreated under a new id, or moved elsewhere.
        let stale: Vec<TopicPartition> = self
            .partitions
            .borrow()
            .iter()
            .filter(|(tp, p)| {
                let t = snapshot.topics.get(&*tp.topic);
                match (t, snapshot.partition(&tp.topic, tp.partition)) {
                    (Some(t), Some(pm)) => t.id != p.topic_id || pm.shard != Some(self.id),
                    _ => true,
                }
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        let leaving: Vec<Rc<Partition>> = stale
            .iter()
            .filter_map(|tp| self.partitions.borrow_mut().remove(tp))
            .collect();
        for p in &leaving {
            p.retire();
        }
        let opening = self.install_assignments(&snapshot).await;
        // Even if that failed: a leaving replica must not stay on disk.
        for p in leaving {
            self.delete_when_released(p);
        }
        for (tp, topic, pm, config) in opening? {
            self.open_partition(tp, topic, pm, config).await?;
        }
        *self.metadata.borrow_mut() = snapshot;
        Ok(())
    }

    /// Installs the snapshot's leaders, replicas, ISRs and configs on the partitions this shard
    /// has; returns the ones it assigns here that are not open yet (`open_partition` opens
    /// each once a leaving replica of its directory, say of a topic recreated under its old
    /// name, is deleted).
    async fn install_assignments<'a>(
        &self,
        snapshot: &'a ClusterMetadata,
    ) -> Result<Opening<'a>, String> {
        let mut opening = Vec::new();
        for topic in snapshot.topics.values() {
            let config = EffectiveTopicConfig::resolve(&self.layout.broker, &topic.configs);
            for (index, pm) in topic.partitions.iter().enumerate() {
                if pm.shard != Some(self.id) {
                    continue;
                }
                let partition =
                    i32::try_from(index).map_err(|_| "partition index overflow".to_string())?;
                let tp = TopicPartition::new(topic.name.as_str(), partition);
                let existing = self.partition(&tp);
                match existing {
                    Some(p) => {
                        if p.config() != config {
                            p.set_config(config.clone())
                                .map_err(|e| format!("{tp}: {e}"))?;
                        }
                        let transition = p.set_assignment(
                            pm.leader,
                            pm.leader_epoch,
                            &pm.replicas,
                            &pm.isr,
                            pm.partition_epoch,
                        );
                        let is_offsets = topic.name == crate::group::offsets::OFFSETS_TOPIC;
                        if is_offsets && transition == Transition::BecameLeader {
                            // A follower's copy of the groups is not kept live; the new
                            // coordinator rebuilds them from the log it now leads.
                            self.load_groups(&p)
                                .await
                                .map_err(|e| format!("{tp}: replaying groups: {e}"))?;
                        }
                    }
                    None => opening.push((tp, topic, pm, config.clone())),
                }
            }
        }
        Ok(opening)
    }

    /// Opens (recovering it if need be) a replica the metadata newly assigns to this shard.
    async fn open_partition(
        &self,
        tp: TopicPartition,
        topic: &TopicMeta,
        pm: &PartitionMeta,
        config: EffectiveTopicConfig,
    ) -> Result<(), String> {
        let dir = self.partition_dir(&tp);
        while self.deleting.borrow().contains(&dir) {
            glommio::timer::sleep(RELEASE_POLL).await;
        }
        let log = PartitionLog::open(&dir, config.log_config(), self.tail_cache.clone())
            .await
            .map_err(|e| format!("{tp}: cannot open {}: {e}", dir.display()))?;
        // A sole replica is the whole ISR: everything its log recovered was acknowledged or
        // may be, so the HW is the log end. With followers the checkpointed HW stands until
        // they report what they have.
        if pm.replicas.len() <= 1 {
            let end = log.log_end_offset();
            if end > log.high_watermark() {
                log.set_high_watermark(end);
            }
        }
        let p = Partition::new(tp.clone(), topic.id, log, self.layout.node_id.0, config);
        p.set_assignment(
            pm.leader,
            pm.leader_epoch,
            &pm.replicas,
            &pm.isr,
            pm.partition_epoch,
        );
        let p = Rc::new(p);
        self.partitions.borrow_mut().insert(tp.clone(), p.clone());
        if topic.name == crate::group::offsets::OFFSETS_TOPIC {
            self.load_groups(&p)
                .await
                .map_err(|e| format!("{tp}: replaying groups: {e}"))?;
        }
        Ok(())
    }

    /// Rebuilds an offsets partition's groups from its log. The partition is visible while it
    /// loads, so group requests learn to retry (COORDINATOR_LOAD_IN_PROGRESS) rather than look
    /// elsewhere.
    async fn load_groups(&self, p: &Rc<Partition>) -> Result<(), String> {
        {
            let mut groups = p.groups.borrow_mut();
            *groups = GroupStore::new(GroupLimits::from_settings(&self.layout.broker.group));
            groups.loading = true;
        }
        replay_groups(p).await
    }

    /// Deletes a leaving (retired) replica's log in the background, once the requests that
    /// still hold it let go: nothing else on the shard waits for it, except a replica of the
    /// same directory that opens meanwhile (`open_partition`).
    fn delete_when_released(&self, p: Rc<Partition>) {
        let dir = p.log.dir().to_path_buf();
        self.deleting.borrow_mut().insert(dir.clone());
        let deleting = self.deleting.clone();
        glommio::spawn_local(async move {
            let tp = p.tp.clone();
            let owned = sole_owner_eventually(p).await;
            if let Err(e) = owned.log.delete().await {
                tracing::error!(partition = %tp, error = %e, "deleting the log failed");
            }
            deleting.borrow_mut().remove(&dir);
        })
        .detach();
    }

    /// The `__consumer_offsets` partitions this shard owns (it coordinates their groups).
    pub fn coordinator_partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions
            .borrow()
            .iter()
            .filter(|(tp, _)| &*tp.topic == crate::group::offsets::OFFSETS_TOPIC)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Periodic work (group deadlines, retention) until shutdown is requested.
    async fn housekeeping(&self, shutdown: &AtomicBool) {
        let retention_every =
            Duration::from_millis(self.layout.broker.log_retention_check_interval_ms);
        let mut last_retention = std::time::Instant::now();
        let cleaner_every = Duration::from_millis(self.layout.broker.log_cleaner_backoff_ms);
        let mut last_cleaning = std::time::Instant::now();
        while !shutdown.load(Ordering::Acquire) {
            glommio::timer::sleep(GROUP_TICK).await;
            crate::group::coordinator::tick(self.coordinator_partitions());
            if last_retention.elapsed() >= retention_every {
                last_retention = std::time::Instant::now();
                self.enforce_retention().await;
            }
            if last_cleaning.elapsed() >= cleaner_every {
                last_cleaning = std::time::Instant::now();
                self.compact_logs().await;
            }
        }
        self.stopping.set(true);
    }

    async fn enforce_retention(&self) {
        let now_ms = crate::clock::now_ms();
        let parts: Vec<Rc<Partition>> = self.partitions.borrow().values().cloned().collect();
        for p in parts {
            if let Err(e) = p.log.enforce_retention(now_ms).await {
                tracing::warn!(partition = %p.tp, error = %e, "retention failed");
            }
            glommio::executor().yield_if_needed().await;
        }
    }

    /// One cleaner pass over the compacted topics' logs this shard owns, a partition at a time.
    async fn compact_logs(&self) {
        let now_ms = crate::clock::now_ms();
        let parts: Vec<Rc<Partition>> = self
            .partitions
            .borrow()
            .values()
            .filter(|p| p.log.config().compacts())
            .cloned()
            .collect();
        for p in parts {
            match p.log.compact(now_ms).await {
                Ok(o) if o.cleaned => tracing::info!(
                    partition = %p.tp,
                    bytes_before = o.bytes_before,
                    bytes_after = o.bytes_after,
                    records_removed = o.records_removed,
                    tombstones_removed = o.tombstones_removed,
                    "compacted"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(partition = %p.tp, error = %e, "compaction failed"),
            }
            glommio::executor().yield_if_needed().await;
        }
    }

    /// Clean shutdown: every log is flushed and marked clean so the next start skips recovery.
    async fn close_all(&self) {
        let parts: Vec<(TopicPartition, Rc<Partition>)> =
            self.partitions.borrow_mut().drain().collect();
        for (_, p) in &parts {
            p.retire();
        }
        for (tp, p) in parts {
            match sole_owner(p, CLOSE_TRIES).await {
                Ok(owned) => {
                    if let Err(e) = owned.log.close().await {
                        tracing::error!(partition = %tp, error = %e, "closing the log failed");
                    }
                }
                Err(_) => {
                    tracing::error!(partition = %tp, "partition still in use; not marked clean")
                }
            }
        }
        // Leaving replicas get as long to go as the others had to close.
        for _ in 0..CLOSE_TRIES {
            if self.deleting.borrow().is_empty() {
                return;
            }
            glommio::timer::sleep(RELEASE_POLL).await;
        }
        for dir in self.deleting.borrow().iter() {
            tracing::error!(dir = %dir.display(), "a leaving replica was still in use; its log was not deleted");
        }
    }
}

/// Rebuilds the groups and committed offsets of a `__consumer_offsets` partition from its log,
/// then lets it answer.
async fn replay_groups(p: &Partition) -> Result<(), String> {
    let end = p.log.log_end_offset();
    let mut offset = p.log.log_start_offset();
    let now = std::time::Instant::now();
    while offset < end {
        let read = p
            .log
            .read(offset, 1 << 20, end)
            .await
            .map_err(|e| e.to_string())?;
        if read.chunks.is_empty() || read.next_offset <= offset {
            break;
        }
        for chunk in read.chunks {
            let bytes = chunk.into_bytes();
            let mut store = p.groups.borrow_mut();
            crate::validate::for_each_record(&bytes, |key, value| {
                if let Some(key) = key {
                    store.apply_record(key, value, now);
                }
            })
            .map_err(|e| format!("corrupt batch: {e:?}"))?;
        }
        offset = read.next_offset;
        glommio::executor().yield_if_needed().await;
    }
    p.groups.borrow_mut().finish_load();
    Ok(())
}

/// Partitions a snapshot assigns to a shard that has not opened them yet.
type Opening<'a> = Vec<(
    TopicPartition,
    &'a TopicMeta,
    &'a PartitionMeta,
    EffectiveTopicConfig,
)>;

/// Waits (`RELEASE_POLL` a try, `tries` times) until no in-flight request holds the
/// partition; hands it back still shared if one does.
async fn sole_owner(p: Rc<Partition>, tries: u32) -> Result<Partition, Rc<Partition>> {
    let mut p = p;
    for _ in 0..tries {
        match Rc::try_unwrap(p) {
            Ok(owned) => return Ok(owned),
            Err(shared) => {
                p = shared;
                glommio::timer::sleep(RELEASE_POLL).await;
            }
        }
    }
    Err(p)
}

/// Waits as long as it takes until no in-flight request holds the partition, warning every
/// `RELEASE_WARN_EVERY`: a retired replica's requests end promptly, and one that does not is
/// stuck on its disk; its log must not be deleted under it.
async fn sole_owner_eventually(p: Rc<Partition>) -> Partition {
    let started = std::time::Instant::now();
    let tries = u32::try_from(RELEASE_WARN_EVERY.as_millis() / RELEASE_POLL.as_millis())
        .unwrap_or(u32::MAX);
    let mut p = p;
    loop {
        match sole_owner(p, tries).await {
            Ok(owned) => return owned,
            Err(shared) => {
                tracing::warn!(partition = %shared.tp, held_for = ?started.elapsed(), "a leaving replica is still in use; its log is deleted once it is released");
                p = shared;
            }
        }
    }
}

//! Multi-process cluster harness: `voters` controller voters and `brokers` broker-only nodes,
//! each a real `skein broker` process (a [`Broker`]) on 127.0.0.1, with ids 1..=n (voters first).
//!
//! Every node gets a free Kafka port, voters also a free internal (controller RPC) port that the
//! `[controller] voters` list of every node names, its own data dir and log, and its own CPU:
//! node i runs on CPU (i-1) % available. All nodes are launched before any is waited for, since a
//! node may wait for its controller quorum before it listens. Start-up then waits until every node
//! answers Metadata listing every broker. Dropping the [`Cluster`] SIGKILLs every node (on a
//! panic too, after printing each node's log tail).
//!
//! What the cluster looks like is read the way a client reads it: Metadata v12 on raw frames, so
//! that leader epochs, ISRs and the controller id are all visible ([`ClusterView`]).
//!
//! One cluster at a time runs in a test binary (a [`Cluster`] holds a process-wide lock): the
//! tests measure failover times, and two clusters would share the same few CPUs.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

use super::raw::try_roundtrip;
use super::{free_port, try_raw_connect, Broker, BrokerConfig, SpawnError, PORT_ATTEMPTS_MAX};

/// How long a new cluster may take until every node lists every broker.
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the survivors may take to agree on an active controller.
pub const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`Cluster::start_again`] waits for the old process to be fenced.
pub const FENCE_BEFORE_RESTART_MAX: Duration = Duration::from_secs(10);
/// Connect, write and read timeout of one Metadata request.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the `wait_*` helpers look again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Metadata version the harness speaks (leader epochs need v7+, v12 is the newest served).
const METADATA_VERSION: i16 = 12;
/// Log lines of each node in a failure message.
const LOG_TAIL_LINES: usize = 40;

/// The shape of a cluster to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Controller voters: nodes 1..=voters.
    pub voters: usize,
    /// Broker-only nodes after the voters: ids voters+1..=voters+brokers.
    pub brokers: usize,
    /// `[broker]` entries for every node, on top of [`BrokerConfig::default`]'s; TOML values.
    pub broker_settings: Vec<(String, String)>,
    /// Shards (CPUs) per node.
    pub shards_per_node: usize,
    /// Every node gets the same fresh `[controller] secret_file` (the internal listener's
    /// handshake); off, the internal listener is open.
    pub cluster_secret: bool,
}

impl Default for ClusterSpec {
    /// Three voters, no extra broker, default settings, one shard a node.
    fn default() -> Self {
        ClusterSpec {
            voters: 3,
            brokers: 0,
            broker_settings: Vec::new(),
            shards_per_node: 1,
            cluster_secret: true,
        }
    }
}

impl ClusterSpec {
    pub fn nodes(&self) -> usize {
        self.voters + self.brokers
    }

    /// Sets (or replaces) one `[broker]` entry of every node; `value` is TOML.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.broker_settings.retain(|(k, _)| k != key);
        self.broker_settings
            .push((key.to_string(), value.to_string()));
        self
    }
}

/// One partition as a Metadata answer shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub error_code: i16,
    /// -1 when there is none.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    pub error_code: i16,
    /// By partition index.
    pub partitions: BTreeMap<i32, PartitionView>,
}

impl TopicView {
    /// Partitions (indexes) led by `node`.
    pub fn led_by(&self, node: i32) -> Vec<i32> {
        self.partitions
            .iter()
            .filter(|(_, p)| p.leader == node)
            .map(|(i, _)| *i)
            .collect()
    }

    /// None when the topic has `partitions` partitions, each led by one of `live`; else what is
    /// missing.
    pub fn incomplete(&self, partitions: usize, live: &[i32]) -> Option<String> {
        if self.error_code != 0 {
            return Some(format!("topic error {}", self.error_code));
        }
        if self.partitions.len() != partitions {
            return Some(format!(
                "{} partitions, want {partitions}",
                self.partitions.len()
            ));
        }
        let leaderless: Vec<(i32, i32)> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.error_code != 0 || !live.contains(&p.leader))
            .map(|(i, p)| (*i, p.leader))
            .collect();
        if leaderless.is_empty() {
            None
        } else {
            Some(format!(
                "(partition, leader) without a live leader (live: {live:?}): {leaderless:?}"
            ))
        }
    }
}

/// A broker as Metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerView {
    pub host: String,
    pub port: i32,
}

/// One node's answer to Metadata v12 for all topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// By node id.
    pub brokers: BTreeMap<i32, BrokerView>,
    /// -1 when the node knows of none.
    pub controller_id: i32,
    /// By name.
    pub topics: BTreeMap<String, TopicView>,
}

impl ClusterView {
    pub fn broker_ids(&self) -> Vec<i32> {
        self.brokers.keys().copied().collect()
    }

    pub fn topic(&self, name: &str) -> Option<&TopicView> {
        self.topics.get(name)
    }

    /// (topic, partition) of every partition `node` leads.
    pub fn led_by(&self, node: i32) -> Vec<(String, i32)> {
        self.topics
            .iter()
            .flat_map(|(name, t)| t.led_by(node).into_iter().map(|p| (name.clone(), p)))
            .collect()
    }

    fn from_response(response: MetadataResponse) -> ClusterView {
        let brokers = response
            .brokers
            .into_iter()
            .map(|b| {
                let view = BrokerView {
                    host: b.host.to_string(),
                    port: b.port,
                };
                (b.node_id.0, view)
            })
            .collect();
        let topics = response
            .topics
            .into_iter()
            .map(|t| {
                let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let ids = |v: Vec<kafka_protocol::messages::BrokerId>| {
                            v.into_iter().map(|b| b.0).collect::<Vec<i32>>()
                        };
                        let view = PartitionView {
                            error_code: p.error_code,
                            leader: p.leader_id.0,
                            leader_epoch: p.leader_epoch,
                            replicas: ids(p.replica_nodes),
                            isr: ids(p.isr_nodes),
                            offline: ids(p.offline_replicas),
                        };
                        (p.partition_index, view)
                    })
                    .collect();
                let view = TopicView {
                    error_code: t.error_code,
                    partitions,
                };
                (name, view)
            })
            .collect();
        ClusterView {
            brokers,
            controller_id: response.controller_id.0,
            topics,
        }
    }
}

/// Running `skein` nodes that form (or are meant to form) one cluster.
pub struct Cluster {
    spec: ClusterSpec,
    /// `[controller] voters` of every node.
    voters: Vec<String>,
    /// Internal listener port of each voter, by id.
    internal_ports: BTreeMap<i32, u16>,
    /// Holds `cluster.secret` when the spec asks for one.
    secret_dir: tempfile::TempDir,
    /// In id order; extra nodes at the end.
    nodes: Vec<Broker>,
    /// Set once a failure message carried the logs, so that drop does not print them again.
    logs_printed: Cell<bool>,
    /// Held while this cluster lives; released after drop killed the nodes.
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Cluster {
    /// Starts `spec.voters + spec.brokers` nodes and waits until every one of them answers
    /// Metadata listing all of them; panics with every node's log tail when they don't within
    /// [`CLUSTER_READY_TIMEOUT`].
    pub fn start(spec: ClusterSpec) -> Cluster {
        assert!(spec.voters >= 1, "a cluster needs a controller voter");
        assert!(spec.shards_per_node >= 1, "a node needs a shard");
        for attempt in 1..=PORT_ATTEMPTS_MAX {
            let mut cluster = Cluster::launch(spec.clone());
            match cluster.await_listening() {
                Ok(()) => {
                    let ids = cluster.node_ids();
                    cluster.wait_until_all_list(&ids, CLUSTER_READY_TIMEOUT);
                    return cluster;
                }
                Err(node) => {
                    eprintln!("node {node}: a port was taken (attempt {attempt}); new ports");
                }
            }
        }
        panic!("no set of free ports found for the cluster");
    }

    /// Launches every node on fresh ports without waiting for any of them.
    fn launch(spec: ClusterSpec) -> Cluster {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        // A test that failed with a cluster poisons the lock; the next one may still run.
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let n = spec.nodes();
        let mut ports = distinct_free_ports(n + spec.voters).into_iter();
        let mut internal_ports = BTreeMap::new();
        for id in 1..=node_id(spec.voters) {
            internal_ports.insert(id, ports.next().expect("an internal port per voter"));
        }
        let voters = internal_ports
            .iter()
            .map(|(id, port)| format!("{id}@127.0.0.1:{port}"))
            .collect();
        let secret_dir = tempfile::tempdir().expect("a directory for the cluster secret");
        let secret: String = (0..4)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        std::fs::write(secret_dir.path().join("cluster.secret"), secret)
            .expect("write the cluster secret");
        let mut cluster = Cluster {
            spec,
            voters,
            internal_ports,
            secret_dir,
            nodes: Vec::with_capacity(n),
            logs_printed: Cell::new(false),
            _one_at_a_time: lock,
        };
        for id in 1..=node_id(n) {
            let mut node = Broker::new(cluster.node_config(id));
            node.quiet_drop = true;
            let port = ports.next().expect("a Kafka port per node");
            if let Err(SpawnError::Failed(why)) = node.launch(port) {
                node.fail(&why);
            }
            cluster.nodes.push(node);
        }
        cluster
    }

    /// Waits for every node's listening line; Err(node id) when one found a port taken.
    fn await_listening(&mut self) -> Result<(), i32> {
        for node in &mut self.nodes {
            match node.await_listening() {
                Ok(()) => {}
                Err(SpawnError::PortTaken) => return Err(node.node_id()),
                Err(SpawnError::Failed(why)) => {
                    let id = node.node_id();
                    self.fail(&format!("could not start the cluster: node {id}: {why}"));
                }
            }
        }
        Ok(())
    }

    /// The config of node `id`: a voter when `id` has an internal port, else a broker only.
    fn node_config(&self, id: i32) -> BrokerConfig {
        let mut config = BrokerConfig::default().shards(&self.cpus_of(id));
        for (key, value) in &self.spec.broker_settings {
            config = config.set(key, value);
        }
        config.node_id = id;
        config.internal_port = self.internal_ports.get(&id).copied();
        config.voters = self.voters.clone();
        config.secret_file = self.spec.cluster_secret.then(|| self.secret_file());
        config
    }

    /// The cluster secret every node is given (when the spec asks for one).
    pub fn secret_file(&self) -> PathBuf {
        self.secret_dir.path().join("cluster.secret")
    }

    /// The internal listener port of voter `id`.
    pub fn internal_port(&self, id: i32) -> Option<u16> {
        self.internal_ports.get(&id).copied()
    }

    /// `[cores] shards` of node `id`: `shards_per_node` CPUs from CPU (id-1)*shards on, wrapping
    /// around the CPUs this process may use.
    fn cpus_of(&self, id: i32) -> String {
        let available = available_cpus();
        let count = self.spec.shards_per_node.min(available.len());
        let first = usize::try_from(id - 1).expect("node ids start at 1") * count;
        let cpus: Vec<String> = (0..count)
            .map(|j| available[(first + j) % available.len()].to_string())
            .collect();
        cpus.join(",")
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// Every node's id, running or not, in start order.
    pub fn node_ids(&self) -> Vec<i32> {
        self.nodes.iter().map(Broker::node_id).collect()
    }

    /// Ids of the voters.
    pub fn voter_ids(&self) -> Vec<i32> {
        self.internal_ports.keys().copied().collect()
    }

    /// Ids of the nodes whose process is alive (a SIGSTOPped one counts).
    pub fn running_ids(&mut self) -> Vec<i32> {
        self.nodes
            .iter_mut()
            .filter_map(|n| n.is_running().then(|| n.node_id()))
            .collect()
    }

    /// Ids of the running nodes other than `id`: the survivors once `id` is killed.
    pub fn running_except(&mut self, id: i32) -> Vec<i32> {
        let mut ids = self.running_ids();
        ids.retain(|n| *n != id);
        ids
    }

    /// The node with id `id`: kill9, sigstop, sigcont, stop, start_again, restart, is_running,
    /// log_tail, addr and port are [`Broker`]'s.
    pub fn node(&mut self, id: i32) -> &mut Broker {
        self.nodes
            .iter_mut()
            .find(|n| n.node_id() == id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    fn node_ref(&self, id: i32) -> &Broker {
        self.nodes
            .iter()
            .find(|n| n.node_id() == id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    /// `bootstrap.servers` naming every node.
    pub fn bootstrap(&self) -> String {
        let addrs: Vec<String> = self.nodes.iter().map(Broker::bootstrap).collect();
        addrs.join(",")
    }

    /// Starts node `id` again after kill9/stop (same data dir and internal port, the same Kafka
    /// port when it is free) and waits until every running node lists it.
    ///
    /// First it waits (up to [`FENCE_BEFORE_RESTART_MAX`]) until no running node lists `id` any
    /// more: while the old process's session lasts, a new one claiming `id` may be refused as a
    /// duplicate. `self.node(id).start_again()` restarts at once.
    pub fn start_again(&mut self, id: i32) {
        let start = Instant::now();
        let mut listed_by = self.running_except(id);
        while !listed_by.is_empty() && start.elapsed() < FENCE_BEFORE_RESTART_MAX {
            listed_by.retain(|&n| {
                self.try_metadata(n)
                    .map_or(true, |view| view.brokers.contains_key(&id))
            });
            std::thread::sleep(POLL_INTERVAL);
        }
        if !listed_by.is_empty() {
            eprintln!(
                "nodes {listed_by:?} still list node {id} after {FENCE_BEFORE_RESTART_MAX:?}; \
                 restarting it anyway"
            );
        }
        self.node(id).start_again();
        let running = self.running_ids();
        self.wait_until_all_list(&running, CLUSTER_READY_TIMEOUT);
    }

    /// Adds a broker-only node `id` (same voters) and waits until every running node lists it.
    pub fn start_extra_node(&mut self, id: i32) -> &mut Broker {
        assert!(
            !self.node_ids().contains(&id),
            "node {id} exists; use launch_extra_node for a duplicate"
        );
        let mut node = Broker::new(self.node_config(id));
        node.quiet_drop = true;
        node.spawn_on_free_port();
        self.nodes.push(node);
        let running = self.running_ids();
        self.wait_until_all_list(&running, CLUSTER_READY_TIMEOUT);
        self.node(id)
    }

    /// Launches one more process as node `id` (a broker only, the cluster's voters, its own data
    /// dir and Kafka port) and returns at once, without waiting for it to listen: for a process
    /// that is expected to be refused. The caller owns it; dropping it SIGKILLs it.
    pub fn launch_extra_node(&self, id: i32) -> Broker {
        let mut config = self.node_config(id);
        config.internal_port = None;
        let mut node = Broker::new(config);
        if let Err(SpawnError::Failed(why)) = node.launch(free_port()) {
            node.fail(&why);
        }
        node
    }

    /// [`Cluster::launch_extra_node`] with another `[controller] secret_file`.
    pub fn launch_extra_node_with_secret(&self, id: i32, secret: &std::path::Path) -> Broker {
        let mut config = self.node_config(id);
        config.internal_port = None;
        config.secret_file = Some(secret.to_path_buf());
        let mut node = Broker::new(config);
        if let Err(SpawnError::Failed(why)) = node.launch(free_port()) {
            node.fail(&why);
        }
        node
    }

    /// Metadata v12 (all topics) from node `id`; panics when it does not answer.
    pub fn metadata(&self, id: i32) -> ClusterView {
        self.try_metadata(id)
            .unwrap_or_else(|e| panic!("Metadata from node {id}: {e}"))
    }

    /// Metadata v12 (all topics) from node `id`, each step bounded by [`METADATA_TIMEOUT`].
    pub fn try_metadata(&self, id: i32) -> Result<ClusterView, String> {
        static CORRELATION_ID: AtomicI32 = AtomicI32::new(1);
        let addr = self.node_ref(id).addr();
        let mut stream =
            try_raw_connect(addr, METADATA_TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
        let request = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        let correlation_id = CORRELATION_ID.fetch_add(1, Ordering::Relaxed);
        let response: MetadataResponse = try_roundtrip(
            &mut stream,
            ApiKey::Metadata,
            METADATA_VERSION,
            correlation_id,
            &request,
        )?;
        Ok(ClusterView::from_response(response))
    }

    /// Metadata from each of `ids`, in that order; Err names the first that did not answer.
    pub fn try_views(&self, ids: &[i32]) -> Result<Vec<(i32, ClusterView)>, String> {
        ids.iter()
            .map(|&id| {
                self.try_metadata(id)
                    .map(|v| (id, v))
                    .map_err(|e| format!("node {id}: {e}"))
            })
            .collect()
    }

    /// Polls `check` every [`POLL_INTERVAL`] until it returns true; on timeout panics with `what`
    /// and every node's log tail.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&mut Cluster) -> bool,
    ) {
        self.wait_for(timeout, what, |c| {
            if check(c) {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        });
    }

    /// Polls `check` every [`POLL_INTERVAL`] until it returns Ok, and returns that; on timeout
    /// panics with `what`, the last Err (what was seen instead) and every node's log tail.
    pub fn wait_for<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&mut Cluster) -> Result<T, String>,
    ) -> T {
        let start = Instant::now();
        loop {
            let last = match check(self) {
                Ok(value) => return value,
                Err(last) => last,
            };
            if start.elapsed() > timeout {
                self.fail(&format!(
                    "timed out after {timeout:?} waiting until {what}\nlast seen: {last}"
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Panics with `why` and every node's log tail.
    pub fn fail(&self, why: &str) -> ! {
        self.logs_printed.set(true);
        panic!("{why}\n{}", logs_of(&self.nodes));
    }

    /// Waits until every running node names the same active controller, itself a running node,
    /// and returns its id.
    pub fn active_controller(&mut self) -> i32 {
        self.wait_for(
            CONTROLLER_TIMEOUT,
            "the running nodes agree on a running active controller",
            |c| {
                let running = c.running_ids();
                let views = c.try_views(&running)?;
                let ids: BTreeSet<i32> = views.iter().map(|(_, v)| v.controller_id).collect();
                match ids.iter().collect::<Vec<_>>().as_slice() {
                    [id] if running.contains(id) => Ok(**id),
                    _ => Err(format!(
                        "controller ids (node, controller): {:?}",
                        views
                            .iter()
                            .map(|(n, v)| (*n, v.controller_id))
                            .collect::<Vec<_>>()
                    )),
                }
            },
        )
    }

    /// (topic, partition) of every partition `id` leads, as the first running node other than
    /// `id` that answers sees it (`id` itself when it is the only one).
    pub fn leaders_of(&mut self, id: i32) -> Vec<(String, i32)> {
        let mut running = self.running_ids();
        running.sort_by_key(|n| *n == id);
        for node in running {
            if let Ok(view) = self.try_metadata(node) {
                return view.led_by(id);
            }
        }
        panic!("no running node answers Metadata");
    }

    /// Waits until every running node lists `topic` with `partitions` partitions, each led by
    /// a running node, all views of it agreeing; returns one of them.
    pub fn wait_for_topic(&mut self, topic: &str, partitions: usize) -> TopicView {
        self.wait_for(
            CLUSTER_READY_TIMEOUT,
            &format!("every running node shows {topic} with {partitions} led partitions"),
            |c| {
                let running = c.running_ids();
                let views = c.try_views(&running)?;
                agreed_topic(&views, topic)?
                    .ok_or_else(|| format!("{topic} is not listed"))
                    .and_then(|t| match t.incomplete(partitions, &running) {
                        None => Ok(t),
                        Some(why) => Err(why),
                    })
            },
        )
    }

    /// Waits until each of the running nodes answers Metadata and lists exactly `ids`.
    pub fn wait_until_all_list(&mut self, ids: &[i32], timeout: Duration) {
        let want: BTreeSet<i32> = ids.iter().copied().collect();
        self.wait_for(
            timeout,
            &format!("every running node lists brokers {want:?}"),
            |c| {
                let running = c.running_ids();
                if let Some(gone) = want.iter().find(|id| !running.contains(id)) {
                    let status = c.node(*gone).exit_status();
                    c.fail(&format!("node {gone} is not running (exit: {status:?})"));
                }
                let views = c.try_views(&running)?;
                let wrong: Vec<(i32, Vec<i32>)> = views
                    .iter()
                    .filter(|(_, v)| v.brokers.keys().copied().collect::<BTreeSet<_>>() != want)
                    .map(|(n, v)| (*n, v.broker_ids()))
                    .collect();
                if wrong.is_empty() {
                    Ok(())
                } else {
                    Err(format!("(node, brokers listed): {wrong:?}"))
                }
            },
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.logs_printed.get() {
            eprintln!("{}", logs_of(&self.nodes));
        }
        for node in &mut self.nodes {
            node.kill9();
        }
    }
}

/// The topic as every view shows it: Ok(None) when no view lists it, Err when views differ.
pub fn agreed_topic(
    views: &[(i32, ClusterView)],
    topic: &str,
) -> Result<Option<TopicView>, String> {
    let Some((first_node, first)) = views.first() else {
        return Err("no view".into());
    };
    let first_topic = first.topic(topic);
    for (node, view) in &views[1..] {
        if view.topic(topic) != first_topic {
            return Err(format!(
                "views of {topic} differ: node {first_node}: {first_topic:?}; node {node}: {:?}",
                view.topic(topic)
            ));
        }
    }
    Ok(first_topic.cloned())
}

/// Every node's log tail, one block a node, for failure messages.
fn logs_of(nodes: &[Broker]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "----- node {} ({}), last lines -----\n{}\n",
                n.node_id(),
                n.log_path().display(),
                n.log_tail(LOG_TAIL_LINES)
            )
        })
        .collect()
}

fn node_id(index: usize) -> i32 {
    i32::try_from(index).expect("node id fits i32")
}

/// `count` ports of 127.0.0.1, free and pairwise distinct when this returned.
/// `voters` controller voters and then `brokers` broker-only nodes on 127.0.0.1, for configs
/// the [`Cluster`] harness does not make (its readiness checks speak PLAINTEXT): node `id` runs
/// `config(id)` with its id, the voter list and (a voter's) internal port filled in. All are
/// launched before any is awaited, since a voter does not listen before a quorum exists.
pub fn start_quorum(
    voters: i32,
    brokers: i32,
    config: impl Fn(i32) -> BrokerConfig,
) -> Vec<Broker> {
    let ports = distinct_free_ports(usize::try_from(voters).expect("a positive count"));
    let voter_list: Vec<String> = (1..=voters)
        .zip(&ports)
        .map(|(id, port)| format!("{id}@127.0.0.1:{port}"))
        .collect();
    let mut nodes: Vec<Broker> = (1..=voters + brokers)
        .map(|id| {
            let mut c = config(id);
            c.node_id = id;
            c.internal_port = usize::try_from(id - 1)
                .ok()
                .and_then(|i| ports.get(i))
                .copied();
            c.voters = voter_list.clone();
            Broker::launch_with(c)
        })
        .collect();
    for node in &mut nodes {
        node.await_started();
    }
    nodes
}

fn distinct_free_ports(count: usize) -> Vec<u16> {
    let mut ports = BTreeSet::new();
    while ports.len() < count {
        ports.insert(free_port());
    }
    ports.into_iter().collect()
}

/// The CPUs this process may run on (its affinity mask), in order.
fn available_cpus() -> Vec<usize> {
    let mut cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if cpus.is_empty() {
        cpus.push(0);
    }
    cpus.sort_unstable();
    cpus
}

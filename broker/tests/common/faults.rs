//! Fault-injection harness (issue #6): a [`Cluster`] of real `skein` processes, a topic with
//! replication factor 3 and `min.insync.replicas` 2, and real librdkafka clients producing
//! (idempotent, acks=all) and consuming through a fault the scenario injects; afterwards the
//! invariants of DESIGN.md "Tests" are checked and reported as one [`Verdict`].
//!
//! A scenario reads:
//! ```ignore
//! let mut run = FaultRun::new("kill -9 of a leader");
//! run.start_workload();                  // and lets it run `schedule.warmup`
//! let victim = run.busiest_leader();
//! run.mark("fault");
//! run.cluster.node(victim).kill9();
//! run.await_moved_off(victim);
//! run.cluster.start_again(victim);
//! run.await_recovered();                 // every node back, every partition led
//! run.finish().assert_passed();          // settle, stop, final read, stop the cluster, check
//! ```
//!
//! Checks ([`verify`]): every acknowledged record is read back at its acknowledged offset; no
//! gap, reordering or duplicate in the final read; the high watermark never goes backwards
//! (ListOffsets every 200 ms and the consumer's Fetch answers); every record the tailing
//! consumer read is still there; once the cluster stopped cleanly, every replica of each
//! partition holds the same batches byte for byte; and the producer made progress after the
//! cluster recovered.
//!
//! One scenario at a time: [`Cluster`] holds a process-wide lock for its life, so a plain
//! `cargo test` runs the scenarios of a test binary one after the other.
//!
//! Environment: `SKEIN_FAULTS_LONG=1` runs more rounds with longer phases ([`Schedule`]);
//! `SKEIN_FAULTS_MIN_INSYNC=N` overrides the topic's `min.insync.replicas` (2), e.g. 1 to watch
//! the checks catch lost records on a broker that does not replicate yet.

pub mod netsplit;
pub mod segments;
pub mod verify;
pub mod workload;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use super::clients::{block_on, client_config_at};
use super::cluster::{agreed_topic, Cluster, ClusterSpec, TopicView};
use super::STOP_TIMEOUT;
use verify::Verdict;
use workload::{read_all, Workload};

pub const TOPIC: &str = "faults";
pub const PARTITIONS: i32 = 6;
pub const REPLICATION_FACTOR: i32 = 3;
/// The topic's `min.insync.replicas` unless `SKEIN_FAULTS_MIN_INSYNC` says otherwise.
pub const MIN_INSYNC_REPLICAS: u32 = 2;
/// `broker.session.timeout.ms` (the default, set explicitly: the SIGSTOP and partition
/// scenarios hold their fault longer than this).
pub const SESSION_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long the cluster may take to recover after a fault (nodes listed, partitions led).
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the final read may take.
pub const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines of a node that did not stop cleanly, in the report.
const STOP_LOG_LINES: usize = 15;
/// How long a leadership may take to move off a dead, stopped or cut-off broker.
pub const MOVE_TIMEOUT: Duration = Duration::from_secs(15);

/// How long each phase of a scenario lasts, and how many times the fault repeats.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Workload before the first fault.
    pub warmup: Duration,
    /// How long a fault lasts (killed, stopped or cut off) before the node comes back; at
    /// least twice the session timeout, so that the broker is fenced meanwhile.
    pub hold: Duration,
    /// Workload after the last recovery.
    pub settle: Duration,
    pub rounds: usize,
}

impl Schedule {
    /// Short by default (each scenario well under a minute); `SKEIN_FAULTS_LONG=1` for long.
    pub fn from_env() -> Schedule {
        if is_long() {
            Schedule {
                warmup: Duration::from_secs(5),
                hold: Duration::from_secs(5),
                settle: Duration::from_secs(5),
                rounds: 5,
            }
        } else {
            Schedule {
                warmup: Duration::from_secs(3),
                hold: SESSION_TIMEOUT * 2,
                settle: Duration::from_secs(3),
                rounds: 1,
            }
        }
    }
}

pub fn is_long() -> bool {
    std::env::var("SKEIN_FAULTS_LONG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The topic's `min.insync.replicas`.
pub fn min_insync_replicas() -> u32 {
    std::env::var("SKEIN_FAULTS_MIN_INSYNC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MIN_INSYNC_REPLICAS)
}

/// Three voters, one shard each, the session timeout the scenarios are timed against.
pub fn cluster_spec() -> ClusterSpec {
    ClusterSpec::default()
        .set(
            "broker.session.timeout.ms",
            &SESSION_TIMEOUT.as_millis().to_string(),
        )
        .set("broker.heartbeat.interval.ms", "250")
        // The consumers' groups only look up their coordinator, which creates
        // `__consumer_offsets`; a few partitions keep that cheap on a small box.
        .set("offsets.topic.num.partitions", "3")
}

/// Creates [`TOPIC`] (RF 3, `min.insync.replicas`) through the admin client.
fn create_topic(bootstrap: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client_config_at(bootstrap, &[])
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let min_insync = min_insync_replicas().to_string();
    let topic = NewTopic::new(
        TOPIC,
        PARTITIONS,
        TopicReplication::Fixed(REPLICATION_FACTOR),
    )
    .set("min.insync.replicas", &min_insync);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(15)));
    let results = block_on(admin.create_topics([&topic], &options))
        .map_err(|e| format!("CreateTopics: {e}"))?;
    for result in results {
        result.map_err(|(name, code)| format!("CreateTopics {name}: {code:?}"))?;
    }
    Ok(())
}

/// One scenario: the cluster, the topic and (once started) the workload.
pub struct FaultRun {
    pub cluster: Cluster,
    pub schedule: Schedule,
    scenario: String,
    workload: Option<Workload>,
    started: Instant,
}

impl FaultRun {
    /// Starts the cluster and creates the topic; the workload is not running yet.
    pub fn new(scenario: &str) -> FaultRun {
        let schedule = Schedule::from_env();
        // Waits here while another scenario holds the cluster lock; the clock starts after.
        let mut cluster = Cluster::start(cluster_spec());
        let started = Instant::now();
        if let Err(e) = create_topic(&cluster.bootstrap()) {
            cluster.fail(&format!("scenario {scenario}: {e}"));
        }
        cluster.wait_for_topic(TOPIC, PARTITIONS as usize);
        println!(
            "scenario {scenario}: cluster up, topic {TOPIC} ({PARTITIONS} partitions, RF \
             {REPLICATION_FACTOR}, min.insync.replicas {}) after {:?}; schedule {schedule:?}",
            min_insync_replicas(),
            started.elapsed()
        );
        FaultRun {
            cluster,
            schedule,
            scenario: scenario.to_string(),
            workload: None,
            started,
        }
    }

    pub fn scenario(&self) -> &str {
        &self.scenario
    }

    /// Starts producing and consuming, and lets it run for `schedule.warmup`.
    pub fn start_workload(&mut self) {
        let workload = Workload::start(&self.cluster.bootstrap(), TOPIC, PARTITIONS);
        std::thread::sleep(self.schedule.warmup);
        self.say(&format!(
            "warmed up: {} records acknowledged in {:?}",
            workload.acknowledged(),
            self.schedule.warmup
        ));
        self.workload = Some(workload);
    }

    pub fn workload(&self) -> &Workload {
        self.workload
            .as_ref()
            .expect("start_workload comes before the faults")
    }

    /// Notes a moment in the workload's log and prints it.
    pub fn mark(&self, label: &str) {
        if let Some(w) = &self.workload {
            w.mark(label);
        }
        self.say(label);
    }

    /// Prints one progress line of this scenario.
    pub fn say(&self, what: &str) {
        let acked = self.workload.as_ref().map_or(0, Workload::acknowledged);
        println!(
            "scenario {} [{:>6.1?}, {acked} acked]: {what}",
            self.scenario,
            self.started.elapsed()
        );
    }

    /// The topic as every running node shows it, once each partition has a running leader.
    pub fn topic(&mut self) -> TopicView {
        self.cluster.wait_for_topic(TOPIC, PARTITIONS as usize)
    }

    /// The node leading the most partitions, preferring one that is not the active controller
    /// (so that a fault on it is a leader fault alone).
    pub fn busiest_leader(&mut self) -> i32 {
        let topic = self.topic();
        let controller = self.cluster.active_controller();
        let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
        for p in topic.partitions.values() {
            *counts.entry(p.leader).or_default() += 1;
        }
        counts
            .into_iter()
            .max_by_key(|(node, count)| (*node != controller, *count, -node))
            .map(|(node, _)| node)
            .expect("the topic has led partitions")
    }

    /// Waits until the nodes other than `victim` agree that it leads no partition, every one
    /// led by one of them; returns how long that took.
    pub fn await_moved_off(&mut self, victim: i32) -> Duration {
        let start = Instant::now();
        let mut others = self.cluster.node_ids();
        others.retain(|n| *n != victim);
        self.cluster.wait_for(
            MOVE_TIMEOUT,
            &format!("every partition of {TOPIC} led by a node other than {victim}"),
            |c| {
                let running: Vec<i32> = c
                    .running_ids()
                    .into_iter()
                    .filter(|n| others.contains(n))
                    .collect();
                let views = c.try_views(&running)?;
                let topic = agreed_topic(&views, TOPIC)?.ok_or("the topic is not listed")?;
                match topic.incomplete(PARTITIONS as usize, &running) {
                    None => Ok(()),
                    Some(why) => Err(why),
                }
            },
        );
        let took = start.elapsed();
        self.say(&format!(
            "leaderships moved off node {victim} after {took:?}"
        ));
        took
    }

    /// Waits until every node runs and is listed by every node and every partition is led,
    /// then marks "recovered".
    pub fn await_recovered(&mut self) {
        let start = Instant::now();
        let all = self.cluster.node_ids();
        self.cluster.wait_until_all_list(&all, RECOVERY_TIMEOUT);
        self.topic();
        if let Some(w) = &self.workload {
            w.mark("recovered");
        }
        self.say(&format!("recovered after {:?}", start.elapsed()));
    }

    /// Stops the workload at once and returns what it saw, for a test that checks it itself.
    pub fn stop_workload(&mut self) -> workload::WorkloadLog {
        self.workload
            .take()
            .expect("start_workload comes before stop_workload")
            .stop()
    }

    /// Lets the workload run `schedule.settle` more, stops it, reads every partition, stops
    /// the cluster cleanly, compares the replicas on disk and checks everything; prints the
    /// report and returns it. The run stays alive so that a failed assertion on the verdict
    /// still prints every node's log (the cluster does when it is dropped in a panic).
    pub fn finish(&mut self) -> Verdict {
        self.finish_with_log().0
    }

    /// [`FaultRun::finish`], also returning the workload's log for a test's own measurements.
    pub fn finish_with_log(&mut self) -> (Verdict, workload::WorkloadLog) {
        std::thread::sleep(self.schedule.settle);
        self.say("stopping the workload");
        let log = self.stop_workload();
        let mut verdict = Verdict::new(&self.scenario, &log);
        verify::check_progress(&mut verdict, &log);

        let topic = self.cluster.wait_for_topic(TOPIC, PARTITIONS as usize);
        let read = read_all(
            &self.cluster.bootstrap(),
            TOPIC,
            PARTITIONS,
            FINAL_READ_TIMEOUT,
        );
        if let Some(why) = &read.incomplete {
            verdict.problem(format!("final read: {why}"));
        }
        verify::check_final_read(&mut verdict, &log, &read.records);
        verify::check_watermarks(&mut verdict, &log, &read.high_watermarks);

        self.stop_cluster(&mut verdict);
        let replicas = self.read_replicas(&topic);
        verify::check_replicas(&mut verdict, &replicas);
        println!("{}", verdict.report());
        (verdict, log)
    }

    /// SIGTERMs every running node at once (so that each one's controlled shutdown still finds
    /// a controller quorum) and waits for each; a node that does not exit cleanly is a problem.
    fn stop_cluster(&mut self, verdict: &mut Verdict) {
        let running = self.cluster.running_ids();
        for id in &running {
            self.cluster.node(*id).sigterm();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for id in running {
            let node = self.cluster.node(id);
            let status = loop {
                match node.exit_status() {
                    Some(status) => break Some(status),
                    None if Instant::now() > deadline => break None,
                    None => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            let why = match status {
                Some(s) if s.success() => None,
                Some(s) => Some(format!("node {id} exited with {s} on SIGTERM")),
                None => Some(format!(
                    "node {id} did not stop within {STOP_TIMEOUT:?} of SIGTERM (killed)"
                )),
            };
            if let Some(why) = why {
                let tail = node.log_tail(STOP_LOG_LINES);
                verdict.problem(format!("{why}; its last log lines:\n{tail}"));
            }
            node.stop();
        }
    }

    /// Every replica's log on disk, by partition, per the replica lists of `topic`.
    fn read_replicas(&mut self, topic: &TopicView) -> verify::Replicas {
        let mut replicas = BTreeMap::new();
        for (partition, view) in &topic.partitions {
            let logs = view
                .replicas
                .iter()
                .map(|node| {
                    let dir = self
                        .cluster
                        .node(*node)
                        .data_dir()
                        .join(format!("{TOPIC}-{partition}"));
                    (*node, segments::read_replica(&dir))
                })
                .collect();
            replicas.insert(*partition, logs);
        }
        replicas
    }
}

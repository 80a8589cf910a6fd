//! Broker metrics. Each shard counts into its own [`ShardMetrics`] (plain `Cell`s, no locks or
//! atomics on the request path); a scrape asks every shard for a [`ShardSnapshot`] over the
//! data mesh and renders them all, labelled by shard, on the shard serving the metrics
//! listener (the controller shard). [`http`] serves `/metrics`, `/health` and `/ready`.

pub mod encode;
pub mod http;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use crate::shard::ids::ShardId;
use crate::shard::Shard;
use encode::{HistogramValue, Kind, TextEncoder};

/// Slots for per-API statistics, indexed by API key; Kafka's keys are below 100 today. A key
/// past the end is counted in no slot (such an API is never dispatched: it would not decode).
pub const API_KEY_SLOTS: usize = 128;

/// Request duration bucket bounds (inclusive), in nanoseconds: 100 µs to 10 s, roughly 1-2.5-5
/// per decade, covering an in-memory produce up to a long-polling fetch.
pub const DURATION_BOUNDS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
/// The bounds plus the +Inf overflow bucket.
const DURATION_BUCKETS: usize = DURATION_BOUNDS_NS.len() + 1;

const _: () = assert!(API_KEY_SLOTS <= i16::MAX as usize);

/// One API's request count and duration histogram on one shard.
#[derive(Default)]
struct ApiStats {
    /// Per bucket, not cumulative; the last is the +Inf overflow. Their total is the count.
    buckets: [Cell<u64>; DURATION_BUCKETS],
    duration_sum_ns: Cell<u64>,
}

/// One shard's counters. Lives in its `Shard` and is only touched from that shard's thread.
pub struct ShardMetrics {
    apis: Box<[ApiStats]>,
    network_received_bytes: Cell<u64>,
    network_sent_bytes: Cell<u64>,
    /// Error code -> partitions answered with it (error paths only, so a map is fine).
    produce_errors: RefCell<BTreeMap<i16, u64>>,
    fetch_errors: RefCell<BTreeMap<i16, u64>>,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            apis: (0..API_KEY_SLOTS).map(|_| ApiStats::default()).collect(),
            network_received_bytes: Cell::new(0),
            network_sent_bytes: Cell::new(0),
            produce_errors: RefCell::new(BTreeMap::new()),
            fetch_errors: RefCell::new(BTreeMap::new()),
        }
    }
}

impl ShardMetrics {
    /// One request handled: `received_bytes` read (size prefix included), `sent_bytes` written
    /// back, `elapsed` from the frame being read to the answer being ready.
    pub fn record_request(
        &self,
        api: ApiKey,
        elapsed: Duration,
        received_bytes: usize,
        sent_bytes: usize,
    ) {
        add(&self.network_received_bytes, to_u64(received_bytes));
        add(&self.network_sent_bytes, to_u64(sent_bytes));
        let Some(stats) = usize::try_from(api as i16)
            .ok()
            .and_then(|i| self.apis.get(i))
        else {
            return;
        };
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = DURATION_BOUNDS_NS.partition_point(|bound| *bound < ns);
        if let Some(b) = stats.buckets.get(bucket) {
            add(b, 1);
        }
        add(&stats.duration_sum_ns, ns);
    }

    /// A partition of a Produce answered with `error`.
    pub fn produce_error(&self, error: ResponseError) {
        *self
            .produce_errors
            .borrow_mut()
            .entry(error.code())
            .or_insert(0) += 1;
    }

    /// A partition of a Fetch answered with `error`.
    pub fn fetch_error(&self, error: ResponseError) {
        *self
            .fetch_errors
            .borrow_mut()
            .entry(error.code())
            .or_insert(0) += 1;
    }
}

fn add(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// One API's numbers in a snapshot.
#[derive(Debug, Clone)]
pub struct ApiSnapshot {
    pub api: ApiKey,
    pub buckets: [u64; DURATION_BUCKETS],
    pub duration_sum_ns: u64,
}

impl ApiSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// One partition replica as its owning shard sees it.
#[derive(Debug, Clone)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub size_bytes: u64,
    pub is_leader: bool,
    pub leader_epoch: i32,
    pub replicas: usize,
    pub in_sync_replicas: usize,
    pub isr_shrinks: u64,
    pub isr_expands: u64,
}

/// Everything one shard reports to a scrape; plain data, so it crosses shards.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    pub shard: ShardId,
    pub apis: Vec<ApiSnapshot>,
    pub network_received_bytes: u64,
    pub network_sent_bytes: u64,
    pub produce_errors: Vec<(i16, u64)>,
    pub fetch_errors: Vec<(i16, u64)>,
    pub partitions: Vec<PartitionSnapshot>,
    pub tail_cache_hits: u64,
    pub tail_cache_misses: u64,
    pub tail_cache_used_bytes: usize,
    /// glommio's executor statistics: time spent running tasks, and how many ran.
    pub busy: Duration,
    pub tasks_executed: u64,
}

/// The controller voter's state, on a node that hosts one.
#[derive(Debug, Clone)]
pub struct ControllerSnapshot {
    pub active: bool,
    pub raft_term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Partitions without a leader, cluster-wide (reported by the active controller only,
    /// as Kafka does, so a sum over brokers counts each once).
    pub offline_partitions: Option<usize>,
}

/// Node-wide state the scrape shard adds to the shards' snapshots.
#[derive(Debug, Clone)]
pub struct NodeSnapshot {
    pub ready: bool,
    pub controller: Option<ControllerSnapshot>,
    /// Shards that did not answer the scrape in time (their numbers are missing).
    pub shards_unanswered: usize,
}

impl Shard {
    /// This shard's numbers now (runs on this shard).
    pub fn metrics_snapshot(&self) -> ShardSnapshot {
        let m = &self.metrics;
        let apis = m
            .apis
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let api = ApiKey::try_from(i16::try_from(i).ok()?).ok()?;
                let buckets: [u64; DURATION_BUCKETS] =
                    std::array::from_fn(|b| s.buckets.get(b).map_or(0, Cell::get));
                let snapshot = ApiSnapshot {
                    api,
                    buckets,
                    duration_sum_ns: s.duration_sum_ns.get(),
                };
                (snapshot.count() > 0).then_some(snapshot)
            })
            .collect();
        let partitions = self
            .partitions()
            .iter()
            .map(|p| {
                let (replicas, in_sync_replicas) = p.replica_counts();
                PartitionSnapshot {
                    topic: p.tp.topic.to_string(),
                    partition: p.tp.partition,
                    log_start_offset: p.log.log_start_offset(),
                    log_end_offset: p.log.log_end_offset(),
                    high_watermark: p.log.high_watermark(),
                    size_bytes: p.log.size_bytes(),
                    is_leader: p.is_leader(),
                    leader_epoch: p.leader_epoch(),
                    replicas,
                    in_sync_replicas,
                    isr_shrinks: p.isr_changes.shrinks.get(),
                    isr_expands: p.isr_changes.expands.get(),
                }
            })
            .collect();
        let cache = self.tail_cache_stats();
        let executor = glommio::executor().executor_stats();
        ShardSnapshot {
            shard: self.id,
            apis,
            network_received_bytes: m.network_received_bytes.get(),
            network_sent_bytes: m.network_sent_bytes.get(),
            produce_errors: m
                .produce_errors
                .borrow()
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect(),
            fetch_errors: m
                .fetch_errors
                .borrow()
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect(),
            partitions,
            tail_cache_hits: cache.hits,
            tail_cache_misses: cache.misses,
            tail_cache_used_bytes: cache.used_bytes,
            busy: executor.executor_runtime(),
            tasks_executed: executor.tasks_executed(),
        }
    }
}

/// How long a scrape waits for one shard's snapshot; a stuck shard must not hang the scrape.
pub const SHARD_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks every shard (this one included) for its snapshot; shards that do not answer within
/// [`SHARD_SNAPSHOT_TIMEOUT`] are left out and counted.
pub async fn collect(shard: &std::rc::Rc<Shard>) -> (Vec<ShardSnapshot>, usize) {
    let asks = (0..shard.shard_count())
        .filter_map(|i| u16::try_from(i).ok().map(ShardId))
        .map(|target| async move {
            let ask = shard.invoke_on(target, |s| async move { s.metrics_snapshot() });
            glommio::timer::timeout(SHARD_SNAPSHOT_TIMEOUT, async { Ok(ask.await) })
                .await
                .ok()
                .flatten()
        });
    let answers = futures_util::future::join_all(asks).await;
    let unanswered = answers.iter().filter(|a| a.is_none()).count();
    (answers.into_iter().flatten().collect(), unanswered)
}

/// The whole scrape answer in text format 0.0.4.
pub fn render(shards: &[ShardSnapshot], node: &NodeSnapshot) -> String {
    let mut e = TextEncoder::new();
    let labels: Vec<String> = shards.iter().map(|s| s.shard.0.to_string()).collect();
    render_requests(&mut e, shards, &labels);
    render_shard_counters(&mut e, shards, &labels);
    render_errors(&mut e, shards, &labels);
    render_partitions(&mut e, shards, &labels);
    render_node(&mut e, node);
    e.finish()
}

/// Seconds of each duration bucket bound, as the `le` labels show them.
fn duration_bounds_seconds() -> [f64; DURATION_BOUNDS_NS.len()] {
    // Exact for these bounds: each is a whole number of microseconds.
    DURATION_BOUNDS_NS.map(|ns| Duration::from_nanos(ns).as_secs_f64())
}

fn render_requests(e: &mut TextEncoder, shards: &[ShardSnapshot], labels: &[String]) {
    e.family(
        "skein_requests_total",
        Kind::Counter,
        "Kafka requests handled, by API and shard.",
    );
    for (s, shard) in shards.iter().zip(labels) {
        for a in &s.apis {
            let api = format!("{:?}", a.api);
            e.sample(
                "skein_requests_total",
                &[("api", &api), ("shard", shard)],
                a.count(),
            );
        }
    }
    e.family(
        "skein_request_duration_seconds",
        Kind::Histogram,
        "Time from a request's frame being read to its answer being ready, by API and shard.",
    );
    let bounds = duration_bounds_seconds();
    for (s, shard) in shards.iter().zip(labels) {
        for a in &s.apis {
            let api = format!("{:?}", a.api);
            let h = HistogramValue {
                bounds_seconds: &bounds,
                bucket_counts: &a.buckets,
                sum_seconds: Duration::from_nanos(a.duration_sum_ns).as_secs_f64(),
            };
            e.histogram(
                "skein_request_duration_seconds",
                &[("api", &api), ("shard", shard)],
                &h,
            );
        }
    }
}

/// One sample per shard for a family.
fn per_shard(
    e: &mut TextEncoder,
    (name, kind, help): (&str, Kind, &str),
    shards: &[ShardSnapshot],
    labels: &[String],
    value: impl Fn(&ShardSnapshot) -> encode::Value,
) {
    e.family(name, kind, help);
    for (s, shard) in shards.iter().zip(labels) {
        e.sample(name, &[("shard", shard)], value(s));
    }
}

fn render_shard_counters(e: &mut TextEncoder, shards: &[ShardSnapshot], labels: &[String]) {
    per_shard(
        e,
        (
            "skein_network_received_bytes_total",
            Kind::Counter,
            "Bytes of Kafka requests read from client connections, size prefixes included.",
        ),
        shards,
        labels,
        |s| s.network_received_bytes.into(),
    );
    per_shard(
        e,
        (
            "skein_network_sent_bytes_total",
            Kind::Counter,
            "Bytes of Kafka responses written to client connections.",
        ),
        shards,
        labels,
        |s| s.network_sent_bytes.into(),
    );
    per_shard(
        e,
        (
            "skein_tail_cache_hits_total",
            Kind::Counter,
            "Reads served from the shard's in-memory tail cache.",
        ),
        shards,
        labels,
        |s| s.tail_cache_hits.into(),
    );
    per_shard(
        e,
        (
            "skein_tail_cache_misses_total",
            Kind::Counter,
            "Reads the tail cache could not serve (they went to disk).",
        ),
        shards,
        labels,
        |s| s.tail_cache_misses.into(),
    );
    per_shard(
        e,
        (
            "skein_tail_cache_used_bytes",
            Kind::Gauge,
            "Bytes of batches held in the shard's tail cache.",
        ),
        shards,
        labels,
        |s| s.tail_cache_used_bytes.into(),
    );
    per_shard(
        e,
        (
            "skein_shard_busy_seconds_total",
            Kind::Counter,
            "Time the shard's executor spent running tasks; its rate is the busy ratio.",
        ),
        shards,
        labels,
        |s| s.busy.as_secs_f64().into(),
    );
    per_shard(
        e,
        (
            "skein_shard_tasks_executed_total",
            Kind::Counter,
            "Tasks the shard's executor has run.",
        ),
        shards,
        labels,
        |s| s.tasks_executed.into(),
    );
}

fn render_errors(e: &mut TextEncoder, shards: &[ShardSnapshot], labels: &[String]) {
    type Errors = fn(&ShardSnapshot) -> &[(i16, u64)];
    let families: [(&str, &str, Errors); 2] = [
        (
            "skein_produce_errors_total",
            "Produce partitions answered with an error, by Kafka error code.",
            |s| &s.produce_errors,
        ),
        (
            "skein_fetch_errors_total",
            "Fetch partitions answered with an error, by Kafka error code.",
            |s| &s.fetch_errors,
        ),
    ];
    for (name, help, errors) in families {
        e.family(name, Kind::Counter, help);
        for (s, shard) in shards.iter().zip(labels) {
            for (code, count) in errors(s) {
                let code_label = code.to_string();
                let error = error_name(*code);
                e.sample(
                    name,
                    &[("code", &code_label), ("error", &error), ("shard", shard)],
                    *count,
                );
            }
        }
    }
}

/// Kafka's name for an error code (`NOT_LEADER_OR_FOLLOWER`), from the protocol crate's
/// variant name; `UNKNOWN` for a code it does not know.
fn error_name(code: i16) -> String {
    let Some(error) = ResponseError::try_from_code(code) else {
        return "UNKNOWN".to_string();
    };
    let debug = format!("{error:?}");
    // A code the crate does not know prints as `Unknown(code)`; the code label has the number.
    let camel = debug.split('(').next().unwrap_or_default();
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn render_partitions(e: &mut TextEncoder, shards: &[ShardSnapshot], labels: &[String]) {
    type Series = (
        &'static str,
        &'static str,
        fn(&PartitionSnapshot) -> encode::Value,
    );
    let series: [Series; 9] = [
        (
            "skein_partition_log_start_offset",
            "First offset in the replica's log (inclusive).",
            |p| p.log_start_offset.into(),
        ),
        (
            "skein_partition_log_end_offset",
            "Offset the replica's next record will get (exclusive end of its log).",
            |p| p.log_end_offset.into(),
        ),
        (
            "skein_partition_high_watermark",
            "Offset up to which (exclusive) records are replicated to the ISR and readable.",
            |p| p.high_watermark.into(),
        ),
        (
            "skein_partition_size_bytes",
            "Bytes of the replica's segments on disk.",
            |p| p.size_bytes.into(),
        ),
        (
            "skein_partition_leader",
            "1 when this node leads the partition, else 0.",
            |p| p.is_leader.into(),
        ),
        (
            "skein_partition_leader_epoch",
            "The partition's leader epoch as this replica knows it.",
            |p| i64::from(p.leader_epoch).into(),
        ),
        (
            "skein_partition_in_sync_replicas",
            "Members of the partition's ISR as this replica knows it.",
            |p| p.in_sync_replicas.into(),
        ),
        (
            "skein_partition_isr_shrinks_total",
            "ISR shrinks this replica proposed as leader and the controller accepted.",
            |p| p.isr_shrinks.into(),
        ),
        (
            "skein_partition_isr_expands_total",
            "ISR expansions this replica proposed as leader and the controller accepted.",
            |p| p.isr_expands.into(),
        ),
    ];
    for (name, help, value) in series {
        let kind = if name.ends_with("_total") {
            Kind::Counter
        } else {
            Kind::Gauge
        };
        e.family(name, kind, help);
        for (s, shard) in shards.iter().zip(labels) {
            for p in &s.partitions {
                let partition = p.partition.to_string();
                e.sample(
                    name,
                    &[
                        ("topic", &p.topic),
                        ("partition", &partition),
                        ("shard", shard),
                    ],
                    value(p),
                );
            }
        }
    }
    per_shard(
        e,
        (
            "skein_leader_partitions",
            Kind::Gauge,
            "Partitions this node leads.",
        ),
        shards,
        labels,
        |s| s.partitions.iter().filter(|p| p.is_leader).count().into(),
    );
    per_shard(
        e,
        (
            "skein_under_replicated_partitions",
            Kind::Gauge,
            "Partitions this node leads whose ISR is smaller than their replica set.",
        ),
        shards,
        labels,
        |s| {
            s.partitions
                .iter()
                .filter(|p| p.is_leader && p.in_sync_replicas < p.replicas)
                .count()
                .into()
        },
    );
}

fn render_node(e: &mut TextEncoder, node: &NodeSnapshot) {
    e.family(
        "skein_broker_ready",
        Kind::Gauge,
        "1 when the broker serves clients (what /ready answers 200 for), else 0.",
    );
    e.sample("skein_broker_ready", &[], node.ready);
    e.family(
        "skein_metrics_shards_unanswered",
        Kind::Gauge,
        "Shards that did not answer this scrape in time; their series are missing from it.",
    );
    e.sample(
        "skein_metrics_shards_unanswered",
        &[],
        node.shards_unanswered,
    );
    let Some(c) = &node.controller else {
        return;
    };
    let gauges: [(&str, &str, encode::Value); 4] = [
        (
            "skein_controller_active",
            "1 when this node's controller voter is the active controller, else 0.",
            c.active.into(),
        ),
        (
            "skein_controller_raft_term",
            "The controller voter's current Raft term.",
            c.raft_term.into(),
        ),
        (
            "skein_controller_raft_commit_index",
            "Last metadata log index this voter knows committed (inclusive).",
            c.commit_index.into(),
        ),
        (
            "skein_controller_raft_applied_index",
            "Last metadata log index applied to this voter's image (inclusive).",
            c.applied_index.into(),
        ),
    ];
    for (name, help, value) in gauges {
        e.family(name, Kind::Gauge, help);
        e.sample(name, &[], value);
    }
    if let Some(offline) = c.offline_partitions {
        e.family(
            "skein_offline_partitions",
            Kind::Gauge,
            "Partitions without a leader, cluster-wide (only the active controller reports it).",
        );
        e.sample("skein_offline_partitions", &[], offline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_their_inclusive_bucket() {
        let m = ShardMetrics::default();
        m.record_request(ApiKey::Produce, Duration::from_micros(100), 10, 20);
        m.record_request(ApiKey::Produce, Duration::from_micros(101), 0, 0);
        m.record_request(ApiKey::Produce, Duration::from_secs(60), 0, 0);
        let stats = &m.apis[0];
        assert_eq!(stats.buckets[0].get(), 1);
        assert_eq!(stats.buckets[1].get(), 1);
        assert_eq!(stats.buckets[DURATION_BUCKETS - 1].get(), 1);
        assert_eq!(m.network_received_bytes.get(), 10);
        assert_eq!(m.network_sent_bytes.get(), 20);
    }

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(i16::MAX), "UNKNOWN");
    }

    #[test]
    fn render_labels_partitions_and_errors() {
        let shard = ShardSnapshot {
            shard: ShardId(1),
            apis: Vec::new(),
            network_received_bytes: 5,
            network_sent_bytes: 6,
            produce_errors: vec![(6, 2)],
            fetch_errors: Vec::new(),
            partitions: vec![PartitionSnapshot {
                topic: "t".to_string(),
                partition: 3,
                log_start_offset: 0,
                log_end_offset: 10,
                high_watermark: 8,
                size_bytes: 100,
                is_leader: true,
                leader_epoch: 1,
                replicas: 3,
                in_sync_replicas: 2,
                isr_shrinks: 1,
                isr_expands: 0,
            }],
            tail_cache_hits: 0,
            tail_cache_misses: 0,
            tail_cache_used_bytes: 0,
            busy: Duration::from_millis(1500),
            tasks_executed: 7,
        };
        let node = NodeSnapshot {
            ready: true,
            controller: None,
            shards_unanswered: 0,
        };
        let text = render(&[shard], &node);
        for line in [
            "skein_produce_errors_total{code=\"6\",error=\"NOT_LEADER_OR_FOLLOWER\",shard=\"1\"} 2",
            "skein_partition_log_end_offset{topic=\"t\",partition=\"3\",shard=\"1\"} 10",
            "# TYPE skein_partition_isr_shrinks_total counter",
            "# TYPE skein_partition_high_watermark gauge",
            "skein_under_replicated_partitions{shard=\"1\"} 1",
            "skein_shard_busy_seconds_total{shard=\"1\"} 1.5",
            "skein_broker_ready 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(!text.contains("skein_controller_active"));
    }

    #[test]
    fn bounds_print_as_seconds() {
        let b = duration_bounds_seconds();
        assert_eq!(b[0], 0.0001);
        assert_eq!(b[1], 0.00025);
        assert_eq!(b[15], 10.0);
    }
}

//! Broker metrics. Each shard counts into its own [`ShardMetrics`] (plain `Cell`s, no locks or
//! atomics on the request path); a scrape asks every shard for a [`ShardSnapshot`] over the
//! data mesh and renders them all, labelled by shard, on the shard serving the metrics
//! listener (the controller shard). [`http`] serves `/metrics`, `/health` and `/ready`.

pub mod encode;
pub mod http;
mod render;

pub use render::render;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

use crate::shard::ids::ShardId;
use crate::shard::Shard;

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
    /// Requests read and not yet answered: this shard's backlog of work (glommio does not
    /// expose its run-queue length).
    requests_in_flight: Cell<u64>,
}

/// Counts one request in flight while it lives (dropped however the request ends).
pub struct InFlight<'a>(&'a Cell<u64>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            apis: (0..API_KEY_SLOTS).map(|_| ApiStats::default()).collect(),
            network_received_bytes: Cell::new(0),
            network_sent_bytes: Cell::new(0),
            produce_errors: RefCell::new(BTreeMap::new()),
            fetch_errors: RefCell::new(BTreeMap::new()),
            requests_in_flight: Cell::new(0),
        }
    }
}

impl ShardMetrics {
    /// One more request in flight until the returned guard drops.
    pub fn request_started(&self) -> InFlight<'_> {
        self.requests_in_flight
            .set(self.requests_in_flight.get() + 1);
        InFlight(&self.requests_in_flight)
    }

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

/// A consumer group's committed offset for one partition, from the coordinator's shard.
#[derive(Debug, Clone)]
pub struct CommittedSnapshot {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Everything one shard reports to a scrape; plain data, so it crosses shards.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    pub shard: ShardId,
    pub apis: Vec<ApiSnapshot>,
    pub network_received_bytes: u64,
    pub network_sent_bytes: u64,
    pub requests_in_flight: u64,
    pub produce_errors: Vec<(i16, u64)>,
    pub fetch_errors: Vec<(i16, u64)>,
    pub partitions: Vec<PartitionSnapshot>,
    /// Committed offsets of the groups this shard coordinates (it leads their
    /// `__consumer_offsets` partition).
    pub committed: Vec<CommittedSnapshot>,
    pub tail_cache_hits: u64,
    pub tail_cache_misses: u64,
    pub tail_cache_used_bytes: usize,
    /// Disk reads of sequential readers served from windows read ahead.
    pub read_ahead: skein_storage::ReadAheadStats,
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
    /// Partition leader changes this voter committed as the active controller.
    pub leader_elections: u64,
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
        let committed = self
            .partitions()
            .iter()
            .filter(|p| p.is_leader() && &*p.tp.topic == crate::group::offsets::OFFSETS_TOPIC)
            .flat_map(|p| {
                let store = p.groups.borrow();
                store
                    .offsets
                    .groups()
                    .into_iter()
                    .flat_map(|group| {
                        store.offsets.of_group(&group).into_iter().map(
                            move |(topic, partition, c)| CommittedSnapshot {
                                group: group.clone(),
                                topic,
                                partition,
                                offset: c.offset,
                            },
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let cache = self.tail_cache_stats();
        let executor = glommio::executor().executor_stats();
        ShardSnapshot {
            shard: self.id,
            apis,
            network_received_bytes: m.network_received_bytes.get(),
            network_sent_bytes: m.network_sent_bytes.get(),
            requests_in_flight: m.requests_in_flight.get(),
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
            committed,
            tail_cache_hits: cache.hits,
            tail_cache_misses: cache.misses,
            tail_cache_used_bytes: cache.used_bytes,
            read_ahead: skein_storage::read_ahead_stats(),
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
}

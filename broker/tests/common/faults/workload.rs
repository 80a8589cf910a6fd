//! The client workload that runs through every fault: one idempotent acks=all producer, one
//! consumer tailing every partition, and one watcher asking for high watermarks. Each runs on
//! its own thread with its own librdkafka client, so that a call stuck on a dead broker in one
//! of them never stalls the others; what they saw comes back as a [`WorkloadLog`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::super::clients::client_config_at;

/// How long librdkafka keeps retrying one record before it reports it as failed. Long enough to
/// outlast every fault of the short schedule, so that a record fails only when the cluster
/// does not come back.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between two records: ~500 records/s, enough to catch every fault mid-stream without
/// starving three brokers that share two CPUs with the test.
const SEND_INTERVAL: Duration = Duration::from_millis(2);
/// Records sent but not yet reported at most; the producer waits beyond this (bounded memory
/// while acks=all is refused for a long time).
const OUTSTANDING_MAX: usize = 5_000;
/// How often the watcher asks every partition for its watermarks.
const WATERMARK_INTERVAL: Duration = Duration::from_millis(200);
/// One ListOffsets round trip at most: a dead leader costs the watcher this much, no more.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(1);
/// Lines of the producer's librdkafka log kept for the report (its idempotence story: PIDs,
/// epoch bumps, sequence errors; warnings). Later lines are counted, not kept.
const PRODUCER_LOG_MAX: usize = 400;
/// How often the consumer's librdkafka reports statistics (the high watermark of its fetches).
const STATISTICS_INTERVAL_MS: &str = "200";

/// The key of every record of `partition`: one key per partition, so that "per-key order" and
/// "per-partition order" are the same check for our single producer.
pub fn key_of(partition: i32) -> String {
    format!("k{partition}")
}

/// The payload of record `seq` of `partition` (seq counts per partition, from 0): unique in the
/// whole run, and it says where it belongs.
pub fn payload_of(partition: i32, seq: u64) -> String {
    format!("p{partition}-{seq:08}")
}

/// (partition, seq) back from a payload; None for anything the workload did not write.
pub fn parse_payload(payload: &str) -> Option<(i32, u64)> {
    let (partition, seq) = payload.strip_prefix('p')?.split_once('-')?;
    Some((partition.parse().ok()?, seq.parse().ok()?))
}

/// One record the producer sent and what librdkafka finally said about it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub partition: i32,
    pub payload: String,
    /// Ok(offset) when acknowledged; Err(librdkafka's error) when not.
    pub outcome: Result<i64, String>,
    /// When the report arrived, from the workload's start.
    pub reported_at: Duration,
}

/// A record as a reader saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub partition: i32,
    pub offset: i64,
    pub payload: String,
}

/// Where a high watermark observation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WatermarkSource {
    /// ListOffsets (latest), from `fetch_watermarks`.
    ListOffsets,
    /// The high watermark of the tailing consumer's last Fetch answer (librdkafka statistics).
    Fetch,
}

/// One high watermark observation.
#[derive(Debug, Clone, Copy)]
pub struct Watermark {
    pub partition: i32,
    pub source: WatermarkSource,
    pub high_watermark: i64,
    /// From the workload's start.
    pub at: Duration,
}

/// Everything the workload saw, handed to the verifier.
#[derive(Debug, Default)]
pub struct WorkloadLog {
    /// Records handed to librdkafka.
    pub sent: usize,
    /// One per record handed over, in report order.
    pub deliveries: Vec<Delivery>,
    /// librdkafka's fatal error of the idempotent producer, if it raised one.
    pub producer_fatal: Option<String>,
    /// The producer's librdkafka log (`debug=eos` and warnings), for explaining a failure.
    pub producer_log: Vec<String>,
    /// Every record the tailing consumer returned, in the order it returned them.
    pub consumed: Vec<Seen>,
    /// Consumer errors other than "reached the end", with when they happened.
    pub consumer_errors: Vec<(Duration, String)>,
    pub watermarks: Vec<Watermark>,
    /// (label, when) of the moments the scenario marked, e.g. "fault", "recovered".
    pub marks: Vec<(String, Duration)>,
}

impl WorkloadLog {
    /// When the last mark named `label` was set.
    pub fn last_mark(&self, label: &str) -> Option<Duration> {
        self.marks
            .iter()
            .rev()
            .find(|(l, _)| l == label)
            .map(|(_, at)| *at)
    }

    pub fn acknowledged(&self) -> impl Iterator<Item = (&Delivery, i64)> {
        self.deliveries
            .iter()
            .filter_map(|d| d.outcome.as_ref().ok().map(|offset| (d, *offset)))
    }
}

/// Shared between a workload thread and [`Workload`].
struct Shared {
    started: Instant,
    stop: AtomicBool,
    acknowledged: AtomicUsize,
    marks: Mutex<Vec<(String, Duration)>>,
}

/// The running workload; [`Workload::stop`] ends it and returns what it saw. Dropping it
/// without stopping stops the threads too (they check the flag) but loses the log.
pub struct Workload {
    shared: Arc<Shared>,
    producer: Option<JoinHandle<ProducerLog>>,
    consumer: Option<JoinHandle<ConsumerLog>>,
    watcher: Option<JoinHandle<Vec<Watermark>>>,
}

/// (records sent, delivery reports, fatal error, librdkafka log lines) from the producer thread.
type ProducerLog = (usize, Vec<Delivery>, Option<String>, Vec<String>);
/// (records read, errors, high watermarks of its fetches) from the consumer thread.
type ConsumerLog = (Vec<Seen>, Vec<(Duration, String)>, Vec<Watermark>);

impl Workload {
    /// Starts producing to and consuming from every partition of `topic` at `bootstrap`.
    pub fn start(bootstrap: &str, topic: &str, partitions: i32) -> Workload {
        let shared = Arc::new(Shared {
            started: Instant::now(),
            stop: AtomicBool::new(false),
            acknowledged: AtomicUsize::new(0),
            marks: Mutex::new(Vec::new()),
        });
        let (b, t, n) = (bootstrap, topic, partitions);
        let producer = spawn_worker("faults-producer", &shared, b, t, n, produce);
        let consumer = spawn_worker("faults-consumer", &shared, b, t, n, consume);
        let watcher = spawn_worker("faults-watermarks", &shared, b, t, n, watch_watermarks);
        Workload {
            shared,
            producer: Some(producer),
            consumer: Some(consumer),
            watcher: Some(watcher),
        }
    }

    /// Time since the workload started (the clock of every timestamp in its log).
    pub fn elapsed(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Records acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.shared.acknowledged.load(Ordering::Acquire)
    }

    /// Notes a moment of the scenario ("fault", "recovered") in the log.
    pub fn mark(&self, label: &str) {
        let at = self.elapsed();
        self.shared
            .marks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((label.to_string(), at));
    }

    /// Stops sending, waits for every outstanding delivery report (at most [`MESSAGE_TIMEOUT`]
    /// and a little), stops the consumer and the watcher, and returns what they all saw.
    pub fn stop(mut self) -> WorkloadLog {
        self.shared.stop.store(true, Ordering::Release);
        let (sent, deliveries, producer_fatal, producer_log) = self
            .producer
            .take()
            .expect("the producer runs until stop")
            .join()
            .expect("the producer thread panicked");
        let (consumed, consumer_errors, mut watermarks) = self
            .consumer
            .take()
            .expect("the consumer runs until stop")
            .join()
            .expect("the consumer thread panicked");
        watermarks.extend(
            self.watcher
                .take()
                .expect("the watcher runs until stop")
                .join()
                .expect("the watermark thread panicked"),
        );
        let marks =
            std::mem::take(&mut *self.shared.marks.lock().unwrap_or_else(|e| e.into_inner()));
        WorkloadLog {
            sent,
            deliveries,
            producer_fatal,
            producer_log,
            consumed,
            consumer_errors,
            watermarks,
            marks,
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
    }
}

/// Collects delivery reports (librdkafka calls it from `poll` on the producer thread) and the
/// producer's log lines (from librdkafka's threads).
struct DeliveryRecorder {
    shared: Arc<Shared>,
    reports: Mutex<Vec<Delivery>>,
    log: Mutex<(Vec<String>, usize)>,
}

impl ClientContext for DeliveryRecorder {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        let at = self.shared.started.elapsed().as_secs_f64();
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.0.len() < PRODUCER_LOG_MAX {
            log.0
                .push(format!("[{at:6.2}s] {level:?} {facility}: {line}"));
        } else {
            log.1 += 1;
        }
    }
}

impl ProducerContext for DeliveryRecorder {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let (message, outcome) = match result {
            Ok(m) => (m, Ok(m.offset())),
            Err((e, m)) => (m, Err(e.to_string())),
        };
        let payload = message
            .payload()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        if outcome.is_ok() {
            self.shared.acknowledged.fetch_add(1, Ordering::AcqRel);
        }
        let delivery = Delivery {
            partition: message.partition(),
            payload,
            outcome,
            reported_at: self.shared.started.elapsed(),
        };
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(delivery);
    }
}

/// The Java client's idempotent settings (acks=all, 5 in flight, retries until the timeout),
/// fast reconnects and metadata refreshes so that a moved leader is found quickly.
fn producer_config(bootstrap: &str) -> ClientConfig {
    let timeout_ms = MESSAGE_TIMEOUT.as_millis().to_string();
    let mut config = client_config_at(
        bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("max.in.flight.requests.per.connection", "5"),
            ("linger.ms", "5"),
            ("retry.backoff.ms", "50"),
            ("retry.backoff.max.ms", "250"),
            ("reconnect.backoff.ms", "20"),
            ("reconnect.backoff.max.ms", "250"),
            ("topic.metadata.refresh.interval.ms", "1000"),
            ("compression.type", "none"),
            ("message.timeout.ms", &timeout_ms),
            // The idempotence story (PIDs, epoch bumps, sequence errors), for a failure's report.
            ("debug", "eos"),
        ],
    );
    // rdkafka takes librdkafka's log level from the `log` crate, which tests do not set up:
    // without this the debug lines never reach `DeliveryRecorder::log`.
    config.set_log_level(RDKafkaLogLevel::Debug);
    config
}

/// The producer thread: record after record, round robin over the partitions, until stopped;
/// then waits for every report.
fn produce(shared: &Arc<Shared>, bootstrap: &str, topic: &str, partitions: i32) -> ProducerLog {
    let recorder = DeliveryRecorder {
        shared: shared.clone(),
        reports: Mutex::new(Vec::new()),
        log: Mutex::new((Vec::new(), 0)),
    };
    let producer: BaseProducer<DeliveryRecorder> = producer_config(bootstrap)
        .create_with_context(recorder)
        .expect("create the idempotent producer");
    let reported = |p: &BaseProducer<DeliveryRecorder>| {
        p.context()
            .reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    };
    let mut next_seq = vec![0u64; usize::try_from(partitions).expect("partition count")];
    let mut sent = 0usize;
    'sending: while !shared.stop.load(Ordering::Acquire) {
        if sent - reported(&producer) >= OUTSTANDING_MAX {
            producer.poll(Duration::from_millis(10));
            continue;
        }
        let partition = i32::try_from(sent % next_seq.len()).expect("partition index");
        let slot = &mut next_seq[usize::try_from(partition).expect("partition index")];
        let (key, payload) = (key_of(partition), payload_of(partition, *slot));
        let mut record = BaseRecord::to(topic)
            .partition(partition)
            .key(&key)
            .payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                    if shared.stop.load(Ordering::Acquire) {
                        break 'sending;
                    }
                }
                // After a fatal error every send fails at once: stop, the report says why.
                Err((e, _)) => {
                    eprintln!("faults: producer send failed: {e}; stopping the producer");
                    break 'sending;
                }
            }
        }
        *slot += 1;
        sent += 1;
        producer.poll(Duration::ZERO);
        std::thread::sleep(SEND_INTERVAL);
    }
    // Every record gets a report by MESSAGE_TIMEOUT; a little more for the reports themselves.
    let deadline = Instant::now() + MESSAGE_TIMEOUT + Duration::from_secs(5);
    while reported(&producer) < sent && Instant::now() < deadline {
        producer.poll(Duration::from_millis(50));
    }
    let fatal = producer
        .client()
        .fatal_error()
        .map(|(code, reason)| format!("{code:?}: {reason}"));
    let reports = std::mem::take(
        &mut *producer
            .context()
            .reports
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    let (mut log, dropped) = std::mem::take(
        &mut *producer
            .context()
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    if dropped > 0 {
        log.push(format!("({dropped} later lines not kept)"));
    }
    (sent, reports, fatal, log)
}

/// Keeps the high watermark of every fetch the consumer made, from librdkafka's statistics.
struct StatisticsRecorder {
    shared: Arc<Shared>,
    topic: String,
    watermarks: Mutex<Vec<Watermark>>,
}

impl ClientContext for StatisticsRecorder {
    fn stats(&self, statistics: Statistics) {
        let at = self.shared.started.elapsed();
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut watermarks = self.watermarks.lock().unwrap_or_else(|e| e.into_inner());
        for (partition, p) in &topic.partitions {
            // -1 (and librdkafka's -1001) mean "not known yet", not a watermark.
            if *partition >= 0 && p.hi_offset >= 0 {
                watermarks.push(Watermark {
                    partition: *partition,
                    source: WatermarkSource::Fetch,
                    high_watermark: p.hi_offset,
                    at,
                });
            }
        }
    }
}

impl ConsumerContext for StatisticsRecorder {}

/// A consumer at `bootstrap` whose partitions are assigned by hand and which commits nothing.
/// librdkafka refuses `assign` without a `group.id`, so each client gets a group of its own
/// that never joins (it only looks its coordinator up).
pub fn consumer_config(bootstrap: &str) -> ClientConfig {
    static CLIENTS: AtomicUsize = AtomicUsize::new(0);
    let group = format!(
        "skein-faults-{}-{}",
        std::process::id(),
        CLIENTS.fetch_add(1, Ordering::Relaxed)
    );
    client_config_at(
        bootstrap,
        &[
            ("group.id", &group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "false"),
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "100"),
            ("reconnect.backoff.ms", "20"),
            ("reconnect.backoff.max.ms", "250"),
            ("topic.metadata.refresh.interval.ms", "1000"),
        ],
    )
}

/// Every partition of `topic` from `offset`.
pub fn all_partitions(topic: &str, partitions: i32, offset: Offset) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, offset)
            .expect("a valid partition offset");
    }
    list
}

/// The consumer thread: tails every partition from the beginning until stopped.
fn consume(shared: &Arc<Shared>, bootstrap: &str, topic: &str, partitions: i32) -> ConsumerLog {
    let recorder = StatisticsRecorder {
        shared: shared.clone(),
        topic: topic.to_string(),
        watermarks: Mutex::new(Vec::new()),
    };
    let consumer: BaseConsumer<StatisticsRecorder> = consumer_config(bootstrap)
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .create_with_context(recorder)
        .expect("create the tailing consumer");
    consumer
        .assign(&all_partitions(topic, partitions, Offset::Beginning))
        .expect("assign every partition");
    let mut consumed = Vec::new();
    let mut errors = Vec::new();
    while !shared.stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => consumed.push(Seen {
                partition: m.partition(),
                offset: m.offset(),
                payload: m
                    .payload()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_default(),
            }),
            Some(Err(e)) => errors.push((shared.started.elapsed(), e.to_string())),
        }
    }
    let watermarks = std::mem::take(
        &mut *consumer
            .context()
            .watermarks
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    (consumed, errors, watermarks)
}

/// The signature every workload thread runs with.
type Work<T> = fn(&Arc<Shared>, &str, &str, i32) -> T;

/// Starts one workload thread named `name`, running `work` against `topic` at `bootstrap`.
fn spawn_worker<T: Send + 'static>(
    name: &str,
    shared: &Arc<Shared>,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    work: Work<T>,
) -> JoinHandle<T> {
    let (shared, bootstrap, topic) = (shared.clone(), bootstrap.to_string(), topic.to_string());
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || work(&shared, &bootstrap, &topic, partitions))
        .unwrap_or_else(|e| panic!("spawn the {name} thread: {e}"))
}

/// The watcher thread: ListOffsets for every partition every [`WATERMARK_INTERVAL`].
fn watch_watermarks(
    shared: &Arc<Shared>,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Watermark> {
    let client: BaseConsumer = consumer_config(bootstrap)
        .create()
        .expect("create the watermark client");
    let mut watermarks = Vec::new();
    while !shared.stop.load(Ordering::Acquire) {
        // ListOffsets goes to the leader this client has cached, and a hung leader answers with
        // a timeout rather than NOT_LEADER: refresh the topic's metadata every round, so that a
        // moved leader is asked within a round or two.
        let _ = client.fetch_metadata(Some(topic), WATERMARK_TIMEOUT);
        for partition in 0..partitions {
            // An error (leader down, moving) is no observation; the next round asks again.
            if let Ok((_, high)) = client.fetch_watermarks(topic, partition, WATERMARK_TIMEOUT) {
                watermarks.push(Watermark {
                    partition,
                    source: WatermarkSource::ListOffsets,
                    high_watermark: high,
                    at: shared.started.elapsed(),
                });
            }
        }
        std::thread::sleep(WATERMARK_INTERVAL);
    }
    watermarks
}

/// What a fresh consumer read: every partition's records and the high watermark it read to.
#[derive(Debug, Default)]
pub struct FinalRead {
    pub records: BTreeMap<i32, Vec<Seen>>,
    pub high_watermarks: BTreeMap<i32, i64>,
    /// Why the read stopped short, when it did (the records are what it got until then).
    pub incomplete: Option<String>,
}

/// Reads every partition of `topic` from its beginning to its high watermark with a fresh
/// consumer: what a client can read once the faults are over, or as much of it as it could
/// read within `timeout`.
pub fn read_all(bootstrap: &str, topic: &str, partitions: i32, timeout: Duration) -> FinalRead {
    let mut read = FinalRead::default();
    if let Err(why) = read_into(&mut read, bootstrap, topic, partitions, timeout) {
        read.incomplete = Some(why);
    }
    read
}

fn read_into(
    out: &mut FinalRead,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(), String> {
    let consumer: BaseConsumer = consumer_config(bootstrap)
        .set("auto.offset.reset", "error")
        .create()
        .expect("create the final reader");
    let deadline = Instant::now() + timeout;
    out.records = (0..partitions).map(|p| (p, Vec::new())).collect();
    let ends = &mut out.high_watermarks;
    for partition in 0..partitions {
        let end = loop {
            match consumer.fetch_watermarks(topic, partition, Duration::from_secs(2)) {
                Ok((_, high)) => break high,
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("partition {partition}: no high watermark: {e}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        ends.insert(partition, end);
    }
    consumer
        .assign(&all_partitions(topic, partitions, Offset::Beginning))
        .map_err(|e| format!("assign: {e}"))?;
    let read = &mut out.records;
    let next =
        |read: &BTreeMap<i32, Vec<Seen>>, p: i32| read[&p].last().map_or(0, |s| s.offset + 1);
    let mut errors = Vec::new();
    while ends.iter().any(|(p, end)| next(read, *p) < *end) {
        if Instant::now() > deadline {
            let short: Vec<String> = ends
                .iter()
                .filter(|(p, end)| next(read, **p) < **end)
                .map(|(p, end)| format!("partition {p} at {} of {end}", next(read, *p)))
                .collect();
            return Err(format!(
                "final read incomplete after {timeout:?}: {}; errors: {errors:?}",
                short.join(", ")
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                let seen = Seen {
                    partition: m.partition(),
                    offset: m.offset(),
                    payload: m
                        .payload()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .unwrap_or_default(),
                };
                if let Some(records) = read.get_mut(&seen.partition) {
                    records.push(seen);
                }
            }
            Some(Err(e)) => errors.push(e.to_string()),
        }
    }
    Ok(())
}

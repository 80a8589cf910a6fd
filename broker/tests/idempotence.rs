//! Idempotent producers against a single `skein` node: librdkafka (the `rdkafka` crate) with the
//! settings the Java client uses for `enable.idempotence=true` (acks=all, 5 requests in
//! flight) through a proxy that cuts its connections mid-stream, across broker restarts and
//! crashes; and raw Produce/InitProducerId frames for the broker's exact answers.
//!
//! Every record carries its number; the log must hold each exactly once, in order, and at the
//! offset its delivery report named.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceResponse, RequestKind,
    ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use skein_net::{
    decode_response, encode_request, produce_request, CorrelationId, RecordBatchBuilder,
    RequestHeader,
};

use common::clients::{block_on, client_config_at, create_topics_at};
use common::proxy::Proxy;
use common::raw::read_frame;
use common::{Broker, BrokerConfig};

/// Upper bound for any single wait on the broker.
const WAIT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------------------------
// Client helpers

/// Reconnect quickly after every cut.
const FAST_RECONNECT: [(&str, &str); 2] = [
    ("reconnect.backoff.ms", "20"),
    ("reconnect.backoff.max.ms", "500"),
];

fn client_config(bootstrap: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut config = client_config_at(bootstrap, &FAST_RECONNECT);
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
}

/// The Java client's idempotent settings: acks=all, at most 5 requests in flight, retries
/// until the delivery timeout. Small batches so that every cut catches requests in flight.
fn idempotent_producer(bootstrap: &str) -> FutureProducer {
    client_config(
        bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("max.in.flight.requests.per.connection", "5"),
            ("linger.ms", "2"),
            ("batch.num.messages", "40"),
            ("retry.backoff.ms", "20"),
            ("message.timeout.ms", "120000"),
        ],
    )
    .create()
    .expect("create idempotent producer")
}

fn value(i: usize) -> String {
    format!("record-{i:08}")
}

/// Sends records `range` (record i to partition i % partitions) in bursts of `burst` with a
/// pause between bursts, so that production spans the faults the test injects; then waits for
/// every delivery report. `stop` ends production early (the rest is not sent).
fn produce_numbered(
    producer: &FutureProducer,
    topic: &str,
    partitions: usize,
    range: std::ops::Range<usize>,
    burst: usize,
    pause: Duration,
) -> Vec<(usize, OwnedDeliveryResult)> {
    let mut futures = Vec::with_capacity(range.len());
    for i in range {
        let v = value(i);
        let mut record = FutureRecord::<str, str>::to(topic)
            .partition((i % partitions) as i32)
            .payload(&v);
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    futures.push((i, f));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("send of record {i} failed synchronously: {e}"),
            }
        }
        if (i + 1) % burst == 0 {
            std::thread::sleep(pause);
        }
    }
    producer.flush(WAIT * 2).expect("flush");
    block_on(async {
        let mut out = Vec::with_capacity(futures.len());
        for (i, f) in futures {
            out.push((i, f.await.expect("delivery future cancelled")));
        }
        out
    })
}

/// Every record was delivered; returns (partition, offset) by record number.
fn delivered(results: Vec<(usize, OwnedDeliveryResult)>, count: usize) -> Vec<(i32, i64)> {
    let mut at = vec![(-1, -1); count];
    for (i, r) in results {
        match r {
            Ok(d) => at[i] = (d.partition, d.offset),
            Err((e, _)) => panic!("record {i} was not delivered: {e}"),
        }
    }
    at
}

/// Reads every partition from the beginning and checks the log against the delivery reports:
/// each record exactly once, in the order sent, at the offset it was reported at.
fn verify_log(bootstrap: &str, topic: &str, partitions: usize, reported: &[(i32, i64)]) {
    let consumer: BaseConsumer = client_config(
        bootstrap,
        &[
            ("group.id", "skein-idempotence-check"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
        ],
    )
    .create()
    .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
            .expect("assignment");
    }
    consumer.assign(&tpl).expect("assign");
    let mut logs: Vec<Vec<(i64, String)>> = vec![Vec::new(); partitions];
    let total = reported.len();
    let deadline = Instant::now() + WAIT;
    let mut seen = 0;
    while seen < total && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                logs[m.partition() as usize].push((m.offset(), v));
                seen += 1;
            }
            Some(Err(e)) => panic!("consumer error after {seen} records: {e}"),
        }
    }
    // A little longer: duplicates would show up beyond the expected count.
    let quiet_until = Instant::now() + Duration::from_millis(700);
    while Instant::now() < quiet_until {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            logs[m.partition() as usize].push((m.offset(), v));
        }
    }
    for (p, log) in logs.iter().enumerate() {
        let expected: Vec<usize> = (p..total).step_by(partitions).collect();
        let got: Vec<&str> = log.iter().map(|(_, v)| v.as_str()).collect();
        let want: Vec<String> = expected.iter().map(|&i| value(i)).collect();
        if got != want {
            let dup = got.iter().enumerate().find(|(k, v)| got[..*k].contains(v));
            panic!(
                "partition {p}: {} records, {} expected; first duplicate {:?}; first difference \
                 at {:?}",
                got.len(),
                want.len(),
                dup,
                got.iter().zip(&want).position(|(g, w)| g != w)
            );
        }
        for (k, &i) in expected.iter().enumerate() {
            assert_eq!(
                reported[i],
                (p as i32, log[k].0),
                "record {i}: reported offset differs from where it is"
            );
        }
    }
}

// ------------------------------------------------------------------------------------------
// librdkafka through a faulty network

/// Cuts every connection through `proxy` `times` times at uneven moments (the first after
/// `first_after`), half of the cuts after holding back the broker's answers for a while: the
/// requests in flight are then appended but never acknowledged, so they must be retried.
fn cut_repeatedly(
    proxy: Arc<Proxy>,
    first_after: Duration,
    times: u64,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        std::thread::sleep(first_after);
        let mut cut = 0;
        for n in 0..times {
            std::thread::sleep(Duration::from_millis(120 + (n * 97) % 230));
            let swallow = Duration::from_millis(if n % 2 == 0 { 40 } else { 0 });
            cut += usize::from(proxy.cut_all(swallow) > 0);
        }
        cut
    })
}

/// Produces while the proxy cuts every connection again and again: the log must still hold
/// every record once, in order, at its reported offset.
#[test]
fn connection_cuts_mid_stream_leave_no_duplicates_and_no_gaps() {
    const TOPIC: &str = "idem-cuts";
    const PARTITIONS: usize = 3;
    const COUNT: usize = 24_000;
    let proxy = Arc::new(Proxy::start());
    let broker = Broker::start_with(
        BrokerConfig::default().set("advertised.listeners", &proxy.advertised_listener()),
    );
    proxy.set_target(broker.addr());
    let bootstrap = proxy.bootstrap();
    create_topics_at(&bootstrap, &[(TOPIC, PARTITIONS as i32)]);

    let producer = idempotent_producer(&bootstrap);
    let cutter = cut_repeatedly(Arc::clone(&proxy), Duration::from_millis(200), 8);
    // 60 bursts of 400 records, 40 ms apart: production spans the cuts.
    let results = produce_numbered(
        &producer,
        TOPIC,
        PARTITIONS,
        0..COUNT,
        400,
        Duration::from_millis(40),
    );
    let cuts = cutter.join().expect("cutter thread");
    assert!(cuts >= 4, "only {cuts} cuts hit open connections");
    assert!(proxy.accepted() > 2, "the producer reconnected after cuts");
    let reported = delivered(results, COUNT);
    assert!(producer.client().fatal_error().is_none());
    verify_log(&bootstrap, TOPIC, PARTITIONS, &reported);
}

/// Batches the broker appended but never acknowledged are retried after a crash (kill -9) and
/// after a clean restart: the producer state the broker recovers recognises them.
#[test]
fn retries_across_broker_crash_and_restart_are_not_duplicated() {
    const TOPIC: &str = "idem-restart";
    const PARTITIONS: usize = 2;
    const COUNT: usize = 16_000;
    let proxy = Arc::new(Proxy::start());
    let mut broker = Broker::start_with(
        BrokerConfig::default()
            .set("advertised.listeners", &proxy.advertised_listener())
            // Small segments: the state comes back from a roll snapshot plus a replay.
            .set("log.segment.bytes", "65536"),
    );
    proxy.set_target(broker.addr());
    let bootstrap = proxy.bootstrap();
    create_topics_at(&bootstrap, &[(TOPIC, PARTITIONS as i32)]);

    let producing = {
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            let producer = idempotent_producer(&bootstrap);
            let results = produce_numbered(
                &producer,
                TOPIC,
                PARTITIONS,
                0..COUNT,
                200,
                Duration::from_millis(40),
            );
            assert!(producer.client().fatal_error().is_none());
            results
        })
    };
    for crash in [true, false] {
        std::thread::sleep(Duration::from_millis(800));
        // Requests in flight now reach the log, but their answers never reach the producer.
        proxy.swallow_answers();
        std::thread::sleep(Duration::from_millis(150));
        if crash {
            broker.kill9();
            proxy.cut_all(Duration::ZERO);
            broker.start_again();
        } else {
            broker.stop();
            proxy.cut_all(Duration::ZERO);
            broker.start_again();
        }
        proxy.set_target(broker.addr());
    }
    let results = producing.join().expect("producer thread");
    let reported = delivered(results, COUNT);
    broker.assert_running();
    verify_log(&bootstrap, TOPIC, PARTITIONS, &reported);
}

// ------------------------------------------------------------------------------------------
// Raw frames: the broker's exact answers

struct Raw {
    stream: TcpStream,
    correlation_id: i32,
}

impl Raw {
    fn connect(broker: &Broker) -> Raw {
        Raw {
            stream: common::raw_connect(broker),
            correlation_id: 0,
        }
    }

    fn call(&mut self, api_key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        self.correlation_id += 1;
        let header = RequestHeader {
            api_key,
            api_version: version,
            correlation_id: CorrelationId(self.correlation_id),
            client_id: Some(StrBytes::from_static_str("skein-idempotence-test")),
        };
        let frame = encode_request(&header, &body).expect("encode request");
        self.stream.write_all(&frame).expect("write request");
        let body = read_frame(&mut self.stream).expect("broker closed the connection");
        let decoded = decode_response(api_key, version, body).expect("decode");
        assert_eq!(decoded.correlation_id.0, self.correlation_id);
        decoded.body
    }

    fn init_producer_id(
        &mut self,
        version: i16,
        req: InitProducerIdRequest,
    ) -> InitProducerIdResponse {
        match self.call(ApiKey::InitProducerId, version, req.into()) {
            ResponseKind::InitProducerId(r) => r,
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// Produces `records` (raw RecordBatch bytes) to partition 0; returns (error code, base
    /// offset, error message).
    fn produce(&mut self, topic: &str, records: Bytes) -> (i16, i64, Option<String>) {
        let body = produce_request(
            TopicName(StrBytes::from_string(topic.to_string())),
            [(0, records)],
            -1,
            10_000,
        );
        let resp: ProduceResponse = match self.call(ApiKey::Produce, 9, body) {
            ResponseKind::Produce(r) => r,
            other => panic!("unexpected answer {other:?}"),
        };
        let p = &resp.responses[0].partition_responses[0];
        (
            p.error_code,
            p.base_offset,
            p.error_message.as_ref().map(|m| m.to_string()),
        )
    }
}

fn batch(producer_id: i64, epoch: i16, first_sequence: i32, records: i32) -> Bytes {
    let mut b = RecordBatchBuilder::new(1_700_000_000_000).with_producer(
        producer_id,
        epoch,
        first_sequence,
    );
    for n in 0..records {
        let v = format!("seq-{}", first_sequence + n);
        b.push(1_700_000_000_000, None, Some(v.as_bytes()), &[]);
    }
    b.build()
}

/// InitProducerId without a transactional id (the generated default has an empty one).
fn idempotent() -> InitProducerIdRequest {
    InitProducerIdRequest::default().with_transactional_id(None)
}

const NONE: i16 = 0;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_REQUEST: i16 = 42;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const INVALID_RECORD: i16 = 87;

/// A replayed batch gets success with its original offset, a sequence gap
/// OUT_OF_ORDER_SEQUENCE_NUMBER, an old epoch INVALID_PRODUCER_EPOCH; across restarts.
#[test]
fn raw_sequence_rules_and_producer_ids() {
    const TOPIC: &str = "idem-raw";
    let mut broker = Broker::start();
    create_topics_at(&broker.bootstrap(), &[(TOPIC, 1)]);
    let mut raw = Raw::connect(&broker);

    // Fresh ids, epoch 0, never the same twice.
    let a = raw.init_producer_id(4, idempotent());
    let b = raw.init_producer_id(0, idempotent().with_transaction_timeout_ms(60_000));
    assert_eq!((a.error_code, a.producer_epoch), (NONE, 0));
    assert_eq!((b.error_code, b.producer_epoch), (NONE, 0));
    assert!(a.producer_id.0 >= 0 && a.producer_id != b.producer_id);
    let pid = a.producer_id.0;

    assert_eq!(raw.produce(TOPIC, batch(pid, 0, 0, 3)), (NONE, 0, None));
    assert_eq!(raw.produce(TOPIC, batch(pid, 0, 3, 2)), (NONE, 3, None));
    // Replays: success with the original offsets, nothing appended.
    assert_eq!(raw.produce(TOPIC, batch(pid, 0, 0, 3)), (NONE, 0, None));
    assert_eq!(raw.produce(TOPIC, batch(pid, 0, 3, 2)), (NONE, 3, None));
    // A gap.
    let (code, offset, message) = raw.produce(TOPIC, batch(pid, 0, 9, 1));
    assert_eq!((code, offset), (OUT_OF_ORDER_SEQUENCE_NUMBER, -1));
    assert!(message.unwrap_or_default().contains("expected 5"));
    // Two batches of one producer in one partition's records.
    let mut two = batch(pid, 0, 5, 1).to_vec();
    two.extend_from_slice(&batch(pid, 0, 6, 1));
    let (code, _, message) = raw.produce(TOPIC, Bytes::from(two));
    assert_eq!(code, INVALID_RECORD, "{message:?}");
    assert_eq!(raw.produce(TOPIC, batch(pid, 0, 5, 1)), (NONE, 5, None));

    // KIP-360: the same id, the next epoch; the old epoch is then fenced where it shows up.
    let bumped = raw.init_producer_id(
        4,
        idempotent()
            .with_producer_id(pid.into())
            .with_producer_epoch(0),
    );
    assert_eq!(
        (
            bumped.error_code,
            bumped.producer_id.0,
            bumped.producer_epoch
        ),
        (NONE, pid, 1)
    );
    assert_eq!(raw.produce(TOPIC, batch(pid, 1, 0, 2)), (NONE, 6, None));
    let (code, _, _) = raw.produce(TOPIC, batch(pid, 0, 6, 1));
    assert_eq!(code, INVALID_PRODUCER_EPOCH);
    // An id this broker never handed out gets a fresh one; half a pair is refused.
    let stranger = raw.init_producer_id(
        4,
        idempotent()
            .with_producer_id((1i64 << 40).into())
            .with_producer_epoch(3),
    );
    assert_eq!((stranger.error_code, stranger.producer_epoch), (NONE, 0));
    assert_ne!(stranger.producer_id.0, 1i64 << 40);
    let half = raw.init_producer_id(4, idempotent().with_producer_id(pid.into()));
    assert_eq!(half.error_code, INVALID_REQUEST);
    // Transactions are not built.
    let txn = raw.init_producer_id(
        4,
        InitProducerIdRequest::default()
            .with_transactional_id(Some(StrBytes::from_static_str("txn-1").into()))
            .with_transaction_timeout_ms(60_000),
    );
    assert_eq!(
        (txn.error_code, txn.producer_id.0),
        (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1)
    );
    let empty = raw.init_producer_id(4, InitProducerIdRequest::default());
    assert_eq!(
        empty.error_code, INVALID_REQUEST,
        "an empty transactional id"
    );

    // After a clean restart and after a crash, replays are still recognised and ids are new.
    for crash in [false, true] {
        if crash {
            broker.kill9();
            broker.start_again();
        } else {
            broker.restart();
        }
        let mut raw = Raw::connect(&broker);
        assert_eq!(
            raw.produce(TOPIC, batch(pid, 1, 0, 2)),
            (NONE, 6, None),
            "crash {crash}"
        );
        assert_eq!(
            raw.produce(TOPIC, batch(pid, 0, 5, 1)).0,
            INVALID_PRODUCER_EPOCH
        );
        let (code, _, _) = raw.produce(TOPIC, batch(pid, 1, 3, 1));
        assert_eq!(code, OUT_OF_ORDER_SEQUENCE_NUMBER);
        let fresh = raw.init_producer_id(3, idempotent());
        assert!(
            fresh.producer_id.0 > stranger.producer_id.0,
            "ids are never reused"
        );
    }
    let mut raw = Raw::connect(&broker);
    assert_eq!(raw.produce(TOPIC, batch(pid, 1, 2, 1)), (NONE, 8, None));
    broker.assert_running();
}

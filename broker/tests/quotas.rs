//! Limits on any one client, against a real broker: `max.connections.per.ip`,
//! `socket.request.max.bytes`, per client-id produce quotas (KIP-13, throttled as KIP-219
//! says: the answer carries `throttle_time_ms` and the connection is muted that long), and
//! dynamic quotas set with AlterClientQuotas (KIP-546; raw frames, since neither the Rust
//! client nor the pinned Python clients have the client quota admin calls).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, ProducerContext};
use rdkafka::Statistics;

use common::clients::{create_topics, produce_all, wait_for_topic, WAIT};
use common::quotas::{
    alter_quotas, described_for_client, produce_as, quota_entry, record_batch, roundtrip_as,
    Entity, INVALID_REQUEST,
};
use common::raw::{roundtrip, try_read_frame};
use common::{Broker, BrokerConfig};

// ------------------------------------------------------------------------------------------
// Raw protocol helpers

fn api_versions(stream: &mut TcpStream, correlation_id: i32) -> ApiVersionsResponse {
    roundtrip(
        stream,
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &ApiVersionsRequest::default(),
    )
}

/// True when the broker closed `stream` (a read gives EOF or a reset) within a few seconds.
fn is_closed(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}

/// One Fetch v12 of partition 0 from offset 0 as `client_id`: (record bytes, throttle ms).
fn fetch_as(
    stream: &mut TcpStream,
    client_id: &str,
    correlation_id: i32,
    topic: &str,
) -> (usize, i32) {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_log_start_offset(-1)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(10 << 20)])]);
    let response: FetchResponse = roundtrip_as(
        stream,
        client_id,
        ApiKey::Fetch,
        12,
        correlation_id,
        &request,
    );
    let part = response
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .expect("one partition in the response");
    assert_eq!(part.error_code, 0, "{part:?}");
    let bytes = part.records.as_ref().map_or(0, Bytes::len);
    (bytes, response.throttle_time_ms)
}

// ------------------------------------------------------------------------------------------
// Connection limits

/// `max.connections.per.ip = 3`: the fourth connection from 127.0.0.1 is closed right after
/// accept while the first three keep answering (whichever shard accepted them), and closing
/// one frees a slot.
#[test]
fn connections_over_max_per_ip_are_closed_and_a_close_frees_a_slot() {
    const MAX: usize = 3;
    let broker =
        Broker::start_with(BrokerConfig::default().set("max.connections.per.ip", &MAX.to_string()));
    let mut open: Vec<TcpStream> = Vec::new();
    for i in 0..MAX {
        // A connection the harness made while waiting for the broker may still be counted for
        // a moment after it closed: retry briefly.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut s = common::raw_connect(&broker);
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("read timeout");
            let cid = i32::try_from(i).expect("id");
            let answered = common::raw::try_roundtrip::<_, ApiVersionsResponse>(
                &mut s,
                ApiKey::ApiVersions,
                0,
                cid,
                &ApiVersionsRequest::default(),
            );
            if answered.is_ok() {
                open.push(s);
                break;
            }
            assert!(Instant::now() < deadline, "connection {i}: {answered:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut extra = common::raw_connect(&broker);
    // The request may or may not be written before the close; either way nothing answers.
    let _ = extra.write_all(&[0, 0, 0, 1, 0]);
    assert!(is_closed(&mut extra), "connection {} is closed", MAX + 1);
    for (i, s) in open.iter_mut().enumerate() {
        let resp = api_versions(s, 100 + i32::try_from(i).expect("id"));
        assert_eq!(resp.error_code, 0, "connection {i} still answers");
    }
    drop(open.pop());
    // The broker sees the close asynchronously: the slot is free soon after.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = common::raw_connect(&broker);
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let answered = common::raw::try_roundtrip::<_, ApiVersionsResponse>(
            &mut s,
            ApiKey::ApiVersions,
            0,
            7,
            &ApiVersionsRequest::default(),
        );
        if answered.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a closed connection never freed its slot: {answered:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A frame announcing more than `socket.request.max.bytes` is refused on its size prefix: the
/// broker closes the connection without waiting for (or reading) the body.
#[test]
fn an_oversized_request_is_refused_before_its_body_is_read() {
    let broker =
        Broker::start_with(BrokerConfig::default().set("socket.request.max.bytes", "1024"));
    let mut s = common::raw_connect(&broker);
    s.write_all(&2048i32.to_be_bytes()).expect("write size");
    // No body is ever sent: a broker that read it first would hang here, not close.
    assert!(is_closed(&mut s), "oversized frame closes the connection");
    // A frame at the limit is still read (and answered).
    let mut ok = common::raw_connect(&broker);
    let resp = api_versions(&mut ok, 1);
    assert_eq!(resp.error_code, 0);
    assert!(try_read_frame(&mut s).is_err());
}

// ------------------------------------------------------------------------------------------
// Client quotas

const QUOTA_BYTES_PER_S: usize = 100_000;

/// Raw Produce requests from client-id "greedy" over a 100 kB/s producer quota: once past the
/// one-second burst its answers carry throttle_time_ms > 0 and the connection answers nothing
/// more until that time has passed; client-id "polite", on the same broker meanwhile, is under
/// its own quota and is neither throttled nor delayed.
#[test]
fn a_greedy_client_is_throttled_and_muted_and_others_are_not() {
    const TOPIC: &str = "quota-raw";
    let broker = Broker::start_with(
        BrokerConfig::default().set("quota.producer.default", &QUOTA_BYTES_PER_S.to_string()),
    );
    create_topics(&broker, &[(TOPIC, 1)]);
    wait_for_topic(&broker, TOPIC, 1);
    let mut greedy = common::raw_connect(&broker);
    let mut polite = common::raw_connect(&broker);
    // 40 kB per request: the third takes greedy past its burst of 100 kB.
    let batch = record_batch(40, 1000);
    let mut throttles = Vec::new();
    let mut muted_for = Duration::ZERO;
    for i in 0..4 {
        let sent = Instant::now();
        let (error, throttle_ms) = produce_as(&mut greedy, "greedy", i, TOPIC, batch.clone());
        assert_eq!(error, 0, "request {i}");
        if let Some(&previous) = throttles.last() {
            if previous > 0 {
                // The answer to this request waited for the previous throttle.
                muted_for = sent.elapsed();
                assert!(
                    muted_for
                        >= Duration::from_millis(u64::try_from(previous).expect("ms") * 9 / 10),
                    "request {i} answered after {muted_for:?}, throttled {previous} ms before"
                );
            }
        }
        throttles.push(throttle_ms);
        // Meanwhile another client-id is answered at once, unthrottled.
        let started = Instant::now();
        let (error, polite_throttle) =
            produce_as(&mut polite, "polite", i, TOPIC, record_batch(1, 100));
        assert_eq!((error, polite_throttle), (0, 0), "polite request {i}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "polite waited {:?}",
            started.elapsed()
        );
    }
    assert_eq!(throttles[0], 0, "within the burst: {throttles:?}");
    assert!(
        throttles.iter().skip(2).all(|&t| t > 0),
        "past the burst greedy is throttled: {throttles:?}"
    );
    // ~40 kB over the quota at 100 kB/s: about 400 ms, never more than the cap.
    assert!(throttles.iter().all(|&t| t <= 10_000), "{throttles:?}");
    assert!(muted_for > Duration::ZERO, "{throttles:?}");
}

/// A consumer quota (`skein.quota.consumer.overrides` for client-id "reader"): a Fetch that
/// returns 300 kB to a 100 kB/s reader carries about two seconds of throttle_time_ms, and the
/// reader's next request is answered only after it; client-id "bystander" (no quota) fetching
/// the same bytes is not throttled.
#[test]
fn a_fetch_over_the_consumer_quota_is_throttled() {
    const TOPIC: &str = "quota-fetch";
    let broker = Broker::start_with(BrokerConfig::default().set(
        "skein.quota.consumer.overrides",
        &format!("\"reader:{QUOTA_BYTES_PER_S}\""),
    ));
    create_topics(&broker, &[(TOPIC, 1)]);
    wait_for_topic(&broker, TOPIC, 1);
    let mut writer = common::raw_connect(&broker);
    for i in 0..6 {
        let (error, throttle_ms) =
            produce_as(&mut writer, "writer", i, TOPIC, record_batch(50, 1000));
        assert_eq!((error, throttle_ms), (0, 0), "no producer quota");
    }
    let mut reader = common::raw_connect(&broker);
    let (bytes, throttle_ms) = fetch_as(&mut reader, "reader", 1, TOPIC);
    assert!(bytes >= 300_000, "{bytes}");
    // ~200 kB beyond the burst at 100 kB/s: about 2 s.
    assert!((1_500..=2_500).contains(&throttle_ms), "{throttle_ms}");
    let mut bystander = common::raw_connect(&broker);
    let (bytes, bystander_throttle) = fetch_as(&mut bystander, "bystander", 1, TOPIC);
    assert!(bytes >= 300_000, "{bytes}");
    assert_eq!(bystander_throttle, 0);
    let sent = Instant::now();
    let _ = api_versions(&mut reader, 2);
    let muted = sent.elapsed();
    assert!(
        muted >= Duration::from_millis(u64::try_from(throttle_ms).expect("ms") * 8 / 10),
        "the reader's next request was answered after {muted:?} (throttled {throttle_ms} ms)"
    );
}

/// Remembers the largest `throttle.max` librdkafka reported for any broker.
#[derive(Clone, Default)]
struct ThrottleSeen(Arc<Mutex<i64>>);

impl ClientContext for ThrottleSeen {
    fn stats(&self, statistics: Statistics) {
        let max = statistics
            .brokers
            .values()
            .filter_map(|b| b.throttle.as_ref())
            .map(|w| w.max)
            .max()
            .unwrap_or(0);
        let mut seen = self.0.lock().expect("lock");
        *seen = (*seen).max(max);
    }
}

impl ProducerContext for ThrottleSeen {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Sends `count` records of `value` to partition 0 and waits for every delivery; true when all
/// were delivered.
fn send_all(
    producer: &FutureProducer<ThrottleSeen>,
    topic: &str,
    count: usize,
    value: &[u8],
) -> bool {
    let records = (0..count)
        .map(|_| FutureRecord::to(topic).partition(0).payload(value))
        .collect();
    produce_all(producer, records).iter().all(Result::is_ok)
}

fn producer(
    broker: &Broker,
    client_id: &str,
    context: ThrottleSeen,
) -> FutureProducer<ThrottleSeen> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.bootstrap())
        .set("client.id", client_id)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("batch.size", "16384")
        .set("statistics.interval.ms", "200")
        .set("message.timeout.ms", "60000");
    config
        .create_with_context(context)
        .expect("create producer")
}

/// A librdkafka producer, client.id "greedy", over a 100 kB/s quota sending 800 kB: librdkafka
/// reports throttling, and the whole send takes about as long as the quota allows (at least
/// most of (800 - 100 burst) kB / 100 kB/s). Meanwhile client.id "other" (an override of 100
/// MB/s) sends the same amount, unthrottled and quickly.
#[test]
fn librdkafka_producer_is_held_near_its_quota_and_others_are_not() {
    const TOPIC: &str = "quota-rdkafka";
    const RECORDS: usize = 800;
    const VALUE_BYTES: usize = 1000;
    let broker = Broker::start_with(
        BrokerConfig::default()
            .set("quota.producer.default", &QUOTA_BYTES_PER_S.to_string())
            .set("skein.quota.producer.overrides", "\"other:100000000\""),
    );
    create_topics(&broker, &[(TOPIC, 1)]);
    wait_for_topic(&broker, TOPIC, 1);
    let value = vec![b'g'; VALUE_BYTES];

    let greedy_seen = ThrottleSeen::default();
    let greedy = producer(&broker, "greedy", greedy_seen.clone());
    let other_seen = ThrottleSeen::default();
    let other = producer(&broker, "other", other_seen.clone());

    let greedy_thread = {
        let value = value.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let delivered = send_all(&greedy, TOPIC, RECORDS, &value);
            (started.elapsed(), delivered, greedy)
        })
    };
    // Let greedy use up its burst first, then time the other client beside it.
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let other_delivered = send_all(&other, TOPIC, RECORDS, &value);
    let other_elapsed = started.elapsed();
    assert!(other_delivered, "other delivered");

    let (greedy_elapsed, greedy_ok, _greedy) = greedy_thread.join().expect("greedy thread");
    eprintln!("greedy: {greedy_elapsed:?}, other: {other_elapsed:?}");
    assert!(greedy_ok, "greedy delivered everything, only slower");
    let bytes = RECORDS * VALUE_BYTES;
    let floor = Duration::from_secs_f64(
        (bytes - QUOTA_BYTES_PER_S) as f64 / QUOTA_BYTES_PER_S as f64 * 0.7,
    );
    assert!(
        greedy_elapsed >= floor,
        "greedy sent {bytes} B in {greedy_elapsed:?}: faster than a {QUOTA_BYTES_PER_S} B/s quota allows (floor {floor:?})"
    );
    assert!(
        greedy_elapsed < WAIT,
        "greedy took {greedy_elapsed:?}: held back far below its quota"
    );
    assert!(
        other_elapsed < floor / 2,
        "other took {other_elapsed:?} for the same bytes (greedy took {greedy_elapsed:?})"
    );
    // Statistics arrive every 200 ms; give the last window a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while *greedy_seen.0.lock().expect("lock") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let greedy_throttle = *greedy_seen.0.lock().expect("lock");
    assert!(greedy_throttle > 0, "librdkafka saw no throttle for greedy");
    assert_eq!(
        *other_seen.0.lock().expect("lock"),
        0,
        "other was never throttled"
    );
}

// ------------------------------------------------------------------------------------------
// Dynamic client quotas (KIP-546)

/// Produces `count` records as `client_id` and reports (elapsed, largest throttle librdkafka
/// saw). The producer is passed in so that its connection stays open across a quota change.
fn timed_send(
    producer: &FutureProducer<ThrottleSeen>,
    seen: &ThrottleSeen,
    topic: &str,
    count: usize,
) -> (Duration, i64) {
    let value = vec![b'q'; 1000];
    let started = Instant::now();
    assert!(
        send_all(producer, topic, count, &value),
        "every record delivered"
    );
    let elapsed = started.elapsed();
    // Statistics arrive every 200 ms; give the last window a moment.
    std::thread::sleep(Duration::from_millis(500));
    let throttle = *seen.0.lock().expect("lock");
    (elapsed, throttle)
}

/// AlterClientQuotas sets `producer_byte_rate` = 100 kB/s for client-id "limited": a
/// librdkafka producer with that client.id is throttled and held near the rate while client.id
/// "free" sending beside it is not; DescribeClientQuotas shows it; it survives a restart;
/// removed, the same connected producer is no longer throttled. Bad entries get Kafka's
/// INVALID_REQUEST, and validate_only changes nothing.
#[test]
fn alter_client_quotas_throttles_a_client_id_until_removed_across_a_restart() {
    const TOPIC: &str = "quota-dynamic";
    const RECORDS: usize = 600;
    let mut broker = Broker::start();
    create_topics(&broker, &[(TOPIC, 1)]);
    wait_for_topic(&broker, TOPIC, 1);
    let limited: Entity<'_> = &[("client-id", Some("limited"))];
    let rate = QUOTA_BYTES_PER_S as f64;

    // Refused as Kafka refuses them; validate_only checks without changing anything.
    let answers = alter_quotas(
        &broker,
        vec![
            quota_entry(
                &[("client-id", Some("negative"))],
                &[("producer_byte_rate", Some(-1.0))],
            ),
            quota_entry(&[("ip", None)], &[("connection_creation_rate", Some(5.0))]),
            quota_entry(limited, &[("producer_byte_rate", Some(rate))]),
            // An entity named twice in one request: the second is refused.
            quota_entry(limited, &[("consumer_byte_rate", Some(rate))]),
        ],
        true,
    );
    let codes: Vec<i16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(
        codes,
        [INVALID_REQUEST, INVALID_REQUEST, 0, INVALID_REQUEST],
        "{answers:?}"
    );
    assert!(
        described_for_client(&broker, "limited").is_empty(),
        "validate_only"
    );

    let answers = alter_quotas(
        &broker,
        vec![quota_entry(limited, &[("producer_byte_rate", Some(rate))])],
        false,
    );
    assert_eq!(answers, [(0, None)]);
    assert_eq!(
        described_for_client(&broker, "limited"),
        [format!("producer_byte_rate={rate}")]
    );

    let floor = Duration::from_secs_f64(
        (RECORDS * 1000 - QUOTA_BYTES_PER_S) as f64 / QUOTA_BYTES_PER_S as f64 * 0.7,
    );
    let limited_seen = ThrottleSeen::default();
    let producer_limited = producer(&broker, "limited", limited_seen.clone());
    let free_seen = ThrottleSeen::default();
    let producer_free = producer(&broker, "free", free_seen.clone());
    let (free_elapsed, limited_result) = std::thread::scope(|scope| {
        let limited = scope.spawn(|| timed_send(&producer_limited, &limited_seen, TOPIC, RECORDS));
        // Let "limited" use up its burst, then time the bystander beside it.
        std::thread::sleep(Duration::from_millis(1500));
        let (free_elapsed, free_throttle) = timed_send(&producer_free, &free_seen, TOPIC, RECORDS);
        assert_eq!(free_throttle, 0, "the bystander was never throttled");
        (free_elapsed, limited.join().expect("limited thread"))
    });
    let (limited_elapsed, limited_throttle) = limited_result;
    eprintln!("limited: {limited_elapsed:?}, free: {free_elapsed:?}");
    assert!(
        limited_throttle > 0,
        "librdkafka saw no throttle for limited"
    );
    assert!(
        limited_elapsed >= floor,
        "limited sent {RECORDS} kB in {limited_elapsed:?} (floor {floor:?})"
    );
    assert!(
        limited_elapsed < WAIT,
        "held far below its quota: {limited_elapsed:?}"
    );
    assert!(
        free_elapsed < floor / 2,
        "free took {free_elapsed:?} (limited {limited_elapsed:?})"
    );
    drop((producer_limited, producer_free));

    // The quota is in the controller's metadata: a restart keeps it, and enforces it.
    broker.restart();
    wait_for_topic(&broker, TOPIC, 1);
    assert_eq!(
        described_for_client(&broker, "limited"),
        [format!("producer_byte_rate={rate}")]
    );
    let seen = ThrottleSeen::default();
    let producer_limited = producer(&broker, "limited", seen.clone());
    let (elapsed, throttle) = timed_send(&producer_limited, &seen, TOPIC, RECORDS);
    assert!(
        throttle > 0 && elapsed >= floor,
        "after a restart: {elapsed:?}, {throttle} ms"
    );

    // Removed: the same producer, still connected, is no longer throttled.
    let answers = alter_quotas(
        &broker,
        vec![quota_entry(limited, &[("producer_byte_rate", None)])],
        false,
    );
    assert_eq!(answers, [(0, None)]);
    assert!(described_for_client(&broker, "limited").is_empty());
    // Past the last throttle window librdkafka reported, count afresh.
    std::thread::sleep(Duration::from_millis(1000));
    *seen.0.lock().expect("lock") = 0;
    let (elapsed, throttle) = timed_send(&producer_limited, &seen, TOPIC, RECORDS);
    assert_eq!(
        throttle, 0,
        "throttled after the quota was removed ({elapsed:?})"
    );
    assert!(elapsed < floor / 2, "still held back: {elapsed:?}");
}

/// On a PLAINTEXT listener every connection is the principal User:ANONYMOUS, and a quota for
/// user "ANONYMOUS" applies to it: shared by all its client-ids, and ahead of a client-id
/// quota (Kafka's precedence), until a (user, client-id) quota names one client-id.
#[test]
fn user_quotas_apply_to_the_principal_ahead_of_client_id_quotas() {
    const TOPIC: &str = "quota-user";
    let broker = Broker::start();
    create_topics(&broker, &[(TOPIC, 1)]);
    wait_for_topic(&broker, TOPIC, 1);
    let anonymous: Entity<'_> = &[("user", Some("ANONYMOUS"))];
    let vip: Entity<'_> = &[("client-id", Some("vip"))];
    let answers = alter_quotas(
        &broker,
        vec![
            quota_entry(
                anonymous,
                &[("producer_byte_rate", Some(QUOTA_BYTES_PER_S as f64))],
            ),
            quota_entry(vip, &[("producer_byte_rate", Some(1e8))]),
        ],
        false,
    );
    assert_eq!(answers, [(0, None), (0, None)]);
    let batch = record_batch(60, 1000);
    let mut a = common::raw_connect(&broker);
    let mut b = common::raw_connect(&broker);
    assert_eq!(produce_as(&mut a, "a", 1, TOPIC, batch.clone()), (0, 0));
    let (error, throttle_ms) = produce_as(&mut b, "b", 1, TOPIC, batch.clone());
    assert_eq!(error, 0);
    assert!(
        throttle_ms > 0,
        "client-ids a and b share the user's budget"
    );
    // The user quota comes before vip's client-id quota...
    let mut v = common::raw_connect(&broker);
    let (_, throttle_ms) = produce_as(&mut v, "vip", 1, TOPIC, batch.clone());
    assert!(throttle_ms > 0, "the user quota applies to vip too");
    // ...and a (user, client-id) quota before the user's.
    let answers = alter_quotas(
        &broker,
        vec![quota_entry(
            &[("user", Some("ANONYMOUS")), ("client-id", Some("vip"))],
            &[("producer_byte_rate", Some(1e8))],
        )],
        false,
    );
    assert_eq!(answers, [(0, None)]);
    // A fresh connection: vip's old one is muted for the throttle it earned.
    let mut v = common::raw_connect(&broker);
    for i in 0..5 {
        assert_eq!(
            produce_as(&mut v, "vip", 2 + i, TOPIC, batch.clone()),
            (0, 0)
        );
    }
}

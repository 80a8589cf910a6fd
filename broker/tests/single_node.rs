//! Single-node `skein` against real clients: librdkafka through the `rdkafka` crate, and raw
//! Kafka frames (encoded with `kafka-protocol`) where a client library would hide the broker's
//! answer. Every test runs its own broker process (see `common`), so tests run in parallel.
//!
//! Expectations follow Apache Kafka's documented behaviour, not whatever skein does today.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use common::clients::{
    admin, block_on, client_config, consume_from_start, create_topics, expect_delivered,
    new_producer, payloads, produce_all, records, try_create_topics_at, wait_for_topic, WAIT,
};
use common::raw::{encode_request, read_response, record_batch, roundtrip, write_frame};
use common::{Broker, BrokerConfig};

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
const ACKS: [&str; 3] = ["0", "1", "all"];

// ------------------------------------------------------------------------------------------
// Client helpers

/// A consumer whose partitions are assigned by the test; nothing is committed. librdkafka's
/// assign() needs a group id even though no group protocol runs.
fn new_consumer(broker: &Broker) -> BaseConsumer {
    client_config(
        broker,
        &[
            ("group.id", "skein-test-assign-only"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "false"),
            ("auto.offset.reset", "earliest"),
        ],
    )
    .create()
    .expect("create consumer")
}

/// Assigns `partitions` at `offset` and polls until `count` records arrived, then keeps polling
/// a little to catch records beyond `count` (duplicates). Fails on consumer errors.
fn consume(
    consumer: &BaseConsumer,
    partitions: &[(&str, i32)],
    offset: Offset,
    count: usize,
) -> Vec<OwnedMessage> {
    let mut assignment = TopicPartitionList::new();
    for (topic, partition) in partitions {
        assignment
            .add_partition_offset(topic, *partition, offset)
            .expect("assignment");
    }
    consumer.assign(&assignment).expect("assign");
    let mut messages = Vec::with_capacity(count);
    let deadline = Instant::now() + WAIT;
    while messages.len() < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => messages.push(message.detach()),
            Some(Err(e)) => panic!("consumer error after {} records: {e}", messages.len()),
        }
    }
    assert_eq!(
        messages.len(),
        count,
        "records consumed from {partitions:?} at {offset:?}"
    );
    let quiet_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < quiet_until {
        if let Some(Ok(extra)) = consumer.poll(Duration::from_millis(100)) {
            panic!(
                "record beyond the expected {count}: {} [{}] @ {}",
                extra.topic(),
                extra.partition(),
                extra.offset()
            );
        }
    }
    messages
}

/// Records of one partition, in consume order.
fn of_partition<'a>(
    messages: &'a [OwnedMessage],
    topic: &str,
    partition: i32,
) -> Vec<&'a OwnedMessage> {
    messages
        .iter()
        .filter(|m| m.topic() == topic && m.partition() == partition)
        .collect()
}

fn payload(tag: &str, i: usize) -> Vec<u8> {
    // Compressible, different per record, and a few hundred bytes.
    let mut value = format!("{tag}-{i:06}|").into_bytes();
    for n in 0..12 {
        value.extend_from_slice(format!("skein payload {} ", (i * 31 + n) % 97).as_bytes());
    }
    value
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("millis fit i64")
}

fn text(bytes: Option<&[u8]>) -> String {
    String::from_utf8_lossy(bytes.unwrap_or(b"<null>")).into_owned()
}

// ------------------------------------------------------------------------------------------
// Raw protocol helpers

fn api_versions(stream: &mut TcpStream, correlation_id: i32) -> ApiVersionsResponse {
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("skein-test"))
        .with_client_software_version(StrBytes::from_static_str("0.1"));
    roundtrip(stream, ApiKey::ApiVersions, 3, correlation_id, &request)
}

fn produce_request(topic: &str, partition: i32, batch: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])])
}

/// Produce v9 (flexible, by topic name): the (error code, base offset) of the one partition.
fn raw_produce(
    stream: &mut TcpStream,
    correlation_id: i32,
    topic: &str,
    partition: i32,
) -> (i16, i64) {
    let request = produce_request(topic, partition, record_batch(&["raw-a", "raw-b"]));
    let response: ProduceResponse = roundtrip(stream, ApiKey::Produce, 9, correlation_id, &request);
    assert_eq!(
        response.responses.len(),
        1,
        "one topic in the response: {response:?}"
    );
    let topic_response = &response.responses[0];
    assert_eq!(topic_response.name.0.as_str(), topic);
    assert_eq!(topic_response.partition_responses.len(), 1, "{response:?}");
    let part = &topic_response.partition_responses[0];
    assert_eq!(part.index, partition);
    (part.error_code, part.base_offset)
}

// ------------------------------------------------------------------------------------------
// Tests

/// Every compression codec with every acks level: what was acknowledged is read back whole,
/// in order, at dense offsets from 0, with keys, values, headers and CreateTime timestamps.
#[test]
fn every_codec_and_acks_level_round_trips() {
    const PER_TOPIC: usize = 200;
    let broker = Broker::start();
    let mut topics = Vec::new();
    for codec in CODECS {
        for acks in ACKS {
            topics.push((format!("rt-{codec}-acks-{acks}"), codec, acks));
        }
    }
    let specs: Vec<(&str, i32)> = topics.iter().map(|(t, _, _)| (t.as_str(), 1)).collect();
    create_topics(&broker, &specs);
    for (topic, _, _) in &topics {
        wait_for_topic(&broker, topic, 1);
    }

    let keys: Vec<String> = (0..PER_TOPIC).map(|i| format!("k{i:04}")).collect();
    let timestamp = now_ms() - 60_000;
    for (topic, codec, acks) in &topics {
        let producer = new_producer(&broker, &[("compression.type", codec), ("acks", acks)]);
        let values: Vec<Vec<u8>> = (0..PER_TOPIC).map(|i| payload(codec, i)).collect();
        let records = (0..PER_TOPIC)
            .map(|i| {
                let mut record = FutureRecord::to(topic)
                    .partition(0)
                    .key(keys[i].as_str())
                    .payload(values[i].as_slice())
                    .timestamp(timestamp + i64::try_from(i).expect("i"));
                if i % 7 == 0 {
                    record = record.headers(OwnedHeaders::new().insert(Header {
                        key: "n",
                        value: Some(keys[i].as_str()),
                    }));
                }
                record
            })
            .collect();
        let delivered = expect_delivered(produce_all(&producer, records));
        if *acks != "0" {
            // With acks >= 1 the broker reports each record's offset: dense from 0.
            for (i, (partition, offset)) in delivered.iter().enumerate() {
                assert_eq!(*partition, 0, "{topic}: record #{i} partition");
                assert_eq!(
                    *offset,
                    i64::try_from(i).expect("i"),
                    "{topic}: record #{i} offset"
                );
            }
        }
    }

    let consumer = new_consumer(&broker);
    let partitions: Vec<(&str, i32)> = topics.iter().map(|(t, _, _)| (t.as_str(), 0)).collect();
    let messages = consume(
        &consumer,
        &partitions,
        Offset::Beginning,
        PER_TOPIC * topics.len(),
    );
    for (topic, codec, _) in &topics {
        let got = of_partition(&messages, topic, 0);
        assert_eq!(got.len(), PER_TOPIC, "{topic}: records");
        for (i, message) in got.iter().enumerate() {
            let want_offset = i64::try_from(i).expect("i");
            assert_eq!(
                message.offset(),
                want_offset,
                "{topic}: offset of record #{i}"
            );
            assert_eq!(
                message.key(),
                Some(keys[i].as_bytes()),
                "{topic}: key at {want_offset}"
            );
            assert_eq!(
                message.payload(),
                Some(payload(codec, i).as_slice()),
                "{topic}: value at {want_offset}"
            );
            assert_eq!(
                message.timestamp(),
                Timestamp::CreateTime(timestamp + want_offset),
                "{topic}: timestamp at {want_offset}"
            );
            let headers: Vec<(String, String)> = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), text(h.value)))
                        .collect()
                })
                .unwrap_or_default();
            if i % 7 == 0 {
                assert_eq!(
                    headers,
                    vec![("n".to_string(), keys[i].clone())],
                    "{topic}@{i}"
                );
            } else {
                assert!(
                    headers.is_empty(),
                    "{topic}: unexpected headers at {i}: {headers:?}"
                );
            }
        }
    }
}

/// Offset::Beginning, Offset::End and ListOffsets by timestamp (offsets_for_times), and the
/// watermarks, on one partition whose records carry known CreateTime timestamps.
#[test]
fn consume_from_beginning_latest_and_by_timestamp() {
    const TOPIC: &str = "positions";
    let broker = Broker::start();
    create_topics(&broker, &[(TOPIC, 1)]);
    wait_for_topic(&broker, TOPIC, 1);
    let producer = new_producer(&broker, &[("acks", "all")]);
    let base = (now_ms() - 3_600_000) / 1000 * 1000;
    let keys: Vec<String> = (0..13).map(|i| format!("k{i}")).collect();
    let record = |i: usize| {
        FutureRecord::<str, [u8]>::to(TOPIC)
            .partition(0)
            .key(keys[i].as_str())
            .payload(keys[i].as_bytes())
            .timestamp(base + 1000 * i64::try_from(i).expect("i"))
    };
    expect_delivered(produce_all(&producer, (0..10).map(record).collect()));

    // From the beginning: all ten, with their timestamps.
    let from_start = consume(&new_consumer(&broker), &[(TOPIC, 0)], Offset::Beginning, 10);
    for (i, message) in from_start.iter().enumerate() {
        assert_eq!(message.key(), Some(keys[i].as_bytes()));
        assert_eq!(
            message.timestamp(),
            Timestamp::CreateTime(base + 1000 * i as i64)
        );
    }

    // ListOffsets by timestamp: the earliest offset whose timestamp is >= the query.
    let lookup = new_consumer(&broker);
    let cases = [
        (base - 5_000, Offset::Offset(0)),
        (base, Offset::Offset(0)),
        (base + 4_500, Offset::Offset(5)),
        (base + 9_000, Offset::Offset(9)),
        (base + 60_000, Offset::End), // after the last record: -1, "no such offset"
    ];
    for (timestamp, want) in cases {
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset(TOPIC, 0, Offset::Offset(timestamp))
            .expect("query");
        let answer = lookup
            .offsets_for_times(query, WAIT)
            .expect("offsets_for_times");
        let got = answer
            .find_partition(TOPIC, 0)
            .expect("partition in answer");
        assert!(
            got.error().is_ok(),
            "offsets_for_times({timestamp}): {:?}",
            got.error()
        );
        assert_eq!(
            got.offset(),
            want,
            "offsets_for_times(base + {})",
            timestamp - base
        );
    }
    let from_time = consume(&new_consumer(&broker), &[(TOPIC, 0)], Offset::Offset(5), 5);
    assert_eq!(from_time[0].offset(), 5);
    assert_eq!(from_time[0].key(), Some(b"k5".as_slice()));

    assert_eq!(
        lookup.fetch_watermarks(TOPIC, 0, WAIT).expect("watermarks"),
        (0, 10)
    );

    // From the end: nothing old, then exactly what is produced after the position is resolved.
    let tail = new_consumer(&broker);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::End)
        .expect("assignment");
    tail.assign(&assignment).expect("assign at end");
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        if let Some(Ok(m)) = tail.poll(Duration::from_millis(100)) {
            panic!(
                "consumer at Offset::End got an old record at offset {}",
                m.offset()
            );
        }
    }
    expect_delivered(produce_all(&producer, (10..13).map(record).collect()));
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < 3 && Instant::now() < deadline {
        if let Some(result) = tail.poll(Duration::from_millis(200)) {
            got.push(result.expect("consume from end").detach());
        }
    }
    let offsets: Vec<i64> = got.iter().map(|m| m.offset()).collect();
    assert_eq!(offsets, vec![10, 11, 12], "records after Offset::End");
}

/// 16 partitions on a 2-shard broker: Metadata lists all of them with a leader, every partition
/// keeps its own dense, ordered offsets, and everything is read back per partition in order.
#[test]
fn sixteen_partitions_on_two_shards_keep_order() {
    const TOPIC: &str = "wide";
    const PARTITIONS: i32 = 16;
    const PER_PARTITION: usize = 150;
    let broker = Broker::start_with(BrokerConfig::default().shards(&common::default_shards()));
    create_topics(&broker, &[(TOPIC, PARTITIONS)]);
    wait_for_topic(&broker, TOPIC, PARTITIONS as usize);

    let metadata = new_consumer(&broker)
        .fetch_metadata(Some(TOPIC), WAIT)
        .expect("metadata");
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == TOPIC)
        .expect("topic listed");
    let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..PARTITIONS).collect::<Vec<_>>(), "partition ids");
    assert!(
        topic.partitions().iter().all(|p| p.leader() == 1),
        "node 1 leads every partition"
    );

    let producer = new_producer(&broker, &[("acks", "all"), ("compression.type", "lz4")]);
    let keys: Vec<Vec<String>> = (0..PARTITIONS)
        .map(|p| (0..PER_PARTITION).map(|i| format!("p{p}-{i:04}")).collect())
        .collect();
    // Interleave partitions so that every request carries many of them.
    let mut records = Vec::new();
    for i in 0..PER_PARTITION {
        for (p, partition_keys) in (0..PARTITIONS).zip(&keys) {
            let key = partition_keys[i].as_str();
            records.push(
                FutureRecord::to(TOPIC)
                    .partition(p)
                    .key(key)
                    .payload(key.as_bytes()),
            );
        }
    }
    let delivered = expect_delivered(produce_all(&producer, records));
    let mut next_offset = vec![0i64; PARTITIONS as usize];
    for (partition, offset) in delivered {
        let slot = &mut next_offset[usize::try_from(partition).expect("partition")];
        assert_eq!(
            offset, *slot,
            "partition {partition}: offsets dense and in send order"
        );
        *slot += 1;
    }

    let partitions: Vec<(&str, i32)> = (0..PARTITIONS).map(|p| (TOPIC, p)).collect();
    let total = PER_PARTITION * PARTITIONS as usize;
    let messages = consume(
        &new_consumer(&broker),
        &partitions,
        Offset::Beginning,
        total,
    );
    for p in 0..PARTITIONS {
        let got = of_partition(&messages, TOPIC, p);
        let got_keys: Vec<String> = got.iter().map(|m| text(m.key())).collect();
        assert_eq!(
            got_keys, keys[p as usize],
            "partition {p}: records in order"
        );
        let offsets: Vec<i64> = got.iter().map(|m| m.offset()).collect();
        assert_eq!(
            offsets,
            (0..PER_PARTITION as i64).collect::<Vec<_>>(),
            "partition {p}"
        );
    }
    let watermarks = new_consumer(&broker);
    for p in 0..PARTITIONS {
        let marks = watermarks
            .fetch_watermarks(TOPIC, p, WAIT)
            .expect("watermarks");
        assert_eq!(marks, (0, PER_PARTITION as i64), "partition {p} watermarks");
    }
}

/// Acknowledged (acks=all) records survive a graceful restart and a kill -9; offsets continue
/// after the restart instead of starting over.
#[test]
fn restart_and_crash_keep_acknowledged_records() {
    const TOPIC: &str = "durable";
    const PARTITIONS: i32 = 4;
    let mut broker = Broker::start();
    create_topics(&broker, &[(TOPIC, PARTITIONS)]);
    wait_for_topic(&broker, TOPIC, PARTITIONS as usize);

    let produce_round = |broker: &Broker, round: &str, count: usize| {
        let producer = new_producer(broker, &[("acks", "all"), ("compression.type", "gzip")]);
        let keys: Vec<String> = (0..count).map(|i| format!("{round}-{i:04}")).collect();
        let records = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let partition = i32::try_from(i).expect("i") % PARTITIONS;
                FutureRecord::<str, [u8]>::to(TOPIC)
                    .partition(partition)
                    .key(key.as_str())
                    .payload(key.as_bytes())
            })
            .collect();
        expect_delivered(produce_all(&producer, records))
    };
    let read_all = |broker: &Broker, count: usize| -> Vec<Vec<String>> {
        let partitions: Vec<(&str, i32)> = (0..PARTITIONS).map(|p| (TOPIC, p)).collect();
        let messages = consume(&new_consumer(broker), &partitions, Offset::Beginning, count);
        (0..PARTITIONS)
            .map(|p| {
                let got = of_partition(&messages, TOPIC, p);
                for (i, m) in got.iter().enumerate() {
                    assert_eq!(m.offset(), i as i64, "partition {p}: dense offsets");
                }
                got.iter().map(|m| text(m.key())).collect()
            })
            .collect()
    };
    let expected = |rounds: &[(&str, usize)]| -> Vec<Vec<String>> {
        let mut per_partition = vec![Vec::new(); PARTITIONS as usize];
        for (round, count) in rounds {
            for i in 0..*count {
                per_partition[i % PARTITIONS as usize].push(format!("{round}-{i:04}"));
            }
        }
        per_partition
    };

    produce_round(&broker, "before", 400);
    assert_eq!(read_all(&broker, 400), expected(&[("before", 400)]));

    broker.restart();
    wait_for_topic(&broker, TOPIC, PARTITIONS as usize);
    assert_eq!(
        read_all(&broker, 400),
        expected(&[("before", 400)]),
        "after a restart"
    );
    let delivered = produce_round(&broker, "after", 80);
    for (partition, offset) in &delivered[..PARTITIONS as usize] {
        assert_eq!(
            *offset, 100,
            "partition {partition}: first offset after the restart"
        );
    }

    broker.kill9();
    broker.start_again();
    wait_for_topic(&broker, TOPIC, PARTITIONS as usize);
    assert_eq!(
        read_all(&broker, 480),
        expected(&[("before", 400), ("after", 80)]),
        "after kill -9"
    );
    let marks = new_consumer(&broker);
    for p in 0..PARTITIONS {
        assert_eq!(
            marks.fetch_watermarks(TOPIC, p, WAIT).expect("watermarks"),
            (0, 120)
        );
    }
    broker.assert_running();
}

/// With auto.create.topics.enable (Kafka's default) a produce to an unknown topic creates it with
/// num.partitions partitions; with it off, the topic is refused and not created.
#[test]
fn produce_to_new_topic_auto_creates_it_only_when_enabled() {
    const TOPIC: &str = "made-on-demand";
    let broker = Broker::start_with(BrokerConfig::default().set("num.partitions", "3"));
    let producer = new_producer(&broker, &[("acks", "all")]);
    let keys: Vec<String> = (0..60).map(|i| format!("auto-{i}")).collect();
    let records = keys
        .iter()
        .map(|k| {
            FutureRecord::<str, [u8]>::to(TOPIC)
                .key(k.as_str())
                .payload(k.as_bytes())
        })
        .collect();
    let delivered = expect_delivered(produce_all(&producer, records));
    assert!(
        delivered.iter().all(|(p, _)| (0..3).contains(p)),
        "partitions: {delivered:?}"
    );
    wait_for_topic(&broker, TOPIC, 3);
    let partitions: Vec<(&str, i32)> = (0..3).map(|p| (TOPIC, p)).collect();
    let messages = consume(
        &new_consumer(&broker),
        &partitions,
        Offset::Beginning,
        keys.len(),
    );
    let mut got: Vec<String> = messages.iter().map(|m| text(m.key())).collect();
    got.sort();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(got, want);

    let closed =
        Broker::start_with(BrokerConfig::default().set("auto.create.topics.enable", "false"));
    let refused_producer = new_producer(
        &closed,
        &[
            ("message.timeout.ms", "15000"),
            ("topic.metadata.propagation.max.ms", "1000"),
        ],
    );
    let record = FutureRecord::<str, [u8]>::to("never-created").payload(b"x".as_slice());
    match produce_all(&refused_producer, vec![record]).remove(0) {
        Ok(delivery) => panic!("produce to an unknown topic succeeded: {delivery:?}"),
        Err((e, _)) => assert!(
            matches!(
                e.rdkafka_error_code(),
                Some(RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownTopicOrPartition)
            ),
            "produce to an unknown topic with auto-create off: {e}"
        ),
    }
    let metadata = new_consumer(&closed).fetch_metadata(Some("never-created"), WAIT);
    if let Ok(metadata) = metadata {
        for topic in metadata
            .topics()
            .iter()
            .filter(|t| t.name() == "never-created")
        {
            assert!(
                topic.error().is_some() && topic.partitions().is_empty(),
                "topic exists although auto-create is off: {} partitions",
                topic.partitions().len()
            );
        }
    }
}

/// A produce to a partition the topic does not have: librdkafka refuses it locally
/// (UnknownPartition), and the broker answers a raw ProduceRequest with
/// UNKNOWN_TOPIC_OR_PARTITION (3) while the same request to a real partition succeeds.
#[test]
fn produce_to_missing_partition_is_refused() {
    const TOPIC: &str = "two-partitions";
    let broker = Broker::start();
    create_topics(&broker, &[(TOPIC, 2)]);
    wait_for_topic(&broker, TOPIC, 2);

    let producer = new_producer(&broker, &[("acks", "all")]);
    producer
        .client()
        .fetch_metadata(Some(TOPIC), WAIT)
        .expect("producer learns the topic");
    let record = FutureRecord::<str, [u8]>::to(TOPIC)
        .partition(7)
        .payload(b"nowhere".as_slice());
    let refused = match producer.send_result(record) {
        Err((e, _)) => e,
        Ok(future) => match block_on(future).expect("delivery future") {
            Ok(delivery) => panic!("produce to partition 7 of 2 succeeded: {delivery:?}"),
            Err((e, _)) => e,
        },
    };
    assert_eq!(
        refused.rdkafka_error_code(),
        Some(RDKafkaErrorCode::UnknownPartition),
        "librdkafka error for partition 7: {refused}"
    );

    let mut stream = common::raw_connect(&broker);
    let versions = api_versions(&mut stream, 1);
    assert_eq!(versions.error_code, 0, "ApiVersions error");
    let produce = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .expect("Produce advertised");
    assert!(
        produce.min_version <= 9 && 9 <= produce.max_version,
        "Produce v9: {produce:?}"
    );
    let (error, _) = raw_produce(&mut stream, 2, TOPIC, 7);
    assert_eq!(
        error, 3,
        "error code for Produce to partition 7 (UNKNOWN_TOPIC_OR_PARTITION)"
    );
    let (error, base_offset) = raw_produce(&mut stream, 3, TOPIC, 1);
    assert_eq!(error, 0, "Produce to partition 1");
    assert_eq!(base_offset, 0, "first batch of partition 1");
    let (error, base_offset) = raw_produce(&mut stream, 4, TOPIC, 1);
    assert_eq!(
        (error, base_offset),
        (0, 2),
        "second batch of partition 1 (2 records before)"
    );
}

/// Garbage on raw connections (oversized, negative and nonsense frames, unknown API key,
/// truncated body, mid-frame hang-up) never disturbs a client working beside it, and the broker
/// keeps answering new connections. Oversized and negative frame sizes close the connection.
#[test]
fn garbage_on_raw_connections_does_not_disturb_other_clients() {
    const TOPIC: &str = "bystander";
    let mut broker = Broker::start();
    create_topics(&broker, &[(TOPIC, 1)]);
    wait_for_topic(&broker, TOPIC, 1);
    let producer = new_producer(&broker, &[("acks", "all")]);
    let bystander = new_consumer(&broker);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .expect("assignment");
    bystander.assign(&assignment).expect("assign");

    let mut sent = 0usize;
    let mut received = Vec::new();
    let mut exchange = |round: &str| {
        let keys: Vec<String> = (0..20).map(|i| format!("{round}-{i}")).collect();
        let records = keys
            .iter()
            .map(|k| {
                FutureRecord::<str, [u8]>::to(TOPIC)
                    .partition(0)
                    .key(k.as_str())
                    .payload(k.as_bytes())
            })
            .collect();
        expect_delivered(produce_all(&producer, records));
        sent += keys.len();
        let deadline = Instant::now() + WAIT;
        while received.len() < sent && Instant::now() < deadline {
            if let Some(result) = bystander.poll(Duration::from_millis(100)) {
                let message = result.expect("bystander consumer error");
                received.push(text(message.key()));
            }
        }
        assert_eq!(received.len(), sent, "bystander after {round}");
    };
    exchange("before");

    // 1. A frame size far beyond socket.request.max.bytes: the broker closes the connection.
    let mut oversized = common::raw_connect(&broker);
    oversized
        .write_all(&0x7fff_fff0_i32.to_be_bytes())
        .expect("write");
    oversized.write_all(&[0u8; 64]).expect("write");
    assert_closed(&mut oversized, "oversized frame");
    // 2. A negative frame size: closed too.
    let mut negative = common::raw_connect(&broker);
    negative.write_all(&(-5i32).to_be_bytes()).expect("write");
    assert_closed(&mut negative, "negative frame size");
    // 3. A complete frame of nonsense (no valid request header).
    let mut nonsense = common::raw_connect(&broker);
    let junk: Vec<u8> = (0..48u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write_frame(&mut nonsense, &junk);
    assert_answered_or_closed(&mut nonsense, "a frame of nonsense");
    // 4. A well-formed header with an API key that does not exist.
    let mut unknown_api = common::raw_connect(&broker);
    let mut frame = BytesMut::new();
    frame.put_i16(999);
    frame.put_i16(0);
    frame.put_i32(77);
    frame.put_i16(-1); // null client id
    write_frame(&mut unknown_api, &frame);
    assert_answered_or_closed(&mut unknown_api, "unknown API key 999");
    // 5. A Produce v9 header whose body stops short.
    let mut truncated = common::raw_connect(&broker);
    let whole = encode_request(
        ApiKey::Produce,
        9,
        5,
        &produce_request(TOPIC, 0, record_batch(&["t"])),
    );
    write_frame(&mut truncated, &whole[..whole.len() / 2]);
    assert_answered_or_closed(&mut truncated, "a truncated Produce body");
    // 6. Half a frame, then hang up.
    let mut hang_up = common::raw_connect(&broker);
    hang_up.write_all(&100i32.to_be_bytes()).expect("write");
    hang_up.write_all(&[1, 2, 3]).expect("write");
    drop(hang_up);

    broker.assert_running();
    exchange("after");
    assert_eq!(received.len(), 40);
    // A new connection is served normally.
    let mut fresh = common::raw_connect(&broker);
    assert_eq!(
        api_versions(&mut fresh, 9).error_code,
        0,
        "ApiVersions after the garbage"
    );
    broker.assert_running();
}

/// Fetch v12 of `partitions` (all from offset 0).
fn fetch_request(
    topic: &str,
    partitions: &[i32],
    (min_bytes, max_wait_ms): (i32, i32),
    max_bytes: i32,
    partition_max_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(0)
                            .with_log_start_offset(-1)
                            .with_current_leader_epoch(-1)
                            .with_partition_max_bytes(partition_max_bytes)
                    })
                    .collect(),
            )])
}

/// Per partition of a Fetch response: (error code, high watermark, base offsets of the
/// batches returned).
fn fetched(response: &FetchResponse, partitions: &[i32]) -> Vec<(i16, i64, Vec<i64>)> {
    let parts = &response.responses[0].partitions;
    assert_eq!(parts.len(), partitions.len(), "{response:?}");
    parts
        .iter()
        .zip(partitions)
        .map(|(part, &p)| {
            assert_eq!(part.partition_index, p, "answered in request order");
            let mut records = part.records.clone().unwrap_or_default();
            let mut bases = Vec::new();
            // A batch: base offset (8 bytes), length of the rest (4), the rest.
            while records.len() >= 12 {
                let base = i64::from_be_bytes(records[..8].try_into().expect("8 bytes"));
                let len = u32::from_be_bytes(records[8..12].try_into().expect("4 bytes"));
                let batch = records.split_to(12 + len as usize);
                assert_eq!(batch.len(), 12 + len as usize, "whole batches only");
                bases.push(base);
            }
            assert!(records.is_empty(), "whole batches only");
            (part.error_code, part.high_watermark, bases)
        })
        .collect()
}

/// Fetch v12 (min_bytes 1, no wait) of `partitions` from offset 0: see [`fetched`].
fn raw_fetch(
    stream: &mut TcpStream,
    correlation_id: i32,
    topic: &str,
    partitions: &[i32],
    max_bytes: i32,
    partition_max_bytes: i32,
) -> Vec<(i16, i64, Vec<i64>)> {
    let request = fetch_request(topic, partitions, (1, 0), max_bytes, partition_max_bytes);
    let response: FetchResponse = roundtrip(stream, ApiKey::Fetch, 12, correlation_id, &request);
    fetched(&response, partitions)
}

/// Fetch's `max_bytes` spans the partitions in request order (Kafka's rule, KIP-74): an empty
/// partition leaves the budget to the ones after it, the first batch found comes back whole
/// even past the budget, a partition whose next batch no longer fits gets no records, and
/// every partition still reports its high watermark.
#[test]
fn fetch_max_bytes_spans_partitions_in_request_order() {
    const TOPIC: &str = "fetch-budget";
    let broker = Broker::start();
    create_topics(&broker, &[(TOPIC, 4)]);
    wait_for_topic(&broker, TOPIC, 4);
    let mut stream = common::raw_connect(&broker);
    // Partitions 1-3 get three one-record batches (offsets 0, 1, 2); 0 stays empty.
    let batch = record_batch(&[vec![b'v'; 6000]]);
    let mut correlation_id = 0;
    for partition in 1..4 {
        for offset in 0..3 {
            correlation_id += 1;
            let request = produce_request(TOPIC, partition, batch.clone());
            let response: ProduceResponse =
                roundtrip(&mut stream, ApiKey::Produce, 9, correlation_id, &request);
            let part = &response.responses[0].partition_responses[0];
            assert_eq!(
                (part.error_code, part.base_offset),
                (0, offset),
                "{response:?}"
            );
        }
    }
    let batch_bytes = batch.len() as i32;
    let all = [0, 1, 2, 3];
    let fetch = |stream: &mut TcpStream, id, max_bytes, partition_max_bytes| {
        raw_fetch(stream, id, TOPIC, &all, max_bytes, partition_max_bytes)
    };
    // Room for one batch of each of two partitions and part of a third: partition 0 has
    // nothing, 1 and 2 one batch each (two exceed the partition limit), 3's does not fit.
    let got = fetch(
        &mut stream,
        100,
        2 * batch_bytes + batch_bytes / 2,
        batch_bytes + 100,
    );
    assert_eq!(
        got,
        vec![
            (0, 0, vec![]),
            (0, 3, vec![0]),
            (0, 3, vec![0]),
            (0, 3, vec![])
        ]
    );
    // Everything fits: every batch of every partition.
    let got = fetch(&mut stream, 101, 10 << 20, 1 << 20);
    assert_eq!(
        got,
        vec![
            (0, 0, vec![]),
            (0, 3, vec![0, 1, 2]),
            (0, 3, vec![0, 1, 2]),
            (0, 3, vec![0, 1, 2])
        ]
    );
    // A budget of 0 bytes still returns the first batch found, and only that.
    let got = fetch(&mut stream, 102, 0, 1 << 20);
    assert_eq!(
        got,
        vec![
            (0, 0, vec![]),
            (0, 3, vec![0]),
            (0, 3, vec![]),
            (0, 3, vec![])
        ]
    );
}

/// A consumer long-polling for more bytes than there are (`fetch.min.bytes`) waits for more to
/// arrive or for `max_wait_ms`, and meanwhile its shard serves everyone else; it then gets
/// what there is. (A fetch that re-read at once while some data was there held its shard for
/// the whole wait.)
#[test]
fn a_fetch_waiting_for_min_bytes_leaves_its_shard_to_others() {
    const TOPIC: &str = "min-bytes";
    let broker = Broker::start_with(BrokerConfig::default().shards("0"));
    create_topics(&broker, &[(TOPIC, 1)]);
    wait_for_topic(&broker, TOPIC, 1);
    let mut other = common::raw_connect(&broker);
    let request = produce_request(TOPIC, 0, record_batch(&["small"]));
    let response: ProduceResponse = roundtrip(&mut other, ApiKey::Produce, 9, 1, &request);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);

    let mut consumer = common::raw_connect(&broker);
    let max_wait = Duration::from_millis(3000);
    let request = fetch_request(TOPIC, &[0], (1 << 20, 3000), 50 << 20, 1 << 20);
    let sent = Instant::now();
    write_frame(
        &mut consumer,
        &encode_request(ApiKey::Fetch, 12, 2, &request),
    );
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    api_versions(&mut other, 3);
    let answered_in = asked.elapsed();
    let (correlation_id, response): (i32, FetchResponse) =
        read_response(&mut consumer, ApiKey::Fetch, 12);
    let waited = sent.elapsed();
    assert_eq!(correlation_id, 2);
    assert_eq!(fetched(&response, &[0]), vec![(0, 1, vec![0])]);
    assert!(
        waited >= max_wait - Duration::from_millis(100),
        "the fetch waited for more bytes: {waited:?}"
    );
    // Generous: the point is "not held for the rest of the fetch's 3 s wait".
    assert!(
        answered_in < Duration::from_millis(1500),
        "ApiVersions on the same shard took {answered_in:?} while a fetch waited"
    );
}

/// A client may send requests without waiting for answers (librdkafka keeps several on the
/// wire): they are handled in the order sent and answered in that order, and the ones sent
/// before a bad frame are all handled and answered before the connection closes.
#[test]
fn pipelined_requests_are_handled_and_answered_in_order() {
    const TOPIC: &str = "pipelined";
    const PRODUCES: i32 = 12;
    let broker = Broker::start();
    create_topics(&broker, &[(TOPIC, 1)]);
    wait_for_topic(&broker, TOPIC, 1);
    let mut stream = common::raw_connect(&broker);
    // Large enough that several are read while one is still being appended.
    let values: Vec<Vec<u8>> = (0..64).map(|i| vec![b'a' + (i % 26) as u8; 4096]).collect();
    let mut sent = Vec::new();
    for i in 1..=PRODUCES {
        let request = produce_request(TOPIC, 0, record_batch(&values));
        sent.extend_from_slice(&frame(&encode_request(ApiKey::Produce, 9, i, &request)));
    }
    let versions = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("skein-test"))
        .with_client_software_version(StrBytes::from_static_str("0.1"));
    sent.extend_from_slice(&frame(&encode_request(
        ApiKey::ApiVersions,
        3,
        PRODUCES + 1,
        &versions,
    )));
    // Then a frame size far beyond socket.request.max.bytes.
    sent.extend_from_slice(&0x7fff_fff0_i32.to_be_bytes());
    stream
        .write_all(&sent)
        .expect("write the pipelined requests");

    for i in 1..=PRODUCES {
        let (correlation_id, response): (i32, ProduceResponse) =
            read_response(&mut stream, ApiKey::Produce, 9);
        assert_eq!(correlation_id, i, "answers come in the order sent");
        let part = &response.responses[0].partition_responses[0];
        assert_eq!(part.error_code, 0, "{response:?}");
        assert_eq!(
            part.base_offset,
            i64::from(i - 1) * values.len() as i64,
            "handled in the order sent"
        );
    }
    let (correlation_id, response): (i32, ApiVersionsResponse) =
        read_response(&mut stream, ApiKey::ApiVersions, 3);
    assert_eq!((correlation_id, response.error_code), (PRODUCES + 1, 0));
    assert_closed(&mut stream, "oversized frame after pipelined requests");
    let consumer = new_consumer(&broker);
    let records = consume(
        &consumer,
        &[(TOPIC, 0)],
        Offset::Beginning,
        PRODUCES as usize * values.len(),
    );
    for (offset, record) in records.iter().enumerate() {
        assert_eq!(record.offset(), offset as i64);
        assert_eq!(record.payload(), Some(&values[offset % values.len()][..]));
    }
}

/// A request body with its size prefix.
fn frame(body: &[u8]) -> Vec<u8> {
    let size = i32::try_from(body.len()).expect("frame size");
    [&size.to_be_bytes()[..], body].concat()
}

/// The broker must close the connection (EOF or reset) within the read timeout.
fn assert_closed(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue, // an error response before closing is fine
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{what}: connection still open after the read timeout ({e})"),
        }
    }
}

/// The broker must react to a complete bad frame: answer it or close, not leave it hanging.
fn assert_answered_or_closed(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{what}: no answer and no close within the read timeout ({e})"),
    }
}

/// Offsets committed by a consumer (outside any group membership, as librdkafka's simple
/// consumers and `commit` with explicit offsets do) come back from a new client after a broker
/// restart; a commit to a partition that does not exist is refused per partition.
#[test]
fn committed_offsets_survive_a_restart() {
    const TOPIC: &str = "committed";
    let mut broker = Broker::start();
    create_topics(&broker, &[(TOPIC, 2)]);
    wait_for_topic(&broker, TOPIC, 2);
    let group_consumer = |broker: &Broker| -> BaseConsumer {
        client_config(
            broker,
            &[
                ("group.id", "offsets-group"),
                ("enable.auto.commit", "false"),
            ],
        )
        .create()
        .expect("create consumer")
    };
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset(TOPIC, 0, Offset::Offset(7))
        .expect("tpl");
    commit
        .add_partition_offset(TOPIC, 1, Offset::Offset(3))
        .expect("tpl");
    group_consumer(&broker)
        .commit(&commit, CommitMode::Sync)
        .expect("commit");

    broker.restart();
    wait_for_topic(&broker, TOPIC, 2);
    let mut ask = TopicPartitionList::new();
    ask.add_partition(TOPIC, 0);
    ask.add_partition(TOPIC, 1);
    let committed = group_consumer(&broker)
        .committed_offsets(ask, WAIT)
        .expect("committed");
    let got: Vec<(i32, Offset)> = committed
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    assert_eq!(got, vec![(0, Offset::Offset(7)), (1, Offset::Offset(3))]);

    let mut bad = TopicPartitionList::new();
    bad.add_partition_offset(TOPIC, 9, Offset::Offset(1))
        .expect("tpl");
    let err = group_consumer(&broker).commit(&bad, CommitMode::Sync);
    assert!(
        err.is_err(),
        "a commit to a missing partition must fail: {err:?}"
    );
}

/// A deleted topic's records go with it: one created again under the same name (it reuses the
/// partition's directory) starts empty, at offset 0.
#[test]
fn a_topic_recreated_under_its_old_name_starts_empty() {
    let broker = Broker::start();
    create_topics(&broker, &[("reborn", 1)]);
    let old = payloads(20);
    expect_delivered(produce_all(
        &new_producer(&broker, &[]),
        records("reborn", &old),
    ));

    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let deleted =
        block_on(admin(&broker).delete_topics(&["reborn"], &options)).expect("DeleteTopics");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    // The deletion reaches the metadata a moment after the answer: TOPIC_ALREADY_EXISTS until
    // then.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = try_create_topics_at(&broker.bootstrap(), &[("reborn", 1)], 1, WAIT) {
        assert!(Instant::now() < deadline, "recreating the topic: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for_topic(&broker, "reborn", 1);

    let fresh = vec![b"after the recreation".to_vec()];
    let delivered = expect_delivered(produce_all(
        &new_producer(&broker, &[]),
        records("reborn", &fresh),
    ));
    assert_eq!(delivered, vec![(0, 0)], "the new topic's first record");
    let read = consume_from_start(&client_config(&broker, &[]), "reborn", 1);
    assert_eq!(read, fresh, "nothing of the deleted topic is left");
}

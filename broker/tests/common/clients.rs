//! Client-side helpers shared by the integration tests: librdkafka (the `rdkafka` crate) set up
//! against a test broker, topic creation, and producing with delivery reports.

use std::future::Future;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::Broker;

/// Upper bound for any single wait on the broker (delivery, consume, admin call).
pub const WAIT: Duration = Duration::from_secs(30);

pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

pub fn client_config(broker: &Broker, extra: &[(&str, &str)]) -> ClientConfig {
    client_config_at(&broker.bootstrap(), extra)
}

/// A client of whatever answers at `bootstrap` (a broker, or a proxy in front of one).
pub fn client_config_at(bootstrap: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config.set("socket.timeout.ms", "10000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
}

pub fn new_producer(broker: &Broker, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = client_config(
        broker,
        &[("linger.ms", "5"), ("message.timeout.ms", "30000")],
    );
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().expect("create producer")
}

pub fn admin(broker: &Broker) -> AdminClient<DefaultClientContext> {
    client_config(broker, &[])
        .create()
        .expect("create admin client")
}

/// CreateTopics with replication factor 1; fails the test on any error.
pub fn create_topics(broker: &Broker, topics: &[(&str, i32)]) {
    create_topics_at(&broker.bootstrap(), topics)
}

pub fn create_topics_at(bootstrap: &str, topics: &[(&str, i32)]) {
    create_replicated_topics_at(bootstrap, topics, 1);
}

/// CreateTopics with `replication` replicas per partition; fails the test on any error.
pub fn create_replicated_topics_at(bootstrap: &str, topics: &[(&str, i32)], replication: i32) {
    if let Err(e) = try_create_topics_at(bootstrap, topics, replication, WAIT) {
        panic!("{e}");
    }
}

/// CreateTopics that may fail (a broker being killed meanwhile): the first error, if any.
pub fn try_create_topics_at(
    bootstrap: &str,
    topics: &[(&str, i32)],
    replication: i32,
    timeout: Duration,
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = client_config_at(bootstrap, &[])
        .create()
        .expect("create admin client");
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| {
            NewTopic::new(name, *partitions, TopicReplication::Fixed(replication))
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = block_on(admin.create_topics(new_topics.iter(), &options))
        .map_err(|e| format!("CreateTopics request: {e}"))?;
    assert_eq!(results.len(), topics.len(), "one result per topic");
    for result in results {
        if let Err((name, code)) = result {
            return Err(format!("CreateTopics {name}: {code:?}"));
        }
    }
    Ok(())
}

/// Waits until Metadata lists `topic` with `partitions` partitions, each with a leader.
pub fn wait_for_topic(broker: &Broker, topic: &str, partitions: usize) {
    let consumer: BaseConsumer = client_config(broker, &[("group.id", "skein-test-metadata")])
        .create()
        .expect("create metadata client");
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(metadata) => {
                if let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) {
                    let ready = t.error().is_none()
                        && t.partitions().len() == partitions
                        && t.partitions()
                            .iter()
                            .all(|p| p.error().is_none() && p.leader() >= 0);
                    if ready {
                        return;
                    }
                    last = format!(
                        "error {:?}, {} partitions, leaders {:?}",
                        t.error(),
                        t.partitions().len(),
                        t.partitions()
                            .iter()
                            .map(|p| p.leader())
                            .collect::<Vec<_>>()
                    );
                }
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("topic {topic} not ready with {partitions} partitions: {last}");
}

/// Sends every record and waits for all delivery reports, in send order.
pub fn produce_all<C: ClientContext + 'static>(
    producer: &FutureProducer<C>,
    records: Vec<FutureRecord<'_, str, [u8]>>,
) -> Vec<OwnedDeliveryResult> {
    let mut futures = Vec::with_capacity(records.len());
    for record in records {
        let mut record = record;
        loop {
            match producer.send_result(record) {
                Ok(future) => {
                    futures.push(future);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("send failed synchronously: {e}"),
            }
        }
    }
    producer.flush(WAIT).expect("flush");
    block_on(async {
        let mut results = Vec::with_capacity(futures.len());
        for future in futures {
            results.push(future.await.expect("delivery future cancelled"));
        }
        results
    })
}

/// Delivery reports must all be successful; returns (partition, offset) per record.
pub fn expect_delivered(results: Vec<OwnedDeliveryResult>) -> Vec<(i32, i64)> {
    results
        .into_iter()
        .enumerate()
        .map(|(i, result)| match result {
            Ok(delivery) => (delivery.partition, delivery.offset),
            Err((e, _)) => panic!("record #{i} not delivered: {e}"),
        })
        .collect()
}

/// Every payload of partition 0 of `topic` from the start, until `count` arrived. The start is
/// asked for explicitly, so no group coordinator is involved; errors librdkafka reports on the
/// way (a coordinator still loading, say) are retried until the deadline.
pub fn consume_from_start(config: &ClientConfig, topic: &str, count: usize) -> Vec<Vec<u8>> {
    let c: BaseConsumer = config
        .clone()
        .set("group.id", "from-start-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("offset");
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    let mut last_error = None;
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records (last error: {last_error:?})",
            out.len()
        );
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(m.payload().unwrap_or_default().to_vec()),
            Some(Err(e)) => last_error = Some(e.to_string()),
            None => {}
        }
    }
    out
}

/// `count` distinct payloads.
pub fn payloads(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("record {i}").into_bytes())
        .collect()
}

/// One record per payload, to `topic`.
pub fn records<'a>(topic: &'a str, payloads: &'a [Vec<u8>]) -> Vec<FutureRecord<'a, str, [u8]>> {
    payloads
        .iter()
        .map(|p| FutureRecord::to(topic).payload(p.as_slice()))
        .collect()
}

/// Waits until `client` sees `brokers` brokers, then shows that followers copy everything: a
/// new topic with one replica on each broker and `min.insync.replicas` = all of them takes
/// `count` acks=all records (which needs every follower to have fetched each one), and a
/// consumer reads them back.
pub fn assert_replicates_to_all(client: &ClientConfig, brokers: usize, topic: &str, count: usize) {
    let probe: BaseConsumer = client
        .clone()
        .set("group.id", "broker-probe")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = probe
            .fetch_metadata(None, Duration::from_secs(5))
            .map(|m| m.brokers().len())
            .unwrap_or(0);
        if seen == brokers {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{seen} of {brokers} brokers registered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let all = brokers.to_string();
    let admin: AdminClient<DefaultClientContext> = client.create().expect("admin");
    let replication = i32::try_from(brokers).expect("broker count");
    let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(replication))
        .set("min.insync.replicas", &all);
    for r in
        block_on(admin.create_topics([&new_topic], &AdminOptions::new())).expect("create topic")
    {
        r.expect("topic created");
    }
    let producer: FutureProducer = client
        .clone()
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let payloads = payloads(count);
    let delivered = expect_delivered(produce_all(&producer, records(topic, &payloads)));
    assert_eq!(delivered.len(), count);
    assert_eq!(consume_from_start(client, topic, count), payloads);
}

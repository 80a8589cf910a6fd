//! Log compaction seen from clients: a compacted topic keeps the newest value of every key at
//! its original offset, and `__consumer_offsets` stays small under many commits while the
//! committed offsets stay right across a restart.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

use common::clients::{
    admin, block_on, client_config, expect_delivered, new_producer, produce_all, WAIT,
};
use common::{Broker, BrokerConfig};

/// A broker whose cleaner runs every 100 ms.
fn broker(extra: &[(&str, &str)]) -> Broker {
    let mut config = BrokerConfig::default().set("log.cleaner.backoff.ms", "100");
    for (k, v) in extra {
        config = config.set(k, v);
    }
    Broker::start_with(config)
}

/// Every record of partition 0 from the beginning up to the end: (offset, key, value).
fn read_all(broker: &Broker, topic: &str) -> Vec<(i64, String, String)> {
    let consumer: BaseConsumer = client_config(
        broker,
        &[
            ("group.id", "compaction-reader"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
        ],
    )
    .create()
    .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    panic!("no end of partition within {WAIT:?}");
}

fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_compacted_topic_keeps_the_newest_value_of_each_key_at_its_offset() {
    let broker = broker(&[]);
    let topic = "compacted";
    let admin = admin(&broker);
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "4096")
        .set("min.cleanable.dirty.ratio", "0.01");
    let results =
        block_on(admin.create_topics([&new], &AdminOptions::new())).expect("CreateTopics");
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    // Small batches: the cleaner works on sealed segments, and a batch is never split.
    let producer = new_producer(&broker, &[("batch.num.messages", "10")]);
    let records: Vec<(String, String)> = (0..2000)
        .map(|i| (format!("key-{}", i % 10), format!("value-{i:05}")))
        .collect();
    let sends = records
        .iter()
        .map(|(k, v)| {
            FutureRecord::<str, [u8]>::to(topic)
                .partition(0)
                .key(k.as_str())
                .payload(v.as_bytes())
        })
        .collect();
    let offsets = expect_delivered(produce_all(&producer, sends));
    // The newest value of each key, and the offset it was written at.
    let mut newest: BTreeMap<&str, (i64, &str)> = BTreeMap::new();
    for ((k, v), (_, offset)) in records.iter().zip(&offsets) {
        newest.insert(k, (*offset, v));
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let kept = loop {
        let all = read_all(&broker, topic);
        if all.len() < 500 {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "still {} records after 30 s; files {:?}; broker log:\n{}",
            all.len(),
            std::fs::read_dir(broker.data_dir().join("compacted-0"))
                .map(|d| d
                    .filter_map(Result::ok)
                    .map(|e| (
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    ))
                    .collect::<Vec<_>>())
                .unwrap_or_default(),
            broker.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (key, (offset, value)) in &newest {
        assert!(
            kept.iter()
                .any(|(o, k, v)| o == offset && k == key && v == value),
            "newest {key}={value}@{offset} missing"
        );
    }
    // Offsets only grow, and every key's values stay in production order.
    assert!(kept.windows(2).all(|w| w[0].0 < w[1].0));
    for key in newest.keys() {
        let values: Vec<&String> = kept.iter().filter(|r| r.1 == *key).map(|r| &r.2).collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{key}: {values:?}");
    }
}

#[test]
fn consumer_offsets_stay_small_and_right_across_a_restart() {
    let mut broker = broker(&[
        ("offsets.topic.num.partitions", "1"),
        ("offsets.topic.segment.bytes", "4096"),
    ]);
    let topic = "work";
    common::clients::create_topics(&broker, &[(topic, 1)]);
    let consumer: BaseConsumer = client_config(
        &broker,
        &[("group.id", "committer"), ("enable.auto.commit", "false")],
    )
    .create()
    .expect("consumer");
    for offset in 1..=600 {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
            .expect("tpl");
        consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    }
    drop(consumer);

    let dir = broker.data_dir().join("__consumer_offsets-0");
    let deadline = Instant::now() + Duration::from_secs(30);
    // 600 commit records are ~60 KB; compacted, one record is left in sealed segments.
    while log_bytes(&dir) > 16 * 1024 {
        assert!(
            Instant::now() < deadline,
            "__consumer_offsets not compacted: {} bytes",
            log_bytes(&dir)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    broker.restart();
    let consumer: BaseConsumer = client_config(&broker, &[("group.id", "committer")])
        .create()
        .expect("consumer after restart");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let committed = consumer.committed_offsets(tpl, WAIT).expect("committed");
    let offset = committed
        .find_partition(topic, 0)
        .map(|e| e.offset())
        .expect("partition listed");
    assert_eq!(offset, Offset::Offset(600));
}

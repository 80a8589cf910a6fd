//! The metrics listener of a real `skein` process: `/metrics` in Prometheus text format (parsed
//! with `prometheus-parse`, as a scraper would), `/health`, `/ready`, and the answers to
//! requests it does not serve. Traffic comes from librdkafka (the `rdkafka` crate).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

use common::clients::{
    client_config, create_topics, expect_delivered, new_producer, produce_all, wait_for_topic,
};
use common::{Broker, BrokerConfig};

/// A broker whose metrics listener takes any free port.
fn start_with_metrics() -> (Broker, SocketAddr) {
    let config = BrokerConfig {
        metrics_listener: Some("127.0.0.1:0".to_string()),
        ..BrokerConfig::default()
    };
    let broker = Broker::start_with(config);
    let addr = metrics_addr(&broker);
    (broker, addr)
}

/// The address the broker printed ("skein: metrics on http://ADDR/metrics").
fn metrics_addr(broker: &Broker) -> SocketAddr {
    let log = std::fs::read_to_string(broker.log_path()).expect("read broker log");
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("skein: metrics on http://"))
        .expect("the broker printed its metrics address");
    line.trim_end_matches("/metrics")
        .parse()
        .expect("metrics address parses")
}

/// Sends `request` raw and returns (status code, body).
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream.write_all(request).expect("send request");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read answer");
    let text = String::from_utf8(answer).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.contains("Connection: close"),
        "every answer closes: {head}"
    );
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, body.to_string())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: skein\r\n\r\n").as_bytes(),
    )
}

fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("valid text format")
}

/// Sum over every sample of `metric` whose labels include `labels`.
fn sum(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric} is not a number: {other:?}"),
        })
        .sum()
}

#[test]
fn produce_shows_in_request_byte_and_partition_metrics() {
    let (broker, addr) = start_with_metrics();
    let topic = "metered";
    create_topics(&broker, &[(topic, 2)]);
    wait_for_topic(&broker, topic, 2);
    let before = scrape(addr);
    let produce_before = sum(&before, "skein_requests_total", &[("api", "Produce")]);
    let received_before = sum(&before, "skein_network_received_bytes_total", &[]);

    let producer = new_producer(&broker, &[("acks", "1")]);
    let value = [7u8; 1000];
    let records = (0..200)
        .map(|i| FutureRecord::to(topic).partition(i % 2).payload(&value[..]))
        .collect();
    let delivered = expect_delivered(produce_all(&producer, records));
    let mut end_offsets = [0i64; 2];
    for (partition, offset) in delivered {
        let p = usize::try_from(partition).expect("partition");
        end_offsets[p] = end_offsets[p].max(offset + 1);
    }
    assert_eq!(end_offsets, [100, 100]);

    let after = scrape(addr);
    let produce_after = sum(&after, "skein_requests_total", &[("api", "Produce")]);
    assert!(
        produce_after > produce_before,
        "Produce requests {produce_before} -> {produce_after}"
    );
    let received_after = sum(&after, "skein_network_received_bytes_total", &[]);
    assert!(
        received_after - received_before >= 200.0 * 1000.0,
        "bytes in {received_before} -> {received_after}"
    );
    assert!(sum(&after, "skein_network_sent_bytes_total", &[]) > 0.0);
    for (partition, end) in end_offsets.iter().enumerate() {
        let partition_label = partition.to_string();
        let labels = [("topic", topic), ("partition", partition_label.as_str())];
        let leo = sum(&after, "skein_partition_log_end_offset", &labels);
        assert_eq!(leo, *end as f64, "log end offset of {topic}-{partition}");
        let hw = sum(&after, "skein_partition_high_watermark", &labels);
        assert_eq!(hw, *end as f64, "high watermark of {topic}-{partition}");
        assert_eq!(sum(&after, "skein_partition_leader", &labels), 1.0);
        assert!(sum(&after, "skein_partition_size_bytes", &labels) >= 100.0 * 1000.0);
    }
    assert_eq!(sum(&after, "skein_under_replicated_partitions", &[]), 0.0);
    // The backlog gauge goes back to 0 once the producer is done. librdkafka may still send a
    // request of its own at any moment (a metadata refresh), so one scrape may catch it: wait
    // a little for 0, which a gauge that leaks never reaches.
    assert!(after
        .samples
        .iter()
        .any(|s| s.metric == "skein_shard_requests_in_flight"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut in_flight = sum(&after, "skein_shard_requests_in_flight", &[]);
    while in_flight != 0.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        in_flight = sum(&scrape(addr), "skein_shard_requests_in_flight", &[]);
    }
    assert_eq!(in_flight, 0.0, "requests in flight with the producer idle");

    // The histogram counts every request the counter counts.
    let produce_histograms: Vec<_> = after
        .samples
        .iter()
        .filter(|s| s.metric == "skein_request_duration_seconds")
        .filter(|s| s.labels.get("api") == Some("Produce"))
        .collect();
    assert!(!produce_histograms.is_empty());
    let mut counted = 0.0;
    for s in produce_histograms {
        let Value::Histogram(buckets) = &s.value else {
            panic!("not a histogram: {s:?}");
        };
        let inf = buckets.last().expect("buckets");
        assert!(inf.less_than.is_infinite());
        assert!(
            buckets.windows(2).all(|w| w[0].count <= w[1].count),
            "cumulative"
        );
        counted += inf.count;
    }
    assert_eq!(counted, produce_after);

    // A group's committed offset and its lag (this one node coordinates it and leads the
    // partition).
    let consumer: BaseConsumer = client_config(&broker, &[("group.id", "metered-group")])
        .create()
        .expect("consumer");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, 0, Offset::Offset(40))
        .expect("offset");
    consumer.commit(&offsets, CommitMode::Sync).expect("commit");
    let grouped = scrape(addr);
    let labels = [
        ("group", "metered-group"),
        ("topic", topic),
        ("partition", "0"),
    ];
    assert_eq!(
        sum(&grouped, "skein_consumer_group_committed_offset", &labels),
        40.0
    );
    assert_eq!(sum(&grouped, "skein_consumer_group_lag", &labels), 60.0);

    // A single node runs the one controller voter, and it is active.
    assert_eq!(sum(&after, "skein_controller_active", &[]), 1.0);
    assert!(sum(&after, "skein_controller_raft_commit_index", &[]) > 0.0);
    assert_eq!(sum(&after, "skein_broker_ready", &[]), 1.0);
}

#[test]
fn health_ready_and_unserved_requests() {
    let (_broker, addr) = start_with_metrics();
    assert_eq!(get(addr, "/health"), (200, "ok\n".to_string()));
    // The listening line comes once the broker serves, so it is ready by now; allow a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = get(addr, "/ready");
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "/ready stayed {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(addr, "/nope").0, 404);
    assert_eq!(
        http(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0,
        405
    );
    assert_eq!(http(addr, b"GARBAGE\r\n\r\n").0, 400);
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    assert_eq!(http(addr, huge.as_bytes()).0, 431);
    // A client that connects and says nothing does not block the others.
    let _silent = TcpStream::connect(addr).expect("connect");
    assert_eq!(get(addr, "/health").0, 200);
    assert_eq!(get(addr, "/metrics").0, 200);
}

//! Renders the shards' snapshots and the node's state as one scrape answer (text format
//! 0.0.4), every family once, its samples labelled by shard (scrape shard).

use std::time::Duration;

use kafka_protocol::error::ResponseError;

use super::encode::{self, HistogramValue, Kind, TextEncoder};
use super::{NodeSnapshot, PartitionSnapshot, ShardSnapshot, DURATION_BOUNDS_NS};

/// The whole scrape answer in text format 0.0.4.
pub fn render(shards: &[ShardSnapshot], node: &NodeSnapshot) -> String {
    let mut e = TextEncoder::new();
    let labels: Vec<String> = shards.iter().map(|s| s.shard.0.to_string()).collect();
    render_requests(&mut e, shards, &labels);
    render_shard_counters(&mut e, shards, &labels);
    render_errors(&mut e, shards, &labels);
    render_partitions(&mut e, shards, &labels);
    render_groups(&mut e, shards, &labels);
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
            "skein_shard_requests_in_flight",
            Kind::Gauge,
            "Kafka requests read and not yet answered on the shard (its backlog; long polls \
             count while they wait).",
        ),
        shards,
        labels,
        |s| s.requests_in_flight.into(),
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
            "skein_read_ahead_windows_total",
            Kind::Counter,
            "Disk reads started ahead of a sequential reader (segments are read with O_DIRECT, \
             so the page cache reads nothing ahead).",
        ),
        shards,
        labels,
        |s| s.read_ahead.started.into(),
    );
    per_shard(
        e,
        (
            "skein_read_ahead_hits_total",
            Kind::Counter,
            "Disk reads served from a window read ahead.",
        ),
        shards,
        labels,
        |s| s.read_ahead.hits.into(),
    );
    per_shard(
        e,
        (
            "skein_read_ahead_dropped_total",
            Kind::Counter,
            "Windows read ahead and dropped unused (the reader moved or stopped, a truncation).",
        ),
        shards,
        labels,
        |s| s.read_ahead.dropped.into(),
    );
    per_shard(
        e,
        (
            "skein_read_ahead_over_budget_total",
            Kind::Counter,
            "Windows not read ahead because the shard's read-ahead bytes were all held.",
        ),
        shards,
        labels,
        |s| s.read_ahead.over_budget.into(),
    );
    per_shard(
        e,
        (
            "skein_read_ahead_held_bytes",
            Kind::Gauge,
            "Bytes of windows read ahead that the shard holds.",
        ),
        shards,
        labels,
        |s| s.read_ahead.held_bytes.into(),
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

/// Committed offsets of the groups this node coordinates, and their lag where this node also
/// leads the partition (elsewhere the lag is the leader's high watermark minus this offset,
/// a join across brokers in PromQL).
fn render_groups(e: &mut TextEncoder, shards: &[ShardSnapshot], labels: &[String]) {
    let high_watermarks: std::collections::HashMap<(&str, i32), i64> = shards
        .iter()
        .flat_map(|s| &s.partitions)
        .filter(|p| p.is_leader)
        .map(|p| ((p.topic.as_str(), p.partition), p.high_watermark))
        .collect();
    e.family(
        "skein_consumer_group_committed_offset",
        Kind::Gauge,
        "A consumer group's committed offset, from its coordinator.",
    );
    for (s, shard) in shards.iter().zip(labels) {
        for c in &s.committed {
            let partition = c.partition.to_string();
            e.sample(
                "skein_consumer_group_committed_offset",
                &[
                    ("group", &c.group),
                    ("topic", &c.topic),
                    ("partition", &partition),
                    ("shard", shard),
                ],
                c.offset,
            );
        }
    }
    e.family(
        "skein_consumer_group_lag",
        Kind::Gauge,
        "High watermark minus the committed offset, where this node coordinates the group and \
         leads the partition.",
    );
    for (s, shard) in shards.iter().zip(labels) {
        for c in &s.committed {
            let Some(hw) = high_watermarks.get(&(c.topic.as_str(), c.partition)) else {
                continue;
            };
            let partition = c.partition.to_string();
            e.sample(
                "skein_consumer_group_lag",
                &[
                    ("group", &c.group),
                    ("topic", &c.topic),
                    ("partition", &partition),
                    ("shard", shard),
                ],
                (hw - c.offset).max(0),
            );
        }
    }
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
    e.family(
        "skein_controller_leader_elections_total",
        Kind::Counter,
        "Partition leader changes this voter committed as the active controller.",
    );
    e.sample(
        "skein_controller_leader_elections_total",
        &[],
        c.leader_elections,
    );
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
    use crate::metrics::CommittedSnapshot;
    use crate::shard::ids::ShardId;

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
            requests_in_flight: 2,
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
            committed: vec![
                CommittedSnapshot {
                    group: "g".to_string(),
                    topic: "t".to_string(),
                    partition: 3,
                    offset: 5,
                },
                // Led elsewhere: the offset, but no lag from this node.
                CommittedSnapshot {
                    group: "g".to_string(),
                    topic: "u".to_string(),
                    partition: 0,
                    offset: 1,
                },
            ],
            tail_cache_hits: 0,
            tail_cache_misses: 0,
            tail_cache_used_bytes: 0,
            read_ahead: skein_storage::ReadAheadStats::default(),
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
            "skein_shard_requests_in_flight{shard=\"1\"} 2",
            "skein_consumer_group_committed_offset{group=\"g\",topic=\"u\",partition=\"0\",shard=\"1\"} 1",
            "skein_consumer_group_lag{group=\"g\",topic=\"t\",partition=\"3\",shard=\"1\"} 3",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(!text.contains("skein_controller_active"));
        assert!(!text.contains("skein_consumer_group_lag{group=\"g\",topic=\"u\""));
    }

    #[test]
    fn bounds_print_as_seconds() {
        let b = duration_bounds_seconds();
        assert_eq!(b[0], 0.0001);
        assert_eq!(b[1], 0.00025);
        assert_eq!(b[15], 10.0);
    }
}

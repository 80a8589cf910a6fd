//! The `skein` admin commands (`topic`, `cluster`, `leader`, `partition`, `group`) run as a user
//! runs them, against real brokers, with their `--json` output parsed: what they report must
//! match what the cluster does, and their exit status must say when something failed.
//! Reassignments under load are in the fault scenarios (`scale_out_and_drain`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use common::clients::{client_config, create_topics, expect_delivered, new_producer, produce_all};
use common::cluster::{Cluster, ClusterSpec};
use common::{skein_bin, Broker};

struct Run {
    status: i32,
    json: Value,
    stderr: String,
}

/// `skein ARGS --bootstrap-server BOOTSTRAP --json`.
fn skein(bootstrap: &str, args: &[&str]) -> Run {
    let out = Command::new(skein_bin())
        .args(args)
        .args([
            "--bootstrap-server",
            bootstrap,
            "--json",
            "--timeout-ms",
            "10000",
        ])
        .output()
        .expect("run skein");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("skein {args:?}: stdout is not JSON ({e}): {stdout}"))
    };
    Run {
        status: out.status.code().unwrap_or(-1),
        json,
        stderr,
    }
}

/// Like [`skein`], and it must succeed.
fn skein_ok(bootstrap: &str, args: &[&str]) -> Value {
    let r = skein(bootstrap, args);
    assert_eq!(r.status, 0, "skein {args:?}: {} / {}", r.json, r.stderr);
    r.json
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

#[test]
fn topics_cluster_and_elections_through_the_admin_cli() {
    let mut cluster = Cluster::start(ClusterSpec::default());
    let b = cluster.bootstrap();
    let created = skein_ok(
        &b,
        &[
            "topic",
            "create",
            "cli",
            "--partitions",
            "6",
            "--replication-factor",
            "3",
            "--config",
            "retention.ms=86400000",
        ],
    );
    assert_eq!(created["results"][0]["error"], Value::Null, "{created}");
    let again = skein(&b, &["topic", "create", "cli", "--partitions", "6"]);
    assert_eq!(again.status, 1, "a failed item is exit status 1");
    assert_eq!(again.json["results"][0]["error"]["code"], 36);
    assert_eq!(
        again.json["results"][0]["error"]["name"],
        "TOPIC_ALREADY_EXISTS"
    );
    cluster.wait_for_topic("cli", 6);

    let listed = skein_ok(&b, &["topic", "list"]);
    assert!(
        listed["topics"]
            .as_array()
            .is_some_and(|t| t.iter().any(|n| n == "cli")),
        "{listed}"
    );
    let described = skein_ok(&b, &["topic", "describe", "cli"]);
    let topic = &described["topics"][0];
    assert_eq!(topic["replication_factor"], 3);
    assert_eq!(topic["configs"]["retention.ms"], "86400000");
    let partitions = topic["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 6);
    let mut leaders = std::collections::BTreeMap::new();
    for p in partitions {
        assert_eq!(ints(&p["replicas"]).len(), 3, "{p}");
        assert_eq!(ints(&p["isr"]).len(), 3, "{p}");
        *leaders
            .entry(p["leader"].as_i64().expect("leader"))
            .or_insert(0) += 1;
    }
    assert_eq!(
        leaders.len(),
        3,
        "leaders spread over the brokers: {leaders:?}"
    );

    skein_ok(
        &b,
        &["topic", "alter-config", "cli", "--set", "retention.ms=1000"],
    );
    let described = skein_ok(&b, &["topic", "describe", "cli"]);
    assert_eq!(described["topics"][0]["configs"]["retention.ms"], "1000");

    let healthy = skein_ok(&b, &["cluster", "describe"]);
    assert_eq!(
        ints(&healthy["brokers"].as_array().map_or(Value::Null, |a| {
            Value::Array(a.iter().map(|x| x["id"].clone()).collect())
        })),
        vec![1, 2, 3]
    );
    let controller = healthy["controller"].as_i64().expect("controller");
    assert!((1..=3).contains(&controller), "{healthy}");
    assert_eq!(
        healthy["under_replicated_partitions"],
        Value::Array(Vec::new())
    );

    // Every leader is already the preferred one: nothing to do, and that is not a failure.
    let elected = skein_ok(&b, &["leader", "elect", "--preferred", "--topic", "cli"]);
    let results = elected["results"].as_array().expect("results");
    assert_eq!(results.len(), 6);
    assert!(
        results.iter().all(|r| r["error"]["code"] == 84),
        "{elected}"
    );

    // A broker dies: its partitions show as under-replicated once it is fenced, and a
    // preferred election cannot give it back the ones it prefers.
    let victim = 3;
    cluster.node(victim).kill9();
    let b2 = cluster
        .running_ids()
        .iter()
        .map(|id| cluster.node(*id).bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let deadline = Instant::now() + Duration::from_secs(15);
    let degraded = loop {
        let r = skein_ok(&b2, &["cluster", "describe"]);
        if r["under_replicated_partitions"]
            .as_array()
            .is_some_and(|u| u.len() == 6)
        {
            break r;
        }
        assert!(Instant::now() < deadline, "never under-replicated: {r}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for p in degraded["under_replicated_partitions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert!(!ints(&p["isr"]).contains(&i64::from(victim)), "{p}");
    }
    let preferring_victim = partitions
        .iter()
        .filter(|p| ints(&p["replicas"]).first() == Some(&i64::from(victim)))
        .count();
    let elect = skein(&b2, &["leader", "elect", "--preferred", "--topic", "cli"]);
    assert_eq!(elect.status, 1, "{} / {}", elect.json, elect.stderr);
    let unavailable = elect.json["results"]
        .as_array()
        .map_or(0, |r| r.iter().filter(|x| x["error"]["code"] == 80).count());
    assert_eq!(unavailable, preferring_victim, "{}", elect.json);

    // A rebalance over the two brokers left would lower the replication factor: refused.
    let short = skein(&b2, &["partition", "reassign", "--rebalance"]);
    assert_eq!(short.status, 2, "{}", short.stderr);
    assert!(
        short.stderr.contains("replication factor"),
        "{}",
        short.stderr
    );
    let none = skein_ok(&b2, &["partition", "reassignments"]);
    assert_eq!(none["reassignments"], Value::Array(Vec::new()));

    let deleted = skein_ok(&b2, &["topic", "delete", "cli"]);
    assert_eq!(deleted["results"][0]["error"], Value::Null);
}

#[test]
fn consumer_groups_through_the_admin_cli() {
    let broker = Broker::start();
    let b = broker.bootstrap();
    create_topics(&broker, &[("grp", 2)]);
    let producer = new_producer(&broker, &[]);
    let payload = [7u8; 10];
    let records = (0..20)
        .map(|i| {
            FutureRecord::to("grp")
                .partition(i % 2)
                .payload(&payload[..])
        })
        .collect();
    expect_delivered(produce_all(&producer, records));

    // Commits 4 and 7, then leaves: the group is Empty.
    {
        let consumer: BaseConsumer = client_config(&broker, &[("group.id", "cli-group")])
            .create()
            .expect("consumer");
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("grp", 0, Offset::Offset(4))
            .expect("offset");
        offsets
            .add_partition_offset("grp", 1, Offset::Offset(7))
            .expect("offset");
        consumer.commit(&offsets, CommitMode::Sync).expect("commit");
    }
    let listed = skein_ok(&b, &["group", "list"]);
    let group = listed["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|x| x["group"] == "cli-group"))
        .unwrap_or_else(|| panic!("cli-group not listed: {listed}"));
    assert_eq!(group["state"], "Empty");

    let lag = |json: &Value| -> Vec<(i64, i64, i64)> {
        json["partitions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["current_offset"].as_i64().unwrap_or(-1),
                    p["log_end_offset"].as_i64().unwrap_or(-1),
                    p["lag"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    let described = skein_ok(&b, &["group", "describe", "cli-group"]);
    assert_eq!(described["state"], "Empty");
    assert_eq!(lag(&described), vec![(4, 10, 6), (7, 10, 3)], "{described}");

    // A dry run changes nothing.
    let dry = skein_ok(
        &b,
        &[
            "group",
            "reset-offsets",
            "cli-group",
            "--topic",
            "grp",
            "--to-earliest",
        ],
    );
    assert_eq!(dry["executed"], false);
    assert_eq!(
        lag(&skein_ok(&b, &["group", "describe", "cli-group"])),
        vec![(4, 10, 6), (7, 10, 3)]
    );

    skein_ok(
        &b,
        &[
            "group",
            "reset-offsets",
            "cli-group",
            "--topic",
            "grp",
            "--to-earliest",
            "--execute",
        ],
    );
    assert_eq!(
        lag(&skein_ok(&b, &["group", "describe", "cli-group"])),
        vec![(0, 10, 10), (0, 10, 10)]
    );
    // Past the end is moved to the end; only the partition named.
    skein_ok(
        &b,
        &[
            "group",
            "reset-offsets",
            "cli-group",
            "--topic",
            "grp:1",
            "--to-offset",
            "99",
            "--execute",
        ],
    );
    assert_eq!(
        lag(&skein_ok(&b, &["group", "describe", "cli-group"])),
        vec![(0, 10, 10), (10, 10, 0)]
    );
    let unknown = skein(
        &b,
        &[
            "group",
            "reset-offsets",
            "cli-group",
            "--topic",
            "nope",
            "--to-latest",
        ],
    );
    assert_eq!(unknown.status, 2, "{}", unknown.stderr);
}

//! ACLs against real clients: librdkafka (the `rdkafka` crate) logged in over SASL PLAIN as
//! users with and without ACLs; CreateAcls / DescribeAcls / DeleteAcls as raw frames (the Rust
//! client has no ACL admin calls), sent by the super user; and `skein acl`.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, CreateAclsRequest,
    CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use rdkafka::TopicPartitionList;

use common::clients::{block_on, client_config};
use common::raw::roundtrip;
use common::{skein_bin, wait_for_bootstrap_users, Broker, BrokerConfig};

const ADMIN: (&str, &str) = ("admin", "admin-secret");
const ALICE: (&str, &str) = ("alice", "alice-secret");

// Kafka's codes. Filters set every nullable field: kafka-protocol's defaults are empty
// strings, which match nothing, where clients send null.
const TOPIC: i8 = 2;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const ANY: i8 = 1;
const GROUP: i8 = 3;
const READ: i8 = 3;
const WRITE: i8 = 4;
const ALLOW: i8 = 3;
const DENY: i8 = 2;
const CLUSTER: i8 = 4;
const ALTER_CONFIGS: i8 = 11;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const SECURITY_DISABLED: i16 = 54;

fn acl_broker() -> Broker {
    let config = BrokerConfig {
        kafka_protocol: Some("SASL_PLAINTEXT".into()),
        sasl_bootstrap_users: vec![
            format!("{}:{}", ADMIN.0, ADMIN.1),
            format!("{}:{}", ALICE.0, ALICE.1),
        ],
        broker: vec![
            (
                "authorizer.class.name".into(),
                "\"skein.StandardAuthorizer\"".into(),
            ),
            ("super.users".into(), "\"User:admin\"".into()),
        ],
        ..BrokerConfig::default()
    };
    let broker = Broker::start_with(config);
    wait_for_bootstrap_users(&[&broker]);
    broker
}

fn config_as(broker: &Broker, (user, password): (&str, &str)) -> ClientConfig {
    client_config(
        broker,
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", user),
            ("sasl.password", password),
            ("linger.ms", "0"),
            ("message.timeout.ms", "5000"),
        ],
    )
}

fn produce_as(broker: &Broker, who: (&str, &str), topic: &str) -> Result<(), String> {
    let p: FutureProducer = config_as(broker, who).create().expect("producer");
    let record = FutureRecord::<(), str>::to(topic).payload("hello");
    block_on(p.send(record, Duration::from_secs(10)))
        .map(|_| ())
        .map_err(|(e, _)| e.to_string())
}

fn listed_topics(broker: &Broker, who: (&str, &str)) -> Vec<String> {
    let c: BaseConsumer = config_as(broker, who)
        .set("group.id", "acl-metadata")
        .create()
        .expect("consumer");
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    md.topics().iter().map(|t| t.name().to_string()).collect()
}

/// The first error a consumer assigned to partition 0 of `topic` gets, if any within a few polls.
fn consume_error(broker: &Broker, who: (&str, &str), topic: &str) -> Option<String> {
    let c: BaseConsumer = config_as(broker, who)
        .set("group.id", "acl-consumer")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    c.assign(&tpl).expect("assign");
    for _ in 0..30 {
        match c.poll(Duration::from_millis(200)) {
            Some(Err(e)) => return Some(e.to_string()),
            Some(Ok(_)) => return None,
            None => {}
        }
    }
    None
}

fn create_topics(broker: &Broker, names: &[&str]) {
    let admin: AdminClient<DefaultClientContext> =
        config_as(broker, ADMIN).create().expect("admin");
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(1)))
        .collect();
    let results =
        block_on(admin.create_topics(topics.iter(), &AdminOptions::new())).expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

/// A raw connection logged in with PLAIN.
fn login(broker: &Broker, (user, password): (&str, &str)) -> TcpStream {
    let mut s = TcpStream::connect(broker.bootstrap()).expect("connect");
    let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let r: SaslHandshakeResponse = roundtrip(&mut s, ApiKey::SaslHandshake, 1, 1, &hs);
    assert_eq!(r.error_code, 0);
    let token = format!("\0{user}\0{password}");
    let auth = SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from(token));
    let r: SaslAuthenticateResponse = roundtrip(&mut s, ApiKey::SaslAuthenticate, 2, 2, &auth);
    assert_eq!(r.error_code, 0, "login as {user}");
    s
}

fn binding(name: &str, pattern: i8, principal: &str, operation: i8, permission: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(TOPIC)
        .with_resource_name(StrBytes::from_string(name.into()))
        .with_resource_pattern_type(pattern)
        .with_principal(StrBytes::from_string(principal.into()))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(operation)
        .with_permission_type(permission)
}

fn group_binding(name: &str, principal: &str, operation: i8) -> AclCreation {
    binding(name, LITERAL, principal, operation, ALLOW).with_resource_type(GROUP)
}

fn create_acls(s: &mut TcpStream, creations: Vec<AclCreation>) -> Vec<i16> {
    let req = CreateAclsRequest::default().with_creations(creations);
    let r: CreateAclsResponse = roundtrip(s, ApiKey::CreateAcls, 3, 10, &req);
    r.results.iter().map(|r| r.error_code).collect()
}

#[test]
fn acls_decide_who_may_produce_consume_and_see_topics() {
    let broker = acl_broker();
    create_topics(&broker, &["orders", "logs-app"]);

    // No ACLs: alice sees nothing and may do nothing; the super user may do everything.
    // CreateTopics answers once the topics are visible on the shard that served it; the
    // metadata request may land on the other shard, which follows a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut seen = listed_topics(&broker, ADMIN);
    while !seen.iter().any(|t| t == "orders") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        seen = listed_topics(&broker, ADMIN);
    }
    assert!(seen.iter().any(|t| t == "orders"), "{seen:?}");
    let seen = listed_topics(&broker, ALICE);
    assert!(!seen.iter().any(|t| t == "orders"), "{seen:?}");
    let e = produce_as(&broker, ALICE, "orders").expect_err("alice produced without an ACL");
    assert!(e.to_lowercase().contains("authorization"), "{e}");
    let e = consume_error(&broker, ALICE, "orders").expect("alice consumed without an ACL");
    assert!(e.to_lowercase().contains("authorization"), "{e}");
    produce_as(&broker, ADMIN, "orders").expect("the super user produces");

    // alice may not manage ACLs.
    let mut alice = login(&broker, ALICE);
    let codes = create_acls(
        &mut alice,
        vec![binding("orders", LITERAL, "User:alice", WRITE, ALLOW)],
    );
    assert_eq!(codes, vec![CLUSTER_AUTHORIZATION_FAILED]);

    // A literal ALLOW WRITE, and a prefixed one; a bad binding is INVALID_REQUEST.
    let mut admin = login(&broker, ADMIN);
    let codes = create_acls(
        &mut admin,
        vec![
            binding("orders", LITERAL, "User:alice", WRITE, ALLOW),
            binding("logs-", PREFIXED, "User:alice", WRITE, ALLOW),
            binding("x", LITERAL, "alice", WRITE, ALLOW),
        ],
    );
    assert_eq!(codes, vec![0, 0, 42]);
    produce_as(&broker, ALICE, "orders").expect("alice writes with an ACL");
    produce_as(&broker, ALICE, "logs-app").expect("alice writes with a prefixed ACL");
    // WRITE implies DESCRIBE: the topics are visible now.
    let seen = listed_topics(&broker, ALICE);
    assert!(seen.iter().any(|t| t == "orders"), "{seen:?}");

    // DENY beats ALLOW.
    let codes = create_acls(
        &mut admin,
        vec![binding("logs-app", LITERAL, "User:*", WRITE, DENY)],
    );
    assert_eq!(codes, vec![0]);
    let e = produce_as(&broker, ALICE, "logs-app").expect_err("a DENY did not win");
    assert!(e.to_lowercase().contains("authorization"), "{e}");
    produce_as(&broker, ADMIN, "logs-app").expect("super users ignore DENY");

    // DescribeAcls lists the three bindings; DeleteAcls with a MATCH filter for "orders"
    // removes only the literal one.
    let describe = DescribeAclsRequest::default()
        .with_resource_type_filter(ANY)
        .with_pattern_type_filter(ANY)
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY);
    let r: DescribeAclsResponse = roundtrip(&mut admin, ApiKey::DescribeAcls, 3, 11, &describe);
    assert_eq!(r.error_code, 0);
    let count: usize = r.resources.iter().map(|r| r.acls.len()).sum();
    assert_eq!(count, 3, "{r:?}");
    let delete = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
        .with_resource_type_filter(TOPIC)
        .with_resource_name_filter(Some(StrBytes::from_static_str("orders")))
        .with_pattern_type_filter(2)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY)]);
    let r: DeleteAclsResponse = roundtrip(&mut admin, ApiKey::DeleteAcls, 3, 12, &delete);
    assert_eq!(r.filter_results.len(), 1);
    assert_eq!(r.filter_results[0].error_code, 0);
    assert_eq!(r.filter_results[0].matching_acls.len(), 1, "{r:?}");
    let e = produce_as(&broker, ALICE, "orders").expect_err("the ACL was deleted");
    assert!(e.to_lowercase().contains("authorization"), "{e}");
}

#[test]
fn without_an_authorizer_acl_requests_get_security_disabled() {
    let broker = Broker::start_with(BrokerConfig::default());
    let mut s = TcpStream::connect(broker.bootstrap()).expect("connect");
    let codes = create_acls(
        &mut s,
        vec![binding("t", LITERAL, "User:alice", WRITE, ALLOW)],
    );
    assert_eq!(codes, vec![SECURITY_DISABLED]);
    let describe = DescribeAclsRequest::default()
        .with_resource_type_filter(ANY)
        .with_pattern_type_filter(ANY)
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(ANY)
        .with_permission_type(ANY);
    let r: DescribeAclsResponse = roundtrip(&mut s, ApiKey::DescribeAcls, 3, 2, &describe);
    assert_eq!(r.error_code, SECURITY_DISABLED);
}

/// `skein acl ARGS --json` as `who` over PLAIN: (exit status, JSON).
fn skein_acl(broker: &Broker, who: (&str, &str), args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(skein_bin())
        .arg("acl")
        .args(args)
        .args(["--bootstrap-server", &broker.bootstrap(), "--json"])
        .args(["--sasl-mechanism", "PLAIN", "--sasl-username", who.0])
        .env("SKEIN_SASL_PASSWORD", who.1)
        .output()
        .expect("run skein");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn skein_acl_adds_lists_and_removes_bindings() {
    let broker = acl_broker();
    create_topics(&broker, &["payments"]);
    let spec = [
        "--topic",
        "pay",
        "--prefixed",
        "--principal",
        "User:alice",
        "--operation",
        "write",
    ];
    let (status, json) = skein_acl(&broker, ADMIN, &[&["add"][..], &spec[..]].concat());
    assert_eq!(status, 0, "{json}");
    produce_as(&broker, ALICE, "payments").expect("alice writes with the CLI's ACL");

    // Listing a topic shows the prefixed binding that applies to it.
    let (status, json) = skein_acl(&broker, ADMIN, &["list", "--topic", "payments"]);
    assert_eq!(status, 0, "{json}");
    assert_eq!(json["acls"][0]["pattern_type"], "PREFIXED", "{json}");
    assert_eq!(json["acls"][0]["operation"], "WRITE", "{json}");

    // alice is no super user: CLUSTER_AUTHORIZATION_FAILED, exit 1.
    let (status, json) = skein_acl(&broker, ALICE, &[&["add"][..], &spec[..]].concat());
    assert_eq!(status, 1, "{json}");
    assert_eq!(json["error"]["code"], 31, "{json}");

    let (status, json) = skein_acl(&broker, ADMIN, &[&["remove"][..], &spec[..]].concat());
    assert_eq!(status, 0, "{json}");
    assert_eq!(json["removed"], 1, "{json}");
    let (status, _) = skein_acl(&broker, ADMIN, &[&["remove"][..], &spec[..]].concat());
    assert_eq!(status, 1, "removing a missing binding fails");
    produce_as(&broker, ALICE, "payments").expect_err("the ACL was removed");
}

/// A group member subscribed to `topic`: the first message's payload, or the first error.
fn group_consume(
    broker: &Broker,
    who: (&str, &str),
    group: &str,
    topic: &str,
) -> Result<String, String> {
    let c: BaseConsumer = config_as(broker, who)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let payload = m.payload().map(|p| String::from_utf8_lossy(p).to_string());
                c.commit_message(&m, rdkafka::consumer::CommitMode::Sync)
                    .map_err(|e| format!("commit: {e}"))?;
                return Ok(payload.unwrap_or_default());
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => {}
        }
    }
    Err("nothing consumed".into())
}

#[test]
fn consumer_groups_need_group_and_topic_read_and_idempotent_producers_need_write() {
    let broker = acl_broker();
    create_topics(&broker, &["events"]);
    let mut admin = login(&broker, ADMIN);
    // WRITE on a topic is enough for an idempotent producer's InitProducerId.
    let codes = create_acls(
        &mut admin,
        vec![binding("events", LITERAL, "User:alice", WRITE, ALLOW)],
    );
    assert_eq!(codes, vec![0]);
    let p: FutureProducer = config_as(&broker, ALICE)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let record = FutureRecord::<(), str>::to("events").payload("first");
    block_on(p.send(record, Duration::from_secs(10))).expect("idempotent produce");

    // Topic READ without the group: GROUP_AUTHORIZATION_FAILED.
    let codes = create_acls(
        &mut admin,
        vec![binding("events", LITERAL, "User:alice", READ, ALLOW)],
    );
    assert_eq!(codes, vec![0]);
    let e = group_consume(&broker, ALICE, "billing", "events")
        .expect_err("consumed without a group ACL");
    assert!(e.to_lowercase().contains("group authorization"), "{e}");

    // With group READ: joins, consumes and commits.
    let codes = create_acls(
        &mut admin,
        vec![group_binding("billing", "User:alice", READ)],
    );
    assert_eq!(codes, vec![0]);
    let payload = group_consume(&broker, ALICE, "billing", "events").expect("group consume");
    assert_eq!(payload, "first");
}

/// (AlterClientQuotas entry code, DescribeClientQuotas code) for one try over `s`.
fn client_quota_calls(s: &mut TcpStream) -> (i16, i16) {
    let entry = EntryData::default()
        .with_entity(vec![EntityData::default()
            .with_entity_type(StrBytes::from_static_str("client-id"))
            .with_entity_name(Some(StrBytes::from_static_str("app")))])
        .with_ops(vec![OpData::default()
            .with_key(StrBytes::from_static_str("producer_byte_rate"))
            .with_value(1024.0)]);
    let alter = AlterClientQuotasRequest::default().with_entries(vec![entry]);
    let altered: AlterClientQuotasResponse = roundtrip(s, ApiKey::AlterClientQuotas, 1, 20, &alter);
    let describe = DescribeClientQuotasRequest::default();
    let described: DescribeClientQuotasResponse =
        roundtrip(s, ApiKey::DescribeClientQuotas, 1, 21, &describe);
    (altered.entries[0].error_code, described.error_code)
}

/// AlterClientQuotas needs CLUSTER ALTER_CONFIGS and DescribeClientQuotas CLUSTER
/// DESCRIBE_CONFIGS (which ALTER_CONFIGS implies).
#[test]
fn client_quota_calls_need_cluster_config_acls() {
    let broker = acl_broker();
    let mut alice = login(&broker, ALICE);
    assert_eq!(
        client_quota_calls(&mut alice),
        (CLUSTER_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED)
    );
    let mut admin = login(&broker, ADMIN);
    assert_eq!(client_quota_calls(&mut admin), (0, 0), "the super user");
    let allow = binding("kafka-cluster", LITERAL, "User:alice", ALTER_CONFIGS, ALLOW)
        .with_resource_type(CLUSTER);
    assert_eq!(create_acls(&mut admin, vec![allow]), vec![0]);
    // CreateAcls answers once the binding is committed and visible on the shard that served
    // it; alice's connection may sit on another shard, whose metadata follows a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut codes = client_quota_calls(&mut alice);
    while codes != (0, 0) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        codes = client_quota_calls(&mut alice);
    }
    assert_eq!(codes, (0, 0));
}

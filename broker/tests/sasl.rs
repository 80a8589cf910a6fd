//! SASL on the Kafka listener against real clients: librdkafka (the `rdkafka` crate, built with
//! OpenSSL for SCRAM) logging in with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; raw frames for
//! what a client library hides (what is served before authentication); `skein user` for
//! AlterUserScramCredentials / DescribeUserScramCredentials; KIP-368 re-authentication.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use common::clients::{assert_replicates_to_all, block_on, client_config, client_config_at};
use common::cluster::start_quorum;
use common::raw::{encode_request, read_frame, roundtrip, write_frame};
use common::{skein_bin, wait_for_bootstrap_users, Broker, BrokerConfig};

const ADMIN: (&str, &str) = ("admin", "admin-secret");
const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

fn sasl_broker(extra: &[(&str, &str)]) -> Broker {
    let mut config = BrokerConfig {
        kafka_protocol: Some("SASL_PLAINTEXT".into()),
        sasl_bootstrap_users: vec![format!("{}:{}", ADMIN.0, ADMIN.1)],
        ..BrokerConfig::default()
    };
    for (k, v) in extra {
        config.broker.push(((*k).into(), (*v).into()));
    }
    let broker = Broker::start_with(config);
    wait_for_bootstrap_users(&[&broker]);
    broker
}

/// Records the errors librdkafka reports (authentication failures among them).
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0
            .lock()
            .expect("errors lock")
            .push(format!("{error} {reason}"));
    }
}

fn sasl_config(broker: &Broker, mechanism: &str, user: &str, password: &str) -> ClientConfig {
    client_config(
        broker,
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", mechanism),
            ("sasl.username", user),
            ("sasl.password", password),
            ("linger.ms", "0"),
            ("message.timeout.ms", "8000"),
        ],
    )
}

fn producer(config: &ClientConfig, errors: &Errors) -> FutureProducer<Errors> {
    config
        .create_with_context(errors.clone())
        .expect("create producer")
}

fn produce_one(p: &FutureProducer<Errors>, topic: &str) -> Result<(i32, i64), String> {
    let record = FutureRecord::<(), str>::to(topic).payload("hello");
    block_on(p.send(record, Duration::from_secs(10)))
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| e.to_string())
}

fn assert_login_works(broker: &Broker, mechanism: &str, user: &str, password: &str) {
    let errors = Errors::default();
    let p = producer(&sasl_config(broker, mechanism, user, password), &errors);
    let topic = format!("t-{}-{user}", mechanism.to_lowercase());
    let r = produce_one(&p, &topic);
    assert!(
        r.is_ok(),
        "{mechanism} as {user}: {r:?}; errors {:?}",
        errors.0.lock().expect("errors")
    );
}

fn assert_login_fails(broker: &Broker, mechanism: &str, user: &str, password: &str) {
    let errors = Errors::default();
    let p = producer(&sasl_config(broker, mechanism, user, password), &errors);
    let r = produce_one(&p, "refused");
    assert!(
        r.is_err(),
        "{mechanism} as {user} with a wrong password produced"
    );
    let seen = errors.0.lock().expect("errors").join("\n");
    assert!(
        seen.to_lowercase().contains("authentication"),
        "{mechanism}: no authentication error reported: {seen}"
    );
}

#[test]
fn each_mechanism_logs_in_with_the_right_password_only() {
    let broker = sasl_broker(&[]);
    for m in MECHANISMS {
        assert_login_works(&broker, m, ADMIN.0, ADMIN.1);
        assert_login_fails(&broker, m, ADMIN.0, "wrong-password");
        assert_login_fails(&broker, m, "nobody", ADMIN.1);
    }
    // Never a password in the log.
    assert!(!broker.log_tail(10_000).contains(ADMIN.1));
}

#[test]
fn nothing_is_served_before_authentication() {
    let broker = sasl_broker(&[]);
    // ApiVersions is answered and lists the SASL APIs.
    let mut s = TcpStream::connect(broker.addr()).expect("connect");
    let r: ApiVersionsResponse = roundtrip(
        &mut s,
        ApiKey::ApiVersions,
        3,
        1,
        &ApiVersionsRequest::default(),
    );
    assert_eq!(r.error_code, 0);
    assert!(r
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::SaslHandshake as i16));
    // Metadata before authentication: the connection is closed, nothing answered.
    write_frame(
        &mut s,
        &encode_request(ApiKey::Metadata, 12, 2, &MetadataRequest::default()),
    );
    assert!(
        read_frame(&mut s).is_none(),
        "Metadata was answered before authentication"
    );

    // An unsupported mechanism: UNSUPPORTED_SASL_MECHANISM with the enabled ones.
    let mut s = TcpStream::connect(broker.addr()).expect("connect");
    let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("GSSAPI"));
    let r: SaslHandshakeResponse = roundtrip(&mut s, ApiKey::SaslHandshake, 1, 1, &hs);
    assert_eq!(r.error_code, 33);
    let offered: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(offered, MECHANISMS);

    // SaslAuthenticate before SaslHandshake: ILLEGAL_SASL_STATE.
    let mut s = TcpStream::connect(broker.addr()).expect("connect");
    let r: SaslAuthenticateResponse = roundtrip(
        &mut s,
        ApiKey::SaslAuthenticate,
        2,
        1,
        &SaslAuthenticateRequest::default(),
    );
    assert_eq!(r.error_code, 34);

    // A wrong PLAIN password: SASL_AUTHENTICATION_FAILED with a message, then closed.
    let mut s = TcpStream::connect(broker.addr()).expect("connect");
    let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let r: SaslHandshakeResponse = roundtrip(&mut s, ApiKey::SaslHandshake, 1, 1, &hs);
    assert_eq!(r.error_code, 0);
    let auth = SaslAuthenticateRequest::default()
        .with_auth_bytes(bytes::Bytes::from_static(b"\0admin\0nope"));
    let r: SaslAuthenticateResponse = roundtrip(&mut s, ApiKey::SaslAuthenticate, 2, 2, &auth);
    assert_eq!(r.error_code, 58);
    assert!(r.error_message.is_some());
    assert!(
        read_frame(&mut s).is_none(),
        "connection stayed open after a failed login"
    );

    // A librdkafka client without SASL gets no metadata.
    let errors = Errors::default();
    let plain = client_config(&broker, &[("message.timeout.ms", "3000")]);
    let p = producer(&plain, &errors);
    assert!(produce_one(&p, "unauthenticated").is_err());
}

struct Run {
    status: i32,
    json: Value,
    stderr: String,
}

/// `skein ARGS` as the bootstrap admin over SCRAM-SHA-512.
fn skein(broker: &Broker, args: &[&str]) -> Run {
    let out = Command::new(skein_bin())
        .args(args)
        .args(["--bootstrap-server", &broker.bootstrap(), "--json"])
        .args([
            "--sasl-mechanism",
            "SCRAM-SHA-512",
            "--sasl-username",
            ADMIN.0,
        ])
        .env("SKEIN_SASL_PASSWORD", ADMIN.1)
        .output()
        .expect("run skein");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    Run {
        status: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

#[test]
fn users_made_with_alter_user_scram_credentials_log_in_and_survive_a_restart() {
    let mut broker = sasl_broker(&[]);
    for (mechanism, iterations) in [("SCRAM-SHA-256", "4096"), ("SCRAM-SHA-512", "8192")] {
        let r = skein(
            &broker,
            &[
                "user",
                "set-password",
                "alice",
                "--mechanism",
                mechanism,
                "--password",
                "alice-pw",
                "--iterations",
                iterations,
            ],
        );
        assert_eq!(r.status, 0, "set-password: {} {}", r.json, r.stderr);
    }
    // Too few iterations: UNACCEPTABLE_CREDENTIAL, exit 1.
    let r = skein(
        &broker,
        &[
            "user",
            "set-password",
            "bob",
            "--password",
            "x",
            "--iterations",
            "100",
        ],
    );
    assert_eq!(r.status, 1, "{}", r.json);
    assert_eq!(r.json["results"][0]["error"]["code"], 93);

    for m in MECHANISMS {
        assert_login_works(&broker, m, "alice", "alice-pw");
        assert_login_fails(&broker, m, "alice", "admin-secret");
    }
    let r = skein(&broker, &["user", "list"]);
    assert_eq!(r.status, 0, "{} {}", r.json, r.stderr);
    let alice = r.json["users"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["user"] == "alice"))
        .cloned()
        .expect("alice listed");
    assert_eq!(
        alice["credentials"],
        serde_json::json!([
            {"mechanism": "SCRAM-SHA-256", "iterations": 4096},
            {"mechanism": "SCRAM-SHA-512", "iterations": 8192},
        ])
    );
    assert!(!r.json.to_string().contains("alice-pw"));

    broker.restart();
    wait_for_bootstrap_users(&[&broker]);
    assert_login_works(&broker, "SCRAM-SHA-256", "alice", "alice-pw");
    assert_login_works(&broker, "PLAIN", "alice", "alice-pw");

    // Deleting one mechanism leaves the other; deleting the rest removes the user.
    let r = skein(
        &broker,
        &["user", "delete", "alice", "--mechanism", "SCRAM-SHA-512"],
    );
    assert_eq!(r.status, 0, "{} {}", r.json, r.stderr);
    assert_login_fails(&broker, "SCRAM-SHA-512", "alice", "alice-pw");
    assert_login_works(&broker, "SCRAM-SHA-256", "alice", "alice-pw");
    let r = skein(&broker, &["user", "delete", "alice"]);
    assert_eq!(r.status, 0, "{} {}", r.json, r.stderr);
    let r = skein(&broker, &["user", "list", "alice"]);
    assert_eq!(r.status, 1, "{}", r.json);
    assert_eq!(r.json["users"][0]["error"]["code"], 91);
}

#[test]
fn a_producer_outlives_its_session_by_reauthenticating() {
    let broker = sasl_broker(&[("connections.max.reauth.ms", "2000")]);
    let errors = Errors::default();
    let p = producer(
        &sasl_config(&broker, "SCRAM-SHA-256", ADMIN.0, ADMIN.1),
        &errors,
    );
    let start = Instant::now();
    let mut delivered = 0;
    while start.elapsed() < Duration::from_secs(7) {
        let r = produce_one(&p, "reauth");
        assert!(
            r.is_ok(),
            "after {:?}: {r:?}; errors {:?}",
            start.elapsed(),
            errors.0.lock()
        );
        delivered += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(delivered > 30, "{delivered}");
    // Re-authenticated in place: no authentication error, and no disconnect either (a client
    // that reconnected instead would report one).
    let seen = errors.0.lock().expect("errors").join("\n");
    assert!(seen.is_empty(), "{seen}");
}

/// SaslHandshake v1 + one SaslAuthenticate v2 with a PLAIN token, on a raw connection.
fn plain_login(s: &mut TcpStream, user: &str, password: &str) -> SaslAuthenticateResponse {
    let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let r: SaslHandshakeResponse = roundtrip(s, ApiKey::SaslHandshake, 1, 1, &hs);
    assert_eq!(r.error_code, 0);
    let token = format!("\0{user}\0{password}");
    let auth = SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from(token));
    roundtrip(s, ApiKey::SaslAuthenticate, 2, 2, &auth)
}

fn metadata_answered(s: &mut TcpStream) -> bool {
    write_frame(
        s,
        &encode_request(ApiKey::Metadata, 12, 9, &MetadataRequest::default()),
    );
    read_frame(s).is_some()
}

#[test]
fn an_expired_session_is_closed_and_a_renewed_one_is_not() {
    let broker = sasl_broker(&[("connections.max.reauth.ms", "1000")]);
    let mut s = TcpStream::connect(broker.addr()).expect("connect");
    let r = plain_login(&mut s, ADMIN.0, ADMIN.1);
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, 1000));
    assert!(metadata_answered(&mut s));
    std::thread::sleep(Duration::from_millis(1300));
    assert!(!metadata_answered(&mut s), "an expired session was served");

    // Re-authenticating on the same connection renews the session.
    let mut s = TcpStream::connect(broker.addr()).expect("connect");
    assert_eq!(plain_login(&mut s, ADMIN.0, ADMIN.1).error_code, 0);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(plain_login(&mut s, ADMIN.0, ADMIN.1).error_code, 0);
    std::thread::sleep(Duration::from_millis(700));
    assert!(metadata_answered(&mut s), "a renewed session was closed");
}

#[test]
fn handshake_v0_exchanges_raw_tokens() {
    let broker = sasl_broker(&[]);
    let mut s = TcpStream::connect(broker.addr()).expect("connect");
    let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let r: SaslHandshakeResponse = roundtrip(&mut s, ApiKey::SaslHandshake, 0, 1, &hs);
    assert_eq!(r.error_code, 0);
    write_frame(&mut s, format!("\0{}\0{}", ADMIN.0, ADMIN.1).as_bytes());
    let answer = read_frame(&mut s).expect("an answer to the raw token");
    assert!(answer.is_empty(), "PLAIN's final token is empty");
    assert!(metadata_answered(&mut s));
    // A wrong password on v0: closed without an answer (v0 has no error field).
    let mut s = TcpStream::connect(broker.addr()).expect("connect");
    let _: SaslHandshakeResponse = roundtrip(&mut s, ApiKey::SaslHandshake, 0, 1, &hs);
    write_frame(&mut s, b"\0admin\0nope");
    assert!(read_frame(&mut s).is_none());
}

#[test]
fn a_plaintext_listener_answers_sasl_requests_with_illegal_sasl_state() {
    let broker = Broker::start();
    let mut s = TcpStream::connect(broker.addr()).expect("connect");
    let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let r: SaslHandshakeResponse = roundtrip(&mut s, ApiKey::SaslHandshake, 1, 1, &hs);
    assert_eq!(r.error_code, 34);
    assert!(metadata_answered(&mut s), "the connection was closed");
}

#[test]
fn followers_log_in_to_a_sasl_listener_with_the_inter_broker_user() {
    let jaas = "\"org.apache.kafka.common.security.scram.ScramLoginModule required \
                username=\\\"broker\\\" password=\\\"broker-secret\\\";\"";
    let nodes = start_quorum(3, 0, |_| {
        BrokerConfig {
            shards: "0".into(),
            kafka_protocol: Some("SASL_PLAINTEXT".into()),
            sasl_bootstrap_users: vec![
                format!("{}:{}", ADMIN.0, ADMIN.1),
                "broker:broker-secret".into(),
            ],
            ..BrokerConfig::default()
        }
        .set("sasl.mechanism.inter.broker.protocol", "\"SCRAM-SHA-512\"")
        .set("sasl.jaas.config", jaas)
        // Followers need CLUSTER_ACTION: their login must be the broker user.
        .set("authorizer.class.name", "\"skein.StandardAuthorizer\"")
        .set("super.users", "\"User:admin;User:broker\"")
    });
    wait_for_bootstrap_users(&nodes.iter().collect::<Vec<_>>());
    let bootstrap: Vec<String> = nodes.iter().map(Broker::bootstrap).collect();
    let client = client_config_at(
        &bootstrap.join(","),
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            ("sasl.username", ADMIN.0),
            ("sasl.password", ADMIN.1),
        ],
    );
    assert_replicates_to_all(&client, 3, "replicated-over-sasl", 100);
}

//! TLS against real clients: librdkafka (the `rdkafka` crate, built with OpenSSL) over SSL and
//! SASL_SSL listeners, with and without client certificates; `skein acl` / `skein topic` over
//! mutual TLS; a certificate swapped under a running broker and reloaded with SIGHUP; three
//! nodes whose followers replicate, and whose controller RPC runs, over mutual TLS. Every test
//! makes its own CA and certificates (rcgen) in a temporary directory.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use skein_net::tls::test_pki::{TestCa, TestCert};
use tempfile::TempDir;

use common::clients::{
    assert_replicates_to_all, block_on, client_config, client_config_at, consume_from_start,
    expect_delivered, payloads, produce_all, records,
};
use common::cluster::start_quorum;
use common::{skein_bin, wait_for_bootstrap_users, Broker, BrokerConfig};

/// A CA, and the files of the certificates it issues, in one temporary directory.
struct Pki {
    dir: TempDir,
    ca: TestCa,
    ca_path: PathBuf,
}

/// A certificate's files: key and certificate apart (librdkafka's `ssl.key.location`,
/// `ssl.certificate.location`) and together (Skein's PEM keystore).
struct CertFiles {
    key: PathBuf,
    cert: PathBuf,
    keystore: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("pki dir");
        let ca = TestCa::new(name);
        let ca_path = dir.path().join(format!("{name}.pem"));
        std::fs::write(&ca_path, &ca.cert_pem).expect("write CA");
        Pki { dir, ca, ca_path }
    }

    /// A certificate for `common_name`, valid for 127.0.0.1 and localhost.
    fn issue(&self, common_name: &str) -> CertFiles {
        let cert = self.ca.issue(common_name, &["127.0.0.1", "localhost"]);
        self.write(common_name, &cert)
    }

    fn write(&self, name: &str, cert: &TestCert) -> CertFiles {
        let path = |suffix: &str| self.dir.path().join(format!("{name}{suffix}"));
        let files = CertFiles {
            key: path(".key"),
            cert: path(".crt"),
            keystore: path(".keystore.pem"),
        };
        std::fs::write(&files.key, &cert.key_pem).expect("write key");
        std::fs::write(&files.cert, &cert.cert_pem).expect("write certificate");
        std::fs::write(&files.keystore, cert.keystore_pem()).expect("write keystore");
        files
    }
}

fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// A broker whose Kafka listener is `protocol` (SSL or SASL_SSL), holding `cert`, trusting
/// `pki`'s CA, with `[broker]` extras.
fn tls_broker(
    pki: &Pki,
    cert: &CertFiles,
    protocol: &str,
    extra: &[(&str, &str)],
    users: &[&str],
) -> Broker {
    let mut config = BrokerConfig {
        kafka_protocol: Some(protocol.into()),
        sasl_bootstrap_users: users.iter().map(|u| u.to_string()).collect(),
        ..BrokerConfig::default()
    }
    .set("ssl.keystore.location", &toml_path(&cert.keystore))
    .set("ssl.truststore.location", &toml_path(&pki.ca_path));
    for (key, value) in extra {
        config = config.set(key, value);
    }
    Broker::start_with(config)
}

/// librdkafka over TLS, trusting `ca`, presenting `identity` when given.
fn ssl_client(
    bootstrap: &str,
    protocol: &str,
    ca: &Path,
    identity: Option<&CertFiles>,
) -> ClientConfig {
    let mut config = client_config_at(
        bootstrap,
        &[
            ("security.protocol", protocol),
            ("ssl.ca.location", &ca.display().to_string()),
            ("linger.ms", "0"),
            ("message.timeout.ms", "8000"),
        ],
    );
    if let Some(id) = identity {
        config.set("ssl.certificate.location", id.cert.display().to_string());
        config.set("ssl.key.location", id.key.display().to_string());
    }
    config
}

fn produce_one(config: &ClientConfig, topic: &str) -> Result<(), String> {
    let p: FutureProducer = config.create().map_err(|e| e.to_string())?;
    let record = FutureRecord::<(), str>::to(topic).payload("hello");
    block_on(p.send(record, Duration::from_secs(10)))
        .map(|_| ())
        .map_err(|(e, _)| e.to_string())
}

#[test]
fn an_ssl_listener_serves_librdkafka_and_refuses_strangers() {
    let pki = Pki::new("test-ca");
    let broker = tls_broker(&pki, &pki.issue("broker-1"), "SSL", &[], &[]);
    let client = ssl_client(&broker.bootstrap(), "ssl", &pki.ca_path, None);

    let producer: FutureProducer = client.create().expect("producer");
    let payloads = payloads(200);
    let delivered = expect_delivered(produce_all(&producer, records("over-tls", &payloads)));
    assert_eq!(delivered.last().map(|d| d.1), Some(199));
    assert_eq!(consume_from_start(&client, "over-tls", 200), payloads);

    // A client that trusts another CA does not accept the broker's certificate.
    let other = Pki::new("other-ca");
    let stranger = ssl_client(&broker.bootstrap(), "ssl", &other.ca_path, None);
    let err = produce_one(&stranger, "over-tls").expect_err("untrusted broker");
    assert!(err.contains("timed out") || err.contains("SSL"), "{err}");
    // Nor does a plaintext client get anything from a TLS listener.
    let plain = client_config(&broker, &[("message.timeout.ms", "5000")]);
    assert!(produce_one(&plain, "over-tls").is_err());
    // The broker still serves the trusted client.
    produce_one(&client, "over-tls").expect("trusted client after strangers");
}

#[test]
fn with_mutual_tls_the_certificate_subject_is_the_principal() {
    let pki = Pki::new("test-ca");
    let broker = tls_broker(
        &pki,
        &pki.issue("broker-1"),
        "SSL",
        &[
            ("ssl.client.auth", "\"required\""),
            ("authorizer.class.name", "\"skein.StandardAuthorizer\""),
            ("super.users", "\"User:CN=admin\""),
        ],
        &[],
    );
    let admin = pki.issue("admin");
    // `skein` over mutual TLS: the admin certificate makes it a super user.
    let skein = |args: &[&str]| {
        let out = Command::new(skein_bin())
            .args(args)
            .args(["--bootstrap-server", &broker.bootstrap()])
            .arg("--ssl-ca")
            .arg(&pki.ca_path)
            .arg("--ssl-keystore")
            .arg(&admin.keystore)
            .output()
            .expect("run skein");
        assert!(
            out.status.success(),
            "skein {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    skein(&["topic", "create", "orders", "--partitions", "1"]);
    skein(&["topic", "create", "payroll", "--partitions", "1"]);
    skein(&[
        "acl",
        "add",
        "--topic",
        "orders",
        "--principal",
        "User:CN=writer",
        "--operation",
        "WRITE",
    ]);

    let writer = ssl_client(
        &broker.bootstrap(),
        "ssl",
        &pki.ca_path,
        Some(&pki.issue("writer")),
    );
    produce_one(&writer, "orders").expect("writer may write orders");
    let err = produce_one(&writer, "payroll").expect_err("no ACL on payroll");
    assert!(err.contains("authoriz"), "{err}");

    // Another subject of the same CA has no ACL.
    let reader = ssl_client(
        &broker.bootstrap(),
        "ssl",
        &pki.ca_path,
        Some(&pki.issue("reader")),
    );
    let err = produce_one(&reader, "orders").expect_err("reader may not write");
    assert!(err.contains("authoriz"), "{err}");

    // No certificate, or one from another CA: the handshake fails.
    let anonymous = ssl_client(&broker.bootstrap(), "ssl", &pki.ca_path, None);
    assert!(produce_one(&anonymous, "orders").is_err());
    let other = Pki::new("other-ca");
    let forged = ssl_client(
        &broker.bootstrap(),
        "ssl",
        &pki.ca_path,
        Some(&other.issue("writer")),
    );
    assert!(produce_one(&forged, "orders").is_err());
}

#[test]
fn sasl_ssl_logs_in_over_tls() {
    let pki = Pki::new("test-ca");
    let broker = tls_broker(
        &pki,
        &pki.issue("broker-1"),
        "SASL_SSL",
        &[],
        &["admin:admin-secret"],
    );
    wait_for_bootstrap_users(&[&broker]);
    let login = |password: &str| {
        let mut config = ssl_client(&broker.bootstrap(), "sasl_ssl", &pki.ca_path, None);
        config
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", "admin")
            .set("sasl.password", password);
        config
    };
    produce_one(&login("admin-secret"), "sasl-over-tls").expect("right password");
    let err = produce_one(&login("wrong"), "sasl-over-tls").expect_err("wrong password");
    assert!(
        err.contains("uthentication") || err.contains("timed out"),
        "{err}"
    );
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections() {
    let old = Pki::new("old-ca");
    let new = Pki::new("new-ca");
    let cert = old.issue("broker-1");
    let mut broker = tls_broker(&old, &cert, "SSL", &[], &[]);
    let trusts_old = ssl_client(&broker.bootstrap(), "ssl", &old.ca_path, None);
    let trusts_new = ssl_client(&broker.bootstrap(), "ssl", &new.ca_path, None);
    produce_one(&trusts_old, "reloaded").expect("old certificate served");
    assert!(produce_one(&trusts_new, "reloaded").is_err());

    let hup = |broker: &mut Broker| {
        let pid = broker.pid().expect("running broker");
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
    };
    let await_log = |broker: &Broker, line: &str, count: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while broker.log_tail(400).matches(line).count() < count {
            assert!(Instant::now() < deadline, "no `{line}` in the log");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // A half-written keystore: the reload fails and the old certificate stays.
    std::fs::write(&cert.keystore, "-----BEGIN PRIVATE KEY-----\n").expect("truncate");
    hup(&mut broker);
    await_log(&broker, "TLS reload failed", 1);
    produce_one(&trusts_old, "reloaded").expect("old certificate still served");

    // The new CA's certificate, in place: new connections get it.
    let replacement = new.ca.issue("broker-1", &["127.0.0.1", "localhost"]);
    std::fs::write(&cert.keystore, replacement.keystore_pem()).expect("replace keystore");
    hup(&mut broker);
    await_log(&broker, "TLS key and certificates reloaded", 1);
    produce_one(&trusts_new, "reloaded").expect("new certificate served");
    assert!(produce_one(&trusts_old, "reloaded").is_err());
    broker.assert_running();
}

#[test]
fn four_nodes_replicate_and_elect_over_mutual_tls() {
    let pki = Pki::new("cluster-ca");
    let admin = pki.issue("admin");
    // Three voters and a broker-only node, which dials the voters over TLS too. The brokers'
    // subjects are the super users: the internal listener admits no other certificate, though
    // the same CA signs the admin client's.
    let nodes = start_quorum(3, 1, |id| {
        let cert = pki.issue(&format!("broker-{id}"));
        BrokerConfig {
            shards: "0".into(),
            kafka_protocol: Some("SSL".into()),
            internal_protocol: Some("SSL".into()),
            ..BrokerConfig::default()
        }
        .set("ssl.keystore.location", &toml_path(&cert.keystore))
        .set("ssl.truststore.location", &toml_path(&pki.ca_path))
        .set("ssl.client.auth", "\"required\"")
        .set(
            "super.users",
            "\"User:CN=broker-1;User:CN=broker-2;User:CN=broker-3;User:CN=broker-4\"",
        )
    });
    let bootstrap: Vec<String> = nodes.iter().map(Broker::bootstrap).collect();
    let client = ssl_client(&bootstrap.join(","), "ssl", &pki.ca_path, Some(&admin));
    // Every node registered through the controller over mutual TLS, and followers fetch from
    // the leader over TLS with their own certificates.
    assert_replicates_to_all(&client, 4, "replicated", 100);
    drop(nodes);
}

#[test]
fn the_metrics_listener_serves_https() {
    let pki = Pki::new("test-ca");
    let cert = pki.issue("broker-1");
    let broker = Broker::start_with(
        BrokerConfig {
            metrics_listener: Some("SSL://127.0.0.1:0".into()),
            ..BrokerConfig::default()
        }
        .set("ssl.keystore.location", &toml_path(&cert.keystore)),
    );
    let log = std::fs::read_to_string(broker.log_path()).expect("broker log");
    let addr: std::net::SocketAddr = log
        .lines()
        .find_map(|l| l.strip_prefix("skein: metrics on https://"))
        .and_then(|l| l.trim_end_matches("/metrics").parse().ok())
        .expect("the broker printed its https metrics address");

    let config = skein_net::tls::client_config(&pki.ca_path, None, true).expect("client config");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    let session = rustls::ClientConnection::new(config, name).expect("session");
    let socket = std::net::TcpStream::connect(addr).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(session, socket);
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: skein\r\n\r\n")
        .expect("send request");
    let mut answer = String::new();
    tls.read_to_string(&mut answer)
        .expect("read answer (ends with close_notify)");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");
    assert!(answer.contains("skein_"), "{answer:.400}");

    // Plain HTTP to the HTTPS listener gets no answer.
    let mut plain = std::net::TcpStream::connect(addr).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: skein\r\n\r\n")
        .expect("send");
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(!raw.starts_with(b"HTTP/1.1 200"), "plain HTTP was answered");
}

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::future::{block_on, zip};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::test_pki::{TestCa, TestCert};
use super::*;

/// One end of a socketpair, polled by spinning: enough for a handshake in a test.
struct Spin(UnixStream);

fn would_block<T>(r: io::Result<T>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        r => Poll::Ready(r),
    }
}

impl AsyncRead for Spin {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        would_block(self.0.read(buf), cx)
    }
}

impl AsyncWrite for Spin {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        would_block(self.0.write(buf), cx)
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn pair() -> (Spin, Spin) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("nonblocking");
    b.set_nonblocking(true).expect("nonblocking");
    (Spin(a), Spin(b))
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    }

    /// Options for a node holding `cert`, trusting `ca`.
    fn options(&self, name: &str, cert: &TestCert, ca: &TestCa, auth: ClientAuth) -> TlsOptions {
        TlsOptions {
            keystore: self.write(&format!("{name}.pem"), &cert.keystore_pem()),
            truststore: Some(self.write(&format!("{name}-ca.pem"), &ca.cert_pem)),
            client_auth: auth,
            protocols: vec![TlsVersion::Tls12, TlsVersion::Tls13],
            verify_hostname: true,
        }
    }
}

/// Handshakes `client` (reaching `host`) with `server` on its Kafka listener, sends a line
/// each way, and gives the principal the server saw.
fn exchange(
    server: &TlsContext,
    client: &TlsContext,
    host: &str,
) -> Result<Option<String>, String> {
    let (a, b) = pair();
    let served = async {
        let mut s = server
            .accept(Listener::Kafka, a)
            .await
            .map_err(|e| format!("server: {e}"))?;
        let mut line = [0u8; 5];
        s.read_exact(&mut line)
            .await
            .map_err(|e| format!("server read: {e}"))?;
        assert_eq!(&line, b"hello");
        s.write_all(b"bye")
            .await
            .map_err(|e| format!("server write: {e}"))?;
        s.flush().await.map_err(|e| format!("server flush: {e}"))?;
        let principal = s.peer_certificate().map(subject_principal).transpose();
        principal.map_err(|e| e.to_string())
    };
    let sent = async {
        let mut c = client
            .connect(host, b)
            .await
            .map_err(|e| format!("client: {e}"))?;
        c.write_all(b"hello")
            .await
            .map_err(|e| format!("client write: {e}"))?;
        c.flush().await.map_err(|e| format!("client flush: {e}"))?;
        let mut line = [0u8; 3];
        c.read_exact(&mut line)
            .await
            .map_err(|e| format!("client read: {e}"))?;
        assert_eq!(&line, b"bye");
        Ok::<(), String>(())
    };
    let (served, sent) = block_on(zip(served, sent));
    // The side that failed first names the cause; the other only saw the connection go.
    sent.and(served)
}

#[test]
fn mutual_tls_names_the_client_by_its_subject() {
    let ca = TestCa::new("test CA");
    let files = Files::new();
    let server = TlsContext::load(files.options(
        "server",
        &ca.issue("broker-1", &["localhost", "127.0.0.1"]),
        &ca,
        ClientAuth::Required,
    ))
    .expect("server");
    let client =
        TlsContext::load(files.options("client", &ca.issue("alice", &[]), &ca, ClientAuth::None))
            .expect("client");
    assert_eq!(
        exchange(&server, &client, "127.0.0.1"),
        Ok(Some("CN=alice".to_string()))
    );
    assert_eq!(
        exchange(&server, &client, "localhost"),
        Ok(Some("CN=alice".to_string()))
    );
}

#[test]
fn a_server_of_another_ca_or_another_name_is_refused() {
    let ca = TestCa::new("test CA");
    let other = TestCa::new("other CA");
    let files = Files::new();
    let server = TlsContext::load(files.options(
        "server",
        &ca.issue("broker-1", &["localhost"]),
        &ca,
        ClientAuth::None,
    ))
    .expect("server");
    let stranger = TlsContext::load(files.options(
        "stranger",
        &other.issue("c", &[]),
        &other,
        ClientAuth::None,
    ))
    .expect("stranger");
    assert!(exchange(&server, &stranger, "localhost").is_err());

    // The certificate names localhost, not 127.0.0.1: refused unless hostname checks are off.
    let mut options = files.options("client", &ca.issue("c", &[]), &ca, ClientAuth::None);
    let client = TlsContext::load(options.clone()).expect("client");
    assert!(exchange(&server, &client, "127.0.0.1").is_err());
    options.verify_hostname = false;
    let lax = TlsContext::load(options).expect("client");
    assert_eq!(exchange(&server, &lax, "127.0.0.1"), Ok(None));
}

#[test]
fn a_client_certificate_is_asked_for_as_configured() {
    let ca = TestCa::new("test CA");
    let other = TestCa::new("other CA");
    let files = Files::new();
    let server_cert = ca.issue("broker-1", &["localhost"]);
    let required =
        TlsContext::load(files.options("required", &server_cert, &ca, ClientAuth::Required))
            .expect("server");
    let requested =
        TlsContext::load(files.options("requested", &server_cert, &ca, ClientAuth::Requested))
            .expect("server");
    // Trusts the server's CA but holds a certificate the server's CA did not sign.
    let mut options = files.options(
        "foreign",
        &other.issue("mallory", &[]),
        &ca,
        ClientAuth::None,
    );
    options.truststore = Some(files.write("foreign-ca.pem", &ca.cert_pem));
    let foreign = TlsContext::load(options).expect("client");
    assert!(exchange(&required, &foreign, "localhost").is_err());
    assert!(exchange(&requested, &foreign, "localhost").is_err());

    let alice =
        TlsContext::load(files.options("alice", &ca.issue("alice", &[]), &ca, ClientAuth::None))
            .expect("client");
    assert_eq!(
        exchange(&requested, &alice, "localhost"),
        Ok(Some("CN=alice".to_string()))
    );
}

#[test]
fn reload_takes_new_files_and_keeps_the_old_ones_on_error() {
    let old_ca = TestCa::new("old CA");
    let new_ca = TestCa::new("new CA");
    let files = Files::new();
    let options = files.options(
        "server",
        &old_ca.issue("broker-1", &["localhost"]),
        &old_ca,
        ClientAuth::None,
    );
    let server = TlsContext::load(options.clone()).expect("server");
    let trusts_old = TlsContext::load(files.options(
        "c-old",
        &old_ca.issue("c", &[]),
        &old_ca,
        ClientAuth::None,
    ))
    .expect("client");
    let trusts_new = TlsContext::load(files.options(
        "c-new",
        &new_ca.issue("c", &[]),
        &new_ca,
        ClientAuth::None,
    ))
    .expect("client");
    assert!(exchange(&server, &trusts_old, "localhost").is_ok());
    assert!(exchange(&server, &trusts_new, "localhost").is_err());

    // A half-written keystore: the reload fails and the server still serves the old one.
    std::fs::write(&options.keystore, "-----BEGIN PRIVATE KEY-----\n").expect("write");
    assert!(server.reload().is_err());
    assert!(exchange(&server, &trusts_old, "localhost").is_ok());

    std::fs::write(
        &options.keystore,
        new_ca.issue("broker-1", &["localhost"]).keystore_pem(),
    )
    .expect("write");
    server.reload().expect("reload");
    assert!(exchange(&server, &trusts_new, "localhost").is_ok());
    assert!(exchange(&server, &trusts_old, "localhost").is_err());
}

#[test]
fn bad_files_are_reported_with_their_path() {
    let ca = TestCa::new("test CA");
    let files = Files::new();
    let mut options = files.options(
        "server",
        &ca.issue("b", &["localhost"]),
        &ca,
        ClientAuth::Required,
    );
    let missing = files.dir.path().join("missing.pem");
    let keystore = options.keystore.clone();

    options.keystore = missing.clone();
    let err = TlsContext::load(options.clone()).expect_err("missing keystore");
    assert!(
        matches!(&err, TlsError::Read { path, .. } if *path == missing),
        "{err}"
    );

    // A certificate without its key.
    options.keystore = files.write("no-key.pem", &ca.cert_pem);
    let err = TlsContext::load(options.clone()).expect_err("no key");
    assert!(err.to_string().contains("no-key.pem"), "{err}");

    // A key that belongs to another certificate.
    let a = ca.issue("a", &[]);
    let b = ca.issue("b", &[]);
    options.keystore = files.write("mismatch.pem", &format!("{}{}", a.key_pem, b.cert_pem));
    let err = TlsContext::load(options.clone()).expect_err("mismatch");
    assert!(err.to_string().contains("mismatch.pem"), "{err}");

    // Client certificates asked for, but nothing to check them against.
    options.keystore = keystore;
    options.truststore = None;
    let err = TlsContext::load(options).expect_err("no truststore");
    assert!(matches!(err, TlsError::Config(_)), "{err}");
}

#[test]
fn protocol_lists_parse_as_kafka_writes_them() {
    assert_eq!(
        TlsVersion::parse_list("TLSv1.2,TLSv1.3"),
        Ok(vec![TlsVersion::Tls12, TlsVersion::Tls13])
    );
    assert_eq!(
        TlsVersion::parse_list(" TLSv1.3 "),
        Ok(vec![TlsVersion::Tls13])
    );
    assert!(TlsVersion::parse_list("TLSv1.1").is_err());
    assert!(TlsVersion::parse_list("").is_err());
    assert_eq!(ClientAuth::parse("required"), Ok(ClientAuth::Required));
    assert!(ClientAuth::parse("REQUIRED").is_err());
}

//! The transport over real TCP on 127.0.0.1, all on one glommio executor: a Raft group that
//! fails over, client rotation to the active controller, and servers that survive bad peers.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use skein_net::internal::{
    decode_internal, encode_internal, InternalFrame, InternalMessage, NOT_CONTROLLER,
};

use skein_net::tls::test_pki::TestCa;
use skein_net::tls::{ClientAuth, TlsContext, TlsOptions, TlsVersion};

use super::*;
use crate::image::MetadataRecord;
use crate::test_util::{run, temp_dir};
use crate::transport::RaftTransport;
use crate::{ControllerConfig, ControllerNode, Mailbox};

const WAIT: Duration = Duration::from_secs(10);

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// Polls `done` every 5 ms until it holds; panics after `within`.
async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "timed out waiting for {what}");
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// A voter's server: Raft into the mailbox; it answers requests NOT_CONTROLLER.
struct RaftOnly {
    mailbox: Mailbox,
}

impl RequestHandler for RaftOnly {
    fn deliver_raft(&self, msg: raft::eraftpb::Message) {
        let _ = self.mailbox.deliver(msg);
    }

    fn handle(&self, _: i32, _: InternalMessage) -> Pin<Box<dyn Future<Output = InternalMessage>>> {
        Box::pin(async { not_controller() })
    }
}

fn not_controller() -> InternalMessage {
    InternalMessage::AllocateProducerIdsResponse {
        error_code: NOT_CONTROLLER,
        start: -1,
        len: 0,
    }
}

struct Voter {
    node: Option<ControllerNode>,
    server: Option<glommio::Task<()>>,
    transport: Rc<PeerTransport>,
    _dir: tempfile::TempDir,
}

impl Voter {
    async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await.unwrap();
        }
        if let Some(server) = self.server.take() {
            server.cancel().await;
        }
        self.transport.close().await;
    }
}

/// Voters over the real transport, behind a cluster secret (so the handshake is on every Raft
/// connection these tests make).
async fn start_voters(ids: &[i32]) -> Vec<Voter> {
    let secret = ClusterSecret::new(b"voters' shared secret").unwrap();
    let bound: Vec<_> = ids.iter().map(|_| listener()).collect();
    let addrs: Vec<_> = ids
        .iter()
        .zip(&bound)
        .map(|(id, (_, addr))| (NodeId(*id), *addr))
        .collect();
    let mut voters = Vec::new();
    for (id, (listener, _)) in ids.iter().zip(bound) {
        let dir = temp_dir();
        let mut config = ControllerConfig::new(
            NodeId(*id),
            ids.iter().map(|v| NodeId(*v)).collect(),
            dir.path().to_path_buf(),
        );
        config.tick_interval = Duration::from_millis(10);
        config.log_segment_bytes = 4096;
        let transport = PeerTransport::new(
            NodeId(*id),
            addrs.clone(),
            InternalGuard::secret(Some(secret.clone())),
        );
        let dyn_transport: Rc<dyn RaftTransport> = transport.clone();
        let node = ControllerNode::start(config, dyn_transport).await.unwrap();
        transport.attach(node.mailbox());
        let server = serve(
            listener,
            Rc::new(RaftOnly {
                mailbox: node.mailbox(),
            }),
            InternalGuard::secret(Some(secret.clone())),
        );
        voters.push(Voter {
            node: Some(node),
            server: Some(server),
            transport,
            _dir: dir,
        });
    }
    voters
}

/// The index of the one active controller among the running voters, once there is one.
async fn wait_leader(voters: &[Voter]) -> usize {
    let leader = || {
        let leaders: Vec<usize> = (0..voters.len())
            .filter(|i| voters[*i].node.as_ref().is_some_and(|n| n.is_leader()))
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    };
    wait_until("a leader", WAIT, || leader().is_some()).await;
    leader().unwrap()
}

async fn commit_everywhere(voters: &[Voter], leader: usize, next_block_start: i64) {
    let node = voters[leader].node.as_ref().unwrap();
    let record = MetadataRecord::ProducerIds {
        broker: 1,
        next_block_start,
    };
    let committed = node.propose(&[record]).await.unwrap();
    wait_until("every running voter applied", WAIT, || {
        voters.iter().filter_map(|v| v.node.as_ref()).all(|n| {
            n.status().applied_index >= committed.raft_index
                && n.image().next_producer_id == next_block_start
        })
    })
    .await;
}

#[test]
fn three_voters_over_tcp_elect_commit_and_fail_over() {
    run(|| async {
        let mut voters = start_voters(&[1, 2, 3]).await;
        let first = wait_leader(&voters).await;
        commit_everywhere(&voters, first, 1000).await;
        let term = voters[first].node.as_ref().unwrap().status().raft_term;

        voters[first].stop().await;
        let second = wait_leader(&voters).await;
        assert_ne!(second, first);
        let status = voters[second].node.as_ref().unwrap().status();
        assert!(status.raft_term > term, "{status:?}");
        commit_everywhere(&voters, second, 2000).await;

        for v in &mut voters {
            v.stop().await;
        }
    });
}

/// Answers AllocateProducerIds when `active`, echoing the request's epoch as `start` and its
/// own id as `len`, after a delay that makes answers overtake each other; else NOT_CONTROLLER.
struct Scripted {
    id: i32,
    active: Rc<Cell<bool>>,
}

impl RequestHandler for Scripted {
    fn deliver_raft(&self, _: raft::eraftpb::Message) {}

    fn handle(
        &self,
        _: i32,
        request: InternalMessage,
    ) -> Pin<Box<dyn Future<Output = InternalMessage>>> {
        let (id, active) = (self.id, self.active.get());
        Box::pin(async move {
            let InternalMessage::AllocateProducerIds { broker_epoch, .. } = request else {
                panic!("unexpected request {request:?}");
            };
            if !active {
                return not_controller();
            }
            let delay = u64::try_from(40 - broker_epoch.clamp(0, 40)).unwrap();
            glommio::timer::sleep(Duration::from_millis(delay)).await;
            InternalMessage::AllocateProducerIdsResponse {
                error_code: 0,
                start: broker_epoch,
                len: id,
            }
        })
    }
}

fn allocate(broker_epoch: i64) -> InternalMessage {
    InternalMessage::AllocateProducerIds {
        broker_id: 7,
        broker_epoch,
    }
}

fn answered_by(response: &InternalMessage) -> (i64, i32) {
    match response {
        InternalMessage::AllocateProducerIdsResponse {
            error_code: 0,
            start,
            len,
        } => (*start, *len),
        other => panic!("unexpected response {other:?}"),
    }
}

/// Scripted servers, each with the switch that makes it the active controller.
struct ScriptedServers {
    servers: Vec<glommio::Task<()>>,
    active: Vec<Rc<Cell<bool>>>,
    addrs: Vec<(NodeId, SocketAddr)>,
}

fn scripted_servers(ids: &[i32]) -> ScriptedServers {
    secured_servers(ids, InternalGuard::default())
}

fn secured_servers(ids: &[i32], guard: InternalGuard) -> ScriptedServers {
    let mut s = ScriptedServers {
        servers: Vec::new(),
        active: Vec::new(),
        addrs: Vec::new(),
    };
    for id in ids {
        let (l, addr) = listener();
        let active = Rc::new(Cell::new(false));
        let handler = Scripted {
            id: *id,
            active: Rc::clone(&active),
        };
        s.servers.push(serve(l, Rc::new(handler), guard.clone()));
        s.active.push(active);
        s.addrs.push((NodeId(*id), addr));
    }
    s
}

#[test]
fn the_client_finds_the_active_controller_and_follows_it() {
    run(|| async {
        let ScriptedServers {
            mut servers,
            active,
            addrs,
        } = scripted_servers(&[1, 2, 3]);
        active[2].set(true);
        let client = Rc::new(RemoteClient::new(7, addrs, InternalGuard::default()));

        let answer = client.call(allocate(1), WAIT).await.unwrap();
        assert_eq!(answered_by(&answer), (1, 3));
        assert_eq!(client.active(), Some(NodeId(3)));
        // Asked directly, a standby says so and the client hands that back.
        let answer = client
            .call_node(NodeId(1), allocate(1), WAIT)
            .await
            .unwrap();
        assert_eq!(answer.error_code(), Some(NOT_CONTROLLER));

        // Concurrent calls share one connection, and their answers come back out of order.
        let calls: Vec<_> = (0..40)
            .map(|epoch| {
                let client = Rc::clone(&client);
                glommio::spawn_local(async move { client.call(allocate(epoch), WAIT).await })
            })
            .collect();
        for (epoch, call) in (0..40).zip(calls) {
            assert_eq!(answered_by(&call.await.unwrap()), (epoch, 3));
        }

        // The active controller dies and node 2 takes over.
        servers.remove(2).cancel().await;
        active[1].set(true);
        let answer = client.call(allocate(2), WAIT).await.unwrap();
        assert_eq!(answered_by(&answer), (2, 2));
        assert_eq!(client.active(), Some(NodeId(2)));

        // Nobody active: the call gives up at its deadline and says why.
        active[1].set(false);
        let started = Instant::now();
        let err = client
            .call(allocate(3), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(err, RpcError::NoController { .. }), "{err}");
        assert!(matches!(
            client.call_node(NodeId(9), allocate(1), WAIT).await,
            Err(RpcError::UnknownNode { node: NodeId(9) })
        ));
    });
}

/// Reads until the peer closes the connection; panics if it stays open.
async fn assert_closed_by_server(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = with_timeout(WAIT, stream.read(&mut buf)).await;
    match read {
        Some(Ok(0) | Err(_)) => {}
        other => panic!("connection still open: {other:?}"),
    }
}

async fn write_frame(stream: &mut TcpStream, message: InternalMessage, correlation_id: u64) {
    let frame = encode_internal(&InternalFrame {
        correlation_id,
        from_node: 7,
        message,
    });
    stream.write_all(&frame).await.unwrap();
}

#[test]
fn bad_peers_lose_their_connection_and_the_server_keeps_serving() {
    run(|| async {
        let ScriptedServers {
            servers,
            active,
            addrs,
        } = scripted_servers(&[1]);
        active[0].set(true);
        let addr = addrs[0].1;
        let client = RemoteClient::new(7, addrs, InternalGuard::default());
        let answer = client
            .call_node(NodeId(1), allocate(1), WAIT)
            .await
            .unwrap();
        assert_eq!(answered_by(&answer), (1, 1));

        // A well-framed body that is not an internal frame.
        let mut garbage = TcpStream::connect(addr).await.unwrap();
        garbage
            .write_all(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])
            .await
            .unwrap();
        assert_closed_by_server(&mut garbage).await;

        // A size prefix past the frame limit: refused before any body is read.
        let mut oversized = TcpStream::connect(addr).await.unwrap();
        oversized
            .write_all(&[0x7f, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        assert_closed_by_server(&mut oversized).await;

        // An undecodable Raft payload and a stray response are dropped; the connection stays.
        let mut raw = TcpStream::connect(addr).await.unwrap();
        write_frame(
            &mut raw,
            InternalMessage::Raft(Bytes::from_static(b"\xff\xff\xff")),
            0,
        )
        .await;
        write_frame(&mut raw, not_controller(), 5).await;
        write_frame(&mut raw, allocate(4), 77).await;
        let body = skein_net::read_frame(&mut raw, 1 << 20)
            .await
            .unwrap()
            .unwrap();
        let frame = decode_internal(&body).unwrap();
        assert_eq!(frame.correlation_id, 77);
        assert_eq!(answered_by(&frame.message), (4, 1));

        // The client's connection was never disturbed.
        let answer = client
            .call_node(NodeId(1), allocate(2), WAIT)
            .await
            .unwrap();
        assert_eq!(answered_by(&answer), (2, 1));
        drop(servers);
    });
}

#[test]
fn with_a_cluster_secret_only_holders_get_an_answer() {
    run(|| async {
        let secret = ClusterSecret::new(b"the cluster's own secret").unwrap();
        let ScriptedServers {
            servers,
            active,
            addrs,
        } = secured_servers(&[1], InternalGuard::secret(Some(secret.clone())));
        active[0].set(true);
        let addr = addrs[0].1;
        let member = RemoteClient::new(7, addrs.clone(), InternalGuard::secret(Some(secret)));
        let answer = member
            .call_node(NodeId(1), allocate(1), WAIT)
            .await
            .unwrap();
        assert_eq!(answered_by(&answer), (1, 1));

        // Another secret: the listener's proof does not check out, nothing is sent.
        let wrong = ClusterSecret::new(b"somebody else's secret").unwrap();
        let outsider = RemoteClient::new(8, addrs.clone(), InternalGuard::secret(Some(wrong)));
        let err = outsider
            .call_node(NodeId(1), allocate(1), WAIT)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cluster secret"), "{err}");

        // No secret: a plain frame (a registration, a vote) is never read, only closed on.
        let mut rogue = TcpStream::connect(addr).await.unwrap();
        write_frame(&mut rogue, allocate(9), 1).await;
        assert_closed_by_server(&mut rogue).await;
        let stranger = RemoteClient::new(9, addrs, InternalGuard::default());
        assert!(stranger
            .call_node(NodeId(1), allocate(1), Duration::from_secs(2))
            .await
            .is_err());

        // The member's connection was never disturbed.
        let answer = member
            .call_node(NodeId(1), allocate(2), WAIT)
            .await
            .unwrap();
        assert_eq!(answered_by(&answer), (2, 1));
        drop(servers);
    });
}

/// A call that runs out of time says why the voters refused it, not that its last, cut-short
/// attempt timed out: a node with the wrong secret must log "cluster secret" however slow the
/// machine (CI once saw "did not answer within 1 ms" instead).
#[test]
fn a_refused_handshake_is_the_reason_given_when_the_call_runs_out_of_time() {
    run(|| async {
        let secret = ClusterSecret::new(b"the cluster's own secret").unwrap();
        let ScriptedServers {
            servers,
            active,
            mut addrs,
        } = secured_servers(&[1], InternalGuard::secret(Some(secret)));
        active[0].set(true);
        // Node 2 accepts connections (the kernel's backlog) and never says a word.
        let (_silent, silent_addr) = listener();
        addrs.push((NodeId(2), silent_addr));
        let wrong = ClusterSecret::new(b"somebody else's secret").unwrap();
        let outsider = RemoteClient::new(8, addrs, InternalGuard::secret(Some(wrong)));
        let err = outsider
            .call(allocate(1), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::NoController { .. }), "{err}");
        assert!(err.to_string().contains("cluster secret"), "{err}");
        drop(servers);
    });
}

/// A node's TLS: its certificate (for 127.0.0.1) from `issuer`, trusting `trusted`.
fn tls_guard(
    dir: &std::path::Path,
    name: &str,
    issuer: &TestCa,
    trusted: &TestCa,
) -> InternalGuard {
    let keystore = dir.join(format!("{name}.pem"));
    let truststore = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&keystore, issuer.issue(name, &["127.0.0.1"]).keystore_pem()).unwrap();
    std::fs::write(&truststore, &trusted.cert_pem).unwrap();
    let options = TlsOptions {
        keystore,
        truststore: Some(truststore),
        client_auth: ClientAuth::None,
        protocols: vec![TlsVersion::Tls13],
        verify_hostname: true,
    };
    InternalGuard {
        secret: None,
        tls: Some(std::sync::Arc::new(TlsContext::load(options).unwrap())),
        members: ["CN=voter-1", "CN=broker-7"]
            .map(String::from)
            .to_vec()
            .into(),
    }
}

#[test]
fn with_mutual_tls_only_certified_members_get_an_answer() {
    run(|| async {
        let dir = temp_dir();
        let ca = TestCa::new("cluster CA");
        let other = TestCa::new("other CA");
        let ScriptedServers {
            servers,
            active,
            addrs,
        } = secured_servers(&[1], tls_guard(dir.path(), "voter-1", &ca, &ca));
        active[0].set(true);
        let addr = addrs[0].1;
        let member = RemoteClient::new(
            7,
            addrs.clone(),
            tls_guard(dir.path(), "broker-7", &ca, &ca),
        );
        let answer = member
            .call_node(NodeId(1), allocate(1), WAIT)
            .await
            .unwrap();
        assert_eq!(answered_by(&answer), (1, 1));

        // Trusts the cluster's CA, but its own certificate is from another: the listener
        // refuses the handshake (the internal listener always asks for a certificate).
        let outsider = RemoteClient::new(
            8,
            addrs.clone(),
            tls_guard(dir.path(), "outsider", &other, &ca),
        );
        assert!(outsider
            .call_node(NodeId(1), allocate(1), Duration::from_secs(2))
            .await
            .is_err());

        // A certificate from the cluster's CA whose subject is no member (a Kafka client's,
        // say): refused after the handshake.
        let client = RemoteClient::new(9, addrs.clone(), tls_guard(dir.path(), "client", &ca, &ca));
        assert!(client
            .call_node(NodeId(1), allocate(1), Duration::from_secs(2))
            .await
            .is_err());

        // No TLS at all: a plain frame is not a ClientHello; the answer is a TLS alert record
        // (content type 21) and the close, never an internal frame.
        let mut rogue = TcpStream::connect(addr).await.unwrap();
        write_frame(&mut rogue, allocate(9), 1).await;
        let mut answer = Vec::new();
        let read = with_timeout(WAIT, rogue.read_to_end(&mut answer)).await;
        assert!(
            matches!(read, Some(Ok(_) | Err(_))),
            "connection still open"
        );
        assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");

        let answer = member
            .call_node(NodeId(1), allocate(2), WAIT)
            .await
            .unwrap();
        assert_eq!(answered_by(&answer), (2, 1));
        drop(servers);
    });
}

//! The internal RPC transport over TCP (controller shard; everything here is `!Send` and lives
//! on that shard's executor). One frame format for everything (`skein_net::internal`): a
//! 4-byte size prefix and a flatbuffers `Frame`.
//!
//! - [`serve`]: the server side, on every controller voter: Raft frames go to the node's
//!   mailbox, requests to a [`RequestHandler`], answered by correlation id.
//! - [`PeerTransport`]: a voter's outgoing Raft messages, one connection per peer.
//! - [`RemoteClient`]: a broker's (or a voter's) calls to the active controller, rotating
//!   through the voters until one answers without NOT_CONTROLLER.
//!
//! Connections are one-way in purpose: a voter's Raft sender only writes, and a server only
//! answers requests, so neither side needs to tell the two kinds of traffic apart by peer.

mod auth;
mod client;
mod peer;
mod server;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use std::sync::Arc;

use glommio::net::TcpStream;
use glommio::task::JoinHandle;
use skein_net::tls::{subject_principal, MaybeTls, TlsContext};

use crate::ids::NodeId;
use crate::limits::{RPC_CONNECT_TIMEOUT_MS, RPC_WRITE_TIMEOUT_MS};

pub use auth::{ClusterSecret, SECRET_BYTES_MIN};
pub use client::RemoteClient;
pub use peer::PeerTransport;
pub use server::{serve, RequestHandler};

/// Why a call to another node failed. Each says which node, where, and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("node {node} is not among the known voters")]
    UnknownNode { node: NodeId },
    #[error("could not connect to node {node} at {addr}: {cause}")]
    Connect {
        node: NodeId,
        addr: SocketAddr,
        cause: String,
    },
    #[error("connection to node {node} at {addr} lost: {cause}")]
    ConnectionLost {
        node: NodeId,
        addr: SocketAddr,
        cause: String,
    },
    #[error("node {node} at {addr} did not answer within {waited_ms} ms")]
    Timeout {
        node: NodeId,
        addr: SocketAddr,
        waited_ms: u64,
    },
    #[error("node {node} at {addr} has {pending} calls pending, the limit")]
    Busy {
        node: NodeId,
        addr: SocketAddr,
        pending: usize,
    },
    #[error("node {node} at {addr} is not the active controller")]
    NotController { node: NodeId, addr: SocketAddr },
    /// `RemoteClient::call` ran out of time; `last` is the last attempt's failure.
    #[error("no active controller answered within {waited_ms} ms (last: {last})")]
    NoController { waited_ms: u64, last: Box<RpcError> },
}

/// `f`, or `None` once `limit` has passed.
pub async fn with_timeout<T>(limit: Duration, f: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(f.await) }, async {
        glommio::timer::Timer::new(limit).await;
        None
    })
    .await
}

/// What guards the internal listener and this node's connections to others': the cluster
/// secret's handshake, mutual TLS, or both (TLS first, then the secret inside it). Shared by
/// the server, the Raft senders and the controller client of one node.
#[derive(Clone, Default)]
pub struct InternalGuard {
    pub secret: Option<ClusterSecret>,
    /// Mutual TLS: a peer must hold a certificate the node's truststore trusts...
    pub tls: Option<Arc<TlsContext>>,
    /// ...whose subject (as Kafka names a certificate's principal, without "User:") is one of
    /// these: the same CA may well sign clients' certificates, and a client is no member.
    pub members: Arc<[String]>,
}

impl InternalGuard {
    pub fn secret(secret: Option<ClusterSecret>) -> InternalGuard {
        InternalGuard {
            secret,
            ..InternalGuard::default()
        }
    }

    /// Under TLS, whether the peer's certificate names a cluster member.
    fn check_member(&self, stream: &Stream) -> Result<(), String> {
        if self.tls.is_none() {
            return Ok(());
        }
        let certificate = stream
            .peer_certificate()
            .ok_or("the peer presented no certificate")?;
        let subject = subject_principal(certificate).map_err(|e| e.to_string())?;
        if self.members.contains(&subject) {
            Ok(())
        } else {
            Err(format!(
                "certificate subject `{subject}` is not a cluster member (super.users)"
            ))
        }
    }
}

/// An internal connection, under TLS or not.
pub(crate) type Stream = MaybeTls<TcpStream>;

/// A TCP connection to `addr` with the transport's socket settings, past the TLS and
/// cluster-secret handshakes the guard asks for, or why not.
async fn connect(addr: SocketAddr, guard: &InternalGuard) -> Result<Stream, String> {
    let limit = Duration::from_millis(RPC_CONNECT_TIMEOUT_MS);
    let stream = TcpStream::connect_timeout(addr, limit)
        .await
        .map_err(|e| e.to_string())?;
    configure(&stream).map_err(|e| e.to_string())?;
    let mut stream = match &guard.tls {
        // Voters are named by address, so their certificates name that IP address (or
        // `ssl.endpoint.identification.algorithm` is off).
        Some(tls) => with_timeout(limit, tls.connect(&addr.ip().to_string(), stream))
            .await
            .ok_or_else(|| "the TLS handshake timed out".to_string())?
            .map_err(|e| format!("TLS: {e}"))?,
        None => MaybeTls::Plain(stream),
    };
    guard.check_member(&stream)?;
    if let Some(secret) = &guard.secret {
        auth::client_handshake(&mut stream, secret).await?;
    }
    Ok(stream)
}

/// Small frames (votes, heartbeats) go out at once, and a peer that stops reading is cut off.
fn configure(stream: &TcpStream) -> glommio::Result<(), ()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(Duration::from_millis(RPC_WRITE_TIMEOUT_MS)))
}

/// Tasks that end with their owner: dropping the set cancels every task still running (a
/// closed server takes its connections along, a closed connection its requests). A finished
/// task removes itself, so the set holds only live tasks.
pub(crate) struct TaskSet {
    inner: Rc<RefCell<TaskSetInner>>,
}

#[derive(Default)]
struct TaskSetInner {
    next_id: u64,
    tasks: BTreeMap<u64, JoinHandle<()>>,
}

impl TaskSet {
    pub(crate) fn new() -> TaskSet {
        TaskSet {
            inner: Rc::new(RefCell::new(TaskSetInner::default())),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.borrow().tasks.len()
    }

    pub(crate) fn spawn(&self, f: impl Future<Output = ()> + 'static) {
        let id = {
            let mut inner = self.inner.borrow_mut();
            inner.next_id += 1;
            inner.next_id
        };
        let set: Weak<RefCell<TaskSetInner>> = Rc::downgrade(&self.inner);
        // The task first runs after this one yields, so it is in the map before it can leave.
        let handle = glommio::spawn_local(async move {
            f.await;
            if let Some(set) = set.upgrade() {
                set.borrow_mut().tasks.remove(&id);
            }
        })
        .detach();
        self.inner.borrow_mut().tasks.insert(id, handle);
    }
}

impl Drop for TaskSet {
    fn drop(&mut self) {
        let tasks = std::mem::take(&mut self.inner.borrow_mut().tasks);
        for handle in tasks.values() {
            handle.cancel();
        }
    }
}

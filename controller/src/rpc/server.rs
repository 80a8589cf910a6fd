//! The RPC server of one node (controller shard): accepts connections on the internal
//! listener and serves each one. Raft frames go straight to the handler's mailbox; requests are
//! handled concurrently, up to `SERVER_REQUESTS_IN_FLIGHT_MAX` per connection, and answered
//! through one writer task per connection so frames never interleave.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::io::{split, WriteHalf};
use futures_lite::AsyncWriteExt;
use glommio::channels::local_channel::{self, LocalReceiver};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use skein_net::internal::{decode_internal, encode_internal, InternalFrame, InternalMessage};
use skein_net::tls::{Listener, MaybeTls};

use super::auth::server_handshake;
use super::{configure, with_timeout, InternalGuard, Stream, TaskSet};
use crate::limits::{
    INTERNAL_FRAME_BYTES_MAX, RPC_CONNECT_TIMEOUT_MS, SERVER_ACCEPT_RETRY_MS,
    SERVER_CONNECTIONS_MAX, SERVER_HANDLE_TIMEOUT_MS, SERVER_REQUESTS_IN_FLIGHT_MAX,
};
use crate::transport::decode_message;

/// What a server does with the frames it receives.
pub trait RequestHandler {
    /// An incoming Raft message (typically `Mailbox::deliver`; a refusal is the handler's to
    /// log or ignore, Raft retransmits).
    fn deliver_raft(&self, msg: raft::eraftpb::Message);

    /// Answers one request from `from_node` (the frame's sender as it claims to be). Many run
    /// at once; each must finish in bounded time (a long poll within its `max_wait_ms`).
    fn handle(
        &self,
        from_node: i32,
        request: InternalMessage,
    ) -> Pin<Box<dyn Future<Output = InternalMessage>>>;

    /// The connection that carried `node`'s heartbeats closed (its process may be gone: a
    /// killed process's sockets close at once, a hung one's do not).
    fn heartbeats_connection_closed(&self, _node: i32) {}

    /// The connection that carried `node`'s Raft messages closed.
    fn raft_connection_closed(&self, _node: i32) {}
}

/// Responses carry no sender: the caller matches them by correlation id.
const RESPONSE_FROM_NODE: i32 = -1;

/// Serves `listener` until the returned task is dropped or cancelled, which closes every
/// connection it accepted and abandons their requests. A bad connection (malformed or
/// oversized frame, I/O error) is closed alone.
pub fn serve(
    listener: TcpListener,
    handler: Rc<dyn RequestHandler>,
    guard: InternalGuard,
) -> glommio::Task<()> {
    glommio::spawn_local(accept_loop(listener, handler, Rc::new(guard)))
}

async fn accept_loop(
    listener: TcpListener,
    handler: Rc<dyn RequestHandler>,
    guard: Rc<InternalGuard>,
) {
    let connections = TaskSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "internal listener: accept failed");
                glommio::timer::sleep(Duration::from_millis(SERVER_ACCEPT_RETRY_MS)).await;
                continue;
            }
        };
        let peer = stream.peer_addr().ok();
        if connections.len() >= SERVER_CONNECTIONS_MAX {
            tracing::warn!(
                ?peer,
                "internal listener: {SERVER_CONNECTIONS_MAX} connections, closing"
            );
            continue;
        }
        connections.spawn(serve_connection(
            stream,
            peer,
            Rc::clone(&handler),
            Rc::clone(&guard),
        ));
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: Option<SocketAddr>,
    handler: Rc<dyn RequestHandler>,
    guard: Rc<InternalGuard>,
) {
    if let Err(e) = configure(&stream) {
        tracing::warn!(?peer, error = %e, "internal connection: socket options");
        return;
    }
    let mut stream = match &guard.tls {
        Some(tls) => {
            let limit = Duration::from_millis(RPC_CONNECT_TIMEOUT_MS);
            let deadline = glommio::timer::sleep(limit);
            match tls.accept_until(deadline, Listener::Internal, stream).await {
                Ok(stream) => stream,
                // Debug: anyone who reaches the port can fail a handshake; a member that
                // cannot get in says so in its own log.
                Err(e) => {
                    tracing::debug!(?peer, error = %e, "internal connection refused: TLS");
                    return;
                }
            }
        }
        None => MaybeTls::Plain(stream),
    };
    if let Err(e) = guard.check_member(&stream) {
        tracing::warn!(?peer, error = %e, "internal connection refused");
        return;
    }
    if let Some(secret) = &guard.secret {
        if let Err(e) = server_handshake(&mut stream, secret).await {
            tracing::warn!(?peer, error = %e, "internal connection refused: no cluster secret");
            return;
        }
    }
    let (mut reader, writer) = split(stream);
    // Every response waiting for the writer holds (or held) a request permit, so the queue
    // needs no more room than the requests in flight.
    let (responses, outgoing) = local_channel::new_bounded(SERVER_REQUESTS_IN_FLIGHT_MAX);
    let responses = Rc::new(responses);
    let permits = Rc::new(Semaphore::new(SERVER_REQUESTS_IN_FLIGHT_MAX as u64));
    // Dropped when this function returns: the writer and every request of this connection end.
    let tasks = TaskSet::new();
    tasks.spawn(write_loop(writer, outgoing, peer));
    // The broker whose heartbeats, and the voter whose Raft messages, this connection
    // carries, once one arrived.
    let mut heartbeats_of: Option<i32> = None;
    let mut raft_of: Option<i32> = None;
    loop {
        let body = match skein_net::read_frame(&mut reader, INTERNAL_FRAME_BYTES_MAX).await {
            Ok(Some(body)) => body,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(?peer, error = %e, "internal connection: bad frame, closing");
                break;
            }
        };
        let frame = match decode_internal(&body) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(?peer, error = %e, "internal connection: malformed frame, closing");
                break;
            }
        };
        let InternalFrame {
            correlation_id,
            from_node,
            message,
        } = frame;
        match message {
            InternalMessage::Raft(payload) => match decode_message(&payload) {
                Ok(msg) => {
                    raft_of = Some(from_node);
                    handler.deliver_raft(msg)
                }
                // Framing was intact, so the connection is fine; Raft resends what is lost.
                Err(e) => tracing::debug!(?peer, error = %e, "undecodable raft message dropped"),
            },
            request if request.is_request() => {
                if let InternalMessage::Heartbeat { broker_id, .. } = &request {
                    heartbeats_of = Some(*broker_id);
                }
                // Back-pressure: with every permit taken, this stops reading the connection.
                let Ok(permit) = permits.acquire_static_permit(1).await else {
                    break;
                };
                let handler = Rc::clone(&handler);
                let responses = Rc::clone(&responses);
                tasks.spawn(async move {
                    let timeout = Duration::from_millis(SERVER_HANDLE_TIMEOUT_MS);
                    let Some(response) =
                        with_timeout(timeout, handler.handle(from_node, request)).await
                    else {
                        tracing::warn!(?peer, correlation_id, "request handler timed out");
                        return;
                    };
                    let frame = encode_internal(&InternalFrame {
                        correlation_id,
                        from_node: RESPONSE_FROM_NODE,
                        message: response,
                    });
                    // Fails only once the writer is gone: the connection is closing anyway.
                    let _ = responses.send(frame).await;
                    drop(permit);
                });
            }
            // A response nobody here asked for.
            _ => tracing::debug!(?peer, correlation_id, "unexpected response ignored"),
        }
    }
    tracing::debug!(?peer, "internal connection closed");
    if let Some(node) = heartbeats_of {
        handler.heartbeats_connection_closed(node);
    }
    if let Some(node) = raft_of {
        handler.raft_connection_closed(node);
    }
}

async fn write_loop(
    mut writer: WriteHalf<Stream>,
    outgoing: LocalReceiver<Bytes>,
    peer: Option<SocketAddr>,
) {
    while let Some(frame) = outgoing.recv().await {
        if frame.len().saturating_sub(4) > INTERNAL_FRAME_BYTES_MAX {
            // The peer would close the connection on it; better that it times out alone.
            tracing::warn!(?peer, size = frame.len(), "response too large, dropped");
            continue;
        }
        if let Err(e) = skein_net::write_flush(&mut writer, &frame).await {
            tracing::debug!(?peer, error = %e, "internal connection: write failed");
            let _ = writer.close().await;
            return;
        }
    }
}

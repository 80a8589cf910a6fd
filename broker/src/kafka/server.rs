//! Accepts Kafka connections on this shard's SO_REUSEPORT listener and serves each one: requests
//! are handled and answered strictly in order, as Kafka does per connection (the next one is
//! read while one is handled). One bad client only ever loses its own connection. On an SSL or
//! SASL_SSL listener the TLS handshake runs here, on the shard, before the first request.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::io::{split, ReadHalf, WriteHalf};
use futures_lite::AsyncWriteExt;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::{Semaphore, StaticPermit};
use skein_net::tls::{subject_principal, Listener, MaybeTls};
use skein_net::{decode_request, read_frame, DecodeError};

use super::dispatch::{self, Reply};
use super::sasl::{Gate, SaslConnection};
use crate::limits::{REQUESTS_READ_AHEAD, TLS_HANDSHAKE_TIMEOUT_MS};
use crate::shard::Shard;

/// A client connection, under TLS or not.
type Stream = MaybeTls<TcpStream>;

pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(serve_connection(shard.clone(), stream)).detach();
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(shard = %shard.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_connection(shard: Rc<Shard>, stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    // Over a connection limit: dropping the stream closes it, as Kafka does.
    let Some(_permit) = crate::quota::admit(&shard.quotas, peer) else {
        return;
    };
    let quota = crate::quota::ConnectionQuota::new(&shard.quotas);
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(?peer, error = %e, "TCP_NODELAY failed");
    }
    let protocol = shard.layout.kafka_security_protocol;
    let stream = match (&shard.tls, protocol.uses_tls()) {
        (Some(tls), true) => {
            let deadline = glommio::timer::sleep(Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS));
            match tls.accept_until(deadline, Listener::Kafka, stream).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(?peer, error = %e, "TLS handshake failed; closing");
                    return;
                }
            }
        }
        _ => MaybeTls::Plain(stream),
    };
    let max_bytes = shard.layout.broker.socket_request_max_bytes;
    // Kafka's principal of a connection that has not authenticated with SASL: its client
    // certificate's subject (mutual TLS), else ANONYMOUS. One allocation per connection.
    let principal: Rc<str> = match stream.peer_certificate().map(subject_principal) {
        Some(Ok(subject)) => Rc::from(subject),
        Some(Err(e)) => {
            tracing::debug!(?peer, error = %e, "unreadable client certificate; closing");
            return;
        }
        None => Rc::from(skein_controller::acl::ANONYMOUS),
    };
    let sasl = protocol
        .uses_sasl()
        .then(|| SaslConnection::new(&shard.layout.broker));
    let conn = Connection {
        shard,
        peer,
        quota,
        principal,
        sasl,
    };
    // The next request is read off the socket while this one is handled (its append on disk,
    // its long poll): the receive copy overlaps the wait instead of adding to it. Handling
    // stays strictly in order; at most REQUESTS_READ_AHEAD more requests are held per
    // connection.
    let (reader, mut writer) = split(stream);
    let (frames, incoming) = local_channel::new_unbounded();
    let budget = Rc::new(Semaphore::new(1 + REQUESTS_READ_AHEAD));
    let reading = async {
        read_ahead(reader, max_bytes, budget, frames, peer).await;
        // The handler ends the connection once it has handled what was read before the end.
        std::future::pending::<()>().await;
    };
    futures_lite::future::or(conn.handle_in_order(incoming, &mut writer), reading).await;
}

/// A request frame off the socket, with the read-ahead permit it holds until it is answered;
/// `None` once the socket is done (closed, or a frame error already logged).
type Incoming = Option<(Bytes, StaticPermit)>;

/// Reads frames in order into `frames` while the handler lets it (`budget`).
async fn read_ahead(
    mut reader: ReadHalf<Stream>,
    max_bytes: usize,
    budget: Rc<Semaphore>,
    frames: LocalSender<Incoming>,
    peer: Option<SocketAddr>,
) {
    loop {
        let Ok(permit) = budget.acquire_static_permit(1).await else {
            return;
        };
        let frame = match read_frame(&mut reader, max_bytes).await {
            Ok(Some(frame)) => Some((frame, permit)),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(?peer, error = %e, "closing connection");
                None
            }
        };
        let end = frame.is_none();
        if frames.send(frame).await.is_err() || end {
            return;
        }
    }
}

/// What one connection knows about its client.
struct Connection {
    shard: Rc<Shard>,
    peer: Option<SocketAddr>,
    quota: Option<Rc<crate::quota::ConnectionQuota>>,
    /// Kafka's principal of a connection that has not authenticated with SASL.
    principal: Rc<str>,
    sasl: Option<SaslConnection>,
}

impl Connection {
    /// Handles the frames in the order they came and answers each; returns when the
    /// connection must close.
    async fn handle_in_order(
        mut self,
        incoming: LocalReceiver<Incoming>,
        stream: &mut WriteHalf<Stream>,
    ) {
        let (shard, peer) = (self.shard.clone(), self.peer);
        while let Some(Some((mut frame, _permit))) = incoming.recv().await {
            // The one branch a PLAINTEXT listener pays.
            if let Some(conn) = self.sasl.as_mut() {
                frame = match conn.gate(frame, &*shard.metadata()) {
                    Gate::Pass(f) => f,
                    Gate::Reply(r) => {
                        if !write_sasl_reply(stream, r).await {
                            return;
                        }
                        continue;
                    }
                    Gate::ReplyThenClose(r) => {
                        write_sasl_reply(stream, r).await;
                        return;
                    }
                    Gate::Close => return,
                };
            }
            let started = Instant::now();
            let _in_flight = shard.metrics.request_started();
            let received_bytes = frame.len() + skein_net::limits::FRAME_SIZE_PREFIX_BYTES;
            let mut api = None;
            let reply = match decode_request(frame) {
                Ok(request) => {
                    api = Some(request.header.api_key);
                    if let Some(q) = &self.quota {
                        q.charge_request(&request.header, received_bytes);
                    }
                    let user = self
                        .sasl
                        .as_ref()
                        .and_then(|c| c.user())
                        .unwrap_or(&self.principal);
                    dispatch::dispatch(&shard, request, peer, self.quota.clone(), user.clone())
                        .await
                }
                Err(DecodeError::UnsupportedVersion {
                    api_key,
                    api_version,
                    correlation_id,
                }) => dispatch::unsupported_version(api_key, api_version, correlation_id),
                Err(e) => {
                    tracing::debug!(?peer, error = %e, "undecodable request; closing connection");
                    Reply::Close
                }
            };
            if let Some(api) = api {
                shard.metrics.record_request(
                    api,
                    started.elapsed(),
                    received_bytes,
                    reply_bytes(&reply),
                );
            }
            let written = match reply {
                Reply::None => Ok(()),
                Reply::Close => return,
                Reply::Frame(bytes) => skein_net::write_flush(stream, &bytes).await,
                Reply::Parts(parts) => write_parts(stream, parts).await,
            };
            if let Err(e) = written {
                tracing::debug!(?peer, error = %e, "write failed; closing connection");
                return;
            }
            // KIP-219: a throttled client was told for how long; its connection is muted that
            // long too, so a client that ignores the field is held back all the same.
            if let Some(q) = &self.quota {
                let mute = q.take_throttle();
                if !mute.is_zero() {
                    glommio::timer::sleep(mute).await;
                }
            }
        }
    }
}

/// Writes a SASL answer; false when the connection must close.
async fn write_sasl_reply(stream: &mut WriteHalf<Stream>, reply: Reply) -> bool {
    let Reply::Frame(bytes) = reply else {
        return false;
    };
    skein_net::write_flush(stream, &bytes).await.is_ok()
}

async fn write_parts(
    stream: &mut WriteHalf<Stream>,
    parts: Vec<skein_net::WirePart<crate::shard::route::FetchChunk>>,
) -> std::io::Result<()> {
    for part in &parts {
        stream.write_all(part.as_bytes()).await?;
    }
    stream.flush().await
}

/// Bytes a reply puts on the wire.
fn reply_bytes(reply: &Reply) -> usize {
    match reply {
        Reply::None | Reply::Close => 0,
        Reply::Frame(bytes) => bytes.len(),
        Reply::Parts(parts) => parts.iter().map(|p| p.as_bytes().len()).sum(),
    }
}

//! The metrics listener (controller shard only): a deliberately small HTTP/1.1 server. GET
//! only, one request per connection (`Connection: close`), request heads bounded in size and
//! time, a bounded number of connections; HTTPS when the listener is `SSL://`. `/metrics`
//! scrapes every shard; `/health` says the process serves; `/ready` says the broker serves
//! clients.

use std::cell::{Cell, OnceCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use skein_net::tls::{Listener, MaybeTls, TlsContext};

use super::{ControllerSnapshot, NodeSnapshot};
use crate::shard::Shard;

/// Largest request head (request line and headers) read; Prometheus sends a few hundred bytes.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Connections served at once; more are answered 503 at once. Scrapers are few.
pub const CONNECTIONS_MAX: usize = 16;
/// How long a client may take to send its request head, and to take the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// After the answer: how long, and how many unread bytes, the server reads out before it
/// closes (see `serve_connection`).
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
const LINGER_BYTES_MAX: usize = 256 * 1024;

/// What the server needs to answer: the shard once it exists (the listener opens before the
/// controller has started, so `/health` answers during recovery), and the node's start-up and
/// stop flags.
pub struct MetricsState {
    pub shard: OnceCell<Rc<Shard>>,
    /// Shards that have bound the Kafka listener.
    pub shards_ready: Arc<AtomicUsize>,
    pub shard_count: usize,
    /// Set by a stop signal: the node is handing its work away.
    pub draining: Arc<AtomicBool>,
    connections: Cell<usize>,
    /// `listeners.metrics = "SSL://..."`: HTTPS with the node's keystore.
    tls: Option<Arc<TlsContext>>,
}

impl MetricsState {
    pub fn new(
        shards_ready: Arc<AtomicUsize>,
        shard_count: usize,
        draining: Arc<AtomicBool>,
        tls: Option<Arc<TlsContext>>,
    ) -> Self {
        MetricsState {
            shard: OnceCell::new(),
            shards_ready,
            shard_count,
            draining,
            connections: Cell::new(0),
            tls,
        }
    }

    /// Ready to serve clients: every shard listens, this node is a registered, unfenced
    /// member with the cluster's metadata installed, and it is not stopping.
    fn is_ready(&self) -> bool {
        let Some(shard) = self.shard.get() else {
            return false;
        };
        let unfenced = shard
            .control
            .as_ref()
            .is_some_and(|plane| plane.is_unfenced());
        self.shards_ready.load(Ordering::Acquire) >= self.shard_count
            && unfenced
            && !shard.metadata().cluster_id.is_empty()
            && !self.draining.load(Ordering::Acquire)
            && !shard.is_stopping()
    }
}

pub async fn serve(listener: TcpListener, state: Rc<MetricsState>) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if state.connections.get() >= CONNECTIONS_MAX {
                    // Over HTTPS a plaintext 503 would be garbage: the close says it.
                    if state.tls.is_none() {
                        glommio::spawn_local(refuse(stream)).detach();
                    }
                    continue;
                }
                state.connections.set(state.connections.get() + 1);
                let state = state.clone();
                glommio::spawn_local(async move {
                    serve_connection(&state, stream).await;
                    state
                        .connections
                        .set(state.connections.get().saturating_sub(1));
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn refuse(mut stream: TcpStream) {
    let answer = Response::text(503, "too many connections\n");
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.write_all(&answer.to_bytes()).await;
}

async fn serve_connection(state: &MetricsState, stream: TcpStream) {
    let timeouts = stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)));
    if let Err(e) = timeouts {
        tracing::debug!(error = %e, "metrics connection: setting timeouts failed");
        return;
    }
    // The socket's timeouts bound the handshake's reads and writes too.
    let mut stream = match &state.tls {
        Some(tls) => match tls.accept(Listener::Metrics, stream).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "metrics connection: TLS handshake failed");
                return;
            }
        },
        None => MaybeTls::Plain(stream),
    };
    let response = match read_head(&mut stream).await {
        Ok(head) => match parse_request_line(&head) {
            Ok((method, path)) => route(state, method, path).await,
            Err(why) => Response::text(400, why),
        },
        Err(HeadError::TooLarge) => Response::text(431, "request head too large\n"),
        Err(HeadError::Io(e)) => {
            tracing::debug!(error = %e, "metrics connection: reading the request failed");
            return;
        }
    };
    if let Err(e) = stream.write_all(&response.to_bytes()).await {
        tracing::debug!(error = %e, "metrics connection: writing the answer failed");
        return;
    }
    stream.queue_close_notify();
    let _ = stream.flush().await;
    // Closing with unread bytes (an oversized head) would send a reset that can destroy the
    // answer before the client reads it: end our side, then read out what is left, bounded.
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write).await;
    let _ = stream.get_ref().set_read_timeout(Some(LINGER_TIMEOUT));
    let mut buf = [0u8; 4096];
    let mut drained = 0usize;
    while drained < LINGER_BYTES_MAX {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

async fn route(state: &MetricsState, method: &str, path: &str) -> Response {
    let known = matches!(path, "/metrics" | "/health" | "/ready");
    if !known {
        return Response::text(404, "not found; try /metrics, /health or /ready\n");
    }
    if method != "GET" {
        return Response::text(405, "only GET is served\n").with_header("Allow", "GET");
    }
    match path {
        "/health" => Response::text(200, "ok\n"),
        "/ready" if state.is_ready() => Response::text(200, "ready\n"),
        "/ready" => Response::text(503, "not ready\n"),
        _ => scrape(state).await,
    }
}

async fn scrape(state: &MetricsState) -> Response {
    let Some(shard) = state.shard.get() else {
        return Response::text(503, "starting; no metrics yet\n");
    };
    let (shards, shards_unanswered) = super::collect(shard).await;
    let node = NodeSnapshot {
        ready: state.is_ready(),
        controller: controller_snapshot(shard),
        shards_unanswered,
    };
    let body = super::render(&shards, &node);
    Response {
        status: 200,
        content_type: super::encode::CONTENT_TYPE,
        extra_header: None,
        body: body.into_bytes(),
    }
}

fn controller_snapshot(shard: &Shard) -> Option<ControllerSnapshot> {
    let service = shard.control.as_ref()?.link.local()?;
    let status = service.node().status();
    let offline_partitions = status.active.then(|| {
        shard
            .metadata()
            .topics
            .values()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.is_offline())
            .count()
    });
    Some(ControllerSnapshot {
        active: status.active,
        raft_term: status.raft_term,
        commit_index: status.commit_index,
        applied_index: status.applied_index,
        offline_partitions,
        leader_elections: service.leader_elections(),
    })
}

#[derive(Debug)]
enum HeadError {
    TooLarge,
    Io(std::io::Error),
}

/// Reads up to the blank line that ends the request head. A body is never read: GET has none,
/// and the connection closes after the answer.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(head);
        }
        if head.len() > REQUEST_HEAD_BYTES_MAX {
            return Err(HeadError::TooLarge);
        }
    }
}

/// `METHOD SP request-target SP HTTP/1.x` -> (method, path without the query string).
fn parse_request_line(head: &[u8]) -> Result<(&str, &str), &'static str> {
    let line_end = head
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no request line\n")?;
    let line = head.get(..line_end).ok_or("no request line\n")?;
    let line = std::str::from_utf8(line).map_err(|_| "request line is not UTF-8\n")?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line\n");
    };
    if !version.starts_with("HTTP/1.") {
        return Err("only HTTP/1.x is served\n");
    }
    if method.is_empty() || !target.starts_with('/') {
        return Err("malformed request line\n");
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Ok((method, path))
}

struct Response {
    status: u16,
    content_type: &'static str,
    extra_header: Option<(&'static str, &'static str)>,
    body: Vec<u8>,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            extra_header: None,
            body: body.as_bytes().to_vec(),
        }
    }

    fn with_header(mut self, name: &'static str, value: &'static str) -> Response {
        self.extra_header = Some((name, value));
        self
    }

    fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if let Some((name, value)) = self.extra_header {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_parses_method_and_path() {
        let head = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(parse_request_line(head), Ok(("GET", "/metrics")));
        assert_eq!(
            parse_request_line(b"POST /ready HTTP/1.0\n\n"),
            Ok(("POST", "/ready"))
        );
    }

    #[test]
    fn bad_request_lines_are_refused_not_panicked_on() {
        for head in [
            &b""[..],
            b"GET\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET /metrics HTTP/2\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"\xff\xfe /x HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse_request_line(head).is_err(), "{head:?}");
        }
    }

    #[test]
    fn responses_close_and_carry_a_length() {
        let r = Response::text(405, "no\n").with_header("Allow", "GET");
        let text = String::from_utf8(r.to_bytes()).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.contains("Allow: GET\r\n"));
        assert!(text.ends_with("\r\n\r\nno\n"));
    }
}

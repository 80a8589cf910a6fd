//! `RemoteClient`: calls to the controller voters (on whichever shard holds it; `!Send`). One
//! connection per voter, opened lazily and shared by every call to it: calls are matched to
//! answers by correlation id, so a heartbeat is not stuck behind a long-polling FetchMetadata.
//! A broken connection fails all its calls at once, and they retry.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use futures_lite::io::{split, ReadHalf, WriteHalf};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::sync::Semaphore;
use skein_net::internal::{
    decode_internal, encode_internal, InternalFrame, InternalMessage, NOT_CONTROLLER,
};

use super::{connect, with_timeout, InternalGuard, RpcError, Stream, TaskSet};
use crate::ids::NodeId;
use crate::limits::{
    CLIENT_CALLS_PENDING_MAX, INTERNAL_FRAME_BYTES_MAX, RPC_ATTEMPT_TIMEOUT_MS,
    RPC_ROUND_BACKOFF_MS,
};

/// A client of the controller quorum.
pub struct RemoteClient {
    self_id: i32,
    voters: Vec<Voter>,
    /// Index into `voters` of the one believed to be the active controller.
    active: Cell<usize>,
    next_correlation_id: Cell<u64>,
    guard: InternalGuard,
}

struct Voter {
    node: NodeId,
    addr: SocketAddr,
    conn: RefCell<Option<Rc<Connection>>>,
    /// One connect at a time per voter, so concurrent calls share the connection.
    connecting: Rc<Semaphore>,
}

impl RemoteClient {
    /// A client that calls itself `self_id` (the frames' `from_node`) and knows `voters`.
    pub fn new(
        self_id: i32,
        voters: Vec<(NodeId, SocketAddr)>,
        guard: InternalGuard,
    ) -> RemoteClient {
        RemoteClient {
            self_id,
            voters: voters
                .into_iter()
                .map(|(node, addr)| Voter {
                    node,
                    addr,
                    conn: RefCell::new(None),
                    connecting: Rc::new(Semaphore::new(1)),
                })
                .collect(),
            active: Cell::new(0),
            next_correlation_id: Cell::new(1),
            guard,
        }
    }

    /// The voter this client believes to be the active controller (the last one that answered
    /// without NOT_CONTROLLER).
    pub fn active(&self) -> Option<NodeId> {
        self.voters.get(self.active.get()).map(|v| v.node)
    }

    /// Sends `request` to the active controller and returns its answer. A voter that answers
    /// NOT_CONTROLLER, cannot be reached or does not answer within an attempt (1 s, plus the
    /// long-poll wait of a FetchMetadata) is left for the next one, round after round, until
    /// `timeout`. A request may so reach more than one voter: only idempotent or fenced
    /// requests (epochs, compare-and-set) may be sent this way.
    pub async fn call(
        &self,
        request: InternalMessage,
        timeout: Duration,
    ) -> Result<InternalMessage, RpcError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let attempt_max = Duration::from_millis(RPC_ATTEMPT_TIMEOUT_MS) + long_poll_wait(&request);
        let mut index = self.active.get() % self.voters.len().max(1);
        let mut attempts = 0;
        let mut last = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Some(voter) = self.voters.get(index).filter(|_| !remaining.is_zero()) else {
                let waited_ms = millis(started.elapsed());
                let last = last.unwrap_or(RpcError::Timeout {
                    node: NodeId(-1),
                    addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                    waited_ms,
                });
                return Err(RpcError::NoController {
                    waited_ms,
                    last: Box::new(last),
                });
            };
            let attempt = remaining.min(attempt_max);
            let hint = match self.call_voter(voter, request.clone(), attempt).await {
                Ok(response) if !says_not_controller(&response) => {
                    self.active.set(index);
                    return Ok(response);
                }
                Ok(response) => {
                    last = Some(RpcError::NotController {
                        node: voter.node,
                        addr: voter.addr,
                    });
                    self.leader_hint(&response, index)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "controller call attempt failed");
                    // A last attempt cut short by the call's deadline times out whatever the
                    // voter would have said; the failure before it (a refused handshake, say)
                    // is the one worth reporting.
                    let cut_short = attempt < attempt_max && matches!(e, RpcError::Timeout { .. });
                    if !cut_short || last.is_none() {
                        last = Some(e);
                    }
                    None
                }
            };
            attempts += 1;
            index = hint.unwrap_or((index + 1) % self.voters.len());
            // The next call starts past a voter that failed: a hung one (SIGSTOP, a dead
            // switch port) would otherwise eat every short call's whole budget, and a broker
            // would never reach the new controller to heartbeat.
            self.active.set(index);
            if attempts % self.voters.len() == 0 {
                // A full round without an active controller (an election, most likely).
                let pause = Duration::from_millis(RPC_ROUND_BACKOFF_MS)
                    .min(deadline.saturating_duration_since(Instant::now()));
                glommio::timer::sleep(pause).await;
            }
        }
    }

    /// Sends `request` to `node` alone and returns whatever it answers.
    pub async fn call_node(
        &self,
        node: NodeId,
        request: InternalMessage,
        timeout: Duration,
    ) -> Result<InternalMessage, RpcError> {
        let voter = self
            .voters
            .iter()
            .find(|v| v.node == node)
            .ok_or(RpcError::UnknownNode { node })?;
        self.call_voter(voter, request, timeout).await
    }

    /// The voter a NOT_CONTROLLER answer names as leader, if it names another known one.
    fn leader_hint(&self, response: &InternalMessage, asked: usize) -> Option<usize> {
        let InternalMessage::FetchMetadataResponse { leader_id, .. } = response else {
            return None;
        };
        self.voters
            .iter()
            .position(|v| v.node.0 == *leader_id)
            .filter(|i| *i != asked)
    }

    async fn call_voter(
        &self,
        voter: &Voter,
        request: InternalMessage,
        timeout: Duration,
    ) -> Result<InternalMessage, RpcError> {
        let started = Instant::now();
        let timed_out = || RpcError::Timeout {
            node: voter.node,
            addr: voter.addr,
            waited_ms: millis(started.elapsed()),
        };
        let conn = with_timeout(timeout, self.connection(voter))
            .await
            .ok_or_else(timed_out)??;
        let correlation_id = self.next_correlation_id.get();
        self.next_correlation_id
            .set(correlation_id.wrapping_add(1).max(1));
        let answer = conn.register(correlation_id)?;
        // Removes the pending entry however this call ends (answer, timeout, or dropped).
        let _pending = PendingGuard {
            conn: &conn,
            correlation_id,
        };
        let frame = encode_internal(&InternalFrame {
            correlation_id,
            from_node: self.self_id,
            message: request,
        });
        let remaining = timeout.saturating_sub(started.elapsed());
        let exchange = async {
            conn.outgoing.send(frame).await.map_err(|_| conn.lost())?;
            answer.await.map_err(|_| conn.lost())
        };
        with_timeout(remaining, exchange)
            .await
            .ok_or_else(timed_out)?
    }

    /// The voter's connection, opened if there is none or the last one broke.
    async fn connection(&self, voter: &Voter) -> Result<Rc<Connection>, RpcError> {
        let _one_at_a_time =
            voter
                .connecting
                .acquire_permit(1)
                .await
                .map_err(|e| RpcError::Connect {
                    node: voter.node,
                    addr: voter.addr,
                    cause: e.to_string(),
                })?;
        if let Some(conn) = voter.conn.borrow().as_ref().filter(|c| c.is_open()) {
            return Ok(Rc::clone(conn));
        }
        let stream = connect(voter.addr, &self.guard)
            .await
            .map_err(|cause| RpcError::Connect {
                node: voter.node,
                addr: voter.addr,
                cause,
            })?;
        let conn = Connection::start(voter.node, voter.addr, stream);
        *voter.conn.borrow_mut() = Some(Rc::clone(&conn));
        Ok(conn)
    }
}

/// Whether the answer means "ask another voter": NOT_CONTROLLER as the top-level code, or on
/// every topic of an admin answer (which has no top-level code).
fn says_not_controller(response: &InternalMessage) -> bool {
    match response {
        InternalMessage::AdminResponse { results } => {
            !results.is_empty() && results.iter().all(|r| r.error_code == NOT_CONTROLLER)
        }
        other => other.error_code() == Some(NOT_CONTROLLER),
    }
}

/// How long the server may hold `request` before answering (a long poll).
fn long_poll_wait(request: &InternalMessage) -> Duration {
    match request {
        InternalMessage::FetchMetadata { max_wait_ms, .. } => {
            Duration::from_millis(u64::try_from(*max_wait_ms).unwrap_or(0))
        }
        _ => Duration::ZERO,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One connection to a voter: a writer task fed by a bounded queue, and a reader task that
/// completes pending calls. Dropping it ends both and closes the socket.
struct Connection {
    node: NodeId,
    addr: SocketAddr,
    outgoing: LocalSender<Bytes>,
    shared: Rc<ConnectionShared>,
    _tasks: TaskSet,
}

#[derive(Default)]
struct ConnectionShared {
    pending: RefCell<BTreeMap<u64, oneshot::Sender<InternalMessage>>>,
    /// Why the connection broke, once it has; then it takes no more calls.
    broken: RefCell<Option<String>>,
}

impl ConnectionShared {
    /// Marks the connection broken and fails every pending call (their senders drop).
    fn fail(&self, cause: String) {
        self.broken.borrow_mut().get_or_insert(cause);
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        drop(pending);
    }
}

impl Connection {
    fn start(node: NodeId, addr: SocketAddr, stream: Stream) -> Rc<Connection> {
        let (reader, writer) = split(stream);
        // A frame per pending call at most.
        let (outgoing, queue) = local_channel::new_bounded(CLIENT_CALLS_PENDING_MAX);
        let shared = Rc::new(ConnectionShared::default());
        let tasks = TaskSet::new();
        tasks.spawn(write_loop(writer, queue, Rc::clone(&shared)));
        tasks.spawn(read_loop(reader, node, addr, Rc::clone(&shared)));
        Rc::new(Connection {
            node,
            addr,
            outgoing,
            shared,
            _tasks: tasks,
        })
    }

    fn is_open(&self) -> bool {
        self.shared.broken.borrow().is_none()
    }

    fn register(
        &self,
        correlation_id: u64,
    ) -> Result<oneshot::Receiver<InternalMessage>, RpcError> {
        if let Some(cause) = self.shared.broken.borrow().clone() {
            return Err(RpcError::ConnectionLost {
                node: self.node,
                addr: self.addr,
                cause,
            });
        }
        let mut pending = self.shared.pending.borrow_mut();
        if pending.len() >= CLIENT_CALLS_PENDING_MAX {
            return Err(RpcError::Busy {
                node: self.node,
                addr: self.addr,
                pending: pending.len(),
            });
        }
        let (tx, rx) = oneshot::channel();
        pending.insert(correlation_id, tx);
        Ok(rx)
    }

    fn lost(&self) -> RpcError {
        RpcError::ConnectionLost {
            node: self.node,
            addr: self.addr,
            cause: self
                .shared
                .broken
                .borrow()
                .clone()
                .unwrap_or_else(|| "closed".to_string()),
        }
    }
}

struct PendingGuard<'a> {
    conn: &'a Connection,
    correlation_id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.conn
            .shared
            .pending
            .borrow_mut()
            .remove(&self.correlation_id);
    }
}

async fn write_loop(
    mut writer: WriteHalf<Stream>,
    queue: LocalReceiver<Bytes>,
    shared: Rc<ConnectionShared>,
) {
    while let Some(frame) = queue.recv().await {
        if let Err(e) = skein_net::write_flush(&mut writer, &frame).await {
            shared.fail(format!("write: {e}"));
            return;
        }
    }
}

async fn read_loop(
    mut reader: ReadHalf<Stream>,
    node: NodeId,
    addr: SocketAddr,
    shared: Rc<ConnectionShared>,
) {
    let cause = loop {
        let body = match skein_net::read_frame(&mut reader, INTERNAL_FRAME_BYTES_MAX).await {
            Ok(Some(body)) => body,
            Ok(None) => break "closed by the peer".to_string(),
            Err(e) => break format!("read: {e}"),
        };
        let frame = match decode_internal(&body) {
            Ok(frame) => frame,
            Err(e) => break format!("malformed frame: {e}"),
        };
        if frame.message.is_request() || matches!(frame.message, InternalMessage::Raft(_)) {
            tracing::debug!(%node, %addr, "unexpected request on a client connection ignored");
            continue;
        }
        // None: the call gave up (timed out) before its answer came.
        let waiter = shared.pending.borrow_mut().remove(&frame.correlation_id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(frame.message);
        }
    };
    tracing::debug!(%node, %addr, %cause, "controller connection broken");
    shared.fail(cause);
}

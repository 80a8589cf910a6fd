//! Every ceiling and default of skein-controller, declared once (per controller voter, which
//! lives on one node's controller shard). Runtime settings (`ControllerConfig`) are checked
//! against these when the node starts.

use skein_storage::batch::BATCH_HEADER_BYTES;
use skein_storage::BATCH_BYTES_MAX;

/// One Raft tick. Failover time is counted in ticks, so this sets the time scale of the group.
pub const TICK_INTERVAL_MS_DEFAULT: u64 = 50;
/// A follower that hears nothing for a random timeout in [10, 20) ticks (raft-rs draws it from
/// [election, 2 * election)) starts an election: 500..1000 ms with the default tick, well above
/// the heartbeat period, fsync stalls and a loaded executor, and low enough for fast failover.
pub const ELECTION_TICKS_DEFAULT: usize = 10;
/// The leader heartbeats every 2 ticks (100 ms): five heartbeats fit in the shortest election
/// timeout, so one or two lost heartbeats never start an election.
pub const HEARTBEAT_TICKS_DEFAULT: usize = 2;
/// Ticks are driven by a timer; a shorter tick would make elections race fsync latency.
pub const TICK_INTERVAL_MS_MIN: u64 = 1;

/// Voters in the group: 1, 3 or 5. More voters slow commits and buy nothing for metadata.
pub const VOTERS_MAX: usize = 5;

/// Raft messages queued for the driver, per node. A full inbox drops the message: Raft
/// retransmits (appends are retried on the next heartbeat, elections restart on timeout).
pub const INBOX_DEPTH_MAX: usize = 4096;
/// Payload bytes of the queued Raft messages, per node (one message is always accepted into
/// an empty inbox, so a snapshot larger than this still lands).
pub const INBOX_BYTES_MAX: usize = 64 << 20;
/// Proposals queued for the driver, per node. A full queue answers `ProposeError::Busy`.
pub const PROPOSALS_QUEUED_MAX: usize = 1024;

/// The encoded records of one proposal (one Raft entry). Topic creations of thousands of
/// partitions fit; a larger request must be split by the caller.
pub const ENTRY_BYTES_MAX: usize = 4 << 20;
/// A stored entry: the encoded entry (with its Raft header) inside one RecordBatch of one record.
pub const ENTRY_FRAME_OVERHEAD_BYTES: usize = 64;
/// Bytes of entries one append message may carry (raft-rs `max_size_per_msg`).
pub const MSG_ENTRIES_BYTES_MAX: u64 = 1 << 20;
/// Append messages in flight to one follower (raft-rs `max_inflight_msgs`).
pub const MSG_INFLIGHT_MAX: usize = 256;
/// Bytes of proposed but uncommitted entries at the leader; more is refused as `Busy`.
pub const UNCOMMITTED_BYTES_MAX: u64 = 64 << 20;

/// A snapshot of the image is taken (and the log compacted) after this many applied entries
/// or this many bytes of entries since the last one, whichever comes first. Both bound the
/// entries held in memory, which are every entry since the last snapshot.
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 8192;
pub const SNAPSHOT_EVERY_BYTES_DEFAULT: u64 = 64 << 20;
/// Largest snapshot file (encoded image plus header) a node writes or reads.
pub const SNAPSHOT_BYTES_MAX: usize = 1 << 30;

/// Largest encoded Raft message: a snapshot message carries the whole image.
pub const RAFT_MESSAGE_BYTES_MAX: usize = SNAPSHOT_BYTES_MAX + (1 << 20);

/// Segment size of the controller's Raft log: compaction deletes whole segments, so this is
/// also how many bytes of snapshotted entries may stay on disk.
pub const LOG_SEGMENT_BYTES_DEFAULT: u64 = 16 << 20;

/// Largest internal RPC frame read or written (rpc/): a FetchMetadata answer and a Raft
/// snapshot message carry the whole image, a few MiB for thousands of partitions, so this
/// leaves room to grow. A larger Raft message is not sent (logged; a snapshot is reported
/// undelivered). `read_frame` allocates only as bytes arrive, so the ceiling costs nothing.
pub const INTERNAL_FRAME_BYTES_MAX: usize = 64 << 20;
/// Connecting to a voter: on a LAN a healthy peer answers in well under a millisecond; a
/// dead host must not stall a call longer than a fraction of an election timeout.
pub const RPC_CONNECT_TIMEOUT_MS: u64 = 500;
/// A write that makes no progress for this long means the peer stopped reading: the
/// connection is dropped. Long enough for a large image over a slow link.
pub const RPC_WRITE_TIMEOUT_MS: u64 = 10_000;
/// Raft's sender to a peer that refused a connection waits before trying again, doubling up
/// to the max: a down voter is not hammered, and a restarted one is found within a second.
/// Messages for it in the meantime are dropped (Raft retransmits).
pub const PEER_RECONNECT_BACKOFF_MS_MIN: u64 = 50;
pub const PEER_RECONNECT_BACKOFF_MS_MAX: u64 = 1000;
/// Raft messages queued for one peer's sender; more are dropped. Above the appends raft-rs
/// keeps in flight per follower (`MSG_INFLIGHT_MAX`) plus heartbeats and votes.
pub const PEER_QUEUE_DEPTH_MAX: usize = 1024;
/// Payload bytes queued for one peer (appends carry up to `MSG_ENTRIES_BYTES_MAX` each). One
/// message is always accepted into an empty queue, so a snapshot larger than this still goes.
pub const PEER_QUEUE_BYTES_MAX: usize = 64 << 20;
/// Connections one RPC server holds: every broker's client plus every voter's Raft sender.
/// Beyond this a new connection is closed at once.
pub const SERVER_CONNECTIONS_MAX: usize = 4096;
/// Requests handled at once per connection; beyond this the server stops reading from that
/// connection (back-pressure). A broker has a heartbeat, a long-polling FetchMetadata and a
/// few admin or ISR requests in flight; 64 is far above that.
pub const SERVER_REQUESTS_IN_FLIGHT_MAX: usize = 64;
/// A handler that has not answered after this long is abandoned (its request gets no reply;
/// the caller times out). Above any long poll (`max_wait_ms`) a broker asks for.
pub const SERVER_HANDLE_TIMEOUT_MS: u64 = 60_000;
/// After an accept error (EMFILE, ENOBUFS) the server waits this long rather than spin.
pub const SERVER_ACCEPT_RETRY_MS: u64 = 100;
/// Calls waiting for an answer on one client connection; more fail at once as `Busy`.
pub const CLIENT_CALLS_PENDING_MAX: usize = 256;
/// One attempt of `RemoteClient::call` on one voter (plus the long-poll wait a FetchMetadata
/// asks for): an active controller answers in milliseconds, so after this the call moves on.
pub const RPC_ATTEMPT_TIMEOUT_MS: u64 = 1000;
/// After every voter was tried once without success (mid-election: everyone answers
/// NOT_CONTROLLER), wait this long before the next round, so a call does not spin.
pub const RPC_ROUND_BACKOFF_MS: u64 = 30;

const _: () = assert!(HEARTBEAT_TICKS_DEFAULT > 0);
const _: () = assert!(HEARTBEAT_TICKS_DEFAULT < ELECTION_TICKS_DEFAULT);
const _: () = assert!(TICK_INTERVAL_MS_DEFAULT >= TICK_INTERVAL_MS_MIN);
const _: () = assert!(VOTERS_MAX % 2 == 1);
const _: () = assert!(ENTRY_FRAME_OVERHEAD_BYTES > BATCH_HEADER_BYTES);
const _: () = assert!(ENTRY_BYTES_MAX + ENTRY_FRAME_OVERHEAD_BYTES <= BATCH_BYTES_MAX);
const _: () = assert!(ENTRY_BYTES_MAX as u64 <= UNCOMMITTED_BYTES_MAX);
const _: () = assert!(SNAPSHOT_EVERY_BYTES_DEFAULT <= SNAPSHOT_BYTES_MAX as u64);
const _: () = assert!(MSG_ENTRIES_BYTES_MAX < RAFT_MESSAGE_BYTES_MAX as u64);
const _: () = assert!(MSG_ENTRIES_BYTES_MAX <= INBOX_BYTES_MAX as u64);
const _: () = assert!(LOG_SEGMENT_BYTES_DEFAULT >= BATCH_BYTES_MAX as u64);
const _: () = assert!(MSG_ENTRIES_BYTES_MAX < INTERNAL_FRAME_BYTES_MAX as u64);
const _: () = assert!(PEER_QUEUE_DEPTH_MAX > MSG_INFLIGHT_MAX);
const _: () = assert!(MSG_ENTRIES_BYTES_MAX <= PEER_QUEUE_BYTES_MAX as u64);
const _: () = assert!(PEER_RECONNECT_BACKOFF_MS_MIN <= PEER_RECONNECT_BACKOFF_MS_MAX);
const _: () = assert!(RPC_CONNECT_TIMEOUT_MS < RPC_ATTEMPT_TIMEOUT_MS);
const _: () = assert!(RPC_ROUND_BACKOFF_MS < RPC_ATTEMPT_TIMEOUT_MS);

/// Info lines one decision writes for its partition leader/ISR changes; the rest go to debug,
/// counted in one info line (fencing a broker that leads thousands of partitions stays readable).
pub const PARTITION_EVENT_LINES_MAX: usize = 64;

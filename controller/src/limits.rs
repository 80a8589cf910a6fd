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

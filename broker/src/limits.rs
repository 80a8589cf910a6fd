//! Every limit of the broker, declared once; runtime settings are checked against these ceilings
//! when the config loads (node-wide).

/// Shards one process may run.
pub const SHARDS_MAX: usize = 256;
/// Partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: i64 = 100_000;
/// Ceiling for `socket.request.max.bytes`.
pub const REQUEST_BYTES_MAX: i64 = 1 << 30;
/// Smallest `segment.bytes` Kafka allows (LegacyRecord overhead), and so do we.
pub const SEGMENT_BYTES_MIN: i64 = 14;
pub const TAIL_CACHE_BYTES_PER_SHARD_DEFAULT: usize = 64 << 20;
pub const TAIL_CACHE_BYTES_PER_SHARD_MAX: i64 = 64 << 30;
/// glommio's DMA arena per shard (`skein.io.memory.bytes.per.shard`): write-behind chunks and
/// direct-read buffers come from it, allocated once (and registered with io_uring where the
/// memlock limit allows). A buffer that does not fit is a fresh allocation whose pages fault in
/// on first touch, and that is what glommio's 10 MiB default gives a busy partition.
pub const IO_MEMORY_BYTES_PER_SHARD_DEFAULT: usize = 64 << 20;
pub const IO_MEMORY_BYTES_PER_SHARD_MIN: i64 = 1 << 20;
pub const IO_MEMORY_BYTES_PER_SHARD_MAX: i64 = 16 << 30;
/// Depth of each cross-shard channel of the data mesh (produce, fetch, list offsets). A full
/// channel makes the sender wait, which back-pressures the connection that asked.
pub const DATA_MESH_DEPTH: usize = 1024;
/// Depth of each cross-shard channel of the control mesh (metadata, admin); separate so a
/// produce storm cannot starve a metadata swap.
pub const CONTROL_MESH_DEPTH: usize = 64;
/// Longest a Fetch may wait for data (clients ask for 500 ms by default).
pub const FETCH_MAX_WAIT_MS_MAX: u64 = 30_000;
/// Producer ids the metadata shard hands a shard at a time (Kafka's block size): one durable
/// write on the metadata shard per this many InitProducerId requests.
pub const PRODUCER_IDS_PER_BLOCK: i64 = 1000;
/// A TLS client that has not finished its handshake by then is cut off, so a connection that
/// never starts one cannot hold a TLS session's buffers. (A connection idle after its handshake
/// stays open: `connections.max.idle.ms` is not built.)
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Requests a connection reads ahead of the one being handled. Each may be as large as
/// `socket.request.max.bytes`, so this multiplies a connection's worst-case memory.
pub const REQUESTS_READ_AHEAD: u64 = 1;
/// Topic name length limit, as Kafka's.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

const _: () = assert!(CONTROL_MESH_DEPTH <= DATA_MESH_DEPTH);
const _: () = assert!(SEGMENT_BYTES_MIN > 0);
const _: () = assert!(PRODUCER_IDS_PER_BLOCK > 0);
/// Largest protocol metadata one group member may send in JoinGroup: more could never be written
/// in the group's record (the offsets topic's default `max.message.bytes` is about 1 MiB).
pub const GROUP_MEMBER_METADATA_BYTES_MAX: usize = 1 << 20;

/// Slots of the node-wide per-IP connection map and of the client-id quota map: each slot has
/// its own lock, so shards accepting at once rarely meet.
pub const QUOTA_MAP_SLOTS: usize = 16;
/// Client-ids one slot of the quota map keeps before those owing nothing are forgotten.
pub const QUOTA_CLIENTS_PER_SLOT_MAX: usize = 4096;
/// Longest one response throttles a client (Kafka's bound is its quota window, 11 s); a client
/// still in debt afterwards is throttled again on its next request.
pub const QUOTA_THROTTLE_TIME_MS_MAX: u32 = 10_000;

const _: () = assert!(QUOTA_MAP_SLOTS > 0);
const _: () = assert!(QUOTA_THROTTLE_TIME_MS_MAX <= i32::MAX as u32);

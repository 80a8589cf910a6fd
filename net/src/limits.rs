//! Wire limits of the Kafka protocol as skein-net speaks it; compile-time constants, per process.

/// Kafka's `socket.request.max.bytes` default: a larger request frame closes the connection.
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 104_857_600;

/// Bytes of the big-endian length prefix in front of every request and response.
pub const FRAME_SIZE_PREFIX_BYTES: usize = 4;

/// A frame body is read in steps of at most this many bytes, so a peer that announces a large
/// frame and sends nothing costs at most this much memory (buffers then grow with what arrived).
/// 1 MiB: a client's usual batch (librdkafka's `batch.size`, 1 MB) arrives into its first
/// step, so the buffer is never reallocated (and copied) while it fills; 64 KiB steps cost a
/// realloc copy of 3/4 of every 256 KiB produce request, 7% of the shard's CPU on produce.
pub const FRAME_READ_CHUNK_BYTES: usize = 1024 * 1024;

/// Api key + api version + correlation id: the part of every request header all versions share.
pub const REQUEST_HEADER_FIXED_BYTES: usize = 2 + 2 + 4;

/// Fetch response versions [`crate::fetch`] frames by hand.
pub const FETCH_VERSION_MIN: i16 = 4;
pub const FETCH_VERSION_MAX: i16 = 16;
/// First Fetch version with compact encodings and tagged fields.
pub const FETCH_FLEXIBLE_VERSION_MIN: i16 = 12;
/// First Fetch version that names topics by id instead of by name.
pub const FETCH_TOPIC_ID_VERSION_MIN: i16 = 13;
/// First Fetch version with a preferred read replica (KIP-392).
pub const FETCH_PREFERRED_READ_REPLICA_VERSION_MIN: i16 = 11;
/// First Fetch version with the top-level node endpoints (KIP-951).
pub const FETCH_NODE_ENDPOINTS_VERSION_MIN: i16 = 16;

/// Produce request versions whose decoding the tests prove zero-copy for the records.
pub const PRODUCE_VERSION_MIN: i16 = 3;
pub const PRODUCE_VERSION_MAX: i16 = 11;

/// The largest frame whose size fits the signed 32-bit prefix.
pub const FRAME_BYTES_MAX: usize = i32::MAX as usize;

const _: () = assert!(FRAME_READ_CHUNK_BYTES <= REQUEST_BYTES_MAX_DEFAULT);
const _: () = assert!(REQUEST_BYTES_MAX_DEFAULT <= FRAME_BYTES_MAX);
const _: () = assert!(FETCH_VERSION_MIN <= FETCH_FLEXIBLE_VERSION_MIN);
const _: () = assert!(FETCH_FLEXIBLE_VERSION_MIN < FETCH_TOPIC_ID_VERSION_MIN);
const _: () = assert!(FETCH_PREFERRED_READ_REPLICA_VERSION_MIN < FETCH_FLEXIBLE_VERSION_MIN);
const _: () = assert!(FETCH_NODE_ENDPOINTS_VERSION_MIN <= FETCH_VERSION_MAX);
const _: () = assert!(PRODUCE_VERSION_MIN <= PRODUCE_VERSION_MAX);

//! Every ceiling of skein-storage, declared once; per partition unless a name says per shard.
//!
//! Runtime settings (`LogConfig`) are checked against these when a config is loaded.

/// O_DIRECT alignment we always honour: 4 KiB satisfies both 512 B and 4 KiB sector devices.
pub const DMA_ALIGNMENT_BYTES: u64 = 4096;

/// Smallest write-behind chunk: appends are copied into aligned DMA chunks of at least this
/// size (one chunk holds a batch larger than this whole). Chunks exist only while their data is
/// in flight, so an idle partition holds none; the bytes in flight per partition are bounded by
/// the appends in flight, which the broker bounds with its request memory permits.
pub const WRITE_BEHIND_CHUNK_BYTES: usize = 256 << 10;

/// Segment files are preallocated (fallocate) in steps of this size ahead of the writer, so
/// that O_DIRECT writes land in allocated blocks inside the file size: on ext4/XFS such writes
/// complete inline in io_uring instead of being punted to a kernel worker thread.
pub const FALLOCATE_STEP_BYTES: u64 = 32 << 20;

/// Hard ceiling of one record batch, leader or follower side; `max_message_bytes` may not exceed
/// it. It bounds the DMA buffer of a single write and a single disk read.
pub const BATCH_BYTES_MAX: usize = 16 << 20;

/// Smallest disk read issued for a fetch, so that the index gap plus the first batch headers are
/// usually found in one I/O.
pub const READ_WINDOW_BYTES_MIN: usize = 64 << 10;

/// Read-ahead windows (see `log::read_ahead`) one shard holds at once, in bytes: half of the
/// broker's default DMA arena, so that fetch reads and write-behind chunks keep the rest. A
/// window is as large as the read before it (at most `BATCH_BYTES_MAX`).
pub const READ_AHEAD_BYTES_PER_SHARD_MAX: usize = 32 << 20;

/// A window read ahead that no read takes within this long is dropped (by the partition's
/// timer, so it may live up to one timer tick longer).
pub const READ_AHEAD_IDLE_MS: u64 = 1_000;

/// Recovery reads a segment in chunks of this size.
pub const RECOVERY_CHUNK_BYTES: usize = 1 << 20;

/// Segment size bounds: positions in the offset index are 32-bit like Kafka's.
pub const SEGMENT_BYTES_MIN: u64 = 64;
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

/// Bounds of `segment_index_bytes` (Kafka's `segment.index.bytes`, default 10 MiB).
pub const SEGMENT_INDEX_BYTES_MIN: u64 = 64;
pub const SEGMENT_INDEX_BYTES_MAX: u64 = 64 << 20;

/// How often the high watermark is checkpointed (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms`), and the tick of the per-partition timer.
pub const HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS: u64 = 5_000;

/// Batches remembered per idempotent producer and partition, so that a retry of any of them is
/// recognised as a duplicate: Kafka's fixed 5, which is why clients cap
/// `max.in.flight.requests.per.connection` at 5 with idempotence.
pub const PRODUCER_BATCHES_RETAINED: usize = 5;

/// Bytes of one `.index` entry (relative offset u32 + position u32, big-endian, as Kafka).
pub const OFFSET_INDEX_ENTRY_BYTES: u64 = 8;
/// Bytes of one `.timeindex` entry (timestamp i64 + relative offset u32, big-endian, as Kafka).
pub const TIME_INDEX_ENTRY_BYTES: u64 = 12;

/// Memory of the cleaner's key -> offset map for one pass (Kafka's `log.cleaner.dedupe.buffer.size`
/// is 128 MiB for all cleaner threads). A pass whose dirty keys do not fit maps a prefix of the
/// dirty section and cleans up to there; the next pass continues from that point.
pub const CLEANER_OFFSET_MAP_BYTES_MAX: usize = 64 << 20;

/// What one key of the cleaner's offset map is charged beyond its bytes (hash table slot, boxed
/// slice header, allocator rounding): an estimate that errs high.
pub const CLEANER_MAP_ENTRY_OVERHEAD_BYTES: usize = 64;

/// The cleaner reads segments in windows of at least this size, and writes cleaned segments in
/// aligned buffers of this size.
pub const CLEANER_IO_BYTES: usize = 1 << 20;

/// Largest decompressed record payload of one batch the cleaner will hold; a batch that inflates
/// beyond it is kept as it is (never decoded), so a compression bomb costs no memory.
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 64 << 20;

const _: () = assert!(BATCH_BYTES_MAX as u64 % DMA_ALIGNMENT_BYTES == 0);
const _: () = assert!(CLEANER_IO_BYTES as u64 % DMA_ALIGNMENT_BYTES == 0);
const _: () = assert!(DECOMPRESSED_BATCH_BYTES_MAX >= BATCH_BYTES_MAX);
const _: () = assert!(WRITE_BEHIND_CHUNK_BYTES as u64 % DMA_ALIGNMENT_BYTES == 0);
const _: () = assert!(WRITE_BEHIND_CHUNK_BYTES <= BATCH_BYTES_MAX);
const _: () = assert!(RECOVERY_CHUNK_BYTES as u64 % DMA_ALIGNMENT_BYTES == 0);
const _: () = assert!(READ_WINDOW_BYTES_MIN as u64 % DMA_ALIGNMENT_BYTES == 0);
const _: () = assert!(READ_AHEAD_BYTES_PER_SHARD_MAX >= 2 * BATCH_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX as u64 <= SEGMENT_BYTES_MAX);
const _: () = assert!(SEGMENT_INDEX_BYTES_MIN >= 2 * TIME_INDEX_ENTRY_BYTES);
const _: () = assert!(DMA_ALIGNMENT_BYTES.is_power_of_two());
const _: () = assert!(FALLOCATE_STEP_BYTES % DMA_ALIGNMENT_BYTES == 0);
// A producer entry stores its batch count in a u8.
const _: () =
    assert!(PRODUCER_BATCHES_RETAINED > 0 && PRODUCER_BATCHES_RETAINED <= u8::MAX as usize);

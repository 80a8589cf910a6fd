//! skein-storage: the partition log on disk (per shard; nothing here is `Send`).
//!
//! A partition is a directory of segments holding Kafka RecordBatch v2 bytes exactly as
//! produced, with sparse offset/time indexes, a leader-epoch checkpoint and a high-watermark
//! checkpoint. Appends are written with O_DIRECT through glommio, grouped (write-behind), and
//! kept in a per-shard tail cache for readers of recent data. `PartitionLog::compact` is Kafka's
//! log cleaner for `cleanup.policy=compact`: it rewrites sealed segments below the high
//! watermark keeping the newest record per key at its offset; compressed batches are inflated
//! and compressed again with their codec (gzip, snappy, lz4, zstd), while control,
//! transactional and unreadable batches are kept whole. See DESIGN.md, "Storage".

pub mod batch;
mod checkpoint;
mod cleaner;
mod compression;
mod config;
mod dma;
mod error;
mod limits;
mod log;
mod producer_state;
mod records;
mod recovery;
mod segment;
mod tail_cache;

pub use config::{CleanupPolicy, FlushPolicy, LogConfig};
pub use dma::filesystem_magic;
pub use error::{CorruptKind, StorageError};
pub use limits::{BATCH_BYTES_MAX, DMA_ALIGNMENT_BYTES, PRODUCER_BATCHES_RETAINED};
pub use log::{
    read_ahead_stats, AppendInfo, CompactionOutcome, LeaderEpoch, LogChunk, LogRead, Offset,
    PartitionLog, ReadAheadStats, RetentionOutcome,
};
pub use producer_state::{ProducerBatch, ProducerEntry, ProducerEpoch, ProducerId};
pub use tail_cache::{TailCache, TailCacheStats};

/// `Result` with `StorageError`.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

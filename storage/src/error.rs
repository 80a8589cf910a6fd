//! `StorageError`: the one error type of skein-storage (per partition, any shard).
//!
//! Variants are what the world did to us (bad bytes, bad offsets, a full disk); our own bugs are
//! asserts. The broker maps each variant to a Kafka error code with an exhaustive match.

use std::io;
use std::path::PathBuf;

/// Why a record batch was refused or why a scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptKind {
    /// `batch_length` is smaller than a v2 header or larger than `BATCH_BYTES_MAX`.
    BadLength,
    /// The CRC-32C over attributes..end does not match the `crc` field.
    CrcMismatch,
    /// `record_count` / `last_offset_delta` are negative or inconsistent.
    BadCounts,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A batch is damaged (CORRUPT_MESSAGE). `position` is its byte position in the input.
    #[error("corrupt record batch at byte {position}: {kind:?}")]
    CorruptBatch { position: usize, kind: CorruptKind },
    /// The batch is not a v2 RecordBatch (magic != 2).
    #[error("unsupported record batch magic {magic} at byte {position}")]
    InvalidMagic { position: usize, magic: i8 },
    /// The input ends inside a batch frame.
    #[error("truncated record batch at byte {position}: need {needed_bytes} bytes, have {available_bytes}")]
    TruncatedBatch {
        position: usize,
        needed_bytes: usize,
        available_bytes: usize,
    },
    /// An append with no batch in it.
    #[error("append carries no record batch")]
    EmptyAppend,
    /// One batch is larger than `max_message_bytes` (MESSAGE_TOO_LARGE).
    #[error("record batch of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    RecordTooLarge { size_bytes: usize, max_bytes: usize },
    /// A read or lookup outside [log_start_offset, log_end_offset].
    #[error("offset {offset} out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// A follower append does not start at the log end offset, or its batches are not contiguous.
    #[error("replica append expected offset {expected_offset}, got batch at {batch_base_offset}")]
    OffsetGap {
        expected_offset: i64,
        batch_base_offset: i64,
    },
    /// A follower append starts below the log end offset (it would overwrite the log).
    #[error("replica append overlaps: expected offset {expected_offset}, got batch at {batch_base_offset}")]
    OffsetOverlap {
        expected_offset: i64,
        batch_base_offset: i64,
    },
    /// A leader append with a leader epoch older than the newest one in the log.
    #[error("leader epoch {leader_epoch} is older than the log's latest {latest_leader_epoch}")]
    StaleLeaderEpoch {
        leader_epoch: i32,
        latest_leader_epoch: i32,
    },
    /// An idempotent producer's batch carries an epoch older than the one this partition has
    /// seen from it: a newer instance fenced it (INVALID_PRODUCER_EPOCH).
    #[error("producer {producer_id}: epoch {producer_epoch} is older than the current epoch {current_epoch}")]
    InvalidProducerEpoch {
        producer_id: i64,
        producer_epoch: i16,
        current_epoch: i16,
    },
    /// An idempotent producer's batch does not continue its sequence (a gap, or a new epoch
    /// not starting at 0), and is no retry of a retained batch (OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error("producer {producer_id} epoch {producer_epoch}: sequence {base_sequence} is out of order, expected {expected_sequence}")]
    OutOfOrderSequence {
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        expected_sequence: i32,
    },
    /// A batch with a producer id that an idempotent append cannot take (INVALID_RECORD): a
    /// negative sequence or epoch, or more than one producer batch in one append.
    #[error("invalid batch from producer {producer_id}: {reason}")]
    InvalidProducerBatch {
        producer_id: i64,
        reason: &'static str,
    },
    /// The disk is full (ENOSPC). The log rolled back to what was durably written.
    #[error("no space left on device: {path}")]
    NoSpace { path: PathBuf },
    /// Any other I/O failure; `op` says what we were doing.
    #[error("I/O error while {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A write wrote fewer bytes than asked (treated as a failed write).
    #[error("short write to {path}: {written_bytes} of {expected_bytes} bytes")]
    ShortWrite {
        path: PathBuf,
        written_bytes: usize,
        expected_bytes: usize,
    },
    /// The append was accepted in memory but discarded before it reached disk, because an
    /// earlier write failed or the log was truncated under it. It is not in the log.
    #[error("append aborted before it was written")]
    AppendAborted,
    /// A checkpoint or index file could not be parsed.
    #[error("corrupt checkpoint file {path}: {reason}")]
    CorruptCheckpoint { path: PathBuf, reason: &'static str },
    /// A `LogConfig` value outside its bounds.
    #[error("invalid log config: {0}")]
    InvalidConfig(String),
    /// The log was closed or deleted.
    #[error("partition log is closed")]
    Closed,
}

impl StorageError {
    /// Wraps an I/O error, turning ENOSPC into `NoSpace` so callers can match on it.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(libc::ENOSPC)
            || source.kind() == io::ErrorKind::StorageFull
        {
            StorageError::NoSpace { path }
        } else {
            StorageError::Io { op, path, source }
        }
    }

    /// True for an idempotent producer's batch refused by the producer-state checks.
    pub fn is_producer_refusal(&self) -> bool {
        matches!(
            self,
            StorageError::InvalidProducerEpoch { .. }
                | StorageError::OutOfOrderSequence { .. }
                | StorageError::InvalidProducerBatch { .. }
        )
    }

    /// True for errors that describe the input bytes (never the log's state).
    pub fn is_corrupt_input(&self) -> bool {
        matches!(
            self,
            StorageError::CorruptBatch { .. }
                | StorageError::InvalidMagic { .. }
                | StorageError::TruncatedBatch { .. }
        )
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

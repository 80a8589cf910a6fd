//! One segment of a partition log: `<base offset>.log` plus its sparse indexes (owning shard).
//!
//! A segment's bytes move through three marks, asserted in that order:
//! `synced_size <= written_size <= size`. `size` counts everything appended (some of it still
//! pending in memory), `written_size` what O_DIRECT writes completed, `synced_size` what an
//! fdatasync covered.

pub(crate) mod appender;
pub(crate) mod index;
pub(crate) mod reader;
pub(crate) mod rewrite;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::dma::SharedFile;
use index::SegmentIndex;

/// State of one append as seen by its caller, set by the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketState {
    Pending,
    Written,
    /// Discarded before it reached disk; `no_space` when the cause was ENOSPC.
    Aborted {
        no_space: bool,
    },
}

pub(crate) type Ticket = Rc<Cell<TicketState>>;

/// A batch appended in memory whose O_DIRECT write has not completed yet.
#[derive(Debug)]
pub(crate) struct PendingBatch {
    /// The batch: the log's own stamped copy when `owned`, else the caller's bytes (a slice of
    /// its request), not yet stamped when `leader_epoch_stamp` is set. The write-behind chunks
    /// already hold the stamped bytes; the writer makes the owned copy for the tail cache while
    /// the write is in flight (see `Inner::fill_cache`).
    pub bytes: Bytes,
    pub owned: bool,
    /// Leader append: the partition leader epoch to stamp (with `base_offset`).
    pub leader_epoch_stamp: Option<i32>,
    pub base_offset: i64,
    /// Last offset + 1.
    pub next_offset: i64,
    pub max_timestamp: i64,
    /// Set on the last batch of an append: resolved when that batch is written or aborted.
    pub ticket: Option<Ticket>,
}

impl PendingBatch {
    /// The batch exactly as stored (stamped): free when owned, else a stamped copy.
    pub fn stored_bytes(&self) -> Bytes {
        stored_bytes(
            &self.bytes,
            self.owned,
            self.leader_epoch_stamp,
            self.base_offset,
        )
    }
}

pub(crate) fn stored_bytes(
    bytes: &Bytes,
    owned: bool,
    leader_epoch_stamp: Option<i32>,
    base_offset: i64,
) -> Bytes {
    if owned {
        return bytes.clone();
    }
    let mut b = bytes::BytesMut::from(&bytes[..]);
    if let Some(e) = leader_epoch_stamp {
        crate::batch::stamp(&mut b, base_offset, e);
    }
    b.freeze()
}

#[derive(Debug)]
pub(crate) struct SegmentState {
    pub size: u64,
    pub written_size: u64,
    pub synced_size: u64,
    /// The file's size on disk: preallocated ahead of `written_size` while the segment is
    /// active (the tail beyond the data reads as zeros, which recovery treats as the end).
    pub allocated_size: u64,
    /// Offset after the last appended batch (base offset when empty).
    pub next_offset: i64,
    pub written_next_offset: i64,
    /// Largest batch max timestamp (-1 when none).
    pub max_timestamp: i64,
    pub written_max_timestamp: i64,
    /// What `segment.ms` is measured from: the first batch's max timestamp, else creation time.
    pub roll_timestamp_ms: i64,
    /// Wall clock of the last append (retention falls back to it for batches without timestamps).
    pub last_modified_ms: i64,
    pub index: SegmentIndex,
    pub bytes_since_index: u64,
    pub pending: VecDeque<PendingBatch>,
    /// Write-behind DMA chunks holding the pending bytes (see `appender`).
    pub chunks: VecDeque<appender::Chunk>,
    /// The partial block (bytes from `align_down(x)` to `x`) in front of the write-behind
    /// chunks, where `x` is the end of the data already written or in flight: the next write
    /// starts by repeating it so that it stays aligned for O_DIRECT.
    pub tail_block: Vec<u8>,
    /// No more appends go here (a newer segment exists).
    pub sealed: bool,
    /// Sealed and made final on disk (fdatasync, exact size, index files written).
    pub seal_done: bool,
    /// The producer state as of this segment's end, taken when it was rolled (and so before
    /// any later append); the seal writes it to disk once the segment's data is.
    pub producer_snapshot: Option<ProducerSnapshot>,
}

/// An encoded producer-state snapshot waiting to be written as `<end_offset>.snapshot`.
#[derive(Debug, Clone)]
pub(crate) struct ProducerSnapshot {
    pub end_offset: i64,
    pub bytes: Vec<u8>,
}

impl SegmentState {
    pub fn check_marks(&self) {
        assert!(self.synced_size <= self.written_size);
        assert!(self.written_size <= self.size);
    }

    /// True when the writer has something to do here.
    pub fn has_work(&self) -> bool {
        !self.pending.is_empty() || (self.sealed && !self.seal_done)
    }

    /// Size of data as it will be on disk once pending writes complete.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Max timestamp used by time retention.
    pub fn retention_timestamp_ms(&self) -> i64 {
        if self.max_timestamp >= 0 {
            self.max_timestamp
        } else {
            self.last_modified_ms
        }
    }
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: i64,
    pub log_path: PathBuf,
    pub index_path: PathBuf,
    pub time_index_path: PathBuf,
    /// Opened lazily for a freshly rolled segment, by the writer, in segment order.
    pub file: RefCell<Option<SharedFile>>,
    pub st: RefCell<SegmentState>,
}

pub(crate) fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Parses `<20 digits>.log`.
pub(crate) fn parse_log_file_name(name: &str) -> Option<i64> {
    parse_file_name(name, "log")
}

/// Parses `<20 digits>.<ext>`.
pub(crate) fn parse_file_name(name: &str, ext: &str) -> Option<i64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

impl Segment {
    /// A segment with no data yet (new log, roll, truncate-fully).
    pub fn new_empty(dir: &Path, base_offset: i64, now_ms: i64) -> Segment {
        Segment::with_state(
            dir,
            base_offset,
            SegmentState {
                size: 0,
                written_size: 0,
                synced_size: 0,
                allocated_size: 0,
                next_offset: base_offset,
                written_next_offset: base_offset,
                max_timestamp: -1,
                written_max_timestamp: -1,
                roll_timestamp_ms: now_ms,
                last_modified_ms: now_ms,
                index: SegmentIndex::default(),
                bytes_since_index: 0,
                pending: VecDeque::new(),
                chunks: VecDeque::new(),
                tail_block: Vec::new(),
                sealed: false,
                seal_done: false,
                producer_snapshot: None,
            },
        )
    }

    pub fn with_state(dir: &Path, base_offset: i64, st: SegmentState) -> Segment {
        Segment {
            base_offset,
            log_path: dir.join(file_name(base_offset, "log")),
            index_path: dir.join(file_name(base_offset, "index")),
            time_index_path: dir.join(file_name(base_offset, "timeindex")),
            file: RefCell::new(None),
            st: RefCell::new(st),
        }
    }

    pub fn file(&self) -> Option<SharedFile> {
        self.file.borrow().clone()
    }

    /// Offset relative to the base, as stored in the indexes.
    pub fn relative(&self, offset: i64) -> u32 {
        let rel = offset - self.base_offset;
        assert!((0..=i64::from(u32::MAX)).contains(&rel));
        rel as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_twenty_digits() {
        assert_eq!(file_name(42, "log"), "00000000000000000042.log");
        assert_eq!(parse_log_file_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_log_file_name("42.log"), None);
        assert_eq!(parse_log_file_name("00000000000000000042.index"), None);
        assert_eq!(
            parse_file_name("00000000000000000042.snapshot", "snapshot"),
            Some(42)
        );
        assert_eq!(
            parse_file_name("00000000000000000042snapshot", "snapshot"),
            None
        );
    }
}

//! `PartitionLog`: one partition replica's log (owning shard; `!Send`, shared as `Rc`).
//!
//! All methods take `&self` and may run concurrently on the shard's executor. State sits in
//! `RefCell`s that are never borrowed across an `.await`; the order of appends is fixed in a
//! synchronous section (offsets, cache, pending queue), and I/O happens after it, serialized by
//! semaphores: `write_lock` (one group write at a time, FIFO), `sync_lock` (one fdatasync round
//! at a time: group commit) and `admin_lock` (truncate, retention, roll, close, delete).

mod append;
mod compaction;
mod maintenance;
mod open;
mod producers;
mod read;
mod read_ahead;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::ReadResult;
use glommio::sync::Semaphore;

use crate::checkpoint::LeaderEpochCache;
use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::producer_state::{ProducerEntry, ProducerId, ProducerState};
use crate::segment::Segment;
use crate::tail_cache::{CacheSlot, TailCache};

pub use compaction::CompactionOutcome;
pub use read_ahead::{read_ahead_stats, ReadAheadStats};

/// A Kafka offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub i64);

/// A partition leader epoch (never a bare `epoch`: see STYLE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaderEpoch(pub i32);

impl From<i32> for LeaderEpoch {
    fn from(v: i32) -> Self {
        LeaderEpoch(v)
    }
}

impl From<i64> for Offset {
    fn from(v: i64) -> Self {
        Offset(v)
    }
}

/// The result of an append. Offsets are inclusive.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    /// Largest batch max timestamp of this append (-1 if none).
    pub max_timestamp: i64,
    pub log_start_offset: i64,
    pub batch_count: u32,
    pub record_count: i64,
    pub size_bytes: usize,
    /// A retry of an idempotent producer's batch already in the log: nothing was appended and
    /// the offsets (and max timestamp) are the original's; the counts are 0.
    pub duplicate: bool,
}

/// Bytes of whole batches, from the tail cache or from a direct-I/O read.
#[derive(Debug, Clone)]
pub enum LogChunk {
    Cached(Bytes),
    /// A slice of a glommio DMA buffer: `!Send`, so only for the owning shard's sockets.
    Disk(ReadResult),
}

impl Deref for LogChunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            LogChunk::Cached(b) => b,
            LogChunk::Disk(r) => r,
        }
    }
}

impl LogChunk {
    /// `Bytes` that may cross shards: free for cached data, one copy for disk data.
    pub fn into_bytes(self) -> Bytes {
        match self {
            LogChunk::Cached(b) => b,
            LogChunk::Disk(r) => Bytes::copy_from_slice(&r),
        }
    }

    pub fn is_from_disk(&self) -> bool {
        matches!(self, LogChunk::Disk(_))
    }
}

/// The answer to `read`.
#[derive(Debug, Clone)]
pub struct LogRead {
    /// Whole batches in offset order; empty when nothing is readable below the bound.
    pub chunks: Vec<LogChunk>,
    /// Offset after the last returned batch (`from_offset` when empty).
    pub next_offset: i64,
    pub size_bytes: usize,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
}

/// What `enforce_retention` did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    pub rolled: bool,
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
    pub log_start_offset: i64,
}

pub(crate) struct LogState {
    pub segments: Vec<Rc<Segment>>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    /// Every offset below is written to its file (O_DIRECT completed).
    pub written_offset: i64,
    /// Every offset below is covered by fdatasync.
    pub synced_offset: i64,
    pub leader_epochs: LeaderEpochCache,
    pub leader_epochs_dirty: bool,
    pub high_watermark_checkpointed: i64,
    pub unflushed_messages: u64,
    pub last_flush_ms: i64,
    /// Segment files created, and how many of those creations a directory fsync covers.
    pub dir_changes: u64,
    pub dir_synced: u64,
    /// Idempotent producers, as of the log end offset (pending appends included).
    pub producers: ProducerState,
    /// End offsets of the producer snapshot files on disk.
    pub producer_snapshots: BTreeSet<i64>,
    pub closed: bool,
}

impl LogState {
    pub fn active(&self) -> &Rc<Segment> {
        let Some(s) = self.segments.last() else {
            unreachable!("a log always has a segment")
        };
        s
    }

    /// Index of the segment holding `offset`: the last with base <= offset.
    pub fn segment_index_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    pub fn check_offsets(&self) {
        assert!(self.log_start_offset <= self.high_watermark);
        assert!(self.high_watermark <= self.log_end_offset);
        assert!(self.synced_offset <= self.written_offset);
        assert!(self.written_offset <= self.log_end_offset);
    }
}

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub cache: Rc<TailCache>,
    pub cache_slot: CacheSlot,
    pub config: RefCell<LogConfig>,
    pub state: RefCell<LogState>,
    pub write_lock: Semaphore,
    pub sync_lock: Semaphore,
    pub admin_lock: Semaphore,
    pub checkpoint_lock: Semaphore,
    pub cleaner: RefCell<compaction::CleanerState>,
    pub read_ahead: RefCell<read_ahead::ReadAhead>,
    /// Segment files are preallocated ahead of the writer (not on tmpfs: `dma::on_tmpfs`).
    pub preallocate: bool,
}

/// One partition's log. See the module docs for the concurrency model.
pub struct PartitionLog {
    inner: Rc<Inner>,
    /// Periodic flush and checkpoints; cancelled when the log is dropped or closed.
    timer: Option<glommio::Task<()>>,
}

pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn closed() -> StorageError {
    StorageError::Closed
}

impl PartitionLog {
    /// Opens (creating if missing) the log in `dir`, running recovery after an unclean stop.
    pub async fn open(dir: &Path, config: LogConfig, cache: Rc<TailCache>) -> Result<PartitionLog> {
        let inner = open::open(dir, config, cache).await?;
        let inner = Rc::new(inner);
        let timer = maintenance::spawn_timer(Rc::downgrade(&inner));
        Ok(PartitionLog {
            inner,
            timer: Some(timer),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.state.borrow().log_start_offset
    }

    /// Exclusive: the offset the next append gets.
    pub fn log_end_offset(&self) -> i64 {
        self.inner.state.borrow().log_end_offset
    }

    pub fn high_watermark(&self) -> i64 {
        self.inner.state.borrow().high_watermark
    }

    /// Moves the high watermark forward. Panics if it would go backwards (only truncation may
    /// lower it); values above the log end offset are clamped to it (a follower's HW is
    /// min(leader HW, own LEO), as in Kafka).
    pub fn set_high_watermark(&self, high_watermark: i64) {
        let mut st = self.inner.state.borrow_mut();
        let hw = high_watermark.min(st.log_end_offset);
        assert!(
            hw >= st.high_watermark,
            "high watermark must never go backwards"
        );
        st.high_watermark = hw;
        st.check_offsets();
    }

    /// Bytes of all segments, pending writes included.
    pub fn size_bytes(&self) -> u64 {
        self.inner
            .state
            .borrow()
            .segments
            .iter()
            .map(|s| s.st.borrow().size)
            .sum()
    }

    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segments.len()
    }

    pub fn config(&self) -> LogConfig {
        self.inner.config.borrow().clone()
    }

    /// Replaces the config (validated first); new sizes apply from the next append/roll.
    pub fn update_config(&self, config: LogConfig) -> Result<()> {
        config.validate()?;
        *self.inner.config.borrow_mut() = config;
        Ok(())
    }

    pub fn latest_leader_epoch(&self) -> Option<LeaderEpoch> {
        self.inner
            .state
            .borrow()
            .leader_epochs
            .latest_epoch()
            .map(LeaderEpoch)
    }

    /// First offset of exactly `leader_epoch`, if the log holds it.
    pub fn leader_epoch_start_offset(&self, leader_epoch: impl Into<LeaderEpoch>) -> Option<i64> {
        self.inner
            .state
            .borrow()
            .leader_epochs
            .start_offset_for(leader_epoch.into().0)
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `leader_epoch` and its end offset (exclusive).
    pub fn end_offset_for_epoch(
        &self,
        leader_epoch: impl Into<LeaderEpoch>,
    ) -> Option<(LeaderEpoch, i64)> {
        let st = self.inner.state.borrow();
        st.leader_epochs
            .end_offset_for(leader_epoch.into().0, st.log_end_offset)
            .map(|(e, o)| (LeaderEpoch(e), o))
    }

    /// What this partition knows of an idempotent producer (its epoch and retained batches).
    pub fn producer(&self, producer_id: ProducerId) -> Option<ProducerEntry> {
        self.inner
            .state
            .borrow()
            .producers
            .get(producer_id)
            .copied()
    }

    /// Idempotent producers this partition keeps state for.
    pub fn producer_count(&self) -> usize {
        self.inner.state.borrow().producers.len()
    }

    /// End offsets of the producer-state snapshot files, oldest first.
    pub fn producer_snapshot_offsets(&self) -> Vec<i64> {
        let st = self.inner.state.borrow();
        st.producer_snapshots.iter().copied().collect()
    }

    /// The leader epoch cache as (epoch, start offset) pairs, oldest first.
    pub fn leader_epoch_entries(&self) -> Vec<(LeaderEpoch, i64)> {
        let st = self.inner.state.borrow();
        st.leader_epochs
            .entries()
            .iter()
            .map(|&(e, o)| (LeaderEpoch(e), o))
            .collect()
    }
}

impl Inner {
    fn ensure_open(&self) -> Result<()> {
        if self.state.borrow().closed {
            return Err(closed());
        }
        Ok(())
    }
}

#[cfg(test)]
mod compaction_crash_tests;
#[cfg(test)]
mod compaction_model_tests;
#[cfg(test)]
mod compaction_tests;
#[cfg(test)]
mod maintenance_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod producer_tests;
#[cfg(test)]
mod read_ahead_tests;
#[cfg(test)]
mod tests;

//! Truncation, retention, age-based roll, seal, checkpoints, close and delete (owning shard).
//! All take `admin_lock`, so they never interleave with each other.

use std::rc::{Rc, Weak};
use std::time::Duration;

use super::append::{roll, run_detached};
use super::open::remove_segment_files;
use super::producers;
use super::{closed, wall_clock_ms, Inner, PartitionLog, RetentionOutcome};
use crate::checkpoint::{self, CLEAN_SHUTDOWN_FILE};
use crate::config::FlushPolicy;
use crate::dma;
use crate::error::Result;
use crate::limits::HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS;
use crate::producer_state::ProducerState;
use crate::segment::reader::{locate, read_tail_block};
use crate::segment::Segment;

/// Makes a sealed, fully written segment final: fdatasync, exact file size (drops the O_DIRECT
/// padding), the producer snapshot taken at its roll, final time index entry, index files.
/// Index files last: their presence means done. Returns the end offset of the snapshot written.
pub(crate) async fn finish_seal(seg: &Segment) -> Result<Option<i64>> {
    let Some(file) = seg.file() else {
        // Never written (empty): nothing on disk to finish.
        let mut s = seg.st.borrow_mut();
        s.seal_done = true;
        s.producer_snapshot = None;
        return Ok(None);
    };
    let size = {
        let s = seg.st.borrow();
        assert!(s.sealed && s.pending.is_empty());
        s.size
    };
    file.fdatasync()
        .await
        .map_err(|e| dma::err("syncing", &seg.log_path, e))?;
    file.truncate(size)
        .await
        .map_err(|e| dma::err("truncating", &seg.log_path, e))?;
    // Only now is every batch the snapshot counts durable.
    let snapshot = seg.st.borrow().producer_snapshot.clone();
    if let Some(snap) = &snapshot {
        let dir = seg.log_path.parent().unwrap_or(std::path::Path::new("."));
        producers::write_snapshot(dir, snap.end_offset, &snap.bytes).await?;
    }
    let (offsets, times) = {
        let mut s = seg.st.borrow_mut();
        s.synced_size = s.written_size;
        s.allocated_size = size;
        let (max_ts, last) = (s.max_timestamp, s.next_offset - 1);
        if max_ts >= 0 && last >= seg.base_offset {
            s.index.push_time(max_ts, seg.relative(last));
        }
        (s.index.encode_offsets(), s.index.encode_times())
    };
    dma::write_small_file_atomic(&seg.index_path, &offsets).await?;
    dma::write_small_file_atomic(&seg.time_index_path, &times).await?;
    let mut s = seg.st.borrow_mut();
    s.seal_done = true;
    s.producer_snapshot = None;
    Ok(snapshot.map(|snap| snap.end_offset))
}

/// The per-partition timer: periodic flush and high-watermark checkpoints. Holds only a weak
/// reference; the returned task is owned by the `PartitionLog` and cancelled with it (the I/O it
/// starts runs in detached tasks, so cancelling never abandons a write).
pub(super) fn spawn_timer(weak: Weak<Inner>) -> glommio::Task<()> {
    let tick_ms = match weak.upgrade().map(|i| i.config.borrow().flush) {
        Some(FlushPolicy::Periodic { interval_ms, .. }) => {
            interval_ms.min(HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS)
        }
        _ => HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS,
    };
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_millis(tick_ms)).await;
            let Some(inner) = weak.upgrade() else { break };
            if inner.state.borrow().closed {
                break;
            }
            // Errors here surface again on the next append/flush; the timer just retries.
            let _ = inner.tick().await;
        }
    })
}

impl Inner {
    async fn tick(self: &Rc<Self>) -> Result<()> {
        self.read_ahead
            .borrow_mut()
            .expire(std::time::Instant::now());
        let flush = self.config.borrow().flush;
        let (due, hw_dirty) = {
            let st = self.state.borrow();
            let due = match flush {
                FlushPolicy::Periodic { interval_ms, .. } => {
                    st.synced_offset < st.log_end_offset
                        && wall_clock_ms().saturating_sub(st.last_flush_ms)
                            >= interval_ms.min(i64::MAX as u64) as i64
                }
                FlushPolicy::Fsync => false,
            };
            (due, st.high_watermark != st.high_watermark_checkpointed)
        };
        if due {
            self.flush().await?;
        }
        if hw_dirty {
            self.store_high_watermark().await?;
        }
        Ok(())
    }

    pub(super) async fn store_high_watermark(&self) -> Result<()> {
        let _p = self
            .checkpoint_lock
            .acquire_permit(1)
            .await
            .map_err(|_| closed())?;
        let hw = self.state.borrow().high_watermark;
        checkpoint::store_high_watermark(&self.dir, hw).await?;
        self.state.borrow_mut().high_watermark_checkpointed = hw;
        Ok(())
    }

    pub(super) async fn store_leader_epochs(&self) -> Result<()> {
        let _p = self
            .checkpoint_lock
            .acquire_permit(1)
            .await
            .map_err(|_| closed())?;
        let snapshot = {
            let mut st = self.state.borrow_mut();
            if !st.leader_epochs_dirty {
                return Ok(());
            }
            st.leader_epochs_dirty = false;
            st.leader_epochs.clone()
        };
        if let Err(e) = checkpoint::store_leader_epochs(&self.dir, &snapshot).await {
            self.state.borrow_mut().leader_epochs_dirty = true;
            return Err(e);
        }
        Ok(())
    }

    /// Creates the active segment's file if the writer has not yet (so that the log start
    /// offset survives a restart even when the log is empty).
    pub(super) async fn ensure_active_file(&self) -> Result<()> {
        let _w = self
            .write_lock
            .acquire_permit(1)
            .await
            .map_err(|_| closed())?;
        self.write_pending_locked().await?;
        let active = Rc::clone(self.state.borrow().active());
        self.ensure_file(&active).await?;
        Ok(())
    }
}

impl Inner {
    async fn truncate_to(self: Rc<Self>, offset: i64) -> Result<()> {
        let inner = &self;
        let _a = inner
            .admin_lock
            .acquire_permit(1)
            .await
            .map_err(|_| closed())?;
        inner.ensure_open()?;
        let (leo, start) = {
            let st = inner.state.borrow();
            (st.log_end_offset, st.log_start_offset)
        };
        if offset >= leo {
            return Ok(());
        }
        if offset < start {
            return inner.truncate_fully_locked(offset).await;
        }
        inner.cleaner_truncating_to(offset).await?;
        let _w = inner
            .write_lock
            .acquire_permit(1)
            .await
            .map_err(|_| closed())?;
        inner.write_pending_locked().await?;
        let (seg, start_pos, kept_max_ts, readable) = {
            let st = inner.state.borrow();
            let seg = Rc::clone(&st.segments[st.segment_index_for(offset)]);
            let s = seg.st.borrow();
            let rel = seg.relative(offset);
            // Scan from the last time entry that surely survives (its batch ends before
            // `offset`), so that the skipped batches give the exact new max timestamp.
            let last_kept = s.index.times.iter().rev().find(|t| t.relative_offset < rel);
            let (pos, kept_max_ts) = match last_kept {
                Some(t) => (
                    s.index.position_for(t.relative_offset),
                    t.max_timestamp_so_far,
                ),
                None => (0, -1),
            };
            let readable = s.written_size;
            drop(s);
            (seg, u64::from(pos), kept_max_ts, readable)
        };
        let file = inner.ensure_file(&seg).await?;
        let located = locate(&file, &seg.log_path, start_pos, readable, offset, 0).await?;
        // `min(offset)`: in a gap left by compaction the log ends at `offset` itself.
        let (cut_pos, cut_offset, skipped_max_ts) = match located {
            Some(l) => (
                l.window_pos + l.at as u64,
                l.peek.base_offset.min(offset),
                l.skipped_max_timestamp,
            ),
            None => {
                let s = seg.st.borrow();
                let end = s.written_next_offset.min(offset);
                (readable, end, s.written_max_timestamp)
            }
        };
        // Read before the state changes: an append staged right after the truncation starts its
        // first write with this block.
        let tail = read_tail_block(&file, &seg.log_path, cut_pos).await?;
        // Everything below the cut is written (we hold the write lock), and whatever is staged
        // meanwhile lies above it and goes with the cut.
        let (segments, snapshots) = {
            let st = inner.state.borrow();
            (st.segments.clone(), st.producer_snapshots.clone())
        };
        let rebuilt =
            producers::rebuild(&inner.dir, &segments, &snapshots, start, cut_offset).await?;
        drop(segments);
        let removed: Vec<Rc<Segment>> = {
            let mut st = inner.state.borrow_mut();
            let i = st.segment_index_for(offset);
            let removed: Vec<_> = st.segments.drain(i + 1..).collect();
            for r in &removed {
                r.st.borrow_mut().discard_pending(false);
            }
            let mut s = seg.st.borrow_mut();
            s.discard_pending(false);
            let rel_end = cut_offset - seg.base_offset;
            s.index.truncate(cut_pos, rel_end);
            s.size = cut_pos;
            s.written_size = cut_pos;
            s.allocated_size = cut_pos;
            s.synced_size = s.synced_size.min(cut_pos);
            s.next_offset = cut_offset;
            s.written_next_offset = cut_offset;
            s.max_timestamp = kept_max_ts.max(skipped_max_ts);
            if cut_pos == 0 {
                s.roll_timestamp_ms = wall_clock_ms();
            }
            s.written_max_timestamp = s.max_timestamp;
            let last_pos = s.index.offsets.last().map_or(0, |e| u64::from(e.position));
            s.bytes_since_index = cut_pos - last_pos;
            s.sealed = false;
            s.seal_done = false;
            s.producer_snapshot = None;
            s.tail_block = tail;
            drop(s);
            st.producers = rebuilt;
            st.log_end_offset = cut_offset;
            st.written_offset = st.written_offset.min(cut_offset);
            st.synced_offset = st.synced_offset.min(cut_offset);
            st.high_watermark = st.high_watermark.min(cut_offset);
            let changed = st.leader_epochs.truncate_from_end(cut_offset);
            st.leader_epochs_dirty |= changed;
            inner.cache.truncate_from(inner.cache_slot, cut_offset);
            inner.read_ahead.borrow_mut().clear();
            st.check_offsets();
            removed
        };
        let stale: Vec<i64> = {
            let mut st = inner.state.borrow_mut();
            let stale = st.producer_snapshots.split_off(&(cut_offset + 1));
            stale.into_iter().collect()
        };
        producers::remove_snapshots(&inner.dir, &stale).await?;
        for r in removed.iter().rev() {
            remove_segment_files(&inner.dir, r.base_offset).await?;
        }
        file.truncate(cut_pos)
            .await
            .map_err(|e| dma::err("truncating", &seg.log_path, e))?;
        // The segment is active again: its index files are stale.
        dma::remove_if_exists(&seg.index_path).await?;
        dma::remove_if_exists(&seg.time_index_path).await?;
        // Durable before anything is appended in the cut's place: a crash must not bring the
        // cut suffix back (Raft and follower truncation depend on it).
        file.fdatasync()
            .await
            .map_err(|e| dma::err("syncing", &seg.log_path, e))?;
        dma::sync_dir(&inner.dir).await?;
        drop(_w);
        inner.store_leader_epochs().await?;
        inner.store_high_watermark().await
    }

    async fn truncate_fully_and_start_at(self: Rc<Self>, offset: i64) -> Result<()> {
        let _a = self
            .admin_lock
            .acquire_permit(1)
            .await
            .map_err(|_| closed())?;
        self.ensure_open()?;
        self.truncate_fully_locked(offset).await
    }

    async fn truncate_fully_locked(&self, offset: i64) -> Result<()> {
        let inner = self;
        inner.cleaner_truncating_to(offset).await?;
        let _w = inner
            .write_lock
            .acquire_permit(1)
            .await
            .map_err(|_| closed())?;
        let old: Vec<Rc<Segment>> = {
            let mut st = inner.state.borrow_mut();
            let old: Vec<_> = st.segments.drain(..).collect();
            for s in &old {
                s.st.borrow_mut().discard_pending(false);
            }
            st.segments.push(Rc::new(Segment::new_empty(
                &inner.dir,
                offset,
                wall_clock_ms(),
            )));
            st.log_start_offset = offset;
            st.log_end_offset = offset;
            st.high_watermark = offset;
            st.written_offset = offset;
            st.synced_offset = offset;
            st.leader_epochs.clear();
            st.leader_epochs_dirty = true;
            st.producers = ProducerState::default();
            inner.cache.clear(inner.cache_slot);
            inner.read_ahead.borrow_mut().clear();
            st.check_offsets();
            old
        };
        let snapshots: Vec<i64> = {
            let mut st = inner.state.borrow_mut();
            std::mem::take(&mut st.producer_snapshots)
                .into_iter()
                .collect()
        };
        producers::remove_snapshots(&inner.dir, &snapshots).await?;
        // Newest first, so a crash in between leaves a consistent (stale) prefix of the log.
        for s in old.iter().rev() {
            remove_segment_files(&inner.dir, s.base_offset).await?;
        }
        let active = Rc::clone(inner.state.borrow().active());
        inner.ensure_file(&active).await?;
        drop(_w);
        dma::sync_dir(&inner.dir).await?;
        inner.store_leader_epochs().await?;
        inner.store_high_watermark().await
    }

    async fn enforce_retention(self: Rc<Self>, now_ms: i64) -> Result<RetentionOutcome> {
        let inner = &self;
        let _a = inner
            .admin_lock
            .acquire_permit(1)
            .await
            .map_err(|_| closed())?;
        inner.ensure_open()?;
        let config = inner.config.borrow().clone();
        let rolled = {
            let mut st = inner.state.borrow_mut();
            let s = st.active().st.borrow();
            let age_ms = now_ms.saturating_sub(s.roll_timestamp_ms);
            let expired = config.deletes()
                && config.retention_ms >= 0
                && now_ms.saturating_sub(s.retention_timestamp_ms()) > config.retention_ms;
            let due = !s.is_empty() && (age_ms >= config.segment_ms || expired);
            drop(s);
            if due {
                roll(&mut st, &inner.dir);
            }
            due
        };
        if rolled {
            inner.ensure_active_file().await?;
        }
        {
            let mut st = inner.state.borrow_mut();
            let written = st.written_offset;
            let before_ms = now_ms.saturating_sub(config.producer_id_expiration_ms);
            st.producers.expire(before_ms, written);
        }
        let mut outcome = RetentionOutcome {
            rolled,
            ..RetentionOutcome::default()
        };
        let deleted: Vec<Rc<Segment>> = if config.deletes() {
            let mut st = inner.state.borrow_mut();
            let mut total: u64 = st.segments.iter().map(|s| s.st.borrow().size).sum();
            let mut n = 0;
            while n + 1 < st.segments.len() {
                let s = st.segments[n].st.borrow();
                let next_base = st.segments[n + 1].base_offset;
                let by_time = config.retention_ms >= 0
                    && now_ms.saturating_sub(s.retention_timestamp_ms()) > config.retention_ms;
                let by_size = config.retention_bytes >= 0
                    && total.saturating_sub(s.size) >= config.retention_bytes as u64;
                if !(by_time || by_size) || next_base > st.high_watermark || !s.seal_done {
                    break;
                }
                total -= s.size;
                n += 1;
            }
            let deleted: Vec<_> = st.segments.drain(..n).collect();
            if n > 0 {
                let start = st.segments[0].base_offset;
                st.log_start_offset = start;
                let changed = st.leader_epochs.truncate_from_start(start);
                st.leader_epochs_dirty |= changed;
                inner
                    .cache
                    .evict_below(inner.cache_slot, st.log_start_offset);
                inner.read_ahead.borrow_mut().clear();
                st.check_offsets();
            }
            deleted
        } else {
            Vec::new()
        };
        if !deleted.is_empty() {
            // The first remaining segment must exist on disk: it now carries the log start.
            inner.ensure_active_file().await?;
        }
        for s in &deleted {
            outcome.deleted_bytes += s.st.borrow().size;
            remove_segment_files(&inner.dir, s.base_offset).await?;
        }
        outcome.deleted_segments = deleted.len();
        outcome.log_start_offset = inner.state.borrow().log_start_offset;
        // Snapshots below the log start are never loaded again; the newest always stays.
        let stale: Vec<i64> = {
            let mut st = inner.state.borrow_mut();
            let newest = st.producer_snapshots.last().copied();
            let kept = st.producer_snapshots.split_off(&outcome.log_start_offset);
            let below = std::mem::replace(&mut st.producer_snapshots, kept);
            let mut stale = Vec::with_capacity(below.len());
            for offset in below {
                if Some(offset) == newest {
                    st.producer_snapshots.insert(offset);
                } else {
                    stale.push(offset);
                }
            }
            stale
        };
        producers::remove_snapshots(&inner.dir, &stale).await?;
        inner.store_leader_epochs().await?;
        Ok(outcome)
    }

    async fn close(self: Rc<Self>) -> Result<()> {
        let inner = &self;
        let _a = inner
            .admin_lock
            .acquire_permit(1)
            .await
            .map_err(|_| closed())?;
        inner.ensure_open()?;
        let w = inner
            .write_lock
            .acquire_permit(1)
            .await
            .map_err(|_| closed())?;
        inner.write_pending_locked().await?;
        inner.state.borrow_mut().closed = true;
        drop(w);
        {
            let _s = inner
                .sync_lock
                .acquire_permit(1)
                .await
                .map_err(|_| closed())?;
            inner.sync_written().await?;
        }
        let active = Rc::clone(inner.state.borrow().active());
        if active.file().is_some() {
            active.st.borrow_mut().sealed = true;
            finish_seal(&active).await?;
        }
        // Everything is written: a snapshot at the log end spares the next open any replay.
        let (end, snapshot) = {
            let mut st = inner.state.borrow_mut();
            let end = st.log_end_offset;
            st.producers.prune_written(end);
            assert!(!st.producers.has_pending());
            (end, st.producers.encode_snapshot(end))
        };
        producers::write_snapshot(&inner.dir, end, &snapshot).await?;
        inner.state.borrow_mut().producer_snapshots.insert(end);
        inner.state.borrow_mut().leader_epochs_dirty = true;
        inner.store_leader_epochs().await?;
        inner.store_high_watermark().await?;
        dma::write_small_file_atomic(&inner.dir.join(CLEAN_SHUTDOWN_FILE), b"").await?;
        dma::sync_dir(&inner.dir).await?;
        inner.cache.unregister(inner.cache_slot);
        inner.cancel_read_ahead().await;
        let segments: Vec<Rc<Segment>> = std::mem::take(&mut inner.state.borrow_mut().segments);
        for s in segments {
            let file = s.file.borrow_mut().take();
            if let Some(f) = file {
                if let Ok(f) = Rc::try_unwrap(f) {
                    let _ = f.close().await;
                }
            }
        }
        Ok(())
    }

    async fn delete(self: Rc<Self>) -> Result<()> {
        let inner = &self;
        let _a = inner
            .admin_lock
            .acquire_permit(1)
            .await
            .map_err(|_| closed())?;
        let _w = inner
            .write_lock
            .acquire_permit(1)
            .await
            .map_err(|_| closed())?;
        let segments: Vec<Rc<Segment>> = {
            let mut st = inner.state.borrow_mut();
            st.closed = true;
            std::mem::take(&mut st.segments)
        };
        for s in &segments {
            s.st.borrow_mut().discard_pending(false);
        }
        inner.cache.unregister(inner.cache_slot);
        inner.cancel_read_ahead().await;
        drop(segments);
        let entries = std::fs::read_dir(&inner.dir)
            .map_err(|e| crate::error::StorageError::io("listing", &inner.dir, e))?;
        for entry in entries.flatten() {
            dma::remove_if_exists(&entry.path()).await?;
        }
        std::fs::remove_dir(&inner.dir)
            .map_err(|e| crate::error::StorageError::io("removing", &inner.dir, e))
    }
}

impl PartitionLog {
    /// Removes every batch from the one holding `offset` on (a follower's truncation). Batches
    /// are removed whole, so the new log end offset is the base of the batch holding `offset`
    /// (equal to `offset` when it is a batch boundary). Below the log start: truncate fully.
    pub async fn truncate_to(&self, offset: i64) -> Result<()> {
        run_detached(Rc::clone(&self.inner).truncate_to(offset)).await
    }

    /// Empties the log and restarts it at `offset` (a follower behind the leader's log start).
    pub async fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        run_detached(Rc::clone(&self.inner).truncate_fully_and_start_at(offset)).await
    }

    /// Rolls the active segment if it is older than `segment_ms` (or past retention), then
    /// deletes whole segments past `retention_ms` / `retention_bytes` that lie entirely below the
    /// high watermark, moving the log start offset. Call it periodically (Kafka: every 5 min).
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        run_detached(Rc::clone(&self.inner).enforce_retention(now_ms)).await
    }

    /// Writes the high watermark checkpoint now (it is also written every few seconds).
    pub async fn checkpoint_high_watermark(&self) -> Result<()> {
        self.inner.store_high_watermark().await
    }

    /// Clean shutdown: writes everything, fdatasync, exact file size, index files,
    /// checkpoints, then the clean-shutdown marker that lets the next open skip the scan.
    pub async fn close(mut self) -> Result<()> {
        drop(self.timer.take());
        run_detached(Rc::clone(&self.inner).close()).await
    }

    /// Deletes the log and its directory.
    pub async fn delete(mut self) -> Result<()> {
        drop(self.timer.take());
        run_detached(Rc::clone(&self.inner).delete()).await
    }
}

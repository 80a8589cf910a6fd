//! Appends (leader and follower), the write-behind writer and group-committed fdatasync.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;

use super::{closed, wall_clock_ms, AppendInfo, Inner, LeaderEpoch, LogState, PartitionLog};
use crate::batch::{self, BatchesSummary, RecordBatchHeader, ValidatedBatches};
use crate::config::{CleanupPolicy, FlushPolicy, LogConfig};
use crate::dma;
use crate::error::{Result, StorageError};
use crate::limits::FALLOCATE_STEP_BYTES;
use crate::producer_state::{ProducerBatch, Verdict};
use crate::segment::appender::{write_job, CacheFill, StagedBatch};
use crate::segment::{ProducerSnapshot, Segment, Ticket, TicketState};

/// The caller's bytes as given to `stage`: ours to stamp in place when we hold the only
/// reference (`owned`), else left untouched and copied once, stamped, into the write-behind
/// chunks; the tail cache's own copy is then made while the write is in flight.
struct Input {
    bytes: Bytes,
    owned: bool,
}

fn input(bytes: Bytes, leader_epoch: Option<i32>, first_offset: i64) -> Result<Input> {
    match bytes.try_into_mut() {
        Ok(mut buf) => {
            if let Some(e) = leader_epoch {
                stamp_all(&mut buf, first_offset, e)?;
            }
            Ok(Input {
                bytes: buf.freeze(),
                owned: true,
            })
        }
        Err(shared) => Ok(Input {
            bytes: shared,
            owned: false,
        }),
    }
}

/// Stamps consecutive offsets from `first_offset` and `leader_epoch` into validated batches.
fn stamp_all(buf: &mut [u8], first_offset: i64, leader_epoch: i32) -> Result<()> {
    let (mut pos, mut next) = (0usize, first_offset);
    while pos < buf.len() {
        let h = RecordBatchHeader::parse(&buf[pos..])?;
        let size = h.size_bytes();
        batch::stamp(&mut buf[pos..pos + size], next, leader_epoch);
        next += i64::from(h.last_offset_delta) + 1;
        pos += size;
    }
    Ok(())
}

struct Staged {
    info: AppendInfo,
    ticket: Ticket,
    end_offset: i64,
}

impl Staged {
    /// A retry of `batch`: resolves like the original append (once `pending`, the original's
    /// ticket, is written; at once when it already is), so the retry is never acknowledged
    /// before the data it points to.
    fn duplicate(batch: ProducerBatch, pending: Option<Ticket>, log_start_offset: i64) -> Self {
        Staged {
            info: AppendInfo {
                first_offset: batch.first_offset,
                last_offset: batch.last_offset,
                max_timestamp: batch.max_timestamp,
                log_start_offset,
                batch_count: 0,
                record_count: 0,
                size_bytes: 0,
                duplicate: true,
            },
            ticket: pending.unwrap_or_else(|| Rc::new(Cell::new(TicketState::Written))),
            end_offset: batch.last_offset + 1,
        }
    }
}

impl PartitionLog {
    /// Leader append: validates the batches, stamps offsets and `leader_epoch`, and resolves
    /// once the bytes are written with O_DIRECT (and, with `FlushPolicy::Fsync`, covered by a
    /// group-committed fdatasync).
    ///
    /// A batch with a producer id must come alone and passes Kafka's idempotence checks
    /// (`InvalidProducerEpoch`, `OutOfOrderSequence`); a retry of one of the producer's last
    /// `PRODUCER_BATCHES_RETAINED` batches appends nothing and resolves with the original's
    /// offsets (`AppendInfo::duplicate`) once the original is as durable as an append would be.
    ///
    /// Offsets are assigned when this is *called*, not when the future is first polled, so
    /// appends are ordered by call order. Dropping the future does not undo the append.
    pub fn append(
        &self,
        batches: Bytes,
        leader_epoch: impl Into<LeaderEpoch>,
    ) -> impl Future<Output = Result<AppendInfo>> + '_ {
        let staged = ValidatedBatches::validate(batches)
            .and_then(|b| self.stage_leader(b, leader_epoch.into().0));
        async move { self.inner.finish_append(staged?).await }
    }

    /// `append` for input the caller already validated (the broker does, before routing):
    /// the same append without a second CRC pass.
    pub fn append_validated(
        &self,
        batches: ValidatedBatches,
        leader_epoch: impl Into<LeaderEpoch>,
    ) -> impl Future<Output = Result<AppendInfo>> + '_ {
        let staged = self.stage_leader(batches, leader_epoch.into().0);
        async move { self.inner.finish_append(staged?).await }
    }

    fn stage_leader(&self, batches: ValidatedBatches, leader_epoch: i32) -> Result<Staged> {
        let summary = *batches.summary();
        let batches = batches.into_bytes();
        let max = self.inner.config.borrow().max_message_bytes as usize;
        if summary.largest_batch_bytes > max {
            return Err(StorageError::RecordTooLarge {
                size_bytes: summary.largest_batch_bytes,
                max_bytes: max,
            });
        }
        self.inner.stage(batches, &summary, Some(leader_epoch))
    }

    /// Follower append: keeps the leader's offsets and leader epochs byte for byte. The first
    /// batch must start at the log end offset and batches must be contiguous; on a compacted
    /// log a batch may start past it instead (the leader's cleaner removed whole batches, as in
    /// Kafka), never before. Ordered by call order like `append`. Producer state follows the
    /// batches without checks, as Kafka's.
    pub fn append_replica(&self, batches: Bytes) -> impl Future<Output = Result<AppendInfo>> + '_ {
        let staged = self.stage_replica(batches);
        async move { self.inner.finish_append(staged?).await }
    }

    fn stage_replica(&self, batches: Bytes) -> Result<Staged> {
        let mut expected = self.log_end_offset();
        let gaps_allowed = self.inner.config.borrow().cleanup_policy != CleanupPolicy::Delete;
        let summary = batch::validate_batches_replica(&batches, |_, h: &RecordBatchHeader| {
            if h.base_offset > expected && !gaps_allowed {
                return Err(StorageError::OffsetGap {
                    expected_offset: expected,
                    batch_base_offset: h.base_offset,
                });
            }
            if h.base_offset < expected {
                return Err(StorageError::OffsetOverlap {
                    expected_offset: expected,
                    batch_base_offset: h.base_offset,
                });
            }
            expected = h.last_offset() + 1;
            Ok(())
        })?;
        self.inner.stage(batches, &summary, None)
    }

    /// fdatasync of everything appended so far (pending writes are written first).
    pub async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
}

impl Inner {
    /// The synchronous part of an append: offsets, stamping, roll, cache, pending queue.
    /// `leader_epoch` is `Some` for a leader append (stamp), `None` for a follower append.
    fn stage(
        &self,
        batches: Bytes,
        summary: &BatchesSummary,
        leader_epoch: Option<i32>,
    ) -> Result<Staged> {
        let config = self.config.borrow().clone();
        let mut st = self.state.borrow_mut();
        if st.closed {
            return Err(closed());
        }
        // A follower's batches keep their offsets (past the log end only across a compaction
        // gap, which `stage_replica` allowed); a leader's start at the log end.
        let first_offset = match leader_epoch {
            Some(_) => st.log_end_offset,
            None => summary.first_offset.max(st.log_end_offset),
        };
        if let Some(e) = leader_epoch {
            if let Some(latest) = st.leader_epochs.latest_epoch() {
                if e < latest {
                    return Err(StorageError::StaleLeaderEpoch {
                        leader_epoch: e,
                        latest_leader_epoch: latest,
                    });
                }
            }
            // Checked here, where offsets are assigned, so that appends in flight count.
            if summary.producer_batch_count > 0 {
                if summary.batch_count > 1 {
                    return Err(StorageError::InvalidProducerBatch {
                        producer_id: summary.producer_id,
                        reason: "an idempotent producer's append must be one batch",
                    });
                }
                let h = RecordBatchHeader::parse(&batches)?;
                if let Verdict::Duplicate { batch, pending } = st.producers.check(&h)? {
                    return Ok(Staged::duplicate(batch, pending, st.log_start_offset));
                }
            }
        } else if summary.first_offset < st.log_end_offset {
            // The follower check ran against an older log end offset (a concurrent append).
            return Err(StorageError::OffsetOverlap {
                expected_offset: first_offset,
                batch_base_offset: summary.first_offset,
            });
        }
        let last_offset = match leader_epoch {
            Some(_) => first_offset + summary.offset_count - 1,
            None => summary.last_offset,
        };
        maybe_roll(
            &mut st,
            &self.dir,
            &config,
            batches.len() as u64,
            last_offset,
        );

        // Stamp (leader, in place when the bytes are ours) and split into per-batch slices.
        let Input { bytes, owned } = input(batches, leader_epoch, first_offset)?;
        let mut headers = Vec::with_capacity(summary.batch_count as usize);
        let mut pos = 0usize;
        let mut next = first_offset;
        while pos < bytes.len() {
            let h = RecordBatchHeader::parse(&bytes[pos..])?;
            let size = h.size_bytes();
            let base = if leader_epoch.is_some() {
                next
            } else {
                h.base_offset
            };
            headers.push((pos, size, base, base + i64::from(h.last_offset_delta), h));
            next = base + i64::from(h.last_offset_delta) + 1;
            pos += size;
        }
        assert_eq!(next - 1, last_offset);
        let now = wall_clock_ms();
        let active = Rc::clone(st.active());
        let ticket: Ticket = Rc::new(Cell::new(TicketState::Pending));
        if summary.producer_batch_count > 0 {
            let written = st.written_offset;
            st.producers.prune_written(written);
        }
        {
            let mut seg = active.st.borrow_mut();
            let n = headers.len();
            for (i, &(pos, size, base, last, h)) in headers.iter().enumerate() {
                let staged = StagedBatch {
                    bytes: bytes.slice(pos..pos + size),
                    owned,
                    leader_epoch_stamp: leader_epoch,
                    base_offset: base,
                    last_offset: last,
                    max_timestamp: h.max_timestamp,
                };
                let pb = seg.stage(
                    active.relative(last),
                    staged,
                    config.index_interval_bytes,
                    now,
                );
                if i + 1 == n {
                    pb.ticket = Some(Rc::clone(&ticket));
                }
                if h.has_producer_id() {
                    st.producers.apply(&h, base, last, Some(&ticket));
                }
                let e = leader_epoch.unwrap_or(h.partition_leader_epoch);
                st.leader_epochs_dirty |= st.leader_epochs.assign(e, base);
            }
        }
        st.log_end_offset = last_offset + 1;
        st.unflushed_messages += summary.record_count.max(0) as u64;
        st.check_offsets();
        let info = AppendInfo {
            first_offset,
            last_offset,
            max_timestamp: summary.max_timestamp,
            log_start_offset: st.log_start_offset,
            batch_count: summary.batch_count,
            record_count: summary.record_count,
            size_bytes: summary.size_bytes,
            duplicate: false,
        };
        Ok(Staged {
            info,
            ticket,
            end_offset: last_offset + 1,
        })
    }

    async fn finish_append(self: &Rc<Self>, staged: Staged) -> Result<AppendInfo> {
        self.await_written(&staged.ticket).await?;
        if self.state.borrow().leader_epochs_dirty {
            self.store_leader_epochs().await?;
        }
        let flush = self.config.borrow().flush;
        match flush {
            FlushPolicy::Fsync => self.sync_to(staged.end_offset).await?,
            FlushPolicy::Periodic { messages, .. } => {
                if self.state.borrow().unflushed_messages >= messages {
                    self.flush().await?;
                }
            }
        }
        Ok(staged.info)
    }

    /// Waits until the append's last batch is written, doing the group write itself when it
    /// gets the write lock first.
    async fn await_written(self: &Rc<Self>, ticket: &Ticket) -> Result<()> {
        loop {
            match ticket.get() {
                TicketState::Written => return Ok(()),
                TicketState::Aborted { no_space } => return Err(self.aborted(no_space)),
                TicketState::Pending => {}
            }
            let inner = Rc::clone(self);
            let r = run_detached(async move {
                let _permit = inner
                    .write_lock
                    .acquire_permit(1)
                    .await
                    .map_err(|_| closed())?;
                inner.write_pending_locked().await
            })
            .await;
            match (ticket.get(), r) {
                (TicketState::Written, _) => return Ok(()),
                // We did the failed write ourselves: report its error (ENOSPC, EIO...).
                (TicketState::Aborted { .. }, Err(e)) => return Err(e),
                (TicketState::Aborted { no_space }, Ok(())) => return Err(self.aborted(no_space)),
                (TicketState::Pending, Err(e)) => return Err(e),
                (TicketState::Pending, Ok(())) => {}
            }
        }
    }

    fn aborted(&self, no_space: bool) -> StorageError {
        if no_space {
            StorageError::NoSpace {
                path: self.dir.clone(),
            }
        } else {
            StorageError::AppendAborted
        }
    }

    /// Writes everything pending, segment by segment, sealing finished segments on the way.
    /// Caller holds `write_lock` and runs in a detached task (`run_detached`): a write must never
    /// be abandoned half-way by a dropped future. On a failed write, everything not yet written
    /// is rolled back.
    pub(super) async fn write_pending_locked(&self) -> Result<()> {
        loop {
            let Some(seg) = self.next_segment_with_work() else {
                return Ok(());
            };
            let job = seg.st.borrow_mut().take_write_job();
            let Some(job) = job else {
                // Sealed, everything written: make it final.
                if let Some(offset) = super::maintenance::finish_seal(&seg).await? {
                    self.state.borrow_mut().producer_snapshots.insert(offset);
                }
                continue;
            };
            let file = match self.ensure_file(&seg).await {
                Ok(f) => f,
                Err(e) => {
                    let no_space = matches!(e, StorageError::NoSpace { .. });
                    self.rollback_unwritten(&seg, no_space, job.start_tail);
                    return Err(e);
                }
            };
            let start_tail = job.start_tail.clone();
            if let Err(e) = self.ensure_allocated(&seg, &file, job.end_size).await {
                let no_space = matches!(e, StorageError::NoSpace { .. });
                self.rollback_unwritten(&seg, no_space, start_tail);
                return Err(e);
            }
            let to_cache = seg.st.borrow().pending_to_cache(job.batch_count);
            let written = dma::join2(
                write_job(&file, &seg.log_path, job),
                self.fill_cache(&seg, to_cache),
            )
            .await
            .0;
            match written {
                Ok(job) => {
                    seg.st.borrow_mut().complete_write(&job);
                    let mut st = self.state.borrow_mut();
                    st.written_offset = st.written_offset.max(job.end_next_offset);
                    st.check_offsets();
                }
                Err(e) => {
                    let no_space = matches!(e, StorageError::NoSpace { .. });
                    self.rollback_unwritten(&seg, no_space, start_tail);
                    // Best effort: drop bytes a failed write may have left past the written end,
                    // so a crash cannot resurrect an append that was reported as failed.
                    let size = seg.st.borrow().written_size;
                    let _ = file.truncate(dma::align_up(size)).await;
                    return Err(e);
                }
            }
        }
    }

    /// Puts a group's batches into the tail cache (in log order: one writer at a time), and
    /// makes them the log's own stamped copies in the pending queue too. Batches still held as
    /// the caller's bytes are copied only after a pass of the reactor, i.e. once the group's
    /// writes are submitted, so the copy runs while the device works instead of before it.
    async fn fill_cache(&self, seg: &Segment, batches: Vec<CacheFill>) {
        let capacity = self.cache.capacity_bytes();
        if batches
            .iter()
            .any(|b| !b.owned && b.bytes.len() <= capacity)
        {
            glommio::timer::sleep(std::time::Duration::from_micros(1)).await;
        }
        for b in batches {
            if b.bytes.len() > capacity {
                // Never cacheable (`insert` would only drop the run): no copy; a read of it while
                // pending copies on demand.
                self.cache.clear(self.cache_slot);
                continue;
            }
            let bytes = b.stored_bytes();
            self.cache
                .insert(self.cache_slot, b.base_offset, b.last_offset, bytes.clone());
            seg.st.borrow_mut().set_owned(b.base_offset, bytes);
        }
    }

    /// Preallocates the segment file ahead of a write ending at `end_size` (see
    /// `FALLOCATE_STEP_BYTES`). Filesystems without fallocate, and tmpfs, just get extending
    /// writes.
    async fn ensure_allocated(
        &self,
        seg: &Segment,
        file: &dma::SharedFile,
        end_size: u64,
    ) -> Result<()> {
        let need = dma::align_up(end_size);
        let allocated = seg.st.borrow().allocated_size;
        if need <= allocated || !self.preallocate {
            return Ok(());
        }
        let segment_bytes = dma::align_up(self.config.borrow().segment_bytes);
        // A recovered segment's allocated size is its data size, rarely aligned; keep the
        // file's length on the direct-I/O alignment anyway.
        let target = need.max(dma::align_up(
            allocated + FALLOCATE_STEP_BYTES.min(segment_bytes),
        ));
        let mut granted = target;
        let mut result = file.pre_allocate(target, false).await;
        if result.is_err() && target > need {
            // Maybe only the step does not fit: allocate just what this write needs.
            granted = need;
            result = file.pre_allocate(need, false).await;
        }
        if let Err(e) = result {
            let e = dma::to_io(e);
            if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(StorageError::io("preallocating", &seg.log_path, e));
            }
        }
        let mut s = seg.st.borrow_mut();
        s.allocated_size = s.allocated_size.max(granted);
        Ok(())
    }

    /// The first segment (in log order) with pending writes or an unfinished seal.
    fn next_segment_with_work(&self) -> Option<Rc<Segment>> {
        let st = self.state.borrow();
        let mut found = None;
        for seg in st.segments.iter().rev() {
            let s = seg.st.borrow();
            if s.has_work() {
                found = Some(Rc::clone(seg));
            } else if s.sealed {
                break;
            }
        }
        found
    }

    /// Opens a rolled segment's file on its first write (in segment order, by the writer).
    pub(super) async fn ensure_file(&self, seg: &Segment) -> Result<dma::SharedFile> {
        if let Some(f) = seg.file() {
            return Ok(f);
        }
        let file = Rc::new(dma::open_rw(&seg.log_path, true).await?);
        *seg.file.borrow_mut() = Some(Rc::clone(&file));
        self.state.borrow_mut().dir_changes += 1;
        Ok(file)
    }

    /// After a failed write of `seg`: the log goes back to what is written. Later segments
    /// (never written, no files) are dropped, every pending append is aborted.
    fn rollback_unwritten(&self, seg: &Rc<Segment>, no_space: bool, start_tail: Vec<u8>) {
        let mut st = self.state.borrow_mut();
        let Some(i) = st.segments.iter().position(|s| Rc::ptr_eq(s, seg)) else {
            return;
        };
        for later in st.segments.drain(i + 1..) {
            later.st.borrow_mut().discard_pending(no_space);
        }
        {
            let mut s = seg.st.borrow_mut();
            s.abort_pending(seg.base_offset, no_space, Some(start_tail));
            s.sealed = false;
            s.seal_done = false;
            // Taken at the roll, it may count batches that are now gone.
            s.producer_snapshot = None;
        }
        let end = seg.st.borrow().next_offset;
        st.producers.rollback_from(end);
        st.log_end_offset = end;
        st.written_offset = st.written_offset.min(end);
        st.synced_offset = st.synced_offset.min(end);
        st.high_watermark = st.high_watermark.min(end);
        st.leader_epochs_dirty |= st.leader_epochs.truncate_from_end(end);
        self.cache.truncate_from(self.cache_slot, end);
        self.read_ahead.borrow_mut().clear();
        st.check_offsets();
    }

    /// Waits until a group-committed fdatasync covers every offset below `end_offset`.
    pub(super) async fn sync_to(&self, end_offset: i64) -> Result<()> {
        for _ in 0..2 {
            if self.state.borrow().synced_offset >= end_offset {
                return Ok(());
            }
            let _permit = self
                .sync_lock
                .acquire_permit(1)
                .await
                .map_err(|_| closed())?;
            if self.state.borrow().synced_offset >= end_offset {
                return Ok(());
            }
            self.sync_written().await?;
        }
        // Still not covered: the offsets were truncated away under us.
        Err(StorageError::AppendAborted)
    }

    /// One fdatasync round over every segment with unsynced writes. Caller holds `sync_lock`.
    pub(super) async fn sync_written(&self) -> Result<()> {
        let (target, work, dir_changes) = {
            let st = self.state.borrow();
            let work: Vec<(Rc<Segment>, u64)> = st
                .segments
                .iter()
                .filter_map(|s| {
                    let ss = s.st.borrow();
                    (ss.synced_size < ss.written_size).then(|| (Rc::clone(s), ss.written_size))
                })
                .collect();
            let dir_changes = (st.dir_changes > st.dir_synced).then_some(st.dir_changes);
            (st.written_offset, work, dir_changes)
        };
        for (seg, written) in &work {
            let Some(file) = seg.file() else { continue };
            file.fdatasync()
                .await
                .map_err(|e| dma::err("syncing", &seg.log_path, e))?;
            let mut s = seg.st.borrow_mut();
            s.synced_size = s.synced_size.max(*written).min(s.written_size);
        }
        if let Some(changes) = dir_changes {
            dma::sync_dir(&self.dir).await?;
            let mut st = self.state.borrow_mut();
            st.dir_synced = st.dir_synced.max(changes);
        }
        let mut st = self.state.borrow_mut();
        st.synced_offset = st.synced_offset.max(target).min(st.written_offset);
        st.unflushed_messages = 0;
        st.last_flush_ms = wall_clock_ms();
        st.check_offsets();
        Ok(())
    }

    pub(super) async fn flush(self: &Rc<Self>) -> Result<()> {
        let inner = Rc::clone(self);
        run_detached(async move {
            {
                let _w = inner
                    .write_lock
                    .acquire_permit(1)
                    .await
                    .map_err(|_| closed())?;
                inner.write_pending_locked().await?;
            }
            let _s = inner
                .sync_lock
                .acquire_permit(1)
                .await
                .map_err(|_| closed())?;
            inner.sync_written().await
        })
        .await
    }
}

/// Runs `fut` in a detached task of the current executor and waits for it. Dropping the wait
/// does not cancel the work: I/O that changes the log always runs to completion.
pub(super) async fn run_detached<T: 'static>(
    fut: impl Future<Output = Result<T>> + 'static,
) -> Result<T> {
    glommio::spawn_local(fut)
        .detach()
        .await
        .unwrap_or(Err(StorageError::Closed))
}

/// Rolls to a new (lazily created) segment when the append would not fit the active one.
fn maybe_roll(
    st: &mut LogState,
    dir: &std::path::Path,
    config: &LogConfig,
    add_bytes: u64,
    last_offset: i64,
) {
    let active = st.active();
    let needs = {
        let s = active.st.borrow();
        !s.is_empty()
            && (s.size + add_bytes > config.segment_bytes
                || s.index_full(config.segment_index_bytes)
                || last_offset - active.base_offset > i64::from(i32::MAX))
    };
    if needs {
        roll(st, dir);
    }
}

/// Seals the active segment and starts a new one at the log end offset. The producer state at
/// this offset goes with the sealed segment, to be written once its data is.
pub(super) fn roll(st: &mut LogState, dir: &std::path::Path) {
    let snapshot = ProducerSnapshot {
        end_offset: st.log_end_offset,
        bytes: st.producers.encode_snapshot(st.log_end_offset),
    };
    {
        let mut s = st.active().st.borrow_mut();
        s.sealed = true;
        s.producer_snapshot = Some(snapshot);
    }
    let seg = Segment::new_empty(dir, st.log_end_offset, wall_clock_ms());
    st.segments.push(Rc::new(seg));
}

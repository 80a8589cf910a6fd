//! Reads (Kafka fetch semantics) and timestamp lookup: tail cache first, then the pending
//! queue of unwritten batches, then direct-I/O reads of the segment.

use std::rc::Rc;

use super::{closed, LogChunk, LogRead, PartitionLog};
use crate::batch::RecordBatchHeader;
use crate::error::{Result, StorageError};
use crate::segment::reader::read_batches;
use crate::segment::Segment;

/// Bytes read per step while scanning for a timestamp.
const TIMESTAMP_SCAN_BYTES: usize = 256 << 10;

enum Plan {
    Done(Vec<LogChunk>, i64),
    Disk {
        seg: Rc<Segment>,
        start_pos: u64,
        readable: u64,
    },
}

impl PartitionLog {
    /// Whole batches starting with the one holding `from_offset`, up to `max_bytes` (the first
    /// batch is returned whole even if larger, KIP-74), only batches whose base offset is below
    /// `upper_bound_exclusive` (the high watermark for consumers, the LEO for followers), from a
    /// single segment. `OffsetOutOfRange` outside [log start, log end].
    pub async fn read(
        &self,
        from_offset: i64,
        max_bytes: usize,
        upper_bound_exclusive: i64,
    ) -> Result<LogRead> {
        let inner = &self.inner;
        let (log_start_offset, log_end_offset, high_watermark) = {
            let st = inner.state.borrow();
            if st.closed {
                return Err(closed());
            }
            (st.log_start_offset, st.log_end_offset, st.high_watermark)
        };
        if from_offset < log_start_offset || from_offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset: from_offset,
                log_start_offset,
                log_end_offset,
            });
        }
        let upper = upper_bound_exclusive.min(log_end_offset);
        let mut from = from_offset;
        let (chunks, next_offset) = loop {
            if from >= upper {
                break (Vec::new(), from_offset);
            }
            if let Some(r) = inner.cache.read(inner.cache_slot, from, max_bytes, upper) {
                let next = if r.chunks.is_empty() {
                    from_offset
                } else {
                    r.next_offset
                };
                break (r.chunks.into_iter().map(LogChunk::Cached).collect(), next);
            }
            let (plan, next_base) = self.plan_read(from, max_bytes, upper);
            match plan {
                Plan::Done(chunks, next) => break (chunks, next),
                Plan::Disk {
                    seg,
                    start_pos,
                    readable,
                } => {
                    let Some(file) = seg.file() else {
                        unreachable!("written bytes have a file")
                    };
                    let (r, from_window) =
                        match inner.read_from_window(&seg, from, max_bytes, upper).await {
                            Some(r) => (Some(r), true),
                            None => {
                                let interval = inner.config.borrow().index_interval_bytes;
                                let r = read_batches(
                                    &file,
                                    &seg.log_path,
                                    start_pos,
                                    readable,
                                    from,
                                    max_bytes,
                                    upper,
                                    interval,
                                )
                                .await?;
                                (r, false)
                            }
                        };
                    if let Some(r) = r.as_ref().filter(|r| !r.chunk.is_empty()) {
                        inner.after_disk_read(&seg, &file, from, from_window, r, max_bytes);
                    }
                    match (r, next_base) {
                        (Some(r), _) if !r.chunk.is_empty() => {
                            break (vec![LogChunk::Disk(r.chunk)], r.next_offset)
                        }
                        (Some(_), _) => break (Vec::new(), from_offset),
                        // Nothing at or after `from` in this segment (a gap): try the next one.
                        (None, Some(next)) if next > from => from = next,
                        (None, _) => break (Vec::new(), from_offset),
                    }
                }
            }
        };
        let size_bytes = chunks.iter().map(|c| c.len()).sum();
        Ok(LogRead {
            chunks,
            next_offset,
            size_bytes,
            log_start_offset,
            log_end_offset,
            high_watermark,
        })
    }

    /// Decides where `from` is served from, under one short borrow. Also returns the next
    /// segment's base offset.
    fn plan_read(&self, from: i64, max_bytes: usize, upper: i64) -> (Plan, Option<i64>) {
        let st = self.inner.state.borrow();
        let i = st.segment_index_for(from);
        let seg = &st.segments[i];
        let next_base = st.segments.get(i + 1).map(|s| s.base_offset);
        let s = seg.st.borrow();
        if from >= s.written_next_offset {
            // Not written yet and evicted from the cache: serve from the pending queue.
            let mut chunks = Vec::new();
            let mut total = 0;
            let mut next = from;
            for pb in s.pending.iter().filter(|pb| pb.next_offset > from) {
                if pb.base_offset >= upper
                    || (!chunks.is_empty() && total + pb.bytes.len() > max_bytes)
                {
                    break;
                }
                total += pb.bytes.len();
                next = pb.next_offset;
                chunks.push(LogChunk::Cached(pb.stored_bytes()));
            }
            let next = if chunks.is_empty() { from } else { next };
            return (Plan::Done(chunks, next), next_base);
        }
        let start_pos = u64::from(
            s.index
                .position_for(seg.relative(from.max(seg.base_offset))),
        );
        (
            Plan::Disk {
                seg: Rc::clone(seg),
                start_pos,
                readable: s.written_size,
            },
            next_base,
        )
    }

    /// ListOffsets by timestamp: the first batch whose max timestamp reaches `timestamp_ms`
    /// (searched from the first segment whose max timestamp reaches it), as (its base offset,
    /// its max timestamp). Batch granularity: the offset may precede the first matching record.
    pub async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        let (mut from, end) = {
            let st = self.inner.state.borrow();
            if st.closed {
                return Err(closed());
            }
            let Some(seg) = st
                .segments
                .iter()
                .find(|s| s.st.borrow().max_timestamp >= timestamp_ms)
            else {
                return Ok(None);
            };
            let s = seg.st.borrow();
            let from = s
                .index
                .relative_offset_before(timestamp_ms)
                .map_or(seg.base_offset, |rel| seg.base_offset + i64::from(rel));
            (from.max(st.log_start_offset), st.log_end_offset)
        };
        while from < end {
            let r = match self.read(from, TIMESTAMP_SCAN_BYTES, end).await {
                Ok(r) => r,
                // Retention moved the log start under us: continue from the new start.
                Err(StorageError::OffsetOutOfRange {
                    log_start_offset, ..
                }) if from < log_start_offset => {
                    from = log_start_offset;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if r.chunks.is_empty() {
                break;
            }
            for chunk in &r.chunks {
                let mut pos = 0;
                while pos < chunk.len() {
                    let h = RecordBatchHeader::parse(&chunk[pos..])?;
                    if h.max_timestamp >= timestamp_ms {
                        return Ok(Some((h.base_offset, h.max_timestamp)));
                    }
                    pos += h.size_bytes();
                }
            }
            from = r.next_offset;
        }
        Ok(None)
    }
}

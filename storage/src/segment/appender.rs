//! Write-behind for one segment (owning shard).
//!
//! An append copies its batches, in call order, into aligned DMA chunks right away (while an
//! earlier group write may still be in flight), stamping leader appends on the way: this is the
//! one copy on the append's path, so the writer only submits buffers. Whichever
//! append holds the log's write lock takes every filled chunk and writes them as one group; the
//! first chunk starts by repeating the partial block left by the previous write, so every write
//! is aligned for O_DIRECT. Chunks live only while their data is in flight: an idle partition
//! holds no DMA memory, only the partial block (< 4 KiB) in `tail_block`.

use std::path::Path;

use glommio::io::DmaBuffer;

use super::{PendingBatch, SegmentState, TicketState};
use crate::batch::BATCH_HEADER_BYTES;
use crate::dma::{self, align_down, align_up};
use crate::error::Result;
use crate::limits::{
    DMA_ALIGNMENT_BYTES, OFFSET_INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES, WRITE_BEHIND_CHUNK_BYTES,
};

/// An aligned region of the file being filled: `buf[..len]` is the file from `file_pos`.
pub(crate) struct Chunk {
    pub buf: DmaBuffer,
    pub file_pos: u64,
    pub len: usize,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Chunk {{ file_pos: {}, len: {} }}",
            self.file_pos, self.len
        )
    }
}

/// One group write, taken under a borrow and carried out without one.
#[derive(Debug)]
pub(crate) struct WriteJob {
    pub chunks: Vec<Chunk>,
    /// Partial block in front of the first chunk (restored if the write fails).
    pub start_tail: Vec<u8>,
    /// How many pending batches this write completes (all pending when it was taken).
    pub batch_count: usize,
    pub end_size: u64,
    pub end_next_offset: i64,
    pub end_max_timestamp: i64,
}

/// A batch of a write job on its way into the tail cache (see `PendingBatch`).
pub(crate) struct CacheFill {
    pub base_offset: i64,
    pub last_offset: i64,
    pub bytes: bytes::Bytes,
    pub owned: bool,
    pub leader_epoch_stamp: Option<i32>,
}

impl CacheFill {
    /// The batch as stored: free when owned, else a stamped copy.
    pub fn stored_bytes(&self) -> bytes::Bytes {
        super::stored_bytes(
            &self.bytes,
            self.owned,
            self.leader_epoch_stamp,
            self.base_offset,
        )
    }
}

/// What `stage` needs to know about a batch.
pub(crate) struct StagedBatch {
    /// See `PendingBatch::bytes`.
    pub bytes: bytes::Bytes,
    pub owned: bool,
    pub leader_epoch_stamp: Option<i32>,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

impl SegmentState {
    /// Appends one batch in memory: index entries, marks, write-behind copy, pending queue.
    pub fn stage(
        &mut self,
        relative_last: u32,
        batch: StagedBatch,
        index_interval_bytes: u32,
        now_ms: i64,
    ) -> &mut PendingBatch {
        let position = self.size;
        assert!(batch.base_offset >= self.next_offset);
        if self.size == 0 && batch.max_timestamp >= 0 {
            self.roll_timestamp_ms = batch.max_timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(batch.max_timestamp);
        if self.bytes_since_index > u64::from(index_interval_bytes) {
            self.index
                .push(relative_last, position as u32, self.max_timestamp);
            self.bytes_since_index = 0;
        }
        match batch.leader_epoch_stamp {
            // The one copy of a leader append: stamp the header on its way into the chunks.
            Some(e) if !batch.owned => {
                let mut header = [0u8; BATCH_HEADER_BYTES];
                header.copy_from_slice(&batch.bytes[..BATCH_HEADER_BYTES]);
                crate::batch::stamp(&mut header, batch.base_offset, e);
                self.copy_into_chunks(&[&header, &batch.bytes[BATCH_HEADER_BYTES..]]);
            }
            _ => self.copy_into_chunks(&[&batch.bytes]),
        }
        let len = batch.bytes.len() as u64;
        self.bytes_since_index += len;
        self.size += len;
        self.next_offset = batch.last_offset + 1;
        self.last_modified_ms = now_ms;
        self.pending.push_back(PendingBatch {
            bytes: batch.bytes,
            owned: batch.owned,
            leader_epoch_stamp: batch.leader_epoch_stamp,
            base_offset: batch.base_offset,
            next_offset: batch.last_offset + 1,
            max_timestamp: batch.max_timestamp,
            ticket: None,
        });
        self.check_marks();
        let Some(last) = self.pending.back_mut() else {
            unreachable!("just pushed")
        };
        last
    }

    /// Copies `parts` (one batch, in order) into the write-behind chunks.
    fn copy_into_chunks(&mut self, parts: &[&[u8]]) {
        let mut remaining: usize = parts.iter().map(|p| p.len()).sum();
        if self.chunks.is_empty() {
            let file_pos = align_down(self.size);
            assert_eq!(self.tail_block.len() as u64, self.size - file_pos);
            let mut chunk = new_chunk(file_pos, self.tail_block.len() + remaining);
            chunk.buf.as_bytes_mut()[..self.tail_block.len()].copy_from_slice(&self.tail_block);
            chunk.len = self.tail_block.len();
            self.chunks.push_back(chunk);
        }
        for &part in parts {
            let mut data = part;
            while !data.is_empty() {
                let Some(last) = self.chunks.back_mut() else {
                    unreachable!("seeded above")
                };
                let room = last.buf.len() - last.len;
                if room == 0 {
                    let file_pos = last.file_pos + last.buf.len() as u64;
                    self.chunks.push_back(new_chunk(file_pos, remaining));
                    continue;
                }
                let n = room.min(data.len());
                last.buf.as_bytes_mut()[last.len..last.len + n].copy_from_slice(&data[..n]);
                last.len += n;
                data = &data[n..];
                remaining -= n;
            }
        }
    }

    /// True when one more index entry (plus the final time entry written at seal) would
    /// exceed `segment_index_bytes`.
    pub fn index_full(&self, segment_index_bytes: u64) -> bool {
        self.index.offset_index_bytes() + OFFSET_INDEX_ENTRY_BYTES > segment_index_bytes
            || self.index.time_index_bytes() + 2 * TIME_INDEX_ENTRY_BYTES > segment_index_bytes
    }

    /// Takes every filled chunk for one group write. Later appends start a new chunk with the
    /// partial block at the end of this one.
    pub fn take_write_job(&mut self) -> Option<WriteJob> {
        let last = self.pending.back()?;
        let (end_next_offset, batch_count) = (last.next_offset, self.pending.len());
        let end_max_timestamp = self
            .pending
            .iter()
            .fold(self.written_max_timestamp, |m, pb| m.max(pb.max_timestamp));
        let chunks: Vec<Chunk> = self.chunks.drain(..).collect();
        let Some(end) = chunks.last() else {
            unreachable!("pending data has chunks")
        };
        let end_size = end.file_pos + end.len as u64;
        assert_eq!(end_size, self.size);
        let keep = (end_size - align_down(end_size)) as usize;
        let start_tail = std::mem::replace(
            &mut self.tail_block,
            end.buf.as_bytes()[end.len - keep..end.len].to_vec(),
        );
        Some(WriteJob {
            chunks,
            start_tail,
            batch_count,
            end_size,
            end_next_offset,
            end_max_timestamp,
        })
    }

    /// The first `batch_count` pending batches (a write job's), for the tail cache.
    pub fn pending_to_cache(&self, batch_count: usize) -> Vec<CacheFill> {
        self.pending
            .iter()
            .take(batch_count)
            .map(|pb| CacheFill {
                base_offset: pb.base_offset,
                last_offset: pb.next_offset - 1,
                bytes: pb.bytes.clone(),
                owned: pb.owned,
                leader_epoch_stamp: pb.leader_epoch_stamp,
            })
            .collect()
    }

    /// Replaces a pending batch's bytes with the log's own stamped copy (no-op if it is gone).
    pub fn set_owned(&mut self, base_offset: i64, bytes: bytes::Bytes) {
        if let Some(pb) = self
            .pending
            .iter_mut()
            .find(|pb| pb.base_offset == base_offset && pb.bytes.len() == bytes.len())
        {
            pb.bytes = bytes;
            pb.owned = true;
            pb.leader_epoch_stamp = None;
        }
    }

    /// Applies a completed write: pops its batches, resolves their tickets, moves the marks.
    pub fn complete_write(&mut self, job: &WriteJob) {
        for _ in 0..job.batch_count {
            let Some(pb) = self.pending.pop_front() else {
                unreachable!("job batches are pending")
            };
            if let Some(t) = pb.ticket {
                t.set(TicketState::Written);
            }
        }
        self.written_size = job.end_size;
        self.written_next_offset = job.end_next_offset;
        self.written_max_timestamp = job.end_max_timestamp;
        self.check_marks();
    }

    /// Discards everything not yet written (a failed write, or truncation): every pending
    /// append is told it was aborted and the write-behind chunks are dropped.
    pub fn discard_pending(&mut self, no_space: bool) {
        for pb in self.pending.drain(..) {
            if let Some(t) = pb.ticket {
                t.set(TicketState::Aborted { no_space });
            }
        }
        self.chunks.clear();
    }

    /// After a failed write: the segment goes back to its written marks. `start_tail` is the
    /// partial block in front of the failed write (`None` if nothing was in flight).
    pub fn abort_pending(&mut self, base_offset: i64, no_space: bool, start_tail: Option<Vec<u8>>) {
        self.discard_pending(no_space);
        if let Some(t) = start_tail {
            self.tail_block = t;
        }
        self.size = self.written_size;
        self.next_offset = self.written_next_offset;
        self.max_timestamp = self.written_max_timestamp;
        self.index
            .truncate(self.written_size, self.written_next_offset - base_offset);
        let last_pos = self
            .index
            .offsets
            .last()
            .map_or(0, |e| u64::from(e.position));
        self.bytes_since_index = self.size - last_pos;
        assert_eq!(
            self.tail_block.len() as u64,
            self.size - align_down(self.size)
        );
        self.check_marks();
    }
}

fn new_chunk(file_pos: u64, min_bytes: usize) -> Chunk {
    assert_eq!(file_pos % DMA_ALIGNMENT_BYTES, 0);
    // A power of two: glommio's arena is a buddy allocator, so the block is that size anyway.
    let cap = align_up(min_bytes as u64)
        .max(WRITE_BEHIND_CHUNK_BYTES as u64)
        .next_power_of_two() as usize;
    Chunk {
        buf: glommio::allocate_dma_buffer(cap),
        file_pos,
        len: 0,
    }
}

/// Writes a group's chunks (disjoint aligned ranges, so concurrently), zero-padding the last
/// block of each; resolves when every O_DIRECT write completed.
pub(crate) async fn write_job(
    file: &dma::SharedFile,
    path: &Path,
    job: WriteJob,
) -> Result<WriteJob> {
    let mut writes = Vec::with_capacity(job.chunks.len());
    let WriteJob {
        chunks,
        start_tail,
        batch_count,
        end_size,
        end_next_offset,
        end_max_timestamp,
    } = job;
    for mut c in chunks {
        let padded = align_up(c.len as u64) as usize;
        c.buf.as_bytes_mut()[c.len..padded].fill(0);
        c.buf.trim_to_size(padded);
        writes.push(dma::write_buffer(file, path, c.buf, c.file_pos));
    }
    dma::join_all(writes)
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>()?;
    Ok(WriteJob {
        chunks: Vec::new(),
        start_tail,
        batch_count,
        end_size,
        end_next_offset,
        end_max_timestamp,
    })
}

//! Direct-I/O reads of one segment's written bytes (owning shard). The result is a glommio
//! `ReadResult` slice of the DMA buffer: it goes to the socket with no further user-space copy.

use std::path::Path;

use glommio::io::ReadResult;

use crate::batch::{RecordBatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2};
use crate::dma::{self, SharedFile};
use crate::error::{CorruptKind, Result, StorageError};
use crate::limits::{BATCH_BYTES_MAX, READ_WINDOW_BYTES_MIN};

/// What a header tells a reader (no CRC check: the bytes were verified before they were written,
/// and recovery verifies them again).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peek {
    pub base_offset: i64,
    pub last_offset: i64,
    pub size: usize,
    pub max_timestamp: i64,
}

/// Reads the header at `at`; `None` when fewer than a header's bytes are in `buf`.
pub(crate) fn peek(buf: &[u8], at: usize, file_pos: u64) -> Option<Result<Peek>> {
    let h = RecordBatchHeader::parse(buf.get(at..at + BATCH_HEADER_BYTES)?).ok()?;
    let min = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
    if h.batch_length < min || h.batch_length as usize > BATCH_BYTES_MAX || h.magic != MAGIC_V2 {
        return Some(Err(StorageError::CorruptBatch {
            position: (file_pos + at as u64) as usize,
            kind: CorruptKind::BadLength,
        }));
    }
    Some(Ok(Peek {
        base_offset: h.base_offset,
        last_offset: h.last_offset(),
        size: h.size_bytes(),
        max_timestamp: h.max_timestamp,
    }))
}

/// Where the batch holding (or first following) an offset starts.
pub(crate) struct Located {
    pub window: ReadResult,
    pub window_pos: u64,
    pub at: usize,
    pub peek: Peek,
    /// Max timestamp of the batches skipped on the way.
    pub skipped_max_timestamp: i64,
}

/// Scans forward from `pos` (an index position) to the first batch whose last offset reaches
/// `target`, reading windows of at least `window_hint` bytes. `None` if no such batch lies below
/// `readable_size`.
pub(crate) async fn locate(
    file: &SharedFile,
    path: &Path,
    mut pos: u64,
    readable_size: u64,
    target: i64,
    window_hint: usize,
) -> Result<Option<Located>> {
    let mut skipped_max_timestamp = -1;
    loop {
        if pos >= readable_size {
            return Ok(None);
        }
        let want = (readable_size - pos).min(window_hint.max(READ_WINDOW_BYTES_MIN) as u64);
        let want = dma::buddy_fit_len(pos, want as usize, 0) as u64;
        let window = dma::read(file, path, pos, want as usize).await?;
        if (window.len() as u64) < want {
            return Err(StorageError::io(
                "reading",
                path,
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        let mut at = 0usize;
        loop {
            if pos + at as u64 >= readable_size {
                return Ok(None);
            }
            match peek(&window, at, pos) {
                None => break,
                Some(Err(e)) => return Err(e),
                Some(Ok(p)) if p.last_offset >= target => {
                    return Ok(Some(Located {
                        window,
                        window_pos: pos,
                        at,
                        peek: p,
                        skipped_max_timestamp,
                    }));
                }
                Some(Ok(p)) => {
                    skipped_max_timestamp = skipped_max_timestamp.max(p.max_timestamp);
                    at += p.size;
                }
            }
        }
        pos += at as u64;
    }
}

/// Whole batches from `at` in `buf`: the first always (if wholly present), then while within
/// `max_bytes`, below `upper_bound` and below `limit` bytes of `buf`. `None` if the first batch
/// is not wholly in `buf`.
fn collect(
    buf: &[u8],
    at: usize,
    limit: usize,
    max_bytes: usize,
    upper_bound: i64,
) -> Option<(usize, i64)> {
    let end = buf.len().min(limit);
    let mut total = 0usize;
    let mut next_offset = 0;
    while let Some(Ok(p)) = peek(&buf[..end], at + total, 0) {
        let fits = at + total + p.size <= end;
        if total == 0 && !fits {
            return None;
        }
        if !fits || (total > 0 && (p.base_offset >= upper_bound || total + p.size > max_bytes)) {
            break;
        }
        total += p.size;
        next_offset = p.last_offset + 1;
    }
    if total == 0 {
        return None;
    }
    Some((total, next_offset))
}

fn slice(buf: &ReadResult, at: usize, len: usize, path: &Path) -> Result<ReadResult> {
    ReadResult::slice(buf, at, len)
        .ok_or_else(|| StorageError::io("slicing", path, std::io::ErrorKind::InvalidData.into()))
}

/// A disk read: bytes of whole batches and the offset after them.
pub(crate) struct DiskRead {
    pub chunk: ReadResult,
    pub next_offset: i64,
    /// File position after `chunk`.
    pub end_pos: u64,
}

/// Reads whole batches starting with the one holding `from_offset` (Kafka fetch semantics, the
/// first batch whole even beyond `max_bytes`). `None` if the segment has no batch at or after
/// `from_offset` below `readable_size`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read_batches(
    file: &SharedFile,
    path: &Path,
    start_pos: u64,
    readable_size: u64,
    from_offset: i64,
    max_bytes: usize,
    upper_bound: i64,
    index_interval_bytes: u32,
) -> Result<Option<DiskRead>> {
    let hint = max_bytes
        .saturating_add(index_interval_bytes as usize)
        .min(BATCH_BYTES_MAX);
    let Some(loc) = locate(file, path, start_pos, readable_size, from_offset, hint).await? else {
        return Ok(None);
    };
    if loc.peek.base_offset >= upper_bound {
        return Ok(Some(DiskRead {
            chunk: ReadResult::default(),
            next_offset: from_offset,
            end_pos: loc.window_pos + loc.at as u64,
        }));
    }
    let limit = (readable_size - loc.window_pos) as usize;
    if let Some((len, next_offset)) = collect(&loc.window, loc.at, limit, max_bytes, upper_bound) {
        let chunk = slice(&loc.window, loc.at, len, path)?;
        let end_pos = loc.window_pos + (loc.at + len) as u64;
        return Ok(Some(DiskRead {
            chunk,
            next_offset,
            end_pos,
        }));
    }
    // The first batch runs past the window: read again from its start.
    let start = loc.window_pos + loc.at as u64;
    let want = (readable_size - start).min(loc.peek.size.max(max_bytes) as u64) as usize;
    let want = dma::buddy_fit_len(start, want, loc.peek.size);
    let buf = dma::read(file, path, start, want).await?;
    match collect(&buf, 0, buf.len(), max_bytes, upper_bound) {
        Some((len, next_offset)) => Ok(Some(DiskRead {
            chunk: slice(&buf, 0, len, path)?,
            next_offset,
            end_pos: start + len as u64,
        })),
        None => Err(StorageError::io(
            "reading",
            path,
            std::io::ErrorKind::UnexpectedEof.into(),
        )),
    }
}

/// Whole batches from the start of `buf`, read at file position `pos` (a window read ahead),
/// as `read_batches` would return them for `from_offset`: the window starts where a read that
/// ended at `from_offset` stopped, so its first batch is the one holding or following it (after
/// a compacted gap). `None` unless that batch reaches `from_offset`, lies below `upper_bound`
/// and is wholly in `buf`.
pub(crate) fn read_window(
    buf: &ReadResult,
    pos: u64,
    from_offset: i64,
    max_bytes: usize,
    upper_bound: i64,
    path: &Path,
) -> Option<DiskRead> {
    let first = peek(buf, 0, pos)?.ok()?;
    if first.last_offset < from_offset || first.base_offset >= upper_bound {
        return None;
    }
    let (len, next_offset) = collect(buf, 0, buf.len(), max_bytes, upper_bound)?;
    Some(DiskRead {
        chunk: slice(buf, 0, len, path).ok()?,
        next_offset,
        end_pos: pos + len as u64,
    })
}

/// Size of the largest whole batch in `buf` (batches from its start).
pub(crate) fn largest_batch(buf: &[u8]) -> usize {
    let mut at = 0;
    let mut largest = 0;
    while let Some(Ok(p)) = peek(buf, at, 0) {
        largest = largest.max(p.size);
        at += p.size;
    }
    largest
}

/// Reads the partial block in front of `size` (the writer's `tail_block`).
pub(crate) async fn read_tail_block(file: &SharedFile, path: &Path, size: u64) -> Result<Vec<u8>> {
    let start = dma::align_down(size);
    let len = (size - start) as usize;
    if len == 0 {
        return Ok(Vec::new());
    }
    let buf = dma::read(file, path, start, len).await?;
    if buf.len() != len {
        return Err(StorageError::io(
            "reading",
            path,
            std::io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    Ok(buf.to_vec())
}

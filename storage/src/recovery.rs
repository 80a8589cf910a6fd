//! Opening a segment from disk, and crash recovery (owning shard, at `PartitionLog::open`).
//!
//! After an unclean shutdown the active segment is scanned from its start: every batch's
//! length, magic, CRC-32C and offset order are checked again (they were checked on append: the
//! pair of that assert), the first bad byte ends the log (a torn or corrupt tail, or the zero
//! padding of the last O_DIRECT block) and the file is truncated there; indexes are rebuilt.
//! Sealed segments are trusted when their index files are present and consistent, since a seal
//! writes them only after fdatasync and truncation to the exact size.

use std::path::Path;

use crate::batch::{check_batch, LOG_OVERHEAD_BYTES};
use crate::dma::{self, SharedFile};
use crate::error::{Result, StorageError};
use crate::limits::RECOVERY_CHUNK_BYTES;
use crate::segment::index::SegmentIndex;
use crate::segment::reader::{peek, read_tail_block};
use crate::segment::{Segment, SegmentState};

/// What a scan of a segment file found.
#[derive(Debug)]
pub(crate) struct ScanResult {
    pub valid_size: u64,
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub first_max_timestamp: Option<i64>,
    pub index: SegmentIndex,
    pub bytes_since_index: u64,
    /// (leader epoch, base offset) at every change of epoch, in log order.
    pub leader_epochs: Vec<(i32, i64)>,
    pub batches: u64,
}

/// Scans batches from `start_pos` (0, or the last index entry after a clean shutdown),
/// validating each fully, until the end of the file or the first invalid batch.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn scan(
    file: &SharedFile,
    path: &Path,
    base_offset: i64,
    start_pos: u64,
    start_next_offset: i64,
    file_size: u64,
    mut index: SegmentIndex,
    index_interval_bytes: u32,
) -> Result<ScanResult> {
    let mut r = ScanResult {
        valid_size: start_pos,
        next_offset: start_next_offset,
        max_timestamp: index.times.last().map_or(-1, |t| t.max_timestamp_so_far),
        first_max_timestamp: None,
        index: SegmentIndex::default(),
        bytes_since_index: 0,
        leader_epochs: Vec::new(),
        batches: 0,
    };
    let mut pos = start_pos;
    let mut want = RECOVERY_CHUNK_BYTES;
    let mut last_epoch = None;
    'chunks: while pos < file_size {
        let len = (file_size - pos).min(want as u64) as usize;
        let chunk = dma::read(file, path, pos, len).await?;
        want = RECOVERY_CHUNK_BYTES;
        let mut at = 0usize;
        while at < chunk.len() {
            let h = match check_batch(&chunk, at, false) {
                Ok(h) => h,
                Err(StorageError::TruncatedBatch { needed_bytes, .. })
                    if pos + (at + needed_bytes) as u64 <= file_size =>
                {
                    // The batch runs past this chunk: read again from its start.
                    want = want.max(needed_bytes.max(LOG_OVERHEAD_BYTES));
                    pos += at as u64;
                    continue 'chunks;
                }
                Err(_) => break 'chunks,
            };
            let relative_last = h.last_offset() - base_offset;
            if h.base_offset < r.next_offset || relative_last > i64::from(u32::MAX) {
                break 'chunks;
            }
            let position = pos + at as u64;
            if r.first_max_timestamp.is_none() && position == 0 {
                r.first_max_timestamp = Some(h.max_timestamp);
            }
            r.max_timestamp = r.max_timestamp.max(h.max_timestamp);
            if r.bytes_since_index > u64::from(index_interval_bytes) {
                index.push(relative_last as u32, position as u32, r.max_timestamp);
                r.bytes_since_index = 0;
            }
            r.bytes_since_index += h.size_bytes() as u64;
            if last_epoch != Some(h.partition_leader_epoch) {
                last_epoch = Some(h.partition_leader_epoch);
                r.leader_epochs
                    .push((h.partition_leader_epoch, h.base_offset));
            }
            r.next_offset = h.last_offset() + 1;
            r.batches += 1;
            at += h.size_bytes();
            r.valid_size = pos + at as u64;
        }
        if at == 0 {
            break;
        }
        pos += at as u64;
    }
    r.index = index;
    Ok(r)
}

/// A segment loaded by `open`, with what recovery learnt.
pub(crate) struct LoadedSegment {
    pub segment: Segment,
    pub leader_epochs: Vec<(i32, i64)>,
    /// Recovery cut bytes off this segment.
    pub truncated: bool,
}

fn file_mtime_ms(path: &Path) -> i64 {
    // Blocking stat, once per segment at startup only.
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

async fn load_index(seg: &Segment, file_size: u64) -> Result<Option<SegmentIndex>> {
    let Some(offsets) = dma::read_small_file(&seg.index_path).await? else {
        return Ok(None);
    };
    let Some(times) = dma::read_small_file(&seg.time_index_path).await? else {
        return Ok(None);
    };
    Ok(SegmentIndex::decode(&offsets, &times, file_size))
}

/// Opens one segment file. `next_base` is the next segment's base offset (None for the last).
/// `trust_active_index`: a clean shutdown wrote the active segment's index too.
pub(crate) async fn load_segment(
    dir: &Path,
    base_offset: i64,
    next_base: Option<i64>,
    trust_active_index: bool,
    index_interval_bytes: u32,
) -> Result<LoadedSegment> {
    let mut seg = Segment::new_empty(
        dir,
        base_offset,
        file_mtime_ms(&dir.join(crate::segment::file_name(base_offset, "log"))),
    );
    let file = std::rc::Rc::new(dma::open_rw(&seg.log_path, false).await?);
    let path = seg.log_path.clone();
    let file_size = file
        .file_size()
        .await
        .map_err(|e| dma::err("stat", &path, e))?;
    let is_last = next_base.is_none();
    let index = if is_last && !trust_active_index {
        None
    } else {
        load_index(&seg, file_size).await?
    };

    let mut leader_epochs = Vec::new();
    let mut truncated = false;
    let st: &mut SegmentState = seg.st.get_mut();
    match (index, next_base) {
        (Some(index), Some(next)) => {
            // A sealed segment whose seal completed.
            st.max_timestamp = index.times.last().map_or(-1, |t| t.max_timestamp_so_far);
            st.next_offset = next;
            st.size = file_size;
            st.index = index;
            st.sealed = true;
            st.seal_done = true;
        }
        (index, _) => {
            let (start_pos, start_next, index) = match index {
                Some(idx) => {
                    let (pos, next) = idx
                        .offsets
                        .last()
                        .map_or((0, base_offset), |e| (u64::from(e.position), base_offset));
                    (pos, next, idx)
                }
                None => (0, base_offset, SegmentIndex::default()),
            };
            let r = scan(
                &file,
                &path,
                base_offset,
                start_pos,
                start_next,
                file_size,
                index,
                index_interval_bytes,
            )
            .await?;
            if r.valid_size < file_size {
                file.truncate(r.valid_size)
                    .await
                    .map_err(|e| dma::err("truncating", &path, e))?;
                truncated = true;
            }
            st.size = r.valid_size;
            st.next_offset = r.next_offset;
            st.max_timestamp = r.max_timestamp;
            st.index = r.index;
            st.bytes_since_index = r.bytes_since_index;
            leader_epochs = r.leader_epochs;
            st.roll_timestamp_ms = match r.first_max_timestamp {
                Some(ts) if ts >= 0 => ts,
                Some(_) => st.roll_timestamp_ms,
                None => first_batch_max_timestamp(&file, &path, file_size)
                    .await?
                    .unwrap_or(st.roll_timestamp_ms),
            };
            if let Some(next) = next_base {
                st.sealed = true;
                if !truncated && r.next_offset < next {
                    // A gap left by compaction (its last records were removed): the segment
                    // still ends where the next one begins.
                    st.next_offset = next;
                }
            }
        }
    }
    st.written_size = st.size;
    st.synced_size = st.size;
    st.allocated_size = st.size;
    st.written_next_offset = st.next_offset;
    st.written_max_timestamp = st.max_timestamp;
    if !st.sealed {
        st.tail_block = read_tail_block(&file, &path, st.size).await?;
    }
    st.check_marks();
    *seg.file.get_mut() = Some(file);
    Ok(LoadedSegment {
        segment: seg,
        leader_epochs,
        truncated,
    })
}

async fn first_batch_max_timestamp(
    file: &SharedFile,
    path: &Path,
    file_size: u64,
) -> Result<Option<i64>> {
    if file_size == 0 {
        return Ok(None);
    }
    let buf = dma::read(
        file,
        path,
        0,
        crate::batch::BATCH_HEADER_BYTES.min(file_size as usize),
    )
    .await?;
    Ok(match peek(&buf, 0, 0) {
        Some(Ok(p)) if p.max_timestamp >= 0 => Some(p.max_timestamp),
        _ => None,
    })
}

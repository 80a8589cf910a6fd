//! Producer state across restarts and truncations (owning shard): snapshot files
//! `<end offset, 20 digits>.snapshot`, loading the newest usable one, and replaying the batch
//! headers after it (headers only: no record is decoded and no CRC recomputed, the batches were
//! verified on append and by recovery).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::batch::{RecordBatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2};
use crate::dma::{self, SharedFile};
use crate::error::{CorruptKind, Result, StorageError};
use crate::limits::{BATCH_BYTES_MAX, RECOVERY_CHUNK_BYTES};
use crate::producer_state::ProducerState;
use crate::segment::{file_name, Segment};

pub(crate) const SNAPSHOT_EXTENSION: &str = "snapshot";

pub(crate) fn snapshot_path(dir: &Path, end_offset: i64) -> PathBuf {
    dir.join(file_name(end_offset, SNAPSHOT_EXTENSION))
}

/// At open: the newest snapshot in [log start, log end] that reads back intact, then every
/// batch after it. Snapshots past the log end (their batches are gone) and damaged ones are
/// deleted; an older snapshot, or a replay from the log start, takes a damaged one's place.
/// Returns the state and the snapshot files kept (`found` is sorted ascending).
pub(super) async fn load(
    dir: &Path,
    segments: &[Rc<Segment>],
    log_start_offset: i64,
    log_end_offset: i64,
    found: &[i64],
) -> Result<(ProducerState, BTreeSet<i64>)> {
    let mut kept = BTreeSet::new();
    let mut chosen = None;
    for &offset in found.iter().rev() {
        if offset > log_end_offset {
            dma::remove_if_exists(&snapshot_path(dir, offset)).await?;
            continue;
        }
        // Below the log start a snapshot misses the deleted batches' successors; Kafka does not
        // use those either (their producers become unknown, which KIP-360 allows).
        if chosen.is_none() && offset >= log_start_offset {
            match read_snapshot(dir, offset).await? {
                Some(state) => chosen = Some((offset, state)),
                None => {
                    dma::remove_if_exists(&snapshot_path(dir, offset)).await?;
                    continue;
                }
            }
        }
        kept.insert(offset);
    }
    let (from, mut state) = chosen.unwrap_or((log_start_offset, ProducerState::default()));
    replay(segments, from, log_end_offset, &mut state).await?;
    Ok((state, kept))
}

/// The producer state of the log cut at `end_offset` (a truncation): the newest usable snapshot
/// at or below it, then the batches up to it. `segments` must hold [log start, end_offset)
/// written.
pub(super) async fn rebuild(
    dir: &Path,
    segments: &[Rc<Segment>],
    snapshots: &BTreeSet<i64>,
    log_start_offset: i64,
    end_offset: i64,
) -> Result<ProducerState> {
    let candidates: Vec<i64> = snapshots
        .range(log_start_offset..=end_offset)
        .rev()
        .copied()
        .collect();
    for offset in candidates {
        if let Some(mut state) = read_snapshot(dir, offset).await? {
            replay(segments, offset, end_offset, &mut state).await?;
            return Ok(state);
        }
    }
    let mut state = ProducerState::default();
    replay(segments, log_start_offset, end_offset, &mut state).await?;
    Ok(state)
}

/// A snapshot file's state, or `None` when it is missing, torn or damaged.
async fn read_snapshot(dir: &Path, end_offset: i64) -> Result<Option<ProducerState>> {
    let Some(data) = dma::read_small_file(&snapshot_path(dir, end_offset)).await? else {
        return Ok(None);
    };
    Ok(match ProducerState::decode_snapshot(&data) {
        Ok((offset, state)) if offset == end_offset => Some(state),
        _ => None,
    })
}

pub(super) async fn write_snapshot(dir: &Path, end_offset: i64, bytes: &[u8]) -> Result<()> {
    dma::write_small_file_atomic(&snapshot_path(dir, end_offset), bytes).await
}

pub(super) async fn remove_snapshots(dir: &Path, offsets: &[i64]) -> Result<()> {
    for &offset in offsets {
        dma::remove_if_exists(&snapshot_path(dir, offset)).await?;
    }
    Ok(())
}

/// Applies every batch in [from, to) of `segments` (in order) to `state`.
async fn replay(
    segments: &[Rc<Segment>],
    from: i64,
    to: i64,
    state: &mut ProducerState,
) -> Result<()> {
    for (i, seg) in segments.iter().enumerate() {
        let seg_end = segments.get(i + 1).map_or(i64::MAX, |n| n.base_offset);
        if seg_end <= from {
            continue;
        }
        if seg.base_offset >= to {
            break;
        }
        let Some(file) = seg.file() else {
            continue; // never written
        };
        let (start_pos, readable) = {
            let s = seg.st.borrow();
            let relative = u32::try_from(from.max(seg.base_offset) - seg.base_offset);
            let pos = s.index.position_for(relative.unwrap_or(u32::MAX));
            (u64::from(pos), s.written_size)
        };
        replay_segment(&file, &seg.log_path, start_pos, readable, from, to, state).await?;
        glommio::executor().yield_if_needed().await;
    }
    Ok(())
}

/// Walks batch headers from `pos` to `readable`, skipping bodies: a batch larger than a read
/// chunk costs one read of its header.
async fn replay_segment(
    file: &SharedFile,
    path: &Path,
    mut pos: u64,
    readable: u64,
    from: i64,
    to: i64,
    state: &mut ProducerState,
) -> Result<()> {
    while pos < readable {
        let len = (readable - pos).min(RECOVERY_CHUNK_BYTES as u64) as usize;
        let chunk = dma::read(file, path, pos, len).await?;
        let mut at = 0usize;
        while let Some(head) = chunk.get(at..at + BATCH_HEADER_BYTES) {
            let h = RecordBatchHeader::parse(head)?;
            let min = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
            if h.batch_length < min
                || h.batch_length as usize > BATCH_BYTES_MAX
                || h.magic != MAGIC_V2
            {
                return Err(StorageError::CorruptBatch {
                    position: (pos + at as u64) as usize,
                    kind: CorruptKind::BadLength,
                });
            }
            if h.base_offset >= to {
                return Ok(());
            }
            if h.base_offset >= from {
                state.apply(&h, h.base_offset, h.last_offset(), None);
            }
            at += h.size_bytes();
            if pos + at as u64 >= readable {
                break;
            }
        }
        if at == 0 {
            // Fewer bytes than a header before the written end: recovery would have cut this.
            return Err(StorageError::TruncatedBatch {
                position: pos as usize,
                needed_bytes: BATCH_HEADER_BYTES,
                available_bytes: chunk.len(),
            });
        }
        pos += at as u64;
    }
    Ok(())
}

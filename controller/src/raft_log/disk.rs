//! `DiskLog`: the durable half of the Raft log (controller shard). Entries live in a
//! skein-storage `PartitionLog` where offset N holds Raft index N, one RecordBatch of one record
//! per entry (the record's value is `codec::encode_entry`), appended with the follower path so
//! storage checks every base offset against its log end (asserts in pairs), with
//! `FlushPolicy::Fsync`: an append resolves only once fdatasync covers it. HardState/ConfState
//! and the latest snapshot are the two files of `files.rs`.
//!
//! The partition log's high watermark is the first index the latest snapshot does not cover;
//! retention (size 0, time off) deletes whole segments below it, which is how the log is
//! compacted. Storage has no "delete below offset" call, so this is the workaround.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use skein_storage::batch::{build_batch, Compression, RecordBatchHeader, BATCH_HEADER_BYTES};
use skein_storage::{CleanupPolicy, FlushPolicy, LogConfig, PartitionLog, TailCache};

use super::files::{self, RAFT_STATE_FILE, SNAPSHOT_FILE};
use crate::codec;
use crate::error::{ControllerError, Result};
use crate::limits::{ENTRY_BYTES_MAX, ENTRY_FRAME_OVERHEAD_BYTES};

/// The partition log's directory inside the controller's data dir.
const LOG_DIR: &str = "log";
/// Bytes asked for per read while loading the log at startup.
const LOAD_READ_BYTES: usize = 1 << 20;

/// What `DiskLog::open` found: enough to build the `MemLog` and replay the image.
pub(crate) struct Recovered {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    /// The latest snapshot (index 0 and empty data when there is none).
    pub snapshot: Snapshot,
    /// Every entry after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}

pub(crate) struct DiskLog {
    dir: PathBuf,
    log: PartitionLog,
}

fn log_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        // Segments roll by size only; retention deletes by the high watermark alone.
        segment_ms: i64::MAX,
        retention_bytes: 0,
        retention_ms: -1,
        flush: FlushPolicy::Fsync,
        cleanup_policy: CleanupPolicy::Delete,
        max_message_bytes: (ENTRY_BYTES_MAX + ENTRY_FRAME_OVERHEAD_BYTES) as u32,
        ..LogConfig::default()
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn offset(index: u64) -> i64 {
    // Raft indexes count entries from 1; 2^63 of them is beyond any log.
    i64::try_from(index).unwrap_or(i64::MAX)
}

/// One entry as one RecordBatch with one record.
fn frame(entry: &Entry, timestamp_ms: i64) -> Result<Vec<u8>> {
    let value = codec::encode_entry(entry)?;
    Ok(build_batch(offset(entry.index), 1, timestamp_ms, &value))
}

/// A zigzag varint of Kafka's record format; `None` if it runs off the end or past 10 bytes.
fn varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut v: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    None
}

/// The value of the only record of a batch that `frame` built.
fn record_value(batch: &[u8]) -> Option<&[u8]> {
    let mut pos = BATCH_HEADER_BYTES;
    let _record_len = varlong(batch, &mut pos)?;
    pos += 1; // attributes
    let _timestamp_delta = varlong(batch, &mut pos)?;
    let offset_delta = varlong(batch, &mut pos)?;
    let key_len = varlong(batch, &mut pos)?;
    if offset_delta != 0 || key_len != -1 {
        return None;
    }
    let value_len = usize::try_from(varlong(batch, &mut pos)?).ok()?;
    batch.get(pos..pos.checked_add(value_len)?)
}

/// Decodes one stored batch into its entry, checking that it sits at its own index.
fn unframe(batch: &[u8], header: &RecordBatchHeader, path: &Path) -> Result<Entry> {
    let corrupt = |reason: String| ControllerError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if header.record_count != 1
        || header.last_offset_delta != 0
        || header.compression() != Compression::None
    {
        return Err(corrupt(format!(
            "batch at offset {} is not one uncompressed record",
            header.base_offset
        )));
    }
    let value = record_value(batch).ok_or_else(|| {
        corrupt(format!(
            "batch at offset {} has no readable record",
            header.base_offset
        ))
    })?;
    let entry = codec::decode_entry(value).map_err(ControllerError::decode("log entry"))?;
    if offset(entry.index) != header.base_offset {
        return Err(corrupt(format!(
            "entry {} stored at offset {}",
            entry.index, header.base_offset
        )));
    }
    Ok(entry)
}

impl DiskLog {
    /// Opens (creating) the controller's log in `dir` and recovers its state. `initial_voters`
    /// is the ConfState of a group that has never run here.
    pub async fn open(
        dir: &Path,
        segment_bytes: u64,
        initial_voters: ConfState,
    ) -> Result<(DiskLog, Recovered)> {
        std::fs::create_dir_all(dir).map_err(|e| ControllerError::Io {
            op: "creating",
            path: dir.to_path_buf(),
            source: e,
        })?;
        let state = match files::read_file(dir, RAFT_STATE_FILE).await? {
            Some(b) => Some(files::decode_raft_state(&b, &dir.join(RAFT_STATE_FILE))?),
            None => None,
        };
        let snapshot = match files::read_file(dir, SNAPSHOT_FILE).await? {
            Some(b) => files::decode_snapshot(&b, &dir.join(SNAPSHOT_FILE))?,
            None => Snapshot::default(),
        };
        let log_dir = dir.join(LOG_DIR);
        // The controller never reads recent entries back from storage: they are in `MemLog`.
        let cache = Rc::new(TailCache::new(0));
        let log = PartitionLog::open(&log_dir, log_config(segment_bytes), cache)
            .await
            .map_err(ControllerError::storage("open"))?;
        let disk = DiskLog {
            dir: dir.to_path_buf(),
            log,
        };
        let entries = disk.load_after(&snapshot).await?;
        let fresh = state.is_none();
        let (mut hard_state, mut conf_state) =
            state.unwrap_or((HardState::default(), initial_voters));
        let meta = snapshot.get_metadata();
        if meta.index > 0 {
            // A snapshot is newer than any ConfState it covers, and it is committed.
            conf_state = meta.get_conf_state().clone();
            hard_state.commit = hard_state.commit.max(meta.index);
            hard_state.term = hard_state.term.max(meta.term);
        }
        let last_index = meta.index + entries.len() as u64;
        if hard_state.commit > last_index {
            return Err(ControllerError::Corrupt {
                path: disk.log.dir().to_path_buf(),
                reason: format!(
                    "commit index {} is past the last stored entry {last_index}",
                    hard_state.commit
                ),
            });
        }
        if fresh {
            disk.save_state(&hard_state, &conf_state).await?;
        }
        disk.compact(meta.index).await?;
        let recovered = Recovered {
            hard_state,
            conf_state,
            snapshot,
            entries,
        };
        Ok((disk, recovered))
    }

    /// Loads the entries after the snapshot, first making the log start right after it when
    /// the stored entries do not continue it.
    async fn load_after(&self, snapshot: &Snapshot) -> Result<Vec<Entry>> {
        let meta = snapshot.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let next = offset(index + 1);
        let (start, end) = (self.log.log_start_offset(), self.log.log_end_offset());
        if start > next {
            // Entries after the snapshot are gone: Raft may have counted them, so this is not
            // something to paper over.
            return Err(ControllerError::Corrupt {
                path: self.log.dir().to_path_buf(),
                reason: format!("log starts at {start}, after the snapshot's next index {next}"),
            });
        }
        // The log ends before the snapshot: nothing in it is needed.
        let stale = end < next;
        // The entry at the snapshot's index tells whether the suffix shares the snapshot's
        // history (after a crash between installing a received snapshot and restarting the log).
        let diverged = index > 0
            && start <= offset(index)
            && end > next
            && self
                .read_entries(offset(index), next)
                .await?
                .first()
                .map(|e| e.term)
                != Some(term);
        if stale || diverged {
            if end > start {
                tracing::info!(
                log = %self.log.dir().display(),
                snapshot_index = index,
                stale,
                diverged,
                    "controller log does not continue the snapshot; restarting it after the snapshot"
                );
            }
            self.log
                .truncate_fully_and_start_at(next)
                .await
                .map_err(ControllerError::storage("restart after snapshot"))?;
            return Ok(Vec::new());
        }
        self.read_entries(next, end).await
    }

    /// Entries at offsets [from, to), checked to be contiguous.
    async fn read_entries(&self, from: i64, to: i64) -> Result<Vec<Entry>> {
        let path = self.log.dir().to_path_buf();
        let mut entries = Vec::new();
        let mut at = from;
        while at < to {
            let read = self
                .log
                .read(at, LOAD_READ_BYTES, to)
                .await
                .map_err(ControllerError::storage("read at open"))?;
            if read.chunks.is_empty() {
                break;
            }
            for chunk in &read.chunks {
                let mut pos = 0;
                while pos < chunk.len() {
                    let h = RecordBatchHeader::parse(&chunk[pos..])
                        .map_err(ControllerError::storage("parse at open"))?;
                    let batch = chunk.get(pos..pos + h.size_bytes()).ok_or_else(|| {
                        ControllerError::Corrupt {
                            path: path.clone(),
                            reason: format!("batch at offset {} is cut short", h.base_offset),
                        }
                    })?;
                    pos += h.size_bytes();
                    if h.base_offset < at {
                        continue; // the read started inside an earlier batch's range
                    }
                    let e = unframe(batch, &h, &path)?;
                    if let Some(prev) = entries.last().map(|p: &Entry| (p.index, p.term)) {
                        if e.index != prev.0 + 1 || e.term < prev.1 {
                            return Err(ControllerError::Corrupt {
                                path,
                                reason: format!(
                                    "entry {} (term {}) after {prev:?}",
                                    e.index, e.term
                                ),
                            });
                        }
                    }
                    at = offset(e.index) + 1;
                    entries.push(e);
                }
            }
        }
        if at != to {
            return Err(ControllerError::Corrupt {
                path,
                reason: format!("entries end at {at}, the log at {to}"),
            });
        }
        Ok(entries)
    }

    /// Makes `entries` durable, replacing any conflicting suffix first.
    pub async fn append(&self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let first_offset = offset(first.index);
        if first_offset < self.log.log_end_offset() {
            self.log
                .truncate_to(first_offset)
                .await
                .map_err(ControllerError::storage("truncate a conflicting suffix"))?;
        }
        let now = wall_clock_ms();
        let mut buf = Vec::new();
        for e in entries {
            buf.extend_from_slice(&frame(e, now)?);
        }
        let info = self
            .log
            .append_replica(Bytes::from(buf))
            .await
            .map_err(ControllerError::storage("append"))?;
        let last = entries.last().map_or(first.index, |e| e.index);
        assert_eq!(info.first_offset, first_offset);
        assert_eq!(info.last_offset, offset(last));
        Ok(())
    }

    pub async fn save_state(&self, hs: &HardState, cs: &ConfState) -> Result<()> {
        let buf = files::encode_raft_state(hs, cs)?;
        files::write_atomic(&self.dir, RAFT_STATE_FILE, &buf).await
    }

    /// Writes the snapshot file. The caller then compacts (own snapshot) or restarts the log
    /// after it (a snapshot received from the leader).
    pub async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let buf = files::encode_snapshot(snapshot)?;
        files::write_atomic(&self.dir, SNAPSHOT_FILE, &buf).await
    }

    /// Lets retention delete whole segments of entries the snapshot at `index` covers.
    pub async fn compact(&self, index: u64) -> Result<()> {
        let first_kept = offset(index + 1);
        if first_kept > self.log.high_watermark() {
            self.log.set_high_watermark(first_kept);
        }
        let _ = self
            .log
            .enforce_retention(wall_clock_ms())
            .await
            .map_err(ControllerError::storage("compact"))?;
        Ok(())
    }

    /// After installing a received snapshot at `index`: the log restarts right after it.
    pub async fn restart_after(&self, index: u64) -> Result<()> {
        self.log
            .truncate_fully_and_start_at(offset(index + 1))
            .await
            .map_err(ControllerError::storage("restart after snapshot"))
    }

    #[cfg(test)]
    pub fn segment_count(&self) -> usize {
        self.log.segment_count()
    }

    #[cfg(test)]
    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    /// Clean shutdown: everything written and synced, and the next open skips recovery.
    pub async fn close(self) -> Result<()> {
        self.log
            .close()
            .await
            .map_err(ControllerError::storage("close"))
    }
}

#[cfg(test)]
mod tests;

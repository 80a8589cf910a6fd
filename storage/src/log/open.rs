//! Opening a partition directory: listing segments, recovery, checkpoints (owning shard).

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use glommio::sync::Semaphore;

use super::{producers, wall_clock_ms, Inner, LogState};
use crate::checkpoint::{self, CLEAN_SHUTDOWN_FILE};
use crate::config::LogConfig;
use crate::dma;
use crate::error::{Result, StorageError};
use crate::recovery::load_segment;
use crate::segment::{parse_file_name, parse_log_file_name, Segment};
use crate::tail_cache::TailCache;

/// Lists segment base offsets and producer snapshot offsets (both sorted), removing leftovers
/// of interrupted operations (temp files and index files whose log is gone). Directory listing
/// is a blocking call, once at startup.
async fn list_segments(dir: &Path) -> Result<(Vec<i64>, Vec<i64>)> {
    let io_err = |e| StorageError::io("listing", dir, e);
    let mut bases = Vec::new();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    let mut snapshots = Vec::new();
    for name in &names {
        if let Some(base) = parse_log_file_name(name) {
            bases.push(base);
        }
        if let Some(end) = parse_file_name(name, producers::SNAPSHOT_EXTENSION) {
            snapshots.push(end);
        }
    }
    for name in &names {
        let orphan_index = [".index", ".timeindex"].iter().any(|ext| {
            name.strip_suffix(ext).is_some_and(|stem| {
                parse_log_file_name(&format!("{stem}.log")).is_some_and(|b| !bases.contains(&b))
            })
        });
        if name.ends_with(".tmp") || orphan_index {
            dma::remove_if_exists(&dir.join(name)).await?;
        }
    }
    bases.sort_unstable();
    snapshots.sort_unstable();
    Ok((bases, snapshots))
}

pub(super) async fn open(dir: &Path, config: LogConfig, cache: Rc<TailCache>) -> Result<Inner> {
    config.validate()?;
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io("creating", dir, e))?;
    dma::probe_device(dir).await?;
    let marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let clean = marker.exists();
    super::compaction::recover_interrupted(dir).await?;
    let (mut bases, snapshots) = list_segments(dir).await?;
    let now = wall_clock_ms();

    let mut segments: Vec<Rc<Segment>> = Vec::with_capacity(bases.len().max(1));
    let mut scanned_epochs = Vec::new();
    let mut i = 0;
    while i < bases.len() {
        let next_base = bases.get(i + 1).copied();
        let loaded =
            load_segment(dir, bases[i], next_base, clean, config.index_interval_bytes).await?;
        let seg = loaded.segment;
        scanned_epochs.extend(loaded.leader_epochs);
        let next_offset = seg.st.borrow().next_offset;
        if let Some(next) = next_base {
            if !seg.st.borrow().seal_done {
                // Seal interrupted by the crash: finish it now (exact size, index files).
                maintenance_seal_loaded(&seg).await?;
            }
            if loaded.truncated && next_offset != next {
                // Acknowledged bytes of a sealed segment are gone (lost device cache): the
                // later segments would leave a gap, so the log ends here, as Kafka does.
                for &b in &bases[i + 1..] {
                    remove_segment_files(dir, b).await?;
                }
                bases.truncate(i + 1);
                seg.st.borrow_mut().sealed = false;
                seg.st.borrow_mut().seal_done = false;
                let file = seg.file();
                if let Some(f) = file {
                    let size = seg.st.borrow().size;
                    let tail =
                        crate::segment::reader::read_tail_block(&f, &seg.log_path, size).await?;
                    seg.st.borrow_mut().tail_block = tail;
                }
                dma::remove_if_exists(&seg.index_path).await?;
                dma::remove_if_exists(&seg.time_index_path).await?;
            }
        }
        segments.push(Rc::new(seg));
        i += 1;
    }
    let mut dir_changes = 0;
    if segments.is_empty() {
        let seg = Segment::new_empty(dir, 0, now);
        let file = dma::open_rw(&seg.log_path, true).await?;
        *seg.file.borrow_mut() = Some(Rc::new(file));
        segments.push(Rc::new(seg));
        dir_changes = 1;
    }
    if clean {
        // The clean close wrote the active segment's index files; appends make them stale.
        // Once the segment is rolled, index files mean "sealed and final" (recovery trusts
        // them), so stale ones must not outlive this open.
        if let Some(active) = segments.last() {
            dma::remove_if_exists(&active.index_path).await?;
            dma::remove_if_exists(&active.time_index_path).await?;
        }
        // From here on a crash must trigger recovery again.
        dma::remove_if_exists(&marker).await?;
        dma::sync_dir(dir).await?;
    }

    let log_start_offset = segments[0].base_offset;
    let Some(last) = segments.last() else {
        unreachable!("pushed above")
    };
    let log_end_offset = last.st.borrow().next_offset;
    let mut leader_epochs = checkpoint::load_leader_epochs(dir).await?;
    let mut leader_epochs_dirty = leader_epochs.truncate_from_end(log_end_offset);
    leader_epochs_dirty |= leader_epochs.truncate_from_start(log_start_offset);
    for (e, o) in scanned_epochs {
        if o >= log_start_offset && o < log_end_offset {
            leader_epochs_dirty |= leader_epochs.assign(e, o);
        }
    }
    let high_watermark = checkpoint::load_high_watermark(dir)
        .await?
        .unwrap_or(log_start_offset)
        .clamp(log_start_offset, log_end_offset);
    let (producers, producer_snapshots) =
        producers::load(dir, &segments, log_start_offset, log_end_offset, &snapshots).await?;

    let state = LogState {
        segments,
        log_start_offset,
        log_end_offset,
        high_watermark,
        written_offset: log_end_offset,
        synced_offset: log_end_offset,
        leader_epochs,
        leader_epochs_dirty,
        high_watermark_checkpointed: high_watermark,
        unflushed_messages: 0,
        last_flush_ms: now,
        dir_changes,
        dir_synced: 0,
        producers,
        producer_snapshots,
        closed: false,
    };
    state.check_offsets();
    let inner = Inner {
        dir: dir.to_path_buf(),
        cache_slot: cache.register(),
        cache,
        config: RefCell::new(config),
        state: RefCell::new(state),
        write_lock: Semaphore::new(1),
        sync_lock: Semaphore::new(1),
        admin_lock: Semaphore::new(1),
        checkpoint_lock: Semaphore::new(1),
        cleaner: RefCell::new(super::compaction::load_checkpoint(dir).await?),
        read_ahead: RefCell::default(),
        preallocate: !dma::on_tmpfs(dir),
    };
    if inner.state.borrow().leader_epochs_dirty {
        inner.store_leader_epochs().await?;
    }
    Ok(inner)
}

pub(super) async fn remove_segment_files(dir: &Path, base_offset: i64) -> Result<()> {
    for ext in ["log", "index", "timeindex"] {
        dma::remove_if_exists(&dir.join(crate::segment::file_name(base_offset, ext))).await?;
    }
    Ok(())
}

/// Finishes the seal of a segment found sealed-but-unfinished at startup (its producer
/// snapshot, if it was ever taken, died with the process).
async fn maintenance_seal_loaded(seg: &Segment) -> Result<()> {
    super::maintenance::finish_seal(seg).await.map(|_| ())
}

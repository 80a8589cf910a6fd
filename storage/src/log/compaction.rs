//! Log compaction (`cleanup.policy=compact`): Kafka's log cleaner for one partition, run on
//! demand (owning shard). `cleaner` decides what each batch becomes; this module plans a pass
//! over the segments and swaps the cleaned segments in, crash-safely.
//!
//! A pass, under `admin_lock` (never alongside retention or truncation; appends and reads go
//! on):
//! 1. The cleanable segments are the longest prefix of sealed, fully written segments that end
//!    at or below the high watermark and hold no record younger than `min.compaction.lag.ms`;
//!    the active segment never is. Below the cleaner checkpoint (`first dirty offset`) each key
//!    appears at most once already. A pass runs when the dirty bytes exceed
//!    `min.cleanable.dirty.ratio` of the cleanable bytes, or a kept tombstone's delete horizon
//!    has passed.
//! 2. Map: key -> latest offset over the dirty batches, within `CLEANER_OFFSET_MAP_BYTES_MAX`
//!    (when full, the map ends at a batch boundary and the pass cleans up to there).
//! 3. Clean: the segments below the map's end, in groups (Kafka's merge of small segments),
//!    each rewritten into one segment that keeps the first member's base offset. A group takes
//!    the next segment while the cleaned bytes so far plus that segment's size fit
//!    `segment.bytes`, so a first pass over full segments already merges what it emptied.
//!
//! Swapping a group `[B, E)` (members: every segment whose base lies in `[B, E)`, where `E` is
//! the base of the segment after the group):
//! 1. write `<B>.log.cleaned`, cut to size, fdatasync, read it back (every CRC checked);
//! 2. rename it to `<B>-<E>.log.swap` and fsync the directory: the commit point;
//! 3. remove the members' index files and every member log but B's, fsync the directory;
//! 4. rename the swap file over `<B>.log`, fsync the directory; write its index files.
//!
//! `recover_interrupted` runs at open: a `.cleaned` file is deleted (the old segments are all
//! there), a `.swap` file has steps 3-4 redone. So the log is the old or the new version of a
//! group, never a mix, at any crash point. A reader in flight on an old segment keeps its file
//! descriptor, so it reads on from the unlinked file, as with retention.

use std::path::Path;
use std::rc::Rc;

use super::append::run_detached;
use super::maintenance::finish_seal;
use super::open::remove_segment_files;
use super::{closed, Inner, PartitionLog};
use crate::cleaner::{BatchAction, BatchCleaner, OffsetMap, ProducerLastOffsets};
use crate::config::LogConfig;
use crate::dma;
use crate::error::{Result, StorageError};
use crate::limits::CLEANER_OFFSET_MAP_BYTES_MAX;
use crate::recovery::scan;
use crate::segment::index::SegmentIndex;
use crate::segment::rewrite::{BatchCursor, SegmentWriter};
use crate::segment::{file_name, Segment};

/// The cleaner checkpoint of a partition: first dirty offset and earliest tombstone horizon.
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-checkpoint";
const SWAP_SUFFIX: &str = ".log.swap";

/// What the cleaner remembers between passes (per partition).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanerState {
    /// Offsets below are clean: each key appears at most once. `None`: the log start.
    pub first_dirty_offset: Option<i64>,
    /// Earliest delete horizon of a tombstone the cleaner kept: a pass is due from then on.
    pub tombstone_horizon_ms: Option<i64>,
}

/// What `compact` did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactionOutcome {
    /// False when no pass ran: the policy does not compact, nothing is cleanable, or the dirty
    /// share is at most `min.cleanable.dirty.ratio` and no tombstone is due.
    pub cleaned: bool,
    /// Offsets below this are clean after the call (the cleaner checkpoint).
    pub first_dirty_offset: i64,
    /// Segments replaced, and the segments that replaced them.
    pub segments_rewritten: usize,
    pub segments_written: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
}

/// The cleanable prefix of the log, as planned before a pass.
struct Plan {
    /// Each segment with the base offset of the segment after it.
    segments: Vec<(Rc<Segment>, i64)>,
    first_dirty_offset: i64,
}

/// Points of a swap where tests simulate a crash (the pass stops there, leaving its files).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// `.cleaned` written and synced, not renamed.
    Cleaned,
    /// Renamed to `.swap` (committed), nothing removed.
    Swapped,
    /// One later member removed, the others not.
    MemberRemoved,
    /// Renamed over `<base>.log`, index files not written.
    Renamed,
}

#[cfg(test)]
thread_local! {
    pub(crate) static CRASH_AT: std::cell::Cell<Option<CrashPoint>> =
        const { std::cell::Cell::new(None) };
}

#[cfg(test)]
fn crash_point(at: CrashPoint) -> Result<()> {
    if CRASH_AT.with(|c| c.get()) == Some(at) {
        return Err(StorageError::io(
            "simulating a crash",
            format!("{at:?}"),
            std::io::ErrorKind::Interrupted.into(),
        ));
    }
    Ok(())
}

/// `crash_point!(Swapped)`: returns the simulated crash's error in tests, nothing otherwise.
macro_rules! crash_point {
    ($at:ident) => {
        #[cfg(test)]
        crash_point(CrashPoint::$at)?;
    };
}

fn swap_name(base: i64, end: i64) -> String {
    format!("{base:020}-{end:020}{SWAP_SUFFIX}")
}

/// Parses `<20 digits>-<20 digits><suffix>` into (base, end).
fn parse_group_name(name: &str, suffix: &str) -> Option<(i64, i64)> {
    let (base, end) = name.strip_suffix(suffix)?.split_once('-')?;
    let number = |s: &str| {
        (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (base, end) = (number(base)?, number(end)?);
    (base < end).then_some((base, end))
}

/// Finishes or undoes a swap interrupted by a crash (see the module docs). Runs at open, before
/// the segments are listed; directory listing is a blocking call, once at startup.
pub(super) async fn recover_interrupted(dir: &Path) -> Result<()> {
    let io_err = |e| StorageError::io("listing", dir, e);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        if let Some(name) = entry.map_err(io_err)?.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    let mut changed = false;
    for name in &names {
        let cleaned = name.strip_suffix(".cleaned");
        if cleaned.is_some_and(|log| crate::segment::parse_log_file_name(log).is_some()) {
            dma::remove_if_exists(&dir.join(name)).await?;
            changed = true;
        }
    }
    for name in &names {
        let Some((base, end)) = parse_group_name(name, SWAP_SUFFIX) else {
            continue;
        };
        let members: Vec<i64> = names
            .iter()
            .filter_map(|n| crate::segment::parse_log_file_name(n))
            .filter(|b| (base + 1..end).contains(b))
            .collect();
        replace_members(dir, base, end, &members).await?;
        changed = true;
    }
    if changed {
        dma::sync_dir(dir).await?;
    }
    Ok(())
}

/// Steps 3-4 of a swap: the members after the first go, the first's index files go, the swap
/// file becomes `<base>.log`.
async fn replace_members(dir: &Path, base: i64, end: i64, later_members: &[i64]) -> Result<()> {
    for &b in later_members.iter().rev() {
        remove_segment_files(dir, b).await?;
        crash_point!(MemberRemoved);
    }
    // Stale index files of the old first member must never describe the new file.
    dma::remove_if_exists(&dir.join(file_name(base, "index"))).await?;
    dma::remove_if_exists(&dir.join(file_name(base, "timeindex"))).await?;
    dma::sync_dir(dir).await?;
    let log = dir.join(file_name(base, "log"));
    glommio::io::rename(dir.join(swap_name(base, end)), &log)
        .await
        .map_err(|e| dma::err("renaming", &log, e))?;
    dma::sync_dir(dir).await?;
    crash_point!(Renamed);
    Ok(())
}

/// Loads the cleaner checkpoint; a missing or unreadable one means "nothing known", which only
/// costs the next pass a map of the whole log.
pub(super) async fn load_checkpoint(dir: &Path) -> Result<CleanerState> {
    let Some(bytes) = dma::read_small_file(&dir.join(CLEANER_CHECKPOINT_FILE)).await? else {
        return Ok(CleanerState::default());
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut fields = text.split_whitespace().map(str::parse::<i64>);
    Ok(match (fields.next(), fields.next(), fields.next()) {
        (Some(Ok(0)), Some(Ok(first_dirty)), Some(Ok(horizon))) => CleanerState {
            first_dirty_offset: Some(first_dirty),
            tombstone_horizon_ms: (horizon >= 0).then_some(horizon),
        },
        _ => CleanerState::default(),
    })
}

impl Inner {
    async fn store_cleaner_checkpoint(&self) -> Result<()> {
        let c = *self.cleaner.borrow();
        let Some(first_dirty) = c.first_dirty_offset else {
            return dma::remove_if_exists(&self.dir.join(CLEANER_CHECKPOINT_FILE)).await;
        };
        let text = format!(
            "0\n{first_dirty} {}\n",
            c.tombstone_horizon_ms.unwrap_or(-1)
        );
        dma::write_small_file_atomic(&self.dir.join(CLEANER_CHECKPOINT_FILE), text.as_bytes()).await
    }

    /// Truncation hook: offsets from `offset` on may be rewritten, so they are dirty again.
    /// Called before the log is cut, so that a crash in between leaves a lower checkpoint.
    pub(super) async fn cleaner_truncating_to(&self, offset: i64) -> Result<()> {
        let lowered = {
            let mut c = self.cleaner.borrow_mut();
            match c.first_dirty_offset {
                Some(first_dirty) if first_dirty > offset => {
                    c.first_dirty_offset = Some(offset);
                    true
                }
                _ => false,
            }
        };
        if lowered {
            self.store_cleaner_checkpoint().await?;
        }
        Ok(())
    }

    fn plan_pass(&self, config: &LogConfig, now_ms: i64) -> Option<Plan> {
        let st = self.state.borrow();
        let cleaner = *self.cleaner.borrow();
        let young_after = now_ms.saturating_sub(config.min_compaction_lag_ms);
        let mut segments = Vec::new();
        for pair in st.segments.windows(2) {
            let (seg, next_base) = (&pair[0], pair[1].base_offset);
            let s = seg.st.borrow();
            let too_young = config.min_compaction_lag_ms > 0 && s.max_timestamp > young_after;
            if !s.seal_done || next_base > st.high_watermark || too_young {
                break;
            }
            drop(s);
            segments.push((Rc::clone(seg), next_base));
        }
        let cleanable_end = segments.last()?.1;
        let first_dirty_offset = cleaner
            .first_dirty_offset
            .unwrap_or(st.log_start_offset)
            .clamp(st.log_start_offset, cleanable_end);
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        for (seg, next_base) in &segments {
            let size = seg.st.borrow().size;
            if *next_base <= first_dirty_offset {
                clean_bytes += size;
            } else {
                dirty_bytes += size;
            }
        }
        let due = cleaner.tombstone_horizon_ms.is_some_and(|h| now_ms >= h);
        let dirty_ratio = dirty_bytes as f64 / (clean_bytes + dirty_bytes).max(1) as f64;
        if !due && (dirty_bytes == 0 || dirty_ratio <= config.min_cleanable_dirty_ratio) {
            return None;
        }
        Some(Plan {
            segments,
            first_dirty_offset,
        })
    }

    /// The map over the dirty batches, and every producer's last batch up to the map's end.
    async fn build_map(
        &self,
        plan: &Plan,
        budget_bytes: usize,
    ) -> Result<(OffsetMap, ProducerLastOffsets)> {
        let mut map = OffsetMap::new(plan.first_dirty_offset, budget_bytes);
        let mut producers = ProducerLastOffsets::default();
        'segments: for (seg, _) in &plan.segments {
            let Some(file) = seg.file() else { continue };
            let size = seg.st.borrow().size;
            let mut cursor = BatchCursor::new(file, &seg.log_path, size);
            while let Some((bytes, h)) = cursor.next().await? {
                if h.last_offset() >= plan.first_dirty_offset && !map.add_batch(&bytes, &h) {
                    break 'segments;
                }
                producers.observe(&h);
                glommio::yield_if_needed().await;
            }
        }
        Ok((map, producers))
    }

    async fn compact(
        self: Rc<Self>,
        now_ms: i64,
        map_budget_bytes: usize,
    ) -> Result<CompactionOutcome> {
        let _a = self
            .admin_lock
            .acquire_permit(1)
            .await
            .map_err(|_| closed())?;
        self.ensure_open()?;
        let config = self.config.borrow().clone();
        let log_start_offset = self.state.borrow().log_start_offset;
        let first_dirty_offset = self.cleaner.borrow().first_dirty_offset;
        let mut outcome = CompactionOutcome {
            // Retention may have moved the log start past the checkpoint.
            first_dirty_offset: first_dirty_offset
                .map_or(log_start_offset, |o| o.max(log_start_offset)),
            ..CompactionOutcome::default()
        };
        if !config.compacts() {
            return Ok(outcome);
        }
        let Some(plan) = self.plan_pass(&config, now_ms) else {
            return Ok(outcome);
        };
        // A cleaned segment may end before the next one starts; the active segment's file
        // keeps the log end offset across a crash.
        self.ensure_active_file().await?;
        let (map, producers) = self.build_map(&plan, map_budget_bytes).await?;
        let map_end = map.end_offset();
        let mut region: Vec<(Rc<Segment>, i64)> = plan
            .segments
            .into_iter()
            .filter(|(s, _)| s.base_offset < map_end)
            .collect();
        let mut cleaner = BatchCleaner::new(&map, &producers, now_ms, config.delete_retention_ms);
        let mut horizon: Option<i64> = None;
        while !region.is_empty() {
            let taken = self
                .clean_group(&region, &mut cleaner, &mut horizon, &mut outcome)
                .await?;
            // Replaced segments go now, so their unlinked files are freed once no read holds
            // them, not at the end of the pass.
            region.drain(..taken);
        }
        *self.cleaner.borrow_mut() = CleanerState {
            first_dirty_offset: Some(map_end),
            tombstone_horizon_ms: horizon,
        };
        self.store_cleaner_checkpoint().await?;
        outcome.cleaned = true;
        outcome.first_dirty_offset = map_end;
        Ok(outcome)
    }

    /// Cleans the segments at the front of `region` into one (see the module docs) and
    /// returns how many it took: the first, then each next one while the cleaned bytes so far
    /// plus its size fit `segment.bytes`. A lone segment that would come out unchanged is left
    /// alone.
    async fn clean_group(
        &self,
        region: &[(Rc<Segment>, i64)],
        cleaner: &mut BatchCleaner<'_>,
        horizon: &mut Option<i64>,
        outcome: &mut CompactionOutcome,
    ) -> Result<usize> {
        let Some((first, _)) = region.first() else {
            unreachable!("a group starts at a segment")
        };
        let base = first.base_offset;
        let cleaned_path = self.dir.join(file_name(base, "log.cleaned"));
        let written = self
            .write_cleaned(region, &cleaned_path, cleaner, horizon)
            .await;
        let (taken, file, size, removed) = match written {
            Ok((taken, Some((file, size, removed)))) => (taken, file, size, removed),
            Ok((taken, None)) => {
                dma::remove_if_exists(&cleaned_path).await?;
                return Ok(taken);
            }
            Err(e) => {
                // Best effort: open removes a leftover `.cleaned` file anyway.
                let _ = dma::remove_if_exists(&cleaned_path).await;
                return Err(e);
            }
        };
        let group = &region[..taken];
        let end = group[taken - 1].1;
        // Read it back before it replaces anything: the CRCs computed here are checked.
        let interval = self.config.borrow().index_interval_bytes;
        let index = SegmentIndex::default();
        let read_back = scan(&file, &cleaned_path, base, 0, base, size, index, interval).await;
        let read_back = match read_back {
            Ok(r) if r.valid_size == size && r.next_offset <= end => r,
            Ok(_) | Err(_) => {
                let _ = dma::remove_if_exists(&cleaned_path).await;
                return Err(StorageError::io(
                    "reading back",
                    &cleaned_path,
                    std::io::ErrorKind::InvalidData.into(),
                ));
            }
        };
        let last_modified_ms = group
            .iter()
            .map(|(s, _)| s.st.borrow().last_modified_ms)
            .max()
            .unwrap_or(0);
        // Kafka keeps the newest member's modification time, so time retention (which falls
        // back to it when a segment holds no timestamps) is not reset by a rewrite.
        set_modified_ms(&cleaned_path, last_modified_ms)?;
        crash_point!(Cleaned);
        let swap_path = self.dir.join(swap_name(base, end));
        glommio::io::rename(&cleaned_path, &swap_path)
            .await
            .map_err(|e| dma::err("renaming", &swap_path, e))?;
        dma::sync_dir(&self.dir).await?;
        crash_point!(Swapped);
        let later: Vec<i64> = group.iter().skip(1).map(|(s, _)| s.base_offset).collect();
        replace_members(&self.dir, base, end, &later).await?;

        let seg = Segment::new_empty(&self.dir, base, last_modified_ms);
        {
            let mut s = seg.st.borrow_mut();
            s.size = size;
            s.written_size = size;
            s.synced_size = size;
            s.allocated_size = size;
            // Sealed segments end where the next begins, also when the cleaner removed their
            // last records: reads in the gap move on to the next segment.
            s.next_offset = end;
            s.written_next_offset = end;
            s.max_timestamp = read_back.max_timestamp;
            s.written_max_timestamp = read_back.max_timestamp;
            s.roll_timestamp_ms = read_back
                .first_max_timestamp
                .filter(|&t| t >= 0)
                .unwrap_or(last_modified_ms);
            s.index = read_back.index;
            s.bytes_since_index = read_back.bytes_since_index;
            s.sealed = true;
        }
        *seg.file.borrow_mut() = Some(file);
        let seg = Rc::new(seg);
        // Index files before the segment joins the log: the writer finishes seals of segments
        // in the log, and must not race this one.
        let sealed = finish_seal(&seg).await;
        let bytes_before: u64 = group.iter().map(|(s, _)| s.st.borrow().size).sum();
        {
            let mut st = self.state.borrow_mut();
            let Some(i) = st.segments.iter().position(|s| Rc::ptr_eq(s, &group[0].0)) else {
                unreachable!("admin_lock keeps cleaned segments in the log")
            };
            for (k, (member, _)) in group.iter().enumerate() {
                assert!(Rc::ptr_eq(&st.segments[i + k], member));
            }
            st.segments.splice(i..i + group.len(), [Rc::clone(&seg)]);
            // Cached copies of the old batches must not be served after the swap.
            self.cache.evict_below(self.cache_slot, end);
            self.read_ahead.borrow_mut().clear();
        }
        // Swapped in even when the seal failed, since the disk holds the new file now. Until a
        // restart rebuilds its index files, retention and compaction stop at it (`seal_done`).
        sealed?;
        outcome.segments_rewritten += group.len();
        outcome.segments_written += 1;
        outcome.bytes_before += bytes_before;
        outcome.bytes_after += size;
        outcome.records_removed += removed.0;
        outcome.tombstones_removed += removed.1;
        Ok(taken)
    }

    /// Writes the cleaned group from the front of `region` to `path`: how many segments it
    /// took, and unless nothing changed (one segment, every batch kept as it is) the file, its
    /// size and the (records, tombstones) removed.
    async fn write_cleaned(
        &self,
        region: &[(Rc<Segment>, i64)],
        path: &Path,
        cleaner: &mut BatchCleaner<'_>,
        horizon: &mut Option<i64>,
    ) -> Result<(usize, Option<Cleaned>)> {
        let config = self.config.borrow().clone();
        let mut writer = SegmentWriter::create(path).await?;
        let mut changed = false;
        let mut removed = (0u64, 0u64);
        let mut index_bytes = (0u64, 0u64);
        let mut taken = 0;
        for (seg, next_base) in region {
            let (size, offsets, times) = {
                let s = seg.st.borrow();
                (
                    s.size,
                    s.index.offset_index_bytes(),
                    s.index.time_index_bytes(),
                )
            };
            index_bytes = (index_bytes.0 + offsets, index_bytes.1 + times);
            // The next segment joins while the cleaned bytes so far plus its uncleaned size fit
            // (Kafka adds up sizes before cleaning, so it merges full segments only on a later
            // pass).
            let joins = writer.size() + size <= config.segment_bytes
                && index_bytes.0 <= config.segment_index_bytes
                && index_bytes.1 <= config.segment_index_bytes
                && next_base - region[0].0.base_offset <= i64::from(i32::MAX);
            if taken > 0 && !joins {
                break;
            }
            taken += 1;
            changed |= taken > 1;
            let Some(file) = seg.file() else { continue };
            let mut cursor = BatchCursor::new(file, &seg.log_path, size);
            while let Some((bytes, h)) = cursor.next().await? {
                let o = cleaner.clean(&bytes, &h);
                match &o.action {
                    BatchAction::Keep => writer.push(&bytes).await?,
                    BatchAction::Drop => changed = true,
                    BatchAction::Rewrite(b) => {
                        writer.push(b).await?;
                        changed = true;
                    }
                }
                removed.0 += o.records_removed;
                removed.1 += o.tombstones_removed;
                if let Some(h) = o.tombstone_horizon_ms {
                    *horizon = Some(horizon.map_or(h, |x| x.min(h)));
                }
                glommio::yield_if_needed().await;
            }
        }
        if !changed {
            return Ok((taken, None));
        }
        let (file, size) = writer.finish().await?;
        Ok((taken, Some((file, size, removed))))
    }
}

/// A cleaned group's file, its size and the (records, tombstones) removed.
type Cleaned = (dma::SharedFile, u64, (u64, u64));

/// Sets a file's modification time. Blocking (open + futimens), once per cleaned segment:
/// glommio has no call for it.
fn set_modified_ms(path: &Path, ms: i64) -> Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .map_err(|e| StorageError::io("setting the modification time of", path, e))
}

impl PartitionLog {
    /// Runs one pass of Kafka's log cleaner when the policy compacts and a pass is due (see
    /// `LogConfig::min_cleanable_dirty_ratio`): keeps the newest record of each key in the
    /// sealed segments below the high watermark, drops tombstones older than
    /// `delete.retention.ms` (KIP-534), merges small cleaned segments. Offsets never change.
    /// Call it periodically (Kafka's cleaner checks every 15 s); a call with nothing due does
    /// no I/O.
    pub async fn compact(&self, now_ms: i64) -> Result<CompactionOutcome> {
        self.compact_with_budget(now_ms, CLEANER_OFFSET_MAP_BYTES_MAX)
            .await
    }

    /// `compact` with another offset map budget (tests make it small to split passes).
    pub(crate) async fn compact_with_budget(
        &self,
        now_ms: i64,
        map_budget_bytes: usize,
    ) -> Result<CompactionOutcome> {
        run_detached(Rc::clone(&self.inner).compact(now_ms, map_budget_bytes)).await
    }
}

//! Per-partition checkpoint files (owning shard): `leader-epoch-checkpoint` (Kafka's text format),
//! `high-watermark-checkpoint`, and the clean-shutdown marker.

use std::path::{Path, PathBuf};

use crate::dma;
use crate::error::{Result, StorageError};

pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
pub(crate) const HIGH_WATERMARK_FILE: &str = "high-watermark-checkpoint";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
const CHECKPOINT_VERSION: &str = "0";

/// Leader epoch -> first offset of that epoch, epochs strictly increasing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// Records that `leader_epoch` starts at `start_offset`; only newer epochs are added (as
    /// Kafka's cache, an older epoch from a follower fetch is ignored). True if it changed.
    pub fn assign(&mut self, leader_epoch: i32, start_offset: i64) -> bool {
        if leader_epoch < 0 {
            return false;
        }
        match self.entries.last() {
            Some(&(e, s)) if e >= leader_epoch || s > start_offset => false,
            _ => {
                self.entries.push((leader_epoch, start_offset));
                true
            }
        }
    }

    /// Removes epochs starting at or after `end_offset` (log truncated to `end_offset`).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, s)| s < end_offset);
        before != self.entries.len()
    }

    /// Moves the log start: epochs wholly below it go, the one spanning it starts at it.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let below = self.entries.partition_point(|&(_, s)| s < start_offset);
        if below == 0 {
            return false;
        }
        let keep_spanning = self
            .entries
            .get(below)
            .is_none_or(|&(_, s)| s > start_offset);
        let spanning = self.entries[below - 1].0;
        self.entries.drain(..below);
        if keep_spanning {
            self.entries.insert(0, (spanning, start_offset));
        }
        true
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// First offset of exactly `leader_epoch`.
    pub fn start_offset_for(&self, leader_epoch: i32) -> Option<i64> {
        self.entries
            .iter()
            .find(|e| e.0 == leader_epoch)
            .map(|e| e.1)
    }

    /// Kafka's OffsetForLeaderEpoch answer: the largest epoch <= `requested` and the offset where
    /// it ends (the next epoch's start, or `log_end_offset` for the latest). `None` = undefined.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let latest = self.latest_epoch()?;
        if requested < 0 {
            return None;
        }
        if requested == latest {
            return Some((latest, log_end_offset));
        }
        let higher = self.entries.partition_point(|e| e.0 <= requested);
        let next_start = self.entries.get(higher)?.1;
        if higher == 0 {
            Some((requested, next_start))
        } else {
            Some((self.entries[higher - 1].0, next_start))
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            s.push_str(&format!("{e} {o}\n"));
        }
        s.into_bytes()
    }

    pub fn decode(data: &[u8], path: &Path) -> Result<Self> {
        let bad = |reason| StorageError::CorruptCheckpoint {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::str::from_utf8(data).map_err(|_| bad("not utf-8"))?;
        let mut lines = text.lines();
        if lines.next() != Some(CHECKPOINT_VERSION) {
            return Err(bad("unknown version"));
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or(bad("bad entry count"))?;
        let mut cache = LeaderEpochCache::default();
        for _ in 0..count {
            let line = lines.next().ok_or(bad("missing entry"))?;
            let mut parts = line.split_whitespace();
            let e: i32 = parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or(bad("bad epoch"))?;
            let o: i64 = parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or(bad("bad offset"))?;
            if !cache.assign(e, o) {
                return Err(bad("epochs not increasing"));
            }
        }
        Ok(cache)
    }
}

pub(crate) fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

pub(crate) async fn load_leader_epochs(dir: &Path) -> Result<LeaderEpochCache> {
    let p = path(dir, LEADER_EPOCH_FILE);
    match dma::read_small_file(&p).await? {
        None => Ok(LeaderEpochCache::default()),
        Some(data) => LeaderEpochCache::decode(&data, &p),
    }
}

pub(crate) async fn store_leader_epochs(dir: &Path, cache: &LeaderEpochCache) -> Result<()> {
    dma::write_small_file_atomic(&path(dir, LEADER_EPOCH_FILE), &cache.encode()).await
}

pub(crate) async fn load_high_watermark(dir: &Path) -> Result<Option<i64>> {
    let p = path(dir, HIGH_WATERMARK_FILE);
    let Some(data) = dma::read_small_file(&p).await? else {
        return Ok(None);
    };
    let bad = |reason| StorageError::CorruptCheckpoint {
        path: p.clone(),
        reason,
    };
    let text = std::str::from_utf8(&data).map_err(|_| bad("not utf-8"))?;
    let mut lines = text.lines();
    if lines.next() != Some(CHECKPOINT_VERSION) {
        return Err(bad("unknown version"));
    }
    let hw = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or(bad("bad high watermark"))?;
    Ok(Some(hw))
}

pub(crate) async fn store_high_watermark(dir: &Path, high_watermark: i64) -> Result<()> {
    let text = format!("{CHECKPOINT_VERSION}\n{high_watermark}\n");
    dma::write_small_file_atomic(&path(dir, HIGH_WATERMARK_FILE), text.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_cache_follows_kafka() {
        let mut c = LeaderEpochCache::default();
        assert!(c.assign(1, 0));
        assert!(c.assign(3, 10));
        assert!(!c.assign(2, 20), "older epochs are ignored");
        assert!(c.assign(5, 20));
        assert_eq!(c.end_offset_for(5, 30), Some((5, 30)));
        assert_eq!(c.end_offset_for(3, 30), Some((3, 20)));
        assert_eq!(
            c.end_offset_for(4, 30),
            Some((3, 20)),
            "floor epoch, next epoch's start"
        );
        assert_eq!(c.end_offset_for(0, 30), Some((0, 0)));
        assert_eq!(c.end_offset_for(6, 30), None);
        assert_eq!(c.start_offset_for(3), Some(10));
        assert!(c.truncate_from_end(15));
        assert_eq!(c.entries(), &[(1, 0), (3, 10)]);
        assert!(c.truncate_from_start(12));
        assert_eq!(c.entries(), &[(3, 12)]);
        let back = LeaderEpochCache::decode(&c.encode(), Path::new("x")).unwrap();
        assert_eq!(back, c);
        assert!(LeaderEpochCache::decode(b"0\n2\n1 5\n", Path::new("x")).is_err());
    }
}

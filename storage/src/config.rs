//! `LogConfig`: per-partition settings with Kafka's names and defaults (per partition, any shard).

use crate::error::{Result, StorageError};
use crate::limits::{
    BATCH_BYTES_MAX, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_INDEX_BYTES_MAX,
    SEGMENT_INDEX_BYTES_MIN,
};

/// When appended data is made durable with fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Kafka's default: durability comes from replication; an append resolves once its bytes
    /// are written with O_DIRECT (they survive a process crash, not necessarily a power cut).
    /// fdatasync runs every `interval_ms` and after every `messages` records (`u64::MAX`
    /// disables either trigger, which is Kafka's default for both).
    Periodic { interval_ms: u64, messages: u64 },
    /// Every append waits for a group-committed fdatasync that covers it.
    Fsync,
}

/// Kafka's `cleanup.policy`: what happens to closed segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// `delete`: whole segments past `retention_ms` / `retention_bytes` are deleted.
    Delete,
    /// `compact`: `PartitionLog::compact` keeps the newest record per key; retention never
    /// deletes.
    Compact,
    /// `compact,delete`: both, as in Kafka.
    CompactDelete,
}

/// Per-partition log settings. `Default` gives Kafka's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would exceed this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment when its first batch is older than this
    /// (checked in `enforce_retention`).
    pub segment_ms: i64,
    /// `segment.index.bytes`: roll when the offset or time index reaches this size.
    pub segment_index_bytes: u64,
    /// `retention.bytes`: -1 = no size limit.
    pub retention_bytes: i64,
    /// `retention.ms`: -1 = keep forever.
    pub retention_ms: i64,
    /// `index.interval.bytes`: one index entry per this many log bytes.
    pub index_interval_bytes: u32,
    pub flush: FlushPolicy,
    pub cleanup_policy: CleanupPolicy,
    /// `max.message.bytes`: largest batch a producer may append.
    pub max_message_bytes: u32,
    /// `producer.id.expiration.ms`: an idempotent producer whose last batch is older than this
    /// is forgotten by `enforce_retention` (its next batch is then accepted at any sequence).
    pub producer_id_expiration_ms: i64,
    /// `delete.retention.ms`: how long the cleaner keeps a tombstone (and an empty batch's
    /// delete marker) after the pass that first retained it (KIP-534's delete horizon).
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: `compact` runs a pass only when the uncleaned bytes are at
    /// least this share of the cleanable log (or a tombstone's delete horizon has passed).
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: segments holding a record younger than this stay uncleaned.
    pub min_compaction_lag_ms: i64,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY_MS,
            segment_index_bytes: 10 << 20,
            retention_bytes: -1,
            retention_ms: 7 * DAY_MS,
            index_interval_bytes: 4096,
            flush: FlushPolicy::Periodic {
                interval_ms: u64::MAX,
                messages: u64::MAX,
            },
            cleanup_policy: CleanupPolicy::Delete,
            max_message_bytes: 1_048_588,
            producer_id_expiration_ms: DAY_MS,
            delete_retention_ms: DAY_MS,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
        }
    }
}

impl LogConfig {
    /// Checks every value against its ceiling in `limits.rs`.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(StorageError::InvalidConfig(what));
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return bad(format!(
                "segment_bytes {} outside [{SEGMENT_BYTES_MIN}, {SEGMENT_BYTES_MAX}]",
                self.segment_bytes
            ));
        }
        if self.segment_ms <= 0 {
            return bad(format!("segment_ms {} must be positive", self.segment_ms));
        }
        if !(SEGMENT_INDEX_BYTES_MIN..=SEGMENT_INDEX_BYTES_MAX).contains(&self.segment_index_bytes)
        {
            return bad(format!(
                "segment_index_bytes {} out of bounds",
                self.segment_index_bytes
            ));
        }
        if self.retention_bytes < -1 {
            return bad(format!(
                "retention_bytes {} must be >= -1",
                self.retention_bytes
            ));
        }
        if self.retention_ms < -1 {
            return bad(format!("retention_ms {} must be >= -1", self.retention_ms));
        }
        if self.max_message_bytes == 0 || self.max_message_bytes as usize > BATCH_BYTES_MAX {
            return bad(format!(
                "max_message_bytes {} outside [1, {BATCH_BYTES_MAX}]",
                self.max_message_bytes
            ));
        }
        if self.producer_id_expiration_ms < 1 {
            return bad(format!(
                "producer_id_expiration_ms {} must be positive",
                self.producer_id_expiration_ms
            ));
        }
        if self.delete_retention_ms < 0 {
            return bad(format!(
                "delete_retention_ms {} must be >= 0",
                self.delete_retention_ms
            ));
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return bad(format!(
                "min_cleanable_dirty_ratio {} outside [0, 1]",
                self.min_cleanable_dirty_ratio
            ));
        }
        if self.min_compaction_lag_ms < 0 {
            return bad(format!(
                "min_compaction_lag_ms {} must be >= 0",
                self.min_compaction_lag_ms
            ));
        }
        if let FlushPolicy::Periodic {
            interval_ms,
            messages,
        } = self.flush
        {
            if interval_ms == 0 || messages == 0 {
                return bad("flush interval_ms and messages must be positive".to_string());
            }
        }
        Ok(())
    }

    /// True when retention may delete segments.
    pub(crate) fn deletes(&self) -> bool {
        matches!(
            self.cleanup_policy,
            CleanupPolicy::Delete | CleanupPolicy::CompactDelete
        )
    }

    /// True when the cleaner may compact the log.
    pub fn compacts(&self) -> bool {
        matches!(
            self.cleanup_policy,
            CleanupPolicy::Compact | CleanupPolicy::CompactDelete
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas_and_valid() {
        let c = LogConfig::default();
        assert_eq!(c.segment_bytes, 1_073_741_824);
        assert_eq!(c.retention_ms, 604_800_000);
        assert_eq!(c.max_message_bytes, 1_048_588);
        assert_eq!(c.delete_retention_ms, 86_400_000);
        assert_eq!(c.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(c.min_compaction_lag_ms, 0);
        c.validate().unwrap();
    }

    #[test]
    fn out_of_bounds_values_are_refused() {
        let c = LogConfig {
            segment_bytes: 1,
            ..LogConfig::default()
        };
        assert!(matches!(c.validate(), Err(StorageError::InvalidConfig(_))));
        let c = LogConfig {
            retention_ms: -2,
            ..LogConfig::default()
        };
        assert!(c.validate().is_err());
        let c = LogConfig {
            max_message_bytes: u32::MAX,
            ..LogConfig::default()
        };
        assert!(c.validate().is_err());
        let c = LogConfig {
            min_cleanable_dirty_ratio: 1.5,
            ..LogConfig::default()
        };
        assert!(c.validate().is_err());
        let c = LogConfig {
            delete_retention_ms: -1,
            ..LogConfig::default()
        };
        assert!(c.validate().is_err());
    }
}

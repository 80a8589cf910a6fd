//! The log cleaner's decisions (pure; per partition, on its owning shard during a pass): the
//! key -> latest offset map over the dirty part of a log, and what becomes of each batch.
//!
//! Kafka's rules (`LogCleaner`, KIP-534), applied batch by batch in offset order:
//! - A keyed record survives when no later record of its key was mapped, or it is past the
//!   map's end (not yet looked at). Offsets never change: a rewritten batch keeps its base
//!   offset, `lastOffsetDelta`, leader epoch and producer id/epoch/base sequence; its record
//!   count, max timestamp and CRC-32C are recomputed, and it is compressed again with its codec.
//! - A tombstone (null value) that is the latest of its key survives until its batch's delete
//!   horizon: the first pass that keeps it stamps `now + delete.retention.ms` into the batch
//!   (attribute bit 6, horizon in `baseTimestamp`); the first pass after that drops it.
//! - A batch left without records is dropped, unless it is the last batch of a producer that
//!   has not expired: then an empty batch keeps its offsets and sequence, so the producer's
//!   state can be rebuilt from the log.
//! - Keyless records are dropped, as Kafka's cleaner does (the broker refuses them on compacted
//!   topics, so only a topic that was `delete` before holds any).
//! - Where Skein differs: control and transactional batches are kept unchanged, since transactions are not built;
//!   so are batches whose records cannot be read (unknown codec, inflating beyond
//!   `DECOMPRESSED_BATCH_BYTES_MAX`, malformed records). Keys of records kept that way are
//!   *pinned*: a later tombstone of such a key is never dropped, so that an older value
//!   cannot come back.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use crate::batch::{
    encode_batch, Compression, RecordBatchHeader, TimestampType, BATCH_HEADER_BYTES,
    COMPRESSION_MASK, DELETE_HORIZON_FLAG,
};
use crate::compression;
use crate::limits::{
    BATCH_BYTES_MAX, CLEANER_MAP_ENTRY_OVERHEAD_BYTES, DECOMPRESSED_BATCH_BYTES_MAX,
};
use crate::records::{parse_records, Record};

/// Kafka's `producer.id.expiration.ms` default: a producer whose last batch is older than this
/// has expired, and its last batch need not be kept once it holds no records.
pub(crate) const PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;

/// The batch's record bytes, inflated when compressed; `None` when they cannot be read.
pub(crate) fn payload<'a>(batch: &'a [u8], h: &RecordBatchHeader) -> Option<Cow<'a, [u8]>> {
    let raw = batch.get(BATCH_HEADER_BYTES..)?;
    match h.compression() {
        Compression::None => Some(Cow::Borrowed(raw)),
        codec => compression::decompress(codec, raw, DECOMPRESSED_BATCH_BYTES_MAX).map(Cow::Owned),
    }
}

/// Key -> offset of its latest record, over offsets from the pass's first dirty offset up to
/// `end_offset` (exclusive).
pub(crate) struct OffsetMap {
    latest: HashMap<Box<[u8]>, i64>,
    charged_bytes: usize,
    budget_bytes: usize,
    end_offset: i64,
}

impl OffsetMap {
    pub fn new(start_offset: i64, budget_bytes: usize) -> Self {
        OffsetMap {
            latest: HashMap::new(),
            charged_bytes: 0,
            budget_bytes,
            end_offset: start_offset,
        }
    }

    /// Records at or above this offset were not mapped: the cleaner keeps them as they are.
    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    #[cfg(test)]
    pub fn key_count(&self) -> usize {
        self.latest.len()
    }

    fn latest_offset(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }

    /// Maps the keyed records of the next batch (the batch must end at or after `end_offset`).
    /// Returns false, mapping nothing, when its keys would exceed the budget; never for the
    /// first batch, so that every pass makes progress.
    pub fn add_batch(&mut self, batch: &[u8], h: &RecordBatchHeader) -> bool {
        assert!(
            h.last_offset() >= self.end_offset,
            "batches are mapped in offset order"
        );
        // Control and transactional batches are kept whole, so their keys must not hide older
        // records; unreadable batches have no keys we could know.
        let records = if h.is_control() || h.is_transactional() {
            None
        } else {
            payload(batch, h)
        };
        let records = records
            .as_deref()
            .and_then(|p| parse_records(p, h.record_count));
        if let Some(records) = records {
            let cost: usize = records
                .iter()
                .filter_map(|r| r.key)
                .map(|k| k.len() + CLEANER_MAP_ENTRY_OVERHEAD_BYTES)
                .sum();
            if !self.latest.is_empty() && self.charged_bytes + cost > self.budget_bytes {
                return false;
            }
            for r in &records {
                let offset = h.base_offset + i64::from(r.offset_delta);
                let Some(key) = r.key else { continue };
                if offset < self.end_offset {
                    continue;
                }
                match self.latest.get_mut(key) {
                    Some(o) => *o = (*o).max(offset),
                    None => {
                        self.charged_bytes += key.len() + CLEANER_MAP_ENTRY_OVERHEAD_BYTES;
                        self.latest.insert(key.into(), offset);
                    }
                }
            }
        }
        self.end_offset = h.last_offset() + 1;
        true
    }
}

/// Producer id -> last offset of its newest data batch seen by the pass.
#[derive(Debug, Default)]
pub(crate) struct ProducerLastOffsets(HashMap<i64, i64>);

impl ProducerLastOffsets {
    pub fn observe(&mut self, h: &RecordBatchHeader) {
        if h.producer_id >= 0 && !h.is_control() {
            let last = self.0.entry(h.producer_id).or_insert(h.last_offset());
            *last = (*last).max(h.last_offset());
        }
    }

    fn is_last(&self, h: &RecordBatchHeader) -> bool {
        h.producer_id >= 0 && self.0.get(&h.producer_id) == Some(&h.last_offset())
    }
}

/// What becomes of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchAction {
    /// Written as it is, byte for byte.
    Keep,
    /// Dropped: none of its records survive and it holds no producer state.
    Drop,
    /// Replaced by these bytes (same base and last offset).
    Rewrite(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchOutcome {
    pub action: BatchAction,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    /// The batch's delete horizon when it still holds a tombstone: the time from which a pass
    /// can drop it.
    pub tombstone_horizon_ms: Option<i64>,
}

impl BatchOutcome {
    fn keep(tombstone_horizon_ms: Option<i64>) -> Self {
        BatchOutcome {
            action: BatchAction::Keep,
            records_removed: 0,
            tombstones_removed: 0,
            tombstone_horizon_ms,
        }
    }
}

/// Applies the rules of the module docs to each batch of a pass, in offset order.
pub(crate) struct BatchCleaner<'a> {
    map: &'a OffsetMap,
    producers: &'a ProducerLastOffsets,
    now_ms: i64,
    delete_retention_ms: i64,
    /// Keys with a record kept regardless of the map (see the module docs).
    pinned: HashSet<Box<[u8]>>,
}

impl<'a> BatchCleaner<'a> {
    pub fn new(
        map: &'a OffsetMap,
        producers: &'a ProducerLastOffsets,
        now_ms: i64,
        delete_retention_ms: i64,
    ) -> Self {
        BatchCleaner {
            map,
            producers,
            now_ms,
            delete_retention_ms,
            pinned: HashSet::new(),
        }
    }

    pub fn clean(&mut self, batch: &[u8], h: &RecordBatchHeader) -> BatchOutcome {
        let mut o = self.decide(batch, h);
        // Only a horizon still ahead schedules a pass: a tombstone kept past its horizon is
        // pinned, and would otherwise make every call run a pass that cannot drop it.
        o.tombstone_horizon_ms = o.tombstone_horizon_ms.filter(|&h| h > self.now_ms);
        o
    }

    fn decide(&mut self, batch: &[u8], h: &RecordBatchHeader) -> BatchOutcome {
        if h.is_control() {
            return BatchOutcome::keep(None);
        }
        let payload = payload(batch, h);
        let Some(records) = payload
            .as_deref()
            .and_then(|p| parse_records(p, h.record_count))
        else {
            return BatchOutcome::keep(None);
        };
        let any_tombstone = records.iter().any(|r| !r.has_value());
        let kept_horizon = h.delete_horizon_ms().filter(|_| any_tombstone);
        if h.is_transactional() {
            self.pin(&records);
            return BatchOutcome::keep(kept_horizon);
        }
        if h.base_offset >= self.map.end_offset() {
            return BatchOutcome::keep(kept_horizon);
        }
        let mut retained = Vec::with_capacity(records.len());
        let (mut removed, mut tombstones_removed) = (0u64, 0u64);
        for r in &records {
            if self.retains(h, r) {
                retained.push(*r);
            } else {
                removed += 1;
                tombstones_removed += u64::from(!r.has_value());
            }
        }
        let keeps_tombstone = retained.iter().any(|r| !r.has_value());
        let horizon = h.delete_horizon_ms().or_else(|| {
            keeps_tombstone.then(|| self.now_ms.saturating_add(self.delete_retention_ms))
        });
        let outcome = |action| BatchOutcome {
            action,
            records_removed: removed,
            tombstones_removed,
            tombstone_horizon_ms: horizon.filter(|_| keeps_tombstone),
        };
        if retained.is_empty() {
            if !self.holds_producer_state(h) {
                return outcome(BatchAction::Drop);
            }
            if h.record_count == 0 {
                return outcome(BatchAction::Keep);
            }
            return outcome(BatchAction::Rewrite(empty_batch(h)));
        }
        if removed == 0 && horizon == h.delete_horizon_ms() {
            return outcome(BatchAction::Keep);
        }
        match rebuild(h, &retained, horizon) {
            Some(bytes) => outcome(BatchAction::Rewrite(bytes)),
            None => {
                // Cannot be written smaller (a codec failed, or it would outgrow a batch): kept
                // whole, superseded records included.
                self.pin(&records);
                BatchOutcome::keep(kept_horizon)
            }
        }
    }

    fn retains(&self, h: &RecordBatchHeader, r: &Record<'_>) -> bool {
        let offset = h.base_offset + i64::from(r.offset_delta);
        if offset >= self.map.end_offset() {
            return true;
        }
        // Kafka's cleaner drops keyless records: a compacted topic refuses them at produce, so
        // any found here predate a switch to compact and have no key to be the latest for.
        let Some(key) = r.key else {
            return false;
        };
        if self.map.latest_offset(key).is_some_and(|o| offset < o) {
            return false;
        }
        r.has_value()
            || h.delete_horizon_ms().is_none_or(|hz| self.now_ms < hz)
            || self.pinned.contains(key)
    }

    fn holds_producer_state(&self, h: &RecordBatchHeader) -> bool {
        self.producers.is_last(h)
            && self.now_ms.saturating_sub(h.max_timestamp) < PRODUCER_ID_EXPIRATION_MS
    }

    fn pin(&mut self, records: &[Record<'_>]) {
        for key in records.iter().filter_map(|r| r.key) {
            if !self.pinned.contains(key) {
                self.pinned.insert(key.into());
            }
        }
    }
}

/// `h`'s batch with only `retained`, its base timestamp moved to `horizon` when set (record
/// timestamps are kept); `None` if it cannot be encoded within `BATCH_BYTES_MAX`.
fn rebuild(
    h: &RecordBatchHeader,
    retained: &[Record<'_>],
    horizon: Option<i64>,
) -> Option<Vec<u8>> {
    let base_timestamp = horizon.unwrap_or(h.base_timestamp);
    let mut records = Vec::new();
    let mut max_timestamp = -1i64;
    for r in retained {
        let timestamp = h.base_timestamp.checked_add(r.timestamp_delta)?;
        max_timestamp = max_timestamp.max(timestamp);
        if base_timestamp == h.base_timestamp {
            records.extend_from_slice(r.raw);
        } else {
            r.encode_with_timestamp_delta(timestamp.checked_sub(base_timestamp)?, &mut records);
        }
    }
    let records = match h.compression() {
        Compression::None => records,
        codec => compression::compress(codec, &records)?,
    };
    if BATCH_HEADER_BYTES + records.len() > BATCH_BYTES_MAX {
        return None;
    }
    let flag = if horizon.is_some() {
        DELETE_HORIZON_FLAG
    } else {
        0
    };
    let header = RecordBatchHeader {
        attributes: h.attributes | flag,
        base_timestamp,
        max_timestamp: match h.timestamp_type() {
            TimestampType::LogAppendTime => h.max_timestamp,
            TimestampType::CreateTime => max_timestamp,
        },
        record_count: retained.len() as i32,
        ..*h
    };
    Some(encode_batch(&header, &records))
}

/// Kafka's empty batch for producer state: offsets, producer fields and max timestamp kept, no
/// records, no compression, no delete horizon.
fn empty_batch(h: &RecordBatchHeader) -> Vec<u8> {
    let header = RecordBatchHeader {
        attributes: h.attributes & !(COMPRESSION_MASK | DELETE_HORIZON_FLAG),
        base_timestamp: h.max_timestamp,
        record_count: 0,
        ..*h
    };
    encode_batch(&header, &[])
}

#[cfg(test)]
#[path = "cleaner_tests.rs"]
mod tests;

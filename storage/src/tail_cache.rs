//! `TailCache`: the newest batches of every partition of one shard, under one byte budget.
//!
//! Per shard (`!Send`, shared by that shard's partitions as `Rc<TailCache>`). Each partition has
//! a contiguous run of whole batches ending at its log end; eviction is oldest-first across the
//! shard, so tailing consumers and followers are served from memory and never touch disk.
//! Entries are the log's own copies of the batches (never slices of a request frame), so the
//! bytes counted are the bytes pinned.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

/// A partition's handle into the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CacheSlot(u64);

#[derive(Debug)]
struct Entry {
    seq: u64,
    base_offset: i64,
    last_offset: i64,
    bytes: Bytes,
}

#[derive(Debug)]
struct FifoRecord {
    slot: CacheSlot,
    seq: u64,
}

/// Counters for metrics (per shard).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TailCacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evicted_batches: u64,
    pub used_bytes: usize,
    pub batches: usize,
}

#[derive(Debug, Default)]
struct Inner {
    used_bytes: usize,
    next_slot: u64,
    next_seq: u64,
    partitions: HashMap<CacheSlot, VecDeque<Entry>>,
    /// Insertion order across partitions; records of entries already removed (truncation) are
    /// skipped when they reach the front, and compacted away when they outnumber live ones.
    fifo: VecDeque<FifoRecord>,
    live_batches: usize,
    stats: TailCacheStats,
}

/// The per-shard cache of recent batches. `TailCache::new(capacity_bytes)`; 0 disables it.
#[derive(Debug)]
pub struct TailCache {
    capacity_bytes: usize,
    inner: RefCell<Inner>,
}

/// Batches served from the cache.
pub(crate) struct CacheRead {
    pub chunks: Vec<Bytes>,
    /// Offset after the last returned batch.
    pub next_offset: i64,
}

impl TailCache {
    pub fn new(capacity_bytes: usize) -> Self {
        TailCache {
            capacity_bytes,
            inner: RefCell::new(Inner::default()),
        }
    }

    pub fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }

    pub fn used_bytes(&self) -> usize {
        self.inner.borrow().used_bytes
    }

    pub fn stats(&self) -> TailCacheStats {
        let inner = self.inner.borrow();
        TailCacheStats {
            used_bytes: inner.used_bytes,
            batches: inner.live_batches,
            ..inner.stats
        }
    }

    pub(crate) fn register(&self) -> CacheSlot {
        let mut inner = self.inner.borrow_mut();
        let slot = CacheSlot(inner.next_slot);
        inner.next_slot += 1;
        inner.partitions.insert(slot, VecDeque::new());
        slot
    }

    pub(crate) fn unregister(&self, slot: CacheSlot) {
        self.clear(slot);
        self.inner.borrow_mut().partitions.remove(&slot);
    }

    /// Adds the newest batch of a partition; `base_offset` must follow the cached run.
    pub(crate) fn insert(&self, slot: CacheSlot, base_offset: i64, last_offset: i64, bytes: Bytes) {
        let size = bytes.len();
        if size > self.capacity_bytes {
            // Never cacheable; drop the run so the partition's cached range stays contiguous.
            self.clear(slot);
            return;
        }
        let mut inner = self.inner.borrow_mut();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let Some(run) = inner.partitions.get_mut(&slot) else {
            return;
        };
        if let Some(last) = run.back() {
            assert!(
                last.last_offset < base_offset,
                "tail cache run must grow at its end"
            );
        }
        run.push_back(Entry {
            seq,
            base_offset,
            last_offset,
            bytes,
        });
        inner.fifo.push_back(FifoRecord { slot, seq });
        inner.used_bytes += size;
        inner.live_batches += 1;
        while inner.used_bytes > self.capacity_bytes {
            if !inner.evict_oldest() {
                break;
            }
        }
    }

    /// Whole batches from the one containing `from_offset`, the first whole, then while the
    /// total stays within `max_bytes`, stopping before a batch whose base is >= `upper_bound`.
    /// `None` when the cache does not hold `from_offset`.
    pub(crate) fn read(
        &self,
        slot: CacheSlot,
        from_offset: i64,
        max_bytes: usize,
        upper_bound: i64,
    ) -> Option<CacheRead> {
        let mut inner = self.inner.borrow_mut();
        let run = inner.partitions.get(&slot)?;
        let first = run.front()?;
        if first.base_offset > from_offset {
            inner.stats.misses += 1;
            return None;
        }
        let start = run.partition_point(|e| e.last_offset < from_offset);
        if start == run.len() {
            inner.stats.misses += 1;
            return None;
        }
        let mut chunks = Vec::new();
        let mut total = 0usize;
        let mut next_offset = from_offset;
        for e in run.iter().skip(start) {
            if e.base_offset >= upper_bound
                || (!chunks.is_empty() && total + e.bytes.len() > max_bytes)
            {
                break;
            }
            total += e.bytes.len();
            next_offset = e.last_offset + 1;
            chunks.push(e.bytes.clone());
        }
        inner.stats.hits += 1;
        Some(CacheRead {
            chunks,
            next_offset,
        })
    }

    /// Drops cached batches with base offset >= `offset` (truncation / rollback).
    pub(crate) fn truncate_from(&self, slot: CacheSlot, offset: i64) {
        let mut inner = self.inner.borrow_mut();
        let Some(run) = inner.partitions.get_mut(&slot) else {
            return;
        };
        let mut freed = 0;
        let mut count = 0;
        while run.back().is_some_and(|e| e.base_offset >= offset) {
            if let Some(e) = run.pop_back() {
                freed += e.bytes.len();
                count += 1;
            }
        }
        inner.used_bytes -= freed;
        inner.live_batches -= count;
        inner.compact_fifo();
    }

    /// Drops cached batches that end below `offset` (retention moved the log start).
    pub(crate) fn evict_below(&self, slot: CacheSlot, offset: i64) {
        let mut inner = self.inner.borrow_mut();
        let Some(run) = inner.partitions.get_mut(&slot) else {
            return;
        };
        let mut freed = 0;
        let mut count = 0;
        while run.front().is_some_and(|e| e.last_offset < offset) {
            if let Some(e) = run.pop_front() {
                freed += e.bytes.len();
                count += 1;
            }
        }
        inner.used_bytes -= freed;
        inner.live_batches -= count;
        inner.compact_fifo();
    }

    pub(crate) fn clear(&self, slot: CacheSlot) {
        self.truncate_from(slot, i64::MIN);
    }
}

impl Inner {
    /// Evicts the shard's oldest live batch; false if nothing is left.
    fn evict_oldest(&mut self) -> bool {
        while let Some(rec) = self.fifo.pop_front() {
            let Some(run) = self.partitions.get_mut(&rec.slot) else {
                continue;
            };
            if run.front().is_some_and(|e| e.seq == rec.seq) {
                if let Some(e) = run.pop_front() {
                    self.used_bytes -= e.bytes.len();
                    self.live_batches -= 1;
                    self.stats.evicted_batches += 1;
                    return true;
                }
            }
        }
        false
    }

    /// Keeps the FIFO bounded by the live entries: rebuild it when stale records dominate.
    fn compact_fifo(&mut self) {
        if self.fifo.len() <= 2 * self.live_batches + 64 {
            return;
        }
        let partitions = &self.partitions;
        self.fifo.retain(|rec| {
            partitions.get(&rec.slot).is_some_and(|run| {
                let i = run.partition_point(|e| e.seq < rec.seq);
                run.get(i).is_some_and(|e| e.seq == rec.seq)
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(n: usize) -> Bytes {
        Bytes::from(vec![0u8; n])
    }

    #[test]
    fn serves_whole_batches_from_the_containing_one() {
        let c = TailCache::new(1000);
        let s = c.register();
        c.insert(s, 0, 4, b(100));
        c.insert(s, 5, 9, b(100));
        c.insert(s, 10, 10, b(100));
        let r = c.read(s, 7, 150, i64::MAX).unwrap();
        assert_eq!(
            r.chunks.len(),
            1,
            "first batch whole, second would exceed max_bytes"
        );
        assert_eq!(r.next_offset, 10);
        let r = c.read(s, 7, 1, i64::MAX).unwrap();
        assert_eq!(
            r.chunks.len(),
            1,
            "the first batch is returned even if bigger than max_bytes"
        );
        let r = c.read(s, 0, 1000, 10).unwrap();
        assert_eq!(
            r.chunks.len(),
            2,
            "upper bound is exclusive on base offsets"
        );
        assert!(c.read(s, 11, 1000, i64::MAX).is_none());
    }

    #[test]
    fn evicts_oldest_across_partitions_within_budget() {
        let c = TailCache::new(250);
        let a = c.register();
        let z = c.register();
        c.insert(a, 0, 0, b(100));
        c.insert(z, 0, 0, b(100));
        c.insert(a, 1, 1, b(100));
        assert_eq!(c.used_bytes(), 200);
        assert!(
            c.read(a, 0, 10, i64::MAX).is_none(),
            "a's oldest was evicted first"
        );
        assert!(c.read(z, 0, 10, i64::MAX).is_some());
        c.truncate_from(a, 1);
        assert_eq!(c.used_bytes(), 100);
        c.insert(a, 1, 1, b(100));
        c.evict_below(z, 1);
        assert_eq!(c.used_bytes(), 100);
        c.unregister(a);
        assert_eq!(c.used_bytes(), 0);
        c.insert(z, 1, 1, b(300));
        assert_eq!(c.used_bytes(), 0, "an entry over the budget is not cached");
    }

    #[test]
    fn fifo_stays_bounded_under_truncation() {
        let c = TailCache::new(1 << 20);
        let s = c.register();
        for i in 0..10_000 {
            c.insert(s, i, i, b(1));
            c.truncate_from(s, i);
        }
        assert!(c.inner.borrow().fifo.len() < 200);
    }
}

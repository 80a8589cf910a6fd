//! Sparse offset and time indexes of one segment, with Kafka's `.index`/`.timeindex` file formats
//! (per partition, owning shard). Kept in memory; written to disk when a segment is sealed and at
//! a clean shutdown; rebuilt by a scan when missing or inconsistent.

use crate::limits::{OFFSET_INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES};

/// One `.index` entry: the batch at `position` ends at `base_offset + relative_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One `.timeindex` entry: every batch up to and including the one holding
/// `base_offset + relative_offset` has max timestamp <= `max_timestamp_so_far`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub max_timestamp_so_far: i64,
    pub relative_offset: u32,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct SegmentIndex {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
}

impl SegmentIndex {
    /// Byte position to start scanning from for `relative_offset`: the last indexed batch
    /// ending at or before it (the target is at or after that batch), else 0.
    pub fn position_for(&self, relative_offset: u32) -> u32 {
        let n = self
            .offsets
            .partition_point(|e| e.relative_offset <= relative_offset);
        if n == 0 {
            0
        } else {
            self.offsets[n - 1].position
        }
    }

    /// Relative offset from which a timestamp search must scan: every batch up to the last
    /// entry below `target_ms` is too old. `None`: scan from the segment start.
    pub fn relative_offset_before(&self, target_ms: i64) -> Option<u32> {
        let n = self
            .times
            .partition_point(|e| e.max_timestamp_so_far < target_ms);
        if n == 0 {
            None
        } else {
            Some(self.times[n - 1].relative_offset)
        }
    }

    /// Adds entries for the batch at `position` whose last offset is `relative_last`.
    pub fn push(&mut self, relative_last: u32, position: u32, max_timestamp_so_far: i64) {
        if let Some(last) = self.offsets.last() {
            assert!(last.relative_offset < relative_last && last.position < position);
        }
        self.offsets.push(OffsetEntry {
            relative_offset: relative_last,
            position,
        });
        self.push_time(max_timestamp_so_far, relative_last);
    }

    /// Adds a time entry if it moves the maximum forward (Kafka appends one at seal too).
    pub fn push_time(&mut self, max_timestamp_so_far: i64, relative_offset: u32) {
        match self.times.last() {
            Some(last) if last.max_timestamp_so_far >= max_timestamp_so_far => {}
            Some(last) if last.relative_offset >= relative_offset => {}
            _ => self.times.push(TimeEntry {
                max_timestamp_so_far,
                relative_offset,
            }),
        }
    }

    /// Drops entries for batches at or after byte `size` / offset `relative_end` (truncation).
    pub fn truncate(&mut self, size: u64, relative_end: i64) {
        self.offsets.retain(|e| {
            u64::from(e.position) < size && i64::from(e.relative_offset) < relative_end
        });
        self.times
            .retain(|e| i64::from(e.relative_offset) < relative_end);
    }

    pub fn offset_index_bytes(&self) -> u64 {
        self.offsets.len() as u64 * OFFSET_INDEX_ENTRY_BYTES
    }

    pub fn time_index_bytes(&self) -> u64 {
        self.times.len() as u64 * TIME_INDEX_ENTRY_BYTES
    }

    pub fn encode_offsets(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offsets.len() * OFFSET_INDEX_ENTRY_BYTES as usize);
        for e in &self.offsets {
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
            out.extend_from_slice(&e.position.to_be_bytes());
        }
        out
    }

    pub fn encode_times(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.times.len() * TIME_INDEX_ENTRY_BYTES as usize);
        for e in &self.times {
            out.extend_from_slice(&e.max_timestamp_so_far.to_be_bytes());
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
        }
        out
    }

    /// Parses both files and checks them against the segment's size; `None` if anything is
    /// inconsistent (the caller then rebuilds by scanning).
    pub fn decode(offsets: &[u8], times: &[u8], segment_size: u64) -> Option<SegmentIndex> {
        if offsets.len() as u64 % OFFSET_INDEX_ENTRY_BYTES != 0
            || times.len() as u64 % TIME_INDEX_ENTRY_BYTES != 0
        {
            return None;
        }
        let mut idx = SegmentIndex::default();
        for c in offsets.chunks_exact(OFFSET_INDEX_ENTRY_BYTES as usize) {
            let relative_offset = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            let position = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
            if u64::from(position) >= segment_size {
                return None;
            }
            if let Some(last) = idx.offsets.last() {
                if last.relative_offset >= relative_offset || last.position >= position {
                    return None;
                }
            }
            idx.offsets.push(OffsetEntry {
                relative_offset,
                position,
            });
        }
        for c in times.chunks_exact(TIME_INDEX_ENTRY_BYTES as usize) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&c[..8]);
            let max_timestamp_so_far = i64::from_be_bytes(ts);
            let relative_offset = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
            if let Some(last) = idx.times.last() {
                if last.max_timestamp_so_far >= max_timestamp_so_far
                    || last.relative_offset >= relative_offset
                {
                    return None;
                }
            }
            idx.times.push(TimeEntry {
                max_timestamp_so_far,
                relative_offset,
            });
        }
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lookups_pick_the_floor_entry() {
        let mut idx = SegmentIndex::default();
        idx.push(9, 4100, 100);
        idx.push(19, 8300, 150);
        idx.push(29, 12500, 140);
        assert_eq!(idx.position_for(0), 0);
        assert_eq!(idx.position_for(8), 0);
        assert_eq!(idx.position_for(9), 4100);
        assert_eq!(idx.position_for(25), 8300);
        assert_eq!(idx.position_for(1000), 12500);
        assert_eq!(
            idx.times.len(),
            2,
            "a time entry that does not raise the max is skipped"
        );
        assert_eq!(idx.relative_offset_before(100), None);
        assert_eq!(idx.relative_offset_before(101), Some(9));
        assert_eq!(idx.relative_offset_before(10_000), Some(19));
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(steps in proptest::collection::vec((1u32..50, 1u32..5000, 0i64..100), 0..100)) {
            let mut idx = SegmentIndex::default();
            let (mut off, mut pos, mut ts) = (0u32, 0u32, 0i64);
            for (d_off, d_pos, d_ts) in steps {
                off += d_off; pos += d_pos; ts += d_ts;
                idx.push(off, pos, ts);
            }
            let back = SegmentIndex::decode(&idx.encode_offsets(), &idx.encode_times(), u64::from(pos) + 1).unwrap();
            prop_assert_eq!(back.offsets, idx.offsets);
            prop_assert_eq!(back.times, idx.times);
        }
    }

    #[test]
    fn inconsistent_files_are_rejected() {
        let mut idx = SegmentIndex::default();
        idx.push(5, 100, 1);
        idx.push(10, 200, 2);
        assert!(SegmentIndex::decode(&idx.encode_offsets(), &[], 150).is_none());
        assert!(SegmentIndex::decode(&idx.encode_offsets()[..7], &[], 1000).is_none());
        let mut swapped = idx.encode_offsets();
        swapped.rotate_left(8);
        assert!(SegmentIndex::decode(&swapped, &[], 1000).is_none());
    }
}

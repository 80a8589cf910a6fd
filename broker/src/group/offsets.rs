//! Committed offsets of one `__consumer_offsets` partition, kept on its owning shard and rebuilt
//! by replaying the partition when it opens. Records use Kafka's layout (offset-commit key v1,
//! value v3), so tooling that reads the topic understands them.

use std::collections::{BTreeMap, HashMap};

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's offset-commit key and value schema versions.
const KEY_VERSION: i16 = 1;
const VALUE_VERSION: i16 = 3;
/// Kafka's `offset.metadata.max.bytes` default.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// The `__consumer_offsets` partition a group lives in. crc32c is stable across releases and
/// machines, unlike std's hasher.
pub fn partition_for(group: &str, partitions: usize) -> i32 {
    let n = u32::try_from(partitions.max(1)).unwrap_or(u32::MAX);
    i32::try_from(crc32c::crc32c(group.as_bytes()) % n).unwrap_or(0)
}

/// Committed offsets by group, then by (topic, partition).
#[derive(Default, Debug)]
pub struct OffsetStore {
    offsets: HashMap<String, BTreeMap<(String, i32), CommittedOffset>>,
}

impl OffsetStore {
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.offsets
            .get(group)?
            .get(&(topic.to_string(), partition))
    }

    /// Every committed offset of `group`, sorted by topic and partition.
    pub fn of_group(&self, group: &str) -> Vec<(String, i32, CommittedOffset)> {
        self.offsets.get(group).map_or_else(Vec::new, |m| {
            m.iter()
                .map(|((t, p), c)| (t.clone(), *p, c.clone()))
                .collect()
        })
    }

    /// Groups that have at least one committed offset.
    pub fn groups(&self) -> Vec<String> {
        self.offsets.keys().cloned().collect()
    }

    pub fn put(&mut self, group: &str, topic: &str, partition: i32, c: CommittedOffset) {
        self.offsets
            .entry(group.to_string())
            .or_default()
            .insert((topic.to_string(), partition), c);
    }

    pub fn remove(&mut self, group: &str, topic: &str, partition: i32) {
        if let Some(m) = self.offsets.get_mut(group) {
            m.remove(&(topic.to_string(), partition));
            if m.is_empty() {
                self.offsets.remove(group);
            }
        }
    }

    pub fn remove_group(&mut self, group: &str) {
        self.offsets.remove(group);
    }

    /// Applies one record of the partition; records of other kinds (group metadata written by
    /// later versions) are skipped. A null value deletes the offset.
    pub fn apply_record(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Some((group, topic, partition)) = decode_key(key) else {
            return;
        };
        match value.map(decode_value) {
            None => self.remove(&group, &topic, partition),
            Some(Some(c)) => self.put(&group, &topic, partition, c),
            Some(None) => {
                tracing::warn!(
                    group,
                    topic,
                    partition,
                    "skipping an undecodable offset record"
                );
            }
        }
    }
}

pub(super) fn put_str(b: &mut BytesMut, s: &str) {
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    b.put_i16(len);
    b.put_slice(&s.as_bytes()[..usize::try_from(len).unwrap_or(0)]);
}

pub(super) fn get_str(b: &mut &[u8]) -> Option<String> {
    let len = usize::try_from(b.try_get_i16().ok()?).ok()?;
    if b.remaining() < len {
        return None;
    }
    let s = std::str::from_utf8(&b[..len]).ok()?.to_string();
    b.advance(len);
    Some(s)
}

pub fn encode_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + group.len() + topic.len());
    b.put_i16(KEY_VERSION);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

pub fn encode_value(c: &CommittedOffset, commit_timestamp_ms: i64) -> Bytes {
    let mut b = BytesMut::with_capacity(26 + c.metadata.len());
    b.put_i16(VALUE_VERSION);
    b.put_i64(c.offset);
    b.put_i32(c.leader_epoch);
    put_str(&mut b, &c.metadata);
    b.put_i64(commit_timestamp_ms);
    b.freeze()
}

fn decode_key(mut b: &[u8]) -> Option<(String, String, i32)> {
    let version = b.try_get_i16().ok()?;
    if version != 0 && version != 1 {
        return None; // group metadata (v2) and newer record kinds
    }
    let group = get_str(&mut b)?;
    let topic = get_str(&mut b)?;
    let partition = b.try_get_i32().ok()?;
    Some((group, topic, partition))
}

fn decode_value(mut b: &[u8]) -> Option<CommittedOffset> {
    let version = b.try_get_i16().ok()?;
    let offset = b.try_get_i64().ok()?;
    let leader_epoch = if version >= 3 {
        b.try_get_i32().ok()?
    } else {
        -1
    };
    let metadata = get_str(&mut b)?;
    Some(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_tombstones_delete() {
        let mut s = OffsetStore::default();
        let c = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
        };
        s.apply_record(&encode_key("g", "t", 1), Some(&encode_value(&c, 7)));
        assert_eq!(s.get("g", "t", 1), Some(&c));
        assert_eq!(s.of_group("g").len(), 1);
        s.apply_record(&encode_key("g", "t", 1), None);
        assert_eq!(s.get("g", "t", 1), None);
    }

    #[test]
    fn garbage_is_ignored() {
        let mut s = OffsetStore::default();
        s.apply_record(&[0, 1, 0xff], Some(&[1, 2, 3]));
        s.apply_record(&encode_key("g", "t", 0), Some(&[0, 3]));
        assert_eq!(s.of_group("g").len(), 0);
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        assert_eq!(partition_for("group-a", 50), partition_for("group-a", 50));
        assert!((0..50).contains(&partition_for("anything", 50)));
    }
}

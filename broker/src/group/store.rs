//! Everything one `__consumer_offsets` partition coordinates: its groups and their committed
//! offsets, rebuilt from the partition's records when it opens.

use std::collections::HashMap;
use std::time::Instant;

use bytes::{Buf, Bytes};

use super::offsets::{self, OffsetStore};
use super::records::{self, StoredGroup};
use super::state::{Group, GroupLimits, GroupState};

/// A record to append to the partition: key and value (`None` is a tombstone).
pub type Record = (Bytes, Option<Bytes>);

pub struct GroupStore {
    pub groups: HashMap<String, Group>,
    pub offsets: OffsetStore,
    pub limits: GroupLimits,
    /// True while the partition is being replayed: requests get COORDINATOR_LOAD_IN_PROGRESS.
    pub loading: bool,
}

impl GroupStore {
    pub fn new(limits: GroupLimits) -> Self {
        GroupStore {
            groups: HashMap::new(),
            offsets: OffsetStore::default(),
            limits,
            loading: false,
        }
    }

    /// The group, created Empty if it does not exist (as an offset commit or a first join does).
    pub fn group_or_create(&mut self, id: &str) -> &mut Group {
        let limits = self.limits;
        self.groups
            .entry(id.to_string())
            .or_insert_with(|| Group::new(id, limits))
    }

    /// Applies one replayed record. Later records win; tombstones delete.
    pub fn apply_record(&mut self, key: &[u8], value: Option<&[u8]>, now: Instant) {
        if let Some(group) = records::decode_key(key) {
            match value.map(records::decode_value) {
                None => {
                    self.groups.remove(&group);
                }
                Some(Some(stored)) => {
                    let g = Group::from_stored(&group, stored, now, self.limits);
                    self.groups.insert(group, g);
                }
                Some(None) => {
                    tracing::warn!(group, "skipping an undecodable group metadata record")
                }
            }
            return;
        }
        self.offsets.apply_record(key, value);
    }

    /// After replay: groups known only by their committed offsets exist, Empty, as in Kafka.
    pub fn finish_load(&mut self) {
        for group in self.offsets.groups() {
            self.group_or_create(&group);
        }
        self.loading = false;
    }

    /// Records that delete `group` and all its offsets (DeleteGroups).
    pub fn tombstones_for_group(&self, group: &str) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .offsets
            .of_group(group)
            .into_iter()
            .map(|(t, p, _)| (offsets::encode_key(group, &t, p), None))
            .collect();
        out.push((records::encode_key(group), None));
        out
    }

    /// Removes a deleted group from memory once its tombstones are written.
    pub fn forget_group(&mut self, group: &str) {
        if let Some(g) = self.groups.get_mut(group) {
            g.state = GroupState::Dead;
        }
        self.groups.remove(group);
        self.offsets.remove_group(group);
    }

    /// Runs every group's deadlines; returns the records of groups that became Empty.
    pub fn tick(&mut self, now: Instant) -> Vec<Record> {
        for g in self.groups.values_mut() {
            g.check_deadlines(now);
        }
        self.take_emptied_records()
    }

    /// The records of every group that became Empty since the last call.
    pub fn take_emptied_records(&mut self) -> Vec<Record> {
        self.groups
            .values_mut()
            .filter_map(|g| {
                g.take_needs_write()
                    .then(|| group_record(&g.id, &g.to_stored(None)))
            })
            .collect()
    }
}

pub fn group_record(group: &str, stored: &StoredGroup) -> Record {
    (
        records::encode_key(group),
        Some(records::encode_value(stored)),
    )
}

/// The topics a member subscribes to, from its consumer-protocol subscription metadata
/// (versions 0..=3 share this prefix); `None` if it is not readable.
pub fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut b = metadata;
    let _version = b.try_get_i16().ok()?;
    let count = usize::try_from(b.try_get_i32().ok()?).ok()?;
    if count > b.remaining() / 2 {
        return None;
    }
    (0..count).map(|_| offsets::get_str(&mut b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::offsets::CommittedOffset;
    use std::time::Duration;

    fn limits() -> GroupLimits {
        GroupLimits {
            initial_rebalance_delay: Duration::ZERO,
            max_size: 10,
        }
    }

    #[test]
    fn replay_restores_groups_and_offsets_and_tombstones_delete() {
        let now = Instant::now();
        let mut s = GroupStore::new(limits());
        let c = CommittedOffset {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
        };
        let stored = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 4,
            ..Default::default()
        };
        let (k, v) = group_record("g", &stored);
        s.apply_record(&k, v.as_deref(), now);
        s.apply_record(
            &offsets::encode_key("simple", "t", 0),
            Some(&offsets::encode_value(&c, 1)),
            now,
        );
        s.finish_load();
        assert_eq!(s.groups.get("g").map(|g| g.generation), Some(4));
        assert_eq!(
            s.groups.get("simple").map(|g| g.state),
            Some(GroupState::Empty)
        );
        for (k, v) in s.tombstones_for_group("simple") {
            s.apply_record(&k, v.as_deref(), now);
        }
        assert!(s.offsets.of_group("simple").is_empty());
        s.apply_record(&records::encode_key("g"), None, now);
        assert!(!s.groups.contains_key("g"));
    }

    #[test]
    fn subscription_topics_are_read() {
        let mut m = vec![0u8, 1, 0, 0, 0, 2];
        for t in ["a", "bb"] {
            m.extend_from_slice(&(t.len() as i16).to_be_bytes());
            m.extend_from_slice(t.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            subscribed_topics(&m),
            Some(vec!["a".to_string(), "bb".to_string()])
        );
        assert_eq!(subscribed_topics(&[0, 1, 0x7f, 0, 0, 0]), None);
    }
}

//! Cluster metadata: an immutable snapshot every shard holds and swaps whole when it changes
//! (per-shard copy of a node-wide view), plus placement of partitions onto shards.
//!
//! The node's metadata shard (the controller shard) owns the authoritative copy and persists it
//! through [`crate::metadata_store`]; the replicated controller takes that role later.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::shard::ids::{NodeId, ShardId};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PartitionMeta {
    /// The shard that owns this partition's replica on this node.
    pub shard: ShardId,
    pub leader_epoch: i32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    /// Indexed by partition number.
    pub partitions: Vec<PartitionMeta>,
    /// Topic-level overrides only (Kafka config names); defaults come from the broker settings.
    pub configs: BTreeMap<String, String>,
    #[serde(default)]
    pub internal: bool,
}

/// How clients reach a broker.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerEndpoint {
    pub node_id: NodeId,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

/// Where a partition lives on this node, stamped with the metadata revision it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOwner {
    pub shard: ShardId,
    pub revision: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterMetadata {
    pub cluster_id: String,
    pub node_id: NodeId,
    /// Bumped by every change; shards ignore a snapshot older than the one they hold.
    pub revision: u64,
    pub topics: BTreeMap<String, TopicMeta>,
    #[serde(skip)]
    pub brokers: Vec<BrokerEndpoint>,
    #[serde(skip)]
    topic_names_by_id: HashMap<Uuid, String>,
}

impl ClusterMetadata {
    pub fn new(cluster_id: String, node_id: NodeId) -> Self {
        ClusterMetadata {
            cluster_id,
            node_id,
            revision: 0,
            topics: BTreeMap::new(),
            brokers: Vec::new(),
            topic_names_by_id: HashMap::new(),
        }
    }

    /// Rebuilds derived indexes; call after deserializing or changing topics.
    pub fn reindex(&mut self) {
        self.topic_names_by_id = self
            .topics
            .values()
            .map(|t| (t.id, t.name.clone()))
            .collect();
    }

    pub fn owner(&self, topic: &str, partition: i32) -> Option<PartitionOwner> {
        let t = self.topics.get(topic)?;
        let p = t.partitions.get(usize::try_from(partition).ok()?)?;
        Some(PartitionOwner {
            shard: p.shard,
            revision: self.revision,
        })
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicMeta> {
        self.topic_names_by_id
            .get(id)
            .and_then(|n| self.topics.get(n))
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionMeta> {
        self.topics
            .get(topic)?
            .partitions
            .get(usize::try_from(partition).ok()?)
    }

    /// Partitions each shard owns, for balanced placement.
    pub fn partitions_per_shard(&self, shard_count: usize) -> Vec<usize> {
        let mut counts = vec![0usize; shard_count];
        for t in self.topics.values() {
            for p in &t.partitions {
                if let Some(c) = counts.get_mut(p.shard.index()) {
                    *c += 1;
                }
            }
        }
        counts
    }
}

/// Chooses shards for `count` new partitions: each goes to the allowed shard owning the fewest
/// partitions (lowest id on ties), so placement is deterministic and balanced by count.
pub fn place_partitions(counts: &mut [usize], allowed: &[ShardId], count: usize) -> Vec<ShardId> {
    assert!(!allowed.is_empty(), "placement needs at least one shard");
    let mut placed = Vec::with_capacity(count);
    for _ in 0..count {
        let shard = allowed
            .iter()
            .copied()
            .filter(|s| s.index() < counts.len())
            .min_by_key(|s| (counts[s.index()], *s))
            .unwrap_or(allowed[0]);
        if let Some(c) = counts.get_mut(shard.index()) {
            *c += 1;
        }
        placed.push(shard);
    }
    placed
}

/// Kafka's legal topic names: [a-zA-Z0-9._-], 1..=249 bytes, not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > crate::limits::TOPIC_NAME_BYTES_MAX {
        return Err(format!(
            "topic name is longer than {} characters",
            crate::limits::TOPIC_NAME_BYTES_MAX
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("topic name contains the illegal character {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_balances_by_count() {
        let mut counts = vec![2, 0, 1];
        let all = [ShardId(0), ShardId(1), ShardId(2)];
        let placed = place_partitions(&mut counts, &all, 4);
        assert_eq!(placed, vec![ShardId(1), ShardId(1), ShardId(2), ShardId(0)]);
        assert_eq!(counts, vec![3, 2, 2]);
    }

    #[test]
    fn placement_respects_overrides() {
        let mut counts = vec![0, 0, 0];
        let placed = place_partitions(&mut counts, &[ShardId(2)], 3);
        assert!(placed.iter().all(|s| *s == ShardId(2)));
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }

    #[test]
    fn owner_lookup_misses_cleanly() {
        let mut md = ClusterMetadata::new("c".into(), NodeId(1));
        md.topics.insert(
            "t".into(),
            TopicMeta {
                name: "t".into(),
                id: Uuid::nil(),
                partitions: vec![PartitionMeta {
                    shard: ShardId(1),
                    leader_epoch: 0,
                }],
                configs: BTreeMap::new(),
                internal: false,
            },
        );
        md.reindex();
        assert_eq!(md.owner("t", 0).map(|o| o.shard), Some(ShardId(1)));
        assert_eq!(md.owner("t", 1), None);
        assert_eq!(md.owner("t", -1), None);
        assert_eq!(md.owner("u", 0), None);
        assert_eq!(
            md.topic_by_id(&Uuid::nil()).map(|t| t.name.as_str()),
            Some("t")
        );
    }
}

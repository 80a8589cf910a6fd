//! Cluster metadata as this node serves it: an immutable snapshot every shard holds and swaps
//! whole when it changes (per-shard copy of a node-wide view). It is the controller's image
//! (brokers, topics, leaders, ISRs) plus where this node keeps each replica it hosts (its
//! shard), built on the controller shard each time the image moves (`from_image`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use skein_controller::acl::AclBinding;
use skein_controller::client_quota::ClientQuotaMap;
use skein_controller::image::{ClusterImage, ScramCredential, ScramMechanismCode, NO_LEADER};
use uuid::Uuid;

use crate::shard::ids::{NodeId, ShardId};

#[derive(Clone, Debug, PartialEq)]
pub struct PartitionMeta {
    /// The shard that owns this partition's replica on this node; None where it hosts none.
    pub shard: Option<ShardId>,
    /// -1 while the partition is offline.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Assignment order; the first is the preferred leader.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// A reassignment in progress (ListPartitionReassignments): replicas joining and leaving.
    pub adding_replicas: Vec<i32>,
    pub removing_replicas: Vec<i32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    /// Indexed by partition number.
    pub partitions: Vec<PartitionMeta>,
    /// Topic-level overrides only (Kafka config names); defaults come from the broker settings.
    pub configs: BTreeMap<String, String>,
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

/// The listener name brokers register their client endpoint under.
pub const CLIENT_LISTENER: &str = "PLAINTEXT";

#[derive(Clone, Debug)]
pub struct ClusterMetadata {
    pub cluster_id: String,
    pub node_id: NodeId,
    /// The controller's applied index this snapshot was built from; shards ignore an older one.
    pub revision: u64,
    /// The active controller's node id, -1 while none is known.
    pub controller_id: i32,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Live (unfenced) brokers, as Metadata lists them.
    pub brokers: Vec<BrokerEndpoint>,
    /// Producer ids below this have been handed out (KIP-360 epoch bumps check it).
    pub next_producer_id: i64,
    /// SCRAM credentials by (user, mechanism code); behind an Arc because snapshots are
    /// cloned whole when only the controller moves.
    pub scram_credentials: Arc<BTreeMap<(String, ScramMechanismCode), ScramCredential>>,
    /// ACL bindings, grouped by resource type; behind an Arc for the same reason.
    pub acls: Arc<Vec<AclBinding>>,
    /// Dynamic client quotas by entity, then key; behind an Arc for the same reason (and
    /// shared with the node's quota enforcement, see `quota::ClientQuotas::set_dynamic`).
    pub client_quotas: Arc<ClientQuotaMap>,
    topic_names_by_id: HashMap<Uuid, String>,
}

impl ClusterMetadata {
    pub fn new(cluster_id: String, node_id: NodeId) -> Self {
        ClusterMetadata {
            cluster_id,
            node_id,
            revision: 0,
            controller_id: -1,
            topics: BTreeMap::new(),
            brokers: Vec::new(),
            next_producer_id: 0,
            scram_credentials: Arc::default(),
            acls: Arc::default(),
            client_quotas: Arc::default(),
            topic_names_by_id: HashMap::new(),
        }
    }

    /// This node's view of `image` (applied through `revision`); `shard_of` says where each
    /// replica this node hosts lives.
    pub fn from_image(
        image: &ClusterImage,
        revision: u64,
        node_id: NodeId,
        controller_id: i32,
        mut shard_of: impl FnMut(Uuid, &str, i32) -> Option<ShardId>,
    ) -> Self {
        let mut md = ClusterMetadata::new(image.cluster_id.clone(), node_id);
        md.revision = revision;
        md.controller_id = controller_id;
        md.next_producer_id = image.next_producer_id;
        md.scram_credentials = Arc::new(image.scram_credentials.clone());
        md.acls = Arc::new(image.acls.iter().cloned().collect());
        md.client_quotas = Arc::new(image.client_quotas.clone());
        md.brokers = image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .filter_map(|b| {
                let e = b
                    .endpoints
                    .iter()
                    .find(|e| e.listener == CLIENT_LISTENER)
                    .or(b.endpoints.first())?;
                Some(BrokerEndpoint {
                    node_id: NodeId(b.id),
                    host: e.host.clone(),
                    port: e.port,
                    rack: b.rack.clone(),
                })
            })
            .collect();
        for t in image.topics.values() {
            let partitions = t
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let index = i32::try_from(i).unwrap_or(i32::MAX);
                    PartitionMeta {
                        shard: if p.replicas.contains(&node_id.0) {
                            shard_of(t.id, &t.name, index)
                        } else {
                            None
                        },
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                        adding_replicas: p.adding_replicas.clone(),
                        removing_replicas: p.removing_replicas.clone(),
                    }
                })
                .collect();
            md.topics.insert(
                t.name.clone(),
                TopicMeta {
                    name: t.name.clone(),
                    id: t.id,
                    partitions,
                    configs: t.configs.clone(),
                    internal: t.name.starts_with("__"),
                },
            );
        }
        md.reindex();
        md
    }

    /// Rebuilds derived indexes; call after changing topics.
    pub fn reindex(&mut self) {
        self.topic_names_by_id = self
            .topics
            .values()
            .map(|t| (t.id, t.name.clone()))
            .collect();
    }

    /// Where clients' requests for a partition run: its shard here if this node leads it.
    /// A partition led elsewhere (or offline) is NOT_LEADER_OR_FOLLOWER, so clients refresh.
    pub fn owner(&self, topic: &str, partition: i32) -> Result<PartitionOwner, ResponseError> {
        let p = self
            .partition(topic, partition)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        match p.shard {
            Some(shard) if p.leader == self.node_id.0 => Ok(PartitionOwner {
                shard,
                revision: self.revision,
            }),
            _ => Err(ResponseError::NotLeaderOrFollower),
        }
    }

    pub fn broker(&self, id: i32) -> Option<&BrokerEndpoint> {
        self.brokers.iter().find(|b| b.node_id.0 == id)
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
}

impl PartitionMeta {
    pub fn is_offline(&self) -> bool {
        self.leader == NO_LEADER
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

impl crate::sasl::CredentialStore for ClusterMetadata {
    fn scram_credential(&self, user: &str, code: ScramMechanismCode) -> Option<ScramCredential> {
        self.scram_credentials
            .get(&(user.to_string(), code))
            .cloned()
    }
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
                partitions: vec![
                    PartitionMeta {
                        shard: Some(ShardId(1)),
                        leader: 1,
                        leader_epoch: 0,
                        partition_epoch: 0,
                        replicas: vec![1, 2],
                        isr: vec![1, 2],
                        adding_replicas: Vec::new(),
                        removing_replicas: Vec::new(),
                    },
                    PartitionMeta {
                        shard: Some(ShardId(0)),
                        leader: 2,
                        leader_epoch: 3,
                        partition_epoch: 4,
                        replicas: vec![2, 1],
                        isr: vec![2, 1],
                        adding_replicas: Vec::new(),
                        removing_replicas: Vec::new(),
                    },
                ],
                configs: BTreeMap::new(),
                internal: false,
            },
        );
        md.reindex();
        assert_eq!(md.owner("t", 0).map(|o| o.shard), Ok(ShardId(1)));
        assert_eq!(md.owner("t", 1), Err(ResponseError::NotLeaderOrFollower));
        assert_eq!(
            md.owner("t", 2),
            Err(ResponseError::UnknownTopicOrPartition)
        );
        assert_eq!(
            md.owner("t", -1),
            Err(ResponseError::UnknownTopicOrPartition)
        );
        assert_eq!(
            md.owner("u", 0),
            Err(ResponseError::UnknownTopicOrPartition)
        );
        assert_eq!(
            md.topic_by_id(&Uuid::nil()).map(|t| t.name.as_str()),
            Some("t")
        );
    }
}

//! The cluster metadata image: what every committed metadata record adds up to. Records are the
//! only way it changes, so every voter and every broker that applies the same log holds the same
//! image. Pure data; no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::acl::AclBinding;
use crate::client_quota::{ClientQuotaMap, QuotaEntity, QuotaValue};

/// A broker's node id (Kafka's `broker.id` / `node.id`).
pub type BrokerId = i32;

/// No leader: the partition is offline.
pub const NO_LEADER: BrokerId = -1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub id: BrokerId,
    /// A fresh id per process start: a restart replaces the old registration.
    pub incarnation: Uuid,
    /// The log offset of the registering record; heartbeats must name it.
    pub epoch: i64,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    /// Fenced brokers lead nothing and are in no ISR.
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionState {
    /// Assignment order: the first is the preferred leader. During a reassignment: the target
    /// replicas, then those being removed.
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub leader: BrokerId,
    /// Bumped on every leader change; clients and followers fence on it.
    pub leader_epoch: i32,
    /// Bumped on every change; ISR updates from leaders compare-and-set on it.
    pub partition_epoch: i32,
    /// A reassignment in progress: replicas joining (not in the original assignment) and
    /// leaving (not in the target). Both empty otherwise.
    pub adding_replicas: Vec<BrokerId>,
    pub removing_replicas: Vec<BrokerId>,
}

impl PartitionState {
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// Where a reassignment in progress is going (the replicas without those being removed);
    /// the replicas when none is.
    pub fn target_replicas(&self) -> Vec<BrokerId> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }

    /// Where a reassignment in progress started from (the replicas without those being added).
    pub fn original_replicas(&self) -> Vec<BrokerId> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding_replicas.contains(r))
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicState {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionState>,
    pub configs: BTreeMap<String, String>,
}

/// One committed metadata change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataRecord {
    RegisterBroker(BrokerRegistration),
    FenceBroker {
        id: BrokerId,
        epoch: i64,
    },
    UnfenceBroker {
        id: BrokerId,
        epoch: i64,
    },
    BeginControlledShutdown {
        id: BrokerId,
        epoch: i64,
    },
    Topic {
        name: String,
        id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// A new partition (creation or CreatePartitions), in partition order.
    Partition {
        topic_id: Uuid,
        partition: i32,
        state: PartitionState,
    },
    /// A change of leader and/or ISR; epochs are carried, not derived, so replay is exact.
    PartitionChange {
        topic_id: Uuid,
        partition: i32,
        leader: BrokerId,
        isr: Vec<BrokerId>,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    RemoveTopic {
        id: Uuid,
    },
    Config {
        topic_id: Uuid,
        key: String,
        value: Option<String>,
    },
    /// The next producer id block start, after a block was handed to `broker`.
    ProducerIds {
        broker: BrokerId,
        next_block_start: i64,
    },
    /// The cluster's id (Kafka's 22-character cluster id), written once by the first active
    /// controller; later ones are ignored.
    ClusterId {
        id: String,
    },
    /// A partition's whole replica set with its leader and ISR: a reassignment starting,
    /// completing or being cancelled.
    PartitionReplicas {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<BrokerId>,
        adding_replicas: Vec<BrokerId>,
        removing_replicas: Vec<BrokerId>,
        leader: BrokerId,
        isr: Vec<BrokerId>,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    /// A user's SCRAM credential for one mechanism, set or replaced.
    UserScramCredential {
        user: String,
        mechanism: ScramMechanismCode,
        credential: ScramCredential,
    },
    RemoveUserScramCredential {
        user: String,
        mechanism: ScramMechanismCode,
    },
    /// An ACL binding added (adding one that exists changes nothing).
    CreateAcl(AclBinding),
    /// An ACL binding removed (removing one that does not exist changes nothing).
    DeleteAcl(AclBinding),
    /// A client quota set (`Some`) or removed (`None`) for one key of one entity; an entity
    /// left without keys is gone.
    ClientQuota {
        entity: QuotaEntity,
        key: String,
        value: Option<QuotaValue>,
    },
}

/// Kafka's ScramMechanism code: 1 SCRAM-SHA-256, 2 SCRAM-SHA-512.
pub type ScramMechanismCode = i8;

/// What a SCRAM server keeps of a password (RFC 5802): enough to verify a client proof and to
/// prove itself, never the password or anything that logs a client in by itself.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: i32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

// Keys stay out of logs and panics.
impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterImage {
    pub brokers: BTreeMap<BrokerId, BrokerRegistration>,
    pub topics: BTreeMap<Uuid, TopicState>,
    pub topic_ids: BTreeMap<String, Uuid>,
    pub next_producer_id: i64,
    /// Empty until the first active controller names the cluster.
    pub cluster_id: String,
    /// SCRAM credentials by (user, mechanism).
    pub scram_credentials: BTreeMap<(String, ScramMechanismCode), ScramCredential>,
    /// ACL bindings, ordered by resource type first.
    pub acls: BTreeSet<AclBinding>,
    /// Client quotas by entity, then key; no entity is without keys.
    pub client_quotas: ClientQuotaMap,
}

impl ClusterImage {
    pub fn topic(&self, name: &str) -> Option<&TopicState> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn partition(&self, topic_id: Uuid, partition: i32) -> Option<&PartitionState> {
        let t = self.topics.get(&topic_id)?;
        t.partitions.get(usize::try_from(partition).ok()?)
    }

    /// Brokers that may lead and be in an ISR now.
    pub fn is_active(&self, id: BrokerId) -> bool {
        self.brokers
            .get(&id)
            .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
    }

    /// Every (topic id, partition) whose replicas include `broker`.
    pub fn partitions_with(&self, broker: BrokerId) -> Vec<(Uuid, i32, &PartitionState)> {
        let mut out = Vec::new();
        for t in self.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.replicas.contains(&broker) {
                    out.push((t.id, i32::try_from(i).unwrap_or(i32::MAX), p));
                }
            }
        }
        out
    }

    /// Applies one committed record. A record that names something unknown is a no-op: the log
    /// is the truth, and replay must never fail half-way.
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::RegisterBroker(r) => {
                self.brokers.insert(r.id, r.clone());
            }
            MetadataRecord::FenceBroker { id, epoch } => {
                if let Some(b) = self.brokers.get_mut(id).filter(|b| b.epoch == *epoch) {
                    b.fenced = true;
                    b.in_controlled_shutdown = false;
                }
            }
            MetadataRecord::UnfenceBroker { id, epoch } => {
                if let Some(b) = self.brokers.get_mut(id).filter(|b| b.epoch == *epoch) {
                    b.fenced = false;
                }
            }
            MetadataRecord::BeginControlledShutdown { id, epoch } => {
                if let Some(b) = self.brokers.get_mut(id).filter(|b| b.epoch == *epoch) {
                    b.in_controlled_shutdown = true;
                }
            }
            MetadataRecord::Topic { name, id, configs } => {
                self.topic_ids.insert(name.clone(), *id);
                self.topics.insert(
                    *id,
                    TopicState {
                        name: name.clone(),
                        id: *id,
                        partitions: Vec::new(),
                        configs: configs.clone(),
                    },
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                state,
            } => {
                if let Some(t) = self.topics.get_mut(topic_id) {
                    if usize::try_from(*partition).ok() == Some(t.partitions.len()) {
                        t.partitions.push(state.clone());
                    }
                }
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                leader_epoch,
                partition_epoch,
            } => {
                let p = self
                    .topics
                    .get_mut(topic_id)
                    .and_then(|t| t.partitions.get_mut(usize::try_from(*partition).ok()?));
                if let Some(p) = p {
                    p.leader = *leader;
                    p.isr = isr.clone();
                    p.leader_epoch = *leader_epoch;
                    p.partition_epoch = *partition_epoch;
                }
            }
            MetadataRecord::RemoveTopic { id } => {
                if let Some(t) = self.topics.remove(id) {
                    self.topic_ids.remove(&t.name);
                }
            }
            MetadataRecord::Config {
                topic_id,
                key,
                value,
            } => {
                if let Some(t) = self.topics.get_mut(topic_id) {
                    match value {
                        Some(v) => t.configs.insert(key.clone(), v.clone()),
                        None => t.configs.remove(key),
                    };
                }
            }
            MetadataRecord::ProducerIds {
                next_block_start, ..
            } => {
                self.next_producer_id = self.next_producer_id.max(*next_block_start);
            }
            MetadataRecord::ClusterId { id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = id.clone();
                }
            }
            MetadataRecord::PartitionReplicas {
                topic_id,
                partition,
                replicas,
                adding_replicas,
                removing_replicas,
                leader,
                isr,
                leader_epoch,
                partition_epoch,
            } => {
                let p = self
                    .topics
                    .get_mut(topic_id)
                    .and_then(|t| t.partitions.get_mut(usize::try_from(*partition).ok()?));
                if let Some(p) = p {
                    *p = PartitionState {
                        replicas: replicas.clone(),
                        isr: isr.clone(),
                        leader: *leader,
                        leader_epoch: *leader_epoch,
                        partition_epoch: *partition_epoch,
                        adding_replicas: adding_replicas.clone(),
                        removing_replicas: removing_replicas.clone(),
                    };
                }
            }
            MetadataRecord::UserScramCredential {
                user,
                mechanism,
                credential,
            } => {
                self.scram_credentials
                    .insert((user.clone(), *mechanism), credential.clone());
            }
            MetadataRecord::RemoveUserScramCredential { user, mechanism } => {
                self.scram_credentials.remove(&(user.clone(), *mechanism));
            }
            MetadataRecord::CreateAcl(binding) => {
                self.acls.insert(binding.clone());
            }
            MetadataRecord::DeleteAcl(binding) => {
                self.acls.remove(binding);
            }
            MetadataRecord::ClientQuota { entity, key, value } => match value {
                Some(v) => {
                    let keys = self.client_quotas.entry(entity.clone()).or_default();
                    keys.insert(key.clone(), *v);
                }
                None => {
                    if let Some(keys) = self.client_quotas.get_mut(entity) {
                        keys.remove(key);
                        if keys.is_empty() {
                            self.client_quotas.remove(entity);
                        }
                    }
                }
            },
        }
    }
}

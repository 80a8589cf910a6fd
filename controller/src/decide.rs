//! The active controller's decisions: given the committed image and a request or an event, the
//! records to propose. Nothing here mutates the image; a decision takes effect only when its
//! records commit and are applied, on every voter alike.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::image::{
    BrokerId, BrokerRegistration, ClusterImage, MetadataRecord, PartitionState, NO_LEADER,
};
use crate::placement::{self, Candidate};

mod reassign;

pub use reassign::{alter_reassignments, complete_reassignments, ReassignError, Reassignments};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("broker {id} is registered by another live process")]
    DuplicateBrokerId { id: BrokerId },
    #[error("broker {id} is not registered")]
    UnknownBroker { id: BrokerId },
    #[error("broker {id}: epoch {got} is stale (current {current})")]
    StaleBrokerEpoch {
        id: BrokerId,
        got: i64,
        current: i64,
    },
    #[error("topic {name} already exists")]
    TopicExists { name: String },
    #[error("topic {name} does not exist")]
    UnknownTopic { name: String },
    #[error("replication factor {requested} is larger than the {available} live brokers")]
    InvalidReplicationFactor { requested: usize, available: usize },
    #[error("invalid partition count {count}")]
    InvalidPartitions { count: i64 },
    #[error("partition {topic_id}/{partition}: epoch {got} is stale (current {current})")]
    StalePartitionEpoch {
        topic_id: Uuid,
        partition: i32,
        got: i32,
        current: i32,
    },
    #[error("invalid ISR {isr:?}: {reason}")]
    InvalidIsr { isr: Vec<BrokerId>, reason: String },
}

pub type Result<T> = std::result::Result<T, DecideError>;

/// A topic config that lets an out-of-sync replica lead when no ISR member is left.
pub const UNCLEAN_ELECTION_CONFIG: &str = "unclean.leader.election.enable";

/// Registration: a new process for `id` replaces the old one unless the old one is still alive
/// (heartbeating) with another incarnation. The broker starts fenced; everything the previous
/// incarnation led moves away as if it had been fenced.
pub fn register_broker(
    image: &ClusterImage,
    registration: BrokerRegistration,
    old_is_alive: bool,
) -> Result<Vec<MetadataRecord>> {
    let id = registration.id;
    let mut records = Vec::new();
    if let Some(old) = image.brokers.get(&id) {
        if old.incarnation != registration.incarnation && old_is_alive && !old.fenced {
            return Err(DecideError::DuplicateBrokerId { id });
        }
        if !old.fenced {
            records.extend(fence_broker(image, id)?);
        }
    }
    records.push(MetadataRecord::RegisterBroker(BrokerRegistration {
        fenced: true,
        in_controlled_shutdown: false,
        ..registration
    }));
    Ok(records)
}

fn check_epoch(image: &ClusterImage, id: BrokerId, epoch: i64) -> Result<&BrokerRegistration> {
    let b = image
        .brokers
        .get(&id)
        .ok_or(DecideError::UnknownBroker { id })?;
    if b.epoch != epoch {
        return Err(DecideError::StaleBrokerEpoch {
            id,
            got: epoch,
            current: b.epoch,
        });
    }
    Ok(b)
}

/// The image as it will be once `records` apply (decisions that build on their own records).
fn after(image: &ClusterImage, records: &[MetadataRecord]) -> ClusterImage {
    let mut next = image.clone();
    for r in records {
        next.apply(r);
    }
    next
}

/// Fencing a silent (or replaced) broker: it leaves every ISR (the last member stays, so the
/// ISR is never empty and the partition knows who may come back), and every partition it led
/// gets a new leader from the rest of its ISR, or goes offline.
pub fn fence_broker(image: &ClusterImage, id: BrokerId) -> Result<Vec<MetadataRecord>> {
    let b = image
        .brokers
        .get(&id)
        .ok_or(DecideError::UnknownBroker { id })?;
    let mut records = vec![MetadataRecord::FenceBroker { id, epoch: b.epoch }];
    let fenced = after(image, &records);
    for (topic_id, partition, p) in fenced.partitions_with(id) {
        let unclean = unclean_allowed(&fenced, topic_id);
        if let Some(change) = without_broker(&fenced, topic_id, partition, p, id, unclean) {
            records.push(change);
        }
    }
    Ok(records)
}

/// A stopping broker hands its leaderships to other ISR members before it goes.
pub fn controlled_shutdown(
    image: &ClusterImage,
    id: BrokerId,
    epoch: i64,
) -> Result<Vec<MetadataRecord>> {
    check_epoch(image, id, epoch)?;
    let mut records = vec![MetadataRecord::BeginControlledShutdown { id, epoch }];
    let stopping = after(image, &records);
    for (topic_id, partition, p) in stopping.partitions_with(id) {
        if let Some(change) = without_broker(&stopping, topic_id, partition, p, id, false) {
            records.push(change);
        }
    }
    Ok(records)
}

fn unclean_allowed(image: &ClusterImage, topic_id: Uuid) -> bool {
    image
        .topics
        .get(&topic_id)
        .and_then(|t| t.configs.get(UNCLEAN_ELECTION_CONFIG))
        .is_some_and(|v| v == "true")
}

/// The change that takes `gone` out of a partition's ISR and leadership, if any.
fn without_broker(
    image: &ClusterImage,
    topic_id: Uuid,
    partition: i32,
    p: &PartitionState,
    gone: BrokerId,
    unclean: bool,
) -> Option<MetadataRecord> {
    let in_isr = p.isr.contains(&gone);
    if !in_isr && p.leader != gone {
        return None;
    }
    let mut isr: Vec<BrokerId> = p.isr.iter().copied().filter(|b| *b != gone).collect();
    let mut leader = p.leader;
    if p.leader == gone {
        leader = first_eligible(image, &p.replicas, &isr).unwrap_or(NO_LEADER);
        if leader == NO_LEADER && unclean {
            if let Some(l) = p.replicas.iter().copied().find(|r| image.is_active(*r)) {
                leader = l;
                isr = vec![l];
            }
        }
    }
    if isr.is_empty() {
        // Never empty: the last member stays so that it, and only it, may lead again.
        isr = vec![gone];
    }
    Some(change(topic_id, partition, p, leader, isr))
}

/// The first replica in assignment order that is in `isr` and active.
fn first_eligible(
    image: &ClusterImage,
    replicas: &[BrokerId],
    isr: &[BrokerId],
) -> Option<BrokerId> {
    replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && image.is_active(*r))
}

fn change(
    topic_id: Uuid,
    partition: i32,
    p: &PartitionState,
    leader: BrokerId,
    isr: Vec<BrokerId>,
) -> MetadataRecord {
    let leader_epoch = if leader != p.leader {
        p.leader_epoch + 1
    } else {
        p.leader_epoch
    };
    MetadataRecord::PartitionChange {
        topic_id,
        partition,
        leader,
        isr,
        leader_epoch,
        partition_epoch: p.partition_epoch + 1,
    }
}

/// A caught-up fenced broker is unfenced, and offline partitions it can lead come back.
pub fn unfence_broker(
    image: &ClusterImage,
    id: BrokerId,
    epoch: i64,
) -> Result<Vec<MetadataRecord>> {
    check_epoch(image, id, epoch)?;
    let mut records = vec![MetadataRecord::UnfenceBroker { id, epoch }];
    let unfenced = after(image, &records);
    for (topic_id, partition, p) in unfenced.partitions_with(id) {
        if p.leader == NO_LEADER {
            if let Some(leader) = first_eligible(&unfenced, &p.replicas, &p.isr) {
                records.push(change(topic_id, partition, p, leader, p.isr.clone()));
            }
        }
    }
    Ok(records)
}

/// Preferred-leader election: leadership goes back to the first replica wherever it is active
/// and in sync.
pub fn preferred_elections(image: &ClusterImage) -> Vec<MetadataRecord> {
    elect_leaders(image, ElectionKind::Preferred, None).records
}

/// The two kinds of on-demand election (Kafka's ElectionType).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionKind {
    /// Leadership to the first replica in assignment order, if it is active and in sync.
    Preferred,
    /// A leader for a partition that has none, out of sync if no ISR member is left: records
    /// only the old ISR had are lost, which is why only an admin asks for it.
    Unclean,
}

/// What an on-demand election found for one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionOutcome {
    Elected,
    /// It already has the leader asked for (ELECTION_NOT_NEEDED).
    NotNeeded,
    /// The preferred replica is fenced or out of sync (PREFERRED_LEADER_NOT_AVAILABLE).
    PreferredNotAvailable,
    /// No replica is active (ELIGIBLE_LEADERS_NOT_AVAILABLE).
    NoEligibleLeader,
    UnknownPartition,
}

#[derive(Debug, Default)]
pub struct Elections {
    pub records: Vec<MetadataRecord>,
    /// `(topic, partition, outcome)` per partition asked for, in request order; for every
    /// partition (`None`), only those where an election was needed.
    pub outcomes: Vec<(String, i32, ElectionOutcome)>,
}

/// An on-demand election over `partitions` (`None`: every partition).
pub fn elect_leaders(
    image: &ClusterImage,
    kind: ElectionKind,
    partitions: Option<&[(String, i32)]>,
) -> Elections {
    let mut out = Elections::default();
    match partitions {
        Some(asked) => {
            let mut seen = BTreeMap::new();
            for (name, partition) in asked {
                let key = (name.as_str(), *partition);
                let outcome = match seen.get(&key) {
                    // Asked twice: one election, the same answer.
                    Some(outcome) => *outcome,
                    None => {
                        let found = image.topic(name).and_then(|t| {
                            let p = t.partitions.get(usize::try_from(*partition).ok()?)?;
                            Some((t.id, p))
                        });
                        let outcome = match found {
                            Some((id, p)) => elect_one(image, kind, id, *partition, p, &mut out),
                            None => ElectionOutcome::UnknownPartition,
                        };
                        seen.insert(key, outcome);
                        outcome
                    }
                };
                out.outcomes.push((name.clone(), *partition, outcome));
            }
        }
        None => {
            for (name, id) in &image.topic_ids {
                let Some(t) = image.topics.get(id) else {
                    continue;
                };
                for (i, p) in t.partitions.iter().enumerate() {
                    let partition = i32::try_from(i).unwrap_or(i32::MAX);
                    let outcome = elect_one(image, kind, *id, partition, p, &mut out);
                    if outcome != ElectionOutcome::NotNeeded {
                        out.outcomes.push((name.clone(), partition, outcome));
                    }
                }
            }
        }
    }
    out
}

fn elect_one(
    image: &ClusterImage,
    kind: ElectionKind,
    topic_id: Uuid,
    partition: i32,
    p: &PartitionState,
    out: &mut Elections,
) -> ElectionOutcome {
    let (leader, isr) = match kind {
        ElectionKind::Preferred => {
            let Some(&preferred) = p.replicas.first() else {
                return ElectionOutcome::PreferredNotAvailable;
            };
            if p.leader == preferred {
                return ElectionOutcome::NotNeeded;
            }
            if !p.isr.contains(&preferred) || !image.is_active(preferred) {
                return ElectionOutcome::PreferredNotAvailable;
            }
            (preferred, p.isr.clone())
        }
        ElectionKind::Unclean => {
            if p.leader != NO_LEADER {
                return ElectionOutcome::NotNeeded;
            }
            if let Some(clean) = first_eligible(image, &p.replicas, &p.isr) {
                (clean, p.isr.clone())
            } else if let Some(l) = p.replicas.iter().copied().find(|r| image.is_active(*r)) {
                (l, vec![l])
            } else {
                return ElectionOutcome::NoEligibleLeader;
            }
        }
    };
    out.records
        .push(change(topic_id, partition, p, leader, isr));
    ElectionOutcome::Elected
}

fn candidates(image: &ClusterImage) -> Vec<Candidate> {
    let mut load: BTreeMap<BrokerId, (usize, usize)> = BTreeMap::new();
    for t in image.topics.values() {
        for p in &t.partitions {
            for (i, r) in p.replicas.iter().enumerate() {
                let e = load.entry(*r).or_default();
                e.1 += 1;
                if i == 0 {
                    e.0 += 1;
                }
            }
        }
    }
    image
        .brokers
        .values()
        .filter(|b| image.is_active(b.id))
        .map(|b| {
            let (leaders, replicas) = load.get(&b.id).copied().unwrap_or_default();
            Candidate {
                id: b.id,
                rack: b.rack.clone(),
                leaders,
                replicas,
            }
        })
        .collect()
}

fn new_partitions(
    image: &ClusterImage,
    topic_id: Uuid,
    first: i32,
    count: usize,
    rf: usize,
) -> Result<Vec<MetadataRecord>> {
    let live = candidates(image);
    let plan =
        placement::assign(&live, count, rf).ok_or(DecideError::InvalidReplicationFactor {
            requested: rf,
            available: live.len(),
        })?;
    Ok(plan
        .into_iter()
        .enumerate()
        .map(|(i, replicas)| MetadataRecord::Partition {
            topic_id,
            partition: first + i32::try_from(i).unwrap_or(i32::MAX),
            state: PartitionState {
                leader: replicas[0],
                isr: replicas.clone(),
                replicas,
                leader_epoch: 0,
                partition_epoch: 0,
                ..PartitionState::default()
            },
        })
        .collect())
}

/// A new topic: its record, then every partition placed over the live brokers. The records
/// commit as one batch, so a topic exists whole or not at all.
pub fn create_topic(
    image: &ClusterImage,
    name: &str,
    id: Uuid,
    partitions: i32,
    replication_factor: usize,
    configs: BTreeMap<String, String>,
) -> Result<Vec<MetadataRecord>> {
    if image.topic_ids.contains_key(name) {
        return Err(DecideError::TopicExists {
            name: name.to_string(),
        });
    }
    let count = usize::try_from(partitions).ok().filter(|c| *c > 0).ok_or(
        DecideError::InvalidPartitions {
            count: i64::from(partitions),
        },
    )?;
    let mut records = vec![MetadataRecord::Topic {
        name: name.to_string(),
        id,
        configs,
    }];
    records.extend(new_partitions(image, id, 0, count, replication_factor)?);
    Ok(records)
}

/// CreatePartitions: grows a topic to `total` partitions, with its current replication factor.
pub fn create_partitions(
    image: &ClusterImage,
    name: &str,
    total: i32,
) -> Result<Vec<MetadataRecord>> {
    let t = image.topic(name).ok_or_else(|| DecideError::UnknownTopic {
        name: name.to_string(),
    })?;
    let have = t.partitions.len();
    let want = usize::try_from(total).unwrap_or(0);
    if want <= have {
        return Err(DecideError::InvalidPartitions {
            count: i64::from(total),
        });
    }
    let rf = t.partitions.first().map_or(1, |p| p.replicas.len());
    let first = i32::try_from(have).unwrap_or(i32::MAX);
    new_partitions(image, t.id, first, want - have, rf)
}

pub fn delete_topic(image: &ClusterImage, name: &str) -> Result<Vec<MetadataRecord>> {
    let t = image.topic(name).ok_or_else(|| DecideError::UnknownTopic {
        name: name.to_string(),
    })?;
    Ok(vec![MetadataRecord::RemoveTopic { id: t.id }])
}

/// An ISR change proposed by a partition's leader: compare-and-set on the partition epoch; the
/// leader stays in it and only active replicas may join.
pub fn alter_isr(
    image: &ClusterImage,
    topic_id: Uuid,
    partition: i32,
    partition_epoch: i32,
    isr: Vec<BrokerId>,
) -> Result<MetadataRecord> {
    let p = image
        .partition(topic_id, partition)
        .ok_or(DecideError::InvalidPartitions {
            count: i64::from(partition),
        })?;
    if partition_epoch != p.partition_epoch {
        return Err(DecideError::StalePartitionEpoch {
            topic_id,
            partition,
            got: partition_epoch,
            current: p.partition_epoch,
        });
    }
    let invalid = |reason: &str| DecideError::InvalidIsr {
        isr: isr.clone(),
        reason: reason.to_string(),
    };
    if !isr.contains(&p.leader) {
        return Err(invalid("the leader must stay in the ISR"));
    }
    if isr.iter().any(|b| !p.replicas.contains(b)) {
        return Err(invalid("every member must be a replica"));
    }
    if isr
        .iter()
        .any(|b| !p.isr.contains(b) && !image.is_active(*b))
    {
        return Err(invalid("a fenced broker cannot join the ISR"));
    }
    Ok(change(topic_id, partition, p, p.leader, isr))
}

#[cfg(test)]
mod tests;

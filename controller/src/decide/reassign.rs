//! Partition reassignment (Kafka's AlterPartitionReassignments, KIP-455): the target replicas
//! join the replica set, each catches up and joins the ISR, and once all of them are in sync the
//! replicas that are not in the target leave and leadership moves to the target's first
//! replica. Nothing here waits: starting writes one record, and the active controller's regular
//! check completes every reassignment whose target is in sync.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::first_eligible;
use crate::image::{BrokerId, ClusterImage, MetadataRecord, PartitionState, NO_LEADER};

/// Why a partition's reassignment was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReassignError {
    UnknownPartition,
    /// INVALID_REPLICA_ASSIGNMENT, with the reason.
    InvalidAssignment(String),
    /// A cancel for a partition that is not being reassigned.
    NoReassignmentInProgress,
}

#[derive(Debug, Default)]
pub struct Reassignments {
    pub records: Vec<MetadataRecord>,
    /// `(topic, partition, outcome)` per partition asked for, in request order.
    pub outcomes: Vec<(String, i32, Result<(), ReassignError>)>,
}

/// Starts, replaces or (`None` as the target) cancels the reassignment of each partition.
pub fn alter_reassignments(
    image: &ClusterImage,
    asked: &[(String, i32, Option<Vec<BrokerId>>)],
) -> Reassignments {
    let mut out = Reassignments::default();
    // Later items see earlier ones' effect (a partition named twice ends as the last says).
    let mut next = image.clone();
    for (name, partition, target) in asked {
        let found = next.topic(name).and_then(|t| {
            let p = t.partitions.get(usize::try_from(*partition).ok()?)?;
            Some((t.id, p.clone()))
        });
        let outcome = match found {
            None => Err(ReassignError::UnknownPartition),
            Some((id, p)) => match target {
                Some(target) => start(&next, id, *partition, &p, target),
                None => cancel(&next, id, *partition, &p),
            },
        };
        let outcome = outcome.map(|records| {
            for r in &records {
                next.apply(r);
            }
            out.records.extend(records);
        });
        out.outcomes.push((name.clone(), *partition, outcome));
    }
    out
}

fn start(
    image: &ClusterImage,
    topic_id: Uuid,
    partition: i32,
    p: &PartitionState,
    target: &[BrokerId],
) -> Result<Vec<MetadataRecord>, ReassignError> {
    let invalid = |why: String| Err(ReassignError::InvalidAssignment(why));
    if target.is_empty() {
        return invalid("the target replica list is empty".into());
    }
    if target.iter().collect::<BTreeSet<_>>().len() != target.len() {
        return invalid(format!("broker listed twice in {target:?}"));
    }
    if let Some(b) = target.iter().find(|b| !image.brokers.contains_key(b)) {
        return invalid(format!("broker {b} is not registered"));
    }
    let original = p.original_replicas();
    if !p.is_reassigning() && original == target {
        return Ok(Vec::new());
    }
    let adding: Vec<BrokerId> = target
        .iter()
        .copied()
        .filter(|b| !original.contains(b))
        .collect();
    let removing: Vec<BrokerId> = original
        .iter()
        .copied()
        .filter(|b| !target.contains(b))
        .collect();
    // Nothing to copy (a reorder, or only replicas leaving, all of the target in sync): done
    // in one step.
    if target.iter().all(|b| p.isr.contains(b)) {
        return Ok(vec![finish(image, topic_id, partition, p, target.to_vec())]);
    }
    let mut replicas = target.to_vec();
    replicas.extend(&removing);
    Ok(vec![replace(
        image, topic_id, partition, p, replicas, adding, removing,
    )])
}

fn cancel(
    image: &ClusterImage,
    topic_id: Uuid,
    partition: i32,
    p: &PartitionState,
) -> Result<Vec<MetadataRecord>, ReassignError> {
    if !p.is_reassigning() {
        return Err(ReassignError::NoReassignmentInProgress);
    }
    let original = p.original_replicas();
    if !p.isr.iter().any(|b| original.contains(b)) {
        return Err(ReassignError::InvalidAssignment(
            "no replica of the original assignment is in sync: cancelling would leave the \
             partition without one"
                .into(),
        ));
    }
    Ok(vec![replace(
        image,
        topic_id,
        partition,
        p,
        original,
        Vec::new(),
        Vec::new(),
    )])
}

/// The record that gives `p` a new replica set: the ISR keeps only members of it, and a leader
/// outside it hands over to the first eligible replica.
fn replace(
    image: &ClusterImage,
    topic_id: Uuid,
    partition: i32,
    p: &PartitionState,
    replicas: Vec<BrokerId>,
    adding_replicas: Vec<BrokerId>,
    removing_replicas: Vec<BrokerId>,
) -> MetadataRecord {
    let isr = isr_within(p, &replicas);
    let leader = if replicas.contains(&p.leader) {
        p.leader
    } else {
        first_eligible(image, &replicas, &isr).unwrap_or(NO_LEADER)
    };
    partition_replicas(
        topic_id,
        partition,
        p,
        replicas,
        adding_replicas,
        removing_replicas,
        leader,
        isr,
    )
}

/// `p`'s ISR members that are in `replicas`, in ISR order.
fn isr_within(p: &PartitionState, replicas: &[BrokerId]) -> Vec<BrokerId> {
    p.isr
        .iter()
        .copied()
        .filter(|b| replicas.contains(b))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn partition_replicas(
    topic_id: Uuid,
    partition: i32,
    p: &PartitionState,
    replicas: Vec<BrokerId>,
    adding_replicas: Vec<BrokerId>,
    removing_replicas: Vec<BrokerId>,
    leader: BrokerId,
    isr: Vec<BrokerId>,
) -> MetadataRecord {
    MetadataRecord::PartitionReplicas {
        topic_id,
        partition,
        replicas,
        adding_replicas,
        removing_replicas,
        leader,
        isr,
        leader_epoch: if leader != p.leader {
            p.leader_epoch + 1
        } else {
            p.leader_epoch
        },
        partition_epoch: p.partition_epoch + 1,
    }
}

/// The record that completes `p`'s reassignment, once every target replica is in the ISR.
fn completion(
    image: &ClusterImage,
    topic_id: Uuid,
    partition: i32,
    p: &PartitionState,
) -> Option<MetadataRecord> {
    if !p.is_reassigning() {
        return None;
    }
    let target = p.target_replicas();
    if target.is_empty() || !target.iter().all(|r| p.isr.contains(r)) {
        return None;
    }
    Some(finish(image, topic_id, partition, p, target))
}

/// `p` with exactly `target` (all in sync) as its replicas: the others leave, and the target's
/// first replica leads (the plan names it preferred).
fn finish(
    image: &ClusterImage,
    topic_id: Uuid,
    partition: i32,
    p: &PartitionState,
    target: Vec<BrokerId>,
) -> MetadataRecord {
    let isr = isr_within(p, &target);
    let leader = match target.first() {
        Some(first) if image.is_active(*first) && isr.contains(first) => *first,
        _ if target.contains(&p.leader) => p.leader,
        _ => first_eligible(image, &target, &isr).unwrap_or(NO_LEADER),
    };
    partition_replicas(
        topic_id,
        partition,
        p,
        target,
        Vec::new(),
        Vec::new(),
        leader,
        isr,
    )
}

/// Completes every reassignment whose target replicas are all in sync.
pub fn complete_reassignments(image: &ClusterImage) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            let partition = i32::try_from(i).unwrap_or(i32::MAX);
            if let Some(r) = completion(image, t.id, partition, p) {
                records.push(r);
            }
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{alter_isr, create_topic, fence_broker, register_broker, unfence_broker};
    use super::*;
    use crate::image::BrokerRegistration;

    fn apply(image: &mut ClusterImage, records: &[MetadataRecord]) {
        for r in records {
            image.apply(r);
        }
    }

    /// Brokers 1..=4 (4 holds nothing) and topic "t": one partition on 1, 2, 3.
    fn cluster() -> (ClusterImage, Uuid) {
        let mut image = ClusterImage::default();
        for id in 1..=3 {
            let epoch = i64::from(id) * 10;
            let reg = BrokerRegistration {
                id,
                incarnation: Uuid::from_u128(u128::try_from(id).unwrap_or(0)),
                epoch,
                endpoints: Vec::new(),
                rack: None,
                fenced: true,
                in_controlled_shutdown: false,
            };
            let r = register_broker(&image, reg, false).expect("register");
            apply(&mut image, &r);
            let r = unfence_broker(&image, id, epoch).expect("unfence");
            apply(&mut image, &r);
        }
        let id = Uuid::from_u128(5);
        let r = create_topic(&image, "t", id, 1, 3, BTreeMap::new()).expect("create");
        apply(&mut image, &r);
        let reg = BrokerRegistration {
            id: 4,
            incarnation: Uuid::from_u128(4),
            epoch: 40,
            endpoints: Vec::new(),
            rack: None,
            fenced: true,
            in_controlled_shutdown: false,
        };
        let r = register_broker(&image, reg, false).expect("register 4");
        apply(&mut image, &r);
        let r = unfence_broker(&image, 4, 40).expect("unfence 4");
        apply(&mut image, &r);
        (image, id)
    }

    fn asked(target: Option<Vec<BrokerId>>) -> Vec<(String, i32, Option<Vec<BrokerId>>)> {
        vec![("t".to_string(), 0, target)]
    }

    #[test]
    fn a_move_adds_first_completes_when_in_sync_and_moves_leadership() {
        let (mut image, id) = cluster();
        let before = image.topics[&id].partitions[0].clone();
        let leaving = before.replicas[0];
        let mut target: Vec<BrokerId> = vec![4];
        target.extend(before.replicas.iter().copied().filter(|b| *b != leaving));
        let r = alter_reassignments(&image, &asked(Some(target.clone())));
        assert_eq!(r.outcomes[0].2, Ok(()));
        assert_eq!(r.records.len(), 1, "4 is not in sync yet: started only");
        apply(&mut image, &r.records);
        let p = image.topics[&id].partitions[0].clone();
        assert_eq!(p.adding_replicas, vec![4]);
        assert_eq!(p.removing_replicas, vec![leaving]);
        assert_eq!(p.replicas.len(), 4, "target and leaving, together");
        assert_eq!(p.leader, before.leader, "leadership stays while copying");
        assert!(complete_reassignments(&image).is_empty());
        // 4 catches up: the leader adds it to the ISR; the check completes the move.
        let mut isr = p.isr.clone();
        isr.push(4);
        let r = [alter_isr(&image, id, 0, p.partition_epoch, isr).expect("expand")];
        apply(&mut image, &r);
        let done = complete_reassignments(&image);
        assert_eq!(done.len(), 1);
        apply(&mut image, &done);
        let p = &image.topics[&id].partitions[0];
        assert_eq!(p.replicas, target);
        assert!(!p.is_reassigning());
        assert!(!p.isr.contains(&leaving));
        assert_eq!(p.leader, 4, "the target's first replica leads");
        assert_eq!(p.leader_epoch, before.leader_epoch + 1);
        assert!(complete_reassignments(&image).is_empty());
    }

    #[test]
    fn reorders_and_shrinks_complete_at_once_and_a_no_op_writes_nothing() {
        let (image, _) = cluster();
        let p = image.topics.values().next().expect("t").partitions[0].clone();
        let same = alter_reassignments(&image, &asked(Some(p.replicas.clone())));
        assert!(same.records.is_empty());
        assert_eq!(same.outcomes[0].2, Ok(()));
        let mut reversed = p.replicas.clone();
        reversed.reverse();
        let r = alter_reassignments(&image, &asked(Some(reversed.clone())));
        assert_eq!(r.records.len(), 1, "nothing to copy: done in one step");
        let mut next = image.clone();
        apply(&mut next, &r.records);
        let q = &next.topics.values().next().expect("t").partitions[0];
        assert_eq!(
            (q.replicas.clone(), q.leader),
            (reversed.clone(), reversed[0])
        );
        let shrink = alter_reassignments(&image, &asked(Some(p.replicas[..2].to_vec())));
        let mut next = image.clone();
        apply(&mut next, &shrink.records);
        let q = &next.topics.values().next().expect("t").partitions[0];
        assert_eq!(q.replicas, p.replicas[..2].to_vec());
        assert_eq!(q.isr.len(), 2);
    }

    #[test]
    fn bad_targets_are_refused_and_cancel_restores_the_original() {
        let (mut image, id) = cluster();
        let cases = [
            (Some(vec![]), "empty"),
            (Some(vec![1, 1, 2]), "twice"),
            (Some(vec![1, 2, 9]), "not registered"),
        ];
        for (target, why) in cases {
            let r = alter_reassignments(&image, &asked(target));
            assert!(
                matches!(&r.outcomes[0].2, Err(ReassignError::InvalidAssignment(m)) if m.contains(why)),
                "{why}: {:?}",
                r.outcomes
            );
            assert!(r.records.is_empty());
        }
        let unknown = alter_reassignments(&image, &[("t".to_string(), 7, Some(vec![1]))]);
        assert_eq!(unknown.outcomes[0].2, Err(ReassignError::UnknownPartition));
        let nothing = alter_reassignments(&image, &asked(None));
        assert_eq!(
            nothing.outcomes[0].2,
            Err(ReassignError::NoReassignmentInProgress)
        );
        let before = image.topics[&id].partitions[0].clone();
        let r = alter_reassignments(&image, &asked(Some(vec![4, 2, 3])));
        apply(&mut image, &r.records);
        let r = alter_reassignments(&image, &asked(None));
        assert_eq!(r.outcomes[0].2, Ok(()));
        apply(&mut image, &r.records);
        let p = &image.topics[&id].partitions[0];
        // Kafka's order after a cancel: the target's survivors, then the rest.
        let mut replicas = p.replicas.clone();
        replicas.sort_unstable();
        assert_eq!(replicas, vec![1, 2, 3]);
        assert_eq!(p.isr.len(), 3);
        assert_eq!(p.leader, before.leader);
        assert!(!p.is_reassigning());
    }

    #[test]
    fn a_fenced_target_holds_the_move_and_a_removed_leader_hands_over() {
        let (mut image, id) = cluster();
        let p = image.topics[&id].partitions[0].clone();
        // Drop the leader: the rest are in sync already, so it completes at once.
        let target: Vec<BrokerId> = p
            .replicas
            .iter()
            .copied()
            .filter(|b| *b != p.leader)
            .collect();
        let r = alter_reassignments(&image, &asked(Some(target.clone())));
        apply(&mut image, &r.records);
        let q = image.topics[&id].partitions[0].clone();
        assert_eq!(q.leader, target[0]);
        assert!(q.leader_epoch > p.leader_epoch);
        // A move onto 4 while 4 is fenced waits: 4 cannot join the ISR.
        let r = fence_broker(&image, 4).expect("fence");
        apply(&mut image, &r);
        let r = alter_reassignments(&image, &asked(Some(vec![4, target[0]])));
        apply(&mut image, &r.records);
        assert!(image.topics[&id].partitions[0].is_reassigning());
        assert!(complete_reassignments(&image).is_empty());
    }
}

//! The active controller's log lines for committed partition changes (controller shard): one
//! info line per partition whose leader or ISR a decision changed, with the fields operators
//! filter on. Which changes a decision made is worked out here, purely, from the image it
//! read and the records it committed.

use uuid::Uuid;

use crate::image::{BrokerId, ClusterImage, MetadataRecord, NO_LEADER};
use crate::limits::PARTITION_EVENT_LINES_MAX;

/// What one committed `PartitionChange` (or `PartitionReplicas`) did, as the log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEvent {
    pub topic: String,
    pub partition: i32,
    pub kind: EventKind,
    pub leader: BrokerId,
    pub previous_leader: BrokerId,
    pub leader_epoch: i32,
    pub isr: Vec<BrokerId>,
    pub previous_isr: Vec<BrokerId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A new leader (a fenced or shut-down leader replaced, a preferred or unclean election).
    LeaderElected,
    /// No replica may lead: the partition is offline until one returns.
    Offline,
    IsrShrink,
    IsrExpand,
    /// Members swapped at the same size (rare: a reassignment-like change).
    IsrChanged,
}

/// The events of `records`, judged against `before`, the image the decision read. Records that
/// change neither leader nor ISR (epoch-only bumps) make no event.
pub fn partition_events(before: &ClusterImage, records: &[MetadataRecord]) -> Vec<PartitionEvent> {
    records
        .iter()
        .filter_map(|r| match r {
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                leader_epoch,
                ..
            }
            // A reassignment step changes leader and ISR like any other change (its replica
            // sets are logged where it starts and completes).
            | MetadataRecord::PartitionReplicas {
                topic_id,
                partition,
                leader,
                isr,
                leader_epoch,
                ..
            } => event(before, *topic_id, *partition, *leader, isr, *leader_epoch),
            _ => None,
        })
        .collect()
}

fn event(
    before: &ClusterImage,
    topic_id: Uuid,
    partition: i32,
    leader: BrokerId,
    isr: &[BrokerId],
    leader_epoch: i32,
) -> Option<PartitionEvent> {
    let topic = before.topics.get(&topic_id)?;
    let old = before.partition(topic_id, partition)?;
    let kind = if leader != old.leader {
        if leader == NO_LEADER {
            EventKind::Offline
        } else {
            EventKind::LeaderElected
        }
    } else if isr.len() < old.isr.len() {
        EventKind::IsrShrink
    } else if isr.len() > old.isr.len() {
        EventKind::IsrExpand
    } else if isr != old.isr.as_slice() {
        EventKind::IsrChanged
    } else {
        return None;
    };
    Some(PartitionEvent {
        topic: topic.name.clone(),
        partition,
        kind,
        leader,
        previous_leader: old.leader,
        leader_epoch,
        isr: isr.to_vec(),
        previous_isr: old.isr.clone(),
    })
}

/// One line per event, the first `PARTITION_EVENT_LINES_MAX` at info (warn for offline ones)
/// and the rest at debug with one info line counting them: fencing a broker that leads
/// thousands of partitions must not flood the log.
pub fn log_partition_events(events: &[PartitionEvent]) {
    for (i, e) in events.iter().enumerate() {
        if i < PARTITION_EVENT_LINES_MAX {
            log_one(e, tracing::Level::INFO);
        } else {
            log_one(e, tracing::Level::DEBUG);
        }
    }
    if events.len() > PARTITION_EVENT_LINES_MAX {
        tracing::info!(
            partitions = events.len() - PARTITION_EVENT_LINES_MAX,
            "more partition leader/ISR changes in the same decision (logged at debug)"
        );
    }
}

fn log_one(e: &PartitionEvent, level: tracing::Level) {
    // tracing's macros take the level as a constant, hence the two arms.
    macro_rules! line {
        ($lvl:ident, $msg:literal) => {
            tracing::$lvl!(
                topic = %e.topic,
                partition = e.partition,
                leader = e.leader,
                leader_epoch = e.leader_epoch,
                isr = ?e.isr,
                previous_leader = e.previous_leader,
                previous_isr = ?e.previous_isr,
                $msg
            )
        };
    }
    let debug = level == tracing::Level::DEBUG;
    match (e.kind, debug) {
        (EventKind::Offline, _) => line!(warn, "partition offline: no eligible leader"),
        (EventKind::LeaderElected, false) => line!(info, "partition leader elected"),
        (EventKind::LeaderElected, true) => line!(debug, "partition leader elected"),
        (EventKind::IsrShrink, false) => line!(info, "ISR shrank"),
        (EventKind::IsrShrink, true) => line!(debug, "ISR shrank"),
        (EventKind::IsrExpand, false) => line!(info, "ISR expanded"),
        (EventKind::IsrExpand, true) => line!(debug, "ISR expanded"),
        (EventKind::IsrChanged, false) => line!(info, "ISR changed"),
        (EventKind::IsrChanged, true) => line!(debug, "ISR changed"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::image::{PartitionState, TopicState};

    fn image() -> (ClusterImage, Uuid) {
        let id = Uuid::from_u128(7);
        let mut image = ClusterImage::default();
        let p = PartitionState {
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 9,
            ..PartitionState::default()
        };
        image.topics.insert(
            id,
            TopicState {
                name: "orders".to_string(),
                id,
                partitions: vec![p.clone(), p],
                configs: BTreeMap::new(),
            },
        );
        image.topic_ids.insert("orders".to_string(), id);
        (image, id)
    }

    fn change(
        topic_id: Uuid,
        partition: i32,
        leader: BrokerId,
        isr: &[BrokerId],
    ) -> MetadataRecord {
        MetadataRecord::PartitionChange {
            topic_id,
            partition,
            leader,
            isr: isr.to_vec(),
            leader_epoch: 5,
            partition_epoch: 10,
        }
    }

    #[test]
    fn each_change_is_one_event_of_its_kind() {
        let (image, id) = image();
        let records = vec![
            change(id, 0, 2, &[2, 3]),
            change(id, 1, 1, &[1, 2]),
            MetadataRecord::ClusterId { id: "x".into() },
        ];
        let events = partition_events(&image, &records);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, EventKind::LeaderElected);
        assert_eq!(events[0].topic, "orders");
        assert_eq!(events[0].previous_leader, 1);
        assert_eq!(events[0].leader_epoch, 5);
        assert_eq!(events[1].kind, EventKind::IsrShrink);
        assert_eq!(events[1].previous_isr, vec![1, 2, 3]);
    }

    #[test]
    fn expand_offline_and_no_op() {
        let (mut image, id) = image();
        image.topics.get_mut(&id).unwrap().partitions[0].isr = vec![1];
        let events = partition_events(
            &image,
            &[
                change(id, 0, 1, &[1, 2]),
                change(id, 1, NO_LEADER, &[1]),
                change(id, 1, 1, &[1, 2, 3]),
                change(Uuid::from_u128(99), 0, 1, &[1]),
            ],
        );
        let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![EventKind::IsrExpand, EventKind::Offline]);
        let same = partition_events(&image, &[change(id, 0, 1, &[1])]);
        assert!(same.is_empty(), "an epoch-only change is no event");
        let swapped = partition_events(&image, &[change(id, 1, 1, &[1, 2, 4])]);
        assert_eq!(swapped[0].kind, EventKind::IsrChanged);
    }
}

use super::*;

fn registration(id: BrokerId, epoch: i64) -> BrokerRegistration {
    BrokerRegistration {
        id,
        incarnation: Uuid::from_u128(u128::try_from(id).unwrap_or(0) * 1000 + 1),
        epoch,
        endpoints: Vec::new(),
        rack: None,
        fenced: true,
        in_controlled_shutdown: false,
    }
}

fn apply(image: &mut ClusterImage, records: &[MetadataRecord]) {
    for r in records {
        image.apply(r);
    }
}

/// Three registered, unfenced brokers (epochs 10, 20, 30) and topic "t" with 6 partitions, RF 3.
fn cluster() -> (ClusterImage, Uuid) {
    let mut image = ClusterImage::default();
    for id in 1..=3 {
        let epoch = i64::from(id) * 10;
        let r = register_broker(&image, registration(id, epoch), false).expect("register");
        apply(&mut image, &r);
        let r = unfence_broker(&image, id, epoch).expect("unfence");
        apply(&mut image, &r);
    }
    let id = Uuid::from_u128(7);
    let r = create_topic(&image, "t", id, 6, 3, BTreeMap::new()).expect("create");
    apply(&mut image, &r);
    (image, id)
}

#[test]
fn fencing_moves_leadership_within_the_isr_and_bumps_epochs() {
    let (mut image, id) = cluster();
    let before = image.topics[&id].partitions.clone();
    let led_by_1: Vec<usize> = before
        .iter()
        .enumerate()
        .filter(|(_, p)| p.leader == 1)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(led_by_1.len(), 2, "leaders spread over 3 brokers");
    let r = fence_broker(&image, 1).expect("fence");
    apply(&mut image, &r);
    let after = &image.topics[&id].partitions;
    for (i, p) in after.iter().enumerate() {
        assert!(!p.isr.contains(&1), "fenced broker left the ISR of {i}");
        assert_ne!(p.leader, 1);
        if led_by_1.contains(&i) {
            assert!(
                before[i].isr.contains(&p.leader),
                "new leader from the old ISR"
            );
            let expected = before[i].replicas.iter().find(|r| **r != 1).copied();
            assert_eq!(Some(p.leader), expected, "first in assignment order");
            assert_eq!(p.leader_epoch, before[i].leader_epoch + 1);
        } else {
            assert_eq!(
                p.leader_epoch, before[i].leader_epoch,
                "leader kept, epoch kept"
            );
        }
        assert_eq!(p.partition_epoch, before[i].partition_epoch + 1);
    }
}

#[test]
fn the_last_isr_member_stays_and_the_partition_goes_offline_then_returns() {
    let mut image = ClusterImage::default();
    let r = register_broker(&image, registration(1, 5), false).expect("register");
    apply(&mut image, &r);
    let r = unfence_broker(&image, 1, 5).expect("unfence");
    apply(&mut image, &r);
    let id = Uuid::from_u128(9);
    let r = create_topic(&image, "solo", id, 1, 1, BTreeMap::new()).expect("create");
    apply(&mut image, &r);
    let r = fence_broker(&image, 1).expect("fence");
    apply(&mut image, &r);
    let p = &image.topics[&id].partitions[0];
    assert_eq!(p.leader, NO_LEADER);
    assert_eq!(p.isr, vec![1]);
    assert_eq!(p.leader_epoch, 1);
    // It comes back (same registration, caught up): it leads again, with a new epoch.
    let r = unfence_broker(&image, 1, 5).expect("unfence");
    apply(&mut image, &r);
    let p = &image.topics[&id].partitions[0];
    assert_eq!(p.leader, 1);
    assert_eq!(p.leader_epoch, 2);
}

#[test]
fn unclean_election_only_when_the_topic_allows_it() {
    let (mut image, _) = cluster();
    let mut configs = BTreeMap::new();
    configs.insert(UNCLEAN_ELECTION_CONFIG.to_string(), "true".to_string());
    let id = Uuid::from_u128(11);
    let r = create_topic(&image, "u", id, 1, 2, configs).expect("create");
    apply(&mut image, &r);
    let p = image.topics[&id].partitions[0].clone();
    let (leader, follower) = (p.replicas[0], p.replicas[1]);
    // The follower falls out of the ISR, then the leader dies.
    let shrink = alter_isr(&image, id, 0, p.partition_epoch, vec![leader]).expect("shrink");
    let r = [shrink];
    apply(&mut image, &r);
    let r = fence_broker(&image, leader).expect("fence");
    apply(&mut image, &r);
    let p = &image.topics[&id].partitions[0];
    assert_eq!(
        p.leader, follower,
        "out-of-sync replica elected: unclean allowed"
    );
    assert_eq!(p.isr, vec![follower]);
}

#[test]
fn preferred_leaders_come_back_when_in_sync() {
    let (mut image, id) = cluster();
    let epoch_1 = image.brokers[&1].epoch;
    let r = fence_broker(&image, 1).expect("fence");
    apply(&mut image, &r);
    assert!(preferred_elections(&image).is_empty(), "1 is fenced");
    let r = unfence_broker(&image, 1, epoch_1).expect("unfence");
    apply(&mut image, &r);
    // Back, but not in sync yet: nothing moves until an ISR change adds it.
    assert!(preferred_elections(&image).is_empty());
    for i in 0..6 {
        let p = image.topics[&id].partitions[i].clone();
        if p.replicas.contains(&1) && !p.isr.contains(&1) {
            let mut isr = p.isr.clone();
            isr.push(1);
            let partition = i32::try_from(i).expect("index");
            let r = alter_isr(&image, id, partition, p.partition_epoch, isr).expect("expand");
            let r = [r];
            apply(&mut image, &r);
        }
    }
    let moves = preferred_elections(&image);
    assert_eq!(moves.len(), 2);
    let r = moves;
    apply(&mut image, &r);
    assert!(image.topics[&id]
        .partitions
        .iter()
        .all(|p| p.leader == p.replicas[0]));
}

#[test]
fn isr_changes_are_compare_and_set() {
    let (image, id) = cluster();
    let p = image.topics[&id].partitions[0].clone();
    let stale = alter_isr(&image, id, 0, p.partition_epoch + 1, vec![p.leader]);
    assert!(matches!(
        stale,
        Err(DecideError::StalePartitionEpoch { .. })
    ));
    let no_leader = alter_isr(&image, id, 0, p.partition_epoch, vec![p.replicas[1]]);
    assert!(matches!(no_leader, Err(DecideError::InvalidIsr { .. })));
    let outsider = alter_isr(&image, id, 0, p.partition_epoch, vec![p.leader, 99]);
    assert!(matches!(outsider, Err(DecideError::InvalidIsr { .. })));
}

#[test]
fn a_live_broker_id_cannot_be_claimed_twice_but_a_restart_replaces_it() {
    let (mut image, id) = cluster();
    let mut other = registration(2, 99);
    other.incarnation = Uuid::from_u128(424242);
    assert_eq!(
        register_broker(&image, other.clone(), true),
        Err(DecideError::DuplicateBrokerId { id: 2 })
    );
    // The old process is silent: the new incarnation takes over, starting fenced, and the old
    // one's leaderships move away.
    let r = register_broker(&image, other, false).expect("replace");
    apply(&mut image, &r);
    assert!(image.brokers[&2].fenced);
    assert_eq!(image.brokers[&2].epoch, 99);
    assert!(image.topics[&id].partitions.iter().all(|p| p.leader != 2));
}

#[test]
fn controlled_shutdown_moves_leadership_first() {
    let (mut image, id) = cluster();
    let epoch = image.brokers[&3].epoch;
    assert!(
        controlled_shutdown(&image, 3, epoch + 1).is_err(),
        "stale epoch"
    );
    let r = controlled_shutdown(&image, 3, epoch).expect("shutdown");
    apply(&mut image, &r);
    assert!(image.topics[&id].partitions.iter().all(|p| p.leader != 3));
}

#[test]
fn topics_need_enough_brokers_and_grow_with_the_same_rf() {
    let (mut image, id) = cluster();
    assert_eq!(
        create_topic(&image, "big", Uuid::from_u128(3), 1, 4, BTreeMap::new()),
        Err(DecideError::InvalidReplicationFactor {
            requested: 4,
            available: 3
        })
    );
    assert!(matches!(
        create_topic(&image, "t", Uuid::from_u128(4), 1, 1, BTreeMap::new()),
        Err(DecideError::TopicExists { .. })
    ));
    let r = create_partitions(&image, "t", 8).expect("grow");
    apply(&mut image, &r);
    let t = &image.topics[&id];
    assert_eq!(t.partitions.len(), 8);
    assert!(t.partitions.iter().all(|p| p.replicas.len() == 3));
    let r = delete_topic(&image, "t").expect("delete");
    apply(&mut image, &r);
    assert!(image.topic("t").is_none());
}

#[test]
fn on_demand_preferred_election_answers_per_partition() {
    let (mut image, id) = cluster();
    let epoch_1 = image.brokers[&1].epoch;
    let led_by_1 = |image: &ClusterImage| -> Vec<i32> {
        let t = &image.topics[&id];
        (0..6)
            .filter(|i| t.partitions[*i as usize].replicas[0] == 1)
            .collect()
    };
    let preferred_1 = led_by_1(&image);
    let elsewhere = (0..6)
        .find(|i| !preferred_1.contains(i))
        .expect("a partition");
    let moved = preferred_1[0];
    let r = fence_broker(&image, 1).expect("fence");
    apply(&mut image, &r);
    let r = unfence_broker(&image, 1, epoch_1).expect("unfence");
    apply(&mut image, &r);
    let asked = [
        ("t".to_string(), moved),
        ("t".to_string(), elsewhere),
        ("t".to_string(), 99),
        ("nope".to_string(), 0),
        ("t".to_string(), moved),
    ];
    let e = elect_leaders(&image, ElectionKind::Preferred, Some(&asked));
    use ElectionOutcome::*;
    let outcomes: Vec<_> = e.outcomes.iter().map(|o| o.2).collect();
    assert_eq!(
        outcomes,
        [
            PreferredNotAvailable,
            NotNeeded,
            UnknownPartition,
            UnknownPartition,
            PreferredNotAvailable
        ],
        "1 is back but not in sync"
    );
    assert!(e.records.is_empty());
    // In sync again: the same request moves leadership back, once, with a new epoch.
    let p = image.topics[&id].partitions[moved as usize].clone();
    let mut isr = p.isr.clone();
    isr.push(1);
    let r = [alter_isr(&image, id, moved, p.partition_epoch, isr).expect("expand")];
    apply(&mut image, &r);
    let e = elect_leaders(&image, ElectionKind::Preferred, Some(&asked));
    assert_eq!(e.outcomes[0].2, Elected);
    assert_eq!(e.outcomes[4].2, Elected);
    assert_eq!(
        e.records.len(),
        1,
        "a partition asked for twice is elected once"
    );
    apply(&mut image, &e.records);
    let now = &image.topics[&id].partitions[moved as usize];
    assert_eq!(now.leader, 1);
    assert_eq!(now.leader_epoch, p.leader_epoch + 1);
    // Every partition: only those where something was (or could not be) done are listed.
    let all = elect_leaders(&image, ElectionKind::Preferred, None);
    let listed: Vec<i32> = all.outcomes.iter().map(|o| o.1).collect();
    let other_1: Vec<i32> = preferred_1
        .iter()
        .copied()
        .filter(|p| *p != moved)
        .collect();
    assert_eq!(
        listed, other_1,
        "the other partition 1 prefers, not yet in sync"
    );
    assert!(all.outcomes.iter().all(|o| o.2 == PreferredNotAvailable));
}

#[test]
fn on_demand_unclean_election_leads_an_offline_partition_with_any_live_replica() {
    let (mut image, _) = cluster();
    let id = Uuid::from_u128(12);
    let r = create_topic(&image, "c", id, 1, 2, BTreeMap::new()).expect("create");
    apply(&mut image, &r);
    let p = image.topics[&id].partitions[0].clone();
    let (leader, follower) = (p.replicas[0], p.replicas[1]);
    let shrink = [alter_isr(&image, id, 0, p.partition_epoch, vec![leader]).expect("shrink")];
    apply(&mut image, &shrink);
    let r = fence_broker(&image, leader).expect("fence");
    apply(&mut image, &r);
    assert_eq!(
        image.topics[&id].partitions[0].leader, NO_LEADER,
        "clean: offline"
    );
    let asked = [("c".to_string(), 0)];
    let e = elect_leaders(&image, ElectionKind::Preferred, Some(&asked));
    assert_eq!(e.outcomes[0].2, ElectionOutcome::PreferredNotAvailable);
    let e = elect_leaders(&image, ElectionKind::Unclean, Some(&asked));
    assert_eq!(e.outcomes[0].2, ElectionOutcome::Elected);
    apply(&mut image, &e.records);
    let p = &image.topics[&id].partitions[0];
    assert_eq!((p.leader, p.isr.clone()), (follower, vec![follower]));
    let e = elect_leaders(&image, ElectionKind::Unclean, Some(&asked));
    assert_eq!(
        e.outcomes[0].2,
        ElectionOutcome::NotNeeded,
        "it has a leader"
    );
    let r = fence_broker(&image, follower).expect("fence");
    apply(&mut image, &r);
    let other = (1..=3)
        .find(|b| *b != leader && *b != follower)
        .expect("third");
    let r = fence_broker(&image, other).expect("fence");
    apply(&mut image, &r);
    let e = elect_leaders(&image, ElectionKind::Unclean, Some(&asked));
    assert_eq!(e.outcomes[0].2, ElectionOutcome::NoEligibleLeader);
    assert!(e.records.is_empty());
}

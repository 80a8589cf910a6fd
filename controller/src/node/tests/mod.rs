//! Controller voters in process, on glommio, with simulated delivery and real disks.

mod sim;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use self::sim::{broker, producer_ids, Cluster};
use super::*;
use crate::decide;
use crate::test_util::run;

const FAST_TICK: Duration = Duration::from_millis(10);
const WAIT: Duration = Duration::from_secs(20);

/// A topic creation as the active controller decides it, on the leader's image.
fn create_topic(node: &ControllerNode, name: &str, partitions: i32) -> Vec<MetadataRecord> {
    let id = Uuid::from_u128(name.len() as u128 * 1000 + partitions as u128);
    decide::create_topic(&node.image(), name, id, partitions, 3, BTreeMap::new()).unwrap()
}

#[test]
fn one_voter_elects_itself_commits_and_recovers_after_restart() {
    run(|| async {
        // The production tick: a single voter must not wait for an election timeout.
        let mut c = Cluster::new(1, Duration::from_millis(50));
        let started = Instant::now();
        c.start_all().await;
        c.wait_leader(&[1], WAIT).await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );

        let n = c.node(1);
        let first = n.propose(&[broker(1), broker(2), broker(3)]).await.unwrap();
        let topic = n.propose(&create_topic(n, "orders", 6)).await.unwrap();
        assert!(topic.raft_index > first.raft_index);
        assert_eq!(topic.raft_term, first.raft_term);
        let image = n.image();
        assert_eq!(image.brokers.len(), 3);
        assert_eq!(image.topic("orders").map(|t| t.partitions.len()), Some(6));
        let before = n.status();
        assert_eq!(before.applied_index, topic.raft_index);

        // Clean restart: log, hard state and image are back before any election.
        c.shutdown(1).await;
        c.start_node(1).await;
        let st = c.node(1).status();
        assert_eq!(c.node(1).image(), image);
        assert_eq!(st.applied_index, before.applied_index);
        assert!(st.raft_term >= before.raft_term);
        c.wait_leader(&[1], WAIT).await;
        let next = c.node(1).propose(&[producer_ids(5000)]).await.unwrap();
        assert!(next.raft_index > topic.raft_index);
        assert!(next.raft_term > topic.raft_term, "a restart is a new term");

        // Crash restart: storage recovery, then the image catches up once it leads again.
        c.crash(1);
        c.restart_crashed(1).await;
        c.wait_leader(&[1], WAIT).await;
        let image = c.node(1).image();
        assert_eq!(image.next_producer_id, 5000);
        assert_eq!(image.topic("orders").map(|t| t.partitions.len()), Some(6));
        c.shutdown(1).await;
    });
}

#[test]
fn followers_answer_not_leader_and_oversized_proposals_are_refused() {
    run(|| async {
        let mut c = Cluster::new(3, FAST_TICK);
        c.start_all().await;
        let leader = c.wait_leader(&c.ids.clone(), WAIT).await;
        let index = c.propose(&[broker(1)]).await;
        c.wait_applied(&c.ids.clone(), index, WAIT).await;
        let follower = c.ids.iter().copied().find(|id| *id != leader).unwrap();
        let err = c.node(follower).propose(&[broker(2)]).await.unwrap_err();
        assert_eq!(
            err,
            ProposeError::NotLeader {
                leader: Some(NodeId(leader as i32))
            }
        );
        let huge = MetadataRecord::Topic {
            name: "x".repeat(crate::limits::ENTRY_BYTES_MAX),
            id: Uuid::nil(),
            configs: BTreeMap::new(),
        };
        assert!(matches!(
            c.node(leader).propose(&[huge]).await,
            Err(ProposeError::TooLarge { .. })
        ));
        for id in c.ids.clone() {
            c.shutdown(id).await;
        }
    });
}

/// Three voters at the production tick: replication, then the leader stops (three times in a
/// row, each time restarted from its data dir), and the others elect a new one in a bounded
/// number of ticks without losing a committed record. Prints the measured failover times.
#[test]
fn three_voters_replicate_and_fail_over_without_losing_commits() {
    run(|| async {
        let mut c = Cluster::new(3, Duration::from_millis(50));
        let all = c.ids.clone();
        c.start_all().await;
        c.wait_leader(&all, WAIT).await;
        c.propose(&[broker(1), broker(2), broker(3)]).await;
        let mut next_pid = 0;
        let mut last;
        for round in 0..3 {
            let leader = c.wait_leader(&all, WAIT).await;
            let records = create_topic(c.node(leader), &format!("topic-{round}"), 3);
            last = c.propose(&records).await;
            for _ in 0..5 {
                next_pid += 1000;
                last = c.propose(&[producer_ids(next_pid)]).await;
            }
            c.wait_applied(&all, last, WAIT).await;
            let images = c.images(&all);
            assert!(images.windows(2).all(|w| w[0] == w[1]), "images differ");

            // Stop the leader and stop delivering to it.
            let old_term = c.node(leader).status().raft_term;
            let survivors: Vec<u64> = all.iter().copied().filter(|id| *id != leader).collect();
            let ticks_before: Vec<u64> = survivors
                .iter()
                .map(|id| c.node(*id).status().ticks)
                .collect();
            let stopped = Instant::now();
            c.crash(leader);
            let new_leader = c.wait_leader(&survivors, WAIT).await;
            let elapsed = stopped.elapsed();
            let i = survivors.iter().position(|id| *id == new_leader).unwrap();
            let ticks = c.node(new_leader).status().ticks - ticks_before[i];
            eprintln!(
                "failover round {round}: node {leader} stopped, node {new_leader} active after \
                 {ticks} ticks, {} ms",
                elapsed.as_millis()
            );
            assert!(c.node(new_leader).status().raft_term > old_term);
            // Randomized timeout [10, 20) ticks, pre-vote and vote; 40 allows one split vote.
            assert!(ticks <= 40, "{ticks} ticks to elect");

            // Nothing committed is lost, and the survivors commit on their own.
            let image = c.node(new_leader).image();
            assert_eq!(image.next_producer_id, next_pid);
            assert!(image.topic(&format!("topic-{round}")).is_some());
            next_pid += 1000;
            last = c.propose(&[producer_ids(next_pid)]).await;
            c.wait_applied(&survivors, last, WAIT).await;

            // The old leader comes back from its data dir and catches up.
            c.restart_crashed(leader).await;
            c.wait_applied(&all, last, WAIT).await;
            let images = c.images(&all);
            assert!(images.windows(2).all(|w| w[0] == w[1]), "images differ");
        }
        assert_eq!(c.node(1).image().topic_ids.len(), 3);
        for id in all {
            c.shutdown(id).await;
        }
    });
}

#[test]
fn restarted_voters_recover_log_hard_state_image_and_snapshots() {
    run(|| async {
        let mut c = Cluster::new(3, FAST_TICK);
        c.snapshot_every_entries = 8;
        let all = c.ids.clone();
        c.start_all().await;
        c.propose(&[broker(1), broker(2), broker(3)]).await;
        // Node 3 misses a stretch long enough to be compacted away on the others.
        c.shutdown(3).await;
        let mut last = 0;
        for i in 1..=30 {
            last = c.propose(&[producer_ids(i * 10)]).await;
        }
        c.wait_applied(&[1, 2], last, WAIT).await;
        for id in [1, 2] {
            let st = c.node(id).status();
            assert!(
                st.snapshot_index >= 16,
                "node {id} took no snapshot: {st:?}"
            );
        }
        // Its first snapshot is lost on the way: the leader must try again.
        c.net.lose_next_snapshot_to(3);
        c.start_node(3).await;
        c.wait_applied(&all, last, WAIT).await;
        assert_eq!(c.net.snapshots_lost.get(), 1);
        assert_eq!(
            c.node(3).status().snapshots_installed,
            1,
            "node 3 caught up through the leader's snapshot"
        );
        let images = c.images(&all);
        assert!(images.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(images[0].next_producer_id, 300);

        // Everyone restarts: each comes back with its own log, hard state and image. The
        // network is cut first, so that nothing changes between the look and the restart.
        c.net.isolate_all(&all);
        glommio::timer::sleep(FAST_TICK * 5).await;
        let before: Vec<(NodeStatus, Rc<ClusterImage>)> = all
            .iter()
            .map(|id| (c.node(*id).status(), c.node(*id).image()))
            .collect();
        for id in all.clone() {
            c.shutdown(id).await;
        }
        for id in all.clone() {
            c.start_node(id).await;
        }
        for (id, (st, image)) in all.iter().zip(&before) {
            let now = c.node(*id).status();
            assert_eq!(now.applied_index, st.applied_index, "node {id}");
            assert_eq!(now.commit_index, st.commit_index, "node {id}");
            assert_eq!(now.raft_term, st.raft_term, "node {id}");
            assert_eq!(now.snapshot_index, st.snapshot_index, "node {id}");
            assert_eq!(&c.node(*id).image(), image, "node {id}");
        }
        c.net.heal();
        let last = c.propose(&[producer_ids(400)]).await;
        c.wait_applied(&all, last, WAIT).await;
        for id in all {
            c.shutdown(id).await;
        }
    });
}

/// Five voters: a leader cut off with one follower keeps a proposal it can never commit; the
/// majority of three elects a new leader and commits; after the heal the minority's proposal is
/// reported dropped and every voter holds the majority's history.
#[test]
fn a_partitioned_minority_cannot_commit() {
    run(|| async {
        let mut c = Cluster::new(5, FAST_TICK);
        let all = c.ids.clone();
        c.start_all().await;
        let first = c.propose(&[broker(1)]).await;
        c.wait_applied(&all, first, WAIT).await;
        let old = c.wait_leader(&all, WAIT).await;
        let buddy = all.iter().copied().find(|id| *id != old).unwrap();
        let minority = [old, buddy];
        let majority: Vec<u64> = all
            .iter()
            .copied()
            .filter(|id| !minority.contains(id))
            .collect();
        c.net.partition(&minority, &all);

        let c = Rc::new(c);
        let doomed = {
            let c = Rc::clone(&c);
            glommio::spawn_local(async move { c.node(old).propose(&[producer_ids(666)]).await })
        };
        let new = c.wait_leader(&majority, WAIT).await;
        let kept = c.node(new).propose(&[producer_ids(777)]).await.unwrap();
        // Long enough for the old leader to notice it lost its quorum and step down.
        glommio::timer::sleep(FAST_TICK * 40).await;
        assert!(
            !c.node(old).is_leader(),
            "a leader without quorum steps down"
        );
        assert_eq!(
            c.node(old).image().next_producer_id,
            0,
            "nothing committed there"
        );

        c.net.heal();
        let answer = doomed.await;
        assert!(
            matches!(answer, Err(ProposeError::Dropped { .. })),
            "minority proposal: {answer:?}"
        );
        c.wait_applied(&all, kept.raft_index, WAIT).await;
        let images = c.images(&all);
        assert!(images.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(images[0].next_producer_id, 777);
        let Ok(mut c) = Rc::try_unwrap(c) else {
            panic!("the cluster is still shared")
        };
        for id in all {
            c.shutdown(id).await;
        }
    });
}

#[test]
fn configs_are_validated() {
    let dir = std::path::PathBuf::from("/nonexistent");
    let ok = ControllerConfig::new(
        NodeId(1),
        vec![NodeId(1), NodeId(2), NodeId(3)],
        dir.clone(),
    );
    ok.validate().unwrap();
    let bad = [
        ControllerConfig::new(NodeId(0), vec![NodeId(0)], dir.clone()),
        ControllerConfig::new(
            NodeId(4),
            vec![NodeId(1), NodeId(2), NodeId(3)],
            dir.clone(),
        ),
        ControllerConfig::new(NodeId(1), vec![NodeId(1), NodeId(2)], dir.clone()),
        ControllerConfig::new(
            NodeId(1),
            vec![NodeId(1), NodeId(1), NodeId(2)],
            dir.clone(),
        ),
        ControllerConfig {
            heartbeat_ticks: 10,
            ..ok.clone()
        },
    ];
    for c in bad {
        assert!(
            matches!(c.validate(), Err(ControllerError::InvalidConfig(_))),
            "{c:?}"
        );
    }
}

//! A partition's replica set as its leader tracks it: each follower's log end offset as its
//! fetches report it, the ISR the controller last confirmed, and the ISR changes the leader
//! should propose (Kafka's rules). Pure state without I/O, so the rules are tested directly.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the leader knows of one follower.
#[derive(Clone, Copy, Debug)]
struct Progress {
    /// The follower's log end offset: the offset of its last fetch; -1 until it fetched from
    /// this leader in this epoch.
    log_end_offset: i64,
    /// When the follower last had everything the leader had (Kafka's lastCaughtUpTimeMs).
    last_caught_up: Instant,
    /// When it last fetched, and the leader's log end offset then.
    last_fetch: Instant,
    leader_end_at_last_fetch: i64,
}

/// An ISR change the leader should propose to the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrProposal {
    pub isr: Vec<i32>,
    pub partition_epoch: i32,
}

#[derive(Debug)]
pub struct ReplicaSet {
    /// Assignment order; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// As the controller last confirmed it.
    pub isr: Vec<i32>,
    pub partition_epoch: i32,
    /// Followers' progress, reset when this replica becomes leader.
    followers: HashMap<i32, Progress>,
    /// Where this leader's epoch began in its log: a follower joins the ISR only once it has
    /// everything from before (Kafka's leaderEpochStartOffset rule).
    epoch_start_offset: i64,
    /// An AlterPartition is on its way to the controller; one at a time.
    pub proposal_in_flight: bool,
}

impl ReplicaSet {
    pub fn new(replicas: Vec<i32>, isr: Vec<i32>, partition_epoch: i32) -> Self {
        ReplicaSet {
            replicas,
            isr,
            partition_epoch,
            followers: HashMap::new(),
            epoch_start_offset: 0,
            proposal_in_flight: false,
        }
    }

    /// Installs what the metadata says, unless this set already saw a newer partition epoch
    /// (an AlterPartition answer can arrive before the image that carries it).
    pub fn update(&mut self, replicas: &[i32], isr: &[i32], partition_epoch: i32) {
        if partition_epoch < self.partition_epoch {
            return;
        }
        self.replicas = replicas.to_vec();
        self.isr = isr.to_vec();
        self.partition_epoch = partition_epoch;
        self.followers.retain(|id, _| replicas.contains(id));
    }

    /// A new leadership starts from scratch: every follower's offset is unknown until it fetches,
    /// and ISR members get a full lag period before they can be dropped.
    pub fn start_leading(&mut self, epoch_start_offset: i64, now: Instant) {
        self.epoch_start_offset = epoch_start_offset;
        self.proposal_in_flight = false;
        self.followers = self
            .replicas
            .iter()
            .map(|&id| {
                (
                    id,
                    Progress {
                        log_end_offset: -1,
                        last_caught_up: now,
                        last_fetch: now,
                        leader_end_at_last_fetch: -1,
                    },
                )
            })
            .collect();
    }

    /// The log end offset when this leadership began.
    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }

    /// Records a follower fetch at `fetch_offset` while the leader's log ends at `leader_end`.
    /// Kafka's catch-up rule: caught up now if it has everything; caught up as of its previous
    /// fetch if it now has everything the leader had then.
    pub fn record_fetch(&mut self, replica: i32, fetch_offset: i64, leader_end: i64, now: Instant) {
        let p = self.followers.entry(replica).or_insert(Progress {
            log_end_offset: -1,
            last_caught_up: now,
            last_fetch: now,
            leader_end_at_last_fetch: -1,
        });
        if fetch_offset >= leader_end {
            p.last_caught_up = now;
        } else if p.leader_end_at_last_fetch >= 0 && fetch_offset >= p.leader_end_at_last_fetch {
            p.last_caught_up = p.last_caught_up.max(p.last_fetch);
        }
        p.log_end_offset = fetch_offset;
        p.last_fetch = now;
        p.leader_end_at_last_fetch = leader_end;
    }

    /// The highest offset every ISR member has: the high watermark this leader may move to.
    /// `local_end` is the leader's own written log end. A member that has not fetched in this
    /// leadership holds it at -1 (no advance).
    pub fn high_watermark(&self, leader: i32, local_end: i64) -> i64 {
        self.isr
            .iter()
            .filter(|&&id| id != leader)
            .map(|id| self.followers.get(id).map_or(-1, |p| p.log_end_offset))
            .fold(local_end, i64::min)
    }

    /// A follower outside the ISR that caught up: the ISR with it added.
    pub fn expansion(&self, leader: i32, high_watermark: i64) -> Option<IsrProposal> {
        if self.proposal_in_flight {
            return None;
        }
        let joining: Vec<i32> = self
            .replicas
            .iter()
            .copied()
            .filter(|id| *id != leader && !self.isr.contains(id))
            .filter(|id| {
                self.followers.get(id).is_some_and(|p| {
                    p.log_end_offset >= high_watermark
                        && p.log_end_offset >= self.epoch_start_offset
                })
            })
            .collect();
        if joining.is_empty() {
            return None;
        }
        let mut isr = self.isr.clone();
        isr.extend(joining);
        Some(IsrProposal {
            isr,
            partition_epoch: self.partition_epoch,
        })
    }

    /// ISR members that have not caught up within `lag`: the ISR without them.
    pub fn shrink(&self, leader: i32, now: Instant, lag: Duration) -> Option<IsrProposal> {
        if self.proposal_in_flight {
            return None;
        }
        let isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|id| {
                *id == leader
                    || self
                        .followers
                        .get(id)
                        .is_none_or(|p| now.saturating_duration_since(p.last_caught_up) <= lag)
            })
            .collect();
        let partition_epoch = self.partition_epoch;
        (isr.len() != self.isr.len()).then_some(IsrProposal {
            isr,
            partition_epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> (ReplicaSet, Instant) {
        let mut s = ReplicaSet::new(vec![1, 2, 3], vec![1, 2, 3], 5);
        let now = Instant::now();
        s.start_leading(100, now);
        (s, now)
    }

    #[test]
    fn high_watermark_is_the_slowest_isr_member() {
        let (mut s, now) = three();
        // Nobody fetched yet: no advance past what the followers are known to have.
        assert_eq!(s.high_watermark(1, 120), -1);
        s.record_fetch(2, 110, 120, now);
        assert_eq!(s.high_watermark(1, 120), -1);
        s.record_fetch(3, 105, 120, now);
        assert_eq!(s.high_watermark(1, 120), 105);
        s.record_fetch(3, 120, 120, now);
        assert_eq!(s.high_watermark(1, 120), 110);
        // Out of the ISR, a follower no longer holds the HW back.
        s.update(&[1, 2, 3], &[1, 3], 6);
        assert_eq!(s.high_watermark(1, 120), 120);
        // Alone, the leader's own log end is the HW.
        s.update(&[1, 2, 3], &[1], 7);
        assert_eq!(s.high_watermark(1, 130), 130);
    }

    #[test]
    fn an_older_partition_epoch_does_not_undo_a_newer_one() {
        let (mut s, _) = three();
        s.update(&[1, 2, 3], &[1, 2], 7);
        s.update(&[1, 2, 3], &[1, 2, 3], 6);
        assert_eq!(s.isr, vec![1, 2]);
        assert_eq!(s.partition_epoch, 7);
    }

    #[test]
    fn a_caught_up_follower_is_proposed_for_the_isr() {
        let (mut s, now) = three();
        s.update(&[1, 2, 3], &[1, 2], 6);
        s.record_fetch(2, 130, 130, now);
        // Behind the HW: not yet.
        s.record_fetch(3, 90, 130, now);
        assert_eq!(s.expansion(1, 120), None);
        // At the HW but before this leader's epoch began: not yet either.
        let mut early = ReplicaSet::new(vec![1, 2, 3], vec![1, 2], 6);
        early.start_leading(150, now);
        early.record_fetch(3, 130, 160, now);
        assert_eq!(early.expansion(1, 120), None);
        s.record_fetch(3, 125, 130, now);
        assert_eq!(
            s.expansion(1, 120),
            Some(IsrProposal {
                isr: vec![1, 2, 3],
                partition_epoch: 6
            })
        );
        s.proposal_in_flight = true;
        assert_eq!(s.expansion(1, 120), None);
    }

    #[test]
    fn a_follower_that_stops_catching_up_is_dropped_after_the_lag() {
        let (mut s, start) = three();
        let lag = Duration::from_millis(1000);
        let t = |ms| start + Duration::from_millis(ms);
        // Follower 2 keeps up; follower 3 fetches but always trails the leader's end.
        for ms in [100, 400, 700, 1000, 1300] {
            s.record_fetch(2, 200 + ms as i64, 200 + ms as i64, t(ms));
            s.record_fetch(3, 150, 200 + ms as i64, t(ms));
        }
        assert_eq!(s.shrink(1, t(900), lag), None);
        assert_eq!(
            s.shrink(1, t(1300), lag),
            Some(IsrProposal {
                isr: vec![1, 2],
                partition_epoch: 5
            })
        );
    }

    #[test]
    fn catching_up_to_the_previous_fetch_counts_as_caught_up_then() {
        let (mut s, start) = three();
        let lag = Duration::from_millis(1000);
        let t = |ms| start + Duration::from_millis(ms);
        // A steady producer: the follower is always one fetch behind, never level.
        let mut leader_end = 100;
        let mut follower = 100;
        for step in 1..=30 {
            leader_end += 10;
            s.record_fetch(3, follower, leader_end, t(step * 100));
            s.record_fetch(2, leader_end, leader_end, t(step * 100));
            follower = leader_end;
        }
        assert_eq!(s.shrink(1, t(3000), lag), None);
    }
}

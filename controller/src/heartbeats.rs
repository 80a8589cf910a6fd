//! Broker liveness as the active controller sees it: the last heartbeat of each broker, and who
//! has been silent past the session timeout. Kept in memory only (not in the log): a new active
//! controller starts every broker's clock afresh, a grace period before anyone can be fenced.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::image::BrokerId;

#[derive(Debug)]
pub struct Heartbeats {
    session: Duration,
    last: BTreeMap<BrokerId, Instant>,
}

impl Heartbeats {
    pub fn new(session: Duration) -> Self {
        Heartbeats {
            session,
            last: BTreeMap::new(),
        }
    }

    /// On becoming the active controller: each known broker gets a session from the time
    /// given with it. Heartbeats already recorded in this term (they can arrive before the
    /// controller's first check) are kept: a restart of the clock never shortens one.
    pub fn start_grace(&mut self, brokers: impl IntoIterator<Item = (BrokerId, Instant)>) {
        for (b, from) in brokers {
            // A heartbeat that already reached this controller counts; never move it back.
            let t = self.last.entry(b).or_insert(from);
            *t = (*t).max(from);
        }
    }

    pub fn record(&mut self, broker: BrokerId, now: Instant) {
        self.last.insert(broker, now);
    }

    /// `broker`'s heartbeat connection closed: unless it is heard from again, it expires
    /// `remaining` from `now` (or sooner, if its session ends first).
    pub fn cut_short(&mut self, broker: BrokerId, now: Instant, remaining: Duration) {
        let Some(t) = self.last.get_mut(&broker) else {
            return;
        };
        let spent = self.session.saturating_sub(remaining);
        if let Some(as_if_last) = now.checked_sub(spent) {
            *t = (*t).min(as_if_last);
        }
    }

    pub fn forget(&mut self, broker: BrokerId) {
        self.last.remove(&broker);
    }

    /// Alive = heard from within the session timeout.
    pub fn is_alive(&self, broker: BrokerId, now: Instant) -> bool {
        self.last
            .get(&broker)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.session)
    }

    /// Brokers silent for the session timeout or longer, in id order.
    pub fn expired(&self, now: Instant) -> Vec<BrokerId> {
        self.last
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= self.session)
            .map(|(b, _)| *b)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_past_the_session_expires_and_grace_restarts_clocks() {
        let t0 = Instant::now();
        let session = Duration::from_millis(1500);
        let mut h = Heartbeats::new(session);
        h.record(1, t0);
        h.record(2, t0);
        h.record(1, t0 + Duration::from_millis(1000));
        let t = t0 + Duration::from_millis(1600);
        assert_eq!(h.expired(t), vec![2]);
        assert!(h.is_alive(1, t));
        assert!(!h.is_alive(2, t));
        // A new controller: nobody expires until a whole session has passed.
        h.start_grace([(1, t), (2, t)]);
        assert!(h.expired(t + Duration::from_millis(1400)).is_empty());
        assert_eq!(h.expired(t + session), vec![1, 2]);
        // A broker heard before the grace began keeps its record.
        h.record(3, t);
        h.start_grace([(1, t)]);
        assert!(h.is_alive(3, t + Duration::from_millis(1000)));
        h.forget(2);
        assert_eq!(h.expired(t + session), vec![1, 3]);
        // A closed heartbeat connection leaves `remaining` of the session; a heartbeat after
        // it restores the whole session.
        let mut h = Heartbeats::new(session);
        h.record(1, t);
        h.record(2, t);
        h.cut_short(1, t, Duration::from_millis(500));
        assert!(h.expired(t + Duration::from_millis(499)).is_empty());
        assert_eq!(h.expired(t + Duration::from_millis(500)), vec![1]);
        h.record(1, t + Duration::from_millis(200));
        assert!(h.expired(t + Duration::from_millis(1000)).is_empty());
        h.cut_short(3, t, Duration::ZERO);
        assert!(!h.is_alive(3, t), "an unknown broker stays unknown");
        // A broker whose silence began earlier (the old controller's own) expires sooner.
        let mut h = Heartbeats::new(session);
        let earlier = t - Duration::from_millis(700);
        h.start_grace([(1, t), (2, earlier)]);
        assert_eq!(h.expired(t + Duration::from_millis(800)), vec![2]);
    }
}

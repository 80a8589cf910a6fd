//! The byte budget of replication catch-up, Kafka's `follower.replication.throttled.rate`
//! (node-wide: one `Arc` shared by every shard's fetchers).
//!
//! A token bucket: it refills at the rate, holds at most one second of it (the burst), and is
//! charged with what catch-up fetches actually received. An answer may be larger than what was
//! left (a leader returns a partition's first batch whole), so the bucket can go into debt;
//! nothing is fetched for catch-up again until the refill has paid it back, which keeps the
//! long-run rate at or below the setting however many shards draw on it. Time is passed in,
//! so the arithmetic is tested with a fake clock. The only shared state is two atomics.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// A broker-wide byte budget (see the module comment).
#[derive(Debug)]
pub struct ByteBudget {
    /// Bytes per second; None: unlimited, and the atomics are never touched.
    rate_bytes_per_s: Option<u64>,
    /// Most bytes the bucket holds: one second of the rate.
    burst_bytes: i64,
    /// Bytes that may still be fetched; negative while an answer larger than what was left
    /// is being paid back.
    tokens: AtomicI64,
    /// Nanoseconds after `origin` up to which refill has been credited.
    refilled_ns: AtomicU64,
    origin: Instant,
}

impl ByteBudget {
    /// A budget of `rate_bytes_per_s` starting full at `now`; `i64::MAX` (Kafka's default,
    /// `Long.MAX_VALUE`) means unlimited.
    pub fn new(rate_bytes_per_s: i64, now: Instant) -> Self {
        assert!(rate_bytes_per_s > 0, "a throttle rate is positive");
        let rate = (rate_bytes_per_s != i64::MAX).then(|| rate_bytes_per_s.unsigned_abs());
        ByteBudget {
            rate_bytes_per_s: rate,
            burst_bytes: rate_bytes_per_s,
            tokens: AtomicI64::new(rate_bytes_per_s),
            refilled_ns: AtomicU64::new(0),
            origin: now,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.rate_bytes_per_s.is_none()
    }

    /// Bytes a fetch may ask for now: 0 while the bucket is empty or in debt, `u64::MAX` when
    /// unlimited.
    pub fn available(&self, now: Instant) -> u64 {
        if self.is_unlimited() {
            return u64::MAX;
        }
        self.refill(now);
        u64::try_from(self.tokens.load(Ordering::Acquire)).unwrap_or(0)
    }

    /// Charges `bytes` that a catch-up fetch received.
    pub fn charge(&self, bytes: u64, now: Instant) {
        if self.is_unlimited() || bytes == 0 {
            return;
        }
        self.refill(now);
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        // Never fails: the closure always returns Some.
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_sub(bytes))
            });
    }

    /// How long until [`available`](Self::available) is above zero again (zero if it is now).
    pub fn wait(&self, now: Instant) -> Duration {
        let Some(rate) = self.rate_bytes_per_s else {
            return Duration::ZERO;
        };
        self.refill(now);
        let tokens = self.tokens.load(Ordering::Acquire);
        if tokens > 0 {
            return Duration::ZERO;
        }
        // One byte beyond the debt, rounded up to a whole nanosecond.
        let missing = u128::from(tokens.unsigned_abs()) + 1;
        let nanos = (missing * NANOS_PER_SECOND).div_ceil(u128::from(rate));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Credits the bytes earned since the last refill, up to the burst. Whoever moves the
    /// refill clock (a compare-and-swap) adds the bytes, so two shards never credit the same
    /// interval; only whole bytes are credited, and the clock moves by their time alone, so
    /// frequent calls at a low rate lose nothing to rounding.
    fn refill(&self, now: Instant) {
        let Some(rate) = self.rate_bytes_per_s else {
            return;
        };
        let now_ns = u64::try_from(now.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX);
        let last_ns = self.refilled_ns.load(Ordering::Acquire);
        if now_ns <= last_ns {
            return;
        }
        let elapsed_ns = u128::from(now_ns - last_ns);
        let earned = elapsed_ns * u128::from(rate) / NANOS_PER_SECOND;
        if earned == 0 {
            return;
        }
        let full = u128::from(self.burst_bytes.unsigned_abs());
        let moved_ns = if earned >= full {
            // Idle for a whole burst or more: the bucket fills and the rest of the time is lost.
            elapsed_ns
        } else {
            earned * NANOS_PER_SECOND / u128::from(rate)
        };
        let to_ns = last_ns.saturating_add(u64::try_from(moved_ns).unwrap_or(u64::MAX));
        if self
            .refilled_ns
            .compare_exchange(last_ns, to_ns, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another shard credited this interval.
            return;
        }
        let earned = i64::try_from(earned).unwrap_or(i64::MAX);
        let burst = self.burst_bytes;
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(earned).min(burst))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: i64 = 1_000_000;

    fn at(origin: Instant, ms: u64) -> Instant {
        origin + Duration::from_millis(ms)
    }

    #[test]
    fn unlimited_by_default_never_throttles() {
        let t0 = Instant::now();
        let b = ByteBudget::new(i64::MAX, t0);
        assert!(b.is_unlimited());
        b.charge(u64::MAX, t0);
        assert_eq!(b.available(t0), u64::MAX);
        assert_eq!(b.wait(t0), Duration::ZERO);
    }

    #[test]
    fn starts_full_and_draws_down() {
        let t0 = Instant::now();
        let b = ByteBudget::new(MB, t0);
        assert_eq!(b.available(t0), 1_000_000);
        b.charge(400_000, t0);
        assert_eq!(b.available(t0), 600_000);
        b.charge(600_000, t0);
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.wait(t0), Duration::from_micros(1));
    }

    #[test]
    fn refills_at_the_rate() {
        let t0 = Instant::now();
        let b = ByteBudget::new(MB, t0);
        b.charge(1_000_000, t0);
        assert_eq!(b.available(at(t0, 250)), 250_000);
        assert_eq!(b.available(at(t0, 500)), 500_000);
        b.charge(500_000, at(t0, 500));
        assert_eq!(b.available(at(t0, 600)), 100_000);
    }

    #[test]
    fn the_burst_caps_what_idle_time_earns() {
        let t0 = Instant::now();
        let b = ByteBudget::new(MB, t0);
        b.charge(300_000, t0);
        assert_eq!(b.available(at(t0, 60_000)), 1_000_000);
        // The minute of idling is not banked: a full draw empties it again.
        b.charge(1_000_000, at(t0, 60_000));
        assert_eq!(b.available(at(t0, 60_000)), 0);
        assert_eq!(b.available(at(t0, 60_100)), 100_000);
    }

    #[test]
    fn a_debt_is_paid_back_before_anything_is_fetched() {
        let t0 = Instant::now();
        let b = ByteBudget::new(MB, t0);
        // One answer larger than the bucket (a whole first batch).
        b.charge(2_500_000, t0);
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.wait(t0), Duration::from_nanos(1_500_001_000));
        assert_eq!(b.available(at(t0, 1_000)), 0);
        assert_eq!(b.available(at(t0, 1_500)), 0);
        assert_eq!(b.available(at(t0, 1_600)), 100_000);
    }

    #[test]
    fn frequent_calls_at_a_low_rate_lose_no_fractions() {
        let t0 = Instant::now();
        // 3 bytes per second, asked every 100 ms: 0.3 bytes each time.
        let b = ByteBudget::new(3, t0);
        b.charge(3, t0);
        for ms in (100..=10_000).step_by(100) {
            let _ = b.available(at(t0, ms));
        }
        assert_eq!(b.available(at(t0, 10_000)), 3, "capped at the burst");
        b.charge(3, at(t0, 10_000));
        for ms in (10_100..=10_900).step_by(100) {
            let _ = b.available(at(t0, ms));
        }
        assert_eq!(b.available(at(t0, 11_000)), 3);
    }

    #[test]
    fn shards_drawing_together_share_one_rate() {
        let t0 = Instant::now();
        let b = std::sync::Arc::new(ByteBudget::new(MB, t0));
        b.charge(1_000_000, t0);
        // Four threads ask at the same instant: the interval is credited once. (One may read
        // the bucket before the winner's credit lands; that only delays its fetch.)
        let later = at(t0, 300);
        let seen: Vec<u64> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || b.available(later))
            })
            .map(|h| h.join().unwrap())
            .collect();
        assert!(seen.iter().all(|&s| s == 0 || s == 300_000), "{seen:?}");
        assert_eq!(b.available(later), 300_000);
    }

    #[test]
    fn time_going_backwards_changes_nothing() {
        let t0 = Instant::now();
        let b = ByteBudget::new(MB, t0);
        b.charge(1_000_000, at(t0, 500));
        assert_eq!(b.available(at(t0, 100)), 0);
        assert_eq!(b.available(at(t0, 600)), 100_000);
    }
}

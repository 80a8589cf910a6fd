//! What a run measures: per-shard latency histograms (merged at the end) and process-wide
//! counters (read every interval by the main thread for progress and throughput over time).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are kept in microseconds, from 1 µs to this, at 3 significant digits.
pub const LATENCY_US_MAX: u64 = 600_000_000;

/// Latency histograms of one shard (or, merged, of the run).
#[derive(Clone, Debug)]
pub struct Latencies {
    /// Produce: acknowledgement minus when each record was due (coordinated-omission corrected).
    pub produce: Histogram<u64>,
    /// Produce: acknowledgement minus when the request went out (service time, uncorrected).
    pub produce_service: Histogram<u64>,
    /// End to end: consumed minus when the record was due at the producer.
    pub e2e: Histogram<u64>,
}

fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).context("latency histogram bounds")
}

impl Latencies {
    pub fn new() -> Result<Latencies> {
        Ok(Latencies {
            produce: histogram()?,
            produce_service: histogram()?,
            e2e: histogram()?,
        })
    }

    pub fn merge(&mut self, other: &Latencies) -> Result<()> {
        self.produce
            .add(&other.produce)
            .context("merging produce latencies")?;
        self.produce_service
            .add(&other.produce_service)
            .context("merging produce service latencies")?;
        self.e2e.add(&other.e2e).context("merging e2e latencies")?;
        Ok(())
    }

    /// Records one produce acknowledgement for a request of `n` records: each record counted
    /// from when it was due (`record_due(j)`), and once per record as service time.
    pub fn record_produce(
        &mut self,
        ack_ns: u64,
        sent_ns: u64,
        n: usize,
        record_due: impl Fn(usize) -> u64,
    ) {
        let service = ns_to_us(ack_ns.saturating_sub(sent_ns));
        self.produce_service.saturating_record_n(service, n as u64);
        for j in 0..n {
            self.produce
                .saturating_record(ns_to_us(ack_ns.saturating_sub(record_due(j))));
        }
    }

    pub fn record_e2e(&mut self, now_ns: u64, due_ns: u64) {
        self.e2e
            .saturating_record(ns_to_us(now_ns.saturating_sub(due_ns)));
    }
}

/// Rounds up, so a sub-microsecond latency counts as 1 µs (the histogram's floor), never 0.
fn ns_to_us(ns: u64) -> u64 {
    ns.div_ceil(1000).max(1)
}

/// Counters one shard bumps; padded so shards never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardCounters {
    pub produced_msgs: AtomicU64,
    pub produced_bytes: AtomicU64,
    pub consumed_msgs: AtomicU64,
    pub consumed_bytes: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

impl ShardCounters {
    pub fn add(c: &AtomicU64, n: u64) {
        // Only this shard writes; readers tolerate a value one interval stale.
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// A sum of every shard's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    pub produced_msgs: u64,
    pub produced_bytes: u64,
    pub consumed_msgs: u64,
    pub consumed_bytes: u64,
    pub requests: u64,
    pub errors: u64,
}

impl Totals {
    pub fn read(shards: &[ShardCounters]) -> Totals {
        let mut t = Totals::default();
        for s in shards {
            t.produced_msgs += s.produced_msgs.load(Ordering::Relaxed);
            t.produced_bytes += s.produced_bytes.load(Ordering::Relaxed);
            t.consumed_msgs += s.consumed_msgs.load(Ordering::Relaxed);
            t.consumed_bytes += s.consumed_bytes.load(Ordering::Relaxed);
            t.requests += s.requests.load(Ordering::Relaxed);
            t.errors += s.errors.load(Ordering::Relaxed);
        }
        t
    }

    pub fn minus(&self, earlier: &Totals) -> Totals {
        Totals {
            produced_msgs: self.produced_msgs - earlier.produced_msgs,
            produced_bytes: self.produced_bytes - earlier.produced_bytes,
            consumed_msgs: self.consumed_msgs - earlier.consumed_msgs,
            consumed_bytes: self.consumed_bytes - earlier.consumed_bytes,
            requests: self.requests - earlier.requests,
            errors: self.errors - earlier.errors,
        }
    }
}

/// Phase flags every shard reads: latencies are recorded only while `measuring`; `stop` ends
/// the sending (producers drain their in-flight requests, consumers their last fetch).
#[derive(Debug, Default)]
pub struct Phase {
    pub measuring: AtomicBool,
    pub stop: AtomicBool,
    /// Set when the producers are done, so e2e consumers know no more records are coming.
    pub producers_done: AtomicBool,
}

impl Phase {
    pub fn measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    pub fn producers_done(&self) -> bool {
        self.producers_done.load(Ordering::Relaxed)
    }
}

/// A histogram reduced to what the reports show.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p99_9_us: u64,
    pub p99_99_us: u64,
    pub max_us: u64,
    /// (percentile, µs) at log-spaced points, for the percentile plot.
    pub curve: Vec<(f64, u64)>,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Option<LatencySummary> {
        if h.is_empty() {
            return None;
        }
        let q = |p: f64| h.value_at_quantile(p / 100.0);
        // 1 - 10^(-k/8) for k = 0..=48: eight points per nine, up to 99.9999%.
        let mut curve: Vec<(f64, u64)> = (0..=48)
            .map(|k| {
                let p = 100.0 * (1.0 - 10f64.powf(-(k as f64) / 8.0));
                (p, q(p))
            })
            .collect();
        curve.push((100.0, h.max()));
        Some(LatencySummary {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: q(50.0),
            p90_us: q(90.0),
            p99_us: q(99.0),
            p99_9_us: q(99.9),
            p99_99_us: q(99.99),
            max_us: h.max(),
            curve,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{record_due_ns, Pace, Schedule};

    /// A broker that answers in 1 ms but stalls once for 1 s, driven at 1000 requests/s open
    /// loop by one connection that sends only after the previous answer. Without correction,
    /// one bad sample hides among the good ones; with it, every request that queued behind the
    /// stall counts its wait, as a real population of clients would see it.
    #[test]
    fn coordinated_omission_is_corrected() {
        let mut lat = Latencies::new().unwrap();
        let mut s = Schedule::new(
            Pace::Fixed {
                records_per_sec: 1000.0,
            },
            0,
            1,
        );
        let mut free_at = 0u64;
        for k in 0..10_000u64 {
            let due = s.next_due_ns().unwrap();
            s.advance();
            let sent = due.max(free_at);
            let service = if k == 5_000 { 1_000_000_000 } else { 1_000_000 };
            let ack = sent + service;
            free_at = ack;
            lat.record_produce(ack, sent, 1, |j| record_due_ns(due, j, 1, 0.0));
        }
        let service = LatencySummary::of(&lat.produce_service).unwrap();
        let corrected = LatencySummary::of(&lat.produce).unwrap();
        assert_eq!(service.p99_us, 1_000);
        assert!(service.max_us >= 999_000);
        // About 1000 requests (10%) were due during the stall: p90 must see it.
        assert!(corrected.p90_us > 400_000, "p90 {} µs", corrected.p90_us);
        assert!(corrected.p50_us >= 1_000);
    }

    #[test]
    fn summary_curve_is_monotonic_and_ends_at_max() {
        let mut h = histogram().unwrap();
        for v in 1..=100_000u64 {
            h.record(v).unwrap();
        }
        let s = LatencySummary::of(&h).unwrap();
        assert!(s
            .curve
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(s.curve.last().unwrap().1, s.max_us);
        assert!((49_900..=50_100).contains(&s.p50_us));
        assert!(LatencySummary::of(&histogram().unwrap()).is_none());
    }

    #[test]
    fn sub_microsecond_counts_as_one() {
        assert_eq!(ns_to_us(0), 1);
        assert_eq!(ns_to_us(999), 1);
        assert_eq!(ns_to_us(1001), 2);
    }
}

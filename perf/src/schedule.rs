//! When each request is due, and how latency is measured against it; pure, one per connection.
//!
//! Fixed-rate mode is open loop: request `k` is due at `start + k × interval` whether or not the
//! broker kept up, like a real population of clients. A late request is sent as soon as the
//! in-flight window allows, and its latency is counted from when it was *due*, not from when it
//! went out: this is the coordinated-omission correction (as in wrk2), so a broker stall shows
//! up in every request that queued behind it. Records inside a request arrived one by one, the
//! last at the due time, so each record's latency also counts the time it waited for its batch.
//!
//! Max-rate mode is closed loop: a request is "due" when it is sent, and latency is service time.

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// Send as fast as the in-flight window allows.
    MaxRate,
    /// Open loop at this many records per second (for this connection).
    Fixed { records_per_sec: f64 },
}

/// Due times of one connection's requests.
#[derive(Clone, Debug)]
pub struct Schedule {
    start_ns: u64,
    /// Nanoseconds between requests; 0 in max-rate mode.
    interval_ns: f64,
    /// Nanoseconds between records within a request's batches; 0 in max-rate mode.
    record_interval_ns: f64,
    sent: u64,
}

impl Schedule {
    /// `records_per_request` is the number of records each request carries.
    pub fn new(pace: Pace, start_ns: u64, records_per_request: u64) -> Schedule {
        let (interval_ns, record_interval_ns) = match pace {
            Pace::MaxRate => (0.0, 0.0),
            Pace::Fixed { records_per_sec } => {
                assert!(records_per_sec > 0.0, "rate must be positive");
                let per_record = 1e9 / records_per_sec;
                (per_record * records_per_request as f64, per_record)
            }
        };
        Schedule {
            start_ns,
            interval_ns,
            record_interval_ns,
            sent: 0,
        }
    }

    pub fn is_open_loop(&self) -> bool {
        self.interval_ns > 0.0
    }

    /// Due time of the next request (`None` in max-rate mode: due now). Computed from the
    /// start each time, so rounding never drifts.
    pub fn next_due_ns(&self) -> Option<u64> {
        self.is_open_loop()
            .then(|| self.start_ns + (self.sent as f64 * self.interval_ns) as u64)
    }

    /// Marks the next request as sent.
    pub fn advance(&mut self) {
        self.sent += 1;
    }

    pub fn record_interval_ns(&self) -> f64 {
        self.record_interval_ns
    }
}

/// When record `j` of `n` in a request due at `due_ns` came into being: the last one at the
/// due time, earlier ones one record interval apart.
pub fn record_due_ns(due_ns: u64, j: usize, n: usize, record_interval_ns: f64) -> u64 {
    debug_assert!(j < n);
    let earlier = ((n - 1 - j) as f64 * record_interval_ns) as u64;
    due_ns.saturating_sub(earlier)
}

/// Records per batch under a fixed rate with `linger_ms`: what arrives for one partition while
/// the batch lingers, at least 1 and at most `batch_records` (a full batch goes at once). In
/// max-rate mode batches are always full.
pub fn records_per_batch(
    pace: Pace,
    batch_records: u32,
    linger_ms: f64,
    partitions_per_request: usize,
) -> u32 {
    match pace {
        Pace::MaxRate => batch_records,
        Pace::Fixed { records_per_sec } => {
            let per_partition = records_per_sec / partitions_per_request.max(1) as f64;
            let lingered = (per_partition * linger_ms / 1000.0).floor();
            (lingered as u32).clamp(1, batch_records)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_due_times_do_not_drift() {
        // 3 records per request at 7 records/s: 428.571... ms apart.
        let mut s = Schedule::new(
            Pace::Fixed {
                records_per_sec: 7.0,
            },
            1_000,
            3,
        );
        for _ in 0..7_000 {
            s.advance();
        }
        // 7000 requests × 3 records / 7 per s = 3000 s exactly.
        assert_eq!(s.next_due_ns(), Some(1_000 + 3_000_000_000_000));
    }

    #[test]
    fn max_rate_has_no_schedule() {
        let s = Schedule::new(Pace::MaxRate, 5, 16);
        assert!(!s.is_open_loop());
        assert_eq!(s.next_due_ns(), None);
        assert_eq!(s.record_interval_ns(), 0.0);
    }

    #[test]
    fn records_arrive_before_their_batch_is_due() {
        let s = Schedule::new(
            Pace::Fixed {
                records_per_sec: 1000.0,
            },
            0,
            4,
        );
        let ri = s.record_interval_ns();
        assert_eq!(ri, 1_000_000.0);
        let due = 10_000_000;
        let times: Vec<u64> = (0..4).map(|j| record_due_ns(due, j, 4, ri)).collect();
        assert_eq!(times, vec![7_000_000, 8_000_000, 9_000_000, 10_000_000]);
    }

    #[test]
    fn linger_sizes_batches_at_a_fixed_rate() {
        let fixed = |r| Pace::Fixed { records_per_sec: r };
        // 100k records/s over 4 partitions, 5 ms linger: 125 per partition, capped at 64.
        assert_eq!(records_per_batch(fixed(100_000.0), 64, 5.0, 4), 64);
        assert_eq!(records_per_batch(fixed(10_000.0), 64, 5.0, 4), 12);
        // Very slow: one record per batch, never zero.
        assert_eq!(records_per_batch(fixed(10.0), 64, 0.0, 1), 1);
        assert_eq!(records_per_batch(Pace::MaxRate, 64, 0.0, 1), 64);
    }
}

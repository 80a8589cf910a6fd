//! One monotonic clock for the whole process, read on every shard.
//!
//! Times are nanoseconds on a monotonic clock whose zero is the Unix epoch at process start,
//! so a time written into a record by one shard reads correctly on another, and stays
//! meaningful (roughly wall time) in a dump of the topic.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Anchor {
    at: Instant,
    unix_ns: u64,
}

fn anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| Anchor {
        at: Instant::now(),
        // A clock before 1970 is a broken machine; 0 keeps times monotonic all the same.
        unix_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    })
}

/// Nanoseconds since the Unix epoch, monotonic within this process.
pub fn now_ns() -> u64 {
    let a = anchor();
    a.unix_ns + a.at.elapsed().as_nanos() as u64
}

/// The same clock in whole milliseconds, for Kafka record timestamps.
pub fn now_ms() -> i64 {
    (now_ns() / 1_000_000) as i64
}

/// How long from now until `due_ns`, if it lies in the future.
pub fn until(due_ns: u64) -> Option<std::time::Duration> {
    let now = now_ns();
    (due_ns > now).then(|| std::time::Duration::from_nanos(due_ns - now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_near_wall_time() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(wall.abs_diff(b) < 5_000_000_000);
        assert!(until(a).is_none());
        assert!(until(now_ns() + 1_000_000_000).is_some());
    }
}

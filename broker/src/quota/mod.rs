//! Limits that keep one client from taking the broker (node-wide: one `Arc<Quotas>` shared by
//! every shard): connections per IP and in all (`max.connections.per.ip`, its overrides,
//! `max.connections`), here, and per client byte rates for produce and fetch ([`clients`]:
//! Kafka's dynamic client quotas and the static `quota.producer.default` /
//! `quota.consumer.default`, KIP-13 with KIP-219's throttling).
//!
//! Connections are counted on accept and released when the connection's task ends; the per-IP
//! counts live in a small map split into slots by address hash, each behind a std `Mutex` held
//! only for a map lookup (never across an await). With no connection limit configured, accept
//! pays one branch on a bool.

mod clients;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use clients::{ClientQuotas, ConnectionQuota};

use crate::limits::QUOTA_MAP_SLOTS;
use crate::settings::QuotaSettings;

/// How often a refused connection may be logged at warn (the rest go to debug).
const REFUSAL_WARN_INTERVAL_MS: u64 = 60_000;

/// Every limit of this node, shared by all shards.
#[derive(Debug)]
pub struct Quotas {
    pub connections: ConnectionLimits,
    pub clients: ClientQuotas,
}

impl Quotas {
    pub fn new(settings: &QuotaSettings, now: Instant) -> Self {
        Quotas {
            connections: ConnectionLimits::new(settings, now),
            clients: ClientQuotas::new(settings),
        }
    }
}

/// `max.connections.per.ip` (with overrides) and `max.connections`, counted across all shards.
#[derive(Debug)]
pub struct ConnectionLimits {
    /// False when no limit is set: accept does nothing but this one check.
    enabled: bool,
    total_max: u32,
    total: AtomicU32,
    per_ip_max: u32,
    per_ip_overrides: HashMap<IpAddr, u32>,
    /// Open connections per address; an address with none has no entry.
    per_ip: Vec<Mutex<HashMap<IpAddr, u32>>>,
    /// Milliseconds after `origin` of the last refusal logged at warn.
    warned_ms: AtomicU64,
    origin: Instant,
}

/// Why a connection was closed right after accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max.connections.per.ip` (or its override for this address).
    PerIp { max: u32 },
    /// `max.connections`.
    Total { max: u32 },
}

/// One counted connection; dropping it releases the slot.
#[must_use]
pub struct ConnectionPermit {
    limits: Arc<Quotas>,
    ip: Option<IpAddr>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            self.limits.connections.release(ip);
        }
    }
}

impl ConnectionLimits {
    fn new(settings: &QuotaSettings, now: Instant) -> Self {
        let total_max = settings.max_connections;
        let per_ip_max = settings.max_connections_per_ip;
        let enabled = total_max != u32::MAX
            || per_ip_max != u32::MAX
            || !settings.per_ip_overrides.is_empty();
        ConnectionLimits {
            enabled,
            total_max,
            total: AtomicU32::new(0),
            per_ip_max,
            per_ip_overrides: settings.per_ip_overrides.clone(),
            per_ip: (0..QUOTA_MAP_SLOTS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            warned_ms: AtomicU64::new(0),
            origin: now,
        }
    }

    fn max_for(&self, ip: IpAddr) -> u32 {
        self.per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.per_ip_max)
    }

    fn slot(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        &self.per_ip[slot_of(&ip)]
    }

    /// Counts a new connection from `ip`, or says which limit it is over (nothing is counted).
    fn acquire(&self, ip: IpAddr) -> Result<(), Refusal> {
        let total_max = self.total_max;
        let counted = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < total_max).then_some(n + 1)
            });
        if counted.is_err() {
            return Err(Refusal::Total { max: total_max });
        }
        let max = self.max_for(ip);
        let refused = {
            // A poisoned slot only means another shard panicked mid-update of a plain
            // counter map, and a panicking shard stops the broker anyway.
            let mut map = self.slot(ip).lock().unwrap_or_else(|p| p.into_inner());
            let open = map.entry(ip).or_insert(0);
            if *open < max {
                *open += 1;
                false
            } else {
                if *open == 0 {
                    map.remove(&ip);
                }
                true
            }
        };
        if refused {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::PerIp { max });
        }
        Ok(())
    }

    fn release(&self, ip: IpAddr) {
        {
            let mut map = self.slot(ip).lock().unwrap_or_else(|p| p.into_inner());
            let open = map.get_mut(&ip);
            assert!(
                open.is_some(),
                "releasing a connection that was never counted"
            );
            if let Some(open) = open {
                *open -= 1;
                if *open == 0 {
                    map.remove(&ip);
                }
            }
        }
        let before = self.total.fetch_sub(1, Ordering::AcqRel);
        assert!(before > 0, "connection count went below zero");
    }

    /// Open connections from `ip` (tests and diagnostics).
    #[cfg(test)]
    fn open_from(&self, ip: IpAddr) -> u32 {
        let map = self.slot(ip).lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip).copied().unwrap_or(0)
    }

    /// True at most once per interval: that refusal is logged at warn, the others at debug.
    fn should_warn(&self, now: Instant) -> bool {
        let now_ms = u64::try_from(now.saturating_duration_since(self.origin).as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(REFUSAL_WARN_INTERVAL_MS);
        let last = self.warned_ms.load(Ordering::Acquire);
        now_ms >= last.saturating_add(REFUSAL_WARN_INTERVAL_MS)
            && self
                .warned_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

/// Counts a just-accepted connection from `peer`: a permit to hold for the connection's life,
/// or None when it is over a limit and must be closed (the refusal is logged here).
pub fn admit(quotas: &Arc<Quotas>, peer: Option<std::net::SocketAddr>) -> Option<ConnectionPermit> {
    let limits = &quotas.connections;
    // The one branch a broker without connection limits pays.
    if !limits.enabled {
        return Some(ConnectionPermit {
            limits: quotas.clone(),
            ip: None,
        });
    }
    // Kafka counts by address; an unknown peer (it hung up already) has nothing to count.
    let ip = peer?.ip();
    match limits.acquire(ip) {
        Ok(()) => Some(ConnectionPermit {
            limits: quotas.clone(),
            ip: Some(ip),
        }),
        Err(refusal) => {
            if limits.should_warn(Instant::now()) {
                tracing::warn!(%ip, ?refusal, "connection refused: over the connection limit (logged once a minute; the rest at debug)");
            } else {
                tracing::debug!(%ip, ?refusal, "connection refused: over the connection limit");
            }
            None
        }
    }
}

fn slot_of<K: Hash + ?Sized>(key: &K) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    // The remainder is below QUOTA_MAP_SLOTS, a usize.
    usize::try_from(h.finish() % QUOTA_MAP_SLOTS as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn quotas(s: QuotaSettings) -> Arc<Quotas> {
        Arc::new(Quotas::new(&s, Instant::now()))
    }

    #[test]
    fn no_limits_count_nothing() {
        let q = quotas(QuotaSettings::default());
        assert!(!q.connections.enabled);
        assert!(!q.clients.is_active());
        let permits: Vec<_> = (0..1000)
            .map(|_| admit(&q, Some("127.0.0.1:1".parse().unwrap())))
            .collect();
        assert!(permits.iter().all(Option::is_some));
        assert_eq!(q.connections.total.load(Ordering::Acquire), 0);
    }

    #[test]
    fn per_ip_limit_refuses_the_next_and_a_close_frees_a_slot() {
        let q = quotas(QuotaSettings {
            max_connections_per_ip: 2,
            ..QuotaSettings::default()
        });
        let peer = Some("10.0.0.1:5000".parse().unwrap());
        let a = admit(&q, peer);
        let b = admit(&q, peer);
        assert!(a.is_some() && b.is_some());
        assert!(admit(&q, peer).is_none(), "third from one address");
        assert!(
            admit(&q, Some("10.0.0.2:5000".parse().unwrap())).is_some(),
            "another address has its own count"
        );
        assert_eq!(q.connections.open_from(ip("10.0.0.1")), 2);
        drop(a);
        assert_eq!(q.connections.open_from(ip("10.0.0.1")), 1);
        let c = admit(&q, peer);
        assert!(c.is_some(), "a closed connection frees its slot");
        drop((b, c));
        assert_eq!(q.connections.open_from(ip("10.0.0.1")), 0);
        assert_eq!(q.connections.total.load(Ordering::Acquire), 0);
    }

    #[test]
    fn overrides_and_the_total_limit() {
        let q = quotas(QuotaSettings {
            max_connections: 3,
            max_connections_per_ip: 1,
            per_ip_overrides: HashMap::from([(ip("10.0.0.9"), 5), (ip("10.0.0.6"), 0)]),
            ..QuotaSettings::default()
        });
        let peer = |s: &str| Some(format!("{s}:1").parse().unwrap());
        assert!(
            admit(&q, peer("10.0.0.6")).is_none(),
            "override 0 blocks an address"
        );
        let held: Vec<_> = (0..3).filter_map(|_| admit(&q, peer("10.0.0.9"))).collect();
        assert_eq!(held.len(), 3, "the override allows more than the default");
        assert_eq!(
            q.connections.acquire(ip("10.0.0.1")),
            Err(Refusal::Total { max: 3 })
        );
        drop(held);
        assert!(admit(&q, peer("10.0.0.1")).is_some());
        assert_eq!(q.connections.total.load(Ordering::Acquire), 0);
    }

    #[test]
    fn counts_hold_across_threads() {
        let q = quotas(QuotaSettings {
            max_connections_per_ip: 10,
            ..QuotaSettings::default()
        });
        let admitted: usize = (0..4)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let peer = Some("10.1.1.1:1".parse().unwrap());
                    let held: Vec<_> = (0..10).filter_map(|_| admit(&q, peer)).collect();
                    // Held until the thread ends; the count is checked after all have tried.
                    std::mem::forget(held);
                })
            })
            .map(|h| h.join().unwrap())
            .count();
        assert_eq!(admitted, 4);
        assert_eq!(q.connections.open_from(ip("10.1.1.1")), 10);
    }

    #[test]
    fn refusals_warn_once_a_minute() {
        let q = quotas(QuotaSettings::default());
        let t0 = q.connections.origin;
        assert!(q.connections.should_warn(t0));
        assert!(!q.connections.should_warn(t0 + Duration::from_secs(59)));
        assert!(q.connections.should_warn(t0 + Duration::from_secs(60)));
    }
}

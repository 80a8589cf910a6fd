//! Limits that keep one client from taking the broker (node-wide: one `Arc<Quotas>` shared by
//! every shard): connections per IP and in all (`max.connections.per.ip`, its overrides,
//! `max.connections`), and per client-id byte rates for produce and fetch (Kafka's static
//! `quota.producer.default` / `quota.consumer.default`, KIP-13 with KIP-219's throttling).
//!
//! Connections are counted on accept and released when the connection's task ends; the per-IP
//! counts live in a small map split into slots by address hash, each behind a std `Mutex` held
//! only for a map lookup (never across an await). Client quotas are one [`ByteBudget`] per
//! client-id and direction: a request is charged when it arrives (produce: its size) or when its
//! answer is built (fetch: the record bytes), and a client in debt is told how long until it is
//! back under its quota (`throttle_time_ms`) and its connection reads nothing more until then.
//! When nothing is configured every check is one branch on a bool.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use skein_net::FetchTopicDesc;

use crate::kafka::dispatch::RequestCtx;
use crate::limits::{QUOTA_CLIENTS_PER_SLOT_MAX, QUOTA_MAP_SLOTS, QUOTA_THROTTLE_TIME_MS_MAX};
use crate::settings::QuotaSettings;
use crate::shard::route::FetchChunk;
use crate::throttle::ByteBudget;

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

/// Per client-id byte-rate quotas (produce and fetch), shared by all shards.
#[derive(Debug)]
pub struct ClientQuotas {
    /// False when no quota is set: produce and fetch pay this one check.
    enabled: bool,
    producer_default: Option<i64>,
    consumer_default: Option<i64>,
    producer_overrides: HashMap<String, i64>,
    consumer_overrides: HashMap<String, i64>,
    /// The budgets of the client-ids seen, in slots by hash.
    clients: Vec<Mutex<HashMap<String, Arc<ClientBudgets>>>>,
}

/// One client-id's budgets; None where its rate is unlimited.
#[derive(Debug)]
pub struct ClientBudgets {
    produce: Option<ByteBudget>,
    fetch: Option<ByteBudget>,
}

impl ClientBudgets {
    /// Nothing owed in either direction: dropping this entry loses nothing, since a new one
    /// starts the same way.
    fn is_idle(&self, now: Instant) -> bool {
        let full = |b: &Option<ByteBudget>| b.as_ref().is_none_or(|b| b.wait(now).is_zero());
        full(&self.produce) && full(&self.fetch)
    }
}

/// Produce or fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Produce,
    Fetch,
}

impl ClientQuotas {
    fn new(settings: &QuotaSettings) -> Self {
        let rate = |r: i64| (r != i64::MAX).then_some(r);
        let enabled = settings.producer_default != i64::MAX
            || settings.consumer_default != i64::MAX
            || !settings.producer_overrides.is_empty()
            || !settings.consumer_overrides.is_empty();
        ClientQuotas {
            enabled,
            producer_default: rate(settings.producer_default),
            consumer_default: rate(settings.consumer_default),
            producer_overrides: settings.producer_overrides.clone(),
            consumer_overrides: settings.consumer_overrides.clone(),
            clients: (0..QUOTA_MAP_SLOTS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The budgets of `client_id`, made on first sight.
    fn budgets(&self, client_id: &str, now: Instant) -> Arc<ClientBudgets> {
        let mut map = self.clients[slot_of(client_id)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(client_id) {
            return b.clone();
        }
        if map.len() >= QUOTA_CLIENTS_PER_SLOT_MAX {
            // Many client-ids (a client making up new ones): forget those that owe nothing and
            // that no connection holds; the rest stay, so a debt cannot be shed by churning.
            map.retain(|_, b| Arc::strong_count(b) > 1 || !b.is_idle(now));
        }
        let rate = |over: &HashMap<String, i64>, default: Option<i64>| {
            over.get(client_id).copied().or(default)
        };
        let budgets = Arc::new(ClientBudgets {
            produce: rate(&self.producer_overrides, self.producer_default)
                .map(|r| ByteBudget::new(r, now)),
            fetch: rate(&self.consumer_overrides, self.consumer_default)
                .map(|r| ByteBudget::new(r, now)),
        });
        map.insert(client_id.to_string(), budgets.clone());
        budgets
    }
}

/// Charges `bytes` to a client's budget and returns its throttle time in ms (0: under quota).
fn charge(budgets: &ClientBudgets, direction: Direction, bytes: usize, now: Instant) -> u32 {
    let budget = match direction {
        Direction::Produce => &budgets.produce,
        Direction::Fetch => &budgets.fetch,
    };
    let Some(budget) = budget else {
        return 0;
    };
    budget.charge(u64::try_from(bytes).unwrap_or(u64::MAX), now);
    throttle_ms(budget.wait(now))
}

/// Whole milliseconds, rounded up so a throttled client is never told 0, and capped: a client
/// far in debt is throttled again on its next request rather than muted for minutes at once.
fn throttle_ms(wait: Duration) -> u32 {
    if wait.is_zero() {
        return 0;
    }
    let ms = wait.as_nanos().div_ceil(1_000_000);
    u32::try_from(ms)
        .unwrap_or(u32::MAX)
        .min(QUOTA_THROTTLE_TIME_MS_MAX)
}

/// One connection's quota state: the client-id it last used and the throttle its last request
/// earned. Only its own connection task touches it.
#[derive(Debug)]
pub struct ConnectionQuota {
    quotas: Arc<Quotas>,
    client: RefCell<Option<(String, Arc<ClientBudgets>)>>,
    throttle_ms: Cell<u32>,
}

impl ConnectionQuota {
    /// None when no client quota is configured, so requests carry nothing.
    pub fn new(quotas: &Arc<Quotas>) -> Option<std::rc::Rc<Self>> {
        quotas.clients.is_enabled().then(|| {
            std::rc::Rc::new(ConnectionQuota {
                quotas: quotas.clone(),
                client: RefCell::new(None),
                throttle_ms: Cell::new(0),
            })
        })
    }

    /// Charges a request of `bytes` from `client_id`; the throttle it earns is kept for the
    /// response ([`throttle_ms`](Self::throttle_ms)) and for muting the connection.
    pub fn charge(&self, client_id: Option<&str>, direction: Direction, bytes: usize) -> u32 {
        let now = Instant::now();
        // Kafka's default client-id is the empty string.
        let id = client_id.unwrap_or("");
        let budgets = {
            let mut cached = self.client.borrow_mut();
            match cached.as_ref() {
                Some((cached_id, b)) if cached_id == id => b.clone(),
                _ => {
                    let b = self.quotas.clients.budgets(id, now);
                    *cached = Some((id.to_string(), b.clone()));
                    b
                }
            }
        };
        let ms = charge(&budgets, direction, bytes, now);
        self.throttle_ms.set(self.throttle_ms.get().max(ms));
        ms
    }

    /// Charges a request as it arrives: a Produce counts its whole size against the client's
    /// producer quota, as Kafka does; other requests are not charged here.
    pub fn charge_request(&self, header: &skein_net::RequestHeader, bytes: usize) {
        if header.api_key == ApiKey::Produce {
            self.charge(header.client_id.as_deref(), Direction::Produce, bytes);
        }
    }

    /// The throttle the current request earned.
    pub fn throttle_ms(&self) -> u32 {
        self.throttle_ms.get()
    }

    /// Takes the throttle to mute the connection for, resetting it for the next request.
    pub fn take_throttle(&self) -> Duration {
        Duration::from_millis(u64::from(self.throttle_ms.replace(0)))
    }
}

impl RequestCtx {
    /// `throttle_time_ms` for this request's response (Produce and Fetch); 0 without quotas.
    pub fn throttle_time_ms(&self) -> i32 {
        self.quota
            .as_ref()
            .map_or(0, |q| i32::try_from(q.throttle_ms()).unwrap_or(i32::MAX))
    }

    /// Charges a fetch response's record bytes to the client's consumer quota and returns its
    /// `throttle_time_ms` (Kafka charges the response size; the framing is left out here).
    pub fn charge_fetch(&self, topics: &[FetchTopicDesc<FetchChunk>]) -> i32 {
        let Some(q) = self.quota.as_ref() else {
            return 0;
        };
        let bytes = topics
            .iter()
            .flat_map(|t| &t.partitions)
            .flat_map(|p| &p.records)
            .map(|c| c.as_ref().len())
            .sum();
        q.charge(self.header.client_id.as_deref(), Direction::Fetch, bytes);
        self.throttle_time_ms()
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
        assert!(!q.clients.is_enabled());
        let permits: Vec<_> = (0..1000)
            .map(|_| admit(&q, Some("127.0.0.1:1".parse().unwrap())))
            .collect();
        assert!(permits.iter().all(Option::is_some));
        assert_eq!(q.connections.total.load(Ordering::Acquire), 0);
        assert!(ConnectionQuota::new(&q).is_none());
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

    #[test]
    fn a_client_over_its_quota_is_throttled_and_others_are_not() {
        let q = quotas(QuotaSettings {
            producer_default: 100_000,
            producer_overrides: HashMap::from([("vip".to_string(), 10_000_000)]),
            ..QuotaSettings::default()
        });
        let greedy = ConnectionQuota::new(&q).unwrap();
        // One second of burst, then debt.
        assert_eq!(greedy.charge(Some("greedy"), Direction::Produce, 60_000), 0);
        let ms = greedy.charge(Some("greedy"), Direction::Produce, 90_000);
        // 50 kB of debt at 100 kB/s: half a second.
        assert!((500..=501).contains(&ms), "{ms}");
        assert_eq!(greedy.take_throttle(), Duration::from_millis(u64::from(ms)));
        assert_eq!(greedy.take_throttle(), Duration::ZERO);
        // Fetch has no quota here.
        assert_eq!(
            greedy.charge(Some("greedy"), Direction::Fetch, 10_000_000),
            0
        );
        // Another connection of the same client-id shares its budget.
        let again = ConnectionQuota::new(&q).unwrap();
        assert!(again.charge(Some("greedy"), Direction::Produce, 1) > 0);
        let vip = ConnectionQuota::new(&q).unwrap();
        assert_eq!(vip.charge(Some("vip"), Direction::Produce, 1_000_000), 0);
        let other = ConnectionQuota::new(&q).unwrap();
        assert_eq!(other.charge(Some("other"), Direction::Produce, 90_000), 0);
    }

    #[test]
    fn throttle_is_rounded_up_and_capped() {
        assert_eq!(throttle_ms(Duration::ZERO), 0);
        assert_eq!(throttle_ms(Duration::from_nanos(1)), 1);
        assert_eq!(
            throttle_ms(Duration::from_secs(3600)),
            QUOTA_THROTTLE_TIME_MS_MAX
        );
    }

    #[test]
    fn idle_clients_are_forgotten_when_the_map_is_full() {
        let q = quotas(QuotaSettings {
            consumer_default: 1_000,
            ..QuotaSettings::default()
        });
        let now = Instant::now();
        let owing = q.clients.budgets("owing", now);
        if let Some(b) = &owing.fetch {
            b.charge(10_000, now);
        }
        drop(owing);
        for i in 0..(QUOTA_CLIENTS_PER_SLOT_MAX * QUOTA_MAP_SLOTS * 2) {
            let _ = q.clients.budgets(&format!("c{i}"), now);
        }
        let total: usize = q
            .clients
            .clients
            .iter()
            .map(|m| m.lock().unwrap().len())
            .sum();
        assert!(total <= QUOTA_CLIENTS_PER_SLOT_MAX * QUOTA_MAP_SLOTS);
        let owing = q.clients.budgets("owing", now);
        assert!(
            !owing.is_idle(now),
            "a debt is not shed by churning client-ids"
        );
    }
}

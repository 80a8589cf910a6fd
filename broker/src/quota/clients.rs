//! Client byte-rate quotas for produce and fetch (node-wide: one [`ClientQuotas`] in the
//! `Arc<Quotas>` every shard shares), KIP-13 with KIP-219's throttling. The quota of a
//! connection is Kafka's dynamic one from the cluster metadata (AlterClientQuotas: by user,
//! client-id or both, picked in Kafka's precedence order, see
//! `skein_controller::client_quota::resolve`), else the static `quota.producer.default` /
//! `quota.consumer.default` with `skein.quota.*.overrides` by client-id.
//!
//! A budget ([`ByteBudget`], a token bucket) is kept per direction for the names Kafka tags a
//! quota's metrics with: the user and/or client-id of the entity that applied, so a user's
//! quota is shared by all its client-ids and a default quota gives each user (or client-id)
//! one of its own. Budgets live in a small map split into slots by hash, each behind a std
//! `Mutex` held only for a map lookup (never across an await). Each connection caches the
//! budgets its (user, client-id) resolved to with the quota generation they were resolved at;
//! a metadata change to the quotas bumps the generation, so connected clients take the new
//! quota at their next request. A budget whose rate changed starts afresh (full).
//!
//! A Produce is charged its size when its handler starts (the connection loop notes the size,
//! the handler knows the user), a Fetch its record bytes when its answer is built; a client in
//! debt is told how long until it is back under its quota (`throttle_time_ms`) and its
//! connection reads nothing more until then. With no quota anywhere a request pays one relaxed
//! load of a node-wide flag and a branch.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use skein_controller::client_quota::{
    self, ClientQuotaMap, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE,
};
use skein_net::FetchTopicDesc;

use super::{slot_of, Quotas};
use crate::kafka::dispatch::RequestCtx;
use crate::limits::{QUOTA_CLIENTS_PER_SLOT_MAX, QUOTA_MAP_SLOTS, QUOTA_THROTTLE_TIME_MS_MAX};
use crate::settings::QuotaSettings;
use crate::shard::route::FetchChunk;
use crate::throttle::ByteBudget;

/// Produce or fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Produce,
    Fetch,
}

impl Direction {
    /// Kafka's quota key for this direction.
    fn key(self) -> &'static str {
        match self {
            Direction::Produce => PRODUCER_BYTE_RATE,
            Direction::Fetch => CONSUMER_BYTE_RATE,
        }
    }
}

/// The static quotas of the broker's config: per client-id, whatever the user.
#[derive(Debug)]
struct StaticQuotas {
    enabled: bool,
    producer_default: Option<i64>,
    consumer_default: Option<i64>,
    producer_overrides: HashMap<String, i64>,
    consumer_overrides: HashMap<String, i64>,
}

impl StaticQuotas {
    fn rate(&self, direction: Direction, client_id: &str) -> Option<i64> {
        let (overrides, default) = match direction {
            Direction::Produce => (&self.producer_overrides, self.producer_default),
            Direction::Fetch => (&self.consumer_overrides, self.consumer_default),
        };
        overrides.get(client_id).copied().or(default)
    }
}

/// What a budget is kept for (Kafka's quota metric tags).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BudgetKey {
    direction: Direction,
    user: Option<String>,
    client_id: Option<String>,
}

#[derive(Debug)]
struct Budget {
    rate_bytes_per_s: i64,
    budget: Arc<ByteBudget>,
}

/// Every client quota of this node, shared by all shards.
#[derive(Debug)]
pub struct ClientQuotas {
    statics: StaticQuotas,
    /// Whether any quota is set, static or dynamic: the one check a request pays without.
    active: AtomicBool,
    /// The dynamic quotas of the newest metadata, replaced whole when they change.
    dynamic: Mutex<Arc<ClientQuotaMap>>,
    /// Bumped at every change of `dynamic`; connections re-resolve when it moves.
    generation: AtomicU64,
    /// The budgets in use, in slots by hash.
    budgets: Vec<Mutex<HashMap<BudgetKey, Budget>>>,
}

/// The budgets one (user, client-id) resolved to; None where its rate is unlimited.
#[derive(Debug)]
struct ClientBudgets {
    produce: Option<Arc<ByteBudget>>,
    fetch: Option<Arc<ByteBudget>>,
}

/// A std mutex is poisoned only when a shard panicked holding it, which stops the broker.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ClientQuotas {
    pub(super) fn new(settings: &QuotaSettings) -> Self {
        let rate = |r: i64| (r != i64::MAX).then_some(r);
        let enabled = settings.producer_default != i64::MAX
            || settings.consumer_default != i64::MAX
            || !settings.producer_overrides.is_empty()
            || !settings.consumer_overrides.is_empty();
        ClientQuotas {
            statics: StaticQuotas {
                enabled,
                producer_default: rate(settings.producer_default),
                consumer_default: rate(settings.consumer_default),
                producer_overrides: settings.producer_overrides.clone(),
                consumer_overrides: settings.consumer_overrides.clone(),
            },
            active: AtomicBool::new(enabled),
            dynamic: Mutex::new(Arc::default()),
            generation: AtomicU64::new(0),
            budgets: (0..QUOTA_MAP_SLOTS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        }
    }

    /// Whether any client quota is set now.
    pub fn is_active(&self) -> bool {
        // Relaxed: a request racing a quota change may go either way, and the next one sees it.
        self.active.load(Ordering::Relaxed)
    }

    /// Installs the dynamic quotas of a new metadata snapshot (the controller shard, before the
    /// snapshot reaches any shard). Nothing happens when they did not change.
    pub fn set_dynamic(&self, quotas: &Arc<ClientQuotaMap>) {
        let mut dynamic = lock(&self.dynamic);
        if Arc::ptr_eq(&dynamic, quotas) || **dynamic == **quotas {
            return;
        }
        *dynamic = quotas.clone();
        self.active.store(
            self.statics.enabled || !quotas.is_empty(),
            Ordering::Relaxed,
        );
        self.generation.fetch_add(1, Ordering::AcqRel);
        tracing::info!(
            entities = quotas.len(),
            "client quotas changed; connected clients take them at their next request"
        );
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The budgets of a connection of `user` with `client_id`, made on first sight.
    fn resolve(&self, user: &str, client_id: &str, now: Instant) -> ClientBudgets {
        let dynamic = lock(&self.dynamic).clone();
        let budget = |direction| self.budget(&dynamic, direction, user, client_id, now);
        ClientBudgets {
            produce: budget(Direction::Produce),
            fetch: budget(Direction::Fetch),
        }
    }

    /// The rate for one direction and the key of the budget it is kept in.
    fn rate(
        &self,
        dynamic: &ClientQuotaMap,
        direction: Direction,
        user: &str,
        client_id: &str,
    ) -> Option<(i64, BudgetKey)> {
        if let Some(applied) = client_quota::resolve(dynamic, direction.key(), user, client_id) {
            let key = BudgetKey {
                direction,
                user: applied.user.map(str::to_string),
                client_id: applied.client_id.map(str::to_string),
            };
            return Some((client_quota::byte_rate(applied.value), key));
        }
        let rate = self.statics.rate(direction, client_id)?;
        let key = BudgetKey {
            direction,
            user: None,
            client_id: Some(client_id.to_string()),
        };
        Some((rate, key))
    }

    fn budget(
        &self,
        dynamic: &ClientQuotaMap,
        direction: Direction,
        user: &str,
        client_id: &str,
        now: Instant,
    ) -> Option<Arc<ByteBudget>> {
        let (rate, key) = self.rate(dynamic, direction, user, client_id)?;
        if rate == i64::MAX {
            return None;
        }
        let mut map = lock(&self.budgets[slot_of(&key)]);
        if let Some(b) = map.get(&key).filter(|b| b.rate_bytes_per_s == rate) {
            return Some(b.budget.clone());
        }
        if map.len() >= QUOTA_CLIENTS_PER_SLOT_MAX {
            // Many clients (one making up new client-ids): forget the budgets that owe nothing
            // and that no connection holds; the rest stay, so a debt cannot be shed by churning.
            map.retain(|_, b| Arc::strong_count(&b.budget) > 1 || !b.budget.wait(now).is_zero());
        }
        let budget = Arc::new(ByteBudget::new(rate, now));
        let entry = Budget {
            rate_bytes_per_s: rate,
            budget: budget.clone(),
        };
        map.insert(key, entry);
        Some(budget)
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

/// What a connection's last (user, client-id) resolved to, and at which quota generation.
#[derive(Debug)]
struct Resolved {
    generation: u64,
    user: Rc<str>,
    client_id: String,
    budgets: ClientBudgets,
}

/// One connection's quota state: the budgets its client resolved to, the throttle its last
/// request earned and the size of a Produce waiting to be charged. Only its own connection
/// task touches it.
#[derive(Debug)]
pub struct ConnectionQuota {
    quotas: Arc<Quotas>,
    resolved: RefCell<Option<Resolved>>,
    throttle_ms: Cell<u32>,
    produce_bytes: Cell<usize>,
}

impl ConnectionQuota {
    /// Always Some: a quota may be set while the connection is open. (The connection loop
    /// takes an Option; with no quota set each call below returns after one check.)
    pub fn new(quotas: &Arc<Quotas>) -> Option<Rc<Self>> {
        Some(Rc::new(ConnectionQuota {
            quotas: quotas.clone(),
            resolved: RefCell::new(None),
            throttle_ms: Cell::new(0),
            produce_bytes: Cell::new(0),
        }))
    }

    fn is_active(&self) -> bool {
        self.quotas.clients.is_active()
    }

    /// Charges a request of `bytes` from `user` with `client_id`; the throttle it earns is
    /// kept for the response ([`throttle_ms`](Self::throttle_ms)) and for muting the
    /// connection.
    pub fn charge(
        &self,
        user: &Rc<str>,
        client_id: Option<&str>,
        direction: Direction,
        bytes: usize,
    ) -> u32 {
        let now = Instant::now();
        // Kafka's default client-id is the empty string.
        let id = client_id.unwrap_or("");
        let clients = &self.quotas.clients;
        let generation = clients.generation();
        let ms = {
            let mut cached = self.resolved.borrow_mut();
            let fresh = cached.as_ref().is_some_and(|r| {
                r.generation == generation && r.user == *user && r.client_id == id
            });
            if !fresh {
                *cached = Some(Resolved {
                    generation,
                    user: user.clone(),
                    client_id: id.to_string(),
                    budgets: clients.resolve(user, id, now),
                });
            }
            cached
                .as_ref()
                .map_or(0, |r| charge(&r.budgets, direction, bytes, now))
        };
        self.throttle_ms.set(self.throttle_ms.get().max(ms));
        ms
    }

    /// Notes a request as it arrives (the connection loop, before the user is known): a
    /// Produce is charged its whole size, as Kafka does, once its handler starts
    /// ([`RequestCtx::charge_produce`]).
    pub fn charge_request(&self, header: &skein_net::RequestHeader, bytes: usize) {
        // The one check a request pays while no quota is set anywhere.
        if !self.is_active() {
            return;
        }
        if header.api_key == ApiKey::Produce {
            self.produce_bytes.set(bytes);
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

    /// Charges this Produce's size (noted as it arrived) to the client's producer quota.
    pub fn charge_produce(&self) {
        let Some(q) = self.quota.as_ref() else {
            return;
        };
        let bytes = q.produce_bytes.replace(0);
        if bytes > 0 {
            q.charge(
                &self.user,
                self.header.client_id.as_deref(),
                Direction::Produce,
                bytes,
            );
        }
    }

    /// Charges a fetch response's record bytes to the client's consumer quota and returns its
    /// `throttle_time_ms` (Kafka charges the response size; the framing is left out here).
    pub fn charge_fetch(&self, topics: &[FetchTopicDesc<FetchChunk>]) -> i32 {
        let Some(q) = self.quota.as_ref().filter(|q| q.is_active()) else {
            return 0;
        };
        let bytes = topics
            .iter()
            .flat_map(|t| &t.partitions)
            .flat_map(|p| &p.records)
            .map(|c| c.as_ref().len())
            .sum();
        q.charge(
            &self.user,
            self.header.client_id.as_deref(),
            Direction::Fetch,
            bytes,
        );
        self.throttle_time_ms()
    }
}

#[cfg(test)]
mod tests;

use skein_controller::client_quota::{EntityName, QuotaEntity, QuotaValue};

use super::*;

fn quotas(s: QuotaSettings) -> Arc<Quotas> {
    Arc::new(Quotas::new(&s, Instant::now()))
}

fn user(name: &str) -> Rc<str> {
    Rc::from(name)
}

fn named(n: &str) -> Option<EntityName> {
    Some(EntityName::Named(n.to_string()))
}

/// A dynamic quota table as the metadata would carry it.
fn dynamic(entries: &[(Option<EntityName>, Option<EntityName>, &str, f64)]) -> Arc<ClientQuotaMap> {
    let mut m = ClientQuotaMap::new();
    for (u, c, key, value) in entries {
        let entity = QuotaEntity {
            user: u.clone(),
            client_id: c.clone(),
        };
        m.entry(entity)
            .or_default()
            .insert((*key).to_string(), QuotaValue(*value));
    }
    Arc::new(m)
}

#[test]
fn a_client_over_its_quota_is_throttled_and_others_are_not() {
    let q = quotas(QuotaSettings {
        producer_default: 100_000,
        producer_overrides: HashMap::from([("vip".to_string(), 10_000_000)]),
        ..QuotaSettings::default()
    });
    let anon = user("ANONYMOUS");
    let greedy = ConnectionQuota::new(&q).unwrap();
    // One second of burst, then debt.
    let produce =
        |c: &ConnectionQuota, id: &str, bytes| c.charge(&anon, Some(id), Direction::Produce, bytes);
    assert_eq!(produce(&greedy, "greedy", 60_000), 0);
    let ms = produce(&greedy, "greedy", 90_000);
    // 50 kB of debt at 100 kB/s: half a second.
    assert!((500..=501).contains(&ms), "{ms}");
    assert_eq!(greedy.take_throttle(), Duration::from_millis(u64::from(ms)));
    assert_eq!(greedy.take_throttle(), Duration::ZERO);
    // Fetch has no quota here.
    let fetched = greedy.charge(&anon, Some("greedy"), Direction::Fetch, 10_000_000);
    assert_eq!(fetched, 0);
    // Another connection of the same client-id shares its budget.
    let again = ConnectionQuota::new(&q).unwrap();
    assert!(produce(&again, "greedy", 1) > 0);
    let vip = ConnectionQuota::new(&q).unwrap();
    assert_eq!(produce(&vip, "vip", 1_000_000), 0);
    let other = ConnectionQuota::new(&q).unwrap();
    assert_eq!(produce(&other, "other", 90_000), 0);
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
fn idle_budgets_are_forgotten_when_the_map_is_full() {
    let q = quotas(QuotaSettings {
        consumer_default: 1_000,
        ..QuotaSettings::default()
    });
    let now = Instant::now();
    let owing = q.clients.resolve("u", "owing", now);
    if let Some(b) = &owing.fetch {
        b.charge(10_000, now);
    }
    drop(owing);
    for i in 0..(QUOTA_CLIENTS_PER_SLOT_MAX * QUOTA_MAP_SLOTS * 2) {
        let _ = q.clients.resolve("u", &format!("c{i}"), now);
    }
    let total: usize = q.clients.budgets.iter().map(|m| lock(m).len()).sum();
    assert!(total <= QUOTA_CLIENTS_PER_SLOT_MAX * QUOTA_MAP_SLOTS);
    let owing = q.clients.resolve("u", "owing", now);
    let still_owes = owing.fetch.as_ref().is_some_and(|b| !b.wait(now).is_zero());
    assert!(still_owes, "a debt is not shed by churning client-ids");
}

#[test]
fn nothing_set_means_nothing_is_charged() {
    let q = quotas(QuotaSettings::default());
    assert!(!q.clients.is_active());
    let c = ConnectionQuota::new(&q).unwrap();
    let header = skein_net::RequestHeader {
        api_key: ApiKey::Produce,
        api_version: 9,
        correlation_id: skein_net::CorrelationId(1),
        client_id: Some("x".into()),
    };
    c.charge_request(&header, 1 << 30);
    assert_eq!(
        c.produce_bytes.get(),
        0,
        "no quota: the size is not even noted"
    );
    assert!(c.resolved.borrow().is_none());
}

/// A dynamic quota set while a connection is open applies at its next request, and removing
/// it lifts the throttle; without it the static default applies again.
#[test]
fn a_dynamic_quota_reaches_open_connections_and_falls_back_to_the_static_one() {
    let q = quotas(QuotaSettings {
        producer_default: 10_000_000,
        ..QuotaSettings::default()
    });
    let anon = user("ANONYMOUS");
    let c = ConnectionQuota::new(&q).unwrap();
    assert_eq!(
        c.charge(&anon, Some("app"), Direction::Produce, 1_000_000),
        0
    );
    q.clients.set_dynamic(&dynamic(&[(
        None,
        named("app"),
        PRODUCER_BYTE_RATE,
        100_000.0,
    )]));
    assert_eq!(
        c.charge(&anon, Some("app"), Direction::Produce, 60_000),
        0,
        "a fresh burst"
    );
    assert!(c.charge(&anon, Some("app"), Direction::Produce, 50_000) > 0);
    // Another client-id still gets the static default.
    assert_eq!(
        c.charge(&anon, Some("other"), Direction::Produce, 1_000_000),
        0
    );
    q.clients.set_dynamic(&Arc::default());
    assert_eq!(
        c.charge(&anon, Some("app"), Direction::Produce, 1_000_000),
        0
    );
}

#[test]
fn removing_the_last_quota_turns_the_check_off() {
    let q = quotas(QuotaSettings::default());
    let set = dynamic(&[(None, Some(EntityName::Default), CONSUMER_BYTE_RATE, 1000.0)]);
    q.clients.set_dynamic(&set);
    assert!(q.clients.is_active());
    let generation = q.clients.generation();
    // The same quotas again (another snapshot of the same metadata): nothing moves.
    q.clients.set_dynamic(&Arc::new((*set).clone()));
    assert_eq!(q.clients.generation(), generation);
    q.clients.set_dynamic(&Arc::default());
    assert!(!q.clients.is_active());
}

/// A user quota is one budget for every client-id of the user; a default-user quota gives
/// each user its own; a (user, default client-id) quota each client-id of the user its own.
#[test]
fn budgets_are_shared_as_kafkas_metric_tags_say() {
    let q = quotas(QuotaSettings::default());
    q.clients.set_dynamic(&dynamic(&[
        (named("alice"), None, PRODUCER_BYTE_RATE, 1000.0),
        (Some(EntityName::Default), None, PRODUCER_BYTE_RATE, 1000.0),
        (
            named("carol"),
            Some(EntityName::Default),
            PRODUCER_BYTE_RATE,
            1000.0,
        ),
    ]));
    let c = ConnectionQuota::new(&q).unwrap();
    let spend =
        |who: &str, client: &str| c.charge(&user(who), Some(client), Direction::Produce, 600);
    assert_eq!(spend("alice", "a1"), 0);
    assert!(
        spend("alice", "a2") > 0,
        "alice's client-ids share her budget"
    );
    assert_eq!(spend("bob", "b1"), 0, "bob has a budget of his own");
    assert!(spend("bob", "b2") > 0);
    assert_eq!(spend("carol", "c1"), 0);
    assert_eq!(
        spend("carol", "c2"),
        0,
        "each of carol's client-ids has its own"
    );
    assert!(spend("carol", "c1") > 0);
}

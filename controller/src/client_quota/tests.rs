use super::*;

fn named(n: &str) -> Option<EntityName> {
    Some(EntityName::Named(n.to_string()))
}

fn default() -> Option<EntityName> {
    Some(EntityName::Default)
}

fn entity(user: Option<EntityName>, client_id: Option<EntityName>) -> QuotaEntity {
    QuotaEntity { user, client_id }
}

fn quotas(entries: &[(QuotaEntity, &str, f64)]) -> ClientQuotaMap {
    let mut m = ClientQuotaMap::new();
    for (e, key, value) in entries {
        m.entry(e.clone())
            .or_default()
            .insert((*key).to_string(), QuotaValue(*value));
    }
    m
}

#[test]
fn entities_are_checked_as_kafka_does() {
    let ok = QuotaEntity::from_parts([("user", Some("alice")), ("client-id", None)]).unwrap();
    assert_eq!(ok, entity(named("alice"), default()));
    assert_eq!(ok.to_string(), "user=alice, client-id=<default>");
    assert_eq!(
        ok.parts(),
        vec![("user", Some("alice")), ("client-id", None)]
    );
    let refused = |parts: &[(&str, Option<&str>)]| {
        QuotaEntity::from_parts(parts.iter().copied()).unwrap_err()
    };
    assert_eq!(refused(&[]), "Invalid empty client quota entity");
    assert_eq!(
        refused(&[("group", Some("g"))]),
        "Unhandled client quota entity type: group"
    );
    assert_eq!(refused(&[("user", Some(""))]), "Empty user not supported");
    assert!(
        refused(&[("client-id", Some("a")), ("client-id", Some("b"))])
            .contains("duplicate entity entry client-id")
    );
    assert!(refused(&[("ip", Some("10.0.0.1")), ("user", Some("a"))])
        .contains("IP entity should not be combined"));
    assert!(refused(&[("ip", None)]).contains("not supported"));
}

#[test]
fn values_are_checked_as_kafka_does() {
    assert_eq!(check_value("producer_byte_rate", 1024.0), Ok(()));
    assert_eq!(check_value("consumer_byte_rate", 1.0), Ok(()));
    let refused = |key: &str, value: f64| check_value(key, value).unwrap_err();
    assert_eq!(
        refused("producer_byte_rate", 0.0),
        "Quota producer_byte_rate must be greater than 0"
    );
    assert!(refused("consumer_byte_rate", -5.0).contains("greater than 0"));
    assert!(refused("consumer_byte_rate", f64::NAN).contains("greater than 0"));
    assert_eq!(
        refused("producer_byte_rate", 10.5),
        "producer_byte_rate cannot be a fractional value."
    );
    assert!(refused("producer_byte_rate", 1e19).contains("too large for a LONG"));
    assert!(refused("producer_byte_rate", f64::INFINITY).contains("too large"));
    assert_eq!(
        refused("io_thread_units", 1.0),
        "Invalid configuration key io_thread_units"
    );
    assert!(refused("request_percentage", 50.0).contains("not supported"));
    assert!(refused("controller_mutation_rate", 10.0).contains("not supported"));
}

#[test]
fn byte_rates_round_and_saturate() {
    assert_eq!(byte_rate(QuotaValue(1024.0)), 1024);
    assert_eq!(byte_rate(QuotaValue(1_024.000_000_1)), 1024);
    assert_eq!(byte_rate(QuotaValue(9.3e18)), i64::MAX);
    assert_eq!(byte_rate(QuotaValue(0.2)), 1);
}

/// Kafka's eight levels, most specific first; each test removes the winner and checks the
/// next one takes over.
#[test]
fn precedence_follows_kafka() {
    let key = PRODUCER_BYTE_RATE;
    let levels = [
        (entity(named("alice"), named("app")), 1.0),
        (entity(named("alice"), default()), 2.0),
        (entity(named("alice"), None), 3.0),
        (entity(default(), named("app")), 4.0),
        (entity(default(), default()), 5.0),
        (entity(default(), None), 6.0),
        (entity(None, named("app")), 7.0),
        (entity(None, default()), 8.0),
    ];
    let mut m = quotas(
        &levels
            .iter()
            .map(|(e, v)| (e.clone(), key, *v))
            .collect::<Vec<_>>(),
    );
    // Shared by: the user's client-id, the user's client-ids, the user, ... (metric tags).
    let tags = [
        (Some("alice"), Some("app")),
        (Some("alice"), Some("app")),
        (Some("alice"), None),
        (Some("alice"), Some("app")),
        (Some("alice"), Some("app")),
        (Some("alice"), None),
        (None, Some("app")),
        (None, Some("app")),
    ];
    for ((e, value), (user, client_id)) in levels.iter().zip(tags) {
        let applied = resolve(&m, key, "alice", "app").unwrap();
        assert_eq!(
            applied,
            AppliedQuota {
                value: QuotaValue(*value),
                user,
                client_id
            },
            "{e}"
        );
        // Another key of the same entity does not count for this one.
        assert_eq!(resolve(&m, CONSUMER_BYTE_RATE, "alice", "app"), None);
        m.remove(e);
    }
    assert_eq!(resolve(&m, key, "alice", "app"), None);
}

#[test]
fn other_users_and_clients_fall_through_to_defaults() {
    let m = quotas(&[
        (entity(named("alice"), None), PRODUCER_BYTE_RATE, 100.0),
        (entity(None, named("app")), PRODUCER_BYTE_RATE, 200.0),
        (entity(None, default()), PRODUCER_BYTE_RATE, 300.0),
        (entity(None, named("app")), CONSUMER_BYTE_RATE, 400.0),
    ]);
    let rate =
        |user: &str, client: &str, key: &str| resolve(&m, key, user, client).map(|a| a.value.0);
    assert_eq!(rate("alice", "app", PRODUCER_BYTE_RATE), Some(100.0));
    assert_eq!(rate("bob", "app", PRODUCER_BYTE_RATE), Some(200.0));
    assert_eq!(rate("bob", "other", PRODUCER_BYTE_RATE), Some(300.0));
    // Each direction is resolved on its own: alice's user quota is producer only.
    assert_eq!(rate("alice", "app", CONSUMER_BYTE_RATE), Some(400.0));
    assert_eq!(rate("alice", "other", CONSUMER_BYTE_RATE), None);
    // A name that happens to read "<default>" is a name, not the default.
    assert_eq!(rate("<default>", "x", PRODUCER_BYTE_RATE), Some(300.0));
}

fn component(t: &str, match_type: i8, name: Option<&str>) -> FilterComponent {
    FilterComponent {
        entity_type: t.to_string(),
        match_type,
        name: name.map(str::to_string),
    }
}

fn described(m: &ClientQuotaMap, components: &[FilterComponent], strict: bool) -> Vec<String> {
    describe(m, components, strict)
        .unwrap()
        .into_iter()
        .map(|(e, _)| e.to_string())
        .collect()
}

#[test]
fn filters_match_as_kafka_does() {
    let m = quotas(&[
        (entity(named("alice"), None), PRODUCER_BYTE_RATE, 1.0),
        (
            entity(named("alice"), named("app")),
            PRODUCER_BYTE_RATE,
            1.0,
        ),
        (entity(default(), None), PRODUCER_BYTE_RATE, 1.0),
        (entity(None, named("app")), PRODUCER_BYTE_RATE, 1.0),
        (entity(None, default()), PRODUCER_BYTE_RATE, 1.0),
    ]);
    // No components: everything, unless strict (which wants entities of no type).
    assert_eq!(described(&m, &[], false).len(), 5);
    assert!(described(&m, &[], true).is_empty());
    let alice = component("user", MATCH_TYPE_EXACT, Some("alice"));
    assert_eq!(
        described(&m, std::slice::from_ref(&alice), false),
        ["user=alice", "user=alice, client-id=app"]
    );
    assert_eq!(
        described(&m, std::slice::from_ref(&alice), true),
        ["user=alice"]
    );
    assert_eq!(
        described(&m, &[component("user", MATCH_TYPE_DEFAULT, None)], false),
        ["user=<default>"]
    );
    // SPECIFIED: any entity with that type, the default included.
    assert_eq!(
        described(
            &m,
            &[component("client-id", MATCH_TYPE_SPECIFIED, None)],
            true
        ),
        ["client-id=<default>", "client-id=app"]
    );
    assert_eq!(
        described(
            &m,
            &[
                component("user", MATCH_TYPE_SPECIFIED, None),
                component("client-id", MATCH_TYPE_EXACT, Some("app")),
            ],
            false
        ),
        ["user=alice, client-id=app"]
    );
    // IP filters are valid but match nothing here.
    assert!(described(&m, &[component("ip", MATCH_TYPE_SPECIFIED, None)], false).is_empty());
}

#[test]
fn bad_filters_get_kafkas_errors() {
    let m = ClientQuotaMap::new();
    let error = |components: &[FilterComponent]| describe(&m, components, false).unwrap_err();
    assert!(matches!(
        error(&[component("", MATCH_TYPE_SPECIFIED, None)]),
        FilterError::Invalid(_)
    ));
    assert!(matches!(
        error(&[component("group", MATCH_TYPE_SPECIFIED, None)]),
        FilterError::Unsupported(_)
    ));
    assert!(matches!(
        error(&[
            component("user", MATCH_TYPE_SPECIFIED, None),
            component("user", MATCH_TYPE_DEFAULT, None)
        ]),
        FilterError::Invalid(m) if m.contains("more than once")
    ));
    assert!(matches!(
        error(&[component("user", MATCH_TYPE_EXACT, None)]),
        FilterError::Invalid(m) if m.contains("MATCH_TYPE_EXACT")
    ));
    assert!(matches!(
        error(&[component("user", MATCH_TYPE_DEFAULT, Some("a"))]),
        FilterError::Invalid(m) if m.contains("MATCH_TYPE_DEFAULT")
    ));
    assert!(matches!(
        error(&[component("user", MATCH_TYPE_SPECIFIED, Some("a"))]),
        FilterError::Invalid(m) if m.contains("MATCH_TYPE_SPECIFIED")
    ));
    assert!(matches!(
        error(&[component("user", 7, None)]),
        FilterError::Invalid(m) if m.contains("Unknown match type 7")
    ));
    assert!(matches!(
        error(&[
            component("ip", MATCH_TYPE_SPECIFIED, None),
            component("client-id", MATCH_TYPE_SPECIFIED, None)
        ]),
        FilterError::Invalid(m) if m.contains("IP filter component")
    ));
}

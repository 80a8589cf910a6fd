//! Client quotas with Kafka's model (KIP-546; pure data and pure functions, any shard): the
//! entities a quota is set on (a user, a client-id, or both; each named or the default), the
//! checks AlterClientQuotas makes of an entity and a value, DescribeClientQuotas' filters, and
//! which quota applies to a connection (Kafka's precedence order). No I/O, no clock.
//!
//! Skein enforces `producer_byte_rate` and `consumer_byte_rate`. Kafka's other keys
//! (`request_percentage`, `controller_mutation_rate`) and its `ip` entities
//! (`connection_creation_rate`) are refused with INVALID_REQUEST rather than stored and
//! silently not enforced.

use std::collections::BTreeMap;
use std::fmt;

/// Kafka's entity types.
pub const ENTITY_USER: &str = "user";
pub const ENTITY_CLIENT_ID: &str = "client-id";
pub const ENTITY_IP: &str = "ip";

/// The quota keys Skein enforces: bytes per second, per broker.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Kafka's keys that Skein does not enforce (and so refuses).
const REQUEST_PERCENTAGE: &str = "request_percentage";
const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";

/// DescribeClientQuotas match types.
pub const MATCH_TYPE_EXACT: i8 = 0;
pub const MATCH_TYPE_DEFAULT: i8 = 1;
pub const MATCH_TYPE_SPECIFIED: i8 = 2;

/// How `kafka-configs` writes the default entity (a null name on the wire).
pub const DEFAULT_NAME: &str = "<default>";

/// One component of an entity: a name, or the default of its type.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityName {
    Default,
    Named(String),
}

impl EntityName {
    /// Kafka's wire form: a null name is the default.
    pub fn from_wire(name: Option<&str>) -> Self {
        name.map_or(EntityName::Default, |n| EntityName::Named(n.to_string()))
    }

    pub fn as_wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Named(n) => Some(n),
        }
    }
}

/// What a quota is set on: a user, a client-id, or a (user, client-id) pair; at least one is
/// present (the constructors check it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuotaEntity {
    pub user: Option<EntityName>,
    pub client_id: Option<EntityName>,
}

/// A quota's value as Kafka sends it, a double; compared by its bits so that images stay `Eq`.
#[derive(Clone, Copy, Debug)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

/// The quotas of one entity, by key.
pub type EntityQuotas = BTreeMap<String, QuotaValue>;

/// Every quota set, by entity, then key.
pub type ClientQuotaMap = BTreeMap<QuotaEntity, EntityQuotas>;

impl QuotaEntity {
    /// An entity from Kafka's (entity type, name) pairs, checked as Kafka's controller does:
    /// known types, each once, no empty name, and not an IP entity (which Skein does not
    /// build). The error is the message of Kafka's INVALID_REQUEST.
    pub fn from_parts<'a>(
        parts: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<Self, String> {
        let mut entity = QuotaEntity {
            user: None,
            client_id: None,
        };
        let mut ip = false;
        let mut empty = true;
        for (entity_type, name) in parts {
            empty = false;
            let taken = match entity_type {
                ENTITY_USER => entity.user.is_some(),
                ENTITY_CLIENT_ID => entity.client_id.is_some(),
                ENTITY_IP => ip,
                other => return Err(format!("Unhandled client quota entity type: {other}")),
            };
            if taken {
                return Err(format!(
                    "Invalid client quota entity, duplicate entity entry {entity_type}"
                ));
            }
            if name == Some("") {
                return Err(format!("Empty {entity_type} not supported"));
            }
            let name = Some(EntityName::from_wire(name));
            match entity_type {
                ENTITY_USER => entity.user = name,
                ENTITY_CLIENT_ID => entity.client_id = name,
                _ => ip = true,
            }
        }
        if empty {
            return Err("Invalid empty client quota entity".to_string());
        }
        if ip {
            if entity.user.is_some() || entity.client_id.is_some() {
                return Err("Invalid quota entity combination, IP entity should not be \
                            combined with User or ClientId"
                    .to_string());
            }
            return Err(
                "ip quotas (connection_creation_rate) are not supported by this broker".into(),
            );
        }
        Ok(entity)
    }

    /// Kafka's (entity type, name) pairs, user first.
    pub fn parts(&self) -> Vec<(&'static str, Option<&str>)> {
        let user = self.user.as_ref().map(|n| (ENTITY_USER, n.as_wire()));
        let client = self
            .client_id
            .as_ref()
            .map(|n| (ENTITY_CLIENT_ID, n.as_wire()));
        user.into_iter().chain(client).collect()
    }

    /// The component of `entity_type`: None when the entity has none, `Some(None)` for the
    /// default, `Some(Some(name))` for a name.
    fn component(&self, entity_type: &str) -> Option<Option<&str>> {
        let name = match entity_type {
            ENTITY_USER => self.user.as_ref(),
            ENTITY_CLIENT_ID => self.client_id.as_ref(),
            _ => None,
        };
        name.map(EntityName::as_wire)
    }

    fn len(&self) -> usize {
        usize::from(self.user.is_some()) + usize::from(self.client_id.is_some())
    }
}

impl fmt::Display for QuotaEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (entity_type, name)) in self.parts().into_iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{entity_type}={}", name.unwrap_or(DEFAULT_NAME))?;
        }
        Ok(())
    }
}

/// Checks a value to set for `key` as Kafka's controller does (INVALID_REQUEST with this
/// message otherwise): a known key, greater than 0, and for the byte rates (Kafka's LONG
/// configs) whole and within a long. Kafka's keys that Skein does not enforce are refused.
pub fn check_value(key: &str, value: f64) -> Result<(), String> {
    match key {
        PRODUCER_BYTE_RATE | CONSUMER_BYTE_RATE => {}
        REQUEST_PERCENTAGE | CONTROLLER_MUTATION_RATE => {
            return Err(format!(
                "{key} quotas are not supported by this broker (only {PRODUCER_BYTE_RATE} and \
                 {CONSUMER_BYTE_RATE} are enforced)"
            ))
        }
        _ => return Err(format!("Invalid configuration key {key}")),
    }
    // Kafka lets NaN through its `<= 0` check; a rate that is not a number is refused here.
    if value.is_nan() || value <= 0.0 {
        return Err(format!("Quota {key} must be greater than 0"));
    }
    // i64::MAX as a double is 2^63, the first value past the range.
    if value >= 9_223_372_036_854_775_808.0 {
        return Err(format!("Proposed value for {key} is too large for a LONG."));
    }
    if (value % 1.0).abs() > 1e-6 {
        return Err(format!("{key} cannot be a fractional value."));
    }
    Ok(())
}

/// A byte rate as the budgets take it: whole bytes per second, at least 1 (the value passed
/// [`check_value`], so only the rounding of a double is left to do).
pub fn byte_rate(value: QuotaValue) -> i64 {
    // `as` saturates: 2^63 and above become i64::MAX, which the budgets take as unlimited.
    (value.0.round() as i64).max(1)
}

/// One DescribeClientQuotas filter component, as it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterComponent {
    pub entity_type: String,
    pub match_type: i8,
    pub name: Option<String>,
}

/// Why a filter is refused, with Kafka's error for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterError {
    /// INVALID_REQUEST.
    Invalid(String),
    /// UNSUPPORTED_VERSION: an entity type this version does not know.
    Unsupported(String),
}

/// The entities a DescribeClientQuotas filter selects, with their quotas, in the map's order.
/// Kafka's rules: EXACT matches that name, DEFAULT the default, SPECIFIED any entity with that
/// type (named or default); a type the filter does not name matches anything unless `strict`,
/// which wants exactly the filter's types.
pub fn describe<'a>(
    quotas: &'a ClientQuotaMap,
    components: &[FilterComponent],
    strict: bool,
) -> Result<Vec<(&'a QuotaEntity, &'a EntityQuotas)>, FilterError> {
    let mut exact: Vec<(&str, Option<&str>)> = Vec::new();
    let mut specified: Vec<&str> = Vec::new();
    for c in components {
        let t = c.entity_type.as_str();
        if t.is_empty() {
            return Err(FilterError::Invalid("Invalid empty entity type.".into()));
        }
        if exact.iter().any(|(e, _)| *e == t) || specified.contains(&t) {
            return Err(FilterError::Invalid(format!(
                "Entity type {t} cannot appear more than once in the filter."
            )));
        }
        if ![ENTITY_USER, ENTITY_CLIENT_ID, ENTITY_IP].contains(&t) {
            return Err(FilterError::Unsupported(format!(
                "Unsupported entity type {t}"
            )));
        }
        let name = c.name.as_deref();
        match (c.match_type, name) {
            (MATCH_TYPE_EXACT, Some(n)) => exact.push((t, Some(n))),
            (MATCH_TYPE_EXACT, None) => {
                return Err(FilterError::Invalid(
                    "Request specified MATCH_TYPE_EXACT, but set match string to null.".into(),
                ))
            }
            (MATCH_TYPE_DEFAULT, None) => exact.push((t, None)),
            (MATCH_TYPE_SPECIFIED, None) => specified.push(t),
            (MATCH_TYPE_DEFAULT | MATCH_TYPE_SPECIFIED, Some(_)) => {
                let kind = if c.match_type == MATCH_TYPE_DEFAULT {
                    "MATCH_TYPE_DEFAULT"
                } else {
                    "MATCH_TYPE_SPECIFIED"
                };
                return Err(FilterError::Invalid(format!(
                    "Request specified {kind}, but also specified a match string."
                )));
            }
            (other, _) => return Err(FilterError::Invalid(format!("Unknown match type {other}"))),
        }
    }
    let names = |t: &str| exact.iter().any(|(e, _)| *e == t) || specified.contains(&t);
    if names(ENTITY_IP) && (names(ENTITY_USER) || names(ENTITY_CLIENT_ID)) {
        return Err(FilterError::Invalid(
            "Invalid entity filter component combination. IP filter component should not be \
             used with user or clientId filter component."
                .into(),
        ));
    }
    let wanted = exact.len() + specified.len();
    let matches = |entity: &QuotaEntity| {
        (!strict || entity.len() == wanted)
            && exact
                .iter()
                .all(|(t, name)| entity.component(t) == Some(*name))
            && specified.iter().all(|t| entity.component(t).is_some())
    };
    Ok(quotas.iter().filter(|(e, _)| matches(e)).collect())
}

/// The quota that applies to a connection for one key, and the names its budget is kept
/// under (Kafka's quota metric tags): a user quota is shared by every client-id of that user,
/// a default quota gives each user (or client-id) a budget of its own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AppliedQuota<'a> {
    pub value: QuotaValue,
    /// The connection's user, where the entity that applied has a user component.
    pub user: Option<&'a str>,
    /// The connection's client-id, where the entity that applied has a client-id component.
    pub client_id: Option<&'a str>,
}

/// The quota for `key` of a connection of `user` with `client_id`, in Kafka's precedence
/// order: (user, client-id), (user, default client-id), user, (default user, client-id),
/// (default user, default client-id), default user, client-id, default client-id. None when
/// no entity in that order sets `key`.
pub fn resolve<'a>(
    quotas: &ClientQuotaMap,
    key: &str,
    user: &'a str,
    client_id: &'a str,
) -> Option<AppliedQuota<'a>> {
    if quotas.is_empty() {
        return None;
    }
    let named = |n: &str| Some(EntityName::Named(n.to_string()));
    let default = || Some(EntityName::Default);
    let users = [named(user), default(), None];
    for u in users {
        let clients = [named(client_id), default(), None];
        for c in clients {
            if u.is_none() && c.is_none() {
                continue;
            }
            let entity = QuotaEntity {
                user: u.clone(),
                client_id: c,
            };
            if let Some(value) = quotas.get(&entity).and_then(|q| q.get(key)) {
                return Some(AppliedQuota {
                    value: *value,
                    user: entity.user.is_some().then_some(user),
                    client_id: entity.client_id.is_some().then_some(client_id),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;

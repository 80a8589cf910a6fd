//! Broker settings (the `[broker]` table, Kafka's names) and topic configs: which keys exist,
//! their defaults, validation, and how a topic's effective config is resolved (node-wide view).

use std::collections::BTreeMap;

use crate::config::ConfigError;
use crate::limits;

/// A topic-level config key we apply, with the broker-level key that sets its default.
pub struct TopicConfigDef {
    pub name: &'static str,
    pub broker_key: &'static str,
    pub default: &'static str,
    pub kind: ValueKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// A long with a lower bound.
    Long {
        min: i64,
    },
    Int {
        min: i64,
    },
    /// A non-empty comma-separated list drawn from a fixed set.
    List(&'static [&'static str]),
    /// One of a fixed set of strings.
    OneOf(&'static [&'static str]),
    /// A double in [0, 1].
    Ratio,
}

/// Every topic config Skein applies. Anything else is refused with INVALID_CONFIG so a user
/// never believes a setting took effect when it did not.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        broker_key: "log.cleanup.policy",
        default: "delete",
        kind: ValueKind::List(&["delete", "compact"]),
    },
    TopicConfigDef {
        name: "retention.ms",
        broker_key: "log.retention.ms",
        default: "604800000",
        kind: ValueKind::Long { min: -1 },
    },
    TopicConfigDef {
        name: "retention.bytes",
        broker_key: "log.retention.bytes",
        default: "-1",
        kind: ValueKind::Long { min: -1 },
    },
    TopicConfigDef {
        name: "segment.bytes",
        broker_key: "log.segment.bytes",
        default: "1073741824",
        kind: ValueKind::Int {
            min: limits::SEGMENT_BYTES_MIN,
        },
    },
    TopicConfigDef {
        name: "segment.ms",
        broker_key: "log.roll.ms",
        default: "604800000",
        kind: ValueKind::Long { min: 1 },
    },
    TopicConfigDef {
        name: "max.message.bytes",
        broker_key: "message.max.bytes",
        default: "1048588",
        kind: ValueKind::Int { min: 0 },
    },
    TopicConfigDef {
        name: "flush.messages",
        broker_key: "log.flush.interval.messages",
        default: "9223372036854775807",
        kind: ValueKind::Long { min: 1 },
    },
    TopicConfigDef {
        name: "flush.ms",
        broker_key: "log.flush.interval.ms",
        default: "9223372036854775807",
        kind: ValueKind::Long { min: 0 },
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        broker_key: "log.index.interval.bytes",
        default: "4096",
        kind: ValueKind::Int { min: 0 },
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        broker_key: "min.insync.replicas",
        default: "1",
        kind: ValueKind::Int { min: 1 },
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        broker_key: "log.cleaner.delete.retention.ms",
        default: "86400000",
        kind: ValueKind::Long { min: 0 },
    },
    TopicConfigDef {
        name: "min.cleanable.dirty.ratio",
        broker_key: "log.cleaner.min.cleanable.ratio",
        default: "0.5",
        kind: ValueKind::Ratio,
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        broker_key: "log.cleaner.min.compaction.lag.ms",
        default: "0",
        kind: ValueKind::Long { min: 0 },
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        broker_key: "log.message.timestamp.type",
        default: "CreateTime",
        // LogAppendTime would need the broker to rewrite timestamps and the CRC; not built yet.
        kind: ValueKind::OneOf(&["CreateTime"]),
    },
    TopicConfigDef {
        name: "compression.type",
        broker_key: "compression.type",
        default: "producer",
        // Re-compressing on the broker is not built: batches are stored as the producer sent them.
        kind: ValueKind::OneOf(&["producer"]),
    },
];

pub fn topic_config_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one topic config value; the message is what the client sees.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), String> {
    let def = topic_config_def(name)
        .ok_or_else(|| format!("unknown or unsupported topic config `{name}`"))?;
    check_value(def.kind, value).map_err(|m| format!("invalid value `{value}` for `{name}`: {m}"))
}

fn check_value(kind: ValueKind, value: &str) -> Result<(), String> {
    match kind {
        ValueKind::Long { min } | ValueKind::Int { min } => {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| "not a number".to_string())?;
            if matches!(kind, ValueKind::Int { .. }) && i32::try_from(v).is_err() {
                return Err("out of range for an int".into());
            }
            if v < min {
                return Err(format!("must be >= {min}"));
            }
            Ok(())
        }
        ValueKind::List(allowed) => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            if items.iter().all(|i| allowed.contains(i)) && !value.trim().is_empty() {
                Ok(())
            } else {
                Err(format!("each item must be one of {allowed:?}"))
            }
        }
        ValueKind::Ratio => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            Ok(_) => Err("must be between 0 and 1".into()),
            Err(_) => Err("not a number".into()),
        },
        ValueKind::OneOf(allowed) => {
            if allowed.contains(&value.trim()) {
                Ok(())
            } else {
                Err(format!("supported values: {allowed:?}"))
            }
        }
    }
}

/// Where a config value came from (DescribeConfigs' config_source).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    TopicOverride,
    StaticBroker,
    Default,
}

impl ConfigSource {
    /// Kafka's DescribeConfigs ConfigSource codes.
    pub fn code(self) -> i8 {
        match self {
            ConfigSource::TopicOverride => 1,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
        }
    }
}

/// How followers copy their leaders (Kafka's broker config names and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationSettings {
    /// `replica.lag.time.max.ms`: an in-sync follower that has not caught up for this long
    /// leaves the ISR. (A crashed follower leaves it sooner: fencing removes it.)
    pub lag_time_max_ms: u64,
    /// `replica.fetch.max.bytes`: per partition in one follower fetch.
    pub fetch_max_bytes: usize,
    /// `replica.fetch.response.max.bytes`: one follower fetch in all; it bounds what catch-up
    /// of a long-dead replica takes from the leader per round trip.
    pub fetch_response_max_bytes: usize,
    /// `replica.fetch.wait.max.ms`: how long a follower fetch waits at the leader for data.
    pub fetch_wait_max_ms: u64,
    /// `replica.fetch.backoff.ms`: the pause after a failed follower fetch.
    pub fetch_backoff_ms: u64,
    /// `follower.replication.throttled.rate`: bytes per second this broker may fetch, all
    /// shards together, for replicas outside their ISR (catch-up); in-sync replicas are never
    /// throttled. `i64::MAX` (Kafka's `Long.MAX_VALUE`): unlimited.
    pub follower_throttled_rate_bytes_per_s: i64,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            lag_time_max_ms: 30_000,
            fetch_max_bytes: 1_048_576,
            fetch_response_max_bytes: 10_485_760,
            fetch_wait_max_ms: 500,
            fetch_backoff_ms: 100,
            follower_throttled_rate_bytes_per_s: i64::MAX,
        }
    }
}

/// The classic group protocol's broker settings (Kafka's names and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// How long a new (empty) group waits for more members before its first rebalance.
    pub initial_rebalance_delay_ms: i32,
    pub max_size: i32,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX,
        }
    }
}

/// Limits on any one client (Kafka's names; see `quota.rs`). `u32::MAX` / `i64::MAX`:
/// unlimited, Kafka's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSettings {
    /// `max.connections.per.ip`.
    pub max_connections_per_ip: u32,
    /// `max.connections.per.ip.overrides` ("address:count,..."; IP addresses only).
    pub per_ip_overrides: std::collections::HashMap<std::net::IpAddr, u32>,
    /// `max.connections`: all connections of this broker.
    pub max_connections: u32,
    /// `quota.producer.default`: produce bytes per second per client-id.
    pub producer_default: i64,
    /// `quota.consumer.default`: fetch bytes per second per client-id.
    pub consumer_default: i64,
    /// `skein.quota.producer.overrides` ("client-id:rate,...").
    pub producer_overrides: std::collections::HashMap<String, i64>,
    /// `skein.quota.consumer.overrides` ("client-id:rate,...").
    pub consumer_overrides: std::collections::HashMap<String, i64>,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        QuotaSettings {
            max_connections_per_ip: u32::MAX,
            per_ip_overrides: std::collections::HashMap::new(),
            max_connections: u32::MAX,
            producer_default: i64::MAX,
            consumer_default: i64::MAX,
            producer_overrides: std::collections::HashMap::new(),
            consumer_overrides: std::collections::HashMap::new(),
        }
    }
}

/// A connection count; Kafka's default `Integer.MAX_VALUE` means unlimited.
fn parse_connections(text: &str) -> Result<u32, String> {
    let v: u32 = parse_ranged(text, 0, i32::MAX.into())?;
    Ok(if v == i32::MAX.unsigned_abs() {
        u32::MAX
    } else {
        v
    })
}

/// "key:value,key:value" (the key may itself hold ':' — an IPv6 address — so the last one
/// splits); an empty string is an empty list.
fn parse_pairs<K, V>(
    text: &str,
    key: impl Fn(&str) -> Result<K, String>,
    value: impl Fn(&str) -> Result<V, String>,
) -> Result<Vec<(K, V)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (k, v) = item
                .rsplit_once(':')
                .ok_or_else(|| format!("`{item}` is not key:value"))?;
            Ok((key(k.trim())?, value(v)?))
        })
        .collect()
}

fn parse_ip(text: &str) -> Result<std::net::IpAddr, String> {
    let bare = text
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse()
        .map_err(|_| format!("`{text}` is not an IP address (host names are not resolved)"))
}

fn parse_rate(text: &str) -> Result<i64, String> {
    parse_ranged(text, 1, i64::MAX)
}

/// The `[broker]` table.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub socket_request_max_bytes: usize,
    /// `advertised.listeners`: where clients are told to connect, when not the listener itself.
    pub advertised_listener: Option<AdvertisedListener>,
    pub delete_topic_enable: bool,
    pub log_retention_check_interval_ms: u64,
    /// How often each shard looks for compacted topics' logs to clean.
    pub log_cleaner_backoff_ms: u64,
    pub tail_cache_bytes_per_shard: usize,
    /// `skein.io.memory.bytes.per.shard`: each shard's DMA arena (see `limits`).
    pub io_memory_bytes_per_shard: usize,
    pub offsets_topic_num_partitions: i32,
    /// `segment.bytes` of `__consumer_offsets` (small, so its cleaner has sealed segments).
    pub offsets_topic_segment_bytes: i64,
    pub group: GroupSettings,
    /// `offsets.topic.replication.factor`, capped at the live brokers when the topic is made.
    pub offsets_topic_replication_factor: i16,
    /// `broker.heartbeat.interval.ms`: how often a broker tells the controller it is alive.
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: silence after which the controller fences a broker.
    pub broker_session_timeout_ms: u64,
    pub auto_leader_rebalance_enable: bool,
    pub leader_imbalance_check_interval_seconds: u64,
    /// Replication (Kafka's names and defaults).
    pub replication: ReplicationSettings,
    /// Broker-level defaults of topic configs, keyed by the topic config name.
    pub topic_defaults: BTreeMap<&'static str, String>,
    /// `sasl.enabled.mechanisms` (on a SASL_PLAINTEXT listener; Kafka's default is GSSAPI).
    pub sasl_enabled_mechanisms: Vec<crate::sasl::Mechanism>,
    /// `connections.max.reauth.ms` (KIP-368): 0 = sessions never expire.
    pub connections_max_reauth_ms: u64,
    /// `sasl.mechanism.inter.broker.protocol`: how followers log in to a SASL listener.
    pub sasl_mechanism_inter_broker: Option<crate::sasl::Mechanism>,
    /// The username and password of `sasl.jaas.config`: who followers log in as.
    pub sasl_jaas_login: Option<(String, String)>,
    /// Connection limits and client quotas.
    pub quotas: QuotaSettings,
    /// ACLs: on when `authorizer.class.name` is non-empty; `super.users`,
    /// `allow.everyone.if.no.acl.found`.
    pub authorizer: skein_controller::acl::AuthorizerConfig,
    /// `ssl.*`: the key, certificates and client-certificate policy of TLS listeners.
    pub ssl: crate::tls::SslSettings,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            socket_request_max_bytes: 104_857_600,
            advertised_listener: None,
            delete_topic_enable: true,
            log_retention_check_interval_ms: 300_000,
            log_cleaner_backoff_ms: 15_000,
            tail_cache_bytes_per_shard: limits::TAIL_CACHE_BYTES_PER_SHARD_DEFAULT,
            io_memory_bytes_per_shard: limits::IO_MEMORY_BYTES_PER_SHARD_DEFAULT,
            offsets_topic_num_partitions: 50,
            offsets_topic_segment_bytes: 104_857_600,
            group: GroupSettings::default(),
            offsets_topic_replication_factor: 3,
            // Fast failover on a LAN: a crashed broker is fenced (and its partitions move)
            // after 1.5 s, where Kafka's 9 s defaults take several times that. The cost: a
            // broker stalled longer than this (a GC-free process rarely is; a saturated disk
            // or a network blip can be) is fenced and must catch up again.
            broker_heartbeat_interval_ms: 250,
            broker_session_timeout_ms: 1_500,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            replication: ReplicationSettings::default(),
            topic_defaults: BTreeMap::new(),
            sasl_enabled_mechanisms: crate::sasl::Mechanism::ALL.to_vec(),
            connections_max_reauth_ms: 0,
            sasl_mechanism_inter_broker: None,
            sasl_jaas_login: None,
            quotas: QuotaSettings::default(),
            authorizer: skein_controller::acl::AuthorizerConfig::default(),
            ssl: crate::tls::SslSettings::default(),
        }
    }
}

impl BrokerSettings {
    pub fn from_table(table: &toml::Table) -> Result<Self, ConfigError> {
        let mut s = BrokerSettings::default();
        // `auto.create.topics.enable = true` unquoted is a nested table in TOML; accept both
        // spellings by flattening back to Kafka's dotted names.
        let mut flat = Vec::new();
        flatten("", table, &mut flat);
        for (key, value) in &flat {
            let full = format!("broker.\"{key}\"");
            let text = toml_scalar(value).ok_or_else(|| {
                ConfigError::invalid(&full, "must be a string, number or boolean")
            })?;
            let bad = |m: String| ConfigError::invalid(&full, m);
            match key.as_str() {
                "auto.create.topics.enable" => {
                    s.auto_create_topics_enable = parse_bool(&text).map_err(bad)?
                }
                "delete.topic.enable" => s.delete_topic_enable = parse_bool(&text).map_err(bad)?,
                "offsets.topic.num.partitions" => {
                    s.offsets_topic_num_partitions = parse_ranged(&text, 1, 10_000).map_err(bad)?
                }
                "group.min.session.timeout.ms" => {
                    s.group.min_session_timeout_ms =
                        parse_ranged(&text, 1, i32::MAX.into()).map_err(bad)?
                }
                "group.max.session.timeout.ms" => {
                    s.group.max_session_timeout_ms =
                        parse_ranged(&text, 1, i32::MAX.into()).map_err(bad)?
                }
                "group.initial.rebalance.delay.ms" => {
                    s.group.initial_rebalance_delay_ms =
                        parse_ranged(&text, 0, i32::MAX.into()).map_err(bad)?
                }
                "group.max.size" => {
                    s.group.max_size = parse_ranged(&text, 1, i32::MAX.into()).map_err(bad)?
                }
                "offsets.topic.replication.factor" => {
                    s.offsets_topic_replication_factor =
                        parse_ranged(&text, 1, i16::MAX.into()).map_err(bad)?
                }
                "broker.heartbeat.interval.ms" => {
                    s.broker_heartbeat_interval_ms = parse_ranged(&text, 10, 60_000).map_err(bad)?
                }
                "broker.session.timeout.ms" => {
                    s.broker_session_timeout_ms = parse_ranged(&text, 100, 600_000).map_err(bad)?
                }
                "auto.leader.rebalance.enable" => {
                    s.auto_leader_rebalance_enable = parse_bool(&text).map_err(bad)?
                }
                "leader.imbalance.check.interval.seconds" => {
                    s.leader_imbalance_check_interval_seconds =
                        parse_ranged(&text, 1, 86_400).map_err(bad)?
                }
                "replica.lag.time.max.ms" => {
                    s.replication.lag_time_max_ms =
                        parse_ranged(&text, 100, 86_400_000).map_err(bad)?
                }
                "replica.fetch.max.bytes" => {
                    s.replication.fetch_max_bytes =
                        parse_ranged(&text, 1024, i32::MAX.into()).map_err(bad)?
                }
                "replica.fetch.response.max.bytes" => {
                    s.replication.fetch_response_max_bytes =
                        parse_ranged(&text, 1024, i32::MAX.into()).map_err(bad)?
                }
                "replica.fetch.wait.max.ms" => {
                    s.replication.fetch_wait_max_ms = parse_ranged(&text, 1, 60_000).map_err(bad)?
                }
                "replica.fetch.backoff.ms" => {
                    s.replication.fetch_backoff_ms = parse_ranged(&text, 1, 60_000).map_err(bad)?
                }
                "follower.replication.throttled.rate" => {
                    s.replication.follower_throttled_rate_bytes_per_s =
                        parse_ranged(&text, 1, i64::MAX).map_err(bad)?
                }
                "offsets.topic.segment.bytes" => {
                    s.offsets_topic_segment_bytes =
                        parse_ranged(&text, limits::SEGMENT_BYTES_MIN, i32::MAX.into())
                            .map_err(bad)?
                }
                "num.partitions" => {
                    s.num_partitions =
                        parse_ranged(&text, 1, limits::PARTITIONS_PER_TOPIC_MAX).map_err(bad)?
                }
                "default.replication.factor" => {
                    s.default_replication_factor =
                        parse_ranged(&text, 1, i16::MAX.into()).map_err(bad)?
                }
                "socket.request.max.bytes" => {
                    s.socket_request_max_bytes =
                        parse_ranged(&text, 1024, limits::REQUEST_BYTES_MAX).map_err(bad)?
                }
                "log.retention.check.interval.ms" => {
                    s.log_retention_check_interval_ms =
                        parse_ranged(&text, 1, i64::MAX).map_err(bad)?
                }
                "advertised.listeners" => {
                    s.advertised_listener = Some(AdvertisedListener::parse(&text).map_err(bad)?)
                }
                "log.cleaner.backoff.ms" => {
                    s.log_cleaner_backoff_ms = parse_ranged(&text, 1, i64::MAX).map_err(bad)?
                }
                "skein.io.memory.bytes.per.shard" => {
                    s.io_memory_bytes_per_shard = parse_ranged(
                        &text,
                        limits::IO_MEMORY_BYTES_PER_SHARD_MIN,
                        limits::IO_MEMORY_BYTES_PER_SHARD_MAX,
                    )
                    .map_err(bad)?
                }
                "skein.tail.cache.bytes.per.shard" => {
                    s.tail_cache_bytes_per_shard =
                        parse_ranged(&text, 0, limits::TAIL_CACHE_BYTES_PER_SHARD_MAX)
                            .map_err(bad)?
                }
                "sasl.enabled.mechanisms" => {
                    s.sasl_enabled_mechanisms = crate::sasl::parse_mechanisms(&text).map_err(bad)?
                }
                "authorizer.class.name" => s.authorizer.enabled = !text.trim().is_empty(),
                "super.users" => {
                    s.authorizer.super_users = parse_super_users(&text).map_err(bad)?
                }
                "allow.everyone.if.no.acl.found" => {
                    s.authorizer.allow_if_no_acl = parse_bool(&text).map_err(bad)?
                }
                "sasl.mechanism.inter.broker.protocol" => {
                    let m = crate::sasl::Mechanism::parse(text.trim()).ok_or_else(|| {
                        bad(format!(
                            "`{text}` is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                        ))
                    })?;
                    s.sasl_mechanism_inter_broker = Some(m);
                }
                // Kafka's brokers set it per listener and mechanism
                // (`listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config`); there is one here.
                jaas if jaas == "sasl.jaas.config"
                    || (jaas.starts_with("listener.name.")
                        && jaas.ends_with(".sasl.jaas.config")) =>
                {
                    s.sasl_jaas_login =
                        Some(crate::sasl::inter_broker::parse_jaas(&text).map_err(bad)?)
                }
                "connections.max.reauth.ms" => {
                    s.connections_max_reauth_ms = parse_ranged(&text, 0, i64::MAX).map_err(bad)?
                }
                "max.connections.per.ip" => {
                    s.quotas.max_connections_per_ip = parse_connections(&text).map_err(bad)?
                }
                "max.connections.per.ip.overrides" => {
                    s.quotas.per_ip_overrides = parse_pairs(&text, parse_ip, parse_connections)
                        .map_err(bad)?
                        .into_iter()
                        .collect()
                }
                "max.connections" => {
                    s.quotas.max_connections = parse_connections(&text).map_err(bad)?
                }
                "quota.producer.default" => {
                    s.quotas.producer_default = parse_rate(&text).map_err(bad)?
                }
                "quota.consumer.default" => {
                    s.quotas.consumer_default = parse_rate(&text).map_err(bad)?
                }
                "skein.quota.producer.overrides" | "skein.quota.consumer.overrides" => {
                    let client_id = |k: &str| Ok(k.to_string());
                    let pairs = parse_pairs(&text, client_id, parse_rate).map_err(bad)?;
                    let map = pairs.into_iter().collect();
                    if key.contains("producer") {
                        s.quotas.producer_overrides = map;
                    } else {
                        s.quotas.consumer_overrides = map;
                    }
                }
                "log.retention.hours" | "log.retention.minutes" | "log.roll.hours" => {
                    let per: i64 = if key.ends_with("hours") {
                        3_600_000
                    } else {
                        60_000
                    };
                    let v: i64 = parse_ranged(&text, 1, i64::MAX / per).map_err(bad)?;
                    let topic_key = if key.starts_with("log.roll") {
                        "segment.ms"
                    } else {
                        "retention.ms"
                    };
                    s.topic_defaults
                        .entry(topic_key)
                        .or_insert_with(|| (v * per).to_string());
                }
                ssl if ssl.starts_with("ssl.") => {
                    if !s.ssl.set(ssl, &text).map_err(bad)? {
                        return Err(ConfigError::invalid(
                            &full,
                            "unknown or unsupported setting",
                        ));
                    }
                }
                other => match TOPIC_CONFIGS.iter().find(|d| d.broker_key == other) {
                    Some(def) => {
                        check_value(def.kind, &text).map_err(bad)?;
                        // An explicit *.ms key wins over *.hours, as in Kafka.
                        s.topic_defaults.insert(def.name, text);
                    }
                    None => return Err(ConfigError::invalid(&full, "unknown broker setting")),
                },
            }
        }
        if s.group.min_session_timeout_ms > s.group.max_session_timeout_ms {
            return Err(ConfigError::invalid(
                "broker.\"group.min.session.timeout.ms\"",
                "must not exceed group.max.session.timeout.ms",
            ));
        }
        Ok(s)
    }

    /// Who followers log in as on a SASL listener, when both keys are set.
    pub fn inter_broker_login(&self) -> Option<crate::sasl::inter_broker::InterBrokerLogin> {
        let mechanism = self.sasl_mechanism_inter_broker?;
        let (username, password) = self.sasl_jaas_login.clone()?;
        Some(crate::sasl::inter_broker::InterBrokerLogin {
            mechanism,
            username,
            password,
        })
    }

    /// The value a topic gets when it has no override, and where it came from.
    pub fn topic_default(&self, def: &TopicConfigDef) -> (String, ConfigSource) {
        match self.topic_defaults.get(def.name) {
            Some(v) => (v.clone(), ConfigSource::StaticBroker),
            None => (def.default.to_string(), ConfigSource::Default),
        }
    }
}

/// The one Kafka listener clients are told about (`PROTOCOL://host:port`): a list of
/// listeners is not built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedListener {
    pub host: String,
    pub port: u16,
}

impl AdvertisedListener {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.contains(',') {
            return Err("only one listener is supported".to_string());
        }
        let address = text.split_once("://").and_then(|(protocol, address)| {
            crate::sasl::SecurityProtocol::parse(protocol).map(|_| address)
        });
        let Some(address) = address else {
            return Err(format!(
                "`{text}` is not PROTOCOL://host:port (PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL)"
            ));
        };
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| format!("`{address}` has no :port"))?;
        // IPv6 literals come bracketed, as in Kafka.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err("the host is empty".to_string());
        }
        let port = parse_ranged(port, 1, u16::MAX.into())?;
        Ok(AdvertisedListener {
            host: host.to_string(),
            port,
        })
    }
}

fn flatten<'a>(prefix: &str, table: &'a toml::Table, out: &mut Vec<(String, &'a toml::Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            other => out.push((key, other)),
        }
    }
}

fn toml_scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Kafka's `super.users`: `User:a;User:b`; the names without `User:`.
fn parse_super_users(text: &str) -> Result<Vec<String>, String> {
    text.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.strip_prefix("User:") {
            Some(name) if !name.is_empty() => Ok(name.to_string()),
            _ => Err(format!("{p:?} is not User:<name>")),
        })
        .collect()
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("`{text}` is not true or false")),
    }
}

fn parse_ranged<T: TryFrom<i64>>(text: &str, min: i64, max: i64) -> Result<T, String> {
    let v: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if v < min || v > max {
        return Err(format!("{v} is outside {min}..={max}"));
    }
    T::try_from(v).map_err(|_| format!("{v} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        s.parse().unwrap()
    }

    #[test]
    fn broker_keys_map_to_topic_defaults() {
        let s = BrokerSettings::from_table(&table(
            "\"log.retention.hours\" = 1\n\"log.segment.bytes\" = \"1048576\"\n\"num.partitions\" = 3",
        ))
        .unwrap();
        assert_eq!(s.num_partitions, 3);
        assert_eq!(
            s.topic_defaults.get("retention.ms").map(String::as_str),
            Some("3600000")
        );
        assert_eq!(
            s.topic_defaults.get("segment.bytes").map(String::as_str),
            Some("1048576")
        );
    }

    #[test]
    fn authorizer_settings() {
        let off = BrokerSettings::from_table(&table("")).unwrap();
        assert!(!off.authorizer.enabled);
        let s = BrokerSettings::from_table(&table(
            "\"authorizer.class.name\" = \"skein.StandardAuthorizer\"\n\"super.users\" = \"User:a; User:b\"\n\"allow.everyone.if.no.acl.found\" = true",
        ))
        .unwrap();
        assert!(s.authorizer.enabled);
        assert_eq!(s.authorizer.super_users, vec!["a", "b"]);
        assert!(s.authorizer.allow_if_no_acl);
        assert!(BrokerSettings::from_table(&table("\"super.users\" = \"alice\"")).is_err());
        let empty = BrokerSettings::from_table(&table("\"authorizer.class.name\" = \"\"")).unwrap();
        assert!(!empty.authorizer.enabled);
    }

    #[test]
    fn unquoted_dotted_keys_work() {
        let s = BrokerSettings::from_table(&table(
            "auto.create.topics.enable = false\nnum.partitions = 4",
        ))
        .unwrap();
        assert!(!s.auto_create_topics_enable);
        assert_eq!(s.num_partitions, 4);
    }

    #[test]
    fn advertised_listener() {
        let s = BrokerSettings::from_table(&table(
            "\"advertised.listeners\" = \"PLAINTEXT://broker-1.example:19092\"",
        ))
        .unwrap();
        let l = s.advertised_listener.unwrap();
        assert_eq!((l.host.as_str(), l.port), ("broker-1.example", 19092));
        let v6 = AdvertisedListener::parse("PLAINTEXT://[::1]:9092").unwrap();
        assert_eq!(v6.host, "::1");
        let tls = AdvertisedListener::parse("SASL_SSL://broker:9093").unwrap();
        assert_eq!((tls.host.as_str(), tls.port), ("broker", 9093));
        for bad in [
            "broker:9092",
            "TLS://broker:9092",
            "PLAINTEXT://broker",
            "PLAINTEXT://:9092",
            "PLAINTEXT://b:0",
            "PLAINTEXT://a:1,PLAINTEXT://b:2",
        ] {
            assert!(AdvertisedListener::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn follower_throttle_rate() {
        let unset = BrokerSettings::from_table(&table("")).unwrap();
        assert_eq!(
            unset.replication.follower_throttled_rate_bytes_per_s,
            i64::MAX
        );
        let s =
            BrokerSettings::from_table(&table("\"follower.replication.throttled.rate\" = 1048576"))
                .unwrap();
        assert_eq!(s.replication.follower_throttled_rate_bytes_per_s, 1_048_576);
        for bad in ["0", "-1", "\"fast\""] {
            let text = format!("\"follower.replication.throttled.rate\" = {bad}");
            assert!(BrokerSettings::from_table(&table(&text)).is_err(), "{bad}");
        }
    }

    #[test]
    fn connection_limits_and_quotas() {
        let unset = BrokerSettings::from_table(&table("")).unwrap();
        assert_eq!(unset.quotas, QuotaSettings::default());
        let s = BrokerSettings::from_table(&table(
            "\"max.connections.per.ip\" = 3\n\"max.connections\" = 2147483647\n\
             \"max.connections.per.ip.overrides\" = \"10.0.0.1:10, [::1]:0\"\n\
             \"quota.producer.default\" = 102400\n\
             \"skein.quota.consumer.overrides\" = \"alice:2048,my:app:4096\"",
        ))
        .unwrap();
        assert_eq!(s.quotas.max_connections_per_ip, 3);
        assert_eq!(s.quotas.max_connections, u32::MAX, "Integer.MAX: unlimited");
        assert_eq!(
            s.quotas.per_ip_overrides.get(&"10.0.0.1".parse().unwrap()),
            Some(&10)
        );
        assert_eq!(
            s.quotas.per_ip_overrides.get(&"::1".parse().unwrap()),
            Some(&0)
        );
        assert_eq!(s.quotas.producer_default, 102_400);
        assert_eq!(s.quotas.consumer_default, i64::MAX);
        assert_eq!(s.quotas.consumer_overrides.get("my:app"), Some(&4096));
        for bad in [
            "\"max.connections.per.ip\" = -1",
            "\"max.connections.per.ip.overrides\" = \"broker.example:3\"",
            "\"max.connections.per.ip.overrides\" = \"10.0.0.1\"",
            "\"quota.producer.default\" = 0",
            "\"skein.quota.producer.overrides\" = \"alice:fast\"",
        ] {
            assert!(BrokerSettings::from_table(&table(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_and_bad_values_are_refused() {
        assert!(BrokerSettings::from_table(&table("\"no.such.key\" = 1")).is_err());
        assert!(BrokerSettings::from_table(&table("\"num.partitions\" = 0")).is_err());
        assert!(validate_topic_config("retention.ms", "abc").is_err());
        assert!(validate_topic_config("retention.ms", "-1").is_ok());
        assert!(validate_topic_config("segment.bytes", "10").is_err());
        assert!(validate_topic_config("nope", "1").is_err());
    }
}

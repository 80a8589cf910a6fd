//! The core-layout config (`skein.toml`): parsed once at start-up, then shared read-only by every
//! shard. Every error names the key that is wrong.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::limits;
use listeners::split_protocol;

mod listeners;
use crate::sasl::SecurityProtocol;
use crate::settings::BrokerSettings;
use crate::shard::ids::{NodeId, ShardId};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    node: RawNode,
    #[serde(default)]
    cores: RawCores,
    #[serde(default)]
    listeners: RawListeners,
    #[serde(default)]
    controller: RawController,
    #[serde(default)]
    broker: toml::Table,
    #[serde(default)]
    placement: Vec<RawPlacement>,
    #[serde(default)]
    sasl: RawSasl,
    #[serde(default)]
    log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSasl {
    /// "name:password" entries the controller writes as SCRAM credentials if the user has none.
    #[serde(default)]
    bootstrap_users: Vec<String>,
}

/// A user the cluster is given at start-up (`[sasl] bootstrap_users`).
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapUser {
    pub name: String,
    pub password: String,
}

// Passwords stay out of logs: the layout is debug-printed at start-up.
impl std::fmt::Debug for BootstrapUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: Option<i32>,
    data_dir: Option<PathBuf>,
    /// Host name clients are told to connect to (Kafka's advertised.listeners host).
    advertised_host: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCores {
    shards: Option<String>,
    controller_shard: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListeners {
    kafka: Option<String>,
    internal: Option<String>,
    metrics: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawController {
    #[serde(default)]
    voters: Vec<String>,
    secret_file: Option<PathBuf>,
    /// "SSL": the quorum's connections are mutual TLS (the same on every node).
    security_protocol: Option<String>,
}

/// `[log] format`: how each log line is written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// tracing-subscriber's human-readable lines.
    Text,
    /// One JSON object per line (fields flattened), for log shippers.
    Json,
}

/// `[log]`: what the broker logs and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// An `EnvFilter` directive string ("info,skein::replication=debug"), checked at load.
    /// The `SKEIN_LOG` environment variable overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            format: LogFormat::Text,
        }
    }
}

/// Whether a config's CPUs must be available to this process. `skein check` loads a layout
/// whose CPUs may be missing, so that it can say which and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuCheck {
    Available,
    Unchecked,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlacement {
    topic: String,
    shards: String,
}

/// The whole validated layout.
#[derive(Debug, Clone)]
pub struct LayoutConfig {
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    pub advertised_host: Option<String>,
    /// CPU of each shard; the shard id is the index.
    pub shard_cpus: Vec<usize>,
    pub controller_shard: ShardId,
    pub kafka_listener: SocketAddr,
    /// `SASL_PLAINTEXT://host:port` (or `SSL://`, `SASL_SSL://`) in `listeners.kafka`; a
    /// bare host:port is PLAINTEXT.
    pub kafka_security_protocol: SecurityProtocol,
    pub internal_listener: Option<SocketAddr>,
    /// `SSL://host:port` in `listeners.internal`: the controller RPC runs over mutual TLS,
    /// and this node's own internal connections do too (so every voter must agree).
    pub internal_tls: bool,
    /// What the node's TLS is loaded from, when any listener uses it.
    pub tls: Option<skein_net::tls::TlsOptions>,
    pub metrics_listener: Option<SocketAddr>,
    /// `SSL://host:port` in `listeners.metrics`: HTTPS with the node's keystore.
    pub metrics_tls: bool,
    /// The controller quorum: (node id, internal listener address). Empty: single-node mode,
    /// a one-voter controller inside this process.
    pub controller_voters: Vec<(NodeId, SocketAddr)>,
    /// `[controller] secret_file`: the cluster's shared secret; the internal listener then
    /// talks only to processes that prove they hold it.
    pub cluster_secret_file: Option<PathBuf>,
    pub broker: BrokerSettings,
    /// Per-topic placement overrides: the topic's partitions go only to these shards.
    pub placement: BTreeMap<String, Vec<ShardId>>,
    /// `[sasl] bootstrap_users`: created (SCRAM-SHA-256 and -512) where they do not exist yet.
    pub sasl_bootstrap_users: Vec<BootstrapUser>,
    pub log: LogConfig,
}

impl LayoutConfig {
    /// The embedded default: one node on 127.0.0.1:9092, data in ./skein-data, every core a shard.
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::from_raw(RawConfig::default(), CpuCheck::Available)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(Some(path), CpuCheck::Available)
    }

    /// `load` (or the embedded default, without a path), with or without the CPU check.
    pub fn load_with(path: Option<&Path>, cpus: CpuCheck) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Self::from_raw(RawConfig::default(), cpus);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_with(&text, cpus).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    #[cfg(test)]
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_with(text, CpuCheck::Available)
    }

    fn parse_with(text: &str, cpus: CpuCheck) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        Self::from_raw(raw, cpus)
    }

    fn from_raw(raw: RawConfig, cpu_check: CpuCheck) -> Result<Self, ConfigError> {
        let available = available_cpus();
        let shard_cpus = match &raw.cores.shards {
            Some(spec) => {
                parse_cpu_list(spec).map_err(|m| ConfigError::invalid("cores.shards", m))?
            }
            None => available.clone(),
        };
        if shard_cpus.is_empty() {
            return Err(ConfigError::invalid("cores.shards", "lists no CPU"));
        }
        if shard_cpus.len() > limits::SHARDS_MAX {
            return Err(ConfigError::invalid(
                "cores.shards",
                format!(
                    "{} shards exceed the limit of {}",
                    shard_cpus.len(),
                    limits::SHARDS_MAX
                ),
            ));
        }
        for cpu in shard_cpus
            .iter()
            .filter(|_| cpu_check == CpuCheck::Available)
        {
            if !available.contains(cpu) {
                return Err(ConfigError::invalid(
                    "cores.shards",
                    format!(
                        "CPU {cpu} is not available to this process (available: {available:?})"
                    ),
                ));
            }
        }
        let controller_shard = ShardId(raw.cores.controller_shard.unwrap_or(0));
        if controller_shard.index() >= shard_cpus.len() {
            return Err(ConfigError::invalid(
                "cores.controller_shard",
                format!(
                    "shard {} does not exist ({} shards)",
                    controller_shard.0,
                    shard_cpus.len()
                ),
            ));
        }
        let node_id = raw.node.id.unwrap_or(1);
        if node_id < 0 {
            return Err(ConfigError::invalid("node.id", "must be >= 0"));
        }
        let (kafka_security_protocol, kafka_address) =
            split_protocol("listeners.kafka", raw.listeners.kafka.as_deref())?;
        let kafka_listener = parse_addr("listeners.kafka", kafka_address)?
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9092)));
        let sasl_bootstrap_users = parse_bootstrap_users(&raw.sasl.bootstrap_users)?;
        let (internal_protocol, internal_address) =
            split_protocol("listeners.internal", raw.listeners.internal.as_deref())?;
        let internal_tls = listeners::internal_tls(
            internal_protocol,
            raw.listeners
                .internal
                .as_deref()
                .is_some_and(|l| l.contains("://")),
            raw.controller.security_protocol.as_deref(),
        )?;
        let internal_listener = parse_addr("listeners.internal", internal_address)?;
        let (metrics_protocol, metrics_address) =
            split_protocol("listeners.metrics", raw.listeners.metrics.as_deref())?;
        let metrics_tls =
            listeners::tls_or_plaintext("listeners.metrics", metrics_protocol, "metrics")?;
        let metrics_listener = parse_addr("listeners.metrics", metrics_address)?;
        let broker = BrokerSettings::from_table(&raw.broker)?;
        if broker.broker_heartbeat_interval_ms >= broker.broker_session_timeout_ms {
            return Err(ConfigError::invalid(
                "broker.\"broker.heartbeat.interval.ms\"",
                "must be shorter than broker.session.timeout.ms",
            ));
        }
        let controller_voters = parse_voters(&raw.controller.voters)?;
        if controller_voters.iter().any(|(id, _)| id.0 == node_id)
            && controller_voters.len() > 1
            && internal_listener.is_none()
        {
            return Err(ConfigError::invalid(
                "listeners.internal",
                "a controller voter of a multi-node cluster needs the internal listener",
            ));
        }
        if raw.node.advertised_host.is_some() && broker.advertised_listener.is_some() {
            return Err(ConfigError::invalid(
                "broker.\"advertised.listeners\"",
                "conflicts with node.advertised_host; set only one",
            ));
        }

        let mut placement = BTreeMap::new();
        for (i, p) in raw.placement.iter().enumerate() {
            let key = format!("placement[{i}].shards");
            let cpus_or_ids =
                parse_cpu_list(&p.shards).map_err(|m| ConfigError::invalid(&key, m))?;
            let mut ids = Vec::new();
            for id in cpus_or_ids {
                if id >= shard_cpus.len() {
                    return Err(ConfigError::invalid(
                        &key,
                        format!("shard {id} does not exist ({} shards)", shard_cpus.len()),
                    ));
                }
                ids.push(ShardId(u16::try_from(id).map_err(|_| {
                    ConfigError::invalid(&key, format!("shard {id} out of range"))
                })?));
            }
            if placement.insert(p.topic.clone(), ids).is_some() {
                return Err(ConfigError::invalid(
                    format!("placement[{i}].topic"),
                    format!("topic `{}` is placed twice", p.topic),
                ));
            }
        }

        let log = parse_log(raw.log)?;
        let tls = listeners::check(
            &listeners::Listeners {
                kafka: kafka_security_protocol,
                internal_tls,
                metrics_tls,
                clustered: !controller_voters.is_empty(),
            },
            &broker,
        )?;

        Ok(LayoutConfig {
            node_id: NodeId(node_id),
            data_dir: raw
                .node
                .data_dir
                .unwrap_or_else(|| PathBuf::from("./skein-data")),
            advertised_host: raw.node.advertised_host,
            shard_cpus,
            controller_shard,
            kafka_listener,
            kafka_security_protocol,
            internal_listener,
            internal_tls,
            tls,
            metrics_listener,
            metrics_tls,
            controller_voters,
            cluster_secret_file: raw.controller.secret_file,
            broker,
            placement,
            sasl_bootstrap_users,
            log,
        })
    }

    pub fn shard_count(&self) -> usize {
        self.shard_cpus.len()
    }

    /// Single-node mode: no quorum configured, or one made of this node alone.
    pub fn is_single_node(&self) -> bool {
        match self.controller_voters.as_slice() {
            [] => true,
            [(id, _)] => *id == self.node_id,
            _ => false,
        }
    }

    /// Whether this node runs a controller voter.
    pub fn is_voter(&self) -> bool {
        self.is_single_node()
            || self
                .controller_voters
                .iter()
                .any(|(id, _)| *id == self.node_id)
    }

    /// The host and port clients are told to connect to: `advertised.listeners` when set, else
    /// the advertised host and the port the Kafka listener bound.
    pub fn advertised_endpoint(&self, listener_port: u16) -> (String, u16) {
        match &self.broker.advertised_listener {
            Some(l) => (l.host.clone(), l.port),
            None => (self.advertised_host(), listener_port),
        }
    }

    /// The host clients are told to connect to.
    pub fn advertised_host(&self) -> String {
        match &self.advertised_host {
            Some(h) => h.clone(),
            None if self.kafka_listener.ip().is_unspecified() => "127.0.0.1".to_string(),
            None => self.kafka_listener.ip().to_string(),
        }
    }
}

/// `[log]`: the level must parse as an `EnvFilter` now, not fail silently at start-up.
fn parse_log(raw: RawLog) -> Result<LogConfig, ConfigError> {
    let mut log = LogConfig::default();
    if let Some(level) = raw.level {
        tracing_subscriber::EnvFilter::builder()
            .parse(&level)
            .map_err(|e| ConfigError::invalid("log.level", format!("`{level}`: {e}")))?;
        log.level = level;
    }
    log.format = match raw.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(ConfigError::invalid(
                "log.format",
                format!("`{other}` is neither \"text\" nor \"json\""),
            ))
        }
    };
    Ok(log)
}

/// `controller.voters`: "id@host:port" entries, ids positive and distinct.
fn parse_voters(voters: &[String]) -> Result<Vec<(NodeId, SocketAddr)>, ConfigError> {
    let mut out: Vec<(NodeId, SocketAddr)> = Vec::new();
    for v in voters {
        let bad = |m: String| ConfigError::invalid("controller.voters", m);
        let (id, addr) = v
            .split_once('@')
            .ok_or_else(|| bad(format!("`{v}` is not id@host:port")))?;
        let id: i32 = id
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| bad(format!("`{id}` in `{v}` is not a positive node id")))?;
        let addr = parse_addr("controller.voters", Some(addr))?
            .ok_or_else(|| bad(format!("`{v}` has no address")))?;
        if out.iter().any(|(o, _)| o.0 == id) {
            return Err(bad(format!("node {id} is listed twice")));
        }
        out.push((NodeId(id), addr));
    }
    if out.len() > 1 && out.len().is_multiple_of(2) {
        return Err(ConfigError::invalid(
            "controller.voters",
            format!("{} voters: use 1, 3 or 5", out.len()),
        ));
    }
    Ok(out)
}

/// `[sasl] bootstrap_users`: "name:password", names distinct and non-empty.
fn parse_bootstrap_users(entries: &[String]) -> Result<Vec<BootstrapUser>, ConfigError> {
    let key = "sasl.bootstrap_users";
    let mut out: Vec<BootstrapUser> = Vec::new();
    for entry in entries {
        // The name is all before the first ':', so a password may contain ':'.
        let Some((name, password)) = entry.split_once(':') else {
            return Err(ConfigError::invalid(key, "an entry is not name:password"));
        };
        if name.is_empty() || password.is_empty() {
            return Err(ConfigError::invalid(key, "empty name or password"));
        }
        if out.iter().any(|u| u.name == name) {
            return Err(ConfigError::invalid(
                key,
                format!("user `{name}` is listed twice"),
            ));
        }
        out.push(BootstrapUser {
            name: name.to_string(),
            password: password.to_string(),
        });
    }
    Ok(out)
}

fn parse_addr(key: &str, value: Option<&str>) -> Result<Option<SocketAddr>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) => v.parse::<SocketAddr>().map(Some).map_err(|e| {
            ConfigError::invalid(key, format!("`{v}` is not an ip:port address: {e}"))
        }),
    }
}

/// Parses a Linux-style CPU list: "0-3,6,8-9".
pub fn parse_cpu_list(spec: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (parse_cpu(a)?, parse_cpu(b)?),
            None => {
                let c = parse_cpu(part)?;
                (c, c)
            }
        };
        if lo > hi {
            return Err(format!("range `{part}` is backwards"));
        }
        for c in lo..=hi {
            if cpus.contains(&c) {
                return Err(format!("CPU {c} is listed twice"));
            }
            cpus.push(c);
        }
    }
    Ok(cpus)
}

fn parse_cpu(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map_err(|_| format!("`{s}` is not a CPU number"))
}

/// CPUs this process may run on, in ascending order.
pub fn available_cpus() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if ids.is_empty() {
        ids = (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    ids.sort_unstable();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("1,1").is_err());
        assert!(parse_cpu_list("x").is_err());
    }

    #[test]
    fn default_is_complete() {
        let c = LayoutConfig::embedded_default().unwrap();
        assert_eq!(c.kafka_listener.to_string(), "127.0.0.1:9092");
        assert_eq!(c.shard_count(), available_cpus().len());
        assert_eq!(c.data_dir, PathBuf::from("./skein-data"));
    }

    #[test]
    fn errors_name_the_key() {
        let e = LayoutConfig::parse("[cores]\nshards = \"0-9999\"\n").unwrap_err();
        assert!(e.to_string().contains("cores.shards"), "{e}");
        let e = LayoutConfig::parse("[listeners]\nkafka = \"nope\"\n").unwrap_err();
        assert!(e.to_string().contains("listeners.kafka"), "{e}");
        let e = LayoutConfig::parse("[node]\nidd = 3\n").unwrap_err();
        assert!(e.to_string().contains("idd"), "{e}");
        let e = LayoutConfig::parse("[broker]\n\"num.partitions\" = \"many\"\n").unwrap_err();
        assert!(e.to_string().contains("num.partitions"), "{e}");
        let e = LayoutConfig::parse("[cores]\nshards = \"0\"\ncontroller_shard = 3\n").unwrap_err();
        assert!(e.to_string().contains("cores.controller_shard"), "{e}");
        let e = LayoutConfig::parse(
            "[node]\nadvertised_host = \"h\"\n[broker]\n\"advertised.listeners\" = \"PLAINTEXT://h:1\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("advertised.listeners"), "{e}");
    }

    #[test]
    fn log_section() {
        let c = LayoutConfig::parse("").unwrap();
        assert_eq!(c.log, LogConfig::default());
        let c = LayoutConfig::parse(
            "[log]\nlevel = \"info,skein::replication=debug\"\nformat = \"json\"\n",
        )
        .unwrap();
        assert_eq!(c.log.level, "info,skein::replication=debug");
        assert_eq!(c.log.format, LogFormat::Json);
        let e = LayoutConfig::parse("[log]\nlevel = \"info,=bogus[\"\n").unwrap_err();
        assert!(e.to_string().contains("log.level"), "{e}");
        let e = LayoutConfig::parse("[log]\nformat = \"xml\"\n").unwrap_err();
        assert!(e.to_string().contains("log.format"), "{e}");
        let e = LayoutConfig::parse("[log]\nlevl = \"info\"\n").unwrap_err();
        assert!(e.to_string().contains("levl"), "{e}");
    }

    #[test]
    fn unchecked_cpus_load_a_missing_core() {
        let text = "[cores]\nshards = \"4095\"\n";
        assert!(LayoutConfig::parse(text).is_err());
        let c = LayoutConfig::parse_with(text, CpuCheck::Unchecked).unwrap();
        assert_eq!(c.shard_cpus, vec![4095]);
    }

    #[test]
    fn placement_overrides() {
        let c = LayoutConfig::parse(
            "[cores]\nshards = \"0\"\n[[placement]]\ntopic = \"t\"\nshards = \"0\"\n",
        )
        .unwrap();
        assert_eq!(c.placement.get("t"), Some(&vec![ShardId(0)]));
        let e = LayoutConfig::parse(
            "[cores]\nshards = \"0\"\n[[placement]]\ntopic = \"t\"\nshards = \"1\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("placement[0].shards"), "{e}");
    }

    #[test]
    fn sasl_listener_and_bootstrap_users() {
        let c = LayoutConfig::parse("").unwrap();
        assert_eq!(c.kafka_security_protocol, SecurityProtocol::Plaintext);
        let c = LayoutConfig::parse(
            "[listeners]\nkafka = \"SASL_PLAINTEXT://127.0.0.1:9092\"\n\
             [sasl]\nbootstrap_users = [\"admin:se:cret\"]\n",
        )
        .unwrap();
        assert_eq!(c.kafka_security_protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(c.kafka_listener.port(), 9092);
        assert_eq!(c.sasl_bootstrap_users[0].name, "admin");
        assert_eq!(c.sasl_bootstrap_users[0].password, "se:cret");
        assert!(!format!("{c:?}").contains("se:cret"));
        for bad in [
            // TLS without a key and certificate.
            "[listeners]\nkafka = \"SSL://127.0.0.1:9092\"\n",
            "[listeners]\ninternal = \"SASL_SSL://127.0.0.1:9093\"\n",
            "[listeners]\nkafka = \"FOO://127.0.0.1:9092\"\n",
            "[sasl]\nbootstrap_users = [\"admin\"]\n",
            "[sasl]\nbootstrap_users = [\"a:1\", \"a:2\"]\n",
        ] {
            assert!(LayoutConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_listeners() {
        let c = LayoutConfig::parse(
            "[listeners]\nkafka = \"SASL_SSL://127.0.0.1:9092\"\n\
             [broker]\n\"ssl.keystore.location\" = \"/k.pem\"\n",
        )
        .unwrap();
        assert_eq!(c.kafka_security_protocol, SecurityProtocol::SaslSsl);
        assert!(!c.internal_tls);
        let tls = c.tls.expect("tls options");
        assert_eq!(tls.keystore, PathBuf::from("/k.pem"));
        assert_eq!(tls.truststore, None);
        let c = LayoutConfig::parse(
            "[listeners]\nmetrics = \"SSL://127.0.0.1:9644\"\n\
             [broker]\n\"ssl.keystore.location\" = \"/k.pem\"\n",
        )
        .unwrap();
        assert!(c.metrics_tls && c.tls.is_some());
        assert!(LayoutConfig::parse("[listeners]\nmetrics = \"SSL://127.0.0.1:9644\"\n").is_err());
        assert!(
            LayoutConfig::parse("[listeners]\nmetrics = \"SASL_SSL://127.0.0.1:9644\"\n").is_err()
        );
        // No TLS listener: the ssl.* keys are read but no TLS is set up.
        let c = LayoutConfig::parse("[broker]\n\"ssl.keystore.location\" = \"/k.pem\"\n").unwrap();
        assert!(c.tls.is_none());
        // A cluster member connects to the others over TLS: it needs a truststore.
        let cluster = "[node]\nid = 1\n[controller]\nvoters = [\"1@127.0.0.1:9093\", \
                       \"2@127.0.0.1:9094\", \"3@127.0.0.1:9095\"]\n\
                       [broker]\n\"ssl.keystore.location\" = \"/k.pem\"\n";
        let e = LayoutConfig::parse(&format!(
            "[listeners]\nkafka = \"SSL://127.0.0.1:9092\"\ninternal = \"127.0.0.1:9093\"\n{cluster}"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("ssl.truststore.location"), "{e}");
        // Mutual TLS in the quorum admits the super users' certificates only: there must be some.
        let internal = format!(
            "[listeners]\ninternal = \"SSL://127.0.0.1:9093\"\n{cluster}\
             \"ssl.truststore.location\" = \"/ca.pem\"\n"
        );
        let e = LayoutConfig::parse(&internal).unwrap_err();
        assert!(e.to_string().contains("super.users"), "{e}");
        let members = "\"super.users\" = \"User:CN=b1;User:CN=b2;User:CN=b3\"\n";
        let c = LayoutConfig::parse(&format!("{internal}{members}")).unwrap();
        assert!(c.internal_tls);
        assert_eq!(c.internal_listener.map(|a| a.port()), Some(9093));
        assert_eq!(
            c.tls.and_then(|t| t.truststore),
            Some(PathBuf::from("/ca.pem"))
        );
        // Followers log in to a SASL listener: a cluster needs their mechanism and user.
        let sasl = format!(
            "[listeners]\nkafka = \"SASL_PLAINTEXT://127.0.0.1:9092\"\ninternal = \"127.0.0.1:9093\"\n{cluster}"
        );
        let e = LayoutConfig::parse(&sasl).unwrap_err();
        assert!(e.to_string().contains("sasl.jaas.config"), "{e}");
        let jaas =
            "\"sasl.jaas.config\" = 'ScramLoginModule required username=\"b\" password=\"p\";'\n";
        let c = LayoutConfig::parse(&format!(
            "{sasl}\"sasl.mechanism.inter.broker.protocol\" = \"SCRAM-SHA-512\"\n{jaas}"
        ))
        .unwrap();
        let login = c.broker.inter_broker_login().expect("login");
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("b", "p")
        );
        let e = LayoutConfig::parse(&format!(
            "{sasl}\"sasl.mechanism.inter.broker.protocol\" = \"PLAIN\"\n{jaas}\
             \"sasl.enabled.mechanisms\" = \"SCRAM-SHA-512\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("sasl.enabled.mechanisms"), "{e}");
    }

    #[test]
    fn controller_security_protocol_and_follower_identity() {
        let broker_only = "[node]\nid = 4\n[controller]\nvoters = [\"1@127.0.0.1:9093\"]\n\
                           security_protocol = \"SSL\"\n[broker]\n\
                           \"ssl.keystore.location\" = \"/k.pem\"\n\
                           \"ssl.truststore.location\" = \"/ca.pem\"\n\
                           \"super.users\" = \"User:CN=b1\"\n";
        // A broker-only node has no internal listener, yet dials the voters over TLS.
        let c = LayoutConfig::parse(broker_only).unwrap();
        assert!(c.internal_tls && c.internal_listener.is_none());
        let e = LayoutConfig::parse(&format!(
            "[listeners]\ninternal = \"PLAINTEXT://127.0.0.1:9093\"\n{broker_only}"
        ))
        .unwrap_err();
        assert!(
            e.to_string().contains("controller.security_protocol"),
            "{e}"
        );
        assert!(LayoutConfig::parse(
            "[controller]\nvoters = [\"1@127.0.0.1:9093\"]\nsecurity_protocol = \"SASL_SSL\"\n"
        )
        .is_err());
        // One voter is still a cluster: brokers may join it, and followers connect over TLS.
        let one_voter = "[controller]\nvoters = [\"1@127.0.0.1:9093\"]\n[listeners]\n\
                         kafka = \"SSL://127.0.0.1:9092\"\n[broker]\n\
                         \"ssl.keystore.location\" = \"/k.pem\"\n";
        let e = LayoutConfig::parse(one_voter).unwrap_err();
        assert!(e.to_string().contains("ssl.truststore.location"), "{e}");
        // With ACLs on, a follower on an SSL listener must present a certificate.
        let acls = format!(
            "{one_voter}\"ssl.truststore.location\" = \"/ca.pem\"\n\
             \"authorizer.class.name\" = \"x\"\n"
        );
        let e = LayoutConfig::parse(&acls).unwrap_err();
        assert!(e.to_string().contains("ssl.client.auth"), "{e}");
        assert!(
            LayoutConfig::parse(&format!("{acls}\"ssl.client.auth\" = \"required\"\n")).is_ok()
        );
    }
}

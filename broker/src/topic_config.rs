//! A topic's effective config: its overrides on top of the broker defaults, resolved once per
//! metadata change and handed to the partitions that need it (node-wide view).

use std::collections::BTreeMap;

use skein_storage::{CleanupPolicy, FlushPolicy, LogConfig};

use crate::settings::{BrokerSettings, ConfigSource, TOPIC_CONFIGS};

#[derive(Clone, Debug, PartialEq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EffectiveTopicConfig {
    pub entries: Vec<ConfigEntry>,
    pub max_message_bytes: usize,
    pub min_insync_replicas: usize,
    /// Neither the topic nor the broker sets `min.insync.replicas` (Skein's RF-based default).
    min_insync_replicas_defaulted: bool,
    /// `cleanup.policy` includes compact: every record needs a key.
    pub requires_keys: bool,
}

impl EffectiveTopicConfig {
    /// Resolves every known topic config. Overrides were validated when they were set; a value
    /// that no longer parses falls back to the default rather than failing the partition.
    pub fn resolve(broker: &BrokerSettings, overrides: &BTreeMap<String, String>) -> Self {
        let entries: Vec<ConfigEntry> = TOPIC_CONFIGS
            .iter()
            .map(|def| match overrides.get(def.name) {
                Some(v) => ConfigEntry {
                    name: def.name,
                    value: v.clone(),
                    source: ConfigSource::TopicOverride,
                },
                None => {
                    let (value, source) = broker.topic_default(def);
                    ConfigEntry {
                        name: def.name,
                        value,
                        source,
                    }
                }
            })
            .collect();
        let mut c = EffectiveTopicConfig {
            entries,
            max_message_bytes: 0,
            min_insync_replicas: 1,
            min_insync_replicas_defaulted: false,
            requires_keys: false,
        };
        let requires_keys = c.cleanup_policies().any(|p| p == "compact");
        c.requires_keys = requires_keys;
        c.max_message_bytes = c.int("max.message.bytes", 1_048_588).max(0) as usize;
        c.min_insync_replicas = c.int("min.insync.replicas", 1).max(1) as usize;
        // Resolved once here: an acks=all produce asks for every batch.
        c.min_insync_replicas_defaulted = c
            .entries
            .iter()
            .any(|e| e.name == "min.insync.replicas" && e.source == ConfigSource::Default);
        c
    }

    /// `min.insync.replicas` for a partition of `replication_factor` replicas. Where neither the
    /// topic nor the broker sets it, Skein's default is 2 for RF >= 3 (one replica may fail
    /// without acks=all writes stopping or depending on a single copy) and 1 below.
    pub fn min_insync_replicas_for(&self, replication_factor: usize) -> usize {
        if self.min_insync_replicas_defaulted && replication_factor >= 3 {
            2
        } else {
            self.min_insync_replicas
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.value.as_str())
    }

    fn cleanup_policies(&self) -> impl Iterator<Item = &str> {
        self.get("cleanup.policy")
            .unwrap_or("delete")
            .split(',')
            .map(str::trim)
    }

    fn cleanup_policy(&self) -> CleanupPolicy {
        let compact = self.cleanup_policies().any(|p| p == "compact");
        let delete = self.cleanup_policies().any(|p| p == "delete");
        match (compact, delete) {
            (true, true) => CleanupPolicy::CompactDelete,
            (true, false) => CleanupPolicy::Compact,
            _ => CleanupPolicy::Delete,
        }
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }

    /// What the storage engine needs. `flush.messages=1` is Kafka's spelling of "fsync every
    /// write"; Skein turns it into group-committed fdatasync before acknowledging.
    pub fn log_config(&self) -> LogConfig {
        let flush_messages = self.int("flush.messages", i64::MAX);
        let flush = if flush_messages <= 1 {
            FlushPolicy::Fsync
        } else {
            FlushPolicy::Periodic {
                interval_ms: to_u64(self.int("flush.ms", i64::MAX)),
                messages: to_u64(flush_messages),
            }
        };
        LogConfig {
            segment_bytes: to_u64(self.int("segment.bytes", 1 << 30)),
            segment_ms: self.int("segment.ms", 604_800_000),
            retention_bytes: self.int("retention.bytes", -1),
            retention_ms: self.int("retention.ms", 604_800_000),
            index_interval_bytes: to_u32(self.int("index.interval.bytes", 4096)),
            flush,
            cleanup_policy: self.cleanup_policy(),
            max_message_bytes: to_u32(self.max_message_bytes as i64),
            delete_retention_ms: self.int("delete.retention.ms", 86_400_000).max(0),
            min_cleanable_dirty_ratio: self
                .get("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|r| (0.0..=1.0).contains(r))
                .unwrap_or(0.5),
            min_compaction_lag_ms: self.int("min.compaction.lag.ms", 0).max(0),
            ..LogConfig::default()
        }
    }
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_and_fsync_maps() {
        let broker = BrokerSettings::default();
        let mut o = BTreeMap::new();
        o.insert("flush.messages".to_string(), "1".to_string());
        o.insert("max.message.bytes".to_string(), "2048".to_string());
        let c = EffectiveTopicConfig::resolve(&broker, &o);
        assert_eq!(c.max_message_bytes, 2048);
        assert_eq!(c.log_config().flush, FlushPolicy::Fsync);
        let e = c.entries.iter().find(|e| e.name == "retention.ms").unwrap();
        assert_eq!(e.source, ConfigSource::Default);
        assert_eq!(e.value, "604800000");
    }
}

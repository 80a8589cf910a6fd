//! Topic administration (create, delete, add partitions, alter configs), executed one at a time
//! on the metadata shard: change a copy of the metadata, persist it, publish it to every shard,
//! then answer. The replicated controller takes this role over in the multi-node issue.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use crate::metadata::{
    place_partitions, validate_topic_name, ClusterMetadata, PartitionMeta, TopicMeta,
};
use crate::settings::validate_topic_config;
use crate::shard::ids::ShardId;
use crate::shard::mesh::ControlCall;
use crate::shard::Shard;

/// A topic to create; -1 means "the broker default" as in CreateTopics.
#[derive(Clone, Debug)]
pub struct NewTopic {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// Manual replica assignments were given (we place replicas ourselves on one node).
    pub has_assignments: bool,
}

/// One change to a topic config (IncrementalAlterConfigs' operations; AlterConfigs is `Replace`).
#[derive(Clone, Debug)]
pub enum ConfigChange {
    Set(String, String),
    Delete(String),
    Append(String, String),
    Subtract(String, String),
}

#[derive(Clone, Debug)]
pub enum AdminOp {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
    },
    AlterTopicConfig {
        topic: String,
        changes: Vec<ConfigChange>,
        replace_all: bool,
        validate_only: bool,
    },
}

/// Per-item outcome: an error code and message, as the admin APIs report them.
pub type ItemResult = Result<(), (ResponseError, Option<String>)>;

/// One outcome per item of the op, in request order.
#[derive(Debug)]
pub struct AdminReply {
    pub results: Vec<(String, ItemResult)>,
}

impl AdminReply {
    fn all_failed(names: Vec<String>, error: ResponseError, message: &str) -> Self {
        AdminReply {
            results: names
                .into_iter()
                .map(|n| (n, Err((error, Some(message.to_string())))))
                .collect(),
        }
    }
}

/// The authoritative metadata, on the metadata shard only.
pub struct AdminState {
    current: RefCell<ClusterMetadata>,
    /// Admin ops run one at a time, so each sees the previous one's result.
    lock: glommio::sync::Semaphore,
}

impl AdminState {
    pub fn new(metadata: ClusterMetadata) -> Self {
        AdminState {
            current: RefCell::new(metadata),
            lock: glommio::sync::Semaphore::new(1),
        }
    }
}

fn op_names(op: &AdminOp) -> Vec<String> {
    match op {
        AdminOp::CreateTopics { topics, .. } => topics.iter().map(|t| t.name.clone()).collect(),
        AdminOp::DeleteTopics { names } => names.clone(),
        AdminOp::CreatePartitions { topics, .. } => topics.iter().map(|t| t.0.clone()).collect(),
        AdminOp::AlterTopicConfig { topic, .. } => vec![topic.clone()],
    }
}

/// Sends `op` to the metadata shard (or runs it here if this is it) and waits for the outcome.
pub async fn submit(shard: &Shard, op: AdminOp) -> AdminReply {
    if shard.admin.is_some() {
        return execute(shard, op).await;
    }
    let names = op_names(&op);
    let (reply, rx) = oneshot::channel();
    let target = shard.layout.controller_shard;
    if shard
        .mesh
        .send_control(target, ControlCall::Admin { op, reply })
        .await
        .is_err()
    {
        return AdminReply::all_failed(
            names,
            ResponseError::NotController,
            "metadata shard unreachable",
        );
    }
    match rx.await {
        Ok(r) => r,
        Err(_) => AdminReply::all_failed(
            names,
            ResponseError::NotController,
            "metadata shard dropped the request",
        ),
    }
}

/// Runs an admin op on the metadata shard.
pub async fn execute(shard: &Shard, op: AdminOp) -> AdminReply {
    let names = op_names(&op);
    let Some(admin) = &shard.admin else {
        return AdminReply::all_failed(
            names,
            ResponseError::NotController,
            "not the metadata shard",
        );
    };
    let Ok(_permit) = admin.lock.acquire_permit(1).await else {
        return AdminReply::all_failed(
            names,
            ResponseError::NotController,
            "metadata shard is stopping",
        );
    };
    let mut md = admin.current.borrow().clone();
    let (results, changed) = apply_op(shard, &mut md, op);
    if !changed {
        return AdminReply { results };
    }
    md.revision += 1;
    md.reindex();
    let data_dir = shard.layout.data_dir.clone();
    let to_write = md.clone();
    let persisted = glommio::executor()
        .spawn_blocking(move || crate::metadata_store::write_atomically(&data_dir, &to_write))
        .await;
    if let Err(e) = persisted {
        tracing::error!(error = %e, "persisting metadata failed; the change is not applied");
        return AdminReply::all_failed(names, ResponseError::KafkaStorageError, &e.to_string());
    }
    *admin.current.borrow_mut() = md.clone();
    if let Err(e) = publish(shard, Arc::new(md)).await {
        tracing::error!(error = %e, "publishing metadata failed");
        return AdminReply::all_failed(names, ResponseError::KafkaStorageError, &e);
    }
    AdminReply { results }
}

/// Installs a snapshot on every shard and waits until each has opened or dropped its partitions.
async fn publish(shard: &Shard, snapshot: Arc<ClusterMetadata>) -> Result<(), String> {
    for i in 0..shard.shard_count() {
        let target = ShardId(u16::try_from(i).map_err(|_| "too many shards".to_string())?);
        if target == shard.id {
            shard.apply_metadata(snapshot.clone()).await?;
            continue;
        }
        let (reply, rx) = oneshot::channel();
        shard
            .mesh
            .send_control(
                target,
                ControlCall::Apply {
                    snapshot: snapshot.clone(),
                    reply,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        rx.await
            .map_err(|_| format!("{target} dropped the metadata update"))??;
    }
    Ok(())
}

/// Applies `op` to `md`; returns per-item outcomes and whether anything changed.
fn apply_op(
    shard: &Shard,
    md: &mut ClusterMetadata,
    op: AdminOp,
) -> (Vec<(String, ItemResult)>, bool) {
    let settings = &shard.layout.broker;
    let mut changed = false;
    let mut results = Vec::new();
    match op {
        AdminOp::CreateTopics {
            topics,
            validate_only,
        } => {
            let mut counts = md.partitions_per_shard(shard.shard_count());
            for t in topics {
                let r = create_topic(shard, md, &mut counts, &t, validate_only);
                changed |= r.is_ok() && !validate_only;
                results.push((t.name, r));
            }
        }
        AdminOp::DeleteTopics { names } => {
            for name in names {
                let r = if !settings.delete_topic_enable {
                    Err((ResponseError::TopicDeletionDisabled, None))
                } else if md.topics.remove(&name).is_some() {
                    changed = true;
                    Ok(())
                } else {
                    Err((ResponseError::UnknownTopicOrPartition, None))
                };
                results.push((name, r));
            }
        }
        AdminOp::CreatePartitions {
            topics,
            validate_only,
        } => {
            let mut counts = md.partitions_per_shard(shard.shard_count());
            for (name, total) in topics {
                let r = add_partitions(shard, md, &mut counts, &name, total, validate_only);
                changed |= r.is_ok() && !validate_only;
                results.push((name, r));
            }
        }
        AdminOp::AlterTopicConfig {
            topic,
            changes,
            replace_all,
            validate_only,
        } => {
            let r = alter_config(settings, md, &topic, changes, replace_all, validate_only);
            changed |= r.is_ok() && !validate_only;
            results.push((topic, r));
        }
    }
    (results, changed)
}

fn invalid(e: ResponseError, m: impl Into<String>) -> ItemResult {
    Err((e, Some(m.into())))
}

fn create_topic(
    shard: &Shard,
    md: &mut ClusterMetadata,
    counts: &mut [usize],
    t: &NewTopic,
    validate_only: bool,
) -> ItemResult {
    let settings = &shard.layout.broker;
    if let Err(m) = validate_topic_name(&t.name) {
        return invalid(ResponseError::InvalidTopicException, m);
    }
    if md.topics.contains_key(&t.name) {
        return invalid(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", t.name),
        );
    }
    if t.has_assignments {
        return invalid(
            ResponseError::InvalidReplicaAssignment,
            "manual replica assignment is not supported on a single-node cluster",
        );
    }
    let partitions = if t.num_partitions == -1 {
        settings.num_partitions
    } else {
        t.num_partitions
    };
    if partitions <= 0 || i64::from(partitions) > crate::limits::PARTITIONS_PER_TOPIC_MAX {
        return invalid(
            ResponseError::InvalidPartitions,
            format!("invalid partition count {partitions}"),
        );
    }
    let rf = if t.replication_factor == -1 {
        settings.default_replication_factor
    } else {
        t.replication_factor
    };
    let live_brokers = 1;
    if rf <= 0 || rf > live_brokers {
        return invalid(
            ResponseError::InvalidReplicationFactor,
            format!("Replication factor: {rf} larger than available brokers: {live_brokers}."),
        );
    }
    for (k, v) in &t.configs {
        if let Err(m) = validate_topic_config(k, v) {
            return invalid(ResponseError::InvalidConfig, m);
        }
    }
    if validate_only {
        return Ok(());
    }
    let allowed = allowed_shards(shard, &t.name);
    let placed = place_partitions(counts, &allowed, usize::try_from(partitions).unwrap_or(0));
    md.topics.insert(
        t.name.clone(),
        TopicMeta {
            name: t.name.clone(),
            id: Uuid::new_v4(),
            partitions: placed
                .into_iter()
                .map(|shard| PartitionMeta {
                    shard,
                    leader_epoch: 0,
                })
                .collect(),
            configs: t.configs.clone(),
            internal: t.name.starts_with("__"),
        },
    );
    Ok(())
}

fn allowed_shards(shard: &Shard, topic: &str) -> Vec<ShardId> {
    match shard.layout.placement.get(topic) {
        Some(s) if !s.is_empty() => s.clone(),
        _ => (0..shard.shard_count())
            .filter_map(|i| u16::try_from(i).ok().map(ShardId))
            .collect(),
    }
}

fn add_partitions(
    shard: &Shard,
    md: &mut ClusterMetadata,
    counts: &mut [usize],
    name: &str,
    total: i32,
    validate_only: bool,
) -> ItemResult {
    let allowed = allowed_shards(shard, name);
    let Some(topic) = md.topics.get_mut(name) else {
        return invalid(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        );
    };
    let current = topic.partitions.len();
    let Ok(total) = usize::try_from(total) else {
        return invalid(
            ResponseError::InvalidPartitions,
            "partition count must be positive",
        );
    };
    if total <= current {
        return invalid(
            ResponseError::InvalidPartitions,
            format!("Topic currently has {current} partitions, which is higher than or equal to the requested {total}."),
        );
    }
    if total as i64 > crate::limits::PARTITIONS_PER_TOPIC_MAX {
        return invalid(ResponseError::InvalidPartitions, "too many partitions");
    }
    if validate_only {
        return Ok(());
    }
    let placed = place_partitions(counts, &allowed, total - current);
    topic
        .partitions
        .extend(placed.into_iter().map(|shard| PartitionMeta {
            shard,
            leader_epoch: 0,
        }));
    Ok(())
}

fn alter_config(
    settings: &crate::settings::BrokerSettings,
    md: &mut ClusterMetadata,
    name: &str,
    changes: Vec<ConfigChange>,
    replace_all: bool,
    validate_only: bool,
) -> ItemResult {
    let Some(topic) = md.topics.get_mut(name) else {
        return invalid(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        );
    };
    let mut configs = if replace_all {
        BTreeMap::new()
    } else {
        topic.configs.clone()
    };
    for change in changes {
        match change {
            ConfigChange::Set(k, v) => {
                configs.insert(k, v);
            }
            ConfigChange::Delete(k) => {
                configs.remove(&k);
            }
            ConfigChange::Append(k, v) => {
                let cur = current_value(settings, &configs, &k);
                let mut items: Vec<&str> = cur.split(',').filter(|s| !s.is_empty()).collect();
                for item in v.split(',').filter(|s| !s.is_empty()) {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
                let joined = items.join(",");
                configs.insert(k, joined);
            }
            ConfigChange::Subtract(k, v) => {
                let cur = current_value(settings, &configs, &k);
                let remove: Vec<&str> = v.split(',').collect();
                let kept: Vec<&str> = cur
                    .split(',')
                    .filter(|s| !s.is_empty() && !remove.contains(s))
                    .collect();
                if kept.is_empty() {
                    configs.remove(&k);
                } else {
                    let joined = kept.join(",");
                    configs.insert(k, joined);
                }
            }
        }
    }
    for (k, v) in &configs {
        if let Err(m) = validate_topic_config(k, v) {
            return invalid(ResponseError::InvalidConfig, m);
        }
    }
    if !validate_only {
        topic.configs = configs;
    }
    Ok(())
}

/// A list config's value before an APPEND or SUBTRACT: the override, else the default, as Kafka
/// does.
fn current_value(
    settings: &crate::settings::BrokerSettings,
    configs: &BTreeMap<String, String>,
    key: &str,
) -> String {
    match configs.get(key) {
        Some(v) => v.clone(),
        None => crate::settings::topic_config_def(key)
            .map(|def| settings.topic_default(def).0)
            .unwrap_or_default(),
    }
}

//! Finding a group's coordinator partition and running offset commits and fetches on the shard
//! that owns it.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use skein_storage::batch::ValidatedBatches;

use super::offsets::{encode_key, encode_value, partition_for, CommittedOffset, OFFSETS_TOPIC};
use crate::admin::{self, AdminOp, NewTopic};
use crate::shard::ids::{ShardId, TopicPartition};
use crate::shard::Shard;

/// Creates `__consumer_offsets` on first use, as Kafka does.
pub async fn ensure_offsets_topic(shard: &Shard) -> Result<(), ResponseError> {
    if shard.metadata().topics.contains_key(OFFSETS_TOPIC) {
        return Ok(());
    }
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    let topic = NewTopic {
        name: OFFSETS_TOPIC.to_string(),
        num_partitions: shard.layout.broker.offsets_topic_num_partitions,
        replication_factor: -1,
        configs,
        has_assignments: false,
    };
    let reply = admin::submit(
        shard,
        AdminOp::CreateTopics {
            topics: vec![topic],
            validate_only: false,
        },
    )
    .await;
    match reply.results.into_iter().next() {
        Some((_, Ok(()))) | Some((_, Err((ResponseError::TopicAlreadyExists, _)))) => Ok(()),
        Some((_, Err((e, m)))) => {
            tracing::warn!(error = ?e, message = ?m, "creating __consumer_offsets failed");
            Err(ResponseError::CoordinatorNotAvailable)
        }
        None => Err(ResponseError::CoordinatorNotAvailable),
    }
}

/// The `__consumer_offsets` partition of `group` and the shard that owns it.
pub async fn locate(
    shard: &Shard,
    group: &str,
) -> Result<(TopicPartition, ShardId), ResponseError> {
    ensure_offsets_topic(shard).await?;
    let md = shard.metadata();
    let partitions = md
        .topics
        .get(OFFSETS_TOPIC)
        .map_or(0, |t| t.partitions.len());
    if partitions == 0 {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    let p = partition_for(group, partitions);
    let owner = md
        .owner(OFFSETS_TOPIC, p)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    Ok((TopicPartition::new(OFFSETS_TOPIC, p), owner.shard))
}

/// One offset to commit.
#[derive(Clone, Debug)]
pub struct CommitItem {
    pub topic: String,
    pub partition: i32,
    pub committed: CommittedOffset,
}

/// On the owning shard: writes the commits as one batch and applies them once it is durable.
/// No group membership exists yet, so only simple (generation -1) commits are accepted.
pub async fn commit_on_owner(
    shard: Rc<Shard>,
    tp: TopicPartition,
    group: String,
    generation: i32,
    items: Vec<CommitItem>,
) -> Result<(), ResponseError> {
    if generation >= 0 {
        return Err(ResponseError::IllegalGeneration);
    }
    let p = shard.partition(&tp).ok_or(ResponseError::NotCoordinator)?;
    if items.is_empty() {
        return Ok(());
    }
    let now = crate::clock::now_ms();
    let mut batch = skein_net::RecordBatchBuilder::new(now);
    for item in &items {
        let key = encode_key(&group, &item.topic, item.partition);
        let value = encode_value(&item.committed, now);
        batch.push(now, Some(&key), Some(&value), &[]);
    }
    let validated = ValidatedBatches::validate(batch.build()).map_err(|e| {
        tracing::error!(group, error = %e, "built an invalid offsets batch");
        ResponseError::CoordinatorNotAvailable
    })?;
    let _written = p.append(validated).await.map_err(|e| {
        tracing::warn!(group, error = ?e, "writing offsets failed");
        ResponseError::CoordinatorNotAvailable
    })?;
    let mut store = p.offsets.borrow_mut();
    for item in items {
        store.put(&group, &item.topic, item.partition, item.committed);
    }
    Ok(())
}

/// On the owning shard: the committed offsets asked for (`None` = all of the group's).
pub async fn fetch_on_owner(
    shard: Rc<Shard>,
    tp: TopicPartition,
    group: String,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<(String, i32, Option<CommittedOffset>)>, ResponseError> {
    let p = shard.partition(&tp).ok_or(ResponseError::NotCoordinator)?;
    let store = p.offsets.borrow();
    Ok(match wanted {
        None => store
            .of_group(&group)
            .into_iter()
            .map(|(t, p, c)| (t, p, Some(c)))
            .collect(),
        Some(topics) => topics
            .into_iter()
            .flat_map(|(t, parts)| parts.into_iter().map(move |p| (t.clone(), p)))
            .map(|(t, p)| {
                let c = store.get(&group, &t, p).cloned();
                (t, p, c)
            })
            .collect(),
    })
}

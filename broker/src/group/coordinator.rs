//! The group coordinator's shard side: finding a group's `__consumer_offsets` partition, running
//! each group request on the shard that owns it, writing records before state changes are
//! acknowledged, and the periodic deadline sweep.
//!
//! State lives in the partition's [`GroupStore`]; a request borrows it only between awaits.
//! A parked JoinGroup or SyncGroup holds a oneshot receiver, never the partition itself, so a
//! partition can close (or move) while requests wait, and they then get NOT_COORDINATOR.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;
use skein_storage::batch::ValidatedBatches;

use super::offsets::{encode_key, encode_value, partition_for, CommittedOffset, OFFSETS_TOPIC};
use super::state::{GroupState, JoinRequest, JoinResult, Reply, SyncResult, SyncStep};
use super::store::{group_record, subscribed_topics, Record};
use crate::admin::{self, AdminOp, NewTopic};
use crate::metadata::ClusterMetadata;
use crate::partition::Partition;
use crate::shard::ids::{ShardId, TopicPartition};
use crate::shard::Shard;

/// Creates `__consumer_offsets` on first use, as Kafka does.
pub async fn ensure_offsets_topic(shard: &Shard) -> Result<(), ResponseError> {
    if shard.metadata().topics.contains_key(OFFSETS_TOPIC) {
        return Ok(());
    }
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert(
        "segment.bytes".to_string(),
        shard.layout.broker.offsets_topic_segment_bytes.to_string(),
    );
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

/// The broker leading `group`'s `__consumer_offsets` partition (its coordinator).
pub async fn coordinator_of(shard: &Shard, group: &str) -> Result<i32, ResponseError> {
    let (md, p) = offsets_partition_of(shard, group).await?;
    match md.partition(OFFSETS_TOPIC, p) {
        Some(p) if !p.is_offline() => Ok(p.leader),
        _ => Err(ResponseError::CoordinatorNotAvailable),
    }
}

/// The `__consumer_offsets` partition of `group` and the shard that owns it, where this node
/// leads it.
pub async fn locate(
    shard: &Shard,
    group: &str,
) -> Result<(TopicPartition, ShardId), ResponseError> {
    let (md, p) = offsets_partition_of(shard, group).await?;
    // Coordinated by the leader of the group's partition: elsewhere the client is told to
    // look again (FindCoordinator names that leader).
    let owner = md
        .owner(OFFSETS_TOPIC, p)
        .map_err(|_| ResponseError::NotCoordinator)?;
    Ok((TopicPartition::new(OFFSETS_TOPIC, p), owner.shard))
}

/// `group`'s partition of `__consumer_offsets` (created first if needed), with the metadata
/// it was read from.
async fn offsets_partition_of(
    shard: &Shard,
    group: &str,
) -> Result<(Arc<ClusterMetadata>, i32), ResponseError> {
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
    Ok((md, p))
}

/// Runs `f` on the shard coordinating `group`, with its partition, once it is loaded.
pub async fn on_coordinator<T, F, Fut>(
    shard: &Rc<Shard>,
    group: &str,
    f: F,
) -> Result<T, ResponseError>
where
    F: FnOnce(Rc<Partition>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, ResponseError>> + 'static,
    T: Send + 'static,
{
    if group.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    let (tp, owner) = locate(shard, group).await?;
    shard
        .invoke_on(owner, move |shard| async move {
            let p = shard
                .partition(&tp)
                .filter(|p| p.is_leader())
                .ok_or(ResponseError::NotCoordinator)?;
            if p.groups.borrow().loading {
                return Err(ResponseError::CoordinatorLoadInProgress);
            }
            f(p).await
        })
        .await
        .unwrap_or(Err(ResponseError::NotCoordinator))
}

/// Appends coordinator records as one batch; the caller changes state only once it is durable.
pub async fn write_records(p: &Partition, records: Vec<Record>) -> Result<(), ResponseError> {
    if records.is_empty() {
        return Ok(());
    }
    let now = crate::clock::now_ms();
    let mut batch = skein_net::RecordBatchBuilder::new(now);
    for (key, value) in &records {
        batch.push(now, Some(key), value.as_deref(), &[]);
    }
    let built = batch.build();
    if built.len() > p.config().max_message_bytes {
        // Kafka's answer when a group's record exceeds the offsets topic's message size.
        tracing::warn!(partition = %p.tp, bytes = built.len(), "coordinator record too large");
        return Err(ResponseError::UnknownServerError);
    }
    let validated = ValidatedBatches::validate(built).map_err(|e| {
        tracing::error!(partition = %p.tp, error = %e, "built an invalid coordinator batch");
        ResponseError::UnknownServerError
    })?;
    p.append(validated).await.map(|_| ()).map_err(|e| {
        tracing::warn!(partition = %p.tp, error = ?e, "writing coordinator records failed");
        match e {
            ResponseError::KafkaStorageError => ResponseError::NotCoordinator,
            _ => ResponseError::CoordinatorNotAvailable,
        }
    })
}

/// Waits for a parked request's answer; a dropped sender means the partition went away.
async fn answer<T>(rx: oneshot::Receiver<T>, gone: T) -> T {
    rx.await.unwrap_or(gone)
}

pub async fn join(p: Rc<Partition>, group: String, req: JoinRequest) -> JoinResult {
    let member_id = req.member_id.clone();
    let reply = {
        let mut store = p.groups.borrow_mut();
        let exists = store.groups.contains_key(&group);
        if !exists && !member_id.is_empty() {
            return JoinResult::error(&member_id, ResponseError::UnknownMemberId);
        }
        store.group_or_create(&group).join(req, Instant::now())
    };
    flush_empty_groups(&p).await;
    match reply {
        Reply::Now(r) => r,
        Reply::Later(rx) => {
            drop(p);
            answer(
                rx,
                JoinResult::error(&member_id, ResponseError::NotCoordinator),
            )
            .await
        }
    }
}

pub struct SyncArgs {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: HashMap<String, Bytes>,
}

pub async fn sync(p: Rc<Partition>, group: String, a: SyncArgs) -> SyncResult {
    let step = {
        let mut store = p.groups.borrow_mut();
        let Some(g) = store.groups.get_mut(&group) else {
            return SyncResult::error(ResponseError::UnknownMemberId);
        };
        g.sync(
            &a.member_id,
            a.instance_id.as_deref(),
            a.generation,
            a.protocol_type.as_deref(),
            a.protocol_name.as_deref(),
            a.assignments,
            Instant::now(),
        )
    };
    let gone = SyncResult::error(ResponseError::NotCoordinator);
    match step {
        SyncStep::Reply(Reply::Now(r)) => r,
        SyncStep::Reply(Reply::Later(rx)) => {
            drop(p);
            answer(rx, gone).await
        }
        SyncStep::Persist {
            generation,
            assignments,
            record,
            reply,
        } => {
            let written = write_records(&p, vec![group_record(&group, &record)]).await;
            if let Some(g) = p.groups.borrow_mut().groups.get_mut(&group) {
                g.complete_leader_sync(generation, assignments, written, Instant::now());
            }
            drop(p);
            answer(reply, gone).await
        }
    }
}

pub async fn heartbeat(
    p: Rc<Partition>,
    group: String,
    member_id: String,
    instance_id: Option<String>,
    generation: i32,
) -> Result<(), ResponseError> {
    let mut store = p.groups.borrow_mut();
    let g = store
        .groups
        .get_mut(&group)
        .ok_or(ResponseError::UnknownMemberId)?;
    g.heartbeat(
        &member_id,
        instance_id.as_deref(),
        generation,
        Instant::now(),
    )
}

/// LeaveGroup: each member's outcome, in request order.
pub async fn leave(
    p: Rc<Partition>,
    group: String,
    members: Vec<(String, Option<String>)>,
) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
    let outcomes = {
        let mut store = p.groups.borrow_mut();
        let Some(g) = store.groups.get_mut(&group) else {
            return Ok(members
                .iter()
                .map(|_| Err(ResponseError::UnknownMemberId))
                .collect());
        };
        if g.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let now = Instant::now();
        members
            .iter()
            .map(|(m, i)| g.leave(m, i.as_deref(), now))
            .collect()
    };
    flush_empty_groups(&p).await;
    Ok(outcomes)
}

/// Writes the record of every group that became Empty, so a restart does not bring back a
/// generation whose members are gone.
async fn flush_empty_groups(p: &Partition) {
    let records = p.groups.borrow_mut().take_emptied_records();
    if let Err(e) = write_records(p, records).await {
        tracing::warn!(partition = %p.tp, error = ?e, "writing an emptied group failed");
    }
}

/// The deadline sweep of every coordinator partition on this shard.
pub fn tick(partitions: Vec<Rc<Partition>>) {
    let now = Instant::now();
    for p in partitions {
        let records = {
            let mut store = p.groups.borrow_mut();
            if store.loading || store.groups.is_empty() {
                continue;
            }
            store.tick(now)
        };
        if !records.is_empty() {
            glommio::spawn_local(async move {
                if let Err(e) = write_records(&p, records).await {
                    tracing::warn!(partition = %p.tp, error = ?e, "writing expired groups failed");
                }
            })
            .detach();
        }
    }
}

#[derive(Clone, Debug)]
pub struct MemberSummary {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug)]
pub struct GroupSummary {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberSummary>,
}

/// DescribeGroups: an unknown group is reported Dead with no error, as Kafka does. Metadata and
/// assignments are shown only for a Stable group.
pub async fn describe(p: Rc<Partition>, group: String) -> Result<GroupSummary, ResponseError> {
    let store = p.groups.borrow();
    let Some(g) = store.groups.get(&group) else {
        return Ok(GroupSummary {
            state: GroupState::Dead.name(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        });
    };
    let stable = g.state == GroupState::Stable;
    let protocol = if stable {
        g.protocol_name.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let members = g
        .members()
        .map(|m| MemberSummary {
            member_id: m.id.clone(),
            instance_id: m.instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            metadata: if stable {
                m.metadata_for(&protocol)
            } else {
                Bytes::new()
            },
            assignment: if stable {
                m.assignment.clone()
            } else {
                Bytes::new()
            },
        })
        .collect();
    Ok(GroupSummary {
        state: g.state.name(),
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol,
        members,
    })
}

/// ListGroups' view of one group: (id, protocol type, state).
pub type ListedGroup = (String, String, &'static str);

/// Every group coordinated by the partitions of this shard.
pub fn list_local(shard: &Shard) -> Vec<ListedGroup> {
    let mut out = Vec::new();
    for p in shard.coordinator_partitions() {
        let store = p.groups.borrow();
        if store.loading {
            continue;
        }
        for g in store.groups.values() {
            out.push((
                g.id.clone(),
                g.protocol_type.clone().unwrap_or_default(),
                g.state.name(),
            ));
        }
    }
    out
}

/// DeleteGroups for one group: only an Empty group can go; its offsets go with it.
pub async fn delete(p: Rc<Partition>, group: String) -> Result<(), ResponseError> {
    let tombstones = {
        let store = p.groups.borrow();
        let g = store
            .groups
            .get(&group)
            .ok_or(ResponseError::GroupIdNotFound)?;
        match g.state {
            GroupState::Empty => {}
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            _ => return Err(ResponseError::NonEmptyGroup),
        }
        store.tombstones_for_group(&group)
    };
    write_records(&p, tombstones).await?;
    p.groups.borrow_mut().forget_group(&group);
    Ok(())
}

/// OffsetDelete: per partition, deleted or GROUP_SUBSCRIBED_TO_TOPIC while a live consumer
/// group subscribes to its topic.
pub async fn delete_offsets(
    p: Rc<Partition>,
    group: String,
    partitions: Vec<(String, i32)>,
) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
    let (outcomes, tombstones) = {
        let store = p.groups.borrow();
        let g = store
            .groups
            .get(&group)
            .ok_or(ResponseError::GroupIdNotFound)?;
        if g.state == GroupState::Dead {
            return Err(ResponseError::GroupIdNotFound);
        }
        let is_consumer = g.protocol_type.as_deref() == Some("consumer");
        if !is_consumer && g.state != GroupState::Empty {
            return Err(ResponseError::NonEmptyGroup);
        }
        let subscribed: Vec<String> = if is_consumer && g.state != GroupState::Empty {
            let protocol = g.protocol_name.clone().unwrap_or_default();
            g.members()
                .filter_map(|m| subscribed_topics(&m.metadata_for(&protocol)))
                .flatten()
                .collect()
        } else {
            Vec::new()
        };
        let mut tombstones = Vec::new();
        let outcomes: Vec<Result<(), ResponseError>> = partitions
            .iter()
            .map(|(t, part)| {
                if subscribed.contains(t) {
                    return Err(ResponseError::GroupSubscribedToTopic);
                }
                if store.offsets.get(&group, t, *part).is_some() {
                    tombstones.push((encode_key(&group, t, *part), None));
                }
                Ok(())
            })
            .collect();
        (outcomes, tombstones)
    };
    write_records(&p, tombstones.clone()).await?;
    let mut store = p.groups.borrow_mut();
    for (t, part) in partitions
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| o.is_ok())
        .map(|(tp, _)| tp)
    {
        store.offsets.remove(&group, t, *part);
    }
    Ok(outcomes)
}

/// One offset to commit.
#[derive(Clone, Debug)]
pub struct CommitItem {
    pub topic: String,
    pub partition: i32,
    pub committed: CommittedOffset,
}

/// Who commits: a group member of a generation, or a simple (generation -1) committer.
#[derive(Clone, Debug)]
pub struct Committer {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
}

/// Checks a commit against the group as Kafka's `doCommitOffsets` does, then writes the offsets
/// as one batch and applies them once durable. A member's commit counts as its heartbeat.
pub async fn commit(
    p: Rc<Partition>,
    group: String,
    who: Committer,
    items: Vec<CommitItem>,
) -> Result<(), ResponseError> {
    {
        let mut store = p.groups.borrow_mut();
        match store.groups.get_mut(&group) {
            None if who.generation >= 0 => return Err(ResponseError::IllegalGeneration),
            None => {}
            Some(g) => {
                if g.state == GroupState::Dead {
                    return Err(ResponseError::CoordinatorNotAvailable);
                }
                if g.is_fenced(who.instance_id.as_deref(), &who.member_id) {
                    return Err(ResponseError::FencedInstanceId);
                }
                let simple = who.generation < 0 && g.state == GroupState::Empty;
                if !simple {
                    if !g.has_member(&who.member_id) {
                        return Err(ResponseError::UnknownMemberId);
                    }
                    if who.generation != g.generation {
                        return Err(ResponseError::IllegalGeneration);
                    }
                    if g.state == GroupState::CompletingRebalance {
                        return Err(ResponseError::RebalanceInProgress);
                    }
                    // Kafka counts a member's commit as a heartbeat; the result is the same
                    // checks over again and cannot fail here.
                    let _ = g.heartbeat(
                        &who.member_id,
                        who.instance_id.as_deref(),
                        who.generation,
                        Instant::now(),
                    );
                }
            }
        }
    }
    if items.is_empty() {
        return Ok(());
    }
    let now = crate::clock::now_ms();
    let records = items
        .iter()
        .map(|i| {
            (
                encode_key(&group, &i.topic, i.partition),
                Some(encode_value(&i.committed, now)),
            )
        })
        .collect();
    write_records(&p, records).await?;
    let mut store = p.groups.borrow_mut();
    store.group_or_create(&group);
    for item in items {
        store
            .offsets
            .put(&group, &item.topic, item.partition, item.committed);
    }
    Ok(())
}

/// The committed offsets asked for (`None` = all of the group's).
pub async fn fetch(
    p: Rc<Partition>,
    group: String,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Vec<(String, i32, Option<CommittedOffset>)>, ResponseError> {
    let store = p.groups.borrow();
    let offsets = &store.offsets;
    Ok(match wanted {
        None => offsets
            .of_group(&group)
            .into_iter()
            .map(|(t, p, c)| (t, p, Some(c)))
            .collect(),
        Some(topics) => topics
            .into_iter()
            .flat_map(|(t, parts)| parts.into_iter().map(move |p| (t.clone(), p)))
            .map(|(t, p)| {
                let c = offsets.get(&group, &t, p).cloned();
                (t, p, c)
            })
            .collect(),
    })
}

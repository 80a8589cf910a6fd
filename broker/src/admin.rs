//! Topic administration (create, delete, add partitions, alter configs). Requests are checked
//! here against the broker's rules (names, configs, defaults), then forwarded from the
//! controller shard to the active controller, which decides and commits; the answer is given
//! once this node's metadata shows the change, so a client's next request sees it. On-demand
//! leader elections (ElectLeaders) take the same road.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;
use skein_net::internal::{InternalMessage, NewTopicSpec, PartitionResult};

use crate::metadata::{validate_topic_name, ClusterMetadata, PartitionMeta};
use crate::settings::validate_topic_config;
use crate::shard::mesh::ControlCall;
use crate::shard::Shard;

/// How long an admin request waits for the active controller.
const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answered admin request waits for this node's metadata to show the change.
const VISIBLE_WAIT: Duration = Duration::from_secs(5);
/// The same for a reassignment, which may change nothing visible (a target equal to the
/// current replicas): a short wait.
const CHANGE_VISIBLE_WAIT: Duration = Duration::from_millis(500);

/// A topic to create; -1 means "the broker default" as in CreateTopics.
#[derive(Clone, Debug)]
pub struct NewTopic {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// Manual replica assignments were given.
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

fn op_names(op: &AdminOp) -> Vec<String> {
    match op {
        AdminOp::CreateTopics { topics, .. } => topics.iter().map(|t| t.name.clone()).collect(),
        AdminOp::DeleteTopics { names } => names.clone(),
        AdminOp::CreatePartitions { topics, .. } => topics.iter().map(|t| t.0.clone()).collect(),
        AdminOp::AlterTopicConfig { topic, .. } => vec![topic.clone()],
    }
}

/// Sends `op` to the controller shard (or runs it here if this is it) and waits for the outcome.
pub async fn submit(shard: &Shard, op: AdminOp) -> AdminReply {
    if shard.control.is_some() {
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
            "controller shard unreachable",
        );
    }
    match rx.await {
        Ok(r) => r,
        Err(_) => AdminReply::all_failed(
            names,
            ResponseError::NotController,
            "controller shard dropped the request",
        ),
    }
}

/// Runs an admin op on the controller shard: local checks, then the active controller.
pub async fn execute(shard: &Shard, op: AdminOp) -> AdminReply {
    let names = op_names(&op);
    let Some(plane) = &shard.control else {
        return AdminReply::all_failed(
            names,
            ResponseError::NotController,
            "not the controller shard",
        );
    };
    let Ok(_permit) = plane.admin_lock.acquire_permit(1).await else {
        return AdminReply::all_failed(names, ResponseError::NotController, "node is stopping");
    };
    let md = shard.metadata();
    let settings = &shard.layout.broker;
    // Items refused here keep their slot; the rest go to the controller in one request.
    let mut results: Vec<(String, Option<ItemResult>)> =
        names.iter().map(|n| (n.clone(), None)).collect();
    let request = match op {
        AdminOp::CreateTopics {
            topics,
            validate_only,
        } => {
            let live = i16::try_from(md.brokers.len()).unwrap_or(i16::MAX);
            let mut specs = Vec::new();
            for (i, t) in topics.into_iter().enumerate() {
                match check_new_topic(settings, &md, &t, live) {
                    Ok(spec) => specs.push(spec),
                    Err(e) => results[i].1 = Some(Err(e)),
                }
            }
            InternalMessage::CreateTopics {
                topics: specs,
                validate_only,
            }
        }
        AdminOp::DeleteTopics { names } => {
            if !settings.delete_topic_enable {
                return AdminReply {
                    results: names
                        .into_iter()
                        .map(|n| (n, Err((ResponseError::TopicDeletionDisabled, None))))
                        .collect(),
                };
            }
            InternalMessage::DeleteTopics { names }
        }
        AdminOp::CreatePartitions {
            topics,
            validate_only,
        } => {
            let mut keep = Vec::new();
            for (i, (name, total)) in topics.into_iter().enumerate() {
                if i64::from(total) > crate::limits::PARTITIONS_PER_TOPIC_MAX {
                    results[i].1 = Some(invalid(
                        ResponseError::InvalidPartitions,
                        "too many partitions",
                    ));
                } else {
                    keep.push((name, total));
                }
            }
            InternalMessage::CreatePartitions {
                topics: keep,
                validate_only,
            }
        }
        AdminOp::AlterTopicConfig {
            topic,
            changes,
            replace_all,
            validate_only,
        } => match merged_config(settings, &md, &topic, changes, replace_all) {
            Ok(configs) => InternalMessage::AlterTopicConfig {
                topic,
                configs: configs.into_iter().collect(),
                validate_only,
            },
            Err(e) => {
                return AdminReply {
                    results: vec![(topic, Err(e))],
                }
            }
        },
    };
    let expected = match &request {
        InternalMessage::CreateTopics { topics, .. } => topics.len(),
        InternalMessage::DeleteTopics { names } => names.len(),
        InternalMessage::CreatePartitions { topics, .. } => topics.len(),
        _ => 1,
    };
    let validate_only = matches!(
        &request,
        InternalMessage::CreateTopics {
            validate_only: true,
            ..
        } | InternalMessage::CreatePartitions {
            validate_only: true,
            ..
        } | InternalMessage::AlterTopicConfig {
            validate_only: true,
            ..
        }
    );
    let answers = if expected == 0 {
        Vec::new()
    } else {
        let node_id = shard.layout.node_id.0;
        match plane
            .link
            .call(node_id, request.clone(), CONTROLLER_TIMEOUT)
            .await
        {
            Ok(InternalMessage::AdminResponse { results }) if results.len() == expected => results
                .into_iter()
                .map(|r| {
                    let outcome = if r.error_code == 0 {
                        Ok(())
                    } else {
                        let e = ResponseError::try_from_code(r.error_code)
                            .unwrap_or(ResponseError::UnknownServerError);
                        Err((e, r.error_message))
                    };
                    (r.name, outcome)
                })
                .collect(),
            Ok(other) => {
                tracing::error!(answer = ?other, "the controller answered an admin request oddly");
                let names = results
                    .iter()
                    .filter(|r| r.1.is_none())
                    .map(|r| r.0.clone());
                names
                    .map(|n| {
                        (
                            n,
                            invalid(ResponseError::UnknownServerError, "bad controller answer"),
                        )
                    })
                    .collect()
            }
            Err(e) => {
                let names = results
                    .iter()
                    .filter(|r| r.1.is_none())
                    .map(|r| r.0.clone());
                names
                    .map(|n| (n, invalid(ResponseError::RequestTimedOut, e.to_string())))
                    .collect()
            }
        }
    };
    let mut answers = answers.into_iter();
    for slot in results.iter_mut().filter(|r| r.1.is_none()) {
        slot.1 = Some(match answers.next() {
            Some((_, outcome)) => outcome,
            None => invalid(ResponseError::UnknownServerError, "no answer"),
        });
    }
    if !validate_only {
        let done: Vec<&String> = results
            .iter()
            .filter(|r| matches!(r.1, Some(Ok(()))))
            .map(|r| &r.0)
            .collect();
        if !done.is_empty() {
            wait_visible(shard, &request, &done).await;
        }
    }
    AdminReply {
        results: results
            .into_iter()
            .map(|(n, r)| (n, r.unwrap_or(Ok(()))))
            .collect(),
    }
}

/// An on-demand leader election (Kafka's ElectLeaders).
#[derive(Clone, Debug)]
pub struct Election {
    /// Kafka's ElectionType: 0 preferred, 1 unclean.
    pub election_type: i8,
    /// `(topic, partition)` pairs; `None` for every partition.
    pub partitions: Option<Vec<(String, i32)>>,
    pub timeout: Duration,
}

/// One result per partition as the controller gave them, or a top-level error.
pub type PartitionsReply = Result<Vec<PartitionResult>, (ResponseError, String)>;

/// The longest a forwarded request (an election, a reassignment) waits for the controller,
/// whatever its `timeout_ms`.
const FORWARD_TIMEOUT_MAX: Duration = Duration::from_secs(30);

/// A request's `timeout_ms` as the wait for the controller: at most [`FORWARD_TIMEOUT_MAX`],
/// which is also what zero or a negative value gets.
pub fn forward_timeout(timeout_ms: i32) -> Duration {
    u64::try_from(timeout_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map_or(FORWARD_TIMEOUT_MAX, |ms| {
            Duration::from_millis(ms).min(FORWARD_TIMEOUT_MAX)
        })
}

/// The active controller's answer to a forwarded request, or why there is none.
pub type ForwardReply = Result<InternalMessage, (ResponseError, String)>;

/// Sends `request` to the active controller through the controller shard (or from here if
/// this is it).
pub async fn forward(shard: &Shard, request: InternalMessage, timeout: Duration) -> ForwardReply {
    if shard.control.is_some() {
        return execute_forward(shard, request, timeout).await;
    }
    let (reply, rx) = oneshot::channel();
    let target = shard.layout.controller_shard;
    let call = ControlCall::Forward {
        request,
        timeout,
        reply,
    };
    if shard.mesh.send_control(target, call).await.is_err() {
        return Err((
            ResponseError::NotController,
            "controller shard unreachable".into(),
        ));
    }
    rx.await.unwrap_or_else(|_| {
        Err((
            ResponseError::NotController,
            "controller shard dropped the request".into(),
        ))
    })
}

/// Runs [`forward`] on the controller shard.
pub async fn execute_forward(
    shard: &Shard,
    request: InternalMessage,
    timeout: Duration,
) -> ForwardReply {
    let Some(plane) = &shard.control else {
        return Err((
            ResponseError::NotController,
            "not the controller shard".into(),
        ));
    };
    let node_id = shard.layout.node_id.0;
    plane
        .link
        .call(node_id, request, timeout)
        .await
        .map_err(|e| (ResponseError::RequestTimedOut, e.to_string()))
}

/// The top-level error of a forwarded request's answer.
fn refused(error_code: i16, what: &str) -> (ResponseError, String) {
    (
        ResponseError::try_from_code(error_code).unwrap_or(ResponseError::UnknownServerError),
        format!("the controller refused the {what}"),
    )
}

/// One outcome per item of a change the controller answers with an AdminResponse: Kafka's
/// error code (0: done) and message.
pub type ItemOutcomes = Vec<(i16, Option<String>)>;

/// Forwards a change answered with an AdminResponse of `expected` results (ACLs, client
/// quotas); one outcome per item, or the error of the whole change.
pub async fn forward_items(
    shard: &Shard,
    request: InternalMessage,
    expected: usize,
    what: &str,
) -> Result<ItemOutcomes, (ResponseError, String)> {
    match forward(shard, request, CONTROLLER_TIMEOUT).await? {
        InternalMessage::AdminResponse { results } if results.len() == expected => Ok(results
            .into_iter()
            .map(|r| (r.error_code, r.error_message))
            .collect()),
        other => Err(odd_answer(&other, what)),
    }
}

/// Waits (up to [`VISIBLE_WAIT`]) until this node's metadata shows a committed change, as
/// `visible` judges it; says so at warn level when it runs out.
pub async fn wait_until_visible(
    shard: &Shard,
    what: &str,
    visible: impl Fn(&ClusterMetadata) -> bool,
) {
    let start = Instant::now();
    while start.elapsed() < VISIBLE_WAIT {
        if visible(&shard.metadata()) {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    tracing::warn!("{what} committed but not yet visible here");
}

fn odd_answer(answer: &InternalMessage, what: &str) -> (ResponseError, String) {
    tracing::error!(?answer, "the controller answered {what} oddly");
    (
        ResponseError::UnknownServerError,
        "bad controller answer".into(),
    )
}

/// An on-demand election: the active controller decides and commits, and the answer waits
/// until this node's metadata shows the new leaders.
pub async fn elect_leaders(shard: &Shard, election: Election) -> PartitionsReply {
    let before = shard.metadata();
    let request = InternalMessage::ElectLeaders {
        election_type: election.election_type,
        partitions: election.partitions,
    };
    match forward(shard, request, election.timeout).await? {
        InternalMessage::ElectLeadersResponse {
            error_code: 0,
            results,
        } => {
            wait_epochs(
                shard,
                &before,
                &results,
                |p| p.leader_epoch,
                VISIBLE_WAIT,
                Some("leader election"),
            )
            .await;
            Ok(results)
        }
        InternalMessage::ElectLeadersResponse { error_code, .. } => {
            Err(refused(error_code, "election"))
        }
        other => Err(odd_answer(&other, "an election")),
    }
}

/// Starts or cancels partition reassignments (`None` as the target cancels); the answer waits
/// until this node's metadata shows each accepted change.
pub async fn alter_reassignments(
    shard: &Shard,
    partitions: Vec<(String, i32, Option<Vec<i32>>)>,
    timeout: Duration,
) -> PartitionsReply {
    let before = shard.metadata();
    let request = InternalMessage::AlterReassignments { partitions };
    match forward(shard, request, timeout).await? {
        InternalMessage::AlterReassignmentsResponse {
            error_code: 0,
            results,
        } => {
            wait_epochs(
                shard,
                &before,
                &results,
                |p| p.partition_epoch,
                CHANGE_VISIBLE_WAIT,
                None,
            )
            .await;
            Ok(results)
        }
        InternalMessage::AlterReassignmentsResponse { error_code, .. } => {
            Err(refused(error_code, "reassignment"))
        }
        other => Err(odd_answer(&other, "a reassignment")),
    }
}

/// Waits (up to `bound`) until this node's metadata shows `epoch` grown, over what `before`
/// showed, for every partition the controller answered NONE for. `late` names what is said at
/// warn level when the wait runs out (`None`: running out is expected, e.g. a reassignment that
/// changed nothing).
async fn wait_epochs(
    shard: &Shard,
    before: &ClusterMetadata,
    results: &[PartitionResult],
    epoch: fn(&PartitionMeta) -> i32,
    bound: Duration,
    late: Option<&str>,
) {
    let of =
        |md: &ClusterMetadata, r: &PartitionResult| md.partition(&r.topic, r.partition).map(epoch);
    let start = Instant::now();
    while start.elapsed() < bound {
        let md = shard.metadata();
        let visible = results
            .iter()
            .filter(|r| r.error_code == 0)
            .all(|r| of(&md, r) > of(before, r));
        if visible {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    if let Some(what) = late {
        tracing::warn!("{what} committed but not yet visible here");
    }
}

/// Waits until this node's metadata shows what the controller committed for `done`.
async fn wait_visible(shard: &Shard, request: &InternalMessage, done: &[&String]) {
    let start = Instant::now();
    while start.elapsed() < VISIBLE_WAIT {
        let md = shard.metadata();
        let visible = done.iter().all(|name| {
            let t = md.topics.get(name.as_str());
            match request {
                InternalMessage::CreateTopics { .. } => {
                    t.is_some_and(|t| t.partitions.iter().all(|p| !p.is_offline()))
                }
                InternalMessage::DeleteTopics { .. } => t.is_none(),
                InternalMessage::CreatePartitions { topics, .. } => {
                    let want = topics.iter().find(|(n, _)| n == *name).map_or(0, |x| x.1);
                    t.is_some_and(|t| t.partitions.len() >= usize::try_from(want).unwrap_or(0))
                }
                InternalMessage::AlterTopicConfig { configs, .. } => t.is_some_and(|t| {
                    t.configs.len() == configs.len()
                        && configs.iter().all(|(k, v)| t.configs.get(k) == Some(v))
                }),
                _ => true,
            }
        });
        if visible {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    tracing::warn!(topics = ?done, "admin change committed but not yet visible here");
}

fn invalid(e: ResponseError, m: impl Into<String>) -> ItemResult {
    Err((e, Some(m.into())))
}

/// The broker's checks of a new topic, with -1 resolved to the broker defaults.
fn check_new_topic(
    settings: &crate::settings::BrokerSettings,
    md: &ClusterMetadata,
    t: &NewTopic,
    live_brokers: i16,
) -> Result<NewTopicSpec, (ResponseError, Option<String>)> {
    let fail = |e: ResponseError, m: String| Err((e, Some(m)));
    if let Err(m) = validate_topic_name(&t.name) {
        return fail(ResponseError::InvalidTopicException, m);
    }
    if md.topics.contains_key(&t.name) {
        return fail(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", t.name),
        );
    }
    if t.has_assignments {
        return fail(
            ResponseError::InvalidReplicaAssignment,
            "manual replica assignment is not supported yet".to_string(),
        );
    }
    let partitions = if t.num_partitions == -1 {
        settings.num_partitions
    } else {
        t.num_partitions
    };
    if partitions <= 0 || i64::from(partitions) > crate::limits::PARTITIONS_PER_TOPIC_MAX {
        return fail(
            ResponseError::InvalidPartitions,
            format!("invalid partition count {partitions}"),
        );
    }
    let mut rf = if t.replication_factor == -1 {
        settings.default_replication_factor
    } else {
        t.replication_factor
    };
    if t.name == crate::group::offsets::OFFSETS_TOPIC && t.replication_factor == -1 {
        rf = settings
            .offsets_topic_replication_factor
            .min(live_brokers.max(1));
    }
    if rf <= 0 || rf > live_brokers.max(1) {
        return fail(
            ResponseError::InvalidReplicationFactor,
            format!("Replication factor: {rf} larger than available brokers: {live_brokers}."),
        );
    }
    for (k, v) in &t.configs {
        if let Err(m) = validate_topic_config(k, v) {
            return fail(ResponseError::InvalidConfig, m);
        }
    }
    Ok(NewTopicSpec {
        name: t.name.clone(),
        num_partitions: partitions,
        replication_factor: rf,
        configs: t
            .configs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        assignments: Vec::new(),
    })
}

/// A topic's override set after `changes` (IncrementalAlterConfigs) or `replace_all`.
fn merged_config(
    settings: &crate::settings::BrokerSettings,
    md: &ClusterMetadata,
    name: &str,
    changes: Vec<ConfigChange>,
    replace_all: bool,
) -> Result<BTreeMap<String, String>, (ResponseError, Option<String>)> {
    let Some(topic) = md.topics.get(name) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            Some(format!("topic {name} does not exist")),
        ));
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
            return Err((ResponseError::InvalidConfig, Some(m)));
        }
    }
    Ok(configs)
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

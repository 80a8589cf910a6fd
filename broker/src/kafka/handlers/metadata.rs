//! Metadata: brokers, controller and topic/partition leadership from this shard's snapshot;
//! creates missing topics when the client and the broker both allow it.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use skein_controller::acl::{AclOperation, ResourceType};

use crate::admin::{self, AdminOp, NewTopic};
use crate::kafka::dispatch::RequestCtx;
use crate::metadata::{validate_topic_name, ClusterMetadata, TopicMeta};

/// Kafka's "authorized operations not requested" marker.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
/// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS: with no
/// authorizer every operation on a topic is allowed.
const TOPIC_OPERATIONS_ALL: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

enum Wanted {
    Name(String),
    Id(Uuid),
}

pub async fn handle(ctx: &RequestCtx, req: MetadataRequest) -> MetadataResponse {
    let version = ctx.version();
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let wanted: Option<Vec<Wanted>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .map(|t| match t.name {
                    Some(n) => Wanted::Name(n.0.to_string()),
                    None => Wanted::Id(t.topic_id),
                })
                .collect(),
        ),
    };
    let allow_auto_create = version < 4 || req.allow_auto_topic_creation;
    let settings = &ctx.shard.layout.broker;
    if let (Some(wanted), true) = (
        &wanted,
        allow_auto_create && settings.auto_create_topics_enable,
    ) {
        let md = ctx.shard.metadata();
        let missing: Vec<NewTopic> = wanted
            .iter()
            .filter_map(|w| match w {
                Wanted::Name(n)
                    if !md.topics.contains_key(n)
                        && validate_topic_name(n).is_ok()
                        && may_create(ctx, n) =>
                {
                    Some(NewTopic {
                        name: n.clone(),
                        num_partitions: -1,
                        replication_factor: -1,
                        configs: BTreeMap::new(),
                        has_assignments: false,
                    })
                }
                _ => None,
            })
            .collect();
        if !missing.is_empty() {
            let reply = admin::submit(
                &ctx.shard,
                AdminOp::CreateTopics {
                    topics: missing,
                    validate_only: false,
                },
            )
            .await;
            for (name, r) in reply.results {
                if let Err((e, m)) = r {
                    if e != ResponseError::TopicAlreadyExists {
                        tracing::warn!(topic = %name, error = ?e, message = ?m, "auto-create failed");
                    }
                }
            }
        }
    }

    let md = ctx.shard.metadata();
    let mut resp = MetadataResponse::default();
    resp.brokers = md
        .brokers
        .iter()
        .map(|b| {
            let mut mb = MetadataResponseBroker::default();
            mb.node_id = BrokerId(b.node_id.0);
            mb.host = StrBytes::from_string(b.host.clone());
            mb.port = i32::from(b.port);
            if version >= 1 {
                mb.rack = b.rack.clone().map(StrBytes::from_string);
            }
            mb
        })
        .collect();
    if version >= 2 {
        resp.cluster_id = Some(StrBytes::from_string(md.cluster_id.clone()));
    }
    if version >= 1 {
        resp.controller_id = BrokerId(md.controller_id);
    }
    if (8..=10).contains(&version) {
        resp.cluster_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    }
    let include_ops = version >= 8 && req.include_topic_authorized_operations;
    let entry = |t: &TopicMeta| {
        let mut e = topic_entry(&md, t, version, include_ops);
        if include_ops && ctx.authorizer_enabled() {
            e.topic_authorized_operations = topic_operations(ctx, &t.name);
        }
        e
    };
    resp.topics = match wanted {
        None => md
            .topics
            .values()
            .filter(|t| !t.internal || version >= 1)
            // Kafka: a topic the client may not describe is left out of "all topics".
            .filter(|t| ctx.authorized(AclOperation::Describe, ResourceType::Topic, &t.name))
            .map(entry)
            .collect(),
        Some(wanted) => wanted
            .into_iter()
            .map(|w| {
                let found = match &w {
                    Wanted::Name(n) => md.topics.get(n),
                    Wanted::Id(id) => md.topic_by_id(id),
                };
                let name = match &w {
                    Wanted::Name(n) => Some(n.as_str()),
                    Wanted::Id(_) => found.map(|t| t.name.as_str()),
                };
                if name.is_some_and(|n| {
                    !ctx.authorized(AclOperation::Describe, ResourceType::Topic, n)
                }) {
                    let (name, id) = match w {
                        Wanted::Name(n) => (Some(n), Uuid::nil()),
                        Wanted::Id(id) => (None, id),
                    };
                    let code = ResponseError::TopicAuthorizationFailed;
                    return error_entry(name, id, code, version);
                }
                match (found, w) {
                    (Some(t), _) => entry(t),
                    (None, Wanted::Name(n)) => {
                        let code = if validate_topic_name(&n).is_err() {
                            ResponseError::InvalidTopicException
                        } else {
                            ResponseError::UnknownTopicOrPartition
                        };
                        error_entry(Some(n), Uuid::nil(), code, version)
                    }
                    (None, Wanted::Id(id)) => {
                        error_entry(None, id, ResponseError::UnknownTopicId, version)
                    }
                }
            })
            .collect(),
    };
    resp
}

/// The bit set of TOPIC_OPERATIONS_ALL's operations the client may do on `name`.
fn topic_operations(ctx: &RequestCtx, name: &str) -> i32 {
    operation_bits(
        TOPIC_OPERATIONS
            .into_iter()
            .filter(|op| ctx.authorized(*op, ResourceType::Topic, name)),
    )
}

/// The operations TOPIC_OPERATIONS_ALL holds.
const TOPIC_OPERATIONS: [AclOperation; 8] = [
    AclOperation::Read,
    AclOperation::Write,
    AclOperation::Create,
    AclOperation::Delete,
    AclOperation::Alter,
    AclOperation::Describe,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
];

/// Kafka's authorized-operations bit set: bit n for the operation with code n.
fn operation_bits(ops: impl Iterator<Item = AclOperation>) -> i32 {
    ops.fold(0, |bits, op| bits | (1 << (op as i32)))
}

/// Kafka's rule for auto-creation: DESCRIBE on the topic, and CREATE on the cluster or topic.
fn may_create(ctx: &RequestCtx, name: &str) -> bool {
    ctx.authorized(AclOperation::Describe, ResourceType::Topic, name)
        && (ctx.cluster_authorized(AclOperation::Create)
            || ctx.authorized(AclOperation::Create, ResourceType::Topic, name))
}

fn error_entry(
    name: Option<String>,
    id: Uuid,
    code: ResponseError,
    version: i16,
) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.error_code = code.code();
    t.name = name.map(|n| TopicName(StrBytes::from_string(n)));
    if version >= 10 {
        t.topic_id = id;
    }
    if version >= 8 {
        t.topic_authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
    }
    t
}

fn topic_entry(
    md: &ClusterMetadata,
    topic: &TopicMeta,
    version: i16,
    include_ops: bool,
) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(topic.name.clone())));
    if version >= 10 {
        t.topic_id = topic.id;
    }
    if version >= 1 {
        t.is_internal = topic.internal;
    }
    if version >= 8 {
        t.topic_authorized_operations = if include_ops {
            TOPIC_OPERATIONS_ALL
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        };
    }
    t.partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = i32::try_from(i).unwrap_or(i32::MAX);
            mp.leader_id = BrokerId(p.leader);
            if p.is_offline() {
                mp.error_code = ResponseError::LeaderNotAvailable.code();
            }
            if version >= 7 {
                mp.leader_epoch = p.leader_epoch;
            }
            mp.replica_nodes = p.replicas.iter().map(|r| BrokerId(*r)).collect();
            mp.isr_nodes = p.isr.iter().map(|r| BrokerId(*r)).collect();
            if version >= 5 {
                // Replicas on brokers that are not live (fenced or gone).
                mp.offline_replicas = p
                    .replicas
                    .iter()
                    .filter(|r| md.broker(**r).is_none())
                    .map(|r| BrokerId(*r))
                    .collect();
            }
            mp
        })
        .collect();
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_operation_makes_the_all_operations_bits() {
        assert_eq!(
            operation_bits(TOPIC_OPERATIONS.into_iter()),
            TOPIC_OPERATIONS_ALL
        );
    }
}

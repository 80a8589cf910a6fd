//! [`InternalMessage`] into its flatbuffers table; the one place that builds union members.

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, UnionWIPOffset, Vector, WIPOffset};

use super::{fb, InternalMessage, NewTopicSpec, PartitionResult, TopicResult};

type Union = (fb::Message, WIPOffset<UnionWIPOffset>);

pub(super) fn message<'b>(b: &mut FlatBufferBuilder<'b>, message: &InternalMessage) -> Union {
    match message {
        InternalMessage::Raft(payload) => {
            let payload = Some(b.create_vector(payload));
            let t = fb::RaftMessage::create(b, &fb::RaftMessageArgs { payload });
            (fb::Message::RaftMessage, t.as_union_value())
        }
        InternalMessage::RegisterBroker {
            broker_id,
            incarnation,
            endpoints,
            rack,
        } => {
            let incarnation = b.create_vector(incarnation);
            let endpoints: Vec<_> = endpoints
                .iter()
                .map(|e| {
                    let listener = b.create_string(&e.listener);
                    let host = b.create_string(&e.host);
                    fb::Endpoint::create(
                        b,
                        &fb::EndpointArgs {
                            listener: Some(listener),
                            host: Some(host),
                            port: e.port,
                        },
                    )
                })
                .collect();
            let endpoints = b.create_vector(&endpoints);
            let rack = rack.as_deref().map(|r| b.create_string(r));
            let t = fb::RegisterBrokerRequest::create(
                b,
                &fb::RegisterBrokerRequestArgs {
                    broker_id: *broker_id,
                    incarnation: Some(incarnation),
                    endpoints: Some(endpoints),
                    rack,
                },
            );
            (fb::Message::RegisterBrokerRequest, t.as_union_value())
        }
        InternalMessage::RegisterBrokerResponse {
            error_code,
            broker_epoch,
        } => {
            let t = fb::RegisterBrokerResponse::create(
                b,
                &fb::RegisterBrokerResponseArgs {
                    error_code: *error_code,
                    broker_epoch: *broker_epoch,
                },
            );
            (fb::Message::RegisterBrokerResponse, t.as_union_value())
        }
        InternalMessage::Heartbeat {
            broker_id,
            broker_epoch,
            metadata_offset,
            want_fence,
            want_shutdown,
        } => {
            let t = fb::BrokerHeartbeatRequest::create(
                b,
                &fb::BrokerHeartbeatRequestArgs {
                    broker_id: *broker_id,
                    broker_epoch: *broker_epoch,
                    metadata_offset: *metadata_offset,
                    want_fence: *want_fence,
                    want_shutdown: *want_shutdown,
                },
            );
            (fb::Message::BrokerHeartbeatRequest, t.as_union_value())
        }
        InternalMessage::HeartbeatResponse {
            error_code,
            is_caught_up,
            is_fenced,
            should_shutdown,
        } => {
            let t = fb::BrokerHeartbeatResponse::create(
                b,
                &fb::BrokerHeartbeatResponseArgs {
                    error_code: *error_code,
                    is_caught_up: *is_caught_up,
                    is_fenced: *is_fenced,
                    should_shutdown: *should_shutdown,
                },
            );
            (fb::Message::BrokerHeartbeatResponse, t.as_union_value())
        }
        InternalMessage::FetchMetadata {
            broker_id,
            from_offset,
            max_wait_ms,
        } => {
            let t = fb::FetchMetadataRequest::create(
                b,
                &fb::FetchMetadataRequestArgs {
                    broker_id: *broker_id,
                    from_offset: *from_offset,
                    max_wait_ms: *max_wait_ms,
                },
            );
            (fb::Message::FetchMetadataRequest, t.as_union_value())
        }
        InternalMessage::FetchMetadataResponse {
            error_code,
            leader_id,
            offset,
            image,
        } => {
            let image = Some(b.create_vector(image));
            let t = fb::FetchMetadataResponse::create(
                b,
                &fb::FetchMetadataResponseArgs {
                    error_code: *error_code,
                    leader_id: *leader_id,
                    offset: *offset,
                    image,
                },
            );
            (fb::Message::FetchMetadataResponse, t.as_union_value())
        }
        InternalMessage::CreateTopics {
            topics,
            validate_only,
        } => create_topics(b, topics, *validate_only),
        InternalMessage::DeleteTopics { names } => {
            let names: Vec<_> = names.iter().map(|n| b.create_string(n)).collect();
            let names = Some(b.create_vector(&names));
            let t = fb::DeleteTopicsRequest::create(b, &fb::DeleteTopicsRequestArgs { names });
            (fb::Message::DeleteTopicsRequest, t.as_union_value())
        }
        InternalMessage::CreatePartitions {
            topics,
            validate_only,
        } => create_partitions(b, topics, *validate_only),
        InternalMessage::AlterTopicConfig {
            topic,
            configs,
            validate_only,
        } => {
            let topic = Some(b.create_string(topic));
            let configs = Some(config_entries(b, configs));
            let t = fb::AlterTopicConfigRequest::create(
                b,
                &fb::AlterTopicConfigRequestArgs {
                    topic,
                    configs,
                    validate_only: *validate_only,
                },
            );
            (fb::Message::AlterTopicConfigRequest, t.as_union_value())
        }
        InternalMessage::AdminResponse { results } => {
            let results: Vec<_> = results.iter().map(|r| topic_result(b, r)).collect();
            let results = Some(b.create_vector(&results));
            let t = fb::AdminResponse::create(b, &fb::AdminResponseArgs { results });
            (fb::Message::AdminResponse, t.as_union_value())
        }
        InternalMessage::AlterPartition {
            broker_id,
            broker_epoch,
            topic_id,
            partition,
            leader_epoch,
            partition_epoch,
            isr,
        } => {
            let topic_id = Some(b.create_vector(topic_id));
            let isr = Some(b.create_vector(isr));
            let t = fb::AlterPartitionRequest::create(
                b,
                &fb::AlterPartitionRequestArgs {
                    broker_id: *broker_id,
                    broker_epoch: *broker_epoch,
                    topic_id,
                    partition: *partition,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    isr,
                },
            );
            (fb::Message::AlterPartitionRequest, t.as_union_value())
        }
        InternalMessage::AlterPartitionResponse {
            error_code,
            leader,
            isr,
            leader_epoch,
            partition_epoch,
        } => {
            let isr = Some(b.create_vector(isr));
            let t = fb::AlterPartitionResponse::create(
                b,
                &fb::AlterPartitionResponseArgs {
                    error_code: *error_code,
                    leader: *leader,
                    isr,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                },
            );
            (fb::Message::AlterPartitionResponse, t.as_union_value())
        }
        InternalMessage::AllocateProducerIds {
            broker_id,
            broker_epoch,
        } => {
            let t = fb::AllocateProducerIdsRequest::create(
                b,
                &fb::AllocateProducerIdsRequestArgs {
                    broker_id: *broker_id,
                    broker_epoch: *broker_epoch,
                },
            );
            (fb::Message::AllocateProducerIdsRequest, t.as_union_value())
        }
        InternalMessage::AllocateProducerIdsResponse {
            error_code,
            start,
            len,
        } => {
            let t = fb::AllocateProducerIdsResponse::create(
                b,
                &fb::AllocateProducerIdsResponseArgs {
                    error_code: *error_code,
                    start: *start,
                    len: *len,
                },
            );
            (fb::Message::AllocateProducerIdsResponse, t.as_union_value())
        }
        InternalMessage::ElectLeaders {
            election_type,
            partitions,
        } => {
            let list: Vec<_> = partitions
                .iter()
                .flatten()
                .map(|(topic, partition)| {
                    let topic = Some(b.create_string(topic));
                    fb::TopicPartition::create(
                        b,
                        &fb::TopicPartitionArgs {
                            topic,
                            partition: *partition,
                        },
                    )
                })
                .collect();
            let list = Some(b.create_vector(&list));
            let t = fb::ElectLeadersRequest::create(
                b,
                &fb::ElectLeadersRequestArgs {
                    election_type: *election_type,
                    all_partitions: partitions.is_none(),
                    partitions: list,
                },
            );
            (fb::Message::ElectLeadersRequest, t.as_union_value())
        }
        InternalMessage::ElectLeadersResponse {
            error_code,
            results,
        } => {
            let results: Vec<_> = results.iter().map(|r| partition_result(b, r)).collect();
            let results = Some(b.create_vector(&results));
            let t = fb::ElectLeadersResponse::create(
                b,
                &fb::ElectLeadersResponseArgs {
                    error_code: *error_code,
                    results,
                },
            );
            (fb::Message::ElectLeadersResponse, t.as_union_value())
        }
        InternalMessage::AlterReassignments { partitions } => {
            let list: Vec<_> = partitions
                .iter()
                .map(|(topic, partition, replicas)| {
                    let topic = Some(b.create_string(topic));
                    let ids = replicas.as_ref().map(|r| b.create_vector(r));
                    fb::ReassignPartition::create(
                        b,
                        &fb::ReassignPartitionArgs {
                            topic,
                            partition: *partition,
                            cancel: replicas.is_none(),
                            replicas: ids,
                        },
                    )
                })
                .collect();
            let partitions = Some(b.create_vector(&list));
            let t = fb::AlterReassignmentsRequest::create(
                b,
                &fb::AlterReassignmentsRequestArgs { partitions },
            );
            (fb::Message::AlterReassignmentsRequest, t.as_union_value())
        }
        InternalMessage::AlterReassignmentsResponse {
            error_code,
            results,
        } => {
            let results: Vec<_> = results.iter().map(|r| partition_result(b, r)).collect();
            let results = Some(b.create_vector(&results));
            let t = fb::AlterReassignmentsResponse::create(
                b,
                &fb::AlterReassignmentsResponseArgs {
                    error_code: *error_code,
                    results,
                },
            );
            (fb::Message::AlterReassignmentsResponse, t.as_union_value())
        }
        InternalMessage::AlterScramCredentials {
            upserts,
            deletions,
            only_if_absent,
        } => {
            let ups: Vec<_> = upserts
                .iter()
                .map(|u| {
                    let user = Some(b.create_string(&u.user));
                    let salt = Some(b.create_vector(&u.salt));
                    let stored_key = Some(b.create_vector(&u.stored_key));
                    let server_key = Some(b.create_vector(&u.server_key));
                    fb::ScramCredentialUpsert::create(
                        b,
                        &fb::ScramCredentialUpsertArgs {
                            user,
                            mechanism: u.mechanism,
                            iterations: u.iterations,
                            salt,
                            stored_key,
                            server_key,
                        },
                    )
                })
                .collect();
            let upserts = Some(b.create_vector(&ups));
            let dels: Vec<_> = deletions
                .iter()
                .map(|(user, mechanism)| {
                    let user = Some(b.create_string(user));
                    fb::ScramCredentialDeletion::create(
                        b,
                        &fb::ScramCredentialDeletionArgs {
                            user,
                            mechanism: *mechanism,
                        },
                    )
                })
                .collect();
            let deletions = Some(b.create_vector(&dels));
            let t = fb::AlterScramCredentialsRequest::create(
                b,
                &fb::AlterScramCredentialsRequestArgs {
                    upserts,
                    deletions,
                    only_if_absent: *only_if_absent,
                },
            );
            (
                fb::Message::AlterScramCredentialsRequest,
                t.as_union_value(),
            )
        }
        InternalMessage::AlterAcls {
            creations,
            deletions,
        } => {
            let c: Vec<_> = creations.iter().map(|e| acl_entry(b, e)).collect();
            let creations = Some(b.create_vector(&c));
            let d: Vec<_> = deletions.iter().map(|e| acl_entry(b, e)).collect();
            let deletions = Some(b.create_vector(&d));
            let t = fb::AlterAclsRequest::create(
                b,
                &fb::AlterAclsRequestArgs {
                    creations,
                    deletions,
                },
            );
            (fb::Message::AlterAclsRequest, t.as_union_value())
        }
        InternalMessage::AlterClientQuotas {
            entries,
            validate_only,
        } => {
            let entries: Vec<_> = entries.iter().map(|e| quota_entry(b, e)).collect();
            let entries = Some(b.create_vector(&entries));
            let t = fb::AlterClientQuotasRequest::create(
                b,
                &fb::AlterClientQuotasRequestArgs {
                    entries,
                    validate_only: *validate_only,
                },
            );
            (fb::Message::AlterClientQuotasRequest, t.as_union_value())
        }
    }
}

fn quota_entry<'b>(
    b: &mut FlatBufferBuilder<'b>,
    e: &crate::internal::ClientQuotaEntry,
) -> WIPOffset<fb::ClientQuotaEntry<'b>> {
    let parts: Vec<_> = e
        .entity
        .iter()
        .map(|(entity_type, name)| {
            let entity_type = Some(b.create_string(entity_type));
            let name = name.as_deref().map(|n| b.create_string(n));
            fb::QuotaEntityPart::create(b, &fb::QuotaEntityPartArgs { entity_type, name })
        })
        .collect();
    let entity = Some(b.create_vector(&parts));
    let ops: Vec<_> = e
        .ops
        .iter()
        .map(|o| {
            let key = Some(b.create_string(&o.key));
            fb::QuotaOp::create(
                b,
                &fb::QuotaOpArgs {
                    key,
                    value: o.value.unwrap_or(0.0),
                    remove: o.value.is_none(),
                },
            )
        })
        .collect();
    let ops = Some(b.create_vector(&ops));
    fb::ClientQuotaEntry::create(b, &fb::ClientQuotaEntryArgs { entity, ops })
}

fn acl_entry<'b>(
    b: &mut FlatBufferBuilder<'b>,
    e: &crate::internal::AclEntry,
) -> WIPOffset<fb::AclEntry<'b>> {
    let resource_name = Some(b.create_string(&e.resource_name));
    let principal = Some(b.create_string(&e.principal));
    let host = Some(b.create_string(&e.host));
    fb::AclEntry::create(
        b,
        &fb::AclEntryArgs {
            resource_type: e.resource_type,
            resource_name,
            pattern_type: e.pattern_type,
            principal,
            host,
            operation: e.operation,
            permission: e.permission,
        },
    )
}

fn partition_result<'b>(
    b: &mut FlatBufferBuilder<'b>,
    r: &PartitionResult,
) -> WIPOffset<fb::PartitionResult<'b>> {
    let topic = Some(b.create_string(&r.topic));
    let error_message = r.error_message.as_deref().map(|m| b.create_string(m));
    fb::PartitionResult::create(
        b,
        &fb::PartitionResultArgs {
            topic,
            partition: r.partition,
            error_code: r.error_code,
            error_message,
        },
    )
}

fn create_topics<'b>(
    b: &mut FlatBufferBuilder<'b>,
    topics: &[NewTopicSpec],
    validate_only: bool,
) -> Union {
    let topics: Vec<_> = topics.iter().map(|t| new_topic(b, t)).collect();
    let topics = Some(b.create_vector(&topics));
    let t = fb::CreateTopicsRequest::create(
        b,
        &fb::CreateTopicsRequestArgs {
            topics,
            validate_only,
        },
    );
    (fb::Message::CreateTopicsRequest, t.as_union_value())
}

fn create_partitions<'b>(
    b: &mut FlatBufferBuilder<'b>,
    topics: &[(String, i32)],
    validate_only: bool,
) -> Union {
    let topics: Vec<_> = topics
        .iter()
        .map(|(name, count)| {
            let name = Some(b.create_string(name));
            let count = *count;
            fb::PartitionCount::create(b, &fb::PartitionCountArgs { name, count })
        })
        .collect();
    let topics = Some(b.create_vector(&topics));
    let t = fb::CreatePartitionsRequest::create(
        b,
        &fb::CreatePartitionsRequestArgs {
            topics,
            validate_only,
        },
    );
    (fb::Message::CreatePartitionsRequest, t.as_union_value())
}

fn new_topic<'b>(b: &mut FlatBufferBuilder<'b>, t: &NewTopicSpec) -> WIPOffset<fb::NewTopic<'b>> {
    let name = Some(b.create_string(&t.name));
    let configs = Some(config_entries(b, &t.configs));
    let assignments: Vec<_> = t
        .assignments
        .iter()
        .map(|replicas| {
            let replicas = Some(b.create_vector(replicas));
            fb::ReplicaList::create(b, &fb::ReplicaListArgs { replicas })
        })
        .collect();
    let assignments = Some(b.create_vector(&assignments));
    fb::NewTopic::create(
        b,
        &fb::NewTopicArgs {
            name,
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            configs,
            assignments,
        },
    )
}

fn config_entries<'b>(
    b: &mut FlatBufferBuilder<'b>,
    configs: &[(String, String)],
) -> WIPOffset<Vector<'b, ForwardsUOffset<fb::ConfigEntry<'b>>>> {
    let entries: Vec<_> = configs
        .iter()
        .map(|(name, value)| {
            let name = Some(b.create_string(name));
            let value = Some(b.create_string(value));
            fb::ConfigEntry::create(b, &fb::ConfigEntryArgs { name, value })
        })
        .collect();
    b.create_vector(&entries)
}

fn topic_result<'b>(
    b: &mut FlatBufferBuilder<'b>,
    r: &TopicResult,
) -> WIPOffset<fb::TopicResult<'b>> {
    let name = Some(b.create_string(&r.name));
    let error_message = r.error_message.as_deref().map(|m| b.create_string(m));
    fb::TopicResult::create(
        b,
        &fb::TopicResultArgs {
            name,
            error_code: r.error_code,
            error_message,
        },
    )
}

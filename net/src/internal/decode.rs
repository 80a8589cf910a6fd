//! A verified flatbuffers `Frame` into [`InternalMessage`]. The verifier has already checked
//! every offset; what is left to check here is what flatbuffers cannot express: fixed-length
//! ids, and a union member this node knows.

use bytes::Bytes;
use flatbuffers::{ForwardsUOffset, Vector};

use super::{
    fb, ClientQuotaEntry, Endpoint, InternalDecodeError, InternalMessage, NewTopicSpec,
    PartitionResult, QuotaOp, ScramUpsert, TopicResult,
};

use InternalDecodeError::UnknownMessage;

pub(super) fn message(frame: &fb::Frame<'_>) -> Result<InternalMessage, InternalDecodeError> {
    Ok(match frame.message_type() {
        fb::Message::RaftMessage => {
            let m = frame.message_as_raft_message().ok_or(UnknownMessage)?;
            InternalMessage::Raft(bytes(m.payload()))
        }
        fb::Message::RegisterBrokerRequest => {
            let m = frame
                .message_as_register_broker_request()
                .ok_or(UnknownMessage)?;
            InternalMessage::RegisterBroker {
                broker_id: m.broker_id(),
                incarnation: id16(m.incarnation()).map_err(InternalDecodeError::BadIncarnation)?,
                endpoints: endpoints(m.endpoints()),
                rack: m.rack().map(str::to_string),
            }
        }
        fb::Message::RegisterBrokerResponse => {
            let m = frame
                .message_as_register_broker_response()
                .ok_or(UnknownMessage)?;
            InternalMessage::RegisterBrokerResponse {
                error_code: m.error_code(),
                broker_epoch: m.broker_epoch(),
            }
        }
        fb::Message::BrokerHeartbeatRequest => {
            let m = frame
                .message_as_broker_heartbeat_request()
                .ok_or(UnknownMessage)?;
            InternalMessage::Heartbeat {
                broker_id: m.broker_id(),
                broker_epoch: m.broker_epoch(),
                metadata_offset: m.metadata_offset(),
                want_fence: m.want_fence(),
                want_shutdown: m.want_shutdown(),
            }
        }
        fb::Message::BrokerHeartbeatResponse => {
            let m = frame
                .message_as_broker_heartbeat_response()
                .ok_or(UnknownMessage)?;
            InternalMessage::HeartbeatResponse {
                error_code: m.error_code(),
                is_caught_up: m.is_caught_up(),
                is_fenced: m.is_fenced(),
                should_shutdown: m.should_shutdown(),
            }
        }
        fb::Message::FetchMetadataRequest => {
            let m = frame
                .message_as_fetch_metadata_request()
                .ok_or(UnknownMessage)?;
            InternalMessage::FetchMetadata {
                broker_id: m.broker_id(),
                from_offset: m.from_offset(),
                max_wait_ms: m.max_wait_ms(),
            }
        }
        fb::Message::FetchMetadataResponse => {
            let m = frame
                .message_as_fetch_metadata_response()
                .ok_or(UnknownMessage)?;
            InternalMessage::FetchMetadataResponse {
                error_code: m.error_code(),
                leader_id: m.leader_id(),
                offset: m.offset(),
                image: bytes(m.image()),
            }
        }
        fb::Message::CreateTopicsRequest => {
            let m = frame
                .message_as_create_topics_request()
                .ok_or(UnknownMessage)?;
            let topics = m.topics().map(|ts| ts.iter().map(new_topic).collect());
            InternalMessage::CreateTopics {
                topics: topics.unwrap_or_default(),
                validate_only: m.validate_only(),
            }
        }
        fb::Message::DeleteTopicsRequest => {
            let m = frame
                .message_as_delete_topics_request()
                .ok_or(UnknownMessage)?;
            let names = m.names().map(|ns| ns.iter().map(str::to_string).collect());
            InternalMessage::DeleteTopics {
                names: names.unwrap_or_default(),
            }
        }
        fb::Message::CreatePartitionsRequest => {
            let m = frame
                .message_as_create_partitions_request()
                .ok_or(UnknownMessage)?;
            let topics = m
                .topics()
                .map(|ts| ts.iter().map(|t| (string(t.name()), t.count())).collect());
            InternalMessage::CreatePartitions {
                topics: topics.unwrap_or_default(),
                validate_only: m.validate_only(),
            }
        }
        fb::Message::AlterTopicConfigRequest => {
            let m = frame
                .message_as_alter_topic_config_request()
                .ok_or(UnknownMessage)?;
            InternalMessage::AlterTopicConfig {
                topic: string(m.topic()),
                configs: configs(m.configs()),
                validate_only: m.validate_only(),
            }
        }
        fb::Message::AdminResponse => {
            let m = frame.message_as_admin_response().ok_or(UnknownMessage)?;
            let results = m.results().map(|rs| {
                rs.iter()
                    .map(|r| TopicResult {
                        name: string(r.name()),
                        error_code: r.error_code(),
                        error_message: r.error_message().map(str::to_string),
                    })
                    .collect()
            });
            InternalMessage::AdminResponse {
                results: results.unwrap_or_default(),
            }
        }
        fb::Message::AlterPartitionRequest => {
            let m = frame
                .message_as_alter_partition_request()
                .ok_or(UnknownMessage)?;
            InternalMessage::AlterPartition {
                broker_id: m.broker_id(),
                broker_epoch: m.broker_epoch(),
                topic_id: id16(m.topic_id()).map_err(InternalDecodeError::BadTopicId)?,
                partition: m.partition(),
                leader_epoch: m.leader_epoch(),
                partition_epoch: m.partition_epoch(),
                isr: ints(m.isr()),
            }
        }
        fb::Message::AlterPartitionResponse => {
            let m = frame
                .message_as_alter_partition_response()
                .ok_or(UnknownMessage)?;
            InternalMessage::AlterPartitionResponse {
                error_code: m.error_code(),
                leader: m.leader(),
                isr: ints(m.isr()),
                leader_epoch: m.leader_epoch(),
                partition_epoch: m.partition_epoch(),
            }
        }
        fb::Message::AllocateProducerIdsRequest => {
            let m = frame
                .message_as_allocate_producer_ids_request()
                .ok_or(UnknownMessage)?;
            InternalMessage::AllocateProducerIds {
                broker_id: m.broker_id(),
                broker_epoch: m.broker_epoch(),
            }
        }
        fb::Message::AllocateProducerIdsResponse => {
            let m = frame
                .message_as_allocate_producer_ids_response()
                .ok_or(UnknownMessage)?;
            InternalMessage::AllocateProducerIdsResponse {
                error_code: m.error_code(),
                start: m.start(),
                len: m.len(),
            }
        }
        fb::Message::ElectLeadersRequest => {
            let m = frame
                .message_as_elect_leaders_request()
                .ok_or(UnknownMessage)?;
            let list = m.partitions().map(|v| {
                v.iter()
                    .map(|tp| (string(tp.topic()), tp.partition()))
                    .collect()
            });
            InternalMessage::ElectLeaders {
                election_type: m.election_type(),
                partitions: if m.all_partitions() {
                    None
                } else {
                    Some(list.unwrap_or_default())
                },
            }
        }
        fb::Message::ElectLeadersResponse => {
            let m = frame
                .message_as_elect_leaders_response()
                .ok_or(UnknownMessage)?;
            InternalMessage::ElectLeadersResponse {
                error_code: m.error_code(),
                results: partition_results(m.results()),
            }
        }
        fb::Message::AlterReassignmentsRequest => {
            let m = frame
                .message_as_alter_reassignments_request()
                .ok_or(UnknownMessage)?;
            let partitions = m.partitions().map(|v| {
                v.iter()
                    .map(|p| {
                        let target = (!p.cancel()).then(|| ints(p.replicas()));
                        (string(p.topic()), p.partition(), target)
                    })
                    .collect()
            });
            InternalMessage::AlterReassignments {
                partitions: partitions.unwrap_or_default(),
            }
        }
        fb::Message::AlterReassignmentsResponse => {
            let m = frame
                .message_as_alter_reassignments_response()
                .ok_or(UnknownMessage)?;
            InternalMessage::AlterReassignmentsResponse {
                error_code: m.error_code(),
                results: partition_results(m.results()),
            }
        }
        fb::Message::AlterScramCredentialsRequest => {
            let m = frame
                .message_as_alter_scram_credentials_request()
                .ok_or(UnknownMessage)?;
            let upserts = m.upserts().map(|v| {
                v.iter()
                    .map(|u| ScramUpsert {
                        user: string(u.user()),
                        mechanism: u.mechanism(),
                        iterations: u.iterations(),
                        salt: bytes(u.salt()).to_vec(),
                        stored_key: bytes(u.stored_key()).to_vec(),
                        server_key: bytes(u.server_key()).to_vec(),
                    })
                    .collect()
            });
            let deletions = m.deletions().map(|v| {
                v.iter()
                    .map(|d| (string(d.user()), d.mechanism()))
                    .collect()
            });
            InternalMessage::AlterScramCredentials {
                upserts: upserts.unwrap_or_default(),
                deletions: deletions.unwrap_or_default(),
                only_if_absent: m.only_if_absent(),
            }
        }
        fb::Message::AlterAclsRequest => {
            let m = frame
                .message_as_alter_acls_request()
                .ok_or(UnknownMessage)?;
            InternalMessage::AlterAcls {
                creations: acl_entries(m.creations()),
                deletions: acl_entries(m.deletions()),
            }
        }
        fb::Message::AlterClientQuotasRequest => {
            let m = frame
                .message_as_alter_client_quotas_request()
                .ok_or(UnknownMessage)?;
            let entries = m.entries().map(|v| {
                v.iter()
                    .map(|e| ClientQuotaEntry {
                        entity: e
                            .entity()
                            .map(|v| {
                                v.iter()
                                    .map(|p| {
                                        (string(p.entity_type()), p.name().map(str::to_string))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        ops: e
                            .ops()
                            .map(|v| {
                                v.iter()
                                    .map(|o| QuotaOp {
                                        key: string(o.key()),
                                        value: (!o.remove()).then(|| o.value()),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect()
            });
            InternalMessage::AlterClientQuotas {
                entries: entries.unwrap_or_default(),
                validate_only: m.validate_only(),
            }
        }
        // NONE, or a member added by a newer node.
        _ => return Err(UnknownMessage),
    })
}

fn acl_entries(
    v: Option<Vector<'_, ForwardsUOffset<fb::AclEntry<'_>>>>,
) -> Vec<crate::internal::AclEntry> {
    v.map(|v| {
        v.iter()
            .map(|e| crate::internal::AclEntry {
                resource_type: e.resource_type(),
                resource_name: string(e.resource_name()),
                pattern_type: e.pattern_type(),
                principal: string(e.principal()),
                host: string(e.host()),
                operation: e.operation(),
                permission: e.permission(),
            })
            .collect()
    })
    .unwrap_or_default()
}

fn partition_results(
    v: Option<Vector<'_, ForwardsUOffset<fb::PartitionResult<'_>>>>,
) -> Vec<PartitionResult> {
    v.map(|v| {
        v.iter()
            .map(|r| PartitionResult {
                topic: string(r.topic()),
                partition: r.partition(),
                error_code: r.error_code(),
                error_message: r.error_message().map(str::to_string),
            })
            .collect()
    })
    .unwrap_or_default()
}

fn bytes(v: Option<Vector<'_, u8>>) -> Bytes {
    v.map_or_else(Bytes::new, |v| Bytes::copy_from_slice(v.bytes()))
}

fn string(s: Option<&str>) -> String {
    s.unwrap_or_default().to_string()
}

fn ints(v: Option<Vector<'_, i32>>) -> Vec<i32> {
    v.map(|v| v.iter().collect()).unwrap_or_default()
}

/// A 16-byte id (a UUID); `Err(len)` when the vector is missing or another length.
fn id16(v: Option<Vector<'_, u8>>) -> Result<[u8; 16], usize> {
    let raw = v.map_or(&[][..], |v| v.bytes());
    raw.try_into().map_err(|_| raw.len())
}

fn endpoints(v: Option<Vector<'_, ForwardsUOffset<fb::Endpoint<'_>>>>) -> Vec<Endpoint> {
    v.map(|es| {
        es.iter()
            .map(|e| Endpoint {
                listener: string(e.listener()),
                host: string(e.host()),
                port: e.port(),
            })
            .collect()
    })
    .unwrap_or_default()
}

fn configs(v: Option<Vector<'_, ForwardsUOffset<fb::ConfigEntry<'_>>>>) -> Vec<(String, String)> {
    v.map(|cs| {
        cs.iter()
            .map(|c| (string(c.name()), string(c.value())))
            .collect()
    })
    .unwrap_or_default()
}

fn new_topic(t: fb::NewTopic<'_>) -> NewTopicSpec {
    let assignments = t
        .assignments()
        .map(|a| a.iter().map(|r| ints(r.replicas())).collect());
    NewTopicSpec {
        name: string(t.name()),
        num_partitions: t.num_partitions(),
        replication_factor: t.replication_factor(),
        configs: configs(t.configs()),
        assignments: assignments.unwrap_or_default(),
    }
}

//! ApiKey -> handler, and the one table of supported APIs that ApiVersions is built from.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use skein_net::{encode_response, CorrelationId, DecodedRequest, RequestHeader, WirePart};

use skein_controller::acl::{self, AclOperation, ResourceType};

use super::handlers;
use crate::shard::route::FetchChunk;
use crate::shard::Shard;

/// What a connection does after a request.
pub enum Reply {
    /// acks=0 produce: Kafka sends nothing back.
    None,
    Frame(Bytes),
    /// A Fetch response: our framing plus stored batch bytes, written in order.
    Parts(Vec<WirePart<FetchChunk>>),
    Close,
}

/// Every API this broker serves, with the version range it advertises. Ranges stay inside what
/// skein-net can decode; adding an API here is the only way to make it reachable.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 16),
    // v7+ adds the max-timestamp lookup (-3), not built yet.
    (ApiKey::ListOffsets, 1, 6),
    // v0/v1 carry no current leader epoch to fence a stale caller with.
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 0),
    (ApiKey::ListPartitionReassignments, 0, 0),
    // Idempotent producers only: a transactional id is refused (see the handler).
    (ApiKey::InitProducerId, 0, 5),
    // The classic group protocol. OffsetCommit v9 / OffsetFetch v9 are KIP-848's.
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // v0 handshakes take raw SASL tokens; v1 wraps them in SaslAuthenticate (kafka/sasl.rs).
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 0, 3),
    (ApiKey::CreateAcls, 0, 3),
    (ApiKey::DeleteAcls, 0, 3),
    // KIP-546 dynamic quotas: user and client-id entities, byte rates (handlers/client_quotas.rs).
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
];

pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
}

/// Per-request context handed to handlers.
pub struct RequestCtx {
    pub shard: Rc<Shard>,
    pub header: RequestHeader,
    /// The client's address, as group members report it (`client_host`).
    pub peer: Option<std::net::SocketAddr>,
    /// The connection's client quota state (every connection has one: a quota may be set
    /// while it is open).
    pub quota: Option<Rc<crate::quota::ConnectionQuota>>,
    /// The authenticated user's name (Kafka's principal `User:<name>` without the `User:`
    /// prefix), `ANONYMOUS` without SASL; user quotas are looked up by it as it is.
    pub user: Rc<str>,
}

impl RequestCtx {
    pub fn version(&self) -> i16 {
        self.header.api_version
    }

    /// Whether the authorizer lets this request's user do `operation` on a resource. With the
    /// authorizer off (the default) this is one branch and touches nothing else.
    pub fn authorized(
        &self,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let config = &self.shard.layout.broker.authorizer;
        if !config.enabled {
            return true;
        }
        let md = self.shard.metadata();
        acl::authorize(
            config,
            &md.acls,
            &self.user,
            self.peer.map(|p| p.ip()),
            operation,
            resource_type,
            name,
        )
    }

    /// [`RequestCtx::authorized`] on the cluster resource.
    pub fn cluster_authorized(&self, operation: AclOperation) -> bool {
        self.authorized(operation, ResourceType::Cluster, acl::CLUSTER_NAME)
    }

    /// Whether the user may do `operation` on some resource of `resource_type`.
    pub fn authorized_any(&self, operation: AclOperation, resource_type: ResourceType) -> bool {
        let config = &self.shard.layout.broker.authorizer;
        if !config.enabled {
            return true;
        }
        let md = self.shard.metadata();
        let host = self.peer.map(|p| p.ip());
        acl::authorize_any(config, &md.acls, &self.user, host, operation, resource_type)
    }

    pub fn authorizer_enabled(&self) -> bool {
        self.shard.layout.broker.authorizer.enabled
    }
}

pub async fn dispatch(
    shard: &Rc<Shard>,
    request: DecodedRequest,
    peer: Option<std::net::SocketAddr>,
    quota: Option<Rc<crate::quota::ConnectionQuota>>,
    user: Rc<str>,
) -> Reply {
    let DecodedRequest { header, body } = request;
    let supported = supported_range(header.api_key)
        .is_some_and(|(lo, hi)| (lo..=hi).contains(&header.api_version));
    if !supported {
        return unsupported_version(header.api_key, header.api_version, header.correlation_id);
    }
    let ctx = RequestCtx {
        shard: shard.clone(),
        header,
        peer,
        quota,
        user,
    };
    let body = match body {
        RequestKind::ApiVersions(r) => {
            ResponseKind::ApiVersions(handlers::api_versions::handle(&ctx, r))
        }
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(handlers::metadata::handle(&ctx, r).await)
        }
        RequestKind::Produce(r) => match handlers::produce::handle(&ctx, r).await {
            Some(resp) => ResponseKind::Produce(resp),
            None => return Reply::None,
        },
        RequestKind::Fetch(r) => return handlers::fetch::handle(&ctx, r).await,
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(handlers::list_offsets::handle(&ctx, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(
            handlers::offset_for_leader_epoch::handle(&ctx, r).await,
        ),
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(handlers::create_topics::handle(&ctx, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(handlers::delete_topics::handle(&ctx, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(handlers::create_partitions::handle(&ctx, r).await)
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(handlers::elect_leaders::handle(&ctx, r).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            handlers::partition_reassignments::alter(&ctx, r).await,
        ),
        RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
            handlers::partition_reassignments::list(&ctx, r),
        ),
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(handlers::describe_configs::handle(&ctx, r))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(handlers::alter_configs::handle(&ctx, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            handlers::alter_configs::handle_incremental(&ctx, r).await,
        ),
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(handlers::describe_cluster::handle(&ctx, r))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(handlers::init_producer_id::handle(&ctx, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(handlers::find_coordinator::handle(&ctx, r).await)
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(handlers::offset_commit::handle(&ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(handlers::offset_fetch::handle(&ctx, r).await)
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(handlers::join_group::handle(&ctx, r).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(handlers::sync_group::handle(&ctx, r).await)
        }
        RequestKind::Heartbeat(r) => {
            ResponseKind::Heartbeat(handlers::heartbeat::handle(&ctx, r).await)
        }
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(handlers::leave_group::handle(&ctx, r).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(handlers::describe_groups::handle(&ctx, r).await)
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(handlers::list_groups::handle(&ctx, r).await)
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(handlers::delete_groups::handle(&ctx, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(handlers::offset_delete::handle(&ctx, r).await)
        }
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            handlers::user_scram_credentials::describe(&ctx, r),
        ),
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            handlers::user_scram_credentials::alter(&ctx, r).await,
        ),
        RequestKind::DescribeAcls(r) => {
            ResponseKind::DescribeAcls(handlers::acls::describe(&ctx, r))
        }
        RequestKind::CreateAcls(r) => {
            ResponseKind::CreateAcls(handlers::acls::create(&ctx, r).await)
        }
        RequestKind::DeleteAcls(r) => {
            ResponseKind::DeleteAcls(handlers::acls::delete(&ctx, r).await)
        }
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(handlers::client_quotas::describe(&ctx, r))
        }
        RequestKind::AlterClientQuotas(r) => {
            ResponseKind::AlterClientQuotas(handlers::client_quotas::alter(&ctx, r).await)
        }
        other => match super::sasl::out_of_place(&other) {
            Some(body) => body,
            None => return Reply::Close,
        },
    };
    encode(
        ctx.header.api_key,
        ctx.header.api_version,
        ctx.header.correlation_id,
        &body,
    )
}

pub fn encode(
    api_key: ApiKey,
    version: i16,
    correlation_id: CorrelationId,
    body: &ResponseKind,
) -> Reply {
    match encode_response(api_key, version, correlation_id, body) {
        Ok(bytes) => Reply::Frame(bytes),
        Err(e) => {
            // Our bug, not the client's: say so loudly and drop only this connection.
            tracing::error!(?api_key, version, error = %e, "encoding a response failed");
            Reply::Close
        }
    }
}

/// An unsupported version: ApiVersions answers with UNSUPPORTED_VERSION and our ranges in a v0
/// response (KIP-511) so the client can retry; any other API closes the connection, as Kafka does.
pub fn unsupported_version(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: CorrelationId,
) -> Reply {
    if api_key != ApiKey::ApiVersions {
        tracing::debug!(
            ?api_key,
            api_version,
            "unsupported version; closing connection"
        );
        return Reply::Close;
    }
    let body = handlers::api_versions::unsupported();
    encode(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &ResponseKind::ApiVersions(body),
    )
}

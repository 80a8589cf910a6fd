//! JoinGroup: checked here, then run (and parked until the rebalance's join phase ends) on the
//! shard coordinating the group.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use skein_controller::acl::{AclOperation, ResourceType};

use crate::group::coordinator;
use crate::group::state::{JoinRequest, JoinResult};
use crate::kafka::dispatch::RequestCtx;
use crate::limits::GROUP_MEMBER_METADATA_BYTES_MAX;

pub async fn handle(ctx: &RequestCtx, req: JoinGroupRequest) -> JoinGroupResponse {
    let version = ctx.version();
    let member_id = req.member_id.to_string();
    let result = match check(ctx, &req) {
        Err(e) => JoinResult::error(&member_id, e),
        Ok(join) => {
            let group = req.group_id.0.to_string();
            let group_id = group.clone();
            coordinator::on_coordinator(&ctx.shard, &group, move |p| async move {
                Ok(coordinator::join(p, group_id, join).await)
            })
            .await
            .unwrap_or_else(|e| JoinResult::error(&member_id, e))
        }
    };
    response(version, result)
}

/// Kafka's request checks, and the request in the coordinator's terms.
fn check(ctx: &RequestCtx, req: &JoinGroupRequest) -> Result<JoinRequest, ResponseError> {
    if !ctx.authorized(AclOperation::Read, ResourceType::Group, &req.group_id) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    let settings = &ctx.shard.layout.broker.group;
    if req.session_timeout_ms < settings.min_session_timeout_ms
        || req.session_timeout_ms > settings.max_session_timeout_ms
    {
        return Err(ResponseError::InvalidSessionTimeout);
    }
    // A member's metadata is written with the group; more than a record can hold would fail
    // every rebalance of the group, so it is refused up front.
    let metadata_bytes: usize = req
        .protocols
        .iter()
        .map(|p| p.name.len() + p.metadata.len())
        .sum();
    if metadata_bytes > GROUP_MEMBER_METADATA_BYTES_MAX {
        return Err(ResponseError::MessageTooLarge);
    }
    let millis = |ms: i32| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    // v0 has no rebalance timeout: the session timeout serves as both.
    let rebalance_ms = if ctx.version() == 0 || req.rebalance_timeout_ms < 0 {
        req.session_timeout_ms
    } else {
        req.rebalance_timeout_ms
    };
    Ok(JoinRequest {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: ctx
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: ctx.peer.map(|p| format!("/{}", p.ip())).unwrap_or_default(),
        session_timeout: millis(req.session_timeout_ms),
        rebalance_timeout: millis(rebalance_ms),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: ctx.version() >= 4,
    })
}

fn response(version: i16, r: JoinResult) -> JoinGroupResponse {
    let mut resp = JoinGroupResponse::default();
    resp.error_code = r.error.map_or(0, |e| e.code());
    resp.generation_id = r.generation;
    resp.protocol_type = r.protocol_type.map(StrBytes::from_string);
    // Nullable from v7; older versions carry an empty name instead.
    resp.protocol_name = match r.protocol_name {
        Some(n) => Some(StrBytes::from_string(n)),
        None if version < 7 => Some(StrBytes::default()),
        None => None,
    };
    resp.leader = StrBytes::from_string(r.leader);
    resp.member_id = StrBytes::from_string(r.member_id);
    resp.members = r
        .members
        .into_iter()
        .map(|m| {
            let mut out = JoinGroupResponseMember::default();
            out.member_id = StrBytes::from_string(m.member_id);
            out.group_instance_id = m.instance_id.map(StrBytes::from_string);
            out.metadata = m.metadata;
            out
        })
        .collect();
    resp
}

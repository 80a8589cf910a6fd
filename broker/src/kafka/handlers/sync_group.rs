//! SyncGroup: members wait for the leader's assignment, which is written before anyone gets it.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use skein_controller::acl::{AclOperation, ResourceType};

use crate::group::coordinator::{self, SyncArgs};
use crate::group::state::SyncResult;
use crate::kafka::dispatch::RequestCtx;

pub async fn handle(ctx: &RequestCtx, req: SyncGroupRequest) -> SyncGroupResponse {
    let group = req.group_id.0.to_string();
    if !ctx.authorized(AclOperation::Read, ResourceType::Group, &group) {
        let mut resp = SyncGroupResponse::default();
        resp.error_code = ResponseError::GroupAuthorizationFailed.code();
        return resp;
    }
    let args = SyncArgs {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.map(|i| i.to_string()),
        generation: req.generation_id,
        protocol_type: req.protocol_type.map(|t| t.to_string()),
        protocol_name: req.protocol_name.map(|n| n.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let group_id = group.clone();
    let r = coordinator::on_coordinator(&ctx.shard, &group, move |p| async move {
        Ok(coordinator::sync(p, group_id, args).await)
    })
    .await
    .unwrap_or_else(SyncResult::error);
    let mut resp = SyncGroupResponse::default();
    resp.error_code = r.error.map_or(0, |e| e.code());
    resp.protocol_type = r.protocol_type.map(StrBytes::from_string);
    resp.protocol_name = r.protocol_name.map(StrBytes::from_string);
    resp.assignment = r.assignment;
    resp
}

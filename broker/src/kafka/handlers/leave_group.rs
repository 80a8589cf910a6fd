//! LeaveGroup: one member (v0-2) or a batch of members, by id or by static instance id (v3+).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use skein_controller::acl::{AclOperation, ResourceType};

use crate::group::coordinator;
use crate::kafka::dispatch::RequestCtx;

pub async fn handle(ctx: &RequestCtx, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let version = ctx.version();
    let group = req.group_id.0.to_string();
    if !ctx.authorized(AclOperation::Read, ResourceType::Group, &group) {
        let mut resp = LeaveGroupResponse::default();
        resp.error_code = ResponseError::GroupAuthorizationFailed.code();
        return resp;
    }
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let asked = members.clone();
    let group_id = group.clone();
    let r = coordinator::on_coordinator(&ctx.shard, &group, move |p| {
        coordinator::leave(p, group_id, asked)
    })
    .await;
    let mut resp = LeaveGroupResponse::default();
    match r {
        Err(e) => resp.error_code = e.code(),
        Ok(outcomes) if version >= 3 => {
            resp.members = members
                .into_iter()
                .zip(outcomes)
                .map(|((member_id, instance_id), o)| {
                    let mut m = MemberResponse::default();
                    m.member_id = member_id.into();
                    m.group_instance_id = instance_id.map(Into::into);
                    m.error_code = o.err().map_or(0, |e| e.code());
                    m
                })
                .collect();
        }
        Ok(outcomes) => {
            resp.error_code = outcomes
                .into_iter()
                .next()
                .and_then(|o| o.err())
                .map_or(0, |e| e.code());
        }
    }
    resp
}

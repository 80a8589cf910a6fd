//! Heartbeat: keeps a member's session alive and tells it when a rebalance is under way.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use skein_controller::acl::{AclOperation, ResourceType};

use crate::group::coordinator;
use crate::kafka::dispatch::RequestCtx;

pub async fn handle(ctx: &RequestCtx, req: HeartbeatRequest) -> HeartbeatResponse {
    let group = req.group_id.0.to_string();
    if !ctx.authorized(AclOperation::Read, ResourceType::Group, &group) {
        let mut resp = HeartbeatResponse::default();
        resp.error_code = ResponseError::GroupAuthorizationFailed.code();
        return resp;
    }
    let member = req.member_id.to_string();
    let instance = req.group_instance_id.map(|i| i.to_string());
    let generation = req.generation_id;
    let group_id = group.clone();
    let r = coordinator::on_coordinator(&ctx.shard, &group, move |p| {
        coordinator::heartbeat(p, group_id, member, instance, generation)
    })
    .await;
    let mut resp = HeartbeatResponse::default();
    resp.error_code = r.err().map_or(0, |e| e.code());
    resp
}

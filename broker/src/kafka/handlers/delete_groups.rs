//! DeleteGroups: an Empty group and its committed offsets are deleted with tombstones.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use skein_controller::acl::{AclOperation, ResourceType};

use crate::group::coordinator;
use crate::kafka::dispatch::RequestCtx;

pub async fn handle(ctx: &RequestCtx, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut resp = DeleteGroupsResponse::default();
    for group_id in req.groups_names {
        let group = group_id.0.to_string();
        let name = group.clone();
        let r = if ctx.authorized(AclOperation::Delete, ResourceType::Group, &group) {
            coordinator::on_coordinator(&ctx.shard, &group, move |p| coordinator::delete(p, name))
                .await
        } else {
            Err(kafka_protocol::error::ResponseError::GroupAuthorizationFailed)
        };
        let mut out = DeletableGroupResult::default();
        out.group_id = group_id;
        out.error_code = r.err().map_or(0, |e| e.code());
        resp.results.push(out);
    }
    resp
}

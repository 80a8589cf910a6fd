//! DescribeGroups: each group from its coordinator; an unknown group is Dead, without error.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use skein_controller::acl::{AclOperation, ResourceType};

use crate::group::coordinator;
use crate::kafka::dispatch::RequestCtx;

/// Kafka's value when authorized operations were not asked for.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

pub async fn handle(ctx: &RequestCtx, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut resp = DescribeGroupsResponse::default();
    for group_id in req.groups {
        let group = group_id.0.to_string();
        let mut out = DescribedGroup::default();
        out.group_id = group_id;
        out.authorized_operations = OPERATIONS_NOT_REQUESTED;
        if !ctx.authorized(AclOperation::Describe, ResourceType::Group, &group) {
            out.error_code = kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code();
            resp.groups.push(out);
            continue;
        }
        let name = group.clone();
        let r = coordinator::on_coordinator(&ctx.shard, &group, move |p| {
            coordinator::describe(p, name)
        })
        .await;
        match r {
            Err(e) => {
                out.error_code = e.code();
                out.group_state = StrBytes::from_static_str("Dead");
            }
            Ok(s) => {
                out.group_state = StrBytes::from_static_str(s.state);
                out.protocol_type = StrBytes::from_string(s.protocol_type);
                out.protocol_data = StrBytes::from_string(s.protocol);
                out.members = s
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut dm = DescribedGroupMember::default();
                        dm.member_id = StrBytes::from_string(m.member_id);
                        dm.group_instance_id = m.instance_id.map(StrBytes::from_string);
                        dm.client_id = StrBytes::from_string(m.client_id);
                        dm.client_host = StrBytes::from_string(m.client_host);
                        dm.member_metadata = m.metadata;
                        dm.member_assignment = m.assignment;
                        dm
                    })
                    .collect();
            }
        }
        resp.groups.push(out);
    }
    resp
}

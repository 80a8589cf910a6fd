//! ListGroups: every group this node coordinates, gathered from all shards; filtered by state
//! (v4+) and type (v5+; all of ours are "classic").

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use skein_controller::acl::{AclOperation, ResourceType};

use crate::group::coordinator;
use crate::kafka::dispatch::RequestCtx;
use crate::shard::ids::ShardId;

const GROUP_TYPE: &str = "classic";

pub async fn handle(ctx: &RequestCtx, req: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let types: Vec<String> = req
        .types_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let mut resp = ListGroupsResponse::default();
    if !types.is_empty() && !types.iter().any(|t| t == GROUP_TYPE) {
        return resp;
    }
    // Kafka: CLUSTER DESCRIBE lists every group; otherwise only those the client may describe.
    let every_group = ctx.cluster_authorized(AclOperation::Describe);
    for index in 0..ctx.shard.shard_count() {
        let Ok(index) = u16::try_from(index) else {
            break;
        };
        let listed = ctx
            .shard
            .invoke_on(ShardId(index), |shard| async move {
                coordinator::list_local(&shard)
            })
            .await;
        let Some(listed) = listed else {
            resp.error_code = kafka_protocol::error::ResponseError::CoordinatorNotAvailable.code();
            return resp;
        };
        for (id, protocol_type, state) in listed {
            if !states.is_empty() && !states.iter().any(|s| s == &state.to_ascii_lowercase()) {
                continue;
            }
            if !every_group && !ctx.authorized(AclOperation::Describe, ResourceType::Group, &id) {
                continue;
            }
            let mut g = ListedGroup::default();
            g.group_id = GroupId(StrBytes::from_string(id));
            g.protocol_type = StrBytes::from_string(protocol_type);
            g.group_state = StrBytes::from_static_str(state);
            g.group_type = StrBytes::from_static_str(GROUP_TYPE);
            resp.groups.push(g);
        }
    }
    resp
}

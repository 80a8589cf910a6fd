//! FindCoordinator: a group is coordinated by the leader of its `__consumer_offsets`
//! partition (on that node, by the shard that owns the partition). Transaction coordinators do not exist: asking
//! for one gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use skein_controller::acl::{AclOperation, ResourceType};

use crate::group::coordinator;
use crate::kafka::dispatch::RequestCtx;

const KEY_TYPE_GROUP: i8 = 0;

struct Found {
    error: Option<ResponseError>,
    message: Option<String>,
    node_id: i32,
    host: String,
    port: i32,
}

async fn find(ctx: &RequestCtx, key: &str, key_type: i8) -> Found {
    let failed = |e: ResponseError, m: &str| Found {
        error: Some(e),
        message: Some(m.to_string()),
        node_id: -1,
        host: String::new(),
        port: -1,
    };
    if key_type != KEY_TYPE_GROUP {
        // Transactions are not built. A retriable code would have transactional clients retry
        // until they time out; this one fails them at once with the reason.
        return failed(
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactions are not supported by this broker",
        );
    }
    if key.is_empty() {
        return failed(ResponseError::InvalidGroupId, "empty group id");
    }
    if !ctx.authorized(AclOperation::Describe, ResourceType::Group, key) {
        return failed(ResponseError::GroupAuthorizationFailed, "not authorized");
    }
    let leader = match coordinator::coordinator_of(&ctx.shard, key).await {
        Ok(leader) => leader,
        Err(e) => return failed(e, "the offsets topic is not available"),
    };
    let md = ctx.shard.metadata();
    match md.broker(leader).cloned() {
        Some(b) => Found {
            error: None,
            message: None,
            node_id: b.node_id.0,
            host: b.host,
            port: i32::from(b.port),
        },
        None => failed(
            ResponseError::CoordinatorNotAvailable,
            "the coordinator's broker is not available",
        ),
    }
}

pub async fn handle(ctx: &RequestCtx, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let mut resp = FindCoordinatorResponse::default();
    if ctx.version() >= 4 {
        for key in &req.coordinator_keys {
            let f = find(ctx, key.as_str(), req.key_type).await;
            let mut c = Coordinator::default();
            c.key = key.clone();
            c.node_id = BrokerId(f.node_id);
            c.host = StrBytes::from_string(f.host);
            c.port = f.port;
            c.error_code = f.error.map_or(0, |e| e.code());
            c.error_message = f.message.map(StrBytes::from_string);
            resp.coordinators.push(c);
        }
        return resp;
    }
    let f = find(ctx, req.key.as_str(), req.key_type).await;
    resp.node_id = BrokerId(f.node_id);
    resp.host = StrBytes::from_string(f.host);
    resp.port = f.port;
    resp.error_code = f.error.map_or(0, |e| e.code());
    if ctx.version() >= 1 {
        resp.error_message = f.message.map(StrBytes::from_string);
    }
    resp
}

//! CreatePartitions: grows a topic; new partitions are placed like new topics.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use skein_controller::acl::{AclOperation, ResourceType};

use crate::admin::{self, AdminOp};
use crate::kafka::dispatch::RequestCtx;

pub async fn handle(ctx: &RequestCtx, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut resp = CreatePartitionsResponse::default();
    let mut ops = Vec::new();
    let mut manual = Vec::new();
    let allowed = |n: &str| ctx.authorized(AclOperation::Alter, ResourceType::Topic, n);
    for t in req.topics.iter().filter(|t| allowed(&t.name)) {
        if t.assignments.is_some() {
            manual.push(t.name.0.to_string());
        } else {
            ops.push((t.name.0.to_string(), t.count));
        }
    }
    let reply = admin::submit(
        &ctx.shard,
        AdminOp::CreatePartitions {
            topics: ops,
            validate_only: req.validate_only,
        },
    )
    .await;
    let mut results = reply.results.into_iter();
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        let name = t.name.0.to_string();
        r.name = TopicName(StrBytes::from_string(name.clone()));
        if !allowed(&name) {
            r.error_code = ResponseError::TopicAuthorizationFailed.code();
        } else if manual.contains(&name) {
            r.error_code = ResponseError::InvalidReplicaAssignment.code();
            r.error_message = Some(StrBytes::from_static_str(
                "manual replica assignment is not supported on a single-node cluster",
            ));
        } else if let Some((_, Err((e, m)))) = results.next() {
            r.error_code = e.code();
            r.error_message = m.map(StrBytes::from_string);
        }
        resp.results.push(r);
    }
    resp
}

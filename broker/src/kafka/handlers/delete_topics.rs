//! DeleteTopics, by name (v1-5) or by name or id (v6).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use skein_controller::acl::{AclOperation, ResourceType};

use crate::admin::{self, AdminOp};
use crate::kafka::dispatch::RequestCtx;

pub async fn handle(ctx: &RequestCtx, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let version = ctx.version();
    let md = ctx.shard.metadata();
    // (name if known, id asked for)
    let wanted: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| match &t.name {
                Some(n) => (
                    Some(n.0.to_string()),
                    md.topics.get(n.0.as_str()).map_or(Uuid::nil(), |m| m.id),
                ),
                None => (
                    md.topic_by_id(&t.topic_id).map(|m| m.name.clone()),
                    t.topic_id,
                ),
            })
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    drop(md);
    let allowed = |n: &str| ctx.authorized(AclOperation::Delete, ResourceType::Topic, n);
    let names: Vec<String> = wanted
        .iter()
        .filter_map(|(n, _)| n.clone())
        .filter(|n| allowed(n))
        .collect();
    let mut reply = admin::submit(&ctx.shard, AdminOp::DeleteTopics { names })
        .await
        .results
        .into_iter();
    let mut resp = DeleteTopicsResponse::default();
    for (name, id) in wanted {
        let mut r = DeletableTopicResult::default();
        if version >= 6 {
            r.topic_id = id;
        }
        match name {
            None => r.error_code = ResponseError::UnknownTopicId.code(),
            Some(n) if !allowed(&n) => {
                r.name = Some(TopicName(StrBytes::from_string(n)));
                r.error_code = ResponseError::TopicAuthorizationFailed.code();
            }
            Some(n) => {
                r.name = Some(TopicName(StrBytes::from_string(n)));
                if let Some((_, Err((e, m)))) = reply.next() {
                    r.error_code = e.code();
                    if version >= 5 {
                        r.error_message = m.map(StrBytes::from_string);
                    }
                }
            }
        }
        resp.responses.push(r);
    }
    resp
}

//! OffsetDelete: removes a group's committed offsets for partitions no live member subscribes to.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use skein_controller::acl::{AclOperation, ResourceType};

use crate::group::coordinator;
use crate::kafka::dispatch::RequestCtx;

pub async fn handle(ctx: &RequestCtx, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = req.group_id.0.to_string();
    if !ctx.authorized(AclOperation::Delete, ResourceType::Group, &group) {
        let mut resp = OffsetDeleteResponse::default();
        resp.error_code = kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code();
        return resp;
    }
    let md = ctx.shard.metadata();
    // (topic, partition, Ok when it is known and may be read) in request order.
    let asked: Vec<(String, i32, Result<(), ResponseError>)> = req
        .topics
        .iter()
        .flat_map(|t| {
            let name = t.name.0.to_string();
            let count = md.topics.get(&name).map_or(0, |m| m.partitions.len());
            // Kafka: the topic's offsets need READ on it too.
            let allowed = ctx.authorized(AclOperation::Read, ResourceType::Topic, &name);
            t.partitions.iter().map(move |p| {
                let known = usize::try_from(p.partition_index).is_ok_and(|i| i < count);
                let state = match (allowed, known) {
                    (false, _) => Err(ResponseError::TopicAuthorizationFailed),
                    (true, false) => Err(ResponseError::UnknownTopicOrPartition),
                    (true, true) => Ok(()),
                };
                (name.clone(), p.partition_index, state)
            })
        })
        .collect();
    drop(md);
    let known: Vec<(String, i32)> = asked
        .iter()
        .filter(|(_, _, state)| state.is_ok())
        .map(|(t, p, _)| (t.clone(), *p))
        .collect();
    let name = group.clone();
    let r = coordinator::on_coordinator(&ctx.shard, &group, move |p| {
        coordinator::delete_offsets(p, name, known)
    })
    .await;
    let mut resp = OffsetDeleteResponse::default();
    let mut outcomes = match r {
        Err(e) => {
            resp.error_code = e.code();
            return resp;
        }
        Ok(o) => o.into_iter(),
    };
    // `asked` lists the request's partitions in request order.
    let mut states = asked.into_iter().map(|(_, _, state)| state);
    for t in req.topics {
        let mut tr = OffsetDeleteResponseTopic::default();
        tr.name = t.name;
        for p in t.partitions {
            let outcome = match states.next() {
                Some(Ok(())) => outcomes
                    .next()
                    .unwrap_or(Err(ResponseError::UnknownServerError)),
                Some(Err(e)) => Err(e),
                None => Err(ResponseError::UnknownServerError),
            };
            let mut pr = OffsetDeleteResponsePartition::default();
            pr.partition_index = p.partition_index;
            pr.error_code = outcome.err().map_or(0, |e| e.code());
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

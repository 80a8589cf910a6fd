//! ListOffsets: earliest, latest (the high watermark) and by timestamp, per partition, on the
//! owning shard.

use futures_util::future::join_all;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use kafka_protocol::error::ResponseError;
use skein_controller::acl::{AclOperation, ResourceType};

use crate::kafka::dispatch::RequestCtx;
use crate::shard::ids::TopicPartition;

pub async fn handle(ctx: &RequestCtx, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let version = ctx.version();
    let mut shape = Vec::new();
    let mut work = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let allowed = ctx.authorized(AclOperation::Describe, ResourceType::Topic, &name);
        let mut parts = Vec::new();
        for p in t.partitions {
            parts.push(p.partition_index);
            let tp = TopicPartition::new(name.as_str(), p.partition_index);
            let shard = ctx.shard.clone();
            work.push(async move {
                if !allowed {
                    return Err(ResponseError::TopicAuthorizationFailed);
                }
                shard
                    .list_offset(tp, p.timestamp, p.current_leader_epoch)
                    .await
            });
        }
        shape.push((t.name, parts));
    }
    let mut results = join_all(work).await.into_iter();
    let mut resp = ListOffsetsResponse::default();
    for (name, parts) in shape {
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = name;
        for index in parts {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = index;
            match results.next() {
                Some(Ok(found)) => {
                    pr.offset = found.offset;
                    pr.timestamp = found.timestamp;
                    if version >= 4 {
                        pr.leader_epoch = if found.offset >= 0 {
                            found.leader_epoch
                        } else {
                            -1
                        };
                    }
                }
                Some(Err(e)) => {
                    pr.error_code = e.code();
                    pr.offset = -1;
                    pr.timestamp = -1;
                }
                None => {
                    pr.error_code = kafka_protocol::error::ResponseError::UnknownServerError.code()
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

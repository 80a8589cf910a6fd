//! OffsetForLeaderEpoch (v2+, KIP-320): the end offset of a leader epoch, so a consumer that
//! saw the leader change can check that its position is still on the log (and a follower
//! where to truncate). Answered by the leader, on the shard that owns the partition, from the
//! log's leader-epoch cache.

use futures_util::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use skein_controller::acl::{AclOperation, ResourceType};

use crate::kafka::dispatch::RequestCtx;
use crate::shard::ids::TopicPartition;

/// (leader epoch, end offset) of the largest epoch <= `leader_epoch`, or why not.
async fn end_offset(
    ctx: &RequestCtx,
    tp: TopicPartition,
    current_leader_epoch: i32,
    leader_epoch: i32,
    allowed: bool,
) -> Result<(i32, i64), ResponseError> {
    if !allowed {
        return Err(ResponseError::TopicAuthorizationFailed);
    }
    let owner = ctx.shard.metadata().owner(&tp.topic, tp.partition)?;
    ctx.shard
        .invoke_on(owner.shard, move |shard| async move {
            let p = shard
                .partition(&tp)
                .filter(|p| p.is_leader())
                .ok_or(ResponseError::NotLeaderOrFollower)?;
            let epoch = p.leader_epoch();
            if current_leader_epoch >= 0 && current_leader_epoch < epoch {
                return Err(ResponseError::FencedLeaderEpoch);
            }
            if current_leader_epoch > epoch {
                return Err(ResponseError::UnknownLeaderEpoch);
            }
            // No epoch at or below the one asked for: Kafka's UNDEFINED_EPOCH(_OFFSET).
            Ok(p.log
                .end_offset_for_epoch(leader_epoch)
                .map_or((-1, -1), |(e, o)| (e.0, o)))
        })
        .await
        .unwrap_or(Err(ResponseError::NotLeaderOrFollower))
}

pub async fn handle(
    ctx: &RequestCtx,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut shape = Vec::new();
    let mut work = Vec::new();
    for t in req.topics {
        let name = t.topic.0.to_string();
        // Kafka: DESCRIBE on the topic for a consumer, CLUSTER_ACTION for a follower (let
        // through on a PLAINTEXT listener, where followers have no identity; see fetch.rs).
        let allowed = if req.replica_id.0 >= 0 {
            !ctx.authorizer_enabled()
                || ctx.shard.layout.kafka_security_protocol
                    == crate::sasl::SecurityProtocol::Plaintext
                || ctx.cluster_authorized(AclOperation::ClusterAction)
        } else {
            ctx.authorized(AclOperation::Describe, ResourceType::Topic, &name)
        };
        let mut parts = Vec::new();
        for p in t.partitions {
            parts.push(p.partition);
            let tp = TopicPartition::new(name.as_str(), p.partition);
            work.push(end_offset(
                ctx,
                tp,
                p.current_leader_epoch,
                p.leader_epoch,
                allowed,
            ));
        }
        shape.push((t.topic, parts));
    }
    let mut results = join_all(work).await.into_iter();
    let mut resp = OffsetForLeaderEpochResponse::default();
    for (topic, parts) in shape {
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = topic;
        for partition in parts {
            let mut pr = EpochEndOffset::default();
            pr.partition = partition;
            match results.next() {
                Some(Ok((leader_epoch, end_offset))) => {
                    pr.leader_epoch = leader_epoch;
                    pr.end_offset = end_offset;
                }
                Some(Err(e)) => {
                    pr.error_code = e.code();
                    pr.leader_epoch = -1;
                    pr.end_offset = -1;
                }
                None => pr.error_code = ResponseError::UnknownServerError.code(),
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

//! OffsetCommit: validated here, checked against the group's generation and written durably by
//! the shard owning the group's `__consumer_offsets` partition.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};

/// A partition of the request: what to write, or the error it gets without being written.
type PartitionCommit = (i32, Result<CommitItem, ResponseError>);

use skein_controller::acl::{AclOperation, ResourceType};

use crate::group::coordinator::{self, CommitItem, Committer};
use crate::group::offsets::{CommittedOffset, OFFSET_METADATA_BYTES_MAX};
use crate::kafka::dispatch::RequestCtx;

pub async fn handle(ctx: &RequestCtx, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let group_allowed = ctx.authorized(AclOperation::Read, ResourceType::Group, &group);
    let md = ctx.shard.metadata();
    // Per partition: Ok(item to write) or the error it gets without being written.
    let mut shape: Vec<(TopicName, Vec<PartitionCommit>)> = Vec::new();
    for t in &req.topics {
        let topic = t.name.0.to_string();
        let known = md.topics.get(&topic).map(|m| m.partitions.len());
        let topic_allowed = ctx.authorized(AclOperation::Read, ResourceType::Topic, &topic);
        let parts = t
            .partitions
            .iter()
            .map(|p| {
                let metadata = p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                let r = if !group_allowed {
                    Err(ResponseError::GroupAuthorizationFailed)
                } else if !topic_allowed {
                    Err(ResponseError::TopicAuthorizationFailed)
                } else if !known
                    .is_some_and(|n| usize::try_from(p.partition_index).is_ok_and(|i| i < n))
                {
                    Err(ResponseError::UnknownTopicOrPartition)
                } else if metadata.len() > OFFSET_METADATA_BYTES_MAX {
                    Err(ResponseError::OffsetMetadataTooLarge)
                } else {
                    Ok(CommitItem {
                        topic: topic.clone(),
                        partition: p.partition_index,
                        committed: CommittedOffset {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata,
                        },
                    })
                };
                (p.partition_index, r)
            })
            .collect();
        shape.push((t.name.clone(), parts));
    }
    drop(md);

    let items: Vec<CommitItem> = shape
        .iter()
        .flat_map(|(_, ps)| ps.iter())
        .filter_map(|(_, r)| r.as_ref().ok().cloned())
        .collect();
    let who = Committer {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        generation: req.generation_id_or_member_epoch,
    };
    let group_id = group.clone();
    let outcome = coordinator::on_coordinator(&ctx.shard, &group, move |p| {
        coordinator::commit(p, group_id, who, items)
    })
    .await;

    let mut resp = OffsetCommitResponse::default();
    for (name, parts) in shape {
        let mut tr = OffsetCommitResponseTopic::default();
        tr.name = name;
        for (index, r) in parts {
            let mut pr = OffsetCommitResponsePartition::default();
            pr.partition_index = index;
            let code = match (r, &outcome) {
                (Err(e), _) => e.code(),
                (Ok(_), Err(e)) => e.code(),
                (Ok(_), Ok(())) => 0,
            };
            pr.error_code = code;
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

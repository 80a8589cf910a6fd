//! OffsetFetch: committed offsets from the shard owning the group's `__consumer_offsets`
//! partition; one group (v1-7) or several (v8+). A partition with no commit gets offset -1.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use skein_controller::acl::{AclOperation, ResourceType};

use crate::group::coordinator;
use crate::group::offsets::CommittedOffset;
use crate::kafka::dispatch::RequestCtx;

type Fetched = Vec<(String, i32, Option<CommittedOffset>)>;
/// Committed offsets of one topic: (partition, offset if any).
type TopicOffsets = Vec<(i32, Option<CommittedOffset>)>;

async fn fetch_group(
    ctx: &RequestCtx,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Fetched, ResponseError> {
    if !ctx.authorized(AclOperation::Read, ResourceType::Group, group) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    let all_topics = wanted.is_none();
    let group_id = group.to_string();
    let mut fetched = coordinator::on_coordinator(&ctx.shard, group, move |p| {
        coordinator::fetch(p, group_id, wanted)
    })
    .await?;
    if all_topics {
        // Kafka leaves out the topics the client may not read.
        fetched.retain(|(t, _, _)| topic_allowed(ctx, t));
    }
    Ok(fetched)
}

fn topic_allowed(ctx: &RequestCtx, topic: &str) -> bool {
    ctx.authorized(AclOperation::Read, ResourceType::Topic, topic)
}

/// Groups the flat answer by topic, keeping first-seen order.
fn by_topic(fetched: Fetched) -> Vec<(String, TopicOffsets)> {
    let mut out: Vec<(String, TopicOffsets)> = Vec::new();
    for (t, p, c) in fetched {
        match out.iter_mut().find(|(name, _)| *name == t) {
            Some((_, v)) => v.push((p, c)),
            None => out.push((t, vec![(p, c)])),
        }
    }
    out
}

pub async fn handle(ctx: &RequestCtx, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let version = ctx.version();
    let mut resp = OffsetFetchResponse::default();
    if version >= 8 {
        for g in req.groups {
            let wanted = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let mut out = OffsetFetchResponseGroup::default();
            out.group_id = g.group_id.clone();
            match fetch_group(ctx, g.group_id.0.as_str(), wanted).await {
                Err(e) => out.error_code = e.code(),
                Ok(fetched) => {
                    for (t, parts) in by_topic(fetched) {
                        let denied = !topic_allowed(ctx, &t);
                        let mut tr = OffsetFetchResponseTopics::default();
                        tr.name = TopicName(StrBytes::from_string(t));
                        for (p, c) in parts {
                            let mut pr = OffsetFetchResponsePartitions::default();
                            pr.partition_index = p;
                            let c = if denied {
                                pr.error_code = ResponseError::TopicAuthorizationFailed.code();
                                no_commit()
                            } else {
                                c.unwrap_or_else(no_commit)
                            };
                            pr.committed_offset = c.offset;
                            pr.committed_leader_epoch = c.leader_epoch;
                            pr.metadata = Some(StrBytes::from_string(c.metadata));
                            tr.partitions.push(pr);
                        }
                        out.topics.push(tr);
                    }
                }
            }
            resp.groups.push(out);
        }
        return resp;
    }
    let group: GroupId = req.group_id;
    let wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    match fetch_group(ctx, group.0.as_str(), wanted).await {
        Err(e) => {
            if version >= 2 {
                resp.error_code = e.code();
            }
        }
        Ok(fetched) => {
            for (t, parts) in by_topic(fetched) {
                let denied = !topic_allowed(ctx, &t);
                let mut tr = OffsetFetchResponseTopic::default();
                tr.name = TopicName(StrBytes::from_string(t));
                for (p, c) in parts {
                    let mut pr = OffsetFetchResponsePartition::default();
                    pr.partition_index = p;
                    let c = if denied {
                        pr.error_code = ResponseError::TopicAuthorizationFailed.code();
                        no_commit()
                    } else {
                        c.unwrap_or_else(no_commit)
                    };
                    pr.committed_offset = c.offset;
                    if version >= 5 {
                        pr.committed_leader_epoch = c.leader_epoch;
                    }
                    pr.metadata = Some(StrBytes::from_string(c.metadata));
                    tr.partitions.push(pr);
                }
                resp.topics.push(tr);
            }
        }
    }
    resp
}

/// What a partition without a commit reports.
fn no_commit() -> CommittedOffset {
    CommittedOffset {
        offset: -1,
        leader_epoch: -1,
        metadata: String::new(),
    }
}

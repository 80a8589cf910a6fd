//! AlterPartitionReassignments (forwarded to the active controller, which moves each partition
//! onto its target replicas: copy, join the ISR, drop the rest) and ListPartitionReassignments
//! (answered from this node's metadata).

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use skein_controller::acl::AclOperation;

use crate::admin;
use crate::kafka::dispatch::RequestCtx;

pub async fn alter(
    ctx: &RequestCtx,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let asked: Vec<(String, i32, Option<Vec<i32>>)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let target = p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
                (t.name.0.to_string(), p.partition_index, target)
            })
        })
        .collect();
    let timeout = admin::forward_timeout(req.timeout_ms);
    let mut resp = AlterPartitionReassignmentsResponse::default();
    if !ctx.cluster_authorized(AclOperation::Alter) {
        resp.error_code = kafka_protocol::error::ResponseError::ClusterAuthorizationFailed.code();
        return resp;
    }
    let results = match admin::alter_reassignments(&ctx.shard, asked.clone(), timeout).await {
        Ok(results) => results
            .into_iter()
            .map(|r| (r.topic, r.partition, r.error_code, r.error_message))
            .collect(),
        Err((error, message)) => {
            // Kafka puts a request-wide failure at the top and on no partition.
            resp.error_code = error.code();
            resp.error_message = Some(StrBytes::from_string(message));
            Vec::new()
        }
    };
    for (topic, partition, code, message) in results {
        let mut pr = ReassignablePartitionResponse::default();
        pr.partition_index = partition;
        pr.error_code = code;
        pr.error_message = message.map(StrBytes::from_string);
        match resp
            .responses
            .iter_mut()
            .find(|t| t.name.0.as_str() == topic)
        {
            Some(t) => t.partitions.push(pr),
            None => {
                let mut t = ReassignableTopicResponse::default();
                t.name = TopicName(StrBytes::from_string(topic));
                t.partitions.push(pr);
                resp.responses.push(t);
            }
        }
    }
    resp
}

pub fn list(
    ctx: &RequestCtx,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let md = ctx.shard.metadata();
    let wanted = |topic: &str, partition: i32| match &req.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&partition)),
    };
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let mut resp = ListPartitionReassignmentsResponse::default();
    if !ctx.cluster_authorized(AclOperation::Describe) {
        resp.error_code = kafka_protocol::error::ResponseError::ClusterAuthorizationFailed.code();
        return resp;
    }
    for t in md.topics.values() {
        let mut ongoing = OngoingTopicReassignment::default();
        for (i, p) in t.partitions.iter().enumerate() {
            let partition = i32::try_from(i).unwrap_or(i32::MAX);
            let moving = !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty();
            if moving && wanted(&t.name, partition) {
                let mut o = OngoingPartitionReassignment::default();
                o.partition_index = partition;
                o.replicas = ids(&p.replicas);
                o.adding_replicas = ids(&p.adding_replicas);
                o.removing_replicas = ids(&p.removing_replicas);
                ongoing.partitions.push(o);
            }
        }
        if !ongoing.partitions.is_empty() {
            ongoing.name = TopicName(StrBytes::from_string(t.name.clone()));
            resp.topics.push(ongoing);
        }
    }
    resp
}

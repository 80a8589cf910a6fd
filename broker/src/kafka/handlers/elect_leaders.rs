//! ElectLeaders: preferred or unclean leader elections on demand, decided by the active
//! controller (what `kafka-leader-election.sh` and `skein leader elect` send).

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use skein_controller::acl::AclOperation;

use crate::admin::{self, Election};
use crate::kafka::dispatch::RequestCtx;

pub async fn handle(ctx: &RequestCtx, req: ElectLeadersRequest) -> ElectLeadersResponse {
    // v0 has no election type: it always asks for the preferred leader.
    let election_type = if ctx.version() >= 1 {
        req.election_type
    } else {
        0
    };
    let asked: Option<Vec<(String, i32)>> = req.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect()
    });
    let timeout = admin::forward_timeout(req.timeout_ms);
    let election = Election {
        election_type,
        partitions: asked.clone(),
        timeout,
    };
    let mut resp = ElectLeadersResponse::default();
    if !ctx.cluster_authorized(AclOperation::Alter) {
        resp.error_code = kafka_protocol::error::ResponseError::ClusterAuthorizationFailed.code();
        return resp;
    }
    let results: Vec<(String, PartitionResult)> =
        match admin::elect_leaders(&ctx.shard, election).await {
            Ok(results) => results
                .into_iter()
                .map(|r| {
                    let mut pr = PartitionResult::default();
                    pr.partition_id = r.partition;
                    pr.error_code = r.error_code;
                    pr.error_message = r.error_message.map(StrBytes::from_string);
                    (r.topic, pr)
                })
                .collect(),
            Err((error, message)) => {
                // As Kafka answers a refused request: the code at the top (v1+) and on every
                // partition asked for.
                if ctx.version() >= 1 {
                    resp.error_code = error.code();
                }
                asked
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(topic, partition)| {
                        let mut pr = PartitionResult::default();
                        pr.partition_id = partition;
                        pr.error_code = error.code();
                        pr.error_message = Some(StrBytes::from_string(message.clone()));
                        (topic, pr)
                    })
                    .collect()
            }
        };
    for (topic, pr) in results {
        match resp
            .replica_election_results
            .iter_mut()
            .find(|t| t.topic.0.as_str() == topic)
        {
            Some(t) => t.partition_result.push(pr),
            None => {
                let mut t = ReplicaElectionResult::default();
                t.topic = TopicName(StrBytes::from_string(topic));
                t.partition_result.push(pr);
                resp.replica_election_results.push(t);
            }
        }
    }
    resp
}

//! Produce: each partition's records go to the owning shard in parallel; the answer lists the
//! partitions in request order. acks=0 gets no answer at all.

use std::time::Duration;

use futures_util::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use skein_controller::acl::{AclOperation, ResourceType};

use crate::kafka::dispatch::RequestCtx;
use crate::partition::{Acks, ProduceFailure};
use crate::shard::ids::TopicPartition;
use crate::shard::mesh::ProduceOutcome;

pub async fn handle(ctx: &RequestCtx, req: ProduceRequest) -> Option<ProduceResponse> {
    // Kafka charges a Produce its size whatever becomes of it (acks=0 included).
    ctx.charge_produce();
    let version = ctx.version();
    let acks = Acks::from_wire(req.acks);
    let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0));
    let transactional = req.transactional_id.is_some();
    let mut topics = Vec::with_capacity(req.topic_data.len());
    let mut work = Vec::new();
    for t in req.topic_data {
        let name = t.name.0.to_string();
        // One authorizer lookup per topic (one branch when the authorizer is off).
        let allowed = ctx.authorized(AclOperation::Write, ResourceType::Topic, &name);
        let mut parts = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            parts.push(p.index);
            let tp = TopicPartition::new(name.as_str(), p.index);
            let shard = ctx.shard.clone();
            work.push(async move {
                let Some(acks) = acks else {
                    return Err(ResponseError::InvalidRequiredAcks.into());
                };
                if !allowed {
                    return Err(ResponseError::TopicAuthorizationFailed.into());
                }
                if transactional {
                    // Transactions are not built; Kafka's answer for a broker without them.
                    return Err(ResponseError::TransactionalIdAuthorizationFailed.into());
                }
                match p.records {
                    Some(records) if !records.is_empty() => {
                        shard.produce(tp, records, acks, timeout).await
                    }
                    _ => Err(ResponseError::InvalidRecord.into()),
                }
            });
        }
        topics.push((t.name, parts));
    }
    let outcomes = join_all(work).await;
    for failure in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        ctx.shard.metrics.produce_error(failure.error);
    }
    let mut outcomes = outcomes.into_iter();
    if acks == Some(Acks::None) {
        return None;
    }
    let mut resp = ProduceResponse::default();
    resp.throttle_time_ms = ctx.throttle_time_ms();
    for (name, parts) in topics {
        let mut tr = TopicProduceResponse::default();
        tr.name = name;
        for index in parts {
            let outcome: Result<ProduceOutcome, ProduceFailure> = outcomes
                .next()
                .unwrap_or(Err(ResponseError::UnknownServerError.into()));
            let mut pr = PartitionProduceResponse::default();
            pr.index = index;
            pr.log_append_time_ms = -1;
            match outcome {
                Ok(o) => {
                    pr.base_offset = o.base_offset;
                    if version >= 5 {
                        pr.log_start_offset = o.log_start_offset;
                    }
                }
                Err(f) => {
                    pr.error_code = f.error.code();
                    if version >= 8 {
                        pr.error_message = f.message.map(StrBytes::from_string);
                        pr.record_errors = f
                            .record_errors
                            .into_iter()
                            .map(|i| {
                                let mut e = BatchIndexAndErrorMessage::default();
                                e.batch_index = i;
                                e
                            })
                            .collect();
                    }
                    pr.base_offset = -1;
                    if version >= 5 {
                        pr.log_start_offset = -1;
                    }
                }
            }
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    Some(resp)
}

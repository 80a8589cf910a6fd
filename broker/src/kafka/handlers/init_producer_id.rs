//! InitProducerId: producer ids for idempotent producers (`producer_ids`), on any shard.
//! Transactions are not built: a transactional id gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
//! the answer of a broker that will not serve that id, which clients report as a fatal error
//! (librdkafka: "Failed to acquire transactional PID ...: Transactional Id authorization
//! failed") instead of retrying for ever.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use skein_storage::{ProducerEpoch, ProducerId};

use skein_controller::acl::{AclOperation, ResourceType};

use crate::kafka::dispatch::RequestCtx;
use crate::producer_ids::{init_producer, ProducerIdError};

/// What the wire says when there is no producer id or epoch (v0-2 never send them).
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;

pub async fn handle(ctx: &RequestCtx, req: InitProducerIdRequest) -> InitProducerIdResponse {
    match answer(ctx, &req).await {
        Ok((id, epoch)) => response(None, id.0, epoch.0),
        Err(e) => response(Some(e), NO_PRODUCER_ID, NO_PRODUCER_EPOCH),
    }
}

async fn answer(
    ctx: &RequestCtx,
    req: &InitProducerIdRequest,
) -> Result<(ProducerId, ProducerEpoch), ResponseError> {
    match &req.transactional_id {
        None => {}
        // Kafka's coordinator refuses an empty id before anything else.
        Some(id) if id.is_empty() => return Err(ResponseError::InvalidRequest),
        Some(_) => return Err(ResponseError::TransactionalIdAuthorizationFailed),
    }
    // Kafka: an idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on a topic.
    if !ctx.cluster_authorized(AclOperation::IdempotentWrite)
        && !ctx.authorized_any(AclOperation::Write, ResourceType::Topic)
    {
        return Err(ResponseError::ClusterAuthorizationFailed);
    }
    // Kafka: both or neither (KIP-360's "current" producer id and epoch).
    let current = match (req.producer_id.0, req.producer_epoch) {
        (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => None,
        (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => return Err(ResponseError::InvalidRequest),
        (id, epoch) => Some((ProducerId(id), ProducerEpoch(epoch))),
    };
    init_producer(&ctx.shard, current).await.map_err(|e| {
        tracing::warn!(error = %e, "InitProducerId failed");
        to_error_code(&e)
    })
}

fn to_error_code(e: &ProducerIdError) -> ResponseError {
    match e {
        // Retriable for the client: Kafka answers so while a new id block is not ready yet.
        ProducerIdError::Unavailable(_)
        | ProducerIdError::Refused(_)
        | ProducerIdError::NotControllerShard(_)
        | ProducerIdError::Unreachable(_)
        | ProducerIdError::Stopping => ResponseError::CoordinatorLoadInProgress,
    }
}

fn response(error: Option<ResponseError>, id: i64, epoch: i16) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.error_code = error.map_or(0, |e| e.code());
    resp.producer_id = id.into();
    resp.producer_epoch = epoch;
    resp
}

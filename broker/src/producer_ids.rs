//! Producer ids for idempotent producers: the active controller hands out blocks of ids
//! (Kafka's AllocateProducerIds; a `ProducerIds` record in the metadata log makes each block
//! durable and cluster-wide unique before it is used), and every shard serves InitProducerId
//! from its own current block, refilled through the controller shard.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use skein_controller::service::codes;
use skein_net::internal::InternalMessage;
use skein_storage::{ProducerEpoch, ProducerId};

use crate::shard::ids::ShardId;
use crate::shard::Shard;

/// How long a block request waits for the active controller.
const ALLOCATE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("the controller refused a producer id block (error code {0})")]
    Refused(i16),
    #[error("no producer id block: {0}")]
    Unavailable(String),
    #[error("{0} is not the controller shard")]
    NotControllerShard(ShardId),
    #[error("the controller shard {0} is unreachable")]
    Unreachable(ShardId),
    #[error("the producer id allocator is shutting down")]
    Stopping,
}

/// Ids `next..end` of a block, not yet handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdBlock {
    next: i64,
    end: i64,
}

impl IdBlock {
    fn take(&mut self) -> Option<ProducerId> {
        (self.next < self.end).then(|| {
            self.next += 1;
            ProducerId(self.next - 1)
        })
    }
}

/// A shard's producer ids: its current block.
pub struct ProducerIds {
    block: Cell<IdBlock>,
    /// One block request at a time per shard.
    refill: glommio::sync::Semaphore,
}

impl Default for ProducerIds {
    fn default() -> Self {
        Self::new()
    }
}

impl ProducerIds {
    pub fn new() -> Self {
        ProducerIds {
            block: Cell::new(IdBlock::default()),
            refill: glommio::sync::Semaphore::new(1),
        }
    }

    fn take(&self) -> Option<ProducerId> {
        let mut block = self.block.get();
        let id = block.take();
        self.block.set(block);
        id
    }
}

/// Asks the active controller for a block (controller shard only).
async fn allocate(shard: &Shard) -> Result<IdBlock, ProducerIdError> {
    let plane = shard
        .control
        .as_ref()
        .ok_or(ProducerIdError::NotControllerShard(shard.id))?;
    let node_id = shard.layout.node_id.0;
    let request = InternalMessage::AllocateProducerIds {
        broker_id: node_id,
        broker_epoch: plane.broker_epoch.get(),
    };
    match plane.link.call(node_id, request, ALLOCATE_TIMEOUT).await {
        Ok(InternalMessage::AllocateProducerIdsResponse {
            error_code: codes::NONE,
            start,
            len,
        }) if start >= 0 && len > 0 => Ok(IdBlock {
            next: start,
            end: start.saturating_add(i64::from(len)),
        }),
        Ok(InternalMessage::AllocateProducerIdsResponse { error_code, .. }) => {
            Err(ProducerIdError::Refused(error_code))
        }
        Ok(other) => Err(ProducerIdError::Unavailable(format!(
            "unexpected answer {other:?}"
        ))),
        Err(e) => Err(ProducerIdError::Unavailable(e.to_string())),
    }
}

/// A fresh producer id, from this shard's block (refilled through the controller shard).
pub async fn next_id(shard: &Rc<Shard>) -> Result<ProducerId, ProducerIdError> {
    let ids = &shard.producer_ids;
    loop {
        if let Some(id) = ids.take() {
            return Ok(id);
        }
        let _refill = ids
            .refill
            .acquire_permit(1)
            .await
            .map_err(|_| ProducerIdError::Stopping)?;
        if let Some(id) = ids.take() {
            return Ok(id); // another request refilled it meanwhile
        }
        let target = shard.layout.controller_shard;
        let block = shard
            .invoke_on(target, |s| async move { allocate(&s).await })
            .await
            .unwrap_or(Err(ProducerIdError::Unreachable(target)))?;
        ids.block.set(block);
    }
}

/// InitProducerId for a producer without a transactional id: a fresh id at epoch 0, or, when
/// the producer presents an id the cluster allocated (v3+, KIP-360), the same id with its epoch
/// bumped; a fresh id again when the epoch would run out (Kafka's `isProducerEpochExhausted`).
/// The bump fences the producer's older epoch on every partition that sees the new one.
pub async fn init_producer(
    shard: &Rc<Shard>,
    current: Option<(ProducerId, ProducerEpoch)>,
) -> Result<(ProducerId, ProducerEpoch), ProducerIdError> {
    if let Some((id, epoch)) = current {
        let bumpable = (0..i16::MAX - 1).contains(&epoch.0);
        let allocated = (0..shard.metadata().next_producer_id).contains(&id.0);
        if bumpable && allocated {
            return Ok((id, ProducerEpoch(epoch.0 + 1)));
        }
    }
    Ok((next_id(shard).await?, ProducerEpoch(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_runs_out() {
        let mut b = IdBlock { next: 7, end: 9 };
        assert_eq!(b.take(), Some(ProducerId(7)));
        assert_eq!(b.take(), Some(ProducerId(8)));
        assert_eq!(b.take(), None);
    }
}

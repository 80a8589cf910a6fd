//! The one place that decides local or remote: every partition operation looks the owner up in
//! this shard's metadata snapshot and either runs here or goes to the owner over the data mesh.
//! The owner looks the partition up again before it touches the log.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;
use skein_storage::LogChunk;

use super::mesh::{ControlCall, DataCall, OffsetLookup, ProduceOutcome};
use super::Shard;
use crate::partition::{Acks, PartitionRead, ProduceFailure, ReadSpec};
use crate::shard::ids::{ShardId, TopicPartition};

/// A chunk of stored batches on its way to a socket: borrowed from this shard's log, or copied
/// once into `Bytes` by the owning shard.
pub enum FetchChunk {
    Local(LogChunk),
    Remote(Bytes),
}

impl AsRef<[u8]> for FetchChunk {
    fn as_ref(&self) -> &[u8] {
        match self {
            FetchChunk::Local(c) => c,
            FetchChunk::Remote(b) => b,
        }
    }
}

/// A long-polling fetch waits for `tp` to have data past `offset`: past the high watermark for
/// a consumer, past the log end for a follower (`replica`).
#[derive(Clone, Debug)]
pub struct Watch {
    pub tp: TopicPartition,
    pub offset: i64,
    pub replica: bool,
}

/// ListOffsets' special timestamps.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;

enum Owner {
    Here,
    There(ShardId),
}

impl Shard {
    /// Where a client request for `tp` runs: the shard of this node's replica, if it leads.
    fn owner_of(&self, tp: &TopicPartition) -> Result<Owner, ResponseError> {
        let o = self.metadata().owner(&tp.topic, tp.partition)?;
        Ok(if o.shard == self.id {
            Owner::Here
        } else {
            Owner::There(o.shard)
        })
    }

    pub async fn produce(
        &self,
        tp: TopicPartition,
        records: Bytes,
        acks: Acks,
        timeout: Duration,
    ) -> Result<ProduceOutcome, ProduceFailure> {
        match self.owner_of(&tp) {
            Err(e) => Err(e.into()),
            Ok(Owner::Here) => self.produce_local(&tp, records, acks, timeout).await,
            Ok(Owner::There(shard)) => {
                let (reply, rx) = oneshot::channel();
                self.call(
                    shard,
                    DataCall::Produce {
                        tp,
                        records,
                        acks,
                        timeout,
                        reply,
                    },
                    rx,
                )
                .await
                .unwrap_or(Err(ResponseError::NotLeaderOrFollower.into()))
            }
        }
    }

    async fn produce_local(
        &self,
        tp: &TopicPartition,
        records: Bytes,
        acks: Acks,
        timeout: Duration,
    ) -> Result<ProduceOutcome, ProduceFailure> {
        let p = self
            .partition(tp)
            .ok_or(ResponseError::NotLeaderOrFollower)?;
        let info = p.produce(records, acks, timeout).await?;
        Ok(ProduceOutcome {
            base_offset: info.first_offset,
            log_start_offset: p.log.log_start_offset(),
        })
    }

    pub async fn read(&self, tp: TopicPartition, spec: ReadSpec) -> PartitionRead<FetchChunk> {
        match self.owner_of(&tp) {
            Err(e) => PartitionRead::error(e),
            Ok(Owner::Here) => {
                let r = self.read_local(&tp, spec).await;
                r.map_chunks(FetchChunk::Local)
            }
            Ok(Owner::There(shard)) => {
                let (reply, rx) = oneshot::channel();
                match self
                    .call(shard, DataCall::Read { tp, spec, reply }, rx)
                    .await
                {
                    Some(r) => r.map_chunks(FetchChunk::Remote),
                    None => PartitionRead::error(ResponseError::NotLeaderOrFollower),
                }
            }
        }
    }

    async fn read_local(&self, tp: &TopicPartition, spec: ReadSpec) -> PartitionRead<LogChunk> {
        match self.partition(tp) {
            None => PartitionRead::error(ResponseError::NotLeaderOrFollower),
            Some(p) => p.read(spec).await,
        }
    }

    /// Waits until any watched partition has data past its offset, or the deadline passes.
    pub async fn wait_for_data(&self, watches: Vec<Watch>, deadline: Instant) {
        let mut by_shard: Vec<(ShardId, Vec<Watch>)> = Vec::new();
        for watch in watches {
            let tp = &watch.tp;
            let shard = match self.owner_of(tp) {
                Ok(Owner::Here) => self.id,
                Ok(Owner::There(s)) => s,
                Err(_) => return,
            };
            match by_shard.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, v)) => v.push(watch),
                None => by_shard.push((shard, vec![watch])),
            }
        }
        let mut waits: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>> =
            Vec::new();
        for (shard, watches) in by_shard {
            if shard == self.id {
                waits.push(Box::pin(self.wait_local(watches, deadline)));
            } else {
                let (reply, rx) = oneshot::channel();
                if self
                    .mesh
                    .send_data(
                        shard,
                        DataCall::WaitForData {
                            watches,
                            deadline,
                            reply,
                        },
                    )
                    .await
                    .is_err()
                {
                    return;
                }
                waits.push(Box::pin(async move {
                    let _ = rx.await;
                }));
            }
        }
        let timeout = Box::pin(glommio::timer::sleep(
            deadline.saturating_duration_since(Instant::now()),
        ));
        let any = futures_util::future::select_all(waits);
        futures_util::future::select(Box::pin(any), timeout).await;
    }

    async fn wait_local(&self, watches: Vec<Watch>, deadline: Instant) {
        let mut receivers = Vec::new();
        for w in &watches {
            match self.partition(&w.tp) {
                Some(p) if !p.has_data_for(w.offset, w.replica) => {
                    receivers.push(p.wait_for_append())
                }
                // Data already there, or the partition moved: let the fetch re-read now.
                _ => return,
            }
        }
        if receivers.is_empty() {
            return;
        }
        let timeout = Box::pin(glommio::timer::sleep(
            deadline.saturating_duration_since(Instant::now()),
        ));
        futures_util::future::select(futures_util::future::select_all(receivers), timeout).await;
    }

    pub async fn list_offset(
        &self,
        tp: TopicPartition,
        timestamp: i64,
        current_leader_epoch: i32,
    ) -> Result<OffsetLookup, ResponseError> {
        match self.owner_of(&tp) {
            Err(e) => Err(e),
            Ok(Owner::Here) => {
                self.list_offset_local(&tp, timestamp, current_leader_epoch)
                    .await
            }
            Ok(Owner::There(shard)) => {
                let (reply, rx) = oneshot::channel();
                let call = DataCall::ListOffset {
                    tp,
                    timestamp,
                    current_leader_epoch,
                    reply,
                };
                self.call(shard, call, rx)
                    .await
                    .unwrap_or(Err(ResponseError::NotLeaderOrFollower))
            }
        }
    }

    async fn list_offset_local(
        &self,
        tp: &TopicPartition,
        timestamp: i64,
        current_leader_epoch: i32,
    ) -> Result<OffsetLookup, ResponseError> {
        let p = self
            .partition(tp)
            .filter(|p| p.is_leader())
            .ok_or(ResponseError::NotLeaderOrFollower)?;
        let leader_epoch = p.leader_epoch();
        if current_leader_epoch >= 0 && current_leader_epoch < leader_epoch {
            return Err(ResponseError::FencedLeaderEpoch);
        }
        if current_leader_epoch > leader_epoch {
            return Err(ResponseError::UnknownLeaderEpoch);
        }
        if timestamp != EARLIEST_TIMESTAMP && !p.high_watermark_settled() {
            return Err(ResponseError::OffsetNotAvailable);
        }
        let hw = p.log.high_watermark();
        let found = |offset, timestamp| {
            Ok(OffsetLookup {
                offset,
                timestamp,
                leader_epoch,
            })
        };
        match timestamp {
            LATEST_TIMESTAMP => found(hw, -1),
            EARLIEST_TIMESTAMP => found(p.log.log_start_offset(), -1),
            ts if ts < 0 => Err(ResponseError::InvalidRequest),
            ts => match p.log.offset_for_timestamp(ts).await {
                Ok(Some((batch_offset, batch_ts))) if batch_offset < hw => {
                    // The log answers per batch; Kafka answers with the exact record.
                    let exact = match p.log.read(batch_offset, 1, hw).await {
                        Ok(r) => r.chunks.into_iter().next().and_then(|c| {
                            crate::validate::first_record_at_or_after(&c.into_bytes(), ts)
                        }),
                        Err(_) => None,
                    };
                    match exact {
                        Some((offset, record_ts)) => found(offset, record_ts),
                        None => found(batch_offset, batch_ts),
                    }
                }
                Ok(_) => found(-1, -1),
                Err(e) => {
                    tracing::warn!(partition = %tp, error = %e, "timestamp lookup failed");
                    Err(ResponseError::KafkaStorageError)
                }
            },
        }
    }

    /// Runs `f` on `target` (here, if it is this shard); `None` if the target went away.
    pub async fn invoke_on<T, F, Fut>(self: &Rc<Self>, target: ShardId, f: F) -> Option<T>
    where
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
        T: Send + 'static,
    {
        if target == self.id {
            return Some(f(self.clone()).await);
        }
        let (tx, rx) = oneshot::channel();
        let call: super::mesh::Invocation = Box::new(move |shard| {
            Box::pin(async move {
                let _ = tx.send(f(shard).await);
            })
        });
        self.mesh
            .send_data(target, DataCall::Invoke(call))
            .await
            .ok()?;
        rx.await.ok()
    }

    /// Sends a data call and waits for its answer; `None` if the owner went away.
    async fn call<T>(&self, shard: ShardId, call: DataCall, rx: oneshot::Receiver<T>) -> Option<T> {
        self.mesh.send_data(shard, call).await.ok()?;
        rx.await.ok()
    }
}

/// Runs a data call that another shard sent here.
pub async fn serve_data_call(shard: Rc<Shard>, call: DataCall) {
    match call {
        DataCall::Produce {
            tp,
            records,
            acks,
            timeout,
            reply,
        } => {
            let r = shard.produce_local(&tp, records, acks, timeout).await;
            let _ = reply.send(r);
        }
        DataCall::Read { tp, spec, reply } => {
            let r = shard.read_local(&tp, spec).await;
            let _ = reply.send(r.map_chunks(LogChunk::into_bytes));
        }
        DataCall::WaitForData {
            watches,
            deadline,
            mut reply,
        } => {
            let cancelled = reply.cancellation();
            futures_util::future::select(Box::pin(shard.wait_local(watches, deadline)), cancelled)
                .await;
            let _ = reply.send(());
        }
        DataCall::Invoke(f) => f(shard).await,
        DataCall::ListOffset {
            tp,
            timestamp,
            current_leader_epoch,
            reply,
        } => {
            let r = shard
                .list_offset_local(&tp, timestamp, current_leader_epoch)
                .await;
            let _ = reply.send(r);
        }
    }
}

/// Runs a control call that another shard sent here.
pub async fn serve_control_call(shard: Rc<Shard>, call: ControlCall) {
    match call {
        ControlCall::Apply { snapshot, reply } => {
            let r = shard.apply_metadata(snapshot).await;
            let _ = reply.send(r);
        }
        ControlCall::Admin { op, reply } => {
            let r = crate::admin::execute(&shard, op).await;
            let _ = reply.send(r);
        }
        ControlCall::Forward {
            request,
            timeout,
            reply,
        } => {
            let r = crate::admin::execute_forward(&shard, request, timeout).await;
            let _ = reply.send(r);
        }
        ControlCall::AlterScram { alteration, reply } => {
            let r = crate::users::execute_alter(&shard, alteration).await;
            let _ = reply.send(r);
        }
    }
}

//! Cross-shard calls: what one shard may ask another, over two bounded glommio meshes (data and
//! control) so a produce storm cannot starve a metadata swap. Every call carries a oneshot reply;
//! a full channel makes the caller wait (back-pressure), it never drops a call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use kafka_protocol::error::ResponseError;
use skein_net::internal::InternalMessage;

use crate::admin::{AdminOp, AdminReply, ForwardReply};
use crate::metadata::ClusterMetadata;
use crate::partition::{Acks, PartitionRead, ProduceFailure, ReadSpec};
use crate::shard::ids::{ShardId, TopicPartition};

/// The result of appending one partition's records, as Produce reports it.
#[derive(Clone, Copy, Debug)]
pub struct ProduceOutcome {
    pub base_offset: i64,
    pub log_start_offset: i64,
}

/// Answer to one ListOffsets lookup.
#[derive(Clone, Copy, Debug)]
pub struct OffsetLookup {
    pub offset: i64,
    pub timestamp: i64,
    pub leader_epoch: i32,
}

/// A closure run on another shard (like Seastar's `invoke_on`): for coordinator work whose
/// state lives with a partition. It answers through its own oneshot.
pub type Invocation = Box<
    dyn FnOnce(
            std::rc::Rc<crate::shard::Shard>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>
        + Send,
>;

/// Data-path calls. If the mesh is full the caller waits; the client's request timeout bounds it.
pub enum DataCall {
    Produce {
        tp: TopicPartition,
        records: Bytes,
        acks: Acks,
        /// How long an acks=all produce waits for the ISR.
        timeout: std::time::Duration,
        reply: oneshot::Sender<Result<ProduceOutcome, ProduceFailure>>,
    },
    /// Stored chunks cross as `Bytes` (DMA buffers are not `Send`: a disk read is copied once).
    Read {
        tp: TopicPartition,
        spec: ReadSpec,
        reply: oneshot::Sender<PartitionRead<Bytes>>,
    },
    /// Resolves when any watched partition has data past its offset, or at the deadline.
    WaitForData {
        watches: Vec<super::route::Watch>,
        deadline: Instant,
        reply: oneshot::Sender<()>,
    },
    Invoke(Invocation),
    ListOffset {
        tp: TopicPartition,
        timestamp: i64,
        current_leader_epoch: i32,
        reply: oneshot::Sender<Result<OffsetLookup, ResponseError>>,
    },
}

/// Control-path calls: metadata swaps and admin operations.
pub enum ControlCall {
    /// Install a new metadata snapshot and open/close partitions to match it.
    Apply {
        snapshot: Arc<ClusterMetadata>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// An admin operation, sent to the metadata (controller) shard.
    Admin {
        op: AdminOp,
        reply: oneshot::Sender<AdminReply>,
    },
    /// A request for the active controller, sent to the metadata (controller) shard, which
    /// holds the link to it.
    Forward {
        request: InternalMessage,
        timeout: Duration,
        reply: oneshot::Sender<ForwardReply>,
    },
    /// A SCRAM credential change, sent to the metadata (controller) shard.
    AlterScram {
        alteration: crate::users::ScramAlteration,
        reply: oneshot::Sender<crate::users::ScramReply>,
    },
}

/// Everything a shard needs at boot to join the meshes; cloned into every executor.
#[derive(Clone)]
pub struct MeshBoot {
    pub data: MeshBuilder<DataCall, Full>,
    pub control: MeshBuilder<ControlCall, Full>,
    /// Peer index in the meshes of each shard; glommio orders peers by executor id, which need
    /// not match our shard ids, so every shard publishes its own.
    pub peer_of_shard: Arc<Vec<AtomicUsize>>,
}

impl MeshBoot {
    pub fn new(shards: usize) -> Self {
        MeshBoot {
            data: MeshBuilder::full(shards, crate::limits::DATA_MESH_DEPTH),
            control: MeshBuilder::full(shards, crate::limits::CONTROL_MESH_DEPTH),
            peer_of_shard: Arc::new((0..shards).map(|_| AtomicUsize::new(usize::MAX)).collect()),
        }
    }
}

/// A shard's senders into the meshes.
pub struct ShardMesh {
    data: Senders<DataCall>,
    control: Senders<ControlCall>,
    peer_of_shard: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
#[error("shard {0} is not reachable: its mesh channel is closed")]
pub struct MeshClosed(pub ShardId);

impl ShardMesh {
    pub fn new(
        data: Senders<DataCall>,
        control: Senders<ControlCall>,
        peer_of_shard: Vec<usize>,
    ) -> Self {
        ShardMesh {
            data,
            control,
            peer_of_shard,
        }
    }

    fn peer(&self, shard: ShardId) -> Result<usize, MeshClosed> {
        self.peer_of_shard
            .get(shard.index())
            .copied()
            .ok_or(MeshClosed(shard))
    }

    pub async fn send_data(&self, shard: ShardId, call: DataCall) -> Result<(), MeshClosed> {
        let peer = self.peer(shard)?;
        self.data
            .send_to(peer, call)
            .await
            .map_err(|_| MeshClosed(shard))
    }

    pub async fn send_control(&self, shard: ShardId, call: ControlCall) -> Result<(), MeshClosed> {
        let peer = self.peer(shard)?;
        self.control
            .send_to(peer, call)
            .await
            .map_err(|_| MeshClosed(shard))
    }
}

/// Waits (yielding to the executor) until every shard has published its peer index.
pub async fn await_peer_map(map: &[AtomicUsize]) -> Vec<usize> {
    loop {
        let ids: Vec<usize> = map.iter().map(|a| a.load(Ordering::Acquire)).collect();
        if ids.iter().all(|i| *i != usize::MAX) {
            return ids;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
}

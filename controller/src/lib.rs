//! skein-controller: the cluster's metadata state machine and the Raft group that orders it
//! (per node; the Raft voter lives on the node's controller shard).
//!
//! What exists:
//! - [`image`]: the metadata records and the `ClusterImage` they add up to; [`placement`] and
//!   [`decide`]: the active controller's decisions (registration, fencing, elections, ISR
//!   changes, topics), all pure and deterministic so every voter applying the same log agrees;
//!   [`heartbeats`]: broker liveness as the active controller sees it.
//! - [`acl`]: ACL bindings (Kafka's model, kept in the image), the filters that match them and
//!   the authorizer's decision, all pure.
//! - [`client_quota`]: client quotas (Kafka's KIP-546 entities and keys, kept in the image),
//!   DescribeClientQuotas' filters and the precedence that picks a connection's quota, pure.
//! - [`codec`]: the hand-written, versioned binary formats of a record batch (one Raft entry),
//!   the image (a snapshot's data) and a stored Raft entry.
//! - [`node`]: [`ControllerNode`], one voter of a Raft group of 1, 3 or 5 (raft-rs `RawNode`,
//!   ticked on a timer on the current glommio executor), with `propose`, `is_leader`,
//!   `leader_id`, `image` and `status`. Its log, hard state and snapshots are kept on disk
//!   with skein-storage (module `raft_log`, layout described there) and survive restarts.
//!   Single-node mode is `ControllerConfig::single_node`: a one-voter group that leads at once.
//! - [`transport`]: what a transport implements ([`RaftTransport`]) and the wire encoding of
//!   a Raft message; incoming messages go to a node's [`Mailbox`].
//! - [`rpc`]: the internal RPC over TCP: [`serve`] (a node's server: Raft frames to its
//!   mailbox, requests to a [`RequestHandler`]), [`PeerTransport`] (a voter's outgoing Raft
//!   messages) and [`RemoteClient`] (calls that find the active controller among the voters).
//!
//! - [`service`]: [`service::ControllerService`], a voter as brokers see it: it answers the
//!   RPCs above (registration, heartbeats, metadata fetches, forwarded admin requests, ISR
//!   changes, producer id blocks) and, while active, fences silent brokers and elects
//!   preferred leaders.
//!
//! Not yet: flatbuffers records on the wire, the broker's use of the controller (single-node
//! mode inside `skein broker` included; on branch `cluster-broker`), and membership changes
//! (the voter set is fixed when the group is born; a restart with other voters is refused).

pub mod acl;
pub mod client_quota;
pub mod codec;
pub mod decide;
mod error;
pub mod events;
pub mod heartbeats;
mod ids;
pub mod image;
pub mod limits;
pub mod node;
pub mod placement;
mod raft_log;
pub mod rpc;
pub mod service;
#[cfg(test)]
mod test_util;
pub mod transport;

pub use error::ControllerError;
pub use ids::NodeId;
pub use node::{
    Committed, ControllerConfig, ControllerNode, DeliverError, Mailbox, NodeStatus, ProposeError,
    Role,
};
pub use raft::eraftpb::Message as RaftMessage;
pub use rpc::{serve, PeerTransport, RemoteClient, RequestHandler, RpcError};
pub use transport::{decode_message, encode_message, RaftTransport};

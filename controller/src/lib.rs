//! skein-controller: the cluster's metadata state machine. Today: the metadata image and its
//! records ([`image`]), replica placement ([`placement`]) and the active controller's decisions
//! ([`decide`]: registration, fencing, leader election, ISR changes, topics), all pure and
//! deterministic so every voter applying the same log agrees. The Raft log that orders the
//! records, the internal RPC and the brokers that follow the log come with the controller issue.

pub mod codec;
pub mod decide;
mod error;
pub mod heartbeats;
mod ids;
pub mod image;
pub mod limits;
pub mod node;
pub mod placement;
mod raft_log;
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
pub use transport::{decode_message, encode_message, RaftTransport};

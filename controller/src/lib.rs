//! skein-controller: the cluster's metadata state machine. Today: the metadata image and its
//! records ([`image`]), replica placement ([`placement`]) and the active controller's decisions
//! ([`decide`]: registration, fencing, leader election, ISR changes, topics), all pure and
//! deterministic so every voter applying the same log agrees. The Raft log that orders the
//! records, the internal RPC and the brokers that follow the log come with the controller issue.

pub mod codec;
pub mod decide;
mod error;
pub mod heartbeats;
pub mod image;
pub mod limits;
pub mod placement;
mod raft_log;
#[cfg(test)]
mod test_util;

pub use error::ControllerError;

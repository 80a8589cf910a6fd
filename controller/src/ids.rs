//! `NodeId`: a controller voter's node id (cluster-wide). Raft-rs names peers by `u64` and
//! reserves 0 for "none", so voter ids are positive; the conversion lives here and nowhere else.

use std::fmt;

/// A node's id (`node.id` in the config), the same number as its broker id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub i32);

impl NodeId {
    /// The raft-rs peer id, or `None` for ids raft-rs cannot carry (0 and negatives).
    pub fn to_raft(self) -> Option<u64> {
        u64::try_from(self.0).ok().filter(|id| *id > 0)
    }

    /// The node behind a raft-rs peer id; `None` for 0 ("no one") and ids out of range.
    pub fn from_raft(id: u64) -> Option<NodeId> {
        i32::try_from(id).ok().filter(|id| *id > 0).map(NodeId)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_ids_are_positive_node_ids() {
        assert_eq!(NodeId(3).to_raft(), Some(3));
        assert_eq!(NodeId(0).to_raft(), None);
        assert_eq!(NodeId(-1).to_raft(), None);
        assert_eq!(NodeId::from_raft(3), Some(NodeId(3)));
        assert_eq!(NodeId::from_raft(0), None);
        assert_eq!(NodeId::from_raft(u64::MAX), None);
    }
}

//! Consumer groups under the classic rebalance protocol. A group is coordinated by the shard that
//! owns its partition of the internal `__consumer_offsets` topic; membership, assignments and
//! committed offsets are records in that partition, replayed when it opens.

pub mod coordinator;
pub mod offsets;
pub mod records;
pub mod state;
pub mod store;

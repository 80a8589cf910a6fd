//! Consumer-group state. Today: committed offsets, stored durably as records in the internal
//! `__consumer_offsets` topic and served by the shard that owns the group's partition of it.
//! The group membership protocol (JoinGroup, SyncGroup, ...) comes with the consumer-group issue.

pub mod coordinator;
pub mod offsets;

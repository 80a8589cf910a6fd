//! The controller's Raft log (controller shard of each voter): `MemLog` is what raft-rs reads
//! (raft-rs's `Storage`, synchronous, in memory), `DiskLog` is what survives a restart (a
//! skein-storage partition log plus two checkpoint files). The driver writes to `DiskLog`
//! first and to `MemLog` after, so raft-rs only ever sees durable state.
//!
//! On disk, in the controller's data dir:
//! ```text
//! log/            skein-storage partition log: offset N = Raft index N, one batch per entry
//! raft-state      HardState (term, vote, commit) + ConfState, checksummed, replaced atomically
//! snapshot        the latest snapshot: index, term, ConfState, encoded image, checksummed
//! ```

mod disk;
mod files;
mod memory;

pub(crate) use disk::DiskLog;
pub(crate) use memory::MemLog;

//! Producer ids for idempotent producers: one node-wide allocator on the metadata shard hands
//! out blocks of ids, and every shard serves InitProducerId from its own current block.
//!
//! The metadata shard owns `<data_dir>/producer-ids`: the first id no block has covered yet. A
//! block is made durable there (temp file, fsync, rename, fsync of the directory) before any id
//! of it is handed out, so a crash may skip ids but never hands one out twice. The controller
//! issue replaces `BlockStore` with producer-id-block records in the metadata log (Kafka's
//! AllocateProducerIds); shards keep asking through `next_id` and `init_producer`.

use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use skein_storage::{ProducerEpoch, ProducerId};

use crate::limits::PRODUCER_IDS_PER_BLOCK;
use crate::shard::ids::ShardId;
use crate::shard::Shard;

const FILE_NAME: &str = "producer-ids";
const FILE_VERSION: &str = "0";

#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("producer id file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("producer id file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: &'static str },
    #[error("every producer id has been handed out")]
    Exhausted,
    #[error("{0} does not own the producer id allocator")]
    NotMetadataShard(ShardId),
    #[error("the metadata shard {0} is unreachable")]
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

/// The durable record of allocated blocks (metadata shard only).
pub struct BlockStore {
    data_dir: PathBuf,
    /// First id not covered by any block handed out; what the file says.
    next_unallocated: Cell<i64>,
    /// One allocation at a time, so each sees the previous one's result.
    lock: glommio::sync::Semaphore,
}

impl BlockStore {
    /// Reads the file (a new data dir starts at id 0). Blocking: once, at shard start-up.
    pub fn load(data_dir: &Path) -> Result<BlockStore, ProducerIdError> {
        let path = data_dir.join(FILE_NAME);
        let next = match fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|reason| ProducerIdError::Corrupt {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(ProducerIdError::Io { path, source }),
        };
        Ok(BlockStore {
            data_dir: data_dir.to_path_buf(),
            next_unallocated: Cell::new(next),
            lock: glommio::sync::Semaphore::new(1),
        })
    }

    /// Allocates the next `count` ids, durably, before returning them.
    pub async fn allocate(&self, count: i64) -> Result<IdBlock, ProducerIdError> {
        let _permit = self
            .lock
            .acquire_permit(1)
            .await
            .map_err(|_| ProducerIdError::Stopping)?;
        let start = self.next_unallocated.get();
        let end = start.checked_add(count).ok_or(ProducerIdError::Exhausted)?;
        let data_dir = self.data_dir.clone();
        glommio::executor()
            .spawn_blocking(move || store(&data_dir, end))
            .await?;
        self.next_unallocated.set(end);
        Ok(IdBlock { next: start, end })
    }

    /// True when `id` lies in a block this node handed out.
    pub fn was_allocated(&self, id: ProducerId) -> bool {
        (0..self.next_unallocated.get()).contains(&id.0)
    }
}

fn parse(text: &str) -> Result<i64, &'static str> {
    let mut lines = text.lines();
    if lines.next() != Some(FILE_VERSION) {
        return Err("unknown version");
    }
    let next: i64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("no next producer id")?;
    if next < 0 {
        return Err("negative next producer id");
    }
    Ok(next)
}

/// Writes the file so that a crash leaves the old or the new value, never a torn one.
fn store(data_dir: &Path, next_unallocated: i64) -> Result<(), ProducerIdError> {
    let path = data_dir.join(FILE_NAME);
    let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
    let io = |source| ProducerIdError::Io {
        path: path.clone(),
        source,
    };
    {
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(format!("{FILE_VERSION}\n{next_unallocated}\n").as_bytes())
            .map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, &path).map_err(io)?;
    fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// A shard's producer ids: its current block, and the allocator on the metadata shard.
pub struct ProducerIds {
    block: Cell<IdBlock>,
    /// One block request at a time per shard.
    refill: glommio::sync::Semaphore,
    store: Option<BlockStore>,
}

impl ProducerIds {
    /// `store` is `Some` on the metadata shard.
    pub fn new(store: Option<BlockStore>) -> Self {
        ProducerIds {
            block: Cell::new(IdBlock::default()),
            refill: glommio::sync::Semaphore::new(1),
            store,
        }
    }

    fn take(&self) -> Option<ProducerId> {
        let mut block = self.block.get();
        let id = block.take();
        self.block.set(block);
        id
    }
}

/// A fresh producer id, from this shard's block (refilled from the metadata shard).
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
            .invoke_on(target, |s| async move {
                match &s.producer_ids.store {
                    Some(store) => store.allocate(PRODUCER_IDS_PER_BLOCK).await,
                    None => Err(ProducerIdError::NotMetadataShard(s.id)),
                }
            })
            .await
            .unwrap_or(Err(ProducerIdError::Unreachable(target)))?;
        ids.block.set(block);
    }
}

/// InitProducerId for a producer without a transactional id: a fresh id at epoch 0, or, when
/// the producer presents an id this node allocated (v3+, KIP-360), the same id with its epoch
/// bumped; a fresh id again when the epoch would run out (Kafka's `isProducerEpochExhausted`).
/// The bump fences the producer's older epoch on every partition that sees the new one.
pub async fn init_producer(
    shard: &Rc<Shard>,
    current: Option<(ProducerId, ProducerEpoch)>,
) -> Result<(ProducerId, ProducerEpoch), ProducerIdError> {
    if let Some((id, epoch)) = current {
        let bumpable = (0..i16::MAX - 1).contains(&epoch.0);
        if bumpable && was_allocated(shard, id).await? {
            return Ok((id, ProducerEpoch(epoch.0 + 1)));
        }
    }
    Ok((next_id(shard).await?, ProducerEpoch(0)))
}

async fn was_allocated(shard: &Rc<Shard>, id: ProducerId) -> Result<bool, ProducerIdError> {
    let target = shard.layout.controller_shard;
    shard
        .invoke_on(target, move |s| async move {
            match &s.producer_ids.store {
                Some(store) => Ok(store.was_allocated(id)),
                None => Err(ProducerIdError::NotMetadataShard(s.id)),
            }
        })
        .await
        .unwrap_or(Err(ProducerIdError::Unreachable(target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future<Output = ()> + 'static>(f: F) {
        glommio::LocalExecutorBuilder::default()
            .make()
            .unwrap()
            .run(f);
    }

    #[test]
    fn blocks_are_durable_before_use_and_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let store = BlockStore::load(&path).unwrap();
            let mut a = store.allocate(3).await.unwrap();
            assert_eq!(fs::read_to_string(path.join(FILE_NAME)).unwrap(), "0\n3\n");
            let b = store.allocate(3).await.unwrap();
            assert_eq!(a.take(), Some(ProducerId(0)));
            assert!(store.was_allocated(ProducerId(5)));
            assert!(!store.was_allocated(ProducerId(6)));
            assert!(!store.was_allocated(ProducerId(-1)));
            // A restart (or a crash) continues after every block handed out, used or not.
            let again = BlockStore::load(&path).unwrap();
            let mut c = again.allocate(3).await.unwrap();
            assert_eq!(c.take(), Some(ProducerId(6)));
            assert_eq!(b, IdBlock { next: 3, end: 6 });
        });
    }

    #[test]
    fn a_corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), "0\nminus one\n").unwrap();
        assert!(matches!(
            BlockStore::load(dir.path()),
            Err(ProducerIdError::Corrupt { .. })
        ));
        fs::write(dir.path().join(FILE_NAME), "9\n4\n").unwrap();
        assert!(BlockStore::load(dir.path()).is_err());
        assert_eq!(parse("0\n42\n"), Ok(42));
    }

    #[test]
    fn a_block_runs_out() {
        let mut b = IdBlock { next: 7, end: 9 };
        assert_eq!(b.take(), Some(ProducerId(7)));
        assert_eq!(b.take(), Some(ProducerId(8)));
        assert_eq!(b.take(), None);
    }
}

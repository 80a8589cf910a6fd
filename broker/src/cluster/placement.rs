//! Which shard holds each replica this node hosts (`<data_dir>/placement.json`), chosen when
//! the replica first appears and kept across restarts so a partition does not wander between
//! cores. Losing the file loses nothing: a replica's log is found by its directory name, only
//! its shard may be chosen anew.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::shard::ids::ShardId;

const FILE_NAME: &str = "placement.json";

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Placement {
    /// "<topic id>/<partition>" → (topic name, shard).
    replicas: BTreeMap<String, (String, u16)>,
}

fn key(topic_id: Uuid, partition: i32) -> String {
    format!("{topic_id}/{partition}")
}

impl Placement {
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// Reads the file; a missing one is an empty placement. Blocking: before the shards start.
    pub fn load(data_dir: &Path) -> Result<Placement, String> {
        let path = Self::path_in(data_dir);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is corrupt: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Placement::default()),
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }

    pub fn get(&self, topic_id: Uuid, partition: i32) -> Option<ShardId> {
        self.replicas
            .get(&key(topic_id, partition))
            .map(|(_, s)| ShardId(*s))
    }

    pub fn insert(&mut self, topic_id: Uuid, topic: &str, partition: i32, shard: ShardId) {
        self.replicas
            .insert(key(topic_id, partition), (topic.to_string(), shard.0));
    }

    /// Keeps only the replicas `keep` says this node still hosts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.replicas.retain(|k, _| keep(k));
    }

    pub fn key_of(topic_id: Uuid, partition: i32) -> String {
        key(topic_id, partition)
    }

    /// (topic name, partition, shard) of every replica, for `skein layout`.
    pub fn entries(&self) -> Vec<(String, i32, ShardId)> {
        self.replicas
            .iter()
            .filter_map(|(k, (name, shard))| {
                let partition = k.rsplit_once('/')?.1.parse().ok()?;
                Some((name.clone(), partition, ShardId(*shard)))
            })
            .collect()
    }

    /// Writes the file so a crash leaves the old or the new version (temp, fsync, rename,
    /// fsync of the directory). Blocking: run it off the executor.
    pub fn store(&self, data_dir: &Path) -> Result<(), String> {
        let path = Self::path_in(data_dir);
        let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
        let io = |e: std::io::Error| format!("writing {}: {e}", path.display());
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        {
            let mut f = fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        fs::rename(&tmp, &path).map_err(io)?;
        fs::File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_a_corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Placement::load(dir.path()).unwrap(), Placement::default());
        let mut p = Placement::default();
        let id = Uuid::new_v4();
        p.insert(id, "t", 3, ShardId(2));
        p.store(dir.path()).unwrap();
        let again = Placement::load(dir.path()).unwrap();
        assert_eq!(again.get(id, 3), Some(ShardId(2)));
        assert_eq!(again.entries(), vec![("t".to_string(), 3, ShardId(2))]);
        fs::write(Placement::path_in(dir.path()), b"{oops").unwrap();
        assert!(Placement::load(dir.path()).is_err());
    }
}

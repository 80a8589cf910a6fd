//! Durable copy of the node's metadata (`<data_dir>/metadata.json`), owned by the metadata
//! shard. Written whole with write-to-temp, fsync, rename, fsync-dir, so a crash leaves either
//! the old or the new file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::metadata::ClusterMetadata;
use crate::shard::ids::NodeId;

const FILE_NAME: &str = "metadata.json";

#[derive(Debug, thiserror::Error)]
pub enum MetadataStoreError {
    #[error("metadata file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata file {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "data dir {path} belongs to node {found}, but this node is configured as {configured}"
    )]
    WrongNode {
        path: PathBuf,
        found: i32,
        configured: i32,
    },
}

pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Loads the metadata, or starts a fresh cluster id if this data dir is new. Blocking: call
/// before the shards start.
pub fn load_or_init(
    data_dir: &Path,
    node_id: NodeId,
) -> Result<ClusterMetadata, MetadataStoreError> {
    let path = path_in(data_dir);
    let io = |source| MetadataStoreError::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(data_dir).map_err(io)?;
    let mut md = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<ClusterMetadata>(&bytes).map_err(|e| {
            MetadataStoreError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            }
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let md = ClusterMetadata::new(new_cluster_id(), node_id);
            write_atomically(data_dir, &md)?;
            md
        }
        Err(e) => return Err(io(e)),
    };
    if md.node_id != node_id {
        return Err(MetadataStoreError::WrongNode {
            path: data_dir.to_path_buf(),
            found: md.node_id.0,
            configured: node_id.0,
        });
    }
    md.reindex();
    Ok(md)
}

/// Writes the metadata so that a crash at any point leaves the old or the new version.
pub fn write_atomically(data_dir: &Path, md: &ClusterMetadata) -> Result<(), MetadataStoreError> {
    let path = path_in(data_dir);
    let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
    let io = |source| MetadataStoreError::Io {
        path: path.clone(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(md).map_err(|e| MetadataStoreError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
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

/// Kafka cluster ids are 22-character url-safe base64 of a UUID.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = uuid::Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_node() {
        let dir = tempfile::tempdir().unwrap();
        let md = load_or_init(dir.path(), NodeId(3)).unwrap();
        assert_eq!(md.cluster_id.len(), 22);
        let again = load_or_init(dir.path(), NodeId(3)).unwrap();
        assert_eq!(again.cluster_id, md.cluster_id);
        assert!(matches!(
            load_or_init(dir.path(), NodeId(4)),
            Err(MetadataStoreError::WrongNode { .. })
        ));
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(path_in(dir.path()), b"{not json").unwrap();
        assert!(matches!(
            load_or_init(dir.path(), NodeId(1)),
            Err(MetadataStoreError::Corrupt { .. })
        ));
    }
}

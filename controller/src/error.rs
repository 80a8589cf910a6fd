//! `ControllerError`: why a controller node could not start or had to stop (per node). What a
//! proposal can run into is `ProposeError` (node/mod.rs); decisions have `DecideError`.

use std::io;
use std::path::PathBuf;

use skein_storage::StorageError;

use crate::codec::{DecodeError, EncodeError};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("invalid controller config: {0}")]
    InvalidConfig(String),
    /// The Raft log's partition log failed (EIO, ENOSPC, corruption found by recovery).
    #[error("controller log {op}: {source}")]
    Storage {
        op: &'static str,
        #[source]
        source: StorageError,
    },
    #[error("I/O error while {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file or log entry failed its checksum or its structure check.
    #[error("corrupt {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("decoding {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: DecodeError,
    },
    /// A committed entry does not decode: applying around it would diverge from the voters
    /// that can read it, so the node stops.
    #[error("committed entry {raft_index} does not decode: {source}")]
    CommittedEntry {
        raft_index: u64,
        #[source]
        source: DecodeError,
    },
    #[error("encoding: {0}")]
    Encode(#[from] EncodeError),
    #[error("raft {op}: {source}")]
    Raft {
        op: &'static str,
        #[source]
        source: raft::Error,
    },
    /// Membership changes are not implemented: the voter set is fixed when the group is born.
    #[error(
        "stored voters {stored:?} differ from the configured {configured:?}; \
         membership changes are not supported yet"
    )]
    VotersChanged {
        stored: Vec<u64>,
        configured: Vec<u64>,
    },
    #[error("{what} of {size_bytes} bytes exceeds the limit of {max_bytes}")]
    TooLarge {
        what: &'static str,
        size_bytes: usize,
        max_bytes: usize,
    },
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The node's driver stopped (after an error, or by `shutdown`).
    #[error("controller node stopped: {0}")]
    Stopped(String),
}

impl ControllerError {
    pub(crate) fn storage(op: &'static str) -> impl FnOnce(StorageError) -> ControllerError {
        move |source| ControllerError::Storage { op, source }
    }

    /// For glommio's file operations.
    pub(crate) fn file(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(glommio::GlommioError<()>) -> ControllerError {
        let path = path.into();
        move |e| ControllerError::Io {
            op,
            path,
            source: io::Error::from(e),
        }
    }

    pub(crate) fn decode(what: &'static str) -> impl FnOnce(DecodeError) -> ControllerError {
        move |source| ControllerError::Decode { what, source }
    }

    pub(crate) fn raft(op: &'static str) -> impl FnOnce(raft::Error) -> ControllerError {
        move |source| ControllerError::Raft { op, source }
    }
}

pub type Result<T, E = ControllerError> = std::result::Result<T, E>;

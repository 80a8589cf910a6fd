//! The two small files beside the Raft log (controller shard): `raft-state` (HardState and
//! ConfState) and `snapshot` (the image at an applied index). Both are replaced atomically
//! (temp file, fdatasync, rename, fsync of the directory) and end in a CRC-32C of everything
//! before it, so a torn or damaged file is refused instead of misread.
//!
//! ```text
//! raft-state := "SKRS" | version u8 (1) | term u64 | vote u64 | commit u64 | conf_state | crc u32
//! snapshot   := "SKSN" | version u8 (1) | index u64 | term u64 | conf_state | image bytes | crc u32
//! conf_state := voters ids | learners ids | voters_outgoing ids | learners_next ids | auto_leave bool
//! ids        := count u32 | u64{count}
//! ```

use std::io;
use std::path::Path;

use glommio::io::BufferedFile;
use raft::eraftpb::{ConfState, HardState, Snapshot};

use crate::codec::{Reader, Writer};
use crate::error::{ControllerError, Result};
use crate::limits::SNAPSHOT_BYTES_MAX;

pub(crate) const RAFT_STATE_FILE: &str = "raft-state";
pub(crate) const SNAPSHOT_FILE: &str = "snapshot";
const RAFT_STATE_MAGIC: &[u8; 4] = b"SKRS";
const SNAPSHOT_MAGIC: &[u8; 4] = b"SKSN";
const FILE_VERSION: u8 = 1;
const CRC_BYTES: usize = 4;

fn put_ids(w: &mut Writer, what: &'static str, ids: &[u64]) {
    w.len(what, ids.len());
    for id in ids {
        w.u64(*id);
    }
}

fn put_conf_state(w: &mut Writer, cs: &ConfState) {
    put_ids(w, "voters", &cs.voters);
    put_ids(w, "learners", &cs.learners);
    put_ids(w, "outgoing voters", &cs.voters_outgoing);
    put_ids(w, "next learners", &cs.learners_next);
    w.bool(cs.auto_leave);
}

fn get_ids(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<u64>> {
    let n = r.count(what, 8).map_err(ControllerError::decode(what))?;
    (0..n)
        .map(|_| r.u64(what).map_err(ControllerError::decode(what)))
        .collect()
}

fn get_conf_state(r: &mut Reader<'_>) -> Result<ConfState> {
    Ok(ConfState {
        voters: get_ids(r, "voters")?,
        learners: get_ids(r, "learners")?,
        voters_outgoing: get_ids(r, "outgoing voters")?,
        learners_next: get_ids(r, "next learners")?,
        auto_leave: r
            .bool("auto leave")
            .map_err(ControllerError::decode("auto leave"))?,
        ..ConfState::default()
    })
}

/// Appends the CRC-32C of everything written so far.
fn seal(w: Writer) -> Result<Vec<u8>> {
    let mut buf = w.finish()?;
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_be_bytes());
    Ok(buf)
}

/// Checks magic, CRC and version; returns the body after the version byte.
fn unseal<'a>(buf: &'a [u8], magic: &[u8; 4], path: &Path) -> Result<&'a [u8]> {
    let corrupt = |reason: &str| ControllerError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if buf.len() < magic.len() + 1 + CRC_BYTES {
        return Err(corrupt("shorter than its header"));
    }
    let (body, crc) = buf.split_at(buf.len() - CRC_BYTES);
    let mut stored = [0u8; CRC_BYTES];
    stored.copy_from_slice(crc);
    if crc32c::crc32c(body) != u32::from_be_bytes(stored) {
        return Err(corrupt("checksum mismatch"));
    }
    if &body[..magic.len()] != magic {
        return Err(corrupt("wrong magic"));
    }
    let version = body[magic.len()];
    if version != FILE_VERSION {
        return Err(corrupt(&format!(
            "unsupported version {version} (this build reads {FILE_VERSION})"
        )));
    }
    Ok(&body[magic.len() + 1..])
}

pub(crate) fn encode_raft_state(hs: &HardState, cs: &ConfState) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    for b in RAFT_STATE_MAGIC {
        w.u8(*b);
    }
    w.u8(FILE_VERSION);
    w.u64(hs.term);
    w.u64(hs.vote);
    w.u64(hs.commit);
    put_conf_state(&mut w, cs);
    seal(w)
}

pub(crate) fn decode_raft_state(buf: &[u8], path: &Path) -> Result<(HardState, ConfState)> {
    let body = unseal(buf, RAFT_STATE_MAGIC, path)?;
    let mut r = Reader::new(body);
    let what = "raft state";
    let hs = HardState {
        term: r.u64("term").map_err(ControllerError::decode(what))?,
        vote: r.u64("vote").map_err(ControllerError::decode(what))?,
        commit: r.u64("commit").map_err(ControllerError::decode(what))?,
        ..HardState::default()
    };
    let cs = get_conf_state(&mut r)?;
    r.finish(what).map_err(ControllerError::decode(what))?;
    Ok((hs, cs))
}

pub(crate) fn encode_snapshot(snapshot: &Snapshot) -> Result<Vec<u8>> {
    let meta = snapshot.get_metadata();
    let mut w = Writer::default();
    for b in SNAPSHOT_MAGIC {
        w.u8(*b);
    }
    w.u8(FILE_VERSION);
    w.u64(meta.index);
    w.u64(meta.term);
    put_conf_state(&mut w, meta.get_conf_state());
    w.bytes("snapshot data", &snapshot.data);
    seal(w)
}

pub(crate) fn decode_snapshot(buf: &[u8], path: &Path) -> Result<Snapshot> {
    let body = unseal(buf, SNAPSHOT_MAGIC, path)?;
    let mut r = Reader::new(body);
    let what = "snapshot";
    let mut snapshot = Snapshot::default();
    let meta = snapshot.mut_metadata();
    meta.index = r.u64("index").map_err(ControllerError::decode(what))?;
    meta.term = r.u64("term").map_err(ControllerError::decode(what))?;
    meta.set_conf_state(get_conf_state(&mut r)?);
    let data = r.bytes("data").map_err(ControllerError::decode(what))?;
    snapshot.data = bytes::Bytes::copy_from_slice(data);
    r.finish(what).map_err(ControllerError::decode(what))?;
    Ok(snapshot)
}

/// Replaces `dir/name` with `data`: a crash leaves the old file or the new one, never a mix.
pub(crate) async fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let file = BufferedFile::create(&tmp)
        .await
        .map_err(ControllerError::file("creating", &tmp))?;
    let mut pos = 0usize;
    while pos < data.len() {
        let n = file
            .write_at(data[pos..].to_vec(), pos as u64)
            .await
            .map_err(ControllerError::file("writing", &tmp))?;
        if n == 0 {
            return Err(ControllerError::Io {
                op: "writing",
                path: tmp,
                source: io::Error::new(io::ErrorKind::WriteZero, "write returned 0 bytes"),
            });
        }
        pos += n;
    }
    file.fdatasync()
        .await
        .map_err(ControllerError::file("syncing", &tmp))?;
    file.close()
        .await
        .map_err(ControllerError::file("closing", &tmp))?;
    glommio::io::rename(&tmp, &path)
        .await
        .map_err(ControllerError::file("renaming", &path))?;
    sync_dir(dir).await
}

/// fsync of a directory, so created, renamed and removed names are durable.
pub(crate) async fn sync_dir(dir: &Path) -> Result<()> {
    let d = glommio::io::Directory::open(dir)
        .await
        .map_err(ControllerError::file("opening directory", dir))?;
    d.sync()
        .await
        .map_err(ControllerError::file("syncing directory", dir))?;
    // Closing a directory handle has nothing left to make durable.
    let _ = d.close().await;
    Ok(())
}

/// The whole file, or `None` when it does not exist.
pub(crate) async fn read_file(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    let file = match BufferedFile::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            let e = io::Error::from(e);
            if e.kind() == io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(ControllerError::Io {
                op: "opening",
                path,
                source: e,
            });
        }
    };
    let size = file
        .file_size()
        .await
        .map_err(ControllerError::file("sizing", &path))?;
    let size = usize::try_from(size)
        .ok()
        .filter(|s| *s <= SNAPSHOT_BYTES_MAX + 4096)
        .ok_or_else(|| ControllerError::Corrupt {
            path: path.clone(),
            reason: format!("{size} bytes is larger than any file we write"),
        })?;
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        let chunk = file
            .read_at(data.len() as u64, size - data.len())
            .await
            .map_err(ControllerError::file("reading", &path))?;
        if chunk.is_empty() {
            break;
        }
        data.extend_from_slice(&chunk);
    }
    // A read-only handle has nothing to flush.
    let _ = file.close().await;
    if data.len() != size {
        return Err(ControllerError::Corrupt {
            path,
            reason: format!("read {} of {size} bytes", data.len()),
        });
    }
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(voters: &[u64]) -> ConfState {
        ConfState {
            voters: voters.to_vec(),
            learners: vec![9],
            auto_leave: true,
            ..ConfState::default()
        }
    }

    #[test]
    fn raft_state_round_trips_and_damage_is_refused() {
        let path = Path::new("raft-state");
        let hs = HardState {
            term: 7,
            vote: 2,
            commit: 41,
            ..HardState::default()
        };
        let buf = encode_raft_state(&hs, &conf(&[1, 2, 3])).unwrap();
        let (hs2, cs2) = decode_raft_state(&buf, path).unwrap();
        assert_eq!((hs2, cs2), (hs, conf(&[1, 2, 3])));
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(decode_raft_state(&bad, path).is_err(), "flip at {i}");
        }
        for cut in 0..buf.len() {
            assert!(
                decode_raft_state(&buf[..cut], path).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn snapshot_file_round_trips() {
        let mut s = Snapshot {
            data: vec![1, 2, 3, 4].into(),
            ..Snapshot::default()
        };
        s.mut_metadata().index = 100;
        s.mut_metadata().term = 4;
        s.mut_metadata().set_conf_state(conf(&[1]));
        let buf = encode_snapshot(&s).unwrap();
        let back = decode_snapshot(&buf, Path::new("snapshot")).unwrap();
        assert_eq!(back, s);
        let mut bad = buf.clone();
        bad[10] ^= 1;
        assert!(matches!(
            decode_snapshot(&bad, Path::new("snapshot")),
            Err(ControllerError::Corrupt { .. })
        ));
    }
}

//! Direct-I/O file helpers over glommio's `DmaFile` (per shard: files and buffers are `!Send`).
//!
//! Everything that touches alignment lives here. The crate's only `unsafe` is here, each with a
//! `// SAFETY:` comment (a statfs call).

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions, ReadResult};
use glommio::GlommioError;

use crate::error::{Result, StorageError};
use crate::limits::DMA_ALIGNMENT_BYTES;

pub(crate) fn align_down(v: u64) -> u64 {
    v & !(DMA_ALIGNMENT_BYTES - 1)
}

pub(crate) fn align_up(v: u64) -> u64 {
    align_down(v + DMA_ALIGNMENT_BYTES - 1)
}

/// How many of `len` bytes at `pos` to read so that the read's DMA buffer (the aligned blocks
/// around them) is not just past a power of two. glommio's arena is a buddy allocator: such a
/// buffer takes a block twice its size, which halves the reads the arena holds at once (a
/// fetch of 8 MiB plus the index gap took 16 MiB). Trims at most a fifth of `len`, and never
/// below `keep`.
pub(crate) fn buddy_fit_len(pos: u64, len: usize, keep: usize) -> usize {
    let lead = pos - align_down(pos);
    let buffer = align_up(lead + len as u64);
    let block = 1u64 << (63 - buffer.leading_zeros());
    if buffer == block {
        return len;
    }
    let fitted = (block - lead) as usize;
    if fitted >= keep.max(len - len / 5) {
        fitted
    } else {
        len
    }
}

/// Turns a glommio error into an `io::Error` keeping the OS error code (glommio's own
/// conversion drops it for its "enhanced" errors, and we need ENOSPC).
pub(crate) fn to_io(err: GlommioError<()>) -> io::Error {
    match err {
        GlommioError::IoError(e) => e,
        GlommioError::EnhancedIoError { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

pub(crate) fn err(op: &'static str, path: &Path, e: GlommioError<()>) -> StorageError {
    StorageError::io(op, path, to_io(e))
}

/// Opens (optionally creating) a file for direct I/O, read+write (`DmaFile::create` would open
/// it write-only, and we read segments back through the same descriptor).
pub(crate) async fn open_rw(path: &Path, create: bool) -> Result<DmaFile> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .dma_open(path)
        .await
        .map_err(|e| err("opening", path, e))
}

/// Writes `data` at `aligned_pos` (which must be aligned), padding the last block with zeros.
/// Resolves when the O_DIRECT write completed; a short write is an error.
pub(crate) async fn write_padded(
    file: &DmaFile,
    path: &Path,
    aligned_pos: u64,
    parts: &[&[u8]],
) -> Result<()> {
    assert_eq!(aligned_pos % DMA_ALIGNMENT_BYTES, 0);
    let len: usize = parts.iter().map(|p| p.len()).sum();
    assert!(len > 0);
    let padded = align_up(len as u64) as usize;
    let mut buf = file.alloc_dma_buffer(padded);
    {
        let dst = buf.as_bytes_mut();
        let mut at = 0;
        for p in parts {
            dst[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        // Zero the padding so stale allocator bytes never reach the disk (recovery would stop
        // at them anyway, but a recycled buffer could hold an old valid batch).
        dst[at..].fill(0);
    }
    write_buffer(file, path, buf, aligned_pos).await
}

/// Writes a filled, aligned DMA buffer at `aligned_pos`; a short write is retried once for the
/// remainder so that a full disk reports ENOSPC.
pub(crate) async fn write_buffer(
    file: &DmaFile,
    path: &Path,
    buf: glommio::io::DmaBuffer,
    aligned_pos: u64,
) -> Result<()> {
    assert_eq!(aligned_pos % DMA_ALIGNMENT_BYTES, 0);
    assert_eq!(buf.len() as u64 % DMA_ALIGNMENT_BYTES, 0);
    let len = buf.len();
    let buf = Rc::new(buf);
    let written = file
        .write_rc_at(Rc::clone(&buf), aligned_pos)
        .await
        .map_err(|e| err("writing", path, e))?;
    if written == len {
        return Ok(());
    }
    let rest = len - written;
    if written > 0 && written % DMA_ALIGNMENT_BYTES as usize == 0 {
        let mut again = file.alloc_dma_buffer(rest);
        again
            .as_bytes_mut()
            .copy_from_slice(&buf.as_bytes()[written..]);
        let pos = aligned_pos + written as u64;
        let n = file
            .write_at(again, pos)
            .await
            .map_err(|e| err("writing", path, e))?;
        if n == rest {
            return Ok(());
        }
    }
    Err(StorageError::ShortWrite {
        path: path.to_path_buf(),
        written_bytes: written,
        expected_bytes: len,
    })
}

/// Polls all futures concurrently until every one is done (results in input order).
pub(crate) async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Polls two futures concurrently until both are done.
pub(crate) async fn join2<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let (mut a, mut b) = (Box::pin(a), Box::pin(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => std::task::Poll::Ready((x, y)),
            (x, y) => {
                ra = x;
                rb = y;
                std::task::Poll::Pending
            }
        }
    })
    .await
}

/// Reads `len` bytes at `pos` (any alignment). May return fewer bytes at end of file.
pub(crate) async fn read(file: &DmaFile, path: &Path, pos: u64, len: usize) -> Result<ReadResult> {
    if len == 0 {
        return Ok(ReadResult::default());
    }
    file.read_at(pos, len)
        .await
        .map_err(|e| err("reading", path, e))
}

/// Reads a whole small file (index, checkpoint); `None` if it does not exist.
pub(crate) async fn read_small_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match DmaFile::open(path).await {
        Ok(f) => f,
        Err(e) => {
            let e = to_io(e);
            if e.kind() == io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(StorageError::io("opening", path, e));
        }
    };
    let size = file.file_size().await.map_err(|e| err("stat", path, e))?;
    let data = read(&file, path, 0, size as usize).await?.to_vec();
    let _ = file.close().await;
    if data.len() as u64 != size {
        return Err(StorageError::io(
            "reading",
            path,
            io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    Ok(Some(data))
}

/// Replaces `path` atomically with `data`: write a temp file, fdatasync, rename over.
pub(crate) async fn write_small_file_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&tmp)
        .await
        .map_err(|e| err("creating", &tmp, e))?;
    if !data.is_empty() {
        write_padded(&file, &tmp, 0, &[data]).await?;
        file.truncate(data.len() as u64)
            .await
            .map_err(|e| err("truncating", &tmp, e))?;
    }
    file.fdatasync()
        .await
        .map_err(|e| err("syncing", &tmp, e))?;
    file.close().await.map_err(|e| err("closing", &tmp, e))?;
    glommio::io::rename(&tmp, path)
        .await
        .map_err(|e| err("renaming", path, e))
}

/// Removes a file; a missing file is not an error.
pub(crate) async fn remove_if_exists(path: &Path) -> Result<()> {
    match glommio::io::remove(path).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let e = to_io(e);
            if e.kind() == io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(StorageError::io("removing", path, e))
            }
        }
    }
}

/// fsyncs a directory so that created, renamed and removed names are durable.
pub(crate) async fn sync_dir(dir: &Path) -> Result<()> {
    let d = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| err("opening dir", dir, e))?;
    d.sync().await.map_err(|e| err("syncing dir", dir, e))?;
    let _ = d.close().await;
    Ok(())
}

thread_local! {
    /// Devices whose io_uring poll support glommio has already probed on this shard's thread.
    static PROBED_DEVICES: std::cell::RefCell<std::collections::HashSet<u64>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// Makes glommio probe the device of `dir` with a non-empty file before any other DMA open.
///
/// Why: glommio 0.9.0 decides once per device and thread whether to use its IOPOLL ring by
/// reading the first block of the first DMA file opened there. On an empty file that read
/// succeeds with 0 bytes, so it wrongly enables polling, and on devices without poll queues
/// (virtio, many cloud disks) every later read then fails with EOPNOTSUPP.
pub(crate) async fn probe_device(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir)
        .map_err(|e| StorageError::io("stat", dir, e))?
        .dev();
    if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    let path = dir.join(".dma-probe.tmp");
    // Blocking write of one block, once per device per shard at startup.
    std::fs::write(&path, vec![0u8; DMA_ALIGNMENT_BYTES as usize])
        .map_err(|e| StorageError::io("writing", &path, e))?;
    let file = DmaFile::open(&path)
        .await
        .map_err(|e| err("opening", &path, e))?;
    let _ = file.close().await;
    remove_if_exists(&path).await?;
    PROBED_DEVICES.with(|p| p.borrow_mut().insert(dev));
    Ok(())
}

/// The statfs `f_type` magic of the filesystem `dir` is on (0x01021994 for tmpfs).
pub fn filesystem_magic(dir: &Path) -> io::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: all-zero bytes are a valid `statfs` (plain integers).
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid, owned `statfs` to write into.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut fs) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between architectures
    Ok(fs.f_type as i64)
}

/// Whether `dir` is on tmpfs, where "direct" I/O is buffered copying into shmem pages: there,
/// preallocating a segment step zero-fills its pages up front (32 MiB: ~30 ms that an append
/// waits on), and the writes fill them all over again.
pub(crate) fn on_tmpfs(dir: &Path) -> bool {
    #[allow(clippy::unnecessary_cast)] // TMPFS_MAGIC's width differs between architectures
    let tmpfs = libc::TMPFS_MAGIC as i64;
    filesystem_magic(dir).is_ok_and(|magic| magic == tmpfs)
}

/// A direct-I/O file shared by the writer and the readers of one segment.
pub(crate) type SharedFile = Rc<DmaFile>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_math() {
        assert_eq!(align_down(4095), 0);
        assert_eq!(align_down(4096), 4096);
        assert_eq!(align_up(1), 4096);
        assert_eq!(align_up(0), 0);
        assert_eq!(align_up(8192), 8192);
    }

    #[test]
    fn reads_just_past_a_power_of_two_are_trimmed_to_one() {
        const MIB: usize = 1 << 20;
        // A fetch of 8 MiB plus a 4 KiB index gap: the buffer would be 8 MiB + 8 KiB.
        assert_eq!(buddy_fit_len(100, 8 * MIB + 4096, 0), 8 * MIB - 100);
        assert_eq!(buddy_fit_len(0, 8 * MIB + 4096, 0), 8 * MIB);
        // Already a power of two (after alignment): unchanged.
        assert_eq!(buddy_fit_len(0, 8 * MIB, 0), 8 * MIB);
        assert_eq!(buddy_fit_len(4096, MIB - 10, 0), MIB - 10);
        // Trimming would lose more than a fifth: unchanged (6 MiB takes an 8 MiB block).
        assert_eq!(buddy_fit_len(0, 6 * MIB, 0), 6 * MIB);
        // Never below what must be read (a whole first batch).
        assert_eq!(buddy_fit_len(0, MIB + 4096, MIB + 10), MIB + 4096);
        // Every trimmed read still fits its block exactly.
        for (pos, len) in [(1u64, 5 * MIB / 4), (4095, 2 * MIB + 1), (8191, 65_536)] {
            let fitted = buddy_fit_len(pos, len, 0);
            let buffer = align_up(pos - align_down(pos) + fitted as u64);
            assert!(buffer.is_power_of_two() || fitted == len, "{pos} {len}");
            assert!(fitted <= len && fitted >= len - len / 5, "{pos} {len}");
        }
    }
}

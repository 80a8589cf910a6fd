//! Sequential direct-I/O access for the log cleaner (owning shard): a cursor over the batches
//! of a sealed segment, each CRC-checked before the cleaner trusts (or re-checksums) it, and the
//! aligned writer of a cleaned segment file.

use std::path::{Path, PathBuf};

use glommio::io::{DmaBuffer, ReadResult};

use crate::batch::{check_batch, RecordBatchHeader, LOG_OVERHEAD_BYTES};
use crate::dma::{self, align_up, SharedFile};
use crate::error::{Result, StorageError};
use crate::limits::CLEANER_IO_BYTES;

/// Reads the batches of `[0, end)` of a segment file in order.
pub(crate) struct BatchCursor {
    file: SharedFile,
    path: PathBuf,
    end: u64,
    window: ReadResult,
    window_pos: u64,
    at: usize,
}

impl BatchCursor {
    pub fn new(file: SharedFile, path: &Path, end: u64) -> Self {
        BatchCursor {
            file,
            path: path.to_path_buf(),
            end,
            window: ReadResult::default(),
            window_pos: 0,
            at: 0,
        }
    }

    /// The next batch and its header; `None` at the end. A batch that fails its checks (length,
    /// magic, CRC-32C) or runs past the end is an error: the cleaner never rewrites bytes it
    /// could not verify.
    pub async fn next(&mut self) -> Result<Option<(ReadResult, RecordBatchHeader)>> {
        let mut need = LOG_OVERHEAD_BYTES;
        loop {
            let pos = self.window_pos + self.at as u64;
            if pos >= self.end {
                return Ok(None);
            }
            if self.at < self.window.len() {
                match check_batch(&self.window, self.at, false) {
                    Ok(h) => {
                        let size = h.size_bytes();
                        let bytes = ReadResult::slice(&self.window, self.at, size)
                            .ok_or_else(|| self.corrupt(pos))?;
                        self.at += size;
                        return Ok(Some((bytes, h)));
                    }
                    Err(StorageError::TruncatedBatch { needed_bytes, .. })
                        if needed_bytes > need && pos + needed_bytes as u64 <= self.end =>
                    {
                        // The batch runs past this window: read again from its start.
                        need = needed_bytes;
                    }
                    Err(StorageError::TruncatedBatch { .. }) if need == LOG_OVERHEAD_BYTES => {}
                    Err(e) => return Err(at_file_position(e, self.window_pos)),
                }
            }
            let want = (self.end - pos).min(need.max(CLEANER_IO_BYTES) as u64) as usize;
            if want < need {
                return Err(self.corrupt(pos));
            }
            self.window = dma::read(&self.file, &self.path, pos, want).await?;
            self.window_pos = pos;
            self.at = 0;
            if self.window.len() < want {
                return Err(StorageError::io(
                    "reading",
                    &self.path,
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
        }
    }

    fn corrupt(&self, pos: u64) -> StorageError {
        StorageError::TruncatedBatch {
            position: pos as usize,
            needed_bytes: LOG_OVERHEAD_BYTES,
            available_bytes: (self.end - pos) as usize,
        }
    }
}

/// Moves a batch error's position from its window to the file.
fn at_file_position(e: StorageError, window_pos: u64) -> StorageError {
    let shift = |p: usize| p + window_pos as usize;
    match e {
        StorageError::CorruptBatch { position, kind } => StorageError::CorruptBatch {
            position: shift(position),
            kind,
        },
        StorageError::InvalidMagic { position, magic } => StorageError::InvalidMagic {
            position: shift(position),
            magic,
        },
        StorageError::TruncatedBatch {
            position,
            needed_bytes,
            available_bytes,
        } => StorageError::TruncatedBatch {
            position: shift(position),
            needed_bytes,
            available_bytes,
        },
        other => other,
    }
}

/// Writes a new segment file front to back through aligned DMA buffers; `finish` gives it its
/// exact size and makes it durable.
pub(crate) struct SegmentWriter {
    file: SharedFile,
    path: PathBuf,
    buf: DmaBuffer,
    /// File position of `buf` (aligned).
    buf_pos: u64,
    len: usize,
    size: u64,
}

impl SegmentWriter {
    /// Creates (or empties) the file at `path`.
    pub async fn create(path: &Path) -> Result<Self> {
        let file = std::rc::Rc::new(dma::open_rw(path, true).await?);
        // A file left by an earlier failed pass must not keep its old bytes past ours.
        file.truncate(0)
            .await
            .map_err(|e| dma::err("truncating", path, e))?;
        Ok(SegmentWriter {
            file,
            path: path.to_path_buf(),
            buf: glommio::allocate_dma_buffer(CLEANER_IO_BYTES),
            buf_pos: 0,
            len: 0,
            size: 0,
        })
    }

    /// Bytes pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn push(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let n = (self.buf.len() - self.len).min(bytes.len());
            self.buf.as_bytes_mut()[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            self.size += n as u64;
            bytes = &bytes[n..];
            if self.len == self.buf.len() {
                let full = std::mem::replace(
                    &mut self.buf,
                    glommio::allocate_dma_buffer(CLEANER_IO_BYTES),
                );
                dma::write_buffer(&self.file, &self.path, full, self.buf_pos).await?;
                self.buf_pos += CLEANER_IO_BYTES as u64;
                self.len = 0;
            }
        }
        Ok(())
    }

    /// Writes the rest, cuts the O_DIRECT padding off and fdatasyncs. Returns the file and its
    /// size.
    pub async fn finish(mut self) -> Result<(SharedFile, u64)> {
        if self.len > 0 {
            let padded = align_up(self.len as u64) as usize;
            self.buf.as_bytes_mut()[self.len..padded].fill(0);
            self.buf.trim_to_size(padded);
            dma::write_buffer(&self.file, &self.path, self.buf, self.buf_pos).await?;
        }
        self.file
            .truncate(self.size)
            .await
            .map_err(|e| dma::err("truncating", &self.path, e))?;
        self.file
            .fdatasync()
            .await
            .map_err(|e| dma::err("syncing", &self.path, e))?;
        Ok((self.file, self.size))
    }
}

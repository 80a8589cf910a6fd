//! Read-ahead for sequential disk readers of one partition.
//!
//! Segments are read with O_DIRECT, so the page cache reads nothing ahead, and a consumer's
//! fetches are serial: without this, each fetch waits for its own disk read and the disk idles
//! while the answer is on the wire. When a disk read continues where the previous one ended,
//! the log starts reading the window after it in a detached task; the next read that starts
//! there takes it. One window per partition, bounded per shard (`READ_AHEAD_BYTES_PER_SHARD_MAX`),
//! dropped by anything that rewrites or removes segment bytes (truncation, retention,
//! compaction, close) and when nobody takes it for `READ_AHEAD_IDLE_MS`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::ReadResult;

use crate::dma::{self, SharedFile};
use crate::error::Result;
use crate::limits::{
    BATCH_BYTES_MAX, READ_AHEAD_BYTES_PER_SHARD_MAX, READ_AHEAD_IDLE_MS, READ_WINDOW_BYTES_MIN,
};
use crate::segment::reader::{self, DiskRead};
use crate::segment::Segment;

thread_local! {
    /// Bytes of read-ahead windows held on this shard's thread.
    static HELD_BYTES: Cell<usize> = const { Cell::new(0) };
    static STATS: Cell<ReadAheadStats> = const { Cell::new(ReadAheadStats::ZERO) };
}

/// Counters of this shard's read-ahead (for metrics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadAheadStats {
    /// Windows read ahead.
    pub started: u64,
    /// Reads served from a window read ahead.
    pub hits: u64,
    /// Windows dropped unused (a reader that moved elsewhere or stopped, a truncation).
    pub dropped: u64,
    /// Windows not started because the shard's budget was held by others.
    pub over_budget: u64,
    pub held_bytes: usize,
}

impl ReadAheadStats {
    const ZERO: ReadAheadStats = ReadAheadStats {
        started: 0,
        hits: 0,
        dropped: 0,
        over_budget: 0,
        held_bytes: 0,
    };
}

/// This shard's read-ahead counters.
pub fn read_ahead_stats() -> ReadAheadStats {
    ReadAheadStats {
        held_bytes: HELD_BYTES.with(Cell::get),
        ..STATS.with(Cell::get)
    }
}

fn count(f: impl FnOnce(&mut ReadAheadStats)) {
    STATS.with(|s| {
        let mut v = s.get();
        f(&mut v);
        s.set(v);
    });
}

/// Bytes of the shard's budget, given back when dropped.
pub(super) struct Held(usize);

impl Held {
    pub(super) fn take(bytes: usize) -> Option<Held> {
        HELD_BYTES.with(|h| {
            let held = h.get();
            if held + bytes > READ_AHEAD_BYTES_PER_SHARD_MAX {
                return None;
            }
            h.set(held + bytes);
            Some(Held(bytes))
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD_BYTES.with(|h| h.set(h.get() - self.0));
    }
}

/// A window read ahead: the bytes of `seg` from `pos`, where the batch holding `next_offset`
/// starts.
struct Window {
    seg: Rc<Segment>,
    pos: u64,
    next_offset: i64,
    bytes: WindowBytes,
    started: Instant,
    held: Held,
}

enum WindowBytes {
    Reading(glommio::Task<Result<ReadResult>>),
    /// What a read served from the window left: enough for another read of its size.
    Rest(ReadResult),
}

/// A partition's read-ahead state (in the log's `Inner`).
#[derive(Default)]
pub(crate) struct ReadAhead {
    /// Offset after the last disk read: a read that starts there is sequential.
    last_end: Option<i64>,
    window: Option<Window>,
}

impl ReadAhead {
    /// Drops the window (its read is cancelled) and forgets where the last read ended. Whoever
    /// rewrites or removes segment bytes calls this before the bytes change.
    pub fn clear(&mut self) {
        drop(self.discard());
        self.last_end = None;
    }

    /// Takes the window out unused.
    fn discard(&mut self) -> Option<Window> {
        let w = self.window.take();
        if w.is_some() {
            count(|s| s.dropped += 1);
        }
        w
    }

    /// Drops a window nobody took for `READ_AHEAD_IDLE_MS` (the partition's timer calls this).
    pub fn expire(&mut self, now: Instant) {
        let idle = Duration::from_millis(READ_AHEAD_IDLE_MS);
        if self
            .window
            .as_ref()
            .is_some_and(|w| now.duration_since(w.started) >= idle)
        {
            self.clear();
        }
    }

    /// Takes the window if it starts at `from` in `seg`.
    fn take(&mut self, seg: &Rc<Segment>, from: i64) -> Option<Window> {
        let w = self.window.as_ref()?;
        if !Rc::ptr_eq(&w.seg, seg) || w.next_offset != from {
            return None;
        }
        self.window.take()
    }
}

/// The first bytes a window of `max_bytes` covers from `pos` on, up to `end`: what the next
/// fetch of the same size will ask for. Trimmed to fit the arena (`dma::buddy_fit_len`), but
/// never below `batch_bytes`, the largest batch of the read before it: the next read's first
/// batch must be wholly in the window, and batches of one partition tend to be alike.
fn window_len(pos: u64, end: u64, max_bytes: usize, batch_bytes: usize) -> usize {
    let want = max_bytes.clamp(READ_WINDOW_BYTES_MIN, BATCH_BYTES_MAX) as u64;
    let len = (end - pos).min(want) as usize;
    dma::buddy_fit_len(pos, len, batch_bytes.min(len))
}

impl super::Inner {
    /// Drops the window and waits for its read to stop, so that its handle on the file is gone
    /// (close and delete close the segment files).
    pub(super) async fn cancel_read_ahead(&self) {
        let window = self.read_ahead.borrow_mut().discard();
        if let Some(Window {
            bytes: WindowBytes::Reading(read),
            ..
        }) = window
        {
            read.cancel().await;
        }
    }

    /// Serves a read at `from` of `seg` from the window read ahead, if one starts there and
    /// holds the first batch whole. `None` sends the caller to a plain read (which also reports
    /// any error the window's read had).
    pub(super) async fn read_from_window(
        &self,
        seg: &Rc<Segment>,
        from: i64,
        max_bytes: usize,
        upper_bound: i64,
    ) -> Option<DiskRead> {
        let w = self.read_ahead.borrow_mut().take(seg, from)?;
        let buf = match w.bytes {
            WindowBytes::Reading(read) => read.await.ok()?,
            WindowBytes::Rest(buf) => buf,
        };
        let r = reader::read_window(&buf, w.pos, from, max_bytes, upper_bound, &seg.log_path)?;
        count(|s| s.hits += 1);
        // A window larger than the reads (the smallest window is `READ_WINDOW_BYTES_MIN`)
        // serves the next ones too, instead of reading its rest again.
        let used = (r.end_pos - w.pos) as usize;
        if buf.len() - used >= max_bytes {
            if let Some(rest) = ReadResult::slice(&buf, used, buf.len() - used) {
                let mut ra = self.read_ahead.borrow_mut();
                drop(ra.discard());
                ra.window = Some(Window {
                    seg: w.seg,
                    pos: r.end_pos,
                    next_offset: r.next_offset,
                    bytes: WindowBytes::Rest(rest),
                    started: Instant::now(),
                    held: w.held,
                });
            }
        }
        Some(r)
    }

    /// Notes a disk read of `seg` at `from`, and starts reading the next window if the read
    /// was sequential (served from a window, or started where the last disk read ended) and
    /// no window starts where it ended.
    pub(super) fn after_disk_read(
        &self,
        seg: &Rc<Segment>,
        file: &SharedFile,
        from: i64,
        from_window: bool,
        read: &DiskRead,
        max_bytes: usize,
    ) {
        let (end_pos, next_offset) = (read.end_pos, read.next_offset);
        if self.state.borrow().closed {
            return;
        }
        let mut ra = self.read_ahead.borrow_mut();
        let sequential = from_window || ra.last_end == Some(from);
        ra.last_end = Some(next_offset);
        let ahead = ra
            .window
            .as_ref()
            .is_some_and(|w| Rc::ptr_eq(&w.seg, seg) && w.next_offset == next_offset);
        if !sequential || ahead {
            return;
        }
        let written = seg.st.borrow().written_size;
        if end_pos >= written {
            return;
        }
        // The old window (if any) goes first, so the two never hold the budget together.
        drop(ra.discard());
        let len = window_len(
            end_pos,
            written,
            max_bytes,
            reader::largest_batch(&read.chunk),
        );
        let Some(held) = Held::take(len) else {
            count(|s| s.over_budget += 1);
            return;
        };
        let file = Rc::clone(file);
        let task_seg = Rc::clone(seg);
        let read = glommio::spawn_local(async move {
            dma::read(&file, &task_seg.log_path, end_pos, len).await
        });
        count(|s| s.started += 1);
        ra.window = Some(Window {
            seg: Rc::clone(seg),
            pos: end_pos,
            next_offset,
            bytes: WindowBytes::Reading(read),
            started: Instant::now(),
            held,
        });
    }
}

//! Read-ahead: sequential disk readers get the same bytes as plain reads, from windows read
//! ahead; nothing that rewrites or removes segment bytes leaves a stale window to serve.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::read_ahead::{read_ahead_stats, Held};
use super::tests::{run, temp_dir};
use super::*;
use crate::batch::build_batch;
use crate::limits::READ_AHEAD_BYTES_PER_SHARD_MAX;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 4096,
        ..LogConfig::default()
    }
}

/// A log without a tail cache (every written batch is read from disk) holding `batches`
/// batches of 3 records, the values of batch `i` filled with `i`; returns the stored bytes.
async fn filled(dir: &std::path::Path, batches: i64) -> (PartitionLog, Vec<u8>) {
    filled_with(dir, batches, 1000).await
}

/// As `filled`, with record values of `value_len` bytes.
async fn filled_with(
    dir: &std::path::Path,
    batches: i64,
    value_len: usize,
) -> (PartitionLog, Vec<u8>) {
    let log = PartitionLog::open(dir, config(), Rc::new(TailCache::new(0)))
        .await
        .unwrap();
    let stored = append_with(&log, 0, batches, 0, value_len).await;
    (log, stored)
}

async fn append(log: &PartitionLog, first: i64, batches: i64, fill: u8) -> Vec<u8> {
    append_with(log, first, batches, fill, 1000).await
}

async fn append_with(
    log: &PartitionLog,
    first: i64,
    batches: i64,
    fill: u8,
    value_len: usize,
) -> Vec<u8> {
    let mut stored = Vec::new();
    for i in 0..batches {
        let b = build_batch(0, 3, 1000 + i, &vec![fill.wrapping_add(i as u8); value_len]);
        let info = log.append(Bytes::from(b.clone()), 1).await.unwrap();
        assert_eq!(info.first_offset, first + i * 3);
        let mut s = b;
        crate::batch::stamp(&mut s, info.first_offset, 1);
        stored.extend_from_slice(&s);
    }
    log.flush().await.unwrap();
    stored
}

async fn read_bytes(log: &PartitionLog, from: i64, max_bytes: usize, upper: i64) -> (Vec<u8>, i64) {
    let r = log.read(from, max_bytes, upper).await.unwrap();
    let mut out = Vec::new();
    for c in &r.chunks {
        assert!(c.is_from_disk());
        out.extend_from_slice(c);
    }
    (out, r.next_offset)
}

/// 40 batches, read 4 at a time from offset 0 twice: a window from offset 24 (batch 8) is
/// read ahead. Returns the log, the stored bytes and the size of one batch.
async fn with_window_at_24(dir: &std::path::Path) -> (PartitionLog, Vec<u8>, usize) {
    let (log, stored) = filled(dir, 40).await;
    let batch_len = stored.len() / 40;
    let _ = read_bytes(&log, 0, 4 * batch_len, i64::MAX).await;
    let (_, next) = read_bytes(&log, 12, 4 * batch_len, i64::MAX).await;
    assert_eq!(next, 24);
    assert!(read_ahead_stats().held_bytes > 0, "a window from offset 24");
    (log, stored, batch_len)
}

#[test]
fn sequential_disk_reads_are_served_from_windows_read_ahead() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, stored) = filled(&path, 200).await;
        let before = read_ahead_stats();
        let mut got = Vec::new();
        let mut at = 0;
        let mut reads = 0;
        while at < log.log_end_offset() {
            let (bytes, next) = read_bytes(&log, at, 8 << 10, i64::MAX).await;
            assert!(!bytes.is_empty());
            got.extend_from_slice(&bytes);
            at = next;
            reads += 1;
        }
        assert!(
            got == stored,
            "sequential reads differ from what was stored"
        );
        let s = read_ahead_stats();
        // The first two reads are plain (the second shows the reader is sequential); the
        // last window ends at the log end and starts no other.
        assert_eq!(s.hits - before.hits, reads - 2);
        // 8 KiB reads, 64 KiB windows: one window serves several reads.
        let started = s.started - before.started;
        assert!(
            started > 1 && started * 4 < reads,
            "{started} windows, {reads} reads"
        );
        assert_eq!(s.held_bytes, 0, "the last read left no window to hold");
        log.close().await.unwrap();
    });
}

#[test]
fn a_window_holds_a_batch_as_large_as_the_reads() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        // Batches just past 64 KiB: the size the arena would trim a read of them to.
        let (log, stored) = filled_with(&path, 12, 21_900).await;
        let batch_len = stored.len() / 12;
        assert!(batch_len > 64 << 10 && batch_len < 72 << 10, "{batch_len}");
        let before = read_ahead_stats();
        let mut at = 0;
        let mut reads = 0;
        while at < log.log_end_offset() {
            let (bytes, next) = read_bytes(&log, at, batch_len, i64::MAX).await;
            assert_eq!(bytes.len(), batch_len);
            at = next;
            reads += 1;
        }
        assert_eq!(read_ahead_stats().hits - before.hits, reads - 2);
        log.close().await.unwrap();
    });
}

#[test]
fn a_window_serves_only_batches_below_the_readers_bound() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, stored, batch_len) = with_window_at_24(&path).await;
        let before = read_ahead_stats();
        // The window from offset 24 holds 4 batches; the reader may see 2 of them.
        let (bytes, next) = read_bytes(&log, 24, 4 * batch_len, 30).await;
        assert_eq!(read_ahead_stats().hits - before.hits, 1);
        assert!(
            bytes == stored[8 * batch_len..10 * batch_len],
            "offsets 24..30 differ"
        );
        assert_eq!(next, 30);
        log.close().await.unwrap();
    });
}

#[test]
fn truncation_drops_the_window_so_new_bytes_are_read() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, _, batch_len) = with_window_at_24(&path).await;
        let before = read_ahead_stats();
        // A follower's truncation: offsets 24.. are cut and appended again with other bytes,
        // at the same file positions.
        log.truncate_to(24).await.unwrap();
        assert_eq!(read_ahead_stats().held_bytes, 0);
        assert_eq!(read_ahead_stats().dropped - before.dropped, 1);
        let new = append(&log, 24, 16, 0x80).await;
        let (bytes, _) = read_bytes(&log, 24, 4 * batch_len, i64::MAX).await;
        assert!(
            bytes == new[..4 * batch_len],
            "the bytes cut by the truncation came back"
        );
        log.close().await.unwrap();
    });
}

#[test]
fn a_reader_that_jumps_elsewhere_does_not_take_the_window() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, stored, batch_len) = with_window_at_24(&path).await;
        let before = read_ahead_stats();
        // Back to the start (a consumer group reset): a plain read, the window stays unused.
        let (bytes, _) = read_bytes(&log, 0, 4 * batch_len, i64::MAX).await;
        assert!(bytes == stored[..4 * batch_len], "offsets 0..12 differ");
        let s = read_ahead_stats();
        assert_eq!((s.hits, s.started), (before.hits, before.started));
        // Nobody takes it: the partition's timer drops it.
        log.inner
            .read_ahead
            .borrow_mut()
            .expire(Instant::now() + Duration::from_secs(2));
        let s = read_ahead_stats();
        assert_eq!((s.held_bytes, s.dropped - before.dropped), (0, 1));
        log.close().await.unwrap();
    });
}

#[test]
fn close_and_delete_with_a_window_in_flight() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, stored) = filled(&path, 100).await;
        let (_, next) = read_bytes(&log, 0, 16 << 10, i64::MAX).await;
        let _ = read_bytes(&log, next, 16 << 10, i64::MAX).await;
        assert!(read_ahead_stats().held_bytes > 0);
        log.close().await.unwrap();
        assert_eq!(read_ahead_stats().held_bytes, 0);
        // Closed cleanly: the next open trusts the files and reads them whole.
        let log = PartitionLog::open(&path, config(), Rc::new(TailCache::new(0)))
            .await
            .unwrap();
        assert!(
            tests::read_all(&log, 0).await == stored,
            "reopened log differs"
        );
        let (_, next) = read_bytes(&log, 0, 16 << 10, i64::MAX).await;
        let _ = read_bytes(&log, next, 16 << 10, i64::MAX).await;
        assert!(read_ahead_stats().held_bytes > 0);
        log.delete().await.unwrap();
        assert_eq!(read_ahead_stats().held_bytes, 0);
        assert!(!path.exists());
    });
}

#[test]
fn the_shards_budget_bounds_the_bytes_held() {
    let all = Held::take(READ_AHEAD_BYTES_PER_SHARD_MAX).unwrap();
    assert!(Held::take(1).is_none());
    drop(all);
    let one = Held::take(1);
    assert!(one.is_some());
}

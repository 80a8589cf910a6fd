//! Tests of `PartitionLog` on a real filesystem with O_DIRECT, inside a glommio executor.

use std::future::Future;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use glommio::LocalExecutorBuilder;

use super::*;
use crate::batch::build_batch;
use crate::config::{CleanupPolicy, FlushPolicy};
use crate::dma;

pub(crate) fn run<F: Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    LocalExecutorBuilder::default().make().unwrap().run(f());
}

/// A temp dir on a filesystem that supports O_DIRECT (the target dir; /tmp may be tmpfs).
pub(crate) fn temp_dir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/skein-test-tmp");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

pub(crate) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

pub(crate) async fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config, Rc::new(TailCache::new(1 << 20)))
        .await
        .unwrap()
}

pub(crate) async fn read_all(log: &PartitionLog, from: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let r = log.read(at, 100_000, i64::MAX).await.unwrap();
        if r.chunks.is_empty() {
            return out;
        }
        for c in &r.chunks {
            out.extend_from_slice(c);
        }
        at = r.next_offset;
    }
}

#[test]
fn append_then_read_back_from_cache_and_disk() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open(&path, small_config()).await;
        let mut expected = Vec::new();
        for i in 0..20 {
            let b = build_batch(0, 3, 1000 + i, &[i as u8; 100]);
            let info = log.append(Bytes::from(b.clone()), 7).await.unwrap();
            assert_eq!(info.first_offset, i * 3);
            assert_eq!(info.last_offset, i * 3 + 2);
            let mut stamped = b;
            crate::batch::stamp(&mut stamped, i * 3, 7);
            expected.extend_from_slice(&stamped);
        }
        assert_eq!(log.log_end_offset(), 60);
        assert!(log.segment_count() > 1, "4 KiB segments must roll");
        assert_eq!(read_all(&log, 0).await, expected);
        log.close().await.unwrap();
        // Reopen with an empty cache: everything comes from disk.
        let log = PartitionLog::open(&path, small_config(), Rc::new(TailCache::new(0)))
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 60);
        let r = log.read(31, 1, i64::MAX).await.unwrap();
        assert!(r.chunks[0].is_from_disk());
        assert_eq!(r.next_offset, 33, "the batch holding offset 31 is 30..=32");
        assert_eq!(read_all(&log, 0).await, expected);
        assert_eq!(log.latest_leader_epoch(), Some(LeaderEpoch(7)));
        let _ = FlushPolicy::Fsync;
    });
}

/// The active segment's file is preallocated a step ahead on a disk filesystem, and not on
/// tmpfs (where that would zero-fill 32 MiB of pages while an append waits); both read back.
#[test]
fn segments_are_preallocated_except_on_tmpfs() {
    let disk = temp_dir();
    // /dev/shm is tmpfs on every Linux this runs on; `on_tmpfs` says if it is not.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    assert!(
        dma::on_tmpfs(shm.path()),
        "/dev/shm is not tmpfs on this machine"
    );
    assert!(!dma::on_tmpfs(disk.path()));
    let dirs = [disk.path().to_path_buf(), shm.path().to_path_buf()];
    run(move || async move {
        for (dir, preallocated) in dirs.iter().zip([true, false]) {
            let config = LogConfig {
                segment_bytes: 1 << 30,
                ..LogConfig::default()
            };
            let log = open(dir, config.clone()).await;
            let batch = build_batch(0, 4, 1000, &[9u8; 10_000]);
            assert_eq!(
                log.append(Bytes::from(batch.clone()), 1)
                    .await
                    .unwrap()
                    .first_offset,
                0
            );
            let (path, size) = active_file(&log);
            let file_bytes = std::fs::metadata(&path).unwrap().len();
            if preallocated {
                assert_eq!(file_bytes, crate::limits::FALLOCATE_STEP_BYTES, "{dir:?}");
            } else {
                assert_eq!(file_bytes, dma::align_up(size), "{dir:?}");
            }
            assert_eq!(read_all(&log, 0).await, stamped(batch.clone(), 0, 1));
            log.close().await.unwrap();
            // Reopened, the segment's allocation starts from its (unaligned) data size; the
            // next step still ends on the direct-I/O alignment.
            let log = open(dir, config).await;
            let (_, reopened_size) = active_file(&log);
            assert_ne!(
                reopened_size % crate::limits::DMA_ALIGNMENT_BYTES,
                0,
                "the test wants an odd size"
            );
            let second = log.append(Bytes::from(batch.clone()), 1).await.unwrap();
            assert_eq!(second.first_offset, 4);
            let file_bytes = std::fs::metadata(&path).unwrap().len();
            if preallocated {
                assert_eq!(
                    file_bytes,
                    dma::align_up(reopened_size + crate::limits::FALLOCATE_STEP_BYTES),
                    "{dir:?}"
                );
            } else {
                assert_eq!(
                    file_bytes % crate::limits::DMA_ALIGNMENT_BYTES,
                    0,
                    "{dir:?}: {file_bytes}"
                );
            }
            let mut both = stamped(batch.clone(), 0, 1);
            both.extend_from_slice(&stamped(batch, 4, 1));
            assert_eq!(read_all(&log, 0).await, both);
            log.close().await.unwrap();
        }
    });
}

/// Polls all futures concurrently (in vector order on each wake) until all are done.
pub(crate) async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
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
    out.into_iter().map(|o| o.unwrap()).collect()
}

pub(crate) fn stamped(mut b: Vec<u8>, base: i64, leader_epoch: i32) -> Vec<u8> {
    crate::batch::stamp(&mut b, base, leader_epoch);
    b
}

/// Path and logical size of the active segment (for torn-write simulation).
fn active_file(log: &PartitionLog) -> (std::path::PathBuf, u64) {
    let st = log.inner.state.borrow();
    let seg = st.active();
    let size = seg.st.borrow().size;
    (seg.log_path.clone(), size)
}

fn write_at(path: &Path, pos: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    f.write_all_at(bytes, pos).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn concurrent_appends_keep_call_order_and_share_writes() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = Rc::new(
            open(
                &path,
                LogConfig {
                    flush: FlushPolicy::Fsync,
                    ..small_config()
                },
            )
            .await,
        );
        let mut futs = Vec::new();
        for i in 0..64u8 {
            futs.push(log.append(Bytes::from(build_batch(0, 2, 10, &[i; 50])), 1));
        }
        // Poll them in reverse: offsets still follow call order.
        futs.reverse();
        let mut results: Vec<AppendInfo> = join_all(futs)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        results.reverse();
        for (i, info) in results.iter().enumerate() {
            assert_eq!(info.first_offset, 2 * i as i64);
        }
        let data = read_all(&log, 0).await;
        let mut expected = Vec::new();
        for i in 0..64u8 {
            expected.extend(stamped(
                build_batch(0, 2, 10, &[i; 50]),
                2 * i64::from(i),
                1,
            ));
        }
        assert_eq!(data, expected);
        assert_eq!(log.inner.state.borrow().synced_offset, 128);
    });
}

#[test]
fn bad_input_gives_typed_errors_and_leaves_the_log_readable() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open(&path, small_config()).await;
        let good = build_batch(0, 1, 0, b"ok");
        let _ = log.append(Bytes::from(good.clone()), 0).await.unwrap();
        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 1] ^= 0xff;
        assert!(matches!(
            log.append(Bytes::from(bad_crc), 0).await,
            Err(StorageError::CorruptBatch { .. })
        ));
        let mut bad_magic = good.clone();
        bad_magic[16] = 0;
        assert!(matches!(
            log.append(Bytes::from(bad_magic), 0).await,
            Err(StorageError::InvalidMagic { .. })
        ));
        let truncated = Bytes::from(good[..good.len() - 3].to_vec());
        assert!(matches!(
            log.append(truncated, 0).await,
            Err(StorageError::TruncatedBatch { .. })
        ));
        // A good batch followed by a bad one: nothing of the append is applied.
        let mut mixed = good.clone();
        mixed.extend_from_slice(&good[..20]);
        assert!(log.append(Bytes::from(mixed), 0).await.is_err());
        assert!(matches!(
            log.append(Bytes::new(), 0).await,
            Err(StorageError::EmptyAppend)
        ));
        let big = build_batch(0, 1, 0, &vec![0u8; 2_000_000]);
        assert!(matches!(
            log.append(Bytes::from(big), 0).await,
            Err(StorageError::RecordTooLarge { .. })
        ));
        assert!(matches!(
            log.read(2, 100, i64::MAX).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert!(matches!(
            log.read(-1, 100, i64::MAX).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert!(log.read(1, 100, i64::MAX).await.unwrap().chunks.is_empty());
        let _ = log.append(Bytes::from(good.clone()), 3).await.unwrap();
        assert!(matches!(
            log.append(Bytes::from(good), 2).await,
            Err(StorageError::StaleLeaderEpoch { .. })
        ));
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(
            read_all(&log, 0).await.len(),
            2 * build_batch(0, 1, 0, b"ok").len()
        );
    });
}

#[test]
fn replica_append_keeps_offsets_and_refuses_gaps_and_overlaps() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open(&path, small_config()).await;
        let b0 = stamped(build_batch(0, 5, 1, b"a"), 0, 4);
        let b1 = stamped(build_batch(0, 2, 2, b"b"), 5, 6);
        let mut both = b0.clone();
        both.extend_from_slice(&b1);
        let info = log.append_replica(Bytes::from(both.clone())).await.unwrap();
        assert_eq!((info.first_offset, info.last_offset), (0, 6));
        assert_eq!(read_all(&log, 0).await, both);
        assert_eq!(
            log.leader_epoch_entries(),
            vec![(LeaderEpoch(4), 0), (LeaderEpoch(6), 5)]
        );
        let gap = stamped(build_batch(0, 1, 3, b"c"), 8, 6);
        assert!(matches!(
            log.append_replica(Bytes::from(gap)).await,
            Err(StorageError::OffsetGap {
                expected_offset: 7,
                ..
            })
        ));
        let overlap = stamped(build_batch(0, 1, 3, b"c"), 6, 6);
        assert!(matches!(
            log.append_replica(Bytes::from(overlap)).await,
            Err(StorageError::OffsetOverlap { .. })
        ));
        assert_eq!(log.end_offset_for_epoch(4), Some((LeaderEpoch(4), 5)));
        assert_eq!(log.end_offset_for_epoch(5), Some((LeaderEpoch(4), 5)));
        assert_eq!(log.end_offset_for_epoch(6), Some((LeaderEpoch(6), 7)));
        assert_eq!(log.leader_epoch_start_offset(6), Some(5));
    });
}

#[test]
fn compacted_replica_append_crosses_the_leaders_cleaned_gaps() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open(&path, config_compacted()).await;
        let b0 = stamped(build_batch(0, 2, 1, b"a"), 0, 4);
        let info = log.append_replica(Bytes::from(b0)).await.unwrap();
        assert_eq!(info.last_offset, 1);
        // The leader's cleaner removed offsets 2..=9; the next batches arrive past the log end,
        // with another gap between them.
        let b1 = stamped(build_batch(0, 1, 2, b"b"), 10, 4);
        let b2 = stamped(build_batch(0, 2, 3, b"c"), 20, 5);
        let mut both = b1.clone();
        both.extend_from_slice(&b2);
        let info = log.append_replica(Bytes::from(both)).await.unwrap();
        assert_eq!((info.first_offset, info.last_offset), (10, 21));
        assert_eq!(log.log_end_offset(), 22);
        // Reads in the gap start at the next batch, from cache and after a reopen from disk.
        assert_eq!(read_all(&log, 5).await.len(), b1.len() + b2.len());
        assert_eq!(read_all(&log, 15).await, b2);
        let overlap = stamped(build_batch(0, 1, 3, b"d"), 21, 5);
        assert!(matches!(
            log.append_replica(Bytes::from(overlap)).await,
            Err(StorageError::OffsetOverlap { .. })
        ));
        log.close().await.unwrap();
        let log = open(&path, config_compacted()).await;
        assert_eq!(log.log_end_offset(), 22);
        assert_eq!(read_all(&log, 15).await, b2);
    });
}

fn config_compacted() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        ..small_config()
    }
}

#[test]
fn torn_tail_is_truncated_on_reopen() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            segment_bytes: 1 << 20,
            ..small_config()
        };
        let log = open(&path, config.clone()).await;
        let mut expected = Vec::new();
        for i in 0..10 {
            let b = build_batch(0, 1, i, &[1; 700]);
            let _ = log.append(Bytes::from(b.clone()), 0).await.unwrap();
            expected.extend(stamped(b, i, 0));
        }
        let (file, size) = active_file(&log);
        drop(log); // a crash: no clean-shutdown marker
                   // Half of a next batch, as a torn O_DIRECT write would leave it.
        let next = stamped(build_batch(0, 1, 10, &[2; 700]), 10, 0);
        write_at(&file, size, &next[..300]);
        let log = open(&path, config.clone()).await;
        assert_eq!(log.log_end_offset(), 10);
        assert_eq!(read_all(&log, 0).await, expected);
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            size,
            "file cut at the last good batch"
        );
        // The log continues where the good data ended.
        let info = log
            .append(Bytes::from(build_batch(0, 1, 11, b"z")), 0)
            .await
            .unwrap();
        assert_eq!(info.first_offset, 10);
        drop(log);
        // Corruption inside the active segment: the log ends before the bad batch.
        let log = open(&path, config.clone()).await;
        let r = log.read(5, 1, i64::MAX).await.unwrap();
        let pos_of_5 = expected.len() / 10 * 5;
        assert_eq!(
            r.chunks[0][..],
            expected[pos_of_5..pos_of_5 + expected.len() / 10]
        );
        drop(log);
        write_at(&file, pos_of_5 as u64 + 100, &[0xee]);
        let log = open(&path, config.clone()).await;
        assert_eq!(log.log_end_offset(), 5);
        assert_eq!(read_all(&log, 0).await, expected[..pos_of_5]);
    });
}

#[test]
fn clean_shutdown_skips_the_scan_and_keeps_everything() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open(&path, small_config()).await;
        let mut expected = Vec::new();
        for i in 0..40 {
            let b = build_batch(0, 2, 100 + i, &[i as u8; 200]);
            let _ = log.append(Bytes::from(b.clone()), 2).await.unwrap();
            expected.extend(stamped(b, 2 * i, 2));
        }
        log.set_high_watermark(50);
        log.close().await.unwrap();
        assert!(path.join(crate::checkpoint::CLEAN_SHUTDOWN_FILE).exists());
        let log = open(&path, small_config()).await;
        assert!(!path.join(crate::checkpoint::CLEAN_SHUTDOWN_FILE).exists());
        assert_eq!(log.log_end_offset(), 80);
        assert_eq!(log.high_watermark(), 50);
        assert_eq!(read_all(&log, 0).await, expected);
        assert_eq!(
            log.offset_for_timestamp(120).await.unwrap(),
            Some((40, 120))
        );
        let b = build_batch(0, 1, 500, b"after");
        assert_eq!(
            log.append(Bytes::from(b), 2).await.unwrap().first_offset,
            80
        );
    });
}

#[test]
fn a_segment_rolled_after_a_clean_restart_is_not_trusted_by_its_old_index() {
    // The clean close writes the active segment's index files. If they were still there when
    // that segment, appended to after the restart and rolled, is cut off by a crash before its
    // seal made it final (exact size, fresh index files), recovery would take them for a
    // finished seal and the preallocated file length for the segment's size.
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            segment_bytes: 16 << 10,
            ..small_config()
        };
        let log = open(&path, config.clone()).await;
        let mut expected = Vec::new();
        // An idempotent producer's batches: opening replays them from the last producer
        // snapshot, reading each segment up to its size.
        let mut next = |i: i64| {
            let b = crate::batch::build_producer_batch(0, 1, i, &[i as u8; 1000], 7, 0, i as i32);
            expected.extend(stamped(b.clone(), i, 0));
            Bytes::from(b)
        };
        for i in 0..3 {
            let _ = log.append(next(i), 0).await.unwrap();
        }
        log.close().await.unwrap();
        let log = open(&path, config.clone()).await;
        let first = crate::segment::file_name(0, "log");
        let index_files =
            ["index", "timeindex"].map(|ext| path.join(crate::segment::file_name(0, ext)));
        let mut i = 3;
        loop {
            // What is on disk beside the segment just before the append that rolls it.
            let before: Vec<Option<Vec<u8>>> =
                index_files.iter().map(|p| std::fs::read(p).ok()).collect();
            let _ = log.append(next(i), 0).await.unwrap();
            i += 1;
            if log.segment_count() > 1 {
                // A crash inside the roll's seal, before its truncate: the index files as they
                // were, no producer snapshot at the roll, the file still at its preallocated
                // length.
                let _ =
                    std::fs::remove_file(path.join(crate::segment::file_name(i - 1, "snapshot")));
                for (p, content) in index_files.iter().zip(before) {
                    match content {
                        Some(bytes) => std::fs::write(p, bytes).unwrap(),
                        None => {
                            let _ = std::fs::remove_file(p);
                        }
                    }
                }
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path.join(&first))
                    .unwrap();
                let len = f.metadata().unwrap().len();
                f.set_len(len + (32 << 10)).unwrap();
                break;
            }
        }
        drop(log);
        let log = open(&path, config).await;
        assert_eq!(log.log_end_offset(), i);
        assert_eq!(read_all(&log, 0).await, expected);
    });
}

#[test]
fn reads_respect_max_bytes_and_the_upper_bound() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            segment_bytes: 1 << 20,
            ..small_config()
        };
        let log = open(&path, config.clone()).await;
        let batch_len = build_batch(0, 1, 0, &[0; 1000]).len();
        for i in 0..20 {
            let _ = log
                .append(Bytes::from(build_batch(0, 1, i, &[0; 1000])), 0)
                .await
                .unwrap();
        }
        log.close().await.unwrap();
        for cache in [1 << 20, 0] {
            let log = PartitionLog::open(&path, config.clone(), Rc::new(TailCache::new(cache)))
                .await
                .unwrap();
            if cache > 0 {
                // Warm the cache through appends is not possible after reopen; reads go to disk.
            }
            let r = log.read(3, 3 * batch_len + 10, i64::MAX).await.unwrap();
            assert_eq!(
                (r.chunks.len(), r.size_bytes, r.next_offset),
                (1, 3 * batch_len, 6)
            );
            let r = log.read(3, 1, i64::MAX).await.unwrap();
            assert_eq!((r.size_bytes, r.next_offset), (batch_len, 4));
            let r = log.read(3, 1 << 20, 5).await.unwrap();
            assert_eq!((r.size_bytes, r.next_offset), (2 * batch_len, 5));
            let r = log.read(5, 1 << 20, 5).await.unwrap();
            assert!(r.chunks.is_empty());
            let r = log.read(19, 1 << 20, i64::MAX).await.unwrap();
            assert_eq!(r.next_offset, 20);
            let bytes = r.chunks.into_iter().next().unwrap().into_bytes();
            assert_eq!(bytes.len(), batch_len);
            log.close().await.unwrap();
        }
    });
}

#[test]
fn high_watermark_never_goes_backwards() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open(&path, small_config()).await;
        let _ = log
            .append(Bytes::from(build_batch(0, 4, 0, b"x")), 0)
            .await
            .unwrap();
        log.set_high_watermark(3);
        log.set_high_watermark(100); // clamped to the log end offset
        assert_eq!(log.high_watermark(), 4);
        let log = Rc::new(log);
        let l2 = Rc::clone(&log);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            l2.set_high_watermark(2)
        }));
        assert!(r.is_err());
    });
}

#[test]
fn group_writes_span_several_write_behind_chunks() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            segment_bytes: 8 << 20,
            ..LogConfig::default()
        };
        let log = open(&path, config.clone()).await;
        let mut expected = Vec::new();
        let mut next = 0;
        for round in 0..3u8 {
            let mut futs = Vec::new();
            for i in 0..12u8 {
                let b = build_batch(0, 1, 0, &vec![round ^ i; 70_001 + usize::from(i)]);
                expected.extend(stamped(b.clone(), next, 0));
                next += 1;
                futs.push(log.append(Bytes::from(b), 0));
            }
            for r in join_all(futs).await {
                let _ = r.unwrap();
            }
        }
        assert_eq!(read_all(&log, 0).await, expected);
        drop(log);
        let log = PartitionLog::open(&path, config, Rc::new(TailCache::new(0)))
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 36);
        assert_eq!(read_all(&log, 0).await, expected);
    });
}

#[test]
fn dropped_append_futures_still_complete_their_writes() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open(
            &path,
            LogConfig {
                flush: FlushPolicy::Fsync,
                ..small_config()
            },
        )
        .await;
        let mut expected = Vec::new();
        for i in 0..10i64 {
            let b = build_batch(0, 1, i, &[i as u8; 3000]);
            expected.extend(stamped(b.clone(), i, 0));
            let mut fut = Box::pin(log.append(Bytes::from(b), 0));
            if i % 2 == 0 {
                // Poll once (it becomes the writer, or queues for the write lock), then drop.
                let _ =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await;
            }
            drop(fut);
        }
        let b = build_batch(0, 1, 10, b"last");
        expected.extend(stamped(b.clone(), 10, 0));
        assert_eq!(
            log.append(Bytes::from(b), 0).await.unwrap().first_offset,
            10
        );
        assert_eq!(read_all(&log, 0).await, expected);
        drop(log);
        let log = open(&path, small_config()).await;
        assert_eq!(read_all(&log, 0).await, expected);
    });
}

#[test]
fn shared_input_is_stamped_on_its_way_to_disk_and_left_untouched() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            segment_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let cache = Rc::new(TailCache::new(1 << 20));
        let log = PartitionLog::open(&path, config.clone(), Rc::clone(&cache))
            .await
            .unwrap();
        let first = build_batch(0, 1, 0, b"first");
        let mut expected = stamped(first.clone(), 0, 3);
        let _ = log.append(Bytes::from(first), 3).await.unwrap();

        // Two batches in one request frame that the caller keeps (a shared `Bytes`).
        let (b1, b2) = (
            build_batch(40, 3, 1, &[1u8; 5000]),
            build_batch(90, 2, 2, &[2u8; 7000]),
        );
        let frame = Bytes::from([b1.clone(), b2.clone()].concat());
        let original = frame.to_vec();
        let more = stamped(b1, 1, 7)
            .into_iter()
            .chain(stamped(b2, 4, 7))
            .collect::<Vec<u8>>();
        let fut = log.append(frame.slice(..), 7);
        // Staged, not written yet: served from the pending queue, stamped.
        assert_eq!(read_all(&log, 1).await, more);
        let info = fut.await.unwrap();
        assert_eq!((info.first_offset, info.last_offset), (1, 5));
        expected.extend_from_slice(&more);
        assert_eq!(
            &frame[..],
            &original[..],
            "the caller's bytes are not stamped"
        );
        let hits = cache.stats().hits;
        assert_eq!(read_all(&log, 0).await, expected);
        assert!(
            cache.stats().hits > hits,
            "written batches are in the tail cache"
        );

        // The validated path appends the same bytes the same way.
        let b3 = build_batch(0, 2, 3, &[3u8; 100]);
        let frame = Bytes::from(b3.clone());
        let keep = frame.clone();
        let v = crate::batch::ValidatedBatches::validate(frame).unwrap();
        let info = log.append_validated(v, 7).await.unwrap();
        assert_eq!((info.first_offset, info.last_offset), (6, 7));
        assert_eq!(&keep[..], &b3[..]);
        expected.extend(stamped(b3, 6, 7));
        assert_eq!(read_all(&log, 0).await, expected);

        log.close().await.unwrap();
        let log = PartitionLog::open(&path, config, Rc::new(TailCache::new(0)))
            .await
            .unwrap();
        assert_eq!(read_all(&log, 0).await, expected);
    });
}

#[test]
fn shared_input_without_a_tail_cache_reads_stamped_while_pending_and_from_disk() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = PartitionLog::open(&path, small_config(), Rc::new(TailCache::new(0)))
            .await
            .unwrap();
        let b = build_batch(55, 4, 1, &[9u8; 3000]);
        let frame = Bytes::from(b.clone());
        let keep = frame.clone();
        let expected = stamped(b.clone(), 0, 2);
        let fut = log.append(frame, 2);
        assert_eq!(read_all(&log, 0).await, expected);
        let _ = fut.await.unwrap();
        assert_eq!(&keep[..], &b[..]);
        assert_eq!(read_all(&log, 0).await, expected);
    });
}

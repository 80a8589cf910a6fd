//! Storage hot paths: append (1 KiB records in 16 KiB and 1 MiB batches), the cost of the
//! idempotent-producer checks on small appends, sequential read from disk and from the tail
//! cache, and CRC-32C batch validation. Reported in bytes/s.
//!
//! Compare append with `dd if=/dev/zero of=<file on the same disk> bs=1M count=2000 oflag=direct`
//! (`perf/scripts/append-vs-dd.sh` alternates the two and reports the median ratio).
//! The log lives under `SKEIN_BENCH_DIR` (default: the target dir, which must support O_DIRECT).

// Benchmark setup failing is a benchmark failing.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{LocalExecutor, LocalExecutorBuilder};
use skein_storage::batch::{build_batch, build_producer_batch, validate_batches};
use skein_storage::{LogConfig, PartitionLog, TailCache};

const RECORD_BYTES: usize = 1024;
/// Kafka's default `segment.bytes`. Each roll costs an fdatasync of the sealed segment (dd has
/// none): 150-170 ms on a virtio disk, which at 128 MiB segments took ~20% off append
/// throughput. Retention keeps the log near `RETAINED_BYTES`, so a long run does not fill the
/// disk.
const SEGMENT_BYTES: u64 = 1 << 30;
const RETAINED_BYTES: i64 = 1 << 30;

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("SKEIN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-tmp"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

/// The broker's DMA arena per shard (`skein.io.memory.bytes.per.shard`, 64 MiB): with glommio's
/// 10 MiB default, in-flight write-behind chunks and read buffers spill to fresh allocations.
const IO_MEMORY_BYTES: usize = 64 << 20;

fn executor() -> LocalExecutor {
    LocalExecutorBuilder::default()
        .io_memory(IO_MEMORY_BYTES)
        .make()
        .unwrap()
}

/// A batch of `records` records of 1 KiB each.
fn batch(records: i32) -> Bytes {
    let value: Vec<u8> = (0..RECORD_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    Bytes::from(build_batch(0, records, 1_700_000_000_000, &value))
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT_BYTES,
        retention_bytes: RETAINED_BYTES,
        // 1 MiB of records plus batch overhead exceeds Kafka's default max.message.bytes.
        max_message_bytes: 2 << 20,
        ..LogConfig::default()
    }
}

/// Appends `iters` batches made by `next_batch(i)` from a sliding window of `in_flight`
/// concurrent producers and returns the elapsed time. Every `retention_every` appends,
/// retention runs if needed so the log stays bounded.
async fn append_window(
    log: &Rc<PartitionLog>,
    iters: u64,
    in_flight: u64,
    retention_every: u64,
    mut next_batch: impl FnMut(u64) -> Bytes,
) -> Duration {
    let start = Instant::now();
    let mut window = std::collections::VecDeque::new();
    for i in 0..iters {
        if window.len() as u64 == in_flight {
            let t = window.pop_front().unwrap();
            let _ = t.await;
        }
        let (log2, b) = (Rc::clone(log), next_batch(i));
        window.push_back(
            glommio::spawn_local(async move {
                let _ = log2.append(b, 0).await.unwrap();
            })
            .detach(),
        );
        if i % retention_every == retention_every - 1
            && log.size_bytes() > 2 * RETAINED_BYTES as u64
        {
            log.set_high_watermark(log.log_end_offset());
            let _ = log.enforce_retention(0).await.unwrap();
        }
    }
    for t in window {
        let _ = t.await;
    }
    start.elapsed()
}

/// Appends `iters` copies of `batch`, `in_flight` at a time.
async fn append_many(
    log: &Rc<PartitionLog>,
    batch: &Bytes,
    iters: u64,
    in_flight: u64,
) -> Duration {
    append_window(log, iters, in_flight, 256, |_| batch.clone()).await
}

fn append(c: &mut Criterion) {
    let ex = executor();
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(2));
    // (records per batch, appends in flight): 16 KiB batches from 64 concurrent producers are
    // grouped by the write-behind path; 1 MiB batches one at a time are dd's access pattern;
    // 4 and 16 in flight show whether deeper queues help (today they do not).
    for (records, in_flight) in [(16, 64), (1024, 1), (1024, 4), (1024, 16)] {
        let dir = bench_dir();
        let path = dir.path().to_path_buf();
        let log = ex.run(async move { open_log(path, 64 << 20).await });
        let b = batch(records);
        group.throughput(Throughput::Bytes(b.len() as u64));
        let id = BenchmarkId::new(
            format!("{}KiB_batches", records),
            format!("{in_flight}_in_flight"),
        );
        group.bench_function(id, |bencher| {
            bencher.iter_custom(|iters| {
                let log = Rc::clone(&log);
                let b = b.clone();
                ex.run(async move { append_many(&log, &b, iters, in_flight).await })
            })
        });
        let log = Rc::try_unwrap(log).ok().unwrap();
        ex.run(async move { log.delete().await.unwrap() });
        drop(dir);
    }
    group.finish();
}

/// Batch header positions (RecordBatch v2): the CRC-32C at 17 covers everything from 21 on,
/// the producer id is at 43 and the base sequence at 53.
const CRC_AT: usize = 17;
const PRODUCER_ID_AT: usize = 43;
const CRC_FROM: usize = 21;
const BASE_SEQUENCE_AT: usize = 53;

/// Appends `iters` copies of the one-record `template`, `in_flight` at a time. With
/// `producers > 0` the template is an idempotent producer's batch and append `i` is producer
/// `i % producers`'s next one (its own id, its sequence). Every copy is re-checksummed either
/// way, so that the plain and the idempotent runs differ only in the producer-state work.
async fn append_sequenced(
    log: &Rc<PartitionLog>,
    template: &[u8],
    iters: u64,
    in_flight: u64,
    producers: i64,
    next_seq: &mut [i32],
) -> Duration {
    append_window(log, iters, in_flight, 4096, |i| {
        let mut b = template.to_vec();
        if producers > 0 {
            let p = (i % producers as u64) as usize;
            b[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&(p as i64).to_be_bytes());
            b[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&next_seq[p].to_be_bytes());
            next_seq[p] += 1;
        }
        let crc = crc32c::crc32c(&b[CRC_FROM..]);
        b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(b)
    })
    .await
}

/// Small appends (one 1 KiB record, 64 in flight) without and with a producer id: the
/// difference is the cost of the idempotence checks and bookkeeping on the append path.
fn append_producer_state(c: &mut Criterion) {
    let ex = executor();
    let mut group = c.benchmark_group("append_producer_state");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(2));
    let value: Vec<u8> = (0..RECORD_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    for (name, producers) in [
        ("1KiB_no_producer_id", 0i64),
        ("1KiB_idempotent_64_producers", 64),
    ] {
        let dir = bench_dir();
        let path = dir.path().to_path_buf();
        let log = ex.run(async move { open_log(path, 64 << 20).await });
        let template = if producers > 0 {
            build_producer_batch(0, 1, 1_700_000_000_000, &value, 0, 0, 0)
        } else {
            build_batch(0, 1, 1_700_000_000_000, &value)
        };
        group.throughput(Throughput::Bytes(template.len() as u64));
        let mut next_seq = vec![0i32; producers.max(1) as usize];
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iters| {
                let log = Rc::clone(&log);
                let template = template.clone();
                let mut seqs = std::mem::take(&mut next_seq);
                let (elapsed, seqs) = ex.run(async move {
                    let d =
                        append_sequenced(&log, &template, iters, 64, producers, &mut seqs).await;
                    (d, seqs)
                });
                next_seq = seqs;
                elapsed
            })
        });
        let log = Rc::try_unwrap(log).ok().unwrap();
        ex.run(async move { log.delete().await.unwrap() });
        drop(dir);
    }
    group.finish();
}

async fn open_log(path: PathBuf, cache_bytes: usize) -> Rc<PartitionLog> {
    let cache = Rc::new(TailCache::new(cache_bytes));
    Rc::new(
        PartitionLog::open(&path, log_config(), cache)
            .await
            .unwrap(),
    )
}

fn read(c: &mut Criterion) {
    const BATCHES: i64 = 256; // 256 MiB on disk
    const CACHED_BATCHES: i64 = 64;
    let ex = executor();
    let b = batch(1024);
    let batch_len = b.len();
    let mut group = c.benchmark_group("read");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(batch_len as u64));

    // Disk: fill, reopen with no tail cache, read sequentially with direct I/O.
    let dir = bench_dir();
    let (path, fill) = (dir.path().to_path_buf(), b.clone());
    ex.run(async move {
        let log = open_log(path, 0).await;
        append_many(&log, &fill, BATCHES as u64, 4).await;
        Rc::try_unwrap(log).ok().unwrap().close().await.unwrap();
    });
    let path = dir.path().to_path_buf();
    let log = ex.run(async move { open_log(path, 0).await });
    group.bench_function("disk_1MiB_batches", |bencher| {
        bench_reads(bencher, &ex, &log, batch_len, BATCHES)
    });
    ex.run(async move { Rc::try_unwrap(log).ok().unwrap().delete().await.unwrap() });

    // Tail cache: batches appended to a log whose cache holds them all.
    let dir = bench_dir();
    let (path, fill) = (dir.path().to_path_buf(), b.clone());
    let log = ex.run(async move {
        let log = open_log(path, 512 << 20).await;
        append_many(&log, &fill, CACHED_BATCHES as u64, 4).await;
        log
    });
    group.bench_function("tail_cache_1MiB_batches", |bencher| {
        bench_reads(bencher, &ex, &log, batch_len, CACHED_BATCHES)
    });
    ex.run(async move { Rc::try_unwrap(log).ok().unwrap().delete().await.unwrap() });
    group.finish();
}

/// Sequential reads of 1 MiB (one batch) each, wrapping around at the log end.
fn bench_reads(
    bencher: &mut criterion::Bencher,
    ex: &LocalExecutor,
    log: &Rc<PartitionLog>,
    batch_len: usize,
    batches: i64,
) {
    bencher.iter_custom(|iters| {
        let log = Rc::clone(log);
        ex.run(async move {
            let start = Instant::now();
            let mut offset = log.log_start_offset();
            for _ in 0..iters {
                let r = log.read(offset, batch_len, i64::MAX).await.unwrap();
                assert_eq!(r.size_bytes, batch_len);
                offset = if r.next_offset >= log.log_start_offset() + batches * 1024 {
                    log.log_start_offset()
                } else {
                    r.next_offset
                };
            }
            start.elapsed()
        })
    });
}

fn crc(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate_crc32c");
    for records in [16, 1024] {
        let b = batch(records);
        group.throughput(Throughput::Bytes(b.len() as u64));
        group.bench_function(format!("{records}KiB_batch"), |bencher| {
            bencher.iter(|| validate_batches(std::hint::black_box(&b)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, crc, append, append_producer_state, read);
criterion_main!(benches);

//! Crash test: a child process appends in fsync mode and prints every acknowledged batch; the
//! parent kills it with SIGKILL mid-appends, reopens the log (recovery) and checks that every
//! acknowledged batch reads back identical. The child is this test binary re-executed with
//! `SKEIN_CRASH_CHILD_DIR` set, running only `crash_child`.

// Test helpers outside #[test] fns: unwrap is how a test fails.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use glommio::LocalExecutorBuilder;
use skein_storage::batch::{build_batch, validate_batches, RecordBatchHeader};
use skein_storage::{FlushPolicy, LogConfig, PartitionLog, TailCache};

mod common;
use common::{run_and_kill, test_dir, XorShift};

const CHILD_ENV: &str = "SKEIN_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "SKEIN_CRASH_ROUND";
const ROUNDS: u64 = 20;
const WRITER_TASKS: u64 = 4;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 10,
        flush: FlushPolicy::Fsync,
        ..LogConfig::default()
    }
}

/// CRC-32C of the part of a batch that stamping does not touch (attributes..end).
fn payload_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[21..])
}

#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var(ROUND_ENV)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(async move {
            let cache = Rc::new(TailCache::new(4 << 20));
            let log = Rc::new(
                PartitionLog::open(Path::new(&dir), config(), cache)
                    .await
                    .unwrap(),
            );
            let mut tasks = Vec::new();
            for t in 0..WRITER_TASKS {
                let log = Rc::clone(&log);
                tasks.push(glommio::spawn_local(async move {
                    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ ((round << 8) | (t + 1)));
                    loop {
                        let records = 1 + (rng.next() % 8) as i32;
                        let value_len = (rng.next() % 2500) as usize;
                        let value: Vec<u8> = (0..value_len).map(|_| rng.next() as u8).collect();
                        let batch = build_batch(0, records, 1_000 + round as i64, &value);
                        let crc = payload_crc(&batch);
                        let info = log.append(Bytes::from(batch), round as i32).await.unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {} {} {}", info.first_offset, crc, records).unwrap();
                        out.flush().unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
        });
}

/// Reopens the log (recovery) and checks every acknowledged batch plus the whole log's CRCs.
fn verify(dir: &Path, acked: &BTreeMap<i64, (u32, i32)>, clean_close: bool) -> i64 {
    let dir = dir.to_path_buf();
    let acked = acked.clone();
    LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(async move {
            let log = PartitionLog::open(&dir, config(), Rc::new(TailCache::new(0)))
                .await
                .unwrap();
            let leo = log.log_end_offset();
            for (&offset, &(crc, records)) in &acked {
                assert!(
                    offset < leo,
                    "acknowledged offset {offset} lost (log end {leo})"
                );
                let r = log.read(offset, 1, i64::MAX).await.unwrap();
                let chunk = &r.chunks[0];
                let h = RecordBatchHeader::parse(chunk).unwrap();
                assert_eq!(h.base_offset, offset);
                assert_eq!(h.record_count, records);
                assert_eq!(
                    payload_crc(&chunk[..h.size_bytes()]),
                    crc,
                    "batch at {offset} differs"
                );
            }
            let mut at = log.log_start_offset();
            while at < leo {
                let r = log.read(at, 1 << 20, i64::MAX).await.unwrap();
                for c in &r.chunks {
                    validate_batches(c).unwrap();
                }
                assert!(r.next_offset > at);
                at = r.next_offset;
            }
            if clean_close {
                log.close().await.unwrap();
            }
            leo
        })
}

#[test]
fn acknowledged_batches_survive_kill_9() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = test_dir();
    let mut acked: BTreeMap<i64, (u32, i32)> = BTreeMap::new();
    let mut rng = XorShift(42);
    let started = Instant::now();
    for round in 0..ROUNDS {
        // Let it acknowledge a few batches, then kill it at a random moment mid-appends.
        let want = 5 + rng.next() % 40;
        let round_text = round.to_string();
        let dir_text = dir.path().display().to_string();
        run_and_kill(
            "crash_child",
            &[(CHILD_ENV, &dir_text), (ROUND_ENV, &round_text)],
            want,
            &mut rng,
            round,
            |line| record(&mut acked, line),
        );
        let leo = verify(dir.path(), &acked, round % 2 == 1);
        assert!(leo > *acked.keys().last().unwrap());
    }
    eprintln!(
        "{} acknowledged batches verified over {ROUNDS} kill -9 rounds in {:?}",
        acked.len(),
        started.elapsed()
    );
}

fn record(acked: &mut BTreeMap<i64, (u32, i32)>, line: &str) {
    let mut parts = line.split_whitespace();
    if parts.next() != Some("ACK") {
        return;
    }
    let offset: i64 = parts.next().unwrap().parse().unwrap();
    let crc: u32 = parts.next().unwrap().parse().unwrap();
    let records: i32 = parts.next().unwrap().parse().unwrap();
    assert!(
        acked.insert(offset, (crc, records)).is_none(),
        "offset {offset} acknowledged twice"
    );
}

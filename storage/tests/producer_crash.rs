//! Crash test for idempotent producers: a child process appends batches of several producers
//! (one batch in flight per producer, plus plain batches) and prints every acknowledgement; the
//! parent SIGKILLs it mid-appends, reopens the log (recovery, producer snapshots and replay)
//! and retries the last acknowledged batches of every producer: each must be a duplicate with
//! the acknowledged offsets, and the producer must be able to go on without a sequence error.
//! The child is this test binary re-executed with `SKEIN_PRODUCER_CRASH_DIR` set.

// Test helpers outside #[test] fns: unwrap is how a test fails.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use glommio::LocalExecutorBuilder;
use skein_storage::batch::{build_batch, build_producer_batch};
use skein_storage::{LogConfig, PartitionLog, ProducerId, TailCache};

mod common;
use common::{run_and_kill, test_dir, XorShift};

const CHILD_ENV: &str = "SKEIN_PRODUCER_CRASH_DIR";
const ROUNDS: u64 = 12;
const PRODUCERS: i64 = 4;
/// Acknowledged batches retried after each crash. The log keeps 5 per producer and at most one
/// unacknowledged batch per producer can follow them, so the last 4 acknowledged are retained.
const RETRIED: usize = 4;

fn config() -> LogConfig {
    LogConfig {
        // Small segments: many rolls, so snapshots are taken (and lost) all the time.
        segment_bytes: 96 << 10,
        ..LogConfig::default()
    }
}

fn batch(pid: i64, seq: i32, records: i32, value_len: usize) -> Bytes {
    Bytes::from(build_producer_batch(
        0,
        records,
        1_000,
        &vec![pid as u8; value_len],
        pid,
        0,
        seq,
    ))
}

/// The sequence a producer continues at: after whatever the log holds of it.
fn next_sequence(log: &PartitionLog, pid: i64) -> i32 {
    log.producer(ProducerId(pid))
        .and_then(|e| e.last_batch().map(|b| b.last_sequence + 1))
        .unwrap_or(0)
}

#[test]
fn producer_crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
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
            for pid in 0..PRODUCERS {
                let log = Rc::clone(&log);
                tasks.push(glommio::spawn_local(async move {
                    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (pid as u64 + 1));
                    let mut seq = next_sequence(&log, pid);
                    loop {
                        let records = 1 + (rng.next() % 6) as i32;
                        let len = (rng.next() % 3000) as usize;
                        let info = log.append(batch(pid, seq, records, len), 0).await.unwrap();
                        assert!(!info.duplicate);
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {pid} {seq} {records} {}", info.first_offset).unwrap();
                        out.flush().unwrap();
                        seq += records;
                    }
                }));
            }
            // Plain batches between the producers' ones.
            let plain = {
                let log = Rc::clone(&log);
                glommio::spawn_local(async move {
                    loop {
                        let _ = log
                            .append(Bytes::from(build_batch(0, 2, 1_000, &[7; 500])), 0)
                            .await
                            .unwrap();
                    }
                })
            };
            for t in tasks {
                t.await;
            }
            plain.await;
        });
}

/// One acknowledged batch: (first sequence, records, first offset).
type Acked = BTreeMap<i64, Vec<(i32, i32, i64)>>;

/// Reopens the log and retries every producer's last acknowledged batches.
fn verify(dir: &Path, acked: &Acked, clean_close: bool) -> usize {
    let dir = dir.to_path_buf();
    let acked = acked.clone();
    LocalExecutorBuilder::default()
        .make()
        .unwrap()
        .run(async move {
            let log = PartitionLog::open(&dir, config(), Rc::new(TailCache::new(0)))
                .await
                .unwrap();
            let mut checked = 0;
            for (&pid, batches) in &acked {
                if batches.is_empty() {
                    continue; // no acknowledgement this round
                }
                let leo = log.log_end_offset();
                for &(seq, records, offset) in batches.iter().rev().take(RETRIED) {
                    let info = log.append(batch(pid, seq, records, 10), 0).await.unwrap();
                    assert!(
                        info.duplicate,
                        "producer {pid}: acknowledged seq {seq} at {offset} not recognised"
                    );
                    assert_eq!(info.first_offset, offset, "producer {pid} seq {seq}");
                    assert_eq!(info.last_offset, offset + i64::from(records) - 1);
                    checked += 1;
                }
                assert_eq!(log.log_end_offset(), leo, "retries append nothing");
                // The producer goes on from the log's state without a sequence error.
                let seq = next_sequence(&log, pid);
                let (last_seq, last_records, _) = *batches.last().unwrap();
                assert!(
                    seq >= last_seq + last_records,
                    "producer {pid} went backwards"
                );
                let info = log.append(batch(pid, seq, 1, 10), 0).await.unwrap();
                assert!(!info.duplicate);
            }
            if clean_close {
                log.close().await.unwrap();
            }
            checked
        })
}

/// Records an ACK line; the producer's new batches follow its last acknowledged one.
fn record(acked: &mut Acked, line: &str) {
    let mut parts = line.split_whitespace();
    if parts.next() != Some("ACK") {
        return;
    }
    let mut next = || parts.next().unwrap().parse::<i64>().unwrap();
    let (pid, seq, records, offset) = (next(), next() as i32, next() as i32, next());
    let batches = acked.entry(pid).or_default();
    if let Some(&(s, r, o)) = batches.last() {
        assert!(
            seq >= s + r && offset > o,
            "producer {pid} ack out of order"
        );
    }
    batches.push((seq, records, offset));
}

#[test]
fn idempotent_retries_are_recognised_after_kill_9() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = test_dir();
    let mut acked = Acked::new();
    let mut rng = XorShift(7);
    let mut checked = 0;
    for round in 0..ROUNDS {
        let want = 20 + rng.next() % 60;
        let dir_text = dir.path().display().to_string();
        run_and_kill(
            "producer_crash_child",
            &[(CHILD_ENV, &dir_text)],
            want,
            &mut rng,
            round,
            |line| record(&mut acked, line),
        );
        checked += verify(dir.path(), &acked, round % 2 == 1);
        // The verification appended one batch per producer: the next child continues after it.
        for batches in acked.values_mut() {
            batches.clear();
        }
    }
    eprintln!("{checked} retried batches recognised over {ROUNDS} kill -9 rounds");
}

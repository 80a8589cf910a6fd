//! Property test: random operation sequences against a simple in-memory model of the log,
//! including clean and unclean reopens with torn partial batches at the tail, and idempotent
//! producers whose retries must be answered with the original offsets across all of it.

use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use proptest::prelude::*;

use super::tests::{join_all, run, temp_dir};
use super::*;
use crate::batch::{build_batch, build_producer_batch, stamp};
use crate::config::FlushPolicy;

#[derive(Debug, Clone)]
enum Op {
    /// One append of 1..=3 batches: (records, value length).
    Append(Vec<(i32, usize)>),
    /// Several appends issued at once.
    Concurrent(Vec<(i32, usize)>),
    Read {
        pick: u16,
        max_bytes: usize,
    },
    Truncate {
        pick: u16,
    },
    Retention {
        keep_bytes: u16,
    },
    TimeLookup {
        pick: u16,
    },
    Reopen {
        clean: bool,
    },
    /// Unclean stop, then a partial batch (`keep` bytes of it) or garbage after the tail.
    Crash {
        keep: u16,
        garbage: bool,
    },
    Flush,
    /// An idempotent producer (`producer` picks one of 3) sends its next batch, retries one of
    /// its last five (`retry`, when it has one in the log), or bumps its epoch.
    Produce {
        producer: u8,
        action: ProducerAction,
    },
}

#[derive(Debug, Clone)]
enum ProducerAction {
    Next { records: i32 },
    Retry { pick: u8 },
    Bump,
}

fn producer_action() -> impl Strategy<Value = ProducerAction> {
    prop_oneof![
        4 => (1i32..4).prop_map(|records| ProducerAction::Next { records }),
        3 => any::<u8>().prop_map(|pick| ProducerAction::Retry { pick }),
        1 => Just(ProducerAction::Bump),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // Mostly small batches; some big enough to span write-behind chunks (256 KiB).
    let value_len = prop_oneof![9 => 0usize..600, 1 => 50_000usize..150_000];
    let batch = (1i32..4, value_len);
    prop_oneof![
        6 => proptest::collection::vec(batch.clone(), 1..4).prop_map(Op::Append),
        2 => proptest::collection::vec(batch, 1..8).prop_map(Op::Concurrent),
        4 => (any::<u16>(), 1usize..3000).prop_map(|(pick, max_bytes)| Op::Read { pick, max_bytes }),
        1 => any::<u16>().prop_map(|pick| Op::Truncate { pick }),
        1 => any::<u16>().prop_map(|keep_bytes| Op::Retention { keep_bytes }),
        1 => any::<u16>().prop_map(|pick| Op::TimeLookup { pick }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(keep, garbage)| Op::Crash { keep, garbage }),
        1 => Just(Op::Flush),
        4 => (0u8..3, producer_action()).prop_map(|(producer, action)| Op::Produce { producer, action }),
    ]
}

#[derive(Debug, Clone)]
struct Setup {
    config: LogConfig,
    cache_bytes: usize,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![Just(512u64), Just(2048), Just(1 << 20)],
        prop_oneof![Just(0u32), Just(100), Just(4096)],
        prop_oneof![Just(0usize), Just(2048), Just(1 << 20)],
        any::<bool>(),
    )
        .prop_map(
            |(segment_bytes, index_interval_bytes, cache_bytes, fsync)| Setup {
                config: LogConfig {
                    segment_bytes,
                    index_interval_bytes,
                    retention_ms: -1,
                    flush: if fsync {
                        FlushPolicy::Fsync
                    } else {
                        FlushPolicy::Periodic {
                            interval_ms: 10,
                            messages: 50,
                        }
                    },
                    ..LogConfig::default()
                },
                cache_bytes,
            },
        )
}

struct ModelBatch {
    base: i64,
    next: i64,
    max_timestamp: i64,
    bytes: Vec<u8>,
}

/// An idempotent producer's batch that the log holds (or held before retention).
#[derive(Debug, Clone, Copy)]
struct ProducedBatch {
    producer_id: i64,
    producer_epoch: i16,
    first_sequence: i32,
    records: i32,
    first_offset: i64,
    last_offset: i64,
}

#[derive(Default)]
struct Model {
    batches: Vec<ModelBatch>,
    start: i64,
    leo: i64,
    timestamp: i64,
    /// Idempotent batches in log order; truncation removes them, retention does not (the log
    /// remembers producers whose batches retention deleted).
    produced: Vec<ProducedBatch>,
}

impl Model {
    fn append(&mut self, records: i32, value_len: usize) -> Vec<u8> {
        self.timestamp += 1;
        let mut b = build_batch(0, records, self.timestamp, &vec![records as u8; value_len]);
        stamp(&mut b, self.leo, 1);
        self.batches.push(ModelBatch {
            base: self.leo,
            next: self.leo + i64::from(records),
            max_timestamp: self.timestamp,
            bytes: b.clone(),
        });
        self.leo += i64::from(records);
        b
    }

    fn append_producer(&mut self, p: ProducedBatch, value_len: usize) -> Vec<u8> {
        self.timestamp += 1;
        let mut b = build_producer_batch(
            0,
            p.records,
            self.timestamp,
            &vec![3; value_len],
            p.producer_id,
            p.producer_epoch,
            p.first_sequence,
        );
        stamp(&mut b, self.leo, 1);
        let next = self.leo + i64::from(p.records);
        self.batches.push(ModelBatch {
            base: self.leo,
            next,
            max_timestamp: self.timestamp,
            bytes: b.clone(),
        });
        self.produced.push(ProducedBatch {
            first_offset: self.leo,
            last_offset: next - 1,
            ..p
        });
        self.leo = next;
        b
    }

    /// The producer's batches of its latest epoch, the last five of which the log retains.
    fn latest_epoch_batches(&self, producer_id: i64) -> Vec<ProducedBatch> {
        let mine: Vec<ProducedBatch> = self
            .produced
            .iter()
            .filter(|p| p.producer_id == producer_id)
            .copied()
            .collect();
        let Some(epoch) = mine.last().map(|p| p.producer_epoch) else {
            return Vec::new();
        };
        let same = mine.iter().rev().take_while(|p| p.producer_epoch == epoch);
        let mut v: Vec<ProducedBatch> = same.copied().collect();
        v.reverse();
        v
    }

    fn pick(&self, pick: u16) -> i64 {
        self.start + i64::from(pick) % (self.leo - self.start + 1)
    }

    fn concat_from(&self, from: i64) -> Vec<u8> {
        self.batches
            .iter()
            .filter(|b| b.next > from)
            .flat_map(|b| b.bytes.clone())
            .collect()
    }
}

async fn open(dir: &Path, s: &Setup) -> PartitionLog {
    PartitionLog::open(
        dir,
        s.config.clone(),
        Rc::new(TailCache::new(s.cache_bytes)),
    )
    .await
    .unwrap()
}

async fn read_all(log: &PartitionLog, from: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let r = log.read(at, 1 << 20, i64::MAX).await.unwrap();
        if r.chunks.is_empty() {
            return out;
        }
        r.chunks.iter().for_each(|c| out.extend_from_slice(c));
        at = r.next_offset;
    }
}

async fn check_read(log: &PartitionLog, m: &Model, from: i64, max_bytes: usize) {
    let r = log.read(from, max_bytes, i64::MAX).await.unwrap();
    let got: Vec<u8> = r.chunks.iter().flat_map(|c| c.to_vec()).collect();
    let expected: Vec<&ModelBatch> = m.batches.iter().filter(|b| b.next > from).collect();
    if expected.is_empty() {
        assert!(got.is_empty());
        return;
    }
    // A prefix of whole batches starting with the one holding `from`, at least one.
    let mut total = 0;
    let mut k = 0;
    while total < got.len() {
        assert_eq!(
            got[total..total + expected[k].bytes.len()],
            expected[k].bytes[..]
        );
        total += expected[k].bytes.len();
        k += 1;
    }
    assert!(k >= 1);
    assert!(k == 1 || total <= max_bytes);
    assert_eq!(r.next_offset, expected[k - 1].next);
}

async fn exec(dir: &Path, s: &Setup, ops: Vec<Op>) {
    let mut m = Model::default();
    let mut log = open(dir, s).await;
    for op in ops {
        match op {
            Op::Append(batches) => {
                let mut buf = Vec::new();
                for (records, len) in batches {
                    buf.extend(m.append(records, len));
                }
                let info = log.append(Bytes::from(buf), 1).await.unwrap();
                assert_eq!(info.last_offset + 1, m.leo);
            }
            Op::Concurrent(batches) => {
                let futs: Vec<_> = batches
                    .into_iter()
                    .map(|(records, len)| log.append(Bytes::from(m.append(records, len)), 1))
                    .collect();
                for r in join_all(futs).await {
                    let _ = r.unwrap();
                }
            }
            Op::Read { pick, max_bytes } => check_read(&log, &m, m.pick(pick), max_bytes).await,
            Op::Truncate { pick } => {
                let to = m.pick(pick);
                log.truncate_to(to).await.unwrap();
                m.batches.retain(|b| b.next <= to);
                m.leo = m.batches.last().map_or(m.start, |b| b.next);
                let leo = m.leo;
                m.produced.retain(|p| p.last_offset < leo);
            }
            Op::Produce { producer, action } => {
                produce(&log, &mut m, i64::from(producer) + 100, action).await
            }
            Op::Retention { keep_bytes } => {
                log.set_high_watermark(m.leo);
                let c = LogConfig {
                    retention_bytes: i64::from(keep_bytes),
                    ..s.config.clone()
                };
                log.update_config(c).unwrap();
                let r = log.enforce_retention(0).await.unwrap();
                log.update_config(s.config.clone()).unwrap();
                let start = log.log_start_offset();
                assert!(start == m.leo || m.batches.iter().any(|b| b.base == start));
                assert!(r.deleted_segments == 0 || start > m.start);
                m.batches.retain(|b| b.base >= start);
                m.start = start;
            }
            Op::TimeLookup { pick } => {
                let ts = i64::from(pick) % (m.timestamp + 2);
                let got = log.offset_for_timestamp(ts).await.unwrap();
                let want = m
                    .batches
                    .iter()
                    .find(|b| b.max_timestamp >= ts)
                    .map(|b| (b.base, b.max_timestamp));
                assert_eq!(got, want);
            }
            Op::Reopen { clean } => {
                if clean {
                    log.close().await.unwrap();
                } else {
                    drop(log);
                }
                log = open(dir, s).await;
            }
            Op::Crash { keep, garbage } => {
                let (path, size) = {
                    let st = log.inner.state.borrow();
                    let seg = st.active();
                    let size = seg.st.borrow().size;
                    (seg.log_path.clone(), size)
                };
                drop(log);
                let mut next = build_batch(0, 2, 1_000_000, &[9; 300]);
                stamp(&mut next, m.leo, 1);
                let tail = if garbage {
                    vec![0x5a; 1 + keep as usize % 500]
                } else {
                    next[..keep as usize % next.len()].to_vec()
                };
                if path.exists() && !tail.is_empty() {
                    use std::os::unix::fs::FileExt;
                    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                    f.write_all_at(&tail, size).unwrap();
                }
                log = open(dir, s).await;
                if log.log_end_offset() == m.leo + 2 {
                    // The missing bytes were exactly the zeros of the O_DIRECT padding, so the
                    // torn batch is whole and valid: an unacknowledged batch may survive.
                    m.timestamp = 1_000_000;
                    m.batches.push(ModelBatch {
                        base: m.leo,
                        next: m.leo + 2,
                        max_timestamp: 1_000_000,
                        bytes: next,
                    });
                    m.leo += 2;
                }
            }
            Op::Flush => log.flush().await.unwrap(),
        }
        assert_eq!(log.log_end_offset(), m.leo);
        assert_eq!(log.log_start_offset(), m.start);
    }
    assert_eq!(read_all(&log, m.start).await, m.concat_from(m.start));
    drop(log);
    let log = open(dir, s).await;
    assert_eq!(log.log_end_offset(), m.leo);
    assert_eq!(read_all(&log, m.start).await, m.concat_from(m.start));
}

/// One idempotent producer step; the log must agree with the model on whether it was new data
/// or a duplicate, and on the offsets.
async fn produce(log: &PartitionLog, m: &mut Model, producer_id: i64, action: ProducerAction) {
    let recent = m.latest_epoch_batches(producer_id);
    let last = recent.last().copied();
    let (epoch, next_seq) = last.map_or((0, 0), |p| {
        let last_seq = i64::from(p.first_sequence) + i64::from(p.records) - 1;
        (p.producer_epoch, (last_seq + 1) as i32)
    });
    // A retry is of one of the last five batches still in the log: below the log start the log
    // may have forgotten the producer (after a reopen without a usable snapshot), as Kafka.
    let retryable: Vec<ProducedBatch> = recent
        .iter()
        .rev()
        .take(5)
        .filter(|p| p.first_offset >= m.start)
        .copied()
        .collect();
    let new = |producer_epoch, first_sequence, records| ProducedBatch {
        producer_id,
        producer_epoch,
        first_sequence,
        records,
        first_offset: 0,
        last_offset: 0,
    };
    match action {
        ProducerAction::Retry { pick } if !retryable.is_empty() => {
            let p = retryable[usize::from(pick) % retryable.len()];
            let b = build_producer_batch(
                0,
                p.records,
                1,
                b"retry",
                producer_id,
                p.producer_epoch,
                p.first_sequence,
            );
            let info = log.append(Bytes::from(b), 1).await.unwrap();
            assert!(info.duplicate, "retry of {p:?}");
            assert_eq!(
                (info.first_offset, info.last_offset),
                (p.first_offset, p.last_offset)
            );
        }
        ProducerAction::Bump => {
            let b = m.append_producer(new(epoch + 1, 0, 1), 40);
            let info = log.append(Bytes::from(b), 1).await.unwrap();
            assert!(!info.duplicate);
            assert_eq!(info.last_offset + 1, m.leo);
        }
        // Nothing to retry: the producer sends its next batch instead.
        ProducerAction::Next { .. } | ProducerAction::Retry { .. } => {
            let records = match action {
                ProducerAction::Next { records } => records,
                _ => 1,
            };
            let b = m.append_producer(new(epoch, next_seq, records), 100);
            let info = log.append(Bytes::from(b), 1).await.unwrap();
            assert!(!info.duplicate);
            assert_eq!(info.last_offset + 1, m.leo);
        }
    }
}

proptest! {
    // PROPTEST_CASES overrides the default of 40 for longer local runs.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(40),
        ..ProptestConfig::default()
    })]
    #[test]
    fn log_matches_model(s in setup(), ops in proptest::collection::vec(op(), 1..40)) {
        let dir = temp_dir();
        let path = dir.path().to_path_buf();
        run(move || async move { exec(&path, &s, ops).await });
    }
}

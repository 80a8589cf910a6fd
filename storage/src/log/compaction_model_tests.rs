//! Property test: random appends, rolls, high-watermark moves, truncations, reopens and
//! compaction passes against a model of the records a consumer must see.

use std::path::Path;

use proptest::prelude::*;

use super::compaction_tests::{
    append_kv, compact_config, first_record_from, open_with, records, Rec,
};
use super::tests::{run, temp_dir};
use super::*;
use crate::batch::Compression;

#[derive(Debug, Clone)]
enum Op {
    /// One batch: (key 0..6, tombstone) per record, and its codec.
    Append(Vec<(u8, bool)>, usize),
    Roll,
    /// Moves the high watermark to a point between itself and the log end.
    HighWatermark(u16),
    /// A pass at `now + advance_ms`; `small_map` splits it over several passes.
    Compact {
        advance_ms: u16,
        small_map: bool,
    },
    /// Truncates the active segment's unreplicated part (never below the high watermark).
    Truncate(u16),
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let record = (0u8..6, proptest::bool::weighted(0.15));
    prop_oneof![
        8 => (proptest::collection::vec(record, 1..6), 0usize..5).prop_map(|(r, c)| Op::Append(r, c)),
        2 => Just(Op::Roll),
        2 => any::<u16>().prop_map(Op::HighWatermark),
        3 => (0u16..1500, any::<bool>()).prop_map(|(advance_ms, small_map)| Op::Compact { advance_ms, small_map }),
        1 => any::<u16>().prop_map(Op::Truncate),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

struct ModelRec {
    rec: Rec,
    /// A tombstone's delete horizon, once a pass has kept it.
    horizon_ms: Option<i64>,
}

struct Model {
    recs: Vec<ModelRec>,
    /// (base, last) offsets of every appended batch still holding a record.
    batches: Vec<(i64, i64)>,
    leo: i64,
    now_ms: i64,
    values: u64,
}

impl Model {
    /// What a pass that cleaned below `end` at `now_ms` leaves (see `cleaner`).
    fn compact(&mut self, end: i64, now_ms: i64, delete_retention_ms: i64) {
        let mut latest = std::collections::HashMap::new();
        for m in self.recs.iter().filter(|m| m.rec.offset < end) {
            if let Some(k) = &m.rec.key {
                latest.insert(k.clone(), m.rec.offset);
            }
        }
        self.recs.retain(|m| {
            let r = &m.rec;
            let Some(k) = &r.key else { return true };
            let superseded = r.offset < end && latest[k] != r.offset;
            let expired = r.value.is_none() && m.horizon_ms.is_some_and(|h| now_ms >= h);
            !(superseded || (r.offset < end && expired))
        });
        for m in self.recs.iter_mut() {
            if m.rec.offset < end && m.rec.value.is_none() && m.horizon_ms.is_none() {
                m.horizon_ms = Some(now_ms + delete_retention_ms);
            }
        }
        let recs = &self.recs;
        self.batches
            .retain(|&(b, l)| recs.iter().any(|m| (b..=l).contains(&m.rec.offset)));
    }
}

fn active_base(log: &PartitionLog) -> i64 {
    log.inner.state.borrow().active().base_offset
}

async fn exec(dir: &Path, config: LogConfig, cache_bytes: usize, ops: Vec<Op>) {
    let mut log = open_with(dir, config.clone(), cache_bytes).await;
    let mut m = Model {
        recs: Vec::new(),
        batches: Vec::new(),
        leo: 0,
        now_ms: 10_000,
        values: 0,
    };
    for op in ops {
        match op {
            Op::Append(recs, codec) => {
                let keys: Vec<Vec<u8>> = recs.iter().map(|(k, _)| vec![b'k', b'0' + k]).collect();
                let values: Vec<Vec<u8>> = recs
                    .iter()
                    .map(|_| {
                        m.values += 1;
                        format!("value {}", m.values).into_bytes()
                    })
                    .collect();
                let kvs: Vec<(&[u8], Option<&[u8]>)> = recs
                    .iter()
                    .enumerate()
                    .map(|(i, (_, tomb))| {
                        (keys[i].as_slice(), (!tomb).then_some(values[i].as_slice()))
                    })
                    .collect();
                let got = append_kv(&log, &kvs, m.now_ms, CODECS[codec]).await;
                m.batches.push((got[0].offset, got[got.len() - 1].offset));
                m.leo = got[got.len() - 1].offset + 1;
                m.recs.extend(got.into_iter().map(|rec| ModelRec {
                    rec,
                    horizon_ms: None,
                }));
            }
            Op::Roll => {
                log.update_config(LogConfig {
                    segment_ms: 1,
                    ..config.clone()
                })
                .unwrap();
                let _ = log.enforce_retention(m.now_ms).await.unwrap();
                log.update_config(config.clone()).unwrap();
            }
            Op::HighWatermark(pick) => {
                let hw = log.high_watermark();
                log.set_high_watermark(hw + i64::from(pick) % (m.leo - hw + 1));
            }
            Op::Compact {
                advance_ms,
                small_map,
            } => {
                m.now_ms += i64::from(advance_ms);
                let budget = if small_map { 200 } else { usize::MAX };
                let o = log.compact_with_budget(m.now_ms, budget).await.unwrap();
                if o.cleaned {
                    m.compact(o.first_dirty_offset, m.now_ms, config.delete_retention_ms);
                }
            }
            Op::Truncate(pick) => {
                let from = log.high_watermark().max(active_base(&log));
                let to = from + i64::from(pick) % (m.leo - from + 1);
                log.truncate_to(to).await.unwrap();
                let cut = m
                    .batches
                    .iter()
                    .find(|&&(b, l)| b <= to && to <= l)
                    .map_or(to, |&(b, _)| b)
                    .min(m.leo);
                m.recs.retain(|r| r.rec.offset < cut);
                m.batches.retain(|&(_, l)| l < cut);
                m.leo = cut;
            }
            Op::Reopen { clean } => {
                if clean {
                    log.close().await.unwrap();
                } else {
                    drop(log);
                }
                log = open_with(dir, config.clone(), cache_bytes).await;
            }
        }
        assert_eq!(log.log_end_offset(), m.leo);
        let want: Vec<Rec> = m.recs.iter().map(|r| r.rec.clone()).collect();
        assert_eq!(records(&log).await, want);
    }
    let want: Vec<Rec> = m.recs.iter().map(|r| r.rec.clone()).collect();
    for from in log.log_start_offset()..m.leo {
        let first = first_record_from(&log, from).await;
        assert_eq!(
            first.as_ref(),
            want.iter().find(|x| x.offset >= from),
            "from {from}"
        );
    }
    drop(log);
    let log = open_with(dir, config, 0).await;
    assert_eq!(records(&log).await, want);
}

proptest! {
    // PROPTEST_CASES overrides the default of 24 for longer local runs.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]
    #[test]
    fn compacted_log_matches_model(
        segment_bytes in prop_oneof![Just(512u64), Just(2048), Just(8192)],
        cache_bytes in prop_oneof![Just(0usize), Just(1 << 20)],
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let dir = temp_dir();
        let path = dir.path().to_path_buf();
        let config = LogConfig { segment_bytes, ..compact_config() };
        run(move || async move { exec(&path, config, cache_bytes, ops).await });
    }
}

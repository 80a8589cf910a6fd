//! Tests of log compaction against a model of the records, on a real filesystem inside a
//! glommio executor (see `tests` for the helpers).

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;

use super::tests::{read_all, run, temp_dir};
use super::*;
use crate::batch::{validate_batches_replica, Compression, RecordBatchHeader};
use crate::cleaner::payload;
use crate::config::CleanupPolicy;
use crate::records::{keyed_batch, parse_records};

/// One record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rec {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

pub(crate) fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        retention_ms: -1,
        cleanup_policy: CleanupPolicy::Compact,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    }
}

pub(crate) async fn open_with(dir: &Path, config: LogConfig, cache_bytes: usize) -> PartitionLog {
    PartitionLog::open(dir, config, Rc::new(TailCache::new(cache_bytes)))
        .await
        .unwrap()
}

/// Decodes concatenated batches (checking every CRC and that offsets only grow).
pub(crate) fn decode(bytes: &[u8]) -> Vec<Rec> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let mut headers = Vec::new();
    validate_batches_replica(bytes, |pos, h| {
        headers.push((pos, *h));
        Ok(())
    })
    .unwrap();
    let mut out: Vec<Rec> = Vec::new();
    for (pos, h) in headers {
        let batch = &bytes[pos..pos + h.size_bytes()];
        let p = payload(batch, &h).unwrap();
        for r in parse_records(&p, h.record_count).unwrap() {
            let offset = h.base_offset + i64::from(r.offset_delta);
            assert!(offset <= h.last_offset());
            assert!(out.last().is_none_or(|l| l.offset < offset));
            out.push(Rec {
                offset,
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
            });
        }
    }
    out
}

fn concat(chunks: &[LogChunk]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.to_vec()).collect()
}

/// The first record at or after `from`, reading batch by batch as a consumer does (a cleaned
/// batch keeps its offset range, so the batch holding `from` may hold only records below it).
pub(crate) async fn first_record_from(log: &PartitionLog, from: i64) -> Option<Rec> {
    let mut at = from;
    loop {
        let r = log.read(at, 1, i64::MAX).await.unwrap();
        if r.chunks.is_empty() {
            return None;
        }
        if let Some(x) = decode(&concat(&r.chunks))
            .into_iter()
            .find(|x| x.offset >= from)
        {
            return Some(x);
        }
        at = r.next_offset;
    }
}

pub(crate) async fn records(log: &PartitionLog) -> Vec<Rec> {
    decode(&read_all(log, log.log_start_offset()).await)
}

/// Appends one batch of (key, value) records; returns their records as the log holds them.
pub(crate) async fn append_kv(
    log: &PartitionLog,
    kvs: &[(&[u8], Option<&[u8]>)],
    timestamp: i64,
    compression: Compression,
) -> Vec<Rec> {
    let kv: Vec<_> = kvs.iter().map(|(k, v)| (Some(*k), *v)).collect();
    let b = keyed_batch(0, timestamp, &kv, compression, -1);
    let info = log.append(Bytes::from(b), 0).await.unwrap();
    kvs.iter()
        .enumerate()
        .map(|(i, (k, v))| Rec {
            offset: info.first_offset + i as i64,
            key: Some(k.to_vec()),
            value: v.map(<[u8]>::to_vec),
        })
        .collect()
}

/// What one pass over `[.., clean_end)` leaves of `model`: the latest record of each key below
/// `clean_end` (tombstones too unless `drop_tombstones`), everything from `clean_end` on.
pub(crate) fn compacted(model: &[Rec], clean_end: i64, drop_tombstones: bool) -> Vec<Rec> {
    let mut latest: HashMap<&[u8], i64> = HashMap::new();
    for r in model.iter().filter(|r| r.offset < clean_end) {
        if let Some(k) = &r.key {
            latest.insert(k, r.offset);
        }
    }
    model
        .iter()
        .filter(|r| {
            r.offset >= clean_end
                || match &r.key {
                    None => true,
                    Some(k) => {
                        latest[k.as_slice()] == r.offset && (r.value.is_some() || !drop_tombstones)
                    }
                }
        })
        .cloned()
        .collect()
}

pub(crate) fn active_base(log: &PartitionLog) -> i64 {
    log.inner.state.borrow().active().base_offset
}

/// Rolls the active segment (an empty one stays) through the age-based roll.
async fn roll(log: &PartitionLog, now_ms: i64) {
    let config = log.config();
    log.update_config(LogConfig {
        segment_ms: 1,
        ..config.clone()
    })
    .unwrap();
    let _ = log.enforce_retention(now_ms).await.unwrap();
    log.update_config(config).unwrap();
}

/// 20 keys overwritten 600 times in batches of 1..=5 records, some compressed.
pub(crate) async fn fill(log: &PartitionLog, rounds: usize) -> Vec<Rec> {
    let mut model = Vec::new();
    let codecs = [
        Compression::None,
        Compression::None,
        Compression::Zstd,
        Compression::Lz4,
    ];
    for i in 0..rounds {
        let n = 1 + i % 5;
        let keys: Vec<Vec<u8>> = (0..n)
            .map(|j| format!("key-{}", (i * 7 + j) % 20).into_bytes())
            .collect();
        let values: Vec<Vec<u8>> = (0..n)
            .map(|j| format!("value-{i}-{j}").into_bytes())
            .collect();
        let kvs: Vec<(&[u8], Option<&[u8]>)> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
            .collect();
        model.extend(append_kv(log, &kvs, 1_000 + i as i64, codecs[i % 4]).await);
    }
    model
}

#[test]
fn compaction_keeps_the_latest_value_per_key_at_its_offset() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open_with(&path, compact_config(), 1 << 20).await;
        let model = fill(&log, 600).await;
        assert_eq!(records(&log).await, model);
        log.set_high_watermark(log.log_end_offset());
        let (segments, size) = (log.segment_count(), log.size_bytes());
        let clean_end = active_base(&log);
        let active_before = read_all(&log, clean_end).await;
        let o = log.compact(10_000).await.unwrap();
        assert!(o.cleaned);
        assert_eq!(o.first_dirty_offset, clean_end);
        assert_eq!(o.segments_rewritten, segments - 1);
        assert!(
            o.segments_written < o.segments_rewritten,
            "small segments merge"
        );
        assert!(
            log.size_bytes() < size / 3,
            "{} of {size} bytes",
            log.size_bytes()
        );
        let expected = compacted(&model, clean_end, false);
        assert_eq!(records(&log).await, expected);
        assert_eq!(o.records_removed as usize, model.len() - expected.len());
        assert_eq!(
            read_all(&log, clean_end).await,
            active_before,
            "active segment untouched"
        );
        assert_eq!(log.log_end_offset(), model.last().unwrap().offset + 1);
        // Reads from any offset start with the first record at or after it.
        for from in (0..log.log_end_offset()).step_by(37) {
            let first = first_record_from(&log, from).await;
            assert_eq!(first.as_ref(), expected.iter().find(|x| x.offset >= from));
        }
        // Nothing new: the next pass has nothing to do.
        let again = log.compact(10_000).await.unwrap();
        assert!(!again.cleaned);
        assert_eq!(again.first_dirty_offset, clean_end);
    });
}

#[test]
fn ten_thousand_overwrites_of_ten_keys_shrink_to_ten_records() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            segment_bytes: 64 << 10,
            ..compact_config()
        };
        let log = open_with(&path, config, 0).await;
        let mut model = Vec::new();
        for i in 0..1_000 {
            let values: Vec<Vec<u8>> = (0..10)
                .map(|k| format!("value {i} of key {k}").into_bytes())
                .collect();
            let keys: Vec<Vec<u8>> = (0..10).map(|k| format!("key {k}").into_bytes()).collect();
            let kvs: Vec<(&[u8], Option<&[u8]>)> = keys
                .iter()
                .zip(&values)
                .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
                .collect();
            model.extend(append_kv(&log, &kvs, i, Compression::None).await);
        }
        roll(&log, 2_000).await;
        log.set_high_watermark(log.log_end_offset());
        let before = log.size_bytes();
        let o = log.compact(2_000).await.unwrap();
        let after = log.size_bytes();
        let kept = records(&log).await;
        assert_eq!(kept, compacted(&model, 10_000, false));
        assert_eq!(kept.len(), 10);
        assert_eq!(kept[0].offset, 9_990);
        assert_eq!(o.records_removed, 9_990);
        assert_eq!((o.bytes_before, o.bytes_after), (before, after));
        assert_eq!(
            log.segment_count(),
            2,
            "one cleaned segment and the empty active one"
        );
        assert!(after < before / 500, "{before} bytes shrink to {after}");
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 10_000));
    });
}

#[test]
fn tombstones_go_only_after_delete_retention() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open_with(&path, compact_config(), 1 << 20).await;
        let mut model = fill(&log, 100).await;
        let deleted: Vec<Vec<u8>> = (0..5).map(|k| format!("key-{k}").into_bytes()).collect();
        let kvs: Vec<(&[u8], Option<&[u8]>)> =
            deleted.iter().map(|k| (k.as_slice(), None)).collect();
        model.extend(append_kv(&log, &kvs, 5_000, Compression::Snappy).await);
        roll(&log, 6_000).await;
        log.set_high_watermark(log.log_end_offset());
        let end = log.log_end_offset();
        let o = log.compact(10_000).await.unwrap();
        assert_eq!(o.tombstones_removed, 0);
        let first = records(&log).await;
        assert_eq!(first, compacted(&model, end, false));
        assert_eq!(first.iter().filter(|r| r.value.is_none()).count(), 5);
        // The horizon is 10_000 + delete.retention.ms: not due before.
        assert!(!log.compact(10_999).await.unwrap().cleaned);
        drop(log);
        let log = open_with(&path, compact_config(), 1 << 20).await;
        log.set_high_watermark(log.log_end_offset());
        assert!(
            !log.compact(10_999).await.unwrap().cleaned,
            "the horizon survives a restart"
        );
        let o = log.compact(11_000).await.unwrap();
        assert!(o.cleaned);
        assert_eq!(o.tombstones_removed, 5);
        let second = records(&log).await;
        assert_eq!(second, compacted(&model, end, true));
        assert!(second
            .iter()
            .all(|r| !deleted.contains(r.key.as_ref().unwrap())));
        assert!(
            !log.compact(100_000).await.unwrap().cleaned,
            "nothing left to drop"
        );
    });
}

#[test]
fn the_active_segment_and_everything_above_the_high_watermark_stay() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open_with(&path, compact_config(), 0).await;
        let model = fill(&log, 300).await;
        assert!(
            !log.compact(10_000).await.unwrap().cleaned,
            "the high watermark is 0"
        );
        let bases: Vec<i64> = log
            .inner
            .state
            .borrow()
            .segments
            .iter()
            .map(|s| s.base_offset)
            .collect();
        assert!(bases.len() > 6);
        // The high watermark inside the fourth segment: only the first three are cleanable.
        log.set_high_watermark(bases[3] + 1);
        let o = log.compact(10_000).await.unwrap();
        assert_eq!((o.segments_rewritten, o.first_dirty_offset), (3, bases[3]));
        let expected = compacted(&model, bases[3], false);
        assert_eq!(records(&log).await, expected);
        assert!(expected
            .iter()
            .filter(|r| r.offset >= bases[3])
            .eq(model.iter().filter(|r| r.offset >= bases[3])));
        // Later passes continue from the checkpoint: the clean part is not mapped again, yet a
        // key rewritten above it still removes its older record there.
        log.set_high_watermark(log.log_end_offset());
        let o = log.compact(10_000).await.unwrap();
        assert_eq!(o.first_dirty_offset, active_base(&log));
        assert_eq!(
            records(&log).await,
            compacted(&model, active_base(&log), false)
        );
    });
}

#[test]
fn a_compacted_log_reopens_identically() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open_with(&path, compact_config(), 1 << 20).await;
        let mut model = fill(&log, 400).await;
        log.set_high_watermark(log.log_end_offset());
        let _ = log.compact(10_000).await.unwrap();
        let bytes = read_all(&log, 0).await;
        log.close().await.unwrap();
        let log = open_with(&path, compact_config(), 0).await;
        assert_eq!(read_all(&log, 0).await, bytes, "clean reopen");
        drop(log);
        let log = open_with(&path, compact_config(), 0).await;
        assert_eq!(read_all(&log, 0).await, bytes, "unclean reopen");
        // Appends and later passes go on from there.
        model = compacted(&model, active_base(&log), false);
        model.extend(fill(&log, 50).await);
        log.set_high_watermark(log.log_end_offset());
        let _ = log.compact(10_000).await.unwrap();
        assert_eq!(
            records(&log).await,
            compacted(&model, active_base(&log), false)
        );
    });
}

#[test]
fn a_small_offset_map_splits_the_work_over_passes() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open_with(&path, compact_config(), 1 << 20).await;
        let model = fill(&log, 500).await;
        log.set_high_watermark(log.log_end_offset());
        let clean_end = active_base(&log);
        let budget = 5 * (6 + crate::limits::CLEANER_MAP_ENTRY_OVERHEAD_BYTES);
        let mut dirty = Vec::new();
        loop {
            let o = log.compact_with_budget(10_000, budget).await.unwrap();
            if !o.cleaned {
                break;
            }
            dirty.push(o.first_dirty_offset);
        }
        assert!(dirty.len() > 3, "{dirty:?}");
        assert!(dirty.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(dirty.last(), Some(&clean_end));
        assert_eq!(records(&log).await, compacted(&model, clean_end, false));
    });
}

#[test]
fn the_policy_decides_between_compaction_and_retention() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let delete = LogConfig {
            cleanup_policy: CleanupPolicy::Delete,
            ..compact_config()
        };
        let log = open_with(&path, delete, 0).await;
        let model = fill(&log, 300).await;
        log.set_high_watermark(log.log_end_offset());
        assert!(
            !log.compact(10_000).await.unwrap().cleaned,
            "delete never compacts"
        );
        // compact,delete: both apply.
        log.update_config(LogConfig {
            cleanup_policy: CleanupPolicy::CompactDelete,
            retention_bytes: 1,
            ..compact_config()
        })
        .unwrap();
        let clean_end = active_base(&log);
        assert!(log.compact(10_000).await.unwrap().cleaned);
        let r = log.enforce_retention(10_000).await.unwrap();
        assert!(r.deleted_segments > 0);
        let start = log.log_start_offset();
        let expected: Vec<Rec> = compacted(&model, clean_end, false)
            .into_iter()
            .filter(|x| x.offset >= start)
            .collect();
        assert_eq!(records(&log).await, expected);
    });
}

/// Appends `n` batches of one record each, every key new.
async fn distinct(log: &PartitionLog, from: usize, n: usize, timestamp: i64) {
    for i in from..from + n {
        let key = format!("unique-{i}").into_bytes();
        let _ = append_kv(log, &[(&key, Some(b"v"))], timestamp, Compression::None).await;
    }
}

#[test]
fn dirty_ratio_and_compaction_lag_defer_a_pass() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            min_cleanable_dirty_ratio: 0.5,
            ..compact_config()
        };
        let log = open_with(&path, config.clone(), 0).await;
        distinct(&log, 0, 300, 1_000).await;
        log.set_high_watermark(log.log_end_offset());
        log.update_config(LogConfig {
            min_compaction_lag_ms: 1_000,
            ..config.clone()
        })
        .unwrap();
        assert!(
            !log.compact(1_500).await.unwrap().cleaned,
            "younger than the lag"
        );
        assert!(log.compact(2_000).await.unwrap().cleaned);
        log.update_config(config).unwrap();
        // Distinct keys: the clean part keeps every record, so a little new data stays below
        // the ratio, and more goes above it.
        distinct(&log, 300, 30, 3_000).await;
        roll(&log, 3_000).await;
        log.set_high_watermark(log.log_end_offset());
        assert!(!log.compact(3_000).await.unwrap().cleaned);
        distinct(&log, 330, 400, 3_000).await;
        log.set_high_watermark(log.log_end_offset());
        assert!(log.compact(3_000).await.unwrap().cleaned);
        assert_eq!(records(&log).await.len(), 730);
    });
}

#[test]
fn truncation_lowers_the_checkpoint_and_ends_the_log_inside_a_gap() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open_with(&path, compact_config(), 0).await;
        let model = fill(&log, 300).await;
        log.set_high_watermark(log.log_end_offset());
        let clean_end = active_base(&log);
        let o = log.compact(10_000).await.unwrap();
        assert_eq!(o.first_dirty_offset, clean_end);
        let kept = compacted(&model, clean_end, false);
        // An offset inside the cleaned part that no record holds any more.
        let gap = (1..clean_end)
            .find(|o| {
                !kept.iter().any(|r| r.offset == *o)
                    && kept.iter().any(|r| r.offset > *o && r.offset < clean_end)
            })
            .unwrap();
        log.truncate_to(gap).await.unwrap();
        assert_eq!(
            log.log_end_offset(),
            gap,
            "the log ends at the offset itself"
        );
        assert_eq!(log.inner.cleaner.borrow().first_dirty_offset, Some(gap));
        let mut model: Vec<Rec> = kept.iter().filter(|r| r.offset < gap).cloned().collect();
        assert_eq!(records(&log).await, model);
        model.extend(append_kv(&log, &[(b"key-1", Some(b"new"))], 20_000, Compression::None).await);
        drop(log);
        let log = open_with(&path, compact_config(), 0).await;
        assert_eq!(log.inner.cleaner.borrow().first_dirty_offset, Some(gap));
        assert_eq!(records(&log).await, model);
        assert_eq!(
            model.last().unwrap().offset,
            gap,
            "appends go on from the truncation point"
        );
        roll(&log, 20_000).await;
        log.set_high_watermark(log.log_end_offset());
        let _ = log.compact(20_000).await.unwrap();
        assert_eq!(records(&log).await, compacted(&model, gap + 1, false));
    });
}

#[test]
fn reads_in_flight_during_compaction_stay_consistent() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = Rc::new(open_with(&path, compact_config(), 0).await);
        let model = fill(&log, 400).await;
        log.set_high_watermark(log.log_end_offset());
        // An old segment held across the swap reads on from its unlinked file.
        let old_first = Rc::clone(&log.inner.state.borrow().segments[0]);
        let reader = {
            let log = Rc::clone(&log);
            let model = model.clone();
            glommio::spawn_local(async move {
                let mut reads = 0;
                for round in 0..30 {
                    let mut at = round % 5;
                    while at < log.log_end_offset() {
                        let r = log.read(at, 700, i64::MAX).await.unwrap();
                        let got = decode(&concat(&r.chunks));
                        assert!(got.iter().all(|g| model.contains(g)));
                        at = r.next_offset.max(at + 1);
                        reads += 1;
                    }
                    glommio::yield_if_needed().await;
                }
                reads
            })
        };
        let o = log.compact(10_000).await.unwrap();
        assert!(o.cleaned);
        assert!(reader.await > 0);
        let file = old_first.file().unwrap();
        let size = old_first.st.borrow().size;
        let old_bytes = crate::dma::read(&file, &old_first.log_path, 0, size as usize)
            .await
            .unwrap();
        let first_end = old_first.st.borrow().next_offset;
        let old_records: Vec<Rec> = model
            .iter()
            .filter(|r| r.offset < first_end)
            .cloned()
            .collect();
        assert_eq!(decode(&old_bytes), old_records);
        let _ = RecordBatchHeader::parse(&old_bytes).unwrap();
    });
}

#[test]
fn a_producers_last_batch_survives_empty_and_keeps_its_sequence() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open_with(&path, compact_config(), 0).await;
        let kv: [crate::records::KeyValue; 2] =
            [(Some(b"a"), Some(b"1")), (Some(b"b"), Some(b"1"))];
        let b = keyed_batch(0, 5_000, &kv, Compression::Gzip, 7);
        let _ = log.append(Bytes::from(b), 0).await.unwrap();
        let mut model = Vec::new();
        for _ in 0..2 {
            model.extend(
                append_kv(
                    &log,
                    &[(b"a", Some(b"2")), (b"b", Some(b"2"))],
                    5_000,
                    Compression::None,
                )
                .await,
            );
        }
        roll(&log, 6_000).await;
        log.set_high_watermark(log.log_end_offset());
        let o = log.compact(6_000).await.unwrap();
        assert_eq!(o.records_removed, 4);
        assert_eq!(records(&log).await, model[2..].to_vec());
        let bytes = read_all(&log, 0).await;
        let first = RecordBatchHeader::parse(&bytes).unwrap();
        assert_eq!((first.base_offset, first.last_offset_delta), (0, 1));
        assert_eq!(
            (first.producer_id, first.base_sequence, first.record_count),
            (7, 0, 0)
        );
        assert_eq!(first.compression(), Compression::None);
        // Once the producer has expired, its empty batch goes too.
        log.set_high_watermark(log.log_end_offset());
        let later = 5_001 + crate::cleaner::PRODUCER_ID_EXPIRATION_MS;
        let _ = append_kv(&log, &[(b"c", Some(b"1"))], later, Compression::None).await;
        roll(&log, later + 1).await;
        log.set_high_watermark(log.log_end_offset());
        assert!(log.compact(later).await.unwrap().cleaned);
        let bytes = read_all(&log, 0).await;
        let first = RecordBatchHeader::parse(&bytes).unwrap();
        assert_eq!(first.base_offset, model[2].offset);
    });
}

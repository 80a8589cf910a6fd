//! Tests of truncation, retention, age-based roll and timestamp lookup (see `tests` for the
//! helpers; everything runs on a real filesystem inside a glommio executor).

use std::rc::Rc;

use bytes::Bytes;

use super::tests::{open, read_all, run, small_config, stamped, temp_dir};
use super::*;
use crate::batch::build_batch;

#[test]
fn truncate_to_removes_whole_batches_and_later_segments() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open(&path, small_config()).await;
        let mut batches = Vec::new();
        for i in 0..30 {
            let b = build_batch(0, 3, i, &[i as u8; 300]);
            let _ = log
                .append(Bytes::from(b.clone()), (i / 10) as i32)
                .await
                .unwrap();
            batches.push(stamped(b, 3 * i, (i / 10) as i32));
        }
        log.set_high_watermark(90);
        let segments = log.segment_count();
        log.truncate_to(40).await.unwrap(); // mid-batch: 39..=41 goes
        assert_eq!(log.log_end_offset(), 39);
        assert_eq!(log.high_watermark(), 39);
        assert!(log.segment_count() < segments);
        assert_eq!(read_all(&log, 0).await, batches[..13].concat());
        assert_eq!(log.latest_leader_epoch(), Some(LeaderEpoch(1)));
        let b = build_batch(0, 1, 99, b"new");
        assert_eq!(
            log.append(Bytes::from(b.clone()), 5)
                .await
                .unwrap()
                .first_offset,
            39
        );
        let mut expected = batches[..13].concat();
        expected.extend(stamped(b, 39, 5));
        drop(log);
        let log = open(&path, small_config()).await;
        assert_eq!(read_all(&log, 0).await, expected);
        log.truncate_fully_and_start_at(1000).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (1000, 1000));
        log.close().await.unwrap();
        let log = open(&path, small_config()).await;
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (1000, 1000));
        log.truncate_to(10).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (10, 10));
    });
}

#[test]
fn retention_deletes_whole_segments_below_the_high_watermark() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            retention_bytes: 8192,
            ..small_config()
        };
        let log = open(&path, config).await;
        for i in 0..60 {
            let _ = log
                .append(Bytes::from(build_batch(0, 1, 1_000 + i, &[0; 500])), 0)
                .await
                .unwrap();
        }
        let now = 1_000 + 60;
        let r = log.enforce_retention(now).await.unwrap();
        assert_eq!(
            r.deleted_segments, 0,
            "nothing below the high watermark yet"
        );
        log.set_high_watermark(60);
        let r = log.enforce_retention(now).await.unwrap();
        assert!(r.deleted_segments > 0);
        assert!(log.size_bytes() >= 8192 && log.size_bytes() < 8192 + 4096);
        let start = log.log_start_offset();
        assert_eq!(r.log_start_offset, start);
        assert!(matches!(
            log.read(start - 1, 10, i64::MAX).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert_eq!(log.read(start, 10, i64::MAX).await.unwrap().chunks.len(), 1);
        // Time retention: everything is older than 10 ms at now + 100; the active segment is
        // rolled, then all sealed segments go.
        log.update_config(LogConfig {
            retention_ms: 10,
            ..small_config()
        })
        .unwrap();
        let r = log.enforce_retention(now + 100).await.unwrap();
        assert!(r.rolled);
        assert_eq!(log.log_start_offset(), 60);
        assert_eq!(log.size_bytes(), 0);
        drop(log);
        let log = open(&path, small_config()).await;
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (60, 60));
    });
}

#[test]
fn age_based_roll_happens_in_enforce_retention() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = LogConfig {
            segment_ms: 1000,
            retention_ms: -1,
            ..LogConfig::default()
        };
        let log = open(&path, config).await;
        let _ = log
            .append(Bytes::from(build_batch(0, 1, 5_000, b"x")), 0)
            .await
            .unwrap();
        assert!(!log.enforce_retention(5_500).await.unwrap().rolled);
        assert!(log.enforce_retention(6_000).await.unwrap().rolled);
        assert_eq!(log.segment_count(), 2);
        assert!(
            !log.enforce_retention(100_000).await.unwrap().rolled,
            "empty segments never roll"
        );
    });
}

#[test]
fn timestamp_lookup_uses_batch_max_timestamps() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open(&path, small_config()).await;
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), None);
        for i in 0..50 {
            let _ = log
                .append(Bytes::from(build_batch(0, 2, 10 * i, &[0; 150])), 0)
                .await
                .unwrap();
        }
        log.close().await.unwrap();
        let log = PartitionLog::open(&path, small_config(), Rc::new(TailCache::new(0)))
            .await
            .unwrap();
        assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some((0, 0)));
        assert_eq!(log.offset_for_timestamp(1).await.unwrap(), Some((2, 10)));
        assert_eq!(
            log.offset_for_timestamp(255).await.unwrap(),
            Some((52, 260))
        );
        assert_eq!(
            log.offset_for_timestamp(490).await.unwrap(),
            Some((98, 490))
        );
        assert_eq!(log.offset_for_timestamp(491).await.unwrap(), None);
    });
}

//! Idempotent producers on a real log: duplicates answered with the original offsets while the
//! original is in flight and after clean and unclean reopens, snapshots at roll and close,
//! damaged snapshots, truncation, retention and expiry.

use std::path::Path;

use bytes::Bytes;

use super::tests::{join_all, open, read_all, run, small_config, temp_dir};
use super::*;
use crate::batch::{build_batch, build_producer_batch};
use crate::producer_state::ProducerEpoch;

fn pbatch(pid: i64, epoch: i16, seq: i32, records: i32) -> Bytes {
    Bytes::from(build_producer_batch(
        0,
        records,
        1_000 + i64::from(seq),
        &[seq as u8; 200],
        pid,
        epoch,
        seq,
    ))
}

/// Appends `count` batches of 2 records for each of `producers` (interleaved), starting at
/// sequence `first_seq`; returns each batch's first offset per producer.
async fn produce(
    log: &PartitionLog,
    producers: &[i64],
    first_seq: i32,
    count: i32,
) -> Vec<Vec<i64>> {
    let mut offsets = vec![Vec::new(); producers.len()];
    for k in 0..count {
        for (i, &pid) in producers.iter().enumerate() {
            let info = log
                .append(pbatch(pid, 0, first_seq + 2 * k, 2), 1)
                .await
                .unwrap();
            assert!(!info.duplicate);
            offsets[i].push(info.first_offset);
        }
    }
    offsets
}

/// Retries the last five batches of each producer (sent at `first_seq..` by `produce`) and
/// checks they are duplicates with their original offsets.
async fn assert_retries_are_duplicates(
    log: &PartitionLog,
    producers: &[i64],
    first_seq: i32,
    offsets: &[Vec<i64>],
) {
    let leo = log.log_end_offset();
    for (i, &pid) in producers.iter().enumerate() {
        let skip = offsets[i].len().saturating_sub(5);
        for (k, &offset) in offsets[i].iter().enumerate().skip(skip) {
            let seq = first_seq + 2 * k as i32;
            let info = log.append(pbatch(pid, 0, seq, 2), 1).await.unwrap();
            assert!(info.duplicate, "producer {pid} seq {seq}");
            assert_eq!(info.first_offset, offset);
            assert_eq!(info.last_offset, offset + 1);
        }
    }
    assert_eq!(log.log_end_offset(), leo, "a duplicate appends nothing");
}

fn snapshot_files(dir: &Path) -> Vec<i64> {
    let mut v: Vec<i64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            crate::segment::parse_file_name(&name, "snapshot")
        })
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn retries_of_batches_in_flight_wait_for_them_and_get_their_offsets() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open(&path, small_config()).await;
        // Five appends in flight, then their five retries, all issued before any completes.
        let mut futs = Vec::new();
        for k in 0..5 {
            futs.push(log.append(pbatch(7, 0, 2 * k, 2), 1));
        }
        for k in 0..5 {
            futs.push(log.append(pbatch(7, 0, 2 * k, 2), 1));
        }
        let infos: Vec<AppendInfo> = join_all(futs)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        for k in 0..5 {
            assert!(!infos[k].duplicate);
            assert!(infos[k + 5].duplicate);
            assert_eq!(infos[k + 5].first_offset, infos[k].first_offset);
            assert_eq!(infos[k].first_offset, 2 * k as i64);
        }
        assert_eq!(log.log_end_offset(), 10);
        let mut expected = Vec::new();
        for k in 0..5 {
            let mut b = pbatch(7, 0, 2 * k, 2).to_vec();
            crate::batch::stamp(&mut b, 2 * i64::from(k), 1);
            expected.extend_from_slice(&b);
        }
        assert_eq!(read_all(&log, 0).await, expected, "each batch once");
        // A gap, an older epoch, a new epoch not at 0: refused; a new epoch at 0: appended.
        assert!(matches!(
            log.append(pbatch(7, 0, 11, 1), 1).await,
            Err(StorageError::OutOfOrderSequence {
                expected_sequence: 10,
                ..
            })
        ));
        assert!(matches!(
            log.append(pbatch(7, 1, 3, 1), 1).await,
            Err(StorageError::OutOfOrderSequence {
                expected_sequence: 0,
                ..
            })
        ));
        let info = log.append(pbatch(7, 1, 0, 1), 1).await.unwrap();
        assert_eq!(info.first_offset, 10);
        assert!(matches!(
            log.append(pbatch(7, 0, 10, 1), 1).await,
            Err(StorageError::InvalidProducerEpoch {
                producer_epoch: 0,
                current_epoch: 1,
                ..
            })
        ));
        assert_eq!(
            log.producer(ProducerId(7)).map(|e| e.producer_epoch),
            Some(ProducerEpoch(1))
        );
        log.close().await.unwrap();
    });
}

#[test]
fn an_idempotent_append_must_be_one_batch() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open(&path, small_config()).await;
        let mut two = pbatch(3, 0, 0, 1).to_vec();
        two.extend_from_slice(&pbatch(3, 0, 1, 1));
        assert!(matches!(
            log.append(Bytes::from(two), 1).await,
            Err(StorageError::InvalidProducerBatch { .. })
        ));
        let mut mixed = build_batch(0, 1, 5, b"x");
        mixed.extend_from_slice(&pbatch(3, 0, 0, 1));
        assert!(matches!(
            log.append(Bytes::from(mixed), 1).await,
            Err(StorageError::InvalidProducerBatch { .. })
        ));
        // Batches without a producer id may still come several at a time.
        let mut plain = build_batch(0, 1, 5, b"x");
        plain.extend_from_slice(&build_batch(0, 2, 5, b"y"));
        let info = log.append(Bytes::from(plain), 1).await.unwrap();
        assert_eq!((info.first_offset, info.last_offset), (0, 2));
        assert_eq!(log.producer_count(), 0);
    });
}

#[test]
fn duplicates_are_detected_after_a_clean_close_and_after_a_crash() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let pids = [11, 12, 13];
        let log = open(&path, small_config()).await;
        let offsets = produce(&log, &pids, 0, 8).await;
        assert!(log.segment_count() > 2, "4 KiB segments roll");
        let rolled = log.producer_snapshot_offsets();
        assert!(!rolled.is_empty(), "every finished roll leaves a snapshot");
        let before: Vec<_> = pids.iter().map(|&p| log.producer(ProducerId(p))).collect();
        log.close().await.unwrap();
        let leo = {
            let log = open(&path, small_config()).await;
            let leo = log.log_end_offset();
            assert!(
                snapshot_files(&path).contains(&leo),
                "clean close snapshots at the log end"
            );
            let after: Vec<_> = pids.iter().map(|&p| log.producer(ProducerId(p))).collect();
            assert_eq!(after, before);
            assert_retries_are_duplicates(&log, &pids, 0, &offsets).await;
            // More data, then a crash: no close, no snapshot at the end.
            let more = produce(&log, &pids, 16, 6).await;
            let before: Vec<_> = pids.iter().map(|&p| log.producer(ProducerId(p))).collect();
            let leo = log.log_end_offset();
            drop(log);
            let log = open(&path, small_config()).await;
            assert_eq!(log.log_end_offset(), leo);
            let after: Vec<_> = pids.iter().map(|&p| log.producer(ProducerId(p))).collect();
            assert_eq!(after, before, "replayed from the last roll snapshot");
            assert_retries_are_duplicates(&log, &pids, 16, &more).await;
            let next = log.append(pbatch(11, 0, 28, 1), 1).await.unwrap();
            assert!(!next.duplicate && next.first_offset == leo);
            log.close().await.unwrap();
            leo + 1
        };
        // Without any snapshot the whole log is replayed, with the same result.
        let log = open(&path, small_config()).await;
        let before: Vec<_> = pids.iter().map(|&p| log.producer(ProducerId(p))).collect();
        drop(log);
        for offset in snapshot_files(&path) {
            std::fs::remove_file(path.join(crate::segment::file_name(offset, "snapshot"))).unwrap();
        }
        let log = open(&path, small_config()).await;
        assert_eq!(log.log_end_offset(), leo);
        let after: Vec<_> = pids.iter().map(|&p| log.producer(ProducerId(p))).collect();
        assert_eq!(after, before);
    });
}

#[test]
fn a_damaged_snapshot_gives_way_to_an_older_one() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let pids = [1, 2];
        let log = open(&path, small_config()).await;
        let offsets = produce(&log, &pids, 0, 10).await;
        let before: Vec<_> = pids.iter().map(|&p| log.producer(ProducerId(p))).collect();
        log.close().await.unwrap();
        let files = snapshot_files(&path);
        assert!(files.len() >= 2);
        let newest = path.join(crate::segment::file_name(
            *files.last().unwrap(),
            "snapshot",
        ));
        // Torn: a prefix of the file. Then damaged: one flipped bit.
        let bytes = std::fs::read(&newest).unwrap();
        std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
        let log = open(&path, small_config()).await;
        assert!(!newest.exists(), "a damaged snapshot is deleted");
        let after: Vec<_> = pids.iter().map(|&p| log.producer(ProducerId(p))).collect();
        assert_eq!(after, before);
        assert_retries_are_duplicates(&log, &pids, 0, &offsets).await;
        log.close().await.unwrap();
        let mut bytes = std::fs::read(&newest).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        std::fs::write(&newest, &bytes).unwrap();
        let log = open(&path, small_config()).await;
        let after: Vec<_> = pids.iter().map(|&p| log.producer(ProducerId(p))).collect();
        assert_eq!(after, before);
    });
}

#[test]
fn truncation_rebuilds_the_producer_state() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open(&path, small_config()).await;
        let offsets = produce(&log, &[5], 0, 20).await;
        let snapshots_before = log.producer_snapshot_offsets();
        // Cut at the 12th batch: sequences 22.. are gone.
        let cut = offsets[0][11];
        log.truncate_to(cut).await.unwrap();
        assert_eq!(log.log_end_offset(), cut);
        assert!(log.producer_snapshot_offsets().iter().all(|&o| o <= cut));
        assert!(snapshot_files(&path).iter().all(|&o| o <= cut));
        assert!(
            snapshots_before.iter().any(|&o| o > cut),
            "some were deleted"
        );
        let e = log.producer(ProducerId(5)).unwrap();
        assert_eq!(e.batches().len(), 5);
        assert_eq!(e.last_batch().map(|b| b.last_sequence), Some(21));
        assert_eq!(e.batches()[0].first_offset, offsets[0][6]);
        // A retry of a batch still there is a duplicate; of one cut away, a new append.
        let dup = log.append(pbatch(5, 0, 20, 2), 1).await.unwrap();
        assert!(dup.duplicate && dup.first_offset == offsets[0][10]);
        let again = log.append(pbatch(5, 0, 22, 2), 1).await.unwrap();
        assert!(!again.duplicate && again.first_offset == cut);
        // The same after a reopen (the rebuilt state is what the log says).
        drop(log);
        let log = open(&path, small_config()).await;
        let dup = log.append(pbatch(5, 0, 22, 2), 1).await.unwrap();
        assert!(dup.duplicate && dup.first_offset == cut);
        // Fully truncated: the producer is unknown and may start anywhere.
        log.truncate_fully_and_start_at(1_000).await.unwrap();
        assert_eq!(log.producer_count(), 0);
        assert!(snapshot_files(&path).is_empty());
        let info = log.append(pbatch(5, 0, 500, 1), 1).await.unwrap();
        assert_eq!(info.first_offset, 1_000);
    });
}

#[test]
fn retention_deletes_snapshots_below_the_log_start_and_expires_producers() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open(&path, small_config()).await;
        let _ = produce(&log, &[8, 9], 0, 20).await;
        log.flush().await.unwrap();
        log.set_high_watermark(log.log_end_offset());
        let many = snapshot_files(&path).len();
        assert!(many > 3);
        log.update_config(LogConfig {
            retention_bytes: 4096,
            ..small_config()
        })
        .unwrap();
        let r = log.enforce_retention(0).await.unwrap();
        assert!(r.deleted_segments > 0);
        let start = log.log_start_offset();
        let files = snapshot_files(&path);
        assert!(files.len() < many);
        assert!(files.iter().all(|&o| o >= start), "{files:?} vs {start}");
        assert_eq!(files, log.producer_snapshot_offsets());
        // The producers' batches were deleted but they are still known (as in Kafka).
        assert_eq!(log.producer_count(), 2);
        // Expiry: their last batches are stamped 1_000 + seq ms.
        log.update_config(LogConfig {
            producer_id_expiration_ms: 1_000,
            ..small_config()
        })
        .unwrap();
        let _ = log.enforce_retention(2_000).await.unwrap();
        assert_eq!(log.producer_count(), 2, "not yet expired");
        let _ = log.enforce_retention(10_000).await.unwrap();
        assert_eq!(log.producer_count(), 0);
        let info = log.append(pbatch(8, 0, 77, 1), 1).await.unwrap();
        assert!(!info.duplicate);
    });
}

#[test]
fn follower_appends_follow_the_leaders_producer_state_unchecked() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    run(move || async move {
        let log = open(&path, small_config()).await;
        // As a leader would have stamped them: offsets 0 and 1, with a sequence gap between.
        let mut a = pbatch(4, 2, 0, 1).to_vec();
        crate::batch::stamp(&mut a, 0, 3);
        let mut b = pbatch(4, 2, 9, 1).to_vec();
        crate::batch::stamp(&mut b, 1, 3);
        a.extend_from_slice(&b);
        let info = log.append_replica(Bytes::from(a)).await.unwrap();
        assert_eq!(info.last_offset, 1);
        let e = log.producer(ProducerId(4)).unwrap();
        assert_eq!(e.batches().len(), 2);
        assert_eq!(e.last_batch().map(|b| b.last_sequence), Some(9));
        // As leader now: the state is there.
        let dup = log.append(pbatch(4, 2, 9, 1), 3).await.unwrap();
        assert!(dup.duplicate && dup.first_offset == 1);
        assert!(matches!(
            log.append(pbatch(4, 2, 11, 1), 3).await,
            Err(StorageError::OutOfOrderSequence { .. })
        ));
    });
}

//! Unit tests of the cleaner's decisions, on batches in memory.

use super::*;
use crate::batch::{validate_batches_replica, Compression};
use crate::records::{keyed_batch, KeyValue as Kv};

fn header(b: &[u8]) -> RecordBatchHeader {
    let s = validate_batches_replica(b, |_, _| Ok(())).unwrap();
    assert_eq!(s.batch_count, 1);
    RecordBatchHeader::parse(b).unwrap()
}

/// (offset, key, value, timestamp) of every record of a batch.
fn contents(b: &[u8]) -> Vec<(i64, Option<Vec<u8>>, bool, i64)> {
    let h = header(b);
    let p = payload(b, &h).unwrap();
    parse_records(&p, h.record_count)
        .unwrap()
        .iter()
        .map(|r| {
            (
                h.base_offset + i64::from(r.offset_delta),
                r.key.map(<[u8]>::to_vec),
                r.has_value(),
                h.base_timestamp + r.timestamp_delta,
            )
        })
        .collect()
}

fn map_of(batches: &[&[u8]], start: i64) -> OffsetMap {
    let mut m = OffsetMap::new(start, usize::MAX);
    for b in batches {
        assert!(m.add_batch(b, &header(b)));
    }
    m
}

fn rewritten(o: &BatchOutcome) -> &[u8] {
    match &o.action {
        BatchAction::Rewrite(b) => b,
        other => panic!("expected a rewrite, got {other:?}"),
    }
}

#[test]
fn only_the_latest_record_of_each_key_survives_with_its_offsets() {
    let kv: [Kv; 4] = [
        (Some(b"a"), Some(b"1")),
        (Some(b"b"), Some(b"1")),
        (Some(b"a"), Some(b"2")),
        (None, Some(b"keyless")),
    ];
    let b0 = keyed_batch(100, 1_000, &kv, Compression::None, -1);
    let b1 = keyed_batch(
        104,
        2_000,
        &[(Some(b"b"), Some(b"2"))],
        Compression::None,
        -1,
    );
    let map = map_of(&[&b0, &b1], 100);
    assert_eq!((map.end_offset(), map.key_count()), (105, 2));
    let producers = ProducerLastOffsets::default();
    let mut c = BatchCleaner::new(&map, &producers, 10_000, 1_000);
    let o = c.clean(&b0, &header(&b0));
    // a@100 and b@101 are overwritten; the keyless record goes, as in Kafka.
    assert_eq!((o.records_removed, o.tombstones_removed), (3, 0));
    let out = rewritten(&o);
    let h = header(out);
    assert_eq!(
        (h.base_offset, h.last_offset_delta, h.record_count),
        (100, 3, 1)
    );
    assert_eq!(h.max_timestamp, 1_002, "recomputed over the records kept");
    assert_eq!(contents(out), vec![(102, Some(b"a".to_vec()), true, 1_002)]);
    assert_eq!(c.clean(&b1, &header(&b1)).action, BatchAction::Keep);
}

#[test]
fn tombstones_get_a_delete_horizon_then_go_after_it() {
    let b0 = keyed_batch(0, 500, &[(Some(b"k"), Some(b"v"))], Compression::None, -1);
    let b1 = keyed_batch(
        1,
        700,
        &[(Some(b"k"), None), (Some(b"x"), Some(b"1"))],
        Compression::None,
        -1,
    );
    let map = map_of(&[&b0, &b1], 0);
    let producers = ProducerLastOffsets::default();
    let mut first = BatchCleaner::new(&map, &producers, 10_000, 1_000);
    assert_eq!(first.clean(&b0, &header(&b0)).action, BatchAction::Drop);
    let o = first.clean(&b1, &header(&b1));
    assert_eq!(o.tombstone_horizon_ms, Some(11_000));
    let marked = rewritten(&o).to_vec();
    let h = header(&marked);
    assert_eq!(h.delete_horizon_ms(), Some(11_000));
    assert_eq!(h.max_timestamp, 701);
    // Record timestamps survive the move of the base timestamp.
    assert_eq!(
        contents(&marked),
        vec![
            (1, Some(b"k".to_vec()), false, 700),
            (2, Some(b"x".to_vec()), true, 701)
        ]
    );
    // Later passes: the map of a pass covers only its dirty part, here nothing.
    let empty = OffsetMap::new(3, usize::MAX);
    let mut before = BatchCleaner::new(&empty, &producers, 10_999, 1_000);
    let mut c = BatchCleaner::new(&map, &producers, 10_999, 1_000);
    assert_eq!(c.clean(&marked, &header(&marked)).action, BatchAction::Keep);
    let o = before.clean(&marked, &header(&marked));
    assert_eq!(
        (o.action, o.tombstone_horizon_ms),
        (BatchAction::Keep, Some(11_000))
    );
    let mut after = BatchCleaner::new(&empty, &producers, 11_000, 1_000);
    let o = after.clean(&marked, &header(&marked));
    assert_eq!((o.records_removed, o.tombstones_removed), (1, 1));
    assert_eq!(o.tombstone_horizon_ms, None);
    assert_eq!(
        contents(rewritten(&o)),
        vec![(2, Some(b"x".to_vec()), true, 701)]
    );
}

#[test]
fn an_emptied_batch_stays_only_as_the_last_of_a_live_producer() {
    let b0 = keyed_batch(0, 1_000, &[(Some(b"k"), Some(b"1"))], Compression::Zstd, 7);
    let b1 = keyed_batch(1, 1_000, &[(Some(b"k"), Some(b"2"))], Compression::None, 8);
    let b2 = keyed_batch(2, 1_000, &[(Some(b"j"), Some(b"1"))], Compression::None, 7);
    let b3 = keyed_batch(3, 1_000, &[(Some(b"j"), Some(b"2"))], Compression::None, -1);
    let map = map_of(&[&b0, &b1, &b2, &b3], 0);
    let mut producers = ProducerLastOffsets::default();
    for b in [&b0, &b1, &b2, &b3] {
        producers.observe(&header(b));
    }
    let mut c = BatchCleaner::new(&map, &producers, 2_000, 0);
    assert_eq!(
        c.clean(&b0, &header(&b0)).action,
        BatchAction::Drop,
        "not 7's last"
    );
    let o = c.clean(&b2, &header(&b2));
    let empty = rewritten(&o);
    let h = header(empty);
    assert_eq!(
        (h.record_count, h.last_offset_delta, h.producer_id),
        (0, 0, 7)
    );
    assert_eq!((h.base_sequence, h.compression()), (0, Compression::None));
    assert_eq!(empty.len(), BATCH_HEADER_BYTES);
    // The empty batch is kept as it is by later passes, until the producer expires.
    assert_eq!(c.clean(empty, &h).action, BatchAction::Keep);
    let mut later = BatchCleaner::new(&map, &producers, 1_000 + PRODUCER_ID_EXPIRATION_MS, 0);
    assert_eq!(later.clean(empty, &h).action, BatchAction::Drop);
}

#[test]
fn compressed_batches_are_filtered_and_compressed_again_with_their_codec() {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let kv: Vec<Kv> = (0..50)
            .map(|i| {
                (
                    Some(if i % 2 == 0 { &b"even"[..] } else { b"odd" }),
                    Some(&b"value"[..]),
                )
            })
            .collect();
        let b = keyed_batch(10, 0, &kv, codec, -1);
        let map = map_of(&[&b], 10);
        let producers = ProducerLastOffsets::default();
        let mut c = BatchCleaner::new(&map, &producers, 0, 0);
        let o = c.clean(&b, &header(&b));
        assert_eq!(o.records_removed, 48, "{codec:?}");
        let out = rewritten(&o);
        assert_eq!(header(out).compression(), codec);
        let keys: Vec<i64> = contents(out).iter().map(|r| r.0).collect();
        assert_eq!(keys, vec![58, 59], "{codec:?}");
    }
}

#[test]
fn unreadable_control_and_transactional_batches_are_kept_whole() {
    let good = keyed_batch(0, 0, &[(Some(b"k"), Some(b"1"))], Compression::None, -1);
    let mut unknown = keyed_batch(1, 0, &[(Some(b"k"), Some(b"2"))], Compression::None, -1);
    let mut h = header(&unknown);
    h.attributes |= 6; // a codec id Kafka does not define
    unknown = encode_batch(&h, &unknown[BATCH_HEADER_BYTES..]);
    let mut txn = keyed_batch(2, 0, &[(Some(b"t"), Some(b"1"))], Compression::None, 5);
    let mut h = header(&txn);
    h.attributes |= 0x10;
    txn = encode_batch(&h, &txn[BATCH_HEADER_BYTES..]);
    let tomb = keyed_batch(3, 0, &[(Some(b"t"), None)], Compression::None, -1);
    let map = map_of(&[&good, &unknown, &txn, &tomb], 0);
    assert_eq!(
        map.key_count(),
        2,
        "neither unreadable nor transactional keys are mapped"
    );
    let producers = ProducerLastOffsets::default();
    let mut c = BatchCleaner::new(&map, &producers, 0, 0);
    for b in [&good, &unknown, &txn] {
        assert_eq!(c.clean(b, &header(b)).action, BatchAction::Keep);
    }
    // The tombstone's delete horizon has passed (retention 0), but its key is pinned by the
    // transactional value before it.
    let o = c.clean(&tomb, &header(&tomb));
    let out = rewritten(&o);
    assert_eq!(contents(out).len(), 1);
    let mut later = BatchCleaner::new(&map, &producers, 10, 0);
    let _ = later.clean(&txn, &header(&txn));
    let o = later.clean(out, &header(out));
    assert_eq!(o.action, BatchAction::Keep);
    assert_eq!(
        o.tombstone_horizon_ms, None,
        "a pinned tombstone schedules no pass"
    );
}

#[test]
fn records_past_the_map_are_kept_and_a_full_map_stops_at_a_batch() {
    let b0 = keyed_batch(0, 0, &[(Some(b"aaaa"), Some(b"1"))], Compression::None, -1);
    let b1 = keyed_batch(1, 0, &[(Some(b"bbbb"), Some(b"1"))], Compression::None, -1);
    let b2 = keyed_batch(2, 0, &[(Some(b"aaaa"), Some(b"2"))], Compression::None, -1);
    let mut m = OffsetMap::new(0, 4 + CLEANER_MAP_ENTRY_OVERHEAD_BYTES);
    assert!(m.add_batch(&b0, &header(&b0)));
    assert!(!m.add_batch(&b1, &header(&b1)), "over budget");
    assert_eq!(m.end_offset(), 1);
    let producers = ProducerLastOffsets::default();
    let mut c = BatchCleaner::new(&m, &producers, 0, 0);
    assert_eq!(c.clean(&b0, &header(&b0)).action, BatchAction::Keep);
    assert_eq!(c.clean(&b2, &header(&b2)).action, BatchAction::Keep);
    let mut tiny = OffsetMap::new(0, 0);
    assert!(
        tiny.add_batch(&b0, &header(&b0)),
        "the first batch always fits"
    );
}

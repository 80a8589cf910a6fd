//! Wire hot paths of a broker shard, in bytes/s of request or record bytes:
//! - Produce request decode (`skein_net::decode_request`) of 16 KiB and 1 MiB requests;
//! - batch validation on arrival (`ValidatedBatches::validate`: header checks and CRC-32C),
//!   and the offset/leader-epoch stamp that follows it (the same two 12-byte writes the storage
//!   engine's private `stamp` makes, on a copy of the batch, as the append path does);
//! - Fetch response framing (`skein_net::encode_fetch_response`) around 1 and 16 partitions'
//!   stored batches, and writing the resulting parts into one buffer (what the socket gets).

// Benchmark setup failing is a benchmark failing.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::{ApiKey, TopicName};
use kafka_protocol::protocol::StrBytes;
use skein_net::{
    decode_request, encode_fetch_response, encode_request, produce_request, CorrelationId,
    FetchPartitionDesc, FetchResponseDesc, FetchTopicDesc, RecordBatchBuilder, RequestHeader,
};
use skein_storage::batch::ValidatedBatches;

const RECORD_BYTES: usize = 1024;

fn batch(records: usize) -> Bytes {
    let value: Vec<u8> = (0..RECORD_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let mut b = RecordBatchBuilder::new(1_700_000_000_000);
    for _ in 0..records {
        b.push(1_700_000_000_000, None, Some(&value), &[]);
    }
    b.build()
}

/// A Produce v9 request frame (after the size prefix) with one batch per partition.
fn produce_frame(partitions: i32, records: usize) -> Bytes {
    let batches = (0..partitions).map(|p| (p, batch(records)));
    let body = produce_request(
        TopicName(StrBytes::from_static_str("bench")),
        batches,
        1,
        30_000,
    );
    let header = RequestHeader {
        api_key: ApiKey::Produce,
        api_version: 9,
        correlation_id: CorrelationId(7),
        client_id: Some(StrBytes::from_static_str("bench")),
    };
    encode_request(&header, &body).unwrap().slice(4..)
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("produce_decode");
    for (name, partitions, records) in [("16KiB_1p", 1, 16), ("1MiB_16p", 16, 64)] {
        let frame = produce_frame(partitions, records);
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| decode_request(std::hint::black_box(frame.clone())).unwrap())
        });
    }
    group.finish();
}

fn validate_and_stamp(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_validate_stamp");
    for records in [16usize, 512] {
        let b = batch(records);
        group.throughput(Throughput::Bytes(b.len() as u64));
        group.bench_function(format!("validate_{records}KiB"), |bencher| {
            bencher.iter(|| ValidatedBatches::validate(std::hint::black_box(b.clone())).unwrap())
        });
        group.bench_function(format!("validate_copy_stamp_{records}KiB"), |bencher| {
            bencher.iter(|| {
                let v = ValidatedBatches::validate(b.clone()).unwrap();
                let mut owned = BytesMut::from(&v.bytes()[..]);
                owned[0..8].copy_from_slice(&42i64.to_be_bytes());
                owned[12..16].copy_from_slice(&3i32.to_be_bytes());
                std::hint::black_box(owned.freeze())
            })
        });
    }
    group.finish();
}

fn fetch_framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("fetch_framing");
    for partitions in [1i32, 16] {
        // Each partition answers with 1 MiB of stored batches (16 × 64 KiB).
        let chunks: Vec<Bytes> = (0..16).map(|_| batch(64)).collect();
        let total: usize = chunks.len() * chunks[0].len() * partitions as usize;
        let desc = || FetchResponseDesc {
            topics: vec![FetchTopicDesc {
                name: StrBytes::from_static_str("bench"),
                partitions: (0..partitions)
                    .map(|p| FetchPartitionDesc {
                        partition_index: p,
                        high_watermark: 1 << 20,
                        log_start_offset: 0,
                        records: chunks.clone(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        group.throughput(Throughput::Bytes(total as u64));
        group.bench_function(format!("frame_{partitions}p_1MiB_each"), |b| {
            b.iter(|| encode_fetch_response(12, CorrelationId(1), desc()).unwrap())
        });
        let mut out = Vec::with_capacity(total + 4096);
        group.bench_function(format!("frame_and_gather_{partitions}p_1MiB_each"), |b| {
            b.iter(|| {
                out.clear();
                for part in encode_fetch_response(12, CorrelationId(1), desc()).unwrap() {
                    out.extend_from_slice(part.as_bytes());
                }
                std::hint::black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, validate_and_stamp, fetch_framing);
criterion_main!(benches);

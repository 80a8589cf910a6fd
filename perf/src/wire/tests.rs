use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use skein_net::{
    encode_fetch_response, encode_request, encode_response, produce_request, CorrelationId,
    FetchPartitionDesc, FetchResponseDesc, FetchTopicDesc, RecordBatchBuilder, RequestHeader,
};

use super::*;

fn batch(records: usize, value_bytes: usize) -> Bytes {
    let mut b = RecordBatchBuilder::new(1_700_000_000_000);
    let value = vec![7u8; value_bytes];
    for _ in 0..records {
        b.push(1_700_000_000_000, None, Some(&value), &[]);
    }
    b.build()
}

#[test]
fn produce_template_equals_the_generic_encoder() {
    let batches = vec![(0, batch(3, 100)), (5, batch(1, 1024))];
    let mut t = ProduceTemplate::new("skein-perf", "bench", -1, 30_000, &batches).unwrap();
    t.set_correlation_id(42);
    let header = RequestHeader {
        api_key: ApiKey::Produce,
        api_version: PRODUCE_VERSION,
        correlation_id: CorrelationId(42),
        client_id: Some(StrBytes::from_static_str("skein-perf")),
    };
    let body = produce_request(
        TopicName(StrBytes::from_static_str("bench")),
        batches,
        -1,
        30_000,
    );
    let expected = encode_request(&header, &body).unwrap();
    assert_eq!(t.frame(), &expected[..]);
    assert_eq!(t.records(), 4);
    assert_eq!(t.payload_bytes(), 3 * 100 + 1024);
    // The server-side decoder accepts it too.
    let decoded = skein_net::decode_request(Bytes::copy_from_slice(&t.frame()[4..])).unwrap();
    assert_eq!(decoded.header.correlation_id, CorrelationId(42));
}

#[test]
fn stamped_batches_keep_a_valid_crc_and_carry_the_times() {
    let batches = vec![(0, batch(4, 64)), (1, batch(2, 64))];
    let mut t = ProduceTemplate::new("c", "t", 1, 1000, &batches).unwrap();
    t.stamp(1_800_000_000_123, |b, r| (b * 100 + r) as u64 + 9_000_000);
    for (b, slot) in t.slots().iter().enumerate() {
        let mut bytes = Bytes::copy_from_slice(&t.frame()[slot.at..slot.at + slot.len]);
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap(); // checks the CRC-32C
        for (r, record) in set.records.iter().enumerate() {
            let value = record.value.as_ref().unwrap();
            let stamped = u64::from_be_bytes(value[..8].try_into().unwrap());
            assert_eq!(stamped, (b * 100 + r) as u64 + 9_000_000);
            assert_eq!(record.timestamp, 1_800_000_000_123);
        }
    }
}

#[test]
fn walk_batch_finds_every_value() {
    let mut b = RecordBatchBuilder::new(0);
    b.push(0, Some(b"key"), Some(b"abc"), &[("h", Some(b"v"))]);
    b.push(5, None, None, &[]);
    b.push(9, None, Some(&[1u8; 300]), &[]);
    let built = b.build();
    let info = walk_batch(&built).unwrap();
    assert_eq!(info.record_count, 3);
    assert_eq!(info.value_bytes, 303);
    assert_eq!(info.value_at.len(), 2);
    assert_eq!(&built[info.value_at[0]..info.value_at[0] + 3], b"abc");
    assert_eq!(built[info.value_at[1]], 1);
    assert!(walk_batch(&built[..built.len() - 1]).is_err());
}

#[test]
fn produce_response_parses() {
    let body = ProduceResponse::default()
        .with_responses(vec![TopicProduceResponse::default()
            .with_name(TopicName(StrBytes::from_static_str("bench")))
            .with_partition_responses(vec![
                PartitionProduceResponse::default()
                    .with_index(3)
                    .with_base_offset(77),
                PartitionProduceResponse::default()
                    .with_index(4)
                    .with_error_code(6),
            ])])
        .with_throttle_time_ms(0);
    let frame = encode_response(
        ApiKey::Produce,
        PRODUCE_VERSION,
        CorrelationId(9),
        &ResponseKind::Produce(body),
    )
    .unwrap();
    let mut out = Vec::new();
    let id = parse_produce_response(&frame[4..], &mut out).unwrap();
    assert_eq!(id, 9);
    assert_eq!(
        out,
        vec![
            ProducePartitionResult {
                partition: 3,
                error_code: 0,
                base_offset: 77
            },
            ProducePartitionResult {
                partition: 4,
                error_code: 6,
                base_offset: 0
            },
        ]
    );
    assert!(parse_produce_response(&frame[4..frame.len() - 1], &mut out).is_err());
}

#[test]
fn fetch_response_from_the_broker_framer_parses() {
    let (b1, b2) = (batch(2, 10), batch(3, 20));
    let mut partial = batch(1, 10).to_vec();
    partial.truncate(30);
    let desc = FetchResponseDesc {
        topics: vec![FetchTopicDesc {
            name: StrBytes::from_static_str("bench"),
            partitions: vec![
                FetchPartitionDesc {
                    partition_index: 0,
                    high_watermark: 5,
                    log_start_offset: 0,
                    records: vec![b1.to_vec(), b2.to_vec(), partial],
                    ..Default::default()
                },
                FetchPartitionDesc {
                    partition_index: 1,
                    error_code: 1,
                    high_watermark: -1,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let parts = encode_fetch_response(FETCH_VERSION, CorrelationId(5), desc).unwrap();
    let frame: Vec<u8> = parts.iter().flat_map(|p| p.as_bytes().to_vec()).collect();
    let mut seen = Vec::new();
    let (id, error) = parse_fetch_response(&frame[4..], |p| {
        let batches: Vec<usize> = complete_batches(p.records).map(|b| b.len()).collect();
        seen.push((p.partition, p.error_code, p.high_watermark, batches));
        Ok(())
    })
    .unwrap();
    assert_eq!((id, error), (5, 0));
    assert_eq!(
        seen,
        vec![(0, 0, 5, vec![b1.len(), b2.len()]), (1, 1, -1, vec![]),]
    );
}

#[test]
fn varints_round_trip_kafka_zigzag() {
    for v in [
        0i64,
        1,
        -1,
        63,
        -64,
        64,
        300,
        -300,
        i64::from(i32::MAX),
        i64::MIN,
        i64::MAX,
    ] {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        let mut buf = Vec::new();
        while z >= 0x80 {
            buf.push((z as u8) | 0x80);
            z >>= 7;
        }
        buf.push(z as u8);
        let mut pos = 0;
        assert_eq!(varint(&buf, &mut pos).unwrap(), v);
        assert_eq!(pos, buf.len());
    }
    assert!(varint(&[0x80; 11], &mut 0).is_err());
}

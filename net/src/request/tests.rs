//! Tests of request decoding: zero-copy Produce, error kinds, spec agreement, never-panic.

use bytes::BytesMut;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::Encodable;
use proptest::prelude::*;

use super::*;
use crate::testgen::{self, TagPolicy};

fn header_bytes(key: i16, version: i16, correlation_id: i32) -> Vec<u8> {
    let mut out = key.to_be_bytes().to_vec();
    out.extend(version.to_be_bytes());
    out.extend(correlation_id.to_be_bytes());
    out
}

fn produce_frame(version: i16, records: &[Bytes]) -> Bytes {
    let partitions = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            PartitionProduceData::default()
                .with_index(i as i32)
                .with_records(Some(r.clone()))
        })
        .collect();
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("events")))
        .with_partition_data(partitions);
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![topic]);
    let header = kafka_protocol::messages::RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("producer-1")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, ApiKey::Produce.request_header_version(version))
        .unwrap();
    request.encode(&mut buf, version).unwrap();
    buf.freeze()
}

#[test]
fn produce_records_are_slices_of_the_frame() {
    let batches = [Bytes::from(vec![0xab; 300]), Bytes::from(vec![0xcd; 70])];
    for version in crate::limits::PRODUCE_VERSION_MIN..=crate::limits::PRODUCE_VERSION_MAX {
        let frame = produce_frame(version, &batches);
        let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let decoded = decode_request(frame.clone()).unwrap();
        assert_eq!(decoded.header.correlation_id, CorrelationId(42));
        assert_eq!(decoded.header.client_id.as_deref(), Some("producer-1"));
        let RequestKind::Produce(produce) = decoded.body else {
            panic!("not produce")
        };
        let partitions = &produce.topic_data[0].partition_data;
        for (partition, batch) in partitions.iter().zip(&batches) {
            let records = partition.records.as_ref().unwrap();
            assert_eq!(records, batch, "v{version}");
            let start = records.as_ptr() as usize;
            assert!(range.contains(&start), "v{version}: records were copied");
            assert!(range.contains(&(start + records.len() - 1)), "v{version}");
        }
    }
}

#[test]
fn unknown_api_key_carries_the_correlation_id() {
    let err = decode_request(header_bytes(9999, 0, 5).into()).unwrap_err();
    let want = DecodeError::UnknownApiKey {
        api_key: 9999,
        api_version: 0,
        correlation_id: CorrelationId(5),
    };
    assert_eq!(err, want);
    assert_eq!(err.correlation_id(), Some(CorrelationId(5)));
}

#[test]
fn unsupported_versions_are_told_apart() {
    // ApiVersions v99 from a newer client: the KIP-511 fallback needs key, version and id.
    let err = decode_request(header_bytes(18, 99, 77).into()).unwrap_err();
    let want = DecodeError::UnsupportedVersion {
        api_key: ApiKey::ApiVersions,
        api_version: 99,
        correlation_id: CorrelationId(77),
    };
    assert_eq!(err, want);
    // Produce v2 was removed in Kafka 4; kafka-protocol cannot decode it.
    let err = decode_request(header_bytes(0, 2, 1).into()).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::UnsupportedVersion {
            api_key: ApiKey::Produce,
            ..
        }
    ));
    // Negative versions.
    let err = decode_request(header_bytes(3, -1, 1).into()).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::UnsupportedVersion {
            api_version: -1,
            ..
        }
    ));
}

#[test]
fn short_frames_and_broken_headers() {
    for len in 0..REQUEST_HEADER_FIXED_BYTES {
        let frame = Bytes::from(header_bytes(3, 4, 1)[..len].to_vec());
        assert_eq!(
            decode_request(frame).unwrap_err(),
            DecodeError::TruncatedHeader { len }
        );
    }
    // Metadata v4 (header v1): client id length 10 but 2 bytes follow.
    let mut frame = header_bytes(3, 4, 8);
    frame.extend([0, 10, b'a', b'b']);
    let err = decode_request(frame.into()).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::MalformedHeader {
            correlation_id: CorrelationId(8),
            ..
        }
    ));
    // Invalid UTF-8 client id.
    let mut frame = header_bytes(3, 4, 8);
    frame.extend([0, 2, 0xff, 0xfe]);
    let err = decode_request(frame.into()).unwrap_err();
    let reason = WireError::InvalidUtf8 { field: "client_id" };
    assert!(matches!(err, DecodeError::MalformedHeader { reason: r, .. } if r == reason));
}

#[test]
fn malformed_bodies_keep_the_header() {
    // Metadata v4, null client id, topics array claiming i32::MAX elements: without the shape
    // check kafka-protocol would ask for ~200 GB and abort the process.
    let mut frame = header_bytes(3, 4, 9);
    frame.extend([0xff, 0xff]);
    frame.extend([0x7f, 0xff, 0xff, 0xff, 0x01]);
    let err = decode_request(frame.into()).unwrap_err();
    let DecodeError::MalformedBody { header, reason } = err else {
        panic!("{err:?}")
    };
    assert_eq!(header.api_key, ApiKey::Metadata);
    assert_eq!(header.correlation_id, CorrelationId(9));
    assert_eq!(header.client_id, None);
    assert!(matches!(reason, WireError::ArrayTooLong { .. }), "{reason}");
    // Metadata v12, compact topics array of u32::MAX - 1 elements.
    let mut frame = header_bytes(3, 12, 10);
    frame.extend([0, 0, 0]); // client id "", no header tags
    frame.extend([0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0]);
    let err = decode_request(frame.into()).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::MalformedBody {
            reason: WireError::ArrayTooLong { .. },
            ..
        }
    ));
    // A body kafka-protocol refuses after the shape check passed: invalid UTF-8 topic name.
    let mut frame = header_bytes(3, 4, 11);
    frame.extend([0xff, 0xff, 0, 0, 0, 1, 0, 2, 0xc3, 0x28, 1]);
    let err = decode_request(frame.into()).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::MalformedBody {
            reason: WireError::Rejected(_),
            ..
        }
    ));
}

#[test]
fn decodable_versions_stay_inside_kafka_protocol() {
    let pairs = testgen::decodable_pairs();
    assert!(pairs.len() > 250, "{}", pairs.len());
    for key in [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::Metadata,
        ApiKey::ApiVersions,
    ] {
        let range = decodable_versions(key).unwrap();
        assert!(range.min >= key.valid_versions().min && range.max <= key.valid_versions().max);
    }
    assert_eq!(
        decodable_versions(ApiKey::Produce),
        Some(VersionRange { min: 3, max: 11 })
    );
    assert_eq!(
        decodable_versions(ApiKey::Fetch),
        Some(VersionRange { min: 4, max: 17 })
    );
    assert_eq!(
        decodable_versions(ApiKey::ApiVersions),
        Some(VersionRange { min: 0, max: 4 })
    );
}

/// The specs and kafka-protocol agree on the shape of every request version decoded: bodies
/// generated from the specs pass the shape check, decode, use every byte, and re-encode to
/// the same bytes.
#[test]
fn specs_and_kafka_protocol_agree_on_every_request_version() {
    let tags = TagPolicy {
        defaults: false,
        unknown: true,
    };
    for (key, version) in testgen::decodable_pairs() {
        let spec = schema::request(key as i16).unwrap();
        for seed in 0..24u64 {
            let body = testgen::body(spec, version, seed, tags);
            let ctx = format!("{key:?} v{version} seed {seed}");
            assert_eq!(
                validate::check_body(spec, version, &body),
                Ok(body.len()),
                "{ctx}"
            );
            let mut buf = Bytes::from(body.clone());
            let decoded = RequestKind::decode(key, &mut buf, version)
                .unwrap_or_else(|e| panic!("{ctx}: {e:#}"));
            assert_eq!(buf.len(), 0, "{ctx}: bytes left over");
            let mut again = BytesMut::new();
            decoded.encode(&mut again, version).unwrap();
            assert_eq!(&again[..], &body[..], "{ctx}");
        }
    }
}

fn arbitrary_pair() -> impl Strategy<Value = (ApiKey, i16)> {
    let pairs = testgen::decodable_pairs();
    (0..pairs.len()).prop_map(move |i| pairs[i])
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Set { at: usize, value: u8 },
    Truncate { len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        (
            any::<usize>(),
            prop_oneof![Just(0u8), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()]
        )
            .prop_map(|(at, value)| Mutation::Set { at, value }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1..8usize).prop_map(|(at, len)| Mutation::Remove { at, len }),
    ]
}

fn apply(frame: &mut Vec<u8>, m: &Mutation) {
    let n = frame.len().max(1);
    match m {
        Mutation::Flip { at, xor } => {
            if let Some(b) = frame.get_mut(at % n) {
                *b ^= xor;
            }
        }
        Mutation::Set { at, value } => {
            if let Some(b) = frame.get_mut(at % n) {
                *b = *value;
            }
        }
        Mutation::Truncate { len } => frame.truncate(len % n),
        Mutation::Insert { at, bytes } => {
            let at = at % (frame.len() + 1);
            frame.splice(at..at, bytes.iter().copied());
        }
        Mutation::Remove { at, len } => {
            let at = at % n;
            let end = (at + len).min(frame.len());
            frame.drain(at.min(end)..end);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(frame in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_request(Bytes::from(frame));
    }

    #[test]
    fn arbitrary_bodies_after_a_valid_header_never_panic(
        (key, version) in arbitrary_pair(),
        body in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut frame = testgen::request_frame(key, version, 0);
        let header_len = frame.len() - testgen::body(
            schema::request(key as i16).unwrap(), version, 0,
            TagPolicy { defaults: true, unknown: true }).len();
        frame.truncate(header_len);
        frame.extend(body);
        let _ = decode_request(Bytes::from(frame));
    }

    #[test]
    fn mutated_valid_requests_never_panic(
        (key, version) in arbitrary_pair(),
        seed in any::<u64>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut frame = testgen::request_frame(key, version, seed);
        prop_assert!(decode_request(Bytes::from(frame.clone())).is_ok());
        for m in &mutations {
            apply(&mut frame, m);
        }
        let _ = decode_request(Bytes::from(frame));
    }

    #[test]
    fn every_truncation_of_a_valid_request_fails_cleanly(
        (key, version) in arbitrary_pair(),
        seed in any::<u64>(),
    ) {
        let frame = testgen::request_frame(key, version, seed);
        for len in 0..frame.len() {
            let _ = decode_request(Bytes::copy_from_slice(&frame[..len]));
        }
    }
}

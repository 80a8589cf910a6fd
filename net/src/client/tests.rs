//! Tests of the client side: request and response round trips of every API and version.

use kafka_protocol::messages::ApiVersionsRequest;
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;

use super::*;
use crate::fetch::{encode_fetch_response, FetchPartitionDesc, FetchResponseDesc, FetchTopicDesc};
use crate::record_batch::RecordBatchBuilder;
use crate::response::encode_response;
use crate::testgen::{self, TagPolicy};
use crate::{decode_request, DecodedRequest};

fn header(api_key: ApiKey, api_version: i16, correlation_id: i32) -> RequestHeader {
    RequestHeader {
        api_key,
        api_version,
        correlation_id: CorrelationId(correlation_id),
        client_id: Some(StrBytes::from_static_str("skein-perf")),
    }
}

fn without_prefix(frame: &Bytes) -> Bytes {
    let size = i32::from_be_bytes(frame[..4].try_into().unwrap());
    assert_eq!(size as usize, frame.len() - 4);
    frame.slice(4..)
}

#[test]
fn produce_round_trip_through_the_server_decoder() {
    let mut builder = RecordBatchBuilder::new(1_000);
    builder.push(1_000, Some(b"key"), Some(b"value"), &[]);
    let batch = builder.build();
    let topic = TopicName(StrBytes::from_static_str("bench"));
    let body = produce_request(topic, [(0, batch.clone()), (5, batch.clone())], -1, 30_000);
    for version in 3..=11 {
        let frame =
            encode_request(&header(ApiKey::Produce, version, version.into()), &body).unwrap();
        let decoded = decode_request(without_prefix(&frame)).unwrap();
        let want = DecodedRequest {
            header: header(ApiKey::Produce, version, version.into()),
            body: body.clone(),
        };
        assert_eq!(decoded, want, "v{version}");
    }
}

#[test]
fn every_request_version_round_trips() {
    for (key, version) in testgen::decodable_pairs() {
        let frame = testgen::request_frame(key, version, 3);
        let decoded = decode_request(Bytes::from(frame.clone())).unwrap();
        let again = encode_request(&decoded.header, &decoded.body).unwrap();
        assert_eq!(
            decode_request(without_prefix(&again)).unwrap(),
            decoded,
            "{key:?} v{version}"
        );
    }
}

#[test]
fn every_response_version_round_trips() {
    let tags = TagPolicy {
        defaults: true,
        unknown: true,
    };
    let mut checked = 0;
    for key in ApiKey::iter() {
        let (Some(range), Some(spec)) = (
            decodable_response_versions(key),
            testgen::response_spec(key),
        ) else {
            continue;
        };
        for version in range.min..=range.max {
            let mut body = Bytes::from(testgen::body(spec, version, 11, tags));
            let body = ResponseKind::decode(key, &mut body, version).unwrap();
            let frame = encode_response(key, version, CorrelationId(-4), &body).unwrap();
            let decoded = decode_response(key, version, without_prefix(&frame)).unwrap();
            assert_eq!(
                decoded,
                DecodedResponse {
                    correlation_id: CorrelationId(-4),
                    body
                },
                "{key:?} v{version}"
            );
            checked += 1;
        }
    }
    assert!(checked > 250, "{checked}");
}

#[test]
fn fetch_parts_decode_as_a_fetch_response() {
    let chunks = vec![
        Bytes::from_static(b"batch-one"),
        Bytes::from_static(b"batch-two"),
    ];
    let partition = FetchPartitionDesc {
        high_watermark: 10,
        records: chunks,
        ..FetchPartitionDesc::default()
    };
    let topic = FetchTopicDesc {
        name: StrBytes::from_static_str("t"),
        partitions: vec![partition],
        ..Default::default()
    };
    for version in 4..=16 {
        let desc = FetchResponseDesc {
            topics: vec![topic.clone()],
            ..FetchResponseDesc::default()
        };
        let parts = encode_fetch_response(version, CorrelationId(8), desc).unwrap();
        let frame: Vec<u8> = parts.iter().flat_map(|p| p.as_bytes().to_vec()).collect();
        let decoded =
            decode_response(ApiKey::Fetch, version, Bytes::from(frame).slice(4..)).unwrap();
        assert_eq!(decoded.correlation_id, CorrelationId(8));
        let ResponseKind::Fetch(fetch) = decoded.body else {
            panic!("not fetch")
        };
        let records = fetch.responses[0].partitions[0].records.clone().unwrap();
        assert_eq!(&records[..], b"batch-onebatch-two");
    }
}

#[test]
fn bad_responses_are_errors() {
    let err = decode_response(ApiKey::ApiVersions, 99, Bytes::new()).unwrap_err();
    assert_eq!(
        err,
        ResponseDecodeError::UnsupportedVersion {
            api_key: ApiKey::ApiVersions,
            api_version: 99
        }
    );
    let err = decode_response(ApiKey::ApiVersions, 3, Bytes::from_static(&[0, 0])).unwrap_err();
    assert_eq!(err, ResponseDecodeError::TruncatedHeader { len: 2 });
    // ApiVersions v0: error code, then an api key array claiming i32::MAX entries.
    let frame = Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0]);
    let err = decode_response(ApiKey::ApiVersions, 0, frame).unwrap_err();
    assert!(matches!(
        err,
        ResponseDecodeError::Malformed {
            reason: WireError::ArrayTooLong { .. },
            ..
        }
    ));
    let body: RequestKind = ApiVersionsRequest::default().into();
    assert!(encode_request(&header(ApiKey::Produce, 9, 1), &body).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn mutated_responses_never_panic(
        key_index in 0..90usize,
        seed in any::<u64>(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let keys: Vec<ApiKey> =
            ApiKey::iter().filter(|k| decodable_response_versions(*k).is_some()).collect();
        let key = keys[key_index % keys.len()];
        let range = decodable_response_versions(key).unwrap();
        let version = range.min + (seed % (range.max - range.min + 1) as u64) as i16;
        let spec = testgen::response_spec(key).unwrap();
        let mut frame = 5i32.to_be_bytes().to_vec();
        if response_header_version(key, version) >= 1 {
            frame.push(0);
        }
        let tags = TagPolicy { defaults: true, unknown: true };
        frame.extend(testgen::body(spec, version, seed, tags));
        prop_assert!(decode_response(key, version, Bytes::from(frame.clone())).is_ok());
        for (at, xor) in flips {
            let n = frame.len();
            frame[at % n] ^= xor;
        }
        frame.truncate(cut % (frame.len() + 1));
        let _ = decode_response(key, version, Bytes::from(frame));
    }
}

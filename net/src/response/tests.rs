//! Tests of response encoding: header versions, KIP-511 fallback, no default-valued tagged fields.

use bytes::Buf;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsResponse, FetchResponse, MetadataResponse};
use kafka_protocol::protocol::Decodable;

use super::*;
use crate::schema::{Field, Message};
use crate::testgen::{self, TagPolicy};
use crate::validate::{self, TagVisitor};

fn split_frame(frame: &Bytes, header_version: i16) -> (i32, Bytes) {
    let mut buf = frame.clone();
    let size = buf.get_i32();
    assert_eq!(size as usize, frame.len() - 4);
    let correlation_id = buf.get_i32();
    if header_version >= 1 {
        assert_eq!(buf.get_u8(), 0, "response header tagged fields");
    }
    (correlation_id, buf)
}

#[test]
fn api_versions_responses_always_use_header_v0() {
    for version in 0..=4 {
        assert_eq!(response_header_version(ApiKey::ApiVersions, version), 0);
        let body = ApiVersionsResponse::default()
            .with_error_code(0)
            .with_api_keys(vec![ApiVersion::default()
                .with_api_key(0)
                .with_max_version(11)]);
        let frame =
            encode_response(ApiKey::ApiVersions, version, CorrelationId(3), &body.into()).unwrap();
        let (correlation_id, mut rest) = split_frame(&frame, 0);
        assert_eq!(correlation_id, 3);
        let decoded = ApiVersionsResponse::decode(&mut rest, version).unwrap();
        assert_eq!(decoded.api_keys.len(), 1);
        assert_eq!(rest.len(), 0);
    }
}

#[test]
fn kip_511_fallback_is_a_v0_api_versions_response() {
    let body = ApiVersionsResponse::default().with_error_code(35); // UNSUPPORTED_VERSION
    let frame = encode_response(ApiKey::ApiVersions, 0, CorrelationId(-7), &body.into()).unwrap();
    // size, correlation id, error code, empty api key array.
    let want = [0, 0, 0, 10, 0xff, 0xff, 0xff, 0xf9, 0, 35, 0, 0, 0, 0];
    assert_eq!(&frame[..], &want[..]);
}

#[test]
fn flexible_versions_use_header_v1() {
    let body: ResponseKind = MetadataResponse::default().into();
    let frame = encode_response(ApiKey::Metadata, 9, CorrelationId(1), &body).unwrap();
    let (_, rest) = split_frame(&frame, 1);
    assert_eq!(
        MetadataResponse::decode(&mut rest.clone(), 9).unwrap(),
        MetadataResponse::default()
    );
    let frame = encode_response(ApiKey::Metadata, 8, CorrelationId(1), &body).unwrap();
    let (_, rest) = split_frame(&frame, 0);
    assert_eq!(
        MetadataResponse::decode(&mut rest.clone(), 8).unwrap(),
        MetadataResponse::default()
    );
}

#[test]
fn wrong_body_and_version_are_refused() {
    let body: ResponseKind = MetadataResponse::default().into();
    let err = encode_response(ApiKey::Produce, 9, CorrelationId(1), &body).unwrap_err();
    assert_eq!(
        err,
        EncodeError::WrongBody {
            api_key: ApiKey::Produce
        }
    );
    let err = encode_response(ApiKey::Metadata, 99, CorrelationId(1), &body).unwrap_err();
    assert_eq!(
        err,
        EncodeError::UnsupportedVersion {
            api_key: ApiKey::Metadata,
            api_version: 99
        }
    );
    // A fetch session id cannot travel below v7 (a non-ignorable field).
    let body: ResponseKind = FetchResponse::default().with_session_id(5).into();
    let err = encode_response(ApiKey::Fetch, 6, CorrelationId(1), &body).unwrap_err();
    assert!(matches!(err, EncodeError::Rejected(_)), "{err}");
}

/// Fails the test when a tagged field on the wire holds its default value.
struct NoDefaults {
    version: i16,
    context: String,
    seen: usize,
}

impl TagVisitor for NoDefaults {
    fn tagged(&mut self, field: &'static Field, payload: &[u8]) {
        let default = testgen::default_bytes(field, self.version, true);
        assert_ne!(
            payload,
            &default[..],
            "{}: tagged {} holds its default",
            self.context,
            field.name
        );
        self.seen += 1;
    }
}

/// Versions both kafka-protocol and the specs know, released as stable (per the request spec:
/// only requests mark unstable versions).
fn response_versions(key: ApiKey, spec: &Message) -> std::ops::RangeInclusive<i16> {
    let ours = key.valid_versions();
    let stable_hi = crate::schema::request(key as i16).map_or(-1, |r| r.stable_hi);
    ours.min.max(spec.valid.lo)..=ours.max.min(spec.valid.hi).min(stable_hi)
}

/// For every response type and version the specs cover: a message decoded from bytes whose
/// tagged fields often hold their defaults is re-encoded without any of those fields, and
/// round-trips.
#[test]
fn tagged_fields_holding_defaults_are_never_written() {
    let tags = TagPolicy {
        defaults: true,
        unknown: false,
    };
    let mut tagged_seen = 0;
    for key in ApiKey::iter() {
        let Some(spec) = testgen::response_spec(key) else {
            continue;
        };
        for version in response_versions(key, spec) {
            for seed in 0..16u64 {
                let context = format!("{key:?} v{version} seed {seed}");
                let body = testgen::body(spec, version, seed, tags);
                let mut buf = Bytes::from(body);
                let decoded = ResponseKind::decode(key, &mut buf, version)
                    .unwrap_or_else(|e| panic!("{context}: {e:#}"));
                assert_eq!(buf.len(), 0, "{context}");
                let frame = encode_response(key, version, CorrelationId(1), &decoded).unwrap();
                let (_, rest) = split_frame(&frame, response_header_version(key, version));
                let mut visitor = NoDefaults {
                    version,
                    context: context.clone(),
                    seen: 0,
                };
                let used = validate::walk(spec, version, &rest, &mut visitor).unwrap();
                assert_eq!(used, rest.len(), "{context}");
                tagged_seen += visitor.seen;
                let again = ResponseKind::decode(key, &mut rest.clone(), version).unwrap();
                assert_eq!(again, decoded, "{context}");
            }
        }
    }
    assert!(tagged_seen > 100, "{tagged_seen}");
}

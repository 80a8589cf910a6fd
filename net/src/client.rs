//! Client side of the Kafka protocol (for Skein's load generator); pure codecs, per connection.
//!
//! [`encode_request`] builds a complete request frame; [`decode_response`] reads the frame
//! [`crate::read_frame`] returned. Response bodies get the same shape check as requests do on
//! the server, so a broken broker cannot make the client abort on a huge array count.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::{Encodable, VersionRange};

use crate::error::{EncodeError, ResponseDecodeError, WireError};
use crate::kinds::request_api_key;
use crate::request::{CorrelationId, HeaderReader, RequestHeader};
use crate::response::{finish_frame, response_header_version};
use crate::{schema, validate};

/// Request frames start with this much room; the buffer grows past it as needed.
const REQUEST_BUFFER_INITIAL_BYTES: usize = 256;

/// One response: the correlation id it answers and its body.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedResponse {
    pub correlation_id: CorrelationId,
    pub body: ResponseKind,
}

/// Encodes a complete request frame: size prefix, request header, body.
pub fn encode_request(header: &RequestHeader, body: &RequestKind) -> Result<Bytes, EncodeError> {
    let (api_key, api_version) = (header.api_key, header.api_version);
    let versions = api_key.valid_versions();
    if api_version < versions.min || api_version > versions.max {
        return Err(EncodeError::UnsupportedVersion {
            api_key,
            api_version,
        });
    }
    if request_api_key(body) != Some(api_key) {
        return Err(EncodeError::WrongBody { api_key });
    }
    let wire_header = kafka_protocol::messages::RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(api_version)
        .with_correlation_id(header.correlation_id.0)
        .with_client_id(header.client_id.clone());
    let mut buf = BytesMut::with_capacity(REQUEST_BUFFER_INITIAL_BYTES);
    buf.extend_from_slice(&[0; 4]);
    let header_version = api_key.request_header_version(api_version);
    wire_header
        .encode(&mut buf, header_version)
        .map_err(|e| EncodeError::Rejected(format!("{e:#}")))?;
    body.encode(&mut buf, api_version)
        .map_err(|e| EncodeError::Rejected(format!("{e:#}")))?;
    finish_frame(&mut buf)?;
    Ok(buf.freeze())
}

/// Versions of `api_key` responses that [`decode_response`] reads.
pub fn decodable_response_versions(api_key: ApiKey) -> Option<VersionRange> {
    let spec = schema::response(api_key as i16)?;
    let stable_hi = schema::request(api_key as i16)?.stable_hi;
    let spec = VersionRange {
        min: spec.valid.lo,
        max: spec.valid.hi.min(stable_hi),
    };
    let both = api_key.valid_versions().intersect(&spec);
    (!both.is_empty()).then_some(both)
}

/// Decodes a response frame (the bytes after the size prefix) that answers a request of
/// `api_key` at `api_version`. Never panics.
pub fn decode_response(
    api_key: ApiKey,
    api_version: i16,
    frame: Bytes,
) -> Result<DecodedResponse, ResponseDecodeError> {
    let supported = decodable_response_versions(api_key)
        .is_some_and(|r| r.min <= api_version && api_version <= r.max);
    let spec = schema::response(api_key as i16).filter(|_| supported);
    let Some(spec) = spec else {
        return Err(ResponseDecodeError::UnsupportedVersion {
            api_key,
            api_version,
        });
    };
    let len = frame.len();
    let mut buf = frame;
    let correlation_id = CorrelationId(
        buf.try_get_i32()
            .map_err(|_| ResponseDecodeError::TruncatedHeader { len })?,
    );
    let malformed = |reason| ResponseDecodeError::Malformed {
        api_key,
        correlation_id,
        reason,
    };
    if response_header_version(api_key, api_version) >= 1 {
        let mut reader = HeaderReader {
            buf: &mut buf,
            at: 4,
        };
        reader.skip_tagged_fields().map_err(malformed)?;
    }
    validate::check_body(spec, api_version, &buf).map_err(malformed)?;
    let body = ResponseKind::decode(api_key, &mut buf, api_version)
        .map_err(|e| malformed(WireError::Rejected(format!("{e:#}"))))?;
    Ok(DecodedResponse {
        correlation_id,
        body,
    })
}

/// A Produce request body for one topic, one record batch per partition (`batches` holds
/// `(partition_index, batch)` pairs; each batch is a RecordBatch v2, e.g. from
/// [`crate::RecordBatchBuilder`]). The batches travel as they are, without a copy.
pub fn produce_request(
    topic: TopicName,
    batches: impl IntoIterator<Item = (i32, Bytes)>,
    acks: i16,
    timeout_ms: i32,
) -> RequestKind {
    let partitions = batches
        .into_iter()
        .map(|(index, batch)| {
            PartitionProduceData::default()
                .with_index(index)
                .with_records(Some(batch))
        })
        .collect();
    let topic = TopicProduceData::default()
        .with_name(topic)
        .with_partition_data(partitions);
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![topic])
        .into()
}

#[cfg(test)]
mod tests;

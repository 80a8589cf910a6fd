//! Raw frames for the client quota tests (`kafka-protocol`; the Rust client has no client quota
//! admin calls): AlterClientQuotas and DescribeClientQuotas, and Produce as a chosen client-id
//! so that its `throttle_time_ms` is seen as the broker sent it.

use std::net::TcpStream;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::raw::{read_frame, roundtrip, write_frame};
use super::Broker;

/// A RecordBatch of `records` records of `value_bytes` bytes each.
pub fn record_batch(records: usize, value_bytes: usize) -> Bytes {
    super::raw::record_batch(&vec![vec![b'x'; value_bytes]; records])
}

/// One request as `client_id`, and its decoded answer.
pub fn roundtrip_as<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    client_id: &str,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Resp {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api_key.request_header_version(version))
        .expect("encode header");
    request.encode(&mut body, version).expect("encode request");
    write_frame(stream, &body);
    let mut frame = read_frame(stream).expect("the broker answers");
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
        .expect("response header");
    assert_eq!(header.correlation_id, correlation_id);
    Resp::decode(&mut frame, version).expect("response body")
}

/// One acks=1 Produce v9 of `batch` to partition 0 as `client_id`: (error code, throttle ms).
pub fn produce_as(
    stream: &mut TcpStream,
    client_id: &str,
    correlation_id: i32,
    topic: &str,
    batch: Bytes,
) -> (i16, i32) {
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let response: ProduceResponse = roundtrip_as(
        stream,
        client_id,
        ApiKey::Produce,
        9,
        correlation_id,
        &request,
    );
    let error = response
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .map(|p| p.error_code)
        .expect("one partition in the response");
    (error, response.throttle_time_ms)
}

pub const INVALID_REQUEST: i16 = 42;
pub const MATCH_EXACT: i8 = 0;

/// An entity as (type, name) pairs, a `None` name being the default.
pub type Entity<'a> = &'a [(&'a str, Option<&'a str>)];

pub fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// One AlterClientQuotas (v1) entry: `Some(value)` sets a key, `None` removes it.
pub fn quota_entry(entity: Entity<'_>, ops: &[(&str, Option<f64>)]) -> EntryData {
    EntryData::default()
        .with_entity(
            entity
                .iter()
                .map(|(t, n)| {
                    EntityData::default()
                        .with_entity_type(text(t))
                        .with_entity_name(n.map(text))
                })
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(key, value)| {
                    OpData::default()
                        .with_key(text(key))
                        .with_value(value.unwrap_or(0.0))
                        .with_remove(value.is_none())
                })
                .collect(),
        )
}

/// Sends one AlterClientQuotas and gives each entry's (error code, message).
pub fn alter_quotas(
    broker: &Broker,
    entries: Vec<EntryData>,
    validate_only: bool,
) -> Vec<(i16, Option<String>)> {
    let mut s = super::raw_connect(broker);
    let request = AlterClientQuotasRequest::default()
        .with_entries(entries)
        .with_validate_only(validate_only);
    let response: AlterClientQuotasResponse =
        roundtrip(&mut s, ApiKey::AlterClientQuotas, 1, 1, &request);
    response
        .entries
        .into_iter()
        .map(|e| (e.error_code, e.error_message.map(|m| m.to_string())))
        .collect()
}

/// Every quota DescribeClientQuotas (v0) gives for the client-id `name`, strictly: `key=value`.
pub fn described_for_client(broker: &Broker, name: &str) -> Vec<String> {
    let mut s = super::raw_connect(broker);
    let request = DescribeClientQuotasRequest::default()
        .with_components(vec![ComponentData::default()
            .with_entity_type(text("client-id"))
            .with_match_type(MATCH_EXACT)
            .with_match(Some(text(name)))])
        .with_strict(true);
    let response: DescribeClientQuotasResponse =
        roundtrip(&mut s, ApiKey::DescribeClientQuotas, 0, 1, &request);
    assert_eq!(response.error_code, 0, "{:?}", response.error_message);
    let entries = response.entries.expect("entries");
    let mut found = Vec::new();
    for e in entries {
        assert_eq!(e.entity.len(), 1, "strict: the client-id alone");
        assert_eq!(e.entity[0].entity_name.as_deref(), Some(name));
        found.extend(e.values.iter().map(|v| format!("{}={}", v.key, v.value)));
    }
    found
}

//! Raw Kafka frames for tests that must see the broker's exact answer (encoded and decoded with
//! `kafka-protocol`, the way a client library would never show them).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

pub fn write_frame(stream: &mut TcpStream, body: &[u8]) {
    try_write_frame(stream, body).expect("write frame");
}

pub fn try_write_frame(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(i32::try_from(body.len()).expect("frame size"));
    frame.put_slice(body);
    stream.write_all(&frame)
}

pub fn encode_request<R: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &R,
) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("skein-test")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api_key.request_header_version(version))
        .expect("encode header");
    request.encode(&mut body, version).expect("encode request");
    body.to_vec()
}

/// Reads one response frame; None when the broker closed the connection.
pub fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    match try_read_frame(stream) {
        Ok(frame) => Some(frame),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => None,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => None,
        Err(e) => panic!("reading a response: {e}"),
    }
}

/// Reads one response frame; a closed connection is an `UnexpectedEof` or `ConnectionReset`.
pub fn try_read_frame(stream: &mut TcpStream) -> std::io::Result<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = usize::try_from(i32::from_be_bytes(size))
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, "negative response size"))?;
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body)?;
    Ok(Bytes::from(body))
}

pub fn roundtrip<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Resp {
    try_roundtrip(stream, api_key, version, correlation_id, request)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// [`roundtrip`] for a broker that may be gone or not answering: every failure is an `Err`
/// that says what went wrong.
pub fn try_roundtrip<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    request: &Req,
) -> Result<Resp, String> {
    try_write_frame(
        stream,
        &encode_request(api_key, version, correlation_id, request),
    )
    .map_err(|e| format!("write frame: {e}"))?;
    let mut body = match try_read_frame(stream) {
        Ok(body) => body,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            return Err("broker closed the connection instead of answering".into())
        }
        Err(e) => return Err(format!("reading a response: {e}")),
    };
    let header = ResponseHeader::decode(&mut body, api_key.response_header_version(version))
        .map_err(|e| format!("response header: {e}"))?;
    assert_eq!(header.correlation_id, correlation_id, "correlation id");
    Resp::decode(&mut body, version).map_err(|e| format!("response body: {e}"))
}

/// Reads one response to an `api_key` request of `version`: its correlation id and body.
pub fn read_response<Resp: Decodable>(
    stream: &mut TcpStream,
    api_key: ApiKey,
    version: i16,
) -> (i32, Resp) {
    let mut body = read_frame(stream).expect("the broker closed the connection");
    let header = ResponseHeader::decode(&mut body, api_key.response_header_version(version))
        .expect("response header");
    let response = Resp::decode(&mut body, version).expect("response body");
    (header.correlation_id, response)
}

/// One uncompressed RecordBatch v2 of keyless records with these values, stamped now, as a
/// plain (non-idempotent) producer sends it.
pub fn record_batch<V: AsRef<[u8]>>(values: &[V]) -> Bytes {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i64::try_from(i).expect("offset"),
            sequence: -1,
            timestamp: i64::try_from(now_ms).expect("timestamp"),
            key: None,
            value: Some(Bytes::copy_from_slice(value.as_ref())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode record batch");
    buf.freeze()
}

//! skein-net's error types: framing, request decoding, response encoding (per connection).

use kafka_protocol::messages::ApiKey;

use crate::request::{CorrelationId, RequestHeader};

/// Reading one length-prefixed frame failed; every variant means "close the connection".
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced size exceeds the limit (Kafka's `socket.request.max.bytes`).
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("negative frame size {size}")]
    NegativeSize { size: i32 },
    /// The peer closed the connection inside the 4-byte size prefix.
    #[error("connection closed {received} bytes into a frame's size prefix")]
    TruncatedPrefix { received: usize },
    /// The peer closed the connection before the whole frame arrived.
    #[error("connection closed {received} bytes into a {expected}-byte frame")]
    Truncated { expected: usize, received: usize },
    /// No memory for an answer's buffer ([`crate::frame::read_answer`]).
    #[error("no memory for a {size}-byte frame")]
    OutOfMemory { size: usize },
    #[error("i/o error while reading a frame: {0}")]
    Io(#[from] std::io::Error),
}

/// What is wrong with the bytes of a request header or body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{needed} bytes needed at byte {at}, past the end")]
    Truncated { at: usize, needed: usize },
    #[error("negative length {length} at byte {at}")]
    NegativeLength { at: usize, length: i32 },
    #[error("null in non-nullable field {field}")]
    UnexpectedNull { field: &'static str },
    #[error("array {field} declares {count} elements but only {remaining} bytes remain")]
    ArrayTooLong {
        field: &'static str,
        count: u64,
        remaining: usize,
    },
    #[error("tagged field {tag} is not valid in version {version}")]
    InvalidTag { tag: u32, version: i16 },
    #[error("tagged field {tag} declares {declared} bytes but its value takes {actual}")]
    TagSizeMismatch {
        tag: u32,
        declared: usize,
        actual: usize,
    },
    #[error("struct presence marker {marker} at byte {at} is neither -1 nor 1")]
    BadPresenceMarker { at: usize, marker: i8 },
    #[error("field {field} is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    /// `kafka-protocol` refused the body; its message.
    #[error("{0}")]
    Rejected(String),
}

/// A request frame could not be turned into a request.
///
/// The broker answers what it can: `UnsupportedVersion` of ApiVersions gets a v0
/// UNSUPPORTED_VERSION response (KIP-511); everything else closes the connection or, for a
/// `MalformedBody` of a known request, may get the API's error code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than api key + api version + correlation id.
    #[error("request frame of {len} bytes is shorter than a request header")]
    TruncatedHeader { len: usize },
    #[error("unknown api key {api_key} (version {api_version}, correlation id {correlation_id})")]
    UnknownApiKey {
        api_key: i16,
        api_version: i16,
        correlation_id: CorrelationId,
    },
    #[error("{api_key:?} v{api_version} is not supported (correlation id {correlation_id})")]
    UnsupportedVersion {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: CorrelationId,
    },
    /// The client id or the header's tagged fields are broken.
    #[error("malformed {api_key:?} v{api_version} request header: {reason}")]
    MalformedHeader {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: CorrelationId,
        reason: WireError,
    },
    #[error("malformed {:?} v{} request body: {reason}", header.api_key, header.api_version)]
    MalformedBody {
        header: RequestHeader,
        reason: WireError,
    },
}

impl DecodeError {
    /// The correlation id, when the header got that far.
    pub fn correlation_id(&self) -> Option<CorrelationId> {
        match self {
            DecodeError::TruncatedHeader { .. } => None,
            DecodeError::UnknownApiKey { correlation_id, .. }
            | DecodeError::UnsupportedVersion { correlation_id, .. }
            | DecodeError::MalformedHeader { correlation_id, .. } => Some(*correlation_id),
            DecodeError::MalformedBody { header, .. } => Some(header.correlation_id),
        }
    }
}

/// A response could not be encoded: a bug in the caller, never the client's doing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{api_key:?} v{api_version} is not supported")]
    UnsupportedVersion { api_key: ApiKey, api_version: i16 },
    #[error("the body is not a {api_key:?} response")]
    WrongBody { api_key: ApiKey },
    #[error("response frame of {size} bytes does not fit the 4-byte size prefix")]
    TooLarge { size: usize },
    /// A non-ignorable field holds a non-default value the version cannot carry.
    #[error("{field} is set but version {api_version} cannot carry it")]
    FieldNotInVersion {
        field: &'static str,
        api_version: i16,
    },
    /// `kafka-protocol` refused to encode the body; its message.
    #[error("{0}")]
    Rejected(String),
}

/// A response frame could not be turned into a response (client side).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResponseDecodeError {
    /// Shorter than the response header.
    #[error("response frame of {len} bytes is shorter than its header")]
    TruncatedHeader { len: usize },
    #[error("{api_key:?} v{api_version} responses are not supported")]
    UnsupportedVersion { api_key: ApiKey, api_version: i16 },
    #[error("malformed {api_key:?} response (correlation id {correlation_id}): {reason}")]
    Malformed {
        api_key: ApiKey,
        correlation_id: CorrelationId,
        reason: WireError,
    },
}

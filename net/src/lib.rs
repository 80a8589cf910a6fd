//! skein-net: the Kafka wire protocol, server and client side; pure codecs, usable on any shard.
//!
//! - [`read_frame`]: one length-prefixed frame off a connection, with a size limit;
//!   [`read_answer`] for the answer to a request of ours.
//! - [`decode_request`]: header + body into `kafka-protocol`'s `RequestKind`, never panicking.
//! - [`encode_response`]: a complete response frame from a `ResponseKind`.
//! - [`encode_fetch_response`]: Fetch framing around stored record bytes, without copying them.
//! - Client side, for the load generator: [`encode_request`], [`decode_response`],
//!   [`produce_request`] and [`RecordBatchBuilder`].
//! - [`internal`]: the internal RPC frames between brokers and controllers (flatbuffers).
//! - [`tls`]: TLS on any stream, for the listeners and the node's own connections.

pub mod client;
pub mod error;
pub mod fetch;
pub mod frame;
pub mod internal;
mod kinds;
pub mod limits;
pub mod record_batch;
pub mod request;
pub mod response;
mod schema;
#[cfg(test)]
mod testgen;
pub mod tls;
mod validate;

pub use client::{
    decodable_response_versions, decode_response, encode_request, produce_request, DecodedResponse,
};
pub use error::{DecodeError, EncodeError, FrameError, ResponseDecodeError, WireError};
pub use fetch::{
    encode_fetch_response, AbortedTransaction, EpochEndOffset, FetchPartitionDesc,
    FetchResponseDesc, FetchTopicDesc, LeaderIdAndEpoch, NodeEndpoint, SnapshotId, WirePart,
};
pub use frame::{read_answer, read_frame, write_flush};
pub use kinds::{request_api_key, response_api_key};
pub use record_batch::RecordBatchBuilder;
pub use request::{
    decodable_versions, decode_request, CorrelationId, DecodedRequest, RequestHeader,
};
pub use response::{encode_response, response_header_version};

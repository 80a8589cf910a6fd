//! Internal RPC frames between brokers and controllers (the `internal` listener): flatbuffers
//! tables from `net/schema/internal.fbs`, generated into [`generated`] by
//! `scripts/gen-flatbuffers.sh`, behind plain Rust types so no caller touches flatbuffers.
//!
//! A frame on the wire is the same 4-byte big-endian size prefix as a Kafka frame (read it with
//! [`crate::read_frame`]) followed by one `Frame` table. Decoding runs flatbuffers' verifier
//! first, with limits, so a hostile or corrupt frame is an error, never a panic or an
//! out-of-bounds read.

use bytes::{BufMut, Bytes, BytesMut};
use flatbuffers::{FlatBufferBuilder, VerifierOptions, WIPOffset};

// Generated code: its unwraps are of `Some(default)` and cannot fail.
#[allow(
    clippy::all,
    clippy::unwrap_used,
    clippy::pedantic,
    dead_code,
    unused_imports,
    non_camel_case_types,
    unsafe_op_in_unsafe_fn,
    mismatched_lifetime_syntaxes
)]
#[path = "internal/internal_generated.rs"]
mod generated;

use generated::skein::internal as fb;

/// A broker endpoint as the controller records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InternalMessage {
    /// A raft-rs message in its protobuf encoding.
    Raft(Bytes),
    RegisterBroker {
        broker_id: i32,
        incarnation: [u8; 16],
        endpoints: Vec<Endpoint>,
        rack: Option<String>,
    },
    RegisterBrokerResponse {
        error_code: i16,
        broker_epoch: i64,
    },
    Heartbeat {
        broker_id: i32,
        broker_epoch: i64,
        metadata_offset: i64,
        want_fence: bool,
        want_shutdown: bool,
    },
    HeartbeatResponse {
        error_code: i16,
        is_caught_up: bool,
        is_fenced: bool,
        should_shutdown: bool,
    },
    FetchMetadata {
        broker_id: i32,
        from_offset: i64,
        max_bytes: i32,
    },
    FetchMetadataResponse {
        error_code: i16,
        leader_id: i32,
        high_watermark: i64,
        records: Bytes,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InternalFrame {
    /// Matches a response to its request; 0 for one-way messages (Raft).
    pub correlation_id: u64,
    pub from_node: i32,
    pub message: InternalMessage,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InternalDecodeError {
    #[error("not an internal frame (file identifier missing)")]
    NotAFrame,
    #[error("malformed internal frame: {0}")]
    Malformed(String),
    #[error("internal frame without a message, or with one this node does not know")]
    UnknownMessage,
    #[error("incarnation is {0} bytes, not 16")]
    BadIncarnation(usize),
}

/// Verifier limits: generous for real frames (a few tables, one large byte vector), small
/// enough that a hostile frame cannot make verification expensive.
const VERIFIER_DEPTH_MAX: usize = 16;
const VERIFIER_TABLES_MAX: usize = 10_000;

/// Encodes `frame` with its 4-byte size prefix, ready to write.
pub fn encode_internal(frame: &InternalFrame) -> Bytes {
    let mut b = FlatBufferBuilder::with_capacity(128);
    let (message_type, message) = encode_message(&mut b, &frame.message);
    let root = fb::Frame::create(
        &mut b,
        &fb::FrameArgs {
            correlation_id: frame.correlation_id,
            from_node: frame.from_node,
            message_type,
            message: Some(message),
        },
    );
    fb::finish_frame_buffer(&mut b, root);
    let body = b.finished_data();
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
    out.put_slice(body);
    out.freeze()
}

fn encode_message<'b>(
    b: &mut FlatBufferBuilder<'b>,
    message: &InternalMessage,
) -> (fb::Message, WIPOffset<flatbuffers::UnionWIPOffset>) {
    match message {
        InternalMessage::Raft(payload) => {
            let payload = b.create_vector(payload);
            let t = fb::RaftMessage::create(
                b,
                &fb::RaftMessageArgs {
                    payload: Some(payload),
                },
            );
            (fb::Message::RaftMessage, t.as_union_value())
        }
        InternalMessage::RegisterBroker {
            broker_id,
            incarnation,
            endpoints,
            rack,
        } => {
            let incarnation = b.create_vector(incarnation);
            let endpoints: Vec<_> = endpoints
                .iter()
                .map(|e| {
                    let listener = b.create_string(&e.listener);
                    let host = b.create_string(&e.host);
                    fb::Endpoint::create(
                        b,
                        &fb::EndpointArgs {
                            listener: Some(listener),
                            host: Some(host),
                            port: e.port,
                        },
                    )
                })
                .collect();
            let endpoints = b.create_vector(&endpoints);
            let rack = rack.as_deref().map(|r| b.create_string(r));
            let t = fb::RegisterBrokerRequest::create(
                b,
                &fb::RegisterBrokerRequestArgs {
                    broker_id: *broker_id,
                    incarnation: Some(incarnation),
                    endpoints: Some(endpoints),
                    rack,
                },
            );
            (fb::Message::RegisterBrokerRequest, t.as_union_value())
        }
        InternalMessage::RegisterBrokerResponse {
            error_code,
            broker_epoch,
        } => {
            let t = fb::RegisterBrokerResponse::create(
                b,
                &fb::RegisterBrokerResponseArgs {
                    error_code: *error_code,
                    broker_epoch: *broker_epoch,
                },
            );
            (fb::Message::RegisterBrokerResponse, t.as_union_value())
        }
        InternalMessage::Heartbeat {
            broker_id,
            broker_epoch,
            metadata_offset,
            want_fence,
            want_shutdown,
        } => {
            let t = fb::BrokerHeartbeatRequest::create(
                b,
                &fb::BrokerHeartbeatRequestArgs {
                    broker_id: *broker_id,
                    broker_epoch: *broker_epoch,
                    metadata_offset: *metadata_offset,
                    want_fence: *want_fence,
                    want_shutdown: *want_shutdown,
                },
            );
            (fb::Message::BrokerHeartbeatRequest, t.as_union_value())
        }
        InternalMessage::HeartbeatResponse {
            error_code,
            is_caught_up,
            is_fenced,
            should_shutdown,
        } => {
            let t = fb::BrokerHeartbeatResponse::create(
                b,
                &fb::BrokerHeartbeatResponseArgs {
                    error_code: *error_code,
                    is_caught_up: *is_caught_up,
                    is_fenced: *is_fenced,
                    should_shutdown: *should_shutdown,
                },
            );
            (fb::Message::BrokerHeartbeatResponse, t.as_union_value())
        }
        InternalMessage::FetchMetadata {
            broker_id,
            from_offset,
            max_bytes,
        } => {
            let t = fb::FetchMetadataRequest::create(
                b,
                &fb::FetchMetadataRequestArgs {
                    broker_id: *broker_id,
                    from_offset: *from_offset,
                    max_bytes: *max_bytes,
                },
            );
            (fb::Message::FetchMetadataRequest, t.as_union_value())
        }
        InternalMessage::FetchMetadataResponse {
            error_code,
            leader_id,
            high_watermark,
            records,
        } => {
            let records = b.create_vector(records);
            let t = fb::FetchMetadataResponse::create(
                b,
                &fb::FetchMetadataResponseArgs {
                    error_code: *error_code,
                    leader_id: *leader_id,
                    high_watermark: *high_watermark,
                    records: Some(records),
                },
            );
            (fb::Message::FetchMetadataResponse, t.as_union_value())
        }
    }
}

/// Decodes one frame body (after the size prefix). Never panics.
pub fn decode_internal(body: &[u8]) -> Result<InternalFrame, InternalDecodeError> {
    // Root offset, then the 4-byte file identifier. Checked here: flatbuffers' own check
    // asserts (panics) on a buffer too short to hold it.
    if body.get(4..8) != Some(fb::FRAME_IDENTIFIER.as_bytes()) {
        return Err(InternalDecodeError::NotAFrame);
    }
    let opts = VerifierOptions {
        max_depth: VERIFIER_DEPTH_MAX,
        max_tables: VERIFIER_TABLES_MAX,
        ..VerifierOptions::default()
    };
    let frame = fb::root_as_frame_with_opts(&opts, body)
        .map_err(|e| InternalDecodeError::Malformed(e.to_string()))?;
    let bytes = |v: Option<flatbuffers::Vector<'_, u8>>| {
        v.map_or_else(Bytes::new, |v| Bytes::copy_from_slice(v.bytes()))
    };
    let message = match frame.message_type() {
        fb::Message::RaftMessage => {
            let m = frame
                .message_as_raft_message()
                .ok_or(InternalDecodeError::UnknownMessage)?;
            InternalMessage::Raft(bytes(m.payload()))
        }
        fb::Message::RegisterBrokerRequest => {
            let m = frame
                .message_as_register_broker_request()
                .ok_or(InternalDecodeError::UnknownMessage)?;
            let raw = m.incarnation().map_or(&[][..], |v| v.bytes());
            let incarnation: [u8; 16] = raw
                .try_into()
                .map_err(|_| InternalDecodeError::BadIncarnation(raw.len()))?;
            let endpoints = m
                .endpoints()
                .map(|es| {
                    es.iter()
                        .map(|e| Endpoint {
                            listener: e.listener().unwrap_or_default().to_string(),
                            host: e.host().unwrap_or_default().to_string(),
                            port: e.port(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            InternalMessage::RegisterBroker {
                broker_id: m.broker_id(),
                incarnation,
                endpoints,
                rack: m.rack().map(str::to_string),
            }
        }
        fb::Message::RegisterBrokerResponse => {
            let m = frame
                .message_as_register_broker_response()
                .ok_or(InternalDecodeError::UnknownMessage)?;
            InternalMessage::RegisterBrokerResponse {
                error_code: m.error_code(),
                broker_epoch: m.broker_epoch(),
            }
        }
        fb::Message::BrokerHeartbeatRequest => {
            let m = frame
                .message_as_broker_heartbeat_request()
                .ok_or(InternalDecodeError::UnknownMessage)?;
            InternalMessage::Heartbeat {
                broker_id: m.broker_id(),
                broker_epoch: m.broker_epoch(),
                metadata_offset: m.metadata_offset(),
                want_fence: m.want_fence(),
                want_shutdown: m.want_shutdown(),
            }
        }
        fb::Message::BrokerHeartbeatResponse => {
            let m = frame
                .message_as_broker_heartbeat_response()
                .ok_or(InternalDecodeError::UnknownMessage)?;
            InternalMessage::HeartbeatResponse {
                error_code: m.error_code(),
                is_caught_up: m.is_caught_up(),
                is_fenced: m.is_fenced(),
                should_shutdown: m.should_shutdown(),
            }
        }
        fb::Message::FetchMetadataRequest => {
            let m = frame
                .message_as_fetch_metadata_request()
                .ok_or(InternalDecodeError::UnknownMessage)?;
            InternalMessage::FetchMetadata {
                broker_id: m.broker_id(),
                from_offset: m.from_offset(),
                max_bytes: m.max_bytes(),
            }
        }
        fb::Message::FetchMetadataResponse => {
            let m = frame
                .message_as_fetch_metadata_response()
                .ok_or(InternalDecodeError::UnknownMessage)?;
            InternalMessage::FetchMetadataResponse {
                error_code: m.error_code(),
                leader_id: m.leader_id(),
                high_watermark: m.high_watermark(),
                records: bytes(m.records()),
            }
        }
        _ => return Err(InternalDecodeError::UnknownMessage),
    };
    Ok(InternalFrame {
        correlation_id: frame.correlation_id(),
        from_node: frame.from_node(),
        message,
    })
}

#[cfg(test)]
mod tests;

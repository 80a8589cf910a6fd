//! Response frames from `kafka-protocol` types; pure, per response, on the connection's shard.
//!
//! A frame is the 4-byte size, the response header (v0: correlation id; v1 adds an empty
//! tagged-field section) and the body. ApiVersions responses always use header v0 (KIP-511),
//! so a client that sent a version we do not know can still read the answer.
//!
//! Tagged fields that hold their default value are never written (old librdkafka misreads
//! them). `kafka-protocol` 0.18 already leaves them out; `tests` checks every response type
//! and version against the specs to keep it that way.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};

use crate::error::EncodeError;
use crate::kinds::response_api_key;
use crate::limits::{FRAME_BYTES_MAX, FRAME_SIZE_PREFIX_BYTES};
use crate::request::CorrelationId;

/// Response bodies start with this much room; the buffer grows past it as needed.
const RESPONSE_BUFFER_INITIAL_BYTES: usize = 256;

/// The response header version for `api_key` at `api_version`.
pub fn response_header_version(api_key: ApiKey, api_version: i16) -> i16 {
    match api_key {
        ApiKey::ApiVersions => 0,
        _ => api_key.response_header_version(api_version),
    }
}

/// Encodes a complete response frame: size prefix, response header, body.
pub fn encode_response(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: CorrelationId,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let versions = api_key.valid_versions();
    if api_version < versions.min || api_version > versions.max {
        return Err(EncodeError::UnsupportedVersion {
            api_key,
            api_version,
        });
    }
    if response_api_key(body) != Some(api_key) {
        return Err(EncodeError::WrongBody { api_key });
    }
    let mut buf = BytesMut::with_capacity(RESPONSE_BUFFER_INITIAL_BYTES);
    put_frame_start(&mut buf, api_key, api_version, correlation_id);
    body.encode(&mut buf, api_version)
        .map_err(|e| EncodeError::Rejected(format!("{e:#}")))?;
    finish_frame(&mut buf)?;
    Ok(buf.freeze())
}

/// Writes a size-prefix placeholder and the response header.
pub(crate) fn put_frame_start(
    buf: &mut BytesMut,
    api_key: ApiKey,
    api_version: i16,
    correlation_id: CorrelationId,
) {
    debug_assert!(buf.is_empty());
    buf.put_i32(0);
    buf.put_i32(correlation_id.0);
    if response_header_version(api_key, api_version) >= 1 {
        buf.put_u8(0); // no tagged fields
    }
}

/// Fills in the size prefix of a frame started with [`put_frame_start`].
pub(crate) fn finish_frame(buf: &mut BytesMut) -> Result<(), EncodeError> {
    let size = buf.len() - FRAME_SIZE_PREFIX_BYTES;
    put_frame_size(buf, size)
}

/// Writes `size` (the bytes after the prefix) into the first four bytes of `buf`.
pub(crate) fn put_frame_size(buf: &mut [u8], size: usize) -> Result<(), EncodeError> {
    if size > FRAME_BYTES_MAX {
        return Err(EncodeError::TooLarge { size });
    }
    let prefix = (size as i32).to_be_bytes();
    buf[..FRAME_SIZE_PREFIX_BYTES].copy_from_slice(&prefix);
    Ok(())
}

#[cfg(test)]
mod tests;

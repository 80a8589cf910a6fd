//! Request frames into `kafka-protocol` types; pure, per request, on the connection's shard.
//!
//! The header is parsed by hand (fallible reads only); the body is checked by
//! [`crate::validate`] and then decoded by `kafka-protocol` straight from the frame's `Bytes`,
//! so byte fields such as Produce records are slices of the frame, not copies.

use std::fmt;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestKind};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::error::{DecodeError, WireError};
use crate::limits::REQUEST_HEADER_FIXED_BYTES;
use crate::{schema, validate};

/// The client's tag for a request, echoed in the response (not an id of anything stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CorrelationId(pub i32);

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A parsed request header (any header version).
#[derive(Clone, Debug, PartialEq)]
pub struct RequestHeader {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: CorrelationId,
    /// Absent in header v0; `None` also when the client sent a null string.
    pub client_id: Option<StrBytes>,
}

/// One request: its header and its body.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedRequest {
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// The versions of `api_key` that [`decode_request`] accepts: those `kafka-protocol` decodes
/// and that the vendored specs describe as released, so that the body can be checked first.
/// The broker's ApiVersions table must stay inside these ranges.
pub fn decodable_versions(api_key: ApiKey) -> Option<VersionRange> {
    let spec = schema::request(api_key as i16)?.stable();
    let spec = VersionRange {
        min: spec.lo,
        max: spec.hi,
    };
    let both = api_key.valid_versions().intersect(&spec);
    (!both.is_empty()).then_some(both)
}

/// Decodes one request frame (the bytes after the size prefix). Never panics.
pub fn decode_request(frame: Bytes) -> Result<DecodedRequest, DecodeError> {
    let len = frame.len();
    let truncated = |_| DecodeError::TruncatedHeader { len };
    let mut buf = frame;
    let raw_api_key = buf.try_get_i16().map_err(truncated)?;
    let api_version = buf.try_get_i16().map_err(truncated)?;
    let correlation_id = CorrelationId(buf.try_get_i32().map_err(truncated)?);
    let Ok(api_key) = ApiKey::try_from(raw_api_key) else {
        return Err(DecodeError::UnknownApiKey {
            api_key: raw_api_key,
            api_version,
            correlation_id,
        });
    };
    let supported =
        decodable_versions(api_key).is_some_and(|r| r.min <= api_version && api_version <= r.max);
    if !supported {
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            api_version,
            correlation_id,
        });
    }
    let header_version = api_key.request_header_version(api_version);
    let client_id =
        header_rest(&mut buf, header_version).map_err(|reason| DecodeError::MalformedHeader {
            api_key,
            api_version,
            correlation_id,
            reason,
        })?;
    let header = RequestHeader {
        api_key,
        api_version,
        correlation_id,
        client_id,
    };
    decode_body(header, buf)
}

fn decode_body(header: RequestHeader, mut body: Bytes) -> Result<DecodedRequest, DecodeError> {
    let Some(spec) = schema::request(header.api_key as i16) else {
        // decodable_versions() found the spec a moment ago.
        return Err(DecodeError::UnsupportedVersion {
            api_key: header.api_key,
            api_version: header.api_version,
            correlation_id: header.correlation_id,
        });
    };
    if let Err(reason) = validate::check_body(spec, header.api_version, &body) {
        return Err(DecodeError::MalformedBody { header, reason });
    }
    match RequestKind::decode(header.api_key, &mut body, header.api_version) {
        Ok(decoded) => Ok(DecodedRequest {
            header,
            body: decoded,
        }),
        Err(e) => Err(DecodeError::MalformedBody {
            header,
            reason: WireError::Rejected(format!("{e:#}")),
        }),
    }
}

/// Client id (header v1+) and tagged fields (header v2+), after the fixed part.
fn header_rest(buf: &mut Bytes, header_version: i16) -> Result<Option<StrBytes>, WireError> {
    let mut r = HeaderReader {
        buf,
        at: REQUEST_HEADER_FIXED_BYTES,
    };
    let mut client_id = None;
    if header_version >= 1 {
        let at = r.at;
        let length = i16::from_be_bytes([r.u8()?, r.u8()?]);
        if length < -1 {
            return Err(WireError::NegativeLength {
                at,
                length: i32::from(length),
            });
        }
        if length >= 0 {
            let bytes = r.take(length as usize)?;
            let id = StrBytes::from_utf8(bytes)
                .map_err(|_| WireError::InvalidUtf8 { field: "client_id" })?;
            client_id = Some(id);
        }
    }
    if header_version >= 2 {
        r.skip_tagged_fields()?;
    }
    Ok(client_id)
}

/// Fallible reads off the front of a header, tracking the frame position for errors.
pub(crate) struct HeaderReader<'a> {
    pub(crate) buf: &'a mut Bytes,
    /// Where `buf` starts in its frame.
    pub(crate) at: usize,
}

impl HeaderReader<'_> {
    /// Skips a tagged-field section (headers define no tags that skein-net reads).
    pub(crate) fn skip_tagged_fields(&mut self) -> Result<(), WireError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            let _tag = self.uvarint()?;
            let size = self.uvarint()?;
            self.take(size as usize)?;
        }
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        let b = self.buf.try_get_u8().map_err(|_| WireError::Truncated {
            at: self.at,
            needed: 1,
        })?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<Bytes, WireError> {
        if n > self.buf.remaining() {
            return Err(WireError::Truncated {
                at: self.at,
                needed: n,
            });
        }
        self.at += n;
        Ok(self.buf.split_to(n))
    }

    /// An unsigned varint as `kafka-protocol` reads it: at most 5 bytes, bits past 32 dropped.
    fn uvarint(&mut self) -> Result<u32, WireError> {
        let mut value = 0u32;
        for i in 0..5u32 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7f).wrapping_shl(i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests;

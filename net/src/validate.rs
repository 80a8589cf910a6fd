//! Wire-shape check of a request body before `kafka-protocol` decodes it; pure, per request.
//!
//! `kafka-protocol` 0.18 sizes every array with `Vec::with_capacity(count)` straight from the
//! wire, before it reads one element. A 20-byte request that declares 2^31 elements asks the
//! allocator for hundreds of GB, and a refused allocation aborts the process (an abort, not a
//! panic: nothing can catch it). This walk follows the same grammar over the bytes, using the
//! message specs in [`crate::schema`], and refuses any array whose elements cannot fit in the
//! bytes left, so the decoder never sees such a count. Every element takes at least its minimum
//! wire size, so a valid request always passes.
//!
//! The walk parses exactly as `kafka-protocol` does wherever it accepts, so both agree on where
//! every count sits; where the two differ, the walk is stricter: it checks tagged-field sizes
//! (the decoder ignores them) and struct presence markers other than -1 and 1.

use crate::error::WireError;
use crate::schema::{Field, Kind, Message};

/// Sees the raw bytes of every tagged field the walk meets (tests check encoders with it).
pub(crate) trait TagVisitor {
    fn tagged(&mut self, field: &'static Field, payload: &[u8]);
}

/// The visitor of the production path: ignores everything.
pub(crate) struct NoVisit;

impl TagVisitor for NoVisit {
    fn tagged(&mut self, _field: &'static Field, _payload: &[u8]) {}
}

/// Checks `body` against `message` at `version`; returns how many bytes the message takes.
pub(crate) fn check_body(message: &Message, version: i16, body: &[u8]) -> Result<usize, WireError> {
    walk(message, version, body, &mut NoVisit)
}

pub(crate) fn walk<V: TagVisitor>(
    message: &Message,
    version: i16,
    body: &[u8],
    visitor: &mut V,
) -> Result<usize, WireError> {
    let flexible = message.flexible.contains(version);
    let mut walker = Walker {
        buf: body,
        pos: 0,
        version,
        flexible,
        visitor,
    };
    walker.fields(message.fields)?;
    Ok(walker.pos)
}

/// Fewest bytes one value of `kind` can take at `version` (arrays and strings empty, no tags).
pub(crate) fn min_wire_bytes(kind: Kind, version: i16, flexible: bool) -> usize {
    match kind {
        Kind::Bool | Kind::I8 => 1,
        Kind::I16 | Kind::U16 => 2,
        Kind::I32 | Kind::U32 => 4,
        Kind::I64 | Kind::F64 => 8,
        Kind::Uuid => 16,
        Kind::Str if flexible => 1,
        Kind::Str => 2,
        Kind::Bytes | Kind::Records if flexible => 1,
        Kind::Bytes | Kind::Records => 4,
        Kind::Struct(fields) => {
            let own: usize = fields
                .iter()
                .filter(|f| f.tag.is_none() && f.versions.contains(version))
                .map(|f| match f.array {
                    true if flexible => 1,
                    true => 4,
                    false => min_wire_bytes(f.kind, version, flexible),
                })
                .sum();
            own + usize::from(flexible)
        }
    }
}

struct Walker<'a, 'v, V> {
    buf: &'a [u8],
    pos: usize,
    version: i16,
    flexible: bool,
    visitor: &'v mut V,
}

enum Length {
    Null,
    Some(usize),
}

impl<V: TagVisitor> Walker<'_, '_, V> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        if n > self.remaining() {
            return Err(WireError::Truncated {
                at: self.pos,
                needed: n,
            });
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..self.pos])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// `kafka-protocol`'s unsigned varint: at most 5 bytes, bits past 32 dropped.
    fn uvarint(&mut self) -> Result<u32, WireError> {
        let mut value = 0u32;
        for i in 0..5u32 {
            let [b] = self.array::<1>()?;
            value |= u32::from(b & 0x7f).wrapping_shl(i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// A length prefix: compact (`n + 1`, 0 = null) in flexible versions, else `i16`/`i32`.
    fn length(&mut self, wide: bool) -> Result<Length, WireError> {
        let at = self.pos;
        let length = if self.flexible {
            match self.uvarint()? {
                0 => return Ok(Length::Null),
                n => i64::from(n) - 1,
            }
        } else if wide {
            i64::from(i32::from_be_bytes(self.array()?))
        } else {
            i64::from(i16::from_be_bytes(self.array()?))
        };
        match length {
            -1 => Ok(Length::Null),
            n if n < 0 => Err(WireError::NegativeLength {
                at,
                length: n as i32,
            }),
            n => Ok(Length::Some(n as usize)),
        }
    }

    fn fields(&mut self, fields: &'static [Field]) -> Result<(), WireError> {
        for field in fields {
            if field.tag.is_none() && field.versions.contains(self.version) {
                self.value(field)?;
            }
        }
        if self.flexible {
            self.tagged_fields(fields)?;
        }
        Ok(())
    }

    fn tagged_fields(&mut self, fields: &'static [Field]) -> Result<(), WireError> {
        let count = self.uvarint()?;
        for _ in 0..count {
            let tag = self.uvarint()?;
            let declared = self.uvarint()? as usize;
            let Some(field) = fields.iter().find(|f| f.tag == Some(tag)) else {
                self.take(declared)?;
                continue;
            };
            if !field.versions.contains(self.version) {
                return Err(WireError::InvalidTag {
                    tag,
                    version: self.version,
                });
            }
            let start = self.pos;
            self.value(field)?;
            let actual = self.pos - start;
            if actual != declared {
                return Err(WireError::TagSizeMismatch {
                    tag,
                    declared,
                    actual,
                });
            }
            self.visitor.tagged(field, &self.buf[start..self.pos]);
        }
        Ok(())
    }

    fn value(&mut self, field: &'static Field) -> Result<(), WireError> {
        let nullable = field.nullable.contains(self.version);
        if !field.array {
            return self.single(field, nullable);
        }
        let count = match self.length(true)? {
            Length::Null if nullable => return Ok(()),
            Length::Null => return Err(WireError::UnexpectedNull { field: field.name }),
            Length::Some(count) => count,
        };
        let element_bytes = min_wire_bytes(field.kind, self.version, self.flexible).max(1);
        let remaining = self.remaining();
        if count > remaining / element_bytes {
            return Err(WireError::ArrayTooLong {
                field: field.name,
                count: count as u64,
                remaining,
            });
        }
        for _ in 0..count {
            self.single(field, false)?;
        }
        Ok(())
    }

    fn single(&mut self, field: &'static Field, nullable: bool) -> Result<(), WireError> {
        let fixed = match field.kind {
            Kind::Bool | Kind::I8 => 1,
            Kind::I16 | Kind::U16 => 2,
            Kind::I32 | Kind::U32 => 4,
            Kind::I64 | Kind::F64 => 8,
            Kind::Uuid => 16,
            Kind::Str | Kind::Bytes | Kind::Records => {
                let wide = !matches!(field.kind, Kind::Str);
                return match self.length(wide)? {
                    Length::Null if nullable => Ok(()),
                    Length::Null => Err(WireError::UnexpectedNull { field: field.name }),
                    Length::Some(n) => self.take(n).map(drop),
                };
            }
            Kind::Struct(fields) => {
                if nullable {
                    let at = self.pos;
                    match i8::from_be_bytes(self.array()?) {
                        -1 => return Ok(()),
                        1 => {}
                        marker => return Err(WireError::BadPresenceMarker { at, marker }),
                    }
                }
                return self.fields(fields);
            }
        };
        self.take(fixed).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;

    #[test]
    fn every_array_element_takes_at_least_one_byte() {
        fn visit(fields: &'static [Field], version: i16, flexible: bool, path: &str) {
            for f in fields.iter().filter(|f| f.versions.contains(version)) {
                let here = format!("{path}.{}", f.name);
                if f.array {
                    assert!(
                        min_wire_bytes(f.kind, version, flexible) >= 1,
                        "{here} v{version}"
                    );
                }
                if let Kind::Struct(inner) = f.kind {
                    visit(inner, version, flexible, &here);
                }
            }
        }
        for m in schema::all_requests() {
            for version in m.valid.lo..=m.valid.hi {
                visit(m.fields, version, m.flexible.contains(version), m.name);
            }
        }
    }

    #[test]
    fn huge_array_counts_are_refused_before_any_element() {
        // Metadata v4: topics array (i32 count) then allow_auto_topic_creation.
        let metadata = schema::request(3).unwrap();
        let body = [0x7f, 0xff, 0xff, 0xff, 0x00, 0x01];
        let err = check_body(metadata, 4, &body).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::ArrayTooLong {
                    count: 0x7fff_ffff,
                    ..
                }
            ),
            "{err}"
        );
        // Metadata v12 (flexible): compact count u32::MAX - 1 elements.
        let body = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let err = check_body(metadata, 12, &body).unwrap_err();
        assert!(matches!(err, WireError::ArrayTooLong { .. }), "{err}");
    }

    #[test]
    fn tagged_size_must_match_the_value() {
        // Fetch v12 has tag 0 = ClusterId (compact nullable string) at the top level.
        let fetch = schema::request(1).unwrap();
        let mut good = Vec::new();
        good.extend((-1i32).to_be_bytes()); // replica_id
        good.extend(500i32.to_be_bytes()); // max_wait_ms
        good.extend(1i32.to_be_bytes()); // min_bytes
        good.extend(1024i32.to_be_bytes()); // max_bytes
        good.push(0); // isolation_level
        good.extend(0i32.to_be_bytes()); // session_id
        good.extend((-1i32).to_be_bytes()); // session_epoch
        good.push(1); // topics: empty compact array
        good.push(1); // forgotten_topics_data: empty
        good.push(1); // rack_id: ""
        let mut tagged = good.clone();
        tagged.extend([1, 0, 3, 3, b'i', b'd']); // one tag: 0, size 3, "id"
        assert_eq!(check_body(fetch, 12, &tagged), Ok(tagged.len()));
        let mut lying = good.clone();
        lying.extend([1, 0, 4, 3, b'i', b'd', 0]);
        let err = check_body(fetch, 12, &lying).unwrap_err();
        assert!(matches!(
            err,
            WireError::TagSizeMismatch {
                declared: 4,
                actual: 3,
                ..
            }
        ));
    }
}

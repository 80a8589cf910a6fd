//! Test-only: random, valid Kafka messages of any API and version, generated from the specs.
//!
//! The bytes come from [`crate::schema`], independently of `kafka-protocol`; decoding them with
//! `kafka-protocol` checks that the two agree on every wire shape the tests rely on.

use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseKind};
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::request::decodable_versions;
use crate::schema::{self, Dflt, Field, Kind, Message};

/// splitmix64: small, seedable, good enough to pick shapes.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(crate) fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// What the generator may put into tagged-field sections.
#[derive(Clone, Copy)]
pub(crate) struct TagPolicy {
    /// Known tagged fields may carry their default value (encoders must then drop them).
    pub(crate) defaults: bool,
    /// Unknown tags (numbered from 1000, after every known one) may appear.
    pub(crate) unknown: bool,
}

pub(crate) struct Generator {
    pub(crate) rng: Rng,
    version: i16,
    flexible: bool,
    tags: TagPolicy,
    out: Vec<u8>,
}

/// A random valid body of `message` at `version`.
pub(crate) fn body(message: &Message, version: i16, seed: u64, tags: TagPolicy) -> Vec<u8> {
    let flexible = message.flexible.contains(version);
    let mut g = Generator {
        rng: Rng::new(seed),
        version,
        flexible,
        tags,
        out: Vec::new(),
    };
    g.fields(message.fields);
    g.out
}

/// The encoding of `field`'s default value at `version` (used inside tagged sections).
pub(crate) fn default_bytes(field: &Field, version: i16, flexible: bool) -> Vec<u8> {
    let tags = TagPolicy {
        defaults: false,
        unknown: false,
    };
    let mut g = Generator {
        rng: Rng::new(0),
        version,
        flexible,
        tags,
        out: Vec::new(),
    };
    g.default_value(field);
    g.out
}

impl Generator {
    fn fields(&mut self, fields: &'static [Field]) {
        for field in fields {
            if field.tag.is_none() && field.versions.contains(self.version) {
                self.value(field);
            }
        }
        if self.flexible {
            self.tagged_fields(fields);
        }
    }

    fn tagged_fields(&mut self, fields: &'static [Field]) {
        let mut known: Vec<&'static Field> = fields
            .iter()
            .filter(|f| f.tag.is_some() && f.versions.contains(self.version))
            .collect();
        known.sort_by_key(|f| f.tag);
        let mut entries: Vec<(u32, Vec<u8>)> = Vec::new();
        for field in known {
            if self.rng.one_in(2) {
                continue;
            }
            let default = default_bytes(field, self.version, self.flexible);
            let value = if self.tags.defaults && self.rng.one_in(3) {
                Some(default)
            } else {
                (0..8)
                    .map(|_| self.sub_value(field))
                    .find(|v| *v != default)
            };
            if let (Some(tag), Some(value)) = (field.tag, value) {
                entries.push((tag, value));
            }
        }
        if self.tags.unknown && self.rng.one_in(4) {
            let len = self.rng.below(4) as usize;
            entries.push((1000 + self.rng.below(10) as u32, self.random_bytes(len)));
        }
        put_uvarint(&mut self.out, entries.len() as u32);
        for (tag, value) in entries {
            put_uvarint(&mut self.out, tag);
            put_uvarint(&mut self.out, value.len() as u32);
            self.out.extend(value);
        }
    }

    /// Generates one value of `field` into a buffer of its own.
    fn sub_value(&mut self, field: &'static Field) -> Vec<u8> {
        let outer = std::mem::take(&mut self.out);
        self.value(field);
        std::mem::replace(&mut self.out, outer)
    }

    fn value(&mut self, field: &'static Field) {
        let nullable = field.nullable.contains(self.version);
        if nullable && self.rng.one_in(6) {
            return self.null(field);
        }
        if field.array {
            let count = self.rng.below(3) as usize;
            self.len(count, true);
            for _ in 0..count {
                self.single(field.kind, false);
            }
        } else {
            self.single(field.kind, nullable);
        }
    }

    fn null(&mut self, field: &Field) {
        match (field.kind, field.array) {
            (Kind::Struct(_), false) => self.out.push(0xff),
            _ if self.flexible => self.out.push(0),
            (Kind::Str, false) => self.out.extend((-1i16).to_be_bytes()),
            _ => self.out.extend((-1i32).to_be_bytes()),
        }
    }

    fn len(&mut self, len: usize, wide: bool) {
        if self.flexible {
            put_uvarint(&mut self.out, len as u32 + 1);
        } else if wide {
            self.out.extend((len as i32).to_be_bytes());
        } else {
            self.out.extend((len as i16).to_be_bytes());
        }
    }

    fn single(&mut self, kind: Kind, nullable: bool) {
        let r = self.rng.next();
        match kind {
            Kind::Bool => self.out.push((r & 1) as u8),
            Kind::I8 => self.out.push(r as u8),
            Kind::I16 | Kind::U16 => self.out.extend((r as u16).to_be_bytes()),
            Kind::I32 | Kind::U32 => self.out.extend((r as u32).to_be_bytes()),
            Kind::I64 => self.out.extend(r.to_be_bytes()),
            Kind::F64 => self.out.extend(((r % 1000) as f64 / 8.0).to_be_bytes()),
            Kind::Uuid => {
                self.out.extend(r.to_be_bytes());
                self.out.extend(self.rng.next().to_be_bytes());
            }
            Kind::Str => {
                let len = (r % 9) as usize;
                self.len(len, false);
                for _ in 0..len {
                    self.out.push(b'a' + self.rng.below(26) as u8);
                }
            }
            Kind::Bytes | Kind::Records => {
                let len = (r % 17) as usize;
                self.len(len, true);
                let bytes = self.random_bytes(len);
                self.out.extend(bytes);
            }
            Kind::Struct(fields) => {
                if nullable {
                    self.out.push(1);
                }
                self.fields(fields);
            }
        }
    }

    fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.rng.next() as u8).collect()
    }

    fn default_value(&mut self, field: &Field) {
        match field.dflt {
            Dflt::Null => return self.null(field),
            _ if field.array => return self.len(0, true),
            Dflt::Int(value) => return self.int(field.kind, value),
            Dflt::Bool(value) => return self.out.push(u8::from(value)),
            Dflt::Str(s) => {
                self.len(s.len(), false);
                return self.out.extend(s.as_bytes());
            }
            Dflt::Zero => {}
        }
        match field.kind {
            Kind::Str => self.len(0, false),
            Kind::Bytes | Kind::Records => self.len(0, true),
            Kind::Uuid => self.out.extend([0u8; 16]),
            Kind::F64 => self.out.extend(0f64.to_be_bytes()),
            Kind::Struct(fields) => {
                if field.nullable.contains(self.version) {
                    self.out.push(1);
                }
                for f in fields {
                    if f.tag.is_none() && f.versions.contains(self.version) {
                        self.default_value(f);
                    }
                }
                if self.flexible {
                    self.out.push(0);
                }
            }
            kind => self.int(kind, 0),
        }
    }

    fn int(&mut self, kind: Kind, value: i64) {
        match kind {
            Kind::Bool | Kind::I8 => self.out.push(value as u8),
            Kind::I16 | Kind::U16 => self.out.extend((value as u16).to_be_bytes()),
            Kind::I32 | Kind::U32 => self.out.extend((value as u32).to_be_bytes()),
            _ => self.out.extend(value.to_be_bytes()),
        }
    }
}

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Every (api key, version) that `decode_request` accepts.
pub(crate) fn decodable_pairs() -> Vec<(ApiKey, i16)> {
    let mut pairs = Vec::new();
    for key in ApiKey::iter() {
        if let Some(range) = decodable_versions(key) {
            pairs.extend((range.min..=range.max).map(|v| (key, v)));
        }
    }
    pairs
}

/// A full request frame body (header + random valid body) for `key` at `version`.
pub(crate) fn request_frame(key: ApiKey, version: i16, seed: u64) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(seed as i32)
        .with_client_id(Some(StrBytes::from_static_str("skein-test")));
    let mut out = bytes::BytesMut::new();
    let header_version = key.request_header_version(version);
    header
        .encode(&mut out, header_version)
        .expect("header encodes");
    let spec = schema::request(key as i16).expect("decodable implies a spec");
    out.extend(body(
        spec,
        version,
        seed,
        TagPolicy {
            defaults: true,
            unknown: true,
        },
    ));
    out.to_vec()
}

/// The response spec of `key`, if vendored.
pub(crate) fn response_spec(key: ApiKey) -> Option<&'static Message> {
    schema::response(key as i16)
}

/// Some valid response of `key` (decoded from generated bytes), if the spec is vendored and
/// `kafka-protocol` agrees with it at its lowest version.
pub(crate) fn some_response(key: ApiKey) -> Option<ResponseKind> {
    let spec = response_spec(key)?;
    let version = key.valid_versions().min.max(spec.valid.lo);
    let tags = TagPolicy {
        defaults: false,
        unknown: false,
    };
    let mut bytes = bytes::Bytes::from(body(spec, version, 1, tags));
    ResponseKind::decode(key, &mut bytes, version).ok()
}

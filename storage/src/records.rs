//! Records inside a v2 batch: parsing and re-encoding for the log cleaner (pure, any shard).
//!
//! Record layout (varints are zigzag-encoded, as in Kafka): length varint | attributes i8 |
//! timestampDelta varlong | offsetDelta varint | keyLength varint | key | valueLength varint |
//! value | headerCount varint | (headerKeyLength varint | key | headerValueLength varint |
//! value)*. A null key or value has length -1. Producers' bytes are untrusted: every read is
//! checked, and a malformed record set parses as `None` instead of panicking.

/// One record, borrowed from the batch's (decompressed) record bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    /// The whole record, its length prefix included.
    pub raw: &'a [u8],
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    /// `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    attributes: u8,
    /// Everything after the timestamp delta (offset delta to the end of the headers).
    after_timestamp: &'a [u8],
}

impl Record<'_> {
    /// False for a tombstone.
    pub fn has_value(&self) -> bool {
        self.value.is_some()
    }

    /// Appends this record to `out` with another timestamp delta, all other bytes unchanged
    /// (a batch whose base timestamp moves to a delete horizon keeps its records' timestamps).
    pub fn encode_with_timestamp_delta(&self, timestamp_delta: i64, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(self.raw.len() + 10);
        body.push(self.attributes);
        put_varlong(&mut body, timestamp_delta);
        body.extend_from_slice(self.after_timestamp);
        put_varlong(out, body.len() as i64);
        out.extend_from_slice(&body);
    }
}

/// Parses exactly `count` records that fill `buf` exactly; `None` if the bytes are anything
/// else (the cleaner then keeps the batch as it is).
pub(crate) fn parse_records(buf: &[u8], count: i32) -> Option<Vec<Record<'_>>> {
    let count = usize::try_from(count).ok()?;
    // Every record takes at least 7 bytes, so a lying count cannot make us allocate much.
    let mut records = Vec::with_capacity(count.min(buf.len() / 7 + 1));
    let mut at = 0usize;
    for _ in 0..count {
        let start = at;
        let len = usize::try_from(read_varint(buf, &mut at)?).ok()?;
        let end = at.checked_add(len)?;
        let body = buf.get(at..end)?;
        records.push(parse_body(body, buf.get(start..end)?)?);
        at = end;
    }
    (at == buf.len()).then_some(records)
}

fn parse_body<'a>(body: &'a [u8], raw: &'a [u8]) -> Option<Record<'a>> {
    let attributes = *body.first()?;
    let mut p = 1;
    let timestamp_delta = read_varlong(body, &mut p)?;
    let after_timestamp = body.get(p..)?;
    let offset_delta = read_varint(body, &mut p)?;
    let key = read_bytes(body, &mut p)?;
    let value = read_bytes(body, &mut p)?;
    let headers = read_varint(body, &mut p)?;
    if headers < 0 {
        return None;
    }
    for _ in 0..headers {
        // A header key is never null; a header value may be.
        read_bytes(body, &mut p)??;
        read_bytes(body, &mut p)?;
    }
    if p != body.len() || offset_delta < 0 {
        return None;
    }
    Some(Record {
        raw,
        timestamp_delta,
        offset_delta,
        key,
        value,
        attributes,
        after_timestamp,
    })
}

/// A length-prefixed byte string: `Some(None)` for null (-1), `None` if malformed.
fn read_bytes<'a>(buf: &'a [u8], at: &mut usize) -> Option<Option<&'a [u8]>> {
    let len = read_varint(buf, at)?;
    if len == -1 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    let end = at.checked_add(len)?;
    let bytes = buf.get(*at..end)?;
    *at = end;
    Some(Some(bytes))
}

fn read_varlong(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(*at)?;
        *at += 1;
        z |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((z >> 1) as i64 ^ -((z & 1) as i64));
        }
    }
    None
}

fn read_varint(buf: &[u8], at: &mut usize) -> Option<i32> {
    i32::try_from(read_varlong(buf, at)?).ok()
}

pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Encodes one record (test helper; the broker's producers send real ones).
#[cfg(test)]
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    let mut body = vec![0u8];
    put_varlong(&mut body, timestamp_delta);
    put_varlong(&mut body, i64::from(offset_delta));
    for field in [key, value] {
        match field {
            Some(b) => {
                put_varlong(&mut body, b.len() as i64);
                body.extend_from_slice(b);
            }
            None => put_varlong(&mut body, -1),
        }
    }
    put_varlong(&mut body, 1); // one header, so parsing covers them
    put_varlong(&mut body, 1);
    body.push(b'h');
    put_varlong(&mut body, -1);
    put_varlong(out, body.len() as i64);
    out.extend_from_slice(&body);
}

/// A record's (key, value) for `keyed_batch`; `None` is null.
#[cfg(test)]
pub(crate) type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds a v2 batch of keyed records at consecutive offsets from `base_offset` (test helper).
/// `None` values are tombstones; `compression` is applied to the records.
#[cfg(test)]
pub(crate) fn keyed_batch(
    base_offset: i64,
    base_timestamp: i64,
    records: &[KeyValue<'_>],
    compression: crate::batch::Compression,
    producer_id: i64,
) -> Vec<u8> {
    use crate::batch::{encode_batch, RecordBatchHeader, MAGIC_V2};
    let mut body = Vec::new();
    for (i, (k, v)) in records.iter().enumerate() {
        encode_record(&mut body, i as i64, i as i32, *k, *v);
    }
    let codec_bits = match compression {
        crate::batch::Compression::None => 0,
        crate::batch::Compression::Gzip => 1,
        crate::batch::Compression::Snappy => 2,
        crate::batch::Compression::Lz4 => 3,
        crate::batch::Compression::Zstd => 4,
        crate::batch::Compression::Unknown(c) => i16::from(c),
    };
    let payload = crate::compression::compress(compression, &body).unwrap_or(body);
    let n = records.len() as i32;
    let header = RecordBatchHeader {
        base_offset,
        batch_length: 0,
        partition_leader_epoch: 0,
        magic: MAGIC_V2,
        crc: 0,
        attributes: codec_bits,
        last_offset_delta: n - 1,
        base_timestamp,
        max_timestamp: base_timestamp + i64::from(n) - 1,
        producer_id,
        producer_epoch: if producer_id >= 0 { 0 } else { -1 },
        base_sequence: if producer_id >= 0 { 0 } else { -1 },
        record_count: n,
    };
    encode_batch(&header, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_parse_back_with_keys_values_and_tombstones() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 0, 0, Some(b"k1"), Some(b"v1"));
        encode_record(&mut buf, 5, 1, Some(b"k2"), None);
        encode_record(&mut buf, -3, 2, None, Some(b""));
        let r = parse_records(&buf, 3).unwrap();
        assert_eq!(r[0].key, Some(&b"k1"[..]));
        assert_eq!(r[0].value, Some(&b"v1"[..]));
        assert_eq!((r[1].key, r[1].has_value()), (Some(&b"k2"[..]), false));
        assert_eq!((r[2].key, r[2].value), (None, Some(&b""[..])));
        assert_eq!(
            (r[2].timestamp_delta, r[2].offset_delta),
            (-3, 2),
            "negative deltas are zigzag-encoded"
        );
        assert_eq!(r.iter().map(|x| x.raw.len()).sum::<usize>(), buf.len());
        assert!(parse_records(&buf, 2).is_none(), "bytes left over");
        assert!(parse_records(&buf, 4).is_none(), "too few bytes");
        assert!(parse_records(&buf[..buf.len() - 1], 3).is_none());
    }

    #[test]
    fn reencoding_changes_only_the_timestamp_delta() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, 3, Some(b"key"), Some(b"value"));
        let r = parse_records(&buf, 1).unwrap()[0];
        let mut same = Vec::new();
        r.encode_with_timestamp_delta(7, &mut same);
        assert_eq!(same, buf);
        let mut moved = Vec::new();
        r.encode_with_timestamp_delta(-1_000_000_000, &mut moved);
        let m = parse_records(&moved, 1).unwrap()[0];
        assert_eq!(m.timestamp_delta, -1_000_000_000);
        assert_eq!((m.offset_delta, m.key, m.value), (3, r.key, r.value));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), n in -2i32..5) {
            let _ = parse_records(&bytes, n);
        }

        #[test]
        fn varlongs_round_trip(v in any::<i64>()) {
            let mut buf = Vec::new();
            put_varlong(&mut buf, v);
            let mut at = 0;
            prop_assert_eq!(read_varlong(&buf, &mut at), Some(v));
            prop_assert_eq!(at, buf.len());
        }
    }
}

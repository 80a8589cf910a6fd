//! Record-level reading of RecordBatch v2, beyond the header and CRC checks of the storage
//! engine: validation of produced batches (every record must parse, offset deltas must run
//! 0..count, a compressed batch must decompress to exactly the records it claims) and the exact
//! record a timestamp lookup lands on. Runs on the partition's owning shard.

use bytes::Bytes;
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::error::ResponseError;

/// Size of the RecordBatch v2 header; records start right after it.
const BATCH_HEADER_BYTES: usize = 61;
const ATTRIBUTES_AT: usize = 21;
const RECORD_COUNT_AT: usize = 57;
const LENGTH_AT: usize = 8;
/// Size of the base offset and batch length fields, which the batch length does not count.
const LOG_OVERHEAD_BYTES: usize = 12;

/// Checks the records inside each batch of an already header- and CRC-validated `records` field.
pub fn check_records(records: &Bytes) -> Result<(), ResponseError> {
    for_each_batch(records, check_batch)
}

fn for_each_batch(
    records: &Bytes,
    mut f: impl FnMut(&Bytes) -> Result<(), ResponseError>,
) -> Result<(), ResponseError> {
    let mut pos = 0usize;
    while pos < records.len() {
        let batch_len = read_i32(records, pos + LENGTH_AT).ok_or(ResponseError::CorruptMessage)?;
        let total = usize::try_from(batch_len)
            .ok()
            .and_then(|l| l.checked_add(LOG_OVERHEAD_BYTES))
            .ok_or(ResponseError::CorruptMessage)?;
        let end = pos
            .checked_add(total)
            .ok_or(ResponseError::CorruptMessage)?;
        if total < BATCH_HEADER_BYTES || end > records.len() {
            return Err(ResponseError::CorruptMessage);
        }
        f(&records.slice(pos..end))?;
        pos = end;
    }
    Ok(())
}

fn check_batch(batch: &Bytes) -> Result<(), ResponseError> {
    with_records(batch, |data, count| walk_records(data, count, |_| true))
}

/// Indexes (counted across all batches of `records`) of records with a null key, which a
/// compacted topic refuses.
pub fn keyless_record_indexes(records: &Bytes) -> Result<Vec<i32>, ResponseError> {
    let mut out = Vec::new();
    let mut index: i32 = 0;
    for_each_batch(records, |batch| {
        with_records(batch, |data, count| {
            walk_records(data, count, |r| {
                if r.key_is_null {
                    out.push(index);
                }
                index = index.saturating_add(1);
                true
            })
        })
    })?;
    Ok(out)
}

/// What the record walk reports of each record.
struct RecordInfo<'a> {
    offset_delta: i64,
    timestamp_delta: i64,
    key_is_null: bool,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

/// Calls `f(key, value)` for every record of the stored batches in `records` (whole batches,
/// as a log read returns them).
pub fn for_each_record(
    records: &Bytes,
    mut f: impl FnMut(Option<&[u8]>, Option<&[u8]>),
) -> Result<(), ResponseError> {
    for_each_batch(records, |batch| {
        with_records(batch, |data, count| {
            walk_records(data, count, |r| {
                f(r.key, r.value);
                true
            })
        })
    })
}

/// Runs `f` over the (decompressed) records section of one batch and its record count.
fn with_records(
    batch: &Bytes,
    f: impl FnOnce(&[u8], usize) -> Result<(), &'static str>,
) -> Result<(), ResponseError> {
    let attributes = read_i16(batch, ATTRIBUTES_AT).ok_or(ResponseError::CorruptMessage)?;
    let count = read_i32(batch, RECORD_COUNT_AT).ok_or(ResponseError::CorruptMessage)?;
    let count = usize::try_from(count).map_err(|_| ResponseError::InvalidRecord)?;
    let mut body = batch.slice(BATCH_HEADER_BYTES.min(batch.len())..);
    let walk =
        |buf: &mut Bytes| -> anyhow::Result<()> { f(buf, count).map_err(|m| anyhow::anyhow!(m)) };
    let result = match attributes & 0x07 {
        0 => walk(&mut body),
        1 => Gzip::decompress(&mut body, walk),
        2 => Snappy::decompress(&mut body, walk),
        3 => Lz4::decompress(&mut body, walk),
        4 => Zstd::decompress(&mut body, walk),
        _ => return Err(ResponseError::UnsupportedCompressionType),
    };
    result.map_err(|_| ResponseError::CorruptMessage)
}

/// The first record of `batch` (a stored batch, offsets stamped) whose timestamp is at or after
/// `target_ms`: ListOffsets answers with that record, not its batch.
pub fn first_record_at_or_after(batch: &Bytes, target_ms: i64) -> Option<(i64, i64)> {
    let base_offset = i64::from_be_bytes(batch.get(0..8)?.try_into().ok()?);
    let base_ts = i64::from_be_bytes(batch.get(27..35)?.try_into().ok()?);
    let mut found = None;
    with_records(batch, |data, count| {
        walk_records(data, count, |r| {
            let ts = base_ts.saturating_add(r.timestamp_delta);
            if ts >= target_ms {
                found = Some((base_offset + r.offset_delta, ts));
                return false;
            }
            true
        })
    })
    .ok()?;
    found
}

/// Walks `count` v2 records; every length must fit and the offset deltas must be 0, 1, 2, ...
/// `visit` returning false stops the walk early.
fn walk_records(
    data: &[u8],
    count: usize,
    mut visit: impl FnMut(&RecordInfo<'_>) -> bool,
) -> Result<(), &'static str> {
    let mut pos = 0usize;
    for expected_delta in 0..count {
        let len = read_varint(data, &mut pos)?;
        let len = usize::try_from(len).map_err(|_| "negative record length")?;
        let end = pos
            .checked_add(len)
            .filter(|e| *e <= data.len())
            .ok_or("record overruns batch")?;
        let rec = &data[pos..end];
        let mut p = 1usize; // attributes
        if rec.is_empty() {
            return Err("empty record");
        }
        let timestamp_delta = read_varint(rec, &mut p)?;
        let offset_delta = read_varint(rec, &mut p)?;
        if offset_delta != expected_delta as i64 {
            return Err("offset deltas are not consecutive");
        }
        let key_at = p;
        let key_is_null = skip_bytes(rec, &mut p)?;
        let key = field(rec, key_at, p);
        let value_at = p;
        skip_bytes(rec, &mut p)?;
        let value = field(rec, value_at, p);
        let headers = read_varint(rec, &mut p)?;
        if headers < 0 {
            return Err("negative header count");
        }
        for _ in 0..headers {
            let key_len = read_varint(rec, &mut p)?;
            if key_len < 0 {
                return Err("null header key");
            }
            advance(rec, &mut p, key_len)?;
            skip_bytes(rec, &mut p)?;
        }
        if p != rec.len() {
            return Err("record length does not match its fields");
        }
        let info = RecordInfo {
            offset_delta,
            timestamp_delta,
            key_is_null,
            key,
            value,
        };
        if !visit(&info) {
            return Ok(());
        }
        pos = end;
    }
    if pos != data.len() {
        return Err("bytes after the last record");
    }
    Ok(())
}

/// The bytes of a varint-length-prefixed field spanning `from..to` (None if null).
fn field(rec: &[u8], from: usize, to: usize) -> Option<&[u8]> {
    let mut p = from;
    let len = read_varint(rec, &mut p).ok()?;
    if len < 0 {
        return None;
    }
    rec.get(p..to)
}

/// Skips a varint-length-prefixed byte field; true when it was null (length -1).
fn skip_bytes(rec: &[u8], p: &mut usize) -> Result<bool, &'static str> {
    let len = read_varint(rec, p)?;
    if len < -1 {
        return Err("invalid length");
    }
    if len > 0 {
        advance(rec, p, len)?;
    }
    Ok(len == -1)
}

fn advance(rec: &[u8], p: &mut usize, len: i64) -> Result<(), &'static str> {
    let len = usize::try_from(len).map_err(|_| "invalid length")?;
    *p = p
        .checked_add(len)
        .filter(|e| *e <= rec.len())
        .ok_or("field overruns record")?;
    Ok(())
}

/// Zig-zag varint (up to 64 bits), as Kafka's record fields use.
fn read_varint(data: &[u8], pos: &mut usize) -> Result<i64, &'static str> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err("varint too long")
}

fn read_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read_i16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn batch(compression: Compression, n: i64) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                delete_horizon: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: -1,
                timestamp: 1000 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(vec![b'v'; 100])),
                headers: [(
                    StrBytes::from_static_str("h"),
                    Some(Bytes::from_static(b"x")),
                )]
                .into_iter()
                .collect(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn accepts_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            check_records(&batch(c, 10)).unwrap_or_else(|e| panic!("{c:?}: {e:?}"));
        }
    }

    #[test]
    fn refuses_wrong_count_and_garbage() {
        let mut b = bytes::BytesMut::from(&batch(Compression::None, 3)[..]);
        b[RECORD_COUNT_AT + 3] = 4;
        assert!(check_records(&b.freeze()).is_err());
        let mut g = bytes::BytesMut::from(&batch(Compression::Gzip, 3)[..]);
        let last = g.len() - 5;
        g[last] ^= 0xff;
        g[BATCH_HEADER_BYTES + 2] ^= 0xff;
        assert!(check_records(&g.freeze()).is_err());
    }
}

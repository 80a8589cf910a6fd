//! Hot-path Kafka framing for the load generator; pure, one instance per connection.
//!
//! Produce requests are pre-built once per connection ([`ProduceTemplate`]); each send patches
//! the correlation id and, when latency travels in the records, the record timestamps and the
//! batch CRC. Responses are parsed in place from the connection's read buffer, without the
//! allocations of a full decode: Produce v8 ([`parse_produce_response`]) and Fetch v11
//! ([`parse_fetch_response`]). Both versions are non-flexible, so every field has a fixed form.
//! Unit tests hold these against `skein-net`'s generic encoder and the broker's Fetch framer.

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;

/// Produce version we frame by hand: the newest before flexible encoding (v9).
pub const PRODUCE_VERSION: i16 = 8;
/// Fetch version we parse by hand: the newest before flexible encoding (v12).
pub const FETCH_VERSION: i16 = 11;
pub const PRODUCE_API_KEY: i16 = 0;

/// Byte offset of the correlation id in a request frame: size i32, api key i16, version i16.
const CORRELATION_ID_AT: usize = 8;

/// RecordBatch v2 field offsets (from the start of the batch).
pub mod batch_layout {
    pub const BASE_OFFSET_AT: usize = 0;
    pub const LENGTH_AT: usize = 8;
    pub const CRC_AT: usize = 17;
    pub const ATTRIBUTES_AT: usize = 21;
    pub const LAST_OFFSET_DELTA_AT: usize = 23;
    pub const BASE_TIMESTAMP_AT: usize = 27;
    pub const MAX_TIMESTAMP_AT: usize = 35;
    pub const RECORD_COUNT_AT: usize = 57;
    pub const HEADER_BYTES: usize = 61;
    /// Base offset and length: the bytes the batch length does not count.
    pub const LOG_OVERHEAD_BYTES: usize = 12;
    pub const COMPRESSION_MASK: i16 = 0x07;
}
use batch_layout::*;

/// Where a batch sits inside a pre-built request frame, and where its records' values start.
#[derive(Clone, Debug)]
pub struct BatchSlot {
    pub at: usize,
    pub len: usize,
    /// Frame offsets of each record's value (only recorded for uncompressed batches).
    pub value_at: Vec<usize>,
}

/// A complete Produce v8 request frame for one topic, one batch per partition, ready to send.
#[derive(Clone, Debug)]
pub struct ProduceTemplate {
    frame: Vec<u8>,
    slots: Vec<BatchSlot>,
    records: u64,
    payload_bytes: u64,
}

impl ProduceTemplate {
    /// Frames `batches` (`(partition, RecordBatch v2)`) exactly as `skein_net::encode_request`
    /// would, remembering where each batch and record value lies.
    pub fn new(
        client_id: &str,
        topic: &str,
        acks: i16,
        timeout_ms: i32,
        batches: &[(i32, Bytes)],
    ) -> Result<Self> {
        let mut f =
            Vec::with_capacity(64 + batches.iter().map(|(_, b)| b.len() + 8).sum::<usize>());
        f.extend_from_slice(&[0; 4]); // size, below
        f.extend_from_slice(&PRODUCE_API_KEY.to_be_bytes());
        f.extend_from_slice(&PRODUCE_VERSION.to_be_bytes());
        f.extend_from_slice(&0i32.to_be_bytes()); // correlation id, patched per send
        put_string(&mut f, client_id)?;
        f.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
        f.extend_from_slice(&acks.to_be_bytes());
        f.extend_from_slice(&timeout_ms.to_be_bytes());
        f.extend_from_slice(&1i32.to_be_bytes()); // one topic
        put_string(&mut f, topic)?;
        f.extend_from_slice(&i32::try_from(batches.len())?.to_be_bytes());
        let mut slots = Vec::with_capacity(batches.len());
        let (mut records, mut payload_bytes) = (0u64, 0u64);
        for (partition, batch) in batches {
            f.extend_from_slice(&partition.to_be_bytes());
            f.extend_from_slice(&i32::try_from(batch.len())?.to_be_bytes());
            let at = f.len();
            f.extend_from_slice(batch);
            let info = walk_batch(batch).context("pre-built batch")?;
            records += u64::from(info.record_count);
            payload_bytes += info.value_bytes;
            slots.push(BatchSlot {
                at,
                len: batch.len(),
                value_at: info.value_at.iter().map(|v| at + v).collect(),
            });
        }
        let size = i32::try_from(f.len() - 4)?;
        f[..4].copy_from_slice(&size.to_be_bytes());
        Ok(ProduceTemplate {
            frame: f,
            slots,
            records,
            payload_bytes,
        })
    }

    pub fn frame(&self) -> &[u8] {
        &self.frame
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes of record values in the request: messages × message size.
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    #[cfg(test)]
    pub fn slots(&self) -> &[BatchSlot] {
        &self.slots
    }

    pub fn set_correlation_id(&mut self, id: i32) {
        self.frame[CORRELATION_ID_AT..CORRELATION_ID_AT + 4].copy_from_slice(&id.to_be_bytes());
    }

    /// Writes each record's due time (ns on [`crate::clock`], `time_ns(batch, record)`) into the
    /// first 8 bytes of its value, the batch timestamps (ms), and recomputes each batch's
    /// CRC-32C. Values shorter than 8 bytes were refused when the options were checked.
    pub fn stamp(&mut self, base_timestamp_ms: i64, mut time_ns: impl FnMut(usize, usize) -> u64) {
        for (b, slot) in self.slots.iter().enumerate() {
            let batch = &mut self.frame[slot.at..slot.at + slot.len];
            batch[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8]
                .copy_from_slice(&base_timestamp_ms.to_be_bytes());
            batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8]
                .copy_from_slice(&base_timestamp_ms.to_be_bytes());
            for (r, &v) in slot.value_at.iter().enumerate() {
                self.frame[v..v + 8].copy_from_slice(&time_ns(b, r).to_be_bytes());
            }
            let batch = &mut self.frame[slot.at..slot.at + slot.len];
            let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
            batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        }
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) -> Result<()> {
    out.extend_from_slice(
        &i16::try_from(s.len())
            .context("string too long")?
            .to_be_bytes(),
    );
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// What [`walk_batch`] found in one complete uncompressed or compressed batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchInfo {
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub record_count: u32,
    pub compressed: bool,
    pub size_bytes: usize,
    /// Sum of record value lengths (uncompressed batches only; 0 otherwise).
    pub value_bytes: u64,
    /// Offsets of record values from the batch start (uncompressed batches only).
    pub value_at: Vec<usize>,
}

/// Reads a batch header only; `value_bytes` and `value_at` stay empty.
pub fn batch_header(batch: &[u8]) -> Result<BatchInfo> {
    ensure!(
        batch.len() >= HEADER_BYTES,
        "batch of {} bytes",
        batch.len()
    );
    let attributes = be_i16(batch, ATTRIBUTES_AT)?;
    let count = be_i32(batch, RECORD_COUNT_AT)?;
    Ok(BatchInfo {
        base_offset: be_i64(batch, BASE_OFFSET_AT)?,
        last_offset_delta: be_i32(batch, LAST_OFFSET_DELTA_AT)?,
        record_count: u32::try_from(count).context("negative record count")?,
        compressed: attributes & COMPRESSION_MASK != 0,
        size_bytes: batch.len(),
        value_bytes: 0,
        value_at: Vec::new(),
    })
}

/// Reads a batch header and, when uncompressed, walks its records. `batch` is exactly one batch.
pub fn walk_batch(batch: &[u8]) -> Result<BatchInfo> {
    let mut info = batch_header(batch)?;
    if info.compressed {
        return Ok(info);
    }
    for_each_value(&batch[HEADER_BYTES..], info.record_count, |at, len| {
        info.value_at.push(HEADER_BYTES + at);
        info.value_bytes += len as u64;
    })?;
    Ok(info)
}

/// Calls `f(offset, len)` for each record value in the uncompressed `records` area (null values
/// are skipped). Errors on a malformed record.
pub fn for_each_value(records: &[u8], count: u32, mut f: impl FnMut(usize, usize)) -> Result<()> {
    let mut pos = 0usize;
    for i in 0..count {
        let len = usize::try_from(varint(records, &mut pos)?).context("record length")?;
        let end = pos.checked_add(len).filter(|&e| e <= records.len());
        let end = end.with_context(|| format!("record {i} runs past the batch"))?;
        pos += 1; // attributes
        varint(records, &mut pos)?; // timestamp delta
        varint(records, &mut pos)?; // offset delta
        let key_len = varint(records, &mut pos)?;
        if key_len > 0 {
            pos += usize::try_from(key_len)?;
        }
        let value_len = varint(records, &mut pos)?;
        if value_len >= 0 {
            let value_len = usize::try_from(value_len)?;
            ensure!(
                pos + value_len <= end,
                "record {i}: value runs past the record"
            );
            f(pos, value_len);
        }
        pos = end;
    }
    ensure!(
        pos == records.len(),
        "{} bytes after the last record",
        records.len() - pos
    );
    Ok(())
}

/// Zigzag varint, as Kafka encodes record fields.
fn varint(buf: &[u8], pos: &mut usize) -> Result<i64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos).context("varint runs past the buffer")?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    bail!("varint longer than 10 bytes")
}

fn be_i16(b: &[u8], at: usize) -> Result<i16> {
    Ok(i16::from_be_bytes(fixed(b, at)?))
}
fn be_i32(b: &[u8], at: usize) -> Result<i32> {
    Ok(i32::from_be_bytes(fixed(b, at)?))
}
fn be_i64(b: &[u8], at: usize) -> Result<i64> {
    Ok(i64::from_be_bytes(fixed(b, at)?))
}
fn fixed<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N]> {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .with_context(|| format!("{N} bytes at {at} past the end of {} bytes", b.len()))
}

/// A cursor over a response frame; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn i16(&mut self) -> Result<i16> {
        let v = be_i16(self.buf, self.pos)?;
        self.pos += 2;
        Ok(v)
    }
    fn i32(&mut self) -> Result<i32> {
        let v = be_i32(self.buf, self.pos)?;
        self.pos += 4;
        Ok(v)
    }
    fn i64(&mut self) -> Result<i64> {
        let v = be_i64(self.buf, self.pos)?;
        self.pos += 8;
        Ok(v)
    }
    fn skip(&mut self, n: usize) -> Result<()> {
        ensure!(self.pos + n <= self.buf.len(), "skip {n} past the end");
        self.pos += n;
        Ok(())
    }
    /// A (nullable) string or bytes with an i16 or i32 length; `None` when null.
    fn bytes16(&mut self) -> Result<Option<&'a [u8]>> {
        let len = self.i16()?;
        self.take(i64::from(len))
    }
    fn bytes32(&mut self) -> Result<Option<&'a [u8]>> {
        let len = self.i32()?;
        self.take(i64::from(len))
    }
    fn take(&mut self, len: i64) -> Result<Option<&'a [u8]>> {
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len)?;
        let s = self
            .buf
            .get(self.pos..self.pos + len)
            .context("field past the end")?;
        self.pos += len;
        Ok(Some(s))
    }
    fn count(&mut self) -> Result<usize> {
        let n = self.i32()?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// One partition of a Produce response.
#[derive(Clone, Debug, PartialEq)]
pub struct ProducePartitionResult {
    pub partition: i32,
    pub error_code: i16,
    pub base_offset: i64,
}

/// Parses a Produce v8 response frame (after the size prefix): correlation id and partitions.
pub fn parse_produce_response(frame: &[u8], out: &mut Vec<ProducePartitionResult>) -> Result<i32> {
    out.clear();
    let mut r = Reader { buf: frame, pos: 0 };
    let correlation_id = r.i32()?;
    for _ in 0..r.count()? {
        r.bytes16()?; // topic name
        for _ in 0..r.count()? {
            let partition = r.i32()?;
            let error_code = r.i16()?;
            let base_offset = r.i64()?;
            r.skip(16)?; // log append time, log start offset
            for _ in 0..r.count()? {
                r.skip(4)?; // batch index
                r.bytes16()?; // message
            }
            r.bytes16()?; // error message
            out.push(ProducePartitionResult {
                partition,
                error_code,
                base_offset,
            });
        }
    }
    r.skip(4)?; // throttle time
    ensure!(
        r.pos == frame.len(),
        "{} bytes after the Produce response",
        frame.len() - r.pos
    );
    Ok(correlation_id)
}

/// One partition of a Fetch response, its records borrowed from the frame.
#[derive(Debug, PartialEq)]
pub struct FetchPartition<'a> {
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: &'a [u8],
}

/// Parses a Fetch v11 response frame (after the size prefix), calling `f` for each partition.
/// Returns the correlation id and the top-level error code.
pub fn parse_fetch_response<'a>(
    frame: &'a [u8],
    mut f: impl FnMut(FetchPartition<'a>) -> Result<()>,
) -> Result<(i32, i16)> {
    let mut r = Reader { buf: frame, pos: 0 };
    let correlation_id = r.i32()?;
    r.skip(4)?; // throttle time
    let error_code = r.i16()?;
    r.skip(4)?; // session id
    for _ in 0..r.count()? {
        r.bytes16()?; // topic name
        for _ in 0..r.count()? {
            let partition = r.i32()?;
            let error_code = r.i16()?;
            let high_watermark = r.i64()?;
            r.skip(8)?; // last stable offset
            let log_start_offset = r.i64()?;
            let aborted = r.i32()?;
            if aborted > 0 {
                r.skip(16 * usize::try_from(aborted)?)?;
            }
            r.skip(4)?; // preferred read replica
            let records = r.bytes32()?.unwrap_or(&[]);
            f(FetchPartition {
                partition,
                error_code,
                high_watermark,
                log_start_offset,
                records,
            })?;
        }
    }
    ensure!(
        r.pos == frame.len(),
        "{} bytes after the Fetch response",
        frame.len() - r.pos
    );
    Ok((correlation_id, error_code))
}

/// Splits a Fetch partition's records into complete batches; a batch cut short at the end (the
/// broker may send a partial last batch when max bytes runs out) is left out.
pub fn complete_batches(records: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let rest = &records[pos.min(records.len())..];
        let len = be_i32(rest, LENGTH_AT).ok()?;
        let total = usize::try_from(len).ok()?.checked_add(LOG_OVERHEAD_BYTES)?;
        if total < HEADER_BYTES || total > rest.len() {
            return None;
        }
        pos += total;
        Some(&rest[..total])
    })
}

#[cfg(test)]
mod tests;

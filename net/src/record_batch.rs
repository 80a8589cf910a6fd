//! RecordBatch v2 built by hand for producers (the load generator); pure, per batch.
//!
//! Uncompressed batches only. Layout (all big-endian; varints zigzag-encoded):
//! base offset i64, batch length i32, partition leader epoch i32, magic i8 = 2, CRC-32C u32 of
//! everything after it, attributes i16, last offset delta i32, base timestamp i64, max timestamp
//! i64, producer id i64, producer epoch i16, base sequence i32, record count i32, records.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of a RecordBatch v2 header, up to and including the record count.
pub const RECORD_BATCH_HEADER_BYTES: usize = 61;
/// Offset of the attributes field: the CRC-32C covers everything from here on.
const CRC_START: usize = 21;
const CRC_AT: usize = 17;
const BATCH_LENGTH_AT: usize = 8;
/// Bytes before the batch-length field's end: base offset + batch length.
const LOG_OVERHEAD_BYTES: usize = 12;

/// Accumulates records, then writes one uncompressed RecordBatch v2.
#[derive(Clone, Debug)]
pub struct RecordBatchBuilder {
    base_timestamp_ms: i64,
    max_timestamp_ms: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: i32,
    records: BytesMut,
    scratch: Vec<u8>,
}

impl RecordBatchBuilder {
    /// A batch whose record timestamps are stored relative to `base_timestamp_ms`.
    pub fn new(base_timestamp_ms: i64) -> Self {
        RecordBatchBuilder {
            base_timestamp_ms,
            max_timestamp_ms: base_timestamp_ms,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: 0,
            records: BytesMut::new(),
            scratch: Vec::new(),
        }
    }

    /// Marks the batch as sent by an idempotent producer.
    pub fn with_producer(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    /// Appends a record; `headers` are (key, value) pairs.
    pub fn push(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        let body = &mut self.scratch;
        body.clear();
        body.push(0); // record attributes
        put_varlong(body, timestamp_ms.wrapping_sub(self.base_timestamp_ms));
        put_varlong(body, i64::from(self.record_count)); // offset delta
        put_nullable(body, key);
        put_nullable(body, value);
        put_varlong(body, headers.len() as i64);
        for (name, value) in headers {
            put_nullable(body, Some(name.as_bytes()));
            put_nullable(body, *value);
        }
        let mut length = Vec::with_capacity(5);
        put_varlong(&mut length, body.len() as i64);
        self.records.put_slice(&length);
        self.records.put_slice(body);
        self.record_count += 1;
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
    }

    /// The finished batch (base offset 0; the broker assigns offsets).
    pub fn build(self) -> Bytes {
        let mut out = BytesMut::with_capacity(RECORD_BATCH_HEADER_BYTES + self.records.len());
        out.put_i64(0); // base offset
        out.put_i32(0); // batch length, below
        out.put_i32(-1); // partition leader epoch: set by the leader
        out.put_i8(2); // magic
        out.put_u32(0); // CRC-32C, below
        out.put_i16(0); // attributes: no compression, create time, not transactional
        out.put_i32(self.record_count - 1); // last offset delta
        out.put_i64(self.base_timestamp_ms);
        out.put_i64(self.max_timestamp_ms);
        out.put_i64(self.producer_id);
        out.put_i16(self.producer_epoch);
        out.put_i32(self.base_sequence);
        out.put_i32(self.record_count);
        debug_assert_eq!(out.len(), RECORD_BATCH_HEADER_BYTES);
        out.put_slice(&self.records);
        let batch_length = (out.len() - LOG_OVERHEAD_BYTES) as i32;
        out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
        let crc = crc32c::crc32c(&out[CRC_START..]);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Zigzag varint (Kafka's varint and varlong share this form).
fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut z = ((value << 1) ^ (value >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::{Compression, RecordBatchDecoder, TimestampType};

    use super::*;

    #[test]
    fn kafka_protocol_reads_what_we_build() {
        let mut builder = RecordBatchBuilder::new(1_700_000_000_000).with_producer(77, 3, 1000);
        let big = vec![0x42u8; 300];
        builder.push(1_700_000_000_000, Some(b"k1"), Some(b"v1"), &[]);
        builder.push(
            1_700_000_000_900,
            None,
            Some(&big),
            &[("h", Some(b"x")), ("n", None)],
        );
        builder.push(1_699_999_999_000, Some(b""), None, &[]);
        assert_eq!(builder.record_count(), 3);
        let batch = builder.build();
        let mut buf = batch.clone();
        let set = RecordBatchDecoder::decode(&mut buf).unwrap(); // checks the CRC-32C
        assert_eq!(buf.len(), 0);
        assert_eq!(set.version, 2);
        assert_eq!(set.compression, Compression::None);
        let r = &set.records;
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].offset, r[1].offset, r[2].offset), (0, 1, 2));
        assert_eq!((r[0].sequence, r[2].sequence), (1000, 1002));
        assert_eq!((r[0].producer_id, r[0].producer_epoch), (77, 3));
        assert_eq!(r[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r[1].key, None);
        assert_eq!(r[1].value.as_deref(), Some(&big[..]));
        assert_eq!(r[2].value, None);
        assert_eq!(r[1].timestamp, 1_700_000_000_900);
        assert_eq!(r[2].timestamp, 1_699_999_999_000);
        assert_eq!(r[1].timestamp_type, TimestampType::Creation);
        assert_eq!(r[1].headers.len(), 2);
        assert_eq!(r[1].headers.get(&b"n"[..]), Some(&None));
        // Header fields the decoder skips.
        let length = i32::from_be_bytes(batch[8..12].try_into().unwrap()) as usize;
        assert_eq!(length + LOG_OVERHEAD_BYTES, batch.len());
        assert_eq!(
            i64::from_be_bytes(batch[35..43].try_into().unwrap()),
            1_700_000_000_900
        );
        assert_eq!(i32::from_be_bytes(batch[23..27].try_into().unwrap()), 2);
    }

    #[test]
    fn golden_single_record_batch() {
        let mut builder = RecordBatchBuilder::new(0);
        builder.push(0, None, Some(b"a"), &[]);
        let batch = builder.build();
        let record = [14, 0, 0, 0, 1, 2, b'a', 0]; // length 7, attrs, ts, offset, key -1, value "a"
        assert_eq!(&batch[RECORD_BATCH_HEADER_BYTES..], &record[..]);
        assert_eq!(batch.len(), RECORD_BATCH_HEADER_BYTES + record.len());
        assert_eq!(batch[16], 2);
        let crc = u32::from_be_bytes(batch[17..21].try_into().unwrap());
        assert_eq!(crc, crc32c::crc32c(&batch[21..]));
    }
}

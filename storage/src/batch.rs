//! Kafka RecordBatch v2 (magic 2): header parsing, validation and offset stamping.
//!
//! Pure functions over byte slices, usable on any shard: the broker validates produce input here
//! before it routes it, and the log validates again on append and on recovery (assert in pairs).
//! Layout (big-endian): baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 |
//! crc u32 | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
//! producerId i64 | producerEpoch i16 | baseSequence i32 | recordCount i32 | records...
//! The CRC-32C covers attributes..end, so base offset and leader epoch can be stamped freely.

use crate::error::{CorruptKind, Result, StorageError};
use crate::limits::BATCH_BYTES_MAX;

/// Bytes of the v2 batch header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// baseOffset + batchLength: the part of the frame not counted by `batch_length`.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only supported magic.
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

/// Attribute bit 6 (KIP-534): `base_timestamp` holds the batch's delete horizon.
pub(crate) const DELETE_HORIZON_FLAG: i16 = 0x40;
/// Attribute bits 0..=2: the compression codec.
pub(crate) const COMPRESSION_MASK: i16 = 0x07;

const _: () = assert!(RECORD_COUNT_AT + 4 == BATCH_HEADER_BYTES);
const _: () = assert!(CRC_AT + 4 == ATTRIBUTES_AT);

/// Compression codec from the low 3 attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// A codec id Kafka does not define (6, 7); kept byte for byte, never decoded here.
    Unknown(u8),
}

/// Timestamp type from attribute bit 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// A parsed v2 batch header (the first 61 bytes of a batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordBatchHeader {
    pub base_offset: i64,
    /// Bytes after the batch_length field: the whole batch is `LOG_OVERHEAD_BYTES + batch_length`.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl RecordBatchHeader {
    /// Parses the header fields without checking anything but the slice length.
    /// `buf` must hold at least `BATCH_HEADER_BYTES`; otherwise `TruncatedBatch` at position 0.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        if buf.len() < BATCH_HEADER_BYTES {
            return Err(StorageError::TruncatedBatch {
                position: 0,
                needed_bytes: BATCH_HEADER_BYTES,
                available_bytes: buf.len(),
            });
        }
        Ok(RecordBatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_AT),
            batch_length: be_i32(buf, BATCH_LENGTH_AT),
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_AT),
            magic: buf[MAGIC_AT] as i8,
            crc: be_i32(buf, CRC_AT) as u32,
            attributes: be_i16(buf, ATTRIBUTES_AT),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_AT),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_AT),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_AT),
            producer_id: be_i64(buf, PRODUCER_ID_AT),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_AT),
            base_sequence: be_i32(buf, BASE_SEQUENCE_AT),
            record_count: be_i32(buf, RECORD_COUNT_AT),
        })
    }

    /// Whole batch size in bytes, frame included (only meaningful after validation).
    pub fn size_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length.max(0) as usize
    }

    /// Last offset in the batch, inclusive.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn compression(&self) -> Compression {
        match (self.attributes & 0x07) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & 0x08 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// True for batches of an idempotent (or transactional) producer (Kafka: producerId > -1).
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// The delete horizon the log cleaner set (KIP-534), if any.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_FLAG != 0).then_some(self.base_timestamp)
    }
}

/// Encodes a v2 batch from `header` and its (possibly compressed) `records` bytes: every field
/// is taken from `header` except `batch_length` and `crc`, which are computed (the cleaner's
/// rewrite; the only place a CRC-32C is computed rather than checked, outside tests).
pub(crate) fn encode_batch(header: &RecordBatchHeader, records: &[u8]) -> Vec<u8> {
    let batch_length = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES + records.len()) as i32;
    let mut b = Vec::with_capacity(BATCH_HEADER_BYTES + records.len());
    b.extend_from_slice(&header.base_offset.to_be_bytes());
    b.extend_from_slice(&batch_length.to_be_bytes());
    b.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    b.extend_from_slice(&header.attributes.to_be_bytes());
    b.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    b.extend_from_slice(&header.base_timestamp.to_be_bytes());
    b.extend_from_slice(&header.max_timestamp.to_be_bytes());
    b.extend_from_slice(&header.producer_id.to_be_bytes());
    b.extend_from_slice(&header.producer_epoch.to_be_bytes());
    b.extend_from_slice(&header.base_sequence.to_be_bytes());
    b.extend_from_slice(&header.record_count.to_be_bytes());
    b.extend_from_slice(records);
    assert_eq!(b.len(), LOG_OVERHEAD_BYTES + batch_length as usize);
    let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// What `validate_batches` learnt about a run of concatenated batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchesSummary {
    pub batch_count: u32,
    /// Sum of `record_count` over the batches.
    pub record_count: i64,
    /// Total bytes (equals the input length on success).
    pub size_bytes: usize,
    /// Largest single batch in bytes (checked against `max_message_bytes`).
    pub largest_batch_bytes: usize,
    /// Base offset of the first batch and last offset of the last batch, as found in the input.
    pub first_offset: i64,
    pub last_offset: i64,
    /// Sum of `last_offset_delta + 1`: how many offsets the batches take.
    pub offset_count: i64,
    /// Largest `max_timestamp` over the batches (-1 if all are -1).
    pub max_timestamp: i64,
    /// Timestamp of the first batch (`base_timestamp`).
    pub first_timestamp: i64,
    pub producer_id: i64,
    pub is_transactional: bool,
    /// Batches that carry a producer id (idempotent or transactional).
    pub producer_batch_count: u32,
}

/// Checks one batch frame at `position` of `buf` and returns its parsed header.
/// `strict` adds the producer rules (record_count == last_offset_delta + 1 > 0).
pub(crate) fn check_batch(buf: &[u8], position: usize, strict: bool) -> Result<RecordBatchHeader> {
    let rest = &buf[position..];
    if rest.len() < LOG_OVERHEAD_BYTES {
        return Err(StorageError::TruncatedBatch {
            position,
            needed_bytes: LOG_OVERHEAD_BYTES,
            available_bytes: rest.len(),
        });
    }
    let batch_length = be_i32(rest, BATCH_LENGTH_AT);
    let min_length = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
    if batch_length < min_length || batch_length as usize > BATCH_BYTES_MAX - LOG_OVERHEAD_BYTES {
        return Err(StorageError::CorruptBatch {
            position,
            kind: CorruptKind::BadLength,
        });
    }
    let size = LOG_OVERHEAD_BYTES + batch_length as usize;
    if rest.len() < size {
        // The magic byte may already tell us this is not v2 at all; say so first.
        if rest.len() > MAGIC_AT && rest[MAGIC_AT] as i8 != MAGIC_V2 {
            return Err(StorageError::InvalidMagic {
                position,
                magic: rest[MAGIC_AT] as i8,
            });
        }
        return Err(StorageError::TruncatedBatch {
            position,
            needed_bytes: size,
            available_bytes: rest.len(),
        });
    }
    let frame = &rest[..size];
    let header = RecordBatchHeader::parse(frame)?;
    if header.magic != MAGIC_V2 {
        return Err(StorageError::InvalidMagic {
            position,
            magic: header.magic,
        });
    }
    if crc32c::crc32c(&frame[ATTRIBUTES_AT..]) != header.crc {
        return Err(StorageError::CorruptBatch {
            position,
            kind: CorruptKind::CrcMismatch,
        });
    }
    if header.last_offset_delta < 0 || header.record_count < 0 {
        return Err(StorageError::CorruptBatch {
            position,
            kind: CorruptKind::BadCounts,
        });
    }
    if strict
        && (header.record_count == 0
            || i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1)
    {
        return Err(StorageError::CorruptBatch {
            position,
            kind: CorruptKind::BadCounts,
        });
    }
    Ok(header)
}

fn summarize(
    buf: &[u8],
    strict: bool,
    mut each: impl FnMut(usize, &RecordBatchHeader) -> Result<()>,
) -> Result<BatchesSummary> {
    if buf.is_empty() {
        return Err(StorageError::EmptyAppend);
    }
    let mut s = BatchesSummary {
        batch_count: 0,
        record_count: 0,
        size_bytes: buf.len(),
        largest_batch_bytes: 0,
        first_offset: 0,
        last_offset: 0,
        offset_count: 0,
        max_timestamp: -1,
        first_timestamp: -1,
        producer_id: -1,
        is_transactional: false,
        producer_batch_count: 0,
    };
    let mut position = 0;
    while position < buf.len() {
        let h = check_batch(buf, position, strict)?;
        each(position, &h)?;
        if s.batch_count == 0 {
            s.first_offset = h.base_offset;
            s.first_timestamp = h.base_timestamp;
            s.producer_id = h.producer_id;
            s.is_transactional = h.is_transactional();
        }
        s.batch_count += 1;
        s.producer_batch_count += u32::from(h.has_producer_id());
        s.record_count += i64::from(h.record_count);
        s.offset_count += i64::from(h.last_offset_delta) + 1;
        s.last_offset = h.last_offset();
        s.max_timestamp = s.max_timestamp.max(h.max_timestamp);
        s.largest_batch_bytes = s.largest_batch_bytes.max(h.size_bytes());
        position += h.size_bytes();
    }
    assert_eq!(position, buf.len());
    Ok(s)
}

/// Validates produce input: one or more concatenated v2 batches, each with a good length, magic,
/// CRC-32C and consistent counts. Offsets in the input are ignored (the leader assigns them).
pub fn validate_batches(buf: &[u8]) -> Result<BatchesSummary> {
    summarize(buf, true, |_, _| Ok(()))
}

/// Produce input that passed `validate_batches`, with its summary. Only `validate` makes one and
/// `Bytes` never change, so `PartitionLog::append_validated` appends it without checking the
/// CRCs a second time on arrival (recovery still checks them: asserts in pairs).
#[derive(Debug, Clone)]
pub struct ValidatedBatches {
    bytes: bytes::Bytes,
    summary: BatchesSummary,
}

impl ValidatedBatches {
    /// Runs `validate_batches` over `bytes`.
    pub fn validate(bytes: bytes::Bytes) -> Result<ValidatedBatches> {
        let summary = validate_batches(&bytes)?;
        Ok(ValidatedBatches { bytes, summary })
    }

    pub fn summary(&self) -> &BatchesSummary {
        &self.summary
    }

    pub fn bytes(&self) -> &bytes::Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> bytes::Bytes {
        self.bytes
    }
}

/// Validates batches for a follower append or a recovery scan: structure and CRC only (compacted
/// batches may hold fewer records than their offset range).
pub(crate) fn validate_batches_replica(
    buf: &[u8],
    each: impl FnMut(usize, &RecordBatchHeader) -> Result<()>,
) -> Result<BatchesSummary> {
    summarize(buf, false, each)
}

/// Stamps base offset and partition leader epoch into a validated batch. Both lie outside the
/// CRC, so the checksum stays valid.
pub(crate) fn stamp(batch: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    assert!(batch.len() >= BATCH_HEADER_BYTES);
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4]
        .copy_from_slice(&partition_leader_epoch.to_be_bytes());
}

/// Builds a valid uncompressed v2 batch with `record_count` records whose values are `value`
/// (test and benchmark helper; the record encoding follows the Kafka spec with varints).
pub fn build_batch(
    base_offset: i64,
    record_count: i32,
    base_timestamp: i64,
    value: &[u8],
) -> Vec<u8> {
    build_producer_batch(base_offset, record_count, base_timestamp, value, -1, -1, -1)
}

/// `build_batch` from an idempotent producer: `producer_id`, `producer_epoch` and
/// `base_sequence` in the header (test and benchmark helper).
pub fn build_producer_batch(
    base_offset: i64,
    record_count: i32,
    base_timestamp: i64,
    value: &[u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Vec<u8> {
    assert!(record_count > 0);
    let mut records = Vec::with_capacity(record_count as usize * (value.len() + 16));
    for i in 0..record_count {
        let mut body = Vec::with_capacity(value.len() + 16);
        body.push(0u8); // attributes
        put_varlong(&mut body, 0); // timestamp delta
        put_varlong(&mut body, i64::from(i)); // offset delta
        put_varlong(&mut body, -1); // key: null
        put_varlong(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_varlong(&mut body, 0); // headers
        put_varlong(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let batch_length = (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES + records.len()) as i32;
    let mut b = Vec::with_capacity(BATCH_HEADER_BYTES + records.len());
    b.extend_from_slice(&base_offset.to_be_bytes());
    b.extend_from_slice(&batch_length.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
    b.extend_from_slice(&0i16.to_be_bytes()); // attributes
    b.extend_from_slice(&(record_count - 1).to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes()); // max timestamp
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&base_sequence.to_be_bytes());
    b.extend_from_slice(&record_count.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn golden_header_layout() {
        let b = build_batch(7, 3, 1_000, b"xy");
        let h = RecordBatchHeader::parse(&b).unwrap();
        assert_eq!(h.base_offset, 7);
        assert_eq!(h.magic, 2);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.record_count, 3);
        assert_eq!(h.max_timestamp, 1_000);
        assert_eq!(h.size_bytes(), b.len());
        assert_eq!(h.compression(), Compression::None);
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert!(!h.is_transactional() && !h.is_control());
        // 61-byte header, then 3 records of: len(1) attrs(1) tsd(1) od(1) key(1) vlen(1) v(2) hdrs(1)
        assert_eq!(b.len(), 61 + 3 * 9);
        assert_eq!(&b[8..12], &((b.len() - 12) as i32).to_be_bytes());
    }

    #[test]
    fn encode_batch_round_trips_the_header() {
        let b = build_batch(7, 3, 1_000, b"xy");
        let h = RecordBatchHeader::parse(&b).unwrap();
        assert_eq!(encode_batch(&h, &b[BATCH_HEADER_BYTES..]), b);
        assert_eq!(h.delete_horizon_ms(), None);
        let marked = RecordBatchHeader {
            attributes: h.attributes | DELETE_HORIZON_FLAG,
            base_timestamp: 5_000,
            ..h
        };
        let m = encode_batch(&marked, &b[BATCH_HEADER_BYTES..]);
        validate_batches(&m).unwrap();
        assert_eq!(
            RecordBatchHeader::parse(&m).unwrap().delete_horizon_ms(),
            Some(5_000)
        );
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let mut b = build_batch(0, 2, 5, b"abc");
        stamp(&mut b, 1234, 9);
        let s = validate_batches(&b).unwrap();
        assert_eq!(s.first_offset, 1234);
        assert_eq!(s.last_offset, 1235);
        assert_eq!(
            RecordBatchHeader::parse(&b).unwrap().partition_leader_epoch,
            9
        );
    }

    #[test]
    fn bad_inputs_give_typed_errors() {
        let good = build_batch(0, 1, 0, b"v");
        assert!(matches!(
            validate_batches(&[]),
            Err(StorageError::EmptyAppend)
        ));
        assert!(matches!(
            validate_batches(&good[..good.len() - 1]),
            Err(StorageError::TruncatedBatch { .. })
        ));
        assert!(matches!(
            validate_batches(&good[..5]),
            Err(StorageError::TruncatedBatch { .. })
        ));
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        assert!(matches!(
            validate_batches(&bad_crc),
            Err(StorageError::CorruptBatch {
                kind: CorruptKind::CrcMismatch,
                ..
            })
        ));
        let mut bad_magic = good.clone();
        bad_magic[16] = 1;
        assert!(matches!(
            validate_batches(&bad_magic),
            Err(StorageError::InvalidMagic { magic: 1, .. })
        ));
        let mut bad_len = good.clone();
        bad_len[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert!(matches!(
            validate_batches(&bad_len),
            Err(StorageError::CorruptBatch {
                kind: CorruptKind::BadLength,
                ..
            })
        ));
        let mut neg_len = good;
        neg_len[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(validate_batches(&neg_len).is_err());
    }

    proptest! {
        #[test]
        fn concatenated_batches_validate(counts in proptest::collection::vec(1i32..20, 1..8), vlen in 0usize..64) {
            let value = vec![7u8; vlen];
            let mut all = Vec::new();
            for &c in &counts { all.extend_from_slice(&build_batch(0, c, 1, &value)); }
            let s = validate_batches(&all).unwrap();
            prop_assert_eq!(s.batch_count as usize, counts.len());
            prop_assert_eq!(s.record_count, counts.iter().map(|&c| i64::from(c)).sum::<i64>());
            prop_assert_eq!(s.size_bytes, all.len());
        }

        #[test]
        fn any_single_byte_flip_in_the_crc_range_is_caught(pos in 21usize..70, bit in 0u8..8) {
            let mut b = build_batch(0, 1, 0, b"0123456789");
            prop_assume!(pos < b.len());
            b[pos] ^= 1 << bit;
            prop_assert!(validate_batches(&b).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = validate_batches(&bytes);
        }
    }
}

//! A partition replica as it lies on disk: the RecordBatch v2 framing of its `<base>.log`
//! segments, read in name (= offset) order, for comparing replicas after the cluster stopped.
//!
//! Raw segment files can't be compared byte for byte: they are written with O_DIRECT, so the
//! active one is preallocated and ends in zeros, and each broker rolls at its own moment. The
//! batches in them are what must agree: a follower stores the leader's bytes unchanged.

use std::fs;
use std::path::Path;

/// Bytes of a RecordBatch v2 header up to and including the record count.
const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before the batch length field's end (base offset i64 + batch length i32): a batch
/// occupies `LOG_OVERHEAD_BYTES + batch length` bytes.
const LOG_OVERHEAD_BYTES: usize = 12;
/// The only magic this harness reads.
const MAGIC_V2: i8 = 2;

/// One stored batch: its first offset, its last offset, and its bytes exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub base_offset: i64,
    /// Inclusive.
    pub last_offset: i64,
    pub bytes: Vec<u8>,
}

/// A replica's log: every batch of every segment in offset order, and the record values of
/// the uncompressed non-control batches with their offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaLog {
    pub batches: Vec<StoredBatch>,
    pub records: Vec<(i64, Vec<u8>)>,
}

impl ReplicaLog {
    /// Exclusive: the offset after the last stored batch (0 when empty).
    pub fn log_end_offset(&self) -> i64 {
        self.batches.last().map_or(0, |b| b.last_offset + 1)
    }
}

/// Reads the replica in `dir` (`<data_dir>/<topic>-<partition>`); Err when the directory or a
/// segment can't be read or a batch is malformed before the zero padding starts.
pub fn read_replica(dir: &Path) -> Result<ReplicaLog, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut segments: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| is_segment_name(name))
        .collect();
    // 20-digit zero-padded base offsets: name order is offset order.
    segments.sort();
    let mut log = ReplicaLog::default();
    for name in segments {
        let path = dir.join(&name);
        let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        parse_segment(&bytes, &mut log).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(log)
}

/// `<20 digits>.log`, the segment naming of skein-storage.
fn is_segment_name(name: &str) -> bool {
    name.strip_suffix(".log")
        .is_some_and(|stem| stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()))
}

/// Appends every batch of one segment to `log`; stops at a zero length (the preallocated tail)
/// or at the end of the file.
fn parse_segment(bytes: &[u8], log: &mut ReplicaLog) -> Result<(), String> {
    let mut at = 0usize;
    while bytes.len() - at >= LOG_OVERHEAD_BYTES {
        let base_offset = i64::from_be_bytes(array(&bytes[at..at + 8]));
        let length = i32::from_be_bytes(array(&bytes[at + 8..at + 12]));
        if length == 0 {
            break;
        }
        let length = usize::try_from(length)
            .map_err(|_| format!("negative batch length {length} at byte {at}"))?;
        let end = at + LOG_OVERHEAD_BYTES + length;
        if end > bytes.len() || LOG_OVERHEAD_BYTES + length < BATCH_HEADER_BYTES {
            return Err(format!(
                "batch at byte {at} (offset {base_offset}) of length {length} does not fit"
            ));
        }
        let batch = &bytes[at..end];
        let magic = i8::from_be_bytes([batch[16]]);
        if magic != MAGIC_V2 {
            return Err(format!("batch at byte {at} has magic {magic}"));
        }
        let last_offset_delta = i32::from_be_bytes(array(&batch[23..27]));
        let stored = StoredBatch {
            base_offset,
            last_offset: base_offset + i64::from(last_offset_delta),
            bytes: batch.to_vec(),
        };
        collect_records(&stored, &mut log.records)
            .map_err(|e| format!("batch at offset {base_offset}: {e}"))?;
        log.batches.push(stored);
        at = end;
    }
    Ok(())
}

/// The values of an uncompressed, non-control batch, with their offsets; nothing for others.
fn collect_records(batch: &StoredBatch, out: &mut Vec<(i64, Vec<u8>)>) -> Result<(), String> {
    let attributes = i16::from_be_bytes(array(&batch.bytes[21..23]));
    let compressed = attributes & 0x07 != 0;
    let control = attributes & 0x20 != 0;
    if compressed || control {
        return Ok(());
    }
    let count = i32::from_be_bytes(array(&batch.bytes[57..61]));
    let mut cursor = Cursor {
        bytes: &batch.bytes,
        at: BATCH_HEADER_BYTES,
    };
    for _ in 0..count {
        let length = cursor.varint()?;
        let start = cursor.at;
        cursor.skip(1)?; // attributes
        cursor.varint()?; // timestamp delta
        let offset_delta = cursor.varint()?;
        let key_length = cursor.varint()?;
        cursor.skip_signed(key_length)?;
        let value_length = cursor.varint()?;
        let value = cursor.take_signed(value_length)?;
        out.push((batch.base_offset + offset_delta, value));
        // Headers are skipped by the record length rather than parsed.
        let end = start + usize::try_from(length).map_err(|_| "negative record length")?;
        if end < cursor.at || end > batch.bytes.len() {
            return Err(format!("record length {length} is inconsistent"));
        }
        cursor.at = end;
    }
    Ok(())
}

/// Reads zigzag varints and byte runs from a batch.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    /// A zigzag varint (up to 64 bits: timestamp deltas are varlongs).
    fn varint(&mut self) -> Result<i64, String> {
        let mut raw = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or("varint runs past the batch")?;
            self.at += 1;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                let value = i64::try_from(raw >> 1).map_err(|_| "varint overflow")?;
                return Ok(if raw & 1 == 0 { value } else { -value - 1 });
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        self.take(n).map(|_| ())
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at + n;
        let taken = self
            .bytes
            .get(self.at..end)
            .ok_or("field runs past the batch")?;
        self.at = end;
        Ok(taken)
    }

    /// A length-prefixed field: -1 is null (nothing to skip).
    fn skip_signed(&mut self, length: i64) -> Result<(), String> {
        self.take_signed(length).map(|_| ())
    }

    fn take_signed(&mut self, length: i64) -> Result<Vec<u8>, String> {
        if length < 0 {
            return Ok(Vec::new());
        }
        let n = usize::try_from(length).map_err(|_| "field length overflow")?;
        self.take(n).map(<[u8]>::to_vec)
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes.try_into().expect("slice of the requested length")
}

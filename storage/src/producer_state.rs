//! Idempotent-producer state of one partition (owning shard; held in the log's `LogState`):
//! for every producer id its epoch and the sequence and offset ranges of its last
//! `PRODUCER_BATCHES_RETAINED` batches, as Kafka's ProducerStateManager keeps them.
//!
//! A leader append checks its batch here in the synchronous section that assigns its offsets,
//! so the check sees every earlier append even while their writes are still in flight. What a
//! batch not yet written changed is kept in an undo list, so a failed write rolls this state
//! back together with the log. The snapshot codec (`<offset>.snapshot`, written at segment roll
//! and clean close) lives here too; the log's `producers` module does the file I/O.

use std::collections::{HashMap, VecDeque};

use crate::batch::RecordBatchHeader;
use crate::error::{Result, StorageError};
use crate::limits::PRODUCER_BATCHES_RETAINED;
use crate::segment::Ticket;

/// A producer id, as InitProducerId hands it out (`-1` on the wire means "none").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerId(pub i64);

/// A producer epoch (the producer's, never a leader epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerEpoch(pub i16);

/// One retained batch of a producer. Offsets and sequences are inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProducerBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// What a partition knows of one producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerEntry {
    pub producer_epoch: ProducerEpoch,
    /// Oldest first; only `batch_count` are set (fixed size: an entry is copied on every
    /// idempotent append into the undo list, and must not allocate).
    batches: [ProducerBatch; PRODUCER_BATCHES_RETAINED],
    batch_count: u8,
}

impl ProducerEntry {
    fn new(producer_epoch: ProducerEpoch) -> Self {
        ProducerEntry {
            producer_epoch,
            batches: [ProducerBatch::default(); PRODUCER_BATCHES_RETAINED],
            batch_count: 0,
        }
    }

    /// The retained batches, oldest first.
    pub fn batches(&self) -> &[ProducerBatch] {
        &self.batches[..usize::from(self.batch_count)]
    }

    pub fn last_batch(&self) -> Option<&ProducerBatch> {
        self.batches().last()
    }

    fn push(&mut self, batch: ProducerBatch) {
        let n = usize::from(self.batch_count);
        if n == PRODUCER_BATCHES_RETAINED {
            self.batches.copy_within(1.., 0);
            self.batches[n - 1] = batch;
        } else {
            self.batches[n] = batch;
            self.batch_count += 1;
        }
    }

    fn duplicate_of(&self, first_sequence: i32, last_sequence: i32) -> Option<ProducerBatch> {
        self.batches()
            .iter()
            .find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
            .copied()
    }
}

/// Last sequence of a batch: sequences wrap from `i32::MAX` to 0, as in Kafka.
pub(crate) fn last_sequence(base_sequence: i32, last_offset_delta: i32) -> i32 {
    let last = i64::from(base_sequence) + i64::from(last_offset_delta);
    if last > i64::from(i32::MAX) {
        (last - i64::from(i32::MAX) - 1) as i32
    } else {
        last as i32
    }
}

/// The sequence that must follow `last`.
fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

/// What a leader does with a producer's batch.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// New data in sequence (or from a producer this partition does not know): append it.
    Append,
    /// A retry of one of the producer's retained batches: answer with its offsets, append
    /// nothing. `pending` is the original append's ticket while its write is in flight.
    Duplicate {
        batch: ProducerBatch,
        pending: Option<Ticket>,
    },
}

/// One change made by a batch that may not be written yet.
#[derive(Debug)]
struct Undo {
    producer_id: i64,
    first_offset: i64,
    last_offset: i64,
    previous: Option<ProducerEntry>,
    ticket: Ticket,
}

/// Every producer of one partition, plus the undo list of unwritten batches.
#[derive(Debug, Default)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// In offset order; entries below the log's written offset are pruned lazily.
    undo: VecDeque<Undo>,
}

impl ProducerState {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn get(&self, producer_id: ProducerId) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id.0)
    }

    /// Kafka's leader-side checks (ProducerAppendInfo.checkProducerEpoch / checkSequence with
    /// KIP-360): an older epoch is fenced; a retry of a retained batch is a duplicate; a new
    /// epoch starts at sequence 0; otherwise the batch must continue the last sequence. A
    /// producer this partition does not know may start at any sequence.
    pub fn check(&self, h: &RecordBatchHeader) -> Result<Verdict> {
        if h.producer_id < 0 {
            return Ok(Verdict::Append);
        }
        if h.base_sequence < 0 {
            return Err(StorageError::InvalidProducerBatch {
                producer_id: h.producer_id,
                reason: "negative base sequence",
            });
        }
        if h.producer_epoch < 0 {
            return Err(StorageError::InvalidProducerBatch {
                producer_id: h.producer_id,
                reason: "negative producer epoch",
            });
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return Ok(Verdict::Append);
        };
        let current = entry.producer_epoch.0;
        if h.producer_epoch < current {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                producer_epoch: h.producer_epoch,
                current_epoch: current,
            });
        }
        if h.producer_epoch > current {
            if h.base_sequence != 0 {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    producer_epoch: h.producer_epoch,
                    base_sequence: h.base_sequence,
                    expected_sequence: 0,
                });
            }
            return Ok(Verdict::Append);
        }
        let last = last_sequence(h.base_sequence, h.last_offset_delta);
        if let Some(batch) = entry.duplicate_of(h.base_sequence, last) {
            let pending = self
                .undo
                .iter()
                .rev()
                .find(|u| u.producer_id == h.producer_id && u.first_offset == batch.first_offset)
                .map(|u| u.ticket.clone());
            return Ok(Verdict::Duplicate { batch, pending });
        }
        match entry.last_batch() {
            Some(b) if h.base_sequence != next_sequence(b.last_sequence) => {
                Err(StorageError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    producer_epoch: h.producer_epoch,
                    base_sequence: h.base_sequence,
                    expected_sequence: next_sequence(b.last_sequence),
                })
            }
            _ => Ok(Verdict::Append),
        }
    }

    /// Records an appended batch at `first_offset..=last_offset` (leader, follower or replay:
    /// no checks here, as Kafka's replication path). `ticket` is the append's while its write
    /// is in flight, so that a failed write can undo this; `None` for batches read from disk.
    pub fn apply(
        &mut self,
        h: &RecordBatchHeader,
        first_offset: i64,
        last_offset: i64,
        ticket: Option<&Ticket>,
    ) {
        if h.producer_id < 0 || h.is_control() {
            // Control batches belong to transactions, which are not built.
            return;
        }
        let previous = self.producers.get(&h.producer_id).copied();
        if let Some(ticket) = ticket {
            if let Some(u) = self.undo.back() {
                assert!(
                    u.last_offset < first_offset,
                    "undo list out of offset order"
                );
            }
            self.undo.push_back(Undo {
                producer_id: h.producer_id,
                first_offset,
                last_offset,
                previous,
                ticket: ticket.clone(),
            });
        }
        let epoch = ProducerEpoch(h.producer_epoch);
        let mut entry = previous.unwrap_or_else(|| ProducerEntry::new(epoch));
        if entry.producer_epoch != epoch {
            // A new epoch forgets the old one's batches (Kafka: maybeUpdateProducerEpoch).
            entry = ProducerEntry::new(epoch);
        }
        entry.push(ProducerBatch {
            first_sequence: h.base_sequence,
            last_sequence: last_sequence(h.base_sequence, h.last_offset_delta),
            first_offset,
            last_offset,
            max_timestamp: h.max_timestamp,
        });
        self.producers.insert(h.producer_id, entry);
    }

    /// Forgets undo records of batches now written (`written_offset` is exclusive).
    pub fn prune_written(&mut self, written_offset: i64) {
        while self
            .undo
            .front()
            .is_some_and(|u| u.last_offset < written_offset)
        {
            self.undo.pop_front();
        }
    }

    /// Undoes every change made by batches at or above `end_offset` (their write failed).
    pub fn rollback_from(&mut self, end_offset: i64) {
        while let Some(u) = self.undo.back() {
            if u.first_offset < end_offset {
                break;
            }
            let Some(u) = self.undo.pop_back() else {
                unreachable!("just looked at it")
            };
            match u.previous {
                Some(e) => self.producers.insert(u.producer_id, e),
                None => self.producers.remove(&u.producer_id),
            };
        }
    }

    /// True when no batch of this state is waiting for its write.
    pub fn has_pending(&self) -> bool {
        !self.undo.is_empty()
    }

    /// Removes producers whose last batch is older than `expire_before_ms` (by its max
    /// timestamp, as Kafka's producer.id.expiration.ms) and lies below `written_offset`, so an
    /// undo record never brings an expired producer back. Returns how many went.
    pub fn expire(&mut self, expire_before_ms: i64, written_offset: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| match e.last_batch() {
            Some(b) => b.max_timestamp >= expire_before_ms || b.last_offset >= written_offset,
            None => false,
        });
        before - self.producers.len()
    }

    /// Encodes the state as of `end_offset` (exclusive; every batch below it is included).
    /// Layout, big-endian: magic "SKPS" | version u16 | crc32c u32 of everything after it |
    /// end offset i64 | producer count u32 | per producer: id i64, epoch i16, batch count u8,
    /// then per batch: first seq i32, last seq i32, first offset i64, last offset i64,
    /// max timestamp i64.
    pub fn encode_snapshot(&self, end_offset: i64) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        // Sorted, so that the same state always gives the same bytes.
        ids.sort_unstable();
        let per_producer = 11 + PRODUCER_BATCHES_RETAINED * SNAPSHOT_BATCH_BYTES;
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + ids.len() * per_producer);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&end_offset.to_be_bytes());
        out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let e = &self.producers[id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.producer_epoch.0.to_be_bytes());
            out.push(e.batch_count);
            for b in e.batches() {
                out.extend_from_slice(&b.first_sequence.to_be_bytes());
                out.extend_from_slice(&b.last_sequence.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.max_timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out[SNAPSHOT_CRC_AT + 4..]);
        out[SNAPSHOT_CRC_AT..SNAPSHOT_CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a snapshot: its end offset and the state (with no undo records). Every field is
    /// checked; the error says what was wrong.
    pub fn decode_snapshot(data: &[u8]) -> Result<(i64, ProducerState), &'static str> {
        let mut r = Reader { data, at: 0 };
        if r.take(4)? != SNAPSHOT_MAGIC {
            return Err("bad magic");
        }
        if r.u16()? != SNAPSHOT_VERSION {
            return Err("unknown version");
        }
        let crc = r.u32()?;
        if crc32c::crc32c(&data[SNAPSHOT_CRC_AT + 4..]) != crc {
            return Err("checksum mismatch");
        }
        let end_offset = r.i64()?;
        let count = r.u32()? as usize;
        // Bounded by the bytes present, not by what the count claims.
        let mut producers = HashMap::with_capacity(count.min(data.len() / 11));
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let n = r.u8()?;
            if id < 0 || epoch < 0 {
                return Err("negative producer id or epoch");
            }
            if usize::from(n) > PRODUCER_BATCHES_RETAINED {
                return Err("too many batches for a producer");
            }
            let mut entry = ProducerEntry::new(ProducerEpoch(epoch));
            let mut prev_last = i64::MIN;
            for _ in 0..n {
                let b = ProducerBatch {
                    first_sequence: r.i32()?,
                    last_sequence: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    max_timestamp: r.i64()?,
                };
                let ordered = b.first_offset <= b.last_offset
                    && b.first_offset > prev_last
                    && b.last_offset < end_offset;
                if !ordered || b.first_sequence < 0 || b.last_sequence < 0 {
                    return Err("batch out of range or out of order");
                }
                prev_last = b.last_offset;
                entry.push(b);
            }
            if producers.insert(id, entry).is_some() {
                return Err("producer listed twice");
            }
        }
        if r.at != data.len() {
            return Err("bytes after the last producer");
        }
        Ok((
            end_offset,
            ProducerState {
                producers,
                undo: VecDeque::new(),
            },
        ))
    }
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"SKPS";
const SNAPSHOT_VERSION: u16 = 1;
const SNAPSHOT_CRC_AT: usize = 6;
const SNAPSHOT_HEADER_BYTES: usize = 22;
const SNAPSHOT_BATCH_BYTES: usize = 32;

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.at.checked_add(n).ok_or("truncated")?;
        let s = self.data.get(self.at..end).ok_or("truncated")?;
        self.at = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn i16(&mut self) -> Result<i16, &'static str> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, &'static str> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, &'static str> {
        Ok(i64::from_be_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;
    use crate::batch::build_producer_batch;
    use crate::segment::TicketState;

    fn header(pid: i64, epoch: i16, seq: i32, records: i32) -> RecordBatchHeader {
        let b = build_producer_batch(0, records, 1_000, b"v", pid, epoch, seq);
        RecordBatchHeader::parse(&b).unwrap()
    }

    fn ticket() -> Ticket {
        Rc::new(Cell::new(TicketState::Pending))
    }

    /// Checks and, when it says Append, applies at `*leo`.
    fn append(s: &mut ProducerState, leo: &mut i64, h: &RecordBatchHeader) -> Result<Verdict> {
        let v = s.check(h)?;
        if let Verdict::Append = v {
            let last = *leo + i64::from(h.last_offset_delta);
            s.apply(h, *leo, last, None);
            *leo = last + 1;
        }
        Ok(v)
    }

    fn is_dup_at(v: Verdict, offset: i64) -> bool {
        matches!(v, Verdict::Duplicate { batch, .. } if batch.first_offset == offset)
    }

    #[test]
    fn in_sequence_batches_append_and_retries_of_the_last_five_are_duplicates() {
        let mut s = ProducerState::default();
        let mut leo = 0;
        for i in 0..7 {
            let v = append(&mut s, &mut leo, &header(1, 0, i * 3, 3)).unwrap();
            assert!(matches!(v, Verdict::Append));
        }
        assert_eq!(leo, 21);
        // Batches 2..=6 are retained: their retries are duplicates with the original offsets.
        for i in 2..7 {
            let v = append(&mut s, &mut leo, &header(1, 0, i * 3, 3)).unwrap();
            assert!(is_dup_at(v, i64::from(i) * 3), "batch {i}");
        }
        // Older than the window: not a duplicate and not in sequence.
        assert!(matches!(
            append(&mut s, &mut leo, &header(1, 0, 3, 3)),
            Err(StorageError::OutOfOrderSequence {
                expected_sequence: 21,
                ..
            })
        ));
        // Same first sequence, different length: not the same batch.
        assert!(matches!(
            append(&mut s, &mut leo, &header(1, 0, 18, 2)),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
        assert_eq!(leo, 21, "nothing appended by retries or refusals");
    }

    #[test]
    fn a_gap_is_out_of_order_and_unknown_producers_start_anywhere() {
        let mut s = ProducerState::default();
        let mut leo = 0;
        assert!(matches!(
            append(&mut s, &mut leo, &header(9, 4, 1_000, 2)),
            Ok(Verdict::Append)
        ));
        assert!(matches!(
            append(&mut s, &mut leo, &header(9, 4, 1_003, 1)),
            Err(StorageError::OutOfOrderSequence {
                base_sequence: 1_003,
                expected_sequence: 1_002,
                ..
            })
        ));
        assert!(matches!(
            append(&mut s, &mut leo, &header(9, 4, 1_002, 1)),
            Ok(Verdict::Append)
        ));
        // Another producer is independent.
        assert!(matches!(
            append(&mut s, &mut leo, &header(10, 0, 5, 1)),
            Ok(Verdict::Append)
        ));
        // No producer id: no checks at all.
        assert!(matches!(
            append(&mut s, &mut leo, &header(-1, -1, -1, 1)),
            Ok(Verdict::Append)
        ));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn epochs_fence_older_producers_and_a_new_epoch_starts_at_zero() {
        let mut s = ProducerState::default();
        let mut leo = 0;
        append(&mut s, &mut leo, &header(1, 2, 0, 5)).unwrap();
        assert!(matches!(
            append(&mut s, &mut leo, &header(1, 1, 5, 1)),
            Err(StorageError::InvalidProducerEpoch {
                producer_epoch: 1,
                current_epoch: 2,
                ..
            })
        ));
        assert!(matches!(
            append(&mut s, &mut leo, &header(1, 3, 5, 1)),
            Err(StorageError::OutOfOrderSequence {
                expected_sequence: 0,
                ..
            })
        ));
        assert!(matches!(
            append(&mut s, &mut leo, &header(1, 3, 0, 1)),
            Ok(Verdict::Append)
        ));
        // The new epoch forgot the old one's batches; the old epoch is now fenced.
        assert_eq!(s.get(ProducerId(1)).unwrap().batches().len(), 1);
        assert!(matches!(
            append(&mut s, &mut leo, &header(1, 2, 0, 5)),
            Err(StorageError::InvalidProducerEpoch { .. })
        ));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(last_sequence(i32::MAX, 0), i32::MAX);
        assert_eq!(last_sequence(i32::MAX, 1), 0);
        assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
        let mut s = ProducerState::default();
        let mut leo = 0;
        // Three records: MAX - 1, MAX, 0.
        append(&mut s, &mut leo, &header(1, 0, i32::MAX - 1, 3)).unwrap();
        assert_eq!(s.get(ProducerId(1)).unwrap().batches()[0].last_sequence, 0);
        assert!(matches!(
            append(&mut s, &mut leo, &header(1, 0, 2, 1)),
            Err(StorageError::OutOfOrderSequence {
                expected_sequence: 1,
                ..
            })
        ));
        assert!(matches!(
            append(&mut s, &mut leo, &header(1, 0, 1, 1)),
            Ok(Verdict::Append)
        ));
        assert!(is_dup_at(
            append(&mut s, &mut leo, &header(1, 0, i32::MAX - 1, 3)).unwrap(),
            0
        ));
        let mut s = ProducerState::default();
        append(&mut s, &mut leo, &header(2, 0, i32::MAX, 1)).unwrap();
        assert!(matches!(
            append(&mut s, &mut leo, &header(2, 0, 0, 1)),
            Ok(Verdict::Append)
        ));
    }

    #[test]
    fn bad_producer_fields_are_invalid() {
        let s = ProducerState::default();
        assert!(matches!(
            s.check(&header(1, 0, -1, 1)),
            Err(StorageError::InvalidProducerBatch { .. })
        ));
        assert!(matches!(
            s.check(&header(1, -1, 0, 1)),
            Err(StorageError::InvalidProducerBatch { .. })
        ));
    }

    #[test]
    fn rollback_restores_the_state_before_unwritten_batches() {
        let mut s = ProducerState::default();
        let (t1, t2, t3) = (ticket(), ticket(), ticket());
        s.apply(&header(1, 0, 0, 2), 0, 1, Some(&t1));
        s.apply(&header(1, 0, 2, 2), 2, 3, Some(&t2));
        s.apply(&header(1, 1, 0, 1), 4, 4, Some(&t3));
        s.apply(&header(2, 0, 0, 1), 5, 5, Some(&t3));
        // A duplicate of a pending batch names the append it waits for.
        match s.check(&header(1, 1, 0, 1)).unwrap() {
            Verdict::Duplicate { batch, pending } => {
                assert_eq!(batch.first_offset, 4);
                assert!(Rc::ptr_eq(&pending.unwrap(), &t3));
            }
            v => panic!("{v:?}"),
        }
        s.prune_written(2);
        s.rollback_from(2);
        assert!(s.get(ProducerId(2)).is_none());
        let e = s.get(ProducerId(1)).unwrap();
        assert_eq!(e.producer_epoch, ProducerEpoch(0));
        assert_eq!(e.batches().len(), 1);
        assert!(!s.has_pending(), "the written batch's record was pruned");
        // A written batch's duplicate has nothing to wait for.
        match s.check(&header(1, 0, 0, 2)).unwrap() {
            Verdict::Duplicate { pending, .. } => assert!(pending.is_none()),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn snapshots_round_trip_and_refuse_damage() {
        let mut s = ProducerState::default();
        let mut leo = 0;
        for i in 0..8i64 {
            let seq = i32::try_from(i / 3).unwrap() * 2;
            append(&mut s, &mut leo, &header(i % 3, 1, seq, 2)).unwrap();
        }
        let bytes = s.encode_snapshot(leo);
        let (end, back) = ProducerState::decode_snapshot(&bytes).unwrap();
        assert_eq!(end, leo);
        assert_eq!(back.producers, s.producers);
        assert_eq!(bytes, back.encode_snapshot(leo), "deterministic");
        for cut in [0, 5, 21, bytes.len() - 1] {
            assert!(ProducerState::decode_snapshot(&bytes[..cut]).is_err());
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(
                ProducerState::decode_snapshot(&bad).is_err(),
                "flip at byte {at}"
            );
        }
        let (end, empty) =
            ProducerState::decode_snapshot(&ProducerState::default().encode_snapshot(7)).unwrap();
        assert_eq!((end, empty.len()), (7, 0));
    }

    #[test]
    fn expiry_keeps_recent_and_unwritten_producers() {
        let mut s = ProducerState::default();
        s.apply(&header(1, 0, 0, 1), 0, 0, None); // max timestamp 1_000
        s.apply(&header(2, 0, 0, 1), 1, 1, None);
        assert_eq!(s.expire(1_000, 10), 0, "not older than the bound");
        assert_eq!(s.expire(2_000, 1), 1, "producer 2 is not written yet");
        assert!(s.get(ProducerId(2)).is_some());
    }
}

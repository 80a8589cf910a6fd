//! Fetch response framing (v4..=16) around stored record bytes; pure, per response, on any shard.
//!
//! The broker describes the response ([`FetchResponseDesc`]) and hands over each partition's
//! record batches as chunks it already holds (tail-cache `Bytes`, DMA buffers, ...). The result
//! is a list of [`WirePart`]s to write in order: `Header` parts are the framing written here,
//! `Payload` parts are the caller's chunks, untouched, so record bytes are never copied into a
//! response buffer. The bytes equal `kafka-protocol`'s encoding of the same response.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::error::EncodeError;
use crate::limits::{
    FETCH_FLEXIBLE_VERSION_MIN, FETCH_NODE_ENDPOINTS_VERSION_MIN,
    FETCH_PREFERRED_READ_REPLICA_VERSION_MIN, FETCH_TOPIC_ID_VERSION_MIN, FETCH_VERSION_MAX,
    FETCH_VERSION_MIN, FRAME_BYTES_MAX, FRAME_SIZE_PREFIX_BYTES,
};
use crate::request::CorrelationId;
use crate::response::{put_frame_size, put_frame_start};

/// One piece of a response frame, written to the socket in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WirePart<P> {
    /// Framing written by skein-net; the first part starts with the size prefix.
    Header(Bytes),
    /// A chunk of stored record bytes, exactly as the caller handed it over.
    Payload(P),
}

impl<P: AsRef<[u8]>> WirePart<P> {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            WirePart::Header(b) => b,
            WirePart::Payload(p) => p.as_ref(),
        }
    }
}

/// A whole Fetch response.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FetchResponseDesc<P> {
    pub throttle_time_ms: i32,
    /// Top-level error (v7+; dropped below, as Kafka does).
    pub error_code: i16,
    /// Fetch session id (v7+); must be 0 below v7.
    pub session_id: i32,
    pub topics: Vec<FetchTopicDesc<P>>,
    /// Endpoints of the leaders named in `current_leader` (v16+; dropped below).
    pub node_endpoints: Vec<NodeEndpoint>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct FetchTopicDesc<P> {
    /// Written up to v12.
    pub name: StrBytes,
    /// Written from v13.
    pub topic_id: Uuid,
    pub partitions: Vec<FetchPartitionDesc<P>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FetchPartitionDesc<P> {
    pub partition_index: i32,
    pub error_code: i16,
    /// Exclusive: the offset after the last committed record.
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    /// Written from v5.
    pub log_start_offset: i64,
    /// v12+ tagged field; `None` or the default (-1, -1) writes nothing.
    pub diverging_epoch: Option<EpochEndOffset>,
    /// v12+ tagged field; `None` or the default (-1, -1) writes nothing.
    pub current_leader: Option<LeaderIdAndEpoch>,
    /// v12+ tagged field; `None` or the default (-1, -1) writes nothing.
    pub snapshot_id: Option<SnapshotId>,
    /// `None` is the null array (nothing aborted, or read_uncommitted).
    pub aborted_transactions: Option<Vec<AbortedTransaction>>,
    /// v11+; must be -1 (none) below v11.
    pub preferred_read_replica: i32,
    /// The record batches, in order; their lengths are summed into the records length.
    /// Empty chunks are dropped. The records field is never null.
    pub records: Vec<P>,
}

impl<P> Default for FetchPartitionDesc<P> {
    fn default() -> Self {
        FetchPartitionDesc {
            partition_index: 0,
            error_code: 0,
            high_watermark: 0,
            last_stable_offset: -1,
            log_start_offset: -1,
            diverging_epoch: None,
            current_leader: None,
            snapshot_id: None,
            aborted_transactions: None,
            preferred_read_replica: -1,
            records: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub leader_epoch: i32,
    /// Exclusive end offset of `leader_epoch`.
    pub end_offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderIdAndEpoch {
    pub leader_id: i32,
    pub leader_epoch: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotId {
    pub end_offset: i64,
    pub epoch: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEndpoint {
    pub node_id: i32,
    pub host: StrBytes,
    pub port: i32,
    pub rack: Option<StrBytes>,
}

const EPOCH_END_OFFSET_DEFAULT: EpochEndOffset = EpochEndOffset {
    leader_epoch: -1,
    end_offset: -1,
};
const LEADER_DEFAULT: LeaderIdAndEpoch = LeaderIdAndEpoch {
    leader_id: -1,
    leader_epoch: -1,
};
const SNAPSHOT_ID_DEFAULT: SnapshotId = SnapshotId {
    end_offset: -1,
    epoch: -1,
};

/// Frames a Fetch response of `version` (4..=16) around the caller's record chunks.
pub fn encode_fetch_response<P: AsRef<[u8]>>(
    version: i16,
    correlation_id: CorrelationId,
    desc: FetchResponseDesc<P>,
) -> Result<Vec<WirePart<P>>, EncodeError> {
    if !(FETCH_VERSION_MIN..=FETCH_VERSION_MAX).contains(&version) {
        return Err(EncodeError::UnsupportedVersion {
            api_key: ApiKey::Fetch,
            api_version: version,
        });
    }
    let mut w = Framer {
        buf: BytesMut::with_capacity(framing_estimate(&desc)),
        version,
        flexible: version >= FETCH_FLEXIBLE_VERSION_MIN,
        payloads: Vec::new(),
        payload_bytes: 0,
    };
    put_frame_start(&mut w.buf, ApiKey::Fetch, version, correlation_id);
    w.response(desc)?;
    w.finish()
}

/// Bytes of framing to reserve up front: generous per partition, so one allocation usually does.
fn framing_estimate<P>(desc: &FetchResponseDesc<P>) -> usize {
    let partitions: usize = desc.topics.iter().map(|t| t.partitions.len()).sum();
    64 + desc.topics.iter().map(|t| 24 + t.name.len()).sum::<usize>() + partitions * 96
}

type PartitionTags = (
    Option<EpochEndOffset>,
    Option<LeaderIdAndEpoch>,
    Option<SnapshotId>,
);

struct Framer<P> {
    buf: BytesMut,
    version: i16,
    flexible: bool,
    /// Record chunks and the framing offset they follow.
    payloads: Vec<(usize, P)>,
    payload_bytes: usize,
}

impl<P: AsRef<[u8]>> Framer<P> {
    fn response(&mut self, desc: FetchResponseDesc<P>) -> Result<(), EncodeError> {
        let version = self.version;
        self.buf.put_i32(desc.throttle_time_ms);
        if version >= 7 {
            self.buf.put_i16(desc.error_code);
            self.buf.put_i32(desc.session_id);
        } else if desc.session_id != 0 {
            return Err(EncodeError::FieldNotInVersion {
                field: "session_id",
                api_version: version,
            });
        }
        self.array_len(desc.topics.len())?;
        for topic in desc.topics {
            self.topic(topic)?;
        }
        if self.flexible {
            if version >= FETCH_NODE_ENDPOINTS_VERSION_MIN && !desc.node_endpoints.is_empty() {
                self.buf.put_u8(1);
                self.tagged(0, |w| w.node_endpoints(&desc.node_endpoints))?;
            } else {
                self.buf.put_u8(0);
            }
        }
        Ok(())
    }

    fn topic(&mut self, topic: FetchTopicDesc<P>) -> Result<(), EncodeError> {
        if self.version < FETCH_TOPIC_ID_VERSION_MIN {
            self.string(&topic.name)?;
        } else {
            self.buf.put_slice(topic.topic_id.as_bytes());
        }
        self.array_len(topic.partitions.len())?;
        for partition in topic.partitions {
            self.partition(partition)?;
        }
        self.no_tagged_fields();
        Ok(())
    }

    fn partition(&mut self, p: FetchPartitionDesc<P>) -> Result<(), EncodeError> {
        let version = self.version;
        self.buf.put_i32(p.partition_index);
        self.buf.put_i16(p.error_code);
        self.buf.put_i64(p.high_watermark);
        self.buf.put_i64(p.last_stable_offset);
        if version >= 5 {
            self.buf.put_i64(p.log_start_offset);
        }
        match &p.aborted_transactions {
            None => self.null_len(),
            Some(aborted) => {
                self.array_len(aborted.len())?;
                for txn in aborted {
                    self.buf.put_i64(txn.producer_id);
                    self.buf.put_i64(txn.first_offset);
                    self.no_tagged_fields();
                }
            }
        }
        if version >= FETCH_PREFERRED_READ_REPLICA_VERSION_MIN {
            self.buf.put_i32(p.preferred_read_replica);
        } else if p.preferred_read_replica != -1 {
            let field = "preferred_read_replica";
            return Err(EncodeError::FieldNotInVersion {
                field,
                api_version: version,
            });
        }
        let tagged = (p.diverging_epoch, p.current_leader, p.snapshot_id);
        self.records(p.records)?;
        if self.flexible {
            self.partition_tagged_fields(tagged);
        }
        Ok(())
    }

    fn partition_tagged_fields(&mut self, tagged: PartitionTags) {
        let (diverging, leader, snapshot) = tagged;
        let diverging = diverging.filter(|e| *e != EPOCH_END_OFFSET_DEFAULT);
        let leader = leader.filter(|l| *l != LEADER_DEFAULT);
        let snapshot = snapshot.filter(|s| *s != SNAPSHOT_ID_DEFAULT);
        let count = u8::from(diverging.is_some())
            + u8::from(leader.is_some())
            + u8::from(snapshot.is_some());
        self.buf.put_u8(count);
        if let Some(e) = diverging {
            self.buf.put_slice(&[0, 13]); // tag 0, 4 + 8 + 1 bytes
            self.buf.put_i32(e.leader_epoch);
            self.buf.put_i64(e.end_offset);
            self.buf.put_u8(0);
        }
        if let Some(l) = leader {
            self.buf.put_slice(&[1, 9]); // tag 1, 4 + 4 + 1 bytes
            self.buf.put_i32(l.leader_id);
            self.buf.put_i32(l.leader_epoch);
            self.buf.put_u8(0);
        }
        if let Some(s) = snapshot {
            self.buf.put_slice(&[2, 13]); // tag 2, 8 + 4 + 1 bytes
            self.buf.put_i64(s.end_offset);
            self.buf.put_i32(s.epoch);
            self.buf.put_u8(0);
        }
    }

    fn node_endpoints(&mut self, nodes: &[NodeEndpoint]) -> Result<(), EncodeError> {
        self.array_len(nodes.len())?;
        for node in nodes {
            self.buf.put_i32(node.node_id);
            self.string(&node.host)?;
            self.buf.put_i32(node.port);
            match &node.rack {
                None => self.null_len(),
                Some(rack) => self.string(rack)?,
            }
            self.no_tagged_fields();
        }
        Ok(())
    }

    /// Writes one tagged field: tag, size, then what `write` puts (measured, then moved).
    fn tagged(
        &mut self,
        tag: u32,
        write: impl FnOnce(&mut Self) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        put_uvarint(&mut self.buf, tag);
        let start = self.buf.len();
        write(self)?;
        let value = self.buf.split_off(start);
        put_uvarint(&mut self.buf, len_u32(value.len())?);
        self.buf.unsplit(value);
        Ok(())
    }

    fn records(&mut self, chunks: Vec<P>) -> Result<(), EncodeError> {
        let total = chunks
            .iter()
            .try_fold(0usize, |sum, c| sum.checked_add(c.as_ref().len()));
        let total = total
            .filter(|t| *t <= FRAME_BYTES_MAX)
            .ok_or(EncodeError::TooLarge {
                size: FRAME_BYTES_MAX.saturating_add(1),
            })?;
        if self.flexible {
            put_uvarint(&mut self.buf, len_u32(total)? + 1);
        } else {
            self.buf.put_i32(total as i32);
        }
        let at = self.buf.len();
        for chunk in chunks.into_iter().filter(|c| !c.as_ref().is_empty()) {
            self.payloads.push((at, chunk));
        }
        self.payload_bytes += total;
        Ok(())
    }

    fn string(&mut self, s: &str) -> Result<(), EncodeError> {
        if self.flexible {
            put_uvarint(&mut self.buf, len_u32(s.len())? + 1);
        } else {
            let len =
                i16::try_from(s.len()).map_err(|_| EncodeError::TooLarge { size: s.len() })?;
            self.buf.put_i16(len);
        }
        self.buf.put_slice(s.as_bytes());
        Ok(())
    }

    fn array_len(&mut self, len: usize) -> Result<(), EncodeError> {
        if self.flexible {
            put_uvarint(&mut self.buf, len_u32(len)? + 1);
        } else {
            let len = i32::try_from(len).map_err(|_| EncodeError::TooLarge { size: len })?;
            self.buf.put_i32(len);
        }
        Ok(())
    }

    /// Null string, bytes or array (the same bytes for all three).
    fn null_len(&mut self) {
        if self.flexible {
            self.buf.put_u8(0);
        } else {
            self.buf.put_i32(-1);
        }
    }

    fn no_tagged_fields(&mut self) {
        if self.flexible {
            self.buf.put_u8(0);
        }
    }

    fn finish(mut self) -> Result<Vec<WirePart<P>>, EncodeError> {
        let framing = self.buf.len() - FRAME_SIZE_PREFIX_BYTES;
        let size = framing.saturating_add(self.payload_bytes);
        put_frame_size(&mut self.buf, size)?;
        let framing = self.buf.freeze();
        let mut parts = Vec::with_capacity(2 * self.payloads.len() + 1);
        let mut done = 0;
        for (at, chunk) in self.payloads {
            if at > done {
                parts.push(WirePart::Header(framing.slice(done..at)));
                done = at;
            }
            parts.push(WirePart::Payload(chunk));
        }
        if done < framing.len() {
            parts.push(WirePart::Header(framing.slice(done..)));
        }
        Ok(parts)
    }
}

/// A compact length (`n + 1`) must fit an unsigned varint.
fn len_u32(len: usize) -> Result<u32, EncodeError> {
    u32::try_from(len)
        .ok()
        .filter(|l| *l < u32::MAX)
        .ok_or(EncodeError::TooLarge { size: len })
}

pub(crate) fn put_uvarint(buf: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

#[cfg(test)]
mod tests;

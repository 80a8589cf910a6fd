//! Internal RPC frames between brokers and controllers (the `internal` listener): flatbuffers
//! tables from `net/schema/internal.fbs`, generated into [`generated`] by
//! `scripts/gen-flatbuffers.sh`, behind plain Rust types so no caller touches flatbuffers.
//!
//! A frame on the wire is the same 4-byte big-endian size prefix as a Kafka frame (read it with
//! [`crate::read_frame`]) followed by one `Frame` table. Decoding runs flatbuffers' verifier
//! first, with limits, so a hostile or corrupt frame is an error, never a panic or an
//! out-of-bounds read.

use bytes::{BufMut, Bytes, BytesMut};
use flatbuffers::{FlatBufferBuilder, VerifierOptions};

// Generated code: its unwraps are of `Some(default)` and cannot fail.
#[allow(
    clippy::all,
    clippy::unwrap_used,
    clippy::pedantic,
    dead_code,
    unused_imports,
    non_camel_case_types,
    unsafe_op_in_unsafe_fn,
    mismatched_lifetime_syntaxes
)]
#[path = "internal/internal_generated.rs"]
mod generated;

use generated::skein::internal as fb;

mod decode;
mod encode;

/// A broker endpoint as the controller records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InternalMessage {
    /// A raft-rs message in its protobuf encoding.
    Raft(Bytes),
    RegisterBroker {
        broker_id: i32,
        incarnation: [u8; 16],
        endpoints: Vec<Endpoint>,
        rack: Option<String>,
    },
    RegisterBrokerResponse {
        error_code: i16,
        broker_epoch: i64,
    },
    Heartbeat {
        broker_id: i32,
        broker_epoch: i64,
        metadata_offset: i64,
        want_fence: bool,
        want_shutdown: bool,
    },
    HeartbeatResponse {
        error_code: i16,
        is_caught_up: bool,
        is_fenced: bool,
        should_shutdown: bool,
    },
    FetchMetadata {
        broker_id: i32,
        /// The metadata offset (the controller's applied index) the broker holds; -1 for none.
        from_offset: i64,
        /// Long poll: answered at once if newer metadata exists, else after up to this long.
        max_wait_ms: i32,
    },
    FetchMetadataResponse {
        error_code: i16,
        leader_id: i32,
        /// The applied index the image is at.
        offset: i64,
        /// The whole metadata image in the controller's codec (`codec::encode_image`); empty
        /// when it is not newer than the request's `from_offset`.
        image: Bytes,
    },
    CreateTopics {
        topics: Vec<NewTopicSpec>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        /// (topic name, new total partition count).
        topics: Vec<(String, i32)>,
        validate_only: bool,
    },
    AlterTopicConfig {
        topic: String,
        /// The topic's whole new override set, not a delta.
        configs: Vec<(String, String)>,
        validate_only: bool,
    },
    /// The answer to each of the four admin requests above, one result per topic in request
    /// order.
    AdminResponse {
        results: Vec<TopicResult>,
    },
    /// A partition leader's ISR change, compare-and-set on `partition_epoch`.
    AlterPartition {
        broker_id: i32,
        broker_epoch: i64,
        topic_id: [u8; 16],
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    AlterPartitionResponse {
        error_code: i16,
        leader: i32,
        isr: Vec<i32>,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    AllocateProducerIds {
        broker_id: i32,
        broker_epoch: i64,
    },
    /// A block of producer ids: `[start, start + len)`.
    AllocateProducerIdsResponse {
        error_code: i16,
        start: i64,
        len: i32,
    },
    /// An on-demand leader election (Kafka's ElectLeaders).
    ElectLeaders {
        /// Kafka's ElectionType: 0 preferred, 1 unclean.
        election_type: i8,
        /// `(topic, partition)` pairs; `None` for every partition.
        partitions: Option<Vec<(String, i32)>>,
    },
    /// One result per partition asked for (for every partition: those an election was needed
    /// for), or a top-level error with no results.
    ElectLeadersResponse {
        error_code: i16,
        results: Vec<PartitionResult>,
    },
    /// Kafka's AlterPartitionReassignments: `(topic, partition, target replicas)`; `None`
    /// cancels the partition's reassignment.
    AlterReassignments {
        partitions: Vec<(String, i32, Option<Vec<i32>>)>,
    },
    /// One result per partition asked for, or a top-level error with no results.
    AlterReassignmentsResponse {
        error_code: i16,
        results: Vec<PartitionResult>,
    },
    /// SCRAM credentials to set and remove (Kafka's AlterUserScramCredentials), answered with
    /// [`InternalMessage::AdminResponse`], one result per user.
    AlterScramCredentials {
        upserts: Vec<ScramUpsert>,
        /// `(user, mechanism)` pairs.
        deletions: Vec<(String, i8)>,
        /// Bootstrap users: a user's upserts are skipped where it already has any credential.
        only_if_absent: bool,
    },
    /// ACL bindings to add and remove (Kafka's CreateAcls / DeleteAcls), answered with
    /// [`InternalMessage::AdminResponse`]: one result per creation, then one per deletion.
    AlterAcls {
        creations: Vec<AclEntry>,
        deletions: Vec<AclEntry>,
    },
    /// Client quota changes (Kafka's AlterClientQuotas), answered with
    /// [`InternalMessage::AdminResponse`], one result per entry in order.
    AlterClientQuotas {
        entries: Vec<ClientQuotaEntry>,
        validate_only: bool,
    },
}

/// One entity's quota changes as the client sent them (the controller checks them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientQuotaEntry {
    /// Kafka's (entity type, name) pairs; a `None` name is the default entity of that type.
    pub entity: Vec<(String, Option<String>)>,
    pub ops: Vec<QuotaOp>,
}

/// Sets a quota key, or removes it (`value: None`).
#[derive(Clone, Debug)]
pub struct QuotaOp {
    pub key: String,
    pub value: Option<f64>,
}

// Values compare by their bits, so a message equals its decoded copy, NaN included.
impl PartialEq for QuotaOp {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && self.value.map(f64::to_bits) == other.value.map(f64::to_bits)
    }
}

impl Eq for QuotaOp {}

/// One ACL binding in Kafka's codes (the controller validates them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclEntry {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

/// One SCRAM credential to set: what the server keeps, never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramUpsert {
    pub user: String,
    /// Kafka's ScramMechanism code: 1 SCRAM-SHA-256, 2 SCRAM-SHA-512.
    pub mechanism: i8,
    pub iterations: i32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

// The keys are password equivalents for a stolen-database attacker: keep them out of logs.
impl std::fmt::Debug for ScramUpsert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUpsert")
            .field("user", &self.user)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// One topic of a forwarded CreateTopics request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopicSpec {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
    /// Manual assignment, one replica list per partition; empty for automatic placement.
    pub assignments: Vec<Vec<i32>>,
}

/// The outcome of an admin request for one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicResult {
    pub name: String,
    pub error_code: i16,
    pub error_message: Option<String>,
}

/// The outcome of an election for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionResult {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
    pub error_message: Option<String>,
}

/// Kafka's NOT_CONTROLLER: the node asked is not the active controller; try another voter.
pub const NOT_CONTROLLER: i16 = 41;

impl InternalMessage {
    /// The top-level error code of a response; `None` for requests, Raft messages and
    /// [`InternalMessage::AdminResponse`] (whose codes are per topic).
    pub fn error_code(&self) -> Option<i16> {
        match self {
            Self::RegisterBrokerResponse { error_code, .. }
            | Self::HeartbeatResponse { error_code, .. }
            | Self::FetchMetadataResponse { error_code, .. }
            | Self::AlterPartitionResponse { error_code, .. }
            | Self::AllocateProducerIdsResponse { error_code, .. }
            | Self::ElectLeadersResponse { error_code, .. }
            | Self::AlterReassignmentsResponse { error_code, .. } => Some(*error_code),
            Self::Raft(_)
            | Self::RegisterBroker { .. }
            | Self::Heartbeat { .. }
            | Self::FetchMetadata { .. }
            | Self::CreateTopics { .. }
            | Self::DeleteTopics { .. }
            | Self::CreatePartitions { .. }
            | Self::AlterTopicConfig { .. }
            | Self::AdminResponse { .. }
            | Self::AlterPartition { .. }
            | Self::AllocateProducerIds { .. }
            | Self::ElectLeaders { .. }
            | Self::AlterReassignments { .. }
            | Self::AlterScramCredentials { .. }
            | Self::AlterAcls { .. }
            | Self::AlterClientQuotas { .. } => None,
        }
    }

    /// Whether this message asks for an answer (a response carries its correlation id back).
    /// Raft messages are one-way and so are not requests.
    pub fn is_request(&self) -> bool {
        match self {
            Self::RegisterBroker { .. }
            | Self::Heartbeat { .. }
            | Self::FetchMetadata { .. }
            | Self::CreateTopics { .. }
            | Self::DeleteTopics { .. }
            | Self::CreatePartitions { .. }
            | Self::AlterTopicConfig { .. }
            | Self::AlterPartition { .. }
            | Self::AllocateProducerIds { .. }
            | Self::ElectLeaders { .. }
            | Self::AlterReassignments { .. }
            | Self::AlterScramCredentials { .. }
            | Self::AlterAcls { .. }
            | Self::AlterClientQuotas { .. } => true,
            Self::Raft(_)
            | Self::RegisterBrokerResponse { .. }
            | Self::HeartbeatResponse { .. }
            | Self::FetchMetadataResponse { .. }
            | Self::AdminResponse { .. }
            | Self::AlterPartitionResponse { .. }
            | Self::AllocateProducerIdsResponse { .. }
            | Self::ElectLeadersResponse { .. }
            | Self::AlterReassignmentsResponse { .. } => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InternalFrame {
    /// Matches a response to its request; 0 for one-way messages (Raft).
    pub correlation_id: u64,
    pub from_node: i32,
    pub message: InternalMessage,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InternalDecodeError {
    #[error("not an internal frame (file identifier missing)")]
    NotAFrame,
    #[error("malformed internal frame: {0}")]
    Malformed(String),
    #[error("internal frame without a message, or with one this node does not know")]
    UnknownMessage,
    #[error("incarnation is {0} bytes, not 16")]
    BadIncarnation(usize),
    #[error("topic id is {0} bytes, not 16")]
    BadTopicId(usize),
}

/// Verifier limits: generous for real frames (a few tables, one large byte vector, or an admin
/// request naming a few thousand topics), small enough that a hostile frame cannot make
/// verification expensive.
const VERIFIER_DEPTH_MAX: usize = 16;
const VERIFIER_TABLES_MAX: usize = 100_000;

/// Encodes `frame` with its 4-byte size prefix, ready to write.
pub fn encode_internal(frame: &InternalFrame) -> Bytes {
    let mut b = FlatBufferBuilder::with_capacity(128);
    let (message_type, message) = encode::message(&mut b, &frame.message);
    let root = fb::Frame::create(
        &mut b,
        &fb::FrameArgs {
            correlation_id: frame.correlation_id,
            from_node: frame.from_node,
            message_type,
            message: Some(message),
        },
    );
    fb::finish_frame_buffer(&mut b, root);
    let body = b.finished_data();
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
    out.put_slice(body);
    out.freeze()
}

/// Decodes one frame body (after the size prefix). Never panics.
pub fn decode_internal(body: &[u8]) -> Result<InternalFrame, InternalDecodeError> {
    // Root offset, then the 4-byte file identifier. Checked here: flatbuffers' own check
    // asserts (panics) on a buffer too short to hold it.
    if body.get(4..8) != Some(fb::FRAME_IDENTIFIER.as_bytes()) {
        return Err(InternalDecodeError::NotAFrame);
    }
    let opts = VerifierOptions {
        max_depth: VERIFIER_DEPTH_MAX,
        max_tables: VERIFIER_TABLES_MAX,
        ..VerifierOptions::default()
    };
    let frame = fb::root_as_frame_with_opts(&opts, body)
        .map_err(|e| InternalDecodeError::Malformed(e.to_string()))?;
    Ok(InternalFrame {
        correlation_id: frame.correlation_id(),
        from_node: frame.from_node(),
        message: decode::message(&frame)?,
    })
}

#[cfg(test)]
mod tests;

//! One partition replica on its owning shard: the log plus what the Kafka APIs need around it
//! (leader epoch, waiting fetches, effective topic config). Lives on exactly one shard.

use std::cell::{Cell, RefCell};

use bytes::Bytes;
use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;
use skein_storage::batch::ValidatedBatches;
use skein_storage::{AppendInfo, LogChunk, PartitionLog, StorageError};
use uuid::Uuid;

use crate::group::state::GroupLimits;
use crate::group::store::GroupStore;
use crate::shard::ids::TopicPartition;
use crate::topic_config::EffectiveTopicConfig;

/// Why a produce to one partition failed, with Produce v8+'s per-record detail.
#[derive(Debug)]
pub struct ProduceFailure {
    pub error: ResponseError,
    pub message: Option<String>,
    /// Indexes of the offending records within the partition's records (v8+ `record_errors`).
    pub record_errors: Vec<i32>,
}

impl From<ResponseError> for ProduceFailure {
    fn from(error: ResponseError) -> Self {
        ProduceFailure {
            error,
            message: None,
            record_errors: Vec::new(),
        }
    }
}

/// acks values Kafka accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    None,
    Leader,
    All,
}

impl Acks {
    pub fn from_wire(acks: i16) -> Option<Acks> {
        match acks {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }
}

/// What a read asks of one partition.
#[derive(Clone, Copy, Debug)]
pub struct ReadSpec {
    pub fetch_offset: i64,
    pub max_bytes: usize,
    /// -1 when the client does not know the leader epoch.
    pub current_leader_epoch: i32,
}

/// One partition's part of a Fetch answer; `C` is a stored chunk (local) or `Bytes` (remote).
#[derive(Debug)]
pub struct PartitionRead<C> {
    pub error: Option<ResponseError>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub chunks: Vec<C>,
}

impl<C> PartitionRead<C> {
    pub fn error(error: ResponseError) -> Self {
        PartitionRead {
            error: Some(error),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            chunks: Vec::new(),
        }
    }

    /// The same answer with each chunk converted (to cross shards, or to a wire chunk).
    pub fn map_chunks<D>(self, f: impl FnMut(C) -> D) -> PartitionRead<D> {
        PartitionRead {
            error: self.error,
            high_watermark: self.high_watermark,
            last_stable_offset: self.last_stable_offset,
            log_start_offset: self.log_start_offset,
            chunks: self.chunks.into_iter().map(f).collect(),
        }
    }

    pub fn bytes(&self) -> usize
    where
        C: AsRef<[u8]>,
    {
        self.chunks.iter().map(|c| c.as_ref().len()).sum()
    }
}

pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    pub log: PartitionLog,
    /// This node's id, to tell whether it leads.
    node_id: i32,
    /// The leader as the metadata names it (-1: offline) and its epoch.
    leader: Cell<i32>,
    leader_epoch: Cell<i32>,
    config: RefCell<EffectiveTopicConfig>,
    /// Fetches parked until new data arrives (long poll); woken on every append.
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Groups and committed offsets, for partitions of `__consumer_offsets` (empty elsewhere).
    pub groups: RefCell<GroupStore>,
}

impl Partition {
    pub fn new(
        tp: TopicPartition,
        topic_id: Uuid,
        log: PartitionLog,
        node_id: i32,
        config: EffectiveTopicConfig,
    ) -> Self {
        Partition {
            tp,
            topic_id,
            log,
            node_id,
            leader: Cell::new(-1),
            leader_epoch: Cell::new(0),
            config: RefCell::new(config),
            waiters: RefCell::new(Vec::new()),
            groups: RefCell::new(GroupStore::new(GroupLimits::from_settings(
                &Default::default(),
            ))),
        }
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.get()
    }

    /// Installs the leader and epoch the metadata names. Waiting fetches are woken so they
    /// answer with the new state rather than sleep out their wait.
    pub fn set_leadership(&self, leader: i32, leader_epoch: i32) {
        // Both cells are always written (no short-circuit: a new leader comes with a new epoch).
        let leader_changed = self.leader.replace(leader) != leader;
        let epoch_changed = self.leader_epoch.replace(leader_epoch) != leader_epoch;
        let changed = leader_changed || epoch_changed;
        if changed {
            if leader == self.node_id {
                tracing::info!(partition = %self.tp, leader_epoch, "leading");
            }
            self.wake_waiters();
        }
    }

    /// Whether this replica leads the partition now.
    pub fn is_leader(&self) -> bool {
        self.leader.get() == self.node_id
    }

    pub fn config(&self) -> EffectiveTopicConfig {
        self.config.borrow().clone()
    }

    pub fn set_config(&self, config: EffectiveTopicConfig) -> Result<(), StorageError> {
        self.log.update_config(config.log_config())?;
        *self.config.borrow_mut() = config;
        Ok(())
    }

    /// Validates and appends a produce request's records (leader side). Single node: the ISR is
    /// this replica, so the high watermark follows the durable log end.
    pub async fn produce(&self, records: Bytes, acks: Acks) -> Result<AppendInfo, ProduceFailure> {
        let (max_message_bytes, min_insync, requires_keys) = {
            let c = self.config.borrow();
            (c.max_message_bytes, c.min_insync_replicas, c.requires_keys)
        };
        if !self.is_leader() {
            return Err(ResponseError::NotLeaderOrFollower.into());
        }
        // Validated once here (length, magic, CRC); the log trusts the proof and does not redo it.
        let validated = ValidatedBatches::validate(records).map_err(produce_error)?;
        let records = validated.bytes();
        if validated.summary().largest_batch_bytes > max_message_bytes {
            return Err(ResponseError::MessageTooLarge.into());
        }
        crate::validate::check_records(records)?;
        if requires_keys {
            let keyless = crate::validate::keyless_record_indexes(records)?;
            if !keyless.is_empty() {
                return Err(ProduceFailure {
                    error: ResponseError::InvalidRecord,
                    message: Some(format!(
                        "Compacted topic cannot accept message without key in topic partition {}.",
                        self.tp
                    )),
                    record_errors: keyless,
                });
            }
        }
        // The ISR of a single node is one replica.
        const ISR_SIZE: usize = 1;
        if acks == Acks::All && ISR_SIZE < min_insync {
            return Err(ResponseError::NotEnoughReplicas.into());
        }
        // An idempotent producer's refusals carry the log's explanation, as Kafka's do.
        self.append_inner(validated).await.map_err(|e| {
            let message = e.is_producer_refusal().then(|| e.to_string());
            ProduceFailure {
                error: produce_error(e),
                message,
                record_errors: Vec::new(),
            }
        })
    }

    /// Appends batches the broker built or already validated, and moves the high watermark.
    /// A retried idempotent batch appends nothing and answers with the original's offsets.
    pub async fn append(&self, validated: ValidatedBatches) -> Result<AppendInfo, ResponseError> {
        self.append_inner(validated).await.map_err(produce_error)
    }

    async fn append_inner(&self, validated: ValidatedBatches) -> Result<AppendInfo, StorageError> {
        let info = self
            .log
            .append_validated(validated, self.leader_epoch.get())
            .await?;
        // Appends complete in offset order; the HW covers what is durably written (a
        // duplicate resolves only once its original is).
        let high_watermark = self.log.high_watermark().max(info.last_offset + 1);
        self.log.set_high_watermark(high_watermark);
        if info.duplicate {
            tracing::debug!(partition = %self.tp, base_offset = info.first_offset, "retried producer batch answered with its original offsets");
        } else {
            self.wake_waiters();
        }
        Ok(info)
    }

    /// Reads for a consumer: whole batches below the high watermark.
    pub async fn read(&self, spec: ReadSpec) -> PartitionRead<LogChunk> {
        if !self.is_leader() {
            return PartitionRead::error(ResponseError::NotLeaderOrFollower);
        }
        if spec.current_leader_epoch >= 0 {
            let epoch = self.leader_epoch.get();
            if spec.current_leader_epoch < epoch {
                return PartitionRead::error(ResponseError::FencedLeaderEpoch);
            }
            if spec.current_leader_epoch > epoch {
                return PartitionRead::error(ResponseError::UnknownLeaderEpoch);
            }
        }
        let high_watermark = self.log.high_watermark();
        let log_start_offset = self.log.log_start_offset();
        let mut out = PartitionRead {
            error: None,
            high_watermark,
            last_stable_offset: high_watermark,
            log_start_offset,
            chunks: Vec::new(),
        };
        if spec.fetch_offset == high_watermark {
            return out;
        }
        // Past the HW is out of range for a consumer, even where the log has data.
        if spec.fetch_offset > high_watermark {
            out.error = Some(ResponseError::OffsetOutOfRange);
            return out;
        }
        match self
            .log
            .read(spec.fetch_offset, spec.max_bytes, high_watermark)
            .await
        {
            Ok(read) => out.chunks = read.chunks,
            Err(StorageError::OffsetOutOfRange { .. }) => {
                out.error = Some(ResponseError::OffsetOutOfRange)
            }
            Err(e) => {
                tracing::warn!(partition = %self.tp, error = %e, "read failed");
                out.error = Some(ResponseError::KafkaStorageError);
            }
        }
        out
    }

    /// True when a consumer at `fetch_offset` has something to read (or an error to see).
    pub fn has_data_for(&self, fetch_offset: i64) -> bool {
        fetch_offset != self.log.high_watermark()
    }

    /// Resolves when new data is appended (or the partition goes away).
    pub fn wait_for_append(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.borrow_mut();
        waiters.retain(|w| !w.is_canceled());
        waiters.push(tx);
        rx
    }

    fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            let _ = w.send(());
        }
    }
}

/// The Kafka error a produce gets for a storage failure.
pub fn produce_error(e: StorageError) -> ResponseError {
    match e {
        StorageError::CorruptBatch { .. } | StorageError::TruncatedBatch { .. } => {
            ResponseError::CorruptMessage
        }
        StorageError::InvalidMagic { .. } => ResponseError::UnsupportedForMessageFormat,
        StorageError::EmptyAppend => ResponseError::InvalidRecord,
        StorageError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::StaleLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
        StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        StorageError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerBatch { .. } => ResponseError::InvalidRecord,
        StorageError::OffsetOutOfRange { .. }
        | StorageError::OffsetGap { .. }
        | StorageError::OffsetOverlap { .. }
        | StorageError::NoSpace { .. }
        | StorageError::Io { .. }
        | StorageError::ShortWrite { .. }
        | StorageError::AppendAborted
        | StorageError::CorruptCheckpoint { .. }
        | StorageError::InvalidConfig(_)
        | StorageError::Closed => {
            tracing::error!(error = %e, "append failed");
            ResponseError::KafkaStorageError
        }
    }
}

//! One partition replica on its owning shard: the log plus what the Kafka APIs need around it
//! (leader epoch, waiting fetches, effective topic config). Lives on exactly one shard.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;
use skein_storage::batch::ValidatedBatches;
use skein_storage::{AppendInfo, LogChunk, PartitionLog, StorageError};
use uuid::Uuid;

use crate::group::state::GroupLimits;
use crate::group::store::GroupStore;
use crate::replica::{IsrProposal, ReplicaSet};
use crate::shard::ids::TopicPartition;
use crate::topic_config::EffectiveTopicConfig;

/// The leader the metadata has not named yet.
const NO_LEADER_YET: i32 = -1;
/// How long a group coordinator write waits for the ISR (Kafka's offsets.commit.timeout.ms).
const COORDINATOR_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The fetching follower's broker id; -1 for a consumer.
    pub replica_id: i32,
    /// The epoch of the follower's last fetched batch (-1: unknown); checked for divergence.
    pub last_fetched_epoch: i32,
    /// Answer errors and offsets without reading records (a fetch probing which partitions
    /// have any, or one whose byte budget is spent).
    pub offsets_only: bool,
}

impl ReadSpec {
    pub fn is_replica(&self) -> bool {
        self.replica_id >= 0
    }
}

/// One partition's part of a Fetch answer; `C` is a stored chunk (local) or `Bytes` (remote).
#[derive(Debug)]
pub struct PartitionRead<C> {
    pub error: Option<ResponseError>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// Where the log ended when read (not sent to clients: a waiting fetch watches it).
    pub log_end_offset: i64,
    /// For a follower whose log diverged: the largest epoch both share, and where it ends here.
    pub diverging_epoch: Option<(i32, i64)>,
    pub chunks: Vec<C>,
}

impl<C> PartitionRead<C> {
    /// The end a fetcher reads to as of this answer: the log end for a follower, the high
    /// watermark for a consumer.
    pub fn readable_end(&self, replica: bool) -> i64 {
        if replica {
            self.log_end_offset
        } else {
            self.high_watermark
        }
    }

    pub fn error(error: ResponseError) -> Self {
        PartitionRead {
            error: Some(error),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            log_end_offset: -1,
            diverging_epoch: None,
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
            log_end_offset: self.log_end_offset,
            diverging_epoch: self.diverging_epoch,
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
    /// Replicas, ISR and (while leading) the followers' progress.
    replicas: RefCell<ReplicaSet>,
    /// The end of what this replica has written (an append counts once its write completed, and
    /// with the fsync policy once it is synced): what it may report as its own.
    local_end: Cell<i64>,
    config: RefCell<EffectiveTopicConfig>,
    /// Fetches parked until new data arrives (long poll); woken on every append and HW move.
    waiters: Waiters,
    /// acks=all produces waiting for the high watermark (or a leadership change).
    hw_waiters: Waiters,
    /// Groups and committed offsets, for partitions of `__consumer_offsets` (empty elsewhere).
    pub groups: RefCell<GroupStore>,
    /// ISR changes this replica proposed as leader and the controller accepted (metrics).
    pub isr_changes: IsrChanges,
}

/// Accepted ISR changes of one replica since it was opened on this shard.
#[derive(Debug, Default)]
pub struct IsrChanges {
    pub shrinks: Cell<u64>,
    pub expands: Cell<u64>,
}

/// Where a replica stands after a metadata change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    BecameLeader,
    BecameFollower,
}

impl Partition {
    pub fn new(
        tp: TopicPartition,
        topic_id: Uuid,
        log: PartitionLog,
        node_id: i32,
        config: EffectiveTopicConfig,
    ) -> Self {
        let local_end = log.log_end_offset();
        Partition {
            tp,
            topic_id,
            log,
            node_id,
            leader: Cell::new(NO_LEADER_YET),
            leader_epoch: Cell::new(-1),
            replicas: RefCell::new(ReplicaSet::new(vec![node_id], vec![node_id], -1)),
            local_end: Cell::new(local_end),
            config: RefCell::new(config),
            waiters: Waiters::default(),
            hw_waiters: Waiters::default(),
            groups: RefCell::new(GroupStore::new(GroupLimits::from_settings(
                &Default::default(),
            ))),
            isr_changes: IsrChanges::default(),
        }
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.get()
    }

    pub fn leader(&self) -> i32 {
        self.leader.get()
    }

    /// Installs the leader, epoch, replicas and ISR the metadata names. Waiting fetches and
    /// produces are woken so they answer with the new state rather than sleep out their wait.
    pub fn set_assignment(
        &self,
        leader: i32,
        leader_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
        partition_epoch: i32,
    ) -> Transition {
        let was_leader = self.is_leader();
        let leader_changed = self.leader.replace(leader) != leader;
        let epoch_changed = self.leader_epoch.replace(leader_epoch) != leader_epoch;
        self.replicas
            .borrow_mut()
            .update(replicas, isr, partition_epoch);
        let now_leader = self.is_leader();
        let transition = if (leader_changed || epoch_changed) && now_leader {
            // Everything before this point was written under older epochs; followers must have
            // it all before they count as in sync.
            self.replicas
                .borrow_mut()
                .start_leading(self.log.log_end_offset(), Instant::now());
            tracing::info!(partition = %self.tp, leader_epoch, "leading");
            Transition::BecameLeader
        } else if was_leader && !now_leader {
            tracing::info!(partition = %self.tp, leader, leader_epoch, "following");
            Transition::BecameFollower
        } else if leader_changed && !now_leader {
            Transition::BecameFollower
        } else {
            Transition::Unchanged
        };
        if leader_changed || epoch_changed {
            self.waiters.wake_all();
            self.hw_waiters.wake_all();
        }
        self.maybe_advance_high_watermark();
        transition
    }

    /// This replica leaves the shard (moved elsewhere, topic deleted, broker stopping): it
    /// leads nothing from now on, and whoever waits on it (acks=all produces, long-polling
    /// fetches) wakes to answer NOT_LEADER_OR_FOLLOWER and let go of it, so that its log can be
    /// closed or deleted without sleeping out their timeouts.
    pub fn retire(&self) {
        self.leader.set(NO_LEADER_YET);
        self.waiters.wake_all();
        self.hw_waiters.wake_all();
    }

    /// (replicas, ISR members) as this replica knows them.
    pub fn replica_counts(&self) -> (usize, usize) {
        let r = self.replicas.borrow();
        (r.replicas.len(), r.isr.len())
    }

    /// Whether this replica is in the ISR the metadata names; a follower outside it is
    /// catching up (and its fetches are throttled).
    pub fn is_in_sync(&self) -> bool {
        self.replicas.borrow().isr.contains(&self.node_id)
    }

    /// Whether a new leader's high watermark has reached the start of its epoch (Kafka's
    /// KIP-207): before that it may be below one the previous leader showed, so consumers are
    /// answered OFFSET_NOT_AVAILABLE (retriable) rather than see it go backwards.
    pub fn high_watermark_settled(&self) -> bool {
        self.log.high_watermark() >= self.replicas.borrow().epoch_start_offset()
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

    /// Validates and appends a produce request's records (leader side); with acks=all, waits
    /// until every ISR member has them (the high watermark passes them) or `timeout` passes.
    pub async fn produce(
        &self,
        records: Bytes,
        acks: Acks,
        timeout: Duration,
    ) -> Result<AppendInfo, ProduceFailure> {
        let (max_message_bytes, requires_keys) = {
            let c = self.config.borrow();
            (c.max_message_bytes, c.requires_keys)
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
        if acks == Acks::All {
            let (isr, min_insync) = self.isr_size_and_minimum();
            if isr < min_insync {
                return Err(ProduceFailure {
                    error: ResponseError::NotEnoughReplicas,
                    message: Some(format!(
                        "The size of the current ISR {isr} is insufficient to satisfy the \
                         min.isr requirement of {min_insync} for partition {}",
                        self.tp
                    )),
                    record_errors: Vec::new(),
                });
            }
        }
        let epoch = self.leader_epoch.get();
        // An idempotent producer's refusals carry the log's explanation, as Kafka's do.
        let info = self.append_inner(validated).await.map_err(|e| {
            let message = e.is_producer_refusal().then(|| e.to_string());
            ProduceFailure {
                error: produce_error(e),
                message,
                record_errors: Vec::new(),
            }
        })?;
        if acks == Acks::All {
            self.await_replicated(info.last_offset + 1, epoch, timeout)
                .await?;
        }
        Ok(info)
    }

    /// The ISR size and the `min.insync.replicas` that acks=all needs.
    fn isr_size_and_minimum(&self) -> (usize, usize) {
        let r = self.replicas.borrow();
        let min = self
            .config
            .borrow()
            .min_insync_replicas_for(r.replicas.len());
        (r.isr.len(), min)
    }

    /// Waits until the high watermark reaches `end` under leader epoch `epoch`.
    async fn await_replicated(
        &self,
        end: i64,
        epoch: i32,
        timeout: Duration,
    ) -> Result<(), ResponseError> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_leader() || self.leader_epoch.get() != epoch {
                // Another leader may or may not keep this write: the producer must retry.
                return Err(ResponseError::NotLeaderOrFollower);
            }
            if self.log.high_watermark() >= end {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ResponseError::RequestTimedOut);
            }
            let rx = self.hw_waiters.register();
            let sleep = Box::pin(glommio::timer::sleep(deadline - now));
            futures_util::future::select(rx, sleep).await;
        }
    }

    /// Appends batches the broker built (group coordinator records) and waits, like an acks=all
    /// produce, until the ISR has them. A retried idempotent batch appends nothing and answers
    /// with the original's offsets.
    pub async fn append(&self, validated: ValidatedBatches) -> Result<AppendInfo, ResponseError> {
        let epoch = self.leader_epoch.get();
        let info = self.append_inner(validated).await.map_err(produce_error)?;
        self.await_replicated(info.last_offset + 1, epoch, COORDINATOR_WRITE_TIMEOUT)
            .await?;
        Ok(info)
    }

    async fn append_inner(&self, validated: ValidatedBatches) -> Result<AppendInfo, StorageError> {
        let info = self
            .log
            .append_validated(validated, self.leader_epoch.get())
            .await?;
        // Appends complete in offset order: once this one is written, so is all before it.
        self.local_end
            .set(self.local_end.get().max(info.last_offset + 1));
        if info.duplicate {
            tracing::debug!(partition = %self.tp, base_offset = info.first_offset, "retried producer batch answered with its original offsets");
        } else {
            // Followers long-polling for new data.
            self.waiters.wake_all();
        }
        self.maybe_advance_high_watermark();
        Ok(info)
    }

    /// Leader: moves the high watermark to what every ISR member has, and wakes whoever waits
    /// on it. Never moves it back.
    fn maybe_advance_high_watermark(&self) {
        if !self.is_leader() {
            return;
        }
        let candidate = self
            .replicas
            .borrow()
            .high_watermark(self.node_id, self.local_end.get());
        if candidate > self.log.high_watermark() {
            self.log.set_high_watermark(candidate);
            self.waiters.wake_all();
            self.hw_waiters.wake_all();
        }
    }

    /// Reads for a consumer (whole batches below the high watermark) or for a follower (up to
    /// the log end, after checking that its log has not diverged from this one).
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
        if !spec.is_replica() && !self.high_watermark_settled() {
            return PartitionRead::error(ResponseError::OffsetNotAvailable);
        }
        let log_start_offset = self.log.log_start_offset();
        let mut out = PartitionRead {
            error: None,
            high_watermark: self.log.high_watermark(),
            last_stable_offset: self.log.high_watermark(),
            log_start_offset,
            log_end_offset: self.log.log_end_offset(),
            diverging_epoch: None,
            chunks: Vec::new(),
        };
        let limit = if spec.is_replica() {
            if !self.replicas.borrow().replicas.contains(&spec.replica_id) {
                out.error = Some(ResponseError::NotLeaderOrFollower);
                return out;
            }
            if let Some(diverging) = self.divergence(&spec) {
                out.diverging_epoch = Some(diverging);
                return out;
            }
            let end = self.log.log_end_offset();
            if spec.fetch_offset > end || spec.fetch_offset < log_start_offset {
                out.error = Some(ResponseError::OffsetOutOfRange);
                return out;
            }
            self.replicas.borrow_mut().record_fetch(
                spec.replica_id,
                spec.fetch_offset,
                end,
                Instant::now(),
            );
            self.maybe_advance_high_watermark();
            out.high_watermark = self.log.high_watermark();
            out.last_stable_offset = out.high_watermark;
            end
        } else {
            out.high_watermark
        };
        if spec.fetch_offset == limit {
            return out;
        }
        if spec.fetch_offset > limit {
            // Between the HW and the log end a consumer just waits (Kafka's answer): a new
            // leader's HW can trail what the old one showed until its followers report in.
            if spec.fetch_offset > self.log.log_end_offset() {
                out.error = Some(ResponseError::OffsetOutOfRange);
            }
            return out;
        }
        if spec.offsets_only {
            // The range check the log read would make.
            if spec.fetch_offset < log_start_offset {
                out.error = Some(ResponseError::OffsetOutOfRange);
            }
            return out;
        }
        match self
            .log
            .read(spec.fetch_offset, spec.max_bytes, limit)
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

    /// Kafka's divergence check for a follower fetch: the follower's last epoch must end here at
    /// or after its fetch offset; if not, the largest shared epoch and its end come back, and
    /// the follower truncates to it.
    fn divergence(&self, spec: &ReadSpec) -> Option<(i32, i64)> {
        if spec.last_fetched_epoch < 0 {
            return None;
        }
        match self.log.end_offset_for_epoch(spec.last_fetched_epoch) {
            Some((epoch, end))
                if epoch.0 == spec.last_fetched_epoch && end >= spec.fetch_offset =>
            {
                None
            }
            Some((epoch, end)) => Some((epoch.0, end)),
            // Nothing at or below that epoch here: the follower keeps nothing past our start.
            None => Some((-1, self.log.log_start_offset())),
        }
    }

    /// An ISR change this leader should propose now: a caught-up follower to add, or members
    /// that fell behind for longer than `lag` to drop. Marks the proposal in flight.
    pub fn isr_proposal(&self, lag: Duration) -> Option<IsrProposal> {
        if !self.is_leader() {
            return None;
        }
        let mut r = self.replicas.borrow_mut();
        let proposal = r
            .expansion(self.node_id, self.log.high_watermark())
            .or_else(|| r.shrink(self.node_id, Instant::now(), lag))?;
        r.proposal_in_flight = true;
        Some(proposal)
    }

    /// The controller's answer to a proposal (None: refused or lost; the next check retries).
    pub fn isr_proposal_done(&self, accepted: Option<(Vec<i32>, i32)>) {
        let (replicas, isr_before) = {
            let mut r = self.replicas.borrow_mut();
            r.proposal_in_flight = false;
            (r.replicas.clone(), r.isr.len())
        };
        if let Some((isr, partition_epoch)) = accepted {
            let changes = if isr.len() < isr_before {
                &self.isr_changes.shrinks
            } else {
                &self.isr_changes.expands
            };
            changes.set(changes.get() + 1);
            self.replicas
                .borrow_mut()
                .update(&replicas, &isr, partition_epoch);
            self.maybe_advance_high_watermark();
        }
    }

    /// Follower: appends the leader's batches unchanged and takes the leader's high watermark
    /// as far as this log reaches.
    pub async fn append_from_leader(
        &self,
        batches: Bytes,
        leader_high_watermark: i64,
    ) -> Result<(), StorageError> {
        if !batches.is_empty() {
            let info = self.log.append_replica(batches).await?;
            self.local_end
                .set(self.local_end.get().max(info.last_offset + 1));
        }
        let hw = leader_high_watermark.min(self.log.log_end_offset());
        if hw > self.log.high_watermark() {
            self.log.set_high_watermark(hw);
        }
        Ok(())
    }

    /// Follower: removes everything from `offset` on (a diverged tail). Never on a leader: its
    /// log is the one the others follow.
    pub async fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        if self.is_leader() {
            return Ok(());
        }
        self.log.truncate_to(offset).await?;
        self.local_end.set(self.log.log_end_offset());
        Ok(())
    }

    /// Follower behind the leader's log start: empties the log and restarts it there.
    pub async fn restart_at(&self, offset: i64) -> Result<(), StorageError> {
        if self.is_leader() {
            return Ok(());
        }
        self.log.truncate_fully_and_start_at(offset).await?;
        self.local_end.set(self.log.log_end_offset());
        Ok(())
    }

    /// True when a reader at `fetch_offset` has something to read (or an error to see): past
    /// the high watermark for a consumer, past the log end for a follower.
    pub fn has_data_for(&self, fetch_offset: i64, replica: bool) -> bool {
        if replica {
            fetch_offset != self.log.log_end_offset()
        } else {
            // Between the HW and the log end there is nothing to read yet and nothing wrong.
            fetch_offset < self.log.high_watermark() || fetch_offset > self.log.log_end_offset()
        }
    }

    /// Resolves when new data is appended (or the partition goes away).
    pub fn wait_for_append(&self) -> oneshot::Receiver<()> {
        self.waiters.register()
    }
}

/// Tasks parked until something changes; each wait is a oneshot that `wake_all` fires.
#[derive(Default)]
struct Waiters(RefCell<Vec<oneshot::Sender<()>>>);

impl Waiters {
    /// A receiver that resolves on the next `wake_all` (or when the list is dropped).
    fn register(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.0.borrow_mut();
        // Waits given up (timed out, request gone) would otherwise pile up between wakes.
        waiters.retain(|w| !w.is_canceled());
        waiters.push(tx);
        rx
    }

    fn wake_all(&self) {
        let waiters = std::mem::take(&mut *self.0.borrow_mut());
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

//! One consumer connection: Fetch requests for its partitions, one in flight, responses parsed
//! in place; counts records and value bytes, and in e2e mode reads each record's due time.
//! Runs on one client shard. Partitions are assigned, not balanced by a group.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_lite::AsyncWriteExt;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use skein_net::{encode_request, CorrelationId, RequestHeader};

use crate::batches::compressed_values;
use crate::clock;
use crate::conn::{connect, FrameReader, CLIENT_ID};
use crate::errors::error_name;
use crate::load::ShardCtx;
use crate::stats::{Latencies, ShardCounters};
use crate::wire::{
    batch_header, batch_layout::HEADER_BYTES, complete_batches, for_each_value,
    parse_fetch_response, FETCH_VERSION,
};

const OFFSET_OUT_OF_RANGE: i16 = 1;
/// After the producers finish, how long e2e consumers may take to read the last records.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct ConsumerUnit {
    pub id: usize,
    pub addr: SocketAddr,
    /// `(partition, first offset to read)`.
    pub partitions: Vec<(i32, i64)>,
    /// At the high watermark, start again from the log start (consume mode: the preloaded
    /// data is read over and over for the duration).
    pub rewind: bool,
    /// Read due times from record values (e2e).
    pub e2e: bool,
}

#[derive(Clone, Copy, Debug)]
struct PartitionState {
    partition: i32,
    offset: i64,
    log_start_offset: i64,
    high_watermark: i64,
}

pub async fn run(unit: ConsumerUnit, ctx: Rc<ShardCtx>) -> Result<()> {
    let cfg = &ctx.cfg;
    let mut parts: Vec<PartitionState> = unit
        .partitions
        .iter()
        .map(|&(partition, offset)| PartitionState {
            partition,
            offset,
            log_start_offset: offset,
            high_watermark: -1,
        })
        .collect();
    let mut frames = FrameReader::new(connect(unit.addr).await?);
    let topic = TopicName(StrBytes::from_string(cfg.topic.clone()));
    let counters = ctx.counters();
    let mut correlation_id = 0i32;
    let mut drain_deadline = None;
    loop {
        if ctx.phase.stopped() {
            if !unit.e2e {
                break;
            }
            if ctx.phase.producers_done() {
                let deadline = *drain_deadline
                    .get_or_insert_with(|| std::time::Instant::now() + DRAIN_TIMEOUT);
                let caught_up = parts.iter().all(|p| p.offset >= p.high_watermark);
                if caught_up || std::time::Instant::now() > deadline {
                    break;
                }
            }
        }
        correlation_id = correlation_id.wrapping_add(1);
        let request = fetch_request(cfg, &topic, &parts);
        let header = RequestHeader {
            api_key: ApiKey::Fetch,
            api_version: FETCH_VERSION,
            correlation_id: CorrelationId(correlation_id),
            client_id: Some(StrBytes::from_static_str(CLIENT_ID)),
        };
        let frame = encode_request(&header, &request.into()).context("encoding Fetch")?;
        frames
            .get_mut()
            .write_all(&frame)
            .await
            .with_context(|| format!("sending Fetch to {}", unit.addr))?;
        let frame = frames.next().await?;
        let now_ns = clock::now_ns();
        let measuring = ctx.phase.measuring();
        // The borrow ends with this block, before the next await.
        let (id, error, msgs, bytes) = {
            let mut latencies = ctx.latencies.borrow_mut();
            let (mut msgs, mut bytes) = (0u64, 0u64);
            let (id, error) = parse_fetch_response(frame, |p| {
                let Some(state) = parts.iter_mut().find(|s| s.partition == p.partition) else {
                    anyhow::bail!(
                        "Fetch answered for partition {} we did not ask for",
                        p.partition
                    );
                };
                if p.error_code != 0 {
                    ShardCounters::add(&counters.errors, 1);
                    ctx.note_error(format!(
                        "fetch from partition {}: {} ({})",
                        p.partition,
                        error_name(p.error_code),
                        p.error_code
                    ));
                    if p.error_code == OFFSET_OUT_OF_RANGE && p.log_start_offset >= 0 {
                        state.offset = p.log_start_offset;
                    }
                    return Ok(());
                }
                state.high_watermark = p.high_watermark;
                if p.log_start_offset >= 0 {
                    state.log_start_offset = p.log_start_offset;
                }
                for batch in complete_batches(p.records) {
                    let info = batch_header(batch).context("a fetched batch")?;
                    let last = info.base_offset + i64::from(info.last_offset_delta);
                    if last < state.offset {
                        continue; // before our position: the broker sends whole batches
                    }
                    msgs += u64::from(info.record_count);
                    let e2e = unit.e2e && measuring;
                    bytes +=
                        read_values(batch, &info, e2e, now_ns, ctx.run_start_ns, &mut latencies)?;
                    state.offset = last + 1;
                }
                if unit.rewind && state.high_watermark >= 0 && state.offset >= state.high_watermark
                {
                    state.offset = state.log_start_offset;
                }
                Ok(())
            })
            .with_context(|| format!("Fetch response from {}", unit.addr))?;
            (id, error, msgs, bytes)
        };
        anyhow::ensure!(
            id == correlation_id,
            "Fetch answered {id}, expected {correlation_id}"
        );
        if error != 0 {
            ShardCounters::add(&counters.errors, 1);
            ctx.note_error(format!("fetch: {} ({error})", error_name(error)));
        }
        ShardCounters::add(&counters.requests, 1);
        ShardCounters::add(&counters.consumed_msgs, msgs);
        ShardCounters::add(&counters.consumed_bytes, bytes);
        // While the broker answers at once every await above is ready, and glommio never
        // preempts a task: yield, or a busy consumer starves the producers on this shard.
        futures_lite::future::yield_now().await;
    }
    Ok(())
}

/// Value bytes of a batch (walking its records checks their framing too); with `e2e`, records
/// each value's due time against `now_ns`.
fn read_values(
    batch: &[u8],
    info: &crate::wire::BatchInfo,
    e2e: bool,
    now_ns: u64,
    run_start_ns: u64,
    latencies: &mut Latencies,
) -> Result<u64> {
    let mut record = |value: &[u8]| {
        if let Some(due) = value.get(..8).and_then(|b| b.try_into().ok()) {
            let due = u64::from_be_bytes(due);
            // Records of an earlier run on the same topic carry older times: not ours.
            if (run_start_ns..=now_ns).contains(&due) {
                latencies.record_e2e(now_ns, due);
            }
        }
    };
    if !info.compressed {
        let records = &batch[HEADER_BYTES..];
        let mut value_bytes = 0u64;
        for_each_value(records, info.record_count, |at, len| {
            value_bytes += len as u64;
            if e2e {
                record(&records[at..at + len]);
            }
        })?;
        return Ok(value_bytes);
    }
    let values = compressed_values(batch)?;
    if e2e {
        values.iter().for_each(|v| record(v));
    }
    Ok(values.iter().map(|v| v.len() as u64).sum())
}

fn fetch_request(
    cfg: &crate::cli::Config,
    topic: &TopicName,
    parts: &[PartitionState],
) -> FetchRequest {
    let partitions = parts
        .iter()
        .map(|p| {
            FetchPartition::default()
                .with_partition(p.partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(p.offset)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(cfg.partition_fetch_bytes)
        })
        .collect();
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(cfg.fetch_max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(cfg.fetch_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic.clone())
            .with_partitions(partitions)])
}

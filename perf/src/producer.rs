//! One producer connection: sends pre-built Produce requests on schedule (or as fast as the
//! in-flight window allows) and measures each acknowledgement; runs on one client shard.
//!
//! The writer loop and the acknowledgement reader are two tasks over the two halves of the
//! socket, so up to `max_in_flight` requests are on the wire at once, as in a Kafka producer.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use glommio::sync::Semaphore;

use crate::batches;
use crate::cli::CompressionArg;
use crate::clock;
use crate::conn::{connect, FrameReader, CLIENT_ID};
use crate::errors::error_name;
use crate::load::ShardCtx;
use crate::schedule::{record_due_ns, records_per_batch, Schedule};
use crate::stats::ShardCounters;
use crate::wire::{parse_produce_response, ProduceTemplate};

/// A sleep longer than this is cut short, so a stop request is noticed quickly.
const SLEEP_SLICE: Duration = Duration::from_millis(50);
/// How long in-flight requests may take to be acknowledged after the stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What one producer connection does.
#[derive(Clone, Debug)]
pub struct ProducerUnit {
    pub id: usize,
    pub addr: SocketAddr,
    pub partitions: Vec<i32>,
    /// This unit's share of the total rate (its partitions over all partitions).
    pub share: f64,
    /// Records to send before stopping on its own (count mode, preload).
    pub quota: Option<u64>,
    /// Write each record's due time into its value (e2e).
    pub stamp: bool,
}

/// A request on the wire, waiting for its acknowledgement.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    correlation_id: i32,
    due_ns: u64,
    sent_ns: u64,
}

/// Shape of every request this unit sends, shared with the acknowledgement reader.
#[derive(Clone, Copy, Debug)]
struct Shape {
    records_per_batch: usize,
    records_per_request: u64,
    payload_bytes_per_batch: u64,
    record_interval_ns: f64,
}

pub async fn run(unit: ProducerUnit, ctx: Rc<ShardCtx>) -> Result<()> {
    let cfg = &ctx.cfg;
    let pace = cfg.pace(unit.share);
    let n = records_per_batch(
        pace,
        cfg.batch_records,
        cfg.linger_ms,
        unit.partitions.len(),
    );
    let value = batches::payload(cfg.message_bytes, unit.id as u64 + 1);
    let build_all = |times: Option<&dyn Fn(usize) -> u64>| -> Result<ProduceTemplate> {
        let now_ms = clock::now_ms();
        let batches = unit
            .partitions
            .iter()
            .map(|&p| {
                Ok((
                    p,
                    batches::build(&value, n, now_ms, cfg.compression, times)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        ProduceTemplate::new(
            CLIENT_ID,
            &cfg.topic,
            cfg.acks,
            cfg.request_timeout_ms,
            &batches,
        )
    };
    let mut template = build_all(None)?;
    let schedule_start = clock::now_ns();
    let mut schedule = Schedule::new(pace, schedule_start, template.records());
    let shape = Shape {
        records_per_batch: n as usize,
        records_per_request: template.records(),
        payload_bytes_per_batch: template.payload_bytes() / unit.partitions.len() as u64,
        record_interval_ns: schedule.record_interval_ns(),
    };
    let (rd, mut wr) = futures_lite::io::split(connect(unit.addr).await?);
    let inflight = Rc::new(RefCell::new(VecDeque::<InFlight>::new()));
    let window = Rc::new(Semaphore::new(u64::from(cfg.max_in_flight)));
    let acks = cfg.acks != 0;
    let failure: Rc<RefCell<Option<anyhow::Error>>> = Rc::new(RefCell::new(None));
    let reader = acks.then(|| {
        let (ctx, inflight, window, failure) = (
            ctx.clone(),
            inflight.clone(),
            window.clone(),
            failure.clone(),
        );
        glommio::spawn_local(async move {
            if let Err(e) = read_acks(rd, &ctx, &inflight, &window, shape).await {
                *failure.borrow_mut() = Some(e);
                window.close(); // wakes the writer, which reports the failure
            }
        })
    });
    let mut correlation_id = 0i32;
    let mut sent_records = 0u64;
    let counters = ctx.counters();
    loop {
        if ctx.phase.stopped() || unit.quota.is_some_and(|q| sent_records >= q) {
            break;
        }
        let due = schedule.next_due_ns();
        if let Some(wait) = due.and_then(clock::until) {
            glommio::timer::sleep(wait.min(SLEEP_SLICE)).await;
            continue;
        }
        if acks && window.acquire(1).await.is_err() {
            break; // closed by a failed reader
        }
        let sent_ns = clock::now_ns();
        let due_ns = due.unwrap_or(sent_ns);
        if unit.stamp {
            let ri = shape.record_interval_ns;
            let nn = shape.records_per_batch;
            if cfg.compression == CompressionArg::None {
                template.stamp(clock::now_ms(), |_, r| record_due_ns(due_ns, r, nn, ri));
            } else {
                template = build_all(Some(&|r| record_due_ns(due_ns, r, nn, ri)))?;
            }
        }
        correlation_id = correlation_id.wrapping_add(1);
        template.set_correlation_id(correlation_id);
        if acks {
            inflight.borrow_mut().push_back(InFlight {
                correlation_id,
                due_ns,
                sent_ns,
            });
        }
        write(&mut wr, template.frame(), unit.addr).await?;
        schedule.advance();
        if !acks || !schedule.is_open_loop() {
            // Max rate (or acks 0) never waits on a timer: let the shard's other tasks run.
            futures_lite::future::yield_now().await;
        }
        sent_records += shape.records_per_request;
        ShardCounters::add(&counters.requests, 1);
        if !acks {
            // Nothing will be acknowledged: count what was handed to the socket.
            ShardCounters::add(&counters.produced_msgs, shape.records_per_request);
            ShardCounters::add(&counters.produced_bytes, template.payload_bytes());
        }
    }
    if acks {
        let drained = glommio::timer::timeout(DRAIN_TIMEOUT, async {
            let _ = window.acquire(u64::from(cfg.max_in_flight)).await;
            Ok(())
        })
        .await;
        if let Some(reader) = reader {
            reader.cancel().await;
        }
        if let Some(e) = failure.borrow_mut().take() {
            return Err(e.context(format!("producer {} to {}", unit.id, unit.addr)));
        }
        if drained.is_err() {
            bail!(
                "producer {}: {} requests unacknowledged {DRAIN_TIMEOUT:?} after the stop",
                unit.id,
                inflight.borrow().len()
            );
        }
    }
    Ok(())
}

async fn write(wr: &mut WriteHalf<TcpStream>, frame: &[u8], addr: SocketAddr) -> Result<()> {
    wr.write_all(frame)
        .await
        .with_context(|| format!("sending a Produce request to {addr}"))
}

/// Reads acknowledgements in order, records latencies and opens the window for the next send.
async fn read_acks(
    rd: ReadHalf<TcpStream>,
    ctx: &ShardCtx,
    inflight: &RefCell<VecDeque<InFlight>>,
    window: &Semaphore,
    shape: Shape,
) -> Result<()> {
    let mut frames = FrameReader::new(rd);
    let mut results = Vec::new();
    let counters = ctx.counters();
    loop {
        let frame = frames.next().await?;
        let ack_ns = clock::now_ns();
        let correlation_id = parse_produce_response(frame, &mut results)?;
        let sent = inflight.borrow_mut().pop_front();
        let sent = sent.context("an acknowledgement with no request in flight")?;
        ensure!(
            correlation_id == sent.correlation_id,
            "acknowledgement for request {correlation_id}, expected {}",
            sent.correlation_id
        );
        let mut ok_batches = 0u64;
        for r in &results {
            if r.error_code == 0 {
                ok_batches += 1;
            } else {
                ShardCounters::add(&counters.errors, 1);
                ctx.note_error(format!(
                    "produce to partition {}: {} ({})",
                    r.partition,
                    error_name(r.error_code),
                    r.error_code
                ));
            }
        }
        ShardCounters::add(
            &counters.produced_msgs,
            ok_batches * shape.records_per_batch as u64,
        );
        ShardCounters::add(
            &counters.produced_bytes,
            ok_batches * shape.payload_bytes_per_batch,
        );
        if ctx.phase.measuring() && ok_batches == results.len() as u64 {
            let n = shape.records_per_batch;
            let ri = shape.record_interval_ns;
            ctx.latencies.borrow_mut().record_produce(
                ack_ns,
                sent.sent_ns,
                shape.records_per_request as usize,
                |j| record_due_ns(sent.due_ns, j % n, n, ri),
            );
        }
        window.signal(1);
        // Acknowledgements that are already buffered read without waiting: yield so the
        // writer and the other tasks of this shard keep their schedule.
        futures_lite::future::yield_now().await;
    }
}

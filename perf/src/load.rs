//! Runs producers and consumers on pinned glommio shards and watches them from the main thread:
//! phases (warm-up, measuring, stop), a progress line per interval, throughput over time, and
//! at the end every shard's latency histograms merged.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use glommio::{LocalExecutorBuilder, Placement};
use serde::Serialize;

use crate::cli::Config;
use crate::clock;
use crate::consumer::{self, ConsumerUnit};
use crate::producer::{self, ProducerUnit};
use crate::stats::{Latencies, Phase, ShardCounters, Totals};

/// Distinct error messages kept for the report; the counters have the full count.
const ERRORS_KEPT_MAX: usize = 20;

/// What one client shard runs.
#[derive(Clone, Debug, Default)]
pub struct ShardPlan {
    pub cpu: usize,
    pub producers: Vec<ProducerUnit>,
    pub consumers: Vec<ConsumerUnit>,
}

/// State shared by the tasks of one shard.
pub struct ShardCtx {
    pub cfg: Arc<Config>,
    pub phase: Arc<Phase>,
    pub latencies: RefCell<Latencies>,
    counters: Arc<Vec<ShardCounters>>,
    index: usize,
    errors: Arc<Mutex<Vec<String>>>,
    /// Records carrying an earlier due time belong to an earlier run.
    pub run_start_ns: u64,
}

impl ShardCtx {
    pub fn counters(&self) -> &ShardCounters {
        &self.counters[self.index]
    }

    /// Keeps the first few distinct error messages (errors are rare, so the lock is too).
    pub fn note_error(&self, message: String) {
        if let Ok(mut e) = self.errors.lock() {
            if e.len() < ERRORS_KEPT_MAX && !e.contains(&message) {
                e.push(message);
            }
        }
    }
}

/// How a load run ends.
#[derive(Clone, Copy, Debug)]
pub struct RunLength {
    pub warmup_s: f64,
    /// Measured seconds; `None` runs until the producers meet their quotas.
    pub duration_s: Option<f64>,
    /// Stop once this many records were consumed (consume mode with --messages).
    pub consumed_target: Option<u64>,
}

/// One progress interval.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the load started (end of the interval).
    pub t_s: f64,
    pub measuring: bool,
    pub produce_mb_s: f64,
    pub produce_msgs_s: f64,
    pub consume_mb_s: f64,
    pub consume_msgs_s: f64,
    pub errors: u64,
}

/// What a load run measured.
#[derive(Debug)]
pub struct RunOutput {
    /// Seconds between the end of the warm-up and the stop.
    pub window_s: f64,
    /// Counts inside the window.
    pub window: Totals,
    pub series: Vec<Sample>,
    pub latencies: Latencies,
    pub errors: Vec<String>,
    pub shards: usize,
}

/// Decimal megabytes, as network and disk throughput are quoted.
pub const MB: f64 = 1e6;

pub fn run(
    cfg: &Arc<Config>,
    plans: Vec<ShardPlan>,
    length: RunLength,
    quiet: bool,
) -> Result<RunOutput> {
    let counters: Arc<Vec<ShardCounters>> =
        Arc::new((0..plans.len()).map(|_| ShardCounters::default()).collect());
    let phase = Arc::new(Phase::default());
    let errors = Arc::new(Mutex::new(Vec::new()));
    let producers_running = Arc::new(AtomicUsize::new(
        plans.iter().map(|p| p.producers.len()).sum(),
    ));
    let has_producers = producers_running.load(Ordering::Relaxed) > 0;
    let shards_running = Arc::new(AtomicUsize::new(plans.len()));
    let producers_done_ns = Arc::new(AtomicU64::new(0));
    let run_start_ns = clock::now_ns();
    let mut handles = Vec::with_capacity(plans.len());
    for (index, plan) in plans.into_iter().enumerate() {
        let cfg = cfg.clone();
        let (phase, counters, errors) = (phase.clone(), counters.clone(), errors.clone());
        let (producers_running, shards_running) =
            (producers_running.clone(), shards_running.clone());
        let producers_done_ns = producers_done_ns.clone();
        let cpu = plan.cpu;
        let mut builder =
            LocalExecutorBuilder::new(Placement::Fixed(cpu)).name(&format!("perf-{index}"));
        if cfg.spin_us > 0 {
            builder = builder.spin_before_park(Duration::from_micros(cfg.spin_us));
        }
        let handle = builder
            .spawn(move || async move {
                let ctx = Rc::new(ShardCtx {
                    cfg,
                    phase: phase.clone(),
                    latencies: RefCell::new(Latencies::new()?),
                    counters,
                    index,
                    errors,
                    run_start_ns,
                });
                let result = run_shard(plan, &ctx, &producers_running, &producers_done_ns).await;
                shards_running.fetch_sub(1, Ordering::Release);
                if result.is_err() {
                    // One failed shard ends the run rather than skewing it.
                    phase.stop.store(true, Ordering::Relaxed);
                    phase.producers_done.store(true, Ordering::Relaxed);
                }
                result.map(|()| ctx.latencies.borrow().clone())
            })
            .map_err(|e| anyhow!("starting the client shard on CPU {cpu}: {e}"))?;
        handles.push(handle);
    }
    let shards = handles.len();
    let watched = watch(
        cfg,
        &counters,
        &phase,
        &shards_running,
        &producers_done_ns,
        has_producers,
        length,
        quiet,
    );
    let mut latencies = Latencies::new()?;
    let mut first_error = None;
    for h in handles {
        match h
            .join()
            .map_err(|e| anyhow!("client shard panicked or failed: {e}"))
        {
            Ok(Ok(l)) => latencies.merge(&l)?,
            Ok(Err(e)) | Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let (window_s, window, series) = watched;
    let errors = errors.lock().map(|e| e.clone()).unwrap_or_default();
    Ok(RunOutput {
        window_s,
        window,
        series,
        latencies,
        errors,
        shards,
    })
}

async fn run_shard(
    plan: ShardPlan,
    ctx: &Rc<ShardCtx>,
    producers_running: &AtomicUsize,
    producers_done_ns: &AtomicU64,
) -> Result<()> {
    let mut producers = Vec::new();
    for unit in plan.producers {
        let ctx = ctx.clone();
        producers.push(glommio::spawn_local(async move {
            let id = unit.id;
            producer::run(unit, ctx)
                .await
                .with_context(|| format!("producer {id}"))
        }));
    }
    let mut consumers = Vec::new();
    for unit in plan.consumers {
        let ctx = ctx.clone();
        consumers.push(glommio::spawn_local(async move {
            let id = unit.id;
            consumer::run(unit, ctx)
                .await
                .with_context(|| format!("consumer {id}"))
        }));
    }
    let mut result = Ok(());
    for p in producers {
        let r = p.await;
        if producers_running.fetch_sub(1, Ordering::AcqRel) == 1 {
            producers_done_ns.store(clock::now_ns(), Ordering::Release);
            ctx.phase.producers_done.store(true, Ordering::Release);
        }
        if r.is_err() {
            ctx.phase.stop.store(true, Ordering::Relaxed);
            ctx.phase.producers_done.store(true, Ordering::Relaxed);
        }
        result = result.and(r);
    }
    for c in consumers {
        result = result.and(c.await);
    }
    result
}

/// The main thread's loop: progress lines, samples and phase changes, until every shard ends.
#[allow(clippy::too_many_arguments)]
fn watch(
    cfg: &Config,
    counters: &[ShardCounters],
    phase: &Phase,
    shards_running: &AtomicUsize,
    producers_done_ns: &AtomicU64,
    has_producers: bool,
    length: RunLength,
    quiet: bool,
) -> (f64, Totals, Vec<Sample>) {
    let start = clock::now_ns();
    let s = |t: u64| (t - start) as f64 / 1e9;
    let interval = Duration::from_millis(cfg.interval_ms);
    let warmup_end = start + (length.warmup_s * 1e9) as u64;
    let mut measure_start: Option<(u64, Totals)> = None;
    let mut measure_end: Option<(u64, Totals)> = None;
    let mut series = Vec::new();
    let (mut last_t, mut last) = (start, Totals::read(counters));
    let mut next_tick = start + interval.as_nanos() as u64;
    if length.warmup_s <= 0.0 {
        measure_start = Some((start, last));
        phase.measuring.store(true, Ordering::Relaxed);
    }
    loop {
        // Wake at the next tick or phase change, whichever is first.
        let mut wake = next_tick;
        match (&measure_start, &measure_end, length.duration_s) {
            (None, _, _) => wake = wake.min(warmup_end),
            (Some((t0, _)), None, Some(d)) => wake = wake.min(t0 + (d * 1e9) as u64),
            _ => {}
        }
        let done = shards_running.load(Ordering::Acquire) == 0;
        if !done {
            if let Some(d) = clock::until(wake) {
                std::thread::sleep(d.min(Duration::from_millis(20)));
                if clock::now_ns() < wake && shards_running.load(Ordering::Acquire) > 0 {
                    continue;
                }
            }
        }
        let now = clock::now_ns();
        let totals = Totals::read(counters);
        // The interval ending now is labelled by the phase it ran in.
        let measured_interval = measure_start.is_some() && measure_end.is_none();
        if measure_start.is_none() && now >= warmup_end {
            phase.measuring.store(true, Ordering::Relaxed);
            measure_start = Some((now, totals));
        }
        if let (Some((t0, _)), None) = (&measure_start, &measure_end) {
            let by_time = length
                .duration_s
                .is_some_and(|d| now >= t0 + (d * 1e9) as u64);
            let by_count = length
                .consumed_target
                .is_some_and(|n| totals.consumed_msgs >= n);
            if by_time || by_count || phase.stopped() {
                phase.stop.store(true, Ordering::Relaxed);
                measure_end = Some((now, totals));
            } else if has_producers && phase.producers_done() && length.duration_s.is_none() {
                // Quota runs end when the last producer does.
                let t = producers_done_ns.load(Ordering::Acquire).max(*t0);
                phase.stop.store(true, Ordering::Relaxed);
                measure_end = Some((t, totals));
            }
        }
        if now >= next_tick || done {
            let d = totals.minus(&last);
            let dt = (now - last_t) as f64 / 1e9;
            let sample = Sample {
                t_s: s(now),
                measuring: measured_interval,
                produce_mb_s: d.produced_bytes as f64 / MB / dt,
                produce_msgs_s: d.produced_msgs as f64 / dt,
                consume_mb_s: d.consumed_bytes as f64 / MB / dt,
                consume_msgs_s: d.consumed_msgs as f64 / dt,
                errors: d.errors,
            };
            if !quiet {
                print_progress(&sample, &totals);
            }
            if dt > 0.0 {
                series.push(sample);
            }
            (last_t, last) = (now, totals);
            next_tick = now + interval.as_nanos() as u64;
        }
        if done {
            break;
        }
    }
    let (t0, first) = measure_start.unwrap_or((start, Totals::default()));
    let (t1, end) = measure_end.unwrap_or((clock::now_ns(), Totals::read(counters)));
    (
        (t1.saturating_sub(t0)) as f64 / 1e9,
        end.minus(&first),
        series,
    )
}

fn print_progress(s: &Sample, totals: &Totals) {
    let phase = if s.measuring {
        "measure"
    } else {
        "warm-up/drain"
    };
    let mut line = format!("[{:7.1}s] {phase:<13}", s.t_s);
    if s.produce_msgs_s > 0.0 || totals.produced_msgs > 0 {
        line += &format!(
            "  produce {:9.1} MB/s {:11.0} msg/s",
            s.produce_mb_s, s.produce_msgs_s
        );
    }
    if s.consume_msgs_s > 0.0 || totals.consumed_msgs > 0 {
        line += &format!(
            "  consume {:9.1} MB/s {:11.0} msg/s",
            s.consume_mb_s, s.consume_msgs_s
        );
    }
    if totals.errors > 0 {
        line += &format!("  errors {}", totals.errors);
    }
    println!("{line}");
}

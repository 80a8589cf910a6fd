//! `skein-perf`: a Kafka-protocol load generator for Skein (and any Kafka-compatible broker).
//!
//! `skein-perf produce|consume|e2e [options]` sets up the topic, runs the load on pinned glommio
//! shards, prints progress and a summary, and writes `result.json` and `report.html` (with
//! `latency.svg` and `throughput.svg`) into the output directory. See "Performance" in README.md.

mod batches;
mod cli;
mod clock;
mod cluster;
mod conn;
mod consumer;
mod errors;
mod load;
mod plan;
mod producer;
mod report;
mod schedule;
mod stats;
mod wire;
mod workload;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use glommio::LocalExecutorBuilder;

use cli::{Args, Config, Mode};
use load::RunLength;
use plan::{ConsumerSpec, ProducerSpec};
use report::{Preload, Results};

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list_workloads {
        for w in &workload::WORKLOADS {
            println!(
                "{:<40} {:>3} partitions  {:>5} B  RF {}  acks {:>2}  {}",
                w.name, w.partitions, w.message_bytes, w.replication_factor, w.acks, w.description
            );
        }
        return ExitCode::SUCCESS;
    }
    match Config::resolve(&args).and_then(execute) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skein-perf: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cfg: Config) -> Result<()> {
    raise_memlock_limit();
    let cfg = Arc::new(cfg);
    if let Some(w) = cfg.workload.and_then(workload::find) {
        if w.needs_replication() {
            eprintln!(
                "skein-perf: workload {} needs replication factor {} on {} brokers",
                w.name, w.replication_factor, w.brokers
            );
        }
    }
    // Setup runs on a glommio executor of its own on this thread; the load runs on the shards.
    let admin = LocalExecutorBuilder::default()
        .name("perf-admin")
        .make()
        .map_err(|e| anyhow::anyhow!("starting the setup executor: {e}"))?;
    let layout = admin.run(cluster::prepare_topic(&cfg))?;
    println!(
        "skein-perf: topic {} ({} partitions on {} brokers), client CPUs {:?}",
        cfg.topic,
        layout.leaders.len(),
        layout.brokers,
        cfg.cpus
    );
    if cfg.setup_only {
        return Ok(());
    }
    let duration = || cfg.messages.is_none().then_some(cfg.duration_s);
    let (out, preload) = match cfg.mode {
        Mode::Produce => {
            let spec = ProducerSpec {
                count: cfg.producers,
                records: cfg.messages,
                stamp: false,
            };
            let plans = plan::plan(&cfg.cpus, &layout.leaders, Some(spec), None);
            let length = RunLength {
                warmup_s: cfg.warmup_s,
                duration_s: duration(),
                consumed_target: None,
            };
            (load::run(&cfg, plans, length, false)?, None)
        }
        Mode::E2e => {
            let starts = admin.run(cluster::offsets(
                &cfg.topic,
                &layout.leaders,
                cluster::LATEST,
            ))?;
            let spec = ProducerSpec {
                count: cfg.producers,
                records: cfg.messages,
                stamp: true,
            };
            let cspec = ConsumerSpec {
                count: cfg.consumers,
                rewind: false,
                e2e: true,
            };
            let plans = plan::plan(
                &cfg.cpus,
                &layout.leaders,
                Some(spec),
                Some((cspec, &starts)),
            );
            let length = RunLength {
                warmup_s: cfg.warmup_s,
                duration_s: duration(),
                consumed_target: None,
            };
            (load::run(&cfg, plans, length, false)?, None)
        }
        Mode::Consume => consume(&cfg, &admin, &layout)?,
    };
    let results = Results::new(&cfg, &out, layout.brokers, preload);
    print!("{}", results.summary());
    results.write(&cfg.output)?;
    println!(
        "   results: {}/result.json, report.html",
        cfg.output.display()
    );
    if out.window.produced_msgs + out.window.consumed_msgs == 0 {
        bail!("nothing was produced or consumed in the measured window");
    }
    Ok(())
}

/// Preloads the topic (max rate, not measured), then consumes it from the start.
fn consume(
    cfg: &Arc<Config>,
    admin: &glommio::LocalExecutor,
    layout: &cluster::TopicLayout,
) -> Result<(load::RunOutput, Option<Preload>)> {
    let records = cfg.preload_bytes.div_ceil(cfg.message_bytes as u64).max(1);
    println!(
        "skein-perf: preloading {} MB ({records} records) before consuming",
        cfg.preload_bytes / 1_000_000
    );
    let spec = ProducerSpec {
        count: cfg.producers,
        records: Some(records),
        stamp: false,
    };
    let plans = plan::plan(&cfg.cpus, &layout.leaders, Some(spec), None);
    let length = RunLength {
        warmup_s: 0.0,
        duration_s: None,
        consumed_target: None,
    };
    let pre = load::run(cfg, plans, length, false).context("preloading the topic")?;
    let preload = Preload {
        bytes: pre.window.produced_bytes,
        seconds: pre.window_s,
    };
    let starts = admin.run(cluster::offsets(
        &cfg.topic,
        &layout.leaders,
        cluster::EARLIEST,
    ))?;
    let cspec = ConsumerSpec {
        count: cfg.consumers,
        rewind: true,
        e2e: false,
    };
    let plans = plan::plan(&cfg.cpus, &layout.leaders, None, Some((cspec, &starts)));
    let length = RunLength {
        warmup_s: cfg.warmup_s,
        duration_s: cfg.messages.is_none().then_some(cfg.duration_s),
        consumed_target: cfg.messages,
    };
    Ok((load::run(cfg, plans, length, false)?, Some(preload)))
}

/// glommio locks its io_uring buffers in memory: raise the limit as far as allowed (to
/// unlimited as root, else to the hard limit), and warn only when that stays small.
fn raise_memlock_limit() {
    /// Enough for the executors of a 16-core client (glommio's default io memory each).
    const MEMLOCK_BYTES_MIN: u64 = 512 << 20;
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid, owned rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut current) } != 0 {
        return;
    }
    for wanted in [libc::RLIM_INFINITY, current.rlim_max] {
        let limit = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: wanted.max(current.rlim_max),
        };
        // SAFETY: setrlimit reads a valid, initialised rlimit struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } == 0 {
            current.rlim_cur = wanted;
            break;
        }
    }
    if current.rlim_cur != libc::RLIM_INFINITY && current.rlim_cur < MEMLOCK_BYTES_MIN {
        eprintln!(
            "skein-perf: RLIMIT_MEMLOCK is {} bytes; glommio may fail to start (ulimit -l unlimited)",
            current.rlim_cur
        );
    }
}

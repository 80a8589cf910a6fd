//! The `skein` binary: `skein broker` runs a node (one pinned shard per configured core);
//! `skein layout` prints which partition lives on which core.

mod admin;
mod clock;
mod config;
mod group;
mod kafka;
mod limits;
mod metadata;
mod metadata_store;
mod partition;
mod producer_ids;
mod settings;
mod shard;
mod topic_config;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use glommio::{LocalExecutorBuilder, Placement};

use config::LayoutConfig;
use metadata::{BrokerEndpoint, ClusterMetadata};
use shard::ids::ShardId;
use shard::mesh::MeshBoot;
use shard::ShardBoot;

#[derive(Parser)]
#[command(
    name = "skein",
    version,
    about = "A Kafka-compatible, thread-per-core log broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker. Without --config: a single node on 127.0.0.1:9092, data in ./skein-data.
    Broker {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print which partition lives on which shard and core.
    Layout {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKEIN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Broker { config } => run_broker(&load_layout(config.as_deref())?),
        Command::Layout { config } => print_layout(&load_layout(config.as_deref())?),
    }
}

fn load_layout(path: Option<&Path>) -> anyhow::Result<LayoutConfig> {
    Ok(match path {
        Some(p) => LayoutConfig::load(p)?,
        None => LayoutConfig::embedded_default()?,
    })
}

fn print_layout(layout: &LayoutConfig) -> anyhow::Result<()> {
    let path = metadata_store::path_in(&layout.data_dir);
    if !path.exists() {
        println!("no topics yet ({} does not exist)", path.display());
        return Ok(());
    }
    let md = metadata_store::load_or_init(&layout.data_dir, layout.node_id)?;
    println!("{:<8} {:<6} {:<10} partitions", "shard", "cpu", "count");
    for (i, cpu) in layout.shard_cpus.iter().enumerate() {
        let owned: Vec<String> = md
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(move |(_, p)| p.shard.index() == i)
                    .map(move |(n, _)| format!("{}-{n}", t.name))
            })
            .collect();
        println!(
            "{:<8} {:<6} {:<10} {}",
            i,
            cpu,
            owned.len(),
            owned.join(" ")
        );
    }
    Ok(())
}

fn run_broker(layout: &LayoutConfig) -> anyhow::Result<()> {
    raise_memlock_limit();
    // Parsed so configs written for the full cluster load today; said loudly so nobody
    // believes they are served.
    if let Some(addr) = layout.internal_listener {
        tracing::warn!(%addr, "listeners.internal is not served yet (controller RPC is not built)");
    }
    if let Some(addr) = layout.metrics_listener {
        tracing::warn!(%addr, "listeners.metrics is not served yet (metrics are not built)");
    }
    if layout.controller_voters.len() > 1 {
        bail!("controller.voters: multi-node clusters are not built yet; use a single node");
    }
    let mut md = metadata_store::load_or_init(&layout.data_dir, layout.node_id)
        .with_context(|| format!("loading metadata from {}", layout.data_dir.display()))?;
    remove_orphan_partition_dirs(&layout.data_dir, &md)?;
    check_placement(layout, &md)?;

    // Resolve port 0 once so every shard binds the same port with SO_REUSEPORT. The reservation
    // socket is bound but never listens, so the kernel routes no connection to it.
    let reservation = socket2::Socket::new(
        socket2::Domain::for_address(layout.kafka_listener),
        socket2::Type::STREAM,
        None,
    )?;
    reservation.set_reuse_port(true)?;
    reservation
        .bind(&layout.kafka_listener.into())
        .with_context(|| format!("cannot bind the Kafka listener {}", layout.kafka_listener))?;
    let kafka_addr = reservation
        .local_addr()?
        .as_socket()
        .context("listener address is not an IP address")?;

    let (host, port) = layout.advertised_endpoint(kafka_addr.port());
    md.brokers = vec![BrokerEndpoint {
        node_id: layout.node_id,
        host,
        port,
        rack: None,
    }];
    let md = Arc::new(md);
    let layout = Arc::new(layout.clone());
    let shutdown = Arc::new(AtomicBool::new(false));
    install_signal_handlers(shutdown.clone())?;
    let ready = Arc::new(AtomicUsize::new(0));
    let mesh = MeshBoot::new(layout.shard_count());
    let failed = Arc::new(AtomicBool::new(false));

    let mut handles = Vec::new();
    for (i, cpu) in layout.shard_cpus.iter().enumerate() {
        let boot = ShardBoot {
            id: ShardId(u16::try_from(i).context("too many shards")?),
            layout: layout.clone(),
            metadata: md.clone(),
            mesh: mesh.clone(),
            ready: ready.clone(),
            shutdown: shutdown.clone(),
            kafka_addr,
        };
        let handle = LocalExecutorBuilder::new(Placement::Fixed(*cpu))
            .name(&format!("skein-shard-{i}"))
            .spawn({
                let failed = failed.clone();
                move || async move {
                    let r = shard::run(boot).await;
                    if r.is_err() {
                        failed.store(true, Ordering::Release);
                    }
                    r
                }
            })
            .map_err(|e| anyhow::anyhow!("starting shard {i} on CPU {cpu}: {e}"))?;
        handles.push(handle);
    }
    while ready.load(Ordering::Acquire) < layout.shard_count() {
        if failed.load(Ordering::Acquire) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(reservation);
    if ready.load(Ordering::Acquire) == layout.shard_count() {
        eprintln!("skein: listening on {kafka_addr}");
        tracing::info!(shards = layout.shard_count(), data_dir = %layout.data_dir.display(), "broker ready");
    }
    let mut failed = None;
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                shutdown.store(true, Ordering::Release);
                failed.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                shutdown.store(true, Ordering::Release);
                failed.get_or_insert_with(|| format!("shard {i} crashed: {e}"));
            }
        }
    }
    if let Some(e) = failed {
        bail!("{e}");
    }
    tracing::info!("clean shutdown complete");
    Ok(())
}

/// Every partition must sit on a shard this layout has (the shard count may not shrink under
/// existing data without moving it).
fn check_placement(layout: &LayoutConfig, md: &ClusterMetadata) -> anyhow::Result<()> {
    for t in md.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.shard.index() >= layout.shard_count() {
                bail!(
                    "partition {}-{i} lives on shard {} but `cores.shards` configures only {} shards",
                    t.name,
                    p.shard.0,
                    layout.shard_count()
                );
            }
        }
    }
    Ok(())
}

/// Partition directories of deleted topics whose removal a crash interrupted: removed before
/// any shard starts, so a re-created topic never sees old data.
fn remove_orphan_partition_dirs(data_dir: &Path, md: &ClusterMetadata) -> anyhow::Result<()> {
    for entry in
        std::fs::read_dir(data_dir).with_context(|| format!("reading {}", data_dir.display()))?
    {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        let Some((topic, part)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(part) = part.parse::<i32>() else {
            continue;
        };
        if md.partition(topic, part).is_none() {
            tracing::warn!(dir = %entry.path().display(), "removing the log of a deleted partition");
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// glommio locks its io_uring buffers in memory; root may raise the limit, others get a warning.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid, initialised rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; keeping the current limit");
    }
}

/// SIGINT/SIGTERM request a clean shutdown: shards stop accepting, flush and mark logs clean.
fn install_signal_handlers(shutdown: Arc<AtomicBool>) -> anyhow::Result<()> {
    // SAFETY: sigset operations on a zeroed, local sigset_t; pthread_sigmask on this thread,
    // before the shard threads exist, so they inherit the mask and only the waiter sees signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            bail!("blocking SIGINT/SIGTERM failed");
        }
        std::thread::Builder::new()
            .name("skein-signals".into())
            .spawn(move || {
                let mut sig: libc::c_int = 0;
                if libc::sigwait(&set, &mut sig) == 0 {
                    tracing::info!(signal = sig, "shutting down");
                    shutdown.store(true, Ordering::Release);
                }
            })?;
    }
    Ok(())
}

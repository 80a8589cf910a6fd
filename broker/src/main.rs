//! The `skein` binary: `skein broker` runs a node (one pinned shard per configured core);
//! `skein layout` prints which partition lives on which core; `skein topic|group|cluster|
//! leader|partition` administer any Kafka-protocol cluster.

mod admin;
mod check;
mod cli;
mod clock;
mod cluster;
mod config;
mod group;
mod kafka;
mod limits;
mod logging;
mod metadata;
mod metrics;
mod partition;
mod producer_ids;
mod quota;
mod replica;
mod replication;
mod sasl;
mod settings;
mod shard;
mod throttle;
mod tls;
mod topic_config;
mod users;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use glommio::{LocalExecutorBuilder, Placement};

use cluster::placement::Placement as ReplicaPlacement;
use cluster::ControllerBoot;
use config::LayoutConfig;
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
    /// Topics: create, list, describe, delete, alter-config.
    Topic {
        #[command(flatten)]
        common: cli::Common,
        #[command(subcommand)]
        command: cli::TopicCommand,
    },
    /// Consumer groups: list, describe (with lag), reset-offsets.
    Group {
        #[command(flatten)]
        common: cli::Common,
        #[command(subcommand)]
        command: cli::GroupCommand,
    },
    /// The cluster: brokers, controller, under-replicated and offline partitions.
    Cluster {
        #[command(flatten)]
        common: cli::Common,
        #[command(subcommand)]
        command: cli::ClusterCommand,
    },
    /// Leader elections (preferred or unclean).
    Leader {
        #[command(flatten)]
        common: cli::Common,
        #[command(subcommand)]
        command: cli::LeaderCommand,
    },
    /// Partition reassignment.
    Partition {
        #[command(flatten)]
        common: cli::Common,
        #[command(subcommand)]
        command: cli::PartitionCommand,
    },
    /// SASL users (SCRAM credentials): set-password, delete, list.
    User {
        #[command(flatten)]
        common: cli::Common,
        #[command(subcommand)]
        command: cli::UserCommand,
    },
    /// ACLs: add, list, remove.
    Acl {
        #[command(flatten)]
        common: cli::Common,
        #[command(subcommand)]
        command: cli::AclCommand,
    },
    /// Verify this host can run a broker with this config (exit 1 when a check fails).
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        /// One JSON document on stdout, for scripts.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The broker logs as its config says; everything else as the default does.
    if !matches!(cli.command, Command::Broker { .. }) {
        logging::init(&config::LogConfig::default());
    }
    match cli.command {
        Command::Broker { config } => {
            let layout = load_layout(config.as_deref())?;
            logging::init(&layout.log);
            run_broker(&layout)
        }
        Command::Layout { config } => print_layout(&load_layout(config.as_deref())?),
        Command::Topic { common, command } => {
            admin_command(&common, cli::AdminCommand::Topic(command))
        }
        Command::Group { common, command } => {
            admin_command(&common, cli::AdminCommand::Group(command))
        }
        Command::Cluster { common, command } => {
            admin_command(&common, cli::AdminCommand::Cluster(command))
        }
        Command::Leader { common, command } => {
            admin_command(&common, cli::AdminCommand::Leader(command))
        }
        Command::Partition { common, command } => {
            admin_command(&common, cli::AdminCommand::Partition(command))
        }
        Command::User { common, command } => {
            admin_command(&common, cli::AdminCommand::User(command))
        }
        Command::Acl { common, command } => admin_command(&common, cli::AdminCommand::Acl(command)),
        Command::Check { config, json } => check::run(config.as_deref(), json),
    }
}

/// Runs an admin command. Exit status 1: an item failed (printed with the rest); 2: the
/// command could not run (printed here, without a backtrace: it is the user's to read).
fn admin_command(common: &cli::Common, command: cli::AdminCommand) -> anyhow::Result<()> {
    match cli::run(common, command) {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("skein: {e:#}");
            std::process::exit(2);
        }
    }
}

fn load_layout(path: Option<&Path>) -> anyhow::Result<LayoutConfig> {
    Ok(match path {
        Some(p) => LayoutConfig::load(p)?,
        None => LayoutConfig::embedded_default()?,
    })
}

fn print_layout(layout: &LayoutConfig) -> anyhow::Result<()> {
    let placement = ReplicaPlacement::load(&layout.data_dir).map_err(anyhow::Error::msg)?;
    let entries = placement.entries();
    if entries.is_empty() {
        println!("no partitions on this node yet");
        return Ok(());
    }
    println!("{:<8} {:<6} {:<10} partitions", "shard", "cpu", "count");
    for (i, cpu) in layout.shard_cpus.iter().enumerate() {
        let owned: Vec<String> = entries
            .iter()
            .filter(|(_, _, s)| s.index() == i)
            .map(|(t, p, _)| format!("{t}-{p}"))
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
    std::fs::create_dir_all(&layout.data_dir)
        .with_context(|| format!("creating {}", layout.data_dir.display()))?;
    // Absolute from here on: io_uring opens relative paths against no directory (EBADF).
    let mut layout = layout.clone();
    layout.data_dir = std::fs::canonicalize(&layout.data_dir)
        .with_context(|| format!("resolving {}", layout.data_dir.display()))?;
    let layout = &layout;
    if layout.data_dir.join("metadata.json").exists() {
        bail!(
            "{} holds data of a Skein version from before the replicated controller \
             (metadata.json); it cannot be read by this version",
            layout.data_dir.display()
        );
    }
    let placement = ReplicaPlacement::load(&layout.data_dir).map_err(anyhow::Error::msg)?;
    check_placement(layout, &placement)?;

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
    // Bad key or certificate files stop the broker here, before any listener opens.
    let tls = match &layout.tls {
        Some(options) => Some(Arc::new(
            skein_net::tls::TlsContext::load(options.clone()).context("setting up TLS")?,
        )),
        None => None,
    };
    let layout = Arc::new(layout.clone());
    let shutdown = Arc::new(AtomicBool::new(false));
    let draining = Arc::new(AtomicBool::new(false));
    let joined = Arc::new(AtomicBool::new(false));
    install_signal_handlers(draining.clone(), tls.clone())?;
    let ready = Arc::new(AtomicUsize::new(0));
    let replication_budget = Arc::new(throttle::ByteBudget::new(
        layout
            .broker
            .replication
            .follower_throttled_rate_bytes_per_s,
        std::time::Instant::now(),
    ));
    let quotas = Arc::new(quota::Quotas::new(
        &layout.broker.quotas,
        std::time::Instant::now(),
    ));
    let mesh = MeshBoot::new(layout.shard_count());
    let failed = Arc::new(AtomicBool::new(false));
    let mut controller = Some(ControllerBoot {
        placement,
        host,
        port,
    });

    let mut handles = Vec::new();
    for (i, cpu) in layout.shard_cpus.iter().enumerate() {
        let id = ShardId(u16::try_from(i).context("too many shards")?);
        let boot = ShardBoot {
            id,
            layout: layout.clone(),
            mesh: mesh.clone(),
            ready: ready.clone(),
            shutdown: shutdown.clone(),
            draining: draining.clone(),
            joined: joined.clone(),
            controller: if id == layout.controller_shard {
                controller.take()
            } else {
                None
            },
            kafka_addr,
            replication_budget: replication_budget.clone(),
            quotas: quotas.clone(),
            tls: tls.clone(),
        };
        let handle = LocalExecutorBuilder::new(Placement::Fixed(*cpu))
            .name(&format!("skein-shard-{i}"))
            .io_memory(layout.broker.io_memory_bytes_per_shard)
            .spawn({
                let failed = failed.clone();
                let shutdown = shutdown.clone();
                move || async move {
                    let _on_panic = StopOnPanic {
                        failed: failed.clone(),
                        shutdown: shutdown.clone(),
                    };
                    let r = shard::run(boot).await;
                    if r.is_err() {
                        failed.store(true, Ordering::Release);
                        shutdown.store(true, Ordering::Release);
                    }
                    r
                }
            })
            .map_err(|e| anyhow::anyhow!("starting shard {i} on CPU {cpu}: {e}"))?;
        handles.push(handle);
    }
    while ready.load(Ordering::Acquire) < layout.shard_count() {
        if failed.load(Ordering::Acquire) || shutdown.load(Ordering::Acquire) {
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

/// Stops the broker when a shard's thread unwinds from a panic: without it the main thread would
/// wait for that shard to get ready forever, and the other shards would never be told to stop.
struct StopOnPanic {
    failed: Arc<AtomicBool>,
    shutdown: Arc<AtomicBool>,
}

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.failed.store(true, Ordering::Release);
            self.shutdown.store(true, Ordering::Release);
        }
    }
}

/// Every replica must sit on a shard this layout has (the shard count may not shrink under
/// existing data without moving it).
fn check_placement(layout: &LayoutConfig, placement: &ReplicaPlacement) -> anyhow::Result<()> {
    for (topic, partition, shard) in placement.entries() {
        if shard.index() >= layout.shard_count() {
            bail!(
                "partition {topic}-{partition} lives on shard {} but `cores.shards` configures only {} shards",
                shard.0,
                layout.shard_count()
            );
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

/// SIGINT/SIGTERM request a clean shutdown: leaderships move away (controlled shutdown), then
/// shards stop accepting, flush and mark logs clean. SIGHUP reloads the TLS key and
/// certificates (Kafka reloads them when their config is altered; here the files are re-read).
fn install_signal_handlers(
    shutdown: Arc<AtomicBool>,
    tls: Option<Arc<skein_net::tls::TlsContext>>,
) -> anyhow::Result<()> {
    // SAFETY: sigset operations on a zeroed, local sigset_t; pthread_sigmask on this thread,
    // before the shard threads exist, so they inherit the mask and only the waiter sees signals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            bail!("blocking SIGINT/SIGTERM/SIGHUP failed");
        }
        std::thread::Builder::new()
            .name("skein-signals".into())
            .spawn(move || {
                let mut sig: libc::c_int = 0;
                while libc::sigwait(&set, &mut sig) == 0 {
                    if sig == libc::SIGHUP {
                        reload_tls(tls.as_deref());
                        continue;
                    }
                    tracing::info!(signal = sig, "shutting down");
                    shutdown.store(true, Ordering::Release);
                    break;
                }
            })?;
    }
    Ok(())
}

/// On SIGHUP: new connections use the files as they are now; a bad file keeps the old ones.
fn reload_tls(tls: Option<&skein_net::tls::TlsContext>) {
    let Some(tls) = tls else {
        tracing::info!("SIGHUP: no TLS listener, nothing to reload");
        return;
    };
    match tls.reload() {
        Ok(()) => tracing::info!(
            keystore = %tls.options().keystore.display(),
            "SIGHUP: TLS key and certificates reloaded"
        ),
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the previous certificates")
        }
    }
}

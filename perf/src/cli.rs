//! Command line, resolved into one [`Config`] that every shard reads.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::schedule::Pace;
use crate::workload::{self, Workload};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Producers only; latency is produce acknowledgement time.
    Produce,
    /// Preloads the topic, then consumers read it (from the start, rewinding at the end).
    Consume,
    /// Producers and consumers together; latency is end to end, from a time in each record.
    E2e,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// A Kafka-protocol load generator: pinned glommio shards, pre-built record batches,
/// open-loop (fixed-rate, coordinated-omission corrected) or max-rate.
#[derive(Clone, Debug, Parser)]
#[command(name = "skein-perf", version)]
pub struct Args {
    #[arg(value_enum)]
    pub mode: Mode,
    /// Any broker of the cluster.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    #[arg(long, default_value = "skein-perf")]
    pub topic: String,
    /// A standard workload: sets partitions, message size, replication factor and acks
    /// (explicit options win). See --list-workloads.
    #[arg(long)]
    pub workload: Option<String>,
    #[arg(long)]
    pub partitions: Option<u32>,
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// Record value size in bytes (e2e needs at least 8: the send time travels in the value).
    #[arg(long)]
    pub message_size: Option<usize>,
    /// Target bytes of record values per batch (Kafka's batch.size); at least one record.
    #[arg(long, default_value_t = 16384)]
    pub batch_size: usize,
    /// In fixed-rate mode, how long a batch waits for records (Kafka's linger.ms).
    #[arg(long, default_value_t = 5.0)]
    pub linger_ms: f64,
    /// -1 (all), 0 or 1.
    #[arg(long, allow_hyphen_values = true)]
    pub acks: Option<String>,
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// Producer connections (each owns a share of the partitions).
    #[arg(long, default_value_t = 1)]
    pub producers: u32,
    /// Consumer connections (each owns a share of the partitions).
    #[arg(long, default_value_t = 1)]
    pub consumers: u32,
    /// Produce requests in flight per producer connection.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: u32,
    /// Records per second over all producers (open loop); 0 sends as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Measured seconds, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stop after this many records produced (produce, e2e) or consumed (consume) instead.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// CPUs for the client's shards (Linux list: "1", "8-15", "0,2"); default all.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Consume mode: bytes of record values written before consuming starts.
    #[arg(long, default_value_t = 1 << 30)]
    pub preload_bytes: u64,
    #[arg(long, default_value_t = 64 << 20)]
    pub fetch_max_bytes: i32,
    #[arg(long, default_value_t = 8 << 20)]
    pub partition_fetch_bytes: i32,
    #[arg(long, default_value_t = 100)]
    pub fetch_max_wait_ms: i32,
    #[arg(long, default_value_t = 30_000)]
    pub request_timeout_ms: i32,
    /// Do not create the topic (it must exist).
    #[arg(long)]
    pub no_create: bool,
    /// Directory for result.json and report.html (default perf-results/<mode>-<time>).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Free text stored with the results (e.g. "skein 1 shard").
    #[arg(long, default_value = "")]
    pub label: String,
    /// Client executors spin this long before parking when idle: timers and replies are seen
    /// sooner, at the price of busy client cores (use for latency runs).
    #[arg(long, default_value_t = 0)]
    pub spin_us: u64,
    /// Progress line every this many ms.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Creates the topic (if needed), waits for its partition leaders, and exits.
    #[arg(long)]
    pub setup_only: bool,
    /// Prints the standard workloads and exits.
    #[arg(long)]
    pub list_workloads: bool,
}

/// Everything a run needs, resolved and checked.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub mode: Mode,
    pub bootstrap: SocketAddr,
    pub topic: String,
    pub workload: Option<&'static str>,
    pub partitions: u32,
    pub replication_factor: i16,
    pub message_bytes: usize,
    pub batch_records: u32,
    pub linger_ms: f64,
    pub acks: i16,
    pub compression: CompressionArg,
    pub producers: u32,
    pub consumers: u32,
    pub max_in_flight: u32,
    /// Records per second over all producers; `None` is max rate.
    pub rate: Option<f64>,
    pub duration_s: f64,
    pub messages: Option<u64>,
    pub warmup_s: f64,
    pub cpus: Vec<usize>,
    pub preload_bytes: u64,
    pub fetch_max_bytes: i32,
    pub partition_fetch_bytes: i32,
    pub fetch_max_wait_ms: i32,
    pub request_timeout_ms: i32,
    pub create: bool,
    pub setup_only: bool,
    pub output: PathBuf,
    pub label: String,
    pub interval_ms: u64,
    pub spin_us: u64,
}

impl Config {
    pub fn resolve(a: &Args) -> Result<Config> {
        let w: Option<&Workload> = match &a.workload {
            Some(name) => Some(workload::find(name).with_context(|| {
                format!(
                    "unknown workload {name}; known: {}",
                    workload::names().join(", ")
                )
            })?),
            None => None,
        };
        let message_bytes = a
            .message_size
            .or(w.map(|w| w.message_bytes))
            .unwrap_or(1024);
        let acks = match a.acks.as_deref() {
            Some(s) => parse_acks(s)?,
            None => w.map_or(1, |w| w.acks),
        };
        let partitions = a.partitions.or(w.map(|w| w.partitions)).unwrap_or(1);
        let rate = (a.rate > 0.0).then_some(a.rate);
        ensure!(a.rate >= 0.0, "--rate must be 0 (max rate) or positive");
        ensure!(partitions >= 1, "--partitions must be at least 1");
        ensure!(
            a.producers >= 1 && a.consumers >= 1,
            "--producers and --consumers >= 1"
        );
        ensure!(
            a.mode == Mode::Produce || a.consumers <= partitions,
            "{} consumers for {partitions} partitions: each consumer needs a partition",
            a.consumers
        );
        ensure!(a.max_in_flight >= 1, "--max-in-flight must be at least 1");
        ensure!(
            a.duration > 0.0 && a.warmup >= 0.0,
            "--duration > 0, --warmup >= 0"
        );
        ensure!(
            a.mode != Mode::E2e || message_bytes >= 8,
            "e2e needs --message-size >= 8: the send time travels in the first 8 bytes"
        );
        ensure!(
            acks != 0 || a.mode != Mode::E2e,
            "e2e needs acks 1 or -1 (acks 0 has no acknowledgements to pace the producers)"
        );
        let bootstrap = a
            .bootstrap
            .to_socket_addrs()
            .with_context(|| format!("resolving {}", a.bootstrap))?
            .next()
            .with_context(|| format!("{} resolves to no address", a.bootstrap))?;
        let cpus = match &a.cpus {
            Some(list) => parse_cpu_list(list)?,
            None => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
        };
        let output = a.output.clone().unwrap_or_else(|| {
            let mode = format!("{:?}", a.mode).to_lowercase();
            PathBuf::from("perf-results")
                .join(format!("{mode}-{}", crate::clock::now_ns() / 1_000_000_000))
        });
        Ok(Config {
            mode: a.mode,
            bootstrap,
            topic: a.topic.clone(),
            workload: w.map(|w| w.name),
            partitions,
            replication_factor: a
                .replication_factor
                .or(w.map(|w| w.replication_factor))
                .unwrap_or(1),
            message_bytes,
            batch_records: u32::try_from((a.batch_size / message_bytes.max(1)).max(1))?,
            linger_ms: a.linger_ms,
            acks,
            compression: a.compression,
            producers: a.producers,
            consumers: a.consumers,
            max_in_flight: a.max_in_flight,
            rate,
            duration_s: a.duration,
            messages: a.messages,
            warmup_s: a.warmup,
            cpus,
            preload_bytes: a.preload_bytes,
            fetch_max_bytes: a.fetch_max_bytes,
            partition_fetch_bytes: a.partition_fetch_bytes,
            fetch_max_wait_ms: a.fetch_max_wait_ms,
            request_timeout_ms: a.request_timeout_ms,
            create: !a.no_create,
            setup_only: a.setup_only,
            output,
            label: a.label.clone(),
            interval_ms: a.interval_ms.max(100),
            spin_us: a.spin_us,
        })
    }

    /// Pace of one producer connection that owns `share` of the partitions.
    pub fn pace(&self, share: f64) -> Pace {
        match self.rate {
            None => Pace::MaxRate,
            Some(r) => Pace::Fixed {
                records_per_sec: r * share,
            },
        }
    }
}

pub fn parse_acks(s: &str) -> Result<i16> {
    Ok(match s {
        "all" | "-1" => -1,
        "0" => 0,
        "1" => 1,
        other => bail!("--acks {other}: expected all, -1, 0 or 1"),
    })
}

/// Linux CPU list syntax: "0-3,8,10-11".
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list item {part:?} in {list:?}");
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (usize, usize) =
                    (lo.parse().with_context(bad)?, hi.parse().with_context(bad)?);
                ensure!(lo <= hi, "{}", bad());
                cpus.extend(lo..=hi);
            }
            None => cpus.push(part.parse().with_context(bad)?),
        }
    }
    ensure!(!cpus.is_empty(), "empty CPU list {list:?}");
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["skein-perf"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-2,5, 4").unwrap(), vec![0, 1, 2, 4, 5]);
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn workload_sets_defaults_and_options_win() {
        let c = Config::resolve(&args(&[
            "produce",
            "--workload",
            "1-topic-16-partitions-100b",
        ]))
        .unwrap();
        assert_eq!((c.partitions, c.message_bytes, c.acks), (16, 100, 1));
        assert_eq!(c.batch_records, 163);
        let c = Config::resolve(&args(&[
            "produce",
            "--workload",
            "1-topic-16-partitions-1kb-rf3-acks-all",
            "--partitions",
            "4",
            "--acks",
            "1",
        ]))
        .unwrap();
        assert_eq!((c.partitions, c.replication_factor, c.acks), (4, 3, 1));
        assert!(Config::resolve(&args(&["produce", "--workload", "nope"])).is_err());
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(Config::resolve(&args(&["e2e", "--message-size", "4"])).is_err());
        assert!(Config::resolve(&args(&["e2e", "--consumers", "2"])).is_err());
        assert!(Config::resolve(&args(&["e2e", "--acks", "0"])).is_err());
        assert!(Config::resolve(&args(&["produce", "--acks", "2"])).is_err());
        assert_eq!(parse_acks("all").unwrap(), -1);
        let c = Config::resolve(&args(&["produce", "--rate", "1000"])).unwrap();
        assert_eq!(
            c.pace(0.5),
            Pace::Fixed {
                records_per_sec: 500.0
            }
        );
    }
}

//! `skein check`: verifies a host before a broker runs there, once, in the calling process (no
//! shard runs). Each check gives OK, WARN or FAIL with what to do about it; any FAIL makes the
//! exit status 1, so `ExecStartPre=skein check` keeps a broker off a host that cannot run it.
//!
//! `probe` reads the host; `verdict` judges what it read, purely (tested in `tests.rs`).

mod probe;
mod verdict;

pub use verdict::*;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use crate::config::{CpuCheck, LayoutConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's verdict. Every WARN and FAIL carries a remedy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub remedy: Option<String>,
}

impl Check {
    pub(super) fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            remedy: None,
        }
    }

    pub(super) fn warn(
        name: &'static str,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Check {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            remedy: Some(remedy.into()),
        }
    }

    pub(super) fn fail(
        name: &'static str,
        detail: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            remedy: Some(remedy.into()),
        }
    }
}

/// Every check, in the order they run and print.
pub const CHECK_NAMES: [&str; 10] = [
    "config",
    "io_uring",
    "memlock",
    "data_dir",
    "o_direct",
    "disk_space",
    "cores",
    "isolation",
    "ports",
    "clock",
];

/// `skein check [--config F] [--json]`: prints the verdicts; exit status 1 when any FAILs.
pub fn run(config: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let checks = run_checks(config);
    let source = config.map_or_else(
        || "embedded default".to_string(),
        |p| p.display().to_string(),
    );
    if json {
        println!("{}", render_json(&source, &checks));
    } else {
        print!("{}", render_text(&checks));
    }
    if passed(&checks) {
        Ok(())
    } else {
        std::process::exit(1)
    }
}

fn run_checks(config: Option<&Path>) -> Vec<Check> {
    // The CPUs are the cores check's business: a config naming a missing one still loads.
    let layout = LayoutConfig::load_with(config, CpuCheck::Unchecked);
    let mut checks = vec![match &layout {
        Ok(_) => Check::ok("config", "parsed"),
        Err(e) => Check::fail("config", one_line(&e.to_string()), "fix what it names"),
    }];
    checks.push(io_uring_verdict(
        probe::io_uring_disabled(),
        probe::io_uring_setup(),
    ));
    let Ok(layout) = layout else {
        // Every check is named, so a script sees what was not verified.
        for name in CHECK_NAMES.iter().skip(2) {
            checks.push(Check::warn(
                name,
                "not checked: the config did not load",
                "fix the config first",
            ));
        }
        return checks;
    };
    checks.push(memlock_verdict(
        probe::memlock(),
        layout.shard_count(),
        layout.broker.io_memory_bytes_per_shard,
    ));
    checks.extend(data_dir_checks(&layout));
    checks.push(cores_verdict(&layout.shard_cpus, &probe::cpus()));
    checks.push(isolation_verdict(&layout, &probe::cpus()));
    checks.push(ports_verdict(&listeners(&layout)));
    checks.push(clock_verdict(probe::unix_time_s(), probe::clock_synced()));
    checks
}

/// data_dir, o_direct and disk_space: the later two need the first.
fn data_dir_checks(layout: &LayoutConfig) -> Vec<Check> {
    let dir = &layout.data_dir;
    if let Err(e) = probe::data_dir_writable(dir) {
        let remedy = format!(
            "create it and give it to the broker's user: `mkdir -p {0} && chown skein: {0}`, \
             or set node.data_dir",
            dir.display()
        );
        let detail = format!("{}: {e}", dir.display());
        return vec![
            Check::fail("data_dir", detail, remedy),
            Check::fail(
                "o_direct",
                "not checked: data_dir is unusable",
                "fix data_dir",
            ),
            Check::fail(
                "disk_space",
                "not checked: data_dir is unusable",
                "fix data_dir",
            ),
        ];
    }
    let fs = probe::filesystem(dir);
    vec![
        Check::ok("data_dir", format!("{} is writable", dir.display())),
        o_direct_verdict(probe::o_direct_round_trip(dir), fs.as_ref().ok()),
        disk_verdict(dir, &fs),
    ]
}

fn listeners(layout: &LayoutConfig) -> Vec<(&'static str, SocketAddr)> {
    let mut out = vec![("kafka", layout.kafka_listener)];
    out.extend(layout.internal_listener.map(|a| ("internal", a)));
    out.extend(layout.metrics_listener.map(|a| ("metrics", a)));
    out
}

/// Whether no check failed (WARNs pass).
pub fn passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status != Status::Fail)
}

/// One line per check: `STATUS name  detail — fix: remedy`, then a summary line.
pub fn render_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let _ = write!(out, "{:<4} {:<10} {}", c.status.label(), c.name, c.detail);
        if let Some(r) = &c.remedy {
            let _ = write!(out, " — fix: {r}");
        }
        out.push('\n');
    }
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    let _ = writeln!(
        out,
        "{}: {} ok, {} warn, {} fail",
        if passed(checks) { "passed" } else { "FAILED" },
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail)
    );
    out
}

pub fn render_json(source: &str, checks: &[Check]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = checks
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "status": c.status.label().to_ascii_lowercase(),
                "detail": c.detail,
                "remedy": c.remedy,
            })
        })
        .collect();
    serde_json::json!({ "config": source, "passed": passed(checks), "checks": list })
}

fn ports_verdict(listeners: &[(&'static str, SocketAddr)]) -> Check {
    let binds: Vec<_> = listeners
        .iter()
        .map(|(name, addr)| (*name, *addr, probe::bind(*addr)))
        .collect();
    ports_verdict_from(&binds)
}

/// "0-3,6": the Linux list syntax `parse_cpu_list` reads.
pub fn cpu_list_text(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(",")
    }
}

pub(super) fn bytes_text(b: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if b >= GIB {
        format!("{:.1} GiB", b as f64 / GIB as f64)
    } else if b >= MIB {
        format!("{:.1} MiB", b as f64 / MIB as f64)
    } else {
        format!("{} KiB", b / 1024)
    }
}

/// A parse error on one line: TOML's caret diagram (the lines with `|`) goes.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('|'))
        .collect::<Vec<_>>()
        .join(": ")
}

pub(super) fn errno_text(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

#[cfg(test)]
mod tests;

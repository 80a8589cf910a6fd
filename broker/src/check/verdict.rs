//! `skein check`'s verdicts: pure functions from what the probes saw to OK, WARN or FAIL and
//! a remedy (no I/O, so every branch is unit-tested).

use std::net::SocketAddr;
use std::path::Path;

use super::{bytes_text, cpu_list_text, errno_text, Check};
use crate::config::LayoutConfig;

/// glommio refuses to start an executor below this memlock limit (glommio 0.9, `Reactor::new`).
const MEMLOCK_MIN_BYTES: u64 = 512 * 1024;
/// Free space on data_dir under which the disk check warns.
const DISK_FREE_WARN_BYTES: u64 = 10 << 30;
/// Free share of data_dir's filesystem (percent) under which the disk check warns.
const DISK_FREE_WARN_PERCENT: u64 = 10;
/// The clock is implausible outside these years (a dead RTC starts at 1970 or 2000).
const CLOCK_YEAR_MIN: i64 = 2024;
const CLOCK_YEAR_MAX: i64 = 2200;

/// `/proc/sys/kernel/io_uring_disabled`: 0 allowed, 1 only for the io_uring group, 2 disabled.
pub fn parse_io_uring_disabled(text: &str) -> Option<u8> {
    text.trim().parse::<u8>().ok().filter(|v| *v <= 2)
}

/// `disabled`: the sysctl (None: absent, a kernel before 6.6). `setup`: the errno of a real
/// `io_uring_setup`, or Ok; the attempt decides, the sysctl explains.
pub fn io_uring_verdict(disabled: Option<u8>, setup: Result<(), i32>) -> Check {
    let sysctl = match disabled {
        Some(v) => format!("kernel.io_uring_disabled = {v}"),
        None => "no kernel.io_uring_disabled sysctl".to_string(),
    };
    match (setup, disabled) {
        (Ok(()), _) => Check::ok("io_uring", format!("io_uring_setup works ({sysctl})")),
        (Err(_), Some(2)) => Check::fail(
            "io_uring",
            format!("io_uring is disabled ({sysctl})"),
            "`sysctl -w kernel.io_uring_disabled=0` and persist it in /etc/sysctl.d/",
        ),
        (Err(_), Some(1)) => Check::fail(
            "io_uring",
            format!("io_uring is limited to the kernel.io_uring_group group ({sysctl})"),
            "add the broker's user to the group whose gid is in kernel.io_uring_group, \
             or set kernel.io_uring_disabled=0",
        ),
        (Err(e), _) if e == libc::ENOSYS || e == libc::EPERM => Check::fail(
            "io_uring",
            format!("io_uring_setup refused: {} ({sysctl})", errno_text(e)),
            "a seccomp profile blocks io_uring (containers: run with a profile that allows \
             io_uring_setup/enter/register, e.g. `--security-opt seccomp=unconfined`), or the \
             kernel lacks it: glommio needs Linux 5.8 or newer",
        ),
        (Err(e), _) if e == libc::ENOMEM => Check::fail(
            "io_uring",
            format!("io_uring_setup failed: {} ({sysctl})", errno_text(e)),
            "kernels before 5.12 charge rings to RLIMIT_MEMLOCK: raise it (see memlock)",
        ),
        (Err(e), _) => Check::fail(
            "io_uring",
            format!("io_uring_setup failed: {} ({sysctl})", errno_text(e)),
            "glommio needs a working io_uring (Linux 5.8 or newer, not blocked by seccomp)",
        ),
    }
}

/// What the memlock probe found: the soft limit (None: unlimited) before the check's own
/// attempt to raise it, and whether that attempt worked, as the broker's will at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memlock {
    pub limit_bytes: Option<u64>,
    pub raised: bool,
}

/// `io_memory_per_shard`: each shard's DMA arena, which glommio registers with io_uring.
pub fn memlock_verdict(m: Memlock, shards: usize, io_memory_per_shard: usize) -> Check {
    const REMEDY: &str = "systemd: `LimitMEMLOCK=infinity` in the unit; otherwise \
        `skein - memlock unlimited` in /etc/security/limits.conf, or `ulimit -l unlimited` \
        before starting";
    let wanted = u64::try_from(io_memory_per_shard.saturating_mul(shards)).unwrap_or(u64::MAX);
    match m.limit_bytes {
        None => Check::ok("memlock", "RLIMIT_MEMLOCK is unlimited"),
        Some(l) if m.raised => Check::ok(
            "memlock",
            format!(
                "RLIMIT_MEMLOCK is {} but this user may raise it, and the broker does at start",
                bytes_text(l)
            ),
        ),
        Some(l) if l < MEMLOCK_MIN_BYTES => Check::fail(
            "memlock",
            format!(
                "RLIMIT_MEMLOCK is {}; glommio needs at least {} to start",
                bytes_text(l),
                bytes_text(MEMLOCK_MIN_BYTES)
            ),
            REMEDY,
        ),
        Some(l) if l < wanted => Check::warn(
            "memlock",
            format!(
                "RLIMIT_MEMLOCK is {}, under the {} that {shards} shard(s) register for I/O \
                 (unregistered buffers are slower)",
                bytes_text(l),
                bytes_text(wanted)
            ),
            REMEDY,
        ),
        Some(l) => Check::ok("memlock", format!("RLIMIT_MEMLOCK is {}", bytes_text(l))),
    }
}

/// statfs `f_type` magic numbers of the filesystems a data_dir is likely to sit on.
pub fn fs_type_name(magic: i64) -> &'static str {
    match magic {
        0x5846_5342 => "xfs",
        0xEF53 => "ext2/3/4",
        0x0102_1994 => "tmpfs",
        0x8584_58f6 => "ramfs",
        0x9123_683E => "btrfs",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x794c_7630 => "overlayfs",
        0x6969 => "nfs",
        0xFF53_4D42 => "cifs",
        0x6573_5546 => "fuse",
        _ => "unknown",
    }
}

/// What statfs/statvfs said about data_dir's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filesystem {
    pub magic: i64,
    pub available_bytes: u64,
    pub total_bytes: u64,
}

/// `round_trip`: the O_DIRECT write and read-back of one aligned block.
pub fn o_direct_verdict(round_trip: Result<(), String>, fs: Option<&Filesystem>) -> Check {
    let fs_name = fs.map_or("unknown", |f| fs_type_name(f.magic));
    match round_trip {
        Err(e) => Check::fail(
            "o_direct",
            format!("O_DIRECT on data_dir ({fs_name}) failed: {e}"),
            "put data_dir on a local xfs or ext4 filesystem (tmpfs refuses O_DIRECT before \
             Linux 6.6; network and FUSE filesystems often do)",
        ),
        Ok(()) if matches!(fs_name, "tmpfs" | "ramfs") => Check::warn(
            "o_direct",
            format!("O_DIRECT works, but data_dir is on {fs_name}: its data dies with the host"),
            "use xfs or ext4 for anything but tests",
        ),
        Ok(()) => Check::ok(
            "o_direct",
            format!("a 4 KiB O_DIRECT block written and read back ({fs_name})"),
        ),
    }
}

pub fn disk_verdict(dir: &Path, fs: &Result<Filesystem, String>) -> Check {
    let f = match fs {
        Ok(f) => f,
        Err(e) => {
            return Check::warn(
                "disk_space",
                format!("statvfs on {} failed: {e}", dir.display()),
                "check the free space by hand (`df -h`)",
            )
        }
    };
    let percent = f
        .available_bytes
        .saturating_mul(100)
        .checked_div(f.total_bytes)
        .unwrap_or(0);
    let detail = format!(
        "{} free of {} ({percent}%) on {}",
        bytes_text(f.available_bytes),
        bytes_text(f.total_bytes),
        dir.display()
    );
    if f.available_bytes < DISK_FREE_WARN_BYTES || percent < DISK_FREE_WARN_PERCENT {
        Check::warn(
            "disk_space",
            detail,
            format!(
                "free space or move data_dir to a larger filesystem; set retention \
                 (log.retention.bytes/ms) so the logs fit (warns under {} or {}%)",
                bytes_text(DISK_FREE_WARN_BYTES),
                DISK_FREE_WARN_PERCENT
            ),
        )
    } else {
        Check::ok("disk_space", detail)
    }
}

/// The host's CPUs as the kernel lists them. None: the file could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cpus {
    /// /sys/devices/system/cpu/present.
    pub present: Option<Vec<usize>>,
    /// /sys/devices/system/cpu/online.
    pub online: Option<Vec<usize>>,
    /// sched_getaffinity of this process.
    pub affinity: Vec<usize>,
    /// /sys/devices/system/cpu/isolated (isolcpus=).
    pub isolated: Option<Vec<usize>>,
    /// /sys/devices/system/cpu/nohz_full (absent without CONFIG_NO_HZ_FULL).
    pub nohz_full: Option<Vec<usize>>,
}

pub fn cores_verdict(shards: &[usize], cpus: &Cpus) -> Check {
    let missing = |set: &Option<Vec<usize>>| -> Vec<usize> {
        set.as_ref().map_or_else(Vec::new, |s| {
            shards.iter().copied().filter(|c| !s.contains(c)).collect()
        })
    };
    let absent = missing(&cpus.present);
    if !absent.is_empty() {
        return Check::fail(
            "cores",
            format!(
                "CPUs {} do not exist on this host (present: {})",
                cpu_list_text(&absent),
                cpus.present.as_deref().map_or("?".into(), cpu_list_text)
            ),
            "list existing CPUs in cores.shards",
        );
    }
    let offline = missing(&cpus.online);
    if !offline.is_empty() {
        return Check::fail(
            "cores",
            format!("CPUs {} are offline", cpu_list_text(&offline)),
            format!(
                "bring them online (`echo 1 > /sys/devices/system/cpu/cpu{}/online`) or drop \
                 them from cores.shards",
                offline[0]
            ),
        );
    }
    let denied: Vec<usize> = shards
        .iter()
        .copied()
        .filter(|c| !cpus.affinity.contains(c))
        .collect();
    if !denied.is_empty() {
        return Check::fail(
            "cores",
            format!(
                "CPUs {} are outside this process's affinity mask ({})",
                cpu_list_text(&denied),
                cpu_list_text(&cpus.affinity)
            ),
            "widen the mask (systemd `CPUAffinity=`, `taskset`, a cgroup cpuset) or list only \
             allowed CPUs in cores.shards",
        );
    }
    let unread = cpus.present.is_none() || cpus.online.is_none();
    let detail = format!(
        "shards on CPUs {}: {}in the affinity mask",
        cpu_list_text(shards),
        if unread { "" } else { "present, online and " }
    );
    if unread {
        return Check::warn(
            "cores",
            detail,
            "/sys/devices/system/cpu is unreadable: check presence and online state by hand",
        );
    }
    Check::ok("cores", detail)
}

/// Isolation is tuning, so this only warns: shards not isolated from the scheduler and the
/// timer tick, or the controller shard sharing its core with partitions of every topic.
pub fn isolation_verdict(layout: &LayoutConfig, cpus: &Cpus) -> Check {
    let shards = &layout.shard_cpus;
    let not_in = |set: &Option<Vec<usize>>| -> Vec<usize> {
        let set = set.as_deref().unwrap_or(&[]);
        shards
            .iter()
            .copied()
            .filter(|c| !set.contains(c))
            .collect()
    };
    let not_isolated = not_in(&cpus.isolated);
    let ticking = not_in(&cpus.nohz_full);
    let mut notes = Vec::new();
    let mut remedies = Vec::new();
    if !not_isolated.is_empty() || !ticking.is_empty() {
        notes.push(format!(
            "shard CPUs not in isolcpus: {}; not in nohz_full: {}",
            cpu_list_text(&not_isolated),
            cpu_list_text(&ticking)
        ));
        let everything = cpus
            .online
            .as_ref()
            .is_some_and(|o| o.len() <= shards.len());
        remedies.push(if everything {
            "every CPU is a shard: leave one out of cores.shards for the OS and NIC interrupts, \
             then isolate the rest"
                .to_string()
        } else {
            format!(
                "boot with `isolcpus=managed_irq,domain,{0} nohz_full={0} rcu_nocbs={0}` \
                 (see docs/deployment.md)",
                cpu_list_text(shards)
            )
        });
    }
    let controller_cpu = shards.get(layout.controller_shard.index()).copied();
    let multi_node_voter = !layout.is_single_node() && layout.is_voter();
    if let Some(cpu) = controller_cpu.filter(|_| multi_node_voter && shards.len() > 1) {
        if layout.placement.is_empty() {
            notes.push(format!(
                "the controller shard (CPU {cpu}) also hosts partitions of every topic"
            ));
            remedies.push(format!(
                "keep busy topics off shard {} with [[placement]]",
                layout.controller_shard.0
            ));
        }
    }
    if notes.is_empty() {
        return Check::ok(
            "isolation",
            format!(
                "shard CPUs {} are in isolcpus and nohz_full",
                cpu_list_text(shards)
            ),
        );
    }
    Check::warn("isolation", notes.join("; "), remedies.join("; "))
}

/// `binds`: each listener and what binding it now gave (an errno on failure).
pub fn ports_verdict_from(binds: &[(&'static str, SocketAddr, Result<(), i32>)]) -> Check {
    let mut failed = Vec::new();
    let mut remedies = Vec::new();
    for (name, addr, r) in binds {
        let Err(e) = r else { continue };
        failed.push(format!("{name} {addr}: {}", errno_text(*e)));
        remedies.push(match *e {
            libc::EADDRINUSE => format!(
                "free port {} (`ss -ltnp 'sport = :{}'` shows who holds it; a broker already \
                 running with this config holds it too: stop it first) or change listeners.{name}",
                addr.port(),
                addr.port()
            ),
            libc::EADDRNOTAVAIL => format!(
                "{} is not an address of this host: fix listeners.{name}",
                addr.ip()
            ),
            libc::EACCES => format!(
                "port {} is privileged: use a port >= 1024, or give the unit \
                 `AmbientCapabilities=CAP_NET_BIND_SERVICE`",
                addr.port()
            ),
            _ => format!("fix listeners.{name}"),
        });
    }
    if failed.is_empty() {
        let all: Vec<String> = binds
            .iter()
            .map(|(name, addr, _)| format!("{name} {addr}"))
            .collect();
        return Check::ok("ports", format!("free: {}", all.join(", ")));
    }
    Check::fail("ports", failed.join("; "), remedies.join("; "))
}

/// `synced`: the kernel's NTP state (None: unreadable).
pub fn clock_verdict(unix_time_s: i64, synced: Option<bool>) -> Check {
    let year = civil_year(unix_time_s);
    if !(CLOCK_YEAR_MIN..=CLOCK_YEAR_MAX).contains(&year) {
        return Check::fail(
            "clock",
            format!("the clock says year {year}"),
            "set the time (`chronyc makestep` or `timedatectl set-time`) and enable NTP: \
             Kafka timestamps and time-based retention rely on it",
        );
    }
    match synced {
        Some(true) => Check::ok("clock", format!("year {year}, NTP synchronized")),
        Some(false) => Check::warn(
            "clock",
            format!("year {year}, but the kernel says the clock is not NTP-synchronized"),
            "run chrony, ntpd or systemd-timesyncd (`timedatectl set-ntp true`); Raft does \
             not need it, Kafka timestamps and retention do",
        ),
        None => Check::ok(
            "clock",
            format!("year {year} (synchronization state unreadable)"),
        ),
    }
}

/// The proleptic Gregorian year of a Unix time (Howard Hinnant's days-to-civil algorithm).
pub fn civil_year(unix_time_s: i64) -> i64 {
    let z = unix_time_s.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

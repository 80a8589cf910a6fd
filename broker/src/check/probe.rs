//! What `skein check` reads from the host (calling thread, blocking calls; no executor runs).
//! Each probe returns what it saw, or why it could not see it; judging is `check`'s.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::{parse_io_uring_disabled, Cpus, Filesystem, Memlock};
use crate::config::{available_cpus, parse_cpu_list};

/// The O_DIRECT probe's block: the logical block size of every disk we expect.
const BLOCK_BYTES: usize = 4096;

pub fn io_uring_disabled() -> Option<u8> {
    let text = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok()?;
    parse_io_uring_disabled(&text)
}

/// A real `io_uring_setup`, dropped at once: the only proof that seccomp lets it through.
pub fn io_uring_setup() -> Result<(), i32> {
    match io_uring::IoUring::new(8) {
        Ok(_ring) => Ok(()),
        Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// The soft RLIMIT_MEMLOCK, then the same raise the broker attempts at start (it only lasts
/// for this process).
pub fn memlock() -> Memlock {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid, owned rlimit struct.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut current) } == 0;
    let limit_bytes = if !read || current.rlim_cur == libc::RLIM_INFINITY {
        // Unreadable is treated as unlimited: getrlimit cannot fail on a valid resource.
        None
    } else {
        Some(current.rlim_cur)
    };
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid, initialised rlimit struct.
    let raised = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } == 0;
    Memlock {
        limit_bytes,
        raised,
    }
}

/// Creates data_dir as the broker would, then writes, syncs and removes a small file in it.
pub fn data_dir_writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".skein-check-{}", std::process::id()));
    let written = std::fs::write(&path, b"skein check\n")
        .and_then(|()| std::fs::File::open(&path)?.sync_all());
    let removed = std::fs::remove_file(&path);
    written.and(removed)
}

/// Writes one aligned block with O_DIRECT, reads it back and compares; the file is removed
/// whatever happened.
pub fn o_direct_round_trip(dir: &Path) -> Result<(), String> {
    let path = dir.join(format!(".skein-check-odirect-{}", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .map_err(|e| format!("open with O_DIRECT: {e}"))?;
    let result = aligned_round_trip(&file);
    drop(file);
    let removed = std::fs::remove_file(&path).map_err(|e| format!("removing the probe: {e}"));
    result.and(removed)
}

fn aligned_round_trip(file: &std::fs::File) -> Result<(), String> {
    // Aligned without unsafe: an aligned window into a buffer twice the block's size.
    let mut out = vec![0u8; 2 * BLOCK_BYTES];
    let mut back = vec![0u8; 2 * BLOCK_BYTES];
    let out = aligned_block(&mut out)?;
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::try_from(i % 251).unwrap_or(0);
    }
    file.write_all_at(out, 0)
        .map_err(|e| format!("O_DIRECT write: {e}"))?;
    let back = aligned_block(&mut back)?;
    file.read_exact_at(back, 0)
        .map_err(|e| format!("O_DIRECT read: {e}"))?;
    if back != out {
        return Err("the block read back differs from the one written".to_string());
    }
    Ok(())
}

fn aligned_block(buf: &mut [u8]) -> Result<&mut [u8], String> {
    let offset = buf.as_ptr().align_offset(BLOCK_BYTES);
    buf.get_mut(offset..offset.saturating_add(BLOCK_BYTES))
        .ok_or_else(|| "could not align a buffer".to_string())
}

/// statfs (the filesystem's type) and statvfs (its free space) of `dir`.
pub fn filesystem(dir: &Path) -> Result<Filesystem, String> {
    let magic = skein_storage::filesystem_magic(dir).map_err(|e| format!("statfs: {e}"))?;
    let c_path = CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: all-zero bytes are a valid statvfs (plain integers).
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid, owned statvfs to write into.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut vfs) } != 0 {
        return Err(format!("statvfs: {}", std::io::Error::last_os_error()));
    }
    Ok(Filesystem {
        magic,
        available_bytes: vfs.f_bavail.saturating_mul(vfs.f_frsize),
        total_bytes: vfs.f_blocks.saturating_mul(vfs.f_frsize),
    })
}

pub fn cpus() -> Cpus {
    let list = |file: &str| {
        let text = std::fs::read_to_string(format!("/sys/devices/system/cpu/{file}")).ok()?;
        parse_cpu_list(text.trim()).ok()
    };
    Cpus {
        present: list("present"),
        online: list("online"),
        affinity: available_cpus(),
        isolated: list("isolated"),
        nohz_full: list("nohz_full"),
    }
}

/// Binds and drops at once. Without SO_REUSEPORT, so a running broker (which binds with it)
/// makes this fail too.
pub fn bind(addr: SocketAddr) -> Result<(), i32> {
    TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EINVAL))
}

pub fn unix_time_s() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // Before 1970: as implausible as it gets.
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The kernel's NTP state, which chrony, ntpd and systemd-timesyncd keep: STA_UNSYNC clear
/// means a daemon disciplines the clock. None when adjtimex is refused.
pub fn clock_synced() -> Option<bool> {
    // SAFETY: all-zero bytes are a valid timex; modes = 0 only reads.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, owned timex; with modes = 0 adjtimex changes nothing.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return None;
    }
    Some(state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0)
}

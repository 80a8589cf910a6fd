//! Shared by the kill -9 tests: a child process (this test binary re-run with one test selected)
//! that prints a line per acknowledged append, killed with SIGKILL at a random moment once it
//! has acknowledged enough.
#![allow(dead_code)] // each test file uses a different subset
#![allow(clippy::unwrap_used)] // test harness: unwrap is how a test fails

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A small deterministic generator (no dependency, same sequence on every run).
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A temporary directory under cargo's per-target tmp dir (a real disk, not tmpfs: O_DIRECT).
pub fn test_dir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

/// Runs test `child_test` of this binary with `envs` set, feeds every stdout line to
/// `on_line`, and SIGKILLs the child `rng`-random microseconds after it printed `want` lines
/// starting with "ACK ". Lines printed before the kill landed are fed too.
pub fn run_and_kill(
    child_test: &str,
    envs: &[(&str, &str)],
    want: u64,
    rng: &mut XorShift,
    round: u64,
    mut on_line: impl FnMut(&str),
) {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(exe);
    command
        .args([child_test, "--exact", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen < want && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            seen += u64::from(line.starts_with("ACK "));
            on_line(&line);
        }
    }
    assert!(
        seen >= want,
        "child acknowledged only {seen} batches in round {round}"
    );
    std::thread::sleep(Duration::from_micros(rng.next() % 3000));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    for line in rx.try_iter() {
        on_line(&line);
    }
}

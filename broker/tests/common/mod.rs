//! Whole-process test harness: runs the real `skein` binary (built by cargo for this package's
//! integration tests) as a single-node broker on 127.0.0.1, one process per test; [`cluster`]
//! runs several of them as the nodes of one cluster.
//!
//! Each [`Broker`] gets a free port (bound to port 0, released, then handed to the broker in its
//! config; retried if another process takes it first), a fresh data dir in a `TempDir`, and a
//! log file that survives restarts. Dropping it SIGKILLs the process. Nothing here builds
//! anything; cargo builds `skein` before it runs integration tests.
#![allow(dead_code)] // each test file uses a different subset

pub mod cluster;
pub mod faults;
pub mod proxy;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod clients;
pub mod quotas;
pub mod raw;

/// How long a broker may take to print its listening line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before the broker is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Set (to anything) to keep a failed test's broker logs and data dirs for a post-mortem.
pub const KEEP_ON_FAILURE: &str = "SKEIN_TEST_KEEP_ON_FAILURE";
/// Attempts at finding a port that stays free until the broker binds it.
const PORT_ATTEMPTS_MAX: u32 = 5;

/// Settings for one broker process.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `[cores] shards`, e.g. "0-1".
    pub shards: String,
    /// `[broker]` entries: Kafka-named setting and its TOML value written verbatim
    /// (`("num.partitions", "4")`, `("log.retention.ms", "\"x\"")`).
    pub broker: Vec<(String, String)>,
    /// `[node] id`.
    pub node_id: i32,
    /// `[listeners] internal` on 127.0.0.1 (controller RPC); a voter needs one. Fixed for the
    /// life of the node, because the other nodes' `voters` name it.
    pub internal_port: Option<u16>,
    /// `[controller] voters`, as `"id@host:port"`; empty writes no `[controller]` table.
    pub voters: Vec<String>,
    /// `[listeners] metrics` ("127.0.0.1:0": any free port; the broker prints which).
    pub metrics_listener: Option<String>,
    /// `[controller] secret_file` (written only with voters).
    pub secret_file: Option<PathBuf>,
    /// The Kafka listener's security protocol prefix ("SASL_PLAINTEXT"); None: bare host:port.
    pub kafka_protocol: Option<String>,
    /// The controller quorum's security protocol ("SSL"): written as the internal listener's
    /// prefix and as `[controller] security_protocol` (which broker-only nodes dial with).
    pub internal_protocol: Option<String>,
    /// `[sasl] bootstrap_users` ("name:password").
    pub sasl_bootstrap_users: Vec<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            shards: default_shards(),
            broker: vec![
                ("auto.create.topics.enable".into(), "true".into()),
                ("num.partitions".into(), "1".into()),
            ],
            node_id: 1,
            internal_port: None,
            voters: Vec::new(),
            metrics_listener: None,
            secret_file: None,
            kafka_protocol: None,
            internal_protocol: None,
            sasl_bootstrap_users: Vec::new(),
        }
    }
}

impl BrokerConfig {
    /// Sets (or replaces) one `[broker]` entry; `value` is TOML.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.broker.retain(|(k, _)| k != key);
        self.broker.push((key.to_string(), value.to_string()));
        self
    }

    pub fn shards(mut self, shards: &str) -> Self {
        self.shards = shards.to_string();
        self
    }
}

/// "0-1" where there are two cores or more, else "0".
pub fn default_shards() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if cores >= 2 {
        "0-1".to_string()
    } else {
        "0".to_string()
    }
}

/// One running (or stopped) `skein broker` process.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    config: BrokerConfig,
    data_dir: TempDir,
    work_dir: TempDir,
    log_path: PathBuf,
    /// Length of the log when the current process started: the listening line is searched
    /// after it, so that a restart does not see the previous one.
    log_start: u64,
    /// Set by an owner that prints the log itself when a test fails (a [`cluster::Cluster`]).
    quiet_drop: bool,
}

impl Broker {
    /// Starts a broker with the default config (auto-create on, 1 partition per new topic).
    pub fn start() -> Broker {
        Broker::start_with(BrokerConfig::default())
    }

    pub fn start_with(config: BrokerConfig) -> Broker {
        let mut broker = Broker::new(config);
        broker.spawn_on_free_port();
        broker
    }

    /// Starts the process on a free port and returns at once: for a node that cannot listen
    /// before others run (a voter of a new quorum). [`Broker::await_started`] waits for it.
    pub fn launch_with(config: BrokerConfig) -> Broker {
        let mut broker = Broker::new(config);
        if let Err(SpawnError::Failed(why)) = broker.launch(free_port()) {
            broker.fail(&why);
        }
        broker
    }

    /// Waits for the listening line of a [`Broker::launch_with`] process.
    pub fn await_started(&mut self) {
        match self.await_listening() {
            Ok(()) => {}
            Err(SpawnError::PortTaken) => self.fail("its Kafka port was taken"),
            Err(SpawnError::Failed(why)) => self.fail(&why),
        }
    }

    /// A broker with its own data dir and log, whose process is not started yet.
    fn new(config: BrokerConfig) -> Broker {
        raise_memlock_limit();
        let data_dir = tempfile::Builder::new()
            .prefix(&format!("skein-data-node-{}-", config.node_id))
            .tempdir()
            .expect("data dir");
        let work_dir = tempfile::Builder::new()
            .prefix("skein-test-")
            .tempdir()
            .expect("work dir");
        let log_path = work_dir.path().join("skein.log");
        Broker {
            child: None,
            port: 0,
            config,
            data_dir,
            work_dir,
            log_path,
            log_start: 0,
            quiet_drop: false,
        }
    }

    /// `[node] id`.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `bootstrap.servers` for clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => matches!(child.try_wait(), Ok(None)),
        }
    }

    /// How the process ended, once it has; None while it runs or when none was started.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGSTOP: the process stays, but neither answers nor heartbeats until [`Broker::sigcont`].
    /// SIGSTOP, and waits until every thread of the process is stopped (the signal is
    /// delivered asynchronously: a thread on another CPU may still answer a request).
    pub fn sigstop(&mut self) {
        self.signal(libc::SIGSTOP);
        let Some(pid) = self.child.as_ref().map(|c| c.id()) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !all_threads_stopped(pid) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn sigcont(&mut self) {
        self.signal(libc::SIGCONT);
    }

    /// SIGTERM without waiting, so that a caller can stop several brokers at once and then
    /// [`Broker::stop`] each (a second SIGTERM is harmless: the broker blocks it).
    pub fn sigterm(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// The process id while a process runs (a SIGSTOPped one counts), for tools outside the
    /// test that act on it (cgroups, firewall rules).
    pub fn pid(&mut self) -> Option<u32> {
        self.is_running()
            .then(|| self.child.as_ref().map(Child::id))
            .flatten()
    }

    fn signal(&mut self, signal: libc::c_int) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if !matches!(child.try_wait(), Ok(None)) {
            return; // reaped: the pid may belong to someone else by now
        }
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) with a pid we own (our child, not yet reaped) and a valid signal.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// Asserts that the process is still alive (it did not crash or exit).
    pub fn assert_running(&mut self) {
        if !self.is_running() {
            panic!("skein is not running; log tail:\n{}", self.log_tail(60));
        }
    }

    /// Stops the broker gracefully (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]) and starts it
    /// again on the same data dir, on the same port when it is still free.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_again();
    }

    /// SIGKILLs the broker and waits for it: a crash, with no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again after [`Broker::kill9`] or [`Broker::stop`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "broker is already running");
        self.spawn_again();
    }

    /// Waits up to `timeout` for the process to exit; true if it did (or was not running).
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        loop {
            if !matches!(child.try_wait(), Ok(None)) {
                self.child = None;
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and SIGKILL if the broker is still there after [`STOP_TIMEOUT`].
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        self.signal(libc::SIGCONT); // a stopped process handles SIGTERM only once it runs
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("skein did not stop within {STOP_TIMEOUT:?} of SIGTERM; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The last `lines` lines of the broker's log (all its runs).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn spawn_again(&mut self) {
        // Prefer the old port, so that a client's bootstrap list stays valid.
        for _ in 0..PORT_ATTEMPTS_MAX {
            match self.try_spawn(self.port) {
                Ok(()) => return,
                Err(SpawnError::PortTaken) => std::thread::sleep(Duration::from_millis(200)),
                Err(SpawnError::Failed(why)) => self.fail(&why),
            }
        }
        eprintln!(
            "port {} stayed taken; restarting skein on another port",
            self.port
        );
        self.spawn_on_free_port();
    }

    fn spawn_on_free_port(&mut self) {
        for _ in 0..PORT_ATTEMPTS_MAX {
            let port = free_port();
            match self.try_spawn(port) {
                Ok(()) => return,
                Err(SpawnError::PortTaken) => continue,
                Err(SpawnError::Failed(why)) => self.fail(&why),
            }
        }
        self.fail("no free port found");
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "could not start skein: {why}; log tail:\n{}",
            self.log_tail(60)
        );
    }

    fn try_spawn(&mut self, port: u16) -> Result<(), SpawnError> {
        self.launch(port)?;
        self.await_listening()
    }

    /// Starts the process on `port` and returns at once; [`Broker::await_listening`] waits for it.
    fn launch(&mut self, port: u16) -> Result<(), SpawnError> {
        assert!(self.child.is_none(), "broker is already running");
        self.port = port;
        let config_path = self.work_dir.path().join("skein.toml");
        fs::write(&config_path, self.config_toml()).expect("write skein.toml");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open skein.log");
        self.log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        writeln!(
            log,
            "===== harness: starting skein node {} on 127.0.0.1:{port} =====",
            self.config.node_id
        )
        .ok();
        let stderr = log.try_clone().expect("clone log file");
        let child = Command::new(skein_bin())
            .arg("broker")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| SpawnError::Failed(format!("spawn {}: {e}", skein_bin().display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits for the listening line of the process [`Broker::launch`] started; on an error the
    /// process is gone.
    fn await_listening(&mut self) -> Result<(), SpawnError> {
        let needle = format!("skein: listening on 127.0.0.1:{}", self.port);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if self.log_since_start().contains(&needle) {
                return Ok(());
            }
            let Some(child) = self.child.as_mut() else {
                return Err(SpawnError::Failed("no process was started".into()));
            };
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let log = self.log_since_start().to_lowercase();
                if log.contains("address already in use") || log.contains("addrinuse") {
                    return Err(SpawnError::PortTaken);
                }
                return Err(SpawnError::Failed(format!(
                    "skein exited during startup: {status}"
                )));
            }
            if Instant::now() > deadline {
                self.kill9();
                return Err(SpawnError::Failed(format!(
                    "no listening line within {STARTUP_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_since_start(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            let start = usize::try_from(self.log_start)
                .unwrap_or(0)
                .min(bytes.len());
            text = String::from_utf8_lossy(&bytes[start..]).into_owned();
        }
        text
    }

    fn config_toml(&self) -> String {
        let mut toml = format!(
            "[node]\nid = {id}\ndata_dir = {data_dir:?}\n[cores]\nshards = {shards:?}\n\
             [listeners]\nkafka = \"{protocol}127.0.0.1:{port}\"\n",
            protocol = self
                .config
                .kafka_protocol
                .as_ref()
                .map(|p| format!("{p}://"))
                .unwrap_or_default(),
            id = self.config.node_id,
            data_dir = self.data_dir.path().display().to_string(),
            shards = self.config.shards,
            port = self.port,
        );
        if let Some(internal) = self.config.internal_port {
            let protocol = self
                .config
                .internal_protocol
                .as_ref()
                .map(|p| format!("{p}://"))
                .unwrap_or_default();
            toml.push_str(&format!("internal = \"{protocol}127.0.0.1:{internal}\"\n"));
        }
        if let Some(metrics) = &self.config.metrics_listener {
            toml.push_str(&format!("metrics = {metrics:?}\n"));
        }
        if !self.config.voters.is_empty() {
            toml.push_str(&format!(
                "[controller]\nvoters = {:?}\n",
                self.config.voters
            ));
            if let Some(protocol) = &self.config.internal_protocol {
                toml.push_str(&format!("security_protocol = {protocol:?}\n"));
            }
            if let Some(secret) = &self.config.secret_file {
                toml.push_str(&format!(
                    "secret_file = {:?}\n",
                    secret.display().to_string()
                ));
            }
        }
        if !self.config.sasl_bootstrap_users.is_empty() {
            toml.push_str(&format!(
                "[sasl]\nbootstrap_users = {:?}\n",
                self.config.sasl_bootstrap_users
            ));
        }
        toml.push_str("[broker]\n");
        for (key, value) in &self.config.broker {
            toml.push_str(&format!("{key:?} = {value}\n"));
        }
        toml
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.quiet_drop {
            eprintln!(
                "----- skein log ({}), last lines -----\n{}\n-----",
                self.log_path.display(),
                self.log_tail(80)
            );
        }
        self.kill9();
        if std::thread::panicking() && std::env::var_os(KEEP_ON_FAILURE).is_some() {
            self.work_dir.disable_cleanup(true);
            self.data_dir.disable_cleanup(true);
            eprintln!(
                "{KEEP_ON_FAILURE}: kept node {}'s log {} and data dir {}",
                self.node_id(),
                self.log_path.display(),
                self.data_dir.path().display()
            );
        }
    }
}

enum SpawnError {
    PortTaken,
    Failed(String),
}

/// Waits until one of `brokers` (the active controller) has created the `[sasl]
/// bootstrap_users`: a login a moment before fails.
pub fn wait_for_bootstrap_users(brokers: &[&Broker]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !brokers.iter().any(|b| {
        b.log_tail(400)
            .contains("SASL bootstrap users are in place")
    }) {
        assert!(Instant::now() < deadline, "bootstrap users never created");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `skein` binary of this package, built by cargo for the integration tests;
/// `SKEIN_TEST_BIN` overrides it (to test another build, e.g. target/release/skein).
pub fn skein_bin() -> PathBuf {
    match std::env::var_os("SKEIN_TEST_BIN") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_skein")),
    }
}

/// A port on 127.0.0.1 that was free when this returned.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// glommio locks memory for its io_uring rings: lift RLIMIT_MEMLOCK (inherited by the broker) as
/// far as this process may, like `ulimit -l unlimited`.
fn raise_memlock_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let unlimited = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit/getrlimit with valid pointers to rlimit structs that outlive the calls.
        unsafe {
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) != 0 {
                let mut current = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut current) == 0 {
                    current.rlim_cur = current.rlim_max;
                    libc::setrlimit(libc::RLIMIT_MEMLOCK, &current);
                }
            }
        }
    });
}

/// A raw TCP connection to the broker, for tests below the client libraries.
pub fn raw_connect(broker: &Broker) -> TcpStream {
    try_raw_connect(broker.addr(), Duration::from_secs(10)).expect("connect to skein")
}

/// A raw TCP connection whose connect, reads and writes each give up after `timeout`.
pub fn try_raw_connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Whether every thread of `pid` is in the stopped state (`T` in /proc/<pid>/task/*/stat).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true; // gone
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).map_or(true, |stat| {
            // The state follows the parenthesised command name.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
        })
    })
}

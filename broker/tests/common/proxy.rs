//! A TCP proxy on 127.0.0.1 in front of one broker, for fault tests: the test can cut every
//! connection through it mid-stream, optionally after swallowing the broker's answers for a
//! while, so that requests the broker already carried out are never acknowledged.
//!
//! Two threads per connection pump bytes each way; the broker is told to advertise the proxy
//! (`advertised.listeners`), so clients reach it only through here. Dropping the proxy closes
//! its listener and every connection.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One proxied connection: the two sockets (to shut down) and the "swallow answers" switch.
struct Link {
    client: TcpStream,
    broker: TcpStream,
    swallow: Arc<AtomicBool>,
}

struct Shared {
    target: Mutex<Option<SocketAddr>>,
    links: Mutex<Vec<Link>>,
    stopping: AtomicBool,
    accepted: AtomicU64,
    cuts: AtomicU64,
}

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1; connections are refused until `set_target`.
    pub fn start() -> Proxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            target: Mutex::new(None),
            links: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("test-proxy-accept".into())
                .spawn(move || accept_loop(&listener, &shared))
                .expect("spawn proxy acceptor")
        };
        Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `bootstrap.servers` for clients that must go through the proxy.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The value for the broker's `advertised.listeners` (a TOML string).
    pub fn advertised_listener(&self) -> String {
        format!("\"PLAINTEXT://{}\"", self.addr)
    }

    /// Where new connections go (the broker may come back on another port after a restart).
    pub fn set_target(&self, broker: SocketAddr) {
        *self.shared.target.lock().expect("proxy lock") = Some(broker);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Acquire)
    }

    /// Times `cut_all` found something to cut.
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::Acquire)
    }

    /// Stops passing the broker's answers on (they are dropped) on every open connection.
    pub fn swallow_answers(&self) {
        for link in self.shared.links.lock().expect("proxy lock").iter() {
            link.swallow.store(true, Ordering::Release);
        }
    }

    /// Cuts every open connection: first swallows the broker's answers for `swallow_for` (so
    /// requests already sent are carried out but never acknowledged), then shuts both sides
    /// down. Returns how many connections were cut.
    pub fn cut_all(&self, swallow_for: Duration) -> usize {
        if !swallow_for.is_zero() {
            self.swallow_answers();
            std::thread::sleep(swallow_for);
        }
        let links: Vec<Link> = std::mem::take(&mut *self.shared.links.lock().expect("proxy lock"));
        for link in &links {
            link.swallow.store(true, Ordering::Release);
            let _ = link.client.shutdown(Shutdown::Both);
            let _ = link.broker.shutdown(Shutdown::Both);
        }
        if !links.is_empty() {
            self.shared.cuts.fetch_add(1, Ordering::AcqRel);
        }
        links.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        // Wake the acceptor with a connection of our own.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.cut_all(Duration::ZERO);
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = client else { continue };
        let target = *shared.target.lock().expect("proxy lock");
        let Some(target) = target else {
            continue; // no broker yet: dropping the socket refuses the client
        };
        let Ok(broker) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = broker.set_nodelay(true);
        let swallow = Arc::new(AtomicBool::new(false));
        let (Ok(c2), Ok(b2), Ok(c3), Ok(b3)) = (
            client.try_clone(),
            broker.try_clone(),
            client.try_clone(),
            broker.try_clone(),
        ) else {
            continue;
        };
        shared.links.lock().expect("proxy lock").push(Link {
            client: c3,
            broker: b3,
            swallow: Arc::clone(&swallow),
        });
        shared.accepted.fetch_add(1, Ordering::AcqRel);
        let never = Arc::new(AtomicBool::new(false));
        spawn_pump(client, broker, never, "test-proxy-up");
        spawn_pump(b2, c2, swallow, "test-proxy-down");
    }
}

/// Copies `from` into `to` until either side closes; drops the bytes while `swallow` is set.
fn spawn_pump(mut from: TcpStream, mut to: TcpStream, swallow: Arc<AtomicBool>, name: &str) {
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if swallow.load(Ordering::Acquire) {
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        });
    if spawned.is_err() {
        eprintln!("proxy: could not start a pump thread");
    }
}

//! The server: an accept loop, one thread per connection, each request executed with the
//! safe API ([`crate::api`]) or the control API ([`EmulatedCa`]).
//!
//! Security (`docs/SECURITY.md` is the threat model): the protocol has no encryption and
//! no authentication beyond an optional shared secret sent in clear in the handshake, and
//! a connected client can read every file of the emulated disks (backups), write into
//! them (restores, through [`Request::HostPath`]) and delete them
//! ([`Request::WipeFiles`]). So [`Server::bind`] refuses a TCP address that is not
//! loopback unless a secret is set, and a Unix socket is created readable and writable by
//! its owner only (mode 0600). Even with a secret, expose the port only on a network you
//! trust.
//!
//! Peers that never complete a handshake, or stop talking, cost bounded resources
//! ([`Limits`]): connections before the handshake have a budget of their own (when it is
//! full the oldest is closed) and a deadline for the whole handshake, so they cannot
//! starve authenticated clients; authenticated connections have their own cap and an
//! idle timeout; request bytes buffered beyond each connection's first 64 KiB share one
//! budget; failed secrets are slowed per peer address.

use super::protocol::*;
use super::{Addr, Stream};
use crate::api::{self, registry};
use crate::config::{Config, MachineConfig};
use crate::control::ReportFile;
use crate::core::{Call, Error, HRESULT};
use crate::session::{Hcsbc, Session};
use crate::EmulatedCa;
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Default of [`Limits::max_connections`]: authenticated connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Default of [`Limits::max_pending`]: connections that have not completed the handshake.
pub const MAX_PENDING: usize = 1024;
/// Default of [`Limits::handshake_timeout`]: how long a new connection has, from its
/// accept, to complete its [`Hello`].
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Default of [`Limits::idle_timeout`]: an authenticated connection that sends no request
/// byte for this long is closed and run down.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default of [`Limits::frame_budget`]: request bytes buffered beyond each connection's
/// first [`FRAME_ALLOWANCE`], all connections together.
pub const FRAME_BUDGET: usize = 64 << 20;
/// The bytes of a request frame each connection may buffer outside the
/// [`Limits::frame_budget`] (the hello limit: every handshake fits).
pub const FRAME_ALLOWANCE: usize = MAX_HELLO_FRAME as usize;
/// Default of [`Limits::failed_secret_delay`].
pub const FAILED_SECRET_DELAY: Duration = Duration::from_millis(100);
/// Default of [`Limits::failed_secret_backlog`].
pub const FAILED_SECRET_BACKLOG: Duration = Duration::from_secs(2);

/// The server's bounds on what peers may cost it (`docs/SECURITY.md` lists each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Authenticated connections at once. A handshake beyond is refused with
    /// `RPC_S_SERVER_TOO_BUSY`.
    pub max_connections: usize,
    /// Connections that have not completed the handshake. When a new connection arrives
    /// and this many are waiting, the oldest of them is closed: silent peers cannot keep
    /// a client out, they only shorten each other's time.
    pub max_pending: usize,
    /// The time from accept to a complete [`Hello`] (the whole frame, however slowly it
    /// arrives); then the connection is closed.
    pub handshake_timeout: Duration,
    /// An authenticated connection that sends no request byte for this long is closed,
    /// and its contexts are run down as at a disconnect. `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Request-frame bytes buffered beyond each connection's first [`FRAME_ALLOWANCE`],
    /// all connections together. A request that does not fit is read, dropped and
    /// answered with `E_OUTOFMEMORY`; the connection stays usable.
    pub frame_budget: usize,
    /// How much each failed secret from a peer address delays the verdicts of that
    /// address (all of its handshakes that carry a secret, in arrival order).
    pub failed_secret_delay: Duration,
    /// How far the verdicts of one address may be delayed; a handshake from an address
    /// whose queue reaches further is refused with `E_ACCESSDENIED` without its secret
    /// being looked at.
    pub failed_secret_backlog: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            max_pending: MAX_PENDING,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            idle_timeout: Some(IDLE_TIMEOUT),
            frame_budget: FRAME_BUDGET,
            failed_secret_delay: FAILED_SECRET_DELAY,
            failed_secret_backlog: FAILED_SECRET_BACKLOG,
        }
    }
}

/// The server's counters, each named once: [`ServerStats`] (what a snapshot returns,
/// with the documentation of each count) and the atomics the connections bump.
macro_rules! server_stats {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// What the server refused or closed since it started, by reason, and how its
        /// connections waited for their clients' reads (for logs and tests).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct ServerStats {
            $($(#[$doc])* pub $name: u64,)*
        }

        #[derive(Default)]
        struct Stats {
            $($name: AtomicU64,)*
        }

        impl Stats {
            fn snapshot(&self) -> ServerStats {
                ServerStats {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

server_stats! {
    /// Connections accepted.
    accepted,
    /// Handshakes completed.
    authenticated,
    /// Connections closed before their handshake completed because it took longer than
    /// [`Limits::handshake_timeout`].
    handshake_timeouts,
    /// Connections closed before their handshake completed to admit a newer one
    /// ([`Limits::max_pending`]).
    evicted,
    /// Handshakes refused with `RPC_S_SERVER_TOO_BUSY` ([`Limits::max_connections`]).
    too_busy,
    /// Handshakes refused for a wrong or missing secret.
    wrong_secret,
    /// Handshakes refused unchecked because their address's failures were queued too far
    /// ahead ([`Limits::failed_secret_backlog`]).
    throttled,
    /// Authenticated connections closed by the idle timeout.
    idle_closed,
    /// Requests dropped and answered with `E_OUTOFMEMORY` ([`Limits::frame_budget`]).
    over_budget,
    /// Connections that ended before their handshake for another reason: closed by the
    /// peer, not the protocol, another protocol version.
    bad_handshakes,
    /// Receives preceded by a poll of up to 100 µs after a read was answered, because the
    /// client had been prompt (docs/PROTOCOL.md §6.2).
    read_polls,
    /// Those polls that saw the next request arrive (the others slept after them).
    read_polls_caught,
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// How a server is set up.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// The shared secret every client must present in its handshake. Required to listen
    /// on a TCP address that is not loopback.
    pub secret: Option<String>,
    /// Machines to create at bind time (the `CERTADM_EMU_CONFIG` format; `report` and
    /// `trace` are the caller's business, see `certadm-emu serve`).
    pub config: Option<Config>,
    /// No log lines on stderr.
    pub quiet: bool,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// A connection the server knows of: a clone of its stream (to close it from the accept
/// loop or at shutdown) and whether it completed its handshake.
struct ConnEntry {
    stream: Stream,
    authenticated: bool,
}

#[derive(Default)]
struct Conns {
    map: HashMap<u64, ConnEntry>,
    /// The connections still in their handshake, oldest (lowest id) first.
    pending: BTreeSet<u64>,
    /// Authenticated connections open.
    authenticated: usize,
}

/// Where a peer's failed secrets are counted: its IP address (an IPv6 address by its /64
/// prefix, what one host usually has), or one place for every Unix-socket peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PeerKey {
    Ip(IpAddr),
    Unix,
}

fn peer_key(s: &Stream) -> PeerKey {
    match s {
        Stream::Tcp(t) => match t.peer_addr().map(|a| a.ip().to_canonical()) {
            Ok(IpAddr::V6(v6)) => {
                let mut o = v6.octets();
                o[8..].fill(0);
                PeerKey::Ip(IpAddr::from(o))
            }
            Ok(ip) => PeerKey::Ip(ip),
            Err(_) => PeerKey::Unix,
        },
        Stream::Unix(_) => PeerKey::Unix,
    }
}

struct Shared {
    secret: Option<String>,
    limits: Limits,
    machines: Mutex<Vec<Arc<EmulatedCa>>>,
    /// Live tracked list buffers (token) and the connection that received each.
    buffers: Mutex<HashMap<u64, u64>>,
    /// The opaque buffer tokens: a keyed permutation of this counter.
    next_token: AtomicU64,
    token_key: (u64, u64),
    conns: Mutex<Conns>,
    /// Per peer address: until when its verdicts are queued (failed secrets).
    failures: Mutex<HashMap<PeerKey, Instant>>,
    /// Request bytes buffered beyond the allowances ([`Limits::frame_budget`]).
    frame_bytes: AtomicUsize,
    stats: Stats,
    /// When the last summary of closed handshakes was logged.
    last_summary: Mutex<(Instant, ServerStats)>,
    next_conn: AtomicU64,
    stopping: AtomicBool,
    wake: Addr,
    quiet: bool,
}

impl Shared {
    fn log(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("certadm-emu serve: {}", msg.as_ref());
        }
    }

    /// Logs, at most every 10 s, how many connections were closed before their handshake
    /// (one line for a flood, not one per socket).
    fn summarize(&self) {
        let mut last = self.last_summary.lock();
        if last.0.elapsed() < Duration::from_secs(10) {
            return;
        }
        let now = self.stats.snapshot();
        if let Some(line) = handshake_summary(&last.1, &now) {
            self.log(format!(
                "in the last {} s: {line}",
                last.0.elapsed().as_secs()
            ));
        }
        *last = (Instant::now(), now);
    }

    fn stop(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept loop with a connection of our own.
        match &self.wake {
            Addr::Tcp(a) => {
                if let Ok(sa) = a.parse::<SocketAddr>() {
                    let _ = TcpStream::connect_timeout(&sa, Duration::from_secs(1));
                }
            }
            Addr::Unix(p) => {
                let _ = UnixStream::connect(p);
            }
        }
    }

    fn find(&self, name: &str) -> Option<Arc<EmulatedCa>> {
        let n = name.trim().trim_start_matches("\\\\");
        let n = n.split('\\').next().unwrap_or(n);
        self.machines
            .lock()
            .iter()
            .find(|m| {
                m.server_name().eq_ignore_ascii_case(n) || m.dns_name().eq_ignore_ascii_case(n)
            })
            .cloned()
    }

    /// A new opaque buffer token: odd (never a buffer address), never 0, never repeated,
    /// and without the per-server key it tells nothing about addresses or counts.
    fn token(&self) -> u64 {
        let n = self.next_token.fetch_add(1, Ordering::Relaxed);
        let mask = (usize::MAX >> 1) as u64;
        let mut x = n.wrapping_add(self.token_key.0) & mask;
        // A bijection of the masked range: xor-shifts and odd multiplications.
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9) & mask;
        x ^= x >> 27;
        x = x.wrapping_mul(0x94D0_49BB_1331_11EB) & mask;
        x ^= x >> 31;
        x ^= self.token_key.1 & mask;
        (x << 1) | 1
    }

    /// Closes connection `id` and forgets it (at the end of its thread).
    fn forget(&self, id: u64) {
        let mut c = self.conns.lock();
        c.pending.remove(&id);
        if let Some(e) = c.map.remove(&id) {
            e.stream.shutdown();
            if e.authenticated {
                c.authenticated -= 1;
            }
        }
    }

    /// Moves connection `id` from the handshake budget to the authenticated one.
    fn promote(&self, id: u64) -> Result<(), Refusal> {
        let mut c = self.conns.lock();
        if !c.pending.remove(&id) {
            return Err(Refusal::Evicted);
        }
        if c.authenticated >= self.limits.max_connections {
            return Err(Refusal::TooBusy);
        }
        c.authenticated += 1;
        if let Some(e) = c.map.get_mut(&id) {
            e.authenticated = true;
        }
        Ok(())
    }

    /// Reserves `n` bytes of the frame budget.
    fn reserve(&self, n: usize) -> bool {
        let limit = self.limits.frame_budget;
        self.frame_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&t| t <= limit)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        if n > 0 {
            self.frame_bytes.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

/// The handshakes that failed between two snapshots, by reason; `None` if none did.
fn handshake_summary(a: &ServerStats, b: &ServerStats) -> Option<String> {
    let parts: Vec<String> = [
        (b.handshake_timeouts - a.handshake_timeouts, "timed out"),
        (b.evicted - a.evicted, "closed to admit newer ones"),
        (b.wrong_secret - a.wrong_secret, "wrong or missing secret"),
        (
            b.throttled - a.throttled,
            "refused unchecked after repeated failures",
        ),
        (b.too_busy - a.too_busy, "refused: too many connections"),
        (
            b.bad_handshakes - a.bad_handshakes,
            "closed, not the protocol or another version",
        ),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    (!parts.is_empty()).then(|| format!("handshakes that failed: {}", parts.join(", ")))
}

/// Two random words for the token permutation (std's per-process random hash keys).
fn random_key() -> (u64, u64) {
    use std::hash::{BuildHasher, Hasher};
    let s = std::collections::hash_map::RandomState::new();
    let word = |i: u64| {
        let mut h = s.build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    };
    (word(1), word(2))
}

/// Stops a running server (from any thread, any number of times).
///
/// It does not keep the server alive: a handle held by a signal handler that lives as
/// long as the process does not keep the machines (and their temporary roots) once the
/// [`Server`] is dropped. After that, [`ShutdownHandle::shutdown`] does nothing.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Weak<Shared>,
}

impl ShutdownHandle {
    /// Stops accepting, closes every connection (their contexts are run down) and makes
    /// [`Server::run`] return.
    pub fn shutdown(&self) {
        if let Some(s) = self.shared.upgrade() {
            s.stop();
        }
    }
    /// True once a shutdown was asked for (or the server is gone).
    pub fn is_stopping(&self) -> bool {
        self.shared
            .upgrade()
            .is_none_or(|s| s.stopping.load(Ordering::SeqCst))
    }
}

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("stopping", &self.is_stopping())
            .finish()
    }
}

/// A bound server: call [`Server::run`] (blocking) or [`Server::spawn`].
pub struct Server {
    listener: Listener,
    shared: Arc<Shared>,
    addr: String,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

fn refuse(kind: io::ErrorKind, msg: String) -> io::Error {
    io::Error::new(kind, msg)
}

impl Server {
    /// Binds `addr` (`127.0.0.1:0`, `localhost:7000`, `unix:/path` or `/path`) and creates
    /// the machines of `options.config`.
    ///
    /// A TCP address that resolves to anything but loopback is refused without a secret
    /// (see the module documentation for why).
    pub fn bind(addr: &str, options: ServerOptions) -> io::Result<Server> {
        Server::bind_with(addr, options, Limits::default())
    }

    /// [`Server::bind`] with other [`Limits`] than the defaults.
    pub fn bind_with(addr: &str, options: ServerOptions, limits: Limits) -> io::Result<Server> {
        if options.secret.as_deref() == Some("") {
            return Err(refuse(
                io::ErrorKind::InvalidInput,
                "the shared secret must not be empty".into(),
            ));
        }
        // The machines first: a configuration error leaves no socket behind.
        let mut machines = Vec::new();
        if let Some(cfg) = &options.config {
            // Every machine is checked before any is created (no named root is left behind).
            cfg.validate()
                .map_err(|e| refuse(io::ErrorKind::InvalidInput, e))?;
            for m in &cfg.machines {
                machines.push(Arc::new(build_machine(m).map_err(|e| {
                    refuse(io::ErrorKind::InvalidInput, format!("{}: {e}", e.hresult()))
                })?));
            }
        }
        let (listener, local, wake) = match Addr::parse(addr) {
            Addr::Tcp(a) => {
                let addrs: Vec<SocketAddr> = a.to_socket_addrs()?.collect();
                if addrs.is_empty() {
                    return Err(refuse(
                        io::ErrorKind::InvalidInput,
                        format!("{a} resolves to no address"),
                    ));
                }
                if options.secret.is_none() {
                    if let Some(x) = addrs.iter().find(|x| !x.ip().is_loopback()) {
                        return Err(refuse(
                            io::ErrorKind::PermissionDenied,
                            format!(
                                "refusing to listen on {a} ({}, not loopback) without a shared secret: \
                                 the protocol has no encryption and no authentication beyond the secret, \
                                 and clients can read, write and delete the files under the machines' roots. \
                                 Listen on 127.0.0.1 or a unix socket, or set a secret",
                                x.ip()
                            ),
                        ));
                    }
                }
                let l = TcpListener::bind(&addrs[..])?;
                let local = l.local_addr()?;
                let mut wake = local;
                if wake.ip().is_unspecified() {
                    wake.set_ip(match wake {
                        SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                        SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                    });
                }
                (
                    Listener::Tcp(l),
                    local.to_string(),
                    Addr::Tcp(wake.to_string()),
                )
            }
            Addr::Unix(p) => {
                if let Ok(meta) = std::fs::symlink_metadata(&p) {
                    use std::os::unix::fs::FileTypeExt;
                    if !meta.file_type().is_socket() {
                        return Err(refuse(
                            io::ErrorKind::AlreadyExists,
                            format!("{} exists and is not a socket", p.display()),
                        ));
                    }
                    if UnixStream::connect(&p).is_ok() {
                        return Err(refuse(
                            io::ErrorKind::AddrInUse,
                            format!("a server already listens on {}", p.display()),
                        ));
                    }
                    std::fs::remove_file(&p)?;
                }
                let l = UnixListener::bind(&p)?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
                let local = format!("unix:{}", p.display());
                (Listener::Unix(l, p.clone()), local, Addr::Unix(p))
            }
        };
        Ok(Server {
            listener,
            addr: local,
            shared: Arc::new(Shared {
                secret: options.secret,
                limits,
                machines: Mutex::new(machines),
                buffers: Mutex::new(HashMap::new()),
                next_token: AtomicU64::new(1),
                token_key: random_key(),
                conns: Mutex::new(Conns::default()),
                failures: Mutex::new(HashMap::new()),
                frame_bytes: AtomicUsize::new(0),
                stats: Stats::default(),
                last_summary: Mutex::new((Instant::now(), ServerStats::default())),
                next_conn: AtomicU64::new(1),
                stopping: AtomicBool::new(false),
                wake,
                quiet: options.quiet,
            }),
        })
    }

    /// The address clients connect to: `IP:PORT` (the real port when bound to port 0) or
    /// `unix:PATH`.
    pub fn local_addr(&self) -> &str {
        &self.addr
    }

    /// A handle that stops [`Server::run`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// What the server refused or closed so far, by reason.
    pub fn stats(&self) -> ServerStats {
        self.shared.stats.snapshot()
    }

    /// Request bytes buffered beyond the per-connection allowances right now (at most
    /// [`Limits::frame_budget`]).
    pub fn buffered_frame_bytes(&self) -> usize {
        self.shared.frame_bytes.load(Ordering::Acquire)
    }

    /// The NetBIOS names of the machines served.
    pub fn machines(&self) -> Vec<String> {
        self.shared
            .machines
            .lock()
            .iter()
            .map(|m| m.server_name().to_string())
            .collect()
    }

    /// Runs `f` on a machine of this server (by NetBIOS or DNS name), in process.
    pub fn with_machine<R>(&self, name: &str, f: impl FnOnce(&EmulatedCa) -> R) -> Option<R> {
        self.shared.find(name).map(|m| f(&m))
    }

    /// The report of every machine with a CA, as the `CERTADM_EMU_CONFIG` report file
    /// holds it.
    pub fn reports(&self) -> ReportFile {
        let machines: Vec<Arc<EmulatedCa>> = self.shared.machines.lock().clone();
        ReportFile {
            machines: machines
                .iter()
                .filter(|m| has_ca(m))
                .map(|m| m.machine_report())
                .collect(),
        }
    }

    /// Accepts connections until shut down (by a [`ShutdownHandle`] or a `Shutdown`
    /// request), one thread per connection. On return every connection is closed and its
    /// contexts are run down; the machines stay until the server is dropped.
    pub fn run(&self) -> io::Result<()> {
        let mut workers: Vec<JoinHandle<()>> = Vec::new();
        loop {
            let accepted = match &self.listener {
                Listener::Tcp(l) => l.accept().map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    Stream::Tcp(s)
                }),
                Listener::Unix(l, _) => l.accept().map(|(s, _)| Stream::Unix(s)),
            };
            if self.shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            let stream = match accepted {
                Ok(s) => s,
                Err(e) => {
                    self.shared.log(format!("accept failed: {e}"));
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            let accepted_at = Instant::now();
            bump(&self.shared.stats.accepted);
            let limits = &self.shared.limits;
            if workers.len() > limits.max_connections + limits.max_pending {
                workers.retain(|w| !w.is_finished());
            }
            let id = self.shared.next_conn.fetch_add(1, Ordering::Relaxed);
            let clone = match stream.try_clone() {
                Ok(c) => c,
                Err(e) => {
                    self.shared.log(format!("connection {id}: {e}"));
                    continue;
                }
            };
            {
                let mut c = self.shared.conns.lock();
                // The pending budget is full: close the oldest waiting connection. A
                // client that sends its Hello at once is served long before it is the
                // oldest; a silent peer only shortens the wait of other silent peers.
                while c.pending.len() >= limits.max_pending.max(1) {
                    let Some(old) = c.pending.pop_first() else {
                        break;
                    };
                    if let Some(e) = c.map.get(&old) {
                        e.stream.shutdown();
                    }
                    bump(&self.shared.stats.evicted);
                }
                c.map.insert(
                    id,
                    ConnEntry {
                        stream: clone,
                        authenticated: false,
                    },
                );
                c.pending.insert(id);
            }
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("certadm-emu-conn-{id}"))
                .spawn(move || serve_connection(&shared, stream, id, accepted_at));
            match spawned {
                Ok(w) => workers.push(w),
                Err(e) => {
                    self.shared
                        .log(format!("connection {id}: cannot start a thread: {e}"));
                    self.shared.forget(id);
                }
            }
            self.shared.summarize();
        }
        {
            let c = self.shared.conns.lock();
            for e in c.map.values() {
                e.stream.shutdown();
            }
        }
        for w in workers {
            let _ = w.join();
        }
        let last = self.shared.last_summary.lock().1;
        if let Some(line) = handshake_summary(&last, &self.stats()) {
            self.shared.log(line);
        }
        Ok(())
    }

    /// Runs the server on a thread of its own.
    pub fn spawn(self) -> RunningServer {
        let server = Arc::new(self);
        let s = server.clone();
        let thread = std::thread::Builder::new()
            .name("certadm-emu-accept".into())
            .spawn(move || s.run())
            .expect("spawning the accept thread");
        RunningServer {
            server,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Listener::Unix(_, p) = &self.listener {
            let _ = std::fs::remove_file(p);
        }
        // The machines go now, with their temporary roots, even if a [`ShutdownHandle`]
        // being used on another thread (a signal handler) briefly holds the shared state.
        let machines = std::mem::take(&mut *self.shared.machines.lock());
        drop(machines);
    }
}

/// A server running on its own thread; dropping it shuts the server down and waits.
#[derive(Debug)]
pub struct RunningServer {
    server: Arc<Server>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl RunningServer {
    /// The address clients connect to.
    pub fn addr(&self) -> &str {
        self.server.local_addr()
    }
    /// The server (machines, reports).
    pub fn server(&self) -> &Server {
        &self.server
    }
    /// A handle that stops it.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.server.shutdown_handle()
    }
    /// Shuts the server down and waits for its threads.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }
    /// Waits until the server stops (after a `Shutdown` request, for instance).
    pub fn wait(mut self) -> io::Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("server panicked"))),
            None => Ok(()),
        }
    }
    fn stop_inner(&mut self) -> io::Result<()> {
        self.server.shutdown_handle().shutdown();
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("server panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

// ----- machines ---------------------------------------------------------------------------

fn build_machine(m: &MachineConfig) -> Result<EmulatedCa, Error> {
    let names = [Some(m.name.as_str()), m.dns.as_deref()];
    for n in names.into_iter().flatten() {
        if registry::by_name(n).is_some() {
            return Err(Error::DuplicateServerName {
                name: n.to_string(),
            });
        }
    }
    m.try_build()
}

fn has_ca(ca: &EmulatedCa) -> bool {
    registry::by_name(ca.server_name()).is_some_and(|(h, _)| h.state.lock().ca.is_some())
}

/// A document of the control protocol (`State`, `Report`) as JSON text.
fn doc_text(doc: &impl serde::Serialize) -> String {
    serde_json::to_string(doc).expect("the control documents always serialise")
}

// ----- connections ------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct HandleInfo {
    restore: bool,
    live: bool,
}

struct Conn<'a> {
    shared: &'a Shared,
    id: u64,
    /// Every handle this connection received from a Prepare, and whether it is still open.
    handles: HashMap<u64, HandleInfo>,
    /// Tracked buffer tokens this connection received and has not freed.
    buffers: HashSet<u64>,
    /// Reused buffers: the request frame, the response head, the data of a read.
    frame: Vec<u8>,
    head: Vec<u8>,
    read_buf: Vec<u8>,
    /// Bytes of the current request held in the frame budget.
    reserved: usize,
    /// Whether the next request is awaited by polling before sleeping.
    poll: ReadLoopPoll,
}

/// How long a connection polls for the next request of a backup's read loop before it
/// sleeps in the receive ([`ReadLoopPoll`]).
const READ_LOOP_POLL: Duration = Duration::from_micros(100);

/// A backup's read loop sends its next read as soon as it has taken the last one's bytes,
/// and waking a sleeping thread costs about as much as those bytes take to cross the
/// socket. So after answering a read with data, a connection polls its socket for up to
/// [`READ_LOOP_POLL`] before it sleeps in the receive: when the last read's next request
/// came within that time, and when the connection's thread may run on more than one
/// processor (on one, the poll would hold the processor its client needs). A client that
/// takes longer turns the poll off until it is prompt again, so a slow reader costs one
/// poll.
#[derive(Debug)]
struct ReadLoopPoll {
    /// More than one processor; known from the first read answered.
    parallel: Option<bool>,
    /// When the last read was answered, until the next request arrives.
    answered: Option<Instant>,
    /// The last read's next request came within [`READ_LOOP_POLL`].
    prompt: bool,
}

impl ReadLoopPoll {
    fn new() -> ReadLoopPoll {
        ReadLoopPoll {
            parallel: None,
            answered: None,
            prompt: true,
        }
    }

    /// Whether to poll before the next receive.
    fn due(&self) -> bool {
        self.parallel == Some(true) && self.prompt && self.answered.is_some()
    }

    /// Polls `stream` if [`due`](Self::due): whether the poll saw a byte arrive, `None`
    /// without a poll.
    fn before_receive(&self, stream: &Stream) -> Option<bool> {
        self.due().then(|| stream.poll_readable(READ_LOOP_POLL))
    }

    /// A request arrived: after a read, was it prompt?
    fn received(&mut self) {
        if let Some(at) = self.answered.take() {
            self.prompt = at.elapsed() <= READ_LOOP_POLL;
        }
    }

    /// A read was answered with data.
    fn answered_read(&mut self) {
        self.parallel
            .get_or_insert_with(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1));
        self.answered = Some(Instant::now());
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn server_text() -> String {
    format!(
        "certadm-emu {} (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    )
}

/// Why a handshake that was read is refused after its secret was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The connection was closed to admit newer ones while it waited.
    Evicted,
    /// [`Limits::max_connections`] authenticated connections are open.
    TooBusy,
}

/// Reads through a deadline: each read waits at most until `until`.
struct Deadline<'a> {
    io: &'a mut Stream,
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the handshake deadline passed",
            ));
        }
        self.io.set_read_timeout(Some(left))?;
        self.io.read(buf)
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// When the verdict on a secret from `key` may be sent: `Err` if the address's queue
/// of failures reaches beyond the backlog (then the secret is not looked at).
fn verdict_time(shared: &Shared, key: PeerKey, ok: bool) -> Result<Instant, Duration> {
    let l = &shared.limits;
    let now = Instant::now();
    let mut f = shared.failures.lock();
    let queued = f.get(&key).copied().filter(|u| *u > now);
    if let Some(u) = queued {
        if u > now + l.failed_secret_backlog {
            return Err(u - now);
        }
    }
    if ok {
        // A success waits behind the failures queued before it, so that parallel
        // guesses learn no more than one verdict per delay.
        return Ok(queued.unwrap_or(now));
    }
    let at = queued.unwrap_or(now) + l.failed_secret_delay;
    if f.len() >= 4096 {
        f.retain(|_, u| *u > now);
    }
    f.insert(key, at);
    Ok(at)
}

/// Counts a handshake that failed for its own reasons (not closed by the server to admit
/// newer connections, nor at shutdown).
fn bad_handshake(shared: &Shared, id: u64) {
    if shared.conns.lock().pending.contains(&id) && !shared.stopping.load(Ordering::SeqCst) {
        bump(&shared.stats.bad_handshakes);
    }
}

/// Runs the handshake; `Err` is the reason to close.
///
/// It reads the stream itself, with exact reads (nothing past the Hello), so a connection
/// costs no read buffer before it is authenticated.
fn handshake(
    shared: &Shared,
    id: u64,
    io: &mut Stream,
    accepted_at: Instant,
) -> Result<String, String> {
    let limits = &shared.limits;
    let read = read_frame(
        &mut Deadline {
            io,
            until: accepted_at + limits.handshake_timeout,
        },
        MAX_HELLO_FRAME,
    );
    let frame = match read {
        Ok(Some(f)) => f,
        Ok(None) => {
            bad_handshake(shared, id);
            return Err("closed before the handshake".into());
        }
        Err(FrameError::Io(e)) if timed_out(&e) => {
            bump(&shared.stats.handshake_timeouts);
            return Err(format!(
                "no complete Hello within {:?} of accept",
                limits.handshake_timeout
            ));
        }
        Err(e) => {
            bad_handshake(shared, id);
            return Err(format!("handshake: {e}"));
        }
    };
    let hello = decode_hello(&frame).map_err(|e| {
        bad_handshake(shared, id);
        format!("handshake: {e}")
    })?;
    let mut reply = HelloReply {
        version: VERSION,
        hr: HRESULT::S_OK,
        message: String::new(),
        server: server_text(),
        max_frame: MAX_FRAME,
        max_read: MAX_READ,
    };
    let mut refusal = None;
    let mut send_at = Instant::now();
    if hello.version != VERSION {
        // Slow down scanning.
        bad_handshake(shared, id);
        send_at += limits.failed_secret_delay;
        refusal = Some((
            HRESULT::ERROR_NOT_SUPPORTED,
            format!(
                "protocol version {} is not supported; this server speaks version {VERSION}",
                hello.version
            ),
        ));
    } else if let Some(s) = &shared.secret {
        let ok = hello
            .secret
            .as_deref()
            .is_some_and(|c| constant_time_eq(c.as_bytes(), s.as_bytes()));
        let key = peer_key(io);
        match verdict_time(shared, key, ok) {
            Err(wait) => {
                bump(&shared.stats.throttled);
                refusal = Some((
                    HRESULT::E_ACCESSDENIED,
                    format!(
                        "too many failed handshakes from this address; try again in {} ms",
                        wait.as_millis()
                    ),
                ));
            }
            Ok(at) => {
                send_at = at;
                if !ok {
                    bump(&shared.stats.wrong_secret);
                    refusal = Some((
                        HRESULT::E_ACCESSDENIED,
                        if hello.secret.is_some() {
                            "wrong shared secret".to_string()
                        } else {
                            "this server requires a shared secret".to_string()
                        },
                    ));
                }
            }
        }
    }
    let wait = send_at.saturating_duration_since(Instant::now());
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
    if refusal.is_none() {
        match shared.promote(id) {
            Ok(()) => {}
            Err(Refusal::Evicted) => {
                return Err("closed to admit newer connections during the handshake".into());
            }
            Err(Refusal::TooBusy) => {
                bump(&shared.stats.too_busy);
                refusal = Some((
                    HRESULT::RPC_S_SERVER_TOO_BUSY,
                    format!(
                        "{} connections are open, the most this server serves at once; try again later",
                        limits.max_connections
                    ),
                ));
            }
        }
    }
    if let Some((hr, msg)) = &refusal {
        reply.hr = *hr;
        reply.message = msg.clone();
    }
    let _ = io.set_read_timeout(None);
    // The reply is small: it fits in the socket's buffer unless the peer stopped reading.
    let _ = io.set_write_timeout(Some(limits.handshake_timeout));
    let sent = write_frame(io, &encode_hello_reply(&reply));
    if let Some((_, msg)) = refusal {
        return Err(format!("handshake refused ({}): {msg}", hello.client));
    }
    sent.map_err(|e| format!("handshake: {e}"))?;
    bump(&shared.stats.authenticated);
    // A peer that stops reading its responses is idle too.
    let _ = io.set_read_timeout(limits.idle_timeout);
    let _ = io.set_write_timeout(limits.idle_timeout);
    Ok(hello.client)
}

fn serve_connection(shared: &Shared, mut stream: Stream, id: u64, accepted_at: Instant) {
    let peer = stream.peer();
    let shaken = handshake(shared, id, &mut stream, accepted_at);
    let mut io = BufReader::with_capacity(if shaken.is_ok() { 64 << 10 } else { 0 }, stream);
    let mut conn = Conn {
        shared,
        id,
        handles: HashMap::new(),
        buffers: HashSet::new(),
        frame: Vec::new(),
        head: Vec::new(),
        read_buf: Vec::new(),
        reserved: 0,
        poll: ReadLoopPoll::new(),
    };
    let closed = match shaken {
        // A flood of these is summarised by the accept loop ([`Shared::summarize`]),
        // not logged line by line.
        Err(_) => None,
        Ok(_client) => conn.serve(&mut io),
    };
    // A frame the connection was reading when it ended gives its bytes back.
    shared.release(std::mem::take(&mut conn.reserved));
    if let Some(reason) = closed {
        shared.log(format!("connection {id} ({peer}) closed: {reason}"));
    }
    io.get_ref().shutdown();
    conn.rundown();
    shared.forget(id);
}

impl Conn<'_> {
    /// Serves requests until the peer closes (`None`) or breaks the protocol (the reason).
    fn serve(&mut self, io: &mut BufReader<Stream>) -> Option<String> {
        loop {
            let mut frame = std::mem::take(&mut self.frame);
            let shared = self.shared;
            let mut reserved = 0;
            if io.buffer().is_empty() {
                if let Some(caught) = self.poll.before_receive(io.get_ref()) {
                    bump(&shared.stats.read_polls);
                    if caught {
                        bump(&shared.stats.read_polls_caught);
                    }
                }
            }
            let read = read_frame_metered(io, MAX_FRAME, &mut frame, FRAME_ALLOWANCE, |n| {
                let ok = shared.reserve(n);
                if ok {
                    reserved += n;
                }
                ok
            });
            self.reserved = reserved;
            self.poll.received();
            let dropped = match read {
                Ok(FrameRead::Frame) => None,
                Ok(FrameRead::Dropped { len }) => Some(len),
                Ok(FrameRead::End) => return None,
                Err(FrameError::Io(e)) if self.shared.stopping.load(Ordering::SeqCst) => {
                    return Some(format!("server shutting down ({e})"));
                }
                Err(FrameError::Io(e)) if timed_out(&e) => {
                    bump(&self.shared.stats.idle_closed);
                    return Some(format!(
                        "no request byte for {:?} (idle timeout); its contexts are run down",
                        self.shared.limits.idle_timeout.unwrap_or_default()
                    ));
                }
                Err(e) => return Some(format!("bad frame: {e}")),
            };
            let resp = match dropped {
                None => {
                    let req = decode_request(&frame);
                    self.frame = frame;
                    match req {
                        Ok(r) => Ok(r),
                        Err(e) => return Some(format!("{e}")),
                    }
                }
                Some(len) => {
                    // Over the budget: the frame was read and dropped; answer its
                    // operation (a frame that is not a request is a protocol error).
                    let op = frame
                        .get(..2)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]))
                        .filter(|&op| out_kind(op).is_some());
                    self.frame = frame;
                    let Some(op) = op else {
                        return Some(format!("a dropped frame of {len} bytes is not a request"));
                    };
                    bump(&self.shared.stats.over_budget);
                    let name = Call::from_op(op).map_or("request", Call::name);
                    Err(Response::fail(
                        op,
                        HRESULT::E_OUTOFMEMORY,
                        format!(
                            "{name}: the request of {len} bytes does not fit in the server's budget for buffered requests ({} bytes, shared by all connections); it was dropped, try again later",
                            self.shared.limits.frame_budget
                        ),
                    ))
                }
            };
            let (code, shutdown, resp) = match resp {
                Ok(req) => {
                    let code = req.op();
                    let shutdown = matches!(req, Request::Shutdown);
                    (code, shutdown, self.execute_guarded(code, req))
                }
                Err(resp) => (resp.op, false, resp),
            };
            let written = self.respond(io, code, &resp);
            if let Some(Out::Bytes(b)) = resp.out {
                if !b.is_empty() {
                    self.poll.answered_read();
                }
                self.read_buf = b;
            }
            // The request's bytes beyond the allowance go back to the budget, and the
            // buffers shrink back to it.
            self.shared.release(std::mem::take(&mut self.reserved));
            if self.frame.capacity() > FRAME_ALLOWANCE {
                self.frame = Vec::new();
            }
            if self.head.capacity() > FRAME_ALLOWANCE {
                self.head = Vec::new();
            }
            if let Err(e) = written {
                return Some(format!("writing a response: {e}"));
            }
            if shutdown {
                self.shared
                    .log(format!("connection {} asked for shutdown", self.id));
                self.shared.stop();
            }
        }
    }

    /// Executes a request; an emulator panic becomes `E_UNEXPECTED`.
    fn execute_guarded(&mut self, code: u16, req: Request) -> Response {
        catch_unwind(AssertUnwindSafe(|| self.execute(req))).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            // As the ABI boundary in process: the panic is an event of the CA's trace
            // (rule EM01), and the message names the call.
            let message = match Call::from_op(code).map(Call::name) {
                Some(call) => {
                    crate::api::route::record_panic(call, &msg);
                    format!("{call}: internal emulator panic: {msg} (please report this)")
                }
                None => format!("internal emulator panic: {msg} (please report this)"),
            };
            Response::fail(code, HRESULT::E_UNEXPECTED, message)
        })
    }

    /// Sends a response (one that would exceed the frame limit is replaced by
    /// `E_OUTOFMEMORY`).
    fn respond(
        &mut self,
        io: &mut BufReader<Stream>,
        code: u16,
        resp: &Response,
    ) -> io::Result<()> {
        let mut head = std::mem::take(&mut self.head);
        let written = {
            let w = io.get_mut();
            // Head and data in one vectored write: one system call (and one push of
            // the socket) per response, the data straight from the read buffer.
            let mut send = |head: &[u8], tail: &[u8]| -> io::Result<()> {
                let mut parts = [io::IoSlice::new(head), io::IoSlice::new(tail)];
                let mut left = &mut parts[..];
                while !left.is_empty() {
                    match w.write_vectored(left) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => io::IoSlice::advance_slices(&mut left, n),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                w.flush()
            };
            let tail = encode_response_frame(resp, &mut head);
            let size = head.len() - 4 + tail.len();
            if size > MAX_FRAME as usize {
                let fail = Response::fail(
                    code,
                    HRESULT::E_OUTOFMEMORY,
                    format!(
                        "the response of {size} bytes exceeds the frame limit of {MAX_FRAME} bytes"
                    ),
                );
                encode_response_frame(&fail, &mut head);
                send(&head, &[])
            } else {
                send(&head, tail)
            }
        };
        self.head = head;
        written
    }

    fn handle(&self, call: &'static str, hbc: u64) -> Result<Hcsbc, Error> {
        let Some(h) = Hcsbc::from_raw(hbc as usize) else {
            return Err(Error::InvalidHandle {
                call,
                handle: 0,
                why: "hbc is NULL".into(),
            });
        };
        if !self.handles.contains_key(&hbc) {
            return Err(Error::InvalidHandle {
                call,
                handle: hbc as usize,
                why: "not a context of this connection: like RPC context handles, a handle is valid only on the connection whose Prepare created it".into(),
            });
        }
        Ok(h)
    }

    fn opt_handle(&self, call: &'static str, hbc: u64) -> Result<Option<Hcsbc>, Error> {
        if hbc == 0 {
            Ok(None)
        } else {
            self.handle(call, hbc).map(Some)
        }
    }

    fn ended(&mut self, hbc: u64) {
        if let Some(i) = self.handles.get_mut(&hbc) {
            i.live = false;
        }
    }

    fn machine(&self, call: &'static str, name: &str) -> Result<Arc<EmulatedCa>, Error> {
        self.shared.find(name).ok_or_else(|| Error::FileNotFound {
            call,
            why: format!(
                "this server has no machine named {name:?} (create one with CreateMachine)"
            ),
        })
    }

    fn ca(&self, call: &'static str, name: &str) -> Result<Arc<EmulatedCa>, Error> {
        let m = self.machine(call, name)?;
        if !has_ca(&m) {
            return Err(Error::FileNotFound {
                call,
                why: format!("machine {name:?} has no CA installed"),
            });
        }
        Ok(m)
    }

    fn execute(&mut self, req: Request) -> Response {
        let code = req.op();
        match self.run(req) {
            Ok(out) => Response::ok(code, out),
            Err(e) => Response::fail(code, e.hresult(), e.to_string()),
        }
    }

    fn run(&mut self, req: Request) -> Result<Out, Error> {
        match req.call() {
            Some(call) => self.certbcli(call, req),
            None => self.control(req),
        }
    }

    /// A certbcli request: the safe API, with the handles of this connection.
    fn certbcli(&mut self, call: Call, req: Request) -> Result<Out, Error> {
        use Request::*;
        let name = call.name();
        Ok(match req {
            IsServerOnline { server } => Out::Bool(api::is_server_online(&server)?),
            BackupPrepare {
                server,
                grbit_jet,
                backup_flags,
            } => {
                let h = api::backup_prepare(&server, grbit_jet, backup_flags)?;
                Out::U64(self.prepared(h, false))
            }
            GetList { kind, hbc, track } => {
                let h = self.handle(name, hbc)?;
                if track {
                    // As the ABI's list functions: the buffer is in the trace (`out.buffer`),
                    // so the conformance report sees a list that is never freed.
                    let token = self.shared.token();
                    let list = api::list_tracked_as(kind, h, token as usize)?;
                    self.shared.buffers.lock().insert(token, self.id);
                    self.buffers.insert(token);
                    Out::List {
                        buffer: token,
                        list,
                    }
                } else {
                    Out::List {
                        buffer: 0,
                        list: api::list(kind, h)?,
                    }
                }
            }
            BackupOpenFile {
                hbc,
                name: file,
                read_hint,
            } => Out::U64(api::backup_open_file(
                self.handle(name, hbc)?,
                &file,
                read_hint,
            )?),
            BackupRead { hbc, cb } => {
                let h = self.handle(name, hbc)?;
                if cb > MAX_READ {
                    return Err(Error::invalid_arg(
                        name,
                        format!("cbBuffer {cb} exceeds the {MAX_READ} bytes one remote read carries; split the read"),
                    ));
                }
                // The buffer of the last read, reused as it is: the read overwrites what
                // it returns, so only bytes beyond the last read's length are zeroed.
                let mut buf = std::mem::take(&mut self.read_buf);
                buf.resize(cb as usize, 0);
                let n = api::backup_read(h, &mut buf)?;
                buf.truncate(n);
                Out::Bytes(buf)
            }
            BackupClose { hbc } => {
                api::backup_close(self.handle(name, hbc)?)?;
                Out::Unit
            }
            BackupTruncateLogs { hbc } => {
                Out::U32s(api::backup_truncate_logs(self.handle(name, hbc)?)?)
            }
            BackupEnd { hbc } => {
                api::backup_end(self.handle(name, hbc)?)?;
                self.ended(hbc);
                Out::Unit
            }
            BackupFree { buffer } => {
                self.free(buffer)?;
                Out::Unit
            }
            RestorePrepare {
                server,
                restore_flags,
            } => {
                let h = api::restore_prepare(&server, restore_flags)?;
                Out::U64(self.prepared(h, true))
            }
            RestoreRegister {
                hbc,
                through_file,
                reg,
            } => {
                api::restore_register(self.opt_handle(name, hbc)?, &reg, through_file)?;
                Out::Unit
            }
            RestoreRegisterComplete { hbc, restore_state } => {
                api::restore_register_complete(self.opt_handle(name, hbc)?, restore_state)?;
                Out::Unit
            }
            RestoreEnd { hbc } => {
                api::restore_end(self.handle(name, hbc)?)?;
                self.ended(hbc);
                Out::Unit
            }
            ServerControl {
                server,
                control_flags,
            } => {
                api::server_control(&server, control_flags)?;
                Out::Unit
            }
            // `run` sends these to `control`; listed so that a new request cannot be
            // forgotten here.
            CreateMachine { .. }
            | DropMachine { .. }
            | ListMachines
            | Issue { .. }
            | Revoke { .. }
            | RollLog { .. }
            | Stop { .. }
            | Crash { .. }
            | Start { .. }
            | WipeFiles { .. }
            | HostPath { .. }
            | SetIdentity { .. }
            | SetInterfaceFlags { .. }
            | SetFaults { .. }
            | Report { .. }
            | Trace { .. }
            | Records { .. }
            | State { .. }
            | ClearRestoreMarker { .. }
            | Shutdown => unreachable!("Conn::run sends control requests to Conn::control"),
        })
    }

    /// Records a context this connection prepared; returns its raw value.
    fn prepared(&mut self, h: Hcsbc, restore: bool) -> u64 {
        let raw = h.as_raw() as u64;
        self.handles.insert(
            raw,
            HandleInfo {
                restore,
                live: true,
            },
        );
        raw
    }

    /// `CertSrvBackupFree` of a tracked list's token.
    fn free(&mut self, buffer: u64) -> Result<(), Error> {
        let mut owner = self.shared.buffers.lock().get(&buffer).copied();
        // A process frees a list after the thread that received it ended: that
        // thread's connection may be closing right now. Give its rundown a moment
        // (it releases the list to every connection) before refusing.
        let t = std::time::Instant::now();
        while buffer != 0
            && owner.is_some_and(|c| c != self.id)
            && t.elapsed() < Duration::from_millis(500)
        {
            std::thread::sleep(Duration::from_millis(2));
            owner = self.shared.buffers.lock().get(&buffer).copied();
        }
        if buffer != 0 && owner.is_some_and(|c| c != self.id) {
            return Err(Error::invalid_arg(
                Call::BackupFree.name(),
                format!("{buffer:#x} is a buffer of another connection; ignored"),
            ));
        }
        let r = api::backup_free(buffer as usize as *mut core::ffi::c_void);
        if owner.is_some() && r.is_ok() {
            self.shared.buffers.lock().remove(&buffer);
            self.buffers.remove(&buffer);
        }
        r
    }

    /// A control request: the machines of this server ([`EmulatedCa`]).
    fn control(&mut self, req: Request) -> Result<Out, Error> {
        use Request::*;
        let name = req.name();
        Ok(match req {
            CreateMachine { json } => Out::Texts(self.create(name, &json)?),
            DropMachine { machine } => {
                let m = self.machine(name, &machine)?;
                self.shared.machines.lock().retain(|x| !Arc::ptr_eq(x, &m));
                Out::Unit
            }
            ListMachines => Out::Texts(
                self.shared
                    .machines
                    .lock()
                    .iter()
                    .map(|m| m.server_name().to_string())
                    .collect(),
            ),
            Issue { machine, n } => {
                if n > MAX_ISSUE {
                    return Err(Error::invalid_arg(
                        name,
                        format!("n = {n}: at most {MAX_ISSUE} certificates per call"),
                    ));
                }
                Out::U32s(self.ca(name, &machine)?.issue(n)?)
            }
            Revoke {
                machine,
                request_id,
            } => {
                self.ca(name, &machine)?.revoke(request_id)?;
                Out::Unit
            }
            RollLog { machine } => Out::U32(self.ca(name, &machine)?.roll_log()?),
            Stop { machine } => {
                self.ca(name, &machine)?.stop()?;
                Out::Unit
            }
            Crash { machine } => {
                self.ca(name, &machine)?.crash();
                Out::Unit
            }
            Start { machine } => Out::Recovery(self.ca(name, &machine)?.start()?),
            WipeFiles { machine } => {
                self.ca(name, &machine)?.wipe_files()?;
                Out::Unit
            }
            HostPath {
                machine,
                windows_path,
            } => {
                let p = self.machine(name, &machine)?.host_path(&windows_path)?;
                Out::Text(p.to_str().map(str::to_string).ok_or_else(|| {
                    Error::invalid_arg(name, format!("{} is not valid UTF-8", p.display()))
                })?)
            }
            SetIdentity { machine, identity } => {
                self.machine(name, &machine)?.set_identity(identity);
                Out::Unit
            }
            SetInterfaceFlags { machine, flags } => {
                self.ca(name, &machine)?.set_interface_flags(flags);
                Out::Unit
            }
            SetFaults { machine, json } => {
                let s = crate::api::faults::FaultSchedule::from_json(&json)
                    .map_err(|e| Error::invalid_arg(name, e))?;
                self.machine(name, &machine)?.set_faults(s)?;
                Out::Unit
            }
            Report { machine } => {
                let m = self.ca(name, &machine)?;
                Out::Text(doc_text(&m.machine_report()))
            }
            Trace {
                machine,
                from,
                max_bytes,
            } => {
                let events = self.machine(name, &machine)?.trace();
                let max = if max_bytes == 0 {
                    MAX_TRACE_PAGE
                } else {
                    max_bytes.min(MAX_TRACE_PAGE)
                } as usize;
                let total = events.len() as u64;
                let mut next = from.min(total);
                let mut lines = String::new();
                while next < total {
                    let l = events[next as usize].to_json();
                    if !lines.is_empty() && lines.len() + l.len() + 1 > max {
                        break;
                    }
                    lines.push_str(&l);
                    lines.push('\n');
                    next += 1;
                }
                Out::TracePage { lines, next, total }
            }
            Records { machine } => {
                let m = self.ca(name, &machine)?;
                Out::Records {
                    count: m.record_count() as u64,
                    digest: m.records_digest()?,
                }
            }
            State { machine } => Out::Text(doc_text(&self.machine(name, &machine)?.state())),
            ClearRestoreMarker { machine } => {
                self.ca(name, &machine)?.clear_restore_marker()?;
                Out::Unit
            }
            Shutdown => Out::Unit,
            // `run` sends these to `certbcli`; listed so that a new request cannot be
            // forgotten here.
            IsServerOnline { .. }
            | BackupPrepare { .. }
            | GetList { .. }
            | BackupOpenFile { .. }
            | BackupRead { .. }
            | BackupClose { .. }
            | BackupTruncateLogs { .. }
            | BackupEnd { .. }
            | BackupFree { .. }
            | RestorePrepare { .. }
            | RestoreRegister { .. }
            | RestoreRegisterComplete { .. }
            | RestoreEnd { .. }
            | ServerControl { .. } => {
                unreachable!("Conn::run sends certbcli requests to Conn::certbcli")
            }
        })
    }

    fn create(&self, call: &'static str, text: &str) -> Result<Vec<String>, Error> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::invalid_arg(call, e.to_string()))?;
        let configs: Vec<MachineConfig> = if v.get("machines").is_some() {
            Config::from_json(text)
                .map_err(|e| Error::invalid_arg(call, e))?
                .machines
        } else {
            vec![serde_json::from_value(v).map_err(|e| Error::invalid_arg(call, e.to_string()))?]
        };
        let mut seen = HashSet::new();
        for m in &configs {
            for n in [Some(&m.name), m.dns.as_ref()].into_iter().flatten() {
                if registry::by_name(n).is_some() || !seen.insert(n.to_lowercase()) {
                    return Err(Error::DuplicateServerName { name: n.clone() });
                }
            }
        }
        // Every machine is checked before any is created.
        for m in &configs {
            m.try_validate()?;
        }
        let mut names = Vec::new();
        for m in &configs {
            let ca = build_machine(m)?;
            names.push(ca.server_name().to_string());
            self.shared.machines.lock().push(Arc::new(ca));
        }
        Ok(names)
    }

    /// Ends what the connection left open (RPC context rundown): backup contexts as
    /// `CertSrvBackupEnd` would (the freeze of a full backup is released), restore
    /// contexts as `CertSrvRestoreEnd` would (a registered restore marker stays on the CA).
    /// Done directly on the host state, not through the API: it is not a call of the
    /// client, so it is neither traced nor counted by fault schedules.
    fn rundown(&mut self) {
        // The lists this connection received stay outstanding, but any connection may
        // free them now (a process frees a list after the thread that got it ended).
        {
            let mut owners = self.shared.buffers.lock();
            for token in self.buffers.drain() {
                owners.remove(&token);
            }
        }
        for (raw, info) in std::mem::take(&mut self.handles) {
            if !info.live {
                continue;
            }
            let Some(h) = Hcsbc::from_raw(raw as usize) else {
                continue;
            };
            if let Some(what) = force_end(h, info.restore, self.shared) {
                self.shared.log(format!(
                    "connection {} closed with {what} {raw:#x} open: ended it (rundown)",
                    self.id
                ));
            }
        }
    }
}

/// Ends a context without the API's checks; `Some(kind)` if there was one to end.
fn force_end(h: Hcsbc, restore: bool, shared: &Shared) -> Option<&'static str> {
    let host = registry::by_handle(h)?;
    let p = h.parts()?;
    let mut guard = host.state.lock();
    let st = &mut *guard;
    match st.sessions.get(p.session_slot, p.session_gen) {
        Some(Session::Backup(_)) if !restore => {
            let Some(Session::Backup(mut b)) = st.sessions.remove(p.session_slot, p.session_gen)
            else {
                return None;
            };
            if st.active_backup == Some((p.session_slot, p.session_gen)) {
                st.active_backup = None;
            }
            if let Some(ca) = st.ca.as_mut() {
                if let Err(e) = b.end(ca, &host.machine) {
                    shared.log(format!("rundown of backup context {:#x}: {e}", h.as_raw()));
                }
            }
            Some("backup context")
        }
        Some(Session::Restore(_)) if restore => {
            st.sessions.remove(p.session_slot, p.session_gen);
            Some("restore context")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_without_secret_is_refused() {
        let e = Server::bind("0.0.0.0:0", ServerOptions::default()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("secret"), "{e}");
        let ok = Server::bind(
            "0.0.0.0:0",
            ServerOptions {
                secret: Some("x".into()),
                ..Default::default()
            },
        );
        assert!(ok.is_ok());
        assert!(Server::bind("127.0.0.1:0", ServerOptions::default()).is_ok());
        let e = Server::bind(
            "127.0.0.1:0",
            ServerOptions {
                secret: Some(String::new()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_connection_polls_after_a_read_while_its_client_is_prompt() {
        let mut p = ReadLoopPoll::new();
        assert!(!p.due(), "nothing answered yet");
        p.answered_read();
        p.parallel = Some(true);
        assert!(p.due());
        // A prompt request keeps the poll on for the next read.
        p.received();
        assert!(!p.due(), "no read answered since the request");
        p.answered_read();
        assert!(p.due());
        // A late one turns it off, until a request is prompt again.
        p.answered = Some(Instant::now() - 2 * READ_LOOP_POLL);
        p.received();
        p.answered_read();
        assert!(!p.due(), "the client was slow");
        p.received();
        p.answered_read();
        assert!(p.due(), "the client is prompt again");
        // On one processor it never polls.
        p.parallel = Some(false);
        assert!(!p.due());
    }

    #[test]
    fn a_connection_on_one_processor_never_polls() {
        let p = std::thread::spawn(|| {
            use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
            let all = sched_getaffinity(None).expect("the affinity");
            let first = (0..CpuSet::MAX_CPU)
                .find(|&c| all.is_set(c))
                .expect("a processor");
            let mut one = CpuSet::new();
            one.set(first);
            sched_setaffinity(None, &one).expect("pinning the thread");
            let mut p = ReadLoopPoll::new();
            p.answered_read();
            p
        })
        .join()
        .expect("the pinned thread");
        assert_eq!(p.parallel, Some(false));
        assert!(!p.due());
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

//! The server: an accept loop, one thread per connection, each request executed with the
//! safe API ([`crate::api`]) or the control API ([`EmulatedCa`]).
//!
//! Security: the protocol has no encryption and no authentication beyond an optional
//! shared secret sent in clear in the handshake, and a connected client can read every
//! file of the emulated disks (backups), write into them (restores, through
//! [`Request::HostPath`]) and delete them ([`Request::WipeFiles`]). So
//! [`Server::bind`] refuses a TCP address that is not loopback unless a secret is set,
//! and a Unix socket is created readable and writable by its owner only (mode 0600).
//! Even with a secret, expose the port only on a network you trust.

use super::protocol::*;
use super::{Addr, Stream};
use crate::api::{self, registry};
use crate::config::{Config, MachineConfig};
use crate::control::ReportFile;
use crate::core::{Call, Error, HRESULT};
use crate::session::{Hcsbc, Session};
use crate::EmulatedCa;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Most connections served at once; more are closed right after accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a new connection has to send its [`Hello`].
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

struct Shared {
    secret: Option<String>,
    machines: Mutex<Vec<Arc<EmulatedCa>>>,
    /// Live tracked list buffers (token) and the connection that received each.
    buffers: Mutex<HashMap<u64, u64>>,
    /// A clone of each connection's stream, to close it at shutdown.
    conns: Mutex<HashMap<u64, Stream>>,
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
}

/// Stops a running server (from any thread, any number of times).
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Stops accepting, closes every connection (their contexts are run down) and makes
    /// [`Server::run`] return.
    pub fn shutdown(&self) {
        self.shared.stop();
    }
    /// True once a shutdown was asked for.
    pub fn is_stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
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
                machines: Mutex::new(machines),
                buffers: Mutex::new(HashMap::new()),
                conns: Mutex::new(HashMap::new()),
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
            shared: self.shared.clone(),
        }
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
            workers.retain(|w| !w.is_finished());
            if workers.len() >= MAX_CONNECTIONS {
                self.shared.log(format!(
                    "refusing a connection from {}: {MAX_CONNECTIONS} connections already",
                    stream.peer()
                ));
                stream.shutdown();
                continue;
            }
            let id = self.shared.next_conn.fetch_add(1, Ordering::Relaxed);
            match stream.try_clone() {
                Ok(c) => {
                    self.shared.conns.lock().insert(id, c);
                }
                Err(e) => {
                    self.shared.log(format!("connection {id}: {e}"));
                    continue;
                }
            }
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("certadm-emu-conn-{id}"))
                .spawn(move || serve_connection(&shared, stream, id));
            match spawned {
                Ok(w) => workers.push(w),
                Err(e) => {
                    self.shared
                        .log(format!("connection {id}: cannot start a thread: {e}"));
                    if let Some(s) = self.shared.conns.lock().remove(&id) {
                        s.shutdown();
                    }
                }
            }
        }
        let open: Vec<Stream> = self.shared.conns.lock().drain().map(|(_, s)| s).collect();
        for s in &open {
            s.shutdown();
        }
        for w in workers {
            let _ = w.join();
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

/// Runs the handshake; `Err` is the reason to close.
fn handshake(shared: &Shared, io: &mut BufReader<Stream>) -> Result<String, String> {
    let _ = io.get_ref().set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let frame = match read_frame(io, MAX_HELLO_FRAME) {
        Ok(Some(f)) => f,
        Ok(None) => return Err("closed before the handshake".into()),
        Err(e) => return Err(format!("handshake: {e}")),
    };
    let hello = decode_hello(&frame).map_err(|e| format!("handshake: {e}"))?;
    let mut reply = HelloReply {
        version: VERSION,
        hr: HRESULT::S_OK,
        message: String::new(),
        server: server_text(),
        max_frame: MAX_FRAME,
        max_read: MAX_READ,
    };
    let refusal = if hello.version != VERSION {
        Some((
            HRESULT::ERROR_NOT_SUPPORTED,
            format!(
                "protocol version {} is not supported; this server speaks version {VERSION}",
                hello.version
            ),
        ))
    } else if let Some(s) = &shared.secret {
        let ok = hello
            .secret
            .as_deref()
            .is_some_and(|c| constant_time_eq(c.as_bytes(), s.as_bytes()));
        (!ok).then(|| {
            (
                HRESULT::E_ACCESSDENIED,
                if hello.secret.is_some() {
                    "wrong shared secret".to_string()
                } else {
                    "this server requires a shared secret".to_string()
                },
            )
        })
    } else {
        None
    };
    if let Some((hr, msg)) = &refusal {
        // Slow down guessing.
        std::thread::sleep(Duration::from_millis(100));
        reply.hr = *hr;
        reply.message = msg.clone();
    }
    let sent = write_frame(io.get_mut(), &encode_hello_reply(&reply));
    if let Some((_, msg)) = refusal {
        return Err(format!("handshake refused ({}): {msg}", hello.client));
    }
    sent.map_err(|e| format!("handshake: {e}"))?;
    let _ = io.get_ref().set_read_timeout(None);
    Ok(hello.client)
}

fn serve_connection(shared: &Shared, stream: Stream, id: u64) {
    let peer = stream.peer();
    let mut io = BufReader::with_capacity(64 << 10, stream);
    let mut conn = Conn {
        shared,
        id,
        handles: HashMap::new(),
        buffers: HashSet::new(),
        frame: Vec::new(),
        head: Vec::new(),
        read_buf: Vec::new(),
    };
    let closed = match handshake(shared, &mut io) {
        Err(reason) => Some(reason),
        Ok(_client) => conn.serve(&mut io),
    };
    if let Some(reason) = closed {
        shared.log(format!("connection {id} ({peer}) closed: {reason}"));
    }
    io.get_ref().shutdown();
    conn.rundown();
    if let Some(s) = shared.conns.lock().remove(&id) {
        s.shutdown();
    }
}

impl Conn<'_> {
    /// Serves requests until the peer closes (`None`) or breaks the protocol (the reason).
    fn serve(&mut self, io: &mut BufReader<Stream>) -> Option<String> {
        loop {
            let mut frame = std::mem::take(&mut self.frame);
            match read_frame_into(io, MAX_FRAME, &mut frame) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(FrameError::Io(e)) if self.shared.stopping.load(Ordering::SeqCst) => {
                    return Some(format!("server shutting down ({e})"))
                }
                Err(e) => return Some(format!("bad frame: {e}")),
            };
            let req = decode_request(&frame);
            self.frame = frame;
            let req = match req {
                Ok(r) => r,
                Err(e) => return Some(format!("{e}")),
            };
            let code = req.op();
            let shutdown = matches!(req, Request::Shutdown);
            let resp = catch_unwind(AssertUnwindSafe(|| self.execute(req))).unwrap_or_else(|p| {
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
            });
            let mut head = std::mem::take(&mut self.head);
            let written = {
                let w = io.get_mut();
                let mut send = |head: &[u8], tail: &[u8]| -> io::Result<()> {
                    w.write_all(head)?;
                    if !tail.is_empty() {
                        w.write_all(tail)?;
                    }
                    w.flush()
                };
                let tail = encode_response_frame(&resp, &mut head);
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
            if let Some(Out::Bytes(b)) = resp.out {
                self.read_buf = b;
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
                    let (p, list) = api::list_tracked(kind, h)?;
                    let token = p as usize as u64;
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
                let mut buf = std::mem::take(&mut self.read_buf);
                buf.clear();
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
            let Some(Session::Backup(b)) = st.sessions.remove(p.session_slot, p.session_gen) else {
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
    fn secrets_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

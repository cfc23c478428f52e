//! Server mode: one set of emulated CAs shared by several processes.
//!
//! A [`Server`](server::Server) owns emulated machines (from a configuration file, or
//! created by clients) and serves the 18 certbcli calls and the control calls over a
//! local TCP port or a Unix socket, one thread per connection. A
//! [`RemoteClient`](client::RemoteClient) is the other end: one method per certbcli call,
//! with the shapes of the safe API ([`crate::api`]), plus the control calls of
//! [`EmulatedCa`](crate::EmulatedCa).
//!
//! ```no_run
//! use certadm_emu::remote::{client::RemoteClient, server::{Server, ServerOptions}};
//! use certadm_emu::core::consts::CSBACKUP_TYPE_FULL;
//!
//! let server = Server::bind("127.0.0.1:0", ServerOptions::default())?.spawn();
//! let c = RemoteClient::connect(server.addr(), None)?;
//! let name = c.create_machine_json(r#"{"name": "CA01", "ca": {"records": 10}}"#)?;
//! let h = c.backup_prepare(&name[0], 0, CSBACKUP_TYPE_FULL)?;
//! let db = c.backup_get_database_names(h)?;
//! c.backup_end(h)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The wire format is in `docs/PROTOCOL.md` and [`protocol`]. What differs from calling
//! the API in process:
//!
//! * **A client is a connection.** In process a client is a thread
//!   (`api::current_client`); the server serves each connection on its own
//!   thread, so each connection is one client: a second Prepare on the same connection
//!   is a sequencing error, on another connection a concurrent backup.
//! * **Handles are bound to their connection**, as RPC context handles are: a handle
//!   used on another connection gets `E_HANDLE` (0x80070006) without reaching the CA.
//! * **Rundown.** When a connection closes (or the server closes it after its idle
//!   timeout, [`server::Limits::idle_timeout`]), the server ends the backup and restore
//!   contexts it left open (a full backup's freeze is released, so the next Prepare
//!   succeeds). A registered restore (the `RestoreInProgress` marker) is state of the CA,
//!   not of the context, and stays. The rundown is not a call of the client: it is not
//!   traced, so the conformance report still says the client never ended its context.
//! * **Lists are returned by value** and the client keeps its own copy;
//!   `CertSrvBackupFree` is then a call that only does the accounting (see
//!   [`protocol::Request::BackupFree`]).

#![forbid(unsafe_code)]

pub mod client;
pub mod fuzz;
pub mod protocol;
pub mod server;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Where a server listens: `HOST:PORT`, or a Unix socket path given as `unix:PATH` or as
/// a path starting with `/` or `.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// A TCP address (`127.0.0.1:0`, `localhost:7000`).
    Tcp(String),
    /// A Unix domain socket.
    Unix(PathBuf),
}

impl Addr {
    /// Parses an address.
    pub fn parse(s: &str) -> Addr {
        if let Some(p) = s.strip_prefix("unix:") {
            Addr::Unix(PathBuf::from(p))
        } else if s.starts_with('/') || s.starts_with('.') {
            Addr::Unix(PathBuf::from(s))
        } else {
            Addr::Tcp(s.to_string())
        }
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Tcp(s) => write!(f, "{s}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A connected stream of either kind.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub(crate) fn connect(addr: &Addr) -> io::Result<Stream> {
        match addr {
            Addr::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Addr::Unix(p) => Ok(Stream::Unix(UnixStream::connect(p)?)),
        }
    }
    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
        }
    }
    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }
    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
        }
    }
    /// True once a byte (or the end of the stream) waits to be read, looking without
    /// sleeping for at most `budget`; false if nothing came.
    pub(crate) fn poll_readable(&self, budget: Duration) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let start = std::time::Instant::now();
        loop {
            let mut fd = [PollFd::new(self, PollFlags::IN)];
            if poll(&mut fd, Some(&now)).is_ok_and(|n| n > 0) {
                return true;
            }
            if start.elapsed() >= budget {
                return false;
            }
            std::thread::yield_now();
        }
    }
    pub(crate) fn peer(&self) -> String {
        match self {
            Stream::Tcp(s) => s
                .peer_addr()
                .map_or_else(|_| "tcp peer".into(), |a| a.to_string()),
            Stream::Unix(_) => "unix peer".into(),
        }
    }
}

impl std::os::fd::AsFd for Stream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(Addr::parse("127.0.0.1:0"), Addr::Tcp("127.0.0.1:0".into()));
        assert_eq!(Addr::parse("unix:/tmp/s"), Addr::Unix("/tmp/s".into()));
        assert_eq!(Addr::parse("/tmp/s"), Addr::Unix("/tmp/s".into()));
        assert_eq!(Addr::parse("./s").to_string(), "unix:./s");
    }

    #[test]
    fn polling_sees_a_waiting_byte_and_the_end_of_the_stream() {
        let (a, mut b) = UnixStream::pair().expect("a socket pair");
        let a = Stream::Unix(a);
        let budget = Duration::from_millis(5);
        let t = std::time::Instant::now();
        assert!(!a.poll_readable(budget), "nothing was sent");
        assert!(t.elapsed() >= budget, "it gave up early: {:?}", t.elapsed());
        b.write_all(b"x").expect("writing");
        assert!(a.poll_readable(budget));
        assert!(a.poll_readable(budget), "polling consumes nothing");
        drop(b);
        assert!(a.poll_readable(budget), "the end of the stream is readable");
        let (mut a, mut one) = (a, [0u8; 1]);
        assert_eq!(a.read(&mut one).expect("the byte"), 1);
        assert_eq!(a.read(&mut one).expect("the end"), 0);
    }
}

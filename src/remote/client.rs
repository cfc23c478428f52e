//! The client: one method per certbcli call, with the shapes of the safe API
//! ([`crate::api`]), plus the control calls.
//!
//! A [`RemoteClient`] is one connection, and **one connection is one client** of the
//! emulated CA: its handles are valid only on it, and a second Prepare on it is a
//! sequencing error. It is `Send + Sync`: calls from several threads are serialised by a
//! mutex around the stream (strict request/response), and they all act as that one
//! client. To emulate several clients, open one `RemoteClient` each.
//!
//! Errors carry the HRESULT and the emulator's message ([`RemoteError`]). When the
//! transport fails (the server is gone, the connection broke, a response does not
//! decode) the error is `RPC_S_SERVER_UNAVAILABLE` (connect) or `RPC_S_CALL_FAILED`
//! (during a call), as a real RPC client would see, and every later call on this client
//! fails the same way.

use super::protocol::*;
use super::{Addr, Stream};
use crate::api::faults::FaultSchedule;
use crate::ca::recovery::RecoveryReport;
use crate::config::MachineConfig;
use crate::control::{CaState, MachineReport};
use crate::core::outbuf::OutByte;
use crate::core::{WideList, HRESULT};
use crate::event::Event;
use crate::machine::Identity;
use crate::session::{Hcsbc, Registration};
use parking_lot::Mutex;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::Duration;

/// A failed remote call: the HRESULT and the emulator's explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// The HRESULT the certbcli function returned (or the transport failure).
    pub hr: HRESULT,
    /// The emulator's message.
    pub message: String,
}

impl RemoteError {
    fn call_failed(message: impl Into<String>) -> RemoteError {
        RemoteError {
            hr: HRESULT::RPC_S_CALL_FAILED,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.hr, self.message)
    }
}

impl std::error::Error for RemoteError {}

/// Result of a remote call.
pub type Result<T> = std::result::Result<T, RemoteError>;

#[derive(Debug)]
struct Conn {
    io: BufReader<Stream>,
    /// The last response frame (its capacity is reused).
    frame: Vec<u8>,
    broken: Option<String>,
}

/// A connection to a certadm-emu server.
#[derive(Debug)]
pub struct RemoteClient {
    conn: Mutex<Conn>,
    addr: String,
    server: String,
    max_read: u32,
}

macro_rules! expect {
    ($out:expr, $pat:pat => $v:expr) => {
        match $out {
            $pat => Ok($v),
            other => Err(RemoteError::call_failed(format!(
                "protocol error: unexpected out-value {:?}",
                other.kind()
            ))),
        }
    };
}

fn h(v: Hcsbc) -> u64 {
    v.as_raw() as u64
}

/// Why a call ended when the server closed the connection instead of answering.
const CLOSED: &str = "the server closed the connection (its idle timeout, a shutdown, \
                      or a protocol error: see the server's log)";

fn receiving(e: std::io::Error) -> String {
    format!("receiving: {e}")
}

/// Reads one response frame into `frame`.
fn receive_frame(io: &mut impl Read, frame: &mut Vec<u8>) -> std::result::Result<(), String> {
    match read_frame_into(io, MAX_FRAME, frame) {
        Ok(true) => Ok(()),
        Ok(false) => Err(CLOSED.to_string()),
        Err(e) => Err(format!("receiving: {e}")),
    }
}

/// Reads the start of a response frame into `pre`: its length prefix, then as much of the
/// rest as fits and the frame holds. Returns the bytes read (at least the 4 of the
/// prefix); a clean end of stream before them is an error. The first receive asks for
/// all of `pre` (one system call for a read reply's head): a shorter frame must then be
/// the last bytes the server sent, as it sends nothing but the response to a request.
fn read_prefix(io: &mut BufReader<Stream>, pre: &mut [u8]) -> std::result::Result<usize, String> {
    let mut got = 0;
    loop {
        let want = if got < 4 {
            pre.len()
        } else {
            let len = u32::from_le_bytes([pre[0], pre[1], pre[2], pre[3]]) as usize;
            let frame = 4usize.saturating_add(len);
            if got > frame {
                return Err("protocol error: bytes after the response".to_string());
            }
            pre.len().min(frame)
        };
        if got >= want {
            return Ok(got);
        }
        // What the buffer holds first, then one receive of what is left.
        let n = if io.buffer().is_empty() {
            io.get_mut().read(&mut pre[got..want])
        } else {
            io.read(&mut pre[got..want])
        };
        match n {
            Ok(0) if got == 0 => return Err(CLOSED.to_string()),
            Ok(0) => return Err(receiving(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(receiving(e)),
        }
    }
}

/// Fills `dst`: first with what `io` holds buffered, then straight from the socket (no
/// copy through the buffer).
fn read_direct<B: OutByte>(io: &mut BufReader<Stream>, dst: &mut [B]) -> std::io::Result<()> {
    let buffered = io.buffer();
    let k = buffered.len().min(dst.len());
    B::copy(&mut dst[..k], &buffered[..k]);
    io.consume(k);
    let mut got = k;
    while got < dst.len() {
        match B::read_fd(io.get_ref(), &mut dst[got..])? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    Ok(())
}

fn handle_out(out: Out) -> Result<Hcsbc> {
    let raw = expect!(out, Out::U64(v) => v)?;
    usize::try_from(raw)
        .ok()
        .and_then(Hcsbc::from_raw)
        .ok_or_else(|| RemoteError::call_failed(format!("protocol error: handle {raw:#x}")))
}

/// The request `make` builds for the machine named `machine` (most control requests carry
/// only the name).
fn on(machine: &str, make: impl FnOnce(String) -> Request) -> Request {
    make(machine.into())
}

impl RemoteClient {
    /// Connects to `addr` (`127.0.0.1:7000`, `unix:/path` or `/path`) and runs the
    /// handshake with `secret` if given.
    pub fn connect(addr: &str, secret: Option<&str>) -> Result<RemoteClient> {
        let a = Addr::parse(addr);
        let unavailable = |what: String| RemoteError {
            hr: HRESULT::RPC_S_SERVER_UNAVAILABLE,
            message: what,
        };
        let stream =
            Stream::connect(&a).map_err(|e| unavailable(format!("cannot connect to {a}: {e}")))?;
        let mut io = BufReader::with_capacity(64 << 10, stream);
        let hello = Hello {
            version: VERSION,
            secret: secret.map(str::to_string),
            client: format!(
                "certadm-emu {} client (pid {})",
                env!("CARGO_PKG_VERSION"),
                std::process::id()
            ),
        };
        let _ = io.get_ref().set_read_timeout(Some(Duration::from_secs(30)));
        write_frame(io.get_mut(), &encode_hello(&hello))
            .map_err(|e| unavailable(format!("handshake with {a}: {e}")))?;
        let frame = read_frame(&mut io, MAX_HELLO_FRAME)
            .map_err(|e| unavailable(format!("handshake with {a}: {e}")))?
            .ok_or_else(|| {
                unavailable(format!("{a} closed the connection during the handshake"))
            })?;
        let reply = decode_hello_reply(&frame)
            .map_err(|e| unavailable(format!("handshake with {a}: {e}")))?;
        if reply.hr.is_err() {
            return Err(RemoteError {
                hr: reply.hr,
                message: format!("{a} refused the connection: {}", reply.message),
            });
        }
        if reply.version != VERSION {
            return Err(RemoteError {
                hr: HRESULT::ERROR_NOT_SUPPORTED,
                message: format!(
                    "{a} speaks protocol version {}, this client {VERSION}",
                    reply.version
                ),
            });
        }
        let _ = io.get_ref().set_read_timeout(None);
        Ok(RemoteClient {
            conn: Mutex::new(Conn {
                io,
                frame: Vec::new(),
                broken: None,
            }),
            addr: a.to_string(),
            server: reply.server,
            max_read: reply.max_read.clamp(1, MAX_READ),
        })
    }

    /// The address connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The server's self-description from the handshake.
    pub fn server_info(&self) -> &str {
        &self.server
    }

    /// Sends one request and waits for its response; a failure HRESULT becomes `Err`.
    pub fn call(&self, req: &Request) -> Result<Out> {
        let code = req.op();
        self.exchange(req, |frame| {
            let resp = decode_response(frame).map_err(|e| e.to_string())?;
            if resp.op != code {
                return Err(format!(
                    "protocol error: response to operation {:#06x} for request {code:#06x}",
                    resp.op
                ));
            }
            Ok(if resp.hr.is_err() {
                Err(RemoteError {
                    hr: resp.hr,
                    message: resp.message,
                })
            } else {
                Ok(resp.out.unwrap_or(Out::Unit))
            })
        })
    }

    /// Sends `req` and hands the response frame to `decode`, which returns the server's
    /// answer, or `Err` for a protocol error (the connection is then marked broken).
    fn exchange<T>(
        &self,
        req: &Request,
        decode: impl FnOnce(&[u8]) -> std::result::Result<Result<T>, String>,
    ) -> Result<T> {
        self.exchange_with(req, |io, frame| {
            receive_frame(io, frame)?;
            decode(frame)
        })
    }

    /// Sends `req` and hands the stream to `receive`, which reads the response (the
    /// connection's frame buffer is its to use) and returns the server's answer, or `Err`
    /// for a transport or protocol error (the connection is then marked broken).
    fn exchange_with<T>(
        &self,
        req: &Request,
        receive: impl FnOnce(
            &mut BufReader<Stream>,
            &mut Vec<u8>,
        ) -> std::result::Result<Result<T>, String>,
    ) -> Result<T> {
        let payload = encode_request(req);
        if payload.len() > MAX_FRAME as usize {
            return Err(RemoteError {
                hr: HRESULT::E_INVALIDARG,
                message: format!(
                    "the request of {} bytes exceeds the frame limit of {MAX_FRAME} bytes",
                    payload.len()
                ),
            });
        }
        let mut guard = self.conn.lock();
        let c = &mut *guard;
        if let Some(why) = &c.broken {
            return Err(RemoteError::call_failed(format!(
                "the connection to {} is broken: {why}",
                self.addr
            )));
        }
        let answer = write_frame(c.io.get_mut(), &payload)
            .map_err(|e| format!("sending: {e}"))
            .and_then(|()| receive(&mut c.io, &mut c.frame));
        match answer {
            Ok(r) => r,
            Err(why) => {
                c.broken = Some(why.clone());
                Err(RemoteError::call_failed(format!("{}: {why}", self.addr)))
            }
        }
    }

    fn unit(&self, req: Request) -> Result<()> {
        expect!(self.call(&req)?, Out::Unit => ())
    }

    // ----- certbcli -----------------------------------------------------------------------

    /// `CertSrvIsServerOnlineW`: `Ok(true)` when running, `Ok(false)` when suspended.
    pub fn is_server_online(&self, server: &str) -> Result<bool> {
        let out = self.call(&Request::IsServerOnline {
            server: server.into(),
        })?;
        expect!(out, Out::Bool(b) => b)
    }

    /// `CertSrvBackupPrepareW`.
    pub fn backup_prepare(&self, server: &str, grbit_jet: u32, backup_flags: u32) -> Result<Hcsbc> {
        handle_out(self.call(&Request::BackupPrepare {
            server: server.into(),
            grbit_jet,
            backup_flags,
        })?)
    }

    /// One of the list functions. With `track`, the server also allocates an accounting
    /// buffer whose token comes back first: pass it to [`RemoteClient::backup_free`] as
    /// the ABI passes the list to `CertSrvBackupFree` (0 without `track`).
    pub fn list(&self, kind: ListKind, hbc: Hcsbc, track: bool) -> Result<(u64, WideList)> {
        let out = self.call(&Request::GetList {
            kind,
            hbc: h(hbc),
            track,
        })?;
        expect!(out, Out::List { buffer, list } => (buffer, list))
    }

    /// `CertSrvBackupGetDatabaseNamesW`: `'D'` + the `.edb` UNC name.
    pub fn backup_get_database_names(&self, hbc: Hcsbc) -> Result<WideList> {
        self.list(ListKind::DatabaseNames, hbc, false).map(|x| x.1)
    }

    /// `CertSrvBackupGetDynamicFileListW`: unprefixed UNC names.
    pub fn backup_get_dynamic_file_list(&self, hbc: Hcsbc) -> Result<WideList> {
        self.list(ListKind::DynamicFiles, hbc, false).map(|x| x.1)
    }

    /// `CertSrvBackupGetBackupLogsW`: rolls the current log; `'!'` + UNC per generation.
    pub fn backup_get_backup_logs(&self, hbc: Hcsbc) -> Result<WideList> {
        self.list(ListKind::BackupLogs, hbc, false).map(|x| x.1)
    }

    /// `CertSrvRestoreGetDatabaseLocationsW`, with a backup or a restore context.
    pub fn restore_get_database_locations(&self, hbc: Hcsbc) -> Result<WideList> {
        self.list(ListKind::DatabaseLocations, hbc, false)
            .map(|x| x.1)
    }

    /// `CertSrvBackupFree` of a token from [`RemoteClient::list`] with `track` (0 is NULL,
    /// a no-op). Freeing twice, or a token this connection never received, fails with
    /// `E_INVALIDARG` (the ABI function is `VOID`; the conformance report records it).
    pub fn backup_free(&self, buffer: u64) -> Result<()> {
        self.unit(Request::BackupFree { buffer })
    }

    /// `CertSrvBackupOpenFileW`: returns the file size.
    pub fn backup_open_file(&self, hbc: Hcsbc, name: &str, read_hint: u32) -> Result<u64> {
        let out = self.call(&Request::BackupOpenFile {
            hbc: h(hbc),
            name: name.into(),
            read_hint,
        })?;
        expect!(out, Out::U64(v) => v)
    }

    /// `CertSrvBackupRead`: fills `buf` unless the file ends; `Ok(0)` at end of file.
    ///
    /// A buffer larger than the server's read limit (4 MiB) is filled by several remote
    /// reads, so the contract "short read only at end of file" holds; each is one call in
    /// the CA's trace and fault schedule. If a later one fails, the error is returned and
    /// the bytes of the earlier ones are lost (the file position moved past them).
    ///
    /// `buf` is `&mut [u8]` or `&mut [MaybeUninit<u8>]`: it is only written.
    pub fn backup_read<B: OutByte>(&self, hbc: Hcsbc, buf: &mut [B]) -> Result<usize> {
        if buf.is_empty() {
            return self.read_into(hbc, buf);
        }
        let mut filled = 0;
        while filled < buf.len() {
            let want = (buf.len() - filled).min(self.max_read as usize);
            let n = self.read_into(hbc, &mut buf[filled..filled + want])?;
            filled += n;
            if n < want {
                break;
            }
        }
        Ok(filled)
    }

    /// One remote `CertSrvBackupRead` of at most `cb` bytes (`cb` <= 4 MiB).
    pub fn read_chunk(&self, hbc: Hcsbc, cb: u32) -> Result<Vec<u8>> {
        let mut v = vec![0u8; cb as usize];
        let n = self.read_into(hbc, &mut v)?;
        v.truncate(n);
        Ok(v)
    }

    /// One remote read of `dst.len()` bytes at most. The data of a successful reply goes
    /// from the socket straight into `dst` ([`read_reply_data_len`]); any other reply is
    /// read whole and decoded.
    fn read_into<B: OutByte>(&self, hbc: Hcsbc, dst: &mut [B]) -> Result<usize> {
        let req = Request::BackupRead {
            hbc: h(hbc),
            cb: dst.len().min(u32::MAX as usize) as u32,
        };
        self.exchange_with(&req, |io, frame| {
            // The length prefix and the head in one receive when they have arrived.
            let mut pre = [0u8; 4 + READ_REPLY_HEAD];
            let got = read_prefix(io, &mut pre)?;
            let frame_len = u32::from_le_bytes([pre[0], pre[1], pre[2], pre[3]]);
            if got == pre.len() && frame_len <= MAX_FRAME {
                let head = pre[4..].first_chunk().expect("the head follows the length");
                match read_reply_data_len(head, frame_len as usize) {
                    Some(n) if n <= dst.len() => {
                        read_direct(io, &mut dst[..n]).map_err(receiving)?;
                        return Ok(Ok(n));
                    }
                    _ => {}
                }
            }
            // Any other reply: the whole frame, as every other response is read.
            let mut rest = Read::chain(&pre[..got], io);
            receive_frame(&mut rest, frame)?;
            let r = decode_read_reply(frame).map_err(|e| e.to_string())?;
            Ok(match r.data {
                None => Err(RemoteError {
                    hr: if r.hr.is_err() { r.hr } else { HRESULT::E_FAIL },
                    message: r.message,
                }),
                Some(d) if d.len() > dst.len() => {
                    return Err(format!(
                        "protocol error: {} bytes for a read of {}",
                        d.len(),
                        dst.len()
                    ))
                }
                Some(d) => {
                    B::copy(&mut dst[..d.len()], d);
                    Ok(d.len())
                }
            })
        })
    }

    /// `CertSrvBackupClose`.
    pub fn backup_close(&self, hbc: Hcsbc) -> Result<()> {
        self.unit(Request::BackupClose { hbc: h(hbc) })
    }

    /// `CertSrvBackupTruncateLogs`: returns the generations deleted.
    pub fn backup_truncate_logs(&self, hbc: Hcsbc) -> Result<Vec<u32>> {
        let out = self.call(&Request::BackupTruncateLogs { hbc: h(hbc) })?;
        expect!(out, Out::U32s(v) => v)
    }

    /// `CertSrvBackupEnd`.
    pub fn backup_end(&self, hbc: Hcsbc) -> Result<()> {
        self.unit(Request::BackupEnd { hbc: h(hbc) })
    }

    /// `CertSrvRestorePrepareW`.
    pub fn restore_prepare(&self, server: &str, restore_flags: u32) -> Result<Hcsbc> {
        handle_out(self.call(&Request::RestorePrepare {
            server: server.into(),
            restore_flags,
        })?)
    }

    /// `CertSrvRestoreRegisterW` (`through_file == false`) or
    /// `CertSrvRestoreRegisterThroughFile`.
    pub fn restore_register(
        &self,
        hbc: Option<Hcsbc>,
        reg: &Registration,
        through_file: bool,
    ) -> Result<()> {
        self.unit(Request::RestoreRegister {
            hbc: hbc.map_or(0, h),
            through_file,
            reg: reg.clone(),
        })
    }

    /// `CertSrvRestoreRegisterComplete`.
    pub fn restore_register_complete(
        &self,
        hbc: Option<Hcsbc>,
        restore_state: HRESULT,
    ) -> Result<()> {
        self.unit(Request::RestoreRegisterComplete {
            hbc: hbc.map_or(0, h),
            restore_state,
        })
    }

    /// `CertSrvRestoreEnd`.
    pub fn restore_end(&self, hbc: Hcsbc) -> Result<()> {
        self.unit(Request::RestoreEnd { hbc: h(hbc) })
    }

    /// `CertSrvServerControlW` (`ppbOut` is always NULL / 0, as in process).
    pub fn server_control(&self, server: &str, control_flags: u32) -> Result<()> {
        self.unit(Request::ServerControl {
            server: server.into(),
            control_flags,
        })
    }

    // ----- control ------------------------------------------------------------------------

    /// Creates machines from JSON: one machine object of the configuration format, or a
    /// whole configuration with `machines`. Returns their NetBIOS names.
    pub fn create_machine_json(&self, json: &str) -> Result<Vec<String>> {
        let out = self.call(&Request::CreateMachine { json: json.into() })?;
        expect!(out, Out::Texts(v) => v)
    }

    /// Creates one machine; returns its NetBIOS name.
    pub fn create_machine(&self, m: &MachineConfig) -> Result<String> {
        let json = serde_json::to_string(m).map_err(|e| RemoteError {
            hr: HRESULT::E_INVALIDARG,
            message: e.to_string(),
        })?;
        let mut v = self.create_machine_json(&json)?;
        v.pop()
            .ok_or_else(|| RemoteError::call_failed("protocol error: no machine created"))
    }

    /// Drops a machine (its names are free again; handles on it turn stale).
    pub fn drop_machine(&self, machine: &str) -> Result<()> {
        self.unit(on(machine, |machine| Request::DropMachine { machine }))
    }

    /// The machines of the server.
    pub fn machines(&self) -> Result<Vec<String>> {
        expect!(self.call(&Request::ListMachines)?, Out::Texts(v) => v)
    }

    /// Issues `n` certificates; returns their request ids.
    pub fn issue(&self, machine: &str, n: u32) -> Result<Vec<u32>> {
        let out = self.call(&Request::Issue {
            machine: machine.into(),
            n,
        })?;
        expect!(out, Out::U32s(v) => v)
    }

    /// Revokes a certificate.
    pub fn revoke(&self, machine: &str, request_id: u32) -> Result<()> {
        self.unit(Request::Revoke {
            machine: machine.into(),
            request_id,
        })
    }

    /// Rolls the current log; returns the new generation.
    pub fn roll_log(&self, machine: &str) -> Result<u32> {
        let out = self.call(&on(machine, |machine| Request::RollLog { machine }))?;
        expect!(out, Out::U32(v) => v)
    }

    /// Stops the service cleanly.
    pub fn stop(&self, machine: &str) -> Result<()> {
        self.unit(on(machine, |machine| Request::Stop { machine }))
    }

    /// Stops the service as a crash would.
    pub fn crash(&self, machine: &str) -> Result<()> {
        self.unit(on(machine, |machine| Request::Crash { machine }))
    }

    /// Starts the service: hard recovery of a registered restore, or soft recovery.
    pub fn start(&self, machine: &str) -> Result<RecoveryReport> {
        let out = self.call(&on(machine, |machine| Request::Start { machine }))?;
        expect!(out, Out::Recovery(r) => r)
    }

    /// Deletes the CA's files (the service must be stopped).
    pub fn wipe_files(&self, machine: &str) -> Result<()> {
        self.unit(on(machine, |machine| Request::WipeFiles { machine }))
    }

    /// The host path of a Windows path on the machine (on the server's file system).
    pub fn host_path(&self, machine: &str, windows_path: &str) -> Result<PathBuf> {
        let out = self.call(&Request::HostPath {
            machine: machine.into(),
            windows_path: windows_path.into(),
        })?;
        expect!(out, Out::Text(s) => PathBuf::from(s))
    }

    /// Sets the caller identity of the machine.
    pub fn set_identity(&self, machine: &str, identity: Identity) -> Result<()> {
        self.unit(Request::SetIdentity {
            machine: machine.into(),
            identity,
        })
    }

    /// Sets `InterfaceFlags`.
    pub fn set_interface_flags(&self, machine: &str, flags: u32) -> Result<()> {
        self.unit(Request::SetInterfaceFlags {
            machine: machine.into(),
            flags,
        })
    }

    /// Installs a fault schedule.
    pub fn set_faults(&self, machine: &str, schedule: &FaultSchedule) -> Result<()> {
        self.set_faults_json(machine, &schedule.to_json())
    }

    /// Installs a fault schedule given as JSON.
    pub fn set_faults_json(&self, machine: &str, json: &str) -> Result<()> {
        self.unit(Request::SetFaults {
            machine: machine.into(),
            json: json.into(),
        })
    }

    /// The machine's report (JSON text, as one machine of the report file).
    pub fn report_json(&self, machine: &str) -> Result<String> {
        let out = self.call(&on(machine, |machine| Request::Report { machine }))?;
        expect!(out, Out::Text(s) => s)
    }

    /// The machine's report, parsed.
    pub fn report(&self, machine: &str) -> Result<MachineReport> {
        let s = self.report_json(machine)?;
        serde_json::from_str(&s)
            .map_err(|e| RemoteError::call_failed(format!("protocol error: report: {e}")))
    }

    /// The machine's state (service, sessions, buffers, restore marker, ...), parsed.
    pub fn state(&self, machine: &str) -> Result<CaState> {
        let out = self.call(&on(machine, |machine| Request::State { machine }))?;
        let s = expect!(out, Out::Text(s) => s)?;
        serde_json::from_str(&s)
            .map_err(|e| RemoteError::call_failed(format!("protocol error: state: {e}")))
    }

    /// The whole call trace as JSON lines (fetched page by page).
    pub fn trace_json_lines(&self, machine: &str) -> Result<String> {
        let mut text = String::new();
        let mut from = 0;
        loop {
            let out = self.call(&Request::Trace {
                machine: machine.into(),
                from,
                max_bytes: 0,
            })?;
            let (lines, next, total) =
                expect!(out, Out::TracePage { lines, next, total } => (lines, next, total))?;
            text.push_str(&lines);
            if next >= total || next <= from {
                return Ok(text);
            }
            from = next;
        }
    }

    /// The call trace, parsed.
    pub fn trace(&self, machine: &str) -> Result<Vec<Event>> {
        crate::event::parse_lines(&self.trace_json_lines(machine)?)
            .map_err(|e| RemoteError::call_failed(format!("protocol error: trace: {e}")))
    }

    /// Record count and content digest (see [`crate::ca::record::digest`]).
    pub fn records(&self, machine: &str) -> Result<(u64, u32)> {
        let out = self.call(&on(machine, |machine| Request::Records { machine }))?;
        expect!(out, Out::Records { count, digest } => (count, digest))
    }

    /// Clears a registered restore.
    pub fn clear_restore_marker(&self, machine: &str) -> Result<()> {
        self.unit(on(machine, |machine| Request::ClearRestoreMarker {
            machine,
        }))
    }

    /// Asks the server to stop (it answers first, then closes every connection).
    pub fn shutdown_server(&self) -> Result<()> {
        self.unit(Request::Shutdown)
    }
}

//! The wire protocol of server mode: pure encode and decode functions.
//!
//! `docs/PROTOCOL.md` is the normative description; this module implements it and its
//! unit tests pin the byte layouts. In short:
//!
//! * A connection starts with a handshake: the client sends a [`Hello`] frame (magic,
//!   version, optional shared secret), the server answers with a [`HelloReply`].
//! * Every message travels in a frame: a `u32` little-endian length, then that many bytes.
//!   A frame is at most [`MAX_FRAME`] bytes ([`MAX_HELLO_FRAME`] before the handshake).
//! * Integers are little-endian; strings are UTF-16LE (`u32` unit count, then the units,
//!   no terminator), as on Windows; lists are the raw double-NUL UTF-16LE bytes a
//!   certbcli function returns (`u32` byte count, then the bytes, `*pcbSize` of them).
//! * One [`Request`] frame, one [`Response`] frame, strictly alternating.
//!
//! Decoding never panics, and never allocates more than a small multiple of the input it
//! was given: every count is checked against the bytes left before anything is allocated.

use crate::api::Registration;
use crate::ca::format::Position;
use crate::ca::recovery::RecoveryReport;
use crate::core::{WideList, HRESULT};
use crate::machine::Identity;
use std::fmt;
use std::io::{self, Read, Write};

/// The first 8 bytes of a [`Hello`] and a [`HelloReply`].
pub const MAGIC: [u8; 8] = *b"CADMEMU\0";
/// The protocol version this build speaks.
pub const VERSION: u16 = 1;
/// Largest frame (payload bytes, the length prefix excluded) after the handshake.
pub const MAX_FRAME: u32 = 16 << 20;
/// Largest frame before the handshake completed (an unauthenticated peer gets no more).
pub const MAX_HELLO_FRAME: u32 = 64 << 10;
/// Largest `cbBuffer` of one `CertSrvBackupRead` request. The client splits larger reads.
pub const MAX_READ: u32 = 4 << 20;
/// Largest `n` of one `Issue` control request.
pub const MAX_ISSUE: u32 = 1_000_000;
/// Default and largest `max_bytes` of one `Trace` page (text; at most twice that as UTF-16).
pub const MAX_TRACE_PAGE: u32 = 4 << 20;

/// Why bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed message: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

fn err<T>(what: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(what.into()))
}

// ----- frames -----------------------------------------------------------------------------

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The announced length exceeds the limit (nothing of the payload was read).
    TooLarge {
        /// The announced length.
        len: u32,
        /// The limit in force.
        limit: u32,
    },
    /// The stream ended inside a frame.
    Truncated,
    /// An I/O error.
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, limit } => {
                write!(f, "frame of {len} bytes exceeds the limit of {limit} bytes")
            }
            FrameError::Truncated => write!(f, "the stream ended inside a frame"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Writes one frame (length prefix and payload) with a single `write_all`.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame. `Ok(None)` at a clean end of stream (before any byte of a frame).
///
/// The payload buffer grows with the bytes that actually arrive, so a peer that announces
/// a large frame and sends nothing costs nothing; it is never larger than `limit`.
pub fn read_frame(r: &mut impl Read, limit: u32) -> Result<Option<Vec<u8>>, FrameError> {
    let mut payload = Vec::new();
    Ok(read_frame_into(r, limit, &mut payload)?.then_some(payload))
}

/// [`read_frame`] into a buffer the caller reuses (its capacity is kept across frames).
/// Returns `false` at a clean end of stream.
pub fn read_frame_into(
    r: &mut impl Read,
    limit: u32,
    buf: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    buf.clear();
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_le_bytes(len);
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    // Grow by at most what already arrived (64 KiB at first), and read each step with
    // `read_exact` so that a large frame takes few large reads.
    let len = len as usize;
    let mut done = 0;
    while done < len {
        let step = (len - done).min(done.max(64 << 10));
        buf.resize(done + step, 0);
        match r.read_exact(&mut buf[done..done + step]) {
            Ok(()) => done += step,
            Err(e) => {
                buf.clear();
                return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                    FrameError::Truncated
                } else {
                    FrameError::Io(e)
                });
            }
        }
    }
    Ok(true)
}

// ----- primitive encoding -----------------------------------------------------------------

/// Appends wire values to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    /// The bytes so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// A `u8`.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// A boolean as one byte, 0 or 1.
    pub fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }
    /// A `u16` LE.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A `u32` LE.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// An `i32` LE.
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A `u64` LE.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// A string: `u32` count of UTF-16 units, then the units LE.
    pub fn str(&mut self, s: &str) {
        let at = self.buf.len();
        self.u32(0);
        let mut n = 0u32;
        for u in s.encode_utf16() {
            self.buf.extend_from_slice(&u.to_le_bytes());
            n += 1;
        }
        self.buf[at..at + 4].copy_from_slice(&n.to_le_bytes());
    }
    /// An optional string: one byte 0 (NULL) or 1, then the string.
    pub fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    /// Bytes: `u32` count, then the bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
    }
    /// A list: `u32` byte count (`*pcbSize`), then the double-NUL UTF-16LE bytes.
    pub fn list(&mut self, l: &WideList) {
        self.bytes(&l.to_bytes());
    }
    /// `u32` count, then each `u32`.
    pub fn u32s(&mut self, v: &[u32]) {
        self.u32(v.len() as u32);
        for x in v {
            self.u32(*x);
        }
    }
    /// `u32` count, then each string.
    pub fn strs(&mut self, v: &[String]) {
        self.u32(v.len() as u32);
        for s in v {
            self.str(s);
        }
    }
}

/// Reads wire values from a byte slice; every read is bounds-checked.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return err(format!(
                "{what}: needs {n} bytes at offset {}, {} left",
                self.pos,
                self.remaining()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    /// A `u8`.
    pub fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    /// A boolean: exactly 0 or 1.
    pub fn bool(&mut self, what: &str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => err(format!("{what}: boolean byte {v} is not 0 or 1")),
        }
    }
    /// A `u16` LE.
    pub fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    /// A `u32` LE.
    pub fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    /// An `i32` LE.
    pub fn i32(&mut self, what: &str) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    /// A `u64` LE.
    pub fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    /// A string; fails on unpaired surrogates.
    pub fn str(&mut self, what: &str) -> Result<String, DecodeError> {
        let n = self.u32(what)? as usize;
        let Some(len) = n.checked_mul(2) else {
            return err(format!("{what}: string length {n} overflows"));
        };
        let raw = self.take(len, what)?;
        let units = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        let mut s = String::with_capacity(n);
        for c in char::decode_utf16(units) {
            match c {
                Ok(c) => s.push(c),
                Err(e) => {
                    return err(format!(
                        "{what}: unpaired surrogate {:#06x} (strings must be valid UTF-16)",
                        e.unpaired_surrogate()
                    ))
                }
            }
        }
        Ok(s)
    }
    /// An optional string.
    pub fn opt_str(&mut self, what: &str) -> Result<Option<String>, DecodeError> {
        if self.bool(what)? {
            self.str(what).map(Some)
        } else {
            Ok(None)
        }
    }
    /// Bytes.
    pub fn bytes(&mut self, what: &str) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
    /// A list: canonical double-NUL UTF-16LE bytes, every entry non-empty and valid UTF-16.
    pub fn list(&mut self, what: &str) -> Result<WideList, DecodeError> {
        let n = self.u32(what)? as usize;
        let raw = self.take(n, what)?;
        decode_list(raw).map_err(|e| DecodeError(format!("{what}: {}", e.0)))
    }
    /// A `u32` array.
    pub fn u32s(&mut self, what: &str) -> Result<Vec<u32>, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(4) > self.remaining() {
            return err(format!("{what}: {n} numbers do not fit in the message"));
        }
        (0..n).map(|_| self.u32(what)).collect()
    }
    /// A string array.
    pub fn strs(&mut self, what: &str) -> Result<Vec<String>, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(4) > self.remaining() {
            return err(format!("{what}: {n} strings do not fit in the message"));
        }
        (0..n).map(|_| self.str(what)).collect()
    }
    /// Fails unless every byte was consumed.
    pub fn finish(&self, what: &str) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return err(format!(
                "{what}: {} trailing byte(s) after the message",
                self.remaining()
            ));
        }
        Ok(())
    }
}

/// Decodes the raw bytes of a list. Accepts exactly what [`WideList::to_bytes`] produces:
/// an even length, non-empty NUL-terminated entries of valid UTF-16, one final NUL.
pub fn decode_list(raw: &[u8]) -> Result<WideList, DecodeError> {
    if raw.len() < 2 || raw.len() % 2 != 0 {
        return err(format!(
            "list of {} bytes: a list is an even number of bytes, at least 2 (one NUL)",
            raw.len()
        ));
    }
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let Some(entries) = WideList::parse_units(&units, false) else {
        return err("list is not double-NUL terminated UTF-16");
    };
    let list = WideList::from_entries(entries.iter().map(|e| (None, e.path.as_str())));
    if list.byte_len() as usize != raw.len() {
        return err("list has bytes after its terminating empty entry");
    }
    Ok(list)
}

// ----- handshake --------------------------------------------------------------------------

/// The client's first frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version the client speaks.
    pub version: u16,
    /// The shared secret, if the client has one.
    pub secret: Option<String>,
    /// Free text naming the client (logged by the server).
    pub client: String,
}

/// The server's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloReply {
    /// The protocol version the server speaks.
    pub version: u16,
    /// `S_OK`, or why the connection is refused (then the server closes it).
    pub hr: HRESULT,
    /// The reason of a refusal.
    pub message: String,
    /// Free text naming the server.
    pub server: String,
    /// The server's [`MAX_FRAME`].
    pub max_frame: u32,
    /// The server's [`MAX_READ`].
    pub max_read: u32,
}

/// Encodes a [`Hello`].
pub fn encode_hello(h: &Hello) -> Vec<u8> {
    let mut w = Writer::default();
    w.buf.extend_from_slice(&MAGIC);
    w.u16(h.version);
    w.opt_str(h.secret.as_deref());
    w.str(&h.client);
    w.buf
}

fn magic(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let m: [u8; 8] = r.array("magic")?;
    if m != MAGIC {
        return err(format!(
            "bad magic {m:02x?}: not a certadm-emu protocol peer"
        ));
    }
    Ok(())
}

/// Decodes a [`Hello`].
pub fn decode_hello(b: &[u8]) -> Result<Hello, DecodeError> {
    let mut r = Reader::new(b);
    magic(&mut r)?;
    let h = Hello {
        version: r.u16("version")?,
        secret: r.opt_str("secret")?,
        client: r.str("client")?,
    };
    r.finish("hello")?;
    Ok(h)
}

/// Encodes a [`HelloReply`].
pub fn encode_hello_reply(h: &HelloReply) -> Vec<u8> {
    let mut w = Writer::default();
    w.buf.extend_from_slice(&MAGIC);
    w.u16(h.version);
    w.i32(h.hr.0);
    w.str(&h.message);
    w.str(&h.server);
    w.u32(h.max_frame);
    w.u32(h.max_read);
    w.buf
}

/// Decodes a [`HelloReply`].
pub fn decode_hello_reply(b: &[u8]) -> Result<HelloReply, DecodeError> {
    let mut r = Reader::new(b);
    magic(&mut r)?;
    let h = HelloReply {
        version: r.u16("version")?,
        hr: HRESULT(r.i32("hr")?),
        message: r.str("message")?,
        server: r.str("server")?,
        max_frame: r.u32("max_frame")?,
        max_read: r.u32("max_read")?,
    };
    r.finish("hello reply")?;
    Ok(h)
}

// ----- requests ---------------------------------------------------------------------------

/// The four certbcli functions that return a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `CertSrvBackupGetDatabaseNamesW`.
    DatabaseNames,
    /// `CertSrvBackupGetDynamicFileListW`.
    DynamicFiles,
    /// `CertSrvBackupGetBackupLogsW`.
    BackupLogs,
    /// `CertSrvRestoreGetDatabaseLocationsW`.
    DatabaseLocations,
}

impl ListKind {
    /// All four.
    pub const ALL: [ListKind; 4] = [
        ListKind::DatabaseNames,
        ListKind::DynamicFiles,
        ListKind::BackupLogs,
        ListKind::DatabaseLocations,
    ];
    /// The same function in the safe API.
    pub fn api(self) -> crate::api::ListFn {
        match self {
            ListKind::DatabaseNames => crate::api::ListFn::DatabaseNames,
            ListKind::DynamicFiles => crate::api::ListFn::DynamicFiles,
            ListKind::BackupLogs => crate::api::ListFn::BackupLogs,
            ListKind::DatabaseLocations => crate::api::ListFn::DatabaseLocations,
        }
    }
    /// The export name.
    pub fn name(self) -> &'static str {
        self.api().name()
    }
    fn op(self) -> u16 {
        match self {
            ListKind::DatabaseNames => op::BACKUP_GET_DATABASE_NAMES,
            ListKind::DynamicFiles => op::BACKUP_GET_DYNAMIC_FILE_LIST,
            ListKind::BackupLogs => op::BACKUP_GET_BACKUP_LOGS,
            ListKind::DatabaseLocations => op::RESTORE_GET_DATABASE_LOCATIONS,
        }
    }
}

/// Operation codes (the first `u16` of every request and response).
pub mod op {
    /// `CertSrvIsServerOnlineW`.
    pub const IS_SERVER_ONLINE: u16 = 0x01;
    /// `CertSrvBackupPrepareW`.
    pub const BACKUP_PREPARE: u16 = 0x02;
    /// `CertSrvBackupGetDatabaseNamesW`.
    pub const BACKUP_GET_DATABASE_NAMES: u16 = 0x03;
    /// `CertSrvBackupGetDynamicFileListW`.
    pub const BACKUP_GET_DYNAMIC_FILE_LIST: u16 = 0x04;
    /// `CertSrvBackupOpenFileW`.
    pub const BACKUP_OPEN_FILE: u16 = 0x05;
    /// `CertSrvBackupRead`.
    pub const BACKUP_READ: u16 = 0x06;
    /// `CertSrvBackupClose`.
    pub const BACKUP_CLOSE: u16 = 0x07;
    /// `CertSrvBackupGetBackupLogsW`.
    pub const BACKUP_GET_BACKUP_LOGS: u16 = 0x08;
    /// `CertSrvBackupTruncateLogs`.
    pub const BACKUP_TRUNCATE_LOGS: u16 = 0x09;
    /// `CertSrvBackupEnd`.
    pub const BACKUP_END: u16 = 0x0A;
    /// `CertSrvBackupFree`.
    pub const BACKUP_FREE: u16 = 0x0B;
    /// `CertSrvRestoreGetDatabaseLocationsW`.
    pub const RESTORE_GET_DATABASE_LOCATIONS: u16 = 0x0C;
    /// `CertSrvRestorePrepareW`.
    pub const RESTORE_PREPARE: u16 = 0x0D;
    /// `CertSrvRestoreRegisterW`.
    pub const RESTORE_REGISTER: u16 = 0x0E;
    /// `CertSrvRestoreRegisterThroughFile`.
    pub const RESTORE_REGISTER_THROUGH_FILE: u16 = 0x0F;
    /// `CertSrvRestoreRegisterComplete`.
    pub const RESTORE_REGISTER_COMPLETE: u16 = 0x10;
    /// `CertSrvRestoreEnd`.
    pub const RESTORE_END: u16 = 0x11;
    /// `CertSrvServerControlW`.
    pub const SERVER_CONTROL: u16 = 0x12;

    /// Control: create machines from configuration JSON.
    pub const CREATE_MACHINE: u16 = 0x40;
    /// Control: drop a machine.
    pub const DROP_MACHINE: u16 = 0x41;
    /// Control: list the machines.
    pub const LIST_MACHINES: u16 = 0x42;
    /// Control: issue certificates.
    pub const ISSUE: u16 = 0x43;
    /// Control: revoke a certificate.
    pub const REVOKE: u16 = 0x44;
    /// Control: roll the current log.
    pub const ROLL_LOG: u16 = 0x45;
    /// Control: stop the service cleanly.
    pub const STOP: u16 = 0x46;
    /// Control: stop the service as a crash would.
    pub const CRASH: u16 = 0x47;
    /// Control: start the service (runs recovery).
    pub const START: u16 = 0x48;
    /// Control: delete the CA's files.
    pub const WIPE_FILES: u16 = 0x49;
    /// Control: the host path of a Windows path.
    pub const HOST_PATH: u16 = 0x4A;
    /// Control: set the caller identity.
    pub const SET_IDENTITY: u16 = 0x4B;
    /// Control: set `InterfaceFlags`.
    pub const SET_INTERFACE_FLAGS: u16 = 0x4C;
    /// Control: install a fault schedule.
    pub const SET_FAULTS: u16 = 0x4D;
    /// Control: the conformance report (JSON).
    pub const REPORT: u16 = 0x4E;
    /// Control: a page of the call trace (JSON lines).
    pub const TRACE: u16 = 0x4F;
    /// Control: record count and digest.
    pub const RECORDS: u16 = 0x50;
    /// Control: machine state (JSON).
    pub const STATE: u16 = 0x51;
    /// Control: clear a registered restore.
    pub const CLEAR_RESTORE_MARKER: u16 = 0x52;
    /// Control: stop the server.
    pub const SHUTDOWN: u16 = 0x5F;
}

/// One request: a certbcli call or a control call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `CertSrvIsServerOnlineW(pwszServerName)`.
    IsServerOnline {
        /// `pwszServerName`.
        server: String,
    },
    /// `CertSrvBackupPrepareW`.
    BackupPrepare {
        /// `pwszServerName`.
        server: String,
        /// `grbitJet`.
        grbit_jet: u32,
        /// `dwBackupFlags`.
        backup_flags: u32,
    },
    /// One of the four list functions.
    GetList {
        /// Which function.
        kind: ListKind,
        /// `hbc`.
        hbc: u64,
        /// Allocate a server-side buffer token for `CertSrvBackupFree` accounting.
        track: bool,
    },
    /// `CertSrvBackupOpenFileW`.
    BackupOpenFile {
        /// `hbc`.
        hbc: u64,
        /// `pwszAttachmentName`.
        name: String,
        /// `cbReadHintSize`.
        read_hint: u32,
    },
    /// `CertSrvBackupRead` of at most `cb` bytes (at most [`MAX_READ`]).
    BackupRead {
        /// `hbc`.
        hbc: u64,
        /// `cbBuffer`.
        cb: u32,
    },
    /// `CertSrvBackupClose`.
    BackupClose {
        /// `hbc`.
        hbc: u64,
    },
    /// `CertSrvBackupTruncateLogs`.
    BackupTruncateLogs {
        /// `hbc`.
        hbc: u64,
    },
    /// `CertSrvBackupEnd`.
    BackupEnd {
        /// `hbc`.
        hbc: u64,
    },
    /// `CertSrvBackupFree` of a buffer token from a tracked list (0 is NULL).
    BackupFree {
        /// The token.
        buffer: u64,
    },
    /// `CertSrvRestorePrepareW`.
    RestorePrepare {
        /// `pwszServerName`.
        server: String,
        /// `dwRestoreFlags`.
        restore_flags: u32,
    },
    /// `CertSrvRestoreRegisterW` or `CertSrvRestoreRegisterThroughFile`.
    RestoreRegister {
        /// `hbc` (0 is NULL).
        hbc: u64,
        /// `CertSrvRestoreRegisterThroughFile`.
        through_file: bool,
        /// The other arguments.
        reg: Registration,
    },
    /// `CertSrvRestoreRegisterComplete`.
    RestoreRegisterComplete {
        /// `hbc` (0 is NULL).
        hbc: u64,
        /// `hrRestoreState`.
        restore_state: HRESULT,
    },
    /// `CertSrvRestoreEnd`.
    RestoreEnd {
        /// `hbc`.
        hbc: u64,
    },
    /// `CertSrvServerControlW`.
    ServerControl {
        /// `pwszServerName`.
        server: String,
        /// `dwControlFlags`.
        control_flags: u32,
    },

    /// Creates machines from JSON: a `config` machine object, or a whole configuration
    /// with `machines`.
    CreateMachine {
        /// The JSON text.
        json: String,
    },
    /// Drops a machine: its names are free again, its handles stale.
    DropMachine {
        /// NetBIOS or DNS name.
        machine: String,
    },
    /// The NetBIOS names of the machines of this server.
    ListMachines,
    /// Issues `n` certificates.
    Issue {
        /// Machine.
        machine: String,
        /// Count (at most [`MAX_ISSUE`]).
        n: u32,
    },
    /// Revokes a certificate.
    Revoke {
        /// Machine.
        machine: String,
        /// Request id.
        request_id: u32,
    },
    /// Rolls `edb.log` to a numbered generation.
    RollLog {
        /// Machine.
        machine: String,
    },
    /// Stops the service cleanly.
    Stop {
        /// Machine.
        machine: String,
    },
    /// Stops the service as a crash would.
    Crash {
        /// Machine.
        machine: String,
    },
    /// Starts the service: hard recovery of a registered restore, or soft recovery.
    Start {
        /// Machine.
        machine: String,
    },
    /// Deletes the CA's database, log and checkpoint files (service stopped).
    WipeFiles {
        /// Machine.
        machine: String,
    },
    /// The host path of a Windows path on the machine.
    HostPath {
        /// Machine.
        machine: String,
        /// `C:\...` or `\\HOST\C$\...`.
        windows_path: String,
    },
    /// Sets the caller identity.
    SetIdentity {
        /// Machine.
        machine: String,
        /// The identity.
        identity: Identity,
    },
    /// Sets `InterfaceFlags`.
    SetInterfaceFlags {
        /// Machine.
        machine: String,
        /// The flags.
        flags: u32,
    },
    /// Installs a fault schedule (JSON, as `CERTADM_EMU_FAULTS`).
    SetFaults {
        /// Machine.
        machine: String,
        /// The schedule.
        json: String,
    },
    /// The conformance report of the machine (JSON, as in the report file).
    Report {
        /// Machine.
        machine: String,
    },
    /// A page of the call trace: events `from..`, as JSON lines, at most `max_bytes`
    /// (one event at least).
    Trace {
        /// Machine.
        machine: String,
        /// First event index (0-based).
        from: u64,
        /// Page size in bytes of text (0 means [`MAX_TRACE_PAGE`]).
        max_bytes: u32,
    },
    /// Record count and content digest.
    Records {
        /// Machine.
        machine: String,
    },
    /// Machine state as JSON (service, sessions, buffers, restore marker, ...).
    State {
        /// Machine.
        machine: String,
    },
    /// Clears a registered restore.
    ClearRestoreMarker {
        /// Machine.
        machine: String,
    },
    /// Stops the server after answering.
    Shutdown,
}

impl Request {
    /// The operation code.
    pub fn op(&self) -> u16 {
        use Request::*;
        match self {
            IsServerOnline { .. } => op::IS_SERVER_ONLINE,
            BackupPrepare { .. } => op::BACKUP_PREPARE,
            GetList { kind, .. } => kind.op(),
            BackupOpenFile { .. } => op::BACKUP_OPEN_FILE,
            BackupRead { .. } => op::BACKUP_READ,
            BackupClose { .. } => op::BACKUP_CLOSE,
            BackupTruncateLogs { .. } => op::BACKUP_TRUNCATE_LOGS,
            BackupEnd { .. } => op::BACKUP_END,
            BackupFree { .. } => op::BACKUP_FREE,
            RestorePrepare { .. } => op::RESTORE_PREPARE,
            RestoreRegister {
                through_file: false,
                ..
            } => op::RESTORE_REGISTER,
            RestoreRegister {
                through_file: true, ..
            } => op::RESTORE_REGISTER_THROUGH_FILE,
            RestoreRegisterComplete { .. } => op::RESTORE_REGISTER_COMPLETE,
            RestoreEnd { .. } => op::RESTORE_END,
            ServerControl { .. } => op::SERVER_CONTROL,
            CreateMachine { .. } => op::CREATE_MACHINE,
            DropMachine { .. } => op::DROP_MACHINE,
            ListMachines => op::LIST_MACHINES,
            Issue { .. } => op::ISSUE,
            Revoke { .. } => op::REVOKE,
            RollLog { .. } => op::ROLL_LOG,
            Stop { .. } => op::STOP,
            Crash { .. } => op::CRASH,
            Start { .. } => op::START,
            WipeFiles { .. } => op::WIPE_FILES,
            HostPath { .. } => op::HOST_PATH,
            SetIdentity { .. } => op::SET_IDENTITY,
            SetInterfaceFlags { .. } => op::SET_INTERFACE_FLAGS,
            SetFaults { .. } => op::SET_FAULTS,
            Report { .. } => op::REPORT,
            Trace { .. } => op::TRACE,
            Records { .. } => op::RECORDS,
            State { .. } => op::STATE,
            ClearRestoreMarker { .. } => op::CLEAR_RESTORE_MARKER,
            Shutdown => op::SHUTDOWN,
        }
    }
}

fn put_registration(w: &mut Writer, r: &Registration) {
    w.opt_str(r.checkpoint_path.as_deref());
    w.opt_str(r.log_path.as_deref());
    w.u32(r.restore_map.len() as u32);
    for (a, b) in &r.restore_map {
        w.str(a);
        w.str(b);
    }
    w.opt_str(r.backup_log_path.as_deref());
    w.u32(r.gen_low);
    w.u32(r.gen_high);
}

fn get_registration(r: &mut Reader<'_>) -> Result<Registration, DecodeError> {
    let checkpoint_path = r.opt_str("pwszCheckPointFilePath")?;
    let log_path = r.opt_str("pwszLogPath")?;
    let n = r.u32("crstmap")? as usize;
    if n.saturating_mul(8) > r.remaining() {
        return err(format!(
            "crstmap {n}: the entries do not fit in the message"
        ));
    }
    let mut restore_map = Vec::new();
    for _ in 0..n {
        let a = r.str("pwszDatabaseName")?;
        let b = r.str("pwszNewDatabaseName")?;
        restore_map.push((a, b));
    }
    Ok(Registration {
        checkpoint_path,
        log_path,
        restore_map,
        backup_log_path: r.opt_str("pwszBackupLogPath")?,
        gen_low: r.u32("genLow")?,
        gen_high: r.u32("genHigh")?,
    })
}

fn put_identity(w: &mut Writer, id: &Identity) {
    w.bool(id.backup_privilege);
    w.bool(id.restore_privilege);
    w.bool(id.local_admin);
    w.bool(id.remote);
}

fn get_identity(r: &mut Reader<'_>) -> Result<Identity, DecodeError> {
    Ok(Identity {
        backup_privilege: r.bool("backup_privilege")?,
        restore_privilege: r.bool("restore_privilege")?,
        local_admin: r.bool("local_admin")?,
        remote: r.bool("remote")?,
    })
}

/// Encodes a request (the frame payload).
pub fn encode_request(req: &Request) -> Vec<u8> {
    use Request::*;
    let mut w = Writer::default();
    w.u16(req.op());
    match req {
        IsServerOnline { server } => w.str(server),
        BackupPrepare {
            server,
            grbit_jet,
            backup_flags,
        } => {
            w.str(server);
            w.u32(*grbit_jet);
            w.u32(*backup_flags);
        }
        GetList { hbc, track, .. } => {
            w.u64(*hbc);
            w.bool(*track);
        }
        BackupOpenFile {
            hbc,
            name,
            read_hint,
        } => {
            w.u64(*hbc);
            w.str(name);
            w.u32(*read_hint);
        }
        BackupRead { hbc, cb } => {
            w.u64(*hbc);
            w.u32(*cb);
        }
        BackupClose { hbc }
        | BackupTruncateLogs { hbc }
        | BackupEnd { hbc }
        | RestoreEnd { hbc } => w.u64(*hbc),
        BackupFree { buffer } => w.u64(*buffer),
        RestorePrepare {
            server,
            restore_flags,
        } => {
            w.str(server);
            w.u32(*restore_flags);
        }
        RestoreRegister { hbc, reg, .. } => {
            w.u64(*hbc);
            put_registration(&mut w, reg);
        }
        RestoreRegisterComplete { hbc, restore_state } => {
            w.u64(*hbc);
            w.i32(restore_state.0);
        }
        ServerControl {
            server,
            control_flags,
        } => {
            w.str(server);
            w.u32(*control_flags);
        }
        CreateMachine { json } => w.str(json),
        ListMachines | Shutdown => {}
        DropMachine { machine }
        | RollLog { machine }
        | Stop { machine }
        | Crash { machine }
        | Start { machine }
        | WipeFiles { machine }
        | Report { machine }
        | Records { machine }
        | State { machine }
        | ClearRestoreMarker { machine } => w.str(machine),
        Issue { machine, n } => {
            w.str(machine);
            w.u32(*n);
        }
        Revoke {
            machine,
            request_id,
        } => {
            w.str(machine);
            w.u32(*request_id);
        }
        HostPath {
            machine,
            windows_path,
        } => {
            w.str(machine);
            w.str(windows_path);
        }
        SetIdentity { machine, identity } => {
            w.str(machine);
            put_identity(&mut w, identity);
        }
        SetInterfaceFlags { machine, flags } => {
            w.str(machine);
            w.u32(*flags);
        }
        SetFaults { machine, json } => {
            w.str(machine);
            w.str(json);
        }
        Trace {
            machine,
            from,
            max_bytes,
        } => {
            w.str(machine);
            w.u64(*from);
            w.u32(*max_bytes);
        }
    }
    w.buf
}

/// Decodes a request (a frame payload).
pub fn decode_request(b: &[u8]) -> Result<Request, DecodeError> {
    use Request::*;
    let mut r = Reader::new(b);
    let code = r.u16("op")?;
    let list = |kind: ListKind, r: &mut Reader<'_>| -> Result<Request, DecodeError> {
        Ok(GetList {
            kind,
            hbc: r.u64("hbc")?,
            track: r.bool("track")?,
        })
    };
    let req = match code {
        op::IS_SERVER_ONLINE => IsServerOnline {
            server: r.str("pwszServerName")?,
        },
        op::BACKUP_PREPARE => BackupPrepare {
            server: r.str("pwszServerName")?,
            grbit_jet: r.u32("grbitJet")?,
            backup_flags: r.u32("dwBackupFlags")?,
        },
        op::BACKUP_GET_DATABASE_NAMES => list(ListKind::DatabaseNames, &mut r)?,
        op::BACKUP_GET_DYNAMIC_FILE_LIST => list(ListKind::DynamicFiles, &mut r)?,
        op::BACKUP_GET_BACKUP_LOGS => list(ListKind::BackupLogs, &mut r)?,
        op::RESTORE_GET_DATABASE_LOCATIONS => list(ListKind::DatabaseLocations, &mut r)?,
        op::BACKUP_OPEN_FILE => BackupOpenFile {
            hbc: r.u64("hbc")?,
            name: r.str("pwszAttachmentName")?,
            read_hint: r.u32("cbReadHintSize")?,
        },
        op::BACKUP_READ => BackupRead {
            hbc: r.u64("hbc")?,
            cb: r.u32("cbBuffer")?,
        },
        op::BACKUP_CLOSE => BackupClose { hbc: r.u64("hbc")? },
        op::BACKUP_TRUNCATE_LOGS => BackupTruncateLogs { hbc: r.u64("hbc")? },
        op::BACKUP_END => BackupEnd { hbc: r.u64("hbc")? },
        op::BACKUP_FREE => BackupFree {
            buffer: r.u64("pv")?,
        },
        op::RESTORE_PREPARE => RestorePrepare {
            server: r.str("pwszServerName")?,
            restore_flags: r.u32("dwRestoreFlags")?,
        },
        op::RESTORE_REGISTER | op::RESTORE_REGISTER_THROUGH_FILE => RestoreRegister {
            hbc: r.u64("hbc")?,
            through_file: code == op::RESTORE_REGISTER_THROUGH_FILE,
            reg: get_registration(&mut r)?,
        },
        op::RESTORE_REGISTER_COMPLETE => RestoreRegisterComplete {
            hbc: r.u64("hbc")?,
            restore_state: HRESULT(r.i32("hrRestoreState")?),
        },
        op::RESTORE_END => RestoreEnd { hbc: r.u64("hbc")? },
        op::SERVER_CONTROL => ServerControl {
            server: r.str("pwszServerName")?,
            control_flags: r.u32("dwControlFlags")?,
        },
        op::CREATE_MACHINE => CreateMachine {
            json: r.str("json")?,
        },
        op::DROP_MACHINE => DropMachine {
            machine: r.str("machine")?,
        },
        op::LIST_MACHINES => ListMachines,
        op::ISSUE => Issue {
            machine: r.str("machine")?,
            n: r.u32("n")?,
        },
        op::REVOKE => Revoke {
            machine: r.str("machine")?,
            request_id: r.u32("request_id")?,
        },
        op::ROLL_LOG => RollLog {
            machine: r.str("machine")?,
        },
        op::STOP => Stop {
            machine: r.str("machine")?,
        },
        op::CRASH => Crash {
            machine: r.str("machine")?,
        },
        op::START => Start {
            machine: r.str("machine")?,
        },
        op::WIPE_FILES => WipeFiles {
            machine: r.str("machine")?,
        },
        op::HOST_PATH => HostPath {
            machine: r.str("machine")?,
            windows_path: r.str("windows_path")?,
        },
        op::SET_IDENTITY => SetIdentity {
            machine: r.str("machine")?,
            identity: get_identity(&mut r)?,
        },
        op::SET_INTERFACE_FLAGS => SetInterfaceFlags {
            machine: r.str("machine")?,
            flags: r.u32("flags")?,
        },
        op::SET_FAULTS => SetFaults {
            machine: r.str("machine")?,
            json: r.str("json")?,
        },
        op::REPORT => Report {
            machine: r.str("machine")?,
        },
        op::TRACE => Trace {
            machine: r.str("machine")?,
            from: r.u64("from")?,
            max_bytes: r.u32("max_bytes")?,
        },
        op::RECORDS => Records {
            machine: r.str("machine")?,
        },
        op::STATE => State {
            machine: r.str("machine")?,
        },
        op::CLEAR_RESTORE_MARKER => ClearRestoreMarker {
            machine: r.str("machine")?,
        },
        op::SHUTDOWN => Shutdown,
        other => return err(format!("unknown operation {other:#06x}")),
    };
    r.finish("request")?;
    Ok(req)
}

// ----- responses --------------------------------------------------------------------------

/// The out-values of a successful call. Which variant an operation returns is fixed
/// ([`out_kind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// No out-value.
    Unit,
    /// `*pfServerOnline`.
    Bool(bool),
    /// A handle (`*phbc`) or a file size (`*pliFileSize`).
    U64(u64),
    /// A log generation.
    U32(u32),
    /// Log generations deleted, or request ids issued.
    U32s(Vec<u32>),
    /// A list and its buffer token (0 when the request did not ask for tracking).
    List {
        /// The token to pass to `CertSrvBackupFree`.
        buffer: u64,
        /// The list, exactly as certbcli returns it.
        list: WideList,
    },
    /// Bytes read.
    Bytes(Vec<u8>),
    /// A text (host path, JSON).
    Text(String),
    /// Names.
    Texts(Vec<String>),
    /// What a service start did.
    Recovery(RecoveryReport),
    /// A page of the trace.
    TracePage {
        /// JSON lines, each ending in `\n`.
        lines: String,
        /// Index of the first event not in this page.
        next: u64,
        /// Events in the trace.
        total: u64,
    },
    /// Records.
    Records {
        /// Count.
        count: u64,
        /// CRC-32 over the records (see `server::records_digest`).
        digest: u32,
    },
}

/// The shapes of [`Out`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutKind {
    /// [`Out::Unit`].
    Unit,
    /// [`Out::Bool`].
    Bool,
    /// [`Out::U64`].
    U64,
    /// [`Out::U32`].
    U32,
    /// [`Out::U32s`].
    U32s,
    /// [`Out::List`].
    List,
    /// [`Out::Bytes`].
    Bytes,
    /// [`Out::Text`].
    Text,
    /// [`Out::Texts`].
    Texts,
    /// [`Out::Recovery`].
    Recovery,
    /// [`Out::TracePage`].
    TracePage,
    /// [`Out::Records`].
    Records,
}

impl Out {
    /// The shape of this value.
    pub fn kind(&self) -> OutKind {
        match self {
            Out::Unit => OutKind::Unit,
            Out::Bool(_) => OutKind::Bool,
            Out::U64(_) => OutKind::U64,
            Out::U32(_) => OutKind::U32,
            Out::U32s(_) => OutKind::U32s,
            Out::List { .. } => OutKind::List,
            Out::Bytes(_) => OutKind::Bytes,
            Out::Text(_) => OutKind::Text,
            Out::Texts(_) => OutKind::Texts,
            Out::Recovery(_) => OutKind::Recovery,
            Out::TracePage { .. } => OutKind::TracePage,
            Out::Records { .. } => OutKind::Records,
        }
    }
}

/// The shape of the out-values of operation `code`; `None` for an unknown operation.
pub fn out_kind(code: u16) -> Option<OutKind> {
    use op::*;
    Some(match code {
        IS_SERVER_ONLINE => OutKind::Bool,
        BACKUP_PREPARE | RESTORE_PREPARE | BACKUP_OPEN_FILE => OutKind::U64,
        BACKUP_GET_DATABASE_NAMES
        | BACKUP_GET_DYNAMIC_FILE_LIST
        | BACKUP_GET_BACKUP_LOGS
        | RESTORE_GET_DATABASE_LOCATIONS => OutKind::List,
        BACKUP_READ => OutKind::Bytes,
        BACKUP_TRUNCATE_LOGS | ISSUE => OutKind::U32s,
        ROLL_LOG => OutKind::U32,
        START => OutKind::Recovery,
        HOST_PATH | REPORT | STATE => OutKind::Text,
        CREATE_MACHINE | LIST_MACHINES => OutKind::Texts,
        TRACE => OutKind::TracePage,
        RECORDS => OutKind::Records,
        BACKUP_CLOSE
        | BACKUP_END
        | BACKUP_FREE
        | RESTORE_REGISTER
        | RESTORE_REGISTER_THROUGH_FILE
        | RESTORE_REGISTER_COMPLETE
        | RESTORE_END
        | SERVER_CONTROL
        | DROP_MACHINE
        | REVOKE
        | STOP
        | CRASH
        | WIPE_FILES
        | SET_IDENTITY
        | SET_INTERFACE_FLAGS
        | SET_FAULTS
        | CLEAR_RESTORE_MARKER
        | SHUTDOWN => OutKind::Unit,
        _ => return None,
    })
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The operation answered (the request's code).
    pub op: u16,
    /// The HRESULT the certbcli function (or control call) returned.
    pub hr: HRESULT,
    /// The emulator's explanation of a failure (empty on success).
    pub message: String,
    /// The out-values; present exactly when `hr` is a success code.
    pub out: Option<Out>,
}

impl Response {
    /// A success.
    pub fn ok(op: u16, out: Out) -> Response {
        Response {
            op,
            hr: HRESULT::S_OK,
            message: String::new(),
            out: Some(out),
        }
    }
    /// A failure (`hr` must be a failure code).
    pub fn fail(op: u16, hr: HRESULT, message: impl Into<String>) -> Response {
        Response {
            op,
            hr: if hr.is_ok() { HRESULT::E_FAIL } else { hr },
            message: message.into(),
            out: None,
        }
    }
}

fn put_recovery(w: &mut Writer, r: &RecoveryReport) {
    w.bool(r.hard);
    w.u32(r.from.gen);
    w.u32(r.from.pos);
    w.u32s(&r.replayed_generations);
    w.u64(r.transactions as u64);
    w.bool(r.torn_tail);
    w.strs(&r.ignored);
}

fn get_recovery(r: &mut Reader<'_>) -> Result<RecoveryReport, DecodeError> {
    Ok(RecoveryReport {
        hard: r.bool("hard")?,
        from: Position {
            gen: r.u32("from.gen")?,
            pos: r.u32("from.pos")?,
        },
        replayed_generations: r.u32s("replayed_generations")?,
        transactions: usize::try_from(r.u64("transactions")?)
            .map_err(|_| DecodeError("transactions overflow usize".into()))?,
        torn_tail: r.bool("torn_tail")?,
        ignored: r.strs("ignored")?,
    })
}

/// Encodes a response (the frame payload). The out-value of a success must have the
/// shape [`out_kind`] gives for the operation; a mismatch is encoded as is and fails to
/// decode on the other side.
pub fn encode_response(resp: &Response) -> Vec<u8> {
    let mut w = Writer::default();
    let tail = put_response(&mut w, resp);
    w.buf.extend_from_slice(tail);
    w.buf
}

/// Encodes a response as a frame without copying the data of a read: `head` receives
/// the length prefix and every byte before the data, the data is returned; the frame is
/// `head` followed by the returned slice (empty for every other response).
pub fn encode_response_frame<'a>(resp: &'a Response, head: &mut Vec<u8>) -> &'a [u8] {
    let mut w = Writer {
        buf: std::mem::take(head),
    };
    w.buf.clear();
    w.u32(0);
    let tail = put_response(&mut w, resp);
    let len = (w.buf.len() - 4 + tail.len()) as u32;
    w.buf[..4].copy_from_slice(&len.to_le_bytes());
    *head = w.buf;
    tail
}

/// Writes everything but the data of an [`Out::Bytes`], which it returns.
fn put_response<'a>(w: &mut Writer, resp: &'a Response) -> &'a [u8] {
    w.u16(resp.op);
    w.i32(resp.hr.0);
    w.str(&resp.message);
    if resp.hr.is_ok() {
        match resp.out.as_ref().unwrap_or(&Out::Unit) {
            Out::Unit => {}
            Out::Bool(b) => w.bool(*b),
            Out::U64(v) => w.u64(*v),
            Out::U32(v) => w.u32(*v),
            Out::U32s(v) => w.u32s(v),
            Out::List { buffer, list } => {
                w.u64(*buffer);
                w.list(list);
            }
            Out::Bytes(b) => {
                w.u32(b.len() as u32);
                return b;
            }
            Out::Text(s) => w.str(s),
            Out::Texts(v) => w.strs(v),
            Out::Recovery(r) => put_recovery(w, r),
            Out::TracePage { lines, next, total } => {
                w.str(lines);
                w.u64(*next);
                w.u64(*total);
            }
            Out::Records { count, digest } => {
                w.u64(*count);
                w.u32(*digest);
            }
        }
    }
    &[]
}

/// A response to `CertSrvBackupRead` whose data stays in the frame buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReply<'a> {
    /// The HRESULT.
    pub hr: HRESULT,
    /// The emulator's message.
    pub message: String,
    /// The bytes read, on success.
    pub data: Option<&'a [u8]>,
}

/// Decodes a response to a [`Request::BackupRead`] without copying its data (what
/// [`decode_response`] gives as [`Out::Bytes`]).
pub fn decode_read_reply(b: &[u8]) -> Result<ReadReply<'_>, DecodeError> {
    let mut r = Reader::new(b);
    let code = r.u16("op")?;
    if code != op::BACKUP_READ {
        return err(format!(
            "response to operation {code:#06x}, not CertSrvBackupRead"
        ));
    }
    let hr = HRESULT(r.i32("hr")?);
    let message = r.str("message")?;
    let data = if hr.is_ok() {
        let n = r.u32("data")? as usize;
        Some(r.take(n, "data")?)
    } else {
        None
    };
    r.finish("response")?;
    Ok(ReadReply { hr, message, data })
}

/// Decodes a response (a frame payload).
pub fn decode_response(b: &[u8]) -> Result<Response, DecodeError> {
    let mut r = Reader::new(b);
    let code = r.u16("op")?;
    let Some(kind) = out_kind(code) else {
        return err(format!("unknown operation {code:#06x}"));
    };
    let hr = HRESULT(r.i32("hr")?);
    let message = r.str("message")?;
    let out = if hr.is_ok() {
        Some(match kind {
            OutKind::Unit => Out::Unit,
            OutKind::Bool => Out::Bool(r.bool("out")?),
            OutKind::U64 => Out::U64(r.u64("out")?),
            OutKind::U32 => Out::U32(r.u32("out")?),
            OutKind::U32s => Out::U32s(r.u32s("out")?),
            OutKind::List => Out::List {
                buffer: r.u64("buffer")?,
                list: r.list("list")?,
            },
            OutKind::Bytes => Out::Bytes(r.bytes("data")?),
            OutKind::Text => Out::Text(r.str("text")?),
            OutKind::Texts => Out::Texts(r.strs("texts")?),
            OutKind::Recovery => Out::Recovery(get_recovery(&mut r)?),
            OutKind::TracePage => Out::TracePage {
                lines: r.str("lines")?,
                next: r.u64("next")?,
                total: r.u64("total")?,
            },
            OutKind::Records => Out::Records {
                count: r.u64("count")?,
                digest: r.u32("digest")?,
            },
        })
    } else {
        None
    };
    r.finish("response")?;
    Ok(Response {
        op: code,
        hr,
        message,
        out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::consts::*;

    #[test]
    fn string_is_u32_units_then_utf16le() {
        let mut w = Writer::default();
        w.str("Aé");
        assert_eq!(w.buf, [2, 0, 0, 0, 0x41, 0, 0xE9, 0]);
        assert_eq!(Reader::new(&w.buf).str("s").unwrap(), "Aé");
        // An unpaired surrogate is refused, not replaced.
        let bad = [1, 0, 0, 0, 0x00, 0xD8];
        assert!(Reader::new(&bad).str("s").is_err());
        // A count larger than the bytes left is refused before allocating.
        let huge = [0xFF, 0xFF, 0xFF, 0xFF];
        assert!(Reader::new(&huge).str("s").is_err());
    }

    #[test]
    fn list_is_the_raw_pcbsize_bytes() {
        let l = WideList::from_entries([(Some(CSBFT_CERTSERVER_DATABASE), r"\\CA1\C$\x.edb")]);
        let mut w = Writer::default();
        w.list(&l);
        assert_eq!(&w.buf[..4], &l.byte_len().to_le_bytes());
        assert_eq!(&w.buf[4..], &l.to_bytes()[..]);
        assert_eq!(Reader::new(&w.buf).list("l").unwrap(), l);
        // The empty list is one NUL.
        let mut w = Writer::default();
        w.list(&WideList::new());
        assert_eq!(w.buf, [2, 0, 0, 0, 0, 0]);
        assert_eq!(Reader::new(&w.buf).list("l").unwrap(), WideList::new());
        // Odd, unterminated, or with bytes after the end: refused.
        for bad in [
            &[1u8, 0, 0, 0, 0][..],
            &[2, 0, 0, 0, 0x41, 0],
            &[6, 0, 0, 0, 0, 0, 0x41, 0, 0, 0],
        ] {
            assert!(Reader::new(bad).list("l").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn request_layout_is_pinned() {
        let b = encode_request(&Request::BackupRead {
            hbc: 0x11,
            cb: 65536,
        });
        assert_eq!(
            b,
            [0x06, 0, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            "op u16, hbc u64, cbBuffer u32"
        );
        let b = encode_request(&Request::IsServerOnline {
            server: "CA".into(),
        });
        assert_eq!(b, [0x01, 0, 2, 0, 0, 0, b'C', 0, b'A', 0]);
        assert_eq!(
            decode_request(&b).unwrap(),
            Request::IsServerOnline {
                server: "CA".into()
            }
        );
    }

    #[test]
    fn response_layout_is_pinned() {
        let b = encode_response(&Response::ok(op::IS_SERVER_ONLINE, Out::Bool(true)));
        assert_eq!(b, [0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let f = Response::fail(op::BACKUP_END, HRESULT::E_HANDLE, "x");
        let b = encode_response(&f);
        assert_eq!(b, [0x0A, 0, 0x06, 0, 0x07, 0x80, 1, 0, 0, 0, b'x', 0]);
        assert_eq!(decode_response(&b).unwrap(), f);
    }

    #[test]
    fn every_request_round_trips() {
        let reg = Registration {
            checkpoint_path: Some(r"C:\Windows\System32\CertLog".into()),
            log_path: None,
            restore_map: vec![("a".into(), "b".into())],
            backup_log_path: Some(String::new()),
            gen_low: 1,
            gen_high: 7,
        };
        let m = || "CA01".to_string();
        let all = vec![
            Request::IsServerOnline { server: m() },
            Request::BackupPrepare {
                server: m(),
                grbit_jet: 0,
                backup_flags: 1,
            },
            Request::GetList {
                kind: ListKind::BackupLogs,
                hbc: 9,
                track: true,
            },
            Request::BackupOpenFile {
                hbc: 1,
                name: "n".into(),
                read_hint: 3,
            },
            Request::BackupRead { hbc: 1, cb: 2 },
            Request::BackupClose { hbc: 1 },
            Request::BackupTruncateLogs { hbc: 1 },
            Request::BackupEnd { hbc: 1 },
            Request::BackupFree { buffer: 77 },
            Request::RestorePrepare {
                server: m(),
                restore_flags: 1,
            },
            Request::RestoreRegister {
                hbc: 0,
                through_file: true,
                reg: reg.clone(),
            },
            Request::RestoreRegister {
                hbc: 5,
                through_file: false,
                reg,
            },
            Request::RestoreRegisterComplete {
                hbc: 5,
                restore_state: HRESULT::E_FAIL,
            },
            Request::RestoreEnd { hbc: 5 },
            Request::ServerControl {
                server: m(),
                control_flags: 1,
            },
            Request::CreateMachine { json: "{}".into() },
            Request::DropMachine { machine: m() },
            Request::ListMachines,
            Request::Issue { machine: m(), n: 4 },
            Request::Revoke {
                machine: m(),
                request_id: 4,
            },
            Request::RollLog { machine: m() },
            Request::Stop { machine: m() },
            Request::Crash { machine: m() },
            Request::Start { machine: m() },
            Request::WipeFiles { machine: m() },
            Request::HostPath {
                machine: m(),
                windows_path: r"C:\x".into(),
            },
            Request::SetIdentity {
                machine: m(),
                identity: Identity::default(),
            },
            Request::SetInterfaceFlags {
                machine: m(),
                flags: 0,
            },
            Request::SetFaults {
                machine: m(),
                json: "{}".into(),
            },
            Request::Report { machine: m() },
            Request::Trace {
                machine: m(),
                from: 3,
                max_bytes: 0,
            },
            Request::Records { machine: m() },
            Request::State { machine: m() },
            Request::ClearRestoreMarker { machine: m() },
            Request::Shutdown,
        ];
        for req in all {
            let b = encode_request(&req);
            assert_eq!(decode_request(&b).as_ref(), Ok(&req));
            // Every truncation fails cleanly.
            for cut in 0..b.len() {
                assert!(decode_request(&b[..cut]).is_err(), "{req:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn frames_respect_the_limit() {
        let mut out = Vec::new();
        write_frame(&mut out, b"abc").unwrap();
        assert_eq!(out, [3, 0, 0, 0, b'a', b'b', b'c']);
        let mut r = &out[..];
        assert_eq!(read_frame(&mut r, 16).unwrap(), Some(b"abc".to_vec()));
        assert!(read_frame(&mut r, 16).unwrap().is_none());
        let mut r = &out[..];
        assert!(matches!(
            read_frame(&mut r, 2),
            Err(FrameError::TooLarge { len: 3, limit: 2 })
        ));
        let mut r = &out[..5];
        assert!(matches!(read_frame(&mut r, 16), Err(FrameError::Truncated)));
        let mut r = &out[..2];
        assert!(matches!(read_frame(&mut r, 16), Err(FrameError::Truncated)));
    }

    #[test]
    fn hello_round_trips_and_checks_magic() {
        let h = Hello {
            version: VERSION,
            secret: Some("s3cret".into()),
            client: "test".into(),
        };
        let b = encode_hello(&h);
        assert_eq!(&b[..8], &MAGIC);
        assert_eq!(decode_hello(&b).unwrap(), h);
        let mut bad = b.clone();
        bad[0] = b'X';
        assert!(decode_hello(&bad).is_err());
        let rep = HelloReply {
            version: VERSION,
            hr: HRESULT::S_OK,
            message: String::new(),
            server: "certadm-emu".into(),
            max_frame: MAX_FRAME,
            max_read: MAX_READ,
        };
        assert_eq!(decode_hello_reply(&encode_hello_reply(&rep)).unwrap(), rep);
    }
}

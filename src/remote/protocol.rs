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
//! Each request is written once, in the request table (`requests!` below): its operation
//! code (a certbcli function's comes from the call table, [`Call::op`]), its fields with
//! their wire types and names, and the shape of its out-values. [`Request`],
//! [`encode_request`], [`decode_request`] and [`out_kind`] are generated from it, and
//! [`c_header`] turns the codes and limits into the PE DLL's `protocol.h`.
//!
//! Decoding never panics, and never allocates more than a small multiple of the input it
//! was given: every count is checked against the bytes left before anything is allocated.

use crate::ca::format::Position;
use crate::ca::recovery::RecoveryReport;
use crate::core::codec::{err, Reader, Writer};
use crate::core::{Call, WideList, HRESULT};
use crate::machine::Identity;
use crate::session::Registration;
use std::fmt;
use std::io::{self, Read, Write};

pub use crate::core::codec::{decode_list, DecodeError};
pub use crate::core::ListKind;

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
pub const MAX_ISSUE: u32 = crate::core::limits::ISSUE_PER_CALL.max as u32;
/// Default and largest `max_bytes` of one `Trace` page (text; at most twice that as UTF-16).
pub const MAX_TRACE_PAGE: u32 = 4 << 20;

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
    match read_frame_metered(r, limit, buf, usize::MAX, |_| true)? {
        FrameRead::End => Ok(false),
        FrameRead::Frame => Ok(true),
        FrameRead::Dropped { .. } => unreachable!("an unmetered read keeps every frame"),
    }
}

/// What [`read_frame_metered`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRead {
    /// A clean end of stream (before any byte of a frame).
    End,
    /// A whole frame, in the buffer.
    Frame,
    /// A frame whose growth was refused: it was read to its end and dropped. The buffer
    /// holds its first bytes (at least `min(len, free)` of them, so the operation code
    /// of a request when `free >= 2`).
    Dropped {
        /// The announced length.
        len: u32,
    },
}

/// [`read_frame_into`] with a meter: the first `free` bytes of a payload cost nothing;
/// before the buffer grows past them, `grow(n)` is asked for the `n` bytes more (the sum
/// of the granted `n` is what the frame holds beyond `free`). If it refuses, the rest
/// of the frame is read in small pieces and dropped, and the result is
/// [`FrameRead::Dropped`]: the stream stays in step, and the caller releases what it
/// granted.
pub fn read_frame_metered(
    r: &mut impl Read,
    limit: u32,
    buf: &mut Vec<u8>,
    free: usize,
    mut grow: impl FnMut(usize) -> bool,
) -> Result<FrameRead, FrameError> {
    buf.clear();
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(FrameRead::End),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let announced = u32::from_le_bytes(len);
    if announced > limit {
        return Err(FrameError::TooLarge {
            len: announced,
            limit,
        });
    }
    let eof = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    };
    // Grow by at most what already arrived (4 KiB at first, so that a peer that announces
    // a frame and sends little costs little), and read each step with `read_exact` so
    // that a large frame takes few large reads.
    let len = announced as usize;
    let mut done = 0;
    while done < len {
        let mut step = (len - done).min(done.max(4 << 10));
        if done < free {
            // The free part first, whole: it is kept even if growth is refused.
            step = step.min(free - done);
        }
        let more = (done + step).saturating_sub(free) - done.saturating_sub(free);
        if more > 0 && !grow(more) {
            // Refused: read the rest into a small scratch buffer and drop it.
            buf.truncate(done);
            let mut scratch = [0u8; 8 << 10];
            let mut left = len - done;
            while left > 0 {
                let n = left.min(scratch.len());
                r.read_exact(&mut scratch[..n]).map_err(eof)?;
                left -= n;
            }
            return Ok(FrameRead::Dropped { len: announced });
        }
        buf.resize(done + step, 0);
        match r.read_exact(&mut buf[done..done + step]) {
            Ok(()) => done += step,
            Err(e) => {
                buf.clear();
                return Err(eof(e));
            }
        }
    }
    Ok(FrameRead::Frame)
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
    let mut w = Writer::new();
    w.raw(&MAGIC);
    w.u16(h.version);
    w.opt_utf16(h.secret.as_deref());
    w.utf16(&h.client);
    w.into_inner()
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
        secret: r.opt_utf16("secret")?,
        client: r.utf16("client")?,
    };
    r.finish("hello")?;
    Ok(h)
}

/// Encodes a [`HelloReply`].
pub fn encode_hello_reply(h: &HelloReply) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(&MAGIC);
    w.u16(h.version);
    w.i32(h.hr.0);
    w.utf16(&h.message);
    w.utf16(&h.server);
    w.u32(h.max_frame);
    w.u32(h.max_read);
    w.into_inner()
}

/// Decodes a [`HelloReply`].
pub fn decode_hello_reply(b: &[u8]) -> Result<HelloReply, DecodeError> {
    let mut r = Reader::new(b);
    magic(&mut r)?;
    let h = HelloReply {
        version: r.u16("version")?,
        hr: HRESULT(r.i32("hr")?),
        message: r.utf16("message")?,
        server: r.utf16("server")?,
        max_frame: r.u32("max_frame")?,
        max_read: r.u32("max_read")?,
    };
    r.finish("hello reply")?;
    Ok(h)
}

// ----- requests ---------------------------------------------------------------------------

/// A value with one wire encoding (`docs/PROTOCOL.md` §3). In the request table below, the
/// Rust type of a field is its wire type: `String` is a `str`, `u32` / `u64` / `bool` are
/// themselves, `HRESULT` is an `i32`, [`Registration`] and [`Identity`] are the records
/// of §6 and §7.
trait Wire: Sized {
    fn put(&self, w: &mut Writer);
    /// `what` names the field in a decode error.
    fn get(r: &mut Reader<'_>, what: &str) -> Result<Self, DecodeError>;
}

impl Wire for String {
    fn put(&self, w: &mut Writer) {
        w.utf16(self);
    }
    fn get(r: &mut Reader<'_>, what: &str) -> Result<Self, DecodeError> {
        r.utf16(what)
    }
}

impl Wire for u32 {
    fn put(&self, w: &mut Writer) {
        w.u32(*self);
    }
    fn get(r: &mut Reader<'_>, what: &str) -> Result<Self, DecodeError> {
        r.u32(what)
    }
}

impl Wire for u64 {
    fn put(&self, w: &mut Writer) {
        w.u64(*self);
    }
    fn get(r: &mut Reader<'_>, what: &str) -> Result<Self, DecodeError> {
        r.u64(what)
    }
}

impl Wire for bool {
    fn put(&self, w: &mut Writer) {
        w.bool(*self);
    }
    fn get(r: &mut Reader<'_>, what: &str) -> Result<Self, DecodeError> {
        r.bool(what)
    }
}

impl Wire for HRESULT {
    fn put(&self, w: &mut Writer) {
        w.i32(self.0);
    }
    fn get(r: &mut Reader<'_>, what: &str) -> Result<Self, DecodeError> {
        r.i32(what).map(HRESULT)
    }
}

/// The arguments of `CertSrvRestoreRegister*` after `hbc` (§6); its fields name themselves.
impl Wire for Registration {
    fn put(&self, w: &mut Writer) {
        w.opt_utf16(self.checkpoint_path.as_deref());
        w.opt_utf16(self.log_path.as_deref());
        w.u32(self.restore_map.len() as u32);
        for (a, b) in &self.restore_map {
            w.utf16(a);
            w.utf16(b);
        }
        w.opt_utf16(self.backup_log_path.as_deref());
        w.u32(self.gen_low);
        w.u32(self.gen_high);
    }
    fn get(r: &mut Reader<'_>, _: &str) -> Result<Self, DecodeError> {
        let checkpoint_path = r.opt_utf16("pwszCheckPointFilePath")?;
        let log_path = r.opt_utf16("pwszLogPath")?;
        let n = r.u32("crstmap")? as usize;
        if n.saturating_mul(8) > r.remaining() {
            return err(format!(
                "crstmap {n}: the entries do not fit in the message"
            ));
        }
        let mut restore_map = Vec::new();
        for _ in 0..n {
            let a = r.utf16("pwszDatabaseName")?;
            let b = r.utf16("pwszNewDatabaseName")?;
            restore_map.push((a, b));
        }
        Ok(Registration {
            checkpoint_path,
            log_path,
            restore_map,
            backup_log_path: r.opt_utf16("pwszBackupLogPath")?,
            gen_low: r.u32("genLow")?,
            gen_high: r.u32("genHigh")?,
        })
    }
}

/// Four booleans (§7, `SetIdentity`); its fields name themselves.
impl Wire for Identity {
    fn put(&self, w: &mut Writer) {
        w.bool(self.backup_privilege);
        w.bool(self.restore_privilege);
        w.bool(self.local_admin);
        w.bool(self.remote);
    }
    fn get(r: &mut Reader<'_>, _: &str) -> Result<Self, DecodeError> {
        Ok(Identity {
            backup_privilege: r.bool("backup_privilege")?,
            restore_privilege: r.bool("restore_privilege")?,
            local_admin: r.bool("local_admin")?,
            remote: r.bool("remote")?,
        })
    }
}

/// A request field that travels as the operation code instead of in the payload: it
/// selects which of several certbcli functions one request variant calls (`= op` in the
/// table).
trait Selector: Copy {
    fn call(self) -> Call;
    fn from_call(call: Call) -> Option<Self>;
}

/// Which of the four list functions.
impl Selector for ListKind {
    fn call(self) -> Call {
        ListKind::call(self)
    }
    fn from_call(call: Call) -> Option<Self> {
        call.list()
    }
}

/// `through_file` of [`Request::RestoreRegister`]: `CertSrvRestoreRegisterThroughFile`
/// rather than `CertSrvRestoreRegisterW`.
impl Selector for bool {
    fn call(self) -> Call {
        if self {
            Call::RestoreRegisterThroughFile
        } else {
            Call::RestoreRegister
        }
    }
    fn from_call(call: Call) -> Option<Self> {
        match call {
            Call::RestoreRegister => Some(false),
            Call::RestoreRegisterThroughFile => Some(true),
            _ => None,
        }
    }
}

/// The operation code of a row: its own (`= code`), or its selector field's.
macro_rules! request_op {
    ([$op:expr] $($fields:tt)*) => { $op };
    ([] $field:ident op $($rest:tt)*) => { Selector::call(*$field).op() };
    ([] $field:ident $wire:literal $($rest:tt)*) => { request_op!([] $($rest)*) };
}

/// True if operation `code` (`call`, if a certbcli function) is a request of this row.
macro_rules! request_is {
    ($code:ident, $call:ident, [$op:expr] $($fields:tt)*) => { $code == $op };
    ($code:ident, $call:ident, [] $ty:ident op $($rest:tt)*) => {
        $call.and_then(<$ty as Selector>::from_call).is_some()
    };
    ($code:ident, $call:ident, [] $ty:ident $wire:literal $($rest:tt)*) => {
        request_is!($code, $call, [] $($rest)*)
    };
}

/// Writes one field (nothing for the selector: the operation code carries it).
macro_rules! request_put {
    ($w:ident, $field:ident, op) => {
        let _ = $field;
    };
    ($w:ident, $field:ident, $wire:literal) => {
        Wire::put($field, &mut $w)
    };
}

/// Reads one field (the selector from the operation code).
macro_rules! request_get {
    ($r:ident, $call:ident, $ty:ident, op) => {
        match $call.and_then(<$ty as Selector>::from_call) {
            Some(v) => v,
            None => return err("operation code and request disagree"),
        }
    };
    ($r:ident, $call:ident, $ty:ident, $wire:literal) => {
        <$ty as Wire>::get(&mut $r, $wire)?
    };
}

/// The request table: each request written once, with its operation code, its fields
/// (name, wire type, wire name) and the shape of its out-values. The [`Request`] enum,
/// [`Request::op`], [`encode_request`], [`decode_request`] and [`out_kind`] come from it.
///
/// A row is `Variant = code => OutKind { field: Type = "wireName", ... };`. A certbcli
/// request takes its code from the call table (`Call::X.op()`); a control request has a
/// code of its own in 0x40..=0x5F. A row without `= code` is selected by a field
/// `= op` ([`Selector`]): the function it calls gives the code. Fields are encoded in
/// table order.
macro_rules! requests {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident $(= $op:expr)? => $out:ident $({
            $( $(#[doc = $fdoc:literal])* $field:ident : $ty:ident = $wire:tt ),* $(,)?
        })?;
    )*) => {
        /// One request: a certbcli call or a control call (`docs/PROTOCOL.md` §6, §7).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Request {
            $(
                $(#[doc = $doc])*
                $variant $({ $( $(#[doc = $fdoc])* $field: $ty, )* })?,
            )*
        }

        impl Request {
            /// The operation code.
            #[allow(unused_variables)]
            pub fn op(&self) -> u16 {
                match self {
                    $( Request::$variant { $($( $field, )*)? .. } => {
                        request_op!([$($op)?] $($( $field $wire )*)?)
                    } )*
                }
            }

            /// The variant's name: the name of a control request.
            fn variant_name(&self) -> &'static str {
                match self {
                    $( Request::$variant { .. } => stringify!($variant), )*
                }
            }
        }

        /// The control operations (codes without a certbcli function) with their names.
        const FIXED_OPS: &[(u16, &str)] = &[ $($( ($op, stringify!($variant)), )?)* ];

        /// Encodes a request (the frame payload).
        pub fn encode_request(req: &Request) -> Vec<u8> {
            let mut w = Writer::new();
            w.u16(req.op());
            match req {
                $( Request::$variant { $($( $field, )*)? .. } => {
                    $($( request_put!(w, $field, $wire); )*)?
                } )*
            }
            w.into_inner()
        }

        /// Decodes a request (a frame payload).
        pub fn decode_request(b: &[u8]) -> Result<Request, DecodeError> {
            let mut r = Reader::new(b);
            let code = r.u16("op")?;
            let call = Call::from_op(code);
            $(
                if request_is!(code, call, [$($op)?] $($( $ty $wire )*)?) {
                    let req = Request::$variant $({ $(
                        $field: request_get!(r, call, $ty, $wire),
                    )* })?;
                    r.finish("request")?;
                    return Ok(req);
                }
            )*
            err(format!("unknown operation {code:#06x}"))
        }

        /// The shape of the out-values of operation `code`; `None` for an unknown operation.
        pub fn out_kind(code: u16) -> Option<OutKind> {
            let call = Call::from_op(code);
            $(
                if request_is!(code, call, [$($op)?] $($( $ty $wire )*)?) {
                    return Some(OutKind::$out);
                }
            )*
            None
        }

        /// How many rows of the table answer operation `code` (the table's self-check).
        #[cfg(test)]
        fn rows_for(code: u16) -> usize {
            let call = Call::from_op(code);
            let mut n = 0;
            $( n += usize::from(request_is!(code, call, [$($op)?] $($( $ty $wire )*)?)); )*
            n
        }
    };
}

requests! {
    // certbcli functions (§6): the code is the call table's.

    /// `CertSrvIsServerOnlineW(pwszServerName)`.
    IsServerOnline = Call::IsServerOnline.op() => Bool {
        /// `pwszServerName`.
        server: String = "pwszServerName",
    };
    /// `CertSrvBackupPrepareW`.
    BackupPrepare = Call::BackupPrepare.op() => U64 {
        /// `pwszServerName`.
        server: String = "pwszServerName",
        /// `grbitJet`.
        grbit_jet: u32 = "grbitJet",
        /// `dwBackupFlags`.
        backup_flags: u32 = "dwBackupFlags",
    };
    /// One of the four list functions.
    GetList => List {
        /// Which function (carried by the operation code).
        kind: ListKind = op,
        /// `hbc`.
        hbc: u64 = "hbc",
        /// Allocate a server-side buffer token for `CertSrvBackupFree` accounting.
        track: bool = "track",
    };
    /// `CertSrvBackupOpenFileW`.
    BackupOpenFile = Call::BackupOpenFile.op() => U64 {
        /// `hbc`.
        hbc: u64 = "hbc",
        /// `pwszAttachmentName`.
        name: String = "pwszAttachmentName",
        /// `cbReadHintSize`.
        read_hint: u32 = "cbReadHintSize",
    };
    /// `CertSrvBackupRead` of at most `cb` bytes (at most [`MAX_READ`]).
    BackupRead = Call::BackupRead.op() => Bytes {
        /// `hbc`.
        hbc: u64 = "hbc",
        /// `cbBuffer`.
        cb: u32 = "cbBuffer",
    };
    /// `CertSrvBackupClose`.
    BackupClose = Call::BackupClose.op() => Unit {
        /// `hbc`.
        hbc: u64 = "hbc",
    };
    /// `CertSrvBackupTruncateLogs`.
    BackupTruncateLogs = Call::BackupTruncateLogs.op() => U32s {
        /// `hbc`.
        hbc: u64 = "hbc",
    };
    /// `CertSrvBackupEnd`.
    BackupEnd = Call::BackupEnd.op() => Unit {
        /// `hbc`.
        hbc: u64 = "hbc",
    };
    /// `CertSrvBackupFree` of a buffer token from a tracked list (0 is NULL).
    BackupFree = Call::BackupFree.op() => Unit {
        /// The token.
        buffer: u64 = "pv",
    };
    /// `CertSrvRestorePrepareW`.
    RestorePrepare = Call::RestorePrepare.op() => U64 {
        /// `pwszServerName`.
        server: String = "pwszServerName",
        /// `dwRestoreFlags`.
        restore_flags: u32 = "dwRestoreFlags",
    };
    /// `CertSrvRestoreRegisterW` or `CertSrvRestoreRegisterThroughFile`.
    RestoreRegister => Unit {
        /// `CertSrvRestoreRegisterThroughFile` (carried by the operation code).
        through_file: bool = op,
        /// `hbc` (0 is NULL).
        hbc: u64 = "hbc",
        /// The other arguments.
        reg: Registration = "registration",
    };
    /// `CertSrvRestoreRegisterComplete`.
    RestoreRegisterComplete = Call::RestoreRegisterComplete.op() => Unit {
        /// `hbc` (0 is NULL).
        hbc: u64 = "hbc",
        /// `hrRestoreState`.
        restore_state: HRESULT = "hrRestoreState",
    };
    /// `CertSrvRestoreEnd`.
    RestoreEnd = Call::RestoreEnd.op() => Unit {
        /// `hbc`.
        hbc: u64 = "hbc",
    };
    /// `CertSrvServerControlW`.
    ServerControl = Call::ServerControl.op() => Unit {
        /// `pwszServerName`.
        server: String = "pwszServerName",
        /// `dwControlFlags`.
        control_flags: u32 = "dwControlFlags",
    };

    // Control calls (§7): codes 0x40..=0x5F.

    /// Creates machines from JSON: a `config` machine object, or a whole configuration
    /// with `machines`.
    CreateMachine = 0x40 => Texts {
        /// The JSON text.
        json: String = "json",
    };
    /// Drops a machine: its names are free again, its handles stale.
    DropMachine = 0x41 => Unit {
        /// NetBIOS or DNS name.
        machine: String = "machine",
    };
    /// The NetBIOS names of the machines of this server.
    ListMachines = 0x42 => Texts;
    /// Issues `n` certificates.
    Issue = 0x43 => U32s {
        /// Machine.
        machine: String = "machine",
        /// Count (at most [`MAX_ISSUE`]).
        n: u32 = "n",
    };
    /// Revokes a certificate.
    Revoke = 0x44 => Unit {
        /// Machine.
        machine: String = "machine",
        /// Request id.
        request_id: u32 = "request_id",
    };
    /// Rolls `edb.log` to a numbered generation.
    RollLog = 0x45 => U32 {
        /// Machine.
        machine: String = "machine",
    };
    /// Stops the service cleanly.
    Stop = 0x46 => Unit {
        /// Machine.
        machine: String = "machine",
    };
    /// Stops the service as a crash would.
    Crash = 0x47 => Unit {
        /// Machine.
        machine: String = "machine",
    };
    /// Starts the service: hard recovery of a registered restore, or soft recovery.
    Start = 0x48 => Recovery {
        /// Machine.
        machine: String = "machine",
    };
    /// Deletes the CA's database, log and checkpoint files (service stopped).
    WipeFiles = 0x49 => Unit {
        /// Machine.
        machine: String = "machine",
    };
    /// The host path of a Windows path on the machine.
    HostPath = 0x4A => Text {
        /// Machine.
        machine: String = "machine",
        /// `C:\...` or `\\HOST\C$\...`.
        windows_path: String = "windows_path",
    };
    /// Sets the caller identity.
    SetIdentity = 0x4B => Unit {
        /// Machine.
        machine: String = "machine",
        /// The identity.
        identity: Identity = "identity",
    };
    /// Sets `InterfaceFlags`.
    SetInterfaceFlags = 0x4C => Unit {
        /// Machine.
        machine: String = "machine",
        /// The flags.
        flags: u32 = "flags",
    };
    /// Installs a fault schedule (JSON, as `CERTADM_EMU_FAULTS`).
    SetFaults = 0x4D => Unit {
        /// Machine.
        machine: String = "machine",
        /// The schedule.
        json: String = "json",
    };
    /// The conformance report of the machine (JSON, as in the report file).
    Report = 0x4E => Text {
        /// Machine.
        machine: String = "machine",
    };
    /// A page of the call trace: events `from..`, as JSON lines, at most `max_bytes`
    /// (one event at least).
    Trace = 0x4F => TracePage {
        /// Machine.
        machine: String = "machine",
        /// First event index (0-based).
        from: u64 = "from",
        /// Page size in bytes of text (0 means [`MAX_TRACE_PAGE`]).
        max_bytes: u32 = "max_bytes",
    };
    /// Record count and content digest.
    Records = 0x50 => Records {
        /// Machine.
        machine: String = "machine",
    };
    /// Machine state as JSON (service, sessions, buffers, restore marker, ...).
    State = 0x51 => Text {
        /// Machine.
        machine: String = "machine",
    };
    /// Clears a registered restore.
    ClearRestoreMarker = 0x52 => Unit {
        /// Machine.
        machine: String = "machine",
    };
    /// Stops the server after answering.
    Shutdown = 0x5F => Unit;
}

impl Request {
    /// The certbcli function this request calls; `None` for a control request.
    pub fn call(&self) -> Option<Call> {
        Call::from_op(self.op())
    }

    /// What the request calls: the export name of a certbcli function
    /// (`CertSrvBackupRead`), the name of a control call (`Issue`). Errors name it.
    pub fn name(&self) -> &'static str {
        self.call().map_or_else(|| self.variant_name(), Call::name)
    }
}

/// The control operations: code and name (`CreateMachine`, ...), in code order.
pub fn control_operations() -> impl Iterator<Item = (u16, &'static str)> {
    FIXED_OPS
        .iter()
        .copied()
        .filter(|(code, _)| Call::from_op(*code).is_none())
}

/// Every operation code: the certbcli functions', then the control calls'.
pub fn operations() -> impl Iterator<Item = u16> {
    Call::ALL
        .iter()
        .map(|c| c.op())
        .chain(control_operations().map(|(code, _)| code))
}

// ----- the PE DLL's header ----------------------------------------------------------------

/// The HRESULTs `windows/certadm/certadm.c` returns by itself (the others come from the
/// server's responses).
const C_HRESULTS: [HRESULT; 7] = [
    HRESULT::RPC_S_SERVER_UNAVAILABLE,
    HRESULT::RPC_S_CALL_FAILED,
    HRESULT::E_POINTER,
    HRESULT::E_INVALIDARG,
    HRESULT::E_HANDLE,
    HRESULT::E_OUTOFMEMORY,
    HRESULT::ERROR_NOT_SUPPORTED,
];

/// `BackupGetDatabaseNames` as `BACKUP_GET_DATABASE_NAMES`.
fn upper_snake(name: &str) -> String {
    let mut s = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            s.push('_');
        }
        s.push(c.to_ascii_uppercase());
    }
    s
}

/// The text of `windows/certadm/protocol.h`, the constants of this protocol for the PE
/// `certadm.dll` (C): [`MAGIC`], [`VERSION`], [`MAX_FRAME`], [`MAX_HELLO_FRAME`],
/// [`MAX_READ`], every operation code (`OP_BACKUP_READ`, `OP_CREATE_MACHINE`, ...) and
/// the HRESULTs the DLL returns by itself (`HR_E_POINTER`, ...). The test
/// `generated_files_are_current` keeps the checked-in file equal to it.
pub fn c_header() -> String {
    use std::fmt::Write as _;
    let mut h = String::new();
    let magic: Vec<String> = MAGIC.iter().map(|b| format!("0x{b:02X}")).collect();
    let _ = write!(
        h,
        "/* protocol.h: the constants of the certadm-emu server protocol (docs/PROTOCOL.md)
 * for windows/certadm/certadm.c.
 *
 * GENERATED by certadm_emu::remote::protocol::c_header() from the call table
 * (src/core/call.rs), the request table (src/remote/protocol.rs) and the HRESULT table
 * (src/core/hresult.rs). Do not edit: regenerate with
 *     CERTADM_EMU_BLESS=1 cargo test generated
 * Include it after <windows.h> (for HRESULT). */
#ifndef CERTADM_EMU_PROTOCOL_H
#define CERTADM_EMU_PROTOCOL_H

/* The handshake and the limits. */
#define PROTO_MAGIC_BYTES {{{magic}}} /* \"CADMEMU\\0\" */
#define PROTO_VERSION {VERSION}
#define PROTO_MAX_FRAME {MAX_FRAME}u /* payload bytes of a frame after the handshake */
#define PROTO_MAX_HELLO_FRAME {MAX_HELLO_FRAME}u /* before it */
#define PROTO_MAX_READ {MAX_READ}u /* cbBuffer of one BackupRead request */

/* Operation codes of the certbcli functions. */
",
        magic = magic.join(", "),
    );
    for c in Call::ALL {
        let _ = writeln!(
            h,
            "#define OP_{} 0x{:02X} /* {} */",
            upper_snake(c.short_name()),
            c.op(),
            c.name()
        );
    }
    h.push_str("\n/* Operation codes of the control calls. */\n");
    for (code, name) in control_operations() {
        let _ = writeln!(h, "#define OP_{} 0x{code:02X}", upper_snake(name));
    }
    h.push_str("\n/* The HRESULTs the DLL returns by itself. */\n");
    for hr in C_HRESULTS {
        let name = hr.name().unwrap_or("UNNAMED");
        let _ = writeln!(h, "#define HR_{name} ((HRESULT)0x{:08X}L)", hr.as_u32());
    }
    h.push_str("\n#endif /* CERTADM_EMU_PROTOCOL_H */\n");
    h
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
    r.from.put(w);
    w.u32s(&r.replayed_generations);
    w.u64(r.transactions as u64);
    w.bool(r.torn_tail);
    w.utf16s(&r.ignored);
    // Plain data (numbers and a unit enum): serialising cannot fail.
    let end = r.backup_end.and_then(|b| serde_json::to_string(&b).ok());
    w.opt_utf16(end.as_deref());
    let loss = r
        .data_loss
        .as_ref()
        .and_then(|d| serde_json::to_string(d).ok());
    w.opt_utf16(loss.as_deref());
}

/// An optional JSON member of a response (`what` names it in an error).
fn get_json<T: serde::de::DeserializeOwned>(
    r: &mut Reader<'_>,
    what: &str,
) -> Result<Option<T>, DecodeError> {
    r.opt_utf16(what)?
        .map(|t| serde_json::from_str(&t).map_err(|e| DecodeError(format!("{what}: {e}"))))
        .transpose()
}

fn get_recovery(r: &mut Reader<'_>) -> Result<RecoveryReport, DecodeError> {
    Ok(RecoveryReport {
        hard: r.bool("hard")?,
        from: Position::get(r, ["from.gen", "from.pos"])?,
        replayed_generations: r.u32s("replayed_generations")?,
        transactions: usize::try_from(r.u64("transactions")?)
            .map_err(|_| DecodeError("transactions overflow usize".into()))?,
        torn_tail: r.bool("torn_tail")?,
        ignored: r.utf16s("ignored")?,
        backup_end: get_json(r, "backup_end")?,
        data_loss: get_json(r, "data_loss")?,
    })
}

/// Encodes a response (the frame payload). The out-value of a success must have the
/// shape [`out_kind`] gives for the operation; a mismatch is encoded as is and fails to
/// decode on the other side.
pub fn encode_response(resp: &Response) -> Vec<u8> {
    let mut w = Writer::new();
    let tail = put_response(&mut w, resp);
    w.raw(tail);
    w.into_inner()
}

/// Encodes a response as a frame without copying the data of a read: `head` receives
/// the length prefix and every byte before the data, the data is returned; the frame is
/// `head` followed by the returned slice (empty for every other response).
pub fn encode_response_frame<'a>(resp: &'a Response, head: &mut Vec<u8>) -> &'a [u8] {
    let mut w = Writer::with_buffer(std::mem::take(head));
    w.u32(0);
    let tail = put_response(&mut w, resp);
    let len = (w.len() - 4 + tail.len()) as u32;
    w.patch_u32(0, len);
    *head = w.into_inner();
    tail
}

/// Writes everything but the data of an [`Out::Bytes`], which it returns.
fn put_response<'a>(w: &mut Writer, resp: &'a Response) -> &'a [u8] {
    w.u16(resp.op);
    w.i32(resp.hr.0);
    w.utf16(&resp.message);
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
            Out::Text(s) => w.utf16(s),
            Out::Texts(v) => w.utf16s(v),
            Out::Recovery(r) => put_recovery(w, r),
            Out::TracePage { lines, next, total } => {
                w.utf16(lines);
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
    if code != Call::BackupRead.op() {
        return err(format!(
            "response to operation {code:#06x}, not {}",
            Call::BackupRead
        ));
    }
    let hr = HRESULT(r.i32("hr")?);
    let message = r.utf16("message")?;
    let data = if hr.is_ok() {
        let n = r.u32("data")? as usize;
        Some(r.raw(n, "data")?)
    } else {
        None
    };
    r.finish("response")?;
    Ok(ReadReply { hr, message, data })
}

/// The bytes before the data of a successful response to [`Request::BackupRead`] with
/// no message: operation, HRESULT, an empty message and the data length.
pub const READ_REPLY_HEAD: usize = 14;

/// The data length of a frame of `frame_len` payload bytes that starts with `head`, if it
/// is a successful response to [`Request::BackupRead`] with no message whose data is the
/// rest of the frame: then a reader may put the data straight where it belongs.
/// Otherwise `None` (read the whole frame and decode it with [`decode_read_reply`]).
/// Agrees with [`decode_read_reply`] (checked by the fuzz target `response`).
pub fn read_reply_data_len(head: &[u8; READ_REPLY_HEAD], frame_len: usize) -> Option<usize> {
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let op = u16::from_le_bytes([head[0], head[1]]);
    let hr = HRESULT(word(2) as i32);
    let (message, data) = (word(6), word(10) as usize);
    (op == Call::BackupRead.op()
        && hr.is_ok()
        && message == 0
        && frame_len.checked_sub(READ_REPLY_HEAD) == Some(data))
    .then_some(data)
}

/// Decodes a response (a frame payload).
pub fn decode_response(b: &[u8]) -> Result<Response, DecodeError> {
    let mut r = Reader::new(b);
    let code = r.u16("op")?;
    let Some(kind) = out_kind(code) else {
        return err(format!("unknown operation {code:#06x}"));
    };
    let hr = HRESULT(r.i32("hr")?);
    let message = r.utf16("message")?;
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
            OutKind::Text => Out::Text(r.utf16("text")?),
            OutKind::Texts => Out::Texts(r.utf16s("texts")?),
            OutKind::Recovery => Out::Recovery(get_recovery(&mut r)?),
            OutKind::TracePage => Out::TracePage {
                lines: r.utf16("lines")?,
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
        let b = encode_response(&Response::ok(Call::IsServerOnline.op(), Out::Bool(true)));
        assert_eq!(b, [0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let f = Response::fail(Call::BackupEnd.op(), HRESULT::E_HANDLE, "x");
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
        let mut all = vec![
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
        all.extend(ListKind::ALL.map(|kind| Request::GetList {
            kind,
            hbc: 3,
            track: false,
        }));
        let mut covered: Vec<u16> = all.iter().map(Request::op).collect();
        covered.sort_unstable();
        covered.dedup();
        let mut ops: Vec<u16> = operations().collect();
        ops.sort_unstable();
        assert_eq!(covered, ops, "every operation has a request above");
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
    fn the_table_gives_each_code_at_most_one_row() {
        let ops: Vec<u16> = operations().collect();
        assert_eq!(ops.len(), Call::ALL.len() + 20);
        for code in 0..=u16::MAX {
            let known = ops.contains(&code);
            assert_eq!(rows_for(code), usize::from(known), "{code:#06x}");
            assert_eq!(out_kind(code).is_some(), known, "{code:#06x}");
        }
        for (code, name) in control_operations() {
            assert!((0x40..=0x5F).contains(&code), "{name}: {code:#06x}");
        }
    }

    #[test]
    fn requests_know_their_call_and_name() {
        let list = Request::GetList {
            kind: ListKind::BackupLogs,
            hbc: 1,
            track: false,
        };
        assert_eq!(list.op(), Call::BackupGetBackupLogs.op());
        assert_eq!(list.call(), Some(Call::BackupGetBackupLogs));
        assert_eq!(list.name(), Call::BackupGetBackupLogs.name());
        let reg = Request::RestoreRegister {
            hbc: 0,
            through_file: true,
            reg: Registration::default(),
        };
        assert_eq!(reg.call(), Some(Call::RestoreRegisterThroughFile));
        let issue = Request::Issue {
            machine: "CA".into(),
            n: 1,
        };
        assert_eq!(
            (issue.op(), issue.call(), issue.name()),
            (0x43, None, "Issue")
        );
        assert_eq!(Request::Shutdown.op(), 0x5F);
        assert_eq!(Request::Shutdown.name(), "Shutdown");
    }

    #[test]
    fn decode_errors_name_the_wire_field() {
        let mut b = encode_request(&Request::BackupRead { hbc: 1, cb: 2 });
        b.truncate(12);
        assert_eq!(
            decode_request(&b).unwrap_err().to_string(),
            "malformed message: cbBuffer: needs 4 bytes at offset 10, 2 left"
        );
        assert_eq!(
            decode_request(&[0x3F, 0]).unwrap_err().0,
            "unknown operation 0x003f"
        );
        let mut b = encode_request(&Request::BackupEnd { hbc: 1 });
        b.push(0);
        assert_eq!(
            decode_request(&b).unwrap_err().0,
            "request: 1 trailing byte(s) after the message"
        );
    }

    /// A file generated from the tables: compared with its checked-in copy, which
    /// `CERTADM_EMU_BLESS=1` rewrites.
    fn check_generated(path: &str, want: &str) {
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let have = std::fs::read_to_string(&full).unwrap_or_default();
        if have == want {
            return;
        }
        if std::env::var("CERTADM_EMU_BLESS").as_deref() == Ok("1") {
            std::fs::write(&full, want).unwrap_or_else(|e| panic!("writing {path}: {e}"));
            eprintln!("rewrote {path}");
            return;
        }
        panic!(
            "{path} is not what the tables generate; regenerate it with\n    \
             CERTADM_EMU_BLESS=1 cargo test generated\nand commit the result"
        );
    }

    #[test]
    fn generated_files_are_current() {
        check_generated("windows/certadm/protocol.h", &c_header());
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
    fn a_metered_frame_is_dropped_when_growth_is_refused() {
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        write_frame(&mut out, &big).unwrap();
        write_frame(&mut out, b"next").unwrap();
        // Granted: the whole frame, and the grants add up to what lies beyond `free`.
        let mut r = &out[..];
        let mut buf = Vec::new();
        let mut granted = 0;
        let got = read_frame_metered(&mut r, MAX_FRAME, &mut buf, 1000, |n| {
            granted += n;
            true
        });
        assert_eq!(got.unwrap(), FrameRead::Frame);
        assert_eq!(buf, big);
        assert_eq!(granted, big.len() - 1000);
        // Refused past `free`: dropped, its first bytes kept, the stream still in step.
        let mut r = &out[..];
        let got = read_frame_metered(&mut r, MAX_FRAME, &mut buf, 1000, |_| false);
        assert_eq!(got.unwrap(), FrameRead::Dropped { len: 200_000 });
        assert!(buf.len() >= 2 && big.starts_with(&buf), "{}", buf.len());
        assert_eq!(read_frame(&mut r, 16).unwrap(), Some(b"next".to_vec()));
        // A frame within `free` never asks.
        let mut r = &out[200_004..];
        let got = read_frame_metered(&mut r, MAX_FRAME, &mut buf, 1000, |_| panic!("asked"));
        assert_eq!(got.unwrap(), FrameRead::Frame);
        assert_eq!(buf, b"next");
        // Dropped, then truncated: the end of the stream inside the frame is an error.
        let mut r = &out[..100_000];
        let got = read_frame_metered(&mut r, MAX_FRAME, &mut buf, 1000, |_| false);
        assert!(matches!(got, Err(FrameError::Truncated)), "{got:?}");
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

//! The C control API (`include/certemu.h`): create, drive and inspect an emulated CA
//! from C, C++, Python ctypes or any other FFI, next to the 18 certbcli exports.
//!
//! Conventions, the same as the certbcli exports:
//!
//! * Every function returns an `HRESULT` (`i32`); every body runs inside the ABI
//!   boundary, so a panic becomes `E_UNEXPECTED` and never unwinds into C.
//! * Pointer arguments are checked for NULL first (`E_POINTER`); out-parameters are set
//!   to a defined value (NULL / 0) on entry and overwritten only on success.
//! * A `certemu_ca *` is the address of the CA's heap object. It is looked up in a
//!   registry of live CAs before each use and never dereferenced by itself, so a NULL,
//!   destroyed or forged pointer gets `E_HANDLE`, not a crash. (A destroyed pointer
//!   whose address the allocator later hands to a new CA reaches that new CA: the usual
//!   ABA caveat of address-based handles.)
//! * Strings returned through `char **` are UTF-8, NUL-terminated, and owned by the
//!   caller until `certemu_free_string`, which ignores (and reports) pointers it never
//!   returned or already freed. Strings returned through `const char **` are owned by
//!   the CA and live until `certemu_ca_destroy`.
//! * The message of the last failure on the calling thread (certbcli or certemu) is
//!   available through `certemu_last_error`.
//! * In server mode (`CERTADM_EMU_SERVER`, see [`super::forward`]) a `certemu_ca` is a
//!   machine of the server: create, destroy and every control function are control calls
//!   of the protocol on the calling thread's connection, and the report is built from the
//!   server's `State` and `Report` with the same fields.
#![allow(non_camel_case_types)]

use super::ptr::{require, write};
use super::{boundary, forward};
use crate::ca::record::Status;
use crate::ca::recovery::RecoveryReport;
use crate::ca::{BackupMark, ServiceState};
use crate::config::{CaSection, MachineConfig, Size};
use crate::control::EmulatedCa;
use crate::core::{Error, Result, HRESULT};
use crate::machine::Identity;
use crate::remote::client::{RemoteClient, RemoteError};
use core::ffi::{c_char, c_int};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};

/// `S_FALSE`: success, nothing done (NULL passed to a destroy or free function, no last error).
const S_FALSE: i32 = 1;

/// Most certificates a CA may be created with through the C API.
pub const CERTEMU_MAX_RECORDS: u32 = 1_000_000;
/// Most certificates one `certemu_ca_issue` call may issue.
pub const CERTEMU_MAX_ISSUE: u32 = 1_000_000;

/// Options of `certemu_ca_create` (`certemu_options` in `certemu.h`).
///
/// Fill it with [`certemu_options_init`], then change what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct certemu_options {
    /// `sizeof(certemu_options)`: set by `certemu_options_init`; other values are refused.
    pub size: u32,
    /// Certificates in the database at install time (at most [`CERTEMU_MAX_RECORDS`]).
    pub records: u32,
    /// Seed of all generated content.
    pub seed: u64,
    /// The CA's common name, UTF-8; NULL for the default (`Emu Issuing CA`).
    pub ca_name: *const c_char,
    /// Size of the virtual `.edb` in bytes; 0 for the real size of its content.
    pub edb_size: u64,
    /// Transactions per log generation (at least 1).
    pub log_capacity: u32,
    /// Reserved, must be 0.
    pub reserved: u32,
}

// `certemu.h` declares the same layout; `tests/c/header_check.c` pins it to 40 bytes too.
const _: () = assert!(std::mem::size_of::<certemu_options>() == 40);

/// The opaque CA of the C API (`certemu_ca` in `certemu.h`).
pub struct certemu_ca {
    ca: Inner,
    name: CString,
    name_w: Vec<u16>,
    last_start: Mutex<Option<(HRESULT, Option<RecoveryReport>)>>,
}

/// Where the CA lives: in this process, or on the certadm-emu server of
/// `CERTADM_EMU_SERVER` (server mode, see [`super::forward`]).
enum Inner {
    Local(EmulatedCa),
    Remote { machine: String },
}

/// Runs a control call on the server (through the calling thread's connection).
fn remote<T>(
    call: &'static str,
    f: impl FnOnce(&RemoteClient) -> std::result::Result<T, RemoteError>,
) -> Result<T> {
    match forward::client(call)? {
        Some(c) => f(&c).map_err(|e| forward::remote_error(call, e)),
        None => Err(Error::invalid_arg(
            call,
            "this CA lives on a certadm-emu server, but CERTADM_EMU_SERVER is not set",
        )),
    }
}

impl certemu_ca {
    fn issue(&self, call: &'static str, n: u32) -> Result<()> {
        match &self.ca {
            Inner::Local(ca) => ok_or_unit(ca.issue(n)),
            Inner::Remote { machine } => remote(call, |c| c.issue(machine, n)).map(drop),
        }
    }
    fn revoke(&self, call: &'static str, request_id: u32) -> Result<()> {
        match &self.ca {
            Inner::Local(ca) => ca.revoke(request_id),
            Inner::Remote { machine } => remote(call, |c| c.revoke(machine, request_id)),
        }
    }
    fn stop(&self, call: &'static str) -> Result<()> {
        match &self.ca {
            Inner::Local(ca) => ca.stop(),
            Inner::Remote { machine } => remote(call, |c| c.stop(machine)),
        }
    }
    fn crash(&self, call: &'static str) -> Result<()> {
        match &self.ca {
            Inner::Local(ca) => {
                ca.crash();
                Ok(())
            }
            Inner::Remote { machine } => remote(call, |c| c.crash(machine)),
        }
    }
    fn start(&self, call: &'static str) -> Result<RecoveryReport> {
        match &self.ca {
            Inner::Local(ca) => ca.start(),
            Inner::Remote { machine } => remote(call, |c| c.start(machine)),
        }
    }
    fn wipe_files(&self, call: &'static str) -> Result<()> {
        match &self.ca {
            Inner::Local(ca) => ca.wipe_files(),
            Inner::Remote { machine } => remote(call, |c| c.wipe_files(machine)),
        }
    }
    fn host_path(&self, call: &'static str, windows_path: &str) -> Result<PathBuf> {
        match &self.ca {
            Inner::Local(ca) => ca.host_path(windows_path),
            Inner::Remote { machine } => remote(call, |c| c.host_path(machine, windows_path)),
        }
    }
    fn set_identity(&self, call: &'static str, id: Identity) -> Result<()> {
        match &self.ca {
            Inner::Local(ca) => {
                ca.set_identity(id);
                Ok(())
            }
            Inner::Remote { machine } => remote(call, |c| c.set_identity(machine, id)),
        }
    }
    fn set_interface_flags(&self, call: &'static str, flags: u32) -> Result<()> {
        match &self.ca {
            Inner::Local(ca) => {
                ca.set_interface_flags(flags);
                Ok(())
            }
            Inner::Remote { machine } => remote(call, |c| c.set_interface_flags(machine, flags)),
        }
    }
    fn set_faults(
        &self,
        call: &'static str,
        schedule: crate::api::faults::FaultSchedule,
        text: &str,
    ) -> Result<()> {
        match &self.ca {
            Inner::Local(ca) => ca.set_faults(schedule),
            Inner::Remote { machine } => remote(call, |c| c.set_faults_json(machine, text)),
        }
    }
    fn trace_jsonl(&self, call: &'static str) -> Result<String> {
        match &self.ca {
            Inner::Local(ca) => Ok(ca.trace().iter().map(|e| e.to_json() + "\n").collect()),
            Inner::Remote { machine } => remote(call, |c| c.trace_json_lines(machine)),
        }
    }
}

static LIVE: LazyLock<Mutex<HashMap<usize, Arc<certemu_ca>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static STRINGS: LazyLock<Mutex<HashSet<usize>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

fn lookup(call: &'static str, p: *const certemu_ca) -> Result<Arc<certemu_ca>> {
    if p.is_null() {
        return Err(Error::InvalidHandle {
            call,
            handle: 0,
            why: "the certemu_ca pointer is NULL".into(),
        });
    }
    LIVE.lock()
        .get(&(p as usize))
        .cloned()
        .ok_or_else(|| Error::InvalidHandle {
            call,
            handle: p as usize,
            why: "the certemu_ca pointer is not a live CA (destroyed, or never returned by certemu_ca_create)".into(),
        })
}

/// Hands a string to C: tracked until `certemu_free_string`.
fn give_string(s: &str) -> *mut c_char {
    let c = CString::new(s.replace('\0', "\u{FFFD}")).expect("NULs replaced");
    let p = c.into_raw();
    STRINGS.lock().insert(p as usize);
    p
}

/// Reads a UTF-8 C string.
///
/// # Safety
/// `p` is non-NULL and NUL-terminated.
unsafe fn read_utf8(call: &'static str, param: &'static str, p: *const c_char) -> Result<String> {
    // SAFETY: non-NULL and NUL-terminated per contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(str::to_string)
        .map_err(|_| Error::invalid_arg(call, format!("{param} is not valid UTF-8")))
}

fn ok_or_unit<T>(r: Result<T>) -> Result<()> {
    r.map(drop)
}

/// Fills `*opts` with the defaults: 16 records, seed 1, the default CA name, the real
/// `.edb` size and 64 transactions per log generation.
///
/// # Safety
/// `opts` is NULL or valid for a write of `certemu_options`.
#[no_mangle]
pub unsafe extern "C" fn certemu_options_init(opts: *mut certemu_options) -> i32 {
    const CALL: &str = "certemu_options_init";
    boundary(CALL, || {
        require(CALL, "opts", opts)?;
        let d = crate::ca::CaConfig::default();
        let v = certemu_options {
            size: std::mem::size_of::<certemu_options>() as u32,
            records: d.records,
            seed: d.seed,
            ca_name: std::ptr::null(),
            edb_size: 0,
            log_capacity: d.log_capacity,
            reserved: 0,
        };
        // SAFETY: non-NULL, writable per contract.
        unsafe { write(opts, v) };
        Ok(())
    })
}

/// Creates a machine with a running CA and registers its server name in this process.
///
/// `server_name` (UTF-8) is the NetBIOS name clients pass to the certbcli functions;
/// NULL picks a name unique in the process. `opts` NULL means the defaults.
///
/// # Safety
/// `server_name` is NULL or NUL-terminated; `opts` is NULL or points to a
/// `certemu_options`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_create(
    server_name: *const c_char,
    opts: *const certemu_options,
    out: *mut *mut certemu_ca,
) -> i32 {
    const CALL: &str = "certemu_ca_create";
    boundary(CALL, || {
        // SAFETY: NULL or writable per contract.
        unsafe { write(out, std::ptr::null_mut()) };
        require(CALL, "out", out)?;
        let mut b = EmulatedCa::builder();
        let mut given_name = None;
        let mut given_opts = None;
        if !server_name.is_null() {
            // SAFETY: non-NULL, NUL-terminated per contract.
            let name = unsafe { read_utf8(CALL, "server_name", server_name) }?;
            b = b.server_name(&name);
            given_name = Some(name);
        }
        if !opts.is_null() {
            // SAFETY: non-NULL; the size field comes first and is read before the rest.
            let size = unsafe { std::ptr::addr_of!((*opts).size).read_unaligned() };
            if size as usize != std::mem::size_of::<certemu_options>() {
                return Err(Error::invalid_arg(
                    CALL,
                    format!(
                        "opts->size is {size}, expected sizeof(certemu_options) = {}; fill the options with certemu_options_init",
                        std::mem::size_of::<certemu_options>()
                    ),
                ));
            }
            // SAFETY: non-NULL and a full certemu_options per contract (size checked).
            let o = unsafe { opts.read_unaligned() };
            if o.reserved != 0 {
                return Err(Error::invalid_arg(CALL, "opts->reserved must be 0"));
            }
            if o.records > CERTEMU_MAX_RECORDS {
                return Err(Error::invalid_arg(
                    CALL,
                    format!("opts->records {} exceeds {CERTEMU_MAX_RECORDS}", o.records),
                ));
            }
            if o.log_capacity == 0 {
                return Err(Error::invalid_arg(
                    CALL,
                    "opts->log_capacity must be at least 1",
                ));
            }
            b = b
                .records(o.records)
                .seed(o.seed)
                .log_capacity(o.log_capacity);
            if o.edb_size != 0 {
                b = b.edb_size(o.edb_size);
            }
            let mut ca_name = None;
            if !o.ca_name.is_null() {
                // SAFETY: non-NULL, NUL-terminated per contract.
                let n = unsafe { read_utf8(CALL, "opts->ca_name", o.ca_name) }?;
                b = b.ca_name(&n);
                ca_name = Some(n);
            }
            given_opts = Some((o, ca_name));
        }
        let (ca, server) = if forward::server_address().is_some() {
            let machine = remote_machine(given_name, given_opts);
            let json = serde_json::to_string(&machine)
                .map_err(|e| Error::invalid_arg(CALL, e.to_string()))?;
            let mut names = remote(CALL, |c| c.create_machine_json(&json))?;
            let server = names.pop().unwrap_or(machine.name);
            (
                Inner::Remote {
                    machine: server.clone(),
                },
                server,
            )
        } else {
            let ca = b.build()?;
            let server = ca.server_name().to_string();
            (Inner::Local(ca), server)
        };
        let name = CString::new(server.as_str())
            .map_err(|_| Error::invalid_arg(CALL, "server_name contains a NUL"))?;
        let name_w = server.encode_utf16().chain([0]).collect();
        let native = Arc::new(certemu_ca {
            ca,
            name,
            name_w,
            last_start: Mutex::new(None),
        });
        let p = Arc::as_ptr(&native) as *mut certemu_ca;
        LIVE.lock().insert(p as usize, native);
        // SAFETY: checked non-NULL.
        unsafe { write(out, p) };
        Ok(())
    })
}

/// The machine `certemu_ca_create` asks the server for in server mode: the same CA as
/// in process (unset options keep the defaults of both).
fn remote_machine(
    name: Option<String>,
    opts: Option<(certemu_options, Option<String>)>,
) -> MachineConfig {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let name = name.unwrap_or_else(|| {
        format!(
            "EMU{:X}R{}",
            std::process::id() & 0xFFFF,
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    });
    let mut ca = CaSection::default();
    if let Some((o, ca_name)) = opts {
        ca.records = Some(o.records);
        ca.seed = Some(o.seed);
        ca.log_capacity = Some(o.log_capacity);
        ca.edb_size = (o.edb_size != 0).then_some(Size::Bytes(o.edb_size));
        ca.name = ca_name;
    }
    MachineConfig {
        name,
        dns: None,
        root: None,
        ca: Some(ca),
        identity: None,
        faults: None,
        strict: false,
    }
}

/// Destroys a CA: unregisters its server name, removes its disk; handles of its
/// sessions turn stale (`E_HANDLE`). NULL is a no-op (`S_FALSE`).
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_destroy(ca: *mut certemu_ca) -> i32 {
    const CALL: &str = "certemu_ca_destroy";
    if ca.is_null() {
        return S_FALSE;
    }
    boundary(CALL, || {
        let removed = LIVE.lock().remove(&(ca as usize));
        match removed {
            Some(native) => match &native.ca {
                Inner::Local(_) => {
                    drop(native);
                    Ok(())
                }
                Inner::Remote { machine } => remote(CALL, |c| c.drop_machine(machine)),
            },
            None => Err(Error::InvalidHandle {
                call: CALL,
                handle: ca as usize,
                why: "the certemu_ca pointer is not a live CA (destroyed twice, or never returned by certemu_ca_create)".into(),
            }),
        }
    })
}

/// The CA's server name (UTF-8), owned by the CA until `certemu_ca_destroy`.
///
/// # Safety
/// `name` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_server_name(
    ca: *const certemu_ca,
    name: *mut *const c_char,
) -> i32 {
    const CALL: &str = "certemu_ca_server_name";
    boundary(CALL, || {
        // SAFETY: NULL or writable per contract.
        unsafe { write(name, std::ptr::null()) };
        require(CALL, "name", name)?;
        let n = lookup(CALL, ca)?;
        // SAFETY: checked non-NULL; the CString lives in the CA, which outlives this
        // pointer until certemu_ca_destroy (the registry holds it).
        unsafe { write(name, n.name.as_ptr()) };
        Ok(())
    })
}

/// The CA's server name as a NUL-terminated UTF-16 string (what the certbcli functions
/// take), owned by the CA until `certemu_ca_destroy`.
///
/// # Safety
/// `name` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_server_name_w(
    ca: *const certemu_ca,
    name: *mut *const u16,
) -> i32 {
    const CALL: &str = "certemu_ca_server_name_w";
    boundary(CALL, || {
        // SAFETY: NULL or writable per contract.
        unsafe { write(name, std::ptr::null()) };
        require(CALL, "name", name)?;
        let n = lookup(CALL, ca)?;
        // SAFETY: checked non-NULL; the buffer lives as long as the CA.
        unsafe { write(name, n.name_w.as_ptr()) };
        Ok(())
    })
}

/// Issues `n` certificates (logged transactions). The CA must be running.
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_issue(ca: *mut certemu_ca, n: u32) -> i32 {
    const CALL: &str = "certemu_ca_issue";
    boundary(CALL, || {
        let c = lookup(CALL, ca)?;
        if n > CERTEMU_MAX_ISSUE {
            return Err(Error::invalid_arg(
                CALL,
                format!("n {n} exceeds {CERTEMU_MAX_ISSUE} per call"),
            ));
        }
        c.issue(CALL, n)
    })
}

/// Revokes the certificate with this request id (ids start at 1).
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_revoke(ca: *mut certemu_ca, request_id: u32) -> i32 {
    const CALL: &str = "certemu_ca_revoke";
    boundary(CALL, || lookup(CALL, ca)?.revoke(CALL, request_id))
}

/// Stops the service cleanly (as `net stop certsvc`); open backup sessions are disconnected.
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_stop(ca: *mut certemu_ca) -> i32 {
    const CALL: &str = "certemu_ca_stop";
    boundary(CALL, || lookup(CALL, ca)?.stop(CALL))
}

/// Stops the service as a crash would: no checkpoint flush; the next start replays logs.
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_crash(ca: *mut certemu_ca) -> i32 {
    const CALL: &str = "certemu_ca_crash";
    boundary(CALL, || lookup(CALL, ca)?.crash(CALL))
}

/// Starts the service: hard recovery of a registered restore, or soft recovery.
/// Returns the recovery's HRESULT (an ESE code if it refused the files); the
/// outcome also appears in `certemu_ca_report` as `last_start`.
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_start(ca: *mut certemu_ca) -> i32 {
    const CALL: &str = "certemu_ca_start";
    boundary(CALL, || {
        let c = lookup(CALL, ca)?;
        let r = c.start(CALL);
        *c.last_start.lock() = Some(match &r {
            Ok(rep) => (HRESULT::S_OK, Some(rep.clone())),
            Err(e) => (e.hresult(), None),
        });
        ok_or_unit(r)
    })
}

/// Deletes every file in the CA's database, log and checkpoint directories (the
/// service must be stopped): the state a restore starts from after a disk loss.
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_wipe_files(ca: *mut certemu_ca) -> i32 {
    const CALL: &str = "certemu_ca_wipe_files";
    boundary(CALL, || lookup(CALL, ca)?.wipe_files(CALL))
}

/// The host path of a Windows path on the CA's machine (`C:\...` or `\\host\C$\...`),
/// contained in the machine's root. Free `*out` with `certemu_free_string`.
///
/// # Safety
/// `windows_path` is NULL or NUL-terminated; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_host_path(
    ca: *const certemu_ca,
    windows_path: *const c_char,
    out: *mut *mut c_char,
) -> i32 {
    const CALL: &str = "certemu_ca_host_path";
    boundary(CALL, || {
        // SAFETY: NULL or writable per contract.
        unsafe { write(out, std::ptr::null_mut()) };
        require(CALL, "out", out)?;
        require(CALL, "windows_path", windows_path)?;
        let c = lookup(CALL, ca)?;
        // SAFETY: non-NULL, NUL-terminated per contract.
        let wp = unsafe { read_utf8(CALL, "windows_path", windows_path) }?;
        let host = c.host_path(CALL, &wp)?;
        let s = host.to_str().ok_or_else(|| {
            Error::invalid_arg(
                CALL,
                format!("host path {} is not valid UTF-8", host.display()),
            )
        })?;
        // SAFETY: checked non-NULL.
        unsafe { write(out, give_string(s)) };
        Ok(())
    })
}

/// Sets the caller identity: each argument is a BOOL (non-zero = TRUE).
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_set_identity(
    ca: *mut certemu_ca,
    backup_privilege: c_int,
    restore_privilege: c_int,
    local_admin: c_int,
    remote: c_int,
) -> i32 {
    const CALL: &str = "certemu_ca_set_identity";
    boundary(CALL, || {
        lookup(CALL, ca)?.set_identity(
            CALL,
            Identity {
                backup_privilege: backup_privilege != 0,
                restore_privilege: restore_privilege != 0,
                local_admin: local_admin != 0,
                remote: remote != 0,
            },
        )
    })
}

/// Sets the CA's `InterfaceFlags` (`IF_*` of certsrv.h; default `IF_DEFAULT` = 0x641).
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_set_interface_flags(ca: *mut certemu_ca, flags: u32) -> i32 {
    const CALL: &str = "certemu_ca_set_interface_flags";
    boundary(CALL, || lookup(CALL, ca)?.set_interface_flags(CALL, flags))
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_mark(out: &mut String, m: Option<BackupMark>) {
    match m {
        None => out.push_str("null"),
        Some(m) => {
            let _ = write!(out, "{{\"high_gen\":{},\"at\":{}}}", m.high_gen, m.at);
        }
    }
}

fn json_u32s(out: &mut String, v: &[u32]) {
    out.push('[');
    for (i, g) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{g}");
    }
    out.push(']');
}

/// What `certemu_ca_report` shows, from the CA in process or from the server.
struct ReportData {
    server_name: String,
    dns_name: String,
    ca_name: String,
    root: String,
    service: String,
    record_count: u64,
    revoked_count: u64,
    last_request_id: u64,
    sessions_open: u64,
    backup_in_progress: bool,
    outstanding_buffers: u64,
    log_generations: Vec<u32>,
    current: (u64, u64),
    checkpoint: (u64, u64),
    last_full_backup: Option<BackupMark>,
    last_incremental_backup: Option<BackupMark>,
    last_recovery: Option<i64>,
    /// pending, gen_low, gen_high, through_file, restore_map_count, status.
    restore_marker: Option<(bool, u32, u32, bool, usize, Option<i32>)>,
    interface_flags: u32,
    identity: Identity,
    /// The conformance report (JSON text).
    conformance: String,
}

fn local_report_data(ca: &EmulatedCa) -> ReportData {
    let records = ca.records();
    let cur = ca.current_position();
    let chk = ca.checkpoint();
    ReportData {
        server_name: ca.server_name().to_string(),
        dns_name: ca.dns_name().to_string(),
        ca_name: ca.ca_name(),
        root: ca.machine().root().to_string_lossy().into_owned(),
        service: match ca.service() {
            ServiceState::Running => "running",
            ServiceState::Stopped => "stopped",
            ServiceState::Suspended => "suspended",
        }
        .to_string(),
        record_count: records.len() as u64,
        revoked_count: records
            .iter()
            .filter(|r| matches!(r.status, Status::Revoked { .. }))
            .count() as u64,
        last_request_id: records.last().map_or(0, |r| r.request_id) as u64,
        sessions_open: ca.sessions_open() as u64,
        backup_in_progress: ca.backup_in_progress(),
        outstanding_buffers: ca.outstanding_buffers() as u64,
        log_generations: ca.log_generations(),
        current: (cur.gen as u64, cur.pos as u64),
        checkpoint: (chk.gen as u64, chk.pos as u64),
        last_full_backup: ca.last_full_backup(),
        last_incremental_backup: ca.last_incremental_backup(),
        last_recovery: ca.last_recovery(),
        restore_marker: ca.restore_marker().map(|m| {
            (
                m.pending,
                m.gen_low,
                m.gen_high,
                m.through_file,
                m.restore_map.len(),
                m.status.map(|h| h.0),
            )
        }),
        interface_flags: ca.interface_flags(),
        identity: ca.identity(),
        conformance: crate::config::machine_report(ca).to_string(),
    }
}

/// The same data from the server: its State and Report control calls.
fn remote_report_data(call: &'static str, machine: &str) -> Result<ReportData> {
    let (state, conformance) = remote(call, |c| Ok((c.state(machine)?, c.report_json(machine)?)))?;
    let bad = |what: &str| {
        Error::invalid_arg(
            call,
            format!("the server's state of {machine:?} has no valid {what:?}"),
        )
    };
    let text =
        |k: &str| -> Result<String> { state[k].as_str().map(str::to_string).ok_or_else(|| bad(k)) };
    let num = |v: &serde_json::Value, k: &str| -> Result<u64> { v.as_u64().ok_or_else(|| bad(k)) };
    let flag =
        |v: &serde_json::Value, k: &str| -> Result<bool> { v.as_bool().ok_or_else(|| bad(k)) };
    let pos = |k: &str| -> Result<(u64, u64)> {
        Ok((num(&state[k]["gen"], k)?, num(&state[k]["pos"], k)?))
    };
    let mark = |k: &str| -> Result<Option<BackupMark>> {
        serde_json::from_value(state[k].clone()).map_err(|_| bad(k))
    };
    let id = &state["identity"];
    let restore_marker = match &state["restore_marker"] {
        serde_json::Value::Null => None,
        m => Some((
            flag(&m["pending"], "pending")?,
            num(&m["gen_low"], "gen_low")? as u32,
            num(&m["gen_high"], "gen_high")? as u32,
            flag(&m["through_file"], "through_file")?,
            m["restore_map"].as_array().map_or(0, Vec::len),
            match m["status"].as_str() {
                None => None,
                Some(h) => Some(
                    u32::from_str_radix(h.trim_start_matches("0x").trim_start_matches("0X"), 16)
                        .map_err(|_| bad("status"))? as i32,
                ),
            },
        )),
    };
    Ok(ReportData {
        server_name: text("server")?,
        dns_name: text("dns")?,
        ca_name: text("ca")?,
        root: text("root")?,
        service: text("service")?.to_lowercase(),
        record_count: num(&state["records"], "records")?,
        revoked_count: num(&state["revoked_count"], "revoked_count")?,
        last_request_id: num(&state["last_request_id"], "last_request_id")?,
        sessions_open: num(&state["sessions_open"], "sessions_open")?,
        backup_in_progress: flag(&state["backup_in_progress"], "backup_in_progress")?,
        outstanding_buffers: num(&state["outstanding_buffers"], "outstanding_buffers")?,
        log_generations: serde_json::from_value(state["log_generations"].clone())
            .map_err(|_| bad("log_generations"))?,
        current: pos("current")?,
        checkpoint: pos("checkpoint")?,
        last_full_backup: mark("last_full_backup")?,
        last_incremental_backup: mark("last_incremental_backup")?,
        last_recovery: state["last_recovery"].as_i64(),
        restore_marker,
        interface_flags: num(&state["interface_flags"], "interface_flags")? as u32,
        identity: Identity {
            backup_privilege: flag(&id["backup_privilege"], "identity")?,
            restore_privilege: flag(&id["restore_privilege"], "identity")?,
            local_admin: flag(&id["local_admin"], "identity")?,
            remote: flag(&id["remote"], "identity")?,
        },
        conformance,
    })
}

fn report(call: &'static str, c: &certemu_ca) -> Result<String> {
    let d = match &c.ca {
        Inner::Local(ca) => local_report_data(ca),
        Inner::Remote { machine } => remote_report_data(call, machine)?,
    };
    let mut o = String::with_capacity(1024);
    o.push('{');
    o.push_str("\"server_name\":");
    json_str(&mut o, &d.server_name);
    o.push_str(",\"dns_name\":");
    json_str(&mut o, &d.dns_name);
    o.push_str(",\"ca_name\":");
    json_str(&mut o, &d.ca_name);
    o.push_str(",\"root\":");
    json_str(&mut o, &d.root);
    o.push_str(",\"service\":");
    json_str(&mut o, &d.service);
    let _ = write!(
        o,
        ",\"record_count\":{},\"revoked_count\":{},\"last_request_id\":{}",
        d.record_count, d.revoked_count, d.last_request_id
    );
    let _ = write!(
        o,
        ",\"sessions_open\":{},\"backup_in_progress\":{},\"outstanding_buffers\":{}",
        d.sessions_open, d.backup_in_progress, d.outstanding_buffers
    );
    o.push_str(",\"log_generations\":");
    json_u32s(&mut o, &d.log_generations);
    let _ = write!(
        o,
        ",\"current_generation\":{},\"current_position\":{},\"checkpoint_generation\":{},\"checkpoint_position\":{}",
        d.current.0, d.current.1, d.checkpoint.0, d.checkpoint.1
    );
    o.push_str(",\"last_full_backup\":");
    json_mark(&mut o, d.last_full_backup);
    o.push_str(",\"last_incremental_backup\":");
    json_mark(&mut o, d.last_incremental_backup);
    o.push_str(",\"last_recovery\":");
    match d.last_recovery {
        Some(t) => {
            let _ = write!(o, "{t}");
        }
        None => o.push_str("null"),
    }
    let _ = write!(
        o,
        ",\"restore_marker_present\":{}",
        d.restore_marker.is_some()
    );
    o.push_str(",\"restore_marker\":");
    match d.restore_marker {
        None => o.push_str("null"),
        Some((pending, gen_low, gen_high, through_file, map_count, status)) => {
            let _ = write!(
                o,
                "{{\"pending\":{pending},\"gen_low\":{gen_low},\"gen_high\":{gen_high},\"through_file\":{through_file},\"restore_map_count\":{map_count},\"status\":"
            );
            match status {
                Some(hr) => {
                    let _ = write!(o, "{hr}");
                }
                None => o.push_str("null"),
            }
            o.push('}');
        }
    }
    let id = d.identity;
    let _ = write!(
        o,
        ",\"interface_flags\":{},\"identity\":{{\"backup_privilege\":{},\"restore_privilege\":{},\"local_admin\":{},\"remote\":{}}}",
        d.interface_flags,
        id.backup_privilege,
        id.restore_privilege,
        id.local_admin,
        id.remote
    );
    o.push_str(",\"last_start\":");
    match &*c.last_start.lock() {
        None => o.push_str("null"),
        Some((hr, rep)) => {
            let _ = write!(o, "{{\"hr\":{}", hr.0);
            if let Some(r) = rep {
                let _ = write!(o, ",\"hard\":{},\"replayed_generations\":", r.hard);
                json_u32s(&mut o, &r.replayed_generations);
                let _ = write!(
                    o,
                    ",\"transactions\":{},\"torn_tail\":{}",
                    r.transactions, r.torn_tail
                );
            }
            o.push('}');
        }
    }
    o.push_str(",\"conformance\":");
    o.push_str(&d.conformance);
    o.push('}');
    Ok(o)
}

/// Installs a fault schedule (JSON, see `certadm_emu::api::faults`), replacing any other.
/// A schedule that does not parse gets `E_INVALIDARG` and changes nothing.
///
/// # Safety
/// `json` is NULL or a NUL-terminated UTF-8 string.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_set_faults(ca: *mut certemu_ca, json: *const c_char) -> i32 {
    const CALL: &str = "certemu_ca_set_faults";
    boundary(CALL, || {
        require(CALL, "json", json)?;
        let c = lookup(CALL, ca)?;
        // SAFETY: non-NULL and NUL-terminated per contract.
        let text = unsafe { CStr::from_ptr(json) }
            .to_str()
            .map_err(|_| Error::invalid_arg(CALL, "json is not UTF-8"))?;
        let schedule = crate::api::faults::FaultSchedule::from_json(text)
            .map_err(|e| Error::invalid_arg(CALL, e))?;
        c.set_faults(CALL, schedule, text)
    })
}

/// The CA's call trace as JSON lines (one event per line, the `CERTADM_EMU_TRACE` format).
/// Free `*jsonl` with `certemu_free_string`.
///
/// # Safety
/// `jsonl` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_trace(ca: *const certemu_ca, jsonl: *mut *mut c_char) -> i32 {
    const CALL: &str = "certemu_ca_trace";
    boundary(CALL, || {
        // SAFETY: NULL or writable per contract.
        unsafe { write(jsonl, std::ptr::null_mut()) };
        require(CALL, "jsonl", jsonl)?;
        let c = lookup(CALL, ca)?;
        let text = c.trace_jsonl(CALL)?;
        // SAFETY: checked non-NULL.
        unsafe { write(jsonl, give_string(&text)) };
        Ok(())
    })
}

/// A JSON object describing the CA: `service` (`"running"`, `"stopped"`,
/// `"suspended"`), `record_count`, `sessions_open`, `outstanding_buffers`,
/// `log_generations`, `last_full_backup`, `last_incremental_backup`,
/// `restore_marker_present`, `conformance` (violations with rule, call, detail and fix;
/// leftovers; unfired faults; the call list) and more (see `certemu.h`). Free `*json` with
/// `certemu_free_string`.
///
/// # Safety
/// `json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn certemu_ca_report(ca: *const certemu_ca, json: *mut *mut c_char) -> i32 {
    const CALL: &str = "certemu_ca_report";
    boundary(CALL, || {
        // SAFETY: NULL or writable per contract.
        unsafe { write(json, std::ptr::null_mut()) };
        require(CALL, "json", json)?;
        let c = lookup(CALL, ca)?;
        let text = report(CALL, &c)?;
        // SAFETY: checked non-NULL.
        unsafe { write(json, give_string(&text)) };
        Ok(())
    })
}

/// Frees a string returned through a `char **` of this API. NULL is a no-op
/// (`S_FALSE`); a pointer this API never returned, or one already freed, is left
/// alone and gets `E_INVALIDARG`.
///
/// # Safety
/// None: the pointer is looked up, never dereferenced unless it is a live string of ours.
#[no_mangle]
pub unsafe extern "C" fn certemu_free_string(s: *mut c_char) -> i32 {
    const CALL: &str = "certemu_free_string";
    if s.is_null() {
        return S_FALSE;
    }
    boundary(CALL, || {
        if !STRINGS.lock().remove(&(s as usize)) {
            return Err(Error::invalid_arg(
                CALL,
                format!("{s:p} is not a live string of certemu (freed twice, or never returned by it); ignored"),
            ));
        }
        // SAFETY: a pointer from CString::into_raw in give_string, removed from the
        // registry just now, so it is reclaimed exactly once.
        drop(unsafe { CString::from_raw(s) });
        Ok(())
    })
}

/// The message of the last failing call (certbcli or certemu) on this thread, as
/// `"0x80004003 E_POINTER: <explanation>"`; free it with `certemu_free_string`.
/// `S_FALSE` and `*msg = NULL` if no call has failed on this thread. Does not itself
/// change the last error, even when it fails (`E_POINTER` for a NULL `msg`).
///
/// # Safety
/// `msg` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn certemu_last_error(msg: *mut *mut c_char) -> i32 {
    if msg.is_null() {
        return HRESULT::E_POINTER.0;
    }
    let r = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: non-NULL, writable per contract.
        unsafe { write(msg, std::ptr::null_mut()) };
        match super::last_error() {
            None => S_FALSE,
            Some(e) => {
                let text = format!("{}: {e}", e.hresult());
                // SAFETY: non-NULL, writable per contract.
                unsafe { write(msg, give_string(&text)) };
                HRESULT::S_OK.0
            }
        }
    }));
    r.unwrap_or(HRESULT::E_UNEXPECTED.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boundary every export runs in turns a panic into `E_UNEXPECTED` and records
    /// it as the last error. No C input reaches a panic in this crate (that would be a
    /// bug), so this checks the mechanism directly.
    #[test]
    fn a_panic_inside_the_boundary_is_e_unexpected() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let hr = boundary("certemu_test_panic", || panic!("deliberate test panic"));
        std::panic::set_hook(prev);
        assert_eq!(hr, HRESULT::E_UNEXPECTED.0);
        let mut msg = std::ptr::null_mut();
        // SAFETY: valid out-pointer; the string is ours and freed once.
        unsafe {
            assert_eq!(certemu_last_error(&mut msg), 0);
            let text = CStr::from_ptr(msg).to_str().unwrap().to_string();
            assert!(text.contains("deliberate test panic"), "{text}");
            assert!(text.contains("certemu_test_panic"), "{text}");
            assert_eq!(certemu_free_string(msg), 0);
        }
    }

    #[test]
    fn json_escapes_control_characters() {
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\n\u{1}");
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}

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
//!   server's `State` and `Report`, the same documents ([`CaReport`]).
#![allow(non_camel_case_types)]

use super::boundary;
use super::forward::{self, RemoteMachine};
use super::ptr::{fill, require, returning, write};
use crate::ca::CaConfig;
use crate::config::MachineConfig;
use crate::control::{CaReport, Control, EmulatedCa, LastStart};
use crate::core::{Error, Result, HRESULT};
use crate::machine::Identity;
use core::ffi::{c_char, c_int};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock};

/// `S_FALSE`: success, nothing done (NULL passed to a destroy or free function, no last error).
const S_FALSE: i32 = 1;

/// Most certificates a CA may hold ([`crate::core::limits::RECORDS`]; `certemu.h` repeats it).
pub const CERTEMU_MAX_RECORDS: u32 = crate::core::limits::RECORDS.max as u32;
/// Most certificates one `certemu_ca_issue` call may issue
/// ([`crate::core::limits::ISSUE_PER_CALL`]; `certemu.h` repeats it).
pub const CERTEMU_MAX_ISSUE: u32 = crate::core::limits::ISSUE_PER_CALL.max as u32;

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
    /// The machine: an [`EmulatedCa`] in process, a [`RemoteMachine`] in server mode.
    ca: Box<dyn Control>,
    name: CString,
    name_w: Vec<u16>,
    last_start: Mutex<Option<LastStart>>,
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

/// Fills `*opts` with the defaults: 16 records, seed 1, the default CA name, the real
/// `.edb` size and 64 transactions per log generation.
///
/// # Safety
/// `opts` is NULL or valid for a write of `certemu_options`.
#[unsafe(no_mangle)]
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
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_create(
    server_name: *const c_char,
    opts: *const certemu_options,
    out: *mut *mut certemu_ca,
) -> i32 {
    const CALL: &str = "certemu_ca_create";
    // SAFETY: per contract, `out` is NULL or writable; the pointers read below are
    // checked non-NULL first.
    unsafe {
        returning(CALL, "out", out, std::ptr::null_mut(), || {
            create(server_name, opts)
        })
    }
}

/// The body of [`certemu_ca_create`]: the new CA, registered as live.
///
/// # Safety
/// As [`certemu_ca_create`].
unsafe fn create(
    server_name: *const c_char,
    opts: *const certemu_options,
) -> Result<*mut certemu_ca> {
    const CALL: &str = "certemu_ca_create";
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
        // The numbers are checked with every other input by CaBuilder::validate below
        // (core::limits), in process and in server mode alike.
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
    let (ca, server): (Box<dyn Control>, String) = if forward::server_address().is_some() {
        let cfg = remote_machine(given_name, given_opts);
        // The same checks as in process, before anything is sent.
        cfg.try_validate()?;
        let m = RemoteMachine::create(&cfg)?;
        let server = m.name().to_string();
        (Box::new(m), server)
    } else {
        let ca = b.build()?;
        let server = ca.server_name().to_string();
        (Box::new(ca), server)
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
    Ok(p)
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
    let mut ca = CaConfig::default();
    if let Some((o, ca_name)) = opts {
        ca.records = o.records;
        ca.seed = o.seed;
        ca.log_capacity = o.log_capacity;
        ca.edb_size = (o.edb_size != 0).then_some(o.edb_size);
        if let Some(n) = ca_name {
            ca.name = n;
        }
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

/// The body of a destroy or free export: NULL is a no-op (`S_FALSE`); anything else goes
/// to `f` behind the unwind guard.
fn releasing<T>(call: &'static str, p: *mut T, f: impl FnOnce() -> Result<()>) -> i32 {
    if p.is_null() {
        return S_FALSE;
    }
    boundary(call, f)
}

/// Destroys a CA: unregisters its server name, removes its disk; handles of its
/// sessions turn stale (`E_HANDLE`). NULL is a no-op (`S_FALSE`).
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_destroy(ca: *mut certemu_ca) -> i32 {
    const CALL: &str = "certemu_ca_destroy";
    releasing(CALL, ca, || {
        let removed = LIVE.lock().remove(&(ca as usize));
        match removed {
            Some(native) => native.ca.destroy(),
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
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_server_name(
    ca: *const certemu_ca,
    name: *mut *const c_char,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { write_name("certemu_ca_server_name", ca, name, |n| n.name.as_ptr()) }
}

/// The CA's server name as a NUL-terminated UTF-16 string (what the certbcli functions
/// take), owned by the CA until `certemu_ca_destroy`.
///
/// # Safety
/// `name` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_server_name_w(
    ca: *const certemu_ca,
    name: *mut *const u16,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { write_name("certemu_ca_server_name_w", ca, name, |n| n.name_w.as_ptr()) }
}

/// Writes one of the CA's names (`pick`, a buffer the CA owns) to `*name`: NULL first, so
/// a failure leaves NULL there.
///
/// # Safety
/// `name` is NULL or writable.
unsafe fn write_name<T>(
    call: &'static str,
    ca: *const certemu_ca,
    name: *mut *const T,
    pick: impl FnOnce(&certemu_ca) -> *const T,
) -> i32 {
    // SAFETY: per contract, `name` is NULL or writable. The buffer `pick` returns lives
    // in the CA, which outlives the pointer until certemu_ca_destroy (the registry holds
    // it).
    boundary(call, || unsafe {
        fill(call, "name", name, std::ptr::null(), || {
            Ok(pick(&*lookup(call, ca)?))
        })
    })
}

/// Issues `n` certificates (logged transactions). The CA must be running.
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_issue(ca: *mut certemu_ca, n: u32) -> i32 {
    const CALL: &str = "certemu_ca_issue";
    boundary(CALL, || {
        let c = lookup(CALL, ca)?;
        crate::core::limits::ISSUE_PER_CALL.check(CALL, n.into())?;
        c.ca.issue(n).map(drop)
    })
}

/// Revokes the certificate with this request id (ids start at 1).
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_revoke(ca: *mut certemu_ca, request_id: u32) -> i32 {
    const CALL: &str = "certemu_ca_revoke";
    boundary(CALL, || lookup(CALL, ca)?.ca.revoke(request_id))
}

/// Stops the service cleanly (as `net stop certsvc`); open backup sessions are disconnected.
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_stop(ca: *mut certemu_ca) -> i32 {
    const CALL: &str = "certemu_ca_stop";
    boundary(CALL, || lookup(CALL, ca)?.ca.stop())
}

/// Stops the service as a crash would: no checkpoint flush; the next start replays logs.
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_crash(ca: *mut certemu_ca) -> i32 {
    const CALL: &str = "certemu_ca_crash";
    boundary(CALL, || lookup(CALL, ca)?.ca.crash())
}

/// Starts the service: hard recovery of a registered restore, or soft recovery.
/// Returns the recovery's HRESULT (an ESE code if it refused the files); the
/// outcome also appears in `certemu_ca_report` as `last_start`.
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_start(ca: *mut certemu_ca) -> i32 {
    const CALL: &str = "certemu_ca_start";
    boundary(CALL, || {
        let c = lookup(CALL, ca)?;
        let r = c.ca.start();
        *c.last_start.lock() = Some(LastStart::of(&r));
        r.map(drop)
    })
}

/// Deletes every file in the CA's database, log and checkpoint directories (the
/// service must be stopped): the state a restore starts from after a disk loss.
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_wipe_files(ca: *mut certemu_ca) -> i32 {
    const CALL: &str = "certemu_ca_wipe_files";
    boundary(CALL, || lookup(CALL, ca)?.ca.wipe_files())
}

/// The host path of a Windows path on the CA's machine (`C:\...` or `\\host\C$\...`),
/// contained in the machine's root. Free `*out` with `certemu_free_string`.
///
/// # Safety
/// `windows_path` is NULL or NUL-terminated; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_host_path(
    ca: *const certemu_ca,
    windows_path: *const c_char,
    out: *mut *mut c_char,
) -> i32 {
    const CALL: &str = "certemu_ca_host_path";
    // SAFETY: per contract, `out` is NULL or writable and `windows_path` NULL (refused
    // first) or NUL-terminated.
    unsafe {
        returning(CALL, "out", out, std::ptr::null_mut(), || {
            require(CALL, "windows_path", windows_path)?;
            let c = lookup(CALL, ca)?;
            let wp = read_utf8(CALL, "windows_path", windows_path)?;
            let host = c.ca.host_path(&wp)?;
            let s = host.to_str().ok_or_else(|| {
                Error::invalid_arg(
                    CALL,
                    format!("host path {} is not valid UTF-8", host.display()),
                )
            })?;
            Ok(give_string(s))
        })
    }
}

/// Sets the caller identity: each argument is a BOOL (non-zero = TRUE).
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_set_identity(
    ca: *mut certemu_ca,
    backup_privilege: c_int,
    restore_privilege: c_int,
    local_admin: c_int,
    remote: c_int,
) -> i32 {
    const CALL: &str = "certemu_ca_set_identity";
    boundary(CALL, || {
        lookup(CALL, ca)?.ca.set_identity(Identity {
            backup_privilege: backup_privilege != 0,
            restore_privilege: restore_privilege != 0,
            local_admin: local_admin != 0,
            remote: remote != 0,
        })
    })
}

/// Sets the CA's `InterfaceFlags` (`IF_*` of certsrv.h; default `IF_DEFAULT` = 0x641).
///
/// # Safety
/// None: the pointer is looked up, never dereferenced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_set_interface_flags(ca: *mut certemu_ca, flags: u32) -> i32 {
    const CALL: &str = "certemu_ca_set_interface_flags";
    boundary(CALL, || lookup(CALL, ca)?.ca.set_interface_flags(flags))
}

/// The `certemu_ca_report` document of `c`.
fn report(c: &certemu_ca) -> Result<String> {
    let report = CaReport {
        state: c.ca.state()?,
        last_start: c.last_start.lock().clone(),
        conformance: c.ca.machine_report()?,
    };
    Ok(serde_json::to_string(&report).expect("a report always serialises"))
}

/// Installs a fault schedule (JSON, see `certadm_emu::api::faults`), replacing any other.
/// A schedule that does not parse gets `E_INVALIDARG` and changes nothing.
///
/// # Safety
/// `json` is NULL or a NUL-terminated UTF-8 string.
#[unsafe(no_mangle)]
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
        c.ca.set_faults(schedule)
    })
}

/// The CA's call trace as JSON lines (one event per line, the `CERTADM_EMU_TRACE` format).
/// Free `*jsonl` with `certemu_free_string`.
///
/// # Safety
/// `jsonl` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_trace(ca: *const certemu_ca, jsonl: *mut *mut c_char) -> i32 {
    const CALL: &str = "certemu_ca_trace";
    // SAFETY: per contract, `jsonl` is NULL or writable.
    unsafe {
        returning(CALL, "jsonl", jsonl, std::ptr::null_mut(), || {
            let text: String = lookup(CALL, ca)?
                .ca
                .trace()?
                .iter()
                .map(|e| e.to_json() + "\n")
                .collect();
            Ok(give_string(&text))
        })
    }
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
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_ca_report(ca: *const certemu_ca, json: *mut *mut c_char) -> i32 {
    const CALL: &str = "certemu_ca_report";
    // SAFETY: per contract, `json` is NULL or writable.
    unsafe {
        returning(CALL, "json", json, std::ptr::null_mut(), || {
            Ok(give_string(&report(&*lookup(CALL, ca)?)?))
        })
    }
}

/// Frees a string returned through a `char **` of this API. NULL is a no-op
/// (`S_FALSE`); a pointer this API never returned, or one already freed, is left
/// alone and gets `E_INVALIDARG`.
///
/// # Safety
/// None: the pointer is looked up, never dereferenced unless it is a live string of ours.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn certemu_free_string(s: *mut c_char) -> i32 {
    const CALL: &str = "certemu_free_string";
    releasing(CALL, s, || {
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
#[unsafe(no_mangle)]
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
}

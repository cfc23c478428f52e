//! The safe Rust API: the certbcli operations with Rust types.
//!
//! Each function routes to its host by server name or handle, checks the session
//! protocol, and returns `Result<T, Error>`; [`Error::hresult`] is the code the
//! ABI returns. The `extern "system"` exports of the ABI layer (above this one) are
//! thin wrappers over these functions.

#![forbid(unsafe_code)]

pub(crate) mod buffers;
pub mod faults;
pub(crate) mod registry;
mod restore;
pub(crate) mod route;
pub mod trace;

pub use crate::session::Registration;
pub use restore::*;

use crate::ca::{Ca, ServiceState};
use crate::core::consts::*;
use crate::core::outbuf::OutByte;
use crate::core::{Call, Error, ListKind, Result, WideList};
use crate::event::{Extras, Form, Kept, Slot, Value};
use crate::machine::{Identity, Machine};
use crate::session::handle::HandleParts;
use crate::session::{BackupKind, BackupSession, Hcsbc, LiveBackup, Session};
use registry::{Host, HostState};
use route::{instrument, Frame};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);
thread_local! {
    static CLIENT: Cell<u64> = const { Cell::new(0) };
}

/// The calling client. In process, a client is a thread: a second Prepare from the
/// same thread is a sequencing error (spec §6.2 row 3), from another thread a
/// concurrent backup (row 10).
pub(crate) fn current_client() -> u64 {
    CLIENT.with(|c| {
        if c.get() == 0 {
            c.set(NEXT_CLIENT.fetch_add(1, Ordering::Relaxed));
        }
        c.get()
    })
}

/// The call reaches `host`, the one it holds ([`Frame::reach`]), then the faults planned
/// for it run.
#[inline]
fn arrive<'h>(fr: &mut Frame<'h>, host: &'h Arc<Host>) -> Result<&'h Arc<Host>> {
    fr.reach(host);
    if !host.faults_on.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(host);
    }
    run_faults(fr.call(), host)?;
    Ok(host)
}

/// Runs the faults planned for `call` on `host` (a fault schedule is installed).
#[cold]
#[inline(never)]
fn run_faults(call: Call, host: &Host) -> Result<()> {
    let mut guard = host.state.lock();
    let st = &mut *guard;
    if st.faults.is_empty() {
        return Ok(());
    }
    for action in st.faults.before_call(call) {
        match action {
            faults::Action::Panic => {
                drop(guard);
                panic!("deliberate panic planned by the fault schedule in {call}");
            }
            faults::Action::Fail(hr) => {
                return Err(Error::Injected {
                    call: call.name(),
                    hr,
                })
            }
            faults::Action::Stop => {
                if st
                    .ca
                    .as_ref()
                    .is_some_and(|c| c.service() != ServiceState::Stopped)
                {
                    let _ = stop_host(st, &host.machine);
                }
            }
            faults::Action::Suspend => {
                if let Some(ca) = st.ca.as_mut() {
                    if ca.service() == ServiceState::Running {
                        ca.set_service(ServiceState::Suspended);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Routes the call by server name (`HOST`, `\\HOST`, `HOST\CA name`).
#[inline(always)]
pub(crate) fn lookup_server<'h>(fr: &mut Frame<'h>, server: &str) -> Result<&'h Arc<Host>> {
    let Some((host, ca_part, loan)) = registry::lend_by_name(server) else {
        return Err(unknown_server(fr.call(), server));
    };
    let host = fr.hold(host, loan);
    if let Some(ca_name) = ca_part {
        check_ca_name(fr.call(), host, ca_name)?;
    }
    arrive(fr, host)
}

#[cold]
fn unknown_server(call: Call, server: &str) -> Error {
    Error::ServerUnavailable {
        call: call.name(),
        server: server.to_string(),
        why: route::unknown_server_hint(),
    }
}

/// The CA part of a server name (`HOST\CA name`) names the CA of `host`.
#[cold]
fn check_ca_name(call: Call, host: &Host, ca_name: &str) -> Result<()> {
    let st = host.state.lock();
    match &st.ca {
        Some(ca) if ca.name().eq_ignore_ascii_case(ca_name) => Ok(()),
        _ => Err(Error::FileNotFound {
            call: call.name(),
            why: format!(
                "machine {:?} has no CA named {ca_name:?}",
                host.machine.netbios()
            ),
        }),
    }
}

/// Routes the call by its context handle.
#[inline(always)]
pub(crate) fn lookup_handle<'h>(
    fr: &mut Frame<'h>,
    h: Hcsbc,
) -> Result<(&'h Arc<Host>, HandleParts)> {
    let Some(parts) = h.parts() else {
        return Err(bad_handle(
            fr.call(),
            h,
            "not a handle returned by CertSrvBackupPrepareW or CertSrvRestorePrepareW",
        ));
    };
    let Some((host, loan)) = registry::lend_by_handle(h) else {
        return Err(bad_handle(fr.call(), h, "its machine no longer exists"));
    };
    let host = fr.hold(host, loan);
    Ok((arrive(fr, host)?, parts))
}

#[cold]
fn bad_handle(call: Call, h: Hcsbc, why: &str) -> Error {
    Error::InvalidHandle {
        call: call.name(),
        handle: h.as_raw(),
        why: why.into(),
    }
}

#[cold]
fn stale(call: Call, h: Hcsbc) -> Error {
    Error::InvalidHandle {
        call: call.name(),
        handle: h.as_raw(),
        why: "the session was ended (or never existed); handles are dead after CertSrvBackupEnd / CertSrvRestoreEnd".into(),
    }
}

/// Rule 11 and 12 of spec §6.2: interface flags and the backup privilege.
#[inline]
pub(crate) fn check_backup_access(call: Call, id: &Identity, flags: u32) -> Result<()> {
    let denied = (id.remote && flags & IF_NOREMOTEICERTADMINBACKUP != 0)
        || (!id.remote && flags & IF_NOLOCALICERTADMINBACKUP != 0)
        || !id.backup_privilege;
    if denied {
        return Err(backup_access_denied(call, id, flags));
    }
    Ok(())
}

/// Why [`check_backup_access`] refused the caller.
#[cold]
fn backup_access_denied(call: Call, id: &Identity, flags: u32) -> Error {
    if id.remote && flags & IF_NOREMOTEICERTADMINBACKUP != 0 {
        Error::access_denied(
            call,
            "the caller is remote and InterfaceFlags has IF_NOREMOTEICERTADMINBACKUP (part of IF_DEFAULT); run the backup on the CA host or clear the flag",
        )
    } else if !id.remote && flags & IF_NOLOCALICERTADMINBACKUP != 0 {
        Error::access_denied(call, "InterfaceFlags has IF_NOLOCALICERTADMINBACKUP")
    } else {
        Error::access_denied(
            call,
            "the caller lacks SeBackupPrivilege (the CA Operator role)",
        )
    }
}

/// The CA service runs.
#[inline]
fn running(call: Call, ca: &Ca, server: &str) -> Result<()> {
    match ca.service() {
        ServiceState::Running => Ok(()),
        state => Err(not_running(call, state, server)),
    }
}

#[cold]
fn not_running(call: Call, state: ServiceState, server: &str) -> Error {
    match state {
        ServiceState::Stopped => Error::ServerUnavailable {
            call: call.name(),
            server: server.to_string(),
            why: "the CA service is stopped".into(),
        },
        _ => Error::Suspended {
            call: call.name(),
            why: "the CA is suspended for a database restore (recovery in progress)".into(),
        },
    }
}

#[cold]
fn no_ca(call: impl Into<&'static str>, server: &str) -> Error {
    Error::ServerUnavailable {
        call: call.into(),
        server: server.to_string(),
        why: "no Certification Authority is installed on this machine".into(),
    }
}

/// Runs `f` on the backup session behind `h`, after the checks every backup call makes.
fn backup_call<R>(
    fr: &mut Frame<'_>,
    h: Hcsbc,
    f: impl FnOnce(&mut LiveBackup, &mut Ca, &Machine, &mut faults::FaultState) -> Result<R>,
) -> Result<R> {
    let call = fr.call();
    let (host, p) = lookup_handle(fr, h)?;
    let HostState {
        ca,
        sessions,
        identity,
        faults,
        ..
    } = fr.lock();
    let Some(session) = sessions.get_mut(p.session_slot, p.session_gen) else {
        return Err(stale(call, h));
    };
    let Session::Backup(b) = session else {
        return Err(Error::sequence(
            call,
            "this is a restore context: no CertSrvBackupPrepareW started a backup on it (spec §6.2 row 2); pass the context from CertSrvBackupPrepareW",
        ));
    };
    let BackupSession::Live(b) = b else {
        return Err(Error::Disconnected { call: call.name() });
    };
    let ca = ca.as_mut().expect("a backup session implies a CA");
    running(call, ca, host.machine.netbios())?;
    check_backup_access(call, identity, ca.interface_flags())?;
    f(b, ca, &host.machine, faults)
}

/// `CertSrvIsServerOnlineW`: `Ok(true)` when running, `Ok(false)` when suspended.
fn is_server_online_impl(fr: &mut Frame<'_>, server: &str) -> Result<bool> {
    const CALL: Call = Call::IsServerOnline;
    lookup_server(fr, server)?;
    let st = fr.lock();
    let ca = st.ca.as_ref().ok_or_else(|| no_ca(CALL, server))?;
    match ca.service() {
        ServiceState::Running => Ok(true),
        ServiceState::Suspended => Ok(false),
        ServiceState::Stopped => Err(Error::ServerUnavailable {
            call: CALL.name(),
            server: server.to_string(),
            why: "Certificate Services is not running".into(),
        }),
    }
}

/// `CertSrvBackupPrepareW`.
#[inline]
fn backup_prepare_impl(
    fr: &mut Frame<'_>,
    server: &str,
    grbit_jet: u32,
    backup_flags: u32,
) -> Result<Hcsbc> {
    const CALL: Call = Call::BackupPrepare;
    let kind = match backup_flags {
        CSBACKUP_TYPE_FULL => BackupKind::Full,
        CSBACKUP_TYPE_LOGS_ONLY => BackupKind::LogsOnly,
        other => {
            return Err(Error::invalid_arg(
                CALL,
                format!("dwBackupFlags {other:#x} is not CSBACKUP_TYPE_FULL (1) or CSBACKUP_TYPE_LOGS_ONLY (2)"),
            ))
        }
    };
    if grbit_jet != 0 {
        return Err(Error::invalid_arg(
            CALL,
            format!("grbitJet {grbit_jet:#x} must be 0 (the docs: \"this value should be set to zero\"); the backup type goes in dwBackupFlags"),
        ));
    }
    let host = lookup_server(fr, server)?;
    let client = current_client();
    let st = fr.lock();
    let ca = st.ca.as_mut().ok_or_else(|| no_ca(CALL, server))?;
    running(CALL, ca, server)?;
    check_backup_access(CALL, &st.identity, ca.interface_flags())?;
    if let Some((s, g)) = st.active_backup {
        let same =
            matches!(st.sessions.get(s, g), Some(Session::Backup(b)) if b.client() == client);
        return Err(if same {
            Error::sequence(
                CALL,
                "this client already has a backup session open; call CertSrvBackupEnd on it before preparing another",
            )
        } else {
            Error::BackupInProgress {
                call: CALL.name(),
                why: "another client's backup session is running on this CA; only one online backup runs at a time".into(),
            }
        });
    }
    if kind == BackupKind::LogsOnly && ca.last_full_backup().is_none() {
        return Err(Error::MissingFullBackup {
            call: CALL.name(),
            why: "the database missed a previous full backup before incremental backup: run a CSBACKUP_TYPE_FULL backup first".into(),
        });
    }
    let (slot, generation) = st
        .sessions
        .open(CALL, Session::Backup(BackupSession::new(kind, client)))?;
    if kind == BackupKind::Full {
        ca.freeze();
    }
    st.active_backup = Some((slot, generation));
    Ok(Hcsbc::encode(HandleParts {
        host_slot: host.slot,
        host_gen: host.generation,
        session_slot: slot,
        session_gen: generation,
    }))
}

/// `CertSrvBackupGetDatabaseNamesW`: `'D'` + the `.edb` UNC name.
fn backup_get_database_names_impl(fr: &mut Frame<'_>, h: Hcsbc) -> Result<WideList> {
    backup_call(fr, h, |b, ca, m, _| b.database_names(ca, m))
}

/// `CertSrvBackupGetDynamicFileListW`: the CRL and CA certificate, unprefixed UNC names.
fn backup_get_dynamic_file_list_impl(fr: &mut Frame<'_>, h: Hcsbc) -> Result<WideList> {
    backup_call(fr, h, |_, ca, m, _| {
        let names: Vec<String> = ca.dynamic_files(m).iter().map(|p| m.unc(p)).collect();
        Ok(WideList::from_entries(
            names.iter().map(|n| (None, n.as_str())),
        ))
    })
}

/// `CertSrvBackupOpenFileW`: returns the file size.
fn backup_open_file_impl(fr: &mut Frame<'_>, h: Hcsbc, name: &str, read_hint: u32) -> Result<u64> {
    backup_call(fr, h, |b, ca, m, _| b.open_file(ca, m, name, read_hint))
}

/// `CertSrvBackupRead`: fills `buf` unless the file ends; `Ok(0)` at end of file.
/// `buf` may be uninitialised: it is only written (a planned corruption reads its byte
/// into a local, flips it and writes it).
fn backup_read_impl<B: OutByte>(fr: &mut Frame<'_>, h: Hcsbc, buf: &mut [B]) -> Result<usize> {
    backup_call(fr, h, |b, _, _, faults| {
        if faults.is_empty() {
            return b.read(buf);
        }
        let Some((name, offset)) = b.open_position().map(|(n, o)| (n.to_string(), o)) else {
            return b.read(buf);
        };
        let plan = faults.read_plan(&name, offset, buf.len() as u64);
        if let Some(hr) = plan.fail {
            return Err(Error::Injected {
                call: Call::BackupRead.name(),
                hr,
            });
        }
        let lim = plan
            .limit
            .map_or(buf.len(), |l| (l.min(buf.len() as u64) as usize).max(1));
        let buf = &mut buf[..lim];
        let Some(k) = plan
            .corrupt_at
            .filter(|at| (offset..offset + lim as u64).contains(at))
            .map(|at| (at - offset) as usize)
        else {
            return b.read(buf);
        };
        // Up to the corrupted byte, the byte itself (flipped), then the rest: the same
        // bytes as one read, each read full unless the file ends.
        let mut n = 0;
        if k > 0 {
            n = b.read(&mut buf[..k])?;
            if n < k {
                return Ok(n);
            }
        }
        let mut one = [0u8; 1];
        if b.read(&mut one[..])? == 0 {
            return Ok(n);
        }
        one[0] ^= 0xFF;
        B::copy(&mut buf[k..=k], &one);
        faults.corrupted(&name, offset + k as u64);
        n += 1;
        if k + 1 < buf.len() {
            n += b.read(&mut buf[k + 1..])?;
        }
        Ok(n)
    })
}

/// `CertSrvBackupClose`.
fn backup_close_impl(fr: &mut Frame<'_>, h: Hcsbc) -> Result<()> {
    backup_call(fr, h, |b, _, _, _| b.close())
}

/// `CertSrvBackupGetBackupLogsW`: rolls the current log; `'!'` + UNC per generation.
fn backup_get_backup_logs_impl(fr: &mut Frame<'_>, h: Hcsbc) -> Result<WideList> {
    backup_call(fr, h, |b, ca, m, _| b.backup_logs(ca, m))
}

/// `CertSrvBackupTruncateLogs`: returns the generations deleted.
fn backup_truncate_logs_impl(fr: &mut Frame<'_>, h: Hcsbc) -> Result<Vec<u32>> {
    backup_call(fr, h, |b, ca, m, _| b.truncate(ca, m))
}

/// `CertSrvBackupEnd`.
#[inline]
fn backup_end_impl(fr: &mut Frame<'_>, h: Hcsbc) -> Result<()> {
    const CALL: Call = Call::BackupEnd;
    let (host, p) = lookup_handle(fr, h)?;
    let HostState {
        ca,
        sessions,
        identity,
        active_backup,
        ..
    } = fr.lock();
    let b = match sessions.get_mut(p.session_slot, p.session_gen) {
        None => return Err(stale(CALL, h)),
        Some(Session::Restore(_)) => {
            return Err(Error::sequence(
                CALL,
                "this is a restore context: no backup was prepared on it; end it with CertSrvRestoreEnd",
            ))
        }
        Some(Session::Backup(b)) => b,
    };
    let ca = ca.as_mut().expect("a backup session implies a CA");
    if !b.is_disconnected() {
        check_backup_access(CALL, identity, ca.interface_flags())?;
    }
    if *active_backup == Some((p.session_slot, p.session_gen)) {
        *active_backup = None;
    }
    // Ended where it lies, then dropped there: the session is gone whatever End returns.
    let r = b.end(ca, &host.machine);
    sessions.free(p.session_slot, p.session_gen);
    r
}

/// `CertSrvServerControlW`: `CSCONTROL_SHUTDOWN` stops the service; 2 and 3 do nothing.
fn server_control_impl(fr: &mut Frame<'_>, server: &str, control_flags: u32) -> Result<()> {
    const CALL: Call = Call::ServerControl;
    let host = lookup_server(fr, server)?;
    let st = fr.lock();
    let ca = st.ca.as_ref().ok_or_else(|| no_ca(CALL, server))?;
    if ca.service() == ServiceState::Stopped {
        return Err(Error::ServerUnavailable {
            call: CALL.name(),
            server: server.to_string(),
            why: "the CA service is already stopped".into(),
        });
    }
    if !st.identity.local_admin && !st.identity.backup_privilege {
        return Err(Error::access_denied(
            CALL,
            "ServerControl needs the CA Administrator or Operator role",
        ));
    }
    match control_flags {
        CSCONTROL_SHUTDOWN => stop_host(st, &host.machine),
        CSCONTROL_SUSPEND | CSCONTROL_RESTART => Ok(()),
        other => Err(Error::invalid_arg(
            CALL,
            format!("dwControlFlags {other:#x} is not CSCONTROL_SHUTDOWN, _SUSPEND or _RESTART"),
        )),
    }
}

fn h(v: Hcsbc) -> Slot {
    Slot::handle(v.as_raw() as u64)
}

/// The names a call with only a context handle records.
static ONLY_HBC: Form = Form::new(&["hbc"], &[]);

/// A call whose only argument is its context handle and which returns nothing
/// (`CertSrvBackupClose`, `CertSrvBackupEnd`, `CertSrvRestoreEnd`).
#[inline]
fn only_hbc(call: Call, hbc: Hcsbc, f: impl FnOnce(&mut Frame<'_>) -> Result<()>) -> Result<()> {
    instrument(call, &ONLY_HBC, |_, _| [h(hbc)], f, |_, _| [])
}

/// `CertSrvIsServerOnlineW`: `Ok(true)` when running, `Ok(false)` when suspended.
pub fn is_server_online(server: &str) -> Result<bool> {
    static FORM: Form = Form::new(&["pwszServerName"], &["fServerOnline"]);
    instrument(
        Call::IsServerOnline,
        &FORM,
        |host, x| [host.name_value(server, x)],
        |fr| is_server_online_impl(fr, server),
        |o, _| [Slot::num(*o as u64)],
    )
}

/// `CertSrvBackupPrepareW`.
pub fn backup_prepare(server: &str, grbit_jet: u32, backup_flags: u32) -> Result<Hcsbc> {
    static FORM: Form = Form::new(&["pwszServerName", "grbitJet", "dwBackupFlags"], &["hbc"]);
    instrument(
        Call::BackupPrepare,
        &FORM,
        |host, x| {
            [
                host.name_value(server, x),
                grbit_jet.into(),
                backup_flags.into(),
            ]
        },
        |fr| backup_prepare_impl(fr, server, grbit_jet, backup_flags),
        |v, _| [h(*v)],
    )
}

/// `CertSrvBackupGetDatabaseNamesW`: `'D'` + the `.edb` UNC name.
pub fn backup_get_database_names(hbc: Hcsbc) -> Result<WideList> {
    list(ListKind::DatabaseNames, hbc)
}

/// `CertSrvBackupGetDynamicFileListW`: the CRL and CA certificate, unprefixed UNC names.
pub fn backup_get_dynamic_file_list(hbc: Hcsbc) -> Result<WideList> {
    list(ListKind::DynamicFiles, hbc)
}

/// `CertSrvBackupGetBackupLogsW`: rolls the current log; `'!'` + UNC per generation.
pub fn backup_get_backup_logs(hbc: Hcsbc) -> Result<WideList> {
    list(ListKind::BackupLogs, hbc)
}

/// `CertSrvRestoreGetDatabaseLocationsW`, with a backup or a restore context.
pub fn restore_get_database_locations(hbc: Hcsbc) -> Result<WideList> {
    list(ListKind::DatabaseLocations, hbc)
}

/// The list function `kind` without instrumentation.
fn list_impl(fr: &mut Frame<'_>, kind: ListKind, hbc: Hcsbc) -> Result<WideList> {
    match kind {
        ListKind::DatabaseNames => backup_get_database_names_impl(fr, hbc),
        ListKind::DynamicFiles => backup_get_dynamic_file_list_impl(fr, hbc),
        ListKind::BackupLogs => backup_get_backup_logs_impl(fr, hbc),
        ListKind::DatabaseLocations => restore::restore_get_database_locations_impl(fr, hbc),
    }
}

/// A list as its trace event records it: its size, and the list.
fn list_values(kind: ListKind, l: &WideList, x: &mut Extras) -> [Slot; 2] {
    [
        Slot::num(l.byte_len() as u64),
        x.keep(Kept::List(
            Box::new(l.clone()),
            kind != ListKind::DynamicFiles,
        )),
    ]
}

/// One of the four list functions, by its [`ListKind`].
pub fn list(kind: ListKind, hbc: Hcsbc) -> Result<WideList> {
    static FORM: Form = Form::new(&["hbc"], &["cbSize", "list"]);
    instrument(
        kind.call(),
        &FORM,
        |_, _| [h(hbc)],
        |fr| list_impl(fr, kind, hbc),
        |l, x| list_values(kind, l, x),
    )
}

/// A list function for the ABI: the list is copied into a buffer that
/// `CertSrvBackupFree` releases; returns its address and `*pcbSize`.
pub(crate) fn list_for_client(kind: ListKind, hbc: Hcsbc) -> Result<(*mut u16, u32)> {
    list_tracked(kind, hbc).map(|(p, l)| (p, l.byte_len()))
}

/// [`list_for_client`] that also returns the list.
pub(crate) fn list_tracked(kind: ListKind, hbc: Hcsbc) -> Result<(*mut u16, WideList)> {
    list_tracked_inner(kind, hbc, None)
}

/// A list for the server, which sends it by value and keeps an accounting buffer for
/// `CertSrvBackupFree`, tracked (and traced, as `buffer`) under the server's opaque
/// `token` instead of a heap address ([`buffers::alloc_as`]).
pub(crate) fn list_tracked_as(kind: ListKind, hbc: Hcsbc, token: usize) -> Result<WideList> {
    list_tracked_inner(kind, hbc, Some(token)).map(|(_, l)| l)
}

fn list_tracked_inner(
    kind: ListKind,
    hbc: Hcsbc,
    key: Option<usize>,
) -> Result<(*mut u16, WideList)> {
    static FORM: Form = Form::new(&["hbc"], &["buffer", "cbSize", "list"]);
    instrument(
        kind.call(),
        &FORM,
        |_, _| [h(hbc)],
        |fr| {
            let l = list_impl(fr, kind, hbc)?;
            let owner = fr.host().map_or(0, |host| host.key());
            let (p, _) = buffers::alloc_as(&l, owner, key);
            Ok((p, l))
        },
        |(p, l), x| {
            let [size, list] = list_values(kind, l, x);
            [Slot::handle(key.unwrap_or(*p as usize) as u64), size, list]
        },
    )
}

/// `CertSrvBackupFree` of a list buffer the ABI handed out (`list_for_client`). NULL is a no-op; an address
/// that is not a live buffer (freed twice, or foreign) is ignored and reported.
pub fn backup_free(pv: *mut core::ffi::c_void) -> Result<()> {
    const CALL: Call = Call::BackupFree;
    static FORM: Form = Form::new(&["pv"], &[]);
    instrument(
        CALL,
        &FORM,
        |_, _| [Slot::handle(pv as usize as u64)],
        |fr| {
            let (outcome, owner) = buffers::free(pv);
            if let Some(host) = owner.and_then(registry::by_key) {
                // Counted like every call (fault positions stay aligned with the trace);
                // a void function has no failure to inject.
                let host = fr.hold(host, None);
                let _ = arrive(fr, host);
            }
            match outcome {
                buffers::FreeOutcome::Unknown => Err(Error::invalid_arg(
                    CALL,
                    format!(
                        "{pv:p} is not a live buffer of certadm-emu ({}); ignored",
                        if owner.is_some() {
                            "it was freed already"
                        } else {
                            "it was never returned by a certbcli list function"
                        }
                    ),
                )),
                _ => Ok(()),
            }
        },
        |_, _| [],
    )
}

/// `CertSrvBackupOpenFileW`: returns the file size.
pub fn backup_open_file(hbc: Hcsbc, name: &str, read_hint: u32) -> Result<u64> {
    static FORM: Form = Form::new(
        &["hbc", "pwszAttachmentName", "cbReadHintSize"],
        &["liFileSize"],
    );
    instrument(
        Call::BackupOpenFile,
        &FORM,
        |_, x| [h(hbc), x.str(name), read_hint.into()],
        |fr| backup_open_file_impl(fr, hbc, name, read_hint),
        |s, _| [Slot::num(*s)],
    )
}

/// `CertSrvBackupRead`: fills `buf` unless the file ends; `Ok(0)` at end of file.
///
/// `buf` is `&mut [u8]` or `&mut [MaybeUninit<u8>]` (memory nobody initialised, as a C
/// caller's `malloc` buffer): it is only written, never read.
pub fn backup_read<B: OutByte>(hbc: Hcsbc, buf: &mut [B]) -> Result<usize> {
    static FORM: Form = Form::new(&["hbc", "cbBuffer"], &["read"]);
    let len = buf.len() as u64;
    instrument(
        Call::BackupRead,
        &FORM,
        |_, _| [h(hbc), Slot::num(len)],
        |fr| backup_read_impl(fr, hbc, buf),
        |n, _| [Slot::num(*n as u64)],
    )
}

/// `CertSrvBackupClose`.
pub fn backup_close(hbc: Hcsbc) -> Result<()> {
    only_hbc(Call::BackupClose, hbc, |fr| backup_close_impl(fr, hbc))
}

/// `CertSrvBackupTruncateLogs`: returns the generations deleted.
pub fn backup_truncate_logs(hbc: Hcsbc) -> Result<Vec<u32>> {
    static FORM: Form = Form::new(&["hbc"], &["deleted"]);
    instrument(
        Call::BackupTruncateLogs,
        &FORM,
        |_, _| [h(hbc)],
        |fr| backup_truncate_logs_impl(fr, hbc),
        |d, x| {
            [x.value(Value::List(
                d.iter()
                    .map(|g| crate::ca::format::log_file_name(*g))
                    .collect(),
            ))]
        },
    )
}

/// `CertSrvBackupEnd`.
pub fn backup_end(hbc: Hcsbc) -> Result<()> {
    only_hbc(Call::BackupEnd, hbc, |fr| backup_end_impl(fr, hbc))
}

/// `CertSrvServerControlW`: `CSCONTROL_SHUTDOWN` stops the service; 2 and 3 do nothing.
pub fn server_control(server: &str, control_flags: u32) -> Result<()> {
    static FORM: Form = Form::new(&["pwszServerName", "dwControlFlags"], &[]);
    instrument(
        Call::ServerControl,
        &FORM,
        |host, x| [host.name_value(server, x), control_flags.into()],
        |fr| server_control_impl(fr, server, control_flags),
        |_, _| [],
    )
}

/// The CA service went away: open backup sessions are disconnected (only End works on
/// them) and no backup holds the CA any more.
pub(crate) fn disconnect_backups(st: &mut HostState) {
    for (_, _, s) in st.sessions.iter_mut() {
        if let Session::Backup(b) = s {
            b.disconnect();
        }
    }
    st.active_backup = None;
}

/// Stops the CA cleanly: open backup sessions are disconnected (only End works on them).
pub(crate) fn stop_host(st: &mut HostState, machine: &Machine) -> Result<()> {
    disconnect_backups(st);
    let ca = st
        .ca
        .as_mut()
        .ok_or_else(|| no_ca("stop", machine.netbios()))?;
    ca.stop(machine)
}

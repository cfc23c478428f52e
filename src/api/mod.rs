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
use crate::event::{RawFields, RawValue, Value};
use crate::machine::{Identity, Machine};
use crate::session::handle::HandleParts;
use crate::session::{BackupKind, BackupSession, Hcsbc, LiveBackup, Session};
use registry::{Host, HostState};
use route::instrument;
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

/// Runs the faults planned for this call; records the host for the trace.
fn arrive(call: Call, host: &Arc<Host>) -> Result<()> {
    route::routed_to(host);
    if !host.faults_on.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
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

pub(crate) fn lookup_server(call: Call, server: &str) -> Result<Arc<Host>> {
    let Some((host, ca_part)) = registry::by_name(server) else {
        return Err(Error::ServerUnavailable {
            call: call.name(),
            server: server.to_string(),
            why: route::unknown_server_hint(),
        });
    };
    if let Some(ca_name) = ca_part {
        let st = host.state.lock();
        match &st.ca {
            Some(ca) if ca.name().eq_ignore_ascii_case(ca_name) => {}
            _ => {
                return Err(Error::FileNotFound {
                    call: call.name(),
                    why: format!(
                        "machine {:?} has no CA named {ca_name:?}",
                        host.machine.netbios()
                    ),
                })
            }
        }
    }
    arrive(call, &host)?;
    Ok(host)
}

pub(crate) fn lookup_handle(call: Call, h: Hcsbc) -> Result<(Arc<Host>, HandleParts)> {
    let parts = h.parts().ok_or_else(|| Error::InvalidHandle {
        call: call.name(),
        handle: h.as_raw(),
        why: "not a handle returned by CertSrvBackupPrepareW or CertSrvRestorePrepareW".into(),
    })?;
    let host = registry::by_handle(h).ok_or_else(|| Error::InvalidHandle {
        call: call.name(),
        handle: h.as_raw(),
        why: "its machine no longer exists".into(),
    })?;
    arrive(call, &host)?;
    Ok((host, parts))
}

fn stale(call: Call, h: Hcsbc) -> Error {
    Error::InvalidHandle {
        call: call.name(),
        handle: h.as_raw(),
        why: "the session was ended (or never existed); handles are dead after CertSrvBackupEnd / CertSrvRestoreEnd".into(),
    }
}

/// Rule 11 and 12 of spec §6.2: interface flags and the backup privilege.
pub(crate) fn check_backup_access(call: Call, id: &Identity, flags: u32) -> Result<()> {
    if id.remote && flags & IF_NOREMOTEICERTADMINBACKUP != 0 {
        return Err(Error::access_denied(
            call,
            "the caller is remote and InterfaceFlags has IF_NOREMOTEICERTADMINBACKUP (part of IF_DEFAULT); run the backup on the CA host or clear the flag",
        ));
    }
    if !id.remote && flags & IF_NOLOCALICERTADMINBACKUP != 0 {
        return Err(Error::access_denied(
            call,
            "InterfaceFlags has IF_NOLOCALICERTADMINBACKUP",
        ));
    }
    if !id.backup_privilege {
        return Err(Error::access_denied(
            call,
            "the caller lacks SeBackupPrivilege (the CA Operator role)",
        ));
    }
    Ok(())
}

fn running(call: Call, ca: &Ca, server: &str) -> Result<()> {
    match ca.service() {
        ServiceState::Running => Ok(()),
        ServiceState::Suspended => Err(Error::Suspended {
            call: call.name(),
            why: "the CA is suspended for a database restore (recovery in progress)".into(),
        }),
        ServiceState::Stopped => Err(Error::ServerUnavailable {
            call: call.name(),
            server: server.to_string(),
            why: "the CA service is stopped".into(),
        }),
    }
}

fn no_ca(call: impl Into<&'static str>, server: &str) -> Error {
    Error::ServerUnavailable {
        call: call.into(),
        server: server.to_string(),
        why: "no Certification Authority is installed on this machine".into(),
    }
}

/// Runs `f` on the backup session behind `h`, after the checks every backup call makes.
fn backup_call<R>(
    call: Call,
    h: Hcsbc,
    f: impl FnOnce(&mut LiveBackup, &mut Ca, &Machine, &mut faults::FaultState) -> Result<R>,
) -> Result<R> {
    let (host, p) = lookup_handle(call, h)?;
    let mut guard = host.state.lock();
    let HostState {
        ca,
        sessions,
        identity,
        faults,
        ..
    } = &mut *guard;
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
fn is_server_online_impl(server: &str) -> Result<bool> {
    const CALL: Call = Call::IsServerOnline;
    let host = lookup_server(CALL, server)?;
    let st = host.state.lock();
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
fn backup_prepare_impl(server: &str, grbit_jet: u32, backup_flags: u32) -> Result<Hcsbc> {
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
    let host = lookup_server(CALL, server)?;
    let client = current_client();
    let mut guard = host.state.lock();
    let st = &mut *guard;
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
        .insert(Session::Backup(BackupSession::new(kind, client)))
        .ok_or_else(|| Error::TooManySessions {
            call: CALL.name(),
            limit: crate::session::handle::SESSION_SLOTS,
        })?;
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
fn backup_get_database_names_impl(h: Hcsbc) -> Result<WideList> {
    backup_call(Call::BackupGetDatabaseNames, h, |b, ca, m, _| {
        b.database_names(ca, m)
    })
}

/// `CertSrvBackupGetDynamicFileListW`: the CRL and CA certificate, unprefixed UNC names.
fn backup_get_dynamic_file_list_impl(h: Hcsbc) -> Result<WideList> {
    backup_call(Call::BackupGetDynamicFileList, h, |_, ca, m, _| {
        let names: Vec<String> = ca.dynamic_files(m).iter().map(|p| m.unc(p)).collect();
        Ok(WideList::from_entries(
            names.iter().map(|n| (None, n.as_str())),
        ))
    })
}

/// `CertSrvBackupOpenFileW`: returns the file size.
fn backup_open_file_impl(h: Hcsbc, name: &str, read_hint: u32) -> Result<u64> {
    backup_call(Call::BackupOpenFile, h, |b, ca, m, _| {
        b.open_file(ca, m, name, read_hint)
    })
}

/// `CertSrvBackupRead`: fills `buf` unless the file ends; `Ok(0)` at end of file.
/// `buf` may be uninitialised: it is only written (a planned corruption reads its byte
/// into a local, flips it and writes it).
fn backup_read_impl<B: OutByte>(h: Hcsbc, buf: &mut [B]) -> Result<usize> {
    backup_call(Call::BackupRead, h, |b, _, _, faults| {
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
fn backup_close_impl(h: Hcsbc) -> Result<()> {
    backup_call(Call::BackupClose, h, |b, _, _, _| b.close())
}

/// `CertSrvBackupGetBackupLogsW`: rolls the current log; `'!'` + UNC per generation.
fn backup_get_backup_logs_impl(h: Hcsbc) -> Result<WideList> {
    backup_call(Call::BackupGetBackupLogs, h, |b, ca, m, _| {
        b.backup_logs(ca, m)
    })
}

/// `CertSrvBackupTruncateLogs`: returns the generations deleted.
fn backup_truncate_logs_impl(h: Hcsbc) -> Result<Vec<u32>> {
    backup_call(Call::BackupTruncateLogs, h, |b, ca, m, _| b.truncate(ca, m))
}

/// `CertSrvBackupEnd`.
fn backup_end_impl(h: Hcsbc) -> Result<()> {
    const CALL: Call = Call::BackupEnd;
    let (host, p) = lookup_handle(CALL, h)?;
    let mut guard = host.state.lock();
    let st = &mut *guard;
    match st.sessions.get(p.session_slot, p.session_gen) {
        None => return Err(stale(CALL, h)),
        Some(Session::Restore(_)) => {
            return Err(Error::sequence(
                CALL,
                "this is a restore context: no backup was prepared on it; end it with CertSrvRestoreEnd",
            ))
        }
        Some(Session::Backup(b)) => {
            if !b.is_disconnected() {
                let ca = st.ca.as_ref().expect("a backup session implies a CA");
                check_backup_access(CALL, &st.identity, ca.interface_flags())?;
            }
        }
    }
    let Some(Session::Backup(b)) = st.sessions.remove(p.session_slot, p.session_gen) else {
        unreachable!("checked above")
    };
    if st.active_backup == Some((p.session_slot, p.session_gen)) {
        st.active_backup = None;
    }
    let ca = st.ca.as_mut().expect("a backup session implies a CA");
    b.end(ca, &host.machine)
}

/// `CertSrvServerControlW`: `CSCONTROL_SHUTDOWN` stops the service; 2 and 3 do nothing.
fn server_control_impl(server: &str, control_flags: u32) -> Result<()> {
    const CALL: Call = Call::ServerControl;
    let host = lookup_server(CALL, server)?;
    let mut guard = host.state.lock();
    let st = &mut *guard;
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

fn h(v: Hcsbc) -> RawValue {
    RawValue::Handle(v.as_raw() as u64)
}

/// `CertSrvIsServerOnlineW`: `Ok(true)` when running, `Ok(false)` when suspended.
pub fn is_server_online(server: &str) -> Result<bool> {
    instrument(
        Call::IsServerOnline,
        |host| RawFields::new(&["pwszServerName"], [host.name_value(server)]),
        || is_server_online_impl(server),
        |o| RawFields::new(&["fServerOnline"], [RawValue::U64(*o as u64)]),
    )
}

/// `CertSrvBackupPrepareW`.
pub fn backup_prepare(server: &str, grbit_jet: u32, backup_flags: u32) -> Result<Hcsbc> {
    instrument(
        Call::BackupPrepare,
        |host| {
            RawFields::new(
                &["pwszServerName", "grbitJet", "dwBackupFlags"],
                [
                    host.name_value(server),
                    grbit_jet.into(),
                    backup_flags.into(),
                ],
            )
        },
        || backup_prepare_impl(server, grbit_jet, backup_flags),
        |v| RawFields::new(&["hbc"], [h(*v)]),
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
fn list_impl(kind: ListKind, hbc: Hcsbc) -> Result<WideList> {
    match kind {
        ListKind::DatabaseNames => backup_get_database_names_impl(hbc),
        ListKind::DynamicFiles => backup_get_dynamic_file_list_impl(hbc),
        ListKind::BackupLogs => backup_get_backup_logs_impl(hbc),
        ListKind::DatabaseLocations => restore::restore_get_database_locations_impl(hbc),
    }
}

/// One of the four list functions, by its [`ListKind`].
pub fn list(kind: ListKind, hbc: Hcsbc) -> Result<WideList> {
    instrument(
        kind.call(),
        |_| RawFields::new(&["hbc"], [h(hbc)]),
        || list_impl(kind, hbc),
        |l| {
            RawFields::new(
                &["cbSize", "list"],
                [
                    RawValue::U64(l.byte_len() as u64),
                    RawValue::List(Box::new(l.clone()), kind != ListKind::DynamicFiles),
                ],
            )
        },
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
    instrument(
        kind.call(),
        |_| RawFields::new(&["hbc"], [h(hbc)]),
        || {
            let l = list_impl(kind, hbc)?;
            let owner = registry::by_handle(hbc).map_or(0, |host| host.key());
            let (p, _) = buffers::alloc_as(&l, owner, key);
            Ok((p, l))
        },
        |(p, l)| {
            RawFields::new(
                &["buffer", "cbSize", "list"],
                [
                    RawValue::Handle(key.unwrap_or(*p as usize) as u64),
                    RawValue::U64(l.byte_len() as u64),
                    RawValue::List(Box::new(l.clone()), kind != ListKind::DynamicFiles),
                ],
            )
        },
    )
}

/// `CertSrvBackupFree` of a list buffer the ABI handed out (`list_for_client`). NULL is a no-op; an address
/// that is not a live buffer (freed twice, or foreign) is ignored and reported.
pub fn backup_free(pv: *mut core::ffi::c_void) -> Result<()> {
    const CALL: Call = Call::BackupFree;
    instrument(
        CALL,
        |_| RawFields::new(&["pv"], [RawValue::Handle(pv as usize as u64)]),
        || {
            let (outcome, owner) = buffers::free(pv);
            if let Some(host) = owner.and_then(registry::by_key) {
                // Counted like every call (fault positions stay aligned with the trace);
                // a void function has no failure to inject.
                let _ = arrive(CALL, &host);
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
        |_| RawFields::EMPTY,
    )
}

/// `CertSrvBackupOpenFileW`: returns the file size.
pub fn backup_open_file(hbc: Hcsbc, name: &str, read_hint: u32) -> Result<u64> {
    instrument(
        Call::BackupOpenFile,
        |_| {
            RawFields::new(
                &["hbc", "pwszAttachmentName", "cbReadHintSize"],
                [h(hbc), name.into(), read_hint.into()],
            )
        },
        || backup_open_file_impl(hbc, name, read_hint),
        |s| RawFields::new(&["liFileSize"], [RawValue::U64(*s)]),
    )
}

/// `CertSrvBackupRead`: fills `buf` unless the file ends; `Ok(0)` at end of file.
///
/// `buf` is `&mut [u8]` or `&mut [MaybeUninit<u8>]` (memory nobody initialised, as a C
/// caller's `malloc` buffer): it is only written, never read.
pub fn backup_read<B: OutByte>(hbc: Hcsbc, buf: &mut [B]) -> Result<usize> {
    let len = buf.len() as u64;
    instrument(
        Call::BackupRead,
        |_| RawFields::new(&["hbc", "cbBuffer"], [h(hbc), RawValue::U64(len)]),
        || backup_read_impl(hbc, buf),
        |n| RawFields::new(&["read"], [RawValue::U64(*n as u64)]),
    )
}

/// `CertSrvBackupClose`.
pub fn backup_close(hbc: Hcsbc) -> Result<()> {
    instrument(
        Call::BackupClose,
        |_| RawFields::new(&["hbc"], [h(hbc)]),
        || backup_close_impl(hbc),
        |_| RawFields::EMPTY,
    )
}

/// `CertSrvBackupTruncateLogs`: returns the generations deleted.
pub fn backup_truncate_logs(hbc: Hcsbc) -> Result<Vec<u32>> {
    instrument(
        Call::BackupTruncateLogs,
        |_| RawFields::new(&["hbc"], [h(hbc)]),
        || backup_truncate_logs_impl(hbc),
        |d| {
            RawFields::new(
                &["deleted"],
                [Value::List(
                    d.iter()
                        .map(|g| crate::ca::format::log_file_name(*g))
                        .collect(),
                )
                .into()],
            )
        },
    )
}

/// `CertSrvBackupEnd`.
pub fn backup_end(hbc: Hcsbc) -> Result<()> {
    instrument(
        Call::BackupEnd,
        |_| RawFields::new(&["hbc"], [h(hbc)]),
        || backup_end_impl(hbc),
        |_| RawFields::EMPTY,
    )
}

/// `CertSrvServerControlW`: `CSCONTROL_SHUTDOWN` stops the service; 2 and 3 do nothing.
pub fn server_control(server: &str, control_flags: u32) -> Result<()> {
    instrument(
        Call::ServerControl,
        |host| {
            RawFields::new(
                &["pwszServerName", "dwControlFlags"],
                [host.name_value(server), control_flags.into()],
            )
        },
        || server_control_impl(server, control_flags),
        |_| RawFields::EMPTY,
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

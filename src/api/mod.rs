//! The safe Rust API: the certbcli operations with Rust types.
//!
//! Each function routes to its host by server name or handle, checks the session
//! protocol, and returns `Result<T, Error>`; [`Error::hresult`] is the code the
//! ABI returns. The `extern "system"` exports in [`crate::abi`] are thin wrappers
//! over these functions.

pub mod buffers;
pub mod registry;
mod restore;

pub use restore::*;

use crate::ca::{Ca, ServiceState};
use crate::core::consts::*;
use crate::core::{Error, Result, WideList, HRESULT};
use crate::machine::{Identity, Machine};
use crate::session::handle::HandleParts;
use crate::session::{BackupKind, BackupSession, Hcsbc, Session};
use registry::{Host, HostState};
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
pub fn current_client() -> u64 {
    CLIENT.with(|c| {
        if c.get() == 0 {
            c.set(NEXT_CLIENT.fetch_add(1, Ordering::Relaxed));
        }
        c.get()
    })
}

pub(crate) fn lookup_server(call: &'static str, server: &str) -> Result<Arc<Host>> {
    let Some((host, ca_part)) = registry::by_name(server) else {
        return Err(Error::ServerUnavailable {
            call,
            server: server.to_string(),
            why: "no emulated machine has this name (create one with EmulatedCa::builder())".into(),
        });
    };
    if let Some(ca_name) = ca_part {
        let st = host.state.lock();
        match &st.ca {
            Some(ca) if ca.name().eq_ignore_ascii_case(&ca_name) => {}
            _ => {
                return Err(Error::FileNotFound {
                    call,
                    why: format!(
                        "machine {:?} has no CA named {ca_name:?}",
                        host.machine.netbios()
                    ),
                })
            }
        }
    }
    Ok(host)
}

pub(crate) fn lookup_handle(call: &'static str, h: Hcsbc) -> Result<(Arc<Host>, HandleParts)> {
    let parts = h.parts().ok_or_else(|| Error::InvalidHandle {
        call,
        handle: h.as_raw(),
        why: "not a handle returned by CertSrvBackupPrepareW or CertSrvRestorePrepareW".into(),
    })?;
    let host = registry::by_handle(h).ok_or_else(|| Error::InvalidHandle {
        call,
        handle: h.as_raw(),
        why: "its machine no longer exists".into(),
    })?;
    Ok((host, parts))
}

fn stale(call: &'static str, h: Hcsbc) -> Error {
    Error::InvalidHandle {
        call,
        handle: h.as_raw(),
        why: "the session was ended (or never existed); handles are dead after CertSrvBackupEnd / CertSrvRestoreEnd".into(),
    }
}

/// Rule 11 and 12 of spec §6.2: interface flags and the backup privilege.
pub(crate) fn check_backup_access(call: &'static str, id: &Identity, flags: u32) -> Result<()> {
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

fn running(call: &'static str, ca: &Ca, server: &str) -> Result<()> {
    match ca.service() {
        ServiceState::Running => Ok(()),
        ServiceState::Suspended => Err(Error::Suspended {
            call,
            why: "the CA is suspended for a database restore (recovery in progress)".into(),
        }),
        ServiceState::Stopped => Err(Error::ServerUnavailable {
            call,
            server: server.to_string(),
            why: "the CA service is stopped".into(),
        }),
    }
}

fn no_ca(call: &'static str, server: &str) -> Error {
    Error::ServerUnavailable {
        call,
        server: server.to_string(),
        why: "no Certification Authority is installed on this machine".into(),
    }
}

/// Runs `f` on the backup session behind `h`, after the checks every backup call makes.
fn backup_call<R>(
    call: &'static str,
    h: Hcsbc,
    f: impl FnOnce(&mut BackupSession, &mut Ca, &Machine) -> Result<R>,
) -> Result<R> {
    let (host, p) = lookup_handle(call, h)?;
    let mut guard = host.state.lock();
    let HostState {
        ca,
        sessions,
        identity,
        ..
    } = &mut *guard;
    let Some(session) = sessions.get_mut(p.session_slot, p.session_gen) else {
        return Err(stale(call, h));
    };
    let Session::Backup(b) = session else {
        return Err(Error::InvalidHandle {
            call,
            handle: h.as_raw(),
            why: "this is a restore context; this function takes the backup context from CertSrvBackupPrepareW".into(),
        });
    };
    if b.disconnected {
        return Err(Error::Disconnected { call });
    }
    let ca = ca.as_mut().expect("a backup session implies a CA");
    running(call, ca, host.machine.netbios())?;
    check_backup_access(call, identity, ca.interface_flags())?;
    f(b, ca, &host.machine)
}

/// `CertSrvIsServerOnlineW`: `Ok(true)` when running, `Ok(false)` when suspended.
pub fn is_server_online(server: &str) -> Result<bool> {
    const CALL: &str = "CertSrvIsServerOnlineW";
    let host = lookup_server(CALL, server)?;
    let st = host.state.lock();
    let ca = st.ca.as_ref().ok_or_else(|| no_ca(CALL, server))?;
    match ca.service() {
        ServiceState::Running => Ok(true),
        ServiceState::Suspended => Ok(false),
        ServiceState::Stopped => Err(Error::ServerUnavailable {
            call: CALL,
            server: server.to_string(),
            why: "Certificate Services is not running".into(),
        }),
    }
}

/// `CertSrvBackupPrepareW`.
pub fn backup_prepare(server: &str, grbit_jet: u32, backup_flags: u32) -> Result<Hcsbc> {
    const CALL: &str = "CertSrvBackupPrepareW";
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
        let same = matches!(st.sessions.get(s, g), Some(Session::Backup(b)) if b.client == client);
        return Err(if same {
            Error::sequence(
                CALL,
                "this client already has a backup session open; call CertSrvBackupEnd on it before preparing another",
            )
        } else {
            Error::BackupInProgress {
                call: CALL,
                why: "another client's backup session is running on this CA; only one online backup runs at a time".into(),
            }
        });
    }
    if kind == BackupKind::LogsOnly && ca.last_full_backup().is_none() {
        return Err(Error::MissingFullBackup {
            call: CALL,
            why: "the database missed a previous full backup before incremental backup: run a CSBACKUP_TYPE_FULL backup first".into(),
        });
    }
    let (slot, gen) = st
        .sessions
        .insert(Session::Backup(BackupSession::new(kind, client)))
        .ok_or(Error::TooManySessions {
            call: CALL,
            limit: crate::session::handle::SESSION_SLOTS,
        })?;
    if kind == BackupKind::Full {
        ca.freeze();
    }
    st.active_backup = Some((slot, gen));
    Ok(Hcsbc::encode(HandleParts {
        host_slot: host.slot,
        host_gen: host.gen,
        session_slot: slot,
        session_gen: gen,
    }))
}

/// `CertSrvBackupGetDatabaseNamesW`: `'D'` + the `.edb` UNC name.
pub fn backup_get_database_names(h: Hcsbc) -> Result<WideList> {
    backup_call("CertSrvBackupGetDatabaseNamesW", h, |b, ca, m| {
        b.database_names(ca, m)
    })
}

/// `CertSrvBackupGetDynamicFileListW`: the CRL and CA certificate, unprefixed UNC names.
pub fn backup_get_dynamic_file_list(h: Hcsbc) -> Result<WideList> {
    backup_call("CertSrvBackupGetDynamicFileListW", h, |_, ca, m| {
        let names: Vec<String> = ca.dynamic_files(m).iter().map(|p| m.unc(p)).collect();
        Ok(WideList::from_entries(
            names.iter().map(|n| (None, n.as_str())),
        ))
    })
}

/// `CertSrvBackupOpenFileW`: returns the file size.
pub fn backup_open_file(h: Hcsbc, name: &str, read_hint: u32) -> Result<u64> {
    backup_call("CertSrvBackupOpenFileW", h, |b, ca, m| {
        b.open_file(ca, m, name, read_hint)
    })
}

/// `CertSrvBackupRead`: fills `buf` unless the file ends; `Ok(0)` at end of file.
pub fn backup_read(h: Hcsbc, buf: &mut [u8]) -> Result<usize> {
    backup_call("CertSrvBackupRead", h, |b, _, _| b.read(buf))
}

/// `CertSrvBackupClose`.
pub fn backup_close(h: Hcsbc) -> Result<()> {
    backup_call("CertSrvBackupClose", h, |b, _, _| b.close())
}

/// `CertSrvBackupGetBackupLogsW`: rolls the current log; `'!'` + UNC per generation.
pub fn backup_get_backup_logs(h: Hcsbc) -> Result<WideList> {
    backup_call("CertSrvBackupGetBackupLogsW", h, |b, ca, m| {
        b.backup_logs(ca, m)
    })
}

/// `CertSrvBackupTruncateLogs`: returns the generations deleted.
pub fn backup_truncate_logs(h: Hcsbc) -> Result<Vec<u32>> {
    backup_call("CertSrvBackupTruncateLogs", h, |b, ca, m| b.truncate(ca, m))
}

/// `CertSrvBackupEnd`.
pub fn backup_end(h: Hcsbc) -> Result<()> {
    const CALL: &str = "CertSrvBackupEnd";
    let (host, p) = lookup_handle(CALL, h)?;
    let mut guard = host.state.lock();
    let st = &mut *guard;
    match st.sessions.get(p.session_slot, p.session_gen) {
        None => return Err(stale(CALL, h)),
        Some(Session::Restore(_)) => {
            return Err(Error::InvalidHandle {
                call: CALL,
                handle: h.as_raw(),
                why: "this is a restore context; end it with CertSrvRestoreEnd".into(),
            })
        }
        Some(Session::Backup(b)) => {
            if !b.disconnected {
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
pub fn server_control(server: &str, control_flags: u32) -> Result<()> {
    const CALL: &str = "CertSrvServerControlW";
    let host = lookup_server(CALL, server)?;
    let mut guard = host.state.lock();
    let st = &mut *guard;
    let ca = st.ca.as_ref().ok_or_else(|| no_ca(CALL, server))?;
    if ca.service() == ServiceState::Stopped {
        return Err(Error::ServerUnavailable {
            call: CALL,
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

/// Stops the CA cleanly: open backup sessions are disconnected (only End works on them).
pub(crate) fn stop_host(st: &mut HostState, machine: &Machine) -> Result<()> {
    for (_, _, s) in st.sessions.iter_mut() {
        if let Session::Backup(b) = s {
            b.disconnected = true;
            b.open = None;
        }
    }
    st.active_backup = None;
    let ca = st
        .ca
        .as_mut()
        .ok_or_else(|| no_ca("stop", machine.netbios()))?;
    ca.stop(machine)
}

/// Decodes a caller-supplied HRESULT for messages.
pub fn describe(hr: HRESULT) -> String {
    hr.to_string()
}

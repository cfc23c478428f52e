//! The restore half of certbcli (spec §5.12–§5.17, §6.2 rows 13–17).

use super::registry::HostState;
use super::{backup_call, lookup_handle, lookup_server, stale};
use crate::ca::recovery::{MarkerStore, RestoreMarker};
use crate::ca::{Ca, ServiceState};
use crate::core::consts::*;
use crate::core::{Error, Result, WideList, HRESULT};
use crate::machine::Machine;
use crate::session::handle::HandleParts;
use crate::session::{Hcsbc, RestoreSession, Session};

/// The database locations list: `'D'` + database, 0x82 + log directory, 0x83 + checkpoint directory.
pub(crate) fn locations(ca: &Ca, m: &Machine) -> WideList {
    let db = m.unc(&ca.database_path());
    let logs = m.unc(ca.log_dir());
    let sys = m.unc(ca.system_dir());
    WideList::from_entries([
        (Some(CSBFT_CERTSERVER_DATABASE), db.as_str()),
        (Some(CSBFT_LOG_DIR), logs.as_str()),
        (Some(CSBFT_CHECKPOINT_DIR), sys.as_str()),
    ])
}

/// `CertSrvRestoreGetDatabaseLocationsW`, with a backup or a restore context.
pub fn restore_get_database_locations(h: Hcsbc) -> Result<WideList> {
    const CALL: &str = "CertSrvRestoreGetDatabaseLocationsW";
    let (host, p) = lookup_handle(CALL, h)?;
    let is_backup = {
        let st = host.state.lock();
        match st.sessions.get(p.session_slot, p.session_gen) {
            None => return Err(stale(CALL, h)),
            Some(s) => matches!(s, Session::Backup(_)),
        }
    };
    drop(host);
    if is_backup {
        return backup_call(CALL, h, |b, ca, m| {
            b.locations_fetched = true;
            Ok(locations(ca, m))
        });
    }
    let (host, _) = lookup_handle(CALL, h)?;
    let st = host.state.lock();
    let ca = st.ca.as_ref().expect("a restore session implies a CA");
    if ca.service() != ServiceState::Running {
        return Err(Error::ServerUnavailable {
            call: CALL,
            server: host.machine.netbios().to_string(),
            why: "Certificate Services must be running for this method to succeed; use the locations saved at backup time (certbkxp.dat)".into(),
        });
    }
    Ok(locations(ca, &host.machine))
}

/// `CertSrvRestorePrepareW`: `CSRESTORE_TYPE_FULL` for a full set, 0 for an incremental set.
pub fn restore_prepare(server: &str, restore_flags: u32) -> Result<Hcsbc> {
    const CALL: &str = "CertSrvRestorePrepareW";
    if restore_flags & !CSRESTORE_TYPE_MASK != 0 || restore_flags & CSRESTORE_TYPE_CATCHUP != 0 {
        return Err(Error::invalid_arg(
            CALL,
            format!("dwRestoreFlags {restore_flags:#x}: only CSRESTORE_TYPE_FULL (1) or 0 (incremental) are supported; ONLINE and CATCHUP are \"not yet supported\" in certbcli.h"),
        ));
    }
    let host = lookup_server(CALL, server)?;
    let client = super::current_client();
    let mut guard = host.state.lock();
    let st = &mut *guard;
    if st.ca.is_none() {
        return Err(Error::FileNotFound {
            call: CALL,
            why: "no Certification Authority is installed on this machine".into(),
        });
    }
    if !st.identity.restore_privilege {
        return Err(Error::access_denied(
            CALL,
            "the caller lacks SeRestorePrivilege",
        ));
    }
    let full = restore_flags & CSRESTORE_TYPE_FULL != 0;
    let (slot, gen) = st
        .sessions
        .insert(Session::Restore(RestoreSession::new(full, client)))
        .ok_or(Error::TooManySessions {
            call: CALL,
            limit: crate::session::handle::SESSION_SLOTS,
        })?;
    Ok(Hcsbc::encode(HandleParts {
        host_slot: host.slot,
        host_gen: host.gen,
        session_slot: slot,
        session_gen: gen,
    }))
}

/// The arguments of `CertSrvRestoreRegisterW` / `...ThroughFile`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// `pwszCheckPointFilePath`.
    pub checkpoint_path: Option<String>,
    /// `pwszLogPath`.
    pub log_path: Option<String>,
    /// `rgrstmap`: (database name as backed up, new database name).
    pub restore_map: Vec<(String, String)>,
    /// `pwszBackupLogPath`.
    pub backup_log_path: Option<String>,
    /// `genLow`.
    pub gen_low: u32,
    /// `genHigh`.
    pub gen_high: u32,
}

fn restore_session<'a>(
    call: &'static str,
    h: Hcsbc,
    st: &'a mut HostState,
    p: HandleParts,
) -> Result<&'a mut RestoreSession> {
    match st.sessions.get_mut(p.session_slot, p.session_gen) {
        None => Err(stale(call, h)),
        Some(Session::Backup(_)) => Err(Error::InvalidHandle {
            call,
            handle: h.as_raw(),
            why: "this is a backup context; restore functions take the context from CertSrvRestorePrepareW".into(),
        }),
        Some(Session::Restore(r)) => Ok(r),
    }
}

/// `CertSrvRestoreRegisterW` (`through_file == false`, needs local administrator) or
/// `CertSrvRestoreRegisterThroughFile` (needs only the restore privilege).
pub fn restore_register(h: Option<Hcsbc>, reg: &Registration, through_file: bool) -> Result<()> {
    let call: &'static str = if through_file {
        "CertSrvRestoreRegisterThroughFile"
    } else {
        "CertSrvRestoreRegisterW"
    };
    let h = h.ok_or_else(|| Error::InvalidHandle {
        call,
        handle: 0,
        why: "hbc is NULL; pass the context from CertSrvRestorePrepareW so the emulator knows which CA to register with".into(),
    })?;
    let (host, p) = lookup_handle(call, h)?;
    let mut guard = host.state.lock();
    let st = &mut *guard;
    let full = restore_session(call, h, st, p)?.full;
    if through_file {
        if !st.identity.restore_privilege {
            return Err(Error::access_denied(
                call,
                "the caller lacks SeRestorePrivilege",
            ));
        }
    } else if !st.identity.local_admin {
        return Err(Error::access_denied(
            call,
            "CertSrvRestoreRegisterW needs a local administrator; use CertSrvRestoreRegisterThroughFile with only SeRestorePrivilege",
        ));
    }
    let m = &host.machine;
    let ca = st.ca.as_mut().expect("a restore session implies a CA");
    if ca.service() != ServiceState::Stopped {
        return Err(Error::SharingViolation {
            call,
            why: "Certificate Services is running and holds its database files; stop it (CertSrvServerControlW CSCONTROL_SHUTDOWN) before restoring".into(),
        });
    }
    if reg.gen_low == 0 || reg.gen_low > reg.gen_high {
        return Err(Error::invalid_arg(
            call,
            format!(
                "genLow {} / genHigh {}: log numbers start at 1 (edb00001.log) and genLow <= genHigh",
                reg.gen_low, reg.gen_high
            ),
        ));
    }
    for path in [&reg.checkpoint_path, &reg.log_path, &reg.backup_log_path]
        .into_iter()
        .flatten()
    {
        m.parse_path(path)?;
    }
    for (old, new) in &reg.restore_map {
        m.parse_path(old)?;
        m.parse_path(new)?;
    }
    if full && reg.restore_map.is_empty() {
        return Err(Error::invalid_arg(
            call,
            "a full restore (CSRESTORE_TYPE_FULL) needs its restore map: rgrstmap with crstmap = 1",
        ));
    }
    if !full && !reg.restore_map.is_empty() {
        return Err(Error::invalid_arg(
            call,
            "an incremental restore passes no restore map (rgrstmap NULL, crstmap 0)",
        ));
    }
    let existing = ca.restore.marker.clone();
    if let Some(mk) = &existing {
        if mk.pending {
            return Err(Error::RestoreInProgress {
                call,
                why: "a restore is registered and CertSrvRestoreRegisterComplete was not called yet; complete it first".into(),
            });
        }
    }
    let marker = if full {
        RestoreMarker {
            checkpoint_path: reg.checkpoint_path.clone(),
            log_path: reg.log_path.clone(),
            backup_log_paths: reg.backup_log_path.iter().cloned().collect(),
            restore_map: reg.restore_map.clone(),
            gen_low: reg.gen_low,
            gen_high: reg.gen_high,
            pending: true,
            status: None,
            through_file,
        }
    } else {
        match existing {
            Some(mut mk) if !mk.restore_map.is_empty() => {
                mk.gen_low = mk.gen_low.min(reg.gen_low);
                mk.gen_high = mk.gen_high.max(reg.gen_high);
                if reg.log_path.is_some() {
                    mk.log_path = reg.log_path.clone();
                }
                mk.backup_log_paths.extend(reg.backup_log_path.iter().cloned());
                mk.pending = true;
                mk.status = None;
                mk.through_file |= through_file;
                mk
            }
            _ => {
                return Err(Error::sequence(
                    call,
                    "register the full backup (CSRESTORE_TYPE_FULL, with its restore map) before any incremental set",
                ))
            }
        }
    };
    MarkerStore::save(m, ca, &marker)?;
    ca.restore.marker = Some(marker);
    let r = restore_session(call, h, st, p)?;
    r.registered = true;
    r.completed = false;
    Ok(())
}

/// `CertSrvRestoreRegisterComplete`: records `S_OK` or the failure the client reports.
pub fn restore_register_complete(h: Option<Hcsbc>, restore_state: HRESULT) -> Result<()> {
    const CALL: &str = "CertSrvRestoreRegisterComplete";
    let h = h.ok_or_else(|| Error::InvalidHandle {
        call: CALL,
        handle: 0,
        why: "hbc is NULL; pass the context you registered with".into(),
    })?;
    let (host, p) = lookup_handle(CALL, h)?;
    let mut guard = host.state.lock();
    let st = &mut *guard;
    let r = restore_session(CALL, h, st, p)?;
    if !r.registered {
        return Err(Error::sequence(
            CALL,
            "nothing was registered through this context; call CertSrvRestoreRegisterW first",
        ));
    }
    if r.completed {
        return Err(Error::sequence(
            CALL,
            "this registration is already complete; register the next set first",
        ));
    }
    if restore_state.is_ok() && restore_state != HRESULT::S_OK {
        return Err(Error::invalid_arg(
            CALL,
            format!("hrRestoreState {restore_state} is a success code other than S_OK; pass S_OK or the failure HRESULT"),
        ));
    }
    r.completed = true;
    let ca = st.ca.as_mut().expect("a restore session implies a CA");
    if let Some(mut mk) = ca.restore.marker.clone() {
        mk.pending = false;
        mk.status = Some(restore_state);
        MarkerStore::save(&host.machine, ca, &mk)?;
        ca.restore.marker = Some(mk);
    }
    Ok(())
}

/// `CertSrvRestoreEnd`.
pub fn restore_end(h: Hcsbc) -> Result<()> {
    const CALL: &str = "CertSrvRestoreEnd";
    let (host, p) = lookup_handle(CALL, h)?;
    let mut guard = host.state.lock();
    let st = &mut *guard;
    restore_session(CALL, h, st, p)?;
    st.sessions.remove(p.session_slot, p.session_gen);
    Ok(())
}

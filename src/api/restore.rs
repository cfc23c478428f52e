//! The restore half of certbcli (spec §5.12–§5.17, §6.2 rows 13–17).

use super::registry::{Host, HostState};
use super::route::{instrument, Frame};
use super::{check_backup_access, lookup_handle, lookup_server, stale};
use crate::ca::recovery::{MarkerStore, RestoreMarker};
use crate::ca::{Ca, ServiceState};
use crate::core::consts::*;
use crate::core::{Call, Error, Result, WideList, HRESULT};
use crate::event::{Form, Slot, Value};
use crate::machine::fs::only_links;
use crate::machine::Machine;
use crate::session::handle::HandleParts;
use crate::session::{Hcsbc, Registration, RestoreSession, Session};
use std::sync::Arc;

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

pub(crate) fn restore_get_database_locations_impl(
    fr: &mut Frame<'_>,
    h: Hcsbc,
) -> Result<WideList> {
    const CALL: Call = Call::RestoreGetDatabaseLocations;
    let (host, p) = lookup_handle(fr, h)?;
    let st = fr.lock();
    // The locations come from the running service; a stopped one is answered
    // differently for a backup handle and for a restore handle (where the saved
    // certbkxp.dat is the way), and only a backup handle is checked for access.
    let (stopped, backup) = match st.sessions.get(p.session_slot, p.session_gen) {
        None => return Err(stale(CALL, h)),
        Some(Session::Backup(b)) if b.is_disconnected() => {
            return Err(Error::Disconnected { call: CALL.name() })
        }
        Some(Session::Backup(_)) => ("the CA service is stopped", true),
        Some(Session::Restore(_)) => (
            "Certificate Services must be running for this method to succeed; use the locations saved at backup time (certbkxp.dat)",
            false,
        ),
    };
    let ca = st.ca.as_ref().expect("a session implies a CA");
    match ca.service() {
        ServiceState::Running => {}
        ServiceState::Suspended => {
            return Err(Error::Suspended {
                call: CALL.name(),
                why: "the CA is suspended for a database restore (recovery in progress)".into(),
            })
        }
        ServiceState::Stopped => {
            return Err(Error::ServerUnavailable {
                call: CALL.name(),
                server: host.machine.netbios().to_string(),
                why: stopped.into(),
            })
        }
    }
    if backup {
        check_backup_access(CALL, &st.identity, ca.interface_flags())?;
    }
    Ok(locations(ca, &host.machine))
}

/// `CertSrvRestorePrepareW`: `CSRESTORE_TYPE_FULL` for a full set, 0 for an incremental set.
fn restore_prepare_impl(fr: &mut Frame<'_>, server: &str, restore_flags: u32) -> Result<Hcsbc> {
    const CALL: Call = Call::RestorePrepare;
    if restore_flags & !CSRESTORE_TYPE_MASK != 0 || restore_flags & CSRESTORE_TYPE_CATCHUP != 0 {
        return Err(Error::invalid_arg(
            CALL,
            format!("dwRestoreFlags {restore_flags:#x}: only CSRESTORE_TYPE_FULL (1) or 0 (incremental) are supported; ONLINE and CATCHUP are \"not yet supported\" in certbcli.h"),
        ));
    }
    let host = lookup_server(fr, server)?;
    let client = super::current_client();
    let st = fr.lock();
    if st.ca.is_none() {
        return Err(Error::FileNotFound {
            call: CALL.name(),
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
    let (slot, generation) = st
        .sessions
        .open(CALL, Session::Restore(RestoreSession::new(full, client)))?;
    Ok(Hcsbc::encode(HandleParts {
        host_slot: host.slot,
        host_gen: host.generation,
        session_slot: slot,
        session_gen: generation,
    }))
}

fn restore_session(
    call: Call,
    h: Hcsbc,
    st: &mut HostState,
    p: HandleParts,
) -> Result<&mut RestoreSession> {
    match st.sessions.get_mut(p.session_slot, p.session_gen) {
        None => Err(stale(call, h)),
        Some(Session::Backup(_)) => Err(Error::sequence(
            call,
            "this is a backup context: no CertSrvRestorePrepareW started a restore on it; pass the context from CertSrvRestorePrepareW",
        )),
        Some(Session::Restore(r)) => Ok(r),
    }
}

/// [`lookup_handle`] of a handle the caller may pass as NULL (the registrations take it
/// as optional, to say here what it should have been: `instead`).
fn lookup_optional<'h>(
    fr: &mut Frame<'h>,
    h: Option<Hcsbc>,
    instead: &str,
) -> Result<(Hcsbc, &'h Arc<Host>, HandleParts)> {
    let h = h.ok_or_else(|| Error::InvalidHandle {
        call: fr.call().name(),
        handle: 0,
        why: format!("hbc is NULL; {instead}"),
    })?;
    let (host, p) = lookup_handle(fr, h)?;
    Ok((h, host, p))
}

/// `CertSrvRestoreRegisterW` (`through_file == false`, needs local administrator) or
/// `CertSrvRestoreRegisterThroughFile` (needs only the restore privilege).
fn restore_register_impl(
    fr: &mut Frame<'_>,
    h: Option<Hcsbc>,
    reg: &Registration,
    through_file: bool,
) -> Result<()> {
    let call = Call::restore_register(through_file);
    let (h, host, p) = lookup_optional(
        fr,
        h,
        "pass the context from CertSrvRestorePrepareW so the emulator knows which CA to register with",
    )?;
    let st = fr.lock();
    let full = restore_session(call, h, st, p)?.is_full();
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
            format!(
                "{} needs a local administrator; use {} with only SeRestorePrivilege",
                Call::RestoreRegister,
                Call::RestoreRegisterThroughFile
            ),
        ));
    }
    let m = &host.machine;
    let ca = st.ca.as_mut().expect("a restore session implies a CA");
    if ca.service() != ServiceState::Stopped
        && ca.restore.marker.as_ref().is_some_and(|m| m.pending)
    {
        // The service waits, suspended, on this very registration: the interlock answers.
        return Err(Error::RestoreInProgress {
            call: call.name(),
            why: "a restore is registered and CertSrvRestoreRegisterComplete was not called yet (the service waits on it, suspended); complete it first".into(),
        });
    }
    if ca.service() != ServiceState::Stopped {
        return Err(Error::SharingViolation {
            call: call.name(),
            why: "Certificate Services is running and holds its database files; stop it (CertSrvServerControlW CSCONTROL_SHUTDOWN) before restoring".into(),
        });
    }
    crate::core::limits::RESTORE_MAP_ENTRIES.check(call.name(), reg.restore_map.len() as u64)?;
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
    // The folders and the database the recovery will read: a link beneath the root is
    // refused now (E_ACCESSDENIED), and again when recovery resolves them.
    let fs = m.fs();
    for path in [&reg.checkpoint_path, &reg.log_path, &reg.backup_log_path]
        .into_iter()
        .flatten()
    {
        fs.check_tree(m.parse_path(path)?)?;
    }
    for (_, new) in &reg.restore_map {
        let db = m.parse_path(new)?;
        fs.resolve(&db).map(drop).or_else(only_links)?;
        fs.check_tree(db.parent())?;
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
                call: call.name(),
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
            Some(mk) if mk.status.is_some_and(|h| h.is_err()) => {
                return Err(Error::sequence(
                    call,
                    format!(
                        "the registered full set was completed with failure {}; register the full set again before adding incremental sets",
                        mk.status.unwrap()
                    ),
                ))
            }
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
    ca.save_registry(m)?;
    restore_session(call, h, st, p)?.register();
    Ok(())
}

/// `CertSrvRestoreRegisterComplete`: records `S_OK` or the failure the client reports.
fn restore_register_complete_impl(
    fr: &mut Frame<'_>,
    h: Option<Hcsbc>,
    restore_state: HRESULT,
) -> Result<()> {
    const CALL: Call = Call::RestoreRegisterComplete;
    let (h, host, p) = lookup_optional(fr, h, "pass the context you registered with")?;
    let st = fr.lock();
    let r = restore_session(CALL, h, st, p)?;
    r.check_completable(CALL.name())?;
    if restore_state.is_ok() && restore_state != HRESULT::S_OK {
        return Err(Error::invalid_arg(
            CALL,
            format!("hrRestoreState {restore_state} is a success code other than S_OK; pass S_OK or the failure HRESULT"),
        ));
    }
    r.complete();
    let ca = st.ca.as_mut().expect("a restore session implies a CA");
    if let Some(mut mk) = ca.restore.marker.clone() {
        mk.pending = false;
        mk.status = Some(restore_state);
        MarkerStore::save(&host.machine, ca, &mk)?;
        ca.restore.marker = Some(mk);
        ca.save_registry(&host.machine)?;
    }
    Ok(())
}

/// `CertSrvRestoreEnd`.
fn restore_end_impl(fr: &mut Frame<'_>, h: Hcsbc) -> Result<()> {
    const CALL: Call = Call::RestoreEnd;
    let (_, p) = lookup_handle(fr, h)?;
    let st = fr.lock();
    restore_session(CALL, h, st, p)?;
    st.sessions.remove(p.session_slot, p.session_gen);
    Ok(())
}

fn hv(h: Option<Hcsbc>) -> Slot {
    Slot::handle(h.map_or(0, |h| h.as_raw() as u64))
}

/// `CertSrvRestorePrepareW`: `CSRESTORE_TYPE_FULL` for a full set, 0 for an incremental set.
pub fn restore_prepare(server: &str, restore_flags: u32) -> Result<Hcsbc> {
    static FORM: Form = Form::new(&["pwszServerName", "dwRestoreFlags"], &["hbc"]);
    instrument(
        Call::RestorePrepare,
        &FORM,
        |host, x| [host.name_value(server, x), restore_flags.into()],
        |fr| restore_prepare_impl(fr, server, restore_flags),
        |v, _| [hv(Some(*v))],
    )
}

/// `CertSrvRestoreRegisterW` (`through_file == false`, needs local administrator) or
/// `CertSrvRestoreRegisterThroughFile` (needs only the restore privilege).
pub fn restore_register(h: Option<Hcsbc>, reg: &Registration, through_file: bool) -> Result<()> {
    static FORM: Form = Form::new(
        &[
            "hbc",
            "pwszCheckPointFilePath",
            "pwszLogPath",
            "rgrstmap",
            "crstmap",
            "pwszBackupLogPath",
            "genLow",
            "genHigh",
        ],
        &[],
    );
    instrument(
        Call::restore_register(through_file),
        &FORM,
        |_, x| {
            [
                hv(h),
                x.opt_str(reg.checkpoint_path.as_deref()),
                x.opt_str(reg.log_path.as_deref()),
                x.value(Value::List(
                    reg.restore_map
                        .iter()
                        .map(|(a, b)| format!("{a} -> {b}"))
                        .collect(),
                )),
                Slot::num(reg.restore_map.len() as u64),
                x.opt_str(reg.backup_log_path.as_deref()),
                reg.gen_low.into(),
                reg.gen_high.into(),
            ]
        },
        |fr| restore_register_impl(fr, h, reg, through_file),
        |_, _| [],
    )
}

/// `CertSrvRestoreRegisterComplete`: records `S_OK` or the failure the client reports.
pub fn restore_register_complete(h: Option<Hcsbc>, restore_state: HRESULT) -> Result<()> {
    static FORM: Form = Form::new(&["hbc", "hrRestoreState"], &[]);
    instrument(
        Call::RestoreRegisterComplete,
        &FORM,
        |_, _| [hv(h), Slot::hr(restore_state)],
        |fr| restore_register_complete_impl(fr, h, restore_state),
        |_, _| [],
    )
}

/// `CertSrvRestoreEnd`.
pub fn restore_end(h: Hcsbc) -> Result<()> {
    super::only_hbc(Call::RestoreEnd, h, |fr| restore_end_impl(fr, h))
}

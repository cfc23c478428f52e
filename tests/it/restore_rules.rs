//! The restore rules of spec §6.2 (rows 13–17), §5.12–§5.17 and §8.3–§8.7: one test per
//! rule, named after it, asserting the exact HRESULT and the state after; then the
//! recovery failures a bad restore set produces (each leaves the CA stopped and its files
//! untouched, so fixing the files and starting again succeeds), surviving newer logs,
//! and path containment of every restore path.
//!
//! The restore steps go through the `extern "system"` exports, as a Windows client calls
//! Certadm.dll; the reference client (`backup_to_dir` / `restore_from_dirs`) makes the
//! backup sets and the known-good restores.

use crate::codes::*;
use crate::common::snapshot;
use certadm_emu::abi::{
    CertSrvBackupPrepareW, CertSrvIsServerOnlineW, CertSrvRestoreEnd,
    CertSrvRestoreGetDatabaseLocationsW, CertSrvRestorePrepareW, CertSrvRestoreRegisterComplete,
    CertSrvRestoreRegisterThroughFile, CertSrvRestoreRegisterW, CSEDB_RSTMAPW,
};
use certadm_emu::api;
use certadm_emu::ca::format::{decode_log, log_file_name, parse_log_file_name};
use certadm_emu::ca::recovery::MarkerStore;
use certadm_emu::ca::{Record, ServiceState};
use certadm_emu::client::{
    backup_to_dir, read_locations, restore_from_dirs, BackupOptions, BackupSummary, RestoreOptions,
    SavedLocations,
};
use certadm_emu::conformance::RESTORE_LOST_DATA;
use certadm_emu::core::consts::*;
use certadm_emu::core::wide::to_wide_nul;
use certadm_emu::machine::Identity;
use certadm_emu::{EmulatedCa, WideList, HRESULT};
use core::ffi::c_void;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

// ----- fixture ---------------------------------------------------------------------------

/// A CA with some activity and a full backup of it in certutil layout.
struct Fixture {
    ca: EmulatedCa,
    dir: tempfile::TempDir,
    full: PathBuf,
    summary: BackupSummary,
    /// `ca.records().collect::<Vec<_>>()` when the full backup finished.
    at_backup: Vec<Record>,
}

fn quiet() -> impl FnMut(&str, u64, u64) {
    |_, _, _| {}
}

fn fixture(ca_name: &str, seed: u64) -> Fixture {
    let ca = EmulatedCa::builder()
        .ca_name(ca_name)
        .seed(seed)
        .records(12)
        .log_capacity(4)
        .build()
        .unwrap();
    ca.issue(10).unwrap();
    ca.revoke(2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let summary = full_backup_during_activity(&ca, &full);
    let (low, high) = summary.log_range.unwrap();
    assert!(high > low, "the fixture's full set holds several logs");
    let at_backup = ca.records().collect::<Vec<_>>();
    Fixture {
        ca,
        dir,
        full,
        summary,
        at_backup,
    }
}

impl Fixture {
    fn locations(&self) -> SavedLocations {
        read_locations(&self.full).unwrap()
    }
    fn range(&self) -> (u32, u32) {
        self.summary.log_range.unwrap()
    }
    /// Stops the CA and deletes its files (disk loss), as the documented restore allows.
    fn stop_and_wipe(&self) {
        self.ca.stop().unwrap();
        self.ca.wipe_files().unwrap();
    }
    /// Copies the full set into the CA's directories (no registration).
    fn copy_full_set(&self) {
        copy_set(&self.ca, &self.full, &self.locations(), true);
    }
    /// Registers the full set with the exports (RegisterW, Complete S_OK, End).
    fn register_full(&self) {
        let locs = self.locations();
        let (low, high) = self.range();
        let h = prepare(self.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
        let reg = Reg::full(&locs, low, high);
        assert_eq!(register(h, &reg, false), HRESULT::S_OK);
        assert_eq!(complete(h, HRESULT::S_OK), HRESULT::S_OK);
        assert_eq!(end(h), HRESULT::S_OK);
    }
}

/// A full backup while the CA keeps working: requests issued while the `.edb` is being
/// copied roll logs that the (frozen) database needs, so the set holds several generations.
fn full_backup_during_activity(ca: &EmulatedCa, dir: &Path) -> BackupSummary {
    let mut busy = false;
    let mut progress = |name: &str, _: u64, _: u64| {
        if !busy && name.to_ascii_lowercase().ends_with(".edb") {
            busy = true;
            ca.issue(9).unwrap();
            ca.revoke(15).unwrap();
        }
    };
    let sum = backup_to_dir(
        ca.server_name(),
        dir,
        &BackupOptions::default(),
        &mut progress,
    )
    .unwrap();
    assert!(busy);
    sum
}

fn backup(ca: &EmulatedCa, dir: &Path, incremental: bool, truncate: bool) -> BackupSummary {
    let opts = BackupOptions {
        incremental,
        truncate,
        ..Default::default()
    };
    backup_to_dir(ca.server_name(), dir, &opts, &mut quiet()).unwrap()
}

fn db_dir(backup: &Path) -> PathBuf {
    backup.join(wszDBBACKUPSUBDIR)
}

/// Numbered logs of a backup directory, by generation.
fn logs_of(backup: &Path) -> BTreeMap<u32, PathBuf> {
    std::fs::read_dir(db_dir(backup))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            parse_log_file_name(&e.file_name().to_string_lossy()).map(|g| (g, e.path()))
        })
        .collect()
}

fn edb_of(backup: &Path, locs: &SavedLocations) -> PathBuf {
    db_dir(backup).join(locs.database.rsplit('\\').next().unwrap())
}

/// Host path of a log file name in the CA's log directory.
fn log_dest(ca: &EmulatedCa, locs: &SavedLocations, name: &str) -> PathBuf {
    ca.host_path(&format!("{}\\{}", locs.log_dir, name))
        .unwrap()
}

/// Copies a backup set to the saved locations: the `.edb` (if `with_edb`) and every log.
fn copy_set(ca: &EmulatedCa, backup: &Path, locs: &SavedLocations, with_edb: bool) {
    if with_edb {
        let dst = ca.host_path(&locs.database).unwrap();
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(edb_of(backup, locs), dst).unwrap();
    }
    for src in logs_of(backup).values() {
        let name = src.file_name().unwrap().to_string_lossy().into_owned();
        let dst = log_dest(ca, locs, &name);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(src, dst).unwrap();
    }
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let at = at % b.len();
    b[at] ^= 0x5A;
    std::fs::write(path, b).unwrap();
}

fn hr_of<T: std::fmt::Debug>(r: Result<T, certadm_emu::Error>) -> HRESULT {
    r.expect_err("expected a failure").hresult()
}

fn identity(backup: bool, restore: bool, admin: bool) -> Identity {
    Identity {
        backup_privilege: backup,
        restore_privilege: restore,
        local_admin: admin,
        remote: false,
    }
}

// ----- the exports, as a C client calls them ---------------------------------------------

fn prepare(server: &str, flags: u32) -> Result<*mut c_void, HRESULT> {
    let ws = to_wide_nul(server);
    let mut h: *mut c_void = std::ptr::null_mut();
    // SAFETY: valid string and out-pointer.
    let hr = HRESULT(unsafe { CertSrvRestorePrepareW(ws.as_ptr(), flags, &mut h) });
    if hr == HRESULT::S_OK {
        assert!(!h.is_null());
        Ok(h)
    } else {
        assert!(h.is_null(), "phbc is NULL after a failed Prepare");
        Err(hr)
    }
}

/// The arguments of `CertSrvRestoreRegisterW` / `...ThroughFile`.
#[derive(Clone, Default)]
struct Reg {
    checkpoint: Option<String>,
    log: Option<String>,
    map: Vec<(String, String)>,
    backup_log: Option<String>,
    low: u32,
    high: u32,
}

impl Reg {
    /// What the reference client registers for a full set.
    fn full(locs: &SavedLocations, low: u32, high: u32) -> Reg {
        Reg {
            checkpoint: Some(locs.system_dir.clone()),
            log: Some(locs.log_dir.clone()),
            map: vec![(locs.database.clone(), locs.database.clone())],
            backup_log: Some(locs.log_dir.clone()),
            low,
            high,
        }
    }
    /// An incremental set: no restore map.
    fn incremental(locs: &SavedLocations, low: u32, high: u32) -> Reg {
        Reg {
            map: Vec::new(),
            ..Reg::full(locs, low, high)
        }
    }
}

fn register(h: *mut c_void, reg: &Reg, through_file: bool) -> HRESULT {
    let opt = |s: &Option<String>| s.as_deref().map(to_wide_nul);
    let (cp, lp, blp) = (opt(&reg.checkpoint), opt(&reg.log), opt(&reg.backup_log));
    let ptr = |v: &Option<Vec<u16>>| v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
    let mut names: Vec<(Vec<u16>, Vec<u16>)> = reg
        .map
        .iter()
        .map(|(a, b)| (to_wide_nul(a), to_wide_nul(b)))
        .collect();
    let mut map: Vec<CSEDB_RSTMAPW> = names
        .iter_mut()
        .map(|(a, b)| CSEDB_RSTMAPW {
            pwszDatabaseName: a.as_mut_ptr(),
            pwszNewDatabaseName: b.as_mut_ptr(),
        })
        .collect();
    let pmap = if map.is_empty() {
        std::ptr::null_mut()
    } else {
        map.as_mut_ptr()
    };
    let f = if through_file {
        CertSrvRestoreRegisterThroughFile
    } else {
        CertSrvRestoreRegisterW
    };
    // SAFETY: NUL-terminated strings or NULL; `pmap` valid for `map.len()` entries.
    HRESULT(unsafe {
        f(
            h,
            ptr(&cp),
            ptr(&lp),
            pmap,
            map.len() as i32,
            ptr(&blp),
            reg.low,
            reg.high,
        )
    })
}

fn complete(h: *mut c_void, state: HRESULT) -> HRESULT {
    // SAFETY: any handle value is accepted.
    HRESULT(unsafe { CertSrvRestoreRegisterComplete(h, state.0) })
}

fn end(h: *mut c_void) -> HRESULT {
    // SAFETY: any handle value is accepted.
    HRESULT(unsafe { CertSrvRestoreEnd(h) })
}

/// `CertSrvIsServerOnlineW`: (HRESULT, the BOOL it wrote).
fn is_online(server: &str) -> (HRESULT, i32) {
    let ws = to_wide_nul(server);
    let mut online = 7i32;
    // SAFETY: valid string and out-pointer.
    let hr = HRESULT(unsafe { CertSrvIsServerOnlineW(ws.as_ptr(), &mut online) });
    (hr, online)
}

fn backup_prepare_hr(server: &str, flags: u32) -> HRESULT {
    let ws = to_wide_nul(server);
    let mut h: *mut c_void = std::ptr::null_mut();
    // SAFETY: valid string and out-pointer.
    let hr = HRESULT(unsafe { CertSrvBackupPrepareW(ws.as_ptr(), 0, flags, &mut h) });
    if hr == HRESULT::S_OK {
        api::backup_end(certadm_emu::Hcsbc::from_ptr(h).unwrap()).unwrap();
    }
    hr
}

/// `CertSrvRestoreGetDatabaseLocationsW`: (HRESULT, the list's bytes).
fn get_locations(h: *mut c_void) -> (HRESULT, Vec<u8>) {
    let mut p: *mut u16 = std::ptr::null_mut();
    let mut cb = 0u32;
    // SAFETY: valid out-pointers.
    let hr = HRESULT(unsafe { CertSrvRestoreGetDatabaseLocationsW(h, &mut p, &mut cb) });
    if hr != HRESULT::S_OK {
        assert!(p.is_null());
        return (hr, Vec::new());
    }
    // SAFETY: the emulator returned `cb` bytes at `p`.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, cb as usize) }.to_vec();
    // SAFETY: a buffer of the emulator.
    unsafe { certadm_emu::abi::CertSrvBackupFree(p as *mut c_void) };
    (hr, bytes)
}

fn through_file_marker(ca: &EmulatedCa) -> PathBuf {
    ca.host_path(MarkerStore::THROUGH_FILE).unwrap()
}

fn registry_marker(ca: &EmulatedCa) -> PathBuf {
    MarkerStore::registry_path(ca.machine())
}

/// Starts the CA and asserts a clean recovery of `expected`.
fn start_and_expect(ca: &EmulatedCa, expected: &[Record]) {
    let report = ca.start().unwrap();
    assert!(report.hard, "a registered restore runs hard recovery");
    assert_eq!(report.data_loss, None, "{report:?}");
    assert!(report.backup_end.is_some(), "{report:?}");
    assert!(ca.report().of(RESTORE_LOST_DATA).is_empty());
    assert_eq!(ca.service(), ServiceState::Running);
    assert_eq!(ca.records().collect::<Vec<_>>(), expected);
    assert!(ca.restore_marker().is_none());
    assert!(!registry_marker(ca).exists());
    assert!(!through_file_marker(ca).exists());
}

// ----- §6.2 row 13 -----------------------------------------------------------------------

#[test]
fn rule13_restore_needs_the_ca_not_online() {
    let f = fixture("Rule13 CA", 13);
    let locs = f.locations();
    let (low, high) = f.range();
    let before = f.ca.records().collect::<Vec<_>>();
    // RestorePrepare is local and does not fail while the CA runs (spec §5.13 emulator note).
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    for through_file in [false, true] {
        assert_eq!(
            register(h, &Reg::full(&locs, low, high), through_file),
            SHARING_VIOLATION
        );
        assert_eq!(f.ca.service(), ServiceState::Running);
        assert!(f.ca.restore_marker().is_none());
        assert!(!registry_marker(&f.ca).exists());
        assert!(!through_file_marker(&f.ca).exists());
    }
    // Nothing registered, so there is nothing to complete.
    assert_eq!(complete(h, HRESULT::S_OK), UNEXPECTED);
    assert_eq!(end(h), HRESULT::S_OK);
    assert_eq!(f.ca.records().collect::<Vec<_>>(), before);
    f.ca.issue(1).unwrap(); // lost with the wiped files below

    // Suspended (recovering) is online too: a second registration is refused the same way.
    f.stop_and_wipe();
    f.copy_full_set();
    f.register_full();
    f.ca.begin_start().unwrap();
    assert_eq!(f.ca.service(), ServiceState::Suspended);
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(
        register(h, &Reg::full(&locs, low, high), false),
        SHARING_VIOLATION
    );
    assert_eq!(end(h), HRESULT::S_OK);
    assert_eq!(f.ca.service(), ServiceState::Suspended);
    let report = f.ca.finish_start().unwrap();
    assert!(report.hard);
    assert_eq!(f.ca.records().collect::<Vec<_>>(), f.at_backup);
}

#[test]
fn rule13_restore_get_database_locations_needs_the_service_running() {
    let f = fixture("Rule13 Locations CA", 131);
    let saved = std::fs::read(db_dir(&f.full).join(wszDBBACKUPCERTBACKDAT)).unwrap();

    // Running: a restore context gets the same list the backup saved in certbkxp.dat.
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    let (hr, bytes) = get_locations(h);
    assert_eq!(hr, HRESULT::S_OK);
    assert_eq!(bytes, saved);
    let entries = WideList::parse_bytes(&bytes, true).unwrap();
    let kinds: Vec<_> = entries.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            Some(CSBFT_CERTSERVER_DATABASE),
            Some(CSBFT_LOG_DIR),
            Some(CSBFT_CHECKPOINT_DIR)
        ]
    );

    // Stopped: the documented "Certificate Services must be running" (spec §5.12).
    f.ca.stop().unwrap();
    let (hr, bytes) = get_locations(h);
    assert_eq!(hr, RPC_UNAVAILABLE);
    assert!(bytes.is_empty());
    assert_eq!(f.ca.service(), ServiceState::Stopped);
    // The context stays usable: the restore goes on with the saved locations.
    f.ca.wipe_files().unwrap();
    f.copy_full_set();
    let (low, high) = f.range();
    assert_eq!(
        register(h, &Reg::full(&f.locations(), low, high), false),
        HRESULT::S_OK
    );
    assert_eq!(complete(h, HRESULT::S_OK), HRESULT::S_OK);
    assert_eq!(end(h), HRESULT::S_OK);
    start_and_expect(&f.ca, &f.at_backup);
}

// ----- §6.2 row 14 -----------------------------------------------------------------------

#[test]
fn rule14_restore_register_needs_local_admin() {
    let f = fixture("Rule14 Admin CA", 14);
    f.stop_and_wipe();
    f.copy_full_set();
    f.ca.set_identity(identity(true, true, false));
    let locs = f.locations();
    let (low, high) = f.range();
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(
        register(h, &Reg::full(&locs, low, high), false),
        ACCESS_DENIED
    );
    assert!(f.ca.restore_marker().is_none());
    assert!(!registry_marker(&f.ca).exists());
    assert_eq!(complete(h, HRESULT::S_OK), UNEXPECTED);
    assert_eq!(end(h), HRESULT::S_OK);
    assert_eq!(f.ca.service(), ServiceState::Stopped);

    // The reference client reports the same code from the same call.
    let err = restore_from_dirs(
        f.ca.server_name(),
        &f.full,
        &[],
        &|p| f.ca.host_path(p),
        &RestoreOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.call, "CertSrvRestoreRegisterW");
    assert_eq!(err.hr, ACCESS_DENIED);
    assert!(f.ca.restore_marker().is_none());
}

#[test]
fn rule14_register_through_file_needs_only_the_restore_privilege() {
    let f = fixture("Rule14 ThroughFile CA", 141);
    f.stop_and_wipe();
    // A backup operator: restore privilege, not an administrator, no backup privilege.
    f.ca.set_identity(identity(false, true, false));
    let sum = restore_from_dirs(
        f.ca.server_name(),
        &f.full,
        &[],
        &|p| f.ca.host_path(p),
        &RestoreOptions { through_file: true },
    )
    .unwrap();
    assert!(sum
        .calls
        .iter()
        .any(|(c, hr)| *c == "CertSrvRestoreRegisterThroughFile" && *hr == HRESULT::S_OK));
    let marker = f.ca.restore_marker().expect("registered");
    assert!(marker.through_file);
    assert!(!marker.pending);
    assert_eq!(marker.status, Some(HRESULT::S_OK));
    assert_eq!((marker.gen_low, marker.gen_high), f.range());
    let file = through_file_marker(&f.ca);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("[RestoreInProgress]"), "{text}");
    assert!(
        text.contains(&format!("HighLogNumber={}", f.range().1)),
        "{text}"
    );
    assert!(text.contains("RestoreStatus=0x00000000"), "{text}");
    assert!(
        !registry_marker(&f.ca).exists(),
        "ThroughFile does not write the registry key"
    );
    start_and_expect(&f.ca, &f.at_backup);
}

#[test]
fn rule14_register_through_file_without_restore_privilege_is_denied() {
    let f = fixture("Rule14 NoPriv ThroughFile CA", 142);
    f.stop_and_wipe();
    f.copy_full_set();
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    // The privilege is dropped after Prepare (an administrator whose token lost it).
    f.ca.set_identity(identity(true, false, true));
    let (low, high) = f.range();
    assert_eq!(
        register(h, &Reg::full(&f.locations(), low, high), true),
        ACCESS_DENIED
    );
    assert!(f.ca.restore_marker().is_none());
    assert!(!through_file_marker(&f.ca).exists());
    assert_eq!(end(h), HRESULT::S_OK);
}

#[test]
fn rule14_restore_prepare_needs_the_restore_privilege() {
    let f = fixture("Rule14 Prepare CA", 143);
    f.ca.stop().unwrap();
    let open = f.ca.sessions_open();
    for id in [identity(true, false, true), identity(false, false, false)] {
        f.ca.set_identity(id);
        for flags in [CSRESTORE_TYPE_FULL, 0] {
            assert_eq!(prepare(f.ca.server_name(), flags), Err(ACCESS_DENIED));
        }
        assert_eq!(f.ca.sessions_open(), open, "no context was created");
    }
    f.ca.set_identity(identity(false, true, false));
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(f.ca.sessions_open(), open + 1);
    assert_eq!(end(h), HRESULT::S_OK);
    assert_eq!(f.ca.sessions_open(), open);
}

// ----- §6.2 row 15 -----------------------------------------------------------------------

#[test]
fn rule15_ca_does_not_start_until_register_complete() {
    let f = fixture("Rule15 CA", 15);
    f.stop_and_wipe();
    f.copy_full_set();
    let (low, high) = f.range();
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(
        register(h, &Reg::full(&f.locations(), low, high), false),
        HRESULT::S_OK
    );
    let marker = f.ca.restore_marker().unwrap();
    assert!(marker.pending);
    assert_eq!(marker.status, None);
    assert!(std::fs::read_to_string(registry_marker(&f.ca))
        .unwrap()
        .contains("RestoreStatus=pending"));

    // The service starts, and waits suspended for a database restore operation (field
    // report F8): the start answers CERTSRV_E_SERVER_SUSPENDED, and so does every request.
    let files = snapshot(&f.ca);
    assert_eq!(hr_of(f.ca.start()), SUSPENDED);
    assert_eq!(f.ca.service(), ServiceState::Suspended);
    assert_eq!(is_online(f.ca.server_name()), (HRESULT::S_OK, 0));
    for flags in [CSBACKUP_TYPE_FULL, CSBACKUP_TYPE_LOGS_ONLY] {
        assert_eq!(backup_prepare_hr(f.ca.server_name(), flags), SUSPENDED);
    }
    assert_eq!(hr_of(f.ca.issue(1)), SUSPENDED);
    assert_eq!(hr_of(f.ca.revoke(1)), SUSPENDED);
    let other = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(get_locations(other).0, SUSPENDED);
    // ESE's own interlock still answers a second registration.
    assert_eq!(
        register(other, &Reg::full(&f.locations(), low, high), false),
        RESTORE_IN_PROGRESS
    );
    assert_eq!(end(other), HRESULT::S_OK);
    // Starting again is refused while it waits; the held start still waits.
    assert_eq!(hr_of(f.ca.begin_start()), INVALID_ARG);
    assert_eq!(hr_of(f.ca.finish_start()), SUSPENDED);
    assert_eq!(f.ca.service(), ServiceState::Suspended);
    assert_eq!(snapshot(&f.ca), files, "a held start touches no file");
    assert!(f.ca.restore_marker().unwrap().pending);
    assert_eq!(f.ca.last_recovery(), None);
    let state = f.ca.state();
    let st = state.ca.as_ref().unwrap();
    assert_eq!(st.service, ServiceState::Suspended);
    assert!(st.restore_marker.unwrap().pending);
    assert!(
        f.ca.leftovers().iter().any(|l| l.contains("suspended")),
        "{:?}",
        f.ca.leftovers()
    );

    // Completing the registration (same context) is a local call: the waiting service
    // does not see it, and stays suspended until it is restarted.
    assert_eq!(complete(h, HRESULT::S_OK), HRESULT::S_OK);
    assert_eq!(end(h), HRESULT::S_OK);
    assert!(!f.ca.restore_marker().unwrap().pending);
    assert_eq!(f.ca.service(), ServiceState::Suspended);
    assert_eq!(is_online(f.ca.server_name()), (HRESULT::S_OK, 0));
    assert_eq!(snapshot(&f.ca).len(), files.len());
    // The restart recovers: nothing was written while it waited.
    f.ca.stop().unwrap();
    assert_eq!(f.ca.service(), ServiceState::Stopped);
    assert_eq!(is_online(f.ca.server_name()).0, RPC_UNAVAILABLE);
    start_and_expect(&f.ca, &f.at_backup);
    assert_eq!(is_online(f.ca.server_name()), (HRESULT::S_OK, 1));
}

#[test]
fn rule15_a_held_start_recovers_when_resumed_after_complete() {
    let f = fixture("Rule15 Resume CA", 152);
    f.stop_and_wipe();
    f.copy_full_set();
    let (low, high) = f.range();
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(
        register(h, &Reg::full(&f.locations(), low, high), true),
        HRESULT::S_OK
    );
    f.ca.begin_start().unwrap();
    assert_eq!(hr_of(f.ca.finish_start()), SUSPENDED);
    assert_eq!(complete(h, HRESULT::S_OK), HRESULT::S_OK);
    assert_eq!(end(h), HRESULT::S_OK);
    // The held start, run again, recovers without a stop.
    let report = f.ca.finish_start().unwrap();
    assert!(report.hard);
    assert_eq!(report.data_loss, None);
    assert_eq!(f.ca.service(), ServiceState::Running);
    assert_eq!(f.ca.records().collect::<Vec<_>>(), f.at_backup);
    assert!(f.ca.restore_marker().is_none());
}

#[test]
fn rule15_a_failure_completed_while_held_stops_the_service_with_it() {
    let f = fixture("Rule15 Failure CA", 153);
    f.stop_and_wipe();
    f.copy_full_set();
    let (low, high) = f.range();
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(
        register(h, &Reg::full(&f.locations(), low, high), false),
        HRESULT::S_OK
    );
    assert_eq!(hr_of(f.ca.start()), SUSPENDED);
    let reported = HRESULT(0x8007_0070u32 as i32); // ERROR_DISK_FULL, say
    assert_eq!(complete(h, reported), HRESULT::S_OK);
    assert_eq!(end(h), HRESULT::S_OK);
    assert_eq!(hr_of(f.ca.finish_start()), reported);
    assert_eq!(f.ca.service(), ServiceState::Stopped);
    assert_eq!(hr_of(f.ca.start()), reported);
    assert_eq!(f.ca.service(), ServiceState::Stopped);
    assert_eq!(f.ca.last_recovery(), None);
}

#[test]
fn rule15_clearing_the_marker_of_a_stuck_restore_lets_the_service_run() {
    let f = fixture("Rule15 Clear CA", 154);
    let before = f.ca.records().collect::<Vec<_>>();
    f.ca.stop().unwrap();
    let (low, high) = f.range();
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(
        register(h, &Reg::full(&f.locations(), low, high), false),
        HRESULT::S_OK
    );
    // The client ends its context without completing: nothing can complete it now.
    assert_eq!(end(h), HRESULT::S_OK);
    assert_eq!(hr_of(f.ca.start()), SUSPENDED);
    assert_eq!(is_online(f.ca.server_name()), (HRESULT::S_OK, 0));
    let again = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(
        register(again, &Reg::full(&f.locations(), low, high), false),
        RESTORE_IN_PROGRESS
    );
    assert_eq!(complete(again, HRESULT::S_OK), UNEXPECTED);
    assert_eq!(end(again), HRESULT::S_OK);

    // The operator removes RestoreInProgress and restarts the service: soft recovery of
    // the CA's own files, which were never replaced.
    f.ca.clear_restore_marker().unwrap();
    assert!(!registry_marker(&f.ca).exists());
    assert_eq!(f.ca.service(), ServiceState::Suspended);
    f.ca.stop().unwrap();
    let report = f.ca.start().unwrap();
    assert!(!report.hard);
    assert_eq!(f.ca.service(), ServiceState::Running);
    assert_eq!(is_online(f.ca.server_name()), (HRESULT::S_OK, 1));
    assert_eq!(f.ca.records().collect::<Vec<_>>(), before);
    assert_eq!(f.ca.last_recovery(), None);
}

#[test]
fn rule15_second_register_before_complete_is_refused() {
    let f = fixture("Rule15 Interlock CA", 151);
    let inc = f.dir.path().join("inc");
    f.ca.issue(5).unwrap();
    let isum = backup(&f.ca, &inc, true, false);
    let at_incremental = f.ca.records().collect::<Vec<_>>();
    f.stop_and_wipe();
    f.copy_full_set();
    let locs = f.locations();
    let (low, high) = f.range();
    let h1 = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(
        register(h1, &Reg::full(&locs, low, high), false),
        HRESULT::S_OK
    );
    let registered = f.ca.restore_marker().unwrap();

    // Another full registration, an incremental one, through either function, or the same
    // context again: all interlocked until Complete (spec §5.14 remarks).
    let (ilow, ihigh) = isum.log_range.unwrap();
    assert!(ilow > high);
    let h2 = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    let h3 = prepare(f.ca.server_name(), 0).unwrap();
    for through_file in [false, true] {
        assert_eq!(
            register(h2, &Reg::full(&locs, low, high), through_file),
            RESTORE_IN_PROGRESS
        );
        assert_eq!(
            register(h3, &Reg::incremental(&locs, ilow, ihigh), through_file),
            RESTORE_IN_PROGRESS
        );
        assert_eq!(
            register(h1, &Reg::full(&locs, low, high), through_file),
            RESTORE_IN_PROGRESS
        );
    }
    assert_eq!(f.ca.restore_marker().unwrap(), registered, "unchanged");
    assert!(!through_file_marker(&f.ca).exists());
    // The refused contexts registered nothing.
    assert_eq!(complete(h2, HRESULT::S_OK), UNEXPECTED);
    assert_eq!(complete(h3, HRESULT::S_OK), UNEXPECTED);

    // After Complete, the incremental registers fine and the chain recovers.
    assert_eq!(complete(h1, HRESULT::S_OK), HRESULT::S_OK);
    copy_set(&f.ca, &inc, &locs, false);
    assert_eq!(
        register(h3, &Reg::incremental(&locs, ilow, ihigh), false),
        HRESULT::S_OK
    );
    assert_eq!(complete(h3, HRESULT::S_OK), HRESULT::S_OK);
    for h in [h1, h2, h3] {
        assert_eq!(end(h), HRESULT::S_OK);
    }
    let marker = f.ca.restore_marker().unwrap();
    assert_eq!((marker.gen_low, marker.gen_high), (low, ihigh));
    start_and_expect(&f.ca, &at_incremental);
}

// ----- §6.2 row 16 -----------------------------------------------------------------------

#[test]
fn rule16_incremental_before_full_is_refused() {
    let f = fixture("Rule16 Order CA", 16);
    let inc = f.dir.path().join("inc");
    f.ca.issue(3).unwrap();
    let isum = backup(&f.ca, &inc, true, false);
    let at_incremental = f.ca.records().collect::<Vec<_>>();
    f.stop_and_wipe();
    let locs = f.locations();
    copy_set(&f.ca, &inc, &locs, false);
    let (ilow, ihigh) = isum.log_range.unwrap();
    let files = snapshot(&f.ca);
    for through_file in [false, true] {
        let h = prepare(f.ca.server_name(), 0).unwrap();
        assert_eq!(
            register(h, &Reg::incremental(&locs, ilow, ihigh), through_file),
            UNEXPECTED
        );
        assert!(f.ca.restore_marker().is_none());
        assert_eq!(complete(h, HRESULT::S_OK), UNEXPECTED);
        assert_eq!(end(h), HRESULT::S_OK);
    }
    assert_eq!(snapshot(&f.ca), files, "no marker file was written");

    // Registering the full set first makes the same incremental acceptable.
    f.copy_full_set();
    f.register_full();
    let h = prepare(f.ca.server_name(), 0).unwrap();
    assert_eq!(
        register(h, &Reg::incremental(&locs, ilow, ihigh), false),
        HRESULT::S_OK
    );
    assert_eq!(complete(h, HRESULT::S_OK), HRESULT::S_OK);
    assert_eq!(end(h), HRESULT::S_OK);
    start_and_expect(&f.ca, &at_incremental);
}

#[test]
fn rule16_incrementals_in_any_order_after_the_full() {
    for order in [[0usize, 1, 2], [2, 0, 1], [1, 2, 0]] {
        let f = fixture("Rule16 Any Order CA", 161);
        let mut incs = Vec::new();
        for i in 0..3u32 {
            f.ca.issue(3 + i).unwrap();
            f.ca.revoke(3 + i).unwrap();
            let dir = f.dir.path().join(format!("inc{i}"));
            let s = backup(&f.ca, &dir, true, i == 1);
            incs.push((dir, s.log_range.unwrap()));
        }
        let expected = f.ca.records().collect::<Vec<_>>();
        f.ca.issue(2).unwrap(); // after the last backup: lost with the wiped files
        f.stop_and_wipe();
        f.copy_full_set();
        f.register_full();
        let locs = f.locations();
        for &i in &order {
            let (dir, (low, high)) = &incs[i];
            // Only this set's logs are copied before its registration (spec §8.3 step 11).
            copy_set(&f.ca, dir, &locs, false);
            let h = prepare(f.ca.server_name(), 0).unwrap();
            assert_eq!(
                register(h, &Reg::incremental(&locs, *low, *high), false),
                HRESULT::S_OK
            );
            assert_eq!(complete(h, HRESULT::S_OK), HRESULT::S_OK);
            assert_eq!(end(h), HRESULT::S_OK);
        }
        let marker = f.ca.restore_marker().unwrap();
        assert_eq!(marker.gen_low, f.range().0, "order {order:?}");
        assert_eq!(marker.gen_high, incs[2].1 .1, "order {order:?}");
        start_and_expect(&f.ca, &expected);
    }
}

// ----- §6.2 row 17 -----------------------------------------------------------------------

#[test]
fn rule17_registered_restore_suspends_the_ca_until_recovered() {
    let f = fixture("Rule17 CA", 17);
    let inc = f.dir.path().join("inc");
    f.ca.issue(4).unwrap();
    backup(&f.ca, &inc, true, true);
    assert!(f.ca.last_full_backup().is_some());
    assert!(f.ca.last_incremental_backup().is_some());
    let expected = f.ca.records().collect::<Vec<_>>();
    f.stop_and_wipe();
    let sum = restore_from_dirs(
        f.ca.server_name(),
        &f.full,
        std::slice::from_ref(&inc),
        &|p| f.ca.host_path(p),
        &RestoreOptions::default(),
    )
    .unwrap();
    assert_eq!(sum.registered.len(), 2);
    assert!(registry_marker(&f.ca).exists());

    f.ca.begin_start().unwrap();
    assert_eq!(f.ca.service(), ServiceState::Suspended);
    assert_eq!(is_online(f.ca.server_name()), (HRESULT::S_OK, 0));
    assert_eq!(
        backup_prepare_hr(f.ca.server_name(), CSBACKUP_TYPE_FULL),
        SUSPENDED
    );
    assert_eq!(
        backup_prepare_hr(f.ca.server_name(), CSBACKUP_TYPE_LOGS_ONLY),
        SUSPENDED
    );
    assert_eq!(hr_of(f.ca.issue(1)), SUSPENDED);
    assert_eq!(hr_of(f.ca.revoke(1)), SUSPENDED);
    assert!(f.ca.restore_marker().is_some(), "kept until recovery ends");
    assert_eq!(f.ca.last_recovery(), None);

    let report = f.ca.finish_start().unwrap();
    assert!(report.hard);
    assert_eq!(f.ca.service(), ServiceState::Running);
    assert_eq!(is_online(f.ca.server_name()), (HRESULT::S_OK, 1));
    assert_eq!(f.ca.records().collect::<Vec<_>>(), expected);
    assert!(f.ca.restore_marker().is_none());
    assert!(!registry_marker(&f.ca).exists());
    assert!(f.ca.last_recovery().is_some());
    assert_eq!(f.ca.last_full_backup(), None);
    assert_eq!(f.ca.last_incremental_backup(), None);

    // Pre-restore backups do not count: an incremental needs a new full backup first.
    let err = backup_to_dir(
        f.ca.server_name(),
        &f.dir.path().join("after-inc"),
        &BackupOptions {
            incremental: true,
            truncate: false,
            ..Default::default()
        },
        &mut quiet(),
    )
    .unwrap_err();
    assert_eq!(err.call, "CertSrvBackupPrepareW");
    assert_eq!(err.hr, MISSING_FULL_BACKUP);
    f.ca.issue(2).unwrap();
    backup(&f.ca, &f.dir.path().join("after-full"), false, true);
    backup(&f.ca, &f.dir.path().join("after-inc2"), true, false);
}

// ----- RegisterComplete, Prepare flags ------------------------------------------------------

#[test]
fn register_complete_with_a_failure_blocks_recovery_with_that_code() {
    let f = fixture("Complete Failure CA", 20);
    f.stop_and_wipe();
    f.copy_full_set();
    let (low, high) = f.range();
    let reported = HRESULT(0x8007_0070u32 as i32); // ERROR_DISK_FULL, say
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(
        register(h, &Reg::full(&f.locations(), low, high), false),
        HRESULT::S_OK
    );
    assert_eq!(complete(h, reported), HRESULT::S_OK);
    assert_eq!(end(h), HRESULT::S_OK);
    let marker = f.ca.restore_marker().unwrap();
    assert!(!marker.pending);
    assert_eq!(marker.status, Some(reported));
    assert!(std::fs::read_to_string(registry_marker(&f.ca))
        .unwrap()
        .contains("RestoreStatus=0x80070070"));

    let files = snapshot(&f.ca);
    for _ in 0..2 {
        assert_eq!(hr_of(f.ca.start()), reported);
        assert_eq!(f.ca.service(), ServiceState::Stopped);
        assert_eq!(f.ca.last_recovery(), None, "no recovery ran");
        assert_eq!(snapshot(&f.ca), files);
    }
    // Registering the restore again with S_OK replaces the failed registration.
    f.register_full();
    start_and_expect(&f.ca, &f.at_backup);
}

#[test]
fn register_complete_failure_of_the_full_set_survives_an_incremental_registration() {
    let f = fixture("Complete Failure Chain CA", 25);
    let inc = f.dir.path().join("inc");
    f.ca.issue(3).unwrap();
    let isum = backup(&f.ca, &inc, true, false);
    f.stop_and_wipe();
    f.copy_full_set();
    let locs = f.locations();
    let (low, high) = f.range();
    let reported = HRESULT(0x8007_0070u32 as i32);
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(
        register(h, &Reg::full(&locs, low, high), false),
        HRESULT::S_OK
    );
    assert_eq!(complete(h, reported), HRESULT::S_OK);
    assert_eq!(end(h), HRESULT::S_OK);

    // The next set of the chain is refused: the full set failed, register it again first.
    copy_set(&f.ca, &inc, &locs, false);
    let (ilow, ihigh) = isum.log_range.unwrap();
    let h = prepare(f.ca.server_name(), 0).unwrap();
    let hr = register(h, &Reg::incremental(&locs, ilow, ihigh), false);
    assert_eq!(hr, UNEXPECTED);
    assert_eq!(end(h), HRESULT::S_OK);

    let files = snapshot(&f.ca);
    let err =
        f.ca.start()
            .expect_err("the full set's restore was reported failed");
    assert_eq!(err.hresult(), reported, "{err}");
    assert_eq!(f.ca.service(), ServiceState::Stopped);
    assert_eq!(f.ca.last_recovery(), None, "no recovery ran");
    assert_eq!(snapshot(&f.ca), files);
}

#[test]
fn register_complete_with_a_success_code_other_than_s_ok_is_invalid() {
    let f = fixture("Complete S_FALSE CA", 21);
    f.stop_and_wipe();
    f.copy_full_set();
    let (low, high) = f.range();
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(
        register(h, &Reg::full(&f.locations(), low, high), false),
        HRESULT::S_OK
    );
    for state in [HRESULT(1), HRESULT(0x0004_0000), HRESULT(i32::MAX)] {
        assert_eq!(complete(h, state), INVALID_ARG, "{state}");
        let marker = f.ca.restore_marker().unwrap();
        assert!(marker.pending, "still not complete");
        assert_eq!(marker.status, None);
    }
    assert_eq!(hr_of(f.ca.start()), SUSPENDED);
    assert_eq!(f.ca.service(), ServiceState::Suspended);
    assert_eq!(complete(h, HRESULT::S_OK), HRESULT::S_OK);
    assert_eq!(end(h), HRESULT::S_OK);
    f.ca.stop().unwrap();
    start_and_expect(&f.ca, &f.at_backup);
}

#[test]
fn register_complete_without_register_is_unexpected() {
    let f = fixture("Complete Alone CA", 22);
    f.ca.stop().unwrap();
    for flags in [CSRESTORE_TYPE_FULL, 0] {
        let h = prepare(f.ca.server_name(), flags).unwrap();
        assert_eq!(complete(h, HRESULT::S_OK), UNEXPECTED);
        assert_eq!(complete(h, HRESULT::E_FAIL), UNEXPECTED);
        assert_eq!(end(h), HRESULT::S_OK);
    }
    assert!(f.ca.restore_marker().is_none());
    // Complete twice on one registration: the second is out of sequence too.
    f.ca.wipe_files().unwrap();
    f.copy_full_set();
    let (low, high) = f.range();
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(
        register(h, &Reg::full(&f.locations(), low, high), false),
        HRESULT::S_OK
    );
    assert_eq!(complete(h, HRESULT::S_OK), HRESULT::S_OK);
    assert_eq!(complete(h, HRESULT::S_OK), UNEXPECTED);
    assert_eq!(end(h), HRESULT::S_OK);
    start_and_expect(&f.ca, &f.at_backup);
}

#[test]
fn restore_prepare_flags_are_validated() {
    let f = fixture("Prepare Flags CA", 23);
    f.ca.stop().unwrap();
    let open = f.ca.sessions_open();
    for flags in [CSRESTORE_TYPE_FULL, 0] {
        let h = prepare(f.ca.server_name(), flags).unwrap();
        assert_eq!(end(h), HRESULT::S_OK);
    }
    // ONLINE and CATCHUP are "not yet supported"; ONLINE is outside CSRESTORE_TYPE_MASK.
    for flags in [
        CSRESTORE_TYPE_ONLINE,
        CSRESTORE_TYPE_CATCHUP,
        CSRESTORE_TYPE_FULL | CSRESTORE_TYPE_ONLINE,
        CSRESTORE_TYPE_MASK,
        CSRESTORE_TYPE_FULL | CSRESTORE_TYPE_CATCHUP,
        0x8,
        0x100,
        0x8000_0000,
        u32::MAX,
    ] {
        assert_eq!(
            prepare(f.ca.server_name(), flags),
            Err(INVALID_ARG),
            "{flags:#x}"
        );
    }
    assert_eq!(f.ca.sessions_open(), open, "no context leaked");
}

#[test]
fn register_checks_the_set_kind_and_log_range() {
    let f = fixture("Register Args CA", 24);
    f.stop_and_wipe();
    f.copy_full_set();
    let locs = f.locations();
    let (low, high) = f.range();
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    // A full set needs its restore map.
    assert_eq!(
        register(h, &Reg::incremental(&locs, low, high), false),
        INVALID_ARG
    );
    // genLow starts at 1 and genLow <= genHigh.
    assert_eq!(register(h, &Reg::full(&locs, 0, high), false), INVALID_ARG);
    assert_eq!(
        register(h, &Reg::full(&locs, high, low), false),
        INVALID_ARG
    );
    assert!(f.ca.restore_marker().is_none());
    let hi = prepare(f.ca.server_name(), 0).unwrap();
    // An incremental set passes no restore map.
    assert_eq!(
        register(hi, &Reg::full(&locs, low, high), false),
        INVALID_ARG
    );
    assert_eq!(end(hi), HRESULT::S_OK);
    assert_eq!(
        register(h, &Reg::full(&locs, low, high), false),
        HRESULT::S_OK
    );
    assert_eq!(complete(h, HRESULT::S_OK), HRESULT::S_OK);
    assert_eq!(end(h), HRESULT::S_OK);
    start_and_expect(&f.ca, &f.at_backup);
}

// ----- recovery failures: exact ESE code, CA stopped, files untouched, fixable --------------

/// Restores the fixture's full set after `damage` changed the copied files, registers
/// `reg` (the correct registration if `None`), and asserts the start fails with `code`,
/// leaving the CA stopped, its marker registered and every file as it was. Then `fix`
/// repairs the files, and the next start recovers the backed-up records.
fn assert_recovery_failure(
    f: &Fixture,
    reg: Option<Reg>,
    damage: impl FnOnce(&Fixture),
    code: HRESULT,
    fix: impl FnOnce(&Fixture),
) {
    f.stop_and_wipe();
    f.copy_full_set();
    damage(f);
    let locs = f.locations();
    let (low, high) = f.range();
    let reg = reg.unwrap_or_else(|| Reg::full(&locs, low, high));
    let h = prepare(f.ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    assert_eq!(register(h, &reg, false), HRESULT::S_OK);
    assert_eq!(complete(h, HRESULT::S_OK), HRESULT::S_OK);
    assert_eq!(end(h), HRESULT::S_OK);
    let files = snapshot(&f.ca);
    let last_recovery = f.ca.last_recovery();
    for _ in 0..2 {
        let err = f.ca.start().expect_err("the damaged set must not start");
        assert_eq!(err.hresult(), code, "{err}");
        assert_eq!(f.ca.service(), ServiceState::Stopped);
        assert_eq!(snapshot(&f.ca), files, "a failed recovery touches no file");
        let marker = f.ca.restore_marker().expect("the registration is kept");
        assert!(!marker.pending);
        assert_eq!(f.ca.last_recovery(), last_recovery, "no recovery ran");
    }
    fix(f);
    start_and_expect(&f.ca, &f.at_backup);
}

fn recopy(f: &Fixture) {
    f.copy_full_set();
}

#[test]
fn recovery_missing_log_generation_is_missing_restore_log_files() {
    let f = fixture("Missing Log CA", 30);
    let (low, high) = f.range();
    for generation in [low, (low + high) / 2, high] {
        assert_recovery_failure(
            &f,
            None,
            |f| {
                let name = logs_of(&f.full)[&generation]
                    .file_name()
                    .unwrap()
                    .to_owned();
                std::fs::remove_file(log_dest(&f.ca, &f.locations(), &name.to_string_lossy()))
                    .unwrap();
            },
            MISSING_RESTORE_LOGS,
            recopy,
        );
        f.ca.issue(1).unwrap();
    }
}

#[test]
fn recovery_log_of_another_ca_is_bad_log_signature() {
    let f = fixture("Signature CA", 31);
    // Another CA with the same name (another seed: another database signature), and one
    // with another name; both with enough generations to replace any of ours.
    let (_, high) = f.range();
    let others = [
        fixture("Signature CA", 9031),
        fixture("Another Name CA", 9032),
    ];
    for (other, generation) in others.iter().zip([high, high - 1]) {
        // Same activity, so the other backup set holds the same generations.
        let src = logs_of(&other.full)[&generation].clone();
        assert_recovery_failure(
            &f,
            None,
            |f| {
                let name = log_file_name(generation);
                std::fs::copy(&src, log_dest(&f.ca, &f.locations(), &name)).unwrap();
            },
            BAD_LOG_SIGNATURE,
            recopy,
        );
        f.ca.issue(1).unwrap();
    }
}

#[test]
fn recovery_swapped_log_names_is_bad_log_signature() {
    let f = fixture("Swapped Logs CA", 32);
    let (low, high) = f.range();
    assert_recovery_failure(
        &f,
        None,
        |f| {
            let logs = logs_of(&f.full);
            let locs = f.locations();
            let name = |g: u32| logs[&g].file_name().unwrap().to_string_lossy().into_owned();
            std::fs::copy(&logs[&low], log_dest(&f.ca, &locs, &name(high))).unwrap();
            std::fs::copy(&logs[&high], log_dest(&f.ca, &locs, &name(low))).unwrap();
        },
        BAD_LOG_SIGNATURE,
        recopy,
    );
}

#[test]
fn recovery_flipped_byte_in_a_log_is_log_file_corrupt() {
    let f = fixture("Flipped Log CA", 33);
    let (low, high) = f.range();
    for (generation, at) in [
        (low, 3usize),
        (high, 40),
        (low + 1, usize::MAX / 2),
        (high, usize::MAX),
    ] {
        assert_recovery_failure(
            &f,
            None,
            |f| {
                let name = logs_of(&f.full)[&generation]
                    .file_name()
                    .unwrap()
                    .to_owned();
                let p = log_dest(&f.ca, &f.locations(), &name.to_string_lossy());
                flip_byte(&p, at);
            },
            LOG_FILE_CORRUPT,
            recopy,
        );
        f.ca.issue(1).unwrap();
    }
}

#[test]
fn recovery_flipped_byte_in_the_database_is_database_corrupted() {
    let f = fixture("Flipped Edb CA", 34);
    for at in [0usize, 12, 40, usize::MAX / 3, usize::MAX] {
        assert_recovery_failure(
            &f,
            None,
            |f| flip_byte(&f.ca.host_path(&f.locations().database).unwrap(), at),
            DATABASE_CORRUPTED,
            recopy,
        );
        f.ca.issue(1).unwrap();
    }
}

#[test]
fn recovery_restore_map_naming_another_database_is_restore_of_non_backup_database() {
    let f = fixture("Map CA", 35);
    let locs = f.locations();
    let (low, high) = f.range();
    let dir = locs.database.rsplit_once('\\').unwrap().0.to_string();
    let mut reg = Reg::full(&locs, low, high);
    reg.map = vec![(format!("{dir}\\Other CA.edb"), locs.database.clone())];
    assert_recovery_failure(
        &f,
        Some(reg),
        |_| {},
        NON_BACKUP_DATABASE,
        // The map is part of the registration: register the set again with the right one.
        |f| f.register_full(),
    );
}

#[test]
fn recovery_database_of_a_ca_with_another_name_is_bad_db_signature() {
    let f = fixture("Db Name CA", 36);
    let other = fixture("Some Other CA", 36);
    let other_edb = edb_of(&other.full, &other.locations());
    assert_recovery_failure(
        &f,
        None,
        |f| {
            std::fs::copy(&other_edb, f.ca.host_path(&f.locations().database).unwrap()).unwrap();
        },
        BAD_DB_SIGNATURE,
        recopy,
    );
}

#[test]
fn recovery_database_of_another_ca_with_the_same_name_is_refused() {
    let f = fixture("Same Name CA", 38);
    let (_, high) = f.range();
    // Another installation of a CA with this name (another seed, so another database
    // signature), stopped with its checkpoint right after our last backed-up generation.
    let other = EmulatedCa::builder()
        .ca_name("Same Name CA")
        .seed(9038)
        .records(3)
        .log_capacity(4)
        .build()
        .unwrap();
    other.issue(4 * high + 1).unwrap();
    other.stop().unwrap();
    assert_eq!(other.checkpoint().generation, high + 1);
    assert_ne!(other.signature(), f.ca.signature());
    let other_edb = other.host_path(&other.database_path()).unwrap();
    f.stop_and_wipe();
    f.copy_full_set();
    std::fs::copy(&other_edb, f.ca.host_path(&f.locations().database).unwrap()).unwrap();
    f.register_full();
    let files = snapshot(&f.ca);
    let result = f.ca.start();
    assert!(
        result.is_err(),
        "the CA started with the other CA's {} records (ours: {})",
        f.ca.record_count(),
        f.at_backup.len()
    );
    // The registered logs are not this database's: JET_errBadLogSignature (or, equally
    // defensible, JET_errRestoreOfNonBackupDatabase as for a later checkpoint).
    let hr = result.unwrap_err().hresult();
    assert!(hr == BAD_LOG_SIGNATURE || hr == NON_BACKUP_DATABASE, "{hr}");
    assert_eq!(f.ca.service(), ServiceState::Stopped);
    assert_eq!(snapshot(&f.ca), files);
}

#[test]
fn recovery_missing_database_file_is_database_corrupted() {
    let f = fixture("No Edb CA", 37);
    assert_recovery_failure(
        &f,
        None,
        |f| std::fs::remove_file(f.ca.host_path(&f.locations().database).unwrap()).unwrap(),
        DATABASE_CORRUPTED,
        recopy,
    );
}

// ----- surviving newer logs ----------------------------------------------------------------

#[test]
fn restore_without_wiping_keeps_the_transactions_after_the_backup() {
    let f = fixture("Surviving Logs CA", 40);
    // After the backup: enough activity to roll several generations, then some in edb.log.
    f.ca.issue(9).unwrap();
    f.ca.revoke(20).unwrap();
    while f.ca.current_position().pos == 0 {
        f.ca.issue(1).unwrap(); // leave transactions in edb.log too
    }
    let at_stop = f.ca.records().collect::<Vec<_>>();
    assert_ne!(at_stop, f.at_backup);
    // restore_from_dirs shuts the running CA down itself (CertSrvServerControlW).
    restore_from_dirs(
        f.ca.server_name(),
        &f.full,
        &[],
        &|p| f.ca.host_path(p),
        &RestoreOptions::default(),
    )
    .unwrap();
    assert_eq!(f.ca.service(), ServiceState::Stopped);
    let report = f.ca.start().unwrap();
    assert!(report.hard);
    assert!(
        report.replayed_generations.last().unwrap() > &f.range().1,
        "{report:?}"
    );
    assert_eq!(f.ca.records().collect::<Vec<_>>(), at_stop);

    // The CA goes on from there, and a soft restart keeps everything.
    f.ca.issue(3).unwrap();
    let now = f.ca.records().collect::<Vec<_>>();
    f.ca.crash();
    f.ca.start().unwrap();
    assert_eq!(f.ca.records().collect::<Vec<_>>(), now);
}

#[test]
fn restore_after_losing_only_the_database_keeps_the_transactions_after_the_backup() {
    let f = fixture("Lost Db CA", 41);
    f.ca.issue(7).unwrap();
    f.ca.revoke(21).unwrap();
    let at_stop = f.ca.records().collect::<Vec<_>>();
    f.ca.stop().unwrap();
    std::fs::remove_file(f.ca.host_path(&f.ca.database_path()).unwrap()).unwrap();
    restore_from_dirs(
        f.ca.server_name(),
        &f.full,
        &[],
        &|p| f.ca.host_path(p),
        &RestoreOptions::default(),
    )
    .unwrap();
    f.ca.start().unwrap();
    assert_eq!(f.ca.records().collect::<Vec<_>>(), at_stop);
}

#[test]
fn restore_after_wiping_returns_to_the_backup() {
    let f = fixture("Wiped CA", 42);
    f.ca.issue(9).unwrap();
    f.stop_and_wipe();
    restore_from_dirs(
        f.ca.server_name(),
        &f.full,
        &[],
        &|p| f.ca.host_path(p),
        &RestoreOptions::default(),
    )
    .unwrap();
    start_and_expect(&f.ca, &f.at_backup);
}

// ----- pre-restore and post-restore histories -----------------------------------------------

/// Two histories of one CA (spec §5.17: backups from before a restore "cannot be mixed"
/// with ones taken after it):
/// * A: full backup F, then transactions in the next generation G, incremental I1 (G..).
/// * restore F (wiped), start: history B begins at generation G too, with other
///   transactions; a clean restart puts B's checkpoint inside G; full backup F2 (G..).
struct Histories {
    ca: EmulatedCa,
    _dir: tempfile::TempDir,
    f: PathBuf,
    i1: PathBuf,
    f2: PathBuf,
    /// Records at I1 (history A) and at F2 (history B).
    at_i1: Vec<Record>,
    at_f2: Vec<Record>,
}

fn two_histories() -> Histories {
    let ca = EmulatedCa::builder()
        .ca_name("Two Histories CA")
        .records(5)
        .log_capacity(4)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (f, i1, f2) = (
        dir.path().join("F"),
        dir.path().join("I1"),
        dir.path().join("F2"),
    );
    ca.issue(3).unwrap();
    let fsum = backup(&ca, &f, false, true);
    let g = fsum.log_range.unwrap().1 + 1;
    ca.issue(2).unwrap();
    ca.revoke(1).unwrap();
    ca.issue(3).unwrap();
    let isum = backup(&ca, &i1, true, false);
    assert_eq!(isum.log_range.unwrap().0, g);
    let at_i1 = ca.records().collect::<Vec<_>>();

    ca.stop().unwrap();
    ca.wipe_files().unwrap();
    restore_from_dirs(
        ca.server_name(),
        &f,
        &[],
        &|p| ca.host_path(p),
        &RestoreOptions::default(),
    )
    .unwrap();
    ca.start().unwrap();
    // Recovery seals the restored chain and starts a new lineage in the next generation,
    // which history A's incremental I1 also holds.
    let gb = ca.current_position().generation;
    assert_eq!(gb, g + 1, "history B starts at G+1");
    assert!(
        isum.log_range.unwrap().1 >= gb,
        "I1 holds generation G+1 of history A"
    );
    ca.revoke(2).unwrap();
    ca.issue(1).unwrap();
    ca.stop().unwrap();
    ca.start().unwrap();
    assert_eq!(ca.checkpoint().generation, gb);
    assert!(ca.checkpoint().pos > 0, "B's checkpoint is inside G+1");
    let f2sum = backup(&ca, &f2, false, true);
    assert_eq!(f2sum.log_range.unwrap().0, gb);
    let at_f2 = ca.records().collect::<Vec<_>>();
    assert_ne!(at_i1, at_f2);
    ca.stop().unwrap();
    ca.wipe_files().unwrap();
    Histories {
        ca,
        _dir: dir,
        f,
        i1,
        f2,
        at_i1,
        at_f2,
    }
}

#[test]
fn pre_restore_and_post_restore_sets_each_restore_their_own_history() {
    let h = two_histories();
    let map = |p: &str| h.ca.host_path(p);
    let opts = RestoreOptions::default();
    restore_from_dirs(h.ca.server_name(), &h.f2, &[], &map, &opts).unwrap();
    start_and_expect(&h.ca, &h.at_f2);
    h.ca.stop().unwrap();
    h.ca.wipe_files().unwrap();
    let incs = std::slice::from_ref(&h.i1);
    restore_from_dirs(h.ca.server_name(), &h.f, incs, &map, &opts).unwrap();
    start_and_expect(&h.ca, &h.at_i1);
}

#[test]
fn mixing_a_pre_restore_incremental_with_a_post_restore_full_is_refused() {
    let h = two_histories();
    // F2 (history B) with I1 (history A): I1's generation G+1 overwrites B's G+1, and its
    // signature (the pre-restore lineage) gives it away.
    restore_from_dirs(
        h.ca.server_name(),
        &h.f2,
        std::slice::from_ref(&h.i1),
        &|p| h.ca.host_path(p),
        &RestoreOptions::default(),
    )
    .unwrap();
    let files = snapshot(&h.ca);
    let result = h.ca.start();
    let now = h.ca.records().collect::<Vec<_>>();
    assert!(
        result.is_err(),
        "the CA started with {} records, neither history A ({}) nor B ({}): {}",
        now.len(),
        h.at_i1.len(),
        h.at_f2.len(),
        if now == h.at_i1 || now == h.at_f2 {
            "(equal to one of them)"
        } else {
            "a mix"
        }
    );
    assert_eq!(result.unwrap_err().hresult(), BAD_LOG_SIGNATURE);
    assert_eq!(h.ca.service(), ServiceState::Stopped);
    assert_eq!(snapshot(&h.ca), files);
}

// ----- path containment ---------------------------------------------------------------------

/// Paths that leave the emulated machine's disk, with the code each is refused with.
fn bad_paths(server: &str) -> Vec<(String, HRESULT)> {
    vec![
        (r"C:\..\x".into(), ACCESS_DENIED),
        (
            r"C:\Windows\System32\CertLog\..\..\..\..\x".into(),
            ACCESS_DENIED,
        ),
        (format!(r"\\{server}\C$\..\x"), ACCESS_DENIED),
        (r"\\OTHER\C$\x".into(), BAD_NETPATH),
        (format!(r"\\{server}\share\x"), BAD_NETPATH),
        (
            r"C:\Windows\System32\CertLog\x.edb:stream".into(),
            INVALID_NAME,
        ),
        (r"C:\Windows\System32\CertLog:$DATA".into(), INVALID_NAME),
        (r"\\?\C:\Windows".into(), INVALID_NAME),
        (r"C:\Windows\System32\CertLog\CON".into(), INVALID_NAME),
        (r"Windows\System32\CertLog".into(), BAD_PATHNAME),
        (r"C:Windows".into(), BAD_PATHNAME),
        (r"..\CertLog".into(), BAD_PATHNAME),
    ]
}

#[test]
fn restore_register_paths_outside_the_root_are_refused() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("machine");
    let ca = EmulatedCa::builder()
        .ca_name("Contained CA")
        .root_dir(&root)
        .records(5)
        .log_capacity(3)
        .build()
        .unwrap();
    ca.issue(4).unwrap();
    let full = outer.path().join("full");
    let sum = backup(&ca, &full, false, true);
    let (low, high) = sum.log_range.unwrap();
    let expected = ca.records().collect::<Vec<_>>();
    ca.stop().unwrap();
    let locs = read_locations(&full).unwrap();
    let good = Reg::full(&locs, low, high);
    let files = snapshot(&ca);
    let h = prepare(ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    type Slot = (&'static str, fn(&mut Reg, String));
    let slots: [Slot; 5] = [
        ("checkpoint", |r, p| r.checkpoint = Some(p)),
        ("log", |r, p| r.log = Some(p)),
        ("backup log", |r, p| r.backup_log = Some(p)),
        ("map old", |r, p| r.map[0].0 = p),
        ("map new", |r, p| r.map[0].1 = p),
    ];
    for (bad, code) in bad_paths(ca.server_name()) {
        for (slot, set) in slots {
            let mut reg = good.clone();
            set(&mut reg, bad.clone());
            for through_file in [false, true] {
                assert_eq!(
                    register(h, &reg, through_file),
                    code,
                    "{slot} = {bad:?} (through file: {through_file})"
                );
                assert!(ca.restore_marker().is_none());
            }
        }
    }
    assert_eq!(snapshot(&ca), files, "nothing was written");
    let entries: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(entries, ["full", "machine"], "nothing outside the root");
    // The context is still good for a correct registration.
    ca.wipe_files().unwrap();
    copy_set(&ca, &full, &locs, true);
    assert_eq!(register(h, &good, false), HRESULT::S_OK);
    assert_eq!(complete(h, HRESULT::S_OK), HRESULT::S_OK);
    assert_eq!(end(h), HRESULT::S_OK);
    start_and_expect(&ca, &expected);
}

#[test]
fn restore_locations_outside_the_root_are_refused() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("machine");
    let ca = EmulatedCa::builder()
        .ca_name("Contained Locations CA")
        .root_dir(&root)
        .records(5)
        .log_capacity(3)
        .build()
        .unwrap();
    ca.issue(4).unwrap();
    let full = outer.path().join("full");
    backup(&ca, &full, false, true);
    let expected = ca.records().collect::<Vec<_>>();
    ca.stop().unwrap();
    let dat = db_dir(&full).join(wszDBBACKUPCERTBACKDAT);
    let saved = std::fs::read(&dat).unwrap();
    let locs = read_locations(&full).unwrap();
    let files = snapshot(&ca);
    for (bad, code) in bad_paths(ca.server_name()) {
        for which in 0..3 {
            let mut l = [
                locs.database.clone(),
                locs.log_dir.clone(),
                locs.system_dir.clone(),
            ];
            l[which] = if which == 0 {
                format!("{bad}\\x.edb")
            } else {
                bad.clone()
            };
            std::fs::write(
                &dat,
                WideList::from_entries([
                    (Some(CSBFT_CERTSERVER_DATABASE), l[0].as_str()),
                    (Some(CSBFT_LOG_DIR), l[1].as_str()),
                    (Some(CSBFT_CHECKPOINT_DIR), l[2].as_str()),
                ])
                .to_bytes(),
            )
            .unwrap();
            let r = restore_from_dirs(
                ca.server_name(),
                &full,
                &[],
                &|p| ca.host_path(p),
                &RestoreOptions::default(),
            );
            if which == 2 {
                // The checkpoint directory is only passed to Register, which checks it.
                let err = r.unwrap_err();
                assert_eq!(err.call, "CertSrvRestoreRegisterW", "{bad:?}");
                assert_eq!(err.hr, code, "{bad:?}");
            } else {
                let err = r.unwrap_err();
                assert_eq!(err.call, "map path", "{bad:?}");
                assert_eq!(err.hr, code, "{bad:?}");
            }
            assert!(ca.restore_marker().is_none());
        }
    }
    let entries: std::collections::BTreeSet<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries.into_iter().collect::<Vec<_>>(),
        ["full", "machine"],
        "nothing outside the root"
    );
    // Only the CA's own files were (re)written: a good certbkxp.dat restores fine.
    let now = snapshot(&ca);
    assert!(now.keys().all(|k| files.contains_key(k)), "no new file");
    std::fs::write(&dat, saved).unwrap();
    restore_from_dirs(
        ca.server_name(),
        &full,
        &[],
        &|p| ca.host_path(p),
        &RestoreOptions::default(),
    )
    .unwrap();
    ca.start().unwrap();
    assert_eq!(ca.records().collect::<Vec<_>>(), expected);
}

// ----- a set that ends before the end of its backup (COVERAGE.md C 45) ----------------------

/// The measured case: a full backup listing `edb00003.log` … `edb00007.log` (60
/// certificates issued while it ran, 600 records at its end; the last log holds 4 of
/// them), then an incremental backup `edb00008.log` … `edb0000A.log` (32 more, 4 in its
/// last log).
struct EarlyEnd {
    ca: EmulatedCa,
    dir: tempfile::TempDir,
    full: PathBuf,
    inc: PathBuf,
    at_full: Vec<Record>,
    at_inc: Vec<Record>,
}

fn early_end(name: &str) -> EarlyEnd {
    let ca = EmulatedCa::builder()
        .ca_name(name)
        .records(512)
        .log_capacity(14)
        .build()
        .unwrap();
    ca.issue(28).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("backup");
    let mut busy = false;
    let sum = backup_to_dir(
        ca.server_name(),
        &full,
        &BackupOptions::default(),
        &mut |name: &str, _, _| {
            if !busy && name.to_ascii_lowercase().ends_with(".edb") {
                busy = true;
                ca.issue(60).unwrap();
            }
        },
    )
    .unwrap();
    assert_eq!(sum.log_range, Some((3, 7)));
    let at_full = ca.records().collect::<Vec<_>>();
    assert_eq!(at_full.len(), 600);
    ca.issue(32).unwrap();
    let inc = full.join("incremental-1");
    let isum = backup(&ca, &inc, true, false);
    assert_eq!(isum.log_range, Some((8, 10)));
    let at_inc = ca.records().collect::<Vec<_>>();
    assert_eq!(at_inc.len(), 632);
    EarlyEnd {
        ca,
        dir,
        full,
        inc,
        at_full,
        at_inc,
    }
}

impl EarlyEnd {
    /// Stops and wipes the CA, then restores the sets with the reference client (genLow
    /// and genHigh taken from the files, as certutil is believed to do, spec §8.4).
    fn restore(&self, incs: &[PathBuf]) {
        self.ca.stop().unwrap();
        self.ca.wipe_files().unwrap();
        restore_from_dirs(
            self.ca.server_name(),
            &self.full,
            incs,
            &|p| self.ca.host_path(p),
            &RestoreOptions::default(),
        )
        .unwrap();
    }
}

#[test]
fn a_full_set_missing_its_last_log_starts_but_reports_the_data_loss() {
    let e = early_end("Early Full CA");
    std::fs::remove_file(db_dir(&e.full).join(log_file_name(7))).unwrap();
    e.restore(&[]);
    assert_eq!(e.ca.restore_marker().unwrap().gen_high, 6);

    let report = e.ca.start().unwrap();
    assert!(report.hard);
    assert_eq!(report.replayed_generations, vec![3, 4, 5, 6]);
    assert_eq!(report.backup_end, None, "no listing's end was restored");
    let loss = report.data_loss.clone().expect("the loss is reported");
    assert_eq!(loss.missing_from, 7);
    assert_eq!(loss.missing_through, Some(7));
    assert_eq!(loss.lost_transactions, Some(4));
    let set = loss.backup.unwrap();
    assert_eq!((set.low_gen, set.high_gen, set.transactions), (3, 7, 60));
    let text = loss.to_string();
    assert!(
        text.contains("generation 7 (edb00007.log) is missing"),
        "{text}"
    );
    assert!(
        text.contains("the full backup of generations 3..7"),
        "{text}"
    );
    assert!(text.contains("4 of its transactions are lost"), "{text}");

    // The CA runs, without the 4 certificates of the missing log.
    assert_eq!(e.ca.service(), ServiceState::Running);
    assert_eq!(e.ca.record_count(), 596);
    assert_eq!(
        e.ca.records().collect::<Vec<_>>(),
        e.at_full[..596].to_vec()
    );
    // Conformance: one CR04 violation, an error.
    let r = e.ca.report();
    let v = r.of(RESTORE_LOST_DATA);
    assert_eq!(v.len(), 1, "{r}");
    assert_eq!(v[0].rule.id, "CR04");
    assert_eq!(v[0].detail, text);
    assert!(
        v[0].call.contains("(service start: hard recovery)"),
        "{}",
        v[0].call
    );
    assert!(!e.ca.machine_report().clean);
    // certemu_ca_report's last_start carries it.
    let last = certadm_emu::control::LastStart::of(&Ok(report));
    let json = serde_json::to_value(&last).unwrap();
    assert_eq!(json["data_loss"]["missing_from"], 7);
    assert_eq!(json["data_loss"]["lost_transactions"], 4);
    assert_eq!(json["data_loss"]["backup"]["kind"], "full");
}

#[test]
fn an_incremental_set_missing_its_last_log_starts_but_reports_the_data_loss() {
    let e = early_end("Early Inc CA");
    let gone = db_dir(&e.inc).join(log_file_name(10));
    let held = decode_log(&std::fs::read(&gone).unwrap()).unwrap();
    assert_eq!(held.txns.len(), 4);
    assert_eq!(
        held.backup_end
            .map(|b| (b.low_gen, b.high_gen, b.transactions)),
        Some((8, 10, 32))
    );
    std::fs::remove_file(&gone).unwrap();
    e.restore(std::slice::from_ref(&e.inc));
    assert_eq!(e.ca.restore_marker().unwrap().gen_high, 9);

    let report = e.ca.start().unwrap();
    assert_eq!(report.replayed_generations, vec![3, 4, 5, 6, 7, 8, 9]);
    let end = report.backup_end.unwrap();
    assert_eq!((end.low_gen, end.high_gen), (3, 7), "the full set ended");
    let loss = report.data_loss.unwrap();
    assert_eq!(
        (
            loss.missing_from,
            loss.missing_through,
            loss.lost_transactions
        ),
        (10, Some(10), Some(4))
    );
    assert_eq!(loss.backup.unwrap().kind.name(), "incremental");
    assert_eq!(e.ca.record_count(), 628);
    assert_eq!(e.ca.records().collect::<Vec<_>>(), e.at_inc[..628].to_vec());
    assert_eq!(e.ca.report().of(RESTORE_LOST_DATA).len(), 1);
}

#[test]
fn complete_sets_restore_without_a_data_loss_report() {
    let e = early_end("Early Complete CA");
    e.restore(std::slice::from_ref(&e.inc));
    let report = e.ca.start().unwrap();
    assert_eq!(report.data_loss, None);
    let end = report.backup_end.unwrap();
    assert_eq!(
        (end.kind.name(), end.low_gen, end.high_gen, end.transactions),
        ("incremental", 8, 10, 32)
    );
    assert_eq!(e.ca.records().collect::<Vec<_>>(), e.at_inc);
    e.ca.verify().unwrap();
}

/// `certadm-emu restore DIR` into a fresh CA, which has no history of these backups: it
/// fails, naming the first missing generation (the "OK: recovered 596 records" it printed
/// before); the intact directory restores.
#[test]
fn the_restore_command_fails_on_a_set_missing_its_last_log() {
    let e = early_end("Early Cli CA");
    let bin = env!("CARGO_BIN_EXE_certadm-emu");
    let run = |dir: &Path| {
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("restore")
            .arg(dir)
            .env_remove("CERTADM_EMU_SERVER")
            .env_remove("CERTADM_EMU_CONFIG");
        crate::common::run_with_timeout(cmd, std::time::Duration::from_secs(120)).0
    };
    let o = run(&e.full);
    assert!(o.status.success(), "{}", crate::common::show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("OK: recovered 632 records"), "{out}");
    assert!(
        out.contains("the incremental backup of generations 8..10"),
        "{out}"
    );

    // The incremental set without its last log.
    let copy = e.dir.path().join("copy");
    copy_dir(&e.full, &copy);
    std::fs::remove_file(db_dir(&copy.join("incremental-1")).join(log_file_name(10))).unwrap();
    let o = run(&copy);
    assert_eq!(o.status.code(), Some(1), "{}", crate::common::show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("DATA LOSS (conformance rule CR04)"), "{err}");
    assert!(
        err.contains("at least generation 10 (edb0000A.log) is missing"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("OK:"));

    // The full set without its last log (and no incremental).
    let copy = e.dir.path().join("copy-full");
    copy_dir(&e.full, &copy);
    std::fs::remove_dir_all(copy.join("incremental-1")).unwrap();
    std::fs::remove_file(db_dir(&copy).join(log_file_name(7))).unwrap();
    let o = run(&copy);
    assert_eq!(o.status.code(), Some(1), "{}", crate::common::show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("at least generation 7 (edb00007.log) is missing"),
        "{err}"
    );
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &dst.join(e.file_name()));
        } else {
            std::fs::copy(&p, dst.join(e.file_name())).unwrap();
        }
    }
}

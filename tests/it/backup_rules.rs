//! The backup rules of spec §6.2 (rows 1–12), `CertSrvServerControlW`,
//! `CertSrvIsServerOnlineW`, and the log roll / list / truncation behaviour.
//!
//! Every test asserts the exact HRESULT and the emulator state afterwards.

use certadm_emu::abi;
use certadm_emu::api;
use certadm_emu::ca::format::{log_file_name, parse_log_file_name, Position};
use certadm_emu::ca::{BackupMark, ServiceState};
use certadm_emu::core::consts::*;
use certadm_emu::core::wide::to_wide_nul;
use certadm_emu::machine::Identity;
use certadm_emu::session::backup::read_buffer_size;
use certadm_emu::{EmulatedCa, Hcsbc, Result, HRESULT};
use core::ffi::c_void;
use std::ptr::null_mut;

// ----- helpers ---------------------------------------------------------------------

fn new_ca() -> EmulatedCa {
    EmulatedCa::builder()
        .records(12)
        .log_capacity(4)
        .build()
        .unwrap()
}

/// The HRESULT of a call that must fail.
#[track_caller]
fn err<T: std::fmt::Debug>(r: Result<T>) -> HRESULT {
    match r {
        Ok(v) => panic!("expected a failure, got Ok({v:?})"),
        Err(e) => e.hresult(),
    }
}

/// Everything about the CA a failed call must leave alone.
#[derive(Debug, Clone, PartialEq)]
struct Snap {
    service: ServiceState,
    sessions: usize,
    in_progress: bool,
    logs: Vec<u32>,
    current: Position,
    checkpoint: Position,
    last_full: Option<BackupMark>,
    last_inc: Option<BackupMark>,
    buffers: usize,
    records: usize,
}

fn snap(ca: &EmulatedCa) -> Snap {
    Snap {
        service: ca.service(),
        sessions: ca.sessions_open(),
        in_progress: ca.backup_in_progress(),
        logs: ca.log_generations(),
        current: ca.current_position(),
        checkpoint: ca.checkpoint(),
        last_full: ca.last_full_backup(),
        last_inc: ca.last_incremental_backup(),
        buffers: ca.outstanding_buffers(),
        records: ca.record_count(),
    }
}

/// `\\dns\C$\Windows\System32\CertLog\<file>`: the UNC name the list functions return.
fn certlog_unc(ca: &EmulatedCa, file: &str) -> String {
    format!(r"\\{}\C$\Windows\System32\CertLog\{}", ca.dns_name(), file)
}

fn gen_of(unc: &str) -> u32 {
    parse_log_file_name(unc.rsplit('\\').next().unwrap()).expect("a numbered log name")
}

/// Opens, reads to EOF with `buf_size` chunks, closes; returns (reported size, bytes).
fn read_whole(h: Hcsbc, name: &str, buf_size: usize) -> (u64, Vec<u8>) {
    let size = api::backup_open_file(h, name, 0).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; buf_size];
    loop {
        let n = api::backup_read(h, &mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            break;
        }
    }
    api::backup_close(h).unwrap();
    (size, out)
}

fn database_names(h: Hcsbc) -> Vec<String> {
    api::backup_get_database_names(h)
        .unwrap()
        .entries(true)
        .into_iter()
        .map(|e| e.path)
        .collect()
}

fn backup_logs(h: Hcsbc) -> Vec<String> {
    api::backup_get_backup_logs(h)
        .unwrap()
        .entries(true)
        .into_iter()
        .map(|e| e.path)
        .collect()
}

/// Lists and reads every database file.
fn secure_database(h: Hcsbc) {
    for n in database_names(h) {
        read_whole(h, &n, 64 << 10);
    }
}

/// Lists and reads every log; returns the generations listed.
fn secure_logs(h: Hcsbc) -> Vec<u32> {
    let names = backup_logs(h);
    for n in &names {
        read_whole(h, n, 64 << 10);
    }
    names.iter().map(|n| gen_of(n)).collect()
}

/// A complete full backup; returns the log generations it held.
fn full_backup(ca: &EmulatedCa, truncate: bool) -> Vec<u32> {
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    secure_database(h);
    let gens = secure_logs(h);
    if truncate {
        api::backup_truncate_logs(h).unwrap();
    }
    api::backup_end(h).unwrap();
    gens
}

fn remote() -> Identity {
    Identity {
        remote: true,
        ..Identity::default()
    }
}

/// Every backup method on `h`, End last, and its result.
fn every_backup_call(h: Hcsbc, file: &str) -> Vec<(&'static str, HRESULT)> {
    let mut v = every_backup_call_but_end(h, file);
    let end = match api::backup_end(h) {
        Ok(()) => HRESULT::S_OK,
        Err(e) => e.hresult(),
    };
    v.push(("End", end));
    v
}

/// Every backup method on `h` except End, and its result.
fn every_backup_call_but_end(h: Hcsbc, file: &str) -> Vec<(&'static str, HRESULT)> {
    let mut buf = [0u8; 16];
    let code = |r: Result<()>| match r {
        Ok(()) => HRESULT::S_OK,
        Err(e) => e.hresult(),
    };
    vec![
        (
            "GetDatabaseNames",
            code(api::backup_get_database_names(h).map(drop)),
        ),
        (
            "GetDynamicFileList",
            code(api::backup_get_dynamic_file_list(h).map(drop)),
        ),
        (
            "OpenFile",
            code(api::backup_open_file(h, file, 0).map(drop)),
        ),
        ("Read", code(api::backup_read(h, &mut buf).map(drop))),
        ("Close", code(api::backup_close(h))),
        (
            "GetBackupLogs",
            code(api::backup_get_backup_logs(h).map(drop)),
        ),
        ("TruncateLogs", code(api::backup_truncate_logs(h).map(drop))),
        (
            "RestoreGetDatabaseLocations",
            code(api::restore_get_database_locations(h).map(drop)),
        ),
    ]
}

#[track_caller]
fn assert_all(results: &[(&'static str, HRESULT)], want: HRESULT) {
    for (call, hr) in results {
        assert_eq!(*hr, want, "{call}: got {hr}, want {want}");
    }
}

// ----- §6.2 rows 1–12 ----------------------------------------------------------------

#[test]
fn rule_01_backup_needs_ca_online() {
    let ca = new_ca();
    ca.stop().unwrap();
    let before = snap(&ca);
    for flags in [CSBACKUP_TYPE_FULL, CSBACKUP_TYPE_LOGS_ONLY] {
        assert_eq!(
            err(api::backup_prepare(ca.server_name(), 0, flags)),
            HRESULT::RPC_S_SERVER_UNAVAILABLE
        );
        assert_eq!(HRESULT::RPC_S_SERVER_UNAVAILABLE.as_u32(), 0x8007_06BA);
    }
    // Through the ABI, *phbc is NULL after the failure.
    let w = to_wide_nul(ca.server_name());
    let mut h: *mut c_void = 0x1234 as *mut c_void;
    let hr = unsafe { abi::CertSrvBackupPrepareW(w.as_ptr(), 0, CSBACKUP_TYPE_FULL, &mut h) };
    assert_eq!(hr as u32, 0x8007_06BA);
    assert!(h.is_null());
    assert_eq!(snap(&ca), before);
    assert_eq!(ca.sessions_open(), 0);
    assert!(!ca.backup_in_progress());

    // Suspended (restore recovery in progress): not online either.
    ca.begin_start().unwrap();
    assert_eq!(ca.service(), ServiceState::Suspended);
    assert_eq!(
        err(api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL)),
        HRESULT::CERTSRV_E_SERVER_SUSPENDED
    );
    assert_eq!(ca.sessions_open(), 0);
    ca.finish_start().unwrap();
    assert_eq!(ca.service(), ServiceState::Running);

    // Online again: the backup runs.
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    assert_eq!(ca.sessions_open(), 1);
    assert!(ca.backup_in_progress());
    api::backup_end(h).unwrap();

    // Unknown servers and machines without a CA are not reachable.
    assert_eq!(
        err(api::backup_prepare(
            "NO-SUCH-HOST-certadm-emu",
            0,
            CSBACKUP_TYPE_FULL
        )),
        HRESULT::RPC_S_SERVER_UNAVAILABLE
    );
    let bare = EmulatedCa::builder().without_ca().build().unwrap();
    assert_eq!(
        err(api::backup_prepare(
            bare.server_name(),
            0,
            CSBACKUP_TYPE_FULL
        )),
        HRESULT::RPC_S_SERVER_UNAVAILABLE
    );
    assert_eq!(bare.sessions_open(), 0);
}

/// A failed Prepare leaves `*phbc` NULL; every backup call made with it fails and
/// creates nothing (the ABI reports the NULL context as `E_HANDLE`, spec §7.2).
#[test]
fn rule_02_calls_need_prior_prepare() {
    let ca = new_ca();
    ca.stop().unwrap();
    let w = to_wide_nul(ca.server_name());
    let mut h: *mut c_void = null_mut();
    let hr = unsafe { abi::CertSrvBackupPrepareW(w.as_ptr(), 0, CSBACKUP_TYPE_FULL, &mut h) };
    assert!(hr < 0);
    assert!(h.is_null());
    ca.start().unwrap();
    let before = snap(&ca);

    let name = to_wide_nul(&certlog_unc(&ca, "Emu Issuing CA.edb"));
    let mut p: *mut u16 = null_mut();
    let mut cb = 0u32;
    let mut size = 0i64;
    let mut buf = [0u8; 64];
    let mut n = 0u32;
    unsafe {
        let results = [
            abi::CertSrvBackupGetDatabaseNamesW(h, &mut p, &mut cb),
            abi::CertSrvBackupGetDynamicFileListW(h, &mut p, &mut cb),
            abi::CertSrvBackupOpenFileW(h, name.as_ptr(), 0, &mut size),
            abi::CertSrvBackupRead(h, buf.as_mut_ptr().cast(), 64, &mut n),
            abi::CertSrvBackupClose(h),
            abi::CertSrvBackupGetBackupLogsW(h, &mut p, &mut cb),
            abi::CertSrvBackupTruncateLogs(h),
            abi::CertSrvBackupEnd(h),
        ];
        for hr in results {
            assert_eq!(HRESULT(hr), HRESULT::E_HANDLE);
        }
    }
    assert!(p.is_null());
    assert_eq!((cb, size, n), (0, 0, 0));
    assert_eq!(snap(&ca), before);
}

/// Spec §6.2 row 2: "Every other backup call needs a prior successful BackupPrepare"
/// → `E_UNEXPECTED`. A restore context is a valid HCSBC (spec §3.1: one handle type
/// serves both) on which no BackupPrepare was made, so backup calls on it are out of
/// sequence, not invalid handles.
#[test]
fn rule_02_restore_context_has_no_backup_session() {
    let ca = new_ca();
    let r = api::restore_prepare(ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    let before = snap(&ca);
    let name = certlog_unc(&ca, "Emu Issuing CA.edb");
    let results: Vec<_> = every_backup_call(r, &name)
        .into_iter()
        .filter(|(c, _)| *c != "RestoreGetDatabaseLocations")
        .collect();
    assert_all(&results, HRESULT::E_UNEXPECTED);
    assert_eq!(snap(&ca), before);
    api::restore_end(r).unwrap();
}

#[test]
fn rule_03_second_prepare_same_client() {
    let ca = new_ca();
    // A full backup exists, so LOGS_ONLY is not refused for that reason.
    full_backup(&ca, true);
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let before = snap(&ca);
    for flags in [CSBACKUP_TYPE_FULL, CSBACKUP_TYPE_LOGS_ONLY] {
        assert_eq!(
            err(api::backup_prepare(ca.server_name(), 0, flags)),
            HRESULT::E_UNEXPECTED
        );
    }
    assert_eq!(snap(&ca), before);
    assert_eq!(ca.sessions_open(), 1);
    assert!(ca.backup_in_progress());
    // The first session is untouched and still works.
    assert_eq!(database_names(h).len(), 1);
    api::backup_end(h).unwrap();
    assert!(!ca.backup_in_progress());
    // After End the same client may prepare again.
    let h2 = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    assert_ne!(h, h2);
    api::backup_end(h2).unwrap();
    assert_eq!(ca.sessions_open(), 0);
}

#[test]
fn rule_04_database_names_need_full_session() {
    let ca = new_ca();
    full_backup(&ca, true);
    ca.issue(3).unwrap();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_LOGS_ONLY).unwrap();
    let before = snap(&ca);
    assert_eq!(
        err(api::backup_get_database_names(h)),
        HRESULT::JET_errInvalidBackupSequence
    );
    assert_eq!(HRESULT::JET_errInvalidBackupSequence.as_u32(), 0xC800_0209);
    // Through the ABI: out-parameters NULL/0, no buffer handed out.
    let mut p: *mut u16 = 0x10 as *mut u16;
    let mut cb = 77u32;
    let hr = unsafe { abi::CertSrvBackupGetDatabaseNamesW(h.as_ptr(), &mut p, &mut cb) };
    assert_eq!(hr as u32, 0xC800_0209);
    assert!(p.is_null());
    assert_eq!(cb, 0);
    assert_eq!(snap(&ca), before);
    // The database cannot be opened either: it is not in a logs-only backup set.
    let db = certlog_unc(&ca, "Emu Issuing CA.edb");
    assert_eq!(
        err(api::backup_open_file(h, &db, 0)),
        HRESULT::ERROR_FILE_NOT_FOUND
    );
    // The session stays usable for its logs.
    let gens = secure_logs(h);
    assert!(!gens.is_empty());
    api::backup_end(h).unwrap();
    assert_eq!(ca.sessions_open(), 0);
    assert_eq!(
        ca.last_incremental_backup().map(|m| m.high_gen),
        gens.last().copied()
    );
}

#[test]
fn rule_05_read_or_close_before_open() {
    let ca = new_ca();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let mut buf = [0u8; 128];
    let before = snap(&ca);
    assert_eq!(err(api::backup_read(h, &mut buf)), HRESULT::E_UNEXPECTED);
    assert_eq!(err(api::backup_close(h)), HRESULT::E_UNEXPECTED);
    assert_eq!(snap(&ca), before);

    // After a file was opened and closed: the same.
    let db = database_names(h).remove(0);
    read_whole(h, &db, 4096);
    let before = snap(&ca);
    assert_eq!(err(api::backup_read(h, &mut buf)), HRESULT::E_UNEXPECTED);
    assert_eq!(err(api::backup_close(h)), HRESULT::E_UNEXPECTED);
    assert_eq!(snap(&ca), before);
    assert_eq!(ca.sessions_open(), 1);
    assert!(ca.backup_in_progress());
    api::backup_end(h).unwrap();
}

#[test]
fn rule_06_open_while_a_file_is_open() {
    let ca = new_ca();
    ca.issue(6).unwrap();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let db = database_names(h).remove(0);
    let logs = backup_logs(h);
    let size = api::backup_open_file(h, &db, 0).unwrap();
    let mut first = vec![0u8; 10];
    assert_eq!(api::backup_read(h, &mut first).unwrap(), 10);
    let before = snap(&ca);
    assert_eq!(err(api::backup_open_file(h, &db, 0)), HRESULT::E_UNEXPECTED);
    assert_eq!(
        err(api::backup_open_file(h, &logs[0], 0)),
        HRESULT::E_UNEXPECTED
    );
    assert_eq!(snap(&ca), before);
    // The open file kept its position: the rest continues at byte 10.
    let mut rest = vec![0u8; size as usize];
    let n = api::backup_read(h, &mut rest).unwrap();
    assert_eq!(n as u64, size - 10);
    let on_disk = std::fs::read(ca.host_path(&db).unwrap()).unwrap();
    first.extend_from_slice(&rest[..n]);
    assert_eq!(first, on_disk);
    api::backup_close(h).unwrap();
    // Now another file opens.
    api::backup_open_file(h, &logs[0], 0).unwrap();
    api::backup_close(h).unwrap();
    api::backup_end(h).unwrap();
}

#[test]
fn rule_07_truncate_needs_every_file_read_to_eof() {
    let ca = new_ca();
    ca.issue(9).unwrap();
    // Older generations are on disk and eligible for truncation.
    assert!(!ca.log_generations().is_empty());
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();

    let refuse = |what: &str| {
        let before = snap(&ca);
        let files_before: Vec<_> = ca.files().into_iter().map(|f| f.windows_path).collect();
        assert_eq!(
            err(api::backup_truncate_logs(h)),
            HRESULT::E_UNEXPECTED,
            "{what}"
        );
        assert_eq!(snap(&ca), before, "{what}");
        let files_after: Vec<_> = ca.files().into_iter().map(|f| f.windows_path).collect();
        assert_eq!(files_after, files_before, "{what}: no log deleted");
        assert_eq!(ca.last_full_backup(), None, "{what}");
    };

    refuse("nothing listed");
    let db = database_names(h).remove(0);
    refuse("database listed, not read");
    // Logs read completely, database still unread.
    let logs = backup_logs(h);
    for l in &logs {
        read_whole(h, l, 4096);
    }
    refuse("database not read");
    // Database read partially and still open.
    api::backup_open_file(h, &db, 0).unwrap();
    let mut one = [0u8; 1];
    api::backup_read(h, &mut one).unwrap();
    refuse("database read up to byte 1");
    // Closed before EOF: still not secured.
    api::backup_close(h).unwrap();
    refuse("database closed before EOF");
    read_whole(h, &db, 4096);

    // Everything secured: truncation deletes the old generations.
    let cp = ca.checkpoint().generation;
    let old: Vec<u32> = ca
        .log_generations()
        .into_iter()
        .filter(|g| *g < cp)
        .collect();
    assert!(!old.is_empty());
    let deleted = api::backup_truncate_logs(h).unwrap();
    assert_eq!(deleted, old);
    assert!(ca.log_generations().iter().all(|g| *g >= cp));
    assert_eq!(
        ca.last_full_backup().map(|m| m.high_gen),
        logs.last().map(|l| gen_of(l))
    );
    api::backup_end(h).unwrap();
}

#[test]
fn rule_07_full_session_without_database_listing_cannot_truncate() {
    let ca = new_ca();
    ca.issue(5).unwrap();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    secure_logs(h);
    let before = snap(&ca);
    assert_eq!(err(api::backup_truncate_logs(h)), HRESULT::E_UNEXPECTED);
    assert_eq!(snap(&ca), before);
    // Without the database, End does not record a full backup either.
    api::backup_end(h).unwrap();
    assert_eq!(ca.last_full_backup(), None);
    assert_eq!(
        err(api::backup_prepare(
            ca.server_name(),
            0,
            CSBACKUP_TYPE_LOGS_ONLY
        )),
        HRESULT::JET_errMissingFullBackup
    );
}

#[test]
fn rule_08_calls_after_end_get_e_handle() {
    let ca = new_ca();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let db = database_names(h).remove(0);
    api::backup_end(h).unwrap();
    assert_eq!(ca.sessions_open(), 0);
    assert!(!ca.backup_in_progress());
    let before = snap(&ca);
    assert_all(&every_backup_call(h, &db), HRESULT::E_HANDLE);
    // Restore functions do not accept it either.
    assert_eq!(err(api::restore_end(h)), HRESULT::E_HANDLE);
    assert_eq!(
        err(api::restore_register_complete(Some(h), HRESULT::S_OK)),
        HRESULT::E_HANDLE
    );
    assert_eq!(snap(&ca), before);

    // A new session (likely in the same slot) is not reachable through the old handle.
    let h2 = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    assert_ne!(h, h2);
    let before = snap(&ca);
    assert_all(&every_backup_call(h, &db), HRESULT::E_HANDLE);
    assert_eq!(snap(&ca), before);
    assert_eq!(ca.sessions_open(), 1);
    assert!(ca.backup_in_progress());
    assert_eq!(database_names(h2).len(), 1);
    api::backup_end(h2).unwrap();
}

#[test]
fn rule_09_incremental_needs_prior_full_backup() {
    let ca = new_ca();
    ca.issue(6).unwrap();
    let before = snap(&ca);
    assert_eq!(
        err(api::backup_prepare(
            ca.server_name(),
            0,
            CSBACKUP_TYPE_LOGS_ONLY
        )),
        HRESULT::JET_errMissingFullBackup
    );
    assert_eq!(HRESULT::JET_errMissingFullBackup.as_u32(), 0xC800_0230);
    assert_eq!(snap(&ca), before);
    assert_eq!(ca.sessions_open(), 0);

    // An abandoned full backup (nothing read) is not a full backup.
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    database_names(h);
    api::backup_end(h).unwrap();
    assert_eq!(ca.last_full_backup(), None);
    assert_eq!(
        err(api::backup_prepare(
            ca.server_name(),
            0,
            CSBACKUP_TYPE_LOGS_ONLY
        )),
        HRESULT::JET_errMissingFullBackup
    );

    // A complete one (without truncation: End records it) is.
    let gens = full_backup(&ca, false);
    assert_eq!(
        ca.last_full_backup().map(|m| m.high_gen),
        gens.last().copied()
    );
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_LOGS_ONLY).unwrap();
    assert_eq!(ca.sessions_open(), 1);
    api::backup_end(h).unwrap();
}

#[test]
fn rule_10_only_one_backup_per_ca() {
    let ca = new_ca();
    full_backup(&ca, true);
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let before = snap(&ca);
    let server = ca.server_name().to_string();
    let other = std::thread::scope(|s| {
        s.spawn(|| {
            [CSBACKUP_TYPE_FULL, CSBACKUP_TYPE_LOGS_ONLY]
                .map(|f| err(api::backup_prepare(&server, 0, f)))
        })
        .join()
        .unwrap()
    });
    assert_eq!(other, [HRESULT::JET_errBackupInProgress; 2]);
    assert_eq!(HRESULT::JET_errBackupInProgress.as_u32(), 0xC800_01F9);
    assert_eq!(snap(&ca), before);
    assert_eq!(ca.sessions_open(), 1);
    // The running backup is unaffected.
    assert_eq!(database_names(h).len(), 1);
    api::backup_end(h).unwrap();
    // Once it ended, the other client gets its session.
    let other = std::thread::scope(|s| {
        s.spawn(|| {
            let h = api::backup_prepare(&server, 0, CSBACKUP_TYPE_FULL)?;
            api::backup_end(h)
        })
        .join()
        .unwrap()
    });
    other.unwrap();
    assert_eq!(ca.sessions_open(), 0);
}

#[test]
fn rule_11_remote_backup_blocked_by_default() {
    let ca = EmulatedCa::builder()
        .records(12)
        .log_capacity(4)
        .identity(remote())
        .build()
        .unwrap();
    ca.issue(5).unwrap();
    assert_eq!(ca.interface_flags(), IF_DEFAULT);
    let before = snap(&ca);
    for flags in [CSBACKUP_TYPE_FULL, CSBACKUP_TYPE_LOGS_ONLY] {
        assert_eq!(
            err(api::backup_prepare(ca.server_name(), 0, flags)),
            HRESULT::E_ACCESSDENIED
        );
    }
    assert_eq!(snap(&ca), before);

    // A session opened locally, then used from another machine: every method is refused.
    ca.set_identity(Identity::default());
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let db = database_names(h).remove(0);
    api::backup_open_file(h, &db, 0).unwrap();
    ca.set_identity(remote());
    let before = snap(&ca);
    assert_all(&every_backup_call(h, &db), HRESULT::E_ACCESSDENIED);
    assert_eq!(snap(&ca), before, "no roll, no truncation, session kept");
    assert_eq!(ca.sessions_open(), 1);
    assert!(ca.backup_in_progress());

    // Clearing IF_NOREMOTEICERTADMINBACKUP lets the remote client go on where it was.
    ca.set_interface_flags(IF_DEFAULT & !IF_NOREMOTEICERTADMINBACKUP);
    let on_disk = std::fs::read(ca.host_path(&db).unwrap()).unwrap();
    let mut buf = vec![0u8; on_disk.len() + 1];
    let n = api::backup_read(h, &mut buf).unwrap();
    assert_eq!(&buf[..n], &on_disk[..], "the open file was not moved");
    api::backup_close(h).unwrap();
    secure_logs(h);
    api::backup_get_dynamic_file_list(h).unwrap();
    api::restore_get_database_locations(h).unwrap();
    api::backup_truncate_logs(h).unwrap();
    api::backup_end(h).unwrap();
    assert!(ca.last_full_backup().is_some());
    // And a remote Prepare works.
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_LOGS_ONLY).unwrap();
    api::backup_end(h).unwrap();
    assert_eq!(ca.sessions_open(), 0);
}

#[test]
fn rule_11_local_backup_blocked_by_if_nolocalicertadminbackup() {
    let ca = new_ca();
    ca.set_interface_flags(IF_DEFAULT | IF_NOLOCALICERTADMINBACKUP);
    let before = snap(&ca);
    assert_eq!(
        err(api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL)),
        HRESULT::E_ACCESSDENIED
    );
    assert_eq!(snap(&ca), before);
    ca.set_interface_flags(IF_DEFAULT);
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    api::backup_end(h).unwrap();
}

#[test]
fn rule_12_backup_privilege_required() {
    let no_priv = Identity {
        backup_privilege: false,
        ..Identity::default()
    };
    let ca = EmulatedCa::builder()
        .records(12)
        .log_capacity(4)
        .identity(no_priv)
        .build()
        .unwrap();
    ca.issue(5).unwrap();
    let before = snap(&ca);
    for flags in [CSBACKUP_TYPE_FULL, CSBACKUP_TYPE_LOGS_ONLY] {
        assert_eq!(
            err(api::backup_prepare(ca.server_name(), 0, flags)),
            HRESULT::E_ACCESSDENIED
        );
    }
    assert_eq!(snap(&ca), before);

    // The privilege dropped during a session: every method is refused, nothing moves.
    ca.set_identity(Identity::default());
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let db = database_names(h).remove(0);
    ca.set_identity(no_priv);
    let before = snap(&ca);
    assert_all(&every_backup_call(h, &db), HRESULT::E_ACCESSDENIED);
    assert_eq!(snap(&ca), before);

    // Granted again: the session completes.
    ca.set_identity(Identity::default());
    secure_database(h);
    secure_logs(h);
    api::backup_truncate_logs(h).unwrap();
    api::backup_end(h).unwrap();
    assert!(ca.last_full_backup().is_some());
    assert_eq!(ca.sessions_open(), 0);
}

// ----- CertSrvServerControlW -----------------------------------------------------------

fn control(server: &str, flags: u32) -> (i32, u32, *mut u8) {
    let w = to_wide_nul(server);
    let mut cb = 0xAAAA_u32;
    let mut pb = 0x55 as *mut u8;
    let hr = unsafe { abi::CertSrvServerControlW(w.as_ptr(), flags, &mut cb, &mut pb) };
    (hr, cb, pb)
}

#[test]
fn server_control_shutdown_stops_and_disconnects_sessions() {
    let ca = new_ca();
    ca.issue(3).unwrap();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let db = database_names(h).remove(0);
    api::backup_open_file(h, &db, 0).unwrap();

    let (hr, cb, pb) = control(ca.server_name(), CSCONTROL_SHUTDOWN);
    assert_eq!(HRESULT(hr), HRESULT::S_OK);
    assert_eq!(cb, 0, "pcbOut is zeroed");
    assert!(pb.is_null(), "ppbOut is not allocated");
    assert_eq!(ca.service(), ServiceState::Stopped);
    assert!(!ca.backup_in_progress());
    assert_eq!(ca.sessions_open(), 1, "the context lives until End");

    // Every later call on the open session: RPC_E_DISCONNECTED, and nothing changes.
    let before = snap(&ca);
    assert_all(
        &every_backup_call_but_end(h, &db),
        HRESULT::RPC_E_DISCONNECTED,
    );
    assert_eq!(HRESULT::RPC_E_DISCONNECTED.as_u32(), 0x8001_0108);
    assert_eq!(snap(&ca), before);
    // End still succeeds and releases the context.
    api::backup_end(h).unwrap();
    assert_eq!(ca.sessions_open(), 0);
    assert_eq!(ca.last_full_backup(), None);
    assert_eq!(err(api::backup_end(h)), HRESULT::E_HANDLE);

    // The CA is not reachable any more.
    let w = to_wide_nul(ca.server_name());
    let mut online = 7i32;
    let hr = unsafe { abi::CertSrvIsServerOnlineW(w.as_ptr(), &mut online) };
    assert_eq!(hr as u32, 0x8007_06BA);
    assert_eq!(online, 0);
    // A restarted CA works again.
    ca.start().unwrap();
    full_backup(&ca, true);
}

#[test]
fn server_control_suspend_and_restart_succeed_without_effect() {
    let ca = new_ca();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let before = snap(&ca);
    for flags in [CSCONTROL_SUSPEND, CSCONTROL_RESTART] {
        let (hr, cb, pb) = control(ca.server_name(), flags);
        assert_eq!(HRESULT(hr), HRESULT::S_OK, "flags {flags}");
        assert_eq!(cb, 0);
        assert!(pb.is_null());
        assert_eq!(snap(&ca), before);
        assert_eq!(ca.service(), ServiceState::Running);
    }
    // The session is still connected.
    secure_database(h);
    secure_logs(h);
    api::backup_end(h).unwrap();
    assert!(ca.last_full_backup().is_some());
}

#[test]
fn server_control_other_flags_are_invalid() {
    let ca = new_ca();
    let before = snap(&ca);
    for flags in [0, 4, 5, 0x10, 0x8000_0000, u32::MAX] {
        let (hr, cb, pb) = control(ca.server_name(), flags);
        assert_eq!(hr as u32, 0x8007_0057, "flags {flags:#x}");
        assert_eq!(cb, 0);
        assert!(pb.is_null());
        assert_eq!(snap(&ca), before);
    }
    assert_eq!(ca.service(), ServiceState::Running);
}

#[test]
fn server_control_on_a_stopped_ca_is_unavailable() {
    let ca = new_ca();
    let (hr, _, _) = control(ca.server_name(), CSCONTROL_SHUTDOWN);
    assert_eq!(hr, 0);
    let before = snap(&ca);
    for flags in [CSCONTROL_SHUTDOWN, CSCONTROL_SUSPEND, CSCONTROL_RESTART] {
        let (hr, cb, pb) = control(ca.server_name(), flags);
        assert_eq!(hr as u32, 0x8007_06BA, "flags {flags}");
        assert_eq!(cb, 0);
        assert!(pb.is_null());
    }
    assert_eq!(snap(&ca), before);
    assert_eq!(ca.service(), ServiceState::Stopped);
    // Unknown machines and machines without a CA.
    let (hr, _, _) = control("NO-SUCH-HOST-certadm-emu", CSCONTROL_SHUTDOWN);
    assert_eq!(hr as u32, 0x8007_06BA);
    let bare = EmulatedCa::builder().without_ca().build().unwrap();
    let (hr, _, _) = control(bare.server_name(), CSCONTROL_SHUTDOWN);
    assert_eq!(hr as u32, 0x8007_06BA);
}

#[test]
fn server_control_stops_a_suspended_ca() {
    let ca = new_ca();
    ca.stop().unwrap();
    ca.begin_start().unwrap();
    let (hr, _, _) = control(ca.server_name(), CSCONTROL_SHUTDOWN);
    assert_eq!(hr, 0);
    assert_eq!(ca.service(), ServiceState::Stopped);
}

#[test]
fn server_control_needs_administrator_or_operator() {
    let ca = EmulatedCa::builder()
        .identity(Identity {
            backup_privilege: false,
            local_admin: false,
            ..Identity::default()
        })
        .build()
        .unwrap();
    let before = snap(&ca);
    for flags in [CSCONTROL_SHUTDOWN, CSCONTROL_SUSPEND] {
        let (hr, _, _) = control(ca.server_name(), flags);
        assert_eq!(HRESULT(hr), HRESULT::E_ACCESSDENIED);
    }
    assert_eq!(snap(&ca), before);
    // The Operator role (backup privilege) is enough.
    ca.set_identity(Identity {
        local_admin: false,
        ..Identity::default()
    });
    let (hr, _, _) = control(ca.server_name(), CSCONTROL_SHUTDOWN);
    assert_eq!(hr, 0);
    assert_eq!(ca.service(), ServiceState::Stopped);
}

// ----- CertSrvIsServerOnlineW ----------------------------------------------------------

fn online(server: &str) -> (HRESULT, i32) {
    let w = to_wide_nul(server);
    let mut f = 0x5A5A_i32;
    let hr = unsafe { abi::CertSrvIsServerOnlineW(w.as_ptr(), &mut f) };
    (HRESULT(hr), f)
}

#[test]
fn is_server_online_reports_each_service_state() {
    let ca = new_ca();
    assert_eq!(online(ca.server_name()), (HRESULT::S_OK, 1));
    // The DNS name and the config string name the same server.
    assert_eq!(online(ca.dns_name()), (HRESULT::S_OK, 1));
    assert_eq!(online(&ca.config_string()), (HRESULT::S_OK, 1));
    assert!(api::is_server_online(ca.server_name()).unwrap());

    ca.stop().unwrap();
    assert_eq!(online(ca.server_name()).0.as_u32(), 0x8007_06BA);
    assert_eq!(online(ca.server_name()).1, 0);

    ca.begin_start().unwrap();
    assert_eq!(online(ca.server_name()), (HRESULT::S_OK, 0));
    assert!(!api::is_server_online(ca.server_name()).unwrap());

    ca.finish_start().unwrap();
    assert_eq!(online(ca.server_name()), (HRESULT::S_OK, 1));
    assert_eq!(ca.sessions_open(), 0);
}

#[test]
fn is_server_online_fails_for_unknown_server_and_machine_without_ca() {
    let (hr, f) = online("NO-SUCH-HOST-certadm-emu");
    assert_eq!(hr.as_u32(), 0x8007_06BA);
    assert_eq!(f, 0);
    let bare = EmulatedCa::builder().without_ca().build().unwrap();
    let (hr, f) = online(bare.server_name());
    assert_eq!(hr.as_u32(), 0x8007_06BA);
    assert_eq!(f, 0);
    assert_eq!(
        err(api::is_server_online(bare.server_name())),
        HRESULT::RPC_S_SERVER_UNAVAILABLE
    );
}

// ----- logs: roll, list, truncate --------------------------------------------------------

#[test]
fn full_backup_lists_logs_from_checkpoint_to_current() {
    let ca = new_ca();
    ca.issue(9).unwrap();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    // Activity during the backup rolls logs; the checkpoint is held for the backup.
    let cp = ca.checkpoint().generation;
    ca.issue(9).unwrap();
    ca.revoke(2).unwrap();
    assert_eq!(
        ca.checkpoint().generation,
        cp,
        "the database is frozen for the backup"
    );
    let cur = ca.current_position();
    assert!(cur.generation > cp + 1);
    assert!(cur.pos > 0);

    let list = api::backup_get_backup_logs(h).unwrap();
    // GetBackupLogs rolled edb.log into a numbered generation.
    assert_eq!(
        ca.current_position(),
        Position {
            generation: cur.generation + 1,
            pos: 0
        }
    );
    assert!(ca.log_generations().contains(&cur.generation));
    let entries = list.entries(true);
    let expect: Vec<String> = (cp..=cur.generation)
        .map(|g| certlog_unc(&ca, &log_file_name(g)))
        .collect();
    assert_eq!(
        entries.iter().map(|e| e.path.clone()).collect::<Vec<_>>(),
        expect
    );
    assert!(entries.iter().all(|e| e.kind == Some(CSBFT_LOG)));
    assert!(entries.iter().all(|e| e.kind == Some(b'!' as u16)));
    // Exact UNC form for one of them.
    assert_eq!(
        entries[0].path,
        format!(
            r"\\{}\C$\Windows\System32\CertLog\edb{:05X}.log",
            ca.dns_name(),
            cp
        )
    );
    api::backup_end(h).unwrap();
}

#[test]
fn incremental_lists_only_logs_since_the_last_backup() {
    let ca = new_ca();
    ca.issue(9).unwrap();
    let full = full_backup(&ca, true);
    let full_high = *full.last().unwrap();
    assert_eq!(ca.last_full_backup().unwrap().high_gen, full_high);

    ca.issue(10).unwrap();
    let cur = ca.current_position().generation;
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_LOGS_ONLY).unwrap();
    let inc1 = secure_logs(h);
    assert_eq!(inc1, (full_high + 1..=cur).collect::<Vec<_>>());
    api::backup_end(h).unwrap();
    assert_eq!(ca.last_incremental_backup().unwrap().high_gen, cur);
    assert_eq!(ca.last_full_backup().unwrap().high_gen, full_high);

    // The next incremental starts after the previous incremental.
    ca.issue(5).unwrap();
    let cur2 = ca.current_position().generation;
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_LOGS_ONLY).unwrap();
    let inc2 = secure_logs(h);
    assert_eq!(inc2, (cur + 1..=cur2).collect::<Vec<_>>());
    api::backup_end(h).unwrap();

    // A new full backup resets the chain: it starts at the checkpoint again.
    let cp = ca.checkpoint().generation;
    let full2 = full_backup(&ca, false);
    assert_eq!(full2.first().copied(), Some(cp));
    assert_eq!(ca.last_incremental_backup(), None);
}

#[test]
fn truncation_deletes_logs_below_the_checkpoint() {
    let ca = new_ca();
    ca.issue(14).unwrap();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    secure_database(h);
    let gens = secure_logs(h);
    let cp = ca.checkpoint().generation;
    assert_eq!(gens.first().copied(), Some(cp));
    let on_disk = ca.log_generations();
    let below: Vec<u32> = on_disk.iter().copied().filter(|g| *g < cp).collect();
    assert!(below.len() >= 2, "{on_disk:?}");
    let deleted = api::backup_truncate_logs(h).unwrap();
    assert_eq!(deleted, below);
    for g in &below {
        let p = ca
            .host_path(&format!(r"{}\{}", ca.log_dir(), log_file_name(*g)))
            .unwrap();
        assert!(!p.exists(), "{} still exists", p.display());
    }
    // Every generation the backup holds is still there.
    let after = ca.log_generations();
    assert_eq!(
        after,
        on_disk
            .iter()
            .copied()
            .filter(|g| *g >= cp)
            .collect::<Vec<_>>()
    );
    assert!(gens.iter().all(|g| after.contains(g)));
    assert_eq!(
        ca.last_full_backup().unwrap().high_gen,
        *gens.last().unwrap()
    );
    api::backup_end(h).unwrap();
    // End releases the freeze: the checkpoint catches up.
    assert_eq!(ca.checkpoint(), ca.current_position());
    // Records survive a restart with the truncated log set.
    let n = ca.record_count();
    ca.crash();
    ca.start().unwrap();
    assert_eq!(ca.record_count(), n);
}

#[test]
fn read_hint_rounds_to_a_power_of_two_between_64k_and_4m() {
    const MIN: u32 = 64 << 10;
    const MAX: u32 = 4 << 20;
    for hint in [
        0u32,
        1,
        4096,
        65_535,
        65_536,
        65_537,
        100_000,
        131_072,
        200_000,
        524_288,
        700_000,
        900_000,
        1 << 20,
        3 << 20,
        MAX,
        MAX + 1,
        u32::MAX,
    ] {
        let r = read_buffer_size(hint);
        assert!(r.is_power_of_two(), "hint {hint}: {r}");
        assert!((MIN..=MAX).contains(&r), "hint {hint}: {r}");
        if hint != 0 {
            // "a power of two near the value": no other allowed power is closer.
            let h = hint.clamp(MIN, MAX) as i64;
            let d = (r as i64 - h).abs();
            let mut p = MIN;
            while p <= MAX {
                assert!(
                    (p as i64 - h).abs() >= d,
                    "hint {hint}: {r} chosen, {p} is nearer"
                );
                p <<= 1;
            }
        }
    }
    assert_eq!(read_buffer_size(MIN), MIN);
    assert_eq!(read_buffer_size(MAX), MAX);
    assert_eq!(read_buffer_size(1), MIN);
    assert_eq!(read_buffer_size(u32::MAX), MAX);

    // Any hint opens the file and the bytes do not depend on it.
    let ca = new_ca();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let db = database_names(h).remove(0);
    let on_disk = std::fs::read(ca.host_path(&db).unwrap()).unwrap();
    for hint in [0u32, 1, 100_000, u32::MAX] {
        let size = api::backup_open_file(h, &db, hint).unwrap();
        assert_eq!(size, on_disk.len() as u64);
        let mut buf = vec![0u8; on_disk.len() + 10];
        let n = api::backup_read(h, &mut buf).unwrap();
        assert_eq!(&buf[..n], &on_disk[..]);
        api::backup_close(h).unwrap();
    }
    api::backup_end(h).unwrap();
}

// ----- lists through the ABI: prefixes, *pcbSize, CertSrvBackupFree ------------------------

type ListFn = unsafe extern "system" fn(*const c_void, *mut *mut u16, *mut u32) -> i32;

/// Calls a list export; returns the pointer and `*pcbSize` (buffer not freed).
fn raw_list(f: ListFn, h: Hcsbc) -> (*mut u16, u32) {
    let mut p: *mut u16 = null_mut();
    let mut cb = 0u32;
    let hr = unsafe { f(h.as_ptr(), &mut p, &mut cb) };
    assert_eq!(HRESULT(hr), HRESULT::S_OK);
    assert!(!p.is_null());
    (p, cb)
}

/// The entries of a returned list, checking the size and the double NUL.
fn entries_of(p: *mut u16, cb: u32) -> Vec<Vec<u16>> {
    assert_eq!(cb % 2, 0);
    let units = unsafe { std::slice::from_raw_parts(p, cb as usize / 2) };
    assert!(!units.is_empty());
    assert_eq!(units[units.len() - 1], 0, "final NUL");
    let mut out = Vec::new();
    let mut rest = units;
    loop {
        let end = rest.iter().position(|&u| u == 0).unwrap();
        if end == 0 {
            assert_eq!(rest.len(), 1, "nothing after the terminating NUL");
            break;
        }
        out.push(rest[..end].to_vec());
        rest = &rest[end + 1..];
    }
    // *pcbSize = 2 × (Σ(len+1) + 1)
    let expect: usize = 2 * (out.iter().map(|e| e.len() + 1).sum::<usize>() + 1);
    assert_eq!(cb as usize, expect);
    out
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

fn prefixed(kind: u16, s: &str) -> Vec<u16> {
    let mut v = vec![kind];
    v.extend(s.encode_utf16());
    v
}

#[test]
fn lists_have_csbft_prefixes_and_exact_size() {
    let ca = new_ca();
    ca.issue(9).unwrap();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let dns = ca.dns_name().to_string();
    let certlog = format!(r"\\{dns}\C$\Windows\System32\CertLog");

    let (p, cb) = raw_list(abi::CertSrvRestoreGetDatabaseLocationsW, h);
    assert_eq!(
        entries_of(p, cb),
        vec![
            prefixed(0x44, &format!(r"{certlog}\Emu Issuing CA.edb")),
            prefixed(0x82, &certlog),
            prefixed(0x83, &certlog),
        ]
    );
    unsafe { abi::CertSrvBackupFree(p.cast()) };

    let (p, cb) = raw_list(abi::CertSrvBackupGetDatabaseNamesW, h);
    assert_eq!(
        entries_of(p, cb),
        vec![prefixed(
            CSBFT_CERTSERVER_DATABASE,
            &format!(r"{certlog}\Emu Issuing CA.edb")
        )]
    );
    // The documented byte layout: 'D' '\' '\' ... then NUL NUL.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, cb as usize) };
    assert_eq!(&bytes[..6], &[0x44, 0, 0x5C, 0, 0x5C, 0]);
    assert_eq!(&bytes[bytes.len() - 4..], &[0, 0, 0, 0]);
    unsafe { abi::CertSrvBackupFree(p.cast()) };

    let cp = ca.checkpoint().generation;
    let cur = ca.current_position().generation;
    let (p, cb) = raw_list(abi::CertSrvBackupGetBackupLogsW, h);
    let expect: Vec<Vec<u16>> = (cp..=cur)
        .map(|g| prefixed(CSBFT_LOG, &format!(r"{certlog}\{}", log_file_name(g))))
        .collect();
    assert_eq!(entries_of(p, cb), expect);
    unsafe { abi::CertSrvBackupFree(p.cast()) };

    let (p, cb) = raw_list(abi::CertSrvBackupGetDynamicFileListW, h);
    let enroll = format!(r"\\{dns}\C$\Windows\System32\CertSrv\CertEnroll");
    assert_eq!(
        entries_of(p, cb),
        vec![
            wide(&format!(r"{enroll}\Emu Issuing CA.crl")),
            wide(&format!(
                r"{enroll}\{}_Emu Issuing CA.crt",
                ca.server_name()
            )),
        ],
        "dynamic files carry no CSBFT prefix"
    );
    unsafe { abi::CertSrvBackupFree(p.cast()) };
    assert_eq!(ca.outstanding_buffers(), 0);
    api::backup_end(h).unwrap();
}

#[test]
fn backup_free_buffers_stay_valid_after_end() {
    let ca = new_ca();
    ca.issue(5).unwrap();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let lists: Vec<(*mut u16, u32, Vec<u16>)> = [
        abi::CertSrvRestoreGetDatabaseLocationsW as ListFn,
        abi::CertSrvBackupGetDatabaseNamesW,
        abi::CertSrvBackupGetBackupLogsW,
        abi::CertSrvBackupGetDynamicFileListW,
    ]
    .into_iter()
    .map(|f| {
        let (p, cb) = raw_list(f, h);
        let copy = unsafe { std::slice::from_raw_parts(p, cb as usize / 2) }.to_vec();
        (p, cb, copy)
    })
    .collect();
    assert_eq!(ca.outstanding_buffers(), 4);
    let hr = unsafe { abi::CertSrvBackupEnd(h.as_ptr()) };
    assert_eq!(hr, 0);
    assert_eq!(ca.sessions_open(), 0);
    // After End (spec §8.1 step 15): the buffers are unchanged and still owned by the client.
    assert_eq!(ca.outstanding_buffers(), 4);
    for (i, (p, cb, copy)) in lists.iter().enumerate() {
        let now = unsafe { std::slice::from_raw_parts(*p, *cb as usize / 2) };
        assert_eq!(now, &copy[..]);
        assert!(!entries_of(*p, *cb).is_empty());
        unsafe { abi::CertSrvBackupFree(p.cast()) };
        assert_eq!(ca.outstanding_buffers(), 3 - i);
    }
    assert_eq!(ca.outstanding_buffers(), 0);
}

// ----- routing ---------------------------------------------------------------------

/// A thread keeps the routes it used; registering or removing a machine anywhere makes
/// it read the tables again. So a name reused by a new machine reaches that machine, and
/// never the removed one, and a handle of the removed machine stays dead, also on the
/// thread that routed to it a moment ago and on the other threads.
#[test]
fn routes_follow_the_machines_that_have_the_names_now() {
    const NAME: &str = "ROUTEREUSE1";
    let a = EmulatedCa::builder().server_name(NAME).build().unwrap();
    assert!(api::is_server_online(NAME).unwrap());
    assert!(api::is_server_online("routereuse1").unwrap());
    let ha = api::backup_prepare(NAME, 0, CSBACKUP_TYPE_FULL).unwrap();
    assert_eq!(a.call_count(), 3);
    drop(a);
    assert_eq!(
        err(api::is_server_online(NAME)),
        HRESULT::RPC_S_SERVER_UNAVAILABLE
    );
    assert_eq!(err(api::backup_end(ha)), HRESULT::E_HANDLE);

    let b = EmulatedCa::builder().server_name(NAME).build().unwrap();
    assert!(api::is_server_online(NAME).unwrap());
    assert_eq!(b.call_count(), 1);
    assert_eq!(err(api::backup_end(ha)), HRESULT::E_HANDLE);
    let hb = api::backup_prepare(NAME, 0, CSBACKUP_TYPE_FULL).unwrap();
    assert_ne!(hb, ha);
    // Other threads route the same name and handle to the same machine.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                assert!(api::is_server_online(NAME).unwrap());
                assert_eq!(err(api::backup_end(ha)), HRESULT::E_HANDLE);
            });
        }
    });
    // The four Ends of `ha` never reach `b`.
    assert_eq!(b.call_count(), 2 + 4);
    api::backup_end(hb).unwrap();
    assert_eq!(b.sessions_open(), 0);
    assert_eq!(err(api::backup_end(hb)), HRESULT::E_HANDLE);
}

/// A thread's routes hold the machines they lead to (a call borrows its host from the
/// route, touching no reference count). A removed machine is let go by the thread that
/// removes it at once, and by another thread that called it at that thread's next call:
/// its files go with the last.
#[test]
fn a_removed_machine_is_freed_by_the_threads_that_called_it() {
    // A file of the CA, under its temporary root.
    let edb = |ca: &EmulatedCa| {
        let f = ca.files().into_iter().next();
        f.expect("the CA has files").host_path
    };
    // Called and removed on this thread: freed at once.
    let a = EmulatedCa::builder()
        .server_name("FREEDAT1")
        .build()
        .unwrap();
    let a_edb = edb(&a);
    let h = api::backup_prepare("FREEDAT1", 0, CSBACKUP_TYPE_FULL).unwrap();
    api::backup_end(h).unwrap();
    assert!(api::is_server_online("FREEDAT1").unwrap());
    drop(a);
    assert!(!a_edb.exists(), "{}", a_edb.display());

    // Called by another thread, which then waits: freed when that thread calls again.
    let b = EmulatedCa::builder()
        .server_name("FREEDAT2")
        .build()
        .unwrap();
    let b_edb = edb(&b);
    let (to_main, from_other) = std::sync::mpsc::channel();
    let (to_other, from_main) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        assert!(api::is_server_online("FREEDAT2").unwrap());
        to_main.send(()).unwrap();
        from_main.recv().unwrap();
        // Any call: the routes see the change and let go.
        assert_eq!(
            api::is_server_online("FREEDAT2").unwrap_err().hresult(),
            HRESULT::RPC_S_SERVER_UNAVAILABLE
        );
        to_main.send(()).unwrap();
        from_main.recv().unwrap();
    });
    from_other.recv().unwrap();
    drop(b);
    assert!(
        api::is_server_online("FREEDAT2").is_err(),
        "the name is free"
    );
    to_other.send(()).unwrap();
    from_other.recv().unwrap();
    assert!(!b_edb.exists(), "{}", b_edb.display());
    to_other.send(()).unwrap();
    other.join().unwrap();
}

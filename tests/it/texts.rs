//! The exact texts a user reads: the conformance report (what `lint`, `verify` and the
//! report at exit print) and the messages of the main errors. Other tests check codes and
//! look for words; these pin every character, so a change of wording is a visible diff.

use certadm_emu::api::{self, Registration};
use certadm_emu::conformance;
use certadm_emu::core::consts::*;
use certadm_emu::core::{PathRefusal, RecoveryFailure};
use certadm_emu::machine::Identity;
use certadm_emu::{EmulatedCa, Error, Hcsbc, HRESULT};

/// A trace with one buggy backup and one buggy restore (JSON lines, as `CERTADM_EMU_TRACE`
/// and the recorder write them).
const BUGGY_TRACE: &str = r#"{"seq":1,"call":"CertSrvBackupPrepareW","client":1,"args":{"pwszServerName":"HOST","grbitJet":0,"dwBackupFlags":1},"hr":"0x00000000","out":{"hbc":"0x1"},"count":1,"elapsed_ns":5}
{"seq":2,"call":"CertSrvBackupGetDatabaseNamesW","client":1,"args":{"hbc":"0x1"},"hr":"0x00000000","out":{"buffer":"0x1","cbSize":120,"list":["D\\\\host.example\\C$\\Windows\\System32\\CertLog\\CA.edb"]},"count":1,"elapsed_ns":5}
{"seq":3,"call":"CertSrvBackupOpenFileW","client":1,"args":{"hbc":"0x1","pwszAttachmentName":"D\\\\host.example\\C$\\Windows\\System32\\CertLog\\CA.edb","cbReadHintSize":0},"hr":"0x80070002","out":{},"count":1,"elapsed_ns":5}
{"seq":4,"call":"CertSrvBackupOpenFileW","client":1,"args":{"hbc":"0x1","pwszAttachmentName":"\\\\host.example\\C$\\Windows\\System32\\CertLog\\CA.edb","cbReadHintSize":0},"hr":"0x00000000","out":{"liFileSize":3108},"count":1,"elapsed_ns":5}
{"seq":5,"call":"CertSrvBackupRead","client":1,"args":{"hbc":"0x1","cbBuffer":1000},"hr":"0x00000000","out":{"read":1000},"count":1,"elapsed_ns":5}
{"seq":6,"call":"CertSrvBackupEnd","client":1,"args":{"hbc":"0x1"},"hr":"0x00000000","out":{},"count":1,"elapsed_ns":5}
{"seq":7,"call":"CertSrvBackupRead","client":1,"args":{"hbc":"0x1","cbBuffer":1000},"hr":"0x80070006","out":{},"count":1,"elapsed_ns":5}
{"seq":8,"call":"CertSrvRestorePrepareW","client":1,"args":{"pwszServerName":"HOST","dwRestoreFlags":1},"hr":"0x00000000","out":{"hbc":"0x2"},"count":1,"elapsed_ns":5}
{"seq":9,"call":"CertSrvRestoreRegisterW","client":1,"args":{"hbc":"0x2","pwszCheckPointFilePath":null,"pwszLogPath":null,"rgrstmap":[],"pwszBackupLogPath":null,"genLow":3,"genHigh":4},"hr":"0x00000000","out":{},"count":1,"elapsed_ns":5}
"#;

/// The report of [`BUGGY_TRACE`]: eight rules broken, each with its call, detail, rule
/// and fix, then the trace.
const BUGGY_REPORT: &str = r#"certadm-emu conformance: 8 violation(s) in 9 calls
- [error] CB05 file name passed with its CSBFT prefix at call #3
    call:   #3 CertSrvBackupOpenFileW(hbc=0x1, pwszAttachmentName="D\\\\host.example\\C$\\Windows\\System32\\CertLog\\CA.edb", cbReadHintSize=0) -> 0x80070002 ERROR_FILE_NOT_FOUND
    detail: "D\\\\host.example\\C$\\Windows\\System32\\CertLog\\CA.edb" starts with the type character 'D'
    rule:   DOC:CertSrvBackupOpenFileW: names are passed "with the single-WCHAR CSBFT_* prefix stripped" (spec §4 rule 8)
    fix:    skip the first WCHAR of each list entry before CertSrvBackupOpenFileW
- [warning] CB02 file opened but not closed at call #6
    call:   #6 CertSrvBackupEnd(hbc=0x1) -> 0x00000000 S_OK
    detail: \\host.example\c$\windows\system32\certlog\ca.edb opened by CertSrvBackupOpenFileW was still open at End
    rule:   DOC:CertSrvBackupClose "For every successful call to CertSrvBackupOpenFile, there should be a subsequent call to CertSrvBackupClose" (spec §5.7)
    fix:    call CertSrvBackupClose after the read loop, also when a read fails
- [error] CB06 listed file not read to end of file before End at call #6
    call:   #6 CertSrvBackupEnd(hbc=0x1) -> 0x00000000 S_OK
    detail: not read to end of file: \\host.example\c$\windows\system32\certlog\ca.edb (1000 of 3108 bytes read)
    rule:   DOC:Backup steps 6-10; MS-CSRA 3.1.4.1.25 (spec §5.9)
    fix:    read every file from GetDatabaseNames and GetBackupLogs until CertSrvBackupRead returns fewer bytes than asked (0 at EOF)
- [warning] CB08 database locations not saved in a full backup at call #6
    call:   #6 CertSrvBackupEnd(hbc=0x1) -> 0x00000000 S_OK
    detail: this full backup never called CertSrvRestoreGetDatabaseLocationsW
    rule:   DOC:Backup step 5 "Save the information retrieved to an application-specific location" (spec §8.1, §8.2)
    fix:    call CertSrvRestoreGetDatabaseLocationsW in every full backup and keep the list (certbkxp.dat): the restore needs it
- [error] CB09 handle used after End at call #7
    call:   #7 CertSrvBackupRead(hbc=0x1, cbBuffer=1000) -> 0x80070006 E_HANDLE
    detail: context 0x1 was ended before this call
    rule:   DOC:CertSrvBackupEnd releases the HCSBC; MS-CSRA "BackupEnd MUST be the final API for a backup session" (spec §6.2 row 8)
    fix:    do not call anything with a context after CertSrvBackupEnd/CertSrvRestoreEnd; stop at the first failure
- [error] CR01 restore registered without RegisterComplete at call #9
    call:   #9 (end of trace)() -> 0x00000000 S_OK
    detail: registered at call #9 (CertSrvRestoreRegisterW) and never completed
    rule:   DOC:CertSrvRestoreRegisterComplete "If a registered restore operation is not completed, Certificate Services will not start" (spec §5.16)
    fix:    call CertSrvRestoreRegisterComplete (S_OK, or the failure) after every successful CertSrvRestoreRegister
- [warning] CR02 restore prepared but never ended at call #9
    call:   #9 (end of trace)() -> 0x00000000 S_OK
    detail: restore context 0x2 from call #8 (CertSrvRestorePrepareW) is still open
    rule:   DOC:CertSrvRestoreEnd "For every successful call to CertSrvRestorePrepare, there should be a call to CertSrvRestoreEnd" (spec §5.17)
    fix:    call CertSrvRestoreEnd on every path
- [warning] CB03 list buffer never freed at call #9
    call:   #9 (end of trace)() -> 0x00000000 S_OK
    detail: buffer 0x1 from call #2 (CertSrvBackupGetDatabaseNamesW)
    rule:   DOC:CertSrvBackupFree; DOC:Backup step 15 (spec §5.11)
    fix:    pass every list returned by the Get... functions to CertSrvBackupFree (after End is fine)
trace:
  #1 CertSrvBackupPrepareW(pwszServerName="HOST", grbitJet=0, dwBackupFlags=1) -> 0x00000000 S_OK hbc=0x1
  #2 CertSrvBackupGetDatabaseNamesW(hbc=0x1) -> 0x00000000 S_OK buffer=0x1 cbSize=120 list=["D\\\\host.example\\C$\\Windows\\System32\\CertLog\\CA.edb"]
  #3 CertSrvBackupOpenFileW(hbc=0x1, pwszAttachmentName="D\\\\host.example\\C$\\Windows\\System32\\CertLog\\CA.edb", cbReadHintSize=0) -> 0x80070002 ERROR_FILE_NOT_FOUND
  #4 CertSrvBackupOpenFileW(hbc=0x1, pwszAttachmentName="\\\\host.example\\C$\\Windows\\System32\\CertLog\\CA.edb", cbReadHintSize=0) -> 0x00000000 S_OK liFileSize=3108
  #5 CertSrvBackupRead(hbc=0x1, cbBuffer=1000) -> 0x00000000 S_OK read=1000
  #6 CertSrvBackupEnd(hbc=0x1) -> 0x00000000 S_OK
  #7 CertSrvBackupRead(hbc=0x1, cbBuffer=1000) -> 0x80070006 E_HANDLE
  #8 CertSrvRestorePrepareW(pwszServerName="HOST", dwRestoreFlags=1) -> 0x00000000 S_OK hbc=0x2
  #9 CertSrvRestoreRegisterW(hbc=0x2, pwszCheckPointFilePath=NULL, pwszLogPath=NULL, rgrstmap=[], pwszBackupLogPath=NULL, genLow=3, genHigh=4) -> 0x00000000 S_OK
"#;

#[test]
fn the_conformance_report_text_is_pinned() {
    let events = conformance::parse_trace(BUGGY_TRACE).unwrap();
    let report = conformance::check(&events, true);
    let ids: Vec<&str> = report.violations.iter().map(|v| v.rule.id).collect();
    assert_eq!(
        ids,
        ["CB05", "CB02", "CB06", "CB08", "CB09", "CR01", "CR02", "CB03"]
    );
    let text = report.to_string();
    assert!(
        text == BUGGY_REPORT,
        "the report text changed:\n{}",
        first_difference(&text, BUGGY_REPORT)
    );
}

/// The first line where `got` and `want` differ, both versions.
fn first_difference(got: &str, want: &str) -> String {
    let (mut g, mut w) = (got.lines(), want.lines());
    for n in 1.. {
        match (g.next(), w.next()) {
            (None, None) => return "(only the line ends differ)".into(),
            (a, b) if a != b => return format!("line {n}:\n got: {a:?}\nwant: {b:?}"),
            _ => {}
        }
    }
    unreachable!()
}

/// A CA of this module: fixed names, so the messages are the same in every run.
fn ca(name: &str) -> EmulatedCa {
    EmulatedCa::builder()
        .server_name(name)
        .records(5)
        .log_capacity(4)
        .build()
        .unwrap()
}

/// The message of `e` with the parts that differ between runs replaced.
fn text(e: &Error, replace: &[(&str, &str)]) -> String {
    let mut t = e.to_string();
    for (from, to) in replace {
        t = t.replace(from, to);
    }
    t
}

/// The messages of the main errors, each produced by the call that fails as a client would
/// make it (sequence, handle, server, access, path, restore and recovery errors), with
/// its HRESULT; only a handle value and a host path, which change from run to run, are
/// replaced.
#[test]
fn the_main_error_messages_are_pinned() {
    let a = ca("PINTEXTA");
    let b = ca("PINTEXTB");
    let c = ca("PINTEXTC");
    let mut got: Vec<(&str, u32, String)> = Vec::new();
    let mut add = |what: &'static str, e: Error, replace: &[(&str, &str)]| {
        got.push((what, e.hresult().as_u32(), text(&e, replace)))
    };

    // Sequence errors and a backup in progress.
    add(
        "incremental without a full backup",
        api::backup_prepare(a.server_name(), 0, CSBACKUP_TYPE_LOGS_ONLY).unwrap_err(),
        &[],
    );
    let h = api::backup_prepare(a.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    add(
        "second prepare, same client",
        api::backup_prepare(a.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap_err(),
        &[],
    );
    add(
        "read before open",
        api::backup_read(h, &mut [0u8; 8]).unwrap_err(),
        &[],
    );
    add(
        "truncate before every file is read",
        api::backup_truncate_logs(h).unwrap_err(),
        &[],
    );
    let server = a.server_name().to_string();
    add(
        "prepare from another client",
        std::thread::spawn(move || api::backup_prepare(&server, 0, CSBACKUP_TYPE_FULL))
            .join()
            .unwrap()
            .unwrap_err(),
        &[],
    );
    api::backup_end(h).unwrap();

    // Invalid handles.
    let stale = format!("{:#x}", h.as_raw());
    add(
        "call after End",
        api::backup_end(h).unwrap_err(),
        &[(&stale, "<handle>")],
    );
    add(
        "forged handle",
        api::backup_end(Hcsbc::from_raw(0x1234_5678).unwrap()).unwrap_err(),
        &[],
    );

    // The server.
    add(
        "unknown server",
        api::is_server_online("PINTEXT-NOWHERE").unwrap_err(),
        &[],
    );
    b.set_identity(Identity {
        remote: true,
        ..Identity::default()
    });
    add(
        "remote backup",
        api::backup_prepare(b.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap_err(),
        &[],
    );
    b.set_identity(Identity::default());

    // Path refusals, one of each kind.
    add("escaping path", b.host_path(r"C:\..\x").unwrap_err(), &[]);
    add("other host", b.host_path(r"\\OTHER\C$\x").unwrap_err(), &[]);
    add(
        "device name",
        b.host_path(r"C:\Windows\System32\CertLog\CON").unwrap_err(),
        &[],
    );
    add(
        "relative path",
        b.host_path(r"Windows\System32").unwrap_err(),
        &[],
    );

    // Restore: a second registration, then recovery failures.
    b.stop().unwrap();
    b.wipe_files().unwrap();
    let edb = b.host_path(&b.database_path()).unwrap();
    let reg = Registration {
        checkpoint_path: None,
        log_path: None,
        restore_map: vec![(b.database_path(), b.database_path())],
        backup_log_path: None,
        gen_low: 1,
        gen_high: 2,
    };
    let r = api::restore_prepare(b.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    api::restore_register(Some(r), &reg, false).unwrap();
    add(
        "second registration before Complete",
        api::restore_register(Some(r), &reg, false).unwrap_err(),
        &[],
    );
    add(
        "start held by a registration never completed",
        b.start().unwrap_err(),
        &[],
    );
    b.stop().unwrap();
    api::restore_register_complete(Some(r), HRESULT::S_OK).unwrap();
    api::restore_end(r).unwrap();
    add(
        "recovery without the database",
        b.start().unwrap_err(),
        &[(&edb.display().to_string(), "<edb>")],
    );
    c.stop().unwrap();
    let r = api::restore_prepare(c.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    api::restore_register(Some(r), &reg, false).unwrap();
    api::restore_register_complete(Some(r), HRESULT::E_FAIL).unwrap();
    api::restore_end(r).unwrap();
    add(
        "restore completed with a failure",
        c.start().unwrap_err(),
        &[],
    );

    let want: &[(&str, u32, &str)] = &[
        (
            "incremental without a full backup",
            0xC8000230,
            "CertSrvBackupPrepareW: the database missed a previous full backup before \
             incremental backup: run a CSBACKUP_TYPE_FULL backup first",
        ),
        (
            "second prepare, same client",
            0x8000FFFF,
            "CertSrvBackupPrepareW: out of sequence: this client already has a backup session \
             open; call CertSrvBackupEnd on it before preparing another",
        ),
        (
            "read before open",
            0x8000FFFF,
            "CertSrvBackupRead: out of sequence: no file is open; call CertSrvBackupOpenFileW \
             first",
        ),
        (
            "truncate before every file is read",
            0x8000FFFF,
            "CertSrvBackupTruncateLogs: out of sequence: not every file of the backup set was \
             secured; truncating now would make the backup unrestorable. Missing: the database \
             (CertSrvBackupGetDatabaseNamesW was not called); the logs \
             (CertSrvBackupGetBackupLogsW was not called)",
        ),
        (
            "prepare from another client",
            0xC80001F9,
            "CertSrvBackupPrepareW: another client's backup session is running on this CA; only \
             one online backup runs at a time",
        ),
        (
            "call after End",
            0x80070006,
            "CertSrvBackupEnd: invalid handle <handle>: the session was ended (or never \
             existed); handles are dead after CertSrvBackupEnd / CertSrvRestoreEnd",
        ),
        (
            "forged handle",
            0x80070006,
            "CertSrvBackupEnd: invalid handle 0x12345678: not a handle returned by \
             CertSrvBackupPrepareW or CertSrvRestorePrepareW",
        ),
        (
            "unknown server",
            0x800706BA,
            "CertSrvIsServerOnlineW: server \"PINTEXT-NOWHERE\" unavailable: no emulated \
             machine has this name (create one with EmulatedCa::builder(), or define it in the \
             CERTADM_EMU_CONFIG file)",
        ),
        (
            "remote backup",
            0x80070005,
            "CertSrvBackupPrepareW: access denied: the caller is remote and InterfaceFlags has \
             IF_NOREMOTEICERTADMINBACKUP (part of IF_DEFAULT); run the backup on the CA host or \
             clear the flag",
        ),
        (
            "escaping path",
            0x80070005,
            r#"path "C:\\..\\x" refused: '..' climbs above C:\"#,
        ),
        (
            "other host",
            0x80070035,
            r#"path "\\\\OTHER\\C$\\x" refused: host "OTHER" is not this emulated machine"#,
        ),
        (
            "device name",
            0x8007007B,
            r#"path "C:\\Windows\\System32\\CertLog\\CON" refused: "CON" is a reserved device name"#,
        ),
        (
            "relative path",
            0x800700A1,
            r#"path "Windows\\System32" refused: relative paths are not accepted; give C:\... or \\HOST\C$\..."#,
        ),
        (
            "second registration before Complete",
            0xC80001FA,
            "CertSrvRestoreRegisterW: a restore is registered and \
             CertSrvRestoreRegisterComplete was not called yet; complete it first",
        ),
        (
            "start held by a registration never completed",
            0x80094006,
            "start: a restore is registered but CertSrvRestoreRegisterComplete was not called: \
             the service waits, suspended for a database restore operation, until \
             the registration is completed (or its RestoreInProgress marker removed) and the \
             service restarted",
        ),
        (
            "recovery without the database",
            0xC80004B6,
            "recovery failed (0xC80004B6 JET_errDatabaseCorrupted): the database file <edb> is \
             missing",
        ),
        (
            "restore completed with a failure",
            0x80004005,
            "start: the registered restore was completed with failure 0x80004005 E_FAIL; \
             Certificate Services does not recover it. Register the restore again, or clear the \
             registration",
        ),
    ];
    assert_eq!(got.len(), want.len());
    for ((what, hr, text), (w_what, w_hr, w_text)) in got.iter().zip(want) {
        assert_eq!(what, w_what);
        assert_eq!(*hr, *w_hr, "{what}: {text}");
        assert_eq!(text, w_text, "{what}");
    }
}

/// The texts of every path refusal and every recovery failure as the emulator renders
/// them: the HRESULT of each kind, and the message around the caller's details.
#[test]
fn each_path_refusal_and_recovery_failure_has_its_code_and_text() {
    let paths = [
        (PathRefusal::Malformed, 0x800700A1),
        (PathRefusal::InvalidName, 0x8007007B),
        (PathRefusal::OtherHost, 0x80070035),
        (PathRefusal::Escapes, 0x80070005),
    ];
    for (kind, hr) in paths {
        let e = Error::Path {
            kind,
            path: r"C:\x".into(),
            why: "because".into(),
        };
        assert_eq!(e.hresult().as_u32(), hr, "{kind:?}");
        assert_eq!(e.to_string(), r#"path "C:\\x" refused: because"#);
    }
    let recoveries = [
        (
            RecoveryFailure::MissingLogFile,
            "0xC8000210 JET_errMissingLogFile",
        ),
        (
            RecoveryFailure::MissingRestoreLogFiles,
            "0xC800022D JET_errMissingRestoreLogFiles",
        ),
        (
            RecoveryFailure::BadLogSignature,
            "0xC8000212 JET_errBadLogSignature",
        ),
        (
            RecoveryFailure::BadDbSignature,
            "0xC8000213 JET_errBadDbSignature",
        ),
        (
            RecoveryFailure::RestoreOfNonBackupDatabase,
            "0xC8000267 JET_errRestoreOfNonBackupDatabase",
        ),
        (
            RecoveryFailure::LogFileCorrupt,
            "0xC80001F5 JET_errLogFileCorrupt",
        ),
        (
            RecoveryFailure::DatabaseCorrupted,
            "0xC80004B6 JET_errDatabaseCorrupted",
        ),
    ];
    for (failure, code) in recoveries {
        let e = Error::Recovery {
            failure,
            why: "edb00003.log".into(),
        };
        assert_eq!(e.hresult().to_string(), code);
        assert_eq!(
            e.to_string(),
            format!("recovery failed ({code}): edb00003.log")
        );
    }
}

/// The two texts of a restore that ended before the end of its backup set (CR04): with the
/// set known from the CA's backup history, and without it.
#[test]
fn the_data_loss_texts_are_pinned() {
    use certadm_emu::ca::format::{BackupEnd, BackupSetKind};
    use certadm_emu::ca::recovery::DataLoss;
    let set = BackupEnd {
        kind: BackupSetKind::Full,
        low_gen: 3,
        high_gen: 7,
        transactions: 60,
    };
    let known = DataLoss {
        missing_from: 7,
        missing_through: Some(7),
        lost_transactions: Some(4),
        backup: Some(set),
    };
    assert_eq!(
        known.to_string(),
        "the restore ends before the end of its backup set: generation 7 (edb00007.log) is \
         missing; the full backup of generations 3..7 (edb00003.log .. edb00007.log, 60 \
         transactions) listed it, and 4 of its transactions are lost"
    );
    let two = DataLoss {
        missing_from: 6,
        ..known.clone()
    };
    assert!(two
        .to_string()
        .contains("generations 6..7 (edb00006.log .. edb00007.log) are missing"));
    let unknown = DataLoss {
        missing_from: 10,
        missing_through: None,
        lost_transactions: None,
        backup: None,
    };
    assert_eq!(
        unknown.to_string(),
        "the restore ends before the end of its backup set: at least generation 10 \
         (edb0000A.log) is missing (the restored chain ends on a log that no backup's log \
         listing sealed as the last of its set, and no edb.log continues it); the \
         transactions in it are lost"
    );
    assert_eq!(
        serde_json::to_string(&known).unwrap(),
        r#"{"missing_from":7,"missing_through":7,"lost_transactions":4,"backup":{"kind":"full","low_gen":3,"high_gen":7,"transactions":60}}"#
    );
}

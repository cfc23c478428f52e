//! Fault schedules, the call trace, the conformance checker and fail-at-every-step.

use certadm_emu::abi::{CertSrvBackupFree, CertSrvBackupGetDatabaseNamesW};
use certadm_emu::api;
use certadm_emu::api::faults::{Fault, FaultSchedule};
use certadm_emu::client::{backup_to_dir, restore_from_dirs, BackupOptions, RestoreOptions};
use certadm_emu::conformance::{self, *};
use certadm_emu::core::consts::*;
use certadm_emu::core::Call;
use certadm_emu::event::Event;
use certadm_emu::explore::fail_at_every_step;
use certadm_emu::{EmulatedCa, Hcsbc, HRESULT};
use std::path::Path;

fn ca() -> EmulatedCa {
    EmulatedCa::builder()
        .records(20)
        .log_capacity(8)
        .build()
        .unwrap()
}

/// A correct full backup through the reference client.
fn backup(ca: &EmulatedCa, dir: &Path) -> Result<(), String> {
    backup_to_dir(
        ca.server_name(),
        dir,
        &BackupOptions::default(),
        &mut |_, _, _| {},
    )
    .map(drop)
    .map_err(|e| e.to_string())
}

/// The demo's client: full backup, activity, incremental, disk loss, restore.
fn demo_client(ca: &EmulatedCa) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let full = dir.path().join("full");
    backup(ca, &full)?;
    ca.issue(5).map_err(|e| e.to_string())?;
    let inc = dir.path().join("inc");
    let opts = BackupOptions {
        incremental: true,
        truncate: false,
        ..Default::default()
    };
    backup_to_dir(ca.server_name(), &inc, &opts, &mut |_, _, _| {}).map_err(|e| e.to_string())?;
    restore_from_dirs(
        ca.server_name(),
        &full,
        &[inc],
        &|p| ca.host_path(p),
        &RestoreOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

fn hr_at(ca: &EmulatedCa, call: &str, nth: usize) -> HRESULT {
    ca.trace()
        .iter()
        .filter(|e| e.call.name() == call)
        .nth(nth)
        .map(|e| e.hr)
        .unwrap()
}

#[test]
fn fail_fault_fires_on_the_nth_call_only() {
    let ca = ca();
    ca.set_faults(FaultSchedule {
        seed: 0,
        faults: vec![Fault::Fail {
            function: Call::BackupOpenFile,
            nth: Some(2),
            hr: "RPC_S_CALL_FAILED".into(),
            probability: None,
        }],
    })
    .unwrap();
    let e = backup(&ca, &tempfile::tempdir().unwrap().path().join("b")).unwrap_err();
    assert!(e.contains("0x800706BE"), "{e}");
    assert_eq!(hr_at(&ca, "CertSrvBackupOpenFileW", 0), HRESULT::S_OK);
    assert_eq!(
        hr_at(&ca, "CertSrvBackupOpenFileW", 1),
        HRESULT::RPC_S_CALL_FAILED
    );
    ca.assert_all_faults_fired();
    assert_eq!(ca.sessions_open(), 0);
    // Nowhere else: the next backup is clean.
    backup(&ca, &tempfile::tempdir().unwrap().path().join("c")).unwrap();
}

#[test]
fn service_stop_between_calls_disconnects_the_session() {
    let ca = ca();
    ca.set_faults(FaultSchedule {
        seed: 0,
        faults: vec![Fault::ServiceStop {
            before: Call::BackupRead,
            nth: Some(1),
        }],
    })
    .unwrap();
    let e = backup(&ca, &tempfile::tempdir().unwrap().path().join("b")).unwrap_err();
    assert!(e.contains("RPC_E_DISCONNECTED"), "{e}");
    assert_eq!(ca.service(), certadm_emu::ca::ServiceState::Stopped);
    assert_eq!(
        ca.sessions_open(),
        0,
        "the client's End still works on a disconnected session"
    );
    ca.assert_all_faults_fired();
}

#[test]
fn service_suspend_gives_server_suspended() {
    let ca = ca();
    ca.set_faults(FaultSchedule {
        seed: 0,
        faults: vec![Fault::ServiceSuspend {
            before: Call::BackupGetBackupLogs,
            nth: None,
        }],
    })
    .unwrap();
    let e = backup(&ca, &tempfile::tempdir().unwrap().path().join("b")).unwrap_err();
    assert!(e.contains("CERTSRV_E_SERVER_SUSPENDED"), "{e}");
    assert_eq!(
        hr_at(&ca, "CertSrvBackupGetBackupLogsW", 0),
        HRESULT::CERTSRV_E_SERVER_SUSPENDED
    );
    ca.assert_all_faults_fired();
}

#[test]
fn read_fails_after_exactly_n_bytes() {
    let ca = ca();
    ca.set_faults(FaultSchedule {
        seed: 0,
        faults: vec![Fault::ReadFailAfter {
            bytes: 1000,
            hr: "RPC_S_CALL_FAILED".into(),
            file: Some(".edb".into()),
        }],
    })
    .unwrap();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let db = api::backup_get_database_names(h).unwrap().entries(true)[0]
        .path
        .clone();
    api::backup_open_file(h, &db, 0).unwrap();
    let mut buf = vec![0u8; 600];
    assert_eq!(api::backup_read(h, &mut buf).unwrap(), 600);
    // The read that would cross byte 1000 fails; nothing short is served.
    assert_eq!(
        api::backup_read(h, &mut buf).unwrap_err().hresult(),
        HRESULT::RPC_S_CALL_FAILED
    );
    let mut small = vec![0u8; 400];
    assert_eq!(
        api::backup_read(h, &mut small).unwrap(),
        400,
        "up to byte 1000 is fine"
    );
    assert_eq!(
        api::backup_read(h, &mut small).unwrap_err().hresult(),
        HRESULT::RPC_S_CALL_FAILED
    );
    api::backup_close(h).unwrap();
    // Logs are not affected (file filter).
    let logs = api::backup_get_backup_logs(h).unwrap().entries(true);
    let size = api::backup_open_file(h, &logs[0].path, 0).unwrap();
    let mut big = vec![0u8; 1 << 20];
    assert_eq!(api::backup_read(h, &mut big).unwrap() as u64, size);
    api::backup_close(h).unwrap();
    api::backup_end(h).unwrap();
    ca.assert_all_faults_fired();
}

#[test]
fn short_reads_expose_a_client_that_takes_them_for_eof() {
    for size in [1u32, 4095] {
        let ca = EmulatedCa::builder().edb_size(1 << 20).build().unwrap();
        ca.set_faults(FaultSchedule {
            seed: 0,
            faults: vec![Fault::ShortReads { size, file: None }],
        })
        .unwrap();
        let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
        let db = api::backup_get_database_names(h).unwrap().entries(true)[0]
            .path
            .clone();
        let total = api::backup_open_file(h, &db, 0).unwrap();
        let mut buf = vec![0u8; 8192];
        // A naive client stops at the first short read and copies too little.
        let first = api::backup_read(h, &mut buf).unwrap();
        assert_eq!(first as u32, size);
        assert!((first as u64) < total);
        api::backup_end(h).unwrap();
        let r = ca.report();
        assert_eq!(r.of(NOT_READ_TO_EOF).len(), 1, "{r}");
        ca.assert_all_faults_fired();
    }
}

#[test]
fn corrupt_read_flips_exactly_one_byte() {
    let ca = ca();
    let dir = tempfile::tempdir().unwrap();
    // The backup serves the database file as it is now (frozen for the session).
    let a = std::fs::read(ca.host_path(&ca.database_path()).unwrap()).unwrap();
    ca.set_faults(FaultSchedule {
        seed: 0,
        faults: vec![Fault::CorruptRead {
            offset: 100,
            file: Some(".edb".into()),
        }],
    })
    .unwrap();
    backup(&ca, &dir.path().join("bad")).unwrap();
    ca.assert_all_faults_fired();
    let name = format!("{}.edb", ca.ca_name());
    let b = std::fs::read(dir.path().join("bad/DataBase").join(&name)).unwrap();
    let diffs: Vec<usize> = a
        .iter()
        .zip(&b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(diffs, vec![100]);
}

#[test]
fn start_refuses_once_and_restore_file_unwritable() {
    let ca = ca();
    ca.set_faults(FaultSchedule {
        seed: 0,
        faults: vec![Fault::StartRefuses {
            hr: "JET_errDatabaseCorrupted".into(),
        }],
    })
    .unwrap();
    ca.stop().unwrap();
    assert_eq!(
        ca.start().unwrap_err().hresult(),
        HRESULT::JET_errDatabaseCorrupted
    );
    assert_eq!(ca.service(), certadm_emu::ca::ServiceState::Stopped);
    ca.start().unwrap();
    ca.assert_all_faults_fired();

    let ca2 = EmulatedCa::builder()
        .records(20)
        .log_capacity(8)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    backup(&ca2, &dir.path().join("full")).unwrap();
    let logs: Vec<String> = std::fs::read_dir(dir.path().join("full/DataBase"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    let blocked = format!("{}\\{}", ca2.log_dir(), logs[0]);
    ca2.stop().unwrap();
    ca2.wipe_files().unwrap();
    ca2.set_faults(FaultSchedule {
        seed: 0,
        faults: vec![Fault::RestoreFileUnwritable { path: blocked }],
    })
    .unwrap();
    let e = restore_from_dirs(
        ca2.server_name(),
        &dir.path().join("full"),
        &[],
        &|p| ca2.host_path(p),
        &RestoreOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.call, "copy backup file", "{e}");
}

#[test]
fn unfired_faults_are_reported() {
    let ca = ca();
    ca.set_faults(FaultSchedule {
        seed: 0,
        faults: vec![Fault::Fail {
            function: Call::BackupTruncateLogs,
            nth: Some(5),
            hr: "E_FAIL".into(),
            probability: None,
        }],
    })
    .unwrap();
    backup(&ca, &tempfile::tempdir().unwrap().path().join("b")).unwrap();
    assert_eq!(ca.unfired_faults().len(), 1);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ca.assert_all_faults_fired()
    }));
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(
        msg.contains("never fired") && msg.contains("CertSrvBackupTruncateLogs"),
        "{msg}"
    );
}

fn run_traced(seed: u64) -> Vec<(String, HRESULT)> {
    let ca = ca();
    ca.set_faults(FaultSchedule {
        seed,
        faults: vec![Fault::Fail {
            function: Call::BackupRead,
            nth: None,
            hr: "RPC_S_CALL_FAILED".into(),
            probability: Some(0.3),
        }],
    })
    .unwrap();
    for i in 0..6 {
        let _ = backup(
            &ca,
            &tempfile::tempdir().unwrap().path().join(format!("b{i}")),
        );
    }
    ca.trace()
        .into_iter()
        .map(|e| (e.call.to_string(), e.hr))
        .collect()
}

#[test]
fn seeded_probabilistic_schedule_replays_identically() {
    assert_eq!(run_traced(11), run_traced(11));
    assert_ne!(run_traced(11), run_traced(12));
}

#[test]
fn schedule_round_trips_through_json_and_env_format() {
    let s = FaultSchedule {
        seed: 5,
        faults: vec![
            Fault::FailNthCall { n: 3, hr: None },
            Fault::ReadFailAfter {
                bytes: 10,
                hr: "0x800706BE".into(),
                file: None,
            },
            Fault::RestoreFileUnwritable {
                path: r"C:\x".into(),
            },
        ],
    };
    assert_eq!(FaultSchedule::from_json(&s.to_json()).unwrap(), s);
}

// ----- conformance: one buggy client per rule --------------------------------------

fn rules_of(ca: &EmulatedCa) -> Vec<&'static str> {
    let mut v: Vec<&str> = ca.report().violations.iter().map(|v| v.rule.id).collect();
    v.dedup();
    v
}

fn read_all(h: Hcsbc, name: &str) {
    api::backup_open_file(h, name, 0).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    while api::backup_read(h, &mut buf).unwrap() == buf.len() {}
    api::backup_close(h).unwrap();
}

#[test]
fn correct_client_is_clean() {
    let ca = ca();
    backup(&ca, &tempfile::tempdir().unwrap().path().join("b")).unwrap();
    ca.verify().unwrap();
}

#[test]
fn catches_prepare_never_ended() {
    let ca = ca();
    api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_LOGS_ONLY).unwrap_err();
    let _h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    assert_eq!(rules_of(&ca), vec!["CB01"]);
    let text = ca.verify().unwrap_err().to_string();
    assert!(
        text.contains("fix:") && text.contains("CertSrvBackupEnd"),
        "{text}"
    );
}

#[test]
fn catches_file_not_closed_and_not_read_to_eof() {
    let ca = ca();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    api::restore_get_database_locations(h).unwrap();
    let db = api::backup_get_database_names(h).unwrap().entries(true)[0]
        .path
        .clone();
    api::backup_open_file(h, &db, 0).unwrap();
    let mut b = [0u8; 10];
    api::backup_read(h, &mut b).unwrap();
    api::backup_end(h).unwrap();
    assert_eq!(rules_of(&ca), vec!["CB02", "CB06"]);
}

#[test]
fn catches_unfreed_and_double_freed_buffers() {
    let ca = ca();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let (mut p1, mut p2, mut cb) = (std::ptr::null_mut(), std::ptr::null_mut(), 0u32);
    unsafe {
        assert_eq!(
            CertSrvBackupGetDatabaseNamesW(h.as_ptr(), &mut p1, &mut cb),
            0
        );
        assert_eq!(
            CertSrvBackupGetDatabaseNamesW(h.as_ptr(), &mut p2, &mut cb),
            0
        );
        CertSrvBackupFree(p1.cast());
        CertSrvBackupFree(p1.cast()); // twice
    }
    api::backup_end(h).unwrap();
    let r = ca.report();
    assert_eq!(r.of(BAD_FREE).len(), 1, "{r}");
    assert_eq!(r.of(BUFFER_NOT_FREED).len(), 1, "{r}");
    unsafe { CertSrvBackupFree(p2.cast()) };
    assert!(ca.report().of(BUFFER_NOT_FREED).is_empty());
}

#[test]
fn catches_name_with_prefix_and_locations_not_fetched() {
    let ca = ca();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let l = api::backup_get_database_names(h).unwrap();
    let raw: String = format!("D{}", l.entries(true)[0].path);
    assert_eq!(
        api::backup_open_file(h, &raw, 0).unwrap_err().hresult(),
        HRESULT::ERROR_FILE_NOT_FOUND
    );
    read_all(h, &l.entries(true)[0].path);
    let logs = api::backup_get_backup_logs(h).unwrap();
    for e in logs.entries(true) {
        read_all(h, &e.path);
    }
    api::backup_end(h).unwrap();
    assert_eq!(rules_of(&ca), vec!["CB05", "CB08"]);
}

#[test]
fn catches_truncation_before_files_were_secured() {
    let ca = ca();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    api::restore_get_database_locations(h).unwrap();
    api::backup_get_database_names(h).unwrap();
    api::backup_get_backup_logs(h).unwrap();
    assert_eq!(
        api::backup_truncate_logs(h).unwrap_err().hresult(),
        HRESULT::E_UNEXPECTED
    );
    api::backup_end(h).unwrap();
    assert_eq!(rules_of(&ca)[0], "CB07");
}

#[test]
fn catches_use_after_end() {
    let ca = ca();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_LOGS_ONLY).err();
    assert!(h.is_some());
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    api::restore_get_database_locations(h).unwrap();
    api::backup_end(h).unwrap();
    assert_eq!(
        api::backup_close(h).unwrap_err().hresult(),
        HRESULT::E_HANDLE
    );
    assert_eq!(rules_of(&ca), vec!["CB09"]);
}

#[test]
fn catches_restore_registered_without_complete_and_never_ended() {
    let ca = ca();
    ca.stop().unwrap();
    let h = api::restore_prepare(ca.server_name(), 0).unwrap();
    let reg = api::Registration {
        log_path: Some(ca.log_dir()),
        gen_low: 1,
        gen_high: 1,
        ..Default::default()
    };
    // Incremental before full is refused; a full registration then succeeds.
    assert!(api::restore_register(Some(h), &reg, false).is_err());
    api::restore_end(h).unwrap();
    let h = api::restore_prepare(ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    let db = ca.database_path();
    let reg = api::Registration {
        restore_map: vec![(db.clone(), db)],
        ..reg
    };
    api::restore_register(Some(h), &reg, false).unwrap();
    api::restore_end(h).unwrap();
    let h2 = api::restore_prepare(ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    let _ = h2;
    assert_eq!(rules_of(&ca), vec!["CR01", "CR02"]);
}

#[test]
fn catches_files_written_under_a_running_ca() {
    let ca = ca();
    std::fs::write(ca.host_path(&ca.database_path()).unwrap(), b"x").unwrap();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    assert_eq!(
        api::backup_get_database_names(h).unwrap_err().hresult(),
        HRESULT::ERROR_SHARING_VIOLATION
    );
    api::backup_end(h).unwrap();
    assert_eq!(rules_of(&ca)[0], "CR03");
}

#[test]
fn strict_mode_fails_the_test_on_drop_but_not_while_panicking() {
    let r = std::panic::catch_unwind(|| {
        let ca = EmulatedCa::builder().strict(true).build().unwrap();
        let _h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    });
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(
        msg.contains("CB01 backup prepared but never ended"),
        "{msg}"
    );
    // Already panicking: the original panic stays the one reported.
    let r = std::panic::catch_unwind(|| {
        let ca = EmulatedCa::builder().strict(true).build().unwrap();
        let _h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
        panic!("the real failure");
    });
    assert_eq!(
        *r.unwrap_err().downcast::<&str>().unwrap(),
        "the real failure"
    );
}

// ----- trace and lint --------------------------------------------------------------

#[test]
fn trace_round_trips_through_json_lines_and_lint_agrees() {
    let ca = ca();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let db = api::backup_get_database_names(h).unwrap().entries(true)[0]
        .path
        .clone();
    api::backup_open_file(h, &format!("D{db}"), 0).unwrap_err();
    let events = ca.trace();
    let text: String = events.iter().map(|e| e.to_json() + "\n").collect();
    let parsed = conformance::parse_trace(&text).unwrap();
    assert_eq!(parsed, events);
    let live = ca.report();
    let linted = conformance::check(&parsed, true);
    assert_eq!(linted.violations, live.violations);
    assert!(text.contains("\"pwszAttachmentName\""));
    api::backup_end(h).unwrap();
}

#[test]
fn consecutive_reads_fold_into_one_event() {
    let ca = EmulatedCa::builder().edb_size(1 << 20).build().unwrap();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let db = api::backup_get_database_names(h).unwrap().entries(true)[0]
        .path
        .clone();
    read_all(h, &db);
    api::backup_end(h).unwrap();
    let reads: Vec<Event> = ca
        .trace()
        .into_iter()
        .filter(|e| e.call == Call::BackupRead)
        .collect();
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].count, 17); // 16 full reads of 64 KiB and the short/zero one
    assert_eq!(reads[0].out("read").unwrap().as_u64(), Some(1 << 20));
}

#[test]
fn lint_names_an_unknown_function_and_its_line() {
    let ca = ca();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    api::backup_end(h).unwrap();
    let good: String = ca.trace().iter().map(|e| e.to_json() + "\n").collect();
    let bad = good.replacen("CertSrvBackupEnd", "CertSrvBackupEnds", 1);
    let err = conformance::parse_trace(&bad).unwrap_err();
    assert!(
        err.starts_with("line 2: ")
            && err.contains("\"CertSrvBackupEnds\" is not a certbcli function"),
        "{err}"
    );
    assert_eq!(conformance::parse_trace(&good).unwrap(), ca.trace());
}

// ----- fail at every step ----------------------------------------------------------

#[test]
fn explorer_finds_no_violation_in_the_demo_client() {
    let report = fail_at_every_step(|| Ok(ca()), demo_client, None).unwrap();
    assert!(report.calls > 20, "{report}");
    assert!(report.failures().is_empty(), "{report}");
    assert!(
        report
            .runs
            .iter()
            .filter(|r| r.client_result.is_err())
            .count()
            > 10,
        "{report}"
    );
}

#[test]
fn explorer_names_a_known_cleanup_bug() {
    // This client forgets CertSrvBackupEnd when a read fails, like the Microsoft samples' exit(1).
    let buggy = |ca: &EmulatedCa| -> Result<(), HRESULT> {
        let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL)
            .map_err(|e| e.hresult())?;
        let names = api::backup_get_database_names(h).map_err(|e| e.hresult())?;
        for e in names.entries(true) {
            api::backup_open_file(h, &e.path, 0).map_err(|e| e.hresult())?;
            let mut buf = vec![0u8; 4096];
            while api::backup_read(h, &mut buf).map_err(|e| e.hresult())? == buf.len() {}
            api::backup_close(h).map_err(|e| e.hresult())?;
        }
        api::backup_end(h).map_err(|e| e.hresult())
    };
    let report = fail_at_every_step(|| Ok(ca()), buggy, None).unwrap();
    let bad = report.failures();
    assert!(!bad.is_empty(), "{report}");
    assert!(
        bad.iter()
            .all(|r| r.violations.iter().any(|v| v.rule.id == "CB01")),
        "{report}"
    );
    assert!(
        bad.iter().any(|r| r.function == "CertSrvBackupRead"),
        "{report}"
    );
    assert!(report
        .to_string()
        .contains("CB01 backup prepared but never ended"));
}

#[test]
fn a_panic_inside_the_emulator_becomes_e_unexpected_and_a_report_entry() {
    let ca = ca();
    ca.set_faults(FaultSchedule {
        seed: 0,
        faults: vec![Fault::Panic {
            function: Call::BackupPrepare,
        }],
    })
    .unwrap();
    let server: Vec<u16> = ca.server_name().encode_utf16().chain([0]).collect();
    let mut h = std::ptr::null_mut();
    let hr = unsafe {
        certadm_emu::abi::CertSrvBackupPrepareW(server.as_ptr(), 0, CSBACKUP_TYPE_FULL, &mut h)
    };
    assert_eq!(HRESULT(hr), HRESULT::E_UNEXPECTED);
    assert!(h.is_null());
    let e = certadm_emu::abi::last_error().unwrap();
    assert!(e.to_string().contains("internal emulator panic"), "{e}");
    let r = ca.report();
    assert_eq!(r.of(EMULATOR_PANIC).len(), 1, "{r}");
    // The CA is not corrupted: with the fault removed, a backup runs clean.
    ca.set_faults(FaultSchedule::default()).unwrap();
    backup(&ca, &tempfile::tempdir().unwrap().path().join("b")).unwrap();
    assert_eq!(ca.sessions_open(), 0);
}

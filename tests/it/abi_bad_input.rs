//! Bad input through the `extern "system"` exports, as a careless C client passes it:
//! NULL pointers, NULL / forged / stale / ended handles, bad flags, bad names and bad
//! restore paths. Every bad call returns its exact HRESULT and changes nothing.

use certadm_emu::abi::{self, CSEDB_RSTMAPW};
use certadm_emu::ca::format::Position;
use certadm_emu::ca::recovery::RestoreMarker;
use certadm_emu::ca::{BackupMark, Record, ServiceState};
use certadm_emu::core::consts::*;
use certadm_emu::core::wide::to_wide_nul;
use certadm_emu::{EmulatedCa, HRESULT};
use core::ffi::c_void;
use std::ptr::{null, null_mut};

// ----- helpers ---------------------------------------------------------------------

const E_POINTER: u32 = 0x8000_4003;
const E_HANDLE: u32 = 0x8007_0006;
const E_INVALIDARG: u32 = 0x8007_0057;
const E_UNEXPECTED: u32 = 0x8000_FFFF;
const E_ACCESSDENIED: u32 = 0x8007_0005;
const ERROR_FILE_NOT_FOUND: u32 = 0x8007_0002;
const ERROR_BAD_NETPATH: u32 = 0x8007_0035;
const ERROR_INVALID_NAME: u32 = 0x8007_007B;
const ERROR_BAD_PATHNAME: u32 = 0x8007_00A1;

const DB_LOCAL: &str = r"C:\Windows\System32\CertLog\Emu Issuing CA.edb";
const LOG_DIR_LOCAL: &str = r"C:\Windows\System32\CertLog";

type ListFn = unsafe extern "system" fn(*const c_void, *mut *mut u16, *mut u32) -> i32;

const LIST_FNS: [(&str, ListFn); 4] = [
    (
        "CertSrvBackupGetDatabaseNamesW",
        abi::CertSrvBackupGetDatabaseNamesW,
    ),
    (
        "CertSrvBackupGetDynamicFileListW",
        abi::CertSrvBackupGetDynamicFileListW,
    ),
    (
        "CertSrvBackupGetBackupLogsW",
        abi::CertSrvBackupGetBackupLogsW,
    ),
    (
        "CertSrvRestoreGetDatabaseLocationsW",
        abi::CertSrvRestoreGetDatabaseLocationsW,
    ),
];

fn wz(s: &str) -> Vec<u16> {
    to_wide_nul(s)
}

fn new_ca() -> EmulatedCa {
    EmulatedCa::builder()
        .records(10)
        .log_capacity(4)
        .build()
        .unwrap()
}

/// Everything observable about a CA: a bad call must not change any of it.
#[derive(Debug, Clone, PartialEq)]
struct Snap {
    service: ServiceState,
    sessions: usize,
    in_progress: bool,
    files: Vec<(String, Vec<u8>)>,
    logs: Vec<u32>,
    records: Vec<Record>,
    current: Position,
    checkpoint: Position,
    last_full: Option<BackupMark>,
    buffers: usize,
    marker: Option<RestoreMarker>,
}

fn snap(ca: &EmulatedCa) -> Snap {
    Snap {
        service: ca.service(),
        sessions: ca.sessions_open(),
        in_progress: ca.backup_in_progress(),
        files: ca
            .files()
            .into_iter()
            .map(|f| (f.windows_path, std::fs::read(&f.host_path).unwrap()))
            .collect(),
        logs: ca.log_generations(),
        records: ca.records().collect::<Vec<_>>(),
        current: ca.current_position(),
        checkpoint: ca.checkpoint(),
        last_full: ca.last_full_backup(),
        buffers: ca.outstanding_buffers(),
        marker: ca.restore_marker(),
    }
}

fn prepare(ca: &EmulatedCa, flags: u32) -> *mut c_void {
    let w = wz(ca.server_name());
    let mut h = null_mut();
    let hr = unsafe { abi::CertSrvBackupPrepareW(w.as_ptr(), 0, flags, &mut h) };
    assert_eq!(hr, 0);
    assert!(!h.is_null());
    h
}

fn restore_prepare(ca: &EmulatedCa, flags: u32) -> *mut c_void {
    let w = wz(ca.server_name());
    let mut h = null_mut();
    let hr = unsafe { abi::CertSrvRestorePrepareW(w.as_ptr(), flags, &mut h) };
    assert_eq!(hr, 0);
    assert!(!h.is_null());
    h
}

/// Calls a list export and frees the result; returns the entries (prefix stripped).
fn list(f: ListFn, h: *mut c_void, prefixed: bool) -> Vec<String> {
    let mut p = null_mut();
    let mut cb = 0;
    let hr = unsafe { f(h, &mut p, &mut cb) };
    assert_eq!(hr, 0);
    let units = unsafe { std::slice::from_raw_parts(p, cb as usize / 2) };
    let entries = certadm_emu::WideList::parse_units(units, prefixed).unwrap();
    unsafe { abi::CertSrvBackupFree(p.cast()) };
    entries.into_iter().map(|e| e.path).collect()
}

fn last_message() -> String {
    abi::last_error()
        .expect("a failure was recorded")
        .to_string()
}

/// Opens `name`, reads it whole with `CertSrvBackupRead`, closes it.
fn read_whole(h: *mut c_void, name: &str) -> Vec<u8> {
    let w = wz(name);
    let mut size = 0i64;
    assert_eq!(
        unsafe { abi::CertSrvBackupOpenFileW(h, w.as_ptr(), 0, &mut size) },
        0
    );
    let mut out = vec![0u8; size as usize];
    let mut done = 0usize;
    let mut buf = vec![0u8; 4096];
    loop {
        let mut n = 0u32;
        let hr = unsafe { abi::CertSrvBackupRead(h, buf.as_mut_ptr().cast(), 4096, &mut n) };
        assert_eq!(hr, 0);
        out[done..done + n as usize].copy_from_slice(&buf[..n as usize]);
        done += n as usize;
        if n < 4096 {
            break;
        }
    }
    assert_eq!(done as i64, size);
    assert_eq!(unsafe { abi::CertSrvBackupClose(h) }, 0);
    out
}

/// The result of every export that takes a handle, called with `h` and valid other arguments.
fn every_handle_call(h: *mut c_void, name: &str) -> Vec<(&'static str, u32)> {
    let wname = wz(name);
    let mut out = Vec::new();
    for (call, f) in LIST_FNS {
        let mut p = 0x40 as *mut u16;
        let mut cb = 99u32;
        let hr = unsafe { f(h, &mut p, &mut cb) };
        assert!(p.is_null(), "{call}: *ppwszz reset to NULL");
        assert_eq!(cb, 0, "{call}: *pcbSize reset to 0");
        out.push((call, hr as u32));
    }
    let mut size = 7i64;
    let hr = unsafe { abi::CertSrvBackupOpenFileW(h, wname.as_ptr(), 0, &mut size) };
    assert_eq!(size, 0);
    out.push(("CertSrvBackupOpenFileW", hr as u32));
    let mut buf = [0u8; 32];
    let mut n = 7u32;
    let hr = unsafe { abi::CertSrvBackupRead(h, buf.as_mut_ptr().cast(), 32, &mut n) };
    assert_eq!(n, 0);
    out.push(("CertSrvBackupRead", hr as u32));
    out.push(("CertSrvBackupClose", unsafe { abi::CertSrvBackupClose(h) }
        as u32));
    out.push((
        "CertSrvBackupTruncateLogs",
        unsafe { abi::CertSrvBackupTruncateLogs(h) } as u32,
    ));
    out.push(("CertSrvBackupEnd", unsafe { abi::CertSrvBackupEnd(h) }
        as u32));
    let mut db = wz(DB_LOCAL);
    let logdir = wz(LOG_DIR_LOCAL);
    let mut map = [CSEDB_RSTMAPW {
        pwszDatabaseName: db.as_mut_ptr(),
        pwszNewDatabaseName: db.as_mut_ptr(),
    }];
    for (call, f) in REGISTER_FNS {
        let hr = unsafe {
            f(
                h,
                logdir.as_ptr(),
                logdir.as_ptr(),
                map.as_mut_ptr(),
                1,
                logdir.as_ptr(),
                1,
                1,
            )
        };
        out.push((call, hr as u32));
    }
    out.push((
        "CertSrvRestoreRegisterComplete",
        unsafe { abi::CertSrvRestoreRegisterComplete(h, 0) } as u32,
    ));
    out.push(("CertSrvRestoreEnd", unsafe { abi::CertSrvRestoreEnd(h) }
        as u32));
    out
}

#[track_caller]
fn assert_all(results: &[(&'static str, u32)], want: u32) {
    for (call, hr) in results {
        assert_eq!(
            *hr,
            want,
            "{call}: got {}, want {}",
            HRESULT(*hr as i32),
            HRESULT(want as i32)
        );
    }
}

// ----- NULL pointers ---------------------------------------------------------------------

#[test]
fn null_pointers_is_server_online() {
    let ca = new_ca();
    let before = snap(&ca);
    let w = wz(ca.server_name());
    let mut online = 0x77i32;
    let hr = unsafe { abi::CertSrvIsServerOnlineW(null(), &mut online) };
    assert_eq!(hr as u32, E_POINTER);
    assert_eq!(online, 0, "*pfServerOnline set to FALSE");
    assert!(last_message().contains("pwszServerName"));
    let hr = unsafe { abi::CertSrvIsServerOnlineW(w.as_ptr(), null_mut()) };
    assert_eq!(hr as u32, E_POINTER);
    assert!(last_message().contains("pfServerOnline"));
    let hr = unsafe { abi::CertSrvIsServerOnlineW(null(), null_mut()) };
    assert_eq!(hr as u32, E_POINTER);
    assert_eq!(snap(&ca), before);
}

#[test]
fn null_pointers_backup_prepare() {
    let ca = new_ca();
    let before = snap(&ca);
    let w = wz(ca.server_name());
    let mut h = 0x1234 as *mut c_void;
    let hr = unsafe { abi::CertSrvBackupPrepareW(null(), 0, CSBACKUP_TYPE_FULL, &mut h) };
    assert_eq!(hr as u32, E_POINTER);
    assert!(h.is_null(), "*phbc set to NULL");
    let hr = unsafe { abi::CertSrvBackupPrepareW(w.as_ptr(), 0, CSBACKUP_TYPE_FULL, null_mut()) };
    assert_eq!(hr as u32, E_POINTER);
    assert!(last_message().contains("phbc"));
    assert_eq!(snap(&ca), before);
    assert_eq!(ca.sessions_open(), 0);
    assert!(!ca.backup_in_progress(), "no session was started");
    // A real Prepare is not blocked by a phantom session.
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
}

#[test]
fn null_pointers_list_functions() {
    let ca = new_ca();
    ca.issue(6).unwrap();
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);
    // A restore context too, for RestoreGetDatabaseLocations (the CA is running).
    let r = restore_prepare(&ca, CSRESTORE_TYPE_FULL);
    let before = snap(&ca);
    for (call, f) in LIST_FNS {
        for ctx in [h, r] {
            if ctx == r && call != "CertSrvRestoreGetDatabaseLocationsW" {
                continue;
            }
            let mut p = 0x40 as *mut u16;
            let mut cb = 99u32;
            let hr = unsafe { f(ctx, null_mut(), &mut cb) };
            assert_eq!(hr as u32, E_POINTER, "{call}");
            assert_eq!(cb, 0, "{call}: *pcbSize set to 0");
            assert!(last_message().contains("ppwszz"), "{}", last_message());
            let hr = unsafe { f(ctx, &mut p, null_mut()) };
            assert_eq!(hr as u32, E_POINTER, "{call}");
            assert!(p.is_null(), "{call}: *ppwszz set to NULL");
            assert!(last_message().contains("pcbSize"), "{}", last_message());
            let hr = unsafe { f(ctx, null_mut(), null_mut()) };
            assert_eq!(hr as u32, E_POINTER, "{call}");
            // No log rolled, no buffer allocated, nothing listed.
            assert_eq!(snap(&ca), before, "{call}");
        }
    }
    // Nothing was listed: OpenFile still knows no name.
    let mut size = 0i64;
    let db = wz(&format!(
        r"\\{}\C$\Windows\System32\CertLog\Emu Issuing CA.edb",
        ca.dns_name()
    ));
    let hr = unsafe { abi::CertSrvBackupOpenFileW(h, db.as_ptr(), 0, &mut size) };
    assert_eq!(hr as u32, ERROR_FILE_NOT_FOUND);
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
    assert_eq!(unsafe { abi::CertSrvRestoreEnd(r) }, 0);
}

#[test]
fn null_pointers_open_file() {
    let ca = new_ca();
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);
    let db = list(abi::CertSrvBackupGetDatabaseNamesW, h, true).remove(0);
    let w = wz(&db);
    let before = snap(&ca);
    let mut size = 55i64;
    let hr = unsafe { abi::CertSrvBackupOpenFileW(h, null(), 0, &mut size) };
    assert_eq!(hr as u32, E_POINTER);
    assert_eq!(size, 0, "*pliFileSize set to 0");
    assert!(last_message().contains("pwszAttachmentName"));
    let hr = unsafe { abi::CertSrvBackupOpenFileW(h, w.as_ptr(), 0, null_mut()) };
    assert_eq!(hr as u32, E_POINTER);
    assert!(last_message().contains("pliFileSize"));
    assert_eq!(snap(&ca), before);
    // No file was opened: Read is out of sequence, and a real Open works.
    let mut buf = [0u8; 8];
    let mut n = 0u32;
    let hr = unsafe { abi::CertSrvBackupRead(h, buf.as_mut_ptr().cast(), 8, &mut n) };
    assert_eq!(hr as u32, E_UNEXPECTED);
    let bytes = read_whole(h, &db);
    assert_eq!(bytes, std::fs::read(ca.host_path(&db).unwrap()).unwrap());
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
}

#[test]
fn null_pointers_read() {
    let ca = new_ca();
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);
    let db = list(abi::CertSrvBackupGetDatabaseNamesW, h, true).remove(0);
    let w = wz(&db);
    let mut size = 0i64;
    assert_eq!(
        unsafe { abi::CertSrvBackupOpenFileW(h, w.as_ptr(), 0, &mut size) },
        0
    );
    let before = snap(&ca);
    let mut n = 5u32;
    let hr = unsafe { abi::CertSrvBackupRead(h, null_mut(), 4096, &mut n) };
    assert_eq!(hr as u32, E_POINTER);
    assert_eq!(n, 0, "*pcbRead set to 0");
    assert!(last_message().contains("pvBuffer"));
    let mut buf = vec![0u8; 4096];
    let hr = unsafe { abi::CertSrvBackupRead(h, buf.as_mut_ptr().cast(), 4096, null_mut()) };
    assert_eq!(hr as u32, E_POINTER);
    assert!(last_message().contains("pcbRead"));
    assert!(buf.iter().all(|b| *b == 0), "nothing written to the buffer");
    assert_eq!(snap(&ca), before);
    // Nothing was consumed: the next read starts at byte 0.
    let on_disk = std::fs::read(ca.host_path(&db).unwrap()).unwrap();
    let mut all = vec![0u8; size as usize + 1];
    let mut n = 0u32;
    let hr =
        unsafe { abi::CertSrvBackupRead(h, all.as_mut_ptr().cast(), all.len() as u32, &mut n) };
    assert_eq!(hr, 0);
    assert_eq!(&all[..n as usize], &on_disk[..]);
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
}

#[test]
fn null_pointers_restore_prepare() {
    let ca = new_ca();
    let before = snap(&ca);
    let w = wz(ca.server_name());
    let mut h = 0x99 as *mut c_void;
    let hr = unsafe { abi::CertSrvRestorePrepareW(null(), CSRESTORE_TYPE_FULL, &mut h) };
    assert_eq!(hr as u32, E_POINTER);
    assert!(h.is_null());
    let hr = unsafe { abi::CertSrvRestorePrepareW(w.as_ptr(), CSRESTORE_TYPE_FULL, null_mut()) };
    assert_eq!(hr as u32, E_POINTER);
    assert!(last_message().contains("phbc"));
    assert_eq!(snap(&ca), before);
    assert_eq!(ca.sessions_open(), 0);
}

type RegisterFn = unsafe extern "system" fn(
    *mut c_void,
    *const u16,
    *const u16,
    *mut CSEDB_RSTMAPW,
    i32,
    *const u16,
    u32,
    u32,
) -> i32;

const REGISTER_FNS: [(&str, RegisterFn); 2] = [
    ("CertSrvRestoreRegisterW", abi::CertSrvRestoreRegisterW),
    (
        "CertSrvRestoreRegisterThroughFile",
        abi::CertSrvRestoreRegisterThroughFile,
    ),
];

#[test]
fn null_pointers_restore_register() {
    let ca = new_ca();
    ca.stop().unwrap();
    let h = restore_prepare(&ca, CSRESTORE_TYPE_FULL);
    let logdir = wz(LOG_DIR_LOCAL);
    let mut db = wz(DB_LOCAL);
    let before = snap(&ca);
    for (call, f) in REGISTER_FNS {
        // rgrstmap NULL although crstmap says 1.
        let hr = unsafe {
            f(
                h,
                logdir.as_ptr(),
                logdir.as_ptr(),
                null_mut(),
                1,
                logdir.as_ptr(),
                1,
                2,
            )
        };
        assert_eq!(hr as u32, E_POINTER, "{call}");
        assert!(last_message().contains("rgrstmap"));
        // NULL names inside the map.
        for (old_null, new_null) in [(true, false), (false, true), (true, true)] {
            let mut map = [CSEDB_RSTMAPW {
                pwszDatabaseName: if old_null {
                    null_mut()
                } else {
                    db.as_mut_ptr()
                },
                pwszNewDatabaseName: if new_null {
                    null_mut()
                } else {
                    db.as_mut_ptr()
                },
            }];
            let hr = unsafe {
                f(
                    h,
                    logdir.as_ptr(),
                    logdir.as_ptr(),
                    map.as_mut_ptr(),
                    1,
                    logdir.as_ptr(),
                    1,
                    2,
                )
            };
            assert_eq!(hr as u32, E_POINTER, "{call} {old_null} {new_null}");
        }
        assert_eq!(snap(&ca), before, "{call}");
    }
    // The three paths are OPTIONAL: NULL is accepted.
    let mut map = [CSEDB_RSTMAPW {
        pwszDatabaseName: db.as_mut_ptr(),
        pwszNewDatabaseName: db.as_mut_ptr(),
    }];
    let hr = unsafe {
        abi::CertSrvRestoreRegisterW(h, null(), null(), map.as_mut_ptr(), 1, null(), 1, 2)
    };
    assert_eq!(hr, 0, "{}", last_message());
    let mk = ca.restore_marker().expect("registered");
    assert_eq!(mk.checkpoint_path, None);
    assert_eq!(mk.log_path, None);
    assert!(mk.backup_log_paths.is_empty());
    assert_eq!(mk.restore_map, vec![(DB_LOCAL.into(), DB_LOCAL.into())]);
    assert_eq!((mk.gen_low, mk.gen_high), (1, 2));
    assert_eq!(unsafe { abi::CertSrvRestoreRegisterComplete(h, 0) }, 0);
    assert_eq!(unsafe { abi::CertSrvRestoreEnd(h) }, 0);
}

#[test]
fn null_pointers_server_control() {
    let ca = new_ca();
    let before = snap(&ca);
    let mut cb = 3u32;
    let mut pb = 0x8 as *mut u8;
    let hr = unsafe { abi::CertSrvServerControlW(null(), CSCONTROL_SHUTDOWN, &mut cb, &mut pb) };
    assert_eq!(hr as u32, E_POINTER);
    assert_eq!(cb, 0);
    assert!(pb.is_null());
    assert!(last_message().contains("pwszServerName"));
    assert_eq!(snap(&ca), before);
    assert_eq!(ca.service(), ServiceState::Running);
    // pcbOut and ppbOut are OPTIONAL.
    let w = wz(ca.server_name());
    let hr = unsafe {
        abi::CertSrvServerControlW(w.as_ptr(), CSCONTROL_SUSPEND, null_mut(), null_mut())
    };
    assert_eq!(hr, 0);
    let hr = unsafe {
        abi::CertSrvServerControlW(w.as_ptr(), CSCONTROL_SHUTDOWN, null_mut(), null_mut())
    };
    assert_eq!(hr, 0);
    assert_eq!(ca.service(), ServiceState::Stopped);
}

// ----- handles -------------------------------------------------------------------------------

#[test]
fn null_handle_is_e_handle_everywhere() {
    let ca = new_ca();
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);
    let db = list(abi::CertSrvBackupGetDatabaseNamesW, h, true).remove(0);
    let before = snap(&ca);
    assert_all(&every_handle_call(null_mut(), &db), E_HANDLE);
    assert_eq!(snap(&ca), before);
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
}

#[test]
fn forged_handles_are_e_handle_everywhere() {
    let ca = new_ca();
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);
    let db = list(abi::CertSrvBackupGetDatabaseNamesW, h, true).remove(0);
    let raw = h as usize;
    // Values that can never name a live session: even values, session generation 0,
    // and this host's handle with another session slot or generation.
    let forged = [
        0x2usize,
        0x1,
        0xDEAD_BEEE,
        0xDEAD_BEEF,
        0xFFFF_FFFF,
        raw & 0xFFFF_FFFF,
        raw.wrapping_add(1 << 24),
        raw.wrapping_add(1 << 32),
        raw & !1,
        &db as *const String as usize,
    ];
    let before = snap(&ca);
    for f in forged {
        assert_all(&every_handle_call(f as *mut c_void, &db), E_HANDLE);
        assert_eq!(snap(&ca), before, "{f:#x}");
    }
    // The real session is untouched.
    assert_eq!(read_whole(h, &db).len() as u64, {
        let m = std::fs::metadata(ca.host_path(&db).unwrap()).unwrap();
        m.len()
    });
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
}

#[test]
fn ended_and_stale_handles_are_e_handle_everywhere() {
    let ca = new_ca();
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);
    let db = list(abi::CertSrvBackupGetDatabaseNamesW, h, true).remove(0);
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
    let before = snap(&ca);
    assert_all(&every_handle_call(h, &db), E_HANDLE);
    assert_eq!(snap(&ca), before);

    // An ended restore context.
    let r = restore_prepare(&ca, CSRESTORE_TYPE_FULL);
    assert_eq!(unsafe { abi::CertSrvRestoreEnd(r) }, 0);
    let before = snap(&ca);
    assert_all(&every_handle_call(r, &db), E_HANDLE);
    assert_eq!(snap(&ca), before);

    // A handle of a machine that no longer exists.
    let gone = new_ca();
    let hg = prepare(&gone, CSBACKUP_TYPE_FULL);
    let rg = restore_prepare(&gone, CSRESTORE_TYPE_FULL);
    drop(gone);
    assert_all(&every_handle_call(hg, &db), E_HANDLE);
    assert_all(&every_handle_call(rg, &db), E_HANDLE);
    assert_eq!(snap(&ca), before);
}

#[test]
fn backup_context_is_not_a_restore_context() {
    let ca = new_ca();
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);
    ca.stop().unwrap();
    let logdir = wz(LOG_DIR_LOCAL);
    let mut db = wz(DB_LOCAL);
    let mut map = [CSEDB_RSTMAPW {
        pwszDatabaseName: db.as_mut_ptr(),
        pwszNewDatabaseName: db.as_mut_ptr(),
    }];
    let before = snap(&ca);
    for (call, f) in REGISTER_FNS {
        let hr = unsafe {
            f(
                h,
                logdir.as_ptr(),
                logdir.as_ptr(),
                map.as_mut_ptr(),
                1,
                logdir.as_ptr(),
                1,
                1,
            )
        };
        assert_eq!(hr as u32, E_UNEXPECTED, "{call}");
    }
    assert_eq!(
        unsafe { abi::CertSrvRestoreRegisterComplete(h, 0) } as u32,
        E_UNEXPECTED
    );
    assert_eq!(unsafe { abi::CertSrvRestoreEnd(h) } as u32, E_UNEXPECTED);
    assert_eq!(snap(&ca), before);
    assert_eq!(ca.sessions_open(), 1, "the backup context survives");
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
    assert_eq!(ca.sessions_open(), 0);
}

// ----- CertSrvBackupFree -------------------------------------------------------------------

#[test]
fn backup_free_of_null_foreign_and_freed_pointers() {
    let ca = new_ca();
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);

    // NULL: a no-op that records no failure.
    let w = wz(ca.server_name());
    let hr = unsafe { abi::CertSrvIsServerOnlineW(w.as_ptr(), null_mut()) };
    assert_eq!(hr as u32, E_POINTER);
    let marker = last_message();
    unsafe { abi::CertSrvBackupFree(null_mut()) };
    assert_eq!(last_message(), marker, "NULL is not an error");

    // A pointer the emulator never returned: ignored, and explained.
    let mut foreign: [u16; 8] = [0x41, 0x42, 0, 0, 0, 0, 0, 0];
    let heap = Box::new([7u8; 32]);
    for p in [
        foreign.as_mut_ptr() as *mut c_void,
        &*heap as *const [u8; 32] as *mut c_void,
        0x10 as *mut c_void,
    ] {
        unsafe { abi::CertSrvBackupFree(p) };
        let e = abi::last_error().unwrap();
        assert_eq!(e.hresult().as_u32(), E_INVALIDARG);
        assert!(
            e.to_string().contains("not a live buffer"),
            "{}",
            e.to_string()
        );
    }
    assert_eq!(foreign[0], 0x41, "the foreign memory is untouched");
    assert_eq!(heap[31], 7);

    // A list freed twice: the second call is ignored and explained.
    let mut p = null_mut();
    let mut cb = 0u32;
    assert_eq!(
        unsafe { abi::CertSrvBackupGetDatabaseNamesW(h, &mut p, &mut cb) },
        0
    );
    assert_eq!(ca.outstanding_buffers(), 1);
    unsafe { abi::CertSrvBackupFree(p.cast()) };
    assert_eq!(ca.outstanding_buffers(), 0);
    let marker = last_message();
    assert!(!marker.contains(&format!("{p:p}")));
    unsafe { abi::CertSrvBackupFree(p.cast()) };
    let again = last_message();
    assert!(again.contains("not a live buffer"), "{again}");
    assert!(again.contains("freed"), "{again}");
    assert!(again.contains(&format!("{p:p}")), "{again}");
    assert_eq!(ca.outstanding_buffers(), 0);
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
}

// ----- names -------------------------------------------------------------------------------

fn open(h: *mut c_void, name: &str) -> (u32, i64) {
    let w = wz(name);
    let mut size = -1i64;
    let hr = unsafe { abi::CertSrvBackupOpenFileW(h, w.as_ptr(), 0, &mut size) };
    (hr as u32, size)
}

#[test]
fn open_file_with_csbft_prefix_is_not_found() {
    let ca = new_ca();
    ca.issue(5).unwrap();
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);
    let db = list(abi::CertSrvBackupGetDatabaseNamesW, h, true).remove(0);
    let logs = list(abi::CertSrvBackupGetBackupLogsW, h, true);
    let before = snap(&ca);
    for (prefix, name) in [('D', &db), ('!', &logs[0])] {
        let (hr, size) = open(h, &format!("{prefix}{name}"));
        assert_eq!(hr, ERROR_FILE_NOT_FOUND, "{prefix}{name}");
        assert_eq!(size, 0);
        let msg = last_message();
        assert!(msg.contains("prefix"), "{msg}");
        assert!(msg.contains("CSBFT"), "{msg}");
    }
    assert_eq!(snap(&ca), before);
    // No file was opened by the failures.
    let mut b = [0u8; 4];
    let mut n = 0u32;
    assert_eq!(
        unsafe { abi::CertSrvBackupRead(h, b.as_mut_ptr().cast(), 4, &mut n) } as u32,
        E_UNEXPECTED
    );
    assert_eq!(open(h, &db).0, 0);
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
}

#[test]
fn open_file_outside_the_backup_set_is_not_found() {
    let ca = new_ca();
    ca.issue(9).unwrap();
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);
    let unc = |f: &str| format!(r"\\{}\C$\Windows\System32\CertLog\{f}", ca.dns_name());
    let db = unc("Emu Issuing CA.edb");
    let old_log = unc("edb00001.log");
    assert!(ca.log_generations().contains(&1));

    // Before anything was listed, even real backup files are unknown.
    let before = snap(&ca);
    assert_eq!(open(h, &db).0, ERROR_FILE_NOT_FOUND);
    assert_eq!(open(h, &old_log).0, ERROR_FILE_NOT_FOUND);
    assert_eq!(snap(&ca), before);

    let listed_db = list(abi::CertSrvBackupGetDatabaseNamesW, h, true);
    let logs = list(abi::CertSrvBackupGetBackupLogsW, h, true);
    assert_eq!(listed_db, vec![db.clone()]);
    assert!(!logs.contains(&old_log), "below the checkpoint: not listed");
    let before = snap(&ca);
    for name in [
        old_log.clone(),
        unc("edb.chk"),
        unc("edb.log"),
        unc("nosuchfile.bin"),
        unc("edb000FF.log"),
        DB_LOCAL.to_string(),
        r"C:\Windows\System32\CertLog\edb00003.log".to_string(),
        String::new(),
    ] {
        let (hr, size) = open(h, &name);
        assert_eq!(hr, ERROR_FILE_NOT_FOUND, "{name:?}");
        assert_eq!(size, 0);
        assert!(
            last_message().contains("backup set") || last_message().contains("not listed"),
            "{}",
            last_message()
        );
    }
    assert_eq!(snap(&ca), before);
    // Names compare case-insensitively, as Windows paths do.
    let (hr, size) = open(h, &db.to_uppercase());
    assert_eq!(hr, 0);
    assert!(size > 0);
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
}

#[test]
fn open_file_on_a_dynamic_file_is_invalid() {
    let ca = new_ca();
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);
    list(abi::CertSrvBackupGetDatabaseNamesW, h, true);
    let dynamic = list(abi::CertSrvBackupGetDynamicFileListW, h, false);
    assert_eq!(dynamic.len(), 2);
    let before = snap(&ca);
    for name in &dynamic {
        let (hr, size) = open(h, name);
        assert_eq!(hr, E_INVALIDARG, "{name}");
        assert_eq!(size, 0);
        assert!(
            last_message().contains("dynamic file"),
            "{}",
            last_message()
        );
    }
    assert_eq!(snap(&ca), before);
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
}

// ----- flags and sizes ---------------------------------------------------------------------

#[test]
fn backup_prepare_bad_flags_are_invalid() {
    let ca = new_ca();
    // A full backup exists, so LOGS_ONLY itself would be accepted.
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);
    let db = list(abi::CertSrvBackupGetDatabaseNamesW, h, true).remove(0);
    read_whole(h, &db);
    for l in list(abi::CertSrvBackupGetBackupLogsW, h, true) {
        read_whole(h, &l);
    }
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
    assert!(ca.last_full_backup().is_some());

    let w = wz(ca.server_name());
    let before = snap(&ca);
    let cases: [(u32, u32); 9] = [
        (0, 0),
        (0, 3),
        (0, 4),
        (0, 8),
        (0, CSBACKUP_DISABLE_INCREMENTAL),
        (1, CSBACKUP_TYPE_FULL),
        (JET_bitBackupIncremental, CSBACKUP_TYPE_LOGS_ONLY),
        (0x10, CSBACKUP_TYPE_FULL),
        (u32::MAX, CSBACKUP_TYPE_FULL),
    ];
    for (grbit, flags) in cases {
        let mut h = 0x77 as *mut c_void;
        let hr = unsafe { abi::CertSrvBackupPrepareW(w.as_ptr(), grbit, flags, &mut h) };
        assert_eq!(
            hr as u32, E_INVALIDARG,
            "grbitJet {grbit:#x} flags {flags:#x}"
        );
        assert!(h.is_null());
        assert_eq!(snap(&ca), before);
    }
    assert_eq!(ca.sessions_open(), 0);
}

#[test]
fn restore_prepare_bad_flags_are_invalid() {
    let ca = new_ca();
    ca.stop().unwrap();
    let w = wz(ca.server_name());
    let before = snap(&ca);
    for flags in [
        CSRESTORE_TYPE_ONLINE,
        CSRESTORE_TYPE_CATCHUP,
        8,
        3,
        5,
        6,
        0x10,
        u32::MAX,
    ] {
        let mut h = 0x77 as *mut c_void;
        let hr = unsafe { abi::CertSrvRestorePrepareW(w.as_ptr(), flags, &mut h) };
        assert_eq!(hr as u32, E_INVALIDARG, "flags {flags:#x}");
        assert!(h.is_null());
        assert_eq!(snap(&ca), before);
    }
    // The two documented values work.
    for flags in [0, CSRESTORE_TYPE_FULL] {
        let h = restore_prepare(&ca, flags);
        assert_eq!(unsafe { abi::CertSrvRestoreEnd(h) }, 0);
    }
}

#[test]
fn read_with_zero_buffer_is_invalid() {
    let ca = new_ca();
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);
    let db = list(abi::CertSrvBackupGetDatabaseNamesW, h, true).remove(0);
    let (hr, size) = open(h, &db);
    assert_eq!(hr, 0);
    let before = snap(&ca);
    let mut buf = [0xEEu8; 16];
    let mut n = 9u32;
    let hr = unsafe { abi::CertSrvBackupRead(h, buf.as_mut_ptr().cast(), 0, &mut n) };
    assert_eq!(hr as u32, E_INVALIDARG);
    assert_eq!(n, 0);
    assert!(buf.iter().all(|b| *b == 0xEE));
    assert!(last_message().contains("cbBuffer"));
    assert_eq!(snap(&ca), before);
    // The position did not move.
    let mut all = vec![0u8; size as usize];
    let hr = unsafe { abi::CertSrvBackupRead(h, all.as_mut_ptr().cast(), size as u32, &mut n) };
    assert_eq!(hr, 0);
    assert_eq!(n as i64, size);
    assert_eq!(all, std::fs::read(ca.host_path(&db).unwrap()).unwrap());
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
}

#[test]
fn reads_after_close_and_after_end() {
    let ca = new_ca();
    let h = prepare(&ca, CSBACKUP_TYPE_FULL);
    let db = list(abi::CertSrvBackupGetDatabaseNamesW, h, true).remove(0);
    assert_eq!(open(h, &db).0, 0);
    let mut buf = [0u8; 16];
    let mut n = 0u32;
    assert_eq!(
        unsafe { abi::CertSrvBackupRead(h, buf.as_mut_ptr().cast(), 16, &mut n) },
        0
    );
    assert_eq!(n, 16);
    assert_eq!(unsafe { abi::CertSrvBackupClose(h) }, 0);
    let before = snap(&ca);
    let hr = unsafe { abi::CertSrvBackupRead(h, buf.as_mut_ptr().cast(), 16, &mut n) };
    assert_eq!(hr as u32, E_UNEXPECTED);
    assert_eq!(n, 0);
    assert_eq!(unsafe { abi::CertSrvBackupClose(h) } as u32, E_UNEXPECTED);
    assert_eq!(snap(&ca), before);

    // An open file at End is closed with the session; reads then hit a dead handle.
    assert_eq!(open(h, &db).0, 0);
    assert_eq!(unsafe { abi::CertSrvBackupEnd(h) }, 0);
    let before = snap(&ca);
    n = 3;
    let hr = unsafe { abi::CertSrvBackupRead(h, buf.as_mut_ptr().cast(), 16, &mut n) };
    assert_eq!(hr as u32, E_HANDLE);
    assert_eq!(n, 0);
    assert_eq!(unsafe { abi::CertSrvBackupClose(h) } as u32, E_HANDLE);
    assert_eq!(snap(&ca), before);
}

// ----- restore paths -------------------------------------------------------------------------

#[test]
fn restore_register_paths_outside_the_root_are_refused() {
    let ca = new_ca();
    let other = EmulatedCa::builder().build().unwrap();
    // Restore needs the CA stopped (spec §6.2 row 13), so paths are what is refused.
    ca.stop().unwrap();
    let h = restore_prepare(&ca, CSRESTORE_TYPE_FULL);
    let other_unc = format!(r"\\{}\C$\x", other.server_name());
    let bad: Vec<(String, u32)> = vec![
        (r"C:\..\x".into(), E_ACCESSDENIED),
        (r"C:\Windows\..\..\x".into(), E_ACCESSDENIED),
        (r"\\OTHER\C$\x".into(), ERROR_BAD_NETPATH),
        (other_unc, ERROR_BAD_NETPATH),
        (r"C:\x:ads".into(), ERROR_INVALID_NAME),
        (
            r"C:\Windows\System32\CertLog\db.edb:stream".into(),
            ERROR_INVALID_NAME,
        ),
        (r"x".into(), ERROR_BAD_PATHNAME),
        (r"Windows\System32\CertLog".into(), ERROR_BAD_PATHNAME),
        (r"C:relative".into(), ERROR_BAD_PATHNAME),
    ];
    let good_dir = LOG_DIR_LOCAL;
    let before = snap(&ca);
    let other_before = snap(&other);
    for (call, f) in REGISTER_FNS {
        for (path, want) in &bad {
            // The bad path in each of the five path positions.
            for pos in 0..5 {
                let pick = |i: usize| wz(if i == pos { path } else { good_dir });
                let chk = pick(0);
                let log = pick(1);
                let bkl = pick(2);
                let mut old = if pos == 3 { wz(path) } else { wz(DB_LOCAL) };
                let mut new = if pos == 4 { wz(path) } else { wz(DB_LOCAL) };
                let mut map = [CSEDB_RSTMAPW {
                    pwszDatabaseName: old.as_mut_ptr(),
                    pwszNewDatabaseName: new.as_mut_ptr(),
                }];
                let hr = unsafe {
                    f(
                        h,
                        chk.as_ptr(),
                        log.as_ptr(),
                        map.as_mut_ptr(),
                        1,
                        bkl.as_ptr(),
                        1,
                        3,
                    )
                };
                assert_eq!(
                    hr as u32,
                    *want,
                    "{call} {path:?} at position {pos}: got {}",
                    HRESULT(hr)
                );
                assert!(
                    last_message().contains(&format!("{path:?}")),
                    "{}",
                    last_message()
                );
                assert_eq!(snap(&ca), before, "{call} {path:?} at {pos}");
            }
        }
    }
    assert_eq!(snap(&other), other_before);
    assert!(ca.restore_marker().is_none());
    // The context is still usable with good paths.
    let mut db = wz(DB_LOCAL);
    let dir = wz(good_dir);
    let mut map = [CSEDB_RSTMAPW {
        pwszDatabaseName: db.as_mut_ptr(),
        pwszNewDatabaseName: db.as_mut_ptr(),
    }];
    let hr = unsafe {
        abi::CertSrvRestoreRegisterW(
            h,
            dir.as_ptr(),
            dir.as_ptr(),
            map.as_mut_ptr(),
            1,
            dir.as_ptr(),
            1,
            3,
        )
    };
    assert_eq!(hr, 0, "{}", last_message());
    assert!(ca.restore_marker().is_some());
    assert_eq!(unsafe { abi::CertSrvRestoreRegisterComplete(h, 0) }, 0);
    assert_eq!(unsafe { abi::CertSrvRestoreEnd(h) }, 0);
}

#[test]
fn restore_register_bad_counts_and_generations_are_invalid() {
    let ca = new_ca();
    ca.stop().unwrap();
    let h = restore_prepare(&ca, CSRESTORE_TYPE_FULL);
    let dir = wz(LOG_DIR_LOCAL);
    let mut db = wz(DB_LOCAL);
    let mut map = [CSEDB_RSTMAPW {
        pwszDatabaseName: db.as_mut_ptr(),
        pwszNewDatabaseName: db.as_mut_ptr(),
    }];
    let before = snap(&ca);
    let cases: [(i32, u32, u32); 6] = [
        (-1, 1, 2),
        (65, 1, 2),
        (i32::MIN, 1, 2),
        (1, 0, 2),
        (1, 5, 4),
        (0, 1, 2), // a full restore without its map
    ];
    for (call, f) in REGISTER_FNS {
        for (n, lo, hi) in cases {
            let hr = unsafe {
                f(
                    h,
                    dir.as_ptr(),
                    dir.as_ptr(),
                    map.as_mut_ptr(),
                    n,
                    dir.as_ptr(),
                    lo,
                    hi,
                )
            };
            assert_eq!(hr as u32, E_INVALIDARG, "{call} crstmap {n} gen {lo}..{hi}");
            assert_eq!(snap(&ca), before);
        }
    }
    assert_eq!(unsafe { abi::CertSrvRestoreEnd(h) }, 0);
    assert_eq!(ca.sessions_open(), 0);
}

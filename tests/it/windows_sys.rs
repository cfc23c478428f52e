//! Certadm.dll as Windows code sees it: the declarations of windows-sys 0.61.2
//! (`windows_link::link!`, plain `extern "system"` items off Windows) resolve to the
//! emulator's `#[no_mangle]` exports at link time.
//!
//! 1. A compile-time check: each of the 18 functions, from the emulator and from
//!    windows-sys, is assigned to one explicit `unsafe extern "system" fn` type, so any
//!    drift of a signature fails the build.
//! 2. A full backup and a restore written exactly as Windows code calls the API.

use certadm_emu as _;

use certadm_emu::abi as emu;
use certadm_emu::EmulatedCa;
use core::ffi::c_void;
use std::path::Path;
use std::ptr::null_mut;
use windows_sys::core::{BOOL, HRESULT, PCWSTR, PWSTR};
use windows_sys::Win32::Foundation::{S_OK, TRUE};
use windows_sys::Win32::Security::Cryptography::Certificates as ws;
use windows_sys::Win32::Security::Cryptography::Certificates::{
    CertSrvBackupClose, CertSrvBackupEnd, CertSrvBackupFree, CertSrvBackupGetBackupLogsW,
    CertSrvBackupGetDatabaseNamesW, CertSrvBackupGetDynamicFileListW, CertSrvBackupOpenFileW,
    CertSrvBackupPrepareW, CertSrvBackupRead, CertSrvBackupTruncateLogs, CertSrvIsServerOnlineW,
    CertSrvRestoreEnd, CertSrvRestoreGetDatabaseLocationsW, CertSrvRestorePrepareW,
    CertSrvRestoreRegisterComplete, CertSrvRestoreRegisterW, CertSrvServerControlW,
    CSBACKUP_TYPE_FULL, CSCONTROL_SHUTDOWN, CSEDB_RSTMAPW, CSRESTORE_TYPE_FULL,
};

// ----- 1. signatures, checked at compile time ---------------------------------------------

/// Assigns the emulator's export and windows-sys's import of `$name` to the same
/// explicit function-pointer type.
macro_rules! same_signature {
    ($name:ident: $ty:ty) => {
        #[allow(non_upper_case_globals)]
        pub const $name: [$ty; 2] = [emu::$name, ws::$name];
    };
}

mod signatures {
    use super::*;

    same_signature!(CertSrvIsServerOnlineW:
        unsafe extern "system" fn(*const u16, *mut i32) -> i32);
    same_signature!(CertSrvBackupPrepareW:
        unsafe extern "system" fn(*const u16, u32, u32, *mut *mut c_void) -> i32);
    same_signature!(CertSrvBackupGetDatabaseNamesW:
        unsafe extern "system" fn(*const c_void, *mut *mut u16, *mut u32) -> i32);
    same_signature!(CertSrvBackupGetDynamicFileListW:
        unsafe extern "system" fn(*const c_void, *mut *mut u16, *mut u32) -> i32);
    same_signature!(CertSrvBackupOpenFileW:
        unsafe extern "system" fn(*mut c_void, *const u16, u32, *mut i64) -> i32);
    same_signature!(CertSrvBackupRead:
        unsafe extern "system" fn(*mut c_void, *mut c_void, u32, *mut u32) -> i32);
    same_signature!(CertSrvBackupClose: unsafe extern "system" fn(*mut c_void) -> i32);
    same_signature!(CertSrvBackupGetBackupLogsW:
        unsafe extern "system" fn(*const c_void, *mut *mut u16, *mut u32) -> i32);
    same_signature!(CertSrvBackupTruncateLogs: unsafe extern "system" fn(*mut c_void) -> i32);
    same_signature!(CertSrvBackupEnd: unsafe extern "system" fn(*mut c_void) -> i32);
    // VOID CertSrvBackupFree(VOID *pv): the one export without an HRESULT.
    same_signature!(CertSrvBackupFree: unsafe extern "system" fn(*mut c_void));
    same_signature!(CertSrvRestoreGetDatabaseLocationsW:
        unsafe extern "system" fn(*const c_void, *mut *mut u16, *mut u32) -> i32);
    same_signature!(CertSrvRestorePrepareW:
        unsafe extern "system" fn(*const u16, u32, *mut *mut c_void) -> i32);
    same_signature!(CertSrvRestoreRegisterComplete:
        unsafe extern "system" fn(*mut c_void, i32) -> i32);
    same_signature!(CertSrvRestoreEnd: unsafe extern "system" fn(*mut c_void) -> i32);
    same_signature!(CertSrvServerControlW:
        unsafe extern "system" fn(*const u16, u32, *mut u32, *mut *mut u8) -> i32);

    /// `CertSrvRestoreRegisterW` and `...ThroughFile` take `CSEDB_RSTMAPW[]`, which each
    /// crate defines itself; the signature is the same up to that struct, whose layout is
    /// checked below to be identical.
    type RegisterFn<M> = unsafe extern "system" fn(
        *mut c_void,
        *const u16,
        *const u16,
        *mut M,
        i32,
        *const u16,
        u32,
        u32,
    ) -> i32;
    #[allow(non_upper_case_globals)]
    pub const CertSrvRestoreRegisterW: (
        RegisterFn<emu::CSEDB_RSTMAPW>,
        RegisterFn<ws::CSEDB_RSTMAPW>,
    ) = (emu::CertSrvRestoreRegisterW, ws::CertSrvRestoreRegisterW);
    #[allow(non_upper_case_globals)]
    pub const CertSrvRestoreRegisterThroughFile: (
        RegisterFn<emu::CSEDB_RSTMAPW>,
        RegisterFn<ws::CSEDB_RSTMAPW>,
    ) = (
        emu::CertSrvRestoreRegisterThroughFile,
        ws::CertSrvRestoreRegisterThroughFile,
    );

    const _: () = {
        use std::mem::{align_of, offset_of, size_of};
        assert!(size_of::<emu::CSEDB_RSTMAPW>() == size_of::<ws::CSEDB_RSTMAPW>());
        assert!(align_of::<emu::CSEDB_RSTMAPW>() == align_of::<ws::CSEDB_RSTMAPW>());
        assert!(
            offset_of!(emu::CSEDB_RSTMAPW, pwszDatabaseName)
                == offset_of!(ws::CSEDB_RSTMAPW, pwszDatabaseName)
        );
        assert!(
            offset_of!(emu::CSEDB_RSTMAPW, pwszNewDatabaseName)
                == offset_of!(ws::CSEDB_RSTMAPW, pwszNewDatabaseName)
        );
    };
    // Field types: both are `*mut u16` (PWSTR).
    const _: [fn(&emu::CSEDB_RSTMAPW) -> *mut u16; 2] =
        [|m| m.pwszDatabaseName, |m| m.pwszNewDatabaseName];
    const _: [fn(&ws::CSEDB_RSTMAPW) -> *mut u16; 2] =
        [|m| m.pwszDatabaseName, |m| m.pwszNewDatabaseName];

    const fn one<T>(_: &T) -> usize {
        1
    }

    /// The 18 functions: each name above must exist as a checked pair, or this fails to build.
    pub const COUNT: usize = one(&CertSrvIsServerOnlineW)
        + one(&CertSrvBackupPrepareW)
        + one(&CertSrvBackupGetDatabaseNamesW)
        + one(&CertSrvBackupGetDynamicFileListW)
        + one(&CertSrvBackupOpenFileW)
        + one(&CertSrvBackupRead)
        + one(&CertSrvBackupClose)
        + one(&CertSrvBackupGetBackupLogsW)
        + one(&CertSrvBackupTruncateLogs)
        + one(&CertSrvBackupEnd)
        + one(&CertSrvBackupFree)
        + one(&CertSrvRestoreGetDatabaseLocationsW)
        + one(&CertSrvRestorePrepareW)
        + one(&CertSrvRestoreRegisterW)
        + one(&CertSrvRestoreRegisterThroughFile)
        + one(&CertSrvRestoreRegisterComplete)
        + one(&CertSrvRestoreEnd)
        + one(&CertSrvServerControlW);
}

#[test]
fn all_eighteen_signatures_are_checked() {
    assert_eq!(signatures::COUNT, 18);
}

#[test]
fn windows_sys_imports_resolve_to_the_emulator_exports() {
    // Each windows-sys import is the emulator's export: the same code address.
    let pairs: [(&str, usize, usize); 18] = [
        (
            "CertSrvIsServerOnlineW",
            signatures::CertSrvIsServerOnlineW[0] as usize,
            signatures::CertSrvIsServerOnlineW[1] as usize,
        ),
        (
            "CertSrvBackupPrepareW",
            signatures::CertSrvBackupPrepareW[0] as usize,
            signatures::CertSrvBackupPrepareW[1] as usize,
        ),
        (
            "CertSrvBackupGetDatabaseNamesW",
            signatures::CertSrvBackupGetDatabaseNamesW[0] as usize,
            signatures::CertSrvBackupGetDatabaseNamesW[1] as usize,
        ),
        (
            "CertSrvBackupGetDynamicFileListW",
            signatures::CertSrvBackupGetDynamicFileListW[0] as usize,
            signatures::CertSrvBackupGetDynamicFileListW[1] as usize,
        ),
        (
            "CertSrvBackupOpenFileW",
            signatures::CertSrvBackupOpenFileW[0] as usize,
            signatures::CertSrvBackupOpenFileW[1] as usize,
        ),
        (
            "CertSrvBackupRead",
            signatures::CertSrvBackupRead[0] as usize,
            signatures::CertSrvBackupRead[1] as usize,
        ),
        (
            "CertSrvBackupClose",
            signatures::CertSrvBackupClose[0] as usize,
            signatures::CertSrvBackupClose[1] as usize,
        ),
        (
            "CertSrvBackupGetBackupLogsW",
            signatures::CertSrvBackupGetBackupLogsW[0] as usize,
            signatures::CertSrvBackupGetBackupLogsW[1] as usize,
        ),
        (
            "CertSrvBackupTruncateLogs",
            signatures::CertSrvBackupTruncateLogs[0] as usize,
            signatures::CertSrvBackupTruncateLogs[1] as usize,
        ),
        (
            "CertSrvBackupEnd",
            signatures::CertSrvBackupEnd[0] as usize,
            signatures::CertSrvBackupEnd[1] as usize,
        ),
        (
            "CertSrvBackupFree",
            signatures::CertSrvBackupFree[0] as usize,
            signatures::CertSrvBackupFree[1] as usize,
        ),
        (
            "CertSrvRestoreGetDatabaseLocationsW",
            signatures::CertSrvRestoreGetDatabaseLocationsW[0] as usize,
            signatures::CertSrvRestoreGetDatabaseLocationsW[1] as usize,
        ),
        (
            "CertSrvRestorePrepareW",
            signatures::CertSrvRestorePrepareW[0] as usize,
            signatures::CertSrvRestorePrepareW[1] as usize,
        ),
        (
            "CertSrvRestoreRegisterComplete",
            signatures::CertSrvRestoreRegisterComplete[0] as usize,
            signatures::CertSrvRestoreRegisterComplete[1] as usize,
        ),
        (
            "CertSrvRestoreEnd",
            signatures::CertSrvRestoreEnd[0] as usize,
            signatures::CertSrvRestoreEnd[1] as usize,
        ),
        (
            "CertSrvServerControlW",
            signatures::CertSrvServerControlW[0] as usize,
            signatures::CertSrvServerControlW[1] as usize,
        ),
        (
            "CertSrvRestoreRegisterW",
            signatures::CertSrvRestoreRegisterW.0 as usize,
            signatures::CertSrvRestoreRegisterW.1 as usize,
        ),
        (
            "CertSrvRestoreRegisterThroughFile",
            signatures::CertSrvRestoreRegisterThroughFile.0 as usize,
            signatures::CertSrvRestoreRegisterThroughFile.1 as usize,
        ),
    ];
    for (name, emu_addr, ws_addr) in pairs {
        assert_eq!(emu_addr, ws_addr, "{name}");
    }
}

// ----- 2. a full backup and a restore, as Windows code writes them ---------------------------

fn wstr(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The documented parsing loop: `while (*p) { type = p[0]; path = &p[1]; p += wcslen(p) + 1; }`.
unsafe fn walk(list: PWSTR, prefixed: bool) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    let mut p = list;
    unsafe {
        while *p != 0 {
            let mut len = 0usize;
            while *p.add(len) != 0 {
                len += 1;
            }
            let s = std::slice::from_raw_parts(p, len);
            if prefixed {
                out.push((s[0], String::from_utf16(&s[1..]).unwrap()));
            } else {
                out.push((0, String::from_utf16(s).unwrap()));
            }
            p = p.add(len + 1);
        }
    }
    out
}

/// OpenFile / Read loop / Close into `dest`; returns the bytes copied.
unsafe fn copy_out(hbc: *mut c_void, name: &str, dest: &Path) -> u64 {
    const BUFFSIZE: u32 = 524_288; // as in the Microsoft sample
    let wname = wstr(name);
    let mut size: i64 = 0;
    let hr = unsafe { CertSrvBackupOpenFileW(hbc, wname.as_ptr() as PCWSTR, 0, &mut size) };
    assert_eq!(hr, S_OK, "OpenFile {name}");
    let mut buf = vec![0u8; BUFFSIZE as usize];
    let mut data = Vec::new();
    loop {
        let mut cb_read: u32 = 0;
        let hr = unsafe {
            CertSrvBackupRead(hbc, buf.as_mut_ptr() as *mut c_void, BUFFSIZE, &mut cb_read)
        };
        assert_eq!(hr, S_OK);
        data.extend_from_slice(&buf[..cb_read as usize]);
        if cb_read < BUFFSIZE {
            break;
        }
    }
    assert_eq!(unsafe { CertSrvBackupClose(hbc) }, S_OK);
    assert_eq!(data.len() as i64, size);
    std::fs::write(dest, &data).unwrap();
    data.len() as u64
}

fn leaf(unc: &str) -> &str {
    unc.rsplit('\\').next().unwrap()
}

#[test]
fn full_backup_and_restore_through_windows_sys() {
    let ca = EmulatedCa::builder()
        .records(30)
        .log_capacity(5)
        .build()
        .unwrap();
    ca.issue(12).unwrap();
    ca.revoke(5).unwrap();
    let expected = ca.records().collect::<Vec<_>>();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("DataBase");
    std::fs::create_dir_all(&dir).unwrap();
    let server = wstr(ca.server_name());

    // --- backup ---
    let (locations, logs) = unsafe {
        let mut online: BOOL = 0;
        let hr: HRESULT = CertSrvIsServerOnlineW(server.as_ptr(), &mut online);
        assert_eq!(hr, S_OK);
        assert_eq!(online, TRUE);

        let mut hbc: *mut c_void = null_mut();
        let hr = CertSrvBackupPrepareW(server.as_ptr(), 0, CSBACKUP_TYPE_FULL, &mut hbc);
        assert_eq!(hr, S_OK);

        let mut pwszz_locs: PWSTR = null_mut();
        let mut cb_locs: u32 = 0;
        let hr = CertSrvRestoreGetDatabaseLocationsW(hbc, &mut pwszz_locs, &mut cb_locs);
        assert_eq!(hr, S_OK);
        // certbkxp.dat: exactly *pcbSize bytes.
        std::fs::write(
            dir.join("certbkxp.dat"),
            std::slice::from_raw_parts(pwszz_locs as *const u8, cb_locs as usize),
        )
        .unwrap();
        let locations = walk(pwszz_locs, true);

        let mut pwszz_db: PWSTR = null_mut();
        let mut cb_db: u32 = 0;
        let hr = CertSrvBackupGetDatabaseNamesW(hbc, &mut pwszz_db, &mut cb_db);
        assert_eq!(hr, S_OK);
        for (kind, name) in walk(pwszz_db, true) {
            assert_eq!(kind, b'D' as u16);
            copy_out(hbc, &name, &dir.join(leaf(&name)));
        }

        let mut pwszz_logs: PWSTR = null_mut();
        let mut cb_logs: u32 = 0;
        let hr = CertSrvBackupGetBackupLogsW(hbc, &mut pwszz_logs, &mut cb_logs);
        assert_eq!(hr, S_OK);
        let logs = walk(pwszz_logs, true);
        for (kind, name) in &logs {
            assert_eq!(*kind, b'!' as u16);
            copy_out(hbc, name, &dir.join(leaf(name)));
        }

        assert_eq!(CertSrvBackupTruncateLogs(hbc), S_OK);

        let mut pwszz_dyn: PWSTR = null_mut();
        let mut cb_dyn: u32 = 0;
        assert_eq!(
            CertSrvBackupGetDynamicFileListW(hbc, &mut pwszz_dyn, &mut cb_dyn),
            S_OK
        );
        assert_eq!(walk(pwszz_dyn, false).len(), 2);

        assert_eq!(CertSrvBackupEnd(hbc), S_OK);
        for p in [pwszz_locs, pwszz_db, pwszz_logs, pwszz_dyn] {
            CertSrvBackupFree(p as *mut c_void);
        }
        (locations, logs)
    };
    assert_eq!(ca.outstanding_buffers(), 0);
    assert!(ca.last_full_backup().is_some());
    assert_eq!(
        locations.iter().map(|l| l.0).collect::<Vec<_>>(),
        vec![0x44, 0x82, 0x83]
    );
    let db_name = &locations[0].1;
    let log_dir = &locations[1].1;
    let sys_dir = &locations[2].1;
    let gens: Vec<u32> = logs
        .iter()
        .map(|(_, n)| certadm_emu::ca::format::parse_log_file_name(leaf(n)).unwrap())
        .collect();
    let (gen_low, gen_high) = (gens[0], *gens.last().unwrap());

    // Changes after the backup are lost by the restore.
    ca.issue(4).unwrap();

    // --- restore ---
    unsafe {
        let hr = CertSrvServerControlW(
            server.as_ptr(),
            CSCONTROL_SHUTDOWN as u32, // a u64 in windows-sys (9 hex digits in the header)
            null_mut(),
            null_mut(),
        );
        assert_eq!(hr, S_OK);
        let mut online: BOOL = TRUE;
        let hr = CertSrvIsServerOnlineW(server.as_ptr(), &mut online);
        assert_eq!(hr as u32, 0x8007_06BA, "stopped: RPC_S_SERVER_UNAVAILABLE");
    }
    ca.wipe_files().unwrap();
    // Copy the backup set to the saved locations.
    std::fs::copy(dir.join(leaf(db_name)), ca.host_path(db_name).unwrap()).unwrap();
    for (_, name) in &logs {
        let dst = ca.host_path(&format!(r"{log_dir}\{}", leaf(name))).unwrap();
        std::fs::copy(dir.join(leaf(name)), dst).unwrap();
    }
    unsafe {
        let mut hbc: *mut c_void = null_mut();
        let hr = CertSrvRestorePrepareW(server.as_ptr(), CSRESTORE_TYPE_FULL, &mut hbc);
        assert_eq!(hr, S_OK);
        let mut db = wstr(db_name);
        let wlog = wstr(log_dir);
        let wsys = wstr(sys_dir);
        let mut rgrstmap = [CSEDB_RSTMAPW {
            pwszDatabaseName: db.as_mut_ptr(),
            pwszNewDatabaseName: db.as_mut_ptr(),
        }];
        let hr = CertSrvRestoreRegisterW(
            hbc,
            wsys.as_ptr(),
            wlog.as_ptr(),
            rgrstmap.as_mut_ptr(),
            1,
            wlog.as_ptr(),
            gen_low,
            gen_high,
        );
        assert_eq!(hr, S_OK, "{}", emu_message());
        let mk = ca.restore_marker().expect("registered");
        assert!(mk.pending);
        assert_eq!((mk.gen_low, mk.gen_high), (gen_low, gen_high));
        assert_eq!(mk.restore_map, vec![(db_name.clone(), db_name.clone())]);
        assert_eq!(CertSrvRestoreRegisterComplete(hbc, S_OK), S_OK);
        assert_eq!(CertSrvRestoreEnd(hbc), S_OK);
    }
    assert_eq!(ca.sessions_open(), 0);
    let report = ca.start().unwrap();
    assert!(report.hard);
    assert_eq!(ca.records().collect::<Vec<_>>(), expected);
    assert!(ca.restore_marker().is_none());
    assert!(ca.last_recovery().is_some());
}

fn emu_message() -> String {
    emu::last_error().map(|e| e.to_string()).unwrap_or_default()
}

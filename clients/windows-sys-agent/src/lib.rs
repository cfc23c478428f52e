//! A minimal certutil-style backup and restore agent, written as Windows code with
//! windows-sys. Nothing here is specific to certadm-emu: the same source links
//! `Certadm.dll` on Windows. Its tests run it on Linux against certadm-emu.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use windows_sys::Win32::Security::Cryptography::Certificates::*;

/// A failed call: its name and HRESULT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub &'static str, pub i32);

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain([0]).collect()
}

fn ok(call: &'static str, hr: i32) -> Result<(), Failure> {
    if hr < 0 {
        Err(Failure(call, hr))
    } else {
        Ok(())
    }
}

/// Reads a double-NUL list, then frees it.
unsafe fn take_list(p: *mut u16, cb: u32) -> Vec<Vec<u16>> {
    unsafe {
        let units = std::slice::from_raw_parts(p, cb as usize / 2);
        let out = units
            .split(|&u| u == 0)
            .take_while(|e| !e.is_empty())
            .map(|e| e.to_vec())
            .collect();
        CertSrvBackupFree(p.cast());
        out
    }
}

unsafe fn copy(hbc: *mut c_void, name: &[u16], dest: &Path) -> Result<u64, Failure> {
    unsafe {
        let mut zname = name.to_vec();
        zname.push(0);
        let mut size = 0i64;
        ok(
            "CertSrvBackupOpenFileW",
            CertSrvBackupOpenFileW(hbc, zname.as_ptr(), 0, &mut size),
        )?;
        let mut buf = vec![0u8; 512 * 1024];
        let mut data = Vec::with_capacity(size as usize);
        let result = loop {
            let mut n = 0u32;
            let hr = CertSrvBackupRead(hbc, buf.as_mut_ptr().cast(), buf.len() as u32, &mut n);
            if hr < 0 {
                break Err(Failure("CertSrvBackupRead", hr));
            }
            data.extend_from_slice(&buf[..n as usize]);
            if (n as usize) < buf.len() {
                break Ok(());
            }
        };
        let close = CertSrvBackupClose(hbc);
        result?;
        ok("CertSrvBackupClose", close)?;
        std::fs::write(dest, &data).map_err(|_| Failure("write", -1))?;
        Ok(data.len() as u64)
    }
}

fn file_name(entry: &[u16]) -> String {
    let s = String::from_utf16_lossy(entry);
    s.rsplit('\\').next().unwrap_or(&s).to_string()
}

/// A full backup of `server` into `dir` (`certbkxp.dat`, the `.edb`, the logs), with truncation.
pub fn full_backup(server: &str, dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let server = wide(server);
    std::fs::create_dir_all(dir).map_err(|_| Failure("mkdir", -1))?;
    unsafe {
        let mut online = 0;
        ok(
            "CertSrvIsServerOnlineW",
            CertSrvIsServerOnlineW(server.as_ptr(), &mut online),
        )?;
        let mut hbc: *mut c_void = std::ptr::null_mut();
        ok(
            "CertSrvBackupPrepareW",
            CertSrvBackupPrepareW(server.as_ptr(), 0, CSBACKUP_TYPE_FULL, &mut hbc),
        )?;
        let result = (|| {
            let mut files = Vec::new();
            let (mut p, mut cb) = (std::ptr::null_mut(), 0u32);
            ok(
                "CertSrvRestoreGetDatabaseLocationsW",
                CertSrvRestoreGetDatabaseLocationsW(hbc, &mut p, &mut cb),
            )?;
            let raw = std::slice::from_raw_parts(p as *const u8, cb as usize).to_vec();
            CertSrvBackupFree(p.cast());
            std::fs::write(dir.join("certbkxp.dat"), raw).map_err(|_| Failure("write", -1))?;
            ok(
                "CertSrvBackupGetDatabaseNamesW",
                CertSrvBackupGetDatabaseNamesW(hbc, &mut p, &mut cb),
            )?;
            let mut names = take_list(p, cb);
            ok(
                "CertSrvBackupGetBackupLogsW",
                CertSrvBackupGetBackupLogsW(hbc, &mut p, &mut cb),
            )?;
            names.extend(take_list(p, cb));
            for entry in &names {
                let dest = dir.join(file_name(&entry[1..]));
                copy(hbc, &entry[1..], &dest)?; // strip the CSBFT prefix
                files.push(dest);
            }
            ok("CertSrvBackupTruncateLogs", CertSrvBackupTruncateLogs(hbc))?;
            Ok(files)
        })();
        let end = CertSrvBackupEnd(hbc);
        let files = result?;
        ok("CertSrvBackupEnd", end)?;
        Ok(files)
    }
}

/// Registers the restore of a full backup whose files were already copied into place.
pub fn register_full_restore(
    server: &str,
    database: &str,
    log_dir: &str,
    gen_low: u32,
    gen_high: u32,
) -> Result<(), Failure> {
    let server = wide(server);
    let mut db = wide(database);
    let logs = wide(log_dir);
    unsafe {
        let mut online = 0;
        if CertSrvIsServerOnlineW(server.as_ptr(), &mut online) >= 0 {
            ok(
                "CertSrvServerControlW",
                CertSrvServerControlW(
                    server.as_ptr(),
                    CSCONTROL_SHUTDOWN as u32,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                ),
            )?;
        }
        let mut hbc: *mut c_void = std::ptr::null_mut();
        ok(
            "CertSrvRestorePrepareW",
            CertSrvRestorePrepareW(server.as_ptr(), CSRESTORE_TYPE_FULL, &mut hbc),
        )?;
        let mut map = [CSEDB_RSTMAPW {
            pwszDatabaseName: db.as_mut_ptr(),
            pwszNewDatabaseName: db.as_mut_ptr(),
        }];
        let r = ok(
            "CertSrvRestoreRegisterW",
            CertSrvRestoreRegisterW(
                hbc,
                std::ptr::null(),
                logs.as_ptr(),
                map.as_mut_ptr(),
                1,
                logs.as_ptr(),
                gen_low,
                gen_high,
            ),
        )
        .and_then(|()| {
            ok(
                "CertSrvRestoreRegisterComplete",
                CertSrvRestoreRegisterComplete(hbc, 0),
            )
        });
        let end = CertSrvRestoreEnd(hbc);
        r?;
        ok("CertSrvRestoreEnd", end)
    }
}

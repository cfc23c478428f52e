//! A reference client: the documented backup (spec §8.1) and restore (§8.3)
//! procedures, driven through the `extern "system"` exports exactly as a Windows
//! program calls Certadm.dll, writing the certutil `-backupDB` layout:
//!
//! ```text
//! DIR\DataBase\certbkxp.dat     (full backups: the raw CertSrvRestoreGetDatabaseLocationsW list)
//! DIR\DataBase\<CA name>.edb    (full backups)
//! DIR\DataBase\edbXXXXX.log     (every backup)
//! ```
//!
//! `certadm-emu demo` and `certadm-emu restore` use it, and so can tests: it is a
//! known-good client to compare your own against.

use super::exports::*;
use crate::core::consts::*;
use crate::core::wide::to_wide_nul;
use crate::core::{ListEntry, WideList, HRESULT};
use core::ffi::c_void;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A failed step: the function, its HRESULT, and the emulator's explanation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call} failed with {hr}{}", .detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct ClientError {
    /// The certbcli function (or local step).
    pub call: &'static str,
    /// Its HRESULT.
    pub hr: HRESULT,
    /// The emulator's message for this failure, if any.
    pub detail: Option<String>,
}

fn check(call: &'static str, hr: i32) -> Result<(), ClientError> {
    if hr < 0 {
        Err(ClientError {
            call,
            hr: HRESULT(hr),
            detail: super::last_error().map(|e| e.to_string()),
        })
    } else {
        Ok(())
    }
}

fn local(call: &'static str, e: impl std::fmt::Display) -> ClientError {
    ClientError {
        call,
        hr: HRESULT::E_FAIL,
        detail: Some(e.to_string()),
    }
}

/// What to back up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupOptions {
    /// `CSBACKUP_TYPE_LOGS_ONLY` instead of a full backup.
    pub incremental: bool,
    /// Call `CertSrvBackupTruncateLogs` after copying (certutil's default for full backups).
    pub truncate: bool,
    /// Read buffer size (the Microsoft sample uses 512 KiB).
    pub buffer_size: usize,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            incremental: false,
            truncate: true,
            buffer_size: 512 * 1024,
        }
    }
}

/// One copied file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedFile {
    /// The name the CA listed (UNC, prefix stripped).
    pub name: String,
    /// Where it was written.
    pub dest: PathBuf,
    /// Its size.
    pub bytes: u64,
}

/// What a backup did.
#[derive(Debug, Clone, Default)]
pub struct BackupSummary {
    /// Every call made, with its result, in order.
    pub calls: Vec<(&'static str, HRESULT)>,
    /// The files copied.
    pub files: Vec<CopiedFile>,
    /// True if the logs were truncated.
    pub truncated: bool,
    /// Generations deleted are not visible to a client; this is the log range copied.
    pub log_range: Option<(u32, u32)>,
}

/// Progress of a file copy: (file name, bytes done, bytes total).
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

struct Session {
    h: *mut c_void,
    ended: bool,
}

/// Reads a list returned in `p`/`cb`, then frees it with `CertSrvBackupFree`.
///
/// # Safety
/// `p` was returned by a list function of this crate with `cb` bytes.
unsafe fn take_list(p: *mut u16, cb: u32) -> Vec<u8> {
    // SAFETY: the emulator returned `cb` bytes at `p`.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, cb as usize) }.to_vec();
    // SAFETY: a live buffer of ours.
    unsafe { CertSrvBackupFree(p as *mut c_void) };
    bytes
}

fn file_name_of(unc: &str) -> &str {
    unc.rsplit('\\').next().unwrap_or(unc)
}

/// Backs up the CA on `server` into `dir` (certutil layout), as the documented procedure does.
/// On failure the session is still ended, as a careful client does.
pub fn backup_to_dir(
    server: &str,
    dir: &Path,
    opts: &BackupOptions,
    progress: Progress<'_>,
) -> Result<BackupSummary, ClientError> {
    let mut sum = BackupSummary::default();
    let db_dir = dir.join(wszDBBACKUPSUBDIR);
    std::fs::create_dir_all(&db_dir).map_err(|e| local("create backup directory", e))?;
    let wserver = to_wide_nul(server);
    let mut online = 0i32;
    // SAFETY: valid string and out-pointer.
    let hr = unsafe { CertSrvIsServerOnlineW(wserver.as_ptr(), &mut online) };
    sum.calls.push(("CertSrvIsServerOnlineW", HRESULT(hr)));
    check("CertSrvIsServerOnlineW", hr)?;
    if online == 0 {
        return Err(ClientError {
            call: "CertSrvIsServerOnlineW",
            hr: HRESULT::RPC_S_SERVER_UNAVAILABLE,
            detail: Some("the CA is suspended".into()),
        });
    }
    let flags = if opts.incremental {
        CSBACKUP_TYPE_LOGS_ONLY
    } else {
        CSBACKUP_TYPE_FULL
    };
    let mut s = Session {
        h: std::ptr::null_mut(),
        ended: false,
    };
    // SAFETY: valid string and out-pointer.
    let hr = unsafe { CertSrvBackupPrepareW(wserver.as_ptr(), 0, flags, &mut s.h) };
    sum.calls.push(("CertSrvBackupPrepareW", HRESULT(hr)));
    check("CertSrvBackupPrepareW", hr)?;
    let result = backup_steps(&mut s, &db_dir, opts, &mut sum, progress);
    if !s.ended {
        let hr = end_with_retry(s.h, &mut sum);
        if result.is_ok() {
            check("CertSrvBackupEnd", hr)?;
        }
    }
    result.map(|()| sum)
}

/// `CertSrvBackupEnd`, tried twice: a session left open blocks every later backup.
fn end_with_retry(h: *mut c_void, sum: &mut BackupSummary) -> i32 {
    let mut hr = 0;
    for _ in 0..2 {
        // SAFETY: our handle (a stale one only gets E_HANDLE).
        hr = unsafe { CertSrvBackupEnd(h) };
        sum.calls.push(("CertSrvBackupEnd", HRESULT(hr)));
        if hr >= 0 || hr == HRESULT::E_HANDLE.0 {
            break;
        }
    }
    hr
}

fn list_call(
    name: &'static str,
    f: unsafe extern "system" fn(*const c_void, *mut *mut u16, *mut u32) -> i32,
    h: *mut c_void,
    sum: &mut BackupSummary,
) -> Result<Vec<u8>, ClientError> {
    let mut p: *mut u16 = std::ptr::null_mut();
    let mut cb = 0u32;
    // SAFETY: valid out-pointers.
    let hr = unsafe { f(h, &mut p, &mut cb) };
    sum.calls.push((name, HRESULT(hr)));
    check(name, hr)?;
    // SAFETY: returned by the list function.
    Ok(unsafe { take_list(p, cb) })
}

fn entries(bytes: &[u8]) -> Vec<ListEntry> {
    WideList::parse_bytes(bytes, true).unwrap_or_default()
}

fn backup_steps(
    s: &mut Session,
    db_dir: &Path,
    opts: &BackupOptions,
    sum: &mut BackupSummary,
    progress: Progress<'_>,
) -> Result<(), ClientError> {
    let mut buf = vec![0u8; opts.buffer_size.max(1)];
    if !opts.incremental {
        let locs = list_call(
            "CertSrvRestoreGetDatabaseLocationsW",
            CertSrvRestoreGetDatabaseLocationsW,
            s.h,
            sum,
        )?;
        std::fs::write(db_dir.join(wszDBBACKUPCERTBACKDAT), &locs)
            .map_err(|e| local("write certbkxp.dat", e))?;
        let names = list_call(
            "CertSrvBackupGetDatabaseNamesW",
            CertSrvBackupGetDatabaseNamesW,
            s.h,
            sum,
        )?;
        for e in entries(&names) {
            copy_file(s.h, &e.path, db_dir, &mut buf, sum, progress)?;
        }
    }
    let logs = list_call(
        "CertSrvBackupGetBackupLogsW",
        CertSrvBackupGetBackupLogsW,
        s.h,
        sum,
    )?;
    let mut range: Option<(u32, u32)> = None;
    for e in entries(&logs) {
        copy_file(s.h, &e.path, db_dir, &mut buf, sum, progress)?;
        if let Some(g) = crate::ca::format::parse_log_file_name(file_name_of(&e.path)) {
            range = Some(range.map_or((g, g), |(l, h)| (l.min(g), h.max(g))));
        }
    }
    sum.log_range = range;
    if opts.truncate {
        // SAFETY: our live handle.
        let hr = unsafe { CertSrvBackupTruncateLogs(s.h) };
        sum.calls.push(("CertSrvBackupTruncateLogs", HRESULT(hr)));
        check("CertSrvBackupTruncateLogs", hr)?;
        sum.truncated = true;
    }
    let dynamic = list_call(
        "CertSrvBackupGetDynamicFileListW",
        CertSrvBackupGetDynamicFileListW,
        s.h,
        sum,
    )?;
    let _ = dynamic;
    let hr = end_with_retry(s.h, sum);
    s.ended = true;
    check("CertSrvBackupEnd", hr)
}

fn copy_file(
    h: *mut c_void,
    name: &str,
    db_dir: &Path,
    buf: &mut [u8],
    sum: &mut BackupSummary,
    progress: Progress<'_>,
) -> Result<(), ClientError> {
    let wname = to_wide_nul(name);
    let mut size = 0i64;
    // SAFETY: valid string and out-pointer.
    let hr = unsafe { CertSrvBackupOpenFileW(h, wname.as_ptr(), buf.len() as u32, &mut size) };
    sum.calls.push(("CertSrvBackupOpenFileW", HRESULT(hr)));
    check("CertSrvBackupOpenFileW", hr)?;
    let dest = db_dir.join(file_name_of(name));
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        File::create(&dest).map_err(|e| local("create backup file", e))?,
    );
    let mut done = 0u64;
    loop {
        let mut n = 0u32;
        // SAFETY: buf is valid for buf.len() bytes.
        let hr = unsafe {
            CertSrvBackupRead(h, buf.as_mut_ptr() as *mut c_void, buf.len() as u32, &mut n)
        };
        sum.calls.push(("CertSrvBackupRead", HRESULT(hr)));
        if let Err(e) = check("CertSrvBackupRead", hr) {
            // Close the file before giving up, so End finds nothing open.
            // SAFETY: our live handle.
            let hr = unsafe { CertSrvBackupClose(h) };
            sum.calls.push(("CertSrvBackupClose", HRESULT(hr)));
            return Err(e);
        }
        out.write_all(&buf[..n as usize])
            .map_err(|e| local("write backup file", e))?;
        done += n as u64;
        progress(name, done, size as u64);
        if (n as usize) < buf.len() {
            break;
        }
    }
    out.flush().map_err(|e| local("write backup file", e))?;
    // SAFETY: our live handle.
    let hr = unsafe { CertSrvBackupClose(h) };
    sum.calls.push(("CertSrvBackupClose", HRESULT(hr)));
    check("CertSrvBackupClose", hr)?;
    sum.files.push(CopiedFile {
        name: name.to_string(),
        dest,
        bytes: done,
    });
    Ok(())
}

/// The locations saved in a full backup's `certbkxp.dat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedLocations {
    /// The database file (`'D'`).
    pub database: String,
    /// The log directory (0x82).
    pub log_dir: String,
    /// The checkpoint directory (0x83).
    pub system_dir: String,
}

/// Reads `DIR\DataBase\certbkxp.dat`.
pub fn read_locations(dir: &Path) -> Result<SavedLocations, ClientError> {
    let p = dir.join(wszDBBACKUPSUBDIR).join(wszDBBACKUPCERTBACKDAT);
    let bytes = std::fs::read(&p).map_err(|_| ClientError {
        call: "read certbkxp.dat",
        hr: HRESULT::ERROR_DIRECTORY,
        detail: Some(format!(
            "{} is missing: the directory holds no full database backup",
            p.display()
        )),
    })?;
    let e = WideList::parse_bytes(&bytes, true)
        .ok_or_else(|| local("parse certbkxp.dat", "not a double-NUL UTF-16 list"))?;
    let find = |k: u16| {
        e.iter()
            .find(|x| x.kind == Some(k))
            .map(|x| x.path.clone())
            .ok_or_else(|| local("parse certbkxp.dat", format!("no entry of type {k:#x}")))
    };
    Ok(SavedLocations {
        database: find(CSBFT_CERTSERVER_DATABASE)?,
        log_dir: find(CSBFT_LOG_DIR)?,
        system_dir: find(CSBFT_CHECKPOINT_DIR)?,
    })
}

/// How a restore is registered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Use `CertSrvRestoreRegisterThroughFile` (restore privilege only).
    pub through_file: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Default)]
pub struct RestoreSummary {
    /// Every call, in order.
    pub calls: Vec<(&'static str, HRESULT)>,
    /// Files written to the CA's directories.
    pub files: Vec<PathBuf>,
    /// (genLow, genHigh) registered for each set.
    pub registered: Vec<(u32, u32)>,
}

fn logs_in(dir: &Path) -> Result<Vec<(u32, PathBuf)>, ClientError> {
    let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir(dir.join(wszDBBACKUPSUBDIR))
        .map_err(|e| local("read backup directory", e))?
        .flatten()
        .filter_map(|e| {
            crate::ca::format::parse_log_file_name(&e.file_name().to_string_lossy())
                .map(|g| (g, e.path()))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Restores a full backup directory and then incremental ones, as spec §8.3 describes:
/// stop the CA if it runs, copy the files to the locations saved in `certbkxp.dat`
/// (mapped to host paths by `map`), then Prepare / Register / RegisterComplete / End
/// for each set. Starting the CA afterwards (which runs the recovery) is the caller's step.
pub fn restore_from_dirs(
    server: &str,
    full: &Path,
    incrementals: &[PathBuf],
    map: &dyn Fn(&str) -> Result<PathBuf, crate::Error>,
    opts: &RestoreOptions,
) -> Result<RestoreSummary, ClientError> {
    let mut sum = RestoreSummary::default();
    let wserver = to_wide_nul(server);
    let mut online = 0i32;
    // SAFETY: valid string and out-pointer.
    let hr = unsafe { CertSrvIsServerOnlineW(wserver.as_ptr(), &mut online) };
    sum.calls.push(("CertSrvIsServerOnlineW", HRESULT(hr)));
    if hr >= 0 {
        // SAFETY: valid string; optional out-pointers NULL.
        let hr = unsafe {
            CertSrvServerControlW(
                wserver.as_ptr(),
                CSCONTROL_SHUTDOWN,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        sum.calls.push(("CertSrvServerControlW", HRESULT(hr)));
        check("CertSrvServerControlW", hr)?;
    }
    let locs = read_locations(full)?;
    let host = |p: &str| {
        map(p).map_err(|e| ClientError {
            call: "map path",
            hr: e.hresult(),
            detail: Some(e.to_string()),
        })
    };
    let db_name = file_name_of(&locs.database).to_string();
    let edb_src = full.join(wszDBBACKUPSUBDIR).join(&db_name);
    let edb_dst = host(&locs.database)?;
    copy(&edb_src, &edb_dst, &mut sum)?;
    let sets: Vec<(&Path, bool)> = std::iter::once((full, true))
        .chain(incrementals.iter().map(|p| (p.as_path(), false)))
        .collect();
    for (dir, is_full) in sets {
        let logs = logs_in(dir)?;
        let (Some(low), Some(high)) = (logs.first().map(|l| l.0), logs.last().map(|l| l.0)) else {
            return Err(ClientError {
                call: "read backup directory",
                hr: HRESULT::ERROR_DIRECTORY,
                detail: Some(format!("{} holds no edbXXXXX.log", dir.display())),
            });
        };
        for (_, src) in &logs {
            let dst = host(&format!(
                "{}\\{}",
                locs.log_dir,
                src.file_name().unwrap().to_string_lossy()
            ))?;
            copy(src, &dst, &mut sum)?;
        }
        register_set(&wserver, is_full, &locs, low, high, opts, &mut sum)?;
    }
    Ok(sum)
}

fn copy(src: &Path, dst: &Path, sum: &mut RestoreSummary) -> Result<(), ClientError> {
    if let Some(d) = dst.parent() {
        std::fs::create_dir_all(d).map_err(|e| local("create restore directory", e))?;
    }
    std::fs::copy(src, dst)
        .map_err(|e| local("copy backup file", format!("{}: {e}", src.display())))?;
    sum.files.push(dst.to_path_buf());
    Ok(())
}

fn register_set(
    wserver: &[u16],
    full: bool,
    locs: &SavedLocations,
    low: u32,
    high: u32,
    opts: &RestoreOptions,
    sum: &mut RestoreSummary,
) -> Result<(), ClientError> {
    let mut h: *mut c_void = std::ptr::null_mut();
    let flags = if full { CSRESTORE_TYPE_FULL } else { 0 };
    // SAFETY: valid string and out-pointer.
    let hr = unsafe { CertSrvRestorePrepareW(wserver.as_ptr(), flags, &mut h) };
    sum.calls.push(("CertSrvRestorePrepareW", HRESULT(hr)));
    check("CertSrvRestorePrepareW", hr)?;
    let mut db = to_wide_nul(&locs.database);
    let logdir = to_wide_nul(&locs.log_dir);
    let sysdir = to_wide_nul(&locs.system_dir);
    let mut map = [CSEDB_RSTMAPW {
        pwszDatabaseName: db.as_mut_ptr(),
        pwszNewDatabaseName: db.as_mut_ptr(),
    }];
    let (pmap, n) = if full {
        (map.as_mut_ptr(), 1)
    } else {
        (std::ptr::null_mut(), 0)
    };
    let register = if opts.through_file {
        CertSrvRestoreRegisterThroughFile
    } else {
        CertSrvRestoreRegisterW
    };
    let name = if opts.through_file {
        "CertSrvRestoreRegisterThroughFile"
    } else {
        "CertSrvRestoreRegisterW"
    };
    // SAFETY: valid strings, map of n entries.
    let hr = unsafe {
        register(
            h,
            sysdir.as_ptr(),
            logdir.as_ptr(),
            pmap,
            n,
            logdir.as_ptr(),
            low,
            high,
        )
    };
    sum.calls.push((name, HRESULT(hr)));
    let result = check(name, hr).and_then(|()| {
        // A registration left incomplete keeps the CA from starting: try twice.
        let mut hr = 0;
        for _ in 0..2 {
            // SAFETY: our live handle.
            hr = unsafe { CertSrvRestoreRegisterComplete(h, 0) };
            sum.calls
                .push(("CertSrvRestoreRegisterComplete", HRESULT(hr)));
            if hr >= 0 {
                break;
            }
        }
        check("CertSrvRestoreRegisterComplete", hr)
    });
    let mut hr = 0;
    for _ in 0..2 {
        // SAFETY: our live handle (a stale one only gets E_HANDLE).
        hr = unsafe { CertSrvRestoreEnd(h) };
        sum.calls.push(("CertSrvRestoreEnd", HRESULT(hr)));
        if hr >= 0 || hr == HRESULT::E_HANDLE.0 {
            break;
        }
    }
    result?;
    check("CertSrvRestoreEnd", hr)?;
    sum.registered.push((low, high));
    Ok(())
}

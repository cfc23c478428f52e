//! A reference client: the documented backup (spec §8.1) and restore (§8.3)
//! procedures, driven through the `extern "system"` exports exactly as a Windows
//! program calls Certadm.dll (by way of their safe layer [`crate::abi::call`]), writing
//! the certutil `-backupDB` layout:
//!
//! ```text
//! DIR\DataBase\certbkxp.dat     (full backups: the raw CertSrvRestoreGetDatabaseLocationsW list)
//! DIR\DataBase\<CA name>.edb    (full backups)
//! DIR\DataBase\edbXXXXX.log     (every backup)
//! ```
//!
//! `certadm-emu demo` and `certadm-emu restore` use it, and so can tests: it is a
//! known-good client to compare your own against.

#![forbid(unsafe_code)]

use crate::abi::call::{self, AbiError, List, WStr};
use crate::core::consts::*;
use crate::core::{Call, ListEntry, WideList, HRESULT};
use crate::session::{Hcsbc, Registration};
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

impl From<AbiError> for ClientError {
    fn from(e: AbiError) -> ClientError {
        ClientError {
            call: e.call.name(),
            hr: e.hr,
            detail: e.detail.map(|d| d.to_string()),
        }
    }
}

fn local(call: &'static str, e: impl std::fmt::Display) -> ClientError {
    ClientError {
        call,
        hr: HRESULT::E_FAIL,
        detail: Some(e.to_string()),
    }
}

/// The HRESULT a call returned (every export returns `S_OK` on success).
fn hr_of<T>(r: &call::Result<T>) -> HRESULT {
    r.as_ref().map_or_else(|e| e.hr, |_| HRESULT::S_OK)
}

/// Records the call and its HRESULT in `calls`.
fn record<T>(
    calls: &mut Vec<(&'static str, HRESULT)>,
    c: Call,
    r: call::Result<T>,
) -> call::Result<T> {
    calls.push((c.name(), hr_of(&r)));
    r
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
    let wserver = WStr::new(server);
    let online = record(
        &mut sum.calls,
        Call::IsServerOnline,
        call::is_server_online(&wserver),
    )?;
    if !online {
        return Err(ClientError {
            call: Call::IsServerOnline.name(),
            hr: HRESULT::RPC_S_SERVER_UNAVAILABLE,
            detail: Some("the CA is suspended".into()),
        });
    }
    let flags = if opts.incremental {
        CSBACKUP_TYPE_LOGS_ONLY
    } else {
        CSBACKUP_TYPE_FULL
    };
    let h = record(
        &mut sum.calls,
        Call::BackupPrepare,
        call::backup_prepare(&wserver, 0, flags),
    )?;
    let mut ended = false;
    let result = backup_steps(h, &mut ended, &db_dir, opts, &mut sum, progress);
    if !ended {
        let end = end_with_retry(h, &mut sum);
        if result.is_ok() {
            end?;
        }
    }
    result.map(|()| sum)
}

/// `CertSrvBackupEnd`, tried twice: a session left open blocks every later backup.
fn end_with_retry(h: Hcsbc, sum: &mut BackupSummary) -> call::Result<()> {
    let mut r = Ok(());
    for _ in 0..2 {
        r = record(&mut sum.calls, Call::BackupEnd, call::backup_end(h));
        if hr_of(&r).is_ok() || hr_of(&r) == HRESULT::E_HANDLE {
            break;
        }
    }
    r
}

fn entries(list: &List) -> Vec<ListEntry> {
    list.entries(true).unwrap_or_default()
}

fn backup_steps(
    h: Hcsbc,
    ended: &mut bool,
    db_dir: &Path,
    opts: &BackupOptions,
    sum: &mut BackupSummary,
    progress: Progress<'_>,
) -> Result<(), ClientError> {
    let mut buf = vec![0u8; opts.buffer_size.max(1)];
    if !opts.incremental {
        let locs = record(
            &mut sum.calls,
            Call::RestoreGetDatabaseLocations,
            call::restore_get_database_locations(h),
        )?;
        std::fs::write(db_dir.join(wszDBBACKUPCERTBACKDAT), locs.bytes())
            .map_err(|e| local("write certbkxp.dat", e))?;
        let names = record(
            &mut sum.calls,
            Call::BackupGetDatabaseNames,
            call::backup_get_database_names(h),
        )?;
        for e in entries(&names) {
            copy_file(h, &e.path, db_dir, &mut buf, sum, progress)?;
        }
    }
    let logs = record(
        &mut sum.calls,
        Call::BackupGetBackupLogs,
        call::backup_get_backup_logs(h),
    )?;
    let mut range: Option<(u32, u32)> = None;
    for e in entries(&logs) {
        copy_file(h, &e.path, db_dir, &mut buf, sum, progress)?;
        if let Some(g) = crate::ca::format::parse_log_file_name(file_name_of(&e.path)) {
            range = Some(range.map_or((g, g), |(l, h)| (l.min(g), h.max(g))));
        }
    }
    sum.log_range = range;
    if opts.truncate {
        record(
            &mut sum.calls,
            Call::BackupTruncateLogs,
            call::backup_truncate_logs(h),
        )?;
        sum.truncated = true;
    }
    record(
        &mut sum.calls,
        Call::BackupGetDynamicFileList,
        call::backup_get_dynamic_file_list(h),
    )?;
    let end = end_with_retry(h, sum);
    *ended = true;
    Ok(end?)
}

fn copy_file(
    h: Hcsbc,
    name: &str,
    db_dir: &Path,
    buf: &mut [u8],
    sum: &mut BackupSummary,
    progress: Progress<'_>,
) -> Result<(), ClientError> {
    let size = record(
        &mut sum.calls,
        Call::BackupOpenFile,
        call::backup_open_file(h, &WStr::new(name), buf.len() as u32),
    )?;
    let dest = db_dir.join(file_name_of(name));
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        File::create(&dest).map_err(|e| local("create backup file", e))?,
    );
    let mut done = 0u64;
    loop {
        let n = match record(&mut sum.calls, Call::BackupRead, call::backup_read(h, buf)) {
            Ok(n) => n,
            Err(e) => {
                // Close the file before giving up, so End finds nothing open.
                let _ = record(&mut sum.calls, Call::BackupClose, call::backup_close(h));
                return Err(e.into());
            }
        };
        out.write_all(&buf[..n])
            .map_err(|e| local("write backup file", e))?;
        done += n as u64;
        progress(name, done, size);
        if n < buf.len() {
            break;
        }
    }
    out.flush().map_err(|e| local("write backup file", e))?;
    record(&mut sum.calls, Call::BackupClose, call::backup_close(h))?;
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

impl SavedLocations {
    /// The registration of a restored set of log generations `low..=high` in these
    /// locations: the database mapped onto itself for a full set, no map for an
    /// incremental one; logs restored into the log directory.
    pub fn registration(&self, full: bool, low: u32, high: u32) -> Registration {
        Registration {
            checkpoint_path: Some(self.system_dir.clone()),
            log_path: Some(self.log_dir.clone()),
            restore_map: if full {
                vec![(self.database.clone(), self.database.clone())]
            } else {
                Vec::new()
            },
            backup_log_path: Some(self.log_dir.clone()),
            gen_low: low,
            gen_high: high,
        }
    }
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
    let wserver = WStr::new(server);
    let online = record(
        &mut sum.calls,
        Call::IsServerOnline,
        call::is_server_online(&wserver),
    );
    if online.is_ok() {
        record(
            &mut sum.calls,
            Call::ServerControl,
            call::server_control(&wserver, CSCONTROL_SHUTDOWN),
        )?;
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
                src.file_name().unwrap_or_default().to_string_lossy()
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
    wserver: &WStr,
    full: bool,
    locs: &SavedLocations,
    low: u32,
    high: u32,
    opts: &RestoreOptions,
    sum: &mut RestoreSummary,
) -> Result<(), ClientError> {
    let flags = if full { CSRESTORE_TYPE_FULL } else { 0 };
    let h = record(
        &mut sum.calls,
        Call::RestorePrepare,
        call::restore_prepare(wserver, flags),
    )?;
    let reg = locs.registration(full, low, high);
    let register = Call::restore_register(opts.through_file);
    let result = record(
        &mut sum.calls,
        register,
        call::restore_register(Some(h), &reg, opts.through_file),
    )
    .and_then(|()| {
        // A registration left incomplete keeps the CA from starting: try twice.
        let mut r = Ok(());
        for _ in 0..2 {
            r = record(
                &mut sum.calls,
                Call::RestoreRegisterComplete,
                call::restore_register_complete(Some(h), HRESULT::S_OK),
            );
            if r.is_ok() {
                break;
            }
        }
        r
    });
    let mut end = Ok(());
    for _ in 0..2 {
        end = record(&mut sum.calls, Call::RestoreEnd, call::restore_end(h));
        if hr_of(&end).is_ok() || hr_of(&end) == HRESULT::E_HANDLE {
            break;
        }
    }
    result?;
    end?;
    sum.registered.push((low, high));
    Ok(())
}

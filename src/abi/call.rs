//! A safe layer over the 18 exports, for Rust code that wants to drive the ABI exactly as a
//! C client does: UTF-16 strings with their NUL, out-pointers, and lists copied out of their
//! buffer and freed with `CertSrvBackupFree`. Each function takes Rust values and returns
//! `Result<_, AbiError>`; the error holds the HRESULT the export returned and the message
//! [`last_error`] kept for it.
//!
//! The reference client and the benchmarks (modules `client` and `bench`, above this
//! layer) go through this module instead of writing their own `unsafe` wrappers. (The safe Rust API without the ABI
//! boundary is [`crate::api`].)

use super::exports::*;
use super::last_error;
use crate::core::wide::to_wide_nul;
use crate::core::{Call, Error, ListEntry, WideList, HRESULT};
use crate::session::{Hcsbc, Registration};
use core::ffi::c_void;

/// A failed export: which one, its HRESULT, and the emulator's explanation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call} failed with {hr}{}", .detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct AbiError {
    /// The export.
    pub call: Call,
    /// What it returned.
    pub hr: HRESULT,
    /// The error [`last_error`] kept for this failure.
    pub detail: Option<Error>,
}

/// The result of a call through this layer.
pub type Result<T> = std::result::Result<T, AbiError>;

/// A NUL-terminated UTF-16 string, encoded once: a `pwsz` argument.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WStr(Vec<u16>);

impl WStr {
    /// Encodes `s` (an interior NUL ends the string there, as for any C caller).
    pub fn new(s: &str) -> WStr {
        WStr(to_wide_nul(s))
    }

    /// The code units, with the terminating NUL.
    pub fn units_with_nul(&self) -> &[u16] {
        &self.0
    }

    fn ptr(&self) -> *const u16 {
        self.0.as_ptr()
    }
}

impl From<&str> for WStr {
    fn from(s: &str) -> WStr {
        WStr::new(s)
    }
}

/// A list returned by one of the four list functions, copied out of the emulator's
/// buffer (which is freed with `CertSrvBackupFree` before the function returns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List(Vec<u8>);

impl List {
    /// The `*pcbSize` bytes of the list, as returned (double-NUL UTF-16).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The entries; `prefixed` strips the one-WCHAR `CSBFT` type of each. `None` if the
    /// bytes are not a well-formed list.
    pub fn entries(&self, prefixed: bool) -> Option<Vec<ListEntry>> {
        WideList::parse_bytes(&self.0, prefixed)
    }
}

#[inline]
fn check(call: Call, hr: i32) -> Result<()> {
    if hr < 0 {
        Err(failure(call, hr))
    } else {
        Ok(())
    }
}

/// The error of an export that returned the failure `hr`.
#[cold]
fn failure(call: Call, hr: i32) -> AbiError {
    AbiError {
        call,
        hr: HRESULT(hr),
        detail: last_error(),
    }
}

fn hbc(h: Option<Hcsbc>) -> *mut c_void {
    h.map_or(std::ptr::null_mut(), Hcsbc::as_ptr)
}

/// A handle an export returned with `S_OK`.
fn returned_handle(call: Call, p: *mut c_void) -> Result<Hcsbc> {
    Hcsbc::from_ptr(p).ok_or(AbiError {
        call,
        hr: HRESULT::E_UNEXPECTED,
        detail: None,
    })
}

/// The list export `f`: the list is copied, then freed.
fn list(
    call: Call,
    f: unsafe extern "system" fn(*const c_void, *mut *mut u16, *mut u32) -> i32,
    h: Hcsbc,
) -> Result<List> {
    let mut p: *mut u16 = std::ptr::null_mut();
    let mut cb = 0u32;
    // SAFETY: the handle is any value (the export checks it); both out-pointers are valid
    // for writes.
    let hr = unsafe { f(h.as_ptr(), &mut p, &mut cb) };
    check(call, hr)?;
    if p.is_null() {
        return Ok(List::default());
    }
    // SAFETY: on success the export returned a live buffer of `cb` bytes at `p`; it is
    // read once here, before it is freed.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, cb as usize) }.to_vec();
    // SAFETY: a live buffer of the emulator, freed exactly once.
    unsafe { CertSrvBackupFree(p.cast()) };
    Ok(List(bytes))
}

/// `CertSrvIsServerOnlineW`: `Ok(true)` when running, `Ok(false)` when suspended.
pub fn is_server_online(server: &WStr) -> Result<bool> {
    let mut online = 0i32;
    // SAFETY: a NUL-terminated string and a valid out-pointer.
    let hr = unsafe { CertSrvIsServerOnlineW(server.ptr(), &mut online) };
    check(Call::IsServerOnline, hr)?;
    Ok(online != 0)
}

/// `CertSrvBackupPrepareW`.
pub fn backup_prepare(server: &WStr, grbit_jet: u32, backup_flags: u32) -> Result<Hcsbc> {
    let mut h = std::ptr::null_mut();
    // SAFETY: a NUL-terminated string and a valid out-pointer.
    let hr = unsafe { CertSrvBackupPrepareW(server.ptr(), grbit_jet, backup_flags, &mut h) };
    check(Call::BackupPrepare, hr)?;
    returned_handle(Call::BackupPrepare, h)
}

/// `CertSrvBackupGetDatabaseNamesW`.
pub fn backup_get_database_names(h: Hcsbc) -> Result<List> {
    list(
        Call::BackupGetDatabaseNames,
        CertSrvBackupGetDatabaseNamesW,
        h,
    )
}

/// `CertSrvBackupGetDynamicFileListW`.
pub fn backup_get_dynamic_file_list(h: Hcsbc) -> Result<List> {
    list(
        Call::BackupGetDynamicFileList,
        CertSrvBackupGetDynamicFileListW,
        h,
    )
}

/// `CertSrvBackupGetBackupLogsW`.
pub fn backup_get_backup_logs(h: Hcsbc) -> Result<List> {
    list(Call::BackupGetBackupLogs, CertSrvBackupGetBackupLogsW, h)
}

/// `CertSrvRestoreGetDatabaseLocationsW`, with a backup or a restore context.
pub fn restore_get_database_locations(h: Hcsbc) -> Result<List> {
    list(
        Call::RestoreGetDatabaseLocations,
        CertSrvRestoreGetDatabaseLocationsW,
        h,
    )
}

/// `CertSrvBackupOpenFileW`: returns the file size.
pub fn backup_open_file(h: Hcsbc, name: &WStr, read_hint: u32) -> Result<u64> {
    let mut size = 0i64;
    // SAFETY: a NUL-terminated string and a valid out-pointer.
    let hr = unsafe { CertSrvBackupOpenFileW(h.as_ptr(), name.ptr(), read_hint, &mut size) };
    check(Call::BackupOpenFile, hr)?;
    Ok(size as u64)
}

/// `CertSrvBackupRead` into `buf` (at most `u32::MAX` bytes of it): the count read, less
/// than asked only at end of file.
pub fn backup_read(h: Hcsbc, buf: &mut [u8]) -> Result<usize> {
    let len = buf.len().min(u32::MAX as usize) as u32;
    let mut n = 0u32;
    // SAFETY: `buf` is valid for writes of `len` bytes; a valid out-pointer.
    let hr = unsafe { CertSrvBackupRead(h.as_ptr(), buf.as_mut_ptr().cast(), len, &mut n) };
    check(Call::BackupRead, hr)?;
    Ok(n as usize)
}

/// `CertSrvBackupClose`.
pub fn backup_close(h: Hcsbc) -> Result<()> {
    // SAFETY: the handle is any value (the export checks it).
    check(Call::BackupClose, unsafe { CertSrvBackupClose(h.as_ptr()) })
}

/// `CertSrvBackupTruncateLogs`.
pub fn backup_truncate_logs(h: Hcsbc) -> Result<()> {
    // SAFETY: the handle is any value (the export checks it).
    check(Call::BackupTruncateLogs, unsafe {
        CertSrvBackupTruncateLogs(h.as_ptr())
    })
}

/// `CertSrvBackupEnd`.
pub fn backup_end(h: Hcsbc) -> Result<()> {
    // SAFETY: the handle is any value (the export checks it).
    check(Call::BackupEnd, unsafe { CertSrvBackupEnd(h.as_ptr()) })
}

/// `CertSrvRestorePrepareW`: `CSRESTORE_TYPE_FULL` for a full set, 0 for an incremental set.
pub fn restore_prepare(server: &WStr, restore_flags: u32) -> Result<Hcsbc> {
    let mut h = std::ptr::null_mut();
    // SAFETY: a NUL-terminated string and a valid out-pointer.
    let hr = unsafe { CertSrvRestorePrepareW(server.ptr(), restore_flags, &mut h) };
    check(Call::RestorePrepare, hr)?;
    returned_handle(Call::RestorePrepare, h)
}

/// `CertSrvRestoreRegisterW` (`through_file == false`) or
/// `CertSrvRestoreRegisterThroughFile`; `None` passes a NULL `hbc`. An empty restore map
/// passes `rgrstmap` NULL and `crstmap` 0.
pub fn restore_register(h: Option<Hcsbc>, reg: &Registration, through_file: bool) -> Result<()> {
    let opt = |s: &Option<String>| s.as_deref().map(WStr::new);
    let (checkpoint, log, backup_log) = (
        opt(&reg.checkpoint_path),
        opt(&reg.log_path),
        opt(&reg.backup_log_path),
    );
    let ptr = |s: &Option<WStr>| s.as_ref().map_or(std::ptr::null(), WStr::ptr);
    let names: Vec<(WStr, WStr)> = reg
        .restore_map
        .iter()
        .map(|(old, new)| (WStr::new(old), WStr::new(new)))
        .collect();
    // The export only reads the map's strings: the `*mut` of CSEDB_RSTMAPW is the header's.
    let mut map: Vec<CSEDB_RSTMAPW> = names
        .iter()
        .map(|(old, new)| CSEDB_RSTMAPW {
            pwszDatabaseName: old.ptr().cast_mut(),
            pwszNewDatabaseName: new.ptr().cast_mut(),
        })
        .collect();
    let pmap = if map.is_empty() {
        std::ptr::null_mut()
    } else {
        map.as_mut_ptr()
    };
    let crstmap = i32::try_from(map.len()).unwrap_or(i32::MAX);
    let (call, f) = if through_file {
        (
            Call::RestoreRegisterThroughFile,
            CertSrvRestoreRegisterThroughFile as RegisterFn,
        )
    } else {
        (Call::RestoreRegister, CertSrvRestoreRegisterW as RegisterFn)
    };
    // SAFETY: the strings are NULL or NUL-terminated and outlive the call (`checkpoint`,
    // `log`, `backup_log`, `names`); `pmap` is NULL with 0 entries or points to `crstmap`
    // entries (`map`, which also outlives the call).
    let hr = unsafe {
        f(
            hbc(h),
            ptr(&checkpoint),
            ptr(&log),
            pmap,
            crstmap,
            ptr(&backup_log),
            reg.gen_low,
            reg.gen_high,
        )
    };
    check(call, hr)
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

/// `CertSrvRestoreRegisterComplete`; `None` passes a NULL `hbc`.
pub fn restore_register_complete(h: Option<Hcsbc>, restore_state: HRESULT) -> Result<()> {
    // SAFETY: the handle is any value, NULL included (the export checks it).
    check(Call::RestoreRegisterComplete, unsafe {
        CertSrvRestoreRegisterComplete(hbc(h), restore_state.0)
    })
}

/// `CertSrvRestoreEnd`.
pub fn restore_end(h: Hcsbc) -> Result<()> {
    // SAFETY: the handle is any value (the export checks it).
    check(Call::RestoreEnd, unsafe { CertSrvRestoreEnd(h.as_ptr()) })
}

/// `CertSrvServerControlW` with NULL `pcbOut` and `ppbOut` (they are reserved).
pub fn server_control(server: &WStr, control_flags: u32) -> Result<()> {
    // SAFETY: a NUL-terminated string; the optional out-pointers are NULL.
    let hr = unsafe {
        CertSrvServerControlW(
            server.ptr(),
            control_flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    check(Call::ServerControl, hr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::consts::CSBACKUP_TYPE_FULL;

    #[test]
    fn errors_carry_the_hresult_and_the_message() {
        let e = backup_prepare(&WStr::new("NO-SUCH-MACHINE-CALL-RS"), 0, CSBACKUP_TYPE_FULL)
            .unwrap_err();
        assert_eq!(e.call, Call::BackupPrepare);
        assert_eq!(e.hr, HRESULT::RPC_S_SERVER_UNAVAILABLE);
        let detail = e.detail.as_ref().expect("last_error is kept");
        assert_eq!(detail.hresult(), e.hr);
        let prefix = format!("{} failed with {}: ", Call::BackupPrepare, e.hr);
        assert!(e.to_string().starts_with(&prefix), "{e}");
        let stale = Hcsbc::from_raw(0x1234_5678).expect("non-zero");
        assert_eq!(backup_end(stale).unwrap_err().hr, HRESULT::E_HANDLE);
    }
}

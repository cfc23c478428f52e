//! The 18 exports, in header order. Names and signatures follow windows-sys 0.61
//! (`tests/windows_sys.rs` checks them at compile time).
#![allow(non_snake_case)]

use super::backend::backend;
use super::boundary;
use super::entry::handle;
use super::ptr::{read_opt_wstr, read_wstr, require, write};
use crate::api::Registration;
use crate::core::{Call, Error, ListKind, Result, HRESULT};
use crate::session::Hcsbc;
use core::ffi::c_void;

/// `CSEDB_RSTMAPW`: one restore-map entry.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CSEDB_RSTMAPW {
    /// The database name as backed up.
    pub pwszDatabaseName: *mut u16,
    /// The name to restore it as.
    pub pwszNewDatabaseName: *mut u16,
}

/// Most restore-map entries accepted in one call.
pub const MAX_RSTMAP: i32 = 64;

/// The shape shared by the four list functions taking a handle.
///
/// # Safety
/// Pointers are NULL or valid for writes.
unsafe fn list_call(
    kind: ListKind,
    hbc: *const c_void,
    ppwszz: *mut *mut u16,
    pcb: *mut u32,
) -> i32 {
    let call = kind.name();
    boundary(call, || {
        // SAFETY: NULL or valid per contract.
        unsafe {
            write(ppwszz, std::ptr::null_mut());
            write(pcb, 0);
        }
        require(call, "ppwszz", ppwszz)?;
        require(call, "pcbSize", pcb)?;
        let h = handle(call, hbc)?;
        let (p, size) = backend().list(kind, h)?;
        // SAFETY: both checked non-null above.
        unsafe {
            write(ppwszz, p);
            write(pcb, size);
        }
        Ok(())
    })
}

/// `CertSrvIsServerOnlineW`.
///
/// # Safety
/// `pwszservername` is NULL or a NUL-terminated UTF-16 string; `pfserveronline` is NULL or writable.
#[no_mangle]
pub unsafe extern "system" fn CertSrvIsServerOnlineW(
    pwszservername: *const u16,
    pfserveronline: *mut i32,
) -> i32 {
    const CALL: &str = Call::IsServerOnline.name();
    boundary(CALL, || {
        // SAFETY: NULL or writable per contract.
        unsafe { write(pfserveronline, 0) };
        require(CALL, "pfServerOnline", pfserveronline)?;
        // SAFETY: per contract.
        let server = unsafe { read_wstr(CALL, "pwszServerName", pwszservername) }?;
        let online = backend().is_server_online(&server)?;
        // SAFETY: checked non-null.
        unsafe { write(pfserveronline, online as i32) };
        Ok(())
    })
}

/// `CertSrvBackupPrepareW`.
///
/// # Safety
/// `pwszservername` is NULL or a NUL-terminated UTF-16 string; `phbc` is NULL or writable.
#[no_mangle]
pub unsafe extern "system" fn CertSrvBackupPrepareW(
    pwszservername: *const u16,
    grbitjet: u32,
    dwbackupflags: u32,
    phbc: *mut *mut c_void,
) -> i32 {
    const CALL: &str = Call::BackupPrepare.name();
    boundary(CALL, || {
        // SAFETY: NULL or writable per contract.
        unsafe { write(phbc, std::ptr::null_mut()) };
        require(CALL, "phbc", phbc)?;
        // SAFETY: per contract.
        let server = unsafe { read_wstr(CALL, "pwszServerName", pwszservername) }?;
        let h = backend().backup_prepare(&server, grbitjet, dwbackupflags)?;
        // SAFETY: checked non-null.
        unsafe { write(phbc, h.as_ptr()) };
        Ok(())
    })
}

/// `CertSrvBackupGetDatabaseNamesW`.
///
/// # Safety
/// Out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "system" fn CertSrvBackupGetDatabaseNamesW(
    hbc: *const c_void,
    ppwszzattachmentinformation: *mut *mut u16,
    pcbsize: *mut u32,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        list_call(
            ListKind::DatabaseNames,
            hbc,
            ppwszzattachmentinformation,
            pcbsize,
        )
    }
}

/// `CertSrvBackupGetDynamicFileListW`.
///
/// # Safety
/// Out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "system" fn CertSrvBackupGetDynamicFileListW(
    hbc: *const c_void,
    ppwszzfilelist: *mut *mut u16,
    pcbsize: *mut u32,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { list_call(ListKind::DynamicFiles, hbc, ppwszzfilelist, pcbsize) }
}

/// `CertSrvBackupOpenFileW`.
///
/// # Safety
/// `pwszattachmentname` is NULL or a NUL-terminated UTF-16 string; `plifilesize` is NULL or writable.
#[no_mangle]
pub unsafe extern "system" fn CertSrvBackupOpenFileW(
    hbc: *mut c_void,
    pwszattachmentname: *const u16,
    cbreadhintsize: u32,
    plifilesize: *mut i64,
) -> i32 {
    const CALL: &str = Call::BackupOpenFile.name();
    boundary(CALL, || {
        // SAFETY: NULL or writable per contract.
        unsafe { write(plifilesize, 0) };
        require(CALL, "pliFileSize", plifilesize)?;
        // SAFETY: per contract.
        let name = unsafe { read_wstr(CALL, "pwszAttachmentName", pwszattachmentname) }?;
        let h = handle(CALL, hbc)?;
        let size = backend().backup_open_file(h, &name, cbreadhintsize)?;
        // SAFETY: checked non-null.
        unsafe { write(plifilesize, size as i64) };
        Ok(())
    })
}

/// `CertSrvBackupRead`.
///
/// # Safety
/// `pvbuffer` is NULL or valid for `cbbuffer` bytes of writes; `pcbread` is NULL or writable.
#[no_mangle]
pub unsafe extern "system" fn CertSrvBackupRead(
    hbc: *mut c_void,
    pvbuffer: *mut c_void,
    cbbuffer: u32,
    pcbread: *mut u32,
) -> i32 {
    const CALL: &str = Call::BackupRead.name();
    boundary(CALL, || {
        // SAFETY: NULL or writable per contract.
        unsafe { write(pcbread, 0) };
        require(CALL, "pcbRead", pcbread)?;
        require(CALL, "pvBuffer", pvbuffer)?;
        let h = handle(CALL, hbc)?;
        // SAFETY: non-null, and valid for cbbuffer bytes per contract.
        let buf = unsafe { std::slice::from_raw_parts_mut(pvbuffer as *mut u8, cbbuffer as usize) };
        let n = backend().backup_read(h, buf)?;
        // SAFETY: checked non-null.
        unsafe { write(pcbread, n as u32) };
        Ok(())
    })
}

/// `CertSrvBackupClose`.
///
/// # Safety
/// None beyond the handle being any value.
#[no_mangle]
pub unsafe extern "system" fn CertSrvBackupClose(hbc: *mut c_void) -> i32 {
    const CALL: &str = Call::BackupClose.name();
    boundary(CALL, || {
        let h = handle(CALL, hbc)?;
        backend().backup_close(h)
    })
}

/// `CertSrvBackupGetBackupLogsW`.
///
/// # Safety
/// Out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "system" fn CertSrvBackupGetBackupLogsW(
    hbc: *const c_void,
    ppwszzbackuplogfiles: *mut *mut u16,
    pcbsize: *mut u32,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { list_call(ListKind::BackupLogs, hbc, ppwszzbackuplogfiles, pcbsize) }
}

/// `CertSrvBackupTruncateLogs`.
///
/// # Safety
/// None beyond the handle being any value.
#[no_mangle]
pub unsafe extern "system" fn CertSrvBackupTruncateLogs(hbc: *mut c_void) -> i32 {
    const CALL: &str = Call::BackupTruncateLogs.name();
    boundary(CALL, || {
        let h = handle(CALL, hbc)?;
        backend().backup_truncate_logs(h).map(drop)
    })
}

/// `CertSrvBackupEnd`.
///
/// # Safety
/// None beyond the handle being any value.
#[no_mangle]
pub unsafe extern "system" fn CertSrvBackupEnd(hbc: *mut c_void) -> i32 {
    const CALL: &str = Call::BackupEnd.name();
    boundary(CALL, || {
        let h = handle(CALL, hbc)?;
        backend().backup_end(h)
    })
}

/// `CertSrvBackupFree`: frees a list; NULL, unknown and already-freed pointers are ignored.
///
/// # Safety
/// None: the pointer is looked up, never dereferenced unless it is a live list of ours.
#[no_mangle]
pub unsafe extern "system" fn CertSrvBackupFree(pv: *mut c_void) {
    const CALL: &str = Call::BackupFree.name();
    boundary(CALL, || backend().backup_free(pv));
}

/// `CertSrvRestoreGetDatabaseLocationsW`.
///
/// # Safety
/// Out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "system" fn CertSrvRestoreGetDatabaseLocationsW(
    hbc: *const c_void,
    ppwszzdatabaselocationlist: *mut *mut u16,
    pcbsize: *mut u32,
) -> i32 {
    // SAFETY: forwarded contract.
    unsafe {
        list_call(
            ListKind::DatabaseLocations,
            hbc,
            ppwszzdatabaselocationlist,
            pcbsize,
        )
    }
}

/// `CertSrvRestorePrepareW`.
///
/// # Safety
/// `pwszservername` is NULL or a NUL-terminated UTF-16 string; `phbc` is NULL or writable.
#[no_mangle]
pub unsafe extern "system" fn CertSrvRestorePrepareW(
    pwszservername: *const u16,
    dwrestoreflags: u32,
    phbc: *mut *mut c_void,
) -> i32 {
    const CALL: &str = Call::RestorePrepare.name();
    boundary(CALL, || {
        // SAFETY: NULL or writable per contract.
        unsafe { write(phbc, std::ptr::null_mut()) };
        require(CALL, "phbc", phbc)?;
        // SAFETY: per contract.
        let server = unsafe { read_wstr(CALL, "pwszServerName", pwszservername) }?;
        let h = backend().restore_prepare(&server, dwrestoreflags)?;
        // SAFETY: checked non-null.
        unsafe { write(phbc, h.as_ptr()) };
        Ok(())
    })
}

/// Decodes the arguments shared by both registration functions.
///
/// # Safety
/// Strings are NULL or NUL-terminated; `rgrstmap` is NULL or valid for `crstmap` entries.
#[allow(clippy::too_many_arguments)]
unsafe fn registration(
    call: &'static str,
    pwszcheckpointfilepath: *const u16,
    pwszlogpath: *const u16,
    rgrstmap: *const CSEDB_RSTMAPW,
    crstmap: i32,
    pwszbackuplogpath: *const u16,
    genlow: u32,
    genhigh: u32,
) -> Result<Registration> {
    if !(0..=MAX_RSTMAP).contains(&crstmap) {
        return Err(Error::invalid_arg(
            call,
            format!("crstmap {crstmap} is outside 0..={MAX_RSTMAP}"),
        ));
    }
    let mut restore_map = Vec::new();
    if crstmap > 0 {
        require(call, "rgrstmap", rgrstmap)?;
        for i in 0..crstmap as usize {
            // SAFETY: non-null and valid for crstmap entries per contract.
            let e = unsafe { rgrstmap.add(i).read_unaligned() };
            // SAFETY: per contract.
            let old =
                unsafe { read_wstr(call, "rgrstmap[].pwszDatabaseName", e.pwszDatabaseName) }?;
            // SAFETY: per contract.
            let new = unsafe {
                read_wstr(
                    call,
                    "rgrstmap[].pwszNewDatabaseName",
                    e.pwszNewDatabaseName,
                )
            }?;
            restore_map.push((old, new));
        }
    }
    // SAFETY: per contract, for all three.
    unsafe {
        Ok(Registration {
            checkpoint_path: read_opt_wstr(call, "pwszCheckPointFilePath", pwszcheckpointfilepath)?,
            log_path: read_opt_wstr(call, "pwszLogPath", pwszlogpath)?,
            restore_map,
            backup_log_path: read_opt_wstr(call, "pwszBackupLogPath", pwszbackuplogpath)?,
            gen_low: genlow,
            gen_high: genhigh,
        })
    }
}

/// `CertSrvRestoreRegisterW` (needs a local administrator).
///
/// # Safety
/// Strings are NULL or NUL-terminated UTF-16; `rgrstmap` is NULL or valid for `crstmap` entries.
#[no_mangle]
pub unsafe extern "system" fn CertSrvRestoreRegisterW(
    hbc: *mut c_void,
    pwszcheckpointfilepath: *const u16,
    pwszlogpath: *const u16,
    rgrstmap: *mut CSEDB_RSTMAPW,
    crstmap: i32,
    pwszbackuplogpath: *const u16,
    genlow: u32,
    genhigh: u32,
) -> i32 {
    const CALL: &str = Call::RestoreRegister.name();
    boundary(CALL, || {
        // SAFETY: forwarded contract.
        let reg = unsafe {
            registration(
                CALL,
                pwszcheckpointfilepath,
                pwszlogpath,
                rgrstmap,
                crstmap,
                pwszbackuplogpath,
                genlow,
                genhigh,
            )
        }?;
        backend().restore_register(Hcsbc::from_ptr(hbc), &reg, false)
    })
}

/// `CertSrvRestoreRegisterThroughFile` (needs only the restore privilege; no W suffix, as in Certadm.dll).
///
/// # Safety
/// As [`CertSrvRestoreRegisterW`].
#[no_mangle]
pub unsafe extern "system" fn CertSrvRestoreRegisterThroughFile(
    hbc: *mut c_void,
    pwszcheckpointfilepath: *const u16,
    pwszlogpath: *const u16,
    rgrstmap: *mut CSEDB_RSTMAPW,
    crstmap: i32,
    pwszbackuplogpath: *const u16,
    genlow: u32,
    genhigh: u32,
) -> i32 {
    const CALL: &str = Call::RestoreRegisterThroughFile.name();
    boundary(CALL, || {
        // SAFETY: forwarded contract.
        let reg = unsafe {
            registration(
                CALL,
                pwszcheckpointfilepath,
                pwszlogpath,
                rgrstmap,
                crstmap,
                pwszbackuplogpath,
                genlow,
                genhigh,
            )
        }?;
        let h = handle(CALL, hbc)?;
        backend().restore_register(Some(h), &reg, true)
    })
}

/// `CertSrvRestoreRegisterComplete`.
///
/// # Safety
/// None beyond the handle being any value.
#[no_mangle]
pub unsafe extern "system" fn CertSrvRestoreRegisterComplete(
    hbc: *mut c_void,
    hrrestorestate: i32,
) -> i32 {
    const CALL: &str = Call::RestoreRegisterComplete.name();
    boundary(CALL, || {
        backend().restore_register_complete(Hcsbc::from_ptr(hbc), HRESULT(hrrestorestate))
    })
}

/// `CertSrvRestoreEnd`.
///
/// # Safety
/// None beyond the handle being any value.
#[no_mangle]
pub unsafe extern "system" fn CertSrvRestoreEnd(hbc: *mut c_void) -> i32 {
    const CALL: &str = Call::RestoreEnd.name();
    boundary(CALL, || {
        let h = handle(CALL, hbc)?;
        backend().restore_end(h)
    })
}

/// `CertSrvServerControlW`.
///
/// # Safety
/// `pwszservername` is NULL or a NUL-terminated UTF-16 string; `pcbout` and `ppbout` are NULL or writable.
#[no_mangle]
pub unsafe extern "system" fn CertSrvServerControlW(
    pwszservername: *const u16,
    dwcontrolflags: u32,
    pcbout: *mut u32,
    ppbout: *mut *mut u8,
) -> i32 {
    const CALL: &str = Call::ServerControl.name();
    boundary(CALL, || {
        // SAFETY: optional out-parameters, NULL or writable; "the current implementation
        // does not allocate memory to ppbOut".
        unsafe {
            write(pcbout, 0);
            write(ppbout, std::ptr::null_mut());
        }
        // SAFETY: per contract.
        let server = unsafe { read_wstr(CALL, "pwszServerName", pwszservername) }?;
        backend().server_control(&server, dwcontrolflags)
    })
}

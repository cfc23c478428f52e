//! The 18 exports, in header order. Names and signatures follow windows-sys 0.61
//! (`tests/windows_sys.rs` checks them at compile time).
#![allow(non_snake_case)]

use super::backend;
use super::boundary;
use super::ptr::{
    fill, handle, read_opt, read_wstr, require, returning, with_wstr, write, StrUnit,
};
use crate::core::{Call, Error, ListKind, Result, HRESULT};
use crate::session::{Hcsbc, Registration};
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

/// One restore-map entry as a caller passes it: [`CSEDB_RSTMAPW`] here, two UTF-8
/// pointers in the .NET entry set (`dotnet/`).
pub trait RestoreMapEntry: Copy {
    /// The strings' code unit.
    type Unit: StrUnit;
    /// `pwszDatabaseName` and `pwszNewDatabaseName`.
    fn names(&self) -> (*const Self::Unit, *const Self::Unit);
}

impl RestoreMapEntry for CSEDB_RSTMAPW {
    type Unit = u16;
    fn names(&self) -> (*const u16, *const u16) {
        (self.pwszDatabaseName, self.pwszNewDatabaseName)
    }
}

/// Most restore-map entries accepted in one call.
pub const MAX_RSTMAP: i32 = crate::core::limits::RESTORE_MAP_ENTRIES.max as i32;

/// An out-parameter: its name (for `E_POINTER`), the pointer, and the value it holds
/// until the call succeeds.
type Out<T> = (&'static str, *mut T, T);

/// `phbc` of the two Prepare functions: NULL until a context is returned.
fn out_handle(phbc: *mut *mut c_void) -> Out<*mut c_void> {
    ("phbc", phbc, std::ptr::null_mut())
}

/// The shape shared by the functions that take a server name and return one value
/// through an out-parameter (IsServerOnline and the two Prepares): the out-parameter is
/// checked, then the name decoded, then `f` runs on it.
///
/// # Safety
/// `server` is NULL or a NUL-terminated UTF-16 string; `out`'s pointer is NULL or
/// writable.
unsafe fn on_server<T>(
    call: Call,
    server: *const u16,
    (param, out, empty): Out<T>,
    f: impl FnOnce(&str) -> Result<T>,
) -> i32 {
    let call = call.name();
    boundary(call, || {
        // SAFETY: per contract.
        unsafe {
            fill(call, param, out, empty, || {
                with_wstr(call, "pwszServerName", server, f)
            })
        }
    })
}

/// The shape shared by the functions that take only a handle: NULL is `E_HANDLE`.
fn on_handle(call: Call, hbc: *mut c_void, f: impl FnOnce(Hcsbc) -> Result<()>) -> i32 {
    boundary(call.name(), || f(handle(call.name(), hbc)?))
}

/// Defines one of the four list exports: they take a handle and return a list through the
/// same two out-parameters (the list, and its size in bytes), and share one body
/// ([`list_call`]).
macro_rules! list_export {
    ($(#[$doc:meta])* $name:ident($list:ident), $kind:expr) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// Out-pointers are NULL or writable.
        #[unsafe(no_mangle)]
        pub unsafe extern "system" fn $name(
            hbc: *const c_void,
            $list: *mut *mut u16,
            pcbsize: *mut u32,
        ) -> i32 {
            // SAFETY: forwarded contract.
            unsafe { list_call($kind, hbc, $list, pcbsize) }
        }
    };
}

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
#[unsafe(no_mangle)]
pub unsafe extern "system" fn CertSrvIsServerOnlineW(
    pwszservername: *const u16,
    pfserveronline: *mut i32,
) -> i32 {
    let online = |server: &str| Ok(backend().is_server_online(server)? as i32);
    // SAFETY: forwarded contract.
    unsafe {
        on_server(
            Call::IsServerOnline,
            pwszservername,
            ("pfServerOnline", pfserveronline, 0),
            online,
        )
    }
}

/// `CertSrvBackupPrepareW`.
///
/// # Safety
/// `pwszservername` is NULL or a NUL-terminated UTF-16 string; `phbc` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn CertSrvBackupPrepareW(
    pwszservername: *const u16,
    grbitjet: u32,
    dwbackupflags: u32,
    phbc: *mut *mut c_void,
) -> i32 {
    let prepare = |server: &str| {
        Ok(backend()
            .backup_prepare(server, grbitjet, dwbackupflags)?
            .as_ptr())
    };
    // SAFETY: forwarded contract.
    unsafe {
        on_server(
            Call::BackupPrepare,
            pwszservername,
            out_handle(phbc),
            prepare,
        )
    }
}

list_export!(
    /// `CertSrvBackupGetDatabaseNamesW`.
    CertSrvBackupGetDatabaseNamesW(ppwszzattachmentinformation),
    ListKind::DatabaseNames
);

list_export!(
    /// `CertSrvBackupGetDynamicFileListW`.
    CertSrvBackupGetDynamicFileListW(ppwszzfilelist),
    ListKind::DynamicFiles
);

/// `CertSrvBackupOpenFileW`.
///
/// # Safety
/// `pwszattachmentname` is NULL or a NUL-terminated UTF-16 string; `plifilesize` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn CertSrvBackupOpenFileW(
    hbc: *mut c_void,
    pwszattachmentname: *const u16,
    cbreadhintsize: u32,
    plifilesize: *mut i64,
) -> i32 {
    const CALL: &str = Call::BackupOpenFile.name();
    // SAFETY: per contract, the out-parameter is NULL or writable and the string NULL or
    // NUL-terminated.
    unsafe {
        returning(CALL, "pliFileSize", plifilesize, 0, || {
            let name = read_wstr(CALL, "pwszAttachmentName", pwszattachmentname)?;
            let h = handle(CALL, hbc)?;
            Ok(backend().backup_open_file(h, &name, cbreadhintsize)? as i64)
        })
    }
}

/// `CertSrvBackupRead`.
///
/// # Safety
/// `pvbuffer` is NULL or valid for `cbbuffer` bytes of writes; `pcbread` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn CertSrvBackupRead(
    hbc: *mut c_void,
    pvbuffer: *mut c_void,
    cbbuffer: u32,
    pcbread: *mut u32,
) -> i32 {
    const CALL: &str = Call::BackupRead.name();
    // SAFETY: per contract, the out-parameter is NULL or writable, and the buffer, checked
    // non-NULL before it is used, valid for cbbuffer bytes of writes. It is usually
    // uninitialised (malloc, AllocHGlobal), so it is seen as MaybeUninit<u8>, never as u8,
    // and only written below.
    unsafe {
        returning(CALL, "pcbRead", pcbread, 0, || {
            require(CALL, "pvBuffer", pvbuffer)?;
            let h = handle(CALL, hbc)?;
            let buf = std::slice::from_raw_parts_mut(
                pvbuffer.cast::<std::mem::MaybeUninit<u8>>(),
                cbbuffer as usize,
            );
            Ok(backend().backup_read(h, buf)? as u32)
        })
    }
}

/// `CertSrvBackupClose`.
///
/// # Safety
/// None beyond the handle being any value.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn CertSrvBackupClose(hbc: *mut c_void) -> i32 {
    on_handle(Call::BackupClose, hbc, |h| backend().backup_close(h))
}

list_export!(
    /// `CertSrvBackupGetBackupLogsW`.
    CertSrvBackupGetBackupLogsW(ppwszzbackuplogfiles),
    ListKind::BackupLogs
);

/// `CertSrvBackupTruncateLogs`.
///
/// # Safety
/// None beyond the handle being any value.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn CertSrvBackupTruncateLogs(hbc: *mut c_void) -> i32 {
    on_handle(Call::BackupTruncateLogs, hbc, |h| {
        backend().backup_truncate_logs(h).map(drop)
    })
}

/// `CertSrvBackupEnd`.
///
/// # Safety
/// None beyond the handle being any value.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn CertSrvBackupEnd(hbc: *mut c_void) -> i32 {
    on_handle(Call::BackupEnd, hbc, |h| backend().backup_end(h))
}

/// `CertSrvBackupFree`: frees a list; NULL, unknown and already-freed pointers are ignored.
///
/// # Safety
/// None: the pointer is looked up, never dereferenced unless it is a live list of ours.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn CertSrvBackupFree(pv: *mut c_void) {
    const CALL: &str = Call::BackupFree.name();
    boundary(CALL, || backend().backup_free(pv));
}

list_export!(
    /// `CertSrvRestoreGetDatabaseLocationsW`.
    CertSrvRestoreGetDatabaseLocationsW(ppwszzdatabaselocationlist),
    ListKind::DatabaseLocations
);

/// `CertSrvRestorePrepareW`.
///
/// # Safety
/// `pwszservername` is NULL or a NUL-terminated UTF-16 string; `phbc` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn CertSrvRestorePrepareW(
    pwszservername: *const u16,
    dwrestoreflags: u32,
    phbc: *mut *mut c_void,
) -> i32 {
    let prepare = |server: &str| Ok(backend().restore_prepare(server, dwrestoreflags)?.as_ptr());
    // SAFETY: forwarded contract.
    unsafe {
        on_server(
            Call::RestorePrepare,
            pwszservername,
            out_handle(phbc),
            prepare,
        )
    }
}

/// The restore map of a registration (`rgrstmap`, `crstmap`), in UTF-16 (the exports here)
/// or UTF-8 (the .NET entry set): one set of checks for both.
///
/// # Safety
/// `rgrstmap` is NULL or valid for `crstmap` entries, whose strings are NULL or
/// NUL-terminated.
unsafe fn restore_map<M: RestoreMapEntry>(
    call: &'static str,
    rgrstmap: *const M,
    crstmap: i32,
) -> Result<Vec<(String, String)>> {
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
            let (old, new) = unsafe { rgrstmap.add(i).read_unaligned() }.names();
            // SAFETY: per contract, for both.
            let (old, new) = unsafe {
                (
                    M::Unit::read(call, "rgrstmap[].pwszDatabaseName", old)?,
                    M::Unit::read(call, "rgrstmap[].pwszNewDatabaseName", new)?,
                )
            };
            restore_map.push((old, new));
        }
    }
    Ok(restore_map)
}

/// The body of every registration export, in UTF-16 (the two here) or UTF-8 (the .NET
/// entry set): the restore map and the paths decoded, then the registration.
/// `CertSrvRestoreRegisterThroughFile` refuses a NULL `hbc` here; `CertSrvRestoreRegisterW`
/// passes it on, and the safe API says what it should have been.
///
/// # Safety
/// Strings are NULL or NUL-terminated; `rgrstmap` is NULL or valid for `crstmap` entries.
#[allow(clippy::too_many_arguments)]
pub unsafe fn restore_register<M: RestoreMapEntry>(
    through_file: bool,
    hbc: *mut c_void,
    pwszcheckpointfilepath: *const M::Unit,
    pwszlogpath: *const M::Unit,
    rgrstmap: *const M,
    crstmap: i32,
    pwszbackuplogpath: *const M::Unit,
    genlow: u32,
    genhigh: u32,
) -> i32 {
    let call = Call::restore_register(through_file).name();
    boundary(call, || {
        // SAFETY: per contract, the map is NULL or valid for crstmap entries, and every
        // string NULL or NUL-terminated. The map is checked first, then the three paths.
        let reg = unsafe {
            let restore_map = restore_map(call, rgrstmap, crstmap)?;
            Registration {
                checkpoint_path: read_opt(call, "pwszCheckPointFilePath", pwszcheckpointfilepath)?,
                log_path: read_opt(call, "pwszLogPath", pwszlogpath)?,
                restore_map,
                backup_log_path: read_opt(call, "pwszBackupLogPath", pwszbackuplogpath)?,
                gen_low: genlow,
                gen_high: genhigh,
            }
        };
        let h = if through_file {
            Some(handle(call, hbc)?)
        } else {
            Hcsbc::from_ptr(hbc)
        };
        backend().restore_register(h, &reg, through_file)
    })
}

/// Defines one of the two registration exports: they take the same arguments and share
/// one body ([`restore_register`]).
macro_rules! restore_register_export {
    ($(#[$doc:meta])* $name:ident, through_file: $through_file:literal) => {
        $(#[$doc])*
        #[unsafe(no_mangle)]
        pub unsafe extern "system" fn $name(
            hbc: *mut c_void,
            pwszcheckpointfilepath: *const u16,
            pwszlogpath: *const u16,
            rgrstmap: *mut CSEDB_RSTMAPW,
            crstmap: i32,
            pwszbackuplogpath: *const u16,
            genlow: u32,
            genhigh: u32,
        ) -> i32 {
            // SAFETY: forwarded contract.
            unsafe {
                restore_register(
                    $through_file,
                    hbc,
                    pwszcheckpointfilepath,
                    pwszlogpath,
                    rgrstmap,
                    crstmap,
                    pwszbackuplogpath,
                    genlow,
                    genhigh,
                )
            }
        }
    };
}

restore_register_export!(
    /// `CertSrvRestoreRegisterW` (needs a local administrator).
    ///
    /// # Safety
    /// Strings are NULL or NUL-terminated UTF-16; `rgrstmap` is NULL or valid for `crstmap` entries.
    CertSrvRestoreRegisterW,
    through_file: false
);

restore_register_export!(
    /// `CertSrvRestoreRegisterThroughFile` (needs only the restore privilege; no W suffix, as in Certadm.dll).
    ///
    /// # Safety
    /// As [`CertSrvRestoreRegisterW`].
    CertSrvRestoreRegisterThroughFile,
    through_file: true
);

/// `CertSrvRestoreRegisterComplete`.
///
/// # Safety
/// None beyond the handle being any value.
#[unsafe(no_mangle)]
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
#[unsafe(no_mangle)]
pub unsafe extern "system" fn CertSrvRestoreEnd(hbc: *mut c_void) -> i32 {
    on_handle(Call::RestoreEnd, hbc, |h| backend().restore_end(h))
}

/// `CertSrvServerControlW`.
///
/// # Safety
/// `pwszservername` is NULL or a NUL-terminated UTF-16 string; `pcbout` and `ppbout` are NULL or writable.
#[unsafe(no_mangle)]
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

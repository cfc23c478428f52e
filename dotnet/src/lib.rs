//! The .NET entry set of certadm-emu: `libcertadm.so`, for C# code that declares the
//! Certadm functions with `DllImport` and runs on Linux (Mono, .NET Core 3.0 and later,
//! PowerShell 7's `Add-Type`).
//!
//! On Unix those runtimes look up the name as declared (no `A`/`W` suffix probing) and
//! marshal `CharSet.Auto`, `Ansi` and `None` strings, and the strings of a struct without
//! `CharSet`, as UTF-8. So this library exports:
//!
//! * every certbcli function under its **un-suffixed** name (`CertSrvBackupPrepare`, ...),
//!   taking **UTF-8** for every string parameter (server names, attachment names, paths,
//!   the names of [`CSEDB_RSTMAP`]); the lists come back as the same UTF-16 double-NUL
//!   lists the `W` functions return. The names are the call table's
//!   (`certadm_emu::core::Call`): `CertSrv` + the variant name ([`entry`] classifies each
//!   call);
//! * the `W` names, the names without a `W` form and the `certemu_*` control API exactly
//!   as `libcertadm_emu.so` has them, for `CharSet.Unicode` declarations and generated
//!   bindings (CsWin32: `"CERTADM.dll"`, `ExactSpelling = true`). These are the main
//!   crate's own exports, which a cdylib linking it re-exports. The one exception is
//!   `CertSrvRestoreRegisterThroughFile`: it has no `W` form, so here it takes UTF-8
//!   (`build.rs` explains how this library's definition replaces the main crate's).
//!
//! Behaviour is the main crate's in every other respect: each body below decodes its
//! strings and calls the same backend (the emulator in process with `CERTADM_EMU_CONFIG`,
//! or a server with `CERTADM_EMU_SERVER`) through the same boundary, so faults, the trace,
//! the conformance report and error messages are those of the `W` function, which also
//! names the call in them. A string that is not valid UTF-8 gets `E_INVALIDARG`
//! (`COVERAGE.md`, section D), never a guess; the length limit is the `W` functions'
//! (32,767 UTF-16 code units).
//!
//! This crate is an ABI boundary: all of its code is `unsafe` pointer handling around
//! `certadm_emu::abi::entry`.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![allow(non_snake_case)]

use certadm_emu::abi as main;
use certadm_emu::abi::entry::{
    backend, boundary, handle, read_str, require, restore_register, write, Call, RestoreMapEntry,
    Result,
};
use core::ffi::{c_char, c_void};

/// How this library exports a function of the call table under its un-suffixed name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// An export of this crate named `CertSrv` + the variant name, taking UTF-8 strings.
    Utf8,
    /// An export of this crate named `CertSrv` + the variant name that calls the `W`
    /// export: the four list functions, which take no string.
    AliasOfW,
    /// The main crate's export, re-exported: the function has no `W` form and no string.
    Shared,
}

/// How `call` is exported under its un-suffixed name. Exhaustive: a new row of the call
/// table does not compile here until it is classified (and exported).
pub const fn entry(call: Call) -> Entry {
    match call {
        Call::IsServerOnline
        | Call::BackupPrepare
        | Call::BackupOpenFile
        | Call::RestorePrepare
        | Call::RestoreRegister
        | Call::RestoreRegisterThroughFile
        | Call::ServerControl => Entry::Utf8,
        Call::BackupGetDatabaseNames
        | Call::BackupGetDynamicFileList
        | Call::BackupGetBackupLogs
        | Call::RestoreGetDatabaseLocations => Entry::AliasOfW,
        Call::BackupRead
        | Call::BackupClose
        | Call::BackupTruncateLogs
        | Call::BackupEnd
        | Call::BackupFree
        | Call::RestoreRegisterComplete
        | Call::RestoreEnd => Entry::Shared,
    }
}

/// `CSEDB_RSTMAP` as a .NET struct without `CharSet` marshals it on Unix: two UTF-8
/// `char *` (the layout of `CSEDB_RSTMAPW`, 16 bytes on x64).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CSEDB_RSTMAP {
    /// The database name as backed up (UTF-8).
    pub pszDatabaseName: *mut c_char,
    /// The name to restore it as (UTF-8).
    pub pszNewDatabaseName: *mut c_char,
}

/// Reads a UTF-8 argument (`E_POINTER` for NULL, `E_INVALIDARG` for bad UTF-8).
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn utf8(call: &'static str, param: &'static str, p: *const c_char) -> Result<String> {
    // SAFETY: forwarded contract.
    unsafe { read_str(call, param, p.cast()) }
}

/// An export of this crate: `#[export_name]` is `CertSrv` + the call table's variant
/// name, `CALL` (the name errors and the trace use) is that call's, and [`entry`] must
/// say the call is exported here as `$kind` (checked at compile time).
macro_rules! export {
    (
        $(#[$doc:meta])*
        $kind:ident $variant:ident fn $rust:ident($($arg:ident: $ty:ty),* $(,)?) $body:block
    ) => {
        $(#[$doc])*
        #[export_name = concat!("CertSrv", stringify!($variant))]
        pub unsafe extern "system" fn $rust($($arg: $ty),*) -> i32 {
            const _: () = assert!(matches!(entry(Call::$variant), Entry::$kind));
            #[allow(dead_code)]
            const CALL: &str = Call::$variant.name();
            $body
        }
    };
}

/// The un-suffixed name of a list function: the `W` function itself (no string in, a
/// UTF-16 list out).
macro_rules! list_alias {
    ($(#[$doc:meta])* $variant:ident fn $rust:ident => $w:ident) => {
        export! {
            $(#[$doc])*
            ///
            /// # Safety
            /// Out-pointers are NULL or writable.
            AliasOfW $variant fn $rust(hbc: *const c_void, ppwszz: *mut *mut u16, pcbsize: *mut u32) {
                // SAFETY: forwarded contract.
                unsafe { main::$w(hbc, ppwszz, pcbsize) }
            }
        }
    };
}

export! {
    /// `CertSrvIsServerOnline` (UTF-8 `pwszServerName`).
    ///
    /// # Safety
    /// `pszservername` is NULL or NUL-terminated; `pfserveronline` is NULL or writable.
    Utf8 IsServerOnline fn CertSrvIsServerOnline(pszservername: *const c_char, pfserveronline: *mut i32) {
        boundary(CALL, || {
            // SAFETY: NULL or writable per contract.
            unsafe { write(pfserveronline, 0) };
            require(CALL, "pfServerOnline", pfserveronline)?;
            // SAFETY: per contract.
            let server = unsafe { utf8(CALL, "pwszServerName", pszservername) }?;
            let online = backend().is_server_online(&server)?;
            // SAFETY: checked non-null.
            unsafe { write(pfserveronline, online as i32) };
            Ok(())
        })
    }
}

export! {
    /// `CertSrvBackupPrepare` (UTF-8 `pwszServerName`).
    ///
    /// # Safety
    /// `pszservername` is NULL or NUL-terminated; `phbc` is NULL or writable.
    Utf8 BackupPrepare fn CertSrvBackupPrepare(
        pszservername: *const c_char,
        grbitjet: u32,
        dwbackupflags: u32,
        phbc: *mut *mut c_void,
    ) {
        boundary(CALL, || {
            // SAFETY: NULL or writable per contract.
            unsafe { write(phbc, std::ptr::null_mut()) };
            require(CALL, "phbc", phbc)?;
            // SAFETY: per contract.
            let server = unsafe { utf8(CALL, "pwszServerName", pszservername) }?;
            let h = backend().backup_prepare(&server, grbitjet, dwbackupflags)?;
            // SAFETY: checked non-null.
            unsafe { write(phbc, h.as_ptr()) };
            Ok(())
        })
    }
}

list_alias! {
    /// `CertSrvBackupGetDatabaseNames`: `CertSrvBackupGetDatabaseNamesW`.
    BackupGetDatabaseNames fn CertSrvBackupGetDatabaseNames => CertSrvBackupGetDatabaseNamesW
}

list_alias! {
    /// `CertSrvBackupGetDynamicFileList`: `CertSrvBackupGetDynamicFileListW`.
    BackupGetDynamicFileList fn CertSrvBackupGetDynamicFileList => CertSrvBackupGetDynamicFileListW
}

export! {
    /// `CertSrvBackupOpenFile` (UTF-8 `pwszAttachmentName`).
    ///
    /// # Safety
    /// `pszattachmentname` is NULL or NUL-terminated; `plifilesize` is NULL or writable.
    Utf8 BackupOpenFile fn CertSrvBackupOpenFile(
        hbc: *mut c_void,
        pszattachmentname: *const c_char,
        cbreadhintsize: u32,
        plifilesize: *mut i64,
    ) {
        boundary(CALL, || {
            // SAFETY: NULL or writable per contract.
            unsafe { write(plifilesize, 0) };
            require(CALL, "pliFileSize", plifilesize)?;
            // SAFETY: per contract.
            let name = unsafe { utf8(CALL, "pwszAttachmentName", pszattachmentname) }?;
            let h = handle(CALL, hbc)?;
            let size = backend().backup_open_file(h, &name, cbreadhintsize)?;
            // SAFETY: checked non-null.
            unsafe { write(plifilesize, size as i64) };
            Ok(())
        })
    }
}

list_alias! {
    /// `CertSrvBackupGetBackupLogs`: `CertSrvBackupGetBackupLogsW`.
    BackupGetBackupLogs fn CertSrvBackupGetBackupLogs => CertSrvBackupGetBackupLogsW
}

list_alias! {
    /// `CertSrvRestoreGetDatabaseLocations`: `CertSrvRestoreGetDatabaseLocationsW`.
    RestoreGetDatabaseLocations fn CertSrvRestoreGetDatabaseLocations => CertSrvRestoreGetDatabaseLocationsW
}

export! {
    /// `CertSrvRestorePrepare` (UTF-8 `pwszServerName`).
    ///
    /// # Safety
    /// `pszservername` is NULL or NUL-terminated; `phbc` is NULL or writable.
    Utf8 RestorePrepare fn CertSrvRestorePrepare(
        pszservername: *const c_char,
        dwrestoreflags: u32,
        phbc: *mut *mut c_void,
    ) {
        boundary(CALL, || {
            // SAFETY: NULL or writable per contract.
            unsafe { write(phbc, std::ptr::null_mut()) };
            require(CALL, "phbc", phbc)?;
            // SAFETY: per contract.
            let server = unsafe { utf8(CALL, "pwszServerName", pszservername) }?;
            let h = backend().restore_prepare(&server, dwrestoreflags)?;
            // SAFETY: checked non-null.
            unsafe { write(phbc, h.as_ptr()) };
            Ok(())
        })
    }
}

impl RestoreMapEntry for CSEDB_RSTMAP {
    type Unit = u8;
    fn names(&self) -> (*const u8, *const u8) {
        (self.pszDatabaseName.cast(), self.pszNewDatabaseName.cast())
    }
}

/// One of the two UTF-8 registration exports: the same arguments, and one body (the main
/// crate's `restore_register`, which the `W` exports share).
macro_rules! restore_register_export {
    ($(#[$doc:meta])* $variant:ident fn $name:ident, through_file: $through_file:literal) => {
        export! {
            $(#[$doc])*
            Utf8 $variant fn $name(
                hbc: *mut c_void,
                pszcheckpointfilepath: *const c_char,
                pszlogpath: *const c_char,
                rgrstmap: *mut CSEDB_RSTMAP,
                crstmap: i32,
                pszbackuplogpath: *const c_char,
                genlow: u32,
                genhigh: u32,
            ) {
                // SAFETY: forwarded contract.
                unsafe {
                    restore_register::<CSEDB_RSTMAP>(
                        $through_file,
                        hbc,
                        pszcheckpointfilepath.cast(),
                        pszlogpath.cast(),
                        rgrstmap,
                        crstmap,
                        pszbackuplogpath.cast(),
                        genlow,
                        genhigh,
                    )
                }
            }
        }
    };
}

restore_register_export!(
    /// `CertSrvRestoreRegister` (UTF-8 paths and restore map; needs a local administrator).
    ///
    /// # Safety
    /// Strings are NULL or NUL-terminated; `rgrstmap` is NULL or valid for `crstmap` entries.
    RestoreRegister fn CertSrvRestoreRegister,
    through_file: false
);

restore_register_export!(
    /// `CertSrvRestoreRegisterThroughFile` with UTF-8 strings: this library's definition
    /// of the name, in place of the main crate's UTF-16 one (see `build.rs`).
    ///
    /// # Safety
    /// As [`CertSrvRestoreRegister`].
    RestoreRegisterThroughFile fn CertSrvRestoreRegisterThroughFile,
    through_file: true
);

export! {
    /// `CertSrvServerControl` (UTF-8 `pwszServerName`).
    ///
    /// # Safety
    /// `pszservername` is NULL or NUL-terminated; `pcbout` and `ppbout` are NULL or writable.
    Utf8 ServerControl fn CertSrvServerControl(
        pszservername: *const c_char,
        dwcontrolflags: u32,
        pcbout: *mut u32,
        ppbout: *mut *mut u8,
    ) {
        boundary(CALL, || {
            // SAFETY: optional out-parameters, NULL or writable.
            unsafe {
                write(pcbout, 0);
                write(ppbout, std::ptr::null_mut());
            }
            // SAFETY: per contract.
            let server = unsafe { utf8(CALL, "pwszServerName", pszservername) }?;
            backend().server_control(&server, dwcontrolflags)
        })
    }
}

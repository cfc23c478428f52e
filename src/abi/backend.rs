//! Where a certbcli call goes: one trait ([`Certbcli`]) implemented once in process
//! ([`InProcess`], the safe API) and once for a server (`Server`, in the sibling module
//! `forward`). The parent module chooses one per process (`abi::backend`), and the exports
//! make their call on it.

use crate::api;
use crate::core::{ListKind, Result, HRESULT};
use crate::session::{Hcsbc, Registration};
use core::ffi::c_void;
use std::mem::MaybeUninit;

/// Declares [`Certbcli`] and its in-process implementation [`InProcess`] from one list:
/// each method's signature once, with the [`crate::api`] function that implements it here.
macro_rules! certbcli {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty => $api:ident; )*) => {
        /// The certbcli operations with Rust types, after the ABI's pointer checks. Public
        /// (through the module `entry`) for the exports of another cdylib built on this
        /// crate.
        pub trait Certbcli: Sync {
            $( $(#[$doc])* fn $name(&self, $($arg: $ty),*) -> $ret; )*
        }

        /// The emulator in this process ([`crate::api`]).
        pub(crate) struct InProcess;

        impl Certbcli for InProcess {
            $( fn $name(&self, $($arg: $ty),*) -> $ret { api::$api($($arg),*) } )*
        }
    };
}

certbcli! {
    /// `CertSrvIsServerOnlineW`.
    fn is_server_online(server: &str) -> Result<bool> => is_server_online;
    /// `CertSrvBackupPrepareW`.
    fn backup_prepare(server: &str, grbit_jet: u32, backup_flags: u32) -> Result<Hcsbc> => backup_prepare;
    /// One of the four list functions: a buffer of this process that
    /// [`Certbcli::backup_free`] releases, and `*pcbSize`.
    fn list(kind: ListKind, h: Hcsbc) -> Result<(*mut u16, u32)> => list_for_client;
    /// `CertSrvBackupOpenFileW`: the file size.
    fn backup_open_file(h: Hcsbc, name: &str, read_hint: u32) -> Result<u64> => backup_open_file;
    /// `CertSrvBackupRead`: the bytes read. `buf` is the caller's memory, usually
    /// uninitialised: it is only written.
    fn backup_read(h: Hcsbc, buf: &mut [MaybeUninit<u8>]) -> Result<usize> => backup_read;
    /// `CertSrvBackupClose`.
    fn backup_close(h: Hcsbc) -> Result<()> => backup_close;
    /// `CertSrvBackupTruncateLogs`: the generations deleted.
    fn backup_truncate_logs(h: Hcsbc) -> Result<Vec<u32>> => backup_truncate_logs;
    /// `CertSrvBackupEnd`.
    fn backup_end(h: Hcsbc) -> Result<()> => backup_end;
    /// `CertSrvBackupFree`.
    fn backup_free(pv: *mut c_void) -> Result<()> => backup_free;
    /// `CertSrvRestorePrepareW`.
    fn restore_prepare(server: &str, restore_flags: u32) -> Result<Hcsbc> => restore_prepare;
    /// `CertSrvRestoreRegisterW`, or `CertSrvRestoreRegisterThroughFile` if `through_file`.
    fn restore_register(h: Option<Hcsbc>, reg: &Registration, through_file: bool) -> Result<()> => restore_register;
    /// `CertSrvRestoreRegisterComplete`.
    fn restore_register_complete(h: Option<Hcsbc>, restore_state: HRESULT) -> Result<()> => restore_register_complete;
    /// `CertSrvRestoreEnd`.
    fn restore_end(h: Hcsbc) -> Result<()> => restore_end;
    /// `CertSrvServerControlW`.
    fn server_control(server: &str, control_flags: u32) -> Result<()> => server_control;
}

//! Where a certbcli call goes: one trait ([`Certbcli`]) implemented once in process
//! ([`InProcess`], the safe API) and once for a server (`Server`, in the sibling module
//! `forward`). The parent module chooses one per process (`abi::backend`), and the exports
//! make their call on it.

use crate::api;
use crate::core::{ListKind, Result, HRESULT};
use crate::session::{Hcsbc, Registration};
use core::ffi::c_void;
use std::mem::MaybeUninit;

/// The certbcli operations with Rust types, after the ABI's pointer checks. Public (through
/// the module `entry`) for the exports of another cdylib built on this crate.
pub trait Certbcli: Sync {
    /// `CertSrvIsServerOnlineW`.
    fn is_server_online(&self, server: &str) -> Result<bool>;
    /// `CertSrvBackupPrepareW`.
    fn backup_prepare(&self, server: &str, grbit_jet: u32, backup_flags: u32) -> Result<Hcsbc>;
    /// One of the four list functions: a buffer of this process that
    /// [`Certbcli::backup_free`] releases, and `*pcbSize`.
    fn list(&self, kind: ListKind, h: Hcsbc) -> Result<(*mut u16, u32)>;
    /// `CertSrvBackupOpenFileW`: the file size.
    fn backup_open_file(&self, h: Hcsbc, name: &str, read_hint: u32) -> Result<u64>;
    /// `CertSrvBackupRead`: the bytes read. `buf` is the caller's memory, usually
    /// uninitialised: it is only written.
    fn backup_read(&self, h: Hcsbc, buf: &mut [MaybeUninit<u8>]) -> Result<usize>;
    /// `CertSrvBackupClose`.
    fn backup_close(&self, h: Hcsbc) -> Result<()>;
    /// `CertSrvBackupTruncateLogs`: the generations deleted.
    fn backup_truncate_logs(&self, h: Hcsbc) -> Result<Vec<u32>>;
    /// `CertSrvBackupEnd`.
    fn backup_end(&self, h: Hcsbc) -> Result<()>;
    /// `CertSrvBackupFree`.
    fn backup_free(&self, pv: *mut c_void) -> Result<()>;
    /// `CertSrvRestorePrepareW`.
    fn restore_prepare(&self, server: &str, restore_flags: u32) -> Result<Hcsbc>;
    /// `CertSrvRestoreRegisterW`, or `CertSrvRestoreRegisterThroughFile` if `through_file`.
    fn restore_register(
        &self,
        h: Option<Hcsbc>,
        reg: &Registration,
        through_file: bool,
    ) -> Result<()>;
    /// `CertSrvRestoreRegisterComplete`.
    fn restore_register_complete(&self, h: Option<Hcsbc>, restore_state: HRESULT) -> Result<()>;
    /// `CertSrvRestoreEnd`.
    fn restore_end(&self, h: Hcsbc) -> Result<()>;
    /// `CertSrvServerControlW`.
    fn server_control(&self, server: &str, control_flags: u32) -> Result<()>;
}

/// The emulator in this process ([`crate::api`]).
pub(crate) struct InProcess;

impl Certbcli for InProcess {
    fn is_server_online(&self, server: &str) -> Result<bool> {
        api::is_server_online(server)
    }
    fn backup_prepare(&self, server: &str, grbit_jet: u32, backup_flags: u32) -> Result<Hcsbc> {
        api::backup_prepare(server, grbit_jet, backup_flags)
    }
    fn list(&self, kind: ListKind, h: Hcsbc) -> Result<(*mut u16, u32)> {
        api::list_for_client(kind, h)
    }
    fn backup_open_file(&self, h: Hcsbc, name: &str, read_hint: u32) -> Result<u64> {
        api::backup_open_file(h, name, read_hint)
    }
    fn backup_read(&self, h: Hcsbc, buf: &mut [MaybeUninit<u8>]) -> Result<usize> {
        api::backup_read(h, buf)
    }
    fn backup_close(&self, h: Hcsbc) -> Result<()> {
        api::backup_close(h)
    }
    fn backup_truncate_logs(&self, h: Hcsbc) -> Result<Vec<u32>> {
        api::backup_truncate_logs(h)
    }
    fn backup_end(&self, h: Hcsbc) -> Result<()> {
        api::backup_end(h)
    }
    fn backup_free(&self, pv: *mut c_void) -> Result<()> {
        api::backup_free(pv)
    }
    fn restore_prepare(&self, server: &str, restore_flags: u32) -> Result<Hcsbc> {
        api::restore_prepare(server, restore_flags)
    }
    fn restore_register(
        &self,
        h: Option<Hcsbc>,
        reg: &Registration,
        through_file: bool,
    ) -> Result<()> {
        api::restore_register(h, reg, through_file)
    }
    fn restore_register_complete(&self, h: Option<Hcsbc>, restore_state: HRESULT) -> Result<()> {
        api::restore_register_complete(h, restore_state)
    }
    fn restore_end(&self, h: Hcsbc) -> Result<()> {
        api::restore_end(h)
    }
    fn server_control(&self, server: &str, control_flags: u32) -> Result<()> {
        api::server_control(server, control_flags)
    }
}

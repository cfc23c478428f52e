//! `HCSBC` handles, the per-host session table, and the backup and restore
//! session state machines.
#![forbid(unsafe_code)]

pub mod backup;
pub(crate) mod handle;
pub(crate) mod restore;
pub(crate) mod table;

pub(crate) use backup::{BackupKind, BackupSession, LiveBackup};
pub use handle::Hcsbc;
pub use restore::Registration;
pub(crate) use restore::RestoreSession;
pub(crate) use table::SessionTable;

/// A session behind a handle.
#[derive(Debug)]
pub(crate) enum Session {
    /// From `CertSrvBackupPrepareW`.
    Backup(BackupSession),
    /// From `CertSrvRestorePrepareW`.
    Restore(RestoreSession),
}

/// Moves the state out of `slot`, runs the transition `f` on it and stores the state `f`
/// returns: transitions consume the state they leave. `hole` fills the slot meanwhile
/// (and stays there if `f` panics).
fn transition<S>(slot: &mut S, hole: S, f: impl FnOnce(S) -> S) {
    let old = std::mem::replace(slot, hole);
    *slot = f(old);
}

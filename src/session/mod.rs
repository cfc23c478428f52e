//! `HCSBC` handles, the per-host session table, and the backup and restore
//! session state machines.

pub mod backup;
pub mod handle;
pub mod restore;
pub mod table;

pub use backup::{BackupKind, BackupSession};
pub use handle::{HandleParts, Hcsbc};
pub use restore::RestoreSession;
pub use table::SessionTable;

/// A session behind a handle.
#[derive(Debug)]
pub enum Session {
    /// From `CertSrvBackupPrepareW`.
    Backup(BackupSession),
    /// From `CertSrvRestorePrepareW`.
    Restore(RestoreSession),
}

//! The restore session (spec §5.13–§5.17): Prepared ─ Registered ─ Completed ─ Ended.

/// One restore session.
#[derive(Debug, Clone)]
pub struct RestoreSession {
    /// `CSRESTORE_TYPE_FULL` was passed (else an incremental set).
    pub full: bool,
    /// The client that prepared it.
    pub client: u64,
    /// A registration was made through this handle.
    pub registered: bool,
    /// `CertSrvRestoreRegisterComplete` was called through this handle.
    pub completed: bool,
}

impl RestoreSession {
    /// A new session.
    pub fn new(full: bool, client: u64) -> Self {
        RestoreSession {
            full,
            client,
            registered: false,
            completed: false,
        }
    }
}

//! The one error type. Every variant maps to exactly one HRESULT
//! (`Recovery` and `Injected` carry theirs), and its message says what the
//! client did, in what state, and what it can do instead.

use super::hresult::HRESULT;
use std::sync::Arc;

/// Why a hard recovery at service start refused the restored files (issue: restore side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryFailure {
    /// A log generation the chain needs is absent (`JET_errMissingLogFile`).
    MissingLogFile,
    /// Logs of the registered range genLow..genHigh are missing (`JET_errMissingRestoreLogFiles`).
    MissingRestoreLogFiles,
    /// A log belongs to another database or history (`JET_errBadLogSignature`).
    BadLogSignature,
    /// The database belongs to another CA (`JET_errBadDbSignature`).
    BadDbSignature,
    /// The database is not the one that was backed up (`JET_errRestoreOfNonBackupDatabase`).
    RestoreOfNonBackupDatabase,
    /// A log file fails its checksum (`JET_errLogFileCorrupt`).
    LogFileCorrupt,
    /// The database fails its checksum (`JET_errDatabaseCorrupted`).
    DatabaseCorrupted,
}

impl RecoveryFailure {
    /// The ESE HRESULT for this failure.
    pub fn hresult(self) -> HRESULT {
        match self {
            RecoveryFailure::MissingLogFile => HRESULT::JET_errMissingLogFile,
            RecoveryFailure::MissingRestoreLogFiles => HRESULT::JET_errMissingRestoreLogFiles,
            RecoveryFailure::BadLogSignature => HRESULT::JET_errBadLogSignature,
            RecoveryFailure::BadDbSignature => HRESULT::JET_errBadDbSignature,
            RecoveryFailure::RestoreOfNonBackupDatabase => {
                HRESULT::JET_errRestoreOfNonBackupDatabase
            }
            RecoveryFailure::LogFileCorrupt => HRESULT::JET_errLogFileCorrupt,
            RecoveryFailure::DatabaseCorrupted => HRESULT::JET_errDatabaseCorrupted,
        }
    }
}

/// Which way a path was refused (see `machine::path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    /// Relative, empty or malformed (`ERROR_BAD_PATHNAME`).
    Malformed,
    /// Device name, alternate data stream or forbidden character (`ERROR_INVALID_NAME`).
    InvalidName,
    /// Another host, or a share that is not an administrative drive share (`ERROR_BAD_NETPATH`).
    OtherHost,
    /// `..` would climb above the drive root (`E_ACCESSDENIED`).
    Escapes,
    /// A symbolic link beneath the machine root, which the emulator never follows
    /// (`E_ACCESSDENIED`, as a path leaving the root).
    Symlink,
}

/// An emulator error: what went wrong, in the client's terms.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A required pointer argument was NULL (`E_POINTER`).
    #[error("{call}: parameter {param} is NULL")]
    NullPointer {
        /// The function.
        call: &'static str,
        /// The parameter name as in certbcli.h.
        param: &'static str,
    },
    /// A flag or value is outside what the function accepts (`E_INVALIDARG`).
    #[error("{call}: {why}")]
    InvalidArg {
        /// The function.
        call: &'static str,
        /// What is wrong and what is allowed.
        why: String,
    },
    /// The handle is NULL, forged, stale, or of the wrong kind (`E_HANDLE`).
    #[error("{call}: invalid handle {handle:#x}: {why}")]
    InvalidHandle {
        /// The function.
        call: &'static str,
        /// The handle value as passed.
        handle: usize,
        /// Why it is not valid.
        why: String,
    },
    /// The call is out of sequence for the session (`E_UNEXPECTED`).
    #[error("{call}: out of sequence: {why}")]
    Sequence {
        /// The function.
        call: &'static str,
        /// The session state and the legal next calls.
        why: String,
    },
    /// ESE backup sequencing, e.g. database names in a logs-only session (`JET_errInvalidBackupSequence`).
    #[error("{call}: {why}")]
    InvalidBackupSequence {
        /// The function.
        call: &'static str,
        /// Explanation.
        why: String,
    },
    /// An incremental backup without a prior full backup (`JET_errMissingFullBackup`).
    #[error("{call}: {why}")]
    MissingFullBackup {
        /// The function.
        call: &'static str,
        /// Explanation.
        why: String,
    },
    /// Another backup session is active on this CA (`JET_errBackupInProgress`).
    #[error("{call}: {why}")]
    BackupInProgress {
        /// The function.
        call: &'static str,
        /// Explanation.
        why: String,
    },
    /// A restore is registered and not yet completed (`JET_errRestoreInProgress`).
    #[error("{call}: {why}")]
    RestoreInProgress {
        /// The function.
        call: &'static str,
        /// Explanation.
        why: String,
    },
    /// Missing privilege, role or interface flag (`E_ACCESSDENIED`).
    #[error("{call}: access denied: {why}")]
    AccessDenied {
        /// The function.
        call: &'static str,
        /// Which privilege, role or flag.
        why: String,
    },
    /// The CA service is stopped or the host is unknown (`RPC_S_SERVER_UNAVAILABLE`).
    #[error("{call}: server {server:?} unavailable: {why}")]
    ServerUnavailable {
        /// The function.
        call: &'static str,
        /// The server name as passed.
        server: String,
        /// Why.
        why: String,
    },
    /// The CA shut down while this session was open (`RPC_E_DISCONNECTED`).
    #[error(
        "{call}: the CA service stopped while this session was open; only End is accepted now"
    )]
    Disconnected {
        /// The function.
        call: &'static str,
    },
    /// The CA is suspended for a database restore (`CERTSRV_E_SERVER_SUSPENDED`).
    #[error("{call}: {why}")]
    Suspended {
        /// The function.
        call: &'static str,
        /// Why.
        why: String,
    },
    /// No such file, or no CA on the host (`ERROR_FILE_NOT_FOUND`).
    #[error("{call}: {why}")]
    FileNotFound {
        /// The function.
        call: &'static str,
        /// Which name and what was expected.
        why: String,
    },
    /// A file of the running CA was changed underneath it (`ERROR_SHARING_VIOLATION`).
    #[error("{call}: {why}")]
    SharingViolation {
        /// The function.
        call: &'static str,
        /// Which file.
        why: String,
    },
    /// Too many sessions open on one CA (`CERTSRV_E_NO_DB_SESSIONS`).
    #[error(
        "{call}: too many sessions open on this CA ({limit}); End the ones you no longer need"
    )]
    TooManySessions {
        /// The function.
        call: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A Windows path was refused (code depends on [`PathRefusal`]).
    #[error("path {path:?} refused: {why}")]
    Path {
        /// The kind of refusal.
        kind: PathRefusal,
        /// The path as given.
        path: String,
        /// Why.
        why: String,
    },
    /// A machine or CA name breaks the Windows naming rules (`ERROR_INVALID_NAME`).
    #[error("{what} {name:?} refused: {why}")]
    InvalidName {
        /// Which name (`NetBIOS name`, `DNS name`, `CA name`).
        what: &'static str,
        /// The name as given.
        name: String,
        /// The rule it breaks.
        why: String,
    },
    /// A server name is already registered in this process (`ERROR_ALREADY_EXISTS`).
    #[error("server name {name:?} is already used by another emulated machine in this process; pick a unique name")]
    DuplicateServerName {
        /// The name.
        name: String,
    },
    /// Hard or soft recovery refused the files (an ESE code).
    #[error("recovery failed ({}): {why}", .failure.hresult())]
    Recovery {
        /// The ESE failure.
        failure: RecoveryFailure,
        /// The file and the check that failed.
        why: String,
    },
    /// A host I/O failure on the emulated disk.
    #[error("{what}: {source}")]
    Io {
        /// What the emulator was doing.
        what: String,
        /// The host error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The client completed its restore registration with a failure code; the CA does not recover.
    #[error("start: the registered restore was completed with failure {hr}; Certificate Services does not recover it. Register the restore again, or clear the registration")]
    RestoreReportedFailure {
        /// The `hrRestoreState` the client passed to `CertSrvRestoreRegisterComplete`.
        hr: HRESULT,
    },
    /// A fault injected by a test's schedule.
    #[error("{call}: injected fault {hr}")]
    Injected {
        /// The function.
        call: &'static str,
        /// The HRESULT the schedule asked for.
        hr: HRESULT,
    },
    /// A call forwarded to a certadm-emu server (`CERTADM_EMU_SERVER`) failed there, or
    /// the server could not be reached: the server's HRESULT and message.
    #[error("{message}")]
    Remote {
        /// The function.
        call: &'static str,
        /// The HRESULT the server returned (`RPC_S_SERVER_UNAVAILABLE` when it cannot be reached).
        hr: HRESULT,
        /// The server's message (it names the call).
        message: String,
    },
    /// The emulator panicked inside a call (`E_UNEXPECTED`); this is an emulator bug.
    #[error("{call}: internal emulator panic: {message} (please report this)")]
    Panic {
        /// The function.
        call: &'static str,
        /// The panic payload.
        message: String,
    },
}

impl Error {
    /// The HRESULT the ABI returns for this error.
    pub fn hresult(&self) -> HRESULT {
        match self {
            Error::NullPointer { .. } => HRESULT::E_POINTER,
            Error::InvalidArg { .. } => HRESULT::E_INVALIDARG,
            Error::InvalidHandle { .. } => HRESULT::E_HANDLE,
            Error::Sequence { .. } => HRESULT::E_UNEXPECTED,
            Error::InvalidBackupSequence { .. } => HRESULT::JET_errInvalidBackupSequence,
            Error::MissingFullBackup { .. } => HRESULT::JET_errMissingFullBackup,
            Error::BackupInProgress { .. } => HRESULT::JET_errBackupInProgress,
            Error::RestoreInProgress { .. } => HRESULT::JET_errRestoreInProgress,
            Error::AccessDenied { .. } => HRESULT::E_ACCESSDENIED,
            Error::ServerUnavailable { .. } => HRESULT::RPC_S_SERVER_UNAVAILABLE,
            Error::Disconnected { .. } => HRESULT::RPC_E_DISCONNECTED,
            Error::Suspended { .. } => HRESULT::CERTSRV_E_SERVER_SUSPENDED,
            Error::FileNotFound { .. } => HRESULT::ERROR_FILE_NOT_FOUND,
            Error::SharingViolation { .. } => HRESULT::ERROR_SHARING_VIOLATION,
            Error::TooManySessions { .. } => HRESULT::CERTSRV_E_NO_DB_SESSIONS,
            Error::Path { kind, .. } => match kind {
                PathRefusal::Malformed => HRESULT::ERROR_BAD_PATHNAME,
                PathRefusal::InvalidName => HRESULT::ERROR_INVALID_NAME,
                PathRefusal::OtherHost => HRESULT::ERROR_BAD_NETPATH,
                PathRefusal::Escapes | PathRefusal::Symlink => HRESULT::E_ACCESSDENIED,
            },
            Error::InvalidName { .. } => HRESULT::ERROR_INVALID_NAME,
            Error::DuplicateServerName { .. } => HRESULT::ERROR_ALREADY_EXISTS,
            Error::Recovery { failure, .. } => failure.hresult(),
            Error::Io { source, .. } => io_hresult(source),
            Error::Injected { hr, .. } => *hr,
            Error::RestoreReportedFailure { hr } => *hr,
            Error::Remote { hr, .. } => *hr,
            Error::Panic { .. } => HRESULT::E_UNEXPECTED,
        }
    }

    /// Wraps a host I/O error with what the emulator was doing.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source: Arc::new(source),
        }
    }

    /// Shorthand for [`Error::Sequence`].
    pub fn sequence(call: impl Into<&'static str>, why: impl Into<String>) -> Error {
        Error::Sequence {
            call: call.into(),
            why: why.into(),
        }
    }

    /// Shorthand for [`Error::InvalidArg`].
    pub fn invalid_arg(call: impl Into<&'static str>, why: impl Into<String>) -> Error {
        Error::InvalidArg {
            call: call.into(),
            why: why.into(),
        }
    }

    /// Shorthand for [`Error::AccessDenied`].
    pub fn access_denied(call: impl Into<&'static str>, why: impl Into<String>) -> Error {
        Error::AccessDenied {
            call: call.into(),
            why: why.into(),
        }
    }
}

fn io_hresult(e: &std::io::Error) -> HRESULT {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => HRESULT::ERROR_FILE_NOT_FOUND,
        PermissionDenied => HRESULT::E_ACCESSDENIED,
        AlreadyExists => HRESULT::ERROR_ALREADY_EXISTS,
        OutOfMemory => HRESULT::E_OUTOFMEMORY,
        _ => match e.raw_os_error() {
            Some(code) if code > 0 => HRESULT::E_FAIL,
            _ => HRESULT::E_FAIL,
        },
    }
}

/// `Result` with the emulator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Call;

    #[test]
    fn every_variant_has_its_code() {
        let e = Error::sequence(Call::BackupRead, "no file is open");
        assert_eq!(e.hresult(), HRESULT::E_UNEXPECTED);
        assert_eq!(
            e.to_string(),
            format!(
                "{}: out of sequence: no file is open",
                Call::BackupRead.name()
            )
        );
        let p = Error::Path {
            kind: PathRefusal::Escapes,
            path: "C:\\..".into(),
            why: "climbs above C:\\".into(),
        };
        assert_eq!(p.hresult(), HRESULT::E_ACCESSDENIED);
        let r = Error::Recovery {
            failure: RecoveryFailure::MissingLogFile,
            why: "edb00003.log".into(),
        };
        assert_eq!(r.hresult().as_u32(), 0xC800_0210);
        assert!(r.to_string().contains("JET_errMissingLogFile"));
    }
}

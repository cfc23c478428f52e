//! The `HRESULT` newtype and every code the emulator can return (spec §7.2).

use std::fmt;

/// A Windows `HRESULT`: negative values are failures.
///
/// Any `i32` converts in and out without loss, including codes the emulator
/// does not know (a client may pass any value to `CertSrvRestoreRegisterComplete`).
/// `Display` prints the hex value and, where known, the symbol: `0x8000FFFF E_UNEXPECTED`.
#[repr(transparent)]
#[must_use]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct HRESULT(pub i32);

const fn hr(v: u32) -> HRESULT {
    HRESULT(v as i32)
}

#[allow(non_upper_case_globals)]
impl HRESULT {
    /// Success.
    pub const S_OK: HRESULT = hr(0);
    /// Generic failure.
    pub const E_FAIL: HRESULT = hr(0x8000_4005);
    /// Sequencing violation (MS-CSRA "ERROR_UNEXPECTED_ERROR").
    pub const E_UNEXPECTED: HRESULT = hr(0x8000_FFFF);
    /// Access denied.
    pub const E_ACCESSDENIED: HRESULT = hr(0x8007_0005);
    /// Invalid handle (`ERROR_INVALID_HANDLE`).
    pub const E_HANDLE: HRESULT = hr(0x8007_0006);
    /// Invalid argument (`ERROR_INVALID_PARAMETER`).
    pub const E_INVALIDARG: HRESULT = hr(0x8007_0057);
    /// NULL pointer where one is required.
    pub const E_POINTER: HRESULT = hr(0x8000_4003);
    /// Out of memory.
    pub const E_OUTOFMEMORY: HRESULT = hr(0x8007_000E);
    /// Not implemented.
    pub const E_NOTIMPL: HRESULT = hr(0x8000_4001);
    /// `ERROR_FILE_NOT_FOUND`.
    pub const ERROR_FILE_NOT_FOUND: HRESULT = hr(0x8007_0002);
    /// `ERROR_PATH_NOT_FOUND`.
    pub const ERROR_PATH_NOT_FOUND: HRESULT = hr(0x8007_0003);
    /// `ERROR_SHARING_VIOLATION`: a file of a running CA was overwritten.
    pub const ERROR_SHARING_VIOLATION: HRESULT = hr(0x8007_0020);
    /// `ERROR_NOT_SUPPORTED`.
    pub const ERROR_NOT_SUPPORTED: HRESULT = hr(0x8007_0032);
    /// `ERROR_BAD_NETPATH`: a UNC path names another host or an unknown share.
    pub const ERROR_BAD_NETPATH: HRESULT = hr(0x8007_0035);
    /// `ERROR_INVALID_NAME`: device names, alternate data streams, bad characters.
    pub const ERROR_INVALID_NAME: HRESULT = hr(0x8007_007B);
    /// `ERROR_DIR_NOT_EMPTY`.
    pub const ERROR_DIR_NOT_EMPTY: HRESULT = hr(0x8007_0091);
    /// `ERROR_BAD_PATHNAME`: relative, empty or malformed paths.
    pub const ERROR_BAD_PATHNAME: HRESULT = hr(0x8007_00A1);
    /// `ERROR_ALREADY_EXISTS`: a server name is already in use.
    pub const ERROR_ALREADY_EXISTS: HRESULT = hr(0x8007_00B7);
    /// `ERROR_DIRECTORY`.
    pub const ERROR_DIRECTORY: HRESULT = hr(0x8007_010B);
    /// `ERROR_PRIVILEGE_NOT_HELD`.
    pub const ERROR_PRIVILEGE_NOT_HELD: HRESULT = hr(0x8007_0522);
    /// `RPC_S_SERVER_UNAVAILABLE`: the CA service is stopped or unreachable.
    pub const RPC_S_SERVER_UNAVAILABLE: HRESULT = hr(0x8007_06BA);
    /// `RPC_S_SERVER_TOO_BUSY`.
    pub const RPC_S_SERVER_TOO_BUSY: HRESULT = hr(0x8007_06BB);
    /// `RPC_S_CALL_FAILED`: the CA died during a call.
    pub const RPC_S_CALL_FAILED: HRESULT = hr(0x8007_06BE);
    /// `RPC_E_DISCONNECTED`: the CA shut down while a session was open.
    pub const RPC_E_DISCONNECTED: HRESULT = hr(0x8001_0108);
    /// `CERTSRV_E_SERVER_SUSPENDED`: suspended for a database restore.
    pub const CERTSRV_E_SERVER_SUSPENDED: HRESULT = hr(0x8009_4006);
    /// `CERTSRV_E_ROLECONFLICT`.
    pub const CERTSRV_E_ROLECONFLICT: HRESULT = hr(0x8009_4008);
    /// `CERTSRV_E_NO_DB_SESSIONS`: too many sessions open on one CA.
    pub const CERTSRV_E_NO_DB_SESSIONS: HRESULT = hr(0x8009_400F);
    /// `JET_errLogFileCorrupt` (-501).
    pub const JET_errLogFileCorrupt: HRESULT = HRESULT::from_jet(-501);
    /// `JET_errBackupInProgress` (-505) / `hrBackupInProgress`.
    pub const JET_errBackupInProgress: HRESULT = HRESULT::from_jet(-505);
    /// `JET_errRestoreInProgress` (-506).
    pub const JET_errRestoreInProgress: HRESULT = HRESULT::from_jet(-506);
    /// `JET_errNoBackup` (-520).
    pub const JET_errNoBackup: HRESULT = HRESULT::from_jet(-520);
    /// `JET_errInvalidBackupSequence` (-521) / `hrInvalidBackupSequence`.
    pub const JET_errInvalidBackupSequence: HRESULT = HRESULT::from_jet(-521);
    /// `JET_errBackupNotAllowedYet` (-523).
    pub const JET_errBackupNotAllowedYet: HRESULT = HRESULT::from_jet(-523);
    /// `JET_errInvalidBackup` (-526).
    pub const JET_errInvalidBackup: HRESULT = HRESULT::from_jet(-526);
    /// `JET_errMissingLogFile` (-528).
    pub const JET_errMissingLogFile: HRESULT = HRESULT::from_jet(-528);
    /// `JET_errBadLogSignature` (-530).
    pub const JET_errBadLogSignature: HRESULT = HRESULT::from_jet(-530);
    /// `JET_errBadDbSignature` (-531).
    pub const JET_errBadDbSignature: HRESULT = HRESULT::from_jet(-531);
    /// `JET_errMissingRestoreLogFiles` (-557).
    pub const JET_errMissingRestoreLogFiles: HRESULT = HRESULT::from_jet(-557);
    /// `JET_errMissingFullBackup` (-560) / `hrMissingFullBackup`.
    pub const JET_errMissingFullBackup: HRESULT = HRESULT::from_jet(-560);
    /// `JET_errRestoreOfNonBackupDatabase` (-615).
    pub const JET_errRestoreOfNonBackupDatabase: HRESULT = HRESULT::from_jet(-615);
    /// `JET_errBackupAbortByServer` (-801).
    pub const JET_errBackupAbortByServer: HRESULT = HRESULT::from_jet(-801);
    /// `JET_errFileAccessDenied` (-1032).
    pub const JET_errFileAccessDenied: HRESULT = HRESULT::from_jet(-1032);
    /// `JET_errVersionStoreOutOfMemory` (-1069).
    pub const JET_errVersionStoreOutOfMemory: HRESULT = HRESULT::from_jet(-1069);
    /// `JET_errDatabaseCorrupted` (-1206).
    pub const JET_errDatabaseCorrupted: HRESULT = HRESULT::from_jet(-1206);

    /// `HRESULT_FROM_WIN32`: `0x8007xxxx` for a non-zero Win32 error code.
    pub const fn from_win32(code: u32) -> HRESULT {
        if code == 0 {
            HRESULT::S_OK
        } else if code as i32 <= 0 {
            HRESULT(code as i32)
        } else {
            HRESULT(((code & 0xFFFF) | 0x8007_0000) as i32)
        }
    }

    /// An ESE (`JET_ERR`) code as the CA surfaces it: errors become
    /// `0xC8000000 | -err`, warnings `0x88000000 | wrn` (spec §7.1).
    pub const fn from_jet(err: i32) -> HRESULT {
        if err < 0 {
            HRESULT((0xC800_0000u32 | (err.unsigned_abs())) as i32)
        } else if err > 0 {
            HRESULT((0x8800_0000u32 | err as u32) as i32)
        } else {
            HRESULT::S_OK
        }
    }

    /// True for success codes (`>= 0`).
    pub const fn is_ok(self) -> bool {
        self.0 >= 0
    }

    /// True for failure codes (`< 0`).
    pub const fn is_err(self) -> bool {
        self.0 < 0
    }

    /// The value as the unsigned hex number Windows tools print.
    pub const fn as_u32(self) -> u32 {
        self.0 as u32
    }

    /// The symbolic name, if the emulator knows this code.
    pub fn name(self) -> Option<&'static str> {
        KNOWN.iter().find(|k| k.0 == self).map(|k| k.1)
    }

    /// The Windows message text (MS-ERREF), if known.
    pub fn message(self) -> Option<&'static str> {
        KNOWN.iter().find(|k| k.0 == self).map(|k| k.2)
    }

    /// Parses `"E_UNEXPECTED"`, `"0x8000FFFF"`, `"-2147418113"` or `"JET_errMissingFullBackup"`.
    pub fn parse(s: &str) -> Option<HRESULT> {
        let s = s.trim();
        if let Some(k) = KNOWN.iter().find(|k| k.1.eq_ignore_ascii_case(s)) {
            return Some(k.0);
        }
        if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            return u32::from_str_radix(hex, 16).ok().map(hr);
        }
        s.parse::<i64>().ok().and_then(|v| {
            if (i32::MIN as i64..=u32::MAX as i64).contains(&v) {
                Some(HRESULT(v as u32 as i32))
            } else {
                None
            }
        })
    }

    /// Every code the emulator names, with its symbol and message.
    pub fn known() -> impl Iterator<Item = (HRESULT, &'static str, &'static str)> {
        KNOWN.iter().copied()
    }
}

const KNOWN: &[(HRESULT, &str, &str)] = &[
    (HRESULT::S_OK, "S_OK", "The operation completed successfully."),
    (HRESULT::E_FAIL, "E_FAIL", "Unspecified error."),
    (HRESULT::E_UNEXPECTED, "E_UNEXPECTED", "Catastrophic failure."),
    (HRESULT::E_ACCESSDENIED, "E_ACCESSDENIED", "Access is denied."),
    (HRESULT::E_HANDLE, "E_HANDLE", "The handle is invalid."),
    (HRESULT::E_INVALIDARG, "E_INVALIDARG", "The parameter is incorrect."),
    (HRESULT::E_POINTER, "E_POINTER", "Invalid pointer."),
    (HRESULT::E_OUTOFMEMORY, "E_OUTOFMEMORY", "Not enough memory resources are available to complete this operation."),
    (HRESULT::E_NOTIMPL, "E_NOTIMPL", "Not implemented."),
    (HRESULT::ERROR_FILE_NOT_FOUND, "ERROR_FILE_NOT_FOUND", "The system cannot find the file specified."),
    (HRESULT::ERROR_PATH_NOT_FOUND, "ERROR_PATH_NOT_FOUND", "The system cannot find the path specified."),
    (HRESULT::ERROR_SHARING_VIOLATION, "ERROR_SHARING_VIOLATION", "The process cannot access the file because it is being used by another process."),
    (HRESULT::ERROR_NOT_SUPPORTED, "ERROR_NOT_SUPPORTED", "The request is not supported."),
    (HRESULT::ERROR_BAD_NETPATH, "ERROR_BAD_NETPATH", "The network path was not found."),
    (HRESULT::ERROR_INVALID_NAME, "ERROR_INVALID_NAME", "The filename, directory name, or volume label syntax is incorrect."),
    (HRESULT::ERROR_DIR_NOT_EMPTY, "ERROR_DIR_NOT_EMPTY", "The directory is not empty."),
    (HRESULT::ERROR_BAD_PATHNAME, "ERROR_BAD_PATHNAME", "The specified path is invalid."),
    (HRESULT::ERROR_ALREADY_EXISTS, "ERROR_ALREADY_EXISTS", "Cannot create a file when that file already exists."),
    (HRESULT::ERROR_DIRECTORY, "ERROR_DIRECTORY", "The directory name is invalid."),
    (HRESULT::ERROR_PRIVILEGE_NOT_HELD, "ERROR_PRIVILEGE_NOT_HELD", "A required privilege is not held by the client."),
    (HRESULT::RPC_S_SERVER_UNAVAILABLE, "RPC_S_SERVER_UNAVAILABLE", "The RPC server is unavailable."),
    (HRESULT::RPC_S_SERVER_TOO_BUSY, "RPC_S_SERVER_TOO_BUSY", "The RPC server is too busy to complete this operation."),
    (HRESULT::RPC_S_CALL_FAILED, "RPC_S_CALL_FAILED", "The remote procedure call failed."),
    (HRESULT::RPC_E_DISCONNECTED, "RPC_E_DISCONNECTED", "The object invoked has disconnected from its clients."),
    (HRESULT::CERTSRV_E_SERVER_SUSPENDED, "CERTSRV_E_SERVER_SUSPENDED", "Certificate service has been suspended for a database restore operation."),
    (HRESULT::CERTSRV_E_ROLECONFLICT, "CERTSRV_E_ROLECONFLICT", "The operation is denied. The user has multiple roles assigned and the certification authority is configured to enforce role separation."),
    (HRESULT::CERTSRV_E_NO_DB_SESSIONS, "CERTSRV_E_NO_DB_SESSIONS", "An attempt was made to open a Certification Authority database session, but there are already too many active sessions."),
    (HRESULT::JET_errLogFileCorrupt, "JET_errLogFileCorrupt", "Log file is corrupt."),
    (HRESULT::JET_errBackupInProgress, "JET_errBackupInProgress", "Backup is active already."),
    (HRESULT::JET_errRestoreInProgress, "JET_errRestoreInProgress", "Restore in progress."),
    (HRESULT::JET_errNoBackup, "JET_errNoBackup", "No backup in progress."),
    (HRESULT::JET_errInvalidBackupSequence, "JET_errInvalidBackupSequence", "Backup call out of sequence."),
    (HRESULT::JET_errBackupNotAllowedYet, "JET_errBackupNotAllowedYet", "Cannot do backup now."),
    (HRESULT::JET_errInvalidBackup, "JET_errInvalidBackup", "Cannot perform incremental backup when circular logging enabled."),
    (HRESULT::JET_errMissingLogFile, "JET_errMissingLogFile", "Current log file missing."),
    (HRESULT::JET_errBadLogSignature, "JET_errBadLogSignature", "Bad signature for a log file."),
    (HRESULT::JET_errBadDbSignature, "JET_errBadDbSignature", "Bad signature for a db file."),
    (HRESULT::JET_errMissingRestoreLogFiles, "JET_errMissingRestoreLogFiles", "Some restore log files are missing."),
    (HRESULT::JET_errMissingFullBackup, "JET_errMissingFullBackup", "The database missed a previous full backup before incremental backup."),
    (HRESULT::JET_errRestoreOfNonBackupDatabase, "JET_errRestoreOfNonBackupDatabase", "Hard restore detected that a database is not the one that was backed up."),
    (HRESULT::JET_errBackupAbortByServer, "JET_errBackupAbortByServer", "Backup was aborted by server by calling JetTerm with JET_bitTermStopBackup or by calling JetStopBackup."),
    (HRESULT::JET_errFileAccessDenied, "JET_errFileAccessDenied", "Cannot access file, the file is locked or in use."),
    (HRESULT::JET_errVersionStoreOutOfMemory, "JET_errVersionStoreOutOfMemory", "Version store out of memory."),
    (HRESULT::JET_errDatabaseCorrupted, "JET_errDatabaseCorrupted", "Non database file or corrupted db."),
];

impl fmt::Display for HRESULT {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{:#010X} {name}", self.as_u32()),
            None => write!(f, "{:#010X}", self.as_u32()),
        }
    }
}

impl fmt::Debug for HRESULT {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HRESULT({self})")
    }
}

impl From<i32> for HRESULT {
    fn from(v: i32) -> Self {
        HRESULT(v)
    }
}

impl From<HRESULT> for i32 {
    fn from(h: HRESULT) -> Self {
        h.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_codes_match_the_header_values() {
        assert_eq!(HRESULT::JET_errInvalidBackupSequence.as_u32(), 0xC800_0209);
        assert_eq!(HRESULT::JET_errBackupInProgress.as_u32(), 0xC800_01F9);
        assert_eq!(HRESULT::JET_errMissingFullBackup.as_u32(), 0xC800_0230);
        assert_eq!(
            HRESULT::JET_errRestoreOfNonBackupDatabase.as_u32(),
            0xC800_0267
        );
        assert_eq!(HRESULT::from_jet(1004).as_u32(), 0x8800_03EC);
        assert_eq!(HRESULT::from_jet(0), HRESULT::S_OK);
    }

    #[test]
    fn from_win32_builds_facility_7() {
        assert_eq!(HRESULT::from_win32(5), HRESULT::E_ACCESSDENIED);
        assert_eq!(
            HRESULT::from_win32(0x6BA),
            HRESULT::RPC_S_SERVER_UNAVAILABLE
        );
        assert_eq!(HRESULT::from_win32(0), HRESULT::S_OK);
    }

    #[test]
    fn display_shows_hex_and_symbol() {
        assert_eq!(HRESULT::E_UNEXPECTED.to_string(), "0x8000FFFF E_UNEXPECTED");
        assert_eq!(HRESULT(0x1234).to_string(), "0x00001234");
        assert_eq!(
            format!("{:?}", HRESULT::E_HANDLE),
            "HRESULT(0x80070006 E_HANDLE)"
        );
    }

    #[test]
    fn parse_accepts_names_hex_and_decimal() {
        assert_eq!(HRESULT::parse("e_unexpected"), Some(HRESULT::E_UNEXPECTED));
        assert_eq!(HRESULT::parse("0x80070005"), Some(HRESULT::E_ACCESSDENIED));
        assert_eq!(HRESULT::parse("-2147024891"), Some(HRESULT::E_ACCESSDENIED));
        assert_eq!(HRESULT::parse("2147942405"), Some(HRESULT::E_ACCESSDENIED));
        assert_eq!(HRESULT::parse("nonsense"), None);
    }

    #[test]
    fn known_names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (h, name, _) in HRESULT::known() {
            assert!(seen.insert(h), "{name} listed twice");
        }
    }
}

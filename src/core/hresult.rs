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

/// The named codes: each written once, with its doc, value and Windows message (MS-ERREF);
/// the constants, [`HRESULT::name`], [`HRESULT::message`], [`HRESULT::parse`] and
/// [`HRESULT::known`] all come from this one table.
macro_rules! known_codes {
    ($( $(#[doc = $doc:literal])* $name:ident = $value:expr, $message:literal; )*) => {
        #[allow(non_upper_case_globals)]
        impl HRESULT {
            $( $(#[doc = $doc])* pub const $name: HRESULT = $value; )*
        }
        const KNOWN: &[(HRESULT, &str, &str)] = &[ $( (HRESULT::$name, stringify!($name), $message), )* ];
    };
}

known_codes! {
    /// Success.
    S_OK = hr(0), "The operation completed successfully.";
    /// Generic failure.
    E_FAIL = hr(0x8000_4005), "Unspecified error.";
    /// Sequencing violation (MS-CSRA "ERROR_UNEXPECTED_ERROR").
    E_UNEXPECTED = hr(0x8000_FFFF), "Catastrophic failure.";
    /// Access denied.
    E_ACCESSDENIED = hr(0x8007_0005), "Access is denied.";
    /// Invalid handle (`ERROR_INVALID_HANDLE`).
    E_HANDLE = hr(0x8007_0006), "The handle is invalid.";
    /// Invalid argument (`ERROR_INVALID_PARAMETER`).
    E_INVALIDARG = hr(0x8007_0057), "The parameter is incorrect.";
    /// NULL pointer where one is required.
    E_POINTER = hr(0x8000_4003), "Invalid pointer.";
    /// Out of memory.
    E_OUTOFMEMORY = hr(0x8007_000E), "Not enough memory resources are available to complete this operation.";
    /// Not implemented.
    E_NOTIMPL = hr(0x8000_4001), "Not implemented.";
    /// `ERROR_FILE_NOT_FOUND`.
    ERROR_FILE_NOT_FOUND = hr(0x8007_0002), "The system cannot find the file specified.";
    /// `ERROR_PATH_NOT_FOUND`.
    ERROR_PATH_NOT_FOUND = hr(0x8007_0003), "The system cannot find the path specified.";
    /// `ERROR_SHARING_VIOLATION`: a file of a running CA was overwritten.
    ERROR_SHARING_VIOLATION = hr(0x8007_0020), "The process cannot access the file because it is being used by another process.";
    /// `ERROR_NOT_SUPPORTED`.
    ERROR_NOT_SUPPORTED = hr(0x8007_0032), "The request is not supported.";
    /// `ERROR_BAD_NETPATH`: a UNC path names another host or an unknown share.
    ERROR_BAD_NETPATH = hr(0x8007_0035), "The network path was not found.";
    /// `ERROR_INVALID_NAME`: device names, alternate data streams, bad characters.
    ERROR_INVALID_NAME = hr(0x8007_007B), "The filename, directory name, or volume label syntax is incorrect.";
    /// `ERROR_DIR_NOT_EMPTY`.
    ERROR_DIR_NOT_EMPTY = hr(0x8007_0091), "The directory is not empty.";
    /// `ERROR_BAD_PATHNAME`: relative, empty or malformed paths.
    ERROR_BAD_PATHNAME = hr(0x8007_00A1), "The specified path is invalid.";
    /// `ERROR_ALREADY_EXISTS`: a server name is already in use.
    ERROR_ALREADY_EXISTS = hr(0x8007_00B7), "Cannot create a file when that file already exists.";
    /// `ERROR_DIRECTORY`.
    ERROR_DIRECTORY = hr(0x8007_010B), "The directory name is invalid.";
    /// `ERROR_PRIVILEGE_NOT_HELD`.
    ERROR_PRIVILEGE_NOT_HELD = hr(0x8007_0522), "A required privilege is not held by the client.";
    /// `RPC_S_SERVER_UNAVAILABLE`: the CA service is stopped or unreachable.
    RPC_S_SERVER_UNAVAILABLE = hr(0x8007_06BA), "The RPC server is unavailable.";
    /// `RPC_S_SERVER_TOO_BUSY`.
    RPC_S_SERVER_TOO_BUSY = hr(0x8007_06BB), "The RPC server is too busy to complete this operation.";
    /// `RPC_S_CALL_FAILED`: the CA died during a call.
    RPC_S_CALL_FAILED = hr(0x8007_06BE), "The remote procedure call failed.";
    /// `RPC_E_DISCONNECTED`: the CA shut down while a session was open.
    RPC_E_DISCONNECTED = hr(0x8001_0108), "The object invoked has disconnected from its clients.";
    /// `CERTSRV_E_SERVER_SUSPENDED`: suspended for a database restore.
    CERTSRV_E_SERVER_SUSPENDED = hr(0x8009_4006), "Certificate service has been suspended for a database restore operation.";
    /// `CERTSRV_E_ROLECONFLICT`.
    CERTSRV_E_ROLECONFLICT = hr(0x8009_4008), "The operation is denied. The user has multiple roles assigned and the certification authority is configured to enforce role separation.";
    /// `CERTSRV_E_NO_DB_SESSIONS`: too many sessions open on one CA.
    CERTSRV_E_NO_DB_SESSIONS = hr(0x8009_400F), "An attempt was made to open a Certification Authority database session, but there are already too many active sessions.";
    /// `JET_errLogFileCorrupt` (-501).
    JET_errLogFileCorrupt = HRESULT::from_jet(-501), "Log file is corrupt.";
    /// `JET_errBackupInProgress` (-505) / `hrBackupInProgress`.
    JET_errBackupInProgress = HRESULT::from_jet(-505), "Backup is active already.";
    /// `JET_errRestoreInProgress` (-506).
    JET_errRestoreInProgress = HRESULT::from_jet(-506), "Restore in progress.";
    /// `JET_errNoBackup` (-520).
    JET_errNoBackup = HRESULT::from_jet(-520), "No backup in progress.";
    /// `JET_errInvalidBackupSequence` (-521) / `hrInvalidBackupSequence`.
    JET_errInvalidBackupSequence = HRESULT::from_jet(-521), "Backup call out of sequence.";
    /// `JET_errBackupNotAllowedYet` (-523).
    JET_errBackupNotAllowedYet = HRESULT::from_jet(-523), "Cannot do backup now.";
    /// `JET_errInvalidBackup` (-526).
    JET_errInvalidBackup = HRESULT::from_jet(-526), "Cannot perform incremental backup when circular logging enabled.";
    /// `JET_errMissingLogFile` (-528).
    JET_errMissingLogFile = HRESULT::from_jet(-528), "Current log file missing.";
    /// `JET_errBadLogSignature` (-530).
    JET_errBadLogSignature = HRESULT::from_jet(-530), "Bad signature for a log file.";
    /// `JET_errBadDbSignature` (-531).
    JET_errBadDbSignature = HRESULT::from_jet(-531), "Bad signature for a db file.";
    /// `JET_errMissingRestoreLogFiles` (-557).
    JET_errMissingRestoreLogFiles = HRESULT::from_jet(-557), "Some restore log files are missing.";
    /// `JET_errMissingFullBackup` (-560) / `hrMissingFullBackup`.
    JET_errMissingFullBackup = HRESULT::from_jet(-560), "The database missed a previous full backup before incremental backup.";
    /// `JET_errRestoreOfNonBackupDatabase` (-615).
    JET_errRestoreOfNonBackupDatabase = HRESULT::from_jet(-615), "Hard restore detected that a database is not the one that was backed up.";
    /// `JET_errBackupAbortByServer` (-801).
    JET_errBackupAbortByServer = HRESULT::from_jet(-801), "Backup was aborted by server by calling JetTerm with JET_bitTermStopBackup or by calling JetStopBackup.";
    /// `JET_errFileAccessDenied` (-1032).
    JET_errFileAccessDenied = HRESULT::from_jet(-1032), "Cannot access file, the file is locked or in use.";
    /// `JET_errVersionStoreOutOfMemory` (-1069).
    JET_errVersionStoreOutOfMemory = HRESULT::from_jet(-1069), "Version store out of memory.";
    /// `JET_errDatabaseCorrupted` (-1206).
    JET_errDatabaseCorrupted = HRESULT::from_jet(-1206), "Non database file or corrupted db.";
}

impl HRESULT {
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

//! The call table: the 18 functions of `certbcli.h`, each written once with its export
//! name, its wire operation code, how it is routed, the list it returns and the failure it
//! realistically meets. Faults, the trace, the conformance checker, the benchmarks, the
//! server protocol and the PE DLL's generated header all take names and codes from here.
//!
//! Adding a function is one row of the `calls!` table below (and the code that implements
//! it); `CONTRIBUTING.md` walks through the rest.

use super::hresult::HRESULT;
use std::fmt;

/// How a call finds the CA it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// By the server name it is given (`pwszServerName`).
    ServerName,
    /// By its `HCSBC` context handle.
    Handle,
    /// By the handle when one is given; the registration calls accept NULL.
    OptionalHandle,
    /// By the list buffer it frees (`CertSrvBackupFree`).
    Buffer,
}

/// The four functions that return a double-NUL list the caller frees with
/// `CertSrvBackupFree`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListKind {
    /// `CertSrvBackupGetDatabaseNamesW`: `CSBFT_CERTSERVER_DATABASE` entries.
    DatabaseNames,
    /// `CertSrvBackupGetDynamicFileListW`: the CA certificate, never opened with
    /// `CertSrvBackupOpenFileW`.
    DynamicFiles,
    /// `CertSrvBackupGetBackupLogsW`: `CSBFT_LOG` entries.
    BackupLogs,
    /// `CertSrvRestoreGetDatabaseLocationsW`: where the files go back at restore.
    DatabaseLocations,
}

impl ListKind {
    /// All four, in operation-code order.
    pub const ALL: [ListKind; 4] = [
        ListKind::DatabaseNames,
        ListKind::DynamicFiles,
        ListKind::BackupLogs,
        ListKind::DatabaseLocations,
    ];

    /// The function that returns this list.
    pub const fn call(self) -> Call {
        match self {
            ListKind::DatabaseNames => Call::BackupGetDatabaseNames,
            ListKind::DynamicFiles => Call::BackupGetDynamicFileList,
            ListKind::BackupLogs => Call::BackupGetBackupLogs,
            ListKind::DatabaseLocations => Call::RestoreGetDatabaseLocations,
        }
    }

    /// The export name of that function.
    pub const fn name(self) -> &'static str {
        self.call().name()
    }

    /// True if a backup must read every entry of the list to end of file before
    /// `CertSrvBackupTruncateLogs` (spec §6.2 row 7): the database and the logs.
    pub const fn must_be_read(self) -> bool {
        matches!(self, ListKind::DatabaseNames | ListKind::BackupLogs)
    }
}

macro_rules! calls {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident = $op:literal, $name:literal, $route:ident, $list:expr, $realistic:ident;
    )*) => {
        /// One of the 18 functions of `certbcli.h` (`Certadm.dll`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Call {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Call {
            /// Every function, in operation-code order.
            pub const ALL: &'static [Call] = &[ $( Call::$variant, )* ];

            /// The export name, e.g. `CertSrvBackupPrepareW`.
            pub const fn name(self) -> &'static str {
                match self { $( Call::$variant => $name, )* }
            }

            /// The name of the variant: the export name without `CertSrv` and the `W`
            /// suffix, e.g. `BackupPrepare`. Generated code derives its identifiers from it
            /// (`OP_BACKUP_PREPARE` in the PE DLL's `protocol.h`).
            pub const fn short_name(self) -> &'static str {
                match self { $( Call::$variant => stringify!($variant), )* }
            }

            /// The operation code of the server protocol (`docs/PROTOCOL.md`).
            pub const fn op(self) -> u16 {
                match self { $( Call::$variant => $op, )* }
            }

            /// How the call finds its CA.
            pub const fn route(self) -> Route {
                match self { $( Call::$variant => Route::$route, )* }
            }

            /// The list the call returns, if it returns one.
            pub const fn list(self) -> Option<ListKind> {
                match self { $( Call::$variant => $list, )* }
            }

            /// The failure the function realistically meets when the CA or the network
            /// goes wrong: what a fault without an explicit HRESULT, and the
            /// fail-at-every-step explorer, make it return.
            pub const fn realistic_failure(self) -> HRESULT {
                match self { $( Call::$variant => HRESULT::$realistic, )* }
            }

            /// The function with this export name (exact spelling, as Windows exports it).
            pub fn from_name(name: &str) -> Option<Call> {
                match name { $( $name => Some(Call::$variant), )* _ => None }
            }

            /// The function with this operation code.
            pub const fn from_op(op: u16) -> Option<Call> {
                match op { $( $op => Some(Call::$variant), )* _ => None }
            }
        }
    };
}

calls! {
    /// `CertSrvIsServerOnlineW(pwszServerName, pfServerOnline)`.
    IsServerOnline = 0x01, "CertSrvIsServerOnlineW", ServerName, None, RPC_S_SERVER_UNAVAILABLE;
    /// `CertSrvBackupPrepareW(pwszServerName, grbitJet, dwBackupFlags, phbc)`.
    BackupPrepare = 0x02, "CertSrvBackupPrepareW", ServerName, None, RPC_S_SERVER_UNAVAILABLE;
    /// `CertSrvBackupGetDatabaseNamesW(hbc, ppwszzAttachmentInformation, pcbSize)`.
    BackupGetDatabaseNames = 0x03, "CertSrvBackupGetDatabaseNamesW", Handle, Some(ListKind::DatabaseNames), RPC_S_CALL_FAILED;
    /// `CertSrvBackupGetDynamicFileListW(hbc, ppwszzFileList, pcbSize)`.
    BackupGetDynamicFileList = 0x04, "CertSrvBackupGetDynamicFileListW", Handle, Some(ListKind::DynamicFiles), RPC_S_CALL_FAILED;
    /// `CertSrvBackupOpenFileW(hbc, pwszAttachmentName, cbReadHintSize, pliFileSize)`.
    BackupOpenFile = 0x05, "CertSrvBackupOpenFileW", Handle, None, RPC_S_CALL_FAILED;
    /// `CertSrvBackupRead(hbc, pvBuffer, cbBuffer, pcbRead)`.
    BackupRead = 0x06, "CertSrvBackupRead", Handle, None, RPC_S_CALL_FAILED;
    /// `CertSrvBackupClose(hbc)`.
    BackupClose = 0x07, "CertSrvBackupClose", Handle, None, RPC_S_CALL_FAILED;
    /// `CertSrvBackupGetBackupLogsW(hbc, ppwszzBackupLogFiles, pcbSize)`.
    BackupGetBackupLogs = 0x08, "CertSrvBackupGetBackupLogsW", Handle, Some(ListKind::BackupLogs), RPC_S_CALL_FAILED;
    /// `CertSrvBackupTruncateLogs(hbc)`.
    BackupTruncateLogs = 0x09, "CertSrvBackupTruncateLogs", Handle, None, RPC_S_CALL_FAILED;
    /// `CertSrvBackupEnd(hbc)`.
    BackupEnd = 0x0A, "CertSrvBackupEnd", Handle, None, RPC_S_CALL_FAILED;
    /// `CertSrvBackupFree(pv)` (returns nothing).
    BackupFree = 0x0B, "CertSrvBackupFree", Buffer, None, RPC_S_CALL_FAILED;
    /// `CertSrvRestoreGetDatabaseLocationsW(hbc, ppwszzDatabaseLocationList, pcbSize)`.
    RestoreGetDatabaseLocations = 0x0C, "CertSrvRestoreGetDatabaseLocationsW", Handle, Some(ListKind::DatabaseLocations), RPC_S_CALL_FAILED;
    /// `CertSrvRestorePrepareW(pwszServerName, dwRestoreFlags, phbc)`.
    RestorePrepare = 0x0D, "CertSrvRestorePrepareW", ServerName, None, E_ACCESSDENIED;
    /// `CertSrvRestoreRegisterW(hbc, pwszCheckPointFilePath, pwszLogPath, rgrstmap, crstmap,
    /// pwszBackupLogPath, genLow, genHigh)`.
    RestoreRegister = 0x0E, "CertSrvRestoreRegisterW", OptionalHandle, None, E_ACCESSDENIED;
    /// `CertSrvRestoreRegisterThroughFile` (same parameters as `CertSrvRestoreRegisterW`).
    RestoreRegisterThroughFile = 0x0F, "CertSrvRestoreRegisterThroughFile", OptionalHandle, None, E_ACCESSDENIED;
    /// `CertSrvRestoreRegisterComplete(hbc, hrRestoreState)`.
    RestoreRegisterComplete = 0x10, "CertSrvRestoreRegisterComplete", OptionalHandle, None, E_UNEXPECTED;
    /// `CertSrvRestoreEnd(hbc)`.
    RestoreEnd = 0x11, "CertSrvRestoreEnd", Handle, None, E_UNEXPECTED;
    /// `CertSrvServerControlW(pwszServerName, dwControlFlags, pcbOut, ppbOut)`.
    ServerControl = 0x12, "CertSrvServerControlW", ServerName, None, RPC_S_SERVER_UNAVAILABLE;
}

impl Call {
    /// `CertSrvRestoreRegisterThroughFile` if `through_file`, else `CertSrvRestoreRegisterW`:
    /// the two registrations share their arguments and their implementation.
    pub const fn restore_register(through_file: bool) -> Call {
        if through_file {
            Call::RestoreRegisterThroughFile
        } else {
            Call::RestoreRegister
        }
    }

    /// True for `CertSrvBackupFree`, the one function that returns nothing: a fault can
    /// only make it misbehave, not fail.
    pub const fn returns_void(self) -> bool {
        matches!(self, Call::BackupFree)
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The export name, for the `call` of an [`Error`](super::Error).
impl From<Call> for &'static str {
    fn from(call: Call) -> &'static str {
        call.name()
    }
}

impl serde::Serialize for Call {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Call {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Call, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Call::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{name:?} is not a certbcli function (expected an export name such as CertSrvBackupRead)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_are_unique_and_round_trip() {
        assert_eq!(Call::ALL.len(), 18);
        for (i, &c) in Call::ALL.iter().enumerate() {
            assert_eq!(c.op() as usize, i + 1, "{c}: op codes are dense from 0x01");
            assert_eq!(Call::from_name(c.name()), Some(c));
            assert_eq!(Call::from_op(c.op()), Some(c));
            let short = c.name().strip_prefix("CertSrv").expect("a CertSrv name");
            assert_eq!(short.strip_suffix('W').unwrap_or(short), c.short_name());
        }
        assert_eq!(Call::from_name("certsrvbackupread"), None, "exact spelling");
        assert_eq!(Call::from_op(0), None);
    }

    #[test]
    fn list_kinds_point_back_to_their_call() {
        for k in ListKind::ALL {
            assert_eq!(k.call().list(), Some(k));
        }
        let lists = Call::ALL.iter().filter(|c| c.list().is_some()).count();
        assert_eq!(lists, ListKind::ALL.len());
    }

    /// The names after `CERTBCLI_API` in `include/certbcli.h` (the prototypes), outside
    /// preprocessor lines.
    fn header_prototypes(header: &str) -> Vec<String> {
        let code: String = header
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| [l, "\n"])
            .collect();
        let mut names = Vec::new();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("CERTBCLI_API") {
            rest = &rest[at + "CERTBCLI_API".len()..];
            let tail = rest.trim_start();
            let name: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // A prototype is `CERTBCLI_API Name(`.
            if !name.is_empty() && tail[name.len()..].trim_start().starts_with('(') {
                names.push(name);
            }
        }
        names
    }

    #[test]
    fn the_header_declares_exactly_the_calls() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/certbcli.h");
        let header = std::fs::read_to_string(path).expect("include/certbcli.h");
        let mut declared = header_prototypes(&header);
        declared.sort();
        let mut want: Vec<String> = Call::ALL.iter().map(|c| c.name().to_string()).collect();
        want.sort();
        assert_eq!(
            declared, want,
            "the prototypes of include/certbcli.h and the call table (src/core/call.rs) differ"
        );
        // The PE DLL's module definition exports the same names.
        let def = concat!(env!("CARGO_MANIFEST_DIR"), "/windows/certadm/certadm.def");
        let def = std::fs::read_to_string(def).expect("windows/certadm/certadm.def");
        let mut exported: Vec<String> = def
            .lines()
            .skip_while(|l| l.trim() != "EXPORTS")
            .skip(1)
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        exported.sort();
        assert_eq!(
            exported, want,
            "windows/certadm/certadm.def and the call table differ"
        );
    }

    #[test]
    fn header_parsing_sees_prototypes_only() {
        let h = "#define CERTBCLI_API __declspec(dllimport) CERTBCLI_CALL\nHRESULT CERTBCLI_API FirstFn(\n  int a);\nVOID CERTBCLI_API\nSecondFn (void);";
        assert_eq!(header_prototypes(h), ["FirstFn", "SecondFn"]);
    }

    #[test]
    fn serde_uses_the_export_name() {
        let json = serde_json::to_string(&Call::BackupRead).unwrap();
        assert_eq!(json, "\"CertSrvBackupRead\"");
        let back: Call = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Call::BackupRead);
        let err = serde_json::from_str::<Call>("\"CertSrvBackupReed\"").unwrap_err();
        assert!(err.to_string().contains("not a certbcli function"), "{err}");
    }
}

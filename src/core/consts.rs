//! Every constant of `certbcli.h` and the related `certsrv.h` values (spec §2),
//! with the header's names.
#![allow(non_upper_case_globals)]

/// `CSBACKUP_TYPE_FULL`: back up the database, logs and related files.
pub const CSBACKUP_TYPE_FULL: u32 = 0x0000_0001;
/// `CSBACKUP_TYPE_LOGS_ONLY`: back up the log files only (the incremental backup).
pub const CSBACKUP_TYPE_LOGS_ONLY: u32 = 0x0000_0002;
/// `CSBACKUP_TYPE_MASK`: the valid `dwBackupFlags` bits.
pub const CSBACKUP_TYPE_MASK: u32 = 0x0000_0003;
/// `CSBACKUP_DISABLE_INCREMENTAL`: sentinel log number; no API takes it.
pub const CSBACKUP_DISABLE_INCREMENTAL: u32 = 0xFFFF_FFFF;

/// `CSRESTORE_TYPE_FULL`: restore a full backup set (0 means incremental).
pub const CSRESTORE_TYPE_FULL: u32 = 0x0000_0001;
/// `CSRESTORE_TYPE_ONLINE`: "not yet supported" in the header.
pub const CSRESTORE_TYPE_ONLINE: u32 = 0x0000_0002;
/// `CSRESTORE_TYPE_CATCHUP`: "not yet supported" in the header.
pub const CSRESTORE_TYPE_CATCHUP: u32 = 0x0000_0004;
/// `CSRESTORE_TYPE_MASK`: the valid flags (note: excludes ONLINE).
pub const CSRESTORE_TYPE_MASK: u32 = 0x0000_0005;

/// `CSBFT`: the type character that prefixes list entries.
pub type CSBFT = u16;
/// `CSBFT_DIRECTORY` bit.
pub const CSBFT_DIRECTORY: u32 = 0x80;
/// `CSBFT_DATABASE_DIRECTORY` bit.
pub const CSBFT_DATABASE_DIRECTORY: u32 = 0x40;
/// `CSBFT_LOG_DIRECTORY` bit.
pub const CSBFT_LOG_DIRECTORY: u32 = 0x20;
/// `CSBFT_LOG` `'!'`: a log file, returned by `CertSrvBackupGetBackupLogsW`.
pub const CSBFT_LOG: CSBFT = 0x01 | CSBFT_LOG_DIRECTORY as u16;
/// `CSBFT_LOG_DIR` (0x82): the log directory, from `CertSrvRestoreGetDatabaseLocationsW`.
pub const CSBFT_LOG_DIR: CSBFT = 0x02 | CSBFT_DIRECTORY as u16;
/// `CSBFT_CHECKPOINT_DIR` (0x83): the checkpoint (system) directory.
pub const CSBFT_CHECKPOINT_DIR: CSBFT = 0x03 | CSBFT_DIRECTORY as u16;
/// `CSBFT_CERTSERVER_DATABASE` `'D'`: the database file.
pub const CSBFT_CERTSERVER_DATABASE: CSBFT = 0x04 | CSBFT_DATABASE_DIRECTORY as u16;
/// `CSBFT_PATCH_FILE` `'%'`: Windows 2000 patch files (never returned here).
pub const CSBFT_PATCH_FILE: CSBFT = 0x05 | CSBFT_LOG_DIRECTORY as u16;
/// `CSBFT_UNKNOWN` (0x0F).
pub const CSBFT_UNKNOWN: CSBFT = 0x0F;

/// `CSCONTROL_SHUTDOWN`: stop Certificate Services.
pub const CSCONTROL_SHUTDOWN: u32 = 0x0000_0001;
/// `CSCONTROL_SUSPEND`: accepted, no effect (MS-CSRA 3.1.4.1.15).
pub const CSCONTROL_SUSPEND: u32 = 0x0000_0002;
/// `CSCONTROL_RESTART`: accepted, no effect (MS-CSRA 3.1.4.1.15).
pub const CSCONTROL_RESTART: u32 = 0x0000_0003;

/// `szBACKUPANNOTATION`.
pub const szBACKUPANNOTATION: &str = "Cert Server Backup Interface";
/// `szRESTOREANNOTATION`.
pub const szRESTOREANNOTATION: &str = "Cert Server Restore Interface";

/// `wszDBBACKUPSUBDIR`: the subfolder of a certutil backup directory.
pub const wszDBBACKUPSUBDIR: &str = "DataBase";
/// `wszDBBACKUPCERTBACKDAT`: the saved `CertSrvRestoreGetDatabaseLocationsW` list.
pub const wszDBBACKUPCERTBACKDAT: &str = "certbkxp.dat";
/// `szDBBASENAMEPARM`: the ESE base name (`edb.log`, `edbXXXXX.log`, `edb.chk`).
pub const szDBBASENAMEPARM: &str = "edb";
/// `wszLOGPATH`: the default folder `%SystemRoot%\System32\CertLog`.
pub const wszLOGPATH: &str = "CertLog";
/// `wszDBFILENAMEEXT`.
pub const wszDBFILENAMEEXT: &str = ".edb";
/// `wszLOGFILENAMEEXT`.
pub const wszLOGFILENAMEEXT: &str = ".log";
/// `wszREGKEYRESTOREINPROGRESS`: the restore marker key.
pub const wszREGKEYRESTOREINPROGRESS: &str = "RestoreInProgress";

/// `DBFLAGS_CIRCULARLOGGING`.
pub const DBFLAGS_CIRCULARLOGGING: u32 = 0x0000_0004;

/// `IF_LOCKICERTREQUEST`.
pub const IF_LOCKICERTREQUEST: u32 = 0x0000_0001;
/// `IF_NOREMOTEICERTREQUEST`.
pub const IF_NOREMOTEICERTREQUEST: u32 = 0x0000_0002;
/// `IF_NOLOCALICERTREQUEST`.
pub const IF_NOLOCALICERTREQUEST: u32 = 0x0000_0004;
/// `IF_NORPCICERTREQUEST`.
pub const IF_NORPCICERTREQUEST: u32 = 0x0000_0008;
/// `IF_NOREMOTEICERTADMIN`.
pub const IF_NOREMOTEICERTADMIN: u32 = 0x0000_0010;
/// `IF_NOLOCALICERTADMIN`.
pub const IF_NOLOCALICERTADMIN: u32 = 0x0000_0020;
/// `IF_NOREMOTEICERTADMINBACKUP`: blocks remote backup calls.
pub const IF_NOREMOTEICERTADMINBACKUP: u32 = 0x0000_0040;
/// `IF_NOLOCALICERTADMINBACKUP`: blocks local backup calls.
pub const IF_NOLOCALICERTADMINBACKUP: u32 = 0x0000_0080;
/// `IF_NOSNAPSHOTBACKUP`.
pub const IF_NOSNAPSHOTBACKUP: u32 = 0x0000_0100;
/// `IF_ENFORCEENCRYPTICERTREQUEST`.
pub const IF_ENFORCEENCRYPTICERTREQUEST: u32 = 0x0000_0200;
/// `IF_ENFORCEENCRYPTICERTADMIN`.
pub const IF_ENFORCEENCRYPTICERTADMIN: u32 = 0x0000_0400;
/// `IF_DEFAULT`: remote backup is blocked by default.
pub const IF_DEFAULT: u32 = IF_NOREMOTEICERTADMINBACKUP
    | IF_LOCKICERTREQUEST
    | IF_ENFORCEENCRYPTICERTREQUEST
    | IF_ENFORCEENCRYPTICERTADMIN;

/// ESE `JET_bitBackupIncremental`: the wire meaning of `grbitJet = 1`.
pub const JET_bitBackupIncremental: u32 = 0x0000_0001;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_csbft_values_match_the_header() {
        assert_eq!(CSBFT_LOG, b'!' as u16);
        assert_eq!(CSBFT_LOG_DIR, 0x82);
        assert_eq!(CSBFT_CHECKPOINT_DIR, 0x83);
        assert_eq!(CSBFT_CERTSERVER_DATABASE, b'D' as u16);
        assert_eq!(CSBFT_PATCH_FILE, b'%' as u16);
    }

    #[test]
    fn if_default_blocks_remote_backup() {
        assert_eq!(IF_DEFAULT, 0x641);
        assert_ne!(IF_DEFAULT & IF_NOREMOTEICERTADMINBACKUP, 0);
    }
}

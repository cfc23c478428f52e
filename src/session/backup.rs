//! The backup session state machine (spec §5.2–§5.11, §6).
//!
//! ```text
//! Prepared(kind) ──OpenFile──▶ FileOpen(name, offset) ──Close──▶ Prepared
//!      │                                                    
//!      └──End──▶ (handle dead)       any state ──CA stops──▶ Disconnected ──End──▶ dead
//! ```
//! Beside the state, a session accumulates what it listed and what it read to EOF:
//! truncation and the "last backup" record depend on it.

use crate::ca::files::FileReader;
use crate::ca::Ca;
use crate::core::consts::{CSBFT_CERTSERVER_DATABASE, CSBFT_LOG};
use crate::core::{Error, Result, WideList};
use crate::machine::{Machine, WinPath};

/// Full or incremental.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupKind {
    /// `CSBACKUP_TYPE_FULL`.
    Full,
    /// `CSBACKUP_TYPE_LOGS_ONLY`.
    LogsOnly,
}

/// A file the session listed.
#[derive(Debug, Clone)]
pub struct ListedFile {
    /// The UNC name as listed (without prefix).
    pub unc: String,
    /// The file.
    pub path: WinPath,
    /// True for the database, false for a log.
    pub is_database: bool,
    /// Read to end of file in this session.
    pub secured: bool,
}

/// The file currently open.
#[derive(Debug)]
pub struct OpenFile {
    /// Index into [`BackupSession::listed`].
    pub index: usize,
    /// The reader.
    pub reader: FileReader,
}

/// One backup session.
#[derive(Debug)]
pub struct BackupSession {
    /// Full or logs only.
    pub kind: BackupKind,
    /// The client that prepared it.
    pub client: u64,
    /// The file open now, if any.
    pub open: Option<OpenFile>,
    /// The read buffer size chosen at the first `OpenFile` (its hint, rounded).
    pub read_buffer_size: Option<u32>,
    /// Files listed by GetDatabaseNames and GetBackupLogs.
    pub listed: Vec<ListedFile>,
    /// True once GetDatabaseNames succeeded.
    pub database_listed: bool,
    /// The log generations listed by GetBackupLogs.
    pub log_range: Option<(u32, u32)>,
    /// True once RestoreGetDatabaseLocations succeeded on this handle.
    pub locations_fetched: bool,
    /// True once TruncateLogs succeeded.
    pub truncated: bool,
    /// True once the backup was recorded as the last full/incremental.
    pub recorded: bool,
    /// True once the CA stopped under this session.
    pub disconnected: bool,
}

/// Rounds a read hint as `CertSrvBackupOpenFileW` documents: a power of two between
/// 64 KiB and 4 MiB; 0 picks 512 KiB.
pub fn read_buffer_size(hint: u32) -> u32 {
    const MIN: u32 = 64 << 10;
    const MAX: u32 = 4 << 20;
    if hint == 0 {
        return 512 << 10;
    }
    let h = hint.clamp(MIN, MAX);
    let lower = 1u32 << (31 - h.leading_zeros());
    let upper = lower.saturating_mul(2).min(MAX);
    if h - lower <= upper - h {
        lower
    } else {
        upper
    }
}

impl BackupSession {
    /// A new session.
    pub fn new(kind: BackupKind, client: u64) -> Self {
        BackupSession {
            kind,
            client,
            open: None,
            read_buffer_size: None,
            listed: Vec::new(),
            database_listed: false,
            log_range: None,
            locations_fetched: false,
            truncated: false,
            recorded: false,
            disconnected: false,
        }
    }

    fn state(&self) -> String {
        match &self.open {
            Some(f) => format!(
                "file {} is open at byte {} of {}",
                self.listed[f.index].unc,
                f.reader.offset(),
                f.reader.size()
            ),
            None => "no file is open".into(),
        }
    }

    /// `CertSrvBackupGetDatabaseNamesW`.
    pub fn database_names(&mut self, ca: &mut Ca, m: &Machine) -> Result<WideList> {
        const CALL: &str = "CertSrvBackupGetDatabaseNamesW";
        ca.check_files(m, CALL)?;
        if self.kind != BackupKind::Full {
            return Err(Error::InvalidBackupSequence {
                call: CALL,
                why: "this session was prepared with CSBACKUP_TYPE_LOGS_ONLY; database files are listed only in a CSBACKUP_TYPE_FULL session".into(),
            });
        }
        let path = ca.database_path();
        let unc = m.unc(&path);
        if !self.listed.iter().any(|f| f.is_database) {
            self.listed.push(ListedFile {
                unc: unc.clone(),
                path,
                is_database: true,
                secured: false,
            });
        }
        self.database_listed = true;
        Ok(WideList::from_entries([(
            Some(CSBFT_CERTSERVER_DATABASE),
            unc.as_str(),
        )]))
    }

    /// `CertSrvBackupGetBackupLogsW`: rolls the current log and lists the generations
    /// this backup needs.
    pub fn backup_logs(&mut self, ca: &mut Ca, m: &Machine) -> Result<WideList> {
        ca.check_files(m, "CertSrvBackupGetBackupLogsW")?;
        let sealed = ca.roll(m)?;
        let low = match self.kind {
            BackupKind::Full => ca.checkpoint().gen,
            BackupKind::LogsOnly => ca.last_backup_high().map_or(1, |h| h + 1),
        };
        let low = self.log_range.map_or(low, |(l, _)| l.min(low));
        let on_disk = ca.log_generations_on_disk(m);
        // This session's own truncation may have deleted the start of its range (those
        // logs were secured): a later listing starts at the first generation still there.
        let low = if self.truncated {
            on_disk
                .iter()
                .copied()
                .find(|g| *g >= low)
                .unwrap_or(sealed)
                .min(sealed)
        } else {
            low
        };
        let mut list = WideList::new();
        for g in low..=sealed {
            if !on_disk.contains(&g) {
                return Err(Error::FileNotFound {
                    call: "CertSrvBackupGetBackupLogsW",
                    why: format!(
                        "log generation {g} ({}) that this backup needs is no longer in the log directory",
                        crate::ca::format::log_file_name(g)
                    ),
                });
            }
            let path = ca.log_path(g);
            let unc = m.unc(&path);
            list.push(Some(CSBFT_LOG), &unc);
            if !self.listed.iter().any(|f| f.unc == unc) {
                self.listed.push(ListedFile {
                    unc,
                    path,
                    is_database: false,
                    secured: false,
                });
            }
        }
        self.log_range = Some((low, sealed));
        Ok(list)
    }

    /// `CertSrvBackupOpenFileW`.
    pub fn open_file(&mut self, ca: &mut Ca, m: &Machine, name: &str, hint: u32) -> Result<u64> {
        const CALL: &str = "CertSrvBackupOpenFileW";
        ca.check_files(m, CALL)?;
        if self.open.is_some() {
            return Err(Error::sequence(
                CALL,
                format!(
                    "{}; call CertSrvBackupClose before opening another file",
                    self.state()
                ),
            ));
        }
        let found = self.listed.iter().position(|f| {
            f.unc.eq_ignore_ascii_case(name) || f.unc.to_lowercase() == name.to_lowercase()
        });
        let index = match found {
            Some(i) => i,
            None => return Err(self.not_openable(ca, m, name)),
        };
        let host = m.host_path_of(&self.listed[index].path);
        let reader = if self.listed[index].is_database {
            FileReader::open_edb(&host)?
        } else {
            FileReader::open_plain(&host)?
        };
        if self.read_buffer_size.is_none() {
            self.read_buffer_size = Some(read_buffer_size(hint));
        }
        let size = reader.size();
        if size == 0 {
            self.listed[index].secured = true;
        }
        self.open = Some(OpenFile { index, reader });
        Ok(size)
    }

    fn not_openable(&self, ca: &Ca, m: &Machine, name: &str) -> Error {
        const CALL: &str = "CertSrvBackupOpenFileW";
        let mut chars = name.chars();
        let first = chars.next();
        let rest: String = chars.collect();
        if let Some(c) = first {
            if self
                .listed
                .iter()
                .any(|f| f.unc.eq_ignore_ascii_case(&rest))
            {
                return Error::FileNotFound {
                    call: CALL,
                    why: format!(
                        "{name:?} still carries its CSBFT prefix {c:?} ({:#04x}); strip the first WCHAR of each list entry before OpenFile",
                        c as u32
                    ),
                };
            }
        }
        if ca
            .dynamic_files(m)
            .iter()
            .any(|p| m.unc(p).eq_ignore_ascii_case(name))
        {
            return Error::invalid_arg(
                CALL,
                format!("{name:?} is a dynamic file (CertSrvBackupGetDynamicFileListW); the backup API does not serve it, copy it by other means"),
            );
        }
        let known: Vec<&str> = self.listed.iter().map(|f| f.unc.as_str()).collect();
        Error::FileNotFound {
            call: CALL,
            why: if known.is_empty() {
                format!("{name:?} was not listed in this session; call CertSrvBackupGetDatabaseNamesW or CertSrvBackupGetBackupLogsW first and open a name they return")
            } else {
                format!(
                    "{name:?} is not in this session's backup set; it holds {}",
                    known.join(", ")
                )
            },
        }
    }

    /// `CertSrvBackupRead`: fills `buf` unless the file ends; 0 bytes at EOF.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        const CALL: &str = "CertSrvBackupRead";
        let Some(f) = self.open.as_mut() else {
            return Err(Error::sequence(
                CALL,
                "no file is open; call CertSrvBackupOpenFileW first",
            ));
        };
        if buf.is_empty() {
            return Err(Error::invalid_arg(
                CALL,
                "cbBuffer is 0; pass a buffer of at least one byte",
            ));
        }
        let n = f
            .reader
            .read(buf)
            .map_err(|e| Error::io(format!("reading {}", self.listed[f.index].unc), e))?;
        if f.reader.at_eof() {
            self.listed[f.index].secured = true;
        }
        Ok(n)
    }

    /// `CertSrvBackupClose`.
    pub fn close(&mut self) -> Result<()> {
        if self.open.take().is_none() {
            return Err(Error::sequence(
                "CertSrvBackupClose",
                "no file is open; Close follows a successful CertSrvBackupOpenFileW",
            ));
        }
        Ok(())
    }

    /// True if both lists were fetched (the database list in a full session) and every
    /// listed file was read to EOF: the backup is complete.
    pub fn is_complete(&self) -> bool {
        (self.kind != BackupKind::Full || self.database_listed)
            && self.log_range.is_some()
            && self.listed.iter().all(|f| f.secured)
    }

    /// The files listed but not read to EOF, and what lists are missing.
    pub fn unsecured(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.kind == BackupKind::Full && !self.database_listed {
            v.push("the database (CertSrvBackupGetDatabaseNamesW was not called)".to_string());
        }
        if self.log_range.is_none() {
            v.push("the logs (CertSrvBackupGetBackupLogsW was not called)".to_string());
        }
        v.extend(
            self.listed
                .iter()
                .filter(|f| !f.secured)
                .map(|f| format!("{} (not read to end of file)", f.unc)),
        );
        v
    }

    /// `CertSrvBackupTruncateLogs`.
    pub fn truncate(&mut self, ca: &mut Ca, m: &Machine) -> Result<Vec<u32>> {
        ca.check_files(m, "CertSrvBackupTruncateLogs")?;
        let missing = self.unsecured();
        if !missing.is_empty() {
            return Err(Error::sequence(
                "CertSrvBackupTruncateLogs",
                format!(
                    "not every file of the backup set was secured; truncating now would make the backup unrestorable. Missing: {}",
                    missing.join("; ")
                ),
            ));
        }
        let (_, high) = self.log_range.expect("checked by unsecured()");
        let deleted = ca.truncate_logs(m, high)?;
        self.truncated = true;
        self.record(ca, m)?;
        Ok(deleted)
    }

    fn record(&mut self, ca: &mut Ca, m: &Machine) -> Result<()> {
        if !self.recorded {
            if let Some((_, high)) = self.log_range {
                ca.record_backup(m, self.kind == BackupKind::Full, high)?;
                self.recorded = true;
            }
        }
        Ok(())
    }

    /// `CertSrvBackupEnd`: closes an open file, records a complete backup, releases the freeze.
    pub fn end(mut self, ca: &mut Ca, m: &Machine) -> Result<()> {
        self.open = None;
        if self.disconnected {
            return Ok(());
        }
        if self.is_complete() {
            self.record(ca, m)?;
        }
        if self.kind == BackupKind::Full {
            ca.unfreeze(m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::read_buffer_size;

    #[test]
    fn read_hint_rounds_to_powers_of_two_in_range() {
        assert_eq!(read_buffer_size(0), 512 << 10);
        assert_eq!(read_buffer_size(1), 64 << 10);
        assert_eq!(read_buffer_size(100_000), 128 << 10);
        assert_eq!(read_buffer_size(524_288), 512 << 10);
        assert_eq!(read_buffer_size(700_000), 512 << 10);
        assert_eq!(read_buffer_size(900_000), 1 << 20);
        assert_eq!(read_buffer_size(u32::MAX), 4 << 20);
    }
}

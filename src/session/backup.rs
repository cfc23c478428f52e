//! The backup session state machine (spec §5.2–§5.11, §6).
//!
//! A session is `Live` until the CA stops under it, then `Disconnected`: its open file is dropped, nothing more is
//! recorded, and only `CertSrvBackupEnd` works. A live session has two independent parts,
//! each an enum whose transitions consume the state they leave:
//!
//! ```text
//! file: Unopened ──OpenFile──▶ Open ──Close──▶ Closed ──OpenFile──▶ Open ...
//!       (the first OpenFile sizes the read buffer; Open and Closed keep that size)
//! logs: NotListed ──GetBackupLogs──▶ Listed ──TruncateLogs──▶ Truncated
//!       (Truncated: the backup is recorded as the last full/incremental one)
//!
//! Live ──CA stops──▶ Disconnected            Live | Disconnected ──End──▶ (handle dead)
//! ```
//!
//! So a file open in a disconnected session, a file open before the read buffer was sized,
//! a truncation before the logs were listed, or a truncated session that is not recorded
//! cannot be written. Beside its state, a live session keeps what it listed and which of
//! those files it read to end of file: truncation and the "last backup" record depend on it.

use super::transition;
use crate::ca::files::FileReader;
use crate::ca::format::{BackupEnd, BackupSetKind};
use crate::ca::Ca;
use crate::core::consts::{CSBFT_CERTSERVER_DATABASE, CSBFT_LOG};
use crate::core::outbuf::OutByte;
use crate::core::{Call, Error, Result, WideList};
use crate::machine::{Machine, WinPath};

/// Full or incremental.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackupKind {
    /// `CSBACKUP_TYPE_FULL`.
    Full,
    /// `CSBACKUP_TYPE_LOGS_ONLY`.
    LogsOnly,
}

/// A file the session listed.
#[derive(Debug, Clone)]
pub(crate) struct ListedFile {
    /// The UNC name as listed (without prefix).
    pub unc: String,
    /// The file.
    pub path: WinPath,
    /// True for the database, false for a log.
    pub is_database: bool,
    /// Read to end of file in this session.
    pub secured: bool,
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

/// No file is open, and one was before: the read buffer is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClosedFile {
    read_buffer: u32,
}

impl ClosedFile {
    /// The state of a session whose first `OpenFile` passed `hint`: only that call sizes
    /// the read buffer (spec §5.5).
    fn first(hint: u32) -> ClosedFile {
        ClosedFile {
            read_buffer: read_buffer_size(hint),
        }
    }

    /// `OpenFile` succeeded.
    fn open(self, index: usize, reader: FileReader) -> OpenFile {
        OpenFile {
            read_buffer: self.read_buffer,
            index,
            reader,
        }
    }
}

/// The one file open in a session (spec §6.1: `FileOpen(name, offset, size)`).
#[derive(Debug)]
pub(crate) struct OpenFile {
    read_buffer: u32,
    /// Index into the session's listed files.
    index: usize,
    reader: FileReader,
}

impl OpenFile {
    /// `Close` succeeded.
    fn close(self) -> ClosedFile {
        ClosedFile {
            read_buffer: self.read_buffer,
        }
    }
}

/// The file side of a live session.
#[derive(Debug)]
pub(crate) enum FileState {
    /// No `OpenFile` succeeded yet; the read buffer is not sized.
    Unopened,
    /// No file is open.
    Closed(ClosedFile),
    /// One file is open (boxed: a session stays small enough to be moved without a
    /// `memcpy` call as it is prepared, stored in the session table and ended).
    Open(Box<OpenFile>),
}

/// The log generations a `GetBackupLogs` listed, lowest and highest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogRange {
    /// The lowest generation.
    pub low: u32,
    /// The highest generation (the one the listing sealed).
    pub high: u32,
    /// The set the listing sealed into its last log (its backup end mark), if it could
    /// count the set's transactions.
    pub set: Option<BackupEnd>,
}

/// The log side of a live session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logs {
    /// `CertSrvBackupGetBackupLogsW` was not called.
    NotListed,
    /// The latest listing; not truncated.
    Listed(LogRange),
    /// `CertSrvBackupTruncateLogs` succeeded: the backup is recorded as the last
    /// full/incremental one. The range is the latest listing (one after the truncation
    /// starts at the first generation still on disk).
    Truncated(LogRange),
}

impl Logs {
    /// The latest listing, if any.
    pub(crate) fn range(self) -> Option<LogRange> {
        match self {
            Logs::NotListed => None,
            Logs::Listed(r) | Logs::Truncated(r) => Some(r),
        }
    }

    /// A new listing: the session stays truncated if it was.
    fn listed(self, r: LogRange) -> Logs {
        match self {
            Logs::NotListed | Logs::Listed(_) => Logs::Listed(r),
            Logs::Truncated(_) => Logs::Truncated(r),
        }
    }
}

/// A session the CA still serves.
#[derive(Debug)]
pub(crate) struct LiveBackup {
    kind: BackupKind,
    client: u64,
    /// Files listed by GetDatabaseNames and GetBackupLogs, in listing order.
    listed: Vec<ListedFile>,
    logs: Logs,
    file: FileState,
}

/// A session the CA stopped under: only `CertSrvBackupEnd` works on it, and ending it
/// records nothing and releases nothing (the stop did).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DisconnectedBackup {
    /// Full or logs only.
    pub kind: BackupKind,
    /// The client that prepared it.
    pub client: u64,
}

/// One backup session.
#[derive(Debug)]
pub(crate) enum BackupSession {
    /// The CA serves it.
    Live(LiveBackup),
    /// The CA stopped under it.
    Disconnected(DisconnectedBackup),
}

impl BackupSession {
    /// A new session: live, nothing listed, no file opened.
    pub(crate) fn new(kind: BackupKind, client: u64) -> Self {
        BackupSession::Live(LiveBackup {
            kind,
            client,
            listed: Vec::new(),
            logs: Logs::NotListed,
            file: FileState::Unopened,
        })
    }

    /// Full or logs only.
    pub(crate) fn kind(&self) -> BackupKind {
        match self {
            BackupSession::Live(b) => b.kind,
            BackupSession::Disconnected(d) => d.kind,
        }
    }

    /// The client that prepared it.
    pub(crate) fn client(&self) -> u64 {
        match self {
            BackupSession::Live(b) => b.client,
            BackupSession::Disconnected(d) => d.client,
        }
    }

    /// True once the CA stopped under this session.
    pub(crate) fn is_disconnected(&self) -> bool {
        matches!(self, BackupSession::Disconnected(_))
    }

    /// The CA service went away: a live session becomes disconnected (its open file is
    /// dropped).
    pub(crate) fn disconnect(&mut self) {
        let hole = BackupSession::Disconnected(DisconnectedBackup {
            kind: self.kind(),
            client: self.client(),
        });
        transition(self, hole, |s| match s {
            BackupSession::Live(b) => BackupSession::Disconnected(b.disconnect()),
            d => d,
        });
    }

    /// `CertSrvBackupEnd`: closes an open file, records a complete backup, releases the
    /// freeze. A disconnected session has nothing left to do.
    #[inline]
    pub(crate) fn end(&mut self, ca: &mut Ca, m: &Machine) -> Result<()> {
        match self {
            BackupSession::Live(b) => b.end(ca, m),
            BackupSession::Disconnected(_) => Ok(()),
        }
    }
}

impl LiveBackup {
    /// The open file's listed name and read offset, if a file is open.
    pub(crate) fn open_position(&self) -> Option<(&str, u64)> {
        match &self.file {
            FileState::Open(f) => Some((self.listed[f.index].unc.as_str(), f.reader.offset())),
            _ => None,
        }
    }

    fn database_listed(&self) -> bool {
        self.listed.iter().any(|f| f.is_database)
    }

    fn state(&self) -> String {
        match &self.file {
            FileState::Open(f) => format!(
                "file {} is open at byte {} of {}",
                self.listed[f.index].unc,
                f.reader.offset(),
                f.reader.size()
            ),
            _ => "no file is open".into(),
        }
    }

    /// `CertSrvBackupGetDatabaseNamesW`.
    pub(crate) fn database_names(&mut self, ca: &mut Ca, m: &Machine) -> Result<WideList> {
        const CALL: &str = Call::BackupGetDatabaseNames.name();
        ca.check_files(m, CALL)?;
        if self.kind != BackupKind::Full {
            return Err(Error::InvalidBackupSequence {
                call: CALL,
                why: "this session was prepared with CSBACKUP_TYPE_LOGS_ONLY; database files are listed only in a CSBACKUP_TYPE_FULL session".into(),
            });
        }
        let path = ca.database_path();
        let unc = m.unc(&path);
        if !self.database_listed() {
            self.listed.push(ListedFile {
                unc: unc.clone(),
                path,
                is_database: true,
                secured: false,
            });
        }
        Ok(WideList::from_entries([(
            Some(CSBFT_CERTSERVER_DATABASE),
            unc.as_str(),
        )]))
    }

    /// `CertSrvBackupGetBackupLogsW`: rolls the current log and lists the generations
    /// this backup needs.
    pub(crate) fn backup_logs(&mut self, ca: &mut Ca, m: &Machine) -> Result<WideList> {
        const CALL: &str = Call::BackupGetBackupLogs.name();
        ca.check_files(m, CALL)?;
        // The range ends with the generation the roll seals (the current one); the
        // checkpoint (frozen in a full session) and the recorded backups do not move.
        let sealing = ca.current().generation;
        let (low, kind) = match self.kind {
            BackupKind::Full => (ca.checkpoint().generation, BackupSetKind::Full),
            BackupKind::LogsOnly => (
                ca.last_backup_high().map_or(1, |h| h + 1),
                BackupSetKind::Incremental,
            ),
        };
        let low = self.logs.range().map_or(low, |r| r.low.min(low));
        // This session's own truncation may have deleted the start of its range (those
        // logs were secured): a later listing starts at the first generation still there.
        let low = if let Logs::Truncated(_) = self.logs {
            ca.log_generations_on_disk(m)
                .into_iter()
                .find(|g| *g >= low)
                .unwrap_or(sealing)
                .min(sealing)
        } else {
            low
        };
        let (sealed, set) = ca.roll_for_backup(m, kind, low)?;
        let on_disk = ca.log_generations_on_disk(m);
        let mut list = WideList::new();
        for g in low..=sealed {
            if !on_disk.contains(&g) {
                return Err(Error::FileNotFound {
                    call: CALL,
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
        self.logs = self.logs.listed(LogRange {
            low,
            high: sealed,
            set,
        });
        Ok(list)
    }

    /// `CertSrvBackupOpenFileW`.
    pub(crate) fn open_file(
        &mut self,
        ca: &mut Ca,
        m: &Machine,
        name: &str,
        hint: u32,
    ) -> Result<u64> {
        const CALL: &str = Call::BackupOpenFile.name();
        let found = self.listed.iter().position(|f| {
            f.unc.eq_ignore_ascii_case(name) || f.unc.to_lowercase() == name.to_lowercase()
        });
        ca.check_files_opening(m, CALL, found.map(|i| &self.listed[i].path))?;
        let closed = match &self.file {
            FileState::Open(_) => {
                return Err(Error::sequence(
                    CALL,
                    format!(
                        "{}; call CertSrvBackupClose before opening another file",
                        self.state()
                    ),
                ))
            }
            FileState::Unopened => ClosedFile::first(hint),
            FileState::Closed(c) => *c,
        };
        let index = match found {
            Some(i) => i,
            None => return Err(self.not_openable(ca, m, name)),
        };
        // Opened beneath the machine root, a link refused (machine::fs).
        let path = &self.listed[index].path;
        let file = m.fs().open(path)?;
        let host = m.host_path_of(path);
        let reader = if self.listed[index].is_database {
            FileReader::open_edb(file, &host)?
        } else {
            FileReader::open_plain(file, &host)?
        };
        let size = reader.size();
        if size == 0 {
            self.listed[index].secured = true;
        }
        self.file = FileState::Open(Box::new(closed.open(index, reader)));
        Ok(size)
    }

    fn not_openable(&self, ca: &Ca, m: &Machine, name: &str) -> Error {
        const CALL: &str = Call::BackupOpenFile.name();
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

    /// `CertSrvBackupRead`: fills `buf` unless the file ends; 0 bytes at EOF. `buf` may be
    /// uninitialised: it is only written.
    pub(crate) fn read<B: OutByte>(&mut self, buf: &mut [B]) -> Result<usize> {
        const CALL: &str = Call::BackupRead.name();
        let FileState::Open(f) = &mut self.file else {
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
    pub(crate) fn close(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.file, FileState::Unopened) {
            FileState::Open(f) => {
                self.file = FileState::Closed(f.close());
                Ok(())
            }
            other => {
                self.file = other;
                Err(Error::sequence(
                    Call::BackupClose.name(),
                    "no file is open; Close follows a successful CertSrvBackupOpenFileW",
                ))
            }
        }
    }

    /// True if both lists were fetched (the database list in a full session) and every
    /// listed file was read to EOF: the backup is complete.
    pub(crate) fn is_complete(&self) -> bool {
        (self.kind != BackupKind::Full || self.database_listed())
            && self.logs != Logs::NotListed
            && self.listed.iter().all(|f| f.secured)
    }

    /// The files listed but not read to EOF, and what lists are missing.
    pub(crate) fn unsecured(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.kind == BackupKind::Full && !self.database_listed() {
            v.push("the database (CertSrvBackupGetDatabaseNamesW was not called)".to_string());
        }
        if self.logs == Logs::NotListed {
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

    /// `CertSrvBackupTruncateLogs`: deletes the logs the backup secured and records the
    /// backup (Listed → Truncated). Returns the generations deleted.
    pub(crate) fn truncate(&mut self, ca: &mut Ca, m: &Machine) -> Result<Vec<u32>> {
        const CALL: &str = Call::BackupTruncateLogs.name();
        ca.check_files(m, CALL)?;
        let missing = self.unsecured();
        let range = match self.logs {
            Logs::Listed(r) | Logs::Truncated(r) if missing.is_empty() => r,
            _ => {
                return Err(Error::sequence(
                    CALL,
                    format!(
                        "not every file of the backup set was secured; truncating now would make the backup unrestorable. Missing: {}",
                        missing.join("; ")
                    ),
                ))
            }
        };
        let deleted = ca.truncate_logs(m, range.high)?;
        let first = self.logs == Logs::Listed(range);
        self.logs = Logs::Truncated(range);
        if first {
            // record_backup sets the CA's marks before it saves them: if the save fails,
            // the backup is recorded all the same and the error is this call's.
            ca.record_backup(m, self.kind == BackupKind::Full, range.high, range.set)?;
        }
        Ok(deleted)
    }

    /// The CA stopped under the session.
    fn disconnect(self) -> DisconnectedBackup {
        DisconnectedBackup {
            kind: self.kind,
            client: self.client,
        }
    }

    /// `CertSrvBackupEnd` of a live session: drops an open file, records a complete
    /// backup that TruncateLogs did not record, releases the freeze of a full backup. The
    /// session is ended where it lies (its table drops it next), not moved out first.
    #[inline]
    pub(crate) fn end(&mut self, ca: &mut Ca, m: &Machine) -> Result<()> {
        let complete = self.is_complete();
        self.file = FileState::Unopened;
        let kind = self.kind;
        if let (true, Logs::Listed(r)) = (complete, self.logs) {
            ca.record_backup(m, kind == BackupKind::Full, r.high, r.set)?;
        }
        if kind == BackupKind::Full {
            ca.unfreeze(m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disconnected_session_keeps_only_its_kind_and_client() {
        let mut s = BackupSession::new(BackupKind::LogsOnly, 3);
        let BackupSession::Live(b) = &s else {
            panic!("a new session is live")
        };
        assert_eq!(b.logs, Logs::NotListed);
        assert!(matches!(b.file, FileState::Unopened));
        assert!(!b.is_complete());
        assert_eq!(b.unsecured().len(), 1, "{:?}", b.unsecured());
        s.disconnect();
        assert!(s.is_disconnected());
        assert_eq!((s.kind(), s.client()), (BackupKind::LogsOnly, 3));
        s.disconnect();
        assert!(s.is_disconnected());
    }

    #[test]
    fn close_without_open_keeps_the_state() {
        let BackupSession::Live(mut b) = BackupSession::new(BackupKind::Full, 1) else {
            unreachable!()
        };
        let e = b.close().unwrap_err();
        assert_eq!(e.hresult(), crate::core::HRESULT::E_UNEXPECTED);
        assert!(matches!(b.file, FileState::Unopened));
        let e = b.read(&mut [0u8; 4]).unwrap_err();
        assert_eq!(e.hresult(), crate::core::HRESULT::E_UNEXPECTED);
    }

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

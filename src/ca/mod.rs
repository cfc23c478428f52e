//! The emulated Certification Authority: service state, database records,
//! log generations, checkpoint, and the files that hold them.
//!
//! The model (documented for users in `docs/FILE-FORMATS.md`):
//! * every change is a transaction appended to the current log `edb.log`;
//! * after `log_capacity` transactions `edb.log` is sealed and renamed `edbXXXXX.log`;
//! * the `.edb` holds the state up to its checkpoint position, `edb.chk` repeats it; it is
//!   a page file (`pager`): a checkpoint writes the pages changed since the last one;
//! * the checkpoint advances at each log roll and at a clean stop, except while a
//!   full backup is running (the database file is frozen for the backup's duration);
//! * starting the service replays the logs from the checkpoint (soft recovery), or
//!   runs the registered restore (hard recovery, see [`recovery`]).

#![forbid(unsafe_code)]

pub mod content;
pub(crate) mod files;
pub mod format;
pub(crate) mod pager;
pub mod record;
pub mod recovery;

use crate::core::consts::IF_DEFAULT;
use crate::core::mix::mix64;
use crate::core::{Error, Result};
use crate::machine::fs::{file_metadata, is_link_refusal, missing_is_ok, Dir, Meta, Rel};
use crate::machine::{Machine, WinPath};
use format::{
    encode_frame, encode_trailer, log_file_name, BackupEnd, BackupSetKind, Checkpoint, EdbHeader,
    LogHeader, Position,
};
use pager::Pager;
pub use record::{Record, Status, Txn};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Records read per step when records are streamed (a digest, `EmulatedCa::records`).
pub(crate) const RECORD_CHUNK: usize = 4096;

/// The first value of the virtual clock: 2026-01-01T00:00:00Z.
pub(crate) const CLOCK_EPOCH: i64 = 1_767_225_600;

/// How a CA is set up; also the `ca` section of a configuration file, where a missing field
/// keeps its default.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaConfig {
    /// The CA's common name; the database file is `<name>.edb`.
    pub name: String,
    /// Seed for every generated value (signature, serials, padding).
    pub seed: u64,
    /// Certificates already in the database when the CA is installed.
    pub records: u32,
    /// Size the `.edb` presents to backup (generated padding beyond the real content); in
    /// a configuration file a number of bytes or text such as `"512M"`.
    #[serde(with = "crate::core::size::opt_bytes")]
    pub edb_size: Option<u64>,
    /// Transactions per log generation before `edb.log` rolls.
    pub log_capacity: u32,
    /// `DBDirectory`.
    pub db_dir: String,
    /// `DBLogDirectory`.
    pub log_dir: String,
    /// `DBSystemDirectory` (holds `edb.chk`).
    pub system_dir: String,
    /// `InterfaceFlags`.
    pub interface_flags: u32,
}

/// The default folder of all CA database files.
pub(crate) const DEFAULT_CERTLOG: &str = r"C:\Windows\System32\CertLog";
/// Where the CA publishes its CRL and certificate (the dynamic files).
pub(crate) const CERTENROLL: &str = r"C:\Windows\System32\CertSrv\CertEnroll";

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            name: "Emu Issuing CA".into(),
            seed: 1,
            records: 16,
            edb_size: None,
            log_capacity: 64,
            db_dir: DEFAULT_CERTLOG.into(),
            log_dir: DEFAULT_CERTLOG.into(),
            system_dir: DEFAULT_CERTLOG.into(),
            interface_flags: IF_DEFAULT,
        }
    }
}

/// The CA service state (`"stopped"`, `"running"`, `"suspended"` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Not running: backup calls get `RPC_S_SERVER_UNAVAILABLE`.
    Stopped,
    /// Running and serving requests.
    Running,
    /// Running but suspended for a database restore (recovery in progress).
    Suspended,
}

/// A recorded backup (`DBLastFullBackup` / `DBLastIncrementalBackup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupMark {
    /// The highest log generation the backup holds.
    pub high_gen: u32,
    /// When (virtual clock).
    pub at: i64,
}

/// A recorded backup as the CA's registry keeps it (`BackupHistory`, the emulator's own
/// value): the set its log listing sealed, and the database lineage it belongs to. Hard
/// recovery looks a restored chain up here to say what a restore that ends early lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupRecord {
    /// The set: kind, listed generations, transactions in them.
    #[serde(flatten)]
    pub set: BackupEnd,
    /// The database signature of the logs (a restore starts a new one).
    pub signature: u64,
    /// When it was recorded (virtual clock).
    pub at: i64,
}

/// Recorded backups the registry keeps (the oldest is dropped first).
pub(crate) const BACKUP_HISTORY: usize = 64;

/// `edb.log` as the running service holds it: open for appending, and its folder (the
/// log directory, resolved beneath the root when the log was opened), where a roll
/// renames it and creates the next one.
struct OpenLog {
    file: File,
    dir: Dir,
    hasher: crc32fast::Hasher,
    /// Bytes in the file (all written by the CA).
    len: u64,
}

impl OpenLog {
    /// `edb.log` of the log folder `dir`, open for appending, holding `bytes` (its
    /// checksum so far covers them).
    fn holding(file: File, dir: Dir, bytes: &[u8]) -> OpenLog {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(bytes);
        OpenLog {
            file,
            dir,
            hasher,
            len: bytes.len() as u64,
        }
    }
}

/// The emulated CA. Not thread-safe by itself: the API layer keeps it behind its host's lock.
pub(crate) struct Ca {
    name: String,
    seed: u64,
    db_dir: WinPath,
    log_dir: WinPath,
    sys_dir: WinPath,
    interface_flags: u32,
    service: ServiceState,
    signature: u64,
    /// The page file: open while the service runs; after a stop or a crash it still shows
    /// the state the service had (nothing writes through it until a start replaces it).
    /// `None` before the first start of a CA opened from disk (reads then go to the `.edb`).
    db: Option<Pager>,
    next_request_id: u32,
    clock: i64,
    current: Position,
    log: Option<OpenLog>,
    /// `edb.chk` held open while the service runs (each checkpoint rewrites it in place),
    /// with its host path; opened by the first checkpoint after a start.
    chk: Option<(File, PathBuf)>,
    prev_crc: u32,
    checkpoint: Position,
    frozen: bool,
    flush_deferred: bool,
    log_capacity: u32,
    virtual_size: Option<u64>,
    last_full: Option<BackupMark>,
    last_incremental: Option<BackupMark>,
    last_recovery: Option<i64>,
    backup_history: Vec<BackupRecord>,
    pub(crate) restore: recovery::RestoreState,
    fingerprints: BTreeMap<OsString, Fingerprint>,
    /// The fingerprints of the CA's folders, taken before the listing of the last full
    /// scan that found nothing changed ([`Ca::check_files_opening`]).
    dir_fingerprints: Vec<(PathBuf, Fingerprint)>,
    /// `edb.log` was appended to since its fingerprint was taken (taken again, lazily, by
    /// the next [`Ca::check_files`]: no `stat` per transaction).
    log_fp_stale: bool,
    tampered: Option<String>,
    /// The buffer each transaction's frame is encoded into (kept between transactions).
    frame_buf: Vec<u8>,
    /// Full scans of the CA's files so far ([`Ca::scan_files`]): tests count them.
    #[cfg(test)]
    full_scans: std::cell::Cell<u32>,
}

/// What identifies a file's content cheaply: length, modification time, inode.
type Fingerprint = (u64, i128, u64);

/// What [`Ca::scan_files`] found.
#[derive(Debug, Default)]
struct Scan {
    /// Every file of the CA, by host path (as bytes: compared faster than by components).
    files: BTreeMap<OsString, Fingerprint>,
    /// The CA's folders, by host path.
    dirs: Vec<(PathBuf, Fingerprint)>,
}

fn fingerprint(m: &Meta) -> Fingerprint {
    (m.len, m.mtime_ns, m.ino)
}

/// The fingerprint of the entry `name` of `dir`, if it can be taken (a link never is).
fn fingerprint_of(dir: &Dir, name: &str) -> Option<Fingerprint> {
    dir.metadata(name).ok().map(|m| fingerprint(&m))
}

/// The current log, in `DBLogDirectory`.
pub(crate) const CURRENT_LOG: &str = "edb.log";
/// The page journal, in `DBDirectory`.
pub(crate) const JOURNAL: &str = "edb.jrn";
/// The checkpoint file, in `DBSystemDirectory`.
pub(crate) const CHECKPOINT_FILE: &str = "edb.chk";

/// The numbered log generations among the entries of `dir` (whatever their kind: a link
/// is refused when it is opened), sorted.
pub(crate) fn generations_in(dir: &Dir) -> Vec<u32> {
    let mut v: Vec<u32> = dir
        .read_dir()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| format::parse_log_file_name(&e.name))
        .collect();
    v.sort_unstable();
    v
}

/// The directory `p` held open, or `None` if it is not there (missing, or a file in its
/// place). A link on the way is refused, and any other failure to open it (out of file
/// descriptors, an I/O error) is that error: a folder that could not be opened is not
/// reported as a missing one.
pub(crate) fn open_dir_if_there(machine: &Machine, p: &WinPath) -> Result<Option<Dir>> {
    use std::io::ErrorKind::{NotADirectory, NotFound};
    match machine.fs().open_dir(p) {
        Ok(d) => Ok(Some(d)),
        Err(Error::Io { source, .. }) if matches!(source.kind(), NotFound | NotADirectory) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("name", &self.name)
            .field("service", &self.service)
            .field("records", &self.next_request_id.saturating_sub(1))
            .field("current", &self.current)
            .field("checkpoint", &self.checkpoint)
            .finish()
    }
}

/// The CA's `CertSvc\Configuration` values, kept in the emulated registry
/// (`<root>/registry/HKLM/SYSTEM/CurrentControlSet/Services/CertSvc/Configuration.json`),
/// so that a CA on a named root comes back with its state after the process restarts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RegistryValues {
    common_name: String,
    seed: u64,
    #[serde(rename = "DBDirectory")]
    db_directory: String,
    #[serde(rename = "DBLogDirectory")]
    db_log_directory: String,
    #[serde(rename = "DBSystemDirectory")]
    db_system_directory: String,
    interface_flags: u32,
    log_capacity: u32,
    edb_size: Option<u64>,
    #[serde(rename = "DBLastFullBackup")]
    db_last_full_backup: Option<BackupMark>,
    #[serde(rename = "DBLastIncrementalBackup")]
    db_last_incremental_backup: Option<BackupMark>,
    #[serde(rename = "DBLastRecovery")]
    db_last_recovery: Option<i64>,
    restore_in_progress: Option<recovery::RestoreMarker>,
    #[serde(default)]
    backup_history: Vec<BackupRecord>,
}

/// The emulated registry's folder of the CA's configuration, under the machine root.
pub(crate) const REGISTRY_DIR: &str = "registry/HKLM/SYSTEM/CurrentControlSet/Services/CertSvc";
/// The file of the CA's configuration in [`REGISTRY_DIR`].
const REGISTRY_FILE: &str = "Configuration.json";

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

impl Ca {
    /// The CA `cfg` describes, stopped, with an empty database at the first log position
    /// and no files yet: what [`Ca::install`] fills with its records and
    /// [`Ca::open_or_install`] with the registry values of an earlier process.
    fn configured(machine: &Machine, cfg: &CaConfig) -> Result<Ca> {
        Ok(Ca {
            name: cfg.name.clone(),
            seed: cfg.seed,
            db_dir: machine.parse_path(&cfg.db_dir)?,
            log_dir: machine.parse_path(&cfg.log_dir)?,
            sys_dir: machine.parse_path(&cfg.system_dir)?,
            interface_flags: cfg.interface_flags,
            service: ServiceState::Stopped,
            signature: 0,
            db: None,
            next_request_id: 1,
            clock: CLOCK_EPOCH,
            current: Position::FIRST,
            log: None,
            chk: None,
            prev_crc: 0,
            checkpoint: Position::FIRST,
            frozen: false,
            flush_deferred: false,
            log_capacity: cfg.log_capacity,
            virtual_size: cfg.edb_size,
            last_full: None,
            last_incremental: None,
            last_recovery: None,
            backup_history: Vec::new(),
            restore: Default::default(),
            fingerprints: BTreeMap::new(),
            dir_fingerprints: Vec::new(),
            log_fp_stale: false,
            tampered: None,
            frame_buf: Vec::new(),
            #[cfg(test)]
            full_scans: Default::default(),
        })
    }

    /// Installs a new CA on `machine`: creates its database, first log and checkpoint,
    /// its dynamic files, and starts the service.
    pub(crate) fn install(machine: &Machine, cfg: &CaConfig) -> Result<Ca> {
        if cfg.name.trim().is_empty() {
            return Err(Error::invalid_arg("install", "the CA name is empty"));
        }
        let bad_name = |why: String| Error::Path {
            kind: crate::core::PathRefusal::InvalidName,
            path: cfg.name.clone(),
            why,
        };
        if let Some(c) = cfg
            .name
            .chars()
            .find(|c| "\\/:*?\"<>|".contains(*c) || c.is_control())
        {
            return Err(bad_name(format!(
                "the CA name holds {c:?}, which cannot be part of its database file name"
            )));
        }
        if cfg.name.trim_end_matches([' ', '.']).is_empty() {
            return Err(bad_name("the CA name is not a file name".into()));
        }
        if cfg.log_capacity == 0 {
            return Err(Error::invalid_arg(
                "install",
                "log_capacity must be at least 1",
            ));
        }
        let mut ca = Ca::configured(machine, cfg)?;
        ca.db_dir.join(&format!("{}.edb", cfg.name))?;
        ca.signature = mix64(cfg.seed ^ mix64(name_hash(&cfg.name))) | 1;
        let Some(next) = cfg.records.checked_add(1) else {
            return Err(Error::invalid_arg("install", "too many records"));
        };
        ca.next_request_id = next;
        ca.clock = CLOCK_EPOCH + 60 * cfg.records as i64;
        let fs = machine.fs();
        for dir in [&ca.db_dir, &ca.log_dir, &ca.sys_dir] {
            fs.create_dir_all(dir)?;
        }
        // A reused root may hold an earlier CA's logs: a new database starts a new chain.
        let log = fs.open_dir(&ca.log_dir)?;
        for g in generations_in(&log) {
            log.remove(&log_file_name(g))?;
        }
        // Records 1..=n, written page by page once (record id has the clock of its creation).
        let seed = cfg.seed;
        let pager = Pager::create(
            fs.open_dir(&ca.db_dir)?,
            &ca.edb_name(),
            JOURNAL,
            &ca.header(0),
            |id| Record::generate(seed, id, CLOCK_EPOCH + 60 * (id as i64 - 1)),
        )?;
        ca.db = Some(pager);
        ca.write_chk(machine)?;
        ca.create_current_log(log)?;
        ca.write_dynamic_files(machine)?;
        ca.save_registry(machine)?;
        ca.refresh_fingerprints(machine);
        ca.service = ServiceState::Running;
        Ok(ca)
    }

    /// Opens the CA that an earlier process left on this machine's disk (its registry
    /// values and files), or installs a new one if there is none. An existing CA must
    /// have the configured name; it comes back Stopped and is then started (soft
    /// recovery, or hard recovery of a completed registration, whose report is returned);
    /// a registration never completed leaves it suspended ([`Ca::finish_start`]).
    pub(crate) fn open_or_install(
        machine: &Machine,
        cfg: &CaConfig,
    ) -> Result<(Ca, Option<recovery::RecoveryReport>)> {
        let fs = machine.fs();
        let reg = Rel::host(REGISTRY_DIR)?.join(REGISTRY_FILE)?;
        // Read beneath the root: a link is refused, anything else unreadable is no CA.
        let text = match fs.read(&reg) {
            Ok(bytes) => String::from_utf8(bytes).ok(),
            Err(e) if is_link_refusal(&e) => return Err(e),
            Err(_) => None,
        };
        let Some(text) = text else {
            return Ca::install(machine, cfg).map(|ca| (ca, None));
        };
        let v: RegistryValues = serde_json::from_str(&text).map_err(|e| {
            Error::io(
                format!("reading {}", fs.host_path(&reg).display()),
                std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            )
        })?;
        if !v.common_name.eq_ignore_ascii_case(&cfg.name) {
            return Err(Error::invalid_arg(
                "open",
                format!(
                    "the machine root {} holds CA {:?}, not {:?}; use another root or the same name",
                    machine.root().display(),
                    v.common_name,
                    cfg.name
                ),
            ));
        }
        let saved = CaConfig {
            name: v.common_name,
            seed: v.seed,
            records: 0,
            edb_size: v.edb_size,
            log_capacity: v.log_capacity.max(1),
            db_dir: v.db_directory,
            log_dir: v.db_log_directory,
            system_dir: v.db_system_directory,
            interface_flags: v.interface_flags,
        };
        let mut ca = Ca::configured(machine, &saved)?;
        ca.last_full = v.db_last_full_backup;
        ca.last_incremental = v.db_last_incremental_backup;
        ca.last_recovery = v.db_last_recovery;
        ca.backup_history = v.backup_history;
        ca.restore.marker = v.restore_in_progress;
        match ca.start(machine) {
            Ok(report) => Ok((ca, Some(report))),
            // A registration never completed: the service waits, suspended (Ca::finish_start).
            Err(Error::Suspended { .. }) if ca.service == ServiceState::Suspended => Ok((ca, None)),
            Err(e) => Err(e),
        }
    }

    /// Writes the registry values (after every change to them).
    pub(crate) fn save_registry(&self, machine: &Machine) -> Result<()> {
        let v = RegistryValues {
            common_name: self.name.clone(),
            seed: self.seed,
            db_directory: self.db_dir.local(),
            db_log_directory: self.log_dir.local(),
            db_system_directory: self.sys_dir.local(),
            interface_flags: self.interface_flags,
            log_capacity: self.log_capacity,
            edb_size: self.virtual_size,
            db_last_full_backup: self.last_full,
            db_last_incremental_backup: self.last_incremental,
            db_last_recovery: self.last_recovery,
            restore_in_progress: self.restore.marker.clone(),
            backup_history: self.backup_history.clone(),
        };
        let text = serde_json::to_string_pretty(&v).expect("serialisable");
        let dir = machine.fs().create_dir(Rel::host(REGISTRY_DIR)?)?;
        files::overwrite_padded(&dir, REGISTRY_FILE, text.as_bytes())
    }

    // ----- accessors -------------------------------------------------------------

    /// The CA's common name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
    /// The service state.
    pub(crate) fn service(&self) -> ServiceState {
        self.service
    }
    /// `InterfaceFlags`.
    pub(crate) fn interface_flags(&self) -> u32 {
        self.interface_flags
    }
    /// Sets `InterfaceFlags`.
    pub(crate) fn set_interface_flags(&mut self, machine: &Machine, flags: u32) -> Result<()> {
        self.interface_flags = flags;
        self.save_registry(machine)
    }
    /// The database signature.
    pub(crate) fn signature(&self) -> u64 {
        self.signature
    }
    /// Records in the database (request ids 1 ..= this): the running CA's count, or the
    /// count in the header of the `.edb` on disk when the service is stopped (0 if the
    /// file cannot be read).
    pub(crate) fn record_count(&self, machine: &Machine) -> u32 {
        match &self.db {
            Some(db) => db.records(),
            None => self.disk_header(machine).map_or(0, |h| h.records()),
        }
    }
    /// Revoked records, from the same source as [`Ca::record_count`].
    pub(crate) fn revoked_count(&self, machine: &Machine) -> u32 {
        match &self.db {
            Some(db) => db.revoked(),
            None => self.disk_header(machine).map_or(0, |h| h.revoked),
        }
    }
    fn disk_header(&self, machine: &Machine) -> Option<EdbHeader> {
        let mut none = Vec::new();
        let dir = machine.fs().open_dir(&self.db_dir).ok()?;
        pager::read_records_on_disk(&dir, &self.edb_name(), 1, 0, &mut none).ok()
    }
    /// Up to `max` records from request id `from` on, in request-id order, appended to
    /// `out` (streamed from the pages; a stopped CA's from its `.edb` on disk).
    pub(crate) fn read_records(
        &self,
        machine: &Machine,
        from: u32,
        max: usize,
        out: &mut Vec<Record>,
    ) -> Result<()> {
        match &self.db {
            Some(db) => db.read_records(from, max, out),
            None => {
                // No database on disk reads as none.
                let dir = match machine.fs().open_dir(&self.db_dir) {
                    Ok(d) => d,
                    Err(e) => return missing_is_ok(e),
                };
                match dir.metadata(&self.edb_name()) {
                    Ok(_) => {}
                    Err(e) => return missing_is_ok(e),
                }
                pager::read_records_on_disk(&dir, &self.edb_name(), from, max, out).map(drop)
            }
        }
    }
    /// The records digest (`docs/FILE-FORMATS.md` §4.6), streamed page by page.
    pub(crate) fn records_digest(&self, machine: &Machine) -> Result<u32> {
        let mut d = record::Digest::new();
        let mut chunk = Vec::with_capacity(RECORD_CHUNK);
        let mut from = 1;
        loop {
            chunk.clear();
            self.read_records(machine, from, RECORD_CHUNK, &mut chunk)?;
            for r in &chunk {
                d.update(r);
            }
            match chunk.last() {
                Some(r) if chunk.len() == RECORD_CHUNK => from = r.request_id + 1,
                _ => return Ok(d.finish()),
            }
        }
    }
    /// The current log position (generation of `edb.log`, transactions in it).
    pub(crate) fn current(&self) -> Position {
        self.current
    }
    /// The checkpoint position held by the `.edb` on disk.
    pub(crate) fn checkpoint(&self) -> Position {
        self.checkpoint
    }
    /// The last recorded full backup.
    pub(crate) fn last_full_backup(&self) -> Option<BackupMark> {
        self.last_full
    }
    /// The last recorded incremental backup.
    pub(crate) fn last_incremental_backup(&self) -> Option<BackupMark> {
        self.last_incremental
    }
    /// The recorded backups the registry keeps, oldest first (`BackupHistory`).
    pub(crate) fn backup_history(&self) -> &[BackupRecord] {
        &self.backup_history
    }
    /// When recovery of a restore last succeeded (`DBLastRecovery`).
    pub(crate) fn last_recovery(&self) -> Option<i64> {
        self.last_recovery
    }
    /// The highest generation any recorded backup holds.
    pub(crate) fn last_backup_high(&self) -> Option<u32> {
        match (self.last_full, self.last_incremental) {
            (Some(f), Some(i)) => Some(f.high_gen.max(i.high_gen)),
            (Some(f), None) => Some(f.high_gen),
            _ => None,
        }
    }
    /// `DBDirectory`.
    pub(crate) fn db_dir(&self) -> &WinPath {
        &self.db_dir
    }
    /// `DBLogDirectory`.
    pub(crate) fn log_dir(&self) -> &WinPath {
        &self.log_dir
    }
    /// `DBSystemDirectory`.
    pub(crate) fn system_dir(&self) -> &WinPath {
        &self.sys_dir
    }
    /// The database file's name, `<CA name>.edb`.
    pub(crate) fn edb_name(&self) -> String {
        format!("{}.edb", self.name)
    }
    /// The database file.
    pub(crate) fn database_path(&self) -> WinPath {
        self.db_dir
            .join(&self.edb_name())
            .expect("validated at install")
    }
    /// Numbered log file of generation `generation`.
    pub(crate) fn log_path(&self, generation: u32) -> WinPath {
        self.log_dir
            .join(&log_file_name(generation))
            .expect("valid name")
    }
    /// The current log `edb.log`.
    pub(crate) fn current_log_path(&self) -> WinPath {
        self.log_dir.join(CURRENT_LOG).expect("valid name")
    }
    /// The page journal `edb.jrn` (next to the `.edb`): pages not yet checkpointed.
    #[cfg(test)]
    pub(crate) fn journal_path(&self) -> WinPath {
        self.db_dir.join(JOURNAL).expect("valid name")
    }
    /// The dynamic files (CRL and CA certificate), not part of the database backup.
    pub(crate) fn dynamic_files(&self, machine: &Machine) -> Vec<WinPath> {
        let dir = machine.parse_path(CERTENROLL).expect("constant path");
        vec![
            dir.join(&format!("{}.crl", self.name)).expect("valid"),
            dir.join(&format!("{}_{}.crt", machine.netbios(), self.name))
                .expect("valid"),
        ]
    }
    /// Numbered log generations present in the log directory (none if it cannot be
    /// listed, a link in its place included: such a directory is refused where it is used).
    pub(crate) fn log_generations_on_disk(&self, machine: &Machine) -> Vec<u32> {
        match machine.fs().open_dir(&self.log_dir) {
            Ok(d) => generations_in(&d),
            Err(_) => Vec::new(),
        }
    }

    // ----- activity ----------------------------------------------------------------

    fn require_running(&self, machine: &Machine, call: &'static str) -> Result<()> {
        match self.service {
            ServiceState::Running => Ok(()),
            ServiceState::Suspended => Err(Error::Suspended {
                call,
                why: "the CA is suspended while it recovers a restored database".into(),
            }),
            ServiceState::Stopped => Err(Error::ServerUnavailable {
                call,
                server: machine.netbios().to_string(),
                why: format!(
                    "the service of CA {:?} is stopped; start it first",
                    self.name
                ),
            }),
        }
    }

    /// Issues `n` certificates; returns their request ids.
    pub(crate) fn issue(&mut self, machine: &Machine, n: u32) -> Result<Vec<u32>> {
        self.require_running(machine, "issue")?;
        self.check_files_opening(machine, "issue", None)?;
        let mut ids = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let id = self.next_request_id;
            let rec = Record::generate(self.seed, id, self.clock);
            self.commit(machine, Txn::Issue(rec))?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Revokes a certificate.
    pub(crate) fn revoke(&mut self, machine: &Machine, request_id: u32, reason: u32) -> Result<()> {
        self.require_running(machine, "revoke")?;
        self.check_files_opening(machine, "revoke", None)?;
        let rec = match self.db.as_mut() {
            Some(db) => db.get(request_id)?,
            None => None,
        };
        match rec {
            None => Err(Error::FileNotFound {
                call: "revoke",
                why: format!("no certificate with request id {request_id}"),
            }),
            Some(r) if r.status != Status::Issued => Err(Error::invalid_arg(
                "revoke",
                format!("request {request_id} is already revoked"),
            )),
            Some(_) => self.commit(
                machine,
                Txn::Revoke {
                    request_id,
                    at: self.clock,
                    reason,
                },
            ),
        }
    }

    fn commit(&mut self, machine: &Machine, txn: Txn) -> Result<()> {
        let frame = encode_frame(&txn, std::mem::take(&mut self.frame_buf));
        let log = self.log.as_mut().ok_or_else(|| {
            Error::io(
                "appending to edb.log",
                std::io::Error::other("the current log is not open"),
            )
        })?;
        // The descriptor was opened beneath the root: an append resolves no path.
        if let Err(e) = log.file.write_all(&frame) {
            let path = machine.host_path_of(&self.current_log_path());
            return Err(Error::io(format!("appending to {}", path.display()), e));
        }
        log.hasher.update(&frame);
        log.len += frame.len() as u64;
        self.frame_buf = frame;
        self.log_fp_stale = true;
        let db = self
            .db
            .as_mut()
            .expect("a running CA has its database open");
        db.apply(&txn)?;
        self.next_request_id = db.records() + 1;
        self.clock += 60;
        self.current.pos += 1;
        if self.current.pos >= self.log_capacity {
            self.roll_sealing(machine, None)?;
        }
        Ok(())
    }

    /// Seals `edb.log`, renames it to its numbered name and starts the next generation.
    /// The checkpoint follows unless a full backup holds the database still.
    ///
    /// The files are checked first (as by issue): the roll works in the log folder held
    /// open with `edb.log`, and a link put in the folder's place is refused here.
    pub(crate) fn roll(&mut self, machine: &Machine) -> Result<u32> {
        self.check_files_opening(machine, "roll", None)?;
        self.roll_sealing(machine, None)
    }

    /// The roll of a backup's log listing (`CertSrvBackupGetBackupLogsW`), which names the
    /// generations `low ..=` the one it seals: that log is sealed with a backup end mark
    /// (`docs/FILE-FORMATS.md` §5.4) holding the set, whose transactions are counted from
    /// the seals of the listed logs. Returns the sealed generation and the set; the set is
    /// `None` (and no mark written) when a listed log is missing or not sealed, in which
    /// case the listing fails anyway.
    pub(crate) fn roll_for_backup(
        &mut self,
        machine: &Machine,
        kind: BackupSetKind,
        low: u32,
    ) -> Result<(u32, Option<BackupEnd>)> {
        let high = self.current.generation;
        let mut transactions = u64::from(self.current.pos);
        let mut complete = low <= high;
        for g in low..high {
            match self.sealed_count(machine, g) {
                Some(n) => transactions += u64::from(n),
                None => {
                    complete = false;
                    break;
                }
            }
        }
        let set = complete.then_some(BackupEnd {
            kind,
            low_gen: low,
            high_gen: high,
            transactions,
        });
        let sealed = self.roll_sealing(machine, set.as_ref())?;
        Ok((sealed, set))
    }

    /// The transaction count in the seal of the numbered log of generation `g` (its last
    /// 12 bytes: the seal marker, the count, the CRC), if it is there and sealed.
    fn sealed_count(&self, machine: &Machine, g: u32) -> Option<u32> {
        let dir = machine.fs().open_dir(&self.log_dir).ok()?;
        let name = log_file_name(g);
        let path = dir.entry_host(&name);
        let f = dir.open(&name).ok()?;
        let len = files::len(&f, &path).ok()?;
        let mut tail = [0u8; format::SEAL_LEN];
        let at = len.checked_sub(format::SEAL_LEN as u64)?;
        files::read_at(&f, &path, &mut tail, at).ok()?;
        format::seal_count(&tail)
    }

    fn roll_sealing(&mut self, machine: &Machine, backup_end: Option<&BackupEnd>) -> Result<u32> {
        let sealed_gen = self.current.generation;
        let log = self.log.take().ok_or_else(|| {
            Error::io(
                "rolling edb.log",
                std::io::Error::other("the current log is not open"),
            )
        })?;
        // The rename and the new edb.log are made relative to the log folder held open
        // with the log (a link put in its place since is refused by the next file check).
        let OpenLog {
            mut file,
            dir,
            hasher,
            ..
        } = log;
        let (trailer, crc) = encode_trailer(self.current.pos, hasher, backup_end);
        let sealed_path = dir.entry_host(CURRENT_LOG);
        file.write_all(&trailer)
            .map_err(io_err(format!("sealing {}", sealed_path.display())))?;
        // Its fingerprint, taken before it is closed (the rename changes none of it).
        let sealed = file_metadata(&file, &sealed_path);
        drop(file);
        let numbered = log_file_name(sealed_gen);
        dir.rename(CURRENT_LOG, &dir, &numbered)?;
        self.touch(dir.entry_host(&numbered), sealed);
        self.prev_crc = crc;
        self.current = Position {
            generation: sealed_gen + 1,
            pos: 0,
        };
        self.create_current_log(dir)?;
        if !self.frozen {
            self.flush_checkpoint(machine)?;
        } else {
            self.flush_deferred = true;
        }
        Ok(sealed_gen)
    }

    /// Creates `edb.log` in the log folder `dir` with the header of the current
    /// generation, and takes the folder's fingerprint again (the CA changed it).
    fn create_current_log(&mut self, dir: Dir) -> Result<()> {
        let header = LogHeader {
            ca_name: self.name.clone(),
            signature: self.signature,
            generation: self.current.generation,
            prev_crc: self.prev_crc,
        }
        .encode();
        let mut file = dir.create(CURRENT_LOG)?;
        let path = dir.entry_host(CURRENT_LOG);
        file.write_all(&header)
            .map_err(io_err(format!("writing {}", path.display())))?;
        let meta = file_metadata(&file, &path);
        self.touch(path, meta);
        self.touch_dir(&dir);
        self.log = Some(OpenLog::holding(file, dir, &header));
        self.log_fp_stale = false;
        Ok(())
    }

    /// Reopens `edb.log` for appending after recovery (its valid bytes are `bytes`).
    fn reopen_current_log(&mut self, machine: &Machine, bytes: &[u8]) -> Result<()> {
        let dir = machine.fs().open_dir(&self.log_dir)?;
        dir.write_atomic(CURRENT_LOG, bytes)?;
        let file = dir.append(CURRENT_LOG)?;
        self.log = Some(OpenLog::holding(file, dir, bytes));
        self.log_fp_stale = false;
        Ok(())
    }

    /// Closes what the running service holds open: `edb.log`, its folder and `edb.chk`.
    fn close_files(&mut self) {
        self.log = None;
        self.chk = None;
    }

    /// Writes the database state at the current position to the `.edb` and `edb.chk`.
    pub(crate) fn flush_checkpoint(&mut self, machine: &Machine) -> Result<()> {
        self.checkpoint = self.current;
        let header = self.header(self.db.as_ref().map_or(0, |d| d.revoked()));
        if let Some(db) = self.db.as_mut() {
            db.checkpoint(&header)?;
            let (path, meta) = db.metadata();
            self.touch(path, meta);
        }
        self.write_chk(machine)
    }

    /// Writes `edb.chk` in place (it is never read by recovery, see FILE-FORMATS
    /// Doubts): through the file held open while the service runs, else opened (and then
    /// held, if the service runs) in `DBSystemDirectory`.
    fn write_chk(&mut self, machine: &Machine) -> Result<()> {
        let bytes = Checkpoint {
            ca_name: self.name.clone(),
            signature: self.signature,
            position: self.checkpoint,
        }
        .encode();
        let (file, path) = match self.chk.take() {
            // Its length never changes: one CA name, one length.
            Some((file, path)) => {
                files::write_at(&file, &path, &bytes, 0)?;
                (file, path)
            }
            None => {
                let dir = machine.fs().open_dir(&self.sys_dir)?;
                let file = files::overwrite(&dir, CHECKPOINT_FILE, &bytes)?;
                (file, dir.entry_host(CHECKPOINT_FILE))
            }
        };
        self.touch(path.clone(), file_metadata(&file, &path));
        if self.log.is_some() {
            self.chk = Some((file, path));
        }
        Ok(())
    }

    /// The header page of the database at the checkpoint position.
    fn header(&self, revoked: u32) -> EdbHeader {
        EdbHeader {
            ca_name: self.name.clone(),
            signature: self.signature,
            checkpoint: self.checkpoint,
            next_request_id: self.next_request_id,
            clock: self.clock,
            revoked,
            logical_size: self.virtual_size.unwrap_or(0),
            pad_seed: mix64(self.signature ^ 0xEDB),
        }
    }

    fn write_dynamic_files(&self, machine: &Machine) -> Result<()> {
        for (i, p) in self.dynamic_files(machine).iter().enumerate() {
            let body = format!(
                "certadm-emu dynamic file {} of CA {:?} (signature {:016x})\n",
                i, self.name, self.signature
            );
            machine.fs().write_atomic(p, body.as_bytes())?;
        }
        Ok(())
    }

    /// Holds the database file still for a full backup (the checkpoint stops advancing).
    pub(crate) fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Releases a freeze; the checkpoint catches up at once.
    pub(crate) fn unfreeze(&mut self, machine: &Machine) -> Result<()> {
        if self.frozen {
            self.frozen = false;
            if self.service != ServiceState::Stopped && std::mem::take(&mut self.flush_deferred) {
                self.flush_checkpoint(machine)?;
            }
        }
        Ok(())
    }

    /// Records a finished backup: `DBLastFullBackup` / `DBLastIncrementalBackup`, and the
    /// set its log listing sealed (`set`, when the listing could count its transactions)
    /// in the backup history.
    pub(crate) fn record_backup(
        &mut self,
        machine: &Machine,
        full: bool,
        high_gen: u32,
        set: Option<BackupEnd>,
    ) -> Result<()> {
        let mark = BackupMark {
            high_gen,
            at: self.clock,
        };
        if full {
            self.last_full = Some(mark);
            self.last_incremental = None;
        } else {
            self.last_incremental = Some(mark);
        }
        if let Some(set) = set {
            if self.backup_history.len() >= BACKUP_HISTORY {
                self.backup_history.remove(0);
            }
            self.backup_history.push(BackupRecord {
                set,
                signature: self.signature,
                at: self.clock,
            });
        }
        self.save_registry(machine)
    }

    /// Deletes numbered logs that neither the checkpoint nor a backup still needs:
    /// every generation below both the checkpoint and `backed_up_high + 1`. Returns them.
    pub(crate) fn truncate_logs(
        &mut self,
        machine: &Machine,
        backed_up_high: u32,
    ) -> Result<Vec<u32>> {
        let limit = self
            .checkpoint
            .generation
            .min(backed_up_high.saturating_add(1));
        let mut deleted = Vec::new();
        let dir = machine.fs().open_dir(&self.log_dir)?;
        for g in generations_in(&dir) {
            if g < limit {
                dir.remove(&log_file_name(g))?;
                deleted.push(g);
            }
        }
        self.refresh_fingerprints(machine);
        Ok(deleted)
    }

    // ----- service control ----------------------------------------------------------------

    /// Stops the service cleanly: the checkpoint is flushed, so no replay is needed at start.
    pub(crate) fn stop(&mut self, machine: &Machine) -> Result<()> {
        if self.service == ServiceState::Stopped {
            return Err(Error::ServerUnavailable {
                call: "stop",
                server: machine.netbios().to_string(),
                why: "the CA service is already stopped".into(),
            });
        }
        if self.log.is_none() {
            // Stopped between begin_start and finish_start: nothing ran, and the files on
            // disk (a restore waiting for recovery) must stay as they are.
            self.service = ServiceState::Stopped;
            return Ok(());
        }
        let tampered = self.check_files(machine, "stop");
        if let Err(e) = &tampered {
            if is_link_refusal(e) {
                // A link where the CA keeps its files: refused, the service keeps running.
                return tampered;
            }
        }
        self.tampered = None;
        self.frozen = false;
        // The last checkpoint writes edb.chk by its path: a file put in its place while
        // the service ran is overwritten, as the other files of the checkpoint are.
        self.chk = None;
        let r = self
            .flush_checkpoint(machine)
            .and_then(|_| match self.db.as_mut() {
                Some(db) => db.retire_journal(),
                None => Ok(()),
            });
        if r.is_ok() {
            // The `.edb` now holds exactly the state: a stopped CA reads it from disk and
            // holds no descriptor of its files (as the stopped service closes them).
            self.db = None;
        }
        self.close_files();
        self.service = ServiceState::Stopped;
        tampered.and(r)
    }

    /// The CA's database, checkpoint and log directories, in that order, each distinct one
    /// resolved beneath the root once (a link in its place is refused, `E_ACCESSDENIED`);
    /// `None` for a missing one.
    fn ca_dirs(&self, machine: &Machine) -> Result<[Option<Dir>; 3]> {
        let paths = [&self.db_dir, &self.sys_dir, &self.log_dir];
        let mut out: [Option<Dir>; 3] = Default::default();
        for i in 0..3 {
            out[i] = match (0..i).find(|&j| paths[j].key() == paths[i].key()) {
                Some(j) => out[j].clone(),
                None => open_dir_if_there(machine, paths[i])?,
            };
        }
        Ok(out)
    }

    /// The fingerprints of the CA's folders (each once), by host path.
    fn fingerprint_dirs(dirs: &[Option<Dir>; 3]) -> Result<Vec<(PathBuf, Fingerprint)>> {
        let mut out: Vec<(PathBuf, Fingerprint)> = Vec::new();
        for d in dirs.iter().flatten() {
            if !out.iter().any(|(h, _)| h == d.host_path()) {
                out.push((d.host_path().to_path_buf(), fingerprint(&d.own_metadata()?)));
            }
        }
        Ok(out)
    }

    /// The CA's database, checkpoint and log files as they are on disk now (the `.edb`,
    /// `edb.chk`, `edb.log`, the numbered logs), examined beneath the root: a link in the
    /// place of a directory or of one of the files is refused (`E_ACCESSDENIED`); a missing
    /// one is left out. Also the fingerprints of the folders, taken before they are listed.
    fn scan_files(&self, machine: &Machine) -> Result<Scan> {
        #[cfg(test)]
        self.full_scans.set(self.full_scans.get() + 1);
        let [db, sys, log] = self.ca_dirs(machine)?;
        let dirs = Self::fingerprint_dirs(&[db.clone(), sys.clone(), log.clone()])?;
        let mut files = BTreeMap::new();
        let mut add = |dir: &Dir, name: &str| -> Result<()> {
            match dir.metadata(name) {
                Ok(m) => {
                    files.insert(dir.entry_host(name).into_os_string(), fingerprint(&m));
                    Ok(())
                }
                Err(e) if is_link_refusal(&e) => Err(e),
                Err(_) => Ok(()),
            }
        };
        if let Some(d) = &db {
            add(d, &self.edb_name())?;
        }
        if let Some(d) = &sys {
            add(d, CHECKPOINT_FILE)?;
        }
        if let Some(d) = &log {
            add(d, CURRENT_LOG)?;
            for g in generations_in(d) {
                add(d, &log_file_name(g))?;
            }
        }
        Ok(Scan { files, dirs })
    }

    /// Whether nothing the CA knows of changed, looking only at its folders (an entry
    /// created, removed or renamed changes a folder's fingerprint), at the files it writes
    /// (`.edb`, `edb.chk`, `edb.log`) and at the file `opened`; `false` also when that
    /// cannot be told this way (then a full scan tells).
    fn unchanged_at_a_glance(&self, machine: &Machine, opened: Option<&WinPath>) -> bool {
        if self.dir_fingerprints.is_empty() {
            return false;
        }
        let Ok(dirs) = self.ca_dirs(machine) else {
            return false;
        };
        let [Some(db), Some(sys), Some(log)] = &dirs else {
            return false;
        };
        if Self::fingerprint_dirs(&dirs).ok().as_ref() != Some(&self.dir_fingerprints) {
            return false;
        }
        let edb = self.edb_name();
        let mut looked = vec![
            (db, edb.as_str()),
            (sys, CHECKPOINT_FILE),
            (log, CURRENT_LOG),
        ];
        if let Some(p) = opened {
            let parent = p.parent().key();
            let held = [
                (&self.db_dir, db),
                (&self.sys_dir, sys),
                (&self.log_dir, log),
            ];
            match (held.iter().find(|(q, _)| q.key() == parent), p.file_name()) {
                (Some((_, d)), Some(name)) => looked.push((d, name)),
                _ => return false,
            }
        }
        looked.into_iter().all(|(d, name)| {
            let (now, known) = (
                fingerprint_of(d, name),
                self.fingerprints
                    .get(d.entry_host(name).as_os_str())
                    .copied(),
            );
            match (now, known) {
                // The CA's own appends since the fingerprint: the same file, as long as
                // the CA wrote it (its time moved).
                (Some(n), Some(k)) if self.log_fp_stale && name == CURRENT_LOG => {
                    n.2 == k.2 && Some(n.0) == self.log.as_ref().map(|l| l.len)
                }
                (n, k) => n == k,
            }
        })
    }

    fn refresh_fingerprints(&mut self, machine: &Machine) {
        let scan = self.scan_files(machine).unwrap_or_default();
        self.fingerprints = scan.files;
        self.dir_fingerprints = scan.dirs;
        self.log_fp_stale = false;
    }

    /// Takes again the fingerprint of a file the CA itself just wrote (host path `path`;
    /// `meta` from its open descriptor): dropped if it could not be taken.
    fn touch(&mut self, path: PathBuf, meta: Result<Meta>) {
        let p = path.into_os_string();
        match meta {
            Ok(m) => self.fingerprints.insert(p, fingerprint(&m)),
            Err(_) => self.fingerprints.remove(&p),
        };
    }

    /// Takes again the fingerprint of the CA's folder `dir` after the CA itself created
    /// or renamed an entry there (a roll), so that the glance of the next call
    /// ([`Ca::unchanged_at_a_glance`]) still holds.
    fn touch_dir(&mut self, dir: &Dir) {
        if let Some(i) = self
            .dir_fingerprints
            .iter()
            .position(|(h, _)| h == dir.host_path())
        {
            match dir.own_metadata() {
                Ok(m) => self.dir_fingerprints[i].1 = fingerprint(&m),
                Err(_) => self.dir_fingerprints.clear(),
            }
        }
    }

    /// [`Ca::check_files`] for `CertSrvBackupOpenFileW`, which a backup calls once per
    /// file: while the CA's folders keep the fingerprints the last full check found (no
    /// entry created, removed or renamed since), only the files the CA writes and the file
    /// `opened` are looked at, so a backup of *n* logs costs O(*n*) and not O(*n* × logs).
    /// Issue, revoke and roll glance the same way (with no file opened). A sealed log
    /// overwritten in place is then noticed by the next full check
    /// (GetDatabaseNames, GetBackupLogs, TruncateLogs, stop) or when it is
    /// opened.
    pub(crate) fn check_files_opening(
        &mut self,
        machine: &Machine,
        call: &'static str,
        opened: Option<&WinPath>,
    ) -> Result<()> {
        if self.service == ServiceState::Stopped || self.log.is_none() {
            return Ok(());
        }
        if self.tampered.is_none() && self.unchanged_at_a_glance(machine, opened) {
            return Ok(());
        }
        self.check_files(machine, call)
    }

    /// Windows holds a running CA's files open: overwriting them fails with
    /// `ERROR_SHARING_VIOLATION`. The emulator cannot refuse a host write, so it notices
    /// the change here (at the next call that touches the files, and at stop) and reports it.
    /// Once noticed, the change is reported by every such call until the service stops.
    pub(crate) fn check_files(&mut self, machine: &Machine, call: &'static str) -> Result<()> {
        if self.service == ServiceState::Stopped || self.log.is_none() {
            return Ok(());
        }
        if let Some(why) = &self.tampered {
            return Err(Error::SharingViolation {
                call,
                why: why.clone(),
            });
        }
        let Scan { files: now, dirs } = self.scan_files(machine)?;
        if std::mem::take(&mut self.log_fp_stale) {
            // The CA's own appends: adopted if the file has exactly the bytes it wrote.
            let p = machine
                .host_path_of(&self.current_log_path())
                .into_os_string();
            let len = self.log.as_ref().map(|l| l.len);
            if let Some(fp) = now.get(&p).filter(|fp| Some(fp.0) == len) {
                self.fingerprints.insert(p, *fp);
            }
        }
        if now == self.fingerprints {
            self.dir_fingerprints = dirs;
            return Ok(());
        }
        let mut changed: Vec<String> = Vec::new();
        for (p, fp) in &self.fingerprints {
            match now.get(p) {
                None => changed.push(format!("{} was deleted", Path::new(p).display())),
                Some(n) if n != fp => {
                    changed.push(format!("{} was overwritten", Path::new(p).display()))
                }
                _ => {}
            }
        }
        for p in now.keys().filter(|p| !self.fingerprints.contains_key(*p)) {
            changed.push(format!("{} was created", Path::new(p).display()));
        }
        let why = format!(
            "files of the running CA changed underneath it ({}); on Windows the CA holds them open and such writes fail with ERROR_SHARING_VIOLATION. Stop the service before copying files into its directories",
            changed.join("; ")
        );
        self.tampered = Some(why.clone());
        Err(Error::SharingViolation { call, why })
    }

    /// Stops the service as a crash would: nothing is flushed, the next start replays logs.
    pub(crate) fn crash(&mut self) {
        self.tampered = None;
        self.frozen = false;
        self.flush_deferred = false;
        self.close_files();
        // Nothing is written: the `.edb` stays at its checkpoint and an uncheckpointed
        // journal on disk is discarded by the next start, which replays the logs. The
        // pager is kept only to show the state the service had until then (as a stop
        // does); nothing writes through it until a start replaces it.
        self.service = ServiceState::Stopped;
    }

    /// Starts the service: runs a registered restore (hard recovery) or replays the logs
    /// since the checkpoint (soft recovery). On failure the CA stays stopped and its files
    /// are untouched.
    pub(crate) fn start(&mut self, machine: &Machine) -> Result<recovery::RecoveryReport> {
        self.begin_start()?;
        self.finish_start(machine)
    }

    /// True while the service is up but holds its start: Suspended before recovery (between
    /// [`Ca::begin_start`] and [`Ca::finish_start`], or waiting on a registration that
    /// was never completed).
    pub(crate) fn start_held(&self) -> bool {
        self.service == ServiceState::Suspended && self.log.is_none()
    }

    /// First half of a start: refuses a registered restore completed with a failure,
    /// then enters Suspended (requests get `CERTSRV_E_SERVER_SUSPENDED`) until
    /// [`Ca::finish_start`].
    pub(crate) fn begin_start(&mut self) -> Result<()> {
        if self.service != ServiceState::Stopped {
            let why = if self.start_held() {
                "the CA service is running, suspended: its start waits (a restore registered without CertSrvRestoreRegisterComplete, or a recovery not run yet); complete the registration or clear the marker, then restart the service (stop, start)"
            } else {
                "the CA service is already running"
            };
            return Err(Error::invalid_arg("start", why));
        }
        if let Some(hr) = self.restore.marker.as_ref().and_then(failed_status) {
            return Err(Error::RestoreReportedFailure { hr });
        }
        self.service = ServiceState::Suspended;
        Ok(())
    }

    /// Second half of a start: runs recovery; Running on success, Stopped on failure.
    ///
    /// A registration that was never completed holds the start: the service stays
    /// Suspended and the start returns `CERTSRV_E_SERVER_SUSPENDED` ("suspended for a
    /// database restore operation"), as field reports show a CA stuck after a
    /// half-finished restore (COVERAGE.md, section C, item 44). Completing the
    /// registration or clearing the marker does not reach the waiting service (they are
    /// local calls, no MS-CSRA method): restarting it (stop, start), or calling this
    /// again, recovers.
    pub(crate) fn finish_start(&mut self, machine: &Machine) -> Result<recovery::RecoveryReport> {
        if !self.start_held() {
            return Err(Error::invalid_arg(
                "start",
                "no start is in progress (call begin_start first)",
            ));
        }
        if let Some(mk) = &self.restore.marker {
            if mk.pending {
                return Err(Error::Suspended {
                    call: "start",
                    why: "a restore is registered but CertSrvRestoreRegisterComplete was not called: the service waits, suspended for a database restore operation, until the registration is completed (or its RestoreInProgress marker removed) and the service restarted".into(),
                });
            }
            if let Some(hr) = failed_status(mk) {
                self.service = ServiceState::Stopped;
                return Err(Error::RestoreReportedFailure { hr });
            }
        }
        let outcome = match recovery::recover(self, machine) {
            Ok(o) => o,
            Err(e) => {
                self.service = ServiceState::Stopped;
                return Err(e);
            }
        };
        let r = self.adopt(machine, outcome);
        if r.is_err() {
            self.close_files();
            self.service = ServiceState::Stopped;
        }
        r
    }

    fn adopt(
        &mut self,
        machine: &Machine,
        out: recovery::Recovered,
    ) -> Result<recovery::RecoveryReport> {
        self.signature = out.signature;
        let mut db = out.db;
        // The CA keeps its database at its own path, compact (a restored copy may hold the
        // materialised padding, or lie at another name of the restore map).
        db.relocate(&machine.fs().open_dir(&self.db_dir)?, &self.edb_name())?;
        db.trim()?;
        self.next_request_id = db.records() + 1;
        self.db = Some(db);
        self.clock = out.clock;
        self.current = out.current;
        self.prev_crc = out.prev_crc;
        if out.report.hard {
            let dir = machine.fs().open_dir(&self.log_dir)?;
            for g in generations_in(&dir) {
                if g >= self.current.generation {
                    dir.remove(&log_file_name(g))?;
                }
            }
        }
        self.reopen_current_log(machine, &out.current_log_bytes)?;
        if out.report.hard {
            self.last_full = None;
            self.last_incremental = None;
            self.last_recovery = Some(self.clock);
            self.restore.clear(machine)?;
            self.save_registry(machine)?;
        }
        self.service = ServiceState::Running;
        if out.report.hard {
            // A restored database starts a new log lineage (as ESE gives the logs a new
            // signature after a restore): backups taken before the restore cannot be mixed
            // with ones taken after it (DOC:Restore), and a mix is refused at recovery.
            self.signature = mix64(self.signature ^ mix64(self.clock as u64)) | 1;
            self.roll_sealing(machine, None)?;
        }
        self.flush_checkpoint(machine)?;
        self.refresh_fingerprints(machine);
        Ok(out.report)
    }

    /// Sets the service state directly (tests of the Suspended state).
    pub(crate) fn set_service(&mut self, s: ServiceState) {
        self.service = s;
    }
}

/// The failure a registration was completed with, if any.
fn failed_status(mk: &recovery::RestoreMarker) -> Option<crate::core::HRESULT> {
    mk.status.filter(|h| h.is_err())
}

fn name_hash(s: &str) -> u64 {
    s.to_lowercase()
        .bytes()
        .fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
        })
}

#[cfg(test)]
mod tests;

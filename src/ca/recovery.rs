//! Recovery at service start: soft recovery (replay the logs since the checkpoint)
//! and hard recovery of a registered restore (spec §8.5).

use super::format::{decode_log, log_file_name, BackupEnd, EdbHeader, LogHeader, Position};
use super::pager::{self, Pager};
use super::{open_dir_if_there, BackupRecord, Ca, CURRENT_LOG, JOURNAL};
use crate::core::{Error, RecoveryFailure, Result};
use crate::machine::fs::{is_link_refusal, Dir, Kind, Rel};
use crate::machine::Machine;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What a start did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// True if a registered restore was recovered (hard recovery).
    pub hard: bool,
    /// The checkpoint the database file held.
    pub from: Position,
    /// Log generations replayed, in order.
    pub replayed_generations: Vec<u32>,
    /// Transactions applied.
    pub transactions: usize,
    /// True if `edb.log` ended in a torn frame that was cut off.
    pub torn_tail: bool,
    /// Log files found but not replayed (newer logs that do not continue a restored chain).
    pub ignored: Vec<String>,
    /// Hard recovery: the last backup end mark the replay passed (the end of the last
    /// backup set it restored completely), if any.
    pub backup_end: Option<BackupEnd>,
    /// Hard recovery: the restored chain ends before the end of its backup set (conformance
    /// rule CR04). The start succeeds; the data of the missing generations is lost.
    pub data_loss: Option<DataLoss>,
}

/// A restore whose chain ends before the last generation its backup listed: every log a
/// backup lists ends with the one its listing sealed with a backup end mark
/// (`docs/FILE-FORMATS.md` §5.4), and hard recovery found no such mark at or after the
/// registered genHigh, and no `edb.log` continuing the chain (COVERAGE.md, section C,
/// item 45).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataLoss {
    /// The first generation missing (the one after the last replayed, or the database's
    /// checkpoint generation when no log was replayed).
    pub missing_from: u32,
    /// The last generation the backup listed, when the CA's backup history knows the
    /// backup; `None`: at least `missing_from` is missing.
    pub missing_through: Option<u32>,
    /// Transactions lost, when the CA's backup history knows the backup.
    pub lost_transactions: Option<u64>,
    /// The backup whose end is missing, from the CA's backup history.
    pub backup: Option<BackupEnd>,
}

impl std::fmt::Display for DataLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = self.missing_from;
        match (self.missing_through, self.lost_transactions, &self.backup) {
            (Some(to), Some(n), Some(b)) => {
                let (gens, them) = if to == from {
                    (format!("generation {from} ({}) is", log_file_name(from)), "it")
                } else {
                    let gens = format!(
                        "generations {from}..{to} ({} .. {}) are",
                        log_file_name(from),
                        log_file_name(to)
                    );
                    (gens, "them")
                };
                write!(
                    f,
                    "the restore ends before the end of its backup set: {gens} missing; {b} listed {them}, and {n} of its transactions are lost"
                )
            }
            _ => write!(
                f,
                "the restore ends before the end of its backup set: at least generation {from} ({}) is missing (the restored chain ends on a log that no backup's log listing sealed as the last of its set, and no edb.log continues it); the transactions in it are lost",
                log_file_name(from)
            ),
        }
    }
}

/// The restore registration (`RestoreInProgress`); filled in by the restore side.
#[derive(Debug, Clone, Default)]
pub struct RestoreState {
    /// The registered restore, if any.
    pub marker: Option<RestoreMarker>,
}

/// A registered restore.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestoreMarker {
    /// `CheckPointFile`.
    pub checkpoint_path: Option<String>,
    /// `LogPath`.
    pub log_path: Option<String>,
    /// `BackupLogDirectory` of each registration.
    pub backup_log_paths: Vec<String>,
    /// `RestoreMap` (database name as backed up, new name).
    pub restore_map: Vec<(String, String)>,
    /// `LowLogNumber`.
    pub gen_low: u32,
    /// `HighLogNumber`.
    pub gen_high: u32,
    /// Registered and `CertSrvRestoreRegisterComplete` not yet called.
    pub pending: bool,
    /// `RestoreStatus` from `CertSrvRestoreRegisterComplete`.
    pub status: Option<crate::core::HRESULT>,
    /// Registered through `CertSrvRestoreRegisterThroughFile`.
    pub through_file: bool,
}

impl RestoreState {
    /// Removes the marker after a successful recovery.
    pub fn clear(&mut self, machine: &Machine) -> Result<()> {
        self.marker = None;
        MarkerStore::clear(machine)
    }
}

/// The state a recovery produced, adopted by the CA if it succeeded.
pub(crate) struct Recovered {
    pub signature: u64,
    /// The database with the replayed changes paged in (not yet checkpointed).
    pub db: Pager,
    pub clock: i64,
    pub current: Position,
    pub prev_crc: u32,
    pub current_log_bytes: Vec<u8>,
    pub report: RecoveryReport,
}

/// What a replay found, before the CA adopts it with its database.
pub(crate) struct Replayed {
    pub signature: u64,
    pub clock: i64,
    pub current: Position,
    pub prev_crc: u32,
    pub current_log_bytes: Vec<u8>,
    pub report: RecoveryReport,
}

impl Replayed {
    fn with(self, db: Pager) -> Recovered {
        Recovered {
            signature: self.signature,
            db,
            clock: self.clock,
            current: self.current,
            prev_crc: self.prev_crc,
            current_log_bytes: self.current_log_bytes,
            report: self.report,
        }
    }
}

fn fail(failure: RecoveryFailure, why: impl Into<String>) -> Error {
    Error::Recovery {
        failure,
        why: why.into(),
    }
}

/// Opens and verifies a `.edb` (`docs/FILE-FORMATS.md` §4.5) beneath the machine root:
/// every page's checksum and every padding byte the file holds, streamed in O(1) memory;
/// the pager is opened on the same descriptor.
pub(crate) fn read_database(
    dir: &Dir,
    name: &str,
    journal_dir: Dir,
    journal_name: &str,
) -> Result<Pager> {
    pager::open_verified(dir, name, journal_dir, journal_name)
}

/// A log file: its directory (held open beneath the machine root) and its name there.
pub(crate) struct LogFile {
    dir: Dir,
    name: String,
}

impl LogFile {
    /// Its host path, as messages and the report show it.
    fn shown(&self) -> String {
        self.dir.entry_host(&self.name).display().to_string()
    }
}

/// Where the logs of a replay come from.
pub(crate) struct LogSources {
    /// Numbered generations found, by generation (first source wins).
    pub numbered: BTreeMap<u32, LogFile>,
    /// The current log `edb.log`, if present.
    pub current: Option<LogFile>,
}

impl LogSources {
    /// The numbered logs of `dirs` and `edb.log` of `current`. A link with a log's name
    /// is refused (`E_ACCESSDENIED`): the scan lists entries without following them, and
    /// every log is then opened relative to its directory's descriptor with
    /// `O_NOFOLLOW`.
    pub(crate) fn scan(dirs: &[Dir], current: Option<&Dir>) -> Result<LogSources> {
        let mut numbered = BTreeMap::new();
        for d in dirs {
            for e in d.read_dir().unwrap_or_default() {
                if let Some(g) = super::format::parse_log_file_name(&e.name) {
                    if e.kind == Kind::Symlink {
                        return Err(d.refuse_link(&e.name));
                    }
                    numbered.entry(g).or_insert_with(|| LogFile {
                        dir: d.clone(),
                        name: e.name,
                    });
                }
            }
        }
        let current = match current {
            Some(d) => match d.metadata(CURRENT_LOG) {
                // An empty edb.log is a roll stopped between creating the file and
                // writing its header: nothing of its generation was written, so it is
                // left out as if missing (a fresh one is written after the replay).
                Ok(m) if m.kind == Kind::File && m.len > 0 => Some(LogFile {
                    dir: d.clone(),
                    name: CURRENT_LOG.into(),
                }),
                Err(e) if is_link_refusal(&e) => return Err(e),
                _ => None,
            },
            None => None,
        };
        Ok(LogSources { numbered, current })
    }
}

/// How strict a replay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Soft recovery: every log from the checkpoint on must be intact.
    Soft,
    /// Hard recovery of a restore: generations up to `gen_high` must be present and
    /// intact; newer logs are replayed while they chain, and ignored from the first one
    /// that does not.
    Hard {
        /// `HighLogNumber`.
        gen_high: u32,
    },
}

/// What the replay of a hard recovery needs to tell a complete restore from one that
/// lost the end of its backup set.
#[derive(Debug, Default)]
struct Ends {
    /// The last backup end mark replayed, with its generation.
    last_mark: Option<BackupEnd>,
    /// Transactions in each replayed generation (whole generations), in order.
    counts: Vec<(u32, u64)>,
}

impl Ends {
    /// The loss of a hard recovery whose replay stopped after numbered logs (not in
    /// `edb.log`): none if a backup end mark at or after `gen_high` was replayed.
    fn loss(&self, img: &EdbHeader, gen_high: u32, history: &[BackupRecord]) -> Option<DataLoss> {
        if self.last_mark.is_some_and(|m| m.high_gen >= gen_high) {
            return None;
        }
        let missing_from = self
            .counts
            .last()
            .map_or(img.checkpoint.generation, |(g, _)| g + 1);
        // The latest recorded backup of this database lineage whose listing holds the
        // first missing generation.
        let known = history.iter().rev().find(|r| {
            r.signature == img.signature && (r.set.low_gen..=r.set.high_gen).contains(&missing_from)
        });
        let Some(r) = known else {
            return Some(DataLoss {
                missing_from,
                missing_through: None,
                lost_transactions: None,
                backup: None,
            });
        };
        let set = r.set;
        let in_set = |g: u32| (set.low_gen..=set.high_gen).contains(&g);
        let mut restored: u64 = self
            .counts
            .iter()
            .filter(|(g, _)| in_set(*g))
            .map(|(_, n)| n)
            .sum();
        if self.counts.is_empty() && in_set(img.checkpoint.generation) {
            // Nothing replayed: the database holds the first `pos` transactions.
            restored = u64::from(img.checkpoint.pos);
        }
        Some(DataLoss {
            missing_from,
            missing_through: Some(set.high_gen),
            lost_transactions: Some(set.transactions.saturating_sub(restored)),
            backup: Some(set),
        })
    }
}

fn load_log(p: &LogFile) -> Result<(super::format::LogContents, Vec<u8>)> {
    let bytes = p.dir.read(&p.name)?;
    let c = decode_log(&bytes).map_err(|e| {
        fail(
            RecoveryFailure::LogFileCorrupt,
            format!("{}: {e}", p.shown()),
        )
    })?;
    Ok((c, bytes))
}

/// Replays the logs into `db` (whose verified header is `img`) from its checkpoint. The
/// changes stay in the pager (its cache and journal) until the CA adopts the result: a
/// failed replay changes no database file.
pub(crate) fn replay(
    ca_name: &str,
    img: &EdbHeader,
    db: &mut Pager,
    sources: &LogSources,
    mode: Mode,
    history: &[BackupRecord],
) -> Result<Replayed> {
    if !img.ca_name.eq_ignore_ascii_case(ca_name) {
        return Err(fail(
            RecoveryFailure::BadDbSignature,
            format!(
                "the database belongs to CA {:?}, not {:?}",
                img.ca_name, ca_name
            ),
        ));
    }
    let hard = matches!(mode, Mode::Hard { .. });
    if let Mode::Hard { gen_high } = mode {
        // A backed-up database's checkpoint lies inside the logs the backup listed, so the
        // log at the checkpoint is always among the registered ones and gets its
        // signature checked; a database beyond genHigh is not the one backed up.
        if img.checkpoint.generation > gen_high {
            return Err(fail(
                RecoveryFailure::RestoreOfNonBackupDatabase,
                format!(
                    "the restored database is at log generation {} but the registered logs end at {gen_high}: it is not the database this backup set was taken with",
                    img.checkpoint.generation
                ),
            ));
        }
    }
    let mut clock = img.clock;
    let mut report = RecoveryReport {
        hard,
        from: img.checkpoint,
        ..Default::default()
    };
    let current = match &sources.current {
        Some(p) => match load_log(p) {
            Ok((c, bytes)) => Some((p.shown(), bytes, c)),
            Err(e) if !hard || is_link_refusal(&e) => return Err(e),
            Err(_) => {
                report.ignored.push(p.shown());
                None
            }
        },
        None => None,
    };
    let mut generation = img.checkpoint.generation;
    let mut prev_crc: Option<u32> = None;
    let mut skip = img.checkpoint.pos as usize;
    let mut ends = Ends::default();
    loop {
        let strict = match mode {
            Mode::Soft => true,
            Mode::Hard { gen_high } => generation <= gen_high,
        };
        let numbered = sources.numbered.get(&generation);
        let use_current = numbered.is_none()
            && current
                .as_ref()
                .is_some_and(|c| c.2.header.generation == generation);
        let loaded = match (numbered, use_current) {
            (Some(p), _) => load_log(p).map(|(c, b)| (p.shown(), c, b, true)),
            (None, true) => {
                let (p, b, c) = current.as_ref().expect("checked");
                Ok((p.clone(), c.clone(), b.clone(), false))
            }
            (None, false) => break,
        };
        let step = loaded.and_then(|(label, contents, raw, sealed_expected)| {
            check_header(
                &contents.header,
                ca_name,
                img.signature,
                generation,
                prev_crc,
                &label,
            )?;
            if sealed_expected && contents.sealed_crc.is_none() {
                return Err(fail(
                    RecoveryFailure::LogFileCorrupt,
                    format!(
                        "{label} (generation {generation}) is not sealed: it is torn or was cut short"
                    ),
                ));
            }
            if contents.txns.len() < skip {
                return Err(fail(
                    RecoveryFailure::LogFileCorrupt,
                    format!(
                        "{label} holds {} transactions but the database checkpoint is after {skip}",
                        contents.txns.len()
                    ),
                ));
            }
            Ok((label, contents, raw, sealed_expected))
        });
        let (label, contents, raw, sealed) = match step {
            Ok(v) => v,
            Err(e) if strict || is_link_refusal(&e) => return Err(e),
            Err(_) => {
                if let Some(p) = numbered {
                    report.ignored.push(p.shown());
                }
                break;
            }
        };
        let _ = label;
        for t in &contents.txns[skip..] {
            db.apply(t)?;
            clock += 60;
            report.transactions += 1;
        }
        skip = 0;
        report.replayed_generations.push(generation);
        ends.counts.push((generation, contents.txns.len() as u64));
        if let Some(m) = contents.backup_end {
            ends.last_mark = Some(m);
        }
        if !sealed {
            report.torn_tail = contents.torn_tail;
            if let Mode::Hard { gen_high } = mode {
                if generation <= gen_high {
                    return Err(missing_restore(generation, gen_high));
                }
                // The chain reached the CA's current log: nothing after it to lose.
                report.backup_end = ends.last_mark;
            }
            return Ok(Replayed {
                signature: img.signature,
                clock,
                current: Position {
                    generation,
                    pos: contents.txns.len() as u32,
                },
                prev_crc: contents.header.prev_crc,
                current_log_bytes: valid_prefix(&raw, &contents),
                report,
            });
        }
        prev_crc = contents.sealed_crc;
        generation += 1;
    }
    match mode {
        Mode::Hard { gen_high } if generation <= gen_high => {
            return Err(missing_restore(generation, gen_high))
        }
        Mode::Hard { gen_high } => {
            if let Some((p, _, _)) = &current {
                report.ignored.push(p.clone());
            }
            report.backup_end = ends.last_mark;
            report.data_loss = ends.loss(img, gen_high, history);
        }
        Mode::Soft => {
            if img.checkpoint.pos > 0 && report.replayed_generations.is_empty() {
                return Err(fail(
                    RecoveryFailure::MissingLogFile,
                    format!(
                        "log generation {} ({}) is missing: the database checkpoint is inside it",
                        img.checkpoint.generation,
                        log_file_name(img.checkpoint.generation)
                    ),
                ));
            }
            if let Some((p, _, c)) = &current {
                return Err(fail(
                    RecoveryFailure::MissingLogFile,
                    format!(
                        "{} holds generation {} but the chain stops after generation {}: generation {generation} ({}) is missing",
                        p,
                        c.header.generation,
                        generation.saturating_sub(1),
                        log_file_name(generation)
                    ),
                ));
            }
        }
    }
    let header = LogHeader {
        ca_name: img.ca_name.clone(),
        signature: img.signature,
        generation,
        prev_crc: prev_crc.unwrap_or(0),
    };
    Ok(Replayed {
        signature: img.signature,
        clock,
        current: Position { generation, pos: 0 },
        prev_crc: header.prev_crc,
        current_log_bytes: header.encode(),
        report,
    })
}

fn missing_restore(generation: u32, gen_high: u32) -> Error {
    fail(
        RecoveryFailure::MissingRestoreLogFiles,
        format!(
            "log generation {generation} ({}) is missing: the restored chain must reach the registered genHigh {gen_high} ({})",
            log_file_name(generation),
            log_file_name(gen_high)
        ),
    )
}

fn check_header(
    h: &LogHeader,
    ca_name: &str,
    signature: u64,
    generation: u32,
    prev_crc: Option<u32>,
    label: &str,
) -> Result<()> {
    if !h.ca_name.eq_ignore_ascii_case(ca_name) || h.signature != signature {
        return Err(fail(
            RecoveryFailure::BadLogSignature,
            format!(
                "{label} belongs to database {:016x} of CA {:?}, not to {:016x} of {:?}",
                h.signature, h.ca_name, signature, ca_name
            ),
        ));
    }
    if h.generation != generation {
        return Err(fail(
            RecoveryFailure::BadLogSignature,
            format!(
                "{label} holds generation {} where generation {generation} was expected (renamed or reordered logs)",
                h.generation
            ),
        ));
    }
    if let Some(p) = prev_crc {
        if h.prev_crc != p {
            return Err(fail(
                RecoveryFailure::BadLogSignature,
                format!("{label} does not follow the previous generation (chain checksum differs): a log from another history"),
            ));
        }
    }
    Ok(())
}

fn valid_prefix(raw: &[u8], c: &super::format::LogContents) -> Vec<u8> {
    if !c.torn_tail {
        return raw.to_vec();
    }
    // Re-encode: header plus the frames that parsed.
    let mut v = c.header.encode();
    for t in &c.txns {
        v.extend(super::format::encode_frame(t, Vec::new()));
    }
    v
}

/// Runs the recovery a start needs: hard recovery of a completed restore, or soft recovery.
/// On failure no database file is changed (the pages the replay changed are discarded
/// with the journal).
pub(crate) fn recover(ca: &Ca, machine: &Machine) -> Result<Recovered> {
    // Every directory is resolved once beneath the root without following a link, and
    // each file is then opened relative to it (machine::fs): a link is refused by the
    // operation that meets it.
    let fs = machine.fs();
    let log_dir = open_dir_if_there(machine, &ca.log_dir)?;
    let missing = |path: PathBuf| {
        fail(
            RecoveryFailure::DatabaseCorrupted,
            format!("the database file {} is missing", path.display()),
        )
    };
    let (db_dir, db_name, journal_dir, sources, mode) = match &ca.restore.marker {
        None => {
            let Some(db_dir) = open_dir_if_there(machine, &ca.db_dir)? else {
                return Err(missing(machine.host_path_of(&ca.database_path())));
            };
            // A checkpoint a crash interrupted after its commit record is finished first.
            pager::finish_interrupted_checkpoint(&db_dir, &ca.edb_name(), JOURNAL)?;
            let dirs: Vec<Dir> = log_dir.iter().cloned().collect();
            let sources = LogSources::scan(&dirs, log_dir.as_ref())?;
            (db_dir.clone(), ca.edb_name(), db_dir, sources, Mode::Soft)
        }
        Some(mk) => {
            // A pending or failed registration never gets here: `Ca::begin_start` refuses it.
            let (old, new) = mk.restore_map.first().cloned().unwrap_or_default();
            let db_key = ca.database_path().key();
            if machine.parse_path(&old)?.key() != db_key {
                return Err(fail(
                    RecoveryFailure::RestoreOfNonBackupDatabase,
                    format!(
                        "the restore map names {old:?} as the backed-up database, but this CA's database is {}",
                        ca.database_path().local()
                    ),
                ));
            }
            // The client's paths, resolved beneath the root like the CA's own.
            let db = machine.parse_path(&new)?;
            let (Some(db_dir), Some(db_name)) =
                (open_dir_if_there(machine, &db.parent())?, db.file_name())
            else {
                return Err(missing(machine.host_path_of(&db)));
            };
            let mut dirs = Vec::new();
            for p in mk.backup_log_paths.iter().chain(mk.log_path.iter()) {
                dirs.extend(open_dir_if_there(machine, &machine.parse_path(p)?)?);
            }
            dirs.extend(log_dir.iter().cloned());
            let sources = LogSources::scan(&dirs, log_dir.as_ref())?;
            // A journal of the database the restore replaced is not this database's.
            let journal_dir = fs.create_dir(&ca.db_dir)?;
            journal_dir.remove_if_exists(JOURNAL)?;
            let mode = Mode::Hard {
                gen_high: mk.gen_high,
            };
            (db_dir, db_name.to_string(), journal_dir, sources, mode)
        }
    };
    let mut db = read_database(&db_dir, &db_name, journal_dir, JOURNAL)?;
    let img = db.disk_header().clone();
    match replay(&ca.name, &img, &mut db, &sources, mode, ca.backup_history()) {
        Ok(r) => Ok(r.with(db)),
        Err(e) => {
            db.discard()?;
            Err(e)
        }
    }
}

/// Where restore registrations are written (documented in `docs/FILE-FORMATS.md`).
pub struct MarkerStore;

impl MarkerStore {
    /// The emulated registry key file of `CertSrvRestoreRegisterW`.
    pub fn registry_path(machine: &Machine) -> PathBuf {
        machine.root().join(Self::REGISTRY_REL)
    }

    /// [`MarkerStore::registry_path`] beneath the machine root.
    const REGISTRY_REL: &'static str =
        "registry/HKLM/SYSTEM/CurrentControlSet/Services/CertSvc/Configuration/RestoreInProgress.txt";

    /// The file `CertSrvRestoreRegisterThroughFile` writes (a Windows path on the machine).
    pub const THROUGH_FILE: &'static str =
        r"C:\Windows\System32\CertLog\RestoreInProgress.certadm-emu.txt";

    /// Writes the marker where its kind of registration keeps it.
    pub(crate) fn save(machine: &Machine, _ca: &Ca, mk: &RestoreMarker) -> Result<()> {
        // One registration, one file: a mixed RegisterW / ThroughFile history keeps only the latest.
        Self::clear(machine)?;
        let path = if mk.through_file {
            Rel::from(machine.parse_path(Self::THROUGH_FILE)?)
        } else {
            Rel::host(Self::REGISTRY_REL)?
        };
        machine.fs().write_atomic(&path, mk.to_text().as_bytes())
    }

    /// Removes both marker files (beneath the root, never through a link).
    pub fn clear(machine: &Machine) -> Result<()> {
        let fs = machine.fs();
        fs.remove_if_exists(Rel::host(Self::REGISTRY_REL)?)?;
        fs.remove_if_exists(machine.parse_path(Self::THROUGH_FILE)?)
    }
}

impl RestoreMarker {
    /// The marker as `Name=value` lines, with the value names of `CertSrv.h`.
    pub fn to_text(&self) -> String {
        let mut s = String::from("[RestoreInProgress]\n");
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        s += &format!("CheckPointFile={}\n", opt(&self.checkpoint_path));
        s += &format!("LogPath={}\n", opt(&self.log_path));
        for b in &self.backup_log_paths {
            s += &format!("BackupLogDirectory={b}\n");
        }
        s += &format!("RestoreMapCount={}\n", self.restore_map.len());
        for (a, b) in &self.restore_map {
            s += &format!("RestoreMap={a}|{b}\n");
        }
        s += &format!("LowLogNumber={}\n", self.gen_low);
        s += &format!("HighLogNumber={}\n", self.gen_high);
        match self.status {
            Some(h) => s += &format!("RestoreStatus={:#010X}\n", h.as_u32()),
            None => s += "RestoreStatus=pending\n",
        }
        s
    }
}

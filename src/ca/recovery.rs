//! Recovery at service start: soft recovery (replay the logs since the checkpoint)
//! and hard recovery of a registered restore (spec §8.5).

use super::files::read_all;
use super::format::{decode_log, log_file_name, EdbImage, FormatError, LogHeader, Position};
use super::{apply, gen, Ca, Record, Txn};
use crate::core::{Error, RecoveryFailure, Result};
use crate::machine::Machine;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

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
}

/// The restore registration (`RestoreInProgress`); filled in by the restore side.
#[derive(Debug, Clone, Default)]
pub struct RestoreState {
    /// The registered restore, if any.
    pub marker: Option<RestoreMarker>,
}

/// A registered restore.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub fn clear(&mut self, _machine: &Machine) -> Result<()> {
        self.marker = None;
        Ok(())
    }
}

/// The state a recovery produced, adopted by the CA if it succeeded.
pub(crate) struct Recovered {
    pub signature: u64,
    pub records: BTreeMap<u32, Record>,
    pub next_request_id: u32,
    pub clock: i64,
    pub current: Position,
    pub prev_crc: u32,
    pub current_log_bytes: Vec<u8>,
    pub report: RecoveryReport,
}

fn fail(failure: RecoveryFailure, why: impl Into<String>) -> Error {
    Error::Recovery {
        failure,
        why: why.into(),
    }
}

/// Reads and verifies a `.edb`: checksum of the compact part, and the generated
/// padding byte by byte if the file holds it (streamed, O(1) memory).
pub fn read_database(path: &Path) -> Result<EdbImage> {
    let mut f = std::fs::File::open(path).map_err(|_| {
        fail(
            RecoveryFailure::DatabaseCorrupted,
            format!("the database file {} is missing", path.display()),
        )
    })?;
    let len = f
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .len();
    let corrupt = |e: FormatError| {
        fail(
            RecoveryFailure::DatabaseCorrupted,
            format!("{}: {e}", path.display()),
        )
    };
    let mut prefix = vec![0u8; super::format::EDB_PREFIX];
    f.read_exact(&mut prefix)
        .map_err(|_| corrupt(FormatError::Truncated))?;
    let (compact, logical, seed) = EdbImage::prefix(&prefix).map_err(corrupt)?;
    if len != compact && len != logical {
        return Err(fail(
            RecoveryFailure::DatabaseCorrupted,
            format!(
                "{} is {len} bytes; a database of this header is {compact} (compact) or {logical} bytes",
                path.display()
            ),
        ));
    }
    let mut body = prefix;
    body.resize(compact as usize, 0);
    f.read_exact(&mut body[super::format::EDB_PREFIX..])
        .map_err(|_| corrupt(FormatError::Truncated))?;
    let img = EdbImage::decode(&body).map_err(corrupt)?;
    if len > compact {
        let mut buf = vec![0u8; 1 << 20];
        let mut off = compact;
        while off < len {
            let n = ((len - off) as usize).min(buf.len());
            f.read_exact(&mut buf[..n])
                .map_err(|_| corrupt(FormatError::Truncated))?;
            if let Some(bad) = gen::verify(seed, off, &buf[..n]) {
                return Err(fail(
                    RecoveryFailure::DatabaseCorrupted,
                    format!("{}: byte {bad} differs from the database content", path.display()),
                ));
            }
            off += n as u64;
        }
    }
    Ok(img)
}

/// Where the logs of a replay come from.
pub(crate) struct LogSources {
    /// Numbered generations found, by generation (first source wins).
    pub numbered: BTreeMap<u32, PathBuf>,
    /// The current log `edb.log`, if present.
    pub current: Option<PathBuf>,
}

impl LogSources {
    pub fn scan(dirs: &[PathBuf], current: Option<PathBuf>) -> LogSources {
        let mut numbered = BTreeMap::new();
        for d in dirs {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(g) = super::format::parse_log_file_name(&name) {
                    numbered.entry(g).or_insert_with(|| e.path());
                }
            }
        }
        LogSources {
            numbered,
            current: current.filter(|p| p.is_file()),
        }
    }
}

/// Replays the logs onto `img` from its checkpoint. `require_through` demands that
/// every generation up to it is present (the registered genHigh of a restore).
pub(crate) fn replay(
    ca_name: &str,
    img: EdbImage,
    sources: &LogSources,
    require_through: Option<u32>,
    hard: bool,
) -> Result<Recovered> {
    if !img.ca_name.eq_ignore_ascii_case(ca_name) {
        return Err(fail(
            RecoveryFailure::BadDbSignature,
            format!(
                "the database belongs to CA {:?}, not {:?}",
                img.ca_name, ca_name
            ),
        ));
    }
    let mut records: BTreeMap<u32, Record> =
        img.records.iter().map(|r| (r.request_id, r.clone())).collect();
    let mut next_id = img.next_request_id;
    let mut clock = img.clock;
    let mut report = RecoveryReport {
        hard,
        from: img.checkpoint,
        ..Default::default()
    };
    // Read the current log's header first: it ends the chain.
    let current = match &sources.current {
        Some(p) => {
            let bytes = read_all(p)?;
            let c = decode_log(&bytes).map_err(|e| {
                fail(
                    RecoveryFailure::LogFileCorrupt,
                    format!("{}: {e}", p.display()),
                )
            })?;
            Some((p.clone(), bytes, c))
        }
        None => None,
    };
    let mut gen = img.checkpoint.gen;
    let mut prev_crc: Option<u32> = None;
    let mut skip = img.checkpoint.pos as usize;
    loop {
        let numbered = sources.numbered.get(&gen);
        let from_current = current
            .as_ref()
            .filter(|c| c.2.header.generation == gen && numbered.is_none());
        let (label, contents, sealed_expected, raw) = match (numbered, from_current) {
            (Some(p), _) => {
                let bytes = read_all(p)?;
                let c = decode_log(&bytes).map_err(|e| {
                    fail(
                        RecoveryFailure::LogFileCorrupt,
                        format!("{}: {e}", p.display()),
                    )
                })?;
                (p.display().to_string(), c, true, bytes)
            }
            (None, Some((p, bytes, c))) => (p.display().to_string(), c.clone(), false, bytes.clone()),
            (None, None) => break,
        };
        check_header(&contents.header, ca_name, img.signature, gen, prev_crc, &label)?;
        if sealed_expected && contents.sealed_crc.is_none() {
            return Err(fail(
                RecoveryFailure::LogFileCorrupt,
                format!("{label} (generation {gen}) is not sealed: it is torn or was cut short"),
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
        for t in &contents.txns[skip..] {
            apply(&mut records, &mut next_id, t);
            clock += 60;
            report.transactions += 1;
        }
        skip = 0;
        report.replayed_generations.push(gen);
        if !sealed_expected {
            // This was edb.log: the chain ends here.
            report.torn_tail = contents.torn_tail;
            let valid = valid_prefix(&raw, &contents);
            let pos = contents.txns.len() as u32;
            if let Some(h) = require_through {
                if gen <= h {
                    return Err(fail(
                        RecoveryFailure::MissingRestoreLogFiles,
                        format!("log generation {gen} ({}) of the restored range is missing", log_file_name(gen)),
                    ));
                }
            }
            return Ok(Recovered {
                signature: img.signature,
                records,
                next_request_id: next_id,
                clock,
                current: Position { gen, pos },
                prev_crc: contents.header.prev_crc,
                current_log_bytes: valid,
                report,
            });
        }
        prev_crc = contents.sealed_crc;
        gen += 1;
    }
    // The chain ended without edb.log.
    if let Some(h) = require_through {
        if gen <= h {
            let failure = if hard {
                RecoveryFailure::MissingRestoreLogFiles
            } else {
                RecoveryFailure::MissingLogFile
            };
            return Err(fail(
                failure,
                format!(
                    "log generation {gen} ({}) is missing: the chain from the database checkpoint {}:{} must reach generation {h}",
                    log_file_name(gen),
                    img.checkpoint.gen,
                    img.checkpoint.pos
                ),
            ));
        }
    }
    if img.checkpoint.pos > 0 && report.replayed_generations.is_empty() {
        return Err(fail(
            RecoveryFailure::MissingLogFile,
            format!(
                "log generation {} is missing: the database checkpoint is inside it",
                img.checkpoint.gen
            ),
        ));
    }
    if let Some((p, _, c)) = &current {
        if c.header.generation != gen {
            return Err(fail(
                RecoveryFailure::MissingLogFile,
                format!(
                    "{} holds generation {} but the chain stops at generation {}: generation {gen} ({}) is missing",
                    p.display(),
                    c.header.generation,
                    gen.saturating_sub(1),
                    log_file_name(gen)
                ),
            ));
        }
    }
    let header = LogHeader {
        ca_name: img.ca_name.clone(),
        signature: img.signature,
        generation: gen,
        prev_crc: prev_crc.unwrap_or(0),
    };
    Ok(Recovered {
        signature: img.signature,
        records,
        next_request_id: next_id,
        clock,
        current: Position { gen, pos: 0 },
        prev_crc: header.prev_crc,
        current_log_bytes: header.encode(),
        report,
    })
}

fn check_header(
    h: &LogHeader,
    ca_name: &str,
    signature: u64,
    gen: u32,
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
    if h.generation != gen {
        return Err(fail(
            RecoveryFailure::BadLogSignature,
            format!(
                "{label} holds generation {} where generation {gen} was expected (renamed or reordered logs)",
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
        v.extend(super::format::encode_frame(&Txn::encode(t)));
    }
    v
}

/// Runs the recovery a start needs: hard recovery of a completed restore, or soft recovery.
pub(crate) fn recover(ca: &Ca, machine: &Machine) -> Result<Recovered> {
    let db = machine.host_path_of(&ca.database_path());
    let img = read_database(&db)?;
    let log_dir = machine.host_path_of(&ca.log_dir);
    let current = machine.host_path_of(&ca.current_log_path());
    let sources = LogSources::scan(&[log_dir], Some(current));
    replay(&ca.name, img, &sources, None, false)
}

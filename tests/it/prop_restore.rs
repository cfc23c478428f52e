//! Property tests of the restore side (spec §8.3–§8.7).
//!
//! * Round trip: random CA activity (issue, revoke, log rolls, crashes, restarts)
//!   interleaved with random full and incremental backups (with or without truncation,
//!   with requests arriving during the full backup). Stop, wipe, restore the latest
//!   full set plus the incrementals after it, start: the records are the records at the
//!   last backup. Without wiping, the logs written after the backup survive and the
//!   records are those at stop time.
//! * Mutations: one change to a valid backup set or to the restore steps. The outcome is
//!   the exact original records or a refusal with a specific code, never a CA that starts
//!   with other data; a refused start leaves the CA stopped and its files untouched, and
//!   the set restores fine once repaired.

use crate::codes::*;
use crate::common::snapshot;
use certadm_emu::abi::{
    CertSrvRestoreEnd, CertSrvRestorePrepareW, CertSrvRestoreRegisterComplete,
    CertSrvRestoreRegisterThroughFile, CertSrvRestoreRegisterW, CSEDB_RSTMAPW,
};
use certadm_emu::ca::format::decode_log;
use certadm_emu::ca::format::{log_file_name, parse_log_file_name};
use certadm_emu::ca::{Record, ServiceState, Status};
use certadm_emu::client::{
    backup_to_dir, read_locations, restore_from_dirs, BackupOptions, BackupSummary, RestoreOptions,
    SavedLocations,
};
use certadm_emu::conformance::RESTORE_LOST_DATA;
use certadm_emu::core::consts::*;
use certadm_emu::core::wide::to_wide_nul;
use certadm_emu::{EmulatedCa, HRESULT};
use core::ffi::c_void;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Path refusals (spec: `machine::path`).
const PATH_CODES: [HRESULT; 4] = [ACCESS_DENIED, BAD_NETPATH, INVALID_NAME, BAD_PATHNAME];

/// Every code a mutated restore may end with (besides the original records).
const REFUSALS: [HRESULT; 14] = [
    UNEXPECTED,
    INVALID_ARG,
    RESTORE_IN_PROGRESS,
    SUSPENDED,
    MISSING_RESTORE_LOGS,
    BAD_LOG_SIGNATURE,
    BAD_DB_SIGNATURE,
    LOG_FILE_CORRUPT,
    DATABASE_CORRUPTED,
    NON_BACKUP_DATABASE,
    ACCESS_DENIED,
    BAD_NETPATH,
    INVALID_NAME,
    BAD_PATHNAME,
];

/// Case counts: moderate, so both properties run in well under a minute in debug builds.
/// `PROPTEST_CASES` overrides them.
fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ----- CA activity ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct CaCfg {
    seed: u64,
    records: u32,
    log_capacity: u32,
    edb_size: Option<u64>,
}

fn ca_cfg() -> impl Strategy<Value = CaCfg> {
    (
        any::<u64>(),
        0u32..20,
        1u32..7,
        prop_oneof![3 => Just(None), 1 => (2_048u64..24_000).prop_map(Some)],
    )
        .prop_map(|(seed, records, log_capacity, edb_size)| CaCfg {
            seed,
            records,
            log_capacity,
            edb_size,
        })
}

/// A scratch directory for machine disks and backup sets. These tests create and delete
/// many small files, so they use a RAM-backed file system where there is one (the shared
/// disk of a busy CI host can be 10x slower); the temporary directory otherwise.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let b = {
        let mut b = tempfile::Builder::new();
        b.prefix("certadm-emu-prop-restore-");
        b
    };
    if shm.is_dir() {
        if let Ok(t) = b.tempdir_in(shm) {
            return t;
        }
    }
    b.tempdir().unwrap()
}

/// A CA whose disk is `root`.
fn build(cfg: &CaCfg, name: &str, seed: u64, root: &Path) -> EmulatedCa {
    let mut b = EmulatedCa::builder()
        .root_dir(root)
        .ca_name(name)
        .seed(seed)
        .records(cfg.records)
        .log_capacity(cfg.log_capacity);
    if let Some(n) = cfg.edb_size {
        b = b.edb_size(n);
    }
    b.build().unwrap()
}

#[derive(Debug, Clone)]
enum Act {
    Issue(u32),
    Revoke(Index),
    Roll,
    CrashRestart,
    StopStart,
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        5 => (1u32..7).prop_map(Act::Issue),
        2 => any::<Index>().prop_map(Act::Revoke),
        1 => Just(Act::Roll),
        1 => Just(Act::CrashRestart),
        1 => Just(Act::StopStart),
    ]
}

fn do_act(ca: &EmulatedCa, a: &Act) -> Result<(), TestCaseError> {
    match a {
        Act::Issue(n) => {
            ca.issue(*n).unwrap();
        }
        Act::Revoke(i) => {
            let issued: Vec<u32> = ca
                .records()
                .filter(|r| r.status == Status::Issued)
                .map(|r| r.request_id)
                .collect();
            if !issued.is_empty() {
                ca.revoke(issued[i.index(issued.len())]).unwrap();
            }
        }
        Act::Roll => {
            ca.roll_log().unwrap();
        }
        Act::CrashRestart => {
            let before = ca.records().collect::<Vec<_>>();
            ca.crash();
            let report = ca.start().unwrap();
            prop_assert!(!report.hard);
            prop_assert_eq!(
                ca.records().collect::<Vec<_>>(),
                before,
                "soft recovery after a crash"
            );
        }
        Act::StopStart => {
            let before = ca.records().collect::<Vec<_>>();
            ca.stop().unwrap();
            ca.start().unwrap();
            prop_assert_eq!(ca.records().collect::<Vec<_>>(), before);
        }
    }
    Ok(())
}

/// A CA with the backups taken of it.
struct History {
    /// Dropped before `tmp`, which holds its disk.
    ca: EmulatedCa,
    tmp: tempfile::TempDir,
    taken: usize,
    /// The latest full backup and its summary.
    full: Option<(PathBuf, BackupSummary)>,
    /// The incremental backups after it.
    incs: Vec<(PathBuf, BackupSummary)>,
    /// `ca.records().collect::<Vec<_>>()` after the last backup.
    at_last_backup: Vec<Record>,
    /// Incremental backups refused because no full backup was taken yet.
    refused_incrementals: usize,
}

impl History {
    fn new(cfg: &CaCfg) -> History {
        let tmp = scratch();
        History {
            ca: build(
                cfg,
                "Prop Restore CA",
                cfg.seed,
                &tmp.path().join("machine"),
            ),
            tmp,
            taken: 0,
            full: None,
            incs: Vec::new(),
            at_last_backup: Vec::new(),
            refused_incrementals: 0,
        }
    }

    fn next_dir(&mut self) -> PathBuf {
        self.taken += 1;
        self.tmp.path().join(format!("backup{:03}", self.taken))
    }

    /// A full backup; `during` requests arrive while the `.edb` is being copied.
    fn full_backup(&mut self, truncate: bool, during: u32) {
        let dir = self.next_dir();
        let ca = &self.ca;
        let mut busy = false;
        let mut progress = |name: &str, _: u64, _: u64| {
            if !busy && during > 0 && name.to_ascii_lowercase().ends_with(".edb") {
                busy = true;
                ca.issue(during).unwrap();
            }
        };
        let opts = BackupOptions {
            incremental: false,
            truncate,
            ..Default::default()
        };
        let sum = backup_to_dir(ca.server_name(), &dir, &opts, &mut progress).unwrap();
        assert!(sum.log_range.is_some());
        self.full = Some((dir, sum));
        self.incs.clear();
        self.at_last_backup = self.ca.records().collect::<Vec<_>>();
    }

    /// An incremental backup: refused with `JET_errMissingFullBackup` before any full one.
    fn incremental_backup(&mut self, truncate: bool) -> Result<(), TestCaseError> {
        let dir = self.next_dir();
        let opts = BackupOptions {
            incremental: true,
            truncate,
            ..Default::default()
        };
        let r = backup_to_dir(self.ca.server_name(), &dir, &opts, &mut |_, _, _| {});
        if self.full.is_none() {
            let e = r.expect_err("an incremental backup needs a full one first");
            prop_assert_eq!(e.call, "CertSrvBackupPrepareW");
            prop_assert_eq!(e.hr, MISSING_FULL_BACKUP);
            self.refused_incrementals += 1;
            return Ok(());
        }
        let sum = r.unwrap();
        let (low, _) = sum.log_range.unwrap();
        let prev = self
            .incs
            .last()
            .or(self.full.as_ref())
            .and_then(|(_, s)| s.log_range)
            .unwrap();
        prop_assert_eq!(low, prev.1 + 1, "incrementals chain on the previous backup");
        self.incs.push((dir, sum));
        self.at_last_backup = self.ca.records().collect::<Vec<_>>();
        Ok(())
    }

    fn restore_latest(&self, through_file: bool) {
        let (full, _) = self.full.as_ref().unwrap();
        let incs: Vec<PathBuf> = self.incs.iter().map(|(d, _)| d.clone()).collect();
        let sum = restore_from_dirs(
            self.ca.server_name(),
            full,
            &incs,
            &|p| self.ca.host_path(p),
            &RestoreOptions { through_file },
        )
        .unwrap();
        assert_eq!(sum.registered.len(), 1 + incs.len());
    }
}

// ----- (a) round trip --------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Act(Act),
    Full { truncate: bool, during: u32 },
    Incremental { truncate: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => act().prop_map(Op::Act),
        2 => (any::<bool>(), prop_oneof![2 => Just(0u32), 1 => 1u32..12])
            .prop_map(|(truncate, during)| Op::Full { truncate, during }),
        3 => any::<bool>().prop_map(|truncate| Op::Incremental { truncate }),
    ]
}

#[derive(Debug, Clone)]
struct RoundTrip {
    cfg: CaCfg,
    ops: Vec<Op>,
    /// Activity after the last backup.
    tail: Vec<Act>,
    crash_at_end: bool,
    through_file: bool,
    /// Surviving-logs variant: delete only the `.edb` (a lost database volume).
    lose_db: bool,
}

fn round_trip() -> impl Strategy<Value = RoundTrip> {
    (
        ca_cfg(),
        vec(op(), 0..20),
        vec(act(), 0..6),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(cfg, ops, tail, crash_at_end, through_file, lose_db)| RoundTrip {
                cfg,
                ops,
                tail,
                crash_at_end,
                through_file,
                lose_db,
            },
        )
}

/// Runs the scenario up to the stop; returns the records at stop time.
fn live(s: &RoundTrip) -> Result<(History, Vec<Record>), TestCaseError> {
    let mut h = History::new(&s.cfg);
    for op in &s.ops {
        match op {
            Op::Act(a) => do_act(&h.ca, a)?,
            Op::Full { truncate, during } => h.full_backup(*truncate, *during),
            Op::Incremental { truncate } => h.incremental_backup(*truncate)?,
        }
    }
    if h.full.is_none() {
        h.full_backup(true, 0);
    }
    for a in &s.tail {
        do_act(&h.ca, a)?;
    }
    let at_stop = h.ca.records().collect::<Vec<_>>();
    if s.crash_at_end {
        h.ca.crash();
    } else {
        h.ca.stop().unwrap();
    }
    Ok((h, at_stop))
}

/// Starts the restored CA and checks it holds `expected` and runs normally afterwards.
fn start_restored(h: &History, expected: &[Record]) -> Result<(), TestCaseError> {
    let ca = &h.ca;
    let report = ca.start().unwrap();
    prop_assert!(report.hard);
    prop_assert_eq!(&report.data_loss, &None, "a complete set loses nothing");
    prop_assert!(
        report.backup_end.is_some(),
        "the chain passes a backup end mark"
    );
    prop_assert!(ca.report().of(RESTORE_LOST_DATA).is_empty());
    prop_assert_eq!(ca.service(), ServiceState::Running);
    prop_assert_eq!(ca.records().collect::<Vec<_>>(), expected);
    prop_assert!(ca.restore_marker().is_none());
    prop_assert!(ca.last_recovery().is_some());
    prop_assert_eq!(ca.last_full_backup(), None);
    // It runs on: a soft restart after a crash keeps everything.
    ca.issue(2).unwrap();
    let now = ca.records().collect::<Vec<_>>();
    ca.crash();
    prop_assert!(!ca.start().unwrap().hard);
    prop_assert_eq!(ca.records().collect::<Vec<_>>(), now);
    Ok(())
}

/// What the round-trip cases covered, printed at the end of each property.
#[derive(Debug, Default)]
struct Coverage {
    cases: usize,
    incrementals_restored: BTreeMap<usize, usize>,
    full_sets_with_several_logs: usize,
    incrementals_refused_before_a_full: usize,
    crash_at_end: usize,
    through_file: usize,
    lose_db: usize,
}

fn cover(c: &Mutex<Coverage>, s: &RoundTrip, h: &History) {
    let mut c = c.lock().unwrap();
    c.cases += 1;
    *c.incrementals_restored.entry(h.incs.len()).or_default() += 1;
    let (low, high) = h.full.as_ref().unwrap().1.log_range.unwrap();
    c.full_sets_with_several_logs += usize::from(high > low);
    c.incrementals_refused_before_a_full += h.refused_incrementals;
    c.crash_at_end += usize::from(s.crash_at_end);
    c.through_file += usize::from(s.through_file);
    c.lose_db += usize::from(s.lose_db);
}

fn report(name: &str, c: &Mutex<Coverage>) {
    let c = c.lock().unwrap();
    let incs: Vec<String> = c
        .incrementals_restored
        .iter()
        .map(|(k, n)| format!("{n} cases with {k}"))
        .collect();
    eprintln!(
        "{name}: {} cases; incrementals after the full: {}; full sets of several logs: {}; \
         incrementals refused before a full: {}; crash at end: {}; through file: {}; \
         .edb lost: {}",
        c.cases,
        incs.join(", "),
        c.full_sets_with_several_logs,
        c.incrementals_refused_before_a_full,
        c.crash_at_end,
        c.through_file,
        c.lose_db
    );
}

#[test]
fn round_trip_restores_the_records_of_the_last_backup() {
    let coverage = Mutex::new(Coverage::default());
    let mut runner = TestRunner::new(config(64));
    let result = runner.run(&round_trip(), |s| {
        let (h, _) = live(&s)?;
        cover(&coverage, &s, &h);
        h.ca.wipe_files().unwrap();
        h.restore_latest(s.through_file);
        start_restored(&h, &h.at_last_backup)
    });
    report("round trip (wiped)", &coverage);
    result.unwrap();
}

#[test]
fn round_trip_without_wiping_keeps_the_surviving_logs() {
    let coverage = Mutex::new(Coverage::default());
    let mut runner = TestRunner::new(config(64));
    let result = runner.run(&round_trip(), |s| {
        let (h, at_stop) = live(&s)?;
        cover(&coverage, &s, &h);
        if s.lose_db {
            let db = h.ca.host_path(&h.ca.database_path()).unwrap();
            std::fs::remove_file(db).unwrap();
        }
        h.restore_latest(s.through_file);
        start_restored(&h, &at_stop)
    });
    report("round trip (surviving logs)", &coverage);
    result.unwrap();
}

// ----- (b) mutations -----------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum RangeChange {
    HighUp(u32),
    HighDown(u32),
    LowUp(u32),
    LowDown(u32),
    LowZero,
    Swapped,
}

#[derive(Debug, Clone, Copy)]
enum OtherFiles {
    /// The `.edb` of a CA with another name.
    EdbOtherName,
    /// The `.edb` of a CA with the same name (another database signature).
    EdbSameName,
    /// One log generation of a CA with the same name.
    OneLog,
    /// Every log of a CA with the same name.
    AllLogs,
}

#[derive(Debug, Clone)]
enum Mutation {
    DropLog(Index),
    DropEdb,
    /// Flip `bits` in one byte of the `.edb`.
    FlipEdb {
        at: Index,
        bits: u8,
    },
    /// Flip `bits` in one byte of one log.
    FlipLog {
        log: Index,
        at: Index,
        bits: u8,
    },
    /// Flip `bits` in one byte of `certbkxp.dat` (the saved locations).
    FlipLocations {
        at: Index,
        bits: u8,
    },
    SwapLogNames(Index, Index),
    WrongRange {
        set: Index,
        change: RangeChange,
    },
    IncrementalBeforeFull(Index),
    SkipComplete(Index),
    OtherCa {
        what: OtherFiles,
        pick: Index,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let range_change = prop_oneof![
        (1u32..4).prop_map(RangeChange::HighUp),
        (1u32..6).prop_map(RangeChange::HighDown),
        (1u32..4).prop_map(RangeChange::LowUp),
        (1u32..6).prop_map(RangeChange::LowDown),
        Just(RangeChange::LowZero),
        Just(RangeChange::Swapped),
    ];
    let other = prop_oneof![
        Just(OtherFiles::EdbOtherName),
        Just(OtherFiles::EdbSameName),
        Just(OtherFiles::OneLog),
        Just(OtherFiles::AllLogs),
    ];
    prop_oneof![
        any::<Index>().prop_map(Mutation::DropLog),
        Just(Mutation::DropEdb),
        (any::<Index>(), 1u8..=255).prop_map(|(at, bits)| Mutation::FlipEdb { at, bits }),
        (any::<Index>(), any::<Index>(), 1u8..=255).prop_map(|(log, at, bits)| Mutation::FlipLog {
            log,
            at,
            bits
        }),
        (any::<Index>(), 1u8..=255).prop_map(|(at, bits)| Mutation::FlipLocations { at, bits }),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLogNames(a, b)),
        (any::<Index>(), range_change)
            .prop_map(|(set, change)| Mutation::WrongRange { set, change }),
        any::<Index>().prop_map(Mutation::IncrementalBeforeFull),
        any::<Index>().prop_map(Mutation::SkipComplete),
        (other, any::<Index>()).prop_map(|(what, pick)| Mutation::OtherCa { what, pick }),
    ]
}

#[derive(Debug, Clone)]
struct MutationCase {
    cfg: CaCfg,
    before_full: Vec<Act>,
    during_full: u32,
    full_truncate: bool,
    /// Activity before each incremental backup, and whether it truncates.
    incrementals: Vec<(Vec<Act>, bool)>,
    through_file: bool,
    mutation: Mutation,
}

fn mutation_case() -> impl Strategy<Value = MutationCase> {
    (
        ca_cfg(),
        vec(act(), 0..6),
        prop_oneof![Just(0u32), 1u32..10],
        any::<bool>(),
        vec((vec(act(), 1..5), any::<bool>()), 1..4),
        any::<bool>(),
        mutation(),
    )
        .prop_map(
            |(
                cfg,
                before_full,
                during_full,
                full_truncate,
                incrementals,
                through_file,
                mutation,
            )| {
                MutationCase {
                    cfg,
                    before_full,
                    during_full,
                    full_truncate,
                    incrementals,
                    through_file,
                    mutation,
                }
            },
        )
}

/// One backup set copied to a scratch directory, where a mutation may change it.
struct Staged {
    dir: PathBuf,
    full: bool,
    /// The log range the backup recorded (from CertSrvBackupGetBackupLogsW).
    range: (u32, u32),
}

impl Staged {
    fn db(&self) -> PathBuf {
        self.dir.join(wszDBBACKUPSUBDIR)
    }
    fn logs(&self) -> BTreeMap<u32, PathBuf> {
        logs_in(&self.db())
    }
    /// The set's `.edb` (a full set's), if it has one.
    fn edb(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.db())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| is_edb(p))
    }
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn is_edb(p: &Path) -> bool {
    name_of(p).to_ascii_lowercase().ends_with(".edb")
}

fn logs_in(dir: &Path) -> BTreeMap<u32, PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| parse_log_file_name(&name_of(&e.path())).map(|g| (g, e.path())))
        .collect()
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &dst.join(e.file_name()));
        } else {
            std::fs::copy(&p, dst.join(e.file_name())).unwrap();
        }
    }
}

/// How a restore ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// The CA started with the records it had at the last backup.
    Original,
    /// The CA started with other records: never acceptable.
    Different(usize),
    /// A step refused: the function (or `start`) and its code.
    Refused(&'static str, HRESULT),
}

impl Outcome {
    fn label(&self) -> String {
        match self {
            Outcome::Original => "original records".into(),
            Outcome::Different(n) => format!("DIFFERENT DATA ({n} records)"),
            Outcome::Refused(step, hr) => format!("{step} -> {hr}"),
        }
    }
}

/// How the restore steps run (a valid restore unless a mutation changed them).
struct Plan {
    order: Vec<usize>,
    ranges: Vec<(u32, u32)>,
    skip_complete: Option<usize>,
    through_file: bool,
}

fn register_name(through_file: bool) -> &'static str {
    if through_file {
        "CertSrvRestoreRegisterThroughFile"
    } else {
        "CertSrvRestoreRegisterW"
    }
}

/// The documented restore (spec §8.3) through the exports, with the log ranges the
/// backups recorded: for each set, copy its files to the saved locations, then Prepare,
/// Register, RegisterComplete, End. Returns the first refusal.
fn restore_with_exports(
    ca: &EmulatedCa,
    sets: &[Staged],
    plan: &Plan,
) -> Result<(), (&'static str, HRESULT)> {
    let locs: SavedLocations =
        read_locations(&sets[0].dir).map_err(|e| ("read certbkxp.dat", e.hr))?;
    let host = |p: &str| ca.host_path(p).map_err(|e| ("map path", e.hresult()));
    let copy = |src: &Path, dst: &Path| {
        std::fs::create_dir_all(dst.parent().unwrap())
            .and_then(|()| std::fs::copy(src, dst))
            .map(|_| ())
            .map_err(|_| ("copy", HRESULT::E_FAIL))
    };
    let server = to_wide_nul(ca.server_name());
    let mut db = to_wide_nul(&locs.database);
    let logdir = to_wide_nul(&locs.log_dir);
    let sysdir = to_wide_nul(&locs.system_dir);
    let db_name = locs.database.rsplit('\\').next().unwrap_or("").to_string();
    for &i in &plan.order {
        let set = &sets[i];
        if set.full {
            // Windows names are case-insensitive: find the .edb the way Windows would.
            let src = set
                .edb()
                .filter(|p| name_of(p).eq_ignore_ascii_case(&db_name));
            if let Some(src) = src {
                copy(&src, &host(&locs.database)?)?;
            }
        }
        for src in set.logs().values() {
            copy(src, &host(&format!("{}\\{}", locs.log_dir, name_of(src)))?)?;
        }
        let mut h: *mut c_void = std::ptr::null_mut();
        let flags = if set.full { CSRESTORE_TYPE_FULL } else { 0 };
        // SAFETY: valid string and out-pointer.
        let hr = HRESULT(unsafe { CertSrvRestorePrepareW(server.as_ptr(), flags, &mut h) });
        if hr != HRESULT::S_OK {
            return Err(("CertSrvRestorePrepareW", hr));
        }
        let mut map = [CSEDB_RSTMAPW {
            pwszDatabaseName: db.as_mut_ptr(),
            pwszNewDatabaseName: db.as_mut_ptr(),
        }];
        let (pmap, n) = if set.full {
            (map.as_mut_ptr(), 1)
        } else {
            (std::ptr::null_mut(), 0)
        };
        let register = if plan.through_file {
            CertSrvRestoreRegisterThroughFile
        } else {
            CertSrvRestoreRegisterW
        };
        let (low, high) = plan.ranges[i];
        // SAFETY: NUL-terminated strings; `pmap` valid for `n` entries.
        let hr = HRESULT(unsafe {
            register(
                h,
                sysdir.as_ptr(),
                logdir.as_ptr(),
                pmap,
                n,
                logdir.as_ptr(),
                low,
                high,
            )
        });
        let mut result = Ok(());
        if hr != HRESULT::S_OK {
            result = Err((register_name(plan.through_file), hr));
        } else if plan.skip_complete != Some(i) {
            // SAFETY: our live handle.
            let hr = HRESULT(unsafe { CertSrvRestoreRegisterComplete(h, 0) });
            if hr != HRESULT::S_OK {
                result = Err(("CertSrvRestoreRegisterComplete", hr));
            }
        }
        // SAFETY: our live handle.
        let hr = HRESULT(unsafe { CertSrvRestoreEnd(h) });
        result?;
        if hr != HRESULT::S_OK {
            return Err(("CertSrvRestoreEnd", hr));
        }
    }
    Ok(())
}

/// What a mutation may lead to.
enum Expect {
    /// Exactly this refusal.
    Refusal(&'static str, HRESULT),
    /// A refusal at start with one of these codes.
    StartRefusal(Vec<HRESULT>),
    /// The original records.
    Original,
    /// certbkxp.dat damage: the original records (the damage did not matter), a refused
    /// path, a restore map that names another database, or an unreadable list.
    LocationsDamage,
}

impl Expect {
    fn admits(&self, o: &Outcome) -> bool {
        match (self, o) {
            (_, Outcome::Different(_)) => false,
            (Expect::Refusal(s, c), Outcome::Refused(step, hr)) => s == step && c == hr,
            (Expect::StartRefusal(codes), Outcome::Refused(step, hr)) => {
                *step == "start" && codes.contains(hr)
            }
            (Expect::Original, Outcome::Original) => true,
            (Expect::LocationsDamage, Outcome::Original) => true,
            (Expect::LocationsDamage, Outcome::Refused(step, hr)) => match *step {
                "read certbkxp.dat" => true,
                "start" => *hr == NON_BACKUP_DATABASE,
                _ => PATH_CODES.contains(hr),
            },
            _ => false,
        }
    }
}

static TALLY: Mutex<BTreeMap<String, BTreeMap<String, usize>>> = Mutex::new(BTreeMap::new());

fn tally(kind: &str, outcome: &Outcome) {
    *TALLY
        .lock()
        .unwrap()
        .entry(kind.to_string())
        .or_default()
        .entry(outcome.label())
        .or_default() += 1;
}

/// The other CA whose files a mutation uses, stopped after `txns` transactions.
fn other_ca(cfg: &CaCfg, name: &str, seed: u64, txns: u32, root: &Path) -> EmulatedCa {
    let other = build(cfg, name, seed, root);
    other.issue(txns).unwrap();
    other.stop().unwrap();
    other
}

fn run_mutation(c: &MutationCase) -> Result<(), TestCaseError> {
    // A CA, a full backup and one to three incrementals after it.
    let mut h = History::new(&c.cfg);
    for a in &c.before_full {
        do_act(&h.ca, a)?;
    }
    h.full_backup(c.full_truncate, c.during_full);
    for (acts, truncate) in &c.incrementals {
        for a in acts {
            do_act(&h.ca, a)?;
        }
        h.incremental_backup(*truncate)?;
    }
    let original = h.at_last_backup.clone();
    h.ca.issue(1).unwrap(); // lost with the wiped files: the restore must not bring it back
    h.ca.stop().unwrap();
    h.ca.wipe_files().unwrap();

    // Stage the sets where the mutation can change them.
    let backups: Vec<&(PathBuf, BackupSummary)> = std::iter::once(h.full.as_ref().unwrap())
        .chain(&h.incs)
        .collect();
    let scratch = h.tmp.path().join("staged");
    let sets: Vec<Staged> = backups
        .iter()
        .enumerate()
        .map(|(i, (dir, sum))| {
            let d = scratch.join(format!("set{i}"));
            copy_tree(dir, &d);
            Staged {
                dir: d,
                full: i == 0,
                range: sum.log_range.unwrap(),
            }
        })
        .collect();
    let n = sets.len();
    let true_high = sets[n - 1].range.1;
    let checkpoint_gen = sets[0].range.0;
    let reg = register_name(c.through_file);
    let all_logs: Vec<(u32, PathBuf)> = sets.iter().flat_map(|s| s.logs()).collect();
    let mut plan = Plan {
        order: (0..n).collect(),
        ranges: sets.iter().map(|s| s.range).collect(),
        skip_complete: None,
        through_file: c.through_file,
    };

    let flip = |p: &Path, at: &Index, bits: u8| {
        let mut b = std::fs::read(p).unwrap();
        let i = at.index(b.len());
        b[i] ^= bits;
        std::fs::write(p, b).unwrap();
    };
    let (kind, expect, file_level): (String, Expect, bool) = match &c.mutation {
        Mutation::DropLog(i) => {
            let (_, p) = &all_logs[i.index(all_logs.len())];
            std::fs::remove_file(p).unwrap();
            (
                "drop a log".into(),
                Expect::Refusal("start", MISSING_RESTORE_LOGS),
                true,
            )
        }
        Mutation::DropEdb => {
            let edb = sets[0].edb().unwrap();
            std::fs::remove_file(edb).unwrap();
            (
                "drop the .edb".into(),
                Expect::Refusal("start", DATABASE_CORRUPTED),
                true,
            )
        }
        Mutation::FlipEdb { at, bits } => {
            flip(&sets[0].edb().unwrap(), at, *bits);
            (
                "flip a byte in the .edb".into(),
                Expect::Refusal("start", DATABASE_CORRUPTED),
                true,
            )
        }
        Mutation::FlipLog { log, at, bits } => {
            flip(&all_logs[log.index(all_logs.len())].1, at, *bits);
            (
                "flip a byte in a log".into(),
                Expect::Refusal("start", LOG_FILE_CORRUPT),
                true,
            )
        }
        Mutation::FlipLocations { at, bits } => {
            flip(&sets[0].db().join(wszDBBACKUPCERTBACKDAT), at, *bits);
            (
                "flip a byte in certbkxp.dat".into(),
                Expect::LocationsDamage,
                false,
            )
        }
        Mutation::SwapLogNames(a, b) => {
            let ia = a.index(all_logs.len());
            let mut ib = b.index(all_logs.len() - 1);
            if ib >= ia {
                ib += 1;
            }
            let (pa, pb) = (&all_logs[ia].1, &all_logs[ib].1);
            let (ba, bb) = (std::fs::read(pa).unwrap(), std::fs::read(pb).unwrap());
            std::fs::write(pa, bb).unwrap();
            std::fs::write(pb, ba).unwrap();
            (
                "swap two logs' names".into(),
                Expect::Refusal("start", BAD_LOG_SIGNATURE),
                true,
            )
        }
        Mutation::WrongRange { set, change } => {
            let k = set.index(n);
            let (low, high) = plan.ranges[k];
            plan.ranges[k] = match change {
                RangeChange::HighUp(d) => (low, high + d),
                RangeChange::HighDown(d) => (low, high.saturating_sub(*d)),
                RangeChange::LowUp(d) => (low + d, high),
                RangeChange::LowDown(d) => (low.saturating_sub(*d), high),
                RangeChange::LowZero => (0, high),
                RangeChange::Swapped => (high, low),
            };
            // Predict: Register checks 1 <= genLow <= genHigh; the marker's genHigh is
            // the highest registered; recovery needs every generation up to it, and a
            // database checkpoint no later than genHigh + 1.
            let bad = plan.order.iter().find(|&&i| {
                let (l, h) = plan.ranges[i];
                l == 0 || l > h
            });
            let marker_high = plan.ranges.iter().map(|r| r.1).max().unwrap();
            let expect = if bad.is_some() {
                Expect::Refusal(reg, INVALID_ARG)
            } else if marker_high > true_high {
                Expect::Refusal("start", MISSING_RESTORE_LOGS)
            } else if checkpoint_gen > marker_high + 1 {
                Expect::Refusal("start", NON_BACKUP_DATABASE)
            } else {
                Expect::Original
            };
            let what = format!("{change:?}");
            let what = what.split('(').next().unwrap();
            (format!("wrong genLow/genHigh ({what})"), expect, false)
        }
        Mutation::IncrementalBeforeFull(i) => {
            let k = 1 + i.index(n - 1);
            plan.order = std::iter::once(k)
                .chain((0..n).filter(|&j| j != k))
                .collect();
            (
                "register an incremental before the full".into(),
                Expect::Refusal(reg, UNEXPECTED),
                false,
            )
        }
        Mutation::SkipComplete(i) => {
            let k = i.index(n);
            plan.skip_complete = Some(k);
            let expect = if k == n - 1 {
                // The service starts and waits, suspended, on the registration.
                Expect::Refusal("start", SUSPENDED)
            } else {
                Expect::Refusal(reg, RESTORE_IN_PROGRESS)
            };
            ("skip RegisterComplete".into(), expect, false)
        }
        Mutation::OtherCa { what, pick } => {
            let cap = c.cfg.log_capacity;
            let seed = c.cfg.seed ^ 0x5EED_0F07_4E12_CA00;
            let other_root = h.tmp.path().join("other-machine");
            let (label, expect) = match what {
                OtherFiles::EdbOtherName => {
                    let other = other_ca(&c.cfg, "Another Issuing CA", c.cfg.seed, 3, &other_root);
                    let src = other.host_path(&other.database_path()).unwrap();
                    let edb = sets[0].edb().unwrap();
                    std::fs::copy(src, edb).unwrap();
                    (
                        "another CA's files (.edb of another name)",
                        Expect::Refusal("start", BAD_DB_SIGNATURE),
                    )
                }
                OtherFiles::EdbSameName => {
                    // Its checkpoint lands anywhere from generation 1 to past our logs
                    // (after `txns` transactions it is at generation 1 + txns / cap).
                    let txns = pick.index(((2 * true_high + 2) * cap) as usize) as u32;
                    let other = other_ca(&c.cfg, "Prop Restore CA", seed, txns, &other_root);
                    let src = other.host_path(&other.database_path()).unwrap();
                    let edb = sets[0].edb().unwrap();
                    std::fs::copy(src, edb).unwrap();
                    (
                        "another CA's files (.edb, same CA name)",
                        Expect::StartRefusal(vec![
                            BAD_LOG_SIGNATURE,
                            MISSING_RESTORE_LOGS,
                            NON_BACKUP_DATABASE,
                        ]),
                    )
                }
                OtherFiles::OneLog | OtherFiles::AllLogs => {
                    let other = other_ca(
                        &c.cfg,
                        "Prop Restore CA",
                        seed,
                        (true_high + 1) * cap,
                        &other_root,
                    );
                    let dir = other.host_path(&other.log_dir()).unwrap();
                    let theirs = logs_in(&dir);
                    let victims: Vec<&(u32, PathBuf)> = if matches!(what, OtherFiles::OneLog) {
                        vec![&all_logs[pick.index(all_logs.len())]]
                    } else {
                        all_logs.iter().collect()
                    };
                    for (g, p) in victims {
                        let src = theirs
                            .get(g)
                            .unwrap_or_else(|| panic!("the other CA has no {}", log_file_name(*g)));
                        std::fs::copy(src, p).unwrap();
                    }
                    let label = if matches!(what, OtherFiles::OneLog) {
                        "another CA's files (one log, same CA name)"
                    } else {
                        "another CA's files (all logs, same CA name)"
                    };
                    (label, Expect::Refusal("start", BAD_LOG_SIGNATURE))
                }
            };
            (label.into(), expect, true)
        }
    };

    // Run the restore steps, then start.
    let mut before_start = None;
    let outcome = match restore_with_exports(&h.ca, &sets, &plan) {
        Err((step, hr)) => Outcome::Refused(step, hr),
        Ok(()) => {
            before_start = Some(snapshot(&h.ca));
            match h.ca.start() {
                Ok(_) if h.ca.records().collect::<Vec<_>>() == original => Outcome::Original,
                Ok(_) => Outcome::Different(h.ca.record_count()),
                Err(e) => Outcome::Refused("start", e.hresult()),
            }
        }
    };
    tally(&kind, &outcome);

    // Never a CA with other data; always one of the listed codes; the code this
    // mutation calls for.
    prop_assert!(
        !matches!(outcome, Outcome::Different(_)),
        "{kind}: the CA started with other data: {outcome:?}"
    );
    if let Outcome::Refused(step, hr) = &outcome {
        prop_assert!(
            REFUSALS.contains(hr) || *step == "read certbkxp.dat",
            "{kind}: {step} refused with an unlisted code {hr}"
        );
    }
    prop_assert!(
        expect.admits(&outcome),
        "{kind}: unexpected outcome {outcome:?}"
    );

    // A refusal leaves the CA stopped (a start held by a registration never completed
    // leaves it suspended until it is stopped); a refused start leaves every file as it was.
    if let Outcome::Refused(step, hr) = &outcome {
        if *step == "start" && *hr == SUSPENDED {
            prop_assert_eq!(h.ca.service(), ServiceState::Suspended);
            prop_assert!(h.ca.restore_marker().unwrap().pending);
            h.ca.stop().unwrap();
        }
        prop_assert_eq!(h.ca.service(), ServiceState::Stopped);
        if *step == "start" {
            prop_assert!(
                before_start.as_ref() == Some(&snapshot(&h.ca)),
                "{kind}: the refused start changed files"
            );
            prop_assert!(h.ca.restore_marker().is_some(), "the registration is kept");
        }
        // Repair and start again: the damage did not last.
        if *step == "start" && file_level {
            // The registration stands: putting the right files back is enough.
            let locs = read_locations(&backups[0].0).unwrap();
            for (i, (dir, _)) in backups.iter().enumerate() {
                let db = dir.join(wszDBBACKUPSUBDIR);
                if i == 0 {
                    let edb = db.join(locs.database.rsplit('\\').next().unwrap());
                    std::fs::copy(edb, h.ca.host_path(&locs.database).unwrap()).unwrap();
                }
                for src in logs_in(&db).values() {
                    let dst = format!("{}\\{}", locs.log_dir, name_of(src));
                    std::fs::copy(src, h.ca.host_path(&dst).unwrap()).unwrap();
                }
            }
        } else {
            h.ca.clear_restore_marker().unwrap();
            h.ca.wipe_files().unwrap();
            h.restore_latest(c.through_file);
        }
        let report = h.ca.start().unwrap();
        prop_assert!(report.hard);
        prop_assert_eq!(
            h.ca.records().collect::<Vec<_>>(),
            original,
            "{}: after the repair",
            kind
        );
    }
    prop_assert_eq!(h.ca.service(), ServiceState::Running);
    prop_assert!(h.ca.restore_marker().is_none());
    Ok(())
}

#[test]
fn mutated_restore_gives_the_original_records_or_a_specific_refusal() {
    let mut runner = TestRunner::new(config(360));
    let result = runner.run(&mutation_case(), |c| run_mutation(&c));
    let tally = std::mem::take(&mut *TALLY.lock().unwrap());
    eprintln!("mutation cases tried (all runs, shrinking included), by kind and outcome:");
    for (kind, outcomes) in &tally {
        let total: usize = outcomes.values().sum();
        eprintln!("  {kind}: {total}");
        for (o, n) in outcomes {
            eprintln!("      {n:4}  {o}");
        }
    }
    result.unwrap();
}

// ----- (c) a set that lost its last log -----------------------------------------------------

#[derive(Debug, Clone)]
struct EarlyEnd {
    cfg: CaCfg,
    before_full: Vec<Act>,
    during_full: u32,
    full_truncate: bool,
    /// Activity before each incremental backup, and whether it truncates.
    incrementals: Vec<(Vec<Act>, bool)>,
    /// The set that loses its last log.
    victim: Index,
    /// Register each set's range as its files show it (what certutil is believed to do,
    /// spec §8.4), or as the backup listed it.
    ranges_from_files: bool,
    through_file: bool,
}

fn early_end() -> impl Strategy<Value = EarlyEnd> {
    (
        ca_cfg(),
        vec(act(), 0..6),
        prop_oneof![1 => Just(0u32), 3 => 1u32..16],
        any::<bool>(),
        vec((vec(act(), 1..6), any::<bool>()), 0..4),
        any::<Index>(),
        prop_oneof![3 => Just(true), 1 => Just(false)],
        any::<bool>(),
    )
        .prop_map(
            |(
                cfg,
                before_full,
                during_full,
                full_truncate,
                incrementals,
                victim,
                ranges_from_files,
                through_file,
            )| EarlyEnd {
                cfg,
                before_full,
                during_full,
                full_truncate,
                incrementals,
                victim,
                ranges_from_files,
                through_file,
            },
        )
}

static EARLY_TALLY: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

/// Drops the last log of one set (full or incremental) and restores: the restore is never
/// reported clean. Either a step refuses (a set left without logs, a gap before a later
/// set, a registered genHigh the files do not reach), or the CA starts and says what was
/// lost: `RecoveryReport::data_loss` (the dropped generation, and the transactions it held,
/// which this CA's backup history knows) and a CR04 violation.
fn run_early_end(c: &EarlyEnd) -> Result<(), TestCaseError> {
    let mut h = History::new(&c.cfg);
    for a in &c.before_full {
        do_act(&h.ca, a)?;
    }
    h.full_backup(c.full_truncate, c.during_full);
    for (acts, truncate) in &c.incrementals {
        for a in acts {
            do_act(&h.ca, a)?;
        }
        h.incremental_backup(*truncate)?;
    }
    let original = h.at_last_backup.clone();
    h.ca.issue(1).unwrap(); // lost with the wiped files
    h.ca.stop().unwrap();
    h.ca.wipe_files().unwrap();

    let backups: Vec<&(PathBuf, BackupSummary)> = std::iter::once(h.full.as_ref().unwrap())
        .chain(&h.incs)
        .collect();
    let scratch = h.tmp.path().join("staged");
    let sets: Vec<Staged> = backups
        .iter()
        .enumerate()
        .map(|(i, (dir, sum))| {
            let d = scratch.join(format!("set{i}"));
            copy_tree(dir, &d);
            Staged {
                dir: d,
                full: i == 0,
                range: sum.log_range.unwrap(),
            }
        })
        .collect();
    let n = sets.len();
    let k = c.victim.index(n);
    let (_, high) = sets[k].range;
    let logs = sets[k].logs();
    prop_assert_eq!(
        logs.keys().next_back().copied(),
        Some(high),
        "the set ends at its listing's high"
    );
    let dropped = decode_log(&std::fs::read(&logs[&high]).unwrap()).unwrap();
    prop_assert!(
        dropped.backup_end.is_some(),
        "the listing sealed its last log with a mark"
    );
    std::fs::remove_file(&logs[&high]).unwrap();
    let kind = if k == 0 { "full" } else { "incremental" };
    let last = if k == n - 1 {
        "last set"
    } else {
        "earlier set"
    };

    let outcome: Result<(), (&'static str, HRESULT)> = if c.ranges_from_files {
        let full = sets[0].dir.clone();
        let incs: Vec<PathBuf> = sets[1..].iter().map(|s| s.dir.clone()).collect();
        restore_from_dirs(
            h.ca.server_name(),
            &full,
            &incs,
            &|p| h.ca.host_path(p),
            &RestoreOptions {
                through_file: c.through_file,
            },
        )
        .map(drop)
        .map_err(|e| (e.call, e.hr))
    } else {
        let plan = Plan {
            order: (0..n).collect(),
            ranges: sets.iter().map(|s| s.range).collect(),
            skip_complete: None,
            through_file: c.through_file,
        };
        restore_with_exports(&h.ca, &sets, &plan)
    };
    let label = match outcome {
        Err((step, hr)) => {
            // Only a set left without any log (the reference client: ERROR_DIRECTORY).
            prop_assert_eq!(hr, DIRECTORY, "{} refused", step);
            prop_assert_eq!(logs.len(), 1);
            format!("refused: {step} -> {hr}")
        }
        Ok(()) => match h.ca.start() {
            Err(e) => {
                // A gap before a later set's logs, or a registered genHigh past the files.
                prop_assert_eq!(e.hresult(), MISSING_RESTORE_LOGS, "{}", e);
                prop_assert!(k < n - 1 || !c.ranges_from_files);
                prop_assert_eq!(h.ca.service(), ServiceState::Stopped);
                format!("refused: start -> {}", e.hresult())
            }
            Ok(report) => {
                prop_assert!(report.hard);
                prop_assert_eq!(k, n - 1, "an earlier set's end is a gap");
                let loss = report.data_loss.clone();
                prop_assert!(loss.is_some(), "reported clean: {:?}", report);
                let loss = loss.unwrap();
                prop_assert_eq!(loss.missing_from, high);
                prop_assert_eq!(loss.missing_through, Some(high));
                prop_assert_eq!(loss.lost_transactions, Some(dropped.txns.len() as u64));
                prop_assert_eq!(loss.backup.map(|b| b.high_gen), Some(high));
                let text = loss.to_string();
                prop_assert!(text.contains(&log_file_name(high)), "{}", text);
                let violations = h.ca.report();
                prop_assert_eq!(violations.of(RESTORE_LOST_DATA).len(), 1);
                prop_assert!(h.ca.verify().is_err());
                prop_assert_eq!(h.ca.service(), ServiceState::Running);
                if dropped.txns.is_empty() {
                    prop_assert_eq!(h.ca.records().collect::<Vec<_>>(), original);
                    "started, data loss reported (0 transactions)".to_string()
                } else {
                    prop_assert!(h.ca.records().collect::<Vec<_>>() != original);
                    "started, data loss reported".to_string()
                }
            }
        },
    };
    *EARLY_TALLY
        .lock()
        .unwrap()
        .entry(format!(
            "{kind} set ({last}), ranges {}: {label}",
            if c.ranges_from_files {
                "from files"
            } else {
                "as listed"
            }
        ))
        .or_default() += 1;
    Ok(())
}

#[test]
fn dropping_the_last_log_of_a_set_is_never_a_clean_restore() {
    let mut runner = TestRunner::new(config(160));
    let result = runner.run(&early_end(), |c| run_early_end(&c));
    let tally = std::mem::take(&mut *EARLY_TALLY.lock().unwrap());
    eprintln!("early-end cases (all runs, shrinking included), by set and outcome:");
    for (k, n) in &tally {
        eprintln!("  {n:4}  {k}");
    }
    result.unwrap();
    for needed in ["full set (last set)", "incremental set (last set)"] {
        assert!(
            tally
                .iter()
                .any(|(k, _)| k.starts_with(needed) && k.contains("data loss reported")),
            "no case of {needed} started with a data loss report: {tally:?}"
        );
    }
}

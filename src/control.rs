//! The control API: how a test builds an emulated CA, acts on it and inspects it.
//!
//! An [`EmulatedCa`] registers its machine's names for the whole process, so any code
//! that calls the certbcli functions with that server name (through the ABI, the safe
//! API or windows-sys) reaches it. Dropping the guard unregisters the machine and
//! removes its temporary disk; handles of its sessions turn stale.
//!
//! [`CaState`] and [`MachineReport`] are the documents that describe a machine, wherever
//! it runs (in process or on a server: the crate's `Control` trait is the same set of
//! operations for both).
#![forbid(unsafe_code)]

mod report;

pub use report::{
    CaReport, CaState, CaStatus, LastStart, MachineReport, ReportFile, RestoreMarkerState,
    StartRecovery, TraceEntry, UnfiredFault, ViolationEntry,
};

use crate::api::faults::{Fault, FaultSchedule, FaultState};
use crate::api::{self, buffers, registry};
use crate::ca::format::Position;
use crate::ca::recovery::{RecoveryReport, RestoreMarker};
use crate::ca::{BackupMark, Ca, CaConfig, Record, ServiceState};
use crate::conformance::Report;
use crate::core::{limits, Error, Result};
use crate::event::Event;
use crate::machine::fs::{only_links, Kind, Rel};
use crate::machine::{names, Identity, Machine, WinPath};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

static NEXT_NAME: AtomicU32 = AtomicU32::new(1);

fn faults_from_env() -> Result<Option<FaultSchedule>> {
    let Ok(v) = std::env::var("CERTADM_EMU_FAULTS") else {
        return Ok(None);
    };
    let text = match v.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading CERTADM_EMU_FAULTS file {path}"), e))?,
        None => v,
    };
    FaultSchedule::from_json(&text)
        .map(Some)
        .map_err(|e| Error::invalid_arg("CERTADM_EMU_FAULTS", e))
}

/// Builds an [`EmulatedCa`].
#[derive(Debug, Clone)]
#[must_use]
pub struct CaBuilder {
    netbios: Option<String>,
    dns: Option<String>,
    root: Option<PathBuf>,
    cfg: CaConfig,
    identity: Identity,
    with_ca: bool,
    strict: bool,
    faults: Option<FaultSchedule>,
}

impl Default for CaBuilder {
    fn default() -> Self {
        CaBuilder {
            netbios: None,
            dns: None,
            root: None,
            cfg: CaConfig::default(),
            identity: Identity::default(),
            with_ca: true,
            strict: false,
            faults: None,
        }
    }
}

/// Builder methods that each set one field: `name(arg: Type) => field = value;`.
macro_rules! setters {
    ($( $(#[$doc:meta])* $name:ident($arg:ident: $ty:ty) => $($field:ident).+ = $value:expr; )*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $arg: $ty) -> Self {
                self.$($field).+ = $value;
                self
            }
        )*
    };
}

impl CaBuilder {
    setters! {
        /// The NetBIOS name (default: a name unique in this process, `EMU<pid><n>`).
        server_name(name: &str) => netbios = Some(name.to_string());
        /// The DNS name (default: `<netbios>.emu.test`).
        dns_name(name: &str) => dns = Some(name.to_string());
        /// A host directory to use as the machine's disk (default: a temporary directory).
        /// If an earlier run left a CA there (same name), it is opened with its state
        /// (records, logs, last backups, a registered restore) instead of installed anew.
        root_dir(dir: impl Into<PathBuf>) => root = Some(dir.into());
        /// The CA's common name.
        ca_name(name: &str) => cfg.name = name.to_string();
        /// The seed of all generated content.
        seed(seed: u64) => cfg.seed = seed;
        /// Certificates in the database at install time.
        records(n: u32) => cfg.records = n;
        /// A virtual `.edb` of this many bytes (content generated, never materialised).
        edb_size(bytes: u64) => cfg.edb_size = Some(bytes);
        /// Transactions per log generation.
        log_capacity(n: u32) => cfg.log_capacity = n;
        /// `InterfaceFlags` (default `IF_DEFAULT`).
        interface_flags(flags: u32) => cfg.interface_flags = flags;
        /// The caller's identity (default: local administrator with both privileges).
        identity(id: Identity) => identity = id;
        /// Strict conformance: dropping the guard panics with the report if the client
        /// broke a rule (unless the thread is already panicking). Lenient (the default)
        /// only reports through [`EmulatedCa::verify`].
        strict(strict: bool) => strict = strict;
        /// A fault schedule installed from the start (see [`crate::api::faults`]).
        /// Without one, `CERTADM_EMU_FAULTS` (JSON, or `@path` to a JSON file) is used if
        /// set.
        faults(schedule: FaultSchedule) => faults = Some(schedule);
        /// The full configuration.
        config(cfg: CaConfig) => cfg = cfg;
    }

    /// Database, log and checkpoint directories (Windows paths).
    pub fn directories(mut self, db: &str, log: &str, system: &str) -> Self {
        self.cfg.db_dir = db.into();
        self.cfg.log_dir = log.into();
        self.cfg.system_dir = system.into();
        self
    }
    /// A machine with no CA installed (`IsServerOnline` fails, as on a host without AD CS).
    /// The methods of [`EmulatedCa`] that describe the CA (`service`, `records`,
    /// `record_count`, ...) panic on such a machine; the ones that act on it
    /// (`issue`, `start`, ...) return `ERROR_FILE_NOT_FOUND`.
    pub fn without_ca(mut self) -> Self {
        self.with_ca = false;
        self
    }

    /// Checks everything [`CaBuilder::build`] would use, creating nothing: the names
    /// (`ERROR_INVALID_NAME`, see [`crate::machine::names`]), the numeric limits
    /// (`E_INVALIDARG`, see [`crate::core::limits`]) and the CA's directories (the path
    /// codes). Every way of creating a machine (C API, configuration file, server
    /// protocol, command line, this builder) goes through it before anything exists.
    pub fn validate(&self) -> Result<()> {
        let netbios = self.netbios.as_deref().unwrap_or("EMU0N0");
        let dns = match &self.dns {
            Some(d) => d.clone(),
            None => default_dns(netbios),
        };
        self.validate_as(netbios, &dns)
    }

    fn validate_as(&self, netbios: &str, dns: &str) -> Result<()> {
        Machine::check_names(netbios, dns)?;
        if !self.with_ca {
            return Ok(());
        }
        let cfg = &self.cfg;
        limits::RECORDS.check(CREATE, cfg.records.into())?;
        limits::LOG_CAPACITY.check(CREATE, cfg.log_capacity.into())?;
        if let Some(size) = cfg.edb_size {
            limits::EDB_SIZE.check(CREATE, size)?;
        }
        names::check_ca_name(&cfg.name)?;
        let local = |h: &str| {
            h.eq_ignore_ascii_case(netbios)
                || h.eq_ignore_ascii_case(dns)
                || h.eq_ignore_ascii_case("localhost")
        };
        let db = WinPath::parse(&cfg.db_dir, local)?;
        let log = WinPath::parse(&cfg.log_dir, local)?;
        let sys = WinPath::parse(&cfg.system_dir, local)?;
        // The longest name each directory holds: <CA>.edb, edbFFFFFFFF.log (8 hex digits
        // at most), edb.chk.
        for file in [
            db.join(&format!("{}.edb", cfg.name))?,
            log.join("edbFFFFFFFF.log")?,
            sys.join("edb.chk")?,
        ] {
            names::check_ca_file_path(&file.local())?;
        }
        Ok(())
    }

    /// Creates the machine and CA and registers their names in this process.
    pub fn build(self) -> Result<EmulatedCa> {
        let netbios = self.netbios.clone().unwrap_or_else(|| {
            // "EMU" + at most 4 + "N" + at most 7 hex digits: 15 characters until the
            // 268,435,456th machine of the process.
            format!(
                "EMU{:X}N{:X}",
                std::process::id() & 0xFFFF,
                NEXT_NAME.fetch_add(1, Ordering::Relaxed)
            )
        });
        let dns = self.dns.clone().unwrap_or_else(|| default_dns(&netbios));
        self.validate_as(&netbios, &dns)?;
        let machine = Machine::new(&netbios, &dns, self.root.clone())?;
        check_contained(&machine, self.with_ca.then_some(&self.cfg))?;
        let (ca, recovered) = if self.with_ca {
            let (ca, report) = Ca::open_or_install(&machine, &self.cfg)?;
            (Some(ca), report)
        } else {
            (None, None)
        };
        let host = registry::register(machine, ca, self.identity)?;
        let guard = EmulatedCa { host };
        {
            let mut st = guard.host.state.lock();
            st.strict = self.strict;
            // A CA reopened with a completed registration recovered it at this start.
            note_recovery(&mut st, recovered.as_ref());
        }
        let schedule = match self.faults {
            Some(s) => Some(s),
            None => faults_from_env()?,
        };
        if let Some(s) = schedule {
            guard.set_faults(s)?;
        }
        Ok(guard)
    }
}

/// The call name of creation errors.
const CREATE: &str = "create machine";

/// The DNS name of a machine given only its NetBIOS name: `<netbios>.emu.test`, lower case.
fn default_dns(netbios: &str) -> String {
    format!("{}.emu.test", netbios.to_lowercase())
}

/// Refuses a machine root in which a link was planted where the CA keeps its files: the
/// registry folder, the CA's database, log and checkpoint directories and the folder of
/// its dynamic files, those that exist (`E_ACCESSDENIED`, see `machine::fs`). Runs before
/// the CA is opened or installed, so that nothing is created in a root that would be
/// refused halfway. It is not what keeps a link from being followed: every file
/// operation of the CA resolves its path beneath the root itself and refuses a link then.
fn check_contained(machine: &Machine, cfg: Option<&CaConfig>) -> Result<()> {
    let mut dirs: Vec<WinPath> = Vec::new();
    if let Some(cfg) = cfg {
        for d in [&cfg.db_dir, &cfg.log_dir, &cfg.system_dir] {
            dirs.push(machine.parse_path(d)?);
        }
    }
    check_dirs(machine, &dirs)
}

/// [`check_contained`] for the registry, the dynamic files' folder and `dirs`.
fn check_dirs(machine: &Machine, dirs: &[WinPath]) -> Result<()> {
    let fs = machine.fs();
    let mut all: Vec<Rel> = vec![Rel::host(crate::ca::REGISTRY_DIR)?];
    all.push(machine.parse_path(crate::ca::CERTENROLL)?.into());
    all.extend(dirs.iter().map(Rel::from));
    for d in &all {
        fs.check_tree(d)?;
    }
    Ok(())
}

/// [`check_dirs`] for a CA: its directories, and the paths of a registered restore (the
/// folders of the restore map's database and of the logs; the database file itself).
/// What [`EmulatedCa::wipe_files`] refuses to work in (it deletes only files, never
/// through a link, but a tree holding a link is refused whole).
fn contained(ca: &Ca, m: &Machine) -> Result<()> {
    let mut dirs = vec![
        ca.db_dir().clone(),
        ca.log_dir().clone(),
        ca.system_dir().clone(),
    ];
    if let Some(mk) = &ca.restore.marker {
        let folders = mk
            .backup_log_paths
            .iter()
            .chain(&mk.log_path)
            .chain(&mk.checkpoint_path);
        for p in folders {
            dirs.push(m.parse_path(p)?);
        }
        for (_, new) in &mk.restore_map {
            let db = m.parse_path(new)?;
            m.fs().resolve(&db).map(drop).or_else(only_links)?;
            dirs.push(db.parent());
        }
    }
    check_dirs(m, &dirs)
}

/// Reports what a start's recovery lost (conformance rule CR04) to the machine's checker.
fn note_recovery(st: &mut registry::HostState, report: Option<&RecoveryReport>) {
    if let Some(loss) = report.and_then(|r| r.data_loss.as_ref()) {
        st.trace.checker_mut().restore_lost_data(loss.to_string());
    }
}

/// A file of the CA on the emulated disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Its Windows path.
    pub windows_path: String,
    /// Its host path.
    pub host_path: PathBuf,
    /// Its size on the host.
    pub size: u64,
}

/// An emulated machine with a CA, registered for this process until dropped.
pub struct EmulatedCa {
    host: Arc<registry::Host>,
}

impl std::fmt::Debug for EmulatedCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatedCa")
            .field("server", &self.server_name())
            .field("root", &self.host.machine.root())
            .finish()
    }
}

impl Drop for EmulatedCa {
    fn drop(&mut self) {
        registry::unregister(&self.host);
        let strict = self.host.state.lock().strict;
        if strict && !std::thread::panicking() {
            let report = self.report();
            if !report.is_clean() {
                panic!("{report}");
            }
        }
    }
}

impl EmulatedCa {
    /// Starts building a CA.
    pub fn builder() -> CaBuilder {
        CaBuilder::default()
    }

    fn with_ca<R>(&self, f: impl FnOnce(&mut Ca, &Machine) -> Result<R>) -> Result<R> {
        let mut st = self.host.state.lock();
        let ca = st.ca.as_mut().ok_or_else(|| Error::FileNotFound {
            call: "control",
            why: "no CA is installed on this machine".into(),
        })?;
        f(ca, &self.host.machine)
    }

    fn read<R>(&self, f: impl FnOnce(&Ca) -> R) -> R {
        let st = self.host.state.lock();
        f(st.ca.as_ref().expect("this machine has no CA"))
    }

    /// The NetBIOS name: the server name clients pass.
    pub fn server_name(&self) -> &str {
        self.host.machine.netbios()
    }
    /// The DNS name (also accepted as server name, and used in UNC paths).
    pub fn dns_name(&self) -> &str {
        self.host.machine.dns()
    }
    /// The CA's common name.
    pub fn ca_name(&self) -> String {
        self.read(|ca| ca.name().to_string())
    }
    /// The config string `HOST\CA name`.
    pub fn config_string(&self) -> String {
        format!("{}\\{}", self.server_name(), self.ca_name())
    }
    /// The emulated machine.
    pub fn machine(&self) -> &Machine {
        &self.host.machine
    }
    /// The host path of a Windows path on this machine (contained in its root).
    pub fn host_path(&self, windows_path: &str) -> Result<PathBuf> {
        self.host.machine.host_path(windows_path)
    }

    /// Issues `n` certificates (logged transactions); returns their request ids. At most
    /// [`limits::ISSUE_PER_CALL`] per call, and the database stays within
    /// [`limits::RECORDS`] (`E_INVALIDARG`, nothing issued).
    pub fn issue(&self, n: u32) -> Result<Vec<u32>> {
        const CALL: &str = "issue";
        limits::ISSUE_PER_CALL.check(CALL, n.into())?;
        self.with_ca(|ca, m| {
            limits::check_issue(CALL, ca.record_count(m), n)?;
            ca.issue(m, n)
        })
    }
    /// Revokes a certificate (CRL reason 1, key compromise, by default).
    pub fn revoke(&self, request_id: u32) -> Result<()> {
        self.with_ca(|ca, m| ca.revoke(m, request_id, 1))
    }
    /// Rolls the current log to a numbered generation.
    pub fn roll_log(&self) -> Result<u32> {
        self.with_ca(|ca, m| ca.roll(m))
    }

    /// Stops the service cleanly (as `net stop certsvc`); open backup sessions are disconnected.
    pub fn stop(&self) -> Result<()> {
        let mut st = self.host.state.lock();
        api::stop_host(&mut st, &self.host.machine)
    }
    /// Stops the service as a crash would: no checkpoint flush; the next start replays logs.
    pub fn crash(&self) {
        let mut st = self.host.state.lock();
        api::disconnect_backups(&mut st);
        if let Some(ca) = st.ca.as_mut() {
            ca.crash();
        }
    }
    fn start_fault(&self) -> Result<()> {
        let hr = self.host.state.lock().faults.start_refusal();
        match hr {
            Some(hr) if self.service() == ServiceState::Stopped => {
                Err(Error::Injected { call: "start", hr })
            }
            _ => Ok(()),
        }
    }
    /// Starts the service: hard recovery of a registered restore, or soft recovery.
    ///
    /// A registration that was never completed (no `CertSrvRestoreRegisterComplete`)
    /// holds the start: the service stays Suspended and this returns
    /// `CERTSRV_E_SERVER_SUSPENDED`. Complete the registration (or clear it,
    /// [`EmulatedCa::clear_restore_marker`]), then restart the service ([`EmulatedCa::stop`],
    /// `start`), or call [`EmulatedCa::finish_start`]. A hard recovery that lost the end
    /// of its backup set succeeds with [`RecoveryReport::data_loss`] and a CR04 violation.
    pub fn start(&self) -> Result<RecoveryReport> {
        self.start_fault()?;
        self.recovering(|ca, m| ca.start(m))
    }
    /// Starts the service but holds it Suspended before recovery (see [`EmulatedCa::finish_start`]).
    pub fn begin_start(&self) -> Result<()> {
        self.start_fault()?;
        self.with_ca(|ca, _| ca.begin_start())
    }
    /// Runs the recovery of a start begun with [`EmulatedCa::begin_start`], or of a start
    /// held by a registration that was since completed or cleared.
    pub fn finish_start(&self) -> Result<RecoveryReport> {
        self.recovering(|ca, m| ca.finish_start(m))
    }
    /// Runs a start `f` and reports what its recovery lost.
    fn recovering(
        &self,
        f: impl FnOnce(&mut Ca, &Machine) -> Result<RecoveryReport>,
    ) -> Result<RecoveryReport> {
        let mut st = self.host.state.lock();
        let ca = st.ca.as_mut().ok_or_else(|| Error::FileNotFound {
            call: "control",
            why: "no CA is installed on this machine".into(),
        })?;
        let m = &self.host.machine;
        let r = f(ca, m);
        note_recovery(&mut st, r.as_ref().ok());
        r
    }
    /// The service state.
    pub fn service(&self) -> ServiceState {
        self.read(|ca| ca.service())
    }

    /// The caller identity.
    pub fn identity(&self) -> Identity {
        self.host.state.lock().identity
    }
    /// Sets the caller identity (privileges, admin, remote).
    pub fn set_identity(&self, id: Identity) {
        self.host.state.lock().identity = id;
    }
    /// `InterfaceFlags`.
    pub fn interface_flags(&self) -> u32 {
        self.read(|ca| ca.interface_flags())
    }
    /// Sets `InterfaceFlags`.
    pub fn set_interface_flags(&self, flags: u32) {
        let _ = self.with_ca(|ca, m| ca.set_interface_flags(m, flags));
    }

    /// All records, ordered by request id, streamed from the database pages
    /// ([`Records`]: O(1) memory whatever the count; `.collect::<Vec<_>>()` for a small CA).
    /// A stopped CA's records are those of its `.edb` on disk.
    pub fn records(&self) -> Records<'_> {
        Records {
            ca: self,
            next: 1,
            buf: Vec::new(),
            at: 0,
            done: false,
            error: None,
        }
    }
    /// Number of records (a counter the database maintains, not a count of a stream).
    pub fn record_count(&self) -> usize {
        self.read(|ca| ca.record_count(&self.host.machine) as usize)
    }
    /// Number of revoked records (a maintained counter).
    pub fn revoked_count(&self) -> usize {
        self.read(|ca| ca.revoked_count(&self.host.machine) as usize)
    }
    /// The records digest (`docs/FILE-FORMATS.md` §4.6) of every record, streamed under
    /// one hold of the CA's lock (a consistent state; O(1) memory).
    pub fn records_digest(&self) -> Result<u32> {
        self.read(|ca| ca.records_digest(&self.host.machine))
    }
    /// Backup and restore contexts open on this machine.
    pub fn sessions_open(&self) -> usize {
        self.host.state.lock().sessions.len()
    }
    /// True while a backup session is running.
    pub fn backup_in_progress(&self) -> bool {
        self.host.state.lock().active_backup.is_some()
    }
    /// List buffers returned to clients and not yet passed to `CertSrvBackupFree`.
    pub fn outstanding_buffers(&self) -> usize {
        buffers::outstanding(self.host.key())
    }
    /// `DBLastFullBackup`.
    pub fn last_full_backup(&self) -> Option<BackupMark> {
        self.read(|ca| ca.last_full_backup())
    }
    /// `DBLastIncrementalBackup`.
    pub fn last_incremental_backup(&self) -> Option<BackupMark> {
        self.read(|ca| ca.last_incremental_backup())
    }
    /// `DBLastRecovery` (virtual clock) after a restore was recovered.
    pub fn last_recovery(&self) -> Option<i64> {
        self.read(|ca| ca.last_recovery())
    }
    /// The registered restore, if any.
    pub fn restore_marker(&self) -> Option<RestoreMarker> {
        self.read(|ca| ca.restore.marker.clone())
    }
    /// Clears a registered restore (what an operator does by deleting `RestoreInProgress`).
    pub fn clear_restore_marker(&self) -> Result<()> {
        self.with_ca(|ca, m| {
            ca.restore.clear(m)?;
            ca.save_registry(m)
        })
    }
    /// Numbered log generations present in the log directory.
    pub fn log_generations(&self) -> Vec<u32> {
        self.read(|ca| ca.log_generations_on_disk(&self.host.machine))
    }
    /// The generation of `edb.log` and the transactions in it.
    pub fn current_position(&self) -> Position {
        self.read(|ca| ca.current())
    }
    /// The checkpoint held by the `.edb`.
    pub fn checkpoint(&self) -> Position {
        self.read(|ca| ca.checkpoint())
    }
    /// The database signature.
    pub fn signature(&self) -> u64 {
        self.read(|ca| ca.signature())
    }
    /// The Windows path of the database file.
    pub fn database_path(&self) -> String {
        self.read(|ca| ca.database_path().local())
    }
    /// The Windows path of the log directory.
    pub fn log_dir(&self) -> String {
        self.read(|ca| ca.log_dir().local())
    }

    /// Every file in the CA's database, log and checkpoint directories.
    pub fn files(&self) -> Vec<FileInfo> {
        let dirs = self.read(|ca| {
            let mut d = vec![
                ca.db_dir().clone(),
                ca.log_dir().clone(),
                ca.system_dir().clone(),
            ];
            d.sort_by_key(|p| p.key());
            d.dedup_by_key(|p| p.key());
            d
        });
        let fs = self.host.machine.fs();
        let mut out = Vec::new();
        for d in dirs {
            let rel = Rel::from(&d);
            // A directory that is missing, or is a link (never followed), lists nothing.
            let entries = fs.read_dir(&rel).unwrap_or_default();
            for e in entries.into_iter().filter(|e| e.kind == Kind::File) {
                let host_path = fs.host_path(&rel).join(&e.name);
                let size = d
                    .join(&e.name)
                    .ok()
                    .and_then(|p| fs.metadata(&p).ok())
                    .map_or(0, |m| m.len);
                out.push(FileInfo {
                    windows_path: format!("{}\\{}", d.local(), e.name),
                    host_path,
                    size,
                });
            }
        }
        out
    }

    // ----- faults, trace, conformance ------------------------------------------------

    /// Installs a fault schedule (replacing any other), with fresh accounting.
    pub fn set_faults(&self, schedule: FaultSchedule) -> Result<()> {
        schedule
            .validate()
            .map_err(|e| Error::invalid_arg("set_faults", e))?;
        for f in &schedule.faults {
            if let Fault::RestoreFileUnwritable { path } = f {
                let p = self.host.machine.parse_path(path)?;
                let fs = self.host.machine.fs();
                let _ = fs.remove(&p);
                fs.create_dir_all(&p)?;
            }
        }
        let on = !schedule.faults.is_empty();
        self.host.state.lock().faults = FaultState::new(schedule);
        self.host
            .faults_on
            .store(on, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
    /// The faults that never fired.
    pub fn unfired_faults(&self) -> Vec<(usize, Fault)> {
        self.host
            .state
            .lock()
            .faults
            .unfired()
            .into_iter()
            .map(|(i, f)| (i, f.clone()))
            .collect()
    }
    /// Panics, listing them, if a planned fault never happened.
    #[track_caller]
    pub fn assert_all_faults_fired(&self) {
        let unfired = self.unfired_faults();
        if !unfired.is_empty() {
            let list: Vec<String> = unfired
                .iter()
                .map(|(i, f)| {
                    format!(
                        "  fault {i}: {}",
                        serde_json::to_string(f).unwrap_or_default()
                    )
                })
                .collect();
            panic!(
                "{} planned fault(s) never fired (the client took another path, or the schedule names the wrong call):\n{}",
                unfired.len(),
                list.join("\n")
            );
        }
    }
    /// The calls routed to this CA (consecutive successful reads folded), the most recent
    /// `api::trace::TRACE_CAPACITY` of them; the conformance checker
    /// has seen every one.
    pub fn trace(&self) -> Vec<Event> {
        self.host.state.lock().trace.events()
    }
    /// Calls routed to this CA so far (each read counted).
    pub fn call_count(&self) -> u64 {
        self.host.state.lock().trace.calls()
    }
    /// The conformance report of the trace so far, open sessions and buffers included.
    pub fn report(&self) -> Report {
        let st = self.host.state.lock();
        st.trace.checker().report(true, &st.trace.events())
    }
    /// `Ok` if the client kept the contract; else the report, with the fix for each violation.
    pub fn verify(&self) -> std::result::Result<(), Report> {
        let r = self.report();
        if r.is_clean() {
            Ok(())
        } else {
            Err(r)
        }
    }
    /// What a client left behind on this CA: open contexts, unfreed lists, a restore
    /// registered without RegisterComplete.
    pub fn leftovers(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.sessions_open() > 0 {
            v.push(format!("{} context(s) still open", self.sessions_open()));
        }
        if self.outstanding_buffers() > 0 {
            v.push(format!(
                "{} list buffer(s) never freed",
                self.outstanding_buffers()
            ));
        }
        // Not `restore_marker()`, which needs a CA: a machine may have none.
        let pending = self
            .host
            .state
            .lock()
            .ca
            .as_ref()
            .is_some_and(|ca| ca.restore.marker.as_ref().is_some_and(|m| m.pending));
        if pending {
            v.push(
                "a restore is registered without RegisterComplete: the CA will not start (it stays suspended, CERTSRV_E_SERVER_SUSPENDED)".into(),
            );
        }
        v
    }
    /// Switches the call trace and the conformance checker on (the default) or off.
    /// Off, calls cost less than half as much (see `certadm-emu bench`, figures 1 and 1d), and
    /// `trace`, `report`, `verify` and the explorer see nothing.
    pub fn set_tracing(&self, on: bool) {
        self.host
            .tracing
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
    /// Switches strict conformance on or off (see [`CaBuilder::strict`]).
    pub fn set_strict(&self, strict: bool) {
        self.host.state.lock().strict = strict;
    }

    /// Deletes every file in the CA's database, log and checkpoint directories
    /// (the service must be stopped): the state a restore starts from after a disk loss.
    pub fn wipe_files(&self) -> Result<()> {
        if self.with_ca(|ca, _| Ok(ca.service()))? != ServiceState::Stopped {
            return Err(Error::SharingViolation {
                call: "wipe_files",
                why: "the CA service is running; stop it first".into(),
            });
        }
        // A link in place of a directory is refused (E_ACCESSDENIED), never followed.
        self.with_ca(|ca, m| contained(ca, m))?;
        let fs = self.host.machine.fs();
        for f in self.files() {
            fs.remove(&self.host.machine.parse_path(&f.windows_path)?)?;
        }
        Ok(())
    }
}

/// The records of an [`EmulatedCa`], in request-id order ([`EmulatedCa::records`]).
///
/// Read in steps of 4,096 records, each under one hold of the CA's lock, so other calls
/// (even on the same CA from the loop's body) run between steps; records issued while
/// the iteration runs may or may not appear. A read error ends the iteration and is kept
/// in [`Records::error`].
#[derive(Debug)]
pub struct Records<'a> {
    ca: &'a EmulatedCa,
    next: u32,
    buf: Vec<Record>,
    at: usize,
    done: bool,
    error: Option<Error>,
}

impl Records<'_> {
    /// The error that ended the iteration early, if one did.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }
}

impl Iterator for Records<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.at == self.buf.len() {
            if self.done {
                return None;
            }
            self.buf.clear();
            self.at = 0;
            let (from, buf) = (self.next, &mut self.buf);
            let r = self.ca.read(|ca| {
                ca.read_records(&self.ca.host.machine, from, crate::ca::RECORD_CHUNK, buf)
            });
            if let Err(e) = r {
                self.error = Some(e);
                self.done = true;
            }
            match self.buf.last() {
                Some(r) if self.buf.len() == crate::ca::RECORD_CHUNK => {
                    self.next = r.request_id + 1
                }
                _ => self.done = true,
            }
            if self.buf.is_empty() {
                return None;
            }
        }
        let r = std::mem::replace(&mut self.buf[self.at], Record::EMPTY);
        self.at += 1;
        Some(r)
    }
}

/// The control operations on one emulated machine, wherever it runs: an [`EmulatedCa`] in
/// this process, or a machine of a `certadm-emu serve` process (the C API's server mode,
/// `abi::forward`). Each `certemu_ca` of the C API holds one.
pub(crate) trait Control: Send + Sync {
    /// Issues `n` certificates; returns their request ids.
    fn issue(&self, n: u32) -> Result<Vec<u32>>;
    /// Revokes a certificate.
    fn revoke(&self, request_id: u32) -> Result<()>;
    /// Stops the service cleanly.
    fn stop(&self) -> Result<()>;
    /// Stops the service as a crash would.
    fn crash(&self) -> Result<()>;
    /// Starts the service (recovery).
    fn start(&self) -> Result<RecoveryReport>;
    /// Deletes the CA's database, log and checkpoint files (service stopped).
    fn wipe_files(&self) -> Result<()>;
    /// The host path of a Windows path on the machine (on the host that runs it).
    fn host_path(&self, windows_path: &str) -> Result<PathBuf>;
    /// Sets the caller identity.
    fn set_identity(&self, id: Identity) -> Result<()>;
    /// Sets `InterfaceFlags`.
    fn set_interface_flags(&self, flags: u32) -> Result<()>;
    /// Installs a fault schedule, replacing any other.
    fn set_faults(&self, schedule: FaultSchedule) -> Result<()>;
    /// The call trace (the recent events).
    fn trace(&self) -> Result<Vec<Event>>;
    /// The state of the machine and its CA.
    fn state(&self) -> Result<CaState>;
    /// The conformance report.
    fn machine_report(&self) -> Result<MachineReport>;
    /// Releases the machine where it runs (in process, dropping the value does it).
    fn destroy(&self) -> Result<()>;
}

impl Control for EmulatedCa {
    fn issue(&self, n: u32) -> Result<Vec<u32>> {
        EmulatedCa::issue(self, n)
    }
    fn revoke(&self, request_id: u32) -> Result<()> {
        EmulatedCa::revoke(self, request_id)
    }
    fn stop(&self) -> Result<()> {
        EmulatedCa::stop(self)
    }
    fn crash(&self) -> Result<()> {
        EmulatedCa::crash(self);
        Ok(())
    }
    fn start(&self) -> Result<RecoveryReport> {
        EmulatedCa::start(self)
    }
    fn wipe_files(&self) -> Result<()> {
        EmulatedCa::wipe_files(self)
    }
    fn host_path(&self, windows_path: &str) -> Result<PathBuf> {
        EmulatedCa::host_path(self, windows_path)
    }
    fn set_identity(&self, id: Identity) -> Result<()> {
        EmulatedCa::set_identity(self, id);
        Ok(())
    }
    fn set_interface_flags(&self, flags: u32) -> Result<()> {
        EmulatedCa::set_interface_flags(self, flags);
        Ok(())
    }
    fn set_faults(&self, schedule: FaultSchedule) -> Result<()> {
        EmulatedCa::set_faults(self, schedule)
    }
    fn trace(&self) -> Result<Vec<Event>> {
        Ok(EmulatedCa::trace(self))
    }
    fn state(&self) -> Result<CaState> {
        Ok(EmulatedCa::state(self))
    }
    fn machine_report(&self) -> Result<MachineReport> {
        Ok(EmulatedCa::machine_report(self))
    }
    fn destroy(&self) -> Result<()> {
        Ok(())
    }
}

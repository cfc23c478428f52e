//! Model-based property test of the backup protocol (spec §5.2–§5.12, §6).
//!
//! Random sequences of backup calls, made through the `extern "system"` exports exactly
//! as a Windows client calls Certadm.dll, are interleaved with CA activity (issuing,
//! revoking, stop / crash / start, suspended starts, identity and InterfaceFlags
//! changes). A small reference model of the protocol predicts the exact HRESULT of
//! every call, and after every step the observable state of the emulated CA (service
//! state, open sessions, the running backup, outstanding buffers, recorded backups,
//! record count) is compared with the model.
//!
//! What the model tracks:
//! * the service state (Running / Suspended / Stopped), the caller identity and
//!   `InterfaceFlags` (spec §6.2 rows 1, 11, 12);
//! * every handle ever returned: its kind (FULL / LOGS_ONLY), its client (this thread or
//!   another one), and whether it is live, disconnected by a stop/crash, or ended;
//! * per session: the files it listed, the open file with its offset and size (the size
//!   is the one `CertSrvBackupOpenFileW` reports), which listed files were read to EOF,
//!   whether the database and the logs were listed, whether the backup was recorded;
//! * whether a full (and an incremental) backup was recorded on the CA (row 9);
//! * every list buffer returned, by address, and whether it was freed.
//!
//! Where the model cannot cheaply predict a value (file sizes, list contents), it takes
//! the value the emulator returned, checks its shape, and tracks it: lists are parsed and
//! their `*pcbSize` checked (spec §4), a log list must be contiguous, end at the generation
//! the call sealed and start at the frozen checkpoint (full) or right after the last
//! recorded backup (incremental, §8.7); bytes read to EOF must equal the file on the
//! emulated disk; a buffer's content must be unchanged when it is freed, also after End
//! (§5.11); failed calls must leave their out-parameters NULL / 0.
//!
//! The order of the checks (pointer arguments, then the handle, then the session and
//! service state, then access, then the call's own sequencing) is the one
//! `src/abi/exports.rs` and `src/api/mod.rs` implement.
//!
//! Two emulator bugs this model found are fixed and kept as regressions: GetBackupLogs
//! after TruncateLogs in a LOGS_ONLY session, and host identities reused after 2048
//! machines (`host_identity_is_not_reused`).

use certadm_emu::abi::{
    self, CertSrvBackupClose, CertSrvBackupEnd, CertSrvBackupFree, CertSrvBackupGetBackupLogsW,
    CertSrvBackupGetDatabaseNamesW, CertSrvBackupGetDynamicFileListW, CertSrvBackupOpenFileW,
    CertSrvBackupPrepareW, CertSrvBackupRead, CertSrvBackupTruncateLogs, CertSrvIsServerOnlineW,
    CertSrvRestoreGetDatabaseLocationsW, CertSrvServerControlW,
};
use certadm_emu::ca::ServiceState;
use certadm_emu::client::{backup_to_dir, restore_from_dirs, BackupOptions, RestoreOptions};
use certadm_emu::core::consts::*;
use certadm_emu::machine::Identity;
use certadm_emu::{EmulatedCa, Error, WideList, HRESULT};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::{BTreeSet, HashSet};
use std::ffi::c_void;
use std::ptr;

// ----- HRESULTs the model predicts -------------------------------------------------

const S_OK: i32 = HRESULT::S_OK.0;
const E_POINTER: i32 = HRESULT::E_POINTER.0;
const E_INVALIDARG: i32 = HRESULT::E_INVALIDARG.0;
const E_HANDLE: i32 = HRESULT::E_HANDLE.0;
const E_UNEXPECTED: i32 = HRESULT::E_UNEXPECTED.0;
const E_ACCESSDENIED: i32 = HRESULT::E_ACCESSDENIED.0;
const FILE_NOT_FOUND: i32 = HRESULT::ERROR_FILE_NOT_FOUND.0;
const SERVER_UNAVAILABLE: i32 = HRESULT::RPC_S_SERVER_UNAVAILABLE.0;
const DISCONNECTED: i32 = HRESULT::RPC_E_DISCONNECTED.0;
const SUSPENDED: i32 = HRESULT::CERTSRV_E_SERVER_SUSPENDED.0;
const INVALID_BACKUP_SEQUENCE: i32 = HRESULT::JET_errInvalidBackupSequence.0;
const MISSING_FULL_BACKUP: i32 = HRESULT::JET_errMissingFullBackup.0;
const BACKUP_IN_PROGRESS: i32 = HRESULT::JET_errBackupInProgress.0;

/// Out-parameters are preset to this value to check that a call always overwrites them.
const SENTINEL: usize = 0xDEAD_BEE0;
const UNKNOWN_HOST: &str = "no-such-host.prop-backup-model.invalid";
const WRONG_CA: &str = "No Such CA";

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn hr_str(hr: i32) -> String {
    HRESULT(hr).to_string()
}

/// With `PROP_MODEL_STATS` set, prints one line per call and result, to check what the
/// generated sequences reach: `PROP_MODEL_STATS=1 cargo test --test it prop_backup_model
/// -- --nocapture 2>&1 | grep ^STAT | sort | uniq -c`.
fn stat(call: &str, hr: i32) {
    if std::env::var_os("PROP_MODEL_STATS").is_some() {
        let name = call.split('(').next().unwrap_or(call);
        eprintln!("STAT {name} {}", hr_str(hr));
    }
}

// ----- operations --------------------------------------------------------------------

/// The server name passed to Prepare / IsServerOnline / ServerControl.
#[derive(Debug, Clone)]
enum Server {
    /// The NetBIOS name.
    Own,
    /// The DNS name.
    Dns,
    /// The NetBIOS name in lower case.
    Lower,
    /// `\\HOST`.
    Unc,
    /// `HOST\CA name`.
    Config,
    /// `HOST\<a CA that does not exist>`.
    WrongCa,
    /// A host no emulated machine has.
    Unknown,
    /// NULL.
    Null,
}

/// Which handle a call gets.
#[derive(Debug, Clone)]
enum HSel {
    /// The handle of the most recent successful Prepare that was not ended yet (the
    /// client's current session), else the most recent one.
    Current,
    /// The handle of the most recent successful Prepare.
    Latest,
    /// Any handle ever returned (live, disconnected or ended).
    Pick(Index),
    /// NULL.
    Null,
    /// A forged value: 0 = even (no tag bit), 1 = the raw value 1, 2 = the latest handle
    /// with its session generation changed, 3 = the latest handle without its tag bit.
    Garbage(u8),
    /// Session number `n` of the model (used by the cleanup, never generated).
    Exact(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListFn {
    DatabaseNames,
    BackupLogs,
    DynamicFiles,
    Locations,
}

/// The name passed to `CertSrvBackupOpenFileW`.
#[derive(Debug, Clone)]
enum NameSel {
    /// A database or log name listed at some point (in this session or another one).
    Listed(Index),
    /// The same, upper-cased (names compare case-insensitively).
    Upper(Index),
    /// The same, still carrying its CSBFT prefix (a common client bug).
    Prefixed(Index),
    /// A dynamic file (CRL / CA certificate): listed, but not served by the backup API.
    Dynamic(Index),
    /// A name nobody listed.
    Unknown,
    /// NULL.
    Null,
}

#[derive(Debug, Clone)]
enum Op {
    Prepare {
        server: Server,
        grbit: u32,
        flags: u32,
        null_out: bool,
    },
    /// Prepare from another thread, i.e. another client (spec §6.2 row 10).
    PrepareOtherThread {
        flags: u32,
    },
    List {
        f: ListFn,
        h: HSel,
        null_out: bool,
    },
    Open {
        h: HSel,
        name: NameSel,
        hint: u32,
        null_size: bool,
    },
    Read {
        h: HSel,
        size: u32,
        null_buf: bool,
    },
    /// Reads until a short read, as the documented loop does.
    ReadToEnd {
        h: HSel,
        size: u32,
    },
    Close(HSel),
    Truncate(HSel),
    End(HSel),
    /// On the latest handle: close, then open / read to EOF / close every listed file
    /// not yet read to EOF.
    SecureAll,
    /// The documented full backup (spec §8.1) as single calls.
    HappyFull {
        truncate: bool,
        /// End the session and free its buffers (else leave it to later operations).
        end: bool,
    },
    /// The documented incremental backup as single calls.
    HappyIncremental {
        truncate: bool,
        end: bool,
    },
    /// `CertSrvBackupFree` on any buffer ever returned (live or already freed).
    Free(Index),
    /// `CertSrvBackupFree` on NULL or on memory the emulator never returned.
    FreeForeign {
        null: bool,
    },
    IsOnline(Server),
    ServerControl {
        server: Server,
        flags: u32,
    },
    Issue(u32),
    Revoke(u32),
    Stop,
    Start,
    Crash,
    CrashStart,
    BeginStart,
    FinishStart,
    SetIdentity(Identity),
    SetFlags(u32),
}

fn server_strategy() -> impl Strategy<Value = Server> {
    prop_oneof![
        20 => Just(Server::Own),
        2 => Just(Server::Dns),
        1 => Just(Server::Lower),
        1 => Just(Server::Unc),
        2 => Just(Server::Config),
        1 => Just(Server::WrongCa),
        1 => Just(Server::Unknown),
        1 => Just(Server::Null),
    ]
}

fn handle_strategy() -> impl Strategy<Value = HSel> {
    prop_oneof![
        14 => Just(HSel::Current),
        2 => Just(HSel::Latest),
        2 => any::<Index>().prop_map(HSel::Pick),
        1 => Just(HSel::Null),
        1 => (0u8..4).prop_map(HSel::Garbage),
    ]
}

fn backup_flags_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        10 => Just(CSBACKUP_TYPE_FULL),
        6 => Just(CSBACKUP_TYPE_LOGS_ONLY),
        1 => Just(0u32),
        1 => Just(CSBACKUP_TYPE_MASK),
        1 => Just(4u32),
    ]
}

fn name_strategy() -> impl Strategy<Value = NameSel> {
    prop_oneof![
        12 => any::<Index>().prop_map(NameSel::Listed),
        1 => any::<Index>().prop_map(NameSel::Upper),
        1 => any::<Index>().prop_map(NameSel::Prefixed),
        1 => any::<Index>().prop_map(NameSel::Dynamic),
        1 => Just(NameSel::Unknown),
        1 => Just(NameSel::Null),
    ]
}

fn identity_strategy() -> impl Strategy<Value = Identity> {
    prop_oneof![
        3 => Just(Identity::default()),
        1 => Just(Identity { backup_privilege: false, ..Identity::default() }),
        1 => Just(Identity { remote: true, ..Identity::default() }),
        1 => Just(Identity { local_admin: false, backup_privilege: false, ..Identity::default() }),
        1 => (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(b, a, r)| Identity {
            backup_privilege: b,
            restore_privilege: true,
            local_admin: a,
            remote: r,
        }),
    ]
}

fn interface_flags_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => Just(IF_DEFAULT),
        1 => Just(0u32),
        1 => Just(IF_DEFAULT | IF_NOLOCALICERTADMINBACKUP),
        1 => Just(IF_NOLOCALICERTADMINBACKUP),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let list_fn = prop_oneof![
        3 => Just(ListFn::DatabaseNames),
        3 => Just(ListFn::BackupLogs),
        1 => Just(ListFn::DynamicFiles),
        1 => Just(ListFn::Locations),
    ];
    prop_oneof![
        8 => (
            server_strategy(),
            prop_oneof![19 => Just(0u32), 1 => Just(1u32)],
            backup_flags_strategy(),
            prop::bool::weighted(0.03),
        )
            .prop_map(|(server, grbit, flags, null_out)| Op::Prepare {
                server,
                grbit,
                flags,
                null_out
            }),
        1 => backup_flags_strategy().prop_map(|flags| Op::PrepareOtherThread { flags }),
        8 => (list_fn, handle_strategy(), prop::bool::weighted(0.05))
            .prop_map(|(f, h, null_out)| Op::List { f, h, null_out }),
        5 => (
            handle_strategy(),
            name_strategy(),
            prop::sample::select(vec![0u32, 1, 65_536, 700_000, u32::MAX]),
            prop::bool::weighted(0.03),
        )
            .prop_map(|(h, name, hint, null_size)| Op::Open {
                h,
                name,
                hint,
                null_size
            }),
        4 => (
            handle_strategy(),
            prop::sample::select(vec![0u32, 1, 7, 512, 4096, 65_536]),
            prop::bool::weighted(0.05),
        )
            .prop_map(|(h, size, null_buf)| Op::Read { h, size, null_buf }),
        3 => (
            handle_strategy(),
            prop::sample::select(vec![4096u32, 65_536, 1 << 20]),
        )
            .prop_map(|(h, size)| Op::ReadToEnd { h, size }),
        3 => handle_strategy().prop_map(Op::Close),
        2 => handle_strategy().prop_map(Op::Truncate),
        3 => handle_strategy().prop_map(Op::End),
        2 => Just(Op::SecureAll),
        4 => (any::<bool>(), prop::bool::weighted(0.7))
            .prop_map(|(truncate, end)| Op::HappyFull { truncate, end }),
        2 => (any::<bool>(), prop::bool::weighted(0.7))
            .prop_map(|(truncate, end)| Op::HappyIncremental { truncate, end }),
        2 => any::<Index>().prop_map(Op::Free),
        1 => any::<bool>().prop_map(|null| Op::FreeForeign { null }),
        1 => server_strategy().prop_map(Op::IsOnline),
        1 => (
            server_strategy(),
            prop::sample::select(vec![
                CSCONTROL_SHUTDOWN,
                CSCONTROL_SUSPEND,
                CSCONTROL_RESTART,
                0u32,
                7
            ]),
        )
            .prop_map(|(server, flags)| Op::ServerControl { server, flags }),
        2 => (1u32..6).prop_map(Op::Issue),
        1 => any::<u32>().prop_map(Op::Revoke),
        1 => Just(Op::Stop),
        2 => Just(Op::Start),
        1 => Just(Op::Crash),
        1 => Just(Op::CrashStart),
        1 => Just(Op::BeginStart),
        1 => Just(Op::FinishStart),
        1 => identity_strategy().prop_map(Op::SetIdentity),
        1 => interface_flags_strategy().prop_map(Op::SetFlags),
    ]
}

// ----- the reference model ---------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Full,
    LogsOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Live,
    /// The CA stopped or crashed under the session: only End is accepted.
    Disconnected,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Main,
    Other(u32),
}

#[derive(Debug, Clone)]
struct MFile {
    name: String,
    secured: bool,
}

#[derive(Debug, Clone, Copy)]
struct MOpen {
    index: usize,
    offset: u64,
    size: u64,
}

#[derive(Debug, Clone)]
struct MSession {
    raw: usize,
    kind: Kind,
    client: Client,
    life: Life,
    listed: Vec<MFile>,
    db_listed: bool,
    logs_listed: bool,
    open: Option<MOpen>,
    recorded: bool,
    /// A LOGS_ONLY session truncated: the logs it listed are deleted.
    logs_truncated: bool,
}

impl MSession {
    /// What TruncateLogs and End consider missing from the backup set (spec §5.9).
    fn unsecured(&self) -> bool {
        (self.kind == Kind::Full && !self.db_listed)
            || !self.logs_listed
            || self.listed.iter().any(|f| !f.secured)
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.listed
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, Clone)]
struct MBuf {
    addr: usize,
    bytes: Vec<u8>,
    live: bool,
}

#[derive(Debug)]
struct Model {
    service: ServiceState,
    identity: Identity,
    flags: u32,
    full_recorded: bool,
    incremental_recorded: bool,
    sessions: Vec<MSession>,
    active: Option<usize>,
    latest: Option<usize>,
    buffers: Vec<MBuf>,
    records: u32,
    revoked: BTreeSet<u32>,
    /// Database and log names ever listed, with their CSBFT prefix.
    names: Vec<(u16, String)>,
    /// Dynamic file names ever listed.
    dynamic: Vec<String>,
    /// Lower-cased names of log files deleted by a truncation.
    deleted: HashSet<String>,
}

impl Model {
    fn service_ok(&self) -> Result<(), i32> {
        match self.service {
            ServiceState::Running => Ok(()),
            ServiceState::Suspended => Err(SUSPENDED),
            ServiceState::Stopped => Err(SERVER_UNAVAILABLE),
        }
    }

    /// Spec §6.2 rows 11 and 12.
    fn access(&self) -> Result<(), i32> {
        let id = self.identity;
        if id.remote && self.flags & IF_NOREMOTEICERTADMINBACKUP != 0 {
            return Err(E_ACCESSDENIED);
        }
        if !id.remote && self.flags & IF_NOLOCALICERTADMINBACKUP != 0 {
            return Err(E_ACCESSDENIED);
        }
        if !id.backup_privilege {
            return Err(E_ACCESSDENIED);
        }
        Ok(())
    }

    fn record(&mut self, i: usize) {
        let s = &mut self.sessions[i];
        if !s.recorded && s.logs_listed {
            s.recorded = true;
            if s.kind == Kind::Full {
                self.full_recorded = true;
                self.incremental_recorded = false;
            } else {
                self.incremental_recorded = true;
            }
        }
    }

    fn disconnect_all(&mut self) {
        for s in &mut self.sessions {
            if s.life == Life::Live {
                s.life = Life::Disconnected;
                s.open = None;
            }
        }
        self.active = None;
    }

    fn not_ended(&self) -> usize {
        self.sessions
            .iter()
            .filter(|s| s.life != Life::Ended)
            .count()
    }

    fn live_buffers(&self) -> usize {
        self.buffers.iter().filter(|b| b.live).count()
    }

    fn add_name(&mut self, prefix: u16, name: &str) {
        if !self.names.iter().any(|(_, n)| n == name) {
            self.names.push((prefix, name.to_string()));
        }
        self.deleted.remove(&name.to_lowercase());
    }
}

/// A handle as the test passes it.
#[derive(Debug, Clone, Copy)]
enum Resolved {
    Null,
    Garbage(usize),
    Real(usize),
}

// ----- the harness ---------------------------------------------------------------------

struct Harness<'a> {
    ca: &'a EmulatedCa,
    m: Model,
    trace: Vec<String>,
    other_clients: u32,
    /// The bytes read so far from the open file (at most one session is live at a time).
    read_data: Vec<u8>,
}

impl<'a> Harness<'a> {
    fn new(ca: &'a EmulatedCa, records: u32) -> Self {
        Harness {
            ca,
            m: Model {
                service: ca.service(),
                identity: ca.identity(),
                flags: ca.interface_flags(),
                full_recorded: false,
                incremental_recorded: false,
                sessions: Vec::new(),
                active: None,
                latest: None,
                buffers: Vec::new(),
                records,
                revoked: BTreeSet::new(),
                names: Vec::new(),
                dynamic: Vec::new(),
                deleted: HashSet::new(),
            },
            trace: Vec::new(),
            other_clients: 0,
            read_data: Vec::new(),
        }
    }

    #[track_caller]
    fn fail(&self, msg: String) -> ! {
        let start = self.trace.len().saturating_sub(80);
        panic!(
            "{msg}\n--- last steps ---\n{}\n--- model ---\nservice {:?}, identity {:?}, flags {:#x}, full recorded {}, active {:?}, latest {:?}\nsessions: {:#?}",
            self.trace[start..].join("\n"),
            self.m.service,
            self.m.identity,
            self.m.flags,
            self.m.full_recorded,
            self.m.active,
            self.m.latest,
            self.m.sessions,
        )
    }

    /// Compares an HRESULT with the model's prediction; an emulator panic is always a failure.
    #[track_caller]
    fn expect(&mut self, call: &str, got: i32, want: i32) {
        let detail = abi::last_error();
        stat(call, got);
        self.trace.push(format!(
            "{call} -> {} (model {})",
            hr_str(got),
            hr_str(want)
        ));
        if let Some(e @ Error::Panic { .. }) = &detail {
            self.fail(format!("{call}: the emulator panicked: {e}"));
        }
        if got != want {
            self.fail(format!(
                "{call}: got {}, the model predicts {}; last emulator error: {}",
                hr_str(got),
                hr_str(want),
                detail.map_or("none".into(), |e| e.to_string())
            ));
        }
    }

    #[track_caller]
    fn check(&self, cond: bool, what: impl FnOnce() -> String) {
        if !cond {
            self.fail(what());
        }
    }

    /// The observable CA state agrees with the model.
    #[track_caller]
    fn invariants(&self) {
        let ca = self.ca;
        let m = &self.m;
        self.check(ca.service() == m.service, || {
            format!("service {:?}, model {:?}", ca.service(), m.service)
        });
        self.check(ca.sessions_open() == m.not_ended(), || {
            format!(
                "sessions_open {}, model {}",
                ca.sessions_open(),
                m.not_ended()
            )
        });
        self.check(ca.backup_in_progress() == m.active.is_some(), || {
            format!(
                "backup_in_progress {}, model active {:?}",
                ca.backup_in_progress(),
                m.active
            )
        });
        self.check(ca.outstanding_buffers() == m.live_buffers(), || {
            format!(
                "outstanding_buffers {}, model {}",
                ca.outstanding_buffers(),
                m.live_buffers()
            )
        });
        self.check(ca.last_full_backup().is_some() == m.full_recorded, || {
            format!(
                "last_full_backup {:?}, model recorded {}",
                ca.last_full_backup(),
                m.full_recorded
            )
        });
        self.check(
            ca.last_incremental_backup().is_some() == m.incremental_recorded,
            || {
                format!(
                    "last_incremental_backup {:?}, model recorded {}",
                    ca.last_incremental_backup(),
                    m.incremental_recorded
                )
            },
        );
        self.check(ca.record_count() == m.records as usize, || {
            format!("record_count {}, model {}", ca.record_count(), m.records)
        });
        let revoked = ca
            .records()
            .filter(|r| r.status != certadm_emu::ca::Status::Issued)
            .count();
        self.check(revoked == m.revoked.len(), || {
            format!("{revoked} revoked records, model {}", m.revoked.len())
        });
        for (i, s) in m.sessions.iter().enumerate() {
            if s.life == Life::Live {
                self.check(m.service == ServiceState::Running, || {
                    format!("model bug: session {i} live while {:?}", m.service)
                });
            }
        }
    }

    // ----- resolving arguments -----

    fn server(&self, s: &Server) -> Option<String> {
        let name = self.ca.server_name();
        Some(match s {
            Server::Own => name.to_string(),
            Server::Dns => self.ca.dns_name().to_string(),
            Server::Lower => name.to_lowercase(),
            Server::Unc => format!(r"\\{name}"),
            Server::Config => self.ca.config_string(),
            Server::WrongCa => format!(r"{name}\{WRONG_CA}"),
            Server::Unknown => UNKNOWN_HOST.to_string(),
            Server::Null => return None,
        })
    }

    /// The lookup of a server name (`lookup_server`).
    fn lookup(s: &Server) -> Result<(), i32> {
        match s {
            Server::Null => Err(E_POINTER),
            Server::Unknown => Err(SERVER_UNAVAILABLE),
            Server::WrongCa => Err(FILE_NOT_FOUND),
            _ => Ok(()),
        }
    }

    fn resolve(&self, h: &HSel) -> Resolved {
        let latest_raw = self.m.latest.map(|i| self.m.sessions[i].raw);
        match h {
            HSel::Latest => self.m.latest.map_or(Resolved::Garbage(2), Resolved::Real),
            HSel::Current => self
                .m
                .sessions
                .iter()
                .rposition(|s| s.life != Life::Ended)
                .or(self.m.latest)
                .map_or(Resolved::Garbage(2), Resolved::Real),
            HSel::Exact(i) => Resolved::Real(*i),
            HSel::Pick(ix) => {
                if self.m.sessions.is_empty() {
                    Resolved::Garbage(2)
                } else {
                    Resolved::Real(ix.index(self.m.sessions.len()))
                }
            }
            HSel::Null => Resolved::Null,
            HSel::Garbage(0) => Resolved::Garbage(0x2468),
            HSel::Garbage(1) => Resolved::Garbage(1),
            HSel::Garbage(2) => Resolved::Garbage(latest_raw.map_or(2, |r| r ^ (1 << 40))),
            HSel::Garbage(_) => Resolved::Garbage(latest_raw.map_or(4, |r| r & !1)),
        }
    }

    fn raw(&self, r: Resolved) -> *mut c_void {
        match r {
            Resolved::Null => ptr::null_mut(),
            Resolved::Garbage(v) => v as *mut c_void,
            Resolved::Real(i) => self.m.sessions[i].raw as *mut c_void,
        }
    }

    /// The checks every backup call makes on its handle (`backup_call`).
    fn gate(&self, r: Resolved) -> Result<usize, i32> {
        let i = match r {
            Resolved::Null | Resolved::Garbage(_) => return Err(E_HANDLE),
            Resolved::Real(i) => i,
        };
        match self.m.sessions[i].life {
            Life::Ended => Err(E_HANDLE),
            Life::Disconnected => Err(DISCONNECTED),
            Life::Live => {
                self.m.service_ok()?;
                self.m.access()?;
                Ok(i)
            }
        }
    }

    // ----- backup calls -----

    fn prepare(&mut self, server: &Server, grbit: u32, flags: u32, null_out: bool) -> i32 {
        let want = (|| {
            if null_out {
                return E_POINTER;
            }
            if matches!(server, Server::Null) {
                return E_POINTER;
            }
            if flags != CSBACKUP_TYPE_FULL && flags != CSBACKUP_TYPE_LOGS_ONLY {
                return E_INVALIDARG;
            }
            if grbit != 0 {
                return E_INVALIDARG;
            }
            if let Err(e) = Self::lookup(server) {
                return e;
            }
            self.predict_prepare_on_ca(flags, Client::Main)
        })();
        let name = self.server(server).map(|s| wide(&s));
        let mut h = SENTINEL as *mut c_void;
        // SAFETY: a NUL-terminated string or NULL; a writable out-pointer or NULL.
        let hr = unsafe {
            CertSrvBackupPrepareW(
                name.as_ref().map_or(ptr::null(), |n| n.as_ptr()),
                grbit,
                flags,
                if null_out { ptr::null_mut() } else { &mut h },
            )
        };
        self.expect(
            &format!("Prepare({server:?}, grbit {grbit}, flags {flags:#x}, null_out {null_out})"),
            hr,
            want,
        );
        if !null_out {
            self.after_prepare(hr, h as usize, flags, Client::Main);
        }
        hr
    }

    fn predict_prepare_on_ca(&self, flags: u32, client: Client) -> i32 {
        if let Err(e) = self.m.service_ok() {
            return e;
        }
        if let Err(e) = self.m.access() {
            return e;
        }
        if let Some(a) = self.m.active {
            return if self.m.sessions[a].client == client {
                E_UNEXPECTED
            } else {
                BACKUP_IN_PROGRESS
            };
        }
        if flags == CSBACKUP_TYPE_LOGS_ONLY && !self.m.full_recorded {
            return MISSING_FULL_BACKUP;
        }
        S_OK
    }

    fn after_prepare(&mut self, hr: i32, raw: usize, flags: u32, client: Client) {
        if hr != S_OK {
            self.check(raw == 0, || {
                format!("failed Prepare left *phbc = {raw:#x}, not NULL")
            });
            return;
        }
        self.check(raw != 0 && raw != SENTINEL, || {
            format!("Prepare succeeded but *phbc = {raw:#x}")
        });
        self.check(self.m.sessions.iter().all(|s| s.raw != raw), || {
            format!("Prepare returned handle {raw:#x} a second time")
        });
        self.m.sessions.push(MSession {
            raw,
            kind: if flags == CSBACKUP_TYPE_FULL {
                Kind::Full
            } else {
                Kind::LogsOnly
            },
            client,
            life: Life::Live,
            listed: Vec::new(),
            db_listed: false,
            logs_listed: false,
            open: None,
            recorded: false,
            logs_truncated: false,
        });
        let i = self.m.sessions.len() - 1;
        self.m.active = Some(i);
        self.m.latest = Some(i);
    }

    fn prepare_other_thread(&mut self, flags: u32) -> i32 {
        self.other_clients += 1;
        let client = Client::Other(self.other_clients);
        let want = if flags != CSBACKUP_TYPE_FULL && flags != CSBACKUP_TYPE_LOGS_ONLY {
            E_INVALIDARG
        } else {
            self.predict_prepare_on_ca(flags, client)
        };
        let server = self.ca.server_name().to_string();
        let (hr, raw, detail) = std::thread::spawn(move || {
            let name = wide(&server);
            let mut h = SENTINEL as *mut c_void;
            // SAFETY: a NUL-terminated string and a writable out-pointer.
            let hr = unsafe { CertSrvBackupPrepareW(name.as_ptr(), 0, flags, &mut h) };
            (hr, h as usize, abi::last_error())
        })
        .join()
        .expect("the other client's thread panicked");
        let call = format!("Prepare(other thread, flags {flags:#x})");
        if let Some(e @ Error::Panic { .. }) = &detail {
            self.fail(format!("{call}: the emulator panicked: {e}"));
        }
        if hr != want {
            self.fail(format!(
                "{call}: got {}, model {}: {}",
                hr_str(hr),
                hr_str(want),
                detail.map_or("none".into(), |e| e.to_string())
            ));
        }
        self.trace.push(format!("{call} -> {}", hr_str(hr)));
        self.after_prepare(hr, raw, flags, client);
        hr
    }

    fn list(&mut self, f: ListFn, h: &HSel, null_out: bool) -> i32 {
        let r = self.resolve(h);
        let want: Result<usize, i32> = if null_out {
            Err(E_POINTER)
        } else {
            self.gate(r).and_then(|i| {
                let s = &self.m.sessions[i];
                match f {
                    ListFn::DatabaseNames if s.kind == Kind::LogsOnly => {
                        Err(INVALID_BACKUP_SEQUENCE)
                    }
                    _ => Ok(i),
                }
            })
        };
        let func: unsafe extern "system" fn(*const c_void, *mut *mut u16, *mut u32) -> i32 = match f
        {
            ListFn::DatabaseNames => CertSrvBackupGetDatabaseNamesW,
            ListFn::BackupLogs => CertSrvBackupGetBackupLogsW,
            ListFn::DynamicFiles => CertSrvBackupGetDynamicFileListW,
            ListFn::Locations => CertSrvRestoreGetDatabaseLocationsW,
        };
        // What the CA says before the call, for the expected log range.
        let checkpoint_before = self.ca.checkpoint().generation;
        let last_backup_high = match (
            self.ca.last_full_backup(),
            self.ca.last_incremental_backup(),
        ) {
            (Some(f), Some(i)) => Some(f.high_gen.max(i.high_gen)),
            (Some(f), None) => Some(f.high_gen),
            _ => None,
        };
        let mut p = SENTINEL as *mut u16;
        let mut cb = 0xFFFF_FFFFu32;
        // SAFETY: writable out-pointers (or NULL for the first one).
        let hr = unsafe {
            func(
                self.raw(r),
                if null_out { ptr::null_mut() } else { &mut p },
                &mut cb,
            )
        };
        self.expect(
            &format!("{f:?}({h:?} = {r:?}, null_out {null_out})"),
            hr,
            want.err().unwrap_or(S_OK),
        );
        let Ok(i) = want else {
            self.check(cb == 0 && (null_out || p.is_null()), || {
                format!("failed {f:?} left *pp = {p:p}, *pcb = {cb}")
            });
            return hr;
        };
        self.check(!p.is_null() && p as usize != SENTINEL, || {
            format!("{f:?} succeeded with pointer {p:p}")
        });
        self.check(cb >= 2 && cb % 2 == 0, || format!("{f:?}: *pcbSize = {cb}"));
        // SAFETY: the emulator returned `cb` bytes at `p`; they live until CertSrvBackupFree.
        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, cb as usize) }.to_vec();
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let prefixed = f != ListFn::DynamicFiles;
        let entries = WideList::parse_units(&units, prefixed)
            .unwrap_or_else(|| self.fail(format!("{f:?}: not a double-NUL list: {units:?}")));
        let used: usize = entries
            .iter()
            .map(|e| e.path.encode_utf16().count() + usize::from(prefixed) + 1)
            .sum::<usize>()
            + 1;
        self.check(used == units.len(), || {
            format!(
                "{f:?}: *pcbSize {cb} but the list uses {} bytes (the final NUL included)",
                used * 2
            )
        });
        let addr = p as usize;
        self.check(
            !self.m.buffers.iter().any(|b| b.live && b.addr == addr),
            || format!("{f:?} returned {addr:#x}, which is still a live buffer"),
        );
        self.m.buffers.push(MBuf {
            addr,
            bytes,
            live: true,
        });
        match f {
            ListFn::DatabaseNames => {
                self.check(
                    entries.len() == 1 && entries[0].kind == Some(CSBFT_CERTSERVER_DATABASE),
                    || format!("GetDatabaseNames: {entries:?}"),
                );
                let name = entries[0].path.clone();
                self.check(name.ends_with(".edb") && name.starts_with(r"\\"), || {
                    format!("GetDatabaseNames: {name:?}")
                });
                let s = &mut self.m.sessions[i];
                if s.find(&name).is_none() {
                    s.listed.push(MFile {
                        name: name.clone(),
                        secured: false,
                    });
                }
                s.db_listed = true;
                self.m.add_name(CSBFT_CERTSERVER_DATABASE, &name);
            }
            ListFn::BackupLogs => {
                self.check(
                    !entries.is_empty() && entries.iter().all(|e| e.kind == Some(CSBFT_LOG)),
                    || format!("GetBackupLogs: {entries:?}"),
                );
                let gens: Vec<u32> = entries
                    .iter()
                    .map(|e| {
                        let file = e.path.rsplit('\\').next().unwrap_or_default();
                        file.strip_prefix("edb")
                            .and_then(|g| g.strip_suffix(".log"))
                            .and_then(|g| u32::from_str_radix(g, 16).ok())
                            .unwrap_or_else(|| {
                                self.fail(format!("GetBackupLogs: odd name {:?}", e.path))
                            })
                    })
                    .collect();
                self.check(gens.windows(2).all(|w| w[1] == w[0] + 1), || {
                    format!("GetBackupLogs: generations not contiguous: {gens:?}")
                });
                // The range ends with edb.log, which the call rolled (spec §5.8) ...
                let current = self.ca.current_position().generation;
                self.check(gens.last() == Some(&(current - 1)), || {
                    format!("GetBackupLogs: {gens:?} does not end below the current generation {current}")
                });
                let on_disk = self.ca.log_generations();
                self.check(gens.iter().all(|g| on_disk.contains(g)), || {
                    format!("GetBackupLogs: {gens:?} but the log directory holds {on_disk:?}")
                });
                // ... and starts at the database copy's checkpoint (full), or right after the
                // last recorded backup (incremental, spec §8.7).
                let s = &self.m.sessions[i];
                let first = match s.kind {
                    Kind::Full => Some(checkpoint_before),
                    Kind::LogsOnly if !s.logs_truncated => last_backup_high.map(|h| h + 1),
                    Kind::LogsOnly => None,
                };
                if let Some(first) = first {
                    self.check(gens[0] == first, || {
                        format!("GetBackupLogs in a {:?} session: {gens:?}, expected to start at {first}", s.kind)
                    });
                }
                let s = &self.m.sessions[i];
                let earlier: Vec<&MFile> = s
                    .listed
                    .iter()
                    .filter(|f| {
                        !f.name.ends_with(".edb")
                            && !self.m.deleted.contains(&f.name.to_lowercase())
                    })
                    .collect();
                for f in earlier {
                    self.check(entries.iter().any(|e| e.path == f.name), || {
                        format!(
                            "GetBackupLogs dropped {} listed earlier in this session: {gens:?}",
                            f.name
                        )
                    });
                }
                for e in &entries {
                    let s = &mut self.m.sessions[i];
                    if !s.listed.iter().any(|f| f.name == e.path) {
                        s.listed.push(MFile {
                            name: e.path.clone(),
                            secured: false,
                        });
                    }
                    self.m.add_name(CSBFT_LOG, &e.path);
                }
                self.m.sessions[i].logs_listed = true;
            }
            ListFn::DynamicFiles => {
                self.check(
                    entries.len() == 2 && entries.iter().all(|e| e.path.starts_with(r"\\")),
                    || format!("GetDynamicFileList: {entries:?}"),
                );
                for e in entries {
                    if !self.m.dynamic.contains(&e.path) {
                        self.m.dynamic.push(e.path);
                    }
                }
            }
            ListFn::Locations => {
                let kinds: Vec<Option<u16>> = entries.iter().map(|e| e.kind).collect();
                self.check(
                    kinds
                        == [
                            Some(CSBFT_CERTSERVER_DATABASE),
                            Some(CSBFT_LOG_DIR),
                            Some(CSBFT_CHECKPOINT_DIR),
                        ],
                    || format!("RestoreGetDatabaseLocations: {entries:?}"),
                );
                if let Some((_, db)) = self
                    .m
                    .names
                    .iter()
                    .find(|(k, _)| *k == CSBFT_CERTSERVER_DATABASE)
                {
                    self.check(&entries[0].path == db, || {
                        format!(
                            "RestoreGetDatabaseLocations names {:?}, GetDatabaseNames {db:?}",
                            entries[0].path
                        )
                    });
                }
            }
        }
        hr
    }

    fn name_arg(&self, sel: &NameSel) -> Option<String> {
        let pick = |ix: &Index| {
            if self.m.names.is_empty() {
                None
            } else {
                Some(self.m.names[ix.index(self.m.names.len())].clone())
            }
        };
        let unknown = || {
            format!(
                r"\\{}\C$\Windows\System32\CertLog\nothing.log",
                self.ca.dns_name()
            )
        };
        Some(match sel {
            NameSel::Null => return None,
            NameSel::Unknown => unknown(),
            NameSel::Listed(ix) => pick(ix).map_or_else(unknown, |(_, n)| n),
            NameSel::Upper(ix) => pick(ix).map_or_else(unknown, |(_, n)| n.to_uppercase()),
            NameSel::Prefixed(ix) => pick(ix).map_or_else(unknown, |(k, n)| {
                format!("{}{n}", char::from_u32(k.into()).expect("ASCII prefix"))
            }),
            NameSel::Dynamic(ix) => {
                if self.m.dynamic.is_empty() {
                    unknown()
                } else {
                    self.m.dynamic[ix.index(self.m.dynamic.len())].clone()
                }
            }
        })
    }

    fn open(&mut self, h: &HSel, name: Option<String>, hint: u32, null_size: bool) -> i32 {
        let r = self.resolve(h);
        let want: Result<(usize, usize), i32> = (|| {
            if null_size || name.is_none() {
                return Err(E_POINTER);
            }
            let name = name.as_deref().unwrap_or_default();
            let i = self.gate(r)?;
            let s = &self.m.sessions[i];
            if s.open.is_some() {
                return Err(E_UNEXPECTED);
            }
            match s.find(name) {
                Some(_) if self.m.deleted.contains(&name.to_lowercase()) => Err(FILE_NOT_FOUND),
                Some(f) => Ok((i, f)),
                None if self.m.dynamic.iter().any(|d| d.eq_ignore_ascii_case(name)) => {
                    Err(E_INVALIDARG)
                }
                None => Err(FILE_NOT_FOUND),
            }
        })();
        let wname = name.as_deref().map(wide);
        let mut size: i64 = -1;
        // SAFETY: a NUL-terminated string or NULL; a writable out-pointer or NULL.
        let hr = unsafe {
            CertSrvBackupOpenFileW(
                self.raw(r),
                wname.as_ref().map_or(ptr::null(), |n| n.as_ptr()),
                hint,
                if null_size {
                    ptr::null_mut()
                } else {
                    &mut size
                },
            )
        };
        self.expect(
            &format!("OpenFile({h:?} = {r:?}, {name:?}, hint {hint}, null_size {null_size})"),
            hr,
            want.err().unwrap_or(S_OK),
        );
        match want {
            Err(_) => self.check(null_size || size == 0, || {
                format!("failed OpenFile left *pliFileSize = {size}")
            }),
            Ok((i, f)) => {
                self.check(size >= 0, || format!("OpenFile: size {size}"));
                let size = size as u64;
                let s = &mut self.m.sessions[i];
                s.open = Some(MOpen {
                    index: f,
                    offset: 0,
                    size,
                });
                self.read_data.clear();
                if size == 0 {
                    s.listed[f].secured = true;
                }
            }
        }
        hr
    }

    /// One `CertSrvBackupRead`; returns the HRESULT and the bytes read.
    fn read(&mut self, h: &HSel, size: u32, null_buf: bool) -> (i32, u32) {
        let r = self.resolve(h);
        let want: Result<(usize, u64), i32> = (|| {
            if null_buf {
                return Err(E_POINTER);
            }
            let i = self.gate(r)?;
            let Some(o) = self.m.sessions[i].open.as_ref() else {
                return Err(E_UNEXPECTED);
            };
            if size == 0 {
                return Err(E_INVALIDARG);
            }
            Ok((i, (size as u64).min(o.size - o.offset)))
        })();
        let mut buf = vec![0u8; (size as usize).max(1)];
        let mut n = 0xFFFF_FFFFu32;
        // SAFETY: `buf` is valid for `size` bytes (or the pointer is NULL); `n` is writable.
        let hr = unsafe {
            CertSrvBackupRead(
                self.raw(r),
                if null_buf {
                    ptr::null_mut()
                } else {
                    buf.as_mut_ptr() as *mut c_void
                },
                size,
                &mut n,
            )
        };
        self.expect(
            &format!("Read({h:?} = {r:?}, {size}, null_buf {null_buf}) [{n} bytes]"),
            hr,
            want.err().unwrap_or(S_OK),
        );
        match want {
            Err(_) => self.check(n == 0, || format!("failed Read left *pcbRead = {n}")),
            Ok((i, expected)) => {
                self.check(n as u64 == expected, || {
                    format!("Read returned {n} bytes, the model expects {expected}")
                });
                let s = &mut self.m.sessions[i];
                let o = s.open.as_mut().expect("checked");
                o.offset += n as u64;
                let at_eof = o.offset == o.size;
                let f = o.index;
                if at_eof {
                    s.listed[f].secured = true;
                }
                self.read_data.extend_from_slice(&buf[..n as usize]);
                if at_eof {
                    let name = self.m.sessions[i].listed[f].name.clone();
                    self.compare_with_disk(&name);
                }
            }
        }
        (hr, n)
    }

    /// At end of file the bytes read are the file on the emulated disk: a log exactly, the
    /// database as its stored prefix (the rest of a virtual `.edb` is generated padding).
    fn compare_with_disk(&mut self, name: &str) {
        let path = self
            .ca
            .host_path(name)
            .unwrap_or_else(|e| self.fail(format!("{name:?} does not map to the disk: {e}")));
        // A log deleted by a truncation while it was open cannot be compared.
        let Ok(disk) = std::fs::read(&path) else {
            return;
        };
        let data = &self.read_data;
        let same = if name.to_lowercase().ends_with(".edb") {
            disk.len() <= data.len() && data[..disk.len()] == disk[..]
        } else {
            *data == disk
        };
        self.check(same, || {
            format!(
                "{name}: the {} bytes read differ from the {} bytes on disk",
                data.len(),
                disk.len()
            )
        });
    }

    fn read_to_end(&mut self, h: &HSel, size: u32) {
        for _ in 0..100_000 {
            let (hr, n) = self.read(h, size, false);
            if hr != S_OK || n < size {
                return;
            }
        }
        self.fail("ReadToEnd: no end of file after 100000 reads".into());
    }

    fn close(&mut self, h: &HSel) -> i32 {
        let r = self.resolve(h);
        let want = self.gate(r).and_then(|i| {
            if self.m.sessions[i].open.is_some() {
                Ok(i)
            } else {
                Err(E_UNEXPECTED)
            }
        });
        // SAFETY: any handle value is accepted.
        let hr = unsafe { CertSrvBackupClose(self.raw(r)) };
        self.expect(
            &format!("Close({h:?} = {r:?})"),
            hr,
            want.err().unwrap_or(S_OK),
        );
        if let Ok(i) = want {
            self.m.sessions[i].open = None;
        }
        hr
    }

    fn truncate(&mut self, h: &HSel) -> i32 {
        let r = self.resolve(h);
        let want = self.gate(r).and_then(|i| {
            if self.m.sessions[i].unsecured() {
                Err(E_UNEXPECTED)
            } else {
                Ok(i)
            }
        });
        // SAFETY: any handle value is accepted.
        let hr = unsafe { CertSrvBackupTruncateLogs(self.raw(r)) };
        self.expect(
            &format!("TruncateLogs({h:?} = {r:?})"),
            hr,
            want.err().unwrap_or(S_OK),
        );
        if let Ok(i) = want {
            if self.m.sessions[i].kind == Kind::LogsOnly {
                // Nothing holds the checkpoint back in a logs-only session, so every log it
                // listed is below min(checkpoint, high + 1) and is deleted.
                let names: Vec<String> = self.m.sessions[i]
                    .listed
                    .iter()
                    .map(|f| f.name.to_lowercase())
                    .collect();
                self.m.deleted.extend(names);
                self.m.sessions[i].logs_truncated = true;
            }
            self.m.record(i);
        }
        hr
    }

    fn end(&mut self, h: &HSel) -> i32 {
        let r = self.resolve(h);
        let want: Result<usize, i32> = match r {
            Resolved::Null | Resolved::Garbage(_) => Err(E_HANDLE),
            Resolved::Real(i) => match self.m.sessions[i].life {
                Life::Ended => Err(E_HANDLE),
                Life::Disconnected => Ok(i),
                Life::Live => self.m.access().map(|()| i),
            },
        };
        // SAFETY: any handle value is accepted.
        let hr = unsafe { CertSrvBackupEnd(self.raw(r)) };
        self.expect(
            &format!("End({h:?} = {r:?})"),
            hr,
            want.err().unwrap_or(S_OK),
        );
        if let Ok(i) = want {
            if self.m.sessions[i].life == Life::Live && !self.m.sessions[i].unsecured() {
                self.m.record(i);
            }
            let s = &mut self.m.sessions[i];
            s.life = Life::Ended;
            s.open = None;
            if self.m.active == Some(i) {
                self.m.active = None;
            }
            self.invariants();
            if self.m.not_ended() == 0 {
                self.check(
                    self.ca.sessions_open() == 0 && !self.ca.backup_in_progress(),
                    || {
                        format!(
                            "after the last End: {} sessions open, backup in progress {}",
                            self.ca.sessions_open(),
                            self.ca.backup_in_progress()
                        )
                    },
                );
            }
        }
        hr
    }

    fn secure_all(&mut self) {
        let Some(i) = self.m.latest else { return };
        if self.m.sessions[i].life != Life::Live {
            return;
        }
        let h = HSel::Exact(i);
        if self.m.sessions[i].open.is_some() && self.close(&h) != S_OK {
            return;
        }
        let todo: Vec<String> = self.m.sessions[i]
            .listed
            .iter()
            .filter(|f| !f.secured)
            .map(|f| f.name.clone())
            .collect();
        for name in todo {
            if self.open(&h, Some(name), 0, false) != S_OK {
                return;
            }
            self.read_to_end(&h, 65_536);
            if self.close(&h) != S_OK {
                return;
            }
        }
    }

    /// The documented procedure (spec §8.1), call by call; stops at the first failure.
    fn happy(&mut self, flags: u32, truncate: bool, end: bool) {
        let first_buffer = self.m.buffers.len();
        if self.prepare(&Server::Own, 0, flags, false) != S_OK {
            return;
        }
        let i = self.m.latest.expect("just prepared");
        let h = HSel::Exact(i);
        let mut ok = true;
        if flags == CSBACKUP_TYPE_FULL {
            ok = self.list(ListFn::Locations, &h, false) == S_OK
                && self.list(ListFn::DatabaseNames, &h, false) == S_OK;
            if ok {
                self.secure_all();
            }
        }
        ok = ok && self.list(ListFn::BackupLogs, &h, false) == S_OK;
        if ok {
            self.secure_all();
        }
        if ok && truncate {
            ok = self.truncate(&h) == S_OK;
        }
        ok = ok && self.list(ListFn::DynamicFiles, &h, false) == S_OK;
        if ok && end && self.end(&h) == S_OK {
            // Buffers stay valid after End (spec §5.11); free them now.
            let addrs: Vec<usize> = self.m.buffers[first_buffer..]
                .iter()
                .filter(|b| b.live)
                .map(|b| b.addr)
                .collect();
            for a in addrs {
                self.free_addr(a);
            }
        }
    }

    fn free_addr(&mut self, addr: usize) {
        if let Some(b) = self.m.buffers.iter().find(|b| b.live && b.addr == addr) {
            // SAFETY: a live buffer of `b.bytes.len()` bytes, per the model (checked against
            // outstanding_buffers after every step).
            let now = unsafe { std::slice::from_raw_parts(addr as *const u8, b.bytes.len()) };
            self.check(now == b.bytes.as_slice(), || {
                format!("buffer {addr:#x} changed before it was freed")
            });
        }
        // SAFETY: the emulator looks the pointer up; it never dereferences an unknown one.
        unsafe { CertSrvBackupFree(addr as *mut c_void) };
        self.trace.push(format!("Free({addr:#x})"));
        if let Some(b) = self.m.buffers.iter_mut().find(|b| b.live && b.addr == addr) {
            b.live = false;
        }
        if let Some(e @ Error::Panic { .. }) = abi::last_error() {
            self.fail(format!("CertSrvBackupFree panicked: {e}"));
        }
    }

    fn is_online(&mut self, server: &Server) {
        let want: Result<i32, i32> = Self::lookup(server).and(match self.m.service {
            ServiceState::Running => Ok(1),
            ServiceState::Suspended => Ok(0),
            ServiceState::Stopped => Err(SERVER_UNAVAILABLE),
        });
        let name = self.server(server).map(|s| wide(&s));
        let mut online = 7i32;
        // SAFETY: a NUL-terminated string or NULL, and a writable out-pointer.
        let hr = unsafe {
            CertSrvIsServerOnlineW(
                name.as_ref().map_or(ptr::null(), |n| n.as_ptr()),
                &mut online,
            )
        };
        self.expect(
            &format!("IsServerOnline({server:?}) [{online}]"),
            hr,
            want.err().unwrap_or(S_OK),
        );
        let expected = want.unwrap_or(0);
        self.check(online == expected, || {
            format!("IsServerOnline: *pfServerOnline = {online}, model {expected}")
        });
    }

    fn server_control(&mut self, server: &Server, flags: u32) {
        let want = Self::lookup(server).and_then(|()| {
            if self.m.service == ServiceState::Stopped {
                return Err(SERVER_UNAVAILABLE);
            }
            if !self.m.identity.local_admin && !self.m.identity.backup_privilege {
                return Err(E_ACCESSDENIED);
            }
            match flags {
                CSCONTROL_SHUTDOWN | CSCONTROL_SUSPEND | CSCONTROL_RESTART => Ok(()),
                _ => Err(E_INVALIDARG),
            }
        });
        let name = self.server(server).map(|s| wide(&s));
        let mut cb = 0xFFFF_FFFFu32;
        let mut pb = SENTINEL as *mut u8;
        // SAFETY: a NUL-terminated string or NULL, and writable out-pointers.
        let hr = unsafe {
            CertSrvServerControlW(
                name.as_ref().map_or(ptr::null(), |n| n.as_ptr()),
                flags,
                &mut cb,
                &mut pb,
            )
        };
        self.expect(
            &format!("ServerControl({server:?}, {flags})"),
            hr,
            want.err().unwrap_or(S_OK),
        );
        self.check(cb == 0 && pb.is_null(), || {
            format!("ServerControl left *pcbOut = {cb}, *ppbOut = {pb:p}")
        });
        if want.is_ok() && flags == CSCONTROL_SHUTDOWN {
            self.m.disconnect_all();
            self.m.service = ServiceState::Stopped;
        }
    }

    // ----- CA activity through the control API -----

    #[track_caller]
    fn control<T: std::fmt::Debug>(&mut self, what: &str, got: Result<T, Error>, ok: bool) {
        self.trace.push(format!("{what} -> {got:?}"));
        if got.is_ok() != ok {
            self.fail(format!(
                "{what}: got {got:?}, the model expects {}",
                if ok { "success" } else { "failure" }
            ));
        }
    }

    fn stop(&mut self) {
        let ok = self.m.service != ServiceState::Stopped;
        let got = self.ca.stop();
        self.control("stop", got, ok);
        self.m.disconnect_all();
        self.m.service = ServiceState::Stopped;
    }

    fn crash(&mut self) {
        self.ca.crash();
        self.trace.push("crash".into());
        self.m.disconnect_all();
        self.m.service = ServiceState::Stopped;
    }

    fn start(&mut self) {
        let ok = self.m.service == ServiceState::Stopped;
        let got = self.ca.start();
        self.control("start", got, ok);
        if ok {
            self.m.service = ServiceState::Running;
        }
    }

    fn apply(&mut self, op: &Op) {
        self.trace.push(format!("## {op:?}"));
        match op {
            Op::Prepare {
                server,
                grbit,
                flags,
                null_out,
            } => {
                self.prepare(server, *grbit, *flags, *null_out);
            }
            Op::PrepareOtherThread { flags } => {
                self.prepare_other_thread(*flags);
            }
            Op::List { f, h, null_out } => {
                self.list(*f, h, *null_out);
            }
            Op::Open {
                h,
                name,
                hint,
                null_size,
            } => {
                let name = self.name_arg(name);
                self.open(h, name, *hint, *null_size);
            }
            Op::Read { h, size, null_buf } => {
                self.read(h, *size, *null_buf);
            }
            Op::ReadToEnd { h, size } => self.read_to_end(h, *size),
            Op::Close(h) => {
                self.close(h);
            }
            Op::Truncate(h) => {
                self.truncate(h);
            }
            Op::End(h) => {
                self.end(h);
            }
            Op::SecureAll => self.secure_all(),
            Op::HappyFull { truncate, end } => self.happy(CSBACKUP_TYPE_FULL, *truncate, *end),
            Op::HappyIncremental { truncate, end } => {
                self.happy(CSBACKUP_TYPE_LOGS_ONLY, *truncate, *end)
            }
            Op::Free(ix) => {
                if self.m.buffers.is_empty() {
                    self.free_addr(0);
                } else {
                    let addr = self.m.buffers[ix.index(self.m.buffers.len())].addr;
                    self.free_addr(addr);
                }
            }
            Op::FreeForeign { null } => {
                let mut local = [0u16; 4];
                let p = if *null {
                    ptr::null_mut()
                } else {
                    local.as_mut_ptr() as *mut c_void
                };
                // SAFETY: the emulator looks the pointer up and ignores one it never returned.
                unsafe { CertSrvBackupFree(p) };
                self.trace.push(format!("Free(foreign {p:p})"));
                self.check(local == [0; 4], || "Free wrote to foreign memory".into());
                if let Some(e @ Error::Panic { .. }) = abi::last_error() {
                    self.fail(format!("CertSrvBackupFree panicked: {e}"));
                }
            }
            Op::IsOnline(server) => self.is_online(server),
            Op::ServerControl { server, flags } => self.server_control(server, *flags),
            Op::Issue(n) => {
                let ok = self.m.service == ServiceState::Running;
                let got = self.ca.issue(*n);
                self.control(&format!("issue {n}"), got, ok);
                if ok {
                    self.m.records += n;
                }
            }
            Op::Revoke(sel) => {
                let id = 1 + sel % (self.m.records + 1);
                let ok = self.m.service == ServiceState::Running
                    && id <= self.m.records
                    && !self.m.revoked.contains(&id);
                let got = self.ca.revoke(id);
                self.control(&format!("revoke {id}"), got, ok);
                if ok {
                    self.m.revoked.insert(id);
                }
            }
            Op::Stop => self.stop(),
            Op::Start => self.start(),
            Op::Crash => self.crash(),
            Op::CrashStart => {
                self.crash();
                self.start();
            }
            Op::BeginStart => {
                let ok = self.m.service == ServiceState::Stopped;
                let got = self.ca.begin_start();
                self.control("begin_start", got, ok);
                if ok {
                    self.m.service = ServiceState::Suspended;
                }
            }
            Op::FinishStart => {
                let ok = self.m.service == ServiceState::Suspended;
                let got = self.ca.finish_start();
                self.control("finish_start", got, ok);
                if ok {
                    self.m.service = ServiceState::Running;
                }
            }
            Op::SetIdentity(id) => {
                self.ca.set_identity(*id);
                self.m.identity = *id;
            }
            Op::SetFlags(f) => {
                self.ca.set_interface_flags(*f);
                self.m.flags = *f;
            }
        }
        self.invariants();
    }

    /// Restores a permissive identity and ends every session that is not ended yet.
    fn end_everything(&mut self) {
        self.trace
            .push("## cleanup: End on every live handle".into());
        self.ca.set_identity(Identity::default());
        self.m.identity = Identity::default();
        self.ca.set_interface_flags(IF_DEFAULT);
        self.m.flags = IF_DEFAULT;
        for i in 0..self.m.sessions.len() {
            if self.m.sessions[i].life != Life::Ended {
                let hr = self.end(&HSel::Exact(i));
                self.check(hr == S_OK, || format!("cleanup End failed: {}", hr_str(hr)));
            }
        }
        self.invariants();
        self.check(
            self.ca.sessions_open() == 0 && !self.ca.backup_in_progress(),
            || {
                format!(
                    "after End on every handle: {} sessions open, backup in progress {}",
                    self.ca.sessions_open(),
                    self.ca.backup_in_progress()
                )
            },
        );
    }

    fn free_everything(&mut self) {
        self.trace.push("## cleanup: Free every buffer".into());
        let live: Vec<usize> = self
            .m
            .buffers
            .iter()
            .filter(|b| b.live)
            .map(|b| b.addr)
            .collect();
        for a in live {
            self.free_addr(a);
        }
        self.invariants();
        self.check(self.ca.outstanding_buffers() == 0, || {
            format!(
                "{} buffers outstanding after freeing all",
                self.ca.outstanding_buffers()
            )
        });
    }
}

const RECORDS: u32 = 6;

/// `cases` runs by default (a few seconds in a debug build); `PROPTEST_CASES` overrides it
/// for longer hunts. Failures are not persisted: a test in `tests/` has no source root for
/// proptest's regression files, and the shrunk sequence is printed instead.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn new_ca(log_capacity: u32, edb_size: Option<u64>) -> EmulatedCa {
    let mut b = EmulatedCa::builder()
        .records(RECORDS)
        .log_capacity(log_capacity);
    if let Some(n) = edb_size {
        b = b.edb_size(n);
    }
    b.build().expect("build the emulated CA")
}

fn run_ops<'a>(ca: &'a EmulatedCa, ops: &[Op]) -> Harness<'a> {
    let mut hx = Harness::new(ca, RECORDS);
    hx.invariants();
    for op in ops {
        hx.apply(op);
    }
    hx
}

proptest! {
    #![proptest_config(config(64))]

    /// Every call returns exactly the HRESULT the model predicts, the CA's observable
    /// state follows the model, and End on every handle leaves no session behind.
    #[test]
    fn backup_protocol_matches_model(
        log_capacity in 1u32..5,
        edb_size in prop::option::weighted(0.25, 16_000u64..100_000),
        ops in prop::collection::vec(op_strategy(), 1..40),
    ) {
        let ca = new_ca(log_capacity, edb_size);
        let mut hx = run_ops(&ca, &ops);
        hx.end_everything();
        hx.free_everything();
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// Whatever a client did, once it ends every handle and frees every buffer nothing is
    /// left over, and the CA still takes a full and an incremental backup that restore
    /// to the same records.
    #[test]
    fn ca_is_never_left_corrupted(
        log_capacity in 1u32..5,
        ops in prop::collection::vec(op_strategy(), 1..40),
    ) {
        let ca = new_ca(log_capacity, None);
        let mut hx = run_ops(&ca, &ops);
        hx.end_everything();
        hx.free_everything();
        let old_handle = hx.m.sessions.first().map(|s| s.raw);
        drop(hx);

        match ca.service() {
            ServiceState::Stopped => { ca.start().expect("start after the sequence"); }
            ServiceState::Suspended => { ca.finish_start().expect("finish the start"); }
            ServiceState::Running => {}
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let full = dir.path().join("full");
        let sum = backup_to_dir(ca.server_name(), &full, &BackupOptions::default(), &mut |_, _, _| {})
            .unwrap_or_else(|e| panic!("fresh full backup failed after {ops:#?}: {e}"));
        prop_assert!(sum.truncated);
        prop_assert!(sum.files.iter().any(|f| f.name.ends_with(".edb")));
        prop_assert!(ca.last_full_backup().is_some());
        ca.issue(3).expect("issue after the backup");
        ca.revoke(1).ok();
        let inc = dir.path().join("inc");
        let opts = BackupOptions { incremental: true, truncate: false, ..Default::default() };
        backup_to_dir(ca.server_name(), &inc, &opts, &mut |_, _, _| {})
            .unwrap_or_else(|e| panic!("incremental backup failed after {ops:#?}: {e}"));
        prop_assert_eq!(ca.outstanding_buffers(), 0);
        prop_assert_eq!(ca.sessions_open(), 0);
        prop_assert!(!ca.backup_in_progress());

        let expected = ca.records().collect::<Vec<_>>();
        ca.stop().expect("stop");
        ca.wipe_files().expect("wipe");
        restore_from_dirs(ca.server_name(), &full, &[inc], &|p| ca.host_path(p), &RestoreOptions::default())
            .unwrap_or_else(|e| panic!("restore failed after {ops:#?}: {e}"));
        ca.start().unwrap_or_else(|e| panic!("recovery failed after {ops:#?}: {e}"));
        prop_assert_eq!(ca.records().collect::<Vec<_>>(), expected);
        prop_assert_eq!(ca.sessions_open(), 0);

        // Once the machine is gone, its handles are stale, never dangling.
        drop(ca);
        if let Some(raw) = old_handle {
            let mut n = 5u32;
            let mut buf = [0u8; 16];
            // SAFETY: any handle value is accepted; the buffer and count are writable.
            let (end, read) = unsafe {
                (
                    CertSrvBackupEnd(raw as *mut c_void),
                    CertSrvBackupRead(raw as *mut c_void, buf.as_mut_ptr() as *mut c_void, 16, &mut n),
                )
            };
            prop_assert_eq!(HRESULT(end), HRESULT::E_HANDLE);
            prop_assert_eq!(HRESULT(read), HRESULT::E_HANDLE);
            prop_assert_eq!(n, 0);
        }
    }
}

/// Regression test for a bug this model found (it builds 2049 machines): a host's identity
/// was its registry slot plus an 11-bit generation, which wrapped after 2048 machines used
/// one slot, so a new machine inherited a dropped one's buffers and stale handles.
#[test]
fn host_identity_is_not_reused() {
    let a = EmulatedCa::builder().build().expect("build");
    let name = wide(a.server_name());
    let mut h: *mut c_void = ptr::null_mut();
    // SAFETY: valid string and out-pointers.
    unsafe {
        assert_eq!(
            CertSrvBackupPrepareW(name.as_ptr(), 0, CSBACKUP_TYPE_FULL, &mut h),
            S_OK
        );
        let mut p: *mut u16 = ptr::null_mut();
        let mut cb = 0u32;
        assert_eq!(CertSrvBackupGetDynamicFileListW(h, &mut p, &mut cb), S_OK);
    }
    assert_eq!(a.outstanding_buffers(), 1);
    drop(a); // the client never ends `h` nor frees the list
    for _ in 0..2047 {
        drop(EmulatedCa::builder().without_ca().build().expect("build"));
    }
    let b = EmulatedCa::builder().build().expect("build");
    let leaked = b.outstanding_buffers();
    let name = wide(b.server_name());
    let mut hb: *mut c_void = ptr::null_mut();
    // SAFETY: valid string and out-pointer; any handle value is accepted.
    let (prepare, end_old) = unsafe {
        (
            CertSrvBackupPrepareW(name.as_ptr(), 0, CSBACKUP_TYPE_FULL, &mut hb),
            CertSrvBackupEnd(h),
        )
    };
    assert_eq!(prepare, S_OK);
    assert_eq!(
        (leaked, HRESULT(end_old), b.sessions_open()),
        (0, HRESULT::E_HANDLE, 1),
        "a new machine inherited a dropped machine's buffers / the old handle reached the new session"
    );
}

//! The protocol conformance checker: reads a call trace and reports where the
//! client broke the documented contract, with the rule, its spec reference and the fix.
//!
//! It works on trace events only, so the same check runs on a live CA
//! (`EmulatedCa::verify`, in the control layer above) and on a trace file
//! (`certadm-emu lint TRACE`).
#![forbid(unsafe_code)]

use crate::core::{Call, HRESULT};
use crate::event::{Event, Field, Traced};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// How bad a violation is (`"error"`, `"warning"` in JSON).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A real CA would misbehave or a backup would be lost.
    Error,
    /// Sloppy but survivable (a leak, a missing step).
    Warning,
}

/// One rule of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Short id, e.g. `CB01`.
    pub id: &'static str,
    /// Name.
    pub name: &'static str,
    /// Severity.
    pub severity: Severity,
    /// Where the rule comes from.
    pub spec: &'static str,
    /// What to do instead.
    pub fix: &'static str,
    /// True for the rules that say a client did not clean up after itself.
    pub cleanup: bool,
}

macro_rules! rules {
    ($(
        $c:ident = $id:literal, $name:literal, $sev:ident, cleanup: $cleanup:literal,
            spec: $spec:literal,
            fix: $fix:literal;
    )*) => {
        $(
            /// See the `name`, `spec` and `fix` fields.
            pub const $c: Rule = Rule {
                id: $id,
                name: $name,
                severity: Severity::$sev,
                spec: $spec,
                fix: $fix,
                cleanup: $cleanup,
            };
        )*

        /// Every rule, in the order of the documentation.
        pub const RULES: &[Rule] = &[$($c),*];
    };
}

rules! {
    PREPARE_NEVER_ENDED = "CB01", "backup prepared but never ended", Error, cleanup: true,
        spec: "DOC:CertSrvBackupEnd \"For every successful call to CertSrvBackupPrepare, there should be a call to CertSrvBackupEnd\" (spec §5.10)",
        fix: "call CertSrvBackupEnd on every path, including error paths; until then no other backup can run on the CA";
    FILE_NOT_CLOSED = "CB02", "file opened but not closed", Warning, cleanup: true,
        spec: "DOC:CertSrvBackupClose \"For every successful call to CertSrvBackupOpenFile, there should be a subsequent call to CertSrvBackupClose\" (spec §5.7)",
        fix: "call CertSrvBackupClose after the read loop, also when a read fails";
    BUFFER_NOT_FREED = "CB03", "list buffer never freed", Warning, cleanup: true,
        spec: "DOC:CertSrvBackupFree; DOC:Backup step 15 (spec §5.11)",
        fix: "pass every list returned by the Get... functions to CertSrvBackupFree (after End is fine)";
    BAD_FREE = "CB04", "buffer freed twice or not ours", Error, cleanup: true,
        spec: "DOC:CertSrvBackupFree (spec §5.11)",
        fix: "free each list exactly once, and only lists returned by certbcli functions";
    NAME_WITH_PREFIX = "CB05", "file name passed with its CSBFT prefix", Error, cleanup: false,
        spec: "DOC:CertSrvBackupOpenFileW: names are passed \"with the single-WCHAR CSBFT_* prefix stripped\" (spec §4 rule 8)",
        fix: "skip the first WCHAR of each list entry before CertSrvBackupOpenFileW";
    NOT_READ_TO_EOF = "CB06", "listed file not read to end of file before End", Error, cleanup: false,
        spec: "DOC:Backup steps 6-10; MS-CSRA 3.1.4.1.25 (spec §5.9)",
        fix: "read every file from GetDatabaseNames and GetBackupLogs until CertSrvBackupRead returns fewer bytes than asked (0 at EOF)";
    TRUNCATE_EARLY = "CB07", "logs truncated before every file was secured", Error, cleanup: true,
        spec: "DOC:CertSrvBackupTruncateLogs warning: truncating without a complete backup makes it unrestorable (spec §5.9, §6.2 row 7)",
        fix: "call CertSrvBackupTruncateLogs only after every database and log file was copied completely, and never after a failed copy";
    LOCATIONS_NOT_FETCHED = "CB08", "database locations not saved in a full backup", Warning, cleanup: false,
        spec: "DOC:Backup step 5 \"Save the information retrieved to an application-specific location\" (spec §8.1, §8.2)",
        fix: "call CertSrvRestoreGetDatabaseLocationsW in every full backup and keep the list (certbkxp.dat): the restore needs it";
    USE_AFTER_END = "CB09", "handle used after End", Error, cleanup: false,
        spec: "DOC:CertSrvBackupEnd releases the HCSBC; MS-CSRA \"BackupEnd MUST be the final API for a backup session\" (spec §6.2 row 8)",
        fix: "do not call anything with a context after CertSrvBackupEnd/CertSrvRestoreEnd; stop at the first failure";
    REGISTER_WITHOUT_COMPLETE = "CR01", "restore registered without RegisterComplete", Error, cleanup: true,
        spec: "DOC:CertSrvRestoreRegisterComplete \"If a registered restore operation is not completed, Certificate Services will not start\" (spec §5.16)",
        fix: "call CertSrvRestoreRegisterComplete (S_OK, or the failure) after every successful CertSrvRestoreRegister";
    RESTORE_NEVER_ENDED = "CR02", "restore prepared but never ended", Warning, cleanup: true,
        spec: "DOC:CertSrvRestoreEnd \"For every successful call to CertSrvRestorePrepare, there should be a call to CertSrvRestoreEnd\" (spec §5.17)",
        fix: "call CertSrvRestoreEnd on every path";
    FILES_UNDER_RUNNING_CA = "CR03", "files written under a running CA", Error, cleanup: false,
        spec: "CMDLETS Restore-CARoleService 0x80070020; DOC:Restore step 3 (spec §6.2 row 13)",
        fix: "stop Certificate Services (CertSrvServerControlW CSCONTROL_SHUTDOWN) before copying files into its directories";
    RESTORE_LOST_DATA = "CR04", "restore ended before the last generation its backup listed", Error, cleanup: false,
        spec: "ESE: JET_DBINFOMISC genMaxRequired and JET_BKINFO genLow/genHigh record a backup's log range; JetExternalRestore replays genLow..genHigh; JET_errMissingRestoreLogFiles \"Some restore log files are missing\" (spec §5.14, §8.5; COVERAGE.md section C, item 45)",
        fix: "restore every log CertSrvBackupGetBackupLogsW listed in each set (copy each to the end of the file) and register genHigh = the last of them; a set that ends early restores a CA without the transactions of its missing logs";
    EMULATOR_PANIC = "EM01", "the emulator panicked", Error, cleanup: false,
        spec: "not a client fault: a panic inside certadm-emu, turned into E_UNEXPECTED at the ABI boundary",
        fix: "report it to certadm-emu with the trace; the client saw E_UNEXPECTED (0x8000FFFF)";
}

/// A rule broken at a place in the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule.
    pub rule: Rule,
    /// Position of the call in the trace.
    pub seq: u64,
    /// The call, rendered like C with its result.
    pub call: String,
    /// What exactly happened.
    pub detail: String,
}

/// The checker's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Violations in trace order.
    pub violations: Vec<Violation>,
    /// Calls checked.
    pub calls: u64,
    /// The trace, rendered, for the report text.
    pub trace: Vec<String>,
}

impl Report {
    /// True when no rule was broken.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// Violations of one rule.
    pub fn of(&self, rule: Rule) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| v.rule.id == rule.id)
            .collect()
    }

    /// Violations that say the client left something behind.
    pub fn cleanup_violations(&self) -> Vec<&Violation> {
        self.violations.iter().filter(|v| v.rule.cleanup).collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return writeln!(
                f,
                "certadm-emu conformance: no violation in {} calls",
                self.calls
            );
        }
        writeln!(
            f,
            "certadm-emu conformance: {} violation(s) in {} calls",
            self.violations.len(),
            self.calls
        )?;
        for v in &self.violations {
            let sev = match v.rule.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            writeln!(
                f,
                "- [{sev}] {} {} at call #{}",
                v.rule.id, v.rule.name, v.seq
            )?;
            writeln!(f, "    call:   {}", v.call)?;
            writeln!(f, "    detail: {}", v.detail)?;
            writeln!(f, "    rule:   {}", v.rule.spec)?;
            writeln!(f, "    fix:    {}", v.rule.fix)?;
        }
        if !self.trace.is_empty() {
            writeln!(f, "trace:")?;
            for t in &self.trace {
                writeln!(f, "  {t}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default, Clone)]
struct FileState {
    size: Option<u64>,
    read: u64,
}

/// Where a call is: its position in the trace and its function (written when reported).
type At = (u64, Call);

/// An open session: small, so that a session that lists and opens nothing (a Prepare
/// and its End) costs no allocation.
#[derive(Debug, Clone)]
struct Sess {
    restore: bool,
    full: bool,
    locations: bool,
    prepared_at: At,
    registered: Option<At>,
    /// The files listed and opened, from the first list or open on.
    files: Option<Box<Files>>,
}

#[derive(Debug, Clone, Default)]
struct Files {
    open: Option<(String, At)>,
    listed: BTreeMap<String, FileState>,
}

impl Sess {
    fn files(&mut self) -> &mut Files {
        self.files.get_or_insert_with(Default::default)
    }

    /// The file open now, if any.
    fn open(&self) -> Option<&(String, At)> {
        self.files.as_ref()?.open.as_ref()
    }

    fn unsecured(&self) -> Vec<String> {
        let Some(files) = &self.files else {
            return Vec::new();
        };
        files
            .listed
            .iter()
            .filter(|(_, f)| f.size.is_none_or(|s| f.read < s))
            .map(|(n, f)| match f.size {
                Some(s) => format!("{n} ({} of {s} bytes read)", f.read),
                None => format!("{n} (never opened)"),
            })
            .collect()
    }
}

fn strip(s: &str) -> String {
    s.to_lowercase()
}

/// A hasher for handles and buffer addresses (words the emulator made, not chosen by an
/// adversary): the emulator's word mixer ([`mix64`](crate::core::mix::mix64)) instead of
/// SipHash on every call.
#[derive(Debug, Default, Clone, Copy)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        crate::core::mix::mix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(17) ^ n;
    }
}

type Words = BuildHasherDefault<WordHasher>;

/// Open sessions by handle: a map that keeps the session prepared last beside the others,
/// so that a client with one session open (the usual case) prepares and ends it without
/// hashing.
#[derive(Debug, Default, Clone)]
struct Sessions {
    last: Option<(u64, Sess)>,
    others: HashMap<u64, Sess, Words>,
}

impl Sessions {
    /// Opens `s` under `h` (replacing a session under the same handle).
    #[inline]
    fn insert(&mut self, h: u64, s: Sess) {
        if !self.others.is_empty() {
            self.others.remove(&h);
        }
        if let Some((old, sess)) = self.last.replace((h, s)) {
            if old != h {
                self.others.insert(old, sess);
            }
        }
    }

    #[inline]
    fn get(&self, h: u64) -> Option<&Sess> {
        match &self.last {
            Some((l, s)) if *l == h => Some(s),
            _ if self.others.is_empty() => None,
            _ => self.others.get(&h),
        }
    }

    #[inline]
    fn get_mut(&mut self, h: u64) -> Option<&mut Sess> {
        match &mut self.last {
            Some((l, s)) if *l == h => Some(s),
            _ if self.others.is_empty() => None,
            _ => self.others.get_mut(&h),
        }
    }

    fn contains(&self, h: u64) -> bool {
        self.get(h).is_some()
    }

    #[inline]
    fn remove(&mut self, h: u64) -> Option<Sess> {
        match &self.last {
            Some((l, _)) if *l == h => self.last.take().map(|(_, s)| s),
            _ if self.others.is_empty() => None,
            _ => self.others.remove(&h),
        }
    }

    /// Every open session, in no order.
    fn iter(&self) -> impl Iterator<Item = (&u64, &Sess)> {
        self.last
            .iter()
            .map(|(h, s)| (h, s))
            .chain(self.others.iter())
    }
}

/// The handles most recently ended (use after End is detected for these): a ring, so
/// that an End costs a store. It is searched only when a call fails with `E_HANDLE`; a
/// handle ended and then returned again by a Prepare is live while its new session is
/// open (see [`Checker::ended`]).
#[derive(Debug, Default, Clone)]
struct Recent {
    /// Filled up to [`Recent::CAP`], then each handle overwrites the oldest, at `oldest`.
    ring: Vec<u64>,
    oldest: usize,
}

impl Recent {
    const CAP: usize = 4096;
    fn contains(&self, h: u64) -> bool {
        self.ring.contains(&h)
    }
    #[inline]
    fn insert(&mut self, h: u64) {
        if self.ring.len() < Self::CAP {
            self.ring.push(h);
        } else {
            self.ring[self.oldest] = h;
            self.oldest = (self.oldest + 1) % Self::CAP;
        }
    }
}

/// Most violations kept; later ones are dropped (the trace still holds their calls).
pub const MAX_VIOLATIONS: usize = 1000;

/// The checker, fed one event at a time: its memory is bounded by what is open
/// (sessions, buffers), not by the length of the trace.
#[derive(Debug, Default, Clone)]
pub(crate) struct Checker {
    /// Open sessions by handle (reported in handle order).
    sessions: Sessions,
    /// Handles ended lately. One that is among the open sessions again was returned anew
    /// by a Prepare: it is live, not ended.
    ended: Recent,
    /// Live list buffers by address (reported in address order).
    buffers: HashMap<u64, At, Words>,
    violations: Vec<Violation>,
    calls: u64,
    last_seq: u64,
}

/// What a violation names an earlier call by (cheap: no formatting on the call path).
fn at(e: &impl Traced) -> At {
    (e.seq(), e.call())
}

/// Records a violation at `e`. Past [`MAX_VIOLATIONS`] nothing is kept, so nothing is
/// made: neither the rendered call nor the `detail`.
fn push(v: &mut Vec<Violation>, rule: Rule, e: &impl Traced, detail: impl FnOnce() -> String) {
    if v.len() >= MAX_VIOLATIONS {
        return;
    }
    v.push(Violation {
        rule,
        seq: e.seq(),
        call: e.render(),
        detail: detail(),
    });
}

/// A violation found at the end of the trace (something still open), placed after its
/// last call.
fn push_at_end(v: &mut Vec<Violation>, rule: Rule, seq: u64, detail: String) {
    v.push(Violation {
        rule,
        seq,
        call: format!("#{seq} (end of trace)() -> {}", HRESULT::S_OK),
        detail,
    });
}

impl Checker {
    /// Checks one event.
    #[inline]
    pub(crate) fn feed(&mut self, e: &impl Traced) {
        let (seq, count, hr) = (e.seq(), e.count(), e.hr());
        self.calls += count;
        self.last_seq = self.last_seq.max(seq + count.saturating_sub(1));
        let Checker {
            sessions,
            ended,
            buffers,
            violations,
            ..
        } = self;
        let ok = hr.is_ok();
        let h = e.handle().unwrap_or(0);
        let message = || e.message().map(Cow::into_owned).unwrap_or_default();
        if hr == HRESULT::E_UNEXPECTED
            && e.message()
                .is_some_and(|m| m.contains("internal emulator panic"))
        {
            push(violations, EMULATOR_PANIC, e, message);
        }
        if hr == HRESULT::ERROR_SHARING_VIOLATION {
            push(violations, FILES_UNDER_RUNNING_CA, e, message);
        }
        if hr == HRESULT::E_HANDLE && h != 0 && ended.contains(h) && !sessions.contains(h) {
            push(violations, USE_AFTER_END, e, || {
                format!("context {h:#x} was ended before this call")
            });
        }
        let call = e.call();
        match call {
            Call::BackupPrepare | Call::RestorePrepare if ok => {
                if let Some(hv) = e.out_u64(Field::Hbc) {
                    sessions.insert(
                        hv,
                        Sess {
                            restore: call == Call::RestorePrepare,
                            full: e.arg_u64(Field::BackupFlags) == Some(1),
                            locations: false,
                            prepared_at: at(e),
                            registered: None,
                            files: None,
                        },
                    );
                }
            }
            Call::BackupGetDatabaseNames | Call::BackupGetBackupLogs if ok => {
                if let (Some(s), Some(l)) = (sessions.get_mut(h), e.out_list(Field::List)) {
                    for entry in l {
                        let name: String = entry.chars().skip(1).collect();
                        s.files().listed.entry(strip(&name)).or_default();
                    }
                }
            }
            Call::RestoreGetDatabaseLocations if ok => {
                if let Some(s) = sessions.get_mut(h) {
                    s.locations = true;
                }
            }
            Call::BackupOpenFile => {
                let name = e.arg_str(Field::AttachmentName).unwrap_or("");
                let mut chars = name.chars();
                let first = chars.next();
                if first.is_some_and(|c| "D!%".contains(c) || ('\u{80}'..='\u{8F}').contains(&c))
                    && chars.as_str().starts_with("\\\\")
                {
                    push(violations, NAME_WITH_PREFIX, e, || {
                        format!(
                            "{name:?} starts with the type character {:?}",
                            first.unwrap()
                        )
                    });
                }
                if ok {
                    if let Some(s) = sessions.get_mut(h) {
                        let size = e.out_u64(Field::FileSize).unwrap_or(0);
                        let files = s.files();
                        let f = files.listed.entry(strip(name)).or_default();
                        f.size = Some(size);
                        f.read = 0;
                        files.open = Some((strip(name), at(e)));
                    }
                }
            }
            Call::BackupRead if ok => {
                if let Some(Files {
                    open: Some((name, _)),
                    listed,
                }) = sessions.get_mut(h).and_then(|s| s.files.as_deref_mut())
                {
                    let n = e.out_u64(Field::Read).unwrap_or(0);
                    if let Some(f) = listed.get_mut(name) {
                        f.read += n;
                    }
                }
            }
            // A failed Close still counts as the client's attempt (End closes implicitly).
            Call::BackupClose => {
                if let Some(files) = sessions.get_mut(h).and_then(|s| s.files.as_deref_mut()) {
                    files.open = None;
                }
            }
            Call::BackupTruncateLogs => {
                if let Some(s) = sessions.get(h) {
                    let missing = s.unsecured();
                    if !missing.is_empty() || hr == HRESULT::E_UNEXPECTED {
                        push(violations, TRUNCATE_EARLY, e, || {
                            if missing.is_empty() {
                                message()
                            } else {
                                format!("not secured: {}", missing.join(", "))
                            }
                        });
                    }
                }
            }
            Call::BackupEnd if ok => {
                if let Some(s) = sessions.remove(h) {
                    if let Some((name, (_, call))) = s.open() {
                        push(violations, FILE_NOT_CLOSED, e, || {
                            format!("{name} opened by {call} was still open at End")
                        });
                    }
                    let missing = s.unsecured();
                    if !missing.is_empty() {
                        push(violations, NOT_READ_TO_EOF, e, || {
                            format!("not read to end of file: {}", missing.join(", "))
                        });
                    }
                    if s.full && !s.locations {
                        push(violations, LOCATIONS_NOT_FETCHED, e, || {
                            "this full backup never called CertSrvRestoreGetDatabaseLocationsW"
                                .into()
                        });
                    }
                }
                ended.insert(h);
            }
            Call::RestoreRegister | Call::RestoreRegisterThroughFile if ok => {
                if let Some(s) = sessions.get_mut(h) {
                    s.registered = Some(at(e));
                }
            }
            Call::RestoreRegisterComplete if ok => {
                if let Some(s) = sessions.get_mut(h) {
                    s.registered = None;
                }
            }
            Call::RestoreEnd if ok => {
                if let Some(s) = sessions.remove(h) {
                    if let Some((seq, call)) = s.registered {
                        push(violations, REGISTER_WITHOUT_COMPLETE, e, || {
                            format!("registered at call #{seq} ({call}) and ended without CertSrvRestoreRegisterComplete")
                        });
                    }
                }
                ended.insert(h);
            }
            Call::BackupFree => {
                let p = e.arg_u64(Field::Pv).unwrap_or(0);
                if ok {
                    buffers.remove(&p);
                } else {
                    push(violations, BAD_FREE, e, message);
                }
            }
            _ => {}
        }
        if ok {
            if let Some(p) = e.out_u64(Field::Buffer) {
                buffers.insert(p, at(e));
            }
        }
    }

    /// A hard recovery at a service start (not a call: the control API starts the service)
    /// restored a chain that ends before the end of its backup set (CR04). Placed after the
    /// last call so far; `detail` says what is missing.
    pub(crate) fn restore_lost_data(&mut self, detail: String) {
        let seq = self.last_seq;
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(Violation {
                rule: RESTORE_LOST_DATA,
                seq,
                call: format!(
                    "#{seq} (service start: hard recovery)() -> {}",
                    HRESULT::S_OK
                ),
                detail,
            });
        }
    }

    /// The report so far. `finished` adds what is still open as violations; `trace` is
    /// rendered at the end of the report text.
    pub(crate) fn report(&self, finished: bool, trace: &[Event]) -> Report {
        let mut v = self.violations.clone();
        let mut sessions: Vec<_> = self.sessions.iter().collect();
        sessions.sort_unstable_by_key(|(h, _)| **h);
        let mut buffers: Vec<_> = self.buffers.iter().collect();
        buffers.sort_unstable_by_key(|(p, _)| **p);
        if finished {
            let last = self.last_seq;
            for (h, s) in sessions {
                if s.restore {
                    if let Some((seq, call)) = &s.registered {
                        push_at_end(
                            &mut v,
                            REGISTER_WITHOUT_COMPLETE,
                            last,
                            format!("registered at call #{seq} ({call}) and never completed"),
                        );
                    }
                    push_at_end(
                        &mut v,
                        RESTORE_NEVER_ENDED,
                        last,
                        format!(
                            "restore context {h:#x} from call #{} ({}) is still open",
                            s.prepared_at.0, s.prepared_at.1
                        ),
                    );
                } else {
                    push_at_end(
                        &mut v,
                        PREPARE_NEVER_ENDED,
                        last,
                        format!(
                            "backup context {h:#x} from call #{} ({}) is still open",
                            s.prepared_at.0, s.prepared_at.1
                        ),
                    );
                }
            }
            for (p, (seq, call)) in buffers {
                push_at_end(
                    &mut v,
                    BUFFER_NOT_FREED,
                    last,
                    format!("buffer {p:#x} from call #{seq} ({call})"),
                );
            }
        }
        v.sort_by_key(|x| x.seq);
        Report {
            violations: v,
            calls: self.calls,
            trace: trace.iter().map(|e| e.render()).collect(),
        }
    }
}

/// Checks a trace. `finished` says the trace is complete, so sessions and buffers
/// still open at its end are reported.
pub fn check(events: &[Event], finished: bool) -> Report {
    let mut c = Checker::default();
    for e in events {
        c.feed(e);
    }
    c.report(finished, events)
}

/// Parses a trace file (JSON lines, as `CERTADM_EMU_TRACE` writes them): one [`Event`] a
/// line, blank lines skipped; an error names its line.
pub fn parse_trace(text: &str) -> Result<Vec<Event>, String> {
    crate::event::parse_lines(text)
}

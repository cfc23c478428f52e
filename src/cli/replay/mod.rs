//! `certadm-emu replay TRACE`: re-issues a recorded transcript (the recording
//! certadm.dll's file, `windows/recorder`, or a trace of the emulator itself,
//! `CERTADM_EMU_TRACE` / `demo --trace`) against an emulated CA built from the facts it
//! records, through the `extern "system"` exports, and reports every divergence.
//!
//! * The machine: names and directories from the recording header and from the paths the
//!   calls show; size and history from flags (`--records`, `--seed`, `--log-capacity`).
//! * The calls: each recorded client (thread) gets a thread; recorded handles and list
//!   buffers map to the live ones; names the client opens map to the live list's entry at
//!   the same place; log generations map by a constant offset.
//! * What happened outside certadm.dll (a stopped service, wiped files, an earlier full
//!   backup, log generations the CA wrote between two transcripts) comes from
//!   `{"control": ...}` lines, `--before ACTION`, or is inferred from the calls
//!   (`--no-infer` turns that off). Every such action is listed in the report.
//! * Divergences: HRESULT, out-value shapes (entries, type characters, paths, `cbSize`),
//!   sizes (only with `--exact-sizes`), EOF behaviour, contexts and lists left open. The
//!   kinds that must differ are classified ([`report::Expected`]) and never fail.
//!
//! `docs/RECORDING.md` and the README ("Is it faithful?") describe it for users.

mod facts;
mod input;
mod live;
mod report;

use certadm_emu::abi::call::WStr;
use certadm_emu::abi::held::RawRegistration;
use certadm_emu::api::faults::FaultSchedule;
use certadm_emu::ca::ServiceState;
use certadm_emu::client::{backup_to_dir, BackupOptions};
use certadm_emu::core::consts::{CSBACKUP_TYPE_FULL, CSBACKUP_TYPE_LOGS_ONLY};
use certadm_emu::core::{Call, ListKind, HRESULT};
use certadm_emu::event::{Event, Value};
use certadm_emu::machine::Identity;
use certadm_emu::session::Hcsbc;
use certadm_emu::EmulatedCa;
use facts::{file_name, list_entry, log_generation, parent, with_log_generation};
use input::{Action, Item, Rec, Recording};
use live::{Clients, Live, Out, Request};
use report::{ActionTaken, Divergence, Expected, Origin, RecordingInfo, Report};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

/// `certadm-emu replay` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// The transcript: a file of the recording certadm.dll, or a trace of the emulator
    /// (CERTADM_EMU_TRACE, demo --trace).
    pub trace: PathBuf,
    /// Print the report as JSON (for CI).
    #[arg(long)]
    pub json: bool,
    /// The emulated machine and CA, where the transcript does not say or is overridden.
    #[command(flatten)]
    pub machine: facts::Overrides,
    /// Do this to the CA before the first call (repeatable, in order): stop, start, wipe,
    /// restore (= stop, wipe), crash, full-backup, roll-logs=N, issue=N, revoke=ID.
    #[arg(long = "before", value_name = "ACTION")]
    pub before: Vec<Action>,
    /// Do not infer what happened outside certadm.dll (stops, starts, an earlier full
    /// backup, log generations written between transcripts).
    #[arg(long)]
    pub no_infer: bool,
    /// Compare file sizes and bytes per read exactly (when the emulated CA reproduces the
    /// recorded one: --records, --seed, --log-capacity and control lines).
    #[arg(long)]
    pub exact_sizes: bool,
    /// Write the emulator's own trace of the replay (JSON lines) to this file.
    #[arg(long, value_name = "FILE")]
    pub emulator_trace: Option<PathBuf>,
}

/// A handle value no context ever has (the tag bit is clear): `E_HANDLE`.
const NOT_A_HANDLE: usize = 0xF0F0_F0F0_F0F0_F0F0;
/// An address that is no list of the emulator's.
static NOT_A_LIST: u8 = 0;
/// More generations than this between two lists is not history, it is another CA.
const MAX_ROLLS: i64 = 4096;
/// Largest buffer a replayed read gets.
const MAX_READ: u64 = 256 << 20;
/// Buffer of a read on no file the replay knows (it fails before touching it).
const UNKNOWN_READ: u64 = 64 << 10;
/// Most calls one folded line (or the reads to a larger file's end) replays.
const MAX_READS: u64 = 1 << 24;

/// `certadm-emu replay`.
pub fn run(args: ReplayArgs) -> Result<(), String> {
    for var in ["CERTADM_EMU_SERVER", "CERTADM_EMU_CONFIG"] {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            return Err(format!(
                "{var} is set: replay builds its own emulated CA in this process; unset it"
            ));
        }
    }
    let text = std::fs::read_to_string(&args.trace)
        .map_err(|e| format!("{}: {e}", args.trace.display()))?;
    let recordings = input::parse(&text).map_err(|e| format!("{}: {e}", args.trace.display()))?;
    if recordings.iter().all(|r| r.calls().next().is_none()) {
        return Err(format!("{}: no call to replay", args.trace.display()));
    }
    if let Some(t) = &args.emulator_trace {
        let f = std::fs::File::create(t).map_err(|e| format!("{}: {e}", t.display()))?;
        certadm_emu::api::trace::set_sink(Some(Box::new(std::io::BufWriter::new(f))));
    }
    let report = replay(&args, &recordings);
    if args.emulator_trace.is_some() {
        certadm_emu::api::trace::set_sink(None);
    }
    let report = report?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{report}");
    }
    if report.clean {
        Ok(())
    } else {
        Err(format!("{} unexpected divergence(s)", report.unexpected))
    }
}

fn replay(args: &ReplayArgs, recordings: &[Recording]) -> Result<Report, String> {
    let (machine, notes) = facts::infer(recordings, &args.machine);
    let (recorded, _) = facts::infer(recordings, &facts::Overrides::default());
    let renames: Vec<Rename> = [
        (&recorded.dns.value, &machine.dns.value, true),
        (&recorded.netbios.value, &machine.netbios.value, true),
        (&recorded.ca_name.value, &machine.ca_name.value, false),
    ]
    .into_iter()
    .filter(|(a, b, _)| a != b)
    .map(|(a, b, host)| Rename {
        from: a.clone(),
        to: b.clone(),
        host,
    })
    .collect();
    let ca = EmulatedCa::builder()
        .config(machine.config())
        .server_name(&machine.netbios.value)
        .dns_name(&machine.dns.value)
        .identity(Identity {
            remote: machine.remote_caller.value,
            ..Identity::default()
        })
        .faults(FaultSchedule::default())
        .build()
        .map_err(|e| format!("building the emulated CA: {e}"))?;
    let report = Report {
        transcript: args.trace.display().to_string(),
        machine,
        recordings: Vec::new(),
        actions: Vec::new(),
        calls: 0,
        emulator_calls: 0,
        generation_offset: None,
        exact_sizes: args.exact_sizes,
        divergences: Vec::new(),
        unexpected: 0,
        expected: Default::default(),
        not_compared: report::NOT_COMPARED.to_vec(),
        notes,
        clean: true,
    };
    let mut r = Replayer {
        args,
        ca,
        clients: Clients::default(),
        report,
        gen_offset: None,
        names: HashMap::new(),
        renames,
        rec_index: 0,
        recorder: false,
        anonymised: false,
        handles: HashMap::new(),
        buffers: HashMap::new(),
        model: Model::default(),
        first_unexpected: None,
        snapshot: None,
    };
    let first_line = recordings
        .iter()
        .flat_map(|r| r.calls())
        .map(|c| c.line)
        .next()
        .unwrap_or(1);
    for a in &args.before {
        r.act(first_line, a.clone(), Origin::Flag, String::new());
    }
    for (i, rec) in recordings.iter().enumerate() {
        r.recording(i, rec);
    }
    r.report.generation_offset = r.gen_offset;
    r.report.finish();
    Ok(r.report)
}

/// A recorded context and its live counterpart.
struct Ctx {
    /// The live handle; `None` if the recorded Prepare succeeded and the live one did not.
    live: Option<Hcsbc>,
    /// The line where the live Prepare failed.
    lost_at: Option<usize>,
    /// `Some(full)` for a backup context, `None` for a restore context.
    backup: Option<bool>,
    /// The recorded client that opened it.
    client: u64,
    /// The file open on it.
    file: Option<FileTrack>,
}

/// A recorded list buffer's live counterpart.
#[derive(Clone, Copy)]
enum Buf {
    Live(usize),
    Freed,
    Lost(usize),
}

/// What the transcript implies is open: contexts and lists of the current recording.
#[derive(Default)]
struct Model {
    contexts: BTreeSet<u64>,
    buffers: BTreeSet<u64>,
    /// The state mismatches reported and not resolved since, per kind.
    shown: HashMap<&'static str, (usize, usize)>,
}

/// One side's reads of an open file.
#[derive(Debug, Clone, Default)]
struct Side {
    size: Option<u64>,
    total: u64,
    reads: u32,
    short_before_end: bool,
    zero_before_end: bool,
    data_after_end: bool,
}

impl Side {
    fn push(&mut self, n: u64, cb: u64) {
        let before = self.total;
        self.total += n;
        self.reads += 1;
        if let Some(size) = self.size {
            if before >= size && n > 0 {
                self.data_after_end = true;
            }
            if n > 0 && n < cb && self.total < size {
                self.short_before_end = true;
            }
            if n == 0 && before < size {
                self.zero_before_end = true;
            }
        }
    }

    fn at_end(&self) -> bool {
        self.size.is_some_and(|s| self.total >= s)
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "{} of {} bytes in {} read(s), {}",
            self.total,
            self.size.map_or("?".into(), |s| s.to_string()),
            self.reads,
            if self.at_end() {
                "to the end"
            } else {
                "stopped before the end"
            }
        );
        for (flag, what) in [
            (self.short_before_end, "a short read before the end"),
            (self.zero_before_end, "0 bytes before the end"),
            (self.data_after_end, "bytes after the end"),
        ] {
            if flag {
                s.push_str(", ");
                s.push_str(what);
            }
        }
        s
    }
}

/// An open file, read on both sides.
#[derive(Debug, Clone, Default)]
struct FileTrack {
    name: String,
    rec: Side,
    live: Side,
    line: usize,
    bytes_reported: bool,
    extra_reads: u32,
}

impl FileTrack {
    fn same_size(&self) -> bool {
        self.rec.size.is_some() && self.rec.size == self.live.size
    }
}

/// A recorded handle argument.
enum H {
    Null,
    Live(Hcsbc),
    Lost(usize),
    Unknown,
}

impl H {
    fn handle(&self) -> Hcsbc {
        match self {
            H::Live(h) => *h,
            _ => Hcsbc::from_raw(NOT_A_HANDLE).expect("non-zero"),
        }
    }

    fn optional(&self) -> Option<Hcsbc> {
        match self {
            H::Null => None,
            h => Some(h.handle()),
        }
    }

    fn note(&self, n: u64) -> Option<String> {
        match self {
            H::Lost(line) => Some(format!(
                "handle {n:#x} has no emulator counterpart: its Prepare diverged at line {line}"
            )),
            H::Unknown if n != 0 => Some(format!(
                "handle {n:#x} was never returned in this recording: passed as an invalid handle"
            )),
            _ => None,
        }
    }
}

struct Replayer<'a> {
    args: &'a ReplayArgs,
    ca: EmulatedCa,
    clients: Clients,
    report: Report,
    /// emulator generation = recorded generation + offset.
    gen_offset: Option<i64>,
    /// A recorded list entry (lower case, with and without its type character) and the
    /// live entry at the same place.
    names: HashMap<String, String>,
    /// Recorded names and the live names flags gave the machine.
    renames: Vec<Rename>,
    rec_index: usize,
    recorder: bool,
    anonymised: bool,
    handles: HashMap<u64, Ctx>,
    buffers: HashMap<u64, Buf>,
    model: Model,
    first_unexpected: Option<usize>,
    /// The CA's files as a wipe found them: a start whose recovery fails for want of the
    /// files a restore would have copied (they are not in a transcript) puts them back.
    snapshot: Option<Snapshot>,
}

/// Copies of the CA's files.
struct Snapshot {
    _dir: tempfile::TempDir,
    files: Vec<(PathBuf, PathBuf)>,
}

impl Snapshot {
    fn take(ca: &EmulatedCa) -> Result<Snapshot, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut files = Vec::new();
        for (i, f) in ca.files().into_iter().enumerate() {
            let copy = dir.path().join(i.to_string());
            std::fs::copy(&f.host_path, &copy)
                .map_err(|e| format!("{}: {e}", f.host_path.display()))?;
            files.push((f.host_path, copy));
        }
        Ok(Snapshot { _dir: dir, files })
    }

    fn put_back(&self) -> Result<(), String> {
        for (orig, copy) in &self.files {
            if let Some(p) = orig.parent() {
                std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
            }
            std::fs::copy(copy, orig).map_err(|e| format!("{}: {e}", orig.display()))?;
        }
        Ok(())
    }
}

fn arg_u64(e: &Event, k: &str) -> u64 {
    e.arg(k).and_then(Value::as_u64).unwrap_or(0)
}

fn out_u64(e: &Event, k: &str) -> Option<u64> {
    e.out(k).and_then(Value::as_u64)
}

/// A name of the transcript and the one flags gave the emulated machine.
struct Rename {
    from: String,
    to: String,
    /// A host name: a `.` belongs to the name (`HOST` is not replaced in `host.example`).
    host: bool,
}

/// Replaces each whole-word occurrence of a name (ASCII case-insensitive; letters,
/// digits and `-` make words, and `.` too for host names).
fn replace_words(s: &str, renames: &[Rename]) -> String {
    let mut out = s.to_string();
    for Rename { from, to, host } in renames {
        if from.is_empty() {
            continue;
        }
        let lower = out.to_ascii_lowercase();
        let f = from.to_ascii_lowercase();
        let mut res = String::new();
        let mut i = 0;
        while let Some(p) = lower[i..].find(&f) {
            let at = i + p;
            let end = at + f.len();
            let word = |c: Option<char>| {
                c.is_some_and(|c| c.is_alphanumeric() || c == '-' || (*host && c == '.'))
            };
            if !word(lower[..at].chars().next_back()) && !word(lower[end..].chars().next()) {
                res.push_str(&out[i..at]);
                res.push_str(to);
            } else {
                res.push_str(&out[i..end]);
            }
            i = end;
        }
        res.push_str(&out[i..]);
        out = res;
    }
    out
}

/// `total` bytes read by `count` folded reads of `cb`: full reads, then the rest, then 0s.
fn split_reads(total: u64, count: u64, cb: u64) -> Vec<u64> {
    let mut v = Vec::new();
    let mut left = total;
    for _ in 0..count {
        let n = left.min(cb);
        v.push(n);
        left -= n;
    }
    if let Some(last) = v.last_mut() {
        *last += left;
    }
    v
}

fn prefix_char(k: Option<u32>) -> String {
    k.and_then(char::from_u32)
        .map(String::from)
        .unwrap_or_default()
}

fn show_entry(k: Option<u32>) -> String {
    match k {
        Some(k) if (0x20..0x7F).contains(&k) => format!("'{}'", k as u8 as char),
        Some(k) => format!("0x{k:x}"),
        None => "none".into(),
    }
}

impl Replayer<'_> {
    // ----- bookkeeping ---------------------------------------------------------------

    fn diverge(
        &mut self,
        rec: &Rec,
        what: impl Into<String>,
        expected: impl ToString,
        actual: impl ToString,
        because: Option<Expected>,
        detail: Option<String>,
    ) {
        let mut detail = detail;
        if because.is_none() {
            match self.first_unexpected {
                Some(l) if l != rec.line => {
                    let after = format!("after the divergence at line {l}");
                    detail = Some(detail.map_or(after.clone(), |d| format!("{d}; {after}")));
                }
                Some(_) => {}
                None => self.first_unexpected = Some(rec.line),
            }
        }
        self.report.divergences.push(Divergence {
            line: rec.line,
            seq: rec.event.seq,
            call: rec.event.call.name(),
            recorded: rec.event.render(),
            what: what.into(),
            expected: expected.to_string(),
            actual: actual.to_string(),
            expected_because: because,
            detail,
        });
    }

    fn run(&mut self, client: u64, req: Request) -> Live {
        self.report.emulator_calls += 1;
        self.clients.run((self.rec_index, client), req)
    }

    fn rename(&self, s: &str) -> String {
        replace_words(s, &self.renames)
    }

    fn wstr(&self, e: &Event, k: &str) -> Option<WStr> {
        match e.arg(k) {
            Some(Value::Str(s)) => Some(WStr::new(&self.rename(s))),
            _ => None,
        }
    }

    fn hbc(&self, e: &Event) -> (H, u64) {
        let n = match e.arg("hbc") {
            Some(v) => v.as_u64().unwrap_or(0),
            None => 0,
        };
        if n == 0 {
            return (H::Null, 0);
        }
        let h = match self.handles.get(&n) {
            Some(c) => match c.live {
                Some(h) => H::Live(h),
                None => H::Lost(c.lost_at.unwrap_or(0)),
            },
            None => H::Unknown,
        };
        (h, n)
    }

    /// True if the call reaches the emulated machine (a server name that names it, or a
    /// handle).
    fn ours(&self, e: &Event) -> bool {
        match e.arg("pwszServerName") {
            Some(Value::Str(s)) => {
                let host = self.rename(facts::server_host(s));
                let m = &self.report.machine;
                host.eq_ignore_ascii_case(&m.netbios.value)
                    || host.eq_ignore_ascii_case(&m.dns.value)
            }
            Some(_) => false,
            None => true,
        }
    }

    /// Compares the HRESULTs; true if equal.
    fn compare_hr(&mut self, rec: &Rec, l: &Live, note: Option<String>) -> bool {
        let e = &rec.event;
        if e.hr == l.hr {
            return true;
        }
        let nulls = e.args.0.iter().any(|(_, v)| *v == Value::Null)
            || rec
                .rstmap
                .as_ref()
                .is_some_and(|m| m.iter().any(|(a, b)| a.is_none() || b.is_none()));
        let replaced = e
            .args
            .0
            .iter()
            .any(|(_, v)| v.as_str().is_some_and(|s| s.contains('\u{FFFD}')));
        let because = if e.call == Call::BackupFree && self.recorder && e.hr == HRESULT::S_OK {
            Some(Expected::RecorderCannotSee)
        } else if (e.hr == HRESULT::E_POINTER && !nulls)
            || (self.recorder && replaced && e.hr == HRESULT::E_INVALIDARG)
        {
            Some(Expected::NotRecorded)
        } else {
            None
        };
        let detail = match (l.message.clone(), note) {
            (Some(m), Some(n)) => Some(format!("{n}; emulator: {m}")),
            (Some(m), None) => Some(format!("emulator: {m}")),
            (None, n) => n,
        };
        self.diverge(rec, "HRESULT", e.hr, l.hr, because, detail);
        false
    }

    fn act(&mut self, line: usize, a: Action, origin: Origin, mut why: String) {
        if a == Action::Restore && self.ca.service() != ServiceState::Stopped {
            if let Err(e) = self.ca.stop() {
                self.push_action(line, a, origin, why, Some(e.to_string()));
                return;
            }
        }
        if matches!(a, Action::Wipe | Action::Restore)
            && self.ca.service() == ServiceState::Stopped
            && !self.ca.files().is_empty()
        {
            self.snapshot = Snapshot::take(&self.ca).ok();
        }
        if a == Action::Start {
            let error = match self.ca.start() {
                Ok(_) => {
                    self.snapshot = None;
                    None
                }
                // A registration never completed holds the start: the CA waits, suspended,
                // as the recorded one would.
                Err(e) if self.ca.service() == ServiceState::Suspended => {
                    Some(format!("{} ({e})", e.hresult()))
                }
                Err(e) => match self.snapshot.take() {
                    None => Some(format!("{} ({e})", e.hresult())),
                    Some(snap) => {
                        let note = format!(
                            "recovery failed with {}: the files a restore copies are not in a \
                             transcript, so the CA restarts from the files it had before the \
                             wipe, without the registration",
                            e.hresult()
                        );
                        why = if why.is_empty() {
                            note
                        } else {
                            format!("{why}; {note}")
                        };
                        snap.put_back()
                            .and_then(|()| {
                                self.ca.clear_restore_marker().map_err(|e| e.to_string())
                            })
                            .and_then(|()| self.ca.start().map(drop).map_err(|e| e.to_string()))
                            .err()
                    }
                },
            };
            self.push_action(line, a, origin, why, error);
            return;
        }
        let ca = &self.ca;
        let stop = || -> Result<(), String> {
            if ca.service() != ServiceState::Stopped {
                ca.stop().map_err(|e| e.to_string())?;
            }
            Ok(())
        };
        let wipe = || -> Result<(), String> {
            if ca.service() != ServiceState::Stopped {
                return Err("the CA is running: stop it first".into());
            }
            ca.wipe_files().map_err(|e| e.to_string())
        };
        let r: Result<(), String> = match &a {
            Action::Stop => stop(),
            Action::Start => Ok(()), // above
            Action::Wipe => wipe(),
            Action::Restore => stop().and_then(|()| wipe()),
            Action::Crash => {
                ca.crash();
                Ok(())
            }
            Action::FullBackup => tempfile::tempdir()
                .map_err(|e| e.to_string())
                .and_then(|d| {
                    backup_to_dir(
                        ca.server_name(),
                        d.path(),
                        &BackupOptions::default(),
                        &mut |_, _, _| {},
                    )
                    .map(drop)
                    .map_err(|e| e.to_string())
                }),
            Action::RollLogs(n) => (0..*n).try_for_each(|_| {
                ca.issue(1).map_err(|e| e.to_string())?;
                ca.roll_log().map(drop).map_err(|e| e.to_string())
            }),
            Action::Issue(n) => ca.issue(*n).map(drop).map_err(|e| e.to_string()),
            Action::Revoke(id) => ca.revoke(*id).map_err(|e| e.to_string()),
        };
        self.push_action(line, a, origin, why, r.err());
    }

    fn push_action(
        &mut self,
        line: usize,
        a: Action,
        origin: Origin,
        why: String,
        error: Option<String>,
    ) {
        self.report.actions.push(ActionTaken {
            line,
            action: a.to_string(),
            origin,
            why,
            error,
        });
    }

    // ----- recordings ----------------------------------------------------------------

    fn recording(&mut self, i: usize, rec: &Recording) {
        self.rec_index = i;
        self.recorder = rec.header.is_some();
        self.anonymised = rec.header.as_ref().and_then(|h| h.anonymised) == Some(true);
        self.handles.clear();
        self.buffers.clear();
        self.model = Model::default();
        let calls: u64 = rec.calls().map(|c| c.event.count.max(1)).sum();
        self.report.recordings.push(RecordingInfo {
            first_line: rec.first_line,
            source: rec.header.as_ref().map_or(
                "a trace of the emulator (no recording header)".into(),
                |h| h.source(),
            ),
            under_wine: rec.header.as_ref().is_some_and(|h| h.under_wine()),
            anonymised: self.anonymised,
            calls,
        });
        let mut last_line = rec.first_line;
        for (k, item) in rec.items.iter().enumerate() {
            match item {
                Item::Control { line, action } => {
                    self.act(
                        *line,
                        action.clone(),
                        Origin::Control,
                        "control line".into(),
                    );
                    last_line = *line;
                }
                Item::Call(c) => {
                    if !self.args.no_infer {
                        self.infer(c, &rec.items[k + 1..]);
                    }
                    self.call(c);
                    self.check_state(c);
                    last_line = c.line;
                }
            }
        }
        if rec.header.is_some() {
            self.rundown(last_line);
        }
        self.clients.finish(i);
    }

    /// The recorded process exited: RPC rundown ends the contexts it left open, and its
    /// lists go with its memory.
    fn rundown(&mut self, line: usize) {
        let open: Vec<u64> = self.model.contexts.iter().copied().collect();
        for n in open {
            let Some((live, backup, client)) = self
                .handles
                .get(&n)
                .and_then(|c| c.live.map(|h| (h, c.backup, c.client)))
            else {
                continue;
            };
            let req = if backup.is_some() {
                Request::BackupEnd(live)
            } else {
                Request::RestoreEnd(live)
            };
            let l = self.run(client, req);
            self.report.actions.push(ActionTaken {
                line,
                action: format!("end context {n:#x}"),
                origin: Origin::Rundown,
                why: "left open by the recorded process".into(),
                error: (l.hr != HRESULT::S_OK).then(|| l.hr.to_string()),
            });
        }
        let bufs: Vec<u64> = self.model.buffers.iter().copied().collect();
        for n in bufs {
            if let Some(Buf::Live(a)) = self.buffers.get(&n).copied() {
                let _ = certadm_emu::abi::held::backup_free_address(a);
                self.report.emulator_calls += 1;
                self.report.actions.push(ActionTaken {
                    line,
                    action: format!("free list {n:#x}"),
                    origin: Origin::Rundown,
                    why: "never freed by the recorded process".into(),
                    error: None,
                });
            }
        }
        self.model = Model::default();
    }

    // ----- inference -----------------------------------------------------------------

    fn infer(&mut self, rec: &Rec, rest: &[Item]) {
        let e = &rec.event;
        let ours = self.ours(e);
        let online = out_u64(e, "fServerOnline");
        let shows_stopped = match e.call {
            Call::IsServerOnline | Call::BackupPrepare | Call::ServerControl => {
                ours && e.hr == HRESULT::RPC_S_SERVER_UNAVAILABLE
            }
            Call::RestoreRegister | Call::RestoreRegisterThroughFile => e.hr == HRESULT::S_OK,
            _ => false,
        };
        if shows_stopped && self.ca.service() != ServiceState::Stopped {
            let registers = |c: &Rec| {
                matches!(
                    c.event.call,
                    Call::RestoreRegister | Call::RestoreRegisterThroughFile
                ) && c.event.hr == HRESULT::S_OK
            };
            let restore_follows = registers(rec)
                || rest
                    .iter()
                    .any(|i| matches!(i, Item::Call(c) if registers(c)));
            let why = if e.hr == HRESULT::S_OK {
                format!("{} succeeds only on a stopped CA", e.call)
            } else {
                format!("{} says the service is not running", e.call)
            };
            self.act(rec.line, Action::Stop, Origin::Inferred, why);
            if restore_follows && !self.ca.files().is_empty() {
                self.act(
                    rec.line,
                    Action::Wipe,
                    Origin::Inferred,
                    "a restore is registered next: the restore procedure replaces the CA's \
                     files (copied outside certadm.dll)"
                        .into(),
                );
            }
        }
        let shows_running = ours
            && match e.call {
                Call::IsServerOnline => e.hr == HRESULT::S_OK && online != Some(0),
                Call::BackupPrepare | Call::ServerControl => e.hr == HRESULT::S_OK,
                _ => false,
            };
        if shows_running && self.ca.service() == ServiceState::Stopped {
            self.act(
                rec.line,
                Action::Start,
                Origin::Inferred,
                format!("{} says the service is running", e.call),
            );
        }
        if e.call == Call::BackupPrepare
            && e.hr == HRESULT::S_OK
            && arg_u64(e, "dwBackupFlags") == CSBACKUP_TYPE_LOGS_ONLY as u64
            && self.ca.last_full_backup().is_none()
            && self.ca.service() == ServiceState::Running
        {
            self.act(
                rec.line,
                Action::FullBackup,
                Origin::Inferred,
                "an incremental backup succeeds only after a full backup".into(),
            );
        }
    }

    /// Before a recorded GetBackupLogs: the CA writes the log generations it wrote on the
    /// recorded side, so that the live list ends where the recorded one does.
    fn roll_before_logs(&mut self, rec: &Rec, n: u64) {
        let Some(Value::List(l)) = rec.event.out("list") else {
            return;
        };
        let gens: Vec<i64> = l
            .iter()
            .filter_map(|s| log_generation(&list_entry(s, true).1))
            .map(i64::from)
            .collect();
        let (Some(&low), Some(&high)) = (gens.iter().min(), gens.iter().max()) else {
            return;
        };
        let cur = i64::from(self.ca.current_position().generation);
        let offset = match self.gen_offset {
            Some(o) => o,
            None => {
                let full = self.handles.get(&n).and_then(|c| c.backup) == Some(true);
                let live_low = if full {
                    i64::from(self.ca.checkpoint().generation)
                } else {
                    [
                        self.ca.last_full_backup(),
                        self.ca.last_incremental_backup(),
                    ]
                    .into_iter()
                    .flatten()
                    .map(|m| i64::from(m.high_gen) + 1)
                    .max()
                    .unwrap_or(cur)
                };
                live_low - low
            }
        };
        let rolls = high + offset - cur;
        if rolls > 0 && rolls <= MAX_ROLLS {
            self.act(
                rec.line,
                Action::RollLogs(rolls as u32),
                Origin::Inferred,
                format!(
                    "the transcript's list ends at generation {high:#x}: the CA wrote {rolls} \
                     more log generation(s) before this call"
                ),
            );
        }
    }

    // ----- calls ---------------------------------------------------------------------

    fn call(&mut self, rec: &Rec) {
        let e = &rec.event;
        self.report.calls += e.count.max(1);
        match e.call {
            Call::IsServerOnline => {
                let l = self.run(
                    e.client,
                    Request::IsServerOnline(self.wstr(e, "pwszServerName")),
                );
                if self.compare_hr(rec, &l, None) && e.hr == HRESULT::S_OK {
                    if let (Some(r), Out::Online(b)) = (out_u64(e, "fServerOnline"), &l.out) {
                        if r != u64::from(*b) {
                            self.diverge(rec, "fServerOnline", r, u64::from(*b), None, None);
                        }
                    }
                }
            }
            Call::BackupPrepare | Call::RestorePrepare => self.prepare(rec),
            Call::BackupGetDatabaseNames
            | Call::BackupGetDynamicFileList
            | Call::BackupGetBackupLogs
            | Call::RestoreGetDatabaseLocations => self.list(rec),
            Call::BackupOpenFile => self.open_file(rec),
            Call::BackupRead => self.read(rec),
            Call::BackupClose => {
                let (h, n) = self.hbc(e);
                let l = self.run(e.client, Request::Close(h.handle()));
                self.compare_hr(rec, &l, h.note(n));
                if e.hr == HRESULT::S_OK {
                    self.close_file(rec, n);
                }
            }
            Call::BackupTruncateLogs => self.truncate(rec),
            Call::BackupEnd | Call::RestoreEnd => {
                let (h, n) = self.hbc(e);
                let req = if e.call == Call::BackupEnd {
                    Request::BackupEnd(h.handle())
                } else {
                    Request::RestoreEnd(h.handle())
                };
                let l = self.run(e.client, req);
                self.compare_hr(rec, &l, h.note(n));
                if e.hr == HRESULT::S_OK {
                    self.close_file(rec, n);
                    self.model.contexts.remove(&n);
                }
            }
            Call::BackupFree => self.free(rec),
            Call::RestoreRegister | Call::RestoreRegisterThroughFile => self.register(rec),
            Call::RestoreRegisterComplete => {
                let (h, n) = self.hbc(e);
                let state = match e.arg("hrRestoreState") {
                    Some(Value::Str(s)) => s
                        .split_whitespace()
                        .next()
                        .and_then(HRESULT::parse)
                        .unwrap_or(HRESULT::S_OK),
                    Some(Value::U64(v)) => HRESULT(*v as u32 as i32),
                    _ => HRESULT::S_OK,
                };
                let l = self.run(e.client, Request::Complete(h.optional(), state));
                self.compare_hr(rec, &l, h.note(n));
            }
            Call::ServerControl => {
                let flags = arg_u64(e, "dwControlFlags") as u32;
                let l = self.run(
                    e.client,
                    Request::ServerControl(self.wstr(e, "pwszServerName"), flags),
                );
                if self.compare_hr(rec, &l, None) && e.hr == HRESULT::S_OK {
                    if let Some(cb) = out_u64(e, "cbOut") {
                        self.diverge(rec, "cbOut", cb, 0, None, None);
                    }
                }
            }
        }
    }

    fn prepare(&mut self, rec: &Rec) {
        let e = &rec.event;
        let server = self.wstr(e, "pwszServerName");
        let backup = e.call == Call::BackupPrepare;
        let (req, full) = if backup {
            let flags = arg_u64(e, "dwBackupFlags") as u32;
            (
                Request::BackupPrepare(server, arg_u64(e, "grbitJet") as u32, flags),
                Some(flags == CSBACKUP_TYPE_FULL),
            )
        } else {
            (
                Request::RestorePrepare(server, arg_u64(e, "dwRestoreFlags") as u32),
                None,
            )
        };
        let l = self.run(e.client, req);
        self.compare_hr(rec, &l, None);
        let live = match l.out {
            Out::Handle(h) => Some(h),
            _ => None,
        };
        if e.hr == HRESULT::S_OK {
            let n = out_u64(e, "hbc").unwrap_or(0);
            self.handles.insert(
                n,
                Ctx {
                    live,
                    lost_at: live.is_none().then_some(rec.line),
                    backup: full,
                    client: e.client,
                    file: None,
                },
            );
            self.model.contexts.insert(n);
        } else if let Some(h) = live {
            // The recorded client got no context: the live one is ended at once, so that it
            // does not hold the CA's one backup slot for the rest of the replay.
            let req = if backup {
                Request::BackupEnd(h)
            } else {
                Request::RestoreEnd(h)
            };
            let _ = self.run(e.client, req);
        }
    }

    fn list(&mut self, rec: &Rec) {
        let e = &rec.event;
        let kind = e.call.list().expect("a list function");
        let (h, n) = self.hbc(e);
        if kind == ListKind::BackupLogs && e.hr == HRESULT::S_OK && !self.args.no_infer {
            self.roll_before_logs(rec, n);
        }
        let l = self.run(e.client, Request::List(kind, h.handle()));
        self.compare_hr(rec, &l, h.note(n));
        let held = match &l.out {
            Out::List(x) => Some(x.clone()),
            _ => None,
        };
        if e.hr == HRESULT::S_OK {
            let b = out_u64(e, "buffer").unwrap_or(0);
            if b != 0 {
                self.buffers.insert(
                    b,
                    held.as_ref()
                        .map_or(Buf::Lost(rec.line), |x| Buf::Live(x.address())),
                );
                self.model.buffers.insert(b);
            }
            if let Some(x) = &held {
                self.compare_list(rec, kind, x);
            }
        } else if let Some(x) = held {
            // The recorded client got no list: the live one is freed at once.
            let _ = self.run(e.client, Request::Free(x.address()));
        }
    }

    fn compare_list(&mut self, rec: &Rec, kind: ListKind, live: &certadm_emu::abi::held::HeldList) {
        let e = &rec.event;
        let prefixed = kind != ListKind::DynamicFiles;
        let recorded: Vec<(Option<u32>, String)> = match e.out("list") {
            Some(Value::List(l)) => l.iter().map(|s| list_entry(s, prefixed)).collect(),
            _ => Vec::new(),
        };
        let Some(entries) = live.entries(prefixed) else {
            self.diverge(
                rec,
                "list",
                "a double-NUL list",
                "a malformed list",
                None,
                None,
            );
            return;
        };
        let emulated: Vec<(Option<u32>, String)> = entries
            .into_iter()
            .map(|x| (x.kind.map(u32::from), x.path))
            .collect();
        let names = |v: &[(Option<u32>, String)]| {
            format!(
                "{}: {}",
                v.len(),
                v.iter()
                    .map(|x| file_name(&x.1))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if recorded.len() != emulated.len() {
            self.diverge(
                rec,
                "entries",
                names(&recorded),
                names(&emulated),
                None,
                None,
            );
        }
        let mut names_differ = false;
        let mut offsets: Vec<(String, String)> = Vec::new();
        for (i, ((rk, rp), (lk, lp))) in recorded.iter().zip(&emulated).enumerate() {
            for (r, l) in [
                (rp.clone(), lp.clone()),
                (
                    format!("{}{rp}", prefix_char(*rk)),
                    format!("{}{lp}", prefix_char(*lk)),
                ),
            ] {
                self.names.insert(r.to_lowercase(), l);
            }
            if rk != lk {
                self.diverge(
                    rec,
                    format!("entry {} type", i + 1),
                    show_entry(*rk),
                    show_entry(*lk),
                    None,
                    Some(format!("{rp} / {lp}")),
                );
            }
            let entry = format!("entry {}", i + 1);
            let mapped = self.rename(rp);
            if mapped != *rp {
                names_differ = true;
            }
            if mapped == *lp {
                if log_generation(lp).is_some() && self.gen_offset.is_none() {
                    self.gen_offset = Some(0);
                }
                if self.gen_offset.is_some_and(|o| o != 0) && log_generation(lp).is_some() {
                    let o = self.gen_offset.unwrap_or(0);
                    let note = format!("log generations: emulator = transcript here, {o:+} before");
                    self.diverge(rec, entry, rp, lp, None, Some(note));
                }
                continue;
            }
            if mapped.eq_ignore_ascii_case(lp) {
                self.diverge(rec, entry, rp, lp, Some(Expected::PathCase), None);
                continue;
            }
            let gens = (log_generation(&mapped), log_generation(lp));
            if let (Some(gr), Some(gl)) = gens {
                if parent(&mapped).eq_ignore_ascii_case(parent(lp)) {
                    let d = i64::from(gl) - i64::from(gr);
                    let expected = *self.gen_offset.get_or_insert(d);
                    if d == expected {
                        offsets.push((file_name(rp).into(), file_name(lp).into()));
                        if !with_log_generation(&mapped, gl).eq_ignore_ascii_case(lp) {
                            names_differ = true;
                        }
                        continue;
                    }
                    let note = format!(
                        "log generations: emulator = transcript {d:+} here, {expected:+} before"
                    );
                    self.diverge(rec, entry, rp, lp, None, Some(note));
                    continue;
                }
            }
            names_differ = true;
            self.diverge(rec, entry, rp, lp, None, None);
        }
        if !offsets.is_empty() {
            let o = self.gen_offset.unwrap_or(0);
            self.diverge(
                rec,
                "log generations",
                offsets
                    .iter()
                    .map(|x| x.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                offsets
                    .iter()
                    .map(|x| x.1.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                Some(Expected::GenerationOffset),
                Some(format!("emulator = transcript {o:+}")),
            );
        }
        // cbSize: bytes including the final extra NUL.
        let Some(rcb) = out_u64(e, "cbSize") else {
            return;
        };
        let lcb = u64::from(live.cb_size());
        if rcb == lcb {
            return;
        }
        let units = |v: &[(Option<u32>, String)]| -> u64 {
            v.iter()
                .map(|(k, p)| k.map_or(0, |_| 1) + p.encode_utf16().count() as u64 + 1)
                .sum::<u64>()
                + 1
        };
        let rec_bytes = 2 * units(&recorded);
        let because = if self.anonymised {
            Some(Expected::AnonymisedNames)
        } else if rec_bytes == rcb && 2 * units(&emulated) == lcb {
            if names_differ || recorded.len() != emulated.len() {
                Some(if self.renames.is_empty() {
                    Expected::DatabaseSize
                } else {
                    Expected::RenamedHost
                })
            } else {
                None
            }
        } else {
            None
        };
        let detail = (because.is_none()).then(|| {
            format!(
                "the transcript's entries take {rec_bytes} bytes with their NULs and the final NUL"
            )
        });
        self.diverge(rec, "cbSize", rcb, lcb, because, detail);
    }

    fn map_name(&self, name: &str) -> String {
        if let Some(l) = self.names.get(&name.to_lowercase()) {
            return l.clone();
        }
        let r = self.rename(name);
        match (log_generation(&r), self.gen_offset) {
            (Some(g), Some(o)) if o != 0 => {
                with_log_generation(&r, (i64::from(g) + o).clamp(0, u32::MAX.into()) as u32)
            }
            _ => r,
        }
    }

    fn open_file(&mut self, rec: &Rec) {
        let e = &rec.event;
        let (h, n) = self.hbc(e);
        let name = match e.arg("pwszAttachmentName") {
            Some(Value::Str(s)) => s.clone(),
            _ => String::new(),
        };
        let live_name = self.map_name(&name);
        let l = self.run(
            e.client,
            Request::OpenFile(
                h.handle(),
                WStr::new(&live_name),
                arg_u64(e, "cbReadHintSize") as u32,
            ),
        );
        self.compare_hr(rec, &l, h.note(n));
        let rsize = (e.hr == HRESULT::S_OK)
            .then(|| out_u64(e, "liFileSize"))
            .flatten();
        let lsize = match l.out {
            Out::Size(s) => Some(s),
            _ => None,
        };
        if let (Some(r), Some(s)) = (rsize, lsize) {
            if r != s {
                let because = (!self.args.exact_sizes).then_some(Expected::DatabaseSize);
                self.diverge(
                    rec,
                    "liFileSize",
                    r,
                    s,
                    because,
                    Some(file_name(&name).to_string()),
                );
            }
        }
        if rsize.is_some() || lsize.is_some() {
            if let Some(c) = self.handles.get_mut(&n) {
                c.file = Some(FileTrack {
                    name: file_name(&name).to_string(),
                    rec: Side {
                        size: rsize,
                        ..Side::default()
                    },
                    live: Side {
                        size: lsize,
                        ..Side::default()
                    },
                    line: rec.line,
                    ..FileTrack::default()
                });
            }
        }
    }

    fn read(&mut self, rec: &Rec) {
        let e = &rec.event;
        let (h, n) = self.hbc(e);
        let cb = arg_u64(e, "cbBuffer");
        let count = e.count.clamp(1, MAX_READS);
        if e.count > MAX_READS {
            self.report.notes.push(format!(
                "line {}: {} folded reads; only the first {MAX_READS} are replayed",
                rec.line, e.count
            ));
        }
        let amounts = match (e.hr == HRESULT::S_OK, out_u64(e, "read")) {
            (true, Some(total)) => split_reads(total, count, cb),
            _ => Vec::new(),
        };
        let mut track = self.handles.get_mut(&n).and_then(|c| c.file.take());
        let len = |t: &Option<FileTrack>| -> usize {
            if cb == 0 {
                return 0;
            }
            let len = match t
                .as_ref()
                .and_then(|t| t.live.size.map(|s| (s, t.live.total)))
            {
                Some((size, total)) => cb.min(MAX_READ).min(size.saturating_sub(total).max(1)),
                None => cb.min(UNKNOWN_READ),
            };
            len as usize
        };
        let mut hr_reported = false;
        for k in 0..count as usize {
            let l = self.run(e.client, Request::Read(h.handle(), len(&track)));
            if l.hr != e.hr {
                if !hr_reported {
                    self.compare_hr(rec, &l, h.note(n));
                    hr_reported = true;
                }
                continue;
            }
            let (Some(t), Some(&rn), Out::Read(ln)) = (track.as_mut(), amounts.get(k), &l.out)
            else {
                continue;
            };
            t.rec.push(rn, cb);
            t.live.push(*ln, cb);
            if t.same_size() && rn != *ln && !t.bytes_reported {
                t.bytes_reported = true;
                let because = (!self.args.exact_sizes).then_some(Expected::DatabaseSize);
                let name = t.name.clone();
                self.diverge(rec, "read", rn, ln, because, Some(name));
            }
        }
        // A larger live file is read on to the point the recorded read reached: its end.
        if let Some(t) = track.as_mut() {
            if e.hr == HRESULT::S_OK && t.rec.at_end() && !t.live.at_end() && t.live.size.is_some()
            {
                let left = t.live.size.unwrap_or(0).saturating_sub(t.live.total);
                let most = (left / cb.max(1) + 2).min(MAX_READS);
                for _ in 0..most {
                    let l = self.run(e.client, Request::Read(h.handle(), len(&track)));
                    let t = track.as_mut().expect("present");
                    t.extra_reads += 1;
                    match l.out {
                        Out::Read(x) => {
                            t.live.push(x, cb);
                            if x == 0 || t.live.at_end() {
                                break;
                            }
                        }
                        _ => break,
                    }
                }
            }
        }
        if let Some(c) = self.handles.get_mut(&n) {
            if c.file.is_none() {
                c.file = track;
            }
        }
    }

    /// The file of context `n` is closed: compares how both sides met its end.
    fn close_file(&mut self, rec: &Rec, n: u64) {
        let Some(t) = self.handles.get_mut(&n).and_then(|c| c.file.take()) else {
            return;
        };
        let (r, l) = (&t.rec, &t.live);
        if r.size.is_none() || l.size.is_none() || r.reads == 0 {
            return;
        }
        let same = t.same_size();
        let mut problems = Vec::new();
        if r.at_end() != l.at_end() && (same || r.at_end()) {
            problems.push("where the reads stopped");
        }
        if r.short_before_end != l.short_before_end {
            problems.push("a short read before the end");
        }
        if r.zero_before_end != l.zero_before_end {
            problems.push("0 bytes before the end");
        }
        if r.data_after_end != l.data_after_end {
            problems.push("bytes after the end");
        }
        let extra = (t.extra_reads > 0).then(|| {
            format!(
                "the emulator's larger file took {} more read(s) to reach its end",
                t.extra_reads
            )
        });
        if !problems.is_empty() {
            let d = format!(
                "{} (opened at line {}): {}",
                t.name,
                t.line,
                problems.join(", ")
            );
            self.diverge(
                rec,
                "EOF",
                r.describe(),
                l.describe(),
                None,
                Some(extra.map_or(d.clone(), |x| format!("{d}; {x}"))),
            );
        } else if r.at_end() != l.at_end() {
            self.diverge(
                rec,
                "EOF",
                r.describe(),
                l.describe(),
                Some(Expected::DatabaseSize),
                Some(format!(
                    "{}: the client stopped before the end of a file of another size",
                    t.name
                )),
            );
        }
    }

    fn truncate(&mut self, rec: &Rec) {
        let e = &rec.event;
        let (h, n) = self.hbc(e);
        let before: BTreeSet<u32> = self.ca.log_generations().into_iter().collect();
        let l = self.run(e.client, Request::Truncate(h.handle()));
        let after: BTreeSet<u32> = self.ca.log_generations().into_iter().collect();
        if !self.compare_hr(rec, &l, h.note(n)) || e.hr != HRESULT::S_OK {
            return;
        }
        let Some(Value::List(deleted)) = e.out("deleted") else {
            return; // the recorder cannot see what a truncation deleted
        };
        let o = self.gen_offset.unwrap_or(0);
        let mapped: BTreeSet<i64> = deleted
            .iter()
            .filter_map(|d| log_generation(d))
            .map(|g| i64::from(g) + o)
            .collect();
        // Generations below 1 are history the emulated CA never had.
        let want: BTreeSet<i64> = mapped.iter().copied().filter(|g| *g >= 1).collect();
        let got: BTreeSet<i64> = before.difference(&after).map(|g| i64::from(*g)).collect();
        let show = |s: &BTreeSet<i64>| {
            if s.is_empty() {
                return "none".to_string();
            }
            s.iter()
                .map(|g| format!("{g:#x}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let shown_want = format!(
            "{} (transcript: {})",
            show(&want),
            deleted
                .iter()
                .map(|d| file_name(d))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let detail = (o != 0).then(|| format!("emulator = transcript {o:+}"));
        if want != got {
            self.diverge(
                rec,
                "deleted generations",
                shown_want,
                show(&got),
                None,
                detail,
            );
        } else if mapped != want {
            self.diverge(
                rec,
                "deleted generations",
                shown_want,
                show(&got),
                Some(Expected::OlderHistory),
                detail,
            );
        }
    }

    fn free(&mut self, rec: &Rec) {
        let e = &rec.event;
        let pv = e.arg("pv").and_then(Value::as_u64).unwrap_or(0);
        let dummy = &NOT_A_LIST as *const u8 as usize;
        let (addr, note) = match (pv, self.buffers.get(&pv).copied()) {
            (0, _) => (0, None),
            (_, Some(Buf::Live(a))) => (a, None),
            (_, Some(Buf::Freed)) => (dummy, None),
            (_, Some(Buf::Lost(line))) => (
                dummy,
                Some(format!(
                    "list {pv:#x} has no emulator counterpart: its call diverged at line {line}"
                )),
            ),
            (_, None) => (
                dummy,
                Some(format!("list {pv:#x} was never returned in this recording")),
            ),
        };
        let l = self.run(e.client, Request::Free(addr));
        self.compare_hr(rec, &l, note);
        if pv != 0 && self.buffers.contains_key(&pv) {
            self.buffers.insert(pv, Buf::Freed);
        }
        self.model.buffers.remove(&pv);
    }

    fn register(&mut self, rec: &Rec) {
        let e = &rec.event;
        let (h, n) = self.hbc(e);
        let generation = |k: &str| -> u32 {
            let g = arg_u64(e, k);
            match self.gen_offset {
                Some(o) if g != 0 => (g as i64 + o).clamp(1, u32::MAX.into()) as u32,
                _ => g as u32,
            }
        };
        let map = rec.rstmap.as_ref().map(|m| {
            m.iter()
                .map(|(a, b)| {
                    (
                        a.as_deref().map(|s| WStr::new(&self.rename(s))),
                        b.as_deref().map(|s| WStr::new(&self.rename(s))),
                    )
                })
                .collect::<Vec<_>>()
        });
        let crstmap = rec
            .crstmap
            .unwrap_or(map.as_ref().map_or(0, |m| m.len() as i64))
            .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        let reg = RawRegistration {
            checkpoint_path: self.wstr(e, "pwszCheckPointFilePath"),
            log_path: self.wstr(e, "pwszLogPath"),
            restore_map: map,
            crstmap,
            backup_log_path: self.wstr(e, "pwszBackupLogPath"),
            gen_low: generation("genLow"),
            gen_high: generation("genHigh"),
        };
        let through_file = e.call == Call::RestoreRegisterThroughFile;
        let l = self.run(
            e.client,
            Request::Register(h.optional(), Box::new(reg), through_file),
        );
        self.compare_hr(rec, &l, h.note(n));
    }

    /// Contexts and lists the transcript implies are open, against the emulator's.
    fn check_state(&mut self, rec: &Rec) {
        let pairs = [
            (
                "contexts open",
                self.model.contexts.len(),
                self.ca.sessions_open(),
            ),
            (
                "lists not freed",
                self.model.buffers.len(),
                self.ca.outstanding_buffers(),
            ),
        ];
        for (what, want, got) in pairs {
            if want == got {
                self.model.shown.remove(what);
                continue;
            }
            // Reported when it appears; not again while it lasts.
            if self.model.shown.contains_key(what) {
                continue;
            }
            self.model.shown.insert(what, (want, got));
            self.diverge(rec, format!("state: {what}"), want, got, None, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_reads_split_as_a_sequential_reader_sees_them() {
        assert_eq!(split_reads(10, 1, 4), vec![10]);
        assert_eq!(split_reads(10, 3, 4), vec![4, 4, 2]);
        assert_eq!(split_reads(8, 4, 4), vec![4, 4, 0, 0]);
        assert_eq!(split_reads(0, 2, 4), vec![0, 0]);
    }

    #[test]
    fn names_are_replaced_as_words() {
        let host = |from: &str, to: &str, host| Rename {
            from: from.into(),
            to: to.into(),
            host,
        };
        let pairs = [host("HOST", "CA01", true), host("CA", "Corp CA", false)];
        assert_eq!(
            replace_words(r"\\host\C$\HOST_CA.crt", &pairs),
            r"\\CA01\C$\CA01_Corp CA.crt"
        );
        assert_eq!(
            replace_words(r"\\host.example\C$\x\CA.edb", &pairs),
            r"\\host.example\C$\x\Corp CA.edb"
        );
        assert_eq!(replace_words("GHOST sub-CA", &pairs), "GHOST sub-CA");
    }

    #[test]
    fn a_side_knows_where_its_reads_met_the_end() {
        let mut s = Side {
            size: Some(10),
            ..Side::default()
        };
        s.push(4, 4);
        s.push(4, 4);
        assert!(!s.at_end());
        s.push(2, 4);
        assert!(s.at_end() && !s.short_before_end);
        s.push(0, 4);
        assert!(!s.data_after_end && !s.zero_before_end);
        let mut t = Side {
            size: Some(10),
            ..Side::default()
        };
        t.push(3, 4);
        assert!(t.short_before_end);
        assert_eq!(
            t.describe(),
            "3 of 10 bytes in 1 read(s), stopped before the end, a short read before the end"
        );
    }
}

//! The replay report: a serde document (`--json`, for CI) and its text form.

use super::facts::MachineFacts;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// Why a difference is expected (shown, never a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    /// A file's size differs: the emulated database is not the recorded one (its size and
    /// history are not in a transcript). Compared with `--exact-sizes`.
    DatabaseSize,
    /// Log generation numbers differ by the same constant throughout the replay.
    GenerationOffset,
    /// The recorded CA is older: logs of generations the emulated CA never had (a
    /// truncation deleting them) cannot be compared.
    OlderHistory,
    /// The recorder replaced the names (`CERTADM_RECORD_ANONYMISE=1`) after the real DLL
    /// counted them: `cbSize` is the real names' size.
    AnonymisedNames,
    /// Host or CA names differ because flags renamed the emulated machine.
    RenamedHost,
    /// A path differs only in letter case (Windows paths are case-insensitive).
    PathCase,
    /// The recorder cannot see it (`CertSrvBackupFree` is void: it always records `S_OK`).
    RecorderCannotSee,
    /// The transcript does not hold what the call was given (pointer arguments; a string
    /// the recorder wrote as U+FFFD), so the replay could not pass the same.
    NotRecorded,
}

impl Expected {
    /// A few words for the text report.
    pub fn words(self) -> &'static str {
        match self {
            Expected::DatabaseSize => "a different database",
            Expected::GenerationOffset => "generations offset by a constant",
            Expected::OlderHistory => "older history",
            Expected::AnonymisedNames => "anonymised names",
            Expected::RenamedHost => "renamed host",
            Expected::PathCase => "letter case of a path",
            Expected::RecorderCannotSee => "the recorder cannot see it",
            Expected::NotRecorded => "not in the transcript",
        }
    }
}

/// One difference between the transcript and the emulator.
#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    /// The transcript's line.
    pub line: usize,
    /// The call's `seq` in its recording.
    pub seq: u64,
    /// The function.
    pub call: &'static str,
    /// The recorded call, written like C (arguments, result, out-values).
    pub recorded: String,
    /// What differs: `HRESULT`, an out-value's name, `entries`, `EOF`, `state: ...`.
    pub what: String,
    /// The transcript's value.
    pub expected: String,
    /// The emulator's value.
    pub actual: String,
    /// `None`: unexpected, a failure. Otherwise why it is expected.
    pub expected_because: Option<Expected>,
    /// More about it (the emulator's message for a failure, the consequence of which
    /// earlier divergence it is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Divergence {
    /// True for a failure.
    pub fn unexpected(&self) -> bool {
        self.expected_because.is_none()
    }
}

/// Where an action on the CA came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `--before`.
    Flag,
    /// A `{"control": ...}` line.
    Control,
    /// Inferred from the calls.
    Inferred,
    /// The recorded process exited: its open contexts and lists are released, as RPC
    /// rundown and process exit do.
    Rundown,
}

/// Something the replay did to the emulated CA outside the recorded calls.
#[derive(Debug, Clone, Serialize)]
pub struct ActionTaken {
    /// Done before this line of the transcript (after the last one for a rundown).
    pub line: usize,
    /// The action (`stop`, `issue=5`, ...; a rundown names what it released).
    pub action: String,
    /// Where it came from.
    pub origin: Origin,
    /// Why (empty for a flag or a control line).
    pub why: String,
    /// The error, if it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A recording of the transcript.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingInfo {
    /// Its first line.
    pub first_line: usize,
    /// Where it comes from.
    pub source: String,
    /// Made under Wine against the emulator's PE DLL (not a real CA).
    pub under_wine: bool,
    /// Names anonymised.
    pub anonymised: bool,
    /// Calls in it (a folded read counts each call).
    pub calls: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The transcript file.
    pub transcript: String,
    /// The emulated machine and where each fact came from.
    pub machine: MachineFacts,
    /// The recordings.
    pub recordings: Vec<RecordingInfo>,
    /// What the replay did to the CA besides the calls.
    pub actions: Vec<ActionTaken>,
    /// Recorded calls replayed.
    pub calls: u64,
    /// Calls made to the emulator (more when a larger file needed more reads).
    pub emulator_calls: u64,
    /// The constant between recorded and emulated log generations, once known.
    pub generation_offset: Option<i64>,
    /// Sizes compared exactly (`--exact-sizes`).
    pub exact_sizes: bool,
    /// Every divergence, in order.
    pub divergences: Vec<Divergence>,
    /// Divergences that are failures.
    pub unexpected: usize,
    /// Divergences that are expected, by reason.
    pub expected: BTreeMap<String, usize>,
    /// What is never compared.
    pub not_compared: Vec<&'static str>,
    /// Remarks about the transcript.
    pub notes: Vec<String>,
    /// No unexpected divergence.
    pub clean: bool,
}

/// What a replay never compares.
pub const NOT_COMPARED: [&str; 3] = [
    "timing (elapsed_ns)",
    "file contents (a transcript holds sizes, never bytes)",
    "error messages (Windows has none)",
];

impl Report {
    /// Counts the divergences.
    pub fn finish(&mut self) {
        self.unexpected = self.divergences.iter().filter(|d| d.unexpected()).count();
        self.expected.clear();
        for d in &self.divergences {
            if let Some(e) = d.expected_because {
                *self.expected.entry(e.words().to_string()).or_default() += 1;
            }
        }
        self.clean = self.unexpected == 0;
    }
}

fn fact<T: fmt::Display>(f: &super::facts::Fact<T>) -> String {
    format!("{} ({})", f.value, f.from)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.machine;
        writeln!(f, "replay of {}", self.transcript)?;
        writeln!(
            f,
            "emulated machine: {} / {}, CA {:?} from {}{}",
            fact(&m.netbios),
            fact(&m.dns),
            m.ca_name.value,
            m.ca_name.from,
            if m.remote_caller.value {
                ", caller on another computer"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  database {}, logs {}, checkpoint {}",
            fact(&m.db_dir),
            fact(&m.log_dir),
            fact(&m.system_dir)
        )?;
        writeln!(
            f,
            "  {} records ({}), seed {} ({}), log capacity {} ({}), InterfaceFlags {:#x} ({}); sizes {}",
            m.records.value,
            m.records.from,
            m.seed.value,
            m.seed.from,
            m.log_capacity.value,
            m.log_capacity.from,
            m.interface_flags.value,
            m.interface_flags.from,
            if self.exact_sizes {
                "compared exactly"
            } else {
                "not compared (--exact-sizes)"
            }
        )?;
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        let mut actions = self.actions.iter().peekable();
        let mut divs = self.divergences.iter().peekable();
        for (i, r) in self.recordings.iter().enumerate() {
            let next = self
                .recordings
                .get(i + 1)
                .map_or(usize::MAX, |n| n.first_line);
            writeln!(
                f,
                "recording from line {}: {}{}, {} calls",
                r.first_line,
                r.source,
                if r.anonymised { ", anonymised" } else { "" },
                r.calls
            )?;
            loop {
                let a_line = actions
                    .peek()
                    .filter(|a| a.line < next || (a.origin == Origin::Rundown && a.line <= next))
                    .map(|a| a.line);
                let d_line = divs.peek().filter(|d| d.line < next).map(|d| d.line);
                match (a_line, d_line) {
                    (Some(a), d) if d.is_none_or(|d| a <= d) => {
                        let a = actions.next().expect("peeked");
                        let when = if a.origin == Origin::Rundown {
                            "at the end".to_string()
                        } else {
                            format!("before line {}", a.line)
                        };
                        let origin = match a.origin {
                            Origin::Flag => "--before",
                            Origin::Control => "control line",
                            Origin::Inferred => "inferred",
                            Origin::Rundown => "process exit",
                        };
                        if a.why.is_empty() {
                            write!(f, "  {when}: {} ({origin})", a.action)?;
                        } else {
                            write!(f, "  {when}: {} ({origin}: {})", a.action, a.why)?;
                        }
                        match &a.error {
                            Some(e) => writeln!(f, " FAILED: {e}")?,
                            None => writeln!(f)?,
                        }
                    }
                    (_, Some(_)) => {
                        let d = divs.next().expect("peeked");
                        let tag = match d.expected_because {
                            None => "UNEXPECTED".to_string(),
                            Some(e) => format!("expected: {}", e.words()),
                        };
                        let inline = match (&d.detail, d.unexpected()) {
                            (Some(x), false) => format!(" ({x})"),
                            _ => String::new(),
                        };
                        writeln!(
                            f,
                            "  line {} #{} {}: {}: transcript {}, emulator {}{inline}  [{tag}]",
                            d.line, d.seq, d.call, d.what, d.expected, d.actual
                        )?;
                        if d.unexpected() {
                            writeln!(f, "      call: {}", d.recorded)?;
                            if let Some(x) = &d.detail {
                                writeln!(f, "      {x}")?;
                            }
                        }
                    }
                    _ => break,
                }
            }
        }
        let expected: usize = self.expected.values().sum();
        let by: Vec<String> = self
            .expected
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        writeln!(
            f,
            "{} calls replayed ({} emulator calls): {} unexpected divergence(s), {} expected{}",
            self.calls,
            self.emulator_calls,
            self.unexpected,
            expected,
            if by.is_empty() {
                String::new()
            } else {
                format!(" ({})", by.join(", "))
            }
        )?;
        if let Some(o) = self.generation_offset.filter(|o| *o != 0) {
            writeln!(f, "log generations: emulator = transcript {o:+}")?;
        }
        writeln!(f, "not compared: {}", self.not_compared.join("; "))?;
        write!(
            f,
            "{}",
            if self.clean {
                "CLEAN: the emulator answered as the transcript says\n"
            } else {
                "DIVERGES: see the UNEXPECTED lines above\n"
            }
        )
    }
}

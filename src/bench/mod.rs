//! The benchmark figures of `certadm-emu bench`, each measured against a baseline run in
//! the same process on the same machine, so the ratios (not the absolute numbers) are
//! what to compare across machines.
//!
#![doc = include_str!("figures.md")]
//!
//! `certadm-emu bench --figure N` (repeatable) runs only the figures named ([`Plan::only`]).
//!
//! Every timed figure is the median of several rounds, emulator and baseline rounds
//! interleaved so that load from other processes hits both alike. Load from outside the
//! machine is reported: on a virtual machine, a group of figures during which the host
//! took more than 10% of the processors' time (the steal time of `/proc/stat`) is
//! followed by a note saying how much: a target missed in such a group may be the host's
//! doing, and `--figure N` measures it again. The quick plan uses
//! 64 MiB instead of 1 GiB, 256 MiB instead of 4 GiB, 100,000 records instead of
//! 1,000,000 and 1,000,000 instead of 10,000,000. Figures 10 and 13 run in a child
//! process (the measuring executable re-run with [`scale::CHILD_ENV`]).
//!
//! Figure 1's baseline is the cheapest shared handle table there is (two uncontended
//! lock/unlock pairs around a slab); the emulator's pair also decodes the server name,
//! routes twice, checks the CA and the caller, and, with tracing on, records two events
//! (two clock readings each) and feeds them to the conformance checker. On a loaded
//! machine the nanosecond figures move from run to run; `valgrind --tool=callgrind`
//! instruction counts per pair are the stable measure: about 1,020 tracing off (some 350
//! at the ABI boundary: the exports, the unwind guards, the server name, the handle and
//! the out-pointer; some 670 in the two calls: routing, access and service checks, the
//! session table, the session itself) and 1,740 tracing on (also recording and checking
//! the two events, some 700, and the four clock readings, 16). The clock readings cost
//! time beyond their instructions: a call is timed on the time-stamp counter (where the
//! kernel keeps time with it), 10 to 17 ns a reading on this virtual machine, against 26
//! to 35 ns through `clock_gettime` (`Instant`), which made four readings 4.5 baselines on
//! their own. Figure 6's baseline is a pure stream (the peer writes chunk after chunk,
//! with no request per chunk), the most the loopback socket gives; the server pays a
//! request per 512 KiB read on top of it, and polls for the next one rather than sleep
//! while its client reads promptly (docs/PROTOCOL.md §6.2): a thread's wake-up cost about
//! as much as a read's bytes take to cross the socket.
//!
//! What is timed is written once in [`work`]; the criterion benches (`benches/backup.rs`)
//! time the same functions. The module drives the ABI only through its safe layer
//! [`crate::abi::call`].
#![forbid(unsafe_code)]

pub mod figures;
pub mod scale;
mod server;
pub mod work;

use crate::abi::call::WStr;
use crate::client::{backup_to_dir, BackupOptions};
use crate::core::consts::{CSBACKUP_TYPE_FULL, CSBACKUP_TYPE_LOGS_ONLY};
use crate::EmulatedCa;
use figures::figure;
use indicatif::HumanBytes;
use std::fmt;
use std::hint::black_box;
use std::time::{Duration, Instant};
use work::{OpenEdb, Result, READ_SIZE};

/// The RSS budget of figure 4.
const RSS_BUDGET: u64 = 16 << 20;
const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;

/// Sizes and round counts of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// `--quick`.
    pub quick: bool,
    /// The virtual `.edb` of figures 2, 3 and 6, and the real file of the baseline.
    pub edb: u64,
    /// Bytes read from the 1 TiB `.edb` in figure 4.
    pub rss_read: u64,
    /// Records of the large CA of figure 8.
    pub large_ca: u32,
    /// Records of the CA of figures 10 and 13.
    pub scale_ca: u32,
    /// Rounds per timed figure (the median is reported).
    pub rounds: usize,
    /// Target duration of one round of figures 1 and 5.
    pub round_time: Duration,
    /// The figures to run: bit `n` is figure `n` (1 to 13; a figure's lettered rows go
    /// with it, figures 2 and 3, 5 to 7, 8 and 9, 10 and 13, 11 and 12 run together). [`Plan::new`] sets
    /// every figure; [`Plan::only`] keeps some (`certadm-emu bench --figure N`).
    pub figures: u16,
}

impl Plan {
    /// The full plan, or the quick one.
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                edb: 64 << 20,
                rss_read: 256 << 20,
                large_ca: 100_000,
                scale_ca: 1_000_000,
                rounds: 5,
                round_time: Duration::from_millis(40),
                figures: all_figures(),
            }
        } else {
            Plan {
                quick,
                edb: 1 << 30,
                rss_read: 4 << 30,
                large_ca: 1_000_000,
                scale_ca: 10_000_000,
                rounds: 7,
                round_time: Duration::from_millis(150),
                figures: all_figures(),
            }
        }
    }

    /// This plan with only `figures` (numbers 1 to 13; an empty list keeps them all).
    pub fn only(self, figures: &[u32]) -> Result<Plan> {
        if figures.is_empty() {
            return Ok(self);
        }
        let last = last_figure();
        let mut mask = 0u16;
        for &f in figures {
            if !(1..=last).contains(&f) {
                return Err(format!("there is no figure {f} (figures are 1 to {last})"));
            }
            mask |= 1 << f;
        }
        Ok(Plan {
            figures: mask,
            ..self
        })
    }

    /// Whether any of `figures` is in the plan.
    fn wants(&self, figures: &[u32]) -> bool {
        figures.iter().any(|&f| self.figures & (1 << f) != 0)
    }
}

/// The number of the last figure of the table ([`figures::all`]).
fn last_figure() -> u32 {
    figures::all()
        .iter()
        .filter_map(|f| figures::number(&f.id))
        .max()
        .expect("the table has figures")
}

/// [`Plan::figures`] with every figure.
fn all_figures() -> u16 {
    ((1u32 << (last_figure() + 1)) - 2) as u16
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "certadm-emu bench{}: .edb {}, RSS read {}, large CA {} records, scale CA {} records, median of {} rounds",
            if self.quick { " --quick" } else { "" },
            HumanBytes(self.edb),
            HumanBytes(self.rss_read),
            self.large_ca,
            self.scale_ca,
            self.rounds
        )?;
        if self.figures != all_figures() {
            let list: Vec<String> = (1..=last_figure())
                .filter(|&f| self.wants(&[f]))
                .map(|f| f.to_string())
                .collect();
            write!(f, ", figures {}", list.join(", "))?;
        }
        Ok(())
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Number and description.
    pub figure: String,
    /// The emulator's figure.
    pub emulator: String,
    /// The baseline's figure.
    pub baseline: String,
    /// Emulator / baseline (NaN when there is none).
    pub ratio: f64,
    /// The target (empty for a note row).
    pub target: String,
    /// Whether the target was met; `None` for an informational row.
    pub pass: Option<bool>,
}

/// What a row's ratio is held to: the bound is written once, and both the table's target
/// text and the verdict come from it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// Scored: the ratio must be at most this.
    AtMost(f64),
    /// Scored: the ratio must be at least this.
    AtLeast(f64),
    /// Shown, not scored, with what the column says instead of a bound.
    Info(String),
}

impl Target {
    fn text(&self) -> String {
        match self {
            Target::AtMost(v) => format!("<= {v}x"),
            Target::AtLeast(v) => format!(">= {v}x"),
            Target::Info(text) => text.clone(),
        }
    }

    fn met(&self, ratio: f64) -> Option<bool> {
        match self {
            Target::AtMost(v) => Some(ratio <= *v),
            Target::AtLeast(v) => Some(ratio >= *v),
            Target::Info(_) => None,
        }
    }
}

impl Row {
    /// A figure: the emulator's and the baseline's measures as shown, their ratio, and
    /// what the ratio is held to.
    pub(crate) fn new(
        figure: impl Into<String>,
        emulator: String,
        baseline: String,
        ratio: f64,
        target: Target,
    ) -> Row {
        Row {
            figure: figure.into(),
            emulator,
            baseline,
            ratio,
            pass: target.met(ratio),
            target: target.text(),
        }
    }

    fn note(figure: String) -> Row {
        Row::new(
            figure,
            String::new(),
            String::new(),
            f64::NAN,
            Target::Info(String::new()),
        )
    }
}

/// The rows of a run, printed as the ratio table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table(pub Vec<Row>);

impl Table {
    /// (targets met, targets scored).
    pub fn score(&self) -> (usize, usize) {
        let scored: Vec<bool> = self.0.iter().filter_map(|r| r.pass).collect();
        (scored.iter().filter(|p| **p).count(), scored.len())
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = &self.0;
        // A note is a line of its own: it does not widen the columns.
        let is_note = |r: &Row| r.target.is_empty() && r.emulator.is_empty();
        let width = |col: fn(&Row) -> &str, min: usize| {
            rows.iter()
                .filter(|r| !is_note(r))
                .map(|r| col(r).chars().count())
                .max()
                .unwrap_or(min)
                .max(min)
        };
        let w0 = width(|r| &r.figure, 6);
        let w1 = width(|r| &r.emulator, 8);
        let w2 = width(|r| &r.baseline, 8);
        writeln!(
            f,
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>9}  {:<16}  result",
            "figure", "emulator", "baseline", "ratio", "target"
        )?;
        writeln!(f, "{}", "-".repeat(w0 + w1 + w2 + 9 + 16 + 16))?;
        for r in rows {
            if is_note(r) {
                writeln!(f, "{}", r.figure)?;
                continue;
            }
            let ratio = if r.target.is_empty() {
                String::new()
            } else if r.ratio.is_nan() {
                "-".to_string()
            } else if r.ratio >= 100.0 {
                format!("{:.0}x", r.ratio)
            } else {
                format!("{:.3}x", r.ratio)
            };
            writeln!(
                f,
                "{:<w0$}  {:>w1$}  {:>w2$}  {:>9}  {:<16}  {}",
                r.figure,
                r.emulator,
                r.baseline,
                ratio,
                r.target,
                match r.pass {
                    Some(true) => "PASS",
                    Some(false) => "MISS",
                    None if r.target.is_empty() => "",
                    None => "info",
                }
            )?;
        }
        Ok(())
    }
}

// ----- measurement helpers ----------------------------------------------------------

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Iterations of `f` (which runs its argument's count and returns the time taken)
/// that last about `target`.
fn calibrate(f: &mut dyn FnMut(u64) -> Result<Duration>, target: Duration) -> Result<u64> {
    let mut n = 1u64;
    loop {
        let d = f(n)?;
        if d >= target / 10 || n >= 1 << 32 {
            let scaled = n as f64 * target.as_secs_f64() / d.as_secs_f64().max(1e-9);
            return Ok((scaled.ceil() as u64).max(1));
        }
        n *= 4;
    }
}

/// Time per iteration (ns) of the emulator and of the baseline: both calibrated to
/// `plan.round_time`, then `plan.rounds` interleaved rounds, medians.
fn per_iteration(
    plan: &Plan,
    emu: &mut dyn FnMut(u64) -> Result<Duration>,
    base: &mut dyn FnMut(u64) -> Result<Duration>,
) -> Result<(f64, f64)> {
    let n_emu = calibrate(emu, plan.round_time)?;
    let n_base = calibrate(base, plan.round_time)?;
    let (mut e, mut b) = (Vec::new(), Vec::new());
    for _ in 0..plan.rounds {
        e.push(emu(n_emu)?.as_nanos() as f64 / n_emu as f64);
        b.push(base(n_base)?.as_nanos() as f64 / n_base as f64);
    }
    Ok((median(e), median(b)))
}

/// Bytes per second of the emulator and of the baseline: `plan.rounds` interleaved
/// rounds after one that warms both up, medians. Each side moves bytes through `buf` and
/// returns how many.
fn throughput(
    plan: &Plan,
    buf: &mut [u8],
    emu: &mut dyn FnMut(&mut [u8]) -> Result<u64>,
    base: &mut dyn FnMut(&mut [u8]) -> Result<u64>,
) -> Result<(f64, f64)> {
    let rate = |side: &mut dyn FnMut(&mut [u8]) -> Result<u64>, buf: &mut [u8]| {
        let t = Instant::now();
        let bytes = side(buf)?;
        Ok::<_, String>(bytes as f64 / t.elapsed().as_secs_f64())
    };
    let (mut e, mut b) = (Vec::new(), Vec::new());
    for round in 0..=plan.rounds {
        let (re, rb) = (rate(emu, buf)?, rate(base, buf)?);
        if round > 0 {
            e.push(re);
            b.push(rb);
        }
    }
    Ok((median(e), median(b)))
}

/// `got` if it is `size`, else an error: `what` read too little or too much.
fn exactly(what: &str, got: u64, size: u64) -> Result<u64> {
    if got == size {
        Ok(got)
    } else {
        Err(format!("{what} read {got} bytes of {size}"))
    }
}

fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn ns(d: f64) -> String {
    if d >= 1e6 {
        format!("{:.2} ms", d / 1e6)
    } else if d >= 1e3 {
        format!("{:.2} µs", d / 1e3)
    } else {
        format!("{d:.1} ns")
    }
}

/// Seconds per pair, shown.
fn per_pair(d: f64) -> String {
    format!("{}/pair", ns(d))
}

/// Events per second, shown.
fn per_s(rate: f64) -> String {
    format!("{rate:.0}/s")
}

/// Seconds, shown.
fn secs(s: f64) -> String {
    format!("{s:.3} s")
}

fn gibs(bytes_per_sec: f64) -> String {
    format!("{:.2} GiB/s", bytes_per_sec / GIB)
}

fn tempdir() -> Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))
}

fn build_ca(b: crate::CaBuilder, what: &str) -> Result<EmulatedCa> {
    b.build().map_err(|e| format!("creating {what}: {e}"))
}

// ----- the figures ------------------------------------------------------------------

/// Figures 1, 1b and 1d: time per Prepare+End pair against time per insert+remove pair.
/// Also returns the number of pairs run.
fn prepare_end(
    server: &WStr,
    flags: u32,
    figure: &figures::Figure,
    plan: &Plan,
) -> Result<(Row, u64)> {
    let mut pairs = 0u64;
    let mut emu = |n: u64| -> Result<Duration> {
        pairs += n;
        let t = Instant::now();
        for _ in 0..n {
            work::prepare_end(server, flags)?;
        }
        Ok(t.elapsed())
    };
    let table = work::Baseline::default();
    let mut base = |n: u64| -> Result<Duration> {
        let t = Instant::now();
        for i in 0..n {
            work::baseline_pair(&table, i);
        }
        Ok(t.elapsed())
    };
    let (e, b) = per_iteration(plan, &mut emu, &mut base)?;
    Ok((figure.compare(e, b, per_pair), pairs))
}

/// Figures 1 to 1d on one CA: full and logs-only pairs, memory kept, tracing off.
fn prepare_end_figures(plan: &Plan) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let ca = build_ca(EmulatedCa::builder(), "the CA")?;
    let server = WStr::new(ca.server_name());
    rows.push(prepare_end(&server, CSBACKUP_TYPE_FULL, figure("1"), plan)?.0);
    // An incremental session needs a full backup first.
    let dir = tempdir()?;
    backup_to_dir(
        ca.server_name(),
        dir.path(),
        &BackupOptions::default(),
        &mut |_, _, _| {},
    )
    .map_err(|e| format!("the full backup before figure 1b: {e}"))?;
    let before = rss_bytes().unwrap_or(0);
    let (row, pairs) = prepare_end(&server, CSBACKUP_TYPE_LOGS_ONLY, figure("1b"), plan)?;
    rows.push(row);
    // Memory an ended session leaves behind (a session that is ended should leave
    // nothing: the baseline table keeps none).
    let kept = rss_bytes().unwrap_or(0).saturating_sub(before);
    rows.push(figure("1c").row(
        format!("{:.0} B/pair", kept as f64 / pairs.max(1) as f64),
        "0 B/pair".into(),
        f64::NAN,
    ));
    rows.push(Row::note(format!(
        "   ({pairs} pairs; +{:.1} MiB in total)",
        kept as f64 / MIB
    )));
    // Without the call trace and the conformance checker (EmulatedCa::set_tracing).
    ca.set_tracing(false);
    rows.push(prepare_end(&server, CSBACKUP_TYPE_FULL, figure("1d"), plan)?.0);
    ca.set_tracing(true);
    Ok(rows)
}

/// Figure 2: a whole full-backup session (Prepare, GetDatabaseNames, OpenFile, Read
/// to EOF, Close, End) against reading a real file of the same size from the page cache.
fn full_backup(server: &WStr, plan: &Plan) -> Result<Row> {
    let dir = tempdir()?;
    let path = dir.path().join("baseline.edb");
    // The emulator's logical size is what OpenFile reports; the real file matches it.
    let probe = OpenEdb::new(server)?;
    let size = probe.size();
    probe.finish()?;
    work::write_real_file(&path, size)?;
    let mut buf = vec![1u8; READ_SIZE];
    let (e, b) = throughput(
        plan,
        &mut buf,
        &mut |buf| exactly("the backup", work::full_backup(server, buf)?, size),
        &mut |buf| exactly("the baseline", work::read_real_file(&path, buf)?, size),
    )?;
    Ok(figure("2").compare(e, b, gibs))
}

/// Figure 3: the Read loop alone (session set up outside the timing) against
/// `copy_from_slice` of the same number of bytes in 512 KiB blocks from a buffer.
/// With `source` larger than one block, the copies walk a source of that size (an
/// in-memory image of the file, beyond the caches); the headline row copies the same
/// 512 KiB block over and over (cache-resident).
fn read_vs_memcpy(server: &WStr, plan: &Plan) -> Result<Vec<Row>> {
    let mut dst = vec![1u8; READ_SIZE];
    let small_src = vec![2u8; READ_SIZE];
    let big_src_len = (256usize << 20).min(plan.edb as usize).max(READ_SIZE);
    let mut big_src = vec![0u8; big_src_len];
    crate::ca::content::fill(3, 0, &mut big_src);
    let (mut e, mut b_small, mut b_big) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=plan.rounds {
        let mut s = OpenEdb::new(server)?;
        let t = Instant::now();
        let size = s.read_up_to(&mut dst, u64::MAX)?;
        let te = t.elapsed().as_secs_f64();
        s.finish()?;
        let blocks = size.div_ceil(READ_SIZE as u64) as usize;
        let t = Instant::now();
        for _ in 0..blocks {
            work::memcpy(&mut dst, &small_src);
        }
        let ts = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let per_pass = big_src_len / READ_SIZE;
        for i in 0..blocks {
            let off = (i % per_pass) * READ_SIZE;
            work::memcpy(&mut dst, &big_src[off..off + READ_SIZE]);
        }
        let tg = t.elapsed().as_secs_f64();
        if round > 0 {
            let bytes = (blocks * READ_SIZE) as f64;
            e.push(size as f64 / te);
            b_small.push(bytes / ts);
            b_big.push(bytes / tg);
        }
    }
    let e = median(e);
    let (bs, bg) = (median(b_small), median(b_big));
    Ok(vec![
        figure("3").compare(e, bs, gibs),
        figure("3b").compare(e, bg, gibs),
    ])
}

/// Figure 4: resident memory growth (peak of VmRSS sampled every 16 reads) while
/// reading `plan.rss_read` bytes of a 1 TiB virtual `.edb` through the ABI.
fn rss_growth(plan: &Plan) -> Result<Row> {
    let ca = build_ca(EmulatedCa::builder().edb_size(1 << 40), "the 1 TiB CA")?;
    let server = WStr::new(ca.server_name());
    let mut buf = vec![3u8; READ_SIZE];
    let mut s = OpenEdb::new(&server)?;
    // One read first, so that anything allocated once per open file is in the baseline.
    s.read_up_to(&mut buf, 1)?;
    let before = rss_bytes().ok_or("cannot read VmRSS from /proc/self/status")?;
    let mut peak = before;
    let mut done = 0u64;
    let mut reads = 0u64;
    while done < plan.rss_read {
        let n = s.read(&mut buf)?;
        black_box(&buf[..n]);
        done += n as u64;
        reads += 1;
        if reads % 16 == 0 {
            peak = peak.max(rss_bytes().unwrap_or(0));
        }
        if n < buf.len() {
            break;
        }
    }
    peak = peak.max(rss_bytes().unwrap_or(0));
    s.finish()?;
    let growth = peak.saturating_sub(before);
    let ratio = growth as f64 / RSS_BUDGET as f64;
    Ok(figure("4").row(
        format!("+{:.2} MiB in {}", growth as f64 / MIB, HumanBytes(done)),
        format!("16 MiB budget (RSS before {:.1} MiB)", before as f64 / MIB),
        ratio,
    ))
}

/// Runs every figure of `plan`; `step` hears the name of each stage before it runs.
///
/// In the child process of figures 10 and 13 ([`scale::CHILD_ENV`] set), this runs only
/// that scenario, prints its report and exits.
pub fn run(plan: &Plan, step: &mut dyn FnMut(&str)) -> Result<Table> {
    scale::child_main();
    let mut rows = Vec::new();

    if plan.wants(&[1]) {
        step("[1/4] Prepare+End through the ABI vs Mutex<Slab> insert+remove ...");
        watched(&mut rows, "figure 1", || prepare_end_figures(plan))?;
    }

    if plan.wants(&[2, 3]) {
        watched(&mut rows, "figures 2 and 3", || {
            step(&format!(
                "[2/4] full backup of a {} .edb vs File::read from the page cache ...",
                HumanBytes(plan.edb)
            ));
            let ca = build_ca(EmulatedCa::builder().edb_size(plan.edb), "the CA")?;
            let server = WStr::new(ca.server_name());
            let mut rows = vec![full_backup(&server, plan)?];
            step("[3/4] CertSrvBackupRead vs copy_from_slice ...");
            rows.extend(read_vs_memcpy(&server, plan)?);
            Ok(rows)
        })?;
    }

    if plan.wants(&[4]) {
        step(&format!(
            "[4/4] VmRSS while reading {} of a 1 TiB .edb ...",
            HumanBytes(plan.rss_read)
        ));
        watched(&mut rows, "figure 4", || Ok(vec![rss_growth(plan)?]))?;
    }

    if plan.wants(&[5, 6, 7]) {
        step("[5-7] server mode: against bare loopback TCP, 32 clients ...");
        watched(&mut rows, "figures 5 to 7", || server::figures(plan))?;
    }

    let exe = std::env::current_exe().map_err(|e| format!("this executable: {e}"))?;
    let mut child = std::process::Command::new(exe);
    child.arg("bench");
    rows.extend(page_file_figures(plan, step, child)?);
    Ok(Table(rows))
}

/// Figures 8 to 13 (the page file). The scenario of figures 10 and 13 runs in `child`
/// with [`scale::CHILD_ENV`] set: a command that calls [`scale::child_main`] before
/// anything else ([`run`] passes `certadm-emu bench`, which does).
pub fn page_file_figures(
    plan: &Plan,
    step: &mut dyn FnMut(&str),
    child: std::process::Command,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    if plan.wants(&[8, 9]) {
        step("[8-9] issuing into a large and a small CA, and appending the log frames alone ...");
        watched(&mut rows, "figures 8 and 9", || scale::issue_figures(plan))?;
    }
    if plan.wants(&[11, 12]) {
        step(&format!(
            "[11-12] full backups of a materialised {} .edb while the CA issues ...",
            HumanBytes(plan.edb)
        ));
        watched(&mut rows, "figures 11 and 12", || {
            scale::materialised_backup_figures(plan)
        })?;
    }
    if plan.wants(&[10, 13]) {
        step("[10, 13] the large-CA scenario in a child process (peak RSS, restore) ...");
        watched(&mut rows, "figures 10 and 13", || {
            scale::scenario_figures(plan, child)
        })?;
    }
    Ok(rows)
}

/// The share of processor time above which a group of figures gets a note saying the
/// host took it ([`watched`]).
const NOTED_STEAL: f64 = 0.10;

/// Runs a group of figures and appends its rows to `rows`, with a note when the host took
/// more than [`NOTED_STEAL`] of the processors' time meanwhile (steal time, which a
/// virtual machine's kernel counts in `/proc/stat`): the ratios of such a group were
/// measured on processors that ran other work part of the time.
fn watched(
    rows: &mut Vec<Row>,
    figures: &str,
    group: impl FnOnce() -> Result<Vec<Row>>,
) -> Result<()> {
    let before = cpu_times();
    rows.extend(group()?);
    let share = before.zip(cpu_times()).and_then(|(b, a)| steal_share(b, a));
    rows.extend(share.and_then(|share| steal_note(figures, share)));
    Ok(())
}

/// The note under a group of figures during which the host took `share` of the
/// processors' time, if that is more than [`NOTED_STEAL`].
fn steal_note(figures: &str, share: f64) -> Option<Row> {
    (share > NOTED_STEAL).then(|| {
        Row::note(format!(
            "   (the host took {:.0}% of the processors' time while {figures} ran (steal time): these ratios may be off; run them again alone with --figure)",
            share * 100.0
        ))
    })
}

/// Processor time since boot from `/proc/stat`: (steal, total), in clock ticks.
fn cpu_times() -> Option<(u64, u64)> {
    parse_cpu_times(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The steal and total ticks of the `cpu` line of a `/proc/stat` text: user, nice,
/// system, idle, iowait, irq, softirq and steal (guest time is already in user).
fn parse_cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    (v.len() == 8).then(|| (v[7], v.iter().sum()))
}

/// The share of the processor time between two readings that was stolen; `None` if no
/// time passed.
fn steal_share(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.1.checked_sub(before.1)?;
    let steal = after.0.checked_sub(before.0)?;
    (total > 0).then(|| steal as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page-file figures alone, quick plan (`cargo test --release --lib
    /// page_file_figures -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn page_file_figures_quick() {
        scale::child_main();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child.args([
            "--exact",
            "bench::tests::page_file_figures_quick",
            "--ignored",
        ]);
        let quick = std::env::var("CERTADM_EMU_FULL_PLAN").is_err();
        let t = page_file_figures(&Plan::new(quick), &mut |s| eprintln!("{s}"), child).unwrap();
        eprintln!("{}", Table(t));
    }

    #[test]
    fn steal_is_read_from_proc_stat() {
        let stat = "cpu  100 5 50 800 10 1 4 30 7 0\ncpu0 50 2 25 400 5 0 2 15 3 0\nintr 1\n";
        assert_eq!(parse_cpu_times(stat), Some((30, 1000)));
        assert_eq!(parse_cpu_times("cpu  1 2 3\n"), None, "too few fields");
        assert_eq!(
            parse_cpu_times("cpu0 1 2 3 4 5 6 7 8\n"),
            None,
            "no total line"
        );
        assert_eq!(steal_share((30, 1000), (80, 1200)), Some(0.25));
        assert_eq!(steal_share((30, 1000), (30, 1000)), None, "no time passed");
        assert_eq!(steal_share((30, 1000), (20, 900)), None, "went backwards");
        // The note: only above the share, after the group's rows.
        assert_eq!(steal_note("figure 1", 0.10), None, "at the bound");
        let note = steal_note("figures 5 to 7", 0.42).expect("a note above the bound");
        assert_eq!(
            note.figure,
            "   (the host took 42% of the processors' time while figures 5 to 7 ran (steal time): these ratios may be off; run them again alone with --figure)"
        );
        let row = || Ok(vec![Row::note("x".into())]);
        let mut rows = Vec::new();
        watched(&mut rows, "figure 1", row).unwrap();
        assert!(rows.len() <= 2 && rows[0].figure == "x");
        assert!(rows[1..]
            .iter()
            .all(|r| r.figure.contains("while figure 1 ran (steal time)")));
    }

    #[test]
    fn median_and_table() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
        let t = Table(vec![
            Row::new(
                "1  x",
                "2.0 ns/pair".into(),
                "1.0 ns/pair".into(),
                2.0,
                Target::AtMost(1.5),
            ),
            Row::note("   (a note, longer than every column of the figures)".into()),
        ]);
        assert_eq!(t.score(), (0, 1));
        let text = t.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("figure"), "{text}");
        assert!(
            lines[2].ends_with("2.000x  <= 1.5x           MISS"),
            "{text}"
        );
        // The note does not widen the figure column (6 wide: "figure").
        assert!(lines[2].starts_with("1  x    2.0 ns/pair"), "{text}");
        assert_eq!(
            lines[3],
            "   (a note, longer than every column of the figures)"
        );
    }

    #[test]
    fn the_quick_plan_names_its_sizes() {
        let p = Plan::new(true);
        assert_eq!(
            p.to_string(),
            "certadm-emu bench --quick: .edb 64.00 MiB, RSS read 256.00 MiB, large CA 100000 records, scale CA 1000000 records, median of 5 rounds"
        );
        let some = p.only(&[6, 12]).unwrap();
        assert!(some.wants(&[5, 6, 7]) && some.wants(&[11, 12]) && !some.wants(&[1, 13]));
        assert!(some
            .to_string()
            .ends_with("median of 5 rounds, figures 6, 12"));
        assert_eq!(p.only(&[]).unwrap(), p);
        for bad in [0, 14] {
            assert_eq!(
                p.only(&[bad]).unwrap_err(),
                format!("there is no figure {bad} (figures are 1 to 13)")
            );
        }
    }
}

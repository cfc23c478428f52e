//! The benchmark figures of `certadm-emu bench`, each measured against a baseline run in
//! the same process on the same machine, so the ratios (not the absolute numbers) are
//! what to compare across machines.
//!
//! | # | emulator | baseline | target |
//! |---|---|---|---|
//! | 1 | `CertSrvBackupPrepareW` + `CertSrvBackupEnd` through the ABI, tracing on (the default) | insert + remove in a `parking_lot::Mutex<slab::Slab>` | ≤ 10× the time |
//! | 1d | the same, tracing off | the same | ≤ 4× the time |
//! | 2 | full backup of a 1 GiB virtual `.edb` (512 KiB reads) | `File::read` of a 1 GiB file from the page cache | ≥ 0.8× the throughput |
//! | 3 | `CertSrvBackupRead` of the virtual `.edb` | `copy_from_slice` of 512 KiB buffers | ≥ 0.5× the throughput |
//! | 4 | VmRSS growth reading 4 GiB of a 1 TiB virtual `.edb` | a 16 MiB budget | ≤ 16 MiB |
//! | 5 | Prepare + End through `certadm-emu serve` | two bare loopback TCP round trips | ≤ 2× the time |
//! | 6 | a full backup through the server | a bare loopback TCP stream of the same bytes in the same chunks | ≥ 0.8× the throughput |
//! | 7 | 32 server clients | one client | reported |
//! | 8 | issuing into a 1,000,000-record CA | issuing into a 1,000-record CA | ≥ 0.7× the rate |
//! | 9 | issuing | appending the same log frames (rolls included, no fsync) | ≥ 0.5× the rate |
//! | 10 | peak RSS of a 10,000,000-record CA: install, issue, full backup, wipe, restore, hard recovery | a 64 MiB budget | ≤ 64 MiB |
//! | 11 | `CertSrvBackupEnd`'s share of a full backup of a materialised 1 GiB `.edb` while the CA issues | the whole backup | ≤ 5% |
//! | 12 | that full backup (database + logs + End) | `File::read` of as many bytes | ≥ 0.8× the throughput |
//! | 13 | the hard recovery of the restored 10,000,000-record set (verifying the `.edb` and the logs, replaying them) | `File::read` of the set's files (median of 3) | ≤ 2× the time |
//! | 13b | the client's copy of the set through the restore calls (I/O bound, the client's code) | the same read | reported |
//!
//! Every timed figure is the median of several rounds, emulator and baseline rounds
//! interleaved so that load from other processes hits both alike. The quick plan uses
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
//! request per 512 KiB read on top of it.
//!
//! What is timed is written once in [`work`]; the criterion benches (`benches/backup.rs`)
//! time the same functions. The module drives the ABI only through its safe layer
//! [`crate::abi::call`].
#![forbid(unsafe_code)]

pub mod scale;
mod server;
pub mod work;

use crate::abi::call::WStr;
use crate::client::{backup_to_dir, BackupOptions};
use crate::core::consts::{CSBACKUP_TYPE_FULL, CSBACKUP_TYPE_LOGS_ONLY};
use crate::EmulatedCa;
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
    /// Rounds per timed figure (the median is reported).
    pub rounds: usize,
    /// Target duration of one round of figures 1 and 5.
    pub round_time: Duration,
}

impl Plan {
    /// The full plan, or the quick one.
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                edb: 64 << 20,
                rss_read: 256 << 20,
                rounds: 5,
                round_time: Duration::from_millis(40),
            }
        } else {
            Plan {
                quick,
                edb: 1 << 30,
                rss_read: 4 << 30,
                rounds: 7,
                round_time: Duration::from_millis(150),
            }
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "certadm-emu bench{}: .edb {}, RSS read {}, median of {} rounds",
            if self.quick { " --quick" } else { "" },
            HumanBytes(self.edb),
            HumanBytes(self.rss_read),
            self.rounds
        )
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

impl Row {
    fn note(figure: String) -> Row {
        Row {
            figure,
            emulator: String::new(),
            baseline: String::new(),
            ratio: f64::NAN,
            target: String::new(),
            pass: None,
        }
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
        let width = |col: fn(&Row) -> &str, min: usize| {
            rows.iter()
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

/// Figure 1: time per Prepare+End pair against time per insert+remove pair; `target` is
/// the most the ratio may be. Also returns the number of pairs run.
fn prepare_end(
    server: &WStr,
    flags: u32,
    label: &str,
    plan: &Plan,
    target: f64,
    informational: bool,
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
    let ratio = e / b;
    let row = Row {
        figure: label.into(),
        emulator: format!("{}/pair", ns(e)),
        baseline: format!("{}/pair", ns(b)),
        ratio,
        target: format!("<= {target}x"),
        pass: (!informational).then_some(ratio <= target),
    };
    Ok((row, pairs))
}

/// Figures 1 to 1d on one CA: full and logs-only pairs, memory kept, tracing off.
fn prepare_end_figures(plan: &Plan) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let ca = build_ca(EmulatedCa::builder(), "the CA")?;
    let server = WStr::new(ca.server_name());
    rows.push(
        prepare_end(
            &server,
            CSBACKUP_TYPE_FULL,
            "1  Prepare(FULL)+End vs Mutex<Slab>",
            plan,
            10.0,
            false,
        )?
        .0,
    );
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
    let (row, pairs) = prepare_end(
        &server,
        CSBACKUP_TYPE_LOGS_ONLY,
        "1b (info) Prepare(LOGS_ONLY)+End, same",
        plan,
        10.0,
        true,
    )?;
    rows.push(row);
    // Memory an ended session leaves behind (a session that is ended should leave
    // nothing: the baseline table keeps none).
    let kept = rss_bytes().unwrap_or(0).saturating_sub(before);
    rows.push(Row {
        figure: "1c (info) VmRSS kept per ended Prepare+End pair".into(),
        emulator: format!("{:.0} B/pair", kept as f64 / pairs.max(1) as f64),
        baseline: "0 B/pair".into(),
        ratio: f64::NAN,
        target: "0 B/pair".into(),
        pass: None,
    });
    rows.push(Row::note(format!(
        "   ({pairs} pairs; +{:.1} MiB in total)",
        kept as f64 / MIB
    )));
    // Without the call trace and the conformance checker (EmulatedCa::set_tracing).
    ca.set_tracing(false);
    rows.push(
        prepare_end(
            &server,
            CSBACKUP_TYPE_FULL,
            "1d Prepare(FULL)+End, tracing off",
            plan,
            4.0,
            false,
        )?
        .0,
    );
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
    let ratio = e / b;
    Ok(Row {
        figure: format!("2  full backup of {} .edb vs File::read", HumanBytes(size)),
        emulator: gibs(e),
        baseline: gibs(b),
        ratio,
        target: ">= 0.8x".into(),
        pass: Some(ratio >= 0.8),
    })
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
    let mut size = 0u64;
    for round in 0..=plan.rounds {
        let mut s = OpenEdb::new(server)?;
        let t = Instant::now();
        size = s.read_up_to(&mut dst, u64::MAX)?;
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
        Row {
            figure: format!(
                "3  CertSrvBackupRead ({}) vs memcpy 512 KiB",
                HumanBytes(size)
            ),
            emulator: gibs(e),
            baseline: gibs(bs),
            ratio: e / bs,
            target: ">= 0.5x".into(),
            pass: Some(e / bs >= 0.5),
        },
        Row {
            figure: format!(
                "3b  (info) same vs memcpy from a {} image",
                HumanBytes(big_src_len as u64)
            ),
            emulator: gibs(e),
            baseline: gibs(bg),
            ratio: e / bg,
            target: ">= 0.5x".into(),
            pass: None,
        },
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
    Ok(Row {
        figure: format!(
            "4  VmRSS growth reading {} of a 1 TiB .edb",
            HumanBytes(done)
        ),
        emulator: format!("+{:.2} MiB", growth as f64 / MIB),
        baseline: format!("16 MiB budget (RSS before {:.1} MiB)", before as f64 / MIB),
        ratio,
        target: "<= 1.0 (16 MiB)".into(),
        pass: Some(growth <= RSS_BUDGET),
    })
}

/// Runs every figure of `plan`; `step` hears the name of each stage before it runs.
///
/// In the child process of figures 10 and 13 ([`scale::CHILD_ENV`] set), this runs only
/// that scenario, prints its report and exits.
pub fn run(plan: &Plan, step: &mut dyn FnMut(&str)) -> Result<Table> {
    scale::child_main();
    let mut rows = Vec::new();

    step("[1/4] Prepare+End through the ABI vs Mutex<Slab> insert+remove ...");
    rows.extend(prepare_end_figures(plan)?);

    step(&format!(
        "[2/4] full backup of a {} .edb vs File::read from the page cache ...",
        HumanBytes(plan.edb)
    ));
    let ca = build_ca(EmulatedCa::builder().edb_size(plan.edb), "the CA")?;
    let server = WStr::new(ca.server_name());
    rows.push(full_backup(&server, plan)?);

    step("[3/4] CertSrvBackupRead vs copy_from_slice ...");
    rows.extend(read_vs_memcpy(&server, plan)?);
    drop(ca);

    step(&format!(
        "[4/4] VmRSS while reading {} of a 1 TiB .edb ...",
        HumanBytes(plan.rss_read)
    ));
    rows.push(rss_growth(plan)?);

    step("[5-7] server mode: against bare loopback TCP, 32 clients ...");
    rows.extend(server::figures(plan)?);

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
    step("[8-9] issuing into a large and a small CA, and appending the log frames alone ...");
    rows.extend(scale::issue_figures(plan)?);
    step(&format!(
        "[11-12] full backups of a materialised {} .edb while the CA issues ...",
        HumanBytes(plan.edb)
    ));
    rows.extend(scale::materialised_backup_figures(plan)?);
    step("[10, 13] the large-CA scenario in a child process (peak RSS, restore) ...");
    rows.extend(scale::scenario_figures(plan, child)?);
    Ok(rows)
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
    fn median_and_table() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
        let t = Table(vec![
            Row {
                figure: "1  x".into(),
                emulator: "2.0 ns/pair".into(),
                baseline: "1.0 ns/pair".into(),
                ratio: 2.0,
                target: "<= 1.5x".into(),
                pass: Some(false),
            },
            Row::note("   (note)".into()),
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
        assert_eq!(lines[3].trim_end(), "   (note)");
    }

    #[test]
    fn the_quick_plan_names_its_sizes() {
        let p = Plan::new(true);
        assert_eq!(
            p.to_string(),
            "certadm-emu bench --quick: .edb 64.00 MiB, RSS read 256.00 MiB, median of 5 rounds"
        );
    }
}

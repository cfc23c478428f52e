//! The figures of the page file (figures 8 to 13 of [`super`]): issuing into a large CA,
//! issuing against the log writes alone, a full backup of a materialised `.edb` and the
//! share of its End, and the peak memory and the restore time of a 10,000,000-record CA
//! through install, issue, full backup, wipe, restore and hard recovery.
//!
//! The peak memory is `VmHWM` of a child process that runs only that scenario
//! ([`scenario`]): the executable that measures re-runs itself with [`CHILD_ENV`] set
//! (`certadm-emu bench`, the criterion bench `scale`, the `it` test `scale`), and the child
//! prints one [`ScaleReport`] line.

use super::figures::figure;
use super::work::{self, OpenEdb, Result, READ_SIZE};
use super::{gibs, median, per_s, secs, tempdir, Plan, Row, MIB};
use crate::abi::call::WStr;
use crate::ca::format::{log_file_name, PAGE_SIZE, SLOTS_PER_PAGE};
use crate::ca::record::Txn;
use crate::client::{backup_to_dir, restore_from_dirs, BackupOptions, RestoreOptions};
use crate::EmulatedCa;
use std::io::Write;
use std::process::Command;
use std::time::Instant;

/// Set in a child process: run [`scenario`] with this many records, print the report, exit.
pub const CHILD_ENV: &str = "CERTADM_EMU_SCALE_CHILD";
/// The line prefix of the child's report.
const REPORT_PREFIX: &str = "CERTADM_EMU_SCALE_REPORT ";
/// The peak RSS budget of figure 10.
pub const RSS_BUDGET: u64 = 64 << 20;
/// Certificates issued per issue-rate round (100 log rolls at the default capacity).
pub const ISSUE_ROUND: u32 = 6_400;

/// What the 10M-record scenario measured (one JSON line from the child).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScaleReport {
    /// Records installed.
    pub records: u32,
    /// Seconds to install the CA (its pages written once).
    pub install_s: f64,
    /// Seconds to issue the extra certificates.
    pub issue_s: f64,
    /// Seconds of the full backup (database, logs, End).
    pub backup_s: f64,
    /// Seconds of the restore (copy and registration through the ABI).
    pub restore_s: f64,
    /// Seconds of the start that runs the hard recovery.
    pub recovery_s: f64,
    /// Seconds to read the restored files (what the recovery reads) with `File::read`
    /// before the recovery (the baseline; the median of 3 reads).
    pub read_files_s: f64,
    /// Bytes of the backup set.
    pub set_bytes: u64,
    /// Records after the recovery.
    pub records_after: u64,
    /// The records digest before the backup and after the recovery agree.
    pub digest_ok: bool,
    /// `VmHWM` at the end, bytes.
    pub peak_rss: u64,
}

fn err(what: &str) -> impl FnOnce(crate::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Peak resident memory of this process (`VmHWM`), bytes.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Install, issue, full backup, wipe, restore, hard recovery and the records digest of a
/// CA of `records` records, in this process. Meant to run alone in a child process so
/// that [`ScaleReport::peak_rss`] is its peak.
pub fn scenario(records: u32) -> Result<ScaleReport> {
    let t = Instant::now();
    let ca = EmulatedCa::builder()
        .records(records)
        .build()
        .map_err(err("installing"))?;
    let install_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    ca.issue(ISSUE_ROUND).map_err(err("issuing"))?;
    ca.revoke(records / 2 + 1).map_err(err("revoking"))?;
    let issue_s = t.elapsed().as_secs_f64();
    let digest = ca.records_digest().map_err(err("the digest"))?;
    let count = ca.record_count();
    let dir = tempdir()?;
    let t = Instant::now();
    let sum = backup_to_dir(
        ca.server_name(),
        dir.path(),
        &BackupOptions::default(),
        &mut |_, _, _| {},
    )
    .map_err(|e| format!("the full backup: {e}"))?;
    let backup_s = t.elapsed().as_secs_f64();
    let set_bytes = sum.files.iter().map(|f| f.bytes).sum();
    ca.stop().map_err(err("stopping"))?;
    ca.wipe_files().map_err(err("wiping"))?;
    let t = Instant::now();
    restore_from_dirs(
        ca.server_name(),
        dir.path(),
        &[],
        &|p| ca.host_path(p),
        &RestoreOptions::default(),
    )
    .map_err(|e| format!("the restore: {e}"))?;
    let restore_s = t.elapsed().as_secs_f64();
    // The baseline: the restored files, the very bytes the recovery reads, read with
    // `File::read` in the same state of the page cache (just written by the restore);
    // the median of 3 reads (the machine is shared).
    let restored: Vec<_> = ca.files().into_iter().map(|f| f.host_path).collect();
    let mut buf = vec![0u8; READ_SIZE];
    let mut reads = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        for p in &restored {
            work::read_real_file(p, &mut buf)?;
        }
        reads.push(t.elapsed().as_secs_f64());
    }
    let read_files_s = median(reads);
    let t = Instant::now();
    ca.start().map_err(err("the hard recovery"))?;
    let recovery_s = t.elapsed().as_secs_f64();
    let after = ca.records_digest().map_err(err("the digest"))?;
    let records_after = ca.record_count() as u64;
    Ok(ScaleReport {
        records,
        install_s,
        issue_s,
        backup_s,
        restore_s,
        recovery_s,
        read_files_s,
        set_bytes,
        records_after,
        digest_ok: after == digest && records_after == count as u64,
        peak_rss: peak_rss().ok_or("cannot read VmHWM from /proc/self/status")?,
    })
}

/// In a process started with [`CHILD_ENV`]: runs [`scenario`], prints its report line and
/// exits (status 1 on failure). Does nothing otherwise.
pub fn child_main() {
    let Ok(v) = std::env::var(CHILD_ENV) else {
        return;
    };
    let code = match v
        .parse::<u32>()
        .map_err(|e| format!("{CHILD_ENV}={v}: {e}"))
        .and_then(scenario)
    {
        Ok(r) => {
            // Straight to the stdout handle: a test harness captures `println!`.
            let line = serde_json::to_string(&r).expect("serialisable");
            let _ = writeln!(std::io::stdout(), "{REPORT_PREFIX}{line}");
            0
        }
        Err(e) => {
            eprintln!("scale scenario: {e}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// Runs `cmd` (an executable that calls [`child_main`] first) with [`CHILD_ENV`] set to
/// `records`, and reads its report.
pub fn in_child(mut cmd: Command, records: u32) -> Result<ScaleReport> {
    let out = cmd
        .env(CHILD_ENV, records.to_string())
        .output()
        .map_err(|e| format!("starting the scale child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // A test harness may have printed the test's name on the same line.
    let report = stdout
        .lines()
        .find_map(|l| l.find(REPORT_PREFIX).map(|i| &l[i + REPORT_PREFIX.len()..]));
    match report {
        Some(line) => {
            serde_json::from_str(line).map_err(|e| format!("the child's report {line:?}: {e}"))
        }
        None => Err(format!(
            "the scale child ({}) printed no report: {} {}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// The records of a CA whose compact `.edb` is `bytes` long (a materialised database).
pub fn records_for_size(bytes: u64) -> u32 {
    ((bytes / PAGE_SIZE as u64).saturating_sub(1) * SLOTS_PER_PAGE as u64).min(u32::MAX as u64)
        as u32
}

/// Figures 8 and 9: one `EmulatedCa::issue` of [`ISSUE_ROUND`] certificates (100 log
/// rolls and checkpoints at the default capacity).
pub fn issue_round(ca: &EmulatedCa) -> Result<()> {
    ca.issue(ISSUE_ROUND).map(drop).map_err(err("issuing"))
}

/// Certificates per second of [`issue_round`].
fn issue_rate(ca: &EmulatedCa) -> Result<f64> {
    let t = Instant::now();
    issue_round(ca)?;
    Ok(ISSUE_ROUND as f64 / t.elapsed().as_secs_f64())
}

/// Figure 9's baseline input: the log frames of [`ISSUE_ROUND`] Issue transactions.
pub fn issue_frames() -> Vec<Vec<u8>> {
    (0..ISSUE_ROUND)
        .map(|i| {
            let r = crate::ca::Record::generate(1, 2_000_000 + i, 0);
            crate::ca::format::encode_frame(&Txn::Issue(r), Vec::new())
        })
        .collect()
}

/// Figure 9's baseline: `frames` ([`issue_frames`]) appended one write each, with the
/// logs' roll every 64 (seal, rename, a new file with a header) and no fsync, as the CA
/// writes its logs, in a fresh folder. Frames per second.
pub fn append_rate(frames: &[Vec<u8>]) -> Result<f64> {
    let io = |e: std::io::Error| format!("the append baseline: {e}");
    // A fresh folder: renaming over the files of an earlier round costs more.
    let tmp = tempdir()?;
    let dir = tmp.path();
    let cur = dir.join("edb.log");
    let header = vec![0u8; 46];
    let t = Instant::now();
    let mut f = std::fs::File::create(&cur).map_err(io)?;
    f.write_all(&header).map_err(io)?;
    for (i, fr) in frames.iter().enumerate() {
        f.write_all(fr).map_err(io)?;
        if (i + 1) % 64 == 0 {
            f.write_all(&[0xFF; 12]).map_err(io)?;
            drop(f);
            std::fs::rename(&cur, dir.join(log_file_name(i as u32 / 64 + 1))).map_err(io)?;
            f = std::fs::File::create(&cur).map_err(io)?;
            f.write_all(&header).map_err(io)?;
        }
    }
    drop(f);
    Ok(frames.len() as f64 / t.elapsed().as_secs_f64())
}

/// Figures 8 and 9: the issue rate into a large and a small CA, and against the log
/// writes alone.
pub(super) fn issue_figures(plan: &Plan) -> Result<Vec<Row>> {
    let big_n = plan.large_ca;
    let small = super::build_ca(EmulatedCa::builder().records(1_000), "the 1,000-record CA")?;
    let big = super::build_ca(EmulatedCa::builder().records(big_n), "the large CA")?;
    let frames = issue_frames();
    let (mut s, mut b, mut a) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=plan.rounds {
        let (rs, rb, ra) = (
            issue_rate(&small)?,
            issue_rate(&big)?,
            append_rate(&frames)?,
        );
        if round > 0 {
            s.push(rs);
            b.push(rb);
            a.push(ra);
        }
    }
    let (s, b, a) = (median(s), median(b), median(a));
    Ok(vec![
        figure("8").compare(b, s, per_s),
        figure("9").compare(s, a, per_s),
    ])
}

/// Figures 11 and 12: complete full backups (database read to the end while the CA issues
/// one certificate per MiB, then the logs, then End) of a CA whose compact `.edb` is `plan.edb`
/// bytes of records, against `File::read` of the same `.edb` file (the same bytes in the
/// same page cache: on tmpfs a file written another way reads up to 1.5 times faster);
/// and End's share of the time.
pub(super) fn materialised_backup_figures(plan: &Plan) -> Result<Vec<Row>> {
    let records = records_for_size(plan.edb);
    // Certificates issued during each backup: one per MiB of database (64 quick, 1,024).
    let during = (plan.edb >> 20) as u32;
    let t = Instant::now();
    let ca = super::build_ca(
        EmulatedCa::builder().records(records),
        "the materialised CA",
    )?;
    let install = t.elapsed().as_secs_f64();
    let server = WStr::new(ca.server_name());
    let edb = ca
        .host_path(&ca.database_path())
        .map_err(err("the materialised CA's .edb"))?;
    let mut buf = vec![1u8; READ_SIZE];
    let (mut e, mut b, mut share) = (Vec::new(), Vec::new(), Vec::new());
    let mut end_s = Vec::new();
    for round in 0..=plan.rounds {
        let t = Instant::now();
        let mut s = OpenEdb::new(&server)?;
        let mut bytes = s.read_up_to(&mut buf, s.size() / 2)?;
        // The CA goes on issuing during the backup (log rolls held back from the .edb);
        // the time of the issuing is not the backup's.
        let ti = Instant::now();
        ca.issue(during).map_err(err("issuing during the backup"))?;
        let issuing = ti.elapsed().as_secs_f64();
        bytes += s.read_up_to(&mut buf, u64::MAX)?;
        let (logs, end) = s.finish_with_logs(&mut buf)?;
        bytes += logs;
        let total = t.elapsed().as_secs_f64() - issuing;
        let tb = Instant::now();
        let got = work::read_real_file(&edb, &mut buf)?;
        let base = got as f64 / tb.elapsed().as_secs_f64();
        if round > 0 {
            e.push(bytes as f64 / total);
            b.push(base);
            share.push(end / total);
            end_s.push(end);
        }
    }
    let (e, b, share, end_s) = (median(e), median(b), median(share), median(end_s));
    Ok(vec![
        figure("11").row(
            format!("{:.2} ms End", end_s * 1e3),
            "whole backup".into(),
            share,
        ),
        figure("12").compare(e, b, gibs),
        Row::note(format!(
            "   ({records} records installed in {install:.1} s; {during} issued during each backup, not timed)"
        )),
    ])
}

/// Figures 10 and 13: the 10,000,000-record scenario (1,000,000 with `--quick`) in a child
/// process: its peak RSS, and the hard recovery of the restored set against reading the
/// set's files (the client's copy of the set into place is shown, not scored).
pub(super) fn scenario_figures(plan: &Plan, child: Command) -> Result<Vec<Row>> {
    let n = plan.scale_ca;
    let r = in_child(child, n)?;
    if !r.digest_ok {
        return Err(format!(
            "the {n}-record scenario restored {} records with another digest",
            r.records_after
        ));
    }
    Ok(vec![
        figure("10").row(
            format!("{:.1} MiB", r.peak_rss as f64 / MIB),
            "64 MiB budget".into(),
            r.peak_rss as f64 / RSS_BUDGET as f64,
        ),
        // What the emulator does of a restore: the hard recovery at the next start
        // (verifying the restored database and logs, replaying them), against reading
        // the same bytes.
        figure("13").compare(r.recovery_s, r.read_files_s, secs),
        // The client's part: copying the set into place through the restore calls. I/O
        // bound (the set is written to disk, the baseline reads the page cache) and the
        // client's code, not the emulator's: shown, not scored.
        figure("13b").compare(r.restore_s, r.read_files_s, secs),
        Row::note(format!(
            "   (set {}; install {:.1} s, issue {:.2} s, backup {:.1} s, restore (the client's copy) {:.2} s, recovery {:.2} s)",
            indicatif::HumanBytes(r.set_bytes),
            r.install_s,
            r.issue_s,
            r.backup_s,
            r.restore_s,
            r.recovery_s
        )),
    ])
}

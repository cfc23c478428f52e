//! `certadm-emu demo` and `certadm-emu restore`.

use certadm_emu::ca::recovery::RecoveryReport;
use certadm_emu::client::{
    backup_to_dir, read_locations, restore_from_dirs, BackupOptions, BackupSummary, RestoreOptions,
};
use certadm_emu::{EmulatedCa, HRESULT};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

const MANIFEST: &str = "certadm-emu-manifest.txt";

/// The embedded default CA of the demo.
pub fn default_ca(records: u32, edb_size: Option<u64>) -> Result<EmulatedCa, String> {
    let mut b = EmulatedCa::builder()
        .server_name("CA01")
        .dns_name("ca01.contoso.test")
        .ca_name("Contoso Issuing CA")
        .seed(42)
        .records(records)
        .log_capacity(64);
    if let Some(s) = edb_size {
        b = b.edb_size(s);
    }
    b.build()
        .map_err(|e| format!("creating the default CA: {e}"))
}

/// The records digest of `ca` as 8 hex digits, streamed (`docs/FILE-FORMATS.md` §4.6).
fn digest(ca: &EmulatedCa) -> Result<String, String> {
    ca.records_digest()
        .map(|d| format!("{d:08x}"))
        .map_err(|e| format!("reading the records: {e}"))
}

fn progress_bar() -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "  {msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb
}

fn run_backup(
    server: &str,
    dir: &Path,
    opts: &BackupOptions,
    label: &str,
) -> Result<BackupSummary, String> {
    println!("{label} -> {}", dir.display());
    let pb = progress_bar();
    let started = Instant::now();
    let mut last = String::new();
    let sum = backup_to_dir(server, dir, opts, &mut |name, done, total| {
        let short = name.rsplit('\\').next().unwrap_or(name).to_string();
        if short != last {
            pb.set_length(total);
            pb.set_message(short.clone());
            last = short;
        }
        pb.set_position(done);
    })
    .map_err(|e| format!("{label}: {e}"))?;
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let bytes: u64 = sum.files.iter().map(|f| f.bytes).sum();
    for f in &sum.files {
        println!(
            "  {:<28} {:>12}",
            f.dest.file_name().unwrap_or_default().to_string_lossy(),
            HumanBytes(f.bytes).to_string()
        );
    }
    print_calls(&sum.calls);
    println!(
        "  {} files, {} in {:.3} s ({}/s){}",
        sum.files.len(),
        HumanBytes(bytes),
        secs,
        HumanBytes((bytes as f64 / secs.max(1e-9)) as u64),
        if sum.truncated {
            ", logs truncated"
        } else {
            ""
        }
    );
    Ok(sum)
}

fn print_calls(calls: &[(&'static str, HRESULT)]) {
    let mut counts: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (c, hr) in calls {
        if !order.contains(c) {
            order.push(c);
        }
        *counts.entry((c, hr.to_string())).or_default() += 1;
    }
    for c in order {
        for ((name, hr), n) in counts.iter().filter(|((n, _), _)| *n == c) {
            println!("    {name:<38} x{n:<4} {hr}");
        }
    }
}

/// `certadm-emu demo`.
pub fn run(
    out: Option<PathBuf>,
    edb_size: Option<u64>,
    records: u32,
    trace: Option<PathBuf>,
) -> Result<(), String> {
    if let Some(t) = &trace {
        let f = std::fs::File::create(t).map_err(|e| format!("{}: {e}", t.display()))?;
        certadm_emu::api::trace::set_sink(Some(Box::new(std::io::BufWriter::new(f))));
    }
    let r = run_demo(out, edb_size, records);
    if let Some(t) = &trace {
        certadm_emu::api::trace::set_sink(None);
        println!(
            "call trace written to {} (check it with `certadm-emu lint`)",
            t.display()
        );
    }
    r
}

fn run_demo(out: Option<PathBuf>, edb_size: Option<u64>, records: u32) -> Result<(), String> {
    let temp;
    let dir = match out {
        Some(d) => d,
        None => {
            temp = tempfile::tempdir().map_err(|e| e.to_string())?;
            temp.path().to_path_buf()
        }
    };
    if dir.join("DataBase").exists() {
        return Err(format!(
            "{} already holds a backup (DataBase\\); pick an empty directory",
            dir.display()
        ));
    }
    let ca = default_ca(records, edb_size)?;
    println!(
        "Emulated CA {:?} on {} ({}), {} certificates, machine root {}",
        ca.ca_name(),
        ca.server_name(),
        ca.dns_name(),
        ca.record_count(),
        ca.machine().root().display()
    );
    ca.issue(150).map_err(|e| e.to_string())?;
    ca.revoke(7).map_err(|e| e.to_string())?;
    println!(
        "Issued 150 certificates and revoked request 7: log generation {}, {} numbered logs on disk\n",
        ca.current_position().generation,
        ca.log_generations().len()
    );
    let server = ca.server_name().to_string();
    let full = run_backup(
        &server,
        &dir,
        &BackupOptions::default(),
        "Full backup (certutil -backupDB)",
    )?;
    println!(
        "  last full backup recorded at log generation {:?}; logs left on disk: {:?}\n",
        ca.last_full_backup().map(|m| m.high_gen),
        ca.log_generations()
    );
    // Revoke one certificate of this batch: its request id depends on the
    // CA's size (`--records`), so it is taken from what `issue` returned.
    let batch = ca.issue(40).map_err(|e| e.to_string())?;
    let revoked = batch[batch.len() / 2];
    ca.revoke(revoked).map_err(|e| e.to_string())?;
    println!("Issued 40 more certificates and revoked request {revoked}\n");
    let inc_dir = dir.join("incremental-1");
    let opts = BackupOptions {
        incremental: true,
        truncate: false,
        ..Default::default()
    };
    run_backup(
        &server,
        &inc_dir,
        &opts,
        "Incremental backup (certutil -backupDB Incremental)",
    )?;
    let (expected, expected_digest) = (ca.record_count(), digest(&ca)?);
    let manifest = format!(
        "ca={}\nhost={}\nrecords={}\ndigest={}\n",
        ca.ca_name(),
        ca.dns_name(),
        expected,
        expected_digest
    );
    std::fs::write(dir.join(MANIFEST), manifest).map_err(|e| e.to_string())?;

    println!(
        "\nDisaster: the CA's disk is lost (service stopped, every database and log file deleted)"
    );
    ca.stop().map_err(|e| e.to_string())?;
    let wiped = ca.files().len();
    ca.wipe_files().map_err(|e| e.to_string())?;
    println!("  deleted {wiped} files\n");
    let _ = full;
    restore_and_verify(&ca, &dir, &expected, Some(&expected_digest))?;
    if temp_is(&dir) {
        println!("\n(backup directory was temporary; pass --out DIR to keep it and try `certadm-emu restore DIR`)");
    }
    Ok(())
}

fn temp_is(dir: &Path) -> bool {
    dir.starts_with(std::env::temp_dir())
}

fn incrementals(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("incremental-"))
        })
        .collect();
    v.sort();
    v
}

fn restore_and_verify(
    ca: &EmulatedCa,
    dir: &Path,
    expected_count: &usize,
    expected_digest: Option<&str>,
) -> Result<(), String> {
    let incs = incrementals(dir);
    println!(
        "Restore: full set {} + {} incremental set(s), through the Certadm ABI",
        dir.display(),
        incs.len()
    );
    let sum = restore_from_dirs(
        ca.server_name(),
        dir,
        &incs,
        &|p| ca.host_path(p),
        &RestoreOptions::default(),
    )
    .map_err(|e| format!("restore: {e}"))?;
    print_calls(&sum.calls);
    println!(
        "  {} files copied, registered log ranges {:?}",
        sum.files.len(),
        sum.registered
    );
    let started = Instant::now();
    let report = ca.start().map_err(|e| {
        format!(
            "starting the CA (recovery) failed with {}: {e}",
            e.hresult()
        )
    })?;
    println!(
        "Service start: hard recovery from checkpoint {}:{}, replayed generations {:?} ({} transactions) in {:.3} s",
        report.from.generation,
        report.from.pos,
        report.replayed_generations,
        report.transactions,
        started.elapsed().as_secs_f64()
    );
    check_complete(&report)?;
    let (got, got_digest) = (ca.record_count(), digest(ca)?);
    let ok_count = got == *expected_count;
    let ok_digest = expected_digest.is_none_or(|d| got_digest == d);
    println!(
        "Verify: {} records (expected {}), content digest {} {}",
        got,
        expected_count,
        got_digest,
        if ok_count && ok_digest {
            "matches"
        } else {
            "DIFFERS"
        }
    );
    if ok_count && ok_digest {
        println!("OK: every record is back");
        Ok(())
    } else {
        Err("the restored CA does not hold the backed-up records".into())
    }
}

/// Fails on a restore that ended before the end of its backup set (conformance rule
/// CR04): the CA started, without the transactions of the missing logs.
fn check_complete(report: &RecoveryReport) -> Result<(), String> {
    if let Some(b) = &report.backup_end {
        println!("  the restored chain reaches the end of {b}");
    }
    match &report.data_loss {
        None => Ok(()),
        Some(loss) => Err(format!(
            "DATA LOSS (conformance rule CR04): {loss}. The CA started with {} transactions replayed; copy every log the backup listed and restore again",
            report.transactions
        )),
    }
}

/// `certadm-emu restore DIR`.
pub fn restore(dir: &Path) -> Result<(), String> {
    let locs = read_locations(dir).map_err(|e| e.to_string())?;
    let unc = locs.database.trim_start_matches('\\');
    let host = unc.split('\\').next().unwrap_or("").to_string();
    let ca_name = locs
        .database
        .rsplit('\\')
        .next()
        .and_then(|f| f.strip_suffix(".edb"))
        .ok_or("certbkxp.dat names no .edb")?
        .to_string();
    let netbios = host.split('.').next().unwrap_or(&host).to_uppercase();
    let manifest = std::fs::read_to_string(dir.join(MANIFEST)).unwrap_or_default();
    let field = |k: &str| {
        manifest
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    let ca = EmulatedCa::builder()
        .server_name(&netbios)
        .dns_name(&host)
        .ca_name(&ca_name)
        .seed(0xF2E5)
        .records(0)
        .build()
        .map_err(|e| e.to_string())?;
    println!(
        "Fresh emulated CA {ca_name:?} on {netbios} ({host}), machine root {}",
        ca.machine().root().display()
    );
    let expected: usize = match field("records").and_then(|v| v.parse().ok()) {
        Some(n) => n,
        None => {
            println!("  (no {MANIFEST}: only the recovery checks will verify the set)");
            0
        }
    };
    let digest = field("digest");
    if expected == 0 {
        let sum = restore_from_dirs(
            ca.server_name(),
            dir,
            &incrementals(dir),
            &|p| ca.host_path(p),
            &RestoreOptions::default(),
        )
        .map_err(|e| format!("restore: {e}"))?;
        print_calls(&sum.calls);
        let r = ca
            .start()
            .map_err(|e| format!("recovery failed with {}: {e}", e.hresult()))?;
        check_complete(&r)?;
        println!(
            "OK: recovered {} records ({:?})",
            ca.record_count(),
            r.replayed_generations
        );
        return Ok(());
    }
    restore_and_verify(&ca, dir, &expected, digest.as_deref())
}

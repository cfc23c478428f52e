//! `certadm-emu bench`: four figures, each measured against a baseline run in the
//! same process on the same machine, so the ratios (not the absolute numbers) are
//! what to compare across machines.
//!
//! | # | emulator | baseline | target |
//! |---|---|---|---|
//! | 1 | `CertSrvBackupPrepareW` + `CertSrvBackupEnd` through the ABI | insert + remove in a `parking_lot::Mutex<Vec<Option<u64>>>` with a free list | ≤ 1.5× the time |
//! | 2 | full backup of a 1 GiB virtual `.edb` (512 KiB reads) | `File::read` of a 1 GiB file from the page cache | ≥ 0.8× the throughput |
//! | 3 | `CertSrvBackupRead` of the virtual `.edb` | `copy_from_slice` of 512 KiB buffers | ≥ 0.5× the throughput |
//! | 4 | VmRSS growth reading 4 GiB of a 1 TiB virtual `.edb` | a 16 MiB budget | ≤ 16 MiB |
//!
//! Every timed figure is the median of several rounds, emulator and baseline rounds
//! interleaved so that load from other processes hits both alike. `--quick` uses
//! 64 MiB instead of 1 GiB and 256 MiB instead of 4 GiB.

use super::human;
use certadm_emu::abi::{
    last_error, CertSrvBackupClose, CertSrvBackupEnd, CertSrvBackupFree,
    CertSrvBackupGetDatabaseNamesW, CertSrvBackupOpenFileW, CertSrvBackupPrepareW,
    CertSrvBackupRead,
};
use certadm_emu::client::{backup_to_dir, BackupOptions};
use certadm_emu::core::consts::{CSBACKUP_TYPE_FULL, CSBACKUP_TYPE_LOGS_ONLY};
use certadm_emu::core::wide::to_wide_nul;
use certadm_emu::{EmulatedCa, WideList, HRESULT};
use core::ffi::c_void;
use parking_lot::Mutex;
use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// The read size of the Microsoft sample and of certutil.
const READ_SIZE: usize = 512 << 10;
/// The RSS budget of figure 4.
const RSS_BUDGET: u64 = 16 << 20;
const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;

/// Sizes and round counts of one run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// The virtual `.edb` of figures 2 and 3, and the real file of the baseline.
    edb: u64,
    /// Bytes read from the 1 TiB `.edb` in figure 4.
    rss_read: u64,
    /// Rounds per timed figure (the median is reported).
    rounds: usize,
    /// Target duration of one round of figure 1.
    round_time: Duration,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                edb: 64 << 20,
                rss_read: 256 << 20,
                rounds: 5,
                round_time: Duration::from_millis(40),
            }
        } else {
            Plan {
                edb: 1 << 30,
                rss_read: 4 << 30,
                rounds: 7,
                round_time: Duration::from_millis(150),
            }
        }
    }
}

// ----- the ABI, as a client drives it ------------------------------------------------

fn check(call: &str, hr: i32) -> Result<(), String> {
    if hr < 0 {
        Err(format!(
            "{call} failed with {}{}",
            HRESULT(hr),
            last_error().map(|e| format!(": {e}")).unwrap_or_default()
        ))
    } else {
        Ok(())
    }
}

fn prepare(wserver: &[u16], flags: u32) -> Result<*mut c_void, String> {
    let mut h = std::ptr::null_mut();
    // SAFETY: a NUL-terminated string and a valid out-pointer.
    let hr = unsafe { CertSrvBackupPrepareW(wserver.as_ptr(), 0, flags, &mut h) };
    check("CertSrvBackupPrepareW", hr)?;
    Ok(h)
}

fn end(h: *mut c_void) -> Result<(), String> {
    // SAFETY: any handle value is accepted.
    check("CertSrvBackupEnd", unsafe { CertSrvBackupEnd(h) })
}

/// The `.edb` name of a full-backup session, NUL-terminated UTF-16 without its prefix.
fn database_name(h: *mut c_void) -> Result<Vec<u16>, String> {
    let mut p: *mut u16 = std::ptr::null_mut();
    let mut cb = 0u32;
    // SAFETY: valid out-pointers.
    let hr = unsafe { CertSrvBackupGetDatabaseNamesW(h, &mut p, &mut cb) };
    check("CertSrvBackupGetDatabaseNamesW", hr)?;
    // SAFETY: the emulator returned `cb` bytes at `p`; freed right after the copy.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, cb as usize) }.to_vec();
    // SAFETY: a live list of the emulator.
    unsafe { CertSrvBackupFree(p as *mut c_void) };
    let entries = WideList::parse_bytes(&bytes, true)
        .ok_or("CertSrvBackupGetDatabaseNamesW returned a malformed list")?;
    let first = entries
        .first()
        .ok_or("CertSrvBackupGetDatabaseNamesW returned an empty list")?;
    Ok(to_wide_nul(&first.path))
}

fn open(h: *mut c_void, name: &[u16]) -> Result<u64, String> {
    let mut size = 0i64;
    // SAFETY: a NUL-terminated string and a valid out-pointer.
    let hr = unsafe { CertSrvBackupOpenFileW(h, name.as_ptr(), READ_SIZE as u32, &mut size) };
    check("CertSrvBackupOpenFileW", hr)?;
    Ok(size as u64)
}

fn read(h: *mut c_void, buf: &mut [u8]) -> Result<usize, String> {
    let mut n = 0u32;
    // SAFETY: `buf` is valid for `buf.len()` bytes; valid out-pointer.
    let hr =
        unsafe { CertSrvBackupRead(h, buf.as_mut_ptr() as *mut c_void, buf.len() as u32, &mut n) };
    check("CertSrvBackupRead", hr)?;
    Ok(n as usize)
}

fn close(h: *mut c_void) -> Result<(), String> {
    // SAFETY: any handle value is accepted.
    check("CertSrvBackupClose", unsafe { CertSrvBackupClose(h) })
}

/// A full-backup session with the `.edb` open.
struct OpenEdb {
    h: *mut c_void,
    size: u64,
}

impl OpenEdb {
    fn new(wserver: &[u16]) -> Result<OpenEdb, String> {
        let h = prepare(wserver, CSBACKUP_TYPE_FULL)?;
        let opened = database_name(h).and_then(|name| open(h, &name));
        match opened {
            Ok(size) => Ok(OpenEdb { h, size }),
            Err(e) => {
                let _ = end(h);
                Err(e)
            }
        }
    }

    /// Reads up to `limit` bytes (to EOF at most), discarding them; returns the count.
    fn read_up_to(&mut self, buf: &mut [u8], limit: u64) -> Result<u64, String> {
        let mut done = 0u64;
        while done < limit {
            let n = read(self.h, buf)?;
            black_box(&buf[..n]);
            done += n as u64;
            if n < buf.len() {
                break;
            }
        }
        Ok(done)
    }

    fn finish(self) -> Result<(), String> {
        close(self.h)?;
        end(self.h)
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
fn calibrate(
    f: &mut dyn FnMut(u64) -> Result<Duration, String>,
    target: Duration,
) -> Result<u64, String> {
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

fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The baseline table of figure 1: a slab (a `Vec` of slots with a free list).
#[derive(Default)]
struct FreeList {
    slots: Vec<Option<u64>>,
    free: Vec<usize>,
}

impl FreeList {
    fn insert(&mut self, v: u64) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(v);
                i
            }
            None => {
                self.slots.push(Some(v));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, k: usize) -> Option<u64> {
        let v = self.slots.get_mut(k)?.take()?;
        self.free.push(k);
        Some(v)
    }
}

// ----- the figures ------------------------------------------------------------------

/// One row of the table.
struct Row {
    figure: String,
    emulator: String,
    baseline: String,
    ratio: f64,
    target: String,
    /// `None` for an informational row.
    pass: Option<bool>,
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

/// Figure 1: time per Prepare+End pair against time per insert+remove pair.
/// Also returns the number of pairs run.
fn prepare_end(
    wserver: &[u16],
    flags: u32,
    label: &str,
    plan: &Plan,
    informational: bool,
) -> Result<(Row, u64), String> {
    let mut pairs = 0u64;
    let mut emu = |n: u64| -> Result<Duration, String> {
        pairs += n;
        let t = Instant::now();
        for _ in 0..n {
            let h = prepare(black_box(wserver), flags)?;
            end(black_box(h))?;
        }
        Ok(t.elapsed())
    };
    let table = Mutex::new(FreeList::default());
    let mut base = |n: u64| -> Result<Duration, String> {
        let t = Instant::now();
        for i in 0..n {
            let k = table.lock().insert(black_box(i));
            black_box(table.lock().remove(black_box(k)));
        }
        Ok(t.elapsed())
    };
    let n_emu = calibrate(&mut emu, plan.round_time)?;
    let n_base = calibrate(&mut base, plan.round_time)?;
    let (mut e, mut b) = (Vec::new(), Vec::new());
    for _ in 0..plan.rounds {
        e.push(emu(n_emu)?.as_nanos() as f64 / n_emu as f64);
        b.push(base(n_base)?.as_nanos() as f64 / n_base as f64);
    }
    let (e, b) = (median(e), median(b));
    let ratio = e / b;
    let row = Row {
        figure: label.into(),
        emulator: format!("{}/pair", ns(e)),
        baseline: format!("{}/pair", ns(b)),
        ratio,
        target: "<= 1.5x".into(),
        pass: (!informational).then_some(ratio <= 1.5),
    };
    Ok((row, pairs))
}

/// Writes the baseline file of figure 2 (generated, incompressible bytes) and reads it
/// once so that it is in the page cache.
fn write_real_file(path: &Path, size: u64) -> Result<(), String> {
    let mut f = File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    let mut chunk = vec![0u8; 8 << 20];
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(chunk.len() as u64) as usize;
        certadm_emu::ca::gen::fill(0xF11E, done, &mut chunk[..n]);
        f.write_all(&chunk[..n])
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        done += n as u64;
    }
    f.sync_all().ok();
    drop(f);
    let mut buf = vec![0u8; READ_SIZE];
    read_real_file(path, &mut buf)?;
    Ok(())
}

fn read_real_file(path: &Path, buf: &mut [u8]) -> Result<u64, String> {
    let mut f = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut done = 0u64;
    loop {
        let n = f
            .read(buf)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if n == 0 {
            return Ok(done);
        }
        black_box(&buf[..n]);
        done += n as u64;
    }
}

/// Figure 2: a whole full-backup session (Prepare, GetDatabaseNames, OpenFile, Read
/// to EOF, Close, End) against reading a real file of the same size from the page cache.
fn full_backup(wserver: &[u16], plan: &Plan) -> Result<Row, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))?;
    let path = dir.path().join("baseline.edb");
    // The emulator's logical size is what OpenFile reports; the real file matches it.
    let probe = OpenEdb::new(wserver)?;
    let size = probe.size;
    probe.finish()?;
    write_real_file(&path, size)?;
    let mut buf = vec![1u8; READ_SIZE];
    let (mut e, mut b) = (Vec::new(), Vec::new());
    for round in 0..=plan.rounds {
        let t = Instant::now();
        let mut s = OpenEdb::new(wserver)?;
        let got = s.read_up_to(&mut buf, u64::MAX)?;
        s.finish()?;
        let te = t.elapsed().as_secs_f64();
        if got != size {
            return Err(format!("the backup read {got} bytes of {size}"));
        }
        let t = Instant::now();
        let got = read_real_file(&path, &mut buf)?;
        let tb = t.elapsed().as_secs_f64();
        if got != size {
            return Err(format!("the baseline read {got} bytes of {size}"));
        }
        // Round 0 warms both up.
        if round > 0 {
            e.push(size as f64 / te);
            b.push(size as f64 / tb);
        }
    }
    let (e, b) = (median(e), median(b));
    let ratio = e / b;
    Ok(Row {
        figure: format!("2  full backup of {} .edb vs File::read", human(size)),
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
fn read_vs_memcpy(wserver: &[u16], plan: &Plan) -> Result<Vec<Row>, String> {
    let mut dst = vec![1u8; READ_SIZE];
    let small_src = vec![2u8; READ_SIZE];
    let big_src_len = (256usize << 20).min(plan.edb as usize).max(READ_SIZE);
    let mut big_src = vec![0u8; big_src_len];
    certadm_emu::ca::gen::fill(3, 0, &mut big_src);
    let (mut e, mut b_small, mut b_big) = (Vec::new(), Vec::new(), Vec::new());
    let mut size = 0u64;
    for round in 0..=plan.rounds {
        let mut s = OpenEdb::new(wserver)?;
        let t = Instant::now();
        size = s.read_up_to(&mut dst, u64::MAX)?;
        let te = t.elapsed().as_secs_f64();
        s.finish()?;
        let blocks = size.div_ceil(READ_SIZE as u64) as usize;
        let t = Instant::now();
        for _ in 0..blocks {
            dst.copy_from_slice(black_box(&small_src));
            black_box(&mut dst);
        }
        let ts = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let per_pass = big_src_len / READ_SIZE;
        for i in 0..blocks {
            let off = (i % per_pass) * READ_SIZE;
            dst.copy_from_slice(black_box(&big_src[off..off + READ_SIZE]));
            black_box(&mut dst);
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
            figure: format!("3  CertSrvBackupRead ({}) vs memcpy 512 KiB", human(size)),
            emulator: gibs(e),
            baseline: gibs(bs),
            ratio: e / bs,
            target: ">= 0.5x".into(),
            pass: Some(e / bs >= 0.5),
        },
        Row {
            figure: format!(
                "3b  (info) same vs memcpy from a {} image",
                human(big_src_len as u64)
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
fn rss_growth(plan: &Plan) -> Result<Row, String> {
    let ca = EmulatedCa::builder()
        .edb_size(1 << 40)
        .build()
        .map_err(|e| format!("creating the 1 TiB CA: {e}"))?;
    let wserver = to_wide_nul(ca.server_name());
    let mut buf = vec![1u8; READ_SIZE];
    buf.fill(3);
    let mut s = OpenEdb::new(&wserver)?;
    // One read first, so that anything allocated once per open file is in the baseline.
    s.read_up_to(&mut buf, 1)?;
    let before = rss_bytes().ok_or("cannot read VmRSS from /proc/self/status")?;
    let mut peak = before;
    let mut done = 0u64;
    let mut reads = 0u64;
    while done < plan.rss_read {
        let n = read(s.h, &mut buf)?;
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
        figure: format!("4  VmRSS growth reading {} of a 1 TiB .edb", human(done)),
        emulator: format!("+{:.2} MiB", growth as f64 / MIB),
        baseline: format!("16 MiB budget (RSS before {:.1} MiB)", before as f64 / MIB),
        ratio,
        target: "<= 1.0 (16 MiB)".into(),
        pass: Some(growth <= RSS_BUDGET),
    })
}

fn print_table(rows: &[Row]) {
    let w0 = rows
        .iter()
        .map(|r| r.figure.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let w1 = rows
        .iter()
        .map(|r| r.emulator.chars().count())
        .max()
        .unwrap_or(8)
        .max(8);
    let w2 = rows
        .iter()
        .map(|r| r.baseline.chars().count())
        .max()
        .unwrap_or(8)
        .max(8);
    println!();
    println!(
        "{:<w0$}  {:>w1$}  {:>w2$}  {:>9}  {:<16}  result",
        "figure", "emulator", "baseline", "ratio", "target"
    );
    println!("{}", "-".repeat(w0 + w1 + w2 + 9 + 16 + 16));
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
        println!(
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
        );
    }
}

/// Runs the benchmarks and prints the table. Missed targets are reported, not errors.
pub fn run(quick: bool) -> Result<(), String> {
    let plan = Plan::new(quick);
    if cfg!(debug_assertions) {
        println!(
            "note: this is a debug build; run `cargo run --release -- bench` for real numbers"
        );
    }
    println!(
        "certadm-emu bench{}: .edb {}, RSS read {}, median of {} rounds",
        if quick { " --quick" } else { "" },
        human(plan.edb),
        human(plan.rss_read),
        plan.rounds
    );
    let mut rows = Vec::new();

    println!("[1/4] Prepare+End through the ABI vs Mutex<free list> insert+remove ...");
    {
        let ca = EmulatedCa::builder()
            .build()
            .map_err(|e| format!("creating the CA: {e}"))?;
        let wserver = to_wide_nul(ca.server_name());
        rows.push(
            prepare_end(
                &wserver,
                CSBACKUP_TYPE_FULL,
                "1  Prepare(FULL)+End vs Mutex<free list>",
                &plan,
                false,
            )?
            .0,
        );
        // An incremental session needs a full backup first.
        let dir =
            tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))?;
        backup_to_dir(
            ca.server_name(),
            dir.path(),
            &BackupOptions::default(),
            &mut |_, _, _| {},
        )
        .map_err(|e| format!("the full backup before figure 1b: {e}"))?;
        let before = rss_bytes().unwrap_or(0);
        let (row, pairs) = prepare_end(
            &wserver,
            CSBACKUP_TYPE_LOGS_ONLY,
            "1b (info) Prepare(LOGS_ONLY)+End, same",
            &plan,
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
        rows.push(Row {
            figure: format!("   ({pairs} pairs; +{:.1} MiB in total)", kept as f64 / MIB),
            emulator: String::new(),
            baseline: String::new(),
            ratio: f64::NAN,
            target: String::new(),
            pass: None,
        });
        // Without the call trace and the conformance checker (EmulatedCa::set_tracing).
        ca.set_tracing(false);
        rows.push(
            prepare_end(
                &wserver,
                CSBACKUP_TYPE_FULL,
                "1d (info) Prepare(FULL)+End, tracing off",
                &plan,
                true,
            )?
            .0,
        );
        ca.set_tracing(true);
    }

    println!(
        "[2/4] full backup of a {} .edb vs File::read from the page cache ...",
        human(plan.edb)
    );
    let ca = EmulatedCa::builder()
        .edb_size(plan.edb)
        .build()
        .map_err(|e| format!("creating the CA: {e}"))?;
    let wserver = to_wide_nul(ca.server_name());
    rows.push(full_backup(&wserver, &plan)?);

    println!("[3/4] CertSrvBackupRead vs copy_from_slice ...");
    rows.extend(read_vs_memcpy(&wserver, &plan)?);
    drop(ca);

    println!(
        "[4/4] VmRSS while reading {} of a 1 TiB .edb ...",
        human(plan.rss_read)
    );
    rows.push(rss_growth(&plan)?);

    println!("[5-7] server mode: loopback TCP, in-process, 32 clients ...");
    rows.extend(server_figures(&plan)?);

    print_table(&rows);
    let scored: Vec<bool> = rows.iter().filter_map(|r| r.pass).collect();
    println!(
        "\n{} of {} targets met (ratios against baselines measured in this run; timing is noisy on a loaded machine)",
        scored.iter().filter(|p| **p).count(),
        scored.len()
    );
    Ok(())
}

// ----- server mode (issue 7) ----------------------------------------------------------

use certadm_emu::config::Config;
use certadm_emu::remote::client::RemoteClient;
use certadm_emu::remote::server::{Server, ServerOptions};

fn start_server(config: &str) -> Result<certadm_emu::remote::server::RunningServer, String> {
    let config = Config::from_json(config)?;
    let server = Server::bind(
        "127.0.0.1:0",
        ServerOptions {
            secret: None,
            config: Some(config),
            quiet: true,
        },
    )
    .map_err(|e| format!("starting the server: {e}"))?;
    Ok(server.spawn())
}

/// A bare TCP echo peer on loopback: each request is a u32 length and that many bytes;
/// the reply is `reply` bytes. Returns its address.
fn echo_peer(reply: usize) -> Result<String, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?.to_string();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.set_nodelay(true);
            let out = vec![7u8; reply];
            let mut len = [0u8; 4];
            let mut buf = vec![0u8; 1 << 16];
            while s.read_exact(&mut len).is_ok() {
                let n = u32::from_le_bytes(len) as usize;
                if n > buf.len() || s.read_exact(&mut buf[..n]).is_err() {
                    break;
                }
                let mut msg = (reply as u32).to_le_bytes().to_vec();
                msg.extend_from_slice(&out);
                if s.write_all(&msg).is_err() {
                    break;
                }
            }
        }
    });
    Ok(addr)
}

/// Figures 5–7: the server against bare loopback TCP, against in-process, and with 32
/// clients at once.
fn server_figures(plan: &Plan) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let err = |e: certadm_emu::remote::client::RemoteError| e.to_string();

    // 5. Prepare+End through the server vs two bare request/response round trips of
    //    about the same size (a 64-byte request and a 32-byte reply each).
    let srv = start_server(r#"{"machines": [{"name": "BENCH5"}]}"#)?;
    let client = RemoteClient::connect(srv.addr(), None).map_err(err)?;
    let mut emu = |n: u64| -> Result<Duration, String> {
        let t = Instant::now();
        for _ in 0..n {
            let h = client
                .backup_prepare("BENCH5", 0, CSBACKUP_TYPE_FULL)
                .map_err(err)?;
            client.backup_end(h).map_err(err)?;
        }
        Ok(t.elapsed())
    };
    let peer = echo_peer(32)?;
    let mut sock = std::net::TcpStream::connect(&peer).map_err(|e| e.to_string())?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut req = 60u32.to_le_bytes().to_vec();
    req.extend_from_slice(&[1u8; 60]);
    let mut reply = [0u8; 36];
    let mut base = |n: u64| -> Result<Duration, String> {
        let t = Instant::now();
        for _ in 0..2 * n {
            sock.write_all(&req).map_err(|e| e.to_string())?;
            sock.read_exact(&mut reply).map_err(|e| e.to_string())?;
        }
        Ok(t.elapsed())
    };
    let n_emu = calibrate(&mut emu, plan.round_time)?;
    let n_base = calibrate(&mut base, plan.round_time)?;
    let (mut e, mut b) = (Vec::new(), Vec::new());
    for _ in 0..plan.rounds {
        e.push(emu(n_emu)?.as_nanos() as f64 / n_emu as f64);
        b.push(base(n_base)?.as_nanos() as f64 / n_base as f64);
    }
    let (e, b) = (median(e), median(b));
    rows.push(Row {
        figure: "5  server: Prepare+End vs 2 bare TCP round trips".into(),
        emulator: format!("{}/pair", ns(e)),
        baseline: format!("{}/pair", ns(b)),
        ratio: e / b,
        target: "<= 2x".into(),
        pass: Some(e / b <= 2.0),
    });
    drop(client);
    srv.stop().map_err(|e| e.to_string())?;

    // 6. A full backup of the .edb with 512 KiB reads through the server vs in-process.
    let srv = start_server(&format!(
        r#"{{"machines": [{{"name": "BENCH6", "ca": {{"edb_size": {}}}}}]}}"#,
        plan.edb
    ))?;
    let client = RemoteClient::connect(srv.addr(), None).map_err(err)?;
    let local = EmulatedCa::builder()
        .edb_size(plan.edb)
        .build()
        .map_err(|e| format!("creating the CA: {e}"))?;
    let wlocal = to_wide_nul(local.server_name());
    let mut buf = vec![0u8; READ_SIZE];
    let (mut e, mut b) = (Vec::new(), Vec::new());
    for round in 0..=plan.rounds {
        let t = Instant::now();
        let h = client
            .backup_prepare("BENCH6", 0, CSBACKUP_TYPE_FULL)
            .map_err(err)?;
        let name = client
            .backup_get_database_names(h)
            .map_err(err)?
            .entries(true)[0]
            .path
            .clone();
        let size = client.backup_open_file(h, &name, 0).map_err(err)?;
        let mut got = 0u64;
        loop {
            let n = client.backup_read(h, &mut buf).map_err(err)?;
            got += n as u64;
            if n < buf.len() {
                break;
            }
        }
        client.backup_close(h).map_err(err)?;
        client.backup_end(h).map_err(err)?;
        let te = t.elapsed().as_secs_f64();
        if got != size {
            return Err(format!("the remote backup read {got} bytes of {size}"));
        }
        let t = Instant::now();
        let mut s = OpenEdb::new(&wlocal)?;
        let got_local = s.read_up_to(&mut buf, u64::MAX)?;
        s.finish()?;
        let tb = t.elapsed().as_secs_f64();
        if round > 0 {
            e.push(got as f64 / te);
            b.push(got_local as f64 / tb);
        }
    }
    let (e, b) = (median(e), median(b));
    rows.push(Row {
        figure: format!("6  server: {} backup vs in-process", human(plan.edb)),
        emulator: gibs(e),
        baseline: gibs(b),
        ratio: e / b,
        target: ">= 0.5x".into(),
        pass: Some(e / b >= 0.5),
    });
    drop(client);
    srv.stop().map_err(|e| e.to_string())?;

    // 7. 32 clients, each with its own CA, vs one client: aggregate calls per second.
    let machines: Vec<String> = (0..32).map(|i| format!("BENCH7N{i:02}")).collect();
    let config = format!(
        r#"{{"machines": [{}]}}"#,
        machines
            .iter()
            .map(|m| format!(r#"{{"name": "{m}"}}"#))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let srv = start_server(&config)?;
    let addr = srv.addr().to_string();
    let window = plan.round_time * 2;
    let rate = |clients: usize| -> Result<f64, String> {
        let handles: Vec<_> = machines[..clients]
            .iter()
            .cloned()
            .map(|m| {
                let addr = addr.clone();
                std::thread::spawn(move || -> Result<u64, String> {
                    let c = RemoteClient::connect(&addr, None).map_err(|e| e.to_string())?;
                    let t = Instant::now();
                    let mut calls = 0u64;
                    while t.elapsed() < window {
                        c.is_server_online(&m).map_err(|e| e.to_string())?;
                        calls += 1;
                    }
                    Ok(calls)
                })
            })
            .collect();
        let mut total = 0u64;
        for h in handles {
            total += h
                .join()
                .map_err(|_| "a client thread panicked".to_string())??;
        }
        Ok(total as f64 / window.as_secs_f64())
    };
    let one = rate(1)?;
    let many = rate(32)?;
    rows.push(Row {
        figure: "7  server: 32 clients vs 1 (calls/s, scaling)".into(),
        emulator: format!("{:.0}/s", many),
        baseline: format!("{:.0}/s", one),
        ratio: many / one,
        target: "report".into(),
        pass: None,
    });
    srv.stop().map_err(|e| e.to_string())?;
    Ok(rows)
}

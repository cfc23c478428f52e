//! Criterion benchmarks of the backup path, each beside the baseline it is judged
//! against (the targets are ratios; `certadm-emu bench` prints them as a table):
//!
//! 1. `prepare_end`: `CertSrvBackupPrepareW` + `CertSrvBackupEnd` through the ABI
//!    (full and logs-only) vs insert + remove in a `parking_lot::Mutex<slab::Slab<u64>>`
//!    (target ≤ 1.5× the time).
//! 2. `full_backup_1GiB`: a full-backup session reading a 1 GiB virtual `.edb` in
//!    512 KiB reads vs `File::read` of a real 1 GiB file from the page cache
//!    (target ≥ 0.8× the throughput).
//! 3. `read_512KiB`: one `CertSrvBackupRead` of the virtual `.edb` vs
//!    `copy_from_slice` of 512 KiB (target ≥ 0.5× the throughput); `gen_fill_only`
//!    times the padding generator alone, to split the read's time.
//!
//! Measurement times are short so the whole run stays within a few minutes on two cores.

use certadm_emu::abi::{
    CertSrvBackupClose, CertSrvBackupEnd, CertSrvBackupFree, CertSrvBackupGetDatabaseNamesW,
    CertSrvBackupOpenFileW, CertSrvBackupPrepareW, CertSrvBackupRead,
};
use certadm_emu::client::{backup_to_dir, BackupOptions};
use certadm_emu::core::consts::{CSBACKUP_TYPE_FULL, CSBACKUP_TYPE_LOGS_ONLY};
use certadm_emu::core::wide::to_wide_nul;
use certadm_emu::{EmulatedCa, WideList};
use core::ffi::c_void;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

const READ_SIZE: usize = 512 << 10;
const EDB_SIZE: u64 = 1 << 30;

fn ok(call: &str, hr: i32) {
    assert!(
        hr >= 0,
        "{call} failed with {hr:#010x}: {:?}",
        certadm_emu::abi::last_error()
    );
}

fn prepare(wserver: &[u16], flags: u32) -> *mut c_void {
    let mut h = std::ptr::null_mut();
    // SAFETY: a NUL-terminated string and a valid out-pointer.
    ok("CertSrvBackupPrepareW", unsafe {
        CertSrvBackupPrepareW(wserver.as_ptr(), 0, flags, &mut h)
    });
    h
}

fn end(h: *mut c_void) {
    // SAFETY: any handle value is accepted.
    ok("CertSrvBackupEnd", unsafe { CertSrvBackupEnd(h) });
}

/// Prepares a full backup and opens the `.edb`; returns the handle and the file size.
fn open_edb(wserver: &[u16]) -> (*mut c_void, u64) {
    let h = prepare(wserver, CSBACKUP_TYPE_FULL);
    let mut p: *mut u16 = std::ptr::null_mut();
    let mut cb = 0u32;
    // SAFETY: valid out-pointers.
    ok("CertSrvBackupGetDatabaseNamesW", unsafe {
        CertSrvBackupGetDatabaseNamesW(h, &mut p, &mut cb)
    });
    // SAFETY: the emulator returned `cb` bytes at `p`, freed right after the copy.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, cb as usize) }.to_vec();
    // SAFETY: a live list of the emulator.
    unsafe { CertSrvBackupFree(p as *mut c_void) };
    let entries = WideList::parse_bytes(&bytes, true).expect("a well-formed list");
    let name = to_wide_nul(&entries[0].path);
    let mut size = 0i64;
    // SAFETY: a NUL-terminated string and a valid out-pointer.
    ok("CertSrvBackupOpenFileW", unsafe {
        CertSrvBackupOpenFileW(h, name.as_ptr(), READ_SIZE as u32, &mut size)
    });
    (h, size as u64)
}

fn read(h: *mut c_void, buf: &mut [u8]) -> usize {
    let mut n = 0u32;
    // SAFETY: `buf` is valid for its length; valid out-pointer.
    ok("CertSrvBackupRead", unsafe {
        CertSrvBackupRead(h, buf.as_mut_ptr() as *mut c_void, buf.len() as u32, &mut n)
    });
    n as usize
}

fn close_and_end(h: *mut c_void) {
    // SAFETY: any handle value is accepted.
    ok("CertSrvBackupClose", unsafe { CertSrvBackupClose(h) });
    end(h);
}

fn prepare_end(c: &mut Criterion) {
    let ca = EmulatedCa::builder().build().expect("a CA");
    let wserver = to_wide_nul(ca.server_name());
    let mut g = c.benchmark_group("prepare_end");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("abi_full", |b| {
        b.iter(|| end(black_box(prepare(black_box(&wserver), CSBACKUP_TYPE_FULL))))
    });
    // An incremental session needs a full backup first.
    let dir = tempfile::tempdir().expect("a temporary directory");
    backup_to_dir(
        ca.server_name(),
        dir.path(),
        &BackupOptions::default(),
        &mut |_, _, _| {},
    )
    .expect("a full backup");
    g.bench_function("abi_logs_only", |b| {
        b.iter(|| {
            end(black_box(prepare(
                black_box(&wserver),
                CSBACKUP_TYPE_LOGS_ONLY,
            )))
        })
    });
    let slab = parking_lot::Mutex::new(slab::Slab::<u64>::new());
    let mut i = 0u64;
    g.bench_function("baseline_mutex_slab", |b| {
        b.iter(|| {
            i += 1;
            let k = slab.lock().insert(black_box(i));
            black_box(slab.lock().remove(black_box(k)))
        })
    });
    g.finish();
}

fn write_real_file(path: &Path, size: u64) {
    let mut f = File::create(path).expect("creating the baseline file");
    let mut chunk = vec![0u8; 8 << 20];
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(chunk.len() as u64) as usize;
        certadm_emu::ca::gen::fill(0xF11E, done, &mut chunk[..n]);
        f.write_all(&chunk[..n]).expect("writing the baseline file");
        done += n as u64;
    }
}

fn read_real_file(path: &Path, buf: &mut [u8]) -> u64 {
    let mut f = File::open(path).expect("opening the baseline file");
    let mut done = 0u64;
    loop {
        let n = f.read(buf).expect("reading the baseline file");
        if n == 0 {
            return done;
        }
        black_box(&buf[..n]);
        done += n as u64;
    }
}

fn full_backup(c: &mut Criterion) {
    let ca = EmulatedCa::builder()
        .edb_size(EDB_SIZE)
        .build()
        .expect("a CA");
    let wserver = to_wide_nul(ca.server_name());
    let (h, size) = open_edb(&wserver);
    close_and_end(h);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("baseline.edb");
    write_real_file(&path, size);
    let mut buf = vec![1u8; READ_SIZE];
    // Warm the page cache.
    assert_eq!(read_real_file(&path, &mut buf), size);

    let mut g = c.benchmark_group("full_backup_1GiB");
    g.throughput(Throughput::Bytes(size))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8));
    g.bench_function("abi", |b| {
        b.iter(|| {
            let (h, _) = open_edb(&wserver);
            let mut done = 0u64;
            loop {
                let n = read(h, &mut buf);
                black_box(&buf[..n]);
                done += n as u64;
                if n < buf.len() {
                    break;
                }
            }
            close_and_end(h);
            assert_eq!(done, size);
        })
    });
    g.bench_function("baseline_file_read", |b| {
        b.iter(|| assert_eq!(read_real_file(&path, &mut buf), size))
    });
    g.finish();
}

fn read_512k(c: &mut Criterion) {
    // 1 TiB: criterion never reaches the end of the file.
    let ca = EmulatedCa::builder()
        .edb_size(1 << 40)
        .build()
        .expect("a CA");
    let wserver = to_wide_nul(ca.server_name());
    let (h, _) = open_edb(&wserver);
    let mut dst = vec![1u8; READ_SIZE];
    let src = vec![2u8; READ_SIZE];
    let mut g = c.benchmark_group("read_512KiB");
    g.throughput(Throughput::Bytes(READ_SIZE as u64))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("abi_virtual_edb", |b| {
        b.iter(|| {
            let n = read(h, &mut dst);
            assert_eq!(n, READ_SIZE);
            black_box(&dst);
        })
    });
    // The generator alone, without the ABI around it (where the time of abi_virtual_edb goes).
    g.bench_function("gen_fill_only", |b| {
        let mut offset = 0u64;
        b.iter(|| {
            certadm_emu::ca::gen::fill(7, offset, black_box(&mut dst));
            offset += READ_SIZE as u64;
        })
    });
    g.bench_function("baseline_memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
    g.finish();
    close_and_end(h);
}

criterion_group!(benches, prepare_end, full_backup, read_512k);
criterion_main!(benches);

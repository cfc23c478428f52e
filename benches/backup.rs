//! Criterion benchmarks of the backup path, each beside the baseline it is judged
//! against. What is timed is `certadm_emu::bench::work`, the same functions as the ratio
//! table of `certadm-emu bench`, whose figures and targets are the table of
//! `certadm_emu::bench` (`src/bench/figures.json`):
//!
//! 1. `prepare_end`: figures 1, 1b and 1d (`CertSrvBackupPrepareW` + `CertSrvBackupEnd`
//!    through the ABI vs insert + remove in a `parking_lot::Mutex<slab::Slab>`).
//! 2. `full_backup_1GiB`: figure 2 (a full-backup session reading a 1 GiB virtual `.edb`
//!    in 512 KiB reads vs `File::read` of a real 1 GiB file from the page cache).
//! 3. `read_512KiB`: figure 3 (one `CertSrvBackupRead` of the virtual `.edb` vs
//!    `copy_from_slice` of 512 KiB); `gen_fill_only` times the padding generator alone,
//!    to split the read's time.
//!
//! Measurement times are short so the whole run stays within a few minutes on two cores.

use certadm_emu::abi::call::WStr;
use certadm_emu::bench::work::{self, Baseline, OpenEdb, READ_SIZE};
use certadm_emu::client::{backup_to_dir, BackupOptions};
use certadm_emu::core::consts::{CSBACKUP_TYPE_FULL, CSBACKUP_TYPE_LOGS_ONLY};
use certadm_emu::EmulatedCa;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use std::hint::black_box;
use std::time::Duration;

const EDB_SIZE: u64 = 1 << 30;

fn prepare_end(c: &mut Criterion) {
    let ca = EmulatedCa::builder().build().expect("a CA");
    let server = WStr::new(ca.server_name());
    let mut g = c.benchmark_group("prepare_end");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("abi_full", |b| {
        b.iter(|| work::prepare_end(&server, CSBACKUP_TYPE_FULL).unwrap())
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
        b.iter(|| work::prepare_end(&server, CSBACKUP_TYPE_LOGS_ONLY).unwrap())
    });
    ca.set_tracing(false);
    g.bench_function("abi_full_tracing_off", |b| {
        b.iter(|| work::prepare_end(&server, CSBACKUP_TYPE_FULL).unwrap())
    });
    ca.set_tracing(true);
    let table = Baseline::default();
    let mut i = 0u64;
    g.bench_function("baseline_mutex_slab", |b| {
        b.iter(|| {
            i += 1;
            work::baseline_pair(&table, i)
        })
    });
    g.finish();
}

fn full_backup(c: &mut Criterion) {
    let ca = EmulatedCa::builder()
        .edb_size(EDB_SIZE)
        .build()
        .expect("a CA");
    let server = WStr::new(ca.server_name());
    let probe = OpenEdb::new(&server).unwrap();
    let size = probe.size();
    probe.finish().unwrap();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("baseline.edb");
    // Also reads it once, into the page cache.
    work::write_real_file(&path, size).unwrap();
    let mut buf = vec![1u8; READ_SIZE];

    let mut g = c.benchmark_group("full_backup_1GiB");
    g.throughput(Throughput::Bytes(size))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8));
    g.bench_function("abi", |b| {
        b.iter(|| assert_eq!(work::full_backup(&server, &mut buf).unwrap(), size))
    });
    g.bench_function("baseline_file_read", |b| {
        b.iter(|| assert_eq!(work::read_real_file(&path, &mut buf).unwrap(), size))
    });
    g.finish();
}

fn read_512k(c: &mut Criterion) {
    // 1 TiB: criterion never reaches the end of the file.
    let ca = EmulatedCa::builder()
        .edb_size(1 << 40)
        .build()
        .expect("a CA");
    let server = WStr::new(ca.server_name());
    let mut s = OpenEdb::new(&server).unwrap();
    let mut dst = vec![1u8; READ_SIZE];
    let src = vec![2u8; READ_SIZE];
    let mut g = c.benchmark_group("read_512KiB");
    g.throughput(Throughput::Bytes(READ_SIZE as u64))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("abi_virtual_edb", |b| {
        b.iter(|| {
            let n = s.read(&mut dst).unwrap();
            assert_eq!(n, READ_SIZE);
            black_box(&dst);
        })
    });
    // The generator alone, without the ABI around it (where the time of abi_virtual_edb goes).
    g.bench_function("gen_fill_only", |b| {
        let mut offset = 0u64;
        b.iter(|| {
            certadm_emu::ca::content::fill(7, offset, black_box(&mut dst));
            offset += READ_SIZE as u64;
        })
    });
    g.bench_function("baseline_memcpy", |b| {
        b.iter(|| work::memcpy(&mut dst, &src))
    });
    g.finish();
    s.finish().unwrap();
}

criterion_group!(benches, prepare_end, full_backup, read_512k);
criterion_main!(benches);

//! Criterion benchmarks of the page file, each beside its baseline. What is timed is
//! `certadm_emu::bench::scale`, the same functions as figures 8 and 9 of
//! `certadm-emu bench` (which also runs figures 10 to 13: the materialised 1 GiB backup and
//! the 10,000,000-record scenario, too long for criterion's repetitions):
//!
//! * `issue/small_ca` and `issue/large_ca`: issuing 6,400 certificates (100 log rolls and
//!   checkpoints) into a 1,000-record and a 1,000,000-record CA (target: the large CA at
//!   ≥ 0.7× the small one's rate);
//! * `issue/append_log_frames`: appending the same log frames with the same rolls and no
//!   fsync (target: issuing at ≥ 0.5× its rate).

use certadm_emu::bench::scale::{self, append_rate, issue_frames, issue_round, ISSUE_ROUND};
use certadm_emu::EmulatedCa;
use criterion::{criterion_group, Criterion, Throughput};
use std::time::Duration;

fn issue(c: &mut Criterion) {
    let small = EmulatedCa::builder().records(1_000).build().expect("a CA");
    let large = EmulatedCa::builder()
        .records(1_000_000)
        .build()
        .expect("a CA");
    let frames = issue_frames();
    let mut g = c.benchmark_group("issue");
    g.throughput(Throughput::Elements(ISSUE_ROUND as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("small_ca", |b| b.iter(|| issue_round(&small).unwrap()));
    g.bench_function("large_ca", |b| b.iter(|| issue_round(&large).unwrap()));
    g.bench_function("append_log_frames", |b| {
        b.iter(|| append_rate(&frames).unwrap())
    });
    g.finish();
}

criterion_group!(benches, issue);

fn main() {
    // The scale scenario's child process, if this run is one (see bench::scale).
    scale::child_main();
    benches();
    Criterion::default().configure_from_args().final_summary();
}

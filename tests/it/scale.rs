//! The 10,000,000-record path (ignored by default; `.ci/run` runs it in release):
//! install, issue, full backup, wipe, restore, hard recovery and the records digest, in
//! a child process whose peak RSS must stay within 64 MiB.
//!
//! `cargo test --release --test it -- --ignored scale::ten_million`

use certadm_emu::bench::scale::{child_main, in_child, RSS_BUDGET};

#[test]
#[ignore = "about a minute in release: cargo test --release --test it -- --ignored scale::"]
fn ten_million_records_in_bounded_memory() {
    // In the child (the test binary re-run on this test alone) this runs the scenario.
    child_main();
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "scale::ten_million_records_in_bounded_memory",
        "--ignored",
        "--test-threads=1",
    ]);
    let n = 10_000_000;
    let r = in_child(cmd, n).unwrap();
    eprintln!("{r:#?}");
    assert!(r.digest_ok, "the restored records differ: {r:?}");
    assert_eq!(r.records_after, n as u64 + 6_400);
    assert!(
        r.peak_rss <= RSS_BUDGET,
        "peak RSS {:.1} MiB over the 64 MiB budget",
        r.peak_rss as f64 / (1 << 20) as f64
    );
}

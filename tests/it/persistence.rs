//! A CA on a named root comes back with its state when a new process (here: a new
//! EmulatedCa on the same root) opens it.

use certadm_emu::api;
use certadm_emu::ca::ServiceState;
use certadm_emu::client::{backup_to_dir, BackupOptions};
use certadm_emu::core::consts::*;
use certadm_emu::{EmulatedCa, HRESULT};

fn open(root: &std::path::Path) -> EmulatedCa {
    EmulatedCa::builder()
        .root_dir(root)
        .ca_name("Persistent CA")
        .records(30)
        .log_capacity(8)
        .build()
        .unwrap()
}

#[test]
fn records_logs_and_last_backup_survive_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (records, last_full, gens) = {
        let ca = open(root.path());
        ca.issue(21).unwrap();
        ca.revoke(4).unwrap();
        backup_to_dir(
            ca.server_name(),
            &dir.path().join("full"),
            &BackupOptions::default(),
            &mut |_, _, _| {},
        )
        .unwrap();
        ca.issue(3).unwrap(); // in edb.log only: no clean stop before the "process" ends
        (
            ca.records().collect::<Vec<_>>(),
            ca.last_full_backup(),
            ca.log_generations(),
        )
    };
    let ca = open(root.path());
    assert_eq!(ca.service(), ServiceState::Running);
    assert_eq!(
        ca.records().collect::<Vec<_>>(),
        records,
        "soft recovery replayed edb.log"
    );
    assert_eq!(ca.last_full_backup(), last_full);
    assert_eq!(ca.log_generations(), gens);
    // The chain continues: an incremental after the restart needs the full from before it.
    let opts = BackupOptions {
        incremental: true,
        truncate: false,
        ..Default::default()
    };
    backup_to_dir(
        ca.server_name(),
        &dir.path().join("inc"),
        &opts,
        &mut |_, _, _| {},
    )
    .unwrap();
    ca.verify().unwrap();
}

#[test]
fn a_registered_restore_survives_a_restart() {
    let root = tempfile::tempdir().unwrap();
    {
        let ca = open(root.path());
        ca.stop().unwrap();
        let h = api::restore_prepare(ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
        let db = ca.database_path();
        let reg = api::Registration {
            log_path: Some(ca.log_dir()),
            restore_map: vec![(db.clone(), db)],
            gen_low: 1,
            gen_high: 1,
            ..Default::default()
        };
        api::restore_register(Some(h), &reg, false).unwrap();
        api::restore_end(h).unwrap();
    }
    let before = {
        let ca = open(root.path());
        // The service starts and waits, suspended, on the registration never completed.
        assert_eq!(ca.service(), ServiceState::Suspended);
        assert!(ca.restore_marker().unwrap().pending);
        assert!(!api::is_server_online(ca.server_name()).unwrap());
        assert_eq!(
            ca.finish_start().unwrap_err().hresult(),
            HRESULT::CERTSRV_E_SERVER_SUSPENDED
        );
        assert_eq!(
            ca.issue(1).unwrap_err().hresult(),
            HRESULT::CERTSRV_E_SERVER_SUSPENDED
        );
        ca.records().collect::<Vec<_>>()
    };
    // It waits again after the next restart; clearing the marker lets it run.
    let ca = open(root.path());
    assert_eq!(ca.service(), ServiceState::Suspended);
    ca.clear_restore_marker().unwrap();
    ca.stop().unwrap();
    assert!(!ca.start().unwrap().hard);
    assert_eq!(ca.service(), ServiceState::Running);
    assert_eq!(ca.records().collect::<Vec<_>>(), before);
    drop(ca);
    let ca = open(root.path());
    assert_eq!(ca.service(), ServiceState::Running);
    assert!(ca.restore_marker().is_none());
}

#[test]
fn another_ca_name_on_the_same_root_is_refused() {
    let root = tempfile::tempdir().unwrap();
    drop(open(root.path()));
    let e = EmulatedCa::builder()
        .root_dir(root.path())
        .ca_name("Other CA")
        .build()
        .unwrap_err();
    assert_eq!(e.hresult(), HRESULT::E_INVALIDARG);
    assert!(e.to_string().contains("Persistent CA"), "{e}");
}

/// A 1,000,000-record CA (118 MB of pages) comes back on its root with the same records:
/// its digest, streamed from the pages, equals the digest of the records the generator
/// defines (FILE-FORMATS §4.4), and after changes and a reopen equals the digest taken
/// before the reopen.
#[test]
fn a_million_record_ca_reopens_with_its_records_digest() {
    use certadm_emu::ca::record::{Digest, Record};
    const N: u32 = 1_000_000;
    const EPOCH: i64 = 1_767_225_600;
    let root = tempfile::tempdir().unwrap();
    let build = || {
        EmulatedCa::builder()
            .root_dir(root.path())
            .ca_name("Big CA")
            .seed(9)
            .records(N)
            .build()
            .unwrap()
    };
    let mut oracle = Digest::new();
    for id in 1..=N {
        oracle.update(&Record::generate(9, id, EPOCH + 60 * (id as i64 - 1)));
    }
    let (digest, count) = {
        let ca = build();
        assert_eq!(ca.record_count(), N as usize);
        assert_eq!(ca.records_digest().unwrap(), oracle.finish());
        ca.issue(100).unwrap();
        ca.revoke(500_000).unwrap();
        ca.revoke(N + 50).unwrap();
        assert_eq!(ca.revoked_count(), 2);
        // No clean stop: the next "process" replays edb.log.
        (ca.records_digest().unwrap(), ca.record_count())
    };
    let ca = build();
    assert_eq!(ca.service(), ServiceState::Running);
    assert_eq!(ca.record_count(), count);
    assert_eq!(ca.revoked_count(), 2);
    assert_eq!(ca.records_digest().unwrap(), digest);
    let last = ca.records().last().unwrap();
    assert_eq!(last.request_id, N + 100);
}

/// A process killed (SIGKILL) at a random point while it issues, with a log roll and a
/// checkpoint every 16 certificates, loses no certificate whose `issue` returned: the
/// next process on the root finds at least those, and exactly the records the generator
/// defines for its count.
#[test]
fn a_killed_process_loses_no_issued_certificate() {
    use certadm_emu::ca::record::{Digest, Record};
    use std::io::{BufRead, Write};
    const ENV: &str = "CERTADM_EMU_TEST_KILLED_ROOT";
    let build = |root: &std::path::Path| {
        EmulatedCa::builder()
            .root_dir(root)
            .ca_name("Killed CA")
            .records(1000)
            .log_capacity(16)
            .build()
            .unwrap()
    };
    if let Ok(root) = std::env::var(ENV) {
        // The child: issue until killed, telling the parent each id that is durable.
        let ca = build(std::path::Path::new(&root));
        let mut out = std::io::stdout();
        loop {
            let last = *ca.issue(7).unwrap().last().unwrap();
            writeln!(out, "\nISSUED {last}").unwrap();
            out.flush().unwrap();
        }
    }
    let root = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "persistence::a_killed_process_loses_no_issued_certificate",
            "--nocapture",
        ])
        .env(ENV, root.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut last = 0u32;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(n) = line.unwrap().strip_prefix("ISSUED ") {
            last = n.parse().unwrap();
            if last >= 6_000 {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(last >= 6_000, "the child stopped early");
    let ca = build(root.path());
    let n = ca.record_count() as u32;
    assert!(n >= last, "{n} records after the kill, {last} were issued");
    let mut oracle = Digest::new();
    for id in 1..=n {
        oracle.update(&Record::generate(
            1,
            id,
            1_767_225_600 + 60 * (id as i64 - 1),
        ));
    }
    assert_eq!(ca.records_digest().unwrap(), oracle.finish());
}

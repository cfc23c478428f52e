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
    let ca = open(root.path());
    assert_eq!(ca.service(), ServiceState::Stopped);
    assert!(ca.restore_marker().unwrap().pending);
    assert_eq!(
        ca.start().unwrap_err().hresult(),
        HRESULT::JET_errRestoreInProgress
    );
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

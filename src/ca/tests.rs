//! The page file under crashes, freezes and damage, driven through the CA model.

use super::pager::{self, CrashHook};
use super::*;

fn setup(records: u32) -> (Machine, Ca) {
    let m = Machine::new("PAGER", "pager.emu.test", None).unwrap();
    let cfg = CaConfig {
        records,
        log_capacity: 10_000,
        ..CaConfig::default()
    };
    let ca = Ca::install(&m, &cfg).unwrap();
    (m, ca)
}

fn edb(m: &Machine, ca: &Ca) -> std::path::PathBuf {
    m.host_path_of(&ca.database_path())
}

/// Verifies the `.edb` at `path`.
fn verify(path: &std::path::Path) {
    pager::verify(&std::fs::File::open(path).unwrap(), path).unwrap();
}

/// (record count, revoked count, digest).
fn state(m: &Machine, ca: &Ca) -> (u32, u32, u32) {
    (
        ca.record_count(m),
        ca.revoked_count(m),
        ca.records_digest(m).unwrap(),
    )
}

/// A crash at every write of a checkpoint (the journal's frames, its commit record, each
/// page copied into the `.edb`, the header), the write at the crash whole or torn in
/// half: the next start loses nothing, and the `.edb` it leaves verifies.
#[test]
fn a_crash_at_any_write_of_a_checkpoint_loses_nothing() {
    for tear in [false, true] {
        let mut steps = 0;
        for after in 0.. {
            let (m, mut ca) = setup(200);
            // Pages 1 (a revocation), 3 and 4 (issues) change: three data pages + header.
            ca.issue(&m, 100).unwrap();
            ca.revoke(&m, 5, 1).unwrap();
            let expected = state(&m, &ca);
            ca.db
                .as_mut()
                .unwrap()
                .set_crash_hook(Some(CrashHook { after, tear }));
            let crashed = match ca.roll(&m) {
                Ok(_) => false,
                Err(e) => {
                    assert!(e.to_string().contains("injected crash"), "{e}");
                    true
                }
            };
            ca.crash();
            let report = ca.start(&m).unwrap();
            assert_eq!(
                state(&m, &ca),
                expected,
                "after {after} writes, tear {tear}"
            );
            verify(&edb(&m, &ca));
            if !crashed {
                assert_eq!(
                    report.transactions, 0,
                    "a finished checkpoint replays nothing"
                );
                steps = after;
                break;
            }
        }
        // One write into the journal (its header, 3 pages, the header page, the commit
        // record), then 3 pages + header into the .edb.
        assert_eq!(steps, 5, "tear {tear}");
    }
}

/// While a full backup freezes the database, the `.edb` does not change however much is
/// issued and rolled (dirty pages beyond the cache spill to the journal); releasing the
/// freeze writes the pages changed, and the state survives a restart.
#[test]
fn a_frozen_database_does_not_change_and_catches_up_by_pages() {
    let (m, mut ca) = setup(1000);
    let path = edb(&m, &ca);
    let before = std::fs::read(&path).unwrap();
    ca.freeze();
    // Revocations over more pages than the cache holds, and issues: spills happen.
    for id in (1..=1000).step_by(1) {
        if id % 2 == 0 {
            ca.revoke(&m, id, 4).unwrap();
        }
    }
    ca.issue(&m, 50_000).unwrap();
    ca.roll(&m).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before, "frozen");
    let expected = state(&m, &ca);
    assert_eq!(expected.0, 51_000);
    assert_eq!(expected.1, 500);
    ca.unfreeze(&m).unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), before);
    verify(&path);
    ca.stop(&m).unwrap();
    ca.start(&m).unwrap();
    assert_eq!(state(&m, &ca), expected);
}

/// A crash while frozen (pages spilled to the journal, no commit record): the next start
/// drops the journal and replays the logs from the frozen checkpoint.
#[test]
fn a_crash_while_frozen_replays_from_the_frozen_checkpoint() {
    let (m, mut ca) = setup(100);
    ca.freeze();
    ca.issue(&m, 60_000).unwrap();
    let expected = state(&m, &ca);
    assert!(m.host_path_of(&ca.journal_path()).exists(), "spilled");
    ca.crash();
    let r = ca.start(&m).unwrap();
    assert_eq!(r.transactions, 60_000);
    assert_eq!(state(&m, &ca), expected);
}

/// A crash in a roll after `edb.log` was created and before its header was written (the
/// window a killed process hits): the empty file is taken for a missing one, the sealed
/// logs replay, and the start writes a fresh `edb.log` of the next generation.
#[test]
fn a_crash_before_the_new_logs_header_loses_nothing() {
    let (m, mut ca) = setup(100);
    ca.issue(&m, 50).unwrap();
    let expected = state(&m, &ca);
    // Frozen: the roll stops after the new edb.log, as a crash before the checkpoint would.
    ca.freeze();
    let sealed = ca.roll(&m).unwrap();
    ca.crash();
    let log = m.host_path_of(&ca.current_log_path());
    std::fs::File::options()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    let r = ca.start(&m).unwrap();
    assert_eq!(r.transactions, 50);
    assert_eq!(r.replayed_generations, [sealed]);
    assert_eq!(state(&m, &ca), expected);
    assert_eq!(ca.current().generation, sealed + 1);
    assert!(
        std::fs::metadata(&log).unwrap().len() > 0,
        "a fresh edb.log"
    );
    ca.issue(&m, 1).unwrap();
    ca.stop(&m).unwrap();
    ca.start(&m).unwrap();
    assert_eq!(ca.record_count(&m), 151);
}

/// A flipped byte anywhere in the `.edb` (header, page heads, slots, empty slots) stops
/// the start with `JET_errDatabaseCorrupted`, and a stopped CA's files stay as they were.
#[test]
fn a_flipped_byte_in_any_page_is_caught_at_start() {
    let (m, mut ca) = setup(200);
    ca.revoke(&m, 3, 1).unwrap();
    ca.stop(&m).unwrap();
    let path = edb(&m, &ca);
    let good = std::fs::read(&path).unwrap();
    assert_eq!(good.len(), 4 * format::PAGE_SIZE);
    for at in [
        0,
        9,
        40,
        8191,
        8192,
        8195,
        8200,
        8230,
        8300,
        16_383,
        3 * 8192 + 5000,
        good.len() - 1,
    ] {
        let mut b = good.clone();
        b[at] ^= 0x20;
        std::fs::write(&path, &b).unwrap();
        let e = ca.start(&m).unwrap_err();
        assert_eq!(
            e.hresult(),
            crate::core::HRESULT::JET_errDatabaseCorrupted,
            "flip at {at}: {e}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b, "untouched");
    }
    std::fs::write(&path, &good).unwrap();
    ca.start(&m).unwrap();
}

/// Issue, revoke and roll glance at the files (COVERAGE.md section C, item 23): with
/// hundreds of logs in the folder, none of them lists and examines every file; the stop
/// does, once.
#[test]
fn issuing_looks_at_no_log_it_did_not_write() {
    let m = Machine::new("GLANCE", "glance.emu.test", None).unwrap();
    let cfg = CaConfig {
        records: 10,
        log_capacity: 2,
        ..CaConfig::default()
    };
    let mut ca = Ca::install(&m, &cfg).unwrap();
    ca.issue(&m, 600).unwrap();
    assert!(ca.log_generations_on_disk(&m).len() >= 300);
    // The first call after the install may look at everything once (the journal file
    // the first checkpoint created changed the database folder).
    ca.issue(&m, 1).unwrap();
    let scans = ca.full_scans.get();
    for id in 1..=20 {
        ca.issue(&m, 3).unwrap();
        ca.revoke(&m, id, 1).unwrap();
        ca.roll(&m).unwrap();
    }
    assert_eq!(ca.full_scans.get(), scans, "no full scan while issuing");
    ca.stop(&m).unwrap();
    assert_eq!(
        ca.full_scans.get(),
        scans + 1,
        "the stop looks at every file"
    );
}

/// A folder that is missing, or a file where it should be, is "not there"
/// (`open_dir_if_there`); a folder that could not be opened for another reason is an
/// error, not a missing folder: out of file descriptors, a recovery would otherwise report
/// missing logs. The descriptor limit is lowered in a child process of this test.
#[test]
fn a_folder_that_cannot_be_opened_is_not_a_missing_one() {
    const CHILD: &str = "CERTADM_EMU_TEST_NO_DESCRIPTORS";
    const NAME: &str = "ca::tests::a_folder_that_cannot_be_opened_is_not_a_missing_one";
    if std::env::var_os(CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
        return;
    }
    let m = Machine::new("NOFD", "nofd.emu.test", None).unwrap();
    let dir = m.parse_path(r"C:\Logs").unwrap();
    m.fs().create_dir(&dir).unwrap();
    let file = m.parse_path(r"C:\NotAFolder").unwrap();
    std::fs::write(m.host_path_of(&file), b"x").unwrap();
    let gone = m.parse_path(r"C:\Gone").unwrap();
    assert!(open_dir_if_there(&m, &dir).unwrap().is_some());
    assert!(open_dir_if_there(&m, &gone).unwrap().is_none());
    assert!(open_dir_if_there(&m, &file).unwrap().is_none());
    // Descriptors 0 to 2 are taken: a limit of 3 leaves none to open.
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let old = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(3),
            maximum: old.maximum,
        },
    )
    .unwrap();
    let got = open_dir_if_there(&m, &dir);
    setrlimit(Resource::Nofile, old).unwrap();
    match got {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc_emfile()), "{source}")
        }
        other => panic!("expected the error of the open, got {other:?}"),
    }
}

/// `EMFILE` on Linux.
fn libc_emfile() -> i32 {
    rustix::io::Errno::MFILE.raw_os_error()
}

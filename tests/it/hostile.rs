//! Hostile and unlucky inputs (issue 11): numeric limits and names on every path, no link
//! followed beneath a machine root, whole configurations checked before anything is
//! created, reads into uninitialised memory, and commands that build their own CA.
//! Each test shows the documented error and that nothing else changed.

use crate::common;
use certadm_emu::abi::native::{
    certemu_ca_create, certemu_ca_destroy, certemu_options, certemu_options_init,
};
use certadm_emu::api::{self, Registration};
use certadm_emu::config::Config;
use certadm_emu::core::consts::*;
use certadm_emu::core::limits;
use certadm_emu::machine::fs::{set_resolver, Resolver};
use certadm_emu::remote::client::RemoteClient;
use certadm_emu::remote::server::{RunningServer, Server, ServerOptions};
use certadm_emu::{EmulatedCa, HRESULT};
use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn server() -> (RunningServer, RemoteClient) {
    let s = Server::bind("127.0.0.1:0", ServerOptions::default())
        .expect("bind")
        .spawn();
    let c = RemoteClient::connect(s.addr(), None).expect("connect");
    (s, c)
}

fn hr<T: std::fmt::Debug>(r: certadm_emu::Result<T>) -> HRESULT {
    r.unwrap_err().hresult()
}

/// The names of the entries of `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

// ----- 1. numeric limits -------------------------------------------------------------------

#[test]
fn limits_hold_on_the_builder_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let cases: Vec<(&str, certadm_emu::CaBuilder)> = vec![
        ("records", EmulatedCa::builder().records(u32::MAX)),
        (
            "records",
            EmulatedCa::builder().records(limits::RECORDS.max as u32 + 1),
        ),
        ("log_capacity", EmulatedCa::builder().log_capacity(0)),
        (
            "log_capacity",
            EmulatedCa::builder().log_capacity(limits::LOG_CAPACITY.max as u32 + 1),
        ),
        (
            "edb_size",
            EmulatedCa::builder().edb_size(limits::EDB_SIZE.max + 1),
        ),
    ];
    for (what, b) in cases {
        let e = b.server_name("HLIMB").root_dir(&root).build().unwrap_err();
        assert_eq!(e.hresult(), HRESULT::E_INVALIDARG, "{what}: {e}");
        assert!(e.to_string().contains(what), "{e}");
        assert!(!root.exists(), "{what}: the named root was created");
    }
    // The name was never registered: it can be used now.
    EmulatedCa::builder().server_name("HLIMB").build().unwrap();
}

#[test]
fn issue_stays_within_the_limits_and_issues_nothing_when_refused() {
    let ca = EmulatedCa::builder().records(10).build().unwrap();
    let before = (ca.record_count(), ca.current_position());
    let e = ca.issue(limits::ISSUE_PER_CALL.max as u32 + 1).unwrap_err();
    assert_eq!(e.hresult(), HRESULT::E_INVALIDARG, "{e}");
    // The database limit (100,000,000) is checked with the same arithmetic before anything
    // is written: core::limits::check_issue, unit-tested there.
    assert_eq!((ca.record_count(), ca.current_position()), before);
    ca.issue(2).unwrap();
    assert_eq!(ca.record_count(), 12);
}

#[test]
fn limits_hold_in_a_configuration_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    let cfg = Config::from_json(&format!(
        r#"{{"machines": [{{"name": "HLIMCFG", "root": {:?}, "ca": {{"records": 4294967295}}}}]}}"#,
        root.display().to_string()
    ))
    .unwrap();
    let e = cfg.build().unwrap_err();
    assert!(
        e.contains("records 4294967295 is outside 0..=100000000"),
        "{e}"
    );
    assert!(!root.exists());
    let cfg =
        Config::from_json(r#"{"machines": [{"name": "HLIMCFG", "ca": {"edb_size": "2048T"}}]}"#)
            .unwrap();
    assert!(cfg.build().unwrap_err().contains("edb_size"));
}

#[test]
fn limits_hold_over_the_protocol_and_the_server_keeps_serving() {
    let (_s, c) = server();
    let before = c.machines().unwrap();
    for json in [
        r#"{"name": "HLIMP1", "ca": {"records": 4294967295}}"#,
        r#"{"name": "HLIMP1", "ca": {"records": 100000001}}"#,
        r#"{"name": "HLIMP1", "ca": {"log_capacity": 0}}"#,
        r#"{"name": "HLIMP1", "ca": {"edb_size": 18446744073709551615}}"#,
    ] {
        let e = c.create_machine_json(json).unwrap_err();
        assert_eq!(e.hr, HRESULT::E_INVALIDARG, "{json}: {}", e.message);
    }
    assert_eq!(c.machines().unwrap(), before);
    let name = c
        .create_machine_json(r#"{"name": "HLIMP1", "ca": {"records": 3}}"#)
        .unwrap();
    assert!(c.is_server_online(&name[0]).unwrap());
    let e = c.issue(&name[0], 1_000_001).unwrap_err();
    assert_eq!(e.hr, HRESULT::E_INVALIDARG, "{}", e.message);
    assert_eq!(c.state(&name[0]).unwrap().ca.unwrap().record_count, 3);
}

#[test]
fn a_restore_map_over_the_limit_is_refused_over_the_protocol() {
    let (_s, c) = server();
    let name = c.create_machine_json(r#"{"name": "HLIMRM"}"#).unwrap();
    let m = &name[0];
    c.stop(m).unwrap();
    let h = c.restore_prepare(m, CSRESTORE_TYPE_FULL).unwrap();
    let entry = (
        r"C:\Windows\System32\CertLog\Emu Issuing CA.edb".to_string(),
        r"C:\Windows\System32\CertLog\Emu Issuing CA.edb".to_string(),
    );
    let reg = Registration {
        checkpoint_path: None,
        log_path: None,
        restore_map: vec![entry; 65],
        backup_log_path: None,
        gen_low: 1,
        gen_high: 1,
    };
    let e = c.restore_register(Some(h), &reg, false).unwrap_err();
    assert_eq!(e.hr, HRESULT::E_INVALIDARG, "{}", e.message);
    assert!(e.message.contains("crstmap 65"), "{}", e.message);
    assert!(!c.state(m).unwrap().ca.unwrap().restore_marker_present);
    c.restore_end(h).unwrap();
}

#[test]
fn limits_and_names_hold_in_the_c_api() {
    // SAFETY: valid out-pointers and options; the CA created at the end is destroyed once.
    unsafe {
        let mut o: certemu_options = std::mem::zeroed();
        assert_eq!(certemu_options_init(&mut o), 0);
        o.records = limits::RECORDS.max as u32 + 1;
        let mut ca = std::ptr::null_mut();
        let name = CString::new("HLIMCAPI").unwrap();
        assert_eq!(
            certemu_ca_create(name.as_ptr(), &o, &mut ca),
            HRESULT::E_INVALIDARG.0
        );
        assert!(ca.is_null());
        let long = CString::new("A".repeat(240)).unwrap();
        assert_eq!(
            certemu_ca_create(long.as_ptr(), std::ptr::null(), &mut ca),
            HRESULT::ERROR_INVALID_NAME.0
        );
        assert!(ca.is_null());
        assert_eq!(
            certemu_ca_create(name.as_ptr(), std::ptr::null(), &mut ca),
            0
        );
        assert_eq!(certemu_ca_destroy(ca), 0);
    }
}

// ----- 2. names ----------------------------------------------------------------------------

#[test]
fn names_are_checked_at_creation() {
    let long = "A".repeat(240);
    let cases = [
        EmulatedCa::builder().server_name(&long),
        EmulatedCa::builder().server_name("SIXTEEN-CHARS-XX"),
        EmulatedCa::builder().server_name("CA.01"),
        EmulatedCa::builder()
            .server_name("HNAMEDNS")
            .dns_name(&format!("{}.test", "a".repeat(64))),
        EmulatedCa::builder()
            .server_name("HNAMEDNS")
            .dns_name(&vec!["abcd"; 60].join(".")),
        EmulatedCa::builder()
            .server_name("HNAMECA")
            .ca_name(&"C".repeat(65)),
        EmulatedCa::builder()
            .server_name("HNAMECA")
            .ca_name("NUL.x"),
    ];
    for b in cases {
        let e = b.build().unwrap_err();
        assert_eq!(e.hresult(), HRESULT::ERROR_INVALID_NAME, "{e}");
    }
    // The longest valid names build, and their dynamic files have valid names.
    let ca = EmulatedCa::builder()
        .server_name("HNAME-15-CHARSX")
        .ca_name(&"C".repeat(64))
        .build()
        .unwrap();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let dynamic = api::backup_get_dynamic_file_list(h).unwrap();
    assert_eq!(dynamic.entries(false).len(), 2);
    api::backup_end(h).unwrap();
}

#[test]
fn a_long_machine_name_over_the_protocol_is_error_invalid_name_not_a_panic() {
    let (_s, c) = server();
    let json = format!(r#"{{"name": "{}"}}"#, "A".repeat(240));
    let e = c.create_machine_json(&json).unwrap_err();
    assert_eq!(e.hr, HRESULT::ERROR_INVALID_NAME, "{}", e.message);
    assert!(!e.message.contains("panic"), "{}", e.message);
    let name = c.create_machine_json(r#"{"name": "HNAMEPRO"}"#).unwrap();
    assert!(c.is_server_online(&name[0]).unwrap());
}

#[test]
fn serve_refuses_a_long_machine_name_with_a_message_not_a_backtrace() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.json");
    std::fs::write(
        &cfg,
        format!(r#"{{"machines": [{{"name": "{}"}}]}}"#, "A".repeat(240)),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certadm-emu"));
    cmd.args(["serve", "--config"])
        .arg(&cfg)
        .env_remove("CERTADM_EMU_SERVER")
        .env_remove("CERTADM_EMU_CONFIG")
        .env_remove("CERTADM_EMU_REPORT");
    let (o, _) = common::run_with_timeout(cmd, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", common::show(&o));
    assert!(err.contains("NetBIOS name"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

// ----- 3. containment ----------------------------------------------------------------------

/// A machine on a named root, and a canary directory outside it.
struct Planted {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    canary: std::path::PathBuf,
}

impl Planted {
    fn new() -> Planted {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let canary = tmp.path().join("canary");
        std::fs::create_dir_all(&canary).unwrap();
        std::fs::write(canary.join("keep"), b"canary").unwrap();
        Planted {
            _tmp: tmp,
            root,
            canary,
        }
    }
    fn certlog(&self) -> std::path::PathBuf {
        self.root.join("c/windows/system32/certlog")
    }
    /// Nothing appeared in, or changed in, the canary.
    fn assert_canary_untouched(&self) {
        assert_eq!(listing(&self.canary), ["keep"]);
        assert_eq!(std::fs::read(self.canary.join("keep")).unwrap(), b"canary");
    }
}

fn denied<T: std::fmt::Debug>(r: certadm_emu::Result<T>, link: &str) {
    let e = r.unwrap_err();
    assert_eq!(e.hresult(), HRESULT::E_ACCESSDENIED, "{e}");
    assert!(
        e.to_string().contains(link) && e.to_string().contains("symbolic link"),
        "the message names the link {link}: {e}"
    );
}

fn contained_everywhere(name: &str) {
    // The drive folder, and the registry folder before the CA is opened.
    for (suffix, entry, named) in [("D", "c", "/c "), ("R", "registry", "registry")] {
        let p = Planted::new();
        std::fs::create_dir_all(&p.root).unwrap();
        symlink(&p.canary, p.root.join(entry)).unwrap();
        denied(
            EmulatedCa::builder()
                .server_name(&format!("{name}{suffix}"))
                .root_dir(&p.root)
                .build(),
            named,
        );
        p.assert_canary_untouched();
    }

    // CertLog, replaced by a link while the CA is stopped.
    let p = Planted::new();
    let ca = EmulatedCa::builder()
        .server_name(&format!("{name}L"))
        .root_dir(&p.root)
        .log_capacity(4)
        .build()
        .unwrap();
    ca.issue(9).unwrap();
    ca.stop().unwrap();
    std::fs::rename(p.certlog(), p.root.join("moved")).unwrap();
    symlink(&p.canary, p.certlog()).unwrap();
    denied(ca.start(), "certlog");
    denied(ca.wipe_files(), "certlog");
    assert!(ca.files().is_empty(), "a link lists nothing");
    p.assert_canary_untouched();
    // Back in place, the CA starts as before.
    std::fs::remove_file(p.certlog()).unwrap();
    std::fs::rename(p.root.join("moved"), p.certlog()).unwrap();
    ca.start().unwrap();
    assert_eq!(ca.record_count(), 16 + 9);
    // Replaced while the CA runs: issuing (which rolls logs) is refused.
    std::fs::rename(p.certlog(), p.root.join("moved")).unwrap();
    symlink(&p.canary, p.certlog()).unwrap();
    denied(ca.issue(8), "certlog");
    denied(ca.roll_log(), "certlog");
    p.assert_canary_untouched();
    std::fs::remove_file(p.certlog()).unwrap();
    std::fs::rename(p.root.join("moved"), p.certlog()).unwrap();
    drop(ca);

    // A log file replaced by a link.
    let p = Planted::new();
    let ca = EmulatedCa::builder()
        .server_name(&format!("{name}F"))
        .root_dir(&p.root)
        .log_capacity(4)
        .build()
        .unwrap();
    ca.issue(9).unwrap();
    ca.stop().unwrap();
    let log = p.certlog().join("edb00002.log");
    assert!(log.is_file());
    std::fs::remove_file(&log).unwrap();
    symlink(p.canary.join("keep"), &log).unwrap();
    denied(ca.start(), "edb00002.log");
    denied(ca.wipe_files(), "edb00002.log");
    p.assert_canary_untouched();
    drop(ca);

    // The restore folder: refused at registration (the client's paths), nothing read.
    let p = Planted::new();
    let ca = EmulatedCa::builder()
        .server_name(&format!("{name}S"))
        .root_dir(&p.root)
        .build()
        .unwrap();
    let db = ca.database_path();
    ca.stop().unwrap();
    symlink(&p.canary, p.root.join("c/restore")).unwrap();
    let h = api::restore_prepare(ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    for reg in [
        Registration {
            checkpoint_path: None,
            log_path: None,
            restore_map: vec![(db.clone(), db.clone())],
            backup_log_path: Some(r"C:\Restore".into()),
            gen_low: 1,
            gen_high: 1,
        },
        Registration {
            checkpoint_path: None,
            log_path: None,
            restore_map: vec![(db.clone(), r"C:\Restore\restored.edb".into())],
            backup_log_path: None,
            gen_low: 1,
            gen_high: 1,
        },
    ] {
        denied(api::restore_register(Some(h), &reg, false), "restore");
    }
    assert!(ca.restore_marker().is_none());
    api::restore_end(h).unwrap();
    p.assert_canary_untouched();

    // The registry folder under a running machine: the RegisterW marker is not written.
    std::fs::remove_file(p.root.join("c/restore")).unwrap();
    std::fs::rename(p.root.join("registry"), p.root.join("moved")).unwrap();
    symlink(&p.canary, p.root.join("registry")).unwrap();
    let h = api::restore_prepare(ca.server_name(), CSRESTORE_TYPE_FULL).unwrap();
    let reg = Registration {
        checkpoint_path: None,
        log_path: None,
        restore_map: vec![(db.clone(), db.clone())],
        backup_log_path: None,
        gen_low: 1,
        gen_high: 1,
    };
    denied(api::restore_register(Some(h), &reg, false), "registry");
    api::restore_end(h).unwrap();
    p.assert_canary_untouched();
    std::fs::remove_file(p.root.join("registry")).unwrap();
    std::fs::rename(p.root.join("moved"), p.root.join("registry")).unwrap();
}

/// Both resolvers in one test: the choice is process-wide, and every other test gets the
/// same answers from either.
#[test]
fn no_link_beneath_a_machine_root_is_followed_with_either_resolver() {
    contained_everywhere("HCONTA");
    set_resolver(Some(Resolver::Walk));
    let r = std::panic::catch_unwind(|| contained_everywhere("HCONTW"));
    set_resolver(None);
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}

/// No check runs before an operation that a link planted in between could slip past:
/// while one thread issues, rolls logs (each roll a rename, a new `edb.log`, a checkpoint
/// and `edb.chk`), crashes and restarts the CA in a loop, another swaps `CertLog` with a
/// link to a canary directory outside the root, atomically (`RENAME_EXCHANGE`), as fast
/// as it can. Every operation either works in the real directory or is refused; nothing
/// ever appears in the canary, and once the directory is back the CA recovers every
/// certificate it issued.
#[test]
fn a_link_swapped_in_while_the_ca_works_is_never_followed() {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    use std::sync::atomic::{AtomicBool, Ordering};
    let p = Planted::new();
    let ca = EmulatedCa::builder()
        .server_name("HRACE")
        .root_dir(&p.root)
        .log_capacity(2)
        .build()
        .unwrap();
    let link = p.root.join("c/windows/system32/certlog.link");
    symlink(&p.canary, &link).unwrap();
    let stop = AtomicBool::new(false);
    let (mut worked, mut refused) = (0u32, 0u32);
    std::thread::scope(|s| {
        let swapper = s.spawn(|| {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                renameat_with(CWD, p.certlog(), CWD, &link, RenameFlags::EXCHANGE).unwrap();
                swaps += 1;
                // Windows of every length, from none to a whole operation, in both states
                // (odd: the link is in place).
                let us = if swaps % 2 == 1 {
                    swaps % 5 * 10
                } else {
                    swaps % 7 * 150
                };
                if us > 0 {
                    std::thread::sleep(Duration::from_micros(us));
                }
            }
            // Leave the real directory in place.
            if swaps % 2 == 1 {
                renameat_with(CWD, p.certlog(), CWD, &link, RenameFlags::EXCHANGE).unwrap();
            }
            swaps
        });
        // Stops the swapper however this thread leaves the scope (a failed assertion
        // included: otherwise the scope would wait for it forever).
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let guard = StopOnDrop(&stop);
        let deadline = std::time::Instant::now() + Duration::from_millis(1500);
        let mut i = 0u32;
        while std::time::Instant::now() < deadline || worked == 0 || refused == 0 {
            i += 1;
            let r = if i % 16 == 0 {
                // A crash and a soft recovery, which resolves every directory again.
                ca.crash();
                ca.start().map(drop)
            } else if i % 3 == 0 {
                ca.roll_log().map(drop)
            } else {
                ca.issue(3).map(drop)
            };
            match r {
                Ok(()) => worked += 1,
                Err(e) => {
                    // The refusal of the link, or a consequence of an earlier one (a
                    // directory that changed under the running CA, a roll cut short, a
                    // stopped service): never anything done through the link.
                    refused += 1;
                    assert!(
                        [
                            HRESULT::E_ACCESSDENIED,
                            HRESULT::ERROR_SHARING_VIOLATION,
                            HRESULT::RPC_S_SERVER_UNAVAILABLE,
                            HRESULT::E_INVALIDARG,
                            HRESULT::E_FAIL,
                        ]
                        .contains(&e.hresult()),
                        "{e}"
                    );
                }
            }
            p.assert_canary_untouched();
            assert!(
                i < 200_000,
                "no success and no refusal: worked {worked}, refused {refused}"
            );
        }
        drop(guard);
        let swaps = swapper.join().unwrap();
        assert!(swaps > 100, "{swaps} swaps");
    });
    assert!(p.certlog().is_dir() && link.is_symlink());
    p.assert_canary_untouched();
    // The directory is back: a crash and a start recover everything issued.
    let (count, digest) = (ca.record_count(), ca.records_digest().unwrap());
    ca.crash();
    ca.start().unwrap();
    assert_eq!(
        (ca.record_count(), ca.records_digest().unwrap()),
        (count, digest)
    );
    assert!(
        count > 16,
        "issued nothing ({worked} worked, {refused} refused)"
    );
    p.assert_canary_untouched();
}

// ----- 4. configurations -------------------------------------------------------------------

#[test]
fn a_configuration_is_checked_whole_before_anything_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let json = format!(
        r#"{{"machines": [{{"name": "HCFGOK", "root": {:?}}}, {{"name": "{}"}}]}}"#,
        first.display().to_string(),
        "B".repeat(40)
    );
    let e = Config::from_json(&json).unwrap().build().unwrap_err();
    assert!(e.contains("NetBIOS name"), "{e}");
    assert!(!first.exists(), "the first machine's root was created");
    // The same over the protocol.
    let (_s, c) = server();
    let e = c.create_machine_json(&json).unwrap_err();
    assert_eq!(e.hr, HRESULT::ERROR_INVALID_NAME, "{}", e.message);
    assert!(!first.exists());
    assert!(c.machines().unwrap().is_empty());
    // Two machines with one name.
    let e = Config::from_json(r#"{"machines": [{"name": "HCFGDUP"}, {"name": "hcfgdup"}]}"#)
        .unwrap()
        .build()
        .unwrap_err();
    assert!(e.contains("already used"), "{e}");
}

#[test]
fn a_configuration_that_is_not_an_object_is_refused() {
    for text in ["[]", "[[]]", "null", "3", "\"x\""] {
        let e = Config::from_json(text).unwrap_err();
        assert!(
            e.contains("a configuration is a JSON object"),
            "{text}: {e}"
        );
    }
    assert!(Config::from_json("{}").unwrap().machines.is_empty());
}

#[test]
fn a_report_in_a_missing_directory_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("missing/report.json");
    let cfg = Config::from_json(&format!(
        r#"{{"machines": [{{"name": "HREPORT"}}], "report": {:?}}}"#,
        report.display().to_string()
    ))
    .unwrap();
    let e = cfg.validate().unwrap_err();
    assert!(e.contains("does not exist"), "{e}");
    // serve: refused before it listens.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certadm-emu"));
    cmd.arg("serve")
        .env("CERTADM_EMU_REPORT", &report)
        .env_remove("CERTADM_EMU_SERVER")
        .env_remove("CERTADM_EMU_CONFIG");
    let (o, _) = common::run_with_timeout(cmd, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(1), "{}", common::show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).is_empty());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not exist"),
        "{}",
        common::show(&o)
    );
}

// ----- 5. reads into uninitialised memory --------------------------------------------------

/// Reads the whole database of a fresh CA in `chunk`-byte reads with `read`.
fn read_database(
    server: &str,
    ca: &EmulatedCa,
    chunk: usize,
    mut read: impl FnMut(certadm_emu::Hcsbc, usize) -> certadm_emu::Result<Vec<u8>>,
) -> Vec<u8> {
    let h = api::backup_prepare(server, 0, CSBACKUP_TYPE_FULL).unwrap();
    let db = api::backup_get_database_names(h).unwrap();
    let size = api::backup_open_file(h, &db.entries(true)[0].path, 0).unwrap();
    let mut out = Vec::new();
    loop {
        let got = read(h, chunk).unwrap();
        out.extend_from_slice(&got);
        if got.len() < chunk {
            break;
        }
    }
    assert_eq!(out.len() as u64, size);
    api::backup_end(h).unwrap();
    let _ = ca;
    out
}

#[test]
fn reads_into_uninitialised_buffers_give_the_same_bytes() {
    let faults = certadm_emu::api::faults::FaultSchedule::from_json(
        r#"{"faults": [{"kind": "corrupt_read", "offset": 70000, "file": ".edb"}]}"#,
    )
    .unwrap();
    for schedule in [None, Some(faults)] {
        let mut bytes = Vec::new();
        for uninit in [false, true] {
            let mut b = EmulatedCa::builder().seed(9).edb_size(300_000);
            if let Some(s) = &schedule {
                b = b.faults(s.clone());
            }
            let ca = b.build().unwrap();
            let server = ca.server_name().to_string();
            bytes.push(read_database(&server, &ca, 65_536, |h, n| {
                if uninit {
                    let mut buf = vec![MaybeUninit::<u8>::uninit(); n];
                    let got = api::backup_read(h, &mut buf[..])?;
                    // SAFETY: the read initialised the first `got` bytes.
                    Ok(buf[..got]
                        .iter()
                        .map(|b| unsafe { b.assume_init() })
                        .collect())
                } else {
                    let mut buf = vec![0u8; n];
                    let got = api::backup_read(h, &mut buf)?;
                    buf.truncate(got);
                    Ok(buf)
                }
            }));
            if schedule.is_some() {
                ca.assert_all_faults_fired();
            }
        }
        assert_eq!(bytes[0], bytes[1]);
        if schedule.is_some() {
            let clean = EmulatedCa::builder()
                .seed(9)
                .edb_size(300_000)
                .build()
                .unwrap();
            let server = clean.server_name().to_string();
            let good = read_database(&server, &clean, 65_536, |h, n| {
                let mut buf = vec![0u8; n];
                let got = api::backup_read(h, &mut buf)?;
                buf.truncate(got);
                Ok(buf)
            });
            let diff: Vec<usize> = (0..good.len())
                .filter(|i| good[*i] != bytes[1][*i])
                .collect();
            assert_eq!(diff, [70_000], "exactly the planned byte is flipped");
        }
    }
}

// ----- 6. commands that build their own CA -------------------------------------------------

#[test]
fn restore_runs_in_process_even_with_a_server_in_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("backup");
    let bin = env!("CARGO_BIN_EXE_certadm-emu");
    let mut demo = Command::new(bin);
    demo.args(["demo", "--out"])
        .arg(&out)
        .env_remove("CERTADM_EMU_SERVER")
        .env_remove("CERTADM_EMU_CONFIG");
    let (o, _) = common::run_with_timeout(demo, Duration::from_secs(300));
    assert!(o.status.success(), "{}", common::show(&o));
    // A server with a machine of the same name as the one restore builds (CA01).
    let cfg = tmp.path().join("server.json");
    std::fs::write(
        &cfg,
        r#"{"machines": [{"name": "CA01", "dns": "ca01.contoso.test", "ca": {"name": "Contoso Issuing CA"}}]}"#,
    )
    .unwrap();
    let (mut child, addr) = common::spawn_serve(|c| {
        c.arg("--config").arg(&cfg);
    });
    let mut restore = Command::new(bin);
    restore
        .arg("restore")
        .arg(&out)
        .env("CERTADM_EMU_SERVER", &addr)
        .env_remove("CERTADM_EMU_CONFIG");
    let (o, _) = common::run_with_timeout(restore, Duration::from_secs(300));
    let c = RemoteClient::connect(&addr, None).unwrap();
    let state = c.state("CA01").unwrap().ca.unwrap();
    let _ = c.shutdown_server();
    let _ = child.wait();
    assert!(o.status.success(), "{}", common::show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is ignored"),
        "{}",
        common::show(&o)
    );
    assert_eq!(
        state.service,
        certadm_emu::ca::ServiceState::Running,
        "the server's CA of the same name was not touched"
    );
    assert_eq!(state.record_count, 16);
}

#[test]
fn the_limit_table_is_the_documented_one() {
    let coverage =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/COVERAGE.md")).unwrap();
    for l in limits::ALL {
        let row = format!("| `{}` | {} ..= {} |", l.name, l.min, l.max);
        assert!(coverage.contains(&row), "COVERAGE.md lacks the row {row:?}");
    }
    let _ = hr::<()>;
}

//! The Windows forwarder under Wine: `windows/certadm/certadm.c` (a certadm.dll that
//! forwards the 18 certbcli calls to `certadm-emu serve` over Winsock) and
//! `windows/client/client.c` (a backup-and-restore client that loads it with LoadLibrary),
//! both built with MinGW-w64 and run with Wine against a server of this build:
//!
//! * `windows/tests/dll_checks.c` (linked with the DLL): local pointer checks, one
//!   connection per thread, frees of lists from ended threads, reads over 4 MiB; the
//!   server then has no list buffer and no session left;
//! * a full backup, more certificates, an incremental backup, more certificates, a second
//!   incremental backup (client.exe);
//! * the CA is stopped and its files are wiped (control calls);
//! * client.exe restores the full set and both incremental sets (RestorePrepare, copies
//!   the files through a path map to the Wine name of the CA's host directory, Register,
//!   RegisterComplete, RestoreEnd); the start (control call) runs the recovery and every
//!   record is back (same count and digest);
//! * the same restore with one log deleted from the full set is refused at start.
//!
//! Skipped, with a note, when `x86_64-w64-mingw32-gcc` or Wine (`/usr/lib/wine/wine64`,
//! `wine64` or `wine` on PATH) is missing; failed instead under
//! `CERTADM_EMU_REQUIRE_TOOLS=1` (`tests/common/wine.rs`). Debian/Ubuntu packages: `gcc-mingw-w64-x86-64`
//! and `wine64` (Debian 12) or `wine` (which pulls in the 64-bit loader on newer releases).
//!
//! The Wine prefix is `$CARGO_TARGET_TMPDIR/wine-prefix` (override with `CERTEMU_WINEPREFIX`);
//! its first use creates it (10-30 s).

use crate::common;
use certadm_emu::remote::client::RemoteClient;

use common::wine::{check_exports, run, wine_path, Served, Wine};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const MACHINE: &str = "WINECA";
/// JET_errMissingRestoreLogFiles.
const JET_ERR_MISSING_RESTORE_LOG_FILES: i32 = 0xC800_022Du32 as i32;

/// Deletes the middle edbXXXXX.log of a set (one with logs on both sides if it can).
fn delete_a_log(set: &Path) -> String {
    let db = set.join("DataBase");
    let mut logs: Vec<String> = std::fs::read_dir(&db)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("edb") && n.ends_with(".log"))
        .collect();
    logs.sort();
    assert!(!logs.is_empty(), "no logs in {}", db.display());
    let victim = logs[logs.len() / 2].clone();
    std::fs::remove_file(db.join(&victim)).unwrap();
    victim
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn windows_client_backs_up_and_restores_through_wine() {
    let Some((gcc, wine_exe)) = common::wine::mingw_and_wine() else {
        return;
    };
    let t0 = Instant::now();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.join("wine").join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = common::wine::prefix();

    // Build certadm.dll, client.exe and dll_checks.exe side by side.
    let common::wine::Project {
        dll,
        client: exe,
        checks,
    } = common::wine::build_project(&gcc, &dir, &dir);
    eprintln!(
        "built certadm.dll, client.exe and dll_checks.exe in {:.1?}",
        t0.elapsed()
    );
    check_exports(&dll, &dir);

    let cfg = dir.join("server.json");
    std::fs::write(
        &cfg,
        format!(r#"{{"machines": [{{"name": "{MACHINE}", "ca": {{"records": 30, "log_capacity": 4}}}}]}}"#),
    )
    .unwrap();
    let served = Served::start(&cfg, |_| {});
    let rc = RemoteClient::connect(&served.addr, None).unwrap();
    let w = Wine {
        exe: wine_exe,
        prefix,
        client: exe.clone(),
        dir: dir.clone(),
        server: served.addr.clone(),
    };

    // The DLL's own checks (pointer checks, threads, frees, large reads).
    let (ok, _, _) = w.run_exe(&checks, "dll_checks", &[MACHINE]);
    assert!(ok, "dll_checks.exe failed");
    let state = rc.state(MACHINE).unwrap();
    assert_eq!(
        state.outstanding_buffers, 0,
        "every list was freed: {state}"
    );
    assert_eq!(state.sessions_open, 0, "every session was ended: {state}");
    eprintln!("dll checks done at {:.1?}", t0.elapsed());

    // The backups, while the CA works.
    let full = dir.join("full");
    let inc1 = dir.join("incremental-1");
    let inc2 = dir.join("incremental-2");
    rc.issue(MACHINE, 5).unwrap();
    let (ok, _, _) = w.client("full", &[MACHINE, &wine_path(&full), "full"]);
    assert!(ok, "full backup failed");
    eprintln!("full backup done at {:.1?}", t0.elapsed());
    rc.issue(MACHINE, 9).unwrap();
    rc.revoke(MACHINE, 2).unwrap();
    let (ok, _, _) = w.client("inc1", &[MACHINE, &wine_path(&inc1), "incremental"]);
    assert!(ok, "incremental backup 1 failed");
    rc.issue(MACHINE, 6).unwrap();
    rc.revoke(MACHINE, 33).unwrap();
    let (ok, _, _) = w.client("inc2", &[MACHINE, &wine_path(&inc2), "incremental"]);
    assert!(ok, "incremental backup 2 failed");
    for set in [&full, &inc1, &inc2] {
        let names: Vec<String> = std::fs::read_dir(set.join("DataBase"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        eprintln!("{}: {names:?}", set.display());
    }
    let before = rc.records(MACHINE).unwrap();
    eprintln!("records before the loss: {before:?}");
    assert_eq!(before.0, 50);

    // The loss.
    rc.stop(MACHINE).unwrap();
    rc.wipe_files(MACHINE).unwrap();
    let state = rc.state(MACHINE).unwrap();
    let dns = state.dns_name;
    let c_root = rc.host_path(MACHINE, "C:\\").unwrap();
    std::fs::create_dir_all(&c_root).unwrap();
    let map = format!("\\\\{dns}\\C$={}", wine_path(&c_root));
    eprintln!("path map: {map}");

    // The restore through client.exe, then the start runs the recovery.
    let restore_args = |f: &Path, i1: &Path, i2: &Path| -> Vec<String> {
        vec![
            "--map".into(),
            map.clone(),
            MACHINE.into(),
            wine_path(f),
            "restore".into(),
            wine_path(i1),
            wine_path(i2),
        ]
    };
    let args = restore_args(&full, &inc1, &inc2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, _) = w.client("restore", &args);
    assert!(ok, "restore failed");
    let recovery = rc.start(MACHINE).expect("start after the restore");
    eprintln!("recovery: {recovery:?}");
    assert!(recovery.hard, "a registered restore is a hard recovery");
    let after = rc.records(MACHINE).unwrap();
    assert_eq!(after, before, "every record is back (count, digest)");
    assert_eq!(rc.state(MACHINE).unwrap().ca.unwrap().restore_marker, None);
    eprintln!("restore verified at {:.1?}", t0.elapsed());

    // The same restore with one log missing from the full set: refused at start.
    let broken = dir.join("broken");
    let (bf, bi1, bi2) = (
        broken.join("full"),
        broken.join("incremental-1"),
        broken.join("incremental-2"),
    );
    copy_dir(&full, &bf);
    copy_dir(&inc1, &bi1);
    copy_dir(&inc2, &bi2);
    // A log between the first and the last restored one.
    let victim = {
        let logs_in = |s: &Path| {
            std::fs::read_dir(s.join("DataBase"))
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .count()
        };
        if logs_in(&bf) >= 3 {
            delete_a_log(&bf)
        } else if logs_in(&bi1) >= 1 {
            // The first incremental set lies between the full and the second one.
            delete_a_log(&bi1)
        } else {
            delete_a_log(&bf)
        }
    };
    eprintln!("deleted {victim} from the broken copy");
    rc.stop(MACHINE).unwrap();
    rc.wipe_files(MACHINE).unwrap();
    std::fs::create_dir_all(&c_root).unwrap();
    let args = restore_args(&bf, &bi1, &bi2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, err) = w.client("restore-broken", &args);
    // The client may already refuse (an incremental set without logs); otherwise the
    // start must refuse the restored chain.
    match rc.start(MACHINE) {
        Ok(r) => {
            panic!("start succeeded although {victim} was missing (client ok: {ok}): {r:?}\n{err}")
        }
        Err(e) => {
            eprintln!("start refused: {e}");
            if ok {
                assert_eq!(
                    e.hr.0, JET_ERR_MISSING_RESTORE_LOG_FILES,
                    "a missing log is JET_errMissingRestoreLogFiles: {e}"
                );
            }
        }
    }
    drop(rc);
    drop(served);

    // Fail at every step for the Windows binary: `certadm-emu explore --server` runs
    // client.exe once per certbcli call with that call failing, against a fresh server.
    let cfg = dir.join("explore.json");
    std::fs::write(
        &cfg,
        r#"{"machines": [{"name": "EXPLWINE", "ca": {"records": 10, "log_capacity": 4}}]}"#,
    )
    .unwrap();
    let out_dir = dir.join("explore-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certadm-emu"));
    cmd.arg("explore")
        .arg("--server")
        .arg("--config")
        .arg(&cfg)
        .arg("--")
        .arg(&w.exe)
        .arg(&w.client)
        .arg("EXPLWINE")
        .arg(wine_path(&out_dir))
        .arg("full")
        .current_dir(&dir)
        .env("WINEPREFIX", &w.prefix)
        .env("WINEDEBUG", "-all")
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
    let (status, out, err, took) = run(cmd, &dir, "explore");
    eprintln!("--- explore client.exe ({took:.1?}): {status}\n{out}{err}");
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("no cleanup problem"), "{out}");

    // No server: the DLL maps the failed connect to RPC_S_SERVER_UNAVAILABLE.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = closed.local_addr().unwrap().to_string();
    drop(closed);
    let w = Wine { server: gone, ..w };
    let (ok, _, err) = w.client(
        "unreachable",
        &[MACHINE, &wine_path(&dir.join("none")), "full"],
    );
    assert!(!ok, "a backup without a server succeeded");
    assert!(
        err.contains("0x800706BA"),
        "no server is RPC_S_SERVER_UNAVAILABLE: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("wine test done in {:.1?}", t0.elapsed());
}

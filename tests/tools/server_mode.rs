//! Server mode of the library: with `CERTADM_EMU_SERVER` set, `libcertadm_emu.so` (and the
//! rlib) forwards every certbcli call and the `certemu_*` control API to a
//! `certadm-emu serve` process (`src/abi/forward.rs`). Each client here runs twice, in
//! process and through a server, and the results are compared.
//!
//! * `scenario_backup.c`, `scenario_restore.c`, `stuck_restore.c`: the C scenarios, their
//!   `certemu_ca_report` after the backup / after the recovery equal in both modes (up to
//!   machine names and directories).
//! * `plain_agent.c`: an unmodified agent whose CA (and fault) is in the server's
//!   `--config`; the server's report at shutdown has the same violations and calls as the
//!   in-process report of `CERTADM_EMU_CONFIG`.
//! * `tests/python/backup.py` through ctypes.
//! * The windows-sys agent (`clients/windows-sys-agent`, its source included here) through
//!   the rlib, in a child process of this test binary (the variable is process-wide).
//! * An unreachable server: `RPC_S_SERVER_UNAVAILABLE` with a message; pointer checks stay
//!   local.
//!
//! Environment: `CERTADM_EMU_LIB` overrides the library, `CC` the C compiler, `PYTHON`
//! the interpreter. The C programs are built by `tests/common/cbuild.rs`; a missing
//! compiler or Python skips its test with a note, and fails it under
//! `CERTADM_EMU_REQUIRE_TOOLS=1`.

use crate::common;
use certadm_emu::remote::client::RemoteClient;
use serde_json::Value;

use common::cbuild::{self, Lang, Link};
use common::show;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

#[allow(dead_code, clippy::all)]
#[path = "../../clients/windows-sys-agent/src/lib.rs"]
mod agent;

const TIMEOUT: Duration = Duration::from_secs(120);
/// Set in the child process that runs a test body with `CERTADM_EMU_SERVER`.
const CHILD: &str = "CERTEMU_SERVER_MODE_CHILD";

// ----- the server -----------------------------------------------------------------------------

/// A `certadm-emu serve` process, shut down (and its report written) on `stop` or drop.
struct Served {
    child: Option<Child>,
    addr: String,
    secret: Option<String>,
}

impl Served {
    fn start(config: Option<&Path>) -> Served {
        Served::start_with(config, None)
    }

    /// A server that wants `secret` in the handshake (given in `CERTADM_EMU_SECRET`).
    fn start_with(config: Option<&Path>, secret: Option<&str>) -> Served {
        let (child, addr) = common::spawn_serve(|cmd| {
            if let Some(c) = config {
                cmd.arg("--config").arg(c);
            }
            if let Some(s) = secret {
                cmd.env("CERTADM_EMU_SECRET", s);
            }
        });
        Served {
            child: Some(child),
            addr,
            secret: secret.map(str::to_string),
        }
    }

    /// A server with no machines that writes every call it serves to `dir/trace.jsonl`.
    fn traced(dir: &Path) -> (Served, PathBuf) {
        let trace = dir.join("trace.jsonl");
        let cfg = dir.join("server.json");
        std::fs::write(
            &cfg,
            serde_json::json!({"machines": [], "trace": trace}).to_string(),
        )
        .unwrap();
        (Served::start(Some(&cfg)), trace)
    }

    fn client(&self) -> RemoteClient {
        RemoteClient::connect(&self.addr, self.secret.as_deref()).unwrap()
    }

    /// Asks the server to stop and waits for it (it writes its report first).
    fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(c) = RemoteClient::connect(&self.addr, self.secret.as_deref()) {
                let _ = c.shutdown_server();
            }
            let start = Instant::now();
            loop {
                if let Ok(Some(s)) = child.try_wait() {
                    assert!(
                        s.success() || std::thread::panicking(),
                        "certadm-emu serve exited with {s}"
                    );
                    return;
                }
                if start.elapsed() > Duration::from_secs(20) {
                    let _ = child.kill();
                    let _ = child.wait();
                    if !std::thread::panicking() {
                        panic!("certadm-emu serve did not stop");
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

// ----- processes ------------------------------------------------------------------------------

fn run(cmd: Command) -> (Output, Duration) {
    common::run_with_timeout(cmd, TIMEOUT)
}

/// A scratch directory of this test process.
fn scratch(name: &str) -> PathBuf {
    cbuild::scratch(&format!("server_mode/{name}"))
}

/// The cdylib of this build, as a private hard link or copy (`tests/common/cbuild.rs`).
fn library() -> &'static Path {
    cbuild::library()
}

/// Compiles `tests/c/<name>.c` against the headers and the library; `None` without a C
/// compiler.
fn build_c(name: &str) -> Option<PathBuf> {
    build_c_as(name, true)
}

/// Compiles `tests/c/<name>.c`, linked with the library (`linked`) or with `-ldl` only.
fn build_c_as(name: &str, linked: bool) -> Option<PathBuf> {
    let link = if linked { Link::Library } else { Link::Dlopen };
    cbuild::build(name, link, Lang::C)
}

/// Runs a C program in process (`server` None) or through the server at `server`.
fn run_c(exe: &Path, args: &[&str], server: Option<&str>, dir: &Path) -> (Output, Duration) {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("CERTEMU_TEST_DIR", dir)
        .env("CERTEMU_LIB", library())
        .env_remove("CERTADM_EMU_LOG")
        .env_remove("CERTADM_EMU_CONFIG")
        .env_remove("CERTADM_EMU_SERVER")
        .env_remove("CERTADM_EMU_SECRET");
    if let Some(a) = server {
        cmd.env("CERTADM_EMU_SERVER", a);
    }
    run(cmd)
}

// ----- comparing reports ----------------------------------------------------------------------

/// The JSON object printed on the line after `marker` (or on the marker line itself).
fn json_after(stdout: &str, marker: &str) -> Value {
    let mut lines = stdout.lines();
    while let Some(l) = lines.next() {
        if let Some(i) = l.find(marker) {
            let rest = l[i + marker.len()..].trim();
            let text = if rest.starts_with('{') {
                rest.to_string()
            } else {
                lines.next().unwrap_or_default().trim().to_string()
            };
            return serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{e}: not a JSON report: {text}"));
        }
    }
    panic!("no {marker:?} in\n{stdout}");
}

/// A `certemu_ca_report` without what differs between two runs by construction: machine
/// names (also inside messages, where UNC names are lowercase) and host directories.
fn normalized(mut r: Value) -> Value {
    let names: Vec<String> = ["dns_name", "server_name"]
        .iter()
        .filter_map(|k| r[k].as_str().map(str::to_string))
        .collect();
    for k in ["server_name", "dns_name", "root"] {
        r[k] = Value::Null;
    }
    r["conformance"]["server"] = Value::Null;
    let mut text = r.to_string();
    for n in names {
        text = text
            .replace(&n, "<name>")
            .replace(&n.to_lowercase(), "<name>");
    }
    serde_json::from_str(&text).unwrap()
}

fn assert_same_report(what: &str, local: Value, remote: Value) {
    let (l, r) = (normalized(local), normalized(remote));
    assert_eq!(
        l, r,
        "{what}: the reports differ\n in process: {l}\n via server: {r}"
    );
}

/// The server's trace shows it served these calls (so the client did not run in process).
fn assert_served(trace: &Path, calls: &[&str]) {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    for c in calls {
        if c.starts_with("certemu_") {
            continue; // control calls are not traced
        }
        assert!(
            text.contains(&format!("\"{c}\"")),
            "the server did not serve {c}: {text}"
        );
    }
}

/// A C scenario in process and through a server: both pass, the reports are equal.
fn scenario(name: &str, marker: &str) {
    let Some(exe) = build_c(name) else {
        return;
    };
    let mut reports = Vec::new();
    let (server, trace) = Served::traced(&scratch(&format!("{name}-server")));
    for via in [None, Some(server.addr.as_str())] {
        let dir = scratch(&format!("{name}-{}", via.is_some()));
        let (o, took) = run_c(&exe, &[], via, &dir);
        assert!(
            o.status.success(),
            "{name} failed {}\n{}",
            if via.is_some() {
                "through the server"
            } else {
                "in process"
            },
            show(&o)
        );
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        println!(
            "{name} {}: passed in {:.2}s",
            if via.is_some() {
                "via server"
            } else {
                "in process"
            },
            took.as_secs_f64()
        );
        reports.push(json_after(&stdout, marker));
    }
    // The server holds no machine of the scenario any more (certemu_ca_destroy forwarded).
    assert_eq!(server.client().machines().unwrap(), Vec::<String>::new());
    server.stop();
    assert_served(&trace, &["certemu_ca_create", "CertSrvBackupPrepareW"]);
    let remote = reports.pop().unwrap();
    let local = reports.pop().unwrap();
    assert!(local["record_count"].as_u64().unwrap() > 0, "{local}");
    assert_same_report(name, local, remote);
}

#[test]
fn scenario_backup_through_a_server() {
    scenario("scenario_backup", "report after the backup:");
}

#[test]
fn scenario_restore_through_a_server() {
    scenario("scenario_restore", "after recovery:");
}

/// A stuck restore (suspended until completed and restarted) and a restore that lost the
/// end of its backup set: the same HRESULTs, states and report through a server.
#[test]
fn stuck_restore_through_a_server() {
    scenario("stuck_restore", "after recovery:");
}

/// The configuration of `plain_agent` (as in `tests/c_clients.rs`), with a planned read failure.
fn agent_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("config.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"machines": [{{"name": "AGENTCA", "ca": {{"records": 40, "log_capacity": 8}},
                 "faults": {{"faults": [{{"kind": "fail", "function": "CertSrvBackupRead", "nth": 2, "hr": "RPC_S_CALL_FAILED"}}]}}}}],
                "report": "{}"}}"#,
            dir.join("report.json").display()
        ),
    )
    .unwrap();
    cfg
}

/// The machine `name` of a report file (in process or from `serve`).
fn machine_of(report: &Value, name: &str) -> Value {
    let machines = report["machines"]
        .as_array()
        .unwrap_or_else(|| panic!("no machines in {report}"));
    machines
        .iter()
        .find(|m| m["server"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
        .clone()
}

/// An unmodified agent (certbcli.h only) against a CA of the server's `--config`: it
/// fails at the planned read failure and cleans up, and the server's report says the
/// same as the in-process one of `CERTADM_EMU_CONFIG`.
#[test]
fn plain_agent_through_a_server() {
    let Some(exe) = build_c("plain_agent") else {
        return;
    };
    // In process.
    let local_dir = scratch("plain-agent-local");
    let cfg = agent_config(&local_dir);
    let out = local_dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut cmd = Command::new(&exe);
    cmd.arg("AGENTCA")
        .arg(&out)
        .env("CERTADM_EMU_CONFIG", &cfg)
        .env_remove("CERTADM_EMU_SERVER")
        .env_remove("CERTADM_EMU_LOG");
    let (local, _) = run(cmd);
    // Through the server.
    let remote_dir = scratch("plain-agent-remote");
    let cfg = agent_config(&remote_dir);
    let server = Served::start(Some(&cfg));
    let out = remote_dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (remote, took) = run_c(
        &exe,
        &["AGENTCA", out.to_str().unwrap()],
        Some(&server.addr),
        &remote_dir,
    );
    server.stop();
    println!("plain_agent via server: {:.2}s", took.as_secs_f64());

    for (o, dir) in [(&local, &local_dir), (&remote, &remote_dir)] {
        assert_eq!(o.status.code(), Some(1), "{}", show(o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("[800706be]"),
            "{}",
            show(o)
        );
        let text = std::fs::read_to_string(dir.join("report.json")).expect("report written");
        assert!(text.contains("\"rule\": \"CB06\""), "{text}");
        assert!(!text.contains("\"cleanup\": true"), "{text}");
        assert!(text.contains("\"leftovers\": []"), "{text}");
        assert!(text.contains("\"unfired_faults\": []"), "{text}");
    }
    assert_eq!(
        String::from_utf8_lossy(&local.stderr),
        String::from_utf8_lossy(&remote.stderr)
    );
    let read = |d: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("report.json")).unwrap()).unwrap()
    };
    let (l, r) = (
        machine_of(&read(&local_dir), "AGENTCA"),
        machine_of(&read(&remote_dir), "AGENTCA"),
    );
    for k in [
        "violations",
        "calls",
        "clean",
        "leftovers",
        "unfired_faults",
    ] {
        assert_eq!(
            l[k], r[k],
            "{k} differs\n in process: {l}\n via server: {r}"
        );
    }
    // The files the agent wrote are the same.
    let files = |d: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(d.join("out"))
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap_or_default(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(files(&local_dir), files(&remote_dir));
}

/// `tests/python/backup.py` through ctypes, in process and through a server.
#[test]
fn python_ctypes_through_a_server() {
    let Some(python) = common::tool::require_tool_env("PYTHON", "python3") else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/backup.py");
    let (server, trace) = Served::traced(&scratch("python-server"));
    let mut reports = Vec::new();
    for via in [None, Some(server.addr.as_str())] {
        let dir = scratch(&format!("python-{}", via.is_some()));
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .arg(library())
            .env("CERTEMU_TEST_DIR", &dir)
            .env_remove("CERTADM_EMU_LOG")
            .env_remove("CERTADM_EMU_SERVER");
        if let Some(a) = via {
            cmd.env("CERTADM_EMU_SERVER", a);
        }
        let (o, took) = run(cmd);
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "backup.py failed\n{}", show(&o));
        assert!(stdout.contains("backup.py: all checks passed"), "{stdout}");
        println!(
            "backup.py {}: {:.2}s",
            if via.is_some() {
                "via server"
            } else {
                "in process"
            },
            took.as_secs_f64()
        );
        let line = stdout
            .lines()
            .find(|l| l.starts_with("restore checked:"))
            .unwrap_or_else(|| panic!("{stdout}"))
            .to_string();
        reports.push((json_after(&stdout, " report "), line));
    }
    server.stop();
    assert_served(
        &trace,
        &["CertSrvBackupPrepareW", "CertSrvRestoreRegisterW"],
    );
    let (remote, remote_line) = reports.pop().unwrap();
    let (local, local_line) = reports.pop().unwrap();
    assert_eq!(local_line, remote_line);
    assert_same_report("backup.py", local, remote);
}

// ----- the rlib: windows-sys ------------------------------------------------------------------

/// Runs the test `name` of this binary again in a child process with
/// `CERTADM_EMU_SERVER=addr`; returns its output.
fn in_child(name: &str, addr: &str) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.arg(common::test_path(module_path!(), name))
        .args(["--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("CERTADM_EMU_SERVER", addr)
        .env_remove("CERTADM_EMU_CONFIG")
        .env_remove("CERTADM_EMU_LOG");
    let (o, _) = run(cmd);
    assert!(
        o.status.success(),
        "the child run of {name} failed\n{}",
        show(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 passed"),
        "the child did not run {name}\n{}",
        show(&o)
    );
    o
}

fn wstr(s: &str) -> Vec<u16> {
    s.encode_utf16().chain([0]).collect()
}

/// The windows-sys agent, unchanged, through the rlib's forwarding: a full backup, disk
/// loss, restore and recovery on a CA of the server, which ends with the same records.
#[test]
fn windows_sys_agent_through_a_server() {
    const NAME: &str = "windows_sys_agent_through_a_server";
    if std::env::var_os(CHILD).is_none() {
        let server = Served::start(None);
        let o = in_child(NAME, &server.addr);
        print!("{}", String::from_utf8_lossy(&o.stdout));
        // The machine of the child is still on the server, recovered.
        let c = server.client();
        let report = c.report("WSAGENT").unwrap();
        assert!(report.clean, "{report}");
        assert_eq!(c.records("WSAGENT").unwrap().0, 250);
        server.stop();
        return;
    }
    // In the child: every certbcli call goes to the server.
    let addr = certadm_emu::abi::forward::server_address().expect("CERTADM_EMU_SERVER is set");
    let control = RemoteClient::connect(addr, None).unwrap();
    let name = control
        .create_machine_json(r#"{"name": "WSAGENT", "ca": {"records": 200, "log_capacity": 16}}"#)
        .unwrap()
        .remove(0);
    control.issue(&name, 50).unwrap();
    let before = control.records(&name).unwrap();
    // Nothing of that name in this process: only the server can answer.
    assert!(certadm_emu::api::is_server_online(&name).is_err());

    let dir = scratch("windows-sys-agent");
    let files = agent::full_backup(&name, &dir).unwrap();
    assert!(files
        .iter()
        .any(|f| f.extension().is_some_and(|e| e == "edb")));
    let report = control.report(&name).unwrap();
    assert!(report.clean, "{report}");
    let state = control.state(&name).unwrap();
    assert_eq!(state.outstanding_buffers, 0, "{state}");
    assert_eq!(state.sessions_open, 0, "{state}");

    // Disk loss, then restore: the files go to the server's host paths of the CA.
    control.stop(&name).unwrap();
    control.wipe_files(&name).unwrap();
    let d = certadm_emu::ca::CaConfig::default();
    let database = format!("{}\\{}.edb", d.db_dir, d.name);
    let log_dir = d.log_dir.as_str();
    let mut gens = Vec::new();
    for f in &files {
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        let dest = if file.ends_with(".edb") {
            database.clone()
        } else {
            gens.push(u32::from_str_radix(&file[3..file.len() - 4], 16).unwrap());
            format!("{log_dir}\\{file}")
        };
        std::fs::copy(f, control.host_path(&name, &dest).unwrap()).unwrap();
    }
    agent::register_full_restore(
        &name,
        &database,
        log_dir,
        *gens.iter().min().unwrap(),
        *gens.iter().max().unwrap(),
    )
    .unwrap();
    let rec = control.start(&name).unwrap();
    assert!(rec.hard, "{rec:?}");
    assert_eq!(control.records(&name).unwrap(), before);
    println!(
        "windows-sys agent via server: {} records restored",
        before.0
    );
}

/// A server that cannot be reached: `RPC_S_SERVER_UNAVAILABLE` and a message naming the
/// address; NULL pointers and handles are still refused locally, before any connection.
#[test]
fn an_unreachable_server_is_rpc_s_server_unavailable() {
    const NAME: &str = "an_unreachable_server_is_rpc_s_server_unavailable";
    if std::env::var_os(CHILD).is_none() {
        let dir = scratch("unreachable");
        let addr = format!("unix:{}", dir.join("no-server.sock").display());
        let o = in_child(NAME, &addr);
        print!("{}", String::from_utf8_lossy(&o.stdout));
        return;
    }
    use certadm_emu::abi;
    let server = wstr("CA01");
    let mut online = 0;
    // SAFETY: valid pointers; NULLs where the test wants them.
    unsafe {
        assert_eq!(
            abi::CertSrvIsServerOnlineW(std::ptr::null(), &mut online) as u32,
            0x8000_4003
        );
        assert_eq!(
            abi::CertSrvBackupEnd(std::ptr::null_mut()) as u32,
            0x8007_0006
        );
        let bad = [0xD800u16, 0];
        assert_eq!(
            abi::CertSrvIsServerOnlineW(bad.as_ptr(), &mut online) as u32,
            0x8007_0057
        );
        assert_eq!(
            abi::CertSrvIsServerOnlineW(server.as_ptr(), &mut online) as u32,
            0x8007_06BA
        );
    }
    let e = abi::last_error().unwrap();
    let msg = e.to_string();
    assert!(msg.contains("CertSrvIsServerOnlineW"), "{msg}");
    assert!(msg.contains("no-server.sock"), "{msg}");
    assert!(matches!(e, certadm_emu::Error::Remote { .. }), "{e:?}");
    // The control API fails the same way.
    let mut ca = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    let hr = unsafe { abi::native::certemu_ca_create(std::ptr::null(), std::ptr::null(), &mut ca) };
    assert_eq!(hr as u32, 0x8007_06BA);
    assert!(ca.is_null());
}

/// Every other C program of `tests/c` (the samples of each function, the robustness
/// checks, the control API, faults and report, `dlopen`) passes through a server too.
#[test]
fn every_c_program_through_a_server() {
    const PROGRAMS: &[&str] = &[
        "sample_is_server_online",
        "sample_backup_prepare",
        "sample_get_database_names",
        "sample_get_dynamic_file_list",
        "sample_open_file",
        "sample_read",
        "sample_close",
        "sample_get_backup_logs",
        "sample_truncate_logs",
        "sample_backup_end",
        "sample_backup_free",
        "sample_restore_get_database_locations",
        "sample_restore_prepare",
        "sample_restore_register",
        "sample_restore_register_through_file",
        "sample_restore_register_complete",
        "sample_restore_end",
        "sample_server_control",
        "robustness_certbcli",
        "robustness_certemu",
        "certemu_api",
        "faults_and_report",
        "dlopen_all",
    ];
    if cbuild::cc().is_none() {
        return;
    }
    let (server, trace) = Served::traced(&scratch("every-server"));
    let addr = server.addr.clone();
    let failures: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = PROGRAMS
            .iter()
            .map(|&name| {
                let addr = addr.clone();
                s.spawn(move || {
                    let exe = build_c_as(name, name != "dlopen_all").expect("a C compiler");
                    let lib = library().to_str().unwrap().to_string();
                    let args: Vec<&str> = if name == "dlopen_all" {
                        vec![&lib]
                    } else {
                        vec![]
                    };
                    let dir = scratch(&format!("every-{name}"));
                    let (o, took) = run_c(&exe, &args, Some(&addr), &dir);
                    if o.status.success() {
                        println!("{name} via server: passed in {:.2}s", took.as_secs_f64());
                        None
                    } else {
                        Some(format!("{name} failed through the server\n{}", show(&o)))
                    }
                })
            })
            .collect();
        runs.into_iter().filter_map(|h| h.join().unwrap()).collect()
    });
    server.stop();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_served(
        &trace,
        &["CertSrvRestoreRegisterThroughFile", "CertSrvServerControlW"],
    );
}

/// `CERTADM_EMU_SECRET` is sent in the handshake: a server with a secret serves a client
/// that has it, and refuses one without it (every call fails, nothing runs in process).
#[test]
fn the_secret_comes_from_certadm_emu_secret() {
    let Some(exe) = build_c("sample_backup_prepare") else {
        return;
    };
    let server = Served::start_with(None, Some("s3cret-for-tests"));
    let dir = scratch("secret");
    let mut cmd = Command::new(&exe);
    cmd.env("CERTEMU_TEST_DIR", &dir)
        .env("CERTADM_EMU_SERVER", &server.addr)
        .env("CERTADM_EMU_SECRET", "s3cret-for-tests")
        .env_remove("CERTADM_EMU_LOG");
    let (o, _) = run(cmd);
    assert!(o.status.success(), "{}", show(&o));
    let (o, _) = run_c(&exe, &[], Some(&server.addr), &dir);
    assert!(!o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("refused the connection"),
        "{}",
        show(&o)
    );
    server.stop();
}

/// A thread is a client, as in process: each thread has its own connection. A second
/// Prepare on the same thread is a sequencing error, on another thread a concurrent
/// backup; a thread that ends with its backup open is run down by the server, so the next
/// Prepare succeeds. Lists stay valid after End and are freed on their connection.
#[test]
fn each_thread_is_a_client_of_the_server() {
    const NAME: &str = "each_thread_is_a_client_of_the_server";
    if std::env::var_os(CHILD).is_none() {
        let server = Served::start(None);
        let o = in_child(NAME, &server.addr);
        print!("{}", String::from_utf8_lossy(&o.stdout));
        let state = server.client().state("THREADS").unwrap();
        assert_eq!(state.sessions_open, 0, "{state}");
        assert_eq!(state.outstanding_buffers, 0, "{state}");
        server.stop();
        return;
    }
    use certadm_emu::abi;
    use core::ffi::c_void;
    let addr = abi::forward::server_address().expect("CERTADM_EMU_SERVER is set");
    let control = RemoteClient::connect(addr, None).unwrap();
    control
        .create_machine_json(r#"{"name": "THREADS", "ca": {"records": 5}}"#)
        .unwrap();
    const JET_BUSY: u32 = certadm_emu::core::HRESULT::JET_errBackupInProgress.0 as u32;
    let server = wstr("THREADS");
    let prepare = |server: &[u16]| -> (i32, usize) {
        let mut h: *mut c_void = std::ptr::null_mut();
        // SAFETY: a NUL-terminated name and a valid out-pointer.
        let hr = unsafe { abi::CertSrvBackupPrepareW(server.as_ptr(), 0, 1, &mut h) };
        (hr, h as usize)
    };
    // Thread A: a backup, a list, then a second Prepare (same client) and exit without End.
    let (list, token_thread) = {
        let server = server.clone();
        std::thread::spawn(move || {
            let (hr, h) = prepare(&server);
            assert_eq!(hr, 0);
            assert_eq!(prepare(&server).0 as u32, 0x8000_FFFF); // E_UNEXPECTED
            let mut p: *mut u16 = std::ptr::null_mut();
            let mut cb = 0u32;
            // SAFETY: valid out-pointers.
            let hr =
                unsafe { abi::CertSrvBackupGetDatabaseNamesW(h as *const c_void, &mut p, &mut cb) };
            assert_eq!(hr, 0);
            (p as usize, cb)
        })
        .join()
        .unwrap()
    };
    let _ = token_thread;
    // The list outlives its thread's connection; the thread's backup was run down.
    // SAFETY: the list is live until CertSrvBackupFree.
    let first = unsafe { *(list as *const u16) };
    assert_eq!(first, u16::from(b'D'));
    let start = Instant::now();
    let h = loop {
        let (hr, h) = prepare(&server);
        if hr == 0 {
            break h;
        }
        // JET_errBackupInProgress until the server noticed the closed connection.
        assert_eq!(hr as u32, JET_BUSY, "Prepare after the rundown");
        assert!(start.elapsed() < Duration::from_secs(10), "no rundown");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Another thread is another client: a concurrent backup is refused.
    let other = {
        let server = server.clone();
        std::thread::spawn(move || prepare(&server).0)
            .join()
            .unwrap()
    };
    assert_eq!(other as u32, JET_BUSY);
    // SAFETY: handle from Prepare; the list from thread A, freed once.
    unsafe {
        assert_eq!(abi::CertSrvBackupEnd(h as *mut c_void), 0);
        abi::CertSrvBackupFree(list as *mut c_void);
    }
    let state = control.state("THREADS").unwrap();
    assert_eq!(state.sessions_open, 0, "{state}");
    println!("threads as clients: rundown after {:?}", start.elapsed());
}

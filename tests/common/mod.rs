//! Helpers shared by the integration tests that run other processes (both test crates,
//! `tests/it` and `tests/tools`, include this module).
#![allow(dead_code)] // each test crate uses part of this module

pub mod cbuild;
pub mod tool;
pub mod wine;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` to completion or until `timeout` (then kills it and panics), collecting its
/// output; both pipes are drained on their own threads so a chatty child never blocks.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let t_out = drain(Box::new(child.stdout.take().unwrap()));
    let t_err = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for a child") {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    };
    (out, start.elapsed())
}

/// A child's exit status and output, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Starts the `certadm-emu serve` binary (the environment of this test cleared of
/// `CERTADM_EMU_*` server, config, report and secret variables; `configure` adds its
/// arguments and environment) and returns it with the address of its first stdout line,
/// `listening on ADDR`.
pub fn spawn_serve(configure: impl FnOnce(&mut Command)) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_certadm-emu"));
    cmd.arg("serve")
        .env_remove("CERTADM_EMU_SERVER")
        .env_remove("CERTADM_EMU_CONFIG")
        .env_remove("CERTADM_EMU_REPORT")
        .env_remove("CERTADM_EMU_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    configure(&mut cmd);
    let mut child = cmd.spawn().expect("starting certadm-emu serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr)
}

/// Runs `certadm-emu lint` on a recording; returns whether it passed and its output.
pub fn lint(path: &Path) -> (bool, String) {
    let (out, _) = run_with_timeout(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_certadm-emu"));
            c.arg("lint").arg(path);
            c
        },
        Duration::from_secs(60),
    );
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The name by which the test harness knows the test `name` of the module `module`
/// (`module_path!()` of the caller): the module path without the crate, then the name.
/// `--exact` needs it to run one test of a crate in a child process.
pub fn test_path(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_string(),
    }
}

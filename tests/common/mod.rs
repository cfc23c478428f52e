//! Helpers shared by the integration tests that run other processes (both test crates,
//! `tests/it` and `tests/tools`, include this module).
#![allow(dead_code)] // each test crate uses part of this module

pub mod cbuild;
pub mod dotnet;
pub mod tool;
pub mod wine;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
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

/// The soname `build.rs` gave `libcertadm_emu.so` (docs/ABI.md): what an executable linked
/// with `-lcertadm_emu` asks the loader for.
pub const SONAME: &str = env!("CERTADM_EMU_SONAME");

/// The cdylib built with this test binary: `target/<profile>/deps/libcertadm_emu.so`, next
/// to the test executable (cargo emits the lib's rlib and cdylib in one rustc run), else
/// `target/<profile>/libcertadm_emu.so`; if neither is current, build it with cargo into a
/// directory of its own. `CERTADM_EMU_LIB` names another library instead.
pub fn built_library() -> PathBuf {
    if let Some(p) = std::env::var_os("CERTADM_EMU_LIB") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "CERTADM_EMU_LIB={} is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("the test executable has a directory");
    let candidates = [
        deps.join("libcertadm_emu.so"),
        deps.parent()
            .map(|p| p.join("libcertadm_emu.so"))
            .unwrap_or_default(),
    ];
    // `cargo test --test c_clients` alone rebuilds the rlib but not the cdylib: a library
    // older than the newest rlib next to it is stale, so build a fresh one instead.
    let mtime = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    let newest_rlib = std::fs::read_dir(deps)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("libcertadm_emu-") && n.ends_with(".rlib")
        })
        .filter_map(|e| mtime(&e.path()))
        .max();
    if let Some(p) = candidates
        .iter()
        .find(|p| p.is_file() && mtime(p) >= newest_rlib)
    {
        return p.clone();
    }
    // Not built (an unusual cargo configuration): build it in a separate target directory,
    // so this never waits on the lock of the cargo process running the tests.
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("c_clients-build");
    eprintln!(
        "note: no current libcertadm_emu.so next to {}; building it into {}",
        exe.display(),
        target.display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--lib", "--target-dir"])
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("running cargo build --lib");
    assert!(status.success(), "cargo build --lib failed");
    let p = target.join("debug").join("libcertadm_emu.so");
    assert!(p.is_file(), "{} was not built", p.display());
    p
}

/// Puts `found` into `dir` as `libcertadm_emu.so` (a hard link, which keeps this build's
/// file even if a later build replaces the original; a copy where links are not possible)
/// with the link `SONAME -> libcertadm_emu.so`, so programs linked with `-L dir
/// -lcertadm_emu -Wl,-rpath,dir` load it. Returns the library's path.
pub fn link_library(found: &Path, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let lib = dir.join("libcertadm_emu.so");
    let _ = std::fs::remove_file(&lib);
    if std::fs::hard_link(found, &lib).is_err() {
        std::fs::copy(found, &lib)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", found.display(), lib.display()));
    }
    let so = dir.join(SONAME);
    let _ = std::fs::remove_file(&so);
    std::os::unix::fs::symlink("libcertadm_emu.so", &so)
        .unwrap_or_else(|e| panic!("linking {}: {e}", so.display()));
    lib
}

/// The first fenced block of `lang` in README.md.
pub fn readme_block(lang: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find(&format!("```{lang}\n"))
        .unwrap_or_else(|| panic!("README.md has no ```{lang} block"))
        + lang.len()
        + 4;
    let end = start + readme[start..].find("```").expect("closed block");
    readme[start..end].to_string()
}

/// Removes the output directories of earlier test processes that are gone.
pub fn remove_stale_runs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Ok(pid) = name.parse::<u32>() {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
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

/// Every file under the CA's machine root, with its bytes: what a test compares to show
/// that a refused call changed nothing.
pub fn snapshot(ca: &certadm_emu::EmulatedCa) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(ca.machine().root(), &mut out);
    out
}

//! `tests/python/backup.py`: a full backup (and its restore) driven from Python through
//! ctypes, against the `libcertadm_emu.so` cargo built for this test run. Skipped with a
//! note when `python3` is not installed.
//!
//! Environment: `CERTADM_EMU_LIB` overrides the library; `PYTHON` the interpreter.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The cdylib built with this test binary (see `tests/c_clients.rs`): next to the test
/// executable in `target/<profile>/deps`, else in `target/<profile>`.
fn find_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CERTADM_EMU_LIB") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    [
        deps.join("libcertadm_emu.so"),
        deps.parent()?.join("libcertadm_emu.so"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

#[test]
fn python_ctypes_full_backup() {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let version = Command::new(&python).arg("--version").output();
    match &version {
        Ok(o) if o.status.success() => {}
        _ => {
            eprintln!("note: {python} is not installed; skipping the Python ctypes test");
            return;
        }
    }
    let lib = find_library()
        .expect("libcertadm_emu.so not found next to the test executable; set CERTADM_EMU_LIB");
    // A private copy: a concurrent cargo build cannot rewrite it while Python runs.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("python_ctypes")
        .join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("libcertadm_emu.so");
    if std::fs::hard_link(&lib, &copy).is_err() {
        std::fs::copy(&lib, &copy).unwrap();
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/backup.py");
    let start = Instant::now();
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(&copy)
        .env("CERTEMU_TEST_DIR", &dir)
        .env_remove("CERTADM_EMU_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting python");
    // Drain the pipes on their own threads so the child never blocks on a full pipe.
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
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("backup.py did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (t_out.join().unwrap(), t_err.join().unwrap());
    let stdout = String::from_utf8_lossy(&out);
    let stderr = String::from_utf8_lossy(&err);
    println!(
        "{} ({:.2}s)\n{stdout}",
        String::from_utf8_lossy(&version.unwrap().stdout).trim(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        status.success(),
        "backup.py failed ({status})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    assert!(stdout.contains("backup.py: all checks passed"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

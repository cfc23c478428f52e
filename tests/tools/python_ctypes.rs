//! `tests/python/backup.py`: a full backup (and its restore) driven from Python through
//! ctypes, against the `libcertadm_emu.so` cargo built for this test run. Skipped with a
//! note when `python3` is not installed, failed under `CERTADM_EMU_REQUIRE_TOOLS=1`.
//!
//! Environment: `CERTADM_EMU_LIB` overrides the library; `PYTHON` the interpreter.

use crate::common::tool::require_tool_env;
use crate::common::{cbuild, run_with_timeout, show};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn python_ctypes_full_backup() {
    let Some(python) = require_tool_env("PYTHON", "python3") else {
        return;
    };
    let version = Command::new(&python).arg("--version").output();
    // The private link to this build's library (`tests/common/cbuild.rs`): a concurrent
    // cargo build cannot rewrite it while Python runs.
    let copy = cbuild::library();
    let dir = cbuild::scratch("python_ctypes");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/backup.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg(copy)
        .env("CERTEMU_TEST_DIR", &dir)
        .env_remove("CERTADM_EMU_LOG");
    let (o, took) = run_with_timeout(cmd, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&o.stdout);
    println!(
        "{} ({:.2}s)\n{stdout}",
        String::from_utf8_lossy(&version.map(|v| v.stdout).unwrap_or_default()).trim(),
        took.as_secs_f64()
    );
    assert!(o.status.success(), "backup.py failed\n{}", show(&o));
    assert!(stdout.contains("backup.py: all checks passed"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

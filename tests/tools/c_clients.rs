//! The C clients of `tests/c`: each program is compiled against `include/certbcli.h`
//! and `include/certemu.h` with `cc -std=c11 -Wall -Wextra -Werror -pedantic`, linked
//! with `libcertadm_emu.so` (the cdylib cargo built for this test run), run (exit code 0
//! is a pass), then run again under valgrind memcheck when valgrind is installed.
//!
//! * `header_check.c` is also compiled as C++ (`c++ -x c++ -Wall -Wextra -Werror -pedantic`),
//!   and the headers alone as C99 and C++11.
//! * `dlopen_all.c` is linked without the library and loads it with `dlopen`.
//! * `mingw_witness.c` is only compiled, with the mingw-w64 cross compiler, against
//!   mingw-w64's own `certbcli.h` (a second witness for the header).
//!
//! The build (library, flags, rpath) is `tests/common/cbuild.rs`. A missing tool (C or C++
//! compiler, valgrind, mingw-w64, python3, nm) skips its test with a note, and fails it
//! under `CERTADM_EMU_REQUIRE_TOOLS=1` (`tests/common/tool.rs`).
//!
//! Environment:
//! * `CERTADM_EMU_LIB`: use this `libcertadm_emu.so` instead of the one next to the test.
//!
//! The library is linked into a private directory with its soname link
//! (`common::link_library`). The exported symbol list and the soname are checked by
//! `tests/tools/install.rs`, with the installed layout and the CMake and pkg-config consumers.
//! * `CERTADM_EMU_NO_VALGRIND=1`: skip the valgrind runs (they take most of the time).
//! * `CC` / `CXX`: the C and C++ compilers (default `cc` / `c++`).

use crate::common;

use common::cbuild::{self, compile, Lang, Link};
use common::tool::require_tool;
use common::{readme_block, run_with_timeout, show};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const VALGRIND: &[&str] = &[
    "-q",
    "--error-exitcode=1",
    "--leak-check=full",
    "--errors-for-leak-kinds=definite,indirect",
    "--show-possibly-lost=no",
];
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
const VALGRIND_TIMEOUT: Duration = Duration::from_secs(600);

/// Every C program of tests/c and how it is built; `every_program_is_listed` keeps this
/// list and the directory in step.
const PROGRAMS: &[(&str, Kind)] = &[
    ("sample_is_server_online", Kind::Linked),
    ("sample_backup_prepare", Kind::Linked),
    ("sample_get_database_names", Kind::Linked),
    ("sample_get_dynamic_file_list", Kind::Linked),
    ("sample_open_file", Kind::Linked),
    ("sample_read", Kind::Linked),
    ("sample_close", Kind::Linked),
    ("sample_get_backup_logs", Kind::Linked),
    ("sample_truncate_logs", Kind::Linked),
    ("sample_backup_end", Kind::Linked),
    ("sample_backup_free", Kind::Linked),
    ("sample_restore_get_database_locations", Kind::Linked),
    ("sample_restore_prepare", Kind::Linked),
    ("sample_restore_register", Kind::Linked),
    ("sample_restore_register_through_file", Kind::Linked),
    ("sample_restore_register_complete", Kind::Linked),
    ("sample_restore_end", Kind::Linked),
    ("sample_server_control", Kind::Linked),
    ("scenario_backup", Kind::Linked),
    ("scenario_restore", Kind::Linked),
    ("stuck_restore", Kind::Linked),
    ("dlopen_all", Kind::Dlopen),
    ("robustness_certbcli", Kind::Linked),
    ("robustness_certemu", Kind::Linked),
    ("certemu_api", Kind::Linked),
    ("faults_and_report", Kind::Linked),
    ("plain_agent", Kind::Linked),
    ("header_check", Kind::Linked),
    ("mingw_witness", Kind::MingwSyntaxOnly),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Linked with -lcertadm_emu.
    Linked,
    /// Linked with -ldl only; loads the library itself (path in argv[1]).
    Dlopen,
    /// Compiled with x86_64-w64-mingw32-gcc -fsyntax-only, never run.
    MingwSyntaxOnly,
}

struct Setup {
    manifest: PathBuf,
    /// A private link to (or copy of) the library: a concurrent cargo build cannot change
    /// it under us.
    lib: PathBuf,
    /// Executables and scratch directories of this test process.
    out: PathBuf,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| Setup {
        manifest: cbuild::manifest().to_path_buf(),
        lib: cbuild::library().to_path_buf(),
        out: cbuild::scratch("c_clients"),
    })
}

/// Valgrind, for the memcheck runs: `None` when `CERTADM_EMU_NO_VALGRIND` is set, or after
/// [`require_tool`]'s note (a failure under `CERTADM_EMU_REQUIRE_TOOLS=1`).
fn valgrind() -> Option<&'static Path> {
    static VALGRIND: OnceLock<Option<PathBuf>> = OnceLock::new();
    VALGRIND
        .get_or_init(|| {
            if std::env::var_os("CERTADM_EMU_NO_VALGRIND").is_some() {
                eprintln!("note: CERTADM_EMU_NO_VALGRIND is set; skipping the valgrind runs");
                None
            } else {
                require_tool("valgrind")
            }
        })
        .as_deref()
}

/// Compiles `tests/c/<name>.c` (as C, or as C++ when `cxx`) into an executable; `None`
/// when the compiler is missing.
fn build(name: &str, kind: Kind, cxx: bool) -> Option<PathBuf> {
    let link = match kind {
        Kind::Linked => Link::Library,
        Kind::Dlopen => Link::Dlopen,
        Kind::MingwSyntaxOnly => unreachable!("not built for the host"),
    };
    cbuild::build(name, link, if cxx { Lang::Cxx } else { Lang::C })
}

/// Runs `exe` natively, then under valgrind; panics with the output on a failure.
fn run(name: &str, exe: &Path, kind: Kind) {
    let s = setup();
    for under_valgrind in [false, true] {
        let mut cmd = if under_valgrind {
            let Some(valgrind) = valgrind() else {
                continue;
            };
            let mut c = Command::new(valgrind);
            c.args(VALGRIND).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        if kind == Kind::Dlopen {
            cmd.arg(&s.lib);
        }
        let scratch = s.out.join(format!(
            "scratch-{name}-{}",
            if under_valgrind { "valgrind" } else { "native" }
        ));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).unwrap();
        cmd.env("CERTEMU_TEST_DIR", &scratch)
            .env("CERTEMU_LIB", &s.lib)
            .env_remove("CERTADM_EMU_LOG");
        let (o, took) = run_with_timeout(
            cmd,
            if under_valgrind {
                VALGRIND_TIMEOUT
            } else {
                RUN_TIMEOUT
            },
        );
        let how = if under_valgrind {
            "under valgrind"
        } else {
            "natively"
        };
        assert!(o.status.success(), "{name} failed {how}\n{}", show(&o));
        println!(
            "{name}: passed {how} in {:.2}s\n{}",
            took.as_secs_f64(),
            String::from_utf8_lossy(&o.stdout)
        );
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let _ = std::fs::remove_file(exe);
}

fn program(name: &str) {
    let kind = PROGRAMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
        .unwrap_or_else(|| panic!("{name} is not in PROGRAMS"));
    let Some(exe) = build(name, kind, false) else {
        return;
    };
    run(name, &exe, kind);
}

macro_rules! c_programs {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                program(stringify!($name));
            }
        )*
    };
}

c_programs!(
    sample_is_server_online,
    sample_backup_prepare,
    sample_get_database_names,
    sample_get_dynamic_file_list,
    sample_open_file,
    sample_read,
    sample_close,
    sample_get_backup_logs,
    sample_truncate_logs,
    sample_backup_end,
    sample_backup_free,
    sample_restore_get_database_locations,
    sample_restore_prepare,
    sample_restore_register,
    sample_restore_register_through_file,
    sample_restore_register_complete,
    sample_restore_end,
    sample_server_control,
    scenario_backup,
    scenario_restore,
    stuck_restore,
    dlopen_all,
    robustness_certbcli,
    robustness_certemu,
    certemu_api,
    faults_and_report,
);

/// The configuration for `plain_agent`, an unmodified client: one machine, a report file.
fn agent_config(dir: &Path, faults: &str) -> PathBuf {
    let cfg = dir.join("config.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"machines": [{{"name": "AGENTCA", "ca": {{"records": 40, "log_capacity": 8}}, "faults": {faults}}}],
                "report": "{}"}}"#,
            dir.join("report.json").display()
        ),
    )
    .unwrap();
    cfg
}

/// An unmodified binary (only certbcli.h, no control API) is tested through
/// `CERTADM_EMU_CONFIG`: the CA comes from the file, the report is written at exit,
/// natively and under valgrind.
#[test]
fn plain_agent_with_a_configuration_file() {
    let s = setup();
    let Some(exe) = build("plain_agent", Kind::Linked, false) else {
        return;
    };
    for under_valgrind in [false, true] {
        if under_valgrind && valgrind().is_none() {
            continue;
        }
        let dir = s.out.join(format!("plain-agent-{under_valgrind}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = agent_config(
            &dir,
            r#"{"faults": [{"kind": "fail", "function": "CertSrvBackupRead", "nth": 2, "hr": "RPC_S_CALL_FAILED"}]}"#,
        );
        let mut cmd = match (valgrind(), under_valgrind) {
            (Some(valgrind), true) => {
                let mut c = Command::new(valgrind);
                c.args(VALGRIND).arg(&exe);
                c
            }
            _ => Command::new(&exe),
        };
        cmd.arg("AGENTCA").arg(&dir).env("CERTADM_EMU_CONFIG", &cfg);
        let (o, _) = run_with_timeout(cmd, VALGRIND_TIMEOUT);
        // The planned read failure makes the backup fail, cleanly.
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("[800706be]"),
            "{}",
            show(&o)
        );
        let report =
            std::fs::read_to_string(dir.join("report.json")).expect("report written at exit");
        // The failed backup is reported (CB06: a file not read to the end), but the agent
        // cleaned up: no cleanup rule broken, nothing left behind.
        assert!(report.contains("\"rule\": \"CB06\""), "{report}");
        assert!(!report.contains("\"cleanup\": true"), "{report}");
        assert!(report.contains("\"leftovers\": []"), "{report}");
        assert!(report.contains("\"unfired_faults\": []"), "{report}");
    }
    let _ = std::fs::remove_file(exe);
}

/// Runs `certadm-emu explore` on the unmodified agent (in process, or `--server`):
/// once per call with that call failing. The careful agent is clean; the leaky one
/// (exit(1) without End) is caught.
fn explore_agent(through_server: bool) {
    let s = setup();
    let Some(exe) = build("plain_agent", Kind::Linked, false) else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_certadm-emu");
    for (mode, clean) in [("careful", true), ("leaky", false)] {
        let dir = s.out.join(format!("explore-{through_server}-{mode}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("out")).unwrap();
        let cfg = agent_config(&dir, "null");
        let mut cmd = Command::new(bin);
        cmd.arg("explore");
        if through_server {
            cmd.arg("--server");
        }
        cmd.arg("--config")
            .arg(&cfg)
            .arg("--")
            .arg(&exe)
            .arg("AGENTCA")
            .arg(dir.join("out"));
        if !clean {
            cmd.arg("leaky");
        }
        let (o, _) = run_with_timeout(cmd, RUN_TIMEOUT);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("fail at every step:"), "{}", show(&o));
        if clean {
            assert!(o.status.success(), "{}", show(&o));
            assert!(out.contains("no cleanup problem"), "{out}");
        } else {
            assert!(!o.status.success(), "{}", show(&o));
            assert!(
                out.contains("CB01 backup prepared but never ended"),
                "{out}"
            );
        }
    }
    let _ = std::fs::remove_file(exe);
}

/// The agent in process (`CERTADM_EMU_CONFIG`).
#[test]
fn explore_a_native_client() {
    explore_agent(false);
}

/// The agent through a server (`certadm-emu explore --server`; its library forwards).
#[test]
fn explore_a_native_client_through_a_server() {
    explore_agent(true);
}

/// `header_check.c` as C (c11, pedantic), linked and run.
#[test]
fn header_check_c() {
    program("header_check");
}

/// `header_check.c` as C++ (extern "C", char16_t WCHAR, the typecheck pointers), linked
/// and run; and the two headers alone under C99 and C++11.
#[test]
fn header_check_cxx() {
    let s = setup();
    let (Some(cc), Some(cxx)) = (cbuild::cc(), cbuild::cxx()) else {
        return;
    };
    let Some(exe) = build("header_check", Kind::Linked, true) else {
        return;
    };
    run("header_check (C++)", &exe, Kind::Linked);

    let probe = s.out.join("headers_only.c");
    std::fs::write(
        &probe,
        "#include \"certbcli.h\"\n#include \"certemu.h\"\n#define _CERTBCLI_TYPECHECK\n\
         #include \"certbcli.h\"\nint main(void) { return certbcli_typecheck_count() == 18 ? 0 : 1; }\n",
    )
    .unwrap();
    for (compiler, flags) in [
        (
            cc,
            &["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"][..],
        ),
        (
            cxx,
            &[
                "-x",
                "c++",
                "-std=c++11",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
            ][..],
        ),
    ] {
        let mut cmd = Command::new(&compiler);
        cmd.args(flags)
            .arg("-fsyntax-only")
            .arg("-I")
            .arg(s.manifest.join("include"))
            .arg(&probe);
        compile(
            &format!("the headers with {} {flags:?}", compiler.display()),
            cmd,
        );
    }
}

/// A second witness: mingw-w64's own certbcli.h and ours declare the same functions,
/// typedefs and constants (compiled only).
#[test]
fn mingw_witness() {
    let s = setup();
    let Some(cc) = require_tool("x86_64-w64-mingw32-gcc") else {
        return;
    };
    let mut cmd = Command::new(cc);
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only"])
        .arg(s.manifest.join("tests/c/mingw_witness.c"));
    compile("mingw_witness.c", cmd);
}

/// Every `tests/c/*.c` is one of [`PROGRAMS`] (and so is built and run by a test above).
#[test]
fn every_program_is_listed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".c").map(str::to_string)
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = PROGRAMS.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "tests/c and PROGRAMS in tests/c_clients.rs differ"
    );
    let _ = Kind::MingwSyntaxOnly;
}

/// The README's C example, exactly as printed, compiles with the strict flags and runs.
#[test]
fn readme_c_example() {
    let s = setup();
    let src = s.out.join("readme_backup.c");
    std::fs::write(&src, readme_block("c")).unwrap();
    let Some(exe) = cbuild::build_source(&src, "readme_backup", Link::Library, Lang::C) else {
        return;
    };
    let (o, _) = run_with_timeout(Command::new(&exe), RUN_TIMEOUT);
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("backup: hr=0x00000000"), "{out}");
    assert!(out.contains("\"violations\":[]"), "{out}");
    let _ = std::fs::remove_file(exe);
}

/// The README's Python example, exactly as printed, runs against the library.
#[test]
fn readme_python_example() {
    let s = setup();
    let Some(python) = common::tool::require_tool_env("PYTHON", "python3") else {
        return;
    };
    let script = s.out.join("readme_example.py");
    std::fs::write(&script, readme_block("python")).unwrap();
    let mut cmd = Command::new(python);
    cmd.arg(&script).env("CERTEMU_LIB", &s.lib);
    let (o, _) = run_with_timeout(cmd, RUN_TIMEOUT);
    assert!(o.status.success(), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("type 'D'"), "{out}");
    assert!(out.contains("second prepare: 0x8000FFFF"), "{out}");
}

/// Server mode under memcheck: the scenarios and the unmodified agent run with
/// `CERTADM_EMU_SERVER` (every call forwarded by `src/abi/forward.rs`), natively and under
/// valgrind. Results against in-process runs are compared in `tests/server_mode.rs`.
#[test]
fn server_mode_under_valgrind() {
    let s = setup();
    let dir = s.out.join("server-mode");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    const FAULT: &str = r#"{"faults": [{"kind": "fail", "function": "CertSrvBackupRead", "nth": 2, "hr": "RPC_S_CALL_FAILED"}]}"#;
    let cfg = agent_config(&dir, "null");
    if cbuild::cc().is_none() {
        return;
    }
    let (mut server, addr) = common::spawn_serve(|cmd| {
        cmd.arg("--config").arg(&cfg);
    });
    let result = std::panic::catch_unwind(|| {
        for name in ["scenario_backup", "scenario_restore", "plain_agent"] {
            let Some(exe) = build(name, Kind::Linked, false) else {
                return;
            };
            for under_valgrind in [false, true] {
                if under_valgrind && valgrind().is_none() {
                    continue;
                }
                let scratch = dir.join(format!("{name}-{under_valgrind}"));
                std::fs::create_dir_all(&scratch).unwrap();
                let mut cmd = match (valgrind(), under_valgrind) {
                    (Some(valgrind), true) => {
                        let mut c = Command::new(valgrind);
                        c.args(VALGRIND).arg(&exe);
                        c
                    }
                    _ => Command::new(&exe),
                };
                if name == "plain_agent" {
                    // A fresh schedule for each run: its second read fails.
                    certadm_emu::remote::client::RemoteClient::connect(&addr, None)
                        .and_then(|c| c.set_faults_json("AGENTCA", FAULT))
                        .unwrap();
                    cmd.arg("AGENTCA").arg(&scratch);
                }
                cmd.env("CERTEMU_TEST_DIR", &scratch)
                    .env("CERTADM_EMU_SERVER", &addr)
                    .env_remove("CERTADM_EMU_CONFIG")
                    .env_remove("CERTADM_EMU_LOG");
                let (o, took) = run_with_timeout(cmd, VALGRIND_TIMEOUT);
                if name == "plain_agent" {
                    // The planned read failure (one per run) fails the backup, cleanly.
                    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
                    assert!(
                        String::from_utf8_lossy(&o.stderr).contains("[800706be]"),
                        "{}",
                        show(&o)
                    );
                } else {
                    assert!(o.status.success(), "{name} failed\n{}", show(&o));
                }
                println!(
                    "{name} via server{}: {:.2}s",
                    if under_valgrind {
                        " under valgrind"
                    } else {
                        ""
                    },
                    took.as_secs_f64()
                );
            }
            let _ = std::fs::remove_file(exe);
        }
    });
    if let Ok(c) = certadm_emu::remote::client::RemoteClient::connect(&addr, None) {
        let _ = c.shutdown_server();
    }
    let status = server.wait().unwrap();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    assert!(status.success(), "certadm-emu serve: {status}");
    let report = std::fs::read_to_string(dir.join("report.json")).expect("report written");
    assert!(report.contains("\"rule\": \"CB06\""), "{report}");
    assert!(!report.contains("\"cleanup\": true"), "{report}");
    assert!(report.contains("\"leftovers\": []"), "{report}");
}

//! C# clients under Mono against the .NET entry set (`dotnet/`, `libcertadm.so`), in the
//! style of each public declaration family (`tests/dotnet/*.cs`, README "C# and PowerShell
//! on Linux"), compiled with `mcs` and run with `mono`, in process and through
//! `certadm-emu serve`:
//!
//! * `PowerShellBackup.cs`: the PowerShell script's C# (`DllImport("Certadm.dll",
//!   CharSet.Auto)`, un-suffixed names, UTF-8): full then incremental backup with 512 KiB
//!   reads and EOF by short read only, lists never freed, then a failing Prepare and
//!   `CertSrvBackupEnd(NULL)`. The report names each unfreed list and finds no session
//!   left open.
//! * `SysadminsPing.cs`: SysadminsLV's `Ping` (`"certadm.dll"`, `Boolean` return thrown
//!   away) against online, suspended, stopped, CA-less and unknown hosts.
//! * `GeneratedBindings.cs`: CsWin32-style bindings (`"CERTADM.dll"`, `ExactSpelling`, `W`
//!   names, UTF-16 pointers): backup, disk loss, restore with `CSEDB_RSTMAPW`,
//!   `RegisterComplete`, start through `certemu_ca_start`, every record back.
//! * `TwoSpellings.cs`: `"Certadm.dll"` and `"CERTADM.dll"` in one process are one library
//!   through the install step's links, two emulators through two copies.
//!
//! Each program finds the library as the README says: `LD_LIBRARY_PATH` pointing at an
//! install prefix made by `packaging/install.sh` (the probing names are links there), the
//! program's folder, or a NuGet package's `runtimes/linux-x64/native/`
//! (`packaging/nuget/pack.py`).
//!
//! Environment: `CERTADM_EMU_REQUIRE_TOOLS=1` (CI) makes a missing `mcs`, `mono` or
//! `python3` fail the tests instead of skipping them with a note;
//! `CERTADM_EMU_DOTNET_LIB` names the library to test (default: this build's).

use crate::common;
use common::tool::require_tool;

use common::{run_with_timeout, show};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A directory of this test process under the cargo target directory.
fn scratch(name: &str) -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dotnet");
        common::remove_stale_runs(&base);
        base.join(std::process::id().to_string())
    });
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Mono's compiler and runtime.
fn mono() -> bool {
    require_tool("mcs").is_some() && require_tool("mono").is_some()
}

/// The programs, compiled once per test process: (PowerShellBackup.exe,
/// SysadminsPing.exe, GeneratedBindings.exe, TwoSpellings.exe) in one directory.
fn programs() -> &'static [PathBuf; 4] {
    static EXES: OnceLock<[PathBuf; 4]> = OnceLock::new();
    EXES.get_or_init(|| {
        let dir = scratch("bin");
        [
            "PowerShellBackup",
            "SysadminsPing",
            "GeneratedBindings",
            "TwoSpellings",
        ]
        .map(|name| {
            let exe = dir.join(format!("{name}.exe"));
            let mut cmd = Command::new("mcs");
            // -unsafe for the generated-bindings style (pointers); -noconfig: mscorlib only
            // (what mono-runtime brings); mcs speaks C# 7.0.
            cmd.args(["-nologo", "-noconfig", "-unsafe", "-warnaserror+"])
                .arg(format!("-out:{}", exe.display()))
                .arg(manifest_dir().join(format!("tests/dotnet/{name}.cs")));
            let (o, _) = run_with_timeout(cmd, TIMEOUT);
            assert!(o.status.success(), "mcs {name}.cs\n{}", show(&o));
            exe
        })
    })
}

/// An install prefix of this build (`packaging/install.sh --no-build`): its `lib` holds
/// `libcertadm.so` and the links of every probing name.
fn prefix_lib() -> &'static PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let prefix = scratch("prefix");
        let mut cmd = Command::new("sh");
        cmd.arg(manifest_dir().join("packaging/install.sh"))
            .arg("--quiet")
            .arg("--prefix")
            .arg(&prefix)
            .arg("--no-build")
            .arg("--lib")
            .arg(common::built_library())
            .arg("--bin")
            .arg(env!("CARGO_BIN_EXE_certadm-emu"))
            .arg("--extra-lib")
            .arg(common::dotnet::library())
            .env_remove("DESTDIR");
        let (o, _) = run_with_timeout(cmd, TIMEOUT);
        assert!(o.status.success(), "packaging/install.sh\n{}", show(&o));
        prefix.join("lib")
    })
}

/// Where the client's calls go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// In the program's process, with `CERTADM_EMU_CONFIG`.
    InProcess,
    /// A `certadm-emu serve --config` process, with `CERTADM_EMU_SERVER`.
    Server,
}

/// Runs `mono EXE ARGS` with the library found through `ld_path` (or the program's
/// folder when `None`), the configuration `config` in process or through a server, and
/// returns its output and the report file the configuration names (read after the
/// process, or the server, exited).
fn run_mono(
    exe: &Path,
    args: &[&str],
    ld_path: Option<&Path>,
    mode: Mode,
    config: &Path,
) -> (Output, Option<Value>) {
    let mut cmd = Command::new("mono");
    cmd.arg(exe)
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("CERTADM_EMU_SERVER")
        .env_remove("CERTADM_EMU_CONFIG")
        .env_remove("CERTADM_EMU_REPORT")
        .env_remove("CERTADM_EMU_TRACE")
        .env_remove("CERTADM_EMU_SECRET")
        .env_remove("CERTADM_EMU_LOG");
    if let Some(p) = ld_path {
        cmd.env("LD_LIBRARY_PATH", p);
    }
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    let report = cfg["report"].as_str().map(PathBuf::from);
    if let Some(r) = &report {
        let _ = std::fs::remove_file(r);
    }
    let o = match mode {
        Mode::InProcess => {
            cmd.env("CERTADM_EMU_CONFIG", config);
            run_with_timeout(cmd, TIMEOUT).0
        }
        Mode::Server => {
            let served = common::wine::Served::start(config, |_| {});
            cmd.env("CERTADM_EMU_SERVER", &served.addr);
            let o = run_with_timeout(cmd, TIMEOUT).0;
            drop(served); // shuts the server down: it writes the report
            o
        }
    };
    println!("$ mono {} {args:?} ({mode:?})\n{}", exe.display(), show(&o));
    let report = report.map(|r| {
        let text = std::fs::read_to_string(&r)
            .unwrap_or_else(|e| panic!("no report {}: {e}\n{}", r.display(), show(&o)));
        serde_json::from_str(&text).unwrap()
    });
    (o, report)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The machine `name` of a report file.
fn machine<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["server"] == name)
        .unwrap_or_else(|| panic!("no machine {name} in {report:#}"))
}

/// `[call, hresult]` of each entry of a machine report's trace.
fn trace(m: &Value) -> Vec<(String, String)> {
    m["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t[1].as_str().unwrap().into(), t[3].as_str().unwrap().into()))
        .collect()
}

// ----- the PowerShell script's C# ------------------------------------------------------------

fn powershell_pattern(mode: Mode) {
    if !mono() {
        return;
    }
    let dir = scratch(&format!("powershell-{mode:?}"));
    let config = dir.join("config.json");
    let report = dir.join("report.json");
    // A 1 MiB database: two full 512 KiB reads, then the read that returns 0 bytes. The
    // third Prepare fails (the failure path: End on a NULL handle).
    std::fs::write(
        &config,
        serde_json::json!({
            "machines": [{"name": "CA01", "dns": "ca01.contoso.test",
                          "ca": {"name": "Contoso Issuing CA", "records": 40, "edb_size": "1M"},
                          "faults": {"faults": [{"kind": "fail", "function": "CertSrvBackupPrepareW",
                                                 "nth": 3, "hr": "E_ACCESSDENIED"}]}}],
            "report": report,
        })
        .to_string(),
    )
    .unwrap();
    let out = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let (full, inc, again) = (out("full"), out("incremental"), out("again"));
    let (o, rep) = run_mono(
        &programs()[0],
        &["CA01", &full, "Full", &inc, "Incremental", &again, "Full"],
        Some(prefix_lib()),
        mode,
        &config,
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "the third backup fails\n{}",
        show(&o)
    );
    let text = stdout(&o);
    let calls: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("CertSrv") || l.starts_with("status"))
        .collect();
    let want = [
        "CertSrvIsServerOnline online=True",
        "CertSrvBackupPrepare 0x00000000",
        "CertSrvRestoreGetDatabaseLocations 0x00000000",
        "CertSrvBackupGetDatabaseNames 0x00000000",
        "CertSrvBackupOpenFile 0x00000000",
        "CertSrvBackupRead 0x00000000 x3: 1048576 of 1048576 bytes",
        "CertSrvBackupClose 0x00000000",
        "CertSrvBackupGetBackupLogs 0x00000000",
        "CertSrvBackupOpenFile 0x00000000",
        "CertSrvBackupRead 0x00000000 x1",
        "CertSrvBackupClose 0x00000000",
        "CertSrvBackupTruncateLogs 0x00000000",
        "status Full 0x00000000",
        "CertSrvBackupEnd 0x00000000",
        // Incremental: logs only, no truncation.
        "CertSrvIsServerOnline online=True",
        "CertSrvBackupPrepare 0x00000000",
        "CertSrvBackupGetBackupLogs 0x00000000",
        "CertSrvBackupOpenFile 0x00000000",
        "CertSrvBackupRead 0x00000000 x1",
        "CertSrvBackupClose 0x00000000",
        "status Incremental 0x00000000",
        "CertSrvBackupEnd 0x00000000",
        // The injected failure, then End(IntPtr.Zero): E_HANDLE.
        "CertSrvIsServerOnline online=True",
        "CertSrvBackupPrepare 0x80070005",
        "status Prepare 0x80070005",
        "CertSrvBackupEnd 0x80070006",
    ];
    assert_eq!(calls.len(), want.len(), "{text}");
    for (got, want) in calls.iter().zip(want) {
        assert!(got.starts_with(want), "{got:?} is not {want:?}\n{text}");
    }

    // The files, in certutil's layout; certbkxp.dat is the raw locations list.
    let db = Path::new(&full).join("DataBase");
    assert_eq!(
        std::fs::metadata(db.join("Contoso Issuing CA.edb"))
            .unwrap()
            .len(),
        1 << 20
    );
    assert!(db.join("edb00001.log").is_file());
    let dat = std::fs::read(db.join("certbkxp.dat")).unwrap();
    assert_eq!(&dat[..2], b"D\0", "{dat:?}");
    assert!(dat.ends_with(&[0, 0, 0, 0]), "{dat:?}");
    assert!(Path::new(&inc).join("DataBase/edb00002.log").is_file());

    // The report: each unfreed list by the call that returned it, no session left open,
    // the planned fault fired.
    let rep = rep.unwrap();
    let m = machine(&rep, "CA01");
    assert_eq!(
        m["leftovers"],
        serde_json::json!(["4 list buffer(s) never freed"]),
        "{m:#}"
    );
    assert_eq!(m["unfired_faults"], serde_json::json!([]), "{m:#}");
    let mut unfreed: Vec<String> = m["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            assert_eq!(v["rule"], "CB03", "only unfreed lists: {v:#}");
            let d = v["detail"].as_str().unwrap();
            d[d.find('(').unwrap() + 1..d.len() - 1].to_string()
        })
        .collect();
    unfreed.sort();
    assert_eq!(
        unfreed,
        [
            "CertSrvBackupGetBackupLogsW",
            "CertSrvBackupGetBackupLogsW",
            "CertSrvBackupGetDatabaseNamesW",
            "CertSrvRestoreGetDatabaseLocationsW",
        ],
        "{m:#}"
    );
    let t = trace(m);
    assert_eq!(
        t.last().unwrap(),
        &(
            "CertSrvBackupPrepareW".to_string(),
            "0x80070005".to_string()
        ),
        "the End on NULL is refused before routing, so not traced: {t:?}"
    );
}

#[test]
fn powershell_pattern_in_process() {
    powershell_pattern(Mode::InProcess);
}

#[test]
fn powershell_pattern_through_the_server() {
    powershell_pattern(Mode::Server);
}

// ----- SysadminsLV's Ping ----------------------------------------------------------------------

/// The hosts of the ping configuration, and what `Ping` says of each.
const PINGS: [(&str, bool); 7] = [
    ("CA01", true),
    ("ca01.contoso.test", true),
    ("ca01", true),
    ("CA02", false),  // stopped
    ("CA03", false),  // suspended (recovery in progress): S_OK, FALSE
    ("WEB01", false), // no CA
    ("GHOST", false), // unknown host
];

fn ping_config(dir: &Path) -> PathBuf {
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "machines": [
                {"name": "CA01", "dns": "ca01.contoso.test"},
                {"name": "CA02", "faults": {"faults": [
                    {"kind": "service_stop", "before": "CertSrvIsServerOnlineW"}]}},
                {"name": "CA03", "faults": {"faults": [
                    {"kind": "service_suspend", "before": "CertSrvIsServerOnlineW"}]}},
                {"name": "WEB01", "ca": null}],
            "report": dir.join("report.json"),
        })
        .to_string(),
    )
    .unwrap();
    config
}

fn sysadmins_ping(mode: Mode) {
    if !mono() {
        return;
    }
    let dir = scratch(&format!("ping-{mode:?}"));
    let config = ping_config(&dir);
    let hosts: Vec<&str> = PINGS.iter().map(|p| p.0).collect();
    let (o, rep) = run_mono(&programs()[1], &hosts, Some(prefix_lib()), mode, &config);
    assert!(o.status.success(), "{}", show(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), PINGS.len(), "{text}");
    for ((host, online), line) in PINGS.iter().zip(&lines) {
        let want = format!("{host}: online={}", if *online { "True" } else { "False" });
        assert!(line.starts_with(&want), "{line:?}, want {want:?}");
    }
    // The HRESULTs the Ping threw away, from the report's trace.
    let rep = rep.unwrap();
    let ok = "0x00000000".to_string();
    let unavailable = "0x800706BA".to_string();
    let call = "CertSrvIsServerOnlineW".to_string();
    assert_eq!(
        trace(machine(&rep, "CA01")),
        vec![(call.clone(), ok.clone()); 3]
    );
    assert_eq!(
        trace(machine(&rep, "CA02")),
        vec![(call.clone(), unavailable)]
    );
    assert_eq!(trace(machine(&rep, "CA03")), vec![(call, ok)]);
    for m in ["CA01", "CA02", "CA03"] {
        assert_eq!(machine(&rep, m)["clean"], true, "{rep:#}");
        assert_eq!(machine(&rep, m)["unfired_faults"], serde_json::json!([]));
    }
}

#[test]
fn sysadmins_ping_in_process() {
    sysadmins_ping(Mode::InProcess);
}

#[test]
fn sysadmins_ping_through_the_server() {
    sysadmins_ping(Mode::Server);
}

// ----- generated bindings -----------------------------------------------------------------------

/// Runs GeneratedBindings.exe and checks its last line, the CA's report after the restore.
fn check_generated_bindings(o: &Output) {
    assert!(o.status.success(), "{}", show(o));
    let text = stdout(o);
    assert!(text.contains("\nfailures 0\n"), "{text}");
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("no report line\n{text}"));
    let r: Value = serde_json::from_str(json).unwrap();
    assert_eq!(r["service"], "running", "{r:#}");
    assert_eq!(r["record_count"], 16 + 25, "every record back: {r:#}");
    assert_eq!(r["revoked_count"], 1, "{r:#}");
    assert_eq!(r["last_start"]["hr"], 0, "{r:#}");
    assert_eq!(r["last_start"]["hard"], true, "a hard recovery: {r:#}");
    assert_eq!(r["restore_marker_present"], false, "{r:#}");
    assert_eq!(r["sessions_open"], 0, "{r:#}");
    assert_eq!(r["outstanding_buffers"], 0, "{r:#}");
    assert_eq!(
        r["conformance"]["violations"],
        serde_json::json!([]),
        "{r:#}"
    );
    assert_eq!(
        r["conformance"]["leftovers"],
        serde_json::json!([]),
        "{r:#}"
    );
}

fn generated_bindings(mode: Mode) {
    if !mono() {
        return;
    }
    let dir = scratch(&format!("generated-{mode:?}"));
    // No machine: the program creates its CA through certemu_ca_create.
    let config = dir.join("config.json");
    std::fs::write(&config, r#"{"machines": []}"#).unwrap();
    let backup = dir.join("backup");
    let (o, _) = run_mono(
        &programs()[2],
        &[backup.to_str().unwrap()],
        Some(prefix_lib()),
        mode,
        &config,
    );
    check_generated_bindings(&o);
}

#[test]
fn generated_bindings_in_process() {
    generated_bindings(Mode::InProcess);
}

#[test]
fn generated_bindings_through_the_server() {
    generated_bindings(Mode::Server);
}

// ----- how a program finds the library ----------------------------------------------------------

/// The NuGet package (`packaging/nuget/pack.py`): the documented layout, and programs of
/// all three spellings find the library from it, with `LD_LIBRARY_PATH` pointing at
/// `runtimes/linux-x64/native/` and with the native files copied into the program's
/// folder (what a .NET build does with a package's native assets).
#[test]
fn the_nuget_package_serves_every_spelling() {
    if require_tool("python3").is_none() || !mono() {
        return;
    }
    let dir = scratch("nuget");
    let mut cmd = Command::new("python3");
    cmd.arg(manifest_dir().join("packaging/nuget/pack.py"))
        .arg(common::dotnet::library())
        .arg(&dir)
        .arg("--strip");
    let (o, _) = run_with_timeout(cmd, TIMEOUT);
    assert!(o.status.success(), "pack.py\n{}", show(&o));
    let nupkg = PathBuf::from(stdout(&o).trim());
    assert_eq!(
        nupkg,
        dir.join(format!("certadm-emu.{}.nupkg", env!("CARGO_PKG_VERSION")))
    );

    // Its entries: the manifest with Cargo.toml's version, the OPC parts, the library
    // under every name of packaging/extra-cdylibs.
    let list = |args: &[&str]| {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "zipfile"]).args(args);
        let (o, _) = run_with_timeout(cmd, TIMEOUT);
        assert!(o.status.success(), "python3 -m zipfile\n{}", show(&o));
        stdout(&o)
    };
    let listing = list(&["-l", nupkg.to_str().unwrap()]);
    let mut entries: Vec<&str> = listing
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    entries.sort();
    let names = common::dotnet::probe_names();
    let mut want: Vec<String> = names
        .iter()
        .map(|n| format!("runtimes/linux-x64/native/{n}"))
        .collect();
    want.extend(["[Content_Types].xml", "_rels/.rels", "certadm-emu.nuspec"].map(String::from));
    want.sort();
    assert_eq!(entries, want);
    let extracted = dir.join("extracted");
    list(&["-e", nupkg.to_str().unwrap(), extracted.to_str().unwrap()]);
    let nuspec = std::fs::read_to_string(extracted.join("certadm-emu.nuspec")).unwrap();
    assert!(
        nuspec.contains(&format!("<version>{}</version>", env!("CARGO_PKG_VERSION"))),
        "{nuspec}"
    );
    let native = extracted.join("runtimes/linux-x64/native");

    // Run each spelling's program (a) with LD_LIBRARY_PATH, (b) from a folder holding the
    // program and the native files.
    let ping_dir = scratch("nuget-ping");
    let ping = ping_config(&ping_dir);
    let ps_dir = scratch("nuget-powershell");
    let ps_config = ps_dir.join("config.json");
    std::fs::write(&ps_config, r#"{"machines": [{"name": "CA01"}]}"#).unwrap();
    let folder = dir.join("app");
    std::fs::create_dir_all(&folder).unwrap();
    for exe in &programs()[..3] {
        std::fs::copy(exe, folder.join(exe.file_name().unwrap())).unwrap();
    }
    for n in &names {
        std::fs::copy(native.join(n), folder.join(n)).unwrap();
    }
    for (how, bin, ld) in [
        (
            "LD_LIBRARY_PATH",
            programs()[0].parent().unwrap(),
            Some(native.as_path()),
        ),
        ("program folder", folder.as_path(), None),
    ] {
        let backup = dir.join(format!("backup-{}", how.replace(' ', "-")));
        let (o, _) = run_mono(
            &bin.join("PowerShellBackup.exe"),
            &["CA01", backup.to_str().unwrap(), "Full"],
            ld,
            Mode::InProcess,
            &ps_config,
        );
        assert!(o.status.success(), "Certadm.dll via {how}\n{}", show(&o));
        let (o, _) = run_mono(
            &bin.join("SysadminsPing.exe"),
            &["CA01"],
            ld,
            Mode::InProcess,
            &ping,
        );
        assert!(
            stdout(&o).starts_with("CA01: online=True"),
            "certadm.dll via {how}\n{}",
            show(&o)
        );
        let (o, _) = run_mono(
            &bin.join("GeneratedBindings.exe"),
            &[dir
                .join(format!("restore-{}", how.replace(' ', "-")))
                .to_str()
                .unwrap()],
            ld,
            Mode::InProcess,
            &ps_config,
        );
        check_generated_bindings(&o);
    }
}

/// Two spellings in one process: one library through the install step's links, two
/// emulators through two copies of the file (the README's advice: one spelling, or links).
#[test]
fn two_spellings_are_one_library_through_links_and_two_through_copies() {
    if !mono() {
        return;
    }
    let dir = scratch("two-spellings");
    let config = dir.join("config.json");
    std::fs::write(&config, r#"{"machines": []}"#).unwrap();
    let copies = dir.join("copies");
    std::fs::create_dir_all(&copies).unwrap();
    for n in ["libCertadm.so", "libCERTADM.so"] {
        std::fs::copy(common::dotnet::library(), copies.join(n)).unwrap();
    }
    for (lib, second) in [
        (prefix_lib().as_path(), "0x00000000"),
        (copies.as_path(), "0x800706BA"),
    ] {
        let (o, _) = run_mono(
            &programs()[3],
            &["TWO01"],
            Some(lib),
            Mode::InProcess,
            &config,
        );
        assert_eq!(
            stdout(&o),
            format!("certemu_ca_create 0x00000000\nCertSrvIsServerOnlineW {second}\n"),
            "{}",
            lib.display()
        );
    }
}

/// Without the library on any path Mono probes, the first call fails with
/// `DllNotFoundException`, not with a crash or a wrong library.
#[test]
fn without_the_library_mono_says_dll_not_found() {
    if !mono() {
        return;
    }
    let dir = scratch("not-found");
    let config = dir.join("config.json");
    std::fs::write(&config, r#"{"machines": []}"#).unwrap();
    let (o, _) = run_mono(&programs()[1], &["CA01"], None, Mode::InProcess, &config);
    assert!(!o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("DllNotFoundException") && err.contains("certadm.dll"),
        "{err}"
    );
}

/// A configuration with a machine without a CA writes its report at exit (the report of
/// such a machine has no CA state to read).
#[test]
fn a_config_report_with_a_machine_without_a_ca() {
    let cfg =
        certadm_emu::config::Config::from_json(r#"{"machines": [{"name": "WEB01", "ca": null}]}"#)
            .unwrap();
    let machines = cfg.build().unwrap();
    let r = machines[0].machine_report();
    assert!(r.leftovers.is_empty(), "{r:?}");
    assert!(r.clean);
}

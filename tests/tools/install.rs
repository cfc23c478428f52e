//! The installed library and its consumers (docs/INSTALL.md, docs/ABI.md).
//!
//! * The ABI: `libcertadm_emu.so` exports exactly `include/certadm_emu.symbols`
//!   (`nm -D --defined-only`), which names the call table's 18 exports and the functions
//!   `include/certemu.h` declares; its soname carries the ABI version of `Cargo.toml`.
//! * `packaging/install.sh` lays out a prefix (the library of this test run, `--no-build`),
//!   with versions from `Cargo.toml`, and `--uninstall` removes all of it.
//! * Consumers build and run the README's C example through the prefix only: a CMake
//!   project (`find_package(certadm-emu CONFIG REQUIRED)`, `certadm-emu::certadm-emu`), a
//!   plain Makefile with `pkg-config`, and a C++ program (`tests/consumers/`). The CMake
//!   executables find the library through CMake's build-tree rpath into the prefix, the
//!   Makefile ones through `LD_LIBRARY_PATH=<prefix>/lib`.
//!
//! Environment:
//! * `CERTADM_EMU_REQUIRE_TOOLS=1` (CI): a missing cmake, pkg-config, make, g++, nm or
//!   readelf fails the test instead of skipping it with a note.
//! * `CERTADM_EMU_PREFIX=DIR`: the consumers use this installed prefix (for example the one
//!   `packaging/install.sh` built in release mode) instead of installing this run's library.
//! * `CERTADM_EMU_LIB`: the library to check and install (default: the one cargo built
//!   for this test run).

use crate::common;

use certadm_emu::core::Call;
use common::tool::require_tool;
use common::{readme_block, run_with_timeout, show};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(300);
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A directory of this test process under the cargo target directory.
fn scratch(name: &str) -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("install");
        common::remove_stale_runs(&base);
        base.join(std::process::id().to_string())
    });
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `cmd`, prints the command and its output, and panics on failure.
fn run(what: &str, mut cmd: Command) -> Output {
    let desc = format!("{cmd:?}");
    cmd.current_dir(manifest_dir());
    let (o, took) = run_with_timeout(cmd, TIMEOUT);
    println!(
        "$ {desc}\n{}{}({what}: {:.2}s)",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        took.as_secs_f64()
    );
    assert!(o.status.success(), "{what} failed\n{}", show(&o));
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The dynamic section of an ELF file (`readelf -d`).
fn dynamic_section(file: &Path) -> String {
    let mut cmd = Command::new("readelf");
    cmd.arg("-d").arg(file).env("LC_ALL", "C");
    let (o, _) = run_with_timeout(cmd, TIMEOUT);
    assert!(
        o.status.success(),
        "readelf -d {}\n{}",
        file.display(),
        show(&o)
    );
    stdout(&o)
}

/// The values of the `(TAG)` entries of a `readelf -d` listing: `Shared library: [x]` → x.
fn dynamic_values(section: &str, tag: &str) -> Vec<String> {
    section
        .lines()
        .filter(|l| l.contains(&format!("({tag})")))
        .filter_map(|l| {
            let a = l.find('[')?;
            let b = l.rfind(']')?;
            Some(l[a + 1..b].to_string())
        })
        .collect()
}

/// The soname the ABI rule of docs/ABI.md gives this crate's version, derived here on its
/// own from the version (build.rs and install.sh apply the same rule).
fn expected_soname() -> String {
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    let minor = env!("CARGO_PKG_VERSION_MINOR");
    if major == "0" {
        format!("libcertadm_emu.so.0.{minor}")
    } else {
        format!("libcertadm_emu.so.{major}")
    }
}

// ----- the ABI ----------------------------------------------------------------------------------

/// The names of `include/certadm_emu.symbols` (comments and blank lines left out).
fn symbol_list() -> Vec<String> {
    std::fs::read_to_string(manifest_dir().join("include/certadm_emu.symbols"))
        .expect("include/certadm_emu.symbols")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The checked-in list is sorted, names each call of the call table once, and each
/// function `include/certemu.h` declares once, and nothing else.
#[test]
fn the_symbol_list_is_the_call_table_and_certemu_h() {
    let list = symbol_list();
    let mut sorted = list.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        list, sorted,
        "include/certadm_emu.symbols: keep it sorted, no duplicates"
    );

    let calls: BTreeSet<String> = Call::ALL.iter().map(|c| c.name().to_string()).collect();
    let header = std::fs::read_to_string(manifest_dir().join("include/certemu.h")).unwrap();
    // Declarations: `HRESULT certemu_x(` at the start of a line.
    let declared: BTreeSet<String> = header
        .lines()
        .filter_map(|l| l.strip_prefix("HRESULT "))
        .filter_map(|l| l.split('(').next())
        .map(|n| n.trim().to_string())
        .filter(|n| n.starts_with("certemu_"))
        .collect();
    assert!(!declared.is_empty(), "no certemu_ declaration found");
    let want: BTreeSet<String> = calls.union(&declared).cloned().collect();
    let have: BTreeSet<String> = list.into_iter().collect();
    assert_eq!(
        have, want,
        "include/certadm_emu.symbols against the call table and include/certemu.h"
    );
}

/// The library exports exactly the checked-in list: an accidental export or a removed
/// function fails here (docs/ABI.md says which changes are allowed).
#[test]
fn exports_are_exactly_the_symbol_list() {
    if require_tool("nm").is_none() {
        return;
    }
    let lib = common::built_library();
    let mut cmd = Command::new("nm");
    cmd.args(["-D", "--defined-only"]).arg(&lib);
    let o = run("nm -D --defined-only", cmd);
    let exported: Vec<String> = stdout(&o)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect();
    let exported: BTreeSet<String> = exported.into_iter().collect();
    let listed: BTreeSet<String> = symbol_list().into_iter().collect();
    let extra: Vec<_> = exported.difference(&listed).collect();
    let missing: Vec<_> = listed.difference(&exported).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{} exports names not in include/certadm_emu.symbols: {extra:?}; \
         and lacks listed ones: {missing:?} (docs/ABI.md: what may change, and how)",
        lib.display()
    );
}

/// The soname is `libcertadm_emu.so.<MAJOR>` (`.0.<MINOR>` for a 0.x version), set at
/// link time by build.rs from the crate version.
#[test]
fn the_soname_carries_the_abi_version() {
    if require_tool("readelf").is_none() {
        return;
    }
    let lib = common::built_library();
    let sonames = dynamic_values(&dynamic_section(&lib), "SONAME");
    assert_eq!(sonames, vec![expected_soname()], "{}", lib.display());
    assert_eq!(common::SONAME, expected_soname());
}

// ----- the install step -------------------------------------------------------------------------

/// Runs `packaging/install.sh ARGS` (the library and executable of this run, no build).
fn install_script(prefix: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(manifest_dir().join("packaging/install.sh"))
        .arg("--prefix")
        .arg(prefix)
        .args(extra)
        .env_remove("DESTDIR");
    run("packaging/install.sh", cmd)
}

fn install_this_build(prefix: &Path) -> Output {
    let lib = common::built_library();
    let dotnet = common::dotnet::library();
    install_script(
        prefix,
        &[
            "--no-build",
            "--lib",
            lib.to_str().unwrap(),
            "--bin",
            env!("CARGO_BIN_EXE_certadm-emu"),
            "--extra-lib",
            dotnet.to_str().unwrap(),
        ],
    )
}

/// Every file and link under `dir`, relative, with `-> target` for a link.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                let to = std::fs::read_link(&p).unwrap();
                out.push(format!("{rel} -> {}", to.display()));
            } else if meta.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The prefix: exactly the documented files, versions from Cargo.toml, the soname links,
/// a working executable, a manifest; then `--uninstall` leaves the prefix empty.
#[test]
fn install_lays_out_the_prefix_and_uninstall_removes_it() {
    let prefix = scratch("layout").join("prefix");
    install_this_build(&prefix);
    let soname = expected_soname();
    let real = format!("libcertadm_emu.so.{VERSION}");
    let mut want = vec![
        "bin/certadm-emu".to_string(),
        "include/certbcli.h".into(),
        "include/certemu.h".into(),
        "lib/cmake/certadm-emu/certadm-emuConfig.cmake".into(),
        "lib/cmake/certadm-emu/certadm-emuConfigVersion.cmake".into(),
        format!("lib/libcertadm_emu.so -> {soname}"),
        format!("lib/{soname} -> {real}"),
        format!("lib/{real}"),
        "lib/pkgconfig/certadm-emu.pc".into(),
        "share/certadm-emu/install-manifest.txt".into(),
    ];
    // The .NET entry set (packaging/extra-cdylibs): the file, and a link per other name.
    let dotnet = common::dotnet::probe_names();
    want.push(format!("lib/{}", dotnet[0]));
    for alias in &dotnet[1..] {
        want.push(format!("lib/{alias} -> {}", dotnet[0]));
    }
    want.sort();
    assert_eq!(tree(&prefix), want);

    // The headers are the repository's, unchanged.
    for h in ["certbcli.h", "certemu.h"] {
        assert_eq!(
            std::fs::read(prefix.join("include").join(h)).unwrap(),
            std::fs::read(manifest_dir().join("include").join(h)).unwrap(),
            "{h}"
        );
    }
    // Versions from Cargo.toml.
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/certadm-emu.pc")).unwrap();
    assert!(pc.contains(&format!("\nVersion: {VERSION}\n")), "{pc}");
    assert!(
        pc.contains(&format!("\nprefix={}\n", prefix.display())),
        "{pc}"
    );
    assert!(!pc.contains('@'), "an unreplaced template variable\n{pc}");
    let cmake_dir = prefix.join("lib/cmake/certadm-emu");
    let config = std::fs::read_to_string(cmake_dir.join("certadm-emuConfig.cmake")).unwrap();
    assert!(
        config.contains(&format!("set(certadm-emu_VERSION \"{VERSION}\")")),
        "{config}"
    );
    assert!(config.contains(&format!("IMPORTED_SONAME \"{soname}\"")));
    let version =
        std::fs::read_to_string(cmake_dir.join("certadm-emuConfigVersion.cmake")).unwrap();
    assert!(version.contains(&format!("set(PACKAGE_VERSION \"{VERSION}\")")));
    for (name, text) in [("Config", &config), ("ConfigVersion", &version)] {
        assert!(
            !text.contains("@VERSION@") && !text.contains("@ABI@"),
            "{name}"
        );
    }
    // The executable runs.
    let mut cmd = Command::new(prefix.join("bin/certadm-emu"));
    cmd.arg("--version");
    let o = run("certadm-emu --version", cmd);
    assert_eq!(stdout(&o).trim(), format!("certadm-emu {VERSION}"));
    if require_tool("pkg-config").is_some() {
        let mut cmd = Command::new("pkg-config");
        cmd.args(["--modversion", "certadm-emu"])
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"));
        assert_eq!(stdout(&run("pkg-config", cmd)).trim(), VERSION);
    }
    // The manifest lists every file (and the directories install created).
    let manifest =
        std::fs::read_to_string(prefix.join("share/certadm-emu/install-manifest.txt")).unwrap();
    let files: BTreeSet<&str> = manifest.lines().filter(|l| !l.ends_with('/')).collect();
    let installed: BTreeSet<String> = tree(&prefix)
        .into_iter()
        .map(|l| l.split(" -> ").next().unwrap().to_string())
        .collect();
    assert_eq!(
        files,
        installed
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
    );

    // Installing again (an upgrade in place) keeps one manifest entry per file.
    install_this_build(&prefix);
    let again =
        std::fs::read_to_string(prefix.join("share/certadm-emu/install-manifest.txt")).unwrap();
    assert_eq!(again, manifest);

    // Uninstall removes every file and the directories install created, the prefix too.
    install_script(&prefix, &["--uninstall"]);
    assert!(!prefix.exists(), "{:?}", tree(&prefix));
    // A file of someone else's stays, and so do its directories.
    install_this_build(&prefix);
    std::fs::write(prefix.join("lib/other.so"), b"not ours").unwrap();
    install_script(&prefix, &["--uninstall"]);
    assert_eq!(tree(&prefix), vec!["lib/other.so".to_string()]);
    // Nothing left to uninstall: refused, with the reason.
    let mut cmd = Command::new("sh");
    cmd.arg(manifest_dir().join("packaging/install.sh"))
        .arg("--prefix")
        .arg(&prefix)
        .arg("--uninstall");
    let (o, _) = run_with_timeout(cmd, TIMEOUT);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing installed by this script"),
        "{}",
        show(&o)
    );
}

/// The version file's rule (docs/ABI.md): a request is met by the same ABI (MAJOR, or
/// 0.MINOR) at the same or a later version; EXACT needs the same version.
#[test]
fn the_cmake_version_file_follows_the_abi_rule() {
    if require_tool("cmake").is_none() {
        return;
    }
    let prefix = scratch("version-file").join("prefix");
    install_this_build(&prefix);
    let file = prefix.join("lib/cmake/certadm-emu/certadm-emuConfigVersion.cmake");
    let major: u64 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap();
    let minor: u64 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap();
    let patch: u64 = env!("CARGO_PKG_VERSION_PATCH").parse().unwrap();
    let v = |a: u64, b: u64, c: u64| format!("{a}.{b}.{c}");
    // (requested, compatible, exact)
    let mut cases = vec![
        (v(major, minor, patch), true, true),
        (v(major, minor, patch + 1), false, false),
        (v(major + 1, 0, 0), false, false),
    ];
    if major == 0 {
        // 0.x: the minor is the ABI: an older or newer minor is another ABI.
        cases.push((v(0, minor + 1, 0), false, false));
        if minor > 0 {
            cases.push((v(0, minor - 1, 0), false, false));
        }
        if patch > 0 {
            cases.push((v(0, minor, 0), true, false));
        }
    } else {
        cases.push((v(major, 0, 0), true, minor == 0 && patch == 0));
        cases.push((v(major - 1, 0, 0), false, false));
    }
    let dir = scratch("version-probe");
    for (requested, compatible, exact) in cases {
        let (maj, rest) = requested.split_once('.').unwrap();
        let (min, pat) = rest.split_once('.').unwrap();
        let script = dir.join("probe.cmake");
        std::fs::write(
            &script,
            format!(
                "set(PACKAGE_FIND_VERSION \"{requested}\")\n\
                 set(PACKAGE_FIND_VERSION_MAJOR {maj})\n\
                 set(PACKAGE_FIND_VERSION_MINOR {min})\n\
                 set(PACKAGE_FIND_VERSION_PATCH {pat})\n\
                 include(\"{}\")\n\
                 message(\"compatible=${{PACKAGE_VERSION_COMPATIBLE}} exact=${{PACKAGE_VERSION_EXACT}}\")\n",
                file.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("cmake");
        cmd.arg("-P").arg(&script);
        let o = run(&format!("cmake -P (requesting {requested})"), cmd);
        let said = String::from_utf8_lossy(&o.stderr);
        let want = format!(
            "compatible={} exact={}",
            if compatible { "TRUE" } else { "FALSE" },
            if exact { "TRUE" } else { "" }
        );
        assert_eq!(said.trim(), want, "requesting {requested} from {VERSION}");
    }
}

// ----- consumers --------------------------------------------------------------------------------

/// The prefix the consumers use: `CERTADM_EMU_PREFIX`, or this run's library installed
/// into a directory of this test process.
fn prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| match std::env::var_os("CERTADM_EMU_PREFIX") {
        Some(p) => {
            let p = PathBuf::from(p);
            println!(
                "consumers: the prefix of CERTADM_EMU_PREFIX, {}",
                p.display()
            );
            p
        }
        None => {
            let p = scratch("consumers-prefix").join("prefix");
            install_this_build(&p);
            p
        }
    })
}

/// A build directory holding the README's C block as `backup.c`.
fn consumer_dir(name: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    let src = dir.join("backup.c");
    std::fs::write(&src, readme_block("c")).unwrap();
    (dir, src)
}

/// Checks how `exe` finds the library: it needs the soname, and any run path it has is
/// the prefix's `lib` (never the cargo target directory).
fn check_linkage(exe: &Path, runpath: Option<&Path>) {
    let section = dynamic_section(exe);
    assert!(
        dynamic_values(&section, "NEEDED").contains(&expected_soname()),
        "{} does not need {}\n{section}",
        exe.display(),
        expected_soname()
    );
    let mut paths = dynamic_values(&section, "RUNPATH");
    paths.extend(dynamic_values(&section, "RPATH"));
    let want: Vec<String> = runpath
        .map(|p| p.display().to_string())
        .into_iter()
        .collect();
    assert_eq!(paths, want, "{}: run path\n{section}", exe.display());
}

/// Runs a consumer executable (with `LD_LIBRARY_PATH=<prefix>/lib` when `ld_path`) and
/// checks it backed the CA up with no conformance violation.
fn run_consumer(exe: &Path, ld_path: bool, first_line: &str) {
    let mut cmd = Command::new(exe);
    cmd.env_remove("LD_LIBRARY_PATH")
        .env_remove("CERTADM_EMU_SERVER")
        .env_remove("CERTADM_EMU_CONFIG")
        .env_remove("CERTADM_EMU_LOG");
    if ld_path {
        cmd.env("LD_LIBRARY_PATH", prefix().join("lib"));
    }
    let o = run(&exe.display().to_string(), cmd);
    let out = stdout(&o);
    assert!(out.starts_with(first_line), "{out}");
    assert!(out.contains("\"violations\":[]"), "{out}");
}

fn make_tools() -> bool {
    require_tool("pkg-config").is_some() && require_tool("make").is_some()
}

/// `make -f tests/consumers/Makefile TARGET` with `PKG_CONFIG_PATH=<prefix>/lib/pkgconfig`.
fn make(target: &str, dir: &Path, src: &Path) -> PathBuf {
    let mut cmd = Command::new("make");
    cmd.arg("-f")
        .arg(manifest_dir().join("tests/consumers/Makefile"))
        .arg(format!("BACKUP_C={}", src.display()))
        .arg(format!("OUT={}", dir.display()))
        .arg(dir.join(target))
        .env("PKG_CONFIG_PATH", prefix().join("lib/pkgconfig"))
        .env_remove("CFLAGS")
        .env_remove("CXXFLAGS");
    run(&format!("make {target}"), cmd);
    dir.join(target)
}

/// (a) CMake: `find_package(certadm-emu CONFIG REQUIRED)` and the imported target; the C
/// example and the C++ program, found through `CMAKE_PREFIX_PATH`.
#[test]
fn cmake_consumer() {
    if require_tool("cmake").is_none() || require_tool("c++").is_none() {
        return;
    }
    let (dir, src) = consumer_dir("cmake");
    let build = dir.join("build");
    let mut cmd = Command::new("cmake");
    cmd.arg("-S")
        .arg(manifest_dir().join("tests/consumers/cmake"))
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix().display()))
        .arg(format!("-DBACKUP_C={}", src.display()))
        .arg(format!("-DEXPECT_VERSION={VERSION}"))
        .env_remove("CFLAGS")
        .env_remove("CXXFLAGS");
    let o = run("cmake (configure)", cmd);
    assert!(
        stdout(&o).contains(&format!(
            "certadm-emu {VERSION}, soname {}, from {}",
            expected_soname(),
            prefix().join("lib/cmake/certadm-emu").display()
        )),
        "{}",
        show(&o)
    );
    let mut cmd = Command::new("cmake");
    cmd.arg("--build").arg(&build);
    run("cmake --build", cmd);
    for (exe, first) in [
        ("readme_backup", "backup: hr=0x00000000"),
        ("backup_cxx", "c++ backup: hr=0x00000000"),
    ] {
        let exe = build.join(exe);
        check_linkage(&exe, Some(&prefix().join("lib")));
        run_consumer(&exe, false, first);
    }
}

/// (b) A plain Makefile with `pkg-config --cflags --libs certadm-emu`: the README's C
/// example, run with `LD_LIBRARY_PATH=<prefix>/lib`.
#[test]
fn pkg_config_makefile_consumer() {
    if !make_tools() {
        return;
    }
    let (dir, src) = consumer_dir("makefile-c");
    let exe = make("backup", &dir, &src);
    check_linkage(&exe, None);
    run_consumer(&exe, true, "backup: hr=0x00000000");
}

/// (c) C++ (g++, the Makefile's `$(CXX)`) with the same headers and pkg-config flags.
#[test]
fn cxx_consumer() {
    if !make_tools() || require_tool("c++").is_none() {
        return;
    }
    let (dir, src) = consumer_dir("makefile-cxx");
    let exe = make("backup_cxx", &dir, &src);
    check_linkage(&exe, None);
    run_consumer(&exe, true, "c++ backup: hr=0x00000000");
}

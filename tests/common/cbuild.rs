//! Building the C (and C++) programs of `tests/c` against this build's
//! `libcertadm_emu.so`, for every test that does (`c_clients`, `server_mode`, and the
//! library for `python_ctypes`):
//!
//! * the library is the cdylib cargo built with this test binary (or `CERTADM_EMU_LIB`),
//!   reached through a private hard link (a copy where links are impossible), so that a
//!   concurrent cargo build cannot change it under a running test;
//! * programs link it with `-Wl,-rpath` and `-Wl,--disable-new-dtags` (DT_RPATH, which
//!   beats a stale library on the `LD_LIBRARY_PATH` that `cargo test` sets);
//! * every compilation runs with a timeout and fails with the compiler's output.
//!
//! Environment: `CERTADM_EMU_LIB` (the library), `CC` and `CXX` (the compilers, default
//! `cc` and `c++`).

use super::tool::require_tool_env;
use super::{run_with_timeout, show};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The strict C flags of every C program.
pub const CFLAGS: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-g"];
/// The same, as C++.
pub const CXXFLAGS: &[&str] = &[
    "-x",
    "c++",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-g",
];
/// How long one compilation may take.
pub const COMPILE_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository root.
pub fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The scratch directory of this test process, `$CARGO_TARGET_TMPDIR/tools/<pid>`
/// (emptied first); those of earlier processes that are gone are removed.
pub fn out_dir() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tools");
        super::remove_stale_runs(&base);
        let out = base.join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        out
    })
}

/// A fresh directory `name` under [`out_dir`].
pub fn scratch(name: &str) -> PathBuf {
    let d = out_dir().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// This build's `libcertadm_emu.so`, as a private hard link (or copy) in
/// `out_dir()/lib`, with its soname link ([`super::link_library`]).
pub fn library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let found = super::built_library();
        let lib = super::link_library(&found, &out_dir().join("lib"));
        println!("library: {} (from {})", lib.display(), found.display());
        lib
    })
}

/// The directory of [`library`].
pub fn library_dir() -> &'static Path {
    library().parent().unwrap()
}

/// The C compiler (`$CC`, else `cc`), or `None` after a note (a failure under
/// `CERTADM_EMU_REQUIRE_TOOLS=1`).
pub fn cc() -> Option<PathBuf> {
    require_tool_env("CC", "cc")
}

/// The C++ compiler (`$CXX`, else `c++`), as [`cc`].
pub fn cxx() -> Option<PathBuf> {
    require_tool_env("CXX", "c++")
}

/// Links `cmd` with [`library`]: `-L`, `-l`, and a DT_RPATH (not DT_RUNPATH: `cargo
/// test` puts target/<profile> on `LD_LIBRARY_PATH`, where a stale libcertadm_emu.so from
/// an earlier `cargo build` would otherwise win over this build's library).
pub fn link_args(cmd: &mut Command) {
    let dir = library_dir();
    cmd.arg("-L")
        .arg(dir)
        .arg("-lcertadm_emu")
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .arg("-Wl,--disable-new-dtags");
}

/// Runs a compiler command from the repository root (with [`COMPILE_TIMEOUT`]); panics
/// with its output if it fails.
pub fn compile(what: &str, mut cmd: Command) {
    cmd.current_dir(manifest());
    let (o, _) = run_with_timeout(cmd, COMPILE_TIMEOUT);
    assert!(o.status.success(), "compiling {what} failed\n{}", show(&o));
    // -Werror makes any warning fatal, but print what the compiler said anyway.
    if !o.stderr.is_empty() {
        eprintln!("{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// How a program is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// With `-lcertadm_emu` ([`link_args`]).
    Library,
    /// With `-ldl` only; the program loads the library itself.
    Dlopen,
}

/// The language a source is compiled as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// C11 ([`CFLAGS`]), with [`cc`].
    C,
    /// C++ ([`CXXFLAGS`]), with [`cxx`].
    Cxx,
}

/// Compiles `tests/c/<name>.c` into an executable of its own under [`out_dir`]; `None`
/// when the compiler is missing (after [`cc`]'s note).
pub fn build(name: &str, link: Link, lang: Lang) -> Option<PathBuf> {
    let src = manifest().join("tests/c").join(format!("{name}.c"));
    let tag = match lang {
        Lang::C => name.to_string(),
        Lang::Cxx => format!("{name}-cxx"),
    };
    build_source(&src, &tag, link, lang)
}

/// Compiles the source `src` (with `-pthread`, `-I include`) into a new executable named
/// after `tag` under [`out_dir`]; `None` when the compiler is missing.
pub fn build_source(src: &Path, tag: &str, link: Link, lang: Lang) -> Option<PathBuf> {
    let (compiler, flags) = match lang {
        Lang::C => (cc()?, CFLAGS),
        Lang::Cxx => (cxx()?, CXXFLAGS),
    };
    // A path of its own for every build: tests running in parallel build the same program
    // (and remove their executable when done).
    static BUILDS: AtomicUsize = AtomicUsize::new(0);
    let n = BUILDS.fetch_add(1, Ordering::Relaxed);
    let dir = out_dir().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(format!("{tag}-{n}"));
    let mut cmd = Command::new(compiler);
    cmd.args(flags)
        .arg("-pthread")
        .arg("-I")
        .arg(manifest().join("include"))
        .arg("-o")
        .arg(&exe)
        .arg(src);
    match link {
        Link::Library => link_args(&mut cmd),
        Link::Dlopen => {
            cmd.arg("-ldl");
        }
    }
    let what = src.file_name().unwrap_or_default().to_string_lossy();
    compile(&what, cmd);
    Some(exe)
}

//! The external programs the tests run (compilers, valgrind, Python, nm, MinGW-w64,
//! Wine), and what happens when one is missing: under `CERTADM_EMU_REQUIRE_TOOLS=1` (CI:
//! `.ci/run` sets it) the test fails and says what to install; otherwise it prints a note
//! and the caller skips. Every tool test asks through [`require_tool`], so none can pass
//! silently in CI.
//!
//! The tools, their Debian packages and where to look for them are the lines of
//! `.ci/tools`, the list `.ci/run` installs from: a tool the tests use is listed there
//! (the test `every_tool_the_tests_use_is_in_ci_tools` checks it).

use std::path::{Path, PathBuf};

/// The environment variable that turns a missing tool into a failure.
pub const REQUIRE_VAR: &str = "CERTADM_EMU_REQUIRE_TOOLS";

/// `.ci/tools`: one tool a line (name, Debian package, places to look).
pub const CI_TOOLS: &str = include_str!("../../.ci/tools");

/// True when `CERTADM_EMU_REQUIRE_TOOLS=1`: a missing tool fails its test.
pub fn tools_required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

/// A line of `.ci/tools`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The name the tests ask for.
    pub name: String,
    /// The Debian package that provides it.
    pub package: String,
    /// Where to look for it, in order (a path, or a name on `PATH`).
    pub places: Vec<String>,
}

/// The tools of `.ci/tools`, in its order.
pub fn listed() -> Vec<Listed> {
    CI_TOOLS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace().map(str::to_string);
            let name = words.next().unwrap();
            let package = words
                .next()
                .unwrap_or_else(|| panic!(".ci/tools: no package for {name}"));
            let mut places: Vec<String> = words.collect();
            if places.is_empty() {
                places.push(name.clone());
            }
            Listed {
                name,
                package,
                places,
            }
        })
        .collect()
}

/// The line of `.ci/tools` for `name`.
pub fn listing(name: &str) -> Option<Listed> {
    listed().into_iter().find(|t| t.name == name)
}

/// `place` if it is a path to an executable file, else the first executable file of that
/// name in a directory of `PATH` (as `command -v` in `.ci/run`).
pub fn locate(place: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if place.contains('/') {
        let p = Path::new(place);
        return executable(p).then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(place))
        .find(|p| executable(p))
}

/// The tool `name` (a line of `.ci/tools`, else a program name or path), or `None` after a
/// note when it is missing; panics instead when `CERTADM_EMU_REQUIRE_TOOLS=1`. A tool test
/// starts with `let Some(x) = require_tool("x") else { return };`.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    require_tool_as(name, tools_required())
}

/// As [`require_tool`], but the program is `$var` when that variable is set (`CC`, `CXX`,
/// `PYTHON`); the hint is still that of `name`.
pub fn require_tool_env(var: &str, name: &str) -> Option<PathBuf> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => locate(&v).or_else(|| {
            missing(&format!("{v} (${var})"), name, tools_required());
            None
        }),
        _ => require_tool(name),
    }
}

/// As [`require_tool`], with `required` in place of the environment variable.
pub fn require_tool_as(name: &str, required: bool) -> Option<PathBuf> {
    let places = match listing(name) {
        Some(t) => t.places,
        None => vec![name.to_string()],
    };
    places.iter().find_map(|p| locate(p)).or_else(|| {
        missing(name, name, required);
        None
    })
}

/// A tool is missing: panics when `required`, else prints a note (the caller then skips).
/// `what` names the program looked for, `name` its line of `.ci/tools`.
pub fn missing(what: &str, name: &str, required: bool) {
    let hint = match listing(name) {
        Some(t) => format!("Debian/Ubuntu: apt-get install {}", t.package),
        None => format!("{name} is not in .ci/tools: add it there so that CI installs it"),
    };
    let msg = format!("{what} is not installed ({hint})");
    assert!(!required, "{msg}; {REQUIRE_VAR}=1 requires it");
    eprintln!("note: skipping: {msg}; with {REQUIRE_VAR}=1 this fails");
}

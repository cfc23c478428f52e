//! The helper every tool test starts with (`tests/common/tool.rs`): a missing tool fails
//! under `CERTADM_EMU_REQUIRE_TOOLS=1` and is skipped with a note otherwise; and every tool
//! the tests ask for is in `.ci/tools`, the list CI installs.

use crate::common::test_path;
use crate::common::tool::{self, require_tool, require_tool_as, REQUIRE_VAR};
use std::path::Path;
use std::process::Command;

/// A program that exists nowhere.
const NO_SUCH_TOOL: &str = "certadm-emu-no-such-tool";
/// Set in the child process that runs the test body below.
const CHILD: &str = "CERTEMU_REQUIRE_TOOLS_CHILD";

/// The variable as CI sets it, and the other values: run in a child process of this test
/// binary (the variable is read from the environment, as every tool test reads it).
#[test]
fn a_missing_tool_fails_under_certadm_emu_require_tools() {
    const NAME: &str = "a_missing_tool_fails_under_certadm_emu_require_tools";
    if std::env::var_os(CHILD).is_some() {
        // In the child: what a tool test does.
        let Some(found) = require_tool(NO_SUCH_TOOL) else {
            println!("child: skipped");
            return;
        };
        panic!("{NO_SUCH_TOOL} found at {}", found.display());
    }
    for (value, fails) in [(Some("1"), true), (Some("0"), false), (None, false)] {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.arg(test_path(module_path!(), NAME))
            .args(["--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1");
        match value {
            Some(v) => cmd.env(REQUIRE_VAR, v),
            None => cmd.env_remove(REQUIRE_VAR),
        };
        let o = cmd.output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            all.contains("1 passed") || all.contains("1 failed"),
            "{all}"
        );
        assert_eq!(
            !o.status.success(),
            fails,
            "{REQUIRE_VAR}={value:?}:\n{all}"
        );
        assert!(
            all.contains(&format!("{NO_SUCH_TOOL} is not installed")),
            "{all}"
        );
        if fails {
            assert!(
                all.contains("CERTADM_EMU_REQUIRE_TOOLS=1 requires it"),
                "{all}"
            );
            assert!(all.contains("add it there so that CI installs it"), "{all}");
        } else {
            assert!(all.contains("note: skipping:"), "{all}");
            assert!(all.contains("child: skipped"), "{all}");
        }
    }
}

/// The same in process, with the requirement given: a listed tool that is missing names
/// its Debian package.
#[test]
fn require_tool_as_panics_only_when_required() {
    assert_eq!(require_tool_as(NO_SUCH_TOOL, false), None);
    let err = std::panic::catch_unwind(|| require_tool_as(NO_SUCH_TOOL, true)).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert_eq!(
        msg,
        "certadm-emu-no-such-tool is not installed (certadm-emu-no-such-tool is not in \
         .ci/tools: add it there so that CI installs it); CERTADM_EMU_REQUIRE_TOOLS=1 requires it"
    );
    let err = std::panic::catch_unwind(|| tool::missing("wine64", "wine64", true)).unwrap_err();
    assert_eq!(
        err.downcast_ref::<String>().unwrap(),
        "wine64 is not installed (Debian/Ubuntu: apt-get install wine64); \
         CERTADM_EMU_REQUIRE_TOOLS=1 requires it"
    );
}

/// `.ci/tools` parses, names each tool once, and lists exactly the tools the tests ask for
/// by name (`require_tool("x")`, `require_tool_env("VAR", "x")`): CI installs each of them.
#[test]
fn every_tool_the_tests_use_is_in_ci_tools() {
    let listed = tool::listed();
    let mut names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n, "a tool twice in .ci/tools: {names:?}");
    assert!(listed.iter().all(|t| !t.package.is_empty()));
    let wine = tool::listing("wine64").unwrap();
    assert_eq!(wine.places, ["/usr/lib/wine/wine64", "wine64", "wine"]);

    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut used = Vec::new();
    let mut dirs = vec![tests];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs")
                && !p.ends_with("common/tool.rs")
                && !p.ends_with("tools/require_tools.rs")
            {
                // (The helper and this file name tools only in examples.)
                let text = std::fs::read_to_string(&p).unwrap();
                for (pat, nth) in [("require_tool(\"", 0), ("require_tool_env(\"", 1)] {
                    for rest in text.split(pat).skip(1) {
                        // require_tool("x") or require_tool_env("VAR", "x").
                        let name = rest.split('"').nth(nth * 2).unwrap_or_default();
                        used.push((name.to_string(), p.display().to_string()));
                    }
                }
            }
        }
    }
    // And no line of .ci/tools is left that no test asks for.
    for t in &listed {
        assert!(
            used.iter().any(|(n, _)| *n == t.name),
            ".ci/tools lists {}, which no test asks for: {used:?}",
            t.name
        );
    }
    for (name, file) in &used {
        assert!(
            tool::listing(name).is_some(),
            "{file} asks for {name}, which is not in .ci/tools"
        );
    }
}

//! The layers of the crate, and the test that holds the code to them.
//!
//! [`ORDER`] is the rank order of the top-level modules, lowest first, in tiers; the
//! README's Layout section lists the same modules in the same order, one line each. The
//! rules, checked over every `src/**/*.rs` read as text:
//!
//! 1. A module refers only to modules of a lower tier: every `crate::m` path (in code and
//!    in doc links), every item of a `use crate::{..}` group, and every `super::` path that
//!    leaves its top-level module. Modules of one tier do not refer to each other.
//! 2. Within a top-level module, files do not refer to each other in a cycle (a file may
//!    use what its parent module declares; siblings form a DAG).
//! 3. The `unsafe` keyword (outside comments and strings) appears only under `src/abi/`,
//!    and every other top-level module carries `#![forbid(unsafe_code)]`.
//! 4. Every top-level module is in [`ORDER`], and the README's Layout section names them
//!    in that order.
//!
//! The binary's modules (`src/main.rs`, `src/cli/`) are a separate crate on top: their
//! `crate::` is the binary's own root, and they reach the library by its name, so only
//! rule 3 applies to them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The top-level modules, lowest tier first. A module may refer only to modules of a
/// lower tier. The README's Layout section lists them in this order, with what each holds.
const ORDER: &[&[&str]] = &[
    &["core"],
    &["machine"],
    &["ca"],
    &["session"],
    &["event"],
    &["conformance"],
    &["api"],
    &["control"],
    &["config"],
    &["remote"],
    &["abi"],
    // Users of everything below, independent of each other.
    &["client", "explore"],
    // The figures, measured through the reference client.
    &["bench"],
    &["cli"],
];

/// The only module that may hold `unsafe` code.
const UNSAFE_MODULE: &str = "abi";
/// The binary's modules: a crate of their own, on top.
const BINARY: &str = "cli";
/// This file: test-only, it names paths as data and belongs to no layer.
const CHECKER: &str = "layers";

fn tier(module: &str) -> Option<usize> {
    ORDER.iter().position(|t| t.contains(&module))
}

fn order_text() -> String {
    ORDER
        .iter()
        .map(|t| match t {
            [one] => one.to_string(),
            many => format!("{{{}}}", many.join(", ")),
        })
        .collect::<Vec<_>>()
        .join(" < ")
}

// ----- reading source text ----------------------------------------------------------------

/// One source file: its path, its module path, and two views of its text of the same
/// length (so offsets and lines agree): `code` with comments and literals blanked, and
/// `docs` with only literals blanked (doc links count as references).
struct Source {
    rel: String,
    module: Vec<String>,
    code: String,
    docs: String,
}

impl Source {
    fn top(&self) -> &str {
        &self.module[0]
    }
    fn line(&self, offset: usize) -> usize {
        self.code[..offset].bytes().filter(|&b| b == b'\n').count() + 1
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Blanks comments (in `code`) and string and char literals (in both views), keeping
/// newlines and byte offsets.
fn mask(text: &str) -> (String, String) {
    let b = text.as_bytes();
    let mut code = b.to_vec();
    let mut docs = b.to_vec();
    let blank = |v: &mut Vec<u8>, from: usize, to: usize| {
        for x in &mut v[from..to] {
            if *x != b'\n' {
                *x = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let prev_ident = i > 0 && is_ident(b[i - 1]);
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n);
            blank(&mut code, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let (mut depth, mut j) = (1, i + 2);
            while j < b.len() && depth > 0 {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut code, i, j);
            i = j;
        } else if !prev_ident && (b[i] == b'r' || b[i..].starts_with(b"br")) {
            // A raw string r"..", r#".."#, br"..": or just an identifier starting with r.
            let start = i;
            let mut j = if b[i] == b'b' { i + 2 } else { i + 1 };
            let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
            j += hashes;
            if j < b.len() && b[j] == b'"' {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let end = b[j + 1..]
                    .windows(close.len())
                    .position(|w| w == close)
                    .map_or(b.len(), |n| j + 1 + n + close.len());
                blank(&mut code, start, end);
                blank(&mut docs, start, end);
                i = end;
            } else {
                i += 1;
            }
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            blank(&mut code, i, end);
            blank(&mut docs, i, end);
            i = end;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', 'é') or a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                // Skip the escaped character: '\'' and '\\' end at the quote after it.
                b.get(i + 3..)
                    .and_then(|rest| rest.iter().position(|&c| c == b'\''))
                    .map(|n| i + 4 + n)
            } else {
                text[i + 1..]
                    .chars()
                    .next()
                    .map(|c| i + 1 + c.len_utf8())
                    .filter(|&k| b.get(k) == Some(&b'\''))
                    .map(|k| k + 1)
            };
            match end {
                Some(end) => {
                    blank(&mut code, i, end);
                    blank(&mut docs, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    let s = |v| String::from_utf8(v).expect("blanking keeps UTF-8");
    (s(code), s(docs))
}

impl Source {
    /// `rel` is the path below `src/`.
    fn new(rel: &str, text: &str) -> Source {
        let mut module: Vec<String> = rel
            .trim_end_matches(".rs")
            .split('/')
            .map(str::to_owned)
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        if rel == "main.rs" {
            module = vec![BINARY.to_owned()];
        }
        let (code, docs) = mask(text);
        Source {
            rel: format!("src/{rel}"),
            module,
            code,
            docs,
        }
    }
}

fn read_sources(dir: &Path, root: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_sources(&p, root, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&p).unwrap();
            out.push(Source::new(&rel, &text));
        }
    }
}

// ----- paths ------------------------------------------------------------------------------

/// Parses the path tree at `at` (`a::b`, `a::{b, c::d}`, `*`): its leaves, as segments.
fn parse_tree(s: &[u8], mut at: usize) -> Vec<Vec<String>> {
    fn skip_ws(s: &[u8], at: &mut usize) {
        while *at < s.len() && s[*at].is_ascii_whitespace() {
            *at += 1;
        }
    }
    fn tree(s: &[u8], at: &mut usize, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        skip_ws(s, at);
        if *at < s.len() && s[*at] == b'{' {
            *at += 1;
            loop {
                skip_ws(s, at);
                if *at >= s.len() || s[*at] == b'}' {
                    *at += 1;
                    return;
                }
                let depth = prefix.len();
                tree(s, at, prefix, out);
                prefix.truncate(depth);
                skip_ws(s, at);
                if *at < s.len() && s[*at] == b',' {
                    *at += 1;
                }
            }
        }
        let start = *at;
        while *at < s.len() && (is_ident(s[*at]) || s[*at] == b'*') {
            *at += 1;
        }
        if start == *at {
            out.push(prefix.clone());
            return;
        }
        prefix.push(String::from_utf8_lossy(&s[start..*at]).into_owned());
        if s[*at..].starts_with(b"::") {
            *at += 2;
            tree(s, at, prefix, out);
        } else {
            out.push(prefix.clone());
            // `x as y`: skip the alias.
            let mut k = *at;
            skip_ws(s, &mut k);
            if s[k..].starts_with(b"as ") {
                k += 3;
                skip_ws(s, &mut k);
                while k < s.len() && is_ident(s[k]) {
                    k += 1;
                }
                *at = k;
            }
        }
    }
    let mut out = Vec::new();
    tree(s, &mut at, &mut Vec::new(), &mut out);
    out
}

/// The inline modules (`mod tests { .. }`) of a file: name and byte range.
fn inline_modules(code: &str) -> Vec<(String, usize, usize)> {
    let b = code.as_bytes();
    let mut open: Vec<(Option<String>, usize)> = Vec::new();
    let mut found = Vec::new();
    let mut pending: Option<String> = None;
    let mut i = 0;
    while i < b.len() {
        if is_ident(b[i]) && (i == 0 || !is_ident(b[i - 1])) {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            if &code[start..i] == "mod" {
                let mut k = i;
                while k < b.len() && b[k].is_ascii_whitespace() {
                    k += 1;
                }
                let name_start = k;
                while k < b.len() && is_ident(b[k]) {
                    k += 1;
                }
                pending = Some(code[name_start..k].to_owned());
                i = k;
            }
            continue;
        }
        match b[i] {
            b'{' => open.push((pending.take(), i)),
            b'}' => {
                if let Some((Some(name), start)) = open.pop() {
                    found.push((name, start, i));
                }
            }
            b';' => pending = None,
            c if !c.is_ascii_whitespace() => pending = None,
            _ => {}
        }
        i += 1;
    }
    found
}

/// A module path from the crate root: `["ca", "format"]`.
type ModPath = Vec<String>;

/// A reference from one place to a module path.
struct Ref {
    offset: usize,
    /// As written, for the message.
    text: String,
    /// The absolute module path it names (from the crate root).
    path: Vec<String>,
}

/// Every `crate::` and `super::` path of `src`, resolved to absolute paths.
fn references(src: &Source) -> Result<Vec<Ref>, String> {
    let text = src.docs.as_bytes();
    let inline = inline_modules(&src.code);
    let mut refs = Vec::new();
    for kw in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(n) = src.docs[from..].find(kw) {
            let at = from + n;
            from = at + kw.len();
            if at > 0 && (is_ident(text[at - 1]) || text[at - 1] == b'$' || text[at - 1] == b':') {
                continue;
            }
            let mut base: Vec<String> = if kw == "crate::" {
                Vec::new()
            } else {
                let mut m = src.module.clone();
                m.extend(
                    inline
                        .iter()
                        .filter(|(_, s, e)| *s < at && at < *e)
                        .map(|(name, _, _)| name.clone()),
                );
                m
            };
            let mut rest = at;
            if kw == "super::" {
                while text[rest..].starts_with(b"super::") {
                    if base.pop().is_none() {
                        return Err(format!(
                            "{}:{}: `super::` above the crate root",
                            src.rel,
                            src.line(at)
                        ));
                    }
                    rest += "super::".len();
                }
            } else {
                rest += kw.len();
            }
            let end = (rest..text.len())
                .find(|&k| !(is_ident(text[k]) || b"{}:, *\n".contains(&text[k])))
                .unwrap_or(text.len())
                .min(rest + 200);
            let written = format!(
                "{}{}",
                &src.docs[at..rest],
                src.docs[rest..end]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            for leaf in parse_tree(text, rest) {
                let mut path = base.clone();
                path.extend(leaf);
                refs.push(Ref {
                    offset: at,
                    text: written.trim_end_matches([',', ' ', ':']).to_owned(),
                    path,
                });
            }
        }
    }
    Ok(refs)
}

/// The names the crate root re-exports (`pub use control::{EmulatedCa, ..}`), with the
/// module they come from.
fn root_reexports(lib: &Source) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let b = lib.code.as_bytes();
    let mut from = 0;
    while let Some(n) = lib.code[from..].find("pub use ") {
        let at = from + n + "pub use ".len();
        from = at;
        for mut leaf in parse_tree(b, at) {
            if leaf.first().is_some_and(|s| s == "crate") {
                leaf.remove(0);
            }
            if let (Some(module), Some(name)) = (leaf.first(), leaf.last()) {
                map.insert(name.clone(), module.clone());
            }
        }
    }
    map
}

// ----- the test ---------------------------------------------------------------------------

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    read_sources(&root, &root, &mut all);
    all
}

#[test]
fn layers_hold() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let problems = check(&sources(), &readme);
    if !problems.is_empty() {
        let mut msg = format!("{} layering problem(s):\n", problems.len());
        for p in &problems {
            let _ = writeln!(msg, "  {p}");
        }
        panic!("{msg}");
    }
}

/// Every breach of the rules in `all` (the files of `src/`) and `readme`.
fn check(all: &[Source], readme: &str) -> Vec<String> {
    let Some(lib) = all.iter().find(|s| s.rel == "src/lib.rs") else {
        return vec!["src/lib.rs: missing".into()];
    };
    let reexports = root_reexports(lib);
    let files: BTreeSet<Vec<String>> = all.iter().map(|s| s.module.clone()).collect();
    let mut problems = Vec::new();

    // Rule 4: every top-level module has a rank.
    let tops: BTreeSet<&str> = all
        .iter()
        .filter(|s| s.rel != "src/lib.rs")
        .map(|s| s.top())
        .filter(|t| *t != CHECKER)
        .collect();
    for t in &tops {
        if tier(t).is_none() {
            problems.push(format!(
                "src/{t}: top-level module `{t}` is not in the rank order (src/layers.rs ORDER): give it a tier"
            ));
        }
    }
    for t in ORDER.iter().flat_map(|t| t.iter()) {
        if !tops.contains(t) {
            problems.push(format!(
                "src/layers.rs: ORDER names `{t}`, which does not exist"
            ));
        }
    }

    let mut edges: BTreeMap<ModPath, BTreeMap<ModPath, (String, usize)>> = BTreeMap::new();
    for src in all {
        let top = src.top().to_owned();
        if src.rel == "src/lib.rs" || top == CHECKER || top == BINARY {
            continue;
        }
        let refs = match references(src) {
            Ok(r) => r,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        for r in refs {
            let line = src.line(r.offset);
            let Some(first) = r.path.first() else {
                continue;
            };
            let target = if tier(first).is_some() {
                first.clone()
            } else if let Some(m) = reexports.get(first) {
                m.clone()
            } else {
                problems.push(format!(
                    "{}:{line}: `{}` names `{first}`, neither a top-level module nor a re-export of the crate root",
                    src.rel, r.text
                ));
                continue;
            };
            // Rule 1: down only.
            if target != top {
                let (from, to) = (tier(&top).unwrap(), tier(&target).unwrap());
                if to >= from {
                    let how = if to == from {
                        "of its own tier"
                    } else {
                        "above it"
                    };
                    problems.push(format!(
                        "{}:{line}: `{top}` refers to `{target}` ({}), a module {how}: a module may refer only to modules below it (order: {})",
                        src.rel, r.text, order_text()
                    ));
                }
                continue;
            }
            // Rule 2: the file it names, inside the same top-level module.
            let mut file = r.path.clone();
            while !file.is_empty() && !files.contains(&file) {
                file.pop();
            }
            if !file.is_empty() && !src.module.starts_with(&file) {
                edges
                    .entry(src.module.clone())
                    .or_default()
                    .entry(file)
                    .or_insert((src.rel.clone(), line));
            }
        }
    }

    // Rule 2: no cycle among the files of one module.
    let mut done = BTreeSet::new();
    for start in edges.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((node, trail)) = stack.pop() {
            for next in edges.get(&node).map(|m| m.keys()).into_iter().flatten() {
                if next == start {
                    let mut cycle = trail.clone();
                    cycle.push(next.clone());
                    let key: BTreeSet<_> = cycle.iter().cloned().collect();
                    if done.insert(key) {
                        let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
                        let (file, line) = &edges[start][&trail.get(1).unwrap_or(next).clone()];
                        problems.push(format!(
                            "{file}:{line}: the files of module `{}` refer to each other in a cycle ({}): move the shared piece into a file both can use",
                            start[0],
                            names.join(" -> ")
                        ));
                    }
                } else if !trail.contains(next) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }

    // Rule 3: unsafe only under src/abi, and forbidden elsewhere.
    for src in all {
        if src.top() == UNSAFE_MODULE || src.top() == CHECKER {
            continue;
        }
        let b = src.code.as_bytes();
        let mut from = 0;
        while let Some(n) = src.code[from..].find("unsafe") {
            let at = from + n;
            from = at + "unsafe".len();
            let before = at > 0 && is_ident(b[at - 1]);
            let after = b.get(from).is_some_and(|&c| is_ident(c));
            if !before && !after {
                problems.push(format!(
                    "{}:{}: `unsafe` in module `{}`: unsafe code belongs under src/{UNSAFE_MODULE}/ only; call the safe layer (abi::call) instead",
                    src.rel,
                    src.line(at),
                    src.top()
                ));
            }
        }
        // The root file of a top-level module (for the binary, src/main.rs).
        let is_root = src.module.len() == 1
            && src.rel != "src/lib.rs"
            && (src.top() != BINARY || src.rel == "src/main.rs");
        if is_root && !src.code.contains("#![forbid(unsafe_code)]") {
            problems.push(format!(
                "{}:1: module `{}` lacks `#![forbid(unsafe_code)]`: only `{UNSAFE_MODULE}` may hold unsafe code",
                src.rel,
                src.top()
            ));
        }
    }

    // Rule 4: the README lists the modules in this order.
    let listed = readme_layout(readme);
    let want: Vec<&str> = ORDER.iter().flat_map(|t| t.iter().copied()).collect();
    if listed != want {
        problems.push(format!(
            "README.md: the Layout section lists the modules as {listed:?}; the rank order (src/layers.rs ORDER) is {want:?}: one line per module, in that order"
        ));
    }
    problems
}

/// The modules the README's Layout section lists (`src/x`, `src/x.rs`, `src/x/` lines).
fn readme_layout(readme: &str) -> Vec<&str> {
    let Some(section) = readme.split("\n## Layout").nth(1) else {
        return Vec::new();
    };
    let block = section.split("```").nth(1).unwrap_or("");
    block
        .lines()
        .filter_map(|l| l.strip_prefix("src/"))
        .map(|l| {
            let name = l.split(|c: char| !(c.is_alphanumeric() || c == '_')).next();
            name.unwrap_or("")
        })
        .collect()
}

// ----- the checker checked ----------------------------------------------------------------

#[test]
fn masking_keeps_code_and_blanks_the_rest() {
    let src = "let a = \"crate::x unsafe\"; // unsafe crate::y\nlet c = '\"'; let e = '\\''; let r = r#\"un\"safe\"#; fn f<'a>() {}\n/* unsafe /* nested */ */ unsafe {}";
    let (code, docs) = mask(src);
    assert_eq!(code.len(), src.len());
    assert!(!code[..code.rfind("unsafe {}").unwrap()].contains("unsafe"));
    assert!(code.contains("fn f<'a>() {}"));
    assert!(docs.contains("// unsafe crate::y"));
    assert!(!docs.contains("crate::x"));
    assert_eq!(code.matches('\n').count(), 2);
}

#[test]
fn paths_and_groups_parse() {
    let s = b"crate::{core::{Error, Result}, ca::format::Position as P, session};";
    let leaves = parse_tree(s, "crate::".len());
    let joined: Vec<String> = leaves.iter().map(|l| l.join("::")).collect();
    assert_eq!(
        joined,
        [
            "core::Error",
            "core::Result",
            "ca::format::Position",
            "session"
        ]
    );
    let text = "use super::x;\nmod tests {\n    use super::*;\n}\n";
    let src = Source::new("event.rs", text);
    let refs = references(&src).unwrap();
    let paths: Vec<String> = refs.iter().map(|r| r.path.join("::")).collect();
    assert_eq!(paths, ["x", "event::*"]);
}

#[test]
fn the_order_is_a_table_of_distinct_modules() {
    let all: Vec<&str> = ORDER.iter().flat_map(|t| t.iter().copied()).collect();
    let set: BTreeSet<&str> = all.iter().copied().collect();
    assert_eq!(all.len(), set.len(), "a module twice in ORDER");
    assert_eq!(ORDER.last().unwrap(), &[BINARY]);
    assert!(tier(UNSAFE_MODULE).is_some());
}

/// A small tree that breaks each rule once: each breach is reported with its file, its
/// line, both modules and the rule.
#[test]
fn each_rule_catches_its_breach() {
    let forbid = "#![forbid(unsafe_code)]\n";
    let mut tree: Vec<Source> = ORDER
        .iter()
        .flat_map(|t| t.iter())
        .map(|m| {
            let rel = if *m == BINARY {
                "main.rs".to_owned()
            } else {
                format!("{m}.rs")
            };
            Source::new(&rel, forbid)
        })
        .collect();
    tree.push(Source::new("lib.rs", "pub use control::EmulatedCa;\n"));
    let add = |tree: &mut Vec<Source>, rel: &str, text: &str| {
        tree.retain(|s| s.rel != format!("src/{rel}"));
        tree.push(Source::new(rel, text));
    };
    let readme = |order: &[&str]| {
        let lines: Vec<String> = order.iter().map(|m| format!("src/{m}   x")).collect();
        format!("# x\n\n## Layout\n\n```text\n{}\n```\n", lines.join("\n"))
    };
    let good: Vec<&str> = ORDER.iter().flat_map(|t| t.iter().copied()).collect();
    assert_eq!(check(&tree, &readme(&good)), Vec::<String>::new());

    add(
        &mut tree,
        "api.rs",
        &format!("{forbid}//! Wraps [`crate::abi::call`].\n"),
    );
    add(
        &mut tree,
        "event.rs",
        &format!("{forbid}use crate::EmulatedCa;\n"),
    );
    add(
        &mut tree,
        "client.rs",
        &format!("{forbid}use crate::{{core, explore::x}};\n"),
    );
    add(
        &mut tree,
        "machine.rs",
        &format!("{forbid}mod t {{ use super::super::ca; }}\n"),
    );
    add(&mut tree, "ca/mod.rs", forbid);
    add(&mut tree, "ca/format.rs", "use super::record::Record;\n");
    add(
        &mut tree,
        "ca/record.rs",
        "/// See [`crate::ca::format::Reader`].\nstruct R;\n",
    );
    add(
        &mut tree,
        "explore.rs",
        "fn f() { let s = \"unsafe\"; unsafe {} }\n",
    );
    add(&mut tree, "nowhere.rs", forbid);
    let mut order = good.clone();
    order.swap(0, 1);
    let found = check(&tree, &readme(&order));
    let want = [
        "src/api.rs:2: `api` refers to `abi` (crate::abi::call), a module above it",
        "src/event.rs:2: `event` refers to `control` (crate::EmulatedCa), a module above it",
        "src/client.rs:2: `client` refers to `explore` (crate::{core, explore::x}), a module of its own tier",
        "src/machine.rs:2: `machine` refers to `ca` (super::super::ca), a module above it",
        "src/ca/format.rs:1: the files of module `ca` refer to each other in a cycle (ca::format -> ca::record -> ca::format)",
        "src/explore.rs:1: `unsafe` in module `explore`",
        "src/explore.rs:1: module `explore` lacks `#![forbid(unsafe_code)]`",
        "src/nowhere: top-level module `nowhere` is not in the rank order",
        "README.md: the Layout section lists the modules as [\"machine\", \"core\",",
    ];
    for w in want {
        assert!(
            found.iter().any(|f| f.starts_with(w)),
            "no problem starts with {w:?}; found:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(found.len(), want.len(), "{}", found.join("\n"));
    let api = found.iter().find(|f| f.starts_with("src/api.rs")).unwrap();
    assert!(api.ends_with(&format!(
        "a module may refer only to modules below it (order: {})",
        order_text()
    )));
}

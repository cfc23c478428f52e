//! `certadm-emu replay`: the recorded transcripts of `tests/fixtures/transcripts/` replay
//! clean, so does a trace the emulator wrote itself (`demo --trace`, and one with its
//! history as control lines, with sizes compared exactly); an edited HRESULT is caught
//! with the call, the expected and the actual value; what happened outside certadm.dll is
//! inferred, or given by control lines and `--before`. Also: the "verified by transcript"
//! table of `COVERAGE.md` is generated from the fixtures, and the README shows a real
//! replay report (`CERTADM_EMU_BLESS=1` rewrites both).

use certadm_emu::client::{backup_to_dir, restore_from_dirs, BackupOptions, RestoreOptions};
use certadm_emu::core::Call;
use certadm_emu::event::Event;
use certadm_emu::EmulatedCa;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common;

const FIXTURES: &str = "tests/fixtures/transcripts";
const PROCEDURES: [&str; 3] = ["full", "incremental", "restore"];

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    manifest().join(FIXTURES).join(format!("{name}.jsonl"))
}

/// Runs `certadm-emu replay FILE ARGS`: (exit code, stdout, stderr).
fn replay(file: &Path, args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_certadm-emu"));
    c.arg("replay").arg(file).args(args);
    c.env_remove("CERTADM_EMU_SERVER")
        .env_remove("CERTADM_EMU_CONFIG")
        .env_remove("CERTADM_EMU_TRACE")
        .env_remove("CERTADM_EMU_FAULTS");
    let (out, _) = common::run_with_timeout(c, Duration::from_secs(120));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The JSON report of a replay, and its exit code.
fn report(file: &Path, args: &[&str]) -> (i32, Value) {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let (code, out, err) = replay(file, &a);
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}):\n{out}\n{err}"));
    (code, v)
}

fn actions(r: &Value) -> Vec<String> {
    r["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["origin"].as_str().unwrap(),
                a["action"].as_str().unwrap()
            )
        })
        .collect()
}

fn unexpected(r: &Value) -> Vec<&Value> {
    r["divergences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["expected_because"].is_null())
        .collect()
}

fn assert_clean(tag: &str, code: i32, r: &Value) {
    assert!(
        code == 0 && r["clean"] == true && r["unexpected"] == 0,
        "{tag}: exit {code}, unexpected divergences: {:#?}",
        unexpected(r)
    );
    assert!(
        r["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["error"].is_null()),
        "{tag}: an action failed: {:#}",
        r["actions"]
    );
}

#[test]
fn the_recorded_transcripts_replay_clean() {
    let mut offsets = Vec::new();
    for name in PROCEDURES {
        let (code, r) = report(&fixture(name), &[]);
        assert_clean(name, code, &r);
        let m = &r["machine"];
        assert_eq!(m["netbios"]["value"], "HOST", "{name}");
        assert_eq!(m["dns"]["value"], "host.example", "{name}: the UNC host");
        assert_eq!(m["ca_name"]["value"], "CA", "{name}");
        assert_eq!(r["recordings"][0]["anonymised"], true);
        assert_eq!(r["recordings"][0]["under_wine"], true);
        offsets.push(r["generation_offset"].clone());
        let acts = actions(&r);
        match name {
            "full" => assert!(acts.is_empty(), "{acts:?}"),
            // An incremental backup needs an earlier full one, and the CA wrote two more
            // log generations before it (its list is edb00004..06).
            "incremental" => assert_eq!(acts, ["inferred full-backup", "inferred roll-logs=2"]),
            // The restore procedure starts on a stopped CA whose files are replaced.
            _ => assert_eq!(acts, ["inferred stop", "inferred wipe"]),
        }
        // Every expected difference says why.
        for d in r["divergences"].as_array().unwrap() {
            assert!(
                ["database_size", "generation_offset", "anonymised_names"]
                    .contains(&d["expected_because"].as_str().unwrap()),
                "{name}: {d:#}"
            );
        }
    }
    assert_eq!(offsets, [json!(-2), json!(-2), Value::Null]);
}

#[test]
fn the_three_transcripts_in_one_file_replay_clean_as_one_history() {
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.jsonl");
    let text: String = PROCEDURES
        .iter()
        .map(|n| std::fs::read_to_string(fixture(n)).unwrap())
        .collect();
    std::fs::write(&all, text).unwrap();
    let (code, r) = report(&all, &[]);
    assert_clean("all", code, &r);
    assert_eq!(r["recordings"].as_array().unwrap().len(), 3);
    assert_eq!(r["calls"], 45);
    // The full backup fixed the offset; the incremental needs no new full backup, only
    // the two generations the CA wrote in between; the restore registers the offset
    // generations.
    assert_eq!(
        actions(&r),
        ["inferred roll-logs=2", "inferred stop", "inferred wipe"]
    );
    assert_eq!(r["generation_offset"], -2);
}

#[test]
fn an_edited_hresult_is_caught_with_the_call_the_expected_and_the_actual_value() {
    let dir = tempfile::tempdir().unwrap();
    let edited = dir.path().join("edited.jsonl");
    let text = std::fs::read_to_string(fixture("full")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let i = lines
        .iter()
        .position(|l| l.contains("\"CertSrvBackupTruncateLogs\""))
        .unwrap();
    assert!(lines[i].contains(r#""hr":"0x00000000""#));
    lines[i] = lines[i]
        .replace(r#""hr":"0x00000000""#, r#""hr":"0x8000FFFF""#)
        .replace(r#""hr_name":"S_OK""#, r#""hr_name":"E_UNEXPECTED""#);
    std::fs::write(&edited, lines.join("\n") + "\n").unwrap();

    let (code, r) = report(&edited, &[]);
    assert_eq!(code, 1, "an unexpected divergence fails the replay");
    assert_eq!(r["clean"], false);
    let u = unexpected(&r);
    assert_eq!(u.len(), 1, "{u:#?}");
    let d = u[0];
    assert_eq!(d["line"], i + 1);
    assert_eq!(d["seq"], 12);
    assert_eq!(d["call"], "CertSrvBackupTruncateLogs");
    assert_eq!(d["what"], "HRESULT");
    assert_eq!(d["expected"], "0x8000FFFF E_UNEXPECTED");
    assert_eq!(d["actual"], "0x00000000 S_OK");
    assert_eq!(
        d["recorded"],
        "#12 CertSrvBackupTruncateLogs(hbc=0x1) -> 0x8000FFFF E_UNEXPECTED"
    );

    let (code, out, err) = replay(&edited, &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!(
            "line {} #12 CertSrvBackupTruncateLogs: HRESULT: transcript 0x8000FFFF E_UNEXPECTED, \
             emulator 0x00000000 S_OK  [UNEXPECTED]",
            i + 1
        )),
        "{out}"
    );
    assert!(out.contains("DIVERGES"), "{out}");
    assert!(err.contains("1 unexpected divergence(s)"), "{err}");
}

#[test]
fn a_trace_written_by_demo_replays_clean() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("demo.jsonl");
    let mut c = Command::new(env!("CARGO_BIN_EXE_certadm-emu"));
    c.arg("demo").arg("--trace").arg(&trace);
    c.env_remove("CERTADM_EMU_TRACE");
    let (out, _) = common::run_with_timeout(c, Duration::from_secs(300));
    assert!(out.status.success(), "{}", common::show(&out));
    let (code, r) = report(&trace, &[]);
    assert_clean("demo", code, &r);
    assert_eq!(
        r["recordings"][0]["source"],
        "a trace of the emulator (no recording header)"
    );
    assert_eq!(r["machine"]["netbios"]["value"], "CA01");
    assert_eq!(r["machine"]["dns"]["value"], "ca01.contoso.test");
    assert_eq!(r["machine"]["ca_name"]["value"], "Contoso Issuing CA");
    // The demo stops the CA and deletes its files outside certadm.dll before restoring.
    assert_eq!(actions(&r), ["inferred stop", "inferred wipe"]);
}

/// A trace with everything that happened to the CA as control lines: the replay then
/// builds the same CA, and nothing differs, not even sizes.
#[test]
fn an_emulator_trace_with_its_history_replays_with_no_divergence_at_all() {
    let ca = EmulatedCa::builder()
        .ca_name("Replay Test CA")
        .seed(7)
        .records(20)
        .log_capacity(8)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut controls: Vec<(usize, Value)> = Vec::new();
    let mark = |ca: &EmulatedCa, controls: &mut Vec<(usize, Value)>, c: Value| {
        controls.push((ca.trace().len(), c));
    };
    ca.issue(30).unwrap();
    mark(&ca, &mut controls, json!({"control": {"issue": 30}}));
    // Small reads: the in-memory trace folds them (count > 1).
    let small = BackupOptions {
        buffer_size: 1000,
        ..BackupOptions::default()
    };
    let full = dir.path().join("full");
    backup_to_dir(ca.server_name(), &full, &small, &mut |_, _, _| {}).unwrap();
    ca.issue(12).unwrap();
    ca.revoke(3).unwrap();
    mark(&ca, &mut controls, json!({"control": {"issue": 12}}));
    mark(&ca, &mut controls, json!({"control": {"revoke": 3}}));
    let inc = dir.path().join("full").join("incremental-1");
    let opts = BackupOptions {
        incremental: true,
        truncate: false,
        ..small
    };
    backup_to_dir(ca.server_name(), &inc, &opts, &mut |_, _, _| {}).unwrap();
    ca.stop().unwrap();
    ca.wipe_files().unwrap();
    mark(&ca, &mut controls, json!({"control": "restore"}));
    restore_from_dirs(
        ca.server_name(),
        &full,
        &[inc],
        &|p| ca.host_path(p),
        &RestoreOptions::default(),
    )
    .unwrap();
    let events = ca.trace();
    assert!(
        events
            .iter()
            .any(|e| e.call == Call::BackupRead && e.count > 1),
        "some reads are folded"
    );
    let mut lines = Vec::new();
    for (i, e) in events.iter().enumerate() {
        for (_, c) in controls.iter().filter(|(at, _)| *at == i) {
            lines.push(c.to_string());
        }
        lines.push(e.to_json());
    }
    let trace = dir.path().join("trace.jsonl");
    std::fs::write(&trace, lines.join("\n") + "\n").unwrap();
    let calls: u64 = events.iter().map(|e| e.count).sum();

    let flags = [
        "--exact-sizes",
        "--records",
        "20",
        "--seed",
        "7",
        "--log-capacity",
        "8",
    ];
    let (code, r) = report(&trace, &flags);
    assert_clean("history", code, &r);
    assert_eq!(
        r["divergences"],
        json!([]),
        "same CA, same history: nothing differs"
    );
    assert_eq!(r["calls"], calls);
    assert_eq!(r["emulator_calls"], calls);
    assert_eq!(
        actions(&r),
        [
            "control issue=30",
            "control issue=12",
            "control revoke=3",
            "control restore"
        ]
    );
    assert_eq!(r["generation_offset"], 0);

    // Another size of CA: the sizes differ, and only sizes.
    let (code, r) = report(&trace, &["--exact-sizes"]);
    assert_eq!(code, 1);
    for d in unexpected(&r) {
        assert!(
            ["liFileSize", "read", "EOF"].contains(&d["what"].as_str().unwrap()),
            "{d:#}"
        );
    }
    let (code, r) = report(&trace, &[]);
    assert_clean("history, sizes not compared", code, &r);

    // lint reads the control lines as no calls.
    let mut c = Command::new(env!("CARGO_BIN_EXE_certadm-emu"));
    c.arg("lint").arg(&trace);
    let (out, _) = common::run_with_timeout(c, Duration::from_secs(60));
    assert!(out.status.success(), "{}", common::show(&out));
}

#[test]
fn control_lines_and_before_replace_what_is_inferred() {
    let restore = fixture("restore");
    // Without inference the CA runs: the restore is refused.
    let (code, r) = report(&restore, &["--no-infer"]);
    assert_eq!(code, 1);
    let first = unexpected(&r)[0];
    assert_eq!(first["call"], "CertSrvIsServerOnlineW");
    assert_eq!(first["expected"], "0x800706BA RPC_S_SERVER_UNAVAILABLE");
    assert_eq!(first["actual"], "0x00000000 S_OK");
    assert!(unexpected(&r)
        .iter()
        .any(|d| d["call"] == "CertSrvRestoreRegisterW"
            && d["actual"] == "0x80070020 ERROR_SHARING_VIOLATION"));

    let (code, r) = report(&restore, &["--no-infer", "--before", "restore"]);
    assert_clean("--before restore", code, &r);
    assert_eq!(actions(&r), ["flag restore"]);

    let dir = tempfile::tempdir().unwrap();
    let with_control = dir.path().join("restore.jsonl");
    let text = std::fs::read_to_string(&restore).unwrap();
    let (header, rest) = text.split_once('\n').unwrap();
    std::fs::write(
        &with_control,
        format!("{header}\n{{\"control\": \"stop\"}}\n{{\"control\": \"wipe\"}}\n{rest}"),
    )
    .unwrap();
    let (code, r) = report(&with_control, &[]);
    assert_clean("control lines", code, &r);
    assert_eq!(
        actions(&r),
        ["control stop", "control wipe"],
        "nothing left to infer"
    );

    let (code, _, err) = replay(&restore, &["--before", "reboot"]);
    assert_eq!(code, 2, "clap refuses an unknown action: {err}");
    assert!(err.contains("is not an action"), "{err}");
}

#[test]
fn the_readme_shows_a_real_replay_report() {
    let block = common::readme_block("console");
    let (cmd, shown) = block.split_once('\n').unwrap();
    let file = cmd
        .strip_prefix("$ certadm-emu replay ")
        .unwrap_or_else(|| panic!("the README's console block starts with the replay: {cmd}"));
    let mut c = Command::new(env!("CARGO_BIN_EXE_certadm-emu"));
    c.current_dir(manifest()).arg("replay").arg(file);
    let (out, _) = common::run_with_timeout(c, Duration::from_secs(60));
    assert!(out.status.success(), "{}", common::show(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    if printed != shown && std::env::var("CERTADM_EMU_BLESS").is_ok_and(|v| v == "1") {
        let path = manifest().join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let old = format!("{cmd}\n{shown}");
        assert_eq!(readme.matches(&old).count(), 1);
        std::fs::write(&path, readme.replace(&old, &format!("{cmd}\n{printed}"))).unwrap();
        return;
    }
    assert_eq!(
        printed, shown,
        "the README's replay report is not what `certadm-emu replay {file}` prints \
         (CERTADM_EMU_BLESS=1 cargo test --test it replay::readme rewrites it)"
    );
}

#[test]
fn the_emulators_trace_of_a_replay_replays_clean_too() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("emulator.jsonl");
    let t = trace.to_str().unwrap();
    let (code, r) = report(&fixture("incremental"), &["--emulator-trace", t]);
    assert_clean("incremental", code, &r);
    // The inferred full backup and the replayed calls, each call on its own line.
    let lines = std::fs::read_to_string(&trace).unwrap().lines().count() as u64;
    assert!(lines > r["emulator_calls"].as_u64().unwrap(), "{lines}");
    let (code, r) = report(&trace, &[]);
    assert_clean("the emulator's trace", code, &r);
    // The full backup is in that trace now; the log generations written before the
    // incremental are not (the replay wrote them outside certadm.dll).
    assert_eq!(actions(&r), ["inferred roll-logs=2"]);
}

#[test]
fn a_renamed_machine_maps_every_name() {
    let (code, r) = report(
        &fixture("full"),
        &[
            "--server-name",
            "CA01",
            "--dns-name",
            "ca01.corp.test",
            "--ca-name",
            "Corp Issuing CA",
        ],
    );
    assert_clean("renamed", code, &r);
    assert_eq!(r["machine"]["netbios"]["from"], "flag");
    assert_eq!(r["machine"]["dns"]["value"], "ca01.corp.test");
    // Only the NetBIOS name: `HOST` changes, `host.example` stays.
    let (code, r) = report(&fixture("full"), &["--server-name", "CA01"]);
    assert_clean("renamed NetBIOS name", code, &r);
    assert_eq!(r["machine"]["dns"]["value"], "host.example");
}

#[test]
fn contexts_a_process_left_open_are_run_down_before_the_next_one() {
    let text = std::fs::read_to_string(fixture("full")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // A first process prepares a backup and exits without ending it.
    let crashed = format!("{}\n{}\n{}\n", lines[0], lines[1], lines[2]);
    let dir = tempfile::tempdir().unwrap();
    let two = dir.path().join("two.jsonl");
    std::fs::write(&two, format!("{crashed}{text}")).unwrap();
    let (code, r) = report(&two, &[]);
    assert_clean("rundown", code, &r);
    assert_eq!(actions(&r), ["rundown end context 0x1"]);
    let (_, out, _) = replay(&two, &[]);
    assert!(
        out.contains(
            "at the end: end context 0x1 (process exit: left open by the recorded process)"
        ),
        "{out}"
    );
}

#[test]
fn a_backup_after_a_replayed_restore_finds_the_ca_running_again() {
    let full = std::fs::read_to_string(fixture("full")).unwrap();
    let lines: Vec<&str> = full.lines().collect();
    let end = lines
        .iter()
        .find(|l| l.contains("\"CertSrvBackupEnd\""))
        .unwrap();
    // After the restore, a program checks the CA, prepares a backup and ends it.
    let again = format!("{}\n{}\n{}\n{end}\n", lines[0], lines[1], lines[2]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("restore-then-backup.jsonl");
    let restore = std::fs::read_to_string(fixture("restore")).unwrap();
    std::fs::write(&file, format!("{restore}{again}")).unwrap();
    let (code, r) = report(&file, &[]);
    assert_clean("restore, then a backup", code, &r);
    assert_eq!(
        actions(&r),
        ["inferred stop", "inferred wipe", "inferred start"]
    );
    // The transcript holds no files: the registered restore cannot be recovered, and the
    // CA restarts from the files the wipe removed.
    let why = r["actions"][2]["why"].as_str().unwrap();
    assert!(why.contains("recovery failed with 0xC80004B6"), "{why}");
}

#[test]
fn unusable_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = replay(&dir.path().join("missing.jsonl"), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("missing.jsonl"), "{err}");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"call\":\"CertSrvBackupEnd\",\"hr\":\"0x0\"}\nnot json\n",
    )
    .unwrap();
    let (code, _, err) = replay(&bad, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("line 2:"), "{err}");
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "{\"recording\":{\"format\":1}}\n").unwrap();
    let (code, _, err) = replay(&empty, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no call to replay"), "{err}");
}

// ----- COVERAGE.md: verified by transcript ----------------------------------------------

const BEGIN: &str = "<!-- verified-by-transcript: generated by tests/it/replay.rs from tests/fixtures/transcripts; CERTADM_EMU_BLESS=1 rewrites it -->";
const END: &str = "<!-- end verified-by-transcript -->";

/// The exports in the order of section A's rows of `COVERAGE.md`, with their numbers.
fn section_a(coverage: &str) -> Vec<(String, Call)> {
    coverage
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let n = cells.get(1)?.parse::<u32>().ok()?;
            let call = Call::from_name(cells.get(2)?.trim_matches('`'))?;
            Some((n.to_string(), call))
        })
        .take(18)
        .collect()
}

/// The table: per export (in the order of section A), the HRESULTs each fixture recorded.
fn verified_table(coverage: &str) -> String {
    let mut seen: BTreeMap<&'static str, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut sources: Vec<(bool, String)> = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest().join(FIXTURES))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    for f in &files {
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(f).unwrap();
        let mut wine = false;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            if let Some(h) = v.get("recording") {
                wine |= h["windows"]["wine"].is_string();
                continue;
            }
            if v.get("control").is_some() {
                continue;
            }
            let e = Event::from_json(line).unwrap();
            let hrs = seen.entry(e.call.name()).or_default();
            let files = hrs
                .entry(e.hr.name().map_or(e.hr.to_string(), str::to_string))
                .or_default();
            if !files.contains(&name) {
                files.push(name.clone());
            }
        }
        sources.push((wine, format!("`{name}`")));
    }
    let group = |wine: bool| {
        let v: Vec<&str> = sources
            .iter()
            .filter(|x| x.0 == wine)
            .map(|x| x.1.as_str())
            .collect();
        if v.is_empty() {
            "none yet".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut s = String::new();
    s.push_str(BEGIN);
    s.push_str(
        "\n\n| # | Export | Verified by transcript (HRESULT: transcripts) |\n|---|---|---|\n",
    );
    for (n, call) in section_a(coverage) {
        let cell = match seen.get(call.name()) {
            None => "–".to_string(),
            Some(hrs) => hrs
                .iter()
                .map(|(hr, f)| format!("`{hr}`: {}", f.join(", ")))
                .collect::<Vec<_>>()
                .join("; "),
        };
        s.push_str(&format!("| {n} | `{}` | {cell} |\n", call.name()));
    }
    s.push_str(&format!(
        "\nRecorded on Windows: {}. Recorded under Wine through the project's PE DLL, that is \
         from the emulator itself (they pin the recorder and the replay, they are no evidence \
         about Windows): {}.\n\n{END}",
        group(false),
        group(true)
    ));
    s
}

#[test]
fn coverage_verified_by_transcript_is_generated_from_the_fixtures() {
    let path = manifest().join("COVERAGE.md");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(section_a(&text).len(), 18, "section A lists the 18 exports");
    let want = verified_table(&text);
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        panic!(
            "COVERAGE.md has no generated \"verified by transcript\" table (markers {BEGIN:?} \
             ... {END:?})"
        );
    };
    let have = &text[b..e + END.len()];
    if have != want && std::env::var("CERTADM_EMU_BLESS").is_ok_and(|v| v == "1") {
        let new = format!("{}{want}{}", &text[..b], &text[e + END.len()..]);
        std::fs::write(&path, new).unwrap();
        return;
    }
    assert!(
        have == want,
        "the \"verified by transcript\" table of COVERAGE.md is stale: rewrite it with \
         CERTADM_EMU_BLESS=1 cargo test --test it replay::coverage\n--- generated ---\n{want}"
    );
}

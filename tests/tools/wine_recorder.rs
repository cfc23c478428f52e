//! The recording certadm.dll (`windows/recorder/recorder.c`) under Wine.
//!
//! It is built with MinGW-w64 next to an unmodified `client.exe` (as `certadm.dll`), with the
//! project's PE `certadm.dll` (which forwards to `certadm-emu serve`) as the "real" one in
//! another directory, named by `CERTADM_RECORD_REAL`. Two identical servers run side by
//! side: client.exe runs each step (full backup, incremental backup, restore) once without
//! the recorder and once through it, and
//!
//! * every exit status and every line the client prints are the same (directories aside);
//! * each recording has one event per call, and matches, call by call, the trace the
//!   server of the recorded run wrote itself (`CERTADM_EMU_TRACE`): same function, same
//!   HRESULT, same arguments and out-values (sizes, list entries with their CSBFT
//!   characters, bytes per read), with handles and buffers as small sequence numbers;
//! * `certadm-emu lint` accepts each recording, and `certadm-emu replay` replays each one
//!   clean against an emulated CA built from it (and all three as one file);
//! * no host or CA name is left in an anonymised recording, and no address at all;
//! * `dll_checks.exe` (threads, bad pointers, frees after End) passes through it unchanged;
//! * a real DLL that cannot be loaded, or that is the recorder itself, gives
//!   `HRESULT_FROM_WIN32(ERROR_MOD_NOT_FOUND)` and a recording that says why.
//!
//! The recordings of the three steps are kept in `tests/fixtures/transcripts/` for the
//! replay: `CERTADM_EMU_BLESS=1` rewrites them; otherwise they must still have the call
//! sequence and HRESULTs of a fresh recording.
//!
//! Needs `x86_64-w64-mingw32-gcc` and Wine: skipped with a note without them, failed under
//! `CERTADM_EMU_REQUIRE_TOOLS=1`.

use certadm_emu::remote::client::RemoteClient;
use certadm_emu::HRESULT;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::common;

use common::lint;
use common::wine::{check_exports, compile, wine_path, Served, Wine};

const FIXTURES: &str = "tests/fixtures/transcripts";
/// HRESULT_FROM_WIN32(ERROR_MOD_NOT_FOUND).
const HR_MOD_NOT_FOUND: &str = "0x8007007E";

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn bless() -> bool {
    std::env::var("CERTADM_EMU_BLESS").is_ok_and(|v| v == "1")
}

// ----- the Wine scenario -----------------------------------------------------------------

/// A recording: its first line and its events.
struct Recording {
    header: Value,
    events: Vec<Value>,
    text: String,
}

/// Reads the recordings of a file (each starts with a header line).
fn recordings(path: &Path) -> Vec<Recording> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut v: Vec<Recording> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let j: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{} line {}: {e}: {line}", path.display(), i + 1));
        if let Some(h) = j.get("recording") {
            v.push(Recording {
                header: h.clone(),
                events: Vec::new(),
                text: String::new(),
            });
        } else {
            let r = v
                .last_mut()
                .unwrap_or_else(|| panic!("{}: no recording header first", path.display()));
            r.events.push(j);
        }
        let r = v.last_mut().unwrap();
        r.text.push_str(line);
        r.text.push('\n');
    }
    v
}

/// The one recording of a file.
fn recording(path: &Path) -> Recording {
    let mut v = recordings(path);
    assert_eq!(v.len(), 1, "{}: one recording", path.display());
    v.remove(0)
}

/// The anonymisation the recorder promises, applied to the emulator's own strings: every
/// name (ASCII case-insensitive, on word boundaries, longest first) becomes its placeholder.
struct Anon(Vec<(String, &'static str)>);

impl Anon {
    fn apply(&self, s: &str) -> String {
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
        let mut out = String::new();
        let mut i = 0;
        'outer: while i < s.len() {
            if !word(s[..i].chars().next_back()) {
                let mut names: Vec<&(String, &str)> = self.0.iter().collect();
                names.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
                for (n, ph) in names {
                    let end = i + n.len();
                    if s.is_char_boundary(end)
                        && end <= s.len()
                        && s[i..end].eq_ignore_ascii_case(n)
                        && !word(s[end..].chars().next())
                    {
                        out.push_str(ph);
                        i = end;
                        continue 'outer;
                    }
                }
            }
            let c = s[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
        out
    }

    fn value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.apply(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.value(x)).collect()),
            other => other.clone(),
        }
    }

    /// True if `text` holds one of the names as a word.
    fn leaks(&self, text: &str) -> Option<String> {
        let lower = text.to_lowercase();
        for (n, _) in &self.0 {
            let n = n.to_lowercase();
            // A computer named like a placeholder cannot be told from it.
            if ["host", "ca", "host.example", "example"].contains(&n.as_str()) {
                continue;
            }
            let mut from = 0;
            while let Some(p) = lower[from..].find(&n) {
                let at = from + p;
                let before = lower[..at].chars().next_back();
                let after = lower[at + n.len()..].chars().next();
                if !before.is_some_and(|c| c.is_alphanumeric())
                    && !after.is_some_and(|c| c.is_alphanumeric())
                {
                    return Some(format!(
                        "{n:?} at byte {at}: ...{}...",
                        &lower[at.saturating_sub(40)..(at + n.len() + 40).min(lower.len())]
                    ));
                }
                from = at + n.len();
            }
        }
        None
    }
}

/// Numbers on one side, values on the other, consistently in both directions.
#[derive(Default)]
struct Bijection {
    fwd: HashMap<String, String>,
    back: HashMap<String, String>,
}

impl Bijection {
    fn check(&mut self, what: &str, server: &Value, rec: &Value) -> Result<(), String> {
        let (Some(s), Some(r)) = (server.as_str(), rec.as_str()) else {
            return Err(format!("{what}: {server} / {rec}"));
        };
        if (s == "0x0") != (r == "0x0") {
            return Err(format!("{what}: {s} recorded as {r}"));
        }
        let f = self.fwd.entry(s.into()).or_insert_with(|| r.into()).clone();
        let b = self
            .back
            .entry(r.into())
            .or_insert_with(|| s.into())
            .clone();
        if f != r || b != s {
            return Err(format!(
                "{what}: {s} recorded as {r}, but earlier {s} was {f} and {r} was {b}"
            ));
        }
        Ok(())
    }
}

/// The keys and values of one side of an event, as a list (order matters).
fn fields(v: &Value) -> Vec<(String, Value)> {
    v.as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The recording says what the server's own trace says, call by call.
fn compare_with_server(tag: &str, rec: &Recording, server: &[Value], anon: &Anon) {
    // A NULL CertSrvBackupFree never leaves the PE certadm.dll (it has nothing to free).
    let recorded: Vec<&Value> = rec
        .events
        .iter()
        .filter(|e| !(e["call"] == "CertSrvBackupFree" && e["args"]["pv"] == "0x0"))
        .collect();
    let calls = |v: &mut dyn Iterator<Item = &Value>| -> Vec<String> {
        v.map(|e| format!("{} {}", e["call"].as_str().unwrap(), e["hr"]))
            .collect()
    };
    assert_eq!(
        calls(&mut recorded.iter().copied()),
        calls(&mut server.iter()),
        "{tag}: the recorded calls and the server's trace"
    );
    let (mut handles, mut buffers) = (Bijection::default(), Bijection::default());
    for (i, (r, s)) in recorded.iter().zip(server).enumerate() {
        let mut problems = Vec::new();
        for side in ["args", "out"] {
            let mut sf = fields(&s[side]);
            sf.retain(|(k, _)| k != "deleted"); // TruncateLogs: the server knows, a client not
            let rf = fields(&r[side]);
            let keys = |f: &[(String, Value)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
            if keys(&sf) != keys(&rf) {
                problems.push(format!("{side} keys {:?} / {:?}", keys(&sf), keys(&rf)));
                continue;
            }
            for ((k, sv), (_, rv)) in sf.iter().zip(&rf) {
                let res = match k.as_str() {
                    "hbc" => handles.check(k, sv, rv),
                    "pv" | "buffer" => buffers.check(k, sv, rv),
                    _ if sv.is_number() => (sv.as_i64() == rv.as_i64())
                        .then_some(())
                        .ok_or(format!("{k}: {sv} / {rv}")),
                    _ => (anon.value(sv) == *rv)
                        .then_some(())
                        .ok_or(format!("{k}: {} / {rv}", anon.value(sv))),
                };
                if let Err(e) = res {
                    problems.push(format!("{side}.{e}"));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "{tag}: call {} differs from the server's trace: {problems:?}\n recorded: {r}\n server:   {s}",
            i + 1
        );
    }
    // Every handle and buffer is a small number, and no address is written anywhere.
    for e in &rec.events {
        for (side, key) in [
            ("args", "hbc"),
            ("out", "hbc"),
            ("args", "pv"),
            ("out", "buffer"),
        ] {
            if let Some(v) = e[side].get(key) {
                let n = u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16)
                    .unwrap_or(u64::MAX);
                assert!(
                    n <= 16,
                    "{tag}: {key} {v} is not a small sequence number: {e}"
                );
            }
        }
    }
    assert_no_address(tag, &rec.text);
}

/// No `0x` with more than 8 hex digits (an address; HRESULTs have exactly 8).
fn assert_no_address(tag: &str, text: &str) {
    let b = text.as_bytes();
    for i in 0..b.len().saturating_sub(2) {
        if b[i] == b'0' && b[i + 1] == b'x' {
            let digits = b[i + 2..]
                .iter()
                .take_while(|c| c.is_ascii_hexdigit())
                .count();
            assert!(
                digits <= 8,
                "{tag}: an address in the recording: {}",
                String::from_utf8_lossy(&b[i..(i + 2 + digits).min(b.len())])
            );
        }
    }
}

/// The lines a file gained since `from` lines.
fn new_lines(path: &Path, from: &mut usize) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<Value> = text
        .lines()
        .skip(*from)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    *from += lines.len();
    lines
}

/// One side of the comparison: a server, its client directory, the client runs.
struct Side {
    name: &'static str,
    dir: PathBuf,
    /// The server (shut down when the side is dropped).
    _served: Served,
    rc: RemoteClient,
    wine: Wine,
    /// Extra environment of every client run (the recorder's variables).
    env: Vec<(String, String)>,
}

impl Side {
    fn client(&self, tag: &str, args: &[String], record: Option<&Path>) -> (i32, String, String) {
        let mut env: Vec<(String, String)> = self.env.clone();
        if let Some(r) = record {
            env.push(("CERTADM_RECORD".into(), wine_path_new(r)));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, out, err) = self.wine.run_exe_env(
            &self.wine.client,
            &format!("{}-{tag}", self.name),
            &args,
            &env,
        );
        (status.code().unwrap_or(-1), out, err)
    }
}

/// The Wine name of a file that may not exist yet (its directory does).
fn wine_path_new(p: &Path) -> String {
    format!(
        "{}\\{}",
        wine_path(p.parent().unwrap()),
        p.file_name().unwrap().to_string_lossy()
    )
}

/// Output with the run's directories replaced, for comparing the two runs.
fn normalise(s: &str, dirs: &[(String, &str)]) -> String {
    let mut s = s.to_string();
    for (d, tag) in dirs {
        s = s.replace(d.as_str(), tag);
        s = s.replace(&d.to_lowercase(), tag);
    }
    s
}

/// Writes the CertSvc configuration of a CA host into the Wine registry.
fn set_ca_registry(w: &Wine, dir: &Path, ca: &str) {
    let reg = dir.join("certsvc.reg");
    let key = r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\CertSvc\Configuration";
    let certlog = r#""C:\\Windows\\system32\\CertLog""#;
    std::fs::write(
        &reg,
        format!(
            "REGEDIT4\r\n\r\n[{key}]\r\n\"Active\"=\"{ca}\"\r\n\"DBDirectory\"={certlog}\r\n\
             \"DBLogDirectory\"={certlog}\r\n\"DBSystemDirectory\"={certlog}\r\n\
             \"DBTempDirectory\"={certlog}\r\n\"DBFlags\"=dword:00000000\r\n\r\n\
             [{key}\\{ca}]\r\n\"CommonName\"=\"{ca}\"\r\n\"InterfaceFlags\"=dword:00000641\r\n"
        ),
    )
    .unwrap();
    let mut cmd = w.command();
    cmd.arg("reg").arg("import").arg(wine_path(&reg));
    let (status, out, err, _) = common::wine::run(cmd, dir, "reg-import");
    assert!(status.success(), "reg import failed: {out}{err}");
}

/// The rule ids of a lint report, in order.
fn rule_ids(report: &str) -> Vec<String> {
    report
        .lines()
        .filter(|l| l.starts_with("- ["))
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect()
}

/// `certadm-emu replay --json FILE` is clean (no unexpected divergence); returns the report.
fn replay_clean(tag: &str, file: &Path) -> Value {
    let mut c = Command::new(env!("CARGO_BIN_EXE_certadm-emu"));
    c.arg("replay").arg("--json").arg(file);
    for v in [
        "CERTADM_EMU_SERVER",
        "CERTADM_EMU_CONFIG",
        "CERTADM_EMU_TRACE",
    ] {
        c.env_remove(v);
    }
    let (out, _) = common::run_with_timeout(c, std::time::Duration::from_secs(120));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{tag}: replay wrote no JSON report ({e}): {}",
            common::show(&out)
        )
    });
    assert!(
        out.status.success() && report["clean"] == true,
        "{tag}: the replay of the fresh recording diverges: {:#}",
        report["divergences"]
    );
    report
}

/// The call sequence and HRESULTs of a recording.
fn shape(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{} -> {}", e["call"].as_str().unwrap_or("?"), e["hr"]))
        .collect()
}

#[test]
fn recorder_records_an_unmodified_client_without_changing_what_it_sees() {
    let Some((gcc, wine_exe)) = common::wine::mingw_and_wine() else {
        return;
    };
    let t0 = Instant::now();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp
        .join("wine-recorder")
        .join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    let (plain, rec, real) = (dir.join("plain"), dir.join("rec"), dir.join("real"));
    for d in [&plain, &rec, &real] {
        std::fs::create_dir_all(d).unwrap();
    }
    let prefix = common::wine::prefix();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    // The recorder (the documented command) next to client.exe; the project's PE DLL
    // next to the plain client.exe and, as the "real" one, in real/.
    let recorder = rec.join("certadm.dll");
    compile(
        &gcc,
        &[
            "-shared",
            "-I",
            "include",
            "-o",
            &s(&recorder),
            "windows/recorder/recorder.c",
            "windows/recorder/recorder.def",
        ],
        &dir,
        "build-recorder",
    );
    let project = common::wine::build_project(&gcc, &plain, &dir);
    std::fs::copy(&project.dll, real.join("certadm.dll")).unwrap();
    std::fs::copy(&project.client, rec.join("client.exe")).unwrap();
    std::fs::copy(&project.checks, rec.join("dll_checks.exe")).unwrap();
    check_exports(&recorder, &dir);
    eprintln!("built in {:.1?}", t0.elapsed());

    let real_env = (
        "CERTADM_RECORD_REAL".to_string(),
        wine_path(&real.join("certadm.dll")),
    );
    let wine_in = |d: &Path, server: &str| Wine {
        exe: wine_exe.clone(),
        prefix: prefix.clone(),
        client: d.join("client.exe"),
        dir: d.to_path_buf(),
        server: server.to_string(),
    };

    // 1. No real DLL: every call gives HRESULT_FROM_WIN32(ERROR_MOD_NOT_FOUND) and the
    //    recording says why; then the recorder named as the real DLL is refused. Both
    //    processes append to one file. The first header also gives the names of this
    //    (Wine) computer, which the emulated CA then takes, as on a CA host.
    let probe = dir.join("probe.jsonl");
    let w = wine_in(&rec, "127.0.0.1:9");
    let nowhere = dir.join("nowhere").join("certadm.dll");
    for (tag, real_path) in [("missing", &nowhere), ("self", &recorder)] {
        let (status, _, err) = w.run_exe_env(
            &w.client,
            &format!("probe-{tag}"),
            &["PROBE", &wine_path(&dir.join("none")), "full"],
            &[
                ("CERTADM_RECORD", &wine_path_new(&probe)),
                ("CERTADM_RECORD_REAL", &wine_path_new(real_path)),
            ],
        );
        assert_eq!(status.code(), Some(1), "{tag}: {err}");
        assert!(
            err.contains(&format!("CertSrvIsServerOnline failed: {HR_MOD_NOT_FOUND}")),
            "{tag}: {err}"
        );
    }
    let probes = recordings(&probe);
    assert_eq!(probes.len(), 2, "two processes, two recordings in one file");
    for (p, why) in probes.iter().zip([
        "LoadLibraryExW failed with error 126",
        "CERTADM_RECORD_REAL names this recorder itself; refusing to load it",
    ]) {
        assert_eq!(p.header["format"], 1);
        assert_eq!(p.header["real_dll"]["loaded"], false);
        assert_eq!(p.header["real_dll"]["from"], "CERTADM_RECORD_REAL");
        assert_eq!(p.header["real_dll"]["error"], why);
        // IsServerOnline fails; client.exe then frees its four (NULL) lists.
        assert_eq!(p.events.len(), 5, "{}", p.text);
        for f in &p.events[1..] {
            assert_eq!(
                (&f["call"], &f["args"]["pv"]),
                (&json!("CertSrvBackupFree"), &json!("0x0"))
            );
        }
        let e = &p.events[0];
        assert_eq!(e["seq"], 1);
        assert_eq!(e["call"], "CertSrvIsServerOnlineW");
        assert_eq!(e["args"]["pwszServerName"], "PROBE");
        assert_eq!(e["hr"], HR_MOD_NOT_FOUND);
        assert_eq!(e["out"], json!({}));
        let msg = e["message"].as_str().unwrap_or_default();
        assert!(msg.contains(why), "{msg}");
    }
    let (ok, out) = lint(&probe);
    assert!(ok, "lint of the probe recordings: {out}");
    let computer = &probes[0].header["computer"];
    let netbios = computer["netbios"].as_str().expect("netbios").to_string();
    let dns_host = computer["dns_hostname"]
        .as_str()
        .expect("dns_hostname")
        .to_string();
    let local_dns = computer["dns"].as_str().expect("dns").to_string();
    let dns = if local_dns.contains('.') {
        local_dns.to_lowercase()
    } else {
        format!("{}.corp.test", dns_host.to_lowercase())
    };
    let machine = netbios.clone();
    let ca_name = format!("corp-{netbios}-CA");
    eprintln!("this computer: {netbios} / {dns_host} / {local_dns}; CA {ca_name:?} on {dns}");
    let anon = Anon(vec![
        (netbios.clone(), "HOST"),
        (dns_host.clone(), "HOST"),
        (
            local_dns.clone(),
            if local_dns.contains('.') {
                "host.example"
            } else {
                "HOST"
            },
        ),
        (dns.clone(), "host.example"),
        (ca_name.clone(), "CA"),
    ]);

    // 2. Two identical servers; the recorded side's server writes its own trace.
    set_ca_registry(&w, &dir, &ca_name);
    let cfg = dir.join("server.json");
    std::fs::write(
        &cfg,
        serde_json::to_string(&json!({"machines": [{
            "name": machine, "dns": dns,
            "ca": {"name": ca_name, "records": 30, "log_capacity": 4}
        }]}))
        .unwrap(),
    )
    .unwrap();
    let server_trace = dir.join("server-trace.jsonl");
    let side = |name: &'static str, d: &Path, env: Vec<(String, String)>| {
        let served = Served::start(&cfg, |cmd| {
            if name == "rec" {
                cmd.env("CERTADM_EMU_TRACE", &server_trace);
            } else {
                cmd.env_remove("CERTADM_EMU_TRACE");
            }
        });
        let rc = RemoteClient::connect(&served.addr, None).unwrap();
        let wine = wine_in(d, &served.addr);
        Side {
            name,
            dir: d.to_path_buf(),
            _served: served,
            rc,
            wine,
            env,
        }
    };
    let a = side("plain", &plain, vec![]);
    let anon_env = ("CERTADM_RECORD_ANONYMISE".to_string(), "1".to_string());
    let b = side("rec", &rec, vec![real_env.clone(), anon_env]);
    let mut trace_at = 0usize;

    // 3. dll_checks.exe (threads, bad pointers, frees after End) through the recorder:
    //    first without CERTADM_RECORD (only forwarding), then recording to a file named
    //    with %p.
    for (tag, d) in [("plain-dll_checks-0", &a), ("rec-dll_checks-0", &b)] {
        let envs = [(real_env.0.as_str(), real_env.1.as_str())];
        let (st, out, err) =
            d.wine
                .run_exe_env(&d.dir.join("dll_checks.exe"), tag, &[&machine], &envs);
        assert_eq!(st.code(), Some(0), "{tag}: {out}{err}");
    }
    let _ = new_lines(&server_trace, &mut trace_at);
    let (pa, oa, _) = a.wine.run_exe_env(
        &plain.join("dll_checks.exe"),
        "plain-dll_checks",
        &[&machine],
        &[],
    );
    let (pb, ob, eb) = b.wine.run_exe_env(
        &rec.join("dll_checks.exe"),
        "rec-dll_checks",
        &[&machine],
        &[
            (&real_env.0, &real_env.1),
            (
                "CERTADM_RECORD",
                &wine_path_new(&dir.join("dll_checks-%p.jsonl")),
            ),
        ],
    );
    assert_eq!(
        (pa.code(), pb.code()),
        (Some(0), Some(0)),
        "dll_checks: {eb}"
    );
    assert_eq!(oa, ob, "dll_checks prints the same through the recorder");
    let checks_file = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("dll_checks-") && n.ends_with(".jsonl")
        })
        .expect("the %p recording of dll_checks.exe");
    let checks = recording(&checks_file);
    let pid = checks.header["pid"].as_u64().unwrap();
    assert_eq!(
        checks_file.file_name().unwrap().to_string_lossy(),
        format!("dll_checks-{pid}.jsonl"),
        "%p is the process id"
    );
    assert_eq!(checks.header["anonymised"], false);
    let clients: std::collections::BTreeSet<u64> = checks
        .events
        .iter()
        .map(|e| e["client"].as_u64().unwrap())
        .collect();
    assert_eq!(clients.len(), 3, "main thread and two threads: {clients:?}");
    for (i, e) in checks.events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "seq in file order");
    }
    let first = &checks.events[0];
    assert_eq!(first["call"], "CertSrvIsServerOnlineW");
    assert_eq!(first["args"]["pwszServerName"], Value::Null);
    assert_eq!(first["hr"], "0x80004003");
    assert_eq!(first["hr_name"], "E_POINTER");
    assert!(
        checks
            .events
            .iter()
            .any(|e| e["args"]["pwszServerName"] == "C\u{FFFD}A" && e["hr_name"] == "E_INVALIDARG"),
        "an unpaired surrogate is recorded as U+FFFD"
    );
    assert_no_address("dll_checks", &checks.text);
    // dll_checks.exe breaks rules on purpose (a handle used after End, files not read):
    // lint finds the same in the recording as in the server's own trace of it.
    let server_part = dir.join("dll_checks-server.jsonl");
    let lines: Vec<String> = new_lines(&server_trace, &mut trace_at)
        .iter()
        .map(Value::to_string)
        .collect();
    std::fs::write(&server_part, lines.join("\n")).unwrap();
    let ((_, rec_out), (_, srv_out)) = (lint(&checks_file), lint(&server_part));
    eprintln!("lint of the dll_checks recording:\n{rec_out}");
    assert!(!rule_ids(&rec_out).is_empty(), "{rec_out}");
    assert_eq!(
        rule_ids(&rec_out),
        rule_ids(&srv_out),
        "dll_checks: lint of the recording and of the server's trace"
    );

    // 4. The documented procedures, step by step on both sides.
    let dirs = |sd: &Side, extra: &[(String, &'static str)]| -> Vec<(String, &'static str)> {
        let mut v = extra.to_vec();
        v.push((wine_path(&sd.dir), "<DIR>"));
        v
    };
    let mut recorded: Vec<(&str, PathBuf)> = Vec::new();
    let mut step = |tag: &'static str,
                    args_of: &dyn Fn(&Side) -> Vec<String>,
                    extra: &dyn Fn(&Side) -> Vec<(String, &'static str)>| {
        let (ca, oa, ea) = a.client(tag, &args_of(&a), None);
        let file = dir.join(format!("{tag}.jsonl"));
        let (cb, ob, eb) = b.client(tag, &args_of(&b), Some(&file));
        assert_eq!(ca, 0, "{tag} failed without the recorder: {ea}");
        assert_eq!(ca, cb, "{tag}: the exit status through the recorder: {eb}");
        let (da, db) = (dirs(&a, &extra(&a)), dirs(&b, &extra(&b)));
        assert_eq!(
            normalise(&oa, &da),
            normalise(&ob, &db),
            "{tag}: stdout through the recorder"
        );
        assert_eq!(
            normalise(&ea, &da),
            normalise(&eb, &db),
            "{tag}: stderr through the recorder"
        );
        let r = recording(&file);
        let server = new_lines(&server_trace, &mut trace_at);
        compare_with_server(tag, &r, &server, &anon);
        for (i, e) in r.events.iter().enumerate() {
            assert_eq!(e["seq"], i as u64 + 1, "{tag}: seq");
            assert_eq!(e["client"], 1, "{tag}: one thread");
            assert_eq!(e["count"], 1, "{tag}: one line per call");
            let hr = HRESULT::parse(e["hr"].as_str().unwrap()).unwrap();
            assert_eq!(
                e.get("hr_name").and_then(Value::as_str),
                hr.name(),
                "{tag}: {e}"
            );
        }
        let (ok, out) = lint(&file);
        assert!(ok, "{tag}: lint of the recording:\n{out}");
        // The recording replays clean against an emulated CA built from it.
        let report = replay_clean(tag, &file);
        eprintln!(
            "{tag}: replayed clean ({} calls; expected differences: {})",
            report["calls"], report["expected"]
        );
        if let Some(leak) = anon.leaks(&r.text) {
            panic!("{tag}: a name is left in the anonymised recording: {leak}");
        }
        let h = &r.header;
        assert_eq!(h["format"], 1);
        assert_eq!(h["anonymised"], true);
        assert_eq!(h["folded_reads"], false);
        assert_eq!(h["image"], "client.exe");
        assert_eq!(h["computer"]["netbios"], "HOST");
        assert_eq!(h["ca"]["name"], "CA");
        assert_eq!(h["ca"]["common_name"], "CA");
        assert_eq!(h["ca"]["db_directory"], r"C:\Windows\system32\CertLog");
        assert_eq!(h["ca"]["db_log_directory"], r"C:\Windows\system32\CertLog");
        assert_eq!(h["ca"]["db_flags"], 0);
        assert_eq!(h["ca"]["interface_flags"], 0x641);
        assert_eq!(h["ca"]["restore_in_progress"], false);
        assert_eq!(
            h["real_dll"],
            json!({"path": "certadm.dll", "from": "CERTADM_RECORD_REAL", "loaded": true,
                   "error": null, "missing_exports": []})
        );
        assert!(h["windows"]["major"].as_u64().is_some(), "{h}");
        recorded.push((tag, file));
        eprintln!(
            "{tag}: identical through the recorder ({} calls) at {:.1?}",
            r.events.len(),
            t0.elapsed()
        );
    };
    let none = |_: &Side| Vec::new();

    for sd in [&a, &b] {
        sd.rc.issue(&machine, 5).unwrap();
    }
    let m = machine.clone();
    step(
        "full",
        &|sd: &Side| {
            vec![
                m.clone(),
                wine_path_new(&sd.dir.join("full")),
                "full".into(),
            ]
        },
        &none,
    );
    for sd in [&a, &b] {
        sd.rc.issue(&machine, 9).unwrap();
        sd.rc.revoke(&machine, 2).unwrap();
    }
    step(
        "incremental",
        &|sd: &Side| {
            vec![
                m.clone(),
                wine_path_new(&sd.dir.join("incremental-1")),
                "incremental".into(),
            ]
        },
        &none,
    );
    let mut before = Vec::new();
    let mut roots = Vec::new();
    for sd in [&a, &b] {
        before.push(sd.rc.records(&machine).unwrap());
        sd.rc.stop(&machine).unwrap();
        sd.rc.wipe_files(&machine).unwrap();
        let c_root = sd.rc.host_path(&machine, "C:\\").unwrap();
        std::fs::create_dir_all(&c_root).unwrap();
        roots.push(wine_path(&c_root));
    }
    let root_of = |sd: &Side| roots[usize::from(sd.name == "rec")].clone();
    step(
        "restore",
        &|sd: &Side| {
            vec![
                "--map".into(),
                format!("\\\\{dns}\\C$={}", root_of(sd)),
                m.clone(),
                wine_path(&sd.dir.join("full")),
                "restore".into(),
                wine_path(&sd.dir.join("incremental-1")),
            ]
        },
        &|sd: &Side| vec![(root_of(sd), "<C>")],
    );
    for (i, sd) in [&a, &b].into_iter().enumerate() {
        let recovery = sd.rc.start(&machine).expect("start after the restore");
        assert!(
            recovery.hard,
            "{}: a registered restore is a hard recovery",
            sd.name
        );
        assert_eq!(
            sd.rc.records(&machine).unwrap(),
            before[i],
            "{}: every record is back",
            sd.name
        );
    }
    drop(a);
    drop(b);

    // 5. The three fresh recordings in one file replay clean as one history, and so do
    //    the transcripts kept for the replay.
    let all = dir.join("all.jsonl");
    let text: String = recorded
        .iter()
        .map(|(_, f)| std::fs::read_to_string(f).unwrap())
        .collect();
    std::fs::write(&all, text).unwrap();
    replay_clean("full + incremental + restore", &all);
    let fixtures = manifest().join(FIXTURES);
    for (tag, file) in &recorded {
        let fixture = fixtures.join(format!("{tag}.jsonl"));
        if bless() {
            std::fs::create_dir_all(&fixtures).unwrap();
            std::fs::copy(file, &fixture).unwrap();
            eprintln!("blessed {}", fixture.display());
            continue;
        }
        assert!(
            fixture.is_file(),
            "{} is missing: write it with CERTADM_EMU_BLESS=1 cargo test --test tools wine_recorder",
            fixture.display()
        );
        let kept = recording(&fixture);
        let fresh = recording(file);
        assert_eq!(
            kept.header["format"], fresh.header["format"],
            "{tag}: format"
        );
        assert_eq!(
            kept.header["anonymised"], true,
            "{tag}: the fixture is anonymised"
        );
        assert_eq!(
            shape(&kept.events),
            shape(&fresh.events),
            "{tag}: the fixture's calls and HRESULTs differ from a fresh recording \
             (CERTADM_EMU_BLESS=1 rewrites it)"
        );
        if let Some(leak) = anon.leaks(&kept.text) {
            panic!("{tag}: the fixture names this computer or its CA: {leak}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("recorder test done in {:.1?}", t0.elapsed());
}

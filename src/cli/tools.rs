//! `certadm-emu lint` and `certadm-emu explore`.

use certadm_emu::api::faults::{Fault, FaultSchedule};
use certadm_emu::config::Config;
use certadm_emu::conformance;
use certadm_emu::control::{MachineReport, ReportFile};
use std::path::Path;
use std::process::Command;

/// `certadm-emu lint TRACE`: the conformance report of a trace file. Fails if a rule was broken.
///
/// A file of the recording certadm.dll (`windows/recorder`) holds one recording per process,
/// each starting with a `{"recording": {...}}` line and numbering its handles from 1: each
/// recording is checked on its own. The `{"control": ...}` lines of `certadm-emu replay`
/// are skipped.
pub fn lint(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let recordings = split_recordings(&text);
    let mut violations = 0;
    for (first_line, body) in &recordings {
        let events = conformance::parse_trace(body)?;
        // A file may hold several CAs' calls: their handles never collide, so one pass checks all.
        let report = conformance::check(&events, true);
        let mut shown = report.clone();
        shown.trace.clear();
        if recordings.len() > 1 {
            println!("recording from line {first_line}:");
        }
        print!("{shown}");
        violations += report.violations.len();
    }
    if violations == 0 {
        Ok(())
    } else {
        Err(format!("{violations} violation(s)"))
    }
}

/// The traces of a file, split at each recording header line, with the number of their
/// first line; each body keeps its lines' numbers (earlier lines are blank) for
/// [`conformance::parse_trace`]'s messages. Empty parts are dropped.
fn split_recordings(text: &str) -> Vec<(usize, String)> {
    let mut parts = vec![(1, String::new())];
    for (i, line) in text.lines().enumerate() {
        let header = line.trim_start().starts_with("{\"recording\"")
            && serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|v| v.get("recording").is_some() && v.get("call").is_none());
        // A control line of `certadm-emu replay` is no call: it keeps its place, empty.
        let control = line.trim_start().starts_with("{\"control\"")
            && serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|v| v.get("control").is_some() && v.get("call").is_none());
        if header {
            parts.push((i + 1, "\n".repeat(i + 1)));
        } else if control {
            if let Some((_, body)) = parts.last_mut() {
                body.push('\n');
            }
        } else if let Some((_, body)) = parts.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    parts.retain(|(_, body)| !body.trim().is_empty());
    if parts.is_empty() {
        parts.push((1, String::new()));
    }
    parts
}

/// Runs `cmd` once against a fresh in-process server hosting `config`'s machines
/// (`CERTADM_EMU_SERVER` in its environment: the shared library and the PE certadm.dll
/// forward to it), and returns its exit code and the first machine's report.
fn run_once_server(
    config: &Config,
    cmd: &[String],
) -> Result<(Option<i32>, MachineReport), String> {
    use certadm_emu::remote::server::{Server, ServerOptions};
    let srv = Server::bind(
        "127.0.0.1:0",
        ServerOptions {
            secret: None,
            config: Some(config.clone()),
            quiet: true,
        },
    )
    .map_err(|e| format!("starting the server: {e}"))?
    .spawn();
    let status = Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("CERTADM_EMU_SERVER", srv.addr())
        .env_remove("CERTADM_EMU_CONFIG")
        .env_remove("CERTADM_EMU_SECRET")
        .status()
        .map_err(|e| format!("running {}: {e}", cmd[0]))?;
    // The client's connections close with its process; give the rundown a moment.
    let name = &config.machines[0].name;
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_secs(2)
        && srv
            .server()
            .with_machine(name, |ca| ca.sessions_open() > 0)
            .unwrap_or(false)
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let report = first_machine(srv.server().reports())?;
    srv.stop().map_err(|e| e.to_string())?;
    Ok((status.code(), report))
}

fn run_once(
    config: &Config,
    dir: &Path,
    tag: &str,
    cmd: &[String],
) -> Result<(Option<i32>, MachineReport), String> {
    let cfg_path = dir.join(format!("config-{tag}.json"));
    let report_path = dir.join(format!("report-{tag}.json"));
    let mut c = config.clone();
    c.report = Some(report_path.clone());
    let text = serde_json::to_string_pretty(&c).map_err(|e| e.to_string())?;
    std::fs::write(&cfg_path, text).map_err(|e| e.to_string())?;
    let status = Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("CERTADM_EMU_CONFIG", &cfg_path)
        .env_remove("CERTADM_EMU_REPORT")
        .env_remove("CERTADM_EMU_FAULTS")
        .status()
        .map_err(|e| format!("running {}: {e}", cmd[0]))?;
    let text = std::fs::read_to_string(&report_path).map_err(|_| {
        format!(
            "{} wrote no report: is it linked against libcertadm_emu and does it call a certbcli function with a configured server name?",
            cmd[0]
        )
    })?;
    let file: ReportFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", report_path.display()))?;
    Ok((status.code(), first_machine(file)?))
}

fn first_machine(file: ReportFile) -> Result<MachineReport, String> {
    file.machines
        .into_iter()
        .next()
        .ok_or_else(|| "the report holds no machine".to_string())
}

/// `certadm-emu explore --config CFG [--server] -- CMD ARGS`: fail at every step for a
/// native client, in process (`CERTADM_EMU_CONFIG`) or through a server
/// (`CERTADM_EMU_SERVER`, for clients that forward, such as Windows programs under Wine
/// with the PE certadm.dll).
pub fn explore(
    config_path: &Path,
    hr: Option<String>,
    through_server: bool,
    cmd: &[String],
) -> Result<(), String> {
    if cmd.is_empty() {
        return Err("give the client command after --".into());
    }
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let mut config = Config::from_json(&text)?;
    if config.machines.is_empty() {
        return Err("the configuration defines no machine".into());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let once = |config: &Config, tag: &str| {
        if through_server {
            run_once_server(config, cmd)
        } else {
            run_once(config, dir.path(), tag, cmd)
        }
    };
    let (code, first) = once(&config, "0")?;
    if code != Some(0) {
        return Err(format!(
            "the client fails without any fault (exit code {code:?})"
        ));
    }
    let calls = first.calls;
    let functions: Vec<&str> = (1..=calls)
        .map(|k| {
            first
                .trace
                .iter()
                .find(|e| e.0 <= k && k < e.0 + e.2)
                .map_or("?", |e| e.1.name())
        })
        .collect();
    println!(
        "fail at every step: {} calls on {} ({})",
        calls,
        config.machines[0].name,
        cmd.join(" ")
    );
    let mut problems = 0;
    for k in 1..=calls {
        config.machines[0].faults = Some(FaultSchedule {
            seed: 0,
            faults: vec![Fault::FailNthCall {
                n: k,
                hr: hr.clone(),
            }],
        });
        let (code, rep) = once(&config, &k.to_string())?;
        let cleanup: Vec<String> = rep
            .violations
            .iter()
            .filter(|v| v.cleanup)
            .map(|v| format!("{} {}: {}", v.rule, v.name, v.detail))
            .chain(rep.leftovers.iter().map(|l| format!("leftover: {l}")))
            .collect();
        let status = if cleanup.is_empty() {
            "clean"
        } else {
            "PROBLEM"
        };
        println!(
            "  k={k:<4} {:<38} -> exit {:?}, {status}",
            functions[(k - 1) as usize],
            code
        );
        for c in &cleanup {
            println!("      {c}");
        }
        if !cleanup.is_empty() {
            problems += 1;
        }
    }
    if problems == 0 {
        println!("no cleanup problem in {calls} runs");
        Ok(())
    } else {
        Err(format!("{problems} of {calls} runs left something behind"))
    }
}

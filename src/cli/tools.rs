//! `certadm-emu lint` and `certadm-emu explore`.

use certadm_emu::api::faults::{Fault, FaultSchedule};
use certadm_emu::config::Config;
use certadm_emu::conformance;
use certadm_emu::control::{MachineReport, ReportFile};
use std::path::Path;
use std::process::Command;

/// `certadm-emu lint TRACE`: the conformance report of a trace file. Fails if a rule was broken.
pub fn lint(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let events = conformance::parse_trace(&text)?;
    // A file may hold several CAs' calls: their handles never collide, so one pass checks all.
    let report = conformance::check(&events, true);
    let mut shown = report.clone();
    shown.trace.clear();
    print!("{shown}");
    if report.is_clean() {
        Ok(())
    } else {
        Err(format!("{} violation(s)", report.violations.len()))
    }
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
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&c).unwrap())
        .map_err(|e| e.to_string())?;
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

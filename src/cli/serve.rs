//! `certadm-emu serve`: one set of emulated CAs shared by several processes.
//!
//! The machines of the configuration file (the `CERTADM_EMU_CONFIG` format) are created
//! at start; clients connect with `certadm_emu::remote::client::RemoteClient` (or any
//! implementation of `docs/PROTOCOL.md`) and may create more. The first line on stdout
//! is `listening on ADDR` (`IP:PORT`, or `unix:PATH`), so a script can start the server
//! on port 0 and read the port.
//!
//! Stopping: a client sends the `Shutdown` control request
//! (`RemoteClient::shutdown_server`), or the process gets SIGINT or SIGTERM; the server
//! closes every connection (their contexts are run down), writes the report (config
//! `report` or `CERTADM_EMU_REPORT`), drops the machines, which removes their temporary
//! roots, and exits 0. The CA files are consistent on disk after every call, so even a
//! SIGKILL loses nothing acknowledged on a machine with a named `root` (a SIGKILL leaves
//! temporary roots behind: they are in the temporary directory, named `certadm-emu-*`).
//!
//! Limits: `--idle-timeout SECONDS` (default 300, 0 = never) closes an authenticated
//! connection that sends nothing for that long; the other limits are those of
//! `certadm_emu::remote::server::Limits` (`docs/SECURITY.md`). At start the server raises
//! its soft limit of open files to the hard limit, so that the connection budgets are
//! not cut short by the usual soft limit of 1024 descriptors.

use certadm_emu::config::Config;
use certadm_emu::remote::server::{Limits, Server, ServerOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in force
/// (`None` if unlimited or unknown).
fn raise_open_files() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        let raised = rustix::process::Rlimit {
            current: l.maximum,
            maximum: l.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return l.maximum;
        }
    }
    l.current
}

/// Runs the server until a `Shutdown` request.
///
/// `listen` is a TCP address (default `127.0.0.1:0`); `unix` a socket path. The secret
/// defaults to `CERTADM_EMU_SECRET` (prefer it: a command-line argument is visible to
/// every user of the machine). A non-loopback address needs a secret.
pub fn run(
    config: Option<PathBuf>,
    listen: Option<String>,
    unix: Option<PathBuf>,
    secret: Option<String>,
    idle_timeout: Option<u64>,
) -> Result<(), String> {
    let addr = match (listen, unix) {
        (Some(_), Some(_)) => return Err("give --listen or --unix, not both".into()),
        (Some(l), None) => l,
        (None, Some(p)) => format!("unix:{}", p.display()),
        (None, None) => "127.0.0.1:0".into(),
    };
    let secret = secret.or_else(|| {
        std::env::var("CERTADM_EMU_SECRET")
            .ok()
            .filter(|s| !s.is_empty())
    });
    let cfg = match &config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(Config::from_json(&text).map_err(|e| format!("{}: {e}", p.display()))?)
        }
        None => None,
    };
    let report = certadm_emu::config::report_path(cfg.as_ref());
    if let Some(p) = &report {
        certadm_emu::config::check_report_path(p)?;
    }
    if let Some(c) = &cfg {
        c.install_trace()?;
    }
    // `CERTADM_EMU_CONFIG` in the server's own environment defines machines of this
    // process too (as in any process using the emulator); its report is written below.
    certadm_emu::config::ensure_loaded();
    let mut limits = Limits::default();
    if let Some(s) = idle_timeout {
        limits.idle_timeout = (s > 0).then(|| Duration::from_secs(s));
    }
    // Each connection holds two descriptors (its stream and the server's clone).
    let want = 2 * (limits.max_connections + limits.max_pending) as u64 + 64;
    match raise_open_files() {
        Some(n) if n < want => eprintln!(
            "certadm-emu serve: warning: at most {n} open files (ulimit -n): fewer than the {want} that {} connections and {} handshakes at once need",
            limits.max_connections, limits.max_pending
        ),
        _ => {}
    }
    let server = Server::bind_with(
        &addr,
        ServerOptions {
            secret,
            config: cfg,
            quiet: false,
        },
        limits,
    )
    .map_err(|e| format!("{addr}: {e}"))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", server.local_addr()).map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    for m in server.machines() {
        eprintln!("certadm-emu serve: machine {m}");
    }
    let stop = server.shutdown_handle();
    ctrlc::set_handler(move || stop.shutdown())
        .map_err(|e| format!("installing the SIGINT/SIGTERM handler: {e}"))?;
    server
        .run()
        .map_err(|e| format!("serving {}: {e}", server.local_addr()))?;
    let written = match report {
        Some(p) => std::fs::write(&p, server.reports().to_json_pretty())
            .map_err(|e| format!("writing report {}: {e}", p.display())),
        None => Ok(()),
    };
    // The machines go with the server, and with them their temporary roots. (The signal
    // handler holds only a weak handle: it does not keep them alive.)
    drop(server);
    written?;
    // The machines of `CERTADM_EMU_CONFIG`, if this process had one: its own report.
    certadm_emu::config::finish();
    eprintln!("certadm-emu serve: stopped");
    Ok(())
}

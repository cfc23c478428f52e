//! `certadm-emu`: the command-line tool.
//!
//! * `certadm-emu demo [--out DIR] [--edb-size SIZE]`: back up, restore and verify the
//!   embedded default CA through the Certadm ABI.
//! * `certadm-emu restore DIR`: restore a backup directory written by `demo` into a fresh
//!   emulated CA and verify it.
//! * `certadm-emu lint TRACE`: the conformance report of a call trace.
//! * `certadm-emu replay TRACE`: re-issue a recorded transcript against an emulated CA
//!   built from it and report every divergence.
//! * `certadm-emu explore --config CFG -- CMD`: fail at every step for a native client.
//! * `certadm-emu serve [--config CFG] [--listen ADDR | --unix PATH] [--idle-timeout S]`: serve emulated CAs
//!   to other processes (`docs/PROTOCOL.md`) until a client sends `Shutdown`.
//! * `certadm-emu bench`: speed and memory figures, each as a ratio to a baseline
//!   measured in the same run.

#![forbid(unsafe_code)]

mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "certadm-emu",
    version,
    about = "An emulated Windows CA and its Certadm.dll backup/restore API"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Full backup, incremental backup, wipe, restore and verify the embedded default CA.
    Demo {
        /// Backup directory (default: a temporary directory, removed afterwards).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Size of the CA's virtual .edb, e.g. 64M, 1G (default: the real content only).
        #[arg(long, value_parser = cli::parse_size)]
        edb_size: Option<u64>,
        /// Certificates in the database at install time.
        #[arg(long, default_value_t = 1000)]
        records: u32,
        /// Write the call trace (JSON lines) to this file.
        #[arg(long)]
        trace: Option<PathBuf>,
    },
    /// Check a call trace (JSON lines from CERTADM_EMU_TRACE or --trace) against the protocol contract.
    Lint {
        /// The trace file.
        trace: PathBuf,
    },
    /// Re-issue a recorded transcript (the recording certadm.dll, or CERTADM_EMU_TRACE) against an emulated CA built from it, and report every divergence.
    Replay(cli::replay::ReplayArgs),
    /// Fail at every step: run a native client once per certbcli call with that call failing.
    Explore {
        /// The CERTADM_EMU_CONFIG file defining the machine the client talks to.
        #[arg(long)]
        config: PathBuf,
        /// The HRESULT to inject (default: the realistic failure of each function).
        #[arg(long)]
        hr: Option<String>,
        /// Run the client against a server (CERTADM_EMU_SERVER) instead of in process:
        /// for clients that forward, such as Windows programs with the PE certadm.dll.
        #[arg(long)]
        server: bool,
        /// The client command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Restore a backup directory written by `demo` into a fresh emulated CA and verify it.
    Restore {
        /// The full backup directory (holding DataBase\certbkxp.dat); incremental-* subfolders follow it.
        dir: PathBuf,
    },
    /// Serve emulated CAs to other processes (docs/PROTOCOL.md) until a client sends Shutdown.
    Serve {
        /// Machines to create at start (the CERTADM_EMU_CONFIG format).
        #[arg(long)]
        config: Option<PathBuf>,
        /// TCP address to listen on (default 127.0.0.1:0: a free port, printed on stdout).
        #[arg(long, conflicts_with = "unix")]
        listen: Option<String>,
        /// Listen on this Unix socket instead of TCP.
        #[arg(long)]
        unix: Option<PathBuf>,
        /// Shared secret clients must present (default: $CERTADM_EMU_SECRET); required to listen on a non-loopback address.
        #[arg(long)]
        secret: Option<String>,
        /// Close an authenticated connection that sends nothing for this many seconds, and
        /// run its contexts down as at a disconnect (default 300; 0 = never).
        #[arg(long, value_name = "SECONDS")]
        idle_timeout: Option<u64>,
    },
    /// Measure speed and memory as ratios against baselines run on this machine.
    Bench {
        /// Smaller sizes (for a quick look).
        #[arg(long)]
        quick: bool,
        /// Run only this figure (1 to 13; repeat for several; 5 to 7, 8 and 9, 10 and 13,
        /// 11 and 12 run together).
        #[arg(long = "figure", value_name = "N")]
        figures: Vec<u32>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The commands that build their own CA run it, and every certbcli call, in this
    // process: with CERTADM_EMU_SERVER set (as a shell that talks to a server has it),
    // their calls would otherwise reach the server's machine of the same name.
    let own_ca = match &args.command {
        Command::Demo { .. } => Some("demo"),
        Command::Restore { .. } => Some("restore"),
        Command::Bench { .. } => Some("bench"),
        Command::Serve { .. } => Some("serve"),
        Command::Replay(_) => Some("replay"),
        Command::Lint { .. } | Command::Explore { .. } => None,
    };
    if let Some(cmd) = own_ca {
        if let Some(addr) = certadm_emu::abi::forward::run_in_process() {
            eprintln!(
                "certadm-emu {cmd}: CERTADM_EMU_SERVER={addr} is ignored: this command builds its own CA and runs it in this process"
            );
        }
    }
    let result = match args.command {
        Command::Demo {
            out,
            edb_size,
            records,
            trace,
        } => cli::demo::run(out, edb_size, records, trace),
        Command::Lint { trace } => cli::tools::lint(&trace),
        Command::Replay(args) => cli::replay::run(args),
        Command::Explore {
            config,
            hr,
            server,
            command,
        } => cli::tools::explore(&config, hr, server, &command),
        Command::Restore { dir } => cli::demo::restore(&dir),
        Command::Serve {
            config,
            listen,
            unix,
            secret,
            idle_timeout,
        } => cli::serve::run(config, listen, unix, secret, idle_timeout),
        Command::Bench { quick, figures } => cli::bench::run(quick, &figures),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certadm-emu: {e}");
            ExitCode::FAILURE
        }
    }
}

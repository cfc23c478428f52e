//! `certadm-emu`: the command-line tool.
//!
//! * `certadm-emu demo [--out DIR] [--edb-size SIZE]`: back up, restore and verify the
//!   embedded default CA through the Certadm ABI.
//! * `certadm-emu restore DIR`: restore a backup directory written by `demo` into a fresh
//!   emulated CA and verify it.
//! * `certadm-emu bench`: speed and memory figures, each as a ratio to a baseline
//!   measured in the same run.

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
    },
    /// Restore a backup directory written by `demo` into a fresh emulated CA and verify it.
    Restore {
        /// The full backup directory (holding DataBase\certbkxp.dat); incremental-* subfolders follow it.
        dir: PathBuf,
    },
    /// Measure speed and memory as ratios against baselines run on this machine.
    Bench {
        /// Smaller sizes (for a quick look).
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Demo {
            out,
            edb_size,
            records,
        } => cli::demo::run(out, edb_size, records),
        Command::Restore { dir } => cli::demo::restore(&dir),
        Command::Bench { quick } => cli::bench::run(quick),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certadm-emu: {e}");
            ExitCode::FAILURE
        }
    }
}

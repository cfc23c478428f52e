//! The pure-Rust integration tests, one crate (one link of the library) with a module per
//! area. No C compiler, valgrind, Python or Wine: `cargo test --test it` is the fast inner
//! loop (see CONTRIBUTING.md, "Running the tests"); the tests that run those tools are the
//! crate `tests/tools`.

#[path = "../common/mod.rs"]
mod common;

mod abi_bad_input;
mod backup_rules;
mod backup_scenario;
mod codes;
mod hostile;
mod hot_path;
mod persistence;
mod prop_backup_model;
mod prop_protocol;
mod prop_restore;
mod recorder_files;
mod remote;
mod replay;
mod restore_rules;
mod scale;
mod server_limits;
mod smoke;
mod texts;
mod tooling;
mod windows_sys;

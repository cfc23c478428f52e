//! Subcommands of the `certadm-emu` binary.

pub mod bench;
pub mod demo;
pub mod replay;
pub mod serve;
pub mod tools;

pub use certadm_emu::config::parse_size;

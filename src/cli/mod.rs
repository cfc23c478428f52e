//! Subcommands of the `certadm-emu` binary.

pub mod bench;
pub mod demo;
pub mod serve;
pub mod tools;

pub use certadm_emu::config::parse_size;

/// Formats a byte count with a binary unit.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

//! `cargo +nightly fuzz run config`: see `certadm_emu::remote::fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certadm_emu::remote::fuzz::config(data));

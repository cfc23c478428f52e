//! `cargo +nightly fuzz run frame`: see `certadm_emu::remote::fuzz::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certadm_emu::remote::fuzz::frame(data));

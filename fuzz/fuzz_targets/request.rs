//! `cargo +nightly fuzz run request`: see `certadm_emu::remote::fuzz::request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certadm_emu::remote::fuzz::request(data));

//! `cargo +nightly fuzz run response`: see `certadm_emu::remote::fuzz::response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certadm_emu::remote::fuzz::response(data));

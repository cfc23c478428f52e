//! `cargo +nightly fuzz run hello`: see `certadm_emu::remote::fuzz::hello`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certadm_emu::remote::fuzz::hello(data));

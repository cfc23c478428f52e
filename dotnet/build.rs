//! Link arguments of `libcertadm.so`, the .NET entry set.
//!
//! The library links the main crate, so it re-exports the main crate's `#[no_mangle]`
//! functions: the 18 certbcli names and the `certemu_*` API. One of those,
//! `CertSrvRestoreRegisterThroughFile`, has no `W` form, takes UTF-16 in the main crate
//! (as in `certbcli.h`), and must take UTF-8 here (a .NET `CharSet.Auto` declaration looks
//! up that very name and passes UTF-8 on Unix). This crate defines its own, so the symbol
//! is defined twice; `--allow-multiple-definition` makes the linker keep the first
//! definition, which is this crate's (its objects come before the rlibs on the command
//! line). `tests/exports.rs` checks that the exported function is the UTF-8 one.
//!
//! No other symbol is defined twice: the crate's other exports have names the main crate
//! does not export (the checked-in list `include/certadm_dotnet.symbols` and the test
//! comparing it with `nm -D` would show a change).

//!
//! The argument goes to every target of this crate, not only the cdylib: `cargo test --lib`
//! over the workspace builds this crate's unit-test executable even with `test = false`,
//! and that executable holds both definitions too.

fn main() {
    println!("cargo:rustc-link-arg=-Wl,--allow-multiple-definition");
    println!("cargo:rerun-if-changed=build.rs");
}

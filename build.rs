//! Sets the soname of `libcertadm_emu.so` from the crate version (docs/ABI.md):
//! `libcertadm_emu.so.MAJOR` for a 1.0 or later version, `libcertadm_emu.so.0.MINOR` for a
//! 0.x version (where the minor is the breaking component, as in Cargo's semver rules and
//! cargo-c). The name is also passed to the crate's code and tests as `CERTADM_EMU_SONAME`.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("set by cargo");
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").expect("set by cargo");
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    let soname = format!("libcertadm_emu.so.{abi}");
    // ELF targets only: other linkers have their own notion (install_name, none on PE).
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" | "illumos"
    ) {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
    println!("cargo:rustc-env=CERTADM_EMU_SONAME={soname}");
    println!("cargo:rerun-if-changed=build.rs");
}

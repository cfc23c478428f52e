//! The .NET entry set (`dotnet/`, `libcertadm.so`) for the tests that install or load it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The file names of the .NET library: `lib<LIBNAME>.so` and `lib<ALIAS>.so` of the
/// `certadm-emu-dotnet` line of `packaging/extra-cdylibs` (what the install step lays out
/// and the NuGet package holds), the built file's name first.
pub fn probe_names() -> Vec<String> {
    let text = std::fs::read_to_string(manifest_dir().join("packaging/extra-cdylibs"))
        .expect("packaging/extra-cdylibs");
    let line = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"certadm-emu-dotnet"))
        .expect("a certadm-emu-dotnet line in packaging/extra-cdylibs");
    line[1..].iter().map(|n| format!("lib{n}.so")).collect()
}

/// `libcertadm.so` of this build: `target/<profile>/libcertadm.so` (or `deps/`), which
/// `cargo test --workspace` and `cargo build` make; if it is missing or older than the
/// main crate's newest rlib or the sources of `dotnet/`, a fresh one built with cargo into
/// a directory of its own. `CERTADM_EMU_DOTNET_LIB` names another library instead.
pub fn library() -> PathBuf {
    if let Some(p) = std::env::var_os("CERTADM_EMU_DOTNET_LIB") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "CERTADM_EMU_DOTNET_LIB={} is not a file",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("the test executable has a directory");
    let profile = deps.parent().expect("target/<profile>");
    let mtime = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(deps)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("libcertadm_emu-") && n.ends_with(".rlib")
        })
        .collect();
    let dotnet = manifest_dir().join("dotnet");
    inputs.extend(["Cargo.toml", "build.rs", "src/lib.rs"].map(|f| dotnet.join(f)));
    let newest_input = inputs.iter().filter_map(|p| mtime(p)).max();
    let candidates = [profile.join("libcertadm.so"), deps.join("libcertadm.so")];
    if let Some(p) = candidates
        .iter()
        .find(|p| p.is_file() && mtime(p) >= newest_input)
    {
        return p.clone();
    }
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dotnet-build");
    eprintln!(
        "note: no current libcertadm.so in {}; building it into {}",
        profile.display(),
        target.display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "certadm-emu-dotnet", "--lib", "--target-dir"])
        .arg(&target)
        .current_dir(manifest_dir())
        .status()
        .expect("running cargo build -p certadm-emu-dotnet");
    assert!(status.success(), "cargo build -p certadm-emu-dotnet failed");
    let p = target.join("debug").join("libcertadm.so");
    assert!(p.is_file(), "{} was not built", p.display());
    p
}

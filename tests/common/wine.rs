//! What the Wine tests share: finding MinGW-w64 and Wine (through `tool`, so a missing
//! one fails when CI requires it), building Windows binaries, checking a DLL's exports, running programs under Wine
//! with their output in files, and a `certadm-emu serve` that shuts down when dropped.

use super::tool::require_tool;
use certadm_emu::remote::client::RemoteClient;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long one Windows program (or the compiler) may run.
pub const TIMEOUT: Duration = Duration::from_secs(180);

/// The exports of certadm.dll, sorted: the functions of the call table.
pub fn certadm_exports() -> Vec<&'static str> {
    let mut names: Vec<&str> = certadm_emu::core::Call::ALL
        .iter()
        .map(|c| c.name())
        .collect();
    names.sort_unstable();
    names
}

/// MinGW's gcc and Wine (`.ci/tools`: `x86_64-w64-mingw32-gcc`, `wine64`), or `None`
/// after a note for the first one missing ([`require_tool`], which panics under
/// `CERTADM_EMU_REQUIRE_TOOLS=1`).
pub fn mingw_and_wine() -> Option<(PathBuf, PathBuf)> {
    let gcc = require_tool("x86_64-w64-mingw32-gcc")?;
    let wine = require_tool("wine64")?;
    Some((gcc, wine))
}

/// The Wine prefix: `$CARGO_TARGET_TMPDIR/wine-prefix` or `CERTEMU_WINEPREFIX`.
pub fn prefix() -> PathBuf {
    let p = std::env::var_os("CERTEMU_WINEPREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wine-prefix"));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// The Wine (DOS) name of a host path: `Z:` + the path with backslashes.
pub fn wine_path(p: &Path) -> String {
    let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    format!("Z:{}", abs.display()).replace('/', "\\")
}

/// Runs `cmd` with its output in files `dir/tag.stdout` and `dir/tag.stderr` (Wine's
/// wineserver would keep pipes open); panics after [`TIMEOUT`].
pub fn run(mut cmd: Command, dir: &Path, tag: &str) -> (ExitStatus, String, String, Duration) {
    let out_p = dir.join(format!("{tag}.stdout"));
    let err_p = dir.join(format!("{tag}.stderr"));
    let start = Instant::now();
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_p).unwrap())
        .stderr(File::create(&err_p).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    (status, read(&out_p), read(&err_p), start.elapsed())
}

/// The flags of every MinGW build of the tests: C11, optimised, every warning an error.
const STRICT: &[&str] = &["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"];

/// Runs MinGW's gcc with [`STRICT`] and `args` from the repository root; panics if it
/// fails.
pub fn compile(gcc: &Path, args: &[&str], dir: &Path, tag: &str) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(gcc);
    cmd.args(STRICT).args(args).current_dir(manifest);
    let (status, out, err, _) = run(cmd, dir, tag);
    assert!(status.success(), "{tag} failed:\n{out}{err}");
}

/// The names a PE DLL exports (MinGW's objdump), sorted; `None` after [`require_tool`]'s
/// note.
pub fn exports(dll: &Path, dir: &Path) -> Option<Vec<String>> {
    let objdump = require_tool("x86_64-w64-mingw32-objdump")?;
    let mut cmd = Command::new(objdump);
    cmd.arg("-p").arg(dll);
    let (status, out, err, _) = run(cmd, dir, "objdump");
    assert!(status.success(), "objdump failed: {err}");
    let mut names: Vec<String> = out
        .lines()
        .skip_while(|l| !l.contains("[Ordinal/Name Pointer] Table"))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with('['))
        .filter_map(|l| l.split(']').nth(1).map(|s| s.trim().to_string()))
        .collect();
    names.sort_unstable();
    Some(names)
}

/// The DLL exports exactly the 18 certbcli names (checked with MinGW's objdump).
pub fn check_exports(dll: &Path, dir: &Path) {
    if let Some(names) = exports(dll, dir) {
        assert_eq!(names, certadm_exports(), "the exports of {}", dll.display());
    }
}

/// A `certadm-emu serve` process, shut down (then killed if need be) when dropped.
pub struct Served {
    child: Option<Child>,
    /// `host:port`, as the server printed it.
    pub addr: String,
}

impl Served {
    /// Serves the machines of `config`; `configure` may add environment (a trace file).
    pub fn start(config: &Path, configure: impl FnOnce(&mut Command)) -> Served {
        let (child, addr) = super::spawn_serve(|cmd| {
            cmd.arg("--config").arg(config);
            configure(cmd);
        });
        Served {
            child: Some(child),
            addr,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(c) = RemoteClient::connect(&self.addr, None) {
                let _ = c.shutdown_server();
            }
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs Windows programs with Wine against a server.
pub struct Wine {
    /// The Wine loader.
    pub exe: PathBuf,
    /// The Wine prefix.
    pub prefix: PathBuf,
    /// The client program (client.exe).
    pub client: PathBuf,
    /// Working directory; the output files go here.
    pub dir: PathBuf,
    /// `CERTADM_EMU_SERVER`.
    pub server: String,
}

impl Wine {
    /// Runs client.exe with `args`; returns (success, stdout, stderr).
    pub fn client(&self, tag: &str, args: &[&str]) -> (bool, String, String) {
        self.run_exe(&self.client, tag, args)
    }

    /// Runs a Windows program with `args`.
    pub fn run_exe(&self, program: &Path, tag: &str, args: &[&str]) -> (bool, String, String) {
        let (status, out, err) = self.run_exe_env(program, tag, args, &[]);
        (status.success(), out, err)
    }

    /// Runs a Windows program with `args` and extra environment; returns its exit status
    /// and output.
    pub fn run_exe_env(
        &self,
        program: &Path,
        tag: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> (ExitStatus, String, String) {
        let name = program.file_name().unwrap().to_string_lossy().into_owned();
        let mut cmd = self.command();
        cmd.arg(program).args(args).env("CERTADM_EMU_LOG", "1");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let (status, out, err, took) = run(cmd, &self.dir, tag);
        eprintln!(
            "--- {name} {} ({:.1?}): {status}\n{out}{err}",
            args.join(" "),
            took
        );
        (status, out, err)
    }

    /// The Wine loader with the prefix and a clean environment (no display, no
    /// certadm-emu or recorder variables but `CERTADM_EMU_SERVER`).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.current_dir(&self.dir)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env("CERTADM_EMU_SERVER", &self.server)
            .env_remove("CERTADM_EMU_SECRET")
            .env_remove("CERTADM_EMU_PATH_MAP")
            .env_remove("CERTADM_RECORD")
            .env_remove("CERTADM_RECORD_REAL")
            .env_remove("CERTADM_RECORD_ANONYMISE")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY");
        cmd
    }
}

/// The project's PE programs, built side by side (LoadLibrary finds the DLL there).
pub struct Project {
    /// `certadm.dll` (`windows/certadm`), which forwards to `certadm-emu serve`.
    pub dll: PathBuf,
    /// `client.exe` (`windows/client`): the unmodified backup and restore client.
    pub client: PathBuf,
    /// `dll_checks.exe` (`windows/tests`): checks of the DLL, linked through
    /// `include/certbcli.h` (dllimport).
    pub checks: PathBuf,
}

/// Builds [`Project`] into `out` with MinGW's `gcc` (logs in `dir`).
pub fn build_project(gcc: &Path, out: &Path, dir: &Path) -> Project {
    let p = Project {
        dll: out.join("certadm.dll"),
        client: out.join("client.exe"),
        checks: out.join("dll_checks.exe"),
    };
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (dll, client, checks) = (s(&p.dll), s(&p.client), s(&p.checks));
    compile(
        gcc,
        &[
            "-shared",
            "-o",
            &dll,
            "windows/certadm/certadm.c",
            "windows/certadm/certadm.def",
            "-lws2_32",
        ],
        dir,
        "build-dll",
    );
    let unicode = ["-municode", "-I", "include", "-o"];
    compile(
        gcc,
        &[&unicode[..], &[&client, "windows/client/client.c"]].concat(),
        dir,
        "build-client",
    );
    compile(
        gcc,
        &[&unicode[..], &[&checks, "windows/tests/dll_checks.c", &dll]].concat(),
        dir,
        "build-checks",
    );
    p
}

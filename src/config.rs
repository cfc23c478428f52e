//! Configuration without code: an unmodified client binary (C, C++, Python, windows-sys)
//! that knows nothing of the control API is tested by pointing `CERTADM_EMU_CONFIG` at a
//! JSON file. The machines it defines are created on the first certbcli call of the
//! process (the ABI calls [`ensure_loaded`]; so does `certadm-emu serve`), live until the
//! process exits, and at exit ([`finish`], which the ABI registers with the C runtime) the
//! report file ([`ReportFile`]) is written where `report` says.
//!
//! ```json
//! {
//!   "machines": [{
//!     "name": "CA01", "dns": "ca01.contoso.test",
//!     "root": "/tmp/ca01",
//!     "ca": {"name": "Contoso Issuing CA", "seed": 42, "records": 1000,
//!            "edb_size": "1G", "log_capacity": 64, "interface_flags": 1601},
//!     "identity": {"backup_privilege": true, "restore_privilege": true,
//!                  "local_admin": true, "remote": false},
//!     "faults": {"seed": 1, "faults": [{"kind": "fail", "function": "CertSrvBackupRead",
//!                                        "nth": 3, "hr": "RPC_S_CALL_FAILED"}]},
//!     "strict": false
//!   }],
//!   "report": "/tmp/certadm-report.json",
//!   "trace": "/tmp/certadm-trace.jsonl"
//! }
//! ```
//!
//! Every field but `machines[].name` is optional. `"ca": null` makes a machine with no CA.
//! `CERTADM_EMU_REPORT` and `CERTADM_EMU_TRACE` override `report` and `trace`.
#![forbid(unsafe_code)]

use crate::api::faults::FaultSchedule;
use crate::ca::CaConfig;
use crate::control::{CaBuilder, EmulatedCa, ReportFile};
use crate::machine::Identity;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Once;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Machines to create.
    #[serde(default)]
    pub machines: Vec<MachineConfig>,
    /// Where to write the report at exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<PathBuf>,
    /// Where to append the call trace (JSON lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<PathBuf>,
}

/// One machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// NetBIOS name: the server name clients pass.
    pub name: String,
    /// DNS name (default `<name>.emu.test`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// Host directory of the disk (default: a temporary directory removed at exit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// The CA; `null` for a machine without one; missing fields keep
    /// [`CaConfig::default`]'s.
    #[serde(default = "default_ca")]
    pub ca: Option<CaConfig>,
    /// The caller identity; missing fields keep [`Identity::default`]'s (a local
    /// administrator holding both privileges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// A fault schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultSchedule>,
    /// Strict conformance: violations are printed to stderr at exit.
    #[serde(default)]
    pub strict: bool,
}

fn default_ca() -> Option<CaConfig> {
    Some(CaConfig::default())
}

pub use crate::core::size::parse_size;

impl Config {
    /// Parses a configuration: a JSON object (`[]`, `null` or a number is refused, although
    /// serde would read an array as the fields in order).
    pub fn from_json(text: &str) -> Result<Config, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if !v.is_object() {
            return Err(format!(
                "a configuration is a JSON object such as {{\"machines\": [{{\"name\": \"CA01\"}}]}}, not {}",
                match v {
                    serde_json::Value::Array(_) => "an array",
                    serde_json::Value::Null => "null",
                    serde_json::Value::Bool(_) => "a boolean",
                    serde_json::Value::Number(_) => "a number",
                    _ => "a string",
                }
            ));
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    /// Checks the whole configuration, creating nothing: every machine
    /// ([`MachineConfig::validate`]), names used twice (in the file, or by a machine of
    /// this process already), and the directory of the report file.
    pub fn validate(&self) -> Result<(), String> {
        check_unique(&self.machines).map_err(|e| e.to_string())?;
        for m in &self.machines {
            m.validate()?;
        }
        if let Some(p) = &self.report {
            check_report_path(p)?;
        }
        Ok(())
    }

    /// Creates the machines, after checking all of them ([`Config::validate`]): an
    /// invalid machine anywhere in the file creates none.
    pub fn build(&self) -> Result<Vec<EmulatedCa>, String> {
        self.validate()?;
        self.machines.iter().map(|m| m.build()).collect()
    }

    /// Copies every traced call to the configuration's `trace` file (appended), unless
    /// `CERTADM_EMU_TRACE` is set: the variable wins.
    pub fn install_trace(&self) -> Result<(), String> {
        if let (Some(t), None) = (&self.trace, std::env::var_os("CERTADM_EMU_TRACE")) {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(t)
                .map_err(|e| format!("opening trace {}: {e}", t.display()))?;
            crate::api::trace::set_sink(Some(Box::new(f)));
        }
        Ok(())
    }
}

/// Refuses names that two machines of `machines` share (NetBIOS or DNS, case-insensitive),
/// or that a machine of this process has already (`ERROR_ALREADY_EXISTS`).
pub fn check_unique(machines: &[MachineConfig]) -> crate::core::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for m in machines {
        for n in [Some(&m.name), m.dns.as_ref()].into_iter().flatten() {
            if crate::api::registry::by_name(n).is_some() || !seen.insert(n.to_lowercase()) {
                return Err(crate::core::Error::DuplicateServerName { name: n.clone() });
            }
        }
    }
    Ok(())
}

/// Checks, at start, that a report can be written at `p` later: its directory exists.
/// (Without this a mistyped directory is reported only at exit, after the whole run.)
pub fn check_report_path(p: &std::path::Path) -> Result<(), String> {
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "report {}: the directory {} does not exist; create it or name another report file",
            p.display(),
            dir.display()
        ))
    }
}

/// Where the report of a configuration goes: `CERTADM_EMU_REPORT` if set, else the
/// configuration's `report`.
pub fn report_path(config: Option<&Config>) -> Option<PathBuf> {
    std::env::var_os("CERTADM_EMU_REPORT")
        .map(PathBuf::from)
        .or_else(|| config.and_then(|c| c.report.clone()))
}

impl MachineConfig {
    /// Checks this machine as [`CaBuilder::validate`] does (names, limits, directories),
    /// creating nothing.
    pub fn validate(&self) -> Result<(), String> {
        self.try_validate()
            .map_err(|e| format!("machine {:?}: {e}", self.name))
    }

    /// [`MachineConfig::validate`] keeping the error and its HRESULT (`ERROR_INVALID_NAME`
    /// for a name, `E_INVALIDARG` for a limit or a bad `edb_size`, the path codes).
    pub fn try_validate(&self) -> Result<(), crate::core::Error> {
        self.builder()
            .map_err(|e| crate::core::Error::invalid_arg("CreateMachine", e))?
            .validate()
    }

    /// Creates this machine.
    pub fn build(&self) -> Result<EmulatedCa, String> {
        self.builder()?
            .build()
            .map_err(|e| format!("machine {:?}: {e}", self.name))
    }

    /// Creates this machine; a failure keeps the error (and its HRESULT) of the build, a
    /// bad `edb_size` is `E_INVALIDARG`.
    pub fn try_build(&self) -> Result<EmulatedCa, crate::core::Error> {
        self.builder()
            .map_err(|e| crate::core::Error::invalid_arg("CreateMachine", e))?
            .build()
    }

    fn builder(&self) -> Result<CaBuilder, String> {
        // Strictness is applied at exit (a panic in an exit handler helps nobody).
        let mut b = CaBuilder::default().server_name(&self.name);
        if let Some(d) = &self.dns {
            b = b.dns_name(d);
        }
        if let Some(r) = &self.root {
            b = b.root_dir(r);
        }
        if let Some(id) = self.identity {
            b = b.identity(id);
        }
        match &self.ca {
            None => b = b.without_ca(),
            Some(c) => b = b.config(c.clone()),
        }
        Ok(b.faults(self.faults.clone().unwrap_or_default()))
    }
}

struct Loaded {
    machines: Vec<EmulatedCa>,
    strict: Vec<bool>,
    report: Option<PathBuf>,
}

static INIT: Once = Once::new();
static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);

/// Loads `CERTADM_EMU_CONFIG` once per process. True only for the call that loaded a
/// configuration: its caller then arranges for [`finish`] to run at exit. A file that does
/// not load is reported on stderr, and a server name no machine has then says why
/// (`api::route::set_unknown_server_hint`).
pub fn ensure_loaded() -> bool {
    let mut loaded = false;
    INIT.call_once(|| {
        let Some(path) = std::env::var_os("CERTADM_EMU_CONFIG") else {
            return;
        };
        let result = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", PathBuf::from(&path).display()))
            .and_then(|t| Config::from_json(&t))
            .and_then(|c| {
                c.validate()?;
                let report = report_path(Some(&c));
                if let Some(p) = &report {
                    check_report_path(p)?;
                }
                c.install_trace()?;
                let machines = c.build()?;
                let strict = c.machines.iter().map(|m| m.strict).collect();
                Ok(Loaded {
                    machines,
                    strict,
                    report,
                })
            });
        match result {
            Ok(l) => {
                *LOADED.lock() = Some(l);
                loaded = true;
            }
            Err(e) => {
                eprintln!("certadm-emu: CERTADM_EMU_CONFIG: {e}");
                crate::api::route::set_unknown_server_hint(Some(format!(
                    "no emulated machine has this name; CERTADM_EMU_CONFIG did not load: {e}"
                )));
            }
        }
    });
    loaded
}

/// Writes the report and releases the machines (run at process exit).
pub fn finish() {
    let Some(loaded) = LOADED.lock().take() else {
        return;
    };
    let file = ReportFile {
        machines: loaded
            .machines
            .iter()
            .map(EmulatedCa::machine_report)
            .collect(),
    };
    for ((ca, rep), strict) in loaded
        .machines
        .iter()
        .zip(&file.machines)
        .zip(&loaded.strict)
    {
        if *strict && !rep.clean {
            eprintln!(
                "certadm-emu: machine {}:\n{}",
                ca.server_name(),
                ca.report()
            );
            for l in ca.leftovers() {
                eprintln!("  leftover: {l}");
            }
        }
    }
    if let Some(p) = &loaded.report {
        if let Err(e) = std::fs::write(p, file.to_json_pretty()) {
            eprintln!("certadm-emu: writing report {}: {e}", p.display());
        }
    }
    drop(loaded);
}

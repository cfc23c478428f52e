//! The emulated host: its names, its disk (a host directory) and the caller's identity.

#![forbid(unsafe_code)]

pub mod fs;
pub mod names;
mod path;

use crate::core::{Error, Result};
pub use fs::Beneath;
pub use path::WinPath;
use std::path::{Path, PathBuf};

/// Who is calling: privileges and whether the call comes from another machine.
///
/// In a configuration file (`identity` of a machine) a missing field keeps its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Identity {
    /// `SeBackupPrivilege` (the CA Operator role for backup methods, spec §6.2 row 12).
    pub backup_privilege: bool,
    /// `SeRestorePrivilege` (`CertSrvRestorePrepareW`, `...RegisterThroughFile`).
    pub restore_privilege: bool,
    /// Member of the local Administrators group (`CertSrvRestoreRegisterW`).
    pub local_admin: bool,
    /// The caller is on another machine (blocked by `IF_NOREMOTEICERTADMINBACKUP`).
    pub remote: bool,
}

impl Default for Identity {
    /// A local administrator holding both privileges: how backup tools usually run on a CA.
    fn default() -> Self {
        Identity {
            backup_privilege: true,
            restore_privilege: true,
            local_admin: true,
            remote: false,
        }
    }
}

#[derive(Debug)]
enum Root {
    Temp(tempfile::TempDir),
    Dir(PathBuf),
}

/// An emulated Windows machine: NetBIOS and DNS names and a disk rooted in a host directory.
#[derive(Debug)]
pub struct Machine {
    netbios: String,
    dns: String,
    root: Root,
    /// The root held open: every operation beneath it starts here, not by opening the
    /// root's path again (the root is the configuration's choice and trusted).
    root_fd: std::os::fd::OwnedFd,
}

impl Machine {
    /// A machine whose disk is `root`, or a temporary directory removed with the machine.
    /// The names are checked first ([`names`]): a bad one is `ERROR_INVALID_NAME`, and
    /// nothing is created.
    pub fn new(netbios: &str, dns: &str, root: Option<PathBuf>) -> Result<Machine> {
        Machine::check_names(netbios, dns)?;
        let root = match root {
            Some(dir) => {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Error::io(format!("creating machine root {}", dir.display()), e)
                })?;
                Root::Dir(dir)
            }
            None => Root::Temp(
                tempfile::Builder::new()
                    .prefix("certadm-emu-")
                    .tempdir()
                    .map_err(|e| Error::io("creating a temporary machine root", e))?,
            ),
        };
        let root_fd = fs::open_root(match &root {
            Root::Dir(d) => d,
            Root::Temp(t) => t.path(),
        })?;
        Ok(Machine {
            netbios: netbios.to_string(),
            dns: dns.to_string(),
            root,
            root_fd,
        })
    }

    /// Checks a NetBIOS and a DNS name as [`Machine::new`] does, creating nothing.
    pub fn check_names(netbios: &str, dns: &str) -> Result<()> {
        // What the process registry has always refused with E_INVALIDARG keeps that code.
        for n in [netbios, dns] {
            if n.is_empty() || n.contains('\\') || n.contains('/') {
                return Err(Error::invalid_arg(
                    "register",
                    format!("{:?} is not a valid host name", n.to_lowercase()),
                ));
            }
        }
        names::check_netbios(netbios)?;
        names::check_dns(dns)
    }

    /// The file operations beneath this machine's root, which never follow a link.
    pub fn fs(&self) -> Beneath<'_> {
        Beneath::with_root_fd(self.root(), &self.root_fd)
    }

    /// The NetBIOS name.
    pub fn netbios(&self) -> &str {
        &self.netbios
    }

    /// The DNS name (used as the host part of UNC paths, as real CAs do).
    pub fn dns(&self) -> &str {
        &self.dns
    }

    /// The host directory that is this machine's disk.
    pub fn root(&self) -> &Path {
        match &self.root {
            Root::Temp(t) => t.path(),
            Root::Dir(d) => d,
        }
    }

    /// True if `host` names this machine (NetBIOS, DNS, `localhost`, case-insensitive).
    pub fn is_named(&self, host: &str) -> bool {
        host.eq_ignore_ascii_case(&self.netbios)
            || host.eq_ignore_ascii_case(&self.dns)
            || host.eq_ignore_ascii_case("localhost")
    }

    /// Parses a Windows path on this machine.
    pub fn parse_path(&self, p: &str) -> Result<WinPath> {
        WinPath::parse(p, |h| self.is_named(h))
    }

    /// The host path of a Windows path on this machine.
    pub fn host_path(&self, p: &str) -> Result<PathBuf> {
        Ok(self.parse_path(p)?.host_path(self.root()))
    }

    /// The host path of a parsed path.
    pub fn host_path_of(&self, p: &WinPath) -> PathBuf {
        p.host_path(self.root())
    }

    /// The UNC form `\\dns\C$\...` that list functions return.
    pub fn unc(&self, p: &WinPath) -> String {
        p.unc(&self.dns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_root_is_removed_with_the_machine() {
        let m = Machine::new("CA1", "ca1.contoso.test", None).unwrap();
        let root = m.root().to_path_buf();
        assert!(root.is_dir());
        let p = m.host_path(r"\\CA1\C$\Windows\x").unwrap();
        assert!(p.starts_with(&root));
        drop(m);
        assert!(!root.exists());
    }
}

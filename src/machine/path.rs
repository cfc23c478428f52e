//! Windows paths on the emulated machine: `C:\...` and `\\HOST\C$\...`,
//! case-insensitive, contained in the machine's root directory.
//!
//! | refused input | HRESULT |
//! |---|---|
//! | relative (`Windows\x`), drive-relative (`C:x`), empty, a component over 255 characters | `ERROR_BAD_PATHNAME` 0x800700A1 |
//! | `\\?\` and `\\.\` device paths, `CON`/`NUL`/`COM1`…, `file:stream` (alternate data stream), `<>"|?*` and control characters | `ERROR_INVALID_NAME` 0x8007007B |
//! | `\\OTHERHOST\...`, or a share that is not an administrative drive share (`X$`) | `ERROR_BAD_NETPATH` 0x80070035 |
//! | `..` that climbs above the drive root | `E_ACCESSDENIED` 0x80070005 |

use crate::core::{Error, PathRefusal, Result};
use std::path::{Path, PathBuf};

/// A parsed, normalised Windows path on one emulated machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WinPath {
    drive: char,
    parts: Vec<String>,
}

use super::names::DEVICE_NAMES;

fn refuse(kind: PathRefusal, path: &str, why: impl Into<String>) -> Error {
    Error::Path {
        kind,
        path: path.to_string(),
        why: why.into(),
    }
}

impl WinPath {
    /// Parses `input`; `is_local_host` says whether a UNC host name is this machine.
    pub fn parse(input: &str, is_local_host: impl Fn(&str) -> bool) -> Result<WinPath> {
        let units = input.encode_utf16().count() as u64;
        if !crate::core::limits::STRING_UNITS.contains(units) {
            return Err(refuse(
                PathRefusal::Malformed,
                &input.chars().take(64).collect::<String>(),
                format!(
                    "{units} characters; a path has at most {} (the Windows extended path limit)",
                    crate::core::limits::STRING_UNITS.max
                ),
            ));
        }
        let s = input.replace('/', "\\");
        if s.starts_with("\\\\?\\") || s.starts_with("\\\\.\\") {
            return Err(refuse(
                PathRefusal::InvalidName,
                input,
                "device and \\\\?\\ paths are not file paths on the emulated machine",
            ));
        }
        let (drive, rest) = if let Some(unc) = s.strip_prefix("\\\\") {
            let mut it = unc.splitn(3, '\\');
            let host = it.next().unwrap_or("");
            let share = it.next().unwrap_or("");
            let rest = it.next().unwrap_or("");
            if host.is_empty() || share.is_empty() {
                return Err(refuse(
                    PathRefusal::Malformed,
                    input,
                    "a UNC path needs \\\\HOST\\SHARE",
                ));
            }
            if !is_local_host(host) {
                return Err(refuse(
                    PathRefusal::OtherHost,
                    input,
                    format!("host {host:?} is not this emulated machine"),
                ));
            }
            let sb: Vec<char> = share.chars().collect();
            if sb.len() != 2 || !sb[0].is_ascii_alphabetic() || sb[1] != '$' {
                return Err(refuse(
                    PathRefusal::OtherHost,
                    input,
                    format!("share {share:?} does not exist; only administrative drive shares such as C$ are emulated"),
                ));
            }
            (sb[0].to_ascii_uppercase(), rest.to_string())
        } else {
            let b: Vec<char> = s.chars().take(3).collect();
            if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == ':' {
                if b.get(2) != Some(&'\\') {
                    return Err(refuse(
                        PathRefusal::Malformed,
                        input,
                        "drive-relative paths (C:x) are not accepted; give an absolute path",
                    ));
                }
                (b[0].to_ascii_uppercase(), s[3..].to_string())
            } else {
                return Err(refuse(
                    PathRefusal::Malformed,
                    input,
                    "relative paths are not accepted; give C:\\... or \\\\HOST\\C$\\...",
                ));
            }
        };
        let mut p = WinPath {
            drive,
            parts: Vec::new(),
        };
        for comp in rest.split('\\') {
            p.push_component(comp, input)?;
        }
        Ok(p)
    }

    fn push_component(&mut self, comp: &str, input: &str) -> Result<()> {
        match comp {
            "" | "." => return Ok(()),
            ".." => {
                if self.parts.pop().is_none() {
                    return Err(refuse(
                        PathRefusal::Escapes,
                        input,
                        format!("'..' climbs above {}:\\", self.drive),
                    ));
                }
                return Ok(());
            }
            _ => {}
        }
        if !crate::core::limits::PATH_COMPONENT.contains(comp.chars().count() as u64) {
            return Err(refuse(
                PathRefusal::Malformed,
                input,
                "a path component is longer than 255 characters",
            ));
        }
        if comp.contains(':') {
            return Err(refuse(
                PathRefusal::InvalidName,
                input,
                format!("{comp:?}: alternate data streams are not accepted"),
            ));
        }
        if let Some(c) = comp
            .chars()
            .find(|c| (*c as u32) < 0x20 || "<>\"|?*".contains(*c))
        {
            return Err(refuse(
                PathRefusal::InvalidName,
                input,
                format!("{comp:?} holds the forbidden character {c:?}"),
            ));
        }
        let stem = comp.split('.').next().unwrap_or("").trim_end();
        if DEVICE_NAMES.iter().any(|d| d.eq_ignore_ascii_case(stem)) {
            return Err(refuse(
                PathRefusal::InvalidName,
                input,
                format!("{comp:?} is a reserved device name"),
            ));
        }
        self.parts.push(comp.to_string());
        Ok(())
    }

    /// A child of this path (one or more components separated by `\`).
    pub fn join(&self, rel: &str) -> Result<WinPath> {
        let mut p = self.clone();
        for comp in rel.replace('/', "\\").split('\\') {
            p.push_component(comp, rel)?;
        }
        Ok(p)
    }

    /// The last component, if any.
    pub fn file_name(&self) -> Option<&str> {
        self.parts.last().map(|s| s.as_str())
    }

    /// The parent directory (the drive root stays the root).
    pub fn parent(&self) -> WinPath {
        let mut p = self.clone();
        p.parts.pop();
        p
    }

    /// The drive letter, upper case.
    pub fn drive(&self) -> char {
        self.drive
    }

    /// `C:\Windows\System32\CertLog\x.edb`.
    pub fn local(&self) -> String {
        let mut s = format!("{}:\\", self.drive);
        s.push_str(&self.parts.join("\\"));
        s
    }

    /// `\\host\C$\Windows\System32\CertLog\x.edb`.
    pub fn unc(&self, host: &str) -> String {
        let mut s = format!("\\\\{host}\\{}$", self.drive);
        for p in &self.parts {
            s.push('\\');
            s.push_str(p);
        }
        s
    }

    /// The host path under `root`: one folder per drive letter, names folded to lower case
    /// (Windows names are case-insensitive, the host file system is not).
    pub fn host_path(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        for part in self.host_parts() {
            p.push(part);
        }
        p
    }

    /// The host components under the root: the drive folder, then the components folded
    /// to lower case (what [`WinPath::host_path`] joins, and `machine::fs` opens one by one).
    pub fn host_parts(&self) -> Vec<String> {
        let mut v = Vec::with_capacity(self.parts.len() + 1);
        v.push(self.drive.to_ascii_lowercase().to_string());
        v.extend(self.parts.iter().map(|p| p.to_lowercase()));
        v
    }

    /// A case-insensitive key for comparisons.
    pub fn key(&self) -> String {
        self.local().to_lowercase()
    }

    /// True if `self` is `dir` or below it.
    pub fn starts_with(&self, dir: &WinPath) -> bool {
        self.drive == dir.drive
            && self.parts.len() >= dir.parts.len()
            && self
                .parts
                .iter()
                .zip(&dir.parts)
                .all(|(a, b)| a.to_lowercase() == b.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::HRESULT;

    fn local(h: &str) -> bool {
        h.eq_ignore_ascii_case("CA1") || h.eq_ignore_ascii_case("ca1.contoso.test")
    }

    fn code(s: &str) -> HRESULT {
        WinPath::parse(s, local).unwrap_err().hresult()
    }

    #[test]
    fn drive_and_unc_forms_are_the_same_path() {
        let a = WinPath::parse(r"C:\Windows\System32\CertLog\X.edb", local).unwrap();
        let b = WinPath::parse(
            r"\\ca1.CONTOSO.test\c$\windows\system32\certlog\x.EDB",
            local,
        )
        .unwrap();
        assert_eq!(a.key(), b.key());
        assert_eq!(
            a.host_path(Path::new("/r")),
            PathBuf::from("/r/c/windows/system32/certlog/x.edb")
        );
        assert_eq!(a.unc("CA1"), r"\\CA1\C$\Windows\System32\CertLog\X.edb");
    }

    #[test]
    fn dots_normalise_inside_the_root() {
        let p = WinPath::parse(r"C:\a\.\b\..\c", local).unwrap();
        assert_eq!(p.local(), r"C:\a\c");
        assert_eq!(code(r"C:\a\..\.."), HRESULT::E_ACCESSDENIED);
        assert_eq!(code(r"\\CA1\C$\.."), HRESULT::E_ACCESSDENIED);
    }

    #[test]
    fn refusals_have_documented_codes() {
        assert_eq!(code(r"Windows\x"), HRESULT::ERROR_BAD_PATHNAME);
        assert_eq!(code(r"C:x"), HRESULT::ERROR_BAD_PATHNAME);
        assert_eq!(code(""), HRESULT::ERROR_BAD_PATHNAME);
        assert_eq!(code(r"\\?\C:\x"), HRESULT::ERROR_INVALID_NAME);
        assert_eq!(code(r"\\.\PhysicalDrive0"), HRESULT::ERROR_INVALID_NAME);
        assert_eq!(code(r"C:\dir\NUL.txt"), HRESULT::ERROR_INVALID_NAME);
        assert_eq!(code(r"C:\dir\com1"), HRESULT::ERROR_INVALID_NAME);
        assert_eq!(code(r"C:\x.edb:stream"), HRESULT::ERROR_INVALID_NAME);
        assert_eq!(code(r"C:\a*b"), HRESULT::ERROR_INVALID_NAME);
        assert_eq!(code(r"\\OTHER\C$\x"), HRESULT::ERROR_BAD_NETPATH);
        assert_eq!(code(r"\\CA1\share\x"), HRESULT::ERROR_BAD_NETPATH);
        assert_eq!(code(r"\\CA1"), HRESULT::ERROR_BAD_PATHNAME);
    }

    #[test]
    fn join_is_contained_too() {
        let base = WinPath::parse(r"C:\Windows", local).unwrap();
        assert_eq!(base.join("a\\b").unwrap().local(), r"C:\Windows\a\b");
        assert_eq!(
            base.join(r"..\..\x").unwrap_err().hresult(),
            HRESULT::E_ACCESSDENIED
        );
        assert!(base.join("a").unwrap().starts_with(&base));
    }
}

//! The names of a machine and its CA, checked once, when the machine is created, against
//! the Windows rules ("Naming conventions in Active Directory for computers, domains, sites
//! and OUs"; the CA common name of AD CS setup). A name that breaks one gets
//! `ERROR_INVALID_NAME` (0x8007007B) naming the rule, and nothing is created.
//!
//! | name | rule |
//! |---|---|
//! | NetBIOS | 1 to 15 characters; letters, digits and `! @ # $ % ^ & ' ( ) - _ { } ~`; not only digits; no `.` (it would start a NetBIOS scope) |
//! | DNS | 1 to 253 characters; labels of 1 to 63 letters, digits, `-` and `_`, separated by `.`, not starting or ending with `-`; not only digits and dots; `localhost` is refused (it names every machine) |
//! | CA | 1 to 64 characters (empty or only spaces: `E_INVALIDARG`); none of `\ / : * ? " < > |` and no control character; not only spaces and dots; its stem (up to the first `.`) not a device name (`CON`, `NUL`, `COM1`, ...) |
//!
//! With these rules every file name the CA derives (`<CA>.edb`, `<CA>.crl`,
//! `<NETBIOS>_<CA>.crt`) is a valid path component of at most 84 characters, so building
//! them cannot fail. The paths of the CA's files are checked at creation too
//! ([`check_ca_file_path`]: at most 259 characters, `MAX_PATH` less the NUL).

use crate::core::limits::{CA_FILE_PATH, CA_NAME, DNS_LABEL, DNS_NAME, NETBIOS_NAME};
use crate::core::{Error, Result};

fn bad(what: &'static str, name: &str, why: impl Into<String>) -> Error {
    Error::InvalidName {
        what,
        name: name.to_string(),
        why: why.into(),
    }
}

fn length(what: &'static str, name: &str, limit: crate::core::limits::Limit) -> Result<()> {
    let n = name.chars().count() as u64;
    if limit.contains(n) {
        Ok(())
    } else {
        Err(bad(
            what,
            name,
            format!(
                "{n} characters; a {what} has {}..={} characters",
                limit.min, limit.max
            ),
        ))
    }
}

/// Characters a NetBIOS computer name may hold besides letters and digits.
const NETBIOS_SPECIALS: &str = "!@#$%^&'()-_{}~";

/// Checks a NetBIOS computer name.
pub fn check_netbios(name: &str) -> Result<()> {
    const WHAT: &str = "NetBIOS name";
    length(WHAT, name, NETBIOS_NAME)?;
    if let Some(c) = name
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !NETBIOS_SPECIALS.contains(*c))
    {
        return Err(bad(
            WHAT,
            name,
            format!("{c:?} is not allowed; use letters, digits and {NETBIOS_SPECIALS}"),
        ));
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad(WHAT, name, "a computer name is not only digits"));
    }
    Ok(())
}

/// Checks a DNS host name (a single label or a fully qualified name).
pub fn check_dns(name: &str) -> Result<()> {
    const WHAT: &str = "DNS name";
    length(WHAT, name, DNS_NAME)?;
    if name.eq_ignore_ascii_case("localhost") {
        return Err(bad(
            WHAT,
            name,
            "localhost names every emulated machine; pick the machine's own name",
        ));
    }
    for label in name.split('.') {
        let n = label.chars().count() as u64;
        if !DNS_LABEL.contains(n) {
            return Err(bad(
                WHAT,
                name,
                format!(
                    "label {label:?} has {n} characters; a label has {}..={} (no empty labels, no leading or trailing dot)",
                    DNS_LABEL.min, DNS_LABEL.max
                ),
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && *c != '-' && *c != '_')
        {
            return Err(bad(
                WHAT,
                name,
                format!("{c:?} is not allowed; use letters, digits, '-' and '_'"),
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad(
                WHAT,
                name,
                format!("label {label:?} starts or ends with '-'"),
            ));
        }
    }
    if name.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad(
            WHAT,
            name,
            "a host name is not only digits (that is an address)",
        ));
    }
    Ok(())
}

/// Device names a file name stem may not be.
pub(crate) const DEVICE_NAMES: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "CONIN$",
    "CONOUT$",
];

/// Checks a CA common name (it names the database file `<CA>.edb`).
pub fn check_ca_name(name: &str) -> Result<()> {
    const WHAT: &str = "CA name";
    if name.trim().is_empty() {
        return Err(Error::invalid_arg("install", "the CA name is empty"));
    }
    length(WHAT, name, CA_NAME)?;
    if let Some(c) = name
        .chars()
        .find(|c| "\\/:*?\"<>|".contains(*c) || c.is_control())
    {
        return Err(bad(
            WHAT,
            name,
            format!("it holds {c:?}, which cannot be part of its database file name"),
        ));
    }
    if name.trim_end_matches([' ', '.']).trim().is_empty() {
        return Err(bad(
            WHAT,
            name,
            "it is only spaces and dots: not a file name",
        ));
    }
    let stem = name.split('.').next().unwrap_or("").trim_end();
    if DEVICE_NAMES.iter().any(|d| d.eq_ignore_ascii_case(stem)) {
        return Err(bad(
            WHAT,
            name,
            format!("{stem:?} is a device name, so <CA>.edb would not be a file"),
        ));
    }
    Ok(())
}

/// Checks the local path of one of the CA's files (`C:\...\<CA>.edb`).
pub fn check_ca_file_path(local: &str) -> Result<()> {
    let n = local.chars().count() as u64;
    if CA_FILE_PATH.contains(n) {
        return Ok(());
    }
    Err(Error::Path {
        kind: crate::core::PathRefusal::Malformed,
        path: local.to_string(),
        why: format!(
            "{n} characters; the path of a CA database, log or checkpoint file has at most {} (MAX_PATH less its NUL)",
            CA_FILE_PATH.max
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::HRESULT;

    fn code(r: Result<()>) -> HRESULT {
        r.unwrap_err().hresult()
    }

    #[test]
    fn netbios_names() {
        for ok in ["CA01", "A", "EMU1A2BN12", "ca-1_$x{}", "123456789012345x"] {
            if ok.len() <= 15 {
                check_netbios(ok).unwrap();
            }
        }
        let long = "A".repeat(16);
        for bad in [
            "",
            long.as_str(),
            "CA.01",
            "CA 01",
            "CA\\1",
            "CA/1",
            "CA:1",
            "CA*",
            "12345",
            "CÄ",
        ] {
            assert_eq!(
                code(check_netbios(bad)),
                HRESULT::ERROR_INVALID_NAME,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn dns_names() {
        for ok in [
            "ca01",
            "ca01.contoso.test",
            "emu1a2bn12.emu.test",
            "a_b.c-d.e",
        ] {
            check_dns(ok).unwrap();
        }
        let label = "a".repeat(64);
        let long = vec!["abc"; 64].join(".");
        for bad in [
            "",
            "localhost",
            ".ca",
            "ca.",
            "ca..x",
            label.as_str(),
            long.as_str(),
            "-ca.x",
            "ca-.x",
            "c a",
            "ca$",
            "10.0.0.1",
        ] {
            assert_eq!(code(check_dns(bad)), HRESULT::ERROR_INVALID_NAME, "{bad:?}");
        }
    }

    #[test]
    fn ca_names() {
        for ok in ["Emu Issuing CA", "Contoso-CA", "A", "Console CA", "x.y"] {
            check_ca_name(ok).unwrap();
        }
        let long = "C".repeat(65);
        assert_eq!(code(check_ca_name(" ")), HRESULT::E_INVALIDARG);
        for bad in ["..", long.as_str(), "a/b", "a:b", "a\u{1}", "NUL", "con.x"] {
            assert_eq!(
                code(check_ca_name(bad)),
                HRESULT::ERROR_INVALID_NAME,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ca_file_paths() {
        check_ca_file_path(&format!("C:\\{}", "a".repeat(256))).unwrap();
        assert_eq!(
            code(check_ca_file_path(&format!("C:\\{}", "a".repeat(257)))),
            HRESULT::ERROR_BAD_PATHNAME
        );
    }
}

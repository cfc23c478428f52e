//! The emulated machine a transcript describes: names and directories from the recording
//! header and from the paths the calls show, sizes from flags or defaults (a transcript
//! holds no record count, and a real CA's history cannot be copied).

use super::input::{Header, Recording};
use certadm_emu::ca::CaConfig;
use certadm_emu::event::Value;
use serde::Serialize;

/// A value and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Fact<T> {
    /// The value.
    pub value: T,
    /// Where it came from: `flag`, `header`, `server name`, `paths`, `lists`, `default`.
    pub from: &'static str,
}

fn fact<T>(value: T, from: &'static str) -> Fact<T> {
    Fact { value, from }
}

/// The machine and CA the replay builds.
#[derive(Debug, Clone, Serialize)]
pub struct MachineFacts {
    /// NetBIOS name (the server name clients pass).
    pub netbios: Fact<String>,
    /// DNS name (the host of the UNC paths).
    pub dns: Fact<String>,
    /// The CA's name (its `.edb` is `<name>.edb`).
    pub ca_name: Fact<String>,
    /// `DBDirectory`.
    pub db_dir: Fact<String>,
    /// `DBLogDirectory`.
    pub log_dir: Fact<String>,
    /// `DBSystemDirectory`.
    pub system_dir: Fact<String>,
    /// `InterfaceFlags`.
    pub interface_flags: Fact<u32>,
    /// Certificates at install.
    pub records: Fact<u32>,
    /// Seed of the generated content.
    pub seed: Fact<u64>,
    /// Transactions per log generation.
    pub log_capacity: Fact<u32>,
    /// Size of the virtual `.edb`, if set.
    pub edb_size: Option<u64>,
    /// The recorded program ran on another computer than the CA.
    pub remote_caller: Fact<bool>,
}

/// What the user sets on the command line (`certadm-emu replay`'s machine options).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Overrides {
    /// Certificates in the emulated CA at install (default 16; a transcript has no count).
    #[arg(long)]
    pub records: Option<u32>,
    /// Seed of the emulated CA's generated content.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Transactions per log generation of the emulated CA (default 64).
    #[arg(long)]
    pub log_capacity: Option<u32>,
    /// Size of the emulated CA's virtual .edb, e.g. 64M.
    #[arg(long, value_parser = crate::cli::parse_size)]
    pub edb_size: Option<u64>,
    /// The emulated machine's NetBIOS name (default: from the transcript).
    #[arg(long = "server-name", value_name = "SERVER_NAME")]
    pub netbios: Option<String>,
    /// The emulated machine's DNS name (default: the host of the transcript's UNC paths).
    #[arg(long = "dns-name", value_name = "DNS_NAME")]
    pub dns: Option<String>,
    /// The emulated CA's name (default: the transcript's .edb name or header).
    #[arg(long)]
    pub ca_name: Option<String>,
}

// ----- paths ---------------------------------------------------------------------------

/// `\\host\share\rest` as (host, share, rest); `rest` may be empty.
pub fn split_unc(path: &str) -> Option<(&str, &str, &str)> {
    let p = path.strip_prefix("\\\\")?;
    let (host, tail) = p.split_once('\\')?;
    let (share, rest) = tail.split_once('\\').unwrap_or((tail, ""));
    (!host.is_empty()).then_some((host, share, rest))
}

/// `\\host\C$\x` as `C:\x`; a local path as it is.
pub fn local_path(path: &str) -> Option<String> {
    match split_unc(path) {
        Some((_, share, rest)) => {
            let drive = share.strip_suffix('$').filter(|d| d.len() == 1)?;
            Some(format!("{}:\\{rest}", drive.to_ascii_uppercase()))
        }
        None if path.len() >= 3 && &path[1..3] == ":\\" => Some(path.to_string()),
        None => None,
    }
}

/// The directory part of a path (without the last `\`).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('\\').map_or("", |(d, _)| d)
}

/// The file name of a path.
pub fn file_name(path: &str) -> &str {
    path.rsplit_once('\\').map_or(path, |(_, f)| f)
}

/// The log generation of an `edbXXXXX.log` name (hex, any case).
pub fn log_generation(path: &str) -> Option<u32> {
    let f = file_name(path);
    let lower = f.to_ascii_lowercase();
    let hex = lower.strip_prefix("edb")?.strip_suffix(".log")?;
    (!hex.is_empty() && hex.len() <= 8)
        .then(|| u32::from_str_radix(hex, 16).ok())
        .flatten()
}

/// `path` with its log generation replaced by `gen`, written as the emulator writes it
/// (upper-case hex, 5 digits, 8 from generation 0x100000).
pub fn with_log_generation(path: &str, generation: u32) -> String {
    let name = if generation >= 0x10_0000 {
        format!("edb{generation:08X}.log")
    } else {
        format!("edb{generation:05X}.log")
    };
    match path.rsplit_once('\\') {
        Some((d, _)) => format!("{d}\\{name}"),
        None => name,
    }
}

/// A recorded list entry as (type character, path): printable types as themselves, others
/// as `\u{82}`; unprefixed lists keep the whole string.
pub fn list_entry(s: &str, prefixed: bool) -> (Option<u32>, String) {
    if !prefixed {
        return (None, s.to_string());
    }
    if let Some(rest) = s.strip_prefix("\\u{") {
        if let Some((hex, path)) = rest.split_once('}') {
            if let Ok(k) = u32::from_str_radix(hex, 16) {
                return (Some(k), path.to_string());
            }
        }
    }
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => (Some(c as u32), chars.as_str().to_string()),
        None => (None, String::new()),
    }
}

/// The host part of a server name (`HOST`, `\\HOST`, `HOST\CA name`).
pub fn server_host(name: &str) -> &str {
    let n = name.trim_start_matches('\\');
    n.split('\\').next().unwrap_or(n)
}

// ----- inference -----------------------------------------------------------------------

/// Every string a recording shows: server names, argument paths, list entries.
struct Seen {
    servers: Vec<String>,
    /// (list kind by function name, type character, path)
    entries: Vec<(&'static str, Option<u32>, String)>,
    paths: Vec<String>,
}

fn seen(recs: &[Recording]) -> Seen {
    let mut s = Seen {
        servers: Vec::new(),
        entries: Vec::new(),
        paths: Vec::new(),
    };
    for r in recs {
        for c in r.calls() {
            let e = &c.event;
            for (k, v) in &e.args.0 {
                match (k.as_ref(), v) {
                    ("pwszServerName", Value::Str(n)) => s.servers.push(n.clone()),
                    (_, Value::Str(p)) => s.paths.push(p.clone()),
                    _ => {}
                }
            }
            if let Some((_, Value::List(l))) = e.out.0.iter().find(|(k, _)| k == "list") {
                let prefixed = e.call != certadm_emu::core::Call::BackupGetDynamicFileList;
                for x in l {
                    let (k, p) = list_entry(x, prefixed);
                    s.entries.push((e.call.name(), k, p));
                }
            }
        }
    }
    s
}

const D: u32 = b'D' as u32;
const LOG: u32 = b'!' as u32;

/// The machine of the transcript, with overrides.
pub fn infer(recs: &[Recording], o: &Overrides) -> (MachineFacts, Vec<String>) {
    let mut notes = Vec::new();
    let header: Option<&Header> = recs.iter().find_map(|r| r.header.as_ref());
    let s = seen(recs);
    let defaults = CaConfig::default();
    let hosts: Vec<&str> = s
        .servers
        .iter()
        .map(|n| server_host(n))
        .filter(|h| !h.is_empty())
        .collect();
    let unc_hosts: Vec<&str> = s
        .entries
        .iter()
        .map(|e| e.2.as_str())
        .chain(s.paths.iter().map(String::as_str))
        .filter_map(|p| split_unc(p).map(|u| u.0))
        .collect();
    let h_netbios = header.and_then(|h| h.computer.netbios.clone());

    let netbios = if let Some(n) = &o.netbios {
        fact(n.clone(), "flag")
    } else if let Some(h) = hosts.iter().find(|h| !h.contains('.')) {
        fact(h.to_string(), "server name")
    } else if let Some(n) = &h_netbios {
        fact(n.clone(), "header")
    } else if let Some(h) = hosts.first() {
        fact(
            h.split('.').next().unwrap_or(h).to_ascii_uppercase(),
            "server name",
        )
    } else {
        fact("CA01".to_string(), "default")
    };
    let dns = if let Some(d) = &o.dns {
        fact(d.clone(), "flag")
    } else if let Some(h) = unc_hosts.first() {
        fact(h.to_string(), "paths")
    } else if let Some(h) = hosts.iter().find(|h| h.contains('.')) {
        fact(h.to_string(), "server name")
    } else if let Some(d) = header
        .and_then(|h| h.computer.dns.clone())
        .filter(|d| d.contains('.'))
    {
        fact(d, "header")
    } else {
        fact(
            format!("{}.emu.test", netbios.value.to_lowercase()),
            "default",
        )
    };
    let edb_stem = s
        .entries
        .iter()
        .map(|e| e.2.as_str())
        .chain(s.paths.iter().map(String::as_str))
        .map(file_name)
        .find_map(|f| {
            let l = f.to_ascii_lowercase();
            l.ends_with(".edb").then(|| f[..f.len() - 4].to_string())
        });
    let header_ca = header.and_then(|h| h.ca.name.clone().or_else(|| h.ca.common_name.clone()));
    let ca_name = if let Some(n) = &o.ca_name {
        fact(n.clone(), "flag")
    } else if let Some(stem) = &edb_stem {
        if let Some(h) = header_ca.as_ref().filter(|h| !h.eq_ignore_ascii_case(stem)) {
            notes.push(format!(
                "the header names the CA {h:?}, its database is {stem}.edb: the emulated CA is named after the database"
            ));
        }
        fact(stem.clone(), "paths")
    } else if let Some(h) = header_ca {
        fact(h, "header")
    } else if let Some(ca) = s.servers.iter().find_map(|n| {
        n.trim_start_matches('\\')
            .split_once('\\')
            .map(|x| x.1.to_string())
    }) {
        fact(ca, "server name")
    } else {
        fact(defaults.name.clone(), "default")
    };

    let from_entries = |kind: &str, t: u32, dir_of_file: bool| -> Option<String> {
        s.entries
            .iter()
            .filter(|e| e.0 == kind && e.1 == Some(t))
            .find_map(|e| local_path(if dir_of_file { parent(&e.2) } else { &e.2 }))
    };
    let hca = header.map(|h| h.ca.clone()).unwrap_or_default();
    // Directories the calls show (lists, then paths a client passed), as the API spells
    // them: a registry value equal but for case takes their spelling.
    let observed: Vec<String> = s
        .entries
        .iter()
        .flat_map(|e| [local_path(&e.2), local_path(parent(&e.2))])
        .chain(
            s.paths
                .iter()
                .flat_map(|p| [local_path(p), local_path(parent(p))]),
        )
        .flatten()
        .collect();
    let dir = |list: Option<String>, h: &Option<String>, d: &str| match (list, h) {
        (Some(l), _) => fact(l, "lists"),
        (None, Some(h)) => match observed.iter().find(|o| o.eq_ignore_ascii_case(h)) {
            Some(o) => fact(o.clone(), "header, spelt as the paths"),
            None => fact(h.clone(), "header"),
        },
        (None, None) => fact(d.to_string(), "default"),
    };
    let locations = certadm_emu::core::Call::RestoreGetDatabaseLocations.name();
    let names = certadm_emu::core::Call::BackupGetDatabaseNames.name();
    let logs = certadm_emu::core::Call::BackupGetBackupLogs.name();
    let db_dir = dir(
        from_entries(locations, D, true).or_else(|| from_entries(names, D, true)),
        &hca.db_directory,
        &defaults.db_dir,
    );
    let log_dir = dir(
        from_entries(locations, 0x82, false).or_else(|| from_entries(logs, LOG, true)),
        &hca.db_log_directory,
        &defaults.log_dir,
    );
    let system_dir = dir(
        from_entries(locations, 0x83, false),
        &hca.db_system_directory,
        &defaults.system_dir,
    );
    let interface_flags = match hca.interface_flags {
        Some(f) => fact(f as u32, "header"),
        None => fact(defaults.interface_flags, "default"),
    };
    if let Some(f) = hca.db_flags {
        if f as u32 & certadm_emu::core::consts::DBFLAGS_CIRCULARLOGGING != 0 {
            notes.push(
                "the CA uses circular logging (DBFlags), which the emulator does not model".into(),
            );
        }
    }
    if hca.restore_in_progress == Some(true) {
        notes.push("a restore was in progress when the recording started; the emulated CA starts without one".into());
    }
    let remote = match header {
        Some(h) => {
            let names: Vec<String> = [
                &h.computer.netbios,
                &h.computer.dns_hostname,
                &h.computer.dns,
            ]
            .into_iter()
            .flatten()
            .flat_map(|n| {
                [
                    n.to_ascii_lowercase(),
                    n.split('.').next().unwrap_or(n).to_ascii_lowercase(),
                ]
            })
            .collect();
            let ca_host = netbios.value.to_ascii_lowercase();
            let known = !names.is_empty() && netbios.from != "flag";
            fact(
                known && !names.contains(&ca_host) && ca_host != "localhost",
                "header",
            )
        }
        None => fact(false, "default"),
    };
    let num = |o: Option<u32>, d: u32| match o {
        Some(v) => fact(v, "flag"),
        None => fact(d, "default"),
    };
    let facts = MachineFacts {
        netbios,
        dns,
        ca_name,
        db_dir,
        log_dir,
        system_dir,
        interface_flags,
        records: num(o.records, defaults.records),
        seed: match o.seed {
            Some(v) => fact(v, "flag"),
            None => fact(defaults.seed, "default"),
        },
        log_capacity: num(o.log_capacity, defaults.log_capacity),
        edb_size: o.edb_size,
        remote_caller: remote,
    };
    (facts, notes)
}

impl MachineFacts {
    /// The CA configuration.
    pub fn config(&self) -> CaConfig {
        CaConfig {
            name: self.ca_name.value.clone(),
            seed: self.seed.value,
            records: self.records.value,
            edb_size: self.edb_size,
            log_capacity: self.log_capacity.value,
            db_dir: self.db_dir.value.clone(),
            log_dir: self.log_dir.value.clone(),
            system_dir: self.system_dir.value.clone(),
            interface_flags: self.interface_flags.value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_and_map() {
        assert_eq!(
            split_unc(r"\\host.example\C$\Windows\x.edb"),
            Some(("host.example", "C$", r"Windows\x.edb"))
        );
        assert_eq!(local_path(r"\\h\d$\DB"), Some(r"D:\DB".into()));
        assert_eq!(local_path(r"C:\DB"), Some(r"C:\DB".into()));
        assert_eq!(local_path(r"\\h\share\DB"), None);
        assert_eq!(log_generation(r"\\h\C$\L\edb0011a.log"), Some(0x11A));
        assert_eq!(log_generation(r"\\h\C$\L\edb.log"), None);
        assert_eq!(
            with_log_generation(r"C:\L\edb00003.log", 0x11A),
            r"C:\L\edb0011A.log"
        );
        assert_eq!(with_log_generation("edb1.log", 0x100000), "edb00100000.log");
        assert_eq!(
            list_entry(r"\u{82}\\h\C$\L", true),
            (Some(0x82), r"\\h\C$\L".into())
        );
        assert_eq!(
            list_entry(r"D\\h\C$\x.edb", true),
            (Some(0x44), r"\\h\C$\x.edb".into())
        );
        assert_eq!(list_entry(r"\\h\x.crl", false), (None, r"\\h\x.crl".into()));
        assert_eq!(server_host(r"\\CA01\Contoso CA"), "CA01");
    }
}

//! Reading a transcript: its recordings (one per process of the recording certadm.dll,
//! each opened by a `{"recording": {...}}` line; a trace of the emulator has none), the
//! `{"control": ...}` lines a user adds for what happened outside certadm.dll, and the
//! calls (the event lines of `docs/FILE-FORMATS.md` §11.1).

use certadm_emu::event::Event;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The first line of a recording of the recording certadm.dll (`windows/recorder`): the
/// facts of the machine the replay builds. Every field may be missing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Header {
    /// The recording format (1).
    pub format: Option<u64>,
    /// The recorder's name and version.
    pub recorder: Option<String>,
    /// The recorded process.
    pub pid: Option<u64>,
    /// When it started (UTC).
    pub start: Option<String>,
    /// The program's file name.
    pub image: Option<String>,
    /// The computer's names.
    pub computer: Computer,
    /// The Windows version, as the recorder wrote it.
    pub windows: Option<serde_json::Value>,
    /// The CA's configuration from the registry.
    pub ca: CaFacts,
    /// Names were replaced by `HOST`, `host.example`, `CA`.
    pub anonymised: Option<bool>,
    /// Consecutive reads folded into one line (never, for the recorder).
    pub folded_reads: Option<bool>,
}

/// `computer` of a [`Header`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Computer {
    /// The NetBIOS name.
    pub netbios: Option<String>,
    /// The DNS host name (first label).
    pub dns_hostname: Option<String>,
    /// The fully qualified DNS name.
    pub dns: Option<String>,
}

/// `ca` of a [`Header`]: `HKLM\SYSTEM\CurrentControlSet\Services\CertSvc\Configuration`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CaFacts {
    /// `Active`: the CA's (sanitised) name.
    pub name: Option<String>,
    /// `CommonName`.
    pub common_name: Option<String>,
    /// `DBDirectory`.
    pub db_directory: Option<String>,
    /// `DBLogDirectory`.
    pub db_log_directory: Option<String>,
    /// `DBSystemDirectory`.
    pub db_system_directory: Option<String>,
    /// `DBTempDirectory`.
    pub db_temp_directory: Option<String>,
    /// `DBFlags`.
    pub db_flags: Option<u64>,
    /// `InterfaceFlags`.
    pub interface_flags: Option<u64>,
    /// A `RestoreInProgress` value was present.
    pub restore_in_progress: Option<bool>,
}

impl Header {
    /// One line about where the recording comes from.
    pub fn source(&self) -> String {
        let mut s = self.image.clone().unwrap_or_else(|| "a program".into());
        if let Some(r) = &self.recorder {
            s.push_str(&format!(" through {r}"));
        }
        if let Some(w) = &self.windows {
            let n = |k: &str| w.get(k).and_then(serde_json::Value::as_u64);
            if let (Some(a), Some(b), Some(c)) = (n("major"), n("minor"), n("build")) {
                s.push_str(&format!(", Windows {a}.{b}.{c}"));
            }
            if let Some(csd) = w
                .get("csd")
                .and_then(|v| v.as_str())
                .filter(|c| !c.is_empty())
            {
                s.push_str(&format!(" {csd}"));
            }
            if let Some(wine) = w.get("wine").and_then(|v| v.as_str()) {
                s.push_str(&format!(" (Wine {wine})"));
            }
        }
        s
    }

    /// True if the recording was made under Wine (against the emulator's PE certadm.dll,
    /// not a real CA).
    pub fn under_wine(&self) -> bool {
        self.windows
            .as_ref()
            .is_some_and(|w| w.get("wine").is_some_and(|v| !v.is_null()))
    }
}

/// Something that happened to the CA outside certadm.dll, which the replay does to the
/// emulated CA: a `{"control": ...}` line, a `--before` flag, or inferred from the calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `net stop certsvc`.
    Stop,
    /// `net start certsvc` (recovery of a registered restore included).
    Start,
    /// The CA's database, log and checkpoint files deleted (the CA must be stopped).
    Wipe,
    /// What the documented restore procedure does before its first call: stop, wipe.
    Restore,
    /// The service dies without flushing its checkpoint.
    Crash,
    /// A complete full backup with truncation, by another program.
    FullBackup,
    /// `n` log generations written by the CA (one certificate issued in each).
    RollLogs(u32),
    /// `n` certificates issued.
    Issue(u32),
    /// The certificate with this request id revoked.
    Revoke(u32),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Stop => f.write_str("stop"),
            Action::Start => f.write_str("start"),
            Action::Wipe => f.write_str("wipe"),
            Action::Restore => f.write_str("restore"),
            Action::Crash => f.write_str("crash"),
            Action::FullBackup => f.write_str("full-backup"),
            Action::RollLogs(n) => write!(f, "roll-logs={n}"),
            Action::Issue(n) => write!(f, "issue={n}"),
            Action::Revoke(n) => write!(f, "revoke={n}"),
        }
    }
}

impl FromStr for Action {
    type Err = String;

    /// `stop`, `start`, `wipe`, `restore`, `crash`, `full-backup`, `roll-logs=N`,
    /// `issue=N`, `revoke=ID` (`_` and `-` alike).
    fn from_str(s: &str) -> Result<Action, String> {
        let s = s.trim().replace('_', "-").to_ascii_lowercase();
        let (name, arg) = match s.split_once('=') {
            Some((n, a)) => (n.to_string(), Some(a.to_string())),
            None => (s.clone(), None),
        };
        let number = || -> Result<u32, String> {
            let a = arg
                .as_deref()
                .ok_or(format!("{name} needs a number: {name}=N"))?;
            a.parse().map_err(|_| format!("{name}={a}: not a number"))
        };
        Ok(match name.as_str() {
            "stop" => Action::Stop,
            "start" => Action::Start,
            "wipe" => Action::Wipe,
            "restore" => Action::Restore,
            "crash" => Action::Crash,
            "full-backup" => Action::FullBackup,
            "roll-logs" => Action::RollLogs(number()?),
            "issue" => Action::Issue(number()?),
            "revoke" => Action::Revoke(number()?),
            _ => {
                return Err(format!(
                    "{s:?} is not an action (stop, start, wipe, restore, crash, full-backup, \
                     roll-logs=N, issue=N, revoke=ID)"
                ))
            }
        })
    }
}

/// A recorded call: its event, where it is in the file, and the arguments the event type
/// does not keep exactly.
#[derive(Debug, Clone)]
pub struct Rec {
    /// Its line in the file (1-based).
    pub line: usize,
    /// The call.
    pub event: Event,
    /// `crstmap`, signed as recorded.
    pub crstmap: Option<i64>,
    /// `rgrstmap`: `None` for NULL; a name is `None` when recorded as `(null)` or
    /// `(unreadable)`.
    pub rstmap: Option<Vec<(Option<String>, Option<String>)>>,
}

/// One line after the header.
#[derive(Debug, Clone)]
pub enum Item {
    /// A `{"control": ...}` line.
    Control {
        /// Its line.
        line: usize,
        /// What it does.
        action: Action,
    },
    /// A call.
    Call(Box<Rec>),
}

/// One process's recording (or a whole trace of the emulator, which has no header).
#[derive(Debug, Clone)]
pub struct Recording {
    /// The line of its header (or of its first line).
    pub first_line: usize,
    /// The header, if the recording has one.
    pub header: Option<Header>,
    /// Its lines.
    pub items: Vec<Item>,
}

impl Recording {
    /// The calls, in order.
    pub fn calls(&self) -> impl Iterator<Item = &Rec> {
        self.items.iter().filter_map(|i| match i {
            Item::Call(r) => Some(&**r),
            Item::Control { .. } => None,
        })
    }
}

fn restore_map(v: &serde_json::Value) -> Option<Vec<(Option<String>, Option<String>)>> {
    let a = v.as_array()?;
    let name = |s: &str| match s.trim() {
        "(null)" | "(unreadable)" => None,
        s => Some(s.to_string()),
    };
    Some(
        a.iter()
            .map(|e| {
                let s = e.as_str().unwrap_or_default();
                match s.split_once(" -> ") {
                    Some((old, new)) => (name(old), name(new)),
                    None => (name(s), None),
                }
            })
            .collect(),
    )
}

/// Parses a transcript. A line that is neither a header, a control line nor an event is
/// an error naming its line.
pub fn parse(text: &str) -> Result<Vec<Recording>, String> {
    let mut recs: Vec<Recording> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {n}: {e}"))?;
        let is = |k: &str| v.get(k).is_some() && v.get("call").is_none();
        if is("recording") {
            let header = serde_json::from_value(v["recording"].clone())
                .map_err(|e| format!("line {n}: the recording header: {e}"))?;
            recs.push(Recording {
                first_line: n,
                header: Some(header),
                items: Vec::new(),
            });
            continue;
        }
        if recs.is_empty() {
            recs.push(Recording {
                first_line: n,
                header: None,
                items: Vec::new(),
            });
        }
        let item = if is("control") {
            let action = serde_json::from_value(v["control"].clone()).map_err(|e| {
                format!(
                    "line {n}: {e} (a control line is {{\"control\": \"stop\"}}, \"start\", \
                     \"wipe\", \"restore\", \"crash\", \"full_backup\", {{\"roll_logs\": N}}, \
                     {{\"issue\": N}} or {{\"revoke\": ID}})"
                )
            })?;
            Item::Control { line: n, action }
        } else {
            let event = Event::from_json(line).map_err(|e| format!("line {n}: {e}"))?;
            let args = &v["args"];
            Item::Call(Box::new(Rec {
                line: n,
                event,
                crstmap: args.get("crstmap").and_then(serde_json::Value::as_i64),
                rstmap: args.get("rgrstmap").and_then(restore_map),
            }))
        };
        recs.last_mut().expect("pushed above").items.push(item);
    }
    Ok(recs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use certadm_emu::core::Call;

    #[test]
    fn headers_controls_and_calls_are_told_apart() {
        let text = r#"{"control":"stop"}
{"call":"CertSrvIsServerOnlineW","hr":"0x800706BA","args":{"pwszServerName":"A"}}
{"recording":{"format":1,"computer":{"netbios":"HOST"},"unknown":1}}
{"control":{"issue":3}}

{"seq":3,"call":"CertSrvRestoreRegisterW","hr":"0x80070057","args":{"hbc":"0x1","rgrstmap":["a -> (null)"],"crstmap":-2}}
"#;
        let r = parse(text).unwrap();
        assert_eq!(r.len(), 2);
        assert!(r[0].header.is_none());
        assert_eq!(r[0].items.len(), 2);
        assert!(matches!(
            r[0].items[0],
            Item::Control {
                line: 1,
                action: Action::Stop
            }
        ));
        assert_eq!(r[1].first_line, 3);
        assert_eq!(
            r[1].header.as_ref().unwrap().computer.netbios.as_deref(),
            Some("HOST")
        );
        assert!(matches!(
            r[1].items[0],
            Item::Control {
                action: Action::Issue(3),
                ..
            }
        ));
        let c = r[1].calls().next().unwrap();
        assert_eq!((c.line, c.event.call), (6, Call::RestoreRegister));
        assert_eq!(c.crstmap, Some(-2));
        assert_eq!(c.rstmap, Some(vec![(Some("a".into()), None)]));
    }

    #[test]
    fn a_bad_line_names_its_line() {
        assert!(parse("{}\n").unwrap_err().starts_with("line 1:"));
        let e = parse("\n{\"control\":\"reboot\"}\n").unwrap_err();
        assert!(
            e.starts_with("line 2:") && e.contains("control line"),
            "{e}"
        );
    }

    #[test]
    fn actions_read_as_flags_and_print_back() {
        for s in [
            "stop",
            "start",
            "wipe",
            "restore",
            "crash",
            "full-backup",
            "roll-logs=2",
            "issue=5",
            "revoke=7",
        ] {
            assert_eq!(s.parse::<Action>().unwrap().to_string(), s);
        }
        assert_eq!("FULL_BACKUP".parse::<Action>(), Ok(Action::FullBackup));
        assert!("issue"
            .parse::<Action>()
            .unwrap_err()
            .contains("needs a number"));
        assert!("reboot".parse::<Action>().is_err());
    }
}

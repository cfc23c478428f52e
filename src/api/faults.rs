//! Fault schedules: declarative, serialisable (JSON), deterministic.
//!
//! ```json
//! {"seed": 7, "faults": [
//!   {"kind": "fail", "function": "CertSrvBackupRead", "nth": 3, "hr": "RPC_S_CALL_FAILED"},
//!   {"kind": "fail", "function": "CertSrvBackupOpenFileW", "hr": "0x80070005", "probability": 0.5},
//!   {"kind": "fail_nth_call", "n": 12},
//!   {"kind": "service_stop", "before": "CertSrvBackupRead", "nth": 2},
//!   {"kind": "service_suspend", "before": "CertSrvBackupGetBackupLogsW"},
//!   {"kind": "read_fail_after", "bytes": 65536, "hr": "RPC_S_CALL_FAILED", "file": ".edb"},
//!   {"kind": "short_reads", "size": 4095},
//!   {"kind": "corrupt_read", "offset": 100, "file": "edb0000"},
//!   {"kind": "start_refuses", "hr": "JET_errDatabaseCorrupted"},
//!   {"kind": "restore_file_unwritable", "path": "C:\\Windows\\System32\\CertLog\\edb00002.log"}
//! ]}
//! ```
//!
//! `nth` counts the calls of that function on the CA, from 1; without it the fault fires on
//! every call. `fail_nth_call` fails the n-th certbcli call of any function with the
//! realistic HRESULT for that function (or `hr`). Probabilistic faults draw from a
//! generator seeded by `seed`, the fault's index and the call number, so a schedule
//! replays exactly. `file` matches a substring of the file name (case-insensitive).

use crate::core::mix::mix64;
use crate::core::{Call, HRESULT};
use serde::{Deserialize, Serialize};

/// A fault schedule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSchedule {
    /// Seed of the probabilistic faults.
    #[serde(default)]
    pub seed: u64,
    /// The faults.
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// One planned fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// A function call fails with `hr` (by name or value).
    Fail {
        /// The function, by its export name, e.g. `CertSrvBackupRead`.
        function: Call,
        /// The n-th call of it (from 1); every call if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nth: Option<u64>,
        /// The HRESULT, e.g. `"RPC_S_CALL_FAILED"` or `"0x800706BE"`.
        hr: String,
        /// Fire with this probability (0..=1) instead of always.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        probability: Option<f64>,
    },
    /// The n-th certbcli call on the CA, whatever the function, fails.
    FailNthCall {
        /// Call number from 1.
        n: u64,
        /// The HRESULT; the function's realistic failure if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hr: Option<String>,
    },
    /// The CA service stops just before a call.
    ServiceStop {
        /// The function, by its export name.
        before: Call,
        /// Its n-th call; the first if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nth: Option<u64>,
    },
    /// The CA is suspended just before a call.
    ServiceSuspend {
        /// The function, by its export name.
        before: Call,
        /// Its n-th call; the first if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nth: Option<u64>,
    },
    /// The read of a file that would reach past its first `bytes` bytes fails
    /// (earlier reads are served in full).
    ReadFailAfter {
        /// Bytes delivered before the failure.
        bytes: u64,
        /// The HRESULT.
        hr: String,
        /// Substring of the file name; any file if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
    /// Reads come back short: at most `size` bytes each (a client that takes a short read for EOF loses data).
    ShortReads {
        /// Bytes per read at most.
        size: u32,
        /// Substring of the file name; any file if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
    /// The byte at `offset` of a file comes back flipped.
    CorruptRead {
        /// Offset in the file.
        offset: u64,
        /// Substring of the file name; any file if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
    /// The emulator panics inside a call (tests that a panic never crosses the ABI: the
    /// call returns `E_UNEXPECTED` and the trace and report record it).
    Panic {
        /// The function, by its export name.
        function: Call,
    },
    /// The next service start fails with `hr` (the CA stays stopped, files untouched).
    StartRefuses {
        /// The HRESULT.
        hr: String,
    },
    /// A file of a restore cannot be written: a directory occupies its path.
    RestoreFileUnwritable {
        /// The Windows path.
        path: String,
    },
}

impl FaultSchedule {
    /// Parses a schedule from JSON.
    pub fn from_json(s: &str) -> Result<FaultSchedule, String> {
        let f: FaultSchedule = serde_json::from_str(s).map_err(|e| e.to_string())?;
        f.validate()?;
        Ok(f)
    }

    /// The schedule as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("serialisable")
    }

    /// Checks every HRESULT and probability.
    pub fn validate(&self) -> Result<(), String> {
        for (i, f) in self.faults.iter().enumerate() {
            let hr = match f {
                Fault::Fail {
                    hr, probability, ..
                } => {
                    if let Some(p) = probability {
                        if !(0.0..=1.0).contains(p) {
                            return Err(format!("fault {i}: probability {p} is outside 0..=1"));
                        }
                    }
                    Some(hr)
                }
                Fault::FailNthCall { hr, .. } => hr.as_ref(),
                Fault::ReadFailAfter { hr, .. } | Fault::StartRefuses { hr } => Some(hr),
                Fault::ShortReads { size: 0, .. } => {
                    return Err(format!("fault {i}: short_reads size must be at least 1"))
                }
                _ => None,
            };
            if let Some(hr) = hr {
                let _ = parse_hr(hr).map_err(|e| format!("fault {i}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Parses an HRESULT given by name or value.
pub(crate) fn parse_hr(s: &str) -> Result<HRESULT, String> {
    HRESULT::parse(s).ok_or_else(|| format!("{s:?} is not an HRESULT name or value"))
}

/// What a fault does to a call about to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Fail with this HRESULT.
    Fail(HRESULT),
    /// Stop the service first.
    Stop,
    /// Suspend the service first.
    Suspend,
    /// Panic (a deliberate emulator fault).
    Panic,
}

/// How a read is bent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReadPlan {
    /// Deliver at most this many bytes.
    pub limit: Option<u64>,
    /// Fail with this HRESULT instead of reading.
    pub fail: Option<HRESULT>,
    /// Flip the byte at this file offset if it is delivered.
    pub corrupt_at: Option<u64>,
}

/// A schedule installed on a CA, with its accounting.
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultState {
    /// The schedule.
    pub schedule: FaultSchedule,
    /// Times each fault fired.
    pub fired: Vec<u64>,
    /// Calls seen, all functions.
    pub calls: u64,
    /// Calls seen per function.
    pub per_function: std::collections::HashMap<Call, u64>,
}

fn matches_file(filter: &Option<String>, name: &str) -> bool {
    filter
        .as_ref()
        .is_none_or(|f| name.to_lowercase().contains(&f.to_lowercase()))
}

impl FaultState {
    /// Installs a schedule.
    pub(crate) fn new(schedule: FaultSchedule) -> Self {
        let n = schedule.faults.len();
        FaultState {
            schedule,
            fired: vec![0; n],
            ..Default::default()
        }
    }

    /// True when nothing is planned.
    pub(crate) fn is_empty(&self) -> bool {
        self.schedule.faults.is_empty()
    }

    fn chance(&self, i: usize, p: f64) -> bool {
        let r = mix64(self.schedule.seed ^ mix64(i as u64) ^ self.calls.wrapping_mul(0x9E37));
        (r >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// Counts a call and returns what the faults do to it.
    pub(crate) fn before_call(&mut self, function: Call) -> Vec<Action> {
        self.calls += 1;
        let nth = {
            let c = self.per_function.entry(function).or_default();
            *c += 1;
            *c
        };
        let mut out = Vec::new();
        for i in 0..self.schedule.faults.len() {
            let act = match &self.schedule.faults[i] {
                Fault::Fail {
                    function: f,
                    nth: n,
                    hr,
                    probability,
                } if *f == function && n.is_none_or(|n| n == nth) => {
                    let fire = probability.is_none_or(|p| self.chance(i, p));
                    fire.then(|| Action::Fail(parse_hr(hr).unwrap_or(HRESULT::E_FAIL)))
                }
                Fault::FailNthCall { n, hr } if *n == self.calls => Some(Action::Fail(
                    hr.as_deref()
                        .and_then(|h| parse_hr(h).ok())
                        .unwrap_or_else(|| function.realistic_failure()),
                )),
                Fault::ServiceStop { before, nth: n }
                    if *before == function && n.unwrap_or(1) == nth =>
                {
                    Some(Action::Stop)
                }
                Fault::ServiceSuspend { before, nth: n }
                    if *before == function && n.unwrap_or(1) == nth =>
                {
                    Some(Action::Suspend)
                }
                Fault::Panic { function: f } if *f == function => Some(Action::Panic),
                Fault::RestoreFileUnwritable { .. }
                    if matches!(
                        function,
                        Call::RestoreRegister
                            | Call::RestoreRegisterThroughFile
                            | Call::RestoreRegisterComplete
                    ) =>
                {
                    // The restore ran into the blocked path (it was installed before).
                    self.fired[i] = self.fired[i].max(1);
                    None
                }
                _ => None,
            };
            if let Some(a) = act {
                self.fired[i] += 1;
                out.push(a);
            }
        }
        out
    }

    /// How the next read of `file` at `offset` is bent.
    pub(crate) fn read_plan(&mut self, file: &str, offset: u64, want: u64) -> ReadPlan {
        let mut plan = ReadPlan::default();
        for i in 0..self.schedule.faults.len() {
            match &self.schedule.faults[i] {
                Fault::ReadFailAfter { bytes, hr, file: f }
                    if matches_file(f, file) && offset + want > *bytes =>
                {
                    // The read that would deliver byte `bytes` or later fails; earlier
                    // reads are served in full (no short read that a client takes for EOF).
                    plan.fail = Some(parse_hr(hr).unwrap_or(HRESULT::E_FAIL));
                    self.fired[i] += 1;
                }
                Fault::ShortReads { size, file: f } if matches_file(f, file) => {
                    if want > *size as u64 {
                        self.fired[i] += 1;
                    }
                    plan.limit = Some(plan.limit.unwrap_or(u64::MAX).min(*size as u64));
                }
                Fault::CorruptRead {
                    offset: at,
                    file: f,
                } if matches_file(f, file) && (offset..offset + want).contains(at) => {
                    plan.corrupt_at = Some(*at);
                }
                _ => {}
            }
        }
        plan
    }

    /// Records that a corruption was delivered.
    pub(crate) fn corrupted(&mut self, file: &str, at: u64) {
        for i in 0..self.schedule.faults.len() {
            if let Fault::CorruptRead { offset, file: f } = &self.schedule.faults[i] {
                if *offset == at && matches_file(f, file) {
                    self.fired[i] += 1;
                }
            }
        }
    }

    /// The failure a start meets, if a `start_refuses` fault is pending (it fires once).
    pub(crate) fn start_refusal(&mut self) -> Option<HRESULT> {
        for i in 0..self.schedule.faults.len() {
            if let Fault::StartRefuses { hr } = &self.schedule.faults[i] {
                if self.fired[i] == 0 {
                    self.fired[i] += 1;
                    return parse_hr(hr).ok();
                }
            }
        }
        None
    }

    /// Faults that never fired, with their index.
    pub(crate) fn unfired(&self) -> Vec<(usize, &Fault)> {
        self.schedule
            .faults
            .iter()
            .enumerate()
            .filter(|(i, _)| self.fired[*i] == 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_round_trips_through_json() {
        let s = FaultSchedule {
            seed: 9,
            faults: vec![
                Fault::Fail {
                    function: Call::BackupRead,
                    nth: Some(2),
                    hr: "RPC_S_CALL_FAILED".into(),
                    probability: None,
                },
                Fault::ShortReads {
                    size: 1,
                    file: None,
                },
                Fault::StartRefuses {
                    hr: "0xC80004B6".into(),
                },
            ],
        };
        let j = s.to_json();
        assert_eq!(FaultSchedule::from_json(&j).unwrap(), s);
        let read = Call::BackupRead.name();
        assert!(FaultSchedule::from_json(&format!(
            r#"{{"faults":[{{"kind":"fail","function":"{read}","hr":"nope"}}]}}"#
        ))
        .is_err());
        // The JSON names functions by their export names.
        assert!(j.contains(&format!(r#""function": "{read}""#)), "{j}");
    }

    #[test]
    fn an_unknown_function_is_refused_by_name() {
        for (kind, field) in [
            ("fail", "function"),
            ("panic", "function"),
            ("service_stop", "before"),
            ("service_suspend", "before"),
        ] {
            let json = format!(
                r#"{{"faults":[{{"kind":"{kind}","{field}":"BackupRead","hr":"E_FAIL"}}]}}"#
            );
            let e = FaultSchedule::from_json(&json).unwrap_err();
            assert!(
                e.contains(r#""BackupRead" is not a certbcli function"#),
                "{kind}: {e}"
            );
        }
    }

    #[test]
    fn fail_nth_call_uses_the_realistic_failure() {
        let mut st = FaultState::new(FaultSchedule {
            seed: 0,
            faults: vec![Fault::FailNthCall { n: 2, hr: None }],
        });
        assert!(st.before_call(Call::BackupPrepare).is_empty());
        assert_eq!(
            st.before_call(Call::RestoreEnd),
            vec![Action::Fail(HRESULT::E_UNEXPECTED)]
        );
    }

    #[test]
    fn nth_fires_once_and_probability_replays() {
        let mut st = FaultState::new(FaultSchedule {
            seed: 1,
            faults: vec![Fault::Fail {
                function: Call::BackupEnd,
                nth: Some(2),
                hr: "E_FAIL".into(),
                probability: None,
            }],
        });
        assert!(st.before_call(Call::BackupEnd).is_empty());
        assert!(
            st.before_call(Call::BackupRead).is_empty(),
            "another function"
        );
        assert_eq!(
            st.before_call(Call::BackupEnd),
            vec![Action::Fail(HRESULT::E_FAIL)]
        );
        assert!(st.before_call(Call::BackupEnd).is_empty());
        let run = |seed| {
            let mut st = FaultState::new(FaultSchedule {
                seed,
                faults: vec![Fault::Fail {
                    function: Call::BackupEnd,
                    nth: None,
                    hr: "E_FAIL".into(),
                    probability: Some(0.5),
                }],
            });
            (0..64)
                .map(|_| !st.before_call(Call::BackupEnd).is_empty())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
        let hits = run(3).iter().filter(|b| **b).count();
        assert!((16..=48).contains(&hits), "{hits}");
    }
}

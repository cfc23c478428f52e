//! The JSON documents that describe a machine, each one type used by every producer and
//! consumer (`docs/FILE-FORMATS.md` §11):
//!
//! * [`CaState`]: what the machine and its CA are doing. The server's `State` control call
//!   returns it, and `certemu_ca_report` (C API) is it plus `last_start` and
//!   `conformance`, in process and in server mode alike.
//! * [`MachineReport`]: the conformance report of one machine: the server's `Report`
//!   call, the `conformance` member of `certemu_ca_report`, one machine of the report file.
//! * [`ReportFile`]: the report file `CERTADM_EMU_CONFIG` and `certadm-emu serve` write.
//! * [`CaReport`]: what `certemu_ca_report` returns (`include/certemu.h`).

use super::EmulatedCa;
use crate::api::faults::Fault;
use crate::ca::recovery::{DataLoss, RecoveryReport};
use crate::ca::{BackupMark, ServiceState};
use crate::conformance::{Severity, Violation};
use crate::core::{Call, HRESULT};
use crate::event::{hr_hex, Event};
use crate::machine::Identity;
use serde::{Deserialize, Serialize};

/// The state of a machine and its CA.
///
/// The member names are those `include/certemu.h` documents for `certemu_ca_report`;
/// the CA members are absent for a machine without a CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaState {
    /// The NetBIOS name: the server name clients pass.
    pub server_name: String,
    /// The DNS name.
    pub dns_name: String,
    /// The host directory of the machine's disk.
    pub root: String,
    /// The CA, if one is installed.
    #[serde(flatten)]
    pub ca: Option<CaStatus>,
    /// Backup and restore contexts open.
    pub sessions_open: u64,
    /// A backup session is running.
    pub backup_in_progress: bool,
    /// List buffers returned to clients and not yet freed.
    pub outstanding_buffers: u64,
    /// Calls routed to the machine so far (each read counted).
    pub calls: u64,
    /// The caller identity.
    pub identity: Identity,
}

/// The CA part of a [`CaState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaStatus {
    /// The CA's common name.
    pub ca_name: String,
    /// The service state.
    pub service: ServiceState,
    /// Certificates in the database.
    pub record_count: u64,
    /// Revoked ones among them.
    pub revoked_count: u64,
    /// The highest request id (0 without records).
    pub last_request_id: u64,
    /// Numbered log generations present in the log directory.
    pub log_generations: Vec<u32>,
    /// The generation of `edb.log`.
    pub current_generation: u32,
    /// Transactions in `edb.log`.
    pub current_position: u32,
    /// The generation of the checkpoint.
    pub checkpoint_generation: u32,
    /// Transactions of that generation the checkpoint covers.
    pub checkpoint_position: u32,
    /// `DBLastFullBackup`.
    pub last_full_backup: Option<BackupMark>,
    /// `DBLastIncrementalBackup`.
    pub last_incremental_backup: Option<BackupMark>,
    /// `DBLastRecovery` (virtual clock).
    pub last_recovery: Option<i64>,
    /// A restore is registered (`restore_marker` is not null).
    pub restore_marker_present: bool,
    /// The registered restore.
    pub restore_marker: Option<RestoreMarkerState>,
    /// `InterfaceFlags`.
    pub interface_flags: u32,
}

/// A registered restore, as [`CaStatus`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreMarkerState {
    /// Registered and `CertSrvRestoreRegisterComplete` not yet called.
    pub pending: bool,
    /// `LowLogNumber`.
    pub gen_low: u32,
    /// `HighLogNumber`.
    pub gen_high: u32,
    /// Registered through `CertSrvRestoreRegisterThroughFile`.
    pub through_file: bool,
    /// Entries of the restore map.
    pub restore_map_count: u64,
    /// The `hrRestoreState` of `CertSrvRestoreRegisterComplete` (a number), if it was called.
    pub status: Option<HRESULT>,
}

/// The conformance report of one machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineReport {
    /// The machine's NetBIOS name.
    pub server: String,
    /// Calls routed to it (each read counted).
    pub calls: u64,
    /// No violation and nothing left behind.
    pub clean: bool,
    /// The broken rules, in trace order.
    pub violations: Vec<ViolationEntry>,
    /// What the client left behind ([`EmulatedCa::leftovers`]).
    pub leftovers: Vec<String>,
    /// Planned faults that never fired.
    pub unfired_faults: Vec<UnfiredFault>,
    /// The recent calls.
    pub trace: Vec<TraceEntry>,
}

/// One violation of a [`MachineReport`]: the rule written out, and where it was broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationEntry {
    /// The rule's id, e.g. `CB01`.
    pub rule: String,
    /// The rule's name.
    pub name: String,
    /// How bad it is.
    pub severity: Severity,
    /// The rule says the client did not clean up after itself.
    pub cleanup: bool,
    /// Position of the call in the trace.
    pub seq: u64,
    /// The call, rendered like C with its result.
    pub call: String,
    /// What exactly happened.
    pub detail: String,
    /// Where the rule comes from.
    pub spec: String,
    /// What to do instead.
    pub fix: String,
}

impl From<&Violation> for ViolationEntry {
    fn from(v: &Violation) -> ViolationEntry {
        ViolationEntry {
            rule: v.rule.id.into(),
            name: v.rule.name.into(),
            severity: v.rule.severity,
            cleanup: v.rule.cleanup,
            seq: v.seq,
            call: v.call.clone(),
            detail: v.detail.clone(),
            spec: v.rule.spec.into(),
            fix: v.rule.fix.into(),
        }
    }
}

/// A planned fault that never fired: its index in the schedule, and the fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnfiredFault {
    /// Position in the schedule's `faults`.
    pub index: usize,
    /// The fault.
    pub fault: Fault,
}

/// One call of a [`MachineReport`]'s trace, written as an array
/// `[seq, call, count, "0x%08X"]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEntry(
    /// Position in the trace.
    pub u64,
    /// The function.
    pub Call,
    /// Identical calls folded into this one.
    pub u64,
    /// The result.
    #[serde(with = "hr_hex")]
    pub HRESULT,
);

impl From<&Event> for TraceEntry {
    fn from(e: &Event) -> TraceEntry {
        TraceEntry(e.seq, e.call, e.count, e.hr)
    }
}

/// The report file: every machine's [`MachineReport`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportFile {
    /// One report per machine.
    pub machines: Vec<MachineReport>,
}

impl ReportFile {
    /// The file's text (pretty-printed JSON).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }
}

/// What `certemu_ca_report` returns: the [`CaState`] of the CA, the outcome of the
/// last `certemu_ca_start` and the [`MachineReport`], in one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaReport {
    /// The state.
    #[serde(flatten)]
    pub state: CaState,
    /// The last `certemu_ca_start` through this `certemu_ca`, if any.
    pub last_start: Option<LastStart>,
    /// The conformance report.
    pub conformance: MachineReport,
}

/// The outcome of a start: its HRESULT (a number), and what the recovery did if it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastStart {
    /// `S_OK`, or the refusal (an ESE code, the failure given to `RegisterComplete`).
    pub hr: HRESULT,
    /// The recovery, when the start succeeded.
    #[serde(flatten)]
    pub recovery: Option<StartRecovery>,
}

/// What a successful start's recovery did (part of [`LastStart`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRecovery {
    /// A registered restore was recovered.
    pub hard: bool,
    /// Log generations replayed, in order.
    pub replayed_generations: Vec<u32>,
    /// Transactions applied.
    pub transactions: u64,
    /// `edb.log` ended in a torn frame that was cut off.
    pub torn_tail: bool,
    /// A hard recovery whose restored chain ends before the end of its backup set: what
    /// is missing (conformance rule CR04). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss: Option<DataLoss>,
}

impl LastStart {
    /// The outcome of a start that returned `r`.
    pub fn of(r: &crate::Result<RecoveryReport>) -> LastStart {
        match r {
            Ok(rep) => LastStart {
                hr: HRESULT::S_OK,
                recovery: Some(StartRecovery {
                    hard: rep.hard,
                    replayed_generations: rep.replayed_generations.clone(),
                    transactions: rep.transactions as u64,
                    torn_tail: rep.torn_tail,
                    data_loss: rep.data_loss.clone(),
                }),
            },
            Err(e) => LastStart {
                hr: e.hresult(),
                recovery: None,
            },
        }
    }
}

/// `Display` of the documents: their JSON text (`{:#}` pretty-printed), for messages.
macro_rules! display_as_json {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let text = if f.alternate() {
                    serde_json::to_string_pretty(self)
                } else {
                    serde_json::to_string(self)
                };
                f.write_str(&text.map_err(|_| std::fmt::Error)?)
            }
        }
    )*};
}

display_as_json!(CaState, MachineReport, ReportFile, CaReport);

impl EmulatedCa {
    /// The state of the machine and its CA, read in one step.
    pub fn state(&self) -> CaState {
        let outstanding_buffers = self.outstanding_buffers() as u64;
        let machine = &self.host.machine;
        let st = self.host.state.lock();
        let ca = st.ca.as_ref().map(|ca| {
            let (cur, chk) = (ca.current(), ca.checkpoint());
            let restore_marker = ca.restore.marker.as_ref().map(|m| RestoreMarkerState {
                pending: m.pending,
                gen_low: m.gen_low,
                gen_high: m.gen_high,
                through_file: m.through_file,
                restore_map_count: m.restore_map.len() as u64,
                status: m.status,
            });
            CaStatus {
                ca_name: ca.name().to_string(),
                service: ca.service(),
                // Maintained counters: request ids are dense, so the last is the count.
                record_count: ca.record_count(machine) as u64,
                revoked_count: ca.revoked_count(machine) as u64,
                last_request_id: ca.record_count(machine) as u64,
                log_generations: ca.log_generations_on_disk(machine),
                current_generation: cur.generation,
                current_position: cur.pos,
                checkpoint_generation: chk.generation,
                checkpoint_position: chk.pos,
                last_full_backup: ca.last_full_backup(),
                last_incremental_backup: ca.last_incremental_backup(),
                last_recovery: ca.last_recovery(),
                restore_marker_present: restore_marker.is_some(),
                restore_marker,
                interface_flags: ca.interface_flags(),
            }
        });
        CaState {
            server_name: machine.netbios().to_string(),
            dns_name: machine.dns().to_string(),
            root: machine.root().to_string_lossy().into_owned(),
            ca,
            sessions_open: st.sessions.len() as u64,
            backup_in_progress: st.active_backup.is_some(),
            outstanding_buffers,
            calls: st.trace.calls(),
            identity: st.identity,
        }
    }

    /// The conformance report of this machine, as the report file holds it.
    pub fn machine_report(&self) -> MachineReport {
        let r = self.report();
        let leftovers = self.leftovers();
        MachineReport {
            server: self.server_name().to_string(),
            calls: self.call_count(),
            clean: r.is_clean() && leftovers.is_empty(),
            violations: r.violations.iter().map(ViolationEntry::from).collect(),
            leftovers,
            unfired_faults: self
                .unfired_faults()
                .into_iter()
                .map(|(index, fault)| UnfiredFault { index, fault })
                .collect(),
            trace: self.trace().iter().map(TraceEntry::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_has_the_c_report_member_names() {
        let ca = EmulatedCa::builder().records(3).build().unwrap();
        ca.revoke(2).unwrap();
        let v = serde_json::to_value(ca.state()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "server_name",
                "dns_name",
                "root",
                "ca_name",
                "service",
                "record_count",
                "revoked_count",
                "last_request_id",
                "log_generations",
                "current_generation",
                "current_position",
                "checkpoint_generation",
                "checkpoint_position",
                "last_full_backup",
                "last_incremental_backup",
                "last_recovery",
                "restore_marker_present",
                "restore_marker",
                "interface_flags",
                "sessions_open",
                "backup_in_progress",
                "outstanding_buffers",
                "calls",
                "identity",
            ]
        );
        assert_eq!(v["service"], "running");
        assert_eq!(v["revoked_count"], 1);
        assert_eq!(v["last_request_id"], 3);
        let back: CaState = serde_json::from_value(v).unwrap();
        assert_eq!(back, ca.state());
    }

    #[test]
    fn a_machine_without_a_ca_has_no_ca_members() {
        let ca = EmulatedCa::builder().without_ca().build().unwrap();
        let text = serde_json::to_string(&ca.state()).unwrap();
        assert!(!text.contains("ca_name"), "{text}");
        let back: CaState = serde_json::from_str(&text).unwrap();
        assert_eq!(back.ca, None);
    }

    #[test]
    fn last_start_has_the_documented_shape() {
        let failed = LastStart {
            hr: HRESULT(-939523505),
            recovery: None,
        };
        assert_eq!(
            serde_json::to_string(&failed).unwrap(),
            r#"{"hr":-939523505}"#
        );
        let ok = LastStart::of(&Ok(RecoveryReport {
            hard: true,
            replayed_generations: vec![2, 3],
            transactions: 5,
            ..Default::default()
        }));
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"hr":0,"hard":true,"replayed_generations":[2,3],"transactions":5,"torn_tail":false}"#
        );
        assert_eq!(
            serde_json::from_str::<LastStart>(r#"{"hr":-939523505}"#).unwrap(),
            failed
        );
    }

    #[test]
    fn a_report_round_trips() {
        let ca = EmulatedCa::builder().build().unwrap();
        ca.set_faults(
            crate::api::faults::FaultSchedule::from_json(
                r#"{"faults":[{"kind":"fail","function":"CertSrvBackupRead","nth":1,"hr":"E_FAIL"}]}"#,
            )
            .unwrap(),
        )
        .unwrap();
        let h = crate::api::backup_prepare(ca.server_name(), 0, 1).unwrap();
        let r = ca.machine_report();
        assert_eq!(r.violations[0].rule, "CB01");
        assert_eq!(r.trace[0].1, Call::BackupPrepare);
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            text.contains(r#""trace":[[1,"CertSrvBackupPrepareW",1,"0x00000000"]]"#),
            "{text}"
        );
        assert!(
            text.contains(r#""unfired_faults":[{"index":0,"fault":{"#),
            "{text}"
        );
        assert!(text.contains(r#""severity":"error""#), "{text}");
        assert_eq!(serde_json::from_str::<MachineReport>(&text).unwrap(), r);
        crate::api::backup_end(h).unwrap();
    }
}

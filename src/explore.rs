//! Fail at every step: run a client once to count its calls, then once more per call
//! with that call failing, and check after each run that the client cleaned up.

#![forbid(unsafe_code)]

use crate::api::faults::{Fault, FaultSchedule};
use crate::conformance::Violation;
use crate::core::HRESULT;
use crate::EmulatedCa;
use std::fmt;

/// One run with call `k` failing.
#[derive(Debug, Clone)]
pub struct StepRun {
    /// The failing call's number (1-based).
    pub k: u64,
    /// The function at that position in the first run.
    pub function: String,
    /// The HRESULT injected.
    pub hr: HRESULT,
    /// What the client returned.
    pub client_result: Result<(), String>,
    /// Cleanup rules broken in this run.
    pub violations: Vec<Violation>,
    /// Other leftovers seen on the CA (sessions, buffers, registered restores).
    pub leftovers: Vec<String>,
}

impl StepRun {
    /// True if the client cleaned up after the failure.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty() && self.leftovers.is_empty()
    }
}

/// The exploration.
#[derive(Debug, Clone)]
pub struct ExploreReport {
    /// Calls the client made without faults.
    pub calls: u64,
    /// One run per call.
    pub runs: Vec<StepRun>,
}

impl ExploreReport {
    /// Runs where the client left something behind.
    pub fn failures(&self) -> Vec<&StepRun> {
        self.runs.iter().filter(|r| !r.is_clean()).collect()
    }
}

impl fmt::Display for ExploreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bad = self.failures();
        writeln!(
            f,
            "fail at every step: {} calls, {} runs, {} with cleanup problems",
            self.calls,
            self.runs.len(),
            bad.len()
        )?;
        for r in &self.runs {
            let status = if r.is_clean() { "clean" } else { "PROBLEM" };
            let res = match &r.client_result {
                Ok(()) => "client returned Ok".to_string(),
                Err(e) => format!("client returned error: {e}"),
            };
            writeln!(
                f,
                "  k={:<4} {:<38} {} -> {status}; {res}",
                r.k, r.function, r.hr
            )?;
            for v in &r.violations {
                writeln!(
                    f,
                    "      {} {}: {} (fix: {})",
                    v.rule.id, v.rule.name, v.detail, v.rule.fix
                )?;
            }
            for l in &r.leftovers {
                writeln!(f, "      leftover: {l}")?;
            }
        }
        Ok(())
    }
}

fn function_at(ca: &EmulatedCa, k: u64) -> String {
    ca.trace()
        .iter()
        .find(|e| e.seq <= k && k < e.seq + e.count)
        .map_or_else(|| "?".into(), |e| e.call.to_string())
}

/// Runs `client` once on a CA from `build` to count its calls, then once per call `k`
/// with call `k` failing (with the realistic HRESULT for that function, or `hr`), and
/// checks the cleanup rules after each run.
///
/// The first run must succeed: a client that fails without faults is reported as an error.
pub fn fail_at_every_step<E: fmt::Display>(
    build: impl Fn() -> crate::Result<EmulatedCa>,
    client: impl Fn(&EmulatedCa) -> Result<(), E>,
    hr: Option<HRESULT>,
) -> Result<ExploreReport, String> {
    let ca = build().map_err(|e| e.to_string())?;
    client(&ca).map_err(|e| format!("the client fails without any fault: {e}"))?;
    let calls = ca.call_count();
    let mut functions = Vec::new();
    for k in 1..=calls {
        functions.push(function_at(&ca, k));
    }
    drop(ca);
    let mut runs = Vec::new();
    for k in 1..=calls {
        let ca = build().map_err(|e| e.to_string())?;
        ca.set_faults(FaultSchedule {
            seed: 0,
            faults: vec![Fault::FailNthCall {
                n: k,
                hr: hr.map(|h| format!("{:#010X}", h.as_u32())),
            }],
        })
        .map_err(|e| e.to_string())?;
        let client_result = client(&ca).map_err(|e| e.to_string());
        let function = functions[(k - 1) as usize].clone();
        let injected = ca
            .trace()
            .iter()
            .find(|e| e.seq == k)
            .map_or(HRESULT::S_OK, |e| e.hr);
        let report = ca.report();
        runs.push(StepRun {
            k,
            function,
            hr: injected,
            client_result,
            violations: report.cleanup_violations().into_iter().cloned().collect(),
            leftovers: ca.leftovers(),
        });
    }
    Ok(ExploreReport { calls, runs })
}

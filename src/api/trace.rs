//! The call trace: every certbcli call routed to a host, with its arguments
//! (strings decoded), result, out-values and duration (the events are
//! [`crate::event::Event`]).
//!
//! Each host keeps its recent events in memory, raw ([`RawEvent`]: nothing formatted on
//! the call path), and feeds every event to its conformance checker as it happens.
//! Events are rendered when the trace is read ([`Trace::events`]), and, when a sink is
//! set, as each call happens: `CERTADM_EMU_TRACE` copies every event as a JSON line to
//! `stderr` or to a file, in the spirit of `WINEDEBUG=+relay`. Consecutive successful
//! reads of one file are folded into one event with a `count`, so a 1 TiB backup does not
//! cost 2 million events.

use crate::core::{Call, HRESULT};
use crate::event::{Event, RawEvent, RawValue};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

/// How many recent events a host keeps for display ([`Trace::events`]); the conformance
/// checker sees every event as it happens, so the bound costs no check.
pub(crate) const TRACE_CAPACITY: usize = 4096;

/// A host's trace: the recent events, and the conformance checker fed with all of them.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    events: VecDeque<RawEvent>,
    next_seq: u64,
    dropped: u64,
    checker: crate::conformance::Checker,
}

impl Trace {
    /// Appends an event, folding it into the previous one when both are successful
    /// reads on the same handle.
    pub(crate) fn push(&mut self, mut e: RawEvent) {
        self.next_seq += 1;
        e.seq = self.next_seq;
        if SINK_ON.load(Ordering::Relaxed) {
            sink_write(&e.to_event());
        }
        self.checker.feed(&e);
        if e.call == Call::BackupRead && e.hr == HRESULT::S_OK {
            if let Some(last) = self.events.back_mut() {
                if last.call == e.call && last.hr == HRESULT::S_OK && last.handle() == e.handle() {
                    last.count += 1;
                    last.elapsed_ns += e.elapsed_ns;
                    let add = e.out.get("read").and_then(RawValue::as_u64).unwrap_or(0);
                    if let Some(RawValue::U64(total)) = last.out.get_mut("read") {
                        *total += add;
                    }
                    return;
                }
            }
        }
        if self.events.len() == TRACE_CAPACITY {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(e);
    }

    /// The recent events (at most [`TRACE_CAPACITY`], oldest first), rendered.
    pub(crate) fn events(&self) -> Vec<Event> {
        self.events.iter().map(RawEvent::to_event).collect()
    }

    /// Calls recorded (folded reads count each call).
    pub(crate) fn calls(&self) -> u64 {
        self.next_seq
    }

    /// The conformance checker that has seen every event.
    pub(crate) fn checker(&self) -> &crate::conformance::Checker {
        &self.checker
    }

    /// The checker, for findings that are not calls (a start's recovery).
    pub(crate) fn checker_mut(&mut self) -> &mut crate::conformance::Checker {
        &mut self.checker
    }
}

// ----- the environment sink --------------------------------------------------------

type Sink = Option<Arc<Mutex<Box<dyn Write + Send>>>>;

static SINK: LazyLock<Sink> = LazyLock::new(|| {
    let v = std::env::var("CERTADM_EMU_TRACE").ok()?;
    let w: Box<dyn Write + Send> = match v.as_str() {
        "" | "0" => return None,
        "1" | "stderr" => Box::new(std::io::stderr()),
        path => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()?,
        ),
    };
    Some(Arc::new(Mutex::new(w)))
});

/// A sink set by code (`certadm-emu demo --trace FILE`), taking precedence over the variable.
static CODE_SINK: LazyLock<Mutex<Sink>> = LazyLock::new(|| Mutex::new(None));

/// True when a sink may be set: checked before any lock is taken on the call path.
static SINK_ON: LazyLock<AtomicBool> = LazyLock::new(|| AtomicBool::new(SINK.is_some()));

/// Sends every traced event of this process, as JSON lines, to `w` (or stops with `None`).
pub fn set_sink(w: Option<Box<dyn Write + Send>>) {
    let on = w.is_some() || SINK.is_some();
    *CODE_SINK.lock() = w.map(|w| Arc::new(Mutex::new(w)));
    SINK_ON.store(on, Ordering::Relaxed);
}

fn sink_write(e: &Event) {
    let code = CODE_SINK.lock().clone();
    let sink = code.or_else(|| SINK.clone());
    if let Some(s) = sink {
        // One write per line: processes appending to one file do not interleave lines.
        let mut line = e.to_json();
        line.push('\n');
        let _ = s.lock().write_all(line.as_bytes());
    }
}

//! The call trace: every certbcli call routed to a host, with its arguments
//! (strings decoded), result, out-values and duration (the events are
//! [`crate::event::Event`]).
//!
//! Each host keeps its recent events in memory, raw (`RawEvent`: nothing formatted on
//! the call path), and feeds every event to its conformance checker as it happens.
//! Events are rendered when the trace is read (`Trace::events`), and, when a sink is
//! set, as each call happens: `CERTADM_EMU_TRACE` copies every event as a JSON line to
//! `stderr` or to a file, in the spirit of `WINEDEBUG=+relay`. Consecutive successful
//! reads of one file are folded into one event with a `count`, so a 1 TiB backup does not
//! cost 2 million events.

use crate::core::{Call, HRESULT};
use crate::event::{Event, Extra, HostNames, RawEvent, RawView};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

/// How many recent events a host keeps for display ([`Trace::events`]); the conformance
/// checker sees every event as it happens, so the bound costs no check.
pub(crate) const TRACE_CAPACITY: usize = 4096;

/// A host's trace: the recent events, and the conformance checker fed with all of them.
#[derive(Debug)]
pub(crate) struct Trace {
    /// The recent events, a ring: plain records, so that recording one is one copy and
    /// evicting one costs nothing. Filled up to [`TRACE_CAPACITY`], then each event
    /// overwrites the oldest, at `oldest`.
    events: Vec<RawEvent>,
    oldest: usize,
    /// The extras of the events that have one, in the same order.
    extras: VecDeque<Extra>,
    /// The host's own names, which events refer to.
    names: HostNames,
    next_seq: u64,
    dropped: u64,
    checker: crate::conformance::Checker,
}

impl Trace {
    /// An empty trace of the host with these names.
    pub(crate) fn new(names: HostNames) -> Trace {
        Trace {
            events: Vec::new(),
            oldest: 0,
            extras: VecDeque::new(),
            names,
            next_seq: 0,
            dropped: 0,
            checker: Default::default(),
        }
    }

    /// Appends an event (and its extra), folding it into the previous one when both are
    /// successful reads on the same handle.
    #[inline]
    pub(crate) fn push(&mut self, mut e: RawEvent, mut extra: Option<Extra>) {
        self.next_seq += 1;
        e.seq = self.next_seq;
        if let Some(x) = &mut extra {
            x.seq = e.seq;
        }
        let view = RawView {
            event: &e,
            extra: extra.as_ref(),
            names: &self.names,
        };
        if SINK_ON.load(Ordering::Relaxed) {
            sink_write(&view.to_event());
        }
        self.checker.feed(&view);
        if e.call == Call::BackupRead && e.hr == HRESULT::S_OK && extra.is_none() {
            if let Some(last) = self.last_mut() {
                if last.call == e.call
                    && last.hr == HRESULT::S_OK
                    && !last.has_extra
                    && last.inline_handle() == e.inline_handle()
                {
                    last.fold(&e);
                    return;
                }
            }
        }
        if self.events.len() < TRACE_CAPACITY {
            self.events.push(e);
        } else {
            let old = std::mem::replace(&mut self.events[self.oldest], e);
            self.oldest = (self.oldest + 1) % TRACE_CAPACITY;
            if old.has_extra {
                let x = self.extras.pop_front();
                debug_assert_eq!(x.map(|x| x.seq), Some(old.seq));
            }
            self.dropped += 1;
        }
        if let Some(x) = extra {
            self.extras.push_back(x);
        }
    }

    /// The newest event.
    fn last_mut(&mut self) -> Option<&mut RawEvent> {
        let newest = match self.oldest {
            0 => self.events.len().checked_sub(1)?,
            i => i - 1,
        };
        self.events.get_mut(newest)
    }

    /// The recent events (at most [`TRACE_CAPACITY`], oldest first), rendered.
    pub(crate) fn events(&self) -> Vec<Event> {
        let mut extras = self.extras.iter();
        let (newer, older) = self.events.split_at(self.oldest);
        older
            .iter()
            .chain(newer)
            .map(|e| {
                let extra = if e.has_extra { extras.next() } else { None };
                debug_assert_eq!(extra.map(|x| x.seq), e.has_extra.then_some(e.seq));
                RawView {
                    event: e,
                    extra,
                    names: &self.names,
                }
                .to_event()
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Extras, Form, RawMessage, Slot};

    static READ: Form = Form::new(&["hbc", "cbBuffer"], &["read"]);
    static END: Form = Form::new(&["hbc"], &[]);

    fn read(h: u64, n: u64) -> (RawEvent, Option<Extra>) {
        RawEvent::new(
            Call::BackupRead,
            1,
            &READ,
            [Slot::handle(h), Slot::num(n)],
            HRESULT::S_OK,
            Some([Slot::num(n)]),
            Extras::default(),
            None,
        )
    }

    fn failed_end(h: u64) -> (RawEvent, Option<Extra>) {
        RawEvent::new(
            Call::BackupEnd,
            1,
            &END,
            [Slot::handle(h)],
            HRESULT::E_HANDLE,
            None::<[Slot; 0]>,
            Extras::default(),
            Some(RawMessage::Text(format!("end {h}"))),
        )
    }

    #[test]
    fn the_ring_keeps_the_newest_events_with_their_extras_in_order() {
        let mut t = Trace::new(["H".into(), "h.example".into()]);
        // Reads on one handle fold; a read on another does not.
        for (h, n) in [(5, 10), (5, 20), (7, 1)] {
            let (e, x) = read(h, n);
            t.push(e, x);
        }
        let ev = t.events();
        assert_eq!(ev.len(), 2);
        assert_eq!((ev[0].count, ev[0].seq), (2, 1));
        assert_eq!(ev[0].out("read"), Some(&crate::event::Value::U64(30)));
        // Past the capacity, the oldest go, with their extras (every third event has one).
        let total = TRACE_CAPACITY as u64 + 100;
        for i in 0..total {
            let (e, x) = if i % 3 == 0 {
                failed_end(i)
            } else {
                read(1000 + i, 1)
            };
            t.push(e, x);
        }
        let ev = t.events();
        assert_eq!(ev.len(), TRACE_CAPACITY);
        assert_eq!(t.calls(), 3 + total);
        let first = 3 + total - TRACE_CAPACITY as u64 + 1;
        for (k, e) in ev.iter().enumerate() {
            assert_eq!(e.seq, first + k as u64);
            let i = e.seq - 4;
            if i % 3 == 0 {
                assert_eq!(e.message.as_deref(), Some(format!("end {i}").as_str()));
            } else {
                assert_eq!(e.message, None);
                assert_eq!(e.handle(), Some(1000 + i));
            }
        }
        // A read right after a wrap folds into the newest event.
        let (e, x) = read(1000 + total - 1, 2);
        t.push(e, x);
        let last = t.events().pop().unwrap();
        assert_eq!(
            (last.count, last.out("read")),
            (2, Some(&crate::event::Value::U64(3)))
        );
    }
}

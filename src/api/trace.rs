//! The call trace: every certbcli call routed to a host, with its arguments
//! (strings decoded), result, out-values and duration.
//!
//! Each host keeps its trace in memory (the conformance checker reads it), and
//! `CERTADM_EMU_TRACE` copies every event as a JSON line to `stderr` or to a file,
//! in the spirit of `WINEDEBUG=+relay`. Consecutive successful reads of one file are
//! folded into one event with a `count`, so a 1 TiB backup does not cost 2 million events.

use crate::core::{Error, HRESULT};
use parking_lot::Mutex;
use serde_json::{json, Map, Value as Json};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

/// An argument or out-value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A number.
    U64(u64),
    /// A handle (raw value; 0 is NULL).
    Handle(u64),
    /// A decoded string.
    Str(String),
    /// A decoded list (entries with their CSBFT prefix shown as `\u{..}`).
    List(Vec<String>),
    /// Absent / NULL.
    Null,
}

impl Value {
    fn to_json(&self) -> Json {
        match self {
            Value::U64(v) => json!(v),
            Value::Handle(h) => json!(format!("{h:#x}")),
            Value::Str(s) => json!(s),
            Value::List(l) => json!(l),
            Value::Null => Json::Null,
        }
    }

    fn from_json(key: &str, v: &Json) -> Value {
        match v {
            Json::Number(n) => Value::U64(n.as_u64().unwrap_or(0)),
            Json::String(s) if key == "hbc" || key.ends_with("handle") => {
                Value::Handle(u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or(0))
            }
            Json::String(s) if key == "buffer" || key == "pv" => {
                Value::Handle(u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or(0))
            }
            Json::String(s) => Value::Str(s.clone()),
            Json::Array(a) => Value::List(
                a.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect(),
            ),
            _ => Value::Null,
        }
    }

    /// The number, if this is one (handles included).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::U64(v) | Value::Handle(v) => Some(*v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Position in the host's trace (1-based; folded reads keep the first one's).
    pub seq: u64,
    /// The function.
    pub call: Cow<'static, str>,
    /// The calling client (thread).
    pub client: u64,
    /// Arguments, in parameter order.
    pub args: Vec<(Cow<'static, str>, Value)>,
    /// The result.
    pub hr: HRESULT,
    /// The emulator's message for a failure.
    pub message: Option<String>,
    /// Out-values (handle, size, list, bytes read).
    pub out: Vec<(Cow<'static, str>, Value)>,
    /// Identical successful calls folded into this event (reads).
    pub count: u64,
    /// Duration in nanoseconds (summed when folded).
    pub elapsed_ns: u64,
}

impl Event {
    /// An argument by name.
    pub fn arg(&self, name: &str) -> Option<&Value> {
        self.args.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// An out-value by name.
    pub fn out(&self, name: &str) -> Option<&Value> {
        self.out.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The handle argument, or the handle an out-value created.
    pub fn handle(&self) -> Option<u64> {
        self.arg("hbc")
            .or_else(|| self.out("hbc"))
            .and_then(|v| v.as_u64())
    }

    /// The call written like C: `CertSrvBackupRead(hbc=0x..., cbBuffer=65536) -> S_OK read=65536`.
    pub fn render(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|(k, v)| format!("{k}={}", render_value(v)))
            .collect();
        let out: Vec<String> = self
            .out
            .iter()
            .map(|(k, v)| format!(" {k}={}", render_value(v)))
            .collect();
        let times = if self.count > 1 {
            format!(" (x{})", self.count)
        } else {
            String::new()
        };
        format!(
            "#{} {}({}) -> {}{}{}",
            self.seq,
            self.call,
            args.join(", "),
            self.hr,
            out.join(""),
            times
        )
    }

    /// The event as one JSON line.
    pub fn to_json(&self) -> String {
        let obj = |kv: &[(Cow<'static, str>, Value)]| {
            let mut m = Map::new();
            for (k, v) in kv {
                m.insert(k.to_string(), v.to_json());
            }
            Json::Object(m)
        };
        let mut j = json!({
            "seq": self.seq,
            "call": self.call,
            "client": self.client,
            "args": obj(&self.args),
            "hr": format!("{:#010X}", self.hr.as_u32()),
            "out": obj(&self.out),
            "count": self.count,
            "elapsed_ns": self.elapsed_ns,
        });
        if let Some(n) = self.hr.name() {
            j["hr_name"] = json!(n);
        }
        if let Some(m) = &self.message {
            j["message"] = json!(m);
        }
        j.to_string()
    }

    /// Parses a line written by [`Event::to_json`].
    pub fn from_json(line: &str) -> Result<Event, String> {
        let j: Json = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let kv = |field: &str| -> Vec<(Cow<'static, str>, Value)> {
            j.get(field)
                .and_then(|o| o.as_object())
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (Cow::Owned(k.clone()), Value::from_json(k, v)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let hr = j
            .get("hr")
            .and_then(|h| h.as_str())
            .and_then(HRESULT::parse)
            .ok_or("missing or bad \"hr\"")?;
        Ok(Event {
            seq: j.get("seq").and_then(|v| v.as_u64()).unwrap_or(0),
            call: Cow::Owned(
                j.get("call")
                    .and_then(|v| v.as_str())
                    .ok_or("missing \"call\"")?
                    .to_string(),
            ),
            client: j.get("client").and_then(|v| v.as_u64()).unwrap_or(0),
            args: kv("args"),
            hr,
            message: j
                .get("message")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            out: kv("out"),
            count: j.get("count").and_then(|v| v.as_u64()).unwrap_or(1),
            elapsed_ns: j.get("elapsed_ns").and_then(|v| v.as_u64()).unwrap_or(0),
        })
    }
}

fn render_value(v: &Value) -> String {
    match v {
        Value::U64(n) => n.to_string(),
        Value::Handle(h) => format!("{h:#x}"),
        Value::Str(s) => format!("{s:?}"),
        Value::List(l) => format!("{l:?}"),
        Value::Null => "NULL".into(),
    }
}

/// How many recent events a host keeps for display ([`Trace::events`]); the conformance
/// checker sees every event as it happens, so the bound costs no check.
pub const TRACE_CAPACITY: usize = 4096;

/// A host's trace: the recent events, and the conformance checker fed with all of them.
#[derive(Debug, Default)]
pub struct Trace {
    events: VecDeque<Event>,
    next_seq: u64,
    dropped: u64,
    checker: crate::conformance::Checker,
}

impl Trace {
    /// Appends an event, folding it into the previous one when both are successful
    /// reads on the same handle.
    pub fn push(&mut self, mut e: Event) {
        self.next_seq += 1;
        e.seq = self.next_seq;
        if SINK_ON.load(Ordering::Relaxed) {
            sink_write(&e);
        }
        self.checker.feed(&e);
        if e.call == "CertSrvBackupRead" && e.hr == HRESULT::S_OK {
            if let Some(last) = self.events.back_mut() {
                if last.call == e.call && last.hr == HRESULT::S_OK && last.handle() == e.handle() {
                    last.count += 1;
                    last.elapsed_ns += e.elapsed_ns;
                    let add = e.out("read").and_then(|v| v.as_u64()).unwrap_or(0);
                    if let Some((_, Value::U64(total))) =
                        last.out.iter_mut().find(|(k, _)| k == "read")
                    {
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

    /// The recent events (at most [`TRACE_CAPACITY`], oldest first).
    pub fn events(&self) -> Vec<Event> {
        self.events.iter().cloned().collect()
    }

    /// Older events no longer kept (they were checked all the same).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Calls recorded (folded reads count each call).
    pub fn calls(&self) -> u64 {
        self.next_seq
    }

    /// The conformance checker that has seen every event.
    pub fn checker(&self) -> &crate::conformance::Checker {
        &self.checker
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
        let _ = writeln!(s.lock(), "{}", e.to_json());
    }
}

// ----- the call context ---------------------------------------------------------------

/// The call being made on this thread: the API records the host it routes to here.
pub(crate) struct CallCtx {
    pub host: Option<Arc<super::registry::Host>>,
}

thread_local! {
    pub(crate) static CURRENT: RefCell<Option<CallCtx>> = const { RefCell::new(None) };
}

/// Records the host the current call was routed to.
pub(crate) fn routed_to(host: &Arc<super::registry::Host>) {
    CURRENT.with(|c| {
        if let Some(ctx) = c.borrow_mut().as_mut() {
            ctx.host = Some(host.clone());
        }
    });
}

/// Runs one API call: routes, records the event in the host's trace.
pub(crate) fn instrument<R>(
    call: &'static str,
    args: impl FnOnce() -> Vec<(&'static str, Value)>,
    f: impl FnOnce() -> crate::Result<R>,
    out: impl FnOnce(&R) -> Vec<(&'static str, Value)>,
) -> crate::Result<R> {
    let outer = CURRENT.with(|c| c.borrow_mut().replace(CallCtx { host: None }));
    let start = Instant::now();
    let r = f();
    let elapsed = start.elapsed().as_nanos() as u64;
    let ctx = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    if let Some(host) = ctx.and_then(|c| c.host) {
        if !host.tracing.load(Ordering::Relaxed) {
            return r;
        }
        let (hr, message, outv) = match &r {
            Ok(v) => (HRESULT::S_OK, None, out(v)),
            Err(e) => (e.hresult(), Some(e.to_string()), Vec::new()),
        };
        let e = Event {
            seq: 0,
            call: Cow::Borrowed(call),
            client: super::current_client(),
            args: args()
                .into_iter()
                .map(|(k, v)| (Cow::Borrowed(k), v))
                .collect(),
            hr,
            message,
            out: outv
                .into_iter()
                .map(|(k, v)| (Cow::Borrowed(k), v))
                .collect(),
            count: 1,
            elapsed_ns: elapsed,
        };
        host.state.lock().trace.push(e);
    }
    r
}

/// A list as trace entries (type prefixes escaped).
pub fn list_value(l: &crate::WideList, prefixed: bool) -> Value {
    Value::List(
        l.entries(prefixed)
            .into_iter()
            .map(|e| match e.kind {
                Some(k) if (0x20..0x7F).contains(&k) => format!("{}{}", k as u8 as char, e.path),
                Some(k) => format!("\\u{{{k:x}}}{}", e.path),
                None => e.path,
            })
            .collect(),
    )
}

/// An error's HRESULT for an event (used by the checker's tests).
pub fn hr_of(e: &Error) -> HRESULT {
    e.hresult()
}

/// Records a panic caught at the ABI boundary: the call becomes an `E_UNEXPECTED` event in
/// the trace of the host it was routed to (if it got that far).
pub(crate) fn record_panic(call: &'static str, message: &str) {
    let ctx = CURRENT.with(|c| c.borrow_mut().take());
    if let Some(host) = ctx.and_then(|c| c.host) {
        let e = Event {
            seq: 0,
            call: Cow::Borrowed(call),
            client: super::current_client(),
            args: vec![],
            hr: HRESULT::E_UNEXPECTED,
            message: Some(format!("{call}: internal emulator panic: {message}")),
            out: vec![],
            count: 1,
            elapsed_ns: 0,
        };
        // The lock may be poisoned-free (parking_lot) but held by this thread if the panic
        // happened inside it; try_lock avoids a deadlock in that case.
        if let Some(mut st) = host.state.try_lock() {
            st.trace.push(e);
        }
    }
}

//! One traced call ([`Event`]) and its JSON line, the format of `CERTADM_EMU_TRACE`,
//! `certemu_ca_trace`, the server's `Trace` pages and `certadm-emu lint`
//! (`docs/FILE-FORMATS.md` §11.1):
//!
//! ```json
//! {"seq":3,"call":"CertSrvBackupRead","client":1,"args":{"hbc":"0x10001","cbBuffer":65536},
//!  "hr":"0x00000000","out":{"read":65536},"count":1,"elapsed_ns":812,"hr_name":"S_OK"}
//! ```
//!
//! This module sits below the conformance checker and the API: both read events, neither
//! owns them. On the call path an event is recorded raw ([`RawEvent`]): the function is a
//! [`Call`] (one byte), argument and out-value names are one `&'static` slice borrowed from
//! the call site, values sit in a fixed inline layout (numbers and handles as they are, a
//! server name shared with the host's own name when equal, a returned list kept as the
//! list, a failure kept as its [`Error`](crate::core::Error)). Nothing is formatted there:
//! an [`Event`], its JSON line and [`Event::render`] are made when the trace is read.
#![forbid(unsafe_code)]

use crate::core::{Call, WideList, HRESULT};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

/// An argument or out-value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A number.
    U64(u64),
    /// A handle or buffer address (raw value; 0 is NULL), written as hex text (`"0x10001"`).
    Handle(u64),
    /// A decoded string.
    Str(String),
    /// A decoded list (entries with their CSBFT prefix shown as `\u{..}`).
    List(Vec<String>),
    /// Absent / NULL.
    Null,
}

/// A number argument (`DWORD`, `ULONG`, sizes).
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::U64(v.into())
    }
}

/// A 64-bit number argument.
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::U64(v)
    }
}

/// A string argument, decoded.
impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.into())
    }
}

impl Value {
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

    /// True for the names whose values are handles or buffer addresses: `hbc`, `buffer`,
    /// `pv` and names ending in `handle`. A JSON string under such a name is read as hex.
    pub fn is_handle_name(name: &str) -> bool {
        matches!(name, "hbc" | "buffer" | "pv") || name.ends_with("handle")
    }

    /// The value a JSON line holds under `name` (numbers, hex handles, strings, lists of
    /// strings; anything else is [`Value::Null`]).
    fn from_json(name: &str, v: serde_json::Value) -> Value {
        use serde_json::Value as Json;
        match v {
            Json::Number(n) => Value::U64(n.as_u64().unwrap_or(0)),
            Json::String(s) if Value::is_handle_name(name) => {
                Value::Handle(u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or(0))
            }
            Json::String(s) => Value::Str(s),
            Json::Array(a) => Value::List(
                a.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect(),
            ),
            _ => Value::Null,
        }
    }

    fn render(&self) -> String {
        match self {
            Value::U64(n) => n.to_string(),
            Value::Handle(h) => format!("{h:#x}"),
            Value::Str(s) => format!("{s:?}"),
            Value::List(l) => format!("{l:?}"),
            Value::Null => "NULL".into(),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::U64(v) => s.serialize_u64(*v),
            Value::Handle(h) => s.collect_str(&format_args!("{h:#x}")),
            Value::Str(v) => s.serialize_str(v),
            Value::List(l) => l.serialize(s),
            Value::Null => s.serialize_unit(),
        }
    }
}

/// Named values in parameter order: an event's arguments or out-values, a JSON object in
/// the line. Names of events built in process borrow `&'static str`; parsed names own
/// their text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<(Cow<'static, str>, Value)>);

impl Fields {
    /// The value named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The value named `name`, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.0.iter_mut().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// True if there is no value.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<(&'static str, Value)>> for Fields {
    fn from(v: Vec<(&'static str, Value)>) -> Fields {
        Fields(v.into_iter().map(|(k, v)| (Cow::Borrowed(k), v)).collect())
    }
}

impl Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k.as_ref(), v)))
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        // serde_json keeps the order of the object (`preserve_order`).
        let m = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        Ok(Fields(
            m.into_iter()
                .map(|(k, v)| {
                    let v = Value::from_json(&k, v);
                    (Cow::Owned(k), v)
                })
                .collect(),
        ))
    }
}

/// One call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "Line<'static>")]
pub struct Event {
    /// Position in the host's trace (1-based; folded reads keep the first one's).
    pub seq: u64,
    /// The function.
    pub call: Call,
    /// The calling client (thread, or server connection).
    pub client: u64,
    /// Arguments, in parameter order.
    pub args: Fields,
    /// The result.
    pub hr: HRESULT,
    /// The emulator's message for a failure.
    pub message: Option<String>,
    /// Out-values (handle, size, list, bytes read).
    pub out: Fields,
    /// Identical successful calls folded into this event (reads).
    pub count: u64,
    /// Duration in nanoseconds (summed when folded).
    pub elapsed_ns: u64,
}

/// The JSON line of an [`Event`], field by field in the order written: what
/// `docs/FILE-FORMATS.md` §11.1 documents. Every field but `call` and `hr` may be absent
/// when read (`count` then is 1, the others 0 or empty); unknown fields are ignored.
#[derive(Serialize, Deserialize)]
struct Line<'a> {
    #[serde(default)]
    seq: u64,
    call: Call,
    #[serde(default)]
    client: u64,
    #[serde(default)]
    args: Cow<'a, Fields>,
    #[serde(with = "hr_hex")]
    hr: HRESULT,
    #[serde(default)]
    out: Cow<'a, Fields>,
    #[serde(default = "one")]
    count: u64,
    #[serde(default)]
    elapsed_ns: u64,
    /// Written for the reader; ignored when read (`hr` is the value).
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    hr_name: Option<&'static str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<Cow<'a, str>>,
}

fn one() -> u64 {
    1
}

impl From<Line<'_>> for Event {
    fn from(l: Line<'_>) -> Event {
        Event {
            seq: l.seq,
            call: l.call,
            client: l.client,
            args: l.args.into_owned(),
            hr: l.hr,
            message: l.message.map(Cow::into_owned),
            out: l.out.into_owned(),
            count: l.count,
            elapsed_ns: l.elapsed_ns,
        }
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Line {
            seq: self.seq,
            call: self.call,
            client: self.client,
            args: Cow::Borrowed(&self.args),
            hr: self.hr,
            out: Cow::Borrowed(&self.out),
            count: self.count,
            elapsed_ns: self.elapsed_ns,
            hr_name: self.hr.name(),
            message: self.message.as_deref().map(Cow::Borrowed),
        }
        .serialize(s)
    }
}

impl Event {
    /// An event of `call` with its arguments and result, not yet numbered (`seq` 0) and
    /// not folded (`count` 1).
    pub fn new(call: Call, client: u64, args: Fields, hr: HRESULT) -> Event {
        Event {
            seq: 0,
            call,
            client,
            args,
            hr,
            message: None,
            out: Fields::default(),
            count: 1,
            elapsed_ns: 0,
        }
    }

    /// An argument by name.
    pub fn arg(&self, name: &str) -> Option<&Value> {
        self.args.get(name)
    }

    /// An out-value by name.
    pub fn out(&self, name: &str) -> Option<&Value> {
        self.out.get(name)
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
            .0
            .iter()
            .map(|(k, v)| format!("{k}={}", v.render()))
            .collect();
        let out: Vec<String> = self
            .out
            .0
            .iter()
            .map(|(k, v)| format!(" {k}={}", v.render()))
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

    /// The event as one JSON line (without the newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event always serialises")
    }

    /// Parses one JSON line. An unknown function name is an error that names it.
    pub fn from_json(line: &str) -> Result<Event, String> {
        serde_json::from_str(line).map_err(|e| e.to_string())
    }
}

// ----- raw events: what the call path records -----------------------------------------

/// An argument or out-value as the call path records it; [`RawValue::to_value`] makes the
/// [`Value`] of the event when the trace is read.
#[derive(Debug, Clone)]
pub(crate) enum RawValue {
    /// A number.
    U64(u64),
    /// A handle or buffer address.
    Handle(u64),
    /// A string, shared (with the host's own name when the client passed exactly that;
    /// a thin pointer keeps a value, and so an event, small).
    Str(Arc<String>),
    /// A list a list function returned; `true` if its entries carry their CSBFT prefix.
    /// Rendered by [`list_value`].
    List(Box<WideList>, bool),
    /// An HRESULT passed as an argument, written as its text (`0x00000000 S_OK`).
    Hr(HRESULT),
    /// Any other value, already made (the rarely called functions).
    Value(Box<Value>),
    /// Absent / NULL.
    Null,
}

impl From<u32> for RawValue {
    fn from(v: u32) -> RawValue {
        RawValue::U64(v.into())
    }
}

impl From<u64> for RawValue {
    fn from(v: u64) -> RawValue {
        RawValue::U64(v)
    }
}

impl From<&str> for RawValue {
    fn from(s: &str) -> RawValue {
        RawValue::Str(Arc::new(s.to_string()))
    }
}

impl From<Value> for RawValue {
    fn from(v: Value) -> RawValue {
        match v {
            Value::U64(n) => RawValue::U64(n),
            Value::Handle(h) => RawValue::Handle(h),
            Value::Null => RawValue::Null,
            v => RawValue::Value(Box::new(v)),
        }
    }
}

impl RawValue {
    /// The value of the event.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            RawValue::U64(n) => Value::U64(*n),
            RawValue::Handle(h) => Value::Handle(*h),
            RawValue::Str(s) => Value::Str(String::clone(s)),
            RawValue::List(l, prefixed) => list_value(l, *prefixed),
            RawValue::Hr(hr) => Value::Str(hr.to_string()),
            RawValue::Value(v) => (**v).clone(),
            RawValue::Null => Value::Null,
        }
    }

    /// The number, if this is one (handles included), as [`Value::as_u64`].
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            RawValue::U64(v) | RawValue::Handle(v) => Some(*v),
            RawValue::Value(v) => v.as_u64(),
            _ => None,
        }
    }

    /// The string, if this is one, as [`Value::as_str`].
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            RawValue::Str(s) => Some(s),
            RawValue::Value(v) => v.as_str(),
            _ => None,
        }
    }
}

/// Values held inline: every certbcli function but the two RestoreRegister functions has
/// at most this many arguments and out-values.
const INLINE: usize = 3;

#[derive(Debug, Clone)]
enum RawValues {
    Inline([RawValue; INLINE]),
    Heap(Box<[RawValue]>),
}

/// Named values in parameter order, as recorded: the names are one `&'static` slice, the
/// values inline (up to three) or in one allocation.
#[derive(Debug, Clone)]
pub(crate) struct RawFields {
    names: &'static [&'static str],
    values: RawValues,
}

impl Default for RawFields {
    fn default() -> Self {
        RawFields::EMPTY
    }
}

impl RawFields {
    /// No value.
    pub(crate) const EMPTY: RawFields = RawFields {
        names: &[],
        values: RawValues::Inline([RawValue::Null, RawValue::Null, RawValue::Null]),
    };

    /// The values `values` under the names `names`.
    pub(crate) fn new<const N: usize>(
        names: &'static [&'static str; N],
        values: [RawValue; N],
    ) -> RawFields {
        let values = if N <= INLINE {
            let mut values = values.into_iter();
            RawValues::Inline(std::array::from_fn(|_| {
                values.next().unwrap_or(RawValue::Null)
            }))
        } else {
            RawValues::Heap(Box::new(values))
        };
        RawFields { names, values }
    }

    fn values(&self) -> &[RawValue] {
        match &self.values {
            RawValues::Inline(v) => &v[..self.names.len()],
            RawValues::Heap(v) => v,
        }
    }

    /// The value named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&RawValue> {
        let i = self.names.iter().position(|n| *n == name)?;
        self.values().get(i)
    }

    /// The value named `name`, to change it.
    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut RawValue> {
        let i = self.names.iter().position(|n| *n == name)?;
        match &mut self.values {
            RawValues::Inline(v) => v.get_mut(i),
            RawValues::Heap(v) => v.get_mut(i),
        }
    }

    /// The fields of the event.
    pub(crate) fn to_fields(&self) -> Fields {
        Fields(
            self.names
                .iter()
                .zip(self.values())
                .map(|(k, v)| (Cow::Borrowed(*k), v.to_value()))
                .collect(),
        )
    }
}

/// Why a call failed, as recorded: its error (written with `to_string` when read), or a
/// text made where there is no error value (a panic).
#[derive(Debug, Clone)]
pub(crate) enum RawMessage {
    /// The error the call returned.
    Error(crate::core::Error),
    /// A message.
    Text(String),
}

/// One call as recorded on the call path; [`RawEvent::to_event`] makes the [`Event`].
#[derive(Debug, Clone)]
pub(crate) struct RawEvent {
    /// Position in the host's trace (set when it is pushed).
    pub(crate) seq: u64,
    /// The function.
    pub(crate) call: Call,
    /// The calling client.
    pub(crate) client: u64,
    /// The result.
    pub(crate) hr: HRESULT,
    /// Arguments, in parameter order.
    pub(crate) args: RawFields,
    /// Out-values.
    pub(crate) out: RawFields,
    /// Why it failed.
    pub(crate) message: Option<Box<RawMessage>>,
    /// Identical successful calls folded into this event (reads).
    pub(crate) count: u64,
    /// Duration in nanoseconds (summed when folded).
    pub(crate) elapsed_ns: u64,
}

impl RawEvent {
    /// An event of `call` with its arguments and result, not yet numbered and not folded.
    pub(crate) fn new(
        call: Call,
        client: u64,
        args: RawFields,
        hr: HRESULT,
        out: RawFields,
        message: Option<RawMessage>,
    ) -> RawEvent {
        RawEvent {
            seq: 0,
            call,
            client,
            hr,
            args,
            out,
            message: message.map(Box::new),
            count: 1,
            elapsed_ns: 0,
        }
    }

    /// The handle argument, or the handle an out-value created (as [`Event::handle`]).
    pub(crate) fn handle(&self) -> Option<u64> {
        self.args
            .get("hbc")
            .or_else(|| self.out.get("hbc"))
            .and_then(RawValue::as_u64)
    }

    /// The event, rendered: what every reader of the trace gets.
    pub(crate) fn to_event(&self) -> Event {
        Event {
            seq: self.seq,
            call: self.call,
            client: self.client,
            args: self.args.to_fields(),
            hr: self.hr,
            message: self.message.as_deref().map(|m| match m {
                RawMessage::Error(e) => e.to_string(),
                RawMessage::Text(t) => t.to_string(),
            }),
            out: self.out.to_fields(),
            count: self.count,
            elapsed_ns: self.elapsed_ns,
        }
    }
}

/// What the conformance checker reads of an event: implemented by the parsed [`Event`]
/// (a trace file) and by the [`RawEvent`] of a live host, which it is fed as the call
/// happens, without rendering it.
pub(crate) trait Traced {
    /// Position in the trace.
    fn seq(&self) -> u64;
    /// The function.
    fn call(&self) -> Call;
    /// The result.
    fn hr(&self) -> HRESULT;
    /// Calls folded into this event.
    fn count(&self) -> u64;
    /// The handle argument, or the handle an out-value created.
    fn handle(&self) -> Option<u64>;
    /// A number (or handle) argument.
    fn arg_u64(&self, name: &str) -> Option<u64>;
    /// A string argument.
    fn arg_str(&self, name: &str) -> Option<&str>;
    /// A number (or handle) out-value.
    fn out_u64(&self, name: &str) -> Option<u64>;
    /// A list out-value, its entries as the trace writes them.
    fn out_list(&self, name: &str) -> Option<Vec<String>>;
    /// The emulator's message for a failure.
    fn message(&self) -> Option<Cow<'_, str>>;
    /// The call written like C ([`Event::render`]).
    fn render(&self) -> String;
}

impl Traced for Event {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn call(&self) -> Call {
        self.call
    }
    fn hr(&self) -> HRESULT {
        self.hr
    }
    fn count(&self) -> u64 {
        self.count
    }
    fn handle(&self) -> Option<u64> {
        Event::handle(self)
    }
    fn arg_u64(&self, name: &str) -> Option<u64> {
        self.arg(name).and_then(Value::as_u64)
    }
    fn arg_str(&self, name: &str) -> Option<&str> {
        self.arg(name).and_then(Value::as_str)
    }
    fn out_u64(&self, name: &str) -> Option<u64> {
        self.out(name).and_then(Value::as_u64)
    }
    fn out_list(&self, name: &str) -> Option<Vec<String>> {
        match self.out(name) {
            Some(Value::List(l)) => Some(l.clone()),
            _ => None,
        }
    }
    fn message(&self) -> Option<Cow<'_, str>> {
        self.message.as_deref().map(Cow::Borrowed)
    }
    fn render(&self) -> String {
        Event::render(self)
    }
}

impl Traced for RawEvent {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn call(&self) -> Call {
        self.call
    }
    fn hr(&self) -> HRESULT {
        self.hr
    }
    fn count(&self) -> u64 {
        self.count
    }
    fn handle(&self) -> Option<u64> {
        RawEvent::handle(self)
    }
    fn arg_u64(&self, name: &str) -> Option<u64> {
        self.args.get(name).and_then(RawValue::as_u64)
    }
    fn arg_str(&self, name: &str) -> Option<&str> {
        self.args.get(name).and_then(RawValue::as_str)
    }
    fn out_u64(&self, name: &str) -> Option<u64> {
        self.out.get(name).and_then(RawValue::as_u64)
    }
    fn out_list(&self, name: &str) -> Option<Vec<String>> {
        match self.out.get(name)?.to_value() {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    fn message(&self) -> Option<Cow<'_, str>> {
        self.message.as_deref().map(|m| match m {
            RawMessage::Error(e) => Cow::Owned(e.to_string()),
            RawMessage::Text(t) => Cow::Borrowed(&**t),
        })
    }
    fn render(&self) -> String {
        self.to_event().render()
    }
}

/// Parses a trace file (JSON lines; blank lines are skipped). An error names its line.
pub(crate) fn parse_lines(text: &str) -> Result<Vec<Event>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| Event::from_json(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// A list as trace entries: printable type characters as they are, others escaped
/// (`\u{82}`), unprefixed entries as their path.
pub(crate) fn list_value(l: &WideList, prefixed: bool) -> Value {
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

/// Serde helper for an [`HRESULT`] written as `"0x%08X"` text (`"0x800706BE"`); reads
/// anything [`HRESULT::parse`] accepts (hex, decimal, a name).
pub(crate) mod hr_hex {
    use crate::core::HRESULT;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::borrow::Cow;

    /// Writes `"0x%08X"`.
    pub(crate) fn serialize<S: Serializer>(hr: &HRESULT, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#010X}", hr.as_u32()))
    }

    /// Reads hex, decimal or a name.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HRESULT, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        HRESULT::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an HRESULT")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(hbc: u64, n: u64) -> Event {
        let mut e = Event::new(
            Call::BackupRead,
            7,
            vec![("hbc", Value::Handle(hbc)), ("cbBuffer", Value::U64(65536))].into(),
            HRESULT::S_OK,
        );
        e.seq = 3;
        e.out = vec![("read", Value::U64(n))].into();
        e.elapsed_ns = 812;
        e
    }

    #[test]
    fn the_line_keeps_its_field_names_and_order() {
        assert_eq!(
            read(0x10001, 65536).to_json(),
            r#"{"seq":3,"call":"CertSrvBackupRead","client":7,"args":{"hbc":"0x10001","cbBuffer":65536},"hr":"0x00000000","out":{"read":65536},"count":1,"elapsed_ns":812,"hr_name":"S_OK"}"#
        );
        let mut e = Event::new(
            Call::BackupOpenFile,
            1,
            vec![
                ("pwszAttachmentName", Value::Str("D\\\\x".into())),
                ("list", Value::List(vec!["a".into()])),
                ("pwszLogPath", Value::Null),
            ]
            .into(),
            HRESULT(0x1234),
        );
        e.message = Some("why".into());
        assert_eq!(
            e.to_json(),
            r#"{"seq":0,"call":"CertSrvBackupOpenFileW","client":1,"args":{"pwszAttachmentName":"D\\\\x","list":["a"],"pwszLogPath":null},"hr":"0x00001234","out":{},"count":1,"elapsed_ns":0,"message":"why"}"#
        );
    }

    #[test]
    fn lines_round_trip() {
        for e in [read(0x10001, 7), read(0, 0)] {
            assert_eq!(Event::from_json(&e.to_json()).unwrap(), e);
        }
    }

    #[test]
    fn reading_is_lenient_where_it_always_was() {
        let e = Event::from_json(
            r#"{"call":"CertSrvBackupEnd","hr":"E_HANDLE","args":{"hbc":"0x5"},"extra":1}"#,
        )
        .unwrap();
        assert_eq!(e.call, Call::BackupEnd);
        assert_eq!(e.hr, HRESULT::E_HANDLE);
        assert_eq!(e.handle(), Some(5));
        assert_eq!((e.seq, e.client, e.count, e.elapsed_ns), (0, 0, 1, 0));
    }

    #[test]
    fn an_unknown_function_or_a_bad_hr_is_a_clear_error() {
        let err = parse_lines("\n{\"call\":\"CertSrvBackupReed\",\"hr\":\"0x0\"}\n").unwrap_err();
        assert!(err.starts_with("line 2: "), "{err}");
        assert!(
            err.contains("\"CertSrvBackupReed\" is not a certbcli function"),
            "{err}"
        );
        let err = Event::from_json(r#"{"call":"CertSrvBackupEnd","hr":"bad"}"#).unwrap_err();
        assert!(err.contains("\"bad\" is not an HRESULT"), "{err}");
        let err = Event::from_json(r#"{"call":"CertSrvBackupEnd"}"#).unwrap_err();
        assert!(err.contains("missing field `hr`"), "{err}");
    }

    #[test]
    fn a_raw_event_becomes_the_event_it_recorded() {
        let mut raw = RawEvent::new(
            Call::BackupRead,
            7,
            RawFields::new(
                &["hbc", "cbBuffer"],
                [RawValue::Handle(0x10001), RawValue::U64(65536)],
            ),
            HRESULT::S_OK,
            RawFields::new(&["read"], [RawValue::U64(65536)]),
            None,
        );
        raw.seq = 3;
        raw.elapsed_ns = 812;
        assert_eq!(raw.handle(), Some(0x10001));
        assert_eq!(raw.to_event(), read(0x10001, 65536));
        assert_eq!(raw.to_event().to_json(), read(0x10001, 65536).to_json());

        // More values than fit inline, strings, lists, HRESULTs, NULL and a failure.
        let mut list = WideList::new();
        list.push(Some(crate::core::consts::CSBFT_LOG), "\\\\H\\x.log");
        list.push(Some(0x82), "y");
        let raw = RawEvent::new(
            Call::RestoreRegister,
            1,
            RawFields::new(
                &["hbc", "a", "b", "c", "d"],
                [
                    RawValue::Handle(5),
                    "text".into(),
                    RawValue::Hr(HRESULT::E_HANDLE),
                    RawValue::Null,
                    RawValue::List(Box::new(list.clone()), true),
                ],
            ),
            HRESULT::E_HANDLE,
            RawFields::EMPTY,
            Some(RawMessage::Text("why".into())),
        );
        let e = raw.to_event();
        assert_eq!(
            e.args,
            Fields::from(vec![
                ("hbc", Value::Handle(5)),
                ("a", Value::Str("text".into())),
                ("b", Value::Str(HRESULT::E_HANDLE.to_string())),
                ("c", Value::Null),
                ("d", list_value(&list, true)),
            ])
        );
        assert_eq!(e.message.as_deref(), Some("why"));
        assert!(e.out.is_empty());
        assert_eq!(Traced::message(&raw).as_deref(), Some("why"));
        assert_eq!(raw.out_list("d"), None);
        assert_eq!(Traced::render(&raw), e.render());
    }

    #[test]
    fn raw_events_stay_small() {
        // A host keeps thousands of them, and one is written on every traced call.
        assert_eq!(std::mem::size_of::<RawValue>(), 16);
        assert!(std::mem::size_of::<RawEvent>() <= 192);
    }

    #[test]
    fn render_writes_the_call_like_c() {
        let mut e = read(0x10001, 65536);
        e.count = 4;
        assert_eq!(
            e.render(),
            "#3 CertSrvBackupRead(hbc=0x10001, cbBuffer=65536) -> 0x00000000 S_OK read=65536 (x4)"
        );
    }
}

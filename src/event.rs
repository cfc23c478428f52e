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
//! owns them. Building an event is cheap: the function is a [`Call`] (one byte), argument
//! and out-value names are `&'static str` borrowed from the call site; only the values a
//! call passes (strings, lists) are copied.
#![forbid(unsafe_code)]

use crate::core::{Call, WideList, HRESULT};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

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
    fn render_writes_the_call_like_c() {
        let mut e = read(0x10001, 65536);
        e.count = 4;
        assert_eq!(
            e.render(),
            "#3 CertSrvBackupRead(hbc=0x10001, cbBuffer=65536) -> 0x00000000 S_OK read=65536 (x4)"
        );
    }
}

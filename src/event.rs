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
//! owns them. On the call path an event is recorded raw (`RawEvent`): the function is a
//! [`Call`] (one byte), argument and out-value names are one `&'static` slice borrowed from
//! the call site, values sit in a fixed inline layout (numbers and handles as they are, a
//! server name shared with the host's own name when equal, a returned list kept as the
//! list, a failure kept as its [`Error`](crate::core::Error)). Nothing is formatted there:
//! an [`Event`], its JSON line and [`Event::render`] are made when the trace is read.
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

// ----- raw events: what the call path records -----------------------------------------

/// The names of one call site's arguments and out-values, as the trace writes them. Each
/// call site has its own `static`, so an event refers to its names with one thin pointer.
#[derive(Debug)]
pub(crate) struct Form {
    /// Argument names, in parameter order.
    args: &'static [&'static str],
    /// Out-value names (the event has them when the call succeeded).
    out: &'static [&'static str],
    /// Where each [`Field`] is among the arguments ([`NOWHERE`] if it is not one), found
    /// when the form is made: the checker reads them on every call.
    args_at: [u8; Field::ALL.len()],
    /// Where each [`Field`] is among the out-values.
    out_at: [u8; Field::ALL.len()],
}

/// A [`Field`] the form does not have.
const NOWHERE: u8 = u8::MAX;

impl Form {
    /// No argument, no out-value (a panic's event).
    pub(crate) const NONE: Form = Form::new(&[], &[]);

    /// The names of the arguments and of the out-values.
    pub(crate) const fn new(args: &'static [&'static str], out: &'static [&'static str]) -> Form {
        let mut args_at = [NOWHERE; Field::ALL.len()];
        let mut out_at = [NOWHERE; Field::ALL.len()];
        let mut f = 0;
        while f < Field::ALL.len() {
            let name = Field::ALL[f].name();
            if let Some(i) = position(args, name) {
                args_at[f] = i as u8;
            }
            if let Some(i) = position(out, name) {
                out_at[f] = i as u8;
            }
            f += 1;
        }
        Form {
            args,
            out,
            args_at,
            out_at,
        }
    }
}

/// The values the conformance checker reads, named once: a recorded event finds each in
/// one step (its [`Form`] knows where each is), a parsed one by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// `hbc`: the context handle, an argument or the out-value of a Prepare.
    Hbc,
    /// `dwBackupFlags` of `CertSrvBackupPrepareW`.
    BackupFlags,
    /// `pwszAttachmentName` of `CertSrvBackupOpenFileW`.
    AttachmentName,
    /// `liFileSize` returned by `CertSrvBackupOpenFileW`.
    FileSize,
    /// `read`: the bytes a `CertSrvBackupRead` returned.
    Read,
    /// `list`: the list a list function returned.
    List,
    /// `buffer`: the address of the list buffer the client must free.
    Buffer,
    /// `pv` of `CertSrvBackupFree`.
    Pv,
}

impl Field {
    /// Every field.
    const ALL: [Field; 8] = [
        Field::Hbc,
        Field::BackupFlags,
        Field::AttachmentName,
        Field::FileSize,
        Field::Read,
        Field::List,
        Field::Buffer,
        Field::Pv,
    ];

    /// The name the trace gives it.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Field::Hbc => "hbc",
            Field::BackupFlags => "dwBackupFlags",
            Field::AttachmentName => "pwszAttachmentName",
            Field::FileSize => "liFileSize",
            Field::Read => "read",
            Field::List => "list",
            Field::Buffer => "buffer",
            Field::Pv => "pv",
        }
    }
}

/// Where `name` is in `names` (at compile time).
const fn position(names: &[&str], name: &str) -> Option<usize> {
    let mut i = 0;
    while i < names.len() {
        let n = names[i].as_bytes();
        let m = name.as_bytes();
        if n.len() == m.len() {
            let mut j = 0;
            while j < n.len() && n[j] == m[j] {
                j += 1;
            }
            if j == n.len() {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

/// What a stored value is; the word next to it holds the number, the handle, the HRESULT,
/// which host name, or where among the event's kept values the value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    U64,
    Handle,
    Hr,
    Null,
    HostName,
    Kept,
}

/// An argument or out-value as an event stores it: plain data. Numbers, handles,
/// HRESULTs, NULL and the host's own name are the value itself; any other value is kept
/// beside the event ([`Extras::keep`]) and the slot says where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    tag: Tag,
    word: u64,
}

impl Slot {
    /// Absent / NULL.
    pub(crate) const NULL: Slot = Slot {
        tag: Tag::Null,
        word: 0,
    };

    /// A number.
    pub(crate) const fn num(v: u64) -> Slot {
        Slot {
            tag: Tag::U64,
            word: v,
        }
    }

    /// A handle or buffer address (written as hex text).
    pub(crate) const fn handle(v: u64) -> Slot {
        Slot {
            tag: Tag::Handle,
            word: v,
        }
    }

    /// An HRESULT passed as an argument, written as its text (`0x00000000 S_OK`).
    pub(crate) const fn hr(hr: HRESULT) -> Slot {
        Slot {
            tag: Tag::Hr,
            word: hr.as_u32() as u64,
        }
    }

    /// A server name the client passed spelled exactly as one of the host's own names
    /// (0: NetBIOS, 1: DNS): written as that name.
    pub(crate) const fn host_name(i: u8) -> Slot {
        Slot {
            tag: Tag::HostName,
            word: (i & 1) as u64,
        }
    }
}

/// A number argument (`DWORD`, `ULONG`, sizes).
impl From<u32> for Slot {
    fn from(v: u32) -> Slot {
        Slot::num(v.into())
    }
}

/// A value that is not plain data, kept beside its event.
#[derive(Debug, Clone)]
pub(crate) enum Kept {
    /// A string (other than the host's own name).
    Str(Box<str>),
    /// A list a list function returned; `true` if its entries carry their CSBFT prefix.
    /// Rendered by [`list_value`].
    List(Box<WideList>, bool),
    /// Any other value, already made (the rarely called functions).
    Value(Box<Value>),
}

/// The kept values of the event being recorded: the call site hands non-plain values to
/// [`Extras::keep`] and stores the slot it returns. Empty (no allocation) for the calls
/// whose values are all plain.
#[derive(Debug, Default)]
pub(crate) struct Extras(Vec<Kept>);

impl Extras {
    /// Keeps `v` beside the event.
    pub(crate) fn keep(&mut self, v: Kept) -> Slot {
        self.0.push(v);
        Slot {
            tag: Tag::Kept,
            word: self.0.len() as u64 - 1,
        }
    }

    /// A string.
    pub(crate) fn str(&mut self, s: &str) -> Slot {
        self.keep(Kept::Str(s.into()))
    }

    /// A string, or NULL.
    pub(crate) fn opt_str(&mut self, s: Option<&str>) -> Slot {
        s.map_or(Slot::NULL, |s| self.str(s))
    }

    /// A value made by the call site (plain ones are stored in place).
    pub(crate) fn value(&mut self, v: Value) -> Slot {
        match v {
            Value::U64(n) => Slot::num(n),
            Value::Handle(h) => Slot::handle(h),
            Value::Null => Slot::NULL,
            v => self.keep(Kept::Value(Box::new(v))),
        }
    }
}

/// A host's own names (NetBIOS, DNS) as registered, which [`Slot::host_name`] stands for.
pub(crate) type HostNames = [Box<str>; 2];

/// A value read back from an event: plain values by copy, the others borrowed.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    U64(u64),
    Handle(u64),
    Hr(HRESULT),
    Null,
    Str(&'a str),
    List(&'a WideList, bool),
    Value(&'a Value),
}

impl<'a> Val<'a> {
    fn to_value(self) -> Value {
        match self {
            Val::U64(n) => Value::U64(n),
            Val::Handle(h) => Value::Handle(h),
            Val::Hr(hr) => Value::Str(hr.to_string()),
            Val::Null => Value::Null,
            Val::Str(s) => Value::Str(s.to_string()),
            Val::List(l, prefixed) => list_value(l, prefixed),
            Val::Value(v) => v.clone(),
        }
    }

    fn as_u64(self) -> Option<u64> {
        match self {
            Val::U64(v) | Val::Handle(v) => Some(v),
            Val::Value(v) => v.as_u64(),
            _ => None,
        }
    }

    fn as_str(self) -> Option<&'a str> {
        match self {
            Val::Str(s) => Some(s),
            Val::Value(v) => v.as_str(),
            _ => None,
        }
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

/// Values an event stores in place; a call with more (the two RestoreRegister functions)
/// keeps the slots of all of its values in its [`Extra`].
const INLINE: usize = 4;

/// One call as the call path records it: fixed size, plain data (`Copy`, nothing to drop),
/// so that recording it, keeping it in the ring and evicting it cost a copy. What is not
/// plain (strings other than the host's own name, lists, a failure's message) is its
/// [`Extra`], kept next to it; [`RawView::to_event`] makes the [`Event`] when the trace is
/// read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawEvent {
    /// Position in the host's trace (set when it is pushed).
    pub(crate) seq: u64,
    /// The calling client.
    pub(crate) client: u64,
    /// Identical successful calls folded into this event (reads).
    pub(crate) count: u64,
    /// Duration in nanoseconds (summed when folded).
    pub(crate) elapsed_ns: u64,
    /// The names of the values.
    form: &'static Form,
    /// The result.
    pub(crate) hr: HRESULT,
    /// The function.
    pub(crate) call: Call,
    /// Out-values recorded: all of `form.out` on success, none on failure.
    n_out: u8,
    /// The event has an [`Extra`].
    pub(crate) has_extra: bool,
    tags: [Tag; INLINE],
    words: [u64; INLINE],
}

/// What an event keeps beside it: the values that are not plain data, and why the call
/// failed. Extras are kept in the order of their events, so the trace finds an event's
/// extra without an index.
#[derive(Debug, Clone)]
pub(crate) struct Extra {
    /// The event's position in the trace.
    pub(crate) seq: u64,
    /// The kept values.
    kept: Vec<Kept>,
    /// The slots of all values, when there are more than [`INLINE`].
    spilled: Vec<Slot>,
    /// Why the call failed.
    message: Option<Box<RawMessage>>,
}

impl RawEvent {
    /// The event of `call` with its arguments, result and (on success) out-values, not yet
    /// numbered and not folded, and its extra if it needs one.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new<const A: usize, const O: usize>(
        call: Call,
        client: u64,
        form: &'static Form,
        args: [Slot; A],
        hr: HRESULT,
        out: Option<[Slot; O]>,
        kept: Extras,
        message: Option<RawMessage>,
    ) -> (RawEvent, Option<Extra>) {
        debug_assert_eq!(A, form.args.len(), "{call}: argument names");
        debug_assert!(out.is_none() || O == form.out.len(), "{call}: out names");
        let n_out = if out.is_some() { O } else { 0 };
        let mut e = RawEvent {
            seq: 0,
            client,
            count: 1,
            elapsed_ns: 0,
            form,
            hr,
            call,
            n_out: n_out as u8,
            has_extra: false,
            tags: [Tag::Null; INLINE],
            words: [0; INLINE],
        };
        let mut spilled = Vec::new();
        if A + n_out > INLINE {
            spilled.extend_from_slice(&args);
            spilled.extend(out.iter().flatten());
        } else {
            for (i, v) in args.iter().enumerate() {
                (e.tags[i], e.words[i]) = (v.tag, v.word);
            }
            for (i, v) in out.iter().flatten().enumerate() {
                (e.tags[A + i], e.words[A + i]) = (v.tag, v.word);
            }
        }
        if kept.0.is_empty() && spilled.is_empty() && message.is_none() {
            return (e, None);
        }
        e.has_extra = true;
        let extra = Extra {
            seq: 0,
            kept: kept.0,
            spilled,
            message: message.map(Box::new),
        };
        (e, Some(extra))
    }

    /// Values recorded (arguments, then out-values).
    fn len(&self) -> usize {
        self.form.args.len() + usize::from(self.n_out)
    }

    /// Where the out-value `f` is among the values recorded.
    fn out_index(&self, f: Field) -> Option<usize> {
        let i = self.form.out_at[f as usize];
        (i < self.n_out).then(|| self.form.args.len() + usize::from(i))
    }

    /// Where the argument `f` is among the values.
    fn arg_index(&self, f: Field) -> Option<usize> {
        let i = self.form.args_at[f as usize];
        (i != NOWHERE).then_some(usize::from(i))
    }

    /// The number (or handle) stored in place at `i`.
    fn word(&self, i: usize) -> Option<u64> {
        if self.len() > INLINE {
            return None;
        }
        match self.tags[i] {
            Tag::U64 | Tag::Handle => Some(self.words[i]),
            _ => None,
        }
    }

    /// Where the handle argument, or the handle an out-value created, is among the values
    /// recorded.
    fn hbc(&self) -> Option<usize> {
        self.arg_index(Field::Hbc)
            .or_else(|| self.out_index(Field::Hbc))
    }

    /// The handle argument, or the handle an out-value created, when it is stored in place
    /// (as [`Event::handle`]; a handle always is, unless the call has more than
    /// [`INLINE`] values).
    pub(crate) fn inline_handle(&self) -> Option<u64> {
        self.hbc().and_then(|i| self.word(i))
    }

    /// Adds a folded read to this one: one more call, its time, and its bytes to `read`.
    pub(crate) fn fold(&mut self, other: &RawEvent) {
        self.count += other.count;
        self.elapsed_ns += other.elapsed_ns;
        let read = |e: &RawEvent| {
            e.out_index(Field::Read)
                .and_then(|i| e.word(i).map(|w| (i, w)))
        };
        if let (Some((i, total)), Some((_, add))) = (read(self), read(other)) {
            self.words[i] = total + add;
        }
    }
}

/// An event with what it refers to: its extra and the names of its host. What the
/// conformance checker is fed as the call happens, and what becomes an [`Event`] when the
/// trace is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawView<'a> {
    /// The event.
    pub(crate) event: &'a RawEvent,
    /// Its extra, if it has one.
    pub(crate) extra: Option<&'a Extra>,
    /// The host's own names.
    pub(crate) names: &'a HostNames,
}

impl<'a> RawView<'a> {
    /// The value at `i`.
    fn value(&self, i: usize) -> Val<'a> {
        let e = self.event;
        let slot = if e.len() > INLINE {
            match self.extra.and_then(|x| x.spilled.get(i)) {
                Some(s) => *s,
                None => return Val::Null,
            }
        } else {
            Slot {
                tag: e.tags[i],
                word: e.words[i],
            }
        };
        let w = slot.word;
        match slot.tag {
            Tag::U64 => Val::U64(w),
            Tag::Handle => Val::Handle(w),
            Tag::Hr => Val::Hr(HRESULT(w as u32 as i32)),
            Tag::Null => Val::Null,
            Tag::HostName => Val::Str(&self.names[(w & 1) as usize]),
            Tag::Kept => match self.extra.and_then(|x| x.kept.get(w as usize)) {
                Some(Kept::Str(s)) => Val::Str(s),
                Some(Kept::List(l, prefixed)) => Val::List(l, *prefixed),
                Some(Kept::Value(v)) => Val::Value(v),
                None => Val::Null,
            },
        }
    }

    /// The number (or handle) at `i`: in place, read at once; a kept value (a number the
    /// rare calls made) through [`RawView::value`].
    #[inline]
    fn num(&self, i: usize) -> Option<u64> {
        let e = self.event;
        if e.len() <= INLINE {
            match e.tags[i] {
                Tag::U64 | Tag::Handle => return Some(e.words[i]),
                Tag::Hr | Tag::Null | Tag::HostName => return None,
                Tag::Kept => {}
            }
        }
        self.value(i).as_u64()
    }

    fn arg(&self, f: Field) -> Option<Val<'a>> {
        self.event.arg_index(f).map(|i| self.value(i))
    }

    fn out(&self, f: Field) -> Option<Val<'a>> {
        self.event.out_index(f).map(|i| self.value(i))
    }

    fn fields(&self, names: &'static [&'static str], base: usize) -> Fields {
        Fields(
            names
                .iter()
                .enumerate()
                .map(|(i, k)| (Cow::Borrowed(*k), self.value(base + i).to_value()))
                .collect(),
        )
    }

    fn raw_message(&self) -> Option<&'a RawMessage> {
        self.extra.and_then(|x| x.message.as_deref())
    }

    /// The event, rendered: what every reader of the trace gets.
    pub(crate) fn to_event(self) -> Event {
        let e = self.event;
        let form = e.form;
        Event {
            seq: e.seq,
            call: e.call,
            client: e.client,
            args: self.fields(form.args, 0),
            hr: e.hr,
            message: self.raw_message().map(|m| match m {
                RawMessage::Error(e) => e.to_string(),
                RawMessage::Text(t) => t.clone(),
            }),
            out: self.fields(&form.out[..usize::from(e.n_out)], form.args.len()),
            count: e.count,
            elapsed_ns: e.elapsed_ns,
        }
    }
}

/// What the conformance checker reads of an event: implemented by the parsed [`Event`]
/// (a trace file) and by the [`RawView`] of a live host's event, which it is fed as the
/// call happens, without rendering it.
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
    fn arg_u64(&self, f: Field) -> Option<u64>;
    /// A string argument.
    fn arg_str(&self, f: Field) -> Option<&str>;
    /// A number (or handle) out-value.
    fn out_u64(&self, f: Field) -> Option<u64>;
    /// A list out-value, its entries as the trace writes them.
    fn out_list(&self, f: Field) -> Option<Vec<String>>;
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
    fn arg_u64(&self, f: Field) -> Option<u64> {
        self.arg(f.name()).and_then(Value::as_u64)
    }
    fn arg_str(&self, f: Field) -> Option<&str> {
        self.arg(f.name()).and_then(Value::as_str)
    }
    fn out_u64(&self, f: Field) -> Option<u64> {
        self.out(f.name()).and_then(Value::as_u64)
    }
    fn out_list(&self, f: Field) -> Option<Vec<String>> {
        match self.out(f.name()) {
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

impl Traced for RawView<'_> {
    fn seq(&self) -> u64 {
        self.event.seq
    }
    fn call(&self) -> Call {
        self.event.call
    }
    fn hr(&self) -> HRESULT {
        self.event.hr
    }
    fn count(&self) -> u64 {
        self.event.count
    }
    fn handle(&self) -> Option<u64> {
        self.event.hbc().and_then(|i| self.num(i))
    }
    fn arg_u64(&self, f: Field) -> Option<u64> {
        self.event.arg_index(f).and_then(|i| self.num(i))
    }
    fn arg_str(&self, f: Field) -> Option<&str> {
        self.arg(f).and_then(Val::as_str)
    }
    fn out_u64(&self, f: Field) -> Option<u64> {
        self.event.out_index(f).and_then(|i| self.num(i))
    }
    fn out_list(&self, f: Field) -> Option<Vec<String>> {
        match self.out(f)?.to_value() {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    fn message(&self) -> Option<Cow<'_, str>> {
        self.raw_message().map(|m| match m {
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

    const NAMES: fn() -> HostNames = || ["HOST".into(), "host.example".into()];

    #[test]
    fn a_raw_event_becomes_the_event_it_recorded() {
        static READ: Form = Form::new(&["hbc", "cbBuffer"], &["read"]);
        let names = NAMES();
        let (mut raw, extra) = RawEvent::new(
            Call::BackupRead,
            7,
            &READ,
            [Slot::handle(0x10001), Slot::num(65536)],
            HRESULT::S_OK,
            Some([Slot::num(65536)]),
            Extras::default(),
            None,
        );
        assert!(extra.is_none(), "numbers and handles are stored in place");
        raw.seq = 3;
        raw.elapsed_ns = 812;
        assert_eq!(raw.inline_handle(), Some(0x10001));
        let view = RawView {
            event: &raw,
            extra: None,
            names: &names,
        };
        assert_eq!(Traced::handle(&view), Some(0x10001));
        assert_eq!(view.to_event(), read(0x10001, 65536));
        assert_eq!(view.to_event().to_json(), read(0x10001, 65536).to_json());

        // A read folded into it: one more call, its time and its bytes.
        let mut folded = raw;
        folded.fold(&raw);
        let e = RawView {
            event: &folded,
            extra: None,
            names: &names,
        }
        .to_event();
        assert_eq!((e.count, e.elapsed_ns), (2, 1624));
        assert_eq!(e.out("read"), Some(&Value::U64(131072)));

        // The host's own name is stored in place; another spelling is kept as passed.
        static PREPARE: Form =
            Form::new(&["pwszServerName", "grbitJet", "dwBackupFlags"], &["hbc"]);
        for kept in [None, Some("\\\\HOST")] {
            let mut x = Extras::default();
            let name = kept.map_or(Slot::host_name(1), |k| x.str(k));
            let (raw, extra) = RawEvent::new(
                Call::BackupPrepare,
                1,
                &PREPARE,
                [name, 0u32.into(), 1u32.into()],
                HRESULT::S_OK,
                Some([Slot::handle(5)]),
                x,
                None,
            );
            assert_eq!(extra.is_some(), kept.is_some());
            let view = RawView {
                event: &raw,
                extra: extra.as_ref(),
                names: &names,
            };
            let spelled = kept.unwrap_or("host.example");
            assert_eq!(view.out_u64(Field::Hbc), Some(5));
            assert_eq!(Traced::handle(&view), Some(5));
            assert_eq!(
                view.to_event().args.get("pwszServerName"),
                Some(&Value::Str(spelled.into()))
            );
        }

        // More values than fit in place, strings, lists, HRESULTs, NULL and a failure.
        static MANY: Form = Form::new(&["hbc", "a", "b", "c", "d"], &[]);
        let mut list = WideList::new();
        list.push(Some(crate::core::consts::CSBFT_LOG), "\\\\H\\x.log");
        list.push(Some(0x82), "y");
        let mut x = Extras::default();
        let args = [
            Slot::handle(5),
            x.str("text"),
            Slot::hr(HRESULT::E_HANDLE),
            x.opt_str(None),
            x.keep(Kept::List(Box::new(list.clone()), true)),
        ];
        let (raw, extra) = RawEvent::new(
            Call::RestoreRegister,
            1,
            &MANY,
            args,
            HRESULT::E_HANDLE,
            None::<[Slot; 0]>,
            x,
            Some(RawMessage::Text("why".into())),
        );
        let view = RawView {
            event: &raw,
            extra: extra.as_ref(),
            names: &names,
        };
        let e = view.to_event();
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
        assert_eq!(Traced::message(&view).as_deref(), Some("why"));
        assert_eq!(Traced::handle(&view), Some(5));
        assert_eq!(raw.inline_handle(), None);
        assert_eq!(view.out_list(Field::List), None);
        assert_eq!(Traced::render(&view), e.render());

        // Values made by the call site: plain ones in place, the others kept.
        let mut x = Extras::default();
        assert_eq!(x.value(Value::U64(3)), Slot::num(3));
        assert_eq!(x.value(Value::Null), Slot::NULL);
        assert_ne!(x.value(Value::List(vec![])), Slot::NULL);
    }

    #[test]
    fn raw_events_are_plain_and_small() {
        // A host keeps thousands of them, and one is written on every traced call: a
        // copy, nothing to drop.
        const { assert!(!std::mem::needs_drop::<RawEvent>()) };
        assert!(std::mem::size_of::<RawEvent>() <= 88);
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

//! Properties of the server-mode wire protocol (`certadm_emu::remote::protocol`):
//!
//! * every decoder, on arbitrary bytes (random, or valid messages mutated and cut),
//!   returns `Ok` or `Err` without panicking, and allocates at most a small multiple of
//!   its input, whatever counts the bytes announce (measured by a counting allocator);
//! * every message round-trips: `decode(encode(m)) == m`;
//! * encodings are canonical: when bytes decode, encoding the result gives the same bytes;
//! * the fuzz targets (`certadm_emu::remote::fuzz`, run by `cargo fuzz` from `fuzz/`) hold
//!   on generated input: arbitrary bytes, damaged messages and frames, every operation's
//!   request, and configuration files valid, damaged and arbitrary (their twins here run
//!   in the normal suite).

use certadm_emu::api::Registration;
use certadm_emu::ca::format::{BackupEnd, BackupSetKind, Position};
use certadm_emu::ca::recovery::{DataLoss, RecoveryReport};
use certadm_emu::machine::Identity;
use certadm_emu::remote::fuzz;
use certadm_emu::remote::protocol::*;
use certadm_emu::{WideList, HRESULT};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

// ----- a per-thread counting allocator ----------------------------------------------------

struct Counting;

thread_local! {
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = CURRENT.try_with(|c| {
        let v = c.get() + delta;
        c.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
    });
}

// SAFETY: forwards to the system allocator; the bookkeeping touches only const-initialised
// thread-locals without destructors.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            track(l.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            track(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(p, l) };
        track(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            track(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`; returns its result and the peak of bytes it held allocated at once
/// (its result included).
pub(crate) fn peak<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = CURRENT.with(|c| c.get());
    PEAK.with(|p| p.set(base));
    let r = f();
    let top = PEAK.with(|p| p.get());
    (r, (top - base).max(0) as usize)
}

/// The allocation budget of decoding `n` bytes.
fn budget(n: usize) -> usize {
    8 * n + 4096
}

fn check_decoders(bytes: &[u8]) {
    let (_, p) = peak(|| decode_request(bytes));
    assert!(
        p <= budget(bytes.len()),
        "decode_request: {p} bytes for {}",
        bytes.len()
    );
    let (_, p) = peak(|| decode_response(bytes));
    assert!(
        p <= budget(bytes.len()),
        "decode_response: {p} bytes for {}",
        bytes.len()
    );
    let (_, p) = peak(|| decode_hello(bytes));
    assert!(p <= budget(bytes.len()), "decode_hello: {p} bytes");
    let (_, p) = peak(|| decode_hello_reply(bytes));
    assert!(p <= budget(bytes.len()), "decode_hello_reply: {p} bytes");
    let (_, p) = peak(|| decode_read_reply(bytes));
    assert!(p <= budget(bytes.len()), "decode_read_reply: {p} bytes");
    // The borrowing decoder of reads agrees with the general one (the fuzz target's check).
    fuzz::response(bytes);
    let (_, p) = peak(|| decode_list(bytes));
    assert!(p <= budget(bytes.len()), "decode_list: {p} bytes");
    // As a stream: a frame never costs more than what arrived (plus one read buffer).
    let (r, p) = peak(|| {
        let mut s = bytes;
        let mut frames = 0;
        while let Ok(Some(_)) = read_frame(&mut s, MAX_FRAME) {
            frames += 1;
        }
        frames
    });
    let _ = r;
    assert!(p <= 4 * bytes.len() + (128 << 10), "read_frame: {p} bytes");
    // Canonical: whatever decodes re-encodes to the same bytes.
    if let Ok(req) = decode_request(bytes) {
        assert_eq!(encode_request(&req), bytes, "{req:?}");
    }
    if let Ok(resp) = decode_response(bytes) {
        assert_eq!(encode_response(&resp), bytes, "{resp:?}");
    }
    if let Ok(h) = decode_hello(bytes) {
        assert_eq!(encode_hello(&h), bytes);
    }
    if let Ok(h) = decode_hello_reply(bytes) {
        assert_eq!(encode_hello_reply(&h), bytes);
    }
    if let Ok(l) = decode_list(bytes) {
        assert_eq!(l.to_bytes(), bytes);
    }
}

// ----- strategies -------------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9 .:\\\\$_-]{0,24}",
        any::<String>(),
        Just(String::new()),
        Just("Contoso Issuing CA \u{1F512} é".to_string()),
    ]
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

fn list() -> impl Strategy<Value = WideList> {
    let prefix = prop::option::of(prop::sample::select(vec![0x44u16, 0x21, 0x25, 0x82, 0x83]));
    let entry = (prefix, any::<String>()).prop_map(|(k, p)| {
        let p: String = p.chars().filter(|c| *c != '\0').collect();
        let p = if p.is_empty() && k.is_none() {
            "x".to_string()
        } else {
            p
        };
        (k, p)
    });
    prop::collection::vec(entry, 0..5).prop_map(|v| {
        let mut l = WideList::new();
        for (k, p) in &v {
            l.push(*k, p);
        }
        l
    })
}

fn registration() -> impl Strategy<Value = Registration> {
    (
        opt_text(),
        opt_text(),
        prop::collection::vec((text(), text()), 0..3),
        opt_text(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(c, l, m, b, lo, hi)| Registration {
            checkpoint_path: c,
            log_path: l,
            restore_map: m,
            backup_log_path: b,
            gen_low: lo,
            gen_high: hi,
        })
}

fn identity() -> impl Strategy<Value = Identity> {
    any::<[bool; 4]>().prop_map(|b| Identity {
        backup_privilege: b[0],
        restore_privilege: b[1],
        local_admin: b[2],
        remote: b[3],
    })
}

fn list_kind() -> impl Strategy<Value = ListKind> {
    prop::sample::select(ListKind::ALL.to_vec())
}

fn request() -> impl Strategy<Value = Request> {
    use Request::*;
    let certbcli = prop_oneof![
        text().prop_map(|server| IsServerOnline { server }),
        (text(), any::<u32>(), any::<u32>()).prop_map(|(server, grbit_jet, backup_flags)| {
            BackupPrepare {
                server,
                grbit_jet,
                backup_flags,
            }
        }),
        (list_kind(), any::<u64>(), any::<bool>()).prop_map(|(kind, hbc, track)| GetList {
            kind,
            hbc,
            track
        }),
        (any::<u64>(), text(), any::<u32>()).prop_map(|(hbc, name, read_hint)| {
            BackupOpenFile {
                hbc,
                name,
                read_hint,
            }
        }),
        (any::<u64>(), any::<u32>()).prop_map(|(hbc, cb)| BackupRead { hbc, cb }),
        any::<u64>().prop_map(|hbc| BackupClose { hbc }),
        any::<u64>().prop_map(|hbc| BackupTruncateLogs { hbc }),
        any::<u64>().prop_map(|hbc| BackupEnd { hbc }),
        any::<u64>().prop_map(|buffer| BackupFree { buffer }),
        (text(), any::<u32>()).prop_map(|(server, restore_flags)| RestorePrepare {
            server,
            restore_flags
        }),
        (any::<u64>(), any::<bool>(), registration()).prop_map(|(hbc, through_file, reg)| {
            RestoreRegister {
                hbc,
                through_file,
                reg,
            }
        }),
        (any::<u64>(), any::<i32>()).prop_map(|(hbc, s)| RestoreRegisterComplete {
            hbc,
            restore_state: HRESULT(s)
        }),
        any::<u64>().prop_map(|hbc| RestoreEnd { hbc }),
        (text(), any::<u32>()).prop_map(|(server, control_flags)| ServerControl {
            server,
            control_flags
        }),
    ];
    let control = prop_oneof![
        text().prop_map(|json| CreateMachine { json }),
        text().prop_map(|machine| DropMachine { machine }),
        Just(ListMachines),
        (text(), any::<u32>()).prop_map(|(machine, n)| Issue { machine, n }),
        (text(), any::<u32>()).prop_map(|(machine, request_id)| Revoke {
            machine,
            request_id
        }),
        text().prop_map(|machine| RollLog { machine }),
        text().prop_map(|machine| Stop { machine }),
        text().prop_map(|machine| Crash { machine }),
        text().prop_map(|machine| Start { machine }),
        text().prop_map(|machine| WipeFiles { machine }),
        (text(), text()).prop_map(|(machine, windows_path)| HostPath {
            machine,
            windows_path
        }),
        (text(), identity()).prop_map(|(machine, identity)| SetIdentity { machine, identity }),
        (text(), any::<u32>()).prop_map(|(machine, flags)| SetInterfaceFlags { machine, flags }),
        (text(), text()).prop_map(|(machine, json)| SetFaults { machine, json }),
        text().prop_map(|machine| Report { machine }),
        (text(), any::<u64>(), any::<u32>()).prop_map(|(machine, from, max_bytes)| Trace {
            machine,
            from,
            max_bytes
        }),
        text().prop_map(|machine| Records { machine }),
        text().prop_map(|machine| State { machine }),
        text().prop_map(|machine| ClearRestoreMarker { machine }),
        Just(Shutdown),
    ];
    prop_oneof![certbcli, control]
}

/// Every operation code of the request table.
fn ops() -> Vec<u16> {
    operations().collect()
}

fn backup_set() -> impl Strategy<Value = BackupEnd> {
    (any::<bool>(), any::<(u32, u32, u64)>()).prop_map(
        |(full, (low_gen, high_gen, transactions))| BackupEnd {
            kind: if full {
                BackupSetKind::Full
            } else {
                BackupSetKind::Incremental
            },
            low_gen,
            high_gen,
            transactions,
        },
    )
}

fn data_loss() -> impl Strategy<Value = DataLoss> {
    (
        any::<u32>(),
        any::<Option<u32>>(),
        any::<Option<u64>>(),
        prop::option::of(backup_set()),
    )
        .prop_map(
            |(missing_from, missing_through, lost_transactions, backup)| DataLoss {
                missing_from,
                missing_through,
                lost_transactions,
                backup,
            },
        )
}

fn recovery() -> impl Strategy<Value = RecoveryReport> {
    (
        any::<bool>(),
        any::<(u32, u32)>(),
        prop::collection::vec(any::<u32>(), 0..6),
        0usize..1_000_000,
        any::<bool>(),
        prop::collection::vec(text(), 0..3),
        prop::option::of(backup_set()),
        prop::option::of(data_loss()),
    )
        .prop_map(
            |(hard, (generation, pos), r, t, torn, ignored, backup_end, data_loss)| {
                RecoveryReport {
                    hard,
                    from: Position { generation, pos },
                    replayed_generations: r,
                    transactions: t,
                    torn_tail: torn,
                    ignored,
                    backup_end,
                    data_loss,
                }
            },
        )
}

fn out(kind: OutKind) -> BoxedStrategy<Out> {
    match kind {
        OutKind::Unit => Just(Out::Unit).boxed(),
        OutKind::Bool => any::<bool>().prop_map(Out::Bool).boxed(),
        OutKind::U64 => any::<u64>().prop_map(Out::U64).boxed(),
        OutKind::U32 => any::<u32>().prop_map(Out::U32).boxed(),
        OutKind::U32s => prop::collection::vec(any::<u32>(), 0..8)
            .prop_map(Out::U32s)
            .boxed(),
        OutKind::List => (any::<u64>(), list())
            .prop_map(|(buffer, list)| Out::List { buffer, list })
            .boxed(),
        OutKind::Bytes => prop::collection::vec(any::<u8>(), 0..300)
            .prop_map(Out::Bytes)
            .boxed(),
        OutKind::Text => text().prop_map(Out::Text).boxed(),
        OutKind::Texts => prop::collection::vec(text(), 0..4)
            .prop_map(Out::Texts)
            .boxed(),
        OutKind::Recovery => recovery().prop_map(Out::Recovery).boxed(),
        OutKind::TracePage => (text(), any::<u64>(), any::<u64>())
            .prop_map(|(lines, next, total)| Out::TracePage { lines, next, total })
            .boxed(),
        OutKind::Records => any::<(u64, u32)>()
            .prop_map(|(count, digest)| Out::Records { count, digest })
            .boxed(),
    }
}

fn response() -> impl Strategy<Value = Response> {
    prop::sample::select(ops()).prop_flat_map(|code| {
        let kind = out_kind(code).expect("a known operation");
        prop_oneof![
            (any::<u16>().prop_map(|x| x as i32), out(kind)).prop_map(move |(hr, o)| Response {
                op: code,
                hr: HRESULT(hr),
                message: String::new(),
                out: Some(o),
            }),
            ((i32::MIN..0), text()).prop_map(move |(hr, m)| Response::fail(code, HRESULT(hr), m)),
        ]
    })
}

fn hello() -> impl Strategy<Value = Hello> {
    (any::<u16>(), opt_text(), text()).prop_map(|(version, secret, client)| Hello {
        version,
        secret,
        client,
    })
}

fn hello_reply() -> impl Strategy<Value = HelloReply> {
    (
        any::<u16>(),
        any::<i32>(),
        text(),
        text(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(version, hr, message, server, max_frame, max_read)| HelloReply {
                version,
                hr: HRESULT(hr),
                message,
                server,
                max_frame,
                max_read,
            },
        )
}

/// A valid encoding of some message, then damaged: bytes overwritten, then cut.
fn damaged() -> impl Strategy<Value = Vec<u8>> {
    let valid = prop_oneof![
        request().prop_map(|r| encode_request(&r)),
        response().prop_map(|r| encode_response(&r)),
        hello().prop_map(|h| encode_hello(&h)),
        hello_reply().prop_map(|h| encode_hello_reply(&h)),
        list().prop_map(|l| l.to_bytes()),
    ];
    (
        valid,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(mut b, edits, cut, do_cut)| {
            if !b.is_empty() {
                for (i, v) in edits {
                    let i = i.index(b.len());
                    b[i] = v;
                }
                if do_cut {
                    b.truncate(cut.index(b.len() + 1));
                }
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoders_survive_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_decoders(&bytes);
    }

    #[test]
    fn decoders_survive_damaged_messages(bytes in damaged()) {
        check_decoders(&bytes);
    }

    #[test]
    fn huge_announced_counts_allocate_nothing_big(
        code in prop::sample::select(ops()),
        fill in any::<u8>(),
        len in 0usize..64,
    ) {
        // An operation followed by bytes that announce ~4 GiB strings, lists and arrays.
        let mut req = code.to_le_bytes().to_vec();
        req.extend(std::iter::repeat_n(0xFFu8, 8));
        req.extend(std::iter::repeat_n(fill, len));
        check_decoders(&req);
        let mut resp = code.to_le_bytes().to_vec();
        resp.extend([0, 0, 0, 0, 0, 0, 0, 0]); // S_OK, empty message
        resp.extend(std::iter::repeat_n(0xFFu8, 12));
        resp.extend(std::iter::repeat_n(fill, len));
        check_decoders(&resp);
        // A frame header announcing the maximum, with no payload behind it.
        check_decoders(&MAX_FRAME.to_le_bytes());
    }

    #[test]
    fn requests_round_trip(r in request()) {
        let b = encode_request(&r);
        prop_assert_eq!(decode_request(&b), Ok(r));
    }

    #[test]
    fn responses_round_trip(r in response()) {
        let b = encode_response(&r);
        // The framed encoding (data of a read not copied) is the same bytes.
        let mut head = vec![9u8; 3];
        let tail = encode_response_frame(&r, &mut head);
        let mut framed = head.clone();
        framed.extend_from_slice(tail);
        let mut plain = Vec::new();
        write_frame(&mut plain, &b).unwrap();
        prop_assert_eq!(framed, plain);
        prop_assert_eq!(decode_response(&b), Ok(r));
    }

    #[test]
    fn handshakes_round_trip(h in hello(), r in hello_reply()) {
        prop_assert_eq!(decode_hello(&encode_hello(&h)), Ok(h));
        prop_assert_eq!(decode_hello_reply(&encode_hello_reply(&r)), Ok(r));
    }

    #[test]
    fn lists_round_trip_as_raw_bytes(l in list()) {
        let b = l.to_bytes();
        prop_assert_eq!(b.len() as u32, l.byte_len());
        prop_assert_eq!(decode_list(&b), Ok(l));
    }

    #[test]
    fn frames_round_trip(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 0..5)) {
        let mut wire = Vec::new();
        for p in &payloads {
            write_frame(&mut wire, p).unwrap();
        }
        let mut r = &wire[..];
        for p in &payloads {
            let got = read_frame(&mut r, MAX_FRAME).unwrap();
            prop_assert_eq!(got.as_ref(), Some(p));
        }
        prop_assert!(read_frame(&mut r, MAX_FRAME).unwrap().is_none());
    }
}

#[test]
fn the_budget_is_not_vacuous() {
    // The counting allocator sees allocations made by the closure.
    let (v, p) = peak(|| vec![0u8; 10_000]);
    assert!(p >= 10_000, "{p}");
    drop(v);
}

// ----- the fuzz targets' twins ------------------------------------------------------------

/// Every fuzz target on the same bytes.
fn all_targets(bytes: &[u8]) {
    fuzz::frame(bytes);
    fuzz::hello(bytes);
    fuzz::request(bytes);
    fuzz::response(bytes);
    fuzz::config(bytes);
}

/// The target `request`'s input for `r`: the index of its operation, then its payload.
fn request_target_input(r: &Request) -> Vec<u8> {
    let payload = encode_request(r);
    let pick = ops().iter().position(|&o| o == r.op()).unwrap() as u8;
    [&[pick][..], &payload[2..]].concat()
}

/// A configuration file as text: a valid one (machines with every section), or one
/// damaged (characters replaced, inserted, the text cut), or arbitrary text.
fn config_text() -> impl Strategy<Value = String> {
    let size = prop_oneof![
        any::<u32>().prop_map(|n| serde_json::json!(n)),
        (
            1u32..100_000,
            prop::sample::select(vec!["", "K", "M", "G", "KB", "x"])
        )
            .prop_map(|(n, u)| serde_json::json!(format!("{n}{u}"))),
    ];
    let machine = (
        "[A-Z][A-Z0-9-]{0,20}",
        prop::option::of("[a-z0-9.]{1,30}"),
        prop::option::of((any::<u64>(), 0u32..100_000, size, 1u32..64, any::<u32>())),
        prop::option::of((any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>())),
        any::<bool>(),
    )
        .prop_map(|(name, dns, ca, identity, strict)| {
            let mut m = serde_json::json!({"name": name, "strict": strict});
            if let Some(d) = dns {
                m["dns"] = d.into();
            }
            if let Some((seed, records, edb, logs, flags)) = ca {
                m["ca"] = serde_json::json!({"seed": seed, "records": records, "edb_size": edb,
                    "log_capacity": logs, "interface_flags": flags, "name": "Fuzz CA"});
            }
            if let Some((b, r, a, x)) = identity {
                m["identity"] = serde_json::json!({"backup_privilege": b, "restore_privilege": r,
                    "local_admin": a, "remote": x});
            }
            m
        });
    let valid = (prop::collection::vec(machine, 0..3), any::<bool>()).prop_map(|(ms, whole)| {
        if whole || ms.is_empty() {
            serde_json::json!({"machines": ms, "report": "/tmp/r.json"}).to_string()
        } else {
            ms[0].to_string()
        }
    });
    let damaged = (
        valid.clone(),
        prop::collection::vec(
            (any::<prop::sample::Index>(), any::<char>(), any::<bool>()),
            0..4,
        ),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(text, edits, cut, do_cut)| {
            let mut chars: Vec<char> = text.chars().collect();
            for (i, c, insert) in edits {
                let i = i.index(chars.len().max(1));
                if insert || chars.is_empty() {
                    chars.insert(i.min(chars.len()), c);
                } else {
                    chars[i] = c;
                }
            }
            if do_cut && !chars.is_empty() {
                chars.truncate(cut.index(chars.len()));
            }
            chars.into_iter().collect()
        });
    prop_oneof![valid, damaged, "\\PC{0,200}"]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn fuzz_targets_hold_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        all_targets(&bytes);
    }

    #[test]
    fn fuzz_targets_hold_on_damaged_messages(bytes in damaged()) {
        all_targets(&bytes);
    }

    /// The request target decodes every operation's valid request, and damaged ones.
    #[test]
    fn fuzz_request_target_reaches_every_operation(
        r in request(),
        edit in (any::<prop::sample::Index>(), any::<u8>()),
        cut in any::<prop::sample::Index>(),
    ) {
        let input = request_target_input(&r);
        fuzz::request(&input);
        let mut e = input.clone();
        let i = edit.0.index(e.len());
        e[i] = edit.1;
        fuzz::request(&e);
        fuzz::request(&input[..cut.index(input.len())]);
    }

    /// The frame target on streams of frames, with free parts below and above their
    /// sizes and every grant pattern, whole and cut.
    #[test]
    fn fuzz_frame_target_on_frame_streams(
        free in 0u8..40,
        pattern in any::<u8>(),
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12_000), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut data = vec![free, pattern];
        for p in &payloads {
            write_frame(&mut data, p).unwrap();
        }
        fuzz::frame(&data);
        fuzz::frame(&data[..2 + cut.index(data.len() - 1)]);
    }

    /// The configuration parser: valid files round-trip, damaged and arbitrary ones give
    /// an error, never a panic.
    #[test]
    fn fuzz_config_target_on_configuration_files(text in config_text()) {
        fuzz::config(text.as_bytes());
    }
}

#[test]
fn the_request_target_input_decodes_to_the_request() {
    let r = Request::Issue {
        machine: "FZ".into(),
        n: 3,
    };
    let input = request_target_input(&r);
    let op = ops()[input[0] as usize % ops().len()];
    let payload = [&op.to_le_bytes()[..], &input[1..]].concat();
    assert_eq!(decode_request(&payload), Ok(r));
}

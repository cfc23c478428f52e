//! Fuzz entry points: what the server decodes from a peer, one function per target.
//!
//! Each function takes arbitrary bytes, runs a decoder over them and checks the
//! decoder's contract; it **panics only if the contract is broken** (a decoder panicked,
//! or a property below failed), which is what a fuzzer reports. The cargo-fuzz targets in
//! `fuzz/fuzz_targets/` are one line each over these functions, and the property tests
//! of the normal suite (`tests/it/prop_protocol.rs`) call the same functions with
//! generated inputs, so both check one thing. `CONTRIBUTING.md` ("Fuzzing") says how to
//! run them.
//!
//! | target | decoder | properties |
//! |---|---|---|
//! | [`frame`] | [`read_frame_metered`], [`read_frame`] | no frame larger than its limit; the grants add up to what lies beyond the free part; a dropped frame keeps at most its free part; the metered and the plain reader agree when everything is granted |
//! | [`hello`] | [`decode_hello`], [`decode_hello_reply`] | canonical: bytes that decode re-encode to themselves |
//! | [`request`] | [`decode_request`], every operation | canonical; the request answers to the operation it was decoded from |
//! | [`response`] | [`decode_response`], [`decode_read_reply`], [`read_reply_data_len`] | canonical; the borrowing read decoder agrees with the general one, and the streaming shortcut with both |
//! | [`config`] | [`Config::from_json`], [`MachineConfig`], [`parse_size`] | a configuration that parses round-trips through its JSON |

use super::protocol::*;
use crate::config::{parse_size, Config, MachineConfig};
use crate::core::Call;

/// Frames read from `data` as a stream: the first byte picks the free part (0 to 255 ×
/// 256 bytes) and a grant pattern (the bits of the second byte, in turn), the rest is the
/// stream, read until it ends or breaks.
pub fn frame(data: &[u8]) {
    let (free, pattern, stream) = match data {
        [a, b, rest @ ..] => (*a as usize * 256, *b, rest),
        _ => return,
    };
    let limit = MAX_FRAME;
    let mut s = stream;
    let mut buf = Vec::new();
    let mut turn = 0u32;
    loop {
        let mut granted = 0usize;
        let mut refused = false;
        let before = s.len();
        let r = read_frame_metered(&mut s, limit, &mut buf, free, |n| {
            let yes = pattern.rotate_left(turn) & 1 == 1;
            turn += 1;
            if yes {
                granted += n;
            } else {
                refused = true;
            }
            yes
        });
        let used = before - s.len();
        match r {
            Ok(FrameRead::End) => {
                assert_eq!(used, 0, "a clean end consumed {used} bytes");
                break;
            }
            Ok(FrameRead::Frame) => {
                assert!(!refused, "a frame was kept after a refusal");
                assert!(buf.len() <= limit as usize);
                assert_eq!(used, 4 + buf.len(), "a frame consumed more than itself");
                assert_eq!(granted, buf.len().saturating_sub(free), "grants");
            }
            Ok(FrameRead::Dropped { len }) => {
                assert!(refused, "dropped without a refusal");
                assert_eq!(used, 4 + len as usize, "a dropped frame is read to its end");
                assert!(buf.len() <= (len as usize).min(free.max(granted + free)));
                assert!(
                    buf.len() >= (len as usize).min(free),
                    "the free part is kept"
                );
            }
            Err(_) => break,
        }
    }
    // Everything granted: the metered reader is the plain one.
    let (mut a, mut b) = (stream, stream);
    loop {
        let mut buf = Vec::new();
        let x = read_frame_metered(&mut a, limit, &mut buf, free, |_| true);
        let y = read_frame(&mut b, limit);
        match (x, y) {
            (Ok(FrameRead::Frame), Ok(Some(f))) => assert_eq!(buf, f),
            (Ok(FrameRead::End), Ok(None)) => break,
            (Err(_), Err(_)) => break,
            (x, y) => panic!("metered {x:?}, plain {y:?}"),
        }
    }
}

/// The two handshake messages.
pub fn hello(data: &[u8]) {
    if let Ok(h) = decode_hello(data) {
        assert_eq!(encode_hello(&h), data, "a Hello that is not canonical");
    }
    if let Ok(r) = decode_hello_reply(data) {
        assert_eq!(
            encode_hello_reply(&r),
            data,
            "a HelloReply that is not canonical"
        );
    }
}

/// A request of every operation: the first byte picks the operation code (so that each
/// decoder of the request table gets its share), the rest is the payload after the code.
pub fn request(data: &[u8]) {
    let Some((pick, rest)) = data.split_first() else {
        return;
    };
    let ops: Vec<u16> = operations().collect();
    let op = ops[*pick as usize % ops.len()];
    let mut payload = op.to_le_bytes().to_vec();
    payload.extend_from_slice(rest);
    if let Ok(r) = decode_request(&payload) {
        assert_eq!(r.op(), op, "{r:?} decoded from operation {op:#06x}");
        assert_eq!(
            encode_request(&r),
            payload,
            "a request that is not canonical"
        );
    }
    // The raw bytes too, as a server receives them.
    if let Ok(r) = decode_request(data) {
        assert_eq!(encode_request(&r), data, "a request that is not canonical");
    }
}

/// A response, as a client decodes it.
pub fn response(data: &[u8]) {
    let general = decode_response(data);
    if let Ok(r) = &general {
        assert_eq!(encode_response(r), data, "a response that is not canonical");
    }
    // The streaming reader's shortcut takes only what the decoder reads the same way.
    if let Some(head) = data.first_chunk::<READ_REPLY_HEAD>() {
        if let Some(n) = read_reply_data_len(head, data.len()) {
            let r =
                decode_read_reply(data).expect("decode_read_reply accepts the shortcut's frames");
            assert_eq!((r.hr.is_ok(), r.message.as_str()), (true, ""));
            assert_eq!(r.data, Some(&data[READ_REPLY_HEAD..]));
            assert_eq!(n, data.len() - READ_REPLY_HEAD);
        }
    }
    match decode_read_reply(data) {
        Ok(r) => {
            if r.hr.is_ok() && r.message.is_empty() {
                let head = data.first_chunk().expect("a read reply has a head");
                assert_eq!(
                    read_reply_data_len(head, data.len()),
                    r.data.map(<[u8]>::len)
                );
            }
            let g = general.expect("decode_response accepts what decode_read_reply does");
            assert_eq!(
                (g.op, g.hr, &g.message),
                (Call::BackupRead.op(), r.hr, &r.message)
            );
            let data = match &g.out {
                Some(Out::Bytes(b)) => Some(&b[..]),
                _ => None,
            };
            assert_eq!(data, r.data);
        }
        Err(_) => assert!(
            general.is_err() || general.is_ok_and(|g| g.op != Call::BackupRead.op()),
            "decode_response accepts a read reply that decode_read_reply refuses"
        ),
    }
}

/// A configuration file (`CERTADM_EMU_CONFIG`, `serve --config`) and the machine object
/// of `CreateMachine`, from the bytes as UTF-8 text (other bytes are skipped), and a size.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Config::from_json(text) {
        let again = serde_json::to_string(&c).expect("a parsed configuration serialises");
        assert_eq!(
            Config::from_json(&again).as_ref(),
            Ok(&c),
            "a configuration that does not round-trip: {again}"
        );
    }
    if let Ok(m) = serde_json::from_str::<MachineConfig>(text) {
        let again = serde_json::to_string(&m).expect("a parsed machine serialises");
        assert_eq!(
            serde_json::from_str::<MachineConfig>(&again).ok().as_ref(),
            Some(&m),
            "a machine that does not round-trip: {again}"
        );
    }
    let _ = parse_size(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_targets_take_valid_and_broken_input() {
        let req = encode_request(&Request::ListMachines);
        let mut framed = Vec::new();
        write_frame(&mut framed, &req).unwrap();
        for data in [&b""[..], b"\x00", &req, &framed, b"\xff\xff\xff\xff\x01"] {
            frame(data);
            hello(data);
            request(data);
            response(data);
            config(data);
        }
        frame(&[[1, 0b1010_1010].as_slice(), &framed, &framed].concat());
        config(br#"{"machines": [{"name": "FZ", "ca": {"records": 3}}]}"#);
        config(br#"{"name": "FZ"}"#);
    }
}

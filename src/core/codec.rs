//! The little-endian codec of every byte format the emulator writes: the CA's files
//! (`docs/FILE-FORMATS.md`) and the server-mode messages (`docs/PROTOCOL.md`).
//!
//! Integers are little-endian. Strings come in the two encodings those documents use:
//! [`Writer::utf8`] (a `u16` byte count, then UTF-8: the files) and [`Writer::utf16`] (a
//! `u32` count of UTF-16 units, then the units: the wire, as on Windows). Every read is
//! bounds-checked and names the field it reads, so a [`DecodeError`] says which field of
//! which message is short or wrong; a count is checked against the bytes left before
//! anything is allocated.

use super::wide::WideList;
use std::fmt;

/// Why bytes do not decode: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed message: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// `Err(DecodeError(what))`.
pub(crate) fn err<T>(what: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(what.into()))
}

/// Appends little-endian values to a byte vector.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub(crate) fn new() -> Self {
        Writer::default()
    }
    /// A writer that reuses `buf`'s allocation (its bytes are cleared).
    pub(crate) fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        Writer { buf }
    }
    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }
    /// The bytes written so far.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
    /// The buffer.
    pub(crate) fn into_inner(self) -> Vec<u8> {
        self.buf
    }
    /// A `u8`.
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// A boolean as one byte, 0 or 1.
    pub(crate) fn bool(&mut self, v: bool) {
        self.buf.push(v as u8);
    }
    /// A `u16`.
    pub(crate) fn u16(&mut self, v: u16) {
        self.raw(&v.to_le_bytes());
    }
    /// A `u32`.
    pub(crate) fn u32(&mut self, v: u32) {
        self.raw(&v.to_le_bytes());
    }
    /// An `i32`.
    pub(crate) fn i32(&mut self, v: i32) {
        self.raw(&v.to_le_bytes());
    }
    /// A `u64`.
    pub(crate) fn u64(&mut self, v: u64) {
        self.raw(&v.to_le_bytes());
    }
    /// An `i64`.
    pub(crate) fn i64(&mut self, v: i64) {
        self.raw(&v.to_le_bytes());
    }
    /// Bytes as they are, without a count.
    pub(crate) fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// Overwrites the `u32` at byte `at` (a count or length known only at the end).
    pub(crate) fn patch_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    /// Overwrites the `u64` at byte `at`.
    #[cfg(test)]
    pub(crate) fn patch_u64(&mut self, at: usize, v: u64) {
        self.buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    /// A string as the files store it: `u16` count of bytes, then UTF-8 (at most 65535
    /// bytes; a longer string is cut there).
    pub(crate) fn utf8(&mut self, s: &str) {
        let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
        self.u16(b.len() as u16);
        self.raw(b);
    }
    /// A string as the wire carries it: `u32` count of UTF-16 units, then the units.
    pub(crate) fn utf16(&mut self, s: &str) {
        let at = self.buf.len();
        self.u32(0);
        let mut n = 0u32;
        for u in s.encode_utf16() {
            self.raw(&u.to_le_bytes());
            n += 1;
        }
        self.patch_u32(at, n);
    }
    /// An optional [`utf16`](Self::utf16) string: one byte 0 (NULL) or 1, then the string.
    pub(crate) fn opt_utf16(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.utf16(s);
            }
        }
    }
    /// Bytes: `u32` count, then the bytes.
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.raw(b);
    }
    /// A list: `u32` byte count (`*pcbSize`), then the double-NUL UTF-16LE bytes.
    pub(crate) fn list(&mut self, l: &WideList) {
        self.bytes(&l.to_bytes());
    }
    /// `u32` count, then each `u32`.
    pub(crate) fn u32s(&mut self, v: &[u32]) {
        self.u32(v.len() as u32);
        for x in v {
            self.u32(*x);
        }
    }
    /// `u32` count, then each [`utf16`](Self::utf16) string.
    pub(crate) fn utf16s(&mut self, v: &[String]) {
        self.u32(v.len() as u32);
        for s in v {
            self.utf16(s);
        }
    }
}

/// Reads little-endian values from a byte slice. Every read is bounds-checked; `what`
/// names the field in the error.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Bytes read so far (the offset of the next field).
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }
    /// True when every byte was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
    /// `n` bytes as they are.
    pub(crate) fn raw(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return err(format!(
                "{what}: needs {n} bytes at offset {}, {} left",
                self.pos,
                self.remaining()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let s = self.raw(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    /// A `u8`.
    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    /// A boolean: exactly 0 or 1.
    pub(crate) fn bool(&mut self, what: &str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => err(format!("{what}: boolean byte {v} is not 0 or 1")),
        }
    }
    /// A `u16`.
    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    /// A `u32`.
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    /// An `i32`.
    pub(crate) fn i32(&mut self, what: &str) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }
    /// A `u64`.
    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    /// An `i64`.
    pub(crate) fn i64(&mut self, what: &str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    /// A [`Writer::utf8`] string; fails on bytes that are not UTF-8.
    pub(crate) fn utf8(&mut self, what: &str) -> Result<String, DecodeError> {
        let n = self.u16(what)? as usize;
        match std::str::from_utf8(self.raw(n, what)?) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => err(format!("{what}: not UTF-8 ({e})")),
        }
    }
    /// A [`Writer::utf16`] string; fails on unpaired surrogates.
    pub(crate) fn utf16(&mut self, what: &str) -> Result<String, DecodeError> {
        let n = self.u32(what)? as usize;
        let Some(len) = n.checked_mul(2) else {
            return err(format!("{what}: string length {n} overflows"));
        };
        let raw = self.raw(len, what)?;
        let units = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        let mut s = String::with_capacity(n);
        for c in char::decode_utf16(units) {
            match c {
                Ok(c) => s.push(c),
                Err(e) => {
                    return err(format!(
                        "{what}: unpaired surrogate {:#06x} (strings must be valid UTF-16)",
                        e.unpaired_surrogate()
                    ))
                }
            }
        }
        Ok(s)
    }
    /// A [`Writer::opt_utf16`] string.
    pub(crate) fn opt_utf16(&mut self, what: &str) -> Result<Option<String>, DecodeError> {
        if self.bool(what)? {
            self.utf16(what).map(Some)
        } else {
            Ok(None)
        }
    }
    /// [`Writer::bytes`].
    pub(crate) fn bytes(&mut self, what: &str) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32(what)? as usize;
        Ok(self.raw(n, what)?.to_vec())
    }
    /// A list: canonical double-NUL UTF-16LE bytes, every entry non-empty and valid UTF-16.
    pub(crate) fn list(&mut self, what: &str) -> Result<WideList, DecodeError> {
        let n = self.u32(what)? as usize;
        let raw = self.raw(n, what)?;
        decode_list(raw).map_err(|e| DecodeError(format!("{what}: {}", e.0)))
    }
    /// A `u32` array.
    pub(crate) fn u32s(&mut self, what: &str) -> Result<Vec<u32>, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(4) > self.remaining() {
            return err(format!("{what}: {n} numbers do not fit in the message"));
        }
        (0..n).map(|_| self.u32(what)).collect()
    }
    /// A [`Writer::utf16s`] array.
    pub(crate) fn utf16s(&mut self, what: &str) -> Result<Vec<String>, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(4) > self.remaining() {
            return err(format!("{what}: {n} strings do not fit in the message"));
        }
        (0..n).map(|_| self.utf16(what)).collect()
    }
    /// Fails unless every byte was read.
    pub(crate) fn finish(&self, what: &str) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return err(format!(
                "{what}: {} trailing byte(s) after the message",
                self.remaining()
            ));
        }
        Ok(())
    }
}

/// Decodes the raw bytes of a list. Accepts exactly what [`WideList::to_bytes`] produces:
/// an even length, non-empty NUL-terminated entries of valid UTF-16, one final NUL.
pub fn decode_list(raw: &[u8]) -> Result<WideList, DecodeError> {
    if raw.len() < 2 || raw.len() % 2 != 0 {
        return err(format!(
            "list of {} bytes: a list is an even number of bytes, at least 2 (one NUL)",
            raw.len()
        ));
    }
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let Some(entries) = WideList::parse_units(&units, false) else {
        return err("list is not double-NUL terminated UTF-16");
    };
    let list = WideList::from_entries(entries.iter().map(|e| (None, e.path.as_str())));
    if list.byte_len() as usize != raw.len() {
        return err("list has bytes after its terminating empty entry");
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::consts::CSBFT_CERTSERVER_DATABASE;

    #[test]
    fn integers_are_little_endian() {
        let mut w = Writer::new();
        w.u8(1);
        w.bool(true);
        w.u16(0x0203);
        w.u32(0x0405_0607);
        w.i32(-2);
        w.u64(0x0809_0A0B_0C0D_0E0F);
        w.i64(-3);
        let b = w.into_inner();
        assert_eq!(&b[..8], [1, 1, 3, 2, 7, 6, 5, 4]);
        let mut r = Reader::new(&b);
        assert_eq!(r.u8("a"), Ok(1));
        assert_eq!(r.bool("b"), Ok(true));
        assert_eq!(r.u16("c"), Ok(0x0203));
        assert_eq!(r.u32("d"), Ok(0x0405_0607));
        assert_eq!(r.i32("e"), Ok(-2));
        assert_eq!(r.u64("f"), Ok(0x0809_0A0B_0C0D_0E0F));
        assert_eq!(r.i64("g"), Ok(-3));
        assert!(r.is_empty());
        assert_eq!(
            r.u32("h").unwrap_err().0,
            format!("h: needs 4 bytes at offset {}, 0 left", b.len())
        );
        assert!(Reader::new(&[2]).bool("b").is_err());
    }

    #[test]
    fn file_string_is_u16_bytes_then_utf8() {
        let mut w = Writer::new();
        w.utf8("Aé");
        assert_eq!(w.as_bytes(), [3, 0, 0x41, 0xC3, 0xA9]);
        assert_eq!(Reader::new(w.as_bytes()).utf8("s").unwrap(), "Aé");
        assert!(Reader::new(&[1, 0, 0xFF]).utf8("s").is_err());
        assert!(Reader::new(&[4, 0, 0x41]).utf8("s").is_err());
    }

    #[test]
    fn string_is_u32_units_then_utf16le() {
        let mut w = Writer::new();
        w.utf16("Aé");
        assert_eq!(w.as_bytes(), [2, 0, 0, 0, 0x41, 0, 0xE9, 0]);
        assert_eq!(Reader::new(w.as_bytes()).utf16("s").unwrap(), "Aé");
        // An unpaired surrogate is refused, not replaced.
        let bad = [1, 0, 0, 0, 0x00, 0xD8];
        assert!(Reader::new(&bad).utf16("s").is_err());
        // A count larger than the bytes left is refused before allocating.
        let huge = [0xFF, 0xFF, 0xFF, 0xFF];
        assert!(Reader::new(&huge).utf16("s").is_err());
    }

    #[test]
    fn list_is_the_raw_pcbsize_bytes() {
        let l = WideList::from_entries([(Some(CSBFT_CERTSERVER_DATABASE), r"\\CA1\C$\x.edb")]);
        let mut w = Writer::new();
        w.list(&l);
        assert_eq!(&w.as_bytes()[..4], &l.byte_len().to_le_bytes());
        assert_eq!(&w.as_bytes()[4..], &l.to_bytes()[..]);
        assert_eq!(Reader::new(w.as_bytes()).list("l").unwrap(), l);
        // The empty list is one NUL.
        let mut w = Writer::new();
        w.list(&WideList::new());
        assert_eq!(w.as_bytes(), [2, 0, 0, 0, 0, 0]);
        assert_eq!(
            Reader::new(w.as_bytes()).list("l").unwrap(),
            WideList::new()
        );
        // Odd, unterminated, or with bytes after the end: refused.
        for bad in [
            &[1u8, 0, 0, 0, 0][..],
            &[2, 0, 0, 0, 0x41, 0],
            &[6, 0, 0, 0, 0, 0, 0x41, 0, 0, 0],
        ] {
            assert!(Reader::new(bad).list("l").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn patches_and_reused_buffers() {
        let mut w = Writer::with_buffer(vec![9, 9, 9]);
        assert!(w.as_bytes().is_empty());
        w.u32(0);
        w.u64(0);
        w.patch_u32(0, 7);
        w.patch_u64(4, 8);
        assert_eq!(w.len(), 12);
        assert_eq!(w.into_inner(), [7, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
    }
}

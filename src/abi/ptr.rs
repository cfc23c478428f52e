//! Every raw-pointer access of the ABI, in one place.
//!
//! Rules (see `COVERAGE.md`, "ABI conventions"):
//! 1. Every pointer argument is checked for NULL before anything else happens; a NULL
//!    where a value is required gets `E_POINTER` and changes nothing.
//! 2. Out-parameters are set to a defined value (NULL / 0 / FALSE) on entry, so they are
//!    never left undefined, then overwritten on success.
//! 3. Pointers are read and written unaligned-safe; strings are read up to
//!    [`MAX_WSTR`] code units and must be valid UTF-16 ([`read_wstr`]), or, for the .NET
//!    entry set's UTF-8 parameters ([`read_str`]), valid UTF-8 of at most as many UTF-16
//!    code units once decoded.

use crate::core::{Error, Result};
use crate::session::Hcsbc;
use core::ffi::c_void;

/// Longest string accepted (the Windows extended path limit).
pub(crate) const MAX_WSTR: usize = 32_767;

/// Fails with `E_POINTER` if `p` is NULL.
pub fn require<T>(call: &'static str, param: &'static str, p: *const T) -> Result<()> {
    if p.is_null() {
        Err(Error::NullPointer { call, param })
    } else {
        Ok(())
    }
}

/// Writes `v` through `p` if it is not NULL.
///
/// # Safety
/// `p` is NULL or valid for a write of `T`.
pub unsafe fn write<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: non-null checked; validity is the caller's contract.
        unsafe { p.write_unaligned(v) }
    }
}

/// The body of an export whose result is written to its out-parameter `param`: `empty`
/// first (the caller never reads garbage), then what `f` makes ([`fill`]), behind the
/// unwind guard ([`super::boundary`]).
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
pub(crate) unsafe fn returning<T>(
    call: &'static str,
    param: &'static str,
    out: *mut T,
    empty: T,
    f: impl FnOnce() -> Result<T>,
) -> i32 {
    // SAFETY: per contract, `out` is NULL or writable.
    super::boundary(call, || unsafe { fill(call, param, out, empty, f) })
}

/// Rule 2 for an out-parameter the caller must provide: `empty` is written first (so a
/// failure leaves NULL or 0 there), NULL is refused with `E_POINTER` (named `param`), and
/// the value `f` computes is written on success.
///
/// # Safety
/// `out` is NULL or valid for a write of `T`.
pub(crate) unsafe fn fill<T>(
    call: &'static str,
    param: &'static str,
    out: *mut T,
    empty: T,
    f: impl FnOnce() -> Result<T>,
) -> Result<()> {
    // SAFETY: NULL or valid per contract (`write` skips NULL).
    unsafe { write(out, empty) };
    require(call, param, out)?;
    let v = f()?;
    // SAFETY: checked non-NULL above.
    unsafe { write(out, v) };
    Ok(())
}

/// The units of a NUL-terminated string before its NUL: at most `max` (`E_INVALIDARG`
/// naming `param` when there is no NUL within them).
///
/// # Safety
/// `p` is non-null and points to a NUL-terminated string of `U`.
unsafe fn nul_len<U: Copy + Default + PartialEq>(
    call: &'static str,
    param: &'static str,
    p: *const U,
    max: usize,
    units: &str,
) -> Result<usize> {
    for len in 0..=max {
        // SAFETY: p is non-null and the string is NUL-terminated (caller contract); we
        // stop at the NUL.
        if unsafe { p.add(len).read_unaligned() } == U::default() {
            return Ok(len);
        }
    }
    Err(Error::invalid_arg(
        call,
        format!("{param} has no NUL terminator within {max} {units}"),
    ))
}

/// Reads a NUL-terminated UTF-16 string.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated UTF-16 string.
pub unsafe fn read_wstr(call: &'static str, param: &'static str, p: *const u16) -> Result<String> {
    require(call, param, p)?;
    // Find the terminator first, then decode the whole string at once.
    // SAFETY: forwarded contract (p is non-null).
    let len = unsafe { nul_len(call, param, p, MAX_WSTR, "characters") }?;
    let units: Vec<u16> = (0..len)
        // SAFETY: the `len` units before the NUL were just read.
        .map(|i| unsafe { p.add(i).read_unaligned() })
        .collect();
    String::from_utf16(&units)
        .map_err(|_| Error::invalid_arg(call, format!("{param} is not valid UTF-16")))
}

/// Short ASCII strings (server names) are decoded on the stack by [`with_wstr`].
const STACK_WSTR: usize = 128;

/// Runs `f` on a NUL-terminated UTF-16 string, decoded as [`read_wstr`] does (same checks,
/// same errors), without allocating when it is short ASCII (a server name).
///
/// # Safety
/// As [`read_wstr`].
pub(crate) unsafe fn with_wstr<T>(
    call: &'static str,
    param: &'static str,
    p: *const u16,
    f: impl FnOnce(&str) -> Result<T>,
) -> Result<T> {
    require(call, param, p)?;
    // Not zeroed first: only the bytes written below are read.
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); STACK_WSTR];
    let mut len = 0usize;
    while len < STACK_WSTR {
        // SAFETY: p is non-null and the string is NUL-terminated (caller contract); we
        // stop at the NUL.
        let u = unsafe { p.add(len).read_unaligned() };
        // One test for the usual unit (ASCII, 1..=0x7F); the NUL and the others after it.
        if u.wrapping_sub(1) >= 0x7F {
            if u == 0 {
                // SAFETY: the first `len` bytes of `buf` were written (below), each an
                // ASCII character: initialised, and valid UTF-8.
                return f(unsafe {
                    std::str::from_utf8_unchecked(std::slice::from_raw_parts(
                        buf.as_ptr().cast::<u8>(),
                        len,
                    ))
                });
            }
            break;
        }
        buf[len].write(u as u8);
        len += 1;
    }
    // Not ASCII, or long: decoded as `read_wstr` does.
    // SAFETY: forwarded contract.
    let s = unsafe { read_wstr(call, param, p) }?;
    f(&s)
}

/// Most bytes scanned for the NUL of a UTF-8 string: [`MAX_WSTR`] UTF-16 code units take
/// at most 3 bytes each in UTF-8 (a 4-byte sequence is 2 units).
pub(crate) const MAX_STR_BYTES: usize = 3 * MAX_WSTR;

/// Reads a NUL-terminated UTF-8 string (the `char *` a .NET `CharSet.Auto` or `Ansi`
/// declaration passes on Unix). The same strings as [`read_wstr`] are accepted: at most
/// 32,767 (`MAX_WSTR`) UTF-16 code units. Invalid UTF-8 is `E_INVALIDARG`, never guessed at.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated byte string.
pub unsafe fn read_str(call: &'static str, param: &'static str, p: *const u8) -> Result<String> {
    require(call, param, p)?;
    // SAFETY: forwarded contract (p is non-null).
    let len = unsafe { nul_len(call, param, p, MAX_STR_BYTES, "bytes") }?;
    // SAFETY: the `len` bytes before the NUL were just read.
    let bytes = unsafe { std::slice::from_raw_parts(p, len) };
    let s = std::str::from_utf8(bytes).map_err(|e| {
        Error::invalid_arg(
            call,
            format!(
                "{param} is not valid UTF-8 (byte {} of {len}); the .NET entry points take \
                 UTF-8 strings, the W functions UTF-16",
                e.valid_up_to()
            ),
        )
    })?;
    if s.encode_utf16().count() > MAX_WSTR {
        return Err(Error::invalid_arg(
            call,
            format!("{param} is longer than {MAX_WSTR} UTF-16 code units"),
        ));
    }
    Ok(s.to_owned())
}

/// A code unit of a string argument: `u16` for the `W` functions (UTF-16, [`read_wstr`]),
/// `u8` for the .NET entry set's un-suffixed names (UTF-8, [`read_str`]).
pub trait StrUnit: Copy {
    /// Reads a NUL-terminated string of these units, with the checks of its reader.
    ///
    /// # Safety
    /// `p` is NULL or points to a NUL-terminated string.
    unsafe fn read(call: &'static str, param: &'static str, p: *const Self) -> Result<String>;
}

impl StrUnit for u16 {
    unsafe fn read(call: &'static str, param: &'static str, p: *const u16) -> Result<String> {
        // SAFETY: forwarded contract.
        unsafe { read_wstr(call, param, p) }
    }
}

impl StrUnit for u8 {
    unsafe fn read(call: &'static str, param: &'static str, p: *const u8) -> Result<String> {
        // SAFETY: forwarded contract.
        unsafe { read_str(call, param, p) }
    }
}

/// Reads an optional string of either kind: NULL is `None`.
///
/// # Safety
/// As [`StrUnit::read`].
pub unsafe fn read_opt<U: StrUnit>(
    call: &'static str,
    param: &'static str,
    p: *const U,
) -> Result<Option<String>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { U::read(call, param, p) }.map(Some)
    }
}

/// The `HCSBC` argument of an export: NULL is `E_HANDLE` ("hbc is NULL"); anything else is
/// checked where the call routes.
pub fn handle(call: &'static str, h: *const c_void) -> Result<Hcsbc> {
    Hcsbc::from_ptr(h).ok_or_else(|| Error::InvalidHandle {
        call,
        handle: 0,
        why: "hbc is NULL".into(),
    })
}

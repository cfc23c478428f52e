//! `HCSBC` handles: opaque, never NULL, and self-checking.
//!
//! A handle packs, in one pointer-sized word:
//!
//! | bits | field |
//! |---|---|
//! | 0 | tag, always 1 (a handle is odd: never NULL, never an aligned pointer) |
//! | 1–12 | host slot in the process registry |
//! | 13–23 | host generation (bumped when a slot is reused) |
//! | 24–31 | session slot in the host's table |
//! | 32–63 | session generation (bumped on every insert into that slot) |
//!
//! A stale, forged or ended handle fails the slot or generation check and is
//! rejected with `E_HANDLE`; it never reaches another session. Create, look up
//! and end are O(1). A session slot's generation wraps after 2^32 reuses.

use std::num::NonZeroUsize;

const _: () = assert!(
    usize::BITS == 64,
    "certadm-emu handles need a 64-bit target"
);

/// Host slots per process.
pub(crate) const HOST_SLOTS: usize = 1 << 12;
/// Sessions per host open at once.
pub(crate) const SESSION_SLOTS: usize = 1 << 8;
const HOST_GEN_MASK: u16 = (1 << 11) - 1;

/// A backup or restore context handle (`HCSBC`).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hcsbc(NonZeroUsize);

/// The fields of a decoded handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandleParts {
    /// Host slot.
    pub host_slot: u16,
    /// Host generation (11 bits).
    pub host_gen: u16,
    /// Session slot.
    pub session_slot: u8,
    /// Session generation.
    pub session_gen: u32,
}

impl Hcsbc {
    /// A handle from its raw value (as received through the ABI); `None` for NULL.
    pub fn from_raw(v: usize) -> Option<Hcsbc> {
        NonZeroUsize::new(v).map(Hcsbc)
    }

    /// A handle from a pointer (windows-sys passes `*mut c_void`).
    pub fn from_ptr(p: *const core::ffi::c_void) -> Option<Hcsbc> {
        Self::from_raw(p as usize)
    }

    /// The raw value.
    pub fn as_raw(self) -> usize {
        self.0.get()
    }

    /// The handle as the pointer the ABI hands out.
    pub fn as_ptr(self) -> *mut core::ffi::c_void {
        self.0.get() as *mut core::ffi::c_void
    }

    pub(crate) fn encode(p: HandleParts) -> Hcsbc {
        let v = 1usize
            | ((p.host_slot as usize & (HOST_SLOTS - 1)) << 1)
            | (((p.host_gen & HOST_GEN_MASK) as usize) << 13)
            | ((p.session_slot as usize) << 24)
            | ((p.session_gen as usize) << 32);
        Hcsbc(NonZeroUsize::new(v).expect("tag bit set"))
    }

    /// Splits the handle into its fields; `None` if it lacks the tag bit.
    pub fn parts(self) -> Option<HandleParts> {
        let v = self.0.get();
        if v & 1 == 0 {
            return None;
        }
        Some(HandleParts {
            host_slot: ((v >> 1) & (HOST_SLOTS - 1)) as u16,
            host_gen: ((v >> 13) as u16) & HOST_GEN_MASK,
            session_slot: (v >> 24) as u8,
            session_gen: (v >> 32) as u32,
        })
    }

    pub(crate) fn host_gen_bits(g: u16) -> u16 {
        g & HOST_GEN_MASK
    }
}

impl std::fmt::Debug for Hcsbc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.parts() {
            Some(p) => write!(
                f,
                "H(host {}g{}, session {}g{})",
                p.host_slot, p.host_gen, p.session_slot, p.session_gen
            ),
            None => write!(f, "H(forged {:#x})", self.as_raw()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tag() {
        let p = HandleParts {
            host_slot: 4095,
            host_gen: 2047,
            session_slot: 255,
            session_gen: u32::MAX,
        };
        let h = Hcsbc::encode(p);
        assert_eq!(h.parts(), Some(p));
        assert_eq!(h.as_raw() & 1, 1);
        assert_eq!(Hcsbc::from_raw(2).unwrap().parts(), None);
        assert_eq!(Hcsbc::from_raw(0), None);
    }
}

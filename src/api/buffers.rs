//! Buffers handed to the client (`ppwszz*` lists) and freed by `CertSrvBackupFree`.
//!
//! Every buffer is tracked by address, so `CertSrvBackupFree` on NULL, on a pointer
//! the emulator never returned, or on a buffer already freed, is detected and ignored
//! instead of corrupting memory. Buffers do not depend on the session: they stay
//! valid after `CertSrvBackupEnd` (spec §5.11).

use crate::core::WideList;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::LazyLock;

struct Buffer {
    #[allow(dead_code)] // owns the memory the client reads
    data: Box<[u16]>,
    owner: u64,
}

#[derive(Default)]
struct Buffers {
    live: HashMap<usize, Buffer>,
    /// Freed addresses and their owner, to attribute a second free.
    freed: HashMap<usize, u64>,
}

static BUFFERS: LazyLock<Mutex<Buffers>> = LazyLock::new(|| Mutex::new(Buffers::default()));

/// What `CertSrvBackupFree` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FreeOutcome {
    /// NULL: nothing to do.
    Null,
    /// A live buffer, now freed.
    Freed,
    /// Not a live buffer: never returned by the emulator, or freed already.
    Unknown,
}

/// Copies `list` into a tracked buffer owned by host `owner`; returns its address and `*pcbSize`.
pub(crate) fn alloc(list: &WideList, owner: u64) -> (*mut u16, u32) {
    alloc_as(list, owner, None)
}

/// [`alloc`] tracked under `key` instead of its address (the server's opaque tokens:
/// `CertSrvBackupFree` then takes the key). A key is never an even number that could be
/// the address of a buffer, and the caller never reuses one.
pub(crate) fn alloc_as(list: &WideList, owner: u64, key: Option<usize>) -> (*mut u16, u32) {
    let mut data = list.to_units().into_boxed_slice();
    let ptr = data.as_mut_ptr();
    let size = list.byte_len();
    let key = key.unwrap_or(ptr as usize);
    let mut b = BUFFERS.lock();
    b.freed.remove(&key);
    b.live.insert(key, Buffer { data, owner });
    (ptr, size)
}

/// Frees a buffer returned by [`alloc`]; also says which host owned it, if known
/// (for a second free too).
pub(crate) fn free(p: *mut core::ffi::c_void) -> (FreeOutcome, Option<u64>) {
    if p.is_null() {
        return (FreeOutcome::Null, None);
    }
    let mut b = BUFFERS.lock();
    match b.live.remove(&(p as usize)) {
        Some(buf) => {
            b.freed.insert(p as usize, buf.owner);
            (FreeOutcome::Freed, Some(buf.owner))
        }
        None => (FreeOutcome::Unknown, b.freed.get(&(p as usize)).copied()),
    }
}

/// Buffers of host `owner` not yet freed.
pub(crate) fn outstanding(owner: u64) -> usize {
    BUFFERS
        .lock()
        .live
        .values()
        .filter(|b| b.owner == owner)
        .count()
}

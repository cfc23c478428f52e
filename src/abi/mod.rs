//! The `Certadm.dll` exports: `extern "system"` functions with the exact names and
//! signatures windows-sys 0.61 declares. This module holds all of the crate's
//! `unsafe` code. Each export is a boundary: it catches panics (a panic becomes
//! `E_UNEXPECTED`, never an abort), checks every pointer, and converts the
//! [`Error`] of the safe API into its HRESULT exactly once.
//!
//! The detailed message of the last failure on the calling thread is kept for
//! diagnostics: [`last_error`].
//!
//! Where a call goes is chosen once per process, at the first certbcli call
//! (`backend`): the emulator in this process (which then loads `CERTADM_EMU_CONFIG` and
//! writes its report at exit), or, with `CERTADM_EMU_SERVER` set, a `certadm-emu serve`
//! process, after the local argument checks ([`forward`]).
//!
//! Rust code that drives the exports as a C client does (the reference client in module
//! `client`, the benchmarks) goes through the safe layer [`call`]; a caller that repeats
//! another client's calls exactly (`certadm-emu replay`) also uses [`held`].

mod backend;
pub mod call;
#[doc(hidden)]
pub mod entry;
mod exports;
pub mod forward;
pub mod held;
pub mod native;
pub(crate) mod ptr;
mod tsc;

pub use exports::*;

use crate::core::{Error, Result, HRESULT};
use backend::{Certbcli, InProcess};
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::LazyLock;

static BACKEND: LazyLock<&'static dyn Certbcli> = LazyLock::new(|| {
    if forward::server_address().is_some() {
        &forward::Server
    } else {
        if crate::config::ensure_loaded() {
            at_exit::register();
        }
        tsc::install();
        &InProcess
    }
});

/// The backend of this process, chosen at its first certbcli call: a server if
/// `CERTADM_EMU_SERVER` is set, else the emulator in process, which then loads
/// `CERTADM_EMU_CONFIG` (its report is written at exit).
pub fn backend() -> &'static dyn Certbcli {
    *BACKEND
}

/// The report of `CERTADM_EMU_CONFIG`, written when the process exits.
mod at_exit {
    unsafe extern "C" {
        fn atexit(cb: extern "C" fn()) -> i32;
    }

    extern "C" fn write_report() {
        let _ = std::panic::catch_unwind(crate::config::finish);
    }

    /// Registers [`crate::config::finish`] with the C runtime.
    pub(super) fn register() {
        // SAFETY: registering a plain extern "C" function that never unwinds (it catches
        // panics) with the C runtime.
        unsafe { atexit(write_report) };
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<Error>> = const { RefCell::new(None) };
    /// The export running on this thread (for the errors of a server's answers).
    static CURRENT_CALL: Cell<&'static str> = const { Cell::new("certadm-emu") };
}

/// The export (certbcli or `certemu_*`) running on this thread.
pub(crate) fn current_call() -> &'static str {
    CURRENT_CALL.try_with(Cell::get).unwrap_or("certadm-emu")
}

/// The error behind the last failing certbcli call on this thread, with its full message.
pub fn last_error() -> Option<Error> {
    LAST_ERROR.with(|e| e.borrow().clone())
}

/// A failed export: its error is kept for [`last_error`]; returns its HRESULT.
#[cold]
fn failed(e: Error) -> i32 {
    let hr = e.hresult();
    set_last_error(e);
    hr.0
}

fn set_last_error(e: Error) {
    if std::env::var_os("CERTADM_EMU_LOG").is_some() {
        eprintln!("certadm-emu: {} ({e})", e.hresult());
    }
    LAST_ERROR.with(|slot| *slot.borrow_mut() = Some(e));
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// Runs one export body: panics and errors become HRESULTs (the error is kept for
/// [`last_error`] and `CERTADM_EMU_LOG`). Every export of this crate, and of a cdylib built
/// on it ([`entry`]), runs its body through here.
pub fn boundary(call: &'static str, f: impl FnOnce() -> Result<()>) -> i32 {
    let outer = CURRENT_CALL.try_with(|c| c.replace(call)).ok();
    // The error becomes its HRESULT inside, so that only an i32 crosses the unwind guard.
    let r = catch_unwind(AssertUnwindSafe(|| match f() {
        Ok(()) => HRESULT::S_OK.0,
        Err(e) => failed(e),
    }));
    if let Some(outer) = outer {
        let _ = CURRENT_CALL.try_with(|c| c.set(outer));
    }
    match r {
        Ok(hr) => hr,
        Err(p) => {
            let message = panic_message(&*p);
            crate::api::route::record_panic(call, &message);
            let e = Error::Panic { call, message };
            let hr = e.hresult();
            set_last_error(e);
            hr.0
        }
    }
}

//! The call context of the routing: which certbcli call is running on this thread and
//! which host it reached ([`instrument`], [`routed_to`]), so that the call lands in that
//! host's trace, also when it panics ([`record_panic`]); and the hint an unknown server
//! name gets ([`set_unknown_server_hint`]).

use super::registry::Host;
use crate::core::{Call, HRESULT};
use crate::event::{RawEvent, RawFields, RawMessage};
use parking_lot::RwLock;
use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// The call being made on this thread: the API records the host it routes to here, and
/// when that host traces its calls, the time the call reached it.
struct CallCtx {
    call: Call,
    host: Option<Arc<Host>>,
    start: Option<Instant>,
}

thread_local! {
    static CURRENT: RefCell<Option<CallCtx>> = const { RefCell::new(None) };
}

/// Records the host the current call was routed to (and starts its clock if the host
/// traces: a host with tracing off costs no clock read).
pub(crate) fn routed_to(host: &Arc<Host>) {
    CURRENT.with(|c| {
        if let Some(ctx) = c.borrow_mut().as_mut() {
            if ctx.start.is_none() && host.tracing.load(Ordering::Relaxed) {
                ctx.start = Some(Instant::now());
            }
            ctx.host = Some(host.clone());
        }
    });
}

/// Runs one API call: routes, records the event in the host's trace. `args` and `out`
/// record the arguments and out-values raw (they run only when the host traces).
pub(crate) fn instrument<R>(
    call: Call,
    args: impl FnOnce(&Host) -> RawFields,
    f: impl FnOnce() -> crate::Result<R>,
    out: impl FnOnce(&R) -> RawFields,
) -> crate::Result<R> {
    let outer = CURRENT.with(|c| {
        c.borrow_mut().replace(CallCtx {
            call,
            host: None,
            start: None,
        })
    });
    let r = f();
    let ctx = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    if let Some(CallCtx {
        host: Some(host),
        start: Some(start),
        ..
    }) = ctx
    {
        let elapsed = start.elapsed().as_nanos() as u64;
        let (hr, outs, message) = match &r {
            Ok(v) => (HRESULT::S_OK, out(v), None),
            Err(e) => (
                e.hresult(),
                RawFields::EMPTY,
                Some(RawMessage::Error(e.clone())),
            ),
        };
        let args = args(&host);
        let mut e = RawEvent::new(call, super::current_client(), args, hr, outs, message);
        e.elapsed_ns = elapsed;
        host.state.lock().trace.push(e);
    }
    r
}

/// Records a panic caught at the ABI boundary (or by the server): the call running on
/// this thread becomes an `E_UNEXPECTED` event in the trace of the host it was routed to
/// (if it got that far). `name` is the function the boundary ran, for the message.
pub(crate) fn record_panic(name: &str, message: &str) {
    let ctx = CURRENT.with(|c| c.borrow_mut().take());
    let Some(CallCtx {
        call,
        host: Some(host),
        ..
    }) = ctx
    else {
        return;
    };
    let e = RawEvent::new(
        call,
        super::current_client(),
        RawFields::EMPTY,
        HRESULT::E_UNEXPECTED,
        RawFields::EMPTY,
        Some(RawMessage::Text(format!(
            "{name}: internal emulator panic: {message}"
        ))),
    );
    // The lock may be poisoned-free (parking_lot) but held by this thread if the panic
    // happened inside it; try_lock avoids a deadlock in that case.
    if let Some(mut st) = host.state.try_lock() {
        st.trace.push(e);
    };
}

/// What the error for an unknown server name says when no hint is set.
const DEFAULT_UNKNOWN_SERVER_HINT: &str = "no emulated machine has this name (create one with EmulatedCa::builder(), or define it in the CERTADM_EMU_CONFIG file)";

static UNKNOWN_SERVER_HINT: RwLock<Option<String>> = RwLock::new(None);

/// Sets what the error for a server name no machine has explains (`None`: the default,
/// which points at `EmulatedCa::builder()` and `CERTADM_EMU_CONFIG`). The configuration
/// loader sets it when `CERTADM_EMU_CONFIG` did not load.
pub(crate) fn set_unknown_server_hint(hint: Option<String>) {
    *UNKNOWN_SERVER_HINT.write() = hint;
}

/// The explanation for a server name no machine has.
pub(crate) fn unknown_server_hint() -> String {
    UNKNOWN_SERVER_HINT
        .read()
        .clone()
        .unwrap_or_else(|| DEFAULT_UNKNOWN_SERVER_HINT.into())
}

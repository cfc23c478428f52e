//! One API call in progress ([`instrument`], [`Frame`]): it routes once, holds its host
//! for the call (on loan from the route of this thread that found it, given back when the
//! call ends), locks it once, and, when the host traces, records the call's event under
//! that lock; the call running on this thread, so that a panic lands in the trace of the
//! host it reached ([`record_panic`]); and the hint an unknown server name gets
//! ([`set_unknown_server_hint`]).

use super::registry::{self, Host, HostState, Loan};
use crate::core::{Call, HRESULT};
use crate::event::{Extras, Form, RawEvent, RawMessage, Slot};
use parking_lot::{MutexGuard, RwLock};
use std::cell::{Cell, OnceCell};
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Instant;

/// The clock a traced call's `elapsed_ns` is measured with: a counter (`read`) and the
/// nanoseconds of one of its ticks, in 32.32 fixed point. The monotonic clock of `Instant`
/// (ticks of a nanosecond) unless the ABI layer installed a cheaper counter that keeps
/// the same time ([`install_clock`]: the time-stamp counter, where the kernel keeps time
/// with it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    read: fn() -> u64,
    ns_per_tick: u64,
}

/// Nanoseconds of the monotonic clock since the first reading.
fn instant_ns() -> u64 {
    static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);
    BASE.elapsed().as_nanos() as u64
}

/// The clock until one is installed.
const MONOTONIC: Clock = Clock {
    read: instant_ns,
    ns_per_tick: 1 << 32,
};

static CLOCK: OnceLock<Clock> = OnceLock::new();

/// Measures traced calls with `read`, a counter whose ticks last `ns_per_tick` nanoseconds
/// (32.32 fixed point); false if a clock is installed already. A call started on one clock
/// ends on it.
pub(crate) fn install_clock(read: fn() -> u64, ns_per_tick: u64) -> bool {
    CLOCK.set(Clock { read, ns_per_tick }).is_ok()
}

impl Clock {
    /// The clock now in use, and its reading.
    #[inline]
    pub(crate) fn now() -> (u64, Clock) {
        let c = CLOCK.get().copied().unwrap_or(MONOTONIC);
        ((c.read)(), c)
    }

    /// Nanoseconds since `start`, a reading of this clock.
    #[inline]
    pub(crate) fn since(self, start: u64) -> u64 {
        let ticks = (self.read)().saturating_sub(start);
        ((u128::from(ticks) * u128::from(self.ns_per_tick)) >> 32) as u64
    }
}

/// The call running on this thread and the host it reached (slot and generation), for
/// [`record_panic`]: plain data, set and restored around each call without a borrow.
#[derive(Debug, Clone, Copy)]
struct Running {
    call: Call,
    host: Option<(u16, u16)>,
}

thread_local! {
    static CURRENT: Cell<Option<Running>> = const { Cell::new(None) };
}

/// One API call in progress. The call's implementation holds the host it routed to
/// through it ([`Frame::hold`], once), marks it reached once its checks pass
/// ([`Frame::reach`]) and locks it through it ([`Frame::lock`]): the host and the lock are
/// held until the call's event is recorded, so that recording costs neither a second
/// lookup nor a second lock.
pub(crate) struct Frame<'h> {
    call: Call,
    host: &'h OnceCell<Arc<Host>>,
    /// The route of this thread that lent the host, which it goes back to.
    loan: Option<Loan>,
    guard: Option<MutexGuard<'h, HostState>>,
    /// When the call reached a host that traces, on which clock.
    start: Option<(u64, Clock)>,
}

impl<'h> Frame<'h> {
    /// The function being called.
    pub(crate) fn call(&self) -> Call {
        self.call
    }

    /// The call holds `host` until it ends (lent by a route of this thread if `loan` says
    /// so, to which it goes back then). A call holds one host; holding another keeps the
    /// first.
    #[inline]
    pub(crate) fn hold(&mut self, host: Arc<Host>, loan: Option<Loan>) -> &'h Arc<Host> {
        match self.host.set(host) {
            Ok(()) => self.loan = loan,
            Err(other) => {
                if let Some(loan) = loan {
                    registry::give_back(loan, other);
                }
            }
        }
        let held: &'h OnceCell<Arc<Host>> = self.host;
        held.get().expect("set above")
    }

    /// The call reached `host`, the one it holds: its event goes to that host's trace
    /// (and a panic from now on), and its clock starts if the host traces (a host with
    /// tracing off costs no clock read).
    #[inline]
    pub(crate) fn reach(&mut self, host: &Host) {
        if self.start.is_none() && host.tracing.load(Ordering::Relaxed) {
            self.start = Some(Clock::now());
        }
        let at = (host.slot, host.generation);
        let _ = CURRENT.try_with(|c| {
            if let Some(mut r) = c.get() {
                r.host = Some(at);
                c.set(Some(r));
            }
        });
    }

    /// The host reached, if any.
    pub(crate) fn host(&self) -> Option<&'h Arc<Host>> {
        self.host.get()
    }

    /// Locks the host held (once: locking again returns the same state). The lock is
    /// held until the call is recorded.
    ///
    /// # Panics
    /// If the call holds no host yet.
    pub(crate) fn lock(&mut self) -> &mut HostState {
        let host: &'h Arc<Host> = self.host.get().expect("a call locks the host it holds");
        self.guard.get_or_insert_with(|| host.state.lock())
    }
}

/// Runs one API call: `f` routes and does the work through its [`Frame`]; if the host it
/// reached traces, the call's event is recorded in its trace. `args` and `out` give the
/// arguments and out-values under the names of `form` (they run only when the host
/// traces).
pub(crate) fn instrument<R, const A: usize, const O: usize>(
    call: Call,
    form: &'static Form,
    args: impl FnOnce(&Host, &mut Extras) -> [Slot; A],
    f: impl FnOnce(&mut Frame<'_>) -> crate::Result<R>,
    out: impl FnOnce(&R, &mut Extras) -> [Slot; O],
) -> crate::Result<R> {
    // Declared before the frame, so that the lock it holds is released first.
    let host = OnceCell::new();
    let mut frame = Frame {
        call,
        host: &host,
        loan: None,
        guard: None,
        start: None,
    };
    let outer = CURRENT
        .try_with(|c| c.replace(Some(Running { call, host: None })))
        .ok()
        .flatten();
    let r = f(&mut frame);
    let _ = CURRENT.try_with(|c| c.set(outer));
    if let (Some((start, clock)), Some(host)) = (frame.start, host.get()) {
        let elapsed = clock.since(start);
        let mut kept = Extras::default();
        let args = args(host, &mut kept);
        let (hr, outs, message) = match &r {
            Ok(v) => (HRESULT::S_OK, Some(out(v, &mut kept)), None),
            Err(e) => (e.hresult(), None, Some(RawMessage::Error(e.clone()))),
        };
        let (mut e, extra) = RawEvent::new(
            call,
            super::current_client(),
            form,
            args,
            hr,
            outs,
            kept,
            message,
        );
        e.elapsed_ns = elapsed;
        frame.lock().trace.push(e, extra);
    }
    // The lock first, then the host back to its route.
    let loan = frame.loan;
    drop(frame);
    if let (Some(loan), Some(host)) = (loan, host.into_inner()) {
        registry::give_back(loan, host);
    }
    r
}

/// Records a panic caught at the ABI boundary (or by the server): the call running on
/// this thread becomes an `E_UNEXPECTED` event in the trace of the host it was routed to
/// (if it got that far). `name` is the function the boundary ran, for the message.
pub(crate) fn record_panic(name: &str, message: &str) {
    let running = CURRENT.try_with(|c| c.take()).ok().flatten();
    let Some(Running {
        call,
        host: Some((slot, generation)),
    }) = running
    else {
        return;
    };
    let Some(host) = registry::by_slot(slot, generation) else {
        return;
    };
    let (e, extra) = RawEvent::new(
        call,
        super::current_client(),
        &Form::NONE,
        [],
        HRESULT::E_UNEXPECTED,
        None::<[Slot; 0]>,
        Extras::default(),
        Some(RawMessage::Text(format!(
            "{name}: internal emulator panic: {message}"
        ))),
    );
    // The panic released the frame's lock as it unwound; try_lock still never waits (the
    // lock may be held elsewhere, and recording a panic is not worth a deadlock).
    if let Some(mut st) = host.state.try_lock() {
        st.trace.push(e, extra);
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

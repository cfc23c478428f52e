//! The process-wide routing table: server names and handles to emulated hosts.
//!
//! The ABI symbols are process-global, but every call reaches exactly one host:
//! by server name (Prepare, IsServerOnline, ServerControl) or by the host slot
//! and generation packed into its handle. Tests on parallel threads each own
//! their host and never share state.
//!
//! The tables change only when a machine is registered or removed; calls only read them.
//! So a call routes without taking a lock: each thread keeps the routes it used last
//! (handle host slot and generation → host, server name as passed → host), valid while
//! the process-wide epoch, bumped after every change of the tables, is the one the routes
//! were read at. Only a route the thread has not used since the last change reads the
//! tables under their lock. A route holds its host and lends it to the call that finds it
//! ([`lend_by_name`], [`lend_by_handle`]): the call moves the host out of the route and
//! back when it ends ([`give_back`]), so that routing touches no reference count (each is
//! an atomic read-modify-write, as costly as the host's lock). The handles and names of a
//! removed machine stop routing at the change. The thread that removes a machine forgets
//! its routes at once; another thread forgets them at its next call (or when it exits), so
//! a machine removed while other threads that called it are idle is freed when the last of
//! them calls again or exits.

use crate::ca::Ca;
use crate::core::{Error, Result};
use crate::event::{Extras, Slot};
use crate::machine::{Identity, Machine};
use crate::session::handle::{Hcsbc, HOST_SLOTS};
use crate::session::{Session, SessionTable};
use parking_lot::{Mutex, RwLock};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

/// Mutable state of one host, behind its lock.
pub(crate) struct HostState {
    /// The CA, if one is installed on this machine.
    pub(crate) ca: Option<Ca>,
    /// Open backup and restore contexts.
    pub(crate) sessions: SessionTable<Session>,
    /// The identity of callers on this host.
    pub(crate) identity: Identity,
    /// The one backup session running on the CA (slot, generation).
    pub(crate) active_backup: Option<(u8, u32)>,
    /// Every call routed here.
    pub(crate) trace: super::trace::Trace,
    /// The fault schedule and its accounting.
    pub(crate) faults: super::faults::FaultState,
    /// Strict conformance: the guard panics on drop if the client broke a rule.
    pub(crate) strict: bool,
}

/// One emulated machine with its CA and sessions.
pub(crate) struct Host {
    /// The machine.
    pub(crate) machine: Machine,
    /// Its mutable state.
    pub(crate) state: Mutex<HostState>,
    pub(crate) slot: u16,
    pub(crate) generation: u16,
    id: u64,
    /// Calls are traced and checked for conformance (on by default).
    pub(crate) tracing: std::sync::atomic::AtomicBool,
    /// A fault schedule is installed (checked before taking the lock on every call).
    pub(crate) faults_on: std::sync::atomic::AtomicBool,
}

impl Host {
    /// A key that identifies this host for the life of the process (never reused).
    pub(crate) fn key(&self) -> u64 {
        self.id
    }

    /// A server name a call passed, for its trace event: the host's own name when it is
    /// spelled exactly so (stored in place, no allocation), else a copy.
    pub(crate) fn name_value(&self, server: &str, x: &mut Extras) -> Slot {
        if server == self.machine.netbios() {
            Slot::host_name(0)
        } else if server == self.machine.dns() {
            Slot::host_name(1)
        } else {
            x.str(server)
        }
    }
}

static NEXT_HOST_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Slots are reused oldest-freed first, and only once all of them exist, so a slot's
/// 11-bit generation wraps only after `HOST_SLOTS × 2048` registrations: a stale handle
/// cannot reach a new machine before that.
struct Slots {
    entries: Vec<(u16, Option<Arc<Host>>)>,
    free: std::collections::VecDeque<u16>,
}

struct Registry {
    names: RwLock<HashMap<String, Arc<Host>>>,
    slots: RwLock<Slots>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    names: RwLock::new(HashMap::new()),
    slots: RwLock::new(Slots {
        entries: Vec::new(),
        free: std::collections::VecDeque::new(),
    }),
});

/// Registers a host under its NetBIOS and DNS names.
pub(crate) fn register(machine: Machine, ca: Option<Ca>, identity: Identity) -> Result<Arc<Host>> {
    let keys: Vec<String> = {
        let mut k = vec![machine.netbios().to_lowercase()];
        let d = machine.dns().to_lowercase();
        if d != k[0] {
            k.push(d);
        }
        k
    };
    for k in &keys {
        if k.is_empty() || k.contains('\\') || k.contains('/') {
            return Err(Error::invalid_arg(
                "register",
                format!("{k:?} is not a valid host name"),
            ));
        }
    }
    let r = &*REGISTRY;
    let mut names = r.names.write();
    if let Some(k) = keys
        .iter()
        .find(|k| names.contains_key(*k) || *k == "localhost")
    {
        return Err(Error::DuplicateServerName { name: k.clone() });
    }
    let mut slots = r.slots.write();
    let slot = if slots.entries.len() < HOST_SLOTS {
        slots.entries.push((0, None));
        Some((slots.entries.len() - 1) as u16)
    } else {
        slots.free.pop_front()
    };
    let slot = match slot {
        Some(s) => s,
        None => {
            return Err(Error::invalid_arg(
                "register",
                format!("more than {HOST_SLOTS} emulated machines at once"),
            ))
        }
    };
    let entry = &mut slots.entries[slot as usize];
    entry.0 = Hcsbc::host_gen_bits(entry.0.wrapping_add(1));
    let own_names = [machine.netbios().into(), machine.dns().into()];
    let host = Arc::new(Host {
        machine,
        state: Mutex::new(HostState {
            ca,
            sessions: SessionTable::default(),
            identity,
            active_backup: None,
            trace: super::trace::Trace::new(own_names),
            faults: Default::default(),
            strict: false,
        }),
        slot,
        generation: entry.0,
        id: NEXT_HOST_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        tracing: std::sync::atomic::AtomicBool::new(true),
        faults_on: std::sync::atomic::AtomicBool::new(false),
    });
    entry.1 = Some(host.clone());
    for k in keys {
        names.insert(k, host.clone());
    }
    EPOCH.fetch_add(1, Ordering::Release);
    Ok(host)
}

/// Removes a host: its names are free again and its handles turn stale.
pub(crate) fn unregister(host: &Host) {
    let r = &*REGISTRY;
    let mut names = r.names.write();
    names.retain(|_, h| !std::ptr::eq(&**h, host));
    let mut slots = r.slots.write();
    if let Some(e) = slots.entries.get_mut(host.slot as usize) {
        if e.0 == host.generation && e.1.is_some() {
            e.1 = None;
            slots.free.push_back(host.slot);
        }
    }
    EPOCH.fetch_add(1, Ordering::Release);
    drop((names, slots));
    // This thread lets go of the machine now (the others at their next call).
    let _ = ROUTES_OF_THREAD.try_with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            let epoch = r.epoch;
            r.reset(epoch);
        }
    });
}

// ----- the routes of this thread ----------------------------------------------------

/// Bumped after every change of the tables (a machine registered or removed).
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Routes a thread keeps of each kind (most recently used first).
const ROUTES: usize = 8;

/// Where the CA part of a server name is (`HOST\CA name`): start and length.
type CaPart = Option<(usize, usize)>;

/// One route: what it was found by, what else was worked out then, and the host.
struct Route<K, T> {
    key: K,
    extra: T,
    /// The host; `None` while a call of this thread has it on loan.
    host: Option<Arc<Host>>,
}

/// Where a host lent to a call goes back when the call ends ([`give_back`]): its route
/// (by name or by handle, and its position) in the routes of `epoch`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loan {
    names: bool,
    at: u8,
    epoch: u64,
}

/// The routes this thread used, read at `epoch`.
struct Routes {
    epoch: u64,
    /// Host slot and generation of a handle → its host.
    handles: Vec<Route<(u16, u16), ()>>,
    /// A server name exactly as passed → its host, and where its CA part starts.
    names: Vec<Route<Box<str>, CaPart>>,
}

impl Routes {
    /// Forgets every route if the tables changed since they were read.
    #[inline]
    fn validate(&mut self) {
        let now = EPOCH.load(Ordering::Acquire);
        if now != self.epoch {
            self.reset(now);
        }
    }

    #[cold]
    fn reset(&mut self, epoch: u64) {
        self.handles.clear();
        self.names.clear();
        self.epoch = epoch;
    }
}

/// `a == b`, for the short strings server names are: those of 8 to 16 bytes (most) as
/// two overlapping words, in place rather than through a call to `memcmp`.
#[inline]
fn same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if !(8..=16).contains(&n) {
        return a == b;
    }
    let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8)
}

/// Keeps `route` first in `routes`, at most [`ROUTES`] of them.
fn remember<K, T>(routes: &mut Vec<Route<K, T>>, route: Route<K, T>) {
    if routes.len() == ROUTES {
        routes.pop();
    }
    routes.insert(0, route);
}

thread_local! {
    static ROUTES_OF_THREAD: RefCell<Routes> = const {
        RefCell::new(Routes {
            epoch: 0,
            handles: Vec::new(),
            names: Vec::new(),
        })
    };
}

/// What this thread's routes hold for a key.
enum Cached<T> {
    /// The host (lent, or a new reference).
    Found(Arc<Host>, T, Option<Loan>),
    /// A route whose host is on loan.
    OnLoan(T),
    /// No route; the routes were read at this epoch.
    Missing(u64),
}

/// The host `find` finds among this thread's routes, or else `slow` in the tables (then
/// remembered under `key`). A host found among the routes is lent when `lend` says by
/// which routes (`Some(names)`): moved out of its route, with the [`Loan`] that gives it
/// back. Otherwise it is a new reference.
#[inline]
fn route<K, T: Copy>(
    lend: Option<bool>,
    pick: fn(&mut Routes) -> &mut Vec<Route<K, T>>,
    find: impl Fn(&K) -> bool,
    key: impl FnOnce() -> K,
    slow: impl FnOnce() -> Option<(Arc<Host>, T)>,
) -> Option<(Arc<Host>, T, Option<Loan>)> {
    let cached = ROUTES_OF_THREAD.try_with(|r| {
        let mut r = r.borrow_mut();
        r.validate();
        let epoch = r.epoch;
        let list = pick(&mut r);
        let Some(at) = list.iter().position(|r| find(&r.key)) else {
            return Cached::Missing(epoch);
        };
        let route = &mut list[at];
        let host = match lend {
            Some(_) => route.host.take(),
            None => route.host.clone(),
        };
        match host {
            Some(host) => Cached::Found(
                host,
                route.extra,
                lend.map(|names| Loan {
                    names,
                    at: at as u8,
                    epoch,
                }),
            ),
            None => Cached::OnLoan(route.extra),
        }
    });
    let epoch = match cached {
        Ok(Cached::Found(host, t, loan)) => return Some((host, t, loan)),
        Ok(Cached::OnLoan(t)) => return on_loan(pick, find, slow).map(|h| (h, t, None)),
        Ok(Cached::Missing(epoch)) => Some(epoch),
        // The thread is exiting: no routes to keep.
        Err(_) => None,
    };
    let (host, t) = slow()?;
    if let Some(epoch) = epoch {
        let _ = ROUTES_OF_THREAD.try_with(|r| {
            let mut r = r.borrow_mut();
            // The tables were read after `epoch` was: if they changed meanwhile, the
            // epoch moved on and the next call forgets this route.
            if r.epoch == epoch {
                remember(
                    pick(&mut r),
                    Route {
                        key: key(),
                        extra: t,
                        host: Some(host.clone()),
                    },
                );
            }
        });
    }
    Some((host, t, None))
}

/// A route whose host is on loan (to a call of this thread that routes again, or to one
/// that panicked and never gave it back): the host from the tables, and the route gets
/// it back now (a loan then ends by letting its host go).
#[cold]
fn on_loan<K, T>(
    pick: fn(&mut Routes) -> &mut Vec<Route<K, T>>,
    find: impl Fn(&K) -> bool,
    slow: impl FnOnce() -> Option<(Arc<Host>, T)>,
) -> Option<Arc<Host>> {
    let (host, _) = slow()?;
    let _ = ROUTES_OF_THREAD.try_with(|r| {
        let mut r = r.borrow_mut();
        if let Some(route) = pick(&mut r)
            .iter_mut()
            .find(|r| find(&r.key) && r.host.is_none())
        {
            route.host = Some(host.clone());
        }
    });
    Some(host)
}

/// Gives `host`, lent to a call by this thread's routes, back to its route when the call
/// ends. If the routes changed meanwhile, the host is let go instead.
pub(crate) fn give_back(loan: Loan, host: Arc<Host>) {
    let mut host = Some(host);
    let _ = ROUTES_OF_THREAD.try_with(|r| {
        let Ok(mut r) = r.try_borrow_mut() else {
            return;
        };
        if r.epoch == loan.epoch {
            let at = usize::from(loan.at);
            let slot = if loan.names {
                r.names.get_mut(at).map(|r| &mut r.host)
            } else {
                r.handles.get_mut(at).map(|r| &mut r.host)
            };
            if let Some(slot @ None) = slot {
                *slot = host.take();
            }
        }
    });
}

/// The host a server name or config string (`HOST`, `\\HOST`, `HOST\CA name`) names,
/// with the CA part if one was given.
pub(crate) fn by_name(server: &str) -> Option<(Arc<Host>, Option<&str>)> {
    let (host, ca, _) = name_route(None, server)?;
    Some((host, ca))
}

/// [`by_name`] for a call: a host found among this thread's routes is lent (see
/// [`give_back`]).
#[inline]
pub(crate) fn lend_by_name(server: &str) -> Option<(Arc<Host>, Option<&str>, Option<Loan>)> {
    name_route(Some(true), server)
}

#[inline]
fn name_route(lend: Option<bool>, server: &str) -> Option<(Arc<Host>, Option<&str>, Option<Loan>)> {
    let (host, ca_at, loan) = route(
        lend,
        |r| &mut r.names,
        |k| same_str(k, server),
        || server.into(),
        || {
            let s = server.trim();
            let s = s.strip_prefix("\\\\").unwrap_or(s);
            let (host, ca_at) = match s.split_once('\\') {
                // Where the CA part is in `server` (trimmed at both ends).
                Some((h, c)) => (
                    h,
                    Some((c.as_ptr() as usize - server.as_ptr() as usize, c.len())),
                ),
                None => (s, None),
            };
            Some((by_name_in_table(host)?, ca_at))
        },
    )?;
    Some((host, ca_at.map(|(at, len)| &server[at..at + len]), loan))
}

/// The host named `host` (case-insensitive), from the table.
fn by_name_in_table(host: &str) -> Option<Arc<Host>> {
    // Most names are short ASCII: fold them on the stack instead of allocating.
    let mut buf = [0u8; 64];
    let folded;
    let key: &str = if host.is_ascii() && host.len() <= buf.len() {
        let b = &mut buf[..host.len()];
        b.copy_from_slice(host.as_bytes());
        b.make_ascii_lowercase();
        std::str::from_utf8(b).expect("ASCII")
    } else {
        folded = host.to_lowercase();
        &folded
    };
    REGISTRY.names.read().get(key).cloned()
}

/// The host with this [`Host::key`], if it is still registered.
pub(crate) fn by_key(key: u64) -> Option<Arc<Host>> {
    let slots = REGISTRY.slots.read();
    slots
        .entries
        .iter()
        .filter_map(|(_, h)| h.as_ref())
        .find(|h| h.id == key)
        .cloned()
}

/// The host in this slot, if it has this generation (from the table: for the rare paths).
pub(crate) fn by_slot(slot: u16, generation: u16) -> Option<Arc<Host>> {
    let slots = REGISTRY.slots.read();
    match slots.entries.get(slot as usize)? {
        (g, Some(host)) if *g == generation => Some(host.clone()),
        _ => None,
    }
}

/// The host a handle belongs to, if its host slot and generation are live.
pub(crate) fn by_handle(h: Hcsbc) -> Option<Arc<Host>> {
    handle_route(None, h).map(|(host, _)| host)
}

/// [`by_handle`] for a call: a host found among this thread's routes is lent (see
/// [`give_back`]).
#[inline]
pub(crate) fn lend_by_handle(h: Hcsbc) -> Option<(Arc<Host>, Option<Loan>)> {
    handle_route(Some(false), h)
}

#[inline]
fn handle_route(lend: Option<bool>, h: Hcsbc) -> Option<(Arc<Host>, Option<Loan>)> {
    let p = h.parts()?;
    let key = (p.host_slot, p.host_gen);
    let (host, (), loan) = route(
        lend,
        |r| &mut r.handles,
        |k| *k == key,
        || key,
        || {
            let slots = REGISTRY.slots.read();
            let (generation, host) = slots.entries.get(p.host_slot as usize)?;
            if *generation != p.host_gen {
                return None;
            }
            Some((host.clone()?, ()))
        },
    )?;
    Some((host, loan))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> Arc<Host> {
        let m = Machine::new(name, &format!("{name}.lend.test"), None).unwrap();
        register(m, None, Identity::default()).unwrap()
    }

    /// References to `h`: the registry's three (two names, one slot), the test's, and
    /// those of the routes and loans.
    fn refs(h: &Arc<Host>) -> usize {
        Arc::strong_count(h)
    }

    #[test]
    fn a_route_lends_its_host_and_gets_it_back() {
        let h = host("LENDA");
        let base = refs(&h);
        // The first call reads the tables and keeps a route.
        let (a, _, loan) = lend_by_name("LENDA").unwrap();
        assert!(loan.is_none());
        drop(a);
        assert_eq!(refs(&h), base + 1);
        // The next one borrows the route's reference: no new one.
        let (a, ca, loan) = lend_by_name("LENDA").unwrap();
        assert!(ca.is_none());
        let loan = loan.expect("lent by the route");
        assert!(Arc::ptr_eq(&a, &h));
        assert_eq!(refs(&h), base + 1);
        // A call routing again while the first has the host finds the route empty: the
        // tables give it one, and the route is filled again.
        let (b, _, inner) = lend_by_name("LENDA").unwrap();
        assert!(inner.is_none());
        assert_eq!(refs(&h), base + 3);
        drop(b);
        // The first call's host goes back to a full route: it is let go.
        give_back(loan, a);
        assert_eq!(refs(&h), base + 1);
        let (a, _, loan) = lend_by_name("LENDA").unwrap();
        give_back(loan.unwrap(), a);
        assert_eq!(refs(&h), base + 1);
        unregister(&h);
        assert_eq!(refs(&h), 1, "the registry and this thread let go");
    }

    #[test]
    fn a_loan_never_given_back_is_repaired() {
        let h = host("LENDB");
        let base = refs(&h);
        drop(lend_by_name("LENDB"));
        // A call that panicked: its host is dropped, its route stays empty...
        let (a, _, loan) = lend_by_name("LENDB").unwrap();
        assert!(loan.is_some());
        drop(a);
        assert_eq!(refs(&h), base);
        // ...until the next call, which routes from the tables and refills it.
        let (a, _, loan) = lend_by_name("LENDB").unwrap();
        assert!(loan.is_none());
        drop(a);
        assert_eq!(refs(&h), base + 1);
        let (a, _, loan) = lend_by_name("LENDB").unwrap();
        assert!(loan.is_some());
        give_back(loan.unwrap(), a);
        assert_eq!(refs(&h), base + 1);
        unregister(&h);
    }

    #[test]
    fn removing_a_machine_lets_go_of_it_on_this_thread_and_ends_its_loans() {
        let h = host("LENDC");
        let base = refs(&h);
        drop(lend_by_name("LENDC"));
        let hb = Hcsbc::encode(crate::session::handle::HandleParts {
            host_slot: h.slot,
            host_gen: h.generation,
            session_slot: 0,
            session_gen: 1,
        });
        drop(lend_by_handle(hb));
        let (a, _, loan) = lend_by_name("LENDC").unwrap();
        assert_eq!(refs(&h), base + 2, "a, and the route by handle");
        unregister(&h);
        // The tables and this thread's routes let go; a loan of before the change is let
        // go when its call ends.
        assert_eq!(refs(&h), 2);
        give_back(loan.unwrap(), a);
        assert_eq!(refs(&h), 1);
        assert!(lend_by_name("LENDC").is_none());
        assert!(lend_by_handle(hb).is_none());
    }

    #[test]
    fn server_names_compare_exactly() {
        for (a, b, same) in [
            ("", "", true),
            ("CA1", "CA1", true),
            ("CA1", "ca1", false),
            ("CERTEMU-0001", "CERTEMU-0001", true),
            ("CERTEMU-0001", "CERTEMU-0002", false),
            ("CERTEMU-00012345", "CERTEMU-00012345", true),
            ("CERTEMU-00012345", "CERTEMU-00012346", false),
            ("CERTEMU-0001234", "CERTEMU-00012345", false),
            ("XERTEMU-0001", "CERTEMU-0001", false),
        ] {
            assert_eq!(same_str(a, b), same, "{a:?} {b:?}");
        }
    }
}

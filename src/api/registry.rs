//! The process-wide routing table: server names and handles to emulated hosts.
//!
//! The ABI symbols are process-global, but every call reaches exactly one host:
//! by server name (Prepare, IsServerOnline, ServerControl) or by the host slot
//! and generation packed into its handle. Tests on parallel threads each own
//! their host and never share state.

use crate::ca::Ca;
use crate::core::{Error, Result};
use crate::machine::{Identity, Machine};
use crate::session::handle::{Hcsbc, HOST_SLOTS};
use crate::session::{Session, SessionTable};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
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
    let host = Arc::new(Host {
        machine,
        state: Mutex::new(HostState {
            ca,
            sessions: SessionTable::default(),
            identity,
            active_backup: None,
            trace: Default::default(),
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
}

/// The host a server name or config string (`HOST`, `\\HOST`, `HOST\CA name`) names,
/// with the CA part if one was given.
pub(crate) fn by_name(server: &str) -> Option<(Arc<Host>, Option<String>)> {
    let s = server.trim();
    let s = s.strip_prefix("\\\\").unwrap_or(s);
    let (host, ca) = match s.split_once('\\') {
        Some((h, c)) => (h, Some(c.to_string())),
        None => (s, None),
    };
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
    REGISTRY.names.read().get(key).map(|h| (h.clone(), ca))
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

/// The host a handle belongs to, if its host slot and generation are live.
pub(crate) fn by_handle(h: Hcsbc) -> Option<Arc<Host>> {
    let p = h.parts()?;
    let slots = REGISTRY.slots.read();
    let (generation, host) = slots.entries.get(p.host_slot as usize)?;
    if *generation != p.host_gen {
        return None;
    }
    host.clone()
}

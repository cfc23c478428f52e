//! Server mode for the exports: when `CERTADM_EMU_SERVER` is set (an address as
//! `certadm-emu serve` prints it: `127.0.0.1:PORT`, `unix:/path`; the secret, if the
//! server wants one, in `CERTADM_EMU_SECRET`), every certbcli call of this library is
//! forwarded to that server instead of running in process, and the `certemu_*` control
//! API acts on machines of the server.
//!
//! * The variable is read once, at the first call of the process.
//! * **A thread is a client**, as in process: each thread that calls gets its own
//!   connection ([`RemoteClient`]), opened at its first call and closed when the thread
//!   ends (the server then runs down the contexts the thread left open). If the server
//!   cannot be reached the call fails with `RPC_S_SERVER_UNAVAILABLE` (0x800706BA) and the
//!   next call tries again; a connection that breaks during a call gives
//!   `RPC_S_CALL_FAILED` (0x800706BE) on this and every later call of the thread.
//! * Pointer arguments are checked here, before anything is sent (NULL is `E_POINTER`,
//!   bad UTF-16 `E_INVALIDARG`), exactly as in process. Errors of the server keep its
//!   HRESULT and message ([`Error::Remote`]).
//! * Lists are asked for with accounting (`track`): the server counts them as outstanding
//!   until `CertSrvBackupFree`, so its conformance report sees the free. The list is copied
//!   into a buffer of this process, which stays valid after End; `CertSrvBackupFree` frees
//!   it here and forwards the free on the connection that received the list (on the
//!   calling thread's if that one is closed: the server then accepts it from any).
//! * Handles are the server's, bound to the connection (thread) that prepared them: a
//!   handle used from another thread gets `E_HANDLE`, where in process it would work.
//!
//! `Server` is the `Certbcli` backend of server mode, `RemoteMachine` the `Control` of a
//! `certemu_ca` that lives on the server; both go through `rpc`, the one place where an
//! answer of the server becomes an [`Error`].

use super::backend::Certbcli;
use crate::api::buffers;
use crate::api::faults::FaultSchedule;
use crate::ca::recovery::RecoveryReport;
use crate::config::MachineConfig;
use crate::control::{CaState, Control, MachineReport};
use crate::core::{Call, Error, ListKind, Result, WideList, HRESULT};
use crate::event::Event;
use crate::machine::Identity;
use crate::remote::client::{RemoteClient, RemoteError};
use crate::session::{Hcsbc, Registration};
use core::ffi::c_void;
use parking_lot::Mutex;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Weak};

/// Where the calls go: the server address and its secret.
#[derive(Debug)]
struct Target {
    addr: String,
    secret: Option<String>,
}

static TARGET: LazyLock<Option<Target>> = LazyLock::new(|| {
    let addr = std::env::var("CERTADM_EMU_SERVER").ok()?;
    let addr = addr.trim().to_string();
    if addr.is_empty() {
        return None;
    }
    let secret = std::env::var("CERTADM_EMU_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    Some(Target { addr, secret })
});

thread_local! {
    static CLIENT: RefCell<Option<Arc<RemoteClient>>> = const { RefCell::new(None) };
}

/// The server this process forwards to (`CERTADM_EMU_SERVER`), or `None` in process.
pub fn server_address() -> Option<&'static str> {
    if IN_PROCESS.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    TARGET.as_ref().map(|t| t.addr.as_str())
}

/// Set by [`run_in_process`].
static IN_PROCESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes this process run every certbcli call and `certemu_*` function in process,
/// whatever `CERTADM_EMU_SERVER` says: for programs that build their own CA (the
/// `certadm-emu` commands `demo`, `restore`, `bench` and `serve`), whose calls must reach
/// that CA and not a server's machine of the same name. Call it before the first
/// certbcli call (the backend is chosen then, once). Returns the address it ignores, if
/// the variable was set.
pub fn run_in_process() -> Option<String> {
    IN_PROCESS.store(true, std::sync::atomic::Ordering::Relaxed);
    std::env::var("CERTADM_EMU_SERVER")
        .ok()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
}

/// Converts an error of the remote client into the emulator's error for `call`.
fn remote_error(call: &'static str, e: RemoteError) -> Error {
    // Messages of the server name the call already; transport failures of the client do not.
    let message = if e.hr == HRESULT::RPC_S_CALL_FAILED && !e.message.starts_with(call) {
        format!("{call}: certadm-emu server: {}", e.message)
    } else {
        e.message
    };
    Error::Remote {
        call,
        hr: e.hr,
        message,
    }
}

/// The calling thread's connection to the server, opened on first use.
fn client(call: &'static str) -> Result<Arc<RemoteClient>> {
    let Some(t) = TARGET.as_ref() else {
        return Err(Error::invalid_arg(
            call,
            "this call goes to a certadm-emu server, but CERTADM_EMU_SERVER is not set",
        ));
    };
    let unavailable = |why: String| Error::Remote {
        call,
        hr: HRESULT::RPC_S_SERVER_UNAVAILABLE,
        message: format!(
            "{call}: certadm-emu server CERTADM_EMU_SERVER={}: {why}",
            t.addr
        ),
    };
    CLIENT
        .try_with(|slot| {
            if let Some(c) = &*slot.borrow() {
                return Ok(c.clone());
            }
            let c = Arc::new(
                RemoteClient::connect(&t.addr, t.secret.as_deref()).map_err(|e| {
                    if e.hr == HRESULT::RPC_S_SERVER_UNAVAILABLE {
                        unavailable(e.message)
                    } else {
                        remote_error(call, e)
                    }
                })?,
            );
            *slot.borrow_mut() = Some(c.clone());
            Ok(c)
        })
        .unwrap_or_else(|_| Err(unavailable("the calling thread is exiting".into())))
}

/// Runs `f` for `call` on the calling thread's connection (connecting on first use): the
/// one place where the server's answer becomes this process's [`Error`].
fn rpc<T>(
    call: &'static str,
    f: impl FnOnce(&Arc<RemoteClient>) -> std::result::Result<T, RemoteError>,
) -> Result<T> {
    let c = client(call)?;
    f(&c).map_err(|e| remote_error(call, e))
}

/// A list buffer of this process that came from the server.
struct RemoteList {
    /// The connection that received it (its token is valid only there).
    client: Weak<RemoteClient>,
    /// The server's accounting token.
    token: u64,
    /// Not yet freed.
    live: bool,
}

static LISTS: LazyLock<Mutex<HashMap<usize, RemoteList>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The certbcli calls of server mode: each on the calling thread's connection.
pub(crate) struct Server;

impl Certbcli for Server {
    fn is_server_online(&self, server: &str) -> Result<bool> {
        rpc(Call::IsServerOnline.name(), |c| c.is_server_online(server))
    }

    fn backup_prepare(&self, server: &str, grbit_jet: u32, backup_flags: u32) -> Result<Hcsbc> {
        rpc(Call::BackupPrepare.name(), |c| {
            c.backup_prepare(server, grbit_jet, backup_flags)
        })
    }

    /// The list is asked for with accounting and copied into a buffer of this process.
    fn list(&self, kind: ListKind, h: Hcsbc) -> Result<(*mut u16, u32)> {
        let (c, token, list): (Weak<RemoteClient>, u64, WideList) = rpc(kind.name(), |c| {
            let (token, list) = c.list(kind, h, true)?;
            Ok((Arc::downgrade(c), token, list))
        })?;
        let (p, size) = buffers::alloc(&list, 0);
        LISTS.lock().insert(
            p as usize,
            RemoteList {
                client: c,
                token,
                live: true,
            },
        );
        Ok((p, size))
    }

    fn backup_open_file(&self, h: Hcsbc, name: &str, read_hint: u32) -> Result<u64> {
        rpc(Call::BackupOpenFile.name(), |c| {
            c.backup_open_file(h, name, read_hint)
        })
    }

    fn backup_read(&self, h: Hcsbc, buf: &mut [std::mem::MaybeUninit<u8>]) -> Result<usize> {
        rpc(Call::BackupRead.name(), |c| c.backup_read(h, buf))
    }

    fn backup_close(&self, h: Hcsbc) -> Result<()> {
        rpc(Call::BackupClose.name(), |c| c.backup_close(h))
    }

    fn backup_truncate_logs(&self, h: Hcsbc) -> Result<Vec<u32>> {
        rpc(Call::BackupTruncateLogs.name(), |c| {
            c.backup_truncate_logs(h)
        })
    }

    fn backup_end(&self, h: Hcsbc) -> Result<()> {
        rpc(Call::BackupEnd.name(), |c| c.backup_end(h))
    }

    /// A list of the server is freed here and the free is forwarded (on the connection
    /// that received the list, while it is open, else on the calling thread's) so the
    /// server's accounting sees it; a second free is forwarded too (the server reports it);
    /// NULL is a no-op; any other pointer is ignored and reported.
    fn backup_free(&self, pv: *mut c_void) -> Result<()> {
        const CALL: &str = Call::BackupFree.name();
        if pv.is_null() {
            return Ok(());
        }
        let found = {
            let mut lists = LISTS.lock();
            lists.get_mut(&(pv as usize)).map(|l| {
                let was_live = std::mem::replace(&mut l.live, false);
                (l.client.clone(), l.token, was_live)
            })
        };
        let Some((owner, token, was_live)) = found else {
            return Err(Error::invalid_arg(
                CALL,
                format!(
                    "{pv:p} is not a live buffer of certadm-emu (it was never returned by a certbcli list function); ignored"
                ),
            ));
        };
        if was_live {
            buffers::free(pv);
        }
        match owner.upgrade() {
            Some(c) => c.backup_free(token).map_err(|e| remote_error(CALL, e)),
            None => rpc(CALL, |c| c.backup_free(token)),
        }
    }

    fn restore_prepare(&self, server: &str, restore_flags: u32) -> Result<Hcsbc> {
        rpc(Call::RestorePrepare.name(), |c| {
            c.restore_prepare(server, restore_flags)
        })
    }

    fn restore_register(
        &self,
        h: Option<Hcsbc>,
        reg: &Registration,
        through_file: bool,
    ) -> Result<()> {
        rpc(Call::restore_register(through_file).name(), |c| {
            c.restore_register(h, reg, through_file)
        })
    }

    fn restore_register_complete(&self, h: Option<Hcsbc>, restore_state: HRESULT) -> Result<()> {
        rpc(Call::RestoreRegisterComplete.name(), |c| {
            c.restore_register_complete(h, restore_state)
        })
    }

    fn restore_end(&self, h: Hcsbc) -> Result<()> {
        rpc(Call::RestoreEnd.name(), |c| c.restore_end(h))
    }

    fn server_control(&self, server: &str, control_flags: u32) -> Result<()> {
        rpc(Call::ServerControl.name(), |c| {
            c.server_control(server, control_flags)
        })
    }
}

/// A machine of the server, driven with control calls on the calling thread's
/// connection (the `certemu_ca` of server mode). Errors name the C API function running
/// on the thread.
pub(crate) struct RemoteMachine {
    machine: String,
}

impl RemoteMachine {
    /// Creates `config` on the server.
    pub(crate) fn create(config: &MachineConfig) -> Result<RemoteMachine> {
        let json = serde_json::to_string(config)
            .map_err(|e| Error::invalid_arg(super::current_call(), e.to_string()))?;
        let mut names = rpc(super::current_call(), |c| c.create_machine_json(&json))?;
        Ok(RemoteMachine {
            machine: names.pop().unwrap_or_else(|| config.name.clone()),
        })
    }

    /// The machine's name on the server.
    pub(crate) fn name(&self) -> &str {
        &self.machine
    }

    fn rpc<T>(
        &self,
        f: impl FnOnce(&RemoteClient, &str) -> std::result::Result<T, RemoteError>,
    ) -> Result<T> {
        rpc(super::current_call(), |c| f(c, &self.machine))
    }
}

impl Control for RemoteMachine {
    fn issue(&self, n: u32) -> Result<Vec<u32>> {
        self.rpc(|c, m| c.issue(m, n))
    }
    fn revoke(&self, request_id: u32) -> Result<()> {
        self.rpc(|c, m| c.revoke(m, request_id))
    }
    fn stop(&self) -> Result<()> {
        self.rpc(|c, m| c.stop(m))
    }
    fn crash(&self) -> Result<()> {
        self.rpc(|c, m| c.crash(m))
    }
    fn start(&self) -> Result<RecoveryReport> {
        self.rpc(|c, m| c.start(m))
    }
    fn wipe_files(&self) -> Result<()> {
        self.rpc(|c, m| c.wipe_files(m))
    }
    fn host_path(&self, windows_path: &str) -> Result<PathBuf> {
        self.rpc(|c, m| c.host_path(m, windows_path))
    }
    fn set_identity(&self, id: Identity) -> Result<()> {
        self.rpc(|c, m| c.set_identity(m, id))
    }
    fn set_interface_flags(&self, flags: u32) -> Result<()> {
        self.rpc(|c, m| c.set_interface_flags(m, flags))
    }
    fn set_faults(&self, schedule: FaultSchedule) -> Result<()> {
        self.rpc(|c, m| c.set_faults(m, &schedule))
    }
    fn trace(&self) -> Result<Vec<Event>> {
        self.rpc(|c, m| c.trace(m))
    }
    fn state(&self) -> Result<CaState> {
        self.rpc(|c, m| c.state(m))
    }
    fn machine_report(&self) -> Result<MachineReport> {
        self.rpc(|c, m| c.report(m))
    }
    fn destroy(&self) -> Result<()> {
        self.rpc(|c, m| c.drop_machine(m))
    }
}

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

use crate::api::{self, buffers, Registration};
use crate::core::{Error, Result, WideList, HRESULT};
use crate::remote::client::{RemoteClient, RemoteError};
use crate::remote::protocol::ListKind;
use crate::session::Hcsbc;
use parking_lot::Mutex;
use std::cell::RefCell;
use std::collections::HashMap;
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
    TARGET.as_ref().map(|t| t.addr.as_str())
}

/// Converts an error of the remote client into the emulator's error for `call`.
pub(crate) fn remote_error(call: &'static str, e: RemoteError) -> Error {
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

/// The calling thread's connection to the server, opened on first use; `None` when the
/// process runs in process (no `CERTADM_EMU_SERVER`).
pub(crate) fn client(call: &'static str) -> Result<Option<Arc<RemoteClient>>> {
    let Some(t) = TARGET.as_ref() else {
        return Ok(None);
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
                return Ok(Some(c.clone()));
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
            Ok(Some(c))
        })
        .unwrap_or_else(|_| Err(unavailable("the calling thread is exiting".into())))
}

/// Where one call goes.
pub(crate) enum Backend {
    /// The emulator in this process ([`crate::api`]).
    Local,
    /// The calling thread's connection to the server.
    Remote(Arc<RemoteClient>),
}

/// The backend for `call` on the calling thread (connects on first use in server mode).
pub(crate) fn backend(call: &'static str) -> Result<Backend> {
    Ok(match client(call)? {
        None => Backend::Local,
        Some(c) => Backend::Remote(c),
    })
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

impl Backend {
    pub(crate) fn is_server_online(&self, server: &str) -> Result<bool> {
        const CALL: &str = "CertSrvIsServerOnlineW";
        match self {
            Backend::Local => api::is_server_online(server),
            Backend::Remote(c) => c
                .is_server_online(server)
                .map_err(|e| remote_error(CALL, e)),
        }
    }

    pub(crate) fn backup_prepare(
        &self,
        server: &str,
        grbit_jet: u32,
        backup_flags: u32,
    ) -> Result<Hcsbc> {
        const CALL: &str = "CertSrvBackupPrepareW";
        match self {
            Backend::Local => api::backup_prepare(server, grbit_jet, backup_flags),
            Backend::Remote(c) => c
                .backup_prepare(server, grbit_jet, backup_flags)
                .map_err(|e| remote_error(CALL, e)),
        }
    }

    /// A list for the ABI: a buffer `CertSrvBackupFree` releases, and `*pcbSize`.
    pub(crate) fn list_for_client(&self, f: ListKind, h: Hcsbc) -> Result<(*mut u16, u32)> {
        match self {
            Backend::Local => api::list_for_client(f, h),
            Backend::Remote(c) => {
                let (token, list): (u64, WideList) =
                    c.list(f, h, true).map_err(|e| remote_error(f.name(), e))?;
                let (p, size) = buffers::alloc(&list, 0);
                LISTS.lock().insert(
                    p as usize,
                    RemoteList {
                        client: Arc::downgrade(c),
                        token,
                        live: true,
                    },
                );
                Ok((p, size))
            }
        }
    }

    pub(crate) fn backup_open_file(&self, h: Hcsbc, name: &str, read_hint: u32) -> Result<u64> {
        const CALL: &str = "CertSrvBackupOpenFileW";
        match self {
            Backend::Local => api::backup_open_file(h, name, read_hint),
            Backend::Remote(c) => c
                .backup_open_file(h, name, read_hint)
                .map_err(|e| remote_error(CALL, e)),
        }
    }

    pub(crate) fn backup_read(&self, h: Hcsbc, buf: &mut [u8]) -> Result<usize> {
        const CALL: &str = "CertSrvBackupRead";
        match self {
            Backend::Local => api::backup_read(h, buf),
            Backend::Remote(c) => c.backup_read(h, buf).map_err(|e| remote_error(CALL, e)),
        }
    }

    pub(crate) fn backup_close(&self, h: Hcsbc) -> Result<()> {
        const CALL: &str = "CertSrvBackupClose";
        match self {
            Backend::Local => api::backup_close(h),
            Backend::Remote(c) => c.backup_close(h).map_err(|e| remote_error(CALL, e)),
        }
    }

    pub(crate) fn backup_truncate_logs(&self, h: Hcsbc) -> Result<Vec<u32>> {
        const CALL: &str = "CertSrvBackupTruncateLogs";
        match self {
            Backend::Local => api::backup_truncate_logs(h),
            Backend::Remote(c) => c.backup_truncate_logs(h).map_err(|e| remote_error(CALL, e)),
        }
    }

    pub(crate) fn backup_end(&self, h: Hcsbc) -> Result<()> {
        const CALL: &str = "CertSrvBackupEnd";
        match self {
            Backend::Local => api::backup_end(h),
            Backend::Remote(c) => c.backup_end(h).map_err(|e| remote_error(CALL, e)),
        }
    }

    pub(crate) fn restore_prepare(&self, server: &str, restore_flags: u32) -> Result<Hcsbc> {
        const CALL: &str = "CertSrvRestorePrepareW";
        match self {
            Backend::Local => api::restore_prepare(server, restore_flags),
            Backend::Remote(c) => c
                .restore_prepare(server, restore_flags)
                .map_err(|e| remote_error(CALL, e)),
        }
    }

    pub(crate) fn restore_register(
        &self,
        h: Option<Hcsbc>,
        reg: &Registration,
        through_file: bool,
    ) -> Result<()> {
        let call = if through_file {
            "CertSrvRestoreRegisterThroughFile"
        } else {
            "CertSrvRestoreRegisterW"
        };
        match self {
            Backend::Local => api::restore_register(h, reg, through_file),
            Backend::Remote(c) => c
                .restore_register(h, reg, through_file)
                .map_err(|e| remote_error(call, e)),
        }
    }

    pub(crate) fn restore_register_complete(
        &self,
        h: Option<Hcsbc>,
        restore_state: HRESULT,
    ) -> Result<()> {
        const CALL: &str = "CertSrvRestoreRegisterComplete";
        match self {
            Backend::Local => api::restore_register_complete(h, restore_state),
            Backend::Remote(c) => c
                .restore_register_complete(h, restore_state)
                .map_err(|e| remote_error(CALL, e)),
        }
    }

    pub(crate) fn restore_end(&self, h: Hcsbc) -> Result<()> {
        const CALL: &str = "CertSrvRestoreEnd";
        match self {
            Backend::Local => api::restore_end(h),
            Backend::Remote(c) => c.restore_end(h).map_err(|e| remote_error(CALL, e)),
        }
    }

    pub(crate) fn server_control(&self, server: &str, control_flags: u32) -> Result<()> {
        const CALL: &str = "CertSrvServerControlW";
        match self {
            Backend::Local => api::server_control(server, control_flags),
            Backend::Remote(c) => c
                .server_control(server, control_flags)
                .map_err(|e| remote_error(CALL, e)),
        }
    }
}

/// `CertSrvBackupFree`. In process, [`api::backup_free`]. In server mode a list of the
/// server is freed here and the free is forwarded (on the connection that received the
/// list, while it is open) so the server's accounting sees it; a second free is forwarded
/// too (the server reports it); NULL is a no-op; any other pointer is ignored and reported.
pub(crate) fn backup_free(pv: *mut core::ffi::c_void) -> Result<()> {
    const CALL: &str = "CertSrvBackupFree";
    if TARGET.is_none() {
        return api::backup_free(pv);
    }
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
    let c = match owner.upgrade() {
        Some(c) => c,
        None => match client(CALL)? {
            Some(c) => c,
            None => return Ok(()),
        },
    };
    c.backup_free(token).map_err(|e| remote_error(CALL, e))
}

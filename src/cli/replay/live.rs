//! The emulator's side of a replay: each recorded client (thread) is a thread here, so
//! the emulator tells clients apart as Windows does (a second Prepare from the same
//! client, or from another one), and every call goes through the `extern "system"`
//! exports (`certadm_emu::abi::call` and `abi::held`).

use certadm_emu::abi::call::{self, AbiError, WStr};
use certadm_emu::abi::held::{self, HeldList, RawRegistration};
use certadm_emu::core::{ListKind, HRESULT};
use certadm_emu::session::Hcsbc;
use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// One call to make, with live arguments.
#[derive(Debug, Clone)]
pub enum Request {
    /// `CertSrvIsServerOnlineW`.
    IsServerOnline(Option<WStr>),
    /// `CertSrvBackupPrepareW(server, grbitJet, dwBackupFlags)`.
    BackupPrepare(Option<WStr>, u32, u32),
    /// `CertSrvRestorePrepareW(server, dwRestoreFlags)`.
    RestorePrepare(Option<WStr>, u32),
    /// `CertSrvServerControlW(server, dwControlFlags)`.
    ServerControl(Option<WStr>, u32),
    /// One of the four list functions.
    List(ListKind, Hcsbc),
    /// `CertSrvBackupOpenFileW(hbc, name, cbReadHintSize)`.
    OpenFile(Hcsbc, WStr, u32),
    /// `CertSrvBackupRead` into a buffer of this many bytes.
    Read(Hcsbc, usize),
    /// `CertSrvBackupClose`.
    Close(Hcsbc),
    /// `CertSrvBackupTruncateLogs`.
    Truncate(Hcsbc),
    /// `CertSrvBackupEnd`.
    BackupEnd(Hcsbc),
    /// `CertSrvRestoreEnd`.
    RestoreEnd(Hcsbc),
    /// `CertSrvBackupFree` of an address.
    Free(usize),
    /// `CertSrvRestoreRegisterW` or (`true`) `...ThroughFile`.
    Register(Option<Hcsbc>, Box<RawRegistration>, bool),
    /// `CertSrvRestoreRegisterComplete`.
    Complete(Option<Hcsbc>, HRESULT),
}

/// What a live call gave back.
#[derive(Debug, Clone)]
pub enum Out {
    /// Nothing (or a failure).
    Nothing,
    /// `*pfServerOnline`.
    Online(bool),
    /// A new context.
    Handle(Hcsbc),
    /// A list, held until freed.
    List(HeldList),
    /// `*pliFileSize`.
    Size(u64),
    /// `*pcbRead`.
    Read(u64),
}

/// A live call's result.
#[derive(Debug, Clone)]
pub struct Live {
    /// Its HRESULT.
    pub hr: HRESULT,
    /// Its out-value (on success).
    pub out: Out,
    /// The emulator's message for a failure.
    pub message: Option<String>,
}

fn live<T>(r: Result<T, AbiError>, out: impl FnOnce(T) -> Out) -> Live {
    match r {
        Ok(v) => Live {
            hr: HRESULT::S_OK,
            out: out(v),
            message: None,
        },
        Err(e) => Live {
            hr: e.hr,
            out: Out::Nothing,
            message: e.detail.map(|d| d.to_string()),
        },
    }
}

impl Request {
    /// Makes the call on this thread.
    pub fn run(self) -> Live {
        let nothing = |_| Out::Nothing;
        match self {
            Request::IsServerOnline(Some(s)) => live(call::is_server_online(&s), Out::Online),
            Request::BackupPrepare(Some(s), grbit, flags) => {
                live(call::backup_prepare(&s, grbit, flags), Out::Handle)
            }
            Request::RestorePrepare(Some(s), flags) => {
                live(call::restore_prepare(&s, flags), Out::Handle)
            }
            Request::ServerControl(Some(s), flags) => {
                live(call::server_control(&s, flags), nothing)
            }
            Request::IsServerOnline(None)
            | Request::BackupPrepare(None, ..)
            | Request::RestorePrepare(None, ..)
            | Request::ServerControl(None, ..) => {
                live(held::null_server_name(self.call()), nothing)
            }
            Request::List(kind, h) => live(held::list_held(kind, h), Out::List),
            Request::OpenFile(h, name, hint) => {
                live(call::backup_open_file(h, &name, hint), Out::Size)
            }
            Request::Read(h, len) => {
                let mut buf = vec![0u8; len];
                live(call::backup_read(h, &mut buf), |n| Out::Read(n as u64))
            }
            Request::Close(h) => live(call::backup_close(h), nothing),
            Request::Truncate(h) => live(call::backup_truncate_logs(h), nothing),
            Request::BackupEnd(h) => live(call::backup_end(h), nothing),
            Request::RestoreEnd(h) => live(call::restore_end(h), nothing),
            Request::Free(a) => live(held::backup_free_address(a), nothing),
            Request::Register(h, reg, through_file) => {
                live(held::restore_register_raw(h, &reg, through_file), nothing)
            }
            Request::Complete(h, state) => live(call::restore_register_complete(h, state), nothing),
        }
    }

    fn call(&self) -> certadm_emu::core::Call {
        use certadm_emu::core::Call;
        match self {
            Request::IsServerOnline(_) => Call::IsServerOnline,
            Request::BackupPrepare(..) => Call::BackupPrepare,
            Request::RestorePrepare(..) => Call::RestorePrepare,
            Request::ServerControl(..) => Call::ServerControl,
            Request::List(k, _) => k.call(),
            Request::OpenFile(..) => Call::BackupOpenFile,
            Request::Read(..) => Call::BackupRead,
            Request::Close(_) => Call::BackupClose,
            Request::Truncate(_) => Call::BackupTruncateLogs,
            Request::BackupEnd(_) => Call::BackupEnd,
            Request::RestoreEnd(_) => Call::RestoreEnd,
            Request::Free(_) => Call::BackupFree,
            Request::Register(_, _, f) => Call::restore_register(*f),
            Request::Complete(..) => Call::RestoreRegisterComplete,
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

struct Worker {
    tx: mpsc::Sender<Job>,
    thread: JoinHandle<()>,
}

/// One thread per recorded client, keyed by (recording, client).
#[derive(Default)]
pub struct Clients {
    workers: HashMap<(usize, u64), Worker>,
}

impl Clients {
    /// Runs `req` on the thread of client `key` and waits for it.
    pub fn run(&mut self, key: (usize, u64), req: Request) -> Live {
        let w = self.workers.entry(key).or_insert_with(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let thread = std::thread::Builder::new()
                .name(format!("replay-client-{}-{}", key.0, key.1))
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })
                .expect("a thread for a recorded client");
            Worker { tx, thread }
        });
        let (rtx, rrx) = mpsc::sync_channel(1);
        let fallback = req.call();
        let sent = w.tx.send(Box::new(move || {
            let _ = rtx.send(req.run());
        }));
        match sent.ok().and_then(|()| rrx.recv().ok()) {
            Some(l) => l,
            None => Live {
                hr: HRESULT::E_UNEXPECTED,
                out: Out::Nothing,
                message: Some(format!("the replay's thread for {fallback} ended")),
            },
        }
    }

    /// Ends the threads of recording `r` (its process exited).
    pub fn finish(&mut self, r: usize) {
        let keys: Vec<_> = self.workers.keys().filter(|k| k.0 == r).copied().collect();
        for k in keys {
            if let Some(w) = self.workers.remove(&k) {
                drop(w.tx);
                let _ = w.thread.join();
            }
        }
    }
}

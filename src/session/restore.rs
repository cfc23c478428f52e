//! The restore session (spec §5.13–§5.17): Prepared ─ Registered ─ Completed ─ Ended.
//!
//! Each state is its own type, and a transition consumes the state it leaves; only the
//! states where a call is legal have it:
//!
//! ```text
//! Prepared ──Register──▶ Registered ──RegisterComplete──▶ Completed ──Register──▶ Registered ...
//!                        Registered ──Register──▶ Registered   (after the CA's marker was cleared)
//! any state ──End──▶ (handle dead: the session leaves the table)
//! ```
//!
//! A registration the CA still waits for (its restore marker is pending) refuses a second
//! one (`JET_errRestoreInProgress`); that check is the CA's, not the session's.

use super::transition;
use crate::core::{Error, Result};

/// A full set or an incremental set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestoreKind {
    /// `CSRESTORE_TYPE_FULL`.
    Full,
    /// `dwRestoreFlags` 0: an incremental set.
    Incremental,
}

/// What a restore session keeps in every state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RestoreContext {
    /// Full or incremental set.
    pub kind: RestoreKind,
    /// The client that prepared it.
    pub client: u64,
}

/// `CertSrvRestorePrepareW` succeeded; nothing registered through this handle yet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Prepared(RestoreContext);

/// A registration was made through this handle and not completed yet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Registered(RestoreContext);

/// `CertSrvRestoreRegisterComplete` completed this handle's registration.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Completed(RestoreContext);

impl Prepared {
    /// `CertSrvRestoreRegisterW` / `...ThroughFile` succeeded.
    pub(crate) fn register(self) -> Registered {
        Registered(self.0)
    }
}

impl Registered {
    /// A new registration replaced this one (the CA's marker was cleared meanwhile).
    pub(crate) fn register(self) -> Registered {
        self
    }

    /// `CertSrvRestoreRegisterComplete` succeeded.
    pub(crate) fn complete(self) -> Completed {
        Completed(self.0)
    }
}

impl Completed {
    /// The next set was registered.
    pub(crate) fn register(self) -> Registered {
        Registered(self.0)
    }
}

/// The arguments of `CertSrvRestoreRegisterW` / `...ThroughFile`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// `pwszCheckPointFilePath`.
    pub checkpoint_path: Option<String>,
    /// `pwszLogPath`.
    pub log_path: Option<String>,
    /// `rgrstmap`: (database name as backed up, new database name).
    pub restore_map: Vec<(String, String)>,
    /// `pwszBackupLogPath`.
    pub backup_log_path: Option<String>,
    /// `genLow`.
    pub gen_low: u32,
    /// `genHigh`.
    pub gen_high: u32,
}

/// One restore session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RestoreSession {
    /// Nothing registered yet.
    Prepared(Prepared),
    /// Registered, awaiting `CertSrvRestoreRegisterComplete`.
    Registered(Registered),
    /// The latest registration is complete.
    Completed(Completed),
}

impl RestoreSession {
    /// A new session: `full` for `CSRESTORE_TYPE_FULL`.
    pub(crate) fn new(full: bool, client: u64) -> Self {
        let kind = if full {
            RestoreKind::Full
        } else {
            RestoreKind::Incremental
        };
        RestoreSession::Prepared(Prepared(RestoreContext { kind, client }))
    }

    /// What the session keeps in every state.
    pub(crate) fn context(&self) -> RestoreContext {
        match self {
            RestoreSession::Prepared(Prepared(c))
            | RestoreSession::Registered(Registered(c))
            | RestoreSession::Completed(Completed(c)) => *c,
        }
    }

    /// True for a full set (`CSRESTORE_TYPE_FULL`).
    pub(crate) fn is_full(&self) -> bool {
        self.context().kind == RestoreKind::Full
    }

    /// A registration through this handle succeeded: every state goes to Registered.
    pub(crate) fn register(&mut self) {
        let hole = RestoreSession::Prepared(Prepared(self.context()));
        transition(self, hole, |s| {
            RestoreSession::Registered(match s {
                RestoreSession::Prepared(p) => p.register(),
                RestoreSession::Registered(r) => r.register(),
                RestoreSession::Completed(c) => c.register(),
            })
        });
    }

    /// The state check of `CertSrvRestoreRegisterComplete` (`call`): Ok if a registration
    /// awaits completion.
    pub(crate) fn check_completable(&self, call: &'static str) -> Result<()> {
        match self {
            RestoreSession::Registered(_) => Ok(()),
            RestoreSession::Prepared(_) => Err(Error::sequence(
                call,
                "nothing was registered through this context; call CertSrvRestoreRegisterW first",
            )),
            RestoreSession::Completed(_) => Err(Error::sequence(
                call,
                "this registration is already complete; register the next set first",
            )),
        }
    }

    /// `CertSrvRestoreRegisterComplete` succeeded: Registered → Completed. Other states
    /// stay (the call refuses them: [`check_completable`](Self::check_completable)).
    pub(crate) fn complete(&mut self) {
        let hole = RestoreSession::Prepared(Prepared(self.context()));
        transition(self, hole, |s| match s {
            RestoreSession::Registered(r) => RestoreSession::Completed(r.complete()),
            other => other,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::HRESULT;

    #[test]
    fn transitions_follow_the_documented_order() {
        const CALL: &str = "test";
        let mut s = RestoreSession::new(true, 7);
        assert!(s.is_full());
        assert_eq!(s.context().client, 7);
        let e = s.check_completable(CALL).unwrap_err();
        assert_eq!(e.hresult(), HRESULT::E_UNEXPECTED);
        assert!(e.to_string().contains("nothing was registered"), "{e}");
        s.complete();
        assert!(
            matches!(s, RestoreSession::Prepared(_)),
            "refused: no change"
        );
        s.register();
        assert!(matches!(s, RestoreSession::Registered(_)));
        s.check_completable(CALL).unwrap();
        s.complete();
        assert!(matches!(s, RestoreSession::Completed(_)));
        let e = s.check_completable(CALL).unwrap_err();
        assert!(e.to_string().contains("already complete"), "{e}");
        s.register();
        assert!(matches!(s, RestoreSession::Registered(_)));
        assert_eq!(
            s.context(),
            RestoreContext {
                kind: RestoreKind::Full,
                client: 7
            }
        );
    }
}

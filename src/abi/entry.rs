//! The export machinery of this crate, for another cdylib built on it: the .NET entry set
//! (`dotnet/`, `libcertadm.so`), whose un-suffixed exports take UTF-8 strings.
//!
//! Such a library links this crate, so it re-exports every `#[no_mangle]` function of
//! [`crate::abi`] (the 18 certbcli names and the `certemu_*` API) unchanged; its own exports
//! are thin bodies over the pieces below, which are the ones the exports of this crate use:
//!
//! * [`boundary`]: panics and errors become HRESULTs, the error is kept for
//!   [`super::last_error`];
//! * `abi::ptr`'s checks: [`require`], [`write()`], [`read_str`] (UTF-8) and
//!   [`read_wstr`] (UTF-16);
//! * [`handle`]: the `HCSBC` argument;
//! * [`backend`]: where the process's calls go (in process with `CERTADM_EMU_CONFIG`, or a
//!   server with `CERTADM_EMU_SERVER`), chosen once at the first call of either library's
//!   exports.
//!
//! Not a stable interface: it changes with this crate's ABI code (hidden from the docs).

pub use super::backend;
pub use super::backend::Certbcli;
pub use super::boundary;
pub use super::exports::{restore_register, RestoreMapEntry, MAX_RSTMAP};
pub use super::ptr::{handle, read_opt, read_str, read_wstr, require, write, StrUnit};
pub use crate::api::Registration;
pub use crate::core::{Call, Error, ListKind, Result, HRESULT};
pub use crate::session::Hcsbc;

//! Core types: [`HRESULT`], [`Error`], the header constants and the UTF-16 list format.

#![forbid(unsafe_code)]

mod call;
pub(crate) mod codec;
pub mod consts;
mod error;
mod hresult;
pub mod limits;
pub(crate) mod mix;
pub mod outbuf;
pub mod size;
pub mod wide;

pub use call::{Call, ListKind, Route};
pub use error::{Error, PathRefusal, RecoveryFailure, Result};
pub use hresult::HRESULT;
pub use wide::{ListEntry, WideList};

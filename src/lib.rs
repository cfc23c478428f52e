#![doc = include_str!("../README.md")]
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, unreachable_pub)]

// All unsafe code of the crate, and only there (every other module forbids it).
#[allow(unsafe_code)]
pub mod abi;
pub mod api;
#[cfg(feature = "bench")]
pub mod bench;
pub mod ca;
pub mod client;
pub mod config;
pub mod conformance;
pub mod control;
pub mod core;
pub mod event;
pub mod explore;
#[cfg(test)]
mod layers;
pub mod machine;
pub mod remote;
pub mod session;

pub use crate::core::{Error, Result, WideList, HRESULT};
pub use control::{CaBuilder, EmulatedCa};
pub use session::Hcsbc;

#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod ca;
pub mod core;
pub mod machine;

pub use crate::core::{Error, Result, WideList, HRESULT};

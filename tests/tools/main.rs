//! The integration tests that run other tools: C and C++ compilers, valgrind, Python,
//! nm, MinGW-w64 and Wine. The pure-Rust tests are the crate `tests/it`.

#[path = "../common/mod.rs"]
mod common;

mod c_clients;
mod python_ctypes;
mod server_mode;
mod wine;
mod wine_recorder;

//! The integration tests that run other tools: C and C++ compilers, valgrind, Python,
//! nm, MinGW-w64, Wine, CMake, pkg-config and make (the install consumers), Mono (the
//! C# clients of the .NET entry set). A missing tool fails its test under
//! `CERTADM_EMU_REQUIRE_TOOLS=1` (CI) and is skipped with a note otherwise
//! ([`common::tool`]). The pure-Rust tests are the crate `tests/it`.

#[path = "../common/mod.rs"]
mod common;

mod c_clients;
mod dotnet;
mod install;
mod python_ctypes;
mod require_tools;
mod server_mode;
mod wine;
mod wine_recorder;

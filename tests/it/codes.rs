//! The HRESULTs the restore tests assert, as the numbers the spec gives (§7.2), written
//! here and not taken from the emulator's constants: a wrong constant there cannot make a
//! test agree with it.

use certadm_emu::HRESULT;

pub(crate) const UNEXPECTED: HRESULT = HRESULT(0x8000_FFFFu32 as i32);
pub(crate) const ACCESS_DENIED: HRESULT = HRESULT(0x8007_0005u32 as i32);
pub(crate) const SHARING_VIOLATION: HRESULT = HRESULT(0x8007_0020u32 as i32);
pub(crate) const BAD_NETPATH: HRESULT = HRESULT(0x8007_0035u32 as i32);
pub(crate) const INVALID_ARG: HRESULT = HRESULT(0x8007_0057u32 as i32);
pub(crate) const INVALID_NAME: HRESULT = HRESULT(0x8007_007Bu32 as i32);
pub(crate) const BAD_PATHNAME: HRESULT = HRESULT(0x8007_00A1u32 as i32);
pub(crate) const DIRECTORY: HRESULT = HRESULT(0x8007_010Bu32 as i32);
pub(crate) const RPC_UNAVAILABLE: HRESULT = HRESULT(0x8007_06BAu32 as i32);
pub(crate) const SUSPENDED: HRESULT = HRESULT(0x8009_4006u32 as i32);
pub(crate) const LOG_FILE_CORRUPT: HRESULT = HRESULT(0xC800_01F5u32 as i32);
pub(crate) const RESTORE_IN_PROGRESS: HRESULT = HRESULT(0xC800_01FAu32 as i32);
pub(crate) const BAD_LOG_SIGNATURE: HRESULT = HRESULT(0xC800_0212u32 as i32);
pub(crate) const BAD_DB_SIGNATURE: HRESULT = HRESULT(0xC800_0213u32 as i32);
pub(crate) const MISSING_RESTORE_LOGS: HRESULT = HRESULT(0xC800_022Du32 as i32);
pub(crate) const MISSING_FULL_BACKUP: HRESULT = HRESULT(0xC800_0230u32 as i32);
pub(crate) const NON_BACKUP_DATABASE: HRESULT = HRESULT(0xC800_0267u32 as i32);
pub(crate) const DATABASE_CORRUPTED: HRESULT = HRESULT(0xC800_04B6u32 as i32);

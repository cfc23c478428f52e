//! What [`super::call`] does not offer, for a caller that must repeat another client's calls
//! exactly (`certadm-emu replay`): a list kept until the caller frees it, a free by address
//! that reports what the emulator made of it, and a registration with any `crstmap` and
//! NULL names in its restore map.

use super::call::{AbiError, Result, WStr};
use super::exports::*;
use super::{last_error, LAST_ERROR};
use crate::core::{Call, ListEntry, ListKind, WideList, HRESULT};
use crate::session::Hcsbc;
use core::ffi::c_void;

/// A list returned by one of the four list exports and not freed yet: its bytes (copied
/// when it was returned) and the address a client would pass to `CertSrvBackupFree`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldList {
    bytes: Vec<u8>,
    address: usize,
}

impl HeldList {
    /// The `*pcbSize` bytes of the list, as returned (double-NUL UTF-16).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `*pcbSize`.
    pub fn cb_size(&self) -> u32 {
        self.bytes.len() as u32
    }

    /// The entries; `prefixed` strips the one-WCHAR `CSBFT` type of each. `None` if the
    /// bytes are not a well-formed list.
    pub fn entries(&self, prefixed: bool) -> Option<Vec<ListEntry>> {
        WideList::parse_bytes(&self.bytes, prefixed)
    }

    /// The buffer's address, for [`backup_free_address`].
    pub fn address(&self) -> usize {
        self.address
    }
}

fn failed(call: Call, hr: i32) -> AbiError {
    AbiError {
        call,
        hr: HRESULT(hr),
        detail: last_error(),
    }
}

/// The list export of `kind` on `h`; the buffer stays allocated until
/// [`backup_free_address`] frees it (as a client holds it).
pub fn list_held(kind: ListKind, h: Hcsbc) -> Result<HeldList> {
    let f: unsafe extern "system" fn(*const c_void, *mut *mut u16, *mut u32) -> i32 = match kind {
        ListKind::DatabaseNames => CertSrvBackupGetDatabaseNamesW,
        ListKind::DynamicFiles => CertSrvBackupGetDynamicFileListW,
        ListKind::BackupLogs => CertSrvBackupGetBackupLogsW,
        ListKind::DatabaseLocations => CertSrvRestoreGetDatabaseLocationsW,
    };
    let mut p: *mut u16 = std::ptr::null_mut();
    let mut cb = 0u32;
    // SAFETY: the handle is any value (the export checks it); both out-pointers are valid
    // for writes.
    let hr = unsafe { f(h.as_ptr(), &mut p, &mut cb) };
    if hr < 0 {
        return Err(failed(kind.call(), hr));
    }
    let bytes = if p.is_null() {
        Vec::new()
    } else {
        // SAFETY: on success the export returned a live buffer of `cb` bytes at `p`, read
        // here once, before anything can free it.
        unsafe { std::slice::from_raw_parts(p as *const u8, cb as usize) }.to_vec()
    };
    Ok(HeldList {
        bytes,
        address: p as usize,
    })
}

/// `CertSrvBackupFree` of the address `address` (0 is NULL). Any value is safe: the export
/// only looks the address up among the lists it returned, and ignores the others.
/// `Err` holds what the emulator recorded for an address that is not a live list
/// (`E_INVALIDARG`), which a void function cannot return.
pub fn backup_free_address(address: usize) -> Result<()> {
    let _ = LAST_ERROR.try_with(|e| e.borrow_mut().take());
    // SAFETY: the export never dereferences a pointer that is not one of its live lists.
    unsafe { CertSrvBackupFree(address as *mut c_void) };
    match last_error() {
        Some(e) => Err(AbiError {
            call: Call::BackupFree,
            hr: e.hresult(),
            detail: Some(e),
        }),
        None => Ok(()),
    }
}

/// One of the four exports that take a server name (`call`), with `pwszServerName` NULL
/// and every other argument valid: what a client passing a NULL name gets.
pub fn null_server_name(call: Call) -> Result<()> {
    let server = std::ptr::null();
    let mut online = 0i32;
    let mut h = std::ptr::null_mut();
    // SAFETY: a NULL string (checked by every export before use) and valid out-pointers;
    // ServerControl's out-pointers are optional.
    let hr = unsafe {
        match call {
            Call::IsServerOnline => CertSrvIsServerOnlineW(server, &mut online),
            Call::BackupPrepare => CertSrvBackupPrepareW(server, 0, 1, &mut h),
            Call::RestorePrepare => CertSrvRestorePrepareW(server, 1, &mut h),
            Call::ServerControl => {
                CertSrvServerControlW(server, 1, std::ptr::null_mut(), std::ptr::null_mut())
            }
            _ => HRESULT::E_INVALIDARG.0,
        }
    };
    if hr < 0 {
        Err(failed(call, hr))
    } else {
        Ok(())
    }
}

/// The arguments of `CertSrvRestoreRegisterW` / `...ThroughFile` as a client may pass
/// them: any string NULL, any `crstmap`, a restore map with NULL names or none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRegistration {
    /// `pwszCheckPointFilePath`.
    pub checkpoint_path: Option<WStr>,
    /// `pwszLogPath`.
    pub log_path: Option<WStr>,
    /// `rgrstmap`: `None` passes NULL; each name may be NULL.
    pub restore_map: Option<Vec<(Option<WStr>, Option<WStr>)>>,
    /// `crstmap`, whatever the map holds. A count the map cannot back (more entries than
    /// it has, within 1..=64) passes `rgrstmap` NULL instead, so no entry is ever read
    /// beyond the map.
    pub crstmap: i32,
    /// `pwszBackupLogPath`.
    pub backup_log_path: Option<WStr>,
    /// `genLow`.
    pub gen_low: u32,
    /// `genHigh`.
    pub gen_high: u32,
}

/// `CertSrvRestoreRegisterW` (`through_file == false`) or `...ThroughFile` with the
/// arguments as given; `None` passes a NULL `hbc`.
pub fn restore_register_raw(
    h: Option<Hcsbc>,
    reg: &RawRegistration,
    through_file: bool,
) -> Result<()> {
    let s = |w: &Option<WStr>| {
        w.as_ref()
            .map_or(std::ptr::null(), |w| w.units_with_nul().as_ptr())
    };
    let mut map: Vec<CSEDB_RSTMAPW> = reg
        .restore_map
        .iter()
        .flatten()
        .map(|(old, new)| CSEDB_RSTMAPW {
            pwszDatabaseName: s(old).cast_mut(),
            pwszNewDatabaseName: s(new).cast_mut(),
        })
        .collect();
    let backed = (reg.crstmap as i64) <= map.len() as i64;
    let in_range = (0..=MAX_RSTMAP).contains(&reg.crstmap);
    // Outside 0..=64 the export refuses crstmap before it looks at the map.
    let pmap = if reg.restore_map.is_none() || (in_range && !backed) {
        std::ptr::null_mut()
    } else {
        map.as_mut_ptr()
    };
    let (call, f): (Call, RegisterFn) = if through_file {
        (
            Call::RestoreRegisterThroughFile,
            CertSrvRestoreRegisterThroughFile,
        )
    } else {
        (Call::RestoreRegister, CertSrvRestoreRegisterW)
    };
    // SAFETY: every string is NULL or NUL-terminated and lives in `reg` for the call;
    // `pmap` is NULL or points to `map`, which has at least `crstmap` entries whenever
    // the export reads them (0 < crstmap <= 64), and outlives the call.
    let hr = unsafe {
        f(
            h.map_or(std::ptr::null_mut(), Hcsbc::as_ptr),
            s(&reg.checkpoint_path),
            s(&reg.log_path),
            pmap,
            reg.crstmap,
            s(&reg.backup_log_path),
            reg.gen_low,
            reg.gen_high,
        )
    };
    if hr < 0 {
        Err(failed(call, hr))
    } else {
        Ok(())
    }
}

type RegisterFn = unsafe extern "system" fn(
    *mut c_void,
    *const u16,
    *const u16,
    *mut CSEDB_RSTMAPW,
    i32,
    *const u16,
    u32,
    u32,
) -> i32;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::consts::CSBACKUP_TYPE_FULL;
    use crate::EmulatedCa;

    #[test]
    fn a_held_list_stays_live_until_freed_and_a_second_free_is_reported() {
        let ca = EmulatedCa::builder().build().unwrap();
        let h =
            super::super::call::backup_prepare(&WStr::new(ca.server_name()), 0, CSBACKUP_TYPE_FULL)
                .unwrap();
        let held = list_held(ListKind::DatabaseNames, h).unwrap();
        assert_eq!(ca.outstanding_buffers(), 1);
        assert_eq!(held.entries(true).unwrap().len(), 1);
        assert_eq!(held.cb_size() as usize, held.bytes().len());
        backup_free_address(held.address()).unwrap();
        assert_eq!(ca.outstanding_buffers(), 0);
        let again = backup_free_address(held.address()).unwrap_err();
        assert_eq!(again.hr, HRESULT::E_INVALIDARG);
        backup_free_address(0).unwrap();
        super::super::call::backup_end(h).unwrap();
        for c in [
            Call::IsServerOnline,
            Call::BackupPrepare,
            Call::RestorePrepare,
            Call::ServerControl,
        ] {
            assert_eq!(
                null_server_name(c).unwrap_err().hr,
                HRESULT::E_POINTER,
                "{c}"
            );
        }
    }

    #[test]
    fn a_registration_passes_what_it_is_given() {
        let ca = EmulatedCa::builder().build().unwrap();
        let h = super::super::call::restore_prepare(&WStr::new(ca.server_name()), 1).unwrap();
        let mut reg = RawRegistration {
            crstmap: -1,
            gen_low: 1,
            gen_high: 1,
            ..Default::default()
        };
        let hr = |reg: &RawRegistration| restore_register_raw(Some(h), reg, false).unwrap_err().hr;
        assert_eq!(hr(&reg), HRESULT::E_INVALIDARG);
        reg.crstmap = 65;
        assert_eq!(hr(&reg), HRESULT::E_INVALIDARG);
        reg.crstmap = 2;
        reg.restore_map = Some(vec![(Some(WStr::new("a")), Some(WStr::new("b")))]);
        assert_eq!(
            hr(&reg),
            HRESULT::E_POINTER,
            "a map shorter than crstmap is passed as NULL"
        );
        reg.crstmap = 1;
        reg.restore_map = Some(vec![(None, Some(WStr::new("b")))]);
        assert_eq!(hr(&reg), HRESULT::E_POINTER);
        assert_eq!(
            restore_register_raw(None, &reg, false).unwrap_err().hr,
            HRESULT::E_POINTER,
            "pointers are checked before the handle"
        );
        super::super::call::restore_end(h).unwrap();
    }
}

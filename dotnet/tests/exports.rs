//! `libcertadm.so`, the .NET entry set, loaded with `dlopen` as Mono and .NET load it:
//!
//! * it exports exactly `include/certadm_dotnet.symbols` (`nm -D --defined-only`), and that
//!   list is the call table's names, the un-suffixed name of each `W` function and the
//!   functions of `include/certemu.h`;
//! * the un-suffixed names take UTF-8 and give the HRESULT the `W` function gives for the
//!   same text; invalid UTF-8 is `E_INVALIDARG`; pointer checks come first, as in the `W`
//!   functions;
//! * a full backup through the un-suffixed names gets the same UTF-16 lists;
//! * `CertSrvRestoreRegisterThroughFile` is this library's UTF-8 one (dotnet/build.rs).
//!
//! The C# clients under Mono are in the main crate's `tests/dotnet.rs`.
//!
//! Environment: `CERTADM_EMU_REQUIRE_TOOLS=1` (CI) makes a missing `nm` fail the export
//! check instead of skipping it with a note.

use certadm_emu::core::Call;
use serde_json::Value;
use std::collections::BTreeSet;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const S_OK: i32 = 0;
const E_POINTER: i32 = 0x8000_4003_u32 as i32;
const E_INVALIDARG: i32 = 0x8007_0057_u32 as i32;
const E_HANDLE: i32 = 0x8007_0006_u32 as i32;
const ERROR_FILE_NOT_FOUND: i32 = 0x8007_0002_u32 as i32;
const RPC_S_SERVER_UNAVAILABLE: i32 = 0x8007_06BA_u32 as i32;
const CSBACKUP_TYPE_FULL: u32 = 1;
const CSRESTORE_TYPE_FULL: u32 = 1;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `libcertadm.so` of this build: cargo builds the cdylib next to this test executable
/// (`target/<profile>/deps`) because the crate is also an rlib.
fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [
        deps.join("libcertadm.so"),
        deps.parent().unwrap().join("libcertadm.so"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .unwrap_or_else(|| panic!("no libcertadm.so next to {}", exe.display()))
}

// ----- the export list ---------------------------------------------------------------------

fn list(file: &str) -> Vec<String> {
    std::fs::read_to_string(repo().join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The un-suffixed name of each `W` function of the call table: `CertSrv` + its variant
/// name (none of them is itself a call table name: those are shared).
fn unsuffixed() -> BTreeSet<String> {
    let names: BTreeSet<String> = Call::ALL
        .iter()
        .filter(|c| c.name().ends_with('W'))
        .map(|c| format!("CertSrv{}", c.short_name()))
        .collect();
    assert_eq!(names.len(), 10, "{names:?}");
    for n in &names {
        assert!(
            Call::from_name(n).is_none(),
            "{n} is also a call table name"
        );
    }
    names
}

#[test]
fn the_symbol_list_is_the_main_list_and_the_unsuffixed_names() {
    let dotnet = list("include/certadm_dotnet.symbols");
    let mut sorted = dotnet.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(dotnet, sorted, "keep include/certadm_dotnet.symbols sorted");
    // The main list is checked against the call table and certemu.h by tests/install.rs.
    let mut want: BTreeSet<String> = list("include/certadm_emu.symbols").into_iter().collect();
    want.extend(unsuffixed());
    assert_eq!(dotnet.into_iter().collect::<BTreeSet<_>>(), want);
}

#[test]
fn exports_are_exactly_the_symbol_list() {
    let found = Command::new("nm").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var("CERTADM_EMU_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "nm is not installed and CERTADM_EMU_REQUIRE_TOOLS=1"
        );
        eprintln!("note: nm is not installed (binutils); skipping the export check");
        return;
    }
    let lib = library();
    let o = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let exported: BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect();
    let listed: BTreeSet<String> = list("include/certadm_dotnet.symbols").into_iter().collect();
    assert_eq!(
        exported,
        listed,
        "{} against include/certadm_dotnet.symbols",
        lib.display()
    );
}

// ----- the library, loaded ------------------------------------------------------------------

extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *mut c_char;
}
const RTLD_NOW: c_int = 2;

struct Lib(*mut c_void);
// SAFETY: a dlopen handle may be used from any thread.
unsafe impl Send for Lib {}
// SAFETY: as above.
unsafe impl Sync for Lib {}

/// The library, loaded once for the process (as a runtime loads it).
fn lib() -> &'static Lib {
    static LIB: OnceLock<Lib> = OnceLock::new();
    LIB.get_or_init(|| {
        // In process, whatever the environment of the test run says.
        assert!(
            std::env::var_os("CERTADM_EMU_SERVER").is_none()
                && std::env::var_os("CERTADM_EMU_CONFIG").is_none(),
            "run these tests without CERTADM_EMU_SERVER and CERTADM_EMU_CONFIG"
        );
        let path = CString::new(library().to_str().unwrap()).unwrap();
        // SAFETY: loading a shared library by path.
        let h = unsafe { dlopen(path.as_ptr(), RTLD_NOW) };
        if h.is_null() {
            // SAFETY: dlerror returns a C string after a failure.
            let e = unsafe { CStr::from_ptr(dlerror()) };
            panic!("dlopen: {e:?}");
        }
        Lib(h)
    })
}

/// The function `name` of the library, as the type `F` (an `extern "system" fn`).
fn sym<F: Copy>(name: &str) -> F {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    let c = CString::new(name).unwrap();
    // SAFETY: looking a symbol up in a loaded library.
    let p = unsafe { dlsym(lib().0, c.as_ptr()) };
    assert!(!p.is_null(), "libcertadm.so has no {name}");
    // SAFETY: F is a function pointer type of the symbol's signature (the caller's choice).
    unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) }
}

type Hcsbc = *mut c_void;
type FnOnline = unsafe extern "system" fn(*const c_char, *mut i32) -> i32;
type FnOnlineW = unsafe extern "system" fn(*const u16, *mut i32) -> i32;
type FnPrepare = unsafe extern "system" fn(*const c_char, u32, u32, *mut Hcsbc) -> i32;
type FnList = unsafe extern "system" fn(Hcsbc, *mut *mut u16, *mut u32) -> i32;
type FnOpen = unsafe extern "system" fn(Hcsbc, *const c_char, u32, *mut i64) -> i32;
type FnOpenW = unsafe extern "system" fn(Hcsbc, *const u16, u32, *mut i64) -> i32;
type FnRead = unsafe extern "system" fn(Hcsbc, *mut c_void, u32, *mut u32) -> i32;
type FnHandle = unsafe extern "system" fn(Hcsbc) -> i32;
type FnFree = unsafe extern "system" fn(*mut c_void);
type FnRestorePrepare = unsafe extern "system" fn(*const c_char, u32, *mut Hcsbc) -> i32;
type FnRegister = unsafe extern "system" fn(
    Hcsbc,
    *const c_char,
    *const c_char,
    *const [*const c_char; 2],
    i32,
    *const c_char,
    u32,
    u32,
) -> i32;
type FnComplete = unsafe extern "system" fn(Hcsbc, i32) -> i32;
type FnCreate = unsafe extern "C" fn(*const c_char, *const c_void, *mut *mut c_void) -> i32;
type FnCa = unsafe extern "C" fn(*mut c_void) -> i32;
type FnCaString = unsafe extern "C" fn(*mut c_void, *mut *mut c_char) -> i32;
type FnName = unsafe extern "C" fn(*mut c_void, *mut *const c_char) -> i32;
type FnString = unsafe extern "C" fn(*mut *mut c_char) -> i32;
type FnFreeString = unsafe extern "C" fn(*mut c_char) -> i32;

/// A CA of the library, destroyed on drop.
struct Ca {
    ca: *mut c_void,
    name: CString,
}

impl Ca {
    fn new() -> Ca {
        let mut ca = std::ptr::null_mut();
        // SAFETY: the certemu.h signature; NULL name and options = defaults.
        let hr = unsafe {
            sym::<FnCreate>("certemu_ca_create")(std::ptr::null(), std::ptr::null(), &mut ca)
        };
        assert_eq!(hr, S_OK);
        let mut name = std::ptr::null();
        // SAFETY: as above; the name lives as long as the CA (copied).
        let name = unsafe {
            assert_eq!(sym::<FnName>("certemu_ca_server_name")(ca, &mut name), S_OK);
            CStr::from_ptr(name).to_owned()
        };
        Ca { ca, name }
    }

    fn call(&self, f: &str) -> i32 {
        // SAFETY: the certemu.h signature.
        unsafe { sym::<FnCa>(f)(self.ca) }
    }

    fn report(&self) -> Value {
        let mut s = std::ptr::null_mut();
        // SAFETY: the certemu.h signatures; the string is freed after the copy.
        unsafe {
            assert_eq!(
                sym::<FnCaString>("certemu_ca_report")(self.ca, &mut s),
                S_OK
            );
            let v = serde_json::from_str(CStr::from_ptr(s).to_str().unwrap()).unwrap();
            sym::<FnFreeString>("certemu_free_string")(s);
            v
        }
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = self.call("certemu_ca_destroy");
    }
}

/// The last error message of this thread (`certemu_last_error`).
fn last_error() -> String {
    let mut s = std::ptr::null_mut();
    // SAFETY: the certemu.h signatures.
    unsafe {
        sym::<FnString>("certemu_last_error")(&mut s);
        assert!(!s.is_null());
        let m = CStr::from_ptr(s).to_string_lossy().into_owned();
        sym::<FnFreeString>("certemu_free_string")(s);
        m
    }
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain([0]).collect()
}

/// The entries of a double-NUL UTF-16 list of `cb` bytes.
///
/// # Safety
/// `p` is valid for `cb` bytes.
unsafe fn entries(p: *const u16, cb: u32) -> Vec<String> {
    // SAFETY: per contract.
    let units = unsafe { std::slice::from_raw_parts(p, cb as usize / 2) };
    assert!(units.ends_with(&[0, 0]), "{units:?}");
    units[..units.len() - 1]
        .split(|&u| u == 0)
        .filter(|e| !e.is_empty())
        .map(String::from_utf16_lossy)
        .collect()
}

fn hex(hr: i32) -> String {
    format!("0x{:08X}", hr as u32)
}

// ----- behaviour ----------------------------------------------------------------------------

/// A full backup through the un-suffixed names with UTF-8 names: the lists are UTF-16,
/// every file reads to EOF, and the CA's report is clean.
#[test]
fn a_full_backup_through_the_unsuffixed_names() {
    let ca = Ca::new();
    let mut h: Hcsbc = std::ptr::null_mut();
    // SAFETY: the signatures of the .NET entry set (UTF-8 strings, UTF-16 lists).
    unsafe {
        let mut online = 7;
        assert_eq!(
            sym::<FnOnline>("CertSrvIsServerOnline")(ca.name.as_ptr(), &mut online),
            S_OK
        );
        assert_eq!(online, 1);
        let prepare = sym::<FnPrepare>("CertSrvBackupPrepare");
        assert_eq!(
            prepare(ca.name.as_ptr(), 0, CSBACKUP_TYPE_FULL, &mut h),
            S_OK
        );
        let mut lists = Vec::new();
        let mut files = Vec::new();
        for f in [
            "CertSrvRestoreGetDatabaseLocations",
            "CertSrvBackupGetDatabaseNames",
            "CertSrvBackupGetBackupLogs",
        ] {
            let (mut p, mut cb) = (std::ptr::null_mut(), 0u32);
            assert_eq!(sym::<FnList>(f)(h, &mut p, &mut cb), S_OK, "{f}");
            let e = entries(p, cb);
            assert!(!e.is_empty(), "{f}");
            if f != "CertSrvRestoreGetDatabaseLocations" {
                files.extend(e.iter().map(|s| s.chars().skip(1).collect::<String>()));
            }
            lists.push(p);
        }
        assert!(files[0].ends_with(".edb"), "{files:?}");
        assert!(files[0].starts_with(r"\\"), "{files:?}");
        let open = sym::<FnOpen>("CertSrvBackupOpenFile");
        let read = sym::<FnRead>("CertSrvBackupRead");
        let mut buf = vec![0u8; 64 * 1024];
        for name in &files {
            let c = CString::new(name.as_str()).unwrap();
            let mut size = -1i64;
            assert_eq!(open(h, c.as_ptr(), 0, &mut size), S_OK, "{name}");
            let mut total = 0i64;
            loop {
                let mut n = 0u32;
                assert_eq!(
                    read(h, buf.as_mut_ptr().cast(), buf.len() as u32, &mut n),
                    S_OK
                );
                total += n as i64;
                if (n as usize) < buf.len() {
                    break;
                }
            }
            assert_eq!(total, size, "{name}");
            assert_eq!(sym::<FnHandle>("CertSrvBackupClose")(h), S_OK);
        }
        assert_eq!(sym::<FnHandle>("CertSrvBackupTruncateLogs")(h), S_OK);
        assert_eq!(sym::<FnHandle>("CertSrvBackupEnd")(h), S_OK);
        assert_eq!(sym::<FnHandle>("CertSrvBackupEnd")(h), E_HANDLE);
        for p in lists {
            sym::<FnFree>("CertSrvBackupFree")(p.cast());
        }
    }
    let r = ca.report();
    assert_eq!(r["sessions_open"], 0, "{r:#}");
    assert_eq!(r["outstanding_buffers"], 0, "{r:#}");
    assert!(r["last_full_backup"].is_object(), "{r:#}");
    let violations = &r["conformance"]["violations"];
    // The second End is a use after End (CB09); nothing else.
    let rules: Vec<&str> = violations
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["CB09"], "{r:#}");
}

/// The same text gives the same HRESULT through the UTF-8 name and the `W` name; invalid
/// UTF-8 is `E_INVALIDARG` with a message; NULL checks come first.
#[test]
fn utf8_strings_behave_as_the_w_functions_utf16() {
    let ca = Ca::new();
    let name = ca.name.to_str().unwrap().to_string();
    let online = sym::<FnOnline>("CertSrvIsServerOnline");
    let online_w = sym::<FnOnlineW>("CertSrvIsServerOnlineW");
    let long_ascii = "a".repeat(32_767);
    let too_long = "a".repeat(32_768);
    // 32,767 three-byte characters: 98,301 bytes, as long as the W form allows.
    let long_bmp = "€".repeat(32_767);
    let texts = [
        name.clone(),
        name.to_lowercase(),
        format!(r"\\{name}"),
        "CAÜBER".to_string(),
        "日本".to_string(),
        String::new(),
        long_ascii,
        too_long.clone(),
        long_bmp.clone(),
        format!("{long_bmp}€"),
    ];
    for t in &texts {
        let (mut a, mut b) = (7, 7);
        let c = CString::new(t.as_str()).unwrap();
        let w = wide(t);
        // SAFETY: NUL-terminated strings of the declared encodings.
        let (hr, hr_w) = unsafe { (online(c.as_ptr(), &mut a), online_w(w.as_ptr(), &mut b)) };
        let short: String = t.chars().take(20).collect();
        assert_eq!(
            hex(hr),
            hex(hr_w),
            "{short}... ({} chars)",
            t.chars().count()
        );
        assert_eq!(a, b, "{short}");
    }
    // Too long: E_INVALIDARG in both.
    let c = CString::new(too_long).unwrap();
    let mut o = 0;
    // SAFETY: as above.
    assert_eq!(unsafe { online(c.as_ptr(), &mut o) }, E_INVALIDARG);
    assert!(
        last_error().contains("longer than 32767"),
        "{}",
        last_error()
    );

    // Invalid UTF-8: a lone continuation byte, a truncated sequence, an overlong NUL, a
    // surrogate encoded in UTF-8 (CESU-8).
    for bad in [
        &b"\x80CA\0"[..],
        b"CA\xE2\x82\0",
        b"\xC0\x80\0",
        b"\xED\xA0\x80\0",
        b"\xFF\0",
    ] {
        let mut o = 7;
        // SAFETY: a NUL-terminated byte string.
        let hr = unsafe { online(bad.as_ptr().cast(), &mut o) };
        assert_eq!(hex(hr), hex(E_INVALIDARG), "{bad:?}");
        assert_eq!(o, 0, "out-parameter set on entry");
        let m = last_error();
        assert!(
            m.contains("CertSrvIsServerOnlineW") && m.contains("pwszServerName is not valid UTF-8"),
            "{m}"
        );
    }
    // NULL string, NULL out-pointer (which is checked first, as in the W function).
    // SAFETY: NULL pointers are allowed (and refused).
    unsafe {
        let mut o = 0;
        assert_eq!(online(std::ptr::null(), &mut o), E_POINTER);
        assert_eq!(online(c"\xFF".as_ptr(), std::ptr::null_mut()), E_POINTER);
        assert!(last_error().contains("pfServerOnline"), "{}", last_error());
    }

    // OpenFile: a name that is not listed (valid UTF-8), the same name through the W
    // function, and invalid UTF-8.
    let mut h: Hcsbc = std::ptr::null_mut();
    // SAFETY: the signatures of the entry set.
    unsafe {
        assert_eq!(
            sym::<FnPrepare>("CertSrvBackupPrepare")(
                ca.name.as_ptr(),
                0,
                CSBACKUP_TYPE_FULL,
                &mut h
            ),
            S_OK
        );
        let open = sym::<FnOpen>("CertSrvBackupOpenFile");
        let open_w = sym::<FnOpenW>("CertSrvBackupOpenFileW");
        let text = r"C:\Windows\System32\CertLog\Zürich.edb";
        let c = CString::new(text).unwrap();
        let w = wide(text);
        let (mut a, mut b) = (-1i64, -1i64);
        assert_eq!(open(h, c.as_ptr(), 0, &mut a), ERROR_FILE_NOT_FOUND);
        assert!(last_error().contains("Zürich.edb"), "{}", last_error());
        assert_eq!(open_w(h, w.as_ptr(), 0, &mut b), ERROR_FILE_NOT_FOUND);
        assert_eq!((a, b), (0, 0));
        assert_eq!(open(h, c"Z\xFCrich.edb".as_ptr(), 0, &mut a), E_INVALIDARG);
        assert!(
            last_error().contains("pwszAttachmentName"),
            "{}",
            last_error()
        );
        assert_eq!(sym::<FnHandle>("CertSrvBackupEnd")(h), S_OK);
        // Unknown host, through the un-suffixed RestorePrepare.
        let mut r: Hcsbc = std::ptr::null_mut();
        assert_eq!(
            sym::<FnRestorePrepare>("CertSrvRestorePrepare")(c"NO-SUCH-HOST".as_ptr(), 1, &mut r),
            RPC_S_SERVER_UNAVAILABLE
        );
        assert!(r.is_null());
    }
}

/// `CertSrvRestoreRegisterThroughFile` takes UTF-8 paths and restore map here (the main
/// crate's UTF-16 definition would read these bytes as other characters and refuse them).
#[test]
fn restore_register_through_file_takes_utf8() {
    let ca = Ca::new();
    // The CA's locations, from a backup context.
    let mut h: Hcsbc = std::ptr::null_mut();
    let locations;
    // SAFETY: the signatures of the entry set.
    unsafe {
        assert_eq!(
            sym::<FnPrepare>("CertSrvBackupPrepare")(
                ca.name.as_ptr(),
                0,
                CSBACKUP_TYPE_FULL,
                &mut h
            ),
            S_OK
        );
        let (mut p, mut cb) = (std::ptr::null_mut(), 0u32);
        assert_eq!(
            sym::<FnList>("CertSrvRestoreGetDatabaseLocations")(h, &mut p, &mut cb),
            S_OK
        );
        locations = entries(p, cb);
        sym::<FnFree>("CertSrvBackupFree")(p.cast());
        assert_eq!(sym::<FnHandle>("CertSrvBackupEnd")(h), S_OK);
    }
    let strip = |i: usize| CString::new(locations[i].chars().skip(1).collect::<String>()).unwrap();
    let (db, log_dir, system_dir) = (strip(0), strip(1), strip(2));
    assert_eq!(ca.call("certemu_ca_stop"), S_OK);
    let through_file = sym::<FnRegister>("CertSrvRestoreRegisterThroughFile");
    let register = sym::<FnRegister>("CertSrvRestoreRegister");
    // SAFETY: UTF-8 strings and a CSEDB_RSTMAP of two char pointers.
    unsafe {
        let mut r: Hcsbc = std::ptr::null_mut();
        assert_eq!(
            sym::<FnRestorePrepare>("CertSrvRestorePrepare")(
                ca.name.as_ptr(),
                CSRESTORE_TYPE_FULL,
                &mut r
            ),
            S_OK
        );
        // Invalid UTF-8 in the restore map: E_INVALIDARG, naming the member.
        let bad = [db.as_ptr(), c"\xFF.edb".as_ptr()];
        for f in [through_file, register] {
            let hr = f(
                r,
                system_dir.as_ptr(),
                log_dir.as_ptr(),
                &bad,
                1,
                log_dir.as_ptr(),
                1,
                1,
            );
            assert_eq!(hex(hr), hex(E_INVALIDARG));
            assert!(
                last_error().contains("rgrstmap[].pwszNewDatabaseName"),
                "{}",
                last_error()
            );
        }
        // A non-ASCII path that is valid UTF-8 reaches the path rules: another host.
        let other = CString::new(r"\\Zürich\C$\Windows\System32\CertLog").unwrap();
        let map = [db.as_ptr(), db.as_ptr()];
        let hr = through_file(
            r,
            system_dir.as_ptr(),
            other.as_ptr(),
            &map,
            1,
            log_dir.as_ptr(),
            1,
            1,
        );
        assert_eq!(
            hex(hr),
            hex(0x8007_0035_u32 as i32),
            "ERROR_BAD_NETPATH: {}",
            last_error()
        );
        // The registration itself.
        let hr = through_file(
            r,
            system_dir.as_ptr(),
            log_dir.as_ptr(),
            &map,
            1,
            log_dir.as_ptr(),
            1,
            1,
        );
        assert_eq!(hex(hr), hex(S_OK), "{}", last_error());
        let marker = &ca.report()["restore_marker"];
        assert_eq!(marker["through_file"], true, "{marker}");
        assert_eq!(marker["restore_map_count"], 1, "{marker}");
        assert_eq!(marker["pending"], true, "{marker}");
        assert_eq!(
            sym::<FnComplete>("CertSrvRestoreRegisterComplete")(r, S_OK),
            S_OK
        );
        assert_eq!(sym::<FnHandle>("CertSrvRestoreEnd")(r), S_OK);
    }
    assert_eq!(ca.report()["sessions_open"], 0);
}

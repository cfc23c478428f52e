//! The documented backup scenario (spec §8.1), driven step by step through the
//! `extern "system"` exports exactly as a C client calls Certadm.dll.

use certadm_emu::ca::format::{decode_log, parse_log_file_name, EdbImage, EDB_PREFIX};
use certadm_emu::ca::{content, Record, Status, Txn};
use certadm_emu::core::consts::*;
use certadm_emu::core::wide::to_wide_nul;
use certadm_emu::{abi, client};
use certadm_emu::{EmulatedCa, WideList, HRESULT};
use core::ffi::c_void;
use std::collections::BTreeMap;
use std::path::Path;
use std::ptr::null_mut;

// ----- a client, as C code would write it -------------------------------------------------

/// A list returned by the emulator, not yet freed.
struct RawList {
    p: *mut u16,
    cb: u32,
}

impl RawList {
    fn bytes(&self) -> Vec<u8> {
        unsafe { std::slice::from_raw_parts(self.p as *const u8, self.cb as usize) }.to_vec()
    }
    fn entries(&self, prefixed: bool) -> Vec<(Option<u16>, String)> {
        WideList::parse_bytes(&self.bytes(), prefixed)
            .expect("a well-formed list")
            .into_iter()
            .map(|e| (e.kind, e.path))
            .collect()
    }
}

type ListFn = unsafe extern "system" fn(*const c_void, *mut *mut u16, *mut u32) -> i32;

#[track_caller]
fn ok(hr: i32) {
    assert_eq!(
        HRESULT(hr),
        HRESULT::S_OK,
        "{}",
        abi::last_error().map(|e| e.to_string()).unwrap_or_default()
    );
}

fn get_list(f: ListFn, h: *mut c_void) -> RawList {
    let mut p = null_mut();
    let mut cb = 0u32;
    ok(unsafe { f(h, &mut p, &mut cb) });
    assert!(!p.is_null());
    RawList { p, cb }
}

/// One file copied through OpenFile / Read / Close.
struct Copied {
    size: i64,
    bytes: Vec<u8>,
    /// `*pcbRead` of every Read call.
    reads: Vec<u32>,
}

/// Steps 7–9: open, read in a loop until a short (or empty) read, close.
fn copy_file(h: *mut c_void, name: &str, hint: u32, buf_size: usize) -> Copied {
    let w = to_wide_nul(name);
    let mut size = -1i64;
    ok(unsafe { abi::CertSrvBackupOpenFileW(h, w.as_ptr(), hint, &mut size) });
    assert!(size >= 0);
    let mut buf = vec![0u8; buf_size];
    let mut bytes = Vec::with_capacity(size as usize);
    let mut reads = Vec::new();
    loop {
        let mut n = u32::MAX;
        ok(unsafe { abi::CertSrvBackupRead(h, buf.as_mut_ptr().cast(), buf_size as u32, &mut n) });
        assert!(n as usize <= buf_size);
        reads.push(n);
        bytes.extend_from_slice(&buf[..n as usize]);
        if (n as usize) < buf_size {
            break;
        }
    }
    ok(unsafe { abi::CertSrvBackupClose(h) });
    assert_eq!(bytes.len() as i64, size);
    Copied { size, bytes, reads }
}

fn file_name(unc: &str) -> &str {
    unc.rsplit('\\').next().unwrap()
}

/// What a full backup produced.
struct FullBackup {
    locations: Vec<(Option<u16>, String)>,
    database: Vec<(String, Vec<u8>)>,
    logs: Vec<(u32, Vec<u8>)>,
    dynamic: Vec<String>,
}

/// The whole §8.1 procedure for a full backup with truncation, checking each file
/// against the emulated disk as soon as it was read. Writes the certutil layout to `dir`.
fn documented_full_backup(ca: &EmulatedCa, dir: &Path, buf_size: usize) -> FullBackup {
    let db_dir = dir.join(wszDBBACKUPSUBDIR);
    std::fs::create_dir_all(&db_dir).unwrap();
    let server = to_wide_nul(ca.server_name());

    // 3. The CA must be online.
    let mut online = 0i32;
    ok(unsafe { abi::CertSrvIsServerOnlineW(server.as_ptr(), &mut online) });
    assert_eq!(online, 1);

    // 4. Prepare.
    let mut h = null_mut();
    ok(unsafe { abi::CertSrvBackupPrepareW(server.as_ptr(), 0, CSBACKUP_TYPE_FULL, &mut h) });
    assert!(ca.backup_in_progress());

    // 5. The restore map, saved as certbkxp.dat.
    let locs = get_list(abi::CertSrvRestoreGetDatabaseLocationsW, h);
    std::fs::write(db_dir.join(wszDBBACKUPCERTBACKDAT), locs.bytes()).unwrap();

    // 6–9. The database files.
    let names = get_list(abi::CertSrvBackupGetDatabaseNamesW, h);
    let mut database = Vec::new();
    for (kind, name) in names.entries(true) {
        assert_eq!(kind, Some(CSBFT_CERTSERVER_DATABASE));
        let c = copy_file(h, &name, 0, buf_size);
        let on_disk = std::fs::read(ca.host_path(&name).unwrap()).unwrap();
        assert_eq!(c.bytes, on_disk, "{name}");
        std::fs::write(db_dir.join(file_name(&name)), &c.bytes).unwrap();
        database.push((name, c.bytes));
    }

    // 10. The logs, 7–9 for each.
    let logs_list = get_list(abi::CertSrvBackupGetBackupLogsW, h);
    let mut logs = Vec::new();
    for (kind, name) in logs_list.entries(true) {
        assert_eq!(kind, Some(CSBFT_LOG));
        let c = copy_file(h, &name, 0, buf_size);
        let on_disk = std::fs::read(ca.host_path(&name).unwrap()).unwrap();
        assert_eq!(c.bytes, on_disk, "{name}");
        std::fs::write(db_dir.join(file_name(&name)), &c.bytes).unwrap();
        logs.push((parse_log_file_name(file_name(&name)).unwrap(), c.bytes));
    }

    // 11. Truncate (everything was secured).
    ok(unsafe { abi::CertSrvBackupTruncateLogs(h) });

    // 12–13. Dynamic files, copied by other means.
    let dyn_list = get_list(abi::CertSrvBackupGetDynamicFileListW, h);
    let dynamic: Vec<String> = dyn_list
        .entries(false)
        .into_iter()
        .map(|(k, p)| {
            assert_eq!(k, None);
            p
        })
        .collect();
    for d in &dynamic {
        std::fs::copy(ca.host_path(d).unwrap(), dir.join(file_name(d))).unwrap();
    }

    // 14. End.
    ok(unsafe { abi::CertSrvBackupEnd(h) });
    assert!(!ca.backup_in_progress());

    // 15. Free, after End: the buffers are still intact.
    let locations = locs.entries(true);
    assert_eq!(locations.len(), 3);
    assert_eq!(names.entries(true).len(), database.len());
    assert_eq!(logs_list.entries(true).len(), logs.len());
    for l in [locs, names, logs_list, dyn_list] {
        unsafe { abi::CertSrvBackupFree(l.p.cast()) };
    }
    assert_eq!(ca.outstanding_buffers(), 0);

    FullBackup {
        locations,
        database,
        logs,
        dynamic,
    }
}

/// Applies the transactions of `logs` after the database's checkpoint.
fn replay(edb: &[u8], logs: &[(u32, Vec<u8>)]) -> Vec<Record> {
    let img = EdbImage::decode(edb).unwrap();
    let mut records: BTreeMap<u32, Record> =
        img.records.into_iter().map(|r| (r.request_id, r)).collect();
    for (g, bytes) in logs {
        let log = decode_log(bytes).unwrap();
        assert_eq!(log.header.generation, *g);
        assert_eq!(log.header.signature, img.header.signature);
        assert!(log.sealed_crc.is_some(), "backed-up logs are sealed");
        if *g < img.header.checkpoint.generation {
            continue;
        }
        let skip = if *g == img.header.checkpoint.generation {
            img.header.checkpoint.pos as usize
        } else {
            0
        };
        for t in log.txns.into_iter().skip(skip) {
            match t {
                Txn::Issue(r) => {
                    records.insert(r.request_id, r);
                }
                Txn::Revoke {
                    request_id,
                    at,
                    reason,
                } => {
                    records.get_mut(&request_id).unwrap().status = Status::Revoked { at, reason };
                }
            }
        }
    }
    records.into_values().collect()
}

// ----- tests ------------------------------------------------------------------------------

#[test]
fn documented_backup_scenario_step_by_step() {
    let ca = EmulatedCa::builder()
        .records(25)
        .log_capacity(4)
        .build()
        .unwrap();
    ca.issue(10).unwrap();
    ca.revoke(4).unwrap();
    let cp = ca.checkpoint().generation;
    let cur = ca.current_position().generation;
    let records = ca.records().collect::<Vec<_>>();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("full");

    let b = documented_full_backup(&ca, &dir, 512 * 1024);

    // The restore map.
    let certlog = format!(r"\\{}\C$\Windows\System32\CertLog", ca.dns_name());
    assert_eq!(
        b.locations,
        vec![
            (Some(0x44), format!(r"{certlog}\Emu Issuing CA.edb")),
            (Some(0x82), certlog.clone()),
            (Some(0x83), certlog.clone()),
        ]
    );
    // One database, the logs from the checkpoint to the (rolled) current generation.
    assert_eq!(b.database.len(), 1);
    assert_eq!(b.database[0].0, format!(r"{certlog}\Emu Issuing CA.edb"));
    assert_eq!(
        b.logs.iter().map(|l| l.0).collect::<Vec<_>>(),
        (cp..=cur).collect::<Vec<_>>()
    );
    assert_eq!(b.dynamic.len(), 2);
    // The backup set replays to the CA's records.
    assert_eq!(replay(&b.database[0].1, &b.logs), records);
    // The backup is recorded, the logs below the checkpoint are gone.
    assert_eq!(ca.last_full_backup().unwrap().high_gen, cur);
    assert!(ca.log_generations().iter().all(|g| *g >= cp));
    assert_eq!(ca.checkpoint(), ca.current_position());
    assert_eq!(ca.sessions_open(), 0);

    // The directory is a certutil-style backup: the reference client restores it.
    ca.issue(3).unwrap();
    ca.stop().unwrap();
    ca.wipe_files().unwrap();
    client::restore_from_dirs(
        ca.server_name(),
        &dir,
        &[],
        &|p| ca.host_path(p),
        &client::RestoreOptions::default(),
    )
    .unwrap();
    let rep = ca.start().unwrap();
    assert!(rep.hard);
    assert_eq!(ca.records().collect::<Vec<_>>(), records);
}

#[test]
fn virtual_edb_reads_generated_padding_beyond_the_stored_part() {
    const SIZE: u64 = 64 << 20;
    const BUF: usize = 1 << 20;
    let ca = EmulatedCa::builder()
        .records(8)
        .edb_size(SIZE)
        .seed(0x5EED)
        .build()
        .unwrap();
    let server = to_wide_nul(ca.server_name());
    let mut h = null_mut();
    ok(unsafe { abi::CertSrvBackupPrepareW(server.as_ptr(), 0, CSBACKUP_TYPE_FULL, &mut h) });
    let names = get_list(abi::CertSrvBackupGetDatabaseNamesW, h);
    let name = names.entries(true).remove(0).1;
    unsafe { abi::CertSrvBackupFree(names.p.cast()) };

    let stored = std::fs::read(ca.host_path(&name).unwrap()).unwrap();
    let (compact, logical, seed) = EdbImage::prefix(&stored[..EDB_PREFIX]).unwrap();
    assert_eq!(logical, SIZE);
    assert_eq!(
        compact,
        stored.len() as u64,
        "only the compact part is on disk"
    );
    assert!(compact < SIZE);

    let w = to_wide_nul(&name);
    let mut size = 0i64;
    ok(unsafe { abi::CertSrvBackupOpenFileW(h, w.as_ptr(), BUF as u32, &mut size) });
    assert_eq!(size as u64, SIZE);
    let mut buf = vec![0u8; BUF];
    let mut expect = vec![0u8; BUF];
    let mut offset = 0u64;
    let mut reads = Vec::new();
    loop {
        let mut n = 0u32;
        ok(unsafe { abi::CertSrvBackupRead(h, buf.as_mut_ptr().cast(), BUF as u32, &mut n) });
        reads.push(n);
        let got = &buf[..n as usize];
        // Stored part from the host file, the rest from content::fill at the absolute offset.
        let split = (compact.saturating_sub(offset) as usize).min(got.len());
        if split > 0 {
            assert_eq!(
                &got[..split],
                &stored[offset as usize..offset as usize + split]
            );
        }
        let pad = &mut expect[..got.len() - split];
        content::fill(seed, offset + split as u64, pad);
        assert!(
            got[split..] == *pad,
            "padding differs in the chunk at offset {offset}"
        );
        offset += n as u64;
        if (n as usize) < BUF {
            break;
        }
    }
    assert_eq!(offset, SIZE);
    // 64 MiB is an exact multiple of the buffer: 64 full reads, then a 0-byte read with S_OK.
    assert_eq!(reads.len(), 65);
    assert!(reads[..64].iter().all(|n| *n as usize == BUF));
    assert_eq!(reads[64], 0);
    ok(unsafe { abi::CertSrvBackupClose(h) });
    ok(unsafe { abi::CertSrvBackupEnd(h) });
}

#[test]
fn exact_multiple_of_the_buffer_ends_with_an_empty_read() {
    let ca = EmulatedCa::builder()
        .records(6)
        .log_capacity(4)
        .build()
        .unwrap();
    ca.issue(9).unwrap();
    let server = to_wide_nul(ca.server_name());
    let mut h = null_mut();
    ok(unsafe { abi::CertSrvBackupPrepareW(server.as_ptr(), 0, CSBACKUP_TYPE_FULL, &mut h) });
    let mut files = Vec::new();
    for f in [
        abi::CertSrvBackupGetDatabaseNamesW as ListFn,
        abi::CertSrvBackupGetBackupLogsW,
    ] {
        let l = get_list(f, h);
        files.extend(l.entries(true).into_iter().map(|e| e.1));
        unsafe { abi::CertSrvBackupFree(l.p.cast()) };
    }
    for name in &files {
        let on_disk = std::fs::read(ca.host_path(name).unwrap()).unwrap();
        let size = on_disk.len();
        // Buffer == size: one full read, then 0 bytes with S_OK.
        let c = copy_file(h, name, 0, size);
        assert_eq!(c.reads, vec![size as u32, 0], "{name}");
        assert_eq!(c.bytes, on_disk);
        assert_eq!(c.size as usize, size);
        // A divisor of the size: size/d full reads, then 0.
        if let Some(d) = [2usize, 3, 4, 5, 7].into_iter().find(|d| size % d == 0) {
            let c = copy_file(h, name, 0, size / d);
            let mut want = vec![(size / d) as u32; d];
            want.push(0);
            assert_eq!(c.reads, want, "{name} in {d} chunks");
            assert_eq!(c.bytes, on_disk);
        }
        // Larger buffer: one short read; reading on at EOF keeps returning 0 with S_OK.
        let w = to_wide_nul(name);
        let mut sz = 0i64;
        ok(unsafe { abi::CertSrvBackupOpenFileW(h, w.as_ptr(), 0, &mut sz) });
        let mut buf = vec![0u8; size + 100];
        let mut n = 0u32;
        ok(unsafe { abi::CertSrvBackupRead(h, buf.as_mut_ptr().cast(), buf.len() as u32, &mut n) });
        assert_eq!(n as usize, size);
        for _ in 0..2 {
            n = 77;
            ok(unsafe {
                abi::CertSrvBackupRead(h, buf.as_mut_ptr().cast(), buf.len() as u32, &mut n)
            });
            assert_eq!(n, 0);
        }
        ok(unsafe { abi::CertSrvBackupClose(h) });
    }
    // Every file was secured: truncation is allowed.
    ok(unsafe { abi::CertSrvBackupTruncateLogs(h) });
    ok(unsafe { abi::CertSrvBackupEnd(h) });
    assert!(ca.last_full_backup().is_some());
}

#[test]
fn ca_activity_during_a_full_backup_is_in_the_logs() {
    let ca = EmulatedCa::builder()
        .records(20)
        .log_capacity(4)
        .build()
        .unwrap();
    ca.issue(6).unwrap();
    let server = to_wide_nul(ca.server_name());
    let mut h = null_mut();
    ok(unsafe { abi::CertSrvBackupPrepareW(server.as_ptr(), 0, CSBACKUP_TYPE_FULL, &mut h) });
    let names = get_list(abi::CertSrvBackupGetDatabaseNamesW, h);
    let db = names.entries(true).remove(0).1;

    // Start reading the database, then the CA issues and revokes in the middle of it.
    let w = to_wide_nul(&db);
    let mut size = 0i64;
    ok(unsafe { abi::CertSrvBackupOpenFileW(h, w.as_ptr(), 0, &mut size) });
    let at_open = std::fs::read(ca.host_path(&db).unwrap()).unwrap();
    assert_eq!(at_open.len() as i64, size);
    let half = (size / 2) as usize;
    let mut edb = vec![0u8; half];
    let mut n = 0u32;
    ok(unsafe { abi::CertSrvBackupRead(h, edb.as_mut_ptr().cast(), half as u32, &mut n) });
    assert_eq!(n as usize, half);

    let issued = ca.issue(11).unwrap();
    ca.revoke(3).unwrap();
    ca.revoke(issued[0]).unwrap();
    let records_now = ca.records().collect::<Vec<_>>();
    assert_eq!(records_now.len(), 20 + 6 + 11);

    let mut rest = vec![0u8; size as usize];
    ok(unsafe { abi::CertSrvBackupRead(h, rest.as_mut_ptr().cast(), size as u32, &mut n) });
    edb.extend_from_slice(&rest[..n as usize]);
    assert_eq!(
        edb, at_open,
        "the database read is the one frozen at Prepare"
    );
    ok(unsafe { abi::CertSrvBackupClose(h) });

    // The logs of this backup hold the activity.
    let logs_list = get_list(abi::CertSrvBackupGetBackupLogsW, h);
    let mut logs = Vec::new();
    for (_, name) in logs_list.entries(true) {
        let c = copy_file(h, &name, 0, 4096);
        logs.push((parse_log_file_name(file_name(&name)).unwrap(), c.bytes));
    }
    let txns: Vec<Txn> = logs
        .iter()
        .flat_map(|(_, b)| decode_log(b).unwrap().txns)
        .collect();
    for id in &issued {
        assert!(
            txns.iter()
                .any(|t| matches!(t, Txn::Issue(r) if r.request_id == *id)),
            "issue of {id} missing"
        );
    }
    for id in [3, issued[0]] {
        assert!(
            txns.iter()
                .any(|t| matches!(t, Txn::Revoke { request_id, .. } if *request_id == id)),
            "revocation of {id} missing"
        );
    }
    // Database + logs replay to exactly the CA's state when the logs were listed.
    assert_eq!(replay(&edb, &logs), records_now);

    ok(unsafe { abi::CertSrvBackupTruncateLogs(h) });
    ok(unsafe { abi::CertSrvBackupEnd(h) });
    for l in [names, logs_list] {
        unsafe { abi::CertSrvBackupFree(l.p.cast()) };
    }
    assert_eq!(
        ca.last_full_backup().unwrap().high_gen,
        logs.last().unwrap().0
    );
    assert_eq!(ca.record_count(), records_now.len());
}

#[test]
fn eight_cas_back_up_in_parallel() {
    const N: usize = 8;
    let barrier = std::sync::Barrier::new(N);
    let tmp = tempfile::tempdir().unwrap();
    let names: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let barrier = &barrier;
                let dir = tmp.path().join(format!("ca{i}"));
                s.spawn(move || {
                    let ca = EmulatedCa::builder()
                        .records(10 + i as u32)
                        .log_capacity(3 + i as u32 % 3)
                        .seed(100 + i as u64)
                        .build()
                        .unwrap();
                    ca.issue(5 + 2 * i as u32).unwrap();
                    ca.revoke(1).unwrap();
                    let records = ca.records().collect::<Vec<_>>();
                    let cp = ca.checkpoint().generation;
                    let cur = ca.current_position().generation;
                    barrier.wait();
                    // Two full backups in a row, each on its own CA, all threads at once.
                    for round in 0..2 {
                        let b = documented_full_backup(&ca, &dir.join(format!("r{round}")), 4096);
                        assert_eq!(b.database.len(), 1);
                        assert_eq!(
                            replay(&b.database[0].1, &b.logs),
                            ca.records().collect::<Vec<_>>()
                        );
                        if round == 0 {
                            assert_eq!(
                                b.logs.iter().map(|l| l.0).collect::<Vec<_>>(),
                                (cp..=cur).collect::<Vec<_>>()
                            );
                            assert_eq!(ca.records().collect::<Vec<_>>(), records);
                        }
                        assert_eq!(
                            ca.last_full_backup().unwrap().high_gen,
                            b.logs.last().unwrap().0
                        );
                        ca.issue(4).unwrap();
                    }
                    assert_eq!(ca.sessions_open(), 0);
                    assert_eq!(ca.outstanding_buffers(), 0);
                    ca.server_name().to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), N, "{names:?}");
}

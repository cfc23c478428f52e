//! Server mode: a server on 127.0.0.1:0 (or a Unix socket) in a thread, clients on
//! connections of their own, the same scenarios as in process.

use certadm_emu::api::{self, Registration};
use certadm_emu::ca::record::digest as records_digest;
use certadm_emu::ca::ServiceState;
use certadm_emu::config::Config;
use certadm_emu::core::consts::*;
use certadm_emu::core::Call;
use certadm_emu::remote::client::{RemoteClient, RemoteError};
use certadm_emu::remote::protocol::{self, ListKind, Request};
use certadm_emu::remote::server::{RunningServer, Server, ServerOptions};
use certadm_emu::{EmulatedCa, Hcsbc, WideList, HRESULT};
use std::collections::BTreeMap;

use crate::common;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn start(config: Option<&str>) -> RunningServer {
    start_with(ServerOptions {
        config: config.map(|c| Config::from_json(c).expect("config")),
        ..Default::default()
    })
}

fn start_with(options: ServerOptions) -> RunningServer {
    Server::bind("127.0.0.1:0", options)
        .expect("bind 127.0.0.1:0")
        .spawn()
}

fn connect(s: &RunningServer) -> RemoteClient {
    RemoteClient::connect(s.addr(), None).expect("connect")
}

/// Polls `f` until it returns `Some` (rundown runs on the server's connection thread,
/// after it saw the connection close).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ----- one client, two transports ---------------------------------------------------------

type R<T> = Result<T, (HRESULT, String)>;

/// The certbcli calls a backup/restore client makes, in process or remote.
trait Certbcli {
    fn prepare(&self, server: &str, flags: u32) -> R<Hcsbc>;
    fn list(&self, kind: ListKind, h: Hcsbc) -> R<WideList>;
    fn open(&self, h: Hcsbc, name: &str) -> R<u64>;
    fn read(&self, h: Hcsbc, buf: &mut [u8]) -> R<usize>;
    fn close(&self, h: Hcsbc) -> R<()>;
    fn truncate(&self, h: Hcsbc) -> R<Vec<u32>>;
    fn end(&self, h: Hcsbc) -> R<()>;
    fn control(&self, server: &str, flags: u32) -> R<()>;
    fn restore_prepare(&self, server: &str, flags: u32) -> R<Hcsbc>;
    fn register(&self, h: Hcsbc, reg: &Registration) -> R<()>;
    fn complete(&self, h: Hcsbc) -> R<()>;
    fn restore_end(&self, h: Hcsbc) -> R<()>;
}

fn local<T>(r: certadm_emu::Result<T>) -> R<T> {
    r.map_err(|e| (e.hresult(), e.to_string()))
}
fn remote<T>(r: Result<T, RemoteError>) -> R<T> {
    r.map_err(|e| (e.hr, e.message))
}

struct InProcess;

impl Certbcli for InProcess {
    fn prepare(&self, server: &str, flags: u32) -> R<Hcsbc> {
        local(api::backup_prepare(server, 0, flags))
    }
    fn list(&self, kind: ListKind, h: Hcsbc) -> R<WideList> {
        local(match kind {
            ListKind::DatabaseNames => api::backup_get_database_names(h),
            ListKind::DynamicFiles => api::backup_get_dynamic_file_list(h),
            ListKind::BackupLogs => api::backup_get_backup_logs(h),
            ListKind::DatabaseLocations => api::restore_get_database_locations(h),
        })
    }
    fn open(&self, h: Hcsbc, name: &str) -> R<u64> {
        local(api::backup_open_file(h, name, 0))
    }
    fn read(&self, h: Hcsbc, buf: &mut [u8]) -> R<usize> {
        local(api::backup_read(h, buf))
    }
    fn close(&self, h: Hcsbc) -> R<()> {
        local(api::backup_close(h))
    }
    fn truncate(&self, h: Hcsbc) -> R<Vec<u32>> {
        local(api::backup_truncate_logs(h))
    }
    fn end(&self, h: Hcsbc) -> R<()> {
        local(api::backup_end(h))
    }
    fn control(&self, server: &str, flags: u32) -> R<()> {
        local(api::server_control(server, flags))
    }
    fn restore_prepare(&self, server: &str, flags: u32) -> R<Hcsbc> {
        local(api::restore_prepare(server, flags))
    }
    fn register(&self, h: Hcsbc, reg: &Registration) -> R<()> {
        local(api::restore_register(Some(h), reg, false))
    }
    fn complete(&self, h: Hcsbc) -> R<()> {
        local(api::restore_register_complete(Some(h), HRESULT::S_OK))
    }
    fn restore_end(&self, h: Hcsbc) -> R<()> {
        local(api::restore_end(h))
    }
}

impl Certbcli for RemoteClient {
    fn prepare(&self, server: &str, flags: u32) -> R<Hcsbc> {
        remote(self.backup_prepare(server, 0, flags))
    }
    fn list(&self, kind: ListKind, h: Hcsbc) -> R<WideList> {
        remote(RemoteClient::list(self, kind, h, false).map(|x| x.1))
    }
    fn open(&self, h: Hcsbc, name: &str) -> R<u64> {
        remote(self.backup_open_file(h, name, 0))
    }
    fn read(&self, h: Hcsbc, buf: &mut [u8]) -> R<usize> {
        remote(self.backup_read(h, buf))
    }
    fn close(&self, h: Hcsbc) -> R<()> {
        remote(self.backup_close(h))
    }
    fn truncate(&self, h: Hcsbc) -> R<Vec<u32>> {
        remote(self.backup_truncate_logs(h))
    }
    fn end(&self, h: Hcsbc) -> R<()> {
        remote(self.backup_end(h))
    }
    fn control(&self, server: &str, flags: u32) -> R<()> {
        remote(self.server_control(server, flags))
    }
    fn restore_prepare(&self, server: &str, flags: u32) -> R<Hcsbc> {
        remote(RemoteClient::restore_prepare(self, server, flags))
    }
    fn register(&self, h: Hcsbc, reg: &Registration) -> R<()> {
        remote(self.restore_register(Some(h), reg, false))
    }
    fn complete(&self, h: Hcsbc) -> R<()> {
        remote(self.restore_register_complete(Some(h), HRESULT::S_OK))
    }
    fn restore_end(&self, h: Hcsbc) -> R<()> {
        remote(RemoteClient::restore_end(self, h))
    }
}

fn base_name(unc: &str) -> String {
    unc.rsplit('\\').next().unwrap().to_string()
}

/// What a backup produced: file name -> content, the lists' base names, truncated gens.
#[derive(Debug, PartialEq, Eq)]
struct Backup {
    files: BTreeMap<String, Vec<u8>>,
    logs: Vec<String>,
    truncated: Vec<u32>,
}

/// A documented backup (spec §8.1) into `dir/DataBase` (certutil layout).
fn backup(c: &dyn Certbcli, server: &str, dir: &Path, full: bool, buf_size: usize) -> Backup {
    let db = dir.join(wszDBBACKUPSUBDIR);
    std::fs::create_dir_all(&db).unwrap();
    let flags = if full {
        CSBACKUP_TYPE_FULL
    } else {
        CSBACKUP_TYPE_LOGS_ONLY
    };
    let h = c.prepare(server, flags).expect("prepare");
    let mut names = Vec::new();
    if full {
        let locs = c.list(ListKind::DatabaseLocations, h).expect("locations");
        std::fs::write(db.join(wszDBBACKUPCERTBACKDAT), locs.to_bytes()).unwrap();
        names.extend(
            c.list(ListKind::DatabaseNames, h)
                .expect("names")
                .entries(true),
        );
    }
    let logs = c.list(ListKind::BackupLogs, h).expect("logs").entries(true);
    names.extend(logs.iter().cloned());
    let mut files = BTreeMap::new();
    let mut buf = vec![0u8; buf_size];
    for e in &names {
        let size = c.open(h, &e.path).expect("open");
        let mut data = Vec::new();
        loop {
            let n = c.read(h, &mut buf).expect("read");
            data.extend_from_slice(&buf[..n]);
            if n < buf.len() {
                break;
            }
        }
        c.close(h).expect("close");
        assert_eq!(data.len() as u64, size, "{}", e.path);
        std::fs::write(db.join(base_name(&e.path)), &data).unwrap();
        files.insert(base_name(&e.path), data);
    }
    let truncated = c.truncate(h).expect("truncate");
    let _ = c.list(ListKind::DynamicFiles, h).expect("dynamic files");
    c.end(h).expect("end");
    Backup {
        files,
        logs: logs.iter().map(|e| base_name(&e.path)).collect(),
        truncated,
    }
}

fn log_range(dir: &Path) -> (u32, u32) {
    let gens: Vec<u32> = std::fs::read_dir(dir.join(wszDBBACKUPSUBDIR))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            certadm_emu::ca::format::parse_log_file_name(&e.file_name().to_string_lossy())
        })
        .collect();
    (*gens.iter().min().unwrap(), *gens.iter().max().unwrap())
}

/// Stops the CA, copies a full and incremental sets into its directories (`map` gives
/// the host path of a Windows path) and registers each (spec §8.3).
fn restore(
    c: &dyn Certbcli,
    server: &str,
    sets: &[&Path],
    map: &dyn Fn(&str) -> PathBuf,
    complete: bool,
    end: bool,
) {
    let _ = c.control(server, CSCONTROL_SHUTDOWN);
    let locs = certadm_emu::client::read_locations(sets[0]).expect("certbkxp.dat");
    let copy = |src: PathBuf, dst: PathBuf| {
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(src, dst).unwrap();
    };
    copy(
        sets[0]
            .join(wszDBBACKUPSUBDIR)
            .join(base_name(&locs.database)),
        map(&locs.database),
    );
    for (i, dir) in sets.iter().enumerate() {
        for e in std::fs::read_dir(dir.join(wszDBBACKUPSUBDIR))
            .unwrap()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") {
                copy(e.path(), map(&format!("{}\\{name}", locs.log_dir)));
            }
        }
        let full = i == 0;
        let (low, high) = log_range(dir);
        let h = c
            .restore_prepare(server, if full { CSRESTORE_TYPE_FULL } else { 0 })
            .expect("restore prepare");
        let reg = locs.registration(full, low, high);
        c.register(h, &reg).expect("register");
        if complete {
            c.complete(h).expect("complete");
        }
        if end {
            c.restore_end(h).expect("restore end");
        }
    }
}

const CA_JSON: &str = r#"{"name": "Twin CA", "seed": 7, "records": 50, "log_capacity": 8}"#;

fn machine_json(name: &str) -> String {
    format!(r#"{{"name": "{name}", "ca": {CA_JSON}}}"#)
}

fn twin(name: &str) -> EmulatedCa {
    EmulatedCa::builder()
        .server_name(name)
        .ca_name("Twin CA")
        .seed(7)
        .records(50)
        .log_capacity(8)
        .build()
        .unwrap()
}

#[test]
fn full_incremental_and_restore_match_in_process() {
    let srv = start(Some(&format!(
        r#"{{"machines": [{}]}}"#,
        machine_json("RMTFULL")
    )));
    let c = connect(&srv);
    let m = "RMTFULL";
    let ca = twin("LOCFULL");
    let tmp = tempfile::tempdir().unwrap();
    let d = |s: &str| tmp.path().join(s);

    assert!(c.is_server_online(m).unwrap());
    assert!(api::is_server_online(ca.server_name()).unwrap());
    assert_eq!(c.issue(m, 20).unwrap(), ca.issue(20).unwrap());

    // A 3000-byte buffer: many reads per file, and the short read only at EOF.
    let r_full = backup(&c, m, &d("r-full"), true, 3000);
    let l_full = backup(&InProcess, ca.server_name(), &d("l-full"), true, 3000);
    assert_eq!(r_full, l_full, "full backups differ");
    assert!(r_full.files.keys().any(|k| k.ends_with(".edb")));

    c.issue(m, 15).unwrap();
    ca.issue(15).unwrap();
    c.revoke(m, 3).unwrap();
    ca.revoke(3).unwrap();
    let r_inc = backup(&c, m, &d("r-inc"), false, 1 << 16);
    let l_inc = backup(&InProcess, ca.server_name(), &d("l-inc"), false, 1 << 16);
    assert_eq!(r_inc, l_inc, "incremental backups differ");
    assert!(!r_inc.logs.is_empty());

    let (count, digest) = c.records(m).unwrap();
    assert_eq!(count as usize, ca.record_count());
    assert_eq!(digest, records_digest(&ca.records().collect::<Vec<_>>()));

    // Disk loss, restore, recovery: remote and in process.
    c.control(m, CSCONTROL_SHUTDOWN).unwrap();
    c.wipe_files(m).unwrap();
    InProcess
        .control(ca.server_name(), CSCONTROL_SHUTDOWN)
        .unwrap();
    ca.wipe_files().unwrap();
    let rmap = |p: &str| c.host_path(m, p).unwrap();
    restore(&c, m, &[&d("r-full"), &d("r-inc")], &rmap, true, true);
    let lmap = |p: &str| ca.host_path(p).unwrap();
    restore(
        &InProcess,
        ca.server_name(),
        &[&d("l-full"), &d("l-inc")],
        &lmap,
        true,
        true,
    );
    let r_rec = c.start(m).unwrap();
    let l_rec = ca.start().unwrap();
    assert!(r_rec.hard);
    assert_eq!(r_rec, l_rec);
    assert_eq!(
        c.records(m).unwrap(),
        (count, digest),
        "records after restore"
    );

    // The client kept the contract: the report is clean.
    let rep = c.report(m).unwrap();
    assert_eq!(rep.violations, [], "{rep:#}");
    assert!(rep.clean, "{rep:#}");
    let st = c.state(m).unwrap();
    assert_eq!(st.ca.as_ref().unwrap().service, ServiceState::Running);
    assert_eq!(st.sessions_open, 0);
    // The trace went through the pages and parses.
    let trace = c.trace(m).unwrap();
    assert!(trace.iter().any(|e| e.call == Call::BackupTruncateLogs));
    assert_eq!(trace.len(), ca.trace().len());
}

#[test]
fn a_handle_from_another_connection_gets_e_handle() {
    let srv = start(Some(&format!(
        r#"{{"machines": [{}]}}"#,
        machine_json("RMTHND")
    )));
    let a = connect(&srv);
    let b = connect(&srv);
    let h = a.backup_prepare("RMTHND", 0, CSBACKUP_TYPE_FULL).unwrap();
    for e in [
        b.backup_get_database_names(h).unwrap_err(),
        b.backup_open_file(h, "x", 0).unwrap_err(),
        b.read_chunk(h, 10).unwrap_err(),
        b.backup_end(h).unwrap_err(),
        b.restore_end(h).unwrap_err(),
    ] {
        assert_eq!(e.hr, HRESULT::E_HANDLE, "{e}");
        assert_eq!(e.hr.as_u32(), 0x8007_0006);
        assert!(e.message.contains("connection"), "{e}");
    }
    // Another connection is another client: a concurrent backup, not a sequencing error.
    let e = b
        .backup_prepare("RMTHND", 0, CSBACKUP_TYPE_FULL)
        .unwrap_err();
    assert_eq!(e.hr, HRESULT::JET_errBackupInProgress, "{e}");
    // The same connection is the same client.
    let e = a
        .backup_prepare("RMTHND", 0, CSBACKUP_TYPE_FULL)
        .unwrap_err();
    assert_eq!(e.hr, HRESULT::E_UNEXPECTED, "{e}");
    // The owner still holds a working handle.
    a.backup_get_database_names(h).unwrap();
    a.backup_end(h).unwrap();
    // Use after End on the owning connection reaches the CA: E_HANDLE, and CB09.
    assert_eq!(a.backup_end(h).unwrap_err().hr, HRESULT::E_HANDLE);
    let h2 = b.backup_prepare("RMTHND", 0, CSBACKUP_TYPE_FULL).unwrap();
    b.backup_end(h2).unwrap();
    let rep = a.report("RMTHND").unwrap();
    let rules: Vec<&str> = rep.violations.iter().map(|v| v.rule.as_str()).collect();
    assert!(rules.contains(&"CB09"), "{rep:#}");
}

#[test]
fn a_client_that_disconnects_mid_backup_is_run_down() {
    let srv = start(Some(&format!(
        r#"{{"machines": [{}]}}"#,
        machine_json("RMTDIS")
    )));
    let m = "RMTDIS";
    let observer = connect(&srv);
    {
        let a = connect(&srv);
        let h = a.backup_prepare(m, 0, CSBACKUP_TYPE_FULL).unwrap();
        let db = a.backup_get_database_names(h).unwrap().entries(true);
        a.backup_open_file(h, &db[0].path, 0).unwrap();
        assert_eq!(a.read_chunk(h, 1000).unwrap().len(), 1000);
        assert!(observer.state(m).unwrap().backup_in_progress);
        // `a` is dropped here, in the middle of the read loop.
    }
    let b = connect(&srv);
    let h = eventually("the rundown of the first client's backup", || {
        match b.backup_prepare(m, 0, CSBACKUP_TYPE_FULL) {
            Ok(h) => Some(h),
            Err(e) => {
                assert_eq!(e.hr, HRESULT::JET_errBackupInProgress, "{e}");
                None
            }
        }
    });
    b.backup_end(h).unwrap();
    let st = observer.state(m).unwrap();
    assert_eq!(st.sessions_open, 0, "{st:#}");
    // The rundown is not the client's End: the report still says it never ended.
    let rep = observer.report(m).unwrap();
    assert!(rep.violations.iter().any(|v| v.rule == "CB01"), "{rep:#}");
}

#[test]
fn a_registered_restore_survives_a_disconnect() {
    let srv = start(Some(&format!(
        r#"{{"machines": [{}, {}]}}"#,
        machine_json("RMTREG"),
        machine_json("RMTPEN")
    )));
    let tmp = tempfile::tempdir().unwrap();
    let observer = connect(&srv);

    // Registered and completed, then the connection drops without RestoreEnd.
    let m = "RMTREG";
    observer.issue(m, 10).unwrap();
    backup(&observer, m, tmp.path(), true, 1 << 16);
    let before = observer.records(m).unwrap();
    {
        let a = connect(&srv);
        a.control(m, CSCONTROL_SHUTDOWN).unwrap();
        a.wipe_files(m).unwrap();
        let map = |p: &str| a.host_path(m, p).unwrap();
        restore(&a, m, &[tmp.path()], &map, true, false);
        assert_eq!(observer.state(m).unwrap().sessions_open, 1);
    }
    eventually("the rundown of the restore context", || {
        (observer.state(m).unwrap().sessions_open == 0).then_some(())
    });
    let st = observer.state(m).unwrap();
    let marker = st.ca.as_ref().unwrap().restore_marker.unwrap();
    assert!(!marker.pending, "{st:#}");
    assert_eq!(marker.status, Some(HRESULT::S_OK), "{st:#}");
    let rec = observer.start(m).unwrap();
    assert!(rec.hard, "{rec:?}");
    assert_eq!(observer.records(m).unwrap(), before);

    // Registered without RegisterComplete: the pending marker stays too, and the CA
    // does not start: it waits, suspended for a database restore (field report F8).
    let m = "RMTPEN";
    {
        let a = connect(&srv);
        a.control(m, CSCONTROL_SHUTDOWN).unwrap();
        let h = a.restore_prepare(m, CSRESTORE_TYPE_FULL).unwrap();
        let db = observer.state(m).unwrap();
        assert_eq!(db.ca.unwrap().service, ServiceState::Stopped);
        a.restore_register(
            Some(h),
            &Registration {
                checkpoint_path: Some(r"C:\Windows\system32\CertLog".into()),
                log_path: Some(r"C:\Windows\system32\CertLog".into()),
                restore_map: vec![(
                    r"C:\Windows\system32\CertLog\Twin CA.edb".into(),
                    r"C:\Windows\system32\CertLog\Twin CA.edb".into(),
                )],
                backup_log_path: None,
                gen_low: 1,
                gen_high: 1,
            },
            false,
        )
        .unwrap();
    }
    eventually("the rundown of the pending restore context", || {
        (observer.state(m).unwrap().sessions_open == 0).then_some(())
    });
    assert!(
        observer
            .state(m)
            .unwrap()
            .ca
            .unwrap()
            .restore_marker
            .unwrap()
            .pending
    );
    let before = observer.records(m).unwrap();
    let e = observer.start(m).unwrap_err();
    assert_eq!(e.hr, HRESULT::CERTSRV_E_SERVER_SUSPENDED, "{e}");
    let service = |c: &RemoteClient| c.state(m).unwrap().ca.unwrap().service;
    assert_eq!(service(&observer), ServiceState::Suspended);
    assert!(!observer.is_server_online(m).unwrap());
    assert_eq!(
        observer
            .backup_prepare(m, 0, CSBACKUP_TYPE_FULL)
            .unwrap_err()
            .hr,
        HRESULT::CERTSRV_E_SERVER_SUSPENDED
    );
    assert_eq!(
        observer.issue(m, 1).unwrap_err().hr,
        HRESULT::CERTSRV_E_SERVER_SUSPENDED
    );
    // ESE's interlock answers a second registration; the context is gone, so only
    // clearing the marker (and a restart) lets the service run.
    let h = observer.restore_prepare(m, CSRESTORE_TYPE_FULL).unwrap();
    let reg = Registration {
        log_path: Some(r"C:\Windows\system32\CertLog".into()),
        restore_map: vec![(
            r"C:\Windows\system32\CertLog\Twin CA.edb".into(),
            r"C:\Windows\system32\CertLog\Twin CA.edb".into(),
        )],
        gen_low: 1,
        gen_high: 1,
        ..Default::default()
    };
    assert_eq!(
        observer
            .restore_register(Some(h), &reg, false)
            .unwrap_err()
            .hr,
        HRESULT::JET_errRestoreInProgress
    );
    observer.restore_end(h).unwrap();
    assert_eq!(
        observer.start(m).unwrap_err().hr,
        HRESULT::E_INVALIDARG,
        "already running (suspended)"
    );
    observer.clear_restore_marker(m).unwrap();
    assert_eq!(service(&observer), ServiceState::Suspended);
    observer.control(m, CSCONTROL_SHUTDOWN).unwrap();
    assert_eq!(service(&observer), ServiceState::Stopped);
    let rec = observer.start(m).unwrap();
    assert!(!rec.hard, "{rec:?}");
    assert_eq!(service(&observer), ServiceState::Running);
    assert!(observer.is_server_online(m).unwrap());
    assert_eq!(observer.records(m).unwrap(), before);
}

/// A restore whose last log is missing, through a server: the start's report (over the
/// wire) and the server's conformance report say what was lost.
#[test]
fn a_restore_that_lost_the_end_of_its_set_is_reported_through_a_server() {
    let srv = start(Some(&format!(
        r#"{{"machines": [{}]}}"#,
        machine_json("RMTLOSS")
    )));
    let c = connect(&srv);
    let m = "RMTLOSS";
    let tmp = tempfile::tempdir().unwrap();
    c.issue(m, 10).unwrap();
    backup(&c, m, tmp.path(), true, 1 << 16);
    // A log capacity of 8: one full generation, then 3 transactions in the log that the
    // incremental listing seals.
    c.issue(m, 11).unwrap();
    let inc = tmp.path().join("inc");
    backup(&c, m, &inc, false, 1 << 16);
    let (_, high) = log_range(&inc);
    let last = inc
        .join(wszDBBACKUPSUBDIR)
        .join(certadm_emu::ca::format::log_file_name(high));
    std::fs::remove_file(&last).unwrap();
    let (_, kept) = log_range(&inc);
    assert!(kept < high, "the incremental set held several logs");
    c.control(m, CSCONTROL_SHUTDOWN).unwrap();
    c.wipe_files(m).unwrap();
    let map = |p: &str| c.host_path(m, p).unwrap();
    restore(&c, m, &[tmp.path(), &inc], &map, true, true);
    let rec = c.start(m).unwrap();
    assert!(rec.hard);
    let loss = rec.data_loss.expect("the loss crosses the wire");
    assert_eq!(loss.missing_from, high);
    assert_eq!(loss.missing_through, Some(high));
    assert_eq!(loss.lost_transactions, Some(3));
    assert!(rec.backup_end.is_some(), "the full set's end was replayed");
    let rep = c.report(m).unwrap();
    let v: Vec<_> = rep.violations.iter().filter(|v| v.rule == "CR04").collect();
    assert_eq!(v.len(), 1, "{rep:#}");
    assert_eq!(v[0].detail, loss.to_string());
    assert!(!rep.clean);
}

#[test]
fn eight_concurrent_clients_each_with_their_own_ca() {
    let srv = start(None);
    let barrier = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        for i in 0..8u32 {
            let (srv, barrier) = (&srv, &barrier);
            s.spawn(move || {
                let c = connect(srv);
                let name = c
                    .create_machine_json(&format!(
                        r#"{{"name": "RMTCC{i}", "ca": {{"records": {}, "seed": {i}, "log_capacity": 4}}}}"#,
                        20 + i
                    ))
                    .unwrap()
                    .remove(0);
                barrier.wait();
                c.issue(&name, 5 + i).unwrap();
                let tmp = tempfile::tempdir().unwrap();
                let full = backup(&c, &name, tmp.path(), true, 4096);
                assert!(full.files.len() >= 2);
                c.issue(&name, 3).unwrap();
                let inc = backup(&c, &name, &tmp.path().join("inc"), false, 4096);
                assert!(!inc.logs.is_empty());
                assert_eq!(c.records(&name).unwrap().0, (20 + i + 5 + i + 3) as u64);
                let rep = c.report(&name).unwrap();
                assert_eq!(rep.violations, [], "{rep:#}");
                c.drop_machine(&name).unwrap();
                assert!(!c.machines().unwrap().contains(&name));
            });
        }
    });
}

/// A raw connection that completed the handshake.
fn raw(addr: &str, version: u16) -> (TcpStream, protocol::HelloReply) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hello = protocol::Hello {
        version,
        secret: None,
        client: "raw test".into(),
    };
    protocol::write_frame(&mut s, &protocol::encode_hello(&hello)).unwrap();
    let reply = protocol::read_frame(&mut s, protocol::MAX_HELLO_FRAME)
        .unwrap()
        .unwrap();
    (s, protocol::decode_hello_reply(&reply).unwrap())
}

/// True if the server closed the connection (EOF or reset) without sending anything.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn a_malformed_frame_closes_only_that_connection() {
    let srv = start(Some(&format!(
        r#"{{"machines": [{}]}}"#,
        machine_json("RMTBAD")
    )));
    let good = connect(&srv);
    let h = good
        .backup_prepare("RMTBAD", 0, CSBACKUP_TYPE_FULL)
        .unwrap();

    // An unknown operation.
    let (mut s, reply) = raw(srv.addr(), protocol::VERSION);
    assert_eq!(reply.hr, HRESULT::S_OK);
    protocol::write_frame(&mut s, &[0xFF, 0x7F]).unwrap();
    assert!(closed_by_server(&mut s));

    // A string count larger than the frame.
    let (mut s, _) = raw(srv.addr(), protocol::VERSION);
    protocol::write_frame(&mut s, &[0x01, 0, 0xFF, 0xFF, 0xFF, 0x7F, b'A', 0]).unwrap();
    assert!(closed_by_server(&mut s));

    // Trailing bytes after a valid request.
    let (mut s, _) = raw(srv.addr(), protocol::VERSION);
    let mut req = protocol::encode_request(&Request::ListMachines);
    req.push(0);
    protocol::write_frame(&mut s, &req).unwrap();
    assert!(closed_by_server(&mut s));

    // An oversized frame: closed before the payload is read.
    let (mut s, _) = raw(srv.addr(), protocol::VERSION);
    s.write_all(&(protocol::MAX_FRAME + 1).to_le_bytes())
        .unwrap();
    assert!(closed_by_server(&mut s));

    // Not the protocol at all (an HTTP request), before any handshake.
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed_by_server(&mut s));

    // Another protocol version is refused with a reason.
    let (mut s, reply) = raw(srv.addr(), 99);
    assert_eq!(reply.hr, HRESULT::ERROR_NOT_SUPPORTED);
    assert!(reply.message.contains("version"), "{}", reply.message);
    assert!(closed_by_server(&mut s));

    // The good connection and its session are untouched.
    assert!(good.is_server_online("RMTBAD").unwrap());
    good.backup_get_database_names(h).unwrap();
    good.backup_end(h).unwrap();
    assert!(connect(&srv).is_server_online("RMTBAD").unwrap());
}

#[test]
fn the_shared_secret_is_checked() {
    let srv = start_with(ServerOptions {
        secret: Some("s3cret".into()),
        ..Default::default()
    });
    let e = RemoteClient::connect(srv.addr(), None).unwrap_err();
    assert_eq!(e.hr, HRESULT::E_ACCESSDENIED, "{e}");
    let e = RemoteClient::connect(srv.addr(), Some("guess")).unwrap_err();
    assert_eq!(e.hr, HRESULT::E_ACCESSDENIED, "{e}");
    let c = RemoteClient::connect(srv.addr(), Some("s3cret")).unwrap();
    assert_eq!(c.machines().unwrap(), Vec::<String>::new());
    // Nothing answers on a port nobody listens on: the RPC error of an absent server.
    drop(srv);
    let e = RemoteClient::connect("127.0.0.1:1", None).unwrap_err();
    assert_eq!(e.hr, HRESULT::RPC_S_SERVER_UNAVAILABLE, "{e}");
}

#[test]
fn non_loopback_addresses_need_a_secret() {
    let e = Server::bind("0.0.0.0:0", ServerOptions::default()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
}

#[test]
fn tracked_lists_and_backup_free() {
    let srv = start(Some(&format!(
        r#"{{"machines": [{}]}}"#,
        machine_json("RMTFREE")
    )));
    let a = connect(&srv);
    let b = connect(&srv);
    let m = "RMTFREE";
    let h = a.backup_prepare(m, 0, CSBACKUP_TYPE_FULL).unwrap();
    let (token, list) = a.list(ListKind::DatabaseNames, h, true).unwrap();
    assert_ne!(token, 0);
    assert_eq!(list.entries(true)[0].kind, Some(CSBFT_CERTSERVER_DATABASE));
    let (t2, _) = a.list(ListKind::DatabaseLocations, h, true).unwrap();
    let (t0, _) = a.list(ListKind::DynamicFiles, h, false).unwrap();
    assert_eq!(t0, 0);
    assert_eq!(a.state(m).unwrap().outstanding_buffers, 2);
    // Another connection cannot free it.
    let e = b.backup_free(token).unwrap_err();
    assert_eq!(e.hr, HRESULT::E_INVALIDARG, "{e}");
    a.backup_end(h).unwrap();
    // Buffers stay valid after End (spec §5.11); NULL is a no-op.
    a.backup_free(token).unwrap();
    a.backup_free(0).unwrap();
    let e = a.backup_free(token).unwrap_err();
    assert_eq!(e.hr, HRESULT::E_INVALIDARG, "{e}");
    let st = a.state(m).unwrap();
    assert_eq!(st.outstanding_buffers, 1, "{st:#}");
    let rep = a.report(m).unwrap();
    assert!(rep.violations.iter().any(|v| v.rule == "CB04"));
    assert!(rep.leftovers[0].contains("never freed"), "{rep:#}");
    a.backup_free(t2).unwrap();
    assert_eq!(a.state(m).unwrap().outstanding_buffers, 0);
}

/// A server with one machine `name` whose `.edb` is `edb_size` (`"10M"`), and a client
/// with a full backup context that has the database open: (server, client, context,
/// size).
fn edb_open(name: &str, edb_size: &str) -> (RunningServer, RemoteClient, Hcsbc, u64) {
    let srv = start(Some(&format!(
        r#"{{"machines": [{{"name": "{name}", "ca": {{"records": 10, "edb_size": "{edb_size}"}}}}]}}"#
    )));
    let c = connect(&srv);
    let h = c.backup_prepare(name, 0, CSBACKUP_TYPE_FULL).unwrap();
    let db = c.backup_get_database_names(h).unwrap().entries(true);
    let size = c.backup_open_file(h, &db[0].path, 0).unwrap();
    (srv, c, h, size)
}

#[test]
fn reads_larger_than_one_frame_are_split() {
    let (_srv, c, h, size) = edb_open("RMTBIG", "10M");
    assert_eq!(size, 10 << 20);
    let mut buf = vec![0u8; 9 << 20];
    assert_eq!(
        c.backup_read(h, &mut buf).unwrap(),
        9 << 20,
        "a full buffer"
    );
    assert_eq!(
        c.backup_read(h, &mut buf).unwrap(),
        1 << 20,
        "the short read at EOF"
    );
    assert_eq!(c.backup_read(h, &mut buf).unwrap(), 0);
    // One remote read is at most MAX_READ.
    let e = c.read_chunk(h, protocol::MAX_READ + 1).unwrap_err();
    assert_eq!(e.hr, HRESULT::E_INVALIDARG);
    c.backup_close(h).unwrap();
    c.backup_end(h).unwrap();
}

/// docs/PROTOCOL.md §6.2: after a read answered with data, the connection polls for the
/// next request before it sleeps, while the client is prompt and the server may run on
/// more than one processor; nothing else is polled for.
#[test]
fn a_prompt_read_loop_is_polled_for() {
    let (srv, c, h, _) = edb_open("RMTPOLL", "4M");
    assert_eq!(srv.server().stats().read_polls, 0, "no read answered yet");
    let mut buf = vec![0u8; 64 << 10];
    let mut reads = 0u64;
    while c.backup_read(h, &mut buf).unwrap() == buf.len() {
        reads += 1;
    }
    assert_eq!(reads, 64);
    c.backup_close(h).unwrap();
    c.backup_end(h).unwrap();
    let s = srv.server().stats();
    if std::thread::available_parallelism().unwrap().get() > 1 {
        // The first read's next request is always polled for; each later one while the
        // client stays prompt. The read at EOF returns no data and arms nothing.
        assert!(
            (1..=reads).contains(&s.read_polls),
            "{} polls for {reads} reads",
            s.read_polls
        );
    } else {
        assert_eq!(s.read_polls, 0, "one processor: never polled");
    }
    assert!(s.read_polls_caught <= s.read_polls);
}

#[test]
fn control_calls_report_errors_with_hresults() {
    let srv = start(None);
    let c = connect(&srv);
    let e = c.issue("NOSUCH", 1).unwrap_err();
    assert_eq!(e.hr, HRESULT::ERROR_FILE_NOT_FOUND, "{e}");
    let e = c.create_machine_json("{not json").unwrap_err();
    assert_eq!(e.hr, HRESULT::E_INVALIDARG, "{e}");
    let name = c
        .create_machine(&certadm_emu::config::MachineConfig {
            name: "RMTCTL".into(),
            dns: None,
            root: None,
            ca: Some(Default::default()),
            identity: None,
            faults: None,
            strict: false,
        })
        .unwrap();
    let e = c.create_machine_json(r#"{"name": "rmtctl"}"#).unwrap_err();
    assert_eq!(e.hr, HRESULT::ERROR_ALREADY_EXISTS, "{e}");
    let e = c
        .set_faults_json(&name, r#"{"faults": [{"kind": "nope"}]}"#)
        .unwrap_err();
    assert_eq!(e.hr, HRESULT::E_INVALIDARG, "{e}");
    c.set_faults_json(
        &name,
        r#"{"faults": [{"kind": "fail", "function": "CertSrvIsServerOnlineW", "nth": 1, "hr": "RPC_S_CALL_FAILED"}]}"#,
    )
    .unwrap();
    let e = c.is_server_online(&name).unwrap_err();
    assert_eq!(e.hr, HRESULT::RPC_S_CALL_FAILED);
    assert!(e.message.contains("injected"), "{e}");
    assert!(c.is_server_online(&name).unwrap());
    // Identity: a remote caller is blocked by IF_DEFAULT, as on Windows.
    c.set_identity(
        &name,
        certadm_emu::machine::Identity {
            remote: true,
            ..Default::default()
        },
    )
    .unwrap();
    let e = c.backup_prepare(&name, 0, CSBACKUP_TYPE_FULL).unwrap_err();
    assert_eq!(e.hr, HRESULT::E_ACCESSDENIED, "{e}");
    c.set_interface_flags(&name, 0).unwrap();
    let h = c.backup_prepare(&name, 0, CSBACKUP_TYPE_FULL).unwrap();
    c.backup_end(h).unwrap();
    assert!(c.roll_log(&name).unwrap() > 0);
    c.crash(&name).unwrap();
    let rec = c.start(&name).unwrap();
    assert!(!rec.hard);
    let e = c.wipe_files(&name).unwrap_err();
    assert_eq!(e.hr, HRESULT::ERROR_SHARING_VIOLATION, "{e}");
    // A machine without a CA.
    c.create_machine_json(r#"{"name": "RMTNOCA", "ca": null}"#)
        .unwrap();
    let e = c.records("RMTNOCA").unwrap_err();
    assert_eq!(e.hr, HRESULT::ERROR_FILE_NOT_FOUND, "{e}");
    assert_eq!(c.state("RMTNOCA").unwrap().ca, None);
    assert!(c.is_server_online("RMTNOCA").is_err());
}

#[test]
fn shutdown_request_stops_the_server() {
    let srv = start(None);
    let other = connect(&srv);
    let c = connect(&srv);
    c.shutdown_server().unwrap();
    let t0 = Instant::now();
    srv.wait().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    let e = other.machines().unwrap_err();
    assert_eq!(e.hr, HRESULT::RPC_S_CALL_FAILED, "{e}");
    // A broken connection stays broken.
    assert_eq!(other.machines().unwrap_err().hr, HRESULT::RPC_S_CALL_FAILED);
}

#[test]
fn unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certadm.sock");
    let srv = Server::bind(
        &format!("unix:{}", path.display()),
        ServerOptions {
            config: Some(
                Config::from_json(&format!(r#"{{"machines": [{}]}}"#, machine_json("RMTUNIX")))
                    .unwrap(),
            ),
            ..Default::default()
        },
    )
    .unwrap()
    .spawn();
    assert_eq!(srv.addr(), format!("unix:{}", path.display()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let c = RemoteClient::connect(path.to_str().unwrap(), None).unwrap();
    assert!(c.is_server_online("RMTUNIX").unwrap());
    let tmp = tempfile::tempdir().unwrap();
    backup(&c, "RMTUNIX", tmp.path(), true, 1 << 16);
    // A second server on the same live socket is refused.
    let e = Server::bind(path.to_str().unwrap(), ServerOptions::default()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    srv.stop().unwrap();
    assert!(!path.exists(), "the socket file is removed");
}

#[test]
fn clients_and_servers_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<RemoteClient>();
    send_sync::<Server>();
    send_sync::<certadm_emu::remote::server::ShutdownHandle>();
    // A configuration error is reported by bind, before anything listens.
    let e = Server::bind(
        "127.0.0.1:0",
        ServerOptions {
            config: Some(
                Config::from_json(r#"{"machines": [{"name": "RMTX"}, {"name": "RMTX"}]}"#).unwrap(),
            ),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    // A size the configuration cannot read is refused when it is parsed, with its text.
    let e = Config::from_json(r#"{"machines": [{"name": "RMTX", "ca": {"edb_size": "1Q"}}]}"#)
        .unwrap_err();
    assert!(e.starts_with(r#"unknown size unit in "1Q""#), "{e}");
}

/// The `certadm-emu serve` binary: prints its address, serves the configured machine, and
/// exits 0 after a Shutdown request.
#[test]
fn serve_binary_prints_its_address_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"machines": [{"name": "SERVED", "ca": {"records": 5}}]}"#,
    )
    .unwrap();
    let (mut child, addr) = serve_binary(&cfg);
    let client = certadm_emu::remote::client::RemoteClient::connect(&addr, None).unwrap();
    assert!(client.is_server_online("SERVED").unwrap());
    assert_eq!(client.records("SERVED").unwrap().0, 5);
    client.shutdown_server().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// Starts the `serve` binary with `config` and returns it with its address.
fn serve_binary(config: &Path) -> (std::process::Child, String) {
    common::spawn_serve(|cmd| {
        cmd.arg("--config").arg(config);
    })
}

/// Killing the server (SIGKILL: nothing flushed at exit) and starting it again on the same
/// machine root resumes the same CA: every acknowledged transaction, the last full backup
/// (an incremental still chains onto it), and a CA that recovers cleanly.
#[test]
fn a_killed_server_restarted_on_the_same_root_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"machines": [{{"name": "DURABLE", "root": "{}", "ca": {{"records": 10, "log_capacity": 4}}}}]}}"#,
            root.display()
        ),
    )
    .unwrap();
    let (mut child, addr) = serve_binary(&cfg);
    let c = RemoteClient::connect(&addr, None).unwrap();
    c.issue("DURABLE", 7).unwrap();
    let b = backup(&c, "DURABLE", &dir.path().join("full"), true, 4096);
    let _ = b;
    c.issue("DURABLE", 3).unwrap();
    c.revoke("DURABLE", 2).unwrap();
    let before = c.records("DURABLE").unwrap();
    let state = c.state("DURABLE").unwrap();
    drop(c);
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, addr) = serve_binary(&cfg);
    let c = RemoteClient::connect(&addr, None).unwrap();
    assert_eq!(c.records("DURABLE").unwrap(), before);
    let again = c.state("DURABLE").unwrap();
    let (again, state) = (again.ca.unwrap(), state.ca.unwrap());
    assert_eq!(again.last_full_backup, state.last_full_backup);
    assert_eq!(again.service, ServiceState::Running);
    // The incremental chains onto the full backup taken before the kill.
    backup(&c, "DURABLE", &dir.path().join("inc"), false, 4096);
    c.shutdown_server().unwrap();
    assert!(child.wait().unwrap().success());
}

/// Clients killed at random points of their backups (processes, SIGKILL) leave no session
/// behind on the server and no CA file corrupted: the next backup works and a stop/start
/// recovers the same records.
#[test]
fn clients_killed_at_random_points_leave_nothing_behind() {
    if let Ok(addr) = std::env::var("CERTADM_EMU_STRESS_CLIENT") {
        // The child: back up in a loop until killed.
        let c = RemoteClient::connect(&addr, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for i in 0.. {
            c.issue("STRESS", 1).unwrap();
            let _ = backup(&c, "STRESS", &dir.path().join(i.to_string()), true, 512);
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"machines": [{"name": "STRESS", "ca": {"records": 50, "log_capacity": 3, "edb_size": 2000000}}]}"#,
    )
    .unwrap();
    let (mut server, addr) = serve_binary(&cfg);
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x5EED_u64;
    for round in 0..12 {
        let mut child = std::process::Command::new(&exe)
            .arg(common::test_path(
                module_path!(),
                "clients_killed_at_random_points_leave_nothing_behind",
            ))
            .args(["--exact", "--nocapture"])
            .env("CERTADM_EMU_STRESS_CLIENT", &addr)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // A pseudo-random point: 20..220 ms into the client's loop.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(20 + (seed >> 33) % 200));
        child.kill().unwrap();
        child.wait().unwrap();
        let c = RemoteClient::connect(&addr, None).unwrap();
        // The rundown ends what the killed client left open.
        eventually(&format!("round {round}: no session left"), || {
            let s = c.state("STRESS").unwrap();
            (s.sessions_open == 0 && !s.backup_in_progress).then_some(())
        });
    }
    let c = RemoteClient::connect(&addr, None).unwrap();
    backup(&c, "STRESS", &dir.path().join("after"), true, 4096);
    let before = c.records("STRESS").unwrap();
    c.stop("STRESS").unwrap();
    c.start("STRESS").unwrap();
    assert_eq!(c.records("STRESS").unwrap(), before, "no CA file corrupted");
    c.shutdown_server().unwrap();
    assert!(server.wait().unwrap().success());
}

/// SIGTERM (and SIGINT) stop the server cleanly: it writes its report and exits 0.
#[test]
fn sigterm_stops_the_server_with_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    let report = dir.path().join("report.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"machines": [{{"name": "TERMED"}}], "report": "{}"}}"#,
            report.display()
        ),
    )
    .unwrap();
    for signal in ["TERM", "INT"] {
        let _ = std::fs::remove_file(&report);
        let (mut child, addr) = serve_binary(&cfg);
        let c = RemoteClient::connect(&addr, None).unwrap();
        let h = c.backup_prepare("TERMED", 0, CSBACKUP_TYPE_FULL).unwrap();
        let _ = h; // left open: the report must say so
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        assert!(child.wait().unwrap().success(), "SIG{signal}");
        let text = std::fs::read_to_string(&report).expect("report written");
        assert!(text.contains("CB01"), "{text}");
    }
}

//! The Windows agent, unchanged, against certadm-emu on Linux.

use certadm_emu as _; // provides the Certadm.dll exports
use certadm_emu::EmulatedCa;

#[test]
fn full_backup_and_restore_round_trip() {
    let ca = EmulatedCa::builder()
        .records(200)
        .log_capacity(16)
        .build()
        .unwrap();
    ca.issue(50).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = windows_sys_agent::full_backup(ca.server_name(), dir.path()).unwrap();
    assert!(files
        .iter()
        .any(|f| f.extension().is_some_and(|e| e == "edb")));
    ca.verify().unwrap();
    let expected = ca.records().collect::<Vec<_>>();

    // Disk loss, then restore: copy the files to the mapped locations and register.
    ca.stop().unwrap();
    ca.wipe_files().unwrap();
    let mut gens = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let dest = if name.ends_with(".edb") {
            ca.database_path()
        } else {
            gens.push(u32::from_str_radix(&name[3..name.len() - 4], 16).unwrap());
            format!("{}\\{name}", ca.log_dir())
        };
        std::fs::copy(f, ca.host_path(&dest).unwrap()).unwrap();
    }
    windows_sys_agent::register_full_restore(
        ca.server_name(),
        &ca.database_path(),
        &ca.log_dir(),
        *gens.iter().min().unwrap(),
        *gens.iter().max().unwrap(),
    )
    .unwrap();
    ca.start().unwrap();
    assert_eq!(ca.records().collect::<Vec<_>>(), expected);
    ca.verify().unwrap();
}

#[test]
fn a_stopped_ca_gives_the_windows_error() {
    let ca = EmulatedCa::builder().build().unwrap();
    ca.stop().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = windows_sys_agent::full_backup(ca.server_name(), dir.path()).unwrap_err();
    assert_eq!(
        e,
        windows_sys_agent::Failure("CertSrvIsServerOnlineW", 0x800706BAu32 as i32)
    );
}

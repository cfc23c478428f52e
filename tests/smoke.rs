use certadm_emu::api;
use certadm_emu::core::consts::*;
use certadm_emu::EmulatedCa;

#[test]
fn full_backup_through_safe_api() {
    let ca = EmulatedCa::builder()
        .records(10)
        .log_capacity(4)
        .build()
        .unwrap();
    ca.issue(9).unwrap();
    let h = api::backup_prepare(ca.server_name(), 0, CSBACKUP_TYPE_FULL).unwrap();
    let locs = api::restore_get_database_locations(h).unwrap();
    println!("{:?}", locs);
    let db = api::backup_get_database_names(h).unwrap();
    for e in db.entries(true) {
        let size = api::backup_open_file(h, &e.path, 0).unwrap();
        let mut buf = vec![0u8; 4096];
        let mut total = 0;
        loop {
            let n = api::backup_read(h, &mut buf).unwrap();
            total += n;
            if n < buf.len() {
                break;
            }
        }
        assert_eq!(total as u64, size);
        api::backup_close(h).unwrap();
    }
    let logs = api::backup_get_backup_logs(h).unwrap();
    println!("{:?}", logs);
    for e in logs.entries(true) {
        api::backup_open_file(h, &e.path, 0).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        while api::backup_read(h, &mut buf).unwrap() == buf.len() {}
        api::backup_close(h).unwrap();
    }
    let deleted = api::backup_truncate_logs(h).unwrap();
    println!("deleted {deleted:?}, on disk {:?}", ca.log_generations());
    api::backup_end(h).unwrap();
    assert!(ca.last_full_backup().is_some());
    ca.stop().unwrap();
    ca.start().unwrap();
    assert_eq!(ca.record_count(), 19);
    ca.crash();
    let r = ca.start().unwrap();
    println!("{r:?}");
    assert_eq!(ca.record_count(), 19);
}

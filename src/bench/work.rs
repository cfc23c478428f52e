//! What the benchmarks time, written once: the emulator's side of each figure (driven
//! through the ABI by way of [`crate::abi::call`]) and the baseline it is judged against.
//! `certadm-emu bench` times these with its own rounds ([`super::run`]); the criterion
//! benches (`benches/backup.rs`) time the same functions.

use crate::abi::call::{self, WStr};
use crate::core::consts::CSBACKUP_TYPE_FULL;
use crate::session::Hcsbc;
use parking_lot::Mutex;
use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::path::Path;

/// The read size of the Microsoft sample and of certutil (512 KiB).
pub const READ_SIZE: usize = 512 << 10;

/// A failed step, with the export's HRESULT and message where there is one.
pub type Result<T> = std::result::Result<T, String>;

#[inline]
fn abi<T>(r: call::Result<T>) -> Result<T> {
    r.map_err(|e| e.to_string())
}

/// Figure 1: one `CertSrvBackupPrepareW` + `CertSrvBackupEnd` pair through the ABI.
pub fn prepare_end(server: &WStr, flags: u32) -> Result<()> {
    let h = abi(call::backup_prepare(black_box(server), 0, flags))?;
    abi(call::backup_end(black_box(h)))
}

/// The baseline table of figure 1: a `slab::Slab` (a `Vec` of entries with an embedded
/// free list) under a `parking_lot::Mutex`, the cheapest shared handle table there is.
pub type Baseline = Mutex<slab::Slab<u64>>;

/// Figure 1's baseline: one insert + remove pair in a [`Baseline`], each under its own
/// lock (as Prepare and End each take the host's lock).
#[inline]
pub fn baseline_pair(table: &Baseline, v: u64) {
    let k = table.lock().insert(black_box(v));
    black_box(table.lock().remove(black_box(k)));
}

/// A full-backup session with the `.edb` open (figures 2, 3, 4 and 6).
#[derive(Debug)]
pub struct OpenEdb {
    h: Hcsbc,
    size: u64,
}

impl OpenEdb {
    /// Prepares a full backup on `server`, lists the database and opens it with a 512 KiB
    /// read hint. On failure the session is ended.
    pub fn new(server: &WStr) -> Result<OpenEdb> {
        let h = abi(call::backup_prepare(server, 0, CSBACKUP_TYPE_FULL))?;
        match Self::open(h) {
            Ok(size) => Ok(OpenEdb { h, size }),
            Err(e) => {
                let _ = call::backup_end(h);
                Err(e)
            }
        }
    }

    fn open(h: Hcsbc) -> Result<u64> {
        const CALL: &str = crate::core::Call::BackupGetDatabaseNames.name();
        let list = abi(call::backup_get_database_names(h))?;
        let entries = list
            .entries(true)
            .ok_or(format!("{CALL} returned a malformed list"))?;
        let first = entries
            .first()
            .ok_or(format!("{CALL} returned an empty list"))?;
        abi(call::backup_open_file(
            h,
            &WStr::new(&first.path),
            READ_SIZE as u32,
        ))
    }

    /// The size `CertSrvBackupOpenFileW` reported.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// One `CertSrvBackupRead` into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        abi(call::backup_read(self.h, buf))
    }

    /// Reads up to `limit` bytes (to end of file at most), discarding them; returns the count.
    pub fn read_up_to(&mut self, buf: &mut [u8], limit: u64) -> Result<u64> {
        let mut done = 0u64;
        while done < limit {
            let n = self.read(buf)?;
            black_box(&buf[..n]);
            done += n as u64;
            if n < buf.len() {
                break;
            }
        }
        Ok(done)
    }

    /// `CertSrvBackupClose` and `CertSrvBackupEnd`.
    pub fn finish(self) -> Result<()> {
        abi(call::backup_close(self.h))?;
        abi(call::backup_end(self.h))
    }
}

impl OpenEdb {
    /// The rest of a complete full backup (figures 11 and 12): Close the database,
    /// GetBackupLogs, each log opened, read to its end and closed, then End. Returns the
    /// log bytes read and the seconds End took.
    pub fn finish_with_logs(self, buf: &mut [u8]) -> Result<(u64, f64)> {
        const CALL: &str = crate::core::Call::BackupGetBackupLogs.name();
        abi(call::backup_close(self.h))?;
        let list = abi(call::backup_get_backup_logs(self.h))?;
        let names: Vec<String> = list
            .entries(true)
            .ok_or(format!("{CALL} returned a malformed list"))?
            .into_iter()
            .map(|e| e.path)
            .collect();
        drop(list);
        let mut bytes = 0u64;
        for name in names {
            abi(call::backup_open_file(
                self.h,
                &WStr::new(&name),
                READ_SIZE as u32,
            ))?;
            loop {
                let n = abi(call::backup_read(self.h, buf))?;
                bytes += n as u64;
                if n < buf.len() {
                    break;
                }
            }
            abi(call::backup_close(self.h))?;
        }
        let t = std::time::Instant::now();
        abi(call::backup_end(self.h))?;
        Ok((bytes, t.elapsed().as_secs_f64()))
    }
}

/// Figure 2: a whole full-backup session (Prepare, GetDatabaseNames, OpenFile, Read to
/// end of file in `buf`-sized reads, Close, End); returns the bytes read.
pub fn full_backup(server: &WStr, buf: &mut [u8]) -> Result<u64> {
    let mut s = OpenEdb::new(server)?;
    let got = s.read_up_to(buf, u64::MAX)?;
    s.finish()?;
    Ok(got)
}

/// Writes figure 2's baseline file (generated, incompressible bytes) and reads it once so
/// that it is in the page cache.
pub fn write_real_file(path: &Path, size: u64) -> Result<()> {
    let mut f = File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    let mut chunk = vec![0u8; 8 << 20];
    let mut done = 0u64;
    while done < size {
        let n = (size - done).min(chunk.len() as u64) as usize;
        crate::ca::content::fill(0xF11E, done, &mut chunk[..n]);
        f.write_all(&chunk[..n])
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        done += n as u64;
    }
    f.sync_all().ok();
    drop(f);
    let mut buf = vec![0u8; READ_SIZE];
    read_real_file(path, &mut buf)?;
    Ok(())
}

/// Figure 2's baseline: `File::read` of a whole file in `buf`-sized reads; returns the
/// bytes read.
pub fn read_real_file(path: &Path, buf: &mut [u8]) -> Result<u64> {
    let mut f = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut done = 0u64;
    loop {
        let n = f
            .read(buf)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if n == 0 {
            return Ok(done);
        }
        black_box(&buf[..n]);
        done += n as u64;
    }
}

/// Figure 3's baseline: one `copy_from_slice` of `src` into `dst` (same lengths).
#[inline]
pub fn memcpy(dst: &mut [u8], src: &[u8]) {
    dst.copy_from_slice(black_box(src));
    black_box(dst);
}

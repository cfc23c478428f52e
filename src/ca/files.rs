//! Host-file helpers for the CA: positioned reads and writes of the page file and its
//! journal, small files rewritten in place, and the reader that serves a file (with the
//! generated padding of a virtual `.edb`) to `CertSrvBackupRead`.
//!
//! Every host file of `src/ca` is opened, created, renamed, listed or removed through
//! `machine::fs` ([`Dir`], [`crate::machine::Beneath`]): beneath the machine root, without
//! following a link, the refusal made by the operation itself. What is left here works on
//! descriptors already opened that way.

use super::content;
use super::format::{EdbImage, EDB_PREFIX};
use crate::core::outbuf::OutByte;
use crate::core::{Error, Result};
use crate::machine::fs::Dir;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The length of an open file.
pub(crate) fn len(f: &File, path: &Path) -> Result<u64> {
    f.metadata()
        .map(|m| m.len())
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub(crate) fn read_at(f: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    f.read_exact_at(buf, offset)
        .map_err(|e| Error::io(format!("reading {} at {offset}", path.display()), e))
}

/// Writes all of `buf` at `offset`.
pub(crate) fn write_at(f: &File, path: &Path, buf: &[u8], offset: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    f.write_all_at(buf, offset)
        .map_err(|e| Error::io(format!("writing {} at {offset}", path.display()), e))
}

/// Cuts or extends an open file to `len` bytes.
pub(crate) fn set_len(f: &File, path: &Path, len: u64) -> Result<()> {
    f.set_len(len)
        .map_err(|e| Error::io(format!("resizing {}", path.display()), e))
}

/// Writes `bytes` over the start of the entry `name` of `dir` (created if missing) and
/// cuts it to their length, without a temporary file: for a small file rewritten often
/// whose torn state nothing reads (`edb.chk`). Returns the file, still open for writing.
pub(crate) fn overwrite(dir: &Dir, name: &str, bytes: &[u8]) -> Result<File> {
    let path = dir.entry_host(name);
    let f = dir.open_or_create(name)?;
    write_at(&f, &path, bytes, 0)?;
    if len(&f, &path)? != bytes.len() as u64 {
        set_len(&f, &path, bytes.len() as u64)?;
    }
    Ok(f)
}

/// Rewrites a small text file in place with one write at offset 0, padded with spaces to
/// its old length, so that it is never absent and never shorter than before (a JSON
/// document stays valid: trailing spaces are whitespace). Without a temporary file and a
/// rename over the old one, which on ext4 forces the new data out at once.
pub(crate) fn overwrite_padded(dir: &Dir, name: &str, text: &[u8]) -> Result<()> {
    let path = dir.entry_host(name);
    let f = dir.open_or_create(name)?;
    let old = len(&f, &path)? as usize;
    let mut buf = text.to_vec();
    if buf.len() < old {
        buf.resize(old, b' ');
    }
    write_at(&f, &path, &buf, 0)
}

/// A file opened for a backup read: sequential, size fixed when it was opened.
#[derive(Debug)]
pub(crate) struct FileReader {
    file: File,
    /// Bytes served from the host file; beyond them the padding is generated.
    stored_len: u64,
    size: u64,
    pad_seed: u64,
    offset: u64,
}

impl FileReader {
    /// Opens a plain file (a log), already opened beneath the machine root: its size is
    /// its length now.
    pub(crate) fn open_plain(file: File, path: &Path) -> Result<FileReader> {
        let size = len(&file, path)?;
        Ok(FileReader {
            file,
            stored_len: size,
            size,
            pad_seed: 0,
            offset: 0,
        })
    }

    /// Opens a `.edb`: its size is the logical size in its header; whatever the host
    /// file does not hold is generated from the padding seed.
    pub(crate) fn open_edb(file: File, path: &Path) -> Result<FileReader> {
        let mut r = Self::open_plain(file, path)?;
        let mut prefix = [0u8; EDB_PREFIX];
        r.file
            .read_exact(&mut prefix)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        r.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(format!("seeking {}", path.display()), e))?;
        let (_compact, logical, seed) = EdbImage::prefix(&prefix).map_err(|e| {
            Error::io(
                format!("{} is not a valid database", path.display()),
                std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            )
        })?;
        r.size = logical;
        r.stored_len = r.stored_len.min(logical);
        r.pad_seed = seed;
        Ok(r)
    }

    /// The size reported by `CertSrvBackupOpenFileW`.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Bytes delivered so far.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// True once every byte was delivered.
    pub(crate) fn at_eof(&self) -> bool {
        self.offset >= self.size
    }

    /// Fills `buf` as far as the file goes (short only at end of file). `buf` may be
    /// uninitialised (the caller's memory behind `CertSrvBackupRead`): it is only written.
    pub(crate) fn read<B: OutByte>(&mut self, buf: &mut [B]) -> std::io::Result<usize> {
        let want = (buf.len() as u64).min(self.size - self.offset) as usize;
        let mut done = 0usize;
        while done < want && self.offset < self.stored_len {
            let n = ((want - done) as u64).min(self.stored_len - self.offset) as usize;
            let got = B::read_fd(&self.file, &mut buf[done..done + n])?;
            if got == 0 {
                // The host file shrank under us: serve the generated bytes from here.
                self.stored_len = self.offset;
                break;
            }
            done += got;
            self.offset += got as u64;
        }
        if done < want {
            content::fill(self.pad_seed, self.offset, &mut buf[done..want]);
            self.offset += (want - done) as u64;
        }
        Ok(want)
    }
}

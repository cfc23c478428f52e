//! The page file behind the `.edb` (`docs/FILE-FORMATS.md` §4): records in fixed slots
//! of 8 KiB pages, a bounded page cache, and the page journal that makes a checkpoint
//! atomic.
//!
//! * Request ids are dense (1, 2, 3 ...), so the record of id *i* is slot
//!   (*i* − 1) mod 85 of data page (*i* − 1) / 85 + 1: the index is arithmetic.
//! * Changed pages stay in the cache ([`CACHE_PAGES`] pages, 4 MiB). A dirty page the
//!   cache must evict is appended to the journal `edb.jrn`, never written into the `.edb`:
//!   the `.edb` holds exactly its checkpoint's state until the next checkpoint.
//! * A checkpoint appends the remaining dirty pages and the new header page to the
//!   journal and seals it with a commit record (one write), then copies those pages into
//!   the `.edb`; the next checkpoint writes its journal over this one from the start,
//!   under a new epoch (no file is created or deleted per checkpoint). A crash before the
//!   commit record leaves the `.edb` as it was (the logs replay); a crash after it is
//!   finished at the next start from the journal ([`finish_interrupted_checkpoint`]). So
//!   a torn page write cannot lose anything. A clean stop deletes the journal.
//! * While a full backup holds the database still, no checkpoint runs: the `.edb` does
//!   not change under the reader, and the checkpoint held back costs the pages changed.

use super::files;
use super::format::{
    self, check_page, data_pages, decode_slot_of, encode_slot, records_in_page, revoked_in_page,
    seal_page, slot_of, EdbHeader, FormatError, Position, PAGE_HEAD, PAGE_SIZE, SLOT_SIZE,
};
use super::record::{Record, Status, Txn};
use crate::core::{Error, RecoveryFailure, Result};
use crate::machine::fs::{file_metadata, is_link_refusal, Dir, Meta};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Pages the cache holds (4 MiB of 8 KiB pages).
pub(crate) const CACHE_PAGES: usize = 512;
/// The journal's magic.
const JRN_MAGIC: &[u8; 8] = b"CAEMUJRN";
const JRN_VERSION: u16 = 1;
/// Journal header: magic, version, epoch, base signature, base checkpoint, CRC.
const JRN_HEAD: usize = 8 + 2 + 8 + 8 + 8 + 4;
/// A journal frame: page number and page.
const JRN_FRAME: usize = 4 + PAGE_SIZE;
/// The marker of the commit record (in the place of a page number).
const COMMIT_MARK: u32 = 0xFFFF_FFFF;
/// Bytes read at a time when a whole file is verified or copied.
const CHUNK: usize = 1 << 20;
/// At most this many threads verify a database's pages at a start.
const VERIFY_THREADS: usize = 2;

fn corrupt(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::Recovery {
        failure: RecoveryFailure::DatabaseCorrupted,
        why: format!("{}: {why}", path.display()),
    }
}

/// A test hook: the checkpoint "crashes" (fails, leaving the files as a killed process
/// would) at its `after`-th write; with `tear`, that write stores only half its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CrashHook {
    /// Writes that complete before the crash.
    pub after: u32,
    /// The write at the crash is torn (half of it reaches the file).
    pub tear: bool,
}

/// The writes of checkpoints and spills, counted for the [`CrashHook`] (tests).
#[derive(Debug, Default)]
struct Writes {
    hook: Option<CrashHook>,
    done: u32,
}

impl Writes {
    /// Writes all of `buf` at `offset` of `f` (host path `p`), or fails as the armed hook says.
    fn write(&mut self, f: &File, p: &Path, buf: &[u8], offset: u64) -> Result<()> {
        if let Some(h) = self.hook {
            if self.done >= h.after {
                if h.tear {
                    files::write_at(f, p, &buf[..buf.len() / 2], offset)?;
                }
                self.hook = None;
                return Err(Error::io(
                    format!("writing {}", p.display()),
                    std::io::Error::other("injected crash (test hook)"),
                ));
            }
            self.done += 1;
        }
        files::write_at(f, p, buf, offset)
    }
}

struct Frame {
    pgno: u32,
    page: Box<[u8]>,
    dirty: bool,
    referenced: bool,
}

/// The journal of changed pages not yet in the `.edb` (see the module doc).
struct Journal {
    /// Its directory (the CA's `DBDirectory`), held open beneath the machine root.
    dir: Dir,
    /// Its entry in `dir`.
    name: String,
    /// Its host path (messages).
    path: PathBuf,
    file: Option<File>,
    /// Bytes of the current epoch (0: no epoch started since the last checkpoint).
    len: u64,
    /// The current epoch's number (frames of older epochs may follow its end).
    epoch: u64,
    hasher: crc32fast::Hasher,
    /// Page number → offset of its latest image in the journal.
    index: BTreeMap<u32, u64>,
    /// The bytes of the last append (kept between appends).
    buf: Vec<u8>,
}

/// The open page file of a running CA (or of a recovery in progress).
pub(crate) struct Pager {
    /// The `.edb`'s host path (messages: the file is `file`, opened beneath the root).
    path: PathBuf,
    file: File,
    /// The header page as the `.edb` holds it now.
    disk: EdbHeader,
    /// Records in the database now (request ids 1 ..= records).
    records: u32,
    /// Revoked records now.
    revoked: u32,
    frames: Vec<Frame>,
    map: HashMap<u32, usize>,
    /// The page and frame [`Pager::frame`] returned last (transactions come in runs on
    /// one page: the map is not asked again).
    last: Option<(u32, usize)>,
    /// The buffer a record is encoded in before it is copied into its slot.
    scratch: Vec<u8>,
    hand: usize,
    journal: Journal,
    writes: Writes,
}

impl std::fmt::Debug for Pager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pager")
            .field("path", &self.path)
            .field("records", &self.records)
            .field("cached", &self.frames.len())
            .field("journaled", &self.journal.index.len())
            .finish()
    }
}

impl Journal {
    fn new(dir: Dir, name: &str) -> Journal {
        Journal {
            name: name.to_string(),
            path: dir.entry_host(name),
            dir,
            file: None,
            len: 0,
            epoch: 0,
            hasher: crc32fast::Hasher::new(),
            index: BTreeMap::new(),
            buf: Vec::new(),
        }
    }

    fn head(epoch: u64, base: &EdbHeader) -> Vec<u8> {
        let mut v = Vec::with_capacity(JRN_HEAD);
        v.extend_from_slice(JRN_MAGIC);
        v.extend_from_slice(&JRN_VERSION.to_le_bytes());
        v.extend_from_slice(&epoch.to_le_bytes());
        v.extend_from_slice(&base.signature.to_le_bytes());
        v.extend_from_slice(&base.checkpoint.generation.to_le_bytes());
        v.extend_from_slice(&base.checkpoint.pos.to_le_bytes());
        let crc = crc32fast::hash(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }
}

/// What a journal on disk holds.
struct JournalScan {
    base_signature: u64,
    base: Position,
    /// Page number → offset of its latest image; `None` if no commit record seals it.
    committed: Option<BTreeMap<u32, u64>>,
}

/// Opens an entry for reading: `None` if it cannot be opened, except that a link is
/// refused.
fn open_if_there(dir: &Dir, name: &str) -> Result<Option<File>> {
    match dir.open(name) {
        Ok(f) => Ok(Some(f)),
        Err(e) if is_link_refusal(&e) => Err(e),
        Err(_) => Ok(None),
    }
}

/// Reads the journal `name` of `dir`; `None` if it has no valid header (nothing was
/// journaled).
fn scan_journal(dir: &Dir, name: &str) -> Result<Option<JournalScan>> {
    let path = &dir.entry_host(name);
    let Some(f) = open_if_there(dir, name)? else {
        return Ok(None);
    };
    let len = files::len(&f, path)?;
    if len < JRN_HEAD as u64 {
        return Ok(None);
    }
    let mut head = [0u8; JRN_HEAD];
    files::read_at(&f, path, &mut head, 0)?;
    let crc = u32::from_le_bytes(head[JRN_HEAD - 4..].try_into().unwrap());
    if &head[..8] != JRN_MAGIC
        || u16::from_le_bytes([head[8], head[9]]) != JRN_VERSION
        || crc32fast::hash(&head[..JRN_HEAD - 4]) != crc
    {
        return Ok(None);
    }
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let base_signature = u64::from_le_bytes(head[18..26].try_into().unwrap());
    let base = Position {
        generation: u32_at(&head, 26),
        pos: u32_at(&head, 30),
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head);
    let mut index = BTreeMap::new();
    let mut off = JRN_HEAD as u64;
    let mut frame = vec![0u8; JRN_FRAME];
    let mut committed = None;
    while off + 4 <= len {
        let mut mark = [0u8; 4];
        files::read_at(&f, path, &mut mark, off)?;
        let pgno = u32::from_le_bytes(mark);
        if pgno == COMMIT_MARK {
            if off + 20 > len {
                break;
            }
            let mut rec = [0u8; 20];
            files::read_at(&f, path, &mut rec, off)?;
            hasher.update(&rec[..16]);
            let frames = (off - JRN_HEAD as u64) / JRN_FRAME as u64;
            // A commit record of an older epoch (after a shorter journal of this one)
            // does not match this epoch's running CRC.
            if u32_at(&rec, 4) as u64 == frames && hasher.clone().finalize() == u32_at(&rec, 16) {
                committed = Some(std::mem::take(&mut index));
            }
            break;
        }
        if off + JRN_FRAME as u64 > len {
            break;
        }
        files::read_at(&f, path, &mut frame, off)?;
        hasher.update(&frame);
        index.insert(pgno, off + 4);
        off += JRN_FRAME as u64;
    }
    Ok(Some(JournalScan {
        base_signature,
        base,
        committed,
    }))
}

/// Finishes a checkpoint that a crash interrupted after its commit record: copies the
/// journal's pages into the `.edb` (if the journal belongs to it), then deletes the
/// journal. An uncommitted or foreign journal is deleted: the logs replay what it held.
/// Returns true if pages were applied.
pub(crate) fn finish_interrupted_checkpoint(
    dir: &Dir,
    db_name: &str,
    journal_name: &str,
) -> Result<bool> {
    let (db, journal) = (&dir.entry_host(db_name), &dir.entry_host(journal_name));
    let scan = scan_journal(dir, journal_name)?;
    let Some(JournalScan {
        base_signature,
        base,
        committed: Some(index),
    }) = scan
    else {
        dir.remove_if_exists(journal_name)?;
        return Ok(false);
    };
    let Some(&hoff) = index.get(&0) else {
        dir.remove_if_exists(journal_name)?;
        return Ok(false);
    };
    let jf = dir.open(journal_name)?;
    let mut page = vec![0u8; PAGE_SIZE];
    files::read_at(&jf, journal, &mut page, hoff)?;
    let target = EdbHeader::decode(&page).map_err(|e| corrupt(journal, e))?;
    // The .edb must be the database the journal started from (or already carry its
    // target): a journal left by a database that a restore replaced is not applied.
    let applies = match open_if_there(dir, db_name)? {
        None => false,
        Some(f) => {
            let mut hp = vec![0u8; PAGE_SIZE];
            match files::read_at(&f, db, &mut hp, 0)
                .ok()
                .and_then(|_| EdbHeader::decode(&hp).ok())
            {
                // A torn header page: the journal holds its replacement.
                None => true,
                Some(h) => {
                    (h.signature == base_signature && h.checkpoint == base)
                        || (h.signature == target.signature && h.checkpoint == target.checkpoint)
                }
            }
        }
    };
    if applies {
        let f = dir.open_rw(db_name)?;
        for (&pgno, &off) in index.iter().filter(|(p, _)| **p != 0) {
            files::read_at(&jf, journal, &mut page, off)?;
            files::write_at(&f, db, &page, pgno as u64 * PAGE_SIZE as u64)?;
        }
        files::read_at(&jf, journal, &mut page, hoff)?;
        files::write_at(&f, db, &page, 0)?;
    }
    drop(jf);
    dir.remove_if_exists(journal_name)?;
    Ok(applies)
}

/// Opens the `.edb` `name` of `dir` for reading and writing, verifies it ([`verify`])
/// and opens its pager on the same descriptor; the journal is the entry `journal_name`
/// of `journal_dir`. A link is refused; a file that cannot be opened is missing.
pub(crate) fn open_verified(
    dir: &Dir,
    name: &str,
    journal_dir: Dir,
    journal_name: &str,
) -> Result<Pager> {
    let path = dir.entry_host(name);
    let f = match dir.open_rw(name) {
        Ok(f) => f,
        Err(e) if is_link_refusal(&e) => return Err(e),
        Err(_) => {
            return Err(Error::Recovery {
                failure: RecoveryFailure::DatabaseCorrupted,
                why: format!("the database file {} is missing", path.display()),
            })
        }
    };
    let header = verify(&f, &path)?;
    Ok(Pager::with_file(
        path,
        f,
        Journal::new(journal_dir, journal_name),
        header,
    ))
}

/// Reads and verifies a whole `.edb` in [`CHUNK`]-sized reads (O(1) memory): the header
/// page, every data page's CRC and head, every slot's length and status ([`revoked_in_page`]: no
/// other per-record work), the revoked count, the file length
/// (compact or logical) and, if the file holds it, every padding byte.
pub(crate) fn verify(f: &File, path: &Path) -> Result<EdbHeader> {
    let len = files::len(f, path)?;
    let mut head = vec![0u8; PAGE_SIZE];
    if len < format::EDB_PREFIX as u64 {
        return Err(corrupt(path, FormatError::Truncated));
    }
    let n = (len.min(PAGE_SIZE as u64)) as usize;
    files::read_at(f, path, &mut head[..n], 0)?;
    let (compact, logical, seed) =
        format::EdbImage::prefix(&head[..n]).map_err(|e| corrupt(path, e))?;
    if len != compact && len != logical {
        return Err(corrupt(
            path,
            format!(
                "the file is {len} bytes; a database of this header is {compact} (compact) or {logical} bytes"
            ),
        ));
    }
    let header = EdbHeader::decode(&head).map_err(|e| corrupt(path, e))?;
    let records = header.records();
    // The data pages, split among up to VERIFY_THREADS threads (each with its own buffer).
    let pages = data_pages(records);
    let threads = if pages < 1024 {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(VERIFY_THREADS))
    } as u32;
    let per = pages.div_ceil(threads).max(1);
    let check_range = |first: u32, last: u32| -> Result<u32> {
        let mut buf = vec![0u8; CHUNK];
        let mut revoked = 0u32;
        let mut pgno = first;
        while pgno <= last {
            let n = ((last - pgno + 1) as usize).min(CHUNK / PAGE_SIZE);
            let bytes = &mut buf[..n * PAGE_SIZE];
            files::read_at(f, path, bytes, pgno as u64 * PAGE_SIZE as u64)?;
            for (i, page) in bytes.chunks_exact(PAGE_SIZE).enumerate() {
                let p = pgno + i as u32;
                revoked += check_page(page, p, records, false)
                    .and_then(|_| revoked_in_page(page, p, records))
                    .map_err(|e| corrupt(path, format!("page {p}: {e}")))?;
            }
            pgno += n as u32;
        }
        Ok(revoked)
    };
    let revoked = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| (1 + t * per, ((t + 1) * per).min(pages)))
            .filter(|(a, b)| a <= b)
            .map(|(a, b)| s.spawn(move || check_range(a, b)))
            .collect();
        workers.into_iter().try_fold(0u32, |acc, w| {
            Ok::<_, Error>(acc + w.join().expect("a verifier thread panicked")?)
        })
    })?;
    if revoked != header.revoked {
        return Err(corrupt(path, FormatError::Invalid("revoked count")));
    }
    let mut buf = vec![0u8; CHUNK];
    let mut off = compact;
    while off < len {
        let n = ((len - off) as usize).min(CHUNK);
        files::read_at(f, path, &mut buf[..n], off)?;
        if let Some(bad) = super::content::verify(seed, off, &buf[..n]) {
            return Err(corrupt(
                path,
                format!("byte {bad} differs from the database content"),
            ));
        }
        off += n as u64;
    }
    Ok(header)
}

/// Reads up to `max` records from request id `from` on, straight from a `.edb` on disk
/// (a stopped CA's database; pages are checked as they are read).
pub(crate) fn read_records_on_disk(
    dir: &Dir,
    name: &str,
    from: u32,
    max: usize,
    out: &mut Vec<Record>,
) -> Result<EdbHeader> {
    let path = &dir.entry_host(name);
    let f = dir.open(name)?;
    let mut page = vec![0u8; PAGE_SIZE];
    files::read_at(&f, path, &mut page, 0)?;
    let header = EdbHeader::decode(&page).map_err(|e| corrupt(path, e))?;
    let records = header.records();
    let mut id = from.max(1);
    while id <= records && out.len() < max {
        let (pgno, _) = slot_of(id);
        files::read_at(&f, path, &mut page, pgno as u64 * PAGE_SIZE as u64)?;
        check_page(&page, pgno, records, false)
            .map_err(|e| corrupt(path, format!("page {pgno}: {e}")))?;
        id = push_page(&page, pgno, records, id, max, out, path)?;
    }
    Ok(header)
}

/// Decodes the records of `page` (data page `pgno`) from request id `id` on into `out`,
/// up to `max` in `out`; returns the next request id.
fn push_page(
    page: &[u8],
    pgno: u32,
    records: u32,
    mut id: u32,
    max: usize,
    out: &mut Vec<Record>,
    path: &Path,
) -> Result<u32> {
    let last = (pgno - 1) * format::SLOTS_PER_PAGE + records_in_page(pgno, records);
    while id <= last && out.len() < max {
        let (_, s) = slot_of(id);
        let r = decode_slot_of(&page[PAGE_HEAD + s * SLOT_SIZE..][..SLOT_SIZE], id)
            .map_err(|e| corrupt(path, format!("record {id}: {e}")))?;
        out.push(r);
        id += 1;
    }
    Ok(id)
}

impl Pager {
    /// Creates the `.edb` of a new CA with records 1 ..= `header.records()` from `record`,
    /// each page written once, in order, through a temporary file renamed into place
    /// (O(1) memory whatever the count). A journal left at `journal` is deleted.
    pub(crate) fn create(
        dir: Dir,
        name: &str,
        journal: &str,
        header: &EdbHeader,
        mut record: impl FnMut(u32) -> Record,
    ) -> Result<Pager> {
        dir.remove_if_exists(journal)?;
        let tmp_name = format!("{name}.tmp~");
        let tmp = dir.entry_host(&tmp_name);
        let f = dir.create(&tmp_name)?;
        let mut w = std::io::BufWriter::with_capacity(CHUNK, f);
        let werr = |e| Error::io(format!("writing {}", tmp.display()), e);
        w.write_all(&header.encode()).map_err(werr)?;
        let records = header.records();
        let mut page = vec![0u8; PAGE_SIZE];
        let mut scratch = Vec::new();
        let mut revoked = 0;
        for pgno in 1..=data_pages(records) {
            page.fill(0);
            let count = records_in_page(pgno, records);
            for s in 0..count as usize {
                let id = (pgno - 1) * format::SLOTS_PER_PAGE + 1 + s as u32;
                let r = record(id);
                revoked += u32::from(r.status != Status::Issued);
                encode_slot(
                    &r,
                    &mut page[PAGE_HEAD + s * SLOT_SIZE..][..SLOT_SIZE],
                    &mut scratch,
                )
                .map_err(|e| Error::invalid_arg("install", format!("record {id}: {e}")))?;
            }
            seal_page(&mut page, pgno, count);
            w.write_all(&page).map_err(werr)?;
        }
        if revoked != header.revoked {
            return Err(Error::invalid_arg(
                "install",
                "the header's revoked count does not match the records",
            ));
        }
        w.flush().map_err(werr)?;
        drop(w);
        dir.rename(&tmp_name, &dir, name)?;
        let file = dir.open_rw(name)?;
        Ok(Pager::with_file(
            dir.entry_host(name),
            file,
            Journal::new(dir, journal),
            header.clone(),
        ))
    }

    /// The pager of the `.edb` open as `file` (read and write), whose header (already
    /// verified) is `header`; changes reach the file only at [`Pager::checkpoint`].
    fn with_file(path: PathBuf, file: File, journal: Journal, header: EdbHeader) -> Pager {
        Pager {
            path,
            journal,
            file,
            records: header.records(),
            revoked: header.revoked,
            disk: header,
            frames: Vec::new(),
            map: HashMap::new(),
            last: None,
            scratch: Vec::new(),
            hand: 0,
            writes: Writes::default(),
        }
    }

    /// The header page as the `.edb` holds it now.
    pub(crate) fn disk_header(&self) -> &EdbHeader {
        &self.disk
    }

    /// The `.edb`'s host path and what it is now (one `fstat` of the open file).
    pub(crate) fn metadata(&self) -> (PathBuf, Result<Meta>) {
        (self.path.clone(), file_metadata(&self.file, &self.path))
    }

    /// Records in the database.
    pub(crate) fn records(&self) -> u32 {
        self.records
    }

    /// Revoked records in the database.
    pub(crate) fn revoked(&self) -> u32 {
        self.revoked
    }

    /// Arms (or disarms) the crash hook of the next checkpoints.
    #[cfg(test)]
    pub(crate) fn set_crash_hook(&mut self, hook: Option<CrashHook>) {
        self.writes = Writes { hook, done: 0 };
    }

    /// Appends to the journal, in one write, the cached pages `dirty` (frame indexes,
    /// sealed here) and, for a checkpoint, the header page `head` and the commit record of
    /// `at`; the journal is created, or its next epoch started, first if needed. On
    /// failure the pages stay dirty and the journal's length, index and checksum are as
    /// they were (a retry writes over the failed bytes).
    fn journal_append(&mut self, dirty: &[usize], commit: Option<(&[u8], Position)>) -> Result<()> {
        let j = &mut self.journal;
        if j.file.is_none() {
            j.file = Some(j.dir.create_rw(&j.name)?);
            j.len = 0;
        }
        let start = j.len;
        let mut buf = std::mem::take(&mut j.buf);
        buf.clear();
        let mut hasher = if start == 0 {
            j.epoch += 1;
            buf.extend_from_slice(&Journal::head(j.epoch, &self.disk));
            crc32fast::Hasher::new()
        } else {
            j.hasher.clone()
        };
        let mut placed = Vec::with_capacity(dirty.len() + 1);
        for &i in dirty {
            let f = &mut self.frames[i];
            seal_page(&mut f.page, f.pgno, records_in_page(f.pgno, self.records));
            buf.extend_from_slice(&f.pgno.to_le_bytes());
            placed.push((f.pgno, start + buf.len() as u64));
            buf.extend_from_slice(&f.page);
        }
        if let Some((head, at)) = commit {
            buf.extend_from_slice(&0u32.to_le_bytes());
            placed.push((0, start + buf.len() as u64));
            buf.extend_from_slice(head);
            let frames = (start + buf.len() as u64 - JRN_HEAD as u64) / JRN_FRAME as u64;
            buf.extend_from_slice(&COMMIT_MARK.to_le_bytes());
            buf.extend_from_slice(&(frames as u32).to_le_bytes());
            buf.extend_from_slice(&at.generation.to_le_bytes());
            buf.extend_from_slice(&at.pos.to_le_bytes());
        }
        hasher.update(&buf);
        if commit.is_some() {
            // The commit record ends with the CRC of the journal up to it.
            buf.extend_from_slice(&hasher.clone().finalize().to_le_bytes());
        }
        let j = &mut self.journal;
        let f = j.file.as_ref().expect("journal open");
        let written = self.writes.write(f, &j.path, &buf, start);
        j.buf = buf;
        written?;
        j.hasher = hasher;
        j.len = start + j.buf.len() as u64;
        j.index.extend(placed);
        for &i in dirty {
            self.frames[i].dirty = false;
        }
        Ok(())
    }

    /// Reads page `pgno` as the database holds it now, without caching it: from the
    /// cache, the journal, the `.edb`, or a new empty page past the file's pages.
    fn read_page(&self, pgno: u32, into: &mut [u8]) -> Result<()> {
        if let Some(&i) = self.map.get(&pgno) {
            into.copy_from_slice(&self.frames[i].page);
            return Ok(());
        }
        if let Some(&off) = self.journal.index.get(&pgno) {
            let f = self.journal.file.as_ref().expect("journal open");
            files::read_at(f, &self.journal.path, into, off)?;
            return check_page(into, pgno, self.records, false)
                .map(drop)
                .map_err(|e| corrupt(&self.journal.path, format!("page {pgno}: {e}")));
        }
        if pgno <= data_pages(self.disk.records()) {
            files::read_at(&self.file, &self.path, into, pgno as u64 * PAGE_SIZE as u64)?;
            return check_page(into, pgno, self.disk.records(), false)
                .map(drop)
                .map_err(|e| corrupt(&self.path, format!("page {pgno}: {e}")));
        }
        into.fill(0);
        Ok(())
    }

    /// The cache frame of page `pgno`, loaded (and an old frame evicted) if needed.
    fn frame(&mut self, pgno: u32) -> Result<usize> {
        let hit = match self.last {
            Some((p, i)) if p == pgno => Some(i),
            _ => self.map.get(&pgno).copied(),
        };
        if let Some(i) = hit {
            self.frames[i].referenced = true;
            self.last = Some((pgno, i));
            return Ok(i);
        }
        let mut page = vec![0u8; PAGE_SIZE].into_boxed_slice();
        self.read_page(pgno, &mut page)?;
        let i = if self.frames.len() < CACHE_PAGES {
            self.frames.push(Frame {
                pgno,
                page,
                dirty: false,
                referenced: true,
            });
            self.frames.len() - 1
        } else {
            // CLOCK: the first frame not referenced since the hand last passed it.
            loop {
                let h = self.hand;
                self.hand = (self.hand + 1) % self.frames.len();
                if std::mem::take(&mut self.frames[h].referenced) {
                    continue;
                }
                if self.frames[h].dirty {
                    self.spill(h)?;
                }
                let old = self.frames[h].pgno;
                self.map.remove(&old);
                self.frames[h] = Frame {
                    pgno,
                    page,
                    dirty: false,
                    referenced: true,
                };
                break h;
            }
        };
        self.map.insert(pgno, i);
        self.last = Some((pgno, i));
        Ok(i)
    }

    /// Writes a dirty cached page to the journal.
    fn spill(&mut self, i: usize) -> Result<()> {
        self.journal_append(&[i], None)
    }

    /// The record of request id `id`, if the database holds it.
    pub(crate) fn get(&mut self, id: u32) -> Result<Option<Record>> {
        if id == 0 || id > self.records {
            return Ok(None);
        }
        let (pgno, s) = slot_of(id);
        let i = self.frame(pgno)?;
        let slot = &self.frames[i].page[PAGE_HEAD + s * SLOT_SIZE..][..SLOT_SIZE];
        decode_slot_of(slot, id)
            .map(Some)
            .map_err(|e| corrupt(&self.path, format!("record {id}: {e}")))
    }

    fn put(&mut self, rec: &Record) -> Result<()> {
        let (pgno, s) = slot_of(rec.request_id);
        let i = self.frame(pgno)?;
        let f = &mut self.frames[i];
        let slot = &mut f.page[PAGE_HEAD + s * SLOT_SIZE..][..SLOT_SIZE];
        encode_slot(rec, slot, &mut self.scratch).map_err(|e| Error::Recovery {
            failure: RecoveryFailure::LogFileCorrupt,
            why: format!("request {}: {e}", rec.request_id),
        })?;
        f.dirty = true;
        Ok(())
    }

    /// Applies one transaction (a set operation: applying it twice changes nothing).
    /// An Issue must carry an existing or the next request id; a Revoke of an unknown
    /// request changes nothing.
    pub(crate) fn apply(&mut self, txn: &Txn) -> Result<()> {
        match txn {
            Txn::Issue(r) => {
                let id = r.request_id;
                if id == 0 || id > self.records.saturating_add(1) {
                    return Err(Error::Recovery {
                        failure: RecoveryFailure::LogFileCorrupt,
                        why: format!(
                            "an Issue of request {id} where the database holds requests 1 to {}: request ids are dense",
                            self.records
                        ),
                    });
                }
                let was_revoked = match self.get(id)? {
                    Some(old) => old.status != Status::Issued,
                    None => false,
                };
                self.put(r)?;
                self.records = self.records.max(id);
                self.revoked =
                    self.revoked - u32::from(was_revoked) + u32::from(r.status != Status::Issued);
            }
            Txn::Revoke {
                request_id,
                at,
                reason,
            } => {
                if let Some(mut r) = self.get(*request_id)? {
                    if r.status == Status::Issued {
                        self.revoked += 1;
                    }
                    r.status = Status::Revoked {
                        at: *at,
                        reason: *reason,
                    };
                    self.put(&r)?;
                }
            }
        }
        Ok(())
    }

    /// Reads up to `max` records from request id `from` on into `out` (without disturbing
    /// the cache).
    pub(crate) fn read_records(&self, from: u32, max: usize, out: &mut Vec<Record>) -> Result<()> {
        let mut page = vec![0u8; PAGE_SIZE];
        let mut id = from.max(1);
        while id <= self.records && out.len() < max {
            let (pgno, _) = slot_of(id);
            self.read_page(pgno, &mut page)?;
            id = push_page(&page, pgno, self.records, id, max, out, &self.path)?;
        }
        Ok(())
    }

    /// Makes `header` (whose counts must be this pager's) the database's checkpoint: the
    /// dirty pages and the header go to the journal in one write sealed by a commit
    /// record, then the pages are copied into the `.edb` (straight from the cache where
    /// they are there) and the journal is left for the next epoch to overwrite. Costs the
    /// pages changed since the last checkpoint.
    pub(crate) fn checkpoint(&mut self, header: &EdbHeader) -> Result<()> {
        debug_assert_eq!(header.records(), self.records);
        debug_assert_eq!(header.revoked, self.revoked);
        let mut dirty: Vec<usize> = (0..self.frames.len())
            .filter(|&i| self.frames[i].dirty)
            .collect();
        dirty.sort_by_key(|&i| self.frames[i].pgno);
        let head = header.encode();
        self.journal_append(&dirty, Some((&head, header.checkpoint)))?;
        // Committed: from here a crash is finished from the journal at the next start.
        let index = std::mem::take(&mut self.journal.index);
        let mut page = Vec::new();
        for (&pgno, &off) in index.iter().filter(|(p, _)| **p != 0) {
            let at = pgno as u64 * PAGE_SIZE as u64;
            match self.map.get(&pgno) {
                Some(&i) => self
                    .writes
                    .write(&self.file, &self.path, &self.frames[i].page, at)?,
                None => {
                    page.resize(PAGE_SIZE, 0);
                    let f = self.journal.file.as_ref().expect("journal open");
                    files::read_at(f, &self.journal.path, &mut page, off)?;
                    self.writes.write(&self.file, &self.path, &page, at)?;
                }
            }
        }
        self.writes.write(&self.file, &self.path, &head, 0)?;
        // The next epoch overwrites this journal from its start.
        self.journal.len = 0;
        self.disk = header.clone();
        Ok(())
    }

    /// Deletes the journal (a clean stop, after the checkpoint: nothing is pending).
    pub(crate) fn retire_journal(&mut self) -> Result<()> {
        debug_assert!(self.journal.index.is_empty());
        self.journal.file = None;
        self.journal.len = 0;
        self.journal.dir.remove_if_exists(&self.journal.name)
    }

    /// Drops every change not yet checkpointed (a failed recovery): the journal is
    /// deleted and the `.edb` is as it was opened.
    pub(crate) fn discard(mut self) -> Result<()> {
        self.journal.file = None;
        self.journal.dir.remove_if_exists(&self.journal.name)
    }

    /// Moves the database to the entry `to_name` of `to` (a restore that mapped it
    /// elsewhere): copies the file's compact part there (through a temporary file) and
    /// continues on the copy; the original is left as it is.
    pub(crate) fn relocate(&mut self, to: &Dir, to_name: &str) -> Result<()> {
        if to.entry_host(to_name) == self.path {
            return Ok(());
        }
        let tmp_name = format!("{to_name}.tmp~");
        let tmp = to.entry_host(&tmp_name);
        let out = to.create(&tmp_name)?;
        let mut buf = vec![0u8; CHUNK];
        let compact = self.disk.compact();
        let mut off = 0u64;
        while off < compact {
            let n = ((compact - off) as usize).min(CHUNK);
            files::read_at(&self.file, &self.path, &mut buf[..n], off)?;
            files::write_at(&out, &tmp, &buf[..n], off)?;
            off += n as u64;
        }
        drop(out);
        to.rename(&tmp_name, to, to_name)?;
        self.file = to.open_rw(to_name)?;
        self.path = to.entry_host(to_name);
        Ok(())
    }

    /// Cuts a materialised padding tail (a restored backup copy) off the file: the CA
    /// keeps only the compact part on its disk.
    pub(crate) fn trim(&mut self) -> Result<()> {
        let compact = self.disk.compact();
        if files::len(&self.file, &self.path)? > compact {
            files::set_len(&self.file, &self.path, compact)?;
        }
        Ok(())
    }
}

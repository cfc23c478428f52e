//! The binary formats of the CA's files (`<CA>.edb`, `edb*.log`, `edb.chk`).
//! `docs/FILE-FORMATS.md` describes them byte by byte. All integers are little-endian.

use super::record::{Record, Txn};
use crate::core::codec::{DecodeError, Reader, Writer};

/// `<CA name>.edb` magic.
pub const EDB_MAGIC: &[u8; 8] = b"CAEMUEDB";
/// `edb*.log` magic.
pub const LOG_MAGIC: &[u8; 8] = b"CAEMULOG";
/// `edb.chk` magic.
pub const CHK_MAGIC: &[u8; 8] = b"CAEMUCHK";
/// Format version of the logs and of `edb.chk`.
pub const VERSION: u16 = 1;
/// Size of the fixed `.edb` prefix: magic, version, compact length, logical size, padding seed.
pub const EDB_PREFIX: usize = 8 + 2 + 8 + 8 + 8;
const TRAILER_MARK: u32 = 0xFFFF_FFFF;
/// Where a frame length would be: a backup end mark follows (`docs/FILE-FORMATS.md` §5.4).
const BACKUP_END_MARK: u32 = 0xFFFF_FFFE;
/// Bytes of a backup end mark, its marker included.
pub const BACKUP_END_LEN: usize = 4 + 1 + 4 + 4 + 8;

/// A point in the log stream: `pos` transactions of generation `generation` are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// Log generation.
    pub generation: u32,
    /// Transactions of that generation already applied.
    pub pos: u32,
}

impl Position {
    /// The start of the log stream: generation 1, nothing applied.
    pub const FIRST: Position = Position {
        generation: 1,
        pos: 0,
    };

    /// Writes the position as the files and the protocol carry it: generation, then
    /// position, each a `u32`.
    pub(crate) fn put(&self, w: &mut Writer) {
        w.u32(self.generation);
        w.u32(self.pos);
    }

    /// Reads what [`Position::put`] wrote; `names` name the two fields in an error.
    pub(crate) fn get(r: &mut Reader<'_>, names: [&str; 2]) -> Result<Position, DecodeError> {
        Ok(Position {
            generation: r.u32(names[0])?,
            pos: r.u32(names[1])?,
        })
    }
}

/// Why a file does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Not this kind of file.
    BadMagic,
    /// An unknown format version.
    Version(u16),
    /// Shorter than its header says.
    Truncated,
    /// A checksum does not match.
    Checksum,
    /// A field holds an impossible value.
    Invalid(&'static str),
    /// A `.edb` of an earlier format version (1: the whole-file database).
    OldDatabase(u16),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::BadMagic => {
                f.write_str("wrong magic (not a certadm-emu file of this kind)")
            }
            FormatError::Version(v) => write!(f, "unknown format version {v}"),
            FormatError::Truncated => f.write_str("truncated"),
            FormatError::Checksum => f.write_str("checksum mismatch"),
            FormatError::Invalid(w) => write!(f, "invalid {w}"),
            FormatError::OldDatabase(v) => write!(
                f,
                "database format version {v} (the whole-file .edb of certadm-emu before the page file); this version reads only format {EDB_VERSION}: restore it with the version that wrote it, or install the CA anew"
            ),
        }
    }
}

/// The files are read with the little-endian codec of `core::codec`: a field that does not read
/// means the file ends inside it (or a name is not UTF-8), which the formats have always
/// reported as [`FormatError::Truncated`].
impl From<DecodeError> for FormatError {
    fn from(_: DecodeError) -> Self {
        FormatError::Truncated
    }
}

/// A writer that starts a log or checkpoint file: its magic, the format version, and the
/// database it belongs to (the CA's name and the database signature).
fn start(magic: &[u8; 8], ca_name: &str, signature: u64) -> Writer {
    let mut w = Writer::new();
    w.raw(magic);
    w.u16(VERSION);
    w.utf8(ca_name);
    w.u64(signature);
    w
}

/// The bytes of `w` followed by their CRC-32.
fn seal(mut w: Writer) -> Vec<u8> {
    let crc = crc32fast::hash(w.as_bytes());
    w.u32(crc);
    w.into_inner()
}

/// Checks the magic and the format version at the start of a log or checkpoint file
/// ([`start`]); [`owner`] reads what follows.
fn expect_start(r: &mut Reader<'_>, magic: &[u8; 8]) -> Result<(), FormatError> {
    if r.raw(8, "magic")? != magic {
        return Err(FormatError::BadMagic);
    }
    match r.u16("version")? {
        VERSION => Ok(()),
        v => Err(FormatError::Version(v)),
    }
}

/// The database a log or checkpoint file belongs to, after [`expect_start`]: the CA's name
/// and the database signature.
fn owner(r: &mut Reader<'_>) -> Result<(String, u64), FormatError> {
    Ok((r.utf8("CA name")?, r.u64("signature")?))
}

/// Format version of the `.edb` (2: the page file). Version 1 was the whole-file database
/// of earlier certadm-emu versions; it is refused with [`FormatError::OldDatabase`].
pub const EDB_VERSION: u16 = 2;
/// Bytes per page of the `.edb`; page *n* lies at offset *n* × `PAGE_SIZE`.
pub const PAGE_SIZE: usize = 8192;
/// Bytes of a data page before its first slot.
pub const PAGE_HEAD: usize = 32;
/// Bytes per record slot: a record's encoding (§4.2), zero-padded.
pub const SLOT_SIZE: usize = 96;
/// Record slots per data page.
pub const SLOTS_PER_PAGE: u32 = ((PAGE_SIZE - PAGE_HEAD) / SLOT_SIZE) as u32;
/// Where the header page keeps its CRC (the last four bytes of page 0).
const HEADER_CRC_AT: usize = PAGE_SIZE - 4;

/// The data page holding request id `id` (1-based) and the slot in it.
pub fn slot_of(id: u32) -> (u32, usize) {
    let i = id - 1;
    (i / SLOTS_PER_PAGE + 1, (i % SLOTS_PER_PAGE) as usize)
}

/// Data pages needed for `records` records (request ids 1..=records).
pub fn data_pages(records: u32) -> u32 {
    records.div_ceil(SLOTS_PER_PAGE)
}

/// Records held by data page `pgno` of a database of `records` records.
pub fn records_in_page(pgno: u32, records: u32) -> u32 {
    let first = (pgno - 1) as u64 * SLOTS_PER_PAGE as u64;
    (records as u64)
        .saturating_sub(first)
        .min(SLOTS_PER_PAGE as u64) as u32
}

/// The header page (page 0) of a `.edb`: everything but the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdbHeader {
    /// The CA's common name.
    pub ca_name: String,
    /// The database signature (fixed for the database's life; renewed by a restore).
    pub signature: u64,
    /// Every transaction before this position is in the pages, none after.
    pub checkpoint: Position,
    /// The next request id to assign; the records are request ids 1 .. this − 1.
    pub next_request_id: u32,
    /// The virtual clock.
    pub clock: i64,
    /// Records whose status is revoked.
    pub revoked: u32,
    /// The size the file presents: raised to the compact length when encoded.
    pub logical_size: u64,
    /// Seed of the generated padding.
    pub pad_seed: u64,
}

impl EdbHeader {
    /// Records in the database.
    pub fn records(&self) -> u32 {
        self.next_request_id.saturating_sub(1)
    }

    /// Pages of the file's compact part: the header page and the data pages.
    pub fn pages(&self) -> u32 {
        1 + data_pages(self.records())
    }

    /// Bytes of the compact part.
    pub fn compact(&self) -> u64 {
        self.pages() as u64 * PAGE_SIZE as u64
    }

    /// The logical size the header carries: at least the compact length.
    pub fn logical(&self) -> u64 {
        self.logical_size.max(self.compact())
    }

    /// The header page.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_buffer(Vec::with_capacity(PAGE_SIZE));
        w.raw(EDB_MAGIC);
        w.u16(EDB_VERSION);
        w.u64(self.compact());
        w.u64(self.logical());
        w.u64(self.pad_seed);
        w.u32(PAGE_SIZE as u32);
        w.u16(SLOT_SIZE as u16);
        w.u16(SLOTS_PER_PAGE as u16);
        w.u64(self.signature);
        self.checkpoint.put(&mut w);
        w.u32(self.next_request_id);
        w.i64(self.clock);
        w.u32(self.records());
        w.u32(self.revoked);
        w.utf8(&self.ca_name);
        let mut page = w.into_inner();
        page.resize(HEADER_CRC_AT, 0);
        let crc = crc32fast::hash(&page);
        page.extend_from_slice(&crc.to_le_bytes());
        page
    }

    /// Decodes a header page (exactly [`PAGE_SIZE`] bytes).
    pub fn decode(page: &[u8]) -> Result<EdbHeader, FormatError> {
        let (compact, logical, pad_seed) = EdbImage::prefix(page)?;
        if page.len() < PAGE_SIZE {
            return Err(FormatError::Truncated);
        }
        let stored = u32::from_le_bytes(page[HEADER_CRC_AT..PAGE_SIZE].try_into().unwrap());
        if crc32fast::hash(&page[..HEADER_CRC_AT]) != stored {
            return Err(FormatError::Checksum);
        }
        let mut r = Reader::new(&page[EDB_PREFIX..HEADER_CRC_AT]);
        if r.u32("page size")? as usize != PAGE_SIZE
            || r.u16("slot size")? as usize != SLOT_SIZE
            || r.u16("slots per page")? as u32 != SLOTS_PER_PAGE
        {
            return Err(FormatError::Invalid("page geometry"));
        }
        let signature = r.u64("signature")?;
        let checkpoint = Position::get(&mut r, ["checkpoint generation", "checkpoint position"])?;
        let next_request_id = r.u32("next request id")?;
        let clock = r.i64("clock")?;
        let records = r.u32("record count")?;
        let revoked = r.u32("revoked count")?;
        let ca_name = r.utf8("CA name")?;
        if !r.raw(r.remaining(), "header tail")?.iter().all(|b| *b == 0) {
            return Err(FormatError::Invalid("header tail"));
        }
        let h = EdbHeader {
            ca_name,
            signature,
            checkpoint,
            next_request_id,
            clock,
            revoked,
            logical_size: logical,
            pad_seed,
        };
        if next_request_id == 0 || records != h.records() || revoked > records {
            return Err(FormatError::Invalid("record counts"));
        }
        if compact != h.compact() {
            return Err(FormatError::Invalid("compact length"));
        }
        Ok(h)
    }
}

/// Writes the head of data page `pgno` holding `count` records and its CRC (over bytes
/// 4 .. end, into bytes 0 .. 4).
pub fn seal_page(page: &mut [u8], pgno: u32, count: u32) {
    page[4..8].copy_from_slice(&pgno.to_le_bytes());
    let first = (pgno - 1) * SLOTS_PER_PAGE + 1;
    page[8..12].copy_from_slice(&first.to_le_bytes());
    page[12..14].copy_from_slice(&(count as u16).to_le_bytes());
    page[14..PAGE_HEAD].fill(0);
    let crc = crc32fast::hash(&page[4..PAGE_SIZE]);
    page[..4].copy_from_slice(&crc.to_le_bytes());
}

/// Checks data page `pgno` of a database of `records` records: its CRC and its head.
/// Returns the number of revoked records in it when `count_revoked` (slots are then
/// checked too: each holds its request id, a valid status and zero padding).
pub fn check_page(
    page: &[u8],
    pgno: u32,
    records: u32,
    count_revoked: bool,
) -> Result<u32, FormatError> {
    if page.len() != PAGE_SIZE {
        return Err(FormatError::Truncated);
    }
    let stored = u32::from_le_bytes(page[..4].try_into().unwrap());
    if crc32fast::hash(&page[4..]) != stored {
        return Err(FormatError::Checksum);
    }
    let count = records_in_page(pgno, records);
    let u32_at = |i: usize| u32::from_le_bytes(page[i..i + 4].try_into().unwrap());
    if u32_at(4) != pgno
        || u32_at(8) != (pgno - 1) * SLOTS_PER_PAGE + 1
        || u16::from_le_bytes([page[12], page[13]]) as u32 != count
        || page[14..PAGE_HEAD].iter().any(|b| *b != 0)
    {
        return Err(FormatError::Invalid("page head"));
    }
    let mut revoked = 0;
    if count_revoked {
        for s in 0..SLOTS_PER_PAGE as usize {
            let slot = &page[PAGE_HEAD + s * SLOT_SIZE..PAGE_HEAD + (s + 1) * SLOT_SIZE];
            if (s as u32) < count {
                let id = (pgno - 1) * SLOTS_PER_PAGE + 1 + s as u32;
                revoked += u32::from(validate_slot(slot, id)?);
            } else if !is_zero(slot) {
                return Err(FormatError::Invalid("empty slot"));
            }
        }
    }
    Ok(revoked)
}

/// The revoked records of data page `pgno` of a database of `records` records, whose CRC
/// and head [`check_page`] already checked: the status byte of each record slot, where
/// its subject length puts it (a length that does not fit the slot, or a status other
/// than issued or revoked, is refused), and every slot past the last record zero. This
/// is what a recovery checks of the slots: a page whose CRC matches is the page the CA
/// wrote, and each record is checked whole ([`decode_slot_of`]) when it is read.
pub fn revoked_in_page(page: &[u8], pgno: u32, records: u32) -> Result<u32, FormatError> {
    let count = records_in_page(pgno, records) as usize;
    let mut revoked = 0;
    for slot in page[PAGE_HEAD..]
        .chunks_exact(SLOT_SIZE)
        .take(SLOTS_PER_PAGE as usize)
        .enumerate()
        .map(|(s, slot)| (s < count, slot))
    {
        match slot {
            (true, slot) => {
                let n = u16::from_le_bytes([slot[20], slot[21]]) as usize;
                match slot.get(22 + n + 16) {
                    Some(0) if 22 + n + 8 + 8 + 1 + 8 + 4 <= SLOT_SIZE => {}
                    Some(1) if 22 + n + 8 + 8 + 1 + 8 + 4 <= SLOT_SIZE => revoked += 1,
                    _ => return Err(FormatError::Invalid("record")),
                }
            }
            (false, slot) => {
                if !is_zero(slot) {
                    return Err(FormatError::Invalid("empty slot"));
                }
            }
        }
    }
    Ok(revoked)
}

/// Checks, without decoding it, that a slot holds the record of request id `id` as
/// [`encode_slot`] writes it (a valid status, zero revocation fields when issued, UTF-8
/// subject, zero padding); returns whether it is revoked.
fn validate_slot(slot: &[u8], id: u32) -> Result<bool, FormatError> {
    let bad = FormatError::Invalid("record");
    if u32::from_le_bytes(slot[..4].try_into().unwrap()) != id {
        return Err(FormatError::Invalid("record request id"));
    }
    let n = u16::from_le_bytes([slot[20], slot[21]]) as usize;
    let end = 22 + n + 8 + 8 + 1 + 8 + 4;
    if end > SLOT_SIZE {
        return Err(bad);
    }
    // ASCII (what the generator writes) is checked a word at a time; anything else goes
    // through the full UTF-8 check.
    let subject = &slot[22..22 + n];
    if !subject.is_ascii() && std::str::from_utf8(subject).is_err() {
        return Err(bad);
    }
    let st = 22 + n + 16;
    let revoked = match slot[st] {
        0 if is_zero(&slot[st + 1..end]) => false,
        1 => true,
        _ => return Err(bad),
    };
    if !is_zero(&slot[end..]) {
        return Err(FormatError::Invalid("record padding"));
    }
    Ok(revoked)
}

/// True if every byte of `b` is zero (no early exit: the compiler vectorises it).
fn is_zero(b: &[u8]) -> bool {
    b.iter().fold(0u8, |acc, x| acc | x) == 0
}

/// Writes `rec` into its slot (zero-padded), encoding it in `scratch` (a buffer kept
/// between calls: no allocation per record). Fails if its encoding is longer than a slot.
pub fn encode_slot(
    rec: &Record,
    slot: &mut [u8],
    scratch: &mut Vec<u8>,
) -> Result<(), FormatError> {
    let mut w = Writer::with_buffer(std::mem::take(scratch));
    rec.encode(&mut w);
    *scratch = w.into_inner();
    let b = &scratch[..];
    if b.len() > SLOT_SIZE {
        return Err(FormatError::Invalid(
            "record: longer than a slot (96 bytes)",
        ));
    }
    slot[..b.len()].copy_from_slice(b);
    slot[b.len()..].fill(0);
    Ok(())
}

/// [`decode_slot`] of the slot of request id `id`, which must hold that record.
pub fn decode_slot_of(slot: &[u8], id: u32) -> Result<Record, FormatError> {
    let r = decode_slot(slot)?;
    if r.request_id != id {
        return Err(FormatError::Invalid("record request id"));
    }
    Ok(r)
}

/// Reads the record in a slot; the bytes after its encoding must be zero.
pub fn decode_slot(slot: &[u8]) -> Result<Record, FormatError> {
    let mut r = Reader::new(slot);
    let rec = Record::decode(&mut r).map_err(|_| FormatError::Invalid("record"))?;
    if slot[r.offset()..].iter().any(|b| *b != 0) {
        return Err(FormatError::Invalid("record padding"));
    }
    Ok(rec)
}

/// A whole small `.edb` in memory (tests and tools): its header and its records. The CA
/// itself never holds this; it pages (`ca::pager`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdbImage {
    /// The header page.
    pub header: EdbHeader,
    /// The records, request ids 1, 2, 3 ...
    pub records: Vec<Record>,
}

impl EdbImage {
    /// Encodes the compact part: the header page and the data pages.
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        let mut out = self.header.encode();
        let n = self.header.records();
        if self.records.len() != n as usize {
            return Err(FormatError::Invalid("record count"));
        }
        let mut scratch = Vec::new();
        for pgno in 1..=data_pages(n) {
            let mut page = vec![0u8; PAGE_SIZE];
            let first = ((pgno - 1) * SLOTS_PER_PAGE) as usize;
            let count = records_in_page(pgno, n) as usize;
            for (s, rec) in self.records[first..first + count].iter().enumerate() {
                encode_slot(
                    rec,
                    &mut page[PAGE_HEAD + s * SLOT_SIZE..][..SLOT_SIZE],
                    &mut scratch,
                )?;
            }
            seal_page(&mut page, pgno, count as u32);
            out.extend_from_slice(&page);
        }
        Ok(out)
    }

    /// Reads the fixed prefix: (compact length, logical size, padding seed).
    pub fn prefix(bytes: &[u8]) -> Result<(u64, u64, u64), FormatError> {
        let mut r = Reader::new(bytes);
        if r.raw(8, "magic")? != EDB_MAGIC {
            return Err(FormatError::BadMagic);
        }
        match r.u16("version")? {
            EDB_VERSION => {}
            v @ 1 => return Err(FormatError::OldDatabase(v)),
            v => return Err(FormatError::Version(v)),
        }
        let compact = r.u64("compact length")?;
        let logical = r.u64("logical size")?;
        let seed = r.u64("padding seed")?;
        if compact < PAGE_SIZE as u64 || compact % PAGE_SIZE as u64 != 0 || logical < compact {
            return Err(FormatError::Invalid("size fields"));
        }
        Ok((compact, logical, seed))
    }

    /// Decodes a compact part (exactly `compact length` bytes), checking every page.
    pub fn decode(bytes: &[u8]) -> Result<EdbImage, FormatError> {
        let (compact, _, _) = Self::prefix(bytes)?;
        if (bytes.len() as u64) != compact {
            return Err(FormatError::Truncated);
        }
        let header = EdbHeader::decode(&bytes[..PAGE_SIZE])?;
        let n = header.records();
        let mut records = Vec::with_capacity(n as usize);
        let mut revoked = 0;
        for pgno in 1..=data_pages(n) {
            let page = &bytes[pgno as usize * PAGE_SIZE..][..PAGE_SIZE];
            revoked += check_page(page, pgno, n, true)?;
            for s in 0..records_in_page(pgno, n) as usize {
                records.push(decode_slot(
                    &page[PAGE_HEAD + s * SLOT_SIZE..][..SLOT_SIZE],
                )?);
            }
        }
        if revoked != header.revoked {
            return Err(FormatError::Invalid("revoked count"));
        }
        Ok(EdbImage { header, records })
    }
}

/// The header of a log generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHeader {
    /// The CA's common name.
    pub ca_name: String,
    /// The database signature the log belongs to.
    pub signature: u64,
    /// The generation number (also in the file name).
    pub generation: u32,
    /// The sealed checksum of the previous generation (0 for the first one).
    pub prev_crc: u32,
}

impl LogHeader {
    /// Encodes the header (with its own checksum).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = start(LOG_MAGIC, &self.ca_name, self.signature);
        w.u32(self.generation);
        w.u32(self.prev_crc);
        seal(w)
    }
}

/// One transaction frame of `txn`: the payload's length, the payload, the checksum of the
/// payload; written into `buf`'s allocation (its bytes are cleared).
pub(crate) fn encode_frame(txn: &Txn, buf: Vec<u8>) -> Vec<u8> {
    let mut w = Writer::with_buffer(buf);
    w.u32(txn.encoded_len() as u32);
    txn.write(&mut w);
    let mut frame = w.into_inner();
    let crc = crc32fast::hash(&frame[4..]);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame
}

/// Full or incremental: the kind of backup whose log listing sealed a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupSetKind {
    /// `CSBACKUP_TYPE_FULL` (byte `1`).
    Full,
    /// `CSBACKUP_TYPE_LOGS_ONLY` (byte `2`).
    Incremental,
}

impl BackupSetKind {
    fn byte(self) -> u8 {
        match self {
            BackupSetKind::Full => 1,
            BackupSetKind::Incremental => 2,
        }
    }

    fn from_byte(b: u8) -> Option<BackupSetKind> {
        match b {
            1 => Some(BackupSetKind::Full),
            2 => Some(BackupSetKind::Incremental),
            _ => None,
        }
    }

    /// `"full"` or `"incremental"`.
    pub fn name(self) -> &'static str {
        match self {
            BackupSetKind::Full => "full",
            BackupSetKind::Incremental => "incremental",
        }
    }
}

/// A backup set: what `CertSrvBackupGetBackupLogsW` listed. Its last log is sealed with
/// it (the **backup end mark**, `docs/FILE-FORMATS.md` §5.4), so a restore can tell
/// whether the chain it replays reaches the end of a backup set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupEnd {
    /// Full or incremental.
    pub kind: BackupSetKind,
    /// The first generation the listing named.
    pub low_gen: u32,
    /// The last one: the generation the listing sealed, which carries the mark.
    pub high_gen: u32,
    /// Transactions in the listed generations `low_gen ..= high_gen` (whole generations).
    pub transactions: u64,
}

impl std::fmt::Display for BackupEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the {} backup of generations {}..{} ({} .. {}, {} transactions)",
            self.kind.name(),
            self.low_gen,
            self.high_gen,
            log_file_name(self.low_gen),
            log_file_name(self.high_gen),
            self.transactions
        )
    }
}

impl BackupEnd {
    /// The mark's bytes: marker, kind, low and high generation, transactions.
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(BACKUP_END_MARK);
        w.u8(self.kind.byte());
        w.u32(self.low_gen);
        w.u32(self.high_gen);
        w.u64(self.transactions);
        w.into_inner()
    }
}

/// Bytes of a log's seal: the marker, the transaction count, the seal CRC.
pub(crate) const SEAL_LEN: usize = 12;

/// The transaction count of a sealed log, read from its last [`SEAL_LEN`] bytes (no
/// other check: recovery reads the whole log).
pub(crate) fn seal_count(tail: &[u8; SEAL_LEN]) -> Option<u32> {
    let word = |i: usize| u32::from_le_bytes([tail[i], tail[i + 1], tail[i + 2], tail[i + 3]]);
    (word(0) == TRAILER_MARK).then(|| word(4))
}

/// The bytes that seal a log: a backup end mark if a backup's log listing sealed it,
/// then the marker, the count, and the checksum of everything before it. `hasher` must
/// have seen every byte of the file so far.
pub(crate) fn encode_trailer(
    count: u32,
    mut hasher: crc32fast::Hasher,
    backup_end: Option<&BackupEnd>,
) -> (Vec<u8>, u32) {
    let mut v = Vec::with_capacity(BACKUP_END_LEN + SEAL_LEN);
    if let Some(m) = backup_end {
        v.extend_from_slice(&m.encode());
    }
    v.extend_from_slice(&TRAILER_MARK.to_le_bytes());
    v.extend_from_slice(&count.to_le_bytes());
    hasher.update(&v);
    let crc = hasher.finalize();
    v.extend_from_slice(&crc.to_le_bytes());
    (v, crc)
}

/// A parsed log file.
#[derive(Debug, Clone)]
pub struct LogContents {
    /// Its header.
    pub header: LogHeader,
    /// Its transactions, in order.
    pub txns: Vec<Txn>,
    /// The sealed checksum, if the generation was closed (rolled).
    pub sealed_crc: Option<u32>,
    /// True if an unsealed log ends in a partial or damaged frame (a torn write).
    pub torn_tail: bool,
    /// The backup end mark of a log sealed by a backup's log listing.
    pub backup_end: Option<BackupEnd>,
}

/// Parses a log file. A sealed log must be intact; an unsealed one (`edb.log`)
/// may end in a torn frame, which is reported and ignored.
pub fn decode_log(bytes: &[u8]) -> Result<LogContents, FormatError> {
    let mut r = Reader::new(bytes);
    expect_start(&mut r, LOG_MAGIC)?;
    let (ca_name, signature) = owner(&mut r)?;
    let header = LogHeader {
        ca_name,
        signature,
        generation: r.u32("generation")?,
        prev_crc: r.u32("previous checksum")?,
    };
    let hlen = r.offset();
    let hcrc = r.u32("header checksum")?;
    if crc32fast::hash(&bytes[..hlen]) != hcrc {
        return Err(FormatError::Checksum);
    }
    let mut txns = Vec::new();
    loop {
        if r.is_empty() {
            return Ok(LogContents {
                header,
                txns,
                sealed_crc: None,
                torn_tail: false,
                backup_end: None,
            });
        }
        let torn = |txns| {
            Ok(LogContents {
                header: header.clone(),
                txns,
                sealed_crc: None,
                torn_tail: true,
                backup_end: None,
            })
        };
        let Ok(len) = r.u32("frame length") else {
            return torn(txns);
        };
        let mut backup_end = None;
        let mut len = len;
        if len == BACKUP_END_MARK {
            let (Ok(kind), Ok(low_gen), Ok(high_gen), Ok(transactions)) = (
                r.u8("backup kind"),
                r.u32("backup low generation"),
                r.u32("backup high generation"),
                r.u64("backup transactions"),
            ) else {
                return torn(txns);
            };
            let Ok(next) = r.u32("seal marker") else {
                return torn(txns);
            };
            let kind = BackupSetKind::from_byte(kind);
            match kind {
                Some(kind)
                    if next == TRAILER_MARK
                        && high_gen == header.generation
                        && (1..=high_gen).contains(&low_gen) =>
                {
                    backup_end = Some(BackupEnd {
                        kind,
                        low_gen,
                        high_gen,
                        transactions,
                    });
                }
                _ => return Err(FormatError::Invalid("backup end mark")),
            }
            len = next;
        }
        if len == TRAILER_MARK {
            let Ok(count) = r.u32("transaction count") else {
                return torn(txns);
            };
            let covered = &bytes[..r.offset()];
            let Ok(crc) = r.u32("seal checksum") else {
                return torn(txns);
            };
            if crc32fast::hash(covered) != crc {
                return Err(FormatError::Checksum);
            }
            if count as usize != txns.len() {
                return Err(FormatError::Invalid("transaction count"));
            }
            if !r.is_empty() {
                return Err(FormatError::Invalid("bytes after the seal"));
            }
            return Ok(LogContents {
                header,
                txns,
                sealed_crc: Some(crc),
                torn_tail: false,
                backup_end,
            });
        }
        let Ok(payload) = r.raw(len as usize, "frame") else {
            return torn(txns);
        };
        let Ok(crc) = r.u32("frame checksum") else {
            return torn(txns);
        };
        if crc32fast::hash(payload) != crc {
            return torn(txns);
        }
        match Txn::decode(payload) {
            Ok(t) => txns.push(t),
            Err(_) => return Err(FormatError::Invalid("transaction")),
        }
    }
}

/// The checkpoint file `edb.chk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The CA's common name.
    pub ca_name: String,
    /// The database signature.
    pub signature: u64,
    /// Where recovery starts.
    pub position: Position,
}

impl Checkpoint {
    /// Encodes the file.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = start(CHK_MAGIC, &self.ca_name, self.signature);
        self.position.put(&mut w);
        seal(w)
    }

    /// Decodes the file.
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, FormatError> {
        if bytes.len() < 4 {
            return Err(FormatError::Truncated);
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let mut r = Reader::new(body);
        expect_start(&mut r, CHK_MAGIC)?;
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
            return Err(FormatError::Checksum);
        }
        let (ca_name, signature) = owner(&mut r)?;
        Ok(Checkpoint {
            ca_name,
            signature,
            position: Position::get(&mut r, ["checkpoint generation", "checkpoint position"])?,
        })
    }
}

/// The file name of log generation `generation`: `edb` + 5 hex digits (8 from 0x100000), upper case.
pub fn log_file_name(generation: u32) -> String {
    if generation < 0x10_0000 {
        format!("edb{generation:05X}.log")
    } else {
        format!("edb{generation:08X}.log")
    }
}

/// The generation of a numbered log file name (case-insensitive), if it is one.
pub fn parse_log_file_name(name: &str) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    let hex = lower.strip_prefix("edb")?.strip_suffix(".log")?;
    if (hex.len() == 5 || hex.len() == 8) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        let g = u32::from_str_radix(hex, 16).ok()?;
        let canonical_len = if g < 0x10_0000 { 5 } else { 8 };
        (hex.len() == canonical_len && g > 0).then_some(g)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::record::Status;

    fn image(n: u32) -> EdbImage {
        EdbImage {
            header: EdbHeader {
                ca_name: "Contoso CA".into(),
                signature: 0x1234,
                checkpoint: Position {
                    generation: 3,
                    pos: 2,
                },
                next_request_id: n + 1,
                clock: 99,
                revoked: 0,
                logical_size: 0,
                pad_seed: 5,
            },
            records: (1..=n).map(|id| Record::generate(1, id, 0)).collect(),
        }
    }

    #[test]
    fn edb_round_trips_and_detects_damage() {
        let mut img = image(2);
        let bytes = img.encode().unwrap();
        assert_eq!(bytes.len(), 2 * PAGE_SIZE);
        // The header carries the logical size the file presents: at least its length.
        img.header.logical_size = img.header.logical();
        assert_eq!(img.header.logical_size, bytes.len() as u64);
        assert_eq!(EdbImage::decode(&bytes).unwrap(), img);
        // A flipped byte anywhere: header, page head, a record, an empty slot, a CRC.
        for i in [
            0usize,
            12,
            40,
            100,
            PAGE_SIZE - 1,
            PAGE_SIZE + 5,
            PAGE_SIZE + 40,
            bytes.len() - 1,
        ] {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(EdbImage::decode(&b).is_err(), "flip at {i}");
        }
        assert_eq!(
            EdbImage::decode(&bytes[..bytes.len() - 3]),
            Err(FormatError::Truncated)
        );
        let mut big = image(200);
        big.header.logical_size = 1 << 40;
        big.records[150].status = Status::Revoked { at: 7, reason: 1 };
        big.header.revoked = 1;
        let b = big.encode().unwrap();
        assert_eq!(b.len(), (1 + 3) * PAGE_SIZE, "200 records in 3 pages of 85");
        assert_eq!(EdbImage::prefix(&b).unwrap().1, 1 << 40);
        assert_eq!(EdbImage::decode(&b).unwrap(), big);
        big.header.revoked = 0;
        let b = big.encode().unwrap();
        assert_eq!(
            EdbImage::decode(&b),
            Err(FormatError::Invalid("revoked count"))
        );
    }

    /// Recovery checks a page's CRC, its slots' lengths and statuses and the revoked count
    /// ([`revoked_in_page`]); the rest of a record is checked when it is read
    /// ([`decode_slot_of`]), even in a page resealed with a valid CRC.
    #[test]
    fn a_resealed_page_with_a_bad_record_is_caught_when_read() {
        let img = image(3);
        let bytes = img.encode().unwrap();
        let page = |b: &[u8]| b[PAGE_SIZE..2 * PAGE_SIZE].to_vec();
        let slot = |p: &[u8], s: usize| p[PAGE_HEAD + s * SLOT_SIZE..][..SLOT_SIZE].to_vec();
        let good = page(&bytes);
        assert_eq!(check_page(&good, 1, 3, false), Ok(0));
        assert_eq!(revoked_in_page(&good, 1, 3), Ok(0));
        // A subject byte that is not UTF-8, resealed: recovery's check passes, the read fails.
        let mut p = good.clone();
        p[PAGE_HEAD + SLOT_SIZE + 22] = 0xFF;
        seal_page(&mut p, 1, 3);
        assert_eq!(check_page(&p, 1, 3, false), Ok(0));
        assert_eq!(revoked_in_page(&p, 1, 3), Ok(0));
        assert_eq!(
            decode_slot_of(&slot(&p, 1), 2),
            Err(FormatError::Invalid("record"))
        );
        assert!(check_page(&p, 1, 3, true).is_err());
        // The record of another request id in a slot.
        assert_eq!(
            decode_slot_of(&slot(&good, 1), 3),
            Err(FormatError::Invalid("record request id"))
        );
        // A status that is neither issued nor revoked, a length past the slot, a byte in
        // an empty slot: refused by recovery's check.
        let n = u16::from_le_bytes([good[PAGE_HEAD + 20], good[PAGE_HEAD + 21]]) as usize;
        for (at, v, what) in [
            (PAGE_HEAD + 22 + n + 16, 2u8, "record"),
            (PAGE_HEAD + 21, 1, "record"),
            (PAGE_HEAD + 3 * SLOT_SIZE + 7, 1, "empty slot"),
        ] {
            let mut p = good.clone();
            p[at] = v;
            seal_page(&mut p, 1, 3);
            assert_eq!(check_page(&p, 1, 3, false), Ok(0), "{at}");
            assert_eq!(
                revoked_in_page(&p, 1, 3),
                Err(FormatError::Invalid(what)),
                "{at}"
            );
        }
    }

    #[test]
    fn old_format_is_refused_clearly() {
        let mut b = image(1).encode().unwrap();
        b[8..10].copy_from_slice(&1u16.to_le_bytes());
        let e = EdbImage::prefix(&b).unwrap_err();
        assert_eq!(e, FormatError::OldDatabase(1));
        assert!(e.to_string().contains("format version 1"), "{e}");
    }

    #[test]
    fn slots_and_pages() {
        assert_eq!(SLOTS_PER_PAGE, 85);
        assert_eq!(slot_of(1), (1, 0));
        assert_eq!(slot_of(85), (1, 84));
        assert_eq!(slot_of(86), (2, 0));
        assert_eq!(data_pages(0), 0);
        assert_eq!(data_pages(85), 1);
        assert_eq!(data_pages(86), 2);
        assert_eq!(records_in_page(2, 100), 15);
        assert_eq!(records_in_page(3, 100), 0);
        // The generator's records fit a slot up to the largest request id.
        let mut slot = [0u8; SLOT_SIZE];
        let mut scratch = Vec::new();
        encode_slot(&Record::generate(1, u32::MAX, 0), &mut slot, &mut scratch).unwrap();
        let mut long = Record::generate(1, 1, 0);
        long.subject = "x".repeat(46);
        assert!(encode_slot(&long, &mut slot, &mut scratch).is_err());
    }

    #[test]
    fn a_frame_encoded_into_a_reused_buffer_is_the_frame() {
        let mut buf = vec![0xAA; 300];
        for t in [
            Txn::Issue(Record::generate(3, 1_234_567, 9)),
            Txn::Revoke {
                request_id: 5,
                at: 6,
                reason: 1,
            },
        ] {
            buf = encode_frame(&t, buf);
            let mut w = Writer::new();
            t.write(&mut w);
            let payload = w.into_inner();
            let mut want = (payload.len() as u32).to_le_bytes().to_vec();
            want.extend_from_slice(&payload);
            want.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            assert_eq!(buf, want);
            assert_eq!(encode_frame(&t, Vec::new()), want);
        }
    }

    #[test]
    fn log_seal_and_torn_tail() {
        let h = LogHeader {
            ca_name: "X".into(),
            signature: 7,
            generation: 2,
            prev_crc: 11,
        };
        let mut bytes = h.encode();
        let t = Txn::Revoke {
            request_id: 1,
            at: 2,
            reason: 0,
        };
        bytes.extend(encode_frame(&t, Vec::new()));
        let open = decode_log(&bytes).unwrap();
        assert_eq!(open.txns, vec![t.clone()]);
        assert!(open.sealed_crc.is_none() && !open.torn_tail);
        let mut torn = bytes.clone();
        torn.extend_from_slice(&[5, 0, 0]);
        assert!(decode_log(&torn).unwrap().torn_tail);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&bytes);
        let (trailer, crc) = encode_trailer(1, hasher, None);
        bytes.extend(trailer);
        let sealed = decode_log(&bytes).unwrap();
        assert_eq!(sealed.sealed_crc, Some(crc));
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 13] ^= 1;
        assert!(decode_log(&bad).is_err() || decode_log(&bad).unwrap().sealed_crc.is_none());
    }

    #[test]
    fn backup_end_mark_round_trips_and_is_checked() {
        let h = LogHeader {
            ca_name: "X".into(),
            signature: 7,
            generation: 5,
            prev_crc: 11,
        };
        let t = Txn::Revoke {
            request_id: 1,
            at: 2,
            reason: 0,
        };
        let sealed = |mark: Option<&BackupEnd>| {
            let mut bytes = h.encode();
            bytes.extend(encode_frame(&t, Vec::new()));
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&bytes);
            bytes.extend(encode_trailer(1, hasher, mark).0);
            bytes
        };
        let mark = BackupEnd {
            kind: BackupSetKind::Incremental,
            low_gen: 3,
            high_gen: 5,
            transactions: 130,
        };
        let plain = sealed(None);
        let marked = sealed(Some(&mark));
        assert_eq!(marked.len(), plain.len() + BACKUP_END_LEN);
        // The seal is the last 12 bytes either way.
        let tail = |b: &[u8]| -> [u8; SEAL_LEN] { b[b.len() - SEAL_LEN..].try_into().unwrap() };
        assert_eq!(seal_count(&tail(&marked)), Some(1));
        assert_eq!(seal_count(&tail(&plain)), Some(1));
        let c = decode_log(&marked).unwrap();
        assert_eq!(c.backup_end, Some(mark));
        assert_eq!(c.txns, vec![t.clone()]);
        assert!(c.sealed_crc.is_some());
        assert_eq!(decode_log(&plain).unwrap().backup_end, None);
        // The seal CRC covers the mark: a flipped byte in it is caught.
        let at = plain.len() - SEAL_LEN + 6;
        for i in at..at + BACKUP_END_LEN - 4 {
            let mut bad = marked.clone();
            bad[i] ^= 0x10;
            assert!(decode_log(&bad).is_err(), "byte {i}");
        }
        // A mark naming another generation, or a range that does not end there, is invalid.
        for wrong in [
            BackupEnd {
                high_gen: 6,
                ..mark
            },
            BackupEnd { low_gen: 0, ..mark },
            BackupEnd { low_gen: 6, ..mark },
        ] {
            assert_eq!(
                decode_log(&sealed(Some(&wrong))).unwrap_err(),
                FormatError::Invalid("backup end mark")
            );
        }
        // Cut inside the mark: the frames before it count, as a torn tail.
        let torn = decode_log(&marked[..plain.len() - SEAL_LEN + 9]).unwrap();
        assert!(torn.torn_tail && torn.sealed_crc.is_none());
        assert_eq!(torn.txns.len(), 1);
        assert_eq!(
            mark.to_string(),
            "the incremental backup of generations 3..5 (edb00003.log .. edb00005.log, 130 transactions)"
        );
    }

    #[test]
    fn checkpoint_round_trips() {
        let c = Checkpoint {
            ca_name: "X".into(),
            signature: 1,
            position: Position {
                generation: 4,
                pos: 0,
            },
        };
        assert_eq!(Checkpoint::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn log_names() {
        assert_eq!(log_file_name(1), "edb00001.log");
        assert_eq!(log_file_name(0x11A), "edb0011A.log");
        assert_eq!(log_file_name(0x10_0000), "edb00100000.log");
        assert_eq!(parse_log_file_name("EDB0011a.LOG"), Some(0x11A));
        assert_eq!(parse_log_file_name("edb00100000.log"), Some(0x10_0000));
        assert_eq!(parse_log_file_name("edb.log"), None);
        assert_eq!(parse_log_file_name("edb00000.log"), None);
        assert_eq!(parse_log_file_name("edb0000001.log"), None);
    }
}

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
/// Format version of all three files.
pub const VERSION: u16 = 1;
/// Size of the fixed `.edb` prefix: magic, version, compact length, logical size, padding seed.
pub const EDB_PREFIX: usize = 8 + 2 + 8 + 8 + 8;
const TRAILER_MARK: u32 = 0xFFFF_FFFF;

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

/// A writer that starts a file of this kind: its magic and the format version.
fn start(magic: &[u8; 8]) -> Writer {
    let mut w = Writer::new();
    w.raw(magic);
    w.u16(VERSION);
    w
}

/// The bytes of `w` followed by their CRC-32.
fn seal(mut w: Writer) -> Vec<u8> {
    let crc = crc32fast::hash(w.as_bytes());
    w.u32(crc);
    w.into_inner()
}

/// Reads the magic and the format version at the start of a file of this kind.
fn expect_start(r: &mut Reader<'_>, magic: &[u8; 8]) -> Result<(), FormatError> {
    if r.raw(8, "magic")? != magic {
        return Err(FormatError::BadMagic);
    }
    match r.u16("version")? {
        VERSION => Ok(()),
        v => Err(FormatError::Version(v)),
    }
}

/// The content of a `.edb` file: the database state at its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdbImage {
    /// The CA's common name.
    pub ca_name: String,
    /// The database signature (random per database, fixed for its life).
    pub signature: u64,
    /// All transactions before this position are in `records`.
    pub checkpoint: Position,
    /// The next request id to assign.
    pub next_request_id: u32,
    /// The virtual clock.
    pub clock: i64,
    /// The rows.
    pub records: Vec<Record>,
    /// The size the file presents (compact part plus generated padding).
    pub logical_size: u64,
    /// Seed of the generated padding.
    pub pad_seed: u64,
}

impl EdbImage {
    /// Encodes the compact part; `logical_size` is raised to at least its length.
    pub fn encode(&mut self) -> Vec<u8> {
        let mut w = start(EDB_MAGIC);
        w.u64(0); // compact length, patched below
        w.u64(0); // logical size, patched below
        w.u64(self.pad_seed);
        w.utf8(&self.ca_name);
        w.u64(self.signature);
        self.checkpoint.put(&mut w);
        w.u32(self.next_request_id);
        w.i64(self.clock);
        w.u32(self.records.len() as u32);
        for r in &self.records {
            r.encode(&mut w);
        }
        let compact = (w.len() + 4) as u64;
        self.logical_size = self.logical_size.max(compact);
        w.patch_u64(10, compact);
        w.patch_u64(18, self.logical_size);
        seal(w)
    }

    /// Reads the fixed prefix: (compact length, logical size, padding seed).
    pub fn prefix(bytes: &[u8]) -> Result<(u64, u64, u64), FormatError> {
        let mut r = Reader::new(bytes);
        expect_start(&mut r, EDB_MAGIC)?;
        let compact = r.u64("compact length")?;
        let logical = r.u64("logical size")?;
        let seed = r.u64("padding seed")?;
        if compact < EDB_PREFIX as u64 + 4 || logical < compact {
            return Err(FormatError::Invalid("size fields"));
        }
        Ok((compact, logical, seed))
    }

    /// Decodes the compact part (exactly `compact length` bytes).
    pub fn decode(bytes: &[u8]) -> Result<EdbImage, FormatError> {
        let (compact, logical_size, pad_seed) = Self::prefix(bytes)?;
        if (bytes.len() as u64) < compact {
            return Err(FormatError::Truncated);
        }
        let body = &bytes[..compact as usize - 4];
        let stored = u32::from_le_bytes(bytes[body.len()..compact as usize].try_into().unwrap());
        if crc32fast::hash(body) != stored {
            return Err(FormatError::Checksum);
        }
        let mut r = Reader::new(&body[EDB_PREFIX..]);
        let ca_name = r.utf8("CA name")?;
        let signature = r.u64("signature")?;
        let checkpoint = Position::get(&mut r, ["checkpoint generation", "checkpoint position"])?;
        let next_request_id = r.u32("next request id")?;
        let clock = r.i64("clock")?;
        let n = r.u32("record count")?;
        let mut records = Vec::with_capacity((n as usize).min(r.remaining() / 40 + 1));
        for _ in 0..n {
            records.push(Record::decode(&mut r).map_err(|_| FormatError::Invalid("record"))?);
        }
        if !r.is_empty() {
            return Err(FormatError::Invalid("trailing bytes"));
        }
        Ok(EdbImage {
            ca_name,
            signature,
            checkpoint,
            next_request_id,
            clock,
            records,
            logical_size,
            pad_seed,
        })
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
        let mut w = start(LOG_MAGIC);
        w.utf8(&self.ca_name);
        w.u64(self.signature);
        w.u32(self.generation);
        w.u32(self.prev_crc);
        seal(w)
    }
}

/// Encodes one transaction frame: length, payload, checksum of the payload.
pub(crate) fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 8);
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    v
}

/// The bytes that seal a log: marker, count, then the checksum of everything before it.
/// `hasher` must have seen every byte of the file so far.
pub(crate) fn encode_trailer(count: u32, mut hasher: crc32fast::Hasher) -> (Vec<u8>, u32) {
    let mut v = Vec::with_capacity(12);
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
}

/// Parses a log file. A sealed log must be intact; an unsealed one (`edb.log`)
/// may end in a torn frame, which is reported and ignored.
pub fn decode_log(bytes: &[u8]) -> Result<LogContents, FormatError> {
    let mut r = Reader::new(bytes);
    expect_start(&mut r, LOG_MAGIC)?;
    let header = LogHeader {
        ca_name: r.utf8("CA name")?,
        signature: r.u64("signature")?,
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
        let at = r.offset();
        if r.is_empty() {
            return Ok(LogContents {
                header,
                txns,
                sealed_crc: None,
                torn_tail: false,
            });
        }
        let torn = |txns| {
            Ok(LogContents {
                header: header.clone(),
                txns,
                sealed_crc: None,
                torn_tail: true,
            })
        };
        let Ok(len) = r.u32("frame length") else {
            return torn(txns);
        };
        if len == TRAILER_MARK {
            let Ok(count) = r.u32("transaction count") else {
                return torn(txns);
            };
            let covered = &bytes[..at + 8];
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
        let mut w = start(CHK_MAGIC);
        w.utf8(&self.ca_name);
        w.u64(self.signature);
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
        Ok(Checkpoint {
            ca_name: r.utf8("CA name")?,
            signature: r.u64("signature")?,
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

    fn image() -> EdbImage {
        EdbImage {
            ca_name: "Contoso CA".into(),
            signature: 0x1234,
            checkpoint: Position {
                generation: 3,
                pos: 2,
            },
            next_request_id: 3,
            clock: 99,
            records: vec![Record::generate(1, 1, 0), Record::generate(1, 2, 0)],
            logical_size: 0,
            pad_seed: 5,
        }
    }

    #[test]
    fn edb_round_trips_and_detects_damage() {
        let mut img = image();
        let bytes = img.encode();
        assert_eq!(img.logical_size, bytes.len() as u64);
        assert_eq!(EdbImage::decode(&bytes).unwrap(), img);
        for i in [0usize, 12, 40, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(EdbImage::decode(&b).is_err(), "flip at {i}");
        }
        assert_eq!(
            EdbImage::decode(&bytes[..bytes.len() - 3]),
            Err(FormatError::Truncated)
        );
        let mut big = image();
        big.logical_size = 1 << 40;
        let b = big.encode();
        assert_eq!(EdbImage::prefix(&b).unwrap().1, 1 << 40);
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
        bytes.extend(encode_frame(&t.encode()));
        let open = decode_log(&bytes).unwrap();
        assert_eq!(open.txns, vec![t.clone()]);
        assert!(open.sealed_crc.is_none() && !open.torn_tail);
        let mut torn = bytes.clone();
        torn.extend_from_slice(&[5, 0, 0]);
        assert!(decode_log(&torn).unwrap().torn_tail);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&bytes);
        let (trailer, crc) = encode_trailer(1, hasher);
        bytes.extend(trailer);
        let sealed = decode_log(&bytes).unwrap();
        assert_eq!(sealed.sealed_crc, Some(crc));
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 13] ^= 1;
        assert!(decode_log(&bad).is_err() || decode_log(&bad).unwrap().sealed_crc.is_none());
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

//! Database records (issued certificates) and the transactions that change them.

use crate::core::codec::{err, DecodeError, Reader, Writer};
use crate::core::mix::mix64;

/// One row of the CA database: an issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The request id (1, 2, 3, ...).
    pub request_id: u32,
    /// The certificate serial number.
    pub serial: [u8; 16],
    /// The subject distinguished name.
    pub subject: String,
    /// Validity start, seconds since the Unix epoch (virtual clock).
    pub not_before: i64,
    /// Validity end.
    pub not_after: i64,
    /// Issued or revoked.
    pub status: Status,
}

/// Whether a certificate is valid or revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Issued and not revoked.
    Issued,
    /// Revoked at `at` (virtual clock) for `reason` (CRL reason code).
    Revoked {
        /// When.
        at: i64,
        /// CRL reason code.
        reason: u32,
    },
}

/// `CN=host-<request id, at least 6 digits>.emu.test, O=certadm-emu`, written without the
/// formatting machinery (a certificate is issued per call of it).
fn subject(request_id: u32) -> String {
    let mut digits = [b'0'; 10];
    let mut n = request_id;
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = start.min(digits.len() - 6);
    let mut s = String::with_capacity(44);
    s.push_str("CN=host-");
    s.extend(digits[start..].iter().map(|&d| d as char));
    s.push_str(".emu.test, O=certadm-emu");
    s
}

impl Record {
    /// A placeholder record (request id 0, empty subject), never stored.
    pub(crate) const EMPTY: Record = Record {
        request_id: 0,
        serial: [0; 16],
        subject: String::new(),
        not_before: 0,
        not_after: 0,
        status: Status::Issued,
    };

    /// The deterministic record for `request_id` of a CA seeded with `seed`.
    pub fn generate(seed: u64, request_id: u32, clock: i64) -> Record {
        let a = mix64(seed ^ (request_id as u64) << 1);
        let b = mix64(a);
        let mut serial = [0u8; 16];
        serial[..8].copy_from_slice(&a.to_be_bytes());
        serial[8..].copy_from_slice(&b.to_be_bytes());
        serial[0] &= 0x7F;
        Record {
            request_id,
            serial,
            subject: subject(request_id),
            not_before: clock,
            not_after: clock + 365 * 86_400,
            status: Status::Issued,
        }
    }

    /// The serial as hex, as certutil prints it.
    pub fn serial_hex(&self) -> String {
        self.serial.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The length of [`Record::encode`]'s bytes.
    pub(crate) fn encoded_len(&self) -> usize {
        4 + self.serial.len() + 2 + self.subject.len().min(u16::MAX as usize) + 8 + 8 + 1 + 8 + 4
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u32(self.request_id);
        w.raw(&self.serial);
        w.utf8(&self.subject);
        w.i64(self.not_before);
        w.i64(self.not_after);
        match self.status {
            Status::Issued => {
                w.u8(0);
                w.i64(0);
                w.u32(0);
            }
            Status::Revoked { at, reason } => {
                w.u8(1);
                w.i64(at);
                w.u32(reason);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<Record, DecodeError> {
        let request_id = r.u32("request id")?;
        let serial = r.array("serial")?;
        let subject = r.utf8("subject")?;
        let not_before = r.i64("not before")?;
        let not_after = r.i64("not after")?;
        let tag = r.u8("status")?;
        let at = r.i64("revoked at")?;
        let reason = r.u32("revocation reason")?;
        let status = match tag {
            0 => Status::Issued,
            1 => Status::Revoked { at, reason },
            t => return err(format!("status: {t} is neither 0 (issued) nor 1 (revoked)")),
        };
        Ok(Record {
            request_id,
            serial,
            subject,
            not_before,
            not_after,
            status,
        })
    }
}

/// The content digest of records: CRC-32 (IEEE, as `crc32fast`) over the concatenated
/// database encoding of each record (`docs/FILE-FORMATS.md` §4.2: request id, serial,
/// subject, validity, status, revocation time and reason, little-endian), in the order given
/// (request-id order from `EmulatedCa::records`). The same bytes in process and on a server
/// (the `Records` control call); `certadm-emu demo` prints it as 8 hex digits
/// (`docs/FILE-FORMATS.md` §4.6).
pub fn digest(records: &[Record]) -> u32 {
    let mut d = Digest::new();
    for r in records {
        d.update(r);
    }
    d.finish()
}

/// The digest of [`digest`], fed one record at a time (records streamed from pages, in
/// request-id order).
#[derive(Debug, Clone)]
pub struct Digest {
    hasher: crc32fast::Hasher,
    buf: Vec<u8>,
}

impl Default for Digest {
    fn default() -> Self {
        Digest::new()
    }
}

impl Digest {
    /// The digest of no records (0).
    pub fn new() -> Digest {
        Digest {
            hasher: crc32fast::Hasher::new(),
            buf: Vec::with_capacity(128),
        }
    }

    /// Adds the next record.
    pub fn update(&mut self, r: &Record) {
        let mut w = Writer::with_buffer(std::mem::take(&mut self.buf));
        r.encode(&mut w);
        let mut b = w.into_inner();
        self.hasher.update(&b);
        b.clear();
        self.buf = b;
    }

    /// The digest of the records added.
    pub fn finish(self) -> u32 {
        self.hasher.finalize()
    }
}

/// One logged change to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Txn {
    /// A certificate was issued.
    Issue(Record),
    /// A certificate was revoked.
    Revoke {
        /// Which request.
        request_id: u32,
        /// When (virtual clock).
        at: i64,
        /// CRL reason code.
        reason: u32,
    },
}

impl Txn {
    /// The length of the bytes [`Txn::write`] writes.
    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Txn::Issue(r) => 1 + r.encoded_len(),
            Txn::Revoke { .. } => 1 + 4 + 8 + 4,
        }
    }

    /// Writes the transaction's bytes to `w`.
    pub(crate) fn write(&self, w: &mut Writer) {
        match self {
            Txn::Issue(r) => {
                w.u8(1);
                r.encode(w);
            }
            Txn::Revoke {
                request_id,
                at,
                reason,
            } => {
                w.u8(2);
                w.u32(*request_id);
                w.i64(*at);
                w.u32(*reason);
            }
        }
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<Txn, DecodeError> {
        let mut r = Reader::new(payload);
        let t = match r.u8("transaction kind")? {
            1 => Txn::Issue(Record::decode(&mut r)?),
            2 => Txn::Revoke {
                request_id: r.u32("request id")?,
                at: r.i64("revoked at")?,
                reason: r.u32("revocation reason")?,
            },
            k => {
                return err(format!(
                    "transaction kind: {k} is neither 1 (issue) nor 2 (revoke)"
                ))
            }
        };
        r.finish("transaction")?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txns_round_trip() {
        let r = Record::generate(9, 42, 1_700_000_000);
        for t in [
            Txn::Issue(r.clone()),
            Txn::Revoke {
                request_id: 42,
                at: 5,
                reason: 1,
            },
        ] {
            let mut w = Writer::new();
            t.write(&mut w);
            let bytes = w.into_inner();
            // The length a frame announces before the bytes are written.
            assert_eq!(t.encoded_len(), bytes.len());
            assert_eq!(Txn::decode(&bytes), Ok(t));
        }
        assert_eq!(Record::generate(9, 42, 1_700_000_000), r);
        for id in [0, 7, 42, 999_999, 1_000_000, 12_345_678, u32::MAX] {
            assert_eq!(
                subject(id),
                format!("CN=host-{id:06}.emu.test, O=certadm-emu")
            );
        }
        assert_ne!(Record::generate(10, 42, 1_700_000_000).serial, r.serial);
        assert!(Txn::decode(&[9]).is_err());
    }

    /// The digest is a documented encoding, not `Debug` text: these values are pinned
    /// (`docs/FILE-FORMATS.md` §4.6); a change here breaks the manifests of kept backups.
    #[test]
    fn digest_is_pinned() {
        assert_eq!(digest(&[]), 0);
        let mut recs: Vec<Record> = (1..=3)
            .map(|id| Record::generate(1, id, 1_767_225_600))
            .collect();
        let issued = digest(&recs);
        assert_eq!(issued, 0x6f27_9647, "issued: {issued:#010x}");
        recs[1].status = Status::Revoked {
            at: 1_767_225_660,
            reason: 1,
        };
        let revoked = digest(&recs);
        assert_eq!(revoked, 0xf659_a4a9, "revoked: {revoked:#010x}");
        // Equal to the CRC of the records' database encoding, concatenated.
        let mut w = Writer::new();
        for r in &recs {
            r.encode(&mut w);
        }
        assert_eq!(crc32fast::hash(&w.into_inner()), revoked);
    }
}

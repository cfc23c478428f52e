//! The numeric limits of every input, defined once.
//!
//! Every path that takes a number from outside (the C API `certemu_*`, the configuration
//! file, the server protocol's control requests, the command line, `CaBuilder`)
//! checks it against the same [`Limit`] here, through one function ([`Limit::check`]), before
//! anything is created or changed. A value outside its range fails with `E_INVALIDARG`
//! (0x80070057) and a message that names the input, the value and the range.
//!
//! | limit | range | why |
//! |---|---|---|
//! | [`RECORDS`] | 0 ..= 100,000,000 | certificates in one CA's database (at creation, and after any issue): the page file keeps memory bounded (a 4 MiB page cache), so the bound is disk: 96 bytes a record, 9.6 GB at the limit |
//! | [`ISSUE_PER_CALL`] | 0 ..= 1,000,000 | certificates one issue call adds |
//! | [`EDB_SIZE`] | 0 ..= 2^50 (1 PiB) | the virtual `.edb` size: generated, never stored; fits `LARGE_INTEGER` with room |
//! | [`LOG_CAPACITY`] | 1 ..= 1,000,000 | transactions per log generation (a log is read whole at recovery) |
//! | [`RESTORE_MAP_ENTRIES`] | 0 ..= 64 | `crstmap` of the Register functions |
//! | [`STRING_UNITS`] | 0 ..= 32,767 | UTF-16 units of any string argument (the Windows extended path limit) |
//! | [`NETBIOS_NAME`] | 1 ..= 15 | characters of a NetBIOS computer name |
//! | [`DNS_NAME`] | 1 ..= 253 | characters of a DNS name (each label 1 ..= [`DNS_LABEL`] = 63) |
//! | [`CA_NAME`] | 1 ..= 64 | characters of a CA common name (X.520 `ub-common-name`) |
//! | [`PATH_COMPONENT`] | 1 ..= 255 | characters of one path component (NTFS) |
//! | [`CA_FILE_PATH`] | 1 ..= 259 | characters of the local path of a CA file (`C:\...\<CA>.edb`): `MAX_PATH` less its NUL |
//!
//! [`RECORDS`] is the one value that bounds the size of a CA's database; it is a single
//! constant, and `certemu.h`'s `CERTEMU_MAX_RECORDS` carries the same value (a test checks
//! the two agree).

use super::{Error, Result};

/// A range an input must fall in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The input as the user names it (`records`, `edb_size`, ...).
    pub name: &'static str,
    /// The smallest value accepted.
    pub min: u64,
    /// The largest value accepted.
    pub max: u64,
}

impl Limit {
    /// `Ok` if `value` is in range; else `E_INVALIDARG` for `call`, naming the input,
    /// the value and the range.
    pub fn check(&self, call: &'static str, value: u64) -> Result<()> {
        if (self.min..=self.max).contains(&value) {
            Ok(())
        } else {
            Err(Error::invalid_arg(
                call,
                format!(
                    "{} {value} is outside {}..={} (the documented limit, COVERAGE.md section C)",
                    self.name, self.min, self.max
                ),
            ))
        }
    }

    /// True if `value` is in range.
    pub fn contains(&self, value: u64) -> bool {
        (self.min..=self.max).contains(&value)
    }
}

/// Declares each limit as a constant, and [`ALL`] in the same order.
macro_rules! limits {
    ($( $(#[doc = $doc:literal])* $id:ident = $name:literal, $min:literal ..= $max:expr; )*) => {
        $( $(#[doc = $doc])* pub const $id: Limit = Limit { name: $name, min: $min, max: $max }; )*

        /// Every limit, for documentation and tests.
        pub const ALL: &[Limit] = &[$($id),*];
    };
}

limits! {
    /// Certificates in one CA's database: at creation, and the count after any issue.
    RECORDS = "records", 0..=100_000_000;
    /// Certificates one issue call (`EmulatedCa::issue`, `certemu_ca_issue`, `Issue`) adds.
    ISSUE_PER_CALL = "issue count", 0..=1_000_000;
    /// The size of the virtual `.edb` in bytes (1 PiB).
    EDB_SIZE = "edb_size", 0..=1 << 50;
    /// Transactions per log generation.
    LOG_CAPACITY = "log_capacity", 1..=1_000_000;
    /// Entries of a restore map (`crstmap`).
    RESTORE_MAP_ENTRIES = "crstmap", 0..=64;
    /// UTF-16 code units of a string argument, without its NUL.
    STRING_UNITS = "string length", 0..=32_767;
    /// Characters of a NetBIOS computer name (the 16th byte is the service type).
    NETBIOS_NAME = "NetBIOS name length", 1..=15;
    /// Characters of a DNS name (255 octets on the wire, less the length bytes).
    DNS_NAME = "DNS name length", 1..=253;
    /// Characters of one DNS label.
    DNS_LABEL = "DNS label length", 1..=63;
    /// Characters of a CA common name.
    CA_NAME = "CA name length", 1..=64;
    /// Characters of one path component.
    PATH_COMPONENT = "path component length", 1..=255;
    /// Characters of the local path of a CA database, log or checkpoint file.
    CA_FILE_PATH = "CA file path length", 1..=259;
}

/// An issue of `n` certificates into a database of `records`: within [`ISSUE_PER_CALL`],
/// and the database stays within [`RECORDS`] (`E_INVALIDARG` naming both otherwise).
pub(crate) fn check_issue(call: &'static str, records: u32, n: u32) -> Result<()> {
    ISSUE_PER_CALL.check(call, n.into())?;
    let after = u64::from(records) + u64::from(n);
    if RECORDS.contains(after) {
        return Ok(());
    }
    Err(Error::invalid_arg(
        call,
        format!(
            "issuing {n} would make {after} records; a CA holds at most {} (the documented limit, COVERAGE.md section C)",
            RECORDS.max
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::HRESULT;

    #[test]
    fn an_issue_stays_within_the_database_limit() {
        assert!(check_issue("issue", 99_999_999, 1).is_ok());
        let e = check_issue("issue", 99_999_999, 2).unwrap_err();
        assert_eq!(e.hresult(), HRESULT::E_INVALIDARG);
        assert_eq!(
            e.to_string(),
            "issue: issuing 2 would make 100000001 records; a CA holds at most 100000000 (the documented limit, COVERAGE.md section C)"
        );
        let e = check_issue("issue", 0, 1_000_001).unwrap_err();
        assert!(e.to_string().contains("1000001"), "{e}");
    }

    #[test]
    fn a_value_outside_its_range_is_e_invalidarg_naming_it() {
        assert!(RECORDS.check("t", 100_000_000).is_ok());
        let e = RECORDS.check("t", 100_000_001).unwrap_err();
        assert_eq!(e.hresult(), HRESULT::E_INVALIDARG);
        assert_eq!(
            e.to_string(),
            "t: records 100000001 is outside 0..=100000000 (the documented limit, COVERAGE.md section C)"
        );
        assert!(LOG_CAPACITY.check("t", 0).is_err());
        assert!(EDB_SIZE.check("t", u64::MAX).is_err());
        for l in ALL {
            assert!(l.min <= l.max, "{l:?}");
        }
    }
}

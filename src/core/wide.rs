//! UTF-16 strings and the double-NUL ("wszz") list format of spec §4.
//!
//! A list is one run of UTF-16 code units: each entry (with an optional one-unit
//! `CSBFT_*` type prefix) followed by a NUL, then one extra NUL. `byte_len()` is
//! the `*pcbSize` a function reports: `2 × (Σ(len(entry)+1) + 1)`, the final NUL included.

use super::consts::CSBFT;

/// Encodes `s` as UTF-16 without a terminator.
pub fn to_wide(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

/// Encodes `s` as UTF-16 with a NUL terminator.
pub fn to_wide_nul(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// Decodes UTF-16 (no terminator), `None` if it holds unpaired surrogates.
pub fn from_wide(units: &[u16]) -> Option<String> {
    String::from_utf16(units).ok()
}

/// One entry of a list: its type character (for prefixed lists) and its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The `CSBFT_*` prefix, or `None` for an unprefixed list.
    pub kind: Option<CSBFT>,
    /// The path after the prefix.
    pub path: String,
}

/// A double-NUL terminated list of UTF-16 strings, exactly as Certadm returns it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct WideList {
    units: Vec<u16>,
}

impl WideList {
    /// An empty list: a single NUL (`*pcbSize == 2`), spec §4 rule 9.
    pub fn new() -> Self {
        WideList { units: Vec::new() }
    }

    /// Appends an entry with an optional type prefix.
    pub fn push(&mut self, kind: Option<CSBFT>, path: &str) {
        if let Some(k) = kind {
            self.units.push(k);
        }
        self.units.extend(path.encode_utf16());
        self.units.push(0);
    }

    /// Builds a list from entries.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (Option<CSBFT>, &'a str)>) -> Self {
        let mut l = WideList::new();
        for (k, p) in entries {
            l.push(k, p);
        }
        l
    }

    /// The code units including the final extra NUL.
    pub fn to_units(&self) -> Vec<u16> {
        let mut v = Vec::with_capacity(self.units.len() + 1);
        v.extend_from_slice(&self.units);
        v.push(0);
        v
    }

    /// The little-endian bytes (`*pcbSize` of them), as written to `certbkxp.dat`.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_units()
            .iter()
            .flat_map(|u| u.to_le_bytes())
            .collect()
    }

    /// `*pcbSize`: the size in bytes including the final NUL.
    pub fn byte_len(&self) -> u32 {
        ((self.units.len() + 1) * 2) as u32
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.units.iter().filter(|&&u| u == 0).count()
    }

    /// True if the list holds no entry.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Parses code units of a list (stops at the first empty entry, as the documented loop does).
    /// `prefixed` says whether each entry starts with a `CSBFT_*` character.
    pub fn parse_units(units: &[u16], prefixed: bool) -> Option<Vec<ListEntry>> {
        let mut out = Vec::new();
        let mut rest = units;
        loop {
            let end = rest.iter().position(|&u| u == 0)?;
            if end == 0 {
                return Some(out);
            }
            let entry = &rest[..end];
            let (kind, path) = if prefixed {
                (Some(entry[0]), &entry[1..])
            } else {
                (None, entry)
            };
            out.push(ListEntry {
                kind,
                path: from_wide(path)?,
            });
            rest = &rest[end + 1..];
        }
    }

    /// Parses little-endian bytes of a list, e.g. a saved `certbkxp.dat`.
    pub fn parse_bytes(bytes: &[u8], prefixed: bool) -> Option<Vec<ListEntry>> {
        if bytes.len() % 2 != 0 {
            return None;
        }
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        Self::parse_units(&units, prefixed)
    }

    /// The entries of this list.
    pub fn entries(&self, prefixed: bool) -> Vec<ListEntry> {
        Self::parse_units(&self.to_units(), prefixed).unwrap_or_default()
    }
}

impl std::fmt::Debug for WideList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = String::from_utf16_lossy(&self.units);
        f.debug_tuple("WideList")
            .field(&s.replace('\0', "|"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::consts::*;

    #[test]
    fn one_entry_layout_matches_spec_example() {
        let l = WideList::from_entries([(Some(CSBFT_CERTSERVER_DATABASE), r"\\CA1\C$\x.edb")]);
        let b = l.to_bytes();
        assert_eq!(&b[..4], &[0x44, 0, 0x5C, 0]);
        assert_eq!(&b[b.len() - 4..], &[0, 0, 0, 0]);
        // 'D' + 14 chars + NUL + final NUL = 17 units.
        assert_eq!(l.byte_len(), 2 * (1 + 14 + 1 + 1));
        assert_eq!(b.len() as u32, l.byte_len());
    }

    #[test]
    fn empty_list_is_one_nul() {
        let l = WideList::new();
        assert_eq!(l.to_units(), vec![0]);
        assert_eq!(l.byte_len(), 2);
        assert!(l.is_empty());
        assert_eq!(WideList::parse_units(&[0], true), Some(vec![]));
    }

    #[test]
    fn parse_round_trips() {
        let l = WideList::from_entries([(Some(CSBFT_LOG), "a"), (Some(CSBFT_LOG), "bc")]);
        let e = l.entries(true);
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[1],
            ListEntry {
                kind: Some(CSBFT_LOG),
                path: "bc".into()
            }
        );
        let u = WideList::from_entries([(None, "x"), (None, "yz")]);
        assert_eq!(u.entries(false)[1].path, "yz");
        assert_eq!(
            WideList::parse_bytes(&u.to_bytes(), false).unwrap().len(),
            2
        );
    }

    #[test]
    fn unterminated_input_is_rejected() {
        assert_eq!(WideList::parse_units(&[0x41, 0x42], false), None);
        assert_eq!(WideList::parse_bytes(&[1, 0, 0], false), None);
    }
}

//! The one hash of a word the emulator uses everywhere it needs deterministic
//! pseudo-random values: generated content and signatures (`ca`), seeded fault
//! probabilities (`api::faults`). `docs/FILE-FORMATS.md` §4.3 pins it.

/// SplitMix64 finaliser: a fast, well-mixed hash of one word.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    /// The reference values of SplitMix64 (seed 0, the first outputs of the generator
    /// `mix64(n * 0x9E3779B97F4A7C15)`), so a change of the mixer cannot go unnoticed.
    #[test]
    fn matches_splitmix64() {
        assert_eq!(super::mix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(super::mix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
    }
}

//! FarmHash `Fingerprint64`: the string hash behind `tf.strings.to_hash_bucket_fast`,
//! Keras `Hashing` and the out-of-vocabulary buckets of `StringLookup`. Unlike FarmHash's
//! `Hash64`, the fingerprint is fixed across versions and platforms, which is what makes
//! a bucket id computed here equal to the one computed at training time.

/// FarmHash `Fingerprint64` of `bytes` (the UTF-8 text of a field).
pub fn fingerprint64(bytes: &[u8]) -> u64 {
    farmhash::fingerprint64(bytes)
}

#[cfg(test)]
mod tests {
    use super::fingerprint64;

    /// Values printed by Python's `pyfarmhash` (`farmhash.fingerprint64`), which wraps
    /// Google's C++ FarmHash; lengths cover every code path (0–16, 17–32, 33–64 and > 64
    /// bytes), and multi-byte UTF-8.
    #[test]
    fn matches_the_reference_implementation() {
        let long = "z".repeat(65);
        let cases: &[(&str, u64)] = &[
            ("", 11160318154034397263),
            ("a", 12917804110809363939),
            ("hello", 13009744463427800296),
            ("hello world", 6381520714923946011),
            ("xxxxxxxxxxxxxxxxx", 11306081951414300581),
            ("yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy", 8610735037765521150),
            (&long, 8299915583762718517),
            ("Grüße, 世界 🌍", 17765870578030142125),
            ("12345", 16550883754376084728),
            ("-7", 9381026191229130062),
        ];
        for &(text, want) in cases {
            assert_eq!(
                fingerprint64(text.as_bytes()),
                want,
                "fingerprint64({text:?})"
            );
        }
    }
}

use std::path::Path;

use proptest::prelude::*;

use super::*;

fn hash(buckets: u64) -> Transform {
    Transform::Hash {
        buckets: Modulus::new(buckets),
    }
}

fn id(t: &Transform, v: FieldValue<'_>) -> i64 {
    match t.apply("f", v).unwrap() {
        TransformOutput::Id(id) => id,
        other => panic!("expected an id, got {other:?}"),
    }
}

fn num(t: &Transform, v: FieldValue<'_>) -> f64 {
    match t.apply("f", v).unwrap() {
        TransformOutput::Number(x) => x,
        other => panic!("expected a number, got {other:?}"),
    }
}

fn vocab_dir(tokens: &str) -> tempdir::Dir {
    let dir = tempdir::Dir::new();
    std::fs::write(dir.path().join("vocab.txt"), tokens).unwrap();
    dir
}

/// A throwaway directory under the system's temp dir, removed on drop.
mod tempdir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct Dir(PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "mlpserve-features-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn lookup(dir: &Path, oov: Option<u64>) -> Result<Transform, FeatureError> {
    let config = FieldConfig {
        vocabulary: Some("vocab.txt".into()),
        oov_buckets: oov,
        ..FieldConfig::default()
    };
    Transform::from_config("country", &config, dir)
}

#[test]
fn hashing_takes_the_fingerprint_modulo_the_buckets() {
    // pyfarmhash: fingerprint64("hello") = 13009744463427800296.
    assert_eq!(id(&hash(1000), FieldValue::Text("hello")), 296);
    // Integers hash as their decimal text: fingerprint64("12345") = 16550883754376084728.
    assert_eq!(id(&hash(1000), FieldValue::Int(12345)), 728);
    assert_eq!(id(&hash(1), FieldValue::Text("anything")), 0);
    assert!(hash(10).apply("user_id", FieldValue::Float(1.5)).is_err());
}

#[test]
fn lookup_numbers_tokens_after_the_oov_buckets() {
    let dir = vocab_dir("DE\nFR\r\nUS\n");
    let t = lookup(dir.path(), Some(2)).unwrap();
    assert_eq!(id(&t, FieldValue::Text("DE")), 2);
    assert_eq!(id(&t, FieldValue::Text("US")), 4);
    // Unknown: Fingerprint64 % 2; fingerprint64("hello") is even.
    assert_eq!(id(&t, FieldValue::Text("hello")), 0);
    assert_eq!(id(&t, FieldValue::Text("a")), 1);
    // Keras's default of one OOV index maps every unknown token to 0.
    let one = lookup(dir.path(), None).unwrap();
    assert_eq!(id(&one, FieldValue::Text("DE")), 1);
    assert_eq!(id(&one, FieldValue::Text("XX")), 0);
    // No OOV buckets: an unknown token is refused, naming field and token.
    let strict = lookup(dir.path(), Some(0)).unwrap();
    assert_eq!(id(&strict, FieldValue::Text("FR")), 1);
    let err = strict.apply("country", FieldValue::Text("XX")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field 'country': token \"XX\" is not in the vocabulary (oov_buckets = 0)"
    );
}

#[test]
fn vocabulary_files_are_checked_at_load() {
    let empty = vocab_dir("");
    let err = lookup(empty.path(), None).unwrap_err().to_string();
    assert!(err.contains("is empty"), "{err}");
    let dup = vocab_dir("a\nb\na\n");
    let err = lookup(dup.path(), None).unwrap_err().to_string();
    assert!(err.contains("\"a\" on line 3 repeats line 1"), "{err}");
    let blank = vocab_dir("a\n\nb\n");
    let err = lookup(blank.path(), None).unwrap_err().to_string();
    assert!(err.contains("line 2 is empty"), "{err}");
    let missing = tempdir::Dir::new();
    let err = lookup(missing.path(), None).unwrap_err().to_string();
    assert!(
        err.starts_with("feature 'country': cannot read the vocabulary"),
        "{err}"
    );
}

#[test]
fn bucketize_counts_the_boundaries_at_or_below() {
    let t = Transform::Bucketize {
        boundaries: vec![18.0, 25.0, 35.0],
    };
    assert_eq!(id(&t, FieldValue::Int(17)), 0);
    assert_eq!(id(&t, FieldValue::Int(18)), 1);
    assert_eq!(id(&t, FieldValue::Float(24.999)), 1);
    assert_eq!(id(&t, FieldValue::Float(35.0)), 3);
    assert_eq!(id(&t, FieldValue::Int(99)), 3);
    assert!(t.apply("age", FieldValue::Float(f64::NAN)).is_err());
    assert!(t.apply("age", FieldValue::Text("31")).is_err());
}

#[test]
fn numeric_transforms_and_their_domains() {
    let z = Transform::Standardize {
        mean: 50.0,
        std: 20.0,
    };
    assert_eq!(num(&z, FieldValue::Int(90)), 2.0);
    assert_eq!(num(&Transform::Log1p, FieldValue::Float(0.0)), 0.0);
    assert_eq!(num(&Transform::Log1p, FieldValue::Int(9)), 10f64.ln());
    let err = Transform::Log1p
        .apply("clicks", FieldValue::Float(-2.0))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "field 'clicks': -2 is outside the transform's domain (log1p needs x > -1)"
    );
    let err = Transform::Identity
        .apply("price", FieldValue::Float(f64::INFINITY))
        .unwrap_err();
    assert!(err.to_string().contains("not finite"), "{err}");
    let err = Transform::Identity
        .apply("price", FieldValue::Text(&"x".repeat(5000)))
        .unwrap_err()
        .to_string();
    assert!(err.len() < 200, "echo capped: {} bytes", err.len());
}

#[test]
fn configs_name_the_field_and_the_problem() {
    let dir = Path::new(".");
    let cases: Vec<(FieldConfig, &str)> = vec![
        (
            FieldConfig {
                hash_buckets: Some(10),
                log1p: Some(true),
                ..FieldConfig::default()
            },
            "one transform per field, found hash_buckets and log1p",
        ),
        (
            FieldConfig {
                hash_buckets: Some(0),
                ..FieldConfig::default()
            },
            "hash_buckets must be at least 1",
        ),
        (
            FieldConfig {
                boundaries: Some(vec![1.0, 1.0]),
                ..FieldConfig::default()
            },
            "boundaries must increase strictly, but 1 is followed by 1",
        ),
        (
            FieldConfig {
                mean: Some(1.0),
                ..FieldConfig::default()
            },
            "mean and std go together",
        ),
        (
            FieldConfig {
                mean: Some(1.0),
                std: Some(0.0),
                ..FieldConfig::default()
            },
            "std finite and > 0",
        ),
        (
            FieldConfig {
                oov_buckets: Some(2),
                ..FieldConfig::default()
            },
            "oov_buckets needs a vocabulary",
        ),
        (
            FieldConfig {
                log1p: Some(true),
                default: Some(OwnedValue::Text("none".into())),
                ..FieldConfig::default()
            },
            "the default Text(\"none\") does not apply",
        ),
    ];
    for (config, want) in cases {
        let err = Transform::from_config("x", &config, dir)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("feature 'x': "), "{err}");
        assert!(err.contains(want), "{err} should contain {want}");
    }
    let toml_err = toml::from_str::<FieldConfig>("hash_bukets = 3").unwrap_err();
    assert!(toml_err.to_string().contains("hash_bukets"), "{toml_err}");
}

#[test]
fn the_modulus_equals_the_remainder_at_the_edges() {
    let divisors = [
        1,
        2,
        3,
        7,
        10,
        1000,
        1 << 32,
        (1 << 32) + 1,
        u64::MAX / 2,
        u64::MAX - 1,
        u64::MAX,
    ];
    let numerators = [
        0,
        1,
        2,
        999,
        1000,
        1001,
        u64::MAX / 3,
        u64::MAX - 1,
        u64::MAX,
    ];
    for d in divisors {
        let m = Modulus::new(d);
        assert_eq!(m.get(), d);
        for n in numerators
            .into_iter()
            .chain([d - 1, d, d.wrapping_add(1), d.wrapping_mul(2)])
        {
            assert_eq!(m.of(n), n % d, "{n} % {d}");
        }
    }
    assert_eq!(Modulus::new(0).get(), 0, "no OOV buckets stays 0");
}

proptest! {
    /// The multiply-based remainder, against `%`, over the whole range of both.
    #[test]
    fn the_modulus_equals_the_remainder(n in any::<u64>(), d in 1u64.., small in 1u64..100_000) {
        prop_assert_eq!(Modulus::new(d).of(n), n % d);
        prop_assert_eq!(Modulus::new(small).of(n), n % small);
    }

    /// Hashing, against the reference: the fingerprint of the text (integers as their
    /// decimal text) modulo the buckets, for any Unicode string and any integer.
    #[test]
    fn hash_matches_the_reference(text in "\\PC{0,80}", v in any::<i64>(), buckets in 1u64..1_000_000) {
        let t = hash(buckets);
        prop_assert_eq!(id(&t, FieldValue::Text(&text)), (fingerprint64(text.as_bytes()) % buckets) as i64);
        prop_assert_eq!(id(&t, FieldValue::Int(v)), (fingerprint64(v.to_string().as_bytes()) % buckets) as i64);
    }

    /// Lookup, against the reference: known tokens get oov + their line, unknown ones
    /// Fingerprint64 % oov (0 with one bucket).
    #[test]
    fn lookup_matches_the_reference(
        tokens in proptest::collection::hash_set("[^\\r\\n]{1,12}", 1..40),
        probe in "\\PC{0,12}",
        oov in 1u64..5,
    ) {
        let tokens: Vec<String> = tokens.into_iter().collect();
        let dir = vocab_dir(&(tokens.join("\n") + "\n"));
        let t = lookup(dir.path(), Some(oov)).unwrap();
        for (line, token) in tokens.iter().enumerate() {
            prop_assert_eq!(id(&t, FieldValue::Text(token)), oov as i64 + line as i64);
        }
        if !tokens.contains(&probe) {
            prop_assert_eq!(id(&t, FieldValue::Text(&probe)), (fingerprint64(probe.as_bytes()) % oov) as i64);
        }
    }

    /// Bucketize, against a linear count, on the boundaries themselves and between them.
    #[test]
    fn bucketize_matches_a_linear_count(mut bounds in proptest::collection::vec(-1e6f64..1e6, 1..20), x in -2e6f64..2e6, pick in any::<prop::sample::Index>()) {
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let t = Transform::Bucketize { boundaries: bounds.clone() };
        for probe in [x, bounds[pick.index(bounds.len())]] {
            let want = bounds.iter().filter(|b| **b <= probe).count() as i64;
            prop_assert_eq!(id(&t, FieldValue::Float(probe)), want);
        }
    }
}

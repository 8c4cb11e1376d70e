//! Unit tests of `config.toml` parsing and range checks.

use super::*;

#[test]
fn empty_file_is_all_defaults() {
    assert_eq!(ModelConfig::parse("").unwrap(), ModelConfig::default());
}

#[test]
fn unknown_keys_name_the_key() {
    let err = ModelConfig::parse("max_batch = 4").unwrap_err().to_string();
    assert!(err.contains("max_batch"), "{err}");
    let err = ModelConfig::parse("[inputs.x]\npad_axis = [1]")
        .unwrap_err()
        .to_string();
    assert!(err.contains("pad_axis"), "{err}");
}

#[test]
fn padding_and_limits_parse() {
    let c = ModelConfig::parse(
        "max_batch_size = 8\npreferred_batch_sizes = [4, 8]\n[inputs.hist]\npad_axes = [1]\npad_value = 0",
    )
    .unwrap();
    assert_eq!(c.inputs["hist"].pad_axes, vec![1]);
    assert!(ModelConfig::parse("max_batch_size = 4\npreferred_batch_sizes = [8]").is_err());
    assert!(ModelConfig::parse("instances = 0").is_err());
}

#[test]
fn routing_keys_parse_and_select() {
    let c = ModelConfig::parse(
        "version_policy = { latest = 2 }\nlabels = { stable = 3, canary = 4 }\ntraffic = { \"3\" = 90, \"4\" = 10 }",
    )
    .unwrap();
    assert_eq!(c.version_policy.select(&[1, 4, 3]), vec![3, 4]);
    assert_eq!(c.labels["canary"], 4);
    assert_eq!(c.traffic["3"], 90);
    let all = ModelConfig::parse("version_policy = \"all\"").unwrap();
    assert_eq!(all.version_policy.select(&[2, 1]), vec![1, 2]);
    let some = ModelConfig::parse("version_policy = { specific = [1, 5] }").unwrap();
    assert_eq!(some.version_policy.select(&[1, 2, 3]), vec![1]);
    assert_eq!(
        ModelConfig::default().version_policy.select(&[]),
        Vec::<u64>::new()
    );
    assert!(ModelConfig::parse("labels = { \"7\" = 3 }").is_err());
    assert!(ModelConfig::parse("traffic = { canary = 3 }").is_err());
    assert!(ModelConfig::parse("version_policy = { latest = 0 }").is_err());
    assert_eq!(c.serving_part(), ModelConfig::default());
}

#[test]
fn json_override_takes_config_keys_and_ignores_triton_names() {
    let (c, ignored) =
        ModelConfig::parse_json(r#"{"name": "m", "backend": "onnxruntime", "max_batch_size": 8}"#)
            .unwrap();
    assert_eq!(c.max_batch_size, BatchSize::Fixed(8));
    assert_eq!(ignored, ["backend", "name"]);
    let (c, _) = ModelConfig::parse_json(r#"{"max_batch_size": "16"}"#).unwrap();
    assert_eq!(c.max_batch_size, BatchSize::Fixed(16));
    assert!(ModelConfig::parse_json(r#"{"max_batchsize": 8}"#).is_err());
}

#[test]
fn out_of_range_values_name_the_key_the_value_and_the_range() {
    for (text, needles) in [
        ("instances = 100000", &["instances", "100000", "1..="][..]),
        (
            "max_queue_delay_us = 18446744073709551615",
            &["max_queue_delay_us", "18446744073709551615", "0..=10000000"],
        ),
        ("max_batch_size = 0", &["max_batch_size", "= 0", "1..="]),
        ("max_queue_size = 0", &["max_queue_size", "1..="]),
        (
            "inline_run_us = 10001",
            &["inline_run_us", "10001", "0..=10000", "(10 ms)"],
        ),
        (
            "default_timeout_ms = 100000000000",
            &["default_timeout_ms", "0..="],
        ),
        ("intra_op_threads = 0", &["intra_op_threads", "1..="]),
        (
            "[inputs.h]\nmax_pad_length = 0",
            &["inputs.h.max_pad_length", "1..="],
        ),
    ] {
        let err = ModelConfig::parse(text).unwrap_err().to_string();
        for needle in needles {
            assert!(
                err.contains(needle),
                "{text}: {err:?} should contain {needle:?}"
            );
        }
    }
    assert!(ModelConfig::parse("instances = 2\nmax_queue_delay_us = 10000000").is_ok());
}

#[test]
fn context_names_a_file_of_the_version_folder() {
    let c = ModelConfig::parse("[context]\nmodel = \"context.onnx\"").unwrap();
    assert_eq!(c.context.unwrap().model, "context.onnx");
    assert_eq!(ModelConfig::parse("").unwrap().context, None);
    for bad in [
        "../context.onnx",
        "/tmp/context.onnx",
        "model.onnx",
        "",
        "a/b.onnx",
    ] {
        let err = ModelConfig::parse(&format!("[context]\nmodel = \"{bad}\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[context]"), "{bad}: {err}");
    }
    let err = ModelConfig::parse("[context]\nfile = \"c.onnx\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("file"), "{err}");
}

#[test]
fn features_and_from_parse() {
    let c = ModelConfig::parse(
        r#"
        [features]
        user_id = { hash_buckets = 1000 }
        country = { vocabulary = "country.txt", oov_buckets = 2 }
        age = { boundaries = [18, 25, 35], default = 30 }
        income = { mean = 52000.0, std = 21000.0 }
        [inputs.ids]
        from = ["user_id", "country", "age"]
        [inputs.dense]
        from = ["income"]
        "#,
    )
    .unwrap();
    assert_eq!(c.inputs["ids"].from, ["user_id", "country", "age"]);
    assert_eq!(c.features["user_id"].hash_buckets, Some(1000));
    assert_eq!(c.features["age"].boundaries, Some(vec![18.0, 25.0, 35.0]));
    assert!(ModelConfig::parse("").unwrap().features.is_empty());
}

#[test]
fn feature_mistakes_name_the_field_and_the_problem() {
    for (text, needles) in [
        (
            "[features]\na = { hash_bucket = 4 }\n[inputs.x]\nfrom = [\"a\"]",
            &["hash_bucket"][..],
        ),
        (
            "[features]\na = { hash_buckets = 4 }\n[inputs.x]\nfrom = [\"b\"]",
            &["inputs.x.from", "'b'", "does not declare"],
        ),
        (
            "[features]\na = { hash_buckets = 4 }\nb = { log1p = true }\n[inputs.x]\nfrom = [\"a\"]",
            &["feature 'b'", "used by no input"],
        ),
        (
            "[features]\na = { hash_buckets = 4 }\n[inputs.x]\nfrom = [\"a\", \"a\"]",
            &["inputs.x.from", "'a' twice"],
        ),
        (
            "[features]\nx = { hash_buckets = 4 }\n[inputs.x]\nfrom = [\"x\"]",
            &["feature 'x'", "name of a graph input"],
        ),
        (
            "[features]\na = { hash_buckets = 4 }\n[inputs.x]\nfrom = [\"a\"]\npad_axes = [1]",
            &["inputs.x", "pad"],
        ),
    ] {
        let err = ModelConfig::parse(text).unwrap_err().to_string();
        for needle in needles {
            assert!(err.contains(needle), "{text}: {err:?} should contain {needle:?}");
        }
    }
}

#[test]
fn max_batch_size_is_a_count_or_auto() {
    assert_eq!(ModelConfig::default().max_batch_size, BatchSize::Auto);
    let c = ModelConfig::parse("max_batch_size = \"auto\"\nmax_batch_latency_ms = 2.5").unwrap();
    assert_eq!(
        (c.max_batch_size, c.max_batch_latency_ms),
        (BatchSize::Auto, 2.5)
    );
    let c = ModelConfig::parse("max_batch_size = 64").unwrap();
    assert_eq!(c.max_batch_size, BatchSize::Fixed(64));
    for bad in [
        "max_batch_size = 0",
        "max_batch_size = -3",
        "max_batch_size = \"big\"",
        "max_batch_latency_ms = 0",
    ] {
        assert!(ModelConfig::parse(bad).is_err(), "{bad}");
    }
    let err = ModelConfig::parse("max_batch_size = \"big\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("auto"), "{err}");
}

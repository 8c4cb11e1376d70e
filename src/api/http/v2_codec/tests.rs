//! Unit tests of the V2 codec: lifted and plain decoding agree, raw binary requests.

use super::*;
use crate::spec::ModelSpec;
use crate::tensor::TensorData;

/// A `data` array large enough to be lifted: `n` FP32 values with one replaced by `odd`.
fn data(n: usize, odd: Option<(usize, &str)>) -> String {
    let values: Vec<String> = (0..n)
        .map(|i| match odd {
            Some((at, text)) if at == i => text.to_string(),
            _ => format!("{}", (i as f32 * 0.37) - 5.0),
        })
        .collect();
    format!("[{}]", values.join(","))
}

/// Decodes `body` with and without lifting: the answers must be identical.
fn both_ways(body: &str) -> Result<Vec<(String, Tensor)>, DecodeError> {
    let pairs = |r: DecodedRequest| -> Vec<(String, Tensor)> {
        r.inputs.into_iter().map(|t| (t.name, t.tensor)).collect()
    };
    assert!(
        lift::lift(body.as_bytes(), lift::Strings::Decode, is_input_data).is_some(),
        "{body}"
    );
    let lifted = decode(&HeaderMap::new(), body.as_bytes()).map(pairs);
    let plain = decode_json(body.as_bytes(), None, &[]).map(pairs);
    assert_eq!(lifted, plain, "{body}");
    plain
}

fn input(name: &str, datatype: &str, shape: &str, data: &str) -> String {
    format!(r#"{{"name":"{name}","datatype":"{datatype}","shape":{shape},"data":{data}}}"#)
}

#[test]
fn lifted_arrays_decode_exactly_like_the_plain_path() {
    let good = data(200, None);
    let body = format!(
        r#"{{"inputs":[{},{}]}}"#,
        input("x", "FP32", "[200]", &good),
        input("y", "FP32", "[2, 100]", &good)
    );
    let inputs = both_ways(&body).expect("valid");
    assert_eq!(inputs[1].1.shape, vec![2, 100]);
    // Nested, and next to a small array.
    let nested = format!("[{good},{good}]");
    both_ways(&format!(
        r#"{{"inputs":[{},{}]}}"#,
        input("x", "FP32", "[2, 200]", &nested),
        input("y", "INT64", "[2]", "[1, 2]")
    ))
    .expect("valid");
    // A parameter named `data` keeps its array.
    let body = format!(
        r#"{{"parameters":{{"data":{good}}},"inputs":[{}]}}"#,
        input("x", "FP32", "[200]", &good)
    );
    both_ways(&body).expect("valid");
}

#[test]
fn errors_inside_data_arrays_are_the_walkers_naming_the_input() {
    for (odd, datatype, want) in [
        ("null", "FP32", "input 'x': element 150 is null, which is not a valid FP32"),
        ("1e400", "FP32", "input 'x': invalid data: number 1e400 at line 1 column "),
        ("true", "FP32", "input 'x': element 150 is true, which is not a valid FP32"),
        // The first misfit is named: the data's own -4.63 comes before the odd value.
        ("1.5", "INT32", "input 'x': element 1 is -4.63, which is not a valid INT32"),
        ("01", "FP32", "input 'x': invalid data: invalid number 01 at line 1 column "),
        ("1,", "FP32", "input 'x': invalid data: expected a number, true, false or an array at line 1 column "),
        ("[1]", "FP32", "input 'x': invalid data: ragged nested array: an array appears where a number was expected"),
    ] {
        for data in [data(200, Some((150, odd))), data(151, Some((150, odd)))] {
            let body = format!(r#"{{"inputs":[{}]}}"#, input("x", datatype, "[200]", &data));
            let err = decode(&HeaderMap::new(), body.as_bytes()).err().expect(odd).to_string();
            assert!(err.starts_with(want), "{odd}: {err}");
        }
    }
    // Syntax errors around the array, or a wrong shape: the same message and position.
    let good = data(200, None);
    for body in [
        format!(r#"{{"inputs":[{}]"#, input("x", "FP32", "[200]", &good)),
        format!(r#"{{"inputs":[{}],}}"#, input("x", "FP32", "[200]", &good)),
        format!(
            r#"{{"inputs":[{}, 7]}}"#,
            input("x", "FP32", "[200]", &good)
        ),
        format!(r#"{{"inputs":[{}]}}"#, input("x", "FP32", "[3, 3]", &good)),
        format!(r#"{{"inputs":[{}]}}"#, input("x", "BYTES", "[200]", &good)),
    ] {
        both_ways(&body).expect_err("invalid");
    }
}

#[test]
fn lifted_string_arrays_decode_and_fail_naming_the_input() {
    let strings = |odd: Option<(usize, &str)>| -> String {
        let items: Vec<String> = (0..200)
            .map(|i| match odd {
                Some((at, text)) if at == i => text.to_string(),
                _ => format!(r#""u{i} \"q\" \u00e9""#),
            })
            .collect();
        format!("[{}]", items.join(","))
    };
    let body = format!(
        r#"{{"inputs":[{}]}}"#,
        input("s", "BYTES", "[200]", &strings(None))
    );
    let inputs = both_ways(&body).expect("valid");
    let TensorData::Bytes(s) = &inputs[0].1.data else {
        panic!("BYTES")
    };
    assert_eq!(s.get(7), Some("u7 \"q\" é".as_bytes()));
    for (odd, want) in [
        (
            "7",
            "input 's': element 150 is 7, which is not a valid BYTES element",
        ),
        ("null", "input 's': element 150 is null"),
        (
            r#""\ud800""#,
            "input 's': invalid data: invalid string at line 1 column ",
        ),
        (
            r#""\x""#,
            "input 's': invalid data: invalid string at line 1 column ",
        ),
        ("[\"a\"]", "input 's': invalid data: ragged nested array"),
    ] {
        let body = format!(
            r#"{{"inputs":[{}]}}"#,
            input("s", "BYTES", "[200]", &strings(Some((150, odd))))
        );
        let err = decode(&HeaderMap::new(), body.as_bytes())
            .err()
            .expect(odd)
            .to_string();
        assert!(err.starts_with(want), "{odd}: {err}");
    }
}

fn spec(inputs: &[(&str, DataType, &[i64])]) -> ModelSpec {
    let tensor = |(name, dtype, shape): &(&str, DataType, &[i64])| crate::spec::TensorSpec {
        name: name.to_string(),
        dtype: *dtype,
        shape: shape.to_vec(),
        symbols: vec![String::new(); shape.len()],
        pad_axes: Vec::new(),
        pad_value: 0.0,
        broadcast: false,
    };
    ModelSpec {
        name: "m".into(),
        version: "1".into(),
        inputs: inputs.iter().map(tensor).collect(),
        outputs: Vec::new(),
        batched: true,
        properties: Default::default(),
        config: Default::default(),
        placements: Vec::new(),
        max_batch: 8,
        inline_rows: 0,
        features: None,
        inline_elements: 0,
        footprint: crate::spec::Footprint::default(),
        max_batch_work_bytes: usize::MAX,
        context: None,
    }
}

#[test]
fn raw_bodies_deduce_one_variable_axis_and_refuse_what_cannot_be_deduced() {
    let bytes = |n: usize| vec![0u8; n];
    // Batch 1 and the one other variable axis from the byte count.
    let one = spec(&[("x", DataType::F32, &[-1, -1, 3])]);
    let r = decode_raw(&one, &bytes(4 * 3 * 5)).expect("deduced");
    assert_eq!(r.inputs[0].tensor.shape, vec![1, 5, 3]);
    assert!(r.format.is_binary(0));
    let fixed = spec(&[("x", DataType::I64, &[-1, 2])]);
    assert_eq!(
        decode_raw(&fixed, &bytes(16)).expect("fits").inputs[0]
            .tensor
            .shape,
        vec![1, 2]
    );
    for (s, n, needles) in [
        (
            &one,
            4 * 3 * 5 + 1,
            &["'x'", "61 bytes", "multiple of 12"][..],
        ),
        (&fixed, 24, &["'x'", "24 bytes", "16"]),
        (
            &spec(&[("x", DataType::F32, &[-1, -1, -1])]),
            16,
            &["cannot be deduced", "2 variable"],
        ),
        (
            &spec(&[
                ("a", DataType::F32, &[-1, 1]),
                ("b", DataType::F32, &[-1, 1]),
            ]),
            4,
            &["one input", "2 (a, b)"],
        ),
    ] {
        let err = decode_raw(s, &bytes(n)).err().expect("refused").to_string();
        for needle in needles {
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }
}

/// The declared shape only sizes the first buffer, capped by what the text can hold: a
/// client declaring 4·10^12 elements next to a few numbers gets the shape error, and
/// the server no 16 TB allocation (which would abort the process).
#[test]
fn a_declared_shape_cannot_make_the_decoder_allocate_more_than_the_text_holds() {
    let huge = "[4000000000000]";
    for data in ["[1.5, 2.5]".to_string(), data(300, None)] {
        let body = format!(r#"{{"inputs":[{}]}}"#, input("x", "FP32", huge, &data));
        let err = both_ways(&body)
            .expect_err("shape and data disagree")
            .to_string();
        assert!(err.contains("input 'x'"), "{err}");
    }
}

//! Unit tests of the protobuf tensor codec: every typed field, raw lengths, mixing and
//! the timeout parameter.

use super::*;

fn input(
    name: &str,
    datatype: &str,
    shape: &[i64],
    contents: Option<InferTensorContents>,
) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        contents,
        ..Default::default()
    }
}

fn decode_one(datatype: &str, contents: InferTensorContents) -> Result<Tensor, String> {
    decode_input(input("x", datatype, &[1, 2], Some(contents)), None)
        .map(|t| t.tensor)
        .map_err(|e| e.to_string())
}

#[test]
fn every_typed_field_decodes_and_encodes_back() {
    let cases: Vec<(&str, InferTensorContents, TensorData)> = vec![
        (
            "BOOL",
            InferTensorContents {
                bool_contents: vec![true, false],
                ..Default::default()
            },
            TensorData::Bool(vec![true, false]),
        ),
        (
            "INT8",
            InferTensorContents {
                int_contents: vec![-128, 127],
                ..Default::default()
            },
            TensorData::I8(vec![-128, 127]),
        ),
        (
            "INT16",
            InferTensorContents {
                int_contents: vec![-5, 300],
                ..Default::default()
            },
            TensorData::I16(vec![-5, 300]),
        ),
        (
            "INT32",
            InferTensorContents {
                int_contents: vec![i32::MIN, 7],
                ..Default::default()
            },
            TensorData::I32(vec![i32::MIN, 7]),
        ),
        (
            "INT64",
            InferTensorContents {
                int64_contents: vec![i64::MIN, 1],
                ..Default::default()
            },
            TensorData::I64(vec![i64::MIN, 1]),
        ),
        (
            "UINT8",
            InferTensorContents {
                uint_contents: vec![0, 255],
                ..Default::default()
            },
            TensorData::U8(vec![0, 255]),
        ),
        (
            "UINT16",
            InferTensorContents {
                uint_contents: vec![1, 65535],
                ..Default::default()
            },
            TensorData::U16(vec![1, 65535]),
        ),
        (
            "UINT32",
            InferTensorContents {
                uint_contents: vec![u32::MAX, 0],
                ..Default::default()
            },
            TensorData::U32(vec![u32::MAX, 0]),
        ),
        (
            "UINT64",
            InferTensorContents {
                uint64_contents: vec![u64::MAX, 0],
                ..Default::default()
            },
            TensorData::U64(vec![u64::MAX, 0]),
        ),
        (
            "FP32",
            InferTensorContents {
                fp32_contents: vec![1.5, -2.0],
                ..Default::default()
            },
            TensorData::F32(vec![1.5, -2.0]),
        ),
        (
            "FP64",
            InferTensorContents {
                fp64_contents: vec![1e300, -2.0],
                ..Default::default()
            },
            TensorData::F64(vec![1e300, -2.0]),
        ),
    ];
    for (datatype, contents, want) in cases {
        let tensor =
            decode_one(datatype, contents.clone()).unwrap_or_else(|e| panic!("{datatype}: {e}"));
        assert_eq!(tensor.data, want, "{datatype}");
        assert_eq!(
            typed_contents(tensor.data),
            contents,
            "{datatype} encodes back"
        );
    }
}

#[test]
fn out_of_range_and_misplaced_values_are_errors() {
    let err = decode_one(
        "INT8",
        InferTensorContents {
            int_contents: vec![1, 128],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.contains("128") && err.contains("INT8"), "{err}");
    let err = decode_one(
        "FP32",
        InferTensorContents {
            fp64_contents: vec![1.0, 2.0],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        err.contains("fp32_contents") && err.contains("fp64_contents"),
        "{err}"
    );
    let err = decode_one(
        "FP16",
        InferTensorContents {
            fp32_contents: vec![1.0, 2.0],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.contains("raw_input_contents"), "{err}");
    let err = decode_one(
        "FP32",
        InferTensorContents {
            fp32_contents: vec![1.0],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.contains("needs 2 elements"), "{err}");
    let err = decode_input(input("x", "FP32", &[1, -2], None), Some(Bytes::new()))
        .map(|t| t.tensor)
        .unwrap_err()
        .to_string();
    assert!(err.contains("negative"), "{err}");
}

#[test]
fn raw_bytes_must_match_exactly_and_not_mix_with_contents() {
    let ok = decode_input(
        input("x", "FP16", &[2], None),
        Some(Bytes::from_static(&[0, 60, 0, 188])),
    )
    .unwrap();
    assert_eq!(
        ok.tensor.data,
        TensorData::F16(vec![half::f16::from_f32(1.0), half::f16::from_f32(-1.0)])
    );
    let err = decode_input(
        input("x", "FP16", &[2], None),
        Some(Bytes::from_static(&[0, 60, 0])),
    )
    .map(|t| t.tensor)
    .unwrap_err()
    .to_string();
    assert!(err.contains("needs 4 bytes but 3"), "{err}");
    let contents = InferTensorContents {
        fp32_contents: vec![1.0, 2.0],
        ..Default::default()
    };
    let err = decode_input(
        input("x", "FP32", &[2], Some(contents)),
        Some(Bytes::from_static(&[0; 8])),
    )
    .map(|t| t.tensor)
    .unwrap_err()
    .to_string();
    assert!(err.contains("use one form"), "{err}");
}

#[test]
fn timeout_parameter_is_microseconds() {
    let param = |p| {
        HashMap::from([(
            "timeout".to_string(),
            InferParameter {
                parameter_choice: Some(p),
            },
        )])
    };
    assert_eq!(
        timeout(&param(ParameterChoice::Int64Param(1500))),
        Ok(Some(Duration::from_micros(1500)))
    );
    assert_eq!(timeout(&param(ParameterChoice::Int64Param(0))), Ok(None));
    assert!(timeout(&param(ParameterChoice::Int64Param(-1))).is_err());
    assert!(timeout(&param(ParameterChoice::StringParam("1".into()))).is_err());
    assert_eq!(timeout(&HashMap::new()), Ok(None));
}

/// Moves `data` into the typed field for its datatype, widening 8/16-bit integers: the
/// inverse of `typed_data`, to check that decoding keeps every value.
fn typed_contents(data: TensorData) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v,
        TensorData::I8(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        TensorData::I16(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        TensorData::I32(v) => c.int_contents = v,
        TensorData::I64(v) => c.int64_contents = v,
        TensorData::U8(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        TensorData::U16(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        TensorData::U32(v) => c.uint_contents = v,
        TensorData::U64(v) => c.uint64_contents = v,
        TensorData::F32(v) => c.fp32_contents = v,
        TensorData::F64(v) => c.fp64_contents = v,
        other => panic!("no typed field for {:?}", other.dtype()),
    }
    c
}

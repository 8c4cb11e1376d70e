use super::*;

fn parse(s: &str) -> Result<FlatJson, String> {
    serde_json::from_str(s).map_err(|e| e.to_string())
}

#[test]
fn nested_arrays_give_shape() {
    let f = parse("[[1, 2, 3], [4, 5, 6]]").unwrap();
    assert_eq!(f.shape, vec![2, 3]);
    assert_eq!(f.values.len(), 6);
    assert_eq!(parse("[1.5, 2]").unwrap().shape, vec![2]);
    assert_eq!(parse("[]").unwrap().shape, vec![0]);
    assert_eq!(parse("7").unwrap().shape, Vec::<usize>::new());
}

#[test]
fn ragged_arrays_are_rejected() {
    assert!(parse("[[1, 2], [3]]").unwrap_err().contains("ragged"));
    assert!(parse("[[1, 2], 3]").unwrap_err().contains("ragged"));
    assert!(parse("[1, [2, 3]]").unwrap_err().contains("ragged"));
    assert!(parse("[[1], []]").unwrap_err().contains("ragged"));
    assert!(parse("[\"a\"]").is_err());
    assert!(parse("[null]").is_err());
}

#[test]
fn conversion_checks_range_and_kind() {
    let f = parse("[0, 255, 256]").unwrap();
    assert!(f
        .to_data(DataType::U8)
        .unwrap_err()
        .contains("element 2 is 256"));
    assert!(parse("[1.5]").unwrap().to_data(DataType::I64).is_err());
    assert_eq!(
        parse("[3.0, -2]").unwrap().to_data(DataType::I64).unwrap(),
        TensorData::I64(vec![3, -2])
    );
    assert!(parse("[true]").unwrap().to_data(DataType::F32).is_err());
    assert_eq!(
        parse("[true, 0]").unwrap().to_data(DataType::Bool).unwrap(),
        TensorData::Bool(vec![true, false])
    );
    let big = parse("[18446744073709551615]").unwrap();
    assert_eq!(
        big.to_data(DataType::U64).unwrap(),
        TensorData::U64(vec![u64::MAX])
    );
    assert!(big.to_data(DataType::I64).is_err());
}

#[test]
fn nested_serialization_follows_shape() {
    let data = TensorData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let s = serde_json::to_string(&Nested {
        shape: &[3, 2],
        data: &data,
    })
    .unwrap();
    assert_eq!(s, "[[1.0,2.0],[3.0,4.0],[5.0,6.0]]");
    let s = serde_json::to_string(&Nested {
        shape: &[6],
        data: &data,
    })
    .unwrap();
    assert_eq!(s, "[1.0,2.0,3.0,4.0,5.0,6.0]");
    let empty = TensorData::F32(vec![]);
    let s = serde_json::to_string(&Nested {
        shape: &[2, 0],
        data: &empty,
    })
    .unwrap();
    assert_eq!(s, "[[],[]]");
    let h = TensorData::F16(vec![f16::from_f32(0.5)]);
    assert_eq!(
        serde_json::to_string(&Nested {
            shape: &[1],
            data: &h
        })
        .unwrap(),
        "[0.5]"
    );
}

/// The decode before the fast walker existed: serde visitor into `FlatJson`, then
/// conversion. `decode_array` must give the same answers and the same messages.
fn reference(text: &str, dtype: DataType) -> Result<JsonArray, JsonArrayError> {
    let flat = parse(text).map_err(JsonArrayError::Invalid)?;
    let data = flat.to_data(dtype).map_err(JsonArrayError::Element)?;
    Ok(JsonArray {
        shape: flat.shape,
        data,
    })
}

const DTYPES: [DataType; 7] = [
    DataType::F32,
    DataType::F64,
    DataType::F16,
    DataType::I64,
    DataType::U8,
    DataType::I8,
    DataType::Bool,
];

#[test]
fn fast_path_matches_the_serde_path() {
    let texts = [
        "[[1, 2.5], [3, -4e2]]",
        "[0, 255, 256]",
        "[1.5]",
        "[true, 0, 1]",
        "[[1, 2], [3]]",
        "[\"a\"]",
        "[null]",
        "[1e400]",
        "[01]",
        "[1,]",
        "7",
        "[]",
        "[[],[]]",
        "[18446744073709551615, -9223372036854775809]",
        "[1] 2",
    ];
    for text in texts {
        for dtype in DTYPES {
            assert_eq!(
                decode_array(text, dtype),
                reference(text, dtype),
                "{text} as {dtype}"
            );
        }
    }
}

proptest::proptest! {
    /// Any text made of array punctuation and assorted scalars: same verdict, same
    /// message, same values as the serde path.
    #[test]
    fn fast_path_agrees_on_arbitrary_text(
        pieces in proptest::collection::vec(0usize..16, 0..24),
        dtype in proptest::sample::select(DTYPES.to_vec()),
    ) {
        const PIECES: [&str; 16] = [
            "[", "[", "]", "]", ",", ",", "1", "-2.5", "300", "true", " ", "null",
            "1e39", "-0", "\"x\"", "0.1",
        ];
        let text: String = pieces.iter().map(|&p| PIECES[p]).collect();
        proptest::prop_assert_eq!(decode_array(&text, dtype), reference(&text, dtype));
    }

    /// Arrays of digit soup (signs, points, exponents, commas, leading zeros, long
    /// literals): same verdict, message and values as the serde path, for every type.
    #[test]
    fn fast_path_agrees_on_number_soup(
        text in "\\[[0-9.eE+,-]{0,60}\\]",
        dtype in proptest::sample::select(DTYPES.to_vec()),
    ) {
        proptest::prop_assert_eq!(decode_array(&text, dtype), reference(&text, dtype));
    }

    /// Well-formed decimal arrays of any length and precision decode to the correctly
    /// rounded values (std's parser), for integer types as the serde path does.
    #[test]
    fn fast_path_agrees_on_decimals(
        values in proptest::collection::vec((proptest::prelude::any::<bool>(), 0u64..100_000_000_000_000_000, 0usize..25), 1..12),
    ) {
        let text = format!("[{}]", values.iter().map(|&(neg, m, point)| {
            // Zeros after the point (`0.000123`) where the point is left of every digit.
            let digits = format!("{m:0point$}");
            let (int, frac) = digits.split_at(digits.len() - point);
            let int = if int.is_empty() { "0" } else { int };
            let sign = if neg { "-" } else { "" };
            if frac.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") }
        }).collect::<Vec<_>>().join(","));
        let exact: Vec<f64> = text[1..text.len() - 1].split(',').map(|v| v.parse().unwrap()).collect();
        let shape = vec![exact.len()];
        let f64s = TensorData::F64(exact.clone());
        let f32s = TensorData::F32(exact.iter().map(|&v| v as f32).collect());
        proptest::prop_assert_eq!(decode_array(&text, DataType::F64), Ok(JsonArray { shape: shape.clone(), data: f64s }), "{}", text);
        proptest::prop_assert_eq!(decode_array(&text, DataType::F32), Ok(JsonArray { shape, data: f32s }), "{}", text);
        proptest::prop_assert_eq!(decode_array(&text, DataType::I64), reference(&text, DataType::I64), "{}", text);
    }

    /// FP32 from long literals: f32 values printed as 64-bit floats (17 digits, what
    /// Python clients send) and literals right next to the midpoints between two f32s,
    /// where a value a few f64 units off would round the other way: always the f32 that
    /// narrowing std's correctly rounded f64 gives.
    #[test]
    fn fp32_from_long_literals_narrows_like_the_exact_value(
        bits in 0x3a80_0000u32..0x4970_0000,
        last in 0u8..10,
        extra in proptest::sample::select(vec!["", "0", "1", "49", "5", "51", "9", "999"]),
        negative in proptest::prelude::any::<bool>(),
    ) {
        let x = f32::from_bits(bits);
        let mid = (x as f64 + f32::from_bits(bits + 1) as f64) / 2.0;
        let sign = if negative { "-" } else { "" };
        let mut near = format!("{mid}");
        if near.contains('.') && near.len() > 3 {
            near.pop();
            near.push(char::from(b'0' + last));
        }
        near.push_str(extra);
        let literals = [format!("{}", x as f64), format!("{mid}"), near];
        let text = format!("[{}]", literals.map(|l| format!("{sign}{l}")).join(","));
        let want: Vec<f32> = text[1..text.len() - 1]
            .split(',')
            .map(|v| v.parse::<f64>().unwrap() as f32)
            .collect();
        proptest::prop_assert_eq!(
            decode_array(&text, DataType::F32),
            Ok(JsonArray { shape: vec![3], data: TensorData::F32(want) }),
            "{}", text
        );
    }

    /// Nested encoding and flattening decode are inverse: same shape, same values.
    #[test]
    fn nested_round_trips(dims in proptest::collection::vec(1usize..4, 1..4), seed in proptest::prelude::any::<i32>()) {
        let count: usize = dims.iter().product();
        let values: Vec<i32> = (0..count as i32).map(|i| i.wrapping_mul(seed)).collect();
        let data = TensorData::I32(values);
        let text = serde_json::to_string(&Nested { shape: &dims, data: &data }).unwrap();
        let flat: FlatJson = serde_json::from_str(&text).unwrap();
        proptest::prop_assert_eq!(&flat.shape, &dims);
        proptest::prop_assert_eq!(flat.to_data(DataType::I32).unwrap(), data);
    }
}

use serde_json::Value;

use super::*;

fn decode(text: &str, dtype: DataType) -> Result<JsonArray, JsonArrayError> {
    decode_array(text, dtype)
}

fn message(text: &str, dtype: DataType) -> String {
    match decode(text, dtype) {
        Err(JsonArrayError::Invalid(m) | JsonArrayError::Element(m)) => m,
        Ok(a) => panic!("{text} as {dtype} was accepted: {a:?}"),
    }
}

#[test]
fn nested_arrays_give_shape() {
    let f = decode("[[1, 2, 3], [4, 5, 6]]", DataType::F32).unwrap();
    assert_eq!(f.shape, vec![2, 3]);
    assert_eq!(f.data.len(), 6);
    assert_eq!(decode("[1.5, 2]", DataType::F32).unwrap().shape, vec![2]);
    assert_eq!(decode("[]", DataType::F32).unwrap().shape, vec![0]);
    assert_eq!(
        decode("7", DataType::F32).unwrap().shape,
        Vec::<usize>::new()
    );
}

#[test]
fn ragged_arrays_are_rejected() {
    for text in ["[[1, 2], [3]]", "[[1, 2], 3]", "[1, [2, 3]]", "[[1], []]"] {
        assert!(
            matches!(decode(text, DataType::F32), Err(JsonArrayError::Invalid(m)) if m.contains("ragged")),
            "{text}"
        );
    }
    assert!(decode("[\"a\"]", DataType::F32).is_err());
    assert!(decode("[null]", DataType::F32).is_err());
}

#[test]
fn conversion_checks_range_and_kind() {
    assert!(message("[0, 255, 256]", DataType::U8).contains("element 2 is 256"));
    assert!(decode("[1.5]", DataType::I64).is_err());
    assert_eq!(
        decode("[3.0, -2]", DataType::I64).unwrap().data,
        TensorData::I64(vec![3, -2])
    );
    assert!(decode("[true]", DataType::F32).is_err());
    assert_eq!(
        decode("[true, 0]", DataType::Bool).unwrap().data,
        TensorData::Bool(vec![true, false])
    );
    let big = "[18446744073709551615]";
    assert_eq!(
        decode(big, DataType::U64).unwrap().data,
        TensorData::U64(vec![u64::MAX])
    );
    assert!(decode(big, DataType::I64).is_err());
}

/// Every refusal names what was expected, what came, and where (or which element).
#[test]
fn messages_name_expected_found_and_where() {
    use DataType::*;
    let cases: [(&str, DataType, &str); 14] = [
        ("[1, 2", F32, "expected ',' or ']' at line 1 column 6, found the end of the text"),
        ("[1, x]", F32, "expected a number, true, false or an array at line 1 column 5, found 'x'"),
        ("[1,]", F32, "expected a number, true, false or an array at line 1 column 4, found ']'"),
        ("[1] 2", F32, "expected the end of the text at line 1 column 5, found '2'"),
        ("[{\"a\": 1}]", F32, "expected a number, true, false or an array at line 1 column 2, found an object ('{')"),
        ("[[1, 2], [3]]", F32, "ragged nested array: dimension 1 has lengths 2 and 1"),
        ("[[1], 2]", F32, "ragged nested array: a number appears where an array was expected"),
        ("[1, [2]]", F32, "ragged nested array: an array appears where a number was expected"),
        ("[0, 255, 256]", U8, "element 2 is 256, which is not a valid UINT8"),
        ("[1,\n 2.5]", I64, "element 1 is 2.5, which is not a valid INT64"),
        ("[1, \"a\"]", F32, "element 1 is the string \"a\", which is not a valid FP32"),
        ("[null]", F32, "element 0 is null, which is not a valid FP32"),
        ("[1e400]", F64, "number 1e400 at line 1 column 2 is out of the range of a 64-bit float"),
        ("[01]", F32, "invalid number 01 at line 1 column 2 (JSON numbers are -?digits, an optional .digits and an optional exponent, with no leading zero)"),
    ];
    for (text, dtype, want) in cases {
        assert_eq!(message(text, dtype), want, "{text} as {dtype}");
    }
    assert_eq!(
        message("[\n[1],\n[2, 3]]", F32),
        "ragged nested array: dimension 1 has lengths 1 and 2"
    );
    assert_eq!(
        message("[\n  1,\n  -]", F32),
        "invalid number - at line 3 column 3 (JSON numbers are -?digits, an optional .digits and an optional exponent, with no leading zero)"
    );
    let strings: [(&str, &str); 5] = [
        ("[\"a\", 3]", "element 1 is 3, which is not a valid BYTES element (a JSON string)"),
        ("[\"a\", null]", "element 1 is null, which is not a valid BYTES element (a JSON string)"),
        ("[\"a\", \"b", "invalid string at line 1 column 7: it has no closing quote"),
        ("[\"\\x\"]", "invalid string at line 1 column 2: it holds an unknown escape (JSON has \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)"),
        ("[\"\\ud83c\"]", "invalid string at line 1 column 2: it holds a \\u escape of a lone UTF-16 surrogate, which is no character"),
    ];
    for (text, want) in strings {
        assert_eq!(message(text, Bytes), want, "{text}");
    }
}

#[test]
fn nesting_deeper_than_the_limit_is_refused_with_its_own_message() {
    let ok = format!(
        "{}1{}",
        "[".repeat(MAX_JSON_DEPTH),
        "]".repeat(MAX_JSON_DEPTH)
    );
    assert_eq!(
        decode(&ok, DataType::F32).unwrap().shape,
        vec![1; MAX_JSON_DEPTH]
    );
    let deep = format!(
        "{}1{}",
        "[".repeat(MAX_JSON_DEPTH + 1),
        "]".repeat(MAX_JSON_DEPTH + 1)
    );
    assert_eq!(message(&deep, DataType::F32), depth_error());
    // Unclosed and far deeper: refused at the limit, before reading on.
    assert_eq!(message(&"[".repeat(100_000), DataType::F32), depth_error());
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

/// serde_json's reading of `text` as tensor data: the oracle the walker is held to.
/// `None` when serde_json refuses the text (the walker must refuse it too, in its own
/// words); otherwise the tree is walked in document order by the walker's rules
/// (rectangular nesting, leaves at one depth, at most [`MAX_JSON_DEPTH`] arrays deep), and
/// the walker must agree exactly: same values and shape, or the same kind of refusal (an
/// element refusal naming the same element).
fn reference(text: &str, dtype: DataType) -> Option<Result<JsonArray, JsonArrayError>> {
    let value: Value = serde_json::from_str(text).ok()?;
    let mut acc = Reference::default();
    Some(acc.visit(&value, 0, dtype).map(|()| {
        let rank = acc.leaf_depth.unwrap_or(acc.dims.len()).min(acc.dims.len());
        let numbers = acc.numbers;
        JsonArray {
            shape: acc.dims[..rank].iter().map(|d| d.unwrap_or(0)).collect(),
            data: dispatch_dtype!(dtype,
                T => T::wrap(numbers.iter().filter_map(|&n| T::from_json(n)).collect()),
                bytes => TensorData::Bytes(acc.strings)),
        }
    }))
}

#[derive(Default)]
struct Reference {
    dims: Vec<Option<usize>>,
    leaf_depth: Option<usize>,
    numbers: Vec<JsonNumber>,
    strings: ByteStrings,
}

impl Reference {
    fn visit(&mut self, v: &Value, depth: usize, dtype: DataType) -> Result<(), JsonArrayError> {
        let invalid = |m: &str| Err(JsonArrayError::Invalid(m.to_string()));
        if let Value::Array(items) = v {
            if self.leaf_depth.is_some_and(|d| d <= depth) || depth >= MAX_JSON_DEPTH {
                return invalid("array");
            }
            for item in items {
                self.visit(item, depth + 1, dtype)?;
            }
            if self.dims.len() <= depth {
                self.dims.resize(depth + 1, None);
            }
            match self.dims[depth] {
                Some(seen) if seen != items.len() => return invalid("ragged"),
                _ => self.dims[depth] = Some(items.len()),
            }
            return Ok(());
        }
        if self.dims.len() > depth || self.leaf_depth.is_some_and(|d| d != depth) {
            return invalid("ragged");
        }
        self.leaf_depth = Some(depth);
        let index = self.numbers.len() + self.strings.len();
        let wrong = Err(JsonArrayError::Element(format!("element {index} is ")));
        let n = match v {
            Value::Object(_) => return invalid("object"),
            Value::String(s) if dtype == DataType::Bytes => {
                self.strings.push(s.as_bytes());
                return Ok(());
            }
            Value::Bool(b) => JsonNumber::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => JsonNumber::Int(i),
                (None, Some(u), _) => JsonNumber::UInt(u),
                (None, None, Some(f)) => JsonNumber::Float(f),
                _ => unreachable!("serde_json numbers are i64, u64 or f64"),
            },
            _ => return wrong,
        };
        if !dispatch_dtype!(dtype, T => T::from_json(n).is_some(), bytes => false) {
            return wrong;
        }
        self.numbers.push(n);
        Ok(())
    }
}

/// The walker's verdict on `text` agrees with [`reference`]'s.
fn agrees(text: &str, dtype: DataType) -> Result<(), String> {
    let got = decode(text, dtype);
    let ok = match (&got, reference(text, dtype)) {
        (Err(_), None) => true,
        (got, Some(Ok(want))) => got.as_ref() == Ok(&want),
        (Err(JsonArrayError::Invalid(_)), Some(Err(JsonArrayError::Invalid(_)))) => true,
        (Err(JsonArrayError::Element(m)), Some(Err(JsonArrayError::Element(prefix)))) => {
            m.starts_with(prefix.as_str())
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{text} as {dtype}: walker {got:?}, serde_json {:?}",
            reference(text, dtype)
        ))
    }
}

const DTYPES: [DataType; 8] = [
    DataType::F32,
    DataType::F64,
    DataType::F16,
    DataType::I64,
    DataType::U8,
    DataType::I8,
    DataType::Bool,
    DataType::Bytes,
];

#[test]
fn the_walker_agrees_with_serde_json() {
    let texts = [
        "[[1, 2.5], [3, -4e2]]",
        "[0, 255, 256]",
        "[1.5]",
        "[true, 0, 1]",
        "[[1, 2], [3]]",
        "[\"a\"]",
        "[\"a\", [\"b\"]]",
        "[null]",
        "[1e400]",
        "[01]",
        "[1,]",
        "7",
        "[]",
        "[[],[]]",
        "[[], 1]",
        "[[[]], [1]]",
        "[18446744073709551615, -9223372036854775809]",
        "[1] 2",
        "[{}]",
        "",
    ];
    for text in texts {
        for dtype in DTYPES {
            agrees(text, dtype).unwrap();
        }
    }
}

proptest::proptest! {
    /// Any text made of array punctuation and assorted scalars: same verdict and values
    /// as serde_json's reading.
    #[test]
    fn the_walker_agrees_on_arbitrary_text(
        pieces in proptest::collection::vec(0usize..18, 0..24),
        dtype in proptest::sample::select(DTYPES.to_vec()),
    ) {
        const PIECES: [&str; 18] = [
            "[", "[", "]", "]", ",", ",", "1", "-2.5", "300", "true", " ", "null",
            "1e39", "-0", "\"x\"", "0.1", "\"\\u00e9\"", "{}",
        ];
        let text: String = pieces.iter().map(|&p| PIECES[p]).collect();
        proptest::prop_assert!(agrees(&text, dtype).is_ok(), "{}", agrees(&text, dtype).unwrap_err());
    }

    /// Arrays of digit soup (signs, points, exponents, commas, leading zeros, long
    /// literals): same verdict and values as serde_json, for every type.
    #[test]
    fn the_walker_agrees_on_number_soup(
        text in "\\[[0-9.eE+,-]{0,60}\\]",
        dtype in proptest::sample::select(DTYPES.to_vec()),
    ) {
        proptest::prop_assert!(agrees(&text, dtype).is_ok(), "{}", agrees(&text, dtype).unwrap_err());
    }
    /// Well-formed decimal arrays of any length and precision decode to the correctly
    /// rounded values (std's parser), for integer types as serde_json reads them.
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
        proptest::prop_assert!(agrees(&text, DataType::I64).is_ok(), "{}", text);
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
        let array = decode_array(&text, DataType::I32).unwrap();
        proptest::prop_assert_eq!(&array.shape, &dims);
        proptest::prop_assert_eq!(array.data, data);
    }
}

#[test]
fn field_columns_are_typed_by_what_they_hold() {
    let column = |text: &str| decode_column(text);
    assert_eq!(column("[1, -2]"), Ok(TensorData::I64(vec![1, -2])));
    assert_eq!(
        column("[1, 2.5, 3]"),
        Ok(TensorData::F64(vec![1.0, 2.5, 3.0]))
    );
    assert_eq!(column("[1e2]"), Ok(TensorData::F64(vec![100.0])));
    assert_eq!(
        column("[18446744073709551615]"),
        Ok(TensorData::F64(vec![18446744073709551615.0]))
    );
    assert_eq!(column("[]"), Ok(TensorData::I64(vec![])));
    assert_eq!(
        column(r#"["a", "\u00e9"]"#),
        Ok(TensorData::Bytes(["a", "é"].iter().collect()))
    );
    let refused = |text: &str| match column(text) {
        Err(JsonArrayError::Invalid(m) | JsonArrayError::Element(m)) => m,
        Ok(data) => panic!("{text} was accepted: {data:?}"),
    };
    assert_eq!(
        refused(r#"["u1", 7]"#),
        "mixes strings and numbers: row 0 is a string but row 1 is the number 7; a field takes a number or a string, the same kind for every row"
    );
    assert_eq!(
        refused(r#"[1.0, "2", 3.0]"#),
        "mixes strings and numbers: row 0 is a number but row 1 is the string \"2\"; a field takes a number or a string, the same kind for every row"
    );
    assert_eq!(
        refused("[1, true]"),
        "row 1 is true, which is no field value (a string or a number)"
    );
    assert_eq!(
        refused("[null]"),
        "row 0 is null, which is no field value (a string or a number)"
    );
    assert_eq!(
        refused("[1.0, [2.0], 3.0]"),
        "ragged nested array: an array appears where a value was expected"
    );
    assert_eq!(refused("[[1], [2]]"), "got an array of shape [2, 1]");
    assert_eq!(refused("7"), "got one value, not an array");
    assert_eq!(
        refused(r#"["a", "b"#),
        "invalid string at line 1 column 7: it has no closing quote"
    );
}

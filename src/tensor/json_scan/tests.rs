use super::*;

fn walk_f64(s: &str) -> Option<(Vec<usize>, Vec<f64>)> {
    let mut out = Vec::new();
    walk::<Vec<f64>>(s.as_bytes(), &mut out)
        .ok()
        .map(|shape| (shape, out))
}

#[test]
fn numbers_follow_the_json_grammar() {
    for ok in [
        "0",
        "-0",
        "1.5",
        "-2e3",
        "1E+2",
        "3.25e-1",
        "18446744073709551616",
    ] {
        assert!(walk_f64(ok).is_some(), "{ok}");
    }
    for bad in [
        "01", "1.", ".5", "+1", "1e", "--1", "NaN", "inf", "1e400", "0x1",
    ] {
        assert!(walk_f64(bad).is_none(), "{bad}");
    }
}

#[test]
fn integers_convert_like_the_serde_path() {
    let mut out = Vec::new();
    assert_eq!(
        walk::<Vec<i64>>(b"[-9223372036854775808, 3.0]", &mut out),
        Ok(vec![2])
    );
    assert_eq!(out, vec![i64::MIN, 3]);
    assert!(walk::<Vec<i64>>(b"[-18446744073709551617]", &mut Vec::new()).is_err());
    assert!(walk::<Vec<u8>>(b"[256]", &mut Vec::new()).is_err());
    let mut out = Vec::new();
    assert!(walk::<Vec<u64>>(b"[18446744073709551615]", &mut out).is_ok());
    assert_eq!(out, vec![u64::MAX]);
    assert!(walk::<Vec<f32>>(b"[true]", &mut Vec::new()).is_err());
    let mut out = Vec::new();
    assert!(walk::<Vec<bool>>(b"[true, 0, 1, false]", &mut out).is_ok());
    assert_eq!(out, vec![true, false, true, false]);
}

#[test]
fn shapes_and_ragged_nesting() {
    assert_eq!(walk_f64(" [ [1 , 2] ,[3,4] ] ").unwrap().0, vec![2, 2]);
    assert_eq!(walk_f64("[]").unwrap().0, vec![0]);
    assert_eq!(walk_f64("[[],[]]").unwrap().0, vec![2, 0]);
    assert_eq!(walk_f64("7").unwrap().0, Vec::<usize>::new());
    for bad in [
        "[[1, 2], [3]]",
        "[[1], 2]",
        "[1, [2]]",
        "[[1], []]",
        "[1,]",
        "[1 2]",
    ] {
        assert!(walk_f64(bad).is_none(), "{bad}");
    }
    for bad in ["[1] x", "[null]", "[\"1\"]", "[{}]", "[1", "]"] {
        assert!(walk_f64(bad).is_none(), "{bad}");
    }
}

#[test]
fn f32_narrows_from_f64_like_the_serde_path() {
    let mut out = Vec::new();
    walk::<Vec<f32>>(b"[0.1, 16777217, 1e39, -3.4028235e38]", &mut out).unwrap();
    assert_eq!(out, vec![0.1f32, 16777216.0, f32::INFINITY, f32::MIN]);
}

fn walk_strings(text: &[u8]) -> Option<(Vec<usize>, Vec<Vec<u8>>)> {
    let mut out = ByteStrings::new();
    let shape = walk(text, &mut out).ok()?;
    Some((shape, out.iter().map(<[u8]>::to_vec).collect()))
}

/// What serde_json makes of `text` as a (flat) array of strings.
fn serde_strings(text: &[u8]) -> Option<Vec<Vec<u8>>> {
    let strings: Vec<String> = serde_json::from_slice(text).ok()?;
    Some(strings.into_iter().map(String::into_bytes).collect())
}

/// `s` as a JSON string with every character written as a `\u` escape (surrogate pairs
/// beyond the BMP), as some clients write non-ASCII text.
fn all_escaped(s: &str) -> String {
    let mut out = String::from("\"");
    for unit in s.encode_utf16() {
        out.push_str(&format!("\\u{unit:04X}"));
    }
    out.push('"');
    out
}

#[test]
fn strings_decode_their_escapes_like_serde() {
    let text =
        r#"[ "plain", "", "q\"b\\s\/", "\b\f\n\r\t", "\u00e9\u4e16", "\ud83c\udf0d", "Grüße 🌍" ]"#;
    let text = text.as_bytes();
    let (shape, strings) = walk_strings(text).expect("valid");
    assert_eq!(shape, vec![7]);
    assert_eq!(Some(strings), serde_strings(text));
    let (shape, strings) = walk_strings(br#""one""#).unwrap();
    assert_eq!((shape, strings), (vec![], vec![b"one".to_vec()]));
    assert_eq!(
        walk_strings(br#"[["a","b"],["c","d"]]"#).unwrap().0,
        vec![2, 2]
    );
}

#[test]
fn strings_refuse_what_serde_refuses() {
    for bad in [
        &br#"["\ud83c"]"#[..],
        br#"["\ud83cx"]"#,
        br#"["\ud83c\u0041"]"#,
        br#"["\udf0d"]"#,
        br#"["\u12g4"]"#,
        br#"["\x"]"#,
        br#"["a"#,
        b"[\"tab\there\"]",
        b"[\"nl\nhere\"]",
        b"[\"\xff\"]",
        b"[\"\xc3\"]",
        br#"["a", 1]"#,
        br#"["a", null]"#,
        br#"[["a"], "b"]"#,
        br#"["a",]"#,
    ] {
        assert!(
            walk_strings(bad).is_none(),
            "{}",
            String::from_utf8_lossy(bad)
        );
        assert!(
            serde_strings(bad).is_none() || bad.starts_with(b"[["),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

/// The word-at-a-time string scan stops where serde stops: a quote, backslash, control
/// character or non-ASCII byte at every offset of strings that cross several words, and
/// strings cut short at every length.
#[test]
fn strings_agree_with_serde_whatever_byte_sits_at_any_offset() {
    let specials: [&[u8]; 10] = [
        b"\"",
        b"\\\\",
        b"\\n",
        b"\x00",
        b"\x1f",
        b"\x20",
        b"\x7f",
        "\u{e9}".as_bytes(),
        b"\xc3",
        b"\xff",
    ];
    let mut checked = 0;
    for len in 0..26 {
        for special in specials {
            for at in 0..=len {
                let mut s = vec![b'a'; len];
                s.splice(at..at, special.iter().copied());
                let mut text = b"[\"".to_vec();
                text.extend_from_slice(&s);
                text.extend_from_slice(b"\", \"z\"]");
                let walked = walk_strings(&text).map(|(_, strings)| strings);
                assert_eq!(
                    walked,
                    serde_strings(&text),
                    "{}",
                    String::from_utf8_lossy(&text)
                );
                // Cut anywhere inside the first string: never a string, never a panic.
                for cut in 1..text.len() - 7 {
                    assert_eq!(walk_strings(&text[..cut]), None);
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 2_000, "{checked}");
    assert_eq!(
        bytes_below_space(u64::from_le_bytes(*b"\x00\x1f \x7f\x80\x9f\xa0a")),
        0x0000_0000_0000_8080
    );
}

#[test]
fn strings_are_not_read_past_the_array_depth_limit() {
    let deep = format!("{}\"a\"{}", "[".repeat(65), "]".repeat(65));
    assert!(walk_strings(deep.as_bytes()).is_none());
    let ok = format!("{}\"a\"{}", "[".repeat(64), "]".repeat(64));
    assert_eq!(walk_strings(ok.as_bytes()).unwrap().0, vec![1; 64]);
}

proptest::proptest! {
    #[test]
    fn any_string_decodes_as_serde_wrote_it(items in proptest::collection::vec(".*", 0..8)) {
        let text = serde_json::to_vec(&items).unwrap();
        let expected: Vec<Vec<u8>> = items.iter().map(|s| s.as_bytes().to_vec()).collect();
        let (shape, strings) = walk_strings(&text).expect("serde's own output");
        proptest::prop_assert_eq!(shape, vec![items.len()]);
        proptest::prop_assert_eq!(&strings, &expected);
        let escaped: Vec<String> = items.iter().map(|s| all_escaped(s)).collect();
        let text = format!("[{}]", escaped.join(","));
        let (_, strings) = walk_strings(text.as_bytes()).expect("escaped");
        proptest::prop_assert_eq!(&strings, &expected);
    }
}

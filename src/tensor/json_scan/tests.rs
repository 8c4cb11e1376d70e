use super::*;

fn walk_f64(s: &str) -> Option<(Vec<usize>, Vec<f64>)> {
    let mut out = Vec::new();
    walk::<f64>(s.as_bytes(), &mut out).map(|shape| (shape, out))
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
        walk::<i64>(b"[-9223372036854775808, 3.0]", &mut out),
        Some(vec![2])
    );
    assert_eq!(out, vec![i64::MIN, 3]);
    assert!(walk::<i64>(b"[-18446744073709551617]", &mut Vec::new()).is_none());
    assert!(walk::<u8>(b"[256]", &mut Vec::new()).is_none());
    let mut out = Vec::new();
    assert!(walk::<u64>(b"[18446744073709551615]", &mut out).is_some());
    assert_eq!(out, vec![u64::MAX]);
    assert!(walk::<f32>(b"[true]", &mut Vec::new()).is_none());
    let mut out = Vec::new();
    assert!(walk::<bool>(b"[true, 0, 1, false]", &mut out).is_some());
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
    walk::<f32>(b"[0.1, 16777217, 1e39, -3.4028235e38]", &mut out).unwrap();
    assert_eq!(out, vec![0.1f32, 16777216.0, f32::INFINITY, f32::MIN]);
}

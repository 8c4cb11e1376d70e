//! Large arrays (of numbers or strings) lifted out of a JSON body before serde parses the
//! rest.
//!
//! To capture an array as a `RawValue`, serde_json scans every number in it; the tensor
//! walker then reads the same text again. For a body that is mostly one large array that
//! first pass cost about as much as the decoding itself. Here a scan that looks only for
//! brackets (in 32-byte blocks the compiler vectorises) finds where each array ends, the
//! rest of the body is copied into a small skeleton with a placeholder string
//! (`"\u0000<k>"`) in each array's place, and serde parses only the skeleton.
//!
//! String arrays are lifted too: serde would scan each string once to capture the array
//! and the tensor walker again to decode it. Arrays holding objects, and bodies with an
//! escaped NUL outside the lifted arrays (the placeholder's mark), stay as they are. Callers decode the original body again on any
//! error, so answers and error messages are exactly those of the plain path.

use std::io::Write;

/// Arrays shorter than this stay in the skeleton: lifting pays off for large ones only.
const MIN_LIFTED_BYTES: usize = 512;

/// A body with its large arrays taken out.
pub struct Lifted<'a> {
    /// The body, each lifted array replaced by its placeholder.
    pub skeleton: Vec<u8>,
    /// The lifted arrays' text, by placeholder number (not checked to be UTF-8: the
    /// tensor decoder reads bytes, takes ASCII digits only for numbers and checks strings).
    pub arrays: Vec<&'a [u8]>,
}

/// The number in a placeholder (`"\u0000<k>"`); `None` for any other raw value.
fn placeholder(raw: &str) -> Option<usize> {
    raw.strip_prefix("\"\\u0000")?
        .strip_suffix('"')?
        .parse()
        .ok()
}

/// Turns the raw values of a parsed body back into text: a placeholder into the array it
/// stands for, anything else into itself. Afterwards it tells whether every lifted array
/// was claimed: one lifted from elsewhere (a parameter named `data`) must send the caller
/// back to the plain parse.
pub struct Resolver<'l, 'a> {
    lifted: Option<&'l Lifted<'a>>,
    resolved: usize,
}

impl<'l, 'a> Resolver<'l, 'a> {
    pub fn new(lifted: Option<&'l Lifted<'a>>) -> Self {
        Resolver {
            lifted,
            resolved: 0,
        }
    }

    /// The text `raw` stands for.
    pub fn text<'r>(&mut self, raw: &'r str) -> Result<&'r [u8], &'static str>
    where
        'a: 'r,
    {
        match self.lifted.zip(placeholder(raw)) {
            Some((lifted, k)) => {
                self.resolved += 1;
                lifted.arrays.get(k).copied().ok_or("unknown lifted array")
            }
            None => Ok(raw.as_bytes()),
        }
    }

    /// Whether every lifted array was resolved (trivially so when nothing was lifted).
    pub fn all_resolved(&self) -> bool {
        self.lifted
            .is_none_or(|lifted| lifted.arrays.len() == self.resolved)
    }
}

/// Lifts the large arrays that are values of the keys `wanted` accepts out of
/// `json`; `None` when there is none (or the body has the placeholder's mark), so the
/// caller parses `json` as it is.
pub fn lift(json: &[u8], wanted: impl Fn(&[u8]) -> bool) -> Option<Lifted<'_>> {
    // Small bodies (one-row requests) cannot hold a large array: no scan at all.
    if json.len() < MIN_LIFTED_BYTES {
        return None;
    }
    let mut skeleton = Vec::new();
    let mut arrays = Vec::new();
    // json[..copied] is in the skeleton already.
    let mut copied = 0;
    let mut i = 0;
    while i < json.len() {
        if json[i] != b'"' {
            i += 1;
            continue;
        }
        let end = string_end(json, i)?;
        let key = &json[i + 1..end - 1];
        i = skip_ws(json, end);
        if json.get(i) != Some(&b':') {
            continue;
        }
        i = skip_ws(json, i + 1);
        if !wanted(key) || json.get(i) != Some(&b'[') {
            continue;
        }
        let Some(end) = array_end(json, i) else {
            continue;
        };
        if end - i < MIN_LIFTED_BYTES {
            continue;
        }
        let text = &json[i..end];
        skeleton.extend_from_slice(&json[copied..i]);
        // Writing into a Vec cannot fail.
        let _ = write!(skeleton, "\"\\u0000{}\"", arrays.len());
        arrays.push(text);
        copied = end;
        i = end;
    }
    if arrays.is_empty() {
        return None;
    }
    skeleton.extend_from_slice(&json[copied..]);
    Some(Lifted { skeleton, arrays })
}

/// The index after the string starting at `json[start] == '"'`; `None` when it does not
/// end or holds an escaped NUL (which a placeholder could be confused with).
fn string_end(json: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match *json.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                if json.get(i + 1..i + 6) == Some(b"u0000") {
                    return None;
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = json.get(i) {
        i += 1;
    }
    i
}

/// Bytes per block of the bracket scan.
const BLOCK: usize = 32;

/// Whether `block` may hold a bracket, brace or quote (the byte loop decides which).
/// Written as one branch-free byte operation per byte so that it compiles to a few
/// vector instructions: a `matches!` per byte stayed a scalar loop and took ~16× longer.
#[inline]
fn may_hold_special(block: &[u8; BLOCK]) -> bool {
    block
        .iter()
        .map(|&c| {
            // Setting bit 5 turns `[` and `]` into `{` and `}`; a quote stays a quote.
            let folded = c | 0x20;
            u8::from(folded == b'{') | u8::from(folded == b'}') | u8::from(c == b'"')
        })
        .fold(0, |any, hit| any | hit)
        != 0
}

/// The index after the array starting at `json[start] == '['`, if it closes and holds no
/// object; strings in it are skipped whole, so a bracket inside one is text.
fn array_end(json: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < json.len() {
        // Whole blocks without a bracket or quote are skipped in one vectorised test.
        if let Some(block) = json.get(i..i + BLOCK).and_then(|b| b.try_into().ok()) {
            if !may_hold_special(block) {
                i += BLOCK;
                continue;
            }
        }
        let stop = (i + BLOCK).min(json.len());
        while i < stop {
            match json[i] {
                b'[' => depth += 1,
                b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                // The string's end may lie past this block: the next block starts there.
                b'"' => {
                    i = quoted_end(json, i)?;
                    continue;
                }
                b'{' | b'}' => return None,
                _ => {}
            }
            i += 1;
        }
    }
    None
}

/// The index after the string starting at `json[start] == '"'` (escapes skipped unread:
/// the tensor decoder checks them); `None` when it does not end.
fn quoted_end(json: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        let at = i + memchr::memchr2(b'"', b'\\', json.get(i..)?)?;
        if json[at] == b'"' {
            return Some(at + 1);
        }
        i = at + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_test_sees_every_bracket_brace_and_quote_and_no_number_byte() {
        let numbers = *b"-0.5, 1e+3,\t2E-7\n 98765432 ,,.17";
        assert!(!may_hold_special(&numbers));
        for special in *b"[]{}\"" {
            for at in 0..BLOCK {
                let mut block = numbers;
                block[at] = special;
                assert!(may_hold_special(&block), "{} at {at}", special as char);
            }
        }
    }

    fn big(n: usize) -> String {
        let numbers: Vec<String> = (0..n).map(|i| format!("{}.25", i as f32 - 7.0)).collect();
        format!("[{}]", numbers.join(", "))
    }

    #[test]
    fn lifts_large_arrays_under_the_key_and_resolves_them() {
        let data = big(300);
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":[300],"datatype":"FP32","data":{data}}}],"parameters":{{"data":[1,2]}}}}"#
        );
        let lifted = lift(body.as_bytes(), |k| k == b"data").expect("lifted");
        assert_eq!(lifted.arrays, vec![data.as_bytes()]);
        let skeleton = std::str::from_utf8(&lifted.skeleton).unwrap();
        assert!(
            skeleton.contains(r#""data":"\u00000""#) && skeleton.contains(r#""data":[1,2]"#),
            "{skeleton}"
        );
        assert_eq!(placeholder(r#""\u00000""#), Some(0));
        assert_eq!(placeholder(r#""\u000012""#), Some(12));
        assert_eq!(placeholder("[1,2]"), None);
    }

    #[test]
    fn lifts_string_arrays_whole_whatever_their_strings_hold() {
        let strings: Vec<String> = (0..100).map(|i| format!(r#""u{i} ] [ \" \\""#)).collect();
        let data = format!("[{}]", strings.join(","));
        let body = format!(r#"{{"inputs":[{{"name":"s","data":{data},"shape":[100]}}]}}"#);
        let lifted = lift(body.as_bytes(), |k| k == b"data").expect("lifted");
        assert_eq!(lifted.arrays, vec![data.as_bytes()]);
        // A string that never ends: nothing is lifted.
        let open = format!(r#"{{"data":{}"x]}}"#, &data[..data.len() - 1]);
        assert!(lift(open.as_bytes(), |k| k == b"data").is_none());
    }

    #[test]
    fn leaves_small_object_holding_and_unclosed_arrays_and_marked_bodies() {
        let data = big(300);
        for body in [
            r#"{"data":[1,2,3]}"#.to_string(),
            format!(r#"{{"data":{}{{}}]}}"#, &data[..data.len() - 1]),
            format!(r#"{{"data":{}"#, &data[..data.len() - 1]),
            format!(r#"{{"name":"a\u0000","data":{data}}}"#),
            format!(r#"{{"shape":{data}}}"#),
        ] {
            assert!(lift(body.as_bytes(), |k| k == b"data").is_none(), "{body}");
        }
        // Other keys: nested arrays, each closing bracket counted; not the bare array.
        let nested = format!("[{data}, {data}]");
        let body = format!(r#"{{"inputs":{{"x":{nested},"y":{data}}}}}"#);
        assert!(lift(format!(r#"{{"inputs":{nested}}}"#).as_bytes(), |k| k
            != b"inputs")
        .is_none());
        let lifted = lift(body.as_bytes(), |k| k != b"inputs").expect("lifted");
        assert_eq!(lifted.arrays, vec![nested.as_bytes(), data.as_bytes()]);
    }
}

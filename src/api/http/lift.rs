//! Tensor arrays (of numbers or strings) lifted out of a JSON body before serde parses the
//! rest, so the tensor walker is the only reader of tensor data.
//!
//! To capture an array as a `RawValue`, serde_json scans every number in it; the tensor
//! walker then reads the same text again, and a syntax error inside the array would be
//! serde's to word. Here a scan that looks only for brackets (in 32-byte blocks the
//! compiler vectorises) finds where each array ends, the rest of the body is copied into a
//! skeleton with a placeholder string (`"\u0000<k>"`) in each array's place, and serde
//! parses only the skeleton.
//!
//! Only arrays at the places a caller names (an input's `data`, a `/predict` input) are
//! lifted, where the request takes raw JSON, so a placeholder is never of a wrong type.
//! Arrays holding objects, and bodies with an escaped NUL outside the lifted arrays (the
//! placeholder's mark), stay as they are. [`Lifted::error`] words the skeleton's syntax
//! errors at the body's own line and column, so messages are those of the plain parse.

use std::cell::Cell;
use std::io::Write;

use crate::tensor::{bytes_equal, decode_strings_prefix, JsonArray};

/// A body with its large arrays taken out.
pub struct Lifted<'a> {
    /// The body, each lifted array replaced by its placeholder.
    pub skeleton: Vec<u8>,
    /// The lifted arrays' text, by placeholder number (not checked to be UTF-8: the
    /// tensor decoder reads bytes, takes ASCII digits only for numbers and checks strings).
    pub arrays: Vec<&'a [u8]>,
    /// By placeholder number, the array already decoded where the lift was asked to decode
    /// string arrays (see [`Strings`]): read once, to find its end and its strings together.
    decoded: Vec<Cell<Option<JsonArray>>>,
    /// Where each placeholder ends in the skeleton, and how many bytes longer its array
    /// was (fewer for a short array).
    moved: Vec<(usize, isize)>,
    body: &'a [u8],
    /// The deepest nesting of arrays and objects in the body, counted as
    /// [`check_depth`](crate::tensor::check_depth) counts it: the scan that lifts reads
    /// every byte anyway, so a caller need not read the body once more for the limit.
    pub deepest: usize,
}

impl Lifted<'_> {
    /// serde_json's error `e` for the skeleton, worded as the plain parse of the body would
    /// word it: the same message at the body's own line and column.
    pub fn error(&self, e: &serde_json::Error) -> String {
        let message = e.to_string();
        let at = format!(" at line {} column {}", e.line(), e.column());
        let Some(what) = message.strip_suffix(&at).filter(|_| e.line() > 0) else {
            return message;
        };
        // serde_json counts columns from the start of the line: the byte offset in the
        // skeleton, then in the body (later by every array lifted before it).
        let line_start = |text: &[u8], line: usize| -> usize {
            text.iter()
                .enumerate()
                .filter(|&(_, &c)| c == b'\n')
                .nth(line.wrapping_sub(2))
                .map_or(0, |(i, _)| i + 1)
        };
        let offset = line_start(&self.skeleton, e.line()) + e.column();
        let shift: isize = self
            .moved
            .iter()
            .take_while(|&&(end, _)| end <= offset)
            .map(|&(_, longer)| longer)
            .sum();
        let offset = offset.saturating_add_signed(shift).min(self.body.len());
        let before = &self.body[..offset];
        let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
        let column = offset - line_start(self.body, line);
        format!("{what} at line {line} column {column}")
    }
}

/// The number in a placeholder (`"\u0000<k>"`); `None` for any other raw value.
pub fn placeholder(raw: &str) -> Option<usize> {
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
        Ok(self.resolve(raw)?.0)
    }

    /// The text `raw` stands for, and the array the lift decoded from it (a string array,
    /// once: a second call for the same placeholder gets the text alone).
    pub fn resolve<'r>(
        &mut self,
        raw: &'r str,
    ) -> Result<(&'r [u8], Option<JsonArray>), &'static str>
    where
        'a: 'r,
    {
        match self.lifted.zip(placeholder(raw)) {
            Some((lifted, k)) => {
                self.resolved += 1;
                let text = lifted
                    .arrays
                    .get(k)
                    .copied()
                    .ok_or("unknown lifted array")?;
                Ok((text, lifted.decoded.get(k).and_then(Cell::take)))
            }
            None => Ok((raw.as_bytes(), None)),
        }
    }

    /// Whether every lifted array was resolved (trivially so when nothing was lifted).
    pub fn all_resolved(&self) -> bool {
        self.lifted
            .is_none_or(|lifted| lifted.arrays.len() == self.resolved)
    }
}

/// Where a key sits in the body: under which key of the outermost object, and how many
/// objects deep (1 for the outermost object's own keys).
#[derive(Debug, Clone, Copy)]
pub struct Place<'k> {
    pub top: &'k [u8],
    pub key: &'k [u8],
    pub depth: usize,
}

/// What the lift does with an array of strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strings {
    /// Finds its end only; the caller decodes the text.
    Skip,
    /// Decodes it as BYTES while finding its end (see [`Resolver::resolve`]): where every
    /// string array becomes a BYTES tensor (V2 `data`), this reads each string once
    /// instead of twice.
    Decode,
}

/// Lifts the large arrays that are values of the keys `wanted` accepts out of
/// `json`; `None` when there is none (or the body has the placeholder's mark), so the
/// caller parses `json` as it is.
pub fn lift<'a>(
    json: &'a [u8],
    strings: Strings,
    wanted: impl Fn(Place) -> bool,
) -> Option<Lifted<'a>> {
    let mut skeleton = Vec::new();
    let mut arrays = Vec::new();
    let mut decoded = Vec::new();
    let mut moved = Vec::new();
    // json[..copied] is in the skeleton already.
    let mut copied = 0;
    let mut i = 0;
    // Objects open around `i`, and the outermost object's key the scan is under.
    let mut depth = 0usize;
    let mut top: &[u8] = &[];
    // Arrays and objects open around `i`, and the most seen at once.
    let mut nesting = 0usize;
    let mut deepest = 0usize;
    while i < json.len() {
        match json[i] {
            b'"' => {}
            b'{' => {
                depth += 1;
                nesting += 1;
                deepest = deepest.max(nesting);
                i += 1;
                continue;
            }
            b'}' => {
                depth = depth.saturating_sub(1);
                nesting = nesting.saturating_sub(1);
                i += 1;
                continue;
            }
            b'[' => {
                nesting += 1;
                deepest = deepest.max(nesting);
                i += 1;
                continue;
            }
            b']' => {
                nesting = nesting.saturating_sub(1);
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        let end = string_end(json, i)?;
        let key = &json[i + 1..end - 1];
        i = skip_ws(json, end);
        if json.get(i) != Some(&b':') {
            continue;
        }
        if depth == 1 {
            top = key;
        }
        i = skip_ws(json, i + 1);
        if !wanted(Place { top, key, depth }) || json.get(i) != Some(&b'[') {
            continue;
        }
        // A string array that decodes is taken whole; any other array (or one that does
        // not decode, whose refusal the caller words) is only measured.
        let first = json[i..]
            .iter()
            .position(|&c| !matches!(c, b'[' | b' ' | b'\n' | b'\r' | b'\t'));
        let string_array =
            strings == Strings::Decode && first.is_some_and(|at| json[i + at] == b'"');
        let (end, array) = match string_array
            .then(|| decode_strings_prefix(&json[i..]))
            .flatten()
        {
            // A decoded array's nesting is its rank (the walker refuses ragged ones).
            Some((array, len)) => {
                deepest = deepest.max(nesting + array.shape.len().max(1));
                (i + len, Some(array))
            }
            None => match array_end(json, i) {
                Some((end, levels)) => {
                    deepest = deepest.max(nesting + levels);
                    (end, None)
                }
                None => continue,
            },
        };
        decoded.push(Cell::new(array));
        let text = &json[i..end];
        skeleton.extend_from_slice(&json[copied..i]);
        let at = skeleton.len();
        // Writing into a Vec cannot fail.
        let _ = write!(skeleton, "\"\\u0000{}\"", arrays.len());
        arrays.push(text);
        moved.push((
            skeleton.len(),
            text.len() as isize - (skeleton.len() - at) as isize,
        ));
        copied = end;
        i = end;
    }
    if arrays.is_empty() {
        return None;
    }
    skeleton.extend_from_slice(&json[copied..]);
    Some(Lifted {
        skeleton,
        arrays,
        decoded,
        moved,
        body: json,
        deepest,
    })
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
/// object, and the most arrays open at once in it (1 for a flat array); strings in it are
/// skipped whole, so a bracket inside one is text.
fn array_end(json: &[u8], start: usize) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut deepest = 0usize;
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
                b'[' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some((i + 1, deepest));
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
#[inline]
fn quoted_end(json: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    // Most strings of a raw field (ids, tokens) end within a word or two: those are found
    // eight bytes at a time without a call; longer ones go on with memchr.
    for _ in 0..2 {
        let Some(word) = json.get(i..i + 8) else {
            break;
        };
        let word = u64::from_le_bytes(word.try_into().ok()?);
        let hits = bytes_equal(word, b'"') | bytes_equal(word, b'\\');
        if hits == 0 {
            i += 8;
            continue;
        }
        let at = i + (hits.trailing_zeros() / 8) as usize;
        if json[at] == b'"' {
            return Some(at + 1);
        }
        // An escape: the slow path from the escaped byte on.
        i = at;
        break;
    }
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

    /// Every string end against a byte-by-byte reference: escapes and closing quotes at
    /// each offset across the word boundaries, unterminated strings, bytes above 0x7f.
    #[test]
    fn string_ends_agree_with_a_bytewise_scan() {
        fn reference(json: &[u8], start: usize) -> Option<usize> {
            let mut i = start + 1;
            loop {
                match *json.get(i)? {
                    b'"' => return Some(i + 1),
                    b'\\' => i += 2,
                    _ => i += 1,
                }
            }
        }
        let fillers = [b'a', 0x80, 0xff, b'"' ^ 0x80, b'\\' ^ 0x80, b'!', b'#'];
        let mut checked = 0;
        for len in 0..40 {
            for filler in fillers {
                for special in [
                    None,
                    Some(&b"\\\""[..]),
                    Some(&b"\\\\"[..]),
                    Some(&b"\\n"[..]),
                ] {
                    for at in 0..=len {
                        let mut s = vec![filler; len];
                        if let Some(esc) = special {
                            s.splice(at..at, esc.iter().copied());
                        }
                        let mut json = b"[\"".to_vec();
                        json.extend_from_slice(&s);
                        for tail in [&b"\"]"[..], &b""[..], &b"\\"[..]] {
                            let mut j = json.clone();
                            j.extend_from_slice(tail);
                            assert_eq!(quoted_end(&j, 1), reference(&j, 1), "{j:?}");
                            checked += 1;
                        }
                        if special.is_none() {
                            break;
                        }
                    }
                }
            }
        }
        assert!(checked > 5_000, "{checked}");
        assert_eq!(
            bytes_equal(u64::from_le_bytes(*b"a\"b\"\x00\x00\"\x22"), b'"'),
            0x8080_0000_8000_8000
        );
    }

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

    fn v2_data(p: Place) -> bool {
        p.top == b"inputs" && p.depth == 2 && p.key == b"data"
    }

    #[test]
    fn lifts_arrays_at_the_wanted_places_only_and_resolves_them() {
        let data = big(300);
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":[300],"datatype":"FP32","data":{data}}},{{"name":"y","data":[1]}}],"parameters":{{"data":[1,2]}},"data":{data}}}"#
        );
        let lifted = lift(body.as_bytes(), Strings::Skip, v2_data).expect("lifted");
        assert_eq!(lifted.arrays, vec![data.as_bytes(), b"[1]"]);
        let skeleton = std::str::from_utf8(&lifted.skeleton).unwrap();
        assert!(
            skeleton.contains(r#""data":"\u00000""#)
                && skeleton.contains(r#""data":"\u00001""#)
                && skeleton.contains(r#""parameters":{"data":[1,2]}"#)
                && skeleton.ends_with(&format!(r#""data":{data}}}"#)),
            "{skeleton}"
        );
        assert_eq!(placeholder(r#""\u00000""#), Some(0));
        assert_eq!(placeholder(r#""\u000012""#), Some(12));
        assert_eq!(placeholder("[1,2]"), None);
        // /predict: `inputs` itself, or its values, and nothing under other keys.
        let body = r#"{"model":"m","instances":[{"x":[1]}],"inputs":{"x":[1,2],"y":{"z":[3]}},"outputs":["a"]}"#;
        let lifted = lift(body.as_bytes(), Strings::Skip, |p| {
            p.top == b"inputs" && p.depth <= 2
        })
        .unwrap();
        assert_eq!(lifted.arrays, vec![b"[1,2]"]);
        let bare = r#"{"inputs": [[1, 2]], "model": "m"}"#;
        let lifted = lift(bare.as_bytes(), Strings::Skip, |p| {
            p.top == b"inputs" && p.depth <= 2
        })
        .unwrap();
        assert_eq!(lifted.arrays, vec![b"[[1, 2]]"]);
    }

    #[test]
    fn lifts_string_arrays_whole_whatever_their_strings_hold() {
        let strings: Vec<String> = (0..100).map(|i| format!(r#""u{i} ] [ \" \\""#)).collect();
        let data = format!("[{}]", strings.join(","));
        let body = format!(r#"{{"inputs":[{{"name":"s","data":{data},"shape":[100]}}]}}"#);
        let lifted = lift(body.as_bytes(), Strings::Skip, v2_data).expect("lifted");
        assert_eq!(lifted.arrays, vec![data.as_bytes()]);
        // A string that never ends: nothing is lifted.
        let open = format!(
            r#"{{"inputs":[{{"data":{}"x]}}]}}"#,
            &data[..data.len() - 1]
        );
        assert!(lift(open.as_bytes(), Strings::Skip, v2_data).is_none());
    }

    /// Decoding string arrays while lifting finds the same ends as measuring them, and
    /// hands over what the tensor decoder makes of the text; an array that does not
    /// decode (a bad escape, a number among strings) is lifted undecoded for the decoder
    /// to refuse, and a number array is never decoded.
    #[test]
    fn decoded_string_arrays_are_the_decoders_own_and_end_where_measured() {
        use crate::tensor::{decode_array, DataType};
        let strings: Vec<String> = (0..50).map(|i| format!(r#""u{i} ] [ \" \\ é""#)).collect();
        let good = format!("[{}]", strings.join(", "));
        let nested = format!("[ [{0}],\n[{0}] ]", strings[..3].join(","));
        let bad_escape = r#"["a", "b\x"]"#;
        let mixed = r#"["a", 1]"#;
        let numbers = "[1, 2.5]";
        let body = format!(
            r#"{{"inputs":[{{"data":{good} ,"name":"a"}},{{"data":{nested}}},{{"data":{bad_escape}}},{{"data":{mixed}}},{{"data":{numbers}}}]}}"#
        );
        let skipped = lift(body.as_bytes(), Strings::Skip, v2_data).expect("lifted");
        let decoded = lift(body.as_bytes(), Strings::Decode, v2_data).expect("lifted");
        assert_eq!(decoded.arrays, skipped.arrays);
        assert_eq!(decoded.skeleton, skipped.skeleton);
        let texts = [&good[..], &nested, bad_escape, mixed, numbers];
        assert_eq!(decoded.arrays, texts.map(str::as_bytes));
        let mut resolver = Resolver::new(Some(&decoded));
        for (k, text) in texts.iter().enumerate() {
            let placeholder = format!(r#""\u0000{k}""#);
            let (got, array) = resolver.resolve(&placeholder).unwrap();
            assert_eq!(got, text.as_bytes());
            let want = decode_array(text, DataType::Bytes).ok();
            assert_eq!(array, want, "{text}");
            assert_eq!(array.is_some(), k < 2, "{text}");
            // Taken once: the text alone afterwards.
            assert_eq!(resolver.resolve(&placeholder).unwrap().1, None);
        }
        let mut skipping = Resolver::new(Some(&skipped));
        assert_eq!(skipping.resolve(r#""\u00000""#).unwrap().1, None);
    }

    /// The nesting the lift counts is the depth check's own, wherever the nesting is: around
    /// the inputs, inside lifted arrays of numbers or strings (decoded or not), in arrays
    /// left in the skeleton, and never inside strings; so over the limit exactly when the
    /// depth check refuses the body.
    #[test]
    fn the_lift_counts_nesting_as_the_depth_check_does() {
        use crate::tensor::{check_depth, deepest_nesting, MAX_JSON_DEPTH};
        let nest = |n: usize, inner: &str| format!("{}{inner}{}", "[".repeat(n), "]".repeat(n));
        let mut bodies = Vec::new();
        for n in [1, 2, 60, 61, 62, 63, 64, 65, 70] {
            let wrap = |inner: String| {
                format!(
                    r#"{{"inputs":[{{"name":"a","data":{inner},"parameters":{{"x":"[[[{{"}}}}],"outputs":[]}}"#
                )
            };
            bodies.push(wrap(nest(n, "1, 2")));
            bodies.push(wrap(nest(n, r#""a", "]]\"[""#)));
            bodies.push(wrap(nest(n, r#""bad \x escape""#)));
            bodies.push(wrap(format!(
                "[{}, {}]",
                nest(n, "1"),
                nest(n.saturating_sub(1), "2")
            )));
            bodies.push(format!(
                r#"{{"inputs":[{{"data":[1],"shape":{}}}],"parameters":{{"p":{}}}}}"#,
                nest(n, "3"),
                "{\"q\":".repeat(n) + "1" + &"}".repeat(n)
            ));
        }
        let mut over = 0;
        for body in &bodies {
            for strings in [Strings::Skip, Strings::Decode] {
                let lifted = lift(body.as_bytes(), strings, v2_data).expect("lifted");
                assert_eq!(
                    lifted.deepest,
                    deepest_nesting(body.as_bytes(), usize::MAX),
                    "{body}"
                );
                assert_eq!(
                    lifted.deepest > MAX_JSON_DEPTH,
                    check_depth(body.as_bytes()).is_err(),
                    "{body}"
                );
                over += usize::from(lifted.deepest > MAX_JSON_DEPTH);
            }
        }
        assert!(over > 10, "{over}");
    }

    #[test]
    fn leaves_object_holding_and_unclosed_arrays_and_marked_bodies() {
        let data = big(300);
        let input = |data: &str| format!(r#"{{"inputs":[{{"name":"x","data":{data}}}]}}"#);
        for body in [
            input(&format!("{}{{}}]", &data[..data.len() - 1])),
            input(&data[..data.len() - 1]),
            format!(r#"{{"inputs":[{{"name":"a\u0000","data":{data}}}]}}"#),
            format!(r#"{{"inputs":[{{"shape":{data}}}]}}"#),
        ] {
            assert!(
                lift(body.as_bytes(), Strings::Skip, v2_data).is_none(),
                "{body}"
            );
        }
        // Nested arrays: each closing bracket counted.
        let nested = format!("[{data}, {data}]");
        let body = input(&nested);
        let lifted = lift(body.as_bytes(), Strings::Skip, v2_data).expect("lifted");
        assert_eq!(lifted.arrays, vec![nested.as_bytes()]);
    }

    /// serde_json's errors for the skeleton, worded at the body's positions, are exactly
    /// its errors for the body: before, between and after lifted arrays, on any line.
    #[test]
    fn skeleton_errors_read_as_the_bodys_own() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Input<'a> {
            name: String,
            #[serde(borrow)]
            data: &'a serde_json::value::RawValue,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body<'a> {
            #[serde(borrow)]
            inputs: Vec<Input<'a>>,
        }
        let data = big(40).replace(", 3", ",\n 3");
        let x = format!(r#"{{"name": "x", "data": {data}}}"#);
        let short = r#"{"name": "y", "data": [1]}"#;
        for body in [
            format!("{{\"inputs\": [{x},\n {short}, {x}]"),
            format!("{{\"inputs\": [{x}, {short}]}} x"),
            format!("{{\"inputs\": [{x}, {{\"name\": 1, \"data\": [2]}}]}}"),
            format!("{{\"inputs\": [{short},\n{x},\n{x}], \"extra\": 1}}"),
            format!("{{\"inputs\": [{x}, {{\"data\": [3]}}]}}"),
            format!("{{\n\"inputs\": [{short}, {x}, {x},]}}"),
        ] {
            let want = serde_json::from_str::<Body>(&body).err().expect("an error");
            let lifted = lift(body.as_bytes(), Strings::Skip, v2_data).expect("lifted");
            let got = serde_json::from_slice::<Body>(&lifted.skeleton)
                .err()
                .expect("an error");
            assert_eq!(lifted.error(&got), want.to_string(), "{body}");
        }
    }
}

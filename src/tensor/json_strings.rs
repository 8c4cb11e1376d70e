//! JSON codec of BYTES tensors: a JSON string, or a (nested, not ragged) array of them.
//! Decoding is the tensor walker's (`json_scan.rs`, straight into one [`ByteStrings`]
//! buffer); text it rejects is re-read here by a serde visitor that owns the error
//! messages and keeps only a count. Encoding writes each element as a JSON string.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};

use super::json::{JsonArrayError, MAX_JSON_DEPTH};
use super::{element_count, ByteStrings};

/// The serde path's verdict on text the walker rejected as a string or (nested) array of
/// strings: a number or boolean where a string belongs is an element error naming its
/// index; a ragged array or bad JSON is `Invalid`.
pub fn explain(text: &[u8]) -> JsonArrayError {
    let mut acc = Acc::default();
    let mut de = serde_json::Deserializer::from_slice(text);
    let parsed = Level {
        acc: &mut acc,
        depth: 0,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (parsed, acc.not_a_string.take()) {
        (Err(_), Some((i, what))) => JsonArrayError::Element(format!(
            "element {i} is {what}, which is not a valid BYTES element (a JSON string)"
        )),
        (Err(e), None) => JsonArrayError::Invalid(e.to_string()),
        // Both paths accept the same language; reaching this would be a walker bug.
        (Ok(()), _) => JsonArrayError::Invalid(
            "could not decode the strings (a decoder inconsistency; please report it)".into(),
        ),
    }
}

#[derive(Default)]
struct Acc {
    /// Strings seen so far.
    count: usize,
    /// Length seen at each nesting depth; every array at one depth must agree.
    dims: Vec<Option<usize>>,
    /// Depth at which strings appear; all must sit at the same depth.
    leaf_depth: Option<usize>,
    /// A non-string scalar met where a string belongs: (element index, its JSON text).
    not_a_string: Option<(usize, String)>,
}

struct Level<'a> {
    acc: &'a mut Acc,
    depth: usize,
}

impl Level<'_> {
    fn leaf<E: de::Error>(self) -> Result<(), E> {
        if self.acc.dims.len() > self.depth {
            return Err(E::custom(
                "ragged nested array: a string appears where an array was expected",
            ));
        }
        match self.acc.leaf_depth {
            None => self.acc.leaf_depth = Some(self.depth),
            Some(d) if d != self.depth => {
                return Err(E::custom(format!(
                    "ragged nested array: strings appear at nesting depths {d} and {}",
                    self.depth
                )))
            }
            Some(_) => {}
        }
        self.acc.count += 1;
        Ok(())
    }

    fn wrong<E: de::Error>(self, what: String) -> Result<(), E> {
        self.acc.not_a_string = Some((self.acc.count, what));
        Err(E::custom("not a string"))
    }
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a (nested) array of strings")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.leaf()
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.wrong(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.wrong(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.wrong(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.wrong(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.wrong("null".to_string())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.acc.leaf_depth.is_some_and(|d| d <= self.depth) {
            return Err(de::Error::custom(
                "ragged nested array: an array appears where a string was expected",
            ));
        }
        if self.depth >= MAX_JSON_DEPTH {
            return Err(de::Error::custom(format!(
                "JSON nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects"
            )));
        }
        let depth = self.depth;
        let mut len = 0usize;
        while seq
            .next_element_seed(Level {
                acc: &mut *self.acc,
                depth: depth + 1,
            })?
            .is_some()
        {
            len += 1;
        }
        let dims = &mut self.acc.dims;
        if dims.len() <= depth {
            dims.resize(depth + 1, None);
        }
        match dims[depth] {
            None => dims[depth] = Some(len),
            Some(seen) if seen != len => {
                return Err(de::Error::custom(format!(
                    "ragged nested array: dimension {depth} has lengths {seen} and {len}"
                )))
            }
            Some(_) => {}
        }
        Ok(())
    }
}

/// One element as a JSON string. ONNX Runtime's strings are UTF-8, so outputs always are;
/// bytes that are not (possible only for data a client sent) are written with U+FFFD in
/// place of each invalid sequence; the binary forms carry them unchanged.
struct JsonString<'a>(&'a [u8]);

impl Serialize for JsonString<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(self.0))
    }
}

/// Serializes strings as a flat JSON array.
pub fn serialize_flat<S: Serializer>(s: S, strings: &ByteStrings) -> Result<S::Ok, S::Error> {
    serialize_range(s, strings, 0, strings.len())
}

fn serialize_range<S: Serializer>(
    s: S,
    strings: &ByteStrings,
    from: usize,
    to: usize,
) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(to - from))?;
    for i in from..to {
        seq.serialize_element(&JsonString(strings.get(i).unwrap_or_default()))?;
    }
    seq.end()
}

/// Serializes strings as a JSON array nested by `shape` (a bare string for a scalar).
pub fn serialize_nested<S: Serializer>(
    s: S,
    shape: &[usize],
    strings: &ByteStrings,
) -> Result<S::Ok, S::Error> {
    NestedStrings {
        shape,
        strings,
        offset: 0,
    }
    .serialize(s)
}

struct NestedStrings<'a> {
    shape: &'a [usize],
    strings: &'a ByteStrings,
    offset: usize,
}

impl Serialize for NestedStrings<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.shape {
            [] => match self.strings.get(self.offset) {
                Some(x) => JsonString(x).serialize(s),
                None => s.serialize_seq(Some(0))?.end(),
            },
            [n] => serialize_range(s, self.strings, self.offset, self.offset + n),
            [outer, inner @ ..] => {
                let chunk = element_count(inner);
                let mut seq = s.serialize_seq(Some(*outer))?;
                for i in 0..*outer {
                    seq.serialize_element(&NestedStrings {
                        shape: inner,
                        strings: self.strings,
                        offset: self.offset + i * chunk,
                    })?;
                }
                seq.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{decode_array, DataType, TensorData};

    fn decode_string_array(text: &[u8]) -> Result<super::super::JsonArray, JsonArrayError> {
        decode_array(text, DataType::Bytes)
    }

    fn strings(items: &[&str]) -> TensorData {
        TensorData::Bytes(items.iter().collect())
    }

    #[test]
    fn strings_decode_flat_nested_and_scalar() {
        let a = decode_string_array(br#"[["a","b\n"],["","\u00e9"]]"#).unwrap();
        assert_eq!(a.shape, vec![2, 2]);
        assert_eq!(a.data, strings(&["a", "b\n", "", "é"]));
        let s = decode_string_array(br#""one""#).unwrap();
        assert_eq!((s.shape, s.data), (vec![], strings(&["one"])));
        let e = decode_string_array(b"[]").unwrap();
        assert_eq!((e.shape, e.data.len()), (vec![0], 0));
    }

    #[test]
    fn non_strings_and_ragged_arrays_are_refused() {
        assert_eq!(
            decode_string_array(br#"["a", 3]"#),
            Err(JsonArrayError::Element(
                "element 1 is 3, which is not a valid BYTES element (a JSON string)".into()
            ))
        );
        for text in [&br#"["a", null]"#[..], br#"[true]"#] {
            assert!(matches!(
                decode_string_array(text),
                Err(JsonArrayError::Element(_))
            ));
        }
        for text in [
            &br#"[["a"],"b"]"#[..],
            br#"[["a"],["b","c"]]"#,
            br#"["a""#,
            br#"{"a":1}"#,
        ] {
            assert!(
                matches!(decode_string_array(text), Err(JsonArrayError::Invalid(_))),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn strings_encode_flat_and_nested() {
        let TensorData::Bytes(s) = strings(&["a", "\"q\"", "", "x"]) else {
            unreachable!()
        };
        let mut out = Vec::new();
        serialize_flat(&mut serde_json::Serializer::new(&mut out), &s).unwrap();
        assert_eq!(out, br#"["a","\"q\"","","x"]"#);
        out.clear();
        serialize_nested(&mut serde_json::Serializer::new(&mut out), &[2, 2], &s).unwrap();
        assert_eq!(out, br#"[["a","\"q\""],["","x"]]"#);
        let bad: ByteStrings = [&[0x66, 0xff][..]].into_iter().collect();
        out.clear();
        serialize_flat(&mut serde_json::Serializer::new(&mut out), &bad).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "[\"f\u{fffd}\"]");
    }
}

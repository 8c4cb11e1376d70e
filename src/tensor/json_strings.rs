//! JSON encoding of BYTES tensors: each element as a JSON string, in a flat or nested
//! array. Decoding is the tensor walker's (`json_scan.rs`, straight into one
//! [`ByteStrings`] buffer, with its own messages).

use serde::ser::{Serialize, SerializeSeq, Serializer};

use super::{element_count, ByteStrings};

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
    use crate::tensor::{decode_array, DataType, JsonArrayError, TensorData};

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

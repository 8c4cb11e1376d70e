//! JSON tensor codec. [`decode_array`] turns a (possibly nested) JSON array into a typed
//! buffer plus the shape its nesting implies, rejecting ragged arrays. The walker in
//! `json_scan.rs` does the reading, straight into the buffer, and words every refusal; it
//! is the one path for tensor data in JSON. Encoding writes flat or nested arrays straight
//! from the typed buffer.

use half::{bf16, f16};
use serde::ser::{Serialize, SerializeSeq, Serializer};

use super::json_scan::{self, Scan};
use super::json_strings;
use super::{dispatch_dtype, with_tensor_data, ByteStrings, DataType, Element, TensorData};

/// A JSON array decoded into a tensor's parts.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonArray {
    /// The shape the nesting implies (`[]` for a bare scalar).
    pub shape: Vec<usize>,
    pub data: TensorData,
}

/// Why a JSON array could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonArrayError {
    /// Not a (nested) array of numbers and booleans (of strings for BYTES), ragged, or
    /// nested too deep: what was expected, what came, and where ("expected ',' or ']' at
    /// line 1 column 9, found 'x'").
    Invalid(String),
    /// A value the datatype cannot hold, named by its row-major index ("element 2 is 256,
    /// which is not a valid UINT8").
    Element(String),
}

/// Decodes a JSON number or (nested) array of them into `dtype`; for BYTES, a JSON string
/// or (nested) array of strings.
pub fn decode_array(
    text: &(impl AsRef<[u8]> + ?Sized),
    dtype: DataType,
) -> Result<JsonArray, JsonArrayError> {
    let text = text.as_ref();
    decode_array_sized(text, dtype, json_scan::max_elements(text))
}

/// [`decode_array`] for text that should hold `expected` elements (a V2 input's shape),
/// which saves counting them first. Only the buffer's first size: the text decides, and
/// the size is capped by what the text can hold, whatever a client declares.
pub fn decode_array_expecting(
    text: &(impl AsRef<[u8]> + ?Sized),
    dtype: DataType,
    expected: usize,
) -> Result<JsonArray, JsonArrayError> {
    let text = text.as_ref();
    // Every element but the last takes a digit and a comma.
    decode_array_sized(text, dtype, expected.min(text.len() / 2 + 1))
}

/// The JSON array of strings at the start of `text` (a BYTES input's `data`, followed by
/// the rest of its body), decoded as [`decode_array`] decodes it for BYTES, and the index
/// after its closing bracket; `None` when it is no such array (the caller then finds its
/// end by other means, and [`decode_array`] words the refusal).
pub fn decode_strings_prefix(text: &[u8]) -> Option<(JsonArray, usize)> {
    let mut out = ByteStrings::new();
    let (shape, end) = json_scan::walk_value(text, &mut out).ok()?;
    // `end` is past the white space after the array, which belongs to the rest.
    let end = text[..end].iter().rposition(|&c| c == b']')? + 1;
    Some((
        JsonArray {
            shape,
            data: TensorData::Bytes(out),
        },
        end,
    ))
}

/// Decodes one raw field's JSON array, one value per row, into a `[rows]` buffer typed by
/// what it holds: strings are BYTES, integers INT64, and any number with a fraction or
/// exponent (or beyond INT64) makes the column FP64. Strings and numbers do not mix; an
/// empty array is INT64.
pub fn decode_column(text: &(impl AsRef<[u8]> + ?Sized)) -> Result<TensorData, JsonArrayError> {
    let text = text.as_ref();
    let mut column = json_scan::Column::Empty(json_scan::max_elements(text));
    let shape = json_scan::walk(text, &mut column)?;
    if shape.len() != 1 {
        return Err(JsonArrayError::Invalid(match shape.len() {
            0 => "got one value, not an array".to_string(),
            _ => format!("got an array of shape {shape:?}"),
        }));
    }
    Ok(match column {
        json_scan::Column::Empty(_) => TensorData::I64(Vec::new()),
        json_scan::Column::Int(v) => TensorData::I64(v),
        json_scan::Column::Float(v) => TensorData::F64(v),
        json_scan::Column::Text(v) => TensorData::Bytes(v),
    })
}

fn decode_array_sized(
    text: &[u8],
    dtype: DataType,
    capacity: usize,
) -> Result<JsonArray, JsonArrayError> {
    fn numbers<T: Scan>(text: &[u8], capacity: usize) -> Result<JsonArray, JsonArrayError> {
        let mut out: Vec<T> = Vec::with_capacity(capacity);
        let shape = json_scan::walk(text, &mut out)?;
        Ok(JsonArray {
            shape,
            data: T::wrap(out),
        })
    }
    fn strings(text: &[u8], capacity: usize) -> Result<JsonArray, JsonArrayError> {
        // The text holds at least the strings' bytes.
        let mut out = ByteStrings::with_capacity(capacity, text.len());
        let shape = json_scan::walk(text, &mut out)?;
        Ok(JsonArray {
            shape,
            data: TensorData::Bytes(out),
        })
    }
    dispatch_dtype!(dtype, T => numbers::<T>(text, capacity),
        bytes => strings(text, capacity))
}

/// One JSON scalar, before conversion to a datatype.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JsonNumber {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
}

/// Conversion of a JSON scalar into an element type, `None` when it does not fit.
pub trait FromJson: Element {
    fn from_json(n: JsonNumber) -> Option<Self>;
}

macro_rules! int_from_json {
    ($($t:ty),*) => {$(
        impl FromJson for $t {
            fn from_json(n: JsonNumber) -> Option<Self> {
                match n {
                    JsonNumber::Int(v) => <$t>::try_from(v).ok(),
                    JsonNumber::UInt(v) => <$t>::try_from(v).ok(),
                    // Integral floats such as `3.0` are accepted; the range check happens
                    // on the i128 so nothing saturates silently.
                    JsonNumber::Float(v) if v.fract() == 0.0 && v.abs() < 1.8e19 => {
                        <$t>::try_from(v as i128).ok()
                    }
                    _ => None,
                }
            }
        }
    )*};
}
int_from_json!(u8, u16, u32, u64, i8, i16, i32, i64);

fn as_f64(n: JsonNumber) -> Option<f64> {
    match n {
        JsonNumber::Int(v) => Some(v as f64),
        JsonNumber::UInt(v) => Some(v as f64),
        JsonNumber::Float(v) => Some(v),
        JsonNumber::Bool(_) => None,
    }
}

impl FromJson for f64 {
    fn from_json(n: JsonNumber) -> Option<Self> {
        as_f64(n)
    }
}
impl FromJson for f32 {
    fn from_json(n: JsonNumber) -> Option<Self> {
        as_f64(n).map(|v| v as f32)
    }
}
impl FromJson for f16 {
    fn from_json(n: JsonNumber) -> Option<Self> {
        as_f64(n).map(f16::from_f64)
    }
}
impl FromJson for bf16 {
    fn from_json(n: JsonNumber) -> Option<Self> {
        as_f64(n).map(bf16::from_f64)
    }
}
impl FromJson for bool {
    fn from_json(n: JsonNumber) -> Option<Self> {
        match n {
            JsonNumber::Bool(b) => Some(b),
            JsonNumber::Int(0) | JsonNumber::UInt(0) => Some(false),
            JsonNumber::Int(1) | JsonNumber::UInt(1) => Some(true),
            _ => None,
        }
    }
}

/// Deepest nesting of arrays and objects any JSON body may have (serde_json's own limit
/// is 128, and deep nesting costs memory long before that is reached).
pub const MAX_JSON_DEPTH: usize = 64;

/// JSON text nested deeper than [`MAX_JSON_DEPTH`]: refused before anything is built for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("JSON nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects")]
pub struct TooDeep;

pub(super) fn depth_error() -> String {
    TooDeep.to_string()
}

/// Refuses JSON text nested deeper than [`MAX_JSON_DEPTH`] before a parser builds anything
/// for it: one pass over the bytes, skipping strings. Every JSON body goes through it.
pub fn check_depth(text: &[u8]) -> Result<(), TooDeep> {
    if deepest_nesting(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH {
        return Err(TooDeep);
    }
    Ok(())
}

/// The deepest nesting of arrays and objects in JSON text, brackets inside strings left out;
/// the count stops as soon as it passes `stop_over`.
pub fn deepest_nesting(text: &[u8], stop_over: usize) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > stop_over {
                    break;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Serializes a typed buffer as a JSON array nested by `shape` (flat when `shape` has one
/// dim). FP16/BF16 are written as their f32 value, BYTES elements as JSON strings.
pub struct Nested<'a> {
    pub shape: &'a [usize],
    pub data: &'a TensorData,
}

impl Serialize for Nested<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        with_tensor_data!(self.data, v => NestedSlice { shape: self.shape, data: v }.serialize(s),
            bytes strings => json_strings::serialize_nested(s, self.shape, strings))
    }
}

/// Serializes a typed buffer as one flat JSON array (the V2 `data` form).
pub struct Flat<'a>(pub &'a TensorData);

impl Flat<'_> {
    fn serialize_slice<S: Serializer, T: ToJson>(s: S, data: &[T]) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(data.len()))?;
        for &x in data {
            seq.serialize_element(&x.to_json())?;
        }
        seq.end()
    }
}

impl Serialize for Flat<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        with_tensor_data!(self.0, v => Flat::serialize_slice(s, v),
            bytes strings => json_strings::serialize_flat(s, strings))
    }
}

trait ToJson: Element {
    type Out: Serialize;
    fn to_json(self) -> Self::Out;
}
macro_rules! to_json_identity {
    ($($t:ty),*) => {$(
        impl ToJson for $t {
            type Out = $t;
            fn to_json(self) -> $t { self }
        }
    )*};
}
to_json_identity!(bool, u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);
impl ToJson for f16 {
    type Out = f32;
    fn to_json(self) -> f32 {
        self.to_f32()
    }
}
impl ToJson for bf16 {
    type Out = f32;
    fn to_json(self) -> f32 {
        self.to_f32()
    }
}

struct NestedSlice<'a, T> {
    shape: &'a [usize],
    data: &'a [T],
}

impl<T: ToJson> Serialize for NestedSlice<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.shape {
            [] => match self.data.first() {
                Some(x) => x.to_json().serialize(s),
                None => s.serialize_seq(Some(0))?.end(),
            },
            [_] => Flat::serialize_slice(s, self.data),
            [outer, inner @ ..] => {
                let chunk = super::element_count(inner);
                let mut seq = s.serialize_seq(Some(*outer))?;
                for i in 0..*outer {
                    let data = &self.data[i * chunk..(i + 1) * chunk];
                    seq.serialize_element(&NestedSlice { shape: inner, data })?;
                }
                seq.end()
            }
        }
    }
}

#[cfg(test)]
mod tests;

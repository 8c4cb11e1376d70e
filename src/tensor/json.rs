//! JSON tensor codec. [`decode_array`] turns a (possibly nested) JSON array into a typed
//! buffer plus the shape its nesting implies, rejecting ragged arrays: the fast walker in
//! `json_scan.rs` parses numbers straight into the buffer, and anything it rejects is
//! re-read here by the serde visitor, which owns every error message (and keeps nothing
//! but a count while doing so, so decoding never holds more than the typed buffer).
//! Encoding writes flat or nested arrays straight from the typed buffer.

use std::fmt;

use half::{bf16, f16};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
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
    /// Not a (nested) array of numbers and booleans (of strings for BYTES), or ragged:
    /// serde_json's message.
    Invalid(String),
    /// Well-formed, but element `i` does not fit the datatype ("element 2 is 256, which
    /// is not a valid UINT8").
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

fn decode_array_sized(
    text: &[u8],
    dtype: DataType,
    capacity: usize,
) -> Result<JsonArray, JsonArrayError> {
    fn fast<T: Scan>(text: &[u8], capacity: usize) -> Option<JsonArray> {
        let mut out: Vec<T> = Vec::with_capacity(capacity);
        let shape = json_scan::walk(text, &mut out)?;
        Some(JsonArray {
            shape,
            data: T::wrap(out),
        })
    }
    fn fast_strings(text: &[u8], capacity: usize) -> Option<JsonArray> {
        // The text holds at least the strings' bytes.
        let mut out = ByteStrings::with_capacity(capacity, text.len());
        let shape = json_scan::walk(text, &mut out)?;
        Some(JsonArray {
            shape,
            data: TensorData::Bytes(out),
        })
    }
    match dispatch_dtype!(dtype, T => fast::<T>(text, capacity),
        bytes => fast_strings(text, capacity))
    {
        Some(array) => Ok(array),
        None if dtype == DataType::Bytes => Err(json_strings::explain(text)),
        None => Err(explain(text, dtype)),
    }
}

/// The serde path's verdict on text the fast walker rejected, without collecting values.
fn explain(text: &[u8], dtype: DataType) -> JsonArrayError {
    let mut acc = Acc {
        collect: false,
        check: Some(dtype),
        ..Acc::default()
    };
    let mut de = serde_json::Deserializer::from_slice(text);
    let parsed = Level {
        acc: &mut acc,
        depth: 0,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (parsed, acc.first_bad) {
        (Err(e), _) => JsonArrayError::Invalid(e.to_string()),
        (Ok(()), Some((i, n))) => JsonArrayError::Element(element_error(i, n, dtype)),
        // Both paths accept the same language; reaching this would be a walker bug.
        (Ok(()), None) => JsonArrayError::Invalid(format!(
            "could not decode the array as {dtype} (a decoder inconsistency; please report it)"
        )),
    }
}

fn element_error(i: usize, n: JsonNumber, dtype: DataType) -> String {
    format!("element {i} is {n}, which is not a valid {dtype}")
}

/// One JSON scalar as it came, before conversion to the model's datatype.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JsonNumber {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for JsonNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonNumber::Int(v) => write!(f, "{v}"),
            JsonNumber::UInt(v) => write!(f, "{v}"),
            JsonNumber::Float(v) => write!(f, "{v}"),
            JsonNumber::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// A JSON array (nested or flat) flattened row-major, with the shape its nesting implies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlatJson {
    pub values: Vec<JsonNumber>,
    pub shape: Vec<usize>,
}

impl FlatJson {
    /// Converts the numbers to `dtype`, rejecting values that do not fit (300 as UINT8,
    /// 1.5 as INT64, `true` as FP32, any number as BYTES). The error names the offending
    /// element.
    pub fn to_data(&self, dtype: DataType) -> Result<TensorData, String> {
        fn convert<T: FromJson>(values: &[JsonNumber]) -> Result<TensorData, String> {
            let mut out = Vec::with_capacity(values.len());
            for (i, &n) in values.iter().enumerate() {
                match T::from_json(n) {
                    Some(v) => out.push(v),
                    None => return Err(element_error(i, n, T::DTYPE)),
                }
            }
            Ok(T::wrap(out))
        }
        dispatch_dtype!(dtype, T => convert::<T>(&self.values),
        bytes => match self.values.first() {
            Some(&n) => Err(element_error(0, n, dtype)),
            None => Ok(TensorData::Bytes(Default::default())),
        })
    }
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

/// Accumulator shared by every level of the recursive decode.
struct Acc {
    values: Vec<JsonNumber>,
    /// Keep the numbers (`FlatJson`), or only check them (`explain`).
    collect: bool,
    /// Datatype to check each number against; the first misfit is kept.
    check: Option<DataType>,
    count: usize,
    first_bad: Option<(usize, JsonNumber)>,
    /// Length seen at each nesting depth; every array at one depth must agree.
    dims: Vec<Option<usize>>,
    /// Depth at which scalars appear; all scalars must sit at the same depth.
    leaf_depth: Option<usize>,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            values: Vec::new(),
            collect: true,
            check: None,
            count: 0,
            first_bad: None,
            dims: Vec::new(),
            leaf_depth: None,
        }
    }
}

/// Deepest nesting of arrays and objects any JSON body may have (serde_json's own limit
/// is 128, and deep nesting costs memory long before that is reached).
pub const MAX_JSON_DEPTH: usize = 64;

fn depth_error() -> String {
    format!("JSON nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects")
}

/// Refuses JSON text nested deeper than [`MAX_JSON_DEPTH`] before a parser builds anything
/// for it: one pass over the bytes, skipping strings. Every JSON body goes through it.
pub fn check_depth(text: &[u8]) -> Result<(), String> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
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
                if depth > MAX_JSON_DEPTH {
                    return Err(depth_error());
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn fits(n: JsonNumber, dtype: DataType) -> bool {
    dispatch_dtype!(dtype, T => T::from_json(n).is_some(), bytes => false)
}

struct Level<'a> {
    acc: &'a mut Acc,
    depth: usize,
}

impl Level<'_> {
    fn leaf<E: de::Error>(self, n: JsonNumber) -> Result<(), E> {
        // An array already closed at this depth or deeper (`[[], 1]`) means numbers and
        // arrays are mixed at one level.
        if self.acc.dims.len() > self.depth {
            return Err(E::custom(
                "ragged nested array: a number appears where an array was expected",
            ));
        }
        match self.acc.leaf_depth {
            None => self.acc.leaf_depth = Some(self.depth),
            Some(d) if d != self.depth => {
                return Err(E::custom(format!(
                    "ragged nested array: numbers appear at nesting depths {d} and {}",
                    self.depth
                )))
            }
            Some(_) => {}
        }
        let acc = self.acc;
        if acc.collect {
            acc.values.push(n);
        }
        if let Some(dtype) = acc.check {
            if acc.first_bad.is_none() && !fits(n, dtype) {
                acc.first_bad = Some((acc.count, n));
            }
        }
        acc.count += 1;
        Ok(())
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
        f.write_str("a number, a boolean or a (nested) array of them")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.leaf(JsonNumber::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.leaf(JsonNumber::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(v) => self.leaf(JsonNumber::Int(v)),
            Err(_) => self.leaf(JsonNumber::UInt(v)),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.leaf(JsonNumber::Float(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.acc.leaf_depth.is_some_and(|d| d <= self.depth) {
            return Err(de::Error::custom(
                "ragged nested array: an array appears where a number was expected",
            ));
        }
        if self.depth >= MAX_JSON_DEPTH {
            return Err(de::Error::custom(depth_error()));
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

impl Acc {
    fn finish(self) -> FlatJson {
        let rank = self
            .leaf_depth
            .unwrap_or(self.dims.len())
            .min(self.dims.len());
        let shape = self.dims[..rank].iter().map(|d| d.unwrap_or(0)).collect();
        FlatJson {
            values: self.values,
            shape,
        }
    }
}

impl FlatJson {
    /// Decodes from a JSON array whose opening bracket a caller's visitor already consumed.
    pub fn from_seq<'de, A: SeqAccess<'de>>(seq: A) -> Result<FlatJson, A::Error> {
        let mut acc = Acc::default();
        Level {
            acc: &mut acc,
            depth: 0,
        }
        .visit_seq(seq)?;
        Ok(acc.finish())
    }
}

impl<'de> serde::Deserialize<'de> for FlatJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut acc = Acc::default();
        Level {
            acc: &mut acc,
            depth: 0,
        }
        .deserialize(d)?;
        Ok(acc.finish())
    }
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

//! Benchmarks only (feature `json-compare`): the V2 JSON body parsed with sonic-rs, a SIMD
//! JSON parser, into the same tensors the tensor walker builds, so the two decoders can be
//! measured end to end in one build. `MLPSERVE_JSON_DECODER=sonic` switches it on. It
//! takes bodies whose inputs all carry `data` and ignores request parameters and outputs
//! (the benchmark's bodies have none); anything else goes to the regular decoder, as do
//! the messages of bodies it refuses.

use std::fmt;
use std::sync::OnceLock;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use sonic_rs::LazyValue;

use super::v2_codec::{DecodedRequest, OutputFormat};
use crate::spec::NamedTensor;
use crate::tensor::{decode_array, ByteStrings, DataType, Element, Tensor, TensorData};

/// Whether `MLPSERVE_JSON_DECODER=sonic` asked for this decoder (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("MLPSERVE_JSON_DECODER").is_ok_and(|v| v == "sonic"))
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(borrow)]
    inputs: Vec<Input<'a>>,
}

#[derive(Deserialize)]
struct Input<'a> {
    name: String,
    shape: Vec<u64>,
    datatype: String,
    /// Skipped by sonic-rs's SIMD scan, parsed once the datatype is known.
    #[serde(borrow)]
    data: LazyValue<'a>,
}

/// The request, or `None` for the regular decoder to decide (and word any error).
pub fn decode(json: &[u8]) -> Option<DecodedRequest> {
    let body: Body = sonic_rs::from_slice(json).ok()?;
    let mut inputs = Vec::with_capacity(body.inputs.len());
    for input in body.inputs {
        let dtype = DataType::from_name(&input.datatype)?;
        let raw = input.data.as_raw_str().as_bytes();
        let data = match dtype {
            DataType::F32 => flat_or_nested::<f32>(raw, dtype)?,
            DataType::F64 => flat_or_nested::<f64>(raw, dtype)?,
            DataType::I64 => flat_or_nested::<i64>(raw, dtype)?,
            DataType::I32 => flat_or_nested::<i32>(raw, dtype)?,
            DataType::Bytes => {
                let mut strings = ByteStrings::new();
                let mut de = sonic_rs::Deserializer::from_slice(raw);
                Strings(&mut strings).deserialize(&mut de).ok()?;
                TensorData::Bytes(strings)
            }
            _ => nested(raw, dtype)?,
        };
        let shape = input
            .shape
            .iter()
            .map(|&d| usize::try_from(d).ok())
            .collect::<Option<Vec<usize>>>()?;
        let tensor = Tensor::new(shape, data).ok()?;
        inputs.push(NamedTensor {
            name: input.name,
            tensor,
        });
    }
    Some(DecodedRequest {
        id: body.id,
        inputs,
        outputs: Vec::new(),
        format: OutputFormat::default(),
        timeout: None,
        ranking: None,
    })
}

/// A flat array straight into `Vec<T>` (sonic-rs's own number parsing), or a nested one
/// through the tensor walker.
fn flat_or_nested<T: Element + for<'de> Deserialize<'de>>(
    raw: &[u8],
    dtype: DataType,
) -> Option<TensorData> {
    match sonic_rs::from_slice::<Vec<T>>(raw) {
        Ok(v) => Some(T::wrap(v)),
        Err(_) => nested(raw, dtype),
    }
}

fn nested(raw: &[u8], dtype: DataType) -> Option<TensorData> {
    decode_array(raw, dtype).ok().map(|array| array.data)
}

/// A flat array of JSON strings appended to a BYTES buffer, each string copied once.
struct Strings<'b>(&'b mut ByteStrings);

impl<'de> DeserializeSeed<'de> for Strings<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Strings<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of strings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(OneString(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

struct OneString<'b>(&'b mut ByteStrings);

impl<'de> DeserializeSeed<'de> for OneString<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for OneString<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.push(v.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    /// Both decoders give the same tensors for the benchmark's kinds of body.
    #[test]
    fn sonic_decodes_what_the_walker_decodes() {
        let numbers: Vec<String> = (0..300)
            .map(|i| format!("{}", i as f32 * 0.37 - 5.0))
            .collect();
        let ids: Vec<String> = (0..300).map(|i| (i * 7919).to_string()).collect();
        let texts: Vec<String> = (0..300).map(|i| format!("\"u{i}\\n\"")).collect();
        let body = format!(
            r#"{{"id":"r","inputs":[{{"data":[{}],"datatype":"FP32","name":"x","shape":[3,100]}},{{"data":[{}],"datatype":"INT64","name":"i","shape":[300]}},{{"data":[{}],"datatype":"BYTES","name":"s","shape":[300]}},{{"data":[[1,2],[3,4]],"datatype":"FP16","name":"h","shape":[2,2]}}]}}"#,
            numbers.join(","),
            ids.join(","),
            texts.join(",")
        );
        let sonic = super::decode(body.as_bytes()).expect("decoded");
        let walker = super::super::v2_codec::decode(&HeaderMap::new(), body.as_bytes()).unwrap();
        assert_eq!(sonic.id, walker.id);
        let pairs = |inputs: Vec<crate::spec::NamedTensor>| -> Vec<_> {
            inputs.into_iter().map(|t| (t.name, t.tensor)).collect()
        };
        assert_eq!(pairs(sonic.inputs), pairs(walker.inputs));
    }
}

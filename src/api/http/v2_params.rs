//! The `parameters` objects of a V2 JSON request (request, input and output level) and the
//! request's lists, read without building what the server does not use: only the keys the
//! server reads are kept (as scalars); every other value is skipped as it is parsed
//! (`serde::de::IgnoredAny`), however large or deeply nested, so a body of many small
//! objects costs no memory beyond the body. Counts are capped with a message naming the cap.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// Most entries one `parameters` object may have: the protocol defines a handful.
pub const MAX_PARAMETERS: usize = 64;
/// Most inputs, or requested outputs, one request may list.
pub const MAX_TENSORS: usize = 4096;

/// The parameters the server reads; see [`Parameters::KNOWN`].
#[derive(Debug, Default)]
pub struct Parameters(Vec<(&'static str, Value)>);

impl Parameters {
    /// The keys kept: `binary_data_output`, `timeout`, `top_k`, `rank_by` (request),
    /// `binary_data_size` (input), `binary_data` (output).
    const KNOWN: [&'static str; 6] = [
        "binary_data_output",
        "timeout",
        "top_k",
        "rank_by",
        "binary_data_size",
        "binary_data",
    ];

    /// The value of a kept key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl<'de> Deserialize<'de> for Parameters {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Parameters, D::Error> {
        d.deserialize_map(ParametersVisitor)
    }
}

struct ParametersVisitor;

impl<'de> Visitor<'de> for ParametersVisitor {
    type Value = Parameters;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a parameters object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parameters, A::Error> {
        let mut kept = Vec::new();
        let mut count = 0;
        while let Some(key) = map.next_key::<KeyName>()? {
            count += 1;
            if count > MAX_PARAMETERS {
                return Err(de::Error::custom(format_args!(
                    "a parameters object has more than {MAX_PARAMETERS} entries"
                )));
            }
            match key.0 {
                Some(known) => {
                    let value: Scalar = map.next_value()?;
                    kept.retain(|(k, _)| *k != known);
                    kept.push((known, value.0));
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Parameters(kept))
    }
}

/// A parameter's key: one of [`Parameters::KNOWN`], or `None` for any other (not kept,
/// not allocated when the key has no escapes).
struct KeyName(Option<&'static str>);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyName, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a parameter name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<KeyName, E> {
                Ok(KeyName(Parameters::KNOWN.iter().copied().find(|k| *k == s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A kept parameter's value: a boolean, number, string or null; an array or object is
/// refused (the protocol's parameters are scalars, and the server reads only these).
struct Scalar(Value);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean, number or string parameter value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(Value::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(Value::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(Value::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(Value::from(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                // Values the server reads are short; a long string is no value of theirs.
                const MAX: usize = 256;
                if v.len() > MAX {
                    return Err(E::custom(format_args!(
                        "a parameter string of {} bytes (at most {MAX})",
                        v.len()
                    )));
                }
                Ok(Scalar(Value::from(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(Value::Null))
            }
        }
        d.deserialize_any(V)
    }
}

/// Most dims a shape may list: no served model has a rank near it.
pub const MAX_RANK: usize = 64;

/// Deserializes the list of inputs or outputs (`deserialize_with`), refusing one of more
/// than [`MAX_TENSORS`] items as soon as the next one starts.
pub fn capped<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(Capped(MAX_TENSORS, "inputs or outputs", PhantomData))
}

/// [`capped`] for an optional list.
pub fn capped_option<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    capped(d).map(Some)
}

/// A shape of at most [`MAX_RANK`] dims.
pub fn capped_shape<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    d.deserialize_seq(Capped(MAX_RANK, "dims in a shape", PhantomData))
}

/// A list of at most `.0` items, `.1` naming them in the error.
struct Capped<T>(usize, &'static str, PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for Capped<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            if items.len() == self.0 {
                return Err(de::Error::custom(format_args!(
                    "more than {} {}",
                    self.0, self.1
                )));
            }
            items.push(item);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        parameters: Parameters,
    }

    fn parse(json: &str) -> Result<Parameters, String> {
        serde_json::from_str::<Body>(json)
            .map(|b| b.parameters)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn keeps_the_known_keys_and_skips_the_rest() {
        let p = parse(
            r#"{"parameters":{"timeout":5,"x":[{"a":[1,{}]}],"binary_data_output":true,"s":"t"}}"#,
        )
        .expect("valid");
        assert_eq!(p.get("timeout"), Some(&Value::from(5)));
        assert_eq!(p.get("binary_data_output"), Some(&Value::Bool(true)));
        assert_eq!(p.get("x"), None);
        assert_eq!(p.0.len(), 2, "unknown keys are not kept");
    }

    #[test]
    fn refuses_too_many_entries_and_structured_known_values() {
        let many: Vec<String> = (0..=MAX_PARAMETERS)
            .map(|i| format!(r#""k{i}":{{}}"#))
            .collect();
        let err = parse(&format!(r#"{{"parameters":{{{}}}}}"#, many.join(","))).unwrap_err();
        assert!(err.contains("more than 64 entries"), "{err}");
        let err = parse(r#"{"parameters":{"timeout":[1]}}"#).unwrap_err();
        assert!(err.contains("boolean, number or string"), "{err}");
    }
}

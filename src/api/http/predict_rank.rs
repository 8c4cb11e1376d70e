//! `/predict` ranking requests: `"context"` (one row of the model's broadcast inputs and
//! fields) and `"candidates"` (N rows, as columns or as row objects) turned into the
//! columns the ordinary `/predict` decoding takes. The context stays one row; the batch
//! assembly repeats it. Knows the model's spec, not the service.

use serde_json::value::RawValue;

use super::lift::Lifted;
use super::predict::instances_to_columns;
use crate::error::{Error, Result};
use crate::spec::ModelSpec;

/// The columns of a ranking request: every candidate column, then each context value as
/// a one-row column (an input's row, or a field's value, wrapped in one more array). A
/// context name must be a broadcast input or field; a name in both parts is refused.
pub fn context_and_candidates(
    spec: &ModelSpec,
    context: Option<&RawValue>,
    candidates: &RawValue,
    lifted: Option<&Lifted>,
) -> Result<Vec<(String, Box<RawValue>)>> {
    let invalid = |msg: String| spec.invalid(msg);
    if lifted.is_some() {
        // Lifted arrays are resolved by input name; these parts are read from the body.
        return Err(invalid(
            "context and candidates are decoded without lifting".into(),
        ));
    }
    let mut columns = match candidates.get().trim_start().as_bytes().first() {
        Some(b'[') => instances_to_columns(spec, candidates, None)
            .map_err(|e| rename(rename(e, "\"instances\"", "\"candidates\""), "instance ", "candidate "))?,
        Some(b'{') => object(candidates)
            .map_err(|e| invalid(format!("\"candidates\" must be an object of name to array of N values, or an array of row objects: {e}")))?
            .into_iter()
            .map(|(name, raw)| (name, raw.to_owned()))
            .collect(),
        _ => {
            return Err(invalid(
                "\"candidates\" must be an object of name to array of N values, or an array of row objects".into(),
            ))
        }
    };
    let context = match context {
        Some(raw) => object(raw).map_err(|e| {
            invalid(format!(
                "\"context\" must be an object of name to one row's value: {e}"
            ))
        })?,
        None => Vec::new(),
    };
    for (name, value) in context {
        if columns.iter().any(|(n, _)| n == &name) {
            return Err(invalid(format!(
                "'{name}' is in both \"context\" and \"candidates\"; send it in one of them"
            )));
        }
        let broadcast = match (spec.input(&name), field(spec, &name)) {
            (Some(input), _) => input.broadcast,
            (None, Some(broadcast)) => broadcast,
            (None, None) => {
                return Err(invalid(format!(
                    "unknown context name '{name}'; the context takes the broadcast inputs and fields: {}",
                    broadcast_names(spec)
                )))
            }
        };
        if !broadcast {
            return Err(invalid(format!(
                "context name '{name}' is not declared broadcast (config.toml: broadcast = true); send it in \"candidates\", one value per row. The context takes: {}",
                broadcast_names(spec)
            )));
        }
        let one_row = RawValue::from_string(format!("[{}]", value.get()))
            .map_err(|e| invalid(format!("context '{name}': {e}")))?;
        columns.push((name, one_row));
    }
    Ok(columns)
}

/// Whether `name` is a raw field, and if so whether it is broadcast.
fn field(spec: &ModelSpec, name: &str) -> Option<bool> {
    spec.features
        .as_ref()
        .and_then(|f| f.field(name))
        .map(|f| f.broadcast)
}

/// The broadcast inputs and fields, for messages ("none" when the model has none).
fn broadcast_names(spec: &ModelSpec) -> String {
    let features = spec.features.as_deref();
    let mut names: Vec<String> = spec
        .inputs
        .iter()
        .filter(|s| s.broadcast && !features.is_some_and(|f| f.builds(&s.name)))
        .map(|s| format!("'{}'", s.name))
        .collect();
    if let Some(f) = features {
        names.extend(
            f.fields()
                .iter()
                .filter(|f| f.broadcast)
                .map(|f| format!("'{}'", f.name)),
        );
    }
    if names.is_empty() {
        "none (the model declares no broadcast input)".to_string()
    } else {
        names.join(", ")
    }
}

/// A JSON object's entries in order, values as raw text borrowed from `raw`: the same
/// reading as one row of `/predict`'s `instances`.
fn object(raw: &RawValue) -> std::result::Result<Vec<(String, &RawValue)>, serde_json::Error> {
    Ok(serde_json::from_str::<super::predict::Row>(raw.get())?.0)
}

/// The row form's messages say "instances"; here the rows are the candidates.
fn rename(e: Error, from: &str, to: &str) -> Error {
    match e {
        Error::InvalidInput(m) => Error::InvalidInput(m.replace(from, to)),
        other => other,
    }
}

//! One model version's raw fields and the graph inputs built from them: checked against
//! the graph and built once at load ([`FeatureSet::build`], vocabularies read then), then
//! applied to each request ([`FeatureSet::apply`]): the fields a client sent (one value
//! per row) become the graph inputs' columns, written straight into each input's buffer in
//! its datatype. Inputs the client sent as tensors pass through untouched.

use std::collections::BTreeMap;
use std::path::Path;

use super::transform::{
    ColumnLoop, FeatureError, FieldConfig, FieldValue, Kernel, OwnedValue, Transform,
};
use super::TransformOutput;
use crate::tensor::{DataType, Tensor, TensorData};

/// One declared field.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub transform: Transform,
    /// Used for every row when a request leaves the field out.
    pub default: Option<OwnedValue>,
    /// Sent once per request: it feeds a broadcast input (see [`BuiltInput::broadcast`]).
    pub broadcast: bool,
}

impl Field {
    /// The datatype a client sends the field as over the V2 protocol: `BYTES` for text
    /// (hashed or looked up; integers are accepted too), `FP32` for numbers (any integer
    /// or float datatype is accepted).
    pub fn datatype(&self) -> &'static str {
        if matches!(
            self.transform,
            Transform::Hash { .. } | Transform::Lookup { .. }
        ) {
            "BYTES"
        } else {
            "FP32"
        }
    }
}

/// A graph input whose columns are fields.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltInput {
    pub name: String,
    pub dtype: DataType,
    /// Indices into [`FeatureSet::fields`], in column order.
    pub columns: Vec<usize>,
    /// Built from one row of fields per request (all its fields are `broadcast`, or the
    /// input is declared so), repeated to the request's rows when its batch is assembled.
    pub broadcast: bool,
}

/// What the loader knows of one graph input.
pub struct GraphInput<'a> {
    pub name: &'a str,
    pub dtype: DataType,
    pub shape: &'a [i64],
}

/// A model version's fields and the inputs they build.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    fields: Vec<Field>,
    built: Vec<BuiltInput>,
}

/// Datatypes a field-built input may have: ids and numbers are cast into them.
const BUILDABLE: [DataType; 4] = [DataType::I64, DataType::I32, DataType::F32, DataType::F64];

impl FeatureSet {
    /// Checks `[features]` and the `from` lists against the graph's inputs and builds
    /// every transform (reading vocabularies relative to `dir`). `None` when the model
    /// declares no features. Errors name the field or input and the problem.
    pub fn build<'a>(
        features: &BTreeMap<String, FieldConfig>,
        from: impl IntoIterator<Item = (&'a str, &'a [String])>,
        graph: &[GraphInput<'_>],
        dir: &Path,
    ) -> Result<Option<FeatureSet>, FeatureError> {
        if features.is_empty() {
            return Ok(None);
        }
        let mut fields = Vec::with_capacity(features.len());
        for (name, config) in features {
            let transform = Transform::from_config(name, config, dir)?;
            fields.push(Field {
                name: name.clone(),
                transform,
                default: config.default.clone(),
                broadcast: config.broadcast,
            });
        }
        let mut built = Vec::new();
        for (input, names) in from {
            if names.is_empty() {
                continue;
            }
            let g = graph.iter().find(|g| g.name == input).ok_or_else(|| {
                FeatureError::Wiring(format!(
                    "inputs.{input}.from: the graph has no input '{input}'"
                ))
            })?;
            if !BUILDABLE.contains(&g.dtype) {
                return Err(FeatureError::Wiring(format!(
                    "inputs.{input}.from: graph input '{input}' has datatype {}; an input built from fields must be INT64, INT32, FP32 or FP64",
                    g.dtype
                )));
            }
            let width_fits = g.shape.len() == 2
                && g.shape[0] == -1
                && (g.shape[1] == -1 || g.shape[1] == names.len() as i64);
            if !width_fits {
                return Err(FeatureError::Wiring(format!(
                    "inputs.{input}.from lists {} fields, but graph input '{input}' has shape {:?}; it must be [-1, {}] (a batch of rows, one column per field)",
                    names.len(),
                    g.shape,
                    names.len()
                )));
            }
            let mut columns = Vec::with_capacity(names.len());
            for name in names {
                let index = fields
                    .iter()
                    .position(|f| &f.name == name)
                    .ok_or_else(|| {
                        FeatureError::Wiring(format!("inputs.{input}.from names field '{name}', which [features] does not declare"))
                    })?;
                let integer_input = matches!(g.dtype, DataType::I64 | DataType::I32);
                if integer_input && !fields[index].transform.gives_ids() {
                    return Err(FeatureError::Wiring(format!(
                        "feature '{name}' gives numbers, but graph input '{input}' is {}: only ids (hash_buckets, vocabulary, boundaries) fill an integer input",
                        g.dtype
                    )));
                }
                columns.push(index);
            }
            let flagged: Vec<&str> = columns
                .iter()
                .filter(|&&i| fields[i].broadcast)
                .map(|&i| fields[i].name.as_str())
                .collect();
            let per_row: Vec<&str> = columns
                .iter()
                .filter(|&&i| !fields[i].broadcast)
                .map(|&i| fields[i].name.as_str())
                .collect();
            if !flagged.is_empty() && !per_row.is_empty() {
                return Err(FeatureError::Wiring(format!(
                    "inputs.{input}.from mixes broadcast fields ('{}') with per-row fields ('{}'); the fields of one input are all broadcast or none",
                    flagged.join("', '"),
                    per_row.join("', '")
                )));
            }
            built.push(BuiltInput {
                name: input.to_owned(),
                dtype: g.dtype,
                broadcast: per_row.is_empty(),
                columns,
            });
        }
        if let Some(unused) = fields
            .iter()
            .enumerate()
            .find(|(i, _)| !built.iter().any(|b| b.columns.contains(i)))
        {
            return Err(FeatureError::Wiring(format!(
                "feature '{}' is used by no input: name it in some [inputs.NAME] from = [...]",
                unused.1.name
            )));
        }
        Ok(Some(FeatureSet { fields, built }))
    }

    /// Marks graph input `name` broadcast (`[inputs.NAME] broadcast = true`), and with it
    /// the fields it is built from. A field that also feeds a per-row input is refused.
    pub fn set_broadcast(&mut self, name: &str) -> Result<(), FeatureError> {
        let Some(input) = self.built.iter_mut().find(|b| b.name == name) else {
            return Ok(());
        };
        input.broadcast = true;
        for &i in &input.columns {
            self.fields[i].broadcast = true;
        }
        self.check_broadcast_fields()
    }

    /// A field feeds broadcast inputs only or per-row inputs only: one value per request
    /// and one per row cannot both be what it sends.
    fn check_broadcast_fields(&self) -> Result<(), FeatureError> {
        for (i, field) in self.fields.iter().enumerate() {
            let feeding = |broadcast: bool| {
                self.built
                    .iter()
                    .filter(move |b| b.broadcast == broadcast && b.columns.contains(&i))
                    .map(|b| b.name.as_str())
            };
            if let (Some(b), Some(r)) = (feeding(true).next(), feeding(false).next()) {
                return Err(FeatureError::Wiring(format!(
                    "feature '{}' feeds broadcast input '{b}' and per-row input '{r}'; a field is sent once per request or once per row, not both",
                    field.name
                )));
            }
        }
        Ok(())
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn built(&self) -> &[BuiltInput] {
        &self.built
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Whether graph input `name` is built from fields.
    pub fn builds(&self, name: &str) -> bool {
        self.built.iter().any(|b| b.name == name)
    }

    /// The names of the graph inputs field `index` feeds.
    pub fn feeds(&self, index: usize) -> impl Iterator<Item = &str> {
        self.built
            .iter()
            .filter(move |b| b.columns.contains(&index))
            .map(|b| b.name.as_str())
    }

    /// Turns the fields among `given` into the graph inputs they build. Other tensors pass
    /// through (validation judges them); a built input sent as a tensor is used as sent.
    /// Each field is a tensor of shape `[N]` (or `[N, 1]`), one value per row; a field
    /// left out takes its `default` for every row.
    pub fn apply(
        &self,
        given: Vec<(String, Tensor)>,
    ) -> Result<Vec<(String, Tensor)>, FeatureError> {
        let mut slots: Vec<Option<Tensor>> = vec![None; self.fields.len()];
        let mut out = Vec::with_capacity(given.len());
        for (name, tensor) in given {
            match self.fields.iter().position(|f| f.name == name) {
                Some(i) if slots[i].is_some() => {
                    return Err(request_error(&name, "sent more than once".into()))
                }
                Some(i) => slots[i] = Some(tensor),
                None => out.push((name, tensor)),
            }
        }
        let per_row = self.rows(&slots, &out)?;
        let mut used = vec![false; self.fields.len()];
        for input in &self.built {
            if out.iter().any(|(name, _)| name == &input.name) {
                continue;
            }
            let rows = if input.broadcast {
                broadcast_rows(&self.fields, input, &slots)?
            } else {
                per_row
            };
            let width = input.columns.len();
            let mut data = zeros(input.dtype, rows.saturating_mul(width));
            for (column, &field_index) in input.columns.iter().enumerate() {
                used[field_index] = true;
                let field = &self.fields[field_index];
                let values = match (&slots[field_index], &field.default) {
                    (Some(tensor), _) => Values::Sent(tensor),
                    (None, Some(default)) => Values::Default(default.borrow(), rows),
                    (None, None) => {
                        return Err(FeatureError::Missing {
                            field: field.name.clone(),
                            takes: format!(
                                "{}, {}; it feeds input '{}'",
                                field.datatype(),
                                field.transform.describe(),
                                input.name
                            ),
                        })
                    }
                };
                field.transform.specialise(Fill {
                    field,
                    input,
                    values,
                    data: &mut data,
                    column,
                })?;
            }
            let tensor = Tensor::new(vec![rows, width], data)
                .map_err(|e| request_error(&input.name, e.to_string()))?;
            out.push((input.name.clone(), tensor));
        }
        if let Some(i) = (0..self.fields.len()).find(|&i| slots[i].is_some() && !used[i]) {
            let inputs: Vec<&str> = self.feeds(i).collect();
            return Err(request_error(
                &self.fields[i].name,
                format!(
                    "sent together with the input it feeds ('{}') as a tensor; send either the input or its fields",
                    inputs.join("', '")
                ),
            ));
        }
        Ok(out)
    }

    /// The request's row count: every field sent has one value per row, and the fields
    /// agree (broadcast fields aside, see [`broadcast_rows`]); with no per-row field sent,
    /// the tensors' rows (defaults fill every row).
    fn rows(
        &self,
        slots: &[Option<Tensor>],
        others: &[(String, Tensor)],
    ) -> Result<usize, FeatureError> {
        let mut rows: Option<(usize, &str)> = None;
        for (field, slot) in self.fields.iter().zip(slots) {
            let Some(t) = slot else { continue };
            let n = field_rows(field, t)?;
            if field.broadcast {
                continue;
            }
            match rows {
                Some((m, first)) if m != n => {
                    return Err(request_error(
                        &field.name,
                        format!("has {n} values but field '{first}' has {m}: every field has one value per row"),
                    ))
                }
                Some(_) => {}
                None => rows = Some((n, &field.name)),
            }
        }
        if let Some((n, _)) = rows {
            return Ok(n);
        }
        // No field sent: the inputs sent as tensors give the row count, and the fields
        // with defaults fill it; otherwise the first field without one is missing.
        // Tensors of broadcast inputs may have one row where the others have N.
        if let Some(n) = others.iter().map(|(_, t)| t.rows()).max() {
            return Ok(n);
        }
        // Only broadcast inputs are built from fields: a request of their rows.
        if self.built.iter().all(|b| b.broadcast) {
            let sent = self.fields.iter().zip(slots);
            let n = sent.filter_map(|(_, s)| s.as_ref().map(Tensor::rows)).max();
            return Ok(n.unwrap_or(1));
        }
        let field = self
            .fields
            .iter()
            .find(|f| f.default.is_none() && !f.broadcast)
            .or_else(|| self.fields.iter().find(|f| f.default.is_none()))
            .unwrap_or(&self.fields[0]);
        Err(FeatureError::Missing {
            field: field.name.clone(),
            takes: format!("{}, {}", field.datatype(), field.transform.describe()),
        })
    }
}

/// The values a field's tensor holds: one per row, shape `[N]` or `[N, 1]`, at least one.
fn field_rows(field: &Field, t: &Tensor) -> Result<usize, FeatureError> {
    let n = match t.shape.as_slice() {
        [n] | [n, 1] => *n,
        other => {
            return Err(request_error(
                &field.name,
                format!("takes one value per row (shape [N] or [N, 1]), got shape {other:?}"),
            ))
        }
    };
    if n == 0 {
        return Err(request_error(&field.name, "has no values (0 rows)".into()));
    }
    Ok(n)
}

/// The rows of a broadcast input: those of the fields sent for it (they agree; one value
/// is the usual, N the explicitly repeated form), or one when all take their defaults.
/// Validation then holds them to 1 or the request's N.
fn broadcast_rows(
    fields: &[Field],
    input: &BuiltInput,
    slots: &[Option<Tensor>],
) -> Result<usize, FeatureError> {
    let mut rows: Option<(usize, &str)> = None;
    for &i in &input.columns {
        let Some(t) = &slots[i] else { continue };
        let n = field_rows(&fields[i], t)?;
        match rows {
            Some((m, first)) if m != n => {
                return Err(request_error(
                    &fields[i].name,
                    format!("has {n} values but field '{first}' has {m}: the broadcast fields of input '{}' are sent with the same count (1, or one per row)", input.name),
                ))
            }
            Some(_) => {}
            None => rows = Some((n, &fields[i].name)),
        }
    }
    Ok(rows.map_or(1, |(n, _)| n))
}

fn request_error(field: &str, problem: String) -> FeatureError {
    FeatureError::Request {
        field: field.to_owned(),
        problem,
    }
}

fn show(v: TransformOutput) -> String {
    match v {
        TransformOutput::Id(id) => format!("id {id}"),
        TransformOutput::Number(x) => format!("{x}"),
    }
}

fn zeros(dtype: DataType, n: usize) -> TensorData {
    match dtype {
        DataType::I64 => TensorData::I64(vec![0; n]),
        DataType::I32 => TensorData::I32(vec![0; n]),
        DataType::F64 => TensorData::F64(vec![0.0; n]),
        // `build` admits only the four datatypes of `BUILDABLE`.
        _ => TensorData::F32(vec![0.0; n]),
    }
}

/// A field's values for one request: its tensor, or its default on every row.
enum Values<'a> {
    Sent(&'a Tensor),
    Default(FieldValue<'a>, usize),
}

/// One column of a field-built input: the field's values, transformed, written at
/// `column`, `column + width`, … of the input's buffer. Run by
/// [`Transform::specialise`], so each transform gets its own copy of the loop.
struct Fill<'a> {
    field: &'a Field,
    input: &'a BuiltInput,
    values: Values<'a>,
    data: &'a mut TensorData,
    column: usize,
}

impl ColumnLoop for Fill<'_> {
    type Output = Result<(), FeatureError>;

    #[inline(always)]
    fn run<K: Kernel>(self, kernel: K) -> Self::Output {
        let Fill {
            field,
            input,
            values,
            data,
            column,
        } = self;
        let mut put = Put {
            kernel,
            field,
            input,
            data,
            column,
            width: input.columns.len(),
        };
        match values {
            Values::Sent(tensor) => each_value(&field.name, tensor, &mut put),
            Values::Default(value, rows) => (0..rows).try_for_each(|row| put.visit(row, value)),
        }
    }
}

/// What [`each_value`] does with each value.
trait Visit {
    fn visit(&mut self, row: usize, value: FieldValue<'_>) -> Result<(), FeatureError>;
}

/// Transforms a value and writes it into its row of the column.
struct Put<'a, K> {
    kernel: K,
    field: &'a Field,
    input: &'a BuiltInput,
    data: &'a mut TensorData,
    column: usize,
    width: usize,
}

impl<K: Kernel> Visit for Put<'_, K> {
    /// Inlined into every loop of [`each_value`]: the per-value work is the transform and
    /// the store, no call.
    #[inline(always)]
    fn visit(&mut self, row: usize, value: FieldValue<'_>) -> Result<(), FeatureError> {
        let Some(v) = self.kernel.apply(value) else {
            return Err(self.field.transform.refusal(&self.field.name, value));
        };
        store(self.data, row * self.width + self.column, v)
            .map_err(|why| cannot_hold(self.field, self.input, row, v, why))
    }
}

#[cold]
fn cannot_hold(
    field: &Field,
    input: &BuiltInput,
    row: usize,
    v: TransformOutput,
    why: &str,
) -> FeatureError {
    request_error(
        &field.name,
        format!(
            "row {row} gives {}, which input '{}' ({}) cannot hold: {why}",
            show(v),
            input.name,
            input.dtype
        ),
    )
}

/// Writes `v` at `at`, cast to the buffer's datatype; refuses what the datatype cannot hold.
#[inline(always)]
fn store(data: &mut TensorData, at: usize, v: TransformOutput) -> Result<(), &'static str> {
    // `at` is within the buffer: every field sent has the request's rows (`rows` checks).
    const PAST_END: &str = "more values than the input has rows";
    match (data, v) {
        (TensorData::I64(d), TransformOutput::Id(id)) => *d.get_mut(at).ok_or(PAST_END)? = id,
        (TensorData::I32(d), TransformOutput::Id(id)) => {
            *d.get_mut(at).ok_or(PAST_END)? =
                i32::try_from(id).map_err(|_| "out of the INT32 range")?
        }
        (TensorData::F32(d), v) => {
            let x = match v {
                TransformOutput::Id(id) => id as f32,
                TransformOutput::Number(x) => x as f32,
            };
            if !x.is_finite() {
                return Err("out of the FP32 range");
            }
            *d.get_mut(at).ok_or(PAST_END)? = x;
        }
        (TensorData::F64(d), v) => {
            *d.get_mut(at).ok_or(PAST_END)? = match v {
                TransformOutput::Id(id) => id as f64,
                TransformOutput::Number(x) => x,
            };
        }
        // `build` refuses numbers for integer inputs.
        _ => return Err("a number cannot fill an integer input"),
    }
    Ok(())
}

/// Calls `f(row, value)` for each value of a field's tensor: integers as `Int`, floats
/// as `Float`, strings as `Text`. Booleans and text that is not UTF-8 are refused.
#[inline(always)]
fn each_value(field: &str, tensor: &Tensor, f: &mut impl Visit) -> Result<(), FeatureError> {
    macro_rules! ints {
        ($v:expr) => {
            for (row, &x) in $v.iter().enumerate() {
                f.visit(row, FieldValue::Int(x as i64))?;
            }
        };
    }
    macro_rules! floats {
        ($v:expr) => {
            for (row, &x) in $v.iter().enumerate() {
                f.visit(row, FieldValue::Float(f64::from(x)))?;
            }
        };
    }
    match &tensor.data {
        TensorData::I64(v) => ints!(v),
        TensorData::I32(v) => ints!(v),
        TensorData::I16(v) => ints!(v),
        TensorData::I8(v) => ints!(v),
        TensorData::U8(v) => ints!(v),
        TensorData::U16(v) => ints!(v),
        TensorData::U32(v) => ints!(v),
        TensorData::U64(v) => {
            for (row, &x) in v.iter().enumerate() {
                let x = i64::try_from(x).map_err(|_| {
                    request_error(field, format!("row {row} is {x}, beyond the INT64 range"))
                })?;
                f.visit(row, FieldValue::Int(x))?;
            }
        }
        TensorData::F16(v) => floats!(v),
        TensorData::BF16(v) => floats!(v),
        TensorData::F32(v) => floats!(v),
        TensorData::F64(v) => floats!(v),
        TensorData::Bytes(strings) => {
            let texts = strings
                .texts()
                .map_err(|row| request_error(field, format!("row {row} is not UTF-8 text")))?;
            for (row, text) in texts.enumerate() {
                f.visit(row, FieldValue::Text(text))?;
            }
        }
        TensorData::Bool(_) => {
            return Err(FeatureError::WrongKind {
                field: field.to_owned(),
                expected: "text or a number",
                got: "BOOL values".into(),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

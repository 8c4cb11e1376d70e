//! One ONNX Runtime run of already-stacked inputs. Knows nothing of requests or batches:
//! the batcher stacks before and splits after.

use super::value::{from_ort_value, to_ort_value};
use super::Session;
use crate::spec::ModelSpec;
use crate::tensor::Tensor;

/// Runs `inputs` (graph input order) and returns the outputs in graph output order.
/// Errors are strings for the log and the 500 message.
pub fn execute(
    session: &mut Session,
    spec: &ModelSpec,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, String> {
    let mut values = Vec::with_capacity(inputs.len());
    for (s, t) in spec.inputs.iter().zip(inputs) {
        values.push((s.name.as_str(), to_ort_value(t).map_err(|e| e.to_string())?));
    }
    let outputs = session.0.run(values).map_err(|e| e.to_string())?;
    let mut tensors = Vec::with_capacity(spec.outputs.len());
    for o in &spec.outputs {
        let value = outputs
            .get(&o.name)
            .ok_or_else(|| format!("ONNX Runtime returned no output '{}'", o.name))?;
        tensors.push(from_ort_value(value)?);
    }
    Ok(tensors)
}

//! One ONNX Runtime run of already-stacked inputs. Knows nothing of requests or batches:
//! the batcher stacks before and splits after.

use super::value::{from_ort_value, to_ort_value};
use super::{RunError, Session};
use crate::spec::{ModelSpec, TensorSpec, LARGE_RUN_BYTES};
use crate::tensor::{element_count, Tensor};

/// Runs `inputs` (the order of `model.onnx`'s inputs, [`ModelSpec::graph_inputs`]) and
/// returns the outputs in graph output order.
pub fn execute(
    session: &mut Session,
    spec: &ModelSpec,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, RunError> {
    run(
        &mut session.graph,
        spec,
        spec.graph_inputs(),
        inputs,
        &spec.outputs,
    )
}

/// Runs the context graph of a context model on `inputs` (its inputs' order, stacked
/// context rows) and returns its outputs in its order.
pub fn execute_context(
    session: &mut Session,
    spec: &ModelSpec,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, RunError> {
    let context = spec.context.as_ref().ok_or(RunError::NoContextGraph)?;
    let graph = session.context.as_mut().ok_or(RunError::NoContextSession)?;
    run(graph, spec, &context.input_specs, inputs, &context.outputs)
}

fn run(
    graph: &mut ort::session::Session,
    spec: &ModelSpec,
    input_specs: &[TensorSpec],
    inputs: Vec<Tensor>,
    output_specs: &[TensorSpec],
) -> Result<Vec<Tensor>, RunError> {
    let elements: usize = inputs.iter().map(|t| element_count(&t.shape)).sum();
    let mut values = Vec::with_capacity(inputs.len());
    for (s, t) in input_specs.iter().zip(inputs) {
        values.push((s.name.as_str(), to_ort_value(t)?));
    }
    // A large run asks ORT to shrink its arena when it ends: the arena otherwise keeps its
    // peak for good (one long-history request left 3.7 GB resident), while below this the
    // arena's reuse saves allocations on every run.
    let shrink = if spec.footprint.bytes(elements) > LARGE_RUN_BYTES {
        Some(shrink_options()?)
    } else {
        None
    };
    let outputs = match &shrink {
        Some(options) => graph.run_with_options(values, options),
        None => graph.run(values),
    }?;
    let mut tensors = Vec::with_capacity(output_specs.len());
    for o in output_specs {
        let value = outputs
            .get(&o.name)
            .ok_or_else(|| RunError::MissingOutput(o.name.clone()))?;
        tensors.push(from_ort_value(value)?);
    }
    Ok(tensors)
}

/// Run options that give the CPU arena's free memory back when the run ends. Only the
/// CPU: ORT refuses the option for a device without an arena, and the instance running
/// this may be on either (a GPU arena keeps its peak).
fn shrink_options() -> ort::Result<ort::session::RunOptions> {
    let mut options = ort::session::RunOptions::new()?;
    options.set("memory.enable_memory_arena_shrinkage", "cpu:0")?;
    Ok(options)
}

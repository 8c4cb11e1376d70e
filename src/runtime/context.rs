//! Joining a context graph (`[context]`) to `model.onnx` at load: which inputs clients
//! send (the context graph's, sent once per request, and the scorer's that the context
//! graph does not feed) and which scorer inputs the context graph's outputs feed. Every
//! mismatch is a load error naming the model, the file and the tensor.

use super::SessionError;
use crate::spec::{ContextSpec, Feed, TensorSpec};

/// The client inputs of a version and, for a context model, how its graphs join.
pub struct Joined {
    /// What clients send, before `config.toml`'s per-input settings.
    pub inputs: Vec<TensorSpec>,
    /// The scorer inputs the context graph feeds (clients never send them).
    pub fed: Vec<String>,
    pub context: Option<Plan>,
}

impl Joined {
    /// A model of one graph: clients send its inputs.
    pub fn single(inputs: Vec<TensorSpec>) -> Joined {
        Joined {
            inputs,
            fed: Vec::new(),
            context: None,
        }
    }
}

/// A context model's join, finished once the client inputs have their settings.
pub struct Plan {
    file: String,
    /// The context graph's inputs are client inputs `0..count`, in its order.
    count: usize,
    outputs: Vec<TensorSpec>,
    scorer_inputs: Vec<TensorSpec>,
    feeds: Vec<Feed>,
}

impl Plan {
    /// The [`ContextSpec`], with the client inputs' padding and broadcast settings copied
    /// to the specs that stack them (a client input the scorer also takes is repeated to
    /// the request's rows like a context output).
    pub fn finish(self, inputs: &[TensorSpec]) -> ContextSpec {
        let scorer_inputs = self
            .scorer_inputs
            .into_iter()
            .zip(&self.feeds)
            .map(|(graph, feed)| match *feed {
                Feed::Client(i) => inputs[i].clone(),
                Feed::Context(_) => TensorSpec {
                    broadcast: true,
                    ..graph
                },
            })
            .collect();
        ContextSpec {
            file: self.file,
            inputs: (0..self.count).collect(),
            input_specs: inputs[..self.count].to_vec(),
            outputs: self.outputs,
            scorer_inputs,
            feeds: self.feeds,
        }
    }
}

/// Joins the context graph `file` (its `inputs` and `outputs`) to the scorer's inputs:
/// each context output must match a scorer input by name, datatype and trailing shape;
/// the context graph must batch (its rows are the context rows of several requests).
pub fn join(
    model: &str,
    file: &str,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    scorer: Vec<TensorSpec>,
) -> Result<Joined, SessionError> {
    let at = |what: String| {
        SessionError::Unservable(format!("model '{model}' [context] {file}: {what}"))
    };
    if inputs.is_empty() {
        return Err(at(
            "the context graph has no inputs; it takes the request's context".to_string(),
        ));
    }
    let fixed = inputs
        .iter()
        .map(|s| ("input", s))
        .chain(outputs.iter().map(|s| ("output", s)))
        .find(|(_, s)| s.shape.first() != Some(&-1));
    if let Some((kind, s)) = fixed {
        return Err(at(format!(
            "{kind} '{}' has shape {:?}: a context graph must batch (a dynamic first axis), as it runs the context rows of several requests at once",
            s.name, s.shape
        )));
    }
    let scorer_names = || {
        scorer
            .iter()
            .map(|s| format!("'{}' ({})", s.name, s.describe()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut feeds: Vec<Option<Feed>> = vec![None; scorer.len()];
    for (o, out) in outputs.iter().enumerate() {
        let Some(i) = scorer.iter().position(|s| s.name == out.name) else {
            return Err(at(format!(
                "output '{}' ({}) matches no input of model.onnx, which takes {}; each context output feeds the model.onnx input of its name",
                out.name,
                out.describe(),
                scorer_names()
            )));
        };
        let takes = &scorer[i];
        if takes.dtype != out.dtype {
            return Err(at(format!(
                "output '{}' is {} but model.onnx's input '{}' takes {}; their datatypes must be equal",
                out.name,
                out.describe(),
                takes.name,
                takes.describe()
            )));
        }
        let fits = takes.shape.len() == out.shape.len()
            && takes.shape[1..]
                .iter()
                .zip(&out.shape[1..])
                .all(|(&t, &o)| t == o || t == -1);
        if !fits {
            return Err(at(format!(
                "output '{}' has shape {:?} but model.onnx's input '{}' takes {:?}; their dims after the batch axis must agree",
                out.name, out.shape, takes.name, takes.shape
            )));
        }
        feeds[i] = Some(Feed::Context(o));
    }
    let count = inputs.len();
    let mut clients: Vec<TensorSpec> = inputs
        .into_iter()
        .map(|s| TensorSpec {
            broadcast: true,
            ..s
        })
        .collect();
    let mut fed = Vec::new();
    for (slot, s) in feeds.iter_mut().zip(&scorer) {
        if slot.is_some() {
            fed.push(s.name.clone());
            continue;
        }
        // A scorer input named like a context input takes the same client tensor.
        if let Some(c) = clients[..count].iter().position(|c| c.name == s.name) {
            if clients[c].dtype != s.dtype || clients[c].shape != s.shape {
                return Err(at(format!(
                    "input '{}' is {} in the context graph but {} in model.onnx; an input both graphs take must be the same tensor",
                    s.name,
                    clients[c].describe(),
                    s.describe()
                )));
            }
            *slot = Some(Feed::Client(c));
            continue;
        }
        *slot = Some(Feed::Client(clients.len()));
        clients.push(s.clone());
    }
    let feeds: Vec<Feed> = feeds.into_iter().flatten().collect();
    Ok(Joined {
        inputs: clients,
        fed,
        context: Some(Plan {
            file: file.to_string(),
            count,
            outputs,
            scorer_inputs: scorer,
            feeds,
        }),
    })
}

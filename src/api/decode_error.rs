//! Why a request's body or message does not decode into inputs: every cause is the
//! client's, and each transport answers it the same way (HTTP 400, gRPC INVALID_ARGUMENT)
//! through [`DecodeError::for_model`].

use crate::error::Error;
use crate::service::rank::RankError;
use crate::spec::ModelSpec;

/// A request that cannot be decoded; the message says what was expected and what came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body's framing: JSON that does not parse, lengths and counts that do not add up,
    /// too many entries.
    #[error("{0}")]
    Body(String),
    /// A request parameter of the wrong type or value.
    #[error("{0}")]
    Parameter(String),
    /// `top_k` that is no positive integer.
    #[error(transparent)]
    Ranking(#[from] RankError),
    /// One input whose datatype, shape or data do not make the tensor it declares.
    #[error("input '{name}': {reason}")]
    Input { name: String, reason: String },
}

impl DecodeError {
    /// A [`DecodeError::Input`] for input `name`.
    pub fn input(name: &str, reason: impl ToString) -> DecodeError {
        DecodeError::Input {
            name: name.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The request error a transport answers with: invalid input, naming the model.
    pub fn for_model(self, spec: &ModelSpec) -> Error {
        spec.invalid(self)
    }
}

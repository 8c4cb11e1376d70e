//! Why a batch could not run or its answers could not be handed back. Every request of
//! the batch fails with it, as the server's fault: validation let each request in.

use crate::runtime::RunError;
use crate::tensor::TensorError;

/// A failed batch: its requests' parts do not stack, its outputs do not split into their
/// rows, or ONNX Runtime failed the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Parts of one input that cannot be stacked, or outputs that cannot be split into
    /// the requests' rows; the message names the shapes or counts.
    #[error("{0}")]
    Assemble(String),
    /// A stacked buffer that does not fill its shape.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// ONNX Runtime's run failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The run panicked inside ONNX Runtime or our code around it.
    #[error("ONNX Runtime execution panicked")]
    Panicked,
    /// The worker thread itself panicked outside the run; its batch is answered as its
    /// thread unwinds.
    #[error(
        "its worker thread panicked while running this request's batch; a fresh worker replaces it"
    )]
    WorkerPanicked,
}

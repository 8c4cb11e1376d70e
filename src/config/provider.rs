//! Where ONNX Runtime sessions run.

/// Where sessions run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    /// ONNX Runtime's CPU kernels.
    Cpu,
    /// CUDA (needs the GPU build of ONNX Runtime); falls back to CPU with a warning.
    Cuda,
}

//! Where ONNX Runtime sessions run, what to do when that is not possible, and where each
//! instance ended up.

use std::fmt;

/// The execution provider asked for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    /// ONNX Runtime's CPU kernels.
    Cpu,
    /// CUDA: needs the GPU build of ONNX Runtime (`ORT_FLAVOR=gpu
    /// scripts/fetch-onnxruntime.sh`) and the CUDA/cuDNN libraries on the loader path.
    Cuda,
}

/// What happens when the provider asked for cannot be used.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Deserialize,
    serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ProviderFallback {
    /// The model fails to load, with a message naming the provider and why.
    #[default]
    Error,
    /// The model loads on the CPU, with a WARN naming the model.
    Cpu,
}

/// Where one instance of a model actually runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub provider: ExecutionProvider,
    /// The GPU ordinal (CUDA only).
    pub device_id: i32,
}

impl Placement {
    pub const CPU: Placement = Placement {
        provider: ExecutionProvider::Cpu,
        device_id: 0,
    };
}

impl fmt::Display for Placement {
    /// `cpu` or `cuda:<device>`, as every view and the logs show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.provider {
            ExecutionProvider::Cpu => f.write_str("cpu"),
            ExecutionProvider::Cuda => write!(f, "cuda:{}", self.device_id),
        }
    }
}

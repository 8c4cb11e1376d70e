//! Configuration: the server's (defaults < file < `MLPSERVE_*` env < CLI flags, merged as
//! typed layers) and each model's `config.toml`.

mod memory;
mod model;
pub mod observe;
mod provider;
mod server;
mod transport;
mod triton_json;

pub use memory::MemoryLimit;
pub use model::{
    BatchSize, ConfigError, InputConfig, ModelConfig, VersionPolicy, DEFAULT_MAX_PAD_LENGTH,
};
pub use provider::{ExecutionProvider, Placement, ProviderFallback};
pub use server::{
    ControlMode, LogFormat, OverloadStatus, ServerArgs, ServerConfig, DEFAULT_MAX_STRING_BYTES,
};
pub use transport::{
    fd_limit, max_connections_ceiling, raise_fd_limit, ApiKeys, TlsFiles, TransportConfig,
};

/// Most threads (worker instances or ORT threads) a setting may ask for: four per core.
pub fn max_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) * 4
}

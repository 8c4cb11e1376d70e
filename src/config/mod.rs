//! Configuration: the server's (defaults < file < `MLPSERVE_*` env < CLI flags, merged as
//! typed layers) and each model's `config.toml`.

mod model;
mod provider;
mod server;

pub use model::{InputConfig, ModelConfig, DEFAULT_MAX_PAD_LENGTH};
pub use provider::ExecutionProvider;
pub use server::{LogFormat, ServerArgs, ServerConfig};

/// Most threads (worker instances or ORT threads) a setting may ask for: four per core.
pub fn max_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) * 4
}

//! Transports. Handlers decode, call [`crate::repository::Model::infer`], encode; nothing
//! else. Both transports share the error table in [`crate::error`].

pub mod grpc;
pub mod http;

/// Protocol extensions this server implements, advertised by both transports' server
/// metadata (`GET /v2`, the `ServerMetadata` RPC).
pub const EXTENSIONS: &[&str] = &["binary_tensor_data", "model_configuration", "statistics"];

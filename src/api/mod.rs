//! Transports. Handlers decode, call [`crate::repository::Model::infer`], encode; nothing
//! else. Both transports share the error table in [`crate::error`].

pub mod grpc;
pub mod http;

//! Transports: thin adapters that decode, call the [`crate::service::Service`], encode and
//! map [`crate::error::Error`] to their status codes. Nothing else.

pub mod grpc;
pub mod http;

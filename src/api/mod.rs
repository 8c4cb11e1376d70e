//! Transports: thin adapters that decode, call the [`crate::service::Service`], encode and
//! map [`crate::error::Error`] to their status codes. Nothing else.

pub mod auth;
pub mod conn;
pub mod decode_error;
pub mod grpc;
pub mod http;
pub mod tls;

use std::sync::Arc;

pub use decode_error::DecodeError;

use crate::config::TransportConfig;
use crate::metrics::TransportMetrics;

/// What every port's server needs besides the service: the shared connection layer and,
/// when configured, TLS.
#[derive(Clone)]
pub struct Transport {
    pub conns: Arc<conn::Connections>,
    pub tls: Option<Arc<tls::Tls>>,
}

impl Transport {
    /// Loads the TLS files (if any) and sets up the connection table.
    pub fn new(
        config: &TransportConfig,
        metrics: &TransportMetrics,
    ) -> Result<Transport, tls::TlsError> {
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(tls::Tls::load(files)?)),
            None => None,
        };
        Ok(Transport {
            conns: conn::Connections::new(config.clone(), metrics.clone()),
            tls,
        })
    }
}

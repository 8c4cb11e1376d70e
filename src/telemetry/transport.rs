//! Sends an encoded `ExportTraceServiceRequest` to the collector: OTLP/gRPC (the
//! `TraceService/Export` call over a kept tonic channel) or OTLP/HTTP (a protobuf POST to
//! `/v1/traces`). Both run on the export thread's own tokio runtime.

use std::time::Duration;

use bytes::{BufMut, Bytes};
use http::uri::PathAndQuery;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prost::encoding::{DecodeContext, WireType};

use super::error::ExportError;
use super::TelemetryError;
use crate::config::observe::{OtlpProtocol, TraceConfig};

/// One export may take this long.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The gRPC method of OTLP trace export.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A connection to the collector.
pub enum Collector {
    Grpc(tonic::client::Grpc<tonic::transport::Channel>),
    /// Boxed: the client is much larger than the gRPC channel.
    Http(Box<HttpCollector>),
}

/// The OTLP/HTTP side: a kept-alive client and the `/v1/traces` URL.
pub struct HttpCollector {
    client: Client<HttpConnector, Full<Bytes>>,
    url: Uri,
}

impl Collector {
    /// Sets up the connection (made on first use, remade when lost). Inside the runtime
    /// that will run it.
    pub fn new(config: &TraceConfig) -> Result<Collector, TelemetryError> {
        let bad = |e: &dyn std::fmt::Display| TelemetryError::Endpoint {
            endpoint: config.endpoint.clone(),
            reason: e.to_string(),
        };
        if !config.endpoint.starts_with("http://") {
            return Err(bad(
                &"only plain http:// collectors are supported (no TLS): point it at a collector (or a local agent) that forwards over TLS",
            ));
        }
        match config.protocol {
            OtlpProtocol::Grpc => {
                let channel = tonic::transport::Endpoint::from_shared(config.endpoint.clone())
                    .map_err(|e| bad(&e))?
                    .connect_timeout(EXPORT_TIMEOUT)
                    .timeout(EXPORT_TIMEOUT)
                    .connect_lazy();
                Ok(Collector::Grpc(tonic::client::Grpc::new(channel)))
            }
            OtlpProtocol::HttpProtobuf => {
                let url: Uri = http_traces_url(&config.endpoint)
                    .parse()
                    .map_err(|e| bad(&e))?;
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(EXPORT_TIMEOUT));
                let client = Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .build(connector);
                Ok(Collector::Http(Box::new(HttpCollector { client, url })))
            }
        }
    }

    /// Sends one export request; an error says why the collector did not take it.
    pub async fn send(&mut self, body: Bytes) -> Result<(), ExportError> {
        match self {
            Collector::Grpc(grpc) => {
                grpc.ready().await?;
                let codec = tonic_prost::ProstCodec::<Encoded, ()>::default();
                grpc.unary(
                    tonic::Request::new(Encoded(body)),
                    PathAndQuery::from_static(EXPORT_PATH),
                    codec,
                )
                .await?;
                Ok(())
            }
            Collector::Http(h) => {
                let HttpCollector { client, url } = &**h;
                let request = Request::post(url.clone())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(Full::new(body))?;
                let answer = client.request(request).await?;
                let status = answer.status();
                // Read the answer to the end, so the connection is kept for the next one.
                let _ = answer.into_body().collect().await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(ExportError::Status(status))
                }
            }
        }
    }
}

/// OTLP/HTTP posts to `/v1/traces`; a collector URL given without a path gets it.
fn http_traces_url(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    if rest.trim_end_matches('/').contains('/') {
        endpoint.to_string()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    }
}

/// A message already in protobuf wire form, sent as it is.
#[derive(Debug, Default, Clone)]
struct Encoded(Bytes);

impl prost::Message for Encoded {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // Never decoded: only sent.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tls_collectors_are_refused_at_start_with_the_reason() {
        for protocol in [OtlpProtocol::Grpc, OtlpProtocol::HttpProtobuf] {
            let config = TraceConfig {
                endpoint: "https://collector:4317".into(),
                protocol,
                service_name: "mlpserve".into(),
                sample_ratio: 1.0,
            };
            let Err(e) = Collector::new(&config) else {
                panic!("an https:// collector was accepted");
            };
            let e = e.to_string();
            assert!(
                e.contains("https://collector:4317") && e.contains("no TLS"),
                "{e}"
            );
        }
    }

    /// A loopback address nothing listens on.
    fn dead_endpoint() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    #[tokio::test]
    async fn a_dead_collector_fails_the_export_with_a_typed_reason() {
        let endpoint = dead_endpoint();
        for protocol in [OtlpProtocol::Grpc, OtlpProtocol::HttpProtobuf] {
            let config = TraceConfig {
                endpoint: endpoint.clone(),
                protocol,
                service_name: "mlpserve".into(),
                sample_ratio: 1.0,
            };
            let mut collector = Collector::new(&config).unwrap();
            let e = collector.send(Bytes::from_static(b"")).await.unwrap_err();
            match (protocol, &e) {
                (OtlpProtocol::Grpc, ExportError::Connect(_)) => {}
                (OtlpProtocol::Grpc, ExportError::Grpc { code, .. }) => {
                    assert_eq!(*code, tonic::Code::Unavailable, "{e}")
                }
                (OtlpProtocol::HttpProtobuf, ExportError::Http(_)) => {}
                _ => panic!("{protocol:?}: unexpected error {e:?}"),
            }
        }
    }

    #[test]
    fn http_collector_urls_get_the_traces_path_only_when_they_have_none() {
        assert_eq!(
            http_traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://gw:80/otlp/v1/traces"),
            "http://gw:80/otlp/v1/traces"
        );
    }
}

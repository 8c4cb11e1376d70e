//! Fuzz target bodies: one function per decoder a client reaches, fed raw bytes. Each one
//! must never panic, and checks the decoder's own promise where it makes one (element
//! counts match shapes, binary tensors round-trip, decompressed bodies stay under the
//! limit). Nothing here loads ONNX Runtime.
//!
//! Used twice: by the libFuzzer binaries in `fuzz_targets/` (`cargo fuzz run <name>`), and
//! by `tests/fuzz_corpus.rs` in the main crate, which replays the committed corpus through
//! these same functions on stable Rust. So this file may only use crates that the main
//! crate also depends on.

use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use mlpserve::api::grpc::codec;
use mlpserve::api::grpc::proto::ModelInferRequest;
use mlpserve::api::http::{predict, v2_codec};
use mlpserve::config::{BatchSize, ModelConfig, ServerArgs};
use mlpserve::spec::NamedTensor;
use mlpserve::tensor::{
    decode_array, decode_binary, element_count, encode_binary, DataType, Tensor,
};
use prost::Message;
use tower::ServiceExt;
use tower_http::decompression::RequestDecompressionLayer;

/// Every decoded tensor holds exactly as many elements as its shape says.
fn check_tensors(inputs: &[NamedTensor]) {
    for input in inputs {
        check_tensor(&input.tensor);
    }
}

fn check_tensor(t: &Tensor) {
    assert_eq!(t.data.len(), element_count(&t.shape), "shape {:?}", t.shape);
}

/// KServe V2 JSON body (`POST /v2/models/{name}/infer` without binary parts).
pub fn v2_json(data: &[u8]) {
    if let Ok(request) = v2_codec::decode(&HeaderMap::new(), data) {
        check_tensors(&request.inputs);
    }
}

/// V2 body with Triton's binary-tensor extension. The first two bytes (little-endian) give
/// `Inference-Header-Content-Length`; the rest is the body (JSON, then binary parts).
pub fn v2_binary(data: &[u8]) {
    let Some((len, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = u16::from_le_bytes(*len);
    let mut headers = HeaderMap::new();
    headers.insert(v2_codec::HEADER_LENGTH, HeaderValue::from(len));
    if let Ok(request) = v2_codec::decode(&headers, body) {
        check_tensors(&request.inputs);
    }
}

/// `POST /predict`: the body's nested arrays, converted to every datatype a model input
/// may have (the handler takes the datatype from the model).
pub fn predict(data: &[u8]) {
    let Ok(inputs) = predict::parse_inputs(data) else {
        return;
    };
    for (_, text) in inputs {
        for dtype in DataType::all() {
            if let Ok(array) = decode_array(&text, dtype) {
                // Ragged arrays are rejected, so the nesting's shape accounts for every number.
                assert_eq!(array.data.dtype(), dtype);
                assert_eq!(
                    array.data.len(),
                    element_count(&array.shape),
                    "shape {:?}",
                    array.shape
                );
                if let Ok(t) = Tensor::new(array.shape, array.data) {
                    check_tensor(&t);
                }
            }
        }
    }
}

/// gRPC `ModelInfer`: protobuf bytes to `ModelInferRequest` (what tonic does), then our
/// conversion to tensors.
pub fn grpc_request(data: &[u8]) {
    let Ok(request) = ModelInferRequest::decode(data) else {
        return;
    };
    if let Ok(decoded) = codec::decode(request) {
        check_tensors(&decoded.inputs);
    }
}

/// Body limit for the decompression target: small, so that bombs hit it quickly.
pub const DECOMPRESSED_LIMIT: usize = 64 << 10;

/// `Content-Encoding` values the decompression target picks from (first input byte).
const ENCODINGS: [&str; 5] = ["gzip", "deflate", "identity", "gzip, deflate", "br"];

/// Reads the whole (decompressed) body the way the inference handlers do.
async fn read_body(body: Result<Bytes, BytesRejection>) -> Response {
    match body {
        Ok(bytes) => (StatusCode::OK, bytes.len().to_string()).into_response(),
        Err(rejection) => rejection.status().into_response(),
    }
}

/// The same request-body layers as `api::http::router` (body limit inside request
/// decompression), around a handler that reads the body. The real router needs a loaded
/// model repository, hence ONNX Runtime, so it is rebuilt here; keep the two in step.
fn body_stack() -> &'static (tokio::runtime::Runtime, Router) {
    static STACK: OnceLock<(tokio::runtime::Runtime, Router)> = OnceLock::new();
    STACK.get_or_init(|| {
        // A current-thread runtime has nothing to fail on but the OS.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime");
        let router = Router::new()
            .route("/", post(read_body))
            .layer(DefaultBodyLimit::max(DECOMPRESSED_LIMIT))
            .layer(RequestDecompressionLayer::new());
        (runtime, router)
    })
}

/// gzip/deflate request bodies: the first byte picks the `Content-Encoding`, the rest is
/// the body. Corrupt streams are 400, bombs 413, unknown encodings 415; never a 5xx, and
/// never more than the limit handed to the handler.
pub fn decompression(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let encoding = ENCODINGS[usize::from(pick) % ENCODINGS.len()];
    let (runtime, router) = body_stack();
    let request = Request::post("/")
        .header(header::CONTENT_ENCODING, encoding)
        .body(Body::from(body.to_vec()))
        .expect("static request parts are valid");
    let response = runtime
        .block_on(router.clone().oneshot(request))
        .expect("axum routers are infallible");
    let status = response.status();
    assert!(
        matches!(status.as_u16(), 200 | 400 | 413 | 415),
        "{encoding}: status {status}"
    );
    if status == StatusCode::OK {
        let body = runtime
            .block_on(axum::body::to_bytes(response.into_body(), 64))
            .expect("the handler's answer is a short string");
        let len: usize = std::str::from_utf8(&body)
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("the handler answers the body length");
        assert!(len <= DECOMPRESSED_LIMIT, "{encoding}: {len} bytes read");
    }
}

/// A model's `config.toml` and the server's `--config` file.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = ModelConfig::parse(text) {
        // A parsed config passed its range checks.
        assert!(!matches!(config.max_batch_size, BatchSize::Fixed(0)) && config.instances >= 1);
        assert!(config.device_id(usize::MAX) >= 0);
    }
    let _ = toml::from_str::<ServerArgs>(text);
}

/// The binary tensor codec (HTTP binary parts, gRPC `raw_input_contents`). Layout: datatype
/// (byte 0, modulo the datatype count), rank (byte 1: low 3 bits; bit 7 set = 8-byte dims,
/// else 2-byte dims, so both plausible and absurd shapes are reachable), the dims
/// little-endian, then the tensor bytes.
pub fn tensor_binary(data: &[u8]) {
    let [kind, rank, rest @ ..] = data else {
        return;
    };
    let dtypes: Vec<DataType> = DataType::all().collect();
    let dtype = dtypes[usize::from(*kind) % dtypes.len()];
    let width = if rank & 0x80 != 0 { 8 } else { 2 };
    let rank = usize::from(rank & 7);
    if rest.len() < rank * width {
        return;
    }
    let (dims, bytes) = rest.split_at(rank * width);
    let shape: Vec<usize> = dims
        .chunks_exact(width)
        .map(|d| {
            let mut le = [0u8; 8];
            le[..width].copy_from_slice(d);
            usize::try_from(u64::from_le_bytes(le)).unwrap_or(usize::MAX)
        })
        .collect();
    let Ok(tensor) = decode_binary(dtype, &shape, bytes) else {
        return;
    };
    check_tensor(&tensor);
    let mut back = Vec::new();
    encode_binary(&tensor, &mut back);
    if dtype == DataType::Bool {
        // Any non-zero byte is true and comes back as 1.
        let canonical: Vec<u8> = bytes.iter().map(|&b| u8::from(b != 0)).collect();
        assert_eq!(back, canonical);
    } else {
        assert_eq!(back, bytes);
    }
}

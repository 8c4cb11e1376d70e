//! Codec micro-benchmark: decoding one [64, 256] FP32 input from a KServe V2 JSON body
//! versus Triton's binary-tensor extension (JSON header + raw bytes), both through the HTTP
//! handler's own decoder (`api::http::v2_codec::decode`).
//! Prints the JSON ÷ binary time ratio at the end (target: binary at least 5x faster).
//!
//! Also compares, interleaved in the same run, the array decoder (`decode_array`: the
//! walker, straight into the typed buffer) with serde_json reading the same text into
//! `Vec<f32>` / `Vec<Vec<f32>>`, for the flat V2 `data` array and the nested `/predict` form,
//! and times JSON encoding of the same tensor next to formatting its floats alone (the floor).
//!
//! Run: `cargo bench --bench codecs` (about 15 s).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};

use axum::http::{HeaderMap, HeaderValue};
use mlpserve::api::http::v2_codec;
use mlpserve::tensor::{
    decode_array, decode_binary, encode_binary, DataType, Flat, Nested, Tensor, TensorData,
};

const ROWS: usize = 64;
const COLS: usize = 256;

/// Deterministic values in [-1, 1) with full float precision, like real features.
fn values() -> Vec<f32> {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    (0..ROWS * COLS)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn json_body(t: &Tensor) -> Vec<u8> {
    let body = serde_json::json!({ "inputs": [{
        "name": "x", "shape": t.shape, "datatype": "FP32", "data": Flat(&t.data)
    }]});
    serde_json::to_vec(&body).expect("a JSON value serialises")
}

/// JSON header plus the tensor bytes; returns (body, header length).
fn binary_body(t: &Tensor) -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    encode_binary(t, &mut bytes);
    let header = serde_json::json!({ "inputs": [{
        "name": "x", "shape": t.shape, "datatype": "FP32",
        "parameters": { "binary_data_size": bytes.len() }
    }]});
    let mut body = serde_json::to_vec(&header).expect("a JSON value serialises");
    let len = body.len();
    body.extend_from_slice(&bytes);
    (body, len)
}

/// The HTTP handler's decode of a whole V2 body (JSON, or JSON header + binary tensors).
fn decode(headers: &HeaderMap, body: &[u8]) -> Tensor {
    let mut request = v2_codec::decode(headers, body).expect("valid body");
    request.inputs.pop().expect("one input").tensor
}

/// Median time per call over several timed batches (for the printed ratio).
fn median_time(mut f: impl FnMut(), iters: u32) -> Duration {
    let mut samples: Vec<Duration> = (0..9)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed() / iters
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let tensor = Tensor {
        shape: vec![ROWS, COLS],
        data: TensorData::F32(values()),
    };
    let json = json_body(&tensor);
    let (binary, json_len) = binary_body(&tensor);
    let no_headers = HeaderMap::new();
    let mut binary_headers = HeaderMap::new();
    binary_headers.insert(v2_codec::HEADER_LENGTH, HeaderValue::from(json_len));
    let decode_json = |body: &[u8]| decode(&no_headers, body);
    let decode_binary_body = |body: &[u8], _json_len: usize| decode(&binary_headers, body);
    // Both paths must decode to the same tensor, or the comparison means nothing.
    assert_eq!(decode_json(&json), tensor);
    assert_eq!(decode_binary_body(&binary, json_len), tensor);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    let mut group = c.benchmark_group("decode_fp32_64x256");
    group.throughput(Throughput::Bytes((ROWS * COLS * 4) as u64));
    group.bench_function("v2_json", |b| b.iter(|| decode_json(black_box(&json))));
    group.bench_function("v2_binary", |b| {
        b.iter(|| decode_binary_body(black_box(&binary), json_len))
    });
    group.bench_function("decode_binary_only", |b| {
        b.iter(|| decode_binary(DataType::F32, &[ROWS, COLS], black_box(&binary[json_len..])))
    });
    group.finish();
    c.final_summary();

    let j = median_time(|| drop(black_box(decode_json(black_box(&json)))), 20);
    let b = median_time(
        || drop(black_box(decode_binary_body(black_box(&binary), json_len))),
        200,
    );
    // serde_json vs the walker, alternating rounds so machine drift hits both.
    let flat_text = serde_json::to_string(&Flat(&tensor.data)).expect("serialises");
    let nested_text = serde_json::to_string(&Nested {
        shape: &tensor.shape,
        data: &tensor.data,
    })
    .expect("serialises");
    let serde_path = |text: &str| match text.as_bytes().get(1) {
        Some(b'[') => {
            let rows: Vec<Vec<f32>> = serde_json::from_str(text).expect("valid");
            TensorData::F32(rows.concat())
        }
        _ => TensorData::F32(serde_json::from_str(text).expect("valid")),
    };
    let fast_path = |text: &str| decode_array(text, DataType::F32).expect("valid").data;
    assert_eq!(fast_path(&flat_text), tensor.data);
    assert_eq!(fast_path(&nested_text), tensor.data);
    assert_eq!(serde_path(&nested_text), tensor.data);
    let numbers = (ROWS * COLS) as f64;
    for (form, text) in [
        ("flat V2 data", &flat_text),
        ("nested /predict", &nested_text),
    ] {
        let mut old = Vec::new();
        let mut new = Vec::new();
        for _ in 0..3 {
            old.push(median_time(
                || drop(black_box(serde_path(black_box(text)))),
                10,
            ));
            new.push(median_time(
                || drop(black_box(fast_path(black_box(text)))),
                10,
            ));
        }
        old.sort();
        new.sort();
        let (o, n) = (old[1].as_secs_f64(), new[1].as_secs_f64());
        println!(
            "[64, 256] FP32 {form} array ({} B): serde_json {:.1} ns/number, decode_array {:.1} ns/number: {:.1}x faster",
            text.len(),
            o * 1e9 / numbers,
            n * 1e9 / numbers,
            o / n
        );
    }
    let enc = median_time(
        || {
            drop(black_box(serde_json::to_vec(&Flat(black_box(
                &tensor.data,
            )))))
        },
        10,
    );
    // The floor of any shortest-form encoder: formatting each float alone, with
    // serde_json's own formatter, into one reused buffer.
    let format_only = median_time(
        || {
            let mut buffer = zmij::Buffer::new();
            let mut bytes = 0;
            if let TensorData::F32(values) = &tensor.data {
                for &x in values {
                    bytes += buffer.format_finite(black_box(x)).len();
                }
            }
            black_box(bytes);
        },
        10,
    );
    println!(
        "[64, 256] FP32 JSON encode (Flat): {:.1} ns/number; formatting the floats alone (zmij, shortest round-trip form): {:.1} ns/number, so the encoder is {:.2}x that floor",
        enc.as_secs_f64() * 1e9 / numbers,
        format_only.as_secs_f64() * 1e9 / numbers,
        enc.as_secs_f64() / format_only.as_secs_f64()
    );

    println!(
        "\n[64, 256] FP32: JSON body {} B (f32 values as 17-digit f64 literals, as Python clients send them) decodes in {:.1} µs ({:.1} ns/number), binary body {} B in {:.1} µs: binary is {:.1}x faster (target >= 5x)",
        json.len(),
        j.as_secs_f64() * 1e6,
        j.as_secs_f64() * 1e9 / numbers,
        binary.len(),
        b.as_secs_f64() * 1e6,
        j.as_secs_f64() / b.as_secs_f64()
    );
}

//! Helpers for the gRPC tests: a client on its own runtime, requests built from
//! `samples.json`, responses decoded back to JSON values for comparison.

use std::collections::BTreeMap;
use std::future::Future;

use bytes::Bytes;
use mlpserve::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlpserve::api::grpc::proto::model_infer_request::InferInputTensor;
use mlpserve::api::grpc::proto::*;
use serde_json::Value;
use tonic::transport::Channel;
use tonic::Code;

use crate::common::{assert_close, flatten, samples, TestServer};

pub type Client = GrpcInferenceServiceClient<Channel>;

/// Runs `test` with a connected client on a fresh runtime (the server has its own).
pub fn with_client<F: Future<Output = ()>>(server: &TestServer, test: impl FnOnce(Client) -> F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = Client::connect(format!("http://{}", server.grpc))
            .await
            .expect("connect");
        test(client.max_decoding_message_size(64 << 20)).await
    });
}

/// Little-endian bytes of JSON sample values as `datatype`.
pub fn le_bytes(datatype: &str, values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        let (f, i, u) = (v.as_f64(), v.as_i64(), v.as_u64());
        match datatype {
            "FP32" => out.extend((f.expect("number") as f32).to_le_bytes()),
            "FP64" => out.extend(f.expect("number").to_le_bytes()),
            "FP16" => out.extend(half::f16::from_f64(f.expect("number")).to_le_bytes()),
            "INT64" => out.extend(i.expect("int").to_le_bytes()),
            "INT32" => out.extend((i.expect("int") as i32).to_le_bytes()),
            "INT8" => out.extend((i.expect("int") as i8).to_le_bytes()),
            "UINT8" => out.push(u.expect("uint") as u8),
            "BOOL" => out.push(v.as_bool().expect("bool") as u8),
            other => panic!("no test encoding for {other}"),
        }
    }
    out
}

/// Typed contents of JSON sample values as `datatype`.
pub fn typed(datatype: &str, values: &[Value]) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match datatype {
        "FP32" => {
            c.fp32_contents = values
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect()
        }
        "FP64" => c.fp64_contents = values.iter().map(|v| v.as_f64().expect("number")).collect(),
        "INT64" => c.int64_contents = values.iter().map(|v| v.as_i64().expect("int")).collect(),
        "INT32" | "INT8" => {
            c.int_contents = values
                .iter()
                .map(|v| v.as_i64().expect("int") as i32)
                .collect()
        }
        "UINT8" => {
            c.uint_contents = values
                .iter()
                .map(|v| v.as_u64().expect("uint") as u32)
                .collect()
        }
        "BOOL" => c.bool_contents = values.iter().map(|v| v.as_bool().expect("bool")).collect(),
        "BYTES" => {
            c.bytes_contents = values
                .iter()
                .map(|v| Bytes::from(v.as_str().expect("string").as_bytes().to_vec()))
                .collect()
        }
        other => panic!("{other} has no typed contents"),
    }
    c
}

/// An input with typed contents.
// Not every test binary that includes this file builds inputs one by one.
#[allow(dead_code)]
pub fn input(name: &str, datatype: &str, shape: Vec<i64>, values: &[Value]) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape,
        contents: Some(typed(datatype, values)),
        ..Default::default()
    }
}

/// A request of one-dimensional inputs with typed contents: (name, datatype, values), each
/// of shape [N] (as `common::v2_columns` over JSON).
// Not every test binary that includes this file builds such requests.
#[allow(dead_code)]
pub fn columns(model: &str, inputs: &[(&str, &str, Value)]) -> ModelInferRequest {
    let inputs = inputs
        .iter()
        .map(|(name, datatype, data)| {
            let values = flatten(data);
            input(name, datatype, vec![values.len() as i64], &values)
        })
        .collect();
    ModelInferRequest {
        model_name: model.into(),
        inputs,
        ..Default::default()
    }
}

/// A request for every input of a `samples.json` entry, in the raw or the typed form.
pub fn sample_request(model: &str, sample: &Value, raw: bool) -> ModelInferRequest {
    let mut request = ModelInferRequest {
        model_name: model.into(),
        ..Default::default()
    };
    for (name, t) in sample["inputs"].as_object().expect("inputs") {
        let datatype = t["datatype"].as_str().expect("datatype");
        let values = flatten(&t["data"]);
        let mut input = InferInputTensor {
            name: name.clone(),
            datatype: datatype.into(),
            shape: t["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_i64().expect("dim"))
                .collect(),
            ..Default::default()
        };
        if raw {
            request
                .raw_input_contents
                .push(Bytes::from(le_bytes(datatype, &values)));
        } else {
            input.contents = Some(typed(datatype, &values));
        }
        request.inputs.push(input);
    }
    request
}

/// The response's outputs as JSON values (whichever form it used), keyed by name.
pub fn outputs_json(
    response: &ModelInferResponse,
) -> BTreeMap<String, (String, Vec<i64>, Vec<Value>)> {
    let mut out = BTreeMap::new();
    for (i, o) in response.outputs.iter().enumerate() {
        let values: Vec<Value> = match response.raw_output_contents.get(i) {
            Some(raw) => {
                let size = match o.datatype.as_str() {
                    "FP64" | "INT64" | "UINT64" => 8,
                    "FP32" | "INT32" | "UINT32" => 4,
                    "FP16" | "BF16" | "INT16" | "UINT16" => 2,
                    _ => 1,
                };
                assert_eq!(raw.len() % size, 0, "{}: raw length", o.name);
                raw.chunks_exact(size)
                    .map(|b| match o.datatype.as_str() {
                        "FP32" => Value::from(f32::from_le_bytes(b.try_into().unwrap()) as f64),
                        "FP64" => Value::from(f64::from_le_bytes(b.try_into().unwrap())),
                        "FP16" => {
                            Value::from(half::f16::from_le_bytes(b.try_into().unwrap()).to_f64())
                        }
                        "INT64" => Value::from(i64::from_le_bytes(b.try_into().unwrap())),
                        "INT32" => Value::from(i32::from_le_bytes(b.try_into().unwrap())),
                        "INT8" => Value::from(b[0] as i8),
                        "UINT8" => Value::from(b[0]),
                        "BOOL" => Value::from(b[0] != 0),
                        other => panic!("no test decoding for {other}"),
                    })
                    .collect()
            }
            None => {
                let c = o.contents.clone().unwrap_or_default();
                match o.datatype.as_str() {
                    "FP32" => c
                        .fp32_contents
                        .iter()
                        .map(|&v| Value::from(v as f64))
                        .collect(),
                    "FP64" => c.fp64_contents.iter().map(|&v| Value::from(v)).collect(),
                    "INT64" => c.int64_contents.iter().map(|&v| Value::from(v)).collect(),
                    "INT32" | "INT8" => c.int_contents.iter().map(|&v| Value::from(v)).collect(),
                    "UINT8" => c.uint_contents.iter().map(|&v| Value::from(v)).collect(),
                    "BOOL" => c.bool_contents.iter().map(|&v| Value::from(v)).collect(),
                    other => panic!("{other} has no typed contents"),
                }
            }
        };
        out.insert(
            o.name.clone(),
            (o.datatype.clone(), o.shape.clone(), values),
        );
    }
    out
}

/// Asserts every output of the sample came back: datatype, shape, values (floats within
/// rtol 1e-4 / atol 1e-5, integers and booleans exactly).
pub fn assert_outputs(response: &ModelInferResponse, want: &Value) {
    let got = outputs_json(response);
    let want = want.as_object().expect("outputs");
    assert_eq!(got.len(), want.len(), "output count");
    for (name, w) in want {
        let (datatype, shape, values) = got
            .get(name)
            .unwrap_or_else(|| panic!("output {name} missing"));
        assert_eq!(
            datatype,
            w["datatype"].as_str().expect("datatype"),
            "{name} datatype"
        );
        assert_eq!(Value::from(shape.clone()), w["shape"], "{name} shape");
        let expected = flatten(&w["data"]);
        if datatype.starts_with("FP") {
            assert_close(values, &expected, 1e-4, 1e-5, name);
        } else {
            assert_eq!(values, &expected, "{name} values");
        }
    }
}

/// A good request that must still work after every error case.
pub async fn assert_still_serving(client: &mut Client) {
    let s = &samples("mlp_digits")["samples"][0];
    let response = client
        .model_infer(sample_request("mlp_digits", s, true))
        .await
        .expect("good request")
        .into_inner();
    assert_outputs(&response, &s["outputs"]);
}

pub fn expect_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    needles: &[&str],
) {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "error {:?} should mention {needle:?}",
            status.message()
        );
    }
}

pub fn digits(rows: usize) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "mlp_digits".into(),
        inputs: vec![InferInputTensor {
            name: "pixels".into(),
            datatype: "FP32".into(),
            shape: vec![rows as i64, 64],
            ..Default::default()
        }],
        raw_input_contents: vec![Bytes::from(vec![0u8; rows * 64 * 4])],
        ..Default::default()
    }
}

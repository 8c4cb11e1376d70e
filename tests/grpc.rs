//! The gRPC API end to end: real server, real ONNX Runtime, real models, a tonic client
//! generated from the same `proto/grpc_service.proto` over real sockets.

mod common;

use std::collections::BTreeMap;
use std::future::Future;

use bytes::Bytes;
use common::{assert_close, flatten, samples, zoo, ScratchRepo, TestServer};
use mlpserve::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use mlpserve::api::grpc::proto::infer_parameter::ParameterChoice;
use mlpserve::api::grpc::proto::model_config::SchedulingChoice;
use mlpserve::api::grpc::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use mlpserve::api::grpc::proto::*;
use serde_json::Value;
use tonic::transport::Channel;
use tonic::Code;

type Client = GrpcInferenceServiceClient<Channel>;

/// Runs `test` with a connected client on a fresh runtime (the server has its own).
fn with_client<F: Future<Output = ()>>(server: &TestServer, test: impl FnOnce(Client) -> F) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let client = Client::connect(format!("http://{}", server.grpc)).await.expect("connect");
        test(client.max_decoding_message_size(64 << 20)).await
    });
}

/// Little-endian bytes of JSON sample values as `datatype`.
fn le_bytes(datatype: &str, values: &[Value]) -> Vec<u8> {
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
fn typed(datatype: &str, values: &[Value]) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match datatype {
        "FP32" => c.fp32_contents = values.iter().map(|v| v.as_f64().expect("number") as f32).collect(),
        "FP64" => c.fp64_contents = values.iter().map(|v| v.as_f64().expect("number")).collect(),
        "INT64" => c.int64_contents = values.iter().map(|v| v.as_i64().expect("int")).collect(),
        "INT32" | "INT8" => c.int_contents = values.iter().map(|v| v.as_i64().expect("int") as i32).collect(),
        "UINT8" => c.uint_contents = values.iter().map(|v| v.as_u64().expect("uint") as u32).collect(),
        "BOOL" => c.bool_contents = values.iter().map(|v| v.as_bool().expect("bool")).collect(),
        other => panic!("{other} has no typed contents"),
    }
    c
}

/// A request for every input of a `samples.json` entry, in the raw or the typed form.
fn sample_request(model: &str, sample: &Value, raw: bool) -> ModelInferRequest {
    let mut request = ModelInferRequest { model_name: model.into(), ..Default::default() };
    for (name, t) in sample["inputs"].as_object().expect("inputs") {
        let datatype = t["datatype"].as_str().expect("datatype");
        let values = flatten(&t["data"]);
        let mut input = InferInputTensor {
            name: name.clone(),
            datatype: datatype.into(),
            shape: t["shape"].as_array().expect("shape").iter().map(|d| d.as_i64().expect("dim")).collect(),
            ..Default::default()
        };
        if raw {
            request.raw_input_contents.push(Bytes::from(le_bytes(datatype, &values)));
        } else {
            input.contents = Some(typed(datatype, &values));
        }
        request.inputs.push(input);
    }
    request
}

/// The response's outputs as JSON values (whichever form it used), keyed by name.
fn outputs_json(response: &ModelInferResponse) -> BTreeMap<String, (String, Vec<i64>, Vec<Value>)> {
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
                        "FP16" => Value::from(half::f16::from_le_bytes(b.try_into().unwrap()).to_f64()),
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
                    "FP32" => c.fp32_contents.iter().map(|&v| Value::from(v as f64)).collect(),
                    "FP64" => c.fp64_contents.iter().map(|&v| Value::from(v)).collect(),
                    "INT64" => c.int64_contents.iter().map(|&v| Value::from(v)).collect(),
                    "INT32" | "INT8" => c.int_contents.iter().map(|&v| Value::from(v)).collect(),
                    "UINT8" => c.uint_contents.iter().map(|&v| Value::from(v)).collect(),
                    "BOOL" => c.bool_contents.iter().map(|&v| Value::from(v)).collect(),
                    other => panic!("{other} has no typed contents"),
                }
            }
        };
        out.insert(o.name.clone(), (o.datatype.clone(), o.shape.clone(), values));
    }
    out
}

/// Asserts every output of the sample came back: datatype, shape, values (floats within
/// rtol 1e-4 / atol 1e-5, integers and booleans exactly).
fn assert_outputs(response: &ModelInferResponse, want: &Value) {
    let got = outputs_json(response);
    let want = want.as_object().expect("outputs");
    assert_eq!(got.len(), want.len(), "output count");
    for (name, w) in want {
        let (datatype, shape, values) = got.get(name).unwrap_or_else(|| panic!("output {name} missing"));
        assert_eq!(datatype, w["datatype"].as_str().expect("datatype"), "{name} datatype");
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
async fn assert_still_serving(client: &mut Client) {
    let s = &samples("mlp_digits")["samples"][0];
    let response = client.model_infer(sample_request("mlp_digits", s, true)).await.expect("good request").into_inner();
    assert_outputs(&response, &s["outputs"]);
}

fn expect_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needles: &[&str]) {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "{status:?}");
    for needle in needles {
        assert!(status.message().contains(needle), "error {:?} should mention {needle:?}", status.message());
    }
}

fn digits(rows: usize) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "mlp_digits".into(),
        inputs: vec![InferInputTensor { name: "pixels".into(), datatype: "FP32".into(), shape: vec![rows as i64, 64], ..Default::default() }],
        raw_input_contents: vec![Bytes::from(vec![0u8; rows * 64 * 4])],
        ..Default::default()
    }
}

#[test]
fn samples_are_reproduced_in_typed_and_raw_form() {
    let server = TestServer::start(&zoo());
    with_client(&server, |mut client| async move {
        for model in ["mlp_digits", "finalmlp_ctr"] {
            for (i, s) in samples(model)["samples"].as_array().expect("samples").iter().enumerate() {
                for raw in [false, true] {
                    let mut request = sample_request(model, s, raw);
                    request.id = format!("{model}-{i}-{raw}");
                    let response = client.model_infer(request).await.unwrap_or_else(|e| panic!("{model}: {e:?}"));
                    assert!(response.metadata().get("x-queue-time-us").is_some(), "timing metadata");
                    let response = response.into_inner();
                    assert_eq!((response.model_name.as_str(), response.model_version.as_str()), (model, "1"));
                    assert_eq!(response.id, format!("{model}-{i}-{raw}"));
                    assert_eq!(response.raw_output_contents.is_empty(), !raw, "the answer uses the request's form");
                    assert_outputs(&response, &s["outputs"]);
                }
            }
        }
        // Every datatype, raw (FP16 has no typed field, and forms cannot be mixed).
        for s in samples("dtype_echo")["samples"].as_array().expect("samples") {
            let response = client.model_infer(sample_request("dtype_echo", s, true)).await.expect("dtype_echo").into_inner();
            assert_outputs(&response, &s["outputs"]);
        }
        // Output selection keeps the requested order.
        let s = &samples("dtype_echo")["samples"][0];
        let mut request = sample_request("dtype_echo", s, true);
        request.outputs = ["y_int8", "y_fp16"].map(|n| InferRequestedOutputTensor { name: n.into(), ..Default::default() }).to_vec();
        let response = client.model_infer(request).await.expect("selected outputs").into_inner();
        let names: Vec<&str> = response.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["y_int8", "y_fp16"]);
        assert_eq!(response.raw_output_contents.len(), 2);
        // The version can be named.
        let mut request = sample_request("mlp_digits", &samples("mlp_digits")["samples"][0], false);
        request.model_version = "1".into();
        assert_eq!(client.model_infer(request).await.expect("version 1").into_inner().model_version, "1");
    });
}

#[test]
fn descriptive_rpcs_health_statistics_and_streaming() {
    let server = TestServer::start(&zoo());
    with_client(&server, |mut client| async move {
        assert!(client.server_live(ServerLiveRequest {}).await.expect("live").into_inner().live);
        assert!(client.server_ready(ServerReadyRequest {}).await.expect("ready").into_inner().ready);
        let meta = client.server_metadata(ServerMetadataRequest {}).await.expect("server metadata").into_inner();
        assert_eq!(meta.name, "mlpserve");
        assert_eq!(meta.version, env!("CARGO_PKG_VERSION"));
        assert!(meta.extensions.iter().any(|e| e == "model_configuration"), "{meta:?}");
        let ready = |name: &str, version: &str| ModelReadyRequest { name: name.into(), version: version.into() };
        assert!(client.model_ready(ready("mlp_digits", "")).await.expect("model ready").into_inner().ready);
        assert!(client.model_ready(ready("mlp_digits", "1")).await.expect("version ready").into_inner().ready);
        expect_status(client.model_ready(ready("nope", "")).await, Code::NotFound, &["nope"]);
        expect_status(client.model_ready(ready("mlp_digits", "9")).await, Code::NotFound, &["mlp_digits", "9"]);

        let meta = client
            .model_metadata(ModelMetadataRequest { name: "mlp_digits".into(), version: String::new() })
            .await
            .expect("model metadata")
            .into_inner();
        assert_eq!((meta.name.as_str(), meta.platform.as_str(), meta.versions.clone()), ("mlp_digits", "onnxruntime_onnx", vec!["1".to_string()]));
        assert_eq!((meta.inputs[0].name.as_str(), meta.inputs[0].datatype.as_str(), meta.inputs[0].shape.clone()), ("pixels", "FP32", vec![-1, 64]));
        assert_eq!((meta.outputs[0].name.as_str(), meta.outputs[0].shape.clone()), ("logits", vec![-1, 10]));

        let config = client
            .model_config(ModelConfigRequest { name: "mlp_digits".into(), version: String::new() })
            .await
            .expect("model config")
            .into_inner()
            .config
            .expect("config");
        assert_eq!((config.name.as_str(), config.platform.as_str(), config.backend.as_str()), ("mlp_digits", "onnxruntime_onnx", "onnxruntime"));
        assert!(config.max_batch_size > 0);
        assert_eq!((config.input[0].name.as_str(), config.input[0].data_type, config.input[0].dims.clone()), ("pixels", DataType::TypeFp32 as i32, vec![64]));
        assert_eq!(config.output[0].dims, vec![10]);
        assert!(matches!(config.scheduling_choice, Some(SchedulingChoice::DynamicBatching(_))));
        expect_status(client.model_config(ModelConfigRequest { name: "nope".into(), version: String::new() }).await, Code::NotFound, &["nope"]);

        let index = client.repository_index(RepositoryIndexRequest { ready: true, ..Default::default() }).await.expect("index").into_inner();
        assert!(index.models.iter().any(|m| m.name == "mlp_digits" && m.version == "1" && m.state == "READY"), "{index:?}");

        // Statistics count what was served: 2 rows in one good request, one invalid request.
        let s = &samples("mlp_digits")["samples"][1];
        client.model_infer(sample_request("mlp_digits", s, true)).await.expect("infer");
        expect_status(client.model_infer(digits(0)).await, Code::InvalidArgument, &["empty batch"]);
        let stats = |name: &str, version: &str| ModelStatisticsRequest { name: name.into(), version: version.into() };
        let one = client.model_statistics(stats("mlp_digits", "1")).await.expect("stats").into_inner().model_stats;
        assert_eq!(one.len(), 1);
        let inference = one[0].inference_stats.clone().expect("inference_stats");
        assert_eq!((one[0].inference_count, one[0].execution_count), (2, 1), "{one:?}");
        assert_eq!((inference.success.map(|d| d.count), inference.fail.map(|d| d.count)), (Some(1), Some(1)));
        assert!(inference.queue.is_some() && inference.compute_infer.is_some_and(|d| d.count == 1));
        let all = client.model_statistics(stats("", "")).await.expect("all stats").into_inner().model_stats;
        for model in ["mlp_digits", "dtype_echo", "finalmlp_ctr"] {
            assert!(all.iter().any(|m| m.name == model), "{model} in {all:?}");
        }
        assert_eq!(client.model_statistics(stats("mlp_digits", "")).await.expect("stats").into_inner().model_stats.len(), 1);
        expect_status(client.model_statistics(stats("nope", "")).await, Code::NotFound, &["nope"]);
        expect_status(client.model_statistics(stats("mlp_digits", "9")).await, Code::NotFound, &["9"]);

        // Streaming: one answer per request, in order; failures travel in error_message.
        let good = sample_request("mlp_digits", &samples("mlp_digits")["samples"][0], true);
        let requests = vec![good.clone(), digits(0), ModelInferRequest { id: "third".into(), ..good }];
        let answers: Vec<ModelStreamInferResponse> = {
            use futures::StreamExt;
            let stream = client.model_stream_infer(futures::stream::iter(requests)).await.expect("stream").into_inner();
            stream.map(|r| r.expect("stream message")).collect().await
        };
        assert_eq!(answers.len(), 3);
        assert!(answers[0].error_message.is_empty() && answers[2].error_message.is_empty(), "{answers:?}");
        assert!(answers[1].error_message.contains("empty batch"), "{:?}", answers[1].error_message);
        assert_eq!(answers[2].infer_response.as_ref().map(|r| r.id.as_str()), Some("third"));

        // The standard health service.
        use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
        let mut health = HealthClient::connect(format!("http://{}", server.grpc)).await.expect("health connect");
        for service in ["", "inference.GRPCInferenceService"] {
            let r = health.check(HealthCheckRequest { service: service.into() }).await.expect("health").into_inner();
            assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
        }
    });
}

#[test]
fn bad_requests_get_clear_codes_and_the_server_keeps_serving() {
    let server = TestServer::start(&zoo());
    with_client(&server, |mut client| async move {
        let good = digits(1);
        let with = |f: &dyn Fn(&mut ModelInferRequest)| {
            let mut r = good.clone();
            f(&mut r);
            r
        };
        let cases: Vec<(ModelInferRequest, Code, Vec<&str>)> = vec![
            (with(&|r| r.model_name = "nope".into()), Code::NotFound, vec!["nope"]),
            (with(&|r| r.model_version = "7".into()), Code::NotFound, vec!["mlp_digits", "7", "available: 1"]),
            (
                with(&|r| {
                    r.inputs[0].datatype = "FP64".into();
                    r.raw_input_contents[0] = Bytes::from(vec![0u8; 64 * 8]);
                }),
                Code::InvalidArgument,
                vec!["mlp_digits", "pixels", "FP32", "FP64"],
            ),
            (
                with(&|r| {
                    r.inputs[0].shape = vec![1, 63];
                    r.raw_input_contents[0] = Bytes::from(vec![0u8; 63 * 4]);
                }),
                Code::InvalidArgument,
                vec!["pixels", "[-1, 64]", "[1, 63]"],
            ),
            (with(&|r| r.raw_input_contents[0] = Bytes::from(vec![0u8; 255])), Code::InvalidArgument, vec!["pixels", "256 bytes", "255"]),
            (
                with(&|r| r.inputs[0].contents = Some(InferTensorContents { fp32_contents: vec![0.0; 64], ..Default::default() })),
                Code::InvalidArgument,
                vec!["pixels", "raw_input_contents", "one form"],
            ),
            (with(&|r| r.raw_input_contents.push(Bytes::new())), Code::InvalidArgument, vec!["2 entries", "1 inputs"]),
            (digits(0), Code::InvalidArgument, vec!["pixels", "empty batch"]),
            (with(&|r| r.inputs[0].name = "image".into()), Code::InvalidArgument, vec!["unexpected input 'image'", "pixels"]),
            (
                with(&|r| r.outputs = vec![InferRequestedOutputTensor { name: "probs".into(), ..Default::default() }]),
                Code::InvalidArgument,
                vec!["unknown output 'probs'", "logits"],
            ),
            (
                with(&|r| {
                    r.parameters.insert("timeout".into(), InferParameter { parameter_choice: Some(ParameterChoice::StringParam("soon".into())) });
                }),
                Code::InvalidArgument,
                vec!["timeout", "microseconds"],
            ),
            (with(&|r| r.inputs[0].datatype = "BYTES".into()), Code::InvalidArgument, vec!["unsupported datatype 'BYTES'"]),
        ];
        for (request, code, needles) in cases {
            expect_status(client.model_infer(request).await, code, &needles);
            assert_still_serving(&mut client).await;
        }
        // A missing input (finalmlp_ctr takes cat_ids and dense).
        let mut partial = sample_request("finalmlp_ctr", &samples("finalmlp_ctr")["samples"][0], false);
        partial.inputs.retain(|i| i.name == "dense");
        expect_status(client.model_infer(partial).await, Code::InvalidArgument, &["missing input 'cat_ids'", "INT64"]);
        // FP16 cannot travel in typed contents.
        let mut typed_fp16 = sample_request("dtype_echo", &samples("dtype_echo")["samples"][0], true);
        typed_fp16.raw_input_contents.clear();
        for input in &mut typed_fp16.inputs {
            input.contents = Some(InferTensorContents { fp32_contents: vec![0.0; 3], ..Default::default() });
        }
        expect_status(client.model_infer(typed_fp16).await, Code::InvalidArgument, &["x_"]);
        assert_still_serving(&mut client).await;
    });
}

#[test]
fn a_full_queue_answers_resource_exhausted_and_admitted_requests_succeed() {
    let repo = ScratchRepo::new("grpc-overload");
    repo.add("mlp_digits", "tiny_queue", 1, "max_queue_size = 1\ninstances = 1\n");
    let server = TestServer::start(&repo.path);
    with_client(&server, |client| async move {
        // Rounds of concurrent large requests until one is refused (the first round, in
        // practice: only one request fits the queue while it runs).
        let mut refused = 0;
        for _round in 0..10 {
            let calls = (0..32).map(|_| {
                let mut c = client.clone();
                let mut request = digits(2048);
                request.model_name = "tiny_queue".into();
                tokio::spawn(async move { c.model_infer(request).await })
            });
            for result in futures::future::join_all(calls).await {
                match result.expect("task") {
                    Ok(r) => assert_eq!(r.into_inner().outputs[0].shape, vec![2048, 10]),
                    Err(status) => {
                        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                        assert!(status.message().contains("tiny_queue") && status.message().contains("queue full"), "{status:?}");
                        refused += 1;
                    }
                }
            }
            if refused > 0 {
                break;
            }
        }
        assert!(refused > 0, "no request was refused with max_queue_size = 1");
    });
}

#[test]
fn a_passed_timeout_answers_deadline_exceeded() {
    let repo = ScratchRepo::new("grpc-deadline");
    repo.add("mlp_digits", "one_worker", 1, "max_queue_size = 64\ninstances = 1\n");
    let server = TestServer::start(&repo.path);
    with_client(&server, |client| async move {
        let request = |timeout_us: Option<i64>| {
            let mut r = digits(2048);
            r.model_name = "one_worker".into();
            if let Some(t) = timeout_us {
                r.parameters.insert("timeout".into(), InferParameter { parameter_choice: Some(ParameterChoice::Int64Param(t)) });
            }
            r
        };
        // Large requests without a deadline keep the one worker busy; the 1 µs ones queue
        // behind them, and a 1 µs deadline has passed by the time any batch is formed.
        let mut calls = Vec::new();
        for i in 0..24 {
            let mut c = client.clone();
            let r = request(if i % 2 == 0 { None } else { Some(1) });
            calls.push(tokio::spawn(async move { (i, c.model_infer(r).await) }));
        }
        let mut timed_out = 0;
        for call in futures::future::join_all(calls).await {
            match call.expect("task") {
                (_, Ok(r)) => assert_eq!(r.into_inner().outputs[0].shape, vec![2048, 10]),
                (i, Err(status)) => {
                    assert_eq!(i % 2, 1, "a request without a deadline failed: {status:?}");
                    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
                    assert!(status.message().contains("one_worker") && status.message().contains("timed out"), "{status:?}");
                    timed_out += 1;
                }
            }
        }
        assert!(timed_out > 0, "no 1 µs request timed out");
        let mut client = client;
        let stats = client
            .model_statistics(ModelStatisticsRequest { name: "one_worker".into(), version: String::new() })
            .await
            .expect("stats")
            .into_inner();
        let fail = stats.model_stats[0].inference_stats.clone().and_then(|s| s.fail).map(|d| d.count);
        assert_eq!(fail, Some(timed_out), "timeouts are counted as failures");
    });
}

//! V2 `parameters` (request, input and output level) are read without building what the
//! server does not use: a body of many small objects under `parameters` costs no memory
//! beyond its bytes, and more than 64 entries in one `parameters` object or map is a 400
//! (INVALID_ARGUMENT on gRPC) naming the cap. Memory is read from the server process from
//! outside (`/proc/PID/status`).

mod common;
#[path = "grpc/support.rs"]
#[allow(dead_code)]
mod support;

use std::collections::HashMap;

use common::{memory_mib, spawn_http, zoo, ScratchRepo, TestServer};
use mlpserve::api::grpc::proto::infer_parameter::ParameterChoice;
use mlpserve::api::grpc::proto::InferParameter;
use serde_json::{json, Map, Value};
use tonic::Code;

fn digits_body(parameters: Value) -> Value {
    json!({
        "parameters": parameters,
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": vec![0.5; 64]}],
    })
}

fn many(n: usize) -> Value {
    let map: Map<String, Value> = (0..n).map(|i| (format!("k{i}"), json!({}))).collect();
    Value::Object(map)
}

#[test]
fn more_than_64_parameters_in_one_object_is_400_naming_the_cap() {
    let repo = ScratchRepo::digits("params-cap");
    let server = TestServer::start(&repo.path);
    let path = "/v2/models/mlp_digits/infer";
    common::expect_error(
        server.post_json(path, &digits_body(many(65))),
        400,
        &["more than 64 entries"],
    );
    let mut body = digits_body(json!({}));
    body["inputs"][0]["parameters"] = many(100);
    common::expect_error(
        server.post_json(path, &body),
        400,
        &["more than 64 entries"],
    );
    // 64 unknown entries, whatever their values, and the known ones still work.
    let mut body = digits_body(many(63));
    body["parameters"]["binary_data_output"] = json!(false);
    body["parameters"]["k0"] = json!([[1, {"a": [null]}], "x"]);
    let (status, answer) = server.post_json(path, &body);
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn grpc_parameter_maps_are_capped_too() {
    let repo = ScratchRepo::digits("params-grpc");
    let server = TestServer::start(&repo.path);
    support::with_client(&server, |mut client| async move {
        let entries = |n: usize| -> HashMap<String, InferParameter> {
            (0..n)
                .map(|i| {
                    let p = InferParameter {
                        parameter_choice: Some(ParameterChoice::BoolParam(true)),
                    };
                    (format!("k{i}"), p)
                })
                .collect()
        };
        let mut request = support::digits(1);
        request.parameters = entries(65);
        support::expect_status(
            client.model_infer(request).await,
            Code::InvalidArgument,
            &["the request has 65 parameters, more than 64"],
        );
        let mut request = support::digits(1);
        request.inputs[0].parameters = entries(100);
        support::expect_status(
            client.model_infer(request).await,
            Code::InvalidArgument,
            &["input 'pixels' has 100 parameters"],
        );
        let mut request = support::digits(1);
        request.parameters = entries(64);
        client
            .model_infer(request)
            .await
            .expect("64 parameters are fine");
    });
}

#[test]
fn a_parameter_of_many_small_objects_costs_no_memory_beyond_its_bytes() {
    let repo = ScratchRepo::new("params-memory");
    let config =
        std::fs::read_to_string(zoo().join("mlp_digits").join("config.toml")).unwrap_or_default();
    repo.add("mlp_digits", "mlp_digits", 1, &config);
    let (server, http) = spawn_http(&repo.path, &[]);
    // 16 MB of `{},` under one parameter: as a JSON value tree that is ~1 GB.
    let objects = "{},".repeat(16 << 20 >> 2);
    let body = format!(
        r#"{{"parameters":{{"junk":[{}{{}}]}},"inputs":[{{"name":"pixels","datatype":"FP32","shape":[1,64],"data":[{}0]}}]}}"#,
        objects,
        "0,".repeat(63)
    );
    let before = memory_mib(server.0.id()).1;
    let r = reqwest::blocking::Client::new()
        .post(format!("http://{http}/v2/models/mlp_digits/infer"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    let peak = memory_mib(server.0.id()).1;
    assert!(
        peak < before + 150,
        "a 16 MB body raised the peak from {before} MiB to {peak} MiB"
    );
}

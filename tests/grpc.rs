//! The gRPC API end to end: real server, real ONNX Runtime, real models, a tonic client
//! generated from the same `proto/grpc_service.proto` over real sockets. Error codes,
//! overload and deadlines are in `grpc/errors.rs`; helpers in `grpc/support.rs`.

mod common;
#[path = "grpc/errors.rs"]
mod errors;
#[path = "grpc/health.rs"]
mod health;
#[path = "grpc/parity.rs"]
mod parity;
#[path = "grpc/support.rs"]
mod support;
#[path = "grpc/throughput.rs"]
mod throughput;

use common::{samples, zoo, TestServer};
use mlpserve::api::grpc::proto::model_config::SchedulingChoice;
use mlpserve::api::grpc::proto::model_infer_request::InferRequestedOutputTensor;
use mlpserve::api::grpc::proto::*;
use support::*;
use tonic::transport::Channel;
use tonic::Code;

#[test]
fn samples_are_reproduced_in_typed_and_raw_form() {
    let server = TestServer::start(&zoo());
    with_client(&server, |mut client| async move {
        for model in ["mlp_digits", "finalmlp_ctr"] {
            for (i, s) in samples(model)["samples"]
                .as_array()
                .expect("samples")
                .iter()
                .enumerate()
            {
                for raw in [false, true] {
                    let mut request = sample_request(model, s, raw);
                    request.id = format!("{model}-{i}-{raw}");
                    let response = client
                        .model_infer(request)
                        .await
                        .unwrap_or_else(|e| panic!("{model}: {e:?}"));
                    let response = response.into_inner();
                    assert_eq!(
                        (
                            response.model_name.as_str(),
                            response.model_version.as_str()
                        ),
                        (model, "1")
                    );
                    assert_eq!(response.id, format!("{model}-{i}-{raw}"));
                    // Always raw, as Triton answers, whatever form the request used.
                    assert_eq!(
                        response.raw_output_contents.len(),
                        response.outputs.len(),
                        "raw={raw}"
                    );
                    assert!(
                        response.outputs.iter().all(|o| o.contents.is_none()),
                        "raw={raw}"
                    );
                    assert_outputs(&response, &s["outputs"]);
                }
            }
        }
        // Every datatype, raw (FP16 has no typed field, and forms cannot be mixed).
        for s in samples("dtype_echo")["samples"]
            .as_array()
            .expect("samples")
        {
            let response = client
                .model_infer(sample_request("dtype_echo", s, true))
                .await
                .expect("dtype_echo")
                .into_inner();
            assert_outputs(&response, &s["outputs"]);
        }
        // Output selection keeps the requested order.
        let s = &samples("dtype_echo")["samples"][0];
        let mut request = sample_request("dtype_echo", s, true);
        request.outputs = ["y_int8", "y_fp16"]
            .map(|n| InferRequestedOutputTensor {
                name: n.into(),
                ..Default::default()
            })
            .to_vec();
        let response = client
            .model_infer(request)
            .await
            .expect("selected outputs")
            .into_inner();
        let names: Vec<&str> = response.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["y_int8", "y_fp16"]);
        assert_eq!(response.raw_output_contents.len(), 2);
        // The version can be named.
        let mut request = sample_request("mlp_digits", &samples("mlp_digits")["samples"][0], false);
        request.model_version = "1".into();
        assert_eq!(
            client
                .model_infer(request)
                .await
                .expect("version 1")
                .into_inner()
                .model_version,
            "1"
        );
    });
}

#[test]
fn descriptive_rpcs_health_statistics_and_streaming() {
    let server = TestServer::start(&zoo());
    // mlp_digits has no config.toml: its max_batch_size is "auto", measured at load.
    let (status, http_meta) = server.get_json("/v2/models/mlp_digits");
    assert_eq!(status, 200, "{http_meta}");
    let parameters = &http_meta["parameters"];
    assert_eq!(parameters["max_batch_size_source"], "auto", "{http_meta}");
    let measured: u64 = parameters["max_batch_size"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("max_batch_size parameter: {http_meta}"));
    with_client(&server, |mut client| async move {
        assert!(
            client
                .server_live(ServerLiveRequest {})
                .await
                .expect("live")
                .into_inner()
                .live
        );
        assert!(
            client
                .server_ready(ServerReadyRequest {})
                .await
                .expect("ready")
                .into_inner()
                .ready
        );
        let meta = client
            .server_metadata(ServerMetadataRequest {})
            .await
            .expect("server metadata")
            .into_inner();
        assert_eq!(meta.name, "mlpserve");
        assert_eq!(meta.version, env!("CARGO_PKG_VERSION"));
        assert!(
            meta.extensions.iter().any(|e| e == "model_configuration"),
            "{meta:?}"
        );
        let ready = |name: &str, version: &str| ModelReadyRequest {
            name: name.into(),
            version: version.into(),
        };
        assert!(
            client
                .model_ready(ready("mlp_digits", ""))
                .await
                .expect("model ready")
                .into_inner()
                .ready
        );
        assert!(
            client
                .model_ready(ready("mlp_digits", "1"))
                .await
                .expect("version ready")
                .into_inner()
                .ready
        );
        for (name, version) in [("nope", ""), ("mlp_digits", "9")] {
            let r = client.model_ready(ready(name, version)).await;
            assert!(!r.expect("unknown models answer").into_inner().ready);
        }

        let meta = client
            .model_metadata(ModelMetadataRequest {
                name: "mlp_digits".into(),
                version: String::new(),
            })
            .await
            .expect("model metadata")
            .into_inner();
        assert_eq!(
            (
                meta.name.as_str(),
                meta.platform.as_str(),
                meta.versions.clone()
            ),
            ("mlp_digits", "onnxruntime_onnx", vec!["1".to_string()])
        );
        assert_eq!(
            (
                meta.inputs[0].name.as_str(),
                meta.inputs[0].datatype.as_str(),
                meta.inputs[0].shape.clone()
            ),
            ("pixels", "FP32", vec![-1, 64])
        );
        assert_eq!(
            (meta.outputs[0].name.as_str(), meta.outputs[0].shape.clone()),
            ("logits", vec![-1, 10])
        );

        let config = client
            .model_config(ModelConfigRequest {
                name: "mlp_digits".into(),
                version: String::new(),
            })
            .await
            .expect("model config")
            .into_inner()
            .config
            .expect("config");
        assert_eq!(
            (
                config.name.as_str(),
                config.platform.as_str(),
                config.backend.as_str()
            ),
            ("mlp_digits", "onnxruntime_onnx", "onnxruntime")
        );
        assert!(
            (1..=4096).contains(&config.max_batch_size),
            "the measured max_batch_size is within 1..=4096: {}",
            config.max_batch_size
        );
        assert_eq!(
            config.max_batch_size as u64, measured,
            "gRPC config and HTTP metadata report the same measured size"
        );
        assert_eq!(
            (
                config.input[0].name.as_str(),
                config.input[0].data_type,
                config.input[0].dims.clone()
            ),
            ("pixels", DataType::TypeFp32 as i32, vec![64])
        );
        assert_eq!(config.output[0].dims, vec![10]);
        assert!(matches!(
            config.scheduling_choice,
            Some(SchedulingChoice::DynamicBatching(_))
        ));
        expect_status(
            client
                .model_config(ModelConfigRequest {
                    name: "nope".into(),
                    version: String::new(),
                })
                .await,
            Code::NotFound,
            &["nope"],
        );

        let index = client
            .repository_index(RepositoryIndexRequest {
                ready: true,
                ..Default::default()
            })
            .await
            .expect("index")
            .into_inner();
        assert!(
            index
                .models
                .iter()
                .any(|m| m.name == "mlp_digits" && m.version == "1" && m.state == "READY"),
            "{index:?}"
        );

        // Statistics count what was served: 2 rows in one good request, one invalid request.
        let s = &samples("mlp_digits")["samples"][1];
        client
            .model_infer(sample_request("mlp_digits", s, true))
            .await
            .expect("infer");
        expect_status(
            client.model_infer(digits(0)).await,
            Code::InvalidArgument,
            &["empty batch"],
        );
        let stats = |name: &str, version: &str| ModelStatisticsRequest {
            name: name.into(),
            version: version.into(),
        };
        let one = client
            .model_statistics(stats("mlp_digits", "1"))
            .await
            .expect("stats")
            .into_inner()
            .model_stats;
        assert_eq!(one.len(), 1);
        let inference = one[0].inference_stats.expect("inference_stats");
        assert_eq!(
            (one[0].inference_count, one[0].execution_count),
            (2, 1),
            "{one:?}"
        );
        assert_eq!(
            (
                inference.success.map(|d| d.count),
                inference.fail.map(|d| d.count)
            ),
            (Some(1), Some(1))
        );
        assert_eq!(
            inference.queue.map(|d| d.count),
            Some(1),
            "one timed request"
        );
        assert_eq!(inference.compute_infer.map(|d| d.count), Some(1));
        let all = client
            .model_statistics(stats("", ""))
            .await
            .expect("all stats")
            .into_inner()
            .model_stats;
        for model in ["mlp_digits", "dtype_echo", "finalmlp_ctr"] {
            assert!(all.iter().any(|m| m.name == model), "{model} in {all:?}");
        }
        assert_eq!(
            client
                .model_statistics(stats("mlp_digits", ""))
                .await
                .expect("stats")
                .into_inner()
                .model_stats
                .len(),
            1
        );
        expect_status(
            client.model_statistics(stats("nope", "")).await,
            Code::NotFound,
            &["nope"],
        );
        expect_status(
            client.model_statistics(stats("mlp_digits", "9")).await,
            Code::NotFound,
            &["9"],
        );

        // Streaming: one answer per request, in order; failures travel in error_message.
        let good = sample_request("mlp_digits", &samples("mlp_digits")["samples"][0], true);
        let requests = vec![
            good.clone(),
            digits(0),
            ModelInferRequest {
                id: "third".into(),
                ..good
            },
        ];
        let answers: Vec<ModelStreamInferResponse> = {
            use futures_util::StreamExt;
            let stream = client
                .model_stream_infer(futures_util::stream::iter(requests))
                .await
                .expect("stream")
                .into_inner();
            stream.map(|r| r.expect("stream message")).collect().await
        };
        assert_eq!(answers.len(), 3);
        assert!(
            answers[0].error_message.is_empty() && answers[2].error_message.is_empty(),
            "{answers:?}"
        );
        assert!(
            answers[1].error_message.contains("empty batch"),
            "{:?}",
            answers[1].error_message
        );
        assert_eq!(
            answers[2].infer_response.as_ref().map(|r| r.id.as_str()),
            Some("third")
        );

        // The standard health service.
        use tonic_health::pb::{
            health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
        };
        let channel = Channel::from_shared(format!("http://{}", server.grpc))
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut health = HealthClient::new(channel);
        for service in ["", "inference.GRPCInferenceService"] {
            let r = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .expect("health")
                .into_inner();
            assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
        }
    });
}

//! Transport parity: the same requests over HTTP and gRPC give the same outcome class and
//! the same numbers, because both are thin adapters over one service. Each expectation is
//! also stated as a literal, so a rule that drifts on both transports at once still fails.

use mlpserve::api::grpc::proto::model_infer_request::InferRequestedOutputTensor;
use mlpserve::api::grpc::proto::*;
use serde_json::{json, Value};
use tonic::Code;

use crate::common::{samples, ScratchRepo, TestServer};
use crate::support::*;

/// What a request came to, whatever the transport.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Outcome {
    Ok,
    NotFound,
    Invalid,
}

fn http_outcome(status: u16) -> Outcome {
    match status {
        200 => Outcome::Ok,
        404 => Outcome::NotFound,
        400 => Outcome::Invalid,
        other => panic!("unexpected HTTP status {other}"),
    }
}

fn grpc_outcome(code: Code) -> Outcome {
    match code {
        Code::Ok => Outcome::Ok,
        Code::NotFound => Outcome::NotFound,
        Code::InvalidArgument => Outcome::Invalid,
        other => panic!("unexpected gRPC code {other:?}"),
    }
}

/// A V2 JSON body of the first digits sample asking for `outputs` (none = all).
fn http_body(outputs: &[&str]) -> Value {
    let sample = &samples("mlp_digits")["samples"][0];
    let x = &sample["inputs"]["pixels"];
    let mut body = json!({"inputs": [{
        "name": "pixels", "shape": x["shape"], "datatype": "FP32", "data": x["data"]
    }]});
    if !outputs.is_empty() {
        body["outputs"] = outputs.iter().map(|n| json!({"name": n})).collect();
    }
    body
}

fn grpc_request(model: &str, outputs: &[&str]) -> ModelInferRequest {
    let mut r = sample_request("mlp_digits", &samples("mlp_digits")["samples"][0], false);
    r.model_name = model.into();
    r.outputs = outputs
        .iter()
        .map(|n| InferRequestedOutputTensor {
            name: n.to_string(),
            ..Default::default()
        })
        .collect();
    r
}

#[test]
fn http_and_grpc_agree_on_every_outcome_and_number() {
    let repo = ScratchRepo::new("parity");
    repo.add(
        "mlp_digits",
        "digits",
        1,
        "instances = 2\nmax_batch_size = 48\npreferred_batch_sizes = [8, 16]\nmax_queue_size = 77\ndefault_timeout_ms = 900\n",
    );
    let server = TestServer::start(&repo.path);

    // (case, model, outputs, expected outcome, text the error must contain)
    let cases: [(&str, &str, &[&str], Outcome, &str); 4] = [
        ("good", "digits", &[], Outcome::Ok, ""),
        ("unknown model", "nope", &[], Outcome::NotFound, "'nope'"),
        (
            "unknown output",
            "digits",
            &["probs"],
            Outcome::Invalid,
            "unknown output 'probs'",
        ),
        (
            "duplicate output",
            "digits",
            &["logits", "logits"],
            Outcome::Invalid,
            "more than once",
        ),
    ];
    let http: Vec<(Outcome, Value)> = cases
        .iter()
        .map(|(_, model, outputs, _, _)| {
            let (status, body) =
                server.post_json(&format!("/v2/models/{model}/infer"), &http_body(outputs));
            (http_outcome(status), body)
        })
        .collect();
    let (http_ready_status, _) = server.get_json("/v2/models/nope/ready");
    let (_, http_config) = server.get_json("/v2/models/digits/config");
    let (_, http_stats) = server.get_json("/v2/models/digits/stats");

    with_client(&server, |mut client| async move {
        for ((case, model, outputs, want, text), (http_outcome, http_body)) in
            cases.iter().zip(&http)
        {
            let grpc = client.model_infer(grpc_request(model, outputs)).await;
            let (grpc_outcome, grpc_message) = match &grpc {
                Ok(_) => (Outcome::Ok, String::new()),
                Err(s) => (grpc_outcome(s.code()), s.message().to_string()),
            };
            assert_eq!(*http_outcome, *want, "{case} over HTTP: {http_body}");
            assert_eq!(grpc_outcome, *want, "{case} over gRPC: {grpc_message}");
            if *want != Outcome::Ok {
                let http_message = http_body["error"].as_str().unwrap_or_default();
                assert!(http_message.contains(text), "{case} HTTP: {http_message}");
                assert!(grpc_message.contains(text), "{case} gRPC: {grpc_message}");
                assert_eq!(http_message, grpc_message, "{case}: one message for both");
            } else {
                let logits = &http_body["outputs"][0]["data"];
                let grpc_logits = outputs_json(&grpc.expect("ok").into_inner())["logits"]
                    .2
                    .clone();
                let as_f32 = |v: &[Value]| -> Vec<f32> {
                    v.iter()
                        .map(|x| x.as_f64().expect("number") as f32)
                        .collect()
                };
                let http_logits = as_f32(logits.as_array().expect("data"));
                assert_eq!(http_logits.len(), 10);
                assert_eq!(http_logits, as_f32(&grpc_logits), "{case}: bit-identical");
            }
        }

        // Readiness of an unknown model: not ready on both (HTTP 4xx per the V2 spec).
        let ready = client
            .model_ready(ModelReadyRequest {
                name: "nope".into(),
                version: String::new(),
            })
            .await
            .expect("model_ready")
            .into_inner()
            .ready;
        assert_eq!(http_ready_status, 404);
        assert!(!ready);

        // Config: the same numbers, and the ones the config.toml gave.
        let config = client
            .model_config(ModelConfigRequest {
                name: "digits".into(),
                version: String::new(),
            })
            .await
            .expect("config")
            .into_inner()
            .config
            .expect("config");
        assert_eq!(http_config["max_batch_size"], 48);
        assert_eq!(config.max_batch_size, 48);
        assert_eq!(http_config["input"][0]["dims"], json!([64]));
        assert_eq!(config.input[0].dims, vec![64]);
        assert_eq!(http_config["output"][0]["dims"], json!([10]));
        assert_eq!(config.output[0].dims, vec![10]);
        assert_eq!(http_config["instance_group"][0]["count"], 2);
        assert_eq!(config.instance_group[0].count, 2);
        let batching = &http_config["dynamic_batching"];
        assert_eq!(batching["preferred_batch_size"], json!([8, 16]));
        assert_eq!(batching["default_queue_policy"]["max_queue_size"], 77);
        assert_eq!(
            batching["default_queue_policy"]["default_timeout_microseconds"],
            900_000
        );
        let Some(model_config::SchedulingChoice::DynamicBatching(b)) = config.scheduling_choice
        else {
            panic!("gRPC config has no dynamic_batching");
        };
        assert_eq!(b.preferred_batch_size, vec![8, 16]);
        let policy = b.default_queue_policy.expect("policy");
        assert_eq!(policy.max_queue_size, 77);
        assert_eq!(policy.default_timeout_microseconds, 900_000);

        // Statistics after the HTTP round: 1 success, 2 refusals (unknown and duplicate
        // output); the unknown model counts nowhere. The gRPC round then adds the same.
        let grpc_stats = client
            .model_statistics(ModelStatisticsRequest {
                name: "digits".into(),
                version: String::new(),
            })
            .await
            .expect("stats")
            .into_inner();
        let s = grpc_stats.model_stats[0].inference_stats.expect("stats");
        let http_s = &http_stats["model_stats"][0]["inference_stats"];
        assert_eq!(http_s["success"]["count"], 1);
        assert_eq!(http_s["fail"]["count"], 2);
        assert_eq!(s.success.expect("success").count, 2);
        assert_eq!(s.fail.expect("fail").count, 4);
        assert_eq!(http_stats["model_stats"][0]["inference_count"], 1);
        assert_eq!(grpc_stats.model_stats[0].inference_count, 2);
    });
}

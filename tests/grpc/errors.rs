//! gRPC error codes end to end: every client mistake is INVALID_ARGUMENT or NOT_FOUND with a
//! message naming what was wrong, a full queue is RESOURCE_EXHAUSTED, a passed deadline is
//! DEADLINE_EXCEEDED, and the server keeps serving after each.

use bytes::Bytes;
use mlpserve::api::grpc::proto::infer_parameter::ParameterChoice;
use mlpserve::api::grpc::proto::model_infer_request::InferRequestedOutputTensor;
use mlpserve::api::grpc::proto::*;
use tonic::Code;

use crate::common::{samples, zoo, ScratchRepo, TestServer};
use crate::support::*;

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
            (
                with(&|r| r.model_name = "nope".into()),
                Code::NotFound,
                vec!["nope"],
            ),
            (
                with(&|r| r.model_version = "7".into()),
                Code::NotFound,
                vec!["mlp_digits", "7", "available: 1"],
            ),
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
            (
                with(&|r| r.raw_input_contents[0] = Bytes::from(vec![0u8; 255])),
                Code::InvalidArgument,
                vec!["pixels", "256 bytes", "255"],
            ),
            (
                with(&|r| {
                    r.inputs[0].contents = Some(InferTensorContents {
                        fp32_contents: vec![0.0; 64],
                        ..Default::default()
                    })
                }),
                Code::InvalidArgument,
                vec!["pixels", "raw_input_contents", "one form"],
            ),
            (
                with(&|r| r.raw_input_contents.push(Bytes::new())),
                Code::InvalidArgument,
                vec!["2 entries", "1 inputs"],
            ),
            (
                digits(0),
                Code::InvalidArgument,
                vec!["pixels", "empty batch"],
            ),
            (
                with(&|r| r.inputs[0].name = "image".into()),
                Code::InvalidArgument,
                vec!["unexpected input 'image'", "pixels"],
            ),
            (
                with(&|r| {
                    r.outputs = vec![InferRequestedOutputTensor {
                        name: "probs".into(),
                        ..Default::default()
                    }]
                }),
                Code::InvalidArgument,
                vec!["unknown output 'probs'", "logits"],
            ),
            (
                with(&|r| {
                    r.parameters.insert(
                        "timeout".into(),
                        InferParameter {
                            parameter_choice: Some(ParameterChoice::StringParam("soon".into())),
                        },
                    );
                }),
                Code::InvalidArgument,
                vec!["timeout", "microseconds"],
            ),
            (
                with(&|r| r.inputs[0].datatype = "BYTES".into()),
                Code::InvalidArgument,
                vec!["BYTES"],
            ),
        ];
        for (request, code, needles) in cases {
            expect_status(client.model_infer(request).await, code, &needles);
            assert_still_serving(&mut client).await;
        }
        // A missing input (finalmlp_ctr takes cat_ids and dense).
        let mut partial = sample_request(
            "finalmlp_ctr",
            &samples("finalmlp_ctr")["samples"][0],
            false,
        );
        partial.inputs.retain(|i| i.name == "dense");
        expect_status(
            client.model_infer(partial).await,
            Code::InvalidArgument,
            &["missing input 'cat_ids'", "INT64"],
        );
        // FP16 cannot travel in typed contents.
        let mut typed_fp16 =
            sample_request("dtype_echo", &samples("dtype_echo")["samples"][0], true);
        typed_fp16.raw_input_contents.clear();
        for input in &mut typed_fp16.inputs {
            input.contents = Some(InferTensorContents {
                fp32_contents: vec![0.0; 3],
                ..Default::default()
            });
        }
        expect_status(
            client.model_infer(typed_fp16).await,
            Code::InvalidArgument,
            &["x_"],
        );
        assert_still_serving(&mut client).await;
    });
}

#[test]
fn a_full_queue_answers_resource_exhausted_and_admitted_requests_succeed() {
    let repo = ScratchRepo::new("grpc-overload");
    repo.add(
        "mlp_digits",
        "tiny_queue",
        1,
        "max_queue_size = 1\ninstances = 1\n",
    );
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
            for result in futures_util::future::join_all(calls).await {
                match result.expect("task") {
                    Ok(r) => assert_eq!(r.into_inner().outputs[0].shape, vec![2048, 10]),
                    Err(status) => {
                        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                        assert!(
                            status.message().contains("tiny_queue")
                                && status.message().contains("queue full"),
                            "{status:?}"
                        );
                        refused += 1;
                    }
                }
            }
            if refused > 0 {
                break;
            }
        }
        assert!(
            refused > 0,
            "no request was refused with max_queue_size = 1"
        );
    });
}

#[test]
fn a_passed_timeout_answers_deadline_exceeded() {
    let repo = ScratchRepo::new("grpc-deadline");
    repo.add(
        "mlp_digits",
        "one_worker",
        1,
        "max_queue_size = 64\ninstances = 1\n",
    );
    let server = TestServer::start(&repo.path);
    with_client(&server, |client| async move {
        let request = |timeout_us: Option<i64>| {
            let mut r = digits(2048);
            r.model_name = "one_worker".into();
            if let Some(t) = timeout_us {
                r.parameters.insert(
                    "timeout".into(),
                    InferParameter {
                        parameter_choice: Some(ParameterChoice::Int64Param(t)),
                    },
                );
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
        for call in futures_util::future::join_all(calls).await {
            match call.expect("task") {
                (_, Ok(r)) => assert_eq!(r.into_inner().outputs[0].shape, vec![2048, 10]),
                (i, Err(status)) => {
                    assert_eq!(i % 2, 1, "a request without a deadline failed: {status:?}");
                    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
                    assert!(
                        status.message().contains("one_worker")
                            && status.message().contains("timed out"),
                        "{status:?}"
                    );
                    timed_out += 1;
                }
            }
        }
        // A 1 µs deadline has always passed by the time the driver first looks at the
        // request (validation and a channel hop alone take longer), so all 12 time out.
        assert_eq!(timed_out, 12, "every 1 µs request times out");
        let mut client = client;
        let stats = client
            .model_statistics(ModelStatisticsRequest {
                name: "one_worker".into(),
                version: String::new(),
            })
            .await
            .expect("stats")
            .into_inner();
        let fail = stats.model_stats[0]
            .inference_stats
            .and_then(|s| s.fail)
            .map(|d| d.count);
        assert_eq!(fail, Some(timed_out), "timeouts are counted as failures");
    });
}

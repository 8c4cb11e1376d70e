//! Bounds on what one malformed input can cost: JSON nested too deep, error messages that
//! would echo a huge input, and pad values their input's datatype cannot hold.

use mlpserve::ServerConfig;
use tonic::Code;

use super::common::{assert_ready, assert_unavailable};
use super::{common, support, zoo, TestServer};

#[test]
fn json_nested_deeper_than_64_levels_is_refused_on_every_path_with_a_short_answer() {
    let server = TestServer::start(&zoo());
    let client = reqwest::blocking::Client::new();
    let post = |path: &str, body: String| {
        let r = client
            .post(server.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .expect("answered");
        (r.status().as_u16(), r.text().expect("text"))
    };
    // A data array 65 levels deep inside a V2 body: within serde's own limit of 128.
    let deep = format!("{}0.5{}", "[".repeat(65), "]".repeat(65));
    let v2 = format!(
        r#"{{"inputs": [{{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": {deep}}}]}}"#
    );
    let predict = format!(r#"{{"model": "mlp_digits", "inputs": {deep}}}"#);
    for (path, body) in [
        ("/v2/models/mlp_digits/infer", v2),
        ("/predict", predict),
        // Two million levels of `[`: refused without building anything for them.
        ("/v2/models/mlp_digits/infer", "[".repeat(2_000_000)),
        ("/predict", "[".repeat(2_000_000)),
    ] {
        let (status, text) = post(path, body);
        assert_eq!(status, 400, "{path}: {text}");
        assert!(text.contains("deeper than 64 levels"), "{path}: {text}");
        assert!(text.len() < 1000, "{path}: a {} byte answer", text.len());
    }
}

#[test]
fn error_messages_echo_at_most_a_few_hundred_bytes() {
    let server = TestServer::start(&zoo());
    // A shape of 200,000 dimensions, over HTTP and gRPC.
    let shape = vec![1u64; 200_000];
    let body = serde_json::json!({"inputs": [
        {"name": "pixels", "shape": shape, "datatype": "FP32", "data": [0.5]}
    ]});
    let (status, answer) = server.post_json("/v2/models/mlp_digits/infer", &body);
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"].as_str().expect("error");
    assert!(message.len() < 700, "a {} byte message", message.len());
    support::with_client(&server, |mut client| async move {
        let mut request = support::digits(1);
        request.inputs[0].shape = vec![1; 200_000];
        let status = client.model_infer(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().len() < 700,
            "a {} byte message",
            status.message().len()
        );
    });
}

#[test]
fn a_pad_value_outside_its_input_datatype_fails_the_load_naming_the_key() {
    for (input, value, needle) in [
        ("hist_items", "3.5", "INT64"),
        ("hist_items", "1e30", "INT64"),
        ("hist_mask", "1e40", "FP32"),
        ("hist_mask", "nan", "FP32"),
    ] {
        let repo = common::ScratchRepo::new("pad");
        let config = format!(
            "[inputs.hist_items]\npad_axes = [1]\npad_value = {}\n[inputs.hist_mask]\npad_axes = [1]\npad_value = {}\n",
            if input == "hist_items" { value } else { "0" },
            if input == "hist_mask" { value } else { "0" },
        );
        repo.add("din_ctr", "din", 1, &config);
        let server = TestServer::start_with_unready(ServerConfig::for_tests(&repo.path));
        let index = server.repository_index();
        let key = format!("[inputs.{input}] pad_value");
        assert_unavailable(&index, "din", &[&key, needle]);
    }
}

/// The narrow datatypes too: a pad value an unsigned, 8-bit, boolean or half input cannot
/// hold (−1 for UINT8 would wrap to 255) fails the load naming the key and the datatype;
/// values at the edges of each range load.
#[test]
fn a_pad_value_a_narrow_datatype_cannot_hold_fails_the_load_naming_the_key() {
    let refused = [
        ("x_uint8", "-1", "UINT8"),
        ("x_uint8", "256", "UINT8"),
        ("x_int8", "128", "INT8"),
        ("x_int32", "2147483648", "INT32"),
        ("x_bool", "2", "BOOL"),
        ("x_fp16", "1e5", "FP16"),
    ];
    let repo = common::ScratchRepo::new("pad-narrow");
    for (i, (input, value, _)) in refused.iter().enumerate() {
        repo.add(
            "dtype_echo",
            &format!("refused{i}"),
            1,
            &format!("[inputs.{input}]\npad_value = {value}\n"),
        );
    }
    repo.add(
        "dtype_echo",
        "edges",
        1,
        "[inputs.x_uint8]\npad_value = 255\n[inputs.x_int8]\npad_value = -128\n\
         [inputs.x_bool]\npad_value = 1\n[inputs.x_fp16]\npad_value = -65504\n",
    );
    let server = TestServer::start_with_unready(ServerConfig::for_tests(&repo.path));
    let index = server.repository_index();
    for (i, (input, _, dtype)) in refused.iter().enumerate() {
        let key = format!("[inputs.{input}] pad_value = ");
        assert_unavailable(&index, &format!("refused{i}"), &[&key, dtype]);
    }
    assert_ready(&index, "edges");
}

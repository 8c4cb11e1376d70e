//! `top_k` and `rank_by`: the k best rows' indices and scores beside every row, over V2 JSON
//! and gRPC, and bad ranking parameters refused naming them.

use super::*;

#[test]
fn top_k_answers_the_best_rows_best_first_beside_every_row() {
    let repo = ScratchRepo::new("rank-topk");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    let server = TestServer::start(&repo.path);
    let url = "/v2/models/din/infer";
    let r = Ranking::new(4, 9, 40);
    for k in [1, 5, 40, 100] {
        let mut body = r.v2(false);
        body["parameters"] = json!({"top_k": k});
        let answer = server.post_json(url, &body);
        let all = scores(&answer, 40);
        let body = &answer.1;
        let kept = k.min(40);
        let indices = v2_output(body, "top_k_indices");
        assert_eq!(indices["datatype"], "INT64");
        assert_eq!(indices["shape"], json!([kept]));
        let got: Vec<i64> = flatten(&indices["data"])
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(got, sorted_indices(&all)[..kept], "k = {k}");
        let best = v2_output(body, "top_k_scores");
        assert_eq!(best["datatype"], "FP32");
        let want: Vec<Value> = got.iter().map(|&i| all[i as usize].clone()).collect();
        assert_eq!(flatten(&best["data"]), want, "k = {k}");
    }
    // Listed outputs: only those, in the order listed, each in its own form.
    let mut body = r.v2(false);
    body["parameters"] = json!({"top_k": 3, "rank_by": "click_prob"});
    body["outputs"] = json!([{"name": "top_k_scores"}, {"name": "top_k_indices"}]);
    let (status, answer) = server.post_json(url, &body);
    assert_eq!(status, 200, "{answer}");
    let names: Vec<&str> = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["top_k_scores", "top_k_indices"]);
    // Without top_k there are no ranking outputs.
    let (_, answer) = server.post_json(url, &r.v2(false));
    assert_eq!(answer["outputs"].as_array().unwrap().len(), 1, "{answer}");
}

#[test]
fn grpc_answers_top_k_as_two_outputs() {
    use mlpserve::api::grpc::proto::infer_parameter::ParameterChoice;
    use mlpserve::api::grpc::proto::InferParameter;
    let repo = ScratchRepo::new("rank-grpc-topk");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    let server = TestServer::start(&repo.path);
    let r = Ranking::new(5, 6, 12);
    let all = scores(&server.post_json("/v2/models/din/infer", &r.v2(true)), 12);
    let want = sorted_indices(&all)[..4].to_vec();
    let request = ModelInferRequest {
        parameters: [(
            "top_k".to_string(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::Int64Param(4)),
            },
        )]
        .into(),
        ..r.grpc()
    };
    support::with_client(&server, |mut client| async move {
        let response = client
            .model_infer(request)
            .await
            .expect("infer")
            .into_inner();
        let outputs = support::outputs_json(&response);
        let (datatype, shape, got) = &outputs["top_k_indices"];
        assert_eq!((datatype.as_str(), shape), ("INT64", &vec![4]));
        let got: Vec<i64> = got.iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(got, want);
        let (datatype, shape, _) = &outputs["top_k_scores"];
        assert_eq!((datatype.as_str(), shape), ("FP32", &vec![4]));
        assert_eq!(outputs["click_prob"].1, vec![12, 1]);
    });
}

#[test]
fn bad_ranking_parameters_are_refused_naming_them() {
    let repo = ScratchRepo::new("rank-topk-bad");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    repo.add("mlp_digits", "digits", 1, "");
    let server = TestServer::start(&repo.path);
    let body = |params: Value| {
        let mut body = Ranking::new(2, 3, 4).v2(false);
        body["parameters"] = params;
        body
    };
    let url = "/v2/models/din/infer";
    for bad in [json!(0), json!(-3), json!("5"), json!(2.5), json!(true)] {
        expect_error(
            server.post_json(url, &body(json!({ "top_k": bad }))),
            400,
            &["'top_k'", "integer of at least 1"],
        );
    }
    expect_error(
        server.post_json(url, &body(json!({"top_k": 2, "rank_by": "score"}))),
        400,
        &["rank_by", "'score'", "'click_prob'"],
    );
    expect_error(
        server.post_json(url, &body(json!({"rank_by": "click_prob"}))),
        400,
        &["'rank_by' needs 'top_k'"],
    );
    let mut listed = body(json!({}));
    listed["outputs"] = json!([{"name": "top_k_indices"}]);
    expect_error(
        server.post_json(url, &listed),
        400,
        &["'top_k_indices'", "top_k"],
    );
    // A model whose only output has ten values per row has no default to rank by, and
    // naming that output is refused.
    let digits = json!({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": vec![0.0; 64]}],
        "parameters": {"top_k": 1}});
    let (_, meta) = server.get_json("/v2/models/digits");
    let input = meta["inputs"][0]["name"].as_str().unwrap().to_string();
    let mut digits = digits;
    digits["inputs"][0]["name"] = json!(input);
    expect_error(
        server.post_json("/v2/models/digits/infer", &digits),
        400,
        &["top_k", "rank_by", "'logits'"],
    );
    digits["parameters"]["rank_by"] = json!("logits");
    expect_error(
        server.post_json("/v2/models/digits/infer", &digits),
        400,
        &["'logits'", "[-1, 10]", "one value per row"],
    );
}

//! Ranking configuration mistakes: a broadcast or `rank_by` the model cannot honour leaves
//! it UNAVAILABLE with the reason in the repository index.

use super::*;

#[test]
fn broadcast_config_mistakes_leave_the_model_unavailable_with_the_reason() {
    let repo = ScratchRepo::new("rank-config");
    repo.add(
        "widedeep_ctr",
        "mixed",
        1,
        &FIELDS.replace(
            "c3 = { hash_buckets = 100, broadcast = true }",
            "c3 = { hash_buckets = 100 }",
        ),
    );
    repo.add_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fixed_batch/1/model.onnx"),
        "fixed",
        1,
        "[inputs.x]\nbroadcast = true\n",
    );
    let server = TestServer::start_lenient(&repo.path);
    let index = server.repository_index();
    for (name, needles) in [
        (
            "mixed",
            &[
                "model 'mixed'",
                "inputs.cat_ids",
                "'user'",
                "'c3'",
                "broadcast",
            ][..],
        ),
        (
            "fixed",
            &["model 'fixed'", "inputs.x", "broadcast", "cannot batch"][..],
        ),
    ] {
        assert_unavailable(&index, name, needles);
    }
}

#[test]
fn metadata_lists_the_broadcast_inputs_and_the_ranked_output() {
    let repo = ScratchRepo::new("rank-meta");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    repo.add("widedeep_ctr", "ctr", 1, FIELDS);
    let server = TestServer::start(&repo.path);
    let (status, meta) = server.get_json("/v2/models/din");
    assert_eq!(status, 200, "{meta}");
    let flags: Vec<(String, bool)> = meta["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| {
            let name = i["name"].as_str().expect("name").to_string();
            (name, i["broadcast"] == json!(true))
        })
        .collect();
    assert_eq!(
        flags,
        [
            ("target_item".to_string(), false),
            ("hist_items".to_string(), true),
            ("hist_mask".to_string(), true)
        ]
    );
    assert_eq!(
        meta["parameters"]["broadcast_inputs"],
        "hist_items,hist_mask"
    );
    assert_eq!(meta["parameters"]["rank_by"], "click_prob");
    let (_, config) = server.get_json("/v2/models/din/config");
    assert_eq!(
        config["parameters"]["broadcast_inputs"]["string_value"],
        "hist_items,hist_mask"
    );
    // Raw fields: the broadcast ones are flagged among the inputs and the features.
    let (_, meta) = server.get_json("/v2/models/ctr");
    let user = meta["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .find(|i| i["name"] == "user")
        .expect("user field");
    assert_eq!(user["broadcast"], true, "{meta}");
    assert!(meta["parameters"]["broadcast_inputs"]
        .as_str()
        .is_some_and(|b| b.contains("user") && b.contains("c1") && !b.contains("price")));
    // gRPC clients read the same facts from the model configuration.
    support::with_client(&server, |mut client| async move {
        let request = mlpserve::api::grpc::proto::ModelConfigRequest {
            name: "din".into(),
            version: String::new(),
        };
        let config = client
            .model_config(request)
            .await
            .expect("config")
            .into_inner();
        let parameters = config.config.expect("config").parameters;
        assert_eq!(
            parameters["broadcast_inputs"].string_value,
            "hist_items,hist_mask"
        );
        assert_eq!(parameters["rank_by"].string_value, "click_prob");
    });
}

#[test]
fn a_rank_by_the_model_cannot_rank_by_fails_the_load() {
    let repo = ScratchRepo::new("rank-by-config");
    repo.add("mlp_digits", "wide", 1, "rank_by = \"logits\"\n");
    repo.add("mlp_digits", "unknown", 1, "rank_by = \"score\"\n");
    let server = TestServer::start_lenient(&repo.path);
    let index = server.repository_index();
    for (name, needles) in [
        (
            "wide",
            &["model 'wide'", "rank_by", "'logits'", "one value per row"][..],
        ),
        (
            "unknown",
            &["model 'unknown'", "rank_by = \"score\"", "names no output"][..],
        ),
    ] {
        assert_unavailable(&index, name, needles);
    }
}

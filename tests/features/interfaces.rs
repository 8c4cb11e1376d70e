//! What a client of a raw-feature model sees: the fields listed in the metadata and the
//! Triton configuration, and the fields sent over gRPC.

use super::*;

#[test]
fn metadata_and_triton_config_list_the_fields_a_client_sends() {
    let repo = repo("fields-meta");
    let server = TestServer::start(&repo.path);
    let (status, meta) = server.get_json("/v2/models/ctr");
    assert_eq!(status, 200, "{meta}");
    let inputs: Vec<(&str, &str)> = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["datatype"].as_str().unwrap()))
        .collect();
    // The graph inputs built from fields are not sent; every field is, by name.
    assert!(
        !inputs.iter().any(|(n, _)| *n == "cat_ids" || *n == "dense"),
        "{meta}"
    );
    assert!(inputs.contains(&("user", "BYTES")), "{meta}");
    assert!(inputs.contains(&("income", "FP32")), "{meta}");
    assert_eq!(inputs.len(), 12, "{meta}");
    let site = meta["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "site")
        .unwrap();
    assert_eq!(site["feeds"], json!([{"input": "cat_ids", "column": 1}]));
    assert!(
        site["transform"]
            .as_str()
            .unwrap()
            .contains("oov_buckets = 2"),
        "{site}"
    );
    let y = meta["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "y")
        .unwrap();
    assert_eq!(y["default"], json!(0.5));

    let (status, config) = server.get_json("/v2/models/ctr/config");
    assert_eq!(status, 200, "{config}");
    let user = config["input"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "user")
        .unwrap();
    assert_eq!(user["data_type"], "TYPE_STRING");
    assert_eq!(user["dims"], json!([1]));
    assert_eq!(user["reshape"]["shape"], json!([]));
    assert_eq!(config["features"].as_array().unwrap().len(), 12);
    // A model without [features] shows no trace of them.
    let plain = ScratchRepo::digits("fields-meta-plain");
    let server = TestServer::start(&plain.path);
    let (_, meta) = server.get_json("/v2/models/mlp_digits");
    assert!(meta.get("features").is_none(), "{meta}");
    let (_, config) = server.get_json("/v2/models/mlp_digits/config");
    assert!(config.get("features").is_none(), "{config}");
    assert!(config["input"][0].get("reshape").is_none(), "{config}");
}

#[test]
fn grpc_takes_fields_and_lists_them() {
    use mlpserve::api::grpc::proto::*;
    let repo = repo("fields-grpc");
    let server = TestServer::start(&repo.path);
    let (fields, cat_ids, dense) = numeric_rows();
    let want = probs(server.post_json("/v2/models/ctr/infer", &tensors_body(&cat_ids, &dense)));
    support::with_client(&server, |mut client| async move {
        let request = support::columns("ctr", &fields);
        let response = client
            .model_infer(request)
            .await
            .expect("infer")
            .into_inner();
        support::assert_outputs(
            &response,
            &json!({"click_prob": {"datatype": "FP32", "shape": [3, 1], "data": want}}),
        );
        let meta = client
            .model_metadata(ModelMetadataRequest {
                name: "ctr".into(),
                version: String::new(),
            })
            .await
            .expect("metadata")
            .into_inner();
        let names: Vec<&str> = meta.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names.len(), 12, "{names:?}");
        assert!(
            names.contains(&"site") && !names.contains(&"cat_ids"),
            "{names:?}"
        );
        let config = client
            .model_config(ModelConfigRequest {
                name: "ctr".into(),
                version: String::new(),
            })
            .await
            .expect("config")
            .into_inner()
            .config
            .expect("config");
        let site = config
            .input
            .iter()
            .find(|i| i.name == "site")
            .expect("site");
        assert_eq!(site.data_type, DataType::TypeString as i32);
        assert_eq!(site.reshape.as_ref().map(|r| r.shape.len()), Some(0));
        let described = &config.parameters["feature:site"].string_value;
        assert!(described.contains("cat_ids"), "{described}");
    });
}

//! Model lifecycle on the real server: start-up failure isolation (and WARN for every path
//! skipped), `--exit-on-error`, the repository extension in explicit mode (load, config and
//! file overrides, no-op reloads, unload), the admin token, refusals outside explicit mode,
//! labels and the traffic split.

mod common;

use base64::Engine;
use common::{run_binary, zoo, ScratchRepo, TestServer};
use mlpserve::config::ControlMode;
use mlpserve::ServerConfig;
use serde_json::{json, Value};

fn model_file(zoo_model: &str) -> std::path::PathBuf {
    zoo().join(zoo_model).join("1").join("model.onnx")
}

/// A digits image input (the signature gmlp_digits and mixer_digits share).
pub fn image_body() -> Value {
    let data: Vec<f32> = (0..64).map(|i| (i % 17) as f32 / 16.0).collect();
    json!({"inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": data}]})
}

fn index(server: &TestServer) -> Vec<Value> {
    let (status, body) = server.post_json("/v2/repository/index", &json!({}));
    assert_eq!(status, 200, "{body}");
    body.as_array().expect("index is a list").clone()
}

fn entry<'a>(index: &'a [Value], name: &str, version: &str) -> &'a Value {
    index
        .iter()
        .find(|e| e["name"] == name && e["version"] == version)
        .unwrap_or_else(|| panic!("{name}/{version} not in index: {index:?}"))
}

/// A repository with one good model and one example of every way a model can be broken.
fn broken_repo() -> ScratchRepo {
    let repo = ScratchRepo::new("broken");
    repo.add("mlp_digits", "good", 1, "");
    let p = &repo.path;
    let write = |rel: &str, bytes: &[u8]| {
        let f = p.join(rel);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, bytes).unwrap();
    };
    write("corrupt/1/model.onnx", b"this is not an onnx graph");
    write("empty/1/model.onnx", b"");
    std::fs::create_dir_all(p.join("dangling/1")).unwrap();
    std::os::unix::fs::symlink(p.join("nowhere.onnx"), p.join("dangling/1/model.onnx")).unwrap();
    std::fs::create_dir_all(p.join("looping/1")).unwrap();
    std::os::unix::fs::symlink(
        p.join("looping/1/model.onnx"),
        p.join("looping/1/model.onnx"),
    )
    .unwrap();
    std::fs::create_dir_all(p.join("dir_model/1/model.onnx")).unwrap();
    std::fs::create_dir_all(p.join("no_model/1")).unwrap();
    write(
        "named/v1/model.onnx",
        &std::fs::read(model_file("mlp_digits")).unwrap(),
    );
    write("huge/99999999999999999999999/model.onnx", b"x");
    write(
        "dup/1/model.onnx",
        &std::fs::read(model_file("mlp_digits")).unwrap(),
    );
    write(
        "dup/01/model.onnx",
        &std::fs::read(model_file("mlp_digits")).unwrap(),
    );
    repo
}

#[test]
fn broken_models_are_isolated_and_listed_with_their_reason() {
    let repo = broken_repo();
    let mut config = ServerConfig::for_tests(&repo.path);
    config.strict_readiness = false;
    let server = TestServer::start_with(config);
    let idx = index(&server);
    assert_eq!(entry(&idx, "good", "1")["state"], "READY");
    let reason = |name: &str, version: &str| {
        let e = entry(&idx, name, version);
        assert_eq!(e["state"], "UNAVAILABLE", "{e}");
        e["reason"].as_str().unwrap().to_string()
    };
    assert!(!reason("corrupt", "1").is_empty());
    assert!(
        reason("empty", "1").contains("empty"),
        "{}",
        reason("empty", "1")
    );
    for name in [
        "dangling",
        "looping",
        "dir_model",
        "no_model",
        "named",
        "huge",
    ] {
        assert!(
            reason(name, "").contains("no loadable version"),
            "{name}: {}",
            reason(name, "")
        );
    }
    assert!(
        reason("dup", "").contains("both version 1"),
        "{}",
        reason("dup", "")
    );
    // The good model serves; the broken ones answer 503 with the reason, not a silent 404.
    let s = &common::samples("mlp_digits")["samples"][0];
    let body = json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32",
        "data": common::flatten(&s["inputs"]["pixels"]["data"])}]});
    assert_eq!(server.post_json("/v2/models/good/infer", &body).0, 200);
    let (status, err) = server.post_json("/v2/models/corrupt/infer", &body);
    assert_eq!(status, 503, "{err}");
    // Non-strict readiness: ready with unavailable models. The model itself is not ready.
    assert_eq!(server.get_json("/v2/health/ready").0, 200);
    assert_eq!(server.get_json("/v2/models/corrupt/ready").0, 503);
    assert_eq!(server.get_json("/v2/models/good/ready").0, 200);
}

#[test]
fn every_skipped_path_is_logged_at_warn_and_exit_on_error_fails_fast() {
    let repo = broken_repo();
    let (lines, child) = run_binary(&repo.path, &[]);
    let mut child = child.expect("serves despite broken models");
    let _ = child.kill();
    let _ = child.wait();
    let warns: Vec<&String> = lines.iter().filter(|l| l.contains("\"WARN\"")).collect();
    for needle in [
        "dangling/1",
        "looping/1",
        "dir_model/1",
        "no_model/1",
        "named/v1",
        "huge/99999999999999999999999",
        "both version 1",
        "empty",
        "corrupt",
    ] {
        assert!(
            warns.iter().any(|l| l.contains(needle)),
            "no WARN mentions {needle}: {warns:#?}"
        );
    }
    let (lines, exited) = run_binary(&repo.path, &["--exit-on-error"]);
    let status = exited.expect_err("--exit-on-error stops start-up");
    assert!(!status.success());
    let _ = lines;
}

/// The model a JSON log line names, when its message is `message`.
fn logged_model<'a>(line: &'a Value, message: &str) -> Option<&'a str> {
    (line["message"] == message)
        .then(|| line["model"].as_str())
        .flatten()
}

#[test]
fn start_up_loads_models_side_by_side_and_reports_failures_in_name_order() {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let repo = ScratchRepo::new("side-by-side");
    for name in ["m1", "m2", "m3", "m4"] {
        repo.add("mlp_digits", name, 1, "");
    }
    let (lines, child) = run_binary(&repo.path, &[]);
    let mut child = child.expect("serves");
    let _ = child.kill();
    let _ = child.wait();
    let events: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // How many loads were under way at once, at most: one per core. On a machine with
    // more than one core, some overlap (over four models, however the scheduler delays
    // one load's start); on one core, strictly one after another.
    let mut under_way = 0usize;
    let mut most = 0usize;
    for e in &events {
        if logged_model(e, "loading version").is_some() {
            under_way += 1;
            most = most.max(under_way);
        } else if logged_model(e, "version ready").is_some() {
            under_way = under_way.saturating_sub(1);
        }
    }
    assert!(
        most <= cores.min(4),
        "{most} loads at once on {cores} cores: {lines:#?}"
    );
    assert!(
        cores == 1 || most >= 2,
        "no two models loaded side by side on {cores} cores: {lines:#?}"
    );
    let ready: Vec<&str> = events
        .iter()
        .filter_map(|e| logged_model(e, "version ready"))
        .collect();
    assert_eq!(ready.len(), 4, "{ready:?}");

    // Failures are reported in the order of the names, however the loads interleave.
    for name in ["a_bad", "b_bad", "c_bad"] {
        let dir = repo.path.join(name).join("1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.onnx"), b"not an onnx graph").unwrap();
    }
    let (lines, exited) = run_binary(&repo.path, &["--exit-on-error"]);
    exited.expect_err("--exit-on-error stops start-up");
    let fatal = lines
        .iter()
        .find(|l| l.contains("--exit-on-error:"))
        .unwrap_or_else(|| panic!("no start-up error: {lines:#?}"));
    let at = |name: &str| {
        fatal
            .find(&format!("model '{name}'"))
            .unwrap_or_else(|| panic!("the error does not name {name}: {fatal}"))
    };
    assert!(
        at("a_bad") < at("b_bad") && at("b_bad") < at("c_bad"),
        "{fatal}"
    );
}

fn explicit_server(repo: &ScratchRepo, token: Option<&str>) -> TestServer {
    let mut config = ServerConfig::for_tests(&repo.path);
    config.model_control_mode = ControlMode::Explicit;
    config.load_model = vec!["a".to_string()];
    config.admin_token = token.map(str::to_string);
    TestServer::start_with(config)
}

fn post(server: &TestServer, path: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::blocking::Client::new()
        .post(server.url(path))
        .json(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().expect("request");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[test]
fn explicit_mode_loads_overrides_and_unloads_through_the_api() {
    let repo = ScratchRepo::new("explicit");
    repo.add("gmlp_digits", "a", 1, "");
    repo.add("mixer_digits", "b", 1, "");
    let server = explicit_server(&repo, None);
    let idx = index(&server);
    assert_eq!(entry(&idx, "a", "1")["state"], "READY");
    assert_eq!(entry(&idx, "b", "")["reason"], "not loaded");
    assert_eq!(server.post_json("/v2/models/b/infer", &image_body()).0, 404);

    assert_eq!(
        server
            .post_json("/v2/repository/models/b/load", &json!({}))
            .0,
        200
    );
    let (status, first) = server.post_json("/v2/models/b/infer", &image_body());
    assert_eq!(status, 200);
    // A repeated identical load is a no-op (no session is built); `force` reloads.
    let loads = || {
        let text = reqwest::blocking::get(server.url("/metrics"))
            .unwrap()
            .text()
            .unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("mlpserve_model_loads_total{outcome=\"success\"}"));
        line.and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .expect("loads counter")
    };
    let before = loads();
    assert_eq!(
        server
            .post_json("/v2/repository/models/b/load", &json!({}))
            .0,
        200
    );
    assert_eq!(loads(), before);
    let force = json!({"parameters": {"force": true}});
    assert_eq!(
        server.post_json("/v2/repository/models/b/load", &force).0,
        200
    );
    assert_eq!(loads(), before + 1);

    // A config override and a file override of a new version (gmlp under b/2).
    let bytes = std::fs::read(model_file("gmlp_digits")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let load =
        json!({"parameters": {"config": "{\"max_batch_size\": 8}", "file:2/model.onnx": b64}});
    let (status, body) = server.post_json("/v2/repository/models/b/load", &load);
    assert_eq!(status, 200, "{body}");
    let (status, second) = server.post_json("/v2/models/b/infer", &image_body());
    assert_eq!((status, second["model_version"].clone()), (200, json!("2")));
    assert_ne!(
        first["outputs"][0]["data"], second["outputs"][0]["data"],
        "v2 is another model"
    );
    let (_, config) = server.get_json("/v2/models/b/config");
    assert_eq!(config["max_batch_size"], 8);
    assert!(repo.path.join("b/2/model.onnx").is_file());

    // Overrides never write outside the model's directory.
    for bad in [
        "file:../a/3/model.onnx",
        "file:/tmp/x/1/model.onnx",
        "file:model.onnx",
    ] {
        let load = json!({"parameters": {"config": "{}", bad: "eA=="}});
        assert_eq!(
            server.post_json("/v2/repository/models/b/load", &load).0,
            400,
            "{bad}"
        );
    }
    assert!(!repo.path.join("a/3").exists());
    // A load that fails leaves what serves untouched and says why.
    let load = json!({"parameters": {"config": "{}", "file:3/model.onnx": "bm90IG9ubng="}});
    let (status, body) = server.post_json("/v2/repository/models/b/load", &load);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("version 3"),
        "{body}"
    );
    assert_eq!(
        server.post_json("/v2/models/b/infer", &image_body()).1["model_version"],
        "2"
    );
    assert_eq!(entry(&index(&server), "b", "3")["state"], "UNAVAILABLE");

    assert_eq!(
        server
            .post_json("/v2/repository/models/b/unload", &json!({}))
            .0,
        200
    );
    assert_eq!(server.post_json("/v2/models/b/infer", &image_body()).0, 503);
    assert_eq!(entry(&index(&server), "b", "")["reason"], "unloaded");
    assert_eq!(
        server
            .post_json("/v2/repository/models/nope/unload", &json!({}))
            .0,
        404
    );
    assert_eq!(
        server
            .post_json("/v2/repository/models/..%2Fa/load", &json!({}))
            .0,
        400
    );
}

#[test]
fn control_endpoints_need_the_token_and_explicit_mode() {
    let repo = ScratchRepo::new("token");
    repo.add("gmlp_digits", "a", 1, "");
    let server = explicit_server(&repo, Some("s3cret"));
    for path in [
        "/v2/repository/index",
        "/v2/repository/models/a/load",
        "/v2/repository/models/a/unload",
    ] {
        assert_eq!(post(&server, path, &json!({}), None).0, 401, "{path}");
        assert_eq!(
            post(&server, path, &json!({}), Some("wrong")).0,
            401,
            "{path}"
        );
    }
    assert_eq!(
        post(&server, "/v2/repository/index", &json!({}), Some("s3cret")).0,
        200
    );
    assert_eq!(
        post(
            &server,
            "/v2/repository/models/a/load",
            &json!({}),
            Some("s3cret")
        )
        .0,
        200
    );
    // Inference is unaffected by the admin token.
    assert_eq!(server.post_json("/v2/models/a/infer", &image_body()).0, 200);
    drop(server);

    let server = TestServer::start(&repo.path);
    let (status, body) = server.post_json("/v2/repository/models/a/load", &json!({}));
    assert_eq!(status, 403);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("--model-control-mode explicit"),
        "{body}"
    );
    assert_eq!(
        server
            .post_json("/v2/repository/models/a/unload", &json!({}))
            .0,
        403
    );
    assert_eq!(server.post_json("/v2/repository/index", &json!({})).0, 200);
    let (_, meta) = server.get_json("/v2");
    assert!(meta["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("model_repository")));
}

#[test]
fn labels_resolve_and_the_traffic_split_follows_its_weights() {
    let repo = ScratchRepo::new("traffic");
    let config = "version_policy = { latest = 2 }\nlabels = { stable = 3, canary = 4 }\ntraffic = { \"3\" = 90, \"4\" = 10 }";
    repo.add("gmlp_digits", "m", 3, config);
    repo.add("mixer_digits", "m", 4, config);
    let server = TestServer::start(&repo.path);
    let version = |path: &str| server.post_json(path, &image_body()).1["model_version"].clone();
    assert_eq!(version("/v2/models/m/versions/stable/infer"), "3");
    assert_eq!(version("/v2/models/m/versions/canary/infer"), "4");
    let (_, predict) = server.post_json(
        "/predict",
        &json!({"model": "m", "version": "canary", "inputs": vec![vec![vec![vec![0.0; 8]; 8]]]}),
    );
    assert_eq!(predict["version"], "4", "{predict}");
    assert_eq!(
        server
            .post_json("/v2/models/m/versions/beta/infer", &image_body())
            .0,
        404
    );
    let client = reqwest::blocking::Client::new();
    let n = 2000;
    let mut fours = 0;
    for _ in 0..n {
        let r: Value = client
            .post(server.url("/v2/models/m/infer"))
            .json(&image_body())
            .send()
            .unwrap()
            .json()
            .unwrap();
        fours += usize::from(r["model_version"] == "4");
    }
    let share = fours as f64 / n as f64;
    println!(
        "traffic split: {fours}/{n} requests to version 4 ({:.1} %)",
        share * 100.0
    );
    assert!((share - 0.10).abs() <= 0.03, "share of version 4: {share}");
}

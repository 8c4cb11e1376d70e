//! The HTTP contract, the OpenAPI document the server generates from its router and serves
//! at `/openapi.json`: it is OpenAPI 3.1 of this build, it lists the protocol's operations,
//! every documented operation reaches a handler on a live server (never the router's
//! fallback) and answers only documented statuses, and a documented path answers 405 to
//! every method it does not document. Schema conformance of the bodies is fuzzed by
//! schemathesis (`tests/python/test_openapi_schemathesis.py`).

mod common;

use std::collections::BTreeSet;

use common::{zoo, TestServer};
use reqwest::blocking::Client;
use serde_json::Value;

/// HTTP methods an OpenAPI path item can hold.
const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

/// The operations the server must serve: KServe V2 with Triton's extensions, `/predict`,
/// probes, metrics and this document. A route dropped from the router would drop out of the
/// generated document too; this list catches that.
const PROTOCOL: [(&str, &str); 23] = [
    ("/v2", "get"),
    ("/v2/", "get"),
    ("/v2/health/live", "get"),
    ("/v2/health/ready", "get"),
    ("/health/live", "get"),
    ("/health/ready", "get"),
    ("/v2/models/{name}", "get"),
    ("/v2/models/{name}/versions/{version}", "get"),
    ("/v2/models/{name}/ready", "get"),
    ("/v2/models/{name}/versions/{version}/ready", "get"),
    ("/v2/models/{name}/infer", "post"),
    ("/v2/models/{name}/versions/{version}/infer", "post"),
    ("/v2/models/{name}/config", "get"),
    ("/v2/models/{name}/versions/{version}/config", "get"),
    ("/v2/models/stats", "get"),
    ("/v2/models/{name}/stats", "get"),
    ("/v2/models/{name}/versions/{version}/stats", "get"),
    ("/predict", "post"),
    ("/v2/repository/index", "post"),
    ("/v2/repository/models/{name}/load", "post"),
    ("/v2/repository/models/{name}/unload", "post"),
    ("/metrics", "get"),
    ("/openapi.json", "get"),
];

/// The document `server` serves.
fn document(server: &TestServer) -> Value {
    let response = Client::new()
        .get(server.url("/openapi.json"))
        .send()
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    response.json().expect("the document is JSON")
}

/// (path template, lower-case method) of every operation in the document.
fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths object");
    let mut ops = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item object").keys() {
            if METHODS.contains(&method.as_str()) {
                ops.insert((path.clone(), method.clone()));
            }
        }
    }
    ops
}

/// A path the router matches for `template`: a zoo model, version 1.
fn concrete(template: &str, model: &str) -> String {
    template.replace("{name}", model).replace("{version}", "1")
}

#[test]
fn document_is_openapi_3_1_of_this_build_and_lists_the_protocol() {
    let server = TestServer::start(&zoo());
    let doc = document(&server);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let expected: BTreeSet<_> = PROTOCOL
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    assert_eq!(documented_operations(&doc), expected);
    // Every `$ref` resolves within the document.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"#/").skip(1) {
        let pointer = reference.split('"').next().unwrap_or_default();
        assert!(
            doc.pointer(&format!("/{pointer}")).is_some(),
            "dangling reference #/{pointer}"
        );
    }
}

/// Sends `method path` with an empty JSON object for POSTs: the status and content type.
fn call(client: &Client, server: &TestServer, method: &str, path: &str) -> (u16, String, Value) {
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let mut request = client.request(method.clone(), server.url(path));
    if method == reqwest::Method::POST {
        request = request
            .header("content-type", "application/json")
            .body("{}");
    }
    let response = request.send().expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response.json().unwrap_or(Value::Null);
    (status, content_type, body)
}

#[test]
fn every_documented_operation_reaches_a_handler_and_answers_a_documented_status() {
    let server = TestServer::start(&zoo());
    let client = Client::new();
    let doc = document(&server);
    let ops = documented_operations(&doc);
    assert!(ops.len() >= 10, "document has only {ops:?}");
    for (template, method) in &ops {
        let responses = &doc["paths"][template][method]["responses"];
        let mut models = vec!["mlp_digits"];
        if template.contains("{name}") {
            models.push("no_such_model");
        }
        for model in models {
            let path = concrete(template, model);
            let (status, content_type, body) = call(&client, &server, method, &path);
            let fallback = body["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("no route for"));
            assert!(
                !fallback && status != 405,
                "{method} {path} is documented but not routed: {status} {body}"
            );
            assert!(
                responses.get(status.to_string()).is_some(),
                "{method} {path} answered {status}, which {template} does not document: {body}"
            );
            if status != 200 {
                assert!(
                    content_type.starts_with("application/json") && body["error"].is_string(),
                    "{method} {path} {status} is not a JSON error: {content_type} {body}"
                );
            }
        }
    }
}

#[test]
fn documented_paths_refuse_the_methods_they_do_not_document() {
    let server = TestServer::start(&zoo());
    let client = Client::new();
    let doc = document(&server);
    for (template, item) in doc["paths"].as_object().expect("paths") {
        let path = concrete(template, "mlp_digits");
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                continue;
            }
            let (status, _, body) = call(&client, &server, method, &path);
            assert_eq!(
                status, 405,
                "{method} {path} is not documented but answered {status} {body}"
            );
        }
    }
}

#[test]
fn an_undocumented_path_answers_the_fallback() {
    let server = TestServer::start(&zoo());
    let (status, _, body) = call(&Client::new(), &server, "get", "/v2/models");
    assert_eq!(status, 404);
    assert_eq!(body["error"], "no route for GET /v2/models");
}

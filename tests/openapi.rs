//! The HTTP contract `openapi/openapi.json` against the router: the routes declared in
//! `src/api/http` and the document's operations are the same set, every documented
//! operation reaches a handler on a live server (never the router's fallback or a 405), and
//! the statuses it answers with are the documented ones. Schema conformance of the bodies is
//! fuzzed by schemathesis (`tests/python/test_openapi_schemathesis.py`).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{zoo, TestServer};
use reqwest::blocking::Client;
use serde_json::Value;

/// HTTP methods an axum `MethodRouter` can be built with.
const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn document() -> Value {
    let text = std::fs::read_to_string(repo().join("openapi/openapi.json")).expect("read doc");
    serde_json::from_str(&text).expect("openapi.json is JSON")
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

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// (path template, method) of every `.route("...", get(..).post(..))` in `source`: the
/// literal, then the method-router calls up to the next `.route(` or `.fallback(`.
fn routes_in(source: &str) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let Some(literal) = rest.trim_start().strip_prefix('"') else {
            continue;
        };
        let Some(end) = literal.find('"') else {
            break;
        };
        let path = &literal[..end];
        let after = &literal[end + 1..];
        let handlers_end = [after.find(".route("), after.find(".fallback(")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(after.len());
        let handlers = &after[..handlers_end];
        for method in METHODS {
            let call = format!("{method}(");
            let called = handlers.match_indices(&call).any(|(i, _)| {
                // A whole word: `get(`, `.get(` or `routing::get(`, not `target(`.
                i == 0 || !handlers[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if called {
                routes.push((path.to_string(), method.to_string()));
            }
        }
    }
    routes
}

/// (path template, method) of every route the HTTP API's source declares.
fn declared_routes() -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    rust_files(&repo().join("src/api/http"), &mut files);
    let mut routes = BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(&file).expect("read source");
        routes.extend(routes_in(&source));
    }
    routes
}

/// A path the router matches for `template`: a zoo model, version 1.
fn concrete(template: &str, model: &str) -> String {
    template.replace("{name}", model).replace("{version}", "1")
}

#[test]
fn route_extraction_reads_the_router_syntax() {
    let source = r#"Router::new()
        .route("/a", get(h::a))
        .route(
            "/b/{name}",
            post(h::b).get(h::c),
        )
        .route("/c", axum::routing::delete(target))
        .fallback(not_found)"#;
    let expected = [
        ("/a", "get"),
        ("/b/{name}", "get"),
        ("/b/{name}", "post"),
        ("/c", "delete"),
    ];
    let got: BTreeSet<_> = routes_in(source).into_iter().collect();
    let expected: BTreeSet<_> = expected
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn document_and_router_declare_the_same_operations() {
    let declared = declared_routes();
    assert!(
        declared.len() >= 10,
        "found only {declared:?} in src/api/http: has the router moved?"
    );
    let documented = documented_operations(&document());
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&declared).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from openapi/openapi.json: {undocumented:?}; \
         documented operations with no route: {unrouted:?}"
    );
}

#[test]
fn document_is_openapi_3_1_and_versioned_with_the_server() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
}

/// Sends `method path` with an empty JSON object for POSTs: the status and content type.
fn call(client: &Client, server: &TestServer, method: &str, path: &str) -> (u16, String, Value) {
    let request = match method {
        "get" => client.get(server.url(path)),
        "post" => client
            .post(server.url(path))
            .header("content-type", "application/json")
            .body("{}"),
        other => panic!("no request builder for {other}"),
    };
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
    let doc = document();
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
fn the_server_serves_this_document() {
    let server = TestServer::start(&zoo());
    let response = Client::new()
        .get(server.url("/openapi.json"))
        .send()
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let served: Value = response.json().expect("JSON");
    assert_eq!(served, document());
}

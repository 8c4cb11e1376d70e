//! Hostile and careless clients (issue 10): every cost a client can make the server pay is
//! bounded before it is paid, and contract holes answer one documented way on both transports.

mod common;

use common::{zoo, TestServer};
use reqwest::blocking::Client;
use reqwest::Method;

/// Series of `mlpserve_http_requests_total` in the exposition.
fn http_series(server: &TestServer) -> Vec<String> {
    let text = Client::new()
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with("mlpserve_http_requests_total{"))
        .map(str::to_string)
        .collect()
}

#[test]
fn random_methods_and_paths_do_not_grow_the_metric_series() {
    let server = TestServer::start(&zoo());
    let client = Client::new();
    for i in 0..200u32 {
        let method = Method::from_bytes(format!("M{i:x}X").as_bytes()).expect("method token");
        let path = if i % 2 == 0 {
            format!("/no/such/path/{i}")
        } else {
            "/v2/models/mlp_digits/infer".to_string()
        };
        let _ = client
            .request(method, server.url(&path))
            .send()
            .expect("answered");
    }
    let series = http_series(&server);
    assert!(
        series.len() <= 8,
        "200 random methods made {} series: {series:#?}",
        series.len()
    );
    assert!(
        series.iter().any(|s| s.contains(r#"method="other""#)),
        "{series:#?}"
    );
    assert!(
        series.iter().any(|s| s.contains(r#"route="unmatched""#)),
        "{series:#?}"
    );
    assert!(
        series.iter().all(|s| !s.contains("/no/such/path")),
        "raw paths must never become labels: {series:#?}"
    );
}

//! One in-flight byte budget for every path: HTTP bodies, gRPC unary messages and gRPC
//! streams draw from the same budget before they are decoded; a request that can never fit
//! gets 413 / RESOURCE_EXHAUSTED, one that could fit later 503 / UNAVAILABLE, both naming
//! the limit. Memory is measured on the server process from outside (`/proc/PID/status`).
//! What the budget admits and refuses is in `admission.rs`, the server's peak memory under
//! large requests in `memory.rs`, the refusal counter in `refusals.rs`, and the bounds on
//! what one malformed input can cost (nesting, echoed text, pad values) in `input_limits.rs`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../grpc/support.rs"]
#[allow(dead_code)]
mod support;

mod admission;
mod input_limits;
mod memory;
mod refusals;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use common::{spawn_server, zoo, Binary, TestServer};
use mlpserve::ServerConfig;

fn budget_server(inflight: usize, body: usize) -> TestServer {
    let mut config = ServerConfig::for_tests(&zoo());
    config.max_inflight_bytes = inflight;
    config.max_body_bytes = body;
    TestServer::start_with(config)
}

/// Sends an HTTP/1.1 request head declaring `len` body bytes and one byte of the body;
/// the connection stays open, holding `len` bytes of the budget once the server read it.
fn hold(server: &TestServer, len: usize) -> TcpStream {
    let mut s = TcpStream::connect(server.http).expect("connect");
    let head = format!("POST /v2/models/mlp_digits/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n{{");
    s.write_all(head.as_bytes()).expect("head");
    s
}

/// A server process (not in this test's process, so its memory is its own), killed on drop.
struct Process {
    binary: Binary,
    http: SocketAddr,
    grpc: SocketAddr,
}

impl Process {
    fn start(args: &[&str]) -> Process {
        Process::start_on(&zoo(), args)
    }

    fn start_on(repo: &std::path::Path, args: &[&str]) -> Process {
        let args = [&["--log-level", "info"][..], args].concat();
        let (binary, http, grpc) = spawn_server(repo, &args);
        Process { binary, http, grpc }
    }

    fn pid(&self) -> u32 {
        self.binary.0.id()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `POST path` with a JSON body: the status and the JSON answer.
    fn post_json(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        common::post_json(&self.url(path), body)
    }

    /// Runs `call` with a gRPC client of the server.
    fn grpc_call<F: std::future::Future<Output = ()>>(
        &self,
        call: impl FnOnce(support::Client) -> F,
    ) {
        let url = format!("http://{}", self.grpc);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                let client = support::Client::connect(url).await.expect("connect");
                call(client).await
            });
    }

    /// `VmRSS` and `VmHWM` (peak) of the server, in MiB.
    fn memory_mib(&self) -> (u64, u64) {
        common::memory_mib(self.pid())
    }
}

/// Resets the kernel's record of the process's peak resident size (`VmHWM`), so the peak
/// read afterwards is the peak of what the test did, not of the server's start.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs");
}

/// `rows` rows of 64 ones as a JSON array body (`"1,"` per number: each decodes to a 4-byte
/// FP32, twice the bytes the body spent on it).
fn ones_json(rows: usize, nested: bool) -> String {
    let row = format!("[{}]", vec!["1"; 64].join(","));
    if nested {
        let rows = vec![row.as_str(); rows].join(",");
        format!("[{rows}]")
    } else {
        let ones = vec!["1"; rows * 64].join(",");
        format!("[{ones}]")
    }
}

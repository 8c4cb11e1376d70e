//! Test support: a real server (real ONNX Runtime, real models) on ephemeral loopback
//! ports, in its own thread and runtime, shut down on drop; and scratch model repositories.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mlpserve::{Listeners, ServerConfig};

/// The committed model zoo.
pub fn zoo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// A running server. Dropping it triggers graceful shutdown and waits for it.
pub struct TestServer {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl TestServer {
    /// Serves `repository` with test defaults.
    pub fn start(repository: &Path) -> TestServer {
        TestServer::start_with(ServerConfig::for_tests(repository))
    }

    /// Serves with `config` (ports are forced to 0) and waits until ready.
    pub fn start_with(config: ServerConfig) -> TestServer {
        TestServer::spawn(config, "/v2/health/ready")
    }

    /// Like [`TestServer::start_with`], but waits only until the server is live: for
    /// servers that are expected never to become ready.
    pub fn start_with_unready(config: ServerConfig) -> TestServer {
        TestServer::spawn(config, "/v2/health/live")
    }

    /// Serves `repository` although some of its models fail to load (strict readiness
    /// off), for tests that read those models' reasons in the repository index.
    pub fn start_lenient(repository: &Path) -> TestServer {
        let mut config = ServerConfig::for_tests(repository);
        config.strict_readiness = false;
        TestServer::start_with(config)
    }

    fn spawn(mut config: ServerConfig, wait_for: &str) -> TestServer {
        config.http_port = 0;
        config.grpc_port = 0;
        // TLS servers are probed by the test's own TLS client; a guarded health probe
        // needs a key.
        let probe = match (&config.transport.tls, config.transport.auth_health) {
            (Some(_), _) => Probe::None,
            (None, true) => Probe::Key(config.transport.api_keys.expose()[0].clone()),
            (None, false) => Probe::Plain,
        };
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            // As the binary does: the runtime has the configured async threads.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(config.async_threads)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let listeners = Listeners::bind(&config).await.map_err(|e| e.to_string())?;
                let http = listeners.http.local_addr().map_err(|e| e.to_string())?;
                let grpc = listeners.grpc.local_addr().map_err(|e| e.to_string())?;
                let _ = addr_tx.send((http, grpc));
                mlpserve::run(config, listeners, async {
                    let _ = stop_rx.await;
                })
                .await
                .map_err(|e| e.to_string())
            })
        });
        let (http, grpc) = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server bound its ports");
        let mut server = TestServer {
            http,
            grpc,
            stop: Some(stop),
            thread: Some(thread),
        };
        match probe {
            Probe::None => {}
            Probe::Plain => server.wait_for(wait_for, None),
            Probe::Key(key) => server.wait_for(wait_for, Some(key)),
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// `GET path`: the status and the JSON body (`Null` when the body is not JSON).
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::blocking::Client::new()
            .get(self.url(path))
            .send()
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(serde_json::Value::Null))
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// `POST path` with a V2 binary body: the JSON `header`, then the tensors' `bytes`.
    pub fn post_binary(
        &self,
        path: &str,
        header: &str,
        bytes: &[u8],
    ) -> reqwest::blocking::Response {
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(bytes);
        reqwest::blocking::Client::new()
            .post(self.url(path))
            .header("Inference-Header-Content-Length", header.len().to_string())
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
            .expect("request")
    }

    /// The Prometheus text of `/metrics`, from a blocking test.
    pub fn metrics_blocking(&self) -> String {
        reqwest::blocking::get(self.url("/metrics"))
            .and_then(|r| r.text())
            .expect("metrics")
    }

    /// The repository index (`POST /v2/repository/index`), after checking it answered 200.
    pub fn repository_index(&self) -> serde_json::Value {
        let (status, index) = self.post_json("/v2/repository/index", &serde_json::json!({}));
        assert_eq!(status, 200, "{index}");
        index
    }

    /// Polls /metrics until `series` satisfies `done`; see [`wait_metric`].
    pub async fn wait_metric(&self, series: &str, done: impl Fn(f64) -> bool) -> f64 {
        wait_metric(&self.url("/metrics"), series, done).await
    }

    /// `POST path` with a JSON body: the status and the JSON answer.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        post_json(&self.url(path), body)
    }

    /// Polls `path` (readiness or liveness) in 10 ms steps until it answers 200, for at
    /// most 60 s. Runs on its own thread so it also works inside an async test.
    fn wait_for(&mut self, path: &str, key: Option<String>) {
        let url = self.url(path);
        let ready = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let mut request = client.get(&url);
                if let Some(key) = &key {
                    request = request.bearer_auth(key);
                }
                if request.send().is_ok_and(|r| r.status().is_success()) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        })
        .join()
        .unwrap_or(false);
        if !ready {
            let result = self
                .thread
                .take()
                .filter(|t| t.is_finished())
                .map(|t| t.join());
            panic!("server not ready within 60 s (exit: {result:?})");
        }
    }

    /// Sends the shutdown signal without waiting for the server to finish.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the server and returns what `run` returned.
    pub fn stop(mut self) -> Result<(), String> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err("server thread panicked".into())),
            None => Ok(()),
        }
    }
}

/// How `start_with` waits for readiness.
enum Probe {
    None,
    Plain,
    Key(String),
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A scratch model repository built from zoo models with custom `config.toml`s.
pub struct ScratchRepo {
    pub path: PathBuf,
}

impl ScratchRepo {
    pub fn new(tag: &str) -> ScratchRepo {
        let path = std::env::temp_dir().join(format!(
            "mlpserve-test-{tag}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        let path = PathBuf::from(
            path.to_string_lossy()
                .replace([' ', '{', '}', ':', ','], ""),
        );
        std::fs::create_dir_all(&path).expect("temp dir");
        ScratchRepo { path }
    }

    /// A repository holding only zoo model mlp_digits (version 1, default config).
    pub fn digits(tag: &str) -> ScratchRepo {
        let repo = ScratchRepo::new(tag);
        repo.add("mlp_digits", "mlp_digits", 1, "");
        repo
    }

    /// Adds zoo model `from` as `name` version `version` with `config` as its config.toml.
    pub fn add(&self, from: &str, name: &str, version: u32, config: &str) -> &ScratchRepo {
        self.add_file(
            &zoo().join(from).join("1").join("model.onnx"),
            name,
            version,
            config,
        )
    }

    /// Adds the ONNX file `model` as `name` version `version` with `config`.
    pub fn add_file(&self, model: &Path, name: &str, version: u32, config: &str) -> &ScratchRepo {
        let dir = self.path.join(name).join(version.to_string());
        std::fs::create_dir_all(&dir).expect("model dir");
        std::fs::copy(model, dir.join("model.onnx")).expect("copy model");
        std::fs::write(self.path.join(name).join("config.toml"), config).expect("write config");
        self
    }
}

impl Drop for ScratchRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A model's reference samples (`models/<name>/samples.json`).
pub fn samples(model: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(zoo().join(model).join("samples.json")).expect("samples.json");
    serde_json::from_str(&text).expect("samples.json is JSON")
}

/// Asserts `got` matches `want` element-wise within rtol/atol (numbers; booleans and
/// strings exactly).
pub fn assert_close(
    got: &[serde_json::Value],
    want: &[serde_json::Value],
    rtol: f64,
    atol: f64,
    what: &str,
) {
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if let (Some(g), Some(w)) = (g.as_bool(), w.as_bool()) {
            assert_eq!(g, w, "{what}[{i}]");
            continue;
        }
        if let (Some(g), Some(w)) = (g.as_str(), w.as_str()) {
            assert_eq!(g, w, "{what}[{i}]");
            continue;
        }
        let (g, w) = (g.as_f64().expect("number"), w.as_f64().expect("number"));
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// Flattens a nested JSON array.
pub fn flatten(v: &serde_json::Value) -> Vec<serde_json::Value> {
    match v {
        serde_json::Value::Array(items) => items.iter().flat_map(flatten).collect(),
        other => vec![other.clone()],
    }
}

/// A numeric response header (the server's `x-batch-rows`, `x-queue-time-us`, ...); 0 when
/// absent or not a number.
pub fn header_usize(h: &reqwest::header::HeaderMap, name: &str) -> usize {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The values of output `name` of a 200 V2 JSON answer, after checking it is the first
/// output and its shape is [n, 1] (one score per row).
pub fn scores_of(
    answer: &(u16, serde_json::Value),
    name: &str,
    n: usize,
) -> Vec<serde_json::Value> {
    let (status, body) = answer;
    assert_eq!(*status, 200, "{body}");
    let out = &body["outputs"][0];
    assert_eq!(out["name"], name, "{body}");
    assert_eq!(out["shape"], serde_json::json!([n, 1]), "{body}");
    flatten(&out["data"])
}

/// `POST url` with a JSON body from concurrent requests: the `x-batch-rows` the answer
/// reports (how many rows the batch it ran in held), its status and its JSON body.
pub async fn post_batched(
    client: reqwest::Client,
    url: String,
    body: serde_json::Value,
) -> (usize, (u16, serde_json::Value)) {
    let response = client.post(url).json(&body).send().await.expect("request");
    let rows = header_usize(response.headers(), "x-batch-rows");
    let status = response.status().as_u16();
    let answer = response.json::<serde_json::Value>().await.expect("json");
    (rows, (status, answer))
}

/// `POST url` with a JSON body: the status and the JSON answer (`Null` when the answer is
/// not JSON).
pub fn post_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::blocking::Client::new()
        .post(url)
        .json(body)
        .send()
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(serde_json::Value::Null))
}

/// Asserts an error answer: `status`, and a JSON `error` message that mentions every needle.
pub fn expect_error(status_body: (u16, serde_json::Value), status: u16, needles: &[&str]) {
    let (got, body) = status_body;
    assert_eq!(got, status, "body: {body}");
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"));
    for needle in needles {
        assert!(
            message.contains(needle),
            "error {message:?} should mention {needle:?}"
        );
    }
}

/// Runs `mlpserve <subcommand> <args>` from the crate root with `env` added to its
/// environment, to its end; (exit code, stdout, stderr).
pub fn run_subcommand(
    subcommand: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mlpserve"))
        .arg(subcommand)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("binary runs");
    (
        out.status.code().expect("exited"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `mlpserve serve` on `repo`: loopback, ephemeral ports, JSON logs on a piped stderr.
pub fn serve_command(repo: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mlpserve"));
    command
        .args(["serve", "--host", "127.0.0.1", "--http-port", "0"])
        .args(["--grpc-port", "0", "--log-format", "json"])
        .arg("--model-repository")
        .arg(repo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::piped());
    command
}

/// Runs the binary on `repo` with `args`; returns its stderr lines up to "HTTP listening"
/// (or to its exit) and the child (None when it exited, with its status).
pub fn run_binary(repo: &Path, args: &[&str]) -> (Vec<String>, Result<Child, ExitStatus>) {
    let mut child = serve_command(repo)
        .args(args)
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let listening = line.contains("HTTP listening");
        lines.push(line);
        if listening || Instant::now() > deadline {
            return (lines, Ok(child));
        }
    }
    (lines, Err(child.wait().expect("exit status")))
}

/// The value of one series (`name{labels}`, exactly as the text writes it) in a Prometheus
/// text; `None` when the series is absent.
pub fn series_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// How many times version 1 of `model` ran (`mlpserve_executions_total`) in a Prometheus
/// text; `None` when it never did.
pub fn executions(text: &str, model: &str) -> Option<f64> {
    series_value(
        text,
        &format!("mlpserve_executions_total{{model=\"{model}\",version=\"1\"}}"),
    )
}

/// Polls `url` (a /metrics endpoint) in 10 ms steps until `series` is present and satisfies
/// `done`, for at most 30 s; returns the value. Tests wait on the event this way instead
/// of sleeping for a time that is usually long enough.
pub async fn wait_metric(url: &str, series: &str, done: impl Fn(f64) -> bool) -> f64 {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    loop {
        if let Ok(r) = client.get(url).send().await {
            let text = r.text().await.unwrap_or_default();
            last = series_value(&text, series);
            if let Some(v) = last.filter(|&v| done(v)) {
                return v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached the awaited value (last: {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A server binary started as its own process, killed and reaped on drop.
pub struct Binary(pub Child);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads one HTTP/1.1 response (status line, headers, body) from a raw connection, until
/// the server closes it or `Content-Length` bytes of body have come (30 s at most): the
/// status and the whole text.
pub fn read_raw_response(s: &mut TcpStream) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The server binary on `repo` with `args` as its own process, once it is ready: the
/// process and its HTTP address (read from the JSON log line that announces it).
pub fn spawn_http(repo: &Path, args: &[&str]) -> (Binary, SocketAddr) {
    let (binary, http, _) = spawn_server(repo, args);
    (binary, http)
}

/// Like [`spawn_http`], with the gRPC address too (logged after the HTTP one).
pub fn spawn_server(repo: &Path, args: &[&str]) -> (Binary, SocketAddr, SocketAddr) {
    let mut child = serve_command(repo)
        .args(args)
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = |line: &str| -> Option<SocketAddr> {
        let v: serde_json::Value = serde_json::from_str(line).expect("json log");
        v["addr"].as_str()?.parse().ok()
    };
    let (mut http, mut grpc) = (None, None);
    for line in lines.by_ref().map_while(Result::ok) {
        if line.contains("HTTP listening") {
            http = addr(&line);
        }
        if line.contains("gRPC listening") {
            grpc = addr(&line);
            break;
        }
    }
    // Keep reading so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    let binary = Binary(child);
    let http: SocketAddr = http.expect("HTTP address logged");
    let grpc: SocketAddr = grpc.expect("gRPC address logged");
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client
        .get(format!("http://{http}/v2/health/ready"))
        .send()
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "server not ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    (binary, http, grpc)
}

/// `VmRSS` and `VmHWM` (peak resident size) of a process, in MiB, read from outside.
pub fn memory_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .expect("field")
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A V2 JSON body of one-dimensional inputs: (name, datatype, values), each of shape [N]
/// (a scalar value is one element).
pub fn v2_columns(inputs: &[(&str, &str, serde_json::Value)]) -> serde_json::Value {
    let inputs: Vec<serde_json::Value> = inputs
        .iter()
        .map(|(name, datatype, data)| {
            let n = data.as_array().map_or(1, Vec::len);
            serde_json::json!({"name": name, "datatype": datatype, "shape": [n], "data": data})
        })
        .collect();
    serde_json::json!({ "inputs": inputs })
}

/// The output `name` of a V2 JSON answer.
pub fn v2_output<'a>(body: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    body["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name} in {body}"))
}

/// Asserts the repository `index` lists model `name` UNAVAILABLE with a reason holding
/// every one of `needles`.
pub fn assert_unavailable(index: &serde_json::Value, name: &str, needles: &[&str]) {
    let entry = index
        .as_array()
        .expect("index")
        .iter()
        .find(|e| e["name"] == name && e["state"] == "UNAVAILABLE")
        .unwrap_or_else(|| panic!("{name} is not UNAVAILABLE: {index}"));
    let reason = entry["reason"].as_str().unwrap_or_default();
    for needle in needles {
        assert!(
            reason.contains(needle),
            "{name}: {reason:?} should contain {needle:?}"
        );
    }
}

/// Asserts the repository `index` lists model `name` READY.
pub fn assert_ready(index: &serde_json::Value, name: &str) {
    let entry = index
        .as_array()
        .expect("index")
        .iter()
        .find(|e| e["name"] == name);
    assert_eq!(
        entry.map(|e| &e["state"]),
        Some(&serde_json::json!("READY")),
        "{name}: {index}"
    );
}

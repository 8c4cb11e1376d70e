"""Payload logging against a real CloudEvents sink (the `cloudevents` SDK parses every event
the server POSTs) and into rotated JSON Lines files: event types, ids equal to request ids,
payloads equal to what was sent and answered, credentials never logged, sampling (server
ratio and per-model override) within tolerance, a dead sink that loses no inference and
counts its drops, and file rotation within its size and count limits.
"""

import concurrent.futures
import http.server
import json
import shutil
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cloudevents.http import from_http

from conftest import REPO, Server, binary_path, free_port, samples

API_KEY = "sk-very-secret-key-123"


class Sink:
    """An HTTP endpoint that parses each request as a CloudEvent and keeps it."""

    def __init__(self, ssl_context=None):
        self.events = []
        self.raw_headers = []
        self.lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items()}
                event = from_http(headers, body)
                with sink.lock:
                    sink.events.append(event)
                    sink.raw_headers.append((headers, body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if ssl_context:
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout_s: float = 20.0) -> list:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.01)
        raise AssertionError(f"{len(self.events)} events, expected {count}")


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """mlp_digits at the server's ratio, and copies that override it with 0 and 1."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO / "models" / "mlp_digits", root / "mlp_digits")
    for name, ratio in (("mlp_never", 0.0), ("mlp_always", 1.0)):
        shutil.copytree(REPO / "models" / "mlp_digits", root / name)
        (root / name / "config.toml").write_text(f"payload_log_sample = {ratio}\n")
    return root


def body(request_id: str = "") -> bytes:
    sample = samples("mlp_digits")[0]
    b = {"inputs": [{"name": n, **t} for n, t in sample["inputs"].items()]}
    if request_id:
        b["id"] = request_id
    return json.dumps(b).encode()


def post(server: Server, path: str, data: bytes, headers: dict) -> tuple:
    req = urllib.request.Request(f"http://{server.http}{path}", data=data, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def metric(server: Server, name: str) -> float:
    req = urllib.request.Request(f"http://{server.http}/metrics",
                                 headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def test_cloudevents_carry_each_request_and_answer_with_its_id(repository):
    sink = Sink()
    s = Server(binary_path(), repository, extra=[
        "--payload-log", sink.url, "--payload-log-headers", "x-tenant,user-agent",
        "--api-key", API_KEY,
    ])
    try:
        sent = {}
        for i in range(5):
            rid = f"req-{i}"
            status, answer = post(s, "/v2/models/mlp_always/infer", body(),
                                  {"x-request-id": rid, "x-tenant": "shop-7"})
            assert status == 200
            sent[rid] = answer
        # A refused request is logged too, with its error answer.
        status, answer = post(s, "/v2/models/mlp_always/infer", b'{"inputs": 3}',
                              {"x-request-id": "req-bad"})
        assert status == 400
        sent["req-bad"] = answer
        # /predict names its model in the body.
        p_body = json.dumps({"model": "mlp_always", "inputs": {
            "pixels": [samples("mlp_digits")[0]["inputs"]["pixels"]["data"]]}}).encode()
        status, answer = post(s, "/predict", p_body, {"x-request-id": "req-predict"})
        assert status == 200, answer
        sent["req-predict"] = answer

        events = sink.wait_for(2 * len(sent))
        assert len(events) == 2 * len(sent)
        by_id = {}
        for e in events:
            by_id.setdefault(e["id"], {})[e["type"]] = e
        assert set(by_id) == set(sent), "ce-id is the request id"
        for rid, pair in by_id.items():
            req = pair["org.kubeflow.serving.inference.request"]
            resp = pair["org.kubeflow.serving.inference.response"]
            assert req["specversion"] == "1.0"
            assert req["modelname"] == resp["modelname"] == "mlp_always"
            assert req["inferenceservicename"] == "mlp_always"
            assert resp["modelname"] and req["source"] == "/mlpserve/models/mlp_always"
            if rid == "req-bad":
                assert resp["statuscode"] == "400"
                assert req.data == b'{"inputs": 3}' or req.data == {"inputs": 3}
            else:
                assert req["modelversion"] == "1" and resp["statuscode"] == "200"
            got = resp.data if isinstance(resp.data, (dict, list)) else json.loads(resp.data)
            assert got == json.loads(sent[rid]), rid
        for rid in ("req-0", "req-4"):
            req = by_id[rid]["org.kubeflow.serving.inference.request"]
            data = req.data if isinstance(req.data, dict) else json.loads(req.data)
            assert data == json.loads(body()), "the inputs as sent"
        with sink.lock:
            raw = list(sink.raw_headers)
        assert all(h.get("x-tenant") == "shop-7" for h, _ in raw
                   if h.get("ce-id", "").startswith("req-") and h["ce-id"] not in
                   ("req-bad", "req-predict"))
        everything = repr(raw)
        assert API_KEY not in everything, "credentials never reach the sink"
        assert "authorization" not in everything.lower()
    finally:
        s.stop()
        sink.server.shutdown()


def test_sampling_follows_the_server_ratio_and_each_models_override(repository):
    sink = Sink()
    s = Server(binary_path(), repository, extra=[
        "--payload-log", sink.url, "--payload-log-sample", "0.3",
        "--payload-log-mode", "request", "--api-key", API_KEY,
    ])
    try:
        n = 300
        for i in range(n):
            post(s, "/v2/models/mlp_digits/infer", body(), {"x-request-id": f"d-{i}"})
            if i % 10 == 0:
                post(s, "/v2/models/mlp_never/infer", body(), {"x-request-id": f"n-{i}"})
                post(s, "/v2/models/mlp_always/infer", body(), {"x-request-id": f"a-{i}"})
        assert s.stop() == 0, "shutdown flushes the buffer"
        with sink.lock:
            events = list(sink.events)
        ids = [e["id"] for e in events]
        assert all(e["type"] == "org.kubeflow.serving.inference.request" for e in events)
        assert not [i for i in ids if i.startswith("n-")], "payload_log_sample = 0"
        assert len([i for i in ids if i.startswith("a-")]) == n // 10, "payload_log_sample = 1"
        kept = len([i for i in ids if i.startswith("d-")])
        # Binomial(300, 0.3): mean 90, sd 7.9; +-4.5 sd.
        assert 55 <= kept <= 125, kept
    finally:
        if s.proc.poll() is None:
            s.stop()
        sink.server.shutdown()


def test_a_dead_sink_loses_no_inference_and_counts_its_drops(repository):
    dead = f"http://127.0.0.1:{free_port()}/"
    s = Server(binary_path(), repository, extra=["--payload-log", dead, "--api-key", API_KEY])
    try:
        want = samples("mlp_digits")[0]["outputs"]["logits"]["data"]
        for i in range(20):
            status, answer = post(s, "/v2/models/mlp_digits/infer", body(), {})
            assert status == 200
            got = json.loads(answer)["outputs"][0]["data"]
            assert got == pytest.approx(want, rel=1e-5, abs=1e-5)
        deadline = time.monotonic() + 30
        while metric(s, "mlpserve_payload_log_dropped_total") < 20:
            assert time.monotonic() < deadline, metric(s, "mlpserve_payload_log_dropped_total")
            time.sleep(0.01)
        assert "payload log records dropped" in s.logs()
    finally:
        s.stop()


def test_files_rotate_within_their_size_and_count_limits(repository, tmp_path):
    logs = tmp_path / "payloads"
    s = Server(binary_path(), repository, extra=[
        "--payload-log", f"file:{logs}", "--payload-log-max-file-bytes", "8192",
        "--payload-log-max-files", "2", "--api-key", API_KEY,
    ])
    try:
        n = 60
        for i in range(n):
            status, _ = post(s, "/v2/models/mlp_digits/infer", body(), {"x-request-id": f"f-{i:03}"})
            assert status == 200
    finally:
        assert s.stop() == 0
    files = sorted(logs.iterdir())
    assert 1 < len(files) <= 3, files
    assert (logs / "payload.jsonl") in files
    ids = []
    for f in sorted(files, key=lambda p: (p.name == "payload.jsonl", p.name)):
        assert f.stat().st_size <= 8192, f
        for line in f.read_text().splitlines():
            record = json.loads(line)
            assert record["model"] == "mlp_digits" and record["version"] == "1"
            assert record["status"] == 200 and record["latency_ms"] > 0
            assert record["request"] == json.loads(body())
            assert record["response"]["outputs"][0]["name"] == "logits"
            assert record["time"].endswith("Z")
            ids.append(record["id"])
    # The newest records are kept, in order; the oldest files were deleted.
    assert ids == [f"f-{i:03}" for i in range(n - len(ids), n)]
    assert len(ids) < n


def test_grpc_requests_are_logged_as_their_protobuf_messages(repository):
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc import service_pb2

    sink = Sink()
    s = Server(binary_path(), repository, extra=[
        "--payload-log", sink.url, "--payload-log-headers", "x-tenant"])
    try:
        pixels = np.array(samples("mlp_digits")[0]["inputs"]["pixels"]["data"],
                          dtype=np.float32).reshape(1, 64)
        inp = grpcclient.InferInput("pixels", [1, 64], "FP32")
        inp.set_data_from_numpy(pixels)
        with grpcclient.InferenceServerClient(url=s.grpc) as client:
            result = client.infer("mlp_always", [inp], request_id="g-1",
                                  headers={"x-tenant": "shop-9"})
        events = {e["type"]: e for e in sink.wait_for(2)}
        req = events["org.kubeflow.serving.inference.request"]
        resp = events["org.kubeflow.serving.inference.response"]
        assert req["id"] == resp["id"] == "g-1"
        assert req["modelname"] == "mlp_always" and req["modelversion"] == "1"
        sent = service_pb2.ModelInferRequest.FromString(req.data)
        assert sent.model_name == "mlp_always" and sent.id == "g-1"
        assert np.frombuffer(sent.raw_input_contents[0], dtype=np.float32).tolist() == \
            pixels.ravel().tolist()
        answered = service_pb2.ModelInferResponse.FromString(resp.data)
        got = np.frombuffer(answered.raw_output_contents[0], dtype=np.float32)
        assert got.tolist() == result.as_numpy("logits").ravel().tolist()
        with sink.lock:
            assert all(h.get("x-tenant") == "shop-9" for h, _ in sink.raw_headers)
    finally:
        s.stop()
        sink.server.shutdown()


def certificates(directory: Path) -> tuple:
    """A CA and a server certificate for 127.0.0.1 it signed (with its key), made with the
    openssl command line; returns (ca, cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "sink.pem", directory / "sink.key", directory / "sink.csr"
    ext = directory / "sink.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for args in (
        ["req", "-x509", *ec, "-days", "2", "-subj", "/CN=test CA",
         "-keyout", ca_key, "-out", ca],
        ["req", "-new", *ec, "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "2", "-extfile", ext, "-out", cert],
    ):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    return ca, cert, key


def test_an_https_sink_is_verified_by_the_ca_it_is_given(repository, tmp_path):
    ca, cert, key = certificates(tmp_path / "sink")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    sink = Sink(context)
    url = sink.url

    # Trusted through SSL_CERT_FILE: every event arrives over TLS.
    s = Server(binary_path(), repository, extra=["--payload-log", url, "--api-key", API_KEY],
               env={"SSL_CERT_FILE": str(ca)})
    try:
        for i in range(3):
            assert post(s, "/v2/models/mlp_always/infer", body(), {"x-request-id": f"tls-{i}"})[0] == 200
        events = sink.wait_for(6)
        assert {e["id"] for e in events} == {f"tls-{i}" for i in range(3)}
    finally:
        s.stop()

    # A CA bundle that does not hold the sink's CA: the handshake fails, every answer is
    # still given, and the lost records are counted.
    other, _, _ = certificates(tmp_path / "other")
    s = Server(binary_path(), repository, extra=["--payload-log", url, "--api-key", API_KEY],
               env={"SSL_CERT_FILE": str(other)})
    try:
        for i in range(3):
            assert post(s, "/v2/models/mlp_always/infer", body(), {"x-request-id": f"bad-{i}"})[0] == 200
        deadline = time.monotonic() + 30
        while metric(s, "mlpserve_payload_log_dropped_total") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(s, "mlpserve_payload_log_dropped_total") == 3
        assert len(sink.events) == 6
    finally:
        s.stop()


def test_an_https_sink_without_any_ca_certificate_stops_the_start(repository, tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    with pytest.raises(RuntimeError, match="no CA certificate to verify the sink with"):
        Server(binary_path(), repository, extra=["--payload-log", "https://127.0.0.1:9/"],
               env={"SSL_CERT_FILE": str(empty), "SSL_CERT_DIR": str(tmp_path / "none")})


def test_a_full_queue_is_logged_with_the_status_the_client_got(tmp_path):
    """With `--overload-status 503` the records of refused requests say 503, as the
    clients were answered, never the 429 the queue reports inside."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "models" / "mlp_digits", repo / "overload_probe")
    (repo / "overload_probe" / "config.toml").write_text(
        "max_queue_size = 1\nmax_queue_delay_us = 200000\npreferred_batch_sizes = [64]\n")
    logs = tmp_path / "payloads"
    s = Server(binary_path(), repo, extra=[
        "--payload-log", f"file:{logs}", "--overload-status", "503", "--api-key", API_KEY])
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answered = list(pool.map(
                lambda i: post(s, "/v2/models/overload_probe/infer", body(),
                               {"x-request-id": f"o-{i}"})[0], range(8)))
    finally:
        assert s.stop() == 0
    assert 503 in answered and 429 not in answered, answered
    records = [json.loads(line) for line in (logs / "payload.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r["status"] for r in records}
    assert by_id == {f"o-{i}": status for i, status in enumerate(answered)}

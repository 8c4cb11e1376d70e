"""OpenTelemetry tracing against a real OTLP/gRPC receiver (the collector's own protobuf
service from `opentelemetry-proto`, served with `grpcio`): the span tree of a request, its
attributes, the caller's trace continued from `traceparent` (HTTP header and gRPC metadata),
one ORT-run span linked from two requests it batched, parent-based sampling, and a dead
collector that changes no answer and counts its dropped spans.
"""

import json
import os
import secrets
import shutil
import threading
import time
import urllib.request
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from conftest import REPO, Server, binary_path, free_port, samples

SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SPAN_KIND_SERVER


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace endpoint that keeps every span it is sent."""

    def __init__(self):
        self.lock = threading.Lock()
        self.spans = []  # (resource attributes, span)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def Export(self, request, context):
        with self.lock:
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    self.spans.extend((resource, s) for s in ss.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: bytes) -> list:
        with self.lock:
            return [s for _, s in self.spans if s.trace_id == trace_id]

    def wait_for(self, condition, what: str, timeout_s: float = 15.0):
        """Polls (10 ms steps) until `condition()` is truthy; returns its value."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = condition()
            if got:
                return got
            time.sleep(0.01)
        with self.lock:
            names = [(s.name, s.trace_id.hex()) for _, s in self.spans]
        raise AssertionError(f"no {what} after {timeout_s} s; spans: {names}")


def attributes(kvs) -> dict:
    out = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None
    return out


def traceparent(sampled: bool = True):
    trace_id, parent_id = secrets.token_bytes(16), secrets.token_bytes(8)
    flags = "01" if sampled else "00"
    return trace_id, parent_id, f"00-{trace_id.hex()}-{parent_id.hex()}-{flags}"


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """mlp_digits as it is, and a copy that waits 300 ms for company so that two
    concurrent requests share one batch."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO / "models" / "mlp_digits", root / "mlp_digits")
    shutil.copytree(REPO / "models" / "mlp_digits", root / "mlp_batched")
    (root / "mlp_batched" / "config.toml").write_text(
        "max_queue_delay_us = 300000\npreferred_batch_sizes = [2]\n"
    )
    return root


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.server.stop(0)


@pytest.fixture(scope="module")
def traced(repository, receiver):
    """Ratio 0: only requests whose caller sampled the trace are recorded."""
    s = Server(binary_path(), repository, extra=[
        "--otlp-endpoint", f"http://127.0.0.1:{receiver.port}",
        "--otlp-service-name", "ranker",
        "--trace-sample-ratio", "0",
    ])
    yield s
    s.stop()


def digits_body(sample: dict, request_id: str = "") -> bytes:
    inputs = [{"name": n, **t} for n, t in sample["inputs"].items()]
    body = {"inputs": inputs}
    if request_id:
        body["id"] = request_id
    return json.dumps(body).encode()


def post(server: Server, model: str, body: bytes, headers: dict) -> dict:
    req = urllib.request.Request(
        f"http://{server.http}/v2/models/{model}/infer", data=body,
        headers={"Content-Type": "application/json", **headers},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def by_name(spans: list) -> dict:
    out = {}
    for s in spans:
        out.setdefault(s.name, []).append(s)
    return out


def test_an_http_request_continues_the_callers_trace_with_its_span_tree(traced, receiver):
    trace_id, parent_id, header = traceparent()
    sample = samples("mlp_digits")[0]
    answer = post(traced, "mlp_digits", digits_body(sample),
                  {"traceparent": header, "tracestate": "vendor=1", "x-request-id": "req-trace-1"})
    assert answer["outputs"][0]["name"] == "logits"

    spans = receiver.wait_for(
        lambda: (lambda s: s if {"infer", "decode", "queue", "ort.run", "encode"}
                 <= set(by_name(s)) else None)(receiver.trace(trace_id)),
        "complete span tree")
    named = by_name(spans)
    (infer,) = named["infer"]
    assert infer.parent_span_id == parent_id, "the caller's span is the parent"
    assert infer.kind == SERVER_KIND
    a = attributes(infer.attributes)
    assert a["mlpserve.transport"] == "http"
    assert a["mlpserve.model"] == "mlp_digits"
    assert a["mlpserve.version"] == "1"
    assert a["mlpserve.rows"] == 1
    assert a["mlpserve.outcome"] == "ok"
    assert a["mlpserve.request_id"] == "req-trace-1"
    assert a["http.response.status_code"] == 200
    assert infer.trace_state == "vendor=1"
    for child in ("decode", "queue", "encode", "ort.run"):
        (span,) = named[child]
        assert span.parent_span_id == infer.span_id, child
        assert infer.start_time_unix_nano <= span.start_time_unix_nano, child
        assert span.end_time_unix_nano <= infer.end_time_unix_nano, child
    (run,) = named["ort.run"]
    r = attributes(run.attributes)
    assert r["mlpserve.batch_rows"] == 1
    assert r["mlpserve.instance"] == 0
    assert [link.span_id for link in run.links] == [infer.span_id]
    with receiver.lock:
        resource = next(res for res, s in receiver.spans if s.trace_id == trace_id)
    assert resource["service.name"] == "ranker"


def test_a_grpc_request_continues_the_trace_from_its_metadata(traced, receiver):
    trace_id, parent_id, header = traceparent()
    sample = samples("mlp_digits")[0]
    pixels = np.array(sample["inputs"]["pixels"]["data"], dtype=np.float32).reshape(1, 64)
    inp = grpcclient.InferInput("pixels", [1, 64], "FP32")
    inp.set_data_from_numpy(pixels)
    with grpcclient.InferenceServerClient(url=traced.grpc) as client:
        client.infer("mlp_digits", [inp], request_id="grpc-7", headers={"traceparent": header})
    spans = receiver.wait_for(
        lambda: (lambda s: s if {"infer", "ort.run"} <= set(by_name(s)) else None)(
            receiver.trace(trace_id)),
        "gRPC spans")
    (infer,) = by_name(spans)["infer"]
    assert infer.parent_span_id == parent_id
    a = attributes(infer.attributes)
    assert a["mlpserve.transport"] == "grpc"
    assert a["mlpserve.request_id"] == "grpc-7"
    assert a["mlpserve.model"] == "mlp_digits"


def test_one_batch_span_is_linked_from_both_requests_it_served(traced, receiver):
    sample = samples("mlp_digits")[0]
    calls = [traceparent() for _ in range(2)]
    with futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(
            lambda c: post(traced, "mlp_batched", digits_body(sample), {"traceparent": c[2]}),
            calls))
    assert all(a["outputs"][0]["shape"] == [1, 10] for a in answers)

    def infer_span(trace_id):
        return next((s for s in receiver.trace(trace_id) if s.name == "infer"), None)

    infers = receiver.wait_for(
        lambda: (lambda s: s if all(s) else None)([infer_span(c[0]) for c in calls]),
        "both request spans")
    runs = receiver.wait_for(
        lambda: [s for c in calls for s in receiver.trace(c[0]) if s.name == "ort.run"],
        "the batch span")
    assert len(runs) == 1, "one span for the one run"
    (run,) = runs
    assert {l.span_id for l in run.links} == {s.span_id for s in infers}
    assert {l.trace_id for l in run.links} == {c[0] for c in calls}
    r = attributes(run.attributes)
    assert r["mlpserve.batch_rows"] == 2
    assert r["mlpserve.batch_requests"] == 2
    # Each request waited in the queue, in its own trace.
    for c, infer in zip(calls, infers):
        queue = [s for s in receiver.trace(c[0]) if s.name == "queue"]
        assert len(queue) == 1 and queue[0].parent_span_id == infer.span_id


def test_unsampled_and_new_traces_follow_the_sampler(traced, receiver):
    sample = samples("mlp_digits")[0]
    trace_id, _, header = traceparent(sampled=False)
    post(traced, "mlp_digits", digits_body(sample), {"traceparent": header})
    post(traced, "mlp_digits", digits_body(sample), {"x-request-id": "untraced-1"})
    # A sampled request after them: once its spans are in, theirs would be too.
    marker, _, marker_header = traceparent()
    post(traced, "mlp_digits", digits_body(sample), {"traceparent": marker_header})
    receiver.wait_for(lambda: receiver.trace(marker), "the marker request's spans")
    assert receiver.trace(trace_id) == [], "the caller did not sample this trace"
    with receiver.lock:
        ids = [attributes(s.attributes).get("mlpserve.request_id") for _, s in receiver.spans]
    assert "untraced-1" not in ids, "ratio 0 records no new trace"


def metric(server: Server, name: str) -> float:
    with urllib.request.urlopen(f"http://{server.http}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def test_a_dead_collector_changes_no_answer_and_counts_dropped_spans(repository):
    dead = free_port()  # nothing listens here
    s = Server(binary_path(), repository, extra=["--otlp-endpoint", f"http://127.0.0.1:{dead}"])
    try:
        for sample in samples("mlp_digits"):
            answer = post(s, "mlp_digits", digits_body(sample), {})
            got = np.array(answer["outputs"][0]["data"], dtype=np.float32)
            want = np.array(sample["outputs"]["logits"]["data"], dtype=np.float32)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        deadline = time.monotonic() + 30
        while metric(s, "mlpserve_trace_spans_dropped_total") == 0:
            assert time.monotonic() < deadline, "dropped spans never counted"
            time.sleep(0.01)
        assert s.stop() == 0
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def test_otlp_over_http_protobuf_posts_to_v1_traces(repository):
    """`--otlp-protocol http/protobuf`: the same spans, POSTed as protobuf to /v1/traces of
    a collector URL given without a path."""
    import http.server

    got = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            got.append((self.path, self.headers["Content-Type"], request))
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    s = Server(binary_path(), repository, extra=[
        "--otlp-protocol", "http/protobuf",
        "--otlp-endpoint", f"http://127.0.0.1:{collector.server_address[1]}",
    ])
    try:
        trace_id, parent_id, header = traceparent()
        post(s, "mlp_digits", digits_body(samples("mlp_digits")[0]), {"traceparent": header})
        # Shutdown flushes what is queued.
        assert s.stop() == 0
        spans = [sp for _, _, r in got for rs in r.resource_spans for ss in rs.scope_spans
                 for sp in ss.spans if sp.trace_id == trace_id]
        assert {"infer", "ort.run"} <= {sp.name for sp in spans}, got
        assert {(p, t) for p, t, _ in got} == {("/v1/traces", "application/x-protobuf")}
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
        collector.shutdown()

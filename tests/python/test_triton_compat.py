"""Triton's clients used as a Triton user would: tritonclient.http.aio (aiohttp asks for
gzip on every call and reads non-inference answers as plain text), gRPC-asyncio,
typed-contents gRPC requests (answered in raw_output_contents, as Triton does), raw binary
HTTP bodies, load overrides in protobuf's JSON form, and BYTES (string) tensors with
every client (np.object_ arrays in, strings back).
"""

import asyncio
import json
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import grpc as grpcio
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import REPO, Server, binary_path

PIXELS = (np.arange(64, dtype=np.float32) / 64).reshape(1, 64)


def expected_logits() -> np.ndarray:
    c = httpclient.InferenceServerClient(url=pytest.server.http)
    i = httpclient.InferInput("pixels", [1, 64], "FP32")
    i.set_data_from_numpy(PIXELS)
    return c.infer("mlp_digits", [i]).as_numpy("logits")


def scratch_repository(models: dict) -> Path:
    """A repository with `models` ({name: zoo model}) copied from models/."""
    root = Path(tempfile.mkdtemp(prefix="mlpserve-triton-"))
    for name, zoo in models.items():
        (root / name / "1").mkdir(parents=True)
        shutil.copy(REPO / "models" / zoo / "1" / "model.onnx", root / name / "1" / "model.onnx")
    return root


@pytest.fixture(scope="module", autouse=True)
def own_server():
    # Its own server, with the BYTES models besides two numeric ones.
    root = scratch_repository({"mlp_digits": "mlp_digits", "finalmlp_ctr": "finalmlp_ctr",
                               "string_echo": "string_echo", "churn_pipeline": "churn_pipeline"})
    pytest.server = Server(binary_path(), repository=root)
    yield
    pytest.server.stop()
    shutil.rmtree(root)


def test_http_aio_reads_every_non_inference_answer_and_compressed_inference():
    async def run():
        c = httpaio.InferenceServerClient(url=pytest.server.http)
        try:
            # Each of these failed with UnicodeDecodeError when answers were gzipped.
            assert (await c.get_server_metadata())["name"] == "mlpserve"
            assert (await c.get_model_metadata("mlp_digits"))["name"] == "mlp_digits"
            assert (await c.get_model_config("mlp_digits"))["name"] == "mlp_digits"
            stats = await c.get_inference_statistics("mlp_digits")
            assert stats["model_stats"][0]["name"] == "mlp_digits"
            assert await c.is_server_ready()
            with pytest.raises(InferenceServerException) as e:
                await c.get_model_metadata("no_such_model")
            assert "no_such_model" in str(e.value)
            i = httpaio.InferInput("pixels", [1, 3], "FP32")
            i.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
            with pytest.raises(InferenceServerException) as e:
                await c.infer("mlp_digits", [i])
            assert "pixels" in str(e.value)
            i = httpaio.InferInput("pixels", [1, 64], "FP32")
            i.set_data_from_numpy(PIXELS)
            for algorithm in [None, "gzip", "deflate"]:
                r = await c.infer("mlp_digits", [i], response_compression_algorithm=algorithm)
                np.testing.assert_allclose(r.as_numpy("logits"), expected_logits(), rtol=1e-6)
        finally:
            await c.close()

    asyncio.run(run())


def test_grpc_aio_infer_and_metadata():
    async def run():
        c = grpcaio.InferenceServerClient(url=pytest.server.grpc)
        try:
            assert (await c.get_server_metadata()).name == "mlpserve"
            i = grpcaio.InferInput("pixels", [1, 64], "FP32")
            i.set_data_from_numpy(PIXELS)
            r = await c.infer("mlp_digits", [i])
            np.testing.assert_allclose(r.as_numpy("logits"), expected_logits(), rtol=1e-6)
        finally:
            await c.close()

    asyncio.run(run())


def test_typed_contents_requests_are_answered_raw():
    channel = grpcio.insecure_channel(pytest.server.grpc)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    request = service_pb2.ModelInferRequest(model_name="mlp_digits")
    tensor = request.inputs.add(name="pixels", datatype="FP32", shape=[1, 64])
    tensor.contents.fp32_contents.extend(PIXELS.flatten().tolist())
    response = stub.ModelInfer(request)
    assert len(response.raw_output_contents) == 1
    assert not response.outputs[0].contents.fp32_contents
    logits = grpcclient.InferResult(response).as_numpy("logits")
    np.testing.assert_allclose(logits, expected_logits(), rtol=1e-6)
    channel.close()


def post_raw(model: str, body: bytes):
    request = urllib.request.Request(
        f"http://{pytest.server.http}/v2/models/{model}/infer", data=body, method="POST",
        headers={"Inference-Header-Content-Length": "0",
                 "Content-Type": "application/octet-stream"})
    return urllib.request.urlopen(request, timeout=10)


def test_raw_binary_body():
    with post_raw("mlp_digits", PIXELS.tobytes()) as r:
        json_len = int(r.headers["Inference-Header-Content-Length"])
        body = r.read()
    header = json.loads(body[:json_len])
    assert header["outputs"][0]["shape"] == [1, 10]
    logits = np.frombuffer(body[json_len:], dtype=np.float32).reshape(1, 10)
    np.testing.assert_allclose(logits, expected_logits(), rtol=1e-6)
    for model, needle in [("mlp_digits", "pixels"), ("finalmlp_ctr", "one input")]:
        with pytest.raises(urllib.error.HTTPError) as e:
            post_raw(model, b"\0" * 12)
        assert e.value.code == 400
        assert needle in json.loads(e.value.read())["error"]


@pytest.fixture(scope="module")
def explicit_server():
    root = scratch_repository({"m": "mlp_digits"})
    s = Server(binary_path(), repository=root, extra=["--model-control-mode", "explicit"])
    yield s
    s.stop()
    shutil.rmtree(root)


@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_protobuf_json_load_overrides(explicit_server, module):
    url = explicit_server.http if module is httpclient else explicit_server.grpc
    c = module.InferenceServerClient(url=url)
    config = {"name": "m", "max_batch_size": "16",
              "dynamic_batching": {"max_queue_delay_microseconds": "100",
                                   "default_queue_policy": {"max_queue_size": "40"}},
              "instance_group": [{"count": 1, "kind": "KIND_CPU"}]}
    c.load_model("m", config=json.dumps(config))
    got = c.get_model_config("m")
    if module is grpcclient:
        got = json.loads(__import__("google.protobuf.json_format", fromlist=["x"])
                         .MessageToJson(got.config, preserving_proto_field_name=True))
    assert int(got["max_batch_size"]) == 16
    assert int(got["dynamic_batching"]["max_queue_delay_microseconds"]) == 100
    assert int(got["dynamic_batching"]["default_queue_policy"]["max_queue_size"]) == 40
    with pytest.raises(InferenceServerException) as e:
        c.load_model("m", config=json.dumps({"instance_group": [{"kind": "KIND_TPU"}]}))
    assert "KIND_TPU" in str(e.value)
    c.close()


TEXT = np.array([["red", "grün ☕", ""], ["blue", "x y", "green"]], dtype=np.object_)
CODES = np.array([[0, -1, -1], [2, -1, 1]], dtype=np.int64)


def as_text(a: np.ndarray) -> list:
    """Strings of an object array, whether the client gave bytes (binary) or str (JSON)."""
    return [x.decode() if isinstance(x, bytes) else x for x in a.reshape(-1)]


def churn_sample():
    s = json.loads((REPO / "models" / "churn_pipeline" / "samples.json").read_text())["samples"][2]
    dtypes = {"BYTES": np.object_, "FP32": np.float32}
    feed = {k: np.array(v["data"], dtype=dtypes[v["datatype"]]).reshape(v["shape"])
            for k, v in s["inputs"].items()}
    want = np.array(s["outputs"]["probabilities"]["data"], np.float32).reshape(
        s["outputs"]["probabilities"]["shape"])
    return feed, want


def check_echo(result):
    assert as_text(result.as_numpy("echo")) == as_text(TEXT)
    np.testing.assert_array_equal(result.as_numpy("code"), CODES)


def test_bytes_models_with_every_client():
    """string_echo and the skl2onnx churn pipeline through tritonclient HTTP (JSON and
    binary), HTTP-asyncio, gRPC and gRPC-asyncio; strings given as str and as UTF-8 bytes."""
    encoded = np.array([[x.encode() for x in row] for row in TEXT], dtype=np.object_)
    feed, want = churn_sample()

    def inputs(module, binary=None):
        text = module.InferInput("text", list(TEXT.shape), "BYTES")
        if binary is None:
            text.set_data_from_numpy(encoded)
        else:
            text.set_data_from_numpy(encoded, binary_data=binary)
        churn = []
        for name, value in feed.items():
            i = module.InferInput(name, list(value.shape), "BYTES" if value.dtype == object else "FP32")
            if binary is None:
                i.set_data_from_numpy(value)
            else:
                i.set_data_from_numpy(value, binary_data=binary)
            churn.append(i)
        return [text], churn

    c = httpclient.InferenceServerClient(url=pytest.server.http)
    meta = c.get_model_metadata("string_echo")
    assert meta["inputs"][0]["datatype"] == "BYTES"
    config = c.get_model_config("string_echo")
    assert config["input"][0]["data_type"] == "TYPE_STRING"
    for binary in [False, True]:
        text, churn = inputs(httpclient, binary)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ["echo", "code"]]
        check_echo(c.infer("string_echo", text, outputs=outputs))
        got = c.infer("churn_pipeline", churn).as_numpy("probabilities")
        np.testing.assert_allclose(got, want, atol=1e-5)

    async def aio():
        h = httpaio.InferenceServerClient(url=pytest.server.http)
        g = grpcaio.InferenceServerClient(url=pytest.server.grpc)
        try:
            text, churn = inputs(httpaio, True)
            check_echo(await h.infer("string_echo", text))
            np.testing.assert_allclose((await h.infer("churn_pipeline", churn))
                                       .as_numpy("probabilities"), want, atol=1e-5)
            text, churn = inputs(grpcaio)
            check_echo(await g.infer("string_echo", text))
            np.testing.assert_allclose((await g.infer("churn_pipeline", churn))
                                       .as_numpy("probabilities"), want, atol=1e-5)
        finally:
            await h.close()
            await g.close()

    asyncio.run(aio())
    g = grpcclient.InferenceServerClient(url=pytest.server.grpc)
    text, churn = inputs(grpcclient)
    check_echo(g.infer("string_echo", text))
    np.testing.assert_allclose(g.infer("churn_pipeline", churn).as_numpy("probabilities"),
                               want, atol=1e-5)
    assert g.get_model_config("string_echo").config.input[0].data_type == 13  # TYPE_STRING

    # A typed-contents request (bytes_contents) is answered in raw_output_contents.
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpcio.insecure_channel(pytest.server.grpc))
    request = service_pb2.ModelInferRequest(model_name="string_echo")
    t = request.inputs.add(name="text", datatype="BYTES", shape=[1, 2])
    t.contents.bytes_contents.extend([b"green", b"?"])
    response = stub.ModelInfer(request)
    raw = response.raw_output_contents[[o.name for o in response.outputs].index("echo")]
    assert raw == struct.pack("<I", 5) + b"green" + struct.pack("<I", 1) + b"?"

    # A string that ONNX Runtime cannot take is a 400 / INVALID_ARGUMENT naming the element.
    bad = np.array([[b"ok", b"\xff\xfe"]], dtype=np.object_)
    i = httpclient.InferInput("text", [1, 2], "BYTES")
    i.set_data_from_numpy(bad, binary_data=True)
    with pytest.raises(InferenceServerException) as e:
        c.infer("string_echo", [i])
    assert "'text' element 1 is not UTF-8" in str(e.value)
    i = grpcclient.InferInput("text", [1, 2], "BYTES")
    i.set_data_from_numpy(bad)
    with pytest.raises(InferenceServerException) as e:
        g.infer("string_echo", [i])
    assert "'text' element 1 is not UTF-8" in str(e.value)

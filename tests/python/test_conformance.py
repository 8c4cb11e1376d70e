"""Conformance with the real Triton clients (`tritonclient.http` and `tritonclient.grpc`
from PyPI) against the real mlpserve binary: health, metadata, model config, every datatype
in JSON and binary tensors (HTTP) and raw contents (gRPC), output selection, the reference
samples of the zoo models, error cases, and a clean SIGTERM shutdown (of a server of its own).
"""

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from conftest import Server, binary_path, samples

FLOAT_TYPES = {"FP16", "FP32", "FP64"}
ECHO_TYPES = ["FP32", "FP64", "FP16", "INT64", "INT32", "INT8", "UINT8", "BOOL"]


@pytest.fixture(scope="module")
def http(server):
    c = httpclient.InferenceServerClient(url=server.http)
    yield c
    c.close()


@pytest.fixture(scope="module")
def grpc(server):
    c = grpcclient.InferenceServerClient(url=server.grpc)
    yield c
    c.close()


def as_array(t: dict) -> np.ndarray:
    return np.array(t["data"], dtype=triton_to_np_dtype(t["datatype"])).reshape(t["shape"])


def assert_matches(got: np.ndarray, want: dict, what: str) -> None:
    expected = as_array(want)
    assert got is not None, f"{what}: missing output"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != {expected.dtype}"
    assert list(got.shape) == list(expected.shape), f"{what}: shape {got.shape} != {expected.shape}"
    if want["datatype"] in FLOAT_TYPES:
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=what)
    else:
        np.testing.assert_array_equal(got, expected, err_msg=what)


def http_inputs(sample: dict, binary: bool) -> list:
    inputs = []
    for name, t in sample["inputs"].items():
        i = httpclient.InferInput(name, t["shape"], t["datatype"])
        # FP16 has no JSON representation worth trusting: always binary (as Triton advises).
        i.set_data_from_numpy(as_array(t), binary_data=binary or t["datatype"] == "FP16")
        inputs.append(i)
    return inputs


def grpc_inputs(sample: dict) -> list:
    inputs = []
    for name, t in sample["inputs"].items():
        i = grpcclient.InferInput(name, t["shape"], t["datatype"])
        i.set_data_from_numpy(as_array(t))  # tritonclient.grpc always sends raw_input_contents
        inputs.append(i)
    return inputs


def http_outputs(sample: dict, binary: bool) -> list:
    return [
        httpclient.InferRequestedOutput(name, binary_data=binary or t["datatype"] == "FP16")
        for name, t in sample["outputs"].items()
    ]


# --- health and metadata ---------------------------------------------------------------

def test_server_health_and_metadata(http, grpc):
    assert http.is_server_live() and http.is_server_ready()
    meta = http.get_server_metadata()
    assert meta["name"] == "mlpserve"
    for ext in ["binary_tensor_data", "model_configuration", "statistics"]:
        assert ext in meta["extensions"]
    assert grpc.is_server_live() and grpc.is_server_ready()
    assert grpc.get_server_metadata(as_json=True)["name"] == "mlpserve"


def test_model_metadata_and_config(http, grpc):
    for c in (http, grpc):
        assert c.is_model_ready("mlp_digits")
        assert c.is_model_ready("mlp_digits", "1")
    meta = http.get_model_metadata("mlp_digits")
    assert meta["name"] == "mlp_digits" and "1" in meta["versions"]
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    gmeta = grpc.get_model_metadata("mlp_digits", as_json=True)
    assert gmeta["inputs"][0]["name"] == "pixels" and gmeta["inputs"][0]["datatype"] == "FP32"
    assert [int(d) for d in gmeta["inputs"][0]["shape"]] == [-1, 64]

    config = http.get_model_config("finalmlp_ctr")
    assert config["max_batch_size"] > 0
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
        ("cat_ids", "TYPE_INT64", [8]), ("dense", "TYPE_FP32", [4])]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        ("click_prob", "TYPE_FP32", [1])]
    gconfig = grpc.get_model_config("finalmlp_ctr", as_json=True)["config"]
    assert int(gconfig["max_batch_size"]) == config["max_batch_size"]
    assert [(i["name"], i["data_type"], [int(d) for d in i["dims"]]) for i in gconfig["input"]] == [
        ("cat_ids", "TYPE_INT64", [8]), ("dense", "TYPE_FP32", [4])]


# --- every datatype, JSON and binary, HTTP and gRPC --------------------------------------

@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_dtype_echo_over_http(http, binary):
    for n, s in enumerate(samples("dtype_echo")):
        assert sorted(t["datatype"] for t in s["inputs"].values()) == sorted(ECHO_TYPES)
        res = http.infer("dtype_echo", http_inputs(s, binary), outputs=http_outputs(s, binary),
                         request_id=f"echo-{n}")
        assert res.get_response()["id"] == f"echo-{n}"
        for name, want in s["outputs"].items():
            out = res.get_output(name)
            assert out["datatype"] == want["datatype"]
            params = out.get("parameters", {})
            assert ("binary_data_size" in params) == (binary or want["datatype"] == "FP16"), out
            assert_matches(res.as_numpy(name), want, f"sample {n} {name}")


def test_dtype_echo_over_grpc(grpc):
    for n, s in enumerate(samples("dtype_echo")):
        res = grpc.infer("dtype_echo", grpc_inputs(s), request_id=f"echo-{n}")
        assert res.get_response().id == f"echo-{n}"
        for name, want in s["outputs"].items():
            assert_matches(res.as_numpy(name), want, f"sample {n} {name}")


def test_binary_data_output_without_requested_outputs(http):
    # With no `outputs`, tritonclient sets the request-level `binary_data_output: true`.
    s = samples("dtype_echo")[0]
    res = http.infer("dtype_echo", http_inputs(s, binary=False))
    outputs = res.get_response()["outputs"]
    assert sorted(o["name"] for o in outputs) == sorted(s["outputs"])
    for o in outputs:
        assert "data" not in o and o["parameters"]["binary_data_size"] > 0, o
        assert_matches(res.as_numpy(o["name"]), s["outputs"][o["name"]], o["name"])


def test_output_selection(http, grpc):
    s = samples("dtype_echo")[1]
    wanted = ["y_int32", "y_bool"]
    res = http.infer("dtype_echo", http_inputs(s, binary=True),
                     outputs=[httpclient.InferRequestedOutput(n, binary_data=(n == "y_bool")) for n in wanted])
    assert [o["name"] for o in res.get_response()["outputs"]] == wanted
    assert res.get_output("y_fp32") is None
    for n in wanted:
        assert_matches(res.as_numpy(n), s["outputs"][n], n)
    gres = grpc.infer("dtype_echo", grpc_inputs(s), outputs=[grpcclient.InferRequestedOutput("y_int8")])
    assert [o.name for o in gres.get_response().outputs] == ["y_int8"]
    assert_matches(gres.as_numpy("y_int8"), s["outputs"]["y_int8"], "y_int8")


# --- reference samples of the zoo models --------------------------------------------------

@pytest.mark.parametrize("model", ["mlp_digits", "finalmlp_ctr"])
def test_reference_samples(http, grpc, model):
    for n, s in enumerate(samples(model)):
        for binary in (False, True):
            res = http.infer(model, http_inputs(s, binary), outputs=http_outputs(s, binary))
            assert res.get_response()["model_name"] == model
            for name, want in s["outputs"].items():
                assert_matches(res.as_numpy(name), want, f"http binary={binary} sample {n} {name}")
        gres = grpc.infer(model, grpc_inputs(s))
        assert gres.get_response().model_name == model
        for name, want in s["outputs"].items():
            assert_matches(gres.as_numpy(name), want, f"grpc sample {n} {name}")


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_responses(http, algorithm):
    s = samples("mlp_digits")[0]
    res = http.infer("mlp_digits", http_inputs(s, False), outputs=http_outputs(s, False),
                     request_compression_algorithm=algorithm, response_compression_algorithm=algorithm)
    for name, want in s["outputs"].items():
        assert_matches(res.as_numpy(name), want, f"{algorithm} {name}")


# --- errors, then a good request ----------------------------------------------------------

def digits_input(client_mod, datatype="FP32", cols=64, rows=1):
    i = client_mod.InferInput("pixels", [rows, cols], datatype)
    i.set_data_from_numpy(np.zeros((rows, cols), dtype=triton_to_np_dtype(datatype)))
    return i


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_client_errors_are_explained(request, proto):
    client = request.getfixturevalue(proto)
    mod = httpclient if proto == "http" else grpcclient
    with pytest.raises(InferenceServerException) as e:
        client.infer("no_such_model", [digits_input(mod)])
    assert "no_such_model" in str(e.value)
    with pytest.raises(InferenceServerException) as e:
        client.infer("mlp_digits", [digits_input(mod, datatype="FP64")])
    msg = str(e.value)
    assert "pixels" in msg and "FP32" in msg and "FP64" in msg, msg
    with pytest.raises(InferenceServerException) as e:
        client.infer("mlp_digits", [digits_input(mod, cols=63)])
    msg = str(e.value)
    assert "pixels" in msg and "64" in msg and "63" in msg, msg
    with pytest.raises(InferenceServerException) as e:
        client.infer("mlp_digits", [digits_input(mod)], model_version="7")
    assert "7" in str(e.value)


def raw_post(server, header: dict, binary: bytes, json_len_delta: int = 0):
    body = json.dumps(header).encode()
    req = urllib.request.Request(
        f"http://{server.http}/v2/models/mlp_digits/infer", data=body + binary, method="POST",
        headers={"Content-Type": "application/octet-stream",
                 "Inference-Header-Content-Length": str(len(body) + json_len_delta)})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_binary_size_mismatch_is_400(server):
    data = np.zeros((1, 64), dtype=np.float32).tobytes()
    def header(size):
        return {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32",
                            "parameters": {"binary_data_size": size}}]}
    status, _ = raw_post(server, header(len(data)), data)
    assert status == 200  # the crafted request itself is well formed
    for hdr, binary, delta, needle in [
        (header(len(data) + 4), data, 0, "binary_data_size"),      # claims more than sent
        (header(len(data)), data + b"\0" * 4, 0, "binary data"),   # trailing bytes
        (header(len(data) - 4), data[:-4], 0, "pixels"),           # too few bytes for [1,64]
        (header(len(data)), data, 10_000, "Inference-Header-Content-Length"),  # header > body
    ]:
        status, body = raw_post(server, hdr, binary, delta)
        assert status == 400, (status, body)
        error = json.loads(body)["error"]
        assert needle.lower() in error.lower(), error


def test_good_request_after_errors(http, grpc):
    s = samples("mlp_digits")[0]
    assert_matches(http.infer("mlp_digits", http_inputs(s, True)).as_numpy("logits"), s["outputs"]["logits"], "http")
    assert_matches(grpc.infer("mlp_digits", grpc_inputs(s)).as_numpy("logits"), s["outputs"]["logits"], "grpc")


def test_statistics_through_the_client(http):
    stats = http.get_inference_statistics("mlp_digits")["model_stats"]
    assert [s["name"] for s in stats] == ["mlp_digits"]
    inference = stats[0]["inference_stats"]
    assert inference["success"]["count"] > 0 and inference["fail"]["count"] > 0
    assert stats[0]["inference_count"] >= inference["success"]["count"]


# --- last: shutdown ---------------------------------------------------------------------

def test_sigterm_exits_zero():
    # Its own server, so the session-wide one keeps serving the test files that follow.
    own = Server(binary_path())
    assert own.stop() == 0, own.logs()

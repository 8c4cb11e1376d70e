"""Triton's model repository extension through the real tritonclient (HTTP and gRPC):
index, load (plain, with a config override, with a file override of a new version),
unload, readiness and inference before and after, on a scratch repository served by the
real binary in explicit mode with an admin token.
"""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import REPO, Server, binary_path

TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}  # gRPC metadata keys are lowercase
IMAGE = (np.arange(64, dtype=np.float32) % 17 / 16).reshape(1, 1, 8, 8)


@pytest.fixture(scope="module")
def explicit_server():
    root = Path(tempfile.mkdtemp(prefix="mlpserve-repo-"))
    for name, zoo in [("a", "gmlp_digits"), ("b", "mixer_digits")]:
        (root / name / "1").mkdir(parents=True)
        shutil.copy(REPO / "models" / zoo / "1" / "model.onnx", root / name / "1" / "model.onnx")
    s = Server(binary_path(), repository=root, extra=[
        "--model-control-mode", "explicit", "--load-model", "a", "--admin-token", TOKEN])
    yield s
    s.stop()
    shutil.rmtree(root)


def infer(client, module, name):
    i = module.InferInput("image", list(IMAGE.shape), "FP32")
    i.set_data_from_numpy(IMAGE)
    r = client.infer(name, [i])
    return r.get_response()["model_version"] if module is httpclient else r.get_response().model_version, r.as_numpy("logits")


@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_repository_lifecycle(explicit_server, module):
    url = explicit_server.http if module is httpclient else explicit_server.grpc
    client = module.InferenceServerClient(url=url)
    with pytest.raises(InferenceServerException):
        client.get_model_repository_index()  # no token
    index = client.get_model_repository_index(headers=AUTH)
    if module is grpcclient:
        index = [{"name": m.name, "version": m.version, "state": m.state} for m in index.models]
    states = {(m["name"], m.get("version", "")): m.get("state", "") for m in index}
    assert states[("a", "1")] == "READY"
    assert not client.is_model_ready("b")

    client.load_model("b", headers=AUTH)
    assert client.is_model_ready("b")
    version, before = infer(client, module, "b")
    assert version == "1"

    # A config override and a file override of a new version (gmlp's graph as b/2).
    graph = (REPO / "models" / "gmlp_digits" / "1" / "model.onnx").read_bytes()
    client.load_model("b", headers=AUTH, config=json.dumps({"max_batch_size": 4}),
                      files={"file:2/model.onnx": graph})
    assert client.is_model_ready("b", "2")
    version, after = infer(client, module, "b")
    assert version == "2"
    assert not np.allclose(before, after)
    cfg = client.get_model_config("b")
    cfg = cfg if module is httpclient else json.loads(
        __import__("google.protobuf.json_format", fromlist=["x"]).MessageToJson(cfg.config))
    assert int(cfg.get("max_batch_size", cfg.get("maxBatchSize", 0))) == 4

    client.unload_model("b", headers=AUTH)
    assert not client.is_model_ready("b")
    with pytest.raises(InferenceServerException):
        infer(client, module, "b")
    # Put b back to its plain state for the other transport's run.
    shutil.rmtree(Path(explicit_server.repository) / "b" / "2")
    client.close()

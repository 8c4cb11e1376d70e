"""Raw features through Triton's own clients: tritonclient HTTP and gRPC send BYTES, INT64 and
FP32 fields to the zoo's `features_ctr` (a model with `[features]`), and the answers match
(a) the reference outputs in its samples.json and (b) the same graph fed the ids and numbers
that Google's C++ FarmHash (`pyfarmhash`) and the Keras definitions give for those fields, on
random text (Unicode included), integers and unknown tokens.
"""

import bisect
import math
import random
import shutil
import tempfile
from pathlib import Path

import farmhash
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import REPO, Server, binary_path, samples

MODEL = "features_ctr"
ZOO = REPO / "models" / MODEL


@pytest.fixture(scope="module", autouse=True)
def own_server():
    # The model with [features], and the same graph without them (it takes the tensors).
    root = Path(tempfile.mkdtemp(prefix="mlpserve-features-"))
    shutil.copytree(ZOO, root / MODEL)
    (root / "tensors" / "1").mkdir(parents=True)
    shutil.copy(ZOO / "1" / "model.onnx", root / "tensors" / "1" / "model.onnx")
    pytest.server = Server(binary_path(), repository=root)
    yield
    pytest.server.stop()
    shutil.rmtree(root)


def as_numpy(datatype: str, data: list) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([s.encode() for s in data], dtype=np.object_)
    return np.array(data, dtype={"INT64": np.int64, "FP64": np.float64, "FP32": np.float32}[datatype])


def infer(module, client, model: str, arrays: dict):
    inputs = []
    for name, values in arrays.items():
        datatype = "BYTES" if values.dtype == np.object_ else module.np_to_triton_dtype(values.dtype)
        x = module.InferInput(name, list(values.shape), datatype)
        x.set_data_from_numpy(values)
        inputs.append(x)
    return client.infer(model, inputs).as_numpy("click_prob")


@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_raw_samples_are_answered_through_tritonclient(module):
    url = pytest.server.http if module is httpclient else pytest.server.grpc
    client = module.InferenceServerClient(url=url)
    names = {i["name"] if isinstance(i, dict) else i.name
             for i in (client.get_model_metadata(MODEL)["inputs"] if module is httpclient
                       else client.get_model_metadata(MODEL).inputs)}
    assert {"user_id", "country", "device", "ad_id", "age", "income", "clicks_7d"} <= names
    assert not names & {"ids", "dense"}
    for sample in samples(MODEL):
        arrays = {k: as_numpy(v["datatype"], v["data"]) for k, v in sample["inputs"].items()}
        want = np.array(sample["outputs"]["click_prob"]["data"], dtype=np.float32)
        got = infer(module, client, MODEL, arrays).reshape(-1)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


class Reference:
    """The transforms of models/features_ctr/config.toml, from their definitions."""

    def __init__(self):
        self.country = (ZOO / "country.txt").read_text().splitlines()
        self.device = (ZOO / "device.txt").read_text().splitlines()
        config = (ZOO / "config.toml").read_text()
        line = next(line for line in config.splitlines() if line.startswith("income"))
        self.mean = float(line.split("mean = ")[1].split(",")[0])
        self.std = float(line.split("std = ")[1].split(" ")[0])

    @staticmethod
    def lookup(vocabulary, token, oov):
        if token in vocabulary:
            return oov + vocabulary.index(token)
        return 0 if oov == 1 else farmhash.fingerprint64(token) % oov

    def tensors(self, rows):
        ids = [[farmhash.fingerprint64(r["user_id"]) % 1000,
                self.lookup(self.country, r["country"], 2),
                self.lookup(self.device, r["device"], 1),
                farmhash.fingerprint64(str(r["ad_id"])) % 500,
                bisect.bisect_right([18, 25, 35, 50, 65], r["age"])] for r in rows]
        dense = [[(r["income"] - self.mean) / self.std, math.log1p(r["clicks_7d"])] for r in rows]
        return {"ids": np.array(ids, dtype=np.int64), "dense": np.array(dense, dtype=np.float32)}


def random_text(rng: random.Random) -> str:
    alphabet = "abcXYZ019 -_éüß世界🌍\u0301"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))


@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_fields_give_what_pyfarmhash_and_the_keras_definitions_give(module):
    url = pytest.server.http if module is httpclient else pytest.server.grpc
    client = module.InferenceServerClient(url=url)
    rng = random.Random(7 if module is httpclient else 8)
    reference = Reference()
    rows = []
    for i in range(64):
        rows.append({
            "user_id": random_text(rng),
            # Known and unknown tokens, boundary values and extreme integers.
            "country": rng.choice(reference.country + ["ZZ", "", "de", random_text(rng)]),
            "device": rng.choice(reference.device + ["tv", random_text(rng)]),
            "ad_id": rng.choice([0, -1, 2**63 - 1, -2**63, rng.randrange(-10**12, 10**12)]),
            "age": rng.choice([17, 18, 24, 25, 35, 50, 65, 66, rng.randrange(0, 120)]),
            # FP32-exact, so the FP32 field and the reference see the same number.
            "income": float(np.float32(rng.uniform(0, 200000))),
            "clicks_7d": rng.randrange(0, 50),
        })
    fields = {
        "user_id": np.array([r["user_id"].encode() for r in rows], dtype=np.object_),
        "country": np.array([r["country"].encode() for r in rows], dtype=np.object_),
        "device": np.array([r["device"].encode() for r in rows], dtype=np.object_),
        "ad_id": np.array([r["ad_id"] for r in rows], dtype=np.int64),
        "age": np.array([r["age"] for r in rows], dtype=np.int64),
        "income": np.array([r["income"] for r in rows], dtype=np.float32),
        "clicks_7d": np.array([r["clicks_7d"] for r in rows], dtype=np.int64),
    }
    got = infer(module, client, MODEL, fields)
    want = infer(module, client, "tensors", reference.tensors(rows))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_bad_fields_are_refused_with_the_field_named():
    client = httpclient.InferenceServerClient(url=pytest.server.http)
    fields = {
        "user_id": np.array([b"u1"], dtype=np.object_),
        "country": np.array([b"DE"], dtype=np.object_),
        "ad_id": np.array([1], dtype=np.int64),
        "age": np.array([b"thirty"], dtype=np.object_),
        "income": np.array([1.0], dtype=np.float32),
    }
    with pytest.raises(InferenceServerException) as e:
        infer(httpclient, client, MODEL, fields)
    assert "field 'age'" in str(e.value) and "thirty" in str(e.value)
    del fields["income"]
    fields["age"] = np.array([30], dtype=np.int64)
    with pytest.raises(InferenceServerException) as e:
        infer(httpclient, client, MODEL, fields)
    assert "missing field 'income'" in str(e.value)

"""Ranking requests through Triton's own clients: tritonclient HTTP and gRPC send the zoo's
`ranking_ctr` a user context once (broadcast fields and the click history with first
dimension 1) and N candidates, with the `top_k` request parameter. The scores equal those of
the same request with the context repeated on every row, and the top k are the stable sort
of those scores; the model metadata still parses and says what is broadcast.
"""

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import REPO

MODEL = "ranking_ctr"
USER = {"user_id": "u01846", "country": "DE", "age": 45}
HISTORY = [87, 467, 2929, 2878, 82, 1958] + [0] * 44
ITEMS = {
    "item_id": [644, 747, 2121, 15, 2909, 3000, 12],
    "category": ["health", "sports", "grocery", "audio", "health", "toys", "sports"],
    "price": [21.71, 94.65, 32.24, 3.5, 3.89, 49.0, 12.0],
}
N = len(ITEMS["item_id"])


def column(values: list, rows: int = None) -> np.ndarray:
    """A field's values as tritonclient sends them (BYTES as objects), repeated to `rows`."""
    if rows is not None:
        values = values * rows
    if isinstance(values[0], str):
        return np.array([v.encode() for v in values], dtype=np.object_)
    if isinstance(values[0], float):
        return np.array(values, dtype=np.float32)
    return np.array(values, dtype=np.int64)


def request(module, once: bool) -> list:
    """The inputs of one ranking request: the context once, or repeated on every row."""
    rows = 1 if once else N
    arrays = {name: column([value], rows) for name, value in USER.items()}
    arrays["history"] = np.array([HISTORY] * rows, dtype=np.int64)
    arrays.update({name: column(values) for name, values in ITEMS.items()})
    inputs = []
    for name, values in arrays.items():
        datatype = "BYTES" if values.dtype == np.object_ else module.np_to_triton_dtype(values.dtype)
        x = module.InferInput(name, list(values.shape), datatype)
        x.set_data_from_numpy(values)
        inputs.append(x)
    return inputs


def client_for(module, server):
    url = server.http if module is httpclient else server.grpc
    return module.InferenceServerClient(url=url)


@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_context_once_answers_as_the_repeated_request_with_its_top_k(module, server):
    client = client_for(module, server)
    repeated = client.infer(MODEL, request(module, once=False)).as_numpy("score").reshape(-1)
    answer = client.infer(MODEL, request(module, once=True), parameters={"top_k": 3})
    scores = answer.as_numpy("score").reshape(-1)
    np.testing.assert_allclose(scores, repeated, rtol=1e-6, atol=1e-7)
    indices = answer.as_numpy("top_k_indices")
    assert indices.dtype == np.int64 and indices.shape == (3,)
    expected = np.argsort(-repeated, kind="stable")[:3]
    assert list(indices) == list(expected)
    best = answer.as_numpy("top_k_scores")
    assert best.dtype == np.float32
    np.testing.assert_array_equal(best, scores[indices])


def test_listed_outputs_get_the_top_k_only_when_listed_in_binary_or_json(server):
    client = client_for(httpclient, server)
    outputs = [
        httpclient.InferRequestedOutput("top_k_indices", binary_data=True),
        httpclient.InferRequestedOutput("top_k_scores", binary_data=False),
    ]
    answer = client.infer(MODEL, request(httpclient, once=True), outputs=outputs,
                          parameters={"top_k": 100, "rank_by": "score"})
    assert answer.as_numpy("score") is None
    assert answer.as_numpy("top_k_indices").shape == (N,)
    assert answer.as_numpy("top_k_scores").shape == (N,)


@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_bad_ranking_requests_are_invalid_arguments_naming_them(module, server):
    client = client_for(module, server)
    for parameters, needle in [({"top_k": 0}, "top_k"), ({"top_k": 2, "rank_by": "nope"}, "nope")]:
        with pytest.raises(InferenceServerException) as raised:
            client.infer(MODEL, request(module, once=True), parameters=parameters)
        assert needle in raised.value.message()
    # One candidate field sent with one value while the others have N: a per-row field.
    inputs = request(module, once=False)
    single = module.InferInput("item_id", [1], "INT64")
    single.set_data_from_numpy(np.array([5], dtype=np.int64))
    inputs = [single if i.name() == "item_id" else i for i in inputs]
    with pytest.raises(InferenceServerException) as raised:
        client.infer(MODEL, inputs)
    message = raised.value.message()
    assert "'item_id' has 1 values" in message and f"has {N}" in message


def test_metadata_parses_and_says_what_is_broadcast(server):
    meta = client_for(httpclient, server).get_model_metadata(MODEL)
    flagged = {i["name"] for i in meta["inputs"] if i.get("broadcast")}
    assert {"user_id", "country", "age", "history"} <= flagged
    assert not flagged & {"item_id", "category", "price"}
    assert meta["parameters"]["rank_by"] == "score"
    config = client_for(grpcclient, server).get_model_config(MODEL).config
    assert "history" in config.parameters["broadcast_inputs"].string_value
    assert config.parameters["rank_by"].string_value == "score"
    assert client_for(grpcclient, server).get_model_metadata(MODEL).name == MODEL


TOWERS = "ranking_towers"


def towers_request(module, sample: dict, once: bool) -> list:
    """A ranking sample of ranking_towers as V2 inputs: the user's fields and history once
    (first dimension 1) or repeated, the candidates' fields per row."""
    req = sample["request"]
    cands = req["candidates"]
    if isinstance(cands, list):
        cands = {k: [row[k] for row in cands] for k in cands[0]}
    n = len(next(iter(cands.values())))
    rows = 1 if once else n
    context = dict(req["context"])
    arrays = {"history": np.array([context.pop("history")] * rows, dtype=np.int64)}
    arrays.update({name: column([value], rows) for name, value in context.items()})
    arrays.update({name: column([float(v) for v in values] if name == "price" else values)
                   for name, values in cands.items()})
    inputs = []
    for name, values in arrays.items():
        datatype = "BYTES" if values.dtype == np.object_ else module.np_to_triton_dtype(values.dtype)
        x = module.InferInput(name, list(values.shape), datatype)
        x.set_data_from_numpy(values)
        inputs.append(x)
    return inputs


@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_a_context_model_answers_its_samples_with_the_context_once_or_repeated(module, server):
    """ranking_towers runs its user tower (context.onnx) once per request: tritonclient
    sends the user once, gets the scores the joined graph gave at export and the top k."""
    client = client_for(module, server)
    samples = json.loads((REPO / "models" / TOWERS / "ranking_samples.json").read_text())["samples"]
    for sample in samples:
        want = np.array(sample["expected"]["score"], dtype=np.float32)
        k = sample["request"]["top_k"]
        answer = client.infer(TOWERS, towers_request(module, sample, once=True),
                              parameters={"top_k": k})
        np.testing.assert_allclose(answer.as_numpy("score").reshape(-1), want, rtol=1e-4, atol=1e-5)
        assert list(answer.as_numpy("top_k_indices")) == sample["expected"]["top_k"]["indices"]
        repeated = client.infer(TOWERS, towers_request(module, sample, once=False))
        np.testing.assert_allclose(repeated.as_numpy("score").reshape(-1), want, rtol=1e-4, atol=1e-5)


def test_a_context_models_metadata_lists_what_clients_send(server):
    meta = client_for(httpclient, server).get_model_metadata(TOWERS)
    names = {i["name"] for i in meta["inputs"]}
    assert names == {"user_id", "country", "age", "history", "item_id", "category", "price"}
    flagged = {i["name"] for i in meta["inputs"] if i.get("broadcast")}
    assert flagged == {"user_id", "country", "age", "history"}
    config = client_for(grpcclient, server).get_model_config(TOWERS).config
    assert "user_vec" not in str(config)

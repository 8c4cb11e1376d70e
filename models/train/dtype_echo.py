"""dtype_echo: protocol test fixture covering every KServe V2 datatype the server supports.

Built directly with the onnx helper API (no torch, no training). Numeric outputs are
input + 1 (Add with a same-dtype constant); the bool output is Not(input).
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import common

NAME = "dtype_echo"
COLS = 3

# suffix, ONNX type, numpy dtype
TYPES = [
    ("fp32", TensorProto.FLOAT, np.float32),
    ("fp64", TensorProto.DOUBLE, np.float64),
    ("fp16", TensorProto.FLOAT16, np.float16),
    ("int64", TensorProto.INT64, np.int64),
    ("int32", TensorProto.INT32, np.int32),
    ("int8", TensorProto.INT8, np.int8),
    ("uint8", TensorProto.UINT8, np.uint8),
    ("bool", TensorProto.BOOL, np.bool_),
]

META = {
    "family": "test fixture (not an MLP)",
    "paper": "none (protocol test fixture)",
    "data": "none",
    "metric": "exact: y = x + 1 for numeric types, y = not x for BOOL",
    "description": "Echo fixture: one [-1,3] input per datatype; numeric outputs are input + 1, bool output is logical not",
}


def build() -> onnx.ModelProto:
    inputs, outputs, nodes, inits = [], [], [], []
    for sfx, ttype, npdt in TYPES:
        x, y = f"x_{sfx}", f"y_{sfx}"
        inputs.append(helper.make_tensor_value_info(x, ttype, ["batch", COLS]))
        outputs.append(helper.make_tensor_value_info(y, ttype, ["batch", COLS]))
        if npdt is np.bool_:
            nodes.append(helper.make_node("Not", [x], [y], name=f"not_{sfx}"))
        else:
            one = f"one_{sfx}"
            inits.append(numpy_helper.from_array(np.array(1, dtype=npdt), one))
            nodes.append(helper.make_node("Add", [x, one], [y], name=f"add_{sfx}"))
    graph = helper.make_graph(nodes, NAME, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="mlpserve-models")
    return common.finalize_onnx(model, META)


def rows(n: int, rng: np.random.Generator) -> dict:
    """n rows per input; values chosen so that +1 never overflows."""
    feed = {}
    for sfx, _, npdt in TYPES:
        if npdt is np.bool_:
            v = rng.integers(0, 2, size=(n, COLS)).astype(np.bool_)
        elif np.issubdtype(npdt, np.floating):
            v = (rng.standard_normal((n, COLS)) * 10).astype(npdt)
        elif npdt is np.uint8:
            v = rng.integers(0, 255, size=(n, COLS)).astype(npdt)  # max 254
        else:
            info = np.iinfo(npdt)
            lo, hi = max(info.min, -1_000_000), min(info.max - 1, 1_000_000)
            v = rng.integers(lo, hi, size=(n, COLS), endpoint=True).astype(npdt)
        feed[f"x_{sfx}"] = v
    return feed


def main():
    model = build()
    path = common.save_onnx(model, NAME)
    rng = np.random.default_rng(0)
    pool = rows(17, rng)
    common.verify(path, pool, atol=0.0)
    sess = common.session(path)
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, pool)))
    for sfx, _, npdt in TYPES:
        x, y = pool[f"x_{sfx}"], outs[f"y_{sfx}"]
        assert y.dtype == npdt
        expect = ~x if npdt is np.bool_ else (x + npdt(1)).astype(npdt)
        assert np.array_equal(y, expect), sfx

    # hand-written edge rows: negatives, zero, extremes that do not overflow on +1
    edge = {
        "x_fp32": np.array([[-1.5, 0.0, 3.25]], np.float32),
        "x_fp64": np.array([[-1e10, 0.125, 2.5]], np.float64),
        "x_fp16": np.array([[-2.5, 0.0, 1024.0]], np.float16),
        "x_int64": np.array([[-9007199254740993, -1, 9007199254740992]], np.int64),
        "x_int32": np.array([[-2147483648, -1, 2147483646]], np.int32),
        "x_int8": np.array([[-128, -1, 126]], np.int8),
        "x_uint8": np.array([[0, 127, 254]], np.uint8),
        "x_bool": np.array([[True, False, True]], np.bool_),
    }
    feeds = [
        edge,
        rows(2, np.random.default_rng(1)),
        rows(3, np.random.default_rng(2)),
        rows(4, np.random.default_rng(3)),
    ]
    body = (
        "## What it is\n\n"
        "A protocol test fixture, **not an MLP and not trained**: it is built directly with the "
        "`onnx` helper API (opset 17, no torch) so that the server's tensor encoding can be "
        "checked for every supported datatype in one request. Each input `x_<type>` has shape "
        "`[-1, 3]` and maps to the output `y_<type>` of the same datatype and shape:\n\n"
        "- numeric types (FP32, FP64, FP16, INT64, INT32, INT8, UINT8): `y = x + 1` "
        "(ONNX `Add` with a constant of the same type; integer overflow wraps, so the samples "
        "avoid the maximum value);\n"
        "- BOOL: `y = not x` (ONNX `Not`).\n\n"
        "All eight inputs are required in every request. The first sample holds edge values "
        "(negative integers, int64 beyond 2^53, int32/int8 minimum, uint8 254)."
    )
    meanings = {}
    for sfx, _, _ in TYPES:
        meanings[f"x_{sfx}"] = f"any {sfx.upper()} values, 3 per row"
        meanings[f"y_{sfx}"] = "not x" if sfx == "bool" else "x + 1"
    common.publish_fixture(
        NAME, META, feeds,
        title="Datatype echo fixture for the inference protocol (every supported tensor datatype).",
        meanings=meanings, body=body,
        samples_note=("`samples.json` holds one row of hand-picked edge values and three seeded random "
                      "batches (2, 3 and 4 rows), with the outputs ONNX Runtime (Python, CPU) produced, "
                      "in KServe V2 tensor form."),
    )


if __name__ == "__main__":
    main()

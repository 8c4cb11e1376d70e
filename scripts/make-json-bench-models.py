#!/usr/bin/env python3
"""Generate the JSON decoder benchmark's two models (scripts/bench.sh j) as ONNX.

Both are a sum per row, so the server's time goes to the request, not the graph: the
decoders' difference is as visible end to end as it can be.

    <out>/json_wide/1/model.onnx     x FP32 [batch, 256]                      -> y FP32 [batch, 1]
    <out>/json_mixed/1/model.onnx    ids INT64 [batch, 26], dense FP32 [batch, 13] -> y FP32 [batch, 1]

Needs only `onnx` (and numpy through it):
    .venv-tools/bin/python scripts/make-json-bench-models.py [--out target/bench-models-json]
"""

import argparse
import os

import onnx
from onnx import TensorProto, helper


def row_sum(name: str, inputs: list) -> onnx.ModelProto:
    nodes, sums = [], []
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    for input_name, dtype, width in inputs:
        x = input_name
        if dtype != TensorProto.FLOAT:
            nodes.append(helper.make_node("Cast", [x], [f"{x}_f"], to=TensorProto.FLOAT))
            x = f"{x}_f"
        nodes.append(helper.make_node("ReduceSum", [x, "axes"], [f"{input_name}_sum"], keepdims=1))
        sums.append(f"{input_name}_sum")
    nodes.append(helper.make_node("Sum", sums, ["y"]))
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(n, t, ["batch", w]) for n, t, w in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])],
        [axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="mlpserve-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


MODELS = {
    "json_wide": [("x", TensorProto.FLOAT, 256)],
    "json_mixed": [("ids", TensorProto.INT64, 26), ("dense", TensorProto.FLOAT, 13)],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="target/bench-models-json", help="model repository to write into")
    a = p.parse_args()
    for name, inputs in MODELS.items():
        version_dir = os.path.join(a.out, name, "1")
        os.makedirs(version_dir, exist_ok=True)
        onnx.save(row_sum(name, inputs), os.path.join(version_dir, "model.onnx"))
        with open(os.path.join(a.out, name, "config.toml"), "w") as f:
            f.write("max_batch_size = 256\n")
        print(f"wrote {a.out}/{name}")


if __name__ == "__main__":
    main()

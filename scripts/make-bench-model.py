#!/usr/bin/env python3
"""Generate the compute-heavy benchmark MLP (512 -> 2048 -> 2048 -> 512, float32) as ONNX.

The model has a dynamic batch axis and random (seeded) weights; it exists only to load the
server with real matrix work, so its outputs mean nothing. Written into a model repository
layout under a git-ignored folder (the file is ~25 MB and must never be committed):

    <out>/mlp_heavy/1/model.onnx
    <out>/mlp_heavy/config.toml

Needs only `onnx` and `numpy` (no torch):
    python3 -m venv .venv-tools && .venv-tools/bin/pip install onnx numpy
    .venv-tools/bin/python scripts/make-bench-model.py [--out target/bench-models]
"""

import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DIMS = [512, 2048, 2048, 512]


def build(activation: str, seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "x"
    for i, (fan_in, fan_out) in enumerate(zip(DIMS[:-1], DIMS[1:])):
        # He-style scaling keeps activations finite through the stack.
        w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        last = i == len(DIMS) - 2
        out = "y" if last else f"h{i}"
        if last:
            nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [out], name=f"fc{i}"))
        else:
            nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"z{i}"], name=f"fc{i}"))
            if activation == "gelu":
                # Gelu is a standard op from opset 20.
                nodes.append(helper.make_node("Gelu", [f"z{i}"], [out], name=f"act{i}"))
            else:
                nodes.append(helper.make_node("Relu", [f"z{i}"], [out], name=f"act{i}"))
        x = out
    graph = helper.make_graph(
        nodes,
        "mlp_heavy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", DIMS[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", DIMS[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], producer_name="mlpserve-bench")
    model.ir_version = 10
    helper.set_model_props(
        model,
        {
            "family": "MLP (benchmark only, random weights)",
            "layers": "x".join(str(d) for d in DIMS),
            "activation": activation,
        },
    )
    onnx.checker.check_model(model)
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="target/bench-models", help="model repository to write into")
    p.add_argument("--name", default="mlp_heavy")
    p.add_argument("--activation", choices=["relu", "gelu"], default="relu")
    p.add_argument("--max-batch-size", type=int, default=256)
    p.add_argument("--instances", type=int, default=1, help="worker threads (sessions) in config.toml")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    model_dir = os.path.join(a.out, a.name)
    version_dir = os.path.join(model_dir, "1")
    os.makedirs(version_dir, exist_ok=True)
    path = os.path.join(version_dir, "model.onnx")
    onnx.save(build(a.activation, a.seed), path)
    with open(os.path.join(model_dir, "config.toml"), "w") as f:
        f.write(
            "# Benchmark model: batch-1 requests from many clients are batched up to this size.\n"
            f"max_batch_size = {a.max_batch_size}\n"
            f"instances = {a.instances}\n"
        )
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB) and {model_dir}/config.toml")


if __name__ == "__main__":
    main()

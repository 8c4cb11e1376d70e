"""Shared helpers for training and exporting the mlpserve model zoo.

Every family script uses these to seed, export with ``torch.onnx.export``,
attach metadata, verify the graph with ONNX Runtime and write the
``samples.json`` / ``README.md`` files next to the model.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

MODELS_DIR = Path(__file__).resolve().parents[1]
IR_VERSION = 10
OPSET = 18

# numpy dtype -> KServe V2 datatype name
V2_DTYPES = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(np.float16): "FP16",
    np.dtype(np.int64): "INT64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int8): "INT8",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.object_): "BYTES",
}

ONNX_TO_V2 = {
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.DOUBLE: "FP64",
    onnx.TensorProto.FLOAT16: "FP16",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.BOOL: "BOOL",
    onnx.TensorProto.STRING: "BYTES",
}

META_KEYS = ("family", "paper", "data", "metric", "description")


def seed_all(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
        torch.set_num_threads(int(os.environ.get("ZOO_THREADS", "1")))
    except ImportError:
        pass


def model_dir(name: str) -> Path:
    d = MODELS_DIR / name
    (d / "1").mkdir(parents=True, exist_ok=True)
    return d


def onnx_path(name: str) -> Path:
    return model_dir(name) / "1" / "model.onnx"


def _strip_debug_info(model: onnx.ModelProto) -> None:
    """Drop exporter debug annotations (per-node stack traces, source paths, fx names)."""
    graph = model.graph
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for coll in (graph.input, graph.output, graph.value_info, graph.initializer):
        for item in coll:
            if hasattr(item, "metadata_props"):
                del item.metadata_props[:]
            item.doc_string = ""
    if hasattr(graph, "metadata_props"):
        del graph.metadata_props[:]
    graph.doc_string = ""


def finalize_onnx(model: onnx.ModelProto, metadata: dict) -> onnx.ModelProto:
    """Pin the IR version, drop debug annotations and attach the zoo metadata keys."""
    _strip_debug_info(model)
    missing = [k for k in META_KEYS if k not in metadata]
    if missing:
        raise ValueError(f"metadata is missing {missing}")
    model.ir_version = IR_VERSION
    del model.metadata_props[:]
    for k in META_KEYS:
        p = model.metadata_props.add()
        p.key = k
        p.value = str(metadata[k])
    model.doc_string = str(metadata["description"])
    onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(model: onnx.ModelProto, name: str) -> Path:
    path = onnx_path(name)
    for stale in path.parent.glob("*.data"):
        stale.unlink()
    onnx.save_model(model, str(path), save_as_external_data=False)
    return path


def export_torch(module, args: tuple, name: str, input_names, output_names,
                 dynamic_shapes: dict, metadata: dict, dynamo: bool = True,
                 dynamic_axes: dict | None = None) -> Path:
    """Export a torch module to models/<name>/1/model.onnx (single file)."""
    import torch

    module = module.eval()
    tmp = onnx_path(name).with_suffix(".tmp.onnx")
    with torch.no_grad():
        if dynamo:
            torch.onnx.export(
                module, args, str(tmp),
                input_names=list(input_names), output_names=list(output_names),
                dynamic_shapes=dynamic_shapes, opset_version=OPSET,
                external_data=False, dynamo=True, verbose=False,
            )
        else:
            torch.onnx.export(
                module, args, str(tmp),
                input_names=list(input_names), output_names=list(output_names),
                dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False,
            )
    model = onnx.load(str(tmp))
    tmp.unlink()
    for stale in tmp.parent.glob("*.data"):
        stale.unlink()
    got_in = [i.name for i in model.graph.input]
    got_out = [o.name for o in model.graph.output]
    assert got_in == list(input_names), (got_in, input_names)
    assert got_out == list(output_names), (got_out, output_names)
    model.graph.name = name
    model = finalize_onnx(model, metadata)
    return save_onnx(model, name)


def session(path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def check_dynamic_batch(path) -> None:
    """Every input and output must have a symbolic (dynamic) axis 0."""
    model = onnx.load(str(path))
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        assert len(dims) >= 1, f"{vi.name} has no batch axis"
        assert not dims[0].HasField("dim_value"), f"{vi.name} axis 0 is static"
    assert model.ir_version == IR_VERSION
    keys = {p.key for p in model.metadata_props}
    assert set(META_KEYS) <= keys, keys


def verify(path, pool: dict, sizes=(1, 3, 17), atol: float = 1e-5) -> None:
    """Run batches of several sizes and compare with row-by-row results."""
    check_dynamic_batch(path)
    sess = session(path)
    n = min(len(v) for v in pool.values())
    assert n >= max(sizes), "pool too small for verification"
    for bs in sizes:
        feed = {k: v[:bs] for k, v in pool.items()}
        batched = sess.run(None, feed)
        for r in range(bs):
            row = sess.run(None, {k: v[r:r + 1] for k, v in pool.items()})
            for b, s in zip(batched, row):
                assert b.shape[0] == bs
                if b.dtype in (np.bool_, np.object_) or np.issubdtype(b.dtype, np.integer):
                    assert np.array_equal(b[r:r + 1], s)
                else:
                    err = np.max(np.abs(b[r:r + 1].astype(np.float64) - s.astype(np.float64)))
                    assert err <= atol, f"batch {bs} row {r}: max abs diff {err}"
    print(f"  verified {Path(path).parent.parent.name}: batch sizes {list(sizes)} match row-by-row")


def _tensor_json(arr: np.ndarray) -> dict:
    arr = np.ascontiguousarray(arr)
    dt = V2_DTYPES[arr.dtype]
    if dt == "BOOL":
        data = [bool(x) for x in arr.reshape(-1)]
    elif dt == "BYTES":
        data = [x.decode() if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)]
    elif dt in ("FP32", "FP64", "FP16"):
        data = [float(x) for x in arr.reshape(-1)]
    else:
        data = [int(x) for x in arr.reshape(-1)]
    return {"datatype": dt, "shape": [int(s) for s in arr.shape], "data": data}


def write_samples(name: str, feeds: list[dict], path=None) -> Path:
    """Run each feed through ONNX Runtime and write models/<name>/samples.json."""
    path = path or onnx_path(name)
    sess = session(path)
    out_names = [o.name for o in sess.get_outputs()]
    samples = []
    for feed in feeds:
        outs = sess.run(None, feed)
        samples.append({
            "inputs": {k: _tensor_json(v) for k, v in feed.items()},
            "outputs": {k: _tensor_json(v) for k, v in zip(out_names, outs)},
        })
    target = save_samples(name, samples, ensure_ascii=True)
    size = target.stat().st_size
    assert size < 100_000, f"{target} is {size} bytes"
    return target


def save_samples(name: str, samples: list, file: str = "samples.json", *, ensure_ascii: bool = False) -> Path:
    """Write `{"model": name, "samples": samples}` and a newline to models/<name>/<file>."""
    target = model_dir(name) / file
    with open(target, "w") as f:
        json.dump({"model": name, "samples": samples}, f, ensure_ascii=ensure_ascii)
        f.write("\n")
    return target


def io_table(path) -> str:
    """Markdown rows (name, dtype, shape) read back from the exported graph."""
    model = onnx.load(str(path))
    rows = []
    for kind, vis in (("input", model.graph.input), ("output", model.graph.output)):
        for vi in vis:
            tt = vi.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
            rows.append((kind, vi.name, ONNX_TO_V2[tt.elem_type], shape))
    return rows


def write_card(name: str, *, title: str, family: str, paper: str, data: str,
               meanings: dict, metric: str, body: str = "", script: str,
               samples_note: str = "") -> Path:
    """Write models/<name>/README.md (model card)."""
    path = onnx_path(name)
    size_kb = path.stat().st_size / 1024
    lines = [
        f"# {name}",
        "",
        title,
        "",
        f"- **Family:** {family}",
        f"- **Paper:** {paper}",
        f"- **Data:** {data}",
        f"- **Held-out metric:** {metric}",
        f"- **File:** `1/model.onnx` ({size_kb:.0f} KB, ONNX IR {IR_VERSION}, single file)",
        "",
        "## Inputs and outputs",
        "",
        "| | name | datatype | shape | meaning |",
        "|---|---|---|---|---|",
    ]
    for kind, n, dt, shape in io_table(path):
        lines.append(f"| {kind} | `{n}` | {dt} | `{shape}` | {meanings.get(n, '')} |")
    lines += ["", "`-1` marks a dynamic axis. Axis 0 is always the batch axis.", ""]
    if body:
        lines += [body.strip(), ""]
    lines += [
        "## Reference samples",
        "",
        samples_note or ("`samples.json` holds small batches of held-out (test split) rows with the "
                         "outputs ONNX Runtime (Python, CPU) produced at export time, in KServe V2 tensor form."),
        "",
        "## Regenerate",
        "",
        "```sh",
        "cd models/train",
        f"python {script}",
        "```",
        "",
        "See `models/train/README.md` for the environment. Training is seeded; results "
        "may differ slightly across library versions and CPUs.",
        "",
    ]
    target = model_dir(name) / "README.md"
    target.write_text("\n".join(lines))
    return target


def publish_fixture(name: str, meta: dict, feeds: list[dict], *, title: str, meanings: dict,
                    body: str, samples_note: str) -> None:
    """Write what a protocol test fixture (built with the onnx helper API, not trained)
    publishes besides its graph: samples.json from `feeds`, the model card (family, paper
    and metric from `meta`, no training data) and its exact-output metric."""
    write_samples(name, feeds)
    write_card(
        name,
        title=title,
        family=meta["family"], paper=meta["paper"], data="none (no training data)",
        metric=meta["metric"], meanings=meanings, body=body, script=f"{name}.py",
        samples_note=samples_note,
    )
    save_metrics(name, {"exact": True})
    print(f"{name}: ok")


def save_metrics(name: str, metrics: dict) -> None:
    """Record headline metrics in models/train/metrics.json (used for models/README.md)."""
    p = Path(__file__).with_name("metrics.json")
    allm = json.loads(p.read_text()) if p.exists() else {}
    allm[name] = metrics
    p.write_text(json.dumps(allm, indent=2, sort_keys=True) + "\n")

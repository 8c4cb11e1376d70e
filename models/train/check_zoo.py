"""Re-check the whole zoo against its files: every samples.json reproduces with ONNX Runtime,
every graph has a dynamic batch axis, IR 10, metadata, and the size limits hold. Samples of a
model with `[features]` hold raw fields; they go through the reference transforms
(`raw_features.py`) first, as the server's transforms would turn them into graph inputs.
A model's `ranking_samples.json` (`/predict` ranking requests: context once, candidates in
columns or rows) is checked on the explicitly repeated request, top-k order included."""
import json
import tomllib

import numpy as np

import common
import raw_features
from make_index import ORDER

NP = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64,
      "INT32": np.int32, "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_,
      "BYTES": np.object_}


class ContextModel:
    """A model with `[context]`: its context graph runs first and its outputs join the
    feed of model.onnx, as the server runs them (the context repeated on every row)."""

    def __init__(self, d, path, context_file):
        self.context = common.session(d / "1" / context_file)
        self.scorer = common.session(path)

    def get_outputs(self):
        return self.scorer.get_outputs()

    def run(self, names, feed):
        inputs = {i.name: feed[i.name] for i in self.context.get_inputs()}
        fed = zip([o.name for o in self.context.get_outputs()], self.context.run(None, inputs))
        full = {**feed, **dict(fed)}
        return self.scorer.run(names, {i.name: full[i.name] for i in self.scorer.get_inputs()})


def session_of(d, path):
    """model.onnx's session, or both graphs' for a model with a context graph."""
    cfg = d / "config.toml"
    context = tomllib.loads(cfg.read_text()).get("context") if cfg.exists() else None
    if context:
        common.check_dynamic_batch(d / "1" / context["model"])
        return ContextModel(d, path, context["model"])
    return common.session(path)


def check_ranking(d, features, sess):
    """Each ranking sample: the context repeated for every candidate gives the expected
    scores; the expected top-k is their sort, best first, ties to the lower index."""
    s = json.loads((d / "ranking_samples.json").read_text())
    assert s["model"] == d.name and len(s["samples"]) == 3
    outs = [o.name for o in sess.get_outputs()]
    assert len(outs) == 1, "ranking samples need a single score output"
    for smp in s["samples"]:
        req, want = smp["request"], smp["expected"]
        cands = req["candidates"]
        if isinstance(cands, list):
            cands = {k: [row[k] for row in cands] for k in cands[0]}
        n = len(next(iter(cands.values())))
        fields = {k: [v] * n for k, v in req["context"].items() if k in features.fields}
        fields.update({k: v for k, v in cands.items() if k in features.fields})
        tensors = {k: np.array([v] * n) for k, v in req["context"].items() if k not in features.fields}
        tensors.update({k: np.array(v) for k, v in cands.items() if k not in features.fields})
        feed = features.graph_inputs(fields, {k: v.astype(np.int64) for k, v in tensors.items()})
        score = sess.run(None, feed)[0].reshape(-1)
        assert score.shape == (n,) and np.allclose(score, want["score"], atol=1e-5, rtol=0)
        order = np.argsort(-np.array(want["score"], dtype=np.float32), kind="stable")[:req["top_k"]]
        assert want["top_k"]["indices"] == [int(i) for i in order]
        assert np.allclose(want["top_k"]["scores"], np.array(want["score"])[order], atol=0, rtol=0)
    print(f"  {d.name:16s} ranking samples ok (N = {[len(x['expected']['score']) for x in s['samples']]})")


def main():
    total = 0
    for name in ORDER:
        d = common.MODELS_DIR / name
        path = common.onnx_path(name)
        common.check_dynamic_batch(path)
        assert (d / "README.md").exists()
        if name == "din_ctr":
            cfg = (d / "config.toml").read_text()
            assert "[inputs.hist_items]" in cfg and "[inputs.hist_mask]" in cfg
        assert not list((d / "1").glob("*.data")), "external data file found"
        features = None
        if (d / "config.toml").exists() and "[features]" in (d / "config.toml").read_text():
            features = raw_features.Features(d / "config.toml")
        s = json.loads((d / "samples.json").read_text())
        assert s["model"] == name and 3 <= len(s["samples"]) <= 4
        sess = session_of(d, path)
        outs = [o.name for o in sess.get_outputs()]
        for smp in s["samples"]:
            if features:
                fields = {k: v["data"] for k, v in smp["inputs"].items() if k in features.fields}
                tensors = {k: np.array(v["data"], dtype=NP[v["datatype"]]).reshape(v["shape"])
                           for k, v in smp["inputs"].items() if k not in features.fields}
                feed = features.graph_inputs(fields, tensors)
            else:
                feed = {k: np.array(v["data"], dtype=NP[v["datatype"]]).reshape(v["shape"])
                        for k, v in smp["inputs"].items()}
            got = dict(zip(outs, sess.run(None, feed)))
            for k, v in smp["outputs"].items():
                want = np.array(v["data"], dtype=NP[v["datatype"]]).reshape(v["shape"])
                assert got[k].dtype == want.dtype and got[k].shape == want.shape, (name, k)
                if want.dtype.kind in "biuO":
                    assert np.array_equal(got[k], want), (name, k)
                else:
                    assert np.allclose(got[k], want, atol=1e-5, rtol=0), (name, k)
        if (d / "ranking_samples.json").exists():
            check_ranking(d, features, sess)
        size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        total += size
        print(f"  {name:16s} ok  {size / 1024:7.1f} KB")
    print(f"zoo ok: {len(ORDER)} models, {total / 1024 / 1024:.2f} MB")
    assert total < 10 * 1024 * 1024


if __name__ == "__main__":
    main()

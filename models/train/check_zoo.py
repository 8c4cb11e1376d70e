"""Re-check the whole zoo against its files: every samples.json reproduces with ONNX Runtime,
every graph has a dynamic batch axis, IR 10, metadata, and the size limits hold. Samples of a
model with `[features]` hold raw fields; they go through the reference transforms
(`raw_features.py`) first, as the server's transforms would turn them into graph inputs."""
import json

import numpy as np

import common
import raw_features
from make_index import ORDER

NP = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64,
      "INT32": np.int32, "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_,
      "BYTES": np.object_}


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
        sess = common.session(path)
        outs = [o.name for o in sess.get_outputs()]
        for smp in s["samples"]:
            if features:
                feed = features.graph_inputs({k: v["data"] for k, v in smp["inputs"].items()})
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
        size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        total += size
        print(f"  {name:16s} ok  {size / 1024:7.1f} KB")
    print(f"zoo ok: {len(ORDER)} models, {total / 1024 / 1024:.2f} MB")
    assert total < 10 * 1024 * 1024


if __name__ == "__main__":
    main()

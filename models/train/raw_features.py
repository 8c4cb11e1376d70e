"""Reference implementation of the server's raw-feature transforms (`[features]` in a model's
config.toml), written from the training libraries' definitions, not from the server's code:

- ``hash_buckets = n``: FarmHash Fingerprint64 of the UTF-8 text modulo n (``pyfarmhash``'s
  ``fingerprint64``, which wraps Google's C++ FarmHash; Keras ``Hashing(num_bins=n)``);
  integers are hashed as their decimal text.
- ``vocabulary`` + ``oov_buckets = k``: Keras ``StringLookup(num_oov_indices=k)``: the token on
  line i maps to k + i, an unknown token to Fingerprint64 % k (0 when k = 1).
- ``boundaries``: Keras ``Discretization(bin_boundaries=...)``: the number of boundaries <= x.
- ``mean``/``std``: (x - mean) / std; ``log1p``: ln(1 + x); no key: x as it is.

Ids become INT64 columns, numbers FP32 (computed in float64, then rounded), in the order of
each input's ``from`` list. Training and the zoo's checks use ``graph_inputs`` to turn raw
columns into the graph's inputs, so the samples prove the server computes the same. Keys the
server ignores here (``broadcast``: how many rows a request may send, not what a value becomes)
leave the transforms unchanged.
"""
from __future__ import annotations

import bisect
import math
import tomllib
from pathlib import Path

import farmhash
import numpy as np


class Features:
    def __init__(self, config_path: Path):
        config_path = Path(config_path)
        cfg = tomllib.loads(config_path.read_text())
        self.fields = cfg.get("features", {})
        self.inputs = {name: c["from"] for name, c in cfg.get("inputs", {}).items() if c.get("from")}
        self.vocab = {}
        for name, f in self.fields.items():
            if "vocabulary" in f:
                tokens = (config_path.parent / f["vocabulary"]).read_text().splitlines()
                self.vocab[name] = {t: i for i, t in enumerate(tokens)}

    def gives_ids(self, name: str) -> bool:
        f = self.fields[name]
        return any(k in f for k in ("hash_buckets", "vocabulary", "boundaries"))

    def value(self, name: str, x):
        """One raw value of field `name` -> its id (int) or number (float)."""
        f = self.fields[name]
        if "hash_buckets" in f:
            return farmhash.fingerprint64(str(x)) % f["hash_buckets"]
        if "vocabulary" in f:
            k = f.get("oov_buckets", 1)
            token = str(x)
            if token in self.vocab[name]:
                return k + self.vocab[name][token]
            if k == 0:
                raise ValueError(f"{name}: unknown token {token!r}")
            return 0 if k == 1 else farmhash.fingerprint64(token) % k
        if "boundaries" in f:
            return bisect.bisect_right(f["boundaries"], float(x))
        if "mean" in f:
            return (float(x) - f["mean"]) / f["std"]
        if f.get("log1p"):
            return math.log1p(float(x))
        return float(x)

    def graph_inputs(self, columns: dict, tensors: dict | None = None) -> dict:
        """Raw columns (field -> list of values; absent fields take their default) -> the
        graph inputs built from them, plus `tensors` (graph inputs sent as tensors, without
        `from`) as they are."""
        n = len(next(iter(columns.values())))
        out = dict(tensors or {})
        for inp, names in self.inputs.items():
            cols = []
            for name in names:
                raw = columns.get(name)
                if raw is None:
                    raw = [self.fields[name]["default"]] * n
                cols.append([self.value(name, x) for x in raw])
            dtype = np.int64 if all(self.gives_ids(nm) for nm in names) else np.float32
            out[inp] = np.array(cols, dtype=np.float64 if dtype == np.float32 else np.int64).T.astype(dtype)
        return out

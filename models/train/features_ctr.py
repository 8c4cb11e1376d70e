"""features_ctr: a CTR model trained on raw columns (user id strings, country and device
codes, integer ad ids, age, income, recent clicks), served with the server's `[features]`
transforms so clients send those raw columns.

The synthetic log is generated from a fixed seed (see `generate`). Training turns the raw
columns into the graph's inputs with `raw_features.py` (the reference transforms: pyfarmhash
Fingerprint64, vocabulary lookup, bucketizing, standardising, log1p) driven by the model's
own config.toml, so the served model sees exactly what it was trained on. The samples are
written in raw form (the fields a client sends) with the outputs ONNX Runtime gave for the
transformed inputs.
"""

import numpy as np
import torch
import torch.nn as nn

import common
import ctr_common
from ctr_common import AGE_BOUNDARIES, COUNTRIES, RARE_COUNTRIES
import raw_features

NAME = "features_ctr"
SEED = 2024
N_ROWS = 100_000
EPOCHS = 6
EMB = 8
USERS = 5000
HASH_USERS = 1000
ADS = 800
HASH_ADS = 500
DEVICES = ["ios", "android", "web"]
DATA_DESC = (f"seeded synthetic click log ({N_ROWS // 1000}k rows of raw columns: user id strings "
             f"({USERS} users, Zipf), 20 country codes (15 in the vocabulary), 3 devices, integer ad ids "
             f"({ADS}), age, income, clicks in the last 7 days; clicks from a hidden logistic model); "
             "80/10/10 train/val/test split, metrics on test")


def zipf(rng, n, k, a=1.1):
    p = np.arange(1, k + 1) ** (-a)
    p /= p.sum()
    return rng.permutation(k)[rng.choice(k, size=n, p=p)]


def generate(n=N_ROWS, seed=SEED):
    """Raw columns (lists of Python values, as a client would send them) and clicks."""
    rng = np.random.default_rng(seed)
    user = zipf(rng, n, USERS)
    countries = COUNTRIES + RARE_COUNTRIES
    country = zipf(rng, n, len(countries), a=1.3)
    device = rng.choice(3, size=n, p=[0.45, 0.4, 0.15])
    ad = zipf(rng, n, ADS)
    age = np.clip(rng.normal(38, 13, n), 14, 90).astype(np.int64)
    income = np.maximum(rng.normal(52000, 21000, n), 0.0).round(2)
    clicks = rng.geometric(0.25, n) - 1

    w_user = rng.normal(0, 0.6, USERS)
    w_country = rng.normal(0, 0.4, len(countries))
    w_device = np.array([0.3, 0.0, -0.4])
    w_ad = rng.normal(0, 0.7, ADS)
    logit = (-1.8 + w_user[user] + w_country[country] + w_device[device] + w_ad[ad]
             + 0.5 * np.log1p(clicks) - 0.6 * ((age - 30) / 15) ** 2 * (device == 2)
             + 0.3 * (income - 52000) / 21000)
    prob = 1 / (1 + np.exp(-logit))
    click = (rng.random(n) < prob).astype(np.float32)
    columns = {
        "user_id": [f"u{u:05d}" for u in user],
        "country": [countries[c] for c in country],
        "device": [DEVICES[d] for d in device],
        "ad_id": [int(100_000 + a) for a in ad],
        "age": [int(a) for a in age],
        "income": [float(x) for x in income],
        "clicks_7d": [int(c) for c in clicks],
    }
    return columns, click, prob


def write_config(columns, train_rows):
    """config.toml and the vocabulary files; income's mean and std come from the training split."""
    d = common.model_dir(NAME)
    d.mkdir(parents=True, exist_ok=True)
    (d / "country.txt").write_text("\n".join(COUNTRIES) + "\n")
    (d / "device.txt").write_text("\n".join(DEVICES) + "\n")
    income = np.array(columns["income"][:train_rows])
    mean, std = float(income.mean().round(2)), float(income.std().round(2))
    (d / "config.toml").write_text(f"""# Raw request fields and the transforms the model was trained with (models/train/features_ctr.py).
max_batch_size = 256

[features]
user_id = {{ hash_buckets = {HASH_USERS} }}
country = {{ vocabulary = "country.txt", oov_buckets = 2 }}
device = {{ vocabulary = "device.txt", oov_buckets = 1, default = "web" }}
ad_id = {{ hash_buckets = {HASH_ADS} }}
age = {{ boundaries = {AGE_BOUNDARIES} }}
income = {{ mean = {mean}, std = {std} }}
clicks_7d = {{ log1p = true, default = 0 }}

[inputs.ids]
from = ["user_id", "country", "device", "ad_id", "age"]

[inputs.dense]
from = ["income", "clicks_7d"]
""")
    return raw_features.Features(d / "config.toml")


class FeaturesCtr(nn.Module):
    def __init__(self, vocabs, n_dense=2, emb=EMB, hidden=(64, 32)):
        super().__init__()
        self.emb = ctr_common.HashedEmbedding(vocabs, emb)
        self.mlp = nn.Sequential(ctr_common.mlp((len(vocabs) * emb + n_dense,) + hidden, dropout=0.1),
                                 nn.Linear(hidden[-1], 1))

    def forward(self, cat_ids, dense):
        return self.mlp(torch.cat([self.emb(cat_ids).flatten(1), dense], dim=1))


class Named(nn.Module):
    """The exported graph: inputs `ids` and `dense`, output `click_prob`."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, ids, dense):
        return torch.sigmoid(self.net(ids, dense))


def main():
    common.seed_all(0)
    columns, click, prob = generate()
    n = len(click)
    a, b = int(0.8 * n), int(0.9 * n)
    features = write_config(columns, a)
    x = features.graph_inputs(columns)
    ids, dense = x["ids"], x["dense"]
    split = lambda arr: (arr[:a], arr[a:b], arr[b:])
    data = {"cat": split(ids), "dense": split(dense), "click": split(click), "prob": split(prob)}
    vocabs = [HASH_USERS, 2 + len(COUNTRIES), 1 + len(DEVICES), HASH_ADS, len(AGE_BOUNDARIES) + 1]
    assert all((ids[:, i] >= 0).all() and (ids[:, i] < v).all() for i, v in enumerate(vocabs))
    net = FeaturesCtr(vocabs)
    ctr_common.train(net, data, epochs=EPOCHS)
    m = ctr_common.evaluate(net, data)
    print(f"{NAME}: {m}")
    metric = f"test AUC {m['test_auc']:.4f}, logloss {m['test_logloss']:.4f} ({(n - b) // 1000}k held-out rows)"
    meta = {
        "family": "MLP over embeddings (CTR, raw features transformed in the server)",
        "paper": "Wide & Deep Learning for Recommender Systems (Cheng et al., 2016, arXiv:1606.07792), deep part; Keras preprocessing layers for the transforms",
        "data": DATA_DESC,
        "metric": metric,
        "description": "Click-through-rate model on raw fields: user_id, country, device, ad_id, age, income, clicks_7d -> click probability",
    }
    model = Named(net).eval()
    batch = torch.export.Dim("batch")
    path = common.export_torch(
        model, (torch.from_numpy(ids[b:b + 4]), torch.from_numpy(dense[b:b + 4])), NAME,
        ["ids", "dense"], ["click_prob"], {"ids": {0: batch}, "dense": {0: batch}}, meta)
    common.verify(path, {"ids": ids[b:b + 17], "dense": dense[b:b + 17]})
    sess = common.session(path)
    p_onnx = sess.run(None, {"ids": ids[b:], "dense": dense[b:]})[0][:, 0]
    p_torch = ctr_common.predict(net, ids[b:], dense[b:])
    assert np.max(np.abs(p_onnx - p_torch)) < 1e-5

    # Samples in raw form: test rows, then rows with an unknown country and device, an
    # unseen user and a missing device and clicks_7d (their defaults apply).
    def raw(rows):
        return {k: [columns[k][r] for r in rows] for k in columns}

    odd = raw(range(b + 4, b + 8))
    odd["country"][0], odd["device"][1], odd["user_id"][2] = "ZZ", "tv", "new-user-é"
    no_defaults = raw(range(b + 8, b + 10))
    del no_defaults["device"], no_defaults["clicks_7d"]
    batches = [raw([b]), raw(range(b + 1, b + 4)), odd, no_defaults]
    dtypes = {"user_id": "BYTES", "country": "BYTES", "device": "BYTES", "ad_id": "INT64",
              "age": "INT64", "income": "FP64", "clicks_7d": "INT64"}
    samples = []
    for cols in batches:
        feeds = features.graph_inputs(cols)
        (out,) = sess.run(None, feeds)
        samples.append({
            "inputs": {k: {"datatype": dtypes[k], "shape": [len(v)], "data": v} for k, v in cols.items()},
            "outputs": {"click_prob": {"datatype": "FP32", "shape": list(out.shape),
                                       "data": [float(v) for v in out.reshape(-1)]}},
        })
    common.save_samples(NAME, samples)

    body = (
        "## Raw features\n\n"
        "Clients send the raw columns; the server applies the transforms declared in `config.toml` "
        "(bit-exactly what `models/train/raw_features.py` computes with `pyfarmhash` for training):\n\n"
        "| field | sent as | transform | column |\n|---|---|---|---|\n"
        f"| `user_id` | BYTES (`\"u00042\"`) | FarmHash Fingerprint64 mod {HASH_USERS} | `ids[:, 0]` |\n"
        "| `country` | BYTES (`\"DE\"`) | `country.txt` lookup, 2 OOV buckets | `ids[:, 1]` |\n"
        "| `device` | BYTES (`\"ios\"`), default `\"web\"` | `device.txt` lookup, 1 OOV bucket | `ids[:, 2]` |\n"
        f"| `ad_id` | INT64 (`100123`) | Fingerprint64 of the decimal text mod {HASH_ADS} | `ids[:, 3]` |\n"
        f"| `age` | INT64 or FP32 | bucketized at {AGE_BOUNDARIES} | `ids[:, 4]` |\n"
        "| `income` | FP32/FP64 | standardised with the training split's mean and std | `dense[:, 0]` |\n"
        "| `clicks_7d` | INT64, default 0 | log1p | `dense[:, 1]` |\n\n"
        "## Architecture\n\n"
        f"Per-column embeddings (dim {EMB}) of the 5 id columns, concatenated with the 2 dense "
        "numbers -> MLP 42-64-32-1 (ReLU, dropout 0.1) -> sigmoid. "
        f"Trained {EPOCHS} epochs with Adam (batch 1024, L2 penalty 3e-4 on the embedding table), "
        "best epoch on validation AUC.\n\n"
        "## Data\n\n"
        f"`generate()` in `models/train/features_ctr.py` (seed {SEED}): {N_ROWS} rows, "
        f"{100 * m['click_rate']:.1f}% click rate. The hidden click model's own probabilities reach "
        f"test AUC {m['oracle_auc']:.4f} (the ceiling)."
    )
    meanings = {"ids": "5 id columns built from raw fields by the server",
                "dense": "2 numbers built from raw fields by the server",
                "click_prob": "predicted click probability in (0, 1)"}
    common.write_card(NAME, title="Click-through-rate model served on raw features (strings, integer ids and numbers).",
                      family=meta["family"], paper=meta["paper"], data=meta["data"], metric=meta["metric"],
                      meanings=meanings, body=body, script="features_ctr.py",
                      samples_note="`samples.json` holds raw-field requests (test rows; one batch with an unknown "
                                   "country, an unknown device and an unseen user; one without `device` and "
                                   "`clicks_7d`, so their defaults apply) and the outputs ONNX Runtime (Python, CPU) "
                                   "gave for the inputs `raw_features.py` built from them.")
    common.save_metrics(NAME, m)


if __name__ == "__main__":
    main()

"""Shared pieces of the CTR models: in-graph id hashing, training loop, export and checks.

Contract of every CTR model: inputs ``cat_ids`` INT64 [-1, 8] and ``dense`` FP32 [-1, 4],
output ``click_prob`` FP32 [-1, 1]. Ids are reduced into range inside the graph with
``remainder(ids, vocab)`` (ONNX ``Mod``), so any int64 value is a valid id.
"""
import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.metrics import log_loss, roc_auc_score

import common
import ctr_data


class HashedEmbedding(nn.Module):
    """Per-field embedding tables stored as one table; ids are hashed with a modulo first."""

    def __init__(self, vocabs, dim):
        super().__init__()
        vocab = torch.tensor(vocabs, dtype=torch.int64)
        offsets = torch.cumsum(torch.tensor([0] + list(vocabs[:-1]), dtype=torch.int64), 0)
        self.register_buffer("vocab", vocab)
        self.register_buffer("offsets", offsets)
        self.table = nn.Embedding(int(sum(vocabs)), dim)
        nn.init.normal_(self.table.weight, std=0.05)

    def hashed(self, cat_ids):
        return torch.remainder(cat_ids, self.vocab)

    def forward(self, cat_ids):  # [B, F] -> [B, F, D]
        return self.table(self.hashed(cat_ids) + self.offsets)


def mlp(dims, dropout=0.1, batchnorm=False):
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers.append(nn.Linear(a, b))
        if batchnorm:
            layers.append(nn.BatchNorm1d(b))
        layers.append(nn.ReLU())
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class ClickProb(nn.Module):
    """Wraps a logit model: click_prob = sigmoid(logit), shape [B, 1]."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, cat_ids, dense):
        return torch.sigmoid(self.net(cat_ids, dense))


def predict(net, cat, dense, batch=8192):
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(cat), batch):
            out.append(torch.sigmoid(net(torch.from_numpy(cat[i:i + batch]),
                                         torch.from_numpy(dense[i:i + batch]))).numpy())
    return np.concatenate(out)[:, 0]


# The raw fields the synthetic click logs of features_ctr and ranking_ctr draw from.
COUNTRIES = ["US", "DE", "FR", "GB", "IN", "BR", "JP", "CA", "ES", "IT", "MX", "NL", "SE", "PL", "KR"]
RARE_COUNTRIES = ["IS", "LU", "MT", "EE", "LV"]  # in the log, not in the vocabulary
AGE_BOUNDARIES = [18, 25, 35, 50, 65]


def fit(net, n_rows, batch_loss, val_auc, epochs, lr, batch, seed, wd=0.0):
    """Adam over shuffled mini-batches of ``n_rows`` training rows (``batch_loss(idx)`` is a
    batch's loss); keeps the epoch with the best validation AUC (``val_auc()``) and returns it."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=wd)
    best, best_state = -1.0, None
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(n_rows, generator=g)
        for i in range(0, len(perm), batch):
            loss = batch_loss(perm[i:i + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        auc = val_auc()
        print(f"  epoch {ep + 1}: train loss {loss.item():.4f} val AUC {auc:.4f}")
        if auc > best:
            best, best_state = auc, copy.deepcopy(net.state_dict())
    net.load_state_dict(best_state)
    net.eval()
    return best


def train(net, data, epochs=10, lr=2e-3, batch=1024, wd=0.0, emb_l2=3e-4, seed=0):
    """Adam on binary cross-entropy; keeps the epoch with the best validation AUC."""
    cat, dense, y = (torch.from_numpy(data[k][0]) for k in ("cat", "dense", "click"))

    def batch_loss(idx):
        logit = net(cat[idx], dense[idx])[:, 0]
        loss = F.binary_cross_entropy_with_logits(logit, y[idx])
        if emb_l2:
            loss = loss + emb_l2 * sum(m.table.weight.pow(2).sum() for m in net.modules()
                                       if isinstance(m, HashedEmbedding))
        return loss

    def val_auc():
        return roc_auc_score(data["click"][1], predict(net, data["cat"][1], data["dense"][1]))

    return fit(net, len(y), batch_loss, val_auc, epochs, lr, batch, seed, wd)


def evaluate(net, data):
    p = predict(net, data["cat"][2], data["dense"][2])
    y = data["click"][2]
    return {"test_auc": float(roc_auc_score(y, p)),
            "test_logloss": float(log_loss(y, p.astype(np.float64))),
            "oracle_auc": float(roc_auc_score(y, data["prob"][2])),
            "oracle_logloss": float(log_loss(y, data["prob"][2])),
            "click_rate": float(np.concatenate(data["click"]).mean())}


def export_and_check(name, net, data, meta, arch_text, title):
    model = ClickProb(net).eval()
    cat_te, dense_te = data["cat"][2], data["dense"][2]
    batch = torch.export.Dim("batch")
    path = common.export_torch(
        model, (torch.from_numpy(cat_te[:4]), torch.from_numpy(dense_te[:4])), name,
        ["cat_ids", "dense"], ["click_prob"],
        {"cat_ids": {0: batch}, "dense": {0: batch}}, meta)
    common.verify(path, {"cat_ids": cat_te[:17], "dense": dense_te[:17]})

    sess = common.session(path)
    # ONNX matches torch on the whole test split
    p_onnx = sess.run(None, {"cat_ids": cat_te, "dense": dense_te})[0][:, 0]
    p_torch = predict(net, cat_te, dense_te)
    assert np.max(np.abs(p_onnx - p_torch)) < 1e-5
    # any int64 is a valid id: shifted / negative / extreme ids hash to the same row
    vocab = np.array(ctr_data.VOCABS, dtype=np.int64)
    rng = np.random.default_rng(7)
    base = cat_te[:17]
    k = rng.integers(-10**12, 10**12, size=base.shape)
    shifted = base + k * vocab
    ref = sess.run(None, {"cat_ids": base, "dense": dense_te[:17]})[0]
    got = sess.run(None, {"cat_ids": shifted, "dense": dense_te[:17]})[0]
    assert np.max(np.abs(ref - got)) < 1e-6
    extreme = np.array([[np.iinfo(np.int64).min, np.iinfo(np.int64).max, -1, 0, 1,
                         -10**18, 10**18, 12345678901]] * 2, dtype=np.int64)
    ext = sess.run(None, {"cat_ids": extreme, "dense": dense_te[:2]})[0]
    expect = sess.run(None, {"cat_ids": np.mod(extreme, vocab), "dense": dense_te[:2]})[0]
    assert np.all(np.isfinite(ext)) and np.max(np.abs(ext - expect)) < 1e-6
    print("  hashed ids: shifted, negative and extreme int64 ids verified")

    # samples: 1, 2 and 3 test rows, then 4 test rows with ids shifted by multiples of the vocab
    shifted4 = cat_te[6:10] + np.array([[-1], [3], [-7_000_000_000], [123_456_789]]) * vocab
    feeds = [
        {"cat_ids": cat_te[0:1], "dense": dense_te[0:1]},
        {"cat_ids": cat_te[1:3], "dense": dense_te[1:3]},
        {"cat_ids": cat_te[3:6], "dense": dense_te[3:6]},
        {"cat_ids": shifted4.astype(np.int64), "dense": dense_te[6:10]},
    ]
    common.write_samples(name, feeds)
    return path


def card(name, meta, metrics, arch_text, title, script):
    body = (
        "## Architecture\n\n" + arch_text.strip() + "\n\n"
        "## Input contract\n\n"
        "Field `f` of `cat_ids` is reduced into range inside the graph as `remainder(id, vocab[f])` "
        f"(ONNX `Mod`, result in `[0, vocab)`), with vocab sizes `{ctr_data.VOCABS}`, "
        "so any int64 (negative or huge) is a valid id; ids equal modulo the vocabulary size "
        "give identical outputs. `dense` holds the 4 float features as in the log (features 0-2 "
        "standard normal, feature 3 its absolute value; no further normalisation). The 4th reference sample uses ids "
        "shifted by multiples of the vocab sizes (negative and > 2^32).\n\n"
        "## Data\n\n"
        "The click log comes from `models/train/ctr_data.py` (seed 1234): 200,000 rows, "
        f"{100 * metrics['click_rate']:.1f}% click rate. The hidden click model's own probabilities reach test AUC "
        f"{metrics['oracle_auc']:.4f} / logloss {metrics['oracle_logloss']:.4f} (the ceiling); "
        f"predicting the base rate gives AUC 0.5."
    )
    meanings = {
        "cat_ids": "8 categorical field ids (any int64; hashed per field in the graph)",
        "dense": "4 dense float features",
        "click_prob": "predicted click probability in (0, 1)",
    }
    common.write_card(name, title=title, family=meta["family"], paper=meta["paper"],
                      data=meta["data"], metric=meta["metric"], meanings=meanings,
                      body=body, script=script)

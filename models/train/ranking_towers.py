"""ranking_towers: the ranking_ctr data and raw fields, served as two graphs so the server can
compute the user part once per request.

`1/context.onnx` is the user tower: `user` INT64 [N, 3] (built by the server from the raw
context fields `user_id`, `country`, `age`) and `history` INT64 [N, 50] -> `user_vec` FP32
[N, 32]. `1/model.onnx` is the scorer: `user_vec` (fed by the context graph, never by clients),
`item_ids` INT64 [N, 2] (from `item_id`, `category`) and `item_dense` FP32 [N, 1] (`price`) ->
`score` FP32 [N, 1]. config.toml's `[context]` table names the context graph. A ranking request
sends the context once; the server runs the user tower on that one row and the scorer on the N
candidates. The two graphs are exported from one trained module, whose joined graph
(`joined.onnx`, written beside the model directory, not served) gives the samples' expected
outputs.

Data, transforms and samples are ranking_ctr's (`ranking_ctr.generate`, same seed and splits),
so the two models are compared on the same held-out impressions.
"""
import json
import shutil

import numpy as np
import torch
import torch.nn as nn

import common
import ctr_common
import ranking_ctr as rc

NAME = "ranking_towers"
USER_DIM = 32
HIST_HIDDEN = 32
EPOCHS = 20
INPUTS = rc.INPUTS


class UserTower(nn.Module):
    """Embeddings of the user columns; the history through a position-wise MLP, pooled by a
    learned attention query (softmax over the real positions only) and by the mean; an MLP to
    the user vector. Nothing here sees the candidate, so it runs once per request."""

    def __init__(self, user_vocabs):
        super().__init__()
        self.user_emb = ctr_common.HashedEmbedding(user_vocabs, rc.EMB_USER)
        self.register_buffer("n_hist", torch.tensor(rc.N_ITEMS + 1, dtype=torch.int64))
        self.hist_emb = nn.Embedding(rc.N_ITEMS + 1, rc.EMB_ITEM)
        nn.init.normal_(self.hist_emb.weight, std=0.05)
        self.hist_mlp = nn.Sequential(nn.Linear(rc.EMB_ITEM, HIST_HIDDEN), nn.ReLU(),
                                      nn.Linear(HIST_HIDDEN, HIST_HIDDEN))
        self.attend = nn.Linear(HIST_HIDDEN, 1)
        width = len(user_vocabs) * rc.EMB_USER + 2 * HIST_HIDDEN
        self.out = nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, USER_DIM))

    def forward(self, user, history):
        u = self.user_emb(user).flatten(1)                                   # [B, 24]
        e = self.hist_mlp(self.hist_emb(torch.remainder(history, self.n_hist)))  # [B, L, H]
        mask = history != 0
        w = torch.softmax(self.attend(e).squeeze(-1).masked_fill(~mask, -1e9), dim=1) * mask
        attended = (w.unsqueeze(-1) * e).sum(1)                              # [B, H]
        m = mask.to(e.dtype)
        mean = (e * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
        return self.out(torch.cat([u, attended, mean], dim=1))               # [B, 32]


class Scorer(nn.Module):
    """Item embeddings and price to an item vector; [user, item, user x item] -> MLP -> logit."""

    def __init__(self, item_vocabs, hidden=(64, 32)):
        super().__init__()
        self.item_emb = ctr_common.HashedEmbedding(item_vocabs, rc.EMB_ITEM)
        self.item = nn.Linear(2 * rc.EMB_ITEM + 1, USER_DIM)
        self.mlp = nn.Sequential(ctr_common.mlp((3 * USER_DIM,) + hidden, dropout=0.1),
                                 nn.Linear(hidden[-1], 1))

    def logit(self, user_vec, item_ids, item_dense):
        it = self.item(torch.cat([self.item_emb(item_ids).flatten(1), item_dense], dim=1))
        return self.mlp(torch.cat([user_vec, it, user_vec * it], dim=1))

    def forward(self, user_vec, item_ids, item_dense):
        return torch.sigmoid(self.logit(user_vec, item_ids, item_dense))


class RankingTowers(nn.Module):
    """The joined model: what training optimises and what the samples' expectations come from."""

    def __init__(self, user_vocabs, item_vocabs):
        super().__init__()
        self.tower = UserTower(user_vocabs)
        self.scorer = Scorer(item_vocabs)
        # rc.train's L2 term reads these three tables
        self.user_emb = self.tower.user_emb
        self.item_emb = self.scorer.item_emb
        self.hist_emb = self.tower.hist_emb

    def logit(self, user, history, item_ids, item_dense):
        return self.scorer.logit(self.tower(user, history), item_ids, item_dense)

    def forward(self, user, history, item_ids, item_dense):
        return torch.sigmoid(self.logit(user, history, item_ids, item_dense))


def write_config():
    """ranking_ctr's raw fields and vocabularies, plus the context graph."""
    src, d = common.model_dir(rc.NAME), common.model_dir(NAME)
    for f in ("country.txt", "category.txt"):
        shutil.copy(src / f, d / f)
    text = (src / "config.toml").read_text()
    body = text[text.index("max_batch_size"):]
    (d / "config.toml").write_text(
        "# A ranking model in two graphs (models/train/ranking_towers.py): the user tower\n"
        "# (context.onnx) runs once per request on the broadcast context (user_id, country, age,\n"
        "# history) and feeds `user_vec` to the scorer (model.onnx), which runs once per candidate.\n"
        + body + "\n[context]\nmodel = \"context.onnx\"\n")
    return rc.raw_features.Features(d / "config.toml")


def flush_subnormals(path):
    """Sets the graph's subnormal FP32 weights to zero. Embedding rows that no training example
    reached (hash buckets no item fell in, the out-of-vocabulary category) decay to values below
    1.2e-38, and arithmetic on those runs many times slower on x86 CPUs: a batch of candidates
    whose category is unknown took the scorer about 3x longer. Zero changes no score (the
    values are far below FP32 rounding of anything they are added to)."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(path)
    tiny = np.finfo(np.float32).tiny
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.float32 and ((np.abs(a) < tiny) & (a != 0)).any():
            flushed = np.where(np.abs(a) < tiny, np.float32(0), a).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(flushed, init.name))
    onnx.save(model, path)


def export_graph(module, args, input_names, output_names, meta, file_name):
    batch = torch.export.Dim("batch")
    path = common.export_torch(module, args, NAME, input_names, output_names,
                               {k: {0: batch} for k in input_names}, meta)
    target = path.parent / file_name
    if target != path:
        shutil.move(path, target)
    flush_subnormals(target)
    return target


def write_card(m, meta):
    """The model card, models/ranking_towers/README.md."""
    body = (
        "## Two graphs: the user tower once per request\n\n"
        "| graph | inputs | outputs | runs |\n|---|---|---|---|\n"
        "| `1/context.onnx` (user tower) | `user` INT64 `[-1, 3]`, `history` INT64 `[-1, 50]` | `user_vec` FP32 "
        "`[-1, 32]` | once per row of context: once per ranking request |\n"
        "| `1/model.onnx` (scorer) | `user_vec` FP32 `[-1, 32]` (from the context graph), `item_ids` INT64 "
        "`[-1, 2]`, `item_dense` FP32 `[-1, 1]` | `score` FP32 `[-1, 1]` | once per candidate |\n\n"
        "`[context] model = \"context.onnx\"` in `config.toml` declares the user tower. Clients send the same "
        "raw fields as to `ranking_ctr` (`user_id`, `country`, `age`, `history` once; `item_id`, `category`, "
        "`price` per candidate) and never send `user_vec`. A request that repeats the context on every row is "
        "answered the same, but runs the user tower once per row.\n\n"
        "## Architecture\n\n"
        f"User tower: embeddings (dim {rc.EMB_USER}) of the 3 user columns; history item embeddings (dim "
        f"{rc.EMB_ITEM}) through a position-wise MLP {rc.EMB_ITEM}-{HIST_HIDDEN}-{HIST_HIDDEN}, pooled by a learned "
        "attention query (softmax over the real positions only; padding gets weight 0) and by the mean; MLP to "
        f"a {USER_DIM}-dim user vector. Scorer: item id and category embeddings and the price to a "
        f"{USER_DIM}-dim item vector; [user, item, user x item] -> MLP 96-64-32-1 -> sigmoid. Both trained "
        f"together ({EPOCHS} epochs, Adam, best epoch on validation AUC) on `ranking_ctr`'s data "
        f"(`generate()` in `models/train/ranking_ctr.py`). It ranks less well than `ranking_ctr` (test AUC "
        f"{m['test_auc']:.4f}; the hidden model reaches {m['oracle_auc']:.4f}): the user tower cannot see the "
        "candidate, as DIN's attention does. That is the price of computing the user part once."
        " Subnormal weights (below 1.2e-38: the embedding rows no training example reached, such as the"
        " out-of-vocabulary category, decay to them) are stored as zero: arithmetic on them is many times"
        " slower on x86 CPUs, and zero changes no score."
    )
    meanings = {"user_vec": "the user vector, fed by the context graph (clients do not send it)",
                **rc.CANDIDATE_MEANINGS}
    common.write_card(
        NAME, title="Click-through-rate ranking model in two graphs: a user tower once per request, a scorer per candidate.",
        family=meta["family"], paper=meta["paper"], data=meta["data"], metric=meta["metric"],
        meanings=meanings, body=body, script="ranking_towers.py",
        samples_note="`samples.json` and `ranking_samples.json` hold the same requests as `ranking_ctr`'s, with "
                     "the outputs ONNX Runtime (Python, CPU) gave for the joined graph on the explicitly "
                     "repeated request.")


def main():
    common.seed_all(0)
    users, catalogue, user, cand, click, prob = rc.generate()
    n = len(click)
    a, b = int(0.8 * n), int(0.9 * n)
    features = write_config()
    columns, history = rc.rows(users, catalogue, user, cand)
    x = rc.feeds_for(features, columns, history)
    vocab_user = [rc.HASH_USERS, 2 + len(rc.COUNTRIES), len(rc.AGE_BOUNDARIES) + 1]
    vocab_item = [rc.HASH_ITEMS, 1 + len(rc.CATEGORIES)]
    parts = {"train": slice(0, a), "val": slice(a, b), "test": slice(b, n)}
    data = {p: {**{k: v[s] for k, v in x.items()}, "click": click[s], "prob": prob[s]} for p, s in parts.items()}
    net = RankingTowers(vocab_user, vocab_item)
    rc.train(net, data, epochs=EPOCHS)
    test = data["test"]
    p = rc.predict(net, test)
    m = rc.held_out_metrics(test, p, click)
    print(f"{NAME}: {m}")
    meta = {
        "family": "two-tower ranking model (user tower over the click history, run once per request; scorer per candidate)",
        "paper": "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations (Yi et al., 2019); "
                 "Keras preprocessing layers for the transforms",
        "data": rc.DATA_DESC,
        "metric": f"test AUC {m['test_auc']:.4f}, logloss {m['test_logloss']:.4f} ({(n - b) // 1000}k held-out impressions)",
        "description": "Ranking model in two graphs: user tower (context.onnx) once per request, scorer (model.onnx) per candidate",
    }
    ex = {k: torch.from_numpy(test[k][:4]) for k in INPUTS}
    with torch.no_grad():
        user_vec = net.tower(ex["user"], ex["history"])
    # the joined graph first (common.export_torch writes 1/model.onnx), moved out of the version folder
    joined = export_graph(net, tuple(ex[k] for k in INPUTS), INPUTS, ["score"], meta, "joined.onnx")
    joined = shutil.move(joined, common.model_dir(NAME).parent.parent / "joined.onnx")
    context = export_graph(net.tower, (ex["user"], ex["history"]), ["user", "history"], ["user_vec"], meta,
                           "context.onnx")
    scorer = export_graph(net.scorer, (user_vec, ex["item_ids"], ex["item_dense"]),
                          ["user_vec", "item_ids", "item_dense"], ["score"], meta, "model.onnx")
    common.verify(joined, {k: test[k][:17] for k in INPUTS})
    sess = common.session(joined)
    p_onnx = sess.run(None, {k: test[k] for k in INPUTS})[0][:, 0]
    assert np.abs(p_onnx - p).max() < 1e-5
    ctx, sc = common.session(context), common.session(scorer)
    (uv,) = ctx.run(None, {"user": test["user"], "history": test["history"]})
    (p_two,) = sc.run(None, {"user_vec": uv, "item_ids": test["item_ids"], "item_dense": test["item_dense"]})
    print(f"  two graphs vs joined: max |diff| {np.abs(p_two[:, 0] - p_onnx).max():.2e}")
    assert np.abs(p_two[:, 0] - p_onnx).max() < 1e-5
    rc.check_history(sess, {k: test[k] for k in INPUTS})

    # The same samples as ranking_ctr (same rows, same ranking requests), answered by this model.
    common.save_samples(NAME, rc.per_row_samples(features, sess, users, catalogue, user, cand, b))
    ranking = json.loads((common.model_dir(rc.NAME) / "ranking_samples.json").read_text())["samples"]
    out = []
    for s in ranking:
        req = s["request"]
        cands = req["candidates"]
        as_rows = isinstance(cands, list)
        if as_rows:
            cands = {k: [c[k] for c in cands] for k in cands[0]}
        out.append(rc.ranking_sample(features, sess, req["context"], cands, as_rows=as_rows, top_k=req["top_k"]))
    common.save_samples(NAME, out, "ranking_samples.json")
    write_card(m, meta)
    common.save_metrics(NAME, m)


if __name__ == "__main__":
    main()

"""ranking_ctr: a CTR ranking model whose inputs split into the user's context (the same for
every candidate of a request) and the candidate items.

User side: raw fields `user_id` (hashed), `country` (vocabulary), `age` (bucketized) and the
graph input `history` INT64 [N, 50] (the ids of the user's last clicked items, 0 = padding),
all declared `broadcast = true` in config.toml, so a ranking request carries them once and the
server repeats them for every candidate. Item side: `item_id` (hashed), `category`
(vocabulary) and `price` (standardised), one value per candidate.

The synthetic log (`generate`, seeded) has a catalogue of items in hidden categories with
latent taste vectors, users with 1-3 interest categories and a click history drawn mostly
from them, and impressions whose click probability grows with how close the candidate is to
the history (same category, latent similarity), plus item, country and price effects.
Training turns the raw columns into graph inputs with `raw_features.py` (pyfarmhash) driven
by the model's own config.toml; the samples hold raw fields, in the per-row V2 form
(`samples.json`) and in the `/predict` ranking form (`ranking_samples.json`, context once,
candidates in columns or rows, `top_k`).
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.metrics import log_loss, roc_auc_score

import common
import ctr_common
from ctr_common import AGE_BOUNDARIES, COUNTRIES, RARE_COUNTRIES
import raw_features

NAME = "ranking_ctr"
SEED = 2929
USERS = 4000
IMPRESSIONS = 120_000
N_ITEMS = 3000  # catalogue item ids are 1..N_ITEMS; 0 pads the history
N_CATS = 24
LATENT = 8
HIST_LEN = 50
HASH_USERS = 1000
HASH_ITEMS = 4000
EMB_USER = 8
EMB_ITEM = 16
EPOCHS = 8
TOP_K = 5
CATEGORIES = ["books", "music", "movies", "games", "phones", "laptops", "cameras", "audio",
              "kitchen", "garden", "tools", "toys", "baby", "beauty", "health", "sports",
              "outdoor", "fashion", "shoes", "jewelry", "pets", "grocery", "office", "auto"]
DATA_DESC = (f"seeded synthetic impression log ({IMPRESSIONS // 1000}k impressions of {USERS} users: user id "
             f"strings, 20 country codes (15 in the vocabulary), age, a click history of 5-{HIST_LEN} items "
             f"from a {N_ITEMS}-item catalogue in {N_CATS} categories; candidates with item id, category and "
             "price; clicks from a hidden model of history/candidate affinity); 80/10/10 train/val/test "
             "split of impressions, metrics on test")


def generate(seed=SEED):
    """Users (raw context fields and a padded history), impressions (user index + raw
    candidate fields), clicks and the hidden click probabilities."""
    rng = np.random.default_rng(seed)
    # catalogue: index 0 is the padding id and never drawn
    item_cat = rng.integers(0, N_CATS, N_ITEMS + 1)
    centers = rng.standard_normal((N_CATS, LATENT))
    latent = centers[item_cat] + 0.6 * rng.standard_normal((N_ITEMS + 1, LATENT))
    latent /= np.linalg.norm(latent, axis=1, keepdims=True)
    item_bias = rng.normal(0, 0.4, N_ITEMS + 1)
    price_level = rng.normal(3.0, 0.8, N_CATS)
    price = np.exp(price_level[item_cat] + 0.4 * rng.standard_normal(N_ITEMS + 1)).round(2)
    pop = np.arange(1, N_ITEMS + 1) ** -0.8
    pop = np.concatenate([[0.0], pop[rng.permutation(N_ITEMS)]])
    by_cat = [np.flatnonzero((item_cat == c) & (np.arange(N_ITEMS + 1) > 0)) for c in range(N_CATS)]
    p_cat = [pop[ix] / pop[ix].sum() for ix in by_cat]
    p_all = pop / pop.sum()

    def from_cats(cats):
        out = np.empty(len(cats), dtype=np.int64)
        for c in range(N_CATS):
            sel = np.flatnonzero(cats == c)
            out[sel] = rng.choice(by_cat[c], size=len(sel), p=p_cat[c])
        return out

    def popular(n):
        return rng.choice(N_ITEMS + 1, size=n, p=p_all)

    # users: country, age, 1-3 interest categories, a history of 5-50 clicks (80% from them)
    countries = COUNTRIES + RARE_COUNTRIES
    p_country = np.arange(1, len(countries) + 1) ** -1.3
    country = rng.choice(len(countries), size=USERS, p=p_country / p_country.sum())
    age = np.clip(rng.normal(38, 13, USERS), 14, 90).astype(np.int64)
    interests = np.argsort(rng.random((USERS, N_CATS)), axis=1)[:, :3]
    n_int = rng.integers(1, 4, USERS)
    pick = lambda users: interests[users, (rng.random(len(users)) * n_int[users]).astype(int)]
    lengths = rng.integers(5, HIST_LEN + 1, USERS)
    flat_users = np.repeat(np.arange(USERS), HIST_LEN)
    hist = np.where(rng.random(USERS * HIST_LEN) < 0.8, from_cats(pick(flat_users)),
                    popular(USERS * HIST_LEN)).reshape(USERS, HIST_LEN)
    hist = np.where(np.arange(HIST_LEN)[None, :] < lengths[:, None], hist, 0).astype(np.int64)

    # impressions: a user and a candidate (40% from the user's interests, else by popularity)
    user = rng.integers(0, USERS, IMPRESSIONS)
    cand = np.where(rng.random(IMPRESSIONS) < 0.4, from_cats(pick(user)), popular(IMPRESSIONS))

    # hidden click model: affinity of the candidate to the user's history, plus item,
    # country and price effects (younger users mind the price more)
    mask = hist[user] > 0
    same = ((item_cat[hist[user]] == item_cat[cand][:, None]) & mask).sum(1) / lengths[user]
    sims = np.einsum("nld,nd->nl", latent[hist[user]], latent[cand])
    sims = np.where(mask, sims, -np.inf).max(axis=1)
    w_country = rng.normal(0, 0.3, len(countries))
    z_price = (np.log(price[cand]) - 3.0) / 0.9
    sens = np.where(age[user] < 25, 0.6, 0.15)
    logit = (-3.2 + 2.5 * same + 2.0 * sims + item_bias[cand] + w_country[country[user]]
             - sens * z_price)
    prob = 1 / (1 + np.exp(-logit))
    click = (rng.random(IMPRESSIONS) < prob).astype(np.float32)
    users = {
        "user_id": [f"u{u:05d}" for u in range(USERS)],
        "country": [countries[c] for c in country],
        "age": [int(a) for a in age],
        "history": hist,
    }
    catalogue = {"category": [CATEGORIES[c] for c in item_cat], "price": [float(p) for p in price],
                 "item_cat": item_cat}
    return users, catalogue, user, cand, click, prob


def rows(users, catalogue, user, cand):
    """Raw per-row columns (as a client sends them without broadcast: the user's fields
    repeated on every row) and the history tensor."""
    columns = {
        "user_id": [users["user_id"][u] for u in user],
        "country": [users["country"][u] for u in user],
        "age": [users["age"][u] for u in user],
        "item_id": [int(i) for i in cand],
        "category": [catalogue["category"][i] for i in cand],
        "price": [catalogue["price"][i] for i in cand],
    }
    return columns, users["history"][user]


def write_config(catalogue, cand_train):
    """config.toml and the vocabulary files; price's mean and std come from the training split."""
    d = common.model_dir(NAME)
    (d / "country.txt").write_text("\n".join(COUNTRIES) + "\n")
    (d / "category.txt").write_text("\n".join(CATEGORIES) + "\n")
    prices = np.array([catalogue["price"][i] for i in cand_train])
    mean, std = float(prices.mean().round(2)), float(prices.std().round(2))
    (d / "config.toml").write_text(f"""# A ranking model (models/train/ranking_ctr.py): user_id, country, age and history describe
# the user (the context) and are broadcast: a request may send them once while item_id,
# category and price come once per candidate. Transforms are those the model was trained with.
max_batch_size = 256
rank_by = "score"

[features]
user_id = {{ hash_buckets = {HASH_USERS}, broadcast = true }}
country = {{ vocabulary = "country.txt", oov_buckets = 2, broadcast = true }}
age = {{ boundaries = {AGE_BOUNDARIES}, broadcast = true }}
item_id = {{ hash_buckets = {HASH_ITEMS} }}
category = {{ vocabulary = "category.txt", oov_buckets = 1 }}
price = {{ mean = {mean}, std = {std} }}

[inputs.user]
from = ["user_id", "country", "age"]

[inputs.history]
broadcast = true

[inputs.item_ids]
from = ["item_id", "category"]

[inputs.item_dense]
from = ["price"]
""")
    return raw_features.Features(d / "config.toml")


class RankingCtr(nn.Module):
    """User tower (hashed id, country, age bucket embeddings), history attention with the
    candidate as the query (DIN-style, softmax over the real positions), item tower
    (hashed id and category embeddings, standardised price), MLP, sigmoid."""

    def __init__(self, user_vocabs, item_vocabs, hidden=(64, 32)):
        super().__init__()
        self.user_emb = ctr_common.HashedEmbedding(user_vocabs, EMB_USER)
        self.item_emb = ctr_common.HashedEmbedding(item_vocabs, EMB_ITEM)
        self.register_buffer("n_hist", torch.tensor(N_ITEMS + 1, dtype=torch.int64))
        self.hist_emb = nn.Embedding(N_ITEMS + 1, EMB_ITEM)
        nn.init.normal_(self.hist_emb.weight, std=0.05)
        self.query = nn.Linear(2 * EMB_ITEM, EMB_ITEM)
        width = len(user_vocabs) * EMB_USER + 2 * EMB_ITEM + 1 + 3 * EMB_ITEM
        self.mlp = nn.Sequential(ctr_common.mlp((width,) + hidden, dropout=0.1), nn.Linear(hidden[-1], 1))

    def logit(self, user, history, item_ids, item_dense):
        u = self.user_emb(user).flatten(1)                                   # [B, 24]
        it = self.item_emb(item_ids).flatten(1)                              # [B, 32]
        q = self.query(it)                                                   # [B, 16]
        h = self.hist_emb(torch.remainder(history, self.n_hist))             # [B, L, 16]
        mask = history != 0
        scores = (h * q.unsqueeze(1)).sum(-1) / EMB_ITEM ** 0.5              # [B, L]
        # padding gets weight exactly 0; an empty history pools to 0 (no NaN)
        w = torch.softmax(scores.masked_fill(~mask, -1e9), dim=1) * mask
        attended = (w.unsqueeze(-1) * h).sum(1)                              # [B, 16]
        m = mask.to(h.dtype)
        mean = (h * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
        return self.mlp(torch.cat([u, it, item_dense, attended, mean, attended * q], dim=1))

    def forward(self, user, history, item_ids, item_dense):
        return torch.sigmoid(self.logit(user, history, item_ids, item_dense))


INPUTS = ["user", "history", "item_ids", "item_dense"]


def predict(net, x, batch=8192):
    net.eval()
    n = len(x["user"])
    with torch.no_grad():
        return np.concatenate([net(*(torch.from_numpy(x[k][i:i + batch]) for k in INPUTS)).numpy()[:, 0]
                               for i in range(0, n, batch)])


def train(net, data, epochs=EPOCHS, lr=2e-3, batch=1024, emb_l2=3e-4, seed=0):
    """Adam on binary cross-entropy; keeps the epoch with the best validation AUC."""
    x = {k: torch.from_numpy(data["train"][k]) for k in INPUTS}
    y = torch.from_numpy(data["train"]["click"])

    def batch_loss(idx):
        loss = F.binary_cross_entropy_with_logits(net.logit(*(x[k][idx] for k in INPUTS))[:, 0], y[idx])
        if emb_l2:
            # L2 on the user and item tables, and (DIN's mini-batch aware form) on the
            # history embeddings this batch uses
            used = torch.unique(x["history"][idx])
            loss = loss + emb_l2 * (net.user_emb.table.weight.pow(2).sum()
                                    + net.item_emb.table.weight.pow(2).sum()
                                    + net.hist_emb(used).pow(2).sum())
        return loss

    def val_auc():
        return roc_auc_score(data["val"]["click"], predict(net, data["val"]))

    ctr_common.fit(net, len(y), batch_loss, val_auc, epochs, lr, batch, seed)


def feeds_for(features, columns, history):
    feed = features.graph_inputs(columns, {"history": np.asarray(history, dtype=np.int64)})
    return {k: feed[k] for k in INPUTS}


def v2_sample(features, sess, columns, history):
    dtypes = {"user_id": "BYTES", "country": "BYTES", "age": "INT64", "item_id": "INT64",
              "category": "BYTES", "price": "FP64"}
    (out,) = sess.run(None, feeds_for(features, columns, history))
    inputs = {k: {"datatype": dtypes[k], "shape": [len(v)], "data": v} for k, v in columns.items()}
    history = np.asarray(history)
    inputs["history"] = {"datatype": "INT64", "shape": list(history.shape),
                         "data": [int(v) for v in history.reshape(-1)]}
    return {"inputs": inputs,
            "outputs": {"score": {"datatype": "FP32", "shape": list(out.shape),
                                  "data": [float(v) for v in out.reshape(-1)]}}}


def ranking_sample(features, sess, context, candidates, as_rows=False, top_k=TOP_K):
    """A `/predict` ranking request (context once, candidates in columns or rows) and the
    answer ONNX Runtime gives for the explicitly repeated request."""
    n = len(next(iter(candidates.values())))
    columns = {k: [context[k]] * n for k in ("user_id", "country", "age")}
    columns.update(candidates)
    history = np.array([context["history"]] * n, dtype=np.int64)
    (out,) = sess.run(None, feeds_for(features, columns, history))
    score = out.reshape(-1)
    order = np.argsort(-score, kind="stable")[:top_k]  # best first, ties to the lower index
    if as_rows:
        cands = [{k: candidates[k][i] for k in candidates} for i in range(n)]
    else:
        cands = candidates
    return {"request": {"context": context, "candidates": cands, "top_k": top_k},
            "expected": {"score": [float(v) for v in score],
                         "top_k": {"indices": [int(i) for i in order],
                                   "scores": [float(score[i]) for i in order]}}}


def held_out_metrics(test, p, click):
    """The test split's AUC and logloss of predictions `p`, the hidden model's AUC (the
    ceiling) and the click rate of all impressions."""
    return {"test_auc": float(roc_auc_score(test["click"], p)),
            "test_logloss": float(log_loss(test["click"], p.astype(np.float64))),
            "oracle_auc": float(roc_auc_score(test["click"], test["prob"])),
            "click_rate": float(click.mean())}


def per_row_samples(features, sess, users, catalogue, user, cand, b):
    """Per-row samples (every row carries its user's fields and history), from the test split
    starting at row `b`: one test impression; one user with three candidates; two users with an
    unknown country, an unknown category, an unseen user and an item id outside the catalogue."""
    def test_rows(rs):
        return rows(users, catalogue, user[rs], cand[rs])

    one = test_rows([b])
    u0 = int(user[b + 1])
    same_user = rows(users, catalogue, np.array([u0] * 3), cand[b + 1:b + 4])
    odd_cols, odd_hist = test_rows([b + 4, b + 5, b + 6, b + 7])
    odd_cols["country"][0], odd_cols["category"][1] = "ZZ", "antiques"
    odd_cols["user_id"][2], odd_cols["item_id"][3] = "new-user-é", 987_654_321
    return [v2_sample(features, sess, *one), v2_sample(features, sess, *same_user),
            v2_sample(features, sess, odd_cols, odd_hist)]


# What the model card says of the candidate inputs and the output, shared by ranking_towers.
CANDIDATE_MEANINGS = {"item_ids": "2 item id columns built from the raw candidate fields by the server",
                      "item_dense": "the standardised price",
                      "score": "predicted click probability of the candidate in (0, 1)"}


def check_history(sess, x):
    """Padding positions (id 0) do not change a row's output, wherever they sit; an empty
    history gives a finite score."""
    base = {k: v[:40] for k, v in x.items()}
    ref = sess.run(None, base)[0]
    rng = np.random.default_rng(1)
    shuffled = dict(base)
    shuffled["history"] = np.stack([rng.permutation(h) for h in base["history"]])
    assert np.abs(sess.run(None, shuffled)[0] - ref).max() <= 1e-6
    empty = dict(base)
    empty["history"] = np.zeros_like(base["history"])
    assert np.all(np.isfinite(sess.run(None, empty)[0]))
    print("  history padding invariance and empty history verified")


def main():
    common.seed_all(0)
    users, catalogue, user, cand, click, prob = generate()
    n = len(click)
    a, b = int(0.8 * n), int(0.9 * n)
    features = write_config(catalogue, cand[:a])
    columns, history = rows(users, catalogue, user, cand)
    x = feeds_for(features, columns, history)
    vocab_user = [HASH_USERS, 2 + len(COUNTRIES), len(AGE_BOUNDARIES) + 1]
    vocab_item = [HASH_ITEMS, 1 + len(CATEGORIES)]
    for k, vocabs in (("user", vocab_user), ("item_ids", vocab_item)):
        assert all((x[k][:, i] >= 0).all() and (x[k][:, i] < v).all() for i, v in enumerate(vocabs))
    parts = {"train": slice(0, a), "val": slice(a, b), "test": slice(b, n)}
    data = {p: {**{k: v[s] for k, v in x.items()}, "click": click[s], "prob": prob[s]} for p, s in parts.items()}
    net = RankingCtr(vocab_user, vocab_item)
    train(net, data)
    test = data["test"]
    p = predict(net, test)
    m = {**held_out_metrics(test, p, click),
         "oracle_logloss": float(log_loss(test["click"], test["prob"]))}
    print(f"{NAME}: {m}")
    metric = f"test AUC {m['test_auc']:.4f}, logloss {m['test_logloss']:.4f} ({(n - b) // 1000}k held-out impressions)"
    meta = {
        "family": "DIN-style ranking model (user tower, candidate-attention over the click history, item tower, MLP)",
        "paper": "Deep Interest Network for Click-Through Rate Prediction (Zhou et al., 2018, arXiv:1706.06978); "
                 "Keras preprocessing layers for the transforms",
        "data": DATA_DESC,
        "metric": metric,
        "description": "Ranking model: one user's context (user_id, country, age, click history) x N candidate "
                       "items (item_id, category, price) -> click score per candidate",
    }
    batch = torch.export.Dim("batch")
    ex = tuple(torch.from_numpy(test[k][:4]) for k in INPUTS)
    path = common.export_torch(
        net, ex, NAME, INPUTS, ["score"], {k: {0: batch} for k in INPUTS}, meta)
    common.verify(path, {k: test[k][:17] for k in INPUTS})
    sess = common.session(path)
    p_onnx = sess.run(None, {k: test[k] for k in INPUTS})[0][:, 0]
    assert np.abs(p_onnx - p).max() < 1e-5
    check_history(sess, {k: test[k] for k in INPUTS})

    common.save_samples(NAME, per_row_samples(features, sess, users, catalogue, user, cand, b))

    # Ranking samples: one user's context once, N = 1, 20, 200 candidates drawn as the log
    # draws them; unknown tokens in the context (country) and among the candidates (category).
    rng = np.random.default_rng(SEED + 1)

    def context(u):
        return {"user_id": users["user_id"][u], "country": users["country"][u], "age": users["age"][u],
                "history": [int(h) for h in users["history"][u]]}

    def candidates(items):
        return {"item_id": [int(i) for i in items], "category": [catalogue["category"][i] for i in items],
                "price": [catalogue["price"][i] for i in items]}

    test_users = user[b:]
    c1 = context(int(test_users[0]))
    c1["user_id"] = "new-user-é"
    k1 = candidates([int(cand[b])])
    c20 = context(int(test_users[1]))
    k20 = candidates(rng.choice(cand[b:], 20, replace=False))
    k20["category"][3], k20["item_id"][7] = "antiques", 987_654_321
    c200 = context(int(test_users[2]))
    c200["country"] = "ZZ"
    k200 = candidates(rng.choice(cand[b:], 200, replace=False))
    k200["category"][11] = "unknown-category"
    ranking = [ranking_sample(features, sess, c1, k1),
               ranking_sample(features, sess, c20, k20, as_rows=True),
               ranking_sample(features, sess, c200, k200)]
    common.save_samples(NAME, ranking, "ranking_samples.json")

    body = (
        "## Ranking: the context once, N candidates\n\n"
        "`user_id`, `country`, `age` and the graph input `history` describe the user (the context) and "
        "are declared `broadcast = true` in `config.toml`: a request may send them once (first "
        "dimension 1) while `item_id`, `category` and `price` have N rows, one per candidate; the server "
        "repeats the context for every candidate when it assembles the batch. `rank_by = \"score\"` names "
        "the output `top_k` sorts by. A `/predict` ranking request (`ranking_samples.json` holds three):\n\n"
        "```json\n"
        "{\"model\": \"ranking_ctr\",\n"
        " \"context\": {\"user_id\": \"u00042\", \"country\": \"DE\", \"age\": 31, \"history\": [17, 802, 5, ..., 0, 0]},\n"
        " \"candidates\": {\"item_id\": [1201, 77, 2950], \"category\": [\"books\", \"toys\", \"audio\"], \"price\": [12.5, 30.0, 99.9]},\n"
        " \"top_k\": 2}\n"
        "```\n\n"
        "Over V2 (JSON, binary) and gRPC the context inputs are sent with shape `[1]` (`history` `[1, 50]`) "
        "and the request parameter `top_k` adds the outputs `top_k_indices` and `top_k_scores`. Sending "
        "every field with N rows (the context repeated on each row, `samples.json`) is an ordinary request "
        "and gives the same scores.\n\n"
        "## Raw features\n\n"
        "| field | side | sent as | transform | column |\n|---|---|---|---|---|\n"
        f"| `user_id` | context | BYTES (`\"u00042\"`) | FarmHash Fingerprint64 mod {HASH_USERS} | `user[:, 0]` |\n"
        "| `country` | context | BYTES (`\"DE\"`) | `country.txt` lookup, 2 OOV buckets | `user[:, 1]` |\n"
        f"| `age` | context | INT64 | bucketized at {AGE_BOUNDARIES} | `user[:, 2]` |\n"
        f"| `history` | context | INT64 `[{HIST_LEN}]` per row | graph input as sent: catalogue item ids "
        f"1-{N_ITEMS}, 0 = padding (reduced modulo {N_ITEMS + 1} in the graph) | `history` |\n"
        f"| `item_id` | candidate | INT64 (`1201`) | Fingerprint64 of the decimal text mod {HASH_ITEMS} | `item_ids[:, 0]` |\n"
        "| `category` | candidate | BYTES (`\"books\"`) | `category.txt` lookup, 1 OOV bucket | `item_ids[:, 1]` |\n"
        "| `price` | candidate | FP32/FP64 | standardised with the training split's mean and std | `item_dense[:, 0]` |\n\n"
        "## Architecture\n\n"
        f"User tower: embeddings (dim {EMB_USER}) of the 3 user columns. Item tower: embeddings (dim {EMB_ITEM}) "
        f"of the hashed item id and the category, and the price. History: an embedding table (dim {EMB_ITEM}) "
        "of catalogue ids; the candidate's item vector, projected to a query, attends over the history "
        "(scaled dot product, softmax over the real positions only, so padding gets weight exactly 0 and "
        "an empty history pools to 0), next to the mean of the history embeddings. "
        "[user, item, price, attended, mean, attended x query] -> MLP 105-64-32-1 (ReLU, dropout 0.1) -> "
        f"sigmoid. Trained {EPOCHS} epochs with Adam (batch 1024, L2 1e-4 on the user and item tables), "
        "best epoch on validation AUC.\n\n"
        "## Data\n\n"
        f"`generate()` in `models/train/ranking_ctr.py` (seed {SEED}): {IMPRESSIONS} impressions, "
        f"{100 * m['click_rate']:.1f}% click rate. Items belong to hidden categories with latent vectors; "
        "each user has 1-3 interest categories and a history of 5-50 clicks, 80% from them; the click "
        "probability grows with the share of the history in the candidate's category and the candidate's "
        "best latent similarity to the history, plus item, country and (more for users under 25) price "
        f"effects. The hidden model's own probabilities reach test AUC {m['oracle_auc']:.4f} (the ceiling)."
    )
    meanings = {"user": "3 user id columns built from the raw context fields by the server",
                "history": f"the user's last clicked catalogue item ids, 0 = padding ({HIST_LEN} slots)",
                **CANDIDATE_MEANINGS}
    common.write_card(
        NAME, title="Click-through-rate ranking model: one user's context x N candidate items.",
        family=meta["family"], paper=meta["paper"], data=meta["data"], metric=meta["metric"],
        meanings=meanings, body=body, script="ranking_ctr.py",
        samples_note="`samples.json` holds ordinary per-row requests in raw-field V2 form (every row carries "
                     "its user's fields and history): one test impression; one user with three candidates; "
                     "two users with an unknown country, an unknown category, an unseen user and an item id "
                     "outside the catalogue. `ranking_samples.json` holds `/predict` ranking requests "
                     "(`context` once, `candidates` in columns for N = 1 and 200, in rows for N = 20, "
                     f"`top_k` {TOP_K}) with unknown tokens in the context and among the candidates, and the "
                     "expected `score` of every candidate and the top-k indices and scores (best first, ties to "
                     "the lower index). Expected outputs are what ONNX Runtime (Python, CPU) gave for the "
                     "explicitly repeated request, built by `raw_features.py`.")
    common.save_metrics(NAME, m)


if __name__ == "__main__":
    main()

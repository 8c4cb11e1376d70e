"""widedeep_ctr: Wide & Deep (linear model on ids + hashed cross products, jointly with an MLP)."""
import torch
import torch.nn as nn

import common
import ctr_common
import ctr_data

NAME = "widedeep_ctr"
EMB = 8
EPOCHS = 10
CROSS_PAIRS = [(0, 3), (1, 4), (2, 7), (3, 5), (4, 6), (5, 7), (0, 6), (1, 2)]
CROSS_BUCKETS = 4096


class WideDeep(nn.Module):
    def __init__(self, vocabs=ctr_data.VOCABS, n_dense=ctr_data.N_DENSE, emb=EMB, deep=(128, 64, 32)):
        super().__init__()
        n_f = len(vocabs)
        # wide part: one weight per id (one-hot linear), per hashed cross-product bucket, per dense feature
        self.wide_ids = ctr_common.HashedEmbedding(vocabs, 1)
        nn.init.zeros_(self.wide_ids.table.weight)
        self.register_buffer("cross_left", torch.tensor([a for a, _ in CROSS_PAIRS]))
        self.register_buffer("cross_right", torch.tensor([b for _, b in CROSS_PAIRS]))
        self.register_buffer("cross_mult", torch.tensor([vocabs[b] for _, b in CROSS_PAIRS], dtype=torch.int64))
        self.register_buffer("cross_offsets", torch.arange(len(CROSS_PAIRS), dtype=torch.int64) * CROSS_BUCKETS)
        self.wide_cross = nn.Embedding(len(CROSS_PAIRS) * CROSS_BUCKETS, 1)
        nn.init.zeros_(self.wide_cross.weight)
        self.wide_dense = nn.Linear(n_dense, 1)
        # deep part
        self.emb = ctr_common.HashedEmbedding(vocabs, emb)
        self.deep = nn.Sequential(ctr_common.mlp((n_f * emb + n_dense,) + tuple(deep), dropout=0.1),
                                  nn.Linear(deep[-1], 1))

    def forward(self, cat_ids, dense):
        h = self.wide_ids.hashed(cat_ids)                           # [B, F] in range
        left = torch.index_select(h, 1, self.cross_left)
        right = torch.index_select(h, 1, self.cross_right)
        cross = torch.remainder(left * self.cross_mult + right, CROSS_BUCKETS)
        wide = (self.wide_ids(cat_ids).sum(dim=(1, 2))
                + self.wide_cross(cross + self.cross_offsets).sum(dim=(1, 2)))
        wide = wide.unsqueeze(1) + self.wide_dense(dense)
        deep = self.deep(torch.cat([self.emb(cat_ids).flatten(1), dense], dim=1))
        return wide + deep


def main():
    common.seed_all(0)
    data = ctr_data.generate()
    net = WideDeep()
    ctr_common.train(net, data, epochs=EPOCHS)
    m = ctr_common.evaluate(net, data)
    print(f"{NAME}: {m}")
    metric = f"test AUC {m['test_auc']:.4f}, logloss {m['test_logloss']:.4f} (20k held-out rows)"
    meta = {
        "family": "Wide & Deep (linear model with cross-product features + deep MLP, joint training)",
        "paper": "Wide & Deep Learning for Recommender Systems (Cheng, Koc, Harmsen, Shaked, Chandra, Aradhye, Anderson, Corrado, Chai, Ispir, et al., 2016, arXiv:1606.07792)",
        "data": ctr_data.DATA_DESC,
        "metric": metric,
        "description": "Click-through-rate model: 8 hashed categorical ids + 4 dense floats -> click probability",
    }
    arch = (
        "Wide part: a linear model over one-hot ids (one weight per id), "
        f"{len(CROSS_PAIRS)} cross-product transformations of field pairs {CROSS_PAIRS} hashed into "
        f"{CROSS_BUCKETS} buckets each (`(id_a * vocab_b + id_b) mod {CROSS_BUCKETS}`, computed in the graph), "
        "and the dense features. "
        f"Deep part: hashed per-field embeddings (dim {EMB}) + `dense` -> MLP 68-128-64-32-1 (ReLU, dropout 0.1). "
        "Logit = wide + deep, then sigmoid; both parts trained jointly. "
        f"Trained {EPOCHS} epochs with Adam (batch 1024, L2 penalty 3e-4 on the embedding tables), best epoch on validation AUC."
    )
    title = "Wide & Deep click-through-rate model on a synthetic click log."
    ctr_common.export_and_check(NAME, net, data, meta, arch, title)
    ctr_common.card(NAME, meta, m, arch, title, "widedeep_ctr.py")
    common.save_metrics(NAME, m)


if __name__ == "__main__":
    main()

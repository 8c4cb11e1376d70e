"""dcnv2_ctr: DCN-V2 (full-rank cross network v2 in parallel with a deep MLP)."""
import torch
import torch.nn as nn

import common
import ctr_common
import ctr_data

NAME = "dcnv2_ctr"
EMB = 8
CROSS_LAYERS = 3
EPOCHS = 10


class CrossNetV2(nn.Module):
    """x_{l+1} = x_0 * (W_l x_l + b_l) + x_l with full-rank W_l."""

    def __init__(self, d, layers):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(d, d) for _ in range(layers))
        for lin in self.layers:
            nn.init.normal_(lin.weight, std=0.01)
            nn.init.zeros_(lin.bias)

    def forward(self, x0):
        x = x0
        for lin in self.layers:
            x = x0 * lin(x) + x
        return x


class DCNv2(nn.Module):
    def __init__(self, vocabs=ctr_data.VOCABS, n_dense=ctr_data.N_DENSE, emb=EMB, deep=(128, 64)):
        super().__init__()
        d_in = len(vocabs) * emb + n_dense
        self.emb = ctr_common.HashedEmbedding(vocabs, emb)
        self.cross = CrossNetV2(d_in, CROSS_LAYERS)
        self.deep = ctr_common.mlp((d_in,) + tuple(deep), dropout=0.1)
        self.out = nn.Linear(d_in + deep[-1], 1)

    def forward(self, cat_ids, dense):
        x0 = torch.cat([self.emb(cat_ids).flatten(1), dense], dim=1)
        return self.out(torch.cat([self.cross(x0), self.deep(x0)], dim=1))


def main():
    common.seed_all(0)
    data = ctr_data.generate()
    net = DCNv2()
    ctr_common.train(net, data, epochs=EPOCHS)
    m = ctr_common.evaluate(net, data)
    print(f"{NAME}: {m}")
    metric = f"test AUC {m['test_auc']:.4f}, logloss {m['test_logloss']:.4f} (20k held-out rows)"
    meta = {
        "family": "DCN-V2 (cross network v2 + deep MLP, parallel)",
        "paper": "DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale Learning to Rank Systems (Wang, Shivanna, Cheng, Jain, Lin, Hong, Chi, 2021, arXiv:2008.13535)",
        "data": ctr_data.DATA_DESC,
        "metric": metric,
        "description": "Click-through-rate model: 8 hashed categorical ids + 4 dense floats -> click probability",
    }
    arch = (
        f"Hashed per-field embeddings (dim {EMB}) flattened and concatenated with `dense` (x0, 68 values). "
        f"Parallel structure: a {CROSS_LAYERS}-layer full-rank cross network "
        "(x_{l+1} = x0 * (W_l x_l + b_l) + x_l) and a deep MLP 68-128-64 (ReLU, dropout 0.1); "
        "their outputs are concatenated and a linear layer gives the logit, then sigmoid. "
        f"Trained {EPOCHS} epochs with Adam (batch 1024, L2 penalty 3e-4 on the embedding tables), best epoch on validation AUC."
    )
    title = "DCN-V2 click-through-rate model on a synthetic click log."
    ctr_common.export_and_check(NAME, net, data, meta, arch, title)
    ctr_common.card(NAME, meta, m, arch, title, "dcnv2_ctr.py")
    common.save_metrics(NAME, m)


if __name__ == "__main__":
    main()

"""finalmlp_ctr: FinalMLP (two-stream MLP with feature gating and bilinear fusion)."""
import torch
import torch.nn as nn

import common
import ctr_common
import ctr_data

NAME = "finalmlp_ctr"
EMB = 8
EPOCHS = 10


class FeatureGate(nn.Module):
    """Stream-specific feature selection: x * 2*sigmoid(MLP(context))."""

    def __init__(self, ctx_dim, out_dim, hidden=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(ctx_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, x, ctx):
        return x * 2.0 * torch.sigmoid(self.net(ctx))


class BilinearFusion(nn.Module):
    """Multi-head bilinear fusion of the two stream outputs (FinalMLP eq. 5)."""

    def __init__(self, d1, d2, heads):
        super().__init__()
        assert d1 % heads == 0 and d2 % heads == 0
        self.heads, self.h1, self.h2 = heads, d1 // heads, d2 // heads
        self.w_x = nn.Parameter(torch.randn(heads, self.h1) * 0.05)
        self.w_y = nn.Parameter(torch.randn(heads, self.h2) * 0.05)
        self.w_xy = nn.Parameter(torch.randn(heads, self.h1, self.h2) * 0.02)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x, y):
        b = x.shape[0]
        xh = x.reshape(b, self.heads, self.h1)
        yh = y.reshape(b, self.heads, self.h2)
        lin = (xh * self.w_x).sum(-1) + (yh * self.w_y).sum(-1)          # [B, H]
        bil = (torch.matmul(xh.unsqueeze(2), self.w_xy).squeeze(2) * yh).sum(-1)  # [B, H]
        return (lin + bil).sum(-1, keepdim=True) + self.bias              # [B, 1]


class FinalMLP(nn.Module):
    def __init__(self, vocabs=ctr_data.VOCABS, n_dense=ctr_data.N_DENSE, emb=EMB,
                 dims1=(128, 64), dims2=(64, 64), heads=4):
        super().__init__()
        n_f = len(vocabs)
        d_in = n_f * emb + n_dense
        self.emb = ctr_common.HashedEmbedding(vocabs, emb)
        # stream 1 gate is conditioned on the dense features, stream 2 gate on fields 0 and 1
        self.gate1 = FeatureGate(n_dense, d_in)
        self.gate2 = FeatureGate(2 * emb, d_in)
        self.mlp1 = ctr_common.mlp((d_in,) + tuple(dims1), dropout=0.1)
        self.mlp2 = ctr_common.mlp((d_in,) + tuple(dims2), dropout=0.1)
        self.fusion = BilinearFusion(dims1[-1], dims2[-1], heads)

    def forward(self, cat_ids, dense):
        e = self.emb(cat_ids)                                   # [B, F, E]
        x = torch.cat([e.flatten(1), dense], dim=1)             # [B, F*E + 4]
        ctx2 = e[:, :2, :].flatten(1)
        o1 = self.mlp1(self.gate1(x, dense))
        o2 = self.mlp2(self.gate2(x, ctx2))
        return self.fusion(o1, o2)


def main():
    common.seed_all(0)
    data = ctr_data.generate()
    net = FinalMLP()
    ctr_common.train(net, data, epochs=EPOCHS)
    m = ctr_common.evaluate(net, data)
    print(f"{NAME}: {m}")
    metric = f"test AUC {m['test_auc']:.4f}, logloss {m['test_logloss']:.4f} (20k held-out rows)"
    meta = {
        "family": "FinalMLP (two-stream MLP, feature gating, bilinear fusion)",
        "paper": "FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction (Mao, Zhu, Wang, Dong, Xiao, He, 2023, arXiv:2304.00902)",
        "data": ctr_data.DATA_DESC,
        "metric": metric,
        "description": "Click-through-rate model: 8 hashed categorical ids + 4 dense floats -> click probability",
    }
    arch = (
        f"Hashed per-field embeddings (dim {EMB}) flattened and concatenated with `dense` (68 values). "
        "Two streams: stream 1 = feature gate conditioned on `dense` (2*sigmoid(MLP)) then MLP 68-128-64; "
        "stream 2 = feature gate conditioned on the embeddings of fields 0 and 1, then MLP 68-64-64. "
        "Fusion: 4-head bilinear interaction (per head: w1.x + w2.y + x^T W3 y), summed, then sigmoid. "
        f"Trained {EPOCHS} epochs with Adam (batch 1024, L2 penalty 3e-4 on the embedding tables), best epoch on validation AUC."
    )
    title = "FinalMLP click-through-rate model on a synthetic click log."
    ctr_common.export_and_check(NAME, net, data, meta, arch, title)
    ctr_common.card(NAME, meta, m, arch, title, "finalmlp_ctr.py")
    common.save_metrics(NAME, m)


if __name__ == "__main__":
    main()

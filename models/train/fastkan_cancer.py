"""fastkan_cancer: FastKAN (Gaussian RBF Kolmogorov-Arnold network) on breast cancer data."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import common

NAME = "fastkan_cancer"
LAYERS = [30, 8, 2]
GRID_MIN, GRID_MAX, NUM_GRIDS = -2.0, 2.0, 8
EPOCHS = 300


class RadialBasis(nn.Module):
    """phi_k(x) = exp(-((x - g_k) / h)^2) on a fixed uniform grid g_1..g_G."""

    def __init__(self):
        super().__init__()
        self.register_buffer("grid", torch.linspace(GRID_MIN, GRID_MAX, NUM_GRIDS))
        self.denominator = (GRID_MAX - GRID_MIN) / (NUM_GRIDS - 1)

    def forward(self, x):                                        # [B, d] -> [B, d, G]
        return torch.exp(-(((x.unsqueeze(-1) - self.grid) / self.denominator) ** 2))


class FastKANLayer(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        self.norm = nn.LayerNorm(d_in)
        self.rbf = RadialBasis()
        self.spline = nn.Linear(d_in * NUM_GRIDS, d_out, bias=False)
        nn.init.trunc_normal_(self.spline.weight, std=0.1)
        self.base = nn.Linear(d_in, d_out)                        # base update: W SiLU(x)

    def forward(self, x):
        phi = self.rbf(self.norm(x)).flatten(1)                   # [B, d_in * G]
        return self.spline(phi) + self.base(F.silu(x))


class FastKAN(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.layers = nn.Sequential(*[FastKANLayer(a, b) for a, b in zip(LAYERS[:-1], LAYERS[1:])])

    def forward(self, features):
        return self.layers((features - self.mean) / self.std)


def main():
    common.seed_all(0)
    d = load_breast_cancer()
    x, y = d.data.astype(np.float32), d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    mean, std = xtr.mean(0), xtr.std(0)
    model = FastKAN(mean, std)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    g = torch.Generator().manual_seed(0)
    for ep in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(xte)).argmax(-1).numpy() == yte).mean())
    print(f"{NAME}: test accuracy {acc:.4f} (final train loss {loss.item():.4f})")
    metric = f"test accuracy {acc:.4f} ({len(yte)} held-out tumours)"
    meta = {
        "family": "KAN (FastKAN: Gaussian radial basis functions on a grid)",
        "paper": "Kolmogorov-Arnold Networks are Radial Basis Function Networks (Li, 2024, arXiv:2405.06721)",
        "data": ("scikit-learn load_breast_cancer (Wisconsin diagnostic, 569 rows, 30 features); "
                 "stratified 80/20 train/test split, random_state=0"),
        "metric": metric,
        "description": "Breast tumour classifier: 30 raw diagnostic features -> logits [malignant, benign]",
    }
    batch = torch.export.Dim("batch")
    path = common.export_torch(model, (torch.from_numpy(xte[:4]),), NAME, ["features"], ["logits"],
                               {"features": {0: batch}}, meta)
    common.verify(path, {"features": xte[:17]})
    sess = common.session(path)
    assert abs(float((sess.run(None, {"features": xte})[0].argmax(-1) == yte).mean()) - acc) < 1e-9
    feeds = [{"features": xte[a:b]} for a, b in ((0, 1), (1, 3), (3, 6), (6, 10))]
    common.write_samples(NAME, feeds)
    names = ", ".join(f"`{n}`" for n in d.feature_names)
    n_params = sum(p.numel() for p in model.parameters())
    body = (
        "## Architecture\n\n"
        "Standardisation with the training-split mean and standard deviation (stored in the graph), then "
        f"FastKAN layers {LAYERS}. Each layer: LayerNorm, Gaussian radial basis "
        f"exp(-((x - g_k) / h)^2) on {NUM_GRIDS} grid points g_k uniformly spaced in [{GRID_MIN}, {GRID_MAX}] "
        f"(h = {(GRID_MAX - GRID_MIN) / (NUM_GRIDS - 1):.4f}), a linear map of all basis values "
        "(the learnable univariate functions), plus a base update W SiLU(x). Only standard ONNX ops "
        f"(Sub, Div, Pow/Mul, Exp, MatMul/Gemm, LayerNormalization, Sigmoid). {n_params:,} parameters. "
        f"Trained {EPOCHS} epochs with AdamW (batch 64).\n\n"
        "## Feature order\n\n"
        f"`features` takes the 30 raw (unscaled) values in scikit-learn's order: {names}.\n\n"
        "Class 0 = malignant, class 1 = benign (scikit-learn's target encoding)."
    )
    meanings = {"features": "30 raw diagnostic measurements of a tumour (see Feature order)",
                "logits": "unnormalised scores for [malignant, benign]"}
    common.write_card(NAME, title="FastKAN classifier for the Wisconsin breast cancer data.",
                      family=meta["family"], paper=meta["paper"], data=meta["data"], metric=metric,
                      meanings=meanings, body=body, script="fastkan_cancer.py")
    common.save_metrics(NAME, {"test_accuracy": acc})


if __name__ == "__main__":
    main()

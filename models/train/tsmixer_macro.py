"""tsmixer_macro: TSMixer forecaster on US quarterly macro data (statsmodels macrodata)."""
import numpy as np
import statsmodels.api as sm
import torch
import torch.nn as nn
import torch.nn.functional as F

import common

NAME = "tsmixer_macro"
LOOKBACK, HORIZON = 16, 4
CHANNELS = ["gdp_growth", "cons_growth", "inv_growth", "inflation", "d_unemp", "d_tbill"]
N_BLOCKS, FF_DIM, DROPOUT = 2, 32, 0.5
EPOCHS = 150
SPLIT = 160  # first index (in the transformed series) of the test targets (1999Q2)


def load_series():
    d = sm.datasets.macrodata.load_pandas().data
    dlog = lambda c: 400.0 * np.diff(np.log(d[c].to_numpy()))
    x = np.stack([dlog("realgdp"), dlog("realcons"), dlog("realinv"), dlog("cpi"),
                  np.diff(d["unemp"].to_numpy()), np.diff(d["tbilrate"].to_numpy())], axis=1)
    periods = [f"{int(y)}Q{int(q)}" for y, q in zip(d["year"][1:], d["quarter"][1:])]
    return x.astype(np.float32), periods


def windows(x):
    starts = np.arange(LOOKBACK, len(x) - HORIZON + 1)      # index of first forecast step
    hist = np.stack([x[s - LOOKBACK:s] for s in starts])
    fut = np.stack([x[s:s + HORIZON] for s in starts])
    return starts, hist, fut


class Standardize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))


class MixerLayer(nn.Module):
    """Time-mixing MLP then feature-mixing MLP, each residual with LayerNorm over [time, channels]."""

    def __init__(self, c):
        super().__init__()
        self.norm_t = nn.LayerNorm([LOOKBACK, c])
        self.time = nn.Linear(LOOKBACK, LOOKBACK)
        self.norm_f = nn.LayerNorm([LOOKBACK, c])
        self.feat1 = nn.Linear(c, FF_DIM)
        self.feat2 = nn.Linear(FF_DIM, c)
        self.drop = nn.Dropout(DROPOUT)

    def forward(self, x):                                      # [B, L, C]
        y = self.norm_t(x).transpose(1, 2)                     # [B, C, L]
        x = x + self.drop(F.relu(self.time(y))).transpose(1, 2)
        y = self.feat2(self.drop(F.relu(self.feat1(self.norm_f(x)))))
        return x + self.drop(y)


class TSMixer(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        c = len(mean)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.blocks = nn.Sequential(*[MixerLayer(c) for _ in range(N_BLOCKS)])
        self.temporal = nn.Linear(LOOKBACK, HORIZON)

    def forward_std(self, z):                                  # standardised in and out
        z = self.blocks(z)
        return self.temporal(z.transpose(1, 2)).transpose(1, 2)

    def forward(self, history):
        z = (history - self.mean) / self.std
        return self.forward_std(z) * self.std + self.mean


def main():
    common.seed_all(0)
    x, periods = load_series()
    starts, hist, fut = windows(x)
    train_m = starts + HORIZON <= SPLIT                      # all targets before the split
    test_m = starts >= SPLIT
    mean, std = x[:SPLIT].mean(0), x[:SPLIT].std(0)
    model = TSMixer(mean, std)
    zs = lambda a: torch.from_numpy((a - mean) / std)
    htr, ftr = zs(hist[train_m]), zs(fut[train_m])
    hte, fte = zs(hist[test_m]), zs(fut[test_m])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    for ep in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(htr), generator=g)
        for i in range(0, len(perm), 32):
            idx = perm[i:i + 32]
            loss = F.mse_loss(model.forward_std(htr[idx]), ftr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if (ep + 1) % 50 == 0:
            print(f"  epoch {ep + 1}: train mse {loss.item():.4f}")
    model.eval()
    with torch.no_grad():
        pred = model.forward_std(hte).numpy()
    tgt = fte.numpy()
    mse = float(np.mean((pred - tgt) ** 2))
    naive = float(np.mean((hte.numpy()[:, -1:, :] - tgt) ** 2))
    mean_fc = float(np.mean(tgt ** 2))                        # forecast = training mean
    per_channel = np.mean((pred - tgt) ** 2, axis=(0, 1))
    print(f"{NAME}: test MSE {mse:.4f} naive {naive:.4f} train-mean {mean_fc:.4f}")
    n_te = int(test_m.sum())
    test_from, test_to = periods[SPLIT], periods[len(x) - 1]
    metric = (f"test MSE {mse:.4f} (standardised units, {n_te} windows, targets {test_from}-{test_to}) "
              f"vs naive last-value {naive:.4f} and train-mean {mean_fc:.4f}")
    meta = {
        "family": "TSMixer (time-mixing + feature-mixing MLPs, temporal projection)",
        "paper": "TSMixer: An All-MLP Architecture for Time Series Forecasting (Chen, Li, Arik, Yoder, Pfister, 2023, arXiv:2303.06053)",
        "data": (f"statsmodels macrodata (US quarterly 1959Q1-2009Q3), 6 transformed channels; "
                 f"time split: train targets before {test_from}, test targets {test_from}-{test_to}"),
        "metric": metric,
        "description": f"Multivariate forecaster: last {LOOKBACK} quarters of 6 macro channels -> next {HORIZON} quarters",
    }
    batch = torch.export.Dim("batch")
    hte_raw, fte_raw = hist[test_m], fut[test_m]
    path = common.export_torch(model, (torch.from_numpy(hte_raw[:4]),), NAME, ["history"], ["forecast"],
                               {"history": {0: batch}}, meta)
    pool = np.concatenate([hte_raw, hist[train_m][:17]])[:17]
    common.verify(path, {"history": pool})
    sess = common.session(path)
    out = sess.run(None, {"history": hte_raw})[0]
    assert np.allclose((out - mean) / std, pred, atol=1e-4)
    feeds = [{"history": hte_raw[a:b]} for a, b in ((0, 1), (4, 6), (12, 15), (n_te - 4, n_te))]
    common.write_samples(NAME, feeds)

    rows = "\n".join(f"| {i} | `{c}` | {mean[i]:.6f} | {std[i]:.6f} | {per_channel[i]:.4f} |"
                     for i, c in enumerate(CHANNELS))
    body = (
        "## Channels\n\n"
        "The last axis of `history` and `forecast` holds 6 quarterly channels derived from "
        "`statsmodels.datasets.macrodata` (one row per quarter, starting 1959Q2):\n\n"
        "- `gdp_growth`, `cons_growth`, `inv_growth`: annualised log growth in percent, "
        "`400 * diff(log(x))` of `realgdp`, `realcons`, `realinv`;\n"
        "- `inflation`: `400 * diff(log(cpi))`;\n"
        "- `d_unemp`: quarter-on-quarter change of the unemployment rate (points);\n"
        "- `d_tbill`: quarter-on-quarter change of the 3-month T-bill rate (points).\n\n"
        "Inputs and outputs are in these natural units. The graph standardises the input with the "
        "training-period constants below and undoes it on the output, so no client-side scaling is needed.\n\n"
        "| index | channel | mean | std | test MSE (standardised) |\n|---|---|---|---|---|\n" + rows + "\n\n"
        "## Architecture\n\n"
        f"Standardise -> {N_BLOCKS} mixer layers, each: x + Dropout(ReLU(Linear_time(LayerNorm(x)^T))^T) "
        f"(mixing along {LOOKBACK} time steps), then x + Dropout(Linear(ReLU(Linear(LayerNorm(x))))) "
        f"(mixing across channels, 6->{FF_DIM}->6) -> temporal projection Linear {LOOKBACK}->{HORIZON} "
        "along time -> de-standardise. LayerNorm replaces the paper's batch normalisation so that "
        f"inference is independent of the batch. Trained {EPOCHS} epochs with AdamW (batch 32, weight decay 0.1, MSE); "
        "depth, dropout, weight decay and epochs were chosen on validation windows (targets 1993Q2-1999Q1) "
        "carved from the training period, before looking at the test period.\n\n"
        "## Evaluation\n\n"
        f"Rolling windows (stride 1); training windows have all {HORIZON} targets before {test_from}, "
        f"test windows have their first target at or after {test_from}. MSE is averaged over windows, "
        f"horizon steps and channels in standardised units. Baselines: repeat the last observed quarter "
        f"(naive) {naive:.4f}; predict the training mean {mean_fc:.4f}; TSMixer {mse:.4f}. The test "
        "period includes the 2008-2009 recession."
    )
    meanings = {
        "history": f"last {LOOKBACK} quarters (oldest first) x 6 channels, natural units (see Channels)",
        "forecast": f"next {HORIZON} quarters x 6 channels, same units and channel order",
    }
    common.write_card(NAME, title="TSMixer multivariate forecaster for US quarterly macroeconomic series.",
                      family=meta["family"], paper=meta["paper"], data=meta["data"], metric=metric,
                      meanings=meanings, body=body, script="tsmixer_macro.py")
    common.save_metrics(NAME, {"test_mse": mse, "naive_mse": naive, "train_mean_mse": mean_fc})


if __name__ == "__main__":
    main()

"""field_china: coordinate MLP with random Fourier features fitted to one image."""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_sample_image

import common

NAME = "field_china"
H, W = 107, 160                      # china.jpg (427 x 640) downsampled ~4x with a box filter
N_FREQ, SIGMA = 128, 8.0
WIDTH, DEPTH = 128, 3
STEPS, BATCH = 2000, 4096


def load_image():
    from PIL import Image

    img = Image.fromarray(load_sample_image("china.jpg"))                # 640 x 427
    img = np.asarray(img.resize((W, H), Image.BOX), dtype=np.float32) / 255.0  # [H, W, 3]
    ys, xs = np.meshgrid((np.arange(H) + 0.5) / H, (np.arange(W) + 0.5) / W, indexing="ij")
    coords = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32)  # (x, y), row-major pixels
    return coords, img.reshape(-1, 3).astype(np.float32)


class FourierField(nn.Module):
    def __init__(self, B):
        super().__init__()
        self.register_buffer("B", torch.as_tensor(B, dtype=torch.float32))     # [2, N_FREQ]
        layers, d = [], 2 * N_FREQ
        for _ in range(DEPTH):
            layers += [nn.Linear(d, WIDTH), nn.ReLU()]
            d = WIDTH
        layers.append(nn.Linear(d, 3))
        self.mlp = nn.Sequential(*layers)

    def forward(self, coords):
        proj = (2.0 * math.pi) * (coords @ self.B)
        return torch.sigmoid(self.mlp(torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1)))


def psnr(pred, target):
    return float(10.0 * np.log10(1.0 / np.mean((pred - target) ** 2)))


def main():
    common.seed_all(0)
    coords, rgb = load_image()
    rng = np.random.default_rng(0)
    B = rng.normal(0.0, SIGMA, size=(2, N_FREQ))
    model = FourierField(B)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, STEPS)
    ct, rt = torch.from_numpy(coords), torch.from_numpy(rgb)
    g = torch.Generator().manual_seed(0)
    for step in range(STEPS):
        idx = torch.randint(0, len(ct), (BATCH,), generator=g)
        loss = F.mse_loss(model(ct[idx]), rt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 500 == 0:
            print(f"  step {step + 1}: batch PSNR {10 * math.log10(1 / loss.item()):.2f} dB")
    model.eval()
    with torch.no_grad():
        pred = model(ct).numpy()
    p = psnr(pred, rgb)
    print(f"{NAME}: PSNR {p:.2f} dB on the {H}x{W} training image")
    metric = f"PSNR {p:.2f} dB on the {H}x{W} training image (all {H * W} pixels)"
    meta = {
        "family": "coordinate MLP / neural field with random Fourier features",
        "paper": ("Fourier Features Let Networks Learn High Frequency Functions in Low Dimensional Domains "
                  "(Tancik, Srinivasan, Mildenhall, Fridovich-Keil, Raghavan, Singhal, Ramamoorthi, Barron, Ng, 2020, arXiv:2006.10739)"),
        "data": f"scikit-learn load_sample_image('china.jpg') downsampled ~4x (box filter) to {H}x{W}; fitted to all pixels (no held-out split)",
        "metric": metric,
        "description": "Neural field of one image: (x, y) in [0,1]^2 -> RGB in [0,1]; send many coordinates per request",
    }
    batch = torch.export.Dim("batch")
    path = common.export_torch(model, (torch.from_numpy(coords[:4]),), NAME, ["coords"], ["rgb"],
                               {"coords": {0: batch}}, meta)
    pick = rng.permutation(len(coords))
    common.verify(path, {"coords": coords[pick[:17]]})
    sess = common.session(path)
    full = sess.run(None, {"coords": coords})[0]
    assert abs(psnr(full, rgb) - p) < 0.01
    feeds = [{"coords": coords[pick[0:1]]}, {"coords": coords[pick[1:17]]},
             {"coords": coords[pick[17:81]]},
             {"coords": coords[(H // 2) * W:(H // 2) * W + 64]}]   # 64 consecutive pixels of the middle row
    common.write_samples(NAME, feeds)
    n_params = sum(p_.numel() for p_ in model.parameters())
    body = (
        "## Architecture\n\n"
        f"gamma(v) = [cos(2 pi v B), sin(2 pi v B)] with a fixed random B in R^(2x{N_FREQ}), entries "
        f"N(0, {SIGMA}^2) (stored in the graph), then an MLP {2 * N_FREQ}-"
        + "-".join([str(WIDTH)] * DEPTH) + f"-3 with ReLU and a sigmoid output. {n_params:,} parameters. "
        f"Trained {STEPS} Adam steps on random batches of {BATCH} pixels (cosine learning-rate decay).\n\n"
        "## Coordinates\n\n"
        f"`x` runs left to right and `y` top to bottom, both in [0, 1]; pixel (row r, column c) of the "
        f"{H}x{W} image has its centre at `((c + 0.5) / {W}, (r + 0.5) / {H})`. Rendering the full image "
        f"means one request with {H * W} coordinates, or a larger grid for upsampling."
    )
    meanings = {"coords": "(x, y) image coordinates in [0, 1]^2, one point per row",
                "rgb": "predicted colour (red, green, blue) in [0, 1]"}
    common.write_card(NAME, title="Neural field (coordinate MLP with Fourier features) of scikit-learn's china.jpg sample image.",
                      family=meta["family"], paper=meta["paper"], data=meta["data"], metric=metric,
                      meanings=meanings, body=body, script="field_china.py",
                      samples_note=("`samples.json` holds pixel-centre coordinates of the training image (1, 16 and "
                                    "64 random pixels, then 64 consecutive pixels of the middle row) with the outputs "
                                    "ONNX Runtime (Python, CPU) produced at export time, in KServe V2 tensor form."))
    common.save_metrics(NAME, {"psnr_db": p})


if __name__ == "__main__":
    main()

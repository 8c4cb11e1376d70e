"""mlp_digits: residual inverted-bottleneck MLP on 8x8 digits (Scaling MLPs style)."""
import numpy as np
import torch
import torch.nn as nn

import common
import digits_data

NAME = "mlp_digits"
DIM, DEPTH = 64, 3


class Block(nn.Module):
    """Pre-LayerNorm inverted bottleneck: x + Linear(4d->d)(GELU(Linear(d->4d)(LN(x))))."""

    def __init__(self, d, expansion=4, drop=0.1):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, expansion * d)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(expansion * d, d)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return x + self.drop(self.fc2(self.act(self.fc1(self.norm(x)))))


class ResMLP(nn.Module):
    def __init__(self, d_in=64, d=DIM, depth=DEPTH, n_classes=10):
        super().__init__()
        self.embed = nn.Linear(d_in, d)
        self.blocks = nn.Sequential(*[Block(d) for _ in range(depth)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_classes)

    def forward(self, pixels):
        return self.head(self.norm(self.blocks(self.embed(pixels))))


def main():
    common.seed_all(0)
    xtr, xte, ytr, yte = digits_data.load()
    model = ResMLP()
    acc = digits_data.train_classifier(model, xtr, ytr, xte, yte, epochs=120)
    print(f"{NAME}: test accuracy {acc:.4f}")
    metric = f"test accuracy {acc:.4f} ({len(yte)} held-out images)"
    meta = {
        "family": "MLP (residual inverted-bottleneck, pre-LayerNorm)",
        "paper": "Scaling MLPs: A Tale of Inductive Bias (Bachmann, Anagnostidis, Hofmann, 2023, arXiv:2306.13575)",
        "data": digits_data.DATA_DESC,
        "metric": metric,
        "description": "8x8 handwritten digit classifier; flat pixels in [0,1] -> 10 class logits",
    }
    batch = torch.export.Dim("batch")
    path = common.export_torch(
        model, (torch.from_numpy(xte[:4]),), NAME, ["pixels"], ["logits"],
        {"pixels": {0: batch}}, meta)
    common.verify(path, {"pixels": xte[:17]})
    sess = common.session(path)
    onnx_acc = float((sess.run(None, {"pixels": xte})[0].argmax(-1) == yte).mean())
    assert abs(onnx_acc - acc) < 1e-9, (onnx_acc, acc)
    feeds = [{"pixels": xte[a:b]} for a, b in ((0, 1), (1, 3), (3, 6), (6, 10))]
    common.write_samples(NAME, feeds)
    n_params = sum(p.numel() for p in model.parameters())
    common.write_card(
        NAME,
        title="Residual MLP classifier for 8x8 handwritten digits, built in the spirit of "
              "*Scaling MLPs*: a stack of inverted-bottleneck blocks with pre-LayerNorm and residual connections.",
        family=meta["family"], paper=meta["paper"], data=meta["data"], metric=metric,
        meanings={"pixels": "64 pixel intensities of an 8x8 image, row-major, scaled to [0, 1] (raw value / 16)",
                  "logits": "unnormalised class scores for digits 0-9 (argmax = prediction)"},
        body=f"## Architecture\n\nLinear 64->{DIM}, {DEPTH} x [x + Linear(4d->d)(GELU(Linear(d->4d)(LayerNorm(x))))], "
             f"LayerNorm, Linear {DIM}->10. {n_params:,} parameters. Trained 120 epochs with AdamW "
             "(one-cycle schedule, weight decay 0.05, label smoothing 0.1, random one-pixel shifts).",
        script="mlp_digits.py",
    )
    common.save_metrics(NAME, {"test_accuracy": acc})


if __name__ == "__main__":
    main()

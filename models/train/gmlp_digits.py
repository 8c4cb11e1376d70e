"""gmlp_digits: gMLP (spatial gating unit) on 8x8 digits (2x2 patches -> 16 tokens)."""
import torch
import torch.nn as nn

import common
import digits_data

NAME = "gmlp_digits"
DIM, FFN, TOKENS, DEPTH = 48, 96, 16, 4
EPOCHS = 120


class SpatialGatingUnit(nn.Module):
    """s(Z) = Z1 * (W LayerNorm(Z2) + b), W mixes along the token axis (init W~0, b=1)."""

    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(FFN // 2)
        self.proj = nn.Linear(TOKENS, TOKENS)
        nn.init.normal_(self.proj.weight, std=1e-3)
        nn.init.ones_(self.proj.bias)

    def forward(self, z):                                      # [B, tokens, FFN]
        u, v = z.chunk(2, dim=-1)
        v = self.proj(self.norm(v).transpose(1, 2)).transpose(1, 2)
        return u * v


class GBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(DIM)
        self.proj_in = nn.Linear(DIM, FFN)
        self.act = nn.GELU()
        self.sgu = SpatialGatingUnit()
        self.proj_out = nn.Linear(FFN // 2, DIM)

    def forward(self, x):
        return x + self.proj_out(self.sgu(self.act(self.proj_in(self.norm(x)))))


class GMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, DIM)
        self.blocks = nn.Sequential(*[GBlock() for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, 10)

    def forward(self, image):
        x = self.stem(digits_data.patchify(image, 2))
        return self.head(self.norm(self.blocks(x)).mean(dim=1))


def main():
    common.seed_all(0)
    xtr, xte, ytr, yte = digits_data.load()
    model = GMLP()
    acc = digits_data.train_classifier(model, xtr, ytr, xte, yte, epochs=EPOCHS,
                                       input_shape=digits_data.IMAGE_SHAPE)
    print(f"{NAME}: test accuracy {acc:.4f}")
    meta = {
        "family": "gMLP (MLP with spatial gating unit)",
        "paper": "Pay Attention to MLPs (Liu, Dai, So, Le, 2021, arXiv:2105.08050)",
        "data": digits_data.DATA_DESC,
        "metric": f"test accuracy {acc:.4f} ({len(yte)} held-out images)",
        "description": "8x8 handwritten digit classifier; image [1,8,8] in [0,1] -> 10 class logits",
    }
    n_params = sum(p.numel() for p in model.parameters())
    arch = (f"2x2 patches (16 tokens of 4 pixels, via reshape/transpose) -> per-patch Linear 4->{DIM}; "
            f"{DEPTH} gMLP blocks, each: x + Linear({FFN // 2}->{DIM})(SGU(GELU(Linear({DIM}->{FFN})(LayerNorm(x))))), "
            "where the spatial gating unit splits the channels into Z1, Z2 and returns "
            "Z1 * (W LayerNorm(Z2) + b) with W a 16x16 token-mixing matrix (initialised near 0, b = 1); "
            f"LayerNorm, mean over tokens, Linear {DIM}->10. {n_params:,} parameters. Trained {EPOCHS} epochs "
            "with AdamW (one-cycle schedule, weight decay 0.05, label smoothing 0.1, random one-pixel shifts).")
    digits_data.export_image_classifier(
        model, NAME, meta, xte, yte, acc,
        "gMLP classifier for 8x8 handwritten digits.", arch, "gmlp_digits.py")


if __name__ == "__main__":
    main()

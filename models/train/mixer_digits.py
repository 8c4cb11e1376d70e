"""mixer_digits: MLP-Mixer on 8x8 digits (2x2 patches -> 16 tokens)."""
import torch
import torch.nn as nn

import common
import digits_data

NAME = "mixer_digits"
DIM, TOKENS, DEPTH = 48, 16, 4
TOKEN_HIDDEN, CHANNEL_HIDDEN = 32, 192
EPOCHS = 120


class MlpBlock(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class MixerBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM)
        self.token_mlp = MlpBlock(TOKENS, TOKEN_HIDDEN)
        self.norm2 = nn.LayerNorm(DIM)
        self.channel_mlp = MlpBlock(DIM, CHANNEL_HIDDEN)

    def forward(self, x):                                     # [B, tokens, channels]
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Mixer(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, DIM)                          # per-patch linear embedding
        self.blocks = nn.Sequential(*[MixerBlock() for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, 10)

    def forward(self, image):
        x = self.stem(digits_data.patchify(image, 2))
        x = self.norm(self.blocks(x))
        return self.head(x.mean(dim=1))                        # global average pooling over tokens


def main():
    common.seed_all(0)
    xtr, xte, ytr, yte = digits_data.load()
    model = Mixer()
    acc = digits_data.train_classifier(model, xtr, ytr, xte, yte, epochs=EPOCHS,
                                       input_shape=digits_data.IMAGE_SHAPE)
    print(f"{NAME}: test accuracy {acc:.4f}")
    meta = {
        "family": "MLP-Mixer (token-mixing + channel-mixing MLPs)",
        "paper": "MLP-Mixer: An all-MLP Architecture for Vision (Tolstikhin, Houlsby, Kolesnikov, Beyer, Zhai, Unterthiner, Yung, Steiner, Keysers, Uszkoreit, Lucic, Dosovitskiy, 2021, arXiv:2105.01601)",
        "data": digits_data.DATA_DESC,
        "metric": f"test accuracy {acc:.4f} ({len(yte)} held-out images)",
        "description": "8x8 handwritten digit classifier; image [1,8,8] in [0,1] -> 10 class logits",
    }
    n_params = sum(p.numel() for p in model.parameters())
    arch = (f"2x2 patches (16 tokens of 4 pixels, via reshape/transpose) -> per-patch Linear 4->{DIM}; "
            f"{DEPTH} Mixer blocks, each: x + TokenMLP(LayerNorm(x)^T)^T (16->{TOKEN_HIDDEN}->16, GELU) then "
            f"x + ChannelMLP(LayerNorm(x)) ({DIM}->{CHANNEL_HIDDEN}->{DIM}, GELU); LayerNorm, mean over "
            f"tokens, Linear {DIM}->10. {n_params:,} parameters. Trained {EPOCHS} epochs with AdamW "
            "(one-cycle schedule, weight decay 0.05, label smoothing 0.1, random one-pixel shifts).")
    digits_data.export_image_classifier(
        model, NAME, meta, xte, yte, acc,
        "MLP-Mixer classifier for 8x8 handwritten digits.", arch, "mixer_digits.py")


if __name__ == "__main__":
    main()

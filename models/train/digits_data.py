"""scikit-learn 8x8 digits, pixel values scaled to [0, 1], fixed stratified split."""
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DATA_DESC = ("scikit-learn load_digits (UCI optical recognition of handwritten digits, "
             "1797 8x8 images, pixels/16); stratified 80/20 train/test split, random_state=0")


def load():
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)


def train_classifier(model, xtr, ytr, xte, yte, epochs=150, lr=2e-3, wd=0.05,
                     batch=64, smoothing=0.1, shift_aug=True, seed=0, log_every=25,
                     input_shape=(-1, 64)):
    """AdamW + one-cycle schedule; optional random one-pixel shift augmentation."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    xtr_t = torch.from_numpy(xtr)
    ytr_t = torch.from_numpy(ytr)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    steps = epochs * ((len(xtr) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr_t), generator=g)
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            xb = xtr_t[idx]
            if shift_aug:
                img = xb.view(-1, 8, 8)
                pad = F.pad(img, (1, 1, 1, 1))
                dx, dy = torch.randint(0, 3, (2,), generator=g).tolist()
                xb = pad[:, dy:dy + 8, dx:dx + 8].reshape(-1, 64)
            loss = F.cross_entropy(model(xb.reshape(input_shape)), ytr_t[idx], label_smoothing=smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if log_every and (ep + 1) % log_every == 0:
            print(f"  epoch {ep + 1}: loss {loss.item():.4f} test acc {accuracy(model, xte, yte, input_shape):.4f}")
    model.eval()
    return accuracy(model, xte, yte, input_shape)


def accuracy(model, x, y, input_shape=(-1, 64)):
    import torch

    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x).reshape(input_shape)).argmax(-1).numpy()
    return float((pred == y).mean())


IMAGE_SHAPE = (-1, 1, 8, 8)


def patchify(image, patch=2):
    """[B, 1, 8, 8] -> [B, (8/p)^2, p*p] non-overlapping patches, row-major (reshape/transpose only)."""
    n = 8 // patch
    x = image.reshape(-1, n, patch, n, patch)           # [B, row, py, col, px]
    x = x.permute(0, 1, 3, 2, 4)                         # [B, row, col, py, px]
    return x.reshape(-1, n * n, patch * patch)


def export_image_classifier(model, name, meta, xte, yte, acc, title, arch, script):
    """Export an image -> logits digits model and write samples and card."""
    import numpy as np
    import torch

    import common

    img = xte.reshape(IMAGE_SHAPE)
    batch = torch.export.Dim("batch")
    path = common.export_torch(model, (torch.from_numpy(img[:4]),), name, ["image"], ["logits"],
                               {"image": {0: batch}}, meta)
    common.verify(path, {"image": img[:17]})
    sess = common.session(path)
    onnx_acc = float((sess.run(None, {"image": img})[0].argmax(-1) == yte).mean())
    assert abs(onnx_acc - acc) < 1e-9, (onnx_acc, acc)
    feeds = [{"image": img[a:b]} for a, b in ((0, 1), (1, 3), (3, 6), (6, 10))]
    common.write_samples(name, feeds)
    common.write_card(
        name, title=title, family=meta["family"], paper=meta["paper"], data=meta["data"],
        metric=meta["metric"],
        meanings={"image": "one 8x8 grey image per row (channel axis of size 1), pixels scaled to [0, 1] (raw value / 16)",
                  "logits": "unnormalised class scores for digits 0-9 (argmax = prediction)"},
        body="## Architecture\n\n" + arch, script=script)
    common.save_metrics(name, {"test_accuracy": acc})
    return path

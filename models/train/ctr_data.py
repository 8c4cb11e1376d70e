"""Seeded synthetic click log shared by the CTR models (finalmlp_ctr, dcnv2_ctr, widedeep_ctr).

200,000 impressions, 8 categorical fields with Zipf-like id frequencies and 4 dense
float features. Clicks come from a hidden logistic model with per-id weights, low-rank
pairwise field interactions and dense x categorical terms. Rows are i.i.d.; the split is
80% train / 10% validation / 10% test by row order.
"""
import numpy as np

N_ROWS = 200_000
VOCABS = [10, 24, 50, 100, 200, 400, 700, 1000]
N_FIELDS = len(VOCABS)
N_DENSE = 4
SEED = 1234
DATA_DESC = ("seeded synthetic click log (200k rows, 8 Zipf-distributed categorical fields with "
             "vocab 10-1000, 4 dense standard-scale floats, clicks from a hidden logistic model with "
             "pairwise interactions); 80/10/10 train/val/test split, metrics on test")


def _zipf_ids(rng, n, vocab, a=1.1):
    ranks = np.arange(1, vocab + 1)
    p = ranks ** (-a)
    p /= p.sum()
    perm = rng.permutation(vocab)  # popular ids are not simply the small ones
    return perm[rng.choice(vocab, size=n, p=p)]


def generate(n=N_ROWS, seed=SEED):
    rng = np.random.default_rng(seed)
    cat = np.stack([_zipf_ids(rng, n, v) for v in VOCABS], axis=1).astype(np.int64)
    dense = rng.standard_normal((n, N_DENSE)).astype(np.float32)
    dense[:, 3] = np.abs(dense[:, 3])  # a non-negative, skewed feature (e.g. scaled dwell time)

    # hidden logistic model
    rank = 4
    w = [rng.normal(0, 0.5, v) for v in VOCABS]
    u = [rng.normal(0, 0.6, (v, rank)) for v in VOCABS]
    pairs = [(0, 3), (1, 4), (2, 7), (3, 5), (4, 6), (5, 7), (0, 6), (1, 2)]
    dense_w = np.array([0.6, -0.4, 0.3, 0.5])
    dc = rng.normal(0, 0.5, VOCABS[5])  # dense[:,0] x field 5 interaction

    logit = np.full(n, -2.0)
    for f in range(N_FIELDS):
        logit += w[f][cat[:, f]]
    for f, g in pairs:
        logit += np.sum(u[f][cat[:, f]] * u[g][cat[:, g]], axis=1)
    logit += dense @ dense_w
    logit += dc[cat[:, 5]] * dense[:, 0]
    logit += 0.3 * dense[:, 1] * dense[:, 2]
    prob = 1.0 / (1.0 + np.exp(-logit))
    click = (rng.random(n) < prob).astype(np.float32)

    a, b = int(0.8 * n), int(0.9 * n)
    split = lambda arr: (arr[:a], arr[a:b], arr[b:])
    return {
        "cat": split(cat), "dense": split(dense), "click": split(click), "prob": split(prob),
    }

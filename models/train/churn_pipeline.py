"""churn_pipeline: a scikit-learn pipeline that takes string categories inside the graph.

ColumnTransformer (OneHotEncoder(handle_unknown="ignore") on three string columns,
StandardScaler on two numeric ones) feeding an MLPClassifier, trained on a seeded synthetic
subscription log (no download) and exported with skl2onnx (`zipmap=False`, so the
probabilities are a tensor). Each column is its own graph input.
"""
import numpy as np
import onnx
import pandas as pd
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.metrics import roc_auc_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import common

NAME = "churn_pipeline"
PLANS = ["basic", "plus", "pro"]
REGIONS = ["north", "south", "east", "west"]
DEVICES = ["android", "ios", "web"]
STRINGS = ["plan", "region", "device"]
NUMBERS = ["tenure_months", "monthly_spend"]

META = {
    "family": "MLP (scikit-learn MLPClassifier behind a one-hot/scaler ColumnTransformer)",
    "paper": "none (scikit-learn pipeline exported with skl2onnx)",
    "data": "synthetic subscription log, seeded (in the script)",
    "metric": "",
    "description": "Churn classifier: string plan/region/device and numeric tenure/spend columns in, churn label and probabilities out",
}


def make_data(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """A subscription log whose churn odds depend on every column, with label noise."""
    df = pd.DataFrame({
        "plan": rng.choice(PLANS, n, p=[0.5, 0.3, 0.2]),
        "region": rng.choice(REGIONS, n),
        "device": rng.choice(DEVICES, n, p=[0.45, 0.35, 0.2]),
        "tenure_months": rng.gamma(2.0, 12.0, n).astype(np.float32),
        "monthly_spend": rng.normal(30.0, 12.0, n).clip(5, 120).astype(np.float32),
    })
    logit = (
        -0.5
        + df["plan"].map({"basic": 0.8, "plus": 0.0, "pro": -0.9}).to_numpy()
        + df["region"].map({"north": -0.3, "south": 0.4, "east": 0.0, "west": 0.2}).to_numpy()
        + df["device"].map({"android": 0.2, "ios": -0.2, "web": 0.5}).to_numpy()
        - 0.05 * df["tenure_months"].to_numpy()
        + 0.02 * (df["monthly_spend"].to_numpy() - 30.0)
    )
    df["churn"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return df


def feed(df: pd.DataFrame) -> dict:
    out = {c: df[[c]].to_numpy().astype(object) for c in STRINGS}
    out.update({c: df[[c]].to_numpy().astype(np.float32) for c in NUMBERS})
    return out


def main():
    common.seed_all(0)
    rng = np.random.default_rng(0)
    train, test = make_data(6000, rng), make_data(2000, rng)
    pipe = Pipeline([
        ("columns", ColumnTransformer([
            ("onehot", OneHotEncoder(handle_unknown="ignore"), STRINGS),
            ("scale", StandardScaler(), NUMBERS),
        ])),
        ("mlp", MLPClassifier(hidden_layer_sizes=(16,), max_iter=400, random_state=0)),
    ])
    pipe.fit(train[STRINGS + NUMBERS], train["churn"])
    auc = float(roc_auc_score(test["churn"], pipe.predict_proba(test[STRINGS + NUMBERS])[:, 1]))
    print(f"  test ROC AUC {auc:.4f}")

    types = [(c, StringTensorType([None, 1])) for c in STRINGS]
    types += [(c, FloatTensorType([None, 1])) for c in NUMBERS]
    onx = convert_sklearn(pipe, initial_types=types, target_opset={"": 17, "ai.onnx.ml": 3},
                          options={id(pipe): {"zipmap": False}})
    meta = dict(META, metric=f"ROC AUC {auc:.4f} on 2000 held-out synthetic rows")
    model = common.finalize_onnx(onx, meta)
    path = common.save_onnx(model, NAME)

    pool = feed(test.iloc[:17])
    common.verify(path, pool)
    sess = common.session(path)
    label, proba = sess.run(None, feed(test.iloc[:50]))
    want = pipe.predict_proba(test[STRINGS + NUMBERS].iloc[:50])
    assert np.allclose(proba, want, atol=1e-5), np.abs(proba - want).max()

    unknown = test.iloc[:2].copy()
    unknown["plan"] = ["enterprise", "basic"]
    unknown["device"] = ["tv", "ios"]
    feeds = [feed(test.iloc[:1]), feed(test.iloc[1:4]), feed(unknown), feed(test.iloc[4:8])]
    common.write_samples(NAME, feeds)
    body = (
        "## What it is\n\n"
        "A scikit-learn `Pipeline` that takes text categories **inside the graph**: a "
        "`ColumnTransformer` one-hot encodes the string columns `plan`, `region` and `device` "
        "(`OneHotEncoder(handle_unknown=\"ignore\")`: an unseen category such as `enterprise` "
        "becomes all zeros instead of an error) and standardises `tenure_months` and "
        "`monthly_spend`, and an `MLPClassifier` (one hidden layer of 16) predicts churn. "
        "It is exported with `skl2onnx` (`zipmap=False`, so `probabilities` is a plain "
        "`[-1, 2]` tensor, not a list of maps); every column is its own `[-1, 1]` input.\n\n"
        "Data: a seeded synthetic subscription log made in the script (6000 training rows, "
        "2000 held out); churn odds depend on every column, with label noise."
    )
    common.write_card(
        NAME,
        title="Churn classifier over string and numeric columns (scikit-learn pipeline, skl2onnx).",
        family=META["family"], paper=META["paper"], data=META["data"], metric=meta["metric"],
        meanings={"plan": "basic, plus or pro (other strings: ignored)",
                  "region": "north, south, east or west",
                  "device": "android, ios or web",
                  "tenure_months": "months subscribed",
                  "monthly_spend": "spend per month",
                  "label": "1 = churns", "probabilities": "P(stays), P(churns)"},
        body=body, script="churn_pipeline.py",
        samples_note=("`samples.json` holds held-out rows (batches of 1, 3 and 4) and a batch with "
                      "categories the pipeline never saw, with the outputs ONNX Runtime (Python, "
                      "CPU) produced, in KServe V2 tensor form."),
    )
    common.save_metrics(NAME, {"roc_auc": round(auc, 4)})
    print(f"{NAME}: ok")


if __name__ == "__main__":
    main()

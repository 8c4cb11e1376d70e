"""string_echo: protocol test fixture for BYTES (string) tensors.

Built directly with the onnx helper API (no training), in the spirit of Triton's
`simple_string`: the string input comes back unchanged (`Identity`), and an `ai.onnx.ml`
`LabelEncoder` maps each string to an INT64 code (unknown strings to -1).
"""
import numpy as np
import onnx
from onnx import TensorProto, helper

import common

NAME = "string_echo"
COLORS = ["red", "green", "blue"]

META = {
    "family": "test fixture (not an MLP)",
    "paper": "none (protocol test fixture)",
    "data": "none",
    "metric": "exact: echo = text, code = index of text in [red, green, blue] or -1",
    "description": "String fixture: a [-1,-1] BYTES input echoed unchanged and label-encoded to INT64",
}


def build() -> onnx.ModelProto:
    text = helper.make_tensor_value_info("text", TensorProto.STRING, ["batch", "len"])
    echo = helper.make_tensor_value_info("echo", TensorProto.STRING, ["batch", "len"])
    code = helper.make_tensor_value_info("code", TensorProto.INT64, ["batch", "len"])
    nodes = [
        helper.make_node("Identity", ["text"], ["echo"], name="echo"),
        helper.make_node("LabelEncoder", ["text"], ["code"], name="encode", domain="ai.onnx.ml",
                         keys_strings=COLORS, values_int64s=list(range(len(COLORS))),
                         default_int64=-1),
    ]
    graph = helper.make_graph(nodes, NAME, [text], [echo, code])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 3)],
                              producer_name="mlpserve-models")
    return common.finalize_onnx(model, META)


def strings(rows) -> np.ndarray:
    return np.array(rows, dtype=object)


def main():
    model = build()
    path = common.save_onnx(model, NAME)
    rng = np.random.default_rng(0)
    words = COLORS + ["", "Red", "grün", "a b", "naïve ☕", "x" * 40]
    pool = {"text": strings(rng.choice(words, size=(17, 3)).tolist())}
    common.verify(path, pool, atol=0.0)
    sess = common.session(path)
    echo, code = sess.run(None, pool)
    assert echo.tolist() == pool["text"].tolist()
    want = [[COLORS.index(w) if w in COLORS else -1 for w in row] for row in pool["text"].tolist()]
    assert code.tolist() == want

    feeds = [
        {"text": strings([["red", "green", "blue"]])},
        {"text": strings([["", "grün", "naïve ☕"], ["Red", "a b", "blue"]])},
        {"text": strings(rng.choice(words, size=(3, 2)).tolist())},
        {"text": strings(rng.choice(words, size=(4, 1)).tolist())},
    ]
    body = (
        "## What it is\n\n"
        "A protocol test fixture for string (BYTES) tensors, **not an MLP and not trained**, in "
        "the spirit of Triton's `simple_string`: it is built directly with the `onnx` helper API "
        "(opset 17, `ai.onnx.ml` 3). The input `text` (BYTES, `[-1, -1]`) goes to two outputs "
        "of the same shape:\n\n"
        "- `echo` (BYTES): `text` unchanged (ONNX `Identity`);\n"
        "- `code` (INT64): the index of each string in `[red, green, blue]`, -1 for any other "
        "string (`ai.onnx.ml` `LabelEncoder`).\n\n"
        "Strings are UTF-8 text without NUL bytes (ONNX Runtime's rule); the samples include "
        "the empty string, non-ASCII text and different row lengths. Axis 1 is dynamic, so "
        "`pad_axes = [1]` in a `config.toml` lets rows of different lengths share a batch "
        "(strings pad with \"\", which `code` maps to -1)."
    )
    common.publish_fixture(
        NAME, META, feeds,
        title="String echo fixture: BYTES in, the same BYTES and an INT64 label code out.",
        meanings={"text": "any UTF-8 strings", "echo": "text unchanged",
                  "code": "0 red, 1 green, 2 blue, -1 anything else"},
        body=body,
        samples_note=("`samples.json` holds a row of the three known colours, a batch of edge "
                      "strings (empty, non-ASCII, unknown) and two seeded random batches, with the "
                      "outputs ONNX Runtime (Python, CPU) produced, in KServe V2 tensor form."),
    )


if __name__ == "__main__":
    main()

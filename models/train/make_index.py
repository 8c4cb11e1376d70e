"""Write models/README.md: the zoo table, read back from the exported ONNX files."""
import onnx

import common

ORDER = ["mlp_digits", "mixer_digits", "gmlp_digits", "tsmixer_macro", "finalmlp_ctr", "dcnv2_ctr",
         "widedeep_ctr", "din_ctr", "features_ctr", "ranking_ctr", "ranking_towers",
         "fastkan_cancer", "field_china", "dtype_echo",
         "string_echo", "churn_pipeline"]


def sig(rows, kind):
    return ", ".join(f"`{n}` {dt} `{shape}`" for k, n, dt, shape in rows if k == kind)


def main():
    configs = ", ".join(f"`{n}`" for n in ORDER if (common.MODELS_DIR / n / "config.toml").exists())
    lines = [
        "# Model zoo",
        "",
        "A ready-to-serve model repository: `<name>/1/model.onnx` (single-file ONNX, IR 10, dynamic "
        "batch axis 0 on every input and output), `<name>/samples.json` (reference requests and "
        "responses from ONNX Runtime, KServe V2 tensor form), `<name>/README.md` (model card) and, "
        "where a model needs server settings, `<name>/config.toml` (" + configs + "). "
        "Each model carries `family`, `paper`, `data`, `metric` and `description` in its ONNX "
        "metadata. `-1` marks a dynamic axis. `ranking_towers` has a second graph, "
        "`1/context.onnx` (its user tower, run once per request; `[context]` in its config.toml), "
        "and lists the inputs clients send.",
        "",
        "| model | family | inputs -> outputs | metric |",
        "|---|---|---|---|",
    ]
    total = 0
    for name in ORDER:
        path = common.onnx_path(name)
        total += path.stat().st_size
        if (path.parent / "context.onnx").exists():
            total += (path.parent / "context.onnx").stat().st_size
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        rows = common.io_table(path)
        context = path.parent / "context.onnx"
        if context.exists():
            # A context model: clients send the context graph's inputs and the scorer's
            # others; the context graph's outputs feed the scorer.
            ctx = common.io_table(context)
            fed = {n for k, n, _, _ in ctx if k == "output"}
            rows = [r for r in ctx if r[0] == "input"] + [r for r in rows if r[1] not in fed]
        family = meta["family"].split(" (")[0]
        lines.append(f"| [`{name}`]({name}/README.md) | {family} | {sig(rows, 'input')} -> "
                     f"{sig(rows, 'output')} | {meta['metric']} |")
    lines += [
        "",
        f"Total size of the ONNX files: {total / 1024:.0f} KB.",
        "",
        "Everything here is regenerated from source by `train/make_all.sh` (see `train/README.md`).",
        "",
    ]
    (common.MODELS_DIR / "README.md").write_text("\n".join(lines))
    print("wrote models/README.md")


if __name__ == "__main__":
    main()

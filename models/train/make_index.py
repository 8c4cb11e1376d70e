"""Write models/README.md: the zoo table, read back from the exported ONNX files."""
import onnx

import common

ORDER = ["mlp_digits", "mixer_digits", "gmlp_digits", "tsmixer_macro", "finalmlp_ctr", "dcnv2_ctr",
         "widedeep_ctr", "din_ctr", "features_ctr", "ranking_ctr", "fastkan_cancer", "field_china", "dtype_echo",
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
        "metadata. `-1` marks a dynamic axis.",
        "",
        "| model | family | inputs -> outputs | metric |",
        "|---|---|---|---|",
    ]
    total = 0
    for name in ORDER:
        path = common.onnx_path(name)
        total += path.stat().st_size
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        rows = common.io_table(path)
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

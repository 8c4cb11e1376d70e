#!/usr/bin/env python3
"""Helpers of scripts/gpu-check.sh, standard library only (the GPU machine has no network).

  gpu_check.py samples --url URL --models DIR --expect-provider cuda --out FILE.json
      Sends every sample of every zoo model (models/<m>/samples.json) to a running server
      over V2 JSON and compares the outputs with the reference outputs (ONNX Runtime CPU):
      shape and datatype exactly, integers and booleans exactly, floats with
      |got - want| <= atol + rtol * |want|. GPU matrix products may run in TF32 (10-bit
      mantissa), so an output outside the strict tolerance but inside the TF32 one is
      reported as `tf32`, not as a failure, unless --strict. Also checks that the model's
      metadata reports the expected execution provider for every instance.
  gpu_check.py table --results DIR
      Prints one markdown table from DIR/samples-{cpu,cuda}.json and
      DIR/bench-{heavy,ranking}-{cpu,cuda}.log (the output of `mlpserve bench`).
"""

import argparse
import json
import math
import os
import re
import sys
import urllib.error
import urllib.request

EXACT = {"BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


def flatten(v):
    if isinstance(v, list):
        out = []
        for x in v:
            out.extend(flatten(x))
        return out
    return [v]


def http(method, url, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def compare(got, want, datatype, rtol, atol):
    """Returns (max_abs_err, max_rel_err, worst_excess): worst_excess > 0 means outside."""
    if len(got) != len(want):
        return math.inf, math.inf, math.inf
    max_abs = max_rel = 0.0
    worst = -math.inf
    for g, w in zip(got, want):
        if datatype in EXACT or isinstance(w, bool) or isinstance(g, bool):
            err = 0.0 if g == w else math.inf
            excess = err
        else:
            g, w = float(g), float(w)
            if math.isnan(w) and math.isnan(g):
                continue
            err = abs(g - w)
            excess = err - (atol + rtol * abs(w))
        max_abs = max(max_abs, err)
        if err and w:
            max_rel = max(max_rel, err / abs(float(w)))
        worst = max(worst, excess)
    return max_abs, max_rel, worst


def model_names(models):
    return sorted(
        m
        for m in os.listdir(models)
        if os.path.isfile(os.path.join(models, m, "1", "model.onnx"))
        and os.path.isfile(os.path.join(models, m, "samples.json"))
    )


def check_model(base, models, name, args):
    """One model: {'model', 'status', 'samples', 'max_abs', 'max_rel', 'provider', 'detail'}."""
    res = {"model": name, "status": "ok", "samples": 0, "max_abs": 0.0, "max_rel": 0.0}
    status, body = http("GET", f"{base}/v2/models/{name}")
    if status != 200:
        res.update(status="FAIL", detail=f"metadata: HTTP {status} {body[:300]!r}")
        return res
    meta = json.loads(body)
    placement = (meta.get("parameters") or {}).get("execution_provider")
    res["provider"] = placement
    if placement is None:
        if args.expect_provider != "cpu":
            res.update(
                status="FAIL",
                detail="metadata has no parameters.execution_provider: cannot tell "
                "where the model runs (server without the execution-provider policy)",
            )
            return res
    elif any(not p.startswith(args.expect_provider) for p in placement.split(",")):
        res.update(
            status="FAIL",
            detail=f"runs on {placement}, expected {args.expect_provider} everywhere",
        )
        return res
    with open(os.path.join(models, name, "samples.json")) as f:
        samples = json.load(f)["samples"]
    for i, sample in enumerate(samples):
        inputs = [
            {"name": n, "datatype": t["datatype"], "shape": t["shape"], "data": t["data"]}
            for n, t in sample["inputs"].items()
        ]
        status, body = http("POST", f"{base}/v2/models/{name}/infer", {"inputs": inputs})
        if status != 200:
            res.update(status="FAIL", detail=f"sample {i}: HTTP {status} {body[:300]!r}")
            return res
        outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
        for out_name, want in sample["outputs"].items():
            got = outputs.get(out_name)
            where = f"sample {i} {out_name}"
            if got is None:
                res.update(status="FAIL", detail=f"{where}: missing")
                return res
            if got["shape"] != want["shape"] or got["datatype"] != want["datatype"]:
                res.update(
                    status="FAIL",
                    detail=f"{where}: {got['datatype']} {got['shape']} "
                    f"!= {want['datatype']} {want['shape']}",
                )
                return res
            g, w = flatten(got["data"]), flatten(want["data"])
            max_abs, max_rel, excess = compare(g, w, want["datatype"], args.rtol, args.atol)
            res["max_abs"] = max(res["max_abs"], max_abs)
            res["max_rel"] = max(res["max_rel"], max_rel)
            if excess > 0:
                _, _, tf32_excess = compare(
                    g, w, want["datatype"], args.tf32_rtol, args.tf32_atol
                )
                if tf32_excess > 0 or args.strict:
                    res.update(
                        status="FAIL",
                        detail=f"{where}: max abs err {max_abs:.3g}, max rel err {max_rel:.3g}",
                    )
                    return res
                res["status"] = "tf32"
                res["detail"] = f"{where}: within TF32 tolerance only"
        res["samples"] += 1
    return res


def cmd_samples(args):
    base = args.url.rstrip("/")
    names = model_names(args.models)
    if not names:
        sys.exit(f"no models with 1/model.onnx and samples.json under {args.models}")
    results = [check_model(base, args.models, n, args) for n in names]
    for r in results:
        print(
            f"{r['status']:>4}  {r['model']:<16} samples {r['samples']:>2}  "
            f"provider {r.get('provider')}  max abs err {r['max_abs']:.3g}  "
            f"max rel err {r['max_rel']:.3g}  {r.get('detail', '')}"
        )
    summary = {
        "expect_provider": args.expect_provider,
        "rtol": args.rtol,
        "atol": args.atol,
        "models": results,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    failed = [r["model"] for r in results if r["status"] == "FAIL"]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


LEVEL = re.compile(
    r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\S+)\s"
)
BEST = re.compile(r"best ceiling: (\d+) rows/s at batch (\d+)")


def parse_bench(path):
    """{'levels': {clients: {...}}, 'best': (rows/s, batch)} or None when absent."""
    if not os.path.isfile(path):
        return None
    levels, best = {}, None
    with open(path) as f:
        for line in f:
            m = LEVEL.match(line)
            if m:
                levels[int(m[1])] = {
                    "rps": float(m[2]),
                    "rows": float(m[3]),
                    "p50": float(m[4]),
                    "p99": float(m[6]),
                    "errors": int(m[8]),
                    "batch": m[9],
                }
            m = BEST.search(line)
            if m:
                best = (float(m[1]), int(m[2]))
    return {"levels": levels, "best": best}


def samples_cell(path):
    if not os.path.isfile(path):
        return "not run"
    with open(path) as f:
        s = json.load(f)
    models = s["models"]
    count = {k: sum(1 for r in models if r["status"] == k) for k in ("ok", "tf32", "FAIL")}
    worst = max((r["max_abs"] for r in models), default=0.0)
    parts = [f"{count['ok']}/{len(models)} ok"]
    if count["tf32"]:
        parts.append(f"{count['tf32']} within TF32 only")
    if count["FAIL"]:
        failed = ", ".join(r["model"] for r in models if r["status"] == "FAIL")
        parts.append(f"**{count['FAIL']} FAIL** ({failed})")
    parts.append(f"max abs err {worst:.2g}")
    return ", ".join(parts)


def cmd_table(args):
    d = args.results
    print("| check | CPU | CUDA | CUDA / CPU |")
    print("|---|---|---|---|")
    print(
        f"| zoo samples vs reference (CPU rtol/atol as tests/zoo.rs; CUDA {args.rtol:g}/{args.atol:g}) "
        f"| {samples_cell(os.path.join(d, 'samples-cpu.json'))} "
        f"| {samples_cell(os.path.join(d, 'samples-cuda.json'))} | |"
    )
    for key, label in (("heavy", "heavy MLP 512-2048-2048-512"), ("ranking", "finalmlp_ctr ranking")):
        cpu = parse_bench(os.path.join(d, f"bench-{key}-cpu.log"))
        gpu = parse_bench(os.path.join(d, f"bench-{key}-cuda.log"))
        clients = sorted(set((cpu or {}).get("levels", {})) | set((gpu or {}).get("levels", {})))
        for c in clients:
            cl = (cpu or {}).get("levels", {}).get(c)
            gl = (gpu or {}).get("levels", {}).get(c)

            def cell(level):
                if level is None:
                    return "not run"
                err = f", {level['errors']} errors" if level["errors"] else ""
                return (
                    f"{level['rows']:,.0f} rows/s, p50 {level['p50']:.3f} ms, "
                    f"p99 {level['p99']:.3f} ms, batch {level['batch']}{err}"
                )

            ratio = f"{gl['rows'] / cl['rows']:.2f}x" if cl and gl and cl["rows"] else ""
            who = "1 client" if c == 1 else f"{c} clients"
            print(f"| {label}, 1 row/request, {who} | {cell(cl)} | {cell(gl)} | {ratio} |")

        def best(b):
            if b is None or b["best"] is None:
                return "not run", None
            return f"{b['best'][0]:,.0f} rows/s at batch {b['best'][1]}", b["best"][0]

        ct, cv = best(cpu)
        gt, gv = best(gpu)
        ratio = f"{gv / cv:.2f}x" if cv and gv else ""
        print(f"| {label}, bare session.run ceiling (best) | {ct} | {gt} | {ratio} |")
    cuda = os.path.join(d, "samples-cuda.json")
    if os.path.isfile(cuda):
        with open(cuda) as f:
            off = [
                r["model"]
                for r in json.load(f)["models"]
                if not (r.get("provider") or "").startswith("cuda")
            ]
        if off:
            print(
                f"\nnote: not verified to run on CUDA (metadata execution_provider): "
                f"{', '.join(off)}; the CUDA column may be CPU numbers"
            )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("samples")
    s.add_argument("--url", required=True)
    s.add_argument("--models", default="models")
    s.add_argument("--expect-provider", choices=["cpu", "cuda"], required=True)
    s.add_argument("--rtol", type=float, default=1e-3)
    s.add_argument("--atol", type=float, default=1e-4)
    s.add_argument("--tf32-rtol", type=float, default=1e-2)
    s.add_argument("--tf32-atol", type=float, default=1e-3)
    s.add_argument("--strict", action="store_true", help="TF32-only matches fail too")
    s.add_argument("--out")
    t = sub.add_parser("table")
    t.add_argument("--results", required=True)
    t.add_argument("--rtol", type=float, default=1e-3)
    t.add_argument("--atol", type=float, default=1e-4)
    args = p.parse_args()
    {"samples": cmd_samples, "table": cmd_table}[args.cmd](args)


if __name__ == "__main__":
    main()

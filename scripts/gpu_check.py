#!/usr/bin/env python3
"""Helpers of scripts/gpu-check.sh, standard library only (the GPU machine has no network).

  gpu_check.py samples --url URL --models DIR --expect-provider cuda --rtol R --atol A --out FILE.json
      Sends every sample of every zoo model (models/<m>/samples.json) to a running server
      over V2 JSON and compares the outputs with the reference outputs (ONNX Runtime CPU):
      shape and datatype exactly, integers and booleans exactly, floats with
      |got - want| <= atol + rtol * |want|. GPU matrix products may run in TF32 (10-bit
      mantissa), so an output outside the strict tolerance but inside the TF32 one is
      reported as `tf32` (within rtol 1e-2, atol 1e-3), not as a failure, unless --strict.
      Also checks that the model's
      metadata reports the expected execution provider for every instance.
      Writes per model the largest error of each sample (`errors`).
  gpu_check.py table --results DIR
      Prints a short header and one markdown table from DIR/samples-{cpu,cuda}.json (their
      tolerances too) and
      DIR/bench-{heavy,ranking}-{cpu,cuda}.log (the output of `mlpserve-bench`), then notes:
      ONNX Runtime placing nodes on the CPU in a CUDA log, the servers' WARN/ERROR lines,
      models not on the GPU's provider.
"""

import argparse
import json
import math
import os
import re
import sys
import urllib.error
import urllib.request

# Compared for equality: integers, booleans and strings (BYTES).
EXACT = {"BOOL", "BYTES", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
# What an FP32 matrix product in TF32 (10-bit mantissa) stays within.
TF32_RTOL, TF32_ATOL = 1e-2, 1e-3


def flatten(v):
    return [x for e in v for x in flatten(e)] if isinstance(v, list) else [v]


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
            # Strings and integers match exactly or not at all (no relative error).
            err = 0.0 if g == w else math.inf
            max_abs = max(max_abs, err)
            worst = max(worst, err)
            continue
        g, w = float(g), float(w)
        if math.isnan(w) and math.isnan(g):
            continue
        err = abs(g - w)
        max_abs = max(max_abs, err)
        if err and w:
            max_rel = max(max_rel, err / abs(w))
        worst = max(worst, err - (atol + rtol * abs(w)))
    return max_abs, max_rel, worst


def model_names(models):
    return sorted(
        m
        for m in os.listdir(models)
        if os.path.isfile(os.path.join(models, m, "1", "model.onnx"))
        and os.path.isfile(os.path.join(models, m, "samples.json"))
    )


class Fail(Exception):
    """The model fails the check; the message says where and why."""


def check_model(base, models, name, args):
    """One model: {'model', 'status', 'samples', 'max_abs', 'max_rel', 'provider', 'detail'}."""
    res = {"model": name, "status": "ok", "samples": 0, "max_abs": 0.0, "max_rel": 0.0, "errors": []}
    try:
        check_samples(base, models, name, args, res)
    except Fail as e:
        res.update(status="FAIL", detail=str(e))
    return res


def check_samples(base, models, name, args, res):
    status, body = http("GET", f"{base}/v2/models/{name}")
    if status != 200:
        raise Fail(f"metadata: HTTP {status} {body[:300]!r}")
    placement = (json.loads(body).get("parameters") or {}).get("execution_provider")
    res["provider"] = placement
    if placement is None and args.expect_provider != "cpu":
        raise Fail(
            "metadata has no parameters.execution_provider: cannot tell "
            "where the model runs (server without the execution-provider policy)"
        )
    if placement is not None and any(not p.startswith(args.expect_provider) for p in placement.split(",")):
        raise Fail(f"runs on {placement}, expected {args.expect_provider} everywhere")
    with open(os.path.join(models, name, "samples.json")) as f:
        samples = json.load(f)["samples"]
    for i, sample in enumerate(samples):
        inputs = [
            {"name": n, "datatype": t["datatype"], "shape": t["shape"], "data": t["data"]}
            for n, t in sample["inputs"].items()
        ]
        status, body = http("POST", f"{base}/v2/models/{name}/infer", {"inputs": inputs})
        if status != 200:
            raise Fail(f"sample {i}: HTTP {status} {body[:300]!r}")
        outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
        sample_err = 0.0
        for out_name, want in sample["outputs"].items():
            got = outputs.get(out_name)
            where = f"sample {i} {out_name}"
            if got is None:
                raise Fail(f"{where}: missing")
            if got["shape"] != want["shape"] or got["datatype"] != want["datatype"]:
                raise Fail(f"{where}: {got['datatype']} {got['shape']} != {want['datatype']} {want['shape']}")
            g, w = flatten(got["data"]), flatten(want["data"])
            max_abs, max_rel, excess = compare(g, w, want["datatype"], args.rtol, args.atol)
            res["max_abs"] = max(res["max_abs"], max_abs)
            res["max_rel"] = max(res["max_rel"], max_rel)
            sample_err = max(sample_err, max_abs)
            if excess > 0:
                if args.strict or compare(g, w, want["datatype"], TF32_RTOL, TF32_ATOL)[2] > 0:
                    raise Fail(f"{where}: max abs err {max_abs:.3g}, max rel err {max_rel:.3g}")
                res.update(status="tf32", detail=f"{where}: within TF32 tolerance only")
        res["samples"] += 1
        res["errors"].append(sample_err)


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
THREADS = re.compile(r"intra_op_threads (\d+), async threads (\d+)")
PLACEMENT = "Some nodes were not assigned to the preferred execution providers"


def read(path):
    if not os.path.isfile(path):
        return None
    with open(path, errors="replace") as f:
        return f.read()


def parse_bench(text):
    """{'levels': {clients: {...}}, 'best': (rows/s, batch), 'threads', 'why'}."""
    levels, best, threads = {}, None, None
    for line in text.splitlines():
        m = LEVEL.match(line)
        if m:
            levels[int(m[1])] = {
                "rows": float(m[3]),
                "p50": float(m[4]),
                "p99": float(m[6]),
                "errors": int(m[8]),
                "batch": m[9],
            }
        m = BEST.search(line) or THREADS.search(line)
        if m and m.re is BEST:
            best = (float(m[1]), int(m[2]))
        elif m:
            threads = (int(m[1]), int(m[2]))
    last = text.strip().splitlines()[-1:] or ["empty log"]
    return {"levels": levels, "best": best, "threads": threads, "why": last[0][:90]}


def samples_cell(path):
    text = read(path)
    if text is None:
        return "not run"
    models = json.loads(text)["models"]
    count = {k: sum(1 for r in models if r["status"] == k) for k in ("ok", "tf32", "FAIL")}
    parts = [f"{count['ok']}/{len(models)} ok"]
    if count["tf32"]:
        parts.append(f"{count['tf32']} within TF32 only")
    if count["FAIL"]:
        failed = ", ".join(r["model"] for r in models if r["status"] == "FAIL")
        parts.append(f"**{count['FAIL']} FAIL** ({failed})")
    parts.append(f"max abs err {max((r['max_abs'] for r in models), default=0.0):.2g}")
    return ", ".join(parts)


def cmd_table(args):
    d = args.results
    cuda = read(os.path.join(d, "samples-cuda.json"))
    tolerance = json.loads(cuda) if cuda else {"rtol": "?", "atol": "?"}
    bench = {
        (key, p): parse_bench(read(os.path.join(d, f"bench-{key}-{p}.log")) or "not run")
        for key in ("heavy", "ranking")
        for p in ("cpu", "cuda")
    }
    threads = bench["heavy", "cpu"]["threads"] or bench["ranking", "cpu"]["threads"]
    print(f"GPU check: {args.gpu}; ONNX Runtime {args.ort}; CUDA column on provider {args.gpu_ep}")
    print(
        f"CPU column: intra_op_threads {threads[0] if threads else args.cpu_threads} "
        f"(async threads {threads[1] if threads else '?'}) on {os.cpu_count()} cores; "
        "1 row per request; ceiling = bare session.run, best batch of 1/64/256"
    )
    print("\n| check | CPU | CUDA | CUDA / CPU |\n|---|---|---|---|")
    print(
        f"| zoo samples vs reference (CUDA rtol {tolerance['rtol']}, atol {tolerance['atol']}) "
        f"| {samples_cell(os.path.join(d, 'samples-cpu.json'))} "
        f"| {samples_cell(os.path.join(d, 'samples-cuda.json'))} | |"
    )

    def cell(b, level):
        if level is None:
            return b["why"] if not b["levels"] else "not run"
        err = f", **{level['errors']} errors**" if level["errors"] else ""
        return (
            f"{level['rows']:,.0f} rows/s, p50 {level['p50']:.3f} ms, "
            f"p99 {level['p99']:.3f} ms, batch {level['batch']}{err}"
        )

    for key, label in (("heavy", "heavy MLP 512-2048-2048-512"), ("ranking", "finalmlp_ctr")):
        cpu, gpu = bench[key, "cpu"], bench[key, "cuda"]
        for c in sorted(set(cpu["levels"]) | set(gpu["levels"])) or [None]:
            cl, gl = cpu["levels"].get(c), gpu["levels"].get(c)
            ratio = f"{gl['rows'] / cl['rows']:.2f}x" if cl and gl and cl["rows"] else ""
            print(f"| {label}, {f'{c} client(s)' if c else 'load'} | {cell(cpu, cl)} | {cell(gpu, gl)} | {ratio} |")
        cb, gb = cpu["best"], gpu["best"]
        ratio = f"{gb[0] / cb[0]:.2f}x" if cb and gb and cb[0] else ""
        best = [f"{b[0]:,.0f} rows/s at batch {b[1]}" if b else "not run" for b in (cb, gb)]
        print(f"| {label}, ceiling | {best[0]} | {best[1]} | {ratio} |")
    notes = []
    for name in sorted(os.listdir(d)):
        text = read(os.path.join(d, name)) if name.endswith(".log") else None
        if text and "cuda" in name and PLACEMENT in text:
            notes.append(
                f"{name}: ONNX Runtime placed some nodes on the CPU ({text.count(PLACEMENT)}x "
                f"'{PLACEMENT}')"
            )
        bad = [line for line in (text or "").splitlines() if re.search(r" (WARN|ERROR) |\[[EW]:onnxruntime", line)]
        if name.startswith("serve") and bad:
            notes.append(f"{name}: {len(bad)} WARN/ERROR lines, first: {bad[0][-160:]}")
    if cuda:
        off = [r["model"] for r in json.loads(cuda)["models"] if not (r.get("provider") or "").startswith(args.gpu_ep)]
        if off:
            notes.append(f"not on {args.gpu_ep} (metadata execution_provider): {', '.join(off)}")
    for n in notes:
        print(f"- {n}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("samples")
    s.add_argument("--url", required=True)
    s.add_argument("--models", required=True)
    s.add_argument("--expect-provider", choices=["cpu", "cuda"], required=True)
    s.add_argument("--rtol", type=float, required=True)
    s.add_argument("--atol", type=float, required=True)
    s.add_argument("--strict", action="store_true", help="TF32-only matches fail too")
    s.add_argument("--out")
    t = sub.add_parser("table")
    t.add_argument("--results", required=True)
    t.add_argument("--gpu-ep", default="cuda", help="the provider of the CUDA column")
    t.add_argument("--gpu", default="?", help="the GPU's name and driver")
    t.add_argument("--ort", default="?", help="the ONNX Runtime version")
    t.add_argument("--cpu-threads", default="?", help="intra-op threads of the CPU runs")
    args = p.parse_args()
    {"samples": cmd_samples, "table": cmd_table}[args.cmd](args)


if __name__ == "__main__":
    main()

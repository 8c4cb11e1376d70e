#!/usr/bin/env bash
# scripts/gpu-check.sh --rehearse, short, with the debug binaries: the whole GPU-machine path
# (parts, smoke test, reassembly, preflight with CUDA stand-ins, zoo samples, every benchmark,
# packaging) on the CPU provider. Checks what comes back under $OUT: results.tgz holds an
# error figure for every sample of every zoo model on both providers and numbers for every
# benchmark, the ranking bench loaded only its model, no log has colour codes, and the table
# comes last and short. Then once more with a CUDA that fails. Needs .venv-tools (onnx,
# numpy); run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
t="$(mktemp -d)"
trap 'rm -rf "$t"' EXIT
export OUT="$t/out" BIN_DIR=target/debug DURATION=300ms WARMUP=100ms CEILING_DURATION=100ms CLIENTS=1,8
start=$SECONDS
scripts/gpu-check.sh --rehearse >"$t/log" 2>&1 || { cat "$t/log" && echo "FAIL: --rehearse exited non-zero" >&2 && exit 1; }
echo "rehearsal: $((SECONDS - start)) s"
mkdir "$t/x" && tar -C "$t/x" -xzf "$OUT/results.tgz"
python3 - "$t/x/results" "$t/log" "$OUT" <<'PY'
import json, os, re, sys
results, log, out = sys.argv[1:]
bad = []
for p in ("cpu", "cuda"):
    got = {m["model"]: m for m in json.load(open(f"{results}/samples-{p}.json"))["models"]}
    for name in sorted(os.listdir("models")):
        path = f"models/{name}/samples.json"
        if not os.path.isfile(path):
            continue
        want = len(json.load(open(path))["samples"])
        m = got.get(name, {})
        if m.get("status") != "ok" or len(m.get("errors", [])) != want:
            bad.append(f"{p} {name}: {m.get('status')} {m.get('detail', '')}, {len(m.get('errors', []))} of {want} samples")
for s in ("heavy", "ranking"):
    for p in ("cpu", "cuda"):
        text = open(f"{results}/bench-{s}-{p}.log").read()
        for c in (1, 8):
            if not re.search(rf"^\s*{c}\s+\d+\s+[1-9]\d*\s", text, re.M):
                bad.append(f"bench {s} {p}: no rows/s at {c} client(s)")
        if not re.search(r"best ceiling: [1-9]\d* rows/s", text):
            bad.append(f"bench {s} {p}: no ceiling")
        if s == "ranking" and text.count("version ready") != 1:
            bad.append(f"bench ranking {p}: {text.count('version ready')} models loaded, expected 1")
for name in os.listdir(results):
    if "\x1b[" in open(f"{results}/{name}", errors="replace").read():
        bad.append(f"{name} has colour codes")
text = open(log).read()
table = text[text.rfind("GPU check:"):]
if "| heavy MLP" not in table or len(table) > 4000 or "\x1b[" in open(f"{out}/gpu-check.log").read():
    bad.append(f"the table is not last, too long or the log has colour:\n{table}")
if sorted(os.listdir(out)) != ["gpu-check.log", "results.tgz", "table.md"]:
    bad.append(f"$OUT holds {sorted(os.listdir(out))}")
if bad:
    sys.exit("FAIL:\n" + "\n".join(bad) + "\n" + text[-4000:])
PY
# A CUDA that fails (the CPU build has no CUDA provider): every zoo model fails on it, the
# CUDA benchmarks are skipped at once, the CPU ones still run, and the run says it failed.
export OUT="$t/out-cuda" CLIENTS=1 REHEARSE_GPU_EP=cuda
start=$SECONDS
rc=0 && scripts/gpu-check.sh --rehearse >"$t/log" 2>&1 || rc=$?
echo "rehearsal with a failing CUDA: $((SECONDS - start)) s"
mkdir "$t/y" && tar -C "$t/y" -xzf "$OUT/results.tgz"
r="$t/y/results"
[[ $rc != 0 && $(cat "$r/bench-heavy-cuda.log" "$r/bench-ranking-cuda.log") == "skipped: no zoo model loaded on cuda"$'\n'"skipped: no zoo model loaded on cuda" &&
  $(grep -c '"status": "FAIL"' "$r/samples-cuda.json") -gt 0 && $(grep -c '"status": "FAIL"' "$r/samples-cpu.json") == 0 &&
  $(tail -12 "$t/log") == *"| heavy MLP 512-2048-2048-512, ceiling | "[1-9]*"| not run |"* ]] ||
  { cat "$t/log" && echo "FAIL: the failing CUDA's run (rc $rc) is not as expected" >&2 && exit 1; }
echo "gpu-check rehearsal test: ok"

"""ORT working memory of long padded inputs, measured from outside: one DIN request of
ROWS rows x LENGTH history items against a running mlpserve, while an unrelated small model
(mlp_digits) is probed in a loop. Prints the answer, the server's RSS before, at its peak
(sampled every 10 ms from /proc) and 2 s after, and the probe's worst latency. Not a test:
prints numbers. Standard library only.
Usage: din-memory.py HTTP_PORT SERVER_PID [ROWS LENGTH] [MODEL]"""

import http.client
import json
import sys
import threading
import time

PORT, PID = int(sys.argv[1]), int(sys.argv[2])
ROWS = int(sys.argv[3]) if len(sys.argv) > 3 else 64
LENGTH = int(sys.argv[4]) if len(sys.argv) > 4 else 65_536
MODEL = sys.argv[5] if len(sys.argv) > 5 else "din_ctr"


def rss_mb():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def post(path, body, timeout=600):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    try:
        c.request("POST", path, body=body, headers={"content-type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


SMALL = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32",
                                "data": [0.5] * 64}]}).encode()


def main():
    body = json.dumps({"inputs": [
        {"name": "target_item", "datatype": "INT64", "shape": [ROWS], "data": [151] * ROWS},
        {"name": "hist_items", "datatype": "INT64", "shape": [ROWS, LENGTH],
         "data": [265] * (ROWS * LENGTH)},
        {"name": "hist_mask", "datatype": "FP32", "shape": [ROWS, LENGTH],
         "data": [1.0] * (ROWS * LENGTH)},
    ]}).encode()
    stop = threading.Event()
    peak, probe = [rss_mb()], []

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.01)

    def prober():
        while not stop.is_set():
            t = time.perf_counter()
            try:
                status, _ = post("/v2/models/mlp_digits/infer", SMALL, timeout=60)
            except OSError:
                status = 0
            probe.append((time.perf_counter() - t, status))
            time.sleep(0.005)

    before = rss_mb()
    threads = [threading.Thread(target=sample, daemon=True), threading.Thread(target=prober, daemon=True)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    status, answer = post(f"/v2/models/{MODEL}/infer", body)
    took = time.perf_counter() - started
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join()
    worst = max((p[0] for p in probe), default=0.0)
    bad = sum(1 for p in probe if p[1] != 200)
    print(f"DIN {ROWS} x {LENGTH} ({len(body) / 1e6:.0f} MB JSON): {status} in {took:.2f} s; "
          f"RSS {before:.0f} MB -> peak {peak[0]:.0f} MB -> {rss_mb():.0f} MB 2 s after; "
          f"mlp_digits probe: {len(probe)} requests, worst {worst * 1000:.0f} ms, {bad} not 200")
    if status != 200:
        print(f"    answer: {answer[:300]!r}")


main()

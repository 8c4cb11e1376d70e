"""Hostile-client attack run against a running mlpserve (slow and oversized bodies, decode
bombs, floods). Not a test:
prints numbers. Standard library only. Usage: attack.py HTTP_PORT SERVER_PID"""

import gzip
import http.client
import json
import random
import sys
import threading
import time

PORT = int(sys.argv[1])
PID = int(sys.argv[2])


def rss_mb():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def request(method, path, body=None, headers=None, timeout=600):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, dict(r.getheaders()), data
    finally:
        c.close()


SMALL = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32",
                                "data": [0.5] * 64}]}).encode()


class Prober:
    """Requests to an unrelated small model (mlp_digits) in a loop; latency percentiles."""

    def __init__(self):
        self.times, self.errors, self.stop = [], 0, False
        self.peak = 0.0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop:
            t = time.perf_counter()
            try:
                status, _, _ = request("POST", "/v2/models/mlp_digits/infer", SMALL,
                                       {"content-type": "application/json"}, timeout=60)
                if status != 200:
                    self.errors += 1
            except OSError:
                self.errors += 1
            self.times.append(time.perf_counter() - t)
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.005)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()

    def summary(self):
        t = sorted(self.times) or [0.0]
        p = lambda q: t[min(len(t) - 1, int(q * len(t)))] * 1000
        return f"small-model p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {t[-1]*1000:.1f} ms, n={len(t)}, errors={self.errors}"


def series():
    _, _, text = request("GET", "/metrics")
    lines = [l for l in text.decode().splitlines() if l.startswith("mlpserve_http_requests_total{")]
    return len(lines), len(text)


def attack_methods(n=2000):
    with Prober() as pr:
        for i in range(n):
            method = "".join(random.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(8))
            try:
                request(method, "/v2/models/mlp_digits/infer", b"")
            except OSError:
                pass
    count, size = series()
    print(f"[1] {n} random-method requests: {count} http series, /metrics {size/1024:.0f} KB, RSS {rss_mb():.0f} MB; {pr.summary()}")


def din(length):
    return json.dumps({"inputs": [
        {"name": "target_item", "datatype": "INT64", "shape": [1], "data": [151]},
        {"name": "hist_items", "datatype": "INT64", "shape": [1, length], "data": [265] * length},
        {"name": "hist_mask", "datatype": "FP32", "shape": [1, length], "data": [1.0] * length},
    ]}).encode()


def attack_padding():
    long_body, short_body = din(100_000), din(5)
    # The long one first; the short ones once it is decoded and waiting out the 1 s
    # batching delay, so they queue together.
    results = []

    def send(body, tag):
        t = time.perf_counter()
        status, headers, _ = request("POST", "/v2/models/din/infer", body, {"content-type": "application/json"})
        results.append((tag, status, time.perf_counter() - t, headers.get("x-batch-rows", "?")))

    before = rss_mb()
    with Prober() as pr:
        threads = [threading.Thread(target=send, args=(long_body, "long"))]
        threads[0].start()
        time.sleep(0.5)
        for _ in range(30):
            th = threading.Thread(target=send, args=(short_body, "short"))
            th.start()
            threads.append(th)
        for th in threads:
            th.join()
    short = sorted(r[2] for r in results if r[0] == "short")
    long_ = [r for r in results if r[0] == "long"][0]
    rows = sorted({r[3] for r in results if r[0] == "short"})
    print(f"[3] DIN 100,000-long + 30 short: long {long_[1]} in {long_[2]*1000:.0f} ms (batch rows {long_[3]}); "
          f"short median {short[len(short)//2]*1000:.0f} ms, max {short[-1]*1000:.0f} ms (batch rows {rows}); "
          f"RSS {before:.0f} -> {rss_mb():.0f} MB (peak {pr.peak:.0f}); {pr.summary()}")
    status, _, body = request("POST", "/v2/models/din/infer", din(200_000), {"content-type": "application/json"})
    print(f"    200,000-long history: {status} {body[:120]!r}")


def attack_bodies(n=8, mb=50):
    rows = int(mb * 1e6 / (64 * 9))
    row = "[" + ",".join(["0.123456"] * 64) + "]"
    body = ('{"inputs":[{"name":"pixels","shape":[%d,64],"datatype":"FP32","data":[%s]}]}'
            % (rows, ",".join([row] * rows))).encode()
    statuses = []
    before = rss_mb()
    with Prober() as pr:
        def send():
            try:
                s, _, _ = request("POST", "/v2/models/mlp_digits/infer", body, {"content-type": "application/json"})
            except OSError as e:
                s = str(e)
            statuses.append(s)
        threads = [threading.Thread(target=send) for _ in range(n)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        took = time.perf_counter() - t
    time.sleep(2)
    print(f"[4] {n} x {len(body)/1e6:.0f} MB JSON bodies: statuses {sorted(map(str, statuses))} in {took:.1f} s; "
          f"RSS {before:.0f} -> peak {pr.peak:.0f} MB, {rss_mb():.0f} MB 2 s after; {pr.summary()}")
    bomb = gzip.compress(b" " * (67 << 20), 9)
    with Prober() as pr:
        t = time.perf_counter()
        status, _, _ = request("POST", "/v2/models/mlp_digits/infer", bomb,
                               {"content-type": "application/json", "content-encoding": "gzip"})
        took = time.perf_counter() - t
    print(f"    gzip bomb {len(bomb)/1e3:.0f} KB -> 67 MiB: {status} in {took*1000:.0f} ms, peak RSS {pr.peak:.0f} MB; {pr.summary()}")


if __name__ == "__main__":
    import os
    only = os.environ.get("ATTACK_ONLY", "1,3,4").split(",")
    print(f"start RSS {rss_mb():.0f} MB")
    if "1" in only:
        attack_methods()
    if "3" in only:
        attack_padding()
    if "4" in only:
        attack_bodies()

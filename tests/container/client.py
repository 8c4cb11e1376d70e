"""HTTP client side of tests/container/run.sh (standard library only).

  client.py zoo BASE REPO            every sample of every model in REPO through V2 infer and
                                     /predict, compared with the reference outputs
  client.py metrics BASE             /metrics counts the requests just made
  client.py drain BASE MODEL CMD...  streams requests, runs CMD (which stops the server) while
                                     they are in flight, then classifies every request
  client.py stream BASE MODEL CMD... streams requests through a load balancer while CMD runs
                                     (rolling restart of the replicas); any failure counts
  client.py memory BASE N MB         N concurrent /predict bodies of about MB megabytes each:
                                     every one answered 200, 413, 429 or 503

Each request opens its own connection, so where it failed is unambiguous: at connect (the
server was not listening, nothing was admitted) or after the request was sent.
"""

import http.client
import json
import math
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit


def flatten(v):
    if isinstance(v, list):
        return [x for item in v for x in flatten(item)]
    return [v]


def nest(flat, shape):
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    chunk = math.prod(shape[1:])
    return [nest(flat[i * chunk:(i + 1) * chunk], shape[1:]) for i in range(shape[0])]


def close(got, want, rtol=1e-4, atol=1e-5) -> bool:
    if len(got) != len(want):
        return False
    for g, w in zip(flatten(got), flatten(want)):
        if isinstance(w, (bool, str)) or isinstance(g, (bool, str)):
            # Booleans and strings (BYTES) match exactly.
            if g != w:
                return False
        elif abs(float(g) - float(w)) > atol + rtol * abs(float(w)):
            return False
    return True


class Phase(Exception):
    """A request failure, with the phase it happened in: `connect` or `exchange`."""

    def __init__(self, phase: str, error: BaseException):
        super().__init__(f"{phase}: {error!r}")
        self.phase = phase


def request(base: str, method: str, path: str, body=None, timeout: float = 30):
    """One request on a fresh connection: (status, parsed JSON body or text)."""
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        try:
            conn.connect()
        except OSError as e:
            raise Phase("connect", e) from e
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"content-type": "application/json"})
            r = conn.getresponse()
            raw = r.read()
        except (OSError, http.client.HTTPException) as e:
            raise Phase("exchange", e) from e
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw.decode(errors="replace")
    finally:
        conn.close()


def v2_body(sample):
    return {"inputs": [{"name": n, **t} for n, t in sample["inputs"].items()]}


def v2_matches(body, sample) -> bool:
    outputs = {o["name"]: o for o in body["outputs"]}
    return all(
        name in outputs and outputs[name]["shape"] == want["shape"]
        and close(outputs[name]["data"], want["data"])
        for name, want in sample["outputs"].items()
    )


def zoo(base: str, repo: str) -> None:
    checked = 0
    for samples_file in sorted(Path(repo).glob("*/samples.json")):
        model = samples_file.parent.name
        for i, s in enumerate(json.loads(samples_file.read_text())["samples"]):
            status, body = request(base, "POST", f"/v2/models/{model}/infer", v2_body(s))
            assert status == 200, f"{model} sample {i}: V2 {status} {body}"
            assert v2_matches(body, s), f"{model} sample {i}: V2 outputs differ"
            inputs = {n: nest(t["data"], t["shape"]) for n, t in s["inputs"].items()}
            status, body = request(base, "POST", "/predict", {"model": model, "inputs": inputs})
            assert status == 200, f"{model} sample {i}: /predict {status} {body}"
            for name, want in s["outputs"].items():
                assert close(flatten(body["outputs"][name]), want["data"]), \
                    f"{model} sample {i}: /predict output {name} differs"
            checked += 1
    assert checked >= 9, f"only {checked} samples found in {repo}"
    print(f"zoo: {checked} samples answered correctly over V2 infer and /predict")


def metrics(base: str) -> None:
    status, text = request(base, "GET", "/metrics")
    assert status == 200, status
    line = next((l for l in text.splitlines()
                 if l.startswith("mlpserve_requests_total{") and 'model="mlp_digits"' in l
                 and 'outcome="success"' in l), None)
    assert line and float(line.split()[-1]) > 0, f"no successful mlp_digits requests counted:\n{line}"
    print(f"metrics: {line}")


class Stream:
    """Client threads sending the model's first sample until stopped."""

    def __init__(self, base: str, model: str, sample, threads: int):
        self.base, self.model, self.sample = base, model, sample
        self.body = v2_body(sample)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results = []  # (start, end, outcome, detail)
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                status, body = request(self.base, "POST", f"/v2/models/{self.model}/infer", self.body)
                if status == 200:
                    outcome = "ok" if v2_matches(body, self.sample) else "wrong"
                else:
                    outcome = f"http_{status}"
                detail = "" if status == 200 else str(body)[:200]
            except Phase as e:
                outcome, detail = e.phase, str(e)
            with self.lock:
                self.results.append((start, time.monotonic(), outcome, detail))
            if outcome == "connect":
                time.sleep(0.01)  # the listener is gone; do not spin

    def start(self):
        for t in self.threads:
            t.start()

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def first_sample(repo_or_model: str):
    model_dir = Path(__file__).resolve().parents[2] / "models" / repo_or_model
    return json.loads((model_dir / "samples.json").read_text())["samples"][0]


def drain(base: str, model: str, sample_model: str, cmd: list) -> None:
    """Stop the server (cmd) with requests in flight. Every request must end in one of:
    200 with the right outputs; 503 (arrived while draining: refused cleanly); refused at
    connect after the stop began (the listener was closed: never admitted). A request sent
    and then cut off, a wrong answer, or any other status fails the test."""
    stream = Stream(base, model, first_sample(sample_model), threads=16)
    stream.start()
    time.sleep(1.5)
    stop_at = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    stream.close()
    counts, bad = {}, []
    in_flight_answered = 0
    for start, end, outcome, detail in stream.results:
        key = outcome if (outcome != "connect" or start >= stop_at) else "connect_before_stop"
        counts[key] = counts.get(key, 0) + 1
        if key == "ok" and start < stop_at < end:
            in_flight_answered += 1
        if key not in ("ok", "http_503", "connect"):
            bad.append((key, detail))
    print(f"drain: {len(stream.results)} requests, outcomes {counts}; "
          f"{in_flight_answered} were in flight at SIGTERM and answered 200")
    assert not bad, f"requests failed during the drain: {bad[:5]}"
    assert in_flight_answered > 0, "no request was in flight at SIGTERM: the test proved nothing"


def stream_through(base: str, model: str, cmd: list) -> None:
    """Requests through the load balancer while cmd restarts the replicas: none may fail."""
    stream = Stream(base, model, first_sample(model), threads=4)
    stream.start()
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    duration = time.monotonic() - t0
    time.sleep(0.5)
    stream.close()
    failed = [(o, d) for _, _, o, d in stream.results if o != "ok"]
    print(f"rolling restart: {len(stream.results)} requests sent, {len(failed)} failed, "
          f"restart took {duration:.1f} s")
    assert not failed, f"failed through the balancer: {failed[:5]}"
    assert len(stream.results) > 100, "too few requests to mean anything"


def memory(base: str, n: int, megabytes: int) -> None:
    """Concurrent large bodies against a memory-limited container: each must be answered
    (200, or refused with 413/429/503), none may meet a dead server. A refusal can come
    before the body is read, and the server then closes the connection: the client's
    write fails (broken pipe) and the answer is read after it, as curl does."""
    row = "[" + ",".join(["0.5"] * 64) + "]"
    rows = megabytes * 1_000_000 // (len(row) + 1)
    body = ('{"model": "mlp_digits", "inputs": [' + ",".join([row] * rows) + "]}").encode()
    u = urlsplit(base)
    head = (f"POST /predict HTTP/1.1\r\nHost: {u.hostname}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    results = []

    def one():
        answer, error = b"", ""
        try:
            s = socket.create_connection((u.hostname, u.port), timeout=120)
        except OSError as e:
            results.append(f"connect: {e}")
            return
        with s:
            try:
                s.sendall(head)
                s.sendall(body)
            except OSError as e:
                error = f" (send: {type(e).__name__})"
            try:
                while chunk := s.recv(65536):
                    answer += chunk
            except OSError as e:
                error += f" (recv: {type(e).__name__})"
        parts = answer.split(b" ", 2)
        if answer.startswith(b"HTTP/1.1 ") and len(parts) > 1 and parts[1].isdigit():
            results.append(int(parts[1]))
        else:
            results.append(f"no answer{error}")

    threads = [threading.Thread(target=one) for _ in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = {str(s): sum(1 for r in results if str(r) == str(s)) for s in results}
    print(f"{n} x {len(body) / 1e6:.0f} MB bodies in {time.monotonic() - t0:.1f} s: {counts}")
    bad = [s for s in results if s not in (200, 413, 429, 503)]
    assert not bad, f"not answered as allowed: {bad}"


def main(argv):
    what = argv[1]
    if what == "zoo":
        zoo(argv[2], argv[3])
    elif what == "metrics":
        metrics(argv[2])
    elif what == "drain":
        drain(argv[2], argv[3], argv[4], argv[5:])
    elif what == "memory":
        memory(argv[2], int(argv[3]), int(argv[4]))
    elif what == "stream":
        stream_through(argv[2], argv[3], argv[4:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)

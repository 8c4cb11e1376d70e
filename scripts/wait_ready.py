#!/usr/bin/env python3
"""The one readiness wait of every script and Python test that starts a server of its own.

Polls URL (each probe bounded to 2 s, every 50 ms) until it answers 2xx, for up to TIMEOUT
seconds. Gives up at once when the server process has exited (gone, or a zombie not yet
waited for): a server that failed to start (its port taken, say) has said why in its log, and
another process answering on the port is never taken for it.

  python3 scripts/wait_ready.py URL --pid PID [--timeout SECONDS]   # exit 0: ready
  from wait_ready import wait_ready; wait_ready(url, proc, timeout)  # proc: Popen or pid
Standard library only: the GPU machine has no network to install anything from.
"""

import argparse
import subprocess
import sys
import time
import urllib.request


class NotReady(RuntimeError):
    """The server exited, or did not answer 2xx in time; the message says which."""


def exited(proc):
    """None while `proc` (a subprocess.Popen or a pid) runs, else how it ended."""
    if isinstance(proc, subprocess.Popen):
        code = proc.poll()
        return None if code is None else f"exited with {code}"
    try:
        with open(f"/proc/{proc}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "exited"
    return "exited" if state == "Z" else None


def wait_ready(url, proc, timeout=60.0, ssl_context=None):
    """Returns the seconds it took `url` to answer 2xx; raises NotReady (see the module)."""
    started = time.monotonic()
    while (waited := time.monotonic() - started) < timeout:
        gone = exited(proc)
        if gone:
            raise NotReady(f"the server (pid {getattr(proc, 'pid', proc)}) {gone} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2, context=ssl_context) as answer:
                if 200 <= answer.status < 300:
                    return waited
        except OSError:  # refused, reset, timed out, or an HTTP error status
            pass
        time.sleep(0.05)
    raise NotReady(f"{url} did not answer 2xx within {timeout:g} s")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--pid", type=int, required=True, help="the server's process")
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    try:
        wait_ready(args.url, args.pid, args.timeout)
    except NotReady as e:
        sys.exit(f"wait_ready: {e}")


if __name__ == "__main__":
    main()

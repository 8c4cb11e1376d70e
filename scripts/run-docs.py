#!/usr/bin/env python3
"""Runs the documentation's examples against a live server, so the docs cannot rot.

Every fenced block whose info string holds `runnable` (```sh runnable, ```python runnable)
in README.md and docs/*.md (or the Markdown files given) is run from the repository root,
in file order, against one real server serving models/ on ephemeral loopback ports:
`localhost:8000` and `localhost:8001` in a block become that server's HTTP and gRPC
addresses, and the binary under test is first on PATH as `mlpserve`. Shell blocks run
under bash with `set -euo pipefail`, and `curl` fails on an HTTP error status; Python
blocks run in this interpreter (which needs numpy and tritonclient for the gRPC examples).

A block followed by an ```output block (```text output renders the same) must print what
it shows: text as written (runs of whitespace may differ), numbers to the digits shown
(0.3626 accepts 0.36255363), and `...` stands for any text. A block without one must
exit 0. Exit status: 0 when every example passes, 1 otherwise (each failure named with
its file and line), 2 when the server does not start.

    MLPSERVE_BIN=target/debug/mlpserve .venv-tools/bin/python scripts/run-docs.py [FILES...]
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wait_ready import wait_ready  # noqa: E402 - the scripts' shared readiness wait

REPO = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(`{3,})(.*)$")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
# An HTTP error fails the block, unless the example prints the status itself (-w).
CURL_FAILS_ON_HTTP_ERRORS = """curl() {
  case " $* " in *" -w "*|*" --write-out "*) command curl "$@" ;; *) command curl --fail-with-body "$@" ;; esac
}
"""


class Block:
    def __init__(self, path: Path, line: int, info: str, code: str):
        self.path, self.line, self.info, self.code = path, line, info.split(), code
        self.expected = None

    @property
    def language(self) -> str:
        return self.info[0] if self.info else ""

    def where(self) -> str:
        return f"{self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path}:{self.line}"


def blocks(path: Path) -> list:
    """The runnable blocks of `path`, each with the output block that follows it."""
    lines = path.read_text().splitlines()
    found, i, last = [], 0, None
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            if lines[i].strip():
                last = None
            i += 1
            continue
        fence, info, start = m.group(1), m.group(2).strip(), i
        body = []
        i += 1
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1
        block = Block(path, start + 1, info, "\n".join(body) + "\n")
        if "output" in block.info and last is not None:
            last.expected = block.code
            last = None
        elif "runnable" in block.info:
            found.append(block)
            last = block
        else:
            last = None
    return found


def pattern(expected: str):
    """A regex for `expected` (numbers captured, `...` any text) and its numbers."""
    numbers, parts = [], []
    for k, piece in enumerate(expected.strip().split("...")):
        if k:
            parts.append(r"[\s\S]*?")
        pos = 0
        for m in NUMBER.finditer(piece):
            parts.append(literal(piece[pos:m.start()]))
            parts.append(r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")
            numbers.append(m.group())
            pos = m.end()
        parts.append(literal(piece[pos:]))
    return re.compile(r"\s*" + "".join(parts) + r"\s*\Z"), numbers


def literal(text: str) -> str:
    """`text` as a regex in which any run of whitespace matches any (or none)."""
    return "".join(r"\s*" if t.isspace() else re.escape(t) for t in re.split(r"(\s+)", text) if t)


def close_enough(shown: str, got: str) -> bool:
    """`got` equals `shown` to the digits `shown` has (integers exactly)."""
    if not re.search(r"[.eE]", shown):
        return shown == got
    decimals = len(shown.split(".")[1].split("e")[0].split("E")[0]) if "." in shown else 0
    exponent = int(re.split(r"[eE]", shown)[1]) if re.search(r"[eE]", shown) else 0
    return abs(float(got) - float(shown)) <= 0.5 * 10 ** (exponent - decimals) * (1 + 1e-9)


def compare(expected: str, actual: str):
    """None when `actual` shows what `expected` does, else why not."""
    regex, numbers = pattern(expected)
    m = regex.match(actual)
    if not m:
        return "the text differs"
    for shown, got in zip(numbers, m.groups()):
        if not close_enough(shown, got):
            return f"{got} is not {shown}"
    return None


class Server:
    """`mlpserve serve` on models/, loopback, ports chosen by the kernel."""

    def __init__(self, binary: Path):
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--model-repository", str(REPO / "models"), "--host", "127.0.0.1",
             "--http-port", "0", "--grpc-port", "0", "--log-format", "json"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.http = self.grpc = None
        deadline = time.monotonic() + 120
        for line in self.proc.stderr:
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("message") == "HTTP listening":
                self.http = event["addr"]
            elif event.get("message") == "gRPC listening":
                self.grpc = event["addr"]
            if (self.http and self.grpc) or time.monotonic() > deadline:
                break
        if not (self.http and self.grpc):
            self.stop()
            raise RuntimeError("the server did not start listening")
        # Drain the log so the server never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        try:
            wait_ready(f"http://{self.http}/v2/health/ready", self.proc, deadline - time.monotonic())
        except RuntimeError:
            self.stop()
            raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def run(block: Block, server: Server, binary: Path) -> str:
    code = block.code.replace("localhost:8000", server.http).replace("localhost:8001", server.grpc)
    env = {**os.environ, "PATH": f"{binary.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if block.language in ("sh", "bash", "shell", "console"):
        command = ["bash", "-c", "set -euo pipefail\n" + CURL_FAILS_ON_HTTP_ERRORS + code]
    elif block.language == "python":
        command = [sys.executable, "-c", code]
    else:
        raise ValueError(f"{block.where()}: cannot run a '{block.language}' block")
    r = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise ValueError(f"exit status {r.returncode}\n{r.stdout}{r.stderr}")
    return r.stdout


def main(argv: list) -> int:
    files = [Path(a).resolve() for a in argv] or [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    binary = Path(os.environ.get("MLPSERVE_BIN", "target/debug/mlpserve"))
    binary = binary if binary.is_absolute() else REPO / binary
    examples = [b for f in files for b in blocks(f)]
    try:
        server = Server(binary)
    except (RuntimeError, OSError) as e:
        print(f"run-docs: {e}", file=sys.stderr)
        return 2
    failures = 0
    started = time.monotonic()
    try:
        for block in examples:
            try:
                out = run(block, server, binary)
                why = compare(block.expected, out) if block.expected is not None else None
            except (ValueError, subprocess.TimeoutExpired) as e:
                out, why = "", str(e)
            if why:
                failures += 1
                print(f"FAIL {block.where()}: {why}")
                if block.expected is not None:
                    print(f"--- the docs show\n{block.expected.rstrip()}\n--- it printed\n{out.rstrip()}")
            else:
                print(f"ok   {block.where()}")
    finally:
        server.stop()
    print(f"{len(examples) - failures} of {len(examples)} examples pass "
          f"({time.monotonic() - started:.1f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Starts the real mlpserve binary on free loopback ports for the conformance tests.

The binary comes from $MLPSERVE_BIN (default target/debug/mlpserve) and serves the
committed model repository (models/). The server is shared by the whole test module;
`server.stop()` sends SIGTERM and returns the exit code.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from wait_ready import wait_ready  # noqa: E402 - the one readiness wait of scripts and tests


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running mlpserve process."""

    def __init__(self, binary: Path, repository: Path = REPO / "models", extra: list = (),
                 env=None, ssl_context=None):
        """`extra` and `env` go to the server; with `ssl_context` readiness is probed over
        HTTPS with it."""
        self.repository = repository
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.http = f"127.0.0.1:{self.http_port}"
        self.grpc = f"127.0.0.1:{self.grpc_port}"
        self.log = tempfile.NamedTemporaryFile(prefix="mlpserve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [
                str(binary), "serve",
                "--model-repository", str(repository),
                "--host", "127.0.0.1",
                "--http-port", str(self.http_port),
                "--grpc-port", str(self.grpc_port),
                "--shutdown-timeout", "10",
                *extra,
            ],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._ssl_context = ssl_context
        self._wait_ready()

    def logs(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        scheme = "https" if self._ssl_context else "http"
        url = f"{scheme}://{self.http}/v2/health/ready"
        try:
            wait_ready(url, self.proc, timeout_s, self._ssl_context)
        except RuntimeError as e:
            self.proc.kill()
            raise RuntimeError(f"mlpserve: {e}:\n{self.logs()}") from None

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit code (kills and fails on timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"mlpserve ignored SIGTERM for {timeout_s} s:\n{self.logs()}")
        return self.proc.returncode


def binary_path() -> Path:
    """The binary under test: $MLPSERVE_BIN or target/debug/mlpserve."""
    binary = Path(os.environ.get("MLPSERVE_BIN", REPO / "target" / "debug" / "mlpserve"))
    if not binary.is_absolute():
        binary = REPO / binary
    assert binary.is_file(), f"{binary} not found: run `cargo build` or set MLPSERVE_BIN"
    return binary


@pytest.fixture(scope="session")
def server():
    s = Server(binary_path())
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()
    os.unlink(s.log.name)


def samples(model: str) -> list:
    """Reference inputs and outputs of a model (models/<model>/samples.json)."""
    return json.loads((REPO / "models" / model / "samples.json").read_text())["samples"]

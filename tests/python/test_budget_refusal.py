"""A request the in-flight budget refuses before its body is read still gets its answer
when the client writes the whole body before reading, as Python's http.client does: the
server reads (and drops) the body first instead of closing the connection under the
client's writes, which the client saw as a broken pipe or a reset instead of the status."""

import http.client
import os

import pytest

from conftest import Server, binary_path


@pytest.fixture(scope="module")
def small_budget():
    s = Server(binary_path(), extra=["--max-inflight-bytes", str(1 << 20),
                                     "--max-body-bytes", str(1 << 20)])
    yield s
    s.stop()
    os.unlink(s.log.name)


def test_a_body_over_the_whole_budget_gets_its_413_not_a_broken_pipe(small_budget):
    body = b"{" + b" " * (16 << 20) + b"}"
    c = http.client.HTTPConnection(small_budget.http, timeout=60)
    try:
        c.request("POST", "/v2/models/mlp_digits/infer", body=body,
                  headers={"content-type": "application/json"})
        r = c.getresponse()
        text = r.read().decode()
    finally:
        c.close()
    assert r.status == 413, text
    assert "--max-inflight-bytes" in text

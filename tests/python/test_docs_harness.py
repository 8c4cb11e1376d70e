"""scripts/run-docs.py can fail: an example whose printed answer no longer matches the docs,
whose text changed, or which exits non-zero is reported with its file and line, and the
harness exits 1. The mutated copies of README.md run against a real server."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, binary_path

HARNESS = REPO / "scripts" / "run-docs.py"


def harness_module():
    spec = importlib.util.spec_from_file_location("run_docs", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_harness(*files: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLPSERVE_BIN": str(binary_path())}
    return subprocess.run([sys.executable, str(HARNESS), *map(str, files)], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=300)


def readme_with(tmp_path: Path, old: str, new: str) -> Path:
    text = (REPO / "README.md").read_text()
    assert old in text, f"README.md no longer shows {old!r}"
    path = tmp_path / "README.md"
    path.write_text(text.replace(old, new, 1))
    return path


def test_the_readme_as_written_passes(tmp_path):
    r = run_harness(readme_with(tmp_path, "", ""))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 of 3 examples pass" in r.stdout, r.stdout


def test_a_changed_printed_answer_fails(tmp_path):
    path = readme_with(tmp_path, '"click_prob":[[0.362554]]', '"click_prob":[[0.362954]]')
    r = run_harness(path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL " in r.stdout and "is not 0.362954" in r.stdout, r.stdout
    assert "1 of 3 examples pass" not in r.stdout and "2 of 3 examples pass" in r.stdout, r.stdout


def test_changed_text_and_a_failing_command_fail(tmp_path):
    path = readme_with(tmp_path, '{"model":"finalmlp_ctr","version":"1"',
                       '{"model":"finalmlp_ctr","version":"2"')
    r = run_harness(path)
    assert r.returncode == 1 and "1 is not 2" in r.stdout, r.stdout
    path = readme_with(tmp_path, '{"model":"finalmlp_ctr","version"', '{"model":"finalmlp","version"')
    r = run_harness(path)
    assert r.returncode == 1 and "the text differs" in r.stdout, r.stdout
    path = readme_with(tmp_path, "localhost:8000/v2/models/mlp_digits/infer",
                       "localhost:8000/v2/models/no_such_model/infer")
    r = run_harness(path)
    assert r.returncode == 1, r.stdout
    assert "README.md:" in r.stdout and "exit status 22" in r.stdout, r.stdout


def test_numbers_match_to_the_digits_shown():
    compare = harness_module().compare
    assert compare("[[0.3626]]", "[[0.36255363]]\n") is None
    assert compare("[[0.3626]]", "[[0.3621]]") == "0.3621 is not 0.3626"
    assert compare("version 1", "version 1.0") is not None
    assert compare("checking ... (2 models)", "checking /tmp/x (2 models)") is None
    assert compare("a  b\nc", "a b\n  c") is None
    assert compare("1e-3", "0.0012") is None and compare("1e-3", "0.0016") is not None

"""The example requests `mlpserve inspect` prints are real: for every zoo model the curl
commands (run by bash) and the tritonclient script (run by Python) get answers from a live
server, each naming every output of the model."""

import json
import subprocess
import sys

from conftest import REPO, binary_path


def zoo_models() -> list:
    return sorted(p.parent.parent.name for p in (REPO / "models").glob("*/1/model.onnx"))


def inspect(model: str) -> dict:
    r = subprocess.run([str(binary_path()), "inspect", "--json", str(REPO / "models" / model)],
                       capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(r.stdout)


def test_every_example_of_every_zoo_model_is_answered(server):
    models = zoo_models()
    assert len(models) >= 10
    for model in models:
        report = inspect(model)
        outputs = [o["name"] for o in report["outputs"]]
        examples = report["examples"]
        for key in ("predict_curl", "v2_curl"):
            command = examples[key].replace("localhost:8000", server.http)
            r = subprocess.run(["bash", "-c", command + " -f -S"], capture_output=True, text=True)
            assert r.returncode == 0, f"{model} {key}: {r.stderr}\n{command}"
            answer = json.loads(r.stdout)
            got = answer["outputs"]
            names = list(got) if isinstance(got, dict) else [o["name"] for o in got]
            assert sorted(names) == sorted(outputs), f"{model} {key}: {answer}"
        script = examples["tritonclient_python"].replace("localhost:8001", server.grpc)
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert r.returncode == 0, f"{model}: {r.stderr}\n{script}"
        for name in outputs:
            assert f"{name} [" in r.stdout, f"{model}: {r.stdout}"

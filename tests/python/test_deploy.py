"""The deploy/ folder, checked offline and against the real server.

- Kubernetes manifests validate against the bundled Kubernetes JSON schemas
  (kubernetes-validate, strict: unknown fields are errors); CRDs the schemas lack
  (ServiceMonitor, KServe) are checked for the structure and fields their controllers need.
- Container args in the manifests are accepted by the real `mlpserve serve` CLI.
- The Grafana dashboard's and the Prometheus adapter's PromQL run on a real Prometheus
  (Debian package) scraping a real server under load, and every query returns data.
"""

import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import REPO, free_port, samples
from wait_ready import wait_ready

DEPLOY = REPO / "deploy"
K8S_VERSION = "1.34.0"


def docs(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s_docs() -> dict:
    """Every document of deploy/kubernetes/, keyed by kind (one of each kind there)."""
    out = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for d in docs(path):
            assert d["kind"] not in out, f"two {d['kind']} documents"
            out[d["kind"]] = d
    return out


def binary() -> Path:
    b = Path(os.environ.get("MLPSERVE_BIN", REPO / "target" / "debug" / "mlpserve"))
    return b if b.is_absolute() else REPO / b


def assert_cli_accepts(args: list) -> None:
    """`mlpserve serve ARGS --help` exits 0 only when clap accepted every argument and value."""
    r = subprocess.run([str(binary()), "serve", *args, "--help"], capture_output=True, text=True)
    assert r.returncode == 0, f"mlpserve serve rejects {args}: {r.stderr}"


# --- Kubernetes ------------------------------------------------------------------------


def test_every_core_manifest_validates_against_the_kubernetes_schemas():
    kinds = k8s_docs()
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "NetworkPolicy", "ConfigMap", "ServiceMonitor"} <= set(kinds)
    for kind, d in kinds.items():
        if kind == "ServiceMonitor":
            continue  # a CRD: checked below
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)


def test_a_broken_manifest_is_rejected():
    """The validator is not a no-op: a misspelt field fails."""
    d = k8s_docs()["Deployment"]
    d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)


def test_the_deployment_rolls_without_dropping_requests():
    d = k8s_docs()["Deployment"]
    spec = d["spec"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["minReadySeconds"] > 0
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    args = c["args"]
    shutdown_delay = int(args[args.index("--shutdown-delay") + 1])
    shutdown_timeout = int(args[args.index("--shutdown-timeout") + 1])
    assert shutdown_delay > 0, "serve while endpoint removal propagates"
    assert pod["terminationGracePeriodSeconds"] > shutdown_delay + shutdown_timeout
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert_cli_accepts(args)
    # Every named port a probe or the Service uses exists on the container.
    names = {p["name"]: p["containerPort"] for p in c["ports"]}
    svc = k8s_docs()["Service"]
    for p in svc["spec"]["ports"]:
        assert p["targetPort"] in names
    assert d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(names["http"])
    pod_labels = d["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        m = k8s_docs()[kind]["spec"]
        selector = m.get("selector", m.get("podSelector"))
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= pod_labels.items(), f"{kind} selects no pod: {selector}"


def test_the_init_container_checks_the_repository_with_the_real_cli():
    """The Deployment's init container runs `mlpserve check` on the served repository; the
    real binary accepts its command line and passes the zoo (exit 0), and a repository
    with a broken config fails it (exit 1), which keeps the pod from starting."""
    pod = k8s_docs()["Deployment"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (server,) = pod["containers"]
    assert init["image"] == server["image"]
    assert init["command"][-1] == "check"
    (repo,) = init["args"]
    served = {e["name"]: e.get("value") for e in server["env"]}
    assert repo == served["MLPSERVE_MODEL_REPOSITORY"]
    env = {e["name"]: e["value"] for e in init["env"]}
    for name, value in env.items():
        assert served.get(name) == value, f"the check loads with {name}={value}, the server not"
    run = lambda path: subprocess.run(
        [str(binary()), "check", str(path)], capture_output=True, text=True,
        env={**os.environ, **env}, cwd=REPO)
    r = run(REPO / "models")
    assert r.returncode == 0, r.stdout + r.stderr
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "m" / "1").mkdir(parents=True)
        shutil.copy(REPO / "models" / "mlp_digits" / "1" / "model.onnx", Path(tmp) / "m" / "1")
        (Path(tmp) / "m" / "config.toml").write_text("instance = 2\n")
        r = run(tmp)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "key instance" in r.stdout, r.stdout


def test_the_servicemonitor_scrapes_the_services_http_port():
    kinds = k8s_docs()
    sm, svc = kinds["ServiceMonitor"], kinds["Service"]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    port_names = {p["name"] for p in svc["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        assert ep["port"] in port_names
        assert ep["path"] == "/metrics"


def adapter_rules() -> list:
    cm = k8s_docs()["ConfigMap"]
    return yaml.safe_load(cm["data"]["config.yaml"])["rules"]


def test_the_hpa_scales_on_a_metric_the_adapter_serves():
    hpa = k8s_docs()["HorizontalPodAutoscaler"]
    assert hpa["spec"]["minReplicas"] >= 2
    served = {r["name"]["as"] for r in adapter_rules()}
    pods_metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods_metrics and set(pods_metrics) <= served, (pods_metrics, served)
    for r in adapter_rules():
        assert set(r["resources"]["overrides"]) == {"namespace", "pod"}
        for tpl in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
            assert tpl in r["metricsQuery"]


# --- KServe ----------------------------------------------------------------------------


def test_the_kserve_runtime_declares_what_kserve_needs():
    (rt,) = docs(DEPLOY / "kserve" / "servingruntime.yaml")
    assert rt["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert rt["kind"] in ("ServingRuntime", "ClusterServingRuntime")
    spec = rt["spec"]
    formats = {f["name"]: f for f in spec["supportedModelFormats"]}
    assert "onnx" in formats and isinstance(formats["onnx"]["version"], str)
    assert set(spec["protocolVersions"]) == {"v2", "grpc-v2"}
    (c,) = spec["containers"]
    assert c["name"] == "kserve-container" and c["image"]
    args = c["args"]
    assert args[args.index("--model-repository") + 1] == "/mnt/models"
    http_port = int(args[args.index("--http-port") + 1])
    assert [p["containerPort"] for p in c["ports"]] == [http_port]
    assert c["readinessProbe"]["httpGet"]["port"] == http_port
    assert spec["annotations"]["prometheus.kserve.io/port"] == str(http_port)
    assert_cli_accepts(args)
    # The container is a core v1 Container: validate it inside a Pod.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": [c]}}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_the_inference_service_uses_the_runtime():
    (rt,) = docs(DEPLOY / "kserve" / "servingruntime.yaml")
    (isvc,) = docs(DEPLOY / "kserve" / "inferenceservice.yaml")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["kind"] == "InferenceService"
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "onnx"
    assert model["runtime"] == rt["metadata"]["name"]
    assert model["protocolVersion"] in rt["spec"]["protocolVersions"]
    assert model["storageUri"]


# --- Grafana dashboard and adapter queries on a live Prometheus ------------------------


def model_repository(root: Path) -> Path:
    """The zoo plus two copies of mlp_digits tuned to fail on purpose under load:
    `overload_probe` (queue of 1 -> 429) and `deadline_probe` (1 ms deadline, 50 ms batch
    wait -> 504)."""
    repo = root / "models"
    repo.mkdir()
    for m in (REPO / "models").iterdir():
        if (m / "1" / "model.onnx").is_file():
            (repo / m.name).symlink_to(m)
    probes = {
        "overload_probe": "max_queue_size = 1\nmax_queue_delay_us = 20000\npreferred_batch_sizes = [64]\n",
        "deadline_probe": "default_timeout_ms = 1\nmax_queue_delay_us = 50000\npreferred_batch_sizes = [64]\n",
    }
    for name, config in probes.items():
        (repo / name / "1").mkdir(parents=True)
        shutil.copy(REPO / "models" / "mlp_digits" / "1" / "model.onnx", repo / name / "1")
        (repo / name / "config.toml").write_text(config)
    return repo


def post(url: str, body: dict) -> int:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


class Load:
    """Client threads posting V2 requests until stopped; counts statuses per model."""

    def __init__(self, base: str):
        s = samples("mlp_digits")[0]["inputs"]
        self.body = {"inputs": [{"name": n, **t} for n, t in s.items()]}
        self.base = base
        self.stop = threading.Event()
        self.statuses = {}
        self.lock = threading.Lock()
        plan = [("mlp_digits", 4), ("overload_probe", 6), ("deadline_probe", 2)]
        self.threads = [threading.Thread(target=self.run, args=(m,)) for m, n in plan for _ in range(n)]
        for t in self.threads:
            t.start()

    def run(self, model: str) -> None:
        while not self.stop.is_set():
            status = post(f"{self.base}/v2/models/{model}/infer", self.body)
            with self.lock:
                self.statuses.setdefault(model, {}).setdefault(status, 0)
                self.statuses[model][status] += 1

    def close(self) -> dict:
        self.stop.set()
        for t in self.threads:
            t.join()
        return self.statuses


@pytest.fixture(scope="module")
def prometheus():
    """A server on the tuned repository under load, scraped every second by a real
    Prometheus that labels it like a Kubernetes pod; yields an instant-query function."""
    prom_bin = shutil.which("prometheus")
    assert prom_bin, "prometheus not installed (scripts/test.sh installs the Debian package)"
    tmp = Path(tempfile.mkdtemp(prefix="mlpserve-prom-"))
    repo = model_repository(tmp)
    http_port, grpc_port, prom_port = free_port(), free_port(), free_port()
    server = subprocess.Popen(
        [str(binary()), "serve", "--model-repository", str(repo), "--host", "127.0.0.1",
         "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "w"),
    )
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "mlpserve",
            "static_configs": [{"targets": [f"127.0.0.1:{http_port}"],
                                "labels": {"namespace": "test", "pod": "mlpserve-0"}}],
        }],
    }))
    prom = subprocess.Popen(
        [prom_bin, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "prometheus.log", "w"),
    )
    load = None
    try:
        base = f"http://127.0.0.1:{http_port}"
        wait_ready(f"{base}/v2/health/ready", server)
        wait_ready(f"http://127.0.0.1:{prom_port}/-/ready", prom)
        load = Load(base)

        def query(expr: str) -> list:
            url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
            assert body["status"] == "success", body
            return body["data"]["result"]

        # Enough scrapes for rate() over the windows below, under load.
        scrapes = 'count_over_time(mlpserve_model_ready{model="mlp_digits"}[30s])'
        deadline = time.monotonic() + 30
        while not any(float(r["value"][1]) >= 6 for r in query(scrapes)):
            assert time.monotonic() < deadline, "Prometheus did not scrape the server"
            time.sleep(0.5)
        yield query
    finally:
        statuses = load.close() if load else {}
        print(f"load statuses per model: {statuses}")
        for p in (prom, server):
            p.terminate()
            p.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def dashboard_targets() -> list:
    dash = json.loads((DEPLOY / "grafana" / "mlpserve.json").read_text())
    out = []
    for panel in dash["panels"]:
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            out.append((panel["title"], t["refId"], t["expr"]))
    return out


def grafana_to_promql(expr: str) -> str:
    """What Grafana sends for `All` models and a 15 s rate interval."""
    return expr.replace("$__rate_interval", "15s").replace("$model", ".*")


def finite(result: list) -> list:
    return [r for r in result if not math.isnan(float(r["value"][1]))]


def test_the_dashboard_covers_what_operators_ask_for():
    dash = json.loads((DEPLOY / "grafana" / "mlpserve.json").read_text())
    titles = " | ".join(p["title"] for p in dash["panels"]).lower()
    for want in ("outcome", "p50", "p99", "queue vs compute", "batch size", "queue depth",
                 "in-flight", "429", "504"):
        assert want in titles, want
    exprs = " ".join(e for _, _, e in dashboard_targets())
    assert "model" in exprs and 'model=~"$model"' in exprs
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "model"]


def test_every_dashboard_query_returns_data_from_a_live_server(prometheus):
    empty = []
    for title, ref, expr in dashboard_targets():
        result = finite(prometheus(grafana_to_promql(expr)))
        if not result:
            empty.append(f"{title} [{ref}]: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_the_failure_panel_shows_both_429_and_504(prometheus):
    (expr,) = [e for t, r, e in dashboard_targets() if t == "429 / 504 rates" and r == "A"]
    outcomes = {(r["metric"]["model"], r["metric"]["outcome"])
                for r in finite(prometheus(grafana_to_promql(expr)))}
    assert ("overload_probe", "overloaded") in outcomes, outcomes
    assert ("deadline_probe", "timeout") in outcomes, outcomes


def test_the_adapter_rules_answer_per_pod(prometheus):
    for rule in adapter_rules():
        q = (rule["metricsQuery"]
             .replace("<<.Series>>", rule["seriesQuery"].split("{")[0])
             .replace("<<.LabelMatchers>>", 'namespace="test",pod=~"mlpserve-0"')
             .replace("<<.GroupBy>>", "pod"))
        result = finite(prometheus(q))
        assert [r["metric"] for r in result] == [{"pod": "mlpserve-0"}], (rule["name"], result)

"""A real Prometheus (Debian's ``prometheus`` package) scrapes a running API (``segpipe api --workers 2``: its
metrics shared across both processes) and a running ``segpipe worker``, each with the metrics token; after a
train job and a sharded predict job ran, PromQL answers the job counters, the images predicted (each once),
the store's job states and the API's request counts. Every PromQL expression of the Grafana dashboard
(deploy/grafana/segpipe.json) is run against the same server, so a panel whose query does not parse fails
here. The worker logs JSON lines carrying the job id (SEGPIPE_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from segpipe.data.synthetic import make_shapes_coco
from segpipe.processes import stop_process
from tests.integration.conftest import JOB_TIMEOUT, TERMINAL, binary_train_spec
from tests.support.auth import ENGINEER
from tests.support.live_server import live_api
from tests.support.paths import REPO
from tests.support.ports import free_port

pytestmark = pytest.mark.integration
REDIS_URL = os.environ.get("SEGPIPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
METRICS_TOKEN = "scrape-token-for-the-test"
DASHBOARD = REPO / "deploy" / "grafana" / "segpipe.json"
# Grafana's own variables, as Grafana would fill them in before sending a panel's query
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


@dataclass
class Deployment:
    api: str
    worker_metrics: str
    prometheus: str
    worker_log: Path


def _wait_http(url: str, what: str, proc: subprocess.Popen[bytes], log: Path, headers: dict[str, str] | None = None,
               timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def _prometheus_config(api: str, worker: str, token_file: Path) -> dict[str, Any]:
    auth = {"type": "Bearer", "credentials_file": str(token_file)}
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "segpipe-api", "authorization": auth, "static_configs": [{"targets": [api]}]},
            {"job_name": "segpipe-worker", "authorization": auth, "static_configs": [{"targets": [worker]}]},
        ],
    }


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if not Path(PROMETHEUS).is_file():
        pytest.skip(f"{PROMETHEUS} is not installed (Debian's prometheus package; .ci/run installs it)")
    try:
        broker = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        broker.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc}); set SEGPIPE_TEST_REDIS_URL")
    broker.flushdb()
    root = tmp_path_factory.mktemp("prometheus")
    (root / "data").mkdir()
    worker_port = free_port()
    env = {
        "SEGPIPE_HOME": str(root / "home"),
        "SEGPIPE_DATABASE_URL": f"sqlite:///{root / 'segpipe.db'}",
        "SEGPIPE_BROKER_URL": REDIS_URL,
        "SEGPIPE_DATA_ROOTS": str(root / "data"),
        "SEGPIPE_ARTIFACT_ROOT": str(root / "artifacts"),
        "SEGPIPE_TOKENS": "eng-token:engineer",
        "SEGPIPE_METRICS_TOKEN": METRICS_TOKEN,
        "SEGPIPE_WORKER_METRICS_PORT": str(worker_port),
        "SEGPIPE_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    }
    processes: list[subprocess.Popen[bytes]] = []
    api_command = [sys.executable, "-m", "segpipe", "api", "--host", "127.0.0.1", "--workers", "2"]
    try:
        with live_api(env, root / "api.log", command=api_command) as api:
            worker_log = root / "worker.log"
            with worker_log.open("wb") as out:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "segpipe", "worker", "--queues", "gpu,cpu", "--reconcile-every", "0"],
                    env={**os.environ, "PYTHONPATH": str(REPO), **env}, stdout=out, stderr=subprocess.STDOUT, cwd=root)
            processes.append(worker)
            worker_metrics = f"127.0.0.1:{worker_port}"
            _wait_http(f"http://{worker_metrics}/metrics", "the worker's /metrics", worker, worker_log,
                       headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            token_file = root / "metrics-token"
            token_file.write_text(METRICS_TOKEN)
            config = root / "prometheus.yml"
            config.write_text(yaml.safe_dump(_prometheus_config(api.removeprefix("http://"), worker_metrics, token_file)))
            prometheus_port = free_port()
            prometheus_log = root / "prometheus.log"
            with prometheus_log.open("wb") as out:
                server = subprocess.Popen(
                    [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={root / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{prometheus_port}"], stdout=out, stderr=subprocess.STDOUT)
            processes.append(server)
            prometheus = f"http://127.0.0.1:{prometheus_port}"
            _wait_http(f"{prometheus}/-/ready", "prometheus", server, prometheus_log)
            yield Deployment(api, worker_metrics, prometheus, worker_log)
    finally:
        for proc in reversed(processes):
            stop_process(proc, grace=10)
        broker.flushdb()


# The first submit in an API process imports the config and data modules: tens of seconds on a loaded machine.
def _submit_and_wait(api: str, kind: str, config: dict[str, Any], worker_log: Path) -> dict[str, Any]:
    answer = httpx.post(f"{api}/jobs", json={"kind": kind, "config": config}, headers=ENGINEER, timeout=180)
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["id"]
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        job = httpx.get(f"{api}/jobs/{job_id}", headers=ENGINEER, timeout=180).json()
        if job["state"] in TERMINAL:
            assert job["state"] == "succeeded", f"{job}\n{worker_log.read_text()[-3000:]}"
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job['state']} after {JOB_TIMEOUT:.0f} s:\n{worker_log.read_text()[-3000:]}")
        time.sleep(0.5)


def query(prometheus: str, promql: str) -> dict[str, Any]:
    """The HTTP API's answer to an instant query (``data`` on success; ``error`` otherwise)."""
    return httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()


def _value_when(prometheus: str, promql: str, wanted: float, timeout: float = 60.0) -> float:
    """Poll the query until its single value is ``wanted`` (scrapes run every second); fail with the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = query(prometheus, promql)
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        value = float(result[0]["value"][1]) if len(result) == 1 else None
        if value == wanted:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{promql} answered {result}, not {wanted}, for {timeout:.0f} s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def ran(deployment: Deployment) -> dict[str, str]:
    """A train job, and a predict job of its model over 4 images split into 2 shards, all run by the worker."""
    root = deployment.worker_log.parent / "data"  # the data root
    coco = make_shapes_coco(root / "shapes", n_images=4, size=(32, 32), seed=3, crowd=False)
    train = _submit_and_wait(deployment.api, "train", binary_train_spec(coco.images, coco.annotations, epochs=1),
                             deployment.worker_log)
    predict = _submit_and_wait(deployment.api, "predict", {"model": f"job:{train['id']}", "images": str(coco.images),
                                                           "device": "cpu", "predict": {"formats": ["png"], "shard_size": 2}},
                               deployment.worker_log)
    return {"train": train["id"], "predict": predict["id"]}


def test_prometheus_answers_the_job_counters_after_jobs_ran(deployment: Deployment, ran: dict[str, str]) -> None:
    prom = deployment.prometheus
    _value_when(prom, 'segpipe_worker_jobs_total{job="segpipe-worker",kind="train",outcome="succeeded"}', 1)
    _value_when(prom, 'segpipe_worker_jobs_total{job="segpipe-worker",kind="predict",outcome="succeeded"}', 1)
    _value_when(prom, 'segpipe_worker_jobs_total{kind="predict-shard",outcome="succeeded"}', 2)
    _value_when(prom, 'segpipe_worker_jobs_total{kind="predict",outcome="handed-off"}', 1)  # to its shards
    _value_when(prom, 'sum(segpipe_worker_job_duration_seconds_count{kind="train"})', 1)
    _value_when(prom, 'sum(segpipe_worker_claims_total{outcome="claimed"})', 5)  # train, predict twice, 2 shards
    # each image once: by its shard, never again by the parent that reports the shards' progress
    _value_when(prom, "sum(segpipe_worker_images_predicted_total)", 4)
    _value_when(prom, 'segpipe_worker_images_predicted_total{kind="predict-shard"}', 4)
    # from the API: the store's jobs and the broker's queues
    _value_when(prom, 'segpipe_jobs{job="segpipe-api",kind="train",state="succeeded"}', 1)
    _value_when(prom, 'sum(segpipe_queue_depth{job="segpipe-api"})', 0)
    # two POST /jobs answered 201, whichever of the two uvicorn processes took them (multiprocess mode)
    _value_when(prom, 'sum(segpipe_http_requests_total{job="segpipe-api",method="POST",route="/jobs",status="201"})', 2)
    _value_when(prom, 'count(up{job=~"segpipe-.*"} == 1)', 2)
    _value_when(prom, 'count(segpipe_build_info{component="worker"}) + count(segpipe_build_info{component="api"})', 2)
    _value_when(prom, 'count(segpipe_worker_peak_resident_memory_bytes > 0)', 1)


def test_every_dashboard_query_runs_on_prometheus(deployment: Deployment, ran: dict[str, str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(expressions) >= 10
    answered = 0
    for expr in expressions:
        promql = expr
        for variable, value in GRAFANA_VARIABLES.items():
            promql = promql.replace(variable, value)
        answer = query(deployment.prometheus, promql)
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        answered += bool(answer["data"]["result"])
    assert answered >= len(expressions) // 2, "most panels should show data after two jobs ran"


def test_scrapes_need_the_metrics_token(deployment: Deployment) -> None:
    for url in (f"{deployment.api}/metrics", f"http://{deployment.worker_metrics}/metrics"):
        assert httpx.get(url, timeout=10).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10).status_code == 200
    # an engineer's token opens the API, not its metrics
    assert httpx.get(f"{deployment.api}/metrics", headers=ENGINEER, timeout=10).status_code == 403


def test_the_worker_logs_json_lines_with_the_job_id(deployment: Deployment, ran: dict[str, str]) -> None:
    entries = []
    for line in deployment.worker_log.read_text().splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    for job_id in ran.values():
        assert any(e.get("job_id") == job_id for e in entries), f"no JSON log line carries job {job_id}"

"""GET /metrics of the API (auth, the store's jobs, the broker's queue depth, request counts by route
template), a worker's /metrics server, the images counter and JSON logs with job ids. The real Prometheus
scraping all of it is tests/integration/test_prometheus.py."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from segpipe.api.app import create_app
from segpipe.logs import JsonFormatter, job_context
from segpipe.metrics.collectors import BuildInfo
from segpipe.metrics.worker_server import start_metrics_server
from segpipe.settings import Settings
from segpipe.stores import Stores
from tests.api.conftest import ADMIN, ANNOTATOR, ENGINEER, make_settings

SCRAPE = {"Authorization": "Bearer the-scrape-token"}


@pytest.fixture
def metrics_client(tmp_path: Path, stores: Stores) -> Any:
    settings = make_settings(tmp_path, metrics_token="the-scrape-token")
    with TestClient(create_app(settings, stores, create_celery_for(settings))) as client:
        yield client


def create_celery_for(settings: Settings) -> Celery:
    from workers.celery_app import create_app as create_celery

    return create_celery(settings)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition text (parsed by the client's own parser)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_need_the_metrics_token_or_an_admin(metrics_client: TestClient) -> None:
    assert metrics_client.get("/metrics").status_code == 401
    assert metrics_client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    for who in (ANNOTATOR, ENGINEER):
        refused = metrics_client.get("/metrics", headers=who)
        assert refused.status_code == 403 and "SEGPIPE_METRICS_TOKEN or an admin token" in refused.json()["error"]
    for who in (SCRAPE, ADMIN):
        answer = metrics_client.get("/metrics", headers=who)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert "/metrics" not in metrics_client.get("/openapi.json").json()["paths"]


def test_metrics_count_the_stores_jobs_and_the_broker_queue(metrics_client: TestClient, stores: Stores,
                                                            predict_inputs: Path) -> None:
    submitted = metrics_client.post("/jobs", headers=ENGINEER, json={"kind": "predict", "config": {
        "model": str(predict_inputs / "model"), "images": str(predict_inputs / "images")}})
    assert submitted.status_code == 201, submitted.text
    done = stores.jobs.create("train", "task: binary\n", "gpu")
    assert stores.jobs.claim(done.id, "w", lease_seconds=60).claimed
    assert stores.jobs.finish(done.id, "w", "failed", error="x")
    metrics_client.get(f"/jobs/{submitted.json()['id']}", headers=ENGINEER)
    values = samples(metrics_client.get("/metrics", headers=SCRAPE).text)
    assert values[("segpipe_jobs", (("kind", "predict"), ("state", "queued")))] == 1
    assert values[("segpipe_jobs", (("kind", "train"), ("state", "failed")))] == 1
    assert values[("segpipe_jobs", (("kind", "train"), ("state", "running")))] == 0
    queue = submitted.json()["queue"]
    assert values[("segpipe_queue_depth", (("queue", queue),))] == 1, "the published message waits in the broker"
    assert values[("segpipe_build_info", (("component", "api"), ("python", _python()), ("version", _version())))] == 1
    # route templates, never ids
    route = (("method", "GET"), ("route", "/jobs/{job_id}"), ("status", "200"))
    assert values[("segpipe_http_requests_total", route)] >= 1
    assert not any(submitted.json()["id"] in dict(labels).get("route", "") for _, labels in values)


def _python() -> str:
    import platform

    return platform.python_version()


def _version() -> str:
    from segpipe.metrics.collectors import segpipe_version

    return segpipe_version()


def _get(url: str, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_workers_metrics_server_needs_its_token() -> None:
    server = start_metrics_server("127.0.0.1", 0, "worker-token", [BuildInfo("worker")])
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        status, body = _get(f"{base}/metrics", {})
        assert status == 401 and "SEGPIPE_METRICS_TOKEN" in json.loads(body)["error"]
        assert _get(f"{base}/metrics", {"Authorization": "Bearer nope"})[0] == 401
        status, body = _get(f"{base}/metrics", {"Authorization": "Bearer worker-token"})
        assert status == 200 and 'segpipe_build_info{component="worker"' in body
        assert "process_resident_memory_bytes" in body
        assert _get(f"{base}/other", {"Authorization": "Bearer worker-token"})[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_images_predicted_are_counted_per_kind(tmp_path: Path, sqlite_stores: Stores) -> None:
    from segpipe.jobs.run import JobRun

    def counted(kind: str) -> float:
        return REGISTRY.get_sample_value("segpipe_worker_images_predicted_total", {"kind": kind}) or 0.0

    before = counted("predict-shard"), counted("predict")
    run = JobRun("job-1", "predict-shard", "w", sqlite_stores, make_settings(tmp_path))
    for _ in range(5):
        run.image_predicted()
    run.progress({"images_done": 40, "images_total": 50}, force=True)  # progress alone counts nothing
    assert (counted("predict-shard"), counted("predict")) == (before[0] + 5, before[1])


def test_json_logs_carry_the_job_id() -> None:
    record = logging.LogRecord("segpipe.pipeline", logging.INFO, __file__, 1, "step %d", (3,), None)
    with job_context("abc123"):
        inside = json.loads(JsonFormatter().format(record))
    outside = json.loads(JsonFormatter().format(record))
    assert inside["job_id"] == "abc123" and inside["message"] == "step 3" and inside["level"] == "INFO"
    assert "job_id" not in outside and outside["logger"] == "segpipe.pipeline"

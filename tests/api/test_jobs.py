from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient
from kombu import Connection

from segpipe.api.app import create_app
from segpipe.service import RUN_JOB
from segpipe.settings import Settings
from segpipe.stores import Stores
from tests.api.conftest import ANNOTATOR, ENGINEER, REDIS_URL, make_settings
from workers.celery_app import create_app as create_celery


def predict_body(images: str = "images", **extra: object) -> dict:
    return {"kind": "predict", "config": {"model": "model", "images": images}, **extra}


def published(settings: Settings, queue: str) -> list[str]:
    """Task ids of the messages waiting in ``queue`` of the SQLite broker (consumed: acked)."""
    ids = []
    with Connection(settings.broker) as conn:
        q = conn.SimpleQueue(queue)
        while True:
            try:
                message = q.get(timeout=0.2)
            except q.Empty:
                break
            assert message.headers["task"] == RUN_JOB
            ids.append(message.headers["id"])
            message.ack()
        q.close()
    return ids


def test_submit_stores_a_queued_job_and_publishes_it(client: TestClient, stores: Stores, settings: Settings) -> None:
    r = client.post("/jobs", json=predict_body(queue="cpu", model_name="m1"), headers=ENGINEER)
    assert r.status_code == 201, r.json()
    job = r.json()
    assert r.headers["location"] == f"/jobs/{job['id']}"
    assert job["state"] == "queued" and job["kind"] == "predict" and job["queue"] == "cpu"
    # paths come back resolved inside the first data root
    assert f"images: {settings.roots[0] / 'images'}" in job["config"]
    row = stores.jobs.get(job["id"])
    assert row.state == "queued" and row.model_name == "m1"
    assert published(settings, "cpu") == [job["id"]]


def test_submit_yaml_config(sqlite_client: TestClient, settings: Settings) -> None:
    body = {"kind": "predict", "config_yaml": "model: model\nimages: images\npredict: {score_threshold: 0.3}\n"}
    r = sqlite_client.post("/jobs", json=body, headers=ENGINEER)
    assert r.status_code == 201, r.json()
    assert "score_threshold: 0.3" in r.json()["config"]
    assert published(settings, "gpu") == [r.json()["id"]]


@pytest.mark.integration
def test_submit_publishes_to_redis(tmp_path: Path, sqlite_stores: Stores) -> None:
    settings = make_settings(tmp_path, broker_url=REDIS_URL)
    r_client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        r_client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc}); set SEGPIPE_TEST_REDIS_URL")
    queue = "gpu"
    with TestClient(create_app(settings, sqlite_stores, create_celery(settings))) as client:
        job_id = client.post("/jobs", json=predict_body(), headers=ENGINEER).json()["id"]
    # Other tests may share this Redis: find our message by its task id, then take it out.
    ours = [m for m in r_client.lrange(queue, 0, -1) if json.loads(m)["headers"]["id"] == job_id]
    assert len(ours) == 1
    assert json.loads(ours[0])["headers"]["task"] == RUN_JOB
    r_client.lrem(queue, 0, ours[0])
    r_client.close()


def test_config_errors_are_422_naming_the_key(client: TestClient) -> None:
    r = client.post("/jobs", json={"kind": "predict", "config": {"model": "job:abc", "imagez": "x"}}, headers=ENGINEER)
    assert r.status_code == 422
    assert "imagez: unknown key" in r.json()["error"]
    r = client.post(
        "/jobs", json={"kind": "train", "config": {"task": "semantics", "model": {"name": "unet"}}}, headers=ENGINEER
    )
    assert r.status_code == 422 and "task" in r.json()["error"]
    r = client.post("/jobs", json={"kind": "predict", "config_yaml": "model: [unclosed"}, headers=ENGINEER)
    assert r.status_code == 422 and "invalid YAML" in r.json()["error"]


def test_request_validation_errors_are_json(sqlite_client: TestClient) -> None:
    r = sqlite_client.post("/jobs", json={"kind": "destroy", "config": {}}, headers=ENGINEER)
    assert r.status_code == 422
    body = r.json()
    assert body["error"].startswith("invalid request: body.kind:")
    assert body["detail"][0]["loc"] == ["body", "kind"]
    r = sqlite_client.post("/jobs", json={"kind": "predict"}, headers=ENGINEER)
    assert r.status_code == 422 and "exactly one of 'config'" in r.json()["error"]
    r = sqlite_client.post("/jobs", content=b"{not json", headers={**ENGINEER, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"].startswith("invalid request")
    r = sqlite_client.get("/jobs?limit=500", headers=ANNOTATOR)
    assert r.status_code == 422 and "query.limit" in r.json()["error"]
    r = sqlite_client.get("/no/such/thing", headers=ANNOTATOR)
    assert r.status_code == 404 and r.json()["error"].startswith("no such endpoint")
    r = sqlite_client.delete("/jobs", headers=ANNOTATOR)
    assert r.status_code == 405 and "error" in r.json()


def test_paths_outside_the_data_roots_are_403(sqlite_client: TestClient, settings: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (settings.roots[0] / "link").symlink_to(outside)
    for images in ("../outside", "images/../../outside", str(outside), "/etc", "link", "link/sub"):
        r = sqlite_client.post("/jobs", json=predict_body(images), headers=ENGINEER)
        assert r.status_code == 403, images
        assert r.json()["error"].startswith(f"images {images}: outside the allowed data roots")
    # also inside nested sections of a train config
    train = {"task": "semantic", "model": {"name": "unet"}, "data": {"train": {"images": "ok", "masks": "../../x"}}}
    r = sqlite_client.post("/jobs", json={"kind": "train", "config": train}, headers=ENGINEER)
    assert r.status_code == 403 and r.json()["error"].startswith("data.train.masks ../../x")
    assert sqlite_client.get("/jobs", headers=ANNOTATOR).json()["total"] == 0


def test_oversized_config_is_413(sqlite_client: TestClient, settings: Settings) -> None:
    limit = int(settings.max_config_kb * 1024)
    big = {"kind": "predict", "config_yaml": "model: model\nimages: images\n#" + "x" * limit}
    r = sqlite_client.post("/jobs", json=big, headers=ENGINEER)
    assert r.status_code == 413
    assert "SEGPIPE_MAX_CONFIG_KB" in r.json()["error"]

    # a chunked body (no Content-Length) is counted as it arrives
    def chunks():
        data = json.dumps(big).encode()
        for i in range(0, len(data), 4096):
            yield data[i : i + 4096]

    r = sqlite_client.post("/jobs", content=chunks(), headers={**ENGINEER, "Content-Type": "application/json"})
    assert r.status_code == 413 and "SEGPIPE_MAX_CONFIG_KB" in r.json()["error"]


def test_list_filter_and_paginate(client: TestClient, stores: Stores) -> None:
    ids = [client.post("/jobs", json=predict_body(), headers=ENGINEER).json()["id"] for _ in range(5)]
    stores.jobs.create("train", "task: semantic\n", "gpu")
    page = client.get("/jobs?kind=predict&limit=2&offset=0", headers=ANNOTATOR).json()
    assert page["total"] == 5 and page["limit"] == 2 and len(page["items"]) == 2
    seen = []
    for offset in range(0, 6, 2):
        seen += [
            j["id"]
            for j in client.get(f"/jobs?kind=predict&limit=2&offset={offset}", headers=ANNOTATOR).json()["items"]
        ]
    assert sorted(seen) == sorted(ids)  # every job once across pages
    assert client.get("/jobs", headers=ANNOTATOR).json()["total"] == 6
    assert client.get("/jobs?state=running", headers=ANNOTATOR).json() == {
        "items": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
    }
    assert client.get("/jobs?state=queued&kind=train", headers=ANNOTATOR).json()["total"] == 1


def test_get_job_and_unknown_ids(client: TestClient, stores: Stores) -> None:
    job_id = client.post("/jobs", json=predict_body(), headers=ENGINEER).json()["id"]
    assert stores.jobs.claim(job_id, "w1", lease_seconds=60).claimed
    assert stores.jobs.update_progress(job_id, "w1", {"phase": "predict", "images_done": 3, "images_total": 10})
    body = client.get(f"/jobs/{job_id}", headers=ANNOTATOR).json()
    assert body["state"] == "running" and body["worker"] == "w1" and body["started_at"]
    assert body["progress"]["images_done"] == 3 and body["progress"]["images_total"] == 10
    r = client.get(f"/jobs/{uuid.uuid4().hex}", headers=ANNOTATOR)
    assert r.status_code == 404 and "does not exist" in r.json()["error"]


def test_traceback_is_for_engineers(sqlite_client: TestClient, sqlite_stores: Stores) -> None:
    job = sqlite_stores.jobs.create("predict", "model: job:x\nimages: /x\n", "gpu")
    sqlite_stores.jobs.mark_failed(job.id, "boom", traceback="Traceback ...\nValueError: boom")
    assert sqlite_client.get(f"/jobs/{job.id}", headers=ANNOTATOR).json()["traceback"] is None
    assert "ValueError" in sqlite_client.get(f"/jobs/{job.id}", headers=ENGINEER).json()["traceback"]
    assert sqlite_client.get(f"/jobs/{job.id}", headers=ANNOTATOR).json()["error"] == "boom"


def test_cancel(client: TestClient, stores: Stores, settings: Settings) -> None:
    queued = client.post("/jobs", json=predict_body(), headers=ENGINEER).json()["id"]
    assert client.post(f"/jobs/{queued}/cancel", headers=ANNOTATOR).status_code == 403
    r = client.post(f"/jobs/{queued}/cancel", headers=ENGINEER)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert stores.jobs.get(queued).state == "cancelled"
    running = client.post("/jobs", json=predict_body(), headers=ENGINEER).json()["id"]
    assert stores.jobs.claim(running, "w1", lease_seconds=60).claimed
    body = client.post(f"/jobs/{running}/cancel", headers=ENGINEER).json()
    assert body["state"] == "running" and body["cancel_requested"] is True
    assert client.post(f"/jobs/{uuid.uuid4().hex}/cancel", headers=ENGINEER).status_code == 404


def test_broker_down_is_503(tmp_path: Path, sqlite_stores: Stores) -> None:
    settings = make_settings(tmp_path, broker_url="redis://127.0.0.1:1/0")
    celery_app: Celery = create_celery(settings)
    celery_app.conf.broker_connection_timeout = 0.5
    celery_app.conf.task_publish_retry = False
    with TestClient(create_app(settings, sqlite_stores, celery_app)) as client:
        r = client.post("/jobs", json=predict_body(), headers=ENGINEER)
    assert r.status_code == 503 and "the broker did not accept it" in r.json()["error"]
    (job,), _ = sqlite_stores.jobs.list()
    assert job.state == "failed" and "broker unreachable" in job.error

from __future__ import annotations

from typing import get_args

from fastapi.testclient import TestClient

from segpipe import job_kinds
from segpipe.api.schemas import JobKind, JobState
from segpipe.stores import JOB_STATES, Stores
from tests.api.conftest import ANNOTATOR, ENGINEER


def test_list_get_and_promote(client: TestClient, stores: Stores) -> None:
    for metrics in ({"miou": 0.5}, {"miou": 0.7}):
        stores.versions.register("roads", "semantic", "task: semantic\n", metrics=metrics, dataset_hash="abc")
    stores.versions.register("cells", "instance", "task: instance\n")
    assert client.get("/models", headers=ANNOTATOR).json() == [
        {"name": "cells", "task": "instance", "versions": 1, "latest_version": 1, "production_version": None},
        {"name": "roads", "task": "semantic", "versions": 2, "latest_version": 2, "production_version": None},
    ]
    assert client.post("/models/roads/promote", json={"version": 1}, headers=ANNOTATOR).status_code == 403
    r = client.post("/models/roads/promote", json={"version": 1}, headers=ENGINEER)
    assert r.status_code == 200 and r.json()["stage"] == "production"
    r = client.post("/models/roads/promote", json={"version": 2, "reason": "sharper edges"}, headers=ENGINEER)
    detail = client.get("/models/roads", headers=ANNOTATOR).json()
    assert detail["decisions"][0]["reason"].endswith(": sharper edges")
    assert detail["production_version"] == 2
    assert [(v["version"], v["stage"], v["metrics"]) for v in detail["versions"]] == [
        (2, "production", {"miou": 0.7}),
        (1, "archived", {"miou": 0.5}),
    ]
    r = client.post("/models/roads/promote", json={"version": 9}, headers=ENGINEER)
    assert r.status_code == 404 and r.json()["error"] == "model 'roads' has no version 9"
    r = client.get("/models/nothing", headers=ANNOTATOR)
    assert r.status_code == 404 and r.json()["error"] == "model 'nothing' has no versions"
    r = client.post("/models/roads/promote", json={"version": 0}, headers=ENGINEER)
    assert r.status_code == 422 and "body.version" in r.json()["error"]
    r = client.post("/models/roads/promote", json={"version": 1, "reason": "x" * 1001}, headers=ENGINEER)
    assert r.status_code == 422 and "body.reason" in r.json()["error"]
    r = client.post("/models/roads/rollback", json={"reason": "regressed on night images"}, headers=ENGINEER)
    assert r.status_code == 200 and r.json()["reason"].endswith(": regressed on night images")


def test_a_versions_resolved_config_is_readable(client: TestClient, stores: Stores) -> None:
    stores.versions.register("roads", "semantic", "task: semantic\nmodel: {name: unet}\n")
    r = client.get("/models/roads/versions/1/config", headers=ANNOTATOR)
    assert r.status_code == 200
    assert r.json() == {"name": "roads", "version": 1, "task": "semantic", "config": "task: semantic\nmodel: {name: unet}\n"}
    assert client.get("/models/roads/versions/2/config", headers=ANNOTATOR).status_code == 404
    assert client.get("/models/roads/versions/0/config", headers=ANNOTATOR).status_code == 422
    assert client.get("/models/roads/versions/1/config").status_code == 401


def test_api_literals_match_the_store() -> None:
    assert get_args(JobState) == JOB_STATES
    assert get_args(JobKind) == job_kinds.names()


def test_openapi_documents_every_route(sqlite_client: TestClient) -> None:
    spec = sqlite_client.get("/openapi.json").json()
    assert {
        "/health",
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/cancel",
        "/jobs/{job_id}/artifacts",
        "/jobs/{job_id}/artifacts/{name}",
        "/jobs/{job_id}/results",
        "/jobs/{job_id}/export",
        "/images/{image_key}/masks",
        "/models",
        "/models/{name}",
        "/models/{name}/promote",
        "/models/{name}/decisions",
        "/models/{name}/versions/{version}/config",
        "/models/{name}/rollback",
        "/models/{name}/retrain",
        "/datasets/{name}/changed",
        "/uploads",
        "/snapshots",
        "/snapshots/{snapshot_id}",
        "/jobs/{job_id}/export",
        # review pages' data (issue 10)
        "/jobs/{job_id}/images",
        "/jobs/{job_id}/categories",
        "/jobs/{job_id}/label-next",
        "/jobs/{job_id}/images/{image_key}/file",
        # the Label Studio ML backend (issue 10)
        "/ls/{model_ref}/health",
        "/ls/{model_ref}/versions",
        "/ls/{model_ref}/setup",
        "/ls/{model_ref}/predict",
        "/ls/{model_ref}/webhook",
        "/ls/{model_ref}/train",
        "/labelstudio/connect",
    } == set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert sqlite_client.get("/docs").status_code == 200

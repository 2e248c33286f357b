from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from segpipe.api.app import create_app
from segpipe.errors import ConfigError
from segpipe.stores import Stores
from tests.api.conftest import ADMIN, ANNOTATOR, ENGINEER, make_settings

PREDICT = {"kind": "predict", "config": {"model": "model", "images": "images"}}


def test_auth_matrix(client: TestClient) -> None:
    # no token / unknown token: 401 with a Bearer challenge
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic ZW5nOmVuZw=="}):
        r = client.get("/jobs", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"] and "detail" in r.json()
    # an annotator reads but cannot submit
    assert client.get("/jobs", headers=ANNOTATOR).status_code == 200
    r = client.post("/jobs", json=PREDICT, headers=ANNOTATOR)
    assert r.status_code == 403
    assert r.json()["error"] == "this needs the engineer role; your token has annotator"
    # engineers and admins submit
    for headers in (ENGINEER, ADMIN):
        r = client.post("/jobs", json=PREDICT, headers=headers)
        assert r.status_code == 201, r.json()
    # 401 beats validation: an unauthenticated bad body is not even parsed
    assert client.post("/jobs", json={"kind": "nope"}).status_code == 401


def test_submitted_by_names_the_token_without_revealing_it(sqlite_client: TestClient) -> None:
    job = sqlite_client.post("/jobs", json=PREDICT, headers=ENGINEER).json()
    assert job["submitted_by"].startswith("engineer:")
    assert "eng-token" not in job["submitted_by"]


def test_refuses_to_start_without_tokens(tmp_path: Path, sqlite_stores: Stores) -> None:
    settings = make_settings(tmp_path, tokens={})
    with pytest.raises(ConfigError, match="SEGPIPE_TOKENS"):
        create_app(settings, sqlite_stores)


def test_auth_off_serves_loopback_only(tmp_path: Path, sqlite_stores: Stores) -> None:
    app = create_app(make_settings(tmp_path, tokens={}, auth="off"), sqlite_stores)
    with TestClient(app, client=("127.0.0.1", 50000)) as local:
        r = local.post("/jobs", json=PREDICT)
        assert r.status_code == 201
        assert r.json()["submitted_by"] == "local"
    with TestClient(app, client=("10.1.2.3", 50000)) as remote:
        r = remote.get("/jobs")
        assert r.status_code == 403
        assert "only loopback clients" in r.json()["error"]


def test_health_needs_no_token(sqlite_client: TestClient) -> None:
    r = sqlite_client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["store"] == {"ok": True, "dialect": "sqlite"}
    assert body["broker"] == "sqla+sqlite"
    assert body["version"]


def test_health_reports_an_unreachable_store(tmp_path: Path) -> None:
    # Nothing listens on port 1: the store is configured but down.
    down = Stores.open("postgresql://postgres@127.0.0.1:1/segpipe", tmp_path / "artifacts", migrate_schema=False)
    try:
        with TestClient(create_app(make_settings(tmp_path), down)) as client:
            r = client.get("/health")
        assert r.status_code == 503
        assert r.json()["status"] == "degraded"
        assert r.json()["store"]["ok"] is False and "OperationalError" in r.json()["store"]["error"]
    finally:
        down.close()

"""Chaos: the broker loses its queue while jobs wait in it.

Each test starts its OWN ``redis-server`` on a free loopback port (never the machine's shared Redis),
queues predict jobs through the real API on PostgreSQL with no worker running, kills Redis with
SIGKILL and starts it again on the same port, then starts a real ``segpipe worker``:

- without persistence every message is gone: the reconciler re-publishes each queued job once, and
  every job reaches a final state;
- with AOF (``appendfsync always``) every message survives: no job is re-published, each runs once.

Plus the operator's door: ``segpipe requeue`` re-publishes lost jobs, and running it again does nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from segpipe.settings import Settings
from segpipe.stores import Stores
from tests.integration.conftest import ENGINEER, TOKENS, WorkerProcess, predict_spec
from tests.support.ports import free_port
from tests.support.postgres import create_pg_database, drop_pg_database

pytestmark = [pytest.mark.integration]
N_JOBS = 3
REPUBLISHED = "message is gone from the broker; re-published"


class RedisServer:
    """A redis-server process of this test's own: loopback, free port, data in ``folder``."""

    def __init__(self, folder: Path, *, aof: bool) -> None:
        self.folder, self.aof, self.port = folder, aof, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"]
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.folder),
               "--logfile", str(self.folder / "redis.log"), *persistence]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    pytest.fail(f"redis-server on port {self.port} did not start")
                time.sleep(0.1)
        client.close()

    def crash(self) -> None:
        """SIGKILL: whatever was not persisted is lost."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture
def chaos_env(tmp_path: Path, tiny_model: Path) -> Iterator[dict]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    pg_url = create_pg_database()
    servers: list[RedisServer] = []
    workers: list[WorkerProcess] = []
    stores = Stores.open(pg_url, tmp_path / "artifacts")
    try:
        yield {"tmp": tmp_path, "pg_url": pg_url, "servers": servers, "workers": workers, "stores": stores,
               "model": tiny_model}
    finally:
        for worker in workers:
            worker.stop()
        for server in servers:
            server.stop()
        stores.close()
        drop_pg_database(pg_url)


def _settings(env: dict, redis_url: str) -> Settings:
    tmp = env["tmp"]
    (tmp / "data").mkdir(exist_ok=True)
    return Settings(home=tmp / "home", database_url=env["pg_url"].render_as_string(hide_password=False),
                    broker_url=redis_url, data_roots=[tmp / "data", env["model"].parent],
                    artifact_root=tmp / "artifacts", tokens=dict(TOKENS), auth="on", lease_seconds=5.0,
                    heartbeat_seconds=1.0, visibility_timeout=5, lost_message_seconds=1.0)


def _worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")}
    env.update(SEGPIPE_HOME=str(settings.home), SEGPIPE_DATABASE_URL=str(settings.database_url),
               SEGPIPE_BROKER_URL=str(settings.broker_url),
               SEGPIPE_DATA_ROOTS=",".join(str(p) for p in settings.data_roots),
               SEGPIPE_ARTIFACT_ROOT=str(settings.artifacts), SEGPIPE_LEASE_SECONDS="5",
               SEGPIPE_HEARTBEAT_SECONDS="1", SEGPIPE_VISIBILITY_TIMEOUT="5", SEGPIPE_LOST_MESSAGE_SECONDS="1",
               PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    return env


def _queue_jobs(env: dict, settings: Settings) -> list[str]:
    from segpipe.api.app import create_app
    from segpipe.data.synthetic import make_shapes_coco
    from workers.celery_app import create_app as create_celery

    coco = make_shapes_coco(settings.roots[0] / "shapes", n_images=2, size=(32, 32), seed=3)
    celery = create_celery(settings)
    with TestClient(create_app(settings, env["stores"], celery)) as client:
        ids = []
        for _ in range(N_JOBS):
            r = client.post("/jobs", json={"kind": "predict", "config": predict_spec(env["model"], coco.images)},
                            headers=ENGINEER)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    celery.close()
    return ids


def _start_worker(env: dict, settings: Settings) -> WorkerProcess:
    log = env["tmp"] / f"worker-{len(env['workers'])}.log"
    cmd = [sys.executable, "-m", "segpipe", "worker", "--queues", "gpu,cpu", "--reconcile-every", "1"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=_worker_env(settings), stdout=out, stderr=subprocess.STDOUT, cwd=env["tmp"])
    worker = WorkerProcess(proc, log)
    env["workers"].append(worker)
    worker.wait_for_log(" ready.", timeout=120)
    return worker


def _wait_final(stores: Stores, ids: list[str], worker: WorkerProcess, timeout: float = 240.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = {job_id: stores.jobs.get(job_id).state for job_id in ids}
        if all(s in ("succeeded", "failed", "cancelled") for s in states.values()):
            return states
        if time.monotonic() > deadline:
            pytest.fail(f"jobs not final after {timeout:.0f} s: {states}\n{worker.tail(60)}")
        time.sleep(0.5)


def _broker_size(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.llen("gpu"))
    finally:
        client.close()


def test_redis_restarted_without_persistence_every_queued_job_still_ends(chaos_env: dict) -> None:
    server = RedisServer(chaos_env["tmp"] / "redis-plain", aof=False)
    chaos_env["servers"].append(server)
    server.start()
    settings = _settings(chaos_env, server.url)
    ids = _queue_jobs(chaos_env, settings)
    assert _broker_size(server.url) == N_JOBS
    server.crash()
    server.start()
    assert _broker_size(server.url) == 0  # every message lost
    worker = _start_worker(chaos_env, settings)
    states = _wait_final(chaos_env["stores"], ids, worker)
    assert set(states.values()) == {"succeeded"}, (states, worker.tail(60))
    republished = [line for line in worker.text().splitlines() if REPUBLISHED in line]
    assert sorted(job_id for job_id in ids if any(job_id in line for line in republished)) == sorted(ids)
    assert all(chaos_env["stores"].jobs.get(job_id).attempts == 1 for job_id in ids)


def test_redis_restarted_with_aof_nothing_is_republished(chaos_env: dict) -> None:
    server = RedisServer(chaos_env["tmp"] / "redis-aof", aof=True)
    chaos_env["servers"].append(server)
    server.start()
    settings = _settings(chaos_env, server.url)
    ids = _queue_jobs(chaos_env, settings)
    server.crash()
    server.start()
    assert _broker_size(server.url) == N_JOBS  # the AOF kept every message
    worker = _start_worker(chaos_env, settings)
    states = _wait_final(chaos_env["stores"], ids, worker)
    assert set(states.values()) == {"succeeded"}, (states, worker.tail(60))
    assert REPUBLISHED not in worker.text()
    assert all(chaos_env["stores"].jobs.get(job_id).attempts == 1 for job_id in ids)


def test_segpipe_requeue_republishes_lost_jobs_once(chaos_env: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    server = RedisServer(chaos_env["tmp"] / "redis-cli", aof=False)
    chaos_env["servers"].append(server)
    server.start()
    settings = _settings(chaos_env, server.url)
    ids = _queue_jobs(chaos_env, settings)
    server.crash()
    server.start()
    for key, value in _worker_env(settings).items():
        if key.startswith("SEGPIPE_"):
            monkeypatch.setenv(key, value)
    from segpipe.cli import app
    from segpipe.settings import get_settings

    get_settings.cache_clear()
    try:
        first = CliRunner().invoke(app, ["requeue"])
        assert first.exit_code == 0, first.output
        assert f"{N_JOBS} job(s) re-published" in first.output and all(job_id in first.output for job_id in ids)
        assert _broker_size(server.url) == N_JOBS
        again = CliRunner().invoke(app, ["requeue"])
        assert again.exit_code == 0 and "0 job(s) re-published" in again.output, again.output
        assert _broker_size(server.url) == N_JOBS  # idempotent: the messages are there now
    finally:
        get_settings.cache_clear()

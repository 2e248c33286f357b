"""The job service with real parts: a Redis broker, `segpipe worker` processes, the HTTP API, and the
store on a SQLite file or a real PostgreSQL database. Nothing is mocked and nothing runs eagerly.

One `Service` per store backend lives for the whole session (building one costs a worker start and,
on its first job, the worker's torch import): its folder is the data root, its store is fresh (a new
SQLite file, or a new PostgreSQL database dropped at the end), its broker is a dedicated Redis
database (``SEGPIPE_TEST_INTEGRATION_REDIS_URL``, default ``redis://127.0.0.1:6379/11``, flushed at
start and end; only one Service exists at a time, so one Redis database suffices). Its "main" worker
serves every test; a test may kill it (`Service.replace_main`) or start extra workers, which the
`svc` fixture stops afterwards. `svc` also settles the test's jobs: anything still queued or running
is cancelled, and if that does not end it the workers are killed and a fresh main worker started.

Leases, heartbeats and Redis visibility are short (`LEASE_SECONDS` …) so that a killed worker's job
is taken over within seconds. Polls have generous timeouts (the machine is small and shared) and a
failing wait prints the job's error, traceback and the workers' log tails.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL

from segpipe.processes import stop_process
from segpipe.settings import Settings
from segpipe.stores import Stores
from tests.support.auth import ANNOTATOR, ENGINEER, TOKENS  # noqa: F401  (the integration tests import them here)
from tests.support.postgres import create_pg_database, drop_pg_database

REDIS_URL = os.environ.get("SEGPIPE_TEST_INTEGRATION_REDIS_URL", "redis://127.0.0.1:6379/11")
LEASE_SECONDS = 5.0
HEARTBEAT_SECONDS = 1.0
VISIBILITY_TIMEOUT = 5
RECONCILE_EVERY = 2.0
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
JOB_TIMEOUT = 240.0  # seconds a job may take on 2 shared cores before a wait gives up
UNET_TINY = {"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 16, 16]}


# -- specs ---------------------------------------------------------------------------------------------


def binary_train_spec(images: Path, annotations: Path, *, epochs: int, size: int = 32, **train: Any) -> dict[str, Any]:
    """A tiny binary U-Net job on a COCO folder (train = val: it only has to run, and to overfit a bit)."""
    source = {"images": str(images), "annotations": str(annotations)}
    return {
        "task": "binary",
        "data": {"train": source, "val": source, "num_workers": 0},
        "augment": {"preset": "none"},
        "model": dict(UNET_TINY),
        "train": {"device": "cpu", "seed": 0, "epochs": epochs, "batch_size": 2, "lr": 3e-3, "image_size": size,
                  "scheduler": "none", **train},
    }


def predict_spec(model: Path | str, images: Path, **predict: Any) -> dict[str, Any]:
    return {"model": str(model), "images": str(images), "device": "cpu",
            "predict": {"formats": ["png", "polygons"], "batch_size": 2, **predict}}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- worker processes ----------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """One ``python -m segpipe worker`` subprocess; its output goes to ``log``."""

    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""

    def wait_for_log(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if not self.alive():
                pytest.fail(f"worker {self.pid} exited ({self.proc.returncode}) before logging {needle!r}:\n"
                            f"{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"worker {self.pid} did not log {needle!r} within {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-job, its message unacked and its lease left to expire."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, grace: float = 15.0) -> None:
        """Terminate (Celery's warm shutdown), then kill if it has not exited after ``grace`` seconds."""
        stop_process(self.proc, grace)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


# -- the service ----------------------------------------------------------------------------------------


@dataclass
class Service:
    """Store + Redis broker + API client + worker processes, all configured by one `Settings`."""

    backend: str
    root: Path
    settings: Settings
    env: dict[str, str]
    stores: Stores
    celery: Any
    client: TestClient
    main: WorkerProcess | None = None
    workers: list[WorkerProcess] = field(default_factory=list)
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        return self.settings.data_roots[0]

    def data_dir(self, name: str) -> Path:
        """A new folder inside the data roots for one test's data."""
        path = self.data / f"{name}-{next(self._names)}"
        path.mkdir(parents=True)
        return path

    def job_dir(self, job_id: str) -> Path:
        return self.stores.artifacts.job_dir(job_id)

    # workers

    def start_worker(self, queues: str = "gpu,cpu", wait_ready: bool = True) -> WorkerProcess:
        log = self.root / "logs" / f"worker-{next(self._names)}.log"
        log.parent.mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "segpipe", "worker", "--queues", queues, "--loglevel", "info",
               "--reconcile-every", str(RECONCILE_EVERY)]
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=self.root)
        worker = WorkerProcess(proc, log)
        self.workers.append(worker)
        if wait_ready:
            worker.wait_for_log(" ready.", timeout=120)
        return worker

    def replace_main(self) -> WorkerProcess:
        """Start a new main worker (after the old one was killed)."""
        self.main = self.start_worker()
        return self.main

    def owner_of(self, worker: WorkerProcess) -> str:
        """The lease owner name the worker's jobs carry (``host:pid``, `workers.tasks.owner_name`)."""
        return f"{socket.gethostname()}:{worker.pid}"

    def stop_workers(self, keep_main: bool) -> None:
        for worker in list(self.workers):
            if keep_main and worker is self.main and worker.alive():
                continue
            worker.stop()
            self.workers.remove(worker)
        if not keep_main:
            self.main = None

    def logs(self) -> str:
        return "\n".join(f"--- worker {w.pid} ({w.log.name}, {'alive' if w.alive() else 'exited'}):\n{w.tail()}"
                         for w in self.workers)

    # jobs over HTTP

    def submit(self, kind: str, config: dict[str, Any], **extra: Any) -> str:
        response = self.client.post("/jobs", json={"kind": kind, "config": config, **extra}, headers=ENGINEER)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/jobs/{job_id}", headers=ENGINEER)
        assert response.status_code == 200, response.text
        return response.json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        response = self.client.post(f"/jobs/{job_id}/cancel", headers=ENGINEER)
        assert response.status_code == 200, response.text
        return response.json()

    def explain(self, job: dict[str, Any]) -> str:
        return (f"job {job['id']} ({job['kind']}) is {job['state']}, attempts {job['attempts']}, "
                f"progress {job['progress']}\nerror: {job.get('error')}\ntraceback:\n{job.get('traceback')}\n"
                f"{self.logs()}")

    def wait_until(self, job_id: str, ready: Callable[[dict[str, Any]], bool], what: str,
                   timeout: float = JOB_TIMEOUT, poll: float = 0.2) -> dict[str, Any]:
        """Poll ``GET /jobs/{id}`` until ``ready(job)``; fails (with the job's story) on timeout, or if the
        job ends before it is ready."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if ready(job):
                return job
            if job["state"] in TERMINAL:
                pytest.fail(f"job ended before {what}:\n{self.explain(job)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout:.0f} s:\n{self.explain(job)}")
            time.sleep(poll)

    def wait_done(self, job_id: str, expect: str = "succeeded", timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
        """Wait for the job to end; fails unless it ended ``expect``."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in TERMINAL:
                if job["state"] != expect:
                    pytest.fail(f"expected {expect}:\n{self.explain(job)}")
                return job
            if time.monotonic() > deadline:
                pytest.fail(f"job not finished within {timeout:.0f} s:\n{self.explain(job)}")
            time.sleep(0.25)

    # between tests

    def settle(self, timeout: float = 90.0) -> None:
        """End every job still queued or running, so the next test starts with an idle worker."""
        from segpipe import service as service_mod

        if self.main is None or not self.main.alive():
            self.replace_main()  # someone must stop (or re-queue and cancel) what a dead worker held
        open_jobs = [j.id for state in ("queued", "running") for j in self.stores.jobs.list(state=state, limit=500)[0]]
        for job_id in open_jobs:
            service_mod.cancel(self.stores, self.celery, job_id)
        deadline = time.monotonic() + timeout
        while open_jobs and time.monotonic() < deadline:
            open_jobs = [j for j in open_jobs if self.stores.jobs.get(j).state not in TERMINAL]
            time.sleep(0.5)
        if open_jobs:  # a worker that does not stop: start over with a fresh one
            self.stop_workers(keep_main=False)
            for job_id in open_jobs:
                self.stores.jobs.mark_failed(job_id, "integration test teardown: the job did not stop")
            self.replace_main()


def _service_env(settings: Settings, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGPIPE_")}
    env.update(
        SEGPIPE_HOME=str(settings.home),
        SEGPIPE_DATABASE_URL=db_url,
        SEGPIPE_BROKER_URL=REDIS_URL,
        SEGPIPE_DATA_ROOTS=",".join(str(p) for p in settings.data_roots),
        SEGPIPE_ARTIFACT_ROOT=str(settings.artifacts),
        SEGPIPE_LEASE_SECONDS=str(LEASE_SECONDS),
        SEGPIPE_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
        SEGPIPE_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
        PYTHONUNBUFFERED="1",
        # One intra-op thread: on a few shared cores, OpenMP's spinning threads fight each other and
        # every other process (a tiny U-Net step went from ~0.03 s to ~1 s with 2 threads under load).
        OMP_NUM_THREADS=os.environ.get("SEGPIPE_TEST_WORKER_THREADS", "1"),
    )
    # the worker imports `workers.*` from the repository, wherever its working directory is
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc}); set SEGPIPE_TEST_INTEGRATION_REDIS_URL")
    yield client
    client.close()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A binary U-Net run folder (best.pt, config, categories) trained once, in this process, on 32-px
    shapes; predict jobs load it by path. Trained long enough that it predicts foreground."""
    import torch

    from segpipe.config import from_dict
    from segpipe.data.synthetic import make_shapes_coco
    from segpipe.engine.runner import train

    root = tmp_path_factory.mktemp("tiny-model")
    coco = make_shapes_coco(root / "shapes", n_images=8, size=(32, 32), seed=2)
    spec = binary_train_spec(coco.images, coco.annotations, epochs=10)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers (see `_service_env`); restored for the tests after
    try:
        result = train(from_dict({**spec, "output_dir": str(root / "run")}), show_progress=False)
    finally:
        torch.set_num_threads(threads)
    assert result.best_checkpoint is not None
    return result.run_dir


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql")])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_client: redis.Redis,
    tiny_model: Path,
) -> Iterator[Service]:
    """The service on one store backend (PostgreSQL: a database of its own, dropped at the end)."""
    from segpipe.api.app import create_app
    from workers.celery_app import create_app as create_celery

    backend = request.param
    root = tmp_path_factory.mktemp(f"service-{backend}")
    pg_url: URL | None = None
    if backend == "postgresql":
        pg_url = create_pg_database()
        db_url = pg_url.render_as_string(hide_password=False)
    else:
        db_url = f"sqlite:///{root / 'segpipe.db'}"
    (root / "data").mkdir()
    settings = Settings(
        home=root / "home", database_url=db_url, broker_url=REDIS_URL,
        data_roots=[root / "data", tiny_model.parent], artifact_root=root / "artifacts",
        tokens=dict(TOKENS), auth="on", lease_seconds=LEASE_SECONDS, heartbeat_seconds=HEARTBEAT_SECONDS,
        visibility_timeout=VISIBILITY_TIMEOUT,
    )  # fmt: skip
    redis_client.flushdb()
    stores = Stores.from_settings(settings)  # migrated here, before any worker opens it
    celery = create_celery(settings)
    client = TestClient(create_app(settings, stores, celery))
    client.__enter__()
    svc = Service(backend, root, settings, _service_env(settings, db_url), stores, celery, client)
    try:
        svc.replace_main()
        yield svc
    finally:
        svc.stop_workers(keep_main=False)
        client.__exit__(None, None, None)
        celery.close()
        stores.close()
        redis_client.flushdb()
        if pg_url is not None:
            drop_pg_database(pg_url)


@pytest.fixture
def svc(service: Service) -> Iterator[Service]:
    """The session's service for one test: a live main worker before, extra workers stopped and open
    jobs settled after."""
    if service.main is None or not service.main.alive():
        service.replace_main()
    yield service
    service.settle()
    service.stop_workers(keep_main=True)


PG_ONLY = pytest.mark.parametrize("service", ["postgresql"], indirect=True)

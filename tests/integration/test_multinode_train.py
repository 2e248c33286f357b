"""A training across hosts through the queue: ``resources.nodes`` gang-scheduled over `segpipe worker`
processes that share nothing but the services — each has its own home (cache, artifact mirror); the
data and the artifacts live in object storage (a real S3-API server), the store in PostgreSQL, the
broker in Redis. The c10d rendezvous is hosted by the job's first node on loopback.

- two nodes train one job and register exactly one model version;
- a node killed mid-epoch: the agents restart the ranks, a fresh worker takes the node's row and joins,
  training resumes from the checkpoint, and the job still ends with one model version;
- a node that no worker claims fails the job within ``join_timeout`` with that reason, and the node
  another worker had claimed is released.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from segpipe.data.synthetic import make_class_folders
from segpipe.settings import Settings
from segpipe.stores import Stores
from tests.integration.conftest import (
    ENGINEER,
    HEARTBEAT_SECONDS,
    LEASE_SECONDS,
    TERMINAL,
    TOKENS,
    VISIBILITY_TIMEOUT,
    WorkerProcess,
    _service_env,
)
from tests.integration.test_distributed_train import CNN
from tests.integration.test_object_storage import _start_worker
from tests.support.postgres import create_pg_database, drop_pg_database
from tests.support.s3_server import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# its own Redis database: no worker another module started may take its jobs, nor it theirs
REDIS_URL = os.environ.get("SEGPIPE_TEST_MULTINODE_REDIS_URL", "redis://127.0.0.1:6379/12")
BUCKET = "segpipe-multinode"


@dataclass
class Cluster:
    root: Path
    client: TestClient
    stores: Stores
    env: dict[str, str]
    data: str  # the dataset's URI
    workers: list[WorkerProcess] = field(default_factory=list)
    _count: int = 0

    def worker(self) -> WorkerProcess:
        self._count += 1
        worker = _start_worker(self.root, self.env, f"w{self._count}")
        self.workers.append(worker)
        return worker

    def submit(self, config: dict[str, Any]) -> str:
        r = self.client.post("/jobs", json={"kind": "train", "config": config}, headers=ENGINEER)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.client.get(f"/jobs/{job_id}", headers=ENGINEER).json()

    def story(self, job_id: str) -> str:
        children = [(c.id, c.state, c.lease_owner, c.error) for c in self.stores.shards.children(job_id)]
        return f"{self.job(job_id)}\nnodes: {children}\n" + "\n".join(
            f"--- {w.log.name} ({'alive' if w.alive() else 'exited'}):\n{w.tail(60)}" for w in self.workers)

    def wait(self, job_id: str, ready: Any, what: str, timeout: float = 400) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if ready(job):
                return job
            assert job["state"] not in TERMINAL, f"ended before {what}:\n{self.story(job_id)}"
            assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s:\n{self.story(job_id)}"
            time.sleep(0.3)

    def wait_end(self, job_id: str, timeout: float = 400) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (job := self.job(job_id))["state"] not in TERMINAL:
            assert time.monotonic() < deadline, f"not ended within {timeout:.0f} s:\n{self.story(job_id)}"
            time.sleep(0.3)
        return job

    def worker_holding(self, job_id: str) -> WorkerProcess:
        owner = self.stores.jobs.get(job_id).lease_owner or ""
        pid = int(owner.rpartition(":")[2])
        return next(w for w in self.workers if w.pid == pid)

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()


@pytest.fixture
def cluster(s3_server: S3Server, tmp_path: Path) -> Iterator[Cluster]:
    import s3fs

    broker = redis.Redis.from_url(REDIS_URL)
    try:
        broker.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc}); set SEGPIPE_TEST_REDIS_URL")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)  # a fresh listing cache: other modules share the server
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    local = make_class_folders(tmp_path / "upload", per_class=8, size=(32, 32))  # 24 images
    prefix = f"{BUCKET}/data/{tmp_path.name}"
    fs.put(str(local) + "/", f"{prefix}/shapes/", recursive=True)
    shutil.rmtree(local)
    pg_url = create_pg_database()
    db_url = pg_url.render_as_string(hide_password=False)
    settings = Settings(home=tmp_path / "home-api", database_url=db_url, broker_url=REDIS_URL,
                        data_roots=[f"s3://{BUCKET}/data"], artifact_root=f"s3://{BUCKET}/artifacts",
                        tokens=dict(TOKENS), auth="on", lease_seconds=LEASE_SECONDS,
                        heartbeat_seconds=HEARTBEAT_SECONDS, visibility_timeout=VISIBILITY_TIMEOUT)
    broker.flushdb()
    from segpipe.api.app import create_app
    from workers.celery_app import create_app as create_celery

    stores = Stores.from_settings(settings)
    celery = create_celery(settings)
    env = {**_service_env(settings, db_url), **s3_server.env, "SEGPIPE_BROKER_URL": REDIS_URL,
           "SEGPIPE_ADVERTISE_HOST": "127.0.0.1"}
    try:
        with TestClient(create_app(settings, stores, celery)) as client:
            cluster = Cluster(tmp_path, client, stores, env, f"s3://{prefix}/shapes")
            try:
                yield cluster
            finally:
                cluster.stop_workers()
    finally:
        celery.close()
        stores.close()
        broker.flushdb()
        drop_pg_database(pg_url)


def spec(data: str, *, nodes: int, epochs: int, join_timeout: float = 120, **train: Any) -> dict[str, Any]:
    source = {"root": data}
    return {
        "name": "multinode",
        "task": "classification",
        "data": {"train": source, "val": source, "num_workers": 0},
        "augment": {"preset": "none"},
        "model": dict(CNN),
        "train": {"device": "cpu", "seed": 0, "epochs": epochs, "batch_size": 2, "lr": 3e-3, "image_size": 32,
                  "scheduler": "none", "threads": 1, **train},
        "resources": {"nodes": nodes, "gpus_per_node": 1, "join_timeout": join_timeout, "max_restarts": 2},
    }


def test_two_nodes_train_one_job_and_survive_a_killed_node(cluster: Cluster) -> None:
    cluster.worker(), cluster.worker()
    job_id = cluster.submit(spec(cluster.data, nodes=2, epochs=4))
    # both nodes claimed, and training has passed the first epoch's checkpoint into the second epoch
    job = cluster.wait(job_id, lambda j: (j["progress"].get("global_step") or 0) >= 8, "steps into epoch 2")
    assert job["progress"]["world_size"] == 2
    [node] = [c for c in cluster.stores.shards.children(job_id) if c.kind == "train-node"]
    assert node.state == "running"
    follower = cluster.worker_holding(node.id)
    assert follower is not cluster.worker_holding(job_id)
    follower.kill()  # SIGKILL mid-epoch: its agent and rank die with it, its row's lease expires
    cluster.worker()  # a fresh host (empty home) takes the node's row and joins the rendezvous again

    job = cluster.wait_end(job_id)
    assert job["state"] == "succeeded", cluster.story(job_id)
    assert job["progress"]["epoch"] == 4 and job["progress"]["model"] == "multinode@1", job["progress"]
    assert len(cluster.stores.versions.list("multinode")) == 1
    import s3fs

    # the agents restarted the ranks once, and they resumed from a checkpoint instead of starting over
    agent_log = s3fs.S3FileSystem().cat(f"{BUCKET}/artifacts/jobs/{job_id}/elastic.log").decode()
    assert "restart 1) starts" in agent_log and "resumes from epoch" in agent_log, agent_log[-4000:]
    node_rows = [c for c in cluster.stores.shards.children(job_id) if c.kind == "train-node"]
    assert [c.state for c in node_rows] == ["succeeded"] and node_rows[0].attempts == 2, cluster.story(job_id)


def test_a_node_nobody_claims_fails_the_job_and_releases_the_others(cluster: Cluster) -> None:
    cluster.worker(), cluster.worker()  # the first node and one more; the third node never comes
    job_id = cluster.submit(spec(cluster.data, nodes=3, epochs=1, join_timeout=10))
    job = cluster.wait_end(job_id, timeout=120)
    assert job["state"] == "failed", cluster.story(job_id)
    assert "not claimed by any worker within 10 s (resources.join_timeout)" in job["error"], job["error"]
    nodes = {c.id[-1]: c for c in cluster.stores.shards.children(job_id) if c.kind == "train-node"}
    assert set(nodes) == {"1", "2"}
    deadline = time.monotonic() + 60
    while any(c.state not in TERMINAL for c in nodes.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
        nodes = {c.id[-1]: c for c in cluster.stores.shards.children(job_id) if c.kind == "train-node"}
    assert all(c.state == "cancelled" for c in nodes.values()), cluster.story(job_id)

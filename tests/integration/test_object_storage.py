"""Beyond one machine: data and artifacts in object storage (a real S3-API server), PostgreSQL, Redis.

Worker A trains on a COCO dataset that exists only in ``s3://``; its home folder (its cache and its
mirror of the artifact root) is then deleted. Workers B and C, each with an empty home of its own,
run a sharded predict job with A's model over the same ``s3://`` images. The masks come back
through the HTTP API, and the job's files are in the bucket. No folder is shared between the
workers: the dataset's local copy is deleted once uploaded, and each worker's home is its own.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from segpipe.data.synthetic import make_shapes_coco
from segpipe.settings import Settings
from segpipe.stores import Stores
from tests.integration.conftest import (
    ANNOTATOR,
    ENGINEER,
    HEARTBEAT_SECONDS,
    LEASE_SECONDS,
    TERMINAL,
    TOKENS,
    VISIBILITY_TIMEOUT,
    WorkerProcess,
    _service_env,
    binary_train_spec,
)
from tests.support.postgres import create_pg_database, drop_pg_database
from tests.support.s3_server import S3Server

# A broker of its own: the session's `service` workers listen on the integration Redis database.
REDIS_URL = __import__("os").environ.get("SEGPIPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
BUCKET = "segpipe-it"
N_IMAGES = 24


def _wait(client: TestClient, job_id: str, workers: list[WorkerProcess], timeout: float = 300) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}", headers=ENGINEER).json()
        if job["state"] in TERMINAL:
            assert job["state"] == "succeeded", (job, "\n".join(w.tail() for w in workers))
            return job
        assert time.monotonic() < deadline, (job, "\n".join(w.tail() for w in workers))
        time.sleep(0.3)


def _start_worker(root: Path, env: dict[str, str], name: str) -> WorkerProcess:
    home = root / f"home-{name}"
    home.mkdir()
    log = root / f"worker-{name}.log"
    cmd = [sys.executable, "-m", "segpipe", "worker", "--queues", "gpu,cpu", "--reconcile-every", "2"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env={**env, "SEGPIPE_HOME": str(home)}, stdout=out,
                                stderr=subprocess.STDOUT, cwd=home)
    worker = WorkerProcess(proc, log)
    worker.wait_for_log(" ready.", timeout=120)
    return worker


@dataclass
class Service:
    """The API (a `TestClient`) on PostgreSQL and Redis with an object-store artifact root; the workers
    a test starts, each with a home of its own (`start`), are stopped when the test ends."""

    client: TestClient
    stores: Stores
    env: dict[str, str]
    root: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def start(self, name: str) -> WorkerProcess:
        worker = _start_worker(self.root, self.env, name)
        self.workers.append(worker)
        return worker

    def wait(self, job_id: str) -> dict:
        return _wait(self.client, job_id, self.workers)


def _bucket() -> Any:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)  # a fresh listing cache: other modules share the server
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    return fs


@contextmanager
def _service(s3_server: S3Server, tmp_path: Path, *, data_roots: list[Any], artifact_root: str) -> Iterator[Service]:
    """`Service` with ``data_roots`` and ``artifact_root``; skips when Redis is unreachable."""
    try:
        broker = redis.Redis.from_url(REDIS_URL)
        broker.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc}); set SEGPIPE_TEST_REDIS_URL")
    pg_url = create_pg_database()
    db_url = pg_url.render_as_string(hide_password=False)
    settings = Settings(home=tmp_path / "home-api", database_url=db_url, broker_url=REDIS_URL,
                        data_roots=data_roots, artifact_root=artifact_root, tokens=dict(TOKENS), auth="on",
                        lease_seconds=LEASE_SECONDS, heartbeat_seconds=HEARTBEAT_SECONDS,
                        visibility_timeout=VISIBILITY_TIMEOUT)
    broker.flushdb()
    from segpipe.api.app import create_app
    from workers.celery_app import create_app as create_celery

    stores = Stores.from_settings(settings)
    celery = create_celery(settings)
    env = {**_service_env(settings, db_url), **s3_server.env, "SEGPIPE_BROKER_URL": REDIS_URL}
    service: Service | None = None
    try:
        with TestClient(create_app(settings, stores, celery)) as client:
            service = Service(client, stores, env, tmp_path)
            yield service
    finally:
        for worker in service.workers if service is not None else []:
            worker.stop()
        celery.close()
        stores.close()
        broker.flushdb()
        drop_pg_database(pg_url)


@pytest.mark.integration
def test_train_on_one_worker_predict_on_two_others_through_s3(s3_server: S3Server, tmp_path: Path) -> None:
    fs = _bucket()
    local = make_shapes_coco(tmp_path / "upload", n_images=N_IMAGES, size=(32, 32), seed=4, crowd=False)
    fs.put(str(local.images) + "/", f"{BUCKET}/data/shapes/images/", recursive=True)
    fs.put_file(str(local.annotations), f"{BUCKET}/data/shapes/annotations.json")
    keys = sorted(p.stem for p in local.images.glob("*.png"))
    shutil.rmtree(tmp_path / "upload")  # from here on the dataset exists only in the bucket

    with _service(s3_server, tmp_path, data_roots=[f"s3://{BUCKET}/data"],
                  artifact_root=f"s3://{BUCKET}/artifacts") as service:
        client, stores, workers = service.client, service.stores, service.workers
        worker_a = service.start("a")
        data = f"s3://{BUCKET}/data/shapes"
        train = binary_train_spec(f"{data}/images", f"{data}/annotations.json", epochs=3)
        r = client.post("/jobs", json={"kind": "train", "config": train}, headers=ENGINEER)
        assert r.status_code == 201, r.text
        train_id = r.json()["id"]
        trained = service.wait(train_id)
        assert "best.pt" in trained["artifacts"]
        assert fs.exists(f"{BUCKET}/artifacts/jobs/{train_id}/run/best.pt")
        worker_a.stop()
        shutil.rmtree(tmp_path / "home-a")  # worker A's disk is gone: only the bucket has the model

        service.start("b")
        service.start("c")
        predict = {"model": f"job:{train_id}", "images": f"{data}/images", "device": "cpu",
                   "predict": {"formats": ["png"], "batch_size": 2, "shard_size": 8}}
        r = client.post("/jobs", json={"kind": "predict", "config": predict}, headers=ENGINEER)
        assert r.status_code == 201, r.text
        predict_id = r.json()["id"]
        done = service.wait(predict_id)
        assert done["progress"]["images_done"] == N_IMAGES and done["progress"]["shards"] == 3

        shards = stores.shards.children(predict_id)
        assert {s.state for s in shards} == {"succeeded"}
        assert {s.worker.split(":")[1] for s in shards} <= {str(w.pid) for w in workers[1:]}
        # both new workers downloaded the model into their own, previously empty, homes
        for name in ("b", "c"):
            cached = list((tmp_path / f"home-{name}" / "cache" / "downloads").rglob("best.pt"))
            ran = any(s.worker.endswith(f":{workers[1 + 'bc'.index(name)].pid}") for s in shards)
            assert bool(cached) == ran

        # masks through the API (from the store), files in the bucket
        for key in keys[:3]:
            r = client.get(f"/images/{key}/masks", params={"job": predict_id, "format": "png"}, headers=ANNOTATOR)
            assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
            r = client.get(f"/images/{key}/masks", params={"job": predict_id}, headers=ANNOTATOR)
            assert r.status_code == 200, r.text
        r = client.get(f"/jobs/{predict_id}/results", headers=ANNOTATOR)
        assert r.status_code == 200 and isinstance(r.json(), list)
        remote_masks = fs.find(f"{BUCKET}/artifacts/jobs/{predict_id}/predictions/masks")
        assert sorted(Path(p).stem for p in remote_masks) == keys
        assert fs.exists(f"{BUCKET}/artifacts/jobs/{predict_id}/predictions/predictions.json")
        assert done["artifacts"]["masks"] == "predictions/masks"
        # artifact files through the API host, which wrote none of them: from the bucket via its cache
        r = client.get(f"/jobs/{predict_id}/artifacts/predictions.json", headers=ANNOTATOR)
        assert r.status_code == 200 and isinstance(r.json(), list), r.text
        r = client.get(f"/jobs/{predict_id}/artifacts/masks", headers=ANNOTATOR)
        assert r.status_code == 200 and len(r.json()["files"]) == N_IMAGES, r.text
        r = client.get(f"/jobs/{train_id}/artifacts", headers=ANNOTATOR)
        listed = {a["name"]: a for a in r.json()["artifacts"]}
        assert listed["best.pt"]["kind"] == "file" and listed["best.pt"]["bytes"] > 0
        r = client.get(f"/jobs/{train_id}/artifacts/best.pt", headers=ANNOTATOR)
        assert r.status_code == 200 and len(r.content) == listed["best.pt"]["bytes"]

        # a path outside the bucket's data prefix is refused, whatever its spelling
        for outside in (f"s3://{BUCKET}/artifacts/x", f"s3://{BUCKET}/data/../secret", "s3://other-bucket/data"):
            bad = {**predict, "images": outside}
            r = client.post("/jobs", json={"kind": "predict", "config": bad}, headers=ENGINEER)
            assert r.status_code in (403, 422), r.text


@pytest.mark.integration
def test_a_training_killed_on_one_host_resumes_on_another_from_the_object_store(
    s3_server: S3Server, tmp_path: Path,
) -> None:
    import time

    import torch

    fs = _bucket()
    local = make_shapes_coco(tmp_path / "upload", n_images=8, size=(32, 32), seed=5)
    fs.put(str(local.images) + "/", f"{BUCKET}/resume/shapes/images/", recursive=True)
    fs.put_file(str(local.annotations), f"{BUCKET}/resume/shapes/annotations.json")
    shutil.rmtree(tmp_path / "upload")

    epochs = 6
    with _service(s3_server, tmp_path, data_roots=[f"s3://{BUCKET}/resume"],
                  artifact_root=f"s3://{BUCKET}/artifacts-resume") as service:
        client = service.client
        worker_a = service.start("a")
        data = f"s3://{BUCKET}/resume/shapes"
        spec = binary_train_spec(f"{data}/images", f"{data}/annotations.json", epochs=epochs)
        r = client.post("/jobs", json={"kind": "train", "config": spec}, headers=ENGINEER)
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        remote_last = f"{BUCKET}/artifacts-resume/jobs/{job_id}/run/last.pt"
        deadline = time.monotonic() + 240
        while not (fs.exists(remote_last) and (client.get(f"/jobs/{job_id}", headers=ENGINEER).json()
                                               ["progress"].get("epoch") or 0) >= 2):
            assert time.monotonic() < deadline and worker_a.alive(), worker_a.tail()
            fs.invalidate_cache()
            time.sleep(0.2)
        worker_a.kill()
        shutil.rmtree(tmp_path / "home-a")  # host A is gone, with its disk
        with fs.open(remote_last, "rb") as f:
            uploaded_epoch = torch.load(f, map_location="cpu", weights_only=True)["train_state"]["epoch"]
        assert 1 <= uploaded_epoch < epochs

        service.start("b")
        done = service.wait(job_id)
        assert done["attempts"] == 2 and done["progress"]["epoch"] == epochs
        log = service.workers[1].text()
        assert "run folder restored" in log, service.workers[1].tail()
        fs.invalidate_cache()
        with fs.open(f"{BUCKET}/artifacts-resume/jobs/{job_id}/run/metrics.jsonl", "r") as f:
            resumed = [__import__("json").loads(line) for line in f.read().splitlines() if line.strip()]
        train_epochs = [r["epoch"] for r in resumed if r["split"] == "train_epoch"]
        # epochs up to the uploaded checkpoint ran once (on A), the rest once (on B)
        assert train_epochs[-(epochs - uploaded_epoch):] == list(range(uploaded_epoch + 1, epochs + 1))


def _cvat_coco_archive(folder: Path, out: Path) -> list[str]:
    """A CVAT "COCO 1.0" export (annotations/instances_default.json + images/) of a shapes dataset."""
    import zipfile

    local = make_shapes_coco(folder, n_images=8, size=(32, 32), seed=7, crowd=False)
    with zipfile.ZipFile(out, "w") as archive:
        archive.write(local.annotations, "annotations/instances_default.json")
        for image in sorted(local.images.glob("*.png")):
            archive.write(image, f"images/{image.name}")
    return sorted(p.name for p in local.images.glob("*.png"))


@pytest.mark.integration
def test_a_snapshot_pulled_into_the_object_store_trains_on_a_worker_of_another_host(
    s3_server: S3Server, tmp_path: Path,
) -> None:
    """The API host pulls a CVAT export into a snapshot in ``s3://``; a worker with a home of its own
    (nothing shared but the bucket) trains from the snapshot's URIs, downloading the same bytes."""
    fs = _bucket()
    (tmp_path / "data").mkdir()
    names = _cvat_coco_archive(tmp_path / "export", tmp_path / "data" / "task.zip")
    with _service(s3_server, tmp_path, data_roots=[tmp_path / "data"],
                  artifact_root=f"s3://{BUCKET}/snapshot-artifacts") as service:
        client = service.client
        r = client.post("/snapshots", json={"format": "cvat-coco", "source": "task.zip"}, headers=ENGINEER)
        assert r.status_code == 201, r.text
        snapshot = r.json()
        assert snapshot["images"] == len(names)
        where = f"s3://{BUCKET}/snapshot-artifacts/snapshots/{snapshot['id']}"
        assert fs.exists(f"{where}/snapshot.json".removeprefix("s3://"))
        r = client.get("/snapshots", headers=ANNOTATOR)
        assert [s["id"] for s in r.json()] == [snapshot["id"]]
        shutil.rmtree(tmp_path / "home-api" / "cache")  # the API host's copy is gone: only the bucket has it

        service.start("w")
        train = binary_train_spec(f"{where}/images", f"{where}/annotations.json", epochs=1)
        r = client.post("/jobs", json={"kind": "train", "config": train}, headers=ENGINEER)
        assert r.status_code == 201, r.text
        trained = service.wait(r.json()["id"])
        assert "best.pt" in trained["artifacts"]
        downloaded = sorted(p.name for p in (tmp_path / "home-w" / "cache" / "downloads").rglob("*.png"))
        assert downloaded == names  # the worker read the snapshot's images from the bucket

        outside = binary_train_spec(f"s3://{BUCKET}/snapshot-artifacts/jobs/x", f"{where}/annotations.json",
                                    epochs=1)
        r = client.post("/jobs", json={"kind": "train", "config": outside}, headers=ENGINEER)
        assert r.status_code in (403, 422), r.text  # the rest of the artifact root is not data

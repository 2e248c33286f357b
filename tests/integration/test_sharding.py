"""Sharded prediction with real parts: three `segpipe worker` processes, Redis, PostgreSQL.

One 600-image predict job is split into shards that the three workers take from the queue; one worker
is SIGKILLed while it is in the middle of a shard. Its shard's lease expires, the reconciler (or a
Redis redelivery) hands the shard to another worker, which skips what the dead one stored. At the end
every image is stored exactly once, the parent job succeeded, and its progress as seen through the API
never went backwards."""

from __future__ import annotations

import csv
import json
import shutil
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from segpipe.data.synthetic import make_shapes_coco
from segpipe.jobs.exports import export_job
from segpipe.stores.models import Prediction, PredictionImage
from tests.integration.conftest import ANNOTATOR, PG_ONLY, TERMINAL, Service, WorkerProcess, predict_spec

N_IMAGES = 600
SHARD_SIZE = 100


def _victim(svc: Service, job_id: str) -> tuple[WorkerProcess, str] | None:
    """A live worker that is running a shard of `job_id` and has stored a few of its images."""
    owners = {svc.owner_of(w): w for w in svc.workers if w.alive()}
    for child in svc.stores.shards.children(job_id):
        done = (child.progress or {}).get("images_done", 0)
        if child.state == "running" and child.lease_owner in owners and 5 <= done < SHARD_SIZE - 20:
            return owners[child.lease_owner], child.id
    return None


@pytest.mark.integration
@PG_ONLY
def test_three_workers_drain_one_predict_job_and_survive_a_kill(svc: Service, tiny_model) -> None:
    images = make_shapes_coco(svc.data_dir("shards"), n_images=N_IMAGES, size=(32, 32), seed=8, crowd=False).images
    keys = sorted(p.stem for p in images.glob("*.png"))
    svc.start_worker()
    svc.start_worker()
    spec = predict_spec(tiny_model, images, batch_size=4, formats=["png", "csv"], shard_size=SHARD_SIZE)
    job_id = svc.submit("predict", spec)

    seen: list[int] = []
    killed: tuple[WorkerProcess, str] | None = None
    deadline = time.monotonic() + 300
    while True:
        job = svc.job(job_id)
        seen.append(int(job["progress"].get("images_done") or 0))
        if job["state"] in TERMINAL:
            break
        if killed is None:
            killed = _victim(svc, job_id)
            if killed is not None:
                killed[0].kill()
        assert time.monotonic() < deadline, svc.explain(job)
        time.sleep(0.1)

    assert job["state"] == "succeeded", svc.explain(job)
    assert killed is not None, "no worker was caught mid-shard"
    assert seen == sorted(seen), f"progress went backwards: {seen}"
    assert job["progress"]["images_done"] == job["progress"]["images_total"] == N_IMAGES
    assert job["progress"]["shards"] == job["progress"]["shards_done"] == N_IMAGES // SHARD_SIZE

    children = svc.stores.shards.children(job_id)
    assert len(children) == N_IMAGES // SHARD_SIZE and all(c.state == "succeeded" for c in children)
    retried = next(c for c in children if c.id == killed[1])
    assert retried.attempts == 2 and retried.worker != svc.owner_of(killed[0])
    assert len({c.worker for c in children}) >= 2, "the shards did not spread over the workers"

    with svc.stores.db.read() as session:
        markers = dict(session.execute(select(PredictionImage.image_key, PredictionImage.instances)
                                       .where(PredictionImage.job_id == job_id)).all())
        rows = dict(session.execute(select(Prediction.image_key, func.count())
                                    .where(Prediction.job_id == job_id).group_by(Prediction.image_key)).all())
    assert sorted(markers) == keys  # each of the 600 images marked once (the marker is a primary key)
    assert all(rows.get(k, 0) == n for k, n in markers.items())

    # the exports cover every shard, from the store: COCO results, the csv table, a mask per image
    folder = svc.job_dir(job_id) / "predictions"
    results = json.loads((folder / "predictions.json").read_text())
    assert Counter(str(r["image_id"]) for r in results) == Counter({k: n for k, n in rows.items() if n})
    with (folder / "predictions.csv").open(newline="") as f:
        table = Counter(row["file"] for row in csv.DictReader(f))
    assert table and all(0 < n <= rows.get(k, 0) for k, n in table.items())  # rows over the score threshold
    assert sorted(p.stem for p in (folder / "masks").glob("*.png")) == keys
    # the shards wrote the masks, the killed one's again whole: each the store's, byte for byte
    expected = export_job(svc.stores, job_id, svc.root / "expected-masks", ["png"])["png"]
    assert len(expected) == N_IMAGES
    assert all((folder / "masks" / p.name).read_bytes() == p.read_bytes() for p in expected)
    # the API serves the masks of a sharded job like any other
    r = svc.client.get(f"/images/{keys[0]}/masks", params={"job": job_id, "format": "png"}, headers=ANNOTATOR)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
    r = svc.client.get(f"/jobs/{job_id}/results", headers=ANNOTATOR)
    assert r.status_code == 200 and len(r.json()) == len(results)


@pytest.mark.integration
@PG_ONLY
def test_cancelling_a_sharded_job_cancels_its_shards(svc: Service, tiny_model) -> None:
    images = make_shapes_coco(svc.data_dir("cancel-shards"), n_images=60, size=(32, 32), seed=9, crowd=False).images
    job_id = svc.submit("predict", predict_spec(tiny_model, images, batch_size=1, formats=["png"], shard_size=10))
    svc.wait_until(job_id, lambda j: (j["progress"].get("shards") or 0) > 0, "the split")
    svc.cancel(job_id)
    job = svc.wait_done(job_id, expect="cancelled", timeout=120)
    children = svc.stores.shards.children(job_id)
    assert len(children) == 6 and all(c.state == "cancelled" or c.state == "succeeded" for c in children)
    assert any(c.state == "cancelled" for c in children)
    assert job["progress"]["images_done"] < 60
    # shards are listed when asked for by kind, each naming its parent; the default listing shows the parent only
    listed = svc.client.get("/jobs", params={"kind": "predict-shard", "limit": 200}, headers=ANNOTATOR).json()["items"]
    assert sorted(j["id"] for j in listed if j["parent_id"] == job_id) == [c.id for c in children]
    default = svc.client.get("/jobs", params={"limit": 200}, headers=ANNOTATOR).json()["items"]
    assert job_id in {j["id"] for j in default} and not any(j["parent_id"] for j in default)


@pytest.mark.integration
@PG_ONLY
def test_failed_shards_fail_the_parent_with_their_reason(svc: Service) -> None:
    """A shard fails on what the parent's split cannot see: here the model, a file that exists (submit checks
    that) but is no checkpoint. (An unreadable image no longer fails a shard: it is skipped and reported,
    tests/integration/test_failed_images.py.)"""
    images = make_shapes_coco(svc.data_dir("bad-shard"), n_images=30, size=(32, 32), seed=10, crowd=False).images
    model = svc.data_dir("bad-model") / "best.pt"
    model.write_bytes(b"not a checkpoint")
    job_id = svc.submit("predict", predict_spec(model, images, batch_size=2, formats=["png"], shard_size=10))
    job = svc.wait_done(job_id, expect="failed")
    assert job["error"].startswith("3 of 3 shards failed; shard 0 ") and "not a loadable checkpoint" in job["error"], \
        job["error"]
    children = svc.stores.shards.children(job_id)
    assert [c.state for c in children] == ["failed", "failed", "failed"]


@pytest.mark.integration
@PG_ONLY
def test_an_unreadable_image_in_a_shard_is_reported_by_the_parent(svc: Service, tiny_model) -> None:
    images = make_shapes_coco(svc.data_dir("bad-image-shard"), n_images=30, size=(32, 32), seed=10, crowd=False).images
    broken = sorted(images.glob("*.png"))[25]
    broken.write_bytes(b"not a png")
    job_id = svc.submit("predict", predict_spec(tiny_model, images, batch_size=2, formats=["png"], shard_size=10))
    job = svc.wait_done(job_id)
    assert [c.state for c in svc.stores.shards.children(job_id)] == ["succeeded"] * 3
    assert job["progress"]["images_failed"] == 1 and svc.stores.predictions.count_images(job_id) == 29
    (failed,) = job["progress"]["failed_images"]
    assert failed["image"] == broken.stem and failed["reason"].startswith("cannot decode image")


ALL_FORMATS = ["png", "polygons", "overlay", "coco", "coco-results", "cvat-mask", "label-studio", "csv"]


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a predict job's export, by relative name; a zip by its members (zip headers carry the
    time they were written); summary.json without the job id."""
    files: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if not path.is_file():
            continue
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                files.update({f"{name}!{member}": archive.read(member) for member in sorted(archive.namelist())})
        elif name == "summary.json":
            summary = json.loads(path.read_text())
            summary.pop("job_id")
            files[name] = json.dumps(summary, sort_keys=True).encode()
        else:
            files[name] = path.read_bytes()
    return files


@pytest.mark.integration
@PG_ONLY
def test_a_sharded_job_exports_what_an_unsharded_one_does(svc: Service, tiny_model) -> None:
    """Three shards on two workers write their own images' per-image files, the parent only the job-level
    ones; the export is the one a single-piece job writes over the same images, file for file and byte for byte."""
    images = make_shapes_coco(svc.data_dir("same-export"), n_images=30, size=(32, 32), seed=11, crowd=False).images
    svc.start_worker()
    sharded = svc.submit("predict", predict_spec(tiny_model, images, formats=ALL_FORMATS, shard_size=10))
    whole = svc.submit("predict", predict_spec(tiny_model, images, formats=ALL_FORMATS, shard_size=1000))
    done = {job_id: svc.wait_done(job_id) for job_id in (sharded, whole)}
    children = svc.stores.shards.children(sharded)
    assert len(children) == 3 and not svc.stores.shards.children(whole)
    assert all(c.state == "succeeded" for c in children)

    ours, theirs = (_files(svc.job_dir(job_id) / "predictions") for job_id in (sharded, whole))
    assert sorted(ours) == sorted(theirs)
    assert [name for name in ours if ours[name] != theirs[name]] == []
    assert len([n for n in ours if n.startswith("masks/")]) == 30 and "tasks.json" in ours
    assert done[sharded]["artifacts"] == done[whole]["artifacts"]


def _register(svc: Service, name: str, run_dir: Path, *, broken: bool = False) -> int:
    """A version of ``name`` whose checkpoint is a copy of ``run_dir`` (``broken``: the small files kept,
    the checkpoint replaced by bytes no worker can load)."""
    folder = svc.data_dir(f"model-{name}") / "run"
    shutil.copytree(run_dir, folder)
    if broken:
        (folder / "best.pt").write_bytes(b"not a checkpoint")
    return svc.stores.versions.register(name, "binary", "cfg", checkpoint=str(folder / "best.pt")).version


@pytest.mark.integration
@PG_ONLY
def test_a_sharded_job_records_the_version_an_unsharded_one_does(svc: Service, tiny_model) -> None:
    """``NAME@production`` is resolved once, by the parent: its row, progress and exports (Label Studio's
    model_version, the COCO file's description) name ``NAME@1``, as an unsharded job's do."""
    _register(svc, "recorded", tiny_model)
    svc.stores.versions.promote("recorded", 1)
    images = make_shapes_coco(svc.data_dir("recorded"), n_images=20, size=(32, 32), seed=12, crowd=False).images
    formats = ["png", "label-studio", "coco"]
    sharded = svc.submit("predict", predict_spec("recorded@production", images, formats=formats, shard_size=10))
    whole = svc.submit("predict", predict_spec("recorded@production", images, formats=formats, shard_size=1000))
    done = {job_id: svc.wait_done(job_id) for job_id in (sharded, whole)}
    assert len(svc.stores.shards.children(sharded)) == 2 and not svc.stores.shards.children(whole)
    for job in done.values():
        assert (job["model_name"], job["model_version"], job["progress"]["model"]) == ("recorded", 1, "recorded@1"), job
    tasks = json.loads((svc.job_dir(sharded) / "predictions" / "tasks.json").read_text())
    assert {p["model_version"] for t in tasks for p in t["predictions"]} == {"recorded@1"}
    ours, theirs = (_files(svc.job_dir(job_id) / "predictions") for job_id in (sharded, whole))
    assert [name for name in sorted(ours) if ours[name] != theirs.get(name)] == []


@pytest.mark.integration
@PG_ONLY
def test_shards_use_the_version_pinned_at_the_split(svc: Service, tiny_model) -> None:
    """A promotion after the split and before any shard runs changes nothing: every shard runs (and reports)
    the version production was when the parent split. The order is made by hand: with no worker running, this
    process claims and splits the parent (the shards' messages go to Redis), then version 2 — a checkpoint no
    worker can load — is promoted, then a worker starts and runs the shards."""
    from segpipe.jobs.execute import run_job
    from segpipe.service import publish

    _register(svc, "pinned", tiny_model)
    _register(svc, "pinned", tiny_model, broken=True)
    svc.stores.versions.promote("pinned", 1)
    images = make_shapes_coco(svc.data_dir("pinned"), n_images=30, size=(32, 32), seed=13, crowd=False).images
    svc.stop_workers(keep_main=False)
    job_id = svc.submit("predict", predict_spec("pinned@production", images, formats=["png", "label-studio"],
                                                shard_size=10))
    run_job(job_id, stores=svc.stores, settings=svc.settings, owner="test:splitter",
            publish=lambda jid, queue: publish(svc.celery, jid, queue))
    children = svc.stores.shards.children(job_id)
    assert len(children) == 3 and all(c.state == "queued" for c in children)
    svc.stores.versions.promote("pinned", 2)

    svc.replace_main()
    job = svc.wait_done(job_id)
    assert (job["model_name"], job["model_version"], job["progress"]["model"]) == ("pinned", 1, "pinned@1"), job
    children = svc.stores.shards.children(job_id)
    assert [(c.state, (c.progress or {}).get("model"), c.model_version) for c in children] == \
        [("succeeded", "pinned@1", 1)] * 3
    assert svc.stores.predictions.count_images(job_id) == 30
    tasks = json.loads((svc.job_dir(job_id) / "predictions" / "tasks.json").read_text())
    assert {p["model_version"] for t in tasks for p in t["predictions"]} == {"pinned@1"}

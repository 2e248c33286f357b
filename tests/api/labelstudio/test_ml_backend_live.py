"""Acceptance: a real Label Studio server uses segpipe (real uvicorn, a real worker on Redis) as its ML backend.

1. A tiny binary U-Net becomes ``tiny@1`` (production); a predict job over HTTP stores its masks of a batch.
2. A Label Studio project (labeling config from the export layer) connects to ``/ls/tiny@production``
   with Basic auth (password = a segpipe token): Label Studio calls health and setup.
3. Two tasks: a local file segpipe already predicted (answered from the store) and an image uploaded to
   Label Studio (fetched from Label Studio with its token, predicted by an interactive job on the
   worker). Label Studio's "retrieve predictions" stores what segpipe answered; its brush regions decode
   to exactly the masks segpipe stored.
4. Saving an annotation in Label Studio fires its webhook at segpipe, which opens the debounce window of
   the model's retraining schedule.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from segpipe.data.categories import CategoryMap
from segpipe.masks.encode import rle_to_mask
from segpipe.masks.formats.label_studio import brush_rle_to_mask, labeling_config
from segpipe.processes import stop_process
from segpipe.stores import Stores
from tests.engine.runs import train_on_one_thread
from tests.support.auth import ENGINEER, tokens_variable
from tests.support.labelstudio_server import LabelStudioServer
from tests.support.live_server import live_api, spawn_segpipe
from tests.support.redis_db import flush_or_skip

# one Label Studio server per test process: every test that needs it runs in the same xdist worker
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("label-studio")]

REDIS_URL = os.environ.get("SEGPIPE_TEST_INTEGRATION_REDIS_URL", "redis://127.0.0.1:6379/11")
UNET_TINY = {"name": "unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 16, 16]}


@dataclass
class Backend:
    api: str
    ls: LabelStudioServer
    stores: Stores
    batch_job: str
    data: Path
    worker_log: Path
    root: Path


def _train_tiny(root: Path, artifacts: Path) -> Path:
    """A binary U-Net trained for a few epochs on 32-px shapes, its run folder inside the artifact root."""
    from segpipe.data.synthetic import make_shapes_coco

    coco = make_shapes_coco(root / "shapes", n_images=8, size=(32, 32), seed=2)
    source = {"images": str(coco.images), "annotations": str(coco.annotations)}
    spec = {
        "task": "binary", "data": {"train": source, "val": source, "num_workers": 0}, "augment": {"preset": "none"},
        "model": dict(UNET_TINY), "output_dir": str(artifacts / "jobs" / "tiny-train" / "run"),
        "train": {"device": "cpu", "seed": 0, "epochs": 10, "batch_size": 2, "lr": 3e-3, "image_size": 32,
                  "scheduler": "none"},
    }  # fmt: skip
    result = train_on_one_thread(spec)
    assert result.best_checkpoint is not None
    return Path(result.best_checkpoint)


def write_tiny_schedule(root: Path, checkpoint: Path, batch: Path) -> Path:
    """``root/schedule.yaml``: model ``tiny`` (the config beside ``checkpoint``) retrained daily from the
    annotations in ``batch``; the live tests signal it through Label Studio's webhook."""
    schedule = root / "schedule.yaml"
    schedule.write_text(yaml.safe_dump({
        "debounce_seconds": 300,
        "models": {"tiny": {"every": "24h", "config": str(checkpoint.parent / "config.yaml"),
                            "dataset": {"name": "tiny-annotations", "paths": [str(batch)]},
                            "gate": {"metric": "iou", "mode": "max"}}},
    }))  # fmt: skip
    return schedule


def _wait_job(api: str, job_id: str, timeout: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{api}/jobs/{job_id}", headers=ENGINEER).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            assert job["state"] == "succeeded", job
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


@pytest.fixture(scope="module")
def backend(label_studio_server: LabelStudioServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    flush_or_skip(REDIS_URL)
    root = tmp_path_factory.mktemp("ls-backend")
    ls = label_studio_server  # the session's server (allows private addresses, as the compose profile)
    # Label Studio serves local files from its files root: segpipe's data root is a folder inside it
    data, artifacts = ls.files_root / "ml-backend-live", root / "artifacts"
    (data / "batch").mkdir(parents=True)
    checkpoint = _train_tiny(root, artifacts)
    from segpipe.data.synthetic import make_shapes_coco

    fresh = make_shapes_coco(root / "fresh", n_images=3, size=(32, 32), seed=11, empty_images=0)
    images = sorted(fresh.images.glob("*.png"))
    for image in images[:2]:
        (data / "batch" / image.name).write_bytes(image.read_bytes())
    (root / "upload.png").write_bytes(images[2].read_bytes())  # not under the data root
    db_url = f"sqlite:///{root / 'segpipe.db'}"
    stores = Stores.open(db_url, artifacts)
    version = stores.versions.register("tiny", "binary", "{}", checkpoint=checkpoint.relative_to(artifacts).as_posix())
    stores.versions.promote("tiny", version.version)
    schedule = write_tiny_schedule(root, checkpoint, data / "batch")
    env = {
        "SEGPIPE_HOME": str(root / "home"), "SEGPIPE_DATABASE_URL": db_url, "SEGPIPE_BROKER_URL": REDIS_URL,
        "SEGPIPE_DATA_ROOTS": str(data), "SEGPIPE_ARTIFACT_ROOT": str(artifacts),
        "SEGPIPE_TOKENS": tokens_variable(), "SEGPIPE_SCHEDULE": str(schedule),
        "SEGPIPE_LABEL_STUDIO_URL": ls.url, "SEGPIPE_LABEL_STUDIO_TOKEN": ls.token,
        "SEGPIPE_LABEL_STUDIO_FILES_ROOT": str(ls.files_root), "SEGPIPE_LS_PREDICT_TIMEOUT": "120",
        "SEGPIPE_LEASE_SECONDS": "30", "SEGPIPE_HEARTBEAT_SECONDS": "2",
    }  # fmt: skip
    worker_log = root / "worker.log"
    worker = spawn_segpipe(["worker", "--queues", "gpu,interactive"], env, worker_log, root)
    try:
        with live_api(env, root / "uvicorn.log") as api:
            submitted = httpx.post(f"{api}/jobs", headers=ENGINEER, json={"kind": "predict", "config": {
                "model": "tiny@production", "images": str(data / "batch"), "device": "cpu",
                "predict": {"formats": ["coco-results"]}}}, timeout=120)  # fmt: skip; submit checks the model
            assert submitted.status_code == 201, submitted.text
            _wait_job(api, submitted.json()["id"])
            yield Backend(api, ls, stores, submitted.json()["id"], data, worker_log, root)
    finally:
        stop_process(worker)
        stores.close()


def _ls(ls: LabelStudioServer, method: str, path: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Token {ls.token}"}
    response = httpx.request(method, ls.url + path, headers=headers, timeout=180, **kwargs)
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:2000]}"
    return response.json() if response.content else None


def _stored_masks(stores: Stores, job_id: str, key: str) -> list[np.ndarray]:
    return [rle_to_mask(row.rle) for row in stores.predictions.for_image(key, job_id) if row.rle is not None]


def test_label_studio_gets_predictions_and_fires_the_webhook(backend: Backend) -> None:
    ls, stores = backend.ls, backend.stores
    version = stores.versions.production("tiny")
    assert version is not None and version.checkpoint
    cmap = CategoryMap.load(stores.artifacts.root / Path(version.checkpoint).parent / "categories.json")
    names = list(cmap.names)
    config = labeling_config("binary", list(zip(cmap.ids, cmap.names, strict=True)))
    project = _ls(ls, "POST", "/api/projects", json={"title": "segpipe backend", "label_config": config})
    pid = project["id"]

    # connect the ML backend: Label Studio checks health and runs setup against segpipe
    ml = _ls(ls, "POST", "/api/ml", json={
        "project": pid, "title": "segpipe", "url": f"{backend.api}/ls/tiny@production",
        "auth_method": "BASIC_AUTH", "basic_auth_user": "label-studio", "basic_auth_pass": "ann-token",
    })  # fmt: skip
    ml = _ls(ls, "GET", f"/api/ml/{ml['id']}")
    assert ml["state"] == "CO", f"Label Studio did not connect: {ml}"

    # two tasks: a local file segpipe predicted before, and an upload only Label Studio has
    batch = sorted(p.name for p in (backend.data / "batch").glob("*.png"))
    _ls(ls, "POST", f"/api/projects/{pid}/import",
        json=[{"image": f"/data/local-files/?d={backend.data.name}/batch/{batch[0]}"}])
    upload = backend.root / "upload.png"
    with upload.open("rb") as f:
        _ls(ls, "POST", f"/api/projects/{pid}/import", files={"file": ("upload.png", f, "image/png")})
    tasks = _ls(ls, "GET", f"/api/tasks?project={pid}")
    tasks = tasks["tasks"] if isinstance(tasks, dict) else tasks
    assert len(tasks) == 2

    _ls(ls, "POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
        json={"selectedItems": {"all": True, "excluded": []}})
    by_task = {}
    for task in tasks:
        predictions = _ls(ls, "GET", f"/api/predictions?task={task['id']}")
        log_tail = backend.worker_log.read_text()[-2000:]
        assert len(predictions) == 1, f"task {task['id']} ({task['data']}): {predictions}\n{log_tail}"
        by_task[task["id"]] = (task, predictions[0])

    interactive = [j for j in stores.jobs.list(kind="predict")[0] if j.queue == "interactive"]
    assert len(interactive) == 1, "only the uploaded image needed a worker"
    for task, prediction in by_task.values():
        assert prediction["model_version"] == "tiny@1"
        local = "local-files" in task["data"]["image"]
        if local:
            job_id, key = backend.batch_job, Path(batch[0]).stem
        else:
            job_id = interactive[0].id
            (key,) = stores.predictions.done_images(job_id)
        expected = _stored_masks(stores, job_id, key)
        assert expected, "the tiny model found foreground"
        got = [brush_rle_to_mask(r["value"]["rle"], r["original_height"], r["original_width"])
               for r in prediction["result"] if r["type"] == "brushlabels"]
        assert len(got) == len(expected)
        for mask_got, mask_expected in zip(got, expected, strict=True):
            np.testing.assert_array_equal(mask_got, mask_expected)
        assert all(r["value"]["brushlabels"][0] in names for r in prediction["result"])

    # saving an annotation in Label Studio reaches segpipe's webhook: the debounce window opens
    assert stores.retrain.get("tiny") is None or stores.retrain.get("tiny").signalled_at is None
    _ls(ls, "POST", "/api/webhooks", json={
        "project": pid, "url": f"{backend.api}/ls/tiny@production/webhook", "send_payload": True,
        "send_for_all_actions": False, "actions": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"],
        "headers": {"Authorization": "Bearer ann-token"}, "is_active": True,
    })  # fmt: skip
    task, prediction = next(iter(by_task.values()))
    _ls(ls, "POST", f"/api/tasks/{task['id']}/annotations", json={"result": prediction["result"], "ground_truth": False})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        slot = stores.retrain.get("tiny")
        if slot is not None and slot.signalled_at is not None:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the webhook never reached segpipe:\n{ls.log_tail()}")
